"""Byte-literal tests and fuzzing of the EtherNet/IP + CIP analyzer (sensors/enip.py)."""

from __future__ import annotations

import struct
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from icsight.settings import Settings
from sensors import enip
from sensors.pipeline import Sensor
from tests.fuzzing import feed

SESSION = 0x11020100
CTX = b"ctx00001"


def encap(cmd: int, body: bytes = b"", session: int = SESSION, status: int = 0, ctx: bytes = CTX) -> bytes:
    return struct.pack("<HHII8sI", cmd, len(body), session, status, ctx, 0) + body


def cpf(*items: tuple[int, bytes]) -> bytes:
    return struct.pack("<H", len(items)) + b"".join(struct.pack("<HH", t, len(d)) + d for t, d in items)


def rr(cip: bytes, **kw) -> bytes:
    """SendRRData: interface handle, timeout, null address + unconnected data item."""
    return encap(0x6F, struct.pack("<IH", 0, 10) + cpf((0, b""), (0xB2, cip)), **kw)


def unit(conn_id: int, seq: int, cip: bytes) -> bytes:
    return encap(
        0x70,
        struct.pack("<IH", 0, 0)
        + cpf((0xA1, struct.pack("<I", conn_id)), (0xB1, struct.pack("<H", seq) + cip)),
    )


