"""Scenario -> labeled pcap: the plant's normal operations and the attacks, streamed to disk.

`Range(scenario).run(pcap, labels, windows)` runs a discrete-event schedule: poll jobs (HMI/SCADA
masters polling PLCs, RTUs, IEDs), operator writes, spontaneous reports and attack jobs, each writing
whole exchanges (TCP handshake, data with ACKs, teardown) through `FrameSink`. The sink keeps frames
in a heap and writes those older than the next job's start time, so the pcap is in timestamp order
while every exchange is written at once. Every frame gets a label row (frame_no, time, label,
technique, src, dst); each (attack, technique) gets a window row (hosts, start, end). The run is
deterministic for a seed: all randomness comes from seeded `random.Random`s, in schedule order.

`Range.expected` counts the protocol events the sensor should report (per kind), so tests can check
that the sensor parsed exactly the transactions that were written.
"""

from __future__ import annotations

import csv
import heapq
import random
import socket
import struct
import sys
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from cyberrange import protocols as P
from cyberrange.pcapgen import ACK, FIN, SYN, Host, TcpSession, ethernet, ipv4, tcp_segment
from cyberrange.process import MODELS
from cyberrange.scenario import Asset, Attack, Poll, Scenario

PORTS = {"modbus": 502, "s7comm": 102, "dnp3": 20000, "iec104": 2404}

_TCPH = struct.Struct("!HHIIBBHHH")
_IPH = struct.Struct("!BBHHHBBH4s4s")
_CK = struct.Struct("!H")


def _swap16(v: int) -> int:
    """A 16-bit value as the native-order word sum sees it (identity on big-endian hosts)."""
    return ((v & 0xFF) << 8) | (v >> 8) if sys.byteorder == "little" else v


_REC = struct.Struct("<IIII")
_GLOBAL = struct.Struct("<IHHiIII").pack(0xA1B2C3D4, 2, 4, 0, 0, 65535, 1)


class FrameSink:
    """Ordered, labeled frame writer: pcap (libpcap, Ethernet, microseconds) + labels CSV + windows."""

    def __init__(self, pcap: str | Path, labels: str | Path | None, t0: float) -> None:
        self.t0 = t0
        self.f = open(pcap, "wb", buffering=1 << 20)  # noqa: SIM115 - closed in close()
        self.f.write(_GLOBAL)
        self.lab = open(labels, "w", buffering=1 << 20, newline="") if labels else None  # noqa: SIM115
        if self.lab:
            self.lab.write("frame_no,time,label,technique,src,dst\n")
        self.heap: list[tuple] = []
        self.seq = 0
        self.frames = 0
        self.ident = 1
        self.label = "normal"
        self.technique = ""
        self.windows: dict[tuple[str, str], list] = {}
        self.attack_hosts: dict[str, set[str]] = {}
        self.attack_frames: dict[str, list[int]] = {}
        self._ipc: dict[bytes, str] = {}
        self.last_ts = 0.0

    def write(self, ts: float, frame: bytes) -> int:
        """Queue a frame at plant time ts (seconds since start); numbered when flushed."""
        heapq.heappush(self.heap, (ts, self.seq, frame, self.label, self.technique))
        self.seq += 1
        return 0

    def next_ident(self) -> int:
        self.ident = (self.ident + 1) & 0xFFFF
        return self.ident

    def _ip(self, b: bytes) -> str:
        s = self._ipc.get(b)
        if s is None:
            s = self._ipc[b] = socket.inet_ntoa(b)
        return s

    def flush(self, until: float) -> None:
        """Write every queued frame earlier than `until` (no later job can write before it)."""
        heap, pop, f, lab, rec, t0 = self.heap, heapq.heappop, self.f, self.lab, _REC.pack, self.t0
        rows = []
        while heap and heap[0][0] < until:
            ts, _, frame, label, tech = pop(heap)
            self.frames += 1
            n = self.frames
            at = t0 + ts
            sec = int(at)
            usec = round((at - sec) * 1e6)
            if usec >= 1_000_000:
                sec, usec = sec + 1, usec - 1_000_000
            ln = len(frame)
            f.write(rec(sec, usec, ln, ln))
            f.write(frame)
            self.last_ts = ts
            if lab is None and label == "normal":
                continue
            et = frame[12:14]
            if et == b"\x08\x00":
                src, dst = self._ip(frame[26:30]), self._ip(frame[30:34])
            elif et == b"\x08\x06":
                src, dst = self._ip(frame[28:32]), self._ip(frame[38:42])
            else:
                src = dst = ""
            if lab is not None:
                rows.append(f"{n},{at:.6f},{label},{tech},{src},{dst}\n")
            if label != "normal":
                w = self.windows.get((label, tech))
                if w is None:
                    w = self.windows[(label, tech)] = [set(), at, at]
                w[0].update((src, dst))
                w[2] = at
                self.attack_frames.setdefault(label, []).append(n)
        if rows:
            lab.write("".join(rows))

    def close(self, windows: str | Path | None = None) -> None:
        self.flush(float("inf"))
        for (label, _), w in self.windows.items():  # the attacker even where it hides its IP (MITM)
            w[0].update(self.attack_hosts.get(label, ()))
        self.f.close()
        if self.lab:
            self.lab.close()
        if windows:
            with open(windows, "w", newline="") as fh:
                w = csv.writer(fh, lineterminator="\n")
                w.writerow(["attack", "technique", "hosts", "start", "end"])
                for (label, tech), (hosts, start, end) in sorted(
                    self.windows.items(), key=lambda kv: kv[1][1]
                ):
                    w.writerow(
                        [label, tech, " ".join(sorted(h for h in hosts if h)), f"{start:.6f}", f"{end:.6f}"]
                    )


