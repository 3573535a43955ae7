"""Generate the small captures under tests/data/pcaps/rules/ that rule examples need when no shared
capture shows the behaviour (TCP port sweep, ICMP sweep, Modbus FC90, IEC 104 reset/clock commands,
DNP3 STOP_APPL / WARM_RESTART). Deterministic (fixed timestamps and addresses):

    .venv/bin/python -m tests.data.pcaps.rules_gen
"""

from __future__ import annotations

import struct
from pathlib import Path

from cyberrange.pcapgen import ACK, RST, SYN, Host, PcapStream, TcpSession, ethernet, ipv4, tcp_segment
from sensors.dnp3 import crc16

OUT = Path(__file__).resolve().parent / "rules"
T0 = 1_700_000_000.0
ATTACKER = Host("10.66.0.5", "02:00:00:00:66:05")
PLC = Host("10.10.1.20", "02:00:00:00:01:20")
RTU = Host("10.10.1.30", "02:00:00:00:01:30")


def _checksum(b: bytes) -> int:
    if len(b) % 2:
        b += b"\x00"
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def tcp_port_sweep(path: Path) -> None:
    """SYNs from one host to 20 ports of a PLC; RST|ACK for closed ports, SYN|ACK + RST for port 102."""
    with PcapStream(path) as out:
        for i, port in enumerate([21, 22, 23, 25, 53, 80, 102, 110, 135, 139, 443, 445, 502, 1911, 2404,
                                  4840, 20000, 44818, 47808, 9600]):
            ts = T0 + i * 0.05
            a, b = ATTACKER, PLC
            syn = tcp_segment(a.ipb, b.ipb, 40000 + i, port, 1000, 0, SYN)
            out.write(ts, ethernet(a.macb, b.macb, 0x0800, ipv4(a.ipb, b.ipb, 6, syn, out.next_ident())))
            rst = tcp_segment(b.ipb, a.ipb, port, 40000 + i, 0, 1001, RST | ACK)
            out.write(ts + 0.001,
                      ethernet(b.macb, a.macb, 0x0800, ipv4(b.ipb, a.ipb, 6, rst, out.next_ident())))


def icmp_sweep(path: Path) -> None:
    """ICMP echo requests from one host to 12 addresses of a /24 (two answer)."""
    with PcapStream(path) as out:
        for i in range(12):
            dst = Host(f"10.10.1.{100 + i}", f"02:00:00:00:02:{i:02x}")
            body = struct.pack("!BBHHH", 8, 0, 0, 0x4242, i) + b"icsight-sweep"
            body = body[:2] + struct.pack("!H", _checksum(body)) + body[4:]
            ts = T0 + i * 0.1
            out.write(ts, ethernet(ATTACKER.macb, dst.macb, 0x0800,
                                   ipv4(ATTACKER.ipb, dst.ipb, 1, body, out.next_ident())))
            if i in (3, 7):
                rep = struct.pack("!BBHHH", 0, 0, 0, 0x4242, i) + b"icsight-sweep"
                rep = rep[:2] + struct.pack("!H", _checksum(rep)) + rep[4:]
                out.write(ts + 0.001, ethernet(dst.macb, ATTACKER.macb, 0x0800,
                                               ipv4(dst.ipb, ATTACKER.ipb, 1, rep, out.next_ident())))


def modbus_fc90(path: Path) -> None:
    """A read, then Schneider UMAS (FC 0x5A) requests: read PLC id, take reservation, stop the PLC."""
    with PcapStream(path) as out:
        s = TcpSession(out, ATTACKER, PLC, 50100, 502)
        ts = s.open(T0)
        s.exchange(ts + 0.01, bytes.fromhex("0001000000060103000a0002"),
                   bytes.fromhex("00010000000701030400010002"))
        umas = [("5a0002", "5a00fe"), ("5a0010", "5a00fe"), ("5a0041ff00", "5a00fe")]
        for i, (req, resp) in enumerate(umas):
            body = bytes.fromhex(req)
            rbody = bytes.fromhex(resp)
            tid = 2 + i
            s.exchange(ts + 0.1 * (i + 1), struct.pack("!HHHB", tid, 0, len(body) + 1, 1) + body,
                       struct.pack("!HHHB", tid, 0, len(rbody) + 1, 1) + rbody)
        s.close(ts + 1)


