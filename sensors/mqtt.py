"""MQTT 3.1 / 3.1.1 / 5.0 over TCP (MQTT v3.1.1 OASIS Standard 2014; MQTT v5.0 OASIS Standard 2019).

One `mqtt` event per exchange: CONNECT+CONNACK, SUBSCRIBE+SUBACK, UNSUBSCRIBE+UNSUBACK (by packet
id), PINGREQ+PINGRESP, PUBLISH QoS 1 + PUBACK and QoS 2 + PUBREC/PUBREL/PUBCOMP (by sender and packet
id); QoS 0 PUBLISH, DISCONNECT and AUTH are `one_way`. `src` is the sender of the first packet of the
exchange, so a broker delivering a PUBLISH to a subscriber is the src. Passwords and payloads are never
stored: only `password_present` and `payload_len`. Port 8883 carries TLS: the analyzer notes it once
(`tls: true`) and ignores the rest of the connection.
"""

from __future__ import annotations

import struct
from typing import Any

from sensors.base import Analyzer, Frames, Pending, StreamBuffer, as_frames

PROTOCOL = "mqtt"
TCP_PORTS = (1883, 8883)
ROLES = ("client", "broker")

# Control packet types (v3.1.1 2.2.1, v5 2.1.2) -> (name, action of the exchange it starts)
PACKET_TYPES = {
    1: "CONNECT", 2: "CONNACK", 3: "PUBLISH", 4: "PUBACK", 5: "PUBREC", 6: "PUBREL", 7: "PUBCOMP",
    8: "SUBSCRIBE", 9: "SUBACK", 10: "UNSUBSCRIBE", 11: "UNSUBACK", 12: "PINGREQ", 13: "PINGRESP",
    14: "DISCONNECT", 15: "AUTH",
}
ACTIONS = {
    "CONNECT": "session", "PUBLISH": "write", "SUBSCRIBE": "read", "UNSUBSCRIBE": "read",
    "PINGREQ": "session", "DISCONNECT": "session", "AUTH": "session",
}
# Fixed-header flags that are reserved and must have this value (v3.1.1 2.2.2, v5 2.1.3).
REQUIRED_FLAGS = {1: 0, 2: 0, 4: 0, 5: 0, 6: 2, 7: 0, 8: 2, 9: 0, 10: 2, 11: 0, 12: 0, 13: 0, 14: 0, 15: 0}

