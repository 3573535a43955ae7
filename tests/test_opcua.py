"""OPC UA Binary: byte-literal cases, peer comparison with tshark and ICSNPP Zeek baselines, fuzz."""

from __future__ import annotations

import struct
from collections import Counter, defaultdict
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sensors import opcua
from sensors.run import events_from_capture
from tests.conftest import PCAPS, need_shared
from tests.fuzzing import feed
from tests.peers import tshark_fields

FOLDER = PCAPS / "opcua"
CAPTURES = [
    "open62541_client-server_encrypted.pcap",
    "open62541_client-server_mainloop-no-handshake.pcap",
    "open62541_client-server_mainloop.pcap",
    "open62541_create_monitored_items.pcap",
    "python_opcua-client-server_minimal.pcap",
]


# ---------------------------------------------------------------------- builders (Part 6 encoding)
def s(text: str | None) -> bytes:
    if text is None:
        return struct.pack("<i", -1)
    b = text.encode()
    return struct.pack("<i", len(b)) + b


def nid4(ident: int) -> bytes:
    return b"\x01\x00" + struct.pack("<H", ident)


def msg(mtype: bytes, body: bytes, chunk: bytes = b"F") -> bytes:
    return mtype + chunk + struct.pack("<I", 8 + len(body)) + body


def req_header(handle: int) -> bytes:
    # authToken i=0, timestamp, handle, returnDiagnostics, auditEntryId, timeoutHint, additionalHeader
    return b"\x00\x00" + struct.pack("<qII", 0, handle, 0) + s(None) + struct.pack("<I", 0) + b"\x00\x00\x00"


def resp_header(handle: int, status: int = 0) -> bytes:
    return struct.pack("<qII", 0, handle, status) + b"\x00" + struct.pack("<i", -1) + b"\x00\x00\x00"


def sym(mtype: bytes, rid: int, body: bytes, chunk: bytes = b"F", cid: int = 5) -> bytes:
    return msg(mtype, struct.pack("<IIII", cid, 1, rid, rid) + body, chunk)


def opn(policy: str, body: bytes, cid: int = 0) -> bytes:
    return msg(
        b"OPN",
        struct.pack("<I", cid)
        + s(opcua.POLICY_PREFIX + policy)
        + s(None)
        + s(None)
        + struct.pack("<II", 1, 1)
        + body,
    )


def read_value_id(node: bytes, attr: int = 13) -> bytes:
    return node + struct.pack("<I", attr) + s(None) + b"\x00\x00" + s(None)


def string_node(ns: int, text: str) -> bytes:
    return b"\x03" + struct.pack("<H", ns) + s(text)


def variant_i32(v: int) -> bytes:
    return b"\x06" + struct.pack("<i", v)


def opcua_events(chunks: list[tuple[bool, bytes]]) -> list:
    return [e for e in feed(opcua, chunks) if e.kind == "opcua"]


HELLO = msg(b"HEL", struct.pack("<IIIII", 0, 65536, 65536, 0, 0) + s("opc.tcp://plc:4840"))
ACK = msg(b"ACK", struct.pack("<IIIII", 0, 8192, 8192, 0, 0))
OPN_REQ = opn(
    "None", nid4(446) + req_header(1) + struct.pack("<III", 0, 0, 1) + s(None) + struct.pack("<I", 600000)
)
OPN_RESP = opn(
    "None", nid4(449) + resp_header(1) + struct.pack("<IIIqI", 0, 5, 7, 0, 600000) + s(None), cid=5
)


# ---------------------------------------------------------------------- byte-literal cases
def test_hello_ack_paired() -> None:
    (ev,) = opcua_events([(True, HELLO), (False, ACK)])
    f = ev.fields
    assert ev.action == "session" and f["status"] == "paired" and ev.origin.frames == (1, 2)
    assert f["endpoint_url"] == "opc.tcp://plc:4840" and f["receive_buffer_size"] == 65536
    assert f["ack_receive_buffer_size"] == 8192


def test_open_secure_channel_none() -> None:
    (ev,) = opcua_events([(True, OPN_REQ), (False, OPN_RESP)])
    f = ev.fields
    assert f["msg_type"] == "OPN" and f["security_policy"] == "None" and f["security_mode"] == "None"
    assert f["request_type"] == "issue" and f["secure_channel_id"] == 5 and f["token_id"] == 7
    assert f["revised_lifetime"] == 600000 and f["status"] == "paired"
    assert f["sender_certificate"] is False


