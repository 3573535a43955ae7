"""S7comm-plus (protocol id 0x72, S7-1200/1500) header decoding, reached from `sensors.s7comm`.

No public specification exists; the layout follows the Wireshark s7comm_plus plugin (T. Wiens) and
ICSNPP s7comm: header `0x72, version, data length(2)`; V3 then carries an integrity part (digest
length 0x20 + 32-byte digest) before the data; data starts with the opcode. Requests:
`opcode, reserved(2), function(2), reserved(2), sequence(2), session id(4), transport flags(1)`;
responses: `opcode, reserved(2), function(2), reserved(2), sequence(2), transport flags(1)`;
notifications: `opcode, subscription object id(4), ...`. A message may span several TPKT packets; only
the first carries the header we decode (later fragments start without 0x72).
"""

from __future__ import annotations

import struct
from typing import Any

PROTOCOL_ID = 0x72
_HDR = struct.Struct("!BBH")                 # protocol id, version, data length
_REQ = struct.Struct("!BHHHHIB")             # opcode, res, function, res, seq, session id, flags
_RSP = struct.Struct("!BHHHHB")              # opcode, res, function, res, seq, flags
_NOTIF = struct.Struct("!BI")                # opcode, subscription object id

VERSIONS = {0x01: "V1", 0x02: "V2", 0x03: "V3", 0xFE: "SYSTEM_EVENT"}
OP_REQUEST, OP_RESPONSE, OP_NOTIFICATION, OP_RESPONSE2 = 0x31, 0x32, 0x33, 0x02
OPCODES = {OP_REQUEST: "REQUEST", OP_RESPONSE: "RESPONSE", OP_NOTIFICATION: "NOTIFICATION",
           OP_RESPONSE2: "RESPONSE2"}

# function code -> (name, action). Names as in the Wireshark plugin / ICSNPP consts.
FUNCTIONS: dict[int, tuple[str, str]] = {
    0x04B1: ("Error", "error"),
    0x04BB: ("Explore", "read"),
    0x04CA: ("CreateObject", "session"),
    0x04D4: ("DeleteObject", "session"),
    0x04F2: ("SetVariable", "write"),
    0x04FC: ("GetVariable", "read"),
    0x0506: ("AddLink", "other"),
    0x051A: ("RemoveLink", "other"),
    0x0524: ("GetLink", "read"),
    0x0542: ("SetMultiVariables", "write"),
    0x054C: ("GetMultiVariables", "read"),
    0x0556: ("BeginSequence", "program"),
    0x0560: ("EndSequence", "program"),
    0x056B: ("Invoke", "control"),
    0x057C: ("SetVarSubStreamed", "write"),
    0x0586: ("GetVarSubStreamed", "read"),
    0x0590: ("GetVariablesAddress", "read"),
    0x059A: ("Abort", "session"),
}


def _vlq(b: bytes, off: int) -> tuple[int | None, int]:
    """S7comm-plus variable-length unsigned integer (7 bits per byte, high bit = more)."""
    v = 0
    for i in range(5):
        if off + i >= len(b):
            return None, off
        c = b[off + i]
        v = (v << 7) | (c & 0x7F)
        if not c & 0x80:
            return v, off + i + 1
    return v, off + 5


def parse(pdu: bytes) -> tuple[dict[str, Any] | None, str | None]:
    """Decode one S7comm-plus message. Returns (record, error); the record is None when unusable."""
    n = len(pdu)
    if n < 4:
        return None, f"{n} bytes: shorter than the S7comm-plus header"
    _pid, ver, dlen = _HDR.unpack_from(pdu, 0)
    rec: dict[str, Any] = {"version": VERSIONS.get(ver, f"unknown-0x{ver:02x}"), "version_code": ver,
                           "data_length": dlen}
    off = 4
    if ver == 0x03:
        # V3 integrity part: digest length then the digest (HMAC-SHA256 over the data).
        if off < n and pdu[off] == 0x20 and off + 33 <= n:
            rec["integrity"] = True
            off += 33
        else:
            rec["integrity"] = False
    if off >= n:
        return rec, "no data after the header"
    op = pdu[off]
    rec["opcode"] = OPCODES.get(op, f"unknown-0x{op:02x}")
    rec["opcode_code"] = op
    if op == OP_REQUEST:
        if off + _REQ.size > n:
            return rec, "request header cut short"
        _, _, fn, _, seq, sess, flags = _REQ.unpack_from(pdu, off)
        rec["session_id"] = sess
        rec["transport_flags"] = flags
        body = off + _REQ.size
    elif op in (OP_RESPONSE, OP_RESPONSE2):
        if off + _RSP.size > n:
            return rec, "response header cut short"
        _, _, fn, _, seq, flags = _RSP.unpack_from(pdu, off)
        rec["transport_flags"] = flags
        body = off + _RSP.size
    elif op == OP_NOTIFICATION:
        if off + _NOTIF.size <= n:
            rec["subscription_id"] = _NOTIF.unpack_from(pdu, off)[1]
        return rec, None
    else:
        return rec, None
    rec["func_code"] = fn
    name, _action = FUNCTIONS.get(fn, (f"unknown-0x{fn:04x}", "other"))
    rec["function"] = name
    rec["seq"] = seq
    if op != OP_REQUEST and fn == 0x04CA:
        # CreateObject response: return value (VLQ64), object id count, object ids; the first object
        # id is the session id the client then uses in every request.
        ret, p = _vlq(pdu, body)
        if ret is not None:
            rec["return_value"] = ret
            cnt, p = _vlq(pdu, p)
            if cnt:
                sess, p = _vlq(pdu, p)
                if sess is not None:
                    rec["session_id"] = sess
    elif op != OP_REQUEST:
        ret, _ = _vlq(pdu, body)
        if ret is not None:
            rec["return_value"] = ret
    return rec, None


def action_of(rec: dict[str, Any]) -> str:
    """Normalised verb of a request's function (notifications push values: read)."""
    if rec.get("opcode_code") == OP_NOTIFICATION:
        return "read"
    fn = rec.get("func_code")
    return FUNCTIONS.get(fn, ("", "other"))[1] if fn is not None else "other"
