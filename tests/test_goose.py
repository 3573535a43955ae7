"""GOOSE analyzer: byte-literal frames, stNum/sqNum continuity, data types, malformed input, fuzz."""

from __future__ import annotations

import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sensors import goose
from tests.fuzzing import feed_l2
from tests.test_ber import encode

GOCB = "IED1LD0/LLN0$GO$gcb1"
DATSET = "IED1LD0/LLN0$DS1"


def tlv(tag: int, content: bytes, constructed: bool = False) -> bytes:
    return encode(2, constructed, tag, content)


def pdu(st_num: int = 1, sq_num: int = 0, data: list[bytes] | None = None, entries: int | None = None,
        omit: tuple[int, ...] = (), extra: bytes = b"") -> bytes:
    """One GOOSE frame payload (after the EtherType), IEC 61850-8-1 Annex A field order."""
    data = [tlv(3, b"\x01"), tlv(4, b"\x06\x40")] if data is None else data
    fields = {
        0: tlv(0, GOCB.encode()), 1: tlv(1, b"\x07\xd0"), 2: tlv(2, b"IED1LD0/LLN0$DS1"), 3: tlv(3, b"goid1"),
        4: tlv(4, struct.pack("!I", 1_000_000_000) + b"\x80\x00\x00" + b"\x0a"),
        5: tlv(5, st_num.to_bytes(5, "big").lstrip(b"\x00") or b"\x00"),
        6: tlv(6, sq_num.to_bytes(5, "big").lstrip(b"\x00") or b"\x00"),
        7: tlv(7, b"\x00"), 8: tlv(8, b"\x01"), 9: tlv(9, b"\x00"),
        10: tlv(10, bytes([len(data) if entries is None else entries])),
        11: tlv(11, b"".join(data), True),
    }
    body = b"".join(v for k, v in fields.items() if k not in omit) + extra
    apdu = encode(1, True, 1, body)
    return struct.pack("!HHHH", 0x3001, 8 + len(apdu), 0, 0) + apdu


def kinds(events: list) -> list:
    return [(e.kind, e.fields.get("name")) for e in events]


def test_frame_fields_points_identity() -> None:
    [e] = feed_l2(goose, [pdu(st_num=7, sq_num=3)])
    f = e.fields
    assert e.kind == "goose" and e.action == "write" and f["status"] == "one_way"
    assert (f["appid"], f["gocb_ref"], f["dat_set"], f["go_id"]) == (0x3001, GOCB, DATSET, "goid1")
    assert (f["st_num"], f["sq_num"], f["time_allowed_to_live"], f["conf_rev"]) == (7, 3, 2000, 1)
    assert f["simulation"] is False and f["simulated"] is False and f["nds_com"] is False
    assert f["t"] == "2001-09-09T01:46:40.500000Z" and f["t_quality"] == 0x0A
    assert f["data"] == [True, "01"] and f["num_dat_set_entries"] == 2
    assert f["points"] == [{"ref": f"{GOCB}[0]", "value": True}, {"ref": f"{GOCB}[1]", "value": "01"}]
    assert f["identity"] == {"name": "IED1LD0", "gocb_ref": GOCB, "dat_set": DATSET, "go_id": "goid1"}
    assert f["identity_of"] == "src" and e.src.mac == "02:00:00:00:00:01"
    assert "state_change" not in f


def test_data_types() -> None:
    data = [
        tlv(5, b"\xff\x38"),                             # integer -200
        tlv(6, b"\x00\xff"),                             # unsigned 255
        tlv(7, b"\x08\x42\xf6\xe6\x66"),                 # floating-point, 8-bit exponent: 123.45
        tlv(7, b"\x0b\x3f\xf8\x00\x00\x00\x00\x00\x00"),  # double 1.5
        tlv(9, b"\xde\xad"), tlv(10, b"abc"), tlv(16, "é".encode()),
        tlv(17, struct.pack("!I", 0) + b"\x00\x00\x00\x00"),
        tlv(2, tlv(3, b"\x00") + tlv(1, tlv(5, b"\x01") + tlv(5, b"\x02"), True), True),  # structure
        tlv(12, struct.pack("!I", 3_600_000) + b"\x00\x01"),   # binary-time: 1984-01-02 01:00
    ]
    [e] = feed_l2(goose, [pdu(data=data)])
    f = e.fields
    assert f["data"] == [-200, 255, 123.45, 1.5, "dead", "abc", "é", "1970-01-01T00:00:00.000000Z",
                         [False, [1, 2]], "1984-01-02T01:00:00.000000Z"]
    refs = [p["ref"] for p in f["points"]]
    assert refs[8:11] == [f"{GOCB}[8].0", f"{GOCB}[8].1.0", f"{GOCB}[8].1.1"]