def test_read_pairs_and_makes_points() -> None:
    read = sym(
        b"MSG",
        9,
        nid4(631)
        + req_header(3)
        + struct.pack("<dI", 0.0, 0)
        + struct.pack("<i", 2)
        + read_value_id(string_node(2, "Tag1"))
        + read_value_id(b"\x01\x00\xd5\x08"),
    )  # i=2261
    # DataValue 1: value Double 21.5 + status Good; DataValue 2: String "PLC-X"
    resp = sym(
        b"MSG",
        9,
        nid4(634)
        + resp_header(3)
        + struct.pack("<i", 2)
        + b"\x03\x0b"
        + struct.pack("<d", 21.5)
        + struct.pack("<I", 0)
        + b"\x01\x0c"
        + s("PLC-X")
        + struct.pack("<i", -1),
    )
    (ev,) = opcua_events([(True, OPN_REQ), (False, OPN_RESP), (True, read), (False, resp)][2:])
    f = ev.fields
    assert ev.action == "read" and f["service"] == "ReadRequest" and f["response"] == "ReadResponse"
    assert [n["node_id"] for n in f["nodes"]] == ["ns=2;s=Tag1", "i=2261"]
    assert f["points"][0] == {"ref": "ns=2;s=Tag1", "value": 21.5, "type": "Double", "quality": "Good"}
    assert f["points"][1]["value"] == "PLC-X"
    assert f["identity"] == {"product": "PLC-X"}
    assert f["request_handle"] == 3 and f["service_result_name"] == "Good" and f["status"] == "paired"


def test_write_value_array_and_status() -> None:
    arr = b"\x86" + struct.pack("<i", 3) + b"".join(struct.pack("<i", v) for v in (1, 2, 3))
    write = sym(
        b"MSG",
        4,
        nid4(673)
        + req_header(4)
        + struct.pack("<i", 1)
        + string_node(1, "Setpoint")
        + struct.pack("<I", 13)
        + s(None)
        + b"\x01"
        + arr,
    )
    resp = sym(
        b"MSG", 4, nid4(676) + resp_header(4) + struct.pack("<iI", 1, 0x803B0000) + struct.pack("<i", -1)
    )
    (ev,) = opcua_events([(True, write), (False, resp)])
    f = ev.fields
    assert ev.action == "write" and f["results"] == ["BadNotWritable"]
    assert [p["ref"] for p in f["points"]] == [
        "ns=1;s=Setpoint[0]",
        "ns=1;s=Setpoint[1]",
        "ns=1;s=Setpoint[2]",
    ]
    assert [p["value"] for p in f["points"]] == [1, 2, 3]


def test_publish_data_change_names_monitored_node() -> None:
    """CreateMonitoredItems maps client handles to nodes, so Publish notifications become points."""
    item = (
        read_value_id(string_node(2, "Temp"))
        + struct.pack("<IIdd", 2, 7, 100.0, 0)[:-8]
        + b"\x00\x00\x00"
        + struct.pack("<I", 1)
        + b"\x01"
    )
    cmi = sym(b"MSG", 20, nid4(751) + req_header(20) + struct.pack("<IIi", 1, 0, 1) + item)
    cmi_resp = sym(
        b"MSG",
        20,
        nid4(754)
        + resp_header(20)
        + struct.pack("<i", 1)
        + struct.pack("<IIdI", 0, 99, 100.0, 1)
        + b"\x00\x00\x00"
        + struct.pack("<i", -1),
    )
    notif = struct.pack("<iI", 1, 7) + b"\x01\x0a" + struct.pack("<f", 3.5) + struct.pack("<i", -1)
    ext = nid4(811) + b"\x01" + struct.pack("<i", len(notif)) + notif
    pub = sym(b"MSG", 21, nid4(826) + req_header(21) + struct.pack("<i", 0))
    pub_resp = sym(
        b"MSG",
        21,
        nid4(829)
        + resp_header(21)
        + struct.pack("<Ii", 1, -1)
        + b"\x00"
        + struct.pack("<Iqi", 1, 0, 1)
        + ext
        + struct.pack("<ii", -1, -1),
    )
    evs = opcua_events([(True, cmi), (False, cmi_resp), (True, pub), (False, pub_resp)])
    assert evs[0].fields["monitored_items"] == [{"status": "Good", "monitored_item_id": 99}]
    assert evs[0].fields["nodes"][0]["client_handle"] == 7
    assert evs[1].fields["points"] == [{"ref": "ns=2;s=Temp", "value": 3.5, "type": "Float"}]


