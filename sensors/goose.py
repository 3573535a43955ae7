"""IEC 61850-8-1 GOOSE: EtherType 0x88B8 frames (also inside 802.1Q), header + BER goosePdu.

Frame (IEC 61850-8-1 Annex C): APPID (2), Length (2, counts from APPID on), Reserved1 (2; bit 15 is
the Ed.2 simulation bit), Reserved2 (2), then the APDU: goosePdu [APPLICATION 1] (tag 0x61), a
SEQUENCE of context-tagged fields (8-1 Annex A, "IECGoosePdu"):

    [0] gocbRef  [1] timeAllowedtoLive  [2] datSet  [3] goID  [4] t (UtcTime)  [5] stNum  [6] sqNum
    [7] simulation (Ed.1 "test")  [8] confRev  [9] ndsCom  [10] numDatSetEntries  [11] allData
    [12] security (optional)

allData is a SEQUENCE OF MMS Data (ISO 9506-2 / 8-1 Annex A): array [1], structure [2], boolean [3],
bit-string [4], integer [5], unsigned [6], floating-point [7], octet-string [9], visible-string [10],
generalized-time [11], binary-time [12], bcd [13], booleanArray [14], objId [15], mMSString [16],
utc-time [17].

One `goose` event per frame (status "one_way"; action "write": GOOSE is how IEDs trip breakers and
exchange interlocks). Per (publisher MAC, gocbRef) the analyzer checks stNum/sqNum continuity
(8-1 18.1.2.5: stNum increments and sqNum restarts at 0 on a data change; sqNum increments on each
retransmission) and flags breaks as `weird` events.
"""

from __future__ import annotations

import math
import struct
from collections import OrderedDict
from datetime import UTC, datetime, timedelta
from typing import Any

from icsight.events import Endpoint
from sensors import ber
from sensors.base import FrameAnalyzer

PROTOCOL = "goose"
ETHERTYPES = (0x88B8,)
ROLES = ("publisher", "subscriber")

_HDR = struct.Struct("!HHHH")
GOOSE_PDU_TAG = 1              # [APPLICATION 1] goosePdu (0x61); [APPLICATION 0] is gseMngtPdu
MAX_DATA_DEPTH = 8             # nesting of structures/arrays in allData
MAX_DATA_VALUES = 1024         # leaf values decoded per frame
MAX_TRACKED = 4096             # (MAC, gocbRef) continuity entries kept
U32 = 1 << 32

# goosePdu field context tag -> (record field, decoder kind)
PDU_FIELDS: dict[int, tuple[str, str]] = {
    0: ("gocb_ref", "str"),
    1: ("time_allowed_to_live", "int"),
    2: ("dat_set", "str"),
    3: ("go_id", "str"),
    4: ("t", "utc"),
    5: ("st_num", "uint"),
    6: ("sq_num", "uint"),
    7: ("simulation", "bool"),
    8: ("conf_rev", "uint"),
    9: ("nds_com", "bool"),
    10: ("num_dat_set_entries", "int"),
}
REQUIRED = ("gocb_ref", "time_allowed_to_live", "dat_set", "t", "st_num", "sq_num", "simulation",
            "conf_rev", "nds_com", "num_dat_set_entries")

# MMS Data CHOICE tag -> type name (ISO 9506-2 Data; IEC 61850-8-1 Annex A)
DATA_TYPES: dict[int, str] = {
    1: "array", 2: "structure", 3: "boolean", 4: "bit-string", 5: "integer", 6: "unsigned",
    7: "floating-point", 9: "octet-string", 10: "visible-string", 11: "generalized-time",
    12: "binary-time", 13: "bcd", 14: "boolean-array", 15: "obj-id", 16: "mms-string", 17: "utc-time",
}

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_1984 = datetime(1984, 1, 1, tzinfo=UTC)


def utc_time(v: memoryview | bytes) -> tuple[str, int]:
    """UtcTime (8-1 8.1.3.7): 4 octets seconds since 1970, 3 octets fraction (1/2^24 s), 1 quality.

    Returns (ISO 8601 with microseconds, quality octet).
    :raise ber.BerError: not 8 octets.
    """
    if len(v) != 8:
        raise ber.BerError(f"UtcTime of {len(v)} octets")
    secs = int.from_bytes(v[0:4], "big")
    usec = (int.from_bytes(v[4:7], "big") * 1_000_000 + (1 << 23)) >> 24
    t = _EPOCH + timedelta(seconds=secs, microseconds=usec)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ"), v[7]


