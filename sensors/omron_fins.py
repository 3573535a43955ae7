"""Omron FINS over UDP/9600 and FINS/TCP/9600.

References: Omron W342-E1 "FINS Commands Reference Manual" (CS/CJ series): section 3 (FINS frame:
ICF, RSV, GCT, DNA/DA1/DA2, SNA/SA1/SA2, SID, MRC/SRC, MRES/SRES), section 5-1 (command list),
5-2 (memory area designations), 8-3 (end codes); Omron W421 (CJ1W-ETN21) section 7 for the FINS/TCP
header ("FINS" magic, length, command, error code; node address data send).

One event (kind "omron_fins") per command/response pair, paired by (SID, command code, the
command's source address); unmatched commands/responses are flagged with `status`.
"""

from __future__ import annotations

import struct
from typing import Any

from sensors.base import Analyzer, Frames, Pending, StreamBuffer

PROTOCOL = "omron_fins"
UDP_PORTS = (9600,)
TCP_PORTS = (9600,)
ROLES = ("client", "server")

FINS_HDR = 10                 # ICF RSV GCT DNA DA1 DA2 SNA SA1 SA2 SID (W342 section 3-1)
TCP_HDR = 16                  # magic, length, command, error code (W421 section 7-4)
TCP_MAGIC = b"FINS"
MAX_POINTS = 512              # points per event; more are counted in points_truncated

_H = struct.Struct(">H")
_I = struct.Struct(">I")
_TCP = struct.Struct(">4sIII")

# FINS/TCP header commands (W421 7-4-1)
TCP_COMMANDS = {
    0: "NODE_ADDRESS_SEND_CLIENT", 1: "NODE_ADDRESS_SEND_SERVER", 2: "FRAME_SEND",
    3: "FRAME_SEND_ERROR", 6: "CONNECTION_CONFIRMATION",
}
# FINS/TCP error codes (W421 7-4-1)
TCP_ERRORS = {
    0: "NORMAL", 1: "HEADER_NOT_FINS", 2: "DATA_TOO_LONG", 3: "COMMAND_NOT_SUPPORTED",
    0x20: "ALL_CONNECTIONS_IN_USE", 0x21: "NODE_ALREADY_CONNECTED", 0x22: "NODE_ADDRESS_PROTECTED",
    0x23: "CLIENT_NODE_OUT_OF_RANGE", 0x24: "SAME_NODE_ADDRESS_IN_USE", 0x25: "ALL_NODE_ADDRESSES_IN_USE",
}

