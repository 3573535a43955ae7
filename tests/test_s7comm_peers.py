"""S7comm / COTP / S7comm-plus events against the peers: tshark 4.0 field by field, Zeek ICSNPP logs.

Matching is by frame number: tshark reports an S7 PDU on the frame that completes it (the last
TPKT/COTP segment), which must be one of `origin.frames` of the event carrying that PDU.
Known differences (also in docs/protocols/s7comm.md), each handled where it is compared:
- ICSNPP prints the PDU reference byte-swapped (it reads the big-endian field little-endian):
  compared as swapped.
- ICSNPP logs no SZL row for responses that are not the last data unit, nor for follow-up fragments;
  we keep them (the follow-up data as `fragment_data`). Only Zeek's rows are required in ours.
- tshark 4.0 has no S7comm-plus dissector: those frames are checked against their raw first bytes
  and, for s7comm_plus.pcap, against ICSNPP's s7comm_plus.log.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import pytest

from sensors import s7comm
from sensors.run import events_from_capture
from tests.conftest import PCAPS, need_shared
from tests.peers import read_zeek_log, tshark_fields

S7_FOLDER, PLUS_FOLDER = PCAPS / "s7comm", PCAPS / "s7comm_plus"
CAPTURES = [
    "s7comm/s7_attack.pcap",
    "s7comm/s7comm_clean.pcap",
    "s7comm/s7comm_downloading_block_db1.pcap",
    "s7comm/s7comm_reading_setting_plc_time.pcap",
    "s7comm/snap7.pcap",
    "s7comm/step7_s300_AuthPassword.pcapng",
    "s7comm/step7_s300_readVarTab.pcapng",
    "s7comm/step7_s300_stop.pcapng",
    "s7comm/tia_s300_downloadOb1.pcapng",
    "s7comm/wincc_s300_setup-alarm-read.pcapng",
    "s7comm_plus/s7comm_plus.pcap",
    "s7comm_plus/S7-1511-opc-request-all-types.pcap",
    "s7comm_plus/S7-1511_db2_var1_HMI.pcap",
]
PLUS_CAPTURES = [c for c in CAPTURES if c.startswith("s7comm_plus/")]

S7_FIELDS = [
    "s7comm.header.rosctr",
    "s7comm.header.pduref",
    "s7comm.header.errcls",
    "s7comm.header.errcod",
    "s7comm.param.func",
    "s7comm.param.userdata.type",
    "s7comm.param.userdata.funcgroup",
    "s7comm.param.userdata.subfunc",
    "s7comm.param.item.syntaxid",
    "s7comm.param.item.transp_size",
    "s7comm.param.item.length",
    "s7comm.param.item.db",
    "s7comm.param.item.area",
    "s7comm.param.item.address.byte",
    "s7comm.param.item.address.bit",
    "s7comm.param.item.address.number",
    "s7comm.data.returncode",
    "s7comm.data.userdata.szl_id",
    "s7comm.data.userdata.szl_index",
    "s7comm.data.blockcontrol.block_type",
    "s7comm.data.blockcontrol.block_number",
    "s7comm.data.blockcontrol.dest_filesys",
    "s7comm.data.blockcontrol.uploadid",
    "s7comm.param.pistart.servicename",
    "s7comm.param.pdu_length",
    "s7comm.param.maxamq_calling",
    "s7comm.param.maxamq_called",
]
COTP_FIELDS = ["cotp.type", "cotp.src-tsap", "cotp.dst-tsap", "cotp.tpdu_size", "cotp.srcref"]

_events_cache: dict[str, list] = {}


def _events(rel: str) -> list:
    if rel not in _events_cache:
        _events_cache[rel] = events_from_capture(need_shared(PCAPS / rel))
    return _events_cache[rel]


def _int(v: str) -> int:
    return int(v, 16) if v.startswith("0x") else int(v)


def _by_frame(events, kind: str) -> dict[int, list]:
    out: dict[int, list] = defaultdict(list)
    for e in events:
        if e.kind == kind:
            for f in e.frames:
                out[f].append(e)
    return out


def _check_request(f: dict, row: dict, rosctr: int, diffs: list[str], fr: int) -> int:
    """Compare the request side of an event with tshark's row; returns the number of fields compared."""
    n = 0

    def eq(name: str, ours, theirs) -> None:
        nonlocal n
        n += 1
        if ours != theirs:
            diffs.append(f"frame {fr} {name}: ours {ours!r} tshark {theirs!r}")

    if rosctr == 1:
        eq("rosctr", f.get("rosctr"), "JOB")
        eq("func", f.get("func_code"), _int(row["s7comm.param.func"][0]))
        items = f.get("items") or []
        s7any = [it for it in items if it.get("syntax") == "S7ANY"]
        if row["s7comm.param.item.area"]:
            eq(
                "item.area",
                [it.get("area") for it in s7any],
                [s7comm._name(s7comm.AREAS, _int(a)) for a in row["s7comm.param.item.area"]],
            )
            eq(
                "item.db",
                [it.get("db") for it in s7any],
                [
                    _int(d) if _int(a) in (0x84, 0x85) else 0
                    for d, a in zip(row["s7comm.param.item.db"], row["s7comm.param.item.area"], strict=True)
                ],
            )
            eq(
                "item.transp_size",
                [it.get("transport_size") for it in s7any],
                [s7comm._name(s7comm.TRANSPORT_SIZES, _int(t)) for t in row["s7comm.param.item.transp_size"]],
            )
            eq(
                "item.length",
                [it.get("length") for it in s7any],
                [_int(x) for x in row["s7comm.param.item.length"]],
            )
            byte_bit = [
                f"{b}.{t}"
                for b, t in zip(
                    row["s7comm.param.item.address.byte"], row["s7comm.param.item.address.bit"], strict=True
                )
            ]
            eq("item.address", [it["address"] for it in s7any if it.get("area") not in ("T", "C")], byte_bit)
            eq(
                "item.address.number",
                [it["address"] for it in s7any if it.get("area") in ("T", "C")],
                row["s7comm.param.item.address.number"],
            )
        eq(
            "item.syntax",
            [it.get("syntax") for it in items],
            [s7comm._name(s7comm.SYNTAX_IDS, _int(s)) for s in row["s7comm.param.item.syntaxid"]],
        )
        if row["s7comm.param.pistart.servicename"]:
            eq("pi_service", f.get("pi_service"), row["s7comm.param.pistart.servicename"][0])
        if row["s7comm.param.pdu_length"]:
            eq("pdu_length", f.get("pdu_length"), _int(row["s7comm.param.pdu_length"][0]))
            eq("max_amq_calling", f.get("max_amq_calling"), _int(row["s7comm.param.maxamq_calling"][0]))
            eq("max_amq_called", f.get("max_amq_called"), _int(row["s7comm.param.maxamq_called"][0]))
    else:
        eq("rosctr", f.get("rosctr"), "USERDATA")
        eq("funcgroup", f.get("group_code"), _int(row["s7comm.param.userdata.funcgroup"][0]))
        eq("subfunc", f.get("subfunc_code"), _int(row["s7comm.param.userdata.subfunc"][0]))
        if row["s7comm.data.userdata.szl_id"]:
            eq("szl_id", f.get("szl_id"), _int(row["s7comm.data.userdata.szl_id"][0]))
            eq("szl_index", f.get("szl_index"), _int(row["s7comm.data.userdata.szl_index"][0]))
    if row["s7comm.data.blockcontrol.block_type"]:
        blk = f.get("block") or (f.get("blocks") or [{}])[0]
        eq(
            "block_type",
            blk.get("type"),
            s7comm.BLOCK_TYPES.get(row["s7comm.data.blockcontrol.block_type"][0]),
        )
        eq("block_number", blk.get("number"), int(row["s7comm.data.blockcontrol.block_number"][0]))
        eq(
            "dest_filesys",
            blk.get("filesystem"),
            s7comm.FILESYSTEMS.get(row["s7comm.data.blockcontrol.dest_filesys"][0]),
        )
    if row["s7comm.data.blockcontrol.uploadid"] and f.get("func_code") in (0x1E, 0x1F):
        # (a start-upload job carries upload id 0: the PLC assigns it; ours holds the response's)
        eq("upload_id", f.get("upload_id"), _int(row["s7comm.data.blockcontrol.uploadid"][0]))
    return n


