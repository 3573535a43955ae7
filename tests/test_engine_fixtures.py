"""Matcher fixtures (capa style): tests/fixtures/matcher/*.yml hold a condition or rule fragment, events
and the indexes of the events expected to match (condition) or to raise an alert (rule fragment)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from detect.engine import RuleEngine, compile_condition, compile_test, evaluate
from detect.ruleset import RuleModel, compile_rule
from icsight.events import Endpoint, Event, Origin

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "matcher"
T0 = 1_700_000_000.0
BASE_RULE = {"id": "fixture-rule", "title": {"zh": "测试", "en": "fixture"}, "description": "fixture",
             "severity": "low", "protocol": "network", "category": "其他事件"}


def make_event(i: int, d: dict[str, Any]) -> Event:
    """An event from a fixture mapping (defaults for everything it leaves out)."""
    return Event(id=f"ev{i:04d}", ts=T0 + float(d.get("ts", i)), kind=d.get("kind", "modbus"), tenant="t",
                 sensor="s", src=Endpoint.from_dict(d.get("src")), dst=Endpoint.from_dict(d.get("dst")),
                 action=d.get("action", "read"), fields=d.get("fields") or {},
                 origin=Origin("fixture.pcap", tuple(d.get("frames", [i + 1]))))


def cases() -> list[Any]:
    out = []
    for f in sorted(FIXTURES.glob("*.yml")):
        for c in yaml.safe_load(f.read_text(encoding="utf-8"))["cases"]:
            out.append(pytest.param(c, id=f"{f.stem}: {c['name']}"))
    return out


def test_fixtures_exist() -> None:
    assert len(cases()) >= 30


@pytest.mark.parametrize("case", cases())
def test_matcher_fixture(case: dict[str, Any]) -> None:
    events = [make_event(i, e) for i, e in enumerate(case["events"])]
    lists = case.get("lists") or {}
    if "condition" in case:
        node = compile_condition(case["condition"], lists)
        got = [i for i, e in enumerate(events) if evaluate(node, e)]
        fast = [i for i, e in enumerate(events) if node.test(e)]
        assert fast == got, "Node.test and evaluate disagree"
        compiled = compile_test(node)
        assert [i for i, e in enumerate(events) if compiled(e)] == got, "compile_test and evaluate disagree"
    else:
        model = RuleModel.model_validate({**BASE_RULE, **case["rule"]})
        rule = compile_rule(model, "fixture.yml", None, lists)
        eng = RuleEngine([rule])
        got = [i for i, e in enumerate(events) if eng.process(e)]
        ref = RuleEngine([rule])     # the reference: no index, the uncompiled step of each rule
        want = []
        for i, e in enumerate(events):
            out: list[Event] = []
            for r in ref._candidates(e.kind) if e.kind != "alert" else []:
                m = ref._step(r, e)
                if m is not None:
                    ref._emit(m, e, out)
            if out:
                want.append(i)
        assert want == got, "indexed and reference engines disagree"
    assert got == case["expect"]
