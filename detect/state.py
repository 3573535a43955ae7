"""Learned detection state per site (tenant), kept in the data directory so it survives restarts.

Layout: `DATA_DIR/detect/<tenant>/` holds one JSON file per learned layer (`baseline.json`,
`process.json`), the rule tuning (`rule_tuning.json`, detect/tuning.py) and `models/<name>.joblib` +
`models/<name>.json` (the model and its metadata: feature names, training window, library versions).
JSON is written atomically (temp file + rename), so a crash while saving leaves the previous state
intact.

Also the alert constructor the learned layers share (`make_alert`): it uses `detect.alerts` (the rule
layer's alert model) when that module provides `make_alert`, and builds the same shape itself otherwise.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from icsight.events import Endpoint, Event, Origin

SEVERITIES = ("info", "low", "medium", "high", "critical")
_SAFE = re.compile(r"[^A-Za-z0-9_.-]")


class StateError(ValueError):
    """Learned state is missing, unreadable or does not fit this version of icsight."""


def state_dir(data_dir: str | Path, tenant: str) -> Path:
    """`DATA_DIR/detect/<tenant>` (the tenant name made file-system safe)."""
    return Path(data_dir) / "detect" / (_SAFE.sub("_", tenant) or "default")


def save_json(path: Path, obj: Any) -> None:
    """Write JSON atomically (temp file in the same directory, then rename)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(obj, sort_keys=True, indent=1, ensure_ascii=False), encoding="utf-8")
    os.replace(tmp, path)


def load_json(path: Path) -> Any | None:
    """The JSON at `path`, or None when there is none. :raise StateError: the file is not valid JSON."""
    if not path.exists():
        return None
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise StateError(f"{path}: cannot read learned state: {e}") from e


def has_learned_state(data_dir: str | Path, tenant: str) -> bool:
    """True when any learned layer (baseline, process profile or model) is saved for this site."""
    return has_state_in(state_dir(data_dir, tenant))


def has_state_in(directory: Path) -> bool:
    """True when `directory` holds any saved learned layer."""
    return any((directory / n).exists() for n in ("baseline.json", "process.json", "models/window.joblib"))


def _alert_id(detector: str, key: str, evidence: Sequence[Event], ts: float) -> str:
    # one update of the joined parts (= detector, then "\x1f" + each of key, ts, evidence ids)
    parts = "\x1f".join([detector, key, repr(round(ts, 6)), *(e.id for e in evidence)])
    return "al" + hashlib.blake2b(parts.encode(), digest_size=12).hexdigest()


def make_alert(
    *,
    detector: str,
    layer: str,
    title_zh: str,
    title_en: str,
    severity: str,
    reason_zh: str,
    reason_en: str,
    evidence: Sequence[Event],
    key: str,
    ts: float | None = None,
    techniques: Iterable[str] = (),
    extra: Mapping[str, Any] | None = None,
    group: str | None = None,
) -> Event:
    """One alert event (kind "alert", action "alert") whose origin frames are those of its evidence.

    `key` identifies the deviation; `group` (default: `key`) is what de-duplication groups by.
    """
    if severity not in SEVERITIES:
        raise ValueError(f"severity {severity!r} not in {SEVERITIES}")
    ev0 = evidence[0] if evidence else None
    ts = ts if ts is not None else (ev0.ts if ev0 is not None else 0.0)
    if len(evidence) == 1:
        frames = sorted(set(evidence[0].origin.frames))
    else:
        frames = sorted({f for e in evidence for f in e.origin.frames})
    capture = ev0.origin.capture if ev0 is not None else ""
    fields: dict[str, Any] = {
        "rule_id": detector,
        "detector": detector,
        "title": {"zh": title_zh, "en": title_en},
        "severity": severity,
        "layer": layer,
        "reason": {"zh": reason_zh, "en": reason_en},
        "techniques": list(techniques),
        "evidence": [e.id for e in evidence],
        "group": {"key": group or key},
        "count": len(evidence),
        "key": key,
    }
    if extra:
        fields.update(extra)
    return Event(
        id=_alert_id(detector, key, evidence, ts),
        ts=ts,
        kind="alert",
        tenant=ev0.tenant if ev0 is not None else "default",
        sensor=ev0.sensor if ev0 is not None else "",
        src=ev0.src if ev0 is not None else Endpoint(),
        dst=ev0.dst if ev0 is not None else Endpoint(),
        action="alert",
        fields=fields,
        origin=Origin(capture, tuple(frames)),
    )