def test_activate_session_username_never_stores_password() -> None:
    token = s("pol") + s("operator") + s("s3cret-pw") + s(None)
    ext = nid4(324) + b"\x01" + struct.pack("<i", len(token)) + token
    body = (
        nid4(467) + req_header(5) + s(None) + s(None) + struct.pack("<ii", -1, -1) + ext + s(None) + s(None)
    )
    (ev,) = opcua_events([(True, sym(b"MSG", 5, body))])
    f = ev.fields
    assert (
        f["user_token_type"] == "UserName" and f["user_name"] == "operator" and f["password_present"] is True
    )
    assert "s3cret-pw" not in ev.to_json()
    assert f["status"] == "no_response"


def test_chunked_request_is_reassembled() -> None:
    body = (
        nid4(712)
        + req_header(6)
        + struct.pack("<i", 1)
        + b"\x00\x55"
        + string_node(1, "Start")
        + struct.pack("<i", 1)
        + variant_i32(42)
    )
    c1, c2 = sym(b"MSG", 11, body[:10], b"C"), sym(b"MSG", 11, body[10:])
    resp = sym(b"MSG", 11, nid4(715) + resp_header(6) + struct.pack("<i", 0) + struct.pack("<i", -1))
    (ev,) = opcua_events([(True, c1), (True, c2), (False, resp)])
    f = ev.fields
    assert ev.action == "control" and f["chunks"] == 2 and ev.origin.frames == (1, 2, 3)
    assert f["methods"] == [{"object_id": "i=85", "method_id": "ns=1;s=Start", "input_arguments": [42]}]


def test_encrypted_channel_header_only() -> None:
    enc_opn = msg(
        b"OPN",
        struct.pack("<I", 0)
        + s(opcua.POLICY_PREFIX + "Basic256Sha256")
        + s("CERT")
        + s("THUMB-20-bytes......")
        + bytes(range(200)),
    )
    enc_msg = msg(b"MSG", struct.pack("<II", 9, 2) + bytes(range(7, 107)))
    evs = opcua_events([(True, enc_opn), (True, enc_msg)])
    assert evs[0].fields["msg_type"] == "MSG" and evs[0].fields["encrypted"] is True
    assert "service" not in evs[0].fields and evs[0].fields["secure_channel_id"] == 9
    assert evs[1].fields["security_policy"] == "Basic256Sha256" and evs[1].fields["encrypted"] is True
    assert evs[1].fields["sender_certificate"] is True and evs[1].fields["status"] == "no_response"


def test_error_and_service_fault() -> None:
    err = msg(b"ERR", struct.pack("<I", 0x807E0000) + s("bad type"))
    (ev,) = opcua_events([(True, HELLO), (False, err)])
    assert ev.fields["error_name"] == "BadTcpMessageTypeInvalid" and ev.fields["reason"] == "bad type"
    fault = sym(b"MSG", 3, nid4(397) + resp_header(1, 0x80340000))
    read = sym(b"MSG", 3, nid4(631) + req_header(1) + struct.pack("<dI", 0.0, 0) + struct.pack("<i", 0))
    (ev,) = opcua_events([(True, read), (False, fault)])
    assert ev.action == "read" and ev.fields["response"] == "ServiceFault"
    assert ev.fields["service_result_name"] == "BadNodeIdUnknown"


def test_garbage_and_truncation_are_weird() -> None:
    evs = feed(opcua, [(True, b"GET / HTTP/1.1\r\n\r\n")])
    assert [e.fields["name"] for e in evs if e.kind == "weird"] == ["bad_message_header"]
    bad = sym(b"MSG", 1, nid4(631) + b"\x00")  # ReadRequest cut inside its header
    evs = feed(opcua, [(True, bad)])
    assert [e.fields["name"] for e in evs if e.kind == "weird"] == ["malformed_message"]
    (ev,) = [e for e in evs if e.kind == "opcua"]  # what was decoded still makes the event
    assert ev.fields["service"] == "ReadRequest" and "truncated" in ev.fields["malformed"]
    evs = feed(opcua, [(True, HELLO[:20])])
    assert [e.fields["name"] for e in evs if e.kind == "weird"] == ["truncated_message"]


