"""Layer 2 (learned baseline) and the ARP analyzer it relies on, on real QUT DNP3 data and crafted frames."""

from __future__ import annotations

import dataclasses
import functools

import orjson
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from scapy.layers.l2 import ARP

from detect.baseline import Baseline
from detect.runtime import accept, build_observers
from detect.state import load_json, save_json, state_dir
from icsight.cli import main
from icsight.events import Endpoint, Event, Origin
from icsight.settings import Settings
from sensors import arp
from sensors.run import events_from_capture
from tests.conftest import DATASETS
from tests.conftest import need_shared as _need
from tests.fuzzing import feed_l2

QUT = DATASETS / "qut-dnp3-2017-training"
CONTROL = QUT / "control_infrequent.attacker_nogoose.pcap.gz"
ATTACK = QUT / "injection_infrequent.attacker_nogoose.pcap.gz"
ATTACKER = "192.168.10.66"


@functools.cache
def _events(path: str) -> list[Event]:
    return events_from_capture(_need(__import__("pathlib").Path(path)))


def _learned() -> Baseline:
    b = Baseline()
    for ev in _events(str(CONTROL)):
        b.learn(ev)
    return b


# ---------------------------------------------------------------------- ARP analyzer
def test_arp_request_reply_and_gratuitous():
    req = bytes(ARP(op=1, hwsrc="00:18:64:02:2f:a6", psrc="192.168.10.221", pdst="192.168.10.222"))
    rep = bytes(
        ARP(
            op=2,
            hwsrc="00:10:18:cb:8c:13",
            psrc="192.168.10.222",
            hwdst="00:18:64:02:2f:a6",
            pdst="192.168.10.221",
        )
    )
    grat = bytes(ARP(op=2, hwsrc="00:10:18:cb:8c:13", psrc="192.168.10.1", pdst="192.168.10.1"))
    evs = feed_l2(arp, [req, rep, grat])
    assert [e.kind for e in evs] == ["arp"] * 3
    a, b, c = (e.fields for e in evs)
    assert (a["op"], a["sender_ip"], a["target_ip"], a["gratuitous"]) == (
        "request",
        "192.168.10.221",
        "192.168.10.222",
        False,
    )
    assert evs[0].action == "discover" and evs[1].action == "other"
    assert (b["op"], b["sender_mac"], b["target_mac"]) == ("reply", "00:10:18:cb:8c:13", "00:18:64:02:2f:a6")
    assert c["gratuitous"] is True
    assert evs[1].src == Endpoint(ip="192.168.10.222", mac="02:00:00:00:00:01")
    assert b["eth_mismatch"] is True  # feed_l2's Ethernet source differs from the ARP sender
    assert [e.origin.frames for e in evs] == [(1,), (2,), (3,)]


def test_arp_truncated_is_weird_and_unknown_op_kept():
    evs = feed_l2(arp, [b"\x00\x01\x08\x00", bytes(ARP(op=0x2A))])
    assert evs[0].kind == "weird" and evs[0].fields["name"] == "truncated_arp"
    assert evs[1].fields["op"] == "unknown-0x2a"


def test_arp_in_real_capture_frames_match_labels():
    import csv
    import gzip

    labels = _need(QUT / "control_infrequent.frame_labels.csv.gz")
    with gzip.open(labels, "rt") as f:  # the dataset's tshark dissection: protocol per frame
        want = [int(r["frame_no"]) for r in csv.DictReader(f) if r["protocol"] == "ARP"]
    evs = [e for e in _events(str(CONTROL)) if e.kind == "arp"]
    assert [e.origin.frames[0] for e in evs] == want
    assert all(e.fields["sender_mac"] and e.fields["sender_ip"] for e in evs)


ARP_PEER_CAPTURES = [
    "profinet_dcp/Malcolm-PROFINET.pcap",
    "enip/enip_cip_example.pcap",
    "s7comm/s7_attack.pcap",
]


