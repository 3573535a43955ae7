"""Live capture on loopback: the sensor watches `lo` while a real pymodbus client talks to a real server.

Needs root (raw sockets); skipped otherwise, and under CI (root) it runs.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from icsight.events import Event
from sensors import points_of

pytestmark = pytest.mark.live

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def need_root():
    if os.geteuid() != 0:
        pytest.skip("live capture needs root (raw sockets)")


def _icsight(*args: str) -> list[str]:
    return [sys.executable, "-m", "icsight.cli", *args]


def test_live_capture_of_real_modbus_stack_flushes_on_sigint(tmp_path, need_root):
    port = _free_port()
    data = tmp_path / "data"
    out = tmp_path / "live.jsonl"
    # A port map entry from the config file: Modbus on an unusual port.
    data.mkdir()
    (data / "icsight.yml").write_text(f"sensor: lab-1\nports:\n  modbus:\n    tcp: [502, {port}]\n")
    sensor = subprocess.Popen(_icsight("sensor", "live", "lo", "--filter", f"tcp port {port}", "--data-dir",
                                       str(data), "--jsonl", str(out)),
                              stderr=subprocess.PIPE, text=True, cwd=ROOT)
    try:
        time.sleep(2.0)          # socket open before traffic starts
        subprocess.run([sys.executable, "-m", "tests.modbus_peer", str(port), "10"], check=True, cwd=ROOT,
                       timeout=60)
        time.sleep(1.0)
    finally:
        sensor.send_signal(signal.SIGINT)
        _, err = sensor.communicate(timeout=30)
    assert sensor.returncode == 0, err
    events = [Event.from_json(line) for line in out.read_text().splitlines()]
    modbus = [e for e in events if e.kind == "modbus"]
    # 10 rounds x 4 requests, each paired with its response in one event
    assert len(modbus) == 40, err
    assert all(e.fields["status"] == "paired" for e in modbus)
    assert {e.fields["func"] for e in modbus} == {"READ_HOLDING_REGISTERS", "WRITE_SINGLE_REGISTER",
                                                   "READ_COILS", "WRITE_SINGLE_COIL"}
    writes = [e for e in modbus if e.fields["func"] == "WRITE_SINGLE_REGISTER"]
    assert [p["value"] for e in writes for p in points_of(e)] == [1000 + i for i in range(10)]
    assert all(len(e.origin.frames) == 2 for e in modbus)
    assert any(e.kind == "flow" and e.dst.port == port for e in events)     # flushed at shutdown
    # the store got the same transactions
    q = subprocess.run(_icsight("events", "--data-dir", str(data), "--kind", "modbus", "--json"),
                       capture_output=True, text=True, cwd=ROOT, check=True)
    assert len(q.stdout.splitlines()) == 40


def test_live_bad_interface_exit_code(tmp_path, need_root):
    r = subprocess.run(_icsight("sensor", "live", "no-such-if0", "--data-dir", str(tmp_path), "--no-store"),
                       capture_output=True, text=True, cwd=ROOT, timeout=60)
    from icsight.errors import E_INTERFACE

    assert r.returncode == E_INTERFACE, r.stderr
    assert "no-such-if0" in r.stderr
