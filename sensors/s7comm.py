"""S7comm (Siemens S7 protocol, id 0x32) over COTP/TPKT on TCP 102, plus S7comm-plus headers (id 0x72).

Layering: TPKT (RFC 1006) -> COTP (ISO 8073 class 0; DT segments reassembled until EOT) -> S7 PDU.
No public Siemens specification exists; the layout follows the Wireshark s7comm dissector
(packet-s7comm.c, packet-s7comm_szl_ids.c) and ICSNPP s7comm, with section names from there.

Events:
- kind "cotp": connection management (CR paired with CC; DR, DC, ER one way); action session/error.
- kind "s7comm": one per job -> ack/ack-data pair (paired by PDU reference and direction) and per
  userdata request -> response; pushes (cyclic data, alarms) one way.
- kind "s7comm_plus": one per request -> response pair (sequence number); notifications one way.
The field record of each kind is documented in docs/protocols/s7comm.md.
"""

from __future__ import annotations

import struct
from typing import Any

from sensors import cotp, s7comm_plus
from sensors.base import Analyzer, Pending, StreamBuffer

PROTOCOL = "s7comm"
PLUS = "s7comm_plus"
COTP_KIND = "cotp"
TCP_PORTS = (102,)
ROLES = ("client", "server")

MAX_TSDU = 1 << 18          # reassembled COTP user data beyond this is garbage (S7 PDUs <= 960 B)

_HDR = struct.Struct("!BBHHHH")      # protocol id, ROSCTR, redundancy id, PDU ref, param len, data len
_ERR = struct.Struct("!BB")          # error class, error code (ack / ack-data only)
_H = struct.Struct("!H")
_HH = struct.Struct("!HH")
_SETUP = struct.Struct("!BBHHH")     # func, reserved, max AmQ calling, max AmQ called, PDU length
_ANY = struct.Struct("!BHHB")        # transport size, length, DB number, area (+ 3-byte address)
_DITEM = struct.Struct("!BBH")       # return code, transport size, length
_UD = struct.Struct("!BBBBBB")       # head(3 skipped via offset) param len, method, type|group, subf, seq
_BLKCTL = struct.Struct("!BBHI")     # func, function status, unknown/error code, upload id
_b = struct.Struct("!b")
_h = struct.Struct("!h")
_i = struct.Struct("!i")
_f = struct.Struct("!f")
_I = struct.Struct("!I")

# --- code tables (Wireshark packet-s7comm.c value_strings) -------------------------------------

ROSCTR = {0x01: "JOB", 0x02: "ACK", 0x03: "ACK_DATA", 0x07: "USERDATA"}

# function code -> (name, action)
FUNCTIONS: dict[int, tuple[str, str]] = {
    0x00: ("CPU_SERVICES", "other"),
    0xF0: ("SETUP_COMMUNICATION", "session"),
    0x04: ("READ_VAR", "read"),
    0x05: ("WRITE_VAR", "write"),
    0x1A: ("REQUEST_DOWNLOAD", "program"),
    0x1B: ("DOWNLOAD_BLOCK", "program"),
    0x1C: ("DOWNLOAD_ENDED", "program"),
    0x1D: ("START_UPLOAD", "program"),
    0x1E: ("UPLOAD", "program"),
    0x1F: ("END_UPLOAD", "program"),
    0x28: ("PI_SERVICE", "control"),
    0x29: ("PLC_STOP", "control"),
}

ERROR_CLASSES = {0x00: "NO_ERROR", 0x81: "APPLICATION_RELATIONSHIP", 0x82: "OBJECT_DEFINITION",
                 0x83: "NO_RESOURCES_AVAILABLE", 0x84: "ERROR_ON_SERVICE_PROCESSING",
                 0x85: "ERROR_ON_SUPPLIES", 0x87: "ACCESS_ERROR"}

# Parameter error codes (class << 8 | code), the common ones of s7comm param_errcode_names.
ERROR_CODES = {
    0x0000: "NO_ERROR", 0x0110: "INVALID_BLOCK_NUMBER", 0x0111: "INVALID_REQUEST_LENGTH",
    0x0112: "INVALID_PARAMETER", 0x0113: "INVALID_BLOCK_TYPE", 0x0114: "BLOCK_NOT_FOUND",
    0x0115: "BLOCK_ALREADY_EXISTS", 0x0116: "BLOCK_IS_WRITE_PROTECTED",
    0x0117: "BLOCK_OS_UPDATE_TOO_LARGE", 0x0118: "INVALID_BLOCK_NUMBER",
    0x0119: "INCORRECT_PASSWORD_ENTERED", 0x011A: "PG_RESOURCE_ERROR", 0x011B: "PLC_RESOURCE_ERROR",
    0x011C: "PROTOCOL_ERROR", 0x011D: "TOO_MANY_BLOCKS", 0x011E: "NO_LONGER_CONNECTION_TO_DATABASE",
    0x011F: "RESULT_BUFFER_TOO_SMALL", 0x0120: "END_OF_BLOCK_LIST", 0x0140: "INSUFFICIENT_MEMORY",
    0x0141: "JOB_CANNOT_BE_PROCESSED_LACK_OF_RESOURCES", 0x8001: "SERVICE_CANNOT_BE_PERFORMED_STATE",
    0x8003: "CANNOT_BE_PERFORMED_CONFLICT", 0x8101: "NOT_ACTIVE", 0x8104: "CONTEXT_NOT_SUPPORTED",
    0x8105: "ERROR_IN_PDU_LENGTH", 0x8106: "NOT_AVAILABLE", 0x8107: "WRONG_PDU_NUMBER",
    0xD201: "BLOCK_NAME_SYNTAX_ERROR", 0xD202: "SYNTAX_ERROR_FUNCTION_PARAMETER",
    0xD203: "SYNTAX_ERROR_BLOCK_TYPE", 0xD204: "NO_LINKED_BLOCK_IN_STORAGE_MEDIUM",
    0xD205: "OBJECT_ALREADY_EXISTS", 0xD206: "OBJECT_ALREADY_EXISTS", 0xD207: "BLOCK_EXISTS_IN_EPROM",
    0xD209: "BLOCK_DOES_NOT_EXIST", 0xD20E: "NO_BLOCK_DOES_NOT_EXIST", 0xD210: "BLOCK_NUMBER_TOO_BIG",
    0xD240: "UNFINISHED_BLOCK_TRANSFER", 0xD241: "PASSWORD_PROTECTED",
    0xD601: "SYNTAX_ERROR_FUNCTION_PARAMETER", 0xD602: "WRONG_PASSWORD",
    0xD603: "PROTECTION_LEVEL_NOT_SUFFICIENT", 0xD604: "PROTECTION_LEVEL_NOT_SUFFICIENT",
    0xDC01: "INVALID_TIME", 0xD401: "INFORMATION_FUNCTION_UNAVAILABLE",
    0xD405: "SZL_PARTIAL_LIST_NOT_AVAILABLE",
}

ITEM_RETURN_CODES = {0x00: "RESERVED", 0x01: "HARDWARE_FAULT", 0x03: "ACCESS_DENIED",
                     0x05: "ADDRESS_OUT_OF_RANGE", 0x06: "DATA_TYPE_NOT_SUPPORTED",
                     0x07: "DATA_TYPE_INCONSISTENT", 0x0A: "OBJECT_DOES_NOT_EXIST", 0xFF: "SUCCESS"}

