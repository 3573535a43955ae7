"""S7comm / COTP / S7comm-plus analyzer: byte-literal edge cases and the hypothesis fuzz."""

from __future__ import annotations

import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sensors import s7comm
from tests.fuzzing import feed

C, S = True, False  # client (originator) / server (PLC) direction


def tpkt(cotp_and_data: bytes) -> bytes:
    return struct.pack("!BBH", 3, 0, 4 + len(cotp_and_data)) + cotp_and_data


def dt(payload: bytes, eot: bool = True) -> bytes:
    """One TPKT packet with a COTP DT header (LI 2, code 0xF0, EOT bit)."""
    return tpkt(bytes([2, 0xF0, 0x80 if eot else 0x00]) + payload)


def s7(rosctr: int, ref: int, param: bytes, data: bytes = b"", err: tuple[int, int] | None = None) -> bytes:
    hdr = struct.pack("!BBHHHH", 0x32, rosctr, 0, ref, len(param), len(data))
    if rosctr in (2, 3):
        hdr += bytes(err or (0, 0))
    return hdr + param + data


def any_item(tsize: int, length: int, db: int, area: int, byte: int, bit: int = 0) -> bytes:
    addr = (byte << 3) | bit
    return bytes([0x12, 0x0A, 0x10, tsize]) + struct.pack("!HHB", length, db, area) + addr.to_bytes(3, "big")


READ_REQ = s7(1, 0x0100, bytes([0x04, 2]) + any_item(0x02, 4, 1, 0x84, 10) + any_item(0x01, 1, 0, 0x83, 3, 5))
READ_RSP = s7(
    3,
    0x0100,
    bytes([0x04, 2]),
    bytes([0xFF, 0x04, 0x00, 0x20]) + bytes.fromhex("01020304") + bytes([0xFF, 0x03, 0x00, 0x01, 0x01]),
)
CR = tpkt(bytes.fromhex("11e00000000100c0010ac1020100c2020102"))
CC = tpkt(bytes.fromhex("11d00001000300c0010ac1020100c2020102"))


def only(events, kind):
    out = [e for e in events if e.kind == kind]
    assert len(out) == 1, [e.to_json() for e in events]
    return out[0]


def test_cotp_connect_and_read_var_pair() -> None:
    evs = feed(s7comm, [(C, CR), (S, CC), (C, dt(READ_REQ)), (S, dt(READ_RSP))])
    c = only(evs, "cotp")
    assert c.action == "session" and c.fields["status"] == "paired"
    assert c.fields["dst_tsap"] == {"hex": "0102", "type": "PG", "rack": 0, "slot": 2}
    assert c.fields["tpdu_size"] == 1024 and list(c.frames) == [1, 2]
    e = only(evs, "s7comm")
    f = e.fields
    assert e.action == "read" and f["function"] == "READ_VAR" and f["status"] == "paired"
    assert list(e.frames) == [3, 4] and f["latency"] == 1.0
    assert [i["ref"] for i in f["items"]] == ["DB:1:10.0", "M:0:3.5"]
    assert f["items"][0]["return_code"] == "SUCCESS" and f["items"][0]["data"] == "01020304"
    assert f["points"] == [
        {"ref": "DB:1:10.0", "value": "01020304", "type": "BYTE"},
        {"ref": "M:0:3.5", "value": 1, "type": "BIT"},
    ]
    assert e.src.port == 40000  # the requester


def test_cotp_reassembly_over_three_dt_segments() -> None:
    # A write var whose S7 PDU is split over three COTP DT segments (EOT only on the last).
    data = bytes([0x00, 0x04, 0x00, 0x10]) + struct.pack("!h", -2)
    pdu = s7(1, 7, bytes([0x05, 1]) + any_item(0x05, 1, 5, 0x84, 2), data)
    chunks = [
        (C, dt(pdu[:6], eot=False)),
        (C, dt(pdu[6:20], eot=False)),
        (C, dt(pdu[20:])),
        (S, dt(s7(3, 7, bytes([0x05, 1]), b"\xff"))),
    ]
    e = only(feed(s7comm, chunks), "s7comm")
    assert list(e.frames) == [1, 2, 3, 4]  # every segment of the request, then the response
    assert e.action == "write" and e.fields["points"] == [{"ref": "DB:5:2.0", "value": -2, "type": "INT"}]
    assert e.fields["items"][0]["return_code"] == "SUCCESS"


