"""The sensor: frames in, events out.

`Sensor.packet()` decodes L2 (Ethernet, 802.1Q/QinQ, Linux SLL/SLL2, raw IP, BSD null), IPv4 (with
fragment reassembly) and IPv6 (with extension headers and fragments), UDP, TCP and ICMP; keeps the
flow table; reassembles TCP; identifies the ICS protocol of each flow by port map or payload shape;
and hands bytes to the protocol analyzers, which emit events through `Sensor.emit()`.

Hot path: bytes are decoded with precompiled `struct.Struct`s and slices; no scapy here.
"""

from __future__ import annotations

import socket
import struct
import weakref
from collections import Counter
from collections.abc import Callable, Iterable
from types import ModuleType
from typing import Any

from icsight.events import Endpoint, Event, Origin, id_prefix
from icsight.settings import Settings
from sensors import base
from sensors.flows import ACK, FIN, HIST_BIT, MAX_FLOW_FRAMES, RST, SYN, Conn, TcpHalf, seq_diff
from sensors.offload import SKIP_KINDS, Offloaded

# Link types (tcpdump.org/linktypes.html)
LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_RAW_ALT = (12, 14)      # DLT_RAW on some BSDs
LINKTYPE_LOOP = 108
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276
SUPPORTED_LINKTYPES = frozenset({0, 1, 12, 14, 101, 108, 113, 228, 229, 276})

ETH_IPV4, ETH_IPV6, ETH_ARP = 0x0800, 0x86DD, 0x0806
VLAN_TYPES = frozenset({0x8100, 0x88A8, 0x9100, 0x9200})

_H = struct.Struct("!H")
_HH = struct.Struct("!HH")
_IPV4 = struct.Struct("!BBHHHBBH4s4s")
_TCP = struct.Struct("!HHIIBB")
_SEQACK = struct.Struct("!II")
_IPV6_FRAG = struct.Struct("!BxHI")

_BIT_A, _BIT_D, _BIT_a, _BIT_d = HIST_BIT["A"], HIST_BIT["D"], HIST_BIT["a"], HIST_BIT["d"]

FRAG_TIMEOUT = 30.0
MAX_FRAG_DATAGRAMS = 1024
SWEEP_EVERY = 10.0              # seconds of capture time between idle-flow sweeps
MAX_PROBE_PAYLOADS = 4          # payloads examined for shape before giving up on a flow


def mac_str(b: bytes) -> str:
    return b.hex(":")


def _ip_str(b: bytes) -> str:
    return socket.inet_ntoa(b) if len(b) == 4 else socket.inet_ntop(socket.AF_INET6, b)