# Parameter item transport sizes (s7comm item_transportsizenames).
TRANSPORT_SIZES = {0x01: "BIT", 0x02: "BYTE", 0x03: "CHAR", 0x04: "WORD", 0x05: "INT", 0x06: "DWORD",
                   0x07: "DINT", 0x08: "REAL", 0x09: "DATE", 0x0A: "TOD", 0x0B: "TIME",
                   0x0C: "S5TIME", 0x0F: "DATE_AND_TIME", 0x1C: "COUNTER", 0x1D: "TIMER",
                   0x1E: "IEC_TIMER", 0x1F: "IEC_COUNTER", 0x20: "HS_COUNTER"}
TRANSPORT_CODES = {v: k for k, v in TRANSPORT_SIZES.items()}
ELEMENT_BYTES = {0x01: 1, 0x02: 1, 0x03: 1, 0x04: 2, 0x05: 2, 0x06: 4, 0x07: 4, 0x08: 4, 0x09: 2,
                 0x0A: 4, 0x0B: 4, 0x0C: 2, 0x0F: 8, 0x1C: 2, 0x1D: 2}
# Data item transport sizes (s7comm data_transportsizenames); the length of 0x03-0x05 is in bits.
DATA_TRANSPORT_SIZES = {0x00: "NULL", 0x03: "BIT", 0x04: "BYTE/WORD/DWORD", 0x05: "INTEGER",
                        0x06: "DINTEGER", 0x07: "REAL", 0x09: "OCTET_STRING"}
_LEN_IN_BITS = frozenset({0x03, 0x04, 0x05})

AREAS = {0x03: "SYSINFO", 0x05: "SYSFLAGS", 0x06: "ANAIN", 0x07: "ANAOUT", 0x1C: "C", 0x1D: "T",
         0x1E: "IEC_C", 0x1F: "IEC_T", 0x80: "P", 0x81: "I", 0x82: "Q", 0x83: "M", 0x84: "DB",
         0x85: "DI", 0x86: "L", 0x87: "V"}

SYNTAX_IDS = {0x10: "S7ANY", 0x13: "PBC_R_ID", 0x15: "ALARM_LOCKFREE", 0x16: "ALARM_IND",
              0x19: "ALARM_ACK", 0x1A: "ALARM_QUERYREQ", 0x1C: "NOTIFY_IND", 0xA2: "NCK",
              0xB0: "DBREAD", 0x82: "1200SYM", 0xB2: "DRIVEESANY"}

# Userdata function groups (type nibble is request/response/push).
UD_TYPES = {0x0: "PUSH", 0x4: "REQUEST", 0x8: "RESPONSE", 0x3: "NCK_PUSH", 0x7: "NCK_REQUEST",
            0xB: "NCK_RESPONSE"}
UD_GROUPS = {0x0: "MODE_TRANSITION", 0x1: "PROGRAMMER_COMMANDS", 0x2: "CYCLIC_DATA",
             0x3: "BLOCK_FUNCTIONS", 0x4: "CPU_FUNCTIONS", 0x5: "SECURITY", 0x6: "PBC_BSEND_BRECV",
             0x7: "TIME_FUNCTIONS", 0xF: "NC_PROGRAMMING"}
# (group, subfunction) -> (name, action); mode transition subfunctions are the new mode.
UD_SUBFUNCS: dict[tuple[int, int], tuple[str, str]] = {
    (0x1, 0x01): ("REQUEST_DIAG_DATA_TYPE1", "diagnose"), (0x1, 0x02): ("VARTAB", "read"),
    (0x1, 0x0C): ("ERASE", "program"), (0x1, 0x0E): ("READ_DIAG_DATA", "diagnose"),
    (0x1, 0x0F): ("REMOVE_DIAG_DATA", "diagnose"), (0x1, 0x10): ("FORCES", "diagnose"),
    (0x1, 0x13): ("REQUEST_DIAG_DATA_TYPE2", "diagnose"),
    (0x2, 0x01): ("MEMORY", "read"), (0x2, 0x04): ("UNSUBSCRIBE", "read"),
    (0x2, 0x05): ("MEMORY2", "read"),
    (0x3, 0x01): ("LIST_BLOCKS", "read"), (0x3, 0x02): ("LIST_BLOCKS_OF_TYPE", "read"),
    (0x3, 0x03): ("GET_BLOCK_INFO", "read"),
    (0x4, 0x01): ("READ_SZL", "read"), (0x4, 0x02): ("MESSAGE_SERVICE", "other"),
    (0x4, 0x03): ("DIAGNOSTIC_MESSAGE", "other"), (0x4, 0x05): ("ALARM8_INDICATION", "other"),
    (0x4, 0x06): ("NOTIFY_INDICATION", "other"), (0x4, 0x07): ("ALARM8_LOCK", "other"),
    (0x4, 0x08): ("ALARM8_UNLOCK", "other"), (0x4, 0x09): ("SCAN_INDICATION", "other"),
    (0x4, 0x0B): ("ALARM_ACK", "other"), (0x4, 0x0C): ("ALARM_ACK_INDICATION", "other"),
    (0x4, 0x0D): ("ALARM_LOCK_INDICATION", "other"), (0x4, 0x0E): ("ALARM_UNLOCK_INDICATION", "other"),
    (0x4, 0x11): ("ALARM_SQ_INDICATION", "other"), (0x4, 0x12): ("ALARM_S_INDICATION", "other"),
    (0x4, 0x13): ("ALARM_QUERY", "other"), (0x4, 0x16): ("NOTIFY8_INDICATION", "other"),
    (0x5, 0x01): ("PLC_PASSWORD", "session"), (0x5, 0x02): ("CLEAN_SESSION", "session"),
    (0x7, 0x01): ("READ_CLOCK", "read"), (0x7, 0x02): ("SET_CLOCK", "write"),
    (0x7, 0x03): ("READ_CLOCK_FOLLOWING", "read"), (0x7, 0x04): ("SET_CLOCK2", "write"),
}
GROUP_ACTIONS = {0x0: "control", 0x1: "diagnose", 0x2: "read", 0x3: "read", 0x4: "other",
                 0x5: "session", 0x6: "other", 0x7: "other", 0xF: "program"}
MODES = {0x00: "STOP", 0x01: "WARM_RESTART", 0x02: "RUN", 0x03: "HOT_RESTART", 0x04: "HOLD",
         0x06: "COLD_RESTART", 0x09: "RUN_R", 0x0B: "LINK_UP", 0x0C: "UPDATE"}

# Block types in file names "_<type><number><fs>" (s7comm blocktype_names).
BLOCK_TYPES = {"08": "OB", "0A": "DB", "0B": "SDB", "0C": "FC", "0D": "SFC", "0E": "FB", "0F": "SFB"}
FILESYSTEMS = {"P": "PASSIVE", "A": "ACTIVE", "B": "ACTIVE_AND_PASSIVE"}

# PI services (s7comm pi_service_names): name -> action.
PI_SERVICES = {"_INSE": "program", "_DELE": "program", "_MODU": "program", "_GARB": "program",
               "P_PROGRAM": "control", "_N_LOGIN_": "session", "_N_LOGOUT": "session"}
