"""DNP3 (IEEE 1815-2012) over TCP and UDP port 20000: data link, transport and application layers.

Data link (IEEE 1815 clause 9): 0x0564 start, length, control (DIR, PRM, FCB/FCV or ACD/DFC, function),
destination and source, a CRC over the header and one after every 16-byte block of user data. Frames
with a bad CRC become `weird` events and are dropped, as the standard requires. Link-only frames
(REQUEST_LINK_STATUS, LINK_STATUS, ACK, RESET_LINK_STATES ...) are recorded as `dnp3` events.

Transport (clause 8): FIR/FIN/sequence reassembly of application fragments across link frames, per
(source, destination) pair; out-of-sequence segments are `weird` and discard the fragment in progress.

Application (clause 4 and 12): request and response headers, IIN, every object header (group,
variation, qualifier, range) and the values of the common groups, which become `points`. Requests and
responses are paired by application sequence number within the (master, outstation) channel into
ONE `dnp3` event; unsolicited responses are `one_way`; an OPERATE is checked against the SELECT that
must precede it with identical objects (clause 4.4.3). The function -> action table is `FUNCTIONS`.
"""

from __future__ import annotations

import math
import struct
from typing import Any

from icsight.events import ts_to_iso
from sensors.base import Analyzer, Pending, StreamBuffer, hexstr

PROTOCOL = "dnp3"
TCP_PORTS = (20000,)
UDP_PORTS = (20000,)
ROLES = ("master", "outstation")

MAX_FRAGMENT = 65536         # application fragments are 2048 bytes by default; larger means garbage
SELECT_TIMEOUT = 30.0        # seconds an OPERATE may follow its SELECT (devices use 5-10 s)
REQUEST_TIMEOUT = 60.0

# ---------------------------------------------------------------------------------------------------
# CRC-16/DNP (clause 9.2.6): polynomial 0x3D65 (reflected 0xA6BC), init 0, complemented, little-endian.


def _crc_table() -> tuple[int, ...]:
    t = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0xA6BC if c & 1 else c >> 1
        t.append(c)
    return tuple(t)


_CRC_TABLE = _crc_table()


def crc16(data: bytes | bytearray | memoryview) -> int:
    """The DNP3 link-layer CRC of `data` (as the integer stored little-endian after it)."""
    crc, t = 0, _CRC_TABLE
    for b in data:
        crc = (crc >> 8) ^ t[(crc ^ b) & 0xFF]
    return ~crc & 0xFFFF


# The link layer checks every frame with `_crc`: the C implementation of the same CRC from the optional
# `crcmod-plus` package when its extension is built (~10x faster per 16-byte block than the loop
# above), else `crc16`, which stays the reference (tests/test_dnp3.py checks that both agree).
try:
    from crcmod import crcmod as _crcmod
    from crcmod.predefined import mkPredefinedCrcFun

    _crc = mkPredefinedCrcFun("crc-16-dnp") if getattr(_crcmod, "_usingExtension", False) else crc16
except ImportError:
    _crc = crc16


def link_frame(ctl: int, dst: int, src: int, user_data: bytes = b"") -> bytes:
    """Build one link frame with valid CRCs (tests, fuzzing, the cyber range)."""
    hdr = struct.pack("<BBBBHH", 0x05, 0x64, len(user_data) + 5, ctl, dst, src)
    out = bytearray(hdr + struct.pack("<H", crc16(hdr)))
    for i in range(0, len(user_data), 16):
        blk = user_data[i:i + 16]
        out += blk + struct.pack("<H", crc16(blk))
    return bytes(out)


# ---------------------------------------------------------------------------------------------------
# Code tables

# Link function codes (clause 9.2.4.1.3): primary (PRM=1) and secondary (PRM=0).
LINK_PRIMARY = {0: "RESET_LINK_STATES", 1: "RESET_USER_PROCESS", 2: "TEST_LINK_STATES",
                3: "CONFIRMED_USER_DATA", 4: "UNCONFIRMED_USER_DATA", 9: "REQUEST_LINK_STATUS"}
LINK_SECONDARY = {0: "ACK", 1: "NACK", 11: "LINK_STATUS", 14: "LINK_NOT_FUNCTIONING",
                  15: "NOT_SUPPORTED"}

# Application function codes (clause 4.2.2.5 / table 4-1) -> (name, action).
FUNCTIONS: dict[int, tuple[str, str]] = {
    0x00: ("CONFIRM", "session"),
    0x01: ("READ", "read"),
    0x02: ("WRITE", "write"),
    0x03: ("SELECT", "control"),
    0x04: ("OPERATE", "control"),
    0x05: ("DIRECT_OPERATE", "control"),
    0x06: ("DIRECT_OPERATE_NR", "control"),
    0x07: ("IMMED_FREEZE", "control"),
    0x08: ("IMMED_FREEZE_NR", "control"),
    0x09: ("FREEZE_CLEAR", "control"),
    0x0A: ("FREEZE_CLEAR_NR", "control"),
    0x0B: ("FREEZE_AT_TIME", "control"),
    0x0C: ("FREEZE_AT_TIME_NR", "control"),
    0x0D: ("COLD_RESTART", "control"),
    0x0E: ("WARM_RESTART", "control"),
    0x0F: ("INITIALIZE_DATA", "control"),
    0x10: ("INITIALIZE_APPL", "control"),
    0x11: ("START_APPL", "control"),
    0x12: ("STOP_APPL", "control"),
    0x13: ("SAVE_CONFIG", "program"),
    0x14: ("ENABLE_UNSOLICITED", "session"),
    0x15: ("DISABLE_UNSOLICITED", "session"),
    0x16: ("ASSIGN_CLASS", "write"),
    0x17: ("DELAY_MEASURE", "session"),
    0x18: ("RECORD_CURRENT_TIME", "session"),
    0x19: ("OPEN_FILE", "read"),            # "program" when the file is opened for writing
    0x1A: ("CLOSE_FILE", "session"),
    0x1B: ("DELETE_FILE", "program"),
    0x1C: ("GET_FILE_INFO", "read"),
    0x1D: ("AUTHENTICATE_FILE", "session"),
    0x1E: ("ABORT_FILE", "session"),
    0x1F: ("ACTIVATE_CONFIG", "program"),
    0x20: ("AUTHENTICATE_REQ", "session"),
    0x21: ("AUTHENTICATE_REQ_NR", "session"),
    0x81: ("RESPONSE", "read"),
    0x82: ("UNSOLICITED_RESPONSE", "read"),
    0x83: ("AUTHENTICATE_RESP", "session"),
}
FC_CONFIRM, FC_READ, FC_WRITE, FC_SELECT, FC_OPERATE = 0, 1, 2, 3, 4
FC_FREEZE_AT_TIME, FC_FREEZE_AT_TIME_NR = 0x0B, 0x0C
FC_OPEN_FILE, FC_AUTH_REQ = 0x19, 0x20
FC_RESPONSE, FC_UNSOLICITED, FC_AUTH_RESP = 0x81, 0x82, 0x83
RESPONSE_CODES = frozenset({FC_RESPONSE, FC_UNSOLICITED, FC_AUTH_RESP})
# Requests the outstation never answers (the _NR "no response" functions, clause 4.4).
NO_RESPONSE = frozenset({0x00, 0x06, 0x08, 0x0A, 0x0C, 0x21})
# Requests whose object headers carry no object data (clause 4.4: the objects name what to act on).
HEADERS_ONLY = frozenset({0x01, 0x07, 0x08, 0x09, 0x0A, 0x0D, 0x0E, 0x0F, 0x13, 0x14, 0x15, 0x16,
                          0x17, 0x18})

# IIN bits (clause 5.2.2): IIN1 in the high byte, IIN2 in the low byte (Zeek's `iin` count).
IIN_BITS = (
    (0x0100, "ALL_STATIONS"), (0x0200, "CLASS_1_EVENTS"), (0x0400, "CLASS_2_EVENTS"),
    (0x0800, "CLASS_3_EVENTS"), (0x1000, "NEED_TIME"), (0x2000, "LOCAL_CONTROL"),
    (0x4000, "DEVICE_TROUBLE"), (0x8000, "DEVICE_RESTART"),
    (0x0001, "NO_FUNC_CODE_SUPPORT"), (0x0002, "OBJECT_UNKNOWN"), (0x0004, "PARAMETER_ERROR"),
    (0x0008, "EVENT_BUFFER_OVERFLOW"), (0x0010, "ALREADY_EXECUTING"), (0x0020, "CONFIG_CORRUPT"),
    (0x0040, "RESERVED_2"), (0x0080, "RESERVED_1"),
)
# g80 (IIN) point index -> name: index 0 is IIN1.0 ... index 15 is IIN2.7.
IIN_INDEX = {i: n for i, (_, n) in enumerate(IIN_BITS)}

