"""Byte-literal tests and fuzzing of the PROFINET DCP analyzer (sensors/profinet_dcp.py)."""

from __future__ import annotations

import struct
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from icsight.settings import Settings
from sensors import profinet_dcp
from sensors.pipeline import Sensor
from tests.fuzzing import feed_l2

CTRL, DEV1, DEV2 = "00:0c:29:ba:09:ea", "08:00:06:93:cf:32", "08:00:06:93:cf:33"
MCAST = "01:0e:cf:00:00:00"


def dcp(fid: int, sid: int, stype: int, xid: int, blocks: bytes, delay: int = 0) -> bytes:
    return struct.pack("!HBBIHH", fid, sid, stype, xid, delay, len(blocks)) + blocks


def blk(opt: int, sub: int, data: bytes) -> bytes:
    return struct.pack("!BBH", opt, sub, len(data)) + data + (b"\0" if len(data) % 2 else b"")


def ip4(s: str) -> bytes:
    return bytes(int(x) for x in s.split("."))


IDENT_RESP = (
    blk(2, 2, b"\0\0" + b"plc-1")
    + blk(2, 1, b"\0\0" + b"S7-1500")
    + blk(2, 3, b"\0\0\x00\x2a\x01\x0e")
    + blk(2, 4, b"\0\0\x02\0")
    + blk(1, 2, b"\0\1" + ip4("192.168.0.5") + ip4("255.255.255.0") + ip4("192.168.0.1"))
)


def run(frames: list[tuple[str, str, bytes]]):
    """Frames through a whole Sensor (real MACs), returning the DCP and weird events."""
    s = Sensor(Settings(data_dir=Path(".")), protocols={"profinet_dcp": profinet_dcp})
    s.begin("t")
    for i, (src, dst, payload) in enumerate(frames):
        eth = bytes.fromhex(dst.replace(":", "")) + bytes.fromhex(src.replace(":", "")) + b"\x88\x92"
        s.packet(i + 1, float(i), eth + payload)
    s.end()
    return [e for e in s.drain() if e.kind in ("profinet_dcp", "weird")], s


def test_identify_all_gets_one_event_per_responder_with_identity() -> None:
    evs, _ = run(
        [
            (CTRL, MCAST, dcp(0xFEFE, 5, 0, 7, blk(0xFF, 0xFF, b""), delay=1)),
            (DEV1, CTRL, dcp(0xFEFF, 5, 1, 7, IDENT_RESP)),
            (DEV2, CTRL, dcp(0xFEFF, 5, 1, 7, blk(2, 2, b"\0\0" + b"io-2"))),
        ]
    )
    a, b = evs
    assert a.action == b.action == "discover"
    assert (a.src.mac, a.dst.mac, list(a.origin.frames)) == (CTRL, DEV1, [1, 2])
    assert (b.src.mac, b.dst.mac, list(b.origin.frames)) == (CTRL, DEV2, [1, 3])
    assert a.fields["identity"] == {
        "name": "plc-1",
        "product": "S7-1500",
        "vendor_id": 0x2A,
        "device_id": 0x10E,
        "vendor": "Siemens",
        "role": ["io_controller"],
        "ip": "192.168.0.5",
        "netmask": "255.255.255.0",
        "gateway": "192.168.0.1",
    }
    assert a.fields["identity_of"] == "dst" and a.fields["xid"] == "0x00000007"
    assert a.fields["request_blocks"] == [{"block": "all_selector/all"}] and a.fields["response_delay"] == 1
    assert b.fields["identity"] == {"name": "io-2"} and b.fields["status"] == "paired"


def test_set_ip_changes_identity_and_pairs_block_error() -> None:
    evs, _ = run(
        [
            (
                CTRL,
                DEV1,
                dcp(
                    0xFEFD, 4, 0, 9, blk(1, 2, b"\0\1" + ip4("10.0.0.10") + ip4("255.0.0.0") + ip4("0.0.0.0"))
                ),
            ),
            (DEV1, CTRL, dcp(0xFEFD, 4, 1, 9, blk(5, 4, b"\x01\x02\x05"))),
        ]
    )
    (e,) = evs
    assert e.action == "write" and e.fields["changes_identity"] is True and e.fields["status"] == "paired"
    assert e.fields["request_blocks"][0]["ip"] == "10.0.0.10" and e.fields["request_blocks"][0]["permanent"]
    assert e.fields["blocks"] == [
        {"block": "control/response", "response_to": "ip/ip_parameter", "error": "set_not_possible"}
    ]
    assert e.fields["block_errors"] == ["set_not_possible"]