def test_probe() -> None:
    assert opcua.probe(HELLO, True) and opcua.probe(OPN_REQ, True)
    assert not opcua.probe(b"HELX\x00\x00\x00\x00", True) and not opcua.probe(b"\x16\x03\x01\x02\x00", True)


def test_unknown_status_code_name() -> None:
    assert opcua.status_name(0x80FF0000) == "unknown-0x80ff0000"
    assert opcua.status_name(0x80340000) == "BadNodeIdUnknown"


# ---------------------------------------------------------------------- peer: tshark
_TS_FIELDS = [
    "opcua.transport.type",
    "opcua.transport.scid",
    "opcua.security.tokenid",
    "opcua.security.seq",
    "opcua.security.rqid",
    "opcua.servicenodeid.numeric",
    "opcua.security.spu",
    "opcua.RequestHandle",
    "opcua.ServiceResult",
    "opcua.transport.endpoint",
    "opcua.transport.rbs",
    "opcua.UserName",
    "opcua.nodeid.string",
    "opcua.SecurityTokenRequestType",
    "opcua.MessageSecurityMode",
    "opcua.RevisedLifetime",
    "opcua.AttributeId",
    "opcua.Int32",
    "opcua.String",
]


def _ours_by_frame(events: list) -> dict[int, Counter]:
    """The message-level facts our events claim for each frame (request at its first frame, response
    at its last), in the same shape as the tshark rows."""
    out: dict[int, Counter] = defaultdict(Counter)
    for e in events:
        f, fr = e.fields, e.origin.frames
        first, last = fr[0], fr[-1]
        mt = f["msg_type"]
        if mt == "HEL":
            if f["status"] != "no_request":
                out[first].update(
                    {("type", "HEL"), ("endpoint", f["endpoint_url"]), ("rbs", str(f["receive_buffer_size"]))}
                )
            if f["status"] in ("paired", "no_request"):
                out[last].update({("type", "ACK"), ("rbs", str(f["ack_receive_buffer_size"]))})
            continue
        if f.get("encrypted"):
            if mt == "OPN":
                out[first][("spu", f["security_policy_uri"])] += 1
                out[first][("type", "OPN")] += 1
                if f["status"] == "paired":  # the response repeats the request's policy
                    out[last].update({("type", "OPN"), ("spu", f["security_policy_uri"])})
            else:
                out[first].update(
                    {("type", mt), ("scid", str(f["secure_channel_id"])), ("token", str(f["token_id"]))}
                )
            continue
        req = f["status"] != "no_request"
        resp = f["status"] in ("paired", "no_request")
        if req:
            c = out[first]
            c.update({("type", mt), ("rqid", str(f["request_id"])), ("seq", str(f["seq"]))})
            c[("svc", str(f["service_id"]))] += 1
            if "request_handle" in f:
                c[("handle", str(f["request_handle"]))] += 1
            if mt == "OPN":
                c[("spu", f["security_policy_uri"])] += 1
                c[("reqtype", {"issue": "0", "renew": "1"}[f["request_type"]])] += 1
                c[("mode", {"None": "1", "Sign": "2", "SignAndEncrypt": "3"}[f["security_mode"]])] += 1
            else:
                c.update({("scid", str(f["secure_channel_id"])), ("token", str(f["token_id"]))})
            for n in f.get("nodes", ()) if f.get("service") in ("ReadRequest", "WriteRequest") else ():
                if ";s=" in n["node_id"]:
                    c[("nodestr", n["node_id"].split(";s=", 1)[1])] += 1
            attr_code = {v: k for k, v in opcua.ATTRIBUTES.items()}
            svc = f.get("service")
            if svc in ("ReadRequest", "WriteRequest"):
                for n in f.get("nodes", ()):
                    c[("attr", str(attr_code[n["attribute"]]))] += 1
            for n in f.get("nodes", ()) if svc == "WriteRequest" else ():     # written Variant values
                if n.get("type") in ("Int32", "String"):
                    c[(n["type"], str(n["value"]))] += 1
            for m in f.get("methods", ()):                                   # Call input arguments
                for arg in m["input_arguments"]:
                    c[("Int32" if isinstance(arg, int) else "String", str(arg))] += 1
            if f.get("user_name"):
                c[("user", f["user_name"])] += 1
        if resp and mt != "CLO":
            c = out[last]
            c.update(
                {("type", mt), ("rqid", str(f["request_id"])), ("seq", str(f.get("response_seq", f["seq"])))}
            )
            if mt == "MSG":
                c.update({("scid", str(f["secure_channel_id"])), ("token", str(f["token_id"]))})
            for ep in f.get("endpoints", ()):
                c[("mode", {"None": "1", "Sign": "2", "SignAndEncrypt": "3"}[ep["security_mode"]])] += 1
            if f.get("response_id", f.get("service_id")) is not None:
                c[("svc", str(f.get("response_id", f.get("service_id"))))] += 1
            c[("handle", str(f["response_handle"]))] += 1
            c[("result", f"0x{f['service_result']:08x}")] += 1
            if mt == "OPN":
                c[("spu", f["security_policy_uri"])] += 1
                c[("lifetime", str(f["revised_lifetime"]))] += 1
    return out


