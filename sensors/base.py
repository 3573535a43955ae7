"""The parser interface every protocol module implements, and the helpers they share.

A protocol module (see `sensors/modbus.py`) declares:

    PROTOCOL = "modbus"            # the event kind of its transactions (lowercase, Zeek style)
    TCP_PORTS = (502,)             # default port map entries (configurable in Settings.ports)
    UDP_PORTS = ()
    ETHERTYPES = ()                # layer-2 protocols (GOOSE, PROFINET DCP)
    def probe(data: bytes, is_orig: bool) -> bool      # payload shape, for unusual ports (optional)
    class TcpAnalyzer(Analyzer)    # per TCP connection: data() gets in-order stream bytes
    class UdpAnalyzer(Analyzer)    # per UDP flow: data() gets one whole datagram
    class L2Analyzer(FrameAnalyzer)  # once per sensor, for ETHERTYPES

Event conventions (every protocol):
- one transaction event per request/response pair, emitted when the response arrives (or when the
  request expires); `src` is the requester. `fields` holds the protocol record plus
  `status`: "paired" | "no_response" | "no_request" | "one_way" (messages that have no reply by
  design: unsolicited responses, GOOSE, MQTT QoS 0 publish, broadcasts), and `latency` (seconds,
  6 decimals) when paired.
- `action` is one of icsight.events.ACTIONS.
- point values for the process-value detectors: `fields["points"] = [{"ref": "hr:100", "value": 17},
  ...]` where `ref` is stable for one point of one server ("<type>:<address>", protocol specific) and
  `value` a number, bool or string; optional "quality", "time" (ISO), "type".
- device identity learned from a message: `fields["identity"] = {"vendor", "product", "model",
  "firmware", "hardware", "serial", "name", "order_number", ...}` (only the keys known) describing
  the device at `fields["identity_of"]` ("dst" by default, i.e. the server answering; "src" for
  announcements such as I-Am).
- module attribute `ROLES = ("client", "server")`: what the requester and responder are called in
  this protocol (("master", "outstation") for DNP3), used by the asset inventory.

Analyzers never raise on traffic: malformed data becomes `conn.weird(...)` (a `weird` event plus a
per-protocol counter). In tests `conftest.py` sets `base.DEBUG = True` so our own bugs raise there.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sensors.flows import Conn
    from sensors.pipeline import Sensor

log = logging.getLogger(__name__)

DEBUG = False          # tests: re-raise parser bugs instead of counting them
MAX_PDU = 1 << 20      # no ICS PDU we parse is longer; a longer length field means garbage

Frames = list[int]


class Analyzer:
    """Per-connection (TCP) or per-flow (UDP) protocol analyzer. Subclasses set PROTOCOL."""

    PROTOCOL = "?"
    __slots__ = ("conn",)

    def __init__(self, conn: Conn) -> None:
        self.conn = conn

    def data(self, is_orig: bool, data: bytes, ts: float, frames: int | Frames) -> None:
        """TCP: the next in-order bytes of one direction. UDP: one datagram."""

    def gap(self, is_orig: bool, size: int, ts: float) -> None:
        """`size` bytes of this direction were never seen: drop partial PDUs of that direction."""

    def close(self, ts: float) -> None:
        """The connection ended or expired: flush and flag requests still waiting for a response."""


class FrameAnalyzer:
    """Layer-2 analyzer (one per sensor) for the module's ETHERTYPES."""

    PROTOCOL = "?"

    def __init__(self, sensor: Sensor) -> None:
        self.sensor = sensor

    def frame(self, ts: float, frame: int, src_mac: str, dst_mac: str, ethertype: int,
              payload: bytes, vlan: int | None) -> None:
        """One layer-2 frame (payload after the EtherType and any VLAN tags)."""

    def close(self, ts: float) -> None:
        """End of capture."""


def as_frames(frames: int | Frames) -> Frames:
    return [frames] if isinstance(frames, int) else list(frames)


