"""Craft large Modbus/TCP captures fast: distinct, well-formed TCP connections (handshake, polls, teardown).

Headers are packed with struct from templates (checksums computed) and written with scapy's
RawPcapWriter; crafting 1M packets this way takes seconds where building scapy packets takes minutes.
"""

from __future__ import annotations

import random
import struct
from pathlib import Path

from scapy.utils import RawPcapWriter

SERVER_IP = bytes([10, 0, 0, 10])
SERVER_MAC = bytes.fromhex("00800f0a0a0a")   # Siemens-like OUI prefix is irrelevant here
CLIENT_MAC = bytes.fromhex("0050560a0101")


def _csum(b: bytes) -> int:
    if len(b) % 2:
        b += b"\x00"
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def _frame(src_mac, dst_mac, sip, dip, sport, dport, seq, ack, flags, payload, ident) -> bytes:
    tcp = struct.pack("!HHIIBBHHH", sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF, 5 << 4, flags,
                      65535, 0, 0) + payload
    pseudo = sip + dip + struct.pack("!BBH", 0, 6, len(tcp))
    tcp = tcp[:16] + struct.pack("!H", _csum(pseudo + tcp)) + tcp[18:]
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(tcp), ident & 0xFFFF, 0x4000, 64, 6, 0, sip, dip)
    ip = ip[:10] + struct.pack("!H", _csum(ip)) + ip[12:]
    return dst_mac + src_mac + b"\x08\x00" + ip + tcp


def _transaction(rng: random.Random, tid: int) -> tuple[bytes, bytes]:
    """One Modbus request/response pair: a mix of reads and writes as an HMI polls."""
    unit = 1
    r = rng.random()
    if r < 0.6:          # read holding registers
        addr, qty = rng.randrange(0, 1000), rng.randint(1, 20)
        req = struct.pack("!BHH", 3, addr, qty)
        resp = struct.pack("!BB", 3, 2 * qty) + struct.pack(f"!{qty}H", *(rng.randrange(65536) for _ in range(qty)))
    elif r < 0.8:        # read coils
        addr, qty = rng.randrange(0, 1000), rng.randint(1, 32)
        nbytes = (qty + 7) // 8
        req = struct.pack("!BHH", 1, addr, qty)
        resp = struct.pack("!BB", 1, nbytes) + bytes(rng.randrange(256) for _ in range(nbytes))
    elif r < 0.95:       # write single register
        addr, val = rng.randrange(0, 1000), rng.randrange(65536)
        req = resp = struct.pack("!BHH", 6, addr, val)
    else:                # write multiple registers
        addr, qty = rng.randrange(0, 1000), rng.randint(1, 8)
        req = struct.pack("!BHHB", 16, addr, qty, 2 * qty) + struct.pack(f"!{qty}H", *(rng.randrange(65536)
                                                                                       for _ in range(qty)))
        resp = struct.pack("!BHH", 16, addr, qty)
    mb = lambda pdu: struct.pack("!HHHB", tid, 0, len(pdu) + 1, unit) + pdu  # noqa: E731
    return mb(req), mb(resp)


def craft_modbus(path: Path, packets: int, per_flow: int = 50, seed: int = 1) -> int:
    """Write a capture of about `packets` frames; returns the number of Modbus transactions."""
    rng = random.Random(seed)
    ts = 1_700_000_000.0
    n = flows = trans = 0
    w = RawPcapWriter(str(path), linktype=1, sync=False)
    w.write_header(None)
    try:
        while n < packets:
            flows += 1
            cip = bytes([10, 1 + (flows >> 16) % 200, (flows >> 8) & 0xFF, flows & 0xFF])
            cport = 1024 + flows % 60000
            cmac = CLIENT_MAC[:4] + bytes([(flows >> 8) & 0xFF, flows & 0xFF])
            cseq, sseq, ident = rng.randrange(1 << 32), rng.randrange(1 << 32), rng.randrange(65536)
            out: list[bytes] = []

            def c2s(flags, payload=b""):
                nonlocal cseq, ident
                out.append(_frame(cmac, SERVER_MAC, cip, SERVER_IP, cport, 502, cseq, sseq, flags, payload, ident))
                cseq += len(payload) + (1 if flags & 0x03 else 0)
                ident += 1

            def s2c(flags, payload=b""):
                nonlocal sseq, ident
                out.append(_frame(SERVER_MAC, cmac, SERVER_IP, cip, 502, cport, sseq, cseq, flags, payload, ident))
                sseq += len(payload) + (1 if flags & 0x03 else 0)
                ident += 1

            c2s(0x02)  # SYN: ack field is ignored but zero it as real stacks do
            out[-1] = out[-1][:42] + b"\x00\x00\x00\x00" + out[-1][46:]
            s2c(0x12)
            c2s(0x10)
            for _ in range(per_flow):
                trans += 1
                req, resp = _transaction(rng, trans & 0xFFFF)
                c2s(0x18, req)
                s2c(0x18, resp)
            c2s(0x11)
            s2c(0x11)
            c2s(0x10)
            for fr in out:
                ts += 0.0005
                sec = int(ts)
                w.write_packet(fr, sec=sec, usec=int((ts - sec) * 1e6), caplen=len(fr), wirelen=len(fr))
            n += len(out)
    finally:
        w.close()
    return trans