def test_set_name_of_station_and_factory_reset() -> None:
    evs, _ = run(
        [
            (CTRL, DEV1, dcp(0xFEFD, 4, 0, 1, blk(2, 2, b"\0\0" + b"evil"))),
            (CTRL, DEV1, dcp(0xFEFD, 4, 0, 2, blk(5, 6, b"\x00\x08"))),
        ]
    )
    name, reset = evs
    assert name.action == "write" and name.fields["changes_identity"] is True
    assert name.fields["blocks"][0]["value"] == "evil" and name.fields["status"] == "no_response"
    assert reset.action == "control" and "changes_identity" not in reset.fields
    assert reset.fields["blocks"][0] == {
        "block": "control/reset_to_factory",
        "qualifier": 8,
        "reset": "reset_all_data",
    }


def test_signal_is_diagnose() -> None:
    evs, _ = run([(CTRL, DEV1, dcp(0xFEFD, 4, 0, 3, blk(5, 3, b"\0\0\x01\x00")))])
    (e,) = evs
    assert e.action == "diagnose" and e.fields["blocks"][0]["signal"] == 0x100
    assert "changes_identity" not in e.fields


def test_get_is_read_and_hello_is_one_way() -> None:
    evs, _ = run(
        [
            (CTRL, DEV1, dcp(0xFEFD, 3, 0, 3, b"\x02\x02\x01\x02")),
            (DEV1, CTRL, dcp(0xFEFD, 3, 1, 3, blk(2, 2, b"\0\0" + b"plc-1"))),
            (DEV2, MCAST, dcp(0xFEFC, 6, 0, 4, blk(2, 2, b"\0\0" + b"io-2"))),
        ]
    )
    get, hello = evs
    assert get.action == "read" and get.fields["request_blocks"] == [
        {"block": "device_properties/name_of_station"},
        {"block": "ip/ip_parameter"},
    ]
    assert hello.action == "discover" and hello.fields["status"] == "one_way"
    assert hello.fields["identity"] == {"name": "io-2"} and hello.fields["identity_of"] == "src"


def test_repeated_request_is_one_event_and_unsolicited_response_is_no_request() -> None:
    req = dcp(0xFEFE, 5, 0, 5, blk(2, 2, b"plc-9"), delay=1)
    evs, _ = run([(CTRL, MCAST, req), (CTRL, MCAST, req), (DEV1, CTRL, dcp(0xFEFF, 5, 1, 99, IDENT_RESP))])
    resp, unanswered = evs
    assert resp.fields["status"] == "no_request" and resp.src.mac == CTRL and resp.dst.mac == DEV1
    assert unanswered.fields["status"] == "no_response" and list(unanswered.origin.frames) == [1, 2]
    assert unanswered.fields["blocks"] == [{"block": "device_properties/name_of_station", "value": "plc-9"}]


def test_other_profinet_frames_are_counted_not_parsed() -> None:
    evs, s = run(
        [
            (DEV1, CTRL, struct.pack("!H", 0xC000) + b"\0" * 40),
            (DEV1, CTRL, struct.pack("!H", 0xFE01) + b"\0" * 40),
        ]
    )
    assert evs == []
    assert s.stats["frames.pn_rt.rt_class_1"] == 1 and s.stats["frames.pn_rt.alarm"] == 1


def test_malformed_is_weird() -> None:
    evs = feed_l2(
        profinet_dcp,
        [b"\xfe", struct.pack("!HBB", 0xFEFE, 5, 0), dcp(0xFEFE, 5, 0, 1, b"\x02\x02\x00\x20abc")],
    )
    names = [e.fields["name"] for e in evs if e.kind == "weird"]
    assert names == ["truncated_frame_id", "truncated_dcp_header", "bad_dcp_block"]


VALID = [
    dcp(0xFEFF, 5, 1, 7, IDENT_RESP),
    dcp(0xFEFD, 4, 0, 9, blk(1, 2, b"\0\1" + b"\x0a" * 12)),
    dcp(0xFEFD, 3, 0, 3, b"\x02\x02\x01\x02"),
    dcp(0xFEFD, 4, 1, 9, blk(5, 4, b"\x01\x02\x05")),
]


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(VALID),
    st.lists(st.tuples(st.integers(0, 200), st.integers(0, 7)), max_size=4),
    st.integers(0, 80),
    st.one_of(st.none(), st.integers(0, 0xFFFF)),
)
def test_fuzz_mutated_never_raise(pdu, flips, cut, dlen) -> None:
    b = bytearray(pdu)
    for pos, bit in flips:
        b[pos % len(b)] ^= 1 << bit
    if dlen is not None:
        b[10:12] = struct.pack("!H", dlen)
    data = bytes(b[:cut]) if cut else bytes(b)
    evs = feed_l2(profinet_dcp, [data, pdu])
    if (
        dlen is not None
        and dlen > len(data) - 12
        and len(data) >= 12
        and data[0:2] in (b"\xfe\xfe", b"\xfe\xff", b"\xfe\xfd", b"\xfe\xfc")
    ):
        assert any(e.kind == "weird" for e in evs)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=200))
def test_fuzz_random_never_raise(data) -> None:
    feed_l2(profinet_dcp, [b"\xfe\xfe" + data, data])