def _check_response(f: dict, row: dict, rosctr: int, diffs: list[str], fr: int) -> int:
    n = 0

    def eq(name: str, ours, theirs) -> None:
        nonlocal n
        n += 1
        if ours != theirs:
            diffs.append(f"frame {fr} {name}: ours {ours!r} tshark {theirs!r}")

    codes = [s7comm._name(s7comm.ITEM_RETURN_CODES, _int(c)) for c in row["s7comm.data.returncode"]]
    if rosctr in (2, 3):
        eq("response_rosctr", f.get("response_rosctr"), s7comm.ROSCTR[rosctr])
        eq("errcls", f.get("error_class"), _int(row["s7comm.header.errcls"][0]))
        eq("errcod", f.get("error_code"), _int(row["s7comm.header.errcod"][0]))
        if row["s7comm.param.func"]:
            eq("func", f.get("func_code"), _int(row["s7comm.param.func"][0]))
        if f.get("func_code") in (4, 5) and codes:
            eq("item.returncode", [it.get("return_code") for it in f.get("items", [])], codes)
        if row["s7comm.param.pdu_length"]:
            eq("pdu_length", f.get("response_pdu_length"), _int(row["s7comm.param.pdu_length"][0]))
        if row["s7comm.data.blockcontrol.uploadid"]:
            eq("upload_id", f.get("upload_id"), _int(row["s7comm.data.blockcontrol.uploadid"][0]))
    else:
        eq("funcgroup", f.get("group_code"), _int(row["s7comm.param.userdata.funcgroup"][0]))
        eq("subfunc", f.get("subfunc_code"), _int(row["s7comm.param.userdata.subfunc"][0]))
        if codes:
            eq("returncode", f.get("return_code"), codes[0])
        if row["s7comm.data.userdata.szl_id"]:
            eq(
                "szl_id",
                f.get("response_szl_id", f.get("szl_id")),
                _int(row["s7comm.data.userdata.szl_id"][0]),
            )
            eq(
                "szl_index",
                f.get("response_szl_index", f.get("szl_index")),
                _int(row["s7comm.data.userdata.szl_index"][0]),
            )
    return n