# Command code (MRC<<8 | SRC) -> (name, action). W342 section 5-1.
COMMANDS: dict[int, tuple[str, str]] = {
    0x0101: ("MEMORY_AREA_READ", "read"),
    0x0102: ("MEMORY_AREA_WRITE", "write"),
    0x0103: ("MEMORY_AREA_FILL", "write"),
    0x0104: ("MULTIPLE_MEMORY_AREA_READ", "read"),
    0x0105: ("MEMORY_AREA_TRANSFER", "write"),
    0x0201: ("PARAMETER_AREA_READ", "read"),
    0x0202: ("PARAMETER_AREA_WRITE", "write"),
    0x0203: ("PARAMETER_AREA_CLEAR", "write"),
    0x0220: ("DATA_LINK_TABLE_READ", "read"),
    0x0221: ("DATA_LINK_TABLE_WRITE", "write"),
    0x0304: ("PROGRAM_AREA_PROTECT", "program"),
    0x0305: ("PROGRAM_AREA_PROTECT_CLEAR", "program"),
    0x0306: ("PROGRAM_AREA_READ", "program"),
    0x0307: ("PROGRAM_AREA_WRITE", "program"),
    0x0308: ("PROGRAM_AREA_CLEAR", "program"),
    0x0401: ("RUN", "control"),
    0x0402: ("STOP", "control"),
    0x0501: ("CONTROLLER_DATA_READ", "discover"),
    0x0502: ("CONNECTION_DATA_READ", "discover"),
    0x0601: ("CONTROLLER_STATUS_READ", "read"),
    0x0602: ("NETWORK_STATUS_READ", "read"),
    0x0603: ("DATA_LINK_STATUS_READ", "read"),
    0x0620: ("CYCLE_TIME_READ", "read"),
    0x0701: ("CLOCK_READ", "read"),
    0x0702: ("CLOCK_WRITE", "write"),
    0x0801: ("LOOPBACK_TEST", "diagnose"),
    0x0802: ("BROADCAST_TEST_RESULTS_READ", "diagnose"),
    0x0803: ("BROADCAST_TEST_DATA_SEND", "diagnose"),
    0x0920: ("MESSAGE_READ_CLEAR_FAL_READ", "read"),
    0x0C01: ("ACCESS_RIGHT_ACQUIRE", "session"),
    0x0C02: ("ACCESS_RIGHT_FORCED_ACQUIRE", "session"),
    0x0C03: ("ACCESS_RIGHT_RELEASE", "session"),
    0x2101: ("ERROR_CLEAR", "control"),
    0x2102: ("ERROR_LOG_READ", "read"),
    0x2103: ("ERROR_LOG_CLEAR", "write"),
    0x2140: ("FINS_WRITE_ACCESS_LOG_READ", "read"),
    0x2141: ("FINS_WRITE_ACCESS_LOG_CLEAR", "write"),
    0x2201: ("FILE_NAME_READ", "read"),
    0x2202: ("SINGLE_FILE_READ", "read"),
    0x2203: ("SINGLE_FILE_WRITE", "write"),
    0x2204: ("FILE_MEMORY_FORMAT", "write"),
    0x2205: ("FILE_DELETE", "write"),
    0x2206: ("VOLUME_LABEL_CREATE_DELETE", "write"),
    0x2207: ("FILE_COPY", "write"),
    0x2208: ("FILE_NAME_CHANGE", "write"),
    0x2209: ("FILE_DATA_CHECK", "read"),
    0x220A: ("MEMORY_AREA_FILE_TRANSFER", "write"),
    0x220B: ("PARAMETER_AREA_FILE_TRANSFER", "write"),
    0x220C: ("PROGRAM_AREA_FILE_TRANSFER", "program"),
    0x220F: ("FILE_MEMORY_INDEX_READ", "read"),
    0x2210: ("FILE_MEMORY_READ", "read"),
    0x2211: ("FILE_MEMORY_WRITE", "write"),
    0x2215: ("CREATE_DELETE_DIRECTORY", "write"),
    0x2220: ("MEMORY_CASSETTE_TRANSFER", "write"),
    0x2301: ("FORCED_SET_RESET", "control"),
    0x2302: ("FORCED_SET_RESET_CANCEL", "control"),
    0x230A: ("MULTIPLE_FORCED_STATUS_READ", "read"),
    0x2601: ("NAME_SET", "write"),
    0x2602: ("NAME_DELETE", "write"),
    0x2603: ("NAME_READ", "read"),
}

# Memory area code -> (area, "bit"|"word", data octets per item). W342 5-2-2 (CS/CJ) and the CV-mode
# codes of W227 5-2-1 where they do not clash (CV 0x00/0x80 CIO, 0x90-0x97 EM banks ...).
AREAS: dict[int, tuple[str, str, int]] = {
    0x30: ("CIO", "bit", 1), 0x31: ("WR", "bit", 1), 0x32: ("HR", "bit", 1), 0x33: ("AR", "bit", 1),
    0x70: ("CIO", "bit_forced", 1), 0x71: ("WR", "bit_forced", 1), 0x72: ("HR", "bit_forced", 1),
    0xB0: ("CIO", "word", 2), 0xB1: ("WR", "word", 2), 0xB2: ("HR", "word", 2), 0xB3: ("AR", "word", 2),
    0xF0: ("CIO", "word_forced", 4), 0xF1: ("WR", "word_forced", 4), 0xF2: ("HR", "word_forced", 4),
    0x09: ("TIM", "bit", 1), 0x49: ("TIM", "bit_forced", 1), 0x89: ("TIM", "word", 2),
    0x02: ("DM", "bit", 1), 0x82: ("DM", "word", 2),
    **{0x20 + b: (f"EM{b:X}", "bit", 1) for b in range(13)},
    **{0xA0 + b: (f"EM{b:X}", "word", 2) for b in range(13)},
    **{0x50 + b: (f"EM{b + 13:X}", "bit", 1) for b in range(3)},     # banks D-F (CJ2)
    **{0xD0 + b: (f"EM{b + 13:X}", "word", 2) for b in range(3)},
    0x0A: ("EM", "bit", 1), 0x98: ("EM", "word", 2), 0xBC: ("EM_BANK", "word", 2),
    0x06: ("TK", "bit", 1), 0x46: ("TK", "status", 1), 0xDC: ("IR", "word", 4),
    0x07: ("CLOCK_PULSE", "bit", 1),
    # CV-mode (W227): CIO/TR/CPU bus link/auxiliary, timer/counter, transition, step, forced status
    0x00: ("CIO", "bit", 1), 0x80: ("CIO", "word", 2), 0x01: ("TIM", "bit", 1), 0x81: ("TIM", "word", 2),
    0x03: ("TN", "bit", 1), 0x04: ("ST", "bit", 1), 0x05: ("CIO", "bit_forced", 1),
    0x85: ("CIO", "word_forced", 2), 0x40: ("CIO", "bit_forced", 1), 0x1B: ("AC", "bit", 1),
    **{0x90 + b: (f"EM{b}", "word", 2) for b in range(8)},
    0x9C: ("EM_BANK", "word", 2),
}

