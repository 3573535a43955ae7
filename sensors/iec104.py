"""IEC 60870-5-104: APCI framing over TCP/2404 and the IEC 60870-5-101 ASDU it carries.

References: IEC 60870-5-104:2006 (section 5: APCI, I/S/U formats; 5.1 sequence numbers),
IEC 60870-5-101:2003 (section 7.2: data unit identifier; 7.3: type identifications; 7.2.6: the
information elements). 104 fixes the ASDU field sizes: COT 2 octets (cause + originator address),
common address 2 octets, information object address 3 octets.

Events (kind "iec104"):
- one per monitor-direction ASDU (status "one_way", action "read"), every information object in
  `points`;
- commands (control, system and parameter types sent with COT activation/deactivation) are paired
  with their confirmation (COT 7/9, or the negative 44-47 replies) by (type, CA, IOA) and the
  termination (COT 10) is noted on the same event;
- C_RD_NA_1 (read command, COT 5) is paired with the monitor ASDU answering it (COT 5, same CA/IOA);
- U-frames: STARTDT/STOPDT/TESTFR act paired with con (action "session").
S-frames only acknowledge and produce no event. N(S) must advance by one per I-frame and direction.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any

from sensors.base import Analyzer, Frames, Pending, StreamBuffer

PROTOCOL = "iec104"
GLOBAL_CA = 0xFFFF          # broadcast common address (101 7.2.4)
TCP_PORTS = (2404,)
ROLES = ("controlling", "controlled")      # master / outstation (IEC 60870-5-104 section 3)

START = 0x68
APCI_LEN = 6                # start, length, 4 control octets
ASDU_HDR = 6                # type, VSQ, COT, OA, CA(2)
SEQ_MOD = 1 << 15           # N(S)/N(R) are 15 bits (104 section 5.1)

_H = struct.Struct("<H")
_h = struct.Struct("<h")
_I = struct.Struct("<I")
_i = struct.Struct("<i")
_f = struct.Struct("<f")

# U-frame control octet 1 (104 section 5.3): value -> (function, "act" | "con")
U_FUNCTIONS = {
    0x07: ("STARTDT", "act"), 0x0B: ("STARTDT", "con"),
    0x13: ("STOPDT", "act"), 0x23: ("STOPDT", "con"),
    0x43: ("TESTFR", "act"), 0x83: ("TESTFR", "con"),
}

# Cause of transmission (101 section 7.2.3), 6 bits.
COT_NAMES = {
    1: "per/cyc", 2: "back", 3: "spont", 4: "init", 5: "req", 6: "act", 7: "actcon", 8: "deact",
    9: "deactcon", 10: "actterm", 11: "retrem", 12: "retloc", 13: "file", 20: "inrogen",
    **{20 + g: f"inro{g}" for g in range(1, 17)},
    37: "reqcogen", **{37 + g: f"reqco{g}" for g in range(1, 5)},
    44: "unknown_type", 45: "unknown_cause", 46: "unknown_asdu_address", 47: "unknown_object_address",
}
COT_REQUEST = frozenset({6, 8})             # activation, deactivation
COT_CONFIRM = frozenset({7, 9, 44, 45, 46, 47})
COT_TERM = 10
_COT_ANSWER = COT_CONFIRM | {COT_TERM}     # what may answer a command: its confirmation or termination
COT_REQ = 5
# Commands whose execution ends with an ActTerm (101 section 7.4.4 ff.): process commands and the
# interrogations. The others are complete at their confirmation.
TERMINATED = frozenset({45, 46, 47, 48, 49, 50, 51, 58, 59, 60, 61, 62, 63, 64, 100, 101})

# --- information element decoders (101 section 7.2.6) -----------------------------------------
# Each returns (value, quality list, extra dict or None) from buf at off; sizes are in TYPES.

_QDS_FLAGS = ((0x01, "OV"), (0x10, "BL"), (0x20, "SB"), (0x40, "NT"), (0x80, "IV"))
_SIQ_FLAGS = ((0x10, "BL"), (0x20, "SB"), (0x40, "NT"), (0x80, "IV"))
_BCR_FLAGS = ((0x20, "CY"), (0x40, "CA"), (0x80, "IV"))
_QDP_FLAGS = ((0x08, "EI"), (0x10, "BL"), (0x20, "SB"), (0x40, "NT"), (0x80, "IV"))


def _flag_table(table: tuple[tuple[int, str], ...]) -> tuple[tuple[str, ...], ...]:
    """Names of the set bits for every octet value (a lookup instead of bit tests per object)."""
    return tuple(tuple(n for m, n in table if b & m) for b in range(256))


_QDS = _flag_table(_QDS_FLAGS)
_SIQ = _flag_table(_SIQ_FLAGS)
_BCR = _flag_table(_BCR_FLAGS)
_QDP = _flag_table(_QDP_FLAGS)


def cp56_iso(buf: bytes, off: int) -> tuple[str, bool]:
    """CP56Time2a (101 section 7.2.6.18) as ISO 8601 local time (no zone: the octets carry none).

    Returns (iso, invalid). Years < 70 are 20xx, others 19xx, as Wireshark does.
    """
    ms = buf[off] | buf[off + 1] << 8
    mi, hr, dd, mo, yr = buf[off + 2], buf[off + 3], buf[off + 4], buf[off + 5], buf[off + 6] & 0x7F
    year = 2000 + yr if yr < 70 else 1900 + yr
    iso = (f"{year:04d}-{mo & 0x0F:02d}-{dd & 0x1F:02d}T{hr & 0x1F:02d}:{mi & 0x3F:02d}:"
           f"{ms // 1000:02d}.{ms % 1000:03d}")
    return iso, bool(mi & 0x80)


def cp24_iso(buf: bytes, off: int) -> tuple[str, bool]:
    """CP24Time2a (minutes + milliseconds) as an ISO 8601 truncated time "-MM:SS.sss" (hour unknown)."""
    ms = buf[off] | buf[off + 1] << 8
    mi = buf[off + 2]
    return f"-{mi & 0x3F:02d}:{ms // 1000:02d}.{ms % 1000:03d}", bool(mi & 0x80)


def _siq(b, o):
    return bool(b[o] & 1), list(_SIQ[b[o]]), None


def _diq(b, o):
    return b[o] & 3, list(_SIQ[b[o]]), None


def _vti_qds(b, o):
    v = b[o] & 0x7F
    v = v - 0x80 if v & 0x40 else v           # 7-bit two's complement
    return v, list(_QDS[b[o + 1]]), ({"transient": True} if b[o] & 0x80 else None)


def _bsi_qds(b, o):
    return _I.unpack_from(b, o)[0], list(_QDS[b[o + 4]]), None


def _nva_qds(b, o):
    return _h.unpack_from(b, o)[0] / 32768.0, list(_QDS[b[o + 2]]), None


def _sva_qds(b, o):
    return _h.unpack_from(b, o)[0], list(_QDS[b[o + 2]]), None


def _float_qds(b, o):
    return _f.unpack_from(b, o)[0], list(_QDS[b[o + 4]]), None


def _bcr(b, o):
    s = b[o + 4]
    return _i.unpack_from(b, o)[0], list(_BCR[s]), {"seq": s & 0x1F}


def _sep(b, o):
    # SEP (7.2.6.10): ES in bits 0-1, then EI BL SB NT IV; CP16 elapsed time follows.
    return b[o] & 3, list(_QDP[b[o]]), {"elapsed_ms": _H.unpack_from(b, o + 1)[0]}


def _spe_qdp(b, o):
    # SPE (7.2.6.11) start events bits, QDP (7.2.6.4), CP16 relay duration.
    return b[o] & 0x3F, list(_QDP[b[o + 1]]), {"elapsed_ms": _H.unpack_from(b, o + 2)[0]}


def _scd_qds(b, o):
    return _H.unpack_from(b, o)[0], list(_QDS[b[o + 4]]), {"changes": _H.unpack_from(b, o + 2)[0]}


def _nva(b, o):
    return _h.unpack_from(b, o)[0] / 32768.0, [], None


def _se(q: int) -> dict[str, Any]:
    return {"qu": (q >> 2) & 0x1F, "se": "select" if q & 0x80 else "execute"}


def _sco(b, o):          # 7.2.6.15
    return bool(b[o] & 1), [], _se(b[o])


def _dco(b, o):          # 7.2.6.16 (also RCO 7.2.6.17: 1 lower, 2 higher)
    return b[o] & 3, [], _se(b[o])


def _qos(q: int) -> dict[str, Any]:     # 7.2.6.39
    return {"ql": q & 0x7F, "se": "select" if q & 0x80 else "execute"}


def _nva_qos(b, o):
    return _h.unpack_from(b, o)[0] / 32768.0, [], _qos(b[o + 2])


def _sva_qos(b, o):
    return _h.unpack_from(b, o)[0], [], _qos(b[o + 2])


def _float_qos(b, o):
    return _f.unpack_from(b, o)[0], [], _qos(b[o + 4])


def _bsi(b, o):
    return _I.unpack_from(b, o)[0], [], None


def _u8(b, o):
    return b[o], [], None


def _u16(b, o):
    return _H.unpack_from(b, o)[0], [], None


def _none(b, o):
    return None, [], None


def _coi(b, o):          # 7.2.6.21: cause of initialisation, bit 7 = after change of local parameters
    return b[o] & 0x7F, [], ({"param_change": True} if b[o] & 0x80 else None)


def _qcc(b, o):          # 7.2.6.23: RQT bits 0-5, FRZ bits 6-7
    return b[o] & 0x3F, [], {"frz": b[o] >> 6}


def _qpm(kind):          # 7.2.6.24: KPA bits 0-5, LPC bit 6, POP bit 7
    def dec(b, o):
        v = kind(b, o)
        q = b[o + (4 if kind is _f.unpack_from else 2)]
        return v[0], [], {"kpa": q & 0x3F, "lpc": bool(q & 0x40), "pop": bool(q & 0x80)}
    return dec


def _cp56_only(b, o):    # C_CS_NA_1: the value is the clock itself
    return cp56_iso(b, o)[0], [], None


# type id -> (name, element size without IOA and time tag, decoder, time tag "56"|"24"|None, action)
# Actions: monitor data "read"; switching commands "control"; set-points and parameters "write"
# (they write a value, like a Modbus register write); interrogation/read "read"; clock "write";
# reset process "control"; test and delay acquisition "diagnose".
Decoder = Callable[[bytes, int], tuple[Any, list[str], dict[str, Any] | None]]
TYPES: dict[int, tuple[str, int, Decoder | None, str | None, str]] = {
    1: ("M_SP_NA_1", 1, _siq, None, "read"),
    2: ("M_SP_TA_1", 1, _siq, "24", "read"),
    3: ("M_DP_NA_1", 1, _diq, None, "read"),
    4: ("M_DP_TA_1", 1, _diq, "24", "read"),
    5: ("M_ST_NA_1", 2, _vti_qds, None, "read"),
    6: ("M_ST_TA_1", 2, _vti_qds, "24", "read"),
    7: ("M_BO_NA_1", 5, _bsi_qds, None, "read"),
    8: ("M_BO_TA_1", 5, _bsi_qds, "24", "read"),
    9: ("M_ME_NA_1", 3, _nva_qds, None, "read"),
    10: ("M_ME_TA_1", 3, _nva_qds, "24", "read"),
    11: ("M_ME_NB_1", 3, _sva_qds, None, "read"),
    12: ("M_ME_TB_1", 3, _sva_qds, "24", "read"),
    13: ("M_ME_NC_1", 5, _float_qds, None, "read"),
    14: ("M_ME_TC_1", 5, _float_qds, "24", "read"),
    15: ("M_IT_NA_1", 5, _bcr, None, "read"),
    16: ("M_IT_TA_1", 5, _bcr, "24", "read"),
    17: ("M_EP_TA_1", 3, _sep, "24", "read"),
    18: ("M_EP_TB_1", 4, _spe_qdp, "24", "read"),
    19: ("M_EP_TC_1", 4, _spe_qdp, "24", "read"),      # OCI in place of SPE
    20: ("M_PS_NA_1", 5, _scd_qds, None, "read"),
    21: ("M_ME_ND_1", 2, _nva, None, "read"),
    30: ("M_SP_TB_1", 1, _siq, "56", "read"),
    31: ("M_DP_TB_1", 1, _diq, "56", "read"),
    32: ("M_ST_TB_1", 2, _vti_qds, "56", "read"),
    33: ("M_BO_TB_1", 5, _bsi_qds, "56", "read"),
    34: ("M_ME_TD_1", 3, _nva_qds, "56", "read"),
    35: ("M_ME_TE_1", 3, _sva_qds, "56", "read"),
    36: ("M_ME_TF_1", 5, _float_qds, "56", "read"),
    37: ("M_IT_TB_1", 5, _bcr, "56", "read"),
    38: ("M_EP_TD_1", 3, _sep, "56", "read"),
    39: ("M_EP_TE_1", 4, _spe_qdp, "56", "read"),
    40: ("M_EP_TF_1", 4, _spe_qdp, "56", "read"),
    45: ("C_SC_NA_1", 1, _sco, None, "control"),
    46: ("C_DC_NA_1", 1, _dco, None, "control"),
    47: ("C_RC_NA_1", 1, _dco, None, "control"),
    48: ("C_SE_NA_1", 3, _nva_qos, None, "write"),
    49: ("C_SE_NB_1", 3, _sva_qos, None, "write"),
    50: ("C_SE_NC_1", 5, _float_qos, None, "write"),
    51: ("C_BO_NA_1", 4, _bsi, None, "control"),
    58: ("C_SC_TA_1", 1, _sco, "56", "control"),
    59: ("C_DC_TA_1", 1, _dco, "56", "control"),
    60: ("C_RC_TA_1", 1, _dco, "56", "control"),
    61: ("C_SE_TA_1", 3, _nva_qos, "56", "write"),
    62: ("C_SE_TB_1", 3, _sva_qos, "56", "write"),
    63: ("C_SE_TC_1", 5, _float_qos, "56", "write"),
    64: ("C_BO_TA_1", 4, _bsi, "56", "control"),
    70: ("M_EI_NA_1", 1, _coi, None, "read"),
    100: ("C_IC_NA_1", 1, _u8, None, "read"),          # QOI 7.2.6.22
    101: ("C_CI_NA_1", 1, _qcc, None, "read"),
    102: ("C_RD_NA_1", 0, _none, None, "read"),
    103: ("C_CS_NA_1", 7, _cp56_only, None, "write"),
    104: ("C_TS_NA_1", 2, _u16, None, "diagnose"),      # FBP fixed test pattern 0x55AA
    105: ("C_RP_NA_1", 1, _u8, None, "control"),        # QRP 7.2.6.27
    106: ("C_CD_NA_1", 2, _u16, None, "diagnose"),      # CP16 delay
    107: ("C_TS_TA_1", 2, _u16, "56", "diagnose"),      # TSC test sequence counter
    110: ("P_ME_NA_1", 3, _qpm(_h.unpack_from), None, "write"),
    111: ("P_ME_NB_1", 3, _qpm(_h.unpack_from), None, "write"),
    112: ("P_ME_NC_1", 5, _qpm(_f.unpack_from), None, "write"),
    113: ("P_AC_NA_1", 1, _u8, None, "write"),          # QPA 7.2.6.25
    # File transfer (101 section 7.3.6): named and framed, elements kept raw.
    120: ("F_FR_NA_1", 6, None, None, "other"),
    121: ("F_SR_NA_1", 7, None, None, "other"),
    122: ("F_SC_NA_1", 4, None, None, "other"),
    123: ("F_LS_NA_1", 5, None, None, "other"),
    124: ("F_AF_NA_1", 4, None, None, "other"),
    126: ("F_DR_TA_1", 13, None, None, "other"),
    127: ("F_SC_NB_1", 16, None, None, "other"),
}
_P_SCALE = {110: 1 / 32768.0}                   # P_ME_NA_1 is normalized
_FLOAT7 = frozenset({13, 14, 36, 50, 63, 112})   # short floats: shown with 7 significant digits

# Monitor types whose information element is one Struct, decoded a whole ASDU at a time by
# `_fast_objects` (the same points as their decoders above): type -> (element format, kind), kind "f"
# short float + QDS, "n" normalized value + QDS, "i" integer + QDS, "s" SIQ, "d" DIQ.
_FAST_KINDS = {1: ("B", "s"), 2: ("B", "s"), 30: ("B", "s"), 3: ("B", "d"), 4: ("B", "d"), 31: ("B", "d"),
               7: ("IB", "i"), 8: ("IB", "i"), 33: ("IB", "i"), 9: ("hB", "n"), 10: ("hB", "n"),
               34: ("hB", "n"), 11: ("hB", "i"), 12: ("hB", "i"), 35: ("hB", "i"), 13: ("fB", "f"),
               14: ("fB", "f"), 36: ("fB", "f")}
# Rows per type: SQ=0 "IOA (as 16 + 8 bits), element, time tag"; SQ=1 "element, time tag" (7.2.2.1).
_FAST: dict[int, tuple[str, struct.Struct, struct.Struct]] = {
    t: (kind, struct.Struct("<HB" + fmt + {"56": "7x", "24": "3x", None: ""}[TYPES[t][3]]),
        struct.Struct("<" + fmt + {"56": "7x", "24": "3x", None: ""}[TYPES[t][3]]))
    for t, (fmt, kind) in _FAST_KINDS.items()
}


def type_name(t: int) -> str:
    """Type identification name, or unknown-0xNN (Zeek &default style)."""
    e = TYPES.get(t)
    if e is not None:
        return e[0]
    return "F_SG_NA_1" if t == 125 else f"unknown-0x{t:02x}"


def cot_name(c: int) -> str:
    return COT_NAMES.get(c, f"unknown-0x{c:02x}")


def pdu_len(buf: Any, off: int) -> int | None:
    """StreamBuffer framing: an APDU is 0x68, length L (4..253), then L octets (104 section 5).

    Bytes that are not an APDU start are returned as one "PDU" running to the next 0x68 (or the end
    of what we hold), so the analyzer can report them and resynchronise like Wireshark does.
    """
    n = len(buf)
    if off >= n:
        return None
    if buf[off] != START:
        i = (buf if isinstance(buf, (bytes, bytearray)) else bytes(buf)).find(b"\x68", off + 1)
        return (i if i >= 0 else n) - off
    if off + 1 >= n:
        return None
    ln = buf[off + 1]
    if ln < 4:
        return 2            # invalid length: drop start and length octets, resync after them
    return ln + 2


def probe(data: bytes, is_orig: bool) -> bool:
    """A 104 stream starts with a whole APDU: 0x68, length 4..253, and a U-frame or I/S-frame."""
    if len(data) < APCI_LEN or data[0] != START or not 4 <= data[1] <= 253:
        return False
    if len(data) != data[1] + 2 and (len(data) < data[1] + 2 + 2 or data[data[1] + 2] != START):
        return False
    c = data[2]
    if c & 3 == 3:
        return c in U_FUNCTIONS and data[1] == 4
    if c & 3 == 1:
        return data[1] == 4
    return data[1] >= 4 + ASDU_HDR


def parse_objects(asdu: bytes, ca: int) -> tuple[list[dict[str, Any]], list[int], str | None]:
    """Decode every information object of an ASDU; returns (points, ioas, problem or None)."""
    t, vsq = asdu[0], asdu[1]
    sq, n = bool(vsq & 0x80), vsq & 0x7F
    entry = TYPES.get(t)
    if entry is None:
        return [], [], f"type {t}: information object size unknown"
    name, size, dec, tt, _ = entry
    tsize = 7 if tt == "56" else 3 if tt == "24" else 0
    esize = size + tsize
    body = len(asdu) - ASDU_HDR
    need = (3 + n * esize) if sq else n * (3 + esize)
    if n == 0:
        return [], [], None if body == 0 else f"{body} octets after an ASDU declaring no objects"
    problem = None if need == body else f"{name}: {n} objects need {need} octets, ASDU has {body}"
    fast = _FAST.get(t)
    if fast is not None:
        points, ioas = _fast_objects(asdu, fast, name, sq, n, body, esize, size, tsize, ca)
        return points, ioas, problem
    scale = _P_SCALE.get(t)
    flt7 = t in _FLOAT7
    points: list[dict[str, Any]] = []
    ioas: list[int] = []
    off = ASDU_HDR
    end = len(asdu)
    ioa = 0
    for k in range(n):
        if not sq or k == 0:
            if off + 3 > end:
                break
            ioa = asdu[off] | asdu[off + 1] << 8 | asdu[off + 2] << 16
            off += 3
        elif k:
            ioa += 1                        # SQ=1: consecutive addresses (101 section 7.2.2.1)
        if off + esize > end:
            break
        ioas.append(ioa)
        p: dict[str, Any] = {"ref": f"{ca}:{ioa}", "type": name}
        if dec is None:
            p["value"] = asdu[off:off + size].hex()
            p["quality"] = []
        else:
            v, q, extra = dec(asdu, off)
            if scale is not None:
                v = v * scale
            if isinstance(v, float):
                v = float(f"{v:.7g}") if flt7 else round(v, 7)
            p["value"] = v
            p["quality"] = q
            if extra:
                p.update(extra)
        if tsize:
            iso, iv = (cp56_iso if tsize == 7 else cp24_iso)(asdu, off + size)
            p["time"] = iso
            if iv:
                p["quality"] = [*p["quality"], "TIME_IV"]
        points.append(p)
        off += esize
    return points, ioas, problem


_REFS: dict[tuple[int, ...], list[str]] = {}    # (CA, IOA...) -> point refs, bounded (REFS_MAX)
REFS_MAX = 4096


def _refs(ca: int, ioas: list[int]) -> list[str]:
    """The refs "CA:IOA" of an ASDU's objects: stations send the same IOA sets again and again."""
    key = (ca, *ioas)
    refs = _REFS.get(key)
    if refs is None:
        if len(_REFS) >= REFS_MAX:
            _REFS.clear()
        refs = _REFS[key] = [f"{ca}:{a}" for a in ioas]
    return refs