@pytest.mark.tshark
@pytest.mark.parametrize("rel", CAPTURES)
def test_s7comm_matches_tshark(rel: str) -> None:
    path = need_shared(PCAPS / rel)
    rows = tshark_fields(path, S7_FIELDS, "s7comm")
    events = _events(rel)
    frames = _by_frame(events, "s7comm")
    diffs: list[str] = []
    compared = 0
    for row in rows:
        fr = int(row["frame.number"][0])
        rosctrs = [_int(x) for x in row["s7comm.header.rosctr"]]
        refs = [_int(x) for x in row["s7comm.header.pduref"]]
        cands = frames.get(fr, [])
        if len(rosctrs) != 1:
            # Several S7 PDUs completed in one frame: each must be in an event of ours.
            for ref in refs:
                if not any(ref in (e.fields.get("pdu_ref"), e.fields.get("response_pdu_ref")) for e in cands):
                    diffs.append(f"frame {fr}: no event for PDU ref {ref}")
            compared += len(refs)
            continue
        rosctr, ref = rosctrs[0], refs[0]
        mine = [e for e in cands if ref in (e.fields.get("pdu_ref"), e.fields.get("response_pdu_ref"))]
        if len(mine) != 1:
            diffs.append(f"frame {fr}: {len(mine)} events for PDU ref {ref} (rosctr {rosctr})")
            continue
        f = mine[0].fields
        compared += 1
        utype = _int(row["s7comm.param.userdata.type"][0]) if row["s7comm.param.userdata.type"] else None
        if rosctr == 1 or (rosctr == 7 and utype == 4):
            compared += _check_request(f, row, rosctr, diffs, fr)
        elif rosctr in (2, 3) or (rosctr == 7 and utype == 8):
            compared += _check_response(f, row, rosctr, diffs, fr)
        elif rosctr == 7:
            # push (cyclic data, alarm indications): one way, from the PLC
            compared += 3
            got = (f.get("status"), f.get("group_code"), f.get("subfunc_code"))
            want = (
                "one_way",
                _int(row["s7comm.param.userdata.funcgroup"][0]),
                _int(row["s7comm.param.userdata.subfunc"][0]) if row["s7comm.param.userdata.subfunc"] else 0,
            )
            if got != want:
                diffs.append(f"frame {fr}: push {got} tshark {want}")
    # every S7 event of ours is seen by tshark on one of its frames
    tshark_frames = {int(r["frame.number"][0]) for r in rows}
    for e in events:
        if e.kind == "s7comm" and not tshark_frames.intersection(e.frames):
            diffs.append(f"event on frames {list(e.frames)} has no S7 frame in tshark")
    print(f"{rel}: {len(rows)} S7 frames, {compared} fields compared")
    assert not diffs, f"{rel}: {len(diffs)} differences in {compared} compared:\n" + "\n".join(diffs[:40])
    assert compared >= len(rows)


