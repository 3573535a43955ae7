"""Layer 4: the estimator contract, persistence with refusal of mismatches, the window model on a real
control day, the per-second series model, and the retraining job."""

from __future__ import annotations

import json
import time

import numpy as np
import pytest
from sklearn.utils.estimator_checks import parametrize_with_checks

from detect.features import FEATURES, build_matrix
from detect.models import IsolationDetector, ModelMismatch, RobustZDetector, load_model, save_model
from detect.models.series import SeriesModel, series_features
from detect.models.window import WindowModel
from detect.runtime import schedule_retraining
from detect.state import state_dir
from icsight.events import Endpoint, Event, Origin
from icsight.settings import Settings
from sensors.run import events_from_capture
from tests.conftest import DATASETS, need_shared

CONTROL = DATASETS / "qut-dnp3-2017-training" / "control_frequent.attacker_nogoose.pcap.gz"


@parametrize_with_checks([RobustZDetector(quantile=0.1), IsolationDetector(n_estimators=10, quantile=0.1)])
def test_sklearn_estimator_contract(estimator, check):
    check(estimator)


def test_threshold_is_the_training_quantile():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(2000, 3))
    m = RobustZDetector(quantile=0.01).fit(X)
    assert abs(np.mean(m.predict(X) == -1) - 0.01) < 0.002  # calibrated false-alarm rate on training data
    assert m.predict(np.array([[50.0, 0, 0]]))[0] == -1
    z = RobustZDetector(z=6.0).fit(X)
    assert z.offset_ == -6.0
    assert list(z.explain(np.array([0.0, 9.0, 0.0]), ["a", "b", "c"], top=1)[0][:2]) == ["b", 9.0]


def test_save_load_round_trip_and_refusals(tmp_path):
    X = np.random.default_rng(1).poisson(3, size=(200, len(FEATURES))).astype(float)
    m = IsolationDetector(n_estimators=20).fit(X)
    p = tmp_path / "m.joblib"
    save_model(p, m, FEATURES, (1.0, 2.0))
    m2, meta = load_model(p, FEATURES)
    assert np.allclose(m2.decision_function(X), m.decision_function(X))
    assert meta["training_window"] == [1.0, 2.0] and meta["feature_names"] == list(FEATURES)
    assert meta["versions"]["sklearn"]
    with pytest.raises(ModelMismatch, match="trained on features"):
        load_model(p, [*FEATURES, "extra"])
    meta["versions"]["sklearn"] = "0.0.1"
    p.with_suffix(".json").write_text(json.dumps(meta))
    with pytest.raises(ModelMismatch, match=r"trained with sklearn 0\.0\.1"):
        load_model(p, FEATURES)


