"""The alert model: an alert is an `Event` of kind "alert", so it flows, stores and renders like any event.

Envelope: `ts`, `src`, `dst`, `tenant`, `sensor` of the triggering event; `origin.frames` = the frames of
ALL evidence events (sorted, deduplicated), so an analyst can open the capture at every packet behind it.
`fields` (ALERT_FIELDS) say which rule fired, why (zh + en), how it maps to ATT&CK for ICS, GB/T 20986
and GB/T 22239, and which events are the evidence.
"""

from __future__ import annotations

import hashlib
from typing import TYPE_CHECKING, Any

from icsight.events import Event, Origin

if TYPE_CHECKING:
    from detect.engine import Match

KIND = "alert"
ACTION = "alert"
LAYER_RULE = "rule"

ALERT_FIELDS: dict[str, str] = {
    "rule_id": "id of the rule (or baseline entry / model) that fired",
    "title": "{zh, en} title of the rule",
    "severity": "info | low | medium | high | critical",
    "layer": "rule | baseline | process | model: the detection layer",
    "protocol": "protocol folder of the rule",
    "reason": "{zh, en} why it fired: the conditions that matched, with the values seen",
    "techniques": "MITRE ATT&CK for ICS technique ids",
    "category": "GB/T 20986-2023 category (类别 or 类别/子类)",
    "controls": "related GB/T 22239-2019 items (GB/T 28448 test-unit ids)",
    "evidence": "ids of the events behind the alert, in stream order",
    "group": "the group key ({path: value}) of windowed rules, or of the dedup key",
    "count": "number of evidence events (distinct values for distinct counts)",
}

SEVERITIES = ("info", "low", "medium", "high", "critical")


def alert_id(rule_id: str, trigger_id: str) -> str:
    """Deterministic id (rule + triggering event), so re-running a capture inserts nothing twice."""
    return hashlib.blake2b(f"{rule_id}\x1f{trigger_id}".encode(), digest_size=12).hexdigest()


class AlertBuilder:
    """Turns engine matches into alert events."""

    def build(self, m: Match) -> Event:
        rule, ev = m.rule, m.event
        frames = sorted({f for e in m.evidence for f in e.origin.frames})
        fields: dict[str, Any] = {
            "rule_id": rule.id,
            "title": {"zh": rule.title.zh, "en": rule.title.en},
            "severity": rule.severity,
            "layer": LAYER_RULE,
            "protocol": rule.protocol,
            "reason": m.reason,
            "techniques": list(rule.techniques),
            "category": rule.category,
            "controls": list(rule.controls),
            "evidence": [e.id for e in m.evidence],
            "group": m.group,
            "count": m.count,
        }
        return Event.fast(alert_id(rule.id, ev.id), ev.ts, KIND, ev.tenant, ev.sensor, ev.src, ev.dst,
                          ACTION, fields, Origin(ev.origin.capture, tuple(frames)))
