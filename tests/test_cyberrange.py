"""The cyber range: scenario schema, realism judged by peers (tshark), the sensor against the labels,
determinism, the process reacting to attacks, and the `icsight range` CLI."""

from __future__ import annotations

import collections
import csv
import hashlib
import struct
import subprocess
import sys
from pathlib import Path

import pytest

from cyberrange.generator import Range
from cyberrange.labels import events_by_attack, operation, read_labels, read_windows
from cyberrange.scenario import SCENARIO_DIR, ScenarioError, list_scenarios, load_scenario
from sensors.capture import iter_frames
from sensors.run import events_from_capture
from tests.peers import tshark_fields

ROOT = Path(__file__).resolve().parent.parent
SHIPPED = sorted(p.stem for p in SCENARIO_DIR.glob("*.yml"))
ATTACK_DAYS = [s for s in SHIPPED if s.endswith("_attack")]
SHORT = 20 * 60.0  # every shipped attack day runs its whole attack chain in the first 20 min


# ------------------------------------------------------------------------------------------ schema
@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_scenarios_validate(name):
    sc = load_scenario(name)
    assert sc.duration >= 3600 and sc.assets and sc.polls
    roles = {a.role for a in sc.assets}
    assert roles & {"plc", "rtu", "ied"} and roles & {"hmi", "scada_server"}
    if name.endswith("_attack"):
        assert sc.attacks and all(a.start < SHORT for a in sc.attacks)
        assert load_scenario(name.replace("_attack", "_baseline")).attacks == []


def test_list_has_a_line_per_shipped_scenario():
    names = [n for n, desc in list_scenarios() if not desc.startswith("INVALID")]
    assert names == SHIPPED and len(SHIPPED) >= 6


BASE = """name: t
description: test
site: {name: s}
duration: 60
zones:
  - {name: z, level: 1, subnet: 10.0.0.0/24}
assets:
  - name: hmi
    role: hmi
    zone: z
    ip: 10.0.0.1
    mac: "00:14:22:00:00:01"
    identity: {vendor: Dell}
  - name: plc
    role: plc
    zone: z
    ip: 10.0.0.2
    mac: "00:80:f4:00:00:02"
    identity: {vendor: Schneider Electric}
process: {model: water_tank}
polls:
  - {client: hmi, server: plc, protocol: modbus, reads: [{fc: 3, address: 0, count: 2}]}
"""


def _err(tmp_path: Path, text: str, name: str = "bad.yml") -> str:
    p = tmp_path / name
    p.write_text(text)
    with pytest.raises(ScenarioError) as ei:
        load_scenario(p)
    return str(ei.value)


def test_schema_errors_name_file_and_line(tmp_path):
    load_scenario(_write(tmp_path, BASE))  # the base itself is valid
    p = str(tmp_path / "bad.yml")
    # an unknown key (extra="forbid"), inserted as line 10
    msg = _err(tmp_path, BASE.replace("    role: hmi\n", "    role: hmi\n    colour: red\n"))
    assert msg.startswith(f"{p}:10:") and "colour" in msg and "Extra inputs" in msg
    # a MAC that is not one, line 12
    msg = _err(tmp_path, BASE.replace('"00:14:22:00:00:01"', '"00:14:22:00:01"'))
    assert msg.startswith(f"{p}:12:") and "MAC" in msg
    # a bad duration, line 4
    msg = _err(tmp_path, BASE.replace("duration: 60", "duration: soon"))
    assert msg.startswith(f"{p}:4:") and "duration" in msg
    # an unknown asset in a poll (cross reference), last line
    msg = _err(tmp_path, BASE.replace("server: plc,", "server: plc9,"))
    assert msg.startswith(f"{p}:22:") and "plc9" in msg
    # an address outside its zone's subnet
    msg = _err(tmp_path, BASE.replace("ip: 10.0.0.2", "ip: 10.0.1.2"))
    assert msg.startswith(f"{p}:17:") and "outside zone z" in msg
    # YAML syntax
    msg = _err(tmp_path, BASE + "  - {client: [\n")
    assert msg.startswith(f"{p}:") and "bad.yml" in msg


