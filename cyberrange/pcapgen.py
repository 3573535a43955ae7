"""Fast, well-formed packet writing for generated captures (cyber range, benchmark, demo).

Frames are packed with struct from the layer formats (checksums computed) and written with scapy's
`RawPcapWriter`, so hours of plant traffic stream to disk in seconds; scapy's packet classes are
used where a frame is rare or complex (they cost ~50 us a frame). `TcpSession` keeps sequence and
acknowledgement numbers like a real stack: handshake, data with ACKs, FIN teardown.
"""

from __future__ import annotations

import struct
import sys
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

from scapy.utils import RawPcapWriter

_IP = struct.Struct("!BBHHHBBH4s4s")
_TCP = struct.Struct("!HHIIBBHHH")
_UDP = struct.Struct("!HHHH")
_PSEUDO = struct.Struct("!4s4sBBH")

SYN, FIN, RST, PSH, ACK = 0x02, 0x01, 0x04, 0x08, 0x10
_LITTLE = sys.byteorder == "little"


def checksum(b: bytes) -> int:
    """The Internet checksum (RFC 1071).

    Sums native-order 16-bit words (memoryview cast, no format parsing) and swaps the folded result
    on little-endian hosts: the one's-complement sum is byte-order independent (RFC 1071 section 2B).
    """
    if len(b) % 2:
        b += b"\x00"
    s = sum(memoryview(b).cast("H"))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    if _LITTLE:
        s = ((s & 0xFF) << 8) | (s >> 8)
    return ~s & 0xFFFF


def mac_bytes(mac: str) -> bytes:
    return bytes.fromhex(mac.replace(":", "").replace("-", ""))


def ip_bytes(ip: str) -> bytes:
    return bytes(int(x) for x in ip.split("."))


def ipv4(src: bytes, dst: bytes, proto: int, payload: bytes, ident: int, ttl: int = 64) -> bytes:
    hdr = _IP.pack(0x45, 0, 20 + len(payload), ident & 0xFFFF, 0x4000, ttl, proto, 0, src, dst)
    return hdr[:10] + struct.pack("!H", checksum(hdr)) + hdr[12:] + payload


def tcp_segment(src: bytes, dst: bytes, sport: int, dport: int, seq: int, ack: int, flags: int,
                payload: bytes = b"", window: int = 64240) -> bytes:
    seg = _TCP.pack(sport, dport, seq & 0xFFFFFFFF, ack & 0xFFFFFFFF if flags & ACK else 0, 5 << 4, flags,
                    window, 0, 0) + payload
    ck = checksum(_PSEUDO.pack(src, dst, 0, 6, len(seg)) + seg)
    return seg[:16] + struct.pack("!H", ck) + seg[18:]


def udp_datagram(src: bytes, dst: bytes, sport: int, dport: int, payload: bytes) -> bytes:
    dg = _UDP.pack(sport, dport, 8 + len(payload), 0) + payload
    ck = checksum(_PSEUDO.pack(src, dst, 0, 17, len(dg)) + dg) or 0xFFFF
    return dg[:6] + struct.pack("!H", ck) + dg[8:]


def ethernet(src_mac: bytes, dst_mac: bytes, ethertype: int, payload: bytes,
             vlan: int | None = None) -> bytes:
    if vlan is not None:
        return dst_mac + src_mac + struct.pack("!HHH", 0x8100, vlan & 0x0FFF, ethertype) + payload
    frame = dst_mac + src_mac + struct.pack("!H", ethertype) + payload
    return frame + b"\x00" * (60 - len(frame)) if len(frame) < 60 else frame   # Ethernet minimum size


@dataclass(frozen=True)
class Host:
    """A node on the generated network."""

    ip: str
    mac: str

    @cached_property
    def ipb(self) -> bytes:
        return ip_bytes(self.ip)

    @cached_property
    def macb(self) -> bytes:
        return mac_bytes(self.mac)


class PcapStream:
    """Frames to a pcap file in timestamp order; counts them (1-based frame numbers, as tshark)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.w = RawPcapWriter(str(path), linktype=1, sync=False)
        self.w.write_header(None)
        self.frames = 0
        self.ident = 1

    def write(self, ts: float, frame: bytes) -> int:
        sec = int(ts)
        usec = round((ts - sec) * 1e6)
        if usec >= 1_000_000:
            sec, usec = sec + 1, usec - 1_000_000
        self.w.write_packet(frame, sec=sec, usec=usec, caplen=len(frame), wirelen=len(frame))
        self.frames += 1
        return self.frames

    def next_ident(self) -> int:
        self.ident = (self.ident + 1) & 0xFFFF
        return self.ident

    def close(self) -> None:
        self.w.close()

    def __enter__(self) -> PcapStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def arp(out: PcapStream, ts: float, sender: Host, target_ip: str, reply_to: Host | None = None) -> int:
    """An ARP request (who-has target_ip) or, with reply_to, a reply telling it sender's MAC."""
    op = 2 if reply_to else 1
    tmac = reply_to.macb if reply_to else b"\x00" * 6
    body = struct.pack("!HHBBH6s4s6s4s", 1, 0x0800, 6, 4, op, sender.macb, sender.ipb, tmac,
                       ip_bytes(target_ip))
    dst = reply_to.macb if reply_to else b"\xff" * 6
    return out.write(ts, ethernet(sender.macb, dst, 0x0806, body))


