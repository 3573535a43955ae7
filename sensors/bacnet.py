"""BACnet/IP (ASHRAE 135-2020): BVLC (Annex J), NPDU (clause 6), APDU (clauses 20-21) and services.

One UDP datagram carries one BVLC message (J.2). Original-Unicast/Broadcast-NPDU, Forwarded-NPDU and
Distribute-Broadcast-To-Network carry an NPDU; the other BVLC functions manage broadcast distribution
and foreign devices. An NPDU holds either a network-layer message (6.4) or an APDU: confirmed
requests are answered by Simple-ACK, Complex-ACK (possibly segmented, 5.2), Error, Reject or Abort
with the same invoke id; unconfirmed requests (I-Am, Who-Is, COV notifications ...) have no reply.

Events: one `bacnet` event per confirmed transaction (request + its ACK/Error/Reject/Abort, paired by
(invoke id, requesting side) within the UDP flow; status "paired" with latency, "no_response" or
"no_request"), per BVLC management exchange, and per unconfirmed request or network-layer message
(status "one_way"). Service parameters are decoded from the tagged encoding (20.2): object ids,
property ids, array indexes, values, priorities. Passwords (ReinitializeDevice, DCC) are never kept:
only `password_given`.
"""

from __future__ import annotations

import math
import struct
from typing import Any

from sensors.base import Analyzer, Pending, as_frames
from sensors.ber import f32

PROTOCOL = "bacnet"
UDP_PORTS = (47808,)
ROLES = ("client", "server")

BVLL_TYPE_BIP = 0x81          # J.2: BACnet/IP; 0x82 is BACnet/IPv6 (Annex U), not parsed
MAX_ITEMS = 256               # RPM/WPM/COV list entries kept per message
MAX_VALUES = 64               # application values kept per property value
MAX_DEPTH = 8                 # nesting of constructed values
MAX_SEGMENTS = 256            # segments of one segmented message (5.2)
MAX_SEGMENTED_BYTES = 1 << 20
WILDCARD_INSTANCE = 0x3FFFFF  # 12.11.1: device instance 4194303 addresses "this device"
DEVICE = 8                    # object type "device"

_H = struct.Struct("!H")
_I = struct.Struct("!I")
_F = struct.Struct("!f")
_D = struct.Struct("!d")


class BacnetError(ValueError):
    """Malformed BACnet encoding (the message says what and where)."""


# --- BVLC (Annex J.2) ---------------------------------------------------------------------------------
BVLC_FUNCTIONS: dict[int, str] = {
    0x00: "BVLC-Result", 0x01: "Write-Broadcast-Distribution-Table",
    0x02: "Read-Broadcast-Distribution-Table", 0x03: "Read-Broadcast-Distribution-Table-Ack",
    0x04: "Forwarded-NPDU", 0x05: "Register-Foreign-Device", 0x06: "Read-Foreign-Device-Table",
    0x07: "Read-Foreign-Device-Table-Ack", 0x08: "Delete-Foreign-Device-Table-Entry",
    0x09: "Distribute-Broadcast-To-Network", 0x0A: "Original-Unicast-NPDU", 0x0B: "Original-Broadcast-NPDU",
    0x0C: "Secure-BVLL",
}
BVLC_RESULTS: dict[int, str] = {
    0x0000: "Successful-Completion", 0x0010: "Write-Broadcast-Distribution-Table-NAK",
    0x0020: "Read-Broadcast-Distribution-Table-NAK", 0x0030: "Register-Foreign-Device-NAK",
    0x0040: "Read-Foreign-Device-Table-NAK", 0x0050: "Delete-Foreign-Device-Table-Entry-NAK",
    0x0060: "Distribute-Broadcast-To-Network-NAK",
}
BVLC_NPDU = frozenset({0x04, 0x09, 0x0A, 0x0B})        # functions that carry an NPDU
BVLC_REQUESTS: dict[int, str] = {                        # BVLL requests answered by Result or Ack
    0x01: "write", 0x02: "read", 0x05: "session", 0x06: "read", 0x08: "write",
}
BVLC_REPLIES = frozenset({0x00, 0x03, 0x07})

# --- NPDU network-layer messages (6.2.4) -----------------------------------------------------------
NETWORK_MESSAGES: dict[int, str] = {
    0x00: "Who-Is-Router-To-Network", 0x01: "I-Am-Router-To-Network", 0x02: "I-Could-Be-Router-To-Network",
    0x03: "Reject-Message-To-Network", 0x04: "Router-Busy-To-Network", 0x05: "Router-Available-To-Network",
    0x06: "Initialize-Routing-Table", 0x07: "Initialize-Routing-Table-Ack",
    0x08: "Establish-Connection-To-Network", 0x09: "Disconnect-Connection-To-Network",
    0x0A: "Challenge-Request", 0x0B: "Security-Payload", 0x0C: "Security-Response",
    0x0D: "Request-Key-Update", 0x0E: "Update-Key-Set", 0x0F: "Update-Distribution-Key",
    0x10: "Request-Master-Key", 0x11: "Set-Master-Key",
    0x12: "What-Is-Network-Number", 0x13: "Network-Number-Is",
}
NETWORK_ACTIONS: dict[int, str] = {0x00: "discover", 0x01: "discover", 0x02: "discover", 0x06: "write",
                                   0x07: "read", 0x12: "discover", 0x13: "discover"}
REJECT_NETWORK_REASONS: dict[int, str] = {
    0: "other", 1: "not-directly-connected", 2: "router-busy", 3: "unknown-network-message",
    4: "message-too-long", 5: "security-error", 6: "addressing-error",
}

# --- APDU (20.1) --------------------------------------------------------------------------------------
PDU_TYPES: dict[int, str] = {
    0: "Confirmed-Request", 1: "Unconfirmed-Request", 2: "Simple-ACK", 3: "Complex-ACK", 4: "Segment-ACK",
    5: "Error", 6: "Reject", 7: "Abort",
}
CONFIRMED_REQUEST, UNCONFIRMED_REQUEST, SIMPLE_ACK, COMPLEX_ACK, SEGMENT_ACK, ERROR, REJECT, ABORT = range(8)

# 21: BACnetConfirmedServiceChoice -> (name, action)
CONFIRMED_SERVICES: dict[int, tuple[str, str]] = {
    0: ("AcknowledgeAlarm", "control"), 1: ("ConfirmedCOVNotification", "read"),
    2: ("ConfirmedEventNotification", "read"), 3: ("GetAlarmSummary", "read"),
    4: ("GetEnrollmentSummary", "read"), 5: ("SubscribeCOV", "read"), 6: ("AtomicReadFile", "read"),
    7: ("AtomicWriteFile", "program"), 8: ("AddListElement", "write"), 9: ("RemoveListElement", "write"),
    10: ("CreateObject", "write"), 11: ("DeleteObject", "write"), 12: ("ReadProperty", "read"),
    13: ("ReadPropertyConditional", "read"), 14: ("ReadPropertyMultiple", "read"),
    15: ("WriteProperty", "write"),
    16: ("WritePropertyMultiple", "write"), 17: ("DeviceCommunicationControl", "control"),
    18: ("ConfirmedPrivateTransfer", "other"), 19: ("ConfirmedTextMessage", "other"),
    20: ("ReinitializeDevice", "control"), 21: ("VT-Open", "session"), 22: ("VT-Close", "session"),
    23: ("VT-Data", "session"), 24: ("Authenticate", "session"), 25: ("RequestKey", "session"),
    26: ("ReadRange", "read"), 27: ("LifeSafetyOperation", "control"), 28: ("SubscribeCOVProperty", "read"),
    29: ("GetEventInformation", "read"), 30: ("SubscribeCOVPropertyMultiple", "read"),
    31: ("ConfirmedCOVNotificationMultiple", "read"), 32: ("ConfirmedAuditNotification", "other"),
    33: ("AuditLogQuery", "read"),
}
# 21: BACnetUnconfirmedServiceChoice -> (name, action)
UNCONFIRMED_SERVICES: dict[int, tuple[str, str]] = {
    0: ("I-Am", "discover"), 1: ("I-Have", "discover"), 2: ("UnconfirmedCOVNotification", "read"),
    3: ("UnconfirmedEventNotification", "read"), 4: ("UnconfirmedPrivateTransfer", "other"),
    5: ("UnconfirmedTextMessage", "other"), 6: ("TimeSynchronization", "write"), 7: ("Who-Has", "discover"),
    8: ("Who-Is", "discover"), 9: ("UTCTimeSynchronization", "write"), 10: ("WriteGroup", "write"),
    11: ("UnconfirmedCOVNotificationMultiple", "read"), 12: ("UnconfirmedAuditNotification", "other"),
    13: ("Who-Am-I", "discover"), 14: ("You-Are", "write"),
}
ERROR_CLASSES: dict[int, str] = {0: "device", 1: "object", 2: "property", 3: "resources", 4: "security",
                                 5: "services", 6: "vt", 7: "communication"}
REJECT_REASONS: dict[int, str] = {
    0: "other", 1: "buffer-overflow", 2: "inconsistent-parameters", 3: "invalid-parameter-data-type",
    4: "invalid-tag", 5: "missing-required-parameter", 6: "parameter-out-of-range", 7: "too-many-arguments",
    8: "undefined-enumeration", 9: "unrecognized-service",
}
ABORT_REASONS: dict[int, str] = {
    0: "other", 1: "buffer-overflow", 2: "invalid-apdu-in-this-state", 3: "preempted-by-higher-priority-task",
    4: "segmentation-not-supported", 5: "security-error", 6: "insufficient-security",
    7: "window-size-out-of-range", 8: "application-exceeded-reply-time", 9: "out-of-resources",
    10: "tsm-timeout", 11: "apdu-too-long",
}
SEGMENTATION: dict[int, str] = {0: "segmented-both", 1: "segmented-transmit", 2: "segmented-receive",
                                3: "no-segmentation"}
REINIT_STATES: dict[int, str] = {0: "coldstart", 1: "warmstart", 2: "start-backup", 3: "end-backup",
                                 4: "start-restore", 5: "end-restore", 6: "abort-restore",
                                 7: "activate-changes"}
DCC_STATES: dict[int, str] = {0: "enable", 1: "disable", 2: "disable-initiation"}
MAX_APDU = (50, 128, 206, 480, 1024, 1476)               # 20.1.2.5 max-APDU-length-accepted codes
MAX_SEGS = ("unspecified", "2", "4", "8", "16", "32", "64", "more-than-64")   # 20.1.2.4
CHARSETS: dict[int, str] = {0: "utf-8", 1: "ibm-microsoft-dbcs", 2: "jis-x-0208", 3: "ucs-4", 4: "ucs-2",
                            5: "iso-8859-1"}
_CODECS = {0: "utf-8", 3: "utf-32-be", 4: "utf-16-be", 5: "latin-1"}
# Device-object properties that describe the device (12.11) -> identity key
IDENTITY_PROPERTIES: dict[int, str] = {121: "vendor", 120: "vendor_id", 70: "model", 44: "firmware",
                                       12: "software", 77: "name", 28: "description", 58: "location",
                                       75: "device_instance"}
PRESENT_VALUE = 85


def name_of(table: dict[int, Any], code: int) -> str:
    """A code's name, or "unknown-0xNN" (Zeek &default style)."""
    v = table.get(code)
    if v is None:
        return f"unknown-0x{code:02x}"
    return v[0] if isinstance(v, tuple) else v


def object_type_name(t: int) -> str:
    """Object type name (12, 21 BACnetObjectType); 128-1023 are vendor proprietary."""
    n = OBJECT_TYPES.get(t)
    if n is not None:
        return n
    return f"proprietary-{t}" if t >= 128 else f"unknown-0x{t:02x}"


def property_name(p: int) -> str:
    """Property identifier name (21 BACnetPropertyIdentifier); 512-4194303 are vendor proprietary."""
    n = PROPERTIES.get(p)
    if n is not None:
        return n
    return f"proprietary-{p}" if 512 <= p < 4194304 else f"unknown-0x{p:02x}"


def vendor_name(v: int) -> str:
    return VENDORS.get(v, f"unknown-vendor-{v}")


# --- tagged encoding (20.2) ---------------------------------------------------------------------------
PRIMITIVE, OPENING, CLOSING = 0, 1, 2


class Tag:
    """One BACnet tag (20.2.1): number, class, and where its contents lie."""

    __slots__ = ("ctx", "end", "kind", "lvt", "num", "voff")

    def __init__(self, num: int, ctx: bool, kind: int, lvt: int, voff: int, end: int) -> None:
        self.num, self.ctx, self.kind, self.lvt, self.voff, self.end = num, ctx, kind, lvt, voff, end


def read_tag(mv: memoryview, p: int, end: int) -> Tag:
    """Decode the tag at `p` (20.2.1.1-20.2.1.3). :raise BacnetError: truncated or over-long."""
    if p >= end:
        raise BacnetError(f"tag expected at offset {p}")
    b = mv[p]
    num, ctx, lvt = b >> 4, bool(b & 0x08), b & 0x07
    p += 1
    if num == 15:                                      # 20.2.1.2: extended tag number
        if p >= end:
            raise BacnetError("extended tag number cut short")
        num = mv[p]
        p += 1
    if ctx and lvt == 6:
        return Tag(num, True, OPENING, 0, p, p)
    if ctx and lvt == 7:
        return Tag(num, True, CLOSING, 0, p, p)
    if not ctx and num == 1:                           # 20.2.3: application boolean, value in LVT
        return Tag(num, False, PRIMITIVE, lvt, p, p)
    n = lvt
    if lvt == 5:                                       # 20.2.1.3.1: extended length
        if p >= end:
            raise BacnetError("extended length cut short")
        n = mv[p]
        p += 1
        if n == 254:
            if p + 2 > end:
                raise BacnetError("2-octet length cut short")
            n = _H.unpack_from(mv, p)[0]
            p += 2
        elif n == 255:
            if p + 4 > end:
                raise BacnetError("4-octet length cut short")
            n = _I.unpack_from(mv, p)[0]
            p += 4
    if p + n > end:
        raise BacnetError(f"tag {num} contents of {n} octets run past the end")
    return Tag(num, ctx, PRIMITIVE, lvt, p, p + n)