class StreamBuffer:
    """Splits one direction of a TCP stream into length-delimited PDUs, remembering their frames.

    `pdu_len(buf, off)` returns the PDU's total length once its header is complete, None when more
    bytes are needed, or a negative number when the header is not the protocol's (garbage): then the
    generator yields `(None, frames, ts)` for the bytes it drops and starts over at the next segment.
    """

    __slots__ = ("buf", "marks")

    def __init__(self) -> None:
        self.buf = bytearray()
        self.marks: list[tuple[int, int, float]] = []   # (end offset in buf, frame, ts), in order

    def __len__(self) -> int:
        return len(self.buf)

    def clear(self) -> None:
        self.buf = bytearray()
        self.marks = []

    def pending_frames(self) -> Frames:
        return [f for _, f, _ in self.marks]

    def feed(self, data: bytes, ts: float, frames: int | Frames,
             pdu_len: Callable[[Any, int], int | None]) -> Iterator[tuple[bytes | None, Frames, float]]:
        """Yield (pdu, frames, ts_of_first_byte) for every PDU completed by `data`."""
        if not self.buf:
            # Fast path: nothing pending, so PDUs are slices of this segment.
            fl = [frames] if isinstance(frames, int) else list(frames)
            off, n = 0, len(data)
            while off < n:
                size = pdu_len(data, off)
                if size is None:
                    break
                if size <= 0 or size > MAX_PDU:
                    yield None, fl, ts
                    return
                if off + size > n:
                    break
                yield data[off:off + size], fl, ts
                off += size
            if off < n:
                self.buf = bytearray(data[off:] if off else data)
                self.marks = [(n - off, f, ts) for f in fl]
            return
        self.buf += data
        end = len(self.buf)
        if isinstance(frames, int):
            self.marks.append((end, frames, ts))
        else:
            self.marks.extend((end, f, ts) for f in frames)
        buf, off = self.buf, 0
        while True:
            size = pdu_len(buf, off)
            if size is None:
                break
            if size <= 0 or size > MAX_PDU:
                fl = [f for e, f, _ in self.marks if e > off]
                t = next((t for e, _, t in self.marks if e > off), ts)
                self.clear()
                yield None, fl, t
                return
            if off + size > len(buf):
                break
            fl, t0 = [], None
            start, stop = off, off + size
            prev_end = 0
            for e, f, t in self.marks:
                if e > start and prev_end < stop:
                    fl.append(f)
                    if t0 is None:
                        t0 = t
                prev_end = e
            yield bytes(buf[start:stop]), fl, (t0 if t0 is not None else ts)
            off = stop
        if off:
            del self.buf[:off]
            self.marks = [(e - off, f, t) for e, f, t in self.marks if e > off]


class Pending:
    """Requests waiting for their response, keyed by (direction-free) transaction key.

    Bounded: entries older than `timeout` seconds of capture time, or beyond `limit`, are handed
    back as unmatched so state stays flat however long the capture.
    """

    __slots__ = ("floor", "items", "limit", "timeout")

    def __init__(self, timeout: float = 60.0, limit: int = 4096) -> None:
        self.items: dict[Any, tuple[float, Any]] = {}
        self.timeout, self.limit = timeout, limit
        self.floor = _INF          # no entry is older than this: `expire` skips the scan until it can bite

    def __len__(self) -> int:
        return len(self.items)

    def add(self, key: Any, ts: float, value: Any) -> list[Any]:
        """Store a request; returns values pushed out (a duplicate key, or over the limit)."""
        out = []
        old = self.items.pop(key, None)
        if old is not None:
            out.append(old[1])
        self.items[key] = (ts, value)
        if ts < self.floor:
            self.floor = ts
        if len(self.items) > self.limit:
            k = next(iter(self.items))
            out.append(self.items.pop(k)[1])
        return out

    def pop(self, key: Any) -> Any | None:
        item = self.items.pop(key, None)
        return None if item is None else item[1]

    def expire(self, now: float) -> list[Any]:
        """Entries older than `timeout` at capture time `now`, removed (cheap when none can be)."""
        cutoff = now - self.timeout
        if self.floor >= cutoff:
            return []
        out = [self.items.pop(k)[1] for k in [k for k, (t, _) in self.items.items() if t < cutoff]]
        self.floor = min((t for t, _ in self.items.values()), default=_INF)
        return out

    def drain(self) -> list[Any]:
        out = [v for _, v in self.items.values()]
        self.items.clear()
        return out


_INF = float("inf")


def hexstr(b: bytes | bytearray | memoryview) -> str:
    """Bytes as lowercase hex, the JSON form of raw protocol data."""
    return bytes(b).hex()
