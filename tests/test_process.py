"""Layer 3 (process values and timing) on a real Modbus capture and on small crafted event streams."""

from __future__ import annotations

import dataclasses
import functools
import json
import random
import re
from collections import Counter

from detect.baseline import points_of
from detect.process import ProcessTiming
from icsight.events import Endpoint, Event, Origin
from sensors.run import events_from_capture
from tests.conftest import PCAPS, need_shared

MODBUS = PCAPS / "modbus" / "ModbusTCP.pcap"
CLIENT = Endpoint("10.0.0.5", 40000, "02:00:00:00:00:05")
SERVER = Endpoint("10.0.0.10", 502, "02:00:00:00:00:10")


def ev(
    i: int,
    ts: float,
    points=(),
    latency: float | None = None,
    func: str = "READ_HOLDING_REGISTERS",
    action: str = "read",
    src: Endpoint = CLIENT,
) -> Event:
    f = {"func": func, "status": "paired", "points": [{"ref": r, "value": v} for r, v in points]}
    if latency is not None:
        f["latency"] = latency
    return Event(
        id=f"e{i}",
        ts=ts,
        kind="modbus",
        tenant="t",
        sensor="s",
        src=src,
        dst=SERVER,
        action=action,
        fields=f,
        origin=Origin("c", (2 * i + 1, 2 * i + 2)),
    )


def learned(events) -> ProcessTiming:
    p = ProcessTiming()
    for e in events:
        p.learn(e)
    p.finish_learning()
    return p


@functools.cache
def _modbus() -> list[Event]:
    return sorted(events_from_capture(need_shared(MODBUS)), key=lambda e: e.ts)


def test_real_capture_learns_periodic_channels_and_flags_a_forged_value():
    evs = _modbus()
    mid = evs[0].ts + (evs[-1].ts - evs[0].ts) / 2
    p = learned(e for e in evs if e.ts < mid)
    periodic = {k: c for k, c in p.channels.items() if c.get("period")}
    assert periodic, "an HMI polling loop is periodic"
    assert all(0 < c["period"] < 10 for c in periodic.values())
    # the second half of the same capture: value/timing alerts only, and few of them
    alerts = [a for e in evs if e.ts >= mid for a in p.check(e)]
    kinds = Counter(a.fields["rule_id"] for a in alerts)
    assert "process.rate" not in kinds  # the same load as while learning
    assert len(alerts) < 0.05 * sum(1 for e in evs if e.ts >= mid)
    # forge one response: a numeric point far above anything learned
    k, pt = next(
        (k, v)
        for k, v in p.points.items()
        if v["numeric"] and v["n"] >= 10 and v["max"] > v["min"] and not v["monotonic"]
    )
    src = next(e for e in evs if e.ts >= mid and any(p.point_key(e, r) == k for r, _ in points_of(e)))
    ref = next(r for r, _ in points_of(src) if p.point_key(src, r) == k)
    forged = dataclasses.replace(
        src,
        id="forged",
        fields={
            **src.fields,
            "points": [{"ref": ref, "value": pt["max"] + 10 * (pt["max"] - pt["min"]) + 1000}],
        },
    )
    out = [a for a in p.check(forged) if a.fields["rule_id"] == "process.range"]
    assert (
        out and f"outside learned range [{pt['min']:.6g}, {pt['max']:.6g}]" in out[0].fields["reason"]["en"]
    )
    assert out[0].origin.frames == forged.origin.frames


def test_value_set_counter_and_rate_of_change():
    train = []
    for i in range(30):
        train.append(
            ev(i, 100.0 + i, [("u1:coil:1", i % 2 == 0), ("u1:ir:7", 20 + (i % 5)), ("u1:ctr:3", 10 * i)])
        )
    p = learned(train)
    assert p.points["10.0.0.10|modbus|u1:coil:1"]["values"] == [True, False]
    assert p.points["10.0.0.10|modbus|u1:ctr:3"]["monotonic"]
    for e in train:  # protect state warms up on the same stream: no alerts
        assert p.check(e) == []
    out = p.check(ev(99, 130.0, [("u1:ir:7", 60)]))
    assert [a.fields["rule_id"] for a in out] == ["process.range"]
    assert "value 60 outside learned range [20, 24]" in out[0].fields["reason"]["en"]
    out = p.check(ev(100, 131.0, [("u1:ctr:3", 5)]))
    assert [a.fields["rule_id"] for a in out] == ["process.counter"]
    out = p.check(ev(101, 131.5, [("u1:ir:7", 20)]))  # 40 in 0.5 s vs learned 4/s, 0.5 s after the last
    assert {a.fields["rule_id"] for a in out} == {"process.rate_of_change", "process.extra_poll"}


