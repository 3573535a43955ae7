"""Rule tuning (detect/tuning.py): rule alerts raised by a site's normal traffic are learned, and dropped
in protect mode for that rule and host pair only; critical rules are never learned; operators accept.

The traffic is the cyber range's water plant: the HMI writes the inlet valve every five minutes, which
the generic rule `modbus-write-from-non-engineering-host` flags at any site whose lists do not name it.
"""

from __future__ import annotations

import functools
from pathlib import Path

import orjson
import pytest
from click.testing import CliRunner

from cyberrange.generator import Range
from cyberrange.scenario import load_scenario
from detect.runtime import Detection, accept, build_observers, learn_events, load_rule_engine, load_tuning
from detect.state import load_json, state_dir
from detect.tuning import FILE, RuleTuning, tuning_key
from icsight.cli import main
from icsight.errors import ConfigError
from icsight.events import Endpoint, Event, Origin
from icsight.settings import Settings
from sensors.run import events_from_capture

HMI, PLC, INTRUDER = "192.168.10.21", "192.168.10.71", "192.168.10.66"
WRITE_RULE = "modbus-write-from-non-engineering-host"


@functools.cache
def _day(scenario: str, minutes: int, seed_step: int) -> tuple[Path, list[Event]]:
    import tempfile

    d = Path(tempfile.mkdtemp(prefix="icsight-tuning-"))
    sc = load_scenario(scenario, duration=minutes * 60.0)
    cap = d / f"{scenario}.pcap"
    Range(sc, sc.seed + 1000 * seed_step).run(cap)
    return cap, events_from_capture(cap)


def _rule_alerts(events: list[Event], tuning: RuleTuning | None, mode: str = "protect") -> list[Event]:
    det = Detection([], mode, load_rule_engine(), tuning=tuning)
    out = [a for ev in events for a in det(ev) or ()]
    return out + det.finish()


def _alert(rule: str, severity: str, src: str, dst: str, ts: float = 1.0, layer: str = "rule") -> Event:
    return Event(id=f"a-{rule}-{src}-{ts}", ts=ts, kind="alert", tenant="t", sensor="s", src=Endpoint(src),
                 dst=Endpoint(dst), action="alert",
                 fields={"rule_id": rule, "severity": severity, "layer": layer,
                         "group": {"src.ip": src, "dst.ip": dst}},
                 origin=Origin("c", (1,)))


def test_learned_keys_are_per_rule_and_group_and_never_critical():
    t = RuleTuning()
    t.learn(_alert("r-write", "high", HMI, PLC, 1.0))
    t.learn(_alert("r-write", "high", HMI, PLC, 5.0))
    t.learn(_alert("r-stop", "critical", HMI, PLC))
    t.learn(_alert("baseline.talker", "medium", HMI, PLC, layer="baseline"))
    assert len(t) == 1
    (e,) = t.entries.values()
    assert (e["rule_id"], e["how"], e["first"], e["last"], e["count"]) == ("r-write", "learned", 1.0, 5.0, 2)
    assert t.known(_alert("r-write", "high", HMI, PLC, 9.0))
    assert not t.known(_alert("r-write", "high", INTRUDER, PLC))      # another source
    assert not t.known(_alert("r-write", "high", HMI, "192.168.10.72"))   # another destination
    assert not t.known(_alert("r-other", "high", HMI, PLC))           # another rule
    assert not t.known(_alert("r-stop", "critical", HMI, PLC))
    assert t.dropped == 1
    # an operator may accept a critical rule's key; only rule alerts can be accepted here
    assert t.accept(_alert("r-stop", "critical", HMI, PLC)) is True
    assert t.accept(_alert("r-stop", "critical", HMI, PLC)) is False
    assert t.known(_alert("r-stop", "critical", HMI, PLC))
    with pytest.raises(ValueError, match="not a rule alert"):
        t.accept(_alert("process.range", "high", HMI, PLC, layer="process"))
    assert RuleTuning(t.to_state()).entries == t.entries
    assert tuning_key(_alert("r", "low", "a", "b")) == tuning_key(
        Event(id="x", ts=2.0, kind="alert", tenant="t", sensor="s", src=Endpoint(), dst=Endpoint(),
              action="alert", fields={"rule_id": "r", "group": {"dst.ip": "b", "src.ip": "a"}},
              origin=Origin("c", ())))