def test_attack_errors_point_into_the_extending_file(tmp_path):
    _write(tmp_path, BASE, "base.yml")
    child = (
        "extends: base\nname: c\nattacks:\n"
        "  - {name: a, type: unauthorized_write, start: 5, attacker: hmi, target: plc,\n"
        "     params: {adress: 4}}\n"
        "  - {name: b, type: no_such_attack, start: 5, attacker: hmi, target: plc}\n"
    )
    msg = _err(tmp_path, child, "child.yml")
    c = str(tmp_path / "child.yml")
    assert f"{c}:5: attacks.0.params.adress: unknown parameter 'adress'" in msg
    assert f"{c}:6: attacks.1.type: unknown attack type 'no_such_attack'" in msg


def _write(tmp_path: Path, text: str, name: str = "ok.yml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


# ---------------------------------------------------------------------------------- generation
@pytest.fixture(scope="module")
def days(tmp_path_factory):
    """Each attack day cut to SHORT: pcap, labels, windows, the generator's summary, sensor events."""
    out = {}
    d = tmp_path_factory.mktemp("range")
    for name in ATTACK_DAYS:
        sc = load_scenario(name, duration=SHORT)
        pcap, labels, windows = d / f"{name}.pcap", d / f"{name}.csv", d / f"{name}.windows.csv"
        summary = Range(sc).run(pcap, labels, windows)
        out[name] = {
            "sc": sc,
            "pcap": pcap,
            "labels": labels,
            "windows": windows,
            "summary": summary,
            "events": events_from_capture(pcap),
        }
    return out


def _tcp_payload_frames(pcap: Path) -> set[int]:
    """Frames whose TCP segment carries an application PDU that the sensor reports.

    IEC 104 S-frames (APCI 68 04 01 00: acknowledgement only) give no event by design (sensors/iec104.py).
    """
    out = set()
    for n, _, data, _ in iter_frames(pcap):
        if data[12:14] == b"\x08\x00" and data[23] == 6:
            ihl = (data[14] & 0x0F) * 4
            total = struct.unpack_from("!H", data, 16)[0]
            doff = (data[14 + ihl + 12] >> 4) * 4
            off = 14 + ihl + doff
            if total - ihl - doff > 0 and data[off : off + 4] != b"\x68\x04\x01\x00":
                out.add(n)
    return out


# Expected tshark expert infos of warning level and above, by technique of the frame carrying them:
# port scans answer closed ports with RST ("Connection reset"), and ARP spoofing is exactly what
# tshark's duplicate-address detection reports. Anything else (malformed, bad checksum) fails.
EXPECTED_EXPERT = {"T0846": ("Connection reset (RST)",), "T0830": ("Duplicate IP address configured",)}


@pytest.mark.tshark
@pytest.mark.parametrize("name", ATTACK_DAYS)
def test_tshark_dissects_every_frame_cleanly(days, name):
    day = days[name]
    labels = read_labels(day["labels"])
    assert len(labels) == day["summary"]["frames"]
    rows = tshark_fields(
        day["pcap"],
        ["_ws.expert.message", "_ws.expert.severity", "_ws.col.Protocol"],
        "_ws.malformed || _ws.expert.severity >= warning",
        extra=(
            "-o",
            "ip.check_checksum:TRUE",
            "-o",
            "tcp.check_checksum:TRUE",
            "-o",
            "udp.check_checksum:TRUE",
        ),
    )
    for r in rows:
        n = int(r["frame.number"][0])
        allowed = EXPECTED_EXPERT.get(labels[n][1], ())
        for msg in r["_ws.expert.message"]:
            assert allowed and msg.startswith(allowed), (n, labels[n], msg)
    # every frame was dissected down to the protocol the generator wrote
    protos = collections.Counter(
        r["_ws.col.Protocol"][0] for r in tshark_fields(day["pcap"], ["_ws.col.Protocol"])
    )
    want = {
        "water_attack": {"Modbus/TCP"},
        "bodyshop_attack": {"S7COMM", "COTP"},
        "substation_attack": {"IEC 60870-5-104", "DNP 3.0"},
    }[name]
    assert want <= set(protos), protos
    assert "Malformed" not in " ".join(protos)


KINDS = {
    "water_attack": {"modbus"},
    "bodyshop_attack": {"s7comm", "cotp"},
    "substation_attack": {"iec104", "dnp3"},
}


@pytest.mark.tshark
@pytest.mark.parametrize("name", [s for s in SHIPPED if s.endswith("_baseline")])
def test_baseline_days_are_clean_for_tshark_and_the_sensor(tmp_path, name):
    """A normal day: not a single expert warning (checksums verified), no weird, all labels normal,
    and the sensor's transactions are exactly those written."""
    sc = load_scenario(name, duration=15 * 60)
    pcap, labels = tmp_path / "b.pcap", tmp_path / "b.csv"
    summary = Range(sc).run(pcap, labels, tmp_path / "b.windows.csv")
    assert summary["windows"] == [] and {lab for lab, _ in read_labels(labels).values()} == {"normal"}
    rows = tshark_fields(
        pcap,
        ["_ws.expert.message"],
        "_ws.malformed || _ws.expert.severity >= warning",
        extra=("-o", "ip.check_checksum:TRUE", "-o", "tcp.check_checksum:TRUE"),
    )
    assert rows == []
    events = events_from_capture(pcap)
    assert not [e for e in events if e.kind == "weird"]
    kinds = KINDS[name.replace("_baseline", "_attack")]
    assert dict(collections.Counter(e.kind for e in events if e.kind in kinds)) == summary["expected"]


# attack type -> (kind, operation) pairs its frames must show in the sensor's events
OPS = {
    "modbus_unit_scan": {("modbus", "READ_HOLDING_REGISTERS")},
    "modbus_function_scan": {
        ("modbus", "READ_COILS"),
        ("modbus", "ENCAPSULATED_INTERFACE_TRANSPORT"),
        ("modbus", "DIAGNOSTICS"),
        ("modbus", "unknown-0x5a"),
    },
    "arp_mitm": {("modbus", "READ_HOLDING_REGISTERS"), ("arp", "other")},
    "firmware_update": {("modbus", "WRITE_FILE_RECORD"), ("modbus", "DIAGNOSTICS")},
    "s7_szl_enum": {("s7comm", "READ_SZL"), ("s7comm", "SETUP_COMMUNICATION"), ("cotp", "session")},
    "block_download": {
        ("s7comm", "REQUEST_DOWNLOAD"),
        ("s7comm", "DOWNLOAD_BLOCK"),
        ("s7comm", "DOWNLOAD_ENDED"),
        ("s7comm", "PI_SERVICE"),
    },
    "plc_stop_restart": {("s7comm", "PLC_STOP"), ("s7comm", "PI_SERVICE")},
    "dnp3_cold_restart": {("dnp3", "COLD_RESTART")},
    "iec104_command": {("iec104", "C_SC_NA_1"), ("iec104", "STARTDT")},
    "ping_sweep": {("arp", "discover")},
    "port_scan": {("flow", "session")},
}
# attack types whose operations depend on the target's protocol: (type, protocol) -> operations
OPS_BY_PROTO = {
    ("unauthorized_write", "modbus"): {("modbus", "WRITE_SINGLE_REGISTER")},
    ("unauthorized_write", "s7comm"): {("s7comm", "WRITE_VAR"), ("cotp", "session")},
    ("unauthorized_write", "dnp3"): {("dnp3", "SELECT"), ("dnp3", "OPERATE")},
    ("command_injection", "modbus"): {("modbus", "WRITE_SINGLE_REGISTER")},
    ("command_injection", "s7comm"): {("s7comm", "WRITE_VAR")},
    ("command_injection", "iec104"): {("iec104", "C_SC_NA_1")},
    ("replay", "modbus"): {("modbus", "WRITE_SINGLE_REGISTER")},
    ("replay", "s7comm"): {("s7comm", "WRITE_VAR")},
    ("replay", "iec104"): {("iec104", "C_SC_NA_1"), ("iec104", "STARTDT")},
    ("rogue_master", "modbus"): {("modbus", "READ_HOLDING_REGISTERS"), ("arp", "discover")},
    ("rogue_master", "s7comm"): {("s7comm", "READ_VAR"), ("s7comm", "SETUP_COMMUNICATION")},
    ("rogue_master", "iec104"): {("iec104", "C_IC_NA_1"), ("iec104", "STARTDT"), ("iec104", "M_ME_NC_1")},
    ("flood", "modbus"): {("modbus", "READ_HOLDING_REGISTERS")},
    ("flood", "dnp3"): {("dnp3", "READ")},
}


@pytest.mark.parametrize("name", ATTACK_DAYS)
def test_sensor_reports_exactly_the_generated_transactions(days, name):
    day = days[name]
    events = day["events"]
    assert not [e for e in events if e.kind == "weird"]
    got = collections.Counter(e.kind for e in events if e.kind in KINDS[name])
    assert dict(got) == day["summary"]["expected"]
    # every request the generator wrote was answered and paired (IEC 104 monitor data is one-way)
    for e in events:
        if e.kind in KINDS[name] and not (e.kind == "iec104" and e.fields.get("cot") in (3, 20)):
            assert e.fields["status"] == "paired", e.to_dict()


@pytest.mark.parametrize("name", ATTACK_DAYS)
def test_every_attack_frame_is_covered_by_the_expected_events(days, name):
    day, sc = days[name], days[name]["sc"]
    labels = read_labels(day["labels"])
    covered: dict[int, set[str]] = collections.defaultdict(set)
    for e in day["events"]:
        for f in e.origin.frames:
            covered[f].add(e.kind)
    payload = _tcp_payload_frames(day["pcap"])
    seen_copy: set[int] = set()
    for n, (label, tech) in labels.items():
        if label == "normal" or n not in payload:
            continue
        if tech in ("T0830", "T0832") and not covered[n]:
            # the man in the middle's forwarded copy: same TCP sequence as the frame before it, so
            # the sensor (like any TCP stack) keeps the first and treats this one as a retransmission
            assert covered[n - 1] and labels[n - 1][0] == label, n
            seen_copy.add(n)
            continue
        assert covered[n] & KINDS[name], (n, label, tech)
    if name == "water_attack":  # the MITM relayed every segment of the HMI's session once
        relayed = [n for n, (lab, t) in labels.items() if t in ("T0830", "T0832") and n in payload]
        assert seen_copy and 2 * len(seen_copy) == len(relayed)
    by = events_by_attack(day["events"], labels)
    windows = read_windows(day["windows"])
    assert {w["attack"] for w in windows} == {k.name for k in sc.attacks}
    for k in sc.attacks:
        evs = [e for (lab, _), es in by.items() if lab == k.name for e in es]
        ops = {(e.kind, operation(e)) for e in evs} | {(e.kind, e.action) for e in evs}
        proto = next((p.protocol for p in sc.polls if p.server == k.target), None)
        want = OPS.get(k.type) or OPS_BY_PROTO[(k.type, proto)]
        assert want <= ops, (k.name, want - ops)
        assert evs, k.name


def by_frame_label(day: dict, e) -> str:
    """The attack label of an event's first frame ('' for normal traffic)."""
    lab = read_labels(day["labels"])[e.origin.frames[0]][0]
    return "" if lab == "normal" else lab


def _vals(e) -> list:
    """Register values of a Modbus event, as its points (Modbus derives them on demand)."""
    from sensors import points_of

    return [p["value"] for p in points_of(e)]


def test_attack_content_as_the_sensor_reports_it(days):
    ev = days["water_attack"]["events"]
    lab = read_labels(days["water_attack"]["labels"])
    by = events_by_attack(ev, lab)
    w = [e for e in by[("setpoint-write", "T0855")] if e.kind == "modbus"]
    assert [(e.src.ip, e.fields["func"], _vals(e)[0]) for e in w] == [
        ("192.168.10.66", "WRITE_SINGLE_REGISTER", 490)
    ]
    inj = [e for e in by[("hmi-injection", "T0836")] if e.kind == "modbus"]
    assert [(e.src.ip, _vals(e)[0]) for e in inj] == [("192.168.10.21", 90)]
    # replayed ADUs are byte-identical to the operator's earlier ones (same transaction ids)
    rep = [e for e in by[("replay-valve", "T0855")] if e.kind == "modbus"]
    ops = [
        e
        for e in ev
        if e.kind == "modbus"
        and e.src.ip == "192.168.10.21"
        and e.fields["func_code"] == 6
        and lab[e.origin.frames[0]][0] == "normal"
        and e.ts < rep[0].ts
    ]
    assert [(e.fields["trans_id"], _vals(e)[0]) for e in rep] == [
        (e.fields["trans_id"], _vals(e)[0]) for e in ops[-2:]
    ]
    flood = [e for e in by[("dos-dosing", "T0814")] if e.kind == "modbus"]
    assert len(flood) == 2000
    s7 = days["bodyshop_attack"]["events"]
    ids = [e.fields["identity"] for e in s7 if e.kind == "s7comm" and "identity" in e.fields]
    assert {
        "order_number": "6ES7 516-3AN02-0AB0",
        "hardware": "1",
        "firmware": "V2.9.4",
        "vendor": "Siemens",
    } in ids
    by = events_by_attack(s7, read_labels(days["bodyshop_attack"]["labels"]))
    pi = [
        (e.fields["pi_service"], e.fields.get("restart"), e.fields.get("blocks"))
        for k in (("line-stop", "T0816"), ("ob1-download", "T0843"))
        for e in by[k]
        if e.kind == "s7comm" and e.fields["function"] == "PI_SERVICE"
    ]
    assert pi == [
        ("P_PROGRAM", "WARM", None),
        ("_INSE", None, [{"filename": "_0800001P", "type": "OB", "number": 1, "filesystem": "PASSIVE"}]),
    ]
    # the replayed S7 write jobs are the HMI's earlier ones, PDU reference included
    rep = [
        e for e in by[("replay-speed", "T0855")] if e.kind == "s7comm" and e.fields["function"] == "WRITE_VAR"
    ]
    hmi = [
        e
        for e in s7
        if e.kind == "s7comm"
        and e.fields["function"] == "WRITE_VAR"
        and e.src.ip == "172.16.20.11"
        and e.ts < rep[0].ts
        and not by_frame_label(days["bodyshop_attack"], e)
    ]
    assert len(rep) == 2 and [e.fields["pdu_ref"] for e in rep] == [e.fields["pdu_ref"] for e in hmi[-2:]]
    stop = [e for e in by[("line-stop", "T0881")] if e.kind == "s7comm"]
    assert [(e.fields["function"], e.fields.get("pi_service")) for e in stop] == [
        ("SETUP_COMMUNICATION", None),
        ("PLC_STOP", "P_PROGRAM"),
    ]
    sub = days["substation_attack"]
    by = events_by_attack(sub["events"], read_labels(sub["labels"]))
    cmd = [e for e in by[("open-q1", "T0855")] if e.kind == "iec104" and e.fields.get("type") == "C_SC_NA_1"]
    assert len(cmd) == 1 and cmd[0].fields["confirm"] == "positive" and cmd[0].fields["ioa"] == 3001
    # the RTU then reports breaker Q1 open, spontaneously with a time tag
    spont = [
        p for e in by[("open-q1", "T0855")] if e.fields.get("type") == "M_SP_TB_1" for p in e.fields["points"]
    ]
    assert [(p["ref"], p["value"]) for p in spont] == [("1:1001", False)]


def test_windows_name_the_attacker_and_victims(days):
    w = {(x["attack"], x["technique"]): x["hosts"] for x in read_windows(days["water_attack"]["windows"])}
    # the man in the middle never shows its IP in the frames it relays; the window still names it
    assert w[("mitm-freeze-level", "T0830")] == ["192.168.10.21", "192.168.10.66", "192.168.10.71"]
    assert w[("hmi-injection", "T0836")] == ["192.168.10.21", "192.168.10.71"]
    assert w[("recon-ports", "T0846")] == ["192.168.10.66", "192.168.10.71", "192.168.10.72", "192.168.10.80"]


def test_windows_match_labels(days):
    day = days["substation_attack"]
    with open(day["labels"], newline="") as f:
        rows = list(csv.DictReader(f))
    for w in read_windows(day["windows"]):
        times = [
            float(r["time"]) for r in rows if r["label"] == w["attack"] and r["technique"] == w["technique"]
        ]
        assert (min(times), max(times)) == pytest.approx((w["start"], w["end"]), abs=1e-6)


# ------------------------------------------------------------------------------------- process
def _levels(events, since: float = 0.0) -> list[int]:
    return [
        _vals(e)[0]
        for e in events
        if e.kind == "modbus"
        and e.src.ip == "192.168.10.23"
        and e.fields.get("func_code") == 3
        and e.dst.ip == "192.168.10.71"
        and e.ts >= since
    ]


def test_the_tank_overfills_after_the_setpoint_attack(tmp_path):
    """The historian's view of the level: inside the setpoints on the baseline day, past the old
    high setpoint once the rogue write raised it (and the injected valve opening fills faster)."""
    base = load_scenario("water_baseline", duration=45 * 60)
    att = load_scenario("water_attack", duration=45 * 60)
    Range(base).run(tmp_path / "b.pcap")
    Range(att).run(tmp_path / "a.pcap")
    lb = _levels(events_from_capture(tmp_path / "b.pcap"))
    t_write = Range(att).t0 + 9 * 60
    la = _levels(events_from_capture(tmp_path / "a.pcap"), t_write)
    assert len(lb) > 500 and min(lb) >= 140 and max(lb) <= 400
    assert max(la) > 430


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    sc = load_scenario("substation_attack", duration=10 * 60)
    digests = []
    for i, seed in enumerate((5, 5, 6)):
        Range(sc, seed).run(tmp_path / f"{i}.pcap", tmp_path / f"{i}.csv", tmp_path / f"{i}.w.csv")
        digests.append(
            tuple(
                hashlib.sha256((tmp_path / f"{i}{ext}").read_bytes()).hexdigest()
                for ext in (".pcap", ".csv", ".w.csv")
            )
        )
    assert digests[0] == digests[1]
    assert digests[0][0] != digests[2][0]


def test_frames_are_in_time_order_and_tcp_sessions_are_whole(days):
    last = 0.0
    for _, ts, data, _ in iter_frames(days["bodyshop_attack"]["pcap"]):
        assert ts >= last
        last = ts
        assert len(data) >= 60
    flows = [
        e
        for e in days["bodyshop_attack"]["events"]
        if e.kind == "flow"
        and e.fields["proto"] == "tcp"
        and e.fields["service"] == "s7comm"
        and e.fields["orig_bytes"] > 0
    ]
    # every S7 connection that carried data: handshake, data both ways, FIN teardown (the port scan's
    # SYN / SYN-ACK / RST probes to port 102 are the only RSTO flows and carry none)
    assert flows and all(e.fields["conn_state"] in ("SF", "S1") for e in flows), collections.Counter(
        e.fields["conn_state"] for e in flows
    )


# ----------------------------------------------------------------------------------------- CLI
def _icsight(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "icsight.cli", *args], capture_output=True, text=True, cwd=ROOT, timeout=120
    )