def _uint(mv: memoryview, t: Tag) -> int:
    if t.end - t.voff == 0 or t.end - t.voff > 8:
        raise BacnetError(f"unsigned of {t.end - t.voff} octets")
    return int.from_bytes(mv[t.voff:t.end], "big")


def _objid(mv: memoryview, t: Tag) -> tuple[int, int]:
    if t.end - t.voff != 4:
        raise BacnetError(f"object identifier of {t.end - t.voff} octets")
    v = _I.unpack_from(mv, t.voff)[0]
    return v >> 22, v & 0x3FFFFF


def _date(b: memoryview) -> str:
    """Date (20.2.12): year-1900, month, day, weekday; 255 is "any" (written '*')."""
    if len(b) != 4:
        raise BacnetError(f"date of {len(b)} octets")
    y = "*" if b[0] == 255 else str(1900 + b[0])
    m = "*" if b[1] == 255 else f"{b[1]:02d}"
    d = "*" if b[2] == 255 else f"{b[2]:02d}"
    return f"{y}-{m}-{d}"


def _time(b: memoryview) -> str:
    """Time (20.2.13): hour, minute, second, hundredths; 255 is "any"."""
    if len(b) != 4:
        raise BacnetError(f"time of {len(b)} octets")
    parts = ["*" if x == 255 else f"{x:02d}" for x in b]
    return f"{parts[0]}:{parts[1]}:{parts[2]}.{parts[3]}"


def _finite(f: float) -> float | str:
    return f if math.isfinite(f) else str(f)


class Reader:
    """Walks the tags of a service parameter list; records non-UTF-8 character sets it met."""

    __slots__ = ("charsets", "end", "mv", "p")

    def __init__(self, mv: memoryview, p: int, end: int) -> None:
        self.mv, self.p, self.end = mv, p, end
        self.charsets: set[str] = set()

    def at_end(self) -> bool:
        return self.p >= self.end

    def peek(self) -> Tag | None:
        return None if self.p >= self.end else read_tag(self.mv, self.p, self.end)

    def next(self) -> Tag:
        t = read_tag(self.mv, self.p, self.end)
        self.p = t.end
        return t

    def is_ctx(self, num: int, kind: int = PRIMITIVE) -> bool:
        t = self.peek()
        return t is not None and t.ctx and t.num == num and t.kind == kind

    def ctx_uint(self, num: int) -> int | None:
        """The unsigned/enumerated context-tagged parameter `num`, if next (else None, nothing read)."""
        if not self.is_ctx(num):
            return None
        return _uint(self.mv, self.next())

    def ctx_objid(self, num: int) -> tuple[int, int] | None:
        if not self.is_ctx(num):
            return None
        return _objid(self.mv, self.next())

    def ctx_bool(self, num: int) -> bool | None:
        if not self.is_ctx(num):
            return None
        t = self.next()
        if t.end - t.voff != 1:
            raise BacnetError("context boolean not one octet")
        return self.mv[t.voff] != 0

    def ctx_raw(self, num: int) -> memoryview | None:
        if not self.is_ctx(num):
            return None
        t = self.next()
        return self.mv[t.voff:t.end]

    def opening(self, num: int) -> bool:
        """Consume opening tag `num` if it is next."""
        if self.is_ctx(num, OPENING):
            self.next()
            return True
        return False

    def closing(self, num: int) -> None:
        """Consume closing tag `num`. :raise BacnetError: something else is next."""
        t = self.next()
        if not (t.ctx and t.kind == CLOSING and t.num == num):
            raise BacnetError(f"closing tag [{num}] expected at offset {self.p}")

    def enclosed(self, num: int) -> Any:
        """The value between opening and closing tag `num` (decoded generically), or None if absent."""
        if not self.opening(num):
            return None
        v = self.values(num, 0)
        return v

    def values(self, closing_num: int | None, depth: int) -> Any:
        """Decode tags up to the closing tag `closing_num` (or the end): one value or a list."""
        out: list[Any] = []
        while True:
            if self.p >= self.end:
                if closing_num is not None:
                    raise BacnetError(f"closing tag [{closing_num}] missing")
                break
            t = self.next()
            if t.kind == CLOSING:
                if t.num != closing_num:
                    raise BacnetError(f"unexpected closing tag [{t.num}]")
                break
            if t.kind == OPENING:
                if depth >= MAX_DEPTH:
                    raise BacnetError(f"values nested deeper than {MAX_DEPTH}")
                v = self.values(t.num, depth + 1)
                if len(out) < MAX_VALUES:
                    out.append({"tag": t.num, "value": v})
                continue
            v = self.app_value(t) if not t.ctx else {"tag": t.num, "raw": bytes(self.mv[t.voff:t.end]).hex()}
            if len(out) < MAX_VALUES:
                out.append(v)
        if len(out) == 1:
            return out[0]
        return out

    def app(self) -> Any:
        """The next tag, which must be application-tagged; its decoded value."""
        t = self.next()
        if t.ctx or t.kind != PRIMITIVE:
            raise BacnetError(f"application tag expected, found context tag [{t.num}]")
        return self.app_value(t)

    def app_value(self, t: Tag) -> Any:
        """Decode an application-tagged primitive (20.2.2-20.2.14) to a JSON value."""
        mv, num = self.mv, t.num
        b = mv[t.voff:t.end]
        if num == 0:
            return None
        if num == 1:
            return t.lvt != 0
        if num in (2, 9):
            return _uint(mv, t)
        if num == 3:
            if not 0 < len(b) <= 8:
                raise BacnetError(f"signed of {len(b)} octets")
            return int.from_bytes(b, "big", signed=True)
        if num == 4:
            if len(b) != 4:
                raise BacnetError(f"real of {len(b)} octets")
            return _finite(f32(_F.unpack_from(b)[0]))
        if num == 5:
            if len(b) != 8:
                raise BacnetError(f"double of {len(b)} octets")
            return _finite(_D.unpack_from(b)[0])
        if num == 6:
            return bytes(b).hex()
        if num == 7:
            if not b:
                raise BacnetError("character string without a character set")
            cs = b[0]
            codec = _CODECS.get(cs)
            if cs != 0:
                self.charsets.add(CHARSETS.get(cs, f"unknown-0x{cs:02x}"))
            if codec is None:
                return bytes(b[1:]).hex()
            return bytes(b[1:]).decode(codec, errors="replace")
        if num == 8:
            if not b:
                raise BacnetError("empty bit string")
            unused = b[0]
            nbits = (len(b) - 1) * 8 - unused
            if unused > 7 or nbits < 0:
                raise BacnetError(f"bit string with {unused} unused bits")
            return format(int.from_bytes(b[1:], "big") >> unused, f"0{nbits}b") if nbits else ""
        if num == 10:
            return _date(b)
        if num == 11:
            return _time(b)
        if num == 12:
            ot, inst = _objid(mv, t)
            return f"{object_type_name(ot)}:{inst}"
        raise BacnetError(f"reserved application tag {num}")


# --- service decoders ---------------------------------------------------------------------------------
# Each takes a Reader over the service parameters and returns the record fields it decoded.
# The clause numbers are those of ASHRAE 135-2020.

def _obj(out: dict[str, Any], oid: tuple[int, int] | None, prefix: str = "") -> None:
    if oid is not None:
        out[prefix + "object_type"] = object_type_name(oid[0])
        out[prefix + "instance"] = oid[1]


def _prop(out: dict[str, Any], r: Reader, pnum: int, inum: int) -> None:
    p = r.ctx_uint(pnum)
    if p is not None:
        out["property"] = property_name(p)
        out["property_id"] = p
    i = r.ctx_uint(inum)
    if i is not None:
        out["array_index"] = i


def read_property_req(r: Reader) -> dict[str, Any]:
    """15.5.1.1: [0] objectIdentifier, [1] propertyIdentifier, [2] propertyArrayIndex OPTIONAL."""
    out: dict[str, Any] = {}
    _obj(out, r.ctx_objid(0))
    _prop(out, r, 1, 2)
    return out


def read_property_ack(r: Reader) -> dict[str, Any]:
    """15.5.1.3: the request's parameters plus [3] propertyValue."""
    out = read_property_req(r)
    if r.is_ctx(3, OPENING):
        out["value"] = r.enclosed(3)
    return out


def _rpm_refs(r: Reader, ack: bool) -> list[dict[str, Any]]:
    """15.7: ReadAccessSpecification / ReadAccessResult lists."""
    items: list[dict[str, Any]] = []
    while not r.at_end():
        oid = r.ctx_objid(0)
        if oid is None:
            raise BacnetError("objectIdentifier [0] expected in ReadPropertyMultiple")
        if not r.opening(1):
            raise BacnetError("list of properties [1] expected in ReadPropertyMultiple")
        while not r.is_ctx(1, CLOSING):
            it: dict[str, Any] = {}
            _obj(it, oid)
            _prop(it, r, 2 if ack else 0, 3 if ack else 1)
            if "property" not in it:
                raise BacnetError("propertyIdentifier expected in ReadPropertyMultiple")
            if ack:
                if r.is_ctx(4, OPENING):
                    it["value"] = r.enclosed(4)
                elif r.opening(5):
                    it["error_class"] = name_of(ERROR_CLASSES, r.app())
                    it["error_code"] = name_of(ERROR_CODES, r.app())
                    r.closing(5)
            if len(items) < MAX_ITEMS:
                items.append(it)
        r.closing(1)
    return items


def rpm_req(r: Reader) -> dict[str, Any]:
    return {"items": _rpm_refs(r, False)}


def rpm_ack(r: Reader) -> dict[str, Any]:
    return {"items": _rpm_refs(r, True)}


def write_property_req(r: Reader) -> dict[str, Any]:
    """15.9.1.1: [0] object, [1] property, [2] index OPTIONAL, [3] value, [4] priority OPTIONAL."""
    out = read_property_req(r)
    if r.is_ctx(3, OPENING):
        out["value"] = r.enclosed(3)
    pr = r.ctx_uint(4)
    if pr is not None:
        out["priority"] = pr
    return out


def wpm_req(r: Reader) -> dict[str, Any]:
    """15.10.1.1: list of WriteAccessSpecification ([0] object, [1] list of BACnetPropertyValue)."""
    items: list[dict[str, Any]] = []
    while not r.at_end():
        oid = r.ctx_objid(0)
        if oid is None or not r.opening(1):
            raise BacnetError("WriteAccessSpecification expected")
        while not r.is_ctx(1, CLOSING):
            it: dict[str, Any] = {}
            _obj(it, oid)
            _property_value(it, r)
            if len(items) < MAX_ITEMS:
                items.append(it)
        r.closing(1)
    return {"items": items}


def _property_value(it: dict[str, Any], r: Reader) -> None:
    """BACnetPropertyValue (21): [0] property, [1] index OPT, [2] value, [3] priority OPT."""
    _prop(it, r, 0, 1)
    if "property" not in it:
        raise BacnetError("propertyIdentifier expected in BACnetPropertyValue")
    if r.is_ctx(2, OPENING):
        it["value"] = r.enclosed(2)
    pr = r.ctx_uint(3)
    if pr is not None:
        it["priority"] = pr


def _property_values(r: Reader, tag: int) -> list[dict[str, Any]]:
    """A list of BACnetPropertyValue up to the closing `tag` (the opening tag already read)."""
    items: list[dict[str, Any]] = []
    while not r.is_ctx(tag, CLOSING):
        it: dict[str, Any] = {}
        _property_value(it, r)
        if len(items) < MAX_ITEMS:
            items.append(it)
    r.closing(tag)
    return items


def cov_notification(r: Reader) -> dict[str, Any]:
    """13.14.1 / 13.15.1: [0] process id, [1] initiating device, [2] monitored object,
    [3] time remaining, [4] list of values."""
    out: dict[str, Any] = {}
    pid = r.ctx_uint(0)
    if pid is not None:
        out["process_id"] = pid
    dev = r.ctx_objid(1)
    if dev is not None:
        out["device_instance"] = dev[1]
    _obj(out, r.ctx_objid(2))
    tr = r.ctx_uint(3)
    if tr is not None:
        out["time_remaining"] = tr
    if r.opening(4):
        out["items"] = _property_values(r, 4)
    return out


def event_notification(r: Reader) -> dict[str, Any]:
    """13.8.1 / 13.9.1: [0] process id, [1] initiating device, [2] event object, ... (rest not kept)."""
    out: dict[str, Any] = {}
    pid = r.ctx_uint(0)
    if pid is not None:
        out["process_id"] = pid
    dev = r.ctx_objid(1)
    if dev is not None:
        out["device_instance"] = dev[1]
    _obj(out, r.ctx_objid(2))
    return out