@pytest.mark.parametrize("name", ARP_PEER_CAPTURES)
def test_arp_matches_tshark(name):
    """Every ARP frame of shared captures, field by field against tshark's dissection."""
    from tests.conftest import PCAPS
    from tests.peers import tshark_fields

    pcap = _need(PCAPS / name)
    want = tshark_fields(
        pcap,
        [
            "arp.opcode",
            "arp.src.hw_mac",
            "arp.src.proto_ipv4",
            "arp.dst.hw_mac",
            "arp.dst.proto_ipv4",
            "arp.isgratuitous",
        ],
        "arp",
    )
    got = [e for e in events_from_capture(pcap) if e.kind == "arp"]
    assert want and [e.origin.frames[0] for e in got] == [int(r["frame.number"][0]) for r in want]
    for e, r in zip(got, want, strict=True):
        f = e.fields
        assert f["op_code"] == int(r["arp.opcode"][0])
        assert (f["sender_mac"], f["sender_ip"]) == (r["arp.src.hw_mac"][0], r["arp.src.proto_ipv4"][0])
        assert (f["target_mac"], f["target_ip"]) == (r["arp.dst.hw_mac"][0], r["arp.dst.proto_ipv4"][0])
        # tshark flags a gratuitous ARP the same way (sender IP == target IP), 4.0: "arp.isgratuitous"
        assert f["gratuitous"] == (r["arp.isgratuitous"] == ["1"])


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=64))
def test_arp_fuzz_never_raises(data):
    evs = feed_l2(arp, [data])
    assert len(evs) == 1
    if len(data) < 8:
        assert evs[0].kind == "weird"


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 27), st.integers(0, 7), st.integers(1, 40))
def test_arp_mutations_never_raise(pos, bit, cut):
    good = bytearray(bytes(ARP(op=2, hwsrc="00:10:18:cb:8c:13", psrc="10.0.0.1", pdst="10.0.0.2")))
    good[pos] ^= 1 << bit
    for data in (bytes(good), bytes(good[:cut])):
        evs = feed_l2(arp, [data])
        assert [e.kind for e in evs] in (["arp"], ["weird"])
        if (
            evs[0].kind == "arp"
            and good[4:6] == b"\x06\x04"
            and good[:4] == b"\x00\x01\x08\x00"
            and cut >= 28
        ):
            assert "sender_ip" in evs[0].fields


# ---------------------------------------------------------------------- learning and protect mode
def test_baseline_learns_bindings_and_pairs_from_control_day():
    b = _learned()
    assert b.bindings["192.168.10.221"] == ["00:18:64:02:2f:a6"]  # the master, from ARP
    assert any(k.startswith("192.168.10.1|192.168.10.255|udp/") for k in b.talkers)
    # the attacker's machine shows up on this control day too (its own broadcasts), but never speaks DNP3
    assert not any(k.startswith(f"{ATTACKER}|192.168.10.222|") for k in b.talkers)
    # protect mode on its own training data: nothing deviates
    assert [a for ev in _events(str(CONTROL)) for a in b.check(ev)] == []


def test_attacker_on_attack_day_alerts_with_evidence_frames():
    b = _learned()
    evs = _events(str(ATTACK))
    alerts = [a for ev in evs for a in b.check(ev)]
    assert alerts, "the attacker host is new on attack days"
    by_id = {e.id: e for e in evs}
    for a in alerts:
        assert a.kind == "alert" and a.action == "alert" and a.fields["layer"] == "baseline"
        ev_frames = sorted({f for i in a.fields["evidence"] for f in by_id[i].origin.frames})
        assert list(a.origin.frames) == ev_frames
        assert "not in baseline learned 2016-" in a.fields["reason"]["en"]
        assert "不在基线中" in a.fields["reason"]["zh"]
    reasons = " ".join(a.fields["reason"]["en"] for a in alerts)
    assert f"new talker pair {ATTACKER} -> 192.168.10.222 dnp3/20000" in reasons


def test_binding_change_is_critical():
    b = _learned()
    spoof = Event(
        id="x1",
        ts=2e9,
        kind="arp",
        tenant="default",
        sensor="s",
        src=Endpoint(ip="192.168.10.221", mac="00:10:18:cb:8c:13"),
        dst=Endpoint(ip="192.168.10.222", mac="00:18:64:02:30:fc"),
        action="other",
        fields={
            "op": "reply",
            "sender_ip": "192.168.10.221",
            "sender_mac": "00:10:18:cb:8c:13",
            "target_ip": "192.168.10.222",
            "target_mac": "00:18:64:02:30:fc",
            "gratuitous": False,
        },
        origin=Origin("c", (7,)),
    )
    alerts = b.check(spoof)
    crit = [a for a in alerts if a.fields["rule_id"] == "baseline.binding"]
    assert crit and crit[0].fields["severity"] == "critical"
    assert (
        "192.168.10.221 now at 00:10:18:cb:8c:13 (baseline 00:18:64:02:2f:a6)"
        in crit[0].fields["reason"]["en"]
    )
    assert crit[0].origin.frames == (7,)


def test_write_outside_learned_range():
    def ev(i: int, ref: str) -> Event:
        return Event(
            id=f"w{i}",
            ts=1000.0 + i,
            kind="modbus",
            tenant="t",
            sensor="s",
            src=Endpoint("10.0.0.5", 40000, "02:00:00:00:00:05"),
            dst=Endpoint("10.0.0.10", 502, "02:00:00:00:00:10"),
            action="write",
            fields={"func": "WRITE_SINGLE_REGISTER", "points": [{"ref": ref, "value": 1}]},
            origin=Origin("c", (i,)),
        )

    b = Baseline()
    for i, ref in enumerate(["u1:hr:100", "u1:hr:110", "u1:hr:105"]):
        b.learn(ev(i, ref))
    assert b.check(ev(10, "u1:hr:107")) == []  # inside the learned range 100..110
    out = b.check(ev(11, "u1:hr:400"))
    assert [a.fields["rule_id"] for a in out] == ["baseline.write"]
    assert "u1:hr:400 (learned range u1:hr:100..u1:hr:110)" in out[0].fields["reason"]["en"]


