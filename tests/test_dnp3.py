"""DNP3 parser: byte-literal cases for each layer, pairing rules, fuzzing and a QUT dataset smoke run."""

from __future__ import annotations

import struct

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sensors import dnp3
from sensors.dnp3 import crc16, link_frame
from tests.conftest import DATASETS, need_shared
from tests.fuzzing import feed

MASTER, OUTSTATION = 3, 4
REQ_CTL, RESP_CTL = 0xC4, 0x44  # DIR+PRM+UNCONFIRMED_USER_DATA from master; PRM+UUD from outstation


def req(app: bytes, tseq: int = 0, src: int = MASTER, dst: int = OUTSTATION) -> bytes:
    """One link frame carrying a whole application fragment from the master (FIR+FIN)."""
    return link_frame(REQ_CTL, dst, src, bytes([0xC0 | tseq]) + app)


def resp(app: bytes, tseq: int = 0, src: int = OUTSTATION, dst: int = MASTER) -> bytes:
    return link_frame(RESP_CTL, dst, src, bytes([0xC0 | tseq]) + app)


def kinds(events, kind: str = "dnp3") -> list:
    return [e for e in events if e.kind == kind]


def weird_names(events) -> list[str]:
    return [e.fields["name"] for e in events if e.kind == "weird"]


# ------------------------------------------------------------------------------------------ link layer


def test_crc_known_vector() -> None:
    # The classic RESET_LINK_STATES header from master 1024 to outstation 1: 05 64 05 C0 01 00 00 04 E9 21
    assert crc16(bytes.fromhex("056405c001000004")) == 0x21E9
    assert link_frame(0xC0, 1, 1024) == bytes.fromhex("056405c001000004e921")


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=300))
def test_fast_crc_matches_reference(data: bytes) -> None:
    # The link layer checks CRCs with `_crc` (crcmod-plus's C CRC-16/DNP when installed): it must agree
    # with the reference `crc16` on any input, and both with the catalogue check value of CRC-16/DNP.
    assert dnp3._crc(data) == crc16(data)
    assert dnp3._crc(bytearray(data)) == crc16(data)
    assert dnp3._crc(b"123456789") == crc16(b"123456789") == 0xEA82


def test_fast_crc_is_used_when_installed() -> None:
    crcmod = pytest.importorskip("crcmod.crcmod")
    if getattr(crcmod, "_usingExtension", False):
        assert dnp3._crc is not crc16


def test_probe() -> None:
    good = req(b"\xc1\x01\x3c\x01\x06")
    assert dnp3.probe(good, True)
    assert not dnp3.probe(good[:9], True)
    bad = bytearray(good)
    bad[4] ^= 1  # destination changed, CRC no longer matches
    assert not dnp3.probe(bytes(bad), True)
    assert not dnp3.probe(b"GET / HTTP/1.1\r\n\r\n", True)


def test_link_status_frames_are_recorded() -> None:
    events = feed(
        dnp3, [(True, link_frame(0xC9, OUTSTATION, MASTER)), (False, link_frame(0x0B, MASTER, OUTSTATION))]
    )
    ev = kinds(events)
    assert [e.fields["link_function"] for e in ev] == ["REQUEST_LINK_STATUS", "LINK_STATUS"]
    assert ev[0].fields["link"] == {
        "ctl": 0xC9,
        "dir": True,
        "prm": True,
        "func": "REQUEST_LINK_STATUS",
        "fcb": False,
        "fcv": False,
    }
    assert ev[1].fields["link"]["dfc"] is False and ev[1].fields["master"] == MASTER
    assert {e.fields["status"] for e in ev} == {"one_way"} and ev[0].action == "session"


def test_bad_header_crc_drops_frame() -> None:
    f = bytearray(req(b"\xc1\x01\x3c\x01\x06"))
    f[8] ^= 0xFF
    events = feed(dnp3, [(True, bytes(f))])
    assert weird_names(events) == ["bad_header_crc"]
    assert not kinds(events)


