"""Reading the generator's labels and attack windows back, and matching sensor events to them."""

from __future__ import annotations

import csv
from collections.abc import Iterable
from pathlib import Path
from typing import Any


def read_labels(path: str | Path) -> dict[int, tuple[str, str]]:
    """frame number -> (label, technique) for every frame."""
    with open(path, newline="") as f:
        return {int(r["frame_no"]): (r["label"], r["technique"]) for r in csv.DictReader(f)}


def read_windows(path: str | Path) -> list[dict[str, Any]]:
    """Attack windows in start order: attack, technique, hosts (list), start, end (epoch seconds)."""
    with open(path, newline="") as f:
        return [
            {
                "attack": r["attack"],
                "technique": r["technique"],
                "hosts": r["hosts"].split(),
                "start": float(r["start"]),
                "end": float(r["end"]),
            }
            for r in csv.DictReader(f)
        ]


def events_by_attack(
    events: Iterable[Any], labels: dict[int, tuple[str, str]]
) -> dict[tuple[str, str], list[Any]]:
    """Sensor events carried (at least in part) by frames labeled with each (attack, technique)."""
    out: dict[tuple[str, str], list[Any]] = {}
    for e in events:
        seen = set()
        for f in e.origin.frames:
            lab = labels.get(f)
            if lab is not None and lab[0] != "normal" and lab not in seen:
                seen.add(lab)
                out.setdefault(lab, []).append(e)
    return out


def operation(e: Any) -> str:
    """A short name of what an event did: the protocol's function/type, else its action."""
    f = e.fields
    return str(
        f.get("function")
        or f.get("func")
        or f.get("u_function")
        or f.get("link_function")
        or (f.get("type") if e.kind == "iec104" else None)
        or e.action
    )