# End codes (W342 section 8-3): MRES with the relay-error bit (0x80) masked, SRES with the fatal and
# non-fatal CPU error bits (0x80, 0x40) masked.
END_CODES = {
    0x0000: "NORMAL_COMPLETION", 0x0001: "SERVICE_CANCELED",
    0x0101: "LOCAL_NODE_NOT_IN_NETWORK", 0x0102: "TOKEN_TIMEOUT", 0x0103: "RETRIES_FAILED",
    0x0104: "TOO_MANY_SEND_FRAMES", 0x0105: "NODE_ADDRESS_RANGE_ERROR", 0x0106: "NODE_ADDRESS_DUPLICATION",
    0x0201: "DESTINATION_NODE_NOT_IN_NETWORK", 0x0202: "UNIT_MISSING", 0x0203: "THIRD_NODE_MISSING",
    0x0204: "DESTINATION_NODE_BUSY", 0x0205: "RESPONSE_TIMEOUT",
    0x0301: "COMMUNICATIONS_CONTROLLER_ERROR", 0x0302: "CPU_UNIT_ERROR", 0x0303: "CONTROLLER_ERROR",
    0x0304: "UNIT_NUMBER_ERROR",
    0x0401: "UNDEFINED_COMMAND", 0x0402: "NOT_SUPPORTED_BY_MODEL_VERSION",
    0x0501: "DESTINATION_ADDRESS_SETTING_ERROR", 0x0502: "NO_ROUTING_TABLES", 0x0503: "ROUTING_TABLE_ERROR",
    0x0504: "TOO_MANY_RELAYS",
    0x1001: "COMMAND_TOO_LONG", 0x1002: "COMMAND_TOO_SHORT", 0x1003: "ELEMENTS_DATA_DONT_MATCH",
    0x1004: "COMMAND_FORMAT_ERROR", 0x1005: "HEADER_ERROR",
    0x1101: "AREA_CLASSIFICATION_MISSING", 0x1102: "ACCESS_SIZE_ERROR", 0x1103: "ADDRESS_RANGE_ERROR",
    0x1104: "ADDRESS_RANGE_EXCEEDED", 0x1106: "PROGRAM_MISSING", 0x1109: "RELATIONAL_ERROR",
    0x110A: "DUPLICATE_DATA_ACCESS", 0x110B: "RESPONSE_TOO_LONG", 0x110C: "PARAMETER_ERROR",
    0x2002: "PROTECTED", 0x2003: "TABLE_MISSING", 0x2004: "DATA_MISSING", 0x2005: "PROGRAM_MISSING",
    0x2006: "FILE_MISSING", 0x2007: "DATA_MISMATCH",
    0x2101: "READ_ONLY", 0x2102: "PROTECTED_CANNOT_WRITE", 0x2103: "CANNOT_REGISTER",
    0x2105: "PROGRAM_MISSING", 0x2106: "FILE_MISSING", 0x2107: "FILE_NAME_ALREADY_EXISTS",
    0x2108: "CANNOT_CHANGE",
    0x2201: "NOT_POSSIBLE_DURING_EXECUTION", 0x2202: "NOT_POSSIBLE_WHILE_RUNNING",
    0x2203: "WRONG_PLC_MODE_PROGRAM", 0x2204: "WRONG_PLC_MODE_DEBUG", 0x2205: "WRONG_PLC_MODE_MONITOR",
    0x2206: "WRONG_PLC_MODE_RUN", 0x2207: "SPECIFIED_NODE_NOT_POLLING_NODE",
    0x2208: "STEP_CANNOT_BE_EXECUTED",
    0x2301: "FILE_DEVICE_MISSING", 0x2302: "MEMORY_MISSING", 0x2303: "CLOCK_MISSING",
    0x2401: "TABLE_MISSING",
    0x2502: "MEMORY_ERROR", 0x2503: "IO_SETTING_ERROR", 0x2504: "TOO_MANY_IO_POINTS",
    0x2505: "CPU_BUS_ERROR", 0x2506: "IO_DUPLICATION", 0x2507: "IO_BUS_ERROR", 0x2509: "SYSMAC_BUS2_ERROR",
    0x250A: "CPU_BUS_UNIT_ERROR", 0x250D: "SYSMAC_BUS_NUMBER_DUPLICATION", 0x250F: "MEMORY_ERROR",
    0x2510: "SYSMAC_BUS_TERMINATOR_MISSING",
    0x2601: "NO_PROTECTION", 0x2602: "INCORRECT_PASSWORD", 0x2604: "PROTECTED",
    0x2605: "SERVICE_ALREADY_ACTIVE",
    0x2606: "SERVICE_STOPPED", 0x2607: "NO_EXECUTION_RIGHT", 0x2608: "SETTINGS_NOT_COMPLETE",
    0x2609: "NECESSARY_ITEMS_NOT_SET", 0x260A: "NUMBER_ALREADY_DEFINED", 0x260B: "ERROR_WILL_NOT_CLEAR",
    0x3001: "NO_ACCESS_RIGHT", 0x4001: "SERVICE_ABORTED",
}