PI_SERVICE_NAMES = {"_INSE": "activate downloaded block", "_DELE": "delete block",
                    "_MODU": "copy RAM to ROM", "_GARB": "compress PLC memory",
                    "P_PROGRAM": "start/stop program", "_N_LOGIN_": "login", "_N_LOGOUT": "logout"}

# SZL partial lists by their number (low byte of the SZL-ID; the high byte selects the extract).
SZL_NAMES = {0x00: "LIST_OF_ALL_SZL_IDS", 0x11: "MODULE_IDENTIFICATION", 0x12: "CPU_CHARACTERISTICS",
             0x13: "USER_MEMORY_AREAS", 0x14: "SYSTEM_AREAS", 0x15: "BLOCK_TYPES",
             0x17: "STORED_BLOCKS", 0x19: "MODULE_LEDS", 0x1C: "COMPONENT_IDENTIFICATION",
             0x22: "INTERRUPT_STATUS", 0x24: "MODES", 0x25: "PROCESS_IMAGE_PARTITIONS",
             0x31: "COMMUNICATION_CAPABILITY_PARAMETERS", 0x32: "COMMUNICATION_STATUS_DATA",
             0x33: "DIAGNOSTIC_CLIENTS", 0x37: "ETHERNET_DETAILS", 0x71: "H_CPU_GROUP_INFORMATION",
             0x74: "MODULE_LED_STATUS", 0x90: "DP_MASTER_SYSTEM", 0x91: "MODULE_STATUS",
             0x92: "RACK_STATION_STATUS", 0x94: "RACK_STATION_STATUS2", 0x95: "DP_MASTER_SYSTEM_EXT",
             0x96: "PROFINET_IO_MODULE_STATUS", 0xA0: "DIAGNOSTIC_BUFFER", 0xB1: "MODULE_DIAG_INFO",
             0xB2: "MODULE_DIAG_RECORD1", 0xB3: "MODULE_DIAG_DATA", 0xB4: "DP_SLAVE_DIAG_DATA"}
# SZL 0x001C component identification indexes -> identity key.
SZL_1C_KEYS = {0x0001: "system_name", 0x0002: "name", 0x0003: "plant_id", 0x0004: "copyright",
               0x0005: "serial", 0x0007: "model", 0x0008: "memory_card_serial",
               0x000B: "location"}
PASSWORD_SUBFUNC = 0x01


def _name(table: dict, code: int, width: int = 2) -> str:
    v = table.get(code)
    if v is None:
        return f"unknown-0x{code:0{width}x}"
    return v if isinstance(v, str) else v[0]


def _ascii(b: bytes) -> str:
    """Fixed-width S7 string: strip NUL/space padding, keep printable ASCII."""
    return b.split(b"\x00", 1)[0].decode("latin-1").strip()


def _bcd(b: int) -> int:
    return (b >> 4) * 10 + (b & 0x0F)


def _s7_time(b: bytes) -> str | None:
    """S7 DATE_AND_TIME (8 bytes BCD: year, month, day, hour, minute, second, ms*10+weekday)."""
    if len(b) < 8:
        return None
    y = _bcd(b[0])
    year = 1900 + y if y >= 90 else 2000 + y
    ms = _bcd(b[6]) * 10 + (b[7] >> 4)
    return (f"{year:04d}-{_bcd(b[1]):02d}-{_bcd(b[2]):02d}T{_bcd(b[3]):02d}:{_bcd(b[4]):02d}:"
            f"{_bcd(b[5]):02d}.{ms:03d}")


def item_ref(area: str, db: int, byte: int, bit: int) -> str:
    """Stable point reference "<AREA>:<db>:<byte>.<bit>" (db is 0 outside DB/DI), e.g. "DB:1:10.0"."""
    return f"{area}:{db}:{byte}.{bit}"


def _value(tsize: int, data: bytes, dsize: int) -> int | float | str:
    """A point value: a number when the data is exactly one element, else the data as hex."""
    if dsize == 0x03 or tsize == 0x01:
        return data[0] & 1 if data else 0
    n = len(data)
    if n == ELEMENT_BYTES.get(tsize, -1):
        if tsize == 0x05:
            return _h.unpack(data)[0]
        if tsize == 0x07:
            return _i.unpack(data)[0]
        if tsize == 0x08:
            v = _f.unpack(data)[0]
            # float32 has ~7 significant digits: print that many (not a fixed number of decimals)
            return float(f"{v:.7g}") if v == v and abs(v) != float("inf") else data.hex()
        if tsize in (0x02, 0x04, 0x06):
            return int.from_bytes(data, "big")
    return data.hex()


class _Txn:
    """One request waiting for its response."""

    __slots__ = ("action", "fields", "frames", "is_orig", "kind", "ts")

    def __init__(self, ts: float, frames: list[int], is_orig: bool, fields: dict, action: str,
                 kind: str = PROTOCOL) -> None:
        self.ts, self.frames, self.is_orig, self.fields, self.action = ts, frames, is_orig, fields, action
        self.kind = kind