@dataclass
class Mitm:
    """An ARP-spoofing man in the middle on one session: frames go via the attacker, responses altered."""

    attacker: Host
    start: float
    end: float
    label: str
    freeze: dict[int, int] = field(default_factory=dict)  # register address -> value shown to the HMI


class Session(TcpSession):
    """TcpSession that never goes back in time and can be routed through a man in the middle."""

    mitm: Mitm | None = None
    last: float = 0.0
    spoof: bytes | None = None

    def at(self, t: float) -> float:
        """The first time >= t after everything this session has written (no overlapping exchanges)."""
        return max(t, self.last + 0.0005)

    _fast: dict | None = None

    def _prep(self) -> dict:
        """Per-direction constants: Ethernet header, addresses, ports, pseudo-header partial sum."""
        out = {}
        for fc in (True, False):
            a, b = (self.client, self.server) if fc else (self.server, self.client)
            sp, dp = (self.cport, self.sport) if fc else (self.sport, self.cport)
            psum = sum(memoryview(a.ipb + b.ipb + b"\x00\x06").cast("H"))
            out[fc] = (b.macb + a.macb + b"\x08\x00", a.ipb, b.ipb, sp, dp, psum)
        self._fast = out
        return out

    def _emit(self, ts: float, from_client: bool, flags: int, payload: bytes = b"") -> int:
        """One segment, built like pcapgen.tcp_segment/ipv4/ethernet but with the constant parts cached
        (the generator's hot path: the same bytes, about twice as fast)."""
        if ts > self.last:
            self.last = ts
        m = self.mitm
        if m is None or not (m.start <= ts < m.end):
            eth, src, dst, sp, dp, psum = (self._fast or self._prep())[from_client]
            if from_client:
                seq, ack = self.cseq, self.sseq
            else:
                seq, ack = self.sseq, self.cseq
            seg = _TCPH.pack(sp, dp, seq, ack if flags & ACK else 0, 0x50, flags, 64240, 0, 0) + payload
            n = len(seg)
            s = psum + _swap16(n) + sum(memoryview(seg + b"\x00" if n & 1 else seg).cast("H"))
            while s >> 16:
                s = (s & 0xFFFF) + (s >> 16)
            out = self.out
            ip = _IPH.pack(0x45, 0, 20 + n, out.next_ident(), 0x4000, 64, 6, 0, src, dst)
            c = sum(memoryview(ip).cast("H"))
            while c >> 16:
                c = (c & 0xFFFF) + (c >> 16)
            frame = b"".join(
                (
                    eth,
                    ip[:10],
                    _CK.pack(~_swap16(c) & 0xFFFF),
                    ip[12:],
                    seg[:16],
                    _CK.pack(~_swap16(s) & 0xFFFF),
                    seg[18:],
                )
            )
            if len(frame) < 60:
                frame += b"\x00" * (60 - len(frame))
            out.write(ts, frame)
            adv = len(payload) + (1 if flags & (SYN | FIN) else 0)
            if from_client:
                self.cseq = (seq + adv) & 0xFFFFFFFF
            else:
                self.sseq = (seq + adv) & 0xFFFFFFFF
            self.frames.append(0)
            return 0
        # Via the attacker: the original to the attacker's MAC, then forwarded (TTL - 1, maybe altered).
        a, b = (self.client, self.server) if from_client else (self.server, self.client)
        sp, dp = (self.cport, self.sport) if from_client else (self.sport, self.cport)
        seq, ack = (self.cseq, self.sseq) if from_client else (self.sseq, self.cseq)
        ident = self.out.next_ident()
        out, old = self.out, (self.out.label, self.out.technique)
        out.label, out.technique = m.label, "T0830"
        seg = tcp_segment(a.ipb, b.ipb, sp, dp, seq, ack, flags, payload)
        out.write(ts, ethernet(a.macb, m.attacker.macb, 0x0800, ipv4(a.ipb, b.ipb, 6, seg, ident)))
        fwd = payload
        if self.spoof is not None and payload:
            fwd, out.technique = self.spoof, "T0832"
        seg = tcp_segment(a.ipb, b.ipb, sp, dp, seq, ack, flags, fwd)
        out.write(
            ts + 0.00008, ethernet(m.attacker.macb, b.macb, 0x0800, ipv4(a.ipb, b.ipb, 6, seg, ident, ttl=63))
        )
        out.label, out.technique = old
        adv = len(payload) + (1 if flags & (SYN | FIN) else 0)
        if from_client:
            self.cseq = (self.cseq + adv) & 0xFFFFFFFF
        else:
            self.sseq = (self.sseq + adv) & 0xFFFFFFFF
        self.last = ts + 0.00008
        return 0