# RUN mode codes (W342 5-3-9)
RUN_MODES = {1: "DEBUG", 2: "MONITOR", 4: "RUN"}


def command_name(code: int) -> str:
    e = COMMANDS.get(code)
    return e[0] if e else f"unknown-0x{code:04x}"


def end_code_name(code: int) -> str:
    return END_CODES.get(code & 0x7F3F, f"unknown-0x{code:04x}")


def area_of(code: int) -> tuple[str, str, int]:
    return AREAS.get(code, (f"unknown-0x{code:02x}", "word", 2))


def _tcp_len(buf: Any, off: int) -> int | None:
    """StreamBuffer framing for FINS/TCP: 8 + the header's length field (W421 7-4-1)."""
    if len(buf) - off < 8:
        return None
    if bytes(buf[off:off + 4]) != TCP_MAGIC:
        return -1
    return 8 + _I.unpack_from(buf, off + 4)[0]


def probe(data: bytes, is_orig: bool) -> bool:
    """FINS/TCP starts with "FINS"; a FINS/UDP command has ICF 0x80/0x81/0xC0/0xC1 and RSV 0, GCT 2."""
    if data[:4] == TCP_MAGIC:
        return len(data) >= 8
    return len(data) >= FINS_HDR + 2 and (data[0] & 0x3E) == 0 and data[1] == 0 and data[2] <= 7 and \
        (data[10] << 8 | data[11]) in COMMANDS


def _ascii(b: bytes) -> str:
    return b.split(b"\x00", 1)[0].decode("ascii", "replace").strip()


def _printable(b: bytes) -> bool:
    t = b.replace(b"\x00", b"")
    return bool(t) and all(0x20 <= c < 0x7F for c in t)


def _bcd(b: int) -> int:
    return (b >> 4) * 10 + (b & 0x0F)


def _ref(area: str, kind: str, word: int, bit: int) -> str:
    return f"{area}:{word}.{bit}" if kind.startswith("bit") else f"{area}:{word}"


