"""The shared BER TLV reader: byte-literal edge cases (X.690 8.1) and a hypothesis round trip / fuzz."""

from __future__ import annotations

import contextlib
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sensors import ber


def test_short_form() -> None:
    t = ber.read_tlv(b"\x80\x03abc")
    assert (t.cls, t.constructed, t.tag, t.off, t.voff, t.end) == (ber.CONTEXT, False, 0, 0, 2, 5)
    assert bytes(t.value) == b"abc" and isinstance(t.value, memoryview)
    assert bytes(t.raw) == b"\x80\x03abc"


def test_classes_and_constructed() -> None:
    assert ber.read_tlv(b"\x61\x00").cls == ber.APPLICATION and ber.read_tlv(b"\x61\x00").constructed
    assert ber.read_tlv(b"\x30\x00").cls == ber.UNIVERSAL and ber.read_tlv(b"\x30\x00").tag == 16
    assert ber.read_tlv(b"\xc5\x00").cls == ber.PRIVATE and ber.read_tlv(b"\xc5\x00").tag == 5


def test_high_tag_number() -> None:
    assert ber.read_tlv(b"\x9f\x1f\x00").tag == 31                  # one subsequent octet
    t = ber.read_tlv(b"\xbf\x81\x00\x01\xff")                        # 128, constructed
    assert (t.tag, t.constructed, bytes(t.value)) == (128, True, b"\xff")
    assert ber.read_tlv(b"\x9f\xff\xff\x7f\x00").tag == (1 << 21) - 1


@pytest.mark.parametrize("data, match", [
    (b"\x9f", "tag number cut short"),
    (b"\x9f\x81", "tag number cut short"),
    (b"\x9f\x80\x01\x00", "leading zero"),
    (b"\x9f\x81\x81\x81\x81\x01\x00", "longer than 4"),
    (b"\x80", "length octet missing"),
    (b"\x80\x80\x00\x00", "indefinite"),
    (b"\x80\xff", "reserved"),
    (b"\x80\x85\x00\x00\x00\x00\x01\x00", "too long"),
    (b"\x80\x82\x01", "cut short"),
    (b"\x80\x03ab", "run past the end"),
    (b"", "no identifier"),
])
def test_malformed(data: bytes, match: str) -> None:
    with pytest.raises(ber.BerError, match=match):
        ber.read_tlv(data)


def test_long_form_lengths() -> None:
    t = ber.read_tlv(b"\x04\x81\x80" + bytes(128))
    assert t.length == 128 and t.voff == 3
    t = ber.read_tlv(b"\x04\x82\x01\x00" + bytes(256) + b"tail")
    assert t.length == 256 and t.end == 260


def test_end_bound_is_respected() -> None:
    buf = b"\x30\x04\x80\x02ab\x80\x01z"
    outer = ber.read_tlv(buf)
    assert [bytes(c.value) for c in outer.children()] == [b"ab"]
    with pytest.raises(ber.BerError):
        ber.read_tlv(buf, 2, 5)                      # the child runs past the given end
    assert [t.tag for t in ber.iter_tlvs(buf)] == [16, 0]


def test_children_of_primitive_and_bad_child() -> None:
    with pytest.raises(ber.BerError, match="primitive"):
        ber.read_tlv(b"\x80\x00").children()
    with pytest.raises(ber.BerError):
        list(ber.read_tlv(b"\x30\x03\x80\x05a").children())


def test_primitive_decoders() -> None:
    assert ber.as_int(b"\xff") == -1 and ber.as_int(b"\x00\x80") == 128
    assert ber.as_uint(b"\xff\xff") == 65535
    assert ber.as_bool(b"\x00") is False and ber.as_bool(b"\x01") is True
    assert ber.as_bits(b"\x03\x00\x08") == "0000000000001"        # 13 bits (3 unused)
    assert ber.as_bits(b"\x06\x80") == "10" and ber.as_bits(b"\x00") == ""
    assert ber.as_float(b"\x42\xf6\xe6\x66") == pytest.approx(123.45, rel=1e-6)
    assert ber.as_float(b"\x3f\xf0\x00\x00\x00\x00\x00\x00") == 1.0
    assert ber.as_str(b"ab\xff") == "ab\ufffd"
    for fn, arg in ((ber.as_int, b""), (ber.as_uint, b""), (ber.as_bool, b"\x00\x00"), (ber.as_bits, b""),
                    (ber.as_bits, b"\x08\x00"), (ber.as_bits, b"\x01"), (ber.as_float, b"\x00\x00")):
        with pytest.raises(ber.BerError):
            fn(arg)


# --- property tests -----------------------------------------------------------------------------------

def encode(cls: int, constructed: bool, tag: int, content: bytes) -> bytes:
    """A reference BER encoder (definite lengths, minimal forms) for the round trip."""
    first = (cls << 6) | (0x20 if constructed else 0)
    if tag < 31:
        ident = bytes([first | tag])
    else:
        parts = []
        t = tag
        while True:
            parts.append(t & 0x7F)
            t >>= 7
            if not t:
                break
        parts.reverse()
        ident = bytes([first | 0x1F] + [p | 0x80 for p in parts[:-1]] + [parts[-1]])
    n = len(content)
    if n < 128:
        length = bytes([n])
    else:
        nb = n.to_bytes((n.bit_length() + 7) // 8, "big")
        length = bytes([0x80 | len(nb)]) + nb
    return ident + length + content


@settings(max_examples=200, deadline=None)
@given(st.integers(0, 3), st.booleans(), st.integers(0, (1 << 28) - 1), st.binary(max_size=300),
       st.binary(max_size=8))
def test_round_trip(cls: int, cons: bool, tag: int, content: bytes, tail: bytes) -> None:
    enc = encode(cls, cons, tag, content)
    t = ber.read_tlv(enc + tail)
    assert (t.cls, t.constructed, t.tag, bytes(t.value), t.end) == (cls, cons, tag, content, len(enc))


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64), st.integers(0, 70))
def test_fuzz_never_escapes_bounds(data: bytes, off: int) -> None:
    try:
        for t in ber.iter_tlvs(data, off):
            assert off <= t.off < t.voff <= t.end <= len(data)
            if t.constructed:
                with contextlib.suppress(ber.BerError):
                    list(t.children())
    except ber.BerError:
        pass


def test_f32_shortest_round_trip() -> None:
    for x in (60.092587, 72.3, 1493.1343, 1e-38, 3.4e38, 0.1):
        v = struct.unpack("!f", struct.pack("!f", x))[0]
        s = ber.f32(v)
        assert struct.pack("!f", s) == struct.pack("!f", v) and len(repr(s)) <= 14
    assert ber.f32(struct.unpack("!f", struct.pack("!f", 72.3))[0]) == 72.3
    assert ber.f32(float("inf")) == float("inf")
