"""Omron FINS analyzers (UDP and FINS/TCP): byte-literal cases and a hypothesis fuzz."""

from __future__ import annotations

import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sensors import omron_fins
from tests.fuzzing import feed


def cmd(code: int, data: bytes = b"", sid: int = 0x11, icf: int = 0x80) -> bytes:
    """A FINS command from node 0.2.0 to node 0.1.0 (W342 3-1)."""
    return bytes([icf, 0, 2, 0, 1, 0, 0, 2, 0, sid]) + struct.pack(">H", code) + data


def rsp(code: int, end: int = 0, data: bytes = b"", sid: int = 0x11) -> bytes:
    """The response: addresses swapped, ICF data-type bit set, end code first."""
    return bytes([0xC0, 0, 2, 0, 2, 0, 0, 1, 0, sid]) + struct.pack(">HH", code, end) + data


def tcp(command: int, body: bytes = b"", err: int = 0) -> bytes:
    return b"FINS" + struct.pack(">III", 8 + len(body), command, err) + body


def fins_events(evs):
    return [e for e in evs if e.kind == "omron_fins"]


def weird_names(evs) -> list[str]:
    return [e.fields["name"] for e in evs if e.kind == "weird"]


def test_memory_area_word_read_paired_with_values() -> None:
    evs = feed(omron_fins, [(True, cmd(0x0101, bytes([0x82, 0, 100, 0, 0, 3]))),
                            (False, rsp(0x0101, 0, struct.pack(">HHH", 1, 0xFFFF, 258)))], "udp")
    (e,) = fins_events(evs)
    f = e.fields
    assert (e.action, f["status"], f["latency"], list(e.origin.frames), e.src.port) == (
        "read", "paired", 1.0, [1, 2], 40000)
    assert (f["command"], f["area"], f["area_kind"], f["address"], f["bit"], f["count"]) == (
        "MEMORY_AREA_READ", "DM", "word", 100, 0, 3)
    assert (f["end_code"], f["end_code_name"], f["sid"], f["da1"], f["sa1"]) == (
        0, "NORMAL_COMPLETION", 0x11, 1, 2)
    assert f["points"] == [{"ref": "DM:100", "value": 1}, {"ref": "DM:101", "value": 65535},
                           {"ref": "DM:102", "value": 258}]


def test_bit_read_rolls_into_next_word() -> None:
    evs = feed(omron_fins, [(True, cmd(0x0101, bytes([0x30, 0, 10, 14, 0, 3]))),
                            (False, rsp(0x0101, 0, b"\x01\x00\x01"))], "udp")
    (e,) = fins_events(evs)
    assert e.fields["points"] == [{"ref": "CIO:10.14", "value": 1}, {"ref": "CIO:10.15", "value": 0},
                                  {"ref": "CIO:11.0", "value": 1}]


def test_write_fill_and_multiple_read() -> None:
    evs = feed(omron_fins, [
        (True, cmd(0x0102, bytes([0xB2, 0, 5, 0, 0, 2]) + b"\x00\x07\x12\x34", sid=1)),
        (False, rsp(0x0102, 0, sid=1)),
        (True, cmd(0x0103, bytes([0x82, 1, 0, 0, 0, 10]) + b"\xab\xcd", sid=2)),
        (True, cmd(0x0104, bytes([0x82, 0, 1, 0, 0x30, 0, 2, 3]), sid=3)),
        (False, rsp(0x0104, 0, b"\x82\x00\x2a\x30\x01", sid=3)),
    ], "udp")
    w, mr, fill = fins_events(evs)              # the unanswered fill is flagged at close
    assert w.action == "write"
    assert w.fields["points"] == [{"ref": "HR:5", "value": 7}, {"ref": "HR:6", "value": 0x1234}]
    assert mr.action == "read"
    assert mr.fields["points"] == [{"ref": "DM:1", "value": 42}, {"ref": "CIO:2.3", "value": 1}]
    assert (fill.action, fill.fields["fill_value"], fill.fields["count"], fill.fields["status"]) == (
        "write", 0xABCD, 10, "no_response")