# Control Relay Output Block (clause 11.9.4 / g12v1).
CROB_OP = {0: "NUL", 1: "PULSE_ON", 2: "PULSE_OFF", 3: "LATCH_ON", 4: "LATCH_OFF"}
CROB_TCC = {0: "NUL", 1: "CLOSE", 2: "TRIP", 3: "RESERVED"}
# Command status codes (clause 11.9.3, table 11-5).
CONTROL_STATUS = {
    0: "SUCCESS", 1: "TIMEOUT", 2: "NO_SELECT", 3: "FORMAT_ERROR", 4: "NOT_SUPPORTED",
    5: "ALREADY_ACTIVE", 6: "HARDWARE_ERROR", 7: "LOCAL", 8: "TOO_MANY_OBJS", 9: "NOT_AUTHORIZED",
    10: "AUTOMATION_INHIBIT", 11: "PROCESSING_LIMITED", 12: "OUT_OF_RANGE", 13: "DOWNSTREAM_LOCAL",
    14: "ALREADY_COMPLETE", 15: "BLOCKED", 16: "CANCELLED", 17: "BLOCKED_OTHER_MASTER",
    18: "DOWNSTREAM_FAIL", 126: "NON_PARTICIPATING", 127: "UNDEFINED",
}
FILE_MODES = {0: "NULL", 1: "READ", 2: "WRITE", 3: "APPEND"}
FILE_STATUS = {0: "SUCCESS", 1: "PERMISSION_DENIED", 2: "INVALID_MODE", 3: "FILE_NOT_FOUND",
               4: "FILE_LOCKED", 5: "TOO_MANY_OPEN", 6: "INVALID_HANDLE", 7: "WRITE_BLOCK_SIZE",
               8: "COMM_LOST", 9: "CANNOT_ABORT", 16: "NOT_OPENED", 17: "HANDLE_EXPIRED",
               18: "BUFFER_OVERRUN", 19: "FATAL", 20: "BLOCK_SEQ", 255: "UNDEFINED"}
# g0 device attribute variations (clause 11.9.1, table 11-2) that describe the device's identity.
ATTRIBUTE_IDENTITY = {252: "vendor", 250: "product", 248: "serial", 247: "name", 246: "id_code",
                      245: "location", 243: "hardware", 242: "firmware", 249: "subset"}
ATTRIBUTE_TYPES = {1: "VSTR", 2: "UINT", 3: "INT", 4: "FLT", 5: "OSTR", 6: "BSTR", 254: "U8BS8LIST",
                   255: "U8BS8EXLIST"}
AUTH_ERRORS = {1: "AUTHENTICATION_FAILED", 2: "UNEXPECTED_RESPONSE", 3: "NO_RESPONSE",
               4: "AGGRESSIVE_MODE_NOT_SUPPORTED", 5: "MAC_NOT_SUPPORTED", 6: "KEY_WRAP_NOT_SUPPORTED",
               7: "AUTHORIZATION_FAILED", 8: "UPDATE_KEY_METHOD_NOT_PERMITTED",
               9: "INVALID_SIGNATURE", 10: "INVALID_CERTIFICATION_DATA", 11: "UNKNOWN_USER",
               12: "MAX_SESSION_KEY_STATUS_REQUESTS_EXCEEDED"}

# Quality flag names by point family (clause 11.9.2 / the flags octet of each group).
_COMMON_FLAGS = {0x01: "ONLINE", 0x02: "RESTART", 0x04: "COMM_LOST", 0x08: "REMOTE_FORCED",
                 0x10: "LOCAL_FORCED"}
_FLAG_NAMES = {
    "bin": {**_COMMON_FLAGS, 0x20: "CHATTER_FILTER", 0x40: "RESERVED"},        # state in bit 7
    "dbin": {**_COMMON_FLAGS, 0x20: "CHATTER_FILTER"},                        # state in bits 6-7
    "bout": {**_COMMON_FLAGS, 0x20: "RESERVED_5", 0x40: "RESERVED_6"},        # state in bit 7
    "ctr": {**_COMMON_FLAGS, 0x20: "ROLLOVER", 0x40: "DISCONTINUITY", 0x80: "RESERVED"},
    "ana": {**_COMMON_FLAGS, 0x20: "OVER_RANGE", 0x40: "REFERENCE_ERR", 0x80: "RESERVED"},
}
_STATE_BITS = {"bin": 0x80, "dbin": 0xC0, "bout": 0x80, "ctr": 0, "ana": 0}
QUALITY: dict[str, tuple[tuple[str, ...], ...]] = {
    fam: tuple(tuple(n for bit, n in sorted(names.items()) if f & bit and not bit & _STATE_BITS[fam])
               for f in range(256))
    for fam, names in _FLAG_NAMES.items()
}
DBIT_STATES = {0: "INTERMEDIATE", 1: "OFF", 2: "ON", 3: "INDETERMINATE"}

# ---------------------------------------------------------------------------------------------------
# Object definitions (clause 11 / IEEE 1815 Annex A): (group, variation) -> ObjDef.
# kind: "none" no data, "bit"/"dbit" packed 1 or 2 bits per point, "fix" a fixed layout,
# "crob" g12v1/g12v2, "var" the variation is the octet length (g110-g113), "sized" the size comes from
# the qualifier's size prefix (g70, g120 ...), "attr" g0 device attributes.
# layout codes: F flags, S command status, t48 absolute time (ms), t16 relative time (ms), and the
# integer/float types; `ptype` is the point type in refs, `fam` the flag family, `event` event objects.

_CODE_FMT = {"F": "B", "S": "B", "u8": "B", "i16": "h", "u16": "H", "i32": "i", "u32": "I",
             "f32": "f", "f64": "d", "t48": "IH", "t16": "H"}


_VALUE_CODES = frozenset({"u8", "i16", "u16", "i32", "u32", "f32", "f64"})


class ObjDef:
    """One object type: its name, how its data is laid out and what point it describes."""

    __slots__ = ("event", "fam", "fast", "flt", "kind", "layout", "name", "prefixed", "ptype", "size", "st")

    def __init__(self, name: str, kind: str, layout: tuple[str, ...] = (), ptype: str | None = None,
                 fam: str | None = None, event: bool = False) -> None:
        self.name, self.kind, self.layout = name, kind, layout
        self.ptype, self.fam, self.event = ptype, fam, event
        fmt = "".join(_CODE_FMT[c] for c in layout)
        self.st = struct.Struct("<" + fmt) if layout else None
        self.size = self.st.size if self.st else (11 if kind == "crob" else 0)
        # Fixed-layout point objects are decoded a whole run at a time (`_fixed_run`): one Struct per
        # index-prefix size (clause 4.4.4.1.1) unpacks "index, fields..." rows with iter_unpack.
        self.prefixed = ({k: struct.Struct("<" + f + fmt) for k, f in ((1, "B"), (2, "H"), (4, "I"))}
                         if kind == "fix" and layout else {})
        # The common shapes get a dedicated loop: "fv" flags + value, "v" value alone, "f" flags alone
        # (the state in the flags octet); anything else (status, time) goes through `_fixed`.
        self.fast: str | None = None
        if kind == "fix" and ptype is not None:
            if len(layout) == 2 and layout[0] == "F" and layout[1] in _VALUE_CODES and fam is not None:
                self.fast = "fv"
            elif len(layout) == 1 and layout[0] in _VALUE_CODES:
                self.fast = "v"
            elif layout == ("F",) and fam is not None:
                self.fast = "f"
        self.flt = bool(layout) and layout[-1] in ("f32", "f64")


