"""The CLI as a user runs it: a real process, a real data directory, real captures."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from icsight import errors
from icsight.events import Event
from tests.conftest import PCAPS, need_shared

ROOT = Path(__file__).resolve().parent.parent


def icsight(*args: str, env_extra: dict | None = None) -> subprocess.CompletedProcess:
    import os

    env = {**os.environ, **(env_extra or {})}
    return subprocess.run([sys.executable, "-m", "icsight.cli", *args], capture_output=True, text=True,
                          cwd=ROOT, env=env, timeout=300)


def test_read_jsonl_stdout_is_only_events_and_store_is_idempotent(tmp_path):
    cap = need_shared(PCAPS / "modbus" / "modbus_example.pcap")
    r = icsight("sensor", "read", str(cap), "--data-dir", str(tmp_path), "--jsonl", "-")
    assert r.returncode == 0, r.stderr
    events = [Event.from_json(line) for line in r.stdout.splitlines()]
    assert events and all(e.origin.capture == "modbus_example.pcap" for e in events)
    assert any(e.kind == "modbus" for e in events)
    assert "frames" in r.stderr                      # the summary goes to stderr
    q1 = icsight("events", "--data-dir", str(tmp_path), "--json")
    assert q1.returncode == 0, q1.stderr
    assert len(q1.stdout.splitlines()) == len(events)
    r2 = icsight("sensor", "read", str(cap), "--data-dir", str(tmp_path))
    assert r2.returncode == 0
    q2 = icsight("events", "--data-dir", str(tmp_path), "--json")
    assert q2.stdout == q1.stdout                    # re-ingesting stored nothing new


def test_data_dir_from_environment(tmp_path):
    cap = need_shared(PCAPS / "modbus" / "mod_43.pcap")
    r = icsight("sensor", "read", str(cap), env_extra={"ICSIGHT_DATA_DIR": str(tmp_path)})
    assert r.returncode == 0, r.stderr
    assert (tmp_path / "events.sqlite").exists()


def test_truncated_capture_exit_code_and_kept_events(tmp_path):
    cap = need_shared(PCAPS / "modbus" / "modbus_example.pcap")
    cut = tmp_path / "cut.pcap"
    raw = cap.read_bytes()
    cut.write_bytes(raw[: len(raw) * 2 // 3])
    r = icsight("sensor", "read", str(cut), "--data-dir", str(tmp_path / "d"), "--jsonl", "-")
    assert r.returncode == errors.E_CAPTURE
    assert "cut.pcap at frame" in r.stderr
    kept = [Event.from_json(line) for line in r.stdout.splitlines()]
    assert any(e.kind == "modbus" for e in kept)
    q = icsight("events", "--data-dir", str(tmp_path / "d"), "--json")
    assert len(q.stdout.splitlines()) == len(kept)


def test_missing_capture_and_bad_config(tmp_path):
    r = icsight("sensor", "read", str(tmp_path / "nope.pcap"), "--data-dir", str(tmp_path))
    assert r.returncode == errors.E_CAPTURE and "nope.pcap" in r.stderr
    (tmp_path / "icsight.yml").write_text("sensr: typo\n")
    r = icsight("sensor", "read", str(tmp_path / "nope.pcap"), "--data-dir", str(tmp_path))
    assert r.returncode == errors.E_CONFIG and "sensr" in r.stderr


def test_assets_and_events_filters(tmp_path):
    cap = need_shared(PCAPS / "modbus" / "mod_43.pcap")
    assert icsight("sensor", "read", str(cap), "--data-dir", str(tmp_path)).returncode == 0
    a = icsight("assets", "--data-dir", str(tmp_path), "--json")
    assert a.returncode == 0, a.stderr
    assets = [json.loads(line) for line in a.stdout.splitlines()]
    assert assets
    e = icsight("events", "--data-dir", str(tmp_path), "--kind", "flow", "--json")
    assert all(json.loads(line)["kind"] == "flow" for line in e.stdout.splitlines())