def test_actions_of_run_stop_program_and_discover() -> None:
    model = b"CJ2M-CPU31".ljust(20, b" ") + b"02.01".ljust(20, b"\x00") + b"\x00" * 40
    evs = feed(omron_fins, [
        (True, cmd(0x0401, b"\xff\xff\x02", sid=1)), (False, rsp(0x0401, sid=1)),
        (True, cmd(0x0402, b"\xff\xff", sid=2)), (False, rsp(0x0402, sid=2)),
        (True, cmd(0x0306, b"\xff\xff\x00\x00\x00\x00\x01\x00", sid=3)),
        (True, cmd(0x0501, b"\x00", sid=4)), (False, rsp(0x0501, 0, model, sid=4)),
        (True, cmd(0x2301, b"\x00\x01\x00\x01\x30\x00\x0a\x03", sid=5)),
    ], "udp")
    run, stop, ident, prog, force = fins_events(evs)     # unanswered ones come at close
    assert (run.action, run.fields["command"], run.fields["mode"]) == ("control", "RUN", "MONITOR")
    assert (stop.action, stop.fields["command"]) == ("control", "STOP")
    assert (prog.action, prog.fields["command"], prog.fields["count"]) == (
        "program", "PROGRAM_AREA_READ", 256)
    assert ident.action == "discover"
    assert ident.fields["identity"] == {"vendor": "OMRON", "model": "CJ2M-CPU31", "firmware": "02.01"}
    assert ident.fields["identity_of"] == "dst"
    assert (force.action, force.fields["items"]) == ("control", [
        {"spec": 1, "area_code": 0x30, "area": "CIO", "address": 10, "bit": 3}])


def test_end_codes_with_error_bits() -> None:
    evs = feed(omron_fins, [(True, cmd(0x0101, bytes([0x82, 0, 0, 0, 0, 1]))),
                            (False, rsp(0x0101, 0x1101 | 0x0080 | 0x8000))], "udp")
    (e,) = fins_events(evs)
    f = e.fields
    assert (f["end_code"], f["end_code_name"], f["plc_error"], f["relay_error"]) == (
        0x9181, "AREA_CLASSIFICATION_MISSING", "fatal", True)
    assert "points" not in f


def test_unmatched_and_one_way() -> None:
    evs = feed(omron_fins, [(False, rsp(0x0701, 0, b"\x24\x05\x17\x10\x20\x30\x05", sid=9)),
                            (True, cmd(0x0101, bytes([0x82, 0, 0, 0, 0, 1]), sid=1, icf=0x81)),
                            (True, cmd(0x7F01, b"", sid=2))], "udp")
    clock, oneway, unknown = fins_events(evs)
    assert (clock.fields["status"], clock.src.port, clock.fields["clock"]) == (
        "no_request", 40000, "2024-05-17T10:20:30")
    assert (oneway.fields["status"], oneway.fields["response_required"]) == ("one_way", False)
    assert (unknown.fields["command"], unknown.action, unknown.fields["status"]) == (
        "unknown-0x7f01", "other", "no_response")


def test_malformed_frames_are_weird() -> None:
    evs = feed(omron_fins, [(True, b"\x80\x00\x02"), (True, cmd(0x0101, b"\x82\x00")),
                            (False, bytes([0xC0, 0, 2, 0, 2, 0, 0, 1, 0, 0x11, 1, 1])),
                            (True, bytes([0x9E, 5]) + cmd(0x0101, bytes([0x82, 0, 0, 0, 0, 1]))[2:])],
                      "udp")
    assert weird_names(evs) == ["omron_fins_short_frame", "omron_fins_truncated_command",
                                "omron_fins_missing_end_code", "omron_fins_reserved_bits"]


def test_fins_tcp_handshake_and_split_frames() -> None:
    c = tcp(2, cmd(0x0101, bytes([0x82, 0, 1, 0, 0, 1])))
    r = tcp(2, rsp(0x0101, 0, b"\x00\x05"))
    evs = feed(omron_fins, [
        (True, tcp(0, b"\x00\x00\x00\x00")),
        (False, tcp(1, b"\x00\x00\x00\x02\x00\x00\x00\x01")),
        (True, c[:10]), (True, c[10:]), (False, r),
    ])
    hs, rd = fins_events(evs)
    assert (hs.action, hs.fields["tcp_command"], hs.fields["status"], hs.fields["client_node"],
            hs.fields["server_node"]) == ("session", "NODE_ADDRESS_SEND", "paired", 2, 1)
    assert list(rd.origin.frames) == [3, 4, 5]
    assert rd.fields["points"] == [{"ref": "DM:1", "value": 5}]