def _tshark_by_frame(rows: list[dict[str, list[str]]]) -> dict[int, Counter]:
    out: dict[int, Counter] = defaultdict(Counter)
    keys = {
        "opcua.transport.type": "type",
        "opcua.security.rqid": "rqid",
        "opcua.security.seq": "seq",
        "opcua.servicenodeid.numeric": "svc",
        "opcua.RequestHandle": "handle",
        "opcua.ServiceResult": "result",
        "opcua.security.spu": "spu",
        "opcua.transport.endpoint": "endpoint",
        "opcua.transport.rbs": "rbs",
        "opcua.UserName": "user",
        "opcua.SecurityTokenRequestType": "reqtype",
        "opcua.MessageSecurityMode": "mode",
        "opcua.RevisedLifetime": "lifetime",
    }
    for row in rows:
        fr = int(row["frame.number"][0])
        c = out[fr]
        types = row["opcua.transport.type"]
        for col, k in keys.items():
            for v in row[col]:
                c[(k, str(int(v, 0)) if k in ("reqtype", "mode") else v)] += 1
        # scid/token: only where the symmetric header carries them (MSG/CLO; OPN response scid is
        # compared through the body's channel id of OPN events elsewhere).
        if all(t in ("MSG", "CLO") for t in types):
            for v in row["opcua.transport.scid"]:
                c[("scid", v)] += 1
            for v in row["opcua.security.tokenid"]:
                c[("token", v)] += 1
        svcs = row["opcua.servicenodeid.numeric"]
        # Node id strings of Read/Write requests (the authentication token is a GUID, not a string).
        if any(v in ("631", "673") for v in svcs):
            for v in row["opcua.nodeid.string"]:
                c[("nodestr", v)] += 1
        # AttributeIds of Read/Write. (In CreateMonitoredItems tshark also lists those inside event
        # filters' select clauses, which we do not decode: not compared there.)
        if any(v in ("631", "673") for v in svcs):
            for v in row["opcua.AttributeId"]:
                c[("attr", str(int(v, 16)))] += 1
        # Variant values (Int32/String) of Write and Call requests.
        if any(v in ("673", "712") for v in svcs):
            for typ in ("Int32", "String"):
                for v in row[f"opcua.{typ}"]:
                    c[(typ, v)] += 1
    return out


@pytest.mark.parametrize("name", CAPTURES)
def test_peer_tshark(name: str) -> None:
    pcap = need_shared(FOLDER / name)
    events = [e for e in events_from_capture(pcap) if e.kind == "opcua"]
    assert events
    ours = _ours_by_frame(events)
    rows = tshark_fields(pcap, _TS_FIELDS, "opcua")
    theirs = _tshark_by_frame(rows)
    # Encrypted frames: only the message and security headers are compared. tshark reads the first 8
    # ciphertext bytes of an encrypted MSG/CLO as a sequence header (seq/rqid); we do not claim them.
    enc_frames = {e.origin.frames[0] for e in events if e.fields.get("encrypted")} | {
        e.origin.frames[-1] for e in events if e.fields.get("encrypted")
    }
    compared = 0
    assert set(ours) == set(theirs), sorted(set(ours) ^ set(theirs))
    for fr in sorted(theirs):
        t = theirs[fr]
        if fr in enc_frames:
            t = Counter({k: v for k, v in t.items() if k[0] in ("type", "spu", "scid", "token")})
        o = ours[fr]
        if fr in enc_frames:
            o = Counter({k: v for k, v in o.items() if k[0] in t or k[0] in ("type", "spu", "scid", "token")})
        assert o == t, f"frame {fr}: ours-only {o - t}, tshark-only {t - o}"
        compared += sum(t.values())
    assert compared > 20