class Sensor:
    """Turns frames of one or more captures into events (collected in `self.out`).

    Call `begin(capture)` before a capture's frames and `end()` after them; `drain()` takes the
    events produced so far. `observers` get every event (the asset inventory is one) and may return
    further events. `offload` is one more observer (detection), run after them in a worker process
    (`sensors.offload`): same output, each batch drained one batch later; `close()` stops the worker.
    """

    def __init__(self, settings: Settings, protocols: dict[str, ModuleType] | None = None,
                 observers: Iterable[Callable[[Event], Iterable[Event] | None]] = (),
                 offload: Callable[[Event], Iterable[Event] | None] | None = None) -> None:
        from sensors import PROTOCOLS

        self.offload: Offloaded | None = None
        self._pending: list[tuple[list[Event], list[int]]] = []   # batches at the worker, in order
        self._ready: list[Event] = []                              # their events with alerts merged in
        if offload is not None:
            self.offload = Offloaded(offload)
            weakref.finalize(self, self.offload.close)
        self.settings = settings
        self.sensor_id, self.tenant = settings.sensor, settings.tenant
        self.protocols = PROTOCOLS if protocols is None else protocols
        self.observers = list(observers)
        self.tcp_map: dict[int, ModuleType] = {}
        self.udp_map: dict[int, ModuleType] = {}
        self.probes: list[tuple[ModuleType, bool, bool]] = []   # (module, tcp?, udp?)
        self.l2: dict[int, base.FrameAnalyzer] = {}
        for name, mod in self.protocols.items():
            override = settings.ports.get(name, {})
            for p in override.get("tcp", getattr(mod, "TCP_PORTS", ())):
                self.tcp_map[int(p)] = mod
            for p in override.get("udp", getattr(mod, "UDP_PORTS", ())):
                self.udp_map[int(p)] = mod
            if settings.probe_unknown and hasattr(mod, "probe"):
                self.probes.append((mod, hasattr(mod, "TcpAnalyzer"), hasattr(mod, "UdpAnalyzer")))
            if hasattr(mod, "L2Analyzer"):
                an = mod.L2Analyzer(self)
                for et in getattr(mod, "ETHERTYPES", ()):
                    self.l2[et] = an
        self.out: list[Event] = []
        self.stats: Counter[str] = Counter()
        self.weird_counts: Counter[tuple[str, str]] = Counter()
        self.capture = ""
        self.index = 0
        self.id_prefix = id_prefix(self.sensor_id, "")
        self.kind_counts: dict[str, int] = {}
        self.flows_tcp: dict[bytes, tuple[Conn, bool]] = {}
        self.flows_udp: dict[bytes, tuple[Conn, bool]] = {}
        self.frags: dict[tuple, dict[str, Any]] = {}
        self.next_sweep = 0.0
        self.now = 0.0
        self.uid_counter = 0
        self.nframes = 0
        self.batches = 0               # event batches handed to the sinks (sensors.run)
        self._tcp_idle = settings.tcp_idle_timeout
        self._udp_idle = settings.udp_idle_timeout

    # ------------------------------------------------------------------ events
    def begin(self, capture: str) -> None:
        """Start a capture: event ids are (sensor, capture, index within the capture)."""
        self.capture = capture
        self.index = 0
        self.id_prefix = id_prefix(self.sensor_id, capture)

    def emit(self, kind: str, action: str, fields: dict[str, Any], ts: float, frames: list[int],
             src: Endpoint, dst: Endpoint) -> None:
        ev = Event.fast(f"{self.id_prefix}{self.index:08x}", ts, kind, self.tenant, self.sensor_id, src, dst,
                        action, fields, Origin(self.capture, tuple(frames)))
        self.index += 1
        self.out.append(ev)
        self.kind_counts[kind] = self.kind_counts.get(kind, 0) + 1
        for obs in self.observers:
            more = obs(ev)
            if more:
                for m in more:
                    self.out.append(m)
                    self.kind_counts[m.kind] = self.kind_counts.get(m.kind, 0) + 1

    def next_event_id(self) -> str:
        """An id for an event built outside `emit` (observers such as the asset inventory)."""
        eid = f"{self.id_prefix}{self.index:08x}"
        self.index += 1
        return eid

    def count_weird(self, protocol: str, name: str) -> None:
        self.weird_counts[(protocol, name)] += 1

    def weird(self, protocol: str, name: str, reason: str, ts: float, frames: list[int],
              src: Endpoint | None = None, dst: Endpoint | None = None) -> None:
        self.count_weird(protocol, name)
        self.emit("weird", "error", {"protocol": protocol, "name": name, "reason": reason}, ts, frames,
                  src or Endpoint(), dst or Endpoint())

    def drain(self) -> list[Event]:
        out, self.out = self.out, []
        if self.offload is not None:
            self._submit(out)
            self._collect(keep=1 if out else 0)     # the worker scores this batch while we parse on
            out, self._ready = self._ready, []
        self.stats["frames"] = self.nframes
        for k, v in self.kind_counts.items():
            self.stats["events." + k] = v
        return out

    def _submit(self, batch: list[Event]) -> None:
        """Hand a non-empty batch to the detection worker; it waits in `_pending` for its alerts."""
        if batch:
            assert self.offload is not None
            self._pending.append((batch, self.offload.submit(batch)))

    def _collect(self, keep: int) -> None:
        """Merge the worker's alerts into every pending batch but the newest `keep` (into `_ready`)."""
        assert self.offload is not None
        while len(self._pending) > keep:
            batch, pos = self._pending.pop(0)
            hits = self.offload.collect()
            if not hits:
                self._ready.extend(batch)
                continue
            counts = self.kind_counts
            start = 0
            n = len(batch)
            for i, alerts in hits:
                at = pos[i] + 1             # after the event and what the inline observers added for it
                while at < n and batch[at].kind in SKIP_KINDS:
                    at += 1
                self._ready.extend(batch[start:at])
                self._ready.extend(alerts)
                for a in alerts:
                    counts[a.kind] = counts.get(a.kind, 0) + 1
                start = at
            self._ready.extend(batch[start:])

    def close(self) -> None:
        """Stop the detection worker, if any (also done when the sensor is garbage-collected)."""
        if self.offload is not None:
            self.offload.close()

    # ------------------------------------------------------------------ frames
    def packet(self, frame: int, ts: float, data: bytes, linktype: int = LINKTYPE_ETHERNET) -> None:
        """Process one captured frame (1-based frame number as tshark counts)."""
        self.nframes += 1
        self.now = ts
        if ts >= self.next_sweep:
            self.sweep(ts)
        try:
            # Fast path for the bulk of ICS traffic: Ethernet II, IPv4 without options or
            # fragmentation, TCP, on a flow already in the table. With IHL 5 the flow key
            # (src ip, dst ip, sport, dport) is one contiguous slice, data[26:38].
            if (linktype == 1 and len(data) >= 54 and data[12] == 8 and data[13] == 0 and data[14] == 0x45
                    and data[23] == 6 and not (data[20] & 0x3F or data[21])):
                hit = self.flows_tcp.get(data[26:38])
                if hit is not None:
                    conn = hit[0]
                    tot = (data[16] << 8) | data[17]
                    hl = (data[46] >> 4) << 2
                    if ts - conn.last_ts <= self._tcp_idle and hl >= 20 and 34 + hl <= 14 + tot <= len(data):
                        flags = data[47]
                        # conn.half is (originator's, responder's): the peer's half is half[is_orig].
                        if flags == ACK and 34 + hl == 14 + tot and not conn.half[hit[1]].held:
                            # A pure ACK (no payload, nothing held for the peer): bookkeeping only.
                            conn.last_ts = ts
                            if len(conn.frames) < MAX_FLOW_FRAMES:
                                conn.frames.append(frame)
                            else:
                                conn.frames_truncated = True
                            if hit[1]:
                                conn.orig_pkts += 1
                                conn.orig_ip_bytes += tot
                                if not conn.hbits & _BIT_A:
                                    conn.hbits |= _BIT_A
                                    conn.hist.append("A")
                            else:
                                conn.resp_pkts += 1
                                conn.resp_ip_bytes += tot
                                if not conn.hbits & _BIT_a:
                                    conn.hbits |= _BIT_a
                                    conn.hist.append("a")
                            return
                        seq, ack = _SEQACK.unpack_from(data, 38)
                        self._tcp(conn, hit[1], flags, seq, ack, data[34 + hl:14 + tot], ts, frame, tot)
                        return
            self._packet(frame, ts, data, linktype)
        except Exception as e:                  # a bug of ours must not kill the capture loop
            if base.DEBUG:
                raise
            self.weird("sensor", "internal_error", f"{type(e).__name__}: {e}", ts, [frame])

    def _packet(self, frame: int, ts: float, data: bytes, linktype: int) -> None:
        smac = dmac = None
        vlan = None
        if linktype == LINKTYPE_ETHERNET:
            if len(data) < 14:
                return self.weird("link", "truncated_ethernet", f"{len(data)} bytes", ts, [frame])
            et = (data[12] << 8) | data[13]
            off = 14
            while et in VLAN_TYPES:
                if len(data) < off + 4:
                    return self.weird("link", "truncated_vlan", "802.1Q tag cut short", ts, [frame])
                if vlan is None:
                    vlan = ((data[off] << 8) | data[off + 1]) & 0x0FFF
                et = (data[off + 2] << 8) | data[off + 3]
                off += 4
            smac, dmac = data[6:12], data[0:6]
            if et < 0x0600:       # 802.3 length field: LLC frame, not IP
                self.stats["frames.llc"] += 1
                return None
        elif linktype == LINKTYPE_LINUX_SLL:
            if len(data) < 16:
                return self.weird("link", "truncated_sll", f"{len(data)} bytes", ts, [frame])
            hatype, alen = _HH.unpack_from(data, 2)[0], _H.unpack_from(data, 4)[0]
            if hatype == 1 and alen == 6:
                smac = data[6:12]
            et, off = _H.unpack_from(data, 14)[0], 16
        elif linktype == LINKTYPE_LINUX_SLL2:
            if len(data) < 20:
                return self.weird("link", "truncated_sll2", f"{len(data)} bytes", ts, [frame])
            et = _H.unpack_from(data, 0)[0]
            hatype, alen = _H.unpack_from(data, 8)[0], data[11]
            if hatype == 1 and alen == 6:
                smac = data[12:18]
            off = 20
        elif linktype in (LINKTYPE_RAW, LINKTYPE_IPV4, LINKTYPE_IPV6) or linktype in LINKTYPE_RAW_ALT:
            if not data:
                return None
            et, off = (ETH_IPV4 if data[0] >> 4 == 4 else ETH_IPV6), 0
        elif linktype in (LINKTYPE_NULL, LINKTYPE_LOOP):
            if len(data) < 4:
                return None
            fam = int.from_bytes(data[:4], "big" if linktype == LINKTYPE_LOOP else "little")
            if fam > 0xFFFF:
                fam = int.from_bytes(data[:4], "big")
            et, off = (ETH_IPV4 if fam == 2 else ETH_IPV6), 4
        else:
            self.stats["frames.unsupported_linktype"] += 1
            return None

        if et == ETH_IPV4:
            return self._ipv4(frame, ts, data, off, smac, dmac)
        if et == ETH_IPV6:
            return self._ipv6(frame, ts, data, off, smac, dmac)
        an = self.l2.get(et)
        if an is not None:
            self.stats["frames.l2." + an.PROTOCOL] += 1
            an.frame(ts, frame, mac_str(smac) if smac else "", mac_str(dmac) if dmac else "", et,
                     data[off:], vlan)
            return None
        self.stats["frames.other_ethertype"] += 1
        return None

    def _ipv4(self, frame: int, ts: float, data: bytes, off: int, smac: bytes | None,
              dmac: bytes | None) -> None:
        if len(data) < off + 20:
            return self.weird("ip", "truncated_ip_header", "IPv4 header cut short", ts, [frame])
        vihl, _tos, tot, ident, frag, _ttl, proto, _ck, src, dst = _IPV4.unpack_from(data, off)
        ihl = (vihl & 0x0F) * 4
        if vihl >> 4 != 4 or ihl < 20:
            return self.weird("ip", "bad_ip_header", f"version/IHL byte 0x{vihl:02x}", ts, [frame])
        end = off + tot
        if tot < ihl or end > len(data):
            if tot < ihl or len(data) < off + ihl:
                return self.weird("ip", "bad_ip_length", f"total length {tot}", ts, [frame])
            end = len(data)            # snaplen cut the packet: use what was captured
            self.stats["frames.truncated_by_snaplen"] += 1
        payload = data[off + ihl:end]
        frames: int | list[int] = frame
        if frag & 0x3FFF:              # MF set or offset > 0: a fragment
            done = self._defrag((src, dst, ident, proto), (frag & 0x1FFF) * 8, bool(frag & 0x2000),
                                payload, ts, frame)
            if done is None:
                return None
            payload, frames = done
        return self._l4(frames, ts, proto, src, dst, payload, tot, smac, dmac)

    def _ipv6(self, frame: int, ts: float, data: bytes, off: int, smac: bytes | None,
              dmac: bytes | None) -> None:
        if len(data) < off + 40:
            return self.weird("ip", "truncated_ipv6_header", "IPv6 header cut short", ts, [frame])
        plen = _H.unpack_from(data, off + 4)[0]
        nxt = data[off + 6]
        src, dst = data[off + 8:off + 24], data[off + 24:off + 40]
        end = min(off + 40 + plen, len(data))
        p = off + 40
        frames: int | list[int] = frame
        frag_info = None
        while nxt in (0, 43, 44, 60, 51):          # hop-by-hop, routing, fragment, dest opts, AH
            if p + 8 > end:
                return self.weird("ip", "truncated_ipv6_ext", f"extension header {nxt}", ts, [frame])
            if nxt == 44:
                n2, fo, ident = _IPV6_FRAG.unpack_from(data, p)
                frag_info = (fo & 0xFFF8, bool(fo & 1), ident)
                nxt, p = n2, p + 8
                break
            n2 = data[p]
            hlen = (data[p + 1] + 2) * 4 if nxt == 51 else (data[p + 1] + 1) * 8
            nxt, p = n2, p + hlen
        payload = data[p:end]
        if frag_info is not None and (frag_info[0] or frag_info[1]):
            done = self._defrag((src, dst, frag_info[2], nxt), frag_info[0], frag_info[1], payload, ts,
                                frame)
            if done is None:
                return None
            payload, frames = done
        return self._l4(frames, ts, nxt, src, dst, payload, 40 + plen, smac, dmac)

    def _defrag(self, key: tuple, offset: int, more: bool, payload: bytes, ts: float,
                frame: int) -> tuple[bytes, list[int]] | None:
        """Collect IP fragments; returns the whole payload and its frames once complete."""
        st = self.frags.get(key)
        if st is None:
            if len(self.frags) >= MAX_FRAG_DATAGRAMS:
                oldest = min(self.frags, key=lambda k: self.frags[k]["ts"])
                self._frag_expired(oldest)
            st = self.frags[key] = {"parts": {}, "total": None, "frames": [], "ts": ts}
        if offset not in st["parts"]:          # first copy wins on overlap, like Zeek
            st["parts"][offset] = payload
        st["frames"].append(frame)
        if not more:
            st["total"] = offset + len(payload)
        total = st["total"]
        if total is None:
            return None
        have, buf = 0, bytearray()
        for o in sorted(st["parts"]):
            part = st["parts"][o]
            if o > have:
                return None                    # still a hole
            if o + len(part) > have:
                buf += part[have - o:]
                have = o + len(part)
        if have < total:
            return None
        del self.frags[key]
        self.stats["ip.reassembled"] += 1
        return bytes(buf[:total]), st["frames"]

    def _frag_expired(self, key: tuple) -> None:
        st = self.frags.pop(key)
        self.weird("ip", "fragment_timeout", "IP datagram never completed", st["ts"], st["frames"],
                   Endpoint(_ip_str(key[0])), Endpoint(_ip_str(key[1])))

    # ------------------------------------------------------------------ transport
    def _l4(self, frames: int | list[int], ts: float, proto: int, src: bytes, dst: bytes, seg: bytes,
            ip_len: int, smac: bytes | None, dmac: bytes | None) -> None:
        if proto == 6:
            if len(seg) < 20:
                return self.weird("tcp", "truncated_tcp_header", f"{len(seg)} bytes", ts,
                                  base.as_frames(frames), Endpoint(_ip_str(src)), Endpoint(_ip_str(dst)))
            sport, dport, seq, ack, doff, flags = _TCP.unpack_from(seg, 0)
            hl = (doff >> 4) * 4
            if hl < 20 or hl > len(seg):
                return self.weird("tcp", "bad_tcp_header_length", f"data offset {hl}", ts,
                                  base.as_frames(frames), Endpoint(_ip_str(src), sport),
                                  Endpoint(_ip_str(dst), dport))
            key = src + dst + seg[0:4]
            hit = self.flows_tcp.get(key)
            if hit is not None and ts - hit[0].last_ts > self._tcp_idle:
                self._finish(self.flows_tcp, key, hit[0])      # idle past the timeout: a new flow
                hit = None
            if hit is None:
                hit = self._new_conn("tcp", src, dst, sport, dport, smac, dmac, ts, flags)
            conn, is_orig = hit
            return self._tcp(conn, is_orig, flags, seq, ack, seg[hl:], ts, frames, ip_len)
        if proto == 17:
            if len(seg) < 8:
                return self.weird("udp", "truncated_udp_header", f"{len(seg)} bytes", ts,
                                  base.as_frames(frames), Endpoint(_ip_str(src)), Endpoint(_ip_str(dst)))
            sport, dport = _HH.unpack_from(seg, 0)
            ulen = _H.unpack_from(seg, 4)[0]
            payload = seg[8:ulen] if 8 <= ulen <= len(seg) else seg[8:]
            key = src + dst + seg[0:4]
            hit = self.flows_udp.get(key)
            if hit is not None and ts - hit[0].last_ts > self._udp_idle:
                self._finish(self.flows_udp, key, hit[0])
                hit = None
            if hit is None:
                hit = self._new_conn("udp", src, dst, sport, dport, smac, dmac, ts, 0)
            conn, is_orig = hit
            self._count(conn, is_orig, ts, frames, len(payload), ip_len)
            if payload:
                self._deliver(conn, is_orig, payload, ts, frames)
            return None
        if proto in (1, 58):
            key = src + dst + b"\x00\x00\x00\x00"
            hit = self.flows_udp.get(key)
            if hit is not None and ts - hit[0].last_ts > self._udp_idle:
                self._finish(self.flows_udp, key, hit[0])
                hit = None
            if hit is None:
                hit = self._new_conn("icmp", src, dst, 0, 0, smac, dmac, ts, 0)
            conn, is_orig = hit
            self._count(conn, is_orig, ts, frames, max(len(seg) - 8, 0), ip_len)
            return None
        self.stats["frames.other_ip_proto"] += 1
        return None

    def _new_conn(self, proto: str, src: bytes, dst: bytes, sport: int, dport: int,
                  smac: bytes | None, dmac: bytes | None, ts: float, flags: int) -> tuple[Conn, bool]:
        """Create a flow; decide who originated it (SYN sender, else the side not on a service port)."""
        pmap = self.tcp_map if proto == "tcp" else self.udp_map
        flip = False
        if proto == "tcp" and flags & SYN and not flags & (FIN | RST):   # SYN+FIN/RST opens nothing
            flip = bool(flags & ACK)
        elif dport not in pmap and (sport in pmap or (proto == "tcp" and not flags & SYN
                                                       and sport < dport and sport < 1024)):
            flip = True
        a = Endpoint(_ip_str(src), sport if proto != "icmp" else None, mac_str(smac) if smac else None)
        b = Endpoint(_ip_str(dst), dport if proto != "icmp" else None, mac_str(dmac) if dmac else None)
        orig, resp = (b, a) if flip else (a, b)
        self.uid_counter += 1
        conn = Conn(self, proto, orig, resp, ts, f"C{self.uid_counter}")
        table = self.flows_tcp if proto == "tcp" else self.flows_udp
        k1 = src + dst + (struct.pack("!HH", sport, dport) if proto != "icmp" else b"\x00" * 4)
        k2 = dst + src + (struct.pack("!HH", dport, sport) if proto != "icmp" else b"\x00" * 4)
        table[k1] = (conn, not flip)
        table[k2] = (conn, flip)
        mod = pmap.get(resp.port) if resp.port is not None else None
        if mod is not None:
            self._attach(conn, mod)
        self.stats["flows." + proto] += 1
        return conn, not flip

    def _attach(self, conn: Conn, mod: ModuleType) -> None:
        cls = getattr(mod, "TcpAnalyzer" if conn.proto == "tcp" else "UdpAnalyzer", None)
        if cls is not None:
            conn.analyzer = cls(conn)
            conn.protocol = mod.PROTOCOL

    def _count(self, conn: Conn, is_orig: bool, ts: float, frames: int | list[int], nbytes: int,
               ip_len: int) -> None:
        conn.last_ts = ts
        if isinstance(frames, int):
            conn.note_frame(frames)
        else:
            for f in frames:
                conn.note_frame(f)
        if is_orig:
            conn.orig_pkts += 1
            conn.orig_ip_bytes += ip_len
            if conn.proto != "tcp":
                conn.orig_bytes += nbytes
        else:
            conn.resp_pkts += 1
            conn.resp_ip_bytes += ip_len
            if conn.proto != "tcp":
                conn.resp_bytes += nbytes
        if conn.proto != "tcp" and nbytes:
            conn.add_hist("D" if is_orig else "d")

    def _tcp(self, conn: Conn, is_orig: bool, flags: int, seq: int, ack: int, payload: bytes, ts: float,
             frames: int | list[int], ip_len: int) -> None:
        # Bookkeeping is inlined: this runs for every TCP packet.
        conn.last_ts = ts
        if isinstance(frames, int):
            if len(conn.frames) < MAX_FLOW_FRAMES:
                conn.frames.append(frames)
            else:
                conn.frames_truncated = True
        else:
            for f in frames:
                conn.note_frame(f)
        if is_orig:
            conn.orig_pkts += 1
            conn.orig_ip_bytes += ip_len
            half, other = conn.half
            bit_a, bit_d = _BIT_A, _BIT_D
        else:
            conn.resp_pkts += 1
            conn.resp_ip_bytes += ip_len
            other, half = conn.half
            bit_a, bit_d = _BIT_a, _BIT_d
        if flags & SYN:
            conn.add_hist(("H" if is_orig else "h") if flags & ACK else ("S" if is_orig else "s"))
            if not half.syn:
                half.syn = True
                half.next_seq = (seq + 1) & 0xFFFFFFFF
                half.isn_seen = True
        elif not payload and flags & ACK and not flags & (FIN | RST) and not conn.hbits & bit_a:
            conn.hbits |= bit_a
            conn.hist.append("A" if is_orig else "a")
        if flags & ACK and other.held and other.next_seq is not None and seq_diff(ack, other.next_seq) > 0:
            # The peer acknowledged past a hole: what it had received goes to the analyzer before this
            # segment's own payload (a response must not overtake the request it answers).
            self._fill_gap(conn, not is_orig, other, ts, upto=ack)
        if payload:
            if not conn.hbits & bit_d:
                conn.hbits |= bit_d
                conn.hist.append("D" if is_orig else "d")
            nxt = half.next_seq
            if nxt is None:          # mid-stream start
                nxt = half.next_seq = seq
            if seq == nxt and not half.held:     # in order: the common case
                n = len(payload)
                half.next_seq = (seq + n) & 0xFFFFFFFF
                if is_orig:
                    conn.orig_bytes += n
                else:
                    conn.resp_bytes += n
                an = conn.analyzer
                if an is not None and not base.DEBUG:
                    try:
                        an.data(is_orig, payload, ts, frames)
                    except Exception as e:     # parser bug: count it, keep the sensor alive
                        conn.weird(conn.protocol or "?", "parser_error", f"{type(e).__name__}: {e}", ts,
                                   base.as_frames(frames), is_orig)
                else:
                    self._deliver(conn, is_orig, payload, ts, frames)
            else:
                self._segment(conn, is_orig, half, seq, payload, ts, frames)
        if flags & (FIN | RST):
            if flags & FIN:
                conn.add_hist("F" if is_orig else "f")
                half.fin = True
            if flags & RST:
                conn.add_hist("R" if is_orig else "r")
                half.rst = True
            if (half.rst or (half.fin and other.fin)) and conn.closed_ts is None:
                conn.closed_ts = ts

    def _segment(self, conn: Conn, is_orig: bool, half: TcpHalf, seq: int, payload: bytes, ts: float,
                 frames: int | list[int]) -> None:
        d = seq_diff(seq, half.next_seq)
        n = len(payload)
        if d == 0 and not half.held:
            half.next_seq = (seq + n) & 0xFFFFFFFF
            self._bytes(conn, is_orig, n)
            self._deliver(conn, is_orig, payload, ts, frames)
            return
        if d < 0:
            if d + n <= 0:
                conn.retrans += 1
                conn.add_hist("T" if is_orig else "t")
                return
            payload, seq, d = payload[-d:], half.next_seq, 0      # overlap: keep only the new bytes
        if d == 0:
            half.next_seq = (seq + len(payload)) & 0xFFFFFFFF
            self._bytes(conn, is_orig, len(payload))
            self._deliver(conn, is_orig, payload, ts, frames)
            self._drain_held(conn, is_orig, half)
            return
        if seq in half.held:
            conn.retrans += 1
            return
        half.held[seq] = (payload, frames, ts)
        half.held_bytes += len(payload)
        if half.held_bytes > 256 * 1024 or len(half.held) > 256:
            self._fill_gap(conn, is_orig, half, ts)

    def _drain_held(self, conn: Conn, is_orig: bool, half: TcpHalf) -> None:
        while half.held:
            progressed = False
            for s in sorted(half.held, key=lambda s: seq_diff(s, half.next_seq)):
                d = seq_diff(s, half.next_seq)
                if d > 0:
                    break
                data, frames, ts = half.held.pop(s)
                half.held_bytes -= len(data)
                if d + len(data) <= 0:
                    conn.retrans += 1
                    continue
                data = data[-d:] if d < 0 else data
                half.next_seq = (half.next_seq + len(data)) & 0xFFFFFFFF
                self._bytes(conn, is_orig, len(data))
                self._deliver(conn, is_orig, data, ts, frames)
                progressed = True
                break
            if not progressed:
                return

    def _fill_gap(self, conn: Conn, is_orig: bool, half: TcpHalf, ts: float, upto: int | None = None) -> None:
        """Declare the hole before the earliest held segment lost, and continue from there."""
        if not half.held:
            return
        first = min(half.held, key=lambda s: seq_diff(s, half.next_seq))
        if upto is not None and seq_diff(first, upto) >= 0:
            return          # the peer has not acknowledged the hole yet: it may still arrive
        size = seq_diff(first, half.next_seq)
        if size > 0:
            conn.gaps += size
            conn.add_hist("G" if is_orig else "g")
            self.stats["tcp.gaps"] += 1
            if conn.analyzer is not None:
                conn.analyzer.gap(is_orig, size, ts)
            half.next_seq = first
        self._drain_held(conn, is_orig, half)

    @staticmethod
    def _bytes(conn: Conn, is_orig: bool, n: int) -> None:
        if is_orig:
            conn.orig_bytes += n
        else:
            conn.resp_bytes += n

    def _deliver(self, conn: Conn, is_orig: bool, payload: bytes, ts: float, frames: int | list[int]) -> None:
        an = conn.analyzer
        if an is None:
            if conn.protocol is not None or conn.service_probe >= MAX_PROBE_PAYLOADS or not self.probes:
                return
            conn.service_probe += 1
            tcp = conn.proto == "tcp"
            for mod, has_tcp, has_udp in self.probes:
                if (has_tcp if tcp else has_udp) and mod.probe(payload, is_orig):
                    self._attach(conn, mod)
                    self.stats["flows.identified_by_shape"] += 1
                    break
            an = conn.analyzer
            if an is None:
                return
        if base.DEBUG:
            an.data(is_orig, payload, ts, frames)
            return
        try:
            an.data(is_orig, payload, ts, frames)
        except Exception as e:             # parser bug: count it, keep the sensor alive
            conn.weird(conn.protocol or "?", "parser_error", f"{type(e).__name__}: {e}", ts,
                       base.as_frames(frames), is_orig)

    # ------------------------------------------------------------------ expiry
    def sweep(self, now: float) -> None:
        """Flush flows idle past their timeout (closed TCP after close_delay) and stale fragments."""
        self.next_sweep = now + SWEEP_EVERY
        st = self.settings
        for table in (self.flows_tcp, self.flows_udp):
            dead = []
            for key, (conn, is_orig) in table.items():
                if not is_orig:
                    continue
                if conn.closed_ts is not None:
                    if now - conn.last_ts > st.close_delay:
                        dead.append((key, conn))
                elif now - conn.last_ts > (self._tcp_idle if conn.proto == "tcp" else self._udp_idle):
                    dead.append((key, conn))
            for key, conn in dead:
                self._finish(table, key, conn)
        for key in [k for k, v in self.frags.items() if now - v["ts"] > FRAG_TIMEOUT]:
            self._frag_expired(key)

    def _finish(self, table: dict, key: bytes, conn: Conn) -> None:
        table.pop(key, None)
        n = (len(key) - 4) // 2
        table.pop(key[n:2 * n] + key[:n] + key[2 * n + 2:2 * n + 4] + key[2 * n:2 * n + 2], None)
        self._close_conn(conn)

    def _close_conn(self, conn: Conn) -> None:
        if conn.half is not None:
            for is_orig, half in ((True, conn.half[0]), (False, conn.half[1])):
                while half.held:
                    self._fill_gap(conn, is_orig, half, conn.last_ts)
        if conn.analyzer is not None:
            try:
                conn.analyzer.close(conn.last_ts)
            except Exception as e:
                if base.DEBUG:
                    raise
                conn.weird(conn.protocol or "?", "parser_error", f"{type(e).__name__}: {e}", conn.last_ts,
                           [], True)
        conn.analyzer = None           # break the conn <-> analyzer cycle: freed by refcount, no GC needed
        self.emit("flow", "session", conn.record(), conn.first_ts, conn.frames, conn.orig, conn.resp)

    def end(self) -> None:
        """End of capture: flush every flow, fragment and layer-2 analyzer."""
        for table in (self.flows_tcp, self.flows_udp):
            conns = sorted({id(c): c for c, _ in table.values()}.values(), key=lambda c: (c.first_ts, c.uid))
            table.clear()
            for conn in conns:
                self._close_conn(conn)
        for key in list(self.frags):
            self._frag_expired(key)
        for an in {id(a): a for a in self.l2.values()}.values():
            an.close(self.now)
        if self.offload is not None:        # wait for the worker: every alert of this capture
            out, self.out = self.out, []
            self._submit(out)
            self._collect(keep=0)
        for obs in self.observers:          # end-of-capture events of observers (asset snapshots)
            finish = getattr(obs, "finish", None)
            for m in (finish() if finish is not None else None) or ():
                self.out.append(m)
                self.kind_counts[m.kind] = self.kind_counts.get(m.kind, 0) + 1
        if self.offload is not None:        # then the worker's own end (windowed layers flushed)
            self._ready.extend(self.out)
            self.out = []
            for m in self.offload.finish():
                self._ready.append(m)
                self.kind_counts[m.kind] = self.kind_counts.get(m.kind, 0) + 1