@pytest.mark.tshark
@pytest.mark.parametrize("rel", CAPTURES)
def test_cotp_connect_matches_tshark(rel: str) -> None:
    path = need_shared(PCAPS / rel)
    rows = tshark_fields(path, COTP_FIELDS, "cotp.type == 0x0e || cotp.type == 0x0d")
    cotp_events = [e for e in _events(rel) if e.kind == "cotp"]
    by_frame = _by_frame(cotp_events, "cotp")
    diffs = []
    for row in rows:
        fr = int(row["frame.number"][0])
        mine = by_frame.get(fr, [])
        if len(mine) != 1:
            diffs.append(f"frame {fr}: {len(mine)} cotp events")
            continue
        f = mine[0].fields
        typ = _int(row["cotp.type"][0])
        if typ == 0x0E:
            for key, col in (("src_tsap", "cotp.src-tsap"), ("dst_tsap", "cotp.dst-tsap")):
                t = row[col][0]
                ours = f.get(key, {})
                got = ("0x" + ours.get("hex", "")) if t.startswith("0x") else ours.get("text")
                if got != t:
                    diffs.append(f"frame {fr} {key}: ours {ours} tshark {t}")
            if _int(row["cotp.tpdu_size"][0]) != f.get("tpdu_size"):
                diffs.append(
                    f"frame {fr} tpdu_size: ours {f.get('tpdu_size')} tshark {row['cotp.tpdu_size']}"
                )
        else:
            if f.get("response") != "CC" or _int(row["cotp.srcref"][0]) != f.get("response_src_ref"):
                diffs.append(f"frame {fr} CC: ours {f}")
    assert len(cotp_events) == len([r for r in rows if _int(r["cotp.type"][0]) == 0x0E]) or not rows
    assert not diffs, "\n".join(diffs)


@pytest.mark.tshark
@pytest.mark.parametrize("rel", PLUS_CAPTURES)
def test_s7comm_plus_frames_match_raw_bytes(rel: str) -> None:
    """tshark shows S7comm-plus as COTP + data: every 0x72 frame is one message of one event."""
    path = need_shared(PCAPS / rel)
    rows = tshark_fields(path, ["data.data"], "cotp && data")
    plus = [e for e in _events(rel) if e.kind == "s7comm_plus"]
    by_frame = _by_frame(plus, "s7comm_plus")
    diffs = []
    n72 = 0
    for row in rows:
        fr, raw = int(row["frame.number"][0]), bytes.fromhex(row["data.data"][0])
        if raw[:1] != b"\x72":
            continue  # one-byte keep-alives of the 1511 (0x79 ...) carry no message
        n72 += 1
        mine = by_frame.get(fr, [])
        if len(mine) != 1 or mine[0].fields["version_code"] != raw[1]:
            diffs.append(f"frame {fr}: {[e.fields for e in mine]} for {raw[:8].hex()}")
    messages = sum(2 if e.fields["status"] == "paired" else 1 for e in plus)
    assert n72 == messages
    assert not diffs, "\n".join(diffs)


def _zeek_dir(rel: str) -> Path:
    return (
        PCAPS
        / rel.split("/")[0]
        / "icsnpp-baseline"
        / ("analyzer.snap7" if rel.endswith("snap7.pcap") else "analyzer.s7comm_plus")
    )


def _swap(ref: int) -> int:
    return ((ref & 0xFF) << 8) | (ref >> 8)


