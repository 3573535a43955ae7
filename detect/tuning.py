"""Rule tuning learned per site: the rule alerts a site's normal traffic raises are not alerts there.

A rule is written for every site: "a Modbus write from a host outside the engineering list", "an IEC 104
control command". At one plant the HMI writes the inlet valve every five minutes; at another the SCADA
master sends a control command every half hour. While the learned layers learn (learning mode, or
`icsight detect learn`), the rules run too, and every alert they raise is recorded here by its tuning key:
the rule id and the alert's group (by default the source and destination addresses; a windowed rule's
`count.by` / `sequence.by` keys). In protect mode a rule alert whose key was learned is dropped (and
counted); the same rule still fires for any other pair of hosts. `icsight detect accept ALERT_ID` adds a
rule alert's key the same way.

Critical rules (PLC stop, firmware/program download, factory reset, ...) are never learned: seeing one in
the learning period does not make the next one normal. They can still be accepted one key at a time.

State: `DATA_DIR/detect/<tenant>/rule_tuning.json`, plain JSON: per key the rule id, the group, when it
was first and last seen, how often, and whether it was learned or accepted (by which alert).
"""

from __future__ import annotations

import json
from typing import Any

from icsight.events import Event

FILE = "rule_tuning.json"
NEVER_LEARNED = frozenset({"critical"})   # severities a learning run never turns into normal


def match_key(rule_id: Any, group: Any) -> str:
    """`rule_id|[[path, value], ...]` (group items sorted by path)."""
    items = sorted(group.items()) if isinstance(group, dict) else group
    return f"{rule_id}|{json.dumps(items, default=str, ensure_ascii=False, separators=(',', ':'))}"


def tuning_key(alert: Event) -> str:
    """The key of a rule alert: its rule id and group (`match_key`)."""
    f = alert.fields
    return match_key(f.get("rule_id"), f.get("group") or {})


class RuleTuning:
    """The learned (and accepted) rule-alert keys of one site."""

    def __init__(self, state: dict[str, Any] | None = None) -> None:
        self.entries: dict[str, dict[str, Any]] = dict((state or {}).get("entries", {}))
        self.dropped = 0   # protect mode: rule alerts dropped because their key is known

    def __len__(self) -> int:
        return len(self.entries)

    @staticmethod
    def learnable(alert: Event) -> bool:
        """Only rule-layer alerts below critical severity are learned."""
        f = alert.fields
        return f.get("layer") == "rule" and f.get("severity") not in NEVER_LEARNED

    def _record(self, alert: Event, how: str, by: str | None = None) -> bool:
        key = tuning_key(alert)
        e = self.entries.get(key)
        if e is None:
            f = alert.fields
            e = {"rule_id": f.get("rule_id"), "group": f.get("group") or {}, "how": how,
                 "first": alert.ts, "last": alert.ts, "count": 1}
            if by:
                e["by"] = by
            self.entries[key] = e
            return True
        e["last"] = max(e["last"], alert.ts)
        e["first"] = min(e["first"], alert.ts)
        e["count"] += 1
        return False

    def learn(self, alert: Event) -> None:
        """Learning mode: a rule alert raised by normal traffic."""
        if self.learnable(alert):
            self._record(alert, "learned")

    def accept(self, alert: Event) -> bool:
        """An operator accepts a rule alert as normal for the site (any severity). False if already known.

        :raise ValueError: not a rule-layer alert.
        """
        if alert.fields.get("layer") != "rule":
            raise ValueError(f"alert {alert.id} is not a rule alert")
        return self._record(alert, "accepted", by=alert.id)

    def known(self, alert: Event) -> bool:
        """Protect mode: True (and counted) when this rule alert's key is normal for the site."""
        return self._drops(tuning_key(alert))

    def mutes(self, rule: Any, group: dict[str, Any]) -> bool:
        """The rule engine's `muted` hook: the same test as `known`, before the alert is built."""
        return self._drops(match_key(rule.id, group))

    def _drops(self, key: str) -> bool:
        if key in self.entries:
            self.dropped += 1
            return True
        return False

    def to_state(self) -> dict[str, Any]:
        return {"version": 1, "entries": self.entries}
