"""`icsight demo` as `make demo` runs it: a fresh data directory, real output, alerts by attack."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_demo_runs_and_shows_assets_attacks_and_alerts(tmp_path):
    d = tmp_path / "demo"
    (d).mkdir()
    (d / "stale.txt").write_text("from an earlier run")
    r = subprocess.run([sys.executable, "-m", "icsight.cli", "demo", "--data-dir", str(d)],
                       capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert r.returncode == 0, r.stderr
    out = r.stdout
    assert not (d / "stale.txt").exists()                       # a fresh data directory
    assert (d / "events.sqlite").exists() and (d / "demo.pcap").exists()
    assert "Schneider Electric" in out and "资产 Assets" in out  # identity from device identification
    assert "攻击窗口 Attack windows" in out
    windows = [line for line in out.splitlines() if line.startswith("  08:")]
    assert len(windows) >= 10
    # most attack windows show at least one alert (the learned baseline + rules at work)
    blocks = out.split("\n  08:")[1:]
    assert sum("ALERT" in b for b in blocks) >= 9
    assert f"icsight events --data-dir {d}" in out               # says where the data went