class TcpAnalyzer(Analyzer):
    """One ISO-on-TCP connection: TPKT/COTP framing, S7comm and S7comm-plus transactions."""

    PROTOCOL = PROTOCOL
    __slots__ = ("bufs", "handed_off", "last_expire", "pending", "plus_frag", "raw", "seg_frames", "seg_ts",
                 "segs", "ud_more")

    def __init__(self, conn) -> None:
        super().__init__(conn)
        self.bufs = (StreamBuffer(), StreamBuffer())          # [0] responder, [1] originator
        self.segs: list[list[bytes]] = [[], []]              # COTP DT segments awaiting EOT
        self.seg_frames: list[list[int]] = [[], []]
        self.seg_ts: list[float | None] = [None, None]
        self.pending = Pending(timeout=60.0)
        self.last_expire = 0.0
        self.ud_more: dict[tuple, dict] = {}      # (requester dir, group, subf) -> SZL of a fragmented answer
        self.raw: list[list[tuple[bytes, list[int], float]]] = [[], []]   # TPKT packets of the open TSDU
        self.handed_off: Analyzer | bool = False  # another ISO-on-TCP protocol (MMS) owns the connection
        # S7comm-plus message fragments without trailer: (first fragment, frames, ts, total bytes)
        self.plus_frag: list[tuple[bytes, list[int], float, int] | None] = [None, None]

    # ------------------------------------------------------------------ framing
    def data(self, is_orig: bool, data: bytes, ts: float, frames) -> None:
        if self.handed_off:              # a caller still holding us: pass the bytes on
            if self.handed_off is not True:
                self.handed_off.data(is_orig, data, ts, frames)
            return
        for pdu, fl, t in self.bufs[is_orig].feed(data, ts, frames, cotp.tpkt_len):
            if self.handed_off:
                if self.handed_off is not True and pdu is not None:
                    self.handed_off.data(is_orig, pdu, t, fl)
                continue
            if pdu is None:
                self._weird("bad_tpkt", "bytes that are not a TPKT header (version 3, length >= 7)",
                            t, fl, is_orig)
                self._drop_segments(is_orig)
                continue
            self._tpkt(is_orig, pdu, t, fl)
        if self.handed_off:
            self._flush_handoff(ts)
            return
        if ts - self.last_expire > 10.0:
            self.last_expire = ts
            for txn in self.pending.expire(ts):
                self._unmatched(txn)

    def gap(self, is_orig: bool, size: int, ts: float) -> None:
        if self.handed_off:
            if self.handed_off is not True:
                self.handed_off.gap(is_orig, size, ts)
            return
        self.bufs[is_orig].clear()
        self._drop_segments(is_orig)

    def close(self, ts: float) -> None:
        if self.handed_off:
            if self.handed_off is not True:
                self.handed_off.close(ts)
            return
        for is_orig in (True, False):
            buf = self.bufs[is_orig]
            if len(buf):
                self._weird("truncated_tpkt", f"{len(buf)} bytes of an unfinished TPKT packet at close",
                            ts, buf.pending_frames(), is_orig)
                buf.clear()
            if self.segs[is_orig]:
                self._weird("unfinished_cotp_tsdu", "COTP DT segments without a final (EOT) segment",
                            ts, self.seg_frames[is_orig], is_orig)
                self._drop_segments(is_orig)
            frag = self.plus_frag[is_orig]
            if frag is not None:
                self.plus_frag[is_orig] = None
                self._weird("unfinished_s7comm_plus", "S7comm-plus fragments without the final one (trailer)",
                            ts, frag[1], is_orig, PLUS)
        for txn in self.pending.drain():
            self._unmatched(txn)

    def _weird(self, name: str, reason: str, ts: float, frames: list[int], is_orig: bool,
               protocol: str = PROTOCOL) -> None:
        self.conn.weird(protocol, name, reason, ts, frames, is_orig)

    def _flush_handoff(self, ts: float) -> None:
        """After a hand-off: bytes still buffered go to the new analyzer; our pending jobs end here."""
        for d in (True, False):
            buf = self.bufs[d]
            if len(buf):
                if self.handed_off is not True:
                    self.handed_off.data(d, bytes(buf.buf), ts, buf.pending_frames())
                buf.clear()
        for txn in self.pending.drain():
            self._unmatched(txn)

    def _hand_off(self, is_orig: bool, pid: int, ts: float, frames: list[int]) -> None:
        """COTP user data that is neither S7comm nor S7comm-plus: MMS (ISO session SPDU) and other
        ISO-on-TCP protocols share TCP 102. The registered MMS analyzer, if any, takes the connection
        from this TSDU on (the COTP set-up stays reported here as kind cotp); otherwise one weird and
        the rest of the connection is skipped."""
        from sensors import PROTOCOLS

        mod = PROTOCOLS.get("mms")
        cls = getattr(mod, "TcpAnalyzer", None) if mod is not None else None
        if cls is None:
            self._weird("unknown_protocol_id",
                        f"COTP user data starts with 0x{pid:02x} (not S7comm): rest of connection skipped",
                        ts, frames, is_orig)
            self.handed_off = True
            return
        an = cls(self.conn)
        self.conn.analyzer, self.conn.protocol = an, mod.PROTOCOL
        self.handed_off = an
        for pdu, fl, t in self.raw[is_orig]:
            an.data(is_orig, pdu, t, fl)

    def _drop_segments(self, is_orig: bool) -> None:
        self.raw[is_orig] = []
        self.segs[is_orig] = []
        self.seg_frames[is_orig] = []
        self.seg_ts[is_orig] = None

    def _tpkt(self, is_orig: bool, pdu: bytes, ts: float, frames: list[int]) -> None:
        code, f, off, err = cotp.parse_cotp(pdu)
        if err is not None:
            self._weird("bad_cotp_header", err, ts, frames, is_orig, COTP_KIND)
            if code < 0:
                return
        if code == cotp.DT:
            segs = self.segs[is_orig]
            if not f["eot"] and off == len(pdu) and not segs:
                return                  # empty DT without EOT: a keep-alive, nothing to reassemble
            if segs:
                fl = self.seg_frames[is_orig]
                fl.extend(x for x in frames if x not in fl)
            else:
                self.seg_frames[is_orig] = list(frames)
                self.seg_ts[is_orig] = ts
            segs.append(pdu[off:])
            self.raw[is_orig].append((pdu, frames, ts))
            if not f["eot"]:
                if sum(map(len, segs)) > MAX_TSDU:
                    self._weird("cotp_tsdu_too_long", f"reassembled COTP data over {MAX_TSDU} bytes",
                                ts, self.seg_frames[is_orig], is_orig, COTP_KIND)
                    self._drop_segments(is_orig)
                return
            payload = segs[0] if len(segs) == 1 else b"".join(segs)
            fl, t0 = self.seg_frames[is_orig], self.seg_ts[is_orig]
            self._tsdu(is_orig, payload, t0 if t0 is not None else ts, fl)
            self._drop_segments(is_orig)
            return
        self._cotp_control(is_orig, code, f, ts, frames)

    def _cotp_control(self, is_orig: bool, code: int, f: dict, ts: float, frames: list[int]) -> None:
        """CR/CC (paired: session set-up), DR/DC/ER (one way)."""
        name = cotp.TPDU_NAMES.get(code, f"unknown-0x{code:02x}")
        f = {"tpdu": name, **f}
        if code == cotp.CR:
            for old in self.pending.add(("cotp", is_orig), ts,
                                        _Txn(ts, frames, is_orig, f, "session", COTP_KIND)):
                self._unmatched(old)
            return
        if code == cotp.CC:
            txn = self.pending.pop(("cotp", not is_orig))
            if txn is None:
                f["status"] = "no_request"
                self.conn.emit(COTP_KIND, "session", f, ts, frames, not is_orig)
                return
            rec = txn.fields
            rec["response"] = "CC"
            for k in ("tpdu_size", "src_ref", "class"):
                if k in f:
                    rec["response_" + k] = f[k]
            rec["status"] = "paired"
            rec["latency"] = round(ts - txn.ts, 6)
            self.conn.emit(COTP_KIND, "session", rec, txn.ts, txn.frames + frames, txn.is_orig)
            return
        if code in (cotp.DR, cotp.DC):
            f["status"] = "one_way"
            self.conn.emit(COTP_KIND, "session", f, ts, frames, is_orig)
            return
        if code == cotp.ER:
            f["status"] = "one_way"
            self.conn.emit(COTP_KIND, "error", f, ts, frames, is_orig)
            return
        self._weird("unexpected_cotp_tpdu", f"COTP TPDU {name} is not used in class 0", ts, frames,
                    is_orig, COTP_KIND)

    # ------------------------------------------------------------------ S7 PDUs
    def _tsdu(self, is_orig: bool, p: bytes, ts: float, frames: list[int]) -> None:
        if not p:
            return                      # empty DT: keep-alive of some stacks
        pid = p[0]
        if pid == 0x32:
            self._s7(is_orig, p, ts, frames)
        elif pid == s7comm_plus.PROTOCOL_ID:
            self._plus(is_orig, p, ts, frames)
        elif len(p) == 1:
            return                      # one-byte DT: S7-1200/1500 keep-alive (tshark: "data")
        else:
            self._hand_off(is_orig, pid, ts, frames)

    def _s7(self, is_orig: bool, p: bytes, ts: float, frames: list[int]) -> None:
        n = len(p)
        if n < 10:
            return self._weird("truncated_s7_header", f"{n} bytes", ts, frames, is_orig)
        _, rosctr, _red, ref, plen, dlen = _HDR.unpack_from(p, 0)
        hlen = 12 if rosctr in (2, 3) else 10
        if n < hlen:
            return self._weird("truncated_s7_header", f"{n} bytes for ROSCTR {rosctr}", ts, frames, is_orig)
        if hlen + plen + dlen > n:
            return self._weird("s7_length_mismatch",
                               f"parameter {plen} + data {dlen} bytes exceed the {n - hlen} present",
                               ts, frames, is_orig)
        param = p[hlen:hlen + plen]
        data = p[hlen + plen:hlen + plen + dlen]
        try:
            if rosctr == 1:
                self._job(is_orig, ref, param, data, ts, frames)
            elif rosctr in (2, 3):
                ecls, ecode = _ERR.unpack_from(p, 10)
                self._ack(is_orig, rosctr, ref, ecls, ecode, param, data, ts, frames)
            elif rosctr == 7:
                self._userdata(is_orig, ref, param, data, ts, frames)
            else:
                self._weird("unknown_rosctr", f"ROSCTR 0x{rosctr:02x}", ts, frames, is_orig)
        except (IndexError, struct.error, ValueError) as e:      # field inside the PDU cut short
            self._weird("malformed_s7_pdu", f"{type(e).__name__}: {e}", ts, frames, is_orig)

    def _decode(self, dec, rec: dict, a, b, ts: float, frames: list[int], is_orig: bool,
                *extra) -> str | None:
        """Run a field decoder; a field cut short becomes a weird and `malformed` on the record, so
        the transaction itself is still reported (and still pairs)."""
        try:
            return dec(self, rec, a, b, *extra)
        except (IndexError, struct.error, ValueError, UnicodeDecodeError) as e:
            rec["malformed"] = True
            self._weird("malformed_s7_pdu", f"{rec.get('function')}: {type(e).__name__}: {e}", ts, frames,
                        is_orig)
            return None

    def _unmatched(self, txn: _Txn) -> None:
        txn.fields["status"] = "no_response"
        self.conn.emit(txn.kind, txn.action, txn.fields, txn.ts, txn.frames, txn.is_orig)

    # --- job / ack ---------------------------------------------------------------------------
    def _job(self, is_orig: bool, ref: int, param: bytes, data: bytes, ts: float, frames: list[int]) -> None:
        if not param:
            return self._weird("empty_s7_parameter", "job without a function code", ts, frames, is_orig)
        fc = param[0]
        name, action = FUNCTIONS.get(fc, (f"unknown-0x{fc:02x}", "other"))
        rec: dict[str, Any] = {"rosctr": "JOB", "pdu_ref": ref, "func_code": fc, "function": name}
        dec = _JOB_DECODERS.get(fc)
        if dec is not None:
            action = self._decode(dec, rec, param, data, ts, frames, is_orig) or action
        for old in self.pending.add(("s7", is_orig, ref, fc), ts, _Txn(ts, frames, is_orig, rec, action)):
            self._unmatched(old)

    def _ack(self, is_orig: bool, rosctr: int, ref: int, ecls: int, ecode: int, param: bytes,
             data: bytes, ts: float, frames: list[int]) -> None:
        # Key (direction, PDU ref, function): WinCC reuses one PDU ref for concurrent read and write
        # jobs. A plain ACK has no parameter: then the oldest job with that ref.
        txn = self.pending.pop(("s7", not is_orig, ref, param[0])) if param else None
        if txn is None:
            txn = self._find(lambda k, t: k[0] == "s7" and k[1] == (not is_orig) and k[2] == ref)
        if txn is None:
            fc = param[0] if param else None
            name, action = FUNCTIONS.get(fc, (f"unknown-0x{fc:02x}" if fc is not None else "NONE", "other"))
            rec: dict[str, Any] = {"pdu_ref": ref, "function": name, "status": "no_request"}
            if fc is not None:
                rec["func_code"] = fc
            req_orig = not is_orig
            t0, fl = ts, frames
        else:
            rec, action, req_orig = txn.fields, txn.action, txn.is_orig
            fc = rec["func_code"]
            rec["status"] = "paired"
            rec["latency"] = round(ts - txn.ts, 6)
            t0, fl = txn.ts, txn.frames + frames
        rec["response_rosctr"] = ROSCTR[rosctr]
        rec["error_class"] = ecls
        rec["error_code"] = ecode
        if ecls or ecode:
            full = (ecls << 8) | ecode
            rec["error"] = ERROR_CODES.get(full) or (_name(ERROR_CLASSES, ecls) if not ecode
                                                     else f"unknown-0x{full:04x}")
            rec["error_class_name"] = _name(ERROR_CLASSES, ecls)
        if param and fc is not None and param[0] != fc:
            self._weird("s7_function_mismatch",
                        f"response function 0x{param[0]:02x} to request 0x{fc:02x}", ts, frames, is_orig)
        dec = _ACK_DECODERS.get(fc) if fc is not None else None
        if dec is not None and not ecls:
            self._decode(dec, rec, param, data, ts, frames, is_orig)
        self.conn.emit(PROTOCOL, action, rec, t0, fl, req_orig)

    # --- userdata ----------------------------------------------------------------------------
    def _userdata(self, is_orig: bool, ref: int, param: bytes, data: bytes, ts: float,
                  frames: list[int]) -> None:
        if len(param) < 8:
            return self._weird("truncated_userdata_parameter", f"{len(param)} bytes", ts, frames, is_orig)
        plen, _method, tg, subf, seq = param[3], param[4], param[5], param[6], param[7]
        typ, grp = tg >> 4, tg & 0x0F
        if grp == 0:
            sname, action = f"MODE_{_name(MODES, subf)}", "control"
        else:
            sname, action = UD_SUBFUNCS.get((grp, subf), (f"unknown-0x{subf:02x}",
                                                           GROUP_ACTIONS.get(grp, "other")))
        rec: dict[str, Any] = {"rosctr": "USERDATA", "pdu_ref": ref, "group_code": grp,
                               "group": _name(UD_GROUPS, grp, 1), "subfunc_code": subf,
                               "function": sname, "seq": seq}
        ud_err = None
        if plen >= 8 and len(param) >= 12:
            _dunit, last, ud_err = param[8], param[9], _H.unpack_from(param, 10)[0]
            rec["last_data_unit"] = last == 0
        ret, _dsize, items = None, None, b""
        if len(data) >= 4:
            ret, _dsize, dl = _DITEM.unpack_from(data, 0)
            items = data[4:4 + dl]
        if typ == 0x4 or typ == 0x7:                          # request
            rec["type"] = "REQUEST"
            if seq:
                # Follow-up request for the next fragment of an answer: carries no SZL id of its own.
                prev = self.ud_more.get((is_orig, grp, subf))
                if prev is not None:
                    rec.update(prev)
            action = self._decode(_UD_REQUEST.get(grp, _ud_none), rec, subf, ret, ts, frames, is_orig,
                                  items) or action
            key = ("ud", is_orig, ref, grp, subf)
            for old in self.pending.add(key, ts, _Txn(ts, frames, is_orig, rec, action)):
                self._unmatched(old)
            return
        if typ == 0x8 or typ == 0xB:                          # response
            txn = self.pending.pop(("ud", not is_orig, ref, grp, subf))
            if txn is None:
                # Some CPUs answer userdata with their own PDU reference (ICSNPP logs the two refs
                # apart): take the oldest request of the same group and subfunction.
                txn = self._find(lambda k, t: k[0] == "ud" and k[1] == (not is_orig) and k[3] == grp
                                 and k[4] == subf)
            if txn is None:
                rec["type"] = "RESPONSE"
                rec["status"] = "no_request"
                out, t0, fl, req_orig = rec, ts, frames, not is_orig
            else:
                out, action = txn.fields, txn.action
                out["status"] = "paired"
                out["latency"] = round(ts - txn.ts, 6)
                if ref != out["pdu_ref"]:
                    out["response_pdu_ref"] = ref
                if "last_data_unit" in rec:
                    out["last_data_unit"] = rec["last_data_unit"]
                t0, fl, req_orig = txn.ts, txn.frames + frames, txn.is_orig
            if ud_err:
                out["error_code"] = ud_err
                out["error"] = ERROR_CODES.get(ud_err, f"unknown-0x{ud_err:04x}")
            if ret is not None:
                out["return_code"] = _name(ITEM_RETURN_CODES, ret)
            if ret == 0xFF:
                if txn is not None and txn.fields.get("seq"):
                    # Follow-up of a fragmented answer (request sequence number != 0): the data
                    # continues the previous response without a header of its own.
                    out["fragment_data"] = items.hex()
                else:
                    self._decode(_UD_RESPONSE.get(grp, _ud_none), out, subf, ret, ts, frames, is_orig, items)
            more = (req_orig, grp, subf)
            if rec.get("last_data_unit") is False and "szl_id" in out:
                self.ud_more[more] = {"szl_id": out["szl_id"], "szl_index": out["szl_index"],
                                      "szl_name": out["szl_name"]}
            elif rec.get("last_data_unit"):
                self.ud_more.pop(more, None)
            self.conn.emit(PROTOCOL, action, out, t0, fl, req_orig)
            return
        rec["type"] = _name(UD_TYPES, typ, 1)                 # push: cyclic data, alarm indications
        rec["status"] = "one_way"
        if ret is not None:
            rec["return_code"] = _name(ITEM_RETURN_CODES, ret)
        if ret == 0xFF:
            self._decode(_UD_RESPONSE.get(grp, _ud_none), rec, subf, ret, ts, frames, is_orig, items)
        self.conn.emit(PROTOCOL, action, rec, ts, frames, is_orig)

    def _find(self, match) -> _Txn | None:
        """Pop the oldest pending request whose key satisfies `match(key, txn)`."""
        for key, (_t, txn) in self.pending.items.items():
            if match(key, txn):
                return self.pending.pop(key)
        return None

    # ------------------------------------------------------------------ S7comm-plus
    def _plus(self, is_orig: bool, p: bytes, ts: float, frames: list[int]) -> None:
        # A long message is sent in fragments that each start with the 4-byte header; only the last
        # ends with the trailer (0x72, version, 0x0000). The first fragment holds the header we decode.
        frag = self.plus_frag[is_orig]
        done = len(p) >= 8 and p[-4] == 0x72 and p[-3] == p[1] and p[-2] == 0 and p[-1] == 0
        if frag is not None:
            first, ffr, fts, size = frag
            ffr.extend(x for x in frames if x not in ffr)
            if not done and size + len(p) <= MAX_TSDU:
                self.plus_frag[is_orig] = (first, ffr, fts, size + len(p))
                return
            self.plus_frag[is_orig] = None
            p, frames, ts = first, ffr, fts
        elif not done and len(p) >= 8:
            self.plus_frag[is_orig] = (p, list(frames), ts, len(p))
            return
        rec, err = s7comm_plus.parse(p)
        if err is not None:
            self._weird("malformed_s7comm_plus", err, ts, frames, is_orig, PLUS)
        if rec is None:
            return
        op = rec.get("opcode_code")
        if op == s7comm_plus.OP_REQUEST and "seq" in rec and rec.get("transport_flags", 0) & 0x40:
            # Transport flag 0x40: no response expected (V3 SetVariable of HMI tag writes; seen
            # never answered in s7comm_plus.pcap, while 0x34/0x36 requests always are).
            rec["status"] = "one_way"
            return self.conn.emit(PLUS, s7comm_plus.action_of(rec), rec, ts, frames, is_orig)
        if op == s7comm_plus.OP_REQUEST and "seq" in rec:
            txn = _Txn(ts, frames, is_orig, rec, s7comm_plus.action_of(rec), PLUS)
            for old in self.pending.add(("plus", is_orig, rec["seq"]), ts, txn):
                self._unmatched(old)
            return
        if op in (s7comm_plus.OP_RESPONSE, s7comm_plus.OP_RESPONSE2) and "seq" in rec:
            txn = self.pending.pop(("plus", not is_orig, rec["seq"]))
            if txn is None:
                rec["status"] = "no_request"
                return self.conn.emit(PLUS, s7comm_plus.action_of(rec), rec, ts, frames, not is_orig)
            out = txn.fields
            out["status"] = "paired"
            out["latency"] = round(ts - txn.ts, 6)
            out["response_opcode"] = rec["opcode"]
            if rec.get("func_code") != out.get("func_code"):
                out["response_function"] = rec.get("function")
            for k in ("return_value", "session_id"):
                if k in rec and k not in out:
                    out[k] = rec[k]
            if "session_id" in rec and rec["session_id"] != out.get("session_id"):
                out["new_session_id"] = rec["session_id"]
            return self.conn.emit(PLUS, txn.action, out, txn.ts, txn.frames + frames, txn.is_orig)
        rec["status"] = "one_way"
        self.conn.emit(PLUS, s7comm_plus.action_of(rec), rec, ts, frames, is_orig)


