"""Connections: TCP stream reassembly per direction and conn-log style flow records.

Reassembly copes with retransmissions (dropped), overlaps (trimmed, first copy wins as in Zeek),
out-of-order segments (held, bounded per direction), gaps (declared when the peer acknowledges past
a hole, when the hold limit is hit, or at close) and mid-stream starts (the first seen sequence number
is the start). Flow records follow Zeek's conn.log: duration, bytes and packets per direction,
`conn_state` and `history`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from icsight.events import Endpoint

if TYPE_CHECKING:
    from sensors.base import Analyzer
    from sensors.pipeline import Sensor

MAX_HELD_BYTES = 256 * 1024       # out-of-order bytes held per direction before declaring a gap
MAX_HELD_SEGMENTS = 256
MAX_FLOW_FRAMES = 1000            # origin.frames of a flow record lists at most this many frames

SYN, ACK, FIN, RST = 0x02, 0x10, 0x01, 0x04
# conn.log history letters (upper case: originator) -> a bit each, for a cheap "seen yet?" test
HIST_BIT = {c: 1 << i for i, c in enumerate("SHADFRTGshadfrtg")}
_SEQ_MOD = 1 << 32


def seq_diff(a: int, b: int) -> int:
    """a - b in 32-bit sequence space (signed)."""
    d = (a - b) & 0xFFFFFFFF
    return d - _SEQ_MOD if d & 0x80000000 else d


class TcpHalf:
    """Reassembly state of one direction of a TCP connection."""

    __slots__ = ("fin", "held", "held_bytes", "isn_seen", "next_seq", "rst", "syn")

    def __init__(self) -> None:
        self.next_seq: int | None = None   # next byte expected
        self.held: dict[int, tuple[bytes, int, float]] = {}   # seq -> (data, frame, ts)
        self.held_bytes = 0
        self.syn = self.fin = self.rst = False
        self.isn_seen = False


class Conn:
    """One flow (TCP connection, UDP or ICMP pseudo-connection) and its analyzer."""

    __slots__ = (
        "analyzer", "closed_ts", "first_ts", "frames", "frames_truncated", "gaps", "half", "hbits", "hist",
        "last_ts", "orig", "orig_bytes", "orig_ip_bytes", "orig_pkts", "proto", "protocol", "resp",
        "resp_bytes", "resp_ip_bytes", "resp_pkts", "retrans", "sensor", "service_probe", "uid",
    )

    def __init__(self, sensor: Sensor, proto: str, orig: Endpoint, resp: Endpoint, ts: float, uid: str):
        self.sensor = sensor
        self.proto = proto                  # "tcp", "udp", "icmp"
        self.orig, self.resp = orig, resp
        self.first_ts = self.last_ts = ts
        self.closed_ts: float | None = None
        self.uid = uid
        self.orig_pkts = self.resp_pkts = 0
        self.orig_bytes = self.resp_bytes = 0         # payload bytes (TCP: by sequence space)
        self.orig_ip_bytes = self.resp_ip_bytes = 0
        self.hist: list[str] = []                     # history letters in order of first occurrence
        self.hbits = 0                                # the same letters as a bit set (HIST_BIT)
        self.frames: list[int] = []
        self.frames_truncated = False
        self.analyzer: Analyzer | None = None
        self.protocol: str | None = None              # identified ICS protocol
        self.service_probe = 0                        # payloads examined by shape probes so far
        self.half = (TcpHalf(), TcpHalf()) if proto == "tcp" else None
        self.gaps = 0
        self.retrans = 0

    # --- emission helpers for analyzers -------------------------------------------------------
    def emit(self, kind: str, action: str, fields: dict[str, Any], ts: float, frames: list[int],
             is_orig: bool = True) -> None:
        """Emit an event whose src is the originator (is_orig) or the responder."""
        if is_orig:
            self.sensor.emit(kind, action, fields, ts, frames, self.orig, self.resp)
        else:
            self.sensor.emit(kind, action, fields, ts, frames, self.resp, self.orig)

    def weird(self, protocol: str, name: str, reason: str, ts: float, frames: list[int],
              is_orig: bool = True) -> None:
        """Malformed or unexpected traffic: a `weird` event and a per-protocol counter."""
        self.sensor.count_weird(protocol, name)
        fields = {"protocol": protocol, "name": name, "reason": reason}
        self.emit("weird", "error", fields, ts, frames, is_orig)

    def add_hist(self, c: str) -> None:
        b = HIST_BIT[c]
        if not self.hbits & b:
            self.hbits |= b
            self.hist.append(c)

    def note_frame(self, frame: int) -> None:
        if len(self.frames) < MAX_FLOW_FRAMES:
            self.frames.append(frame)
        else:
            self.frames_truncated = True

    # --- conn.log state -----------------------------------------------------------------------
    def conn_state(self) -> str:
        """Zeek's conn_state from the history letters (Zeek conn.log documentation)."""
        if self.proto != "tcp":
            return "SF" if self.resp_pkts else "S0"
        h = set(self.hist)
        syn, synack = "S" in h, "h" in h
        ofin, rfin, orst, rrst = "F" in h, "f" in h, "R" in h, "r" in h
        if not syn and not synack:
            return "OTH"
        if syn and not synack:
            if rrst:
                return "REJ"
            if orst:
                return "RSTOS0"
            if ofin:
                return "SH"
            if "s" in h or "a" in h or "d" in h:
                return "S1" if not (rfin or orst or rrst) else "OTH"
            return "S0"
        if not syn and synack:
            if rrst:
                return "RSTRH"
            if rfin:
                return "SHR"
            return "OTH"
        if orst:
            return "RSTO"
        if rrst:
            return "RSTR"
        if ofin and rfin:
            return "SF"
        if ofin:
            return "S2"
        if rfin:
            return "S3"
        return "S1"

    def record(self) -> dict[str, Any]:
        """The flow's fields, conn.log style."""
        rec: dict[str, Any] = {
            "uid": self.uid,
            "proto": self.proto,
            "service": self.protocol,
            "duration": round(self.last_ts - self.first_ts, 6),
            "orig_bytes": self.orig_bytes,
            "resp_bytes": self.resp_bytes,
            "orig_pkts": self.orig_pkts,
            "resp_pkts": self.resp_pkts,
            "orig_ip_bytes": self.orig_ip_bytes,
            "resp_ip_bytes": self.resp_ip_bytes,
            "conn_state": self.conn_state(),
            "history": "".join(self.hist),
            "missed_bytes": self.gaps,
            "retransmissions": self.retrans,
        }
        if self.frames_truncated:
            rec["frames_truncated"] = True
        return rec
