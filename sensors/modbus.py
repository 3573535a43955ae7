"""Modbus/TCP (and Modbus over UDP): MBAP header + PDU.

References: MODBUS Application Protocol Specification V1.1b3 ("AP" below: section 4.1 PDU, 6.x one
section per function code, 7 exception codes) and MODBUS Messaging on TCP/IP Implementation Guide
V1.0b ("TCP" below: section 3.1.3 MBAP header).

Events (kind "modbus"): one per transaction. The request and its response are paired by transaction
identifier within the connection (TCP 3.1.3: the server echoes it); the event carries both frames,
`status` ("paired", "no_response", "no_request") and `latency`. Its `ts` is the request's (the
response's for "no_request"). `src` is always the client, also when the capture shows the server
opening the connection from port 502 (then the originator's PDUs are the responses).

The record is declared once in `FIELDS` (name -> meaning); every key an event may carry is there.
Malformed PDUs (truncated, wrong byte count, out-of-range quantity, trailing bytes) give a `weird`
event and still a transaction with what could be decoded, so pairing carries on. A bad MBAP header
(protocol id not 0, length outside 2..254: TCP 3.1.3, AP 4.1) drops the buffered bytes of that
direction and parsing starts over at the next segment.

Hot path: `struct.Struct.unpack_from` on the reassembled PDU, dispatch through the module-level
REQUEST/RESPONSE tables, one dict per transaction (it becomes the event's `fields`).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from sensors import base
from sensors.base import Analyzer, Frames, Pending, StreamBuffer

PROTOCOL = "modbus"
TCP_PORTS = (502,)
UDP_PORTS = (502,)
ROLES = ("client", "server")

MBAP_LEN = 7                 # transaction id, protocol id, length, unit id (TCP 3.1.3)
MAX_LENGTH = 254             # length field = unit id + PDU; PDU <= 253 bytes (AP 4.1)
REQUEST_TIMEOUT = 60.0       # seconds of capture time before a request counts as unanswered
EXPIRE_EVERY = 10.0          # how often (capture time) pending requests are checked for expiry
MAX_PENDING = 1024           # outstanding requests per connection

# The protocol record: every key a "modbus" event's `fields` may hold (style.md section 3).
FIELDS: dict[str, str] = {
    "trans_id": "MBAP transaction identifier (TCP 3.1.3)",
    "unit_id": "MBAP unit identifier (the request's; the response's when there is no request)",
    "func_code": "function code without the exception bit (AP 5.1)",
    "func": "function name (FUNCTIONS), e.g. READ_HOLDING_REGISTERS, or unknown-0xNN",
    "status": "paired | no_response | no_request",
    "latency": "seconds from request to response (paired only)",
    "exception": "exception name when the response has the 0x80 bit (AP 7), or unknown-0xNN",
    "exception_code": "exception code number",
    "response_func_code": "the response's function code when it differs from the request's",
    "response_unit_id": "the response's unit id when it differs from the request's",
    "address": "first coil/input/register (zero-based, as on the wire); FC24 FIFO pointer address",
    "quantity": "number of coils/inputs/registers (1 for FC5/FC6; FC24: FIFO count of the response)",
    "values": "values read (response) or written (request): bools for coils/inputs, ints for registers; "
              "FC8: counter or register returned",
    "sub_function": "FC8 diagnostics sub-function code (AP 6.8.1)",
    "sub_function_name": "FC8 sub-function name (DIAG_SUBFUNCTIONS) or unknown-0xNNNN",
    "data": "request data as hex: FC8 data field, FC43/13 CANopen data, unknown function codes",
    "response_data": "response data as hex, same cases as `data`",
    "and_mask": "FC22 AND mask",
    "or_mask": "FC22 OR mask",
    "read_address": "FC23 read starting address",
    "read_quantity": "FC23 quantity to read",
    "write_address": "FC23 write starting address",
    "write_quantity": "FC23 quantity to write",
    "write_values": "FC23 register values written",
    "read_values": "FC23 register values read",
    "file_records": "FC20/FC21 sub-requests: [{file, record, length, data (words; FC20 from the response)}]",
    "exception_status": "FC7 exception status byte (eight exception status outputs)",
    "busy": "FC11/FC12 status word is 0xFFFF (a previous program command still running)",
    "event_count": "FC11/FC12 event counter",
    "message_count": "FC12 message counter",
    "events": "FC12 event bytes, most recent first",
    "server_id": "FC17 server id: hex for a 1-byte id, else text when printable, else hex",
    "run_indicator": "FC17 run indicator status: ON (0xFF) | OFF (0x00)",
    "server_data": "FC17 additional device-specific data (text when printable, else hex)",
    "mei_type": "FC43 MEI type: 13 CANopen general reference, 14 read device identification (AP 6.19)",
    "mei": "FC43 MEI type name (MEI_TYPES) or unknown-0xNN",
    "read_device_id": "FC43/14 read device id code: 1 basic, 2 regular, 3 extended, 4 one object",
    "object_id": "FC43/14 object id requested (first object for codes 1-3)",
    "conformity_level": "FC43/14 conformity level of the device",
    "more_follows": "FC43/14 more objects are available (another transaction is needed)",
    "next_object_id": "FC43/14 object id to ask for next when more_follows",
    "objects": "FC43/14 objects returned: {name (DEVICE_OBJECTS or object_0xNN): value}",
    "identity": "device identity from FC43/14 objects (vendor, product_code, firmware, url, product, "
                "model, name), of the server (dst)",
}

# Public function codes (AP 5.1 and 6): code -> (name, action). Actions (icsight.events.ACTIONS):
# data access is read/write; 7, 8, 11, 12 are the "Diagnostics" category of AP 5.1 (serial-line and
# device status, no process data) and are "diagnose"; 17 and 43 identify the device: "discover".
# 23 writes and then reads: "write". Unknown codes: "other".
FUNCTIONS: dict[int, tuple[str, str]] = {
    0x01: ("READ_COILS", "read"),
    0x02: ("READ_DISCRETE_INPUTS", "read"),
    0x03: ("READ_HOLDING_REGISTERS", "read"),
    0x04: ("READ_INPUT_REGISTERS", "read"),
    0x05: ("WRITE_SINGLE_COIL", "write"),
    0x06: ("WRITE_SINGLE_REGISTER", "write"),
    0x07: ("READ_EXCEPTION_STATUS", "diagnose"),
    0x08: ("DIAGNOSTICS", "diagnose"),
    0x0B: ("GET_COMM_EVENT_COUNTER", "diagnose"),
    0x0C: ("GET_COMM_EVENT_LOG", "diagnose"),
    0x0F: ("WRITE_MULTIPLE_COILS", "write"),
    0x10: ("WRITE_MULTIPLE_REGISTERS", "write"),
    0x11: ("REPORT_SERVER_ID", "discover"),
    0x14: ("READ_FILE_RECORD", "read"),
    0x15: ("WRITE_FILE_RECORD", "write"),
    0x16: ("MASK_WRITE_REGISTER", "write"),
    0x17: ("READ_WRITE_MULTIPLE_REGISTERS", "write"),
    0x18: ("READ_FIFO_QUEUE", "read"),
    0x2B: ("ENCAPSULATED_INTERFACE_TRANSPORT", "discover"),
}
_UNKNOWN = tuple(f"unknown-0x{i:02x}" for i in range(256))
_FUNC = tuple(FUNCTIONS.get(i, (_UNKNOWN[i], "other")) for i in range(256))

# Exception codes (AP 7). 7 is from the older Modicon reference (tshark and Zeek name it too).
EXCEPTIONS: dict[int, str] = {
    0x01: "ILLEGAL_FUNCTION",
    0x02: "ILLEGAL_DATA_ADDRESS",
    0x03: "ILLEGAL_DATA_VALUE",
    0x04: "SERVER_DEVICE_FAILURE",
    0x05: "ACKNOWLEDGE",
    0x06: "SERVER_DEVICE_BUSY",
    0x07: "NEGATIVE_ACKNOWLEDGE",
    0x08: "MEMORY_PARITY_ERROR",
    0x0A: "GATEWAY_PATH_UNAVAILABLE",
    0x0B: "GATEWAY_TARGET_DEVICE_FAILED_TO_RESPOND",
}

# FC8 sub-functions (AP 6.8.1). 0x13 and 0x15 are from the older Modicon reference.
DIAG_SUBFUNCTIONS: dict[int, str] = {
    0x00: "RETURN_QUERY_DATA",
    0x01: "RESTART_COMMUNICATIONS_OPTION",
    0x02: "RETURN_DIAGNOSTIC_REGISTER",
    0x03: "CHANGE_ASCII_INPUT_DELIMITER",
    0x04: "FORCE_LISTEN_ONLY_MODE",
    0x0A: "CLEAR_COUNTERS_AND_DIAGNOSTIC_REGISTER",
    0x0B: "RETURN_BUS_MESSAGE_COUNT",
    0x0C: "RETURN_BUS_COMMUNICATION_ERROR_COUNT",
    0x0D: "RETURN_BUS_EXCEPTION_ERROR_COUNT",
    0x0E: "RETURN_SERVER_MESSAGE_COUNT",
    0x0F: "RETURN_SERVER_NO_RESPONSE_COUNT",
    0x10: "RETURN_SERVER_NAK_COUNT",
    0x11: "RETURN_SERVER_BUSY_COUNT",
    0x12: "RETURN_BUS_CHARACTER_OVERRUN_COUNT",
    0x13: "RETURN_IOP_OVERRUN_COUNT",
    0x14: "CLEAR_OVERRUN_COUNTER_AND_FLAG",
    0x15: "GET_CLEAR_MODBUS_PLUS_STATISTICS",
}
# Sub-functions whose response data is a counter or register (AP 6.8.1): its value goes to `values`.
_DIAG_COUNTERS = frozenset({0x02, *range(0x0B, 0x14)})

# FC43 MEI types (AP 6.19-6.21) and the read device id codes / objects of MEI 14 (AP 6.21).
MEI_TYPES = {0x0D: "CANOPEN_GENERAL_REFERENCE", 0x0E: "READ_DEVICE_IDENTIFICATION"}
READ_DEVICE_ID_CODES = {1: "BASIC", 2: "REGULAR", 3: "EXTENDED", 4: "SPECIFIC"}
DEVICE_OBJECTS = {
    0x00: "VendorName", 0x01: "ProductCode", 0x02: "MajorMinorRevision", 0x03: "VendorUrl",
    0x04: "ProductName", 0x05: "ModelName", 0x06: "UserApplicationName",
}
# Device objects -> identity keys (base.py conventions).
IDENTITY_KEYS = {
    "VendorName": "vendor", "ProductCode": "product_code", "MajorMinorRevision": "firmware",
    "VendorUrl": "url", "ProductName": "product", "ModelName": "model", "UserApplicationName": "name",
}

# Spec limits on quantities (AP 6.1-6.4, 6.11, 6.12, 6.17).
_READ_LIMIT = {0x01: 2000, 0x02: 2000, 0x03: 125, 0x04: 125}
# Point types per function (base.py `points`): coil, di (discrete input), hr, ir.
_POINT_TYPE = {0x01: "coil", 0x02: "di", 0x03: "hr", 0x04: "ir", 0x05: "coil", 0x06: "hr",
               0x0F: "coil", 0x10: "hr"}

_HH = struct.Struct("!HH")
_HHH = struct.Struct("!HHH")
_HHHH = struct.Struct("!HHHH")
_H = struct.Struct("!H")
_MBAP = struct.Struct("!HHHBB")          # + function code
_FILE_REQ = struct.Struct("!BHHH")       # reference type, file number, record number, record length
_WORDS = tuple(struct.Struct(f"!{i}H") for i in range(128))
_BITS = tuple(tuple(bool(b >> i & 1) for i in range(8)) for b in range(256))

Problem = tuple[str, str] | None


def _words(p: bytes, off: int, n: int) -> list[int]:
    """n big-endian 16-bit words at p[off:] (the caller checked the length)."""
    return list((_WORDS[n] if n < 128 else struct.Struct(f"!{n}H")).unpack_from(p, off))


def _bits(data: bytes, n: int | None) -> list[bool]:
    """Coil/input bits, LSB of the first byte first (AP 6.1); the first n (all when n is None)."""
    out: list[bool] = []
    for b in data:
        out += _BITS[b]
    if n is not None:
        del out[n:]
    return out


def _text(b: bytes) -> str:
    """Device strings: printable text (UTF-8, else Latin-1; NUL padding dropped), else hex."""
    s = bytes(b).rstrip(b"\x00")
    try:
        t = s.decode("utf-8")
    except UnicodeDecodeError:
        t = s.decode("latin-1")
    return t if t.isprintable() else bytes(b).hex()


def _short(p: bytes, need: int, what: str) -> Problem:
    return "truncated_pdu", f"{what}: PDU needs {need - MBAP_LEN} bytes, has {len(p) - MBAP_LEN}"


def _trailing(p: bytes, size: int, what: str) -> Problem:
    return "trailing_data", f"{what}: {len(p) - size} bytes after the PDU's fields"


def _quantity(q: int, lo: int, hi: int, what: str) -> Problem:
    return "bad_quantity", f"{what}: quantity {q} outside {lo}..{hi}"


# --- requests (client -> server): parser(p, f) fills f from the PDU p (MBAP included) ----------

def _rq_read(p: bytes, f: dict[str, Any]) -> Problem:
    """FC1-4 (AP 6.1-6.4): starting address, quantity."""
    if len(p) < 12:
        return _short(p, 12, f["func"])
    a, q = _HH.unpack_from(p, 8)
    f["address"], f["quantity"] = a, q
    hi = _READ_LIMIT[p[7]]
    if not 1 <= q <= hi:
        return _quantity(q, 1, hi, f["func"])
    if a + q > 0x10000:
        return "bad_address_range", f"{f['func']}: address {a} + quantity {q} passes 65535"
    if len(p) > 12:
        return _trailing(p, 12, f["func"])
    return None


def _rq_empty(p: bytes, f: dict[str, Any]) -> Problem:
    """FC7, 11, 12, 17: the request is the function code alone (AP 6.7, 6.9, 6.10, 6.13)."""
    if len(p) > 8:
        return _trailing(p, 8, f["func"])
    return None


def _coil_value(v: int, f: dict[str, Any]) -> Problem:
    if v == 0xFF00:
        f["values"] = [True]
    elif v == 0:
        f["values"] = [False]
    else:
        return "bad_coil_value", f"{f['func']}: output value 0x{v:04x} is neither 0xFF00 nor 0x0000"
    return None


def _rq_single(p: bytes, f: dict[str, Any]) -> Problem:
    """FC5 (AP 6.5: 0xFF00 on, 0x0000 off) and FC6 (AP 6.6): address, value."""
    if len(p) < 12:
        return _short(p, 12, f["func"])
    a, v = _HH.unpack_from(p, 8)
    f["address"], f["quantity"] = a, 1
    if p[7] == 0x05:
        bad = _coil_value(v, f)
        if bad:
            return bad
    else:
        f["values"] = [v]
    if len(p) > 12:
        return _trailing(p, 12, f["func"])
    return None


def _rq_diag(p: bytes, f: dict[str, Any]) -> Problem:
    """FC8 (AP 6.8): sub-function, data."""
    if len(p) < 10:
        return _short(p, 10, f["func"])
    sf = _H.unpack_from(p, 8)[0]
    f["sub_function"] = sf
    f["sub_function_name"] = DIAG_SUBFUNCTIONS.get(sf) or f"unknown-0x{sf:04x}"
    f["data"] = p[10:].hex()
    n = len(p) - 10
    if (sf == 0 and n & 1) or (sf != 0 and sf in DIAG_SUBFUNCTIONS and n != 2):
        want = "N x 2" if sf == 0 else "2"
        return "bad_data_length", f"{f['sub_function_name']}: {n} data bytes (AP 6.8.1: {want})"
    return None


def _rq_write_coils(p: bytes, f: dict[str, Any]) -> Problem:
    """FC15 (AP 6.11): address, quantity, byte count, packed outputs."""
    if len(p) < 13:
        return _short(p, 13, f["func"])
    a, q = _HH.unpack_from(p, 8)
    bc = p[12]
    f["address"], f["quantity"] = a, q
    f["values"] = _bits(p[13:13 + bc], q)
    if not 1 <= q <= 0x7B0:
        return _quantity(q, 1, 0x7B0, f["func"])
    if bc != (q + 7) >> 3:
        return "byte_count_mismatch", f"{f['func']}: byte count {bc} for {q} coils"
    if len(p) < 13 + bc:
        return _short(p, 13 + bc, f["func"])
    if len(p) > 13 + bc:
        return _trailing(p, 13 + bc, f["func"])
    return None


def _rq_write_regs(p: bytes, f: dict[str, Any]) -> Problem:
    """FC16 (AP 6.12): address, quantity, byte count, register values."""
    if len(p) < 13:
        return _short(p, 13, f["func"])
    a, q = _HH.unpack_from(p, 8)
    bc = p[12]
    f["address"], f["quantity"] = a, q
    have = min(bc, len(p) - 13) >> 1
    f["values"] = _words(p, 13, min(have, q))
    if not 1 <= q <= 0x7B:
        return _quantity(q, 1, 0x7B, f["func"])
    if bc != 2 * q:
        return "byte_count_mismatch", f"{f['func']}: byte count {bc} for {q} registers"
    if len(p) < 13 + bc:
        return _short(p, 13 + bc, f["func"])
    if len(p) > 13 + bc:
        return _trailing(p, 13 + bc, f["func"])
    return None


def _rq_read_file(p: bytes, f: dict[str, Any]) -> Problem:
    """FC20 (AP 6.14): byte count, then 7-byte sub-requests (reference type 6, file, record, length)."""
    if len(p) < 9:
        return _short(p, 9, f["func"])
    bc = p[8]
    end = min(9 + bc, len(p))
    recs = f["file_records"] = []
    bad: Problem = None
    off = 9
    while off + 7 <= end:
        rt, fn, rn, rl = _FILE_REQ.unpack_from(p, off)
        recs.append({"file": fn, "record": rn, "length": rl})
        if rt != 6 and bad is None:
            bad = "bad_reference_type", f"{f['func']}: reference type {rt} (must be 6)"
        off += 7
    if bc % 7:
        return "byte_count_mismatch", f"{f['func']}: byte count {bc} is not a multiple of 7"
    if len(p) < 9 + bc:
        return _short(p, 9 + bc, f["func"])
    if len(p) > 9 + bc:
        return _trailing(p, 9 + bc, f["func"])
    return bad


def _file_records_with_data(p: bytes, f: dict[str, Any], key: str) -> Problem:
    """FC21 request and response (AP 6.15): byte count, then (type 6, file, record, length, data)."""
    if len(p) < 9:
        return _short(p, 9, f["func"])
    bc = p[8]
    end = min(9 + bc, len(p))
    recs: list[dict[str, Any]] = []
    f[key] = recs
    bad: Problem = None
    off = 9
    while off + 7 <= end:
        rt, fn, rn, rl = _FILE_REQ.unpack_from(p, off)
        off += 7
        n = min(rl, (end - off) >> 1)
        recs.append({"file": fn, "record": rn, "length": rl, "data": _words(p, off, n)})
        off += 2 * rl
        if rt != 6 and bad is None:
            bad = "bad_reference_type", f"{f['func']}: reference type {rt} (must be 6)"
    if off != 9 + bc:
        return "byte_count_mismatch", f"{f['func']}: byte count {bc} does not match its sub-requests"
    if len(p) < 9 + bc:
        return _short(p, 9 + bc, f["func"])
    if len(p) > 9 + bc:
        return _trailing(p, 9 + bc, f["func"])
    return bad


def _rq_write_file(p: bytes, f: dict[str, Any]) -> Problem:
    return _file_records_with_data(p, f, "file_records")


def _rq_mask(p: bytes, f: dict[str, Any]) -> Problem:
    """FC22 (AP 6.16): address, AND mask, OR mask."""
    if len(p) < 14:
        return _short(p, 14, f["func"])
    f["address"], f["and_mask"], f["or_mask"] = _HHH.unpack_from(p, 8)
    if len(p) > 14:
        return _trailing(p, 14, f["func"])
    return None


def _rq_read_write(p: bytes, f: dict[str, Any]) -> Problem:
    """FC23 (AP 6.17): read address/quantity, write address/quantity, byte count, write values."""
    if len(p) < 17:
        return _short(p, 17, f["func"])
    ra, rq, wa, wq = _HHHH.unpack_from(p, 8)
    bc = p[16]
    f["read_address"], f["read_quantity"], f["write_address"], f["write_quantity"] = ra, rq, wa, wq
    f["write_values"] = _words(p, 17, min(wq, min(bc, len(p) - 17) >> 1))
    if not 1 <= rq <= 0x7D:
        return _quantity(rq, 1, 0x7D, f["func"] + " read")
    if not 1 <= wq <= 0x79:
        return _quantity(wq, 1, 0x79, f["func"] + " write")
    if bc != 2 * wq:
        return "byte_count_mismatch", f"{f['func']}: write byte count {bc} for {wq} registers"
    if len(p) < 17 + bc:
        return _short(p, 17 + bc, f["func"])
    if len(p) > 17 + bc:
        return _trailing(p, 17 + bc, f["func"])
    return None


def _rq_fifo(p: bytes, f: dict[str, Any]) -> Problem:
    """FC24 (AP 6.18): FIFO pointer address."""
    if len(p) < 10:
        return _short(p, 10, f["func"])
    f["address"] = _H.unpack_from(p, 8)[0]
    if len(p) > 10:
        return _trailing(p, 10, f["func"])
    return None


def _mei(p: bytes, f: dict[str, Any]) -> int | None:
    if len(p) < 9:
        return None
    m = p[8]
    f["mei_type"] = m
    f["mei"] = MEI_TYPES.get(m) or _UNKNOWN[m]
    return m


def _rq_mei(p: bytes, f: dict[str, Any]) -> Problem:
    """FC43 (AP 6.19-6.21): MEI type; MEI 14: read device id code, object id; others: raw data."""
    m = _mei(p, f)
    if m is None:
        return _short(p, 9, f["func"])
    if m != 0x0E:
        f["data"] = p[9:].hex()
        return None
    if len(p) < 11:
        return _short(p, 11, f["func"] + "/14")
    f["read_device_id"], f["object_id"] = p[9], p[10]
    if p[9] not in READ_DEVICE_ID_CODES:
        return "bad_read_device_id", f"read device id code {p[9]} (must be 1..4)"
    if len(p) > 11:
        return _trailing(p, 11, f["func"] + "/14")
    return None


def _rq_unknown(p: bytes, f: dict[str, Any]) -> Problem:
    if len(p) > 8:
        f["data"] = p[8:].hex()
    return None


# --- responses (server -> client): parser(p, f, paired) adds the response's fields to f --------
# `paired`: f holds the request's fields (same function code), so echoes can be checked and bit
# counts trimmed to the requested quantity.

def _byte_count(p: bytes, f: dict[str, Any], off: int, bc: int) -> Problem:
    if len(p) < off + bc:
        return _short(p, off + bc, f["func"] + " response")
    if len(p) > off + bc:
        return _trailing(p, off + bc, f["func"] + " response")
    return None


def _rs_bits(p: bytes, f: dict[str, Any], paired: bool) -> Problem:
    """FC1/2 response (AP 6.1, 6.2): byte count, packed bits (padding bits dropped)."""
    if len(p) < 9:
        return _short(p, 9, f["func"] + " response")
    bc = p[8]
    q = f.get("quantity") if paired else None
    f["values"] = _bits(p[9:9 + bc], q)
    if q is not None and bc != (q + 7) >> 3:
        return "byte_count_mismatch", f"{f['func']} response: byte count {bc} for {q} requested bits"
    return _byte_count(p, f, 9, bc)


def _rs_regs(p: bytes, f: dict[str, Any], paired: bool) -> Problem:
    """FC3/4 response (AP 6.3, 6.4): byte count, register values."""
    if len(p) < 9:
        return _short(p, 9, f["func"] + " response")
    bc = p[8]
    f["values"] = _words(p, 9, min(bc, len(p) - 9) >> 1)
    q = f.get("quantity") if paired else None
    if bc & 1 or (q is not None and bc != 2 * q):
        return "byte_count_mismatch", f"{f['func']} response: byte count {bc} for {q} requested registers"
    return _byte_count(p, f, 9, bc)


def _echo(f: dict[str, Any], key: str, got: Any) -> Problem:
    want = f.get(key)
    if want != got:
        return "echo_mismatch", f"{f['func']} response {key} {got!r}, request {want!r}"
    return None


def _rs_single(p: bytes, f: dict[str, Any], paired: bool) -> Problem:
    """FC5/6 response (AP 6.5, 6.6): echo of address and value."""
    if len(p) < 12:
        return _short(p, 12, f["func"] + " response")
    a, v = _HH.unpack_from(p, 8)
    if not paired or "address" not in f:
        f["address"], f["quantity"] = a, 1
        if p[7] == 0x05:
            bad = _coil_value(v, f)
        else:
            f["values"], bad = [v], None
    else:
        got = ([v == 0xFF00] if v in (0, 0xFF00) else [v]) if p[7] == 0x05 else [v]
        bad = _echo(f, "address", a) or _echo(f, "values", got)
    return bad or (_trailing(p, 12, f["func"] + " response") if len(p) > 12 else None)


def _rs_multi(p: bytes, f: dict[str, Any], paired: bool) -> Problem:
    """FC15/16 response (AP 6.11, 6.12): echo of address and quantity."""
    if len(p) < 12:
        return _short(p, 12, f["func"] + " response")
    a, q = _HH.unpack_from(p, 8)
    if not paired or "address" not in f:
        f["address"], f["quantity"] = a, q
        bad = None
    else:
        bad = _echo(f, "address", a) or _echo(f, "quantity", q)
    return bad or (_trailing(p, 12, f["func"] + " response") if len(p) > 12 else None)


def _rs_exc_status(p: bytes, f: dict[str, Any], paired: bool) -> Problem:
    """FC7 response (AP 6.7): one byte of exception status outputs."""
    if len(p) < 9:
        return _short(p, 9, f["func"] + " response")
    f["exception_status"] = p[8]
    return _trailing(p, 9, f["func"] + " response") if len(p) > 9 else None


def _rs_diag(p: bytes, f: dict[str, Any], paired: bool) -> Problem:
    """FC8 response (AP 6.8): sub-function echo and data (echo, counter or register)."""
    if len(p) < 10:
        return _short(p, 10, f["func"] + " response")
    sf = _H.unpack_from(p, 8)[0]
    data = p[10:]
    f["response_data"] = data.hex()
    if sf in _DIAG_COUNTERS and len(data) == 2:
        f["values"] = [_H.unpack_from(data, 0)[0]]
    if not paired or "sub_function" not in f:
        f["sub_function"] = sf
        f["sub_function_name"] = DIAG_SUBFUNCTIONS.get(sf) or f"unknown-0x{sf:04x}"
        return None
    return _echo(f, "sub_function", sf)


def _rs_comm_counter(p: bytes, f: dict[str, Any], paired: bool) -> Problem:
    """FC11 response (AP 6.9): status word, event count."""
    if len(p) < 12:
        return _short(p, 12, f["func"] + " response")
    st, f["event_count"] = _HH.unpack_from(p, 8)
    f["busy"] = st == 0xFFFF
    return _trailing(p, 12, f["func"] + " response") if len(p) > 12 else None


def _rs_comm_log(p: bytes, f: dict[str, Any], paired: bool) -> Problem:
    """FC12 response (AP 6.10): byte count, status, event count, message count, events."""
    if len(p) < 15:
        return _short(p, 15, f["func"] + " response")
    bc = p[8]
    st, f["event_count"], f["message_count"] = _HHH.unpack_from(p, 9)
    f["busy"] = st == 0xFFFF
    f["events"] = list(p[15:9 + bc])
    if bc < 6:
        return "byte_count_mismatch", f"{f['func']} response: byte count {bc} < 6"
    return _byte_count(p, f, 9, bc)


def _rs_server_id(p: bytes, f: dict[str, Any], paired: bool) -> Problem:
    """FC17 response (AP 6.13): byte count, server id, run indicator, additional data.

    The server id's length is device specific. Devices put a 1-byte id first and the run indicator
    (0x00/0xFF) second (Wingpath, Schneider), or an id string followed by the indicator as the last
    byte (pymodbus, the Zeek test trace): both layouts are recognised, else the data stays whole.
    """
    if len(p) < 9:
        return _short(p, 9, f["func"] + " response")
    bc = p[8]
    d = p[9:9 + bc]
    if len(d) >= 2 and d[1] in (0x00, 0xFF):
        f["server_id"] = d[:1].hex()
        f["run_indicator"] = "ON" if d[1] else "OFF"
        if len(d) > 2:
            f["server_data"] = _text(d[2:])
    elif len(d) >= 2 and d[-1] in (0x00, 0xFF):
        f["server_id"] = _text(d[:-1])
        f["run_indicator"] = "ON" if d[-1] else "OFF"
    elif d:
        f["server_id"] = _text(d)
    return _byte_count(p, f, 9, bc)


def _rs_read_file(p: bytes, f: dict[str, Any], paired: bool) -> Problem:
    """FC20 response (AP 6.14): byte count, then (length, reference type 6, record data) per request."""
    if len(p) < 9:
        return _short(p, 9, f["func"] + " response")
    bc = p[8]
    end = min(9 + bc, len(p))
    recs = f.get("file_records") if paired else None
    if recs is None:
        recs = f["file_records"] = []
    off, i = 9, 0
    bad: Problem = None
    while off + 2 <= end:
        ln, rt = p[off], p[off + 1]
        n = min(max(ln - 1, 0), end - off - 2) >> 1
        data = _words(p, off + 2, n)
        if i < len(recs):
            recs[i]["data"] = data
        else:
            recs.append({"length": n, "data": data})
            if paired and bad is None:
                bad = "echo_mismatch", f"{f['func']} response has more sub-responses than requested"
        if rt != 6 and bad is None:
            bad = "bad_reference_type", f"{f['func']} response: reference type {rt} (must be 6)"
        off += 1 + max(ln, 1)
        i += 1
    if off != 9 + bc:
        return "byte_count_mismatch", f"{f['func']} response: byte count {bc} does not match its records"
    return _byte_count(p, f, 9, bc) or bad


def _rs_write_file(p: bytes, f: dict[str, Any], paired: bool) -> Problem:
    """FC21 response (AP 6.15): echo of the request."""
    if not paired or "file_records" not in f:
        return _file_records_with_data(p, f, "file_records")
    echo: dict[str, Any] = {"func": f["func"] + " response"}
    bad = _file_records_with_data(p, echo, "file_records")
    return bad or _echo(f, "file_records", echo["file_records"])


def _rs_mask(p: bytes, f: dict[str, Any], paired: bool) -> Problem:
    """FC22 response (AP 6.16): echo of address and masks."""
    if len(p) < 14:
        return _short(p, 14, f["func"] + " response")
    a, am, om = _HHH.unpack_from(p, 8)
    if not paired or "address" not in f:
        f["address"], f["and_mask"], f["or_mask"] = a, am, om
        bad = None
    else:
        bad = _echo(f, "address", a) or _echo(f, "and_mask", am) or _echo(f, "or_mask", om)
    return bad or (_trailing(p, 14, f["func"] + " response") if len(p) > 14 else None)


def _rs_read_write(p: bytes, f: dict[str, Any], paired: bool) -> Problem:
    """FC23 response (AP 6.17): byte count, registers read."""
    if len(p) < 9:
        return _short(p, 9, f["func"] + " response")
    bc = p[8]
    f["read_values"] = _words(p, 9, min(bc, len(p) - 9) >> 1)
    q = f.get("read_quantity") if paired else None
    if bc & 1 or (q is not None and bc != 2 * q):
        return "byte_count_mismatch", f"{f['func']} response: byte count {bc} for {q} requested registers"
    return _byte_count(p, f, 9, bc)


def _rs_fifo(p: bytes, f: dict[str, Any], paired: bool) -> Problem:
    """FC24 response (AP 6.18): byte count (2 bytes), FIFO count (<= 31), FIFO values."""
    if len(p) < 12:
        return _short(p, 12, f["func"] + " response")
    bc, n = _HH.unpack_from(p, 8)
    f["quantity"] = n
    f["values"] = _words(p, 12, min(n, (len(p) - 12) >> 1))
    if n > 31:
        return _quantity(n, 0, 31, f["func"] + " response")
    if bc != 2 + 2 * n:
        return "byte_count_mismatch", f"{f['func']} response: byte count {bc} for {n} FIFO registers"
    return _byte_count(p, f, 10, bc)


def _rs_mei(p: bytes, f: dict[str, Any], paired: bool) -> Problem:
    """FC43 response. MEI 14 (AP 6.21): code, conformity, more follows, next id, objects."""
    if len(p) < 9:
        return _short(p, 9, f["func"] + " response")
    m = p[8]
    if paired and f.get("mei_type") not in (None, m):
        bad: Problem = "echo_mismatch", f"{f['func']} response MEI type {m}, request {f['mei_type']}"
    else:
        bad = None
    f["mei_type"] = m
    f["mei"] = MEI_TYPES.get(m) or _UNKNOWN[m]
    if m != 0x0E:
        f["response_data"] = p[9:].hex()
        return bad
    if len(p) < 15:
        return _short(p, 15, f["func"] + "/14 response")
    code, conf, more, nxt, n = p[9], p[10], p[11], p[12], p[13]
    if not paired or "read_device_id" not in f:
        f["read_device_id"] = code
    f["conformity_level"] = conf
    f["more_follows"] = more == 0xFF
    f["next_object_id"] = nxt
    objs: dict[str, str] = {}
    f["objects"] = objs
    off = 14
    for _ in range(n):
        if off + 2 > len(p):
            return "truncated_pdu", f"{f['func']}/14 response: {n} objects announced, {len(objs)} present"
        oid, ln = p[off], p[off + 1]
        if off + 2 + ln > len(p):
            return "truncated_pdu", f"{f['func']}/14 response: object 0x{oid:02x} length {ln} passes the end"
        objs[DEVICE_OBJECTS.get(oid) or f"object_0x{oid:02x}"] = _text(p[off + 2:off + 2 + ln])
        off += 2 + ln
    ident = {IDENTITY_KEYS[k]: v.strip() for k, v in objs.items() if k in IDENTITY_KEYS and v.strip()}
    if ident:
        f["identity"] = ident
    if more not in (0x00, 0xFF) and bad is None:
        bad = "bad_more_follows", f"{f['func']}/14 response: more follows 0x{more:02x}"
    return bad or (_trailing(p, off, f["func"] + "/14 response") if len(p) > off else None)


def _rs_unknown(p: bytes, f: dict[str, Any], paired: bool) -> Problem:
    if len(p) > 8:
        f["response_data"] = p[8:].hex()
    return None


REQUEST: dict[int, Callable[[bytes, dict[str, Any]], Problem]] = {
    0x01: _rq_read, 0x02: _rq_read, 0x03: _rq_read, 0x04: _rq_read,
    0x05: _rq_single, 0x06: _rq_single, 0x07: _rq_empty, 0x08: _rq_diag,
    0x0B: _rq_empty, 0x0C: _rq_empty, 0x0F: _rq_write_coils, 0x10: _rq_write_regs,
    0x11: _rq_empty, 0x14: _rq_read_file, 0x15: _rq_write_file, 0x16: _rq_mask,
    0x17: _rq_read_write, 0x18: _rq_fifo, 0x2B: _rq_mei,
}
RESPONSE: dict[int, Callable[[bytes, dict[str, Any], bool], Problem]] = {
    0x01: _rs_bits, 0x02: _rs_bits, 0x03: _rs_regs, 0x04: _rs_regs,
    0x05: _rs_single, 0x06: _rs_single, 0x07: _rs_exc_status, 0x08: _rs_diag,
    0x0B: _rs_comm_counter, 0x0C: _rs_comm_log, 0x0F: _rs_multi, 0x10: _rs_multi,
    0x11: _rs_server_id, 0x14: _rs_read_file, 0x15: _rs_write_file, 0x16: _rs_mask,
    0x17: _rs_read_write, 0x18: _rs_fifo, 0x2B: _rs_mei,
}


_REFS: dict[tuple[int, str, int, int], tuple[str, ...]] = {}     # polls repeat: cache the refs


def _refs(unit: int, t: str, a: int, n: int) -> tuple[str, ...]:
    """Point refs `u<unit>:<type>:<address>` for n items from address a (never past 65535)."""
    key = (unit, t, a, n)
    r = _REFS.get(key)
    if r is None:
        if len(_REFS) >= 4096:
            _REFS.clear()
        pre = f"u{unit}:{t}:"
        r = _REFS[key] = tuple(f"{pre}{i}" for i in range(a, min(a + n, 0x10000)))
    return r


def _points(f: dict[str, Any]) -> list[dict[str, Any]] | None:
    """Register/coil values as base.py points (zero-based addresses as on the wire)."""
    fc = f["func_code"]
    if fc == 0x17:
        pts: list[dict[str, Any]] = []
        for a, vals in ((f.get("write_address"), f.get("write_values")),
                        (f.get("read_address"), f.get("read_values"))):
            if a is not None and vals:
                refs = _refs(f["unit_id"], "hr", a, len(vals))
                pts += [{"ref": r, "value": v} for r, v in zip(refs, vals, strict=False)]
        return pts
    t = _POINT_TYPE.get(fc)
    a = f.get("address")
    vals = f.get("values")
    if t is None or a is None or not vals:
        return None
    refs = _refs(f["unit_id"], t, a, len(vals))    # shorter than vals only past address 65535
    return [{"ref": r, "value": v} for r, v in zip(refs, vals, strict=False)]


def points(fields: dict[str, Any]) -> list[dict[str, Any]]:
    """The transaction's register/coil values as base.py points, derived on demand.

    Modbus values are contiguous from `address`, so events keep (unit_id, address, values) and the
    refs `u<unit>:<hr|ir|coil|di>:<address>` are built only when a detector asks (building them for
    every poll cost ~40% of the Modbus parse time). Exception responses wrote/read nothing: no points.
    """
    if "exception" in fields:
        return []
    return _points(fields) or []


def probe(data: bytes, is_orig: bool) -> bool:
    """Modbus/TCP by shape: whole MBAP PDUs with protocol id 0, length 2..254 and a public function
    code (exception bit allowed) that exactly fill the payload."""
    n, off = len(data), 0
    if n < 8:
        return False
    while off < n:
        if n - off < 8:
            return False
        pid, ln = _HH.unpack_from(data, off + 2)
        if pid or not 2 <= ln <= MAX_LENGTH or data[off + 7] & 0x7F not in FUNCTIONS:
            return False
        off += ln + 6
    return off == n


def _client_is_orig(conn: Any, udp: bool) -> bool:
    """The originator is the client unless only the originator's port is a Modbus port (a capture
    that shows the server's side as the opener, or starts mid-stream)."""
    table = conn.sensor.udp_map if udp else conn.sensor.tcp_map

    def mine(port: int | None) -> bool:
        return getattr(table.get(port), "PROTOCOL", None) == PROTOCOL

    return not (mine(conn.orig.port) and not mine(conn.resp.port))