def test_bad_data_crc_drops_frame() -> None:
    f = bytearray(req(b"\xc1\x01\x3c\x01\x06"))
    f[11] ^= 0x01  # user data changed under its block CRC
    events = feed(dnp3, [(True, bytes(f))])
    assert weird_names(events) == ["bad_data_crc"]
    assert not kinds(events)


def test_garbage_is_skipped_up_to_the_next_frame() -> None:
    events = feed(dnp3, [(True, b"\x00\x01\x02hello")])
    assert weird_names(events) == ["bad_link_start"]
    # junk (and a frame start with an impossible length) before a good frame in the same segment
    events = feed(dnp3, [(True, b"junk\x05\x64\x02" + req(b"\xc1\x01\x3c\x01\x06"))])
    assert weird_names(events) == ["bad_link_start", "bad_link_start"]
    (ev,) = kinds(events)
    assert ev.fields["function"] == "READ"


def test_frame_split_across_tcp_segments() -> None:
    f = req(b"\xc1\x01\x3c\x02\x06")
    r = resp(b"\xc1\x81\x00\x00")
    events = feed(dnp3, [(True, f[:4]), (True, f[4:13]), (True, f[13:]), (False, r)])
    (ev,) = kinds(events)
    assert ev.frames == (1, 2, 3, 4)
    assert ev.fields["function"] == "READ" and ev.fields["status"] == "paired"


# ------------------------------------------------------------------------------------------ transport


def _segments(app: bytes, size: int, first_seq: int = 10) -> list[bytes]:
    chunks = [app[i : i + size] for i in range(0, len(app), size)]
    out = []
    for i, c in enumerate(chunks):
        th = ((first_seq + i) & 0x3F) | (0x40 if i == 0 else 0) | (0x80 if i == len(chunks) - 1 else 0)
        out.append(link_frame(RESP_CTL, MASTER, OUTSTATION, bytes([th]) + c))
    return out


def test_transport_reassembly_over_link_frames() -> None:
    # READ class 0 -> response with 40 16-bit analog inputs (g30v2, 3 bytes each) in 3 link frames
    values = list(range(-20, 20))
    objs = b"\x1e\x02\x00\x00\x27" + b"".join(b"\x01" + struct.pack("<h", v) for v in values)
    app = b"\xc5\x81\x00\x00" + objs
    segs = _segments(app, 50)
    assert len(segs) == 3
    events = feed(dnp3, [(True, req(b"\xc5\x01\x3c\x01\x06"))] + [(False, s) for s in segs])
    (ev,) = kinds(events)
    assert ev.frames == (1, 2, 3, 4)
    pts = ev.fields["points"]
    assert [p["value"] for p in pts] == values
    assert pts[0] == {"ref": "4:ai:0", "value": -20, "quality": ["ONLINE"]}
    assert ev.fields["response_objects"][0]["count"] == 40


def test_transport_out_of_sequence_is_weird() -> None:
    app = b"\xc5\x81\x00\x00" + b"\x1e\x02\x00\x00\x27" + b"\x01\x00\x00" * 40
    segs = _segments(app, 50)
    events = feed(dnp3, [(False, segs[0]), (False, segs[2])])
    assert "transport_out_of_sequence" in weird_names(events)
    assert not kinds(events)
    events = feed(dnp3, [(False, segs[1])])  # no FIR
    assert weird_names(events) == ["transport_out_of_sequence"]


def test_transport_restart_discards_unfinished_fragment() -> None:
    app = b"\xc5\x81\x00\x00" + b"\x1e\x02\x00\x00\x27" + b"\x01\x00\x00" * 40
    segs = _segments(app, 50)
    events = feed(dnp3, [(False, segs[0]), (False, resp(b"\xc6\x81\x00\x00"))])
    assert weird_names(events) == ["transport_fragment_discarded"]
    assert kinds(events)[0].fields["status"] == "no_request"


# ------------------------------------------------------------------------------------------ application