def test_continuity() -> None:
    seq = [(1, 0), (1, 1), (1, 3), (2, 0), (2, 1), (1, 0), (1, 1), (1, 0), (4, 0), (4, 0)]
    events = feed_l2(goose, [pdu(s, q) for s, q in seq])
    g = [e for e in events if e.kind == "goose"]
    assert [e.fields.get("state_change", False) for e in g] == [
        False, False, False, True, False, False, False, False, True, False]
    w = [(e.origin.frames[0], e.fields["name"]) for e in events if e.kind == "weird"]
    assert w == [(3, "goose_sqnum_gap"), (6, "goose_stnum_regression"),
                 (8, "goose_sqnum_reset_without_stnum_change"), (9, "goose_stnum_gap"),
                 (10, "goose_sqnum_repeat")]


def test_continuity_is_per_publisher_and_wraps() -> None:
    from pathlib import Path

    from icsight.settings import Settings
    from sensors.pipeline import Sensor

    s = Sensor(Settings(data_dir=Path(".")), protocols={"goose": goose})
    s.begin("t")
    an = goose.L2Analyzer(s)
    an.frame(0.0, 1, "02:00:00:00:00:01", "01:0c:cd:01:00:01", 0x88B8, pdu(5, 0), None)
    an.frame(0.1, 2, "02:00:00:00:00:02", "01:0c:cd:01:00:01", 0x88B8, pdu(1, 0), 7)   # other IED
    an.frame(0.2, 3, "02:00:00:00:00:01", "01:0c:cd:01:00:01", 0x88B8, pdu(5, 1), None)
    an.frame(0.3, 4, "02:00:00:00:00:02", "01:0c:cd:01:00:01", 0x88B8, pdu(0xFFFFFFFF, 0), 7)
    an.frame(0.4, 5, "02:00:00:00:00:02", "01:0c:cd:01:00:01", 0x88B8, pdu(1, 0), 7)     # wrap to 1
    ev = s.drain()
    assert [e.kind for e in ev].count("weird") == 1          # only the jump 1 -> 0xFFFFFFFF (a gap)
    assert ev[-1].fields["state_change"] is True and ev[-1].fields["vlan"] == 7


def test_entries_mismatch_and_missing_fields() -> None:
    ev = feed_l2(goose, [pdu(entries=5), pdu(omit=(2, 4))])
    assert ("weird", "goose_num_entries_mismatch") in kinds(ev)
    missing = [e for e in ev if e.fields.get("name") == "goose_missing_field"]
    assert missing and "dat_set" in missing[0].fields["reason"] and "t" in missing[0].fields["reason"]
    assert [e.kind for e in ev].count("goose") == 2


def test_malformed_frames() -> None:
    good = pdu()
    cases = {
        "goose_truncated_header": good[:5],
        "goose_bad_length": struct.pack("!HHHH", 1, 4, 0, 0) + good[8:],
        "goose_truncated": good[:-3],
        "goose_not_goose_pdu": good[:8] + b"\x62\x00",
        "goose_bad_pdu": good[:8] + b"\x61\x80" + good[10:],        # indefinite length
        "goose_bad_field": pdu(data=[tlv(7, b"\x08\x00")]),          # a 1-octet float
        "goose_trailing_data": good[:2] + struct.pack("!H", len(good) + 2) + good[4:] + b"\x01\x02",
    }
    for name, frame in cases.items():
        ev = feed_l2(goose, [frame])
        assert ("weird", name) in kinds(ev), (name, kinds(ev))


def test_simulation_bit_and_ethernet_padding() -> None:
    frame = bytearray(pdu())
    frame[4] |= 0x80                                          # Reserved1 bit 15: simulated (Ed.2)
    [e] = feed_l2(goose, [bytes(frame) + bytes(20)])          # padding after Length is ignored
    assert e.fields["simulated"] is True


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=120))
def test_fuzz_random(data: bytes) -> None:
    feed_l2(goose, [data])


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzz_mutations(data: st.DataObject) -> None:
    frame = bytearray(pdu(data=[tlv(2, tlv(3, b"\x01") + tlv(7, b"\x08\x00\x00\x00\x00"), True),
                                tlv(4, b"\x03\x00\x08")]))
    op = data.draw(st.sampled_from(["flip", "truncate", "length"]))
    if op == "flip":
        i = data.draw(st.integers(0, len(frame) - 1))
        frame[i] ^= 1 << data.draw(st.integers(0, 7))
        feed_l2(goose, [bytes(frame)])
    elif op == "truncate":
        n = data.draw(st.integers(0, len(frame) - 1))
        ev = feed_l2(goose, [bytes(frame[:n])])
        assert any(e.kind == "weird" for e in ev), "a cut frame must be flagged"
    else:
        # rewrite one BER length octet inside the goosePdu
        i = data.draw(st.integers(9, len(frame) - 1))
        frame[i] = data.draw(st.integers(0, 255))
        feed_l2(goose, [bytes(frame)])
