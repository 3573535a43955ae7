"""The range meets the live sensor: a generated day replayed onto a veth pair, and a real S7comm stack
(python-snap7, pure Python) on loopback, each while `icsight sensor live` captures.

Needs root (raw sockets, creating interfaces); skipped otherwise. The veth pair is created and
deleted by the test; nothing else on the machine is touched.
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

pytestmark = pytest.mark.live

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def need_root():
    if os.geteuid() != 0:
        pytest.skip("live capture needs root (raw sockets)")


def _icsight(*args: str) -> list[str]:
    return [sys.executable, "-m", "icsight.cli", *args]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_capturing(proc: subprocess.Popen, timeout: float = 60.0) -> None:
    """Block until the sensor process holds an AF_PACKET socket (its capture is open), not a fixed sleep:
    under load the sensor's start-up (imports, rules) takes anywhere from 1 to 15 s."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1]
        try:
            with open("/proc/net/packet") as f:
                inodes = {line.split()[-1] for line in f.read().splitlines()[1:]}
            fds = {os.readlink(f"/proc/{proc.pid}/fd/{fd}") for fd in os.listdir(f"/proc/{proc.pid}/fd")}
        except OSError:
            fds, inodes = set(), set()
        if any(f"socket:[{i}]" in fds for i in inodes):
            time.sleep(0.3)  # the BPF filter is attached right after the socket is made
            return
        time.sleep(0.1)
    raise AssertionError("the live sensor did not open its capture socket")


def _stop(proc: subprocess.Popen) -> str:
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    return err


@pytest.fixture
def veth(need_root):
    """A veth pair (a, b), up, without addresses or IPv6, so only replayed frames cross it."""
    a, b = f"icra{os.getpid() % 10000}", f"icrb{os.getpid() % 10000}"
    r = subprocess.run(
        ["ip", "link", "add", a, "type", "veth", "peer", "name", b], capture_output=True, text=True
    )
    if r.returncode != 0:
        pytest.skip(f"cannot create a veth pair: {r.stderr.strip()}")
    try:
        for i in (a, b):
            subprocess.run(
                ["sysctl", "-q", "-w", f"net.ipv6.conf.{i}.disable_ipv6=1"], check=False, capture_output=True
            )
            subprocess.run(["ip", "link", "set", i, "up"], check=True)
        yield a, b
    finally:
        subprocess.run(["ip", "link", "del", a], capture_output=True)