def _messages(events, port: int = 102) -> list[tuple]:
    """Our S7comm events split back into messages (first frame, is_orig, rosctr, ref, fc, subfunc)."""
    out = []
    for e in events:
        if e.kind != "s7comm":
            continue
        f = e.fields
        is_orig = e.src.port != port
        if f["rosctr"] == "JOB":
            out.append(
                (
                    e.frames[0],
                    is_orig,
                    1,
                    f["pdu_ref"],
                    f["func_code"],
                    f.get("pi_service") if f["func_code"] == 0x28 else None,
                )
            )
            # ICSNPP logs no row for a plain ACK (ROSCTR 2, the error answer of a job): only ACK-Data.
            if f["status"] == "paired" and f["response_rosctr"] == "ACK_DATA":
                out.append((e.frames[-1], not is_orig, 3, f["pdu_ref"], f["func_code"], None))
        else:
            grp, sub = f["group_code"], f["subfunc_code"]
            req = f["status"] in ("paired", "no_response") or f.get("type") == "REQUEST"
            # ICSNPP logs neither the follow-up request (sequence number != 0) of a fragmented answer
            # nor a response that is not the last data unit; we keep both in one event each.
            if req and not f["seq"]:
                out.append((e.frames[0], is_orig, 7, f["pdu_ref"], 0x40 | grp, sub))
            if f["status"] in ("paired", "no_request") and f.get("last_data_unit") is not False:
                out.append(
                    (
                        e.frames[-1],
                        not is_orig if req else is_orig,
                        7,
                        f.get("response_pdu_ref", f["pdu_ref"]),
                        0x80 | grp,
                        sub,
                    )
                )
            if f["status"] == "one_way":
                out.append((e.frames[0], is_orig, 7, f["pdu_ref"], grp, sub))
    return [m[1:] for m in sorted(out, key=lambda m: m[0])]


@pytest.mark.parametrize("rel", ["s7comm/snap7.pcap", "s7comm_plus/s7comm_plus.pcap"])
def test_s7comm_matches_zeek(rel: str) -> None:
    zdir = _zeek_dir(rel)
    zrows = read_zeek_log(need_shared(zdir / "s7comm.log"))
    events = _events(rel)
    ours = _messages(events)
    theirs = [
        (
            r["is_orig"] == "T",
            int(r["rosctr_code"]),
            _swap(int(r["pdu_reference"])),
            int(r["function_code"], 16),
            None
            if r["subfunction_code"] == "-"
            else r["subfunction_code"]
            if r["subfunction_code"].startswith(("_", "P_"))
            else int(r["subfunction_code"], 16),
        )
        for r in zrows
    ]
    assert ours == theirs
    # error code of every ACK-Data row
    errs = [int(r["error_code"], 16) for r in zrows if r["rosctr_code"] == "3"]
    assert errs == [
        e.fields["error_code"]
        for e in sorted(events, key=lambda e: e.frames[-1])
        if e.kind == "s7comm" and e.fields.get("response_rosctr") == "ACK_DATA"
    ]


def test_szl_matches_zeek() -> None:
    zrows = read_zeek_log(need_shared(S7_FOLDER / "icsnpp-baseline/analyzer.snap7/s7comm_read_szl.log"))
    events = [e for e in _events("s7comm/snap7.pcap") if e.kind == "s7comm" and "szl_id" in e.fields]
    # ICSNPP logs no follow-up request (sequence number != 0) of a fragmented answer
    ours_req = [
        (e.fields["pdu_ref"], e.fields["szl_id"], e.fields["szl_index"])
        for e in events
        if not e.fields["seq"]
    ]
    ours_rsp = [
        (
            e.fields.get("response_pdu_ref", e.fields["pdu_ref"]),
            e.fields.get("response_szl_id", e.fields["szl_id"]),
            e.fields.get("response_szl_index", e.fields["szl_index"]),
        )
        for e in events
        if "szl_data" in e.fields
    ]
    zr = [
        (_swap(int(r["pdu_reference"])), int(r["szl_id"], 16), int(r["szl_index"], 16), r["method"])
        for r in zrows
    ]
    assert [z[:3] for z in zr if z[3] == "Request"] == ours_req
    # ICSNPP drops responses that are not the last data unit (0x001c here): ours is a superset.
    zrsp = [z[:3] for z in zr if z[3] == "Response"]
    assert set(zrsp) <= set(ours_rsp) and len(ours_rsp) == len(zrsp) + 1
    names = {int(r["szl_id"], 16): r["szl_id_name"] for r in zrows}
    assert names[0x11] == "Module identification" and any(
        e.fields["szl_name"] == "MODULE_IDENTIFICATION" and e.fields["szl_id"] == 0x11 for e in events
    )