def test_tpkt_split_across_tcp_segments_and_two_pdus_in_one() -> None:
    req, rsp = dt(READ_REQ), dt(READ_RSP)
    both = req + dt(s7(1, 9, bytes([0x29, 0, 0, 0, 0, 0, 9]) + b"P_PROGRAM"))
    evs = feed(s7comm, [(C, both[:5]), (C, both[5:]), (S, rsp), (S, dt(s7(3, 9, b"\x29")))])
    kinds = [(e.fields["function"], e.action, list(e.frames)) for e in evs if e.kind == "s7comm"]
    assert kinds == [("READ_VAR", "read", [1, 2, 3]), ("PLC_STOP", "control", [2, 4])]


def test_ack_data_with_error_class_and_code() -> None:
    req = s7(1, 0x0500, bytes([0x1D, 0, 0, 0, 0, 0, 0, 0, 9]) + b"_0800001A")
    rsp = s7(2, 0x0500, b"", err=(0xD2, 0x09))
    e = only(feed(s7comm, [(C, dt(req)), (S, dt(rsp))]), "s7comm")
    f = e.fields
    assert f["function"] == "START_UPLOAD" and e.action == "program"
    assert f["block"] == {"filename": "_0800001A", "type": "OB", "number": 1, "filesystem": "ACTIVE"}
    assert (f["error_class"], f["error_code"], f["error"]) == (0xD2, 0x09, "BLOCK_DOES_NOT_EXIST")
    assert f["response_rosctr"] == "ACK"
    rsp2 = s7(3, 0x0600, b"\x04\x01", err=(0x85, 0x00))
    e2 = only(
        feed(s7comm, [(C, dt(s7(1, 0x0600, b"\x04\x01" + any_item(2, 1, 0, 0x81, 0)))), (S, dt(rsp2))]),
        "s7comm",
    )
    assert e2.fields["error"] == "ERROR_ON_SUPPLIES" and "points" not in e2.fields


def _szl_response(ref: int, szl_id: int, index: int, elen: int, entries: list[bytes]) -> bytes:
    body = struct.pack("!HHHH", szl_id, index, elen, len(entries)) + b"".join(entries)
    param = bytes([0x00, 0x01, 0x12, 0x08, 0x12, 0x84, 0x01, 0x01, 0x00, 0x00, 0x00, 0x00])
    return s7(7, ref, param, bytes([0xFF, 0x09]) + struct.pack("!H", len(body)) + body)


def _szl_request(ref: int, szl_id: int, index: int) -> bytes:
    param = bytes([0x00, 0x01, 0x12, 0x04, 0x11, 0x44, 0x01, 0x00])
    return s7(7, ref, param, bytes([0xFF, 0x09, 0x00, 0x04]) + struct.pack("!HH", szl_id, index))