def _defs() -> dict[tuple[int, int], ObjDef]:
    d: dict[tuple[int, int], ObjDef] = {}

    def add(g: int, v: int, name: str, kind: str, layout: tuple[str, ...] = (), ptype: str | None = None,
            fam: str | None = None, event: bool = False) -> None:
        d[(g, v)] = ObjDef(name, kind, layout, ptype, fam, event)

    add(0, 254, "Device Attributes - All Attributes Request", "none")
    add(0, 255, "Device Attributes - List of Attribute Variations", "attr")
    for v in range(1, 254):
        add(0, v, f"Device Attributes - Variation {v}", "attr")
    # binary inputs (g1, g2), double-bit (g3, g4)
    add(1, 0, "Binary Input - Any Variation", "none")
    add(1, 1, "Binary Input - Packed", "bit", (), "bi", "bin")
    add(1, 2, "Binary Input With Status", "fix", ("F",), "bi", "bin")
    add(2, 0, "Binary Input Event - Any Variation", "none")
    add(2, 1, "Binary Input Event Without Time", "fix", ("F",), "bi", "bin", True)
    add(2, 2, "Binary Input Event With Absolute Time", "fix", ("F", "t48"), "bi", "bin", True)
    add(2, 3, "Binary Input Event With Relative Time", "fix", ("F", "t16"), "bi", "bin", True)
    add(3, 0, "Double-bit Binary Input - Any Variation", "none")
    add(3, 1, "Double-bit Binary Input - Packed", "dbit", (), "dbi", "dbin")
    add(3, 2, "Double-bit Binary Input With Status", "fix", ("F",), "dbi", "dbin")
    add(4, 0, "Double-bit Binary Input Event - Any Variation", "none")
    add(4, 1, "Double-bit Binary Input Event Without Time", "fix", ("F",), "dbi", "dbin", True)
    add(4, 2, "Double-bit Binary Input Event With Absolute Time", "fix", ("F", "t48"), "dbi", "dbin", True)
    add(4, 3, "Double-bit Binary Input Event With Relative Time", "fix", ("F", "t16"), "dbi", "dbin", True)
    # binary outputs (g10, g11), commands (g12), command events (g13)
    add(10, 0, "Binary Output - Any Variation", "none")
    add(10, 1, "Binary Output - Packed", "bit", (), "bo", "bout")
    add(10, 2, "Binary Output Status", "fix", ("F",), "bo", "bout")
    add(11, 0, "Binary Output Event - Any Variation", "none")
    add(11, 1, "Binary Output Event Without Time", "fix", ("F",), "bo", "bout", True)
    add(11, 2, "Binary Output Event With Time", "fix", ("F", "t48"), "bo", "bout", True)
    add(12, 0, "Binary Command - Any Variation", "none")
    add(12, 1, "Control Relay Output Block", "crob", (), "bo")
    add(12, 2, "Pattern Control Block", "crob", (), None)
    add(12, 3, "Pattern Mask", "bit", (), None)
    add(13, 0, "Binary Command Event - Any Variation", "none")
    add(13, 1, "Binary Command Event Without Time", "fix", ("S",), "bo", None, True)
    add(13, 2, "Binary Command Event With Time", "fix", ("S", "t48"), "bo", None, True)
    # counters (g20 .. g23)
    add(20, 0, "Counter - Any Variation", "none")
    for v, lay in ((1, ("F", "u32")), (2, ("F", "u16")), (3, ("F", "u32")), (4, ("F", "u16")),
                   (5, ("u32",)), (6, ("u16",)), (7, ("u32",)), (8, ("u16",))):
        bits = 32 if "u32" in lay else 16
        delta = " Delta" if v in (3, 4, 7, 8) else ""
        flag = "With Flag" if "F" in lay else "Without Flag"
        add(20, v, f"{bits}-Bit{delta} Counter {flag}", "fix", lay, "ctr", "ctr")
    add(21, 0, "Frozen Counter - Any Variation", "none")
    for v, lay in ((1, ("F", "u32")), (2, ("F", "u16")), (3, ("F", "u32")), (4, ("F", "u16")),
                   (5, ("F", "u32", "t48")), (6, ("F", "u16", "t48")), (7, ("F", "u32", "t48")),
                   (8, ("F", "u16", "t48")), (9, ("u32",)), (10, ("u16",)), (11, ("u32",)), (12, ("u16",))):
        bits = 32 if "u32" in lay else 16
        delta = " Delta" if v in (3, 4, 7, 8, 11, 12) else ""
        flag = ("With Flag and Time" if "t48" in lay else "With Flag") if "F" in lay else "Without Flag"
        add(21, v, f"{bits}-Bit{delta} Frozen Counter {flag}", "fix", lay, "fctr", "ctr")
    for g, ptype, what in ((22, "ctr", "Counter Event"), (23, "fctr", "Frozen Counter Event")):
        add(g, 0, f"{what} - Any Variation", "none")
        for v, lay in ((1, ("F", "u32")), (2, ("F", "u16")), (3, ("F", "u32")), (4, ("F", "u16")),
                       (5, ("F", "u32", "t48")), (6, ("F", "u16", "t48")), (7, ("F", "u32", "t48")),
                       (8, ("F", "u16", "t48"))):
            bits = 32 if "u32" in lay else 16
            delta = " Delta" if v in (3, 4, 7, 8) else ""
            add(g, v, f"{bits}-Bit{delta} {what}{' With Time' if 't48' in lay else ''}", "fix", lay,
                ptype, "ctr", True)
    # analog inputs (g30 .. g34)
    add(30, 0, "Analog Input - Any Variation", "none")
    for v, lay, nm in ((1, ("F", "i32"), "32-Bit Analog Input"), (2, ("F", "i16"), "16-Bit Analog Input"),
                       (3, ("i32",), "32-Bit Analog Input Without Flag"),
                       (4, ("i16",), "16-Bit Analog Input Without Flag"),
                       (5, ("F", "f32"), "Single-Precision Floating Point Analog Input"),
                       (6, ("F", "f64"), "Double-Precision Floating Point Analog Input")):
        add(30, v, nm, "fix", lay, "ai", "ana")
    add(31, 0, "Frozen Analog Input - Any Variation", "none")
    for v, lay, nm in ((1, ("F", "i32"), "32-Bit Frozen Analog Input"),
                       (2, ("F", "i16"), "16-Bit Frozen Analog Input"),
                       (3, ("F", "i32", "t48"), "32-Bit Frozen Analog Input With Time"),
                       (4, ("F", "i16", "t48"), "16-Bit Frozen Analog Input With Time"),
                       (5, ("i32",), "32-Bit Frozen Analog Input Without Flag"),
                       (6, ("i16",), "16-Bit Frozen Analog Input Without Flag"),
                       (7, ("F", "f32"), "Single-Precision Frozen Analog Input"),
                       (8, ("F", "f64"), "Double-Precision Frozen Analog Input")):
        add(31, v, nm, "fix", lay, "fai", "ana")
    for g, ptype, what in ((32, "ai", "Analog Input Event"), (33, "fai", "Frozen Analog Input Event")):
        add(g, 0, f"{what} - Any Variation", "none")
        for v, lay, nm in ((1, ("F", "i32"), "32-Bit"), (2, ("F", "i16"), "16-Bit"),
                           (3, ("F", "i32", "t48"), "32-Bit"), (4, ("F", "i16", "t48"), "16-Bit"),
                           (5, ("F", "f32"), "Single-Precision"), (6, ("F", "f64"), "Double-Precision"),
                           (7, ("F", "f32", "t48"), "Single-Precision"),
                           (8, ("F", "f64", "t48"), "Double-Precision")):
            add(g, v, f"{nm} {what}{' With Time' if 't48' in lay else ''}", "fix", lay, ptype, "ana", True)
    add(34, 0, "Analog Input Deadband - Any Variation", "none")
    add(34, 1, "16-Bit Analog Input Deadband", "fix", ("u16",), "aid")
    add(34, 2, "32-Bit Analog Input Deadband", "fix", ("u32",), "aid")
    add(34, 3, "Single-Precision Analog Input Deadband", "fix", ("f32",), "aid")
    # analog outputs (g40 .. g43)
    add(40, 0, "Analog Output Status - Any Variation", "none")
    for v, lay, nm in ((1, ("F", "i32"), "32-Bit Analog Output Status"),
                       (2, ("F", "i16"), "16-Bit Analog Output Status"),
                       (3, ("F", "f32"), "Single-Precision Analog Output Status"),
                       (4, ("F", "f64"), "Double-Precision Analog Output Status")):
        add(40, v, nm, "fix", lay, "ao", "ana")
    add(41, 0, "Analog Output Block - Any Variation", "none")
    for v, lay, nm in ((1, ("i32", "S"), "32-Bit Analog Output Block"),
                       (2, ("i16", "S"), "16-Bit Analog Output Block"),
                       (3, ("f32", "S"), "Single-Precision Analog Output Block"),
                       (4, ("f64", "S"), "Double-Precision Analog Output Block")):
        add(41, v, nm, "fix", lay, "ao")
    add(42, 0, "Analog Output Event - Any Variation", "none")
    add(43, 0, "Analog Output Command Event - Any Variation", "none")
    for v, vl, nm in ((1, "i32", "32-Bit"), (2, "i16", "16-Bit"), (3, "i32", "32-Bit"), (4, "i16", "16-Bit"),
                      (5, "f32", "Single-Precision"), (6, "f64", "Double-Precision"),
                      (7, "f32", "Single-Precision"), (8, "f64", "Double-Precision")):
        timed = v in (3, 4, 7, 8)
        add(42, v, f"{nm} Analog Output Event{' With Time' if timed else ''}", "fix",
            ("F", vl, "t48") if timed else ("F", vl), "ao", "ana", True)
        add(43, v, f"{nm} Analog Output Command Event{' With Time' if timed else ''}", "fix",
            ("S", vl, "t48") if timed else ("S", vl), "ao", None, True)
    # time (g50 .. g52), class (g60), files (g70), IIN (g80)
    add(50, 0, "Time and Date - Any Variation", "none")
    add(50, 1, "Time and Date", "fix", ("t48",))
    add(50, 2, "Time and Date With Interval", "fix", ("t48", "u32"))
    add(50, 3, "Time and Date Last Recorded Time", "fix", ("t48",))
    add(50, 4, "Indexed Absolute Time and Long Interval", "fix", ("t48", "u32", "u8"))
    add(51, 1, "Time and Date CTO", "fix", ("t48",))
    add(51, 2, "Unsynchronized Time and Date CTO", "fix", ("t48",))
    add(52, 1, "Time Delay Coarse", "fix", ("u16",))
    add(52, 2, "Time Delay Fine", "fix", ("u16",))
    for v in range(1, 5):
        add(60, v, f"Class {v - 1} Data", "none")
    for v, nm in ((1, "File Identifier"), (2, "File Authentication"), (3, "File Command"),
                  (4, "File Command Status"), (5, "File Transport"), (6, "File Transport Status"),
                  (7, "File Descriptor"), (8, "File Specification String")):
        add(70, v, nm, "sized")
    add(80, 1, "Internal Indications", "bit")
    add(81, 1, "Device Storage", "fix", ("u8", "u8", "u8"))
    for g, nm in ((82, "Device Profile"), (83, "Private Registration Object"), (85, "Data Set Prototype"),
                  (86, "Data Set Descriptor"), (87, "Data Set Present Value"), (88, "Data Set Snapshot"),
                  (90, "Application Identifier"), (91, "Status of Requested Operation")):
        add(g, 1, nm, "sized")
    add(101, 1, "Small Packed BCD", "fix", ("u16",), "bcd")
    add(101, 2, "Medium Packed BCD", "fix", ("u32",), "bcd")
    add(102, 1, "Unsigned Integer 8-Bit", "fix", ("u8",), "u8")
    for g, nm in ((110, "Octet String"), (111, "Octet String Event"), (112, "Virtual Terminal Output Block"),
                  (113, "Virtual Terminal Event Data")):
        add(g, 0, f"{nm} - Any Length", "none")
        for v in range(1, 256):
            add(g, v, nm, "var")
    for v, nm in ((1, "Authentication Challenge"), (2, "Authentication Reply"),
                  (3, "Authentication Aggressive Mode Request"),
                  (4, "Authentication Session Key Status Request"),
                  (5, "Authentication Session Key Status"), (6, "Authentication Session Key Change"),
                  (7, "Authentication Error"), (8, "Authentication User Certificate"),
                  (9, "Authentication MAC"), (10, "Authentication User Status Change"),
                  (11, "Authentication Update Key Change Request"),
                  (12, "Authentication Update Key Change Reply"), (13, "Authentication Update Key Change"),
                  (14, "Authentication Update Key Change Signature"),
                  (15, "Authentication Update Key Change Confirmation")):
        add(120, v, nm, "sized")
    add(121, 0, "Security Statistic - Any Variation", "none")
    add(121, 1, "32-Bit Security Statistic", "fix", ("F", "u16", "u32"), "sstat", "ctr")
    add(122, 0, "Security Statistic Event - Any Variation", "none")
    add(122, 1, "32-Bit Security Statistic Event", "fix", ("F", "u16", "u32"), "sstat", "ctr", True)
    add(122, 2, "32-Bit Security Statistic Event With Time", "fix", ("F", "u16", "u32", "t48"), "sstat",
        "ctr", True)
    return d