def _apdu(tx: int, rx: int, asdu: bytes) -> bytes:
    return bytes([0x68, len(asdu) + 4]) + struct.pack("<HH", tx << 1, rx << 1) + asdu


def iec104_reset_and_clock(path: Path) -> None:
    """STARTDT, then C_RP_NA_1 (reset process, qualifier 1 = general reset) and C_CS_NA_1 (clock sync)."""
    with PcapStream(path) as out:
        s = TcpSession(out, ATTACKER, RTU, 50200, 2404)
        ts = s.open(T0)
        s.exchange(ts + 0.01, bytes.fromhex("680407000000"), bytes.fromhex("68040b000000"))
        # type 105 C_RP_NA_1, SQ=0 n=1, COT 6 act, OA 0, CA 1, IOA 0, QRP 1
        rp = bytes([105, 1, 6, 0]) + struct.pack("<H", 1) + b"\x00\x00\x00" + b"\x01"
        rp_con = bytes([105, 1, 7, 0]) + struct.pack("<H", 1) + b"\x00\x00\x00" + b"\x01"
        s.exchange(ts + 0.1, _apdu(0, 0, rp), _apdu(0, 1, rp_con))
        # type 103 C_CS_NA_1 with CP56Time2a (ms, min, hour, day, month, year)
        cp56 = struct.pack("<H", 30000) + bytes([5, 10, 24, 11, 23])
        cs = bytes([103, 1, 6, 0]) + struct.pack("<H", 1) + b"\x00\x00\x00" + cp56
        cs_con = bytes([103, 1, 7, 0]) + struct.pack("<H", 1) + b"\x00\x00\x00" + cp56
        s.exchange(ts + 0.2, _apdu(1, 1, cs), _apdu(1, 2, cs_con))
        s.close(ts + 1)


def _dnp3_frame(dst: int, src: int, ctrl: int, user: bytes) -> bytes:
    """One DNP3 link frame: header + CRC, then the user data in 16-byte blocks each followed by a CRC."""
    hdr = bytes([0x05, 0x64, 5 + len(user), ctrl]) + struct.pack("<HH", dst, src)
    out = hdr + struct.pack("<H", crc16(hdr))
    for i in range(0, len(user), 16):
        blk = user[i:i + 16]
        out += blk + struct.pack("<H", crc16(blk))
    return out


def dnp3_stop_and_restart(path: Path) -> None:
    """Master 1 -> outstation 10: STOP_APPL (0x12), then WARM_RESTART (0x0E); NULL responses."""
    with PcapStream(path) as out:
        s = TcpSession(out, ATTACKER, RTU, 50300, 20000)
        ts = s.open(T0)
        for i, fc in enumerate((0x12, 0x0E)):
            seq = i & 0x0F
            req = _dnp3_frame(10, 1, 0xC4, bytes([0xC0 | seq, 0xC0 | seq, fc]))
            resp = _dnp3_frame(1, 10, 0x44, bytes([0xC0 | seq, 0xC0 | seq, 0x81, 0x00, 0x00]))
            s.exchange(ts + 0.1 * (i + 1), req, resp)
        s.close(ts + 1)


def dnp3_iin_errors(path: Path) -> None:
    """Four READs of class 0 (g60v1) answered with IIN2 OBJECT_UNKNOWN (0x02): an exception storm."""
    with PcapStream(path) as out:
        s = TcpSession(out, ATTACKER, RTU, 50700, 20000)
        ts = s.open(T0)
        for i in range(4):
            seq = i & 0x0F
            req = _dnp3_frame(10, 1, 0xC4, bytes([0xC0 | seq, 0xC0 | seq, 0x01, 0x3C, 0x01, 0x06]))
            resp = _dnp3_frame(1, 10, 0x44, bytes([0xC0 | seq, 0xC0 | seq, 0x81, 0x00, 0x02]))
            s.exchange(ts + 0.1 * (i + 1), req, resp)
        s.close(ts + 1)


