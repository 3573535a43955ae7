"""A small, bounds-checked BER (ITU-T X.690) TLV reader shared by the ASN.1-based parsers (GOOSE, MMS).

Only what ICS protocols need: identifier octets with class, constructed bit and tag number (including
the high-tag-number form, X.690 8.1.2.4), definite lengths in short and long form (8.1.3.4/8.1.3.5).
The indefinite form (8.1.3.6) is rejected with `BerError`: GOOSE and MMS (ISO 9506) use definite
lengths only, and an indefinite one in their traffic is garbage or an evasion attempt.

Every read works on a `memoryview` (no copies) and checks bounds; a malformed encoding raises
`BerError` (a `ValueError`), which parsers turn into `weird` events. Typical use:

    for tlv in iter_tlvs(mv, 0, len(mv)):
        if tlv.cls == CONTEXT and tlv.tag == 0:
            name = as_str(tlv.value)
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterator

UNIVERSAL, APPLICATION, CONTEXT, PRIVATE = 0, 1, 2, 3      # X.690 8.1.2.2 class bits
CLASS_NAMES = ("universal", "application", "context", "private")

MAX_TAG_OCTETS = 4        # high tag numbers up to 28 bits; longer means garbage
MAX_LENGTH_OCTETS = 4     # lengths up to 4 GiB; our PDUs are far shorter

_F32 = struct.Struct("!f")
_F64 = struct.Struct("!d")


class BerError(ValueError):
    """A malformed or unsupported BER encoding (the message says what and where)."""


class Tlv:
    """One decoded TLV: identifier, where it sits in the buffer, and its contents as a view.

    `off` is the offset of the identifier octet, `voff`/`end` delimit the contents. All offsets are
    into the buffer given to `read_tlv`.
    """

    __slots__ = ("buf", "cls", "constructed", "end", "off", "tag", "voff")

    def __init__(self, buf: memoryview, cls: int, constructed: bool, tag: int, off: int, voff: int,
                 end: int) -> None:
        self.buf = buf
        self.cls = cls                    # UNIVERSAL / APPLICATION / CONTEXT / PRIVATE
        self.constructed = constructed    # contents are further TLVs
        self.tag = tag                    # tag number (any size up to MAX_TAG_OCTETS * 7 bits)
        self.off = off                    # offset of the identifier octet(s)
        self.voff = voff                  # offset of the contents
        self.end = end                    # offset just past the contents

    @property
    def value(self) -> memoryview:
        """The contents octets (no copy)."""
        return self.buf[self.voff:self.end]

    @property
    def length(self) -> int:
        return self.end - self.voff

    @property
    def raw(self) -> memoryview:
        """The whole TLV: identifier, length and contents."""
        return self.buf[self.off:self.end]

    def children(self) -> Iterator[Tlv]:
        """The TLVs inside a constructed encoding.

        :raise BerError: the TLV is primitive, or a child is malformed.
        """
        if not self.constructed:
            raise BerError(f"{self!r} is primitive, it has no children")
        return iter_tlvs(self.buf, self.voff, self.end)

    def __repr__(self) -> str:
        kind = "cons" if self.constructed else "prim"
        return f"Tlv({CLASS_NAMES[self.cls]} {self.tag} {kind} @{self.off} len={self.end - self.voff})"


def read_tlv(buf: memoryview | bytes, off: int = 0, end: int | None = None) -> Tlv:
    """Decode the TLV starting at `off`; its contents must end at or before `end`.

    :raise BerError: truncated identifier or length, indefinite or over-long length, contents past `end`.
    """
    mv = buf if isinstance(buf, memoryview) else memoryview(buf)
    if end is None or end > len(mv):
        end = len(mv)
    if off >= end:
        raise BerError(f"no identifier octet at offset {off}")
    b = mv[off]
    cls, constructed, tag = b >> 6, bool(b & 0x20), b & 0x1F
    p = off + 1
    if tag == 0x1F:                                   # X.690 8.1.2.4: high-tag-number form
        tag = 0
        for i in range(MAX_TAG_OCTETS + 1):
            if p >= end:
                raise BerError(f"tag number cut short at offset {p}")
            if i == MAX_TAG_OCTETS:
                raise BerError(f"tag number longer than {MAX_TAG_OCTETS} octets at offset {off}")
            c = mv[p]
            p += 1
            if i == 0 and c == 0x80:
                raise BerError(f"tag number with a leading zero octet at offset {off}")
            tag = (tag << 7) | (c & 0x7F)
            if not c & 0x80:
                break
    if p >= end:
        raise BerError(f"length octet missing at offset {p}")
    n = mv[p]
    p += 1
    if n & 0x80:
        k = n & 0x7F
        if k == 0:                                    # X.690 8.1.3.6: indefinite form
            raise BerError(f"indefinite length at offset {p - 1} (definite lengths only)")
        if k == 0x7F:                                 # X.690 8.1.3.5 c): reserved value
            raise BerError(f"reserved length octet 0xff at offset {p - 1}")
        if k > MAX_LENGTH_OCTETS:
            raise BerError(f"length of {k} octets at offset {p - 1} is too long")
        if p + k > end:
            raise BerError(f"long-form length cut short at offset {p}")
        n = int.from_bytes(mv[p:p + k], "big")
        p += k
    if p + n > end:
        raise BerError(f"contents of {n} octets at offset {p} run past the end ({end})")
    return Tlv(mv, cls, constructed, tag, off, p, p + n)


def iter_tlvs(buf: memoryview | bytes, off: int = 0, end: int | None = None) -> Iterator[Tlv]:
    """Every TLV in sequence between `off` and `end` (a constructed encoding's contents).

    :raise BerError: as `read_tlv`, raised when the malformed TLV is reached.
    """
    mv = buf if isinstance(buf, memoryview) else memoryview(buf)
    if end is None or end > len(mv):
        end = len(mv)
    while off < end:
        t = read_tlv(mv, off, end)
        yield t
        off = t.end


# --- primitive contents (X.690 8.2-8.6, 8.21) -------------------------------------------------------

def as_int(v: memoryview | bytes) -> int:
    """INTEGER contents: two's complement, big-endian (X.690 8.3).

    :raise BerError: empty contents.
    """
    if len(v) == 0:
        raise BerError("empty INTEGER")
    return int.from_bytes(v, "big", signed=True)


def as_uint(v: memoryview | bytes) -> int:
    """Unsigned contents (MMS Unsigned, a leading 0x00 keeps the sign bit clear).

    :raise BerError: empty contents.
    """
    if len(v) == 0:
        raise BerError("empty unsigned integer")
    return int.from_bytes(v, "big")


def as_bool(v: memoryview | bytes) -> bool:
    """BOOLEAN contents: one octet, zero is FALSE (X.690 8.2).

    :raise BerError: not exactly one octet.
    """
    if len(v) != 1:
        raise BerError(f"BOOLEAN of {len(v)} octets")
    return v[0] != 0


def as_bits(v: memoryview | bytes) -> str:
    """BIT STRING contents as '0'/'1' characters, first bit first; the first octet counts unused bits.

    :raise BerError: empty, or more than 7 unused bits, or unused bits with no data octet.
    """
    if len(v) == 0:
        raise BerError("empty BIT STRING")
    unused = v[0]
    if unused > 7 or (unused and len(v) == 1):
        raise BerError(f"BIT STRING with {unused} unused bits")
    nbits = (len(v) - 1) * 8 - unused
    if nbits == 0:
        return ""
    return format(int.from_bytes(v[1:], "big") >> unused, f"0{nbits}b")


def as_str(v: memoryview | bytes, encoding: str = "utf-8") -> str:
    """String contents (VisibleString, UTF8String ...); undecodable octets become U+FFFD."""
    return bytes(v).decode(encoding, errors="replace")


def as_float(v: memoryview | bytes) -> float:
    """IEEE 754 single or double from exactly 4 or 8 octets, big-endian.

    :raise BerError: another size.
    """
    if len(v) == 4:
        return _F32.unpack_from(v)[0]
    if len(v) == 8:
        return _F64.unpack_from(v)[0]
    raise BerError(f"float of {len(v)} octets")


def f32(v: float) -> float:
    """A single-precision value as the shortest decimal that converts back to the same float32
    (60.092587 rather than 60.09258651733398): what a person reads, and still exact. Used for MMS and
    BACnet REAL values."""
    if not math.isfinite(v):
        return v
    packed = _F32.pack(v)
    for digits in (6, 7, 8):
        s = float(f"{v:.{digits}g}")
        if _F32.pack(s) == packed:
            return s
    return float(f"{v:.9g}")


def as_oid(v: memoryview | bytes) -> str:
    """OBJECT IDENTIFIER contents as dotted decimal (X.690 8.19): the first octet(s) pack the first two
    arcs as 40 * a1 + a2 (a1 = 2 takes every value >= 80).

    :raise BerError: empty, or the last sub-identifier cut short (its octet has bit 8 set).
    """
    if len(v) == 0:
        raise BerError("empty OBJECT IDENTIFIER")
    if v[-1] & 0x80:
        raise BerError("OBJECT IDENTIFIER cut short")
    arcs, n = [], 0
    for b in v:
        n = (n << 7) | (b & 0x7F)
        if not b & 0x80:
            arcs.append(n)
            n = 0
    first = arcs[0]
    a1 = min(first // 40, 2)
    return ".".join(map(str, [a1, first - 40 * a1, *arcs[1:]]))