# CONNACK return codes of 3.1 / 3.1.1 (3.2.2.3); the wording is Zeek's mqtt_connect.log.
CONNACK_V3 = {
    0: "Connection Accepted",
    1: "Refused: unacceptable protocol version",
    2: "Refused: identifier rejected",
    3: "Refused: server unavailable",
    4: "Refused: bad user name or password",
    5: "Refused: not authorized",
}
# MQTT 5 reason codes (v5 2.4, Table 2-6).
REASON_V5 = {
    0x00: "Success", 0x01: "Granted QoS 1", 0x02: "Granted QoS 2", 0x04: "Disconnect with Will Message",
    0x10: "No matching subscribers", 0x11: "No subscription existed", 0x18: "Continue authentication",
    0x19: "Re-authenticate", 0x80: "Unspecified error", 0x81: "Malformed Packet", 0x82: "Protocol Error",
    0x83: "Implementation specific error", 0x84: "Unsupported Protocol Version",
    0x85: "Client Identifier not valid", 0x86: "Bad User Name or Password", 0x87: "Not authorized",
    0x88: "Server unavailable", 0x89: "Server busy", 0x8A: "Banned", 0x8B: "Server shutting down",
    0x8C: "Bad authentication method", 0x8D: "Keep Alive timeout", 0x8E: "Session taken over",
    0x8F: "Topic Filter invalid", 0x90: "Topic Name invalid", 0x91: "Packet Identifier in use",
    0x92: "Packet Identifier not found", 0x93: "Receive Maximum exceeded", 0x94: "Topic Alias invalid",
    0x95: "Packet too large", 0x96: "Message rate too high", 0x97: "Quota exceeded",
    0x98: "Administrative action", 0x99: "Payload format invalid", 0x9A: "Retain not supported",
    0x9B: "QoS not supported", 0x9C: "Use another server", 0x9D: "Server moved",
    0x9E: "Shared Subscriptions not supported", 0x9F: "Connection rate exceeded",
    0xA0: "Maximum connect time", 0xA1: "Subscription Identifiers not supported",
    0xA2: "Wildcard Subscriptions not supported",
}
# MQTT 5 properties (v5 2.2.2.2, Table 2-4): id -> (name, type). Types: b byte, h u16, i u32,
# v varint, s UTF-8 string, x binary data, p string pair.
PROPERTIES = {
    0x01: ("payload_format_indicator", "b"), 0x02: ("message_expiry_interval", "i"),
    0x03: ("content_type", "s"), 0x08: ("response_topic", "s"), 0x09: ("correlation_data", "x"),
    0x0B: ("subscription_identifier", "v"), 0x11: ("session_expiry_interval", "i"),
    0x12: ("assigned_client_identifier", "s"), 0x13: ("server_keep_alive", "h"),
    0x15: ("authentication_method", "s"), 0x16: ("authentication_data", "x"),
    0x17: ("request_problem_information", "b"), 0x18: ("will_delay_interval", "i"),
    0x19: ("request_response_information", "b"), 0x1A: ("response_information", "s"),
    0x1C: ("server_reference", "s"), 0x1F: ("reason_string", "s"), 0x21: ("receive_maximum", "h"),
    0x22: ("topic_alias_maximum", "h"), 0x23: ("topic_alias", "h"), 0x24: ("maximum_qos", "b"),
    0x25: ("retain_available", "b"), 0x26: ("user_property", "p"), 0x27: ("maximum_packet_size", "i"),
    0x28: ("wildcard_subscription_available", "b"), 0x29: ("subscription_identifier_available", "b"),
    0x2A: ("shared_subscription_available", "b"),
}
SECRET_PROPERTIES = frozenset({"authentication_data", "correlation_data"})   # presence only

_H = struct.Struct("!H")
_I = struct.Struct("!I")
TLS_CONTENT_TYPES = frozenset({0x14, 0x15, 0x16, 0x17})   # TLS record types (RFC 8446 5.1)
MAX_WEIRDS = 20              # per connection: past this the stream is not MQTT, stop looking
MAX_TOPICS = 256             # SUBSCRIBE/UNSUBSCRIBE topics kept per event


class Malformed(ValueError):
    """A packet body that does not match its type (caught by the analyzer, becomes a weird)."""


def pdu_len(buf: Any, off: int) -> int | None:
    """Fixed header (2.2): type/flags byte then a 1-4 byte Remaining Length varint."""
    n = len(buf)
    if off + 2 > n:
        return None
    if buf[off] >> 4 == 0:
        return -1                         # type 0 is reserved: not MQTT (or lost sync)
    mult, value = 1, 0
    for i in range(4):
        if off + 1 + i >= n:
            return None
        b = buf[off + 1 + i]
        value += (b & 0x7F) * mult
        if not b & 0x80:
            return 2 + i + value
        mult <<= 7
    return -1                             # a fifth length byte is malformed (2.2.3)


def probe(data: bytes, is_orig: bool) -> bool:
    """A CONNECT with protocol name MQTT or MQIsdp (3.1.2.1)."""
    if not is_orig or len(data) < 10 or data[0] != 0x10:
        return False
    size = pdu_len(data, 0)
    if size is None or size < 0:
        return False
    hdr = 1 + _varint_len(data, 1)
    return data[hdr:hdr + 6] == b"\x00\x04MQTT" or data[hdr:hdr + 8] == b"\x00\x06MQIsdp"


def _varint_len(data: Any, off: int) -> int:
    n = 1
    while n < 4 and off + n - 1 < len(data) and data[off + n - 1] & 0x80:
        n += 1
    return n