def test_read_response_pairing_iin_and_points() -> None:
    read = b"\xc2\x01" + b"\x3c\x02\x06\x3c\x03\x06\x3c\x04\x06\x3c\x01\x06"
    # response: IIN1 = DEVICE_RESTART|CLASS_1_EVENTS, IIN2 = OBJECT_UNKNOWN; g1v2 idx 0..2; g20v1 idx 5
    body = (
        b"\x01\x02\x00\x00\x02"
        + bytes([0x81, 0x01, 0x85])
        + b"\x14\x01\x00\x05\x05"
        + b"\x41"
        + struct.pack("<I", 123456)
    )
    events = feed(dnp3, [(True, req(read)), (False, resp(b"\xc2\x81\x82\x02" + body))])
    (ev,) = kinds(events)
    f = ev.fields
    assert (f["function"], f["func_code"], f["seq"], f["status"]) == ("READ", 1, 2, "paired")
    assert ev.action == "read" and f["latency"] == 1.0
    assert f["iin"] == 0x8202 and f["iin_flags"] == ["CLASS_1_EVENTS", "DEVICE_RESTART", "OBJECT_UNKNOWN"]
    assert [o["name"] for o in f["objects"]] == [
        "Class 1 Data",
        "Class 2 Data",
        "Class 3 Data",
        "Class 0 Data",
    ]
    assert f["objects"][0] == {
        "group": 60,
        "variation": 2,
        "qualifier": 6,
        "prefix": 0,
        "range": 6,
        "name": "Class 1 Data",
    }
    assert f["points"] == [
        {"ref": "4:bi:0", "value": True, "quality": ["ONLINE"]},
        {"ref": "4:bi:1", "value": False, "quality": ["ONLINE"]},
        {"ref": "4:bi:2", "value": True, "quality": ["ONLINE", "COMM_LOST"]},
        {"ref": "4:ctr:5", "value": 123456, "quality": ["ONLINE", "DISCONTINUITY"]},
    ]
    assert f["request_ac"] == {"fir": 1, "fin": 1, "con": 0, "uns": 0, "seq": 2}
    assert ev.src.port == 40000 and ev.frames == (1, 2)


def test_no_response_and_no_request() -> None:
    events = feed(dnp3, [(True, req(b"\xc3\x01\x3c\x01\x06")), (False, resp(b"\xc9\x81\x00\x00"))])
    st = sorted(e.fields["status"] for e in kinds(events))
    assert st == ["no_request", "no_response"]


def test_pipelined_requests_with_reused_sequence_numbers() -> None:
    """Masters that send SELECT(seq 7), OPERATE(8), SELECT(7)... before answers (dnp3_example.pcap)."""

    def crob(idx: int) -> bytes:
        return b"\x0c\x01\x17\x01" + bytes([idx]) + b"\x41\x01" + struct.pack("<II", 500, 0) + b"\x00"

    chunks = [
        (True, req(b"\xc7\x03" + crob(8))),
        (True, req(b"\xc7\x03" + crob(10))),
        (False, resp(b"\xc7\x81\x00\x00" + crob(8))),
        (False, resp(b"\xc7\x81\x00\x00" + crob(10))),
    ]
    ev = kinds(feed(dnp3, chunks))
    assert [e.fields["status"] for e in ev] == ["paired", "paired"]
    assert [e.frames for e in ev] == [(1, 3), (2, 4)]
    # answered out of order: the echoed command picks the request
    ev = kinds(feed(dnp3, [chunks[0], chunks[1], chunks[3], chunks[2]]))
    assert sorted(e.frames for e in ev) == [(1, 4), (2, 3)]


def _crob(idx: int, code: int = 0x41, status: int = 0) -> bytes:
    return (
        b"\x0c\x01\x28\x01\x00"
        + struct.pack("<H", idx)
        + bytes([code, 1])
        + struct.pack("<II", 100, 200)
        + bytes([status])
    )


