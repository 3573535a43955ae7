"""Golden JSON-lines files guard the sensor's whole output for each capture.

Regenerate with `pytest tests/test_sensors_golden.py --update-golden` and review the diff; never edit
a golden file by hand. Captures over GOLDEN_MAX_FRAMES frames are guarded by the peer comparisons
instead (their goldens would be megabytes).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from sensors.run import events_from_capture
from tests.conftest import GOLDEN, PCAPS, ROOT

GOLDEN_MAX_FRAMES = 3000
CAPTURE_SUFFIXES = (".pcap", ".pcapng", ".cap")


def _frames(p: Path) -> int:
    from sensors.capture import read_capture

    return sum(1 for _ in read_capture(p))


def _captures() -> list[Path]:
    out = []
    for base in (PCAPS, ROOT / "tests" / "data" / "pcaps"):
        if base.exists():
            out += [p for p in sorted(base.rglob("*")) if p.suffix in CAPTURE_SUFFIXES]
    return out


CAPTURES = _captures()


def _golden_path(p: Path) -> Path:
    base = PCAPS if p.is_relative_to(PCAPS) else ROOT / "tests" / "data" / "pcaps"
    rel = p.relative_to(base)
    return GOLDEN / rel.parent / (rel.name + ".jsonl")


@pytest.mark.parametrize("pcap", CAPTURES, ids=lambda p: f"{p.parent.name}/{p.name}")
def test_sensor_golden(pcap: Path, update_golden: bool) -> None:
    if _frames(pcap) > GOLDEN_MAX_FRAMES:
        pytest.skip("large capture: guarded by the peer comparisons")
    got = [e.to_json() for e in events_from_capture(pcap)]
    golden = _golden_path(pcap)
    if update_golden:
        golden.parent.mkdir(parents=True, exist_ok=True)
        golden.write_text("".join(line + "\n" for line in got), encoding="utf-8")
    if not golden.exists():
        pytest.fail(f"no golden file {golden.relative_to(ROOT)}: run pytest --update-golden and review it")
    assert got == golden.read_text(encoding="utf-8").splitlines()


def test_captures_present() -> None:
    if not CAPTURES:
        from tests.conftest import need_shared

        need_shared(PCAPS)