def _items(area_code: int, word: int, bit: int, data: bytes, limit: int) -> tuple[list[dict[str, Any]], int]:
    """Points from item data of one memory area (W342 5-3-1: bits one octet each, words two)."""
    area, kind, size = area_of(area_code)
    n = len(data) // size
    pts = []
    for i in range(min(n, limit)):
        if kind.startswith("bit") or kind == "status":
            b = bit + i
            pts.append({"ref": _ref(area, kind, word + b // 16, b % 16), "value": data[i] & 1})
        else:
            v = int.from_bytes(data[i * size:(i + 1) * size], "big")
            pts.append({"ref": _ref(area, kind, word + i, 0), "value": v})
    return pts, max(n - limit, 0)


class _Fins:
    """Decoder of FINS frames shared by the UDP and TCP analyzers; pairs and emits."""

    __slots__ = ("conn", "next_expire", "pending")

    def __init__(self, conn) -> None:
        self.conn = conn
        self.pending = Pending(timeout=30.0, limit=1024)
        self.next_expire = 0.0

    def frame(self, is_orig: bool, msg: bytes, ts: float, fl: Frames) -> None:
        """One FINS frame (W342 3-1): header, command code, then parameters (and end code)."""
        if len(msg) < FINS_HDR + 2:
            self.conn.weird(PROTOCOL, "omron_fins_short_frame", f"{len(msg)} octets", ts, fl, is_orig)
            return
        icf = msg[0]
        code = msg[10] << 8 | msg[11]
        is_resp = bool(icf & 0x40)
        f: dict[str, Any] = {
            "icf": icf,
            "gateway": bool(icf & 0x80),                 # ICF bit 7: use gateway
            "response_required": not icf & 0x01,         # ICF bit 0: 0 = response required
            "gct": msg[2],                               # permissible gateway count
            "dna": msg[3], "da1": msg[4], "da2": msg[5],  # destination network / node / unit
            "sna": msg[6], "sa1": msg[7], "sa2": msg[8],  # source network / node / unit
            "sid": msg[9],                               # service id (pairs command and response)
            "command_code": code,
            "command": command_name(code),
        }
        if icf & 0x3E or msg[1]:
            self.conn.weird(PROTOCOL, "omron_fins_reserved_bits",
                            f"ICF 0x{icf:02x} RSV 0x{msg[1]:02x}", ts, fl, is_orig)
        if is_resp:
            body = msg[12:]
            if len(body) < 2:
                self.conn.weird(PROTOCOL, "omron_fins_missing_end_code", command_name(code), ts, fl, is_orig)
                end = None
            else:
                end = body[0] << 8 | body[1]
            self._response(is_orig, code, f, end, body[2:], ts, fl)
        else:
            self._command(is_orig, code, f, msg[12:], ts, fl)

    # ------------------------------------------------------------------ commands
    def _command(self, is_orig: bool, code: int, f: dict[str, Any], d: bytes, ts: float, fl: Frames) -> None:
        try:
            self._command_params(code, f, d)
        except (IndexError, struct.error):
            self.conn.weird(PROTOCOL, "omron_fins_truncated_command",
                            f"{command_name(code)}: {len(d)} octets", ts, fl, is_orig)
        rec = {"is_orig": is_orig, "ts": ts, "frames": list(fl), "fields": f, "code": code}
        if not f["response_required"]:
            f["status"] = "one_way"
            self._emit(rec)
            return
        for old in self.pending.add((f["sid"], code, f["sna"], f["sa1"], f["sa2"]), ts, rec):
            self._emit(old)

    def _command_params(self, code: int, f: dict[str, Any], d: bytes) -> None:
        if code in (0x0101, 0x0102, 0x0103):                 # W342 5-3-2..4: area, addr(3), count
            ac, word, bit, cnt = d[0], _H.unpack_from(d, 1)[0], d[3], _H.unpack_from(d, 4)[0]
            area, kind, _ = area_of(ac)
            f.update(area_code=ac, area=area, area_kind=kind, address=word, bit=bit, count=cnt)
            if code == 0x0102:
                pts, more = _items(ac, word, bit, d[6:], MAX_POINTS)
                f["points"] = pts
                if more:
                    f["points_truncated"] = more
            elif code == 0x0103:
                f["fill_value"] = _H.unpack_from(d, 6)[0]
        elif code == 0x0104:                                 # 5-3-5: (area, addr(3)) repeated
            items = []
            for o in range(0, len(d) - 3, 4):
                ac = d[o]
                items.append({"area_code": ac, "area": area_of(ac)[0], "address": _H.unpack_from(d, o + 1)[0],
                              "bit": d[o + 3]})
            f["items"] = items
        elif code == 0x0105:                                 # 5-3-6: src area/addr, dst area/addr, count
            f.update(area_code=d[0], area=area_of(d[0])[0], address=_H.unpack_from(d, 1)[0], bit=d[3],
                     dst_area_code=d[4], dst_area=area_of(d[4])[0], dst_address=_H.unpack_from(d, 5)[0],
                     dst_bit=d[7], count=_H.unpack_from(d, 8)[0])
        elif code in (0x0201, 0x0202, 0x0203):               # 5-3-7..9: param area, word, count
            f.update(parameter_area=_H.unpack_from(d, 0)[0], address=_H.unpack_from(d, 2)[0],
                     count=_H.unpack_from(d, 4)[0] & 0x7FFF)
        elif code in (0x0304, 0x0305):                       # 5-3-10/11: program no, protect code, range
            f.update(program_number=_H.unpack_from(d, 0)[0], protect_code=d[2],
                     address=_I.unpack_from(d, 3)[0], last_word=_I.unpack_from(d, 7)[0])
        elif code in (0x0306, 0x0307):                       # 5-3-12/13: program no, word(4), bytes(2)
            f.update(program_number=_H.unpack_from(d, 0)[0], address=_I.unpack_from(d, 2)[0],
                     count=_H.unpack_from(d, 6)[0] & 0x7FFF)
        elif code == 0x0308:                                 # 5-3-14: program no, clear code
            f.update(program_number=_H.unpack_from(d, 0)[0], clear_code=d[2])
        elif code == 0x0401:                                 # 5-3-15: program no, optional mode
            if len(d) >= 2:
                f["program_number"] = _H.unpack_from(d, 0)[0]
            if len(d) >= 3:
                f["mode"] = RUN_MODES.get(d[2], f"unknown-0x{d[2]:02x}")
        elif code == 0x0501:                                 # 5-3-17: 00 model/version, 01 area data
            if d:
                f["data_kind"] = d[0]
        elif code == 0x0702:                                 # 5-3-24: BCD year month day hour min [sec] [dow]
            f["clock"] = self._clock(d)
        elif code == 0x2101:                                 # 5-3-33: error reset FAL no.
            f["error_code"] = _H.unpack_from(d, 0)[0]
        elif code == 0x2301:                                 # 5-3-50: count, (spec, area, addr(3)) ...
            n = _H.unpack_from(d, 0)[0]
            items = []
            for o in range(2, min(len(d) - 5, 2 + 6 * n), 6):
                ac = d[o + 2]
                area, kind, _ = area_of(ac)
                items.append({"spec": _H.unpack_from(d, o)[0], "area_code": ac, "area": area,
                              "address": _H.unpack_from(d, o + 3)[0], "bit": d[o + 5]})
            f["count"] = n
            f["items"] = items
        elif code == 0x220A:                                 # 5-3-44: param, area, addr(3), count, disk, file
            ac = d[2]
            f.update(parameter_code=_H.unpack_from(d, 0)[0], area_code=ac, area=area_of(ac)[0],
                     address=_H.unpack_from(d, 3)[0], bit=d[5], count=_H.unpack_from(d, 6)[0],
                     disk=_H.unpack_from(d, 8)[0], file=_ascii(d[10:22]))
        elif code == 0x220B:                                 # 5-3-45: param area, word, count, file
            f.update(parameter_code=_H.unpack_from(d, 0)[0], parameter_area=_H.unpack_from(d, 2)[0],
                     address=_H.unpack_from(d, 4)[0], count=_H.unpack_from(d, 6)[0],
                     disk=_H.unpack_from(d, 8)[0], file=_ascii(d[10:22]))
        elif code == 0x220C:                                 # 5-3-46: program no, word, bytes, file
            f.update(parameter_code=_H.unpack_from(d, 0)[0], program_number=_H.unpack_from(d, 2)[0],
                     address=_I.unpack_from(d, 4)[0], count=_I.unpack_from(d, 8)[0],
                     disk=_H.unpack_from(d, 12)[0], file=_ascii(d[14:26]))
        elif code in (0x2202, 0x2203, 0x2205):               # file commands: disk no., file name(s)
            f["disk"] = _H.unpack_from(d, 0)[0]
            if code == 0x2205:
                n = _H.unpack_from(d, 2)[0]
                f["files"] = [_ascii(d[4 + 12 * i:16 + 12 * i]) for i in range(min(n, 64))]
            else:
                o = 2 if code == 0x2202 else 4
                f["file"] = _ascii(d[o:o + 12])

    @staticmethod
    def _clock(d: bytes) -> str:
        """BCD clock (W342 5-3-23) as ISO local time; years 70-99 are 19xx (the manual's convention)."""
        y = _bcd(d[0])
        y += 1900 if y >= 70 else 2000
        sec = _bcd(d[5]) if len(d) > 5 else 0
        return f"{y:04d}-{_bcd(d[1]):02d}-{_bcd(d[2]):02d}T{_bcd(d[3]):02d}:{_bcd(d[4]):02d}:{sec:02d}"

    # ------------------------------------------------------------------ responses
    def _response(self, is_orig: bool, code: int, f: dict[str, Any], end: int | None, d: bytes, ts: float,
                  fl: Frames) -> None:
        # The response's destination is the command's source (W342 3-1-1).
        req = self.pending.pop((f["sid"], code, f["dna"], f["da1"], f["da2"]))
        if req is None:
            rec = {"is_orig": is_orig, "ts": ts, "frames": list(fl), "fields": f, "code": code,
                   "orphan": True}
            out = f
        else:
            rec = req
            rec["resp_ts"] = ts
            rec["frames"] += fl
            out = req["fields"]
        if end is not None:
            out["end_code"] = end
            out["end_code_name"] = end_code_name(end)
            if end & 0x0080 or end & 0x0040:
                out["plc_error"] = "fatal" if end & 0x0080 else "non_fatal"
            if end & 0x8000:
                out["relay_error"] = True
        if end is not None and end & 0x7F3F == 0:
            try:
                self._response_data(code, out, d)
            except (IndexError, struct.error):
                self.conn.weird(PROTOCOL, "omron_fins_truncated_response",
                                f"{command_name(code)}: {len(d)} octets", ts, fl, is_orig)
        self._emit(rec)

    def _response_data(self, code: int, f: dict[str, Any], d: bytes) -> None:
        if code == 0x0101 and "area_code" in f:
            pts, more = _items(f["area_code"], f["address"], f["bit"], d, MAX_POINTS)
            f["points"] = pts
            if more:
                f["points_truncated"] = more
        elif code == 0x0104 and "items" in f:                # (area, data) per item, sizes by area
            pts, o = [], 0
            for it in f["items"]:
                if o >= len(d):
                    break
                area, kind, size = area_of(d[o])
                raw = d[o + 1:o + 1 + size]
                if len(raw) < size:
                    break
                pts.append({"ref": _ref(area, kind, it["address"], it["bit"]),
                            "value": int.from_bytes(raw, "big") if size > 1 else raw[0] & 1})
                o += 1 + size
            f["points"] = pts
        elif code == 0x0501:                                 # 5-3-17: model(20) version(20) ...
            # Only the model/version form (command data 00 or none) starts with ASCII text; the
            # area-data form (01) starts with binary sizes.
            if len(d) >= 40 and f.get("data_kind", 0) == 0 and _printable(d[0:40]):
                ident = {"vendor": "OMRON", "model": _ascii(d[0:20]), "firmware": _ascii(d[20:40])}
                f["identity"] = {k: v for k, v in ident.items() if v}
                f["identity_of"] = "dst"
        elif code == 0x0502:                                 # 5-3-18: units, (unit addr, model(20))...
            n = d[0]
            f["units"] = [{"unit": d[1 + 21 * i], "model": _ascii(d[2 + 21 * i:22 + 21 * i])}
                          for i in range(n) if 22 + 21 * i <= len(d)]
        elif code == 0x0601:                                 # 5-3-19: status, mode, errors ...
            f["run_status"] = d[0]
            f["mode"] = {0: "PROGRAM", 1: "DEBUG", 2: "MONITOR", 4: "RUN"}.get(d[1], f"unknown-0x{d[1]:02x}")
            f["fatal_error_data"] = _H.unpack_from(d, 2)[0]
            f["non_fatal_error_data"] = _H.unpack_from(d, 4)[0]
        elif code == 0x0701:
            f["clock"] = self._clock(d)

    # ------------------------------------------------------------------ emission
    def _emit(self, rec: dict[str, Any]) -> None:
        f = rec["fields"]
        if rec.get("orphan"):
            f["status"] = "no_request"
        elif "resp_ts" in rec:
            f["status"] = "paired"
            f["latency"] = round(rec["resp_ts"] - rec["ts"], 6)
        elif f.get("status") != "one_way":
            f["status"] = "no_response"
        action = COMMANDS.get(rec["code"], ("", "other"))[1]
        # A response whose command we never saw: its sender is the server, so src is the other side.
        is_orig = rec["is_orig"] if not rec.get("orphan") else not rec["is_orig"]
        self.conn.emit(PROTOCOL, action, f, rec["ts"], sorted(set(rec["frames"])), is_orig)

    def expire(self, ts: float) -> None:
        if ts < self.next_expire:          # sweep at most once a second of capture time
            return
        self.next_expire = ts + 1.0
        for rec in self.pending.expire(ts):
            self._emit(rec)

    def close(self) -> None:
        for rec in self.pending.drain():
            self._emit(rec)


class UdpAnalyzer(Analyzer):
    """FINS/UDP: one FINS frame per datagram."""

    PROTOCOL = PROTOCOL
    __slots__ = ("fins",)

    def __init__(self, conn) -> None:
        super().__init__(conn)
        self.fins = _Fins(conn)

    def data(self, is_orig: bool, data: bytes, ts: float, frames: int | Frames) -> None:
        fl = [frames] if isinstance(frames, int) else list(frames)
        self.fins.expire(ts)
        self.fins.frame(is_orig, data, ts, fl)

    def close(self, ts: float) -> None:
        self.fins.close()


class TcpAnalyzer(Analyzer):
    """FINS/TCP: 16-octet header per message; FINS frames ride in FRAME_SEND messages."""

    PROTOCOL = PROTOCOL
    __slots__ = ("bufs", "fins", "node")

    def __init__(self, conn) -> None:
        super().__init__(conn)
        self.bufs = (StreamBuffer(), StreamBuffer())
        self.fins = _Fins(conn)
        self.node = Pending(timeout=30.0, limit=8)      # node address requests (W421 7-4-2)

    def data(self, is_orig: bool, data: bytes, ts: float, frames: int | Frames) -> None:
        self.fins.expire(ts)
        for rec in self.node.expire(ts):
            self._emit_tcp(rec)
        for pdu, fl, t in self.bufs[0 if is_orig else 1].feed(data, ts, frames, _tcp_len):
            if pdu is None:
                self.conn.weird(PROTOCOL, "omron_fins_tcp_bad_header", "no FINS magic", t, fl, is_orig)
                continue
            self._message(is_orig, pdu, t, fl)

    def _message(self, is_orig: bool, pdu: bytes, ts: float, fl: Frames) -> None:
        if len(pdu) < TCP_HDR:
            self.conn.weird(PROTOCOL, "omron_fins_tcp_short_header", f"{len(pdu)} octets", ts, fl, is_orig)
            return
        _, _, cmd, err = _TCP.unpack_from(pdu, 0)
        if cmd == 2:
            self.fins.frame(is_orig, pdu[TCP_HDR:], ts, fl)
            return
        f: dict[str, Any] = {
            "tcp_command": TCP_COMMANDS.get(cmd, f"unknown-0x{cmd:08x}"),
            "tcp_error": TCP_ERRORS.get(err, f"unknown-0x{err:08x}"),
        }
        body = pdu[TCP_HDR:]
        if cmd == 0 and len(body) >= 4:
            f["client_node"] = _I.unpack_from(body, 0)[0]
        elif cmd == 1 and len(body) >= 8:
            f["client_node"], f["server_node"] = _I.unpack_from(body, 0)[0], _I.unpack_from(body, 4)[0]
        # Node address exchange (W421 7-4-2): the client's request and the server's reply, one event.
        if cmd == 0:
            rec = {"is_orig": is_orig, "ts": ts, "frames": list(fl), "fields": f, "code": -1}
            for old in self.node.add(("node_address",), ts, rec):
                self._emit_tcp(old)
            return
        if cmd == 1:
            req = self.node.pop(("node_address",))
            if req is not None:
                req["fields"].update(f)
                req["fields"]["tcp_command"] = "NODE_ADDRESS_SEND"
                req["resp_ts"] = ts
                req["frames"] += fl
                self._emit_tcp(req)
                return
        if err:
            self.conn.weird(PROTOCOL, "omron_fins_tcp_error", f["tcp_error"], ts, fl, is_orig)
        self._emit_tcp({"is_orig": is_orig, "ts": ts, "frames": list(fl), "fields": f, "code": -1,
                        "orphan": cmd == 1})

    def _emit_tcp(self, rec: dict[str, Any]) -> None:
        f = rec["fields"]
        if rec.get("orphan"):
            f["status"] = "no_request"
        elif "resp_ts" in rec:
            f["status"] = "paired"
            f["latency"] = round(rec["resp_ts"] - rec["ts"], 6)
        else:
            f["status"] = "no_response" if f["tcp_command"].endswith("CLIENT") else "one_way"
        is_orig = rec["is_orig"] if not rec.get("orphan") else not rec["is_orig"]
        self.conn.emit(PROTOCOL, "session", f, rec["ts"], sorted(set(rec["frames"])), is_orig)

    def gap(self, is_orig: bool, size: int, ts: float) -> None:
        self.bufs[0 if is_orig else 1].clear()

    def close(self, ts: float) -> None:
        for is_orig in (True, False):
            buf = self.bufs[0 if is_orig else 1]
            if len(buf):
                self.conn.weird(PROTOCOL, "omron_fins_truncated_message", f"{len(buf)} octets left at close",
                                ts, buf.pending_frames(), is_orig)
                buf.clear()
        for rec in self.node.drain():
            self._emit_tcp(rec)
        self.fins.close()