def test_szl_module_identification_gives_identity_of_the_plc() -> None:
    def e11(idx: int, mlfb: bytes, ausbg: int, ausbe: int) -> bytes:
        return struct.pack("!H", idx) + mlfb.ljust(20, b" ") + struct.pack("!HHH", 0xC000, ausbg, ausbe)

    entries = [
        e11(1, b"6ES7 315-2EH14-0AB0", 0, 1),
        e11(6, b"6ES7 315-2EH14-0AB0", 0, 1),
        e11(7, b"", 0x5603, 0x0207),
    ]
    evs = feed(
        s7comm, [(C, dt(_szl_request(3, 0x0011, 0))), (S, dt(_szl_response(3, 0x0011, 0, 28, entries)))]
    )
    f = only(evs, "s7comm").fields
    assert f["function"] == "READ_SZL" and f["group"] == "CPU_FUNCTIONS" and f["szl_id"] == 0x11
    assert f["identity"] == {
        "order_number": "6ES7 315-2EH14-0AB0",
        "hardware": "1",
        "firmware": "V3.2.7",
        "vendor": "Siemens",
    }
    assert f["identity_of"] == "dst"
    c1 = [
        struct.pack("!H", 2) + b"PLC_1".ljust(32, b"\x00"),
        struct.pack("!H", 5) + b"S C-B1U393142011".ljust(32, b"\x00"),
        struct.pack("!H", 3) + b"plant-7".ljust(32, b"\x00"),
    ]
    evs = feed(s7comm, [(C, dt(_szl_request(4, 0x001C, 0))), (S, dt(_szl_response(9, 0x001C, 0, 34, c1)))])
    f = only(evs, "s7comm").fields
    # the response carries another PDU reference: paired by group/subfunction all the same
    assert f["status"] == "paired" and f["response_pdu_ref"] == 9
    assert f["identity"] == {
        "name": "PLC_1",
        "serial": "S C-B1U393142011",
        "plant_id": "plant-7",
        "vendor": "Siemens",
    }


def test_password_is_never_stored() -> None:
    param = bytes([0x00, 0x01, 0x12, 0x04, 0x11, 0x45, 0x01, 0x00])
    secret = bytes.fromhex("7557b5f20d2a4c3a")
    req = s7(7, 1, param, bytes([0xFF, 0x09, 0x00, 0x08]) + secret)
    rsp_param = bytes([0x00, 0x01, 0x12, 0x08, 0x12, 0x85, 0x01, 0x01, 0x00, 0x00, 0x00, 0x00])
    evs = feed(s7comm, [(C, dt(req)), (S, dt(s7(7, 1, rsp_param, bytes([0x0A, 0, 0, 0]))))])
    e = only(evs, "s7comm")
    assert e.action == "session" and e.fields["password_sent"] is True and e.fields["password_length"] == 8
    blob = e.to_json()
    assert secret.hex() not in blob and "7557" not in blob


def test_truncated_tpkt_and_garbage_are_weird() -> None:
    evs = feed(s7comm, [(C, dt(READ_REQ)[:15])])
    w = only(evs, "weird")
    assert w.fields["name"] == "truncated_tpkt" and list(w.frames) == [1]
    evs = feed(s7comm, [(C, b"GET / HTTP/1.1\r\n\r\n")])
    assert [e.fields["name"] for e in evs if e.kind == "weird"] == ["bad_tpkt"]
    # S7 header announcing more parameter bytes than present
    bad = bytearray(READ_REQ)
    bad[7] = 0x40
    evs = feed(s7comm, [(C, dt(bytes(bad)))])
    assert [e.fields["name"] for e in evs if e.kind == "weird"] == ["s7_length_mismatch"]


def test_unmatched_job_and_unsolicited_ack_are_flagged() -> None:
    evs = feed(s7comm, [(C, dt(READ_REQ)), (S, dt(s7(3, 0x7777, b"\x04\x00")))])
    st_ = sorted(e.fields["status"] for e in evs if e.kind == "s7comm")
    assert st_ == ["no_request", "no_response"]


def test_s7comm_plus_request_response_by_sequence() -> None:
    req = bytes.fromhex("720100e431000004ca0000000100000120360000011d000400000072010000")
    rsp = bytes.fromhex("720100c832000004ca0000000136000287068707a100000172010000")
    notif = bytes.fromhex("7203005720") + bytes(32) + bytes.fromhex("3370000e5104000072030000")
    evs = feed(s7comm, [(C, dt(req)), (S, dt(rsp)), (S, dt(notif))])
    plus = [e for e in evs if e.kind == "s7comm_plus"]
    assert len(plus) == 2
    f = plus[0].fields
    assert (f["version"], f["function"], f["seq"], f["status"]) == ("V1", "CreateObject", 1, "paired")
    assert f["session_id"] == 0x120 and f["new_session_id"] == 902 and plus[0].action == "session"
    n = plus[1].fields
    assert (n["version"], n["opcode"], n["integrity"], n["status"]) == ("V3", "NOTIFICATION", True, "one_way")
    assert plus[1].src.port == 102


