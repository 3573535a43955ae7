"""IEC 60870-5-104 analyzer: byte-literal cases (framing, sequence checks, every pairing rule, element
decoding) and a hypothesis fuzz of random and mutated APDUs."""

from __future__ import annotations

import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sensors import iec104
from tests.fuzzing import feed


def asdu(t: int, objs: bytes, n: int = 1, cot: int = 3, ca: int = 7, sq: bool = False, oa: int = 0,
         pn: bool = False, test: bool = False) -> bytes:
    """Data unit identifier (101 section 7.2) + information objects."""
    return bytes([t, n | (0x80 if sq else 0), cot | (0x40 if pn else 0) | (0x80 if test else 0), oa]) + \
        struct.pack("<H", ca) + objs


def ioa(x: int) -> bytes:
    return x.to_bytes(3, "little")


def i_frame(ns: int, nr: int, body: bytes) -> bytes:
    return bytes([0x68, 4 + len(body)]) + struct.pack("<HH", ns << 1, nr << 1) + body


def u_frame(c: int) -> bytes:
    return bytes([0x68, 4, c, 0, 0, 0])


def s_frame(nr: int) -> bytes:
    return bytes([0x68, 4, 1, 0]) + struct.pack("<H", nr << 1)


def kinds(evs, kind: str = "iec104"):
    return [e for e in evs if e.kind == kind]


def weird_names(evs) -> list[str]:
    return [e.fields["name"] for e in evs if e.kind == "weird"]


# CP56Time2a of 2009-08-13 16:41:49.834, Thursday (dow 4)
CP56 = struct.pack("<H", 49834) + bytes([41, 16, 13 | 4 << 5, 8, 9])


def test_u_frames_pair_act_with_con() -> None:
    evs = feed(iec104, [(True, u_frame(0x07)), (False, u_frame(0x0B)), (False, u_frame(0x43)),
                        (True, u_frame(0x83)), (False, u_frame(0x83))])
    s = kinds(evs)
    assert [(e.fields["u_function"], e.fields["status"], list(e.origin.frames)) for e in s] == [
        ("STARTDT", "paired", [1, 2]), ("TESTFR", "paired", [3, 4]), ("TESTFR", "no_request", [5])]
    assert all(e.action == "session" for e in s)
    assert s[0].src.port == 40000 and s[0].fields["latency"] == 1.0
    assert s[1].src.port == 2404          # the outstation sent this TESTFR act
    assert s[2].src.port == 40000         # an orphan con: the act would have come from the other side


def test_monitor_float_values_quality_and_direction() -> None:
    objs = ioa(1300) + struct.pack("<f", 30.5) + b"\x00" + ioa(1301) + struct.pack("<f", -2.25) + b"\x81"
    evs = feed(iec104, [(False, i_frame(77, 20, asdu(13, objs, n=2, cot=1)))])
    (e,) = kinds(evs)
    f = e.fields
    assert e.action == "read" and f["status"] == "one_way" and e.src.port == 2404
    assert (f["type"], f["type_id"], f["cot_name"], f["ca"], f["ns"], f["nr"]) == (
        "M_ME_NC_1", 13, "per/cyc", 7, 77, 20)
    assert f["points"] == [
        {"ref": "7:1300", "type": "M_ME_NC_1", "value": 30.5, "quality": []},
        {"ref": "7:1301", "type": "M_ME_NC_1", "value": -2.25, "quality": ["OV", "IV"]},
    ]


def test_sq_consecutive_addresses() -> None:
    evs = feed(iec104, [(False, i_frame(0, 0, asdu(1, ioa(100) + b"\x01\x00\x91", n=3, cot=20, sq=True)))])
    (e,) = kinds(evs)
    assert e.fields["sq"] is True and e.fields["ioas"] == [100, 101, 102]
    assert [(p["ref"], p["value"], p["quality"]) for p in e.fields["points"]] == [
        ("7:100", True, []), ("7:101", False, []), ("7:102", True, ["BL", "IV"])]


