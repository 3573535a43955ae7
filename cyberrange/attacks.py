"""The attack library: parameterised building blocks, each tagged with its MITRE ATT&CK for ICS technique.

An attack is a function `fn(range, attack, t)` that writes its frames (labeled with the attack's name
and technique by the caller) and may schedule follow-up jobs; it acts on the simulated process like
the real thing (a setpoint write changes the tank's control, a PLC stop halts the line). Parameters
come from the scenario's `params:` mapping; unknown parameter names are an error. The table of
attacks, techniques and parameters is in docs/cyberrange.md.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from cyberrange import protocols as P
from cyberrange.generator import Link, Mitm, Range
from cyberrange.pcapgen import ACK, RST, SYN, Host, arp, checksum, ethernet, ipv4, tcp_frame
from cyberrange.scenario import Attack, Poll


@dataclass(frozen=True)
class AttackSpec:
    fn: Callable[[Range, Attack, float], None]
    technique: str
    summary: str
    params: dict[str, str] = field(default_factory=dict)  # name -> meaning (default)


ATTACKS: dict[str, AttackSpec] = {}


def attack(name: str, technique: str, summary: str, **params: str):
    def deco(fn: Callable[[Range, Attack, float], None]) -> Callable[[Range, Attack, float], None]:
        ATTACKS[name] = AttackSpec(fn, technique, summary, params)
        return fn

    return deco


def _params(k: Attack) -> dict[str, Any]:
    allowed = ATTACKS[k.type].params
    bad = sorted(set(k.params) - set(allowed))
    if bad:
        raise ValueError(
            f"attack {k.name}: unknown parameter(s) {', '.join(bad)} for {k.type} "
            f"(known: {', '.join(sorted(allowed)) or 'none'})"
        )
    return dict(k.params)


def _served(r: Range, target: str) -> str:
    for p in r.sc.polls:
        if p.server == target:
            return p.protocol
    raise ValueError(f"{target} serves no protocol in this scenario")


def _link(
    r: Range, k: Attack, t: float, protocol: str | None = None, identify: bool = False
) -> tuple[Link, float]:
    """A fresh connection from the attacker to the target (ARP, handshake, protocol start-up)."""
    proto = protocol or _served(r, k.target)
    link = Link(
        r,
        Poll(client=k.attacker, server=k.target, protocol=proto, identify=identify),
        k.name,
        ATTACKS[k.type].technique,
    )
    t = link.connect(t)
    r.sessions.pop((k.attacker, k.target, proto), None)
    return link, t


def _technique(r: Range, tech: str) -> None:
    r.sink.technique = tech


# --------------------------------------------------------------------------------------- discovery
def _icmp(out: Any, ts: float, a: Host, b: Host, typ: int, ident: int, seq: int) -> None:
    body = struct.pack("!BBHHH", typ, 0, 0, ident, seq) + bytes(range(0x61, 0x61 + 32))
    body = body[:2] + struct.pack("!H", checksum(body)) + body[4:]
    out.write(
        ts,
        ethernet(
            a.macb, b.macb, 0x0800, ipv4(a.ipb, b.ipb, 1, body, out.next_ident(), ttl=64 if typ else 128)
        ),
    )


@attack(
    "ping_sweep",
    "T0846",
    "ARP + ICMP echo sweep of a subnet from the attacker",
    subnet="CIDR to sweep (the attacker's zone subnet)",
    count="addresses to try (32)",
    interval="seconds between probes (0.05)",
)
def ping_sweep(r: Range, k: Attack, t: float) -> None:
    p = _params(k)
    me = r.hosts[k.attacker]
    zone = next(z for z in r.sc.zones if z.name == r.sc.asset(k.attacker).zone)
    net = ipaddress.ip_network(p.get("subnet", zone.subnet), strict=False)
    n, step = int(p.get("count", 32)), float(p.get("interval", 0.05))
    for i, ip in enumerate(list(net.hosts())[:n]):
        ip = str(ip)
        if ip == me.ip:
            continue
        ts = t + i * step
        arp(r.sink, ts, me, ip)  # who-has, answered only if present
        a = r.by_ip.get(ip)
        if a is None or (a.appears is not None and a.appears > ts):
            continue
        h = r.hosts[a.name]
        arp(r.sink, ts + 0.0003, h, me.ip, reply_to=me)
        r.resolved.update({(me.ip, ip), (ip, me.ip)})
        _icmp(r.sink, ts + 0.001, me, h, 8, 0x4D2, i + 1)
        _icmp(r.sink, ts + 0.0015, h, me, 0, 0x4D2, i + 1)


@attack(
    "port_scan",
    "T0846",
    "TCP SYN scan of ICS and IT ports on the targets",
    ports="ports to probe (21,22,23,80,102,443,502,2404,20000,44818,47808)",
    interval="seconds between probes (0.01)",
)
def port_scan(r: Range, k: Attack, t: float) -> None:
    p = _params(k)
    ports = [int(x) for x in p.get("ports", [21, 22, 23, 80, 102, 443, 502, 2404, 20000, 44818, 47808])]
    step = float(p.get("interval", 0.01))
    me = r.hosts[k.attacker]
    sport = r.ephemeral()
    for tg in k.targets or [k.target]:
        h, a = r.hosts[tg], r.sc.asset(tg)
        t = r.resolve(t, me, h)
        open_ = r.ports(a)
        for port in ports:
            seq = r.rng.getrandbits(32)
            out = r.sink
            tcp_frame(out, t, me, h, sport, port, seq, 0, SYN, window=1024)
            if port in open_:             # SYN-ACK, then the scanner resets (a half-open scan)
                sseq = r.rng.getrandbits(32)
                tcp_frame(out, t + 0.0003, h, me, port, sport, sseq, seq + 1, SYN | ACK)
                tcp_frame(out, t + 0.0005, me, h, sport, port, seq + 1, 0, RST, window=0)
            else:                         # closed port: RST+ACK
                tcp_frame(out, t + 0.0003, h, me, port, sport, 0, seq + 1, RST | ACK, window=0)
            t += step


@attack(
    "modbus_unit_scan",
    "T0846",
    "Modbus unit-id sweep: one read per unit id, exceptions from absent ones",
    units="first and last unit id ([0, 32])",
    interval="seconds between requests (0.05)",
)
def modbus_unit_scan(r: Range, k: Attack, t: float) -> None:
    p = _params(k)
    lo, hi = (int(x) for x in p.get("units", [0, 32]))
    step = float(p.get("interval", 0.05))
    link, t = _link(r, k, t, "modbus")
    real = link.server.unit_id
    for u in range(lo, hi + 1):
        req = P.mb_read_req(3, 0, 1)
        resp = (
            P.mb_read_resp(3, r.values(k.target, "holding", 0, 1)) if u == real else P.mb_exception(3, 0x0B)
        )
        link.mb(t, req, resp, unit=u)
        t += step
    link.close(t)


SUPPORTED_FC = {1, 2, 3, 4, 5, 6, 15, 16, 43}


@attack(
    "modbus_function_scan",
    "T0888",
    "Modbus function-code enumeration: well-formed probes, exceptions back",
    fcs="function codes to probe (1,2,3,4,7,8,11,12,17,20,24,43,90,100,125)",
    interval="seconds between requests (0.05)",
)
def modbus_function_scan(r: Range, k: Attack, t: float) -> None:
    p = _params(k)
    fcs = [int(x) for x in p.get("fcs", [1, 2, 3, 4, 7, 8, 11, 12, 17, 20, 24, 43, 90, 100, 125])]
    step = float(p.get("interval", 0.05))
    link, t = _link(r, k, t, "modbus")
    idn = link.server.identity
    for fc in fcs:
        if fc in (1, 2, 3, 4):
            req = P.mb_read_req(fc, 0, 1)
            table = {1: "coil", 2: "discrete", 3: "holding", 4: "input"}[fc]
            resp = P.mb_read_resp(fc, r.values(k.target, table, 0, 1))
        elif fc == 43:
            req, resp = (
                P.mb_device_id_req(),
                P.mb_device_id_resp(idn.vendor, idn.order_number or idn.model, idn.firmware),
            )
        else:
            req = {
                7: b"\x07",
                11: b"\x0b",
                12: b"\x0c",
                17: b"\x11",
                8: P.mb_diagnostics(0, 0xA5A5),
                20: b"\x14\x07\x06\x00\x01\x00\x00\x00\x01",
                24: b"\x18\x00\x00",
            }.get(fc, bytes([fc, 0, 0, 0, 1]))
            resp = P.mb_exception(fc, 1)
        link.mb(t, req, resp)
        t += step
    link.close(t)


@attack(
    "s7_szl_enum",
    "T0888",
    "S7comm SZL reads: module and component identification, CPU state",
    szls="SZL ids to read (0x0000, 0x0011, 0x001C, 0x0424)",
)
def s7_szl_enum(r: Range, k: Attack, t: float) -> None:
    p = _params(k)
    link, t = _link(r, k, t, "s7comm")
    idn = link.server.identity
    for szl in [int(x) for x in p.get("szls", [0x0000, 0x0011, 0x001C, 0x0424])]:
        if szl == 0x0011:
            t = link.s7szl(t + 0.05, szl, 0, 28, P.szl_0011(idn.order_number, idn.firmware or "V1.0.0"))
        elif szl == 0x001C:
            t = link.s7szl(
                t + 0.05, szl, 0, 34, P.szl_001c({1: r.sc.site.name[:24], 2: idn.model, 3: link.server.name})
            )
        elif szl == 0x0424:
            mode = 0x03 if r.proc.halted else 0x08  # STOP / RUN
            t = link.s7szl(t + 0.05, szl, 0, 20, [struct.pack("!HBBH", 0x5104, 0xFF, mode, 0) + bytes(14)])
        else:
            ids = [0x0000, 0x0011, 0x0012, 0x0013, 0x001C, 0x0131, 0x0424]
            t = link.s7szl(t + 0.05, szl, 0, 2, [struct.pack("!H", i) for i in ids])
    link.close(t + 0.05)


# -------------------------------------------------------------------------------------- commands
def _writes(p: dict[str, Any]) -> list[tuple[str, int, float, int]]:
    vals = p.get("values", [p.get("value", 0)])
    return [
        (p.get("table", "holding"), int(p.get("address", 0)), float(v), int(p.get("db", 0))) for v in vals
    ]


_W = dict(
    table="holding | coil | db | ioa | crob (holding)",
    address="register, coil, DB offset, IOA or index",
    value="value written",
    values="several values, one per request",
    db="S7 DB number",
    interval="seconds between writes (0.5)",
)


@attack("unauthorized_write", "T0855", "a rogue host writes a setpoint, coil, DB value or point", **_W)
def unauthorized_write(r: Range, k: Attack, t: float) -> None:
    p = _params(k)
    link, t = _link(r, k, t)
    for table, address, value, db in _writes(p):
        t, _ = link.write(t + float(p.get("interval", 0.5)), table, address, value, db)
    link.close(t + 0.2)


@attack(
    "iec104_command",
    "T0855",
    "an unknown master connects (STARTDT) and sends C_SC_NA_1 single commands",
    **_W,
)
def iec104_command(r: Range, k: Attack, t: float) -> None:
    p = _params(k)
    p.setdefault("table", "ioa")
    link, t = _link(r, k, t, "iec104")
    for table, address, value, db in _writes(p):
        t, _ = link.write(t + float(p.get("interval", 0.5)), table, address, value, db)
    link.close(t + 0.5)


@attack(
    "command_injection",
    "T0836",
    "a legitimate master (attacker = the compromised HMI) writes a plausible "
    "but wrong parameter on its own session",
    **_W,
)
def command_injection(r: Range, k: Attack, t: float) -> None:
    p = _params(k)
    proto = _served(r, k.target)
    link = r.sessions.get((k.attacker, k.target, proto))
    if link is None or link.sess is None:
        raise ValueError(f"attack {k.name}: {k.attacker} has no {proto} session to {k.target} at {t:.0f}s")
    for table, address, value, db in _writes(p):
        t, _ = link.write(t + float(p.get("interval", 0.5)), table, address, value, db)


@attack(
    "replay",
    "T0855",
    "replays operator commands captured earlier in the day from the attacker's host "
    "(ATT&CK for ICS has no replay technique: an unauthorized command message)",
    count="captured commands to replay (all, at most 10)",
    interval="seconds between them (1.0)",
)
def replay(r: Range, k: Attack, t: float) -> None:
    p = _params(k)
    proto = _served(r, k.target)
    caps = [c for c in r.captured if c[2] == k.target and c[0] == proto][-int(p.get("count", 10)) :]
    if not caps:
        raise ValueError(f"attack {k.name}: nothing captured for {k.target} before {t:.0f}s to replay")
    link, t = _link(r, k, t, proto)
    step = float(p.get("interval", 1.0))
    for _, _, _, req in caps:
        t += step
        if proto == "modbus":  # the captured ADU verbatim; the device echoes a write
            fc, addr, val = struct.unpack_from("!BHH", req, 7)
            r.write_point(k.target, "coil" if fc == 5 else "holding", addr, 1 if fc == 5 and val else val, t)
            t = link.xchg(t, req, req, "modbus")
        elif proto == "iec104":  # the captured ASDU in fresh APCI numbering
            address = int.from_bytes(req[6:9], "little")
            t, _ = link.iec_command(t, address, req[9] & 1)
        elif proto == "s7comm":  # the captured write job (same PDU reference)
            pdu_ref = struct.unpack_from("!H", req, 11)[0]
            t = link.xchg(t, req, P.s7(P.ACK_DATA, pdu_ref, *P.s7_write_resp(1)), "s7comm")
        else:
            raise ValueError(f"attack {k.name}: replay over {proto} is not supported")
    link.close(t + 0.2)


@attack(
    "plc_stop_restart",
    "T0881",
    "S7comm PLC STOP (T0881), then after `down` a PI P_PROGRAM warm restart "
    "(T0816); the line halts in between",
    down="seconds in STOP (60)",
)
def plc_stop_restart(r: Range, k: Attack, t: float) -> None:
    p = _params(k)
    link, t = _link(r, k, t, "s7comm")
    t = link.s7job(t + 0.2, P.s7_plc_stop(), b"\x29", latency=0.03)
    r.proc.advance(t)
    r.proc.halt(True)

    def restart(t2: float) -> None:
        with r.labeled(k.name, "T0816"):
            t2 = link.s7job(t2, P.s7_pi("P_PROGRAM"), b"\x28", latency=0.05)
            r.proc.advance(t2)
            r.proc.halt(False)
            link.close(t2 + 0.5)

    r.schedule(t + float(p.get("down", 60)), restart)


@attack(
    "block_download",
    "T0843",
    "S7comm program download: request download, the PLC pulls the block, "
    "download ended, PI _INSE activates it",
    block="block type code (08 = OB)",
    number="block number (1)",
    size="MC7 code length in bytes (180)",
)
def block_download(r: Range, k: Attack, t: float) -> None:
    p = _params(k)
    link, t = _link(r, k, t, "s7comm")
    fname = P.s7_filename(str(p.get("block", "08")), int(p.get("number", 1)))
    size = int(p.get("size", 180))
    t = link.s7job(t + 0.3, P.s7_request_download(fname, size + 120, size), b"\x1a")
    code = bytes((i * 37 + 11) & 0xFF for i in range(size + 36))  # header + MC7 + footer
    s = link.sess
    for fc, ack_param, ack_data in (
        (0x1B, b"\x1b\x00", struct.pack("!HH", len(code), 0x00FB) + code),
        (0x1C, b"\x1c", b""),
    ):
        ref = r.rng.randrange(1, 0xFFFF)  # the PLC's own job towards the programming device
        t = s.at(t + 0.002)
        s.send(t, False, P.s7(P.JOB, ref, P.s7_blockctl_job(fc, fname)))
        s.send(t + 0.003, True, P.s7(P.ACK_DATA, ref, ack_param, ack_data))
        s.ack(t + 0.0035, False)
        r.expected["s7comm"] += 1
        t += 0.004
    t = link.s7job(t + 0.01, P.s7_pi("_INSE", bytes([1, 0]) + fname[1:]), b"\x28", latency=0.04)
    link.close(t + 0.2)


@attack("dnp3_cold_restart", "T0816", "DNP3 COLD_RESTART (function 13) to an outstation from the attacker")
def dnp3_cold_restart(r: Range, k: Attack, t: float) -> None:
    _params(k)
    link, t = _link(r, k, t, "dnp3")
    t = link.dnp(t + 0.1, 13, b"", P.dnp3_time_delay(5000), iin=0)
    link.close(t + 0.1)


# ------------------------------------------------------------------------------- in the middle, DoS
@attack(
    "arp_mitm",
    "T0830",
    "ARP spoofing between a master and its PLC (T0830); the attacker forwards the "
    "traffic and freezes reported registers (T0832, Modbus)",
    client="the deceived master",
    duration="seconds (120)",
    freeze="register addresses whose values are frozen at the attack start ([0])",
)
def arp_mitm(r: Range, k: Attack, t: float) -> None:
    p = _params(k)
    client = str(p.get("client"))
    link = r.sessions.get((client, k.target, "modbus"))
    if link is None or link.sess is None:
        raise ValueError(f"attack {k.name}: no Modbus session {client} -> {k.target} to intercept")
    me, c, s = r.hosts[k.attacker], r.hosts[client], r.hosts[k.target]
    dur = float(p.get("duration", 120))
    freeze = {int(a): v for a in p.get("freeze", [0]) for v in r.values(k.target, "holding", int(a), 1)}
    # poisoning: unsolicited replies "IP of the other -> attacker's MAC", repeated every 2 s
    n = 0
    while n * 2.0 < dur:
        ts = t + n * 2.0
        arp(r.sink, ts, Host(s.ip, me.mac), c.ip, reply_to=c)
        arp(r.sink, ts + 0.0001, Host(c.ip, me.mac), s.ip, reply_to=s)
        n += 1
    link.sess.mitm = Mitm(me, t + 0.01, t + dur, k.name, freeze)
    # the attacker cleans up: the true MACs again
    arp(r.sink, t + dur + 0.01, s, c.ip, reply_to=c)
    arp(r.sink, t + dur + 0.0101, c, s.ip, reply_to=s)


@attack(
    "flood",
    "T0814",
    "request flood (Modbus reads or DNP3 integrity polls) on one connection",
    rate="requests per second (200)",
    duration="seconds (20)",
)
def flood(r: Range, k: Attack, t: float) -> None:
    p = _params(k)
    proto = _served(r, k.target)
    link, t = _link(r, k, t, proto)
    rate, dur = float(p.get("rate", 200)), float(p.get("duration", 20))
    n = int(rate * dur)
    for i in range(n):
        ts = t + i / rate
        lat = 0.002 + 0.01 * i / max(1, n)  # the device slows down under load
        if proto == "modbus":
            link.tid = (link.tid + 1) & 0xFFFF
            u = link.server.unit_id
            link.xchg(
                ts,
                P.mbap(link.tid, u, P.mb_read_req(3, 0, 100)),
                P.mbap(link.tid, u, P.mb_read_resp(3, r.values(k.target, "holding", 0, 100))),
                "modbus",
                latency=lat,
            )
        elif proto == "dnp3":
            link.dnp(ts, 1, P.dnp3_class_objs((0,)), P.dnp3_binary_inputs([False] * 8))
        else:
            raise ValueError(f"attack {k.name}: flood over {proto} is not supported")
    link.close(t + dur + 0.1)


@attack(
    "rogue_master",
    "T0848",
    "a new device appears and polls the target like a master",
    period="poll period in seconds (5)",
    duration="seconds (300)",
    address="first register / DB offset (0)",
    count="registers or bytes (10)",
    db="S7 DB number (1)",
)
def rogue_master(r: Range, k: Attack, t: float) -> None:
    p = _params(k)
    proto = _served(r, k.target)
    from cyberrange.scenario import ReadSpec

    a, c = int(p.get("address", 0)), int(p.get("count", 10))
    reads = (
        [ReadSpec(fc=3, address=a, count=c)]
        if proto == "modbus"
        else [ReadSpec(area="DB", db=int(p.get("db", 1)), address=a, length=c)]
        if proto == "s7comm"
        else []
    )
    me = r.hosts[k.attacker]
    arp(r.sink, t, me, me.ip)  # gratuitous ARP: a new host
    poll = Poll(
        client=k.attacker,
        server=k.target,
        protocol=proto,
        period=float(p.get("period", 5)),
        start=t + 0.5,
        reads=reads,
        integrity=60,
    )
    r.start_poll(poll, k.name, "T0848", until=t + float(p.get("duration", 300)))


@attack(
    "firmware_update",
    "T0839",
    "firmware image written with Modbus FC 21 file records, then FC 8 restart communications",
    file="file number (4)",
    size="image bytes (2048)",
    chunk="bytes per request (200)",
)
def firmware_update(r: Range, k: Attack, t: float) -> None:
    p = _params(k)
    link, t = _link(r, k, t, "modbus")
    size, chunk, fno = int(p.get("size", 2048)), int(p.get("chunk", 200)), int(p.get("file", 4))
    image = bytes((i * 131 + 7) & 0xFF for i in range(size))
    for rec, off in enumerate(range(0, size, chunk)):
        pdu = P.mb_write_file_record(fno, rec, image[off : off + chunk])
        t = link.mb(t + 0.02, pdu, pdu)
    pdu = P.mb_diagnostics(1, 0xFF00)  # restart communications option
    t = link.mb(t + 0.05, pdu, pdu)
    link.close(t + 0.1)