# ---------------------------------------------------------------------- peer: ICSNPP Zeek baselines
def _rows(path: Path) -> list[list[str]]:
    """Rows of an ICSNPP baseline log (their #fields header was stripped: columns by position)."""
    return [ln.split("\t") for ln in path.read_text().splitlines() if ln and not ln.startswith("#")]


def _icsnpp_guid(raw: str) -> str:
    """ICSNPP prints a GUID's 16 bytes in wire order; OPC UA (and tshark, and we) print Data1-3 as
    little-endian integers (Part 6 5.1.3). Convert theirs to the standard form."""
    h = raw.replace("-", "")
    b = bytes.fromhex(h)
    return f"{b[3::-1].hex()}-{b[5:3:-1].hex()}-{b[7:5:-1].hex()}-{b[8:10].hex()}-{b[10:].hex()}"


@pytest.mark.parametrize(
    ("variant", "name"),
    [
        ("analyzer.basic", "open62541_client-server_mainloop.pcap"),
        ("analyzer.no-handshake", "open62541_client-server_mainloop-no-handshake.pcap"),
    ],
)
def test_peer_icsnpp(variant: str, name: str) -> None:
    base = need_shared(FOLDER / "icsnpp-baseline" / variant)
    events = [e for e in events_from_capture(need_shared(FOLDER / name)) if e.kind == "opcua"]
    # opcua_binary.log: one row per request (with its response's columns), plus separate HEL/ACK rows.
    ours = {}
    for e in events:
        f = e.fields
        if f["msg_type"] == "HEL":
            ours[(e.src.port, "HEL", None)] = f
            ours[(e.src.port, "ACK", None)] = f
        elif f["status"] != "no_request":
            ours[(e.src.port, f["msg_type"], f["request_id"])] = f
    orphans = [e.fields for e in events if e.fields["status"] == "no_request"]
    rows = _rows(base / "opcua_binary.log")
    compared = 0
    for r in rows:
        port, mt = int(r[3]), r[6]
        if r[26] == "-" and mt not in ("HEL", "ACK"):
            # A response without its request (mid-stream start): ICSNPP logs only its headers.
            o = orphans.pop(0)
            assert (mt, int(r[17]), int(r[24])) == (o["msg_type"], o["secure_channel_id"], o["seq"])
            compared += 1
            continue
        f = ours.pop((port, mt, int(r[26]) if mt not in ("HEL", "ACK") else None))
        if mt == "HEL":
            assert (int(r[11]), int(r[12]), int(r[13]), r[16]) == (
                f["protocol_version"],
                f["receive_buffer_size"],
                f["send_buffer_size"],
                f["endpoint_url"],
            )
        elif mt == "ACK":
            assert (int(r[12]), int(r[13])) == (f["ack_receive_buffer_size"], f["ack_send_buffer_size"])
        else:
            assert int(r[24]) == f["seq"]
            assert (int(r[29]), r[30]) == (f["service_id"], f["service"])
            assert int(r[38]) == f["request_handle"]
            if mt == "OPN":
                assert r[19] == f["security_policy_uri"]
                assert r[17].split(",") == ["0", str(f["secure_channel_id"])]
            else:
                assert int(r[17]) == f["secure_channel_id"]
            if r[35] != "-":  # authentication token (GUID form)
                assert f["authentication_token"] == f"ns={r[32]};g={_icsnpp_guid(r[35])}"
            if r[48] != "-":  # the response columns
                assert int(r[48]) == f["response_id"] and r[49] == f["response"]
                assert int(r[51]) == f["response_handle"]
            else:
                assert f["status"] == "no_response" or mt == "CLO"
        compared += 1
    # Every request we paired is in their log and vice versa (HEL/ACK both consumed).
    assert not ours and not orphans, f"events missing from opcua_binary.log: {sorted(ours)} {orphans}"
    # Status codes (opcua_binary_status_code_detail.log): every response header, and the operation
    # results of Read/Write/Browse/CreateMonitoredItems.
    detail = Counter(
        (r[12], int(r[14], 16), r[18]) for r in _rows(base / "opcua_binary_status_code_detail.log")
    )
    mine: Counter = Counter()
    for e in events:
        f = e.fields
        if "service_result" in f:
            mine[("ResponseHeader", f["service_result"], f["service_result_name"])] += 1
        names = [x.get("status") for x in f.get("read_results", ())] if "read_results" in f else []
        for src, vals in (
            ("Read", names),
            ("Write", f.get("results", []) if f.get("service") == "WriteRequest" else []),
            ("Browse", [b["status"] for b in f.get("browse_results", ())]),
            ("CreateMonitoredItems", [m["status"] for m in f.get("monitored_items", ())]),
        ):
            for v in vals:
                code = next(k << 16 for k, n in opcua.STATUS_CODES.items() if n == v)
                mine[(src, code, v)] += 1
    assert mine == detail
    # Service detail logs.
    by_service = defaultdict(list)
    for e in events:
        by_service[e.fields.get("service")].append(e.fields)
    (rd,) = by_service["ReadRequest"]
    (row,) = _rows(base / "opcua_binary_read_nodes_to_read.log")
    assert rd["nodes"] == [{"node_id": f"ns={row[12]};s={row[14]}", "attribute": row[18]}]
    (row,) = _rows(base / "opcua_binary_read_results.log")
    assert row[12] == "0x02" and rd["read_results"] == [
        {"status": "BadNodeIdUnknown"}
    ]  # mask 0x02: status only
    writes = [r for r in _rows(base / "opcua_binary_write.log") if r[6] == "T"]
    assert [(f"ns={r[12]};s={r[14]}", r[18]) for r in writes] == [
        (w["nodes"][0]["node_id"], w["nodes"][0]["attribute"]) for w in by_service["WriteRequest"]
    ]
    (act,) = by_service["ActivateSessionRequest"]
    (row, _) = _rows(base / "opcua_binary_activate_session.log")
    # ICSNPP logs the password in clear ("password"); we keep only password_present (by design).
    assert (row[19], row[21], row[22]) == ("UserNameIdentityToken", act["user_policy_id"], act["user_name"])
    assert act["password_present"] is True
    (cs,) = by_service["CreateSessionRequest"]
    req, resp = _rows(base / "opcua_binary_create_session.log")
    assert (req[11], req[20]) == (cs["client"]["application_uri"], cs["endpoint_url"])
    assert (
        float(req[25]) == cs["requested_session_timeout"] and float(resp[39]) == cs["revised_session_timeout"]
    )
    assert cs["session_id"] == f"ns={resp[28]};g={_icsnpp_guid(resp[31])}"
    # Endpoint descriptions (GetEndpoints response and CreateSession response).
    (ep_row,) = _rows(base / "opcua_binary_create_session_endpoints.log")
    ep = cs["endpoints"][0]
    assert (ep["url"], ep["security_mode"], ep["security_policy"]) == (ep_row[11], "None", "None")
    assert int(ep_row[23]) == 1 and ep_row[24] == opcua.POLICY_PREFIX + "None"
    assert cs["identity"] == {"application_uri": ep_row[12], "product_uri": ep_row[13], "name": ep_row[16]}
    ge = [
        f for f in by_service["GetEndpointsRequest"] + by_service["GetEndpointsResponse"] if "endpoints" in f
    ]
    tok_rows = _rows(base / "opcua_binary_get_endpoints_user_token.log")
    assert [
        (t["policy_id"], str(list(opcua.USER_TOKEN_TYPES.values()).index(t["type"])))
        for f in ge
        for t in f["endpoints"][0]["user_tokens"]
    ] == [(r[11], r[12]) for r in tok_rows]
    # Browse: directions of the browsed nodes; browse names of returned references.
    descs = _rows(base / "opcua_binary_browse_description.log")
    got = [(n["node_id"], n["direction"]) for f in by_service["BrowseRequest"] for n in f["nodes"]]
    assert got == [(f"i={r[13]}", {"FWD": "Forward", "BOTH": "Both", "INV": "Inverse"}[r[17]]) for r in descs]
    refs = _rows(base / "opcua_binary_browse_response_references.log")
    names = [
        ref["browse_name"].split(":", 1)[-1]
        for f in by_service["BrowseRequest"]
        for res in f["browse_results"]
        for ref in res["references"]
    ]
    assert names == [r[27] for r in refs]
    # CreateMonitoredItems: monitored node and sampling interval.
    (cmi,) = by_service["CreateMonitoredItemsRequest"]
    row = _rows(base / "opcua_binary_create_monitored_items_create_item.log")[0]
    assert (cmi["nodes"][0]["node_id"], cmi["nodes"][0]["sampling_interval"]) == (
        f"ns={row[12]};s={row[14]}",
        float(row[23]),
    )
    if variant == "analyzer.basic":
        rows = _rows(base / "opcua_binary_opensecure_channel.log")
        opns = [e.fields for e in events if e.fields["msg_type"] == "OPN"]
        assert [int(r[17]) for r in rows if r[6] == "F"] == [f["secure_channel_id"] for f in opns]
        assert [int(r[15]) for r in rows if r[6] == "T"] == [f["requested_lifetime"] for f in opns]
        assert [int(r[20]) for r in rows if r[6] == "F"] == [f["revised_lifetime"] for f in opns]
    assert compared >= 25


