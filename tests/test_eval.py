"""The evaluation harness on a small synthetic directory in the QUT layout, and (slow) on the real QUT dir."""

from __future__ import annotations

import csv
import gzip
import json

import orjson
import pytest
from click.testing import CliRunner
from scapy.layers.inet import IP, TCP, UDP
from scapy.layers.l2 import ARP, Ether
from scapy.utils import wrpcap

from detect.eval import attack_free_hours, evaluate, incidents, score_day
from icsight.cli import main
from tests.conftest import DATASETS, need_shared

A_MAC, B_MAC, X_MAC = "02:00:00:00:00:01", "02:00:00:00:00:02", "02:00:00:00:00:66"
A, B, X = "10.0.0.1", "10.0.0.2", "10.0.0.66"
BCAST = "ff:ff:ff:ff:ff:ff"


def _background(t0: float, seconds: int) -> list:
    """A broadcasts NBNS-like UDP every 5 s; A ARPs for B every 30 s and B answers."""
    pkts = []
    for s in range(0, seconds, 5):
        p = (
            Ether(src=A_MAC, dst=BCAST)
            / IP(src=A, dst="10.0.0.255")
            / UDP(sport=137, dport=137)
            / (b"x" * 50)
        )
        p.time = t0 + s
        pkts.append(p)
        if s % 30 == 0:
            q = Ether(src=A_MAC, dst=BCAST) / ARP(op=1, hwsrc=A_MAC, psrc=A, pdst=B)
            r = Ether(src=B_MAC, dst=A_MAC) / ARP(op=2, hwsrc=B_MAC, psrc=B, hwdst=A_MAC, pdst=A)
            q.time, r.time = t0 + s + 0.5, t0 + s + 0.501
            pkts += [q, r]
    return pkts


def _attack(t: float, kind: str) -> list:
    if kind == "scan":
        pk = [Ether(src=X_MAC, dst=BCAST) / ARP(op=1, hwsrc=X_MAC, psrc=X, pdst=B)]
        pk += [
            Ether(src=X_MAC, dst=B_MAC) / IP(src=X, dst=B) / TCP(sport=40000 + i, dport=i + 1, flags="S")
            for i in range(30)
        ]
    else:  # ARP poisoning: X claims to be A
        pk = [
            Ether(src=X_MAC, dst=B_MAC) / ARP(op=2, hwsrc=X_MAC, psrc=A, hwdst=B_MAC, pdst=B)
            for _ in range(3)
        ]
    for i, p in enumerate(pk):
        p.time = t + 0.2 + i * 0.01
    return pk


def make_dataset(d, hours: float = 1.0) -> dict:
    """Two control days and one attack day with three windows, labels, per-second counts, manifest."""
    secs = int(hours * 3600)
    man = []
    for tag, t0 in (("control_a", 1.0e9), ("control_b", 1.0e9 + 86400)):
        wrpcap(str(d / f"{tag}.view.pcap"), _background(t0, secs))
        (d / f"{tag}.attack_windows.csv").write_text(
            "attack,hosts,start_epoch_utc,end_epoch_utc,duration_s\n"
        )
        man.append({"capture": tag, "capture_start_epoch_utc": t0})
    t0 = 1.0e9 + 2 * 86400
    windows = [("scan", t0 + 600, t0 + 605), ("poison", t0 + 2000, t0 + 2010), ("scan", t0 + 2400, t0 + 2403)]
    pkts = _background(t0, secs)
    for kind, s, _ in windows:
        pkts += _attack(s, kind)
    pkts.sort(key=lambda p: float(p.time))
    wrpcap(str(d / "attack_x.view.pcap"), pkts)
    with (d / "attack_x.attack_windows.csv").open("w") as f:
        f.write("attack,hosts,start_epoch_utc,end_epoch_utc,duration_s\n")
        for k, s, e in windows:
            f.write(f"{k},,{s:.6f},{e:.6f},{e - s:.3f}\n")
    with gzip.open(d / "attack_x.frame_labels.csv.gz", "wt") as f:
        w = csv.writer(f)
        w.writerow(["frame_no", "time_epoch_utc", "protocol", "window_attack", "label"])
        for i, p in enumerate(pkts, 1):
            t = float(p.time)
            inwin = next((k for k, s, e in windows if s - 1 <= t <= e + 2), "normal")
            attacker = p.src == X_MAC
            w.writerow([i, f"{t:.6f}", "x", inwin, int(inwin != "normal" and attacker)])
    with gzip.open(d / "attack_x.per_second_counts.csv.gz", "wt") as f:
        w = csv.writer(f)
        w.writerow(
            [
                "second",
                "master_tcp",
                "slave_tcp",
                "slave_attacker_mac",
                "attacker_tcp",
                "window_attack",
                "label",
            ]
        )
        for s in range(secs):
            t = t0 + s
            k = next((k for k, a, b in windows if a <= t <= b), "normal")
            burst = 80 if k == "scan" else 0
            w.writerow([s, 2 + s % 2, 2 + burst, 1 if burst else 0, burst, k, int(k != "normal")])
    man.append({"capture": "attack_x", "capture_start_epoch_utc": t0})
    (d / "manifest.json").write_text(json.dumps(man))
    return {"windows": windows, "t0": t0}