OBJECTS = _defs()

# Qualifier codes (clause 4.4.4.1): prefix code -> octets, range code -> (octets, kind).
PREFIX_SIZE = {0: 0, 1: 1, 2: 2, 3: 4, 4: 1, 5: 2, 6: 4}
_U8, _U16, _U32 = struct.Struct("<B"), struct.Struct("<H"), struct.Struct("<I")
_LINK_HDR = struct.Struct("<BHH")          # control, destination, source (clause 9.2.4.1)
_UINT = {1: _U8, 2: _U16, 4: _U32}
# Range codes 3-5 hold one absolute (virtual) address, as in the DNP3 Basic 4 application layer
# document that Wireshark and Zeek follow; nothing current sends them.
RANGE_KINDS = {0: (1, "range"), 1: (2, "range"), 2: (4, "range"), 3: (1, "addr"), 4: (2, "addr"),
               5: (4, "addr"), 6: (0, "all"), 7: (1, "count"), 8: (2, "count"), 9: (4, "count"),
               0xB: (1, "count")}
_CROB = struct.Struct("<BBIIB")
_T48_MAX = 253402300799999        # 9999-12-31T23:59:59.999Z: later times are not representable


def time_str(ms: int) -> str:
    """DNP3 absolute time (ms since 1970-01-01 UTC) as ISO 8601."""
    return ts_to_iso(ms / 1000.0) if 0 <= ms <= _T48_MAX else f"ms:{ms}"


def _num(x: float) -> float | str:
    """Floats must stay valid JSON: NaN and infinities become strings."""
    return x if math.isfinite(x) else str(x)


def func_name(fc: int) -> str:
    f = FUNCTIONS.get(fc)
    return f[0] if f else f"unknown-0x{fc:02x}"


_IIN_NAMES: dict[int, tuple[str, ...]] = {}      # 16-bit IIN -> names, filled as values are seen


def iin_flags(iin: int) -> list[str]:
    """Names of the IIN bits set (IIN1 high byte, IIN2 low byte)."""
    names = _IIN_NAMES.get(iin & 0xFFFF)
    if names is None:
        names = _IIN_NAMES[iin & 0xFFFF] = tuple(n for bit, n in IIN_BITS if iin & bit)
    return list(names)


def _link_ctl(ctl: int) -> dict[str, Any]:
    """Link control octet (clause 9.2.4.1.3): direction, primary, FCB/FCV or DFC, function."""
    prm = bool(ctl & 0x40)
    fn = ctl & 0x0F
    out = {"ctl": ctl, "dir": bool(ctl & 0x80), "prm": prm,
           "func": (LINK_PRIMARY if prm else LINK_SECONDARY).get(fn, f"unknown-0x{fn:02x}")}
    if prm:
        out["fcb"], out["fcv"] = bool(ctl & 0x20), bool(ctl & 0x10)
    else:
        out["dfc"] = bool(ctl & 0x10)
    return out


_LINK_CTL = tuple(_link_ctl(c) for c in range(256))   # every control octet decoded once; events get copies


def _ac(b: int) -> dict[str, int]:
    """Application control octet (clause 4.2.2.4)."""
    return {"fir": b >> 7, "fin": (b >> 6) & 1, "con": (b >> 5) & 1, "uns": (b >> 4) & 1, "seq": b & 0x0F}


# ---------------------------------------------------------------------------------------------------
# Object parsing


class ParseResult:
    """What the object parser learned from one fragment."""

    __slots__ = ("echo", "errors", "file_mode", "identity", "objects", "points", "raw")

    def __init__(self) -> None:
        self.objects: list[dict[str, Any]] = []
        self.points: list[dict[str, Any]] = []
        self.identity: dict[str, Any] = {}
        self.errors: list[tuple[str, str]] = []       # (weird name, reason)
        self.echo: dict[str, str] = {}                # command point ref -> status (response echoes)
        self.file_mode: str | None = None
        self.raw = b""                                # object bytes (SELECT/OPERATE comparison)


