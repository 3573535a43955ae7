"""A mixed-protocol benchmark capture: DNP3 polls, IEC 104 measurements and CIP tag reads.

Each protocol runs in distinct, well-formed TCP connections (cyberrange.pcapgen), interleaved in
time as a substation gateway and a PLC cell would be: DNP3 class-0 polls answered with 16 analog
inputs (g30v1), IEC 104 spontaneous M_ME_NC_1 ASDUs of 8 floats with S-frame acknowledgements, and
EtherNet/IP SendRRData carrying CIP Read_Tag requests and replies.
"""

from __future__ import annotations

import random
import struct
from pathlib import Path

from cyberrange.pcapgen import Host, PcapStream, TcpSession
from sensors.dnp3 import link_frame

RTU = Host("10.20.0.10", "00:30:a7:10:20:10")        # SEL-like outstation
SCADA = Host("10.20.0.2", "00:0c:29:20:00:02")
IED = Host("10.20.0.20", "00:1b:1b:20:00:20")        # IEC 104 controlled station
PLC = Host("10.30.0.10", "00:00:bc:30:00:10")        # Rockwell OUI
HMI = Host("10.30.0.2", "00:0c:29:30:00:02")


# ------------------------------------------------------------------ DNP3 (IEEE 1815)
def _dnp3_app(transport_seq: int, app: bytes) -> bytes:
    return bytes([0xC0 | (transport_seq & 0x3F)]) + app          # FIN|FIR transport header


def dnp3_poll(seq: int) -> bytes:
    """READ class 0 (g60v1, qualifier 0x06)."""
    app = bytes([0xC0 | (seq & 0x0F), 0x01, 60, 1, 0x06])
    return link_frame(0xC4, 10, 1, _dnp3_app(seq, app))           # DIR|PRM, UNCONFIRMED_USER_DATA


def dnp3_response(seq: int, values: list[int]) -> bytes:
    """RESPONSE with g30v1 (32-bit analog input with flags), qualifier 0x00 start/stop."""
    objs = struct.pack("<BBBBB", 30, 1, 0x00, 0, len(values) - 1)
    objs += b"".join(struct.pack("<Bi", 0x01, v) for v in values)
    app = bytes([0xC0 | (seq & 0x0F), 0x81, 0x00, 0x00]) + objs   # FIR|FIN, RESPONSE, IIN 0
    return link_frame(0x44, 1, 10, _dnp3_app(seq, app))


# ------------------------------------------------------------------ IEC 60870-5-104
def iec104_u(ctrl: int) -> bytes:
    return bytes([0x68, 4, ctrl, 0, 0, 0])


def iec104_i(ns: int, nr: int, ca: int, objs: list[tuple[int, float]]) -> bytes:
    """I-frame: M_ME_NC_1 (13, short float), COT 3 spontaneous, SQ=0."""
    asdu = struct.pack("<BBBBH", 13, len(objs), 3, 0, ca)
    for ioa, v in objs:
        asdu += struct.pack("<I", ioa)[:3] + struct.pack("<fB", v, 0)
    apci = struct.pack("<HH", (ns << 1) & 0xFFFE, (nr << 1) & 0xFFFE)
    return bytes([0x68, 4 + len(asdu)]) + apci + asdu


def iec104_s(nr: int) -> bytes:
    return bytes([0x68, 4, 0x01, 0]) + struct.pack("<H", (nr << 1) & 0xFFFE)


# ------------------------------------------------------------------ EtherNet/IP + CIP
def _encap(cmd: int, session: int, body: bytes, ctx: int) -> bytes:
    return struct.pack("<HHII8sI", cmd, len(body), session, 0, struct.pack("<Q", ctx), 0) + body


def enip_register(session: int = 0, ctx: int = 1) -> bytes:
    return _encap(0x65, session, struct.pack("<HH", 1, 0), ctx)


def _rr_data(session: int, cip: bytes, ctx: int) -> bytes:
    cpf = struct.pack("<IHH", 0, 0, 2) + struct.pack("<HH", 0, 0) + struct.pack("<HH", 0xB2, len(cip)) + cip
    return _encap(0x6F, session, cpf, ctx)


def cip_read_tag(session: int, tag: bytes, ctx: int) -> bytes:
    seg = bytes([0x91, len(tag)]) + tag + (b"\x00" if len(tag) % 2 else b"")
    cip = bytes([0x4C, len(seg) // 2]) + seg + struct.pack("<H", 1)
    return _rr_data(session, cip, ctx)


def cip_read_tag_reply(session: int, value: int, ctx: int) -> bytes:
    cip = bytes([0xCC, 0, 0, 0]) + struct.pack("<Hi", 0xC4, value)
    return _rr_data(session, cip, ctx)


def craft_mixed(path: Path, packets: int, per_flow: int = 60, seed: int = 7) -> dict[str, int]:
    """Write about `packets` frames; returns how many transactions/ASDUs of each protocol."""
    rng = random.Random(seed)
    ts = 1_700_000_000.0
    counts = {"dnp3": 0, "iec104": 0, "cip": 0}
    flow = 0
    with PcapStream(path) as out:
        while out.frames < packets:
            flow += 1
            kind = flow % 3
            port = 20000 + (flow % 40000)
            if kind == 0:
                s = TcpSession(out, SCADA, RTU, port, 20000, rng.randrange(1 << 32), rng.randrange(1 << 32))
                ts = s.open(ts + 0.001)
                base = [rng.randrange(-5000, 5000) for _ in range(16)]
                for i in range(per_flow):
                    ts += 0.01
                    vals = [b + rng.randrange(-20, 20) for b in base]
                    s.exchange(ts, dnp3_poll(i), dnp3_response(i, vals), latency=0.004)
                    counts["dnp3"] += 1
                ts = s.close(ts + 0.01)
            elif kind == 1:
                s = TcpSession(out, SCADA, IED, port, 2404, rng.randrange(1 << 32), rng.randrange(1 << 32))
                ts = s.open(ts + 0.001)
                s.exchange(ts + 0.001, iec104_u(0x07), iec104_u(0x0B))      # STARTDT act / con
                for ns in range(per_flow):
                    ts += 0.01
                    objs = [(4001 + k, 110.0 + rng.random()) for k in range(8)]
                    s.send(ts, False, iec104_i(ns, 0, 1, objs))
                    counts["iec104"] += 1
                    if (ns + 1) % 4 == 0:
                        s.send(ts + 0.002, True, iec104_s(ns + 1))
                ts = s.close(ts + 0.01)
            else:
                s = TcpSession(out, HMI, PLC, port, 44818, rng.randrange(1 << 32), rng.randrange(1 << 32))
                ts = s.open(ts + 0.001)
                session = 0x1000 + flow
                s.exchange(ts + 0.001, enip_register(0, 1), enip_register(session, 1))
                for i in range(per_flow):
                    ts += 0.01
                    s.exchange(ts, cip_read_tag(session, b"Line1_Speed", i + 2),
                               cip_read_tag_reply(session, rng.randrange(1000), i + 2), latency=0.002)
                    counts["cip"] += 1
                ts = s.close(ts + 0.01)
    return counts