def test_probe_by_shape() -> None:
    assert s7comm.probe(CR, True) and s7comm.probe(dt(READ_REQ), True)
    assert not s7comm.probe(b"\x03\x00\x00\x02\x02\xf0", True)
    assert not s7comm.probe(b"GET / HTTP/1.1\r\n", True)


# --- fuzz -----------------------------------------------------------------------------------------

VALID = [
    CR,
    CC,
    dt(READ_REQ),
    dt(READ_RSP),
    dt(_szl_request(3, 0x11, 0)),
    dt(_szl_response(3, 0x11, 0, 28, [bytes(28)])),
    dt(s7(1, 9, bytes([0x28, 0, 0, 0, 0, 0, 0, 0xFD, 0, 2]) + b"C " + b"\x09P_PROGRAM")),
    dt(bytes.fromhex("720100c832000004ca0000000136000287068707a100000172010000")),
]


@st.composite
def mutated(draw) -> list[tuple[bool, bytes]]:
    out = []
    for _ in range(draw(st.integers(1, 4))):
        b = bytearray(draw(st.sampled_from(VALID)))
        op = draw(st.integers(0, 3))
        if op == 0 and b:
            i = draw(st.integers(0, len(b) - 1))
            b[i] ^= 1 << draw(st.integers(0, 7))
        elif op == 1:
            b = b[: draw(st.integers(0, len(b)))]
        elif op == 2 and len(b) > 20:
            i = draw(st.sampled_from([2, 3, 4, 13, 14, 15, 16, 20]))
            b[i] = draw(st.integers(0, 255))
        out.append((draw(st.booleans()), bytes(b)))
    return out


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_fuzz_mutated_pdus_never_raise(chunks) -> None:
    feed(s7comm, chunks)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.booleans(), st.binary(max_size=80)), max_size=4))
def test_fuzz_random_bytes_never_raise(chunks) -> None:
    evs = feed(s7comm, chunks)
    if any(d and d[0] != 3 for _, d in chunks):
        assert any(e.kind == "weird" for e in evs)


def test_clearly_malformed_items_are_weird() -> None:
    # read var announcing 3 items but carrying 1
    p = bytearray(READ_REQ)
    p[11] = 3
    evs = feed(s7comm, [(C, dt(bytes(p)))])
    assert any(e.kind == "weird" and e.fields["name"] == "malformed_s7_pdu" for e in evs)


def test_non_s7_iso_payload_is_handed_to_the_mms_analyzer(monkeypatch) -> None:
    """MMS shares TCP 102: its first TSDU (ISO session CONNECT SPDU 0x0d) hands the connection over."""
    import types

    import sensors
    from sensors.base import Analyzer

    got: list[tuple[bool, bytes, list[int]]] = []

    class FakeMms(Analyzer):
        PROTOCOL = "mms"

        def data(self, is_orig, data, ts, frames) -> None:
            got.append((is_orig, bytes(data), list(frames) if not isinstance(frames, int) else [frames]))

    fake = types.SimpleNamespace(PROTOCOL="mms", TcpAnalyzer=FakeMms)
    monkeypatch.setitem(sensors.PROTOCOLS, "mms", fake)
    cn1, cn2 = dt(b"\x0d\x05\x01\x02", eot=False), dt(b"\x03\x04")
    later = dt(b"\x01\x00\x01\x00")
    evs = feed(s7comm, [(C, CR), (S, CC), (C, cn1 + cn2 + later[:3]), (C, later[3:]), (S, later)])
    assert [e.kind for e in evs] == ["cotp"]  # no weird: MMS owns the connection now
    # both DT segments of the CONNECT, then the rest of the stream in order, raw TPKT included
    assert got[0] == (C, cn1, [3]) and got[1] == (C, cn2, [3])
    assert b"".join(d for o, d, _ in got if o)[len(cn1 + cn2) :] == later
    assert b"".join(d for o, d, _ in got if not o) == later