def acknowledge_alarm(r: Reader) -> dict[str, Any]:
    """13.5.1: [0] process id, [1] event object, [2] event state acknowledged, ..."""
    out: dict[str, Any] = {}
    pid = r.ctx_uint(0)
    if pid is not None:
        out["process_id"] = pid
    _obj(out, r.ctx_objid(1))
    return out


def subscribe_cov(r: Reader) -> dict[str, Any]:
    """13.11.1 / 13.15.1: [0] process id, [1] monitored object, [2] issue confirmed, [3] lifetime,
    (SubscribeCOVProperty: [4] monitored property, [5] COV increment)."""
    out: dict[str, Any] = {}
    pid = r.ctx_uint(0)
    if pid is not None:
        out["process_id"] = pid
    _obj(out, r.ctx_objid(1))
    c = r.ctx_bool(2)
    if c is not None:
        out["issue_confirmed"] = c
    lt = r.ctx_uint(3)
    if lt is not None:
        out["lifetime"] = lt
    if r.opening(4):
        _prop(out, r, 0, 1)
        r.closing(4)
    if out.get("issue_confirmed") is None and "lifetime" not in out and "process_id" in out:
        out["cancel"] = True                            # 13.14.1.1.3: no optional params = cancellation
    return out


def reinitialize_device(r: Reader) -> dict[str, Any]:
    """16.4.1: [0] reinitializedStateOfDevice, [1] password OPTIONAL (never stored)."""
    out: dict[str, Any] = {}
    st = r.ctx_uint(0)
    if st is not None:
        out["reinit_state"] = name_of(REINIT_STATES, st)
    out["password_given"] = r.ctx_raw(1) is not None
    return out


def device_communication_control(r: Reader) -> dict[str, Any]:
    """16.1.1: [0] timeDuration (minutes) OPTIONAL, [1] enable-disable, [2] password OPTIONAL."""
    out: dict[str, Any] = {}
    d = r.ctx_uint(0)
    if d is not None:
        out["time_duration"] = d
    e = r.ctx_uint(1)
    if e is not None:
        out["enable_disable"] = name_of(DCC_STATES, e)
    out["password_given"] = r.ctx_raw(2) is not None
    return out


def atomic_read_file(r: Reader) -> dict[str, Any]:
    """14.1.1: fileIdentifier, [0] stream (start, count) | [1] record (start, count)."""
    out: dict[str, Any] = {}
    oid = r.app()
    if isinstance(oid, str):
        out["file"] = oid
    for tag, kind in ((0, "stream"), (1, "record")):
        if r.opening(tag):
            out["access"] = kind
            out["start"] = r.app()
            out["count"] = r.app()
            r.closing(tag)
            break
    return out


def _file_access(r: Reader, out: dict[str, Any]) -> dict[str, Any]:
    """[0] stream (start, data) | [1] record (start, count, data...): access kind, start, data length."""
    for tag, kind in ((0, "stream"), (1, "record")):
        if r.opening(tag):
            out["access"] = kind
            out["start"] = r.app()
            n = 0
            while not r.is_ctx(tag, CLOSING):
                v = r.app()
                n += len(v) // 2 if isinstance(v, str) else 0
            out["data_len"] = n
            r.closing(tag)
            break
    return out


def atomic_read_file_ack(r: Reader) -> dict[str, Any]:
    """14.1.1: endOfFile, then the file access (stream or record)."""
    return _file_access(r, {"end_of_file": r.app()})


def atomic_write_file(r: Reader) -> dict[str, Any]:
    """14.2.1: fileIdentifier, then the file access (stream or record)."""
    out: dict[str, Any] = {}
    oid = r.app()
    if isinstance(oid, str):
        out["file"] = oid
    return _file_access(r, out)


def atomic_write_file_ack(r: Reader) -> dict[str, Any]:
    """14.2.1: [0] fileStartPosition | [1] fileStartRecord (signed)."""
    t = r.next()
    if not t.ctx or t.num not in (0, 1):
        raise BacnetError("fileStart expected")
    b = r.mv[t.voff:t.end]
    return {"start": int.from_bytes(b, "big", signed=True) if b else 0}


def create_object(r: Reader) -> dict[str, Any]:
    """15.3.1: [0] objectSpecifier ([0] type | [1] identifier), [1] listOfInitialValues OPTIONAL."""
    out: dict[str, Any] = {}
    if r.opening(0):
        t = r.ctx_uint(0)
        if t is not None:
            out["object_type"] = object_type_name(t)
        else:
            _obj(out, r.ctx_objid(1))
        r.closing(0)
    if r.opening(1):
        out["items"] = _property_values(r, 1)
    return out


def object_id_app(r: Reader) -> dict[str, Any]:
    """DeleteObject request (15.4.1) / CreateObject ACK (15.3.1): one application objectIdentifier."""
    t = r.next()
    if t.ctx or t.num != 12:
        raise BacnetError("objectIdentifier expected")
    out: dict[str, Any] = {}
    _obj(out, _objid(r.mv, t))
    return out


def list_element(r: Reader) -> dict[str, Any]:
    """15.1.1 / 15.2.1: [0] object, [1] property, [2] index OPTIONAL, [3] listOfElements."""
    out = read_property_req(r)
    if r.is_ctx(3, OPENING):
        out["value"] = r.enclosed(3)
    return out


def private_transfer(r: Reader) -> dict[str, Any]:
    """16.2.1 / 16.3.1: [0] vendorID, [1] serviceNumber, [2] serviceParameters OPTIONAL."""
    out: dict[str, Any] = {}
    v = r.ctx_uint(0)
    if v is not None:
        out["vendor_id"] = v
        out["vendor"] = vendor_name(v)
    n = r.ctx_uint(1)
    if n is not None:
        out["service_number"] = n
    return out


def read_range(r: Reader) -> dict[str, Any]:
    """15.8.1: [0] object, [1] property, [2] index OPTIONAL, range ... (range not kept)."""
    return read_property_req(r)


def life_safety_operation(r: Reader) -> dict[str, Any]:
    """13.13.1: [0] process id, [1] requesting source, [2] request, [3] object OPTIONAL."""
    out: dict[str, Any] = {}
    pid = r.ctx_uint(0)
    if pid is not None:
        out["process_id"] = pid
    if r.is_ctx(1):
        r.next()
    req = r.ctx_uint(2)
    if req is not None:
        out["request"] = req
    _obj(out, r.ctx_objid(3))
    return out


def i_am(r: Reader) -> dict[str, Any]:
    """16.10.3: iAmDeviceIdentifier, maxAPDULengthAccepted, segmentationSupported, vendorID."""
    t = r.next()
    if t.ctx or t.num != 12:
        raise BacnetError("I-Am without a device identifier")
    ot, inst = _objid(r.mv, t)
    out: dict[str, Any] = {"object_type": object_type_name(ot), "instance": inst, "device_instance": inst}
    out["max_apdu"] = r.app()
    seg = r.app()
    out["segmentation"] = name_of(SEGMENTATION, seg) if isinstance(seg, int) else seg
    vid = r.app()
    if isinstance(vid, int):
        out["vendor_id"] = vid
        out["vendor"] = vendor_name(vid)
    return out


def i_have(r: Reader) -> dict[str, Any]:
    """16.9.3: deviceIdentifier, objectIdentifier, objectName."""
    out: dict[str, Any] = {}
    d = r.next()
    if d.ctx or d.num != 12:
        raise BacnetError("I-Have without a device identifier")
    out["device_instance"] = _objid(r.mv, d)[1]
    o = r.next()
    if o.ctx or o.num != 12:
        raise BacnetError("I-Have without an object identifier")
    _obj(out, _objid(r.mv, o))
    out["object_name"] = r.app()
    return out


def who_is(r: Reader) -> dict[str, Any]:
    """16.10.1: [0] deviceInstanceRangeLowLimit, [1] HighLimit (both or neither)."""
    out: dict[str, Any] = {}
    lo, hi = r.ctx_uint(0), r.ctx_uint(1)
    if lo is not None:
        out["low_limit"] = lo
    if hi is not None:
        out["high_limit"] = hi
    if (lo is None) != (hi is None):
        raise BacnetError("Who-Is with only one range limit")
    return out


def who_has(r: Reader) -> dict[str, Any]:
    """16.9.1: [0] low, [1] high OPTIONAL, then [2] objectIdentifier | [3] objectName."""
    out: dict[str, Any] = {}
    lo, hi = r.ctx_uint(0), r.ctx_uint(1)
    if lo is not None:
        out["low_limit"] = lo
    if hi is not None:
        out["high_limit"] = hi
    oid = r.ctx_objid(2)
    if oid is not None:
        _obj(out, oid)
    elif r.is_ctx(3):
        t = r.next()
        out["object_name"] = r.app_value(Tag(7, False, PRIMITIVE, 0, t.voff, t.end))
    return out


def time_sync(r: Reader) -> dict[str, Any]:
    """16.7.1 / 16.8.1: date, time."""
    return {"time": f"{r.app()} {r.app()}"}


def write_group(r: Reader) -> dict[str, Any]:
    """16.11.1: [0] groupNumber, [1] writePriority, [2] changeList, ..."""
    out: dict[str, Any] = {}
    g = r.ctx_uint(0)
    if g is not None:
        out["group_number"] = g
    pr = r.ctx_uint(1)
    if pr is not None:
        out["priority"] = pr
    return out


def who_am_i(r: Reader) -> dict[str, Any]:
    """16.10.8 (135-2020): vendorID, modelName, serialNumber."""
    vid = r.app()
    out: dict[str, Any] = {}
    if isinstance(vid, int):
        out["vendor_id"] = vid
        out["vendor"] = vendor_name(vid)
    out["model_name"] = r.app()
    out["serial_number"] = r.app()
    return out


def text_message(r: Reader) -> dict[str, Any]:
    """16.5.1 / 16.6.1: [0] textMessageSourceDevice, ..."""
    out: dict[str, Any] = {}
    d = r.ctx_objid(0)
    if d is not None:
        out["device_instance"] = d[1]
    return out


def no_params(r: Reader) -> dict[str, Any]:
    return {}


CONFIRMED_DECODERS = {
    0: acknowledge_alarm, 1: cov_notification, 2: event_notification, 5: subscribe_cov, 6: atomic_read_file,
    7: atomic_write_file, 8: list_element, 9: list_element, 10: create_object, 11: object_id_app,
    12: read_property_req, 14: rpm_req, 15: write_property_req, 16: wpm_req, 17: device_communication_control,
    18: private_transfer, 19: text_message, 20: reinitialize_device, 26: read_range,
    27: life_safety_operation,
    28: subscribe_cov, 3: no_params, 29: no_params,
}
ACK_DECODERS = {6: atomic_read_file_ack, 7: atomic_write_file_ack, 10: object_id_app, 12: read_property_ack,
                14: rpm_ack, 18: private_transfer, 26: read_range}
UNCONFIRMED_DECODERS = {
    0: i_am, 1: i_have, 2: cov_notification, 3: event_notification, 4: private_transfer, 5: text_message,
    6: time_sync, 7: who_has, 8: who_is, 9: time_sync, 10: write_group, 13: who_am_i,
}


# --- message decoding ---------------------------------------------------------------------------------

def _addr(b: memoryview) -> str:
    """A MAC address in an NPDU (DADR/SADR): B/IP's 6 octets as ip:port, else hex."""
    if len(b) == 6:
        return f"{b[0]}.{b[1]}.{b[2]}.{b[3]}:{_H.unpack_from(b, 4)[0]}"
    return bytes(b).hex()


def _service(decoder: Any, mv: memoryview, p: int, end: int, rec: dict[str, Any],
             problems: list[tuple[str, str]]) -> None:
    """Run a service decoder; a malformed parameter list keeps what was decoded and notes a problem."""
    if decoder is None or p >= end:
        return
    r = Reader(mv, p, end)
    try:
        rec.update(decoder(r))
    except BacnetError as e:
        problems.append(("bacnet_malformed_service", f"{rec.get('service', '?')}: {e}"))
    if r.charsets:
        rec["charsets"] = sorted(r.charsets)