def _fast_objects(asdu: bytes, fast: tuple[str, struct.Struct, struct.Struct], name: str, sq: bool, n: int,
                  body: int, esize: int, size: int, tsize: int,
                  ca: int) -> tuple[list[dict[str, Any]], list[int]]:
    """`parse_objects` for the _FAST types: the objects wholly present, unpacked in one pass."""
    kind, st0, st1 = fast
    if sq:                                  # one IOA, then consecutive elements
        if body < 3:
            return [], []
        base = asdu[6] | asdu[7] << 8 | asdu[8] << 16
        cnt = min(n, (body - 3) // esize)
        ioas = list(range(base, base + cnt))
        rows = st1.iter_unpack(asdu[9:9 + cnt * esize])
        tpos, stride, i = 9 + size, esize, 0          # i: first element field in a row
    else:                                   # rows: IOA low 16 bits, high 8 bits, element
        stride = 3 + esize
        cnt = min(n, body // stride)
        rows = list(st0.iter_unpack(asdu[ASDU_HDR:ASDU_HDR + cnt * stride]))
        ioas = [r[0] | r[1] << 16 for r in rows]
        tpos, i = ASDU_HDR + 3 + size, 2
    refs = _refs(ca, ioas)
    j = i + 1
    qds = _QDS
    if kind == "f":
        points = [{"ref": ref, "type": name, "value": float(f"{r[i]:.7g}"), "quality": list(qds[r[j]])}
                  for ref, r in zip(refs, rows, strict=True)]
    elif kind == "n":
        points = [{"ref": ref, "type": name, "value": round(r[i] / 32768.0, 7), "quality": list(qds[r[j]])}
                  for ref, r in zip(refs, rows, strict=True)]
    elif kind == "i":
        points = [{"ref": ref, "type": name, "value": r[i], "quality": list(qds[r[j]])}
                  for ref, r in zip(refs, rows, strict=True)]
    elif kind == "s":
        points = [{"ref": ref, "type": name, "value": bool(r[i] & 1), "quality": list(_SIQ[r[i]])}
                  for ref, r in zip(refs, rows, strict=True)]
    else:
        points = [{"ref": ref, "type": name, "value": r[i] & 3, "quality": list(_SIQ[r[i]])}
                  for ref, r in zip(refs, rows, strict=True)]
    if tsize:
        conv = cp56_iso if tsize == 7 else cp24_iso
        for k, p in enumerate(points):
            iso, iv = conv(asdu, tpos + k * stride)
            p["time"] = iso
            if iv:
                p["quality"] = [*p["quality"], "TIME_IV"]
    return points, ioas


class TcpAnalyzer(Analyzer):
    """One 104 connection: APDU framing per direction, sequence checks, pairing of commands."""

    PROTOCOL = PROTOCOL
    __slots__ = ("bufs", "cmds", "next_expire", "next_ns", "reads", "ucmds")

    def __init__(self, conn) -> None:
        super().__init__(conn)
        self.bufs = (StreamBuffer(), StreamBuffer())
        self.next_ns: list[int | None] = [None, None]     # [orig, resp] next expected N(S)
        self.cmds = Pending(timeout=60.0, limit=1024)     # (dir, type, ca, ioa) -> command record
        self.ucmds = Pending(timeout=60.0, limit=16)      # (dir, function) -> U act record
        self.reads = Pending(timeout=60.0, limit=1024)    # (dir, ca, ioa) -> C_RD record
        self.next_expire = 0.0

    # ------------------------------------------------------------------ stream
    def data(self, is_orig: bool, data: bytes, ts: float, frames: int | Frames) -> None:
        buf = self.bufs[0 if is_orig else 1]
        for pdu, fl, t in buf.feed(data, ts, frames, pdu_len):
            if pdu is None:         # pdu_len never returns <= 0, kept for the interface
                self.conn.weird(PROTOCOL, "iec104_bad_framing", "unframeable data", t, fl, is_orig)
            elif pdu[0] != START or len(pdu) < APCI_LEN:
                self.conn.weird(PROTOCOL, "iec104_garbage",
                                f"{len(pdu)} octets outside an APDU (start 0x{pdu[0]:02x})", t, fl, is_orig)
            else:
                self._apdu(is_orig, pdu, t, fl)
        self._expire(ts)

    def gap(self, is_orig: bool, size: int, ts: float) -> None:
        self.bufs[0 if is_orig else 1].clear()
        self.next_ns[0 if is_orig else 1] = None         # sequence unknown after lost bytes

    def close(self, ts: float) -> None:
        for is_orig in (True, False):
            buf = self.bufs[0 if is_orig else 1]
            if len(buf):
                self.conn.weird(PROTOCOL, "iec104_truncated_apdu", f"{len(buf)} octets left at close", ts,
                                buf.pending_frames(), is_orig)
                buf.clear()
        for rec in self.cmds.drain():
            self._emit_cmd(rec)
        for rec in self.reads.drain():
            self._emit_cmd(rec)
        for rec in self.ucmds.drain():
            self._emit_u(rec)

    def _expire(self, ts: float) -> None:
        if ts < self.next_expire:          # sweep the tables at most once a second of capture time
            return
        self.next_expire = ts + 1.0
        for rec in self.cmds.expire(ts):
            self._emit_cmd(rec)
        for rec in self.reads.expire(ts):
            self._emit_cmd(rec)
        for rec in self.ucmds.expire(ts):
            self._emit_u(rec)

    # ------------------------------------------------------------------ APCI
    def _apdu(self, is_orig: bool, pdu: bytes, ts: float, fl: Frames) -> None:
        c1 = pdu[2]
        if c1 & 1 == 0:                               # I format (104 section 5.1)
            ns = (c1 | pdu[3] << 8) >> 1
            nr = (pdu[4] | pdu[5] << 8) >> 1
            self._check_seq(is_orig, ns, ts, fl)
            if len(pdu) < APCI_LEN + ASDU_HDR:
                self.conn.weird(PROTOCOL, "iec104_short_asdu",
                                f"I-frame with {len(pdu) - APCI_LEN} ASDU octets", ts, fl, is_orig)
                return
            self._asdu(is_orig, pdu[APCI_LEN:], ns, nr, ts, fl)
        elif c1 & 3 == 1:                             # S format (104 section 5.2)
            if len(pdu) != APCI_LEN:
                self.conn.weird(PROTOCOL, "iec104_bad_s_frame", f"S-frame length {pdu[1]}", ts, fl, is_orig)
        else:                                         # U format (104 section 5.3)
            fn = U_FUNCTIONS.get(c1)
            if fn is None or len(pdu) != APCI_LEN:
                self.conn.weird(PROTOCOL, "iec104_bad_u_frame",
                                f"U-frame control 0x{c1:02x}, length {pdu[1]}", ts, fl, is_orig)
                return
            self._uframe(is_orig, fn[0], fn[1], ts, fl)

    def _check_seq(self, is_orig: bool, ns: int, ts: float, fl: Frames) -> None:
        """N(S) must advance by one per I-frame in each direction (104 section 5.1)."""
        d = 0 if is_orig else 1
        exp = self.next_ns[d]
        self.next_ns[d] = (ns + 1) % SEQ_MOD
        if exp is None or ns == exp:
            return
        behind = (exp - ns) % SEQ_MOD
        if 0 < behind <= 256:
            self.conn.weird(PROTOCOL, "iec104_sequence_duplicate", f"expected N(S)={exp}, got {ns}", ts, fl,
                            is_orig)
            self.next_ns[d] = exp
        else:
            self.conn.weird(PROTOCOL, "iec104_sequence_gap", f"expected N(S)={exp}, got {ns}", ts, fl,
                            is_orig)

    def _uframe(self, is_orig: bool, fn: str, kind: str, ts: float, fl: Frames) -> None:
        if kind == "act":
            rec = {"is_orig": is_orig, "ts": ts, "frames": list(fl), "function": fn}
            for old in self.ucmds.add((is_orig, fn), ts, rec):
                self._emit_u(old)
            return
        req = self.ucmds.pop((not is_orig, fn))
        if req is None:
            rec = {"is_orig": not is_orig, "ts": ts, "frames": list(fl), "function": fn, "orphan": True}
            self._emit_u(rec)
            return
        req["resp_ts"] = ts
        req["frames"] += fl
        self._emit_u(req)

    def _emit_u(self, rec: dict[str, Any]) -> None:
        f: dict[str, Any] = {"apci": "U", "u_function": rec["function"]}
        if rec.get("orphan"):
            f["status"] = "no_request"
        elif "resp_ts" in rec:
            f["status"] = "paired"
            f["latency"] = round(rec["resp_ts"] - rec["ts"], 6)
        else:
            f["status"] = "no_response"
        self.conn.emit(PROTOCOL, "session", f, rec["ts"], sorted(set(rec["frames"])), rec["is_orig"])

    # ------------------------------------------------------------------ ASDU
    def _asdu(self, is_orig: bool, asdu: bytes, ns: int, nr: int, ts: float, fl: Frames) -> None:
        t, vsq, cotb, oa = asdu[0], asdu[1], asdu[2], asdu[3]
        ca = asdu[4] | asdu[5] << 8
        cot = cotb & 0x3F
        points, ioas, problem = parse_objects(asdu, ca)
        if problem:
            self.conn.weird(PROTOCOL, "iec104_asdu_length_mismatch" if t in TYPES else "iec104_unknown_type",
                            problem, ts, fl, is_orig)
        entry = TYPES.get(t)
        action = entry[4] if entry else "other"
        f: dict[str, Any] = {
            "apci": "I",
            "ns": ns,                                  # send sequence number N(S)
            "nr": nr,                                  # receive sequence number N(R)
            "type_id": t,
            "type": type_name(t),
            "sq": bool(vsq & 0x80),                    # SQ: one IOA, consecutive objects
            "num_objects": vsq & 0x7F,
            "cot": cot,
            "cot_name": cot_name(cot),
            "negative": bool(cotb & 0x40),             # P/N bit
            "test": bool(cotb & 0x80),                 # T bit
            "oa": oa,                                  # originator address
            "ca": ca,                                  # common address of ASDU
            "ioa": ioas[0] if ioas else None,
            "ioas": ioas,
            "points": points,
        }
        if points and "se" in points[0]:
            f["select"] = points[0]["se"] == "select"
        ioa = ioas[0] if ioas else None
        if t >= 45 and t != 70 and cot in COT_REQUEST:
            rec = {"is_orig": is_orig, "ts": ts, "frames": list(fl), "fields": f, "action": action}
            if t == 102:
                rec["action"] = "read"
            for old in self.cmds.add((is_orig, t, ca, ioa), ts, rec):
                self._emit_cmd(old)
            return
        if t >= 45 and t != 70 and cot in _COT_ANSWER:
            key = (not is_orig, t, ca, ioa)
            rec = self.cmds.items.get(key)           # peek: stays pending until ActTerm
            if rec is None and ca != GLOBAL_CA:
                # A command to the global address is confirmed by the station under its own common
                # address (IEC 60870-5-101 7.2.4): pair it with the broadcast.
                gkey = (not is_orig, t, GLOBAL_CA, ioa)
                rec = self.cmds.items.get(gkey)
                if rec is not None:
                    key = gkey
                    rec[1]["fields"]["confirm_ca"] = ca
            rec = rec[1] if rec is not None else None
            if cot == COT_TERM:
                if rec is None:
                    rec = {"is_orig": not is_orig, "ts": ts, "frames": list(fl), "action": action,
                           "fields": dict(f, status="no_request", terminated=True)}
                    self._emit_cmd(rec, keep_status=True)
                    return
                self.cmds.pop(key)
                rec["frames"] += fl
                rec["fields"]["terminated"] = True
                rec["fields"]["term_ns"] = ns
                rec.setdefault("resp_ts", ts)
                self._emit_cmd(rec)
                return
            if rec is None or "resp_ts" in rec:
                if rec is not None:         # a second confirmation: emit the first exchange
                    self.cmds.pop(key)
                    self._emit_cmd(rec)
                orphan = {"is_orig": not is_orig, "ts": ts, "frames": list(fl),
                          "fields": dict(f, status="no_request"), "action": action}
                self._emit_cmd(orphan, keep_status=True)
                return
            rec["resp_ts"] = ts
            rec["frames"] += fl
            rf = rec["fields"]
            rf["confirm_cot"] = cot
            rf["confirm"] = "negative" if cotb & 0x40 or cot >= 44 else "positive"
            rf["resp_ns"], rf["resp_nr"] = ns, nr
            if rf["confirm"] == "negative" or cot == 9 or rf.get("select") or t not in TERMINATED:
                # No termination follows a negative reply, a deactivation, a select or a command
                # type that does not terminate (101 section 7.4): the exchange is complete.
                self.cmds.pop(key)
                self._emit_cmd(rec)
            return
        if t == 102 and cot == COT_REQ:
            rec = {"is_orig": is_orig, "ts": ts, "frames": list(fl), "fields": f, "action": "read"}
            for old in self.reads.add((is_orig, ca, ioa), ts, rec):
                self._emit_cmd(old)
            return
        if cot == COT_REQ and t < 45:
            rec = self.reads.pop((not is_orig, ca, ioa))
            if rec is not None:
                rec["resp_ts"] = ts
                rec["frames"] += fl
                rf = rec["fields"]
                rf["points"] = points
                rf["resp_type"] = f["type"]
                rf["resp_type_id"] = t
                rf["resp_cot"] = cot
                rf["resp_ns"], rf["resp_nr"] = ns, nr
                self._emit_cmd(rec)
                return
        f["status"] = "one_way"
        if 45 <= t < 120 and 20 <= cot <= 41:
            action = "read"             # command/parameter objects reported by interrogation
        self.conn.emit(PROTOCOL, action, f, ts, list(fl), is_orig)

    def _emit_cmd(self, rec: dict[str, Any], keep_status: bool = False) -> None:
        f = rec["fields"]
        if not keep_status:
            if "resp_ts" in rec:
                f["status"] = "paired"
                f["latency"] = round(rec["resp_ts"] - rec["ts"], 6)
            else:
                f["status"] = "no_response"
        self.conn.emit(PROTOCOL, rec["action"], f, rec["ts"], sorted(set(rec["frames"])), rec["is_orig"])