def test_cli_list_run_and_errors(tmp_path):
    r = _icsight("range", "list")
    assert r.returncode == 0 and [ln.split()[0] for ln in r.stdout.splitlines()] == SHIPPED
    out = tmp_path / "w.pcap"
    r = _icsight(
        "range",
        "run",
        "water_attack",
        "-o",
        str(out),
        "--labels",
        str(tmp_path / "w.csv"),
        "--windows",
        str(tmp_path / "w.windows.csv"),
        "--duration",
        "5m",
        "--seed",
        "3",
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout == "" and "frames" in r.stderr
    wins = read_windows(tmp_path / "w.windows.csv")
    assert [w["attack"] for w in wins] == ["recon-ping", "recon-ports", "unit-scan", "fc-scan"]
    assert len(read_labels(tmp_path / "w.csv")) == sum(1 for _ in iter_frames(out))
    bad = tmp_path / "bad.yml"
    bad.write_text(BASE.replace("level: 1", "level: 9"))
    r = _icsight("range", "run", str(bad), "-o", str(tmp_path / "x.pcap"))
    from icsight.errors import E_CONFIG

    assert r.returncode == E_CONFIG and f"{bad}:6:" in r.stderr
    r = _icsight("range", "run", "water_attack", "-o", str(out), "--duration", "soon")
    assert r.returncode == 2 and "duration" in r.stderr


# ------------------------------------------------------------------------------------ builders
def test_checksums_agree_with_independent_implementations():
    """pcapgen's word-sum checksum vs the RFC 1071 big-endian reference; DNP3 CRC vs the sensor's."""
    import random

    from cyberrange.pcapgen import checksum
    from cyberrange.protocols import dnp3_crc
    from sensors.dnp3 import crc16

    def rfc1071(b: bytes) -> int:
        b += b"\x00" * (len(b) % 2)
        s = sum(struct.unpack(f"!{len(b) // 2}H", b))
        while s >> 16:
            s = (s & 0xFFFF) + (s >> 16)
        return ~s & 0xFFFF

    rng = random.Random(3)
    for _ in range(3000):
        b = bytes(rng.randrange(256) for _ in range(rng.randrange(0, 64)))
        assert checksum(b) == rfc1071(b)
        assert dnp3_crc(b) == struct.pack("<H", crc16(b))
    # IEEE 1815 Annex example: the header 05 64 05 C0 01 00 00 04 has CRC E9 21
    assert dnp3_crc(bytes.fromhex("056405c001000004")) == bytes.fromhex("e921")
