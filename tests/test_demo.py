"""`icsight demo` as `make demo` runs it: a fresh data directory, real output, alerts by attack."""

from __future__ import annotations

import re
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
    # every attack window shows an alert (rules with the learned tuning, baseline, process, model)
    blocks = out.split("\n  08:")[1:]
    assert sum("ALERT" in b for b in blocks) == len(windows)
    m = re.search(r"Detected: (\d+)/(\d+) attack windows", out)
    assert m and m.group(1) == m.group(2) == str(len(windows))
    # the demo's site config makes the other commands see its tenant
    r2 = subprocess.run(
        [sys.executable, "-m", "icsight.cli", "alerts", "--data-dir", str(d), "--layer", "rule"],
        capture_output=True, text=True, cwd=ROOT, timeout=60,
    )
    assert r2.returncode == 0 and "modbus-write-from-non-engineering-host" in r2.stdout
    assert f"icsight events --data-dir {d}" in out               # says where the data went