class Link:
    """One polling relation (a master and its slave over one protocol) on one TCP session."""

    def __init__(self, r: Range, poll: Poll, label: str = "normal", technique: str = "") -> None:
        self.r, self.poll = r, poll
        self.client, self.server = r.sc.asset(poll.client), r.sc.asset(poll.server)
        self.c, self.s = r.hosts[poll.client], r.hosts[poll.server]
        self.label, self.technique = label, technique
        self.sess: Session | None = None
        self.tid = r.rng.randrange(1, 2000)  # Modbus transaction id / S7 PDU ref
        self.seq = 0  # DNP3 application sequence
        self.tseq = [0, 0]  # DNP3 transport sequence per direction
        self.ns = self.nr = 0  # IEC 104 as seen by the client: sent / received
        self.s_ns = 0  # IEC 104 server's N(S)
        self.unacked = 0
        self.next_integrity = 0.0
        self.until = float("inf")

    # --------------------------------------------------------------------------- connection
    def connect(self, t: float) -> float:
        t = self.r.resolve(t, self.c, self.s)
        self.sess = Session(
            self.r.sink,
            self.c,
            self.s,
            self.r.ephemeral(),
            PORTS[self.poll.protocol],
            cseq=self.r.rng.getrandbits(32),
            sseq=self.r.rng.getrandbits(32),
        )
        self.r.sessions[(self.poll.client, self.poll.server, self.poll.protocol)] = self
        t = self.sess.open(t) + 0.001
        proto = self.poll.protocol
        if proto == "s7comm":
            t = self.s7_connect(t)
        elif proto == "iec104":
            t = self.u(t, P.STARTDT_ACT, P.STARTDT_CON)
            self.r.iec_points(self.poll.server, False, id(self))  # the state from which changes count
        if self.poll.identify:
            t = self.identify(t)
        return t

    def close(self, t: float) -> float:
        t = self.sess.at(t)
        if self.poll.protocol == "iec104":
            t = self.u(t, P.STOPDT_ACT, P.STOPDT_CON) + 0.01
        return self.sess.close(t)

    def xchg(
        self,
        t: float,
        req: bytes,
        resp: bytes | None,
        kind: str,
        latency: float | None = None,
        spoof: bytes | None = None,
    ) -> float:
        """Request, response after the device's latency, client ACK; counts one expected event."""
        s = self.sess
        t = s.at(t)
        lat = latency if latency is not None else 0.0015 + self.r.rng.random() * 0.003
        s.send(t, True, req)
        if resp is None:
            s.ack(t + 0.0002, False)
        else:
            s.spoof = spoof
            s.send(t + lat, False, resp)
            s.spoof = None
            s.ack(t + lat + 0.0003, True)
        self.r.expected[kind] += 1
        return t + lat + 0.0003

    # ------------------------------------------------------------------------------- Modbus
    def mb(
        self, t: float, pdu: bytes, resp: bytes | None, unit: int | None = None, spoof: bytes | None = None
    ) -> float:
        self.tid = (self.tid + 1) & 0xFFFF
        u = self.server.unit_id if unit is None else unit
        return self.xchg(
            t,
            P.mbap(self.tid, u, pdu),
            P.mbap(self.tid, u, resp) if resp is not None else None,
            "modbus",
            spoof=P.mbap(self.tid, u, spoof) if spoof is not None else None,
        )

    def mb_cycle(self, t: float) -> float:
        srv = self.poll.server
        for rd in self.poll.reads:
            fc = rd.fc or 3
            table = {1: "coil", 2: "discrete", 3: "holding", 4: "input"}[fc]
            vals = self.r.values(srv, table, rd.address, rd.count)
            spoof = None
            m = self.sess.mitm
            if m is not None and m.start <= self.sess.at(t) < m.end and fc == 3:
                sv = list(vals)
                for addr, v in m.freeze.items():
                    if rd.address <= addr < rd.address + rd.count:
                        sv[addr - rd.address] = v
                spoof = P.mb_read_resp(fc, sv)
            t = self.mb(t, P.mb_read_req(fc, rd.address, rd.count), P.mb_read_resp(fc, vals), spoof=spoof)
        return t

    def mb_write(self, t: float, table: str, address: int, value: float) -> tuple[float, bytes]:
        fc = 5 if table == "coil" else 6
        raw = self.r.write_point(self.poll.server, table, address, value, t)
        pdu = P.mb_write_single(fc, address, raw)
        req = P.mbap((self.tid + 1) & 0xFFFF, self.server.unit_id, pdu)
        return self.mb(t, pdu, pdu), req

    # ------------------------------------------------------------------------------ S7comm
    def s7_connect(self, t: float) -> float:
        ref = self.r.rng.randrange(1, 0xFFFF)
        dst_tsap = 0x0100 | (self.server.rack << 5) | self.server.slot
        s = self.sess
        s.send(t, True, P.cotp_cr(ref, 0x0100, dst_tsap))
        s.send(t + 0.001, False, P.cotp_cc(ref, self.r.rng.randrange(1, 0xFFFF), 0x0100, dst_tsap))
        s.ack(t + 0.0013, True)
        self.r.expected["cotp"] += 1
        return self.s7job(t + 0.003, P.s7_setup_req(), P.s7_setup_req(240))

    def s7job(
        self,
        t: float,
        param: bytes,
        ack_param: bytes,
        data: bytes = b"",
        ack_data: bytes = b"",
        latency: float | None = None,
    ) -> float:
        self.tid = (self.tid + 1) & 0xFFFF
        return self.xchg(
            t,
            P.s7(P.JOB, self.tid, param, data),
            P.s7(P.ACK_DATA, self.tid, ack_param, ack_data),
            "s7comm",
            latency,
        )

    def s7szl(self, t: float, szl_id: int, index: int, entry_len: int, entries: list[bytes]) -> float:
        self.tid = (self.tid + 1) & 0xFFFF
        rp, rd = P.s7_szl_req(szl_id, index)
        ap, ad = P.s7_szl_resp(szl_id, index, entry_len, entries)
        return self.xchg(t, P.s7(P.USERDATA, self.tid, rp, rd), P.s7(P.USERDATA, self.tid, ap, ad), "s7comm")

    def s7_cycle(self, t: float) -> float:
        items, datas = [], []
        for rd in self.poll.reads:
            items.append(P.s7_item(rd.area, rd.db, rd.address, rd.length))
            datas.append(self.r.db_bytes(self.poll.server, rd.db, rd.address, rd.length))
        ap, ad = P.s7_read_resp(datas)
        return self.s7job(t, P.s7_read_req(items), ap, ack_data=ad)

    def s7_write(self, t: float, db: int, address: int, value: float) -> tuple[float, bytes]:
        raw = self.r.write_db(self.poll.server, db, address, value, t)
        p, d = P.s7_write_req([P.s7_item("DB", db, address, len(raw))], [raw])
        ap, ad = P.s7_write_resp(1)
        req = P.s7(P.JOB, (self.tid + 1) & 0xFFFF, p, d)  # exactly what s7job sends next
        return self.s7job(t, p, ap, d, ad), req

    # -------------------------------------------------------------------------------- DNP3
    def dnp(self, t: float, fc: int, objs: bytes, resp_objs: bytes | None, iin: int = 0) -> float:
        m, o = self.client.dnp3_address or 1, self.server.dnp3_address or 10
        req = P.dnp3_frame(True, o, m, self.tseq[0], P.dnp3_req(self.seq, fc, objs))
        self.tseq[0] = (self.tseq[0] + 1) & 0x3F
        resp = None
        if resp_objs is not None:
            resp = P.dnp3_frame(False, m, o, self.tseq[1], P.dnp3_resp(self.seq, resp_objs, iin))
            self.tseq[1] = (self.tseq[1] + 1) & 0x3F
        self.seq = (self.seq + 1) & 0x0F
        return self.xchg(t, req, resp, "dnp3", latency=0.004 + self.r.rng.random() * 0.006)

    def dnp_cycle(self, t: float) -> float:
        srv = self.poll.server
        if t >= self.next_integrity:
            self.next_integrity = t + (self.poll.integrity or 600.0)
            bi = self.r.values(srv, "bi", 0, self.r.max_index(srv, "bi") + 1)
            ai = self.r.values(srv, "ai", 0, self.r.max_index(srv, "ai") + 1, signed=True)
            return self.dnp(
                t,
                1,
                P.dnp3_class_objs((1, 2, 3, 0)),
                P.dnp3_binary_inputs([bool(v) for v in bi]) + P.dnp3_analog_inputs(ai),
            )
        return self.dnp(t, 1, P.dnp3_class_objs((1, 2, 3)), b"")

    def dnp_crob(self, t: float, index: int, value: float) -> tuple[float, bytes]:
        code = 0x41 if value else 0x81  # LATCH_ON... PULSE_ON/close vs trip (TCC)
        crob = P.dnp3_crob(index, code)
        t = self.dnp(t, 3, crob, crob)  # SELECT (IEEE 1815 4.4.3)
        req = P.dnp3_frame(
            True,
            self.server.dnp3_address or 10,
            self.client.dnp3_address or 1,
            self.tseq[0],
            P.dnp3_req(self.seq, 4, crob),
        )
        self.r.write_point(self.poll.server, "bo", index, value, t)
        return self.dnp(t + 0.05, 4, crob, crob), req  # OPERATE

    # ------------------------------------------------------------------------------ IEC 104
    def u(self, t: float, act: int, con: int) -> float:
        s = self.sess
        t = s.at(t)
        s.send(t, True, P.apci_u(act))
        s.send(t + 0.002, False, P.apci_u(con))
        s.ack(t + 0.0023, True)
        self.r.expected["iec104"] += 1
        return t + 0.0023

    def i_client(self, t: float, a: bytes) -> None:
        self.sess.send(t, True, P.apci_i(self.ns, self.nr, a))
        self.ns = (self.ns + 1) & 0x7FFF
        self.unacked = 0

    def i_server(self, t: float, a: bytes) -> None:
        self.sess.send(t, False, P.apci_i(self.s_ns, self.ns, a))
        self.s_ns = (self.s_ns + 1) & 0x7FFF
        self.nr = self.s_ns
        self.unacked += 1

    def s_frame(self, t: float) -> float:
        """The controlling station acknowledges what it received (w = 8, or at the end of a burst)."""
        self.sess.send(t, True, P.apci_s(self.nr))
        self.unacked = 0
        return t

    def monitor(self, t: float, spont: bool) -> float:
        """Interrogation answer (COT 20, untimed types) or spontaneous changes (COT 3, CP56 time tags)."""
        srv = self.poll.server
        ca = self.server.common_address or 1
        changed = self.r.iec_points(srv, spont, id(self))
        groups: dict[int, list[bytes]] = {}
        at = self.r.t0 + t
        for pt, v in changed:
            if pt.type == "single":
                tid = P.M_SP_TB_1 if spont else P.M_SP_NA_1
                obj = P.m_sp(pt.address, bool(v), at if spont else None)
            else:
                tid = P.M_ME_TF_1 if spont else P.M_ME_NC_1
                obj = P.m_me_nc(pt.address, v, at if spont else None)
            groups.setdefault(tid, []).append(obj)
        for tid, objs in sorted(groups.items()):
            for i in range(0, len(objs), 8):
                t += 0.0008
                self.i_server(t, P.asdu(tid, P.COT_SPONT if spont else P.COT_INROGEN, ca, objs[i : i + 8]))
                self.r.expected["iec104"] += 1
                if self.unacked >= 8:
                    t = self.s_frame(t + 0.0004)
        if self.unacked and spont:
            t = self.s_frame(t + 0.0005)
        return t

    def interrogation(self, t: float) -> float:
        ca = self.server.common_address or 1
        t = self.sess.at(t)
        qoi = P.ioa(0) + b"\x14"
        self.i_client(t, P.asdu(P.C_IC_NA_1, P.COT_ACT, ca, [qoi]))
        self.i_server(t + 0.003, P.asdu(P.C_IC_NA_1, P.COT_ACTCON, ca, [qoi]))
        t = self.monitor(t + 0.003, False)
        self.i_server(t + 0.001, P.asdu(P.C_IC_NA_1, P.COT_ACTTERM, ca, [qoi]))
        self.r.expected["iec104"] += 1
        self.last_io = self.s_frame(t + 0.002)
        return self.last_io

    def iec_command(self, t: float, address: int, value: float) -> tuple[float, bytes]:
        """C_SC_NA_1 act -> con -> term (101 7.4.2: direct execute, SCO bit 0 = state)."""
        ca = self.server.common_address or 1
        t = self.sess.at(t)
        a = P.asdu(P.C_SC_NA_1, P.COT_ACT, ca, [P.ioa(address) + bytes([1 if value else 0])])
        self.i_client(t, a)
        self.r.write_point(self.poll.server, "ioa", address, value, t)
        self.i_server(
            t + 0.02, P.asdu(P.C_SC_NA_1, P.COT_ACTCON, ca, [P.ioa(address) + bytes([1 if value else 0])])
        )
        self.i_server(
            t + 0.12, P.asdu(P.C_SC_NA_1, P.COT_ACTTERM, ca, [P.ioa(address) + bytes([1 if value else 0])])
        )
        self.r.expected["iec104"] += 1
        t = self.monitor(t + 0.15, True)
        return self.s_frame(t + 0.01), a

    # -------------------------------------------------------------------------- identity
    def identify(self, t: float) -> float:
        idn = self.server.identity
        if self.poll.protocol == "modbus":
            return self.mb(
                t,
                P.mb_device_id_req(),
                P.mb_device_id_resp(idn.vendor, idn.order_number or idn.model, idn.firmware),
            )
        if self.poll.protocol == "s7comm":
            t = self.s7szl(t, 0x0011, 0, 28, P.szl_0011(idn.order_number, idn.firmware or "V1.0.0"))
            return self.s7szl(
                t + 0.01,
                0x001C,
                0,
                34,
                P.szl_001c(
                    {
                        1: self.r.sc.site.name[:24],
                        2: idn.model or self.server.name,
                        3: self.server.name,
                        5: idn.serial or f"S C-{self.server.ip}",
                    }
                ),
            )
        return t

    # -------------------------------------------------------------------------------- jobs
    def cycle(self, t: float) -> float:
        proto = self.poll.protocol
        if proto == "modbus":
            return self.mb_cycle(t)
        if proto == "s7comm":
            return self.s7_cycle(t)
        if proto == "dnp3":
            return self.dnp_cycle(t)
        # IEC 104: interrogation on its period, spontaneous reports in between, TESTFR when idle
        if t >= self.next_integrity:
            self.next_integrity = t + (self.poll.integrity or 900.0)
            return self.interrogation(t)
        t0 = self.sess.at(t)
        t2 = self.monitor(t0, True)
        if t2 > t0:
            self.last_io = t2
        elif t - self.last_io >= self.poll.testfr:  # t3 idle timer: test the link (104 5.2)
            t2 = self.last_io = self.u(t0, P.TESTFR_ACT, P.TESTFR_CON)
        return t2

    last_io = 0.0

    def write(self, t: float, table: str, address: int, value: float, db: int = 0) -> tuple[float, bytes]:
        """An operator (or injected) write; returns the time after it and the request as sent."""
        proto = self.poll.protocol
        if proto == "modbus":
            return self.mb_write(t, table, address, value)
        if proto == "s7comm":
            return self.s7_write(t, db, address, value)
        if proto == "dnp3":
            return self.dnp_crob(t, address, value)
        return self.iec_command(t, address, value)