def test_cp56_and_cp24_time_tags() -> None:
    cp56_iv = CP56[:2] + bytes([CP56[2] | 0x80]) + CP56[3:]
    evs = feed(iec104, [
        (False, i_frame(0, 0, asdu(30, ioa(2) + b"\x01" + CP56))),
        (False, i_frame(1, 0, asdu(31, ioa(3) + b"\x02" + cp56_iv))),
        (False, i_frame(2, 0, asdu(10, ioa(4) + struct.pack("<hBHB", -16384, 0, 5123, 7)))),
    ])
    a, b, c = (e.fields["points"][0] for e in kinds(evs))
    assert a["time"] == "2009-08-13T16:41:49.834" and a["value"] is True
    assert b["value"] == 2 and b["quality"] == ["TIME_IV"]
    assert c["value"] == -0.5 and c["time"] == "-07:05.123"


def test_integrated_totals_step_and_bitstring() -> None:
    evs = feed(iec104, [
        (False, i_frame(0, 0, asdu(15, ioa(9) + struct.pack("<i", -5) + bytes([0x23 | 0x80])))),
        (False, i_frame(1, 0, asdu(5, ioa(10) + bytes([0x80 | 0x7F, 0x10])))),
        (False, i_frame(2, 0, asdu(7, ioa(11) + struct.pack("<I", 0xDEADBEEF) + b"\x00"))),
    ])
    bcr, vti, bsi = (e.fields["points"][0] for e in kinds(evs))
    assert (bcr["value"], bcr["seq"], bcr["quality"]) == (-5, 3, ["CY", "IV"])
    assert (vti["value"], vti["transient"], vti["quality"]) == (-1, True, ["BL"])
    assert bsi["value"] == 0xDEADBEEF


def test_command_act_con_term_is_one_event() -> None:
    act = asdu(45, ioa(4500) + b"\x01", cot=6)          # SCO: ON, execute
    evs = feed(iec104, [(True, i_frame(22, 81, act)),
                        (False, i_frame(81, 23, asdu(45, ioa(4500) + b"\x01", cot=7))),
                        (False, i_frame(82, 23, asdu(45, ioa(4500) + b"\x01", cot=10)))])
    (e,) = kinds(evs)
    f = e.fields
    assert e.action == "control" and e.src.port == 40000
    assert list(e.origin.frames) == [1, 2, 3]
    assert (f["status"], f["confirm"], f["confirm_cot"], f["terminated"], f["select"]) == (
        "paired", "positive", 7, True, False)
    assert (f["resp_ns"], f["term_ns"], f["latency"]) == (81, 82, 1.0)
    assert f["points"][0] == {"ref": "7:4500", "type": "C_SC_NA_1", "value": True, "quality": [],
                              "qu": 0, "se": "execute"}


def test_select_completes_at_confirmation_and_negative_confirm() -> None:
    sel = asdu(46, ioa(15000) + bytes([0x80 | 0x02]), cot=6)      # DCO ON, select
    evs = feed(iec104, [(True, i_frame(0, 0, sel)),
                        (False, i_frame(0, 1, asdu(46, ioa(15000) + b"\x82", cot=7, pn=True))),
                        (True, i_frame(1, 1, asdu(45, ioa(9) + b"\x00", cot=6, test=True)))])
    a, b = kinds(evs)
    assert (a.fields["select"], a.fields["confirm"], a.fields["status"], list(a.origin.frames)) == (
        True, "negative", "paired", [1, 2])
    assert a.fields["points"][0]["value"] == 2
    assert (b.fields["status"], b.fields["test"]) == ("no_response", True)   # flagged at close


def test_interrogation_with_data_and_termination() -> None:
    evs = feed(iec104, [
        (True, i_frame(0, 0, asdu(100, ioa(0) + b"\x14", cot=6))),
        (False, i_frame(0, 1, asdu(100, ioa(0) + b"\x14", cot=7))),
        (False, i_frame(1, 1, asdu(1, ioa(5) + b"\x01", cot=20))),
        (False, i_frame(2, 1, asdu(100, ioa(0) + b"\x14", cot=10))),
    ])
    data, gi = kinds(evs)
    assert data.fields["cot_name"] == "inrogen" and data.fields["status"] == "one_way"
    assert (gi.action, gi.fields["type"], gi.fields["status"], gi.fields["terminated"]) == (
        "read", "C_IC_NA_1", "paired", True)
    assert gi.fields["points"][0]["value"] == 20 and list(gi.origin.frames) == [1, 2, 4]


