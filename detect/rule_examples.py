"""Prove rules against their captures: every rule fires on its `examples` and stays silent on `negative`.

Used by `icsight rules test` and tests/test_rules_examples.py. A positive example passes when the
rule's alerts over the capture cover every listed frame (subset semantics: an alert's `origin.frames`
hold the frames of all its evidence) and, when `alerts` is given, the rule raised exactly that many.
Events are cached per capture, so many rules on one capture parse it once.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from detect.engine import RuleEngine
from detect.lint import resolve_pcap
from detect.ruleset import Rule
from icsight.events import Event

PASS, FAIL, SKIP = "pass", "fail", "skip"


@dataclass(frozen=True, slots=True)
class ExampleResult:
    rule_id: str
    pcap: str
    positive: bool
    outcome: str          # pass | fail | skip
    message: str
    alerts: int = 0

    def __str__(self) -> str:
        kind = "example" if self.positive else "negative"
        return f"{self.outcome.upper():4} {self.rule_id} {kind} {self.pcap}: {self.message}"


@lru_cache(maxsize=128)
def events_of(path: Path) -> tuple[Event, ...]:
    """Every event of a capture (cached: the sensor is deterministic)."""
    from sensors.run import events_from_capture

    return tuple(events_from_capture(path))


def _protocol_missing(rule: Rule) -> str | None:
    """The sensor module a rule needs when it is not there yet (a parser still being written)."""
    from sensors import PROTOCOLS

    if rule.protocol in ("network",) or rule.protocol in PROTOCOLS:
        return None
    return rule.protocol


def check_rule(rule: Rule, load: Callable[[Path], Iterable[Event]] = events_of) -> list[ExampleResult]:
    """Run one rule over each of its example and negative captures."""
    out: list[ExampleResult] = []
    missing = _protocol_missing(rule)
    for positive, items in ((True, rule.model.examples), (False, rule.model.negative)):
        for ex in items:
            path = resolve_pcap(ex.pcap)
            if path is None:
                out.append(ExampleResult(rule.id, ex.pcap, positive, SKIP, "capture not found"))
                continue
            if missing and positive:
                out.append(ExampleResult(rule.id, ex.pcap, positive, SKIP, f"no sensor module for {missing}"))
                continue
            alerts = RuleEngine([rule]).run(load(path))
            if not positive:
                ok = not alerts
                msg = "silent" if ok else (f"{len(alerts)} alert(s), first at frames "
                                           f"{list(alerts[0].origin.frames)[:10]}")
                out.append(ExampleResult(rule.id, ex.pcap, False, PASS if ok else FAIL, msg, len(alerts)))
                continue
            covered = {f for a in alerts for f in a.origin.frames}
            lost = [f for f in ex.frames if f not in covered]
            problems = []
            if not alerts:
                problems.append("no alert")
            elif lost:
                problems.append(f"frames {lost} are in no alert")
            if ex.alerts is not None and len(alerts) != ex.alerts:
                problems.append(f"{len(alerts)} alerts, expected {ex.alerts}")
            msg = "; ".join(problems) or f"{len(alerts)} alert(s) covering frames {ex.frames}"
            out.append(ExampleResult(rule.id, ex.pcap, True, FAIL if problems else PASS, msg, len(alerts)))
    return out


def check_rules(rules: Iterable[Rule]) -> list[ExampleResult]:
    """`check_rule` over every rule."""
    out: list[ExampleResult] = []
    for r in rules:
        out.extend(check_rule(r))
    return out
