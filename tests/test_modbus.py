"""Modbus/TCP analyzer: byte-literal cases (exceptions, framing, every function code, pairing,
malformed PDUs) and a hypothesis fuzz of random and mutated PDUs."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from icsight.events import Endpoint, Event
from icsight.settings import Settings
from sensors import modbus
from sensors.flows import Conn
from sensors.pipeline import Sensor
from tests.fuzzing import feed


def adu(tid: int, unit: int, pdu: bytes, pid: int = 0, length: int | None = None) -> bytes:
    """MBAP header + PDU (TCP 3.1.3); `length` overrides the length field."""
    return struct.pack("!HHHB", tid, pid, len(pdu) + 1 if length is None else length, unit) + pdu


def pair(req: str, resp: str, tid: int = 1, unit: int = 1) -> list[tuple[bool, bytes]]:
    """A request and its response, PDUs given as hex."""
    return [(True, adu(tid, unit, bytes.fromhex(req))), (False, adu(tid, unit, bytes.fromhex(resp)))]


def run(chunks: list[tuple[bool, bytes]], transport: str = "tcp") -> tuple[list[Event], list[Event]]:
    """(modbus events, weird events) of feeding chunks to the analyzer."""
    evs = feed(modbus, chunks, transport)
    return [e for e in evs if e.kind == "modbus"], [e for e in evs if e.kind == "weird"]


def one(chunks: list[tuple[bool, bytes]], transport: str = "tcp") -> Event:
    evs, weird = run(chunks, transport)
    assert len(evs) == 1, evs
    assert not weird, [w.fields for w in weird]
    return evs[0]


def weird_names(weird: list[Event]) -> list[str]:
    return [w.fields["name"] for w in weird]


# --- exception responses (AP 7) ----------------------------------------------------------------

def test_exception_response_pairs_with_request() -> None:
    e = one(pair("03 0258 000a", "83 02", 7, 1))
    f = e.fields
    assert (f["func"], f["func_code"], f["exception"], f["exception_code"]) == \
        ("READ_HOLDING_REGISTERS", 3, "ILLEGAL_DATA_ADDRESS", 2)
    assert (f["status"], f["address"], f["quantity"], e.action) == ("paired", 600, 10, "read")
    assert not modbus.points(f) and "values" not in f
    assert e.origin.frames == (1, 2) and e.src.port == 40000 and e.dst.port == 502
    assert f["latency"] == 1.0


@pytest.mark.parametrize("code,name", [
    (1, "ILLEGAL_FUNCTION"), (4, "SERVER_DEVICE_FAILURE"), (6, "SERVER_DEVICE_BUSY"),
    (0x0B, "GATEWAY_TARGET_DEVICE_FAILED_TO_RESPOND"), (0x0C, "unknown-0x0c")])
def test_exception_codes(code: int, name: str) -> None:
    e = one([(True, adu(1, 1, bytes.fromhex("06 0001 0003"))), (False, adu(1, 1, bytes([0x86, code])))])
    assert e.fields["exception"] == name and e.fields["exception_code"] == code
    assert not modbus.points(e.fields), "a refused write wrote nothing"
    assert e.fields["values"] == [3]      # but the attempted value stays in the record


def test_exception_response_without_exception_code_is_truncated() -> None:
    evs, weird = run([(True, adu(1, 1, bytes.fromhex("01 0000 0001"))), (False, adu(1, 1, b"\x81"))])
    assert weird_names(weird) == ["truncated_pdu"]
    assert evs[0].fields["status"] == "paired" and "exception_code" not in evs[0].fields


def test_write_refused_with_exception_keeps_values_drops_points() -> None:
    e = one([(True, adu(3, 9, bytes.fromhex("10 0010 0002 04 0001 0002"))), (False, adu(3, 9, b"\x90\x03"))])
    assert e.fields["values"] == [1, 2] and not modbus.points(e.fields) and e.action == "write"


# --- framing: truncated MBAP, split PDUs, several PDUs per segment, bad headers ------------------

def test_truncated_mbap_at_close_is_weird() -> None:
    evs, weird = run([(True, bytes.fromhex("0001 0000 00"))])
    assert evs == [] and weird_names(weird) == ["truncated_pdu"]
    assert weird[0].origin.frames == (1,)


def test_mbap_length_longer_than_stream() -> None:
    evs, weird = run([(True, adu(1, 1, bytes.fromhex("03 0000 0001"), length=20))])
    assert evs == [] and weird_names(weird) == ["truncated_pdu"]


def test_pdu_split_across_two_segments() -> None:
    req = adu(5, 1, bytes.fromhex("03 0064 0002"))
    resp = adu(5, 1, bytes.fromhex("03 04 0011 0022"))
    e = one([(True, req[:3]), (True, req[3:9]), (True, req[9:]), (False, resp[:8]), (False, resp[8:])])
    assert e.origin.frames == (1, 2, 3, 4, 5)
    assert e.fields["values"] == [0x11, 0x22]
    assert modbus.points(e.fields) == [{"ref": "u1:hr:100", "value": 0x11},
                                       {"ref": "u1:hr:101", "value": 0x22}]
    assert e.ts == 0.0 and e.fields["latency"] == 3.0     # from the request's first segment


def test_two_pdus_in_one_segment_and_a_third_split() -> None:
    r1, r2, r3 = (adu(t, 1, bytes.fromhex("04 0000 0001")) for t in (1, 2, 3))
    a1, a2, a3 = (adu(t, 1, bytes([4, 2, 0, t])) for t in (1, 2, 3))
    evs, weird = run([(True, r1 + r2 + r3[:4]), (True, r3[4:]), (False, a1 + a2 + a3)])
    assert not weird
    got = {e.fields["trans_id"]: (e.origin.frames, e.fields["values"]) for e in evs}
    assert got == {1: ((1, 3), [1]), 2: ((1, 3), [2]), 3: ((1, 2, 3), [3])}
    assert all(modbus.points(e.fields)[0]["ref"] == "u1:ir:0" for e in evs)


def test_bad_protocol_id_resyncs_at_next_segment() -> None:
    good = adu(2, 1, bytes.fromhex("01 0000 0003"))
    evs, weird = run([(True, adu(1, 1, bytes.fromhex("01 0000 0003"), pid=5) + good), (True, good),
                      (False, adu(2, 1, bytes.fromhex("01 01 05")))])
    assert weird_names(weird) == ["bad_protocol_id"]
    assert weird[0].origin.frames == (1,)
    assert len(evs) == 1 and evs[0].origin.frames == (2, 3)     # frame 1's good PDU went with the bad one
    assert evs[0].fields["values"] == [True, False, True]


@pytest.mark.parametrize("length", [0, 1, 255, 0x8804])
def test_bad_mbap_length(length: int) -> None:
    evs, weird = run([(True, adu(1, 1, bytes.fromhex("01 0000 0003"), length=length))])
    assert evs == [] and weird_names(weird) == ["bad_length"]


def test_gap_drops_the_partial_pdu_and_pairing_continues() -> None:
    s = Sensor(Settings(data_dir=Path(".")), protocols={"modbus": modbus})
    s.begin("t")
    conn = Conn(s, "tcp", Endpoint("10.0.0.1", 40000), Endpoint("10.0.0.2", 502), 0.0, "C1")
    an = modbus.TcpAnalyzer(conn)
    req = adu(1, 1, bytes.fromhex("03 0000 0001"))
    an.data(True, req[:5], 0.0, 1)
    an.gap(True, 100, 1.0)
    an.data(True, adu(2, 1, bytes.fromhex("03 0000 0001")), 2.0, 2)
    an.data(False, adu(2, 1, bytes.fromhex("03 02 0007")), 3.0, 3)
    an.close(4.0)
    evs = s.drain()
    assert [e.fields["name"] for e in evs if e.kind == "weird"] == ["gap_in_pdu"]
    [e] = [e for e in evs if e.kind == "modbus"]
    assert e.fields["trans_id"] == 2 and e.fields["values"] == [7] and e.origin.frames == (2, 3)


# --- pairing -----------------------------------------------------------------------------------

def test_unmatched_request_and_response() -> None:
    evs, weird = run([(True, adu(1, 3, bytes.fromhex("06 0005 1234"))),
                      (False, adu(9, 3, bytes.fromhex("03 04 0001 0002")))])
    assert not weird
    by = {e.fields["status"]: e for e in evs}
    nr = by["no_request"]
    assert nr.fields["values"] == [1, 2] and not modbus.points(nr.fields) and "address" not in nr.fields
    assert nr.origin.frames == (2,) and nr.src.port == 40000 and "latency" not in nr.fields
    nresp = by["no_response"]
    assert modbus.points(nresp.fields) == [{"ref": "u3:hr:5", "value": 0x1234}]
    assert nresp.origin.frames == (1,)


def test_duplicate_transaction_id_flushes_the_first_request() -> None:
    r = adu(4, 1, bytes.fromhex("05 0001 ff00"))
    evs, _ = run([(True, r), (True, r), (False, r)])
    assert [(e.fields["status"], e.origin.frames) for e in evs] == [("no_response", (1,)), ("paired", (2, 3))]


def test_function_mismatch_is_weird_and_still_emitted() -> None:
    evs, weird = run(pair("03 0000 0001", "04 02 0001"))
    assert weird_names(weird) == ["function_mismatch"]
    [e] = evs
    assert (e.fields["func_code"], e.fields["response_func_code"], e.fields["status"]) == (3, 4, "paired")
    assert "values" not in e.fields and e.fields["response_data"] == "020001"


def test_unit_id_mismatch_is_weird() -> None:
    evs, weird = run([(True, adu(1, 1, bytes.fromhex("03 0000 0001"))),
                      (False, adu(1, 2, bytes.fromhex("03 02 0001")))])
    assert weird_names(weird) == ["unit_id_mismatch"] and evs[0].fields["response_unit_id"] == 2


def test_pending_requests_expire() -> None:
    s = Sensor(Settings(data_dir=Path(".")), protocols={"modbus": modbus})
    s.begin("t")
    conn = Conn(s, "tcp", Endpoint("10.0.0.1", 40000), Endpoint("10.0.0.2", 502), 0.0, "C1")
    an = modbus.TcpAnalyzer(conn)
    an.data(True, adu(1, 1, bytes.fromhex("03 0000 0001")), 0.0, 1)
    an.data(True, adu(2, 1, bytes.fromhex("03 0000 0001")), 100.0, 2)
    evs = s.drain()
    assert [(e.fields["trans_id"], e.fields["status"]) for e in evs] == [(1, "no_response")]
    an.close(101.0)
    assert [(e.fields["trans_id"], e.fields["status"]) for e in s.drain()] == [(2, "no_response")]


def test_server_opened_connection_keeps_client_as_src() -> None:
    """A capture where 10.0.0.8:502 opened the flow: its PDUs are the responses (tshark does the same)."""
    s = Sensor(Settings(data_dir=Path(".")), protocols={"modbus": modbus})
    s.begin("t")
    conn = Conn(s, "tcp", Endpoint("10.0.0.8", 502), Endpoint("10.0.0.57", 4446), 0.0, "C1")
    an = modbus.TcpAnalyzer(conn)
    an.data(False, adu(1, 1, bytes.fromhex("01 0000 0001")), 0.0, 1)
    an.data(True, adu(1, 1, bytes.fromhex("81 06")), 1.0, 2)
    an.close(2.0)
    [e] = s.drain()
    assert e.fields["status"] == "paired" and e.fields["exception"] == "SERVER_DEVICE_BUSY"
    assert (e.src.ip, e.src.port, e.dst.port) == ("10.0.0.57", 4446, 502)


def test_udp_analyzer() -> None:
    cut = (True, adu(2, 1, bytes.fromhex("02 0003 0002"))[:9])
    evs, weird = run([*pair("02 0003 0002", "02 01 02"), cut], transport="udp")
    assert weird_names(weird) == ["truncated_pdu"]
    [e] = evs
    assert e.fields["values"] == [False, True]
    assert modbus.points(e.fields)[1] == {"ref": "u1:di:4", "value": True}


# --- every function code -------------------------------------------------------------------------

def test_read_coils_keeps_exactly_quantity_bits() -> None:
    e = one(pair("01 0013 000a", "01 02 cd 01"))
    assert e.fields["values"] == [True, False, True, True, False, False, True, True, True, False]
    assert [p["ref"] for p in modbus.points(e.fields)] == [f"u1:coil:{19 + i}" for i in range(10)]


def test_write_multiple_coils_and_registers() -> None:
    e = one(pair("0f 0013 000a 02 cd 01", "0f 0013 000a"))
    assert (e.action, e.fields["quantity"], len(e.fields["values"])) == ("write", 10, 10)
    assert modbus.points(e.fields)[0] == {"ref": "u1:coil:19", "value": True}
    e = one(pair("10 0001 0002 04 000a 0102", "10 0001 0002", 2, 1))
    assert e.fields["values"] == [10, 258]
    assert [p["ref"] for p in modbus.points(e.fields)] == ["u1:hr:1", "u1:hr:2"]


def test_write_single_coil_and_register() -> None:
    e = one(pair("05 00ac ff00", "05 00ac ff00", 1, 2))
    assert modbus.points(e.fields) == [{"ref": "u2:coil:172", "value": True}] and e.fields["quantity"] == 1
    e = one(pair("06 0001 0003", "06 0001 0003", 1, 2))
    assert modbus.points(e.fields) == [{"ref": "u2:hr:1", "value": 3}]


def test_echo_mismatch_is_weird() -> None:
    evs, weird = run(pair("06 0001 0003", "06 0001 0004", 1, 2))
    assert weird_names(weird) == ["echo_mismatch"] and evs[0].fields["values"] == [3]


def test_bad_coil_value() -> None:
    evs, weird = run([(True, adu(1, 2, bytes.fromhex("05 0001 1234")))])
    assert weird_names(weird) == ["bad_coil_value"] and "values" not in evs[0].fields


@pytest.mark.parametrize("fc,sub,data,resp,name,values", [
    (8, 0x0000, "a537", "a537", "RETURN_QUERY_DATA", None),
    (8, 0x0001, "ff00", "ff00", "RESTART_COMMUNICATIONS_OPTION", None),
    (8, 0x0004, "0000", None, "FORCE_LISTEN_ONLY_MODE", None),
    (8, 0x000a, "0000", "0000", "CLEAR_COUNTERS_AND_DIAGNOSTIC_REGISTER", None),
    (8, 0x000b, "0000", "0108", "RETURN_BUS_MESSAGE_COUNT", [0x108]),
    (8, 0x0012, "0000", "0003", "RETURN_BUS_CHARACTER_OVERRUN_COUNT", [3]),
    (8, 0x0099, "0000", "0000", "unknown-0x0099", None),
])
def test_diagnostics_sub_functions(fc, sub, data, resp, name, values) -> None:
    chunks = [(True, adu(1, 1, bytes([fc]) + struct.pack("!H", sub) + bytes.fromhex(data)))]
    if resp is not None:
        chunks.append((False, adu(1, 1, bytes([fc]) + struct.pack("!H", sub) + bytes.fromhex(resp))))
    e = one(chunks)
    f = e.fields
    assert (f["sub_function"], f["sub_function_name"], f["data"], e.action) == (sub, name, data, "diagnose")
    assert f.get("response_data") == resp and f.get("values") == values
    assert f["status"] == ("paired" if resp else "no_response")     # listen-only mode: no answer


def test_diagnostics_sub_function_mismatch() -> None:
    _, weird = run(pair("08 0000 1234", "08 0001 1234"))
    assert weird_names(weird) == ["echo_mismatch"]


def test_read_device_identification_multi_object() -> None:
    objs = [(0, b"ACME"), (1, b"PLC-9"), (2, b"V1.2"), (3, b"http://acme.example"), (4, b"Ctl"),
            (5, b"M9 "), (6, b"Line 3\x00\x00"), (0x80, b"\x01\x02")]
    body = b"".join(bytes([i, len(v)]) + v for i, v in objs)
    resp = bytes.fromhex("2b 0e 03 83 ff 81") + bytes([len(objs)]) + body
    e = one([(True, adu(9, 1, bytes.fromhex("2b 0e 03 00"))), (False, adu(9, 1, resp))])
    f = e.fields
    assert (e.action, f["mei"], f["mei_type"], f["read_device_id"], f["object_id"]) == \
        ("discover", "READ_DEVICE_IDENTIFICATION", 14, 3, 0)
    assert (f["conformity_level"], f["more_follows"], f["next_object_id"]) == (0x83, True, 0x81)
    assert f["objects"] == {"VendorName": "ACME", "ProductCode": "PLC-9", "MajorMinorRevision": "V1.2",
                            "VendorUrl": "http://acme.example", "ProductName": "Ctl", "ModelName": "M9 ",
                            "UserApplicationName": "Line 3", "object_0x80": "0102"}
    assert f["identity"] == {"vendor": "ACME", "product_code": "PLC-9", "firmware": "V1.2", "url": "http://acme.example",
                             "product": "Ctl", "model": "M9", "name": "Line 3"}


def test_read_device_identification_truncated_object() -> None:
    resp = bytes.fromhex("2b 0e 01 01 00 00 02 00 04") + b"ACME" + bytes.fromhex("01 09") + b"BMX"
    evs, weird = run([(True, adu(1, 1, bytes.fromhex("2b 0e 01 00"))), (False, adu(1, 1, resp))])
    assert weird_names(weird) == ["truncated_pdu"] and evs[0].fields["objects"] == {"VendorName": "ACME"}


def test_canopen_general_reference_is_other() -> None:
    e = one(pair("2b 0d 0102", "2b 0d 0304"))
    assert (e.action, e.fields["mei"], e.fields["data"], e.fields["response_data"]) == \
        ("other", "CANOPEN_GENERAL_REFERENCE", "0102", "0304")


def test_report_server_id_layouts() -> None:
    e = one([(True, adu(1, 1, b"\x11")), (False, adu(1, 1, b"\x11\x05\x2a\xffABC"))])
    assert (e.fields["server_id"], e.fields["run_indicator"], e.fields["server_data"], e.action) == \
        ("2a", "ON", "ABC", "discover")
    e = one([(True, adu(1, 1, b"\x11")), (False, adu(1, 1, b"\x11\x04PLC\x00"))])
    assert (e.fields["server_id"], e.fields["run_indicator"]) == ("PLC", "OFF")


def test_mask_write_read_write_fifo_file_records() -> None:
    e = one(pair("16 0004 00f2 0025", "16 0004 00f2 0025"))
    f = e.fields
    assert (f["address"], f["and_mask"], f["or_mask"], e.action) == (4, 0xF2, 0x25, "write")
    assert not modbus.points(e.fields)        # the result depends on the register's current value
    e = one([(True, adu(2, 1, bytes.fromhex("17 0003 0002 000e 0001 02 00ff"))),
             (False, adu(2, 1, bytes.fromhex("17 04 00fe 0acd")))])
    f = e.fields
    assert (f["read_address"], f["read_quantity"], f["write_address"], f["write_quantity"]) == (3, 2, 14, 1)
    assert (f["write_values"], f["read_values"], e.action) == ([0xFF], [0xFE, 0xACD], "write")
    assert modbus.points(f) == [{"ref": "u1:hr:14", "value": 0xFF}, {"ref": "u1:hr:3", "value": 0xFE},
                           {"ref": "u1:hr:4", "value": 0xACD}]
    e = one(pair("18 04de", "18 0006 0002 01b8 1284", 3, 1))
    f = e.fields
    assert (f["address"], f["quantity"], f["values"], e.action) == (0x4DE, 2, [0x1B8, 0x1284], "read")
    e = one([(True, adu(4, 1, bytes.fromhex("14 0e 06 0004 0001 0002 06 0003 0009 0002"))),
             (False, adu(4, 1, bytes.fromhex("14 0c 05 06 0df8 0020 05 06 33cd 0040")))])
    assert e.fields["file_records"] == [{"file": 4, "record": 1, "length": 2, "data": [0xDF8, 0x20]},
                                        {"file": 3, "record": 9, "length": 2, "data": [0x33CD, 0x40]}]
    w = bytes.fromhex("15 0d 06 0004 0007 0003 06af 04be 100d")
    e = one([(True, adu(5, 1, w)), (False, adu(5, 1, w))])
    assert e.fields["file_records"] == [{"file": 4, "record": 7, "length": 3, "data": [0x6AF, 0x4BE, 0x100D]}]
    assert e.action == "write"


def test_status_functions() -> None:
    e = one([(True, adu(1, 1, b"\x07")), (False, adu(1, 1, b"\x07\x6d"))])
    assert (e.fields["exception_status"], e.action) == (0x6D, "diagnose")
    e = one([(True, adu(1, 1, b"\x0b")), (False, adu(1, 1, bytes.fromhex("0b ffff 0108")))])
    assert (e.fields["busy"], e.fields["event_count"]) == (True, 0x108)
    e = one([(True, adu(1, 1, b"\x0c")), (False, adu(1, 1, bytes.fromhex("0c 08 0000 0108 0121 20 00")))])
    assert (e.fields["busy"], e.fields["event_count"], e.fields["message_count"], e.fields["events"]) == \
        (False, 0x108, 0x121, [0x20, 0x00])


def test_unknown_function_code_is_kept() -> None:
    e = one(pair("5a 0002 0102", "5a 00fe", 1, 0))
    assert (e.fields["func"], e.fields["func_code"], e.action) == ("unknown-0x5a", 0x5A, "other")
    assert (e.fields["data"], e.fields["response_data"]) == ("00020102", "00fe")
    e = one(pair("5a 0002", "da 01", 1, 0))
    assert (e.fields["func"], e.fields["exception"]) == ("unknown-0x5a", "ILLEGAL_FUNCTION")


# --- malformed PDUs: weird with a reason, and the transaction still pairs -------------------------

@pytest.mark.parametrize("req,name", [
    ("03 0000 0000", "bad_quantity"),          # AP 6.3: 1..125
    ("03 0000 007e", "bad_quantity"),
    ("01 0000 07d1", "bad_quantity"),          # AP 6.1: 1..2000
    ("03 fff0 0020", "bad_address_range"),
    ("03 0000", "truncated_pdu"),
    ("03 0000 0001 00", "trailing_data"),
    ("0f 0000 0010 01 ff", "byte_count_mismatch"),
    ("10 0000 0002 02 0001", "byte_count_mismatch"),
    ("10 0000 0002 04 0001", "truncated_pdu"),
    ("17 0000 0001 0000 0002 02 0001", "byte_count_mismatch"),
    ("14 07 05 0001 0001 0001", "bad_reference_type"),
    ("2b 0e 07 00", "bad_read_device_id"),
    ("07 00", "trailing_data"),
    ("08 0000 a5", "bad_data_length"),
    ("08 000b 000000", "bad_data_length"),
])
def test_malformed_request_is_weird_and_still_pairs(req: str, name: str) -> None:
    pdu = bytes.fromhex(req)
    evs, weird = run([(True, adu(1, 1, pdu)), (False, adu(1, 1, bytes([pdu[0] | 0x80, 3])))])
    assert weird_names(weird) == [name], [w.fields for w in weird]
    assert weird[0].fields["reason"] and weird[0].origin.frames == (1,)
    [e] = evs
    assert e.fields["status"] == "paired" and e.fields["exception"] == "ILLEGAL_DATA_VALUE"


@pytest.mark.parametrize("resp,name", [
    ("03 04 0001", "truncated_pdu"),
    ("03 02 0001 0002", "byte_count_mismatch"),     # 1 register for 2 requested
    ("03 03 000100", "byte_count_mismatch"),
    ("03 04 0001 0002 00", "trailing_data"),
])
def test_malformed_response(resp: str, name: str) -> None:
    evs, weird = run(pair("03 0000 0002", resp))
    assert weird_names(weird) == [name]
    assert evs[0].fields["status"] == "paired"


# --- probe, record declaration ---------------------------------------------------------------------

def test_probe() -> None:
    req = adu(1, 1, bytes.fromhex("03 0000 0001"))
    assert modbus.probe(req, True) and modbus.probe(req + req, True)
    assert modbus.probe(adu(1, 1, b"\x81\x02"), False)
    assert not modbus.probe(req[:-1], True)                       # length must match the payload
    assert not modbus.probe(req + b"\x00", True)
    assert not modbus.probe(adu(1, 1, bytes.fromhex("03 0000 0001"), pid=1), True)
    assert not modbus.probe(adu(1, 1, bytes.fromhex("5a 0000 0001")), True)      # not a public code
    assert not modbus.probe(b"GET / HTTP/1.1\r\n\r\n", True)
    assert not modbus.probe(b"\x00\x00\x00\x00\x00\x01\x01", True)


@settings(max_examples=200, deadline=None)
@given(st.binary(min_size=8, max_size=64))
def test_probe_rejects_random_data(data: bytes) -> None:
    if modbus.probe(data, True):      # only whole MBAP PDUs with protocol id 0 may pass
        assert data[2:4] == b"\x00\x00" and struct.unpack_from("!H", data, 4)[0] + 6 <= len(data)


def test_fields_are_declared() -> None:
    from sensors.run import events_from_capture
    from tests.conftest import PCAPS, need_shared

    keys: set[str] = set()
    for p in sorted(need_shared(PCAPS / "modbus").glob("*.pcap")):
        if p.stat().st_size < 100_000:
            keys |= {k for e in events_from_capture(p) if e.kind == "modbus" for k in e.fields}
    assert keys <= set(modbus.FIELDS), keys - set(modbus.FIELDS)
    assert {"trans_id", "unit_id", "func", "identity", "exception", "sub_function"} <= keys


# --- fuzz -----------------------------------------------------------------------------------------

CORPUS = [
    (True, adu(1, 1, bytes.fromhex("03 0000 000a"))),
    (False, adu(1, 1, bytes.fromhex("03 14") + bytes(range(20)))),
    (True, adu(2, 1, bytes.fromhex("0f 0013 000a 02 cd 01"))),
    (False, adu(2, 1, bytes.fromhex("0f 0013 000a"))),
    (True, adu(3, 1, bytes.fromhex("17 0003 0002 000e 0001 02 00ff"))),
    (False, adu(3, 1, bytes.fromhex("17 04 00fe 0acd"))),
    (True, adu(4, 1, bytes.fromhex("2b 0e 01 00"))),
    (False, adu(4, 1, bytes.fromhex("2b 0e 01 81 00 00 02 00 04 41434d45 01 03 504c43"))),
    (True, adu(5, 1, bytes.fromhex("14 0e 06 0004 0001 0002 06 0003 0009 0002"))),
    (False, adu(5, 1, bytes.fromhex("14 0c 05 06 0df8 0020 05 06 33cd 0040"))),
    (True, adu(6, 1, bytes.fromhex("15 0d 06 0004 0007 0003 06af 04be 100d"))),
    (True, adu(7, 1, bytes.fromhex("08 000a 0000"))),
    (False, adu(7, 1, bytes.fromhex("88 01"))),
    (True, adu(8, 1, bytes.fromhex("18 04de"))),
    (False, adu(8, 1, bytes.fromhex("18 0006 0002 01b8 1284"))),
    (False, adu(9, 1, bytes.fromhex("11 05 2a ff 414243"))),
    (False, adu(10, 1, bytes.fromhex("0c 08 0000 0108 0121 20 00"))),
]


@st.composite
def mutated(draw) -> tuple[bool, bytes]:
    is_orig, b = draw(st.sampled_from(CORPUS))
    b = bytearray(b)
    kind = draw(st.sampled_from(["flip", "truncate", "length", "extend", "pdu_byte"]))
    if kind == "flip":
        for _ in range(draw(st.integers(1, 4))):
            i = draw(st.integers(0, len(b) - 1))
            b[i] ^= 1 << draw(st.integers(0, 7))
    elif kind == "truncate":
        b = b[:draw(st.integers(0, len(b) - 1))]
    elif kind == "length":
        struct.pack_into("!H", b, 4, draw(st.integers(0, 300)))
    elif kind == "extend":
        b += draw(st.binary(min_size=1, max_size=20))
        struct.pack_into("!H", b, 4, len(b) - 6)
    else:      # a body byte changed, the framing kept valid
        i = draw(st.integers(7, len(b) - 1))
        b[i] = draw(st.integers(0, 255))
    return is_orig, bytes(b)


def _check(evs: list[Event]) -> None:
    for e in evs:
        if e.kind == "modbus":
            assert set(e.fields) <= set(modbus.FIELDS)
            assert e.fields["status"] in ("paired", "no_response", "no_request") and e.origin.frames
            assert e.action in ("read", "write", "diagnose", "discover", "other")
        else:
            assert e.kind == "weird" and e.fields["reason"]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.booleans(), st.one_of(mutated().map(lambda c: c[1]),
                                                   st.sampled_from(CORPUS).map(lambda c: c[1]),
                                                   st.binary(max_size=80))), max_size=12),
       st.sampled_from(["tcp", "udp"]))
def test_fuzz_never_raises(chunks: list[tuple[bool, bytes]], transport: str) -> None:
    _check(feed(modbus, chunks, transport))


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(CORPUS), st.integers(1, 60))
def test_fuzz_truncated_body_is_weird(item: tuple[bool, bytes], cut: int) -> None:
    """A PDU cut short with a consistent MBAP length is a clearly malformed PDU: a weird, never silence."""
    is_orig, b = item
    body = b[7:]
    if cut >= len(body):
        return
    short = b[:4] + struct.pack("!H", len(body) - cut + 1) + b[6:7] + body[:len(body) - cut]
    if len(short) < 8:
        return
    evs = feed(modbus, [(is_orig, short)])
    _check(evs)
    assert any(e.kind == "weird" for e in evs), short.hex()


@settings(max_examples=100, deadline=None)
@given(st.sampled_from(CORPUS), st.integers(1, 0xFFFF))
def test_fuzz_bad_protocol_id_is_weird(item: tuple[bool, bytes], pid: int) -> None:
    is_orig, b = item
    evs = feed(modbus, [(is_orig, b[:2] + struct.pack("!H", pid) + b[4:])])
    assert [e.fields["name"] for e in evs if e.kind == "weird"] == ["bad_protocol_id"]
    assert not [e for e in evs if e.kind == "modbus"]