def test_select_then_operate() -> None:
    chunks = [
        (True, req(b"\xc1\x03" + _crob(5))),
        (False, resp(b"\xc1\x81\x00\x00" + _crob(5))),
        (True, req(b"\xc2\x04" + _crob(5))),
        (False, resp(b"\xc2\x81\x00\x00" + _crob(5, status=0))),
    ]
    events = feed(dnp3, chunks)
    sel, op = kinds(events)
    assert not weird_names(events)
    assert sel.fields["function"] == "SELECT" and sel.action == "control"
    assert op.fields["function"] == "OPERATE" and op.fields["selected"] is True
    assert op.fields["select_frames"] == [1, 2] and op.fields["select_seq_ok"] is True
    assert op.fields["points"] == [
        {
            "ref": "4:bo:5",
            "value": True,
            "command": True,
            "op": "PULSE_ON",
            "tcc": "CLOSE",
            "count": 1,
            "on_time": 100,
            "off_time": 200,
            "status": "SUCCESS",
        }
    ]
    ctl = op.fields["objects"][0]["controls"][0]
    assert (ctl["index"], ctl["op"], ctl["tcc"], ctl["clear"]) == (5, "PULSE_ON", "CLOSE", False)


def test_operate_without_select_or_with_other_objects() -> None:
    events = feed(dnp3, [(True, req(b"\xc2\x04" + _crob(5)))])
    assert weird_names(events) == ["operate_without_select"]
    assert kinds(events)[0].fields["selected"] is False
    events = feed(dnp3, [(True, req(b"\xc1\x03" + _crob(5))), (True, req(b"\xc2\x04" + _crob(6)))])
    (w,) = [e for e in events if e.kind == "weird"]
    assert w.fields["name"] == "operate_without_select" and "differ" in w.fields["reason"]


def test_command_status_from_echo() -> None:
    events = feed(
        dnp3,
        [
            (True, req(b"\xc1\x05" + _crob(2, code=0x81))),
            (False, resp(b"\xc1\x81\x00\x00" + _crob(2, code=0x81, status=4))),
        ],
    )
    (ev,) = kinds(events)
    assert ev.fields["points"][0]["value"] is False  # TRIP
    assert ev.fields["points"][0]["status"] == "NOT_SUPPORTED"
    assert ev.fields["function"] == "DIRECT_OPERATE"


def test_analog_output_command() -> None:
    g41 = b"\x29\x03\x28\x01\x00\x07\x00" + struct.pack("<f", 12.5) + b"\x00"
    events = feed(dnp3, [(True, req(b"\xc1\x06" + g41))])
    (ev,) = kinds(events)
    assert ev.fields["status"] == "one_way"  # DIRECT_OPERATE_NR
    assert ev.fields["points"] == [{"ref": "4:ao:7", "value": 12.5, "command": True}]


def test_unsolicited_response_is_one_way_read() -> None:
    # g2v2 binary input event with absolute time, g22v1 counter event
    t = 1_400_000_000_123
    body = b"\x02\x02\x17\x01\x03\x81" + struct.pack("<IH", t & 0xFFFFFFFF, t >> 32)
    events = feed(dnp3, [(False, resp(b"\xf3\x82\x00\x00" + body)), (True, req(b"\xd3\x00"))])
    uns, conf = kinds(events)
    assert uns.fields["status"] == "one_way" and uns.action == "read"
    assert uns.fields["response_ac"]["uns"] == 1 and uns.src.port == 20000
    assert uns.fields["points"] == [
        {
            "ref": "4:bi:3",
            "value": True,
            "quality": ["ONLINE"],
            "time": "2014-05-13T16:53:20.123000Z",
            "event": True,
        }
    ]
    assert conf.fields["function"] == "CONFIRM" and conf.fields["status"] == "one_way"


def test_cto_and_relative_time() -> None:
    t = 1_000_000_000_000
    body = (
        b"\x33\x01\x07\x01"
        + struct.pack("<IH", t & 0xFFFFFFFF, t >> 32)
        + b"\x02\x03\x17\x01\x09\x01"
        + struct.pack("<H", 250)
    )
    (ev,) = kinds(feed(dnp3, [(False, resp(b"\xf0\x82\x00\x00" + body))]))
    assert ev.fields["points"][0]["time"] == "2001-09-09T01:46:40.250000Z"