@dataclass
class TcpSession:
    """One TCP connection between a client and a server, written frame by frame as a stack would."""

    out: PcapStream
    client: Host
    server: Host
    cport: int
    sport: int
    cseq: int = 1000
    sseq: int = 5000
    frames: list[int] = field(default_factory=list)

    def _emit(self, ts: float, from_client: bool, flags: int, payload: bytes = b"") -> int:
        if from_client:
            a, b, sp, dp, seq, ack = self.client, self.server, self.cport, self.sport, self.cseq, self.sseq
        else:
            a, b, sp, dp, seq, ack = self.server, self.client, self.sport, self.cport, self.sseq, self.cseq
        seg = tcp_segment(a.ipb, b.ipb, sp, dp, seq, ack, flags, payload)
        pkt = ipv4(a.ipb, b.ipb, 6, seg, self.out.next_ident())
        n = self.out.write(ts, ethernet(a.macb, b.macb, 0x0800, pkt))
        adv = len(payload) + (1 if flags & (SYN | FIN) else 0)
        if from_client:
            self.cseq = (self.cseq + adv) & 0xFFFFFFFF
        else:
            self.sseq = (self.sseq + adv) & 0xFFFFFFFF
        self.frames.append(n)
        return n

    def open(self, ts: float, rtt: float = 0.0002) -> float:
        """Three-way handshake; returns the time after it."""
        self._emit(ts, True, SYN)
        self._emit(ts + rtt / 2, False, SYN | ACK)
        self._emit(ts + rtt, True, ACK)
        return ts + rtt

    def send(self, ts: float, from_client: bool, payload: bytes) -> int:
        """A data segment (PSH|ACK); returns its frame number."""
        return self._emit(ts, from_client, PSH | ACK, payload)

    def ack(self, ts: float, from_client: bool) -> int:
        return self._emit(ts, from_client, ACK)

    def exchange(self, ts: float, request: bytes, response: bytes | None, latency: float = 0.002,
                 ack_delay: float = 0.0004) -> tuple[int, int | None]:
        """Request from the client, the server's response after `latency`, and the client's ACK."""
        req = self.send(ts, True, request)
        if response is None:
            self.ack(ts + ack_delay, False)
            return req, None
        resp = self.send(ts + latency, False, response)
        self.ack(ts + latency + ack_delay, True)
        return req, resp

    def close(self, ts: float, rtt: float = 0.0002) -> float:
        """FIN from the client, FIN+ACK from the server, final ACK."""
        self._emit(ts, True, FIN | ACK)
        self._emit(ts + rtt / 2, False, FIN | ACK)
        self._emit(ts + rtt, True, ACK)
        return ts + rtt

    def reset(self, ts: float, from_client: bool = True) -> int:
        return self._emit(ts, from_client, RST | ACK)


def udp(out: PcapStream, ts: float, src: Host, dst: Host, sport: int, dport: int, payload: bytes,
        dst_mac: bytes | None = None) -> int:
    """One UDP datagram (dst_mac overrides, e.g. broadcast)."""
    dg = udp_datagram(src.ipb, dst.ipb, sport, dport, payload)
    return out.write(ts, ethernet(src.macb, dst_mac or dst.macb, 0x0800, ipv4(src.ipb, dst.ipb, 17, dg,
                                                                            out.next_ident())))


def tcp_frame(out: PcapStream, ts: float, src: Host, dst: Host, sport: int, dport: int, seq: int, ack: int,
              flags: int, payload: bytes = b"", window: int = 64240) -> int:
    """One TCP segment outside a `TcpSession` (scans, resets): Ethernet + IPv4 + TCP, checksums set."""
    seg = tcp_segment(src.ipb, dst.ipb, sport, dport, seq, ack, flags, payload, window=window)
    packet = ipv4(src.ipb, dst.ipb, 6, seg, out.next_ident())
    return out.write(ts, ethernet(src.macb, dst.macb, 0x0800, packet))