def parse_objects(b: bytes, off: int, fc: int, is_response: bool, outstation: int) -> ParseResult:
    """Parse every object header (and its data) of an application fragment from `off`.

    Never raises: a truncated or undecodable object ends the walk with an entry in `errors`.
    """
    res = ParseResult()
    res.raw = b[off:]
    n = len(b)
    headers_only = not is_response and fc in HEADERS_ONLY
    cto: int | None = None
    objects, points = res.objects, res.points
    while off < n:
        if off + 3 > n:
            res.errors.append(("truncated_object_header", f"{n - off} bytes left at offset {off}"))
            break
        g, v, q = b[off], b[off + 1], b[off + 2]
        off += 3
        pcode, rcode = (q >> 4) & 0x07, q & 0x0F
        od = OBJECTS.get((g, v))
        obj: dict[str, Any] = {"group": g, "variation": v, "qualifier": q, "prefix": pcode, "range": rcode,
                               "name": od.name if od else f"unknown-g{g}v{v}"}
        objects.append(obj)
        if q & 0x80:
            res.errors.append(("bad_qualifier", f"g{g}v{v}: reserved qualifier bit set (0x{q:02x})"))
            break
        rk = RANGE_KINDS.get(rcode)
        if rk is None or pcode == 7:
            res.errors.append(("bad_qualifier", f"g{g}v{v}: qualifier 0x{q:02x} is reserved"))
            break
        rsize, rkind = rk
        if off + rsize * (2 if rkind == "range" else 1) > n:
            res.errors.append(("truncated_object_header", f"g{g}v{v}: range field cut short"))
            break
        st = _UINT.get(rsize)
        if rkind == "range":
            start = st.unpack_from(b, off)[0]
            stop = st.unpack_from(b, off + rsize)[0]
            off += 2 * rsize
            obj["start"], obj["stop"] = start, stop
            if stop < start:
                res.errors.append(("bad_range", f"g{g}v{v}: stop {stop} < start {start}"))
                break
            count = stop - start + 1
            obj["count"] = count
        elif rkind == "addr":
            start = st.unpack_from(b, off)[0]
            off += rsize
            obj["address"] = start
            count = obj["count"] = 1
        elif rkind == "count":
            count = st.unpack_from(b, off)[0]
            off += rsize
            obj["count"] = count
            start = 0
        else:
            count, start = 0, 0
        if od is None:
            obj["unknown"] = True
        psize = PREFIX_SIZE[pcode]
        sized = pcode >= 4                 # object size prefix (clause 4.4.4.1.1)
        no_data = (rkind == "all" or (od is not None and od.kind == "none")
                   or (headers_only and not sized)
                   or (not is_response and fc in (FC_FREEZE_AT_TIME, FC_FREEZE_AT_TIME_NR)
                       and g != 50 and not sized))
        if no_data or count == 0:
            continue
        if od is None and not sized:
            res.errors.append(("unknown_object", f"g{g}v{v}: unknown object, its length is unknown"))
            break
        kind = od.kind if od is not None else "sized"
        if kind == "sized" and not sized:
            res.errors.append(("unknown_object_length", f"g{g}v{v}: qualifier 0x{q:02x} has no size prefix"))
            break
        # packed bits: ceil(count * bits / 8) octets, no prefixes (clause 4.4.4.1.2)
        if kind in ("bit", "dbit"):
            if psize:
                res.errors.append(("bad_qualifier", f"g{g}v{v}: packed objects with an index prefix"))
                break
            width = 1 if kind == "bit" else 2
            nbytes = (count * width + 7) // 8
            if off + nbytes > n:
                res.errors.append(("truncated_object", f"g{g}v{v}: {count} packed points need {nbytes} "
                                   f"bytes, {n - off} left"))
                break
            _packed(res, od, g, b, off, start, count, width, outstation, obj, is_response)
            off += nbytes
            continue
        per = psize + (od.size if kind in ("fix", "crob") else v if kind == "var" else 0)
        if kind in ("fix", "crob", "var") and not sized and off + per * count > n:
            res.errors.append(("truncated_object", f"g{g}v{v}: {count} objects of {per} bytes need "
                               f"{per * count}, {n - off} left"))
            break
        if kind == "fix" and not sized and od.ptype is not None:
            end = off + per * count        # in the fragment: checked just above
            _fixed_run(res, od, g, v, b, off, end, psize, start, outstation, obj, cto)
            off = end
            continue
        ok = True
        for i in range(count):
            if psize:
                if off + psize > n:
                    res.errors.append(("truncated_object", f"g{g}v{v}: prefix cut short"))
                    ok = False
                    break
                pval = _UINT[psize].unpack_from(b, off)[0]
                off += psize
            else:
                pval = start + i
            if sized:
                size, index = pval, None
            else:
                size, index = (od.size if kind in ("fix", "crob") else v if kind == "var" else -1), pval
            if kind == "attr":
                if off + 2 > n or off + 2 + b[off + 1] > n:
                    res.errors.append(("truncated_object", f"g0v{v}: attribute cut short"))
                    ok = False
                    break
                size = 2 + b[off + 1]
            if size < 0 or off + size > n:
                res.errors.append(("truncated_object", f"g{g}v{v}: object {i} needs {size} bytes, "
                                   f"{n - off} left"))
                ok = False
                break
            data = b[off:off + size]
            off += size
            if od is None:
                continue
            if kind == "fix" or kind == "crob":
                if len(data) < od.size:
                    res.errors.append(("truncated_object", f"g{g}v{v}: object size {size} < {od.size}"))
                    ok = False
                    break
                if kind == "crob":
                    _crob(res, od, g, v, data, index if index is not None else i, outstation, obj,
                          is_response)
                elif g == 51:
                    cto = _t48(od.st.unpack_from(data, 0), 0)
                    obj.setdefault("values", []).append(time_str(cto))
                else:
                    _fixed(res, od, g, v, od.st.unpack_from(data, 0), index if index is not None else i,
                           outstation, obj, cto)
            elif kind == "attr":
                _attribute(res, v, data, obj)
            elif kind == "var":
                obj.setdefault("values", []).append(hexstr(data))
                if od.ptype is None and g in (110, 111):
                    points.append({"ref": f"{outstation}:os:{index}", "value": hexstr(data)})
            elif g == 70:
                _file(res, v, data, obj)
            elif g == 120:
                _auth(v, data, obj)
            else:
                obj.setdefault("values", []).append(hexstr(data))
        if not ok:
            break
    return res


def _t48(vals: tuple, i: int) -> int:
    return vals[i] | (vals[i + 1] << 32)


def _packed(res: ParseResult, od: ObjDef | None, g: int, b: bytes, off: int, start: int, count: int,
            width: int, outstation: int, obj: dict[str, Any], is_response: bool) -> None:
    """Packed single-bit (g1v1, g10v1, g80v1, g12v3) and double-bit (g3v1) points (clause 11.9.2)."""
    vals = []
    for i in range(count):
        bit = i * width
        x = (b[off + (bit >> 3)] >> (bit & 7)) & (1 if width == 1 else 3)
        vals.append(x)
    if g == 80:
        obj["values"] = [{"index": start + i, "name": IIN_INDEX.get(start + i, f"bit{start + i}"),
                          "value": bool(x)} for i, x in enumerate(vals)]
        return
    if od is None or od.ptype is None:
        obj["values"] = vals
        return
    pt, pts = od.ptype, res.points
    if width == 1:
        for i, x in enumerate(vals):
            pts.append({"ref": f"{outstation}:{pt}:{start + i}", "value": bool(x)})
    else:
        for i, x in enumerate(vals):
            pts.append({"ref": f"{outstation}:{pt}:{start + i}", "value": DBIT_STATES[x]})


_REFS: dict[tuple[int, str, int, int], list[str]] = {}   # (outstation, type, start, count) -> refs
REFS_MAX = 4096


def _range_refs(outstation: int, ptype: str, start: int, count: int) -> list[str]:
    """Point refs of a range of indexes: masters poll the same ranges of the same outstations."""
    key = (outstation, ptype, start, count)
    refs = _REFS.get(key)
    if refs is None:
        if len(_REFS) >= REFS_MAX:
            _REFS.clear()
        refs = _REFS[key] = [f"{outstation}:{ptype}:{i}" for i in range(start, start + count)]
    return refs