# --- job parameter decoders (return an action override or None) ---------------------------------

def _job_setup(an: TcpAnalyzer, rec: dict, param: bytes, data: bytes) -> None:
    _, _, calling, called, pdu = _SETUP.unpack_from(param, 0)
    rec["max_amq_calling"], rec["max_amq_called"], rec["pdu_length"] = calling, called, pdu


def _ack_setup(an: TcpAnalyzer, rec: dict, param: bytes, data: bytes) -> None:
    if len(param) >= _SETUP.size:
        _, _, calling, called, pdu = _SETUP.unpack_from(param, 0)
        rec["response_max_amq_calling"], rec["response_max_amq_called"] = calling, called
        rec["response_pdu_length"] = pdu


def _parse_items(param: bytes) -> list[dict[str, Any]]:
    """Request items of read/write var (s7comm_decode_param_item): var spec 0x12, length, syntax id."""
    count = param[1]
    items: list[dict[str, Any]] = []
    off = 2
    for _ in range(count):
        if param[off] != 0x12:
            raise ValueError(f"item {len(items)}: variable specification 0x{param[off]:02x}")
        ilen, sid = param[off + 1], param[off + 2]
        body = param[off + 3:off + 2 + ilen]
        if len(body) != ilen - 1:
            raise ValueError(f"item {len(items)} cut short")
        it: dict[str, Any] = {"syntax": _name(SYNTAX_IDS, sid)}
        if sid == 0x10 and ilen >= 10:
            ts, length, db, area = _ANY.unpack_from(body, 0)
            addr = int.from_bytes(body[6:9], "big")
            an = _name(AREAS, area)
            it.update(transport_size=_name(TRANSPORT_SIZES, ts), length=length, area=an,
                      db=db if area in (0x84, 0x85) else 0)
            if area in (0x1C, 0x1D):                     # counters/timers are numbered, not byte.bit
                it["address"] = str(addr)
                it["ref"] = f"{an}:0:{addr}"
            else:
                it["address"] = f"{addr >> 3}.{addr & 7}"
                it["ref"] = item_ref(an, it["db"], addr >> 3, addr & 7)
        elif sid == 0xB0 and len(body) >= 1:             # DBREAD: several DB areas in one item
            n = body[0]
            areas = []
            for k in range(n):
                o = 1 + 5 * k
                if o + 5 > len(body):
                    raise ValueError("DBREAD area cut short")
                ln, db, start = body[o], _H.unpack_from(body, o + 1)[0], _H.unpack_from(body, o + 3)[0]
                areas.append({"length": ln, "db": db, "start": start, "ref": item_ref("DB", db, start, 0)})
            it["areas"] = areas
        else:
            it["raw"] = body.hex()
        items.append(it)
        off += 2 + ilen
    return items