def test_non_s7_iso_payload_without_mms_module_is_one_weird(monkeypatch) -> None:
    import sensors

    monkeypatch.delitem(sensors.PROTOCOLS, "mms", raising=False)
    evs = feed(s7comm, [(C, dt(b"\x0d\x05\x01\x02")), (C, dt(b"\x01\x00\x01\x00")), (S, dt(b"\x0e\x00"))])
    assert [e.fields["name"] for e in evs if e.kind == "weird"] == ["unknown_protocol_id"]


def test_truncated_read_response_still_pairs_and_is_flagged() -> None:
    # ack-data whose data part announces 32 bits but carries 2 bytes (header lengths consistent)
    bad = s7(3, 0x0100, bytes([0x04, 2]), bytes([0xFF, 0x04, 0x00, 0x20, 0x01, 0x02]))
    evs = feed(s7comm, [(C, dt(READ_REQ)), (S, dt(bad))])
    e = only(evs, "s7comm")
    assert e.fields["status"] == "paired" and e.fields["malformed"] is True and "points" not in e.fields
    assert [w.fields["name"] for w in evs if w.kind == "weird"] == ["malformed_s7_pdu"]


def test_dbread_item_and_counter_address() -> None:
    dbread = bytes([0x12, 0x07, 0xB0, 0x01, 0x04, 0x00, 0x07, 0x00, 0x10])  # 1 area: 4 bytes of DB7 at 16
    counter = any_item(0x1C, 1, 0, 0x1C, 0)[:-3] + (5).to_bytes(3, "big")
    req = s7(1, 2, bytes([0x04, 2]) + dbread + counter)
    rsp = s7(
        3, 2, bytes([0x04, 2]), bytes([0xFF, 0x09, 0x00, 0x04, 1, 2, 3, 4, 0xFF, 0x09, 0x00, 0x02, 0, 7])
    )
    f = only(feed(s7comm, [(C, dt(req)), (S, dt(rsp))]), "s7comm").fields
    assert f["items"][0]["syntax"] == "DBREAD" and f["items"][0]["areas"][0]["ref"] == "DB:7:16.0"
    assert f["items"][1]["ref"] == "C:0:5" and f["items"][1]["address"] == "5"
    assert f["points"] == [
        {"ref": "DB:7:16.0", "value": "01020304", "type": "DBREAD"},
        {"ref": "C:0:5", "value": "0007", "type": "COUNTER"},
    ]


def test_s7comm_plus_fragments_until_trailer() -> None:
    """A message in three fragments: one event, every fragment's frame, header from the first."""
    first = bytes.fromhex("720200403100000542000000070000038634") + bytes(10)
    mid = bytes.fromhex("72020010") + bytes(16)
    last = bytes.fromhex("72020008") + bytes(4) + bytes.fromhex("72020000")
    rsp = bytes.fromhex("72020011320000054200000007340000000000000072020000")
    evs = feed(s7comm, [(C, dt(first)), (C, dt(mid)), (C, dt(last)), (S, dt(rsp))])
    e = only(evs, "s7comm_plus")
    assert list(e.frames) == [1, 2, 3, 4]
    assert (e.fields["function"], e.fields["seq"], e.fields["session_id"], e.fields["status"]) == (
        "SetMultiVariables",
        7,
        0x386,
        "paired",
    )
    evs = feed(s7comm, [(C, dt(first))])
    assert [w.fields["name"] for w in evs if w.kind == "weird"] == ["unfinished_s7comm_plus"]