class _Reader:
    """Cursor over one packet's variable header and payload; raises Malformed past the end."""

    __slots__ = ("buf", "end", "pos")

    def __init__(self, buf: bytes, pos: int) -> None:
        self.buf, self.pos, self.end = buf, pos, len(buf)

    def left(self) -> int:
        return self.end - self.pos

    def u8(self) -> int:
        if self.pos >= self.end:
            raise Malformed("truncated byte")
        self.pos += 1
        return self.buf[self.pos - 1]

    def u16(self) -> int:
        if self.pos + 2 > self.end:
            raise Malformed("truncated two-byte integer")
        self.pos += 2
        return _H.unpack_from(self.buf, self.pos - 2)[0]

    def u32(self) -> int:
        if self.pos + 4 > self.end:
            raise Malformed("truncated four-byte integer")
        self.pos += 4
        return _I.unpack_from(self.buf, self.pos - 4)[0]

    def varint(self) -> int:
        mult, value = 1, 0
        for _ in range(4):
            b = self.u8()
            value += (b & 0x7F) * mult
            if not b & 0x80:
                return value
            mult <<= 7
        raise Malformed("variable byte integer longer than 4 bytes")

    def binary(self) -> bytes:
        n = self.u16()
        if self.pos + n > self.end:
            raise Malformed(f"string/binary of {n} bytes past the packet end")
        self.pos += n
        return self.buf[self.pos - n:self.pos]

    def string(self) -> str:
        return self.binary().decode("utf-8", "replace")

    def properties(self) -> dict[str, Any]:
        """MQTT 5 property list (2.2.2): length varint then id/value pairs."""
        size = self.varint()
        stop = self.pos + size
        if stop > self.end:
            raise Malformed(f"properties of {size} bytes past the packet end")
        out: dict[str, Any] = {}
        saved_end, self.end = self.end, stop
        while self.pos < stop:
            pid = self.varint()
            name, typ = PROPERTIES.get(pid, (None, None))
            if name is None:
                raise Malformed(f"unknown property 0x{pid:02x}")
            if typ == "b":
                v: Any = self.u8()
            elif typ == "h":
                v = self.u16()
            elif typ == "i":
                v = self.u32()
            elif typ == "v":
                v = self.varint()
            elif typ == "s":
                v = self.string()
            elif typ == "x":
                v = len(self.binary())
            else:
                v = [self.string(), self.string()]
            if name in SECRET_PROPERTIES:
                name += "_len"                       # binary data: its size only
            if name in ("user_property", "subscription_identifier"):
                out.setdefault(name, []).append(v)
            else:
                out[name] = v
        self.end = saved_end
        return out


def _reason(code: int, v5: bool) -> str:
    if v5:
        return REASON_V5.get(code, f"unknown-0x{code:02x}")
    return CONNACK_V3.get(code, f"unknown-0x{code:02x}")