def _data_items(data: bytes, count: int) -> list[tuple[dict[str, Any], int, int, bytes]]:
    """Data part items: return code, transport size, length (bits for sizes 3-5), data, fill byte.

    Returns (JSON item, return code, data transport size, raw data) per item.
    """
    out = []
    off = 0
    for i in range(count):
        if off + 4 > len(data):
            raise ValueError(f"data item {i} cut short")
        ret, dsize, ln = _DITEM.unpack_from(data, off)
        nbytes = (ln + 7) // 8 if dsize in _LEN_IN_BITS else ln
        d = data[off + 4:off + 4 + nbytes]
        if len(d) < nbytes:
            raise ValueError(f"data item {i}: {len(d)} of {nbytes} bytes")
        out.append(({"return_code": _name(ITEM_RETURN_CODES, ret),
                     "data_transport_size": _name(DATA_TRANSPORT_SIZES, dsize),
                     "data": d.hex(), "data_length": nbytes}, ret, dsize, d))
        off += 4 + nbytes
        if nbytes & 1 and i < count - 1:
            off += 1                                      # fill byte after odd-length items
    return out


def _job_read(an: TcpAnalyzer, rec: dict, param: bytes, data: bytes) -> None:
    items = _parse_items(param)
    rec["item_count"] = param[1]
    rec["items"] = items