def test_hmi_writes_learned_from_a_baseline_day_intruder_writes_still_alert():
    _, base = _day("water_baseline", 12, 0)     # two valve writes by the HMI
    _, attack = _day("water_attack", 12, 2)     # another day: the HMI's writes, the intruder's writes
    untuned = _rule_alerts(base, None)
    assert {(a.src.ip, a.dst.ip) for a in untuned if a.fields["rule_id"] == WRITE_RULE} == {(HMI, PLC)}
    _, tuning = learn_events(base, ("rules",))
    assert tuning is not None
    assert any(e["rule_id"] == WRITE_RULE for e in tuning.entries.values())
    before = [a for a in _rule_alerts(attack, None) if a.fields["rule_id"] == WRITE_RULE]
    after = [a for a in _rule_alerts(attack, tuning) if a.fields["rule_id"] == WRITE_RULE]
    assert {a.src.ip for a in before} == {HMI, INTRUDER}
    assert after and {a.src.ip for a in after} == {INTRUDER}
    assert tuning.dropped >= 1
    # every other rule's alerts are untouched (none of them fired on the baseline day)
    other = sorted(a.id for a in _rule_alerts(attack, None) if a.fields["rule_id"] != WRITE_RULE)
    assert other and other == sorted(a.id for a in _rule_alerts(attack, RuleTuning(tuning.to_state()))
                                     if a.fields["rule_id"] != WRITE_RULE)


def test_cli_learn_saves_tuning_sensor_drops_it_and_accept_adds_a_key(tmp_path):
    base_cap, _ = _day("water_baseline", 12, 0)
    attack_cap, _ = _day("water_attack", 12, 2)
    r = CliRunner()
    res = r.invoke(main, ["detect", "learn", str(base_cap), "--data-dir", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert f"rule tuning): {WRITE_RULE}" in res.output
    directory = state_dir(tmp_path, "default")
    state = load_json(directory / FILE)
    assert [e["rule_id"] for e in state["entries"].values()] == [WRITE_RULE]
    assert build_observers(Settings(data_dir=tmp_path))[0].mode == "protect"
    res = r.invoke(main, ["sensor", "read", str(attack_cap), "--data-dir", str(tmp_path), "--jsonl", "-",
                          "--no-progress"])
    assert res.exit_code == 0, res.output
    alerts = [e for e in map(orjson.loads, (x for x in res.stdout.splitlines() if x.startswith("{")))
              if e["kind"] == "alert"]
    writes = [a for a in alerts if a["fields"]["rule_id"] == WRITE_RULE]
    assert writes and {a["src"]["ip"] for a in writes} == {INTRUDER}
    # the operator decides another rule alert is normal here: accepted, it is dropped from then on
    other = next(a for a in alerts if a["fields"]["layer"] == "rule" and a["fields"]["rule_id"] != WRITE_RULE)
    res = r.invoke(main, ["detect", "accept", other["id"], "--data-dir", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "accepted into the rule tuning" in res.output
    tuning = load_tuning(directory)
    assert any(e["how"] == "accepted" and e["by"] == other["id"] for e in tuning.entries.values())
    assert tuning.known(Event.from_dict(other))
    # accepting again says so and changes nothing
    res = r.invoke(main, ["detect", "accept", other["id"], "--data-dir", str(tmp_path)])
    assert res.exit_code == 0 and "already in the rule tuning" in res.output
    assert accept(Settings(data_dir=tmp_path), _alert("r-new", "low", HMI, PLC)) is True


def test_site_lists_from_settings_replace_the_sample_lists(tmp_path):
    """icsight.yml `lists:` names the site's engineering hosts: the HMI's writes are allowed by the rule."""
    cap, _ = _day("water_attack", 12, 2)
    (tmp_path / "icsight.yml").write_text(f"lists:\n  engineering_hosts: [{HMI}, 10.9.9.0/24]\n")
    settings = Settings.load(tmp_path)
    assert settings.lists == {"engineering_hosts": [HMI, "10.9.9.0/24"]}
    (det,) = build_observers(settings, layers=("rules",), mode="protect")
    alerts = [a for ev in events_from_capture(cap) for a in det(ev) or ()]
    writes = {a.src.ip for a in alerts if a.fields["rule_id"] == WRITE_RULE}
    assert writes == {INTRUDER}
    (tmp_path / "icsight.yml").write_text("lists: {engineering_hosts: 10.0.0.1}\n")
    with pytest.raises(ConfigError, match=r"icsight\.yml: lists"):
        Settings.load(tmp_path)