def test_polling_period_extra_and_missed_polls_and_latency():
    train = [
        ev(i, 1000.0 + i * 2.0 + (0.01 if i % 2 else -0.01), latency=0.010 + 0.001 * (i % 3))
        for i in range(40)
    ]
    p = learned(train)
    ch = p.channels["10.0.0.5|10.0.0.10|modbus|READ_HOLDING_REGISTERS"]
    assert abs(ch["period"] - 2.0) < 0.05 and ch["lat_max"] == 0.012
    assert p.check(ev(50, 1080.0, latency=0.011)) == []
    extra = p.check(ev(51, 1080.3, latency=0.011))
    assert [a.fields["rule_id"] for a in extra] == ["process.extra_poll"]
    assert re.search(
        r"0\.300 s since the previous message, learned period (1\.980|2\.020) s",
        extra[0].fields["reason"]["en"],
    )
    missed = p.check(ev(52, 1090.3, latency=0.011))
    assert [a.fields["rule_id"] for a in missed] == ["process.missed_poll"]
    assert "about 4 polls missed" in missed[0].fields["reason"]["en"]
    slow = p.check(ev(53, 1092.3, latency=0.2))
    assert [a.fields["rule_id"] for a in slow] == ["process.latency"]


def test_flooding_rate_alert_once_per_window():
    p = learned([ev(i, 1000.0 + i, func="READ_COILS") for i in range(100)])  # 10 events per 10 s window
    assert p.rates["events"] == 10
    flood = [ev(1000 + i, 2000.0 + i * 0.01, func="READ_COILS") for i in range(200)]
    alerts = [a for e in flood for a in p.check(e) if a.fields["rule_id"] == "process.rate"]
    fams = Counter(a.fields["key"] for a in alerts)
    assert fams == {"process.rate:events": 1, "process.rate:src:10.0.0.5": 1}
    assert "exceeds the learned maximum 10 (limit 15)" in alerts[0].fields["reason"]["en"]


def test_state_round_trip():
    p = learned([ev(i, 100.0 + i, [("u1:ir:7", i % 7)]) for i in range(20)])
    q = ProcessTiming(p.to_state())
    assert q.to_state() == p.to_state()
    assert [a.fields["rule_id"] for a in q.check(ev(99, 200.0, [("u1:ir:7", 500)]))] == ["process.range"]


def _mb(i: int, ts: float, address: int, values: list, func: str = "READ_HOLDING_REGISTERS") -> Event:
    """A Modbus-style record: points given as `address` + `values` (no `points` list)."""
    e = ev(i, ts, func=func)
    f = {k: v for k, v in e.fields.items() if k != "points"}
    return dataclasses.replace(e, fields={**f, "address": address, "values": values})


def test_address_values_records_use_the_same_point_state_as_refs():
    """The protect path indexes Modbus address/values records by number: same keys, same alerts."""
    train = [_mb(i, 100.0 + i, 100, [20 + i % 3, 7, True]) for i in range(30)]
    p = learned(train)
    k = p.point_key(train[0], "READ_HOLDING_REGISTERS:100")
    assert p.points[k]["min"] == 20 and p.points[k]["max"] == 22
    assert p.check(_mb(50, 140.0, 100, [21, 7, True])) == []
    out = p.check(_mb(51, 141.0, 99, [0, 90, 7, False]))  # shifted: 100 -> 90 and 102 -> False
    assert [(a.fields["rule_id"], a.fields["point"]) for a in out] == [
        ("process.range", p.point_key(train[0], "READ_HOLDING_REGISTERS:100")),
        ("process.value", p.point_key(train[0], "READ_HOLDING_REGISTERS:102")),
    ]
    assert "point READ_HOLDING_REGISTERS:100 value 90 outside learned range [20, 22]" in (
        out[0].fields["reason"]["en"]
    )
    # the same point given as a ref shares the last value (90 one second ago): 69/s vs the learned 2/s
    out = p.check(ev(52, 142.0, [("READ_HOLDING_REGISTERS:100", 21)]))
    assert [(a.fields["rule_id"], a.fields["rate"]) for a in out] == [("process.rate_of_change", 69.0)]