# ---------------------------------------------------------------------- persistence and accept
def test_state_round_trip_and_accept(tmp_path):
    settings = Settings(data_dir=tmp_path)
    b = _learned()
    d = state_dir(tmp_path, "default")
    save_json(d / "baseline.json", b.to_state())
    b2 = Baseline(load_json(d / "baseline.json"))
    assert b2.to_state() == b.to_state()
    new_pair = next(
        a for ev in _events(str(ATTACK)) for a in b2.check(ev) if a.fields["rule_id"] == "baseline.talker"
    )
    assert accept(settings, new_pair) is True
    assert accept(settings, new_pair) is False  # already there
    b3 = Baseline(load_json(d / "baseline.json"))
    ev = next(e for e in _events(str(ATTACK)) if e.id == new_pair.fields["evidence"][0])
    assert not [a for a in b3.check(ev) if a.fields["key"] == new_pair.fields["key"]]
    assert b3.accepted[0]["alert"] == new_pair.id


def test_accept_refuses_alert_without_entry(tmp_path):
    a = Event(
        id="r",
        ts=1.0,
        kind="alert",
        tenant="default",
        sensor="s",
        src=Endpoint(),
        dst=Endpoint(),
        action="alert",
        fields={"rule_id": "some-rule"},
        origin=Origin("c", ()),
    )
    with pytest.raises(ValueError, match="names no baseline entry"):
        accept(Settings(data_dir=tmp_path), a)