def _ack_read(an: TcpAnalyzer, rec: dict, param: bytes, data: bytes) -> None:
    count = param[1] if len(param) > 1 else 0
    ditems = _data_items(data, count)
    items = rec.get("items") or [{} for _ in ditems]
    points = []
    for it, (d, ret, dsize, raw) in zip(items, ditems, strict=False):
        if ret == 0xFF and "ref" in it:
            points.append({"ref": it["ref"], "value": _value(TRANSPORT_CODES.get(it.get("transport_size"), 0),
                                                             raw, dsize),
                           "type": it.get("transport_size", d["data_transport_size"])})
        elif ret == 0xFF and it.get("areas"):
            points.append({"ref": it["areas"][0]["ref"], "value": d["data"], "type": "DBREAD"})
        it.update(d)
    if len(ditems) != len(items):
        rec["response_item_count"] = len(ditems)
    rec["items"] = items
    if points:
        rec["points"] = points


def _job_write(an: TcpAnalyzer, rec: dict, param: bytes, data: bytes) -> None:
    items = _parse_items(param)
    ditems = _data_items(data, len(items))
    points = []
    for it, (d, _ret, dsize, raw) in zip(items, ditems, strict=False):
        if "ref" in it:
            points.append({"ref": it["ref"], "value": _value(TRANSPORT_CODES.get(it.get("transport_size"), 0),
                                                             raw, dsize),
                           "type": it.get("transport_size")})
        it["data_transport_size"] = d["data_transport_size"]
        it["data"], it["data_length"] = d["data"], d["data_length"]
    rec["item_count"] = param[1]
    rec["items"] = items
    if points:
        rec["points"] = points


def _ack_write(an: TcpAnalyzer, rec: dict, param: bytes, data: bytes) -> None:
    items = rec.get("items") or []
    codes = [_name(ITEM_RETURN_CODES, c) for c in data]
    for it, c in zip(items, codes, strict=False):
        it["return_code"] = c
    if len(codes) != len(items):
        rec["response_return_codes"] = codes


def _filename(raw: bytes) -> dict[str, Any]:
    """Block file name "_" + type(2) + number(5) + filesystem(1), e.g. "_0A00001P" (DB1, passive)."""
    fn = raw.decode("latin-1")
    blk: dict[str, Any] = {"filename": fn}
    if len(fn) >= 9 and fn[0] == "_":
        blk["type"] = BLOCK_TYPES.get(fn[1:3], f"unknown-{fn[1:3]}")
        blk["number"] = int(fn[3:8]) if fn[3:8].isdigit() else fn[3:8]
        blk["filesystem"] = FILESYSTEMS.get(fn[8], f"unknown-{fn[8]}")
    return blk


def _job_blockctl(an: TcpAnalyzer, rec: dict, param: bytes, data: bytes) -> None:
    """Up/download jobs (s7comm_decode_plc_controls_updownload): status, upload id, file name."""
    fc = param[0]
    if len(param) < 8:
        return
    _, status, _unk, uid = _BLKCTL.unpack_from(param, 0)
    rec["function_status"] = status
    if fc in (0x1E, 0x1F):
        rec["upload_id"] = uid
    if len(param) > 8:
        flen = param[8]
        raw = param[9:9 + flen]
        if len(raw) < flen:
            raise ValueError("block file name cut short")
        rec["block"] = _filename(raw)
        off = 9 + flen
        if fc == 0x1A and off < len(param):               # request download: part 2 lengths
            p2 = param[off + 1:off + 1 + param[off]].decode("latin-1")
            if len(p2) >= 13 and p2[1:7].isdigit() and p2[7:13].isdigit():
                rec["load_memory_length"] = int(p2[1:7])
                rec["mc7_length"] = int(p2[7:13])


def _ack_blockctl(an: TcpAnalyzer, rec: dict, param: bytes, data: bytes) -> None:
    fc = param[0] if param else None
    if len(param) >= 2:
        rec["response_function_status"] = param[1]
    if fc == 0x1D and len(param) >= 9:                    # start upload: upload id, block length
        rec["upload_id"] = _I.unpack_from(param, 4)[0]
        ln = param[8]
        s = param[9:9 + ln].decode("latin-1")
        if s.isdigit():
            rec["block_length"] = int(s)
    elif fc in (0x1B, 0x1E) and len(data) >= 4:            # block data: length, 0x00fb, MC7 data
        rec["data_length"] = _H.unpack_from(data, 0)[0]


def _job_pi(an: TcpAnalyzer, rec: dict, param: bytes, data: bytes) -> str:
    """PI service (s7comm_decode_pi_service): 7 unknown bytes, parameter block, service name."""
    if len(param) < 10:
        raise ValueError("PI service parameter cut short")
    blen = _H.unpack_from(param, 8)[0]
    block = param[10:10 + blen]
    off = 10 + blen
    if off >= len(param):
        raise ValueError("PI service name missing")
    slen = param[off]
    name = param[off + 1:off + 1 + slen].decode("latin-1")
    rec["pi_service"] = name
    if name in PI_SERVICE_NAMES:
        rec["pi_service_description"] = PI_SERVICE_NAMES[name]
    if name in ("_INSE", "_DELE") and len(block) >= 2:
        blocks = []
        for k in range(block[0]):
            o = 2 + 8 * k
            fn = block[o:o + 8]
            if len(fn) < 8:
                break
            blocks.append(_filename(b"_" + fn))
        rec["blocks"] = blocks
    else:
        rec["pi_params"] = block.decode("latin-1")
        if name == "P_PROGRAM":
            rec["restart"] = "COLD" if block.strip().upper().startswith(b"C") else "WARM"
    return PI_SERVICES.get(name, "control")