def test_setpoint_clock_and_reset_actions() -> None:
    evs = feed(iec104, [
        (True, i_frame(0, 0, asdu(50, ioa(5020) + struct.pack("<f", 12.5) + b"\x00", cot=6))),
        (False, i_frame(0, 1, asdu(50, ioa(5020) + struct.pack("<f", 12.5) + b"\x00", cot=7))),
        (False, i_frame(1, 1, asdu(50, ioa(5020) + struct.pack("<f", 12.5) + b"\x00", cot=10))),
        (True, i_frame(1, 2, asdu(103, ioa(0) + CP56, cot=6))),
        (False, i_frame(2, 2, asdu(103, ioa(0) + CP56, cot=7))),
        (True, i_frame(2, 3, asdu(105, ioa(0) + b"\x01", cot=6))),
        (False, i_frame(3, 3, asdu(105, ioa(0) + b"\x01", cot=7))),
    ])
    se, cs, rp = kinds(evs)
    assert (se.action, se.fields["points"][0]["value"], se.fields["points"][0]["ql"]) == ("write", 12.5, 0)
    assert (cs.action, cs.fields["points"][0]["value"], cs.fields["status"]) == (
        "write", "2009-08-13T16:41:49.834", "paired")
    assert (rp.action, rp.fields["type"], rp.fields["status"]) == ("control", "C_RP_NA_1", "paired")


def test_read_command_paired_with_monitor_reply() -> None:
    evs = feed(iec104, [(True, i_frame(0, 0, asdu(102, ioa(1300), cot=5))),
                        (False, i_frame(0, 1, asdu(13, ioa(1300) + struct.pack("<fB", 1.0, 0), cot=5)))])
    (e,) = kinds(evs)
    assert (e.action, e.fields["type"], e.fields["resp_type"], e.fields["status"]) == (
        "read", "C_RD_NA_1", "M_ME_NC_1", "paired")
    assert e.fields["points"][0]["value"] == 1.0


def test_sequence_gap_and_duplicate() -> None:
    m = asdu(1, ioa(1) + b"\x00")
    evs = feed(iec104, [(False, i_frame(0, 0, m)), (False, i_frame(1, 0, m)), (False, i_frame(3, 0, m)),
                        (False, i_frame(3, 0, m)), (False, i_frame(4, 0, m))])
    w = [e for e in evs if e.kind == "weird"]
    assert [(e.fields["name"], e.fields["reason"], list(e.origin.frames)) for e in w] == [
        ("iec104_sequence_gap", "expected N(S)=2, got 3", [3]),
        ("iec104_sequence_duplicate", "expected N(S)=4, got 3", [4])]
    assert len(kinds(evs)) == 5


def test_sequence_wraps_at_32768() -> None:
    m = asdu(1, ioa(1) + b"\x00")
    evs = feed(iec104, [(False, i_frame(32767, 0, m)), (False, i_frame(0, 0, m))])
    assert weird_names(evs) == []


def test_unknown_type_keeps_header_and_flags_it() -> None:
    evs = feed(iec104, [(False, i_frame(0, 0, asdu(99, ioa(1) + b"\x01\x02", cot=3, ca=300)))])
    (e,) = kinds(evs)
    f = e.fields
    assert (f["type"], f["ca"], f["points"], e.action) == ("unknown-0x63", 300, [], "other")
    assert weird_names(evs) == ["iec104_unknown_type"]


def test_length_mismatch_keeps_complete_objects() -> None:
    objs = ioa(1) + struct.pack("<f", 1.0) + b"\x00" + ioa(2) + b"\x00\x00"
    evs = feed(iec104, [(False, i_frame(0, 0, asdu(13, objs, n=2)))])
    (e,) = kinds(evs)
    assert [p["ref"] for p in e.fields["points"]] == ["7:1"]
    assert weird_names(evs) == ["iec104_asdu_length_mismatch"]


