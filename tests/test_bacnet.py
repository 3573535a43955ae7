"""BACnet/IP analyzer: byte-literal messages (ASHRAE 135 Annex J, clauses 6, 20, 21), pairing,
segmentation, identity and points, malformed input, and hypothesis fuzz."""

from __future__ import annotations

import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sensors import bacnet
from sensors.run import events_from_capture
from tests.conftest import PCAPS, need_shared
from tests.fuzzing import feed


# --- builders -----------------------------------------------------------------------------------------
def _tag(num: int, ctx: bool, content: bytes) -> bytes:
    n = len(content)
    first = (num << 4) | (0x08 if ctx else 0)
    if n < 5:
        return bytes([first | n]) + content
    if n < 254:
        return bytes([first | 5, n]) + content
    return bytes([first | 5, 254]) + struct.pack("!H", n) + content


def ctx(num: int, content: bytes) -> bytes:
    return _tag(num, True, content)


def app(num: int, content: bytes) -> bytes:
    return _tag(num, False, content)


def uint(v: int) -> bytes:
    return v.to_bytes(max(1, (v.bit_length() + 7) // 8), "big")


def oid(t: int, i: int) -> bytes:
    return struct.pack("!I", (t << 22) | i)


def opening(n: int) -> bytes:
    return bytes([(n << 4) | 0x0E])


def closing(n: int) -> bytes:
    return bytes([(n << 4) | 0x0F])


def real(v: float) -> bytes:
    return app(4, struct.pack("!f", v))


def cstr(s: str, charset: int = 0, codec: str = "utf-8") -> bytes:
    return app(7, bytes([charset]) + s.encode(codec))


def bvlc(npdu: bytes, fn: int = 0x0A) -> bytes:
    return b"\x81" + bytes([fn]) + struct.pack("!H", 4 + len(npdu)) + npdu


def msg(apdu: bytes, ctl: int = 0x04, fn: int = 0x0A, route: bytes = b"") -> bytes:
    return bvlc(b"\x01" + bytes([ctl]) + route + apdu, fn)


def creq(invoke: int, service: int, params: bytes) -> bytes:
    return msg(bytes([0x00, 0x05, invoke, service]) + params)


def cack(invoke: int, service: int, params: bytes) -> bytes:
    return msg(bytes([0x30, invoke, service]) + params, ctl=0)


def unconf(service: int, params: bytes, fn: int = 0x0B) -> bytes:
    return msg(bytes([0x10, service]) + params, ctl=0, fn=fn)


def rp(invoke: int, t: int, i: int, prop: int) -> bytes:
    return creq(invoke, 12, ctx(0, oid(t, i)) + ctx(1, uint(prop)))


def rp_ack(invoke: int, t: int, i: int, prop: int, value: bytes) -> bytes:
    return cack(invoke, 12, ctx(0, oid(t, i)) + ctx(1, uint(prop)) + opening(3) + value + closing(3))


def bac(events: list) -> list:
    return [e for e in events if e.kind == "bacnet"]


def weirds(events: list) -> list[str]:
    return [e.fields["name"] for e in events if e.kind == "weird"]


# --- confirmed services and pairing ---------------------------------------------------------------------
def test_read_property_device_identity() -> None:
    ev = feed(bacnet, [(True, rp(1, 8, 4194303, 121)), (False, rp_ack(1, 8, 4194303, 121, cstr("Acme"))),
                       (True, rp(2, 8, 4194303, 75)),
                       (False, rp_ack(2, 8, 4194303, 75, app(12, oid(8, 500))))], "udp")
    a, b = bac(ev)
    assert a.action == "read" and a.fields["status"] == "paired" and a.fields["latency"] == 1.0
    assert list(a.origin.frames) == [1, 2] and a.src.ip == "10.0.0.1" and a.dst.ip == "10.0.0.2"
    assert (a.fields["service"], a.fields["object_type"], a.fields["instance"], a.fields["property"]) == (
        "ReadProperty", "device", 4194303, "vendor-name")
    assert a.fields["value"] == "Acme" and a.fields["response_type"] == "Complex-ACK"
    assert a.fields["identity"] == {"vendor": "Acme"} and a.fields["identity_of"] == "dst"
    assert b.fields["value"] == "device:500" and b.fields["identity"] == {"device_instance": 500}


def test_read_present_value_point() -> None:
    [e] = bac(feed(bacnet, [(True, rp(7, 0, 3, 85)), (False, rp_ack(7, 0, 3, 85, real(72.3)))], "udp"))
    assert e.fields["value"] == 72.3
    assert e.fields["points"] == [{"ref": "10.0.0.2:analog-input:3:present-value", "value": 72.3}]


def test_write_property_priority_and_simple_ack() -> None:
    wp = creq(3, 15, ctx(0, oid(1, 2)) + ctx(1, uint(85)) + opening(3) + real(50.0) + closing(3)
              + ctx(4, b"\x08"))
    ack = msg(bytes([0x20, 3, 15]), ctl=0)
    [e] = bac(feed(bacnet, [(True, wp), (False, ack)], "udp"))
    assert e.action == "write" and e.fields["priority"] == 8 and e.fields["response_type"] == "Simple-ACK"
    assert e.fields["points"] == [{"ref": "10.0.0.2:analog-output:2:present-value", "value": 50.0}]


def test_reinitialize_password_never_stored() -> None:
    req = creq(9, 20, ctx(0, b"\x01") + ctx(1, b"\x00" + b"Delcatty70"))
    err = msg(bytes([0x50, 9, 20]) + app(9, b"\x05") + app(9, b"\x1a"), ctl=0)
    ev = feed(bacnet, [(True, req), (False, err)], "udp")
    [e] = bac(ev)
    assert e.action == "control" and e.fields["reinit_state"] == "warmstart" and e.fields["password_given"]
    assert (e.fields["error_class"], e.fields["error_code"]) == ("services", "password-failure")
    assert "Delcatty70" not in "".join(x.to_json() for x in ev)
    assert "44656c63" not in "".join(x.to_json() for x in ev)          # nor its hex


def test_device_communication_control() -> None:
    req = creq(4, 17, ctx(0, uint(60)) + ctx(1, b"\x01"))
    [e] = bac(feed(bacnet, [(True, req)], "udp"))
    assert e.action == "control" and e.fields["status"] == "no_response"
    f = e.fields
    assert (f["time_duration"], f["enable_disable"], f["password_given"]) == (60, "disable", False)


def test_reject_abort_and_unmatched() -> None:
    chunks = [
        (True, rp(1, 0, 1, 85)), (False, msg(bytes([0x60, 1, 9]), ctl=0)),       # Reject
        (True, rp(2, 0, 1, 85)), (False, msg(bytes([0x71, 2, 4]), ctl=0)),       # Abort by server
        (True, rp(3, 0, 1, 85)), (True, msg(bytes([0x70, 3, 0]), ctl=0)),        # Abort by the client
        (False, msg(bytes([0x20, 99, 15]), ctl=0)),                              # ACK of nothing
        (False, rp(5, 0, 1, 85)),                                                # request by the responder
    ]
    ev = bac(feed(bacnet, chunks, "udp"))
    by = {e.fields.get("invoke_id"): e for e in ev}
    assert by[1].fields["reject_reason"] == "unrecognized-service" and list(by[1].origin.frames) == [1, 2]
    assert by[2].fields["abort_reason"] == "segmentation-not-supported" and by[2].fields["by_server"] is True
    assert by[3].fields["status"] == "paired" and list(by[3].origin.frames) == [5, 6]
    assert by[99].fields["status"] == "no_request" and by[99].action == "write"
    assert by[99].src.ip == "10.0.0.1"                          # src is always the requester's side
    assert by[5].fields["status"] == "no_response" and by[5].src.ip == "10.0.0.2"


def test_rpm_request_and_ack_with_error() -> None:
    req = creq(5, 14, ctx(0, oid(8, 10)) + opening(1) + ctx(0, uint(8)) + closing(1))
    ack = cack(5, 14, ctx(0, oid(8, 10)) + opening(1)
               + ctx(2, uint(70)) + opening(4) + cstr("Model-X") + closing(4)
               + ctx(2, uint(44)) + opening(5) + app(9, b"\x02") + app(9, b"\x20") + closing(5)
               + ctx(2, uint(85)) + opening(4) + app(2, b"\x07") + closing(4) + closing(1))
    [e] = bac(feed(bacnet, [(True, req), (False, ack)], "udp"))
    items = e.fields["items"]
    assert [i["property"] for i in items] == ["model-name", "firmware-revision", "present-value"]
    assert items[1]["error_code"] == "unknown-property" and items[0]["value"] == "Model-X"
    assert e.fields["requested"][0]["property"] == "all"
    assert e.fields["identity"] == {"model": "Model-X", "device_instance": 10}
    assert e.fields["points"] == [{"ref": "10.0.0.2:device:10:present-value", "value": 7}]


def test_segmented_complex_ack() -> None:
    value = opening(3) + cstr("x" * 40) + closing(3)
    body = ctx(0, oid(8, 1)) + ctx(1, uint(77)) + value
    seg1 = msg(bytes([0x3C, 6, 0, 1, 12]) + body[:20], ctl=0)         # SEG|MOR, seq 0, window 1
    sack = msg(bytes([0x40, 6, 0, 1]), ctl=0)                          # Segment-ACK from the client
    seg2 = msg(bytes([0x38, 6, 1, 1, 12]) + body[20:], ctl=0)          # last segment
    [e] = bac(feed(bacnet, [(True, rp(6, 8, 1, 77)), (False, seg1), (True, sack), (False, seg2)], "udp"))
    assert list(e.origin.frames) == [1, 2, 3, 4] and e.fields["value"] == "x" * 40
    assert e.fields["segments"] == 2 and e.fields["identity"] == {"name": "x" * 40, "device_instance": 1}


def test_incomplete_segmentation_flagged() -> None:
    seg1 = msg(bytes([0x3C, 6, 0, 1, 12]) + b"\x0c\x02", ctl=0)
    ev = feed(bacnet, [(True, rp(6, 8, 1, 77)), (False, seg1)], "udp")
    assert "bacnet_incomplete_segmentation" in weirds(ev)
    assert bac(ev)[0].fields["status"] == "no_response"


# --- unconfirmed services, BVLL and network layer ----------------------------------------------------
def test_i_am_identity() -> None:
    iam = unconf(0, app(12, oid(8, 1234)) + app(2, b"\x05\xc4") + app(9, b"\x03") + app(2, b"\x05"))
    [e] = bac(feed(bacnet, [(True, iam)], "udp"))
    assert e.action == "discover" and e.fields["status"] == "one_way" and e.fields["identity_of"] == "src"
    assert e.fields["identity"] == {"device_instance": 1234, "vendor_id": 5,
                                    "vendor": "Johnson Controls, Inc.", "max_apdu": 1476,
                                    "segmentation": "no-segmentation"}
    assert e.fields["bvlc_function"] == "Original-Broadcast-NPDU"


def test_who_is_who_has_time_sync() -> None:
    ev = bac(feed(bacnet, [(True, unconf(8, ctx(0, uint(10)) + ctx(1, uint(20)))), (True, unconf(8, b"")),
                           (True, unconf(7, ctx(3, b"\x00SYNERGY"))),
                           (True, unconf(6, app(10, bytes([106, 9, 23, 6]))
                                         + app(11, bytes([23, 9, 54, 0]))))], "udp"))
    assert (ev[0].fields["low_limit"], ev[0].fields["high_limit"]) == (10, 20)
    assert "low_limit" not in ev[1].fields and ev[1].action == "discover"
    assert ev[2].fields["object_name"] == "SYNERGY"
    assert ev[3].fields["time"] == "2006-09-23 23:09:54.00" and ev[3].action == "write"


def test_cov_notification_points_and_charset() -> None:
    note = unconf(2, ctx(0, b"\x01") + ctx(1, oid(8, 2)) + ctx(2, oid(3, 4)) + ctx(3, b"\x05") + opening(4)
                  + ctx(0, uint(85)) + opening(2) + app(9, b"\x01") + closing(2)
                  + ctx(0, uint(77)) + opening(2) + cstr("Pumpe", 4, "utf-16-be") + closing(2) + closing(4))
    [e] = bac(feed(bacnet, [(True, note)], "udp"))
    assert e.fields["device_instance"] == 2 and e.fields["items"][1]["value"] == "Pumpe"
    assert e.fields["charsets"] == ["ucs-2"]
    assert e.fields["points"] == [{"ref": "10.0.0.1:binary-input:4:present-value", "value": 1}]


def test_bvll_register_foreign_device_and_forwarded() -> None:
    reg = b"\x81\x05\x00\x06\x00\x3c"
    res = b"\x81\x00\x00\x06\x00\x30"
    fwd = bvlc(bytes([192, 168, 1, 5, 0xBA, 0xC0]) + b"\x01\x00\x10\x08", 0x04)
    ev = bac(feed(bacnet, [(True, reg), (False, res), (True, fwd)], "udp"))
    assert ev[0].fields["bvlc_function"] == "Register-Foreign-Device" and ev[0].fields["ttl"] == 60
    assert ev[0].fields["bvlc_result"] == "Register-Foreign-Device-NAK" and ev[0].fields["status"] == "paired"
    assert ev[0].action == "session"
    assert ev[1].fields["forwarded_from"] == "192.168.1.5:47808" and ev[1].fields["service"] == "Who-Is"


def test_network_layer_message_and_routing() -> None:
    iam_router = bvlc(b"\x01\x80\x01" + struct.pack("!HH", 1, 2), 0x0B)
    routed = msg(bytes([0x10, 8]), ctl=0x28, route=struct.pack("!HB", 5, 1) + b"\x07"
                 + struct.pack("!HB", 9, 6) + bytes([10, 0, 0, 9, 0xBA, 0xC0]) + b"\xff")
    ev = bac(feed(bacnet, [(True, iam_router), (True, routed)], "udp"))
    assert ev[0].fields["network_message"] == "I-Am-Router-To-Network" and ev[0].fields["networks"] == [1, 2]
    assert ev[0].action == "discover"
    f = ev[1].fields
    assert (f["dnet"], f["dadr"], f["snet"], f["sadr"], f["hop_count"]) == (5, "07", 9, "10.0.0.9:47808", 255)


def test_malformed() -> None:
    cases = {
        "bacnet_bad_bvlc": b"\x82\x0a\x00\x04",
        "bacnet_bvlc_length_mismatch": b"\x81\x0a\x00\x09\x01\x00\x10\x08",
        "bacnet_truncated_npdu": b"\x81\x0a\x00\x05\x01",
        "bacnet_bad_npdu_version": b"\x81\x0a\x00\x07\x02\x00\x10",
        "bacnet_truncated_apdu": msg(b"\x00\x05"),
        "bacnet_unknown_pdu_type": msg(b"\x90\x00\x00"),
        "bacnet_malformed_service": creq(1, 12, ctx(0, b"\x00\x00")),
    }
    for name, data in cases.items():
        assert name in weirds(feed(bacnet, [(True, data)], "udp")), name


def test_truncated_fixed_headers() -> None:
    for apdu in (b"\x40\x06", b"\x70\x01", b"\x30\x01", b"\x08\x05\x01\x00", b"\x38\x01\x00"):
        ev = feed(bacnet, [(True, msg(apdu)), (False, msg(apdu))], "udp")
        assert weirds(ev), apdu


def test_probe() -> None:
    assert bacnet.probe(unconf(8, b""), True)
    assert not bacnet.probe(b"\x81\x0a\x00\x09\x01", True) and not bacnet.probe(b"\x03\x00\x00\x16", True)


def test_who_is_broadcast_dst_from_capture() -> None:
    pcap = need_shared(PCAPS / "bacnet" / "bacnet_example.pcap")
    who = [e for e in events_from_capture(pcap) if e.fields.get("service") == "Who-Is"]
    assert who and all(e.dst.ip == "172.20.32.255" and e.fields["status"] == "one_way" for e in who)


# --- fuzz ---------------------------------------------------------------------------------------------
VALID = [
    rp(1, 8, 4194303, 121), rp_ack(1, 8, 4194303, 121, cstr("Acme")),
    creq(5, 14, ctx(0, oid(8, 10)) + opening(1) + ctx(0, uint(8)) + closing(1)),
    unconf(0, app(12, oid(8, 1234)) + app(2, b"\x05\xc4") + app(9, b"\x03") + app(2, b"\x05")),
    msg(bytes([0x3C, 6, 0, 1, 12]) + b"\x0c\x02\x00\x00\x01", ctl=0),
    msg(bytes([0x40, 6, 0, 1]), ctl=0), msg(bytes([0x71, 2, 4]), ctl=0), msg(bytes([0x60, 1, 9]), ctl=0),
    msg(bytes([0x50, 9, 20]) + app(9, b"\x05") + app(9, b"\x1a"), ctl=0),
    bvlc(b"\x01\x80\x01" + struct.pack("!HH", 1, 2), 0x0B), b"\x81\x05\x00\x06\x00\x3c",
    bvlc(bytes([192, 168, 1, 5, 0xBA, 0xC0]) + b"\x01\x28\x00\x05\x01\x07\x00\x09\x01\x03\xff\x10\x08", 0x04),
]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.booleans(), st.binary(max_size=60)), max_size=4))
def test_fuzz_random(chunks: list[tuple[bool, bytes]]) -> None:
    feed(bacnet, [(o, b"\x81" + d) for o, d in chunks], "udp")


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.data())
def test_fuzz_mutations(data: st.DataObject) -> None:
    m = bytearray(data.draw(st.sampled_from(VALID)))
    op = data.draw(st.sampled_from(["flip", "truncate", "length"]))
    if op == "flip":
        i = data.draw(st.integers(0, len(m) - 1))
        m[i] ^= 1 << data.draw(st.integers(0, 7))
    elif op == "truncate":
        m = m[:data.draw(st.integers(0, len(m) - 1))]
    else:
        i = data.draw(st.integers(4, len(m) - 1))          # a tag / length octet inside the NPDU
        m[i] = data.draw(st.integers(0, 255))
    ev = feed(bacnet, [(True, bytes(m)), (False, bytes(m))], "udp")
    if op == "truncate":
        assert weirds(ev), "a cut datagram breaks the BVLC length: it must be flagged"