def _job_stop(an: TcpAnalyzer, rec: dict, param: bytes, data: bytes) -> None:
    if len(param) >= 7:
        ln = param[6]
        rec["pi_service"] = param[7:7 + ln].decode("latin-1")


_JOB_DECODERS = {0xF0: _job_setup, 0x04: _job_read, 0x05: _job_write, 0x1A: _job_blockctl,
                 0x1B: _job_blockctl, 0x1C: _job_blockctl, 0x1D: _job_blockctl, 0x1E: _job_blockctl,
                 0x1F: _job_blockctl, 0x28: _job_pi, 0x29: _job_stop}
_ACK_DECODERS = {0xF0: _ack_setup, 0x04: _ack_read, 0x05: _ack_write, 0x1A: _ack_blockctl,
                 0x1B: _ack_blockctl, 0x1C: _ack_blockctl, 0x1D: _ack_blockctl, 0x1E: _ack_blockctl,
                 0x1F: _ack_blockctl}


# --- userdata data decoders ----------------------------------------------------------------------

def _ud_none(an: TcpAnalyzer, rec: dict, subf: int, ret: int | None, d: bytes) -> None:
    return None


def _ud_cpu_req(an: TcpAnalyzer, rec: dict, subf: int, ret: int | None, d: bytes) -> None:
    if subf == 0x01 and len(d) >= 4:
        rec["szl_id"], rec["szl_index"] = _HH.unpack_from(d, 0)
        rec["szl_name"] = _name(SZL_NAMES, rec["szl_id"] & 0xFF)


def _identity_0011(ident: dict, entries: list[bytes]) -> None:
    """SZL 0x0011/0x0111 module identification: index, MLFB(20), BGTyp, Ausbg, Ausbe."""
    for e in entries:
        if len(e) < 28:
            continue
        idx = _H.unpack_from(e, 0)[0]
        mlfb = _ascii(e[2:22])
        ausbg, ausbe = _HH.unpack_from(e, 24)
        if idx == 0x0001:
            if mlfb:
                ident["order_number"] = mlfb
        elif idx == 0x0006:
            if mlfb and "order_number" not in ident:
                ident["order_number"] = mlfb
            ident["hardware"] = str(ausbe) if ausbg >> 8 != 0x56 else \
                f"V{ausbg & 0xFF}.{ausbe >> 8}.{ausbe & 0xFF}"
        elif idx == 0x0007:
            ident["firmware"] = f"V{ausbg & 0xFF}.{ausbe >> 8}.{ausbe & 0xFF}"


def _identity_001c(ident: dict, entries: list[bytes]) -> None:
    """SZL 0x001C/0x011C component identification: index then 32 bytes (names, serials...)."""
    for e in entries:
        if len(e) < 4:
            continue
        idx = _H.unpack_from(e, 0)[0]
        key = SZL_1C_KEYS.get(idx)
        if key is not None:
            v = _ascii(e[2:34])
            if v:
                ident[key] = v


def _ud_cpu_rsp(an: TcpAnalyzer, rec: dict, subf: int, ret: int | None, d: bytes) -> None:
    """Read SZL response: SZL-ID, index, entry length, entry count, entries."""
    if subf != 0x01 or len(d) < 8:
        return
    sid, sidx, elen, ecount = struct.unpack_from("!HHHH", d, 0)
    if "szl_id" not in rec:                               # unpaired or follow-up fragment
        rec["szl_id"], rec["szl_index"] = sid, sidx
        rec["szl_name"] = _name(SZL_NAMES, sid & 0xFF)
    elif (sid, sidx) != (rec["szl_id"], rec["szl_index"]):
        rec["response_szl_id"], rec["response_szl_index"] = sid, sidx
    body = d[8:]
    rec["szl_entry_length"], rec["szl_entry_count"] = elen, ecount
    rec["szl_data"] = body.hex()
    entries = [body[i:i + elen] for i in range(0, min(len(body), elen * ecount), elen)] if elen else []
    ident: dict[str, Any] = {}
    part = sid & 0xFF
    if part == 0x11:
        _identity_0011(ident, entries)
    elif part == 0x1C:
        _identity_001c(ident, entries)
    elif part == 0x24 and entries and len(entries[0]) >= 4:
        rec["cpu_mode"] = _name(MODES, entries[0][3])      # SZL 0x0424: ae = current mode
    if ident:
        ident["vendor"] = "Siemens"
        rec["identity"] = ident
        rec["identity_of"] = "dst"


def _ud_time_req(an: TcpAnalyzer, rec: dict, subf: int, ret: int | None, d: bytes) -> None:
    if subf in (0x02, 0x04) and len(d) >= 10:
        rec["clock"] = _s7_time(d[2:10])


def _ud_time_rsp(an: TcpAnalyzer, rec: dict, subf: int, ret: int | None, d: bytes) -> None:
    if subf in (0x01, 0x03) and len(d) >= 10:
        rec["clock"] = _s7_time(d[2:10])


def _ud_security_req(an: TcpAnalyzer, rec: dict, subf: int, ret: int | None, d: bytes) -> None:
    if subf == PASSWORD_SUBFUNC:
        # The password itself (8 bytes, XOR-scrambled) is never stored: only that it was sent.
        rec["password_sent"] = True
        rec["password_length"] = len(d.rstrip(b"\x00")) if d else 0


def _ud_mode_req(an: TcpAnalyzer, rec: dict, subf: int, ret: int | None, d: bytes) -> None:
    rec["mode"] = _name(MODES, subf)


def _ud_block_req(an: TcpAnalyzer, rec: dict, subf: int, ret: int | None, d: bytes) -> None:
    if subf == 0x02 and len(d) >= 2:
        rec["block_type"] = BLOCK_TYPES.get(d[:2].decode("latin-1"), f"unknown-{d[:2].hex()}")
    elif subf == 0x03 and len(d) >= 8:
        rec["block"] = _filename(b"_" + d[:8])


def _ud_programmer_rsp(an: TcpAnalyzer, rec: dict, subf: int, ret: int | None, d: bytes) -> None:
    return None


_UD_REQUEST = {0x0: _ud_mode_req, 0x3: _ud_block_req, 0x4: _ud_cpu_req, 0x5: _ud_security_req,
               0x7: _ud_time_req}
_UD_RESPONSE = {0x1: _ud_programmer_rsp, 0x4: _ud_cpu_rsp, 0x7: _ud_time_rsp}


def probe(data: bytes, is_orig: bool) -> bool:
    """TPKT version 3 with a plausible length and a COTP TPDU code (CR/CC/DT/DR/DC/ER)."""
    if len(data) < 7 or data[0] != 3 or data[1] != 0:
        return False
    n = (data[2] << 8) | data[3]
    if n < 7 or data[4] + 5 > n:
        return False
    return data[5] & 0xF0 in cotp.TPDU_NAMES