def _binary_time(v: memoryview) -> str:
    """TimeOfDay (ISO 9506-2): 4 octets ms since midnight, optionally 2 octets days since 1984-01-01."""
    if len(v) not in (4, 6):
        raise ber.BerError(f"binary-time of {len(v)} octets")
    ms = int.from_bytes(v[0:4], "big")
    if len(v) == 4:
        return str(timedelta(milliseconds=ms))
    t = _EPOCH_1984 + timedelta(days=int.from_bytes(v[4:6], "big"), milliseconds=ms)
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def mms_float(v: memoryview) -> float | str:
    """FloatingPoint (ISO 9506-2): exponent-width octet (8 = single, 11 = double) + IEEE 754 value.

    Non-finite values become strings ("nan", "inf", "-inf") to keep the JSON standard.
    :raise ber.BerError: a size that is neither layout.
    """
    if len(v) == 5 and v[0] == 8:
        f = ber.f32(ber.as_float(v[1:5]))
    elif len(v) == 9 and v[0] == 11:
        f = ber.as_float(v[1:9])
    else:
        raise ber.BerError(f"floating-point of {len(v)} octets, exponent width {v[0] if len(v) else '?'}")
    return f if math.isfinite(f) else str(f)


class _Budget:
    __slots__ = ("left",)

    def __init__(self, n: int) -> None:
        self.left = n


def decode_data(t: ber.Tlv, depth: int = 0, budget: _Budget | None = None) -> Any:
    """One MMS Data value as JSON: scalars, lists for arrays/structures (recursively).

    :raise ber.BerError: malformed contents, unknown CHOICE tag, too deep or too many values.
    """
    budget = budget or _Budget(MAX_DATA_VALUES)
    budget.left -= 1
    if budget.left < 0:
        raise ber.BerError(f"more than {MAX_DATA_VALUES} data values")
    if t.cls != ber.CONTEXT:
        raise ber.BerError(f"Data with a {ber.CLASS_NAMES[t.cls]} tag")
    tag, v = t.tag, t.value
    if tag in (1, 2):
        if not t.constructed:
            raise ber.BerError(f"primitive {DATA_TYPES[tag]}")
        if depth >= MAX_DATA_DEPTH:
            raise ber.BerError(f"Data nested deeper than {MAX_DATA_DEPTH}")
        return [decode_data(c, depth + 1, budget) for c in t.children()]
    if t.constructed:
        raise ber.BerError(f"constructed Data with tag [{tag}]")
    if tag == 3:
        return ber.as_bool(v)
    if tag == 4:
        return ber.as_bits(v)
    if tag == 5:
        return ber.as_int(v)
    if tag in (6, 13):
        return ber.as_uint(v)
    if tag == 7:
        return mms_float(v)
    if tag in (9, 15):
        return v.hex() if tag == 9 else _oid(v)
    if tag == 10:
        return ber.as_str(v, "latin-1")
    if tag == 16:
        return ber.as_str(v)
    if tag == 11:
        return ber.as_str(v, "ascii")
    if tag == 12:
        return _binary_time(v)
    if tag == 14:
        return ber.as_bits(v)
    if tag == 17:
        return utc_time(v)[0]
    raise ber.BerError(f"unknown Data tag [{tag}]")


