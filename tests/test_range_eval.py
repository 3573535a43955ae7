"""Issue 5's cyber-range criterion: every injected attack detected, no alert on clean baseline days.

`icsight range eval` learns each site's baseline day, then scores other days of the same plant (other
seeds) and the attack day with the detection harness. All layers are on (rules with their learned
tuning, baseline, process and timing, model).
"""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from cyberrange.evaluate import build_dataset, sites
from detect.eval import load_dataset
from icsight.cli import main


def test_sites_and_dataset_layout(tmp_path):
    assert sites() == ["bodyshop", "substation", "water"]
    tags = build_dataset("water", tmp_path, learn_s=120.0, score_s=1200.0, clean_days=2)
    assert tags == ["control_water", "clean1_water", "clean2_water", "attack_water"]
    days = {d.tag: d for d in load_dataset(tmp_path)}
    assert [t for t, d in days.items() if d.normal] == ["control_water"]
    assert days["clean1_water"].windows == [] and days["clean2_water"].windows == []
    assert len(days["attack_water"].windows) >= 11
    # clean days are other days of the same plant: same hosts, different traffic
    assert (tmp_path / "clean1_water.pcap").read_bytes() != (tmp_path / "clean2_water.pcap").read_bytes()
    with pytest.raises(ValueError, match="raise --score"):
        build_dataset("water", tmp_path / "short", learn_s=60.0, score_s=300.0)


@pytest.mark.slow
def test_every_attack_detected_and_clean_days_silent():
    res = CliRunner().invoke(
        main,
        ["range", "eval", "--no-ablation", "--learn", "4h", "--score", "30m", "--clean-days", "2", "--json"],
    )
    rep = json.loads(res.stdout)
    for site, r in rep["sites"].items():
        c = r["criterion"]
        assert c["attacks"] >= 9, site
        assert c["attacks_missed"] == [], (site, c)
        assert c["clean_day_alerts"] == 0, (site, c["clean_day_alerts_by_detector"])
        assert c["clean_hours"] >= 0.9
    assert rep["met"] is True and res.exit_code == 0


def test_criterion_fails_when_the_learning_day_is_too_short():
    """The check can fail: learning two minutes of the plant leaves normal traffic unknown."""
    res = CliRunner().invoke(
        main, ["range", "eval", "water", "--no-ablation", "--learn", "2m", "--score", "20m", "--json"]
    )
    rep = json.loads(res.stdout)
    c = rep["sites"]["water"]["criterion"]
    assert c["clean_day_alerts"] > 0 and c["met"] is False
    assert res.exit_code == 1