def test_multi_fragment_response_is_one_event() -> None:
    first = resp(b"\x81\x81\x00\x00" + b"\x01\x01\x00\x00\x07\xa5")  # FIR, seq 1: bits 0..7
    second = resp(b"\x42\x81\x00\x00" + b"\x0a\x02\x00\x00\x00\x81", tseq=1)  # FIN, seq 2
    (ev,) = kinds(feed(dnp3, [(True, req(b"\xc1\x01\x3c\x01\x06")), (False, first), (False, second)]))
    assert ev.frames == (1, 2, 3)
    assert [f["ac"]["seq"] for f in ev.fields["fragments"]] == [1, 2]
    assert [p["value"] for p in ev.fields["points"]] == [
        True,
        False,
        True,
        False,
        False,
        True,
        False,
        True,
        True,
    ]
    assert ev.fields["points"][-1]["ref"] == "4:bo:0"


def test_write_time_and_iin_clear() -> None:
    t = 1_500_000_000_000
    body = b"\x32\x01\x07\x01" + struct.pack("<IH", t & 0xFFFFFFFF, t >> 32) + b"\x50\x01\x00\x07\x07\x00"
    (ev,) = kinds(feed(dnp3, [(True, req(b"\xc4\x02" + body)), (False, resp(b"\xc4\x81\x00\x00"))]))
    assert ev.action == "write"
    o1, o2 = ev.fields["objects"]
    assert o1["values"] == ["2017-07-14T02:40:00.000000Z"]
    assert o2["values"] == [{"index": 7, "name": "DEVICE_RESTART", "value": False}]


def test_device_attributes_become_identity() -> None:
    def attr(var: int, text: bytes) -> bytes:
        return b"\x00" + bytes([var]) + b"\x00\x00\x00" + b"\x01" + bytes([len(text)]) + text

    body = attr(252, b"ACME Corp") + attr(250, b"RTU-5000") + attr(242, b"v2.1.7")
    events = feed(dnp3, [(True, req(b"\xc1\x01\x00\xfe\x06")), (False, resp(b"\xc1\x81\x00\x00" + body))])
    (ev,) = kinds(events)
    assert ev.fields["identity"] == {"vendor": "ACME Corp", "product": "RTU-5000", "firmware": "v2.1.7"}
    assert ev.fields["identity_of"] == "dst"
    assert ev.fields["response_objects"][0]["attributes"] == [
        {"variation": 252, "type": "VSTR", "value": "ACME Corp"}
    ]


def test_file_open_for_write_is_program() -> None:
    name = b"/cfg/new.bin"
    cmd = (
        struct.pack("<HH", 26, len(name))
        + b"\x00" * 6
        + struct.pack("<HIIHHH", 0o644, 0, 10, 2, 1024, 7)
        + name
    )
    obj = b"\x46\x03\x5b\x01" + struct.pack("<H", len(cmd)) + cmd
    (ev,) = kinds(feed(dnp3, [(True, req(b"\xc1\x19" + obj))]))
    assert ev.action == "program"
    assert ev.fields["objects"][0]["files"] == [
        {
            "name": "/cfg/new.bin",
            "mode": "WRITE",
            "size": 10,
            "permissions": 0o644,
            "max_block": 1024,
            "request_id": 7,
        }
    ]


def test_unknown_object_stops_parsing_with_weird() -> None:
    events = feed(
        dnp3, [(False, resp(b"\xf0\x82\x00\x00" + b"\x63\x05\x00\x00\x01\xaa\xbb\x01\x02\x00\x00\x00"))]
    )
    (ev,) = kinds(events)
    assert weird_names(events) == ["unknown_object"]
    assert ev.fields["response_objects"] == [
        {
            "group": 99,
            "variation": 5,
            "qualifier": 0,
            "prefix": 0,
            "range": 0,
            "name": "unknown-g99v5",
            "start": 0,
            "stop": 1,
            "count": 2,
            "unknown": True,
        }
    ]