def _oid(v: memoryview) -> str:
    """OBJECT IDENTIFIER contents as dotted decimal (X.690 8.19)."""
    if not v:
        raise ber.BerError("empty OBJECT IDENTIFIER")
    arcs, n = [], 0
    for b in v:
        n = (n << 7) | (b & 0x7F)
        if not b & 0x80:
            arcs.append(n)
            n = 0
    if v[-1] & 0x80:
        raise ber.BerError("OBJECT IDENTIFIER cut short")
    first = arcs[0]
    head = [min(first // 40, 2), first - 40 * min(first // 40, 2)]
    return ".".join(str(a) for a in head + arcs[1:])


def parse_goose(payload: bytes) -> tuple[dict[str, Any], list[tuple[str, str]]]:
    """Decode one GOOSE frame payload (after the EtherType). Never raises on traffic.

    Returns (record, problems) where problems are (weird name, reason) pairs; the record holds every
    field that could be decoded.
    """
    rec: dict[str, Any] = {}
    problems: list[tuple[str, str]] = []
    if len(payload) < 8:
        return rec, [("goose_truncated_header", f"{len(payload)} bytes, the header needs 8")]
    appid, length, res1, res2 = _HDR.unpack_from(payload, 0)
    rec.update(appid=appid, length=length, reserved1=res1, reserved2=res2, simulated=bool(res1 & 0x8000))
    end = length
    if length < 8:
        return rec, [("goose_bad_length", f"length field {length} < 8")]
    if length > len(payload):
        problems.append(("goose_truncated", f"length field {length} > {len(payload)} bytes captured"))
        end = len(payload)
    mv = memoryview(payload)
    try:
        pdu = ber.read_tlv(mv, 8, end)
    except ber.BerError as e:
        problems.append(("goose_bad_pdu", str(e)))
        return rec, problems
    if pdu.cls != ber.APPLICATION or pdu.tag != GOOSE_PDU_TAG or not pdu.constructed:
        rec["pdu"] = "gseMngtPdu" if (pdu.cls, pdu.tag) == (ber.APPLICATION, 0) else f"unknown-0x{mv[8]:02x}"
        problems.append(("goose_not_goose_pdu", f"APDU tag 0x{mv[8]:02x} is not goosePdu (0x61)"))
        return rec, problems
    if pdu.end < end and any(mv[pdu.end:end]):
        problems.append(("goose_trailing_data", f"{end - pdu.end} bytes after the goosePdu"))
    seen: set[int] = set()
    try:
        for t in pdu.children():
            if t.cls != ber.CONTEXT:
                problems.append(("goose_unexpected_field", f"{t!r} in goosePdu"))
                continue
            if t.tag in seen:
                problems.append(("goose_duplicate_field", f"field [{t.tag}] repeated"))
                continue
            seen.add(t.tag)
            try:
                _field(rec, t)
            except ber.BerError as e:
                problems.append(("goose_bad_field", f"field [{t.tag}]: {e}"))
    except ber.BerError as e:
        problems.append(("goose_bad_pdu", str(e)))
    missing = [f for f in REQUIRED if f not in rec]
    if missing:
        problems.append(("goose_missing_field", "missing " + ", ".join(missing)))
    if "data" in rec and "num_dat_set_entries" in rec and rec["num_dat_set_entries"] != len(rec["data"]):
        problems.append(("goose_num_entries_mismatch",
                         f"numDatSetEntries {rec['num_dat_set_entries']} but "
                         f"{len(rec['data'])} allData entries"))
    return rec, problems


def _field(rec: dict[str, Any], t: ber.Tlv) -> None:
    """Store one goosePdu field in `rec`. :raise ber.BerError: malformed contents."""
    tag = t.tag
    if tag == 11:
        if not t.constructed:
            raise ber.BerError("primitive allData")
        budget = _Budget(MAX_DATA_VALUES)
        rec["data"] = [decode_data(c, 0, budget) for c in t.children()]
        return
    if tag == 12:
        rec["security"] = True                     # 8-1 Annex A: optional signature, not decoded
        return
    spec = PDU_FIELDS.get(tag)
    if spec is None:
        raise ber.BerError(f"unknown goosePdu field [{tag}]")
    name, kind = spec
    if t.constructed:
        raise ber.BerError("constructed encoding of a primitive field")
    v = t.value
    if kind == "str":
        rec[name] = ber.as_str(v, "latin-1")
    elif kind == "int":
        rec[name] = ber.as_int(v)
    elif kind == "uint":
        rec[name] = ber.as_uint(v)
    elif kind == "bool":
        rec[name] = ber.as_bool(v)
    else:
        rec["t"], rec["t_quality"] = utc_time(v)


def _points(rec: dict[str, Any]) -> list[dict[str, Any]]:
    """allData entries as points: structures are flattened with dotted indexes ("ref[3].1")."""
    out: list[dict[str, Any]] = []
    ref = rec.get("gocb_ref", "?")

    def walk(prefix: str, v: Any) -> None:
        if isinstance(v, list):
            for i, c in enumerate(v):
                walk(f"{prefix}.{i}", c)
        else:
            out.append({"ref": prefix, "value": v})

    for i, v in enumerate(rec.get("data", ())):
        walk(f"{ref}[{i}]", v)
    return out


def ied_name(gocb_ref: str) -> str:
    """The logical-device part of a gocbRef ("AA1C1Q01A1LD0/LLN0$GO$gcb_A" -> "AA1C1Q01A1LD0")."""
    return gocb_ref.split("/", 1)[0]


class L2Analyzer(FrameAnalyzer):
    """All GOOSE frames of a sensor; keeps stNum/sqNum state per (publisher MAC, gocbRef)."""

    PROTOCOL = PROTOCOL

    def __init__(self, sensor: Any) -> None:
        super().__init__(sensor)
        self.state: OrderedDict[tuple[str, str], tuple[int, int]] = OrderedDict()

    def frame(self, ts: float, frame: int, src_mac: str, dst_mac: str, ethertype: int,
              payload: bytes, vlan: int | None) -> None:
        src, dst = Endpoint(mac=src_mac or None), Endpoint(mac=dst_mac or None)
        rec, problems = parse_goose(payload)
        if vlan is not None:
            rec["vlan"] = vlan
        for name, reason in problems:
            self.sensor.weird(PROTOCOL, name, reason, ts, [frame], src, dst)
        if "gocb_ref" not in rec and "st_num" not in rec:
            return                      # nothing of a goosePdu decoded: the weird events say why
        rec["status"] = "one_way"
        if "gocb_ref" in rec and "st_num" in rec and "sq_num" in rec:
            self._continuity(rec, ts, frame, src, dst)
        if rec.get("data"):
            rec["points"] = _points(rec)
        if "gocb_ref" in rec:
            ident = {"name": ied_name(rec["gocb_ref"]), "gocb_ref": rec["gocb_ref"]}
            if "dat_set" in rec:
                ident["dat_set"] = rec["dat_set"]
            if "go_id" in rec:
                ident["go_id"] = rec["go_id"]
            rec["identity"] = ident
            rec["identity_of"] = "src"
        self.sensor.emit(PROTOCOL, "write", rec, ts, [frame], src, dst)

    def _continuity(self, rec: dict[str, Any], ts: float, frame: int, src: Endpoint, dst: Endpoint) -> None:
        """stNum/sqNum checks against the previous frame of the same control block (8-1 18.1.2.5)."""
        key = (src.mac or "", rec["gocb_ref"])
        st, sq = rec["st_num"], rec["sq_num"]
        prev = self.state.pop(key, None)
        self.state[key] = (st, sq)
        if len(self.state) > MAX_TRACKED:
            self.state.popitem(last=False)
        if prev is None:
            return
        pst, psq = prev
        weird = self.sensor.weird
        if st != pst:
            # stNum wraps from 2^32-1 to 1 (a value of 0 is reserved for "not yet sent").
            if st == (pst + 1) % U32 or (pst == U32 - 1 and st == 1):
                rec["state_change"] = True
                if sq not in (0, 1):
                    weird(PROTOCOL, "goose_sqnum_not_reset",
                          f"{rec['gocb_ref']}: stNum {pst}->{st} but sqNum {sq} (expected 0)", ts, [frame],
                          src, dst)
            elif (st - pst) % U32 < U32 // 2:
                rec["state_change"] = True
                weird(PROTOCOL, "goose_stnum_gap",
                      f"{rec['gocb_ref']}: stNum {pst}->{st}, {(st - pst) % U32 - 1} state changes missed",
                      ts, [frame], src, dst)
            else:
                weird(PROTOCOL, "goose_stnum_regression", f"{rec['gocb_ref']}: stNum {pst}->{st}",
                      ts, [frame], src, dst)
            return
        if sq == psq + 1 or (psq == U32 - 1 and sq in (0, 1)):
            return
        if sq > psq:
            weird(PROTOCOL, "goose_sqnum_gap", f"{rec['gocb_ref']}: sqNum {psq}->{sq} at stNum {st}",
                  ts, [frame], src, dst)
        elif sq == psq:
            weird(PROTOCOL, "goose_sqnum_repeat", f"{rec['gocb_ref']}: sqNum {sq} repeated at stNum {st}",
                  ts, [frame], src, dst)
        else:
            weird(PROTOCOL, "goose_sqnum_reset_without_stnum_change",
                  f"{rec['gocb_ref']}: sqNum {psq}->{sq} while stNum stays {st}", ts, [frame], src, dst)