class Range:
    """A scenario being generated."""

    def __init__(self, sc: Scenario, seed: int | None = None) -> None:
        self.sc = sc
        self.seed = sc.seed if seed is None else seed
        self.rng = random.Random(self.seed)
        self.t0 = datetime.fromisoformat(sc.start.replace("Z", "+00:00")).timestamp()
        self.hosts = {a.name: Host(a.ip, a.mac) for a in sc.assets}
        self.by_ip = {a.ip: a for a in sc.assets}
        self.proc = MODELS[sc.process.model](dict(sc.process.params), random.Random(self.seed * 7919 + 1))
        self.points: dict[tuple[str, str], dict[int, Any]] = {}
        for p in sc.points:
            self.points.setdefault((p.asset, p.table), {})[p.address] = p
        self.jobs: list[tuple[float, int, Callable[[float], None]]] = []
        self.jseq = 0
        self.sessions: dict[tuple[str, str, str], Link] = {}
        self.resolved: set[tuple[str, str]] = set()
        self.expected: Counter = Counter()
        self.captured: list[tuple[str, str, str, bytes]] = []  # (proto, client, server, request) for replays
        self.sent_iec: dict[tuple[int, str, int], float] = {}
        self._monitored: dict[str, list] = {}
        self.port = 49152 + self.rng.randrange(0, 4000)
        self.sink: FrameSink | None = None

    # ------------------------------------------------------------------------------- plumbing
    def schedule(self, t: float, fn: Callable[[float], None]) -> None:
        if t <= self.sc.duration:
            heapq.heappush(self.jobs, (t, self.jseq, fn))
            self.jseq += 1

    def ephemeral(self) -> int:
        self.port = 49152 + (self.port - 49152 + 1 + self.rng.randrange(0, 7)) % 16000
        return self.port

    def resolve(self, t: float, a: Host, b: Host) -> float:
        """ARP request/reply the first time a talks to b (the reply teaches b too)."""
        if (a.ip, b.ip) in self.resolved:
            return t
        from cyberrange.pcapgen import arp

        arp(self.sink, t, a, b.ip)
        arp(self.sink, t + 0.0002, b, a.ip, reply_to=a)
        self.resolved.update({(a.ip, b.ip), (b.ip, a.ip)})
        return t + 0.0005

    @contextmanager
    def labeled(self, label: str, technique: str) -> Iterator[None]:
        old = (self.sink.label, self.sink.technique)
        self.sink.label, self.sink.technique = label, technique
        try:
            yield
        finally:
            self.sink.label, self.sink.technique = old

    def ports(self, asset: Asset) -> set[int]:
        out = set(asset.open_ports)
        for p in self.sc.polls:
            if p.server == asset.name:
                out.add(PORTS[p.protocol])
        return out

    # ------------------------------------------------------------------------------- values
    def _raw(self, p: Any) -> float:
        return self.proc.get(p.tag) * p.scale

    def values(self, asset: str, table: str, start: int, count: int, signed: bool = False) -> list[int]:
        pts = self.points.get((asset, table), {})
        out = []
        for a in range(start, start + count):
            p = pts.get(a)
            if p is None:
                out.append(0)
                continue
            v = round(self._raw(p))
            if table in ("coil", "discrete", "bi"):
                out.append(1 if v else 0)
            elif signed or p.type == "int32":
                out.append(max(-(2**31), min(2**31 - 1, v)))
            else:
                out.append(v & 0xFFFF if p.type == "int16" else max(0, min(0xFFFF, v)))
        return out

    def max_index(self, asset: str, table: str) -> int:
        pts = self.points.get((asset, table), {})
        return max(pts) if pts else -1

    def db_bytes(self, asset: str, db: int, offset: int, length: int) -> bytes:
        buf = bytearray(length)
        for p in self.points.get((asset, "db"), {}).values():
            if p.db != db or not offset <= p.address < offset + length:
                continue
            o, v = p.address - offset, self._raw(p)
            enc = {
                "real": struct.pack("!f", v),
                "int32": struct.pack("!i", round(v)),
                "bool": bytes([1 if v else 0]),
            }.get(p.type) or struct.pack("!h", max(-32768, min(32767, round(v))))
            buf[o : o + len(enc)] = enc[: length - o]
        return bytes(buf)

    def write_point(self, asset: str, table: str, address: int, value: float, t: float) -> int:
        """A write reaching the device: the process tag behind it changes; returns the raw value."""
        p = self.points.get((asset, table), {}).get(address)
        if p is not None:
            self.proc.advance(t)
            self.proc.write(p.tag, value / p.scale)
        return int(value)

    def write_db(self, asset: str, db: int, address: int, value: float, t: float) -> bytes:
        p = self.points.get((asset, "db"), {}).get(address)
        typ = p.type if p is not None else "int16"
        if p is not None:
            self.proc.advance(t)
            self.proc.write(p.tag, value / p.scale)
        if typ == "real":
            return struct.pack("!f", value)
        if typ == "bool":
            return bytes([1 if value else 0])
        return struct.pack("!h", int(value))

    def iec_points(self, asset: str, spont: bool, conn: int) -> list[tuple[Any, float]]:
        """IEC 104 monitor points: all (interrogation) or those beyond their deadband (spontaneous).

        The deadband state is per connection: an RTU reports changes to every connected master."""
        out = []
        mon = self._monitored.get(asset)
        if mon is None:
            mon = self._monitored[asset] = [
                p for p in self.points.get((asset, "ioa"), {}).values() if not p.writable
            ]
        for p in mon:
            v = self.proc.get(p.tag) * p.scale
            key = (conn, asset, p.address)
            last = self.sent_iec.get(key)
            if spont and last is not None:
                dead = 0.5 if p.type == "single" else max(0.005 * abs(last), 0.2)
                if abs(v - last) < dead:
                    continue
            if spont and last is None:
                continue
            self.sent_iec[key] = v
            out.append((p, v))
        return out

    # --------------------------------------------------------------------------------- polls
    def start_poll(
        self, poll: Poll, label: str = "normal", technique: str = "", until: float | None = None
    ) -> Link:
        link = Link(self, poll, label, technique)
        if until is not None:
            link.until = until

        def first(t: float) -> None:
            with self.labeled(link.label, link.technique):
                self.proc.advance(t)
                t2 = link.connect(t)
                link.cycle(t2 + 0.01)
            self.schedule(t + poll.period, tick)

        def tick(t: float) -> None:
            if t >= link.until:
                with self.labeled(link.label, link.technique):
                    link.close(t)
                return
            with self.labeled(link.label, link.technique):
                self.proc.advance(t)
                link.cycle(t)
            jit = (self.rng.random() * 2 - 1) * poll.jitter
            self.schedule(t + max(0.001, poll.period + jit), tick)

        self.schedule(poll.start + self.rng.random() * min(poll.period, 1.0), first)
        for w in poll.writes:
            self._schedule_writes(link, w)
        return link

    def _schedule_writes(self, link: Link, w: Any) -> None:
        state = {"i": 0}

        def job(t: float) -> None:
            if link.sess is None:
                self.schedule(t + 1.0, job)
                return
            v = w.values[state["i"] % len(w.values)]
            state["i"] += 1
            with self.labeled(link.label, link.technique):
                _, req = link.write(t, w.table, w.address, v, w.db)
            self.captured.append((link.poll.protocol, link.poll.client, link.poll.server, req))
            self.schedule(t + w.every, job)

        self.schedule(link.poll.start + w.every * (0.5 + 0.1 * self.rng.random()), job)

    # ----------------------------------------------------------------------------------- run
    def run(
        self,
        pcap: str | Path,
        labels: str | Path | None = None,
        windows: str | Path | None = None,
        progress: Callable[[float], None] | None = None,
    ) -> dict[str, Any]:
        """Generate the whole scenario; returns a summary (frames, expected events, windows)."""
        from cyberrange.attacks import ATTACKS

        self.sink = FrameSink(pcap, labels, self.t0)
        links = [self.start_poll(p) for p in self.sc.polls]
        for k in self.sc.attacks:
            if k.start <= self.sc.duration:
                self.schedule(k.start, _attack_job(self, k, ATTACKS[k.type]))
        end = self.sc.duration
        nxt = 60.0
        while self.jobs and self.jobs[0][0] <= end:
            t, _, fn = heapq.heappop(self.jobs)
            self.sink.flush(t)
            fn(t)
            if progress and t >= nxt:
                progress(t)
                nxt = t + 60.0
        for link in links:  # orderly shutdown of the masters' sessions
            if link.sess is not None:
                with self.labeled(link.label, link.technique):
                    link.close(max(end, link.sess.last + 0.001))
        self.sink.close(windows)
        windows_out = [
            {
                "attack": lab,
                "technique": tech,
                "hosts": sorted(h for h in w[0] if h),
                "start": w[1],
                "end": w[2],
            }
            for (lab, tech), w in self.sink.windows.items()
        ]
        return {
            "scenario": self.sc.name,
            "frames": self.sink.frames,
            "duration": self.sc.duration,
            "expected": dict(self.expected),
            "windows": sorted(windows_out, key=lambda w: w["start"]),
            "attack_frames": {k: len(v) for k, v in self.sink.attack_frames.items()},
        }


def _attack_job(r: Range, k: Attack, spec: Any) -> Callable[[float], None]:
    def job(t: float) -> None:
        if k.attacker is not None:
            r.sink.attack_hosts.setdefault(k.name, set()).add(r.hosts[k.attacker].ip)
        with r.labeled(k.name, spec.technique):
            spec.fn(r, k, t)

    return job


def generate(
    scenario: Scenario,
    pcap: str | Path,
    labels: str | Path | None = None,
    windows: str | Path | None = None,
    seed: int | None = None,
) -> dict[str, Any]:
    """Generate a scenario's capture, labels and attack windows; returns the summary."""
    return Range(scenario, seed).run(pcap, labels, windows)


__all__ = ["PORTS", "FrameSink", "Link", "Mitm", "Range", "Session", "generate"]