def test_learning_more_after_checking_recompiles():
    p = learned([ev(i, 100.0 + i, [("u1:ir:7", 20 + i % 3)]) for i in range(20)])
    assert [a.fields["rule_id"] for a in p.check(ev(50, 130.0, [("u1:ir:7", 60)]))] == ["process.range"]
    for i in range(20):
        p.learn(ev(100 + i, 200.0 + i, [("u1:ir:7", 58 + i % 3)]))
    p.finish_learning()
    assert p.check(ev(200, 300.0, [("u1:ir:7", 60)])) == []


TIMING = {"process.missed_poll", "process.extra_poll", "process.latency"}


def _stream(seed: int, n: int, t0: float, backwards: float = 0.0) -> list[Event]:
    """A random Modbus-style poll stream: overlapping register blocks and coil blocks of one server,
    a DNP3-style point list with a counter (going back with probability `backwards`), values mostly in
    a band, now and then out of it, non-numbers, NaN."""
    rng = random.Random(seed)
    out = []
    ts, ctr = t0, 0
    for i in range(n):
        ts += rng.choice([0.0005, 0.005, 0.01, 0.2, 1.0])
        r = rng.random()
        if r < 0.5:
            a0 = rng.randrange(0, 60)
            vals: list = [rng.randrange(100, 200) for _ in range(rng.randint(1, 12))]
            if rng.random() < 0.05:
                vals[rng.randrange(len(vals))] = rng.choice([5000, -7, 150.5, "x", None, float("nan"), True])
            out.append(_mb(i, ts, a0, vals))
        elif r < 0.75:
            a0 = rng.randrange(0, 40)
            vals = [rng.random() < 0.5 for _ in range(rng.randint(1, 16))]
            if rng.random() < 0.05:
                vals[0] = rng.choice([2, "on", None])
            out.append(_mb(i, ts, a0, vals, func="READ_COILS"))
        else:
            k0 = rng.randrange(0, 20)
            pts = [(f"1:ai:{k}", rng.randrange(-50, 50)) for k in range(k0, k0 + rng.randint(1, 8))]
            if rng.random() < 0.1:
                pts.append(("1:bi:3", rng.random() < 0.5))
            ctr += -5 if rng.random() < backwards else rng.choice([1, 2, 3])
            pts.append(("1:ctr:0", ctr))
            if rng.random() < 0.05:
                pts[0] = (pts[0][0], 900)
            out.append(ev(i, ts, pts))
    return out


def test_block_checks_are_only_a_filter():
    """The block checks (`_block`) may only skip per-point checks that could not alert: with them off,
    the same alerts (ids and all) and, after every event, the same state of every learned point."""
    train = _stream(1, 3000, 1000.0)
    test = _stream(2, 3000, 5000.0, backwards=0.02) + _stream(3, 500, 6000.0)
    q, r = learned(train), learned(train)
    calls: Counter[bool] = Counter()

    def counted(*a):
        ok = ProcessTiming._block(q, *a)
        calls[ok] += 1
        return ok

    q._block = counted
    r._block = lambda *a: False  # every block to the per-point check
    fast, slow = [], []
    q.check(test[0]), r.check(test[0])  # compiles both
    slots = [i for i, e in enumerate(r._ent) if e is not None]  # the others are never read
    for e in test:
        fast += [a.to_json() for a in q.check(e)]
        slow += [a.to_json() for a in r.check(e)]
        assert [(q._lts[i], q._lx[i]) for i in slots] == [(r._lts[i], r._lx[i]) for i in slots]
    assert fast == slow
    assert calls[True] > 1000 and calls[False] > 50  # both ways were taken
    kinds = {json.loads(a)["fields"]["rule_id"] for a in fast}
    assert {"process.range", "process.rate_of_change", "process.value", "process.counter"} <= kinds


def test_a_value_outside_its_limits_keeps_its_block_on_the_per_point_check():
    """After an out-of-range value the next in-range one is a jump: the rate check must see it even when
    it comes long after (the block check alone would let it pass)."""
    train = [_mb(i, 100.0 + i, 10, [50 + i % 3, 20]) for i in range(40)]
    p = learned(train)

    def point_alerts(e: Event) -> list[str]:  # (timing alerts aside: the polls are irregular here)
        return [a.fields["rule_id"] for a in p.check(e) if a.fields["rule_id"] not in TIMING]

    assert point_alerts(_mb(100, 200.0, 10, [51, 20])) == []
    assert point_alerts(_mb(101, 201.0, 10, [5000, 20])) == ["process.range"]
    assert point_alerts(_mb(102, 260.0, 10, [51, 20])) == ["process.rate_of_change"]  # 4949 in 59 s
    assert point_alerts(_mb(103, 320.0, 10, [52, 20])) == []