def mqtt_wildcard(path: Path) -> None:
    """MQTT 3.1.1 CONNECT without credentials, then SUBSCRIBE to '#' (every topic of the broker)."""
    with PcapStream(path) as out:
        s = TcpSession(out, ATTACKER, Host("10.10.1.40", "02:00:00:00:01:40"), 50400, 1883)
        ts = s.open(T0)
        cid = b"icsight"
        var = b"\x00\x04MQTT\x04\x02\x00\x3c" + struct.pack("!H", len(cid)) + cid
        s.exchange(ts + 0.01, bytes([0x10, len(var)]) + var, bytes.fromhex("20020000"))
        sub = struct.pack("!H", 1) + struct.pack("!H", 1) + b"#" + b"\x00"
        s.exchange(ts + 0.1, bytes([0x82, len(sub)]) + sub, bytes.fromhex("9003000100"))
        s.close(ts + 1)


def dnp3_bad_crc(path: Path) -> None:
    """A DNP3 READ whose link-header CRC is wrong, then a correct one."""
    with PcapStream(path) as out:
        s = TcpSession(out, ATTACKER, RTU, 50500, 20000)
        ts = s.open(T0)
        good = _dnp3_frame(10, 1, 0xC4, bytes([0xC0, 0xC0, 0x01, 0x3C, 0x02, 0x06]))
        bad = good[:8] + bytes([good[8] ^ 0xFF, good[9]]) + good[10:]
        s.send(ts + 0.1, True, bad)
        s.ack(ts + 0.1004, False)
        s.exchange(ts + 0.2, good, _dnp3_frame(1, 10, 0x44, bytes([0xC0, 0xC0, 0x81, 0x00, 0x00])))
        s.close(ts + 1)


def ip_bad_header(path: Path) -> None:
    """An IPv4 packet with a header length below the minimum (IHL 4)."""
    with PcapStream(path) as out:
        a, b = ATTACKER, PLC
        seg = tcp_segment(a.ipb, b.ipb, 40001, 102, 1000, 0, SYN)
        pkt = bytearray(ipv4(a.ipb, b.ipb, 6, seg, out.next_ident()))
        pkt[0] = 0x44                        # IHL 4: shorter than the minimum IPv4 header
        pkt[10:12] = b"\x00\x00"
        pkt[10:12] = struct.pack("!H", _checksum(bytes(pkt[:20])))
        out.write(T0, ethernet(a.macb, b.macb, 0x0800, bytes(pkt)))


def dcp_factory_reset(path: Path) -> None:
    """PROFINET DCP Set request with block control/factory_reset (option 5, suboption 5)."""
    dev = "02:00:00:00:01:50"
    block = struct.pack("!BBHH", 5, 5, 2, 0)
    body = struct.pack("!HBBIHH", 0xFEFD, 4, 0, 0x01020304, 0, len(block)) + block
    with PcapStream(path) as out:
        out.write(T0, ethernet(ATTACKER.macb, bytes.fromhex(dev.replace(":", "")), 0x8892, body))


def _ber(tag: int, value: bytes) -> bytes:
    n = len(value)
    ln = bytes([n]) if n < 0x80 else (bytes([0x81, n]) if n < 0x100 else bytes([0x82]) + struct.pack("!H", n))
    return bytes([tag]) + ln + value


def _goose(st: int, sq: int, simulation: bool, ts: float) -> bytes:
    sec = int(ts)
    t = struct.pack("!I", sec) + b"\x00\x00\x00\x0a"
    pdu = (_ber(0x80, b"IED1LD0/LLN0$GO$gcb01") + _ber(0x81, struct.pack("!H", 2000))
           + _ber(0x82, b"IED1LD0/LLN0$DataSet1") + _ber(0x83, b"IED1_GOOSE1") + _ber(0x84, t)
           + _ber(0x85, bytes([st])) + _ber(0x86, bytes([sq]))
           + _ber(0x87, b"\xff" if simulation else b"\x00")
           + _ber(0x88, b"\x01") + _ber(0x89, b"\x00") + _ber(0x8A, b"\x01")
           + _ber(0xAB, _ber(0x83, b"\x00")))
    apdu = _ber(0x61, pdu)
    return struct.pack("!HHHH", 0x0001, 8 + len(apdu), 0, 0) + apdu