def parse_packet(pdu: bytes, version: int) -> dict[str, Any]:
    """Decode one control packet into its record (protocol `version` 3, 4 or 5 for the body layout).

    :raise Malformed: the body does not fit its type.
    """
    b0 = pdu[0]
    ptype, flags = b0 >> 4, b0 & 0x0F
    name = PACKET_TYPES.get(ptype, f"unknown-0x{ptype:02x}")
    rec: dict[str, Any] = {"packet_type": name}
    r = _Reader(pdu, 1)
    r.varint()
    v5 = version == 5
    if ptype == 1:                                   # CONNECT (3.1)
        rec["protocol_name"] = r.string()
        level = r.u8()
        rec["protocol_version"] = level
        v5 = level == 5
        cf = r.u8()
        rec["clean_session"] = bool(cf & 0x02)
        rec["keep_alive"] = r.u16()
        if cf & 0x01:
            raise Malformed("CONNECT reserved flag set")
        if v5:
            props = r.properties()
            if props:
                rec["properties"] = props
        rec["client_id"] = r.string()
        if cf & 0x04:
            if v5:
                r.properties()
            rec["will_topic"] = r.string()
            rec["will_qos"] = (cf >> 3) & 3
            rec["will_retain"] = bool(cf & 0x20)
            rec["will_payload_len"] = len(r.binary())
        if cf & 0x80:
            rec["username"] = r.string()
        rec["password_present"] = bool(cf & 0x40)
        if cf & 0x40:
            r.binary()                               # the password: skipped, never stored
    elif ptype == 2:                                 # CONNACK (3.2)
        rec["session_present"] = bool(r.u8() & 0x01)
        code = r.u8()
        rec["return_code"] = code
        rec["return_code_name"] = _reason(code, v5)
        if v5 and r.left():
            props = r.properties()
            if props:
                rec["properties"] = props
    elif ptype == 3:                                 # PUBLISH (3.3)
        qos = (flags >> 1) & 3
        rec["qos"], rec["retain"], rec["dup"] = qos, bool(flags & 1), bool(flags & 8)
        if qos == 3:
            raise Malformed("PUBLISH with QoS 3")
        rec["topic"] = r.string()
        if qos:
            rec["packet_id"] = r.u16()
        if v5:
            props = r.properties()
            if props:
                rec["properties"] = props
        rec["payload_len"] = r.left()
    elif ptype in (4, 5, 6, 7):                      # PUBACK, PUBREC, PUBREL, PUBCOMP (3.4-3.7)
        rec["packet_id"] = r.u16()
        if v5 and r.left():
            code = r.u8()
            rec["reason_code"] = code
            rec["reason_code_name"] = _reason(code, True)
            if r.left():
                r.properties()
    elif ptype in (8, 10):                           # SUBSCRIBE (3.8), UNSUBSCRIBE (3.10)
        rec["packet_id"] = r.u16()
        if v5:
            props = r.properties()
            if props:
                rec["properties"] = props
        topics: list[Any] = []
        while r.left():
            t = r.string()
            if ptype == 8:
                opts = r.u8()
                if (opts & 3) == 3:
                    raise Malformed("SUBSCRIBE requested QoS 3")
                topics.append({"topic": t, "qos": opts & 3})
            else:
                topics.append(t)
        if not topics:
            raise Malformed(f"{name} without topic filters")
        rec["topics"] = topics[:MAX_TOPICS]
    elif ptype in (9, 11):                           # SUBACK (3.9), UNSUBACK (3.11)
        rec["packet_id"] = r.u16()
        if v5:
            r.properties()
        codes = list(r.buf[r.pos:r.end])
        if ptype == 9:
            rec["granted_qos"] = codes[:MAX_TOPICS]
        elif v5:
            rec["reason_codes"] = codes[:MAX_TOPICS]
    elif ptype in (14, 15):                          # DISCONNECT (3.14), AUTH (v5 3.15)
        if r.left():
            code = r.u8()
            rec["reason_code"] = code
            rec["reason_code_name"] = _reason(code, True)
            if r.left():
                props = r.properties()
                if props:
                    rec["properties"] = props
    elif ptype in (12, 13) and r.left():             # PINGREQ, PINGRESP have no body (3.12, 3.13)
        raise Malformed(f"{name} with a body")
    return rec


class _Exchange:
    """A request waiting for its answer (or a QoS 2 flow waiting for its next step)."""

    __slots__ = ("fields", "frames", "is_orig", "step", "ts")

    def __init__(self, fields: dict[str, Any], frames: Frames, ts: float, is_orig: bool) -> None:
        self.fields, self.frames, self.ts, self.is_orig = fields, frames, ts, is_orig
        self.step = 0