def test_replayed_day_on_veth_is_parsed_live_as_generated(tmp_path, veth):
    from cyberrange.generator import Range
    from cyberrange.scenario import load_scenario

    a, b = veth
    sc = load_scenario("water_attack", duration=4 * 60)  # baseline polling + two attacks
    pcap = tmp_path / "w.pcap"
    summary = Range(sc).run(pcap, tmp_path / "w.csv", tmp_path / "w.windows.csv")
    out = tmp_path / "live.jsonl"
    sensor = subprocess.Popen(
        _icsight(
            "sensor",
            "live",
            b,
            "--no-store",
            "--jsonl",
            str(out),
            "--filter",
            "not ip6",
            "--data-dir",
            str(tmp_path / "data"),
        ),
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        _wait_capturing(sensor)
        r = subprocess.run(
            _icsight("range", "replay", str(pcap), "--iface", a, "--speed", "40", "--max-gap", "0.02"),
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=120,
        )
        assert r.returncode == 0, r.stderr
        assert f"{summary['frames']} frames sent on {a}" in r.stderr
        time.sleep(1.0)
    finally:
        err = _stop(sensor)
    assert sensor.returncode == 0, err
    events = [Event.from_json(line) for line in out.read_text().splitlines()]
    modbus = [e for e in events if e.kind == "modbus"]
    assert len(modbus) == summary["expected"]["modbus"], err
    assert all(e.fields["status"] == "paired" for e in modbus)
    # the unit-id scan from the intruder came through whole: 17 unit ids, 16 gateway exceptions
    scan = [e for e in modbus if e.src.ip == "192.168.10.66" and e.dst.ip == "192.168.10.80"]
    assert sorted(e.fields["unit_id"] for e in scan) == list(range(17))
    assert (
        sum(1 for e in scan if e.fields.get("exception") == "GATEWAY_TARGET_DEVICE_FAILED_TO_RESPOND") == 16
    )


def _live_peer(tmp_path: Path, protocol: str, peer: str, *args: str) -> tuple[list[Event], str]:
    """Run `python -m tests.<peer> PORT ...` on loopback while `icsight sensor live lo` captures it."""
    port = _free_port()
    data = tmp_path / "data"
    data.mkdir()
    (data / "icsight.yml").write_text(f"sensor: lab\nports:\n  {protocol}:\n    tcp: [{port}]\n")
    out = tmp_path / "live.jsonl"
    sensor = subprocess.Popen(
        _icsight(
            "sensor",
            "live",
            "lo",
            "--filter",
            f"tcp port {port}",
            "--data-dir",
            str(data),
            "--no-store",
            "--jsonl",
            str(out),
        ),
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
    )
    try:
        _wait_capturing(sensor)
        r = subprocess.run(
            [sys.executable, "-m", f"tests.{peer}", str(port), *args],
            capture_output=True,
            text=True,
            cwd=ROOT,
            timeout=60,
        )
        assert r.returncode == 0, r.stderr
        time.sleep(1.0)
    finally:
        err = _stop(sensor)
    assert sensor.returncode == 0, err
    return [Event.from_json(line) for line in out.read_text().splitlines()], r.stdout


@pytest.fixture(scope="module")
def iec104_live(tmp_path_factory):
    """One capture of the c104 exchange, shared by the tests that judge it.

    Under CPU load c104 itself sometimes stalls a confirmation until its 10 s command timeout (its
    threads call back into Python), whatever captures the loopback. A run where the peer reports such
    a stall is repeated (at most 3 runs); the sensor is judged on the first clean exchange.
    """
    if os.geteuid() != 0:
        pytest.skip("live capture needs root (raw sockets)")
    pytest.importorskip("c104")
    for _ in range(3):
        events, out = _live_peer(tmp_path_factory.mktemp("iec104"), "iec104", "iec104_peer")
        if "False" not in out.split():
            break
    return events, out


def test_live_capture_of_real_iec104_stack(iec104_live):
    """c104 (lib60870): STARTDT, station interrogation answered with COT 20 data, single command."""
    events, out = iec104_live
    assert out.split() == [
        "startdt",
        "True",
        "interrogation",
        "True",
        "clock_sync",
        "True",
        "command",
        "True",
    ]
    ev = [e for e in events if e.kind == "iec104"]
    u = [(e.fields["u_function"], e.fields["status"]) for e in ev if "u_function" in e.fields]
    assert u[:1] == [("STARTDT", "paired")]
    data = sorted(
        (e.fields["type"], e.fields["ioa"], e.fields["cot"]) for e in ev if e.fields.get("cot") == 20
    )
    assert data == [("M_ME_NC_1", 11, 20), ("M_SP_NA_1", 12, 20)]
    gi = [e for e in ev if e.fields.get("type") == "C_IC_NA_1"]
    assert [(e.fields["status"], e.fields["confirm"], e.fields["ca"]) for e in gi] == [
        ("paired", "positive", 47)
    ]
    cmd = [e for e in ev if e.fields.get("type") == "C_SC_NA_1"]
    assert len(cmd) == 1
    f = cmd[0].fields
    assert (f["status"], f["confirm"], f["ioa"], f["points"][0]["value"]) == ("paired", "positive", 21, True)
    assert f["points"][0]["ref"] == "47:21" and cmd[0].action == "control"


def test_live_iec104_broadcast_commands_pair_with_station_confirmations(iec104_live):
    events, _ = iec104_live
    cs = [e for e in events if e.kind == "iec104" and e.fields.get("type") == "C_CS_NA_1"]
    # a clock sync to the global CA 0xFFFF is confirmed by the station under its own CA (101 7.2.4)
    assert [e.fields["status"] for e in cs] == ["paired"], [e.fields for e in cs]
    assert cs[0].fields["ca"] == 0xFFFF and cs[0].fields["confirm_ca"] != 0xFFFF


def test_live_capture_of_real_s7comm_stack(tmp_path, need_root):
    pytest.importorskip("snap7")
    events, stdout = _live_peer(tmp_path, "s7comm", "s7_peer", "5")
    assert stdout.splitlines()[-1] == "stop 0 start 0", stdout
    s7 = [e for e in events if e.kind == "s7comm"]
    funcs = [e.fields["function"] for e in s7]
    assert funcs == [
        "SETUP_COMMUNICATION",
        *["WRITE_VAR", "READ_VAR"] * 5,
        "READ_SZL",
        "READ_SZL",
        "PLC_STOP",
        "PI_SERVICE",
    ], funcs
    assert all(e.fields["status"] == "paired" for e in s7)
    # connection request/confirm, then the client's disconnect request (the server's DC may or may not
    # make it out before the peer script stops the server: both are valid endings)
    tpdus = [e.fields["tpdu"] for e in events if e.kind == "cotp"]
    assert tpdus in (["CR", "DR", "DC"], ["CR", "DR"]), tpdus
    assert [e.fields["szl_id"] & 0xFF for e in s7 if e.fields["function"] == "READ_SZL"] == [0x11, 0x1C]
    assert [e.fields.get("pi_service") for e in s7[-2:]] == ["P_PROGRAM", "P_PROGRAM"]
    assert [e.action for e in s7[-2:]] == ["control", "control"]
