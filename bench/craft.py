"""Large Modbus/TCP captures for the benchmark: distinct, well-formed connections (cyberrange.pcapgen)."""

from __future__ import annotations

import random
import struct
from pathlib import Path

from cyberrange.pcapgen import Host, PcapStream, TcpSession

SERVER = Host("10.0.0.10", "00:80:f4:0a:0a:0a")
CLIENTS = 250          # distinct client hosts; flows stay distinct by source port


def transaction(rng: random.Random, tid: int, unit: int = 1) -> tuple[bytes, bytes]:
    """One Modbus request/response pair: a mix of reads and writes as an HMI polls."""
    r = rng.random()
    if r < 0.6:          # read holding registers
        addr, qty = rng.randrange(0, 1000), rng.randint(1, 20)
        req = struct.pack("!BHH", 3, addr, qty)
        regs = [rng.randrange(65536) for _ in range(qty)]
        resp = struct.pack("!BB", 3, 2 * qty) + struct.pack(f"!{qty}H", *regs)
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
        vals = [rng.randrange(65536) for _ in range(qty)]
        req = struct.pack("!BHHB", 16, addr, qty, 2 * qty) + struct.pack(f"!{qty}H", *vals)
        resp = struct.pack("!BHH", 16, addr, qty)

    def mbap(pdu: bytes) -> bytes:
        return struct.pack("!HHHB", tid, 0, len(pdu) + 1, unit) + pdu

    return mbap(req), mbap(resp)


def craft_modbus(path: Path, packets: int, per_flow: int = 50, seed: int = 1) -> int:
    """Write a capture of about `packets` frames in distinct connections; returns the transactions."""
    rng = random.Random(seed)
    ts = 1_700_000_000.0
    flows = trans = 0
    # A fixed population of HMIs/SCADA clients (as a plant has), each opening connection after
    # connection from a new source port: every flow is distinct, the set of devices is not.
    clients = [Host(f"10.1.{i >> 8}.{i & 0xFF}", f"00:50:56:0a:{i >> 8:02x}:{i & 0xFF:02x}")
               for i in range(1, CLIENTS + 1)]
    with PcapStream(path) as out:
        while out.frames < packets:
            flows += 1
            client = clients[flows % CLIENTS]
            cport = 1024 + (flows // CLIENTS) % 64000
            s = TcpSession(out, client, SERVER, cport, 502, rng.randrange(1 << 32), rng.randrange(1 << 32))
            ts = s.open(ts + 0.001)
            for _ in range(per_flow):
                trans += 1
                req, resp = transaction(rng, trans & 0xFFFF)
                ts += 0.005
                s.exchange(ts, req, resp, latency=0.001)
            ts = s.close(ts + 0.01)
    return trans