def test_cli_learn_then_sensor_emits_inline_alerts_and_accept(tmp_path):
    _need(CONTROL)
    _need(ATTACK)
    r = CliRunner()
    res = r.invoke(main, ["detect", "learn", str(CONTROL), "--data-dir", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "detect" / "default" / "baseline.json").exists()
    assert [type(o).__name__ for o in build_observers(Settings(data_dir=tmp_path))] == ["Detection"]
    assert build_observers(Settings(data_dir=tmp_path))[0].mode == "protect"
    res = r.invoke(
        main, ["sensor", "read", str(ATTACK), "--data-dir", str(tmp_path), "--jsonl", "-", "--no-progress"]
    )
    assert res.exit_code == 0
    events = [orjson.loads(line) for line in res.stdout.splitlines() if line.startswith("{")]
    by_id = {e["id"]: e for e in events}
    alerts = [e for e in events if e["kind"] == "alert"]
    assert any(a["fields"]["layer"] == "baseline" for a in alerts)
    for a in alerts:
        frames = sorted(
            {f for i in a["fields"]["evidence"] if i in by_id for f in by_id[i]["origin"]["frames"]}
        )
        assert a["origin"]["frames"] == frames
    talker = next(a for a in alerts if a["fields"]["rule_id"] == "baseline.talker")
    res = r.invoke(main, ["detect", "accept", talker["id"], "--data-dir", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "accepted into the baseline" in res.output
    state = load_json(tmp_path / "detect" / "default" / "baseline.json")
    assert talker["fields"]["baseline_entry"]["key"] in state["talkers"]
    res = r.invoke(main, ["detect", "run", "--data-dir", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "events scored" in res.output
    res = r.invoke(main, ["alerts", "--data-dir", str(tmp_path), "--severity", "critical", "--json"])
    assert res.exit_code == 0
    assert all(orjson.loads(x)["fields"]["severity"] == "critical" for x in res.stdout.splitlines() if x)


def _mb_write(i: int, ts: float, address: int, action: str = "write") -> Event:
    return Event(
        id=f"w{i}",
        ts=ts,
        kind="modbus",
        tenant="t",
        sensor="s",
        src=Endpoint("10.0.0.5", 40000 + i % 2, "02:00:00:00:00:05"),
        dst=Endpoint("10.0.0.10", 502, "02:00:00:00:00:10"),
        action=action,
        fields={"func": "WRITE_SINGLE_REGISTER", "address": address, "values": [1]},
        origin=Origin("c", (i,)),
    )


def test_known_traffic_fast_path_still_checks_writes():
    """Events of a known pair and operation take the cached path; writes are still range-checked."""
    b = Baseline()
    for i in range(10):
        b.learn(_mb_write(i, 100.0 + i, 10 + i))
    assert [b.check(_mb_write(20 + k, 200.0 + k, 12)) for k in range(3)] == [[], [], []]
    out = b.check(_mb_write(30, 210.0, 500))  # the same endpoints: known pair, cached verdict
    assert [a.fields["rule_id"] for a in out] == ["baseline.write"]
    assert "learned range WRITE_SINGLE_REGISTER:10..WRITE_SINGLE_REGISTER:19" in out[0].fields["reason"]["en"]
    assert b.accept(out[0].fields["baseline_entry"])
    assert b.check(_mb_write(31, 211.0, 500)) == []
    # a new operation of the same endpoints is not covered by the cached verdict
    out = b.check(dataclasses.replace(_mb_write(32, 212.0, 12), fields={"func": "READ_COILS"}, action="read"))
    assert [a.fields["rule_id"] for a in out] == ["baseline.operation"]


def test_connections_of_one_client_share_their_event_info():
    """The per-event keys depend on the ports only through the service port and the side holding it:
    a client's next connection (new source port, new Endpoint objects) reuses them, and so the known-
    traffic verdict; another service port or the reverse direction does not."""
    from detect.baseline import EventInfo, event_info

    def one(port: int, dport: int = 502, reverse: bool = False) -> Event:
        c = Endpoint("10.0.0.5", port, "02:00:00:00:00:05")
        s = Endpoint("10.0.0.10", dport, "02:00:00:00:00:10")
        e = _mb_write(port, 100.0, 12)
        return dataclasses.replace(e, src=s, dst=c) if reverse else dataclasses.replace(e, src=c, dst=s)

    infos = [event_info(one(p)) for p in (40000, 40001, 51234)]
    assert infos[0] is infos[1] is infos[2]
    fresh = EventInfo(one(40002), "WRITE_SINGLE_REGISTER")
    slots = EventInfo.__slots__
    assert [getattr(fresh, k) for k in slots] == [getattr(infos[0], k) for k in slots]
    assert event_info(one(40000, 503)) is not infos[0]
    rev = event_info(one(40000, reverse=True))
    assert rev is not infos[0]
    assert (rev.client, rev.server, rev.sport) == (infos[0].client, infos[0].server, 502)
    # both ports ephemeral: the destination serves; a low source port below an ephemeral one: the source
    x, y = one(40000, 50000), one(1000, 50000)
    assert (event_info(x).server, event_info(x).sport) == ("10.0.0.10", 50000)
    assert (event_info(y).server, event_info(y).sport) == ("10.0.0.5", 1000)
    b = Baseline()
    b.learn(one(40000))
    assert b.check(one(45000)) == []
    assert [a.fields["rule_id"] for a in b.check(one(45000, 503))] == ["baseline.talker"]


def test_block_write_checked_point_by_point_when_it_leaves_the_range():
    """A multi-register write inside the learned range passes at once; one reaching past it names the
    first register outside."""
    b = Baseline()
    for i in range(10):
        b.learn(_mb_write(i, 100.0 + i, 10 + i))

    def block(i: int, address: int, n: int) -> Event:
        e = _mb_write(i, 200.0 + i, address)
        return dataclasses.replace(e, fields={**e.fields, "values": [1] * n})

    assert b.check(block(1, 10, 10)) == []
    out = b.check(block(2, 17, 5))
    assert [a.fields["rule_id"] for a in out] == ["baseline.write"]
    assert out[0].fields["baseline_entry"]["key"].endswith("|WRITE_SINGLE_REGISTER:20")
    assert [a.fields["rule_id"] for a in b.check(block(3, -1, 2))] == ["baseline.write"]  # ref ...:-1


def _cip(i: int, ts: float, cport: int, from_server: bool) -> Event:
    c = Endpoint("10.0.0.5", cport, "02:00:00:00:00:05")
    s = Endpoint("10.0.0.10", 44818, "02:00:00:00:00:10")
    return Event(id=f"c{i}", ts=ts, kind="enip", tenant="t", sensor="s", src=s if from_server else c,
                 dst=c if from_server else s, action="read", fields={"service": "Get_Attribute_Single"},
                 origin=Origin("c", (i,)))


def test_known_service_port_in_the_ephemeral_range_is_the_server():
    """EtherNet/IP's 44818 lies above EPHEMERAL_MIN; a client's next connection (new ephemeral port, 50000+)
    is the same talker pair, whichever side sends."""
    from detect.baseline import server_side, service_port

    for from_server in (False, True):
        ev = _cip(0, 1.0, 50123, from_server)
        client, server = server_side(ev)
        assert (client.ip, server.ip, service_port(ev)) == ("10.0.0.5", "10.0.0.10", 44818)
    b = Baseline()
    for i in range(6):
        b.learn(_cip(i, 10.0 + i, 50000, i % 2 == 1))
    alerts = [a for i in range(6) for a in b.check(_cip(10 + i, 100.0 + i, 51000 + i, i % 2 == 1))]
    assert alerts == []