def test_apdu_split_across_segments_lists_both_frames() -> None:
    pdu = i_frame(0, 0, asdu(1, ioa(1) + b"\x01"))
    evs = feed(iec104, [(False, pdu[:5]), (False, pdu[5:] + s_frame(3))])
    (e,) = kinds(evs)
    assert list(e.origin.frames) == [1, 2]
    assert weird_names(evs) == []


def test_garbage_before_apdu_is_reported_and_skipped() -> None:
    evs = feed(iec104, [(True, b"\x01\x02\x03" + u_frame(0x43)), (False, u_frame(0x83))])
    assert weird_names(evs) == ["iec104_garbage"]
    (e,) = kinds(evs)
    assert e.fields["status"] == "paired"


def test_bad_frames_are_weird() -> None:
    evs = feed(iec104, [(True, bytes([0x68, 4, 0x0F, 0, 0, 0])),           # undefined U function
                        (True, bytes([0x68, 5, 0x07, 0, 0, 0, 0])),        # U-frame with a body
                        (True, i_frame(0, 0, b"\x01\x01")),                 # ASDU shorter than its header
                        (True, bytes([0x68, 0x0C, 0, 0]))])                 # cut off at close
    assert weird_names(evs) == ["iec104_bad_u_frame", "iec104_bad_u_frame", "iec104_short_asdu",
                                "iec104_truncated_apdu"]


def test_probe() -> None:
    assert iec104.probe(u_frame(0x07), True)
    assert iec104.probe(i_frame(0, 0, asdu(100, ioa(0) + b"\x14", cot=6)), True)
    assert not iec104.probe(b"\x68\x04\x0f\x00\x00\x00", True)
    assert not iec104.probe(b"GET / HTTP/1.1\r\n", True)
    assert not iec104.probe(b"\x68\x02\x00\x00", True)


# ---------------------------------------------------------------------------------------------- fuzz
VALID = [
    u_frame(0x07), u_frame(0x0B), s_frame(5),
    i_frame(0, 0, asdu(13, ioa(1300) + struct.pack("<f", 1.5) + b"\x00" + ioa(1301) + b"\0\0\0\0\0", n=2)),
    i_frame(1, 0, asdu(30, ioa(2) + b"\x01" + CP56)),
    i_frame(2, 0, asdu(1, ioa(100) + b"\x01\x00\x91", n=3, cot=20, sq=True)),
    i_frame(3, 0, asdu(45, ioa(4500) + b"\x81", cot=6)),
    i_frame(4, 0, asdu(63, ioa(5021) + struct.pack("<f", 2.0) + b"\x80" + CP56, cot=7)),
    i_frame(5, 0, asdu(15, ioa(9) + struct.pack("<i", 7) + b"\x01")),
]


@st.composite
def mutated(draw) -> bytes:
    pdu = bytearray(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(0, 4))):
        op = draw(st.sampled_from(("flip", "trunc", "len", "byte")))
        if not pdu:
            break
        i = draw(st.integers(0, len(pdu) - 1))
        if op == "flip":
            pdu[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "trunc":
            del pdu[i:]
        elif op == "len" and len(pdu) > 1:
            pdu[1] = draw(st.integers(0, 255))
        else:
            pdu[i] = draw(st.integers(0, 255))
    return bytes(pdu)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.booleans(), st.one_of(mutated(), st.binary(max_size=80))),
                min_size=1, max_size=8))
def test_fuzz_never_raises(chunks: list[tuple[bool, bytes]]) -> None:
    evs = feed(iec104, chunks)
    for e in evs:
        assert e.kind in ("iec104", "weird")


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=1, max_size=60).filter(lambda b: b[0] != 0x68))
def test_fuzz_garbage_is_reported(junk: bytes) -> None:
    """Bytes that cannot start an APDU never pass silently."""
    evs = feed(iec104, [(True, junk)])
    assert "iec104_garbage" in weird_names(evs)