def decode_apdu(mv: memoryview, p: int, end: int, rec: dict[str, Any],
                problems: list[tuple[str, str]]) -> None:
    """Decode the APDU header (20.1.2-20.1.9) and the service parameters into `rec`."""
    if p >= end:
        problems.append(("bacnet_truncated_apdu", "empty APDU"))
        return
    b0 = mv[p]
    pt = b0 >> 4
    rec["pdu_type"] = name_of(PDU_TYPES, pt)
    need = {0: 4, 1: 2, 2: 3, 3: 3, 4: 4, 5: 3, 6: 3, 7: 3}.get(pt)
    if need is None:
        problems.append(("bacnet_unknown_pdu_type", f"APDU type {pt}"))
        return
    if end - p < need:
        problems.append(("bacnet_truncated_apdu", f"{rec['pdu_type']} of {end - p} bytes"))
        return
    rec["pdu_type_code"] = pt                    # only once the fixed header is complete
    if pt == CONFIRMED_REQUEST:                              # 20.1.2
        seg, mor = bool(b0 & 0x08), bool(b0 & 0x04)
        rec["segmented_response_accepted"] = bool(b0 & 0x02)
        ms = mv[p + 1]
        rec["max_segments"] = MAX_SEGS[(ms >> 4) & 0x07]
        rec["max_apdu"] = MAX_APDU[ms & 0x0F] if (ms & 0x0F) < len(MAX_APDU) else ms & 0x0F
        rec["invoke_id"] = mv[p + 2]
        q = p + 3
        if seg:
            if end - q < 3:
                problems.append(("bacnet_truncated_apdu", "segmented request header cut short"))
                return
            rec.update(segmented=True, more_follows=mor, sequence_number=mv[q], window_size=mv[q + 1])
            q += 2
        if q >= end:
            problems.append(("bacnet_truncated_apdu", "confirmed request without a service choice"))
            return
        sc = mv[q]
        rec["service_choice"] = sc
        rec["service"] = name_of(CONFIRMED_SERVICES, sc)
        if seg:
            rec["_segment"] = bytes(mv[q + 1:end])
        else:
            _service(CONFIRMED_DECODERS.get(sc), mv, q + 1, end, rec, problems)
    elif pt == UNCONFIRMED_REQUEST:                          # 20.1.3
        sc = mv[p + 1]
        rec["service_choice"] = sc
        rec["service"] = name_of(UNCONFIRMED_SERVICES, sc)
        _service(UNCONFIRMED_DECODERS.get(sc), mv, p + 2, end, rec, problems)
    elif pt in (SIMPLE_ACK, ERROR):                          # 20.1.4, 20.1.7
        rec["invoke_id"] = mv[p + 1]
        sc = mv[p + 2]
        rec["service_choice"] = sc
        rec["service"] = name_of(CONFIRMED_SERVICES, sc)
        if pt == ERROR:
            _error(mv, p + 3, end, rec, problems)
    elif pt == COMPLEX_ACK:                                  # 20.1.5
        seg, mor = bool(b0 & 0x08), bool(b0 & 0x04)
        rec["invoke_id"] = mv[p + 1]
        q = p + 2
        if seg:
            if end - q < 3:
                problems.append(("bacnet_truncated_apdu", "segmented Complex-ACK header cut short"))
                return
            rec.update(segmented=True, more_follows=mor, sequence_number=mv[q], window_size=mv[q + 1])
            q += 2
        sc = mv[q]
        rec["service_choice"] = sc
        rec["service"] = name_of(CONFIRMED_SERVICES, sc)
        if seg:
            rec["_segment"] = bytes(mv[q + 1:end])
        else:
            _service(ACK_DECODERS.get(sc), mv, q + 1, end, rec, problems)
    elif pt == SEGMENT_ACK:                                  # 20.1.6
        rec.update(negative_ack=bool(b0 & 0x02), by_server=bool(b0 & 0x01), invoke_id=mv[p + 1],
                   sequence_number=mv[p + 2], window_size=mv[p + 3])
    elif pt == REJECT:                                       # 20.1.8
        rec["invoke_id"] = mv[p + 1]
        rec["reject_reason"] = name_of(REJECT_REASONS, mv[p + 2])
    else:                                                    # 20.1.9 Abort
        rec["by_server"] = bool(b0 & 0x01)
        rec["invoke_id"] = mv[p + 1]
        rec["abort_reason"] = name_of(ABORT_REASONS, mv[p + 2])


def _error(mv: memoryview, p: int, end: int, rec: dict[str, Any], problems: list[tuple[str, str]]) -> None:
    """Error PDU (21 BACnet-Error-PDU): error class and code, possibly inside a context tag [0] (e.g.
    for WritePropertyMultiple / CreateObject errors, which add further parameters)."""
    r = Reader(mv, p, end)
    try:
        vals: list[int] = []
        while not r.at_end() and len(vals) < 2:
            t = r.next()
            if not t.ctx and t.num == 9:
                vals.append(_uint(mv, t))
        if len(vals) < 2:
            raise BacnetError("error class and code missing")
        rec["error_class"] = name_of(ERROR_CLASSES, vals[0])
        rec["error_code"] = name_of(ERROR_CODES, vals[1])
    except BacnetError as e:
        problems.append(("bacnet_malformed_service", f"Error PDU: {e}"))


def decode_npdu(mv: memoryview, p: int, end: int, rec: dict[str, Any],
                problems: list[tuple[str, str]]) -> None:
    """NPDU (6.2): version, control, optional DNET/DADR, SNET/SADR, hop count; then a network-layer
    message (6.2.4) or an APDU."""
    if end - p < 2:
        problems.append(("bacnet_truncated_npdu", f"NPDU of {end - p} bytes"))
        return
    ver, ctl = mv[p], mv[p + 1]
    if ver != 1:
        problems.append(("bacnet_bad_npdu_version", f"NPDU version {ver}"))
        return
    q = p + 2
    try:
        if ctl & 0x20:                                    # 6.2.2: DNET, DLEN, DADR present
            if end - q < 3:
                raise BacnetError("DNET cut short")
            rec["dnet"] = _H.unpack_from(mv, q)[0]
            dlen = mv[q + 2]
            q += 3
            if end - q < dlen:
                raise BacnetError("DADR cut short")
            rec["dadr"] = _addr(mv[q:q + dlen]) if dlen else "broadcast"
            q += dlen
        if ctl & 0x08:                                    # SNET, SLEN, SADR present
            if end - q < 3:
                raise BacnetError("SNET cut short")
            rec["snet"] = _H.unpack_from(mv, q)[0]
            slen = mv[q + 2]
            q += 3
            if end - q < slen or slen == 0:
                raise BacnetError("SADR cut short or empty")
            rec["sadr"] = _addr(mv[q:q + slen])
            q += slen
        if ctl & 0x20:
            if q >= end:
                raise BacnetError("hop count missing")
            rec["hop_count"] = mv[q]
            q += 1
        if ctl & 0x03:
            rec["priority"] = ("normal", "urgent", "critical-equipment", "life-safety")[ctl & 0x03]
        if ctl & 0x80:                                    # 6.2.2: network-layer message
            if q >= end:
                raise BacnetError("network message type missing")
            mt = mv[q]
            q += 1
            if mt >= 0x80:
                if end - q < 2:
                    raise BacnetError("vendor id of a proprietary network message missing")
                rec["vendor_id"] = _H.unpack_from(mv, q)[0]
                rec["network_message"] = f"proprietary-0x{mt:02x}"
                q += 2
            else:
                rec["network_message"] = name_of(NETWORK_MESSAGES, mt)
            rec["network_message_code"] = mt
            _network_message(mt, mv, q, end, rec)
            return
    except BacnetError as e:
        problems.append(("bacnet_truncated_npdu", str(e)))
        return
    rec["expecting_reply"] = bool(ctl & 0x04)
    decode_apdu(mv, q, end, rec, problems)


def _network_message(mt: int, mv: memoryview, q: int, end: int, rec: dict[str, Any]) -> None:
    """Parameters of the routing messages (6.4): network numbers and reasons."""
    if mt in (0x00, 0x12) and end - q >= 2:
        rec["networks"] = [_H.unpack_from(mv, q)[0]]
    elif mt in (0x01, 0x04, 0x05, 0x08, 0x09):
        rec["networks"] = [_H.unpack_from(mv, i)[0] for i in range(q, end - 1, 2)][:MAX_ITEMS]
    elif mt == 0x02 and end - q >= 3:
        rec["networks"] = [_H.unpack_from(mv, q)[0]]
        rec["performance_index"] = mv[q + 2]
    elif mt == 0x03 and end - q >= 3:
        rec["reject_reason"] = name_of(REJECT_NETWORK_REASONS, mv[q])
        rec["networks"] = [_H.unpack_from(mv, q + 1)[0]]
    elif mt in (0x06, 0x07) and end - q >= 1:
        rec["ports"] = mv[q]
    elif mt == 0x13 and end - q >= 3:
        rec["networks"] = [_H.unpack_from(mv, q)[0]]
        rec["configured"] = mv[q + 2] == 1


def decode(data: bytes) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """Decode one BACnet/IP datagram: BVLC, NPDU, APDU header and service parameters.

    Never raises on traffic. Returns (record, problems); problems are (weird name, reason) pairs.
    Keys starting with "_" are internal (BVLC function code, segment data) and never emitted.
    """
    rec: dict[str, Any] = {}
    problems: list[tuple[str, str]] = []
    n = len(data)
    if n < 4 or data[0] != BVLL_TYPE_BIP:
        problems.append(("bacnet_bad_bvlc", f"BVLC type 0x{data[0]:02x}" if n else "empty datagram"))
        return rec, problems
    fn = data[1]
    blen = _H.unpack_from(data, 2)[0]
    rec["bvlc_function"] = name_of(BVLC_FUNCTIONS, fn)
    rec["_bvlc"] = fn
    # The UDP length is authoritative: on a mismatch (crafted traffic) parse the whole datagram, as
    # tshark and Zeek do, and flag it.
    end = n
    if blen != n:
        problems.append(("bacnet_bvlc_length_mismatch", f"BVLC length {blen}, datagram {n} bytes"))
    mv = memoryview(data)
    p = 4
    if fn == 0x00:                                         # J.2.1 BVLC-Result
        if end - p >= 2:
            rec["bvlc_result"] = name_of(BVLC_RESULTS, _H.unpack_from(mv, p)[0])
        else:
            problems.append(("bacnet_bad_bvlc", "BVLC-Result without a result code"))
        return rec, problems
    if fn in (0x01, 0x03):                                 # J.2.2/J.2.4: BDT entries (ip, port, mask)
        rec["bdt"] = [f"{_addr(mv[i:i + 6])}/{'.'.join(str(x) for x in mv[i + 6:i + 10])}"
                      for i in range(p, end - 9, 10)][:MAX_ITEMS]
        return rec, problems
    if fn == 0x05:                                         # J.2.6 Register-Foreign-Device: TTL
        if end - p >= 2:
            rec["ttl"] = _H.unpack_from(mv, p)[0]
        return rec, problems
    if fn == 0x07:                                         # J.2.8 FDT entries (ip, port, ttl, remaining)
        rec["fdt"] = [_addr(mv[i:i + 6]) for i in range(p, end - 9, 10)][:MAX_ITEMS]
        return rec, problems
    if fn == 0x08:                                         # J.2.9 Delete-FDT-Entry: ip, port
        if end - p >= 6:
            rec["fdt_entry"] = _addr(mv[p:p + 6])
        return rec, problems
    if fn == 0x04:                                         # J.2.5 Forwarded-NPDU: original B/IP address
        if end - p < 6:
            problems.append(("bacnet_bad_bvlc", "Forwarded-NPDU without the original address"))
            return rec, problems
        rec["forwarded_from"] = _addr(mv[p:p + 6])
        p += 6
    if fn not in BVLC_NPDU:
        if fn not in BVLC_FUNCTIONS:
            problems.append(("bacnet_bad_bvlc", f"unknown BVLC function 0x{fn:02x}"))
        return rec, problems
    decode_npdu(mv, p, end, rec, problems)
    return rec, problems


def is_broadcast_function(fn: int) -> bool:
    return fn in (0x09, 0x0B)


def probe(data: bytes, is_orig: bool) -> bool:
    """BACnet/IP shape: BVLC type 0x81, a known function, and a length equal to the datagram's."""
    return (len(data) >= 4 and data[0] == BVLL_TYPE_BIP and data[1] in BVLC_FUNCTIONS
            and _H.unpack_from(data, 2)[0] == len(data))


# --- the analyzer -------------------------------------------------------------------------------------
REQUEST_TIMEOUT = 30.0        # s of capture time; 135 defaults APDU_Timeout to 3-10 s (with retries)
_NOT_MERGED = frozenset({"bvlc_function", "pdu_type", "pdu_type_code", "service", "service_choice",
                         "invoke_id", "expecting_reply", "priority", "dnet", "dadr", "hop_count",
                         "snet", "sadr", "forwarded_from", "segmented", "more_follows", "sequence_number",
                         "window_size"})


class _Txn:
    """A confirmed request (or BVLL request) waiting for its answer; segments of a segmented one."""

    __slots__ = ("frames", "is_orig", "nbytes", "rec", "segments", "ts")

    def __init__(self, rec: dict[str, Any], ts: float, frames: list[int], is_orig: bool) -> None:
        self.rec, self.ts, self.frames, self.is_orig = rec, ts, frames, is_orig
        self.segments: list[bytes] = []
        self.nbytes = 0