def test_unknown_object_with_size_prefix_is_skipped() -> None:
    body = b"\x63\x05\x5b\x01\x02\x00\xaa\xbb" + b"\x3c\x01\x06"
    events = feed(dnp3, [(True, req(b"\xc1\x02" + body))])
    assert not weird_names(events)
    assert [o["group"] for o in kinds(events)[0].fields["objects"]] == [99, 60]


def test_truncated_object_is_weird() -> None:
    events = feed(
        dnp3, [(True, req(b"\xca\x05" + b"\x0c\x01\x28\x02\x00\x01\x00" + b"\x41\x01" + b"\x00" * 9))]
    )
    assert "truncated_object" in weird_names(events)


def test_unanswered_request_expires_while_traffic_goes_on() -> None:
    chunks = [(True, req(b"\xc1\x01\x3c\x01\x06"))] + [(True, b"")] * 65 + [(True, req(b"\xd2\x00"))]
    first, second = kinds(feed(dnp3, chunks))
    assert (first.fields["function"], first.fields["status"]) == ("READ", "no_response")
    assert second.fields["function"] == "CONFIRM"


def test_unknown_function_code_kept() -> None:
    (ev,) = kinds(feed(dnp3, [(True, req(b"\xc1\x46"))]))
    assert ev.fields["function"] == "unknown-0x46" and ev.action == "other"


def test_udp_datagram_with_two_frames() -> None:
    dg = req(b"\xc1\x01\x3c\x01\x06") + req(b"\xc2\x01\x3c\x02\x06")
    events = feed(dnp3, [(True, dg), (False, resp(b"\xc1\x81\x00\x00") + resp(b"\xc2\x81\x00\x00"))], "udp")
    assert [e.fields["status"] for e in kinds(events)] == ["paired", "paired"]
    events = feed(dnp3, [(True, dg[:-3])], "udp")
    assert "truncated_link_frame" in weird_names(events)


def test_authentication_challenge_is_part_of_the_transaction() -> None:
    """DIRECT_OPERATE -> AUTHENTICATE_RESP (challenge) -> AUTHENTICATE_REQ (reply) -> RESPONSE, one seq."""
    challenge = b"\x78\x01\x5b\x01\x0c\x00" + struct.pack("<IHBB", 3, 1, 4, 1) + b"\x00" * 4
    reply = b"\x78\x02\x5b\x01\x16\x00" + struct.pack("<IH", 3, 1) + b"\xaa" * 16
    chunks = [
        (True, req(b"\xc6\x05" + _crob(1))),
        (False, resp(b"\xc6\x83\x00\x00" + challenge)),
        (True, req(b"\xc6\x20" + reply)),
        (False, resp(b"\xc6\x81\x00\x00" + _crob(1))),
    ]
    (ev,) = kinds(feed(dnp3, chunks))
    assert ev.frames == (1, 2, 3, 4) and ev.fields["status"] == "paired"
    ch = ev.fields["auth_challenge"]
    assert ch["objects"][0]["auth"] == [{"size": 12, "csq": 3, "user": 1, "reason": 1}]
    assert len(ch["replies"]) == 1


# ------------------------------------------------------------------------------------------ fuzzing

FUZZ = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
SAMPLES = [
    b"\xc2\x01\x3c\x02\x06\x3c\x03\x06\x3c\x04\x06\x3c\x01\x06",
    b"\xc2\x81\x82\x02\x01\x02\x00\x00\x02\x81\x01\x85\x14\x01\x00\x05\x05\x41\x40\xe2\x01\x00",
    b"\xc1\x03" + _crob(5),
    b"\xf3\x82\x00\x00\x02\x02\x17\x01\x03\x81\x7b\xa0\xf1\x5d\x46\x01",
    b"\xc1\x19\x46\x03\x5b\x01\x26\x00\x1a\x00\x0c\x00" + b"\x00" * 22 + b"/cfg/new.bin",
    b"\xc1\x81\x00\x00\x00\xfc\x00\x00\x00\x01\x04ACME",
]