def test_window_model_on_control_day_and_new_traffic():
    evs = events_from_capture(need_shared(CONTROL))
    X, keys = build_matrix(evs)
    assert X.shape[1] == len(FEATURES) and len(keys) == len(X) > 100
    m = WindowModel()
    for e in evs:
        m.learn(e)
    m.finish_learning()
    assert m.meta["rows"] == len(X)
    # its own training day: at most the calibrated 0.1 % of rows (plus ties) alert
    own = [a for e in evs for a in m.check(e)] + m.flush()
    assert len(own) <= 0.002 * len(X) + 1
    # a host sweeping 200 ports in one window is anomalous, and the alert says which features and why
    t0 = max(e.ts for e in evs) + 100
    scan = [
        Event(
            id=f"s{i}",
            ts=t0 + i * 0.01,
            kind="flow",
            tenant="t",
            sensor="s",
            src=Endpoint("192.168.10.1", 5000 + i, "00:20:06:30:96:60"),
            dst=Endpoint("192.168.10.222", i + 1),
            action="session",
            fields={
                "proto": "tcp",
                "service": None,
                "conn_state": "REJ",
                "orig_bytes": 0,
                "resp_bytes": 0,
                "orig_pkts": 1,
                "resp_pkts": 1,
            },
            origin=Origin("c", (i + 1,)),
        )
        for i in range(200)
    ]
    alerts = [a for e in scan for a in m.check(e)] + m.flush()
    assert 1 <= len(alerts) <= 2 and {a.fields["layer"] for a in alerts} == {
        "model"
    }  # 2 s may span 2 windows
    a = alerts[0]
    assert (
        a.fields["score"] < 0
        and "n_flows=" in a.fields["reason"]["en"]
        and "(normal 1)" in a.fields["reason"]["en"]
    )
    assert a.ts == (int(t0 // 10) + 1) * 10  # the end of the window: when a live sensor could know
    assert set(a.origin.frames) <= set(range(1, 201)) and a.origin.frames


def test_series_model_flags_a_burst():
    rng = np.random.default_rng(2)
    normal = rng.poisson(2, size=(3600, 2)).astype(float)
    m = SeriesModel(["a_dnp3", "b_tcp"]).fit(normal)
    assert len(m.feature_names) == series_features(normal).shape[1] == 6
    test = rng.poisson(2, size=(600, 2)).astype(float)
    test[300:310, 0] = 200
    d = m.decision(test)
    assert (d[300:310] < 0).all()
    assert (d[:290] < 0).mean() < 0.01


def test_retraining_job_runs_on_schedule(tmp_path):
    from storage import open_store

    settings = Settings(data_dir=tmp_path)
    st = open_store(settings)
    evs = [
        Event(
            id=f"e{i}",
            ts=1000.0 + i,
            kind="modbus",
            tenant="default",
            sensor="s",
            src=Endpoint(f"10.0.0.{i % 5 + 2}", 40000),
            dst=Endpoint("10.0.0.10", 502),
            action="read",
            fields={"func": "READ_COILS"},
            origin=Origin("c", (i + 1,)),
        )
        for i in range(600)
    ]
    st.append(evs)
    st.close()
    model_file = state_dir(tmp_path, "default") / "models" / "window.joblib"
    sched = schedule_retraining(settings, lambda: open_store(settings), interval_s=0.2)
    try:
        deadline = time.monotonic() + 15
        while not model_file.exists() and time.monotonic() < deadline:
            time.sleep(0.05)
    finally:
        sched.shutdown(wait=True)
    assert model_file.exists()
    _, meta = load_model(model_file, FEATURES)
    assert meta["training_window"] == [1000.0, 1599.0]


def test_sensor_refuses_mismatched_model_and_keeps_other_layers(tmp_path, caplog):
    from detect.runtime import build_observers, learn

    evs = events_from_capture(need_shared(CONTROL))
    settings = Settings(data_dir=tmp_path)
    learn(settings, evs)
    meta_path = state_dir(tmp_path, "default") / "models" / "window.json"
    meta = json.loads(meta_path.read_text())
    meta["feature_names"] = meta["feature_names"][:-1]
    meta_path.write_text(json.dumps(meta))
    with caplog.at_level("ERROR"):
        (det,) = build_observers(settings)
    assert [layer.name for layer in det.layers] == ["baseline", "process"]
    assert det.mode == "protect"
    assert "model refused" in caplog.text and "trained on features" in caplog.text


def test_series_pairs_flag_traffic_one_end_does_not_see():
    """Both ends of a link count the same packets; 6 extra packets/s at one end only for 5 s is flagged
    through the pair difference, not by either column alone."""
    rng = np.random.default_rng(3)
    base = rng.poisson(2, size=(3600, 1)).astype(float)
    normal = np.hstack([base, base])
    test = np.hstack([b := rng.poisson(2, size=(600, 1)).astype(float), b.copy()])
    test[300:305, 0] += 6
    cols = ["slave_dnp3", "master_dnp3"]
    plain = SeriesModel(cols).fit(normal)
    assert not (plain.decision(test)[300:310] < 0).any()
    for pair_log in (True, False):
        m = SeriesModel(cols, pairs=[("slave_dnp3", "master_dnp3")], pair_log=pair_log).fit(normal)
        assert len(m.feature_names) == m.features(normal).shape[1] == 6 + 2
        d = m.decision(test)
        assert (d[304:306] < 0).all()
        assert (d[:299] < 0).sum() == 0 and (d[340:] < 0).sum() == 0


def _row_by_hand(evs: list[Event], known: set[str]) -> dict[str, float]:
    """The feature columns of one (window, source) row, counted event by event from the definitions."""
    from detect.baseline import Baseline, node, op_of, service_port, unicast_ip, unicast_mac

    c: dict[str, float] = {}
    dsts, ports, ops, lats = set(), set(), set(), []
    fb = fp = 0.0
    for e in evs:
        f = e.fields
        kind_col = {"flow": "n_flows", "arp": "n_arp", "weird": "n_weird"}.get(e.kind, "n_transactions")
        cols = ["n_events", kind_col]
        cols += [f"n_{e.action}"] if f"n_{e.action}" in FEATURES else []
        cols += ["n_arp_reply"] if e.kind == "arp" and f.get("op") == "reply" else []
        cols += ["n_arp_gratuitous"] if e.kind == "arp" and f.get("gratuitous") else []
        cols += ["n_no_response"] if f.get("status") == "no_response" else []
        cols += ["n_exception"] if f.get("exception") else []
        d = e.dst
        broadcast = (d.ip and not unicast_ip(d.ip)) or (d.mac and not unicast_mac(d.mac))
        cols += ["n_broadcast_dst"] if broadcast else []
        cols += ["n_new_talkers"] if Baseline.talker_key(e) not in known else []
        for k in cols:
            c[k] = c.get(k, 0.0) + 1
        if e.kind == "flow":
            fb += float(f.get("orig_bytes") or 0) + float(f.get("resp_bytes") or 0)
            fp += float(f.get("orig_pkts") or 0) + float(f.get("resp_pkts") or 0)
        dsts.add(node(d))
        ports.add(service_port(e))
        ops.add(f"{e.kind}:{op_of(e)}")
        if isinstance(f.get("latency"), int | float):
            lats.append(float(f["latency"]))
    c.update(n_distinct_dst=len(dsts), n_distinct_dst_ports=len(ports), n_distinct_ops=len(ops))
    if fp:
        c["flow_bytes_per_pkt"] = fb / fp
    if lats:
        c["latency_mean"], c["latency_max"] = float(np.mean(lats)), max(lats)
    return c


def test_window_rows_match_the_column_definitions():
    """Rows are counted per kind of exchange and expanded when the window closes: the same columns as
    counting event by event (flows, ARP, weird, exceptions, timeouts, broadcasts, new talkers)."""
    import random

    rng = random.Random(5)
    hosts = [Endpoint(f"10.0.0.{i}", None, f"02:00:00:00:00:{i:02x}") for i in range(1, 5)]
    bcast = Endpoint("10.0.0.255", None, "ff:ff:ff:ff:ff:ff")
    evs = []
    for i in range(3000):
        s, d = rng.choice(hosts), rng.choice([*hosts, bcast])
        s = Endpoint(s.ip, rng.choice([40000, 40001, 502]), s.mac)
        d = Endpoint(d.ip, rng.choice([502, 20000, 41000]), d.mac)
        kind = rng.choice(["modbus", "modbus", "dnp3", "flow", "arp", "weird"])
        f: dict = {"func": rng.choice(["READ_COILS", "WRITE_SINGLE_COIL"])}
        if kind == "flow":
            f = {"proto": "tcp", "service": "modbus", "conn_state": "SF", "orig_bytes": rng.randrange(100),
                 "resp_bytes": rng.randrange(100), "orig_pkts": rng.randrange(1, 9), "resp_pkts": 2}
        elif kind == "arp":
            f = {"op": rng.choice(["request", "reply"]), "gratuitous": rng.random() < 0.2,
                 "sender_ip": s.ip, "sender_mac": s.mac}
        elif kind == "weird":
            f = {"protocol": "modbus", "name": "bad_length"}
        if rng.random() < 0.3:
            f["latency"] = rng.choice([0.01, 2, True, "x", None])
        if rng.random() < 0.1:
            f["exception"] = "ILLEGAL_FUNCTION"
        if rng.random() < 0.1:
            f["status"] = "no_response"
        action = rng.choice(["read", "write", "error", "other"])
        evs.append(Event(f"e{i}", 1000.0 + i * 0.02, kind, "t", "s", s, d, action, f, Origin("c", (i,))))
    known = {f"{h.ip}|10.0.0.2|modbus|502" for h in hosts}
    X, keys = build_matrix(evs, known_pairs=known)
    assert len(keys) > 20
    by_row: dict[tuple[int, str], list[Event]] = {}
    for e in evs:
        by_row.setdefault((int(e.ts // 10), e.src.ip or e.src.mac), []).append(e)
    assert sorted(by_row) == keys
    for x, (b, src) in zip(X, keys, strict=True):
        want = _row_by_hand(by_row[(b, src)], known)
        assert dict(zip(FEATURES, x, strict=True)) == {k: float(want.get(k, 0.0)) for k in FEATURES}, (b, src)