def _refs(items: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [(it.get("object_type"), it.get("instance"), it.get("property_id"), it.get("array_index"))
            for it in items]


def _scalar(v: Any) -> bool:
    return isinstance(v, (bool, int, float, str))


class UdpAnalyzer(Analyzer):
    """One BACnet/IP UDP flow (often 47808 <-> 47808, so requests may come from either side)."""

    PROTOCOL = PROTOCOL
    __slots__ = ("pending", "segs")

    def __init__(self, conn: Any) -> None:
        super().__init__(conn)
        self.pending = Pending(timeout=REQUEST_TIMEOUT)
        self.segs: dict[tuple[Any, ...], _Txn] = {}     # segmented messages being collected

    # ---------------------------------------------------------------- input
    def data(self, is_orig: bool, data: bytes, ts: float, frames: int | list[int]) -> None:
        fl = as_frames(frames)
        for txn in self.pending.expire(ts):
            self._unanswered(txn)
        rec, problems = decode(data)
        for name, reason in problems:
            self.conn.weird(PROTOCOL, name, reason, ts, fl, is_orig)
        fn = rec.pop("_bvlc", None)
        if fn is None:
            return
        pt = rec.get("pdu_type_code")
        if pt is None:
            self._bvll(fn, rec, ts, fl, is_orig)
        elif pt == UNCONFIRMED_REQUEST:
            svc = UNCONFIRMED_SERVICES.get(rec.get("service_choice", -1))
            self._emit(rec, svc[1] if svc else "other", "one_way", ts, fl, is_orig)
        elif pt == CONFIRMED_REQUEST:
            rec = self._reassemble(("req", rec.get("invoke_id"), is_orig), rec, ts, fl, is_orig, True)
            if rec is not None:
                self._request(rec, ts, fl, is_orig)
        elif pt == SEGMENT_ACK:
            requester = not is_orig if rec.get("by_server") else is_orig
            key = (rec["invoke_id"], requester)
            txn = self.pending.items.get(key)
            target = txn[1] if txn is not None else self.segs.get(("ack", rec["invoke_id"], not requester))
            if target is None:
                target = self.segs.get(("req", rec["invoke_id"], requester))
            if target is not None:
                target.frames.extend(fl)
        elif pt in (SIMPLE_ACK, COMPLEX_ACK, ERROR, REJECT, ABORT):
            if pt == COMPLEX_ACK:
                rec = self._reassemble(("ack", rec.get("invoke_id"), is_orig), rec, ts, fl, is_orig, False)
                if rec is None:
                    return
            requester = is_orig if (pt == ABORT and not rec.get("by_server")) else not is_orig
            self._response(rec, (rec.get("invoke_id"), requester), ts, fl, requester)

    def close(self, ts: float) -> None:
        for txn in self.pending.drain():
            self._unanswered(txn)
        for txn in self.segs.values():
            self.conn.weird(PROTOCOL, "bacnet_incomplete_segmentation",
                            f"{txn.rec.get('service', '?')} invoke id {txn.rec.get('invoke_id')}: "
                            f"{len(txn.segments)} segments, the last never came", txn.ts, txn.frames,
                            txn.is_orig)
        self.segs.clear()

    # ---------------------------------------------------------------- segmentation (5.2)
    def _reassemble(self, key: tuple[Any, ...], rec: dict[str, Any], ts: float, fl: list[int], is_orig: bool,
                    request: bool) -> dict[str, Any] | None:
        """Collect the segments of a segmented request/Complex-ACK; the whole message once complete."""
        seg = rec.pop("_segment", None)
        if seg is None:
            return rec
        txn = self.segs.get(key)
        if txn is None or rec.get("sequence_number") == 0:
            txn = self.segs[key] = _Txn(rec, ts, [], is_orig)
        elif rec.get("sequence_number") != len(txn.segments) % 256:
            self.conn.weird(PROTOCOL, "bacnet_segment_out_of_order",
                            f"invoke id {rec.get('invoke_id')}: segment {rec.get('sequence_number')}, "
                            f"expected {len(txn.segments) % 256}", ts, fl, is_orig)
        txn.segments.append(seg)
        txn.frames.extend(fl)
        txn.nbytes += len(seg)
        if len(txn.segments) > MAX_SEGMENTS or txn.nbytes > MAX_SEGMENTED_BYTES:
            del self.segs[key]
            self.conn.weird(PROTOCOL, "bacnet_segmentation_overflow",
                            f"invoke id {rec.get('invoke_id')}: over {MAX_SEGMENTS} segments or "
                            f"{MAX_SEGMENTED_BYTES} bytes", ts, txn.frames, is_orig)
            return None
        if rec.get("more_follows"):
            return None
        del self.segs[key]
        whole = txn.rec
        whole.pop("more_follows", None)
        whole["segments"] = len(txn.segments)
        body = b"".join(txn.segments)
        problems: list[tuple[str, str]] = []
        decoders = CONFIRMED_DECODERS if request else ACK_DECODERS
        decoder = decoders.get(whole.get("service_choice", -1))
        _service(decoder, memoryview(body), 0, len(body), whole, problems)
        for name, reason in problems:
            self.conn.weird(PROTOCOL, name, reason, ts, txn.frames, is_orig)
        fl[:] = txn.frames
        return whole

    # ---------------------------------------------------------------- pairing
    def _request(self, rec: dict[str, Any], ts: float, fl: list[int], is_orig: bool) -> None:
        for old in self.pending.add((rec.get("invoke_id"), is_orig), ts, _Txn(rec, ts, fl, is_orig)):
            self._unanswered(old)

    def _response(self, rec: dict[str, Any], key: tuple[Any, bool], ts: float, fl: list[int],
                  requester: bool) -> None:
        txn = self.pending.pop(key)
        if txn is None:
            svc = CONFIRMED_SERVICES.get(rec.get("service_choice", -1))
            out = dict(rec)
            out["response_type"] = rec.get("pdu_type")
            out.pop("pdu_type_code", None)
            self._emit(out, svc[1] if svc else "error", "no_request", ts, fl, requester)
            return
        req = txn.rec
        out = dict(req)
        out["response_type"] = rec.get("pdu_type")
        if "service_choice" in rec and rec["service_choice"] != req.get("service_choice"):
            self.conn.weird(PROTOCOL, "bacnet_service_mismatch",
                            f"invoke id {rec.get('invoke_id')}: request {req.get('service')}, "
                            f"response {rec.get('service')}", ts, fl, not requester)
        if "items" in rec and "items" in req and _refs(rec["items"]) != _refs(req["items"]):
            out["requested"] = req["items"]              # e.g. property "all" answered one by one
        for k, v in rec.items():
            if k not in _NOT_MERGED:
                out[k] = v
        out["latency"] = round(ts - txn.ts, 6)
        svc = CONFIRMED_SERVICES.get(req.get("service_choice", -1))
        self._emit(out, svc[1] if svc else "other", "paired", txn.ts, sorted(set(txn.frames + fl)),
                   txn.is_orig)

    def _unanswered(self, txn: _Txn) -> None:
        rec = txn.rec
        if "pdu_type" in rec:
            svc = CONFIRMED_SERVICES.get(rec.get("service_choice", -1))
            action = svc[1] if svc else "other"
        else:
            action = BVLC_REQUESTS.get(rec.get("_fn", -1), "other")
        self._emit(dict(rec), action, "no_response", txn.ts, txn.frames, txn.is_orig)

    def _bvll(self, fn: int, rec: dict[str, Any], ts: float, fl: list[int], is_orig: bool) -> None:
        """BVLL management (J.2) and network-layer messages (6.4), which carry no APDU."""
        if "network_message" in rec:
            self._emit(rec, NETWORK_ACTIONS.get(rec.get("network_message_code", -1), "other"), "one_way",
                       ts, fl, is_orig)
        elif fn in BVLC_REQUESTS:
            rec["_fn"] = fn
            for old in self.pending.add(("bvlc", is_orig), ts, _Txn(rec, ts, fl, is_orig)):
                self._unanswered(old)
        elif fn in BVLC_REPLIES:
            txn = self.pending.pop(("bvlc", not is_orig))
            if txn is None:
                self._emit(rec, "other", "no_request", ts, fl, not is_orig)
                return
            out = dict(txn.rec)
            for k, v in rec.items():
                if k != "bvlc_function":
                    out[k] = v
            out["response_type"] = rec["bvlc_function"]
            out["latency"] = round(ts - txn.ts, 6)
            self._emit(out, BVLC_REQUESTS.get(txn.rec.get("_fn", -1), "other"), "paired", txn.ts,
                       txn.frames + fl, txn.is_orig)

    # ---------------------------------------------------------------- output
    def _emit(self, rec: dict[str, Any], action: str, status: str, ts: float, frames: list[int],
              is_orig: bool) -> None:
        """Emit one bacnet event; `is_orig` says whether the requester is the flow's originator."""
        for k in [k for k in rec if k[0] == "_"]:
            del rec[k]
        rec.pop("pdu_type_code", None)
        rec.pop("network_message_code", None)
        rec["status"] = status
        self._annotate(rec, is_orig)
        self.conn.emit(PROTOCOL, action, rec, ts, frames, is_orig)

    def _device_ref(self, rec: dict[str, Any], owner_is_orig: bool, owner_sent: bool) -> str:
        """Who owns the objects: its IP, plus its BACnet network/address when behind a router (the
        request's DNET/DADR when the owner received it, SNET/SADR when the owner sent it)."""
        ep = self.conn.orig if owner_is_orig else self.conn.resp
        ip = ep.ip or "?"
        if not owner_sent and "dnet" in rec and rec.get("dadr") not in (None, "broadcast"):
            return f"{ip}/{rec['dnet']}:{rec['dadr']}"
        if owner_sent and "snet" in rec:
            return f"{ip}/{rec['snet']}:{rec['sadr']}"
        return ip

    def _annotate(self, rec: dict[str, Any], is_orig: bool) -> None:
        """Add points (present-value) and identity (I-Am, device-object properties) to a record."""
        svc = rec.get("service")
        if svc is None:
            return
        if svc in ("I-Am", "Who-Am-I"):
            ident = {k: rec[k] for k in ("device_instance", "vendor_id", "vendor", "max_apdu", "segmentation")
                     if k in rec}
            if "model_name" in rec:
                ident["model"] = rec["model_name"]
            if "serial_number" in rec:
                ident["serial"] = rec["serial_number"]
            if ident:
                rec["identity"] = ident
                rec["identity_of"] = "src"
            return
        notify = svc in ("ConfirmedCOVNotification", "UnconfirmedCOVNotification")
        # The device owning the objects: the requester for notifications, else the server.
        dev = self._device_ref(rec, is_orig if notify else not is_orig, notify)
        points: list[dict[str, Any]] = []
        ident: dict[str, Any] = {}
        entries = rec.get("items")
        if entries is None and "property_id" in rec:
            entries = [rec]
        for it in entries or ():
            ot = it.get("object_type", rec.get("object_type"))
            inst = it.get("instance", rec.get("instance"))
            pid, v = it.get("property_id"), it.get("value")
            if pid == PRESENT_VALUE and _scalar(v) and ot is not None:
                points.append({"ref": f"{dev}:{ot}:{inst}:present-value", "value": v})
            if (ot == "device" and pid in IDENTITY_PROPERTIES and _scalar(v)
                    and svc in ("ReadProperty", "ReadPropertyMultiple")):
                key = IDENTITY_PROPERTIES[pid]
                if key == "device_instance":
                    if isinstance(v, str) and v.startswith("device:"):
                        ident[key] = int(v[7:])
                else:
                    ident[key] = v
                if inst is not None and inst != WILDCARD_INSTANCE:
                    ident.setdefault("device_instance", inst)
        if points:
            rec["points"] = points
        if ident:
            if "vendor_id" in ident and "vendor" not in ident and isinstance(ident["vendor_id"], int):
                ident["vendor"] = vendor_name(ident["vendor_id"])
            rec["identity"] = ident
            rec["identity_of"] = "dst"


# --- code tables (ASHRAE 135-2020 clause 21 enumerations; vendor ids from the ASHRAE registry) -------
OBJECT_TYPES: dict[int, str] = {
    0: 'analog-input', 1: 'analog-output', 2: 'analog-value', 3: 'binary-input', 4: 'binary-output',
    5: 'binary-value', 6: 'calendar', 7: 'command', 8: 'device', 9: 'event-enrollment', 10: 'file',
    11: 'group', 12: 'loop', 13: 'multi-state-input', 14: 'multi-state-output', 15: 'notification-class',
    16: 'program', 17: 'schedule', 18: 'averaging', 19: 'multi-state-value', 20: 'trend-log',
    21: 'life-safety-point', 22: 'life-safety-zone', 23: 'accumulator', 24: 'pulse-converter',
    25: 'event-log', 26: 'global-group', 27: 'trend-log-multiple', 28: 'load-control',
    29: 'structured-view', 30: 'access-door', 31: 'timer', 32: 'access-credential', 33: 'access-point',
    34: 'access-rights', 35: 'access-user', 36: 'access-zone', 37: 'credential-data-input',
    38: 'network-security', 39: 'bitstring-value', 40: 'characterstring-value', 41: 'date-pattern-value',
    42: 'date-value', 43: 'datetime-pattern-value', 44: 'datetime-value', 45: 'integer-value',
    46: 'large-analog-value', 47: 'octetstring-value', 48: 'positive-integer-value',
    49: 'time-pattern-value', 50: 'time-value', 51: 'notification-forwarder', 52: 'alert-enrollment',
    53: 'channel', 54: 'lighting-output', 55: 'binary-lighting-output', 56: 'network-port',
    57: 'elevator-group', 58: 'escalator', 59: 'lift', 60: 'staging', 61: 'audit-log', 62: 'audit-reporter',
    63: 'color', 64: 'color-temperature',
}
PROPERTIES: dict[int, str] = {
    0: 'acked-transition', 1: 'ack-required', 2: 'action', 3: 'action-text', 4: 'active-text',
    5: 'active-vt-session', 6: 'alarm-value', 7: 'alarm-values', 8: 'all', 9: 'all-writes-successful',
    10: 'apdu-segment-timeout', 11: 'apdu-timeout', 12: 'application-software-version', 13: 'archive',
    14: 'bias', 15: 'change-of-state-count', 16: 'change-of-state-time', 17: 'notification-class',
    18: 'the property in this place was deleted', 19: 'controlled-variable-reference',
    20: 'controlled-variable-units', 21: 'controlled-variable-value', 22: 'cov-increment', 23: 'datelist',
    24: 'daylights-savings-status', 25: 'deadband', 26: 'derivative-constant',
    27: 'derivative-constant-units', 28: 'description', 29: 'description-of-halt',
    30: 'device-address-binding', 31: 'device-type', 32: 'effective-period', 33: 'elapsed-active-time',
    34: 'error-limit', 35: 'event-enable', 36: 'event-state', 37: 'event-type', 38: 'exception-schedule',
    39: 'fault-values', 40: 'feedback-value', 41: 'file-access-method', 42: 'file-size', 43: 'file-type',
    44: 'firmware-revision', 45: 'high-limit', 46: 'inactive-text', 47: 'in-process', 48: 'instance-of',
    49: 'integral-constant', 50: 'integral-constant-units', 51: 'issue-confirmed-notifications',
    52: 'limit-enable', 53: 'list-of-group-members', 54: 'list-of-object-property-references',
    55: 'list-of-session-keys', 56: 'local-date', 57: 'local-time', 58: 'location', 59: 'low-limit',
    60: 'manipulated-variable-reference', 61: 'maximum-output', 62: 'max-apdu-length-accepted',
    63: 'max-info-frames', 64: 'max-master', 65: 'max-pres-value', 66: 'minimum-off-time',
    67: 'minimum-on-time', 68: 'minimum-output', 69: 'min-pres-value', 70: 'model-name',
    71: 'modification-date', 72: 'notify-type', 73: 'number-of-APDU-retries', 74: 'number-of-states',
    75: 'object-identifier', 76: 'object-list', 77: 'object-name', 78: 'object-property-reference',
    79: 'object-type', 80: 'optional', 81: 'out-of-service', 82: 'output-units', 83: 'event-parameters',
    84: 'polarity', 85: 'present-value', 86: 'priority', 87: 'priority-array', 88: 'priority-for-writing',
    89: 'process-identifier', 90: 'program-change', 91: 'program-location', 92: 'program-state',
    93: 'proportional-constant', 94: 'proportional-constant-units', 95: 'protocol-conformance-class',
    96: 'protocol-object-types-supported', 97: 'protocol-services-supported', 98: 'protocol-version',
    99: 'read-only', 100: 'reason-for-halt', 101: 'recipient', 102: 'recipient-list', 103: 'reliability',
    104: 'relinquish-default', 105: 'required', 106: 'resolution', 107: 'segmentation-supported',
    108: 'setpoint', 109: 'setpoint-reference', 110: 'state-text', 111: 'status-flags',
    112: 'system-status', 113: 'time-delay', 114: 'time-of-active-time-reset',
    115: 'time-of-state-count-reset', 116: 'time-synchronization-recipients', 117: 'units',
    118: 'update-interval', 119: 'utc-offset', 120: 'vendor-identifier', 121: 'vendor-name',
    122: 'vt-class-supported', 123: 'weekly-schedule', 124: 'attempted-samples', 125: 'average-value',
    126: 'buffer-size', 127: 'client-cov-increment', 128: 'cov-resubscription-interval',
    129: 'current-notify-time', 130: 'event-time-stamp', 131: 'log-buffer',
    132: 'log-device-object-property', 133: 'enable', 134: 'log-interval', 135: 'maximum-value',
    136: 'minimum-value', 137: 'notification-threshold', 138: 'previous-notify-time',
    139: 'protocol-revision', 140: 'records-since-notification', 141: 'record-count', 142: 'start-time',
    143: 'stop-time', 144: 'stop-when-full', 145: 'total-record-count', 146: 'valid-samples',
    147: 'window-interval', 148: 'window-samples', 149: 'maximum-value-time-stamp',
    150: 'minimum-value-time-stamp', 151: 'variance-value', 152: 'active-cov-subscriptions',
    153: 'backup-failure-timeout', 154: 'configuration-files', 155: 'database-revision',
    156: 'direct-reading', 157: 'last-restore-time', 158: 'maintenance-required', 159: 'member-of',
    160: 'mode', 161: 'operation-expected', 162: 'setting', 163: 'silenced', 164: 'tracking-value',
    165: 'zone-members', 166: 'life-safety-alarm-values', 167: 'max-segments-accepted', 168: 'profile-name',
    169: 'auto-slave-discovery', 170: 'manual-slave-address-binding', 171: 'slave-address-binding',
    172: 'slave-proxy-enable', 173: 'last-notify-record', 174: 'schedule-default', 175: 'accepted-modes',
    176: 'adjust-value', 177: 'count', 178: 'count-before-change', 179: 'count-change-time',
    180: 'cov-period', 181: 'input-reference', 182: 'limit-monitoring-interval', 183: 'logging-object',
    184: 'logging-record', 185: 'prescale', 186: 'pulse-rate', 187: 'scale', 188: 'scale-factor',
    189: 'update-time', 190: 'value-before-change', 191: 'value-set', 192: 'value-change-time',
    193: 'align-intervals', 194: 'group-member-names', 195: 'interval-offset', 196: 'last-restart-reason',
    197: 'logging-type', 198: 'member-status-flags', 199: 'notification-period',
    200: 'previous-notify-record', 201: 'requested-update-interval', 202: 'restart-notification-recipients',
    203: 'time-of-device-restart', 204: 'time-synchronization-interval', 205: 'trigger',
    206: 'UTC-time-synchronization-recipients', 207: 'node-subtype', 208: 'node-type',
    209: 'structured-object-list', 210: 'subordinate-annotations', 211: 'subordinate-list',
    212: 'actual-shed-level', 213: 'duty-window', 214: 'expected-shed-level', 215: 'full-duty-baseline',
    216: 'node-subtype', 217: 'node-type', 218: 'requested-shed-level', 219: 'shed-duration',
    220: 'shed-level-descriptions', 221: 'shed-levels', 222: 'state-description', 226: 'door-alarm-state',
    227: 'door-extended-pulse-time', 228: 'door-members', 229: 'door-open-too-long-time',
    230: 'door-pulse-time', 231: 'door-status', 232: 'door-unlock-delay-time', 233: 'lock-status',
    234: 'masked-alarm-values', 235: 'secured-status', 244: 'absentee-limit', 245: 'access-alarm-events',
    246: 'access-doors', 247: 'access-event', 248: 'access-event-authentication-factor',
    249: 'access-event-credential', 250: 'access-event-time', 251: 'access-transaction-events',
    252: 'accompaniment', 253: 'accompaniment-time', 254: 'activation-time',
    255: 'active-authentication-policy', 256: 'assigned-access-rights', 257: 'authentication-factors',
    258: 'authentication-policy-list', 259: 'authentication-policy-names', 260: 'authentication-status',
    261: 'authorization-mode', 262: 'belongs-to', 263: 'credential-disable', 264: 'credential-status',
    265: 'credentials', 266: 'credentials-in-zone', 267: 'days-remaining', 268: 'entry-points',
    269: 'exit-points', 270: 'expiration-time', 271: 'extended-time-enable', 272: 'failed-attempt-events',
    273: 'failed-attempts', 274: 'failed-attempts-time', 275: 'last-access-event', 276: 'last-access-point',
    277: 'last-credential-added', 278: 'last-credential-added-time', 279: 'last-credential-removed',
    280: 'last-credential-removed-time', 281: 'last-use-time', 282: 'lockout',
    283: 'lockout-relinquish-time', 284: 'master-exemption', 285: 'max-failed-attempts', 286: 'members',
    287: 'muster-point', 288: 'negative-access-rules', 289: 'number-of-authentication-policies',
    290: 'occupancy-count', 291: 'occupancy-count-adjust', 292: 'occupancy-count-enable',
    293: 'occupancy-exemption', 294: 'occupancy-lower-limit', 295: 'occupancy-lower-limit-enforced',
    296: 'occupancy-state', 297: 'occupancy-upper-limit', 298: 'occupancy-upper-limit-enforced',
    299: 'passback-exemption', 300: 'passback-mode', 301: 'passback-timeout', 302: 'positive-access-rules',
    303: 'reason-for-disable', 304: 'supported-formats', 305: 'supported-format-classes',
    306: 'threat-authority', 307: 'threat-level', 308: 'trace-flag', 309: 'transaction-notification-class',
    310: 'user-external-identifier', 311: 'user-information-reference', 317: 'user-name', 318: 'user-type',
    319: 'uses-remaining', 320: 'zone-from', 321: 'zone-to', 322: 'access-event-tag',
    323: 'global-identifier', 326: 'verification-time', 327: 'base-device-security-policy',
    328: 'distribution-key-revision', 329: 'do-not-hide', 330: 'key-sets', 331: 'last-key-server',
    332: 'network-access-security-policies', 333: 'packet-reorder-time', 334: 'security-pdu-timeout',
    335: 'security-time-window', 336: 'supported-security-algorithms', 337: 'update-key-set-timeout',
    338: 'backup-and-restore-state', 339: 'backup-preparation-time', 340: 'restore-completion-time',
    341: 'restore-preparation-time', 342: 'bit-mask', 343: 'bit-text', 344: 'is-utc', 345: 'group-members',
    346: 'group-member-names', 347: 'member-status-flags', 348: 'requested-update-interval',
    349: 'covu-period', 350: 'covu-recipients', 351: 'event-message-texts',
    352: 'event-message-texts-config', 353: 'event-detection-enable', 354: 'event-algorithm-inhibit',
    355: 'event-algorithm-inhibit-ref', 356: 'time-delay-normal', 357: 'reliability-evaluation-inhibit',
    358: 'fault-parameters', 359: 'fault-type', 360: 'local-forwarding-only',
    361: 'process-identifier-filter', 362: 'subscribed-recipients', 363: 'port-filter',
    364: 'authorization-exemptions', 365: 'allow-group-delay-inhibit', 366: 'channel-number',
    367: 'control-groups', 368: 'execution-delay', 369: 'last-priority', 370: 'write-status',
    371: 'property-list', 372: 'serial-number', 373: 'blink-warn-enable', 374: 'default-fade-time',
    375: 'default-ramp-rate', 376: 'default-step-increment', 377: 'egress-time', 378: 'in-progress',
    379: 'instantaneous-power', 380: 'lighting-command', 381: 'lighting-command-default-priority',
    382: 'max-actual-value', 383: 'min-actual-value', 384: 'power', 385: 'transition', 386: 'egress-active',
    387: 'interface-value', 388: 'fault-high-limit', 389: 'fault-low-limit', 390: 'low-diff-limit',
    391: 'strike-count', 392: 'time-of-strike-count-reset', 393: 'default-timeout', 394: 'initial-timeout',
    395: 'last-state-change', 396: 'state-change-values', 397: 'timer-running', 398: 'timer-state',
    399: 'apdu-length', 400: 'bacnet-ip-address', 401: 'bacnet-ip-default-gateway',
    402: 'bacnet-ip-dhcp-enable', 403: 'bacnet-ip-dhcp-lease-time',
    404: 'bacnet-ip-dhcp-lease-time-remaining', 405: 'bacnet-ip-dhcp-server', 406: 'bacnet-ip-dns-server',
    407: 'bacnet-ip-global-address', 408: 'bacnet-ip-mode', 409: 'bacnet-ip-multicast-address',
    410: 'bacnet-ip-nat-traversal', 411: 'bacnet-ip-subnet-mask', 412: 'bacnet-ip-udp-port',
    413: 'bbmd-accept-fd-registrations', 414: 'bbmd-broadcast-distribution-table',
    415: 'bbmd-foreign-device-table', 416: 'changes-pending', 417: 'command', 418: 'fd-bbmd-address',
    419: 'fd-subscription-lifetime', 420: 'link-speed', 421: 'link-speeds', 422: 'link-speed-autonegotiate',
    423: 'mac-address', 424: 'network-interface-name', 425: 'network-number', 426: 'network-number-quality',
    427: 'network-type', 428: 'routing-table', 429: 'virtual-mac-address-table', 430: 'command-time-array',
    431: 'current-command-priority', 432: 'last-command-time', 433: 'value-source',
    434: 'value-source-array', 435: 'bacnet-ipv6-mode', 436: 'ipv6-address', 437: 'ipv6-prefix-length',
    438: 'bacnet-ipv6-udp-port', 439: 'ipv6-default-gateway', 440: 'bacnet-ipv6-multicast-address',
    441: 'ipv6-dns-server', 442: 'ipv6-auto-addressing-enable', 443: 'ipv6-dhcp-lease-time',
    444: 'ipv6-dhcp-lease-time-remaining', 445: 'ipv6-dhcp-server', 446: 'ipv6-zone-index',
    447: 'assigned-landing-calls', 448: 'car-assigned-direction', 449: 'car-door-command',
    450: 'car-door-status', 451: 'car-door-text', 452: 'car-door-zone', 453: 'car-drive-status',
    454: 'car-load', 455: 'car-load-units', 456: 'car-mode', 457: 'car-moving-direction',
    458: 'car-position', 459: 'elevator-group', 460: 'energy-meter', 461: 'energy-meter-ref',
    462: 'escalator-mode', 463: 'fault-signals', 464: 'floor-text', 465: 'group-id',
    466: 'enumeration value 466 is unassigned', 467: 'group-mode', 468: 'higher-deck',
    469: 'installation-id', 470: 'landing-calls', 471: 'landing-call-control', 472: 'landing-door-status',
    473: 'lower-deck', 474: 'machine-room-id', 475: 'making-car-call', 476: 'next-stopping-floor',
    477: 'operation-direction', 478: 'passenger-alarm', 479: 'power-mode', 480: 'registered-car-call',
    481: 'active-cov-multiple-subscriptions', 482: 'protocol-level', 483: 'reference-port',
    484: 'deployed-profile-location', 485: 'profile-location', 486: 'tags', 487: 'subordinate-node-types',
    488: 'subordinate-tags', 489: 'subordinate-relationship', 490: 'default-subordinate-relationship',
    491: 'represents', 492: 'default-present-value', 493: 'present-stage', 494: 'stages',
    495: 'stage-names', 496: 'target-references', 497: 'audit-source-reporter', 498: 'audit-level',
    499: 'audit-notification-recipient', 500: 'audit-priority-filter', 501: 'auditable-operations',
    502: 'delete-on-forward', 503: 'maximum-send-delay', 504: 'monitored-objects', 505: 'send-now',
    506: 'floor-number', 507: 'device-uuid', 508: 'additional-reference-ports',
    509: 'certificate-signing-request-file', 510: 'command-validation-result',
    511: 'issuer-certificate-files', 4194304: 'max-bvlc-length-accepted',
    4194305: 'max-npdu-length-accepted', 4194306: 'operational-certificate-file', 4194307: 'current-health',
    4194308: 'sc-connect-wait-timeout', 4194309: 'sc-direct-connect-accept-enable',
    4194310: 'sc-direct-connect-accept-uris', 4194311: 'ssc-direct-connect-binding',
    4194312: 'sc-direct-connect-connection-status', 4194313: 'sc-direct-connect-initiate-enable',
    4194314: 'sc-disconnect-wait-timeout', 4194315: 'sc-failed-connection-request',
    4194316: 'sc-failover-hub-connection-status', 4194317: 'sc-failover-hub-uri',
    4194318: 'sc-hub-connector-state', 4194319: 'sc-hub-function-accept-uris',
    4194320: 'sc-hub-function-binding', 4194321: 'sc-hub-function-connection-status',
    4194322: 'sc-hub-function-enable', 4194323: 'sc-heartbeat-timeout',
    4194324: 'sc-primary-hub-connection-status', 4194325: 'sc-primary-hub-uri',
    4194326: 'sc-maximum-reconnect-time', 4194327: 'sc-minimum-reconnect-time', 4194328: 'color-override',
    4194329: 'color-reference', 4194330: 'default-color', 4194331: 'default-color-temperature',
    4194332: 'override-color-reference', 4194334: 'color-command', 4194335: 'high_end_trim',
    4194336: 'low_end_trim', 4194337: 'trim_fade_time',
}
ERROR_CODES: dict[int, str] = {
    0: 'other', 1: 'authentication-failed', 2: 'configuration-in-progress', 3: 'device-busy',
    4: 'dynamic-creation-not-supported', 5: 'file-access-denied', 6: 'incompatible-security-levels',
    7: 'inconsistent-parameters', 8: 'inconsistent-selection-criterion', 9: 'invalid-data-type',
    10: 'invalid-file-access-method', 11: 'invalid-file-start-position', 12: 'invalid-operator-name',
    13: 'invalid-parameter-data-type', 14: 'invalid-time-stamp', 15: 'key-generation-error',
    16: 'missing-required-parameter', 17: 'no-objects-of-specified-type', 18: 'no-space-for-object',
    19: 'no-space-to-add-list-element', 20: 'no-space-to-write-property', 21: 'no-vt-sessions-available',
    22: 'property-is-not-a-list', 23: 'object-deletion-not-permitted',
    24: 'object-identifier-already-exists', 25: 'operational-problem', 26: 'password-failure',
    27: 'read-access-denied', 28: 'security-not-supported', 29: 'service-request-denied', 30: 'timeout',
    31: 'unknown-object', 32: 'unknown-property', 33: 'removed enumeration', 34: 'unknown-vt-class',
    35: 'unknown-vt-session', 36: 'unsupported-object-type', 37: 'value-out-of-range',
    38: 'vt-session-already-closed', 39: 'vt-session-termination-failure', 40: 'write-access-denied',
    41: 'character-set-not-supported', 42: 'invalid-array-index', 43: 'cov-subscription-failed',
    44: 'not-cov-property', 45: 'optional-functionality-not-supported', 46: 'invalid-configuration-data',
    47: 'datatype-not-supported', 48: 'duplicate-name', 49: 'duplicate-object-id',
    50: 'property-is-not-an-array', 51: 'abort - buffer - overflow',
    52: 'abort - invalid - apdu - in - this - state',
    53: 'abort - preempted - by - higher - priority - task', 54: 'abort - segmentation - not - supported',
    55: 'abort - proprietary', 56: 'abort - other', 57: 'invalid - tag', 58: 'network - down',
    59: 'reject - buffer - overflow', 60: 'reject - inconsistent - parameters',
    61: 'reject - invalid - parameter - data - type', 62: 'reject - invalid - tag',
    63: 'reject - missing - required - parameter', 64: 'reject - parameter - out - of - range',
    65: 'reject - too - many - arguments', 66: 'reject - undefined - enumeration',
    67: 'reject - unrecognized - service', 68: 'reject - proprietary', 69: 'reject - other',
    70: 'unknown - device', 71: 'unknown - route', 72: 'value - not - initialized',
    73: 'invalid-event-state', 74: 'no-alarm-configured', 75: 'log-buffer-full', 76: 'logged-value-purged',
    77: 'no-property-specified', 78: 'not-configured-for-triggered-logging', 79: 'unknown-subscription',
    80: 'parameter-out-of-range', 81: 'list-element-not-found', 82: 'busy', 83: 'communication-disabled',
    84: 'success', 85: 'access-denied', 86: 'bad-destination-address', 87: 'bad-destination-device-id',
    88: 'bad-signature', 89: 'bad-source-address', 90: 'bad-timestamp', 91: 'cannot-use-key',
    92: 'cannot-verify-message-id', 93: 'correct-key-revision', 94: 'destination-device-id-required',
    95: 'duplicate-message', 96: 'encryption-not-configured', 97: 'encryption-required',
    98: 'incorrect-key', 99: 'invalid-key-data', 100: 'key-update-in-progress', 101: 'malformed-message',
    102: 'not-key-server', 103: 'security-not-configured', 104: 'source-security-required',
    105: 'too-many-keys', 106: 'unknown-authentication-type', 107: 'unknown-key',
    108: 'unknown-key-revision', 109: 'unknown-source-message', 110: 'not-router-to-dnet',
    111: 'router-busy', 112: 'unknown-network-message', 113: 'message-too-long', 114: 'security-error',
    115: 'addressing-error', 116: 'write-bdt-failed', 117: 'read-bdt-failed',
    118: 'register-foreign-device-failed', 119: 'read-fdt-failed', 120: 'delete-fdt-entry-failed',
    121: 'distribute-broadcast-failed', 122: 'unknown-file-size', 123: 'abort-apdu-too-long',
    124: 'abort-application-exceeded-reply-time', 125: 'abort-out-of-resources', 126: 'abort-tsm-timeout',
    127: 'abort-window-size-out-of-range', 128: 'file-full', 129: 'inconsistent-configuration',
    130: 'inconsistent-object-type', 131: 'internal-error', 132: 'not-configured', 133: 'out-of-memory',
    134: 'value-too-long', 135: 'abort-insufficient-security', 136: 'abort-security-error',
    137: 'duplicate-entry', 138: 'invalid-value-in-this-state', 139: 'invalid-operation-in-this-state',
    140: 'list-item-not-numbered', 141: 'list-item-not-timestamped', 142: 'invalid-data-encoding',
    143: 'bvlc-function-unknown', 144: 'bvlc-proprietary-function-unknown', 145: 'header-encoding-error',
    146: 'header-not-understood', 147: 'message-incomplete', 148: 'not-a-bacnet-sc-hub',
    149: 'payload-expected', 150: 'unexpected-data', 151: 'node-duplicate-vmac',
    152: 'http-unexpected-response-code', 153: 'http-no-upgrade', 154: 'http-resource-not-local',
    155: 'http-proxy-authentication-failed', 156: 'http-response-timeout',
    157: 'http-response-syntax-error', 158: 'http-response-value-error',
    159: 'http-response-missing-header', 160: 'http-websocket-header-error', 161: 'http-upgrade-required',
    162: 'http-upgrade-error', 163: 'http-temporary-unavailable', 164: 'http-not-a-server',
    165: 'http-error', 166: 'websocket-scheme-not-supported', 167: 'websocket-unknown-control-message',
    168: 'websocket-close-error', 169: 'websocket-closed-by-peer', 170: 'websocket-endpoint-leaves',
    171: 'websocket-protocol-error', 172: 'websocket-data-not-accepted', 173: 'websocket-closed-abnormally',
    174: 'websocket-data-inconsistent', 175: 'websocket-data-against-policy',
    176: 'websocket-frame-too-long', 177: 'websocket-extension-missing',
    178: 'websocket-request-unavailable', 179: 'websocket-error', 180: 'tls-client-certificate-error',
    181: 'tls-server-certificate-error', 182: 'tls-client-authentication-failed',
    183: 'tls-server-authentication-failed', 184: 'tls-client-certificate-expired',
    185: 'tls-server-certificate-expired', 186: 'tls-client-certificate-revoked',
    187: 'tls-server-certificate-revoked', 188: 'tls-error', 189: 'dns-unavailable',
    190: 'dns-name-resolution-failed', 191: 'dns-resolver-failure', 192: 'dns-error',
    193: 'tcp-connect-timeout', 194: 'tcp-connection-refused', 195: 'tcp-closed-by-local',
    196: 'tcp-closed-other', 197: 'tcp-error', 198: 'ip-address-not-reachable', 199: 'ip-error',
}
VENDORS: dict[int, str] = {
    0: 'ASHRAE', 1: 'NIST', 2: 'The Trane Company', 3: 'Daikin Applied Americas', 4: 'PolarSoft',
    5: 'Johnson Controls, Inc.', 6: 'ABB (Formerly American Auto-Matrix)',
    7: 'Siemens Schweiz AG (Formerly: Landis & Staefa Division Europe)', 8: 'Delta Controls',
    9: 'Siemens Schweiz AG', 10: 'Schneider Electric', 11: 'TAC', 12: 'Orion Analysis Corporation',
    13: 'Teletrol Systems Inc.', 14: 'Cimetrics Technology', 15: 'Cornell University',
    16: 'United Technologies Carrier', 17: 'Honeywell Inc.', 18: 'Alerton / Honeywell', 19: 'TAC AB',
    20: 'Hewlett-Packard Company', 21: 'Dorsette’s Inc.', 22: 'Siemens Schweiz AG (Formerly: Cerberus AG)',
    23: 'York Controls Group', 24: 'Automated Logic Corporation', 25: 'CSI Control Systems International',
    26: 'Phoenix Controls Corporation', 27: 'Innovex Technologies, Inc.', 28: 'KMC Controls, Inc.',
    29: 'Xn Technologies, Inc.', 30: 'Hyundai Information Technology Co., Ltd.', 31: 'Tokimec Inc.',
    32: 'Simplex', 33: 'North Building Technologies Limited', 34: 'Notifier',
    35: 'Reliable Controls Corporation', 36: 'Tridium Inc.', 37: 'MSA Safety', 38: 'Silicon Energy',
    39: 'Kieback & Peter GmbH & Co KG', 40: 'Anacon Systems, Inc.',
    41: 'Systems Controls & Instruments, LLC', 42: 'Acuity Brands Lighting, Inc.',
    43: 'Micropower Manufacturing', 44: 'Matrix Controls', 45: 'METALAIRE', 46: 'ESS Engineering',
    47: 'Sphere Systems Pty Ltd.', 48: 'Walker Technologies Corporation', 49: 'H I Solutions, Inc.',
    50: 'MBS GmbH', 51: 'SAMSON AG', 52: 'Badger Meter Inc.', 53: 'DAIKIN Industries Ltd.',
    54: 'NARA Controls Inc.', 55: 'Mammoth Inc.', 56: 'Liebert Corporation', 57: 'SEMCO Incorporated',
    58: 'Air Monitor Corporation', 59: 'TRIATEK, LLC', 60: 'NexLight', 61: 'Multistack',
    62: 'TSI Incorporated', 63: 'Weather-Rite, Inc.', 64: 'Dunham-Bush', 65: 'Reliance Electric',
    66: 'LCS Inc.', 67: 'Regulator Australia PTY Ltd.', 68: 'Touch-Plate Lighting Controls',
    69: 'Amann GmbH', 70: 'RLE Technologies', 71: 'Cardkey Systems', 72: 'SECOM Co., Ltd.',
    73: 'ABB Gebäudetechnik AG Bereich NetServ', 74: 'KNX Association cvba',
    75: 'Institute of Electrical Installation Engineers of Japan (IEIEJ)', 76: 'Nohmi Bosai, Ltd.',
    77: 'Carel Industries S.p.A.', 78: 'UTC Fire & Security España, S.L.', 79: 'Hochiki Corporation',
    80: 'Fr. Sauter AG', 81: 'Matsushita Electric Works, Ltd.',
    82: 'Mitsubishi Electric Corporation, Inazawa Works', 83: 'Mitsubishi Heavy Industries, Ltd.',
    84: 'Xylem, Inc.', 85: 'Yamatake Building Systems Co., Ltd.', 86: 'The Watt Stopper, Inc.',
    87: 'Aichi Tokei Denki Co., Ltd.', 88: 'Activation Technologies, LLC',
    89: 'Saia-Burgess Controls, Ltd.', 90: 'Hitachi, Ltd.', 91: 'Novar Corp./Trend Control Systems Ltd.',
    92: 'Mitsubishi Electric Lighting Corporation', 93: 'Argus Control Systems, Ltd.',
    94: 'Kyuki Corporation', 95: 'Richards-Zeta Building Intelligence, Inc.', 96: 'Scientech R&D, Inc.',
    97: 'VCI Controls, Inc.', 98: 'Toshiba Corporation',
    99: 'Mitsubishi Electric Corporation Air Conditioning & Refrigeration Systems Works',
    100: 'Custom Mechanical Equipment, LLC', 101: 'ClimateMaster', 102: 'ICP Panel-Tec, Inc.',
    103: 'D-Tek Controls', 104: 'NEC Engineering, Ltd.', 105: 'PRIVA BV', 106: 'Meidensha Corporation',
    107: 'JCI Systems Integration Services', 108: 'Freedom Corporation',
    109: 'Neuberger Gebäudeautomation GmbH', 110: 'eZi Controls', 111: 'Leviton Manufacturing',
    112: 'Fujitsu Limited', 113: 'Vertiv (Formerly Emerson Network Power)', 114: 'S. A. Armstrong, Ltd.',
    115: 'Visonet AG', 116: 'M&M Systems, Inc.', 117: 'Custom Software Engineering',
    118: 'Nittan Company, Limited', 119: 'Elutions Inc. (Wizcon Systems SAS)',
    120: 'Pacom Systems Pty., Ltd.', 121: 'Unico, Inc.', 122: 'Ebtron, Inc.', 123: 'Scada Engine',
    124: 'Lenze Americas (Formerly: AC Technology Corporation)', 125: 'Eagle Technology',
    126: 'Data Aire, Inc.', 127: 'ABB, Inc.', 128: 'Transbit Sp. z o. o.',
    129: 'Toshiba Carrier Corporation', 130: 'Shenzhen Junzhi Hi-Tech Co., Ltd.', 131: 'Tokai Soft',
    132: 'Blue Ridge Technologies', 133: 'Veris Industries', 134: 'Centaurus Prime',
    135: 'Sand Network Systems', 136: 'Regulvar, Inc.', 137: 'AFDtek Division of Fastek International Inc.',
    138: 'PowerCold Comfort Air Solutions, Inc.', 139: 'I Controls', 140: 'Viconics Electronics, Inc.',
    141: 'Yaskawa America, Inc.', 142: 'DEOS control systems GmbH',
    143: 'Digitale Mess- und Steuersysteme AG', 144: 'Fujitsu General Limited',
    145: 'Project Engineering S.r.l.', 146: 'Sanyo Electric Co., Ltd.',
    147: 'Integrated Information Systems, Inc.', 148: 'Temco Controls, Ltd.',
    149: 'Airtek International Inc.', 150: 'Advantech Corporation', 151: 'Titan Products, Ltd.',
    152: 'Regel Partners', 153: 'National Environmental Product', 154: 'Unitec Corporation',
    155: 'Kanden Engineering Company', 156: 'Messner Gebäudetechnik GmbH', 157: 'Integrated.CH',
    158: 'Price Industries', 159: 'SE-Elektronic GmbH', 160: 'Rockwell Automation', 161: 'Enflex Corp.',
    162: 'ASI Controls', 163: 'SysMik GmbH Dresden', 164: 'HSC Regelungstechnik GmbH',
    165: 'Smart Temp Australia Pty. Ltd.', 166: 'Cooper Controls', 167: 'Duksan Mecasys Co., Ltd.',
    168: 'Fuji IT Co., Ltd.', 169: 'Vacon Plc', 170: 'Leader Controls',
    171: 'ABB (Formerly Cylon Controls, Ltd)', 172: 'Compas',
    173: 'Mitsubishi Electric Building Techno-Service Co., Ltd.', 174: 'Building Control Integrators',
    175: 'ITG Worldwide (M) Sdn Bhd', 176: 'Lutron Electronics Co., Inc.', 177: 'Cooper-Atkins Corporation',
    178: 'LOYTEC Electronics GmbH', 179: 'ProLon', 180: 'Mega Controls Limited',
    181: 'Micro Control Systems, Inc.', 182: 'Kiyon, Inc.', 183: 'Dust Networks',
    184: 'Advanced Building Automation Systems', 185: 'Hermos AG', 186: 'CEZIM', 187: 'Softing',
    188: 'Lynxspring, Inc.', 189: 'Schneider Toshiba Inverter Europe', 190: 'Danfoss Drives A/S',
    191: 'Eaton Corporation', 192: 'Matyca S.A.', 193: 'Botech AB', 194: 'Noveo, Inc.', 195: 'AMEV',
    196: 'Yokogawa Electric Corporation', 197: 'Bosch Building Automation GmbH', 198: 'Exact Logic',
    199: 'Mass Electronics Pty Ltd dba Innotech Control Systems Australia', 200: 'Kandenko Co., Ltd.',
    201: 'DTF, Daten-Technik Fries', 202: 'Klimasoft, Ltd.', 203: 'Toshiba Schneider Inverter Corporation',
    204: 'Control Applications, Ltd.', 205: 'CIMON CO., Ltd.', 206: 'Onicon Incorporated',
    207: 'Automation Displays, Inc.', 208: 'Control Solutions, Inc.', 209: 'Remsdaq Limited',
    210: 'NTT Facilities, Inc.', 211: 'VIPA GmbH', 212: 'TSC21 Association of Japan',
    213: 'Strato Automation', 214: 'HRW Limited', 215: 'Lighting Control & Design, Inc.',
    216: 'Mercy Electronic and Electrical Industries', 217: 'Samsung SDS Co., Ltd',
    218: 'Impact Facility Solutions, Inc.', 219: 'Aircuity', 220: 'Control Techniques, Ltd.',
    221: 'OpenGeneral Pty., Ltd.', 222: 'WAGO Kontakttechnik GmbH & Co. KG', 223: 'Franklin Electric',
    224: 'Chloride Power Protection Company', 225: 'Computrols, Inc.', 226: 'Phoenix Contact GmbH & Co. KG',
    227: 'Grundfos Management A/S', 228: 'Ridder Drive Systems', 229: 'Soft Device SDN BHD',
    230: 'Integrated Control Technology Limited', 231: 'AIRxpert Systems, Inc.', 232: 'Microtrol Limited',
    233: 'Red Lion Controls', 234: 'Digital Electronics Corporation', 235: 'Ennovatis GmbH',
    236: 'Serotonin Software Technologies, Inc.', 237: 'LS Industrial Systems Co., Ltd.',
    238: 'Square D Company', 239: 'S Squared Innovations, Inc.', 240: 'Aricent Ltd.',
    241: 'EtherMetrics, LLC', 242: 'Industrial Control Communications, Inc.', 243: 'Paragon Controls, Inc.',
    244: 'A. O. Smith Corporation', 245: 'Contemporary Control Systems, Inc.',
    246: 'HMS Industrial Networks SLU', 247: 'Ingenieurgesellschaft N. Hartleb mbH',
    248: 'Heat-Timer Corporation', 249: 'Ingrasys Technology, Inc.', 250: 'Costerm Building Automation',
    251: 'WILO SE', 252: 'Embedia Technologies Corp.', 253: 'Technilog', 254: 'HR Controls Ltd. & Co. KG',
    255: 'Lennox International, Inc.', 256: 'RK-Tec Rauchklappen-Steuerungssysteme GmbH & Co. KG',
    257: 'Thermomax, Ltd.', 258: 'ELCON Electronic Control, Ltd.', 259: 'Larmia Control AB',
    260: 'BACnet Stack at SourceForge', 261: 'G4S Security Services A/S', 262: 'Exor International S.p.A.',
    263: 'Cristal Controles', 264: 'Regin AB', 265: 'Dimension Software, Inc.',
    266: 'SynapSense Corporation', 267: 'Beijing Nantree Electronic Co., Ltd.', 268: 'Camus Hydronics Ltd.',
    269: 'Kawasaki Heavy Industries, Ltd.', 270: 'Critical Environment Technologies',
    271: 'ILSHIN IBS Co., Ltd.', 272: 'ELESTA Energy Control AG', 273: 'KROPMAN Installatietechniek',
    274: 'Baldor Electric Company', 275: 'INGA mbH', 276: 'GE Consumer & Industrial',
    277: 'Functional Devices, Inc.', 278: 'StudioSC', 279: 'M-System Co., Ltd.', 280: 'Yokota Co., Ltd.',
    281: 'Hitranse Technology Co., LTD', 282: 'Vigilent Corporation', 283: 'Kele, Inc.',
    284: 'BELIMO Automation AG', 285: 'Gentec', 286: 'Embedded Science Labs, LLC',
    287: 'Parker Hannifin Corporation', 288: 'MaCaPS International Limited', 289: 'Link4 Corporation',
    290: 'Romutec Steuer-u. Regelsysteme GmbH', 291: 'Pribusin, Inc.', 292: 'Advantage Controls',
    293: 'Critical Room Control', 294: 'LEGRAND', 295: 'Tongdy Control Technology Co., Ltd.',
    296: 'ISSARO Integrierte Systemtechnik', 297: 'Pro-Dev Industries', 298: 'DRI-STEEM',
    299: 'Creative Electronic GmbH', 300: 'Swegon AB', 301: 'FIRVENA s.r.o.',
    302: 'Hitachi Appliances, Inc.', 303: 'Real Time Automation, Inc.', 304: 'ITEC Hankyu-Hanshin Co.',
    305: 'Cyrus E&M Engineering Co., Ltd.', 306: 'Badger Meter', 307: 'Cirrascale Corporation',
    308: 'Elesta GmbH Building Automation', 309: 'Securiton', 310: 'OSlsoft, Inc.',
    311: 'Hanazeder Electronic GmbH', 312: 'Honeywell Security Deutschland, Novar GmbH',
    313: 'Siemens Industry, Inc.', 314: 'ETM Professional Control GmbH', 315: 'Meitav-tec, Ltd.',
    316: 'Janitza Electronics GmbH', 317: 'MKS Nordhausen', 318: 'De Gier Drive Systems B.V.',
    319: 'Cypress Envirosystems', 320: 'SMARTron s.r.o.', 321: 'Verari Systems, Inc.',
    322: 'K-W Electronic Service, Inc.', 323: 'ALFA-SMART Energy Management', 324: 'Telkonet, Inc.',
    325: 'Securiton GmbH', 326: 'Cemtrex, Inc.', 327: 'Performance Technologies, Inc.',
    328: 'Xtralis (Aust) Pty Ltd', 329: 'TROX GmbH', 330: 'Beijing Hysine Technology Co., Ltd',
    331: 'RCK Controls, Inc.', 332: 'Distech Controls SAS', 333: 'Novar/Honeywell',
    334: 'S4 Integration Solutions', 335: 'Schneider Electric', 336: 'LHA Systems',
    337: 'GHM engineering Group, Inc.', 338: 'Cllimalux S.A.', 339: 'VAISALA Oyj',
    340: 'COMPLEX (Beijing) Technology, Co., LTD.', 341: 'SCADAmetrics', 342: 'POWERPEG NSI Limited',
    343: 'BACnet Interoperability Testing Services, Inc.', 344: 'Teco a.s.', 345: 'Plexus Technology, Inc.',
    346: 'Energy Focus, Inc.', 347: 'Powersmiths International Corp.', 348: 'Nichibei Co., Ltd.',
    349: 'HKC Technology Ltd.', 350: 'Ovation Networks, Inc.', 351: 'Setra Systems', 352: 'AVG Automation',
    353: 'ZXC Ltd.', 354: 'Byte Sphere', 355: 'Generiton Co., Ltd.',
    356: 'Holter Regelarmaturen GmbH & Co. KG', 357: 'Bedford Instruments, LLC', 358: 'Standair Inc.',
    359: 'WEG Automation – R&D', 360: 'Prolon Control Systems ApS', 361: 'Inneasoft',
    362: 'ConneXSoft GmbH', 363: 'CEAG Notlichtsysteme GmbH', 364: 'Distech Controls Inc.',
    365: 'Industrial Technology Research Institute', 366: 'ICONICS, Inc.', 367: 'IQ Controls s.c.',
    368: 'OJ Electronics A/S', 369: 'Rolbit Ltd.', 370: 'Synapsys Solutions Ltd.',
    371: 'ACME Engineering Prod. Ltd.', 372: 'Zener Electric Pty, Ltd.', 373: 'Selectronix, Inc.',
    374: 'Gorbet & Banerjee, LLC.', 375: 'IME', 376: 'Stephen H. Dawson Computer Service',
    377: 'Accutrol, LLC', 378: 'Schneider Elektronik GmbH', 379: 'Alpha-Inno Tec GmbH',
    380: 'ADMMicro, Inc.', 381: 'Greystone Energy Systems, Inc.', 382: 'CAP Technologie',
    383: 'KeRo Systems', 384: 'Domat Control System s.r.o.', 385: 'Efektronics Pty. Ltd.',
    386: 'Hekatron Vertriebs GmbH', 387: 'Securiton AG', 388: 'Carlo Gavazzi Controls SpA',
    389: 'Chipkin Automation Systems', 390: 'Savant Systems, LLC', 391: 'Simmtronic Lighting Controls',
    392: 'Abelko Innovation AB', 393: 'Seresco Technologies Inc.', 394: 'IT Watchdogs',
    395: 'Automation Assist Japan Corp.', 396: 'Thermokon Sensortechnik GmbH', 397: 'EGauge Systems, LLC',
    398: 'Quantum Automation (ASIA) PTE, Ltd.', 399: 'Toshiba Lighting & Technology Corp.',
    400: 'SPIN Engenharia de Automação Ltda.',
}