class TcpAnalyzer(Analyzer):
    """Per-connection MQTT analyzer: splits both directions into control packets and pairs them."""

    PROTOCOL = PROTOCOL
    __slots__ = ("bufs", "dead", "expired_at", "pending", "started", "version", "version_known", "weirds")

    def __init__(self, conn: Any) -> None:
        super().__init__(conn)
        self.bufs = (StreamBuffer(), StreamBuffer())          # [0] responder, [1] originator
        self.pending = Pending(timeout=120.0, limit=1024)
        self.version = 4                                      # until a CONNECT says otherwise
        self.version_known = False
        self.started = False
        self.dead = False
        self.weirds = 0
        self.expired_at = 0.0

    def _weird(self, name: str, reason: str, ts: float, frames: Frames, is_orig: bool) -> None:
        self.weirds += 1
        self.conn.weird(PROTOCOL, name, reason, ts, frames, is_orig)
        if self.weirds >= MAX_WEIRDS:
            self.dead = True
            self.conn.weird(PROTOCOL, "too_many_errors", f"{MAX_WEIRDS} malformed packets: stopped parsing",
                            ts, frames, is_orig)

    def data(self, is_orig: bool, data: bytes, ts: float, frames: int | Frames) -> None:
        if self.dead or not data:
            return
        if not self.started:
            self.started = True
            if data[0] in TLS_CONTENT_TYPES and len(data) > 2 and data[1] == 3 and data[2] <= 4:
                # TLS record (port 8883, or STARTTLS-less TLS on 1883): flow metadata only.
                self.dead = True
                self.conn.emit(PROTOCOL, "session", {"tls": True, "status": "one_way"}, ts, as_frames(frames),
                               is_orig)
                return
        if ts - self.expired_at > 10.0:
            self.expired_at = ts
            for ex in self.pending.expire(ts):
                self._finish(ex, "no_response")
        for pdu, fl, t in self.bufs[is_orig].feed(data, ts, frames, pdu_len):
            if pdu is None:
                self._weird("bad_fixed_header", "not an MQTT fixed header (reserved type 0 or bad length)",
                            t, fl, is_orig)
                if self.dead:
                    return
                continue
            self._packet(is_orig, pdu, t, fl)
            if self.dead:
                return

    def gap(self, is_orig: bool, size: int, ts: float) -> None:
        self.bufs[is_orig].clear()

    def close(self, ts: float) -> None:
        for is_orig in (True, False):
            buf = self.bufs[is_orig]
            if len(buf) and not self.dead:
                self._weird("truncated_packet", f"{len(buf)} bytes of an unfinished packet at close", ts,
                            buf.pending_frames(), is_orig)
            buf.clear()
        for ex in self.pending.drain():
            self._finish(ex, "no_response")

    # ------------------------------------------------------------------ pairing
    def _finish(self, ex: _Exchange, status: str, ts: float | None = None) -> None:
        f = ex.fields
        f["status"] = status
        if ts is not None:
            f["latency"] = round(max(ts - ex.ts, 0.0), 6)
        self.conn.emit(PROTOCOL, ACTIONS.get(f["packet_type"], "other"), f, ex.ts, ex.frames, ex.is_orig)

    def _add(self, key: Any, ex: _Exchange) -> None:
        for old in self.pending.add(key, ex.ts, ex):
            self._finish(old, "no_response")

    def _packet(self, is_orig: bool, pdu: bytes, ts: float, frames: Frames) -> None:
        ptype, flags = pdu[0] >> 4, pdu[0] & 0x0F
        req = REQUIRED_FLAGS.get(ptype)
        if req is not None and flags != req:
            self._weird("bad_flags", f"{PACKET_TYPES[ptype]} fixed-header flags 0x{flags:x}", ts, frames,
                        is_orig)
        if not self.version_known and ptype in (2, 4, 5, 6, 7) and len(pdu) > 4:
            # Mid-stream start: in 3.x CONNACK and the PUBLISH acks have exactly 2 body bytes, so a
            # longer one (reason code, properties) means MQTT 5 (v5 3.2, 3.4.2).
            self.version, self.version_known = 5, True
        try:
            rec = parse_packet(pdu, self.version)
        except Malformed as e:
            self._weird("malformed_packet", f"{PACKET_TYPES.get(ptype, ptype)}: {e}", ts, frames, is_orig)
            return
        name = rec["packet_type"]
        if ptype == 1:
            if rec["protocol_version"] in (3, 4, 5):
                self.version, self.version_known = rec["protocol_version"], True
            self._add("connect", _Exchange(rec, frames, ts, is_orig))
        elif ptype == 3:
            qos = rec["qos"]
            if qos == 0:
                rec["status"] = "one_way"
                self.conn.emit(PROTOCOL, "write", rec, ts, frames, is_orig)
            else:
                self._add(("pub", is_orig, rec["packet_id"]), _Exchange(rec, frames, ts, is_orig))
        elif ptype in (8, 10):
            self._add((name, is_orig, rec["packet_id"]), _Exchange(rec, frames, ts, is_orig))
        elif ptype == 12:
            self._add(("ping", is_orig), _Exchange(rec, frames, ts, is_orig))
        elif ptype in (14, 15):
            rec["status"] = "one_way"
            self.conn.emit(PROTOCOL, "session", rec, ts, frames, is_orig)
        elif ptype in (2, 9, 11, 13):
            pid = rec.get("packet_id")
            key: Any = {2: "connect", 9: ("SUBSCRIBE", not is_orig, pid),
                        11: ("UNSUBSCRIBE", not is_orig, pid), 13: ("ping", not is_orig)}[ptype]
            ex = self.pending.pop(key)
            if ex is None:
                self._orphan(rec, is_orig, ts, frames, {2: "CONNECT", 9: "SUBSCRIBE", 11: "UNSUBSCRIBE",
                                                        13: "PINGREQ"}[ptype])
                return
            self._merge(ex, rec, frames)
            self._finish(ex, "paired", ts)
        elif ptype in (4, 5, 6, 7):
            self._pub_ack(ptype, rec, is_orig, ts, frames)
        else:
            self._weird("unknown_packet_type", f"control packet type {ptype}", ts, frames, is_orig)

    @staticmethod
    def _merge(ex: _Exchange, rec: dict[str, Any], frames: Frames) -> None:
        f = ex.fields
        for k, v in rec.items():
            if k == "packet_type":
                f.setdefault("acks", []).append(v)
            elif k == "properties":
                f["ack_properties"] = v
            elif k in ("reason_code", "reason_code_name"):     # one per PUBACK/PUBREC/PUBREL/PUBCOMP
                f.setdefault("ack_" + k + "s", []).append(v)
            elif k == "packet_id":
                f.setdefault(k, v)
            else:
                f[k] = v
        ex.frames = ex.frames + [x for x in frames if x not in ex.frames]

    def _orphan(self, rec: dict[str, Any], is_orig: bool, ts: float, frames: Frames, req: str) -> None:
        """A response whose request was not seen (capture started late): src is the requester."""
        ex = _Exchange({"packet_type": req}, [], ts, not is_orig)
        self._merge(ex, rec, frames)
        ex.fields["status"] = "no_request"
        self.conn.emit(PROTOCOL, ACTIONS[req], ex.fields, ts, ex.frames, not is_orig)

    def _pub_ack(self, ptype: int, rec: dict[str, Any], is_orig: bool, ts: float, frames: Frames) -> None:
        """QoS 1: PUBLISH -> PUBACK. QoS 2: PUBLISH -> PUBREC -> PUBREL -> PUBCOMP (4.3.2, 4.3.3)."""
        pid = rec["packet_id"]
        sender = is_orig if ptype == 6 else not is_orig          # PUBREL comes from the publisher
        key = ("pub", sender, pid)
        ex = self.pending.pop(key)
        if ex is None:
            self._orphan(rec, is_orig if ptype != 6 else not is_orig, ts, frames, "PUBLISH")
            return
        want = {4: (1, 0), 5: (2, 0), 6: (2, 1), 7: (2, 2)}[ptype]
        if (ex.fields["qos"], ex.step) != want:
            self._weird("unexpected_ack", f"{PACKET_TYPES[ptype]} for QoS {ex.fields['qos']} step {ex.step}",
                        ts, frames, is_orig)
        self._merge(ex, rec, frames)
        if ptype in (4, 7) or rec.get("reason_code", 0) >= 0x80:
            self._finish(ex, "paired", ts)
        else:
            ex.step += 1
            self.pending.add(key, ex.ts, ex)                     # keep the flow open for its next step