def goose_simulation(path: Path) -> None:
    """Two GOOSE messages of one control block: a normal one, then one with simulation (Ed.1 test) set."""
    pub = bytes.fromhex("020000000160")
    mc = bytes.fromhex("010ccd010001")
    with PcapStream(path) as out:
        out.write(T0, ethernet(pub, mc, 0x88B8, _goose(1, 0, False, T0)))
        out.write(T0 + 1, ethernet(pub, mc, 0x88B8, _goose(1, 1, True, T0)))


def _tpkt_dt(user: bytes) -> bytes:
    """TPKT + COTP DT (EOT) around user data."""
    body = b"\x02\xf0\x80" + user
    return struct.pack("!BBH", 3, 0, 4 + len(body)) + body


def mms_program_control(path: Path) -> None:
    """ISO-on-TCP to an IEC 61850 server: COTP CR/CC, then MMS confirmed requests straight in COTP
    (as some stacks send them): stop (service 41) and kill (44) of program invocation "PI_MAIN", then
    fileDelete (76) of IEDCFG.CID, with their responses. Service tags > 30 use the long form:
    [41] = BF 29 (constructed request) / 9F 29 (NULL response).
    """
    ied = Host("10.10.1.60", "02:00:00:00:01:60")
    with PcapStream(path) as out:
        s = TcpSession(out, ATTACKER, ied, 50600, 102)
        ts = s.open(T0)
        cr = bytes.fromhex("11e00000000100c1020001c2020001c0010a")
        cc = bytes.fromhex("11d00001000100c0010ac1020001c2020001")
        s.exchange(ts + 0.01, struct.pack("!BBH", 3, 0, 4 + len(cr)) + cr,
                   struct.pack("!BBH", 3, 0, 4 + len(cc)) + cc)
        name = _ber(0x80, b"PI_MAIN")
        for i, tag in enumerate((41, 44)):
            invoke = bytes([2, 1, i + 1])
            req = _ber(0xA0, invoke + bytes([0xBF, tag, len(name)]) + name)
            resp = _ber(0xA1, invoke + bytes([0x9F, tag, 0]))
            s.exchange(ts + 0.1 * (i + 1), _tpkt_dt(req), _tpkt_dt(resp))
        fname = _ber(0x19, b"IEDCFG.CID")          # FileName: SEQUENCE OF GraphicString
        req = _ber(0xA0, b"\x02\x01\x03" + bytes([0xBF, 76, len(fname)]) + fname)
        s.exchange(ts + 0.3, _tpkt_dt(req), _tpkt_dt(_ber(0xA1, b"\x02\x01\x03" + bytes([0x9F, 76, 0]))))
        s.close(ts + 1)


def main() -> None:
    OUT.mkdir(exist_ok=True)
    tcp_port_sweep(OUT / "tcp_port_sweep.pcap")
    icmp_sweep(OUT / "icmp_sweep.pcap")
    modbus_fc90(OUT / "modbus_umas_fc90.pcap")
    iec104_reset_and_clock(OUT / "iec104_reset_clock.pcap")
    dnp3_stop_and_restart(OUT / "dnp3_stop_restart.pcap")
    mqtt_wildcard(OUT / "mqtt_wildcard_subscribe.pcap")
    dnp3_bad_crc(OUT / "dnp3_bad_crc.pcap")
    dnp3_iin_errors(OUT / "dnp3_iin_errors.pcap")
    ip_bad_header(OUT / "ip_bad_header.pcap")
    dcp_factory_reset(OUT / "dcp_factory_reset.pcap")
    goose_simulation(OUT / "goose_simulation.pcap")
    mms_program_control(OUT / "mms_program_stop_kill.pcap")


if __name__ == "__main__":
    main()