def test_upload_download_matches_zeek() -> None:
    zrows = read_zeek_log(
        need_shared(S7_FOLDER / "icsnpp-baseline/analyzer.snap7/s7comm_upload_download.log")
    )
    names = {
        "Start Upload": "START_UPLOAD",
        "Upload": "UPLOAD",
        "End Upload": "END_UPLOAD",
        "Request Download": "REQUEST_DOWNLOAD",
        "Download Block": "DOWNLOAD_BLOCK",
        "Download Ended": "DOWNLOAD_ENDED",
    }
    zt = {"System Data Block": "SDB", "Organization Block": "OB", "Data Block": "DB"}
    events = [
        e
        for e in _events("s7comm/snap7.pcap")
        if e.kind == "s7comm" and e.fields.get("func_code") in range(0x1A, 0x20)
    ]
    reqs = [r for r in zrows if r["rosctr"] == "Job-Request"]
    assert [names[r["function_name"]] for r in reqs] == [e.fields["function"] for e in events]
    for r, e in zip(reqs, events, strict=True):
        f = e.fields
        assert _swap(int(r["pdu_reference"])) == f["pdu_ref"]
        if r["filename"] != "-":
            assert f["block"]["filename"] == r["filename"]
            assert f["block"]["type"] == zt[r["block_type"]]
            assert f["block"]["number"] == int(r["block_number"])
            assert f["block"]["filesystem"] == r["destination_filesystem"].upper()
        elif r["session_id"] not in ("-", "0"):
            assert f["upload_id"] == int(r["session_id"])
    acks = [r for r in zrows if r["rosctr"] == "ACK-Data"]
    paired = [e for e in events if e.fields.get("response_rosctr") == "ACK_DATA"]
    assert len(acks) == len(paired)
    for r, e in zip(acks, paired, strict=True):
        if r["function_name"] == "Start Upload":
            assert (e.fields["upload_id"], e.fields["block_length"]) == (
                int(r["session_id"]),
                int(r["blocklength"]),
            )
        elif r["function_name"] == "Upload":
            assert e.fields["data_length"] == int(r["blocklength"])


def test_cotp_matches_zeek() -> None:
    zrows = read_zeek_log(need_shared(PLUS_FOLDER / "icsnpp-baseline/analyzer.s7comm_plus/cotp.log"))
    ctl = [(r["is_orig"] == "T", r["pdu_code"]) for r in zrows if r["pdu_code"] != "0x0f"]
    ours = [e for e in _events("s7comm_plus/s7comm_plus.pcap") if e.kind == "cotp"]
    assert ctl == [(True, "0x0e"), (False, "0x0d")]
    assert [(e.fields["tpdu"], e.fields["response"], e.fields["status"]) for e in ours] == [
        ("CR", "CC", "paired")
    ]


def test_s7comm_plus_matches_zeek() -> None:
    zrows = read_zeek_log(need_shared(PLUS_FOLDER / "icsnpp-baseline/analyzer.s7comm_plus/s7comm_plus.log"))
    theirs = [
        (
            r["is_orig"] == "T",
            int(r["version"]),
            int(r["opcode"], 16),
            None if r["function_code"] == "-" else int(r["function_code"], 16),
        )
        for r in zrows
    ]
    msgs = []
    for e in _events("s7comm_plus/s7comm_plus.pcap"):
        if e.kind != "s7comm_plus":
            continue
        f = e.fields
        is_orig = e.src.port != 102
        fn = f.get("func_code")
        msgs.append((e.frames[0], is_orig, f["version_code"], f["opcode_code"], fn))
        if f["status"] == "paired":
            msgs.append((e.frames[-1], not is_orig, f["version_code"], 0x32, fn))
    ours = [m[1:] for m in sorted(msgs)]
    assert ours == theirs
    assert sum(1 for t in theirs if t[2] == 0x33) == 79