def test_no_handshake_orphan_response() -> None:
    """The mid-stream capture starts with a GetEndpoints response: ICSNPP drops it from
    opcua_binary.log (it logs requests) but still logs its endpoint description; we emit it as
    `no_request` with the endpoints and the server identity."""
    pcap = need_shared(FOLDER / "open62541_client-server_mainloop-no-handshake.pcap")
    ev = next(e for e in events_from_capture(pcap) if e.kind == "opcua")
    assert ev.origin.frames == (2,) and ev.fields["status"] == "no_request"
    assert ev.fields["service"] == "GetEndpointsResponse" and ev.src.port == 56322
    assert ev.fields["identity"]["application_uri"] == "urn:open62541.server.application"


def test_encrypted_capture_flags_encrypted() -> None:
    pcap = need_shared(FOLDER / "open62541_client-server_encrypted.pcap")
    evs = [e for e in events_from_capture(pcap) if e.kind == "opcua"]
    enc = [e for e in evs if e.fields.get("encrypted")]
    assert len(enc) == 10 and all("service" not in e.fields for e in enc)
    assert {e.fields["security_policy"] for e in enc} == {"Basic128Rsa15"}
    assert not [e for e in events_from_capture(pcap) if e.kind == "weird"]


# ---------------------------------------------------------------------- fuzz
_VALID = [
    HELLO,
    ACK,
    OPN_REQ,
    OPN_RESP,
    sym(
        b"MSG",
        9,
        nid4(631)
        + req_header(3)
        + struct.pack("<dI", 0.0, 0)
        + struct.pack("<i", 1)
        + read_value_id(string_node(2, "Tag1")),
    ),
    sym(
        b"MSG",
        9,
        nid4(634)
        + resp_header(3)
        + struct.pack("<i", 1)
        + b"\x01\x06"
        + struct.pack("<i", 5)
        + struct.pack("<i", -1),
    ),
]