def req(service: int, path: bytes, data: bytes = b"") -> bytes:
    assert len(path) % 2 == 0
    return bytes([service, len(path) // 2]) + path + data


def resp(service: int, status: int = 0, data: bytes = b"", ext: tuple[int, ...] = ()) -> bytes:
    return bytes([service | 0x80, 0, status, len(ext)]) + b"".join(struct.pack("<H", x) for x in ext) + data


def sym(name: str) -> bytes:
    b = name.encode()
    return bytes([0x91, len(b)]) + b + (b"\0" if len(b) % 2 else b"")


IDENTITY = (
    struct.pack("<HHHBBHI", 1, 0x0C, 58, 4, 3, 0x0030, 0x00524D8E) + bytes([11]) + b"1756-ENBT/A" + bytes([3])
)
LIST_IDENTITY_ITEM = (
    struct.pack("<H", 1) + struct.pack(">HH4s8x", 2, 44818, bytes([10, 1, 1, 164])) + IDENTITY
)


def cip_events(evs):
    return [e for e in evs if e.kind == "cip"]


def test_list_identity_pairs_and_reveals_identity() -> None:
    evs = feed(
        enip,
        [(True, encap(0x63, session=0)), (False, encap(0x63, cpf((0x0C, LIST_IDENTITY_ITEM)), session=0))],
    )
    (e,) = [e for e in evs if e.kind == "enip"]
    assert e.action == "discover" and e.fields["status"] == "paired" and list(e.origin.frames) == [1, 2]
    ident = e.fields["identity"]
    assert ident["vendor"] == "Rockwell Automation/Allen-Bradley" and ident["vendor_id"] == 1
    assert ident["device_type"] == "Communications Adapter" and ident["product_code"] == 58
    assert (
        ident["revision"] == "4.3" and ident["serial"] == "0x00524d8e" and ident["product"] == "1756-ENBT/A"
    )
    assert ident["state"] == 3 and ident["socket_address"] == "10.1.1.164" and ident["socket_port"] == 44818
    assert e.fields["identity_of"] == "dst" and str(e.src.ip) == "10.0.0.1"


def test_register_session_takes_handle_from_reply() -> None:
    evs = feed(
        enip,
        [
            (True, encap(0x65, struct.pack("<HH", 1, 0), session=0)),
            (False, encap(0x65, struct.pack("<HH", 1, 0), session=0x1234)),
        ],
    )
    (e,) = evs
    assert e.action == "session" and e.fields["session"] == "0x00001234" and e.fields["protocol_version"] == 1


def test_one_way_commands_from_either_side() -> None:
    evs = feed(enip, [(True, encap(0x66)), (False, encap(0x00, b"\0\0")), (False, encap(0x72, b"abcd"))])
    assert [(e.fields["command"], e.fields["status"], e.src.ip) for e in evs] == [
        ("UnRegisterSession", "one_way", "10.0.0.1"),
        ("NOP", "one_way", "10.0.0.2"),
        ("IndicateStatus", "one_way", "10.0.0.2"),
    ]
    assert evs[0].action == "session" and evs[2].fields["data_length"] == 4


def test_unconnected_send_read_tag_is_unwrapped_with_route_and_value() -> None:
    inner = req(0x4C, sym("Motor_Speed"), struct.pack("<H", 1))
    us = req(
        0x52,
        bytes([0x20, 0x06, 0x24, 0x01]),
        bytes([0x0A, 0xF0])
        + struct.pack("<H", len(inner))
        + inner
        + (b"\0" if len(inner) % 2 else b"")
        + bytes([1, 0, 0x01, 0x00]),
    )
    evs = feed(enip, [(True, rr(us)), (False, rr(resp(0x4C, data=struct.pack("<Hi", 0xC4, -17))))])
    (e,) = cip_events(evs)
    f = e.fields
    assert f["service"] == "Read_Tag" and f["tag"] == "Motor_Speed" and e.action == "read"
    assert f["unconnected_send"]["route_path"] == ["1/0"] and f["unconnected_send"]["class"] == 0x06
    assert f["points"] == [{"ref": "tag:Motor_Speed", "value": -17, "type": "DINT"}]
    assert f["status"] == "paired" and f["general_status"] == "Success" and f["latency"] == 1.0


def test_write_tag_with_array_element_is_a_write_with_points() -> None:
    path = sym("Setpoints") + bytes([0x28, 0x02])
    evs = feed(
        enip, [(True, rr(req(0x4D, path, struct.pack("<HHf", 0xCA, 1, 2.5)))), (False, rr(resp(0x4D)))]
    )
    (e,) = cip_events(evs)
    assert e.action == "write" and e.fields["tag"] == "Setpoints[2]"
    assert e.fields["points"] == [{"ref": "tag:Setpoints[2]", "value": 2.5, "type": "REAL"}]


def test_identity_reset_is_a_reboot_and_stop_is_control() -> None:
    evs = feed(
        enip,
        [
            (True, rr(req(0x05, bytes([0x20, 0x01, 0x24, 0x01]), b"\x00"))),
            (False, rr(resp(0x05))),
            (True, rr(req(0x07, bytes([0x20, 0x8E, 0x24, 0x01])), ctx=b"ctx00002")),
            (False, rr(resp(0x07, status=0x10), ctx=b"ctx00002")),
        ],
    )
    reset, stop = cip_events(evs)
    assert (
        reset.action == "control" and reset.fields["reboot"] is True and reset.fields["class"] == "Identity"
    )
    assert stop.action == "control" and stop.fields["general_status"] == "Device state conflict"
    assert stop.fields["class"] == "unknown-0x8e"


def test_logical_16_and_32_bit_segments_and_extended_status() -> None:
    path = (
        bytes([0x21, 0x00])
        + struct.pack("<H", 0x0300)
        + bytes([0x26, 0x00])
        + struct.pack("<I", 70000)
        + bytes([0x30, 0x07])
    )
    evs = feed(enip, [(True, rr(req(0x0E, path))), (False, rr(resp(0x0E, status=0x1F, ext=(0x2105,))))])
    (e,) = cip_events(evs)
    assert e.fields["class_id"] == 0x300 and e.fields["class"] == "unknown-0x300"
    assert e.fields["instance"] == 70000 and e.fields["attribute"] == 7
    assert e.fields["extended_status"] == [0x2105] and e.fields["general_status"] == "Vendor specific error"


def test_forward_open_and_connected_messaging_pair_by_sequence() -> None:
    fo = req(
        0x54,
        bytes([0x20, 0x06, 0x24, 0x01]),
        bytes([0x0A, 0x0E])
        + struct.pack("<IIHHI", 0, 0x12345678, 7, 1, 0xCAFEBABE)
        + bytes([1, 0, 0, 0])
        + struct.pack("<IHIH", 500000, 0x43F4, 500000, 0x43F4)
        + bytes([0xA3, 3])
        + bytes([0x01, 0x00, 0x20, 0x02, 0x24, 0x01]),
    )
    fo_r = resp(
        0x54, data=struct.pack("<IIHHIII", 0x80FE0013, 0x12345678, 7, 1, 0xCAFEBABE, 500000, 500000) + b"\0\0"
    )
    get = req(0x0E, bytes([0x20, 0x01, 0x24, 0x01, 0x30, 0x01]))
    evs = feed(
        enip,
        [
            (True, rr(fo)),
            (False, rr(fo_r)),
            (True, unit(0x80FE0013, 5, get)),
            (False, unit(0x12345678, 5, resp(0x0E, data=b"\x01\x00"))),
        ],
    )
    fwd, g = cip_events(evs)
    assert fwd.action == "session" and fwd.fields["service"] == "Forward_Open"
    assert fwd.fields["o2t_connection_id"] == "0x80fe0013" and fwd.fields["t2o_connection_id"] == "0x12345678"
    assert fwd.fields["originator_serial"] == "0xcafebabe" and fwd.fields["o2t_rpi_us"] == 500000
    assert fwd.fields["o2t_api_us"] == 500000 and fwd.fields["t2o_api_us"] == 500000
    assert fwd.fields["connection_path"] == "1/0 class 0x02 instance 1"
    assert (
        g.fields["status"] == "paired" and g.fields["sequence_count"] == 5 and list(g.origin.frames) == [3, 4]
    )
    assert g.fields["value"] == "0100"


def test_two_connections_with_the_same_sequence_count_do_not_mix() -> None:
    def fo(ot: int, to: int, serial: int) -> tuple[bytes, bytes]:
        rq = req(
            0x54,
            bytes([0x20, 0x06, 0x24, 0x01]),
            bytes([0x0A, 0x0E])
            + struct.pack("<IIHHI", 0, to, serial, 1, 2)
            + bytes(4)
            + struct.pack("<IHIH", 1000, 0, 1000, 0)
            + bytes([0xA3, 2, 0x20, 0x02, 0x24, 0x01]),
        )
        rs = resp(0x54, data=struct.pack("<IIHHIII", ot, to, serial, 1, 2, 1000, 1000) + b"\0\0")
        return rq, rs

    a_rq, a_rs = fo(0xA0, 0xA1, 1)
    b_rq, b_rs = fo(0xB0, 0xB1, 2)
    get = req(0x0E, bytes([0x20, 0x01, 0x24, 0x01, 0x30, 0x01]))
    put = req(0x10, bytes([0x20, 0x01, 0x24, 0x01, 0x30, 0x01]), b"\x01")
    evs = feed(
        enip,
        [
            (True, rr(a_rq)),
            (False, rr(a_rs)),
            (True, rr(b_rq, ctx=b"ctx00002")),
            (False, rr(b_rs, ctx=b"ctx00002")),
            (True, unit(0xA0, 9, get)),
            (True, unit(0xB0, 9, put)),
            (False, unit(0xB1, 9, resp(0x10))),
            (False, unit(0xA1, 9, resp(0x0E, data=b"\x07\x00"))),
        ],
    )
    _, _, p, g = cip_events(evs)
    assert (p.fields["service"], list(p.origin.frames), p.fields["status"]) == (
        "Set_Attribute_Single",
        [6, 7],
        "paired",
    )
    assert (g.fields["service"], list(g.origin.frames), g.fields["value"]) == (
        "Get_Attribute_Single",
        [5, 8],
        "0700",
    )


def test_list_services_reply() -> None:
    item = struct.pack("<HH", 1, 0x120) + b"Communications\0\0"
    evs = feed(enip, [(True, encap(0x04, session=0)), (False, encap(0x04, cpf((0x100, item)), session=0))])
    (e,) = evs
    assert e.action == "discover" and e.fields["services"] == [
        {"version": 1, "capability_flags": 0x120, "name": "Communications"}
    ]


def test_multiple_service_packet_gives_one_event_per_embedded_service() -> None:
    a = req(0x0E, bytes([0x20, 0x01, 0x24, 0x01, 0x30, 0x07]))
    b = req(0x10, bytes([0x20, 0xF5, 0x24, 0x01, 0x30, 0x05]), b"\x0a\x00\x00\x01")
    body = struct.pack("<HHH", 2, 6, 6 + len(a)) + a + b
    ra, rb = resp(0x0E, data=b"\x05abcde"), resp(0x10, status=0x0E)
    rbody = struct.pack("<HHH", 2, 6, 6 + len(ra)) + ra + rb
    evs = feed(
        enip,
        [
            (True, rr(req(0x0A, bytes([0x20, 0x02, 0x24, 0x01]), body))),
            (False, rr(resp(0x0A, status=0x1E, data=rbody))),
        ],
    )
    w, s1, s2 = cip_events(evs)
    assert w.fields["services"] == ["Get_Attribute_Single", "Set_Attribute_Single"] and w.action == "other"
    assert s1.action == "read" and s1.fields["general_status_code"] == 0
    assert s2.action == "write" and s2.fields["class"] == "TCP/IP Interface"
    assert s2.fields["general_status"] == "Attribute not settable"
    assert s2.fields["multiple_service"] == {"index": 1, "count": 2}


def test_program_object_and_file_object_are_program() -> None:
    evs = feed(
        enip,
        [
            (True, rr(req(0x08, bytes([0x20, 0x68, 0x24, 0x01, 0x20, 0x6A, 0x24, 0x00])))),
            (False, rr(resp(0x08))),
        ],
    )
    (e,) = cip_events(evs)
    assert (
        e.action == "program"
        and e.fields["class_id"] == 0x6A
        and e.fields["parents"] == [{"class": 0x68, "instance": 1}]
    )
    evs = feed(enip, [(True, rr(req(0x4C, bytes([0x20, 0x37, 0x24, 0xC8]), b"\x00\x00\x00\x00")))])
    (e,) = cip_events(evs)
    assert (
        e.fields["service"] == "Initiate_Download"
        and e.action == "program"
        and e.fields["status"] == "no_response"
    )


def test_execute_pccc_action_from_function_code() -> None:
    reqid = bytes([7]) + struct.pack("<HI", 1, 0x1234)
    write = req(
        0x4B, bytes([0x20, 0x67, 0x24, 0x01]), reqid + bytes([0x0F, 0]) + struct.pack("<H", 9) + b"\xaa"
    )
    diag = req(
        0x4B, bytes([0x20, 0x67, 0x24, 0x01]), reqid + bytes([0x06, 0]) + struct.pack("<H", 10) + b"\x03"
    )
    evs = feed(enip, [(True, rr(write)), (True, rr(diag, ctx=b"ctx00002"))])
    w, d = cip_events(evs)
    assert w.fields["service"] == "Execute_PCCC" and w.action == "write"
    assert w.fields["pccc"] == {"cmd": 0x0F, "sts": 0, "tns": 9, "fnc": 0xAA}
    assert d.action == "diagnose" and d.fields["pccc"]["fnc"] == 3


def test_unmatched_response_and_segmented_request() -> None:
    pdu = rr(req(0x01, bytes([0x20, 0x01, 0x24, 0x01])))
    evs = feed(enip, [(True, pdu[:10]), (True, pdu[10:]), (False, rr(resp(0x01), ctx=b"other..."))])
    a, b = cip_events(evs)
    assert a.fields["status"] == "no_request" and list(a.origin.frames) == [3]
    assert b.fields["status"] == "no_response" and list(b.origin.frames) == [1, 2]


def test_malformed_input_is_weird() -> None:
    evs = feed(enip, [(True, rr(bytes([0x0E, 9, 0x20, 0x01])))])  # path longer than the message
    assert [e.fields["name"] for e in evs if e.kind == "weird"] == ["bad_cip_path_size"]
    evs = feed(enip, [(True, rr(bytes([0x0E, 1, 0x21, 0x00])))])  # 16-bit class cut by the path size
    assert "bad_cip_path" in [e.fields["name"] for e in evs if e.kind == "weird"]
    evs = feed(enip, [(True, encap(0x6F, b"\0\0\0\0\0\0\x05\x00"))])  # CPF count with no items
    assert [e.fields["name"] for e in evs if e.kind == "weird"] == ["bad_cpf"]
    evs = feed(enip, [(True, encap(0x1234, b"abcd"))])  # not a command of Vol. 2 table 2-3.2
    assert [e.fields["name"] for e in evs] == ["unknown_command"]
    evs = feed(enip, [(True, b"\x63\x00\xff\xff")], transport="udp")
    assert [e.fields["name"] for e in evs if e.kind == "weird"] == ["truncated_encapsulation_header"]


def test_implicit_io_uses_forward_open_direction() -> None:
    io = cpf((0x8002, struct.pack("<II", 0x004B0603, 4166875)), (0xB1, bytes.fromhex("a587e80f0300")))
    (e,) = [e for e in feed(enip, [(True, io)], transport="udp", port=2222) if e.kind == "enip"]
    assert e.fields["connection_id"] == "0x004b0603" and e.fields["sequence_number"] == 4166875
    assert e.fields["data_length"] == 6 and e.fields["status"] == "one_way" and e.action == "other"


def _udp_frame(src: str, dst: str, sport: int, dport: int, payload: bytes) -> bytes:
    ip = lambda s: bytes(int(x) for x in s.split("."))  # noqa: E731
    udp = struct.pack("!HHHH", sport, dport, 8 + len(payload), 0) + payload
    iph = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0, ip(src), ip(dst))
    return b"\xff" * 6 + b"\x02\0\0\0\0\x01" + b"\x08\x00" + iph + udp


def test_udp_broadcast_list_identity_gives_one_event_per_responder() -> None:
    s = Sensor(Settings(data_dir=Path(".")), protocols={"enip": enip})
    s.begin("t")
    s.packet(1, 1.0, _udp_frame("10.0.0.9", "255.255.255.255", 50000, 44818, encap(0x63, session=0)))
    for i, dev in enumerate(("10.0.0.20", "10.0.0.21")):
        s.packet(
            2 + i,
            1.1 + i / 10,
            _udp_frame(
                dev, "10.0.0.9", 44818, 50000, encap(0x63, cpf((0x0C, LIST_IDENTITY_ITEM)), session=0)
            ),
        )
    s.end()
    evs = [e for e in s.drain() if e.kind == "enip"]
    assert [(e.src.ip, e.dst.ip, list(e.origin.frames), e.fields["status"]) for e in evs] == [
        ("10.0.0.9", "10.0.0.20", [1, 2], "paired"),
        ("10.0.0.9", "10.0.0.21", [1, 3], "paired"),
    ]
    assert all(e.fields["identity"]["product"] == "1756-ENBT/A" for e in evs)


def test_udp_list_identity_without_answer_is_no_response() -> None:
    s = Sensor(Settings(data_dir=Path(".")), protocols={"enip": enip})
    s.begin("t")
    s.packet(1, 1.0, _udp_frame("10.0.0.9", "255.255.255.255", 50000, 44818, encap(0x63, session=0)))
    s.end()
    (e,) = [e for e in s.drain() if e.kind == "enip"]
    assert e.fields["status"] == "no_response" and e.action == "discover"


def test_probe() -> None:
    assert enip.probe(encap(0x63, session=0), True)
    assert enip.probe(rr(req(0x0E, bytes([0x20, 0x01, 0x24, 0x01, 0x30, 0x01]))), True)
    assert not enip.probe(b"\x00" * 24, True) and not enip.probe(b"GET / HTTP/1.1\r\n\r\n" + b"x" * 10, True)


VALID = [
    rr(req(0x4D, sym("Tag") + bytes([0x28, 1]), struct.pack("<HHi", 0xC4, 1, 5))),
    rr(
        req(
            0x52,
            bytes([0x20, 0x06, 0x24, 0x01]),
            bytes([0x0A, 0xF0, 6, 0]) + req(0x0E, bytes([0x20, 1, 0x24, 1])) + bytes([1, 0, 1, 0]),
        )
    ),
    rr(
        req(
            0x0A,
            bytes([0x20, 0x02, 0x24, 0x01]),
            struct.pack("<HH", 1, 4) + req(0x01, bytes([0x20, 1, 0x24, 1])),
        )
    ),
    encap(0x63, cpf((0x0C, LIST_IDENTITY_ITEM)), session=0),
    rr(resp(0x4C, data=struct.pack("<Hi", 0xC4, 3))),
]


def _mutate(data: bytes, flips: list[tuple[int, int]], cut: int, length: int | None) -> bytes:
    b = bytearray(data)
    for pos, bit in flips:
        b[pos % len(b)] ^= 1 << bit
    if length is not None:
        b[2:4] = struct.pack("<H", length)
    return bytes(b[:cut]) if cut else bytes(b)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from(VALID),
    st.lists(st.tuples(st.integers(0, 400), st.integers(0, 7)), max_size=4),
    st.integers(0, 120),
    st.one_of(st.none(), st.integers(0, 0xFFFF)),
    st.booleans(),
    st.booleans(),
)
def test_fuzz_mutated_pdus_never_raise(pdu, flips, cut, length, is_orig, udp) -> None:
    data = _mutate(pdu, flips, cut, length)
    evs = feed(enip, [(is_orig, data), (not is_orig, data)], transport="udp" if udp else "tcp")
    if udp and len(data) < enip.HDR_LEN:
        assert any(e.kind == "weird" for e in evs)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300), st.integers(0, 2))
def test_fuzz_random_bytes_never_raise(data, mode) -> None:
    if mode == 0:
        feed(enip, [(True, data), (False, data)])
    elif mode == 1:
        feed(enip, [(True, data)], transport="udp")
    else:
        feed(enip, [(True, data)], transport="udp", port=2222)