def test_a_non_number_inside_a_block_leaves_its_point_as_it_was():
    """NaN, strings and None inside a block leave their point as it was: its next value is measured from
    the last number."""

    def tri(i: int) -> int:
        return i % 100 if (i // 100) % 2 == 0 else 99 - i % 100

    p = learned([_mb(i, 100.0 + i, 10, [tri(i), tri(i)]) for i in range(400)])

    def point_alerts(e: Event) -> list[str]:
        return [a.fields["rule_id"] for a in p.check(e) if a.fields["rule_id"] not in TIMING]

    for bad in (float("nan"), "x", None):
        assert point_alerts(_mb(1, 1000.0, 10, [50, 50])) == []
        assert point_alerts(_mb(2, 1001.0, 10, [51, bad])) == []
        # 40 in 1.5 s since the last number (50), learned 1/s
        assert point_alerts(_mb(3, 1001.5, 10, [52, 90])) == ["process.rate_of_change"]
        p._pts = None  # fresh protect state for the next case


def _point_alerts(alerts) -> list[str]:
    """The point-value alerts (not the timing ones: these crafted polls skip beats on purpose)."""
    keep = ("process.range", "process.value", "process.rate_of_change", "process.counter")
    return sorted(a.fields["rule_id"] for a in alerts if a.fields["rule_id"] in keep)


def test_a_standing_deviation_alerts_once_until_the_point_returns_to_normal():
    """A point that stays abnormal (a tripped breaker read by a slow integrity poll) alerts when it
    enters the abnormal state, not on every poll; back to normal, the next deviation alerts again."""
    train = [ev(i, 100.0 + i, [("u1:ir:7", 20 + (i % 5)), ("u1:bi:0", True)]) for i in range(30)]
    p = learned(train)
    for e in train:
        assert p.check(e) == []
    tripped = [("u1:ir:7", 0), ("u1:bi:0", False)]            # 0 A and False on every poll
    ids = [_point_alerts(p.check(ev(50 + k, t, tripped))) for k, t in enumerate((200.0, 260.0, 320.0, 380.0))]
    assert ids == [["process.range", "process.value"], [], [], []]
    assert _point_alerts(p.check(ev(60, 440.0, [("u1:ir:7", 22), ("u1:bi:0", True)]))) == []   # closed again
    assert _point_alerts(p.check(ev(61, 500.0, tripped))) == ["process.range", "process.value"]


def test_rate_of_change_needs_a_change_bigger_than_any_learned_step():
    """A step the plant makes while learning (a capacitor bank switching 40 -> 80) seen over a shorter gap
    than usual is not a rate anomaly; a bigger jump over the same gap is."""
    train = []
    for i in range(40):
        level = 80.0 if (i // 10) % 2 else 40.0               # a 40-unit step every 10 s, polled each 1 s
        train.append(ev(i, 100.0 + i, [("u1:ir:9", level)]))
    p = learned(train)
    assert p.points["10.0.0.10|modbus|u1:ir:9"]["step"] == 40.0
    for e in train:
        assert p.check(e) == []
    assert _point_alerts(p.check(ev(70, 150.0, [("u1:ir:9", 40.0)]))) == []
    # the learned step 40 -> 80 over 0.2 s: 200/s, over twice the learned 40/s, but no bigger than learned
    assert _point_alerts(p.check(ev(71, 150.2, [("u1:ir:9", 80.0)]))) == []
    # back to 40, then 40 -> 84 over 0.2 s: inside the range limits (margin 10 %), a step larger than learned
    assert _point_alerts(p.check(ev(72, 160.0, [("u1:ir:9", 40.0)]))) == []
    assert _point_alerts(p.check(ev(73, 160.2, [("u1:ir:9", 84.0)]))) == ["process.rate_of_change"]


def test_a_standing_value_set_deviation_clears_on_address_values_records():
    """The same latch for Modbus address/values records (a coil block checked as one value set): back
    to a learned value, the next unseen value alerts again."""
    train = [_mb(i, 100.0 + i, 0, [True, True], func="READ_COILS") for i in range(30)]
    p = learned(train)
    for e in train:
        assert p.check(e) == []
    seen = [_point_alerts(p.check(_mb(50 + k, t, 0, v, func="READ_COILS")))
            for k, (t, v) in enumerate([(200.0, [False, True]), (201.0, [False, True]), (202.0, [True, True]),
                                        (203.0, [False, True])])]
    assert seen == [["process.value"], [], [], ["process.value"]]