class _ModbusAnalyzer(Analyzer):
    """Transaction pairing shared by the TCP and UDP analyzers."""

    PROTOCOL = PROTOCOL
    __slots__ = ("bad", "client_is_orig", "next_expire", "pending")

    def __init__(self, conn: Any, udp: bool) -> None:
        super().__init__(conn)
        self.pending = Pending(REQUEST_TIMEOUT, MAX_PENDING)
        self.client_is_orig = _client_is_orig(conn, udp)
        self.next_expire = 0.0
        self.bad: tuple[str, str] = ("", "")

    def _pdu_len(self, buf: Any, off: int) -> int | None:
        """StreamBuffer framing (TCP 3.1.3): 6 + MBAP length; -1 for a header that is not MBAP."""
        if len(buf) - off < 6:
            return None
        pid, ln = _HH.unpack_from(buf, off + 2)
        if pid == 0 and 2 <= ln <= MAX_LENGTH:
            return ln + 6
        if pid:
            self.bad = "bad_protocol_id", f"MBAP protocol id {pid} (must be 0); buffered bytes dropped"
        else:
            self.bad = "bad_length", f"MBAP length {ln} outside 2..{MAX_LENGTH}; buffered bytes dropped"
        return -1

    def _pdu(self, p: bytes, is_orig: bool, frames: Frames, ts: float) -> None:
        """One whole MBAP PDU (header included) from the client (request) or the server."""
        tid, _, _, unit, fc = _MBAP.unpack_from(p, 0)
        if is_orig == self.client_is_orig:
            self._request(p, tid, unit, fc, is_orig, frames, ts)
        else:
            self._response(p, tid, unit, fc, is_orig, frames, ts)
        if ts >= self.next_expire:
            self.next_expire = ts + EXPIRE_EVERY
            for item in self.pending.expire(ts):
                self._unanswered(item)

    def _request(self, p: bytes, tid: int, unit: int, fc: int, is_orig: bool, frames: Frames,
                 ts: float) -> None:
        name, action = _FUNC[fc]
        f: dict[str, Any] = {"trans_id": tid, "unit_id": unit, "func_code": fc, "func": name}
        parse = REQUEST.get(fc)
        bad = parse(p, f) if parse is not None else _rq_unknown(p, f)
        if fc & 0x80 and bad is None:
            bad = "exception_in_request", f"request with function code 0x{fc:02x} (exception bit set)"
        if bad is not None:
            self.conn.weird(PROTOCOL, bad[0], bad[1], ts, frames, is_orig)
        if fc == 0x2B and f.get("mei_type") == 0x0D:
            action = "other"              # CANopen general reference: a tunnelled CANopen request
        for old in self.pending.add(tid, ts, (f, frames, ts, action)):
            self._unanswered(old)

    def _response(self, p: bytes, tid: int, unit: int, fc: int, is_orig: bool, frames: Frames,
                  ts: float) -> None:
        conn = self.conn
        code = fc & 0x7F
        item = self.pending.pop(tid)
        paired = False
        if item is not None:
            f, rframes, ets, action = item
            f["status"] = "paired"
            f["latency"] = round(ts - ets, 6)
            frames = rframes + frames
            if f["func_code"] == code:
                paired = True
            else:
                f["response_func_code"] = code
                conn.weird(PROTOCOL, "function_mismatch",
                           f"response function code 0x{fc:02x} to request 0x{f['func_code']:02x}", ts,
                           frames, is_orig)
            if unit != f["unit_id"]:
                f["response_unit_id"] = unit
                conn.weird(PROTOCOL, "unit_id_mismatch",
                           f"response unit id {unit} to request unit id {f['unit_id']}", ts, frames, is_orig)
        else:
            name, action = _FUNC[code]
            f = {"trans_id": tid, "unit_id": unit, "func_code": code, "func": name, "status": "no_request"}
            ets = ts
        if fc & 0x80:                     # exception response (AP 7): one byte, the exception code
            if len(p) < 9:
                bad: Problem = _short(p, 9, f["func"] + " exception")
            else:
                x = p[8]
                f["exception_code"] = x
                f["exception"] = EXCEPTIONS.get(x) or _UNKNOWN[x]
                bad = _trailing(p, 9, f["func"] + " exception") if len(p) > 9 else None
        elif item is not None and not paired:
            f["response_data"] = p[8:].hex()
            bad = None
        else:
            parse = RESPONSE.get(code)
            bad = parse(p, f, paired) if parse is not None else _rs_unknown(p, f, paired)
            if action == "discover" and f.get("mei_type") == 0x0D:
                action = "other"
        if bad is not None:
            conn.weird(PROTOCOL, bad[0], bad[1], ts, frames, is_orig)
        conn.emit(PROTOCOL, action, f, ets, frames, self.client_is_orig)

    def _unanswered(self, item: tuple[dict[str, Any], Frames, float, str]) -> None:
        """A request that got no response: emitted with status no_response (written values as points)."""
        f, frames, ts, action = item
        f["status"] = "no_response"
        self.conn.emit(PROTOCOL, action, f, ts, list(frames), self.client_is_orig)

    def close(self, ts: float) -> None:
        for item in self.pending.drain():
            self._unanswered(item)