def test_fins_tcp_errors() -> None:
    evs = feed(omron_fins, [(False, tcp(3, b"", err=0x21)), (True, b"XXXXgarbage!")])
    assert weird_names(evs) == ["omron_fins_tcp_error", "omron_fins_tcp_bad_header"]
    (e,) = fins_events(evs)
    assert (e.fields["tcp_command"], e.fields["tcp_error"]) == ("FRAME_SEND_ERROR", "NODE_ALREADY_CONNECTED")


def test_probe() -> None:
    assert omron_fins.probe(tcp(0, b"\0\0\0\0"), True)
    assert omron_fins.probe(cmd(0x0101, bytes([0x82, 0, 1, 0, 0, 1])), True)
    assert not omron_fins.probe(b"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03\x00", True)
    assert not omron_fins.probe(cmd(0x7F7F), True)


# ---------------------------------------------------------------------------------------------- fuzz
VALID = [
    cmd(0x0101, bytes([0x82, 0, 100, 0, 0, 3])), rsp(0x0101, 0, b"\x00\x01\x00\x02\x00\x03"),
    cmd(0x0104, bytes([0x82, 0, 1, 0, 0x30, 0, 2, 3])), rsp(0x0104, 0, b"\x82\x00\x2a\x30\x01"),
    cmd(0x0102, bytes([0xB2, 0, 5, 0, 0, 1, 0, 7])), cmd(0x2301, b"\x00\x01\x00\x01\x30\x00\x0a\x03"),
    rsp(0x0501, 0, b"A" * 40), cmd(0x0702, b"\x24\x05\x17\x10\x20\x30\x05"),
    rsp(0x0502, 0, b"\x01\x00" + b"B" * 20),
    cmd(0x220A, b"\x00\x02\x81\x00\x00\x01\x00\x01\x00\x00" + b"f.exe".ljust(12, b"\0")),
]


@st.composite
def mutated(draw) -> bytes:
    b = bytearray(draw(st.sampled_from(VALID)))
    for _ in range(draw(st.integers(0, 4))):
        if not b:
            break
        i = draw(st.integers(0, len(b) - 1))
        op = draw(st.sampled_from(("flip", "trunc", "byte")))
        if op == "flip":
            b[i] ^= 1 << draw(st.integers(0, 7))
        elif op == "trunc":
            del b[i:]
        else:
            b[i] = draw(st.integers(0, 255))
    return bytes(b)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.booleans(), st.one_of(mutated(), st.binary(max_size=60))),
                min_size=1, max_size=6))
def test_fuzz_udp_never_raises(chunks: list[tuple[bool, bytes]]) -> None:
    for e in feed(omron_fins, chunks, "udp"):
        assert e.kind in ("omron_fins", "weird")


@st.composite
def tcp_stream(draw) -> list[tuple[bool, bytes]]:
    out = []
    for _ in range(draw(st.integers(1, 5))):
        body = draw(mutated())
        msg = bytearray(tcp(draw(st.sampled_from((0, 1, 2, 2, 3, 7))), body))
        if draw(st.booleans()):                                 # corrupt the length field
            msg[4:8] = struct.pack(">I", draw(st.integers(0, 200)))
        cut = draw(st.integers(0, len(msg)))
        orig = draw(st.booleans())
        out += [(orig, bytes(msg[:cut])), (orig, bytes(msg[cut:]))]
    return [c for c in out if c[1]]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(tcp_stream())
def test_fuzz_tcp_never_raises(chunks: list[tuple[bool, bytes]]) -> None:
    for e in feed(omron_fins, chunks, "tcp"):
        assert e.kind in ("omron_fins", "weird")


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=0, max_size=11))
def test_fuzz_short_udp_is_reported(b: bytes) -> None:
    """A datagram too short for the FINS header and command code is never silent."""
    if b:
        assert weird_names(feed(omron_fins, [(True, b)], "udp")) == ["omron_fins_short_frame"]