@FUZZ
@given(st.lists(st.tuples(st.booleans(), st.binary(max_size=300)), max_size=6))
def test_fuzz_random_bytes(chunks: list[tuple[bool, bytes]]) -> None:
    feed(dnp3, chunks)
    feed(dnp3, chunks, "udp")


@FUZZ
@given(
    st.lists(st.tuples(st.booleans(), st.integers(0, 255), st.binary(min_size=1, max_size=300)), max_size=5)
)
def test_fuzz_valid_link_frames(frames: list[tuple[bool, int, bytes]]) -> None:
    """Random user data under valid CRCs: the transport and application layers see it all.

    Half of the frames are single-segment fragments (FIR+FIN), the rest carry a random transport
    header so that reassembly, sequence checks and restarts are exercised too.
    """
    chunks = [
        (
            o,
            link_frame(
                0xC4 if o else 0x44,
                4 if o else 3,
                3 if o else 4,
                bytes([0xC0 if th & 1 else th]) + data[:249],
            ),
        )
        for o, th, data in frames
    ]
    feed(dnp3, chunks)
    feed(dnp3, chunks, "udp")


@FUZZ
@given(
    st.sampled_from(SAMPLES),
    st.integers(0, 400),
    st.integers(0, 7),
    st.integers(0, 300),
    st.sampled_from(["flip", "truncate", "extend", "count"]),
)
def test_fuzz_mutated_pdus(app: bytes, pos: int, bit: int, cut: int, how: str) -> None:
    """Bit flips, truncations and length changes of valid fragments, re-framed with valid CRCs."""
    b = bytearray(app)
    if how == "flip":
        b[pos % len(b)] ^= 1 << bit
    elif how == "truncate":
        b = b[: max(2, cut % len(b))]
    elif how == "extend":
        b += bytes(range(cut % 40))
    else:  # the byte after a qualifier: a range/count field
        i = next((i for i in range(2, len(b) - 1) if b[i] in (0x00, 0x01, 0x06, 0x07, 0x17, 0x28, 0x5B)), 2)
        b[min(i + 1, len(b) - 1)] = cut & 0xFF
    is_orig = b[1] not in dnp3.RESPONSE_CODES if len(b) > 1 else True
    events = feed(dnp3, [(is_orig, link_frame(0xC4 if is_orig else 0x44, 4, 3, b"\xc0" + bytes(b[:249])))])
    assert kinds(events) or weird_names(events)


@FUZZ
@given(st.sampled_from(SAMPLES), st.integers(0, 400), st.integers(0, 7))
def test_fuzz_bit_flip_under_crc_is_weird(app: bytes, pos: int, bit: int) -> None:
    """A flipped bit anywhere in a frame (CRC not fixed) is never silently accepted."""
    f = bytearray(link_frame(0xC4, 4, 3, b"\xc0" + app))
    i = pos % len(f)
    f[i] ^= 1 << bit
    events = feed(dnp3, [(True, bytes(f))])
    assert weird_names(events), f"flip at {i} accepted"


# ------------------------------------------------------------------------------------------ dataset


@pytest.mark.slow
def test_qut_dnp3_capture_parses() -> None:
    """QUT 2017 MITM day (attacker port): modified duplicates of master/outstation traffic."""
    from sensors.run import events_from_capture

    path = need_shared(DATASETS / "qut-dnp3-2017-training" / "mitm_frequent.attacker_nogoose.pcap.gz")
    events = events_from_capture(path)
    ev = kinds(events)
    assert len(ev) > 1000
    assert sum(e.fields.get("status") == "paired" for e in ev) > 500
    # the attacker rewrites responses in flight: its forwarded copies overlap the originals
    assert "bad_link_start" in weird_names(events)