class TcpAnalyzer(_ModbusAnalyzer):
    """Modbus/TCP: MBAP framing over each direction's stream (TCP 3.1.3)."""

    __slots__ = ("bufs", "plen")

    def __init__(self, conn: Any) -> None:
        super().__init__(conn, False)
        self.bufs = (StreamBuffer(), StreamBuffer())     # [is_orig]
        self.plen = self._pdu_len

    def data(self, is_orig: bool, data: bytes, ts: float, frames: int | Frames) -> None:
        buf = self.bufs[is_orig]
        if not buf.buf and len(data) >= 8:
            # Fast path: nothing buffered and the segment is exactly one PDU (the common case).
            pid, ln = _HH.unpack_from(data, 2)
            if not pid and ln + 6 == len(data) and 2 <= ln <= MAX_LENGTH:
                self._pdu(data, is_orig, [frames] if isinstance(frames, int) else list(frames), ts)
                return
        for p, fl, t in buf.feed(data, ts, frames, self.plen):
            if p is None:
                self.conn.weird(PROTOCOL, self.bad[0], self.bad[1], t, fl, is_orig)
            else:
                self._pdu(p, is_orig, fl, t)

    def gap(self, is_orig: bool, size: int, ts: float) -> None:
        buf = self.bufs[is_orig]
        if len(buf):
            self.conn.weird(PROTOCOL, "gap_in_pdu",
                            f"{size} bytes missing; {len(buf)} bytes of an unfinished PDU dropped", ts,
                            buf.pending_frames(), is_orig)
            buf.clear()

    def close(self, ts: float) -> None:
        for is_orig in (True, False):
            buf = self.bufs[is_orig]
            if len(buf):
                self.conn.weird(PROTOCOL, "truncated_pdu",
                                f"stream ended inside a PDU ({len(buf)} bytes buffered)", ts,
                                buf.pending_frames(), is_orig)
                buf.clear()
        super().close(ts)


class UdpAnalyzer(_ModbusAnalyzer):
    """Modbus over UDP/502: each datagram holds whole MBAP PDUs (TCP 3.1.3 framing, no stream)."""

    __slots__ = ()

    def __init__(self, conn: Any) -> None:
        super().__init__(conn, True)

    def data(self, is_orig: bool, data: bytes, ts: float, frames: int | Frames) -> None:
        fl = base.as_frames(frames)
        n, off = len(data), 0
        while off < n:
            size = self._pdu_len(data, off)
            if size is None or (size > 0 and off + size > n):
                self.conn.weird(PROTOCOL, "truncated_pdu",
                                f"datagram ends inside a PDU ({n - off} bytes left)", ts, fl, is_orig)
                return
            if size < 0:
                self.conn.weird(PROTOCOL, self.bad[0], self.bad[1], ts, fl, is_orig)
                return
            self._pdu(data[off:off + size], is_orig, fl, ts)
            off += size