def _fixed_run(res: ParseResult, od: ObjDef, g: int, v: int, b: bytes, off: int, end: int, psize: int,
               start: int, outstation: int, obj: dict[str, Any], cto: int | None) -> None:
    """Consecutive fixed-layout point objects b[off:end] of one header, without size prefixes.

    Same points as `_fixed` object by object, decoded in one iter_unpack pass: the index is the range
    start + i, or the index prefix of each object (clause 4.4.4.1.1).
    """
    span = b[off:end]
    mode, pts = od.fast, res.points
    if mode is None:
        rows: Any = (enumerate(od.st.iter_unpack(span), start) if not psize
                     else ((r[0], r[1:]) for r in od.prefixed[psize].iter_unpack(span)))
        for i, vals in rows:
            _fixed(res, od, g, v, vals, i, outstation, obj, cto)
        return
    ptype = od.ptype or ""
    if not psize:
        refs = _range_refs(outstation, ptype, start, len(span) // od.size)
        rows = zip(refs, od.st.iter_unpack(span), strict=True)
    else:
        pre = f"{outstation}:{ptype}:"
        rows = ((f"{pre}{r[0]}", r[1:]) for r in od.prefixed[psize].iter_unpack(span))
    flt, event = od.flt, od.event
    if mode == "fv":
        q = QUALITY[od.fam or ""]
        if not flt and not event:
            pts += [{"ref": ref, "value": val, "quality": list(q[fl])} for ref, (fl, val) in rows]
            return
        for ref, (fl, val) in rows:
            p = {"ref": ref, "value": _num(val) if flt else val, "quality": list(q[fl])}
            if event:
                p["event"] = True
            pts.append(p)
    elif mode == "v":
        for ref, (val,) in rows:
            p = {"ref": ref, "value": _num(val) if flt else val}
            if event:
                p["event"] = True
            pts.append(p)
    else:                                       # "f": the state is in the flags octet
        q = QUALITY[od.fam or ""]
        dbin = od.fam == "dbin"
        for ref, (fl,) in rows:
            p = {"ref": ref, "value": DBIT_STATES[fl >> 6] if dbin else bool(fl & 0x80),
                 "quality": list(q[fl])}
            if event:
                p["event"] = True
            pts.append(p)


def _fixed(res: ParseResult, od: ObjDef, g: int, v: int, vals: tuple, index: int, outstation: int,
           obj: dict[str, Any], cto: int | None) -> None:
    """A fixed-layout object (its unpacked fields): a point (value, quality, time) or a time value."""
    if od.ptype is None:                       # g50, g52, g81: no point, keep the values on the header
        out: list[Any] = []
        i = 0
        for c in od.layout:
            if c == "t48":
                out.append(time_str(_t48(vals, i)))
                i += 2
            else:
                out.append(vals[i])
                i += 1
        obj.setdefault("values", []).append(out[0] if len(out) == 1 else out)
        return
    p: dict[str, Any] = {"ref": f"{outstation}:{od.ptype}:{index}"}
    value: Any = None
    flags = status = None
    t = None
    i = 0
    for c in od.layout:
        if c == "F":
            flags = vals[i]
        elif c == "S":
            status = vals[i]
        elif c == "t48":
            t = _t48(vals, i)
            i += 1
        elif c == "t16":
            t = None if cto is None else cto + vals[i]
        elif c in ("f32", "f64"):
            value = _num(vals[i])
        else:
            value = vals[i]
        i += 1
    fam = od.fam
    if value is None:                          # state carried in the flags octet
        if fam == "dbin":
            value = DBIT_STATES[(flags or 0) >> 6]
        elif status is not None and flags is None:       # g13: commanded state in bit 7
            value = bool(status & 0x80)
            status &= 0x7F
        else:
            value = bool((flags or 0) & 0x80)
    p["value"] = value
    if flags is not None and fam is not None:
        p["quality"] = list(QUALITY[fam][flags])
    if t is not None:
        p["time"] = time_str(t)
    if od.event:
        p["event"] = True
    if g == 41:
        p["command"] = True
        if status:
            p["status"] = CONTROL_STATUS.get(status, f"unknown-{status}")
        res.echo[p["ref"]] = CONTROL_STATUS.get(status or 0, f"unknown-{status}")
    elif status is not None:
        p["status"] = CONTROL_STATUS.get(status & 0x7F, f"unknown-{status & 0x7F}")
    res.points.append(p)


def _crob(res: ParseResult, od: ObjDef, g: int, v: int, data: bytes, index: int, outstation: int,
          obj: dict[str, Any], is_response: bool) -> None:
    """Control Relay Output Block g12v1 / Pattern Control Block g12v2 (clause 11.9.4)."""
    code, count, on, off, status = _CROB.unpack_from(data, 0)
    op, tcc = code & 0x0F, code >> 6
    st = status & 0x7F
    c = {"index": index, "code": code, "op": CROB_OP.get(op, f"unknown-{op}"), "tcc": CROB_TCC[tcc],
         "clear": bool(code & 0x20), "queue": bool(code & 0x10), "count": count, "on_time": on,
         "off_time": off, "status": CONTROL_STATUS.get(st, f"unknown-{st}")}
    obj.setdefault("controls", []).append(c)
    if v != 1:
        return
    # The commanded state: the trip/close code wins, else the operation (clause 11.9.4.1).
    value: bool | None
    if tcc == 1:
        value = True
    elif tcc == 2:
        value = False
    else:
        value = {1: True, 3: True, 2: False, 4: False}.get(op)
    ref = f"{outstation}:bo:{index}"
    res.echo[ref] = c["status"]
    res.points.append({"ref": ref, "value": value, "command": True, "op": c["op"], "tcc": c["tcc"],
                       "count": count, "on_time": on, "off_time": off, "status": c["status"]})


def _attribute(res: ParseResult, v: int, data: bytes, obj: dict[str, Any]) -> None:
    """g0 device attribute: data type, length, value (clause 11.9.1) -> identity where it is one."""
    dtype, ln = data[0], data[1]
    raw = data[2:2 + ln]
    val: Any
    if dtype == 1:
        val = raw.decode("utf-8", "replace").rstrip("\x00")
    elif dtype in (2, 3) and ln in (1, 2, 4, 8):
        val = int.from_bytes(raw, "little", signed=dtype == 3)
    elif dtype == 4 and ln in (4, 8):
        val = _num(struct.unpack("<f" if ln == 4 else "<d", raw)[0])
    else:
        val = hexstr(raw)
    obj.setdefault("attributes", []).append(
        {"variation": v, "type": ATTRIBUTE_TYPES.get(dtype, f"unknown-{dtype}"), "value": val})
    key = ATTRIBUTE_IDENTITY.get(v)
    if key is not None and isinstance(val, str) and dtype == 1:
        res.identity[key] = val


def _file(res: ParseResult, v: int, data: bytes, obj: dict[str, Any]) -> None:
    """g70 file-transfer objects (clause 11.9.9): names, modes, handles, blocks and status."""
    f: dict[str, Any] = {}
    n = len(data)
    try:
        if v == 3 and n >= 26:            # file command
            noff, nsize = struct.unpack_from("<HH", data, 0)
            perms, _auth, size, mode, maxblk, req = struct.unpack_from("<HIIHHH", data, 10)
            f.update(name=data[noff:noff + nsize].decode("latin-1"),
                     mode=FILE_MODES.get(mode, f"unknown-{mode}"), size=size, permissions=perms,
                     max_block=maxblk, request_id=req)
            res.file_mode = f["mode"]
        elif v == 4 and n >= 13:          # file command status
            handle, size, maxblk, req, status = struct.unpack_from("<IIHHB", data, 0)
            f.update(handle=handle, size=size, max_block=maxblk, request_id=req,
                     status=FILE_STATUS.get(status, f"unknown-{status}"))
        elif v == 5 and n >= 8:           # file transport
            handle, block = struct.unpack_from("<II", data, 0)
            f.update(handle=handle, block=block & 0x7FFFFFFF, last=bool(block >> 31), data_len=n - 8)
        elif v == 6 and n >= 9:           # file transport status
            handle, block, status = struct.unpack_from("<IIB", data, 0)
            f.update(handle=handle, block=block & 0x7FFFFFFF, last=bool(block >> 31),
                     status=FILE_STATUS.get(status, f"unknown-{status}"))
        elif v == 7 and n >= 20:          # file descriptor (directory entry)
            noff, nsize, ftype, size = struct.unpack_from("<HHHI", data, 0)
            perms, req = struct.unpack_from("<HH", data, 16)
            f.update(name=data[noff:noff + nsize].decode("latin-1"), type=ftype, size=size, permissions=perms,
                     request_id=req)
        elif v == 8:                      # file specification string
            f.update(name=data.decode("latin-1"))
        elif v == 2 and n >= 12:          # authentication (credentials are not kept)
            f.update(key=struct.unpack_from("<I", data, 8)[0])
        else:
            f.update(data_len=n)
    except struct.error:
        f.update(data_len=n)
    obj.setdefault("files", []).append(f)


def _auth(v: int, data: bytes, obj: dict[str, Any]) -> None:
    """g120 Secure Authentication objects (clause 7.6): sequence, user and error code only."""
    a: dict[str, Any] = {"size": len(data)}
    if v in (1, 2, 3, 5, 7) and len(data) >= 6:
        a["csq"], a["user"] = struct.unpack_from("<IH", data, 0)
    elif v == 4 and len(data) >= 2:
        a["user"] = struct.unpack_from("<H", data, 0)[0]
    if v == 1 and len(data) >= 8:
        a["reason"] = data[7]
    if v == 7 and len(data) >= 9:
        a["error"] = AUTH_ERRORS.get(data[8], f"unknown-{data[8]}")
    obj.setdefault("auth", []).append(a)


# ---------------------------------------------------------------------------------------------------
# Analyzers


class _Frag:
    """One application fragment in transport reassembly."""

    __slots__ = ("data", "frames", "seq", "ts")

    def __init__(self, seq: int, data: bytes, frames: list[int], ts: float) -> None:
        self.seq, self.data, self.frames, self.ts = seq, bytearray(data), list(frames), ts


class _Msg:
    """A parsed application fragment."""

    __slots__ = ("ac", "dst", "fc", "frames", "iin", "is_orig", "link", "res", "src", "ts")

    def __init__(self, ac: int, fc: int, frames: list[int], iin: int | None, is_orig: bool, link: int,
                 res: ParseResult, src: int, dst: int, ts: float) -> None:
        self.ac, self.fc, self.frames, self.iin, self.is_orig = ac, fc, frames, iin, is_orig
        self.link, self.res, self.src, self.dst, self.ts = link, res, src, dst, ts


def _controls(objects: list[dict[str, Any]]) -> list[tuple[int, int, int]]:
    """The commands of a fragment (index, control code, count): what a response echoes back."""
    return [(c["index"], c["code"], c["count"]) for o in objects for c in o.get("controls", ())]


def _pdu_len(buf: Any, off: int) -> int | None:
    """Length of the link frame at `off` (None until its length octet is in).

    Bytes that cannot start a frame are returned as one run up to the next 0x05 0x64, so the stream
    resynchronises on the next frame; `TcpAnalyzer.data` reports the run as weird.
    """
    n = len(buf) - off
    if n < 1:
        return None
    if buf[off] == 0x05 and (n < 2 or buf[off + 1] == 0x64):
        if n < 3:
            return None
        ln = buf[off + 2]
        if ln >= 5:
            d = ln - 5
            return 10 + d + 2 * ((d + 15) >> 4)
    i = buf.find(b"\x05\x64", off + 1)
    if i < 0:
        i = len(buf) - 1 if buf[-1] == 0x05 and len(buf) - 1 > off else len(buf)
    return i - off


def _is_frame_start(fr: bytes) -> bool:
    return len(fr) >= 10 and fr[0] == 0x05 and fr[1] == 0x64 and fr[2] >= 5


def probe(data: bytes, is_orig: bool) -> bool:
    """Payload shape: start octets 0x05 0x64, a length of at least 5 and a valid header CRC."""
    return (len(data) >= 10 and data[0] == 0x05 and data[1] == 0x64 and data[2] >= 5
            and _crc(data[:8]) == _U16.unpack_from(data, 8)[0])


class Dnp3Analyzer(Analyzer):
    """Shared link/transport/application logic of the TCP and UDP analyzers."""

    PROTOCOL = PROTOCOL
    __slots__ = ("bufs", "index", "multi", "next_expire", "pending", "selects", "serial", "tp")

    def __init__(self, conn: Any) -> None:
        super().__init__(conn)
        self.bufs = (StreamBuffer(), StreamBuffer())          # [responder side, originator side]
        self.tp: dict[tuple[bool, int, int], _Frag] = {}
        self.pending = Pending(timeout=REQUEST_TIMEOUT)
        self.index: dict[tuple[int, int, int], list[int]] = {}   # (master, outstation, seq) -> serials
        self.serial = 0
        self.next_expire = 0.0
        self.multi: dict[tuple[int, int], dict[str, Any]] = {}  # multi-fragment responses in progress
        self.selects: dict[tuple[int, int], dict[str, Any]] = {}

    # ----------------------------------------------------------------------------- link layer
    def _weird(self, name: str, reason: str, ts: float, frames: list[int], is_orig: bool) -> None:
        self.conn.weird(PROTOCOL, name, reason, ts, frames, is_orig)

    def link(self, is_orig: bool, fr: bytes, ts: float, frames: list[int]) -> None:
        """One complete link frame (clause 9.2): check CRCs, strip them, pass user data up."""
        crc = _crc
        if crc(fr[:8]) != fr[8] | fr[9] << 8:
            return self._weird("bad_header_crc", f"link header CRC 0x{_U16.unpack_from(fr, 8)[0]:04x} "
                               f"!= 0x{crc16(fr[:8]):04x}", ts, frames, is_orig)
        ctl, dst, src = _LINK_HDR.unpack_from(fr, 3)
        blocks = []
        off, end = 10, len(fr)
        last = end - 2
        while off < end:
            stop = off + 16 if off + 16 < last else last
            blk = fr[off:stop]
            if crc(blk) != fr[stop] | fr[stop + 1] << 8:
                return self._weird("bad_data_crc", f"user data block CRC wrong (frame {src}->{dst})", ts,
                                   frames, is_orig)
            blocks.append(blk)
            off = stop + 2
        user = b"".join(blocks)
        prm, fn = ctl & 0x40, ctl & 0x0F
        if prm and fn in (3, 4):
            if not user:
                return self._weird("empty_user_data", "user data frame without a transport header", ts,
                                   frames, is_orig)
            return self.transport(is_orig, user, ts, frames, src, dst, ctl)
        # link-only frame (link status, reset, ack ...): recorded on its own
        name = (LINK_PRIMARY if prm else LINK_SECONDARY).get(fn, f"unknown-0x{fn:02x}")
        d = bool(ctl & 0x80)
        fields: dict[str, Any] = {
            "layer": "link", "link_function": name, "link": self._link_fields(ctl),
            "src_addr": src, "dst_addr": dst,
            "master": src if d else dst, "outstation": dst if d else src, "status": "one_way",
        }
        self.conn.emit(PROTOCOL, "session", fields, ts, frames, is_orig)
        return None

    @staticmethod
    def _link_fields(ctl: int) -> dict[str, Any]:
        return _LINK_CTL[ctl].copy()

    # ----------------------------------------------------------------------------- transport layer
    def transport(self, is_orig: bool, seg: bytes, ts: float, frames: list[int], src: int, dst: int,
                  ctl: int) -> None:
        """Transport function (clause 8.2): reassemble FIR..FIN segments into one fragment."""
        th = seg[0]
        fin, fir, seq = th & 0x80, th & 0x40, th & 0x3F
        key = (is_orig, src, dst)
        st = self.tp.get(key)
        if fin and fir and st is None:      # a whole fragment in one segment: nothing to reassemble
            self.application(is_orig, seg[1:], ts, list(frames), src, dst, ctl)
            return None
        if fir:
            if st is not None:
                self._weird("transport_fragment_discarded", f"new FIR (seq {seq}) before FIN of seq "
                            f"{st.seq}", st.ts, st.frames, is_orig)
            st = self.tp[key] = _Frag(seq, seg[1:], frames, ts)
        else:
            if st is None:
                return self._weird("transport_out_of_sequence", f"segment seq {seq} without FIR", ts, frames,
                                   is_orig)
            if seq == st.seq:
                return self._weird("transport_duplicate", f"segment seq {seq} repeated", ts, frames, is_orig)
            if seq != (st.seq + 1) & 0x3F:
                del self.tp[key]
                return self._weird("transport_out_of_sequence", f"segment seq {seq} after {st.seq}", ts,
                                   st.frames + [f for f in frames if f not in st.frames], is_orig)
            st.seq = seq
            st.data += seg[1:]
            st.frames.extend(f for f in frames if f not in st.frames)
            if len(st.data) > MAX_FRAGMENT:
                del self.tp[key]
                return self._weird("fragment_too_long", f"over {MAX_FRAGMENT} bytes", st.ts, st.frames,
                                   is_orig)
        if fin:
            del self.tp[key]
            self.application(is_orig, bytes(st.data), st.ts, st.frames, src, dst, ctl)
        return None

    # ----------------------------------------------------------------------------- application layer
    def application(self, is_orig: bool, b: bytes, ts: float, frames: list[int], src: int, dst: int,
                    ctl: int) -> None:
        """One application fragment (clause 4.2): header, objects, then pairing."""
        if len(b) < 2:
            return self._weird("truncated_application_header", f"{len(b)} bytes", ts, frames, is_orig)
        ac, fc = b[0], b[1]
        is_resp = fc in RESPONSE_CODES
        if is_resp and len(b) < 4:
            return self._weird("truncated_application_header", "response without IIN", ts, frames, is_orig)
        outstation = src if is_resp else dst
        res = parse_objects(b, 4 if is_resp else 2, fc, is_resp, outstation)
        for name, reason in res.errors:
            self._weird(name, f"{func_name(fc)}: {reason}", ts, frames, is_orig)
        msg = _Msg(ac, fc, frames, (b[2] << 8 | b[3]) if is_resp else None, is_orig, ctl, res, src, dst, ts)
        if ts >= self.next_expire:          # (the test of pending_expire, without the call)
            self.pending_expire(ts)
        if is_resp:
            self._response(msg)
        else:
            self._request(msg)
        return None

    def _request(self, m: _Msg) -> None:
        master, outstation, seq = m.src, m.dst, m.ac & 0x0F
        rec = {"msg": m}
        if m.fc == FC_OPERATE:
            self._check_select(m, rec)
        elif m.fc == FC_SELECT:
            self.selects[(master, outstation)] = {"ts": m.ts, "seq": seq, "raw": m.res.raw,
                                                  "frames": list(m.frames)}
        key = (master, outstation, seq)
        if m.fc == FC_AUTH_REQ:
            # Secure Authentication reply to a challenge (clause 7.5.2.2): it belongs to the challenged
            # request, which keeps waiting for its real response under the same sequence number.
            for old in self._waiting(key):
                if "challenge" in old:
                    old["auth"].append(m)
                    return
        if m.fc in NO_RESPONSE or outstation >= 0xFFFD:
            return self._emit(rec, None, "one_way")
        # Masters that pipeline requests reuse sequence numbers before the answers come back
        # (dnp3_example.pcap): several requests may wait under one key, answered first-in first-out.
        self.serial += 1
        rec["key"] = (*key, self.serial)
        self.index.setdefault(key, []).append(self.serial)
        for r in self.pending.add(rec["key"], m.ts, rec):
            self._forget(r)
            self._emit(r, None, "no_response")

    def _waiting(self, key: tuple[int, int, int]) -> list[dict[str, Any]]:
        """Requests waiting under (master, outstation, seq), oldest first."""
        out = []
        for s in self.index.get(key, ()):
            item = self.pending.items.get((*key, s))
            if item is not None:
                out.append(item[1])
        return out

    def _forget(self, rec: dict[str, Any]) -> None:
        key, s = rec["key"][:3], rec["key"][3]
        lst = self.index.get(key)
        if lst is not None:
            if s in lst:
                lst.remove(s)
            if not lst:
                del self.index[key]

    def _take(self, key: tuple[int, int, int], resp: _Msg) -> dict[str, Any] | None:
        """The request a response answers: the oldest waiting one, or the one whose commands it echoes."""
        cands = self._waiting(key)
        if not cands:
            return None
        rec = cands[0]
        sig = _controls(resp.res.objects)
        if sig:
            rec = next((c for c in cands if _controls(c["msg"].res.objects) == sig), rec)
        self.pending.pop(rec["key"])
        self._forget(rec)
        return rec

    def _response(self, m: _Msg) -> None:
        outstation, master, seq = m.src, m.dst, m.ac & 0x0F
        fir, fin = m.ac & 0x80, m.ac & 0x40
        if m.fc == FC_UNSOLICITED:
            return self._emit(None, m, "one_way")
        chan = (master, outstation)
        if not fir:
            cur = self.multi.get(chan)
            if cur is None:
                return self._emit(None, m, "no_request")
            cur["more"].append(m)
            if fin:
                del self.multi[chan]
                self._emit(cur["req"], cur["first"], cur["status"], cur["more"])
            return None
        key = (master, outstation, seq)
        if m.fc == FC_AUTH_RESP:
            for rec in self._waiting(key):
                if rec["msg"].fc != FC_AUTH_REQ and "challenge" not in rec:
                    rec["challenge"] = m
                    rec["auth"] = []
                    return None
        rec = self._take(key, m)
        status = "paired" if rec is not None else "no_request"
        if chan in self.multi:          # previous multi-fragment response never finished
            cur = self.multi.pop(chan)
            self._emit(cur["req"], cur["first"], cur["status"], cur["more"])
        if not fin:
            self.multi[chan] = {"req": rec, "first": m, "status": status, "more": []}
            return None
        return self._emit(rec, m, status)

    def _check_select(self, m: _Msg, rec: dict[str, Any]) -> None:
        """OPERATE must follow a SELECT with identical objects (clause 4.4.3, select-before-operate)."""
        sel = self.selects.pop((m.src, m.dst), None)
        ok = sel is not None and sel["raw"] == m.res.raw and m.ts - sel["ts"] <= SELECT_TIMEOUT
        rec["selected"] = ok
        if sel is not None and ok:
            rec["select_frames"] = sel["frames"]
            rec["select_seq_ok"] = (sel["seq"] + 1) & 0x0F == m.ac & 0x0F
        else:
            why = ("no SELECT before it" if sel is None else "objects differ from the SELECT"
                   if sel["raw"] != m.res.raw else "SELECT timed out")
            self._weird("operate_without_select", why, m.ts, m.frames, m.is_orig)

    def _emit(self, rec: dict[str, Any] | None, resp: _Msg | None, status: str,
              more: list[_Msg] | None = None) -> None:
        """Build and emit the one `dnp3` event of a transaction."""
        req: _Msg | None = rec["msg"] if rec else None
        f: dict[str, Any] = {}
        frames: list[int] = []
        points: list[dict[str, Any]] = []
        identity: dict[str, Any] = {}
        if req is not None:
            fn = FUNCTIONS.get(req.fc)
            name, action = fn if fn is not None else (func_name(req.fc), "other")
            writes_file = (req.fc == FC_OPEN_FILE and req.res.file_mode in ("WRITE", "APPEND")) or (
                req.fc == FC_WRITE and any(o["group"] == 70 for o in req.res.objects))
            if writes_file:
                action = "program"
            f.update(function=name, func_code=req.fc, master=req.src, outstation=req.dst,
                     seq=req.ac & 0x0F, request_ac=_ac(req.ac), request_link=self._link_fields(req.link),
                     objects=req.res.objects)
            frames += req.frames
            points += req.res.points
            if "selected" in rec:
                f["selected"] = rec["selected"]
                if "select_frames" in rec:
                    f["select_frames"] = rec["select_frames"]
                    f["select_seq_ok"] = rec["select_seq_ok"]
            if "challenge" in rec:
                ch: _Msg = rec["challenge"]
                f["auth_challenge"] = {
                    "response_ac": _ac(ch.ac), "iin": ch.iin, "objects": ch.res.objects,
                    "replies": [{"request_ac": _ac(a.ac), "objects": a.res.objects} for a in rec["auth"]]}
                frames += ch.frames
                for a in rec.get("auth", []):
                    frames += a.frames
            if req.fc == FC_SELECT and status == "paired":
                sel = self.selects.get((req.src, req.dst))
                if sel is not None and sel["frames"] == req.frames and resp is not None:
                    sel["frames"] = sorted(set(sel["frames"] + resp.frames))
        else:
            action = "read" if resp is not None and resp.fc == FC_UNSOLICITED else "other"
        if resp is not None:
            msgs = [resp, *(more or [])]
            rname = func_name(resp.fc)
            if req is None:
                f.update(master=resp.dst, outstation=resp.src, seq=resp.ac & 0x0F)
                if resp.fc == FC_AUTH_RESP:
                    action = "session"
            iin = 0
            robjs: list[dict[str, Any]] = []
            echo: dict[str, str] = {}
            for r in msgs:
                iin |= r.iin
                robjs += r.res.objects
                frames += r.frames
                identity.update(r.res.identity)
                echo.update(r.res.echo)
            f.update(response_function=rname, response_code=resp.fc, response_ac=_ac(resp.ac),
                     response_link=self._link_fields(resp.link), iin=iin, iin_flags=iin_flags(iin),
                     response_objects=robjs)
            if more:      # a multi-fragment response: each fragment's header (clause 4.2.2.4)
                f["fragments"] = [{"ac": _ac(r.ac), "iin": r.iin, "objects": len(r.res.objects)}
                                  for r in msgs]
            if req is not None and req.fc in (3, 4, 5):
                # control echoes: the outstation's status of each command (clause 4.4.3)
                for p in points:
                    if p.get("command") and p["ref"] in echo:
                        p["status"] = echo[p["ref"]]
            else:
                for r in msgs:
                    points += r.res.points
            if req is not None:
                f["latency"] = round(resp.ts - req.ts, 6)
        f["status"] = status
        if points:
            f["points"] = points
        if identity:
            f["identity"] = identity
            f["identity_of"] = "dst" if req is not None else "src"
        first = req if req is not None else resp
        assert first is not None
        self.conn.emit(PROTOCOL, action, f, first.ts, sorted(set(frames)), first.is_orig)

    def pending_expire(self, now: float) -> None:
        """Requests unanswered for REQUEST_TIMEOUT become `no_response` (checked once a second)."""
        if now < self.next_expire:
            return
        self.next_expire = now + 1.0
        for r in self.pending.expire(now):
            self._forget(r)
            self._emit(r, None, "no_response")

    def gap(self, is_orig: bool, size: int, ts: float) -> None:
        """Bytes lost in one TCP direction: the partial link frame and fragments of that side go."""
        self.bufs[is_orig].clear()
        for k in [k for k in self.tp if k[0] == is_orig]:
            del self.tp[k]

    def close(self, ts: float) -> None:
        for is_orig in (True, False):
            buf = self.bufs[is_orig]
            if len(buf):
                self._weird("truncated_link_frame", f"{len(buf)} bytes of an unfinished link frame at close",
                            ts, buf.pending_frames(), is_orig)
                buf.clear()
        for k, st in list(self.tp.items()):
            self._weird("transport_incomplete", f"fragment without FIN at close (seq {st.seq})", st.ts,
                        st.frames, k[0])
        self.tp.clear()
        for cur in list(self.multi.values()):
            self._emit(cur["req"], cur["first"], cur["status"], cur["more"])
        self.multi.clear()
        self.index.clear()
        for r in self.pending.drain():
            self._emit(r, None, "no_response")


class TcpAnalyzer(Dnp3Analyzer):
    """DNP3 over TCP (IEEE 1815 Annex E): link frames in a byte stream."""

    __slots__ = ()

    def data(self, is_orig: bool, data: bytes, ts: float, frames: int | list[int]) -> None:
        for fr, fl, t in self.bufs[is_orig].feed(data, ts, frames, _pdu_len):
            if fr is None or len(fr) < 10 or fr[0] != 0x05 or fr[1] != 0x64 or fr[2] < 5:   # _is_frame_start
                n = "over 1 MiB" if fr is None else len(fr)
                self._weird("bad_link_start", f"{n} bytes that do not start a DNP3 link frame skipped", t, fl,
                            is_orig)
            else:
                self.link(is_orig, fr, t, fl)


class UdpAnalyzer(Dnp3Analyzer):
    """DNP3 over UDP (IEEE 1815 Annex E): whole link frames in each datagram."""

    __slots__ = ()

    def data(self, is_orig: bool, data: bytes, ts: float, frames: int | list[int]) -> None:
        fl = [frames] if isinstance(frames, int) else list(frames)
        off, n = 0, len(data)
        while off < n:
            size = _pdu_len(data, off)
            if size is None or off + size > n or not _is_frame_start(data[off:off + 10]):
                name = "truncated_link_frame" if data[off:off + 2] == b"\x05\x64" else "bad_link_start"
                self._weird(name, f"{n - off} bytes at offset {off} are not a whole DNP3 link frame", ts, fl,
                            is_orig)
                return
            self.link(is_orig, data[off:off + size], ts, fl)
            off += size