@st.composite
def _mutated(draw: st.DrawFn) -> bytes:
    base = bytearray(draw(st.sampled_from(_VALID)))
    op = draw(st.sampled_from(["flip", "truncate", "length", "random"]))
    if op == "flip":
        for _ in range(draw(st.integers(1, 4))):
            i = draw(st.integers(0, len(base) - 1))
            base[i] ^= 1 << draw(st.integers(0, 7))
    elif op == "truncate":
        base = base[: draw(st.integers(0, len(base)))]
    elif op == "length":
        struct.pack_into("<I", base, 4, draw(st.integers(0, 1 << 21)))
    else:
        base = bytearray(draw(st.binary(max_size=300)))
    return bytes(base)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.booleans(), _mutated()), min_size=1, max_size=6))
def test_fuzz_never_raises(chunks: list[tuple[bool, bytes]]) -> None:
    for e in feed(opcua, chunks):
        e.to_json()                       # every event serializes (no bytes, NaN, huge ints)


@settings(max_examples=100, deadline=None)
@given(st.binary(min_size=1, max_size=64))
def test_fuzz_garbage_is_weird(junk: bytes) -> None:
    """Bytes that cannot start an OPC UA message yield a weird event, never silence."""
    if junk[:3] in opcua.MSG_TYPES:
        return
    evs = feed(opcua, [(True, junk + b"\x00" * 8)])
    assert any(e.kind == "weird" for e in evs)