def test_metric_helpers():
    assert [len(g) for g in incidents([0, 30, 95, 200, 259, 400])] == [2, 1, 2, 1]
    assert attack_free_hours(0, 7200, [("a", 100, 200), ("b", 150, 3700)]) == pytest.approx(
        (7200 - 3603) / 3600
    )
    sd = score_day([99.5, 5000.0, 5030.0], [("a", 100, 110), ("b", 300, 310)], 0, 7200, [100.3])
    assert [w["detected"] for w in sd["windows"]] == [True, False]
    assert sd["windows"][0]["ttd_s"] == pytest.approx(-0.5) and sd["windows"][0][
        "ttd_first_frame_s"
    ] == pytest.approx(-0.8)
    assert sd["false_incidents"] == 1  # 5000 and 5030 are one incident


def test_harness_on_synthetic_qut_layout(tmp_path):
    d = tmp_path / "ds"
    d.mkdir()
    make_dataset(d)
    r = evaluate(d)
    assert r["normal_days"] == ["control_a", "control_b"] and r["attack_days"] == ["attack_x"]
    o = r["overall"]
    assert (o["windows"], o["detected"], o["window_recall"]) == (3, 3, 1.0)
    assert o["false_incidents"] == 0 and o["false_incidents_per_hour"] == 0.0
    assert 0 <= o["ttd_median_s"] <= 1.0
    assert o["frame_precision"] > 0.9 and o["frame_recall"] > 0.9
    assert set(r["per_attack_type"]) == {"scan", "poison"}
    assert r["per_attack_type"]["poison"]["detected"] == 1
    assert [a["layers"] for a in r["ablation"]][-1] == ["rules", "baseline", "process", "model"]
    base = next(a for a in r["ablation"] if a["layers"] == ["rules", "baseline"])
    assert base["window_recall"] == 1.0
    assert r["control_cv"]["false_incidents_per_hour"] == 0.0
    s = r["series"]
    # learning stretch: the first half (the synthetic day is shorter than 2 h): the first window is unscored
    assert s["per_dataset"]["attack_x"]["not_scored_windows"] == 1
    assert (s["windows"], s["detected"]) == (2, 1)  # the burst is seen, ARP poisoning is not in these counts
    assert s["flooding_windows"] == 0


def test_cli_eval_json(tmp_path):
    d = tmp_path / "ds"
    d.mkdir()
    make_dataset(d, hours=0.5)
    res = CliRunner().invoke(main, ["eval", str(d), "--json"])
    assert res.exit_code == 0, res.output
    r = orjson.loads(res.stdout)
    assert {"window_recall", "false_incidents_per_hour"} <= set(r["overall"])
    assert "per_attack_type" in r and "ablation" in r
    res = CliRunner().invoke(main, ["eval", str(d)])
    assert "| rules + baseline |" in res.stdout


@pytest.mark.slow
def test_harness_on_real_qut_training_split():
    d = need_shared(DATASETS / "qut-dnp3-2017-training")
    r = evaluate(d)
    o = r["overall"]
    # the numbers measured when this was written (docs/detection.md); not the targets where unmet
    assert o["windows"] == 412 and o["window_recall"] >= 0.995
    assert all(t["window_recall"] >= 0.95 for t in r["per_attack_type"].values())
    assert o["ttd_median_s"] <= 2.0
    assert o["false_incidents_per_hour"] <= 0.12
    assert r["control_cv"]["false_incidents_per_hour"] <= 0.07
    s = r["series"]
    # link pairs + CUSUM: the targets (>= 50 % of windows, >= 90 % of flooding windows); measured 0.664, 0.977
    assert s["window_recall"] >= 0.60 and s["flooding_window_recall"] >= 0.90
    assert s["false_incidents_per_hour"] <= 0.1


def test_harness_on_cyber_range_modbus_day(tmp_path):
    """Another protocol and the range's label format (start/end, label = attack name | normal)."""
    r = CliRunner()
    for scenario, tag in (("water_baseline", "control_water"), ("water_attack", "attack_water")):
        res = r.invoke(
            main,
            [
                "range",
                "run",
                scenario,
                "-o",
                str(tmp_path / f"{tag}.sim.pcap"),
                "--duration",
                "8m",
                "--labels",
                str(tmp_path / f"{tag}.frame_labels.csv"),
                "--windows",
                str(tmp_path / f"{tag}.attack_windows.csv"),
            ],
        )
        assert res.exit_code == 0, res.output
    rep = evaluate(tmp_path, ablation=[("rules", "baseline", "process", "model")], single=())
    o = rep["overall"]
    assert o["windows"] >= 4 and o["window_recall"] == 1.0
    assert o["frame_recall"] > 0.5 and o["ttd_median_s"] < 2.0


def test_cusum_flags_a_sustained_small_shift_not_a_spike_or_noise():
    import numpy as np

    from detect.models.cusum import Cusum

    rng = np.random.default_rng(7)
    normal = rng.poisson(3.0, size=(2000, 2)).astype(float) - rng.poisson(3.0, size=(2000, 2))
    c = Cusum(k=1.0, h=20.0).fit(normal)
    assert not c.alarms(rng.poisson(3.0, size=(5000, 2)) - rng.poisson(3.0, size=(5000, 2))).any()
    spike = np.zeros((100, 2))
    spike[50, 0] = 15 * c.scale_[0]
    assert not c.alarms(spike).any()                     # one second far off is not a sustained shift
    shift = np.zeros((100, 2))
    shift[40:, 1] = 3 * c.scale_[1]                      # three robust units more, every second from 40 on
    hits = np.flatnonzero(c.alarms(shift))
    assert hits.size and 40 <= hits[0] <= 52             # (3 - k) per second: h = 20 is crossed in ~10 s
    assert c.alarms(-shift).any()                        # both directions
