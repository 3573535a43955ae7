"""MMS analyzer: byte-literal OSI stacks (TPKT/COTP/session/presentation/ACSE/MMS), pairing, data values,
errors, the hand-off from the S7comm analyzer on TCP 102, malformed input and fuzz."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sensors import mms, s7comm
from tests.fuzzing import feed
from tests.test_ber import encode

PORT = 102


def c(tag: int, content: bytes, cons: bool = True) -> bytes:
    """Context-specific TLV."""
    return encode(2, cons, tag, content)


def p(tag: int, content: bytes) -> bytes:
    """Context-specific primitive TLV."""
    return encode(2, False, tag, content)


def u(tag: int, content: bytes, cons: bool = False) -> bytes:
    return encode(0, cons, tag, content)


def vstr(s: str) -> bytes:
    return u(26, s.encode())


def seq(*parts: bytes) -> bytes:
    return u(16, b"".join(parts), True)


def integer(n: int) -> bytes:
    return u(2, n.to_bytes(max(1, (n.bit_length() + 8) // 8), "big", signed=True))


def dom(domain: str, item: str) -> bytes:
    """ObjectName domain-specific [1]."""
    return c(1, vstr(domain) + vstr(item))


def list_of_variable(*names: bytes) -> bytes:
    """VariableAccessSpecification [0] listOfVariable of ObjectNames."""
    return c(0, b"".join(seq(c(0, n)) for n in names))


def tpkt(cotp_and_data: bytes) -> bytes:
    return b"\x03\x00" + (4 + len(cotp_and_data)).to_bytes(2, "big") + cotp_and_data


def dt(data: bytes, eot: bool = True) -> bytes:
    return tpkt(b"\x02\xf0" + (b"\x80" if eot else b"\x00") + data)


def fully_encoded(pdu: bytes, pcid: int = 3) -> bytes:
    return encode(1, True, 1, seq(integer(pcid), c(0, pdu)))


def session_dt(pdu: bytes) -> bytes:
    """GIVE TOKENS + DATA TRANSFER SPDUs + presentation fully-encoded-data + MMS PDU."""
    return dt(b"\x01\x00\x01\x00" + fully_encoded(pdu))


def confirmed_req(invoke: int, service: bytes) -> bytes:
    return c(0, integer(invoke) + service)


def confirmed_rsp(invoke: int, service: bytes) -> bytes:
    return c(1, integer(invoke) + service)


INIT_REQ = c(
    8,
    p(0, b"\x75\x30")
    + p(1, b"\x05")
    + p(2, b"\x05")
    + p(3, b"\x04")
    + c(4, p(0, b"\x01") + p(1, b"\x05\xf1\x00") + p(2, b"\x03\xee\x1c\x00\x00\x04\x08\x00\x00\x79\xef\x18")),
)
INIT_RSP = c(
    9,
    p(0, b"\x75\x30")
    + p(1, b"\x05")
    + p(2, b"\x05")
    + p(3, b"\x04")
    + c(4, p(0, b"\x01") + p(1, b"\x05\xf1\x00") + p(2, b"\x03\xee\x1c\x00\x00\x04\x08\x00\x00\x79\xef\x18")),
)
ACSE_AS, MMS_AS, BER = b"\x52\x01\x00\x01", b"\x28\xca\x22\x02\x01", b"\x51\x01"
MMS_AC = b"\x28\xca\x22\x02\x03"


def connect(init: bytes = INIT_REQ) -> bytes:
    aarq = encode(
        1,
        True,
        0,
        c(1, u(6, MMS_AC))
        + c(2, u(6, b"\x29\x01\x02"))
        + c(3, integer(12))
        + c(6, u(6, b"\x29\x01\x01"))
        + c(7, integer(33))
        + c(30, u(8, integer(3) + c(0, init), True)),
    )
    ctxs = c(
        4, seq(integer(1), u(6, ACSE_AS), seq(u(6, BER))) + seq(integer(3), u(6, MMS_AS), seq(u(6, BER)))
    )
    cp = u(
        17,
        c(0, p(0, b"\x01"))
        + c(
            2,
            p(1, b"\x00\x00\x00\x01")
            + p(2, b"\x00\x00\x00\x02")
            + ctxs
            + encode(1, True, 1, seq(integer(1), c(0, aarq))),
        ),
        True,
    )
    params = (
        b"\x05\x06\x13\x01\x00\x16\x01\x02"
        + b"\x14\x02\x00\x02"
        + b"\x33\x02\x00\x01"
        + b"\x34\x02\x00\x02"
        + b"\xc1"
        + bytes([len(cp)])
        + cp
    )
    return dt(b"\x0d" + bytes([len(params)]) + params)


def accept(init: bytes = INIT_RSP, result: int = 0) -> bytes:
    aare = encode(
        1,
        True,
        1,
        c(1, u(6, MMS_AC))
        + c(2, integer(result))
        + c(3, c(1, integer(0)))
        + c(4, u(6, b"\x29\x01\x02"))
        + c(30, u(8, integer(3) + c(0, init), True)),
    )
    cpa = u(
        17,
        c(0, p(0, b"\x01"))
        + c(
            2,
            p(3, b"\x00\x00\x00\x02")
            + c(5, seq(p(0, b"\x00"), p(1, BER)) + seq(p(0, b"\x00"), p(1, BER)))
            + encode(1, True, 1, seq(integer(1), c(0, aare))),
        ),
        True,
    )
    params = b"\x05\x06\x13\x01\x00\x16\x01\x02" + b"\x14\x02\x00\x02" + b"\xc1" + bytes([len(cpa)]) + cpa
    return dt(b"\x0e" + bytes([len(params)]) + params)


def one(events: list, kind: str = "mms") -> list:
    return [e for e in events if e.kind == kind]


def test_association_session_presentation_acse_initiate() -> None:
    ev = feed(mms, [(True, connect()), (False, accept())], port=PORT)
    assert one(ev, "weird") == []
    [e] = one(ev)
    f = e.fields
    assert e.action == "session" and f["status"] == "paired" and list(e.origin.frames) == [1, 2]
    assert e.src.port == 40000 and f["latency"] == 1.0
    assert (f["pdu"], f["response_pdu"], f["service"]) == (
        "initiate-RequestPDU",
        "initiate-ResponsePDU",
        "initiate",
    )
    assert (f["spdu"], f["response_spdu"]) == ("CONNECT", "ACCEPT")
    assert f["session"] == {
        "extended_concatenation": False,
        "version": [2],
        "requirements": ["duplex"],
        "calling_selector": "0001",
        "called_selector": "0002",
    }
    pres = f["presentation"]
    assert pres["mode"] == "normal" and pres["calling_selector"] == "00000001"
    assert pres["contexts"] == [
        {
            "id": 1,
            "abstract_syntax": "2.2.1.0.1",
            "abstract_syntax_name": "acse",
            "transfer_syntaxes": ["2.1.1"],
        },
        {
            "id": 3,
            "abstract_syntax": "1.0.9506.2.1",
            "abstract_syntax_name": "mms",
            "transfer_syntaxes": ["2.1.1"],
        },
    ]
    assert f["response_presentation"]["context_results"] == ["acceptance", "acceptance"]
    assert f["acse"] == {
        "apdu": "AARQ",
        "application_context": "1.0.9506.2.3",
        "application_context_name": "mms-application-context",
        "called_ap_title": "1.1.1.2",
        "called_ae_qualifier": 12,
        "calling_ap_title": "1.1.1.1",
        "calling_ae_qualifier": 33,
    }
    assert (
        f["response_acse"]["result"] == "accepted" and f["response_acse"]["responding_ap_title"] == "1.1.1.2"
    )
    assert f["response_acse"]["diagnostic"] == "null"
    assert (f["local_detail_calling"], f["local_detail_called"]) == (30000, 30000)
    assert (f["max_serv_outstanding_calling"], f["max_serv_outstanding_called"], f["nesting_level"]) == (
        5,
        5,
        4,
    )
    assert (f["negotiated_max_serv_outstanding_calling"], f["negotiated_nesting_level"]) == (5, 4)
    assert f["version"] == 1 and f["negotiated_version"] == 1
    assert f["negotiated_parameter_cbb"] == f["parameter_cbb"]
    assert f["parameter_cbb"] == ["str1", "str2", "vnam", "valt", "vlis"]  # 0xf1: bits 0-3 and 7
    calling = f["services_supported_calling"]
    # 0xee 0x1c ...: bits 0-2, 4-6 set, 3 (rename) clear; last octet 0x18 with 3 unused bits: 83, 84
    assert calling[:6] == [
        "status",
        "getNameList",
        "identify",
        "read",
        "write",
        "getVariableAccessAttributes",
    ]
    assert "fileOpen" in calling and "informationReport" in calling and "eventNotification" not in calling
    assert calling[-2:] == ["conclude", "cancel"] and len(calling) == 25  # popcount of the octets
    assert f["services_supported_called"] == calling


def test_association_rejected_by_acse() -> None:
    ev = feed(mms, [(True, connect()), (False, accept(result=1))], port=PORT)
    [e] = one(ev)
    assert e.fields["response_acse"]["result"] == "rejected-permanent"


def test_read_points_and_access_errors() -> None:
    req = confirmed_req(
        7,
        c(
            4,
            c(
                1,
                list_of_variable(
                    dom("IED1LD0", "LLN0$ST$Mod$stVal"),
                    dom("IED1LD0", "MMXU1$MX$TotW$mag$f"),
                    p(0, b"missing"),
                ),
            ),
        ),
    )
    data = c(1, p(5, b"\x01") + p(4, b"\x06\x40")) + c(2, p(7, b"\x08\x42\xf6\xe6\x66")) + p(0, b"\x0a")
    rsp = confirmed_rsp(7, c(4, c(1, data)))
    ev = feed(mms, [(True, session_dt(req)), (False, session_dt(rsp))], port=PORT)
    [e] = one(ev)
    f = e.fields
    assert e.action == "read" and f["status"] == "paired" and f["invoke_id"] == 7 and f["service"] == "read"
    assert f["variables"] == ["IED1LD0/LLN0$ST$Mod$stVal", "IED1LD0/MMXU1$MX$TotW$mag$f", "missing"]
    assert f["points"] == [
        {"ref": "IED1LD0/LLN0$ST$Mod$stVal.0", "value": 1, "type": "integer"},
        {"ref": "IED1LD0/LLN0$ST$Mod$stVal.1", "value": "01", "type": "bit-string"},
        {"ref": "IED1LD0/MMXU1$MX$TotW$mag$f.0", "value": 123.45, "type": "floating-point"},
    ]
    assert f["access_errors"] == [{"ref": "missing", "error": "object-non-existent"}]
    assert f["result_types"] == ["array", "structure", "failure"] and f["context_id"] == 3


def test_write_and_write_response() -> None:
    spec = list_of_variable(dom("IED1LD0", "CSWI1$CO$Pos$Oper"), dom("IED1LD0", "X"))
    req = confirmed_req(9, c(5, spec + c(0, c(2, p(3, b"\xff") + p(6, b"\x00\x80")) + p(10, b"on"))))
    rsp = confirmed_rsp(9, c(5, p(1, b"") + p(0, b"\x03")))
    [e] = one(feed(mms, [(True, session_dt(req)), (False, session_dt(rsp))], port=PORT))
    f = e.fields
    assert e.action == "write" and f["service"] == "write"
    assert f["points"] == [
        {"ref": "IED1LD0/CSWI1$CO$Pos$Oper.0", "value": True, "type": "boolean"},
        {"ref": "IED1LD0/CSWI1$CO$Pos$Oper.1", "value": 128, "type": "unsigned"},
        {"ref": "IED1LD0/X", "value": "on", "type": "visible-string"},
    ]
    assert f["write_results"] == ["success", "object-access-denied"]


def test_get_name_list_identify_identity() -> None:
    gnl = confirmed_req(1, c(1, c(0, p(0, b"\x09")) + c(1, p(1, b"IED1LD0")) + p(2, b"LLN0")))
    gnl_rsp = confirmed_rsp(1, c(1, c(0, vstr("LLN0$ST") + vstr("LPHD1")) + p(1, b"\x00")))
    ident = confirmed_req(2, p(2, b""))
    ident_rsp = confirmed_rsp(2, c(2, p(0, b"ACME") + p(1, b"IED-9000") + p(2, b"4.2.1")))
    ev = one(
        feed(
            mms,
            [
                (True, session_dt(gnl)),
                (False, session_dt(gnl_rsp)),
                (True, session_dt(ident)),
                (False, session_dt(ident_rsp)),
            ],
            port=PORT,
        )
    )
    g, i = ev
    assert g.action == "discover" and g.fields["object_class"] == "domain"
    assert (g.fields["object_scope"], g.fields["domain"], g.fields["continue_after"]) == (
        "domainSpecific",
        "IED1LD0",
        "LLN0",
    )
    assert g.fields["identifiers"] == ["LLN0$ST", "LPHD1"] and g.fields["more_follows"] is False
    assert i.action == "discover" and i.fields["service"] == "identify"
    assert i.fields["identity"] == {"vendor": "ACME", "model": "IED-9000", "firmware": "4.2.1"}
    assert "identity_of" not in i.fields  # default "dst": the server that answered
    assert i.dst.port == PORT


def test_error_pdu_and_reject_and_unmatched() -> None:
    req = confirmed_req(4, c(6, c(0, dom("LD", "X"))))
    err = c(2, p(0, b"\x04") + c(2, c(0, p(7, b"\x02"))))
    bad = confirmed_req(5, p(2, b""))
    rej = c(4, p(0, b"\x05") + p(1, b"\x01"))
    lost = confirmed_req(6, p(2, b""))
    stray = confirmed_rsp(99, p(2, b""))
    ev = one(
        feed(
            mms,
            [
                (True, session_dt(req)),
                (False, session_dt(err)),
                (True, session_dt(bad)),
                (False, session_dt(rej)),
                (True, session_dt(lost)),
                (False, session_dt(stray)),
            ],
            port=PORT,
        )
    )
    by_id = {e.fields.get("invoke_id"): e for e in ev}
    e = by_id[4]
    assert e.fields["response_pdu"] == "confirmed-ErrorPDU" and e.action == "discover"
    assert (e.fields["error_class"], e.fields["error_code"]) == ("access", "object-non-existent")
    assert e.fields["variables"] == ["LD/X"] and e.fields["status"] == "paired"
    r = by_id[5]
    assert r.fields["response_pdu"] == "rejectPDU" and r.fields["reject_type"] == "confirmed-requestPDU"
    assert r.fields["reject_reason"] == "unrecognized-service" and list(r.origin.frames) == [3, 4]
    assert by_id[6].fields["status"] == "no_response" and list(by_id[6].origin.frames) == [5]
    assert by_id[99].fields["status"] == "no_request" and by_id[99].src.port == 40000  # src = requester side


def test_information_report_one_way_points() -> None:
    rpt = c(
        3,
        c(
            0,
            c(1, dom("IED1LD0", "LLN0$BR$brcb01"))
            + c(0, p(10, b"RPT1") + p(3, b"\x00") + p(17, b"\x5f\x00\x00\x00\x80\x00\x00\x0a")),
        ),
    )
    [e] = one(feed(mms, [(False, session_dt(rpt))], port=PORT))
    f = e.fields
    assert e.action == "read" and f["status"] == "one_way" and f["service"] == "informationReport"
    assert e.src.port == PORT and f["variable_list"] == "IED1LD0/LLN0$BR$brcb01"
    assert f["points"] == [
        {"ref": "IED1LD0/LLN0$BR$brcb01[0]", "value": "RPT1", "type": "visible-string"},
        {"ref": "IED1LD0/LLN0$BR$brcb01[1]", "value": False, "type": "boolean"},
        {"ref": "IED1LD0/LLN0$BR$brcb01[2]", "value": "2020-07-04T04:05:20.500000Z", "type": "utc-time"},
    ]


def test_program_control_file_services() -> None:
    chunks = [
        (True, session_dt(confirmed_req(1, c(26, p(0, b"PROG1") + c(1, vstr("cap")) + p(2, b"\x00"))))),
        (True, session_dt(confirmed_req(2, c(41, p(0, b"PI1"))))),
        (
            True,
            session_dt(confirmed_req(3, c(72, c(0, u(25, b"COMTRADE") + u(25, b"a.cfg")) + p(1, b"\x00")))),
        ),
        (False, session_dt(confirmed_rsp(3, c(72, p(0, b"\x07") + c(1, p(0, b"\x01\x00")))))),
        (True, session_dt(confirmed_req(4, encode(2, False, 73, b"\x07")))),
        (False, session_dt(confirmed_rsp(4, encode(2, True, 73, p(0, b"abc") + p(1, b"\x00"))))),
        (True, session_dt(confirmed_req(5, encode(2, True, 76, u(25, b"old.bin"))))),
        (True, session_dt(confirmed_req(6, encode(2, True, 46, c(1, u(25, b"a")) + c(2, u(25, b"b")))))),
    ]
    ev = {e.fields["invoke_id"]: e for e in one(feed(mms, chunks, port=PORT))}
    assert (ev[1].action, ev[1].fields["service"], ev[1].fields["name"]) == (
        "program",
        "initiateDownloadSequence",
        "PROG1",
    )
    assert ev[1].fields["capabilities"] == ["cap"] and ev[1].fields["sharable"] is False
    assert (ev[2].action, ev[2].fields["service"], ev[2].fields["name"]) == ("control", "stop", "PI1")
    assert ev[3].fields["file"] == "COMTRADE/a.cfg" and ev[3].fields["frsm_id"] == 7
    assert ev[3].fields["file_size"] == 256 and ev[3].action == "read"
    assert ev[4].fields["service"] == "fileRead" and ev[4].fields["file_data_bytes"] == 3
    assert ev[4].fields["more_follows"] is False
    assert (ev[5].action, ev[5].fields["service"], ev[5].fields["file"]) == ("write", "fileDelete", "old.bin")
    assert (ev[6].fields["service"], ev[6].fields["file"], ev[6].fields["new_file"]) == (
        "obtainFile",
        "a",
        "b",
    )


def test_release_conclude_and_abort() -> None:
    rlrq = encode(1, True, 2, p(0, b"\x00"))
    ud = encode(1, True, 1, seq(integer(1), c(0, rlrq)) + seq(integer(3), c(0, p(11, b""))))
    finish = dt(b"\x09" + bytes([2 + len(ud)]) + b"\xc1" + bytes([len(ud)]) + ud)
    rlre = encode(1, True, 3, p(0, b"\x00"))
    ud2 = encode(1, True, 1, seq(integer(1), c(0, rlre)) + seq(integer(3), c(0, p(12, b""))))
    disc = dt(b"\x0a" + bytes([2 + len(ud2)]) + b"\xc1" + bytes([len(ud2)]) + ud2)
    abort = dt(b"\x19\x03\x11\x01\x03")
    ev = one(feed(mms, [(True, finish), (False, disc), (True, abort)], port=PORT))
    rel, ab = ev
    assert (
        rel.action == "session" and rel.fields["service"] == "conclude" and rel.fields["status"] == "paired"
    )
    assert (rel.fields["spdu"], rel.fields["response_spdu"]) == ("FINISH", "DISCONNECT")
    assert rel.fields["acse"] == {"apdu": "RLRQ", "reason": "normal"}
    assert rel.fields["response_acse"] == {"apdu": "RLRE", "reason": "normal"}
    assert rel.fields["response_pdu"] == "conclude-ResponsePDU"
    assert ab.fields["spdu"] == "ABORT" and ab.fields["status"] == "one_way"
    assert ab.fields["session"] == {"transport_disconnect": "kept", "user_abort": True}


def test_mms_without_session_layer() -> None:
    """Some stacks (and the mms-* captures) put MMS PDUs straight into COTP."""
    ev = one(feed(mms, [(True, dt(INIT_REQ)), (False, dt(INIT_RSP))], port=PORT))
    [e] = ev
    assert e.fields["status"] == "paired" and "spdu" not in e.fields and e.fields["nesting_level"] == 4


def test_cotp_and_tcp_segmentation_keeps_frames() -> None:
    req = session_dt(confirmed_req(3, c(4, c(1, list_of_variable(dom("LD", "A"))))))
    body = req[7:]
    seg1 = dt(body[:10], eot=False)
    seg2 = dt(body[10:])
    stream = seg1 + seg2
    rsp = session_dt(confirmed_rsp(3, c(4, c(1, p(5, b"\x2a")))))
    ev = one(
        feed(mms, [(True, stream[:5]), (True, stream[5:20]), (True, stream[20:]), (False, rsp)], port=PORT)
    )
    [e] = ev
    assert list(e.origin.frames) == [1, 2, 3, 4] and e.fields["points"] == [
        {"ref": "LD/A", "value": 42, "type": "integer"}
    ]


def test_hand_off_from_s7comm_on_port_102() -> None:
    cr = tpkt(b"\x11\xe0\x00\x00\x00\x06\x00\xc1\x02\x00\x01\xc2\x02\x00\x01\xc0\x01\x0a")
    cc = tpkt(b"\x11\xd0\x00\x06\x00\x04\x00\xc1\x02\x00\x01\xc2\x02\x00\x01\xc0\x01\x0a")
    ev = feed(s7comm, [(True, cr), (False, cc), (True, connect()), (False, accept())], port=PORT)
    assert [e.kind for e in ev if e.kind != "weird"] == ["cotp", "mms"]
    assert not [e for e in ev if e.kind == "weird"]
    e = one(ev)[0]
    assert (
        e.fields["service"] == "initiate"
        and e.fields["status"] == "paired"
        and list(e.origin.frames) == [3, 4]
    )


def test_malformed_input_is_weird() -> None:
    cases = [
        session_dt(b"\xa0\x05\x02\x01"),  # MMS TLV cut short
        dt(b"\x0d\x30\x05\x06"),  # CONNECT shorter than its LI
        dt(b"\x01\x00\x01\x00\x61\x03\x30\x01"),  # presentation data cut short
        dt(b"\x77\x00"),  # unknown SPDU
        session_dt(c(0, integer(1) + c(4, p(9, b"")))),  # read without access spec
        b"\x04\x00\x00\x09garbage",  # not TPKT
    ]
    for data in cases:
        ev = feed(mms, [(True, data)], port=PORT)
        assert [e for e in ev if e.kind == "weird"], data.hex()


VALID = [
    connect(),
    accept(),
    session_dt(confirmed_req(7, c(4, c(1, list_of_variable(dom("A", "B")))))),
    session_dt(confirmed_rsp(7, c(4, c(1, c(2, p(7, b"\x08\x42\xf6\xe6\x66") + p(3, b"\x01")))))),
    session_dt(c(3, c(0, c(1, dom("A", "B")) + c(0, p(5, b"\x01"))))),
]


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(0, len(VALID) - 1), st.data())
def test_fuzz_mutated_pdus(i: int, data: st.DataObject) -> None:
    b = bytearray(VALID[i])
    op = data.draw(st.sampled_from(["flip", "truncate", "length", "random"]))
    if op == "flip":
        for _ in range(data.draw(st.integers(1, 4))):
            pos = data.draw(st.integers(0, len(b) - 1))
            b[pos] ^= 1 << data.draw(st.integers(0, 7))
    elif op == "truncate":
        b = b[: data.draw(st.integers(0, len(b)))]
    elif op == "length":
        pos = data.draw(st.integers(7, len(b) - 1))
        b[pos] = data.draw(st.integers(0, 255))
    else:
        b = bytearray(b[:7] + data.draw(st.binary(max_size=200)))
    feed(mms, [(True, bytes(b)), (False, bytes(b))], port=PORT)  # must not raise (DEBUG is on)


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_random_bytes(raw: bytes) -> None:
    feed(mms, [(True, raw), (False, dt(raw)), (True, session_dt(raw))], port=PORT)


def test_ber_as_oid() -> None:
    """sensors.ber.as_oid (added for the presentation/ACSE object identifiers)."""
    from sensors import ber

    assert ber.as_oid(b"\x28\xca\x22\x02\x03") == "1.0.9506.2.3"
    assert ber.as_oid(b"\x52\x01\x00\x01") == "2.2.1.0.1"
    assert ber.as_oid(b"\x88\x37\x01") == "2.999.1"
    for bad in (b"", b"\x28\xca"):
        try:
            ber.as_oid(bad)
        except ber.BerError:
            continue
        raise AssertionError(bad)
