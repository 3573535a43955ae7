"""IEC 60870-5-104: every shared capture against tshark's iec60870_104 / iec60870_asdu dissection.

Each APDU tshark decodes is found in the sensor's output by connection ports, direction and N(S)
(I-frames) or frame number (U-frames), and its frame must be in the event's `origin.frames`. Every
ASDU field is compared: type id, SQ, number of objects, cause (with P/N and T), originator address,
common address, every IOA and every information element (value, qualifier bits, quality flags, time
tags). Differences that remain are asserted as what they are (see the comments on each).
"""

from __future__ import annotations

import json
import math
import subprocess
from collections import defaultdict
from pathlib import Path
from typing import Any

import pytest

from icsight.events import Event
from sensors.iec104 import cp56_iso
from sensors.run import events_from_capture
from tests.conftest import PCAPS, need_shared, need_tshark

FOLDER = PCAPS / "iec104"
CAPTURES = sorted(p for p in FOLDER.glob("*") if p.suffix in (".pcap", ".pcapng", ".cap")) \
    if FOLDER.exists() else []

# tshark utype (control octet >> 2) -> our U function
UTYPES = {0x01: "STARTDT", 0x02: "STARTDT", 0x04: "STOPDT", 0x08: "STOPDT", 0x10: "TESTFR", 0x20: "TESTFR"}


def _as_list(x: Any) -> list:
    if x is None:
        return []
    return x if isinstance(x, list) else [x]


def tshark_apdus(pcap: Path) -> list[dict[str, Any]]:
    """Every APDU tshark decodes: frame, ports, format, tx, utype, and its ASDU layer (or None)."""
    exe = need_tshark()
    cmd = [exe, "-n", "-r", str(pcap), "-T", "json", "--no-duplicate-keys", "-J",
           "frame tcp iec60870_104 iec60870_asdu", "-Y", "iec60870_104"]
    frames = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout or "[]")
    out = []
    for fr in frames:
        lay = fr["_source"]["layers"]
        num = int(lay["frame"]["frame.number"])
        sport, dport = int(lay["tcp"]["tcp.srcport"]), int(lay["tcp"]["tcp.dstport"])
        apdus = _as_list(lay.get("iec60870_104"))
        asdus = _as_list(lay.get("iec60870_asdu"))
        i_apdus = [a for a in apdus if a.get("iec60870_104.type") == "0x00000000"]
        # tshark puts one asdu layer per I-format APDU, in order
        assert len(i_apdus) == len(asdus), f"frame {num}: {len(i_apdus)} I-frames, {len(asdus)} ASDUs"
        it = iter(asdus)
        for a in apdus:
            t = a.get("iec60870_104.type")
            rec = {"frame": num, "sport": sport, "dport": dport,
                   "apdulen": int(a.get("iec60870_104.apdulen", -1))}
            if t is None:
                rec.update(fmt="?", layer=a)          # no APCI tshark could decode (stray octets)
            elif t == "0x00000000":
                rec.update(fmt="I", tx=int(a["iec60870_104.tx"]), rx=int(a["iec60870_104.rx"]), asdu=next(it))
            elif t == "0x00000001":
                rec.update(fmt="S", rx=int(a["iec60870_104.rx"]))
            else:
                rec.update(fmt="U", utype=int(a["iec60870_104.utype"], 16))
            out.append(rec)
    return out


def _views(events: list[Event]) -> dict[tuple[int, int, int], dict[str, Any]]:
    """Each ASDU the sensor decoded, keyed by (sender port, receiver port, N(S))."""
    views: dict[tuple[int, int, int], dict[str, Any]] = {}
    for e in events:
        f = e.fields
        if e.kind != "iec104" or f.get("apci") != "I":
            continue
        s, d = e.src.port, e.dst.port
        base = {"type_id": f["type_id"], "ca": f["ca"], "ioas": f["ioas"], "frames": e.origin.frames}
        if f["status"] == "no_request":     # an orphan confirmation/termination: the responder sent it
            views[(d, s, f["ns"])] = dict(base, role="orphan", fields=f)
            continue
        views[(s, d, f["ns"])] = dict(base, role="request", fields=f)
        if "resp_ns" in f and "confirm_cot" in f:
            views[(d, s, f["resp_ns"])] = dict(base, role="confirm", cot=f["confirm_cot"],
                                                negative=f["confirm"] == "negative")
        elif "resp_ns" in f:                # C_RD answered by monitor data
            views[(d, s, f["resp_ns"])] = dict(base, role="read_reply", type_id=f["resp_type_id"],
                                                cot=f["resp_cot"], points=f["points"])
        if "term_ns" in f:
            views[(d, s, f["term_ns"])] = dict(base, role="term", cot=10)
    return views


def _num(x: str) -> float:
    return float(x)


def _expected_point(typeid: int, obj: dict[str, Any]) -> dict[str, Any]:
    """tshark's view of one information object, in our point vocabulary."""
    g = obj.get
    exp: dict[str, Any] = {}
    q: list[str] = []

    def flags(prefix: str, names: tuple[str, ...]) -> None:
        tree = g(prefix + "_tree") or {}
        for n in names:
            if tree.get(f"{prefix}.{n}") == "1":
                q.append(n.upper())

    if "iec60870_asdu.siq" in obj:
        exp["value"] = obj["iec60870_asdu.siq_tree"]["iec60870_asdu.siq.spi"] == "1"
        flags("iec60870_asdu.siq", ("bl", "sb", "nt", "iv"))
    if "iec60870_asdu.diq" in obj:
        exp["value"] = int(obj["iec60870_asdu.diq_tree"]["iec60870_asdu.diq.dpi"])
        flags("iec60870_asdu.diq", ("bl", "sb", "nt", "iv"))
    if "iec60870_asdu.vti" in obj:
        tree = obj["iec60870_asdu.vti_tree"]
        exp["value"] = int(tree["iec60870_asdu.vti.v"])
        exp["transient"] = tree["iec60870_asdu.vti.t"] == "1"
    for k in ("iec60870_asdu.normval", "iec60870_asdu.float"):
        if k in obj:
            exp["value"] = _num(obj[k])
    for k in ("iec60870_asdu.scalval", "iec60870_asdu.bitstring", "iec60870_asdu.qoi", "iec60870_asdu.qrp"):
        if k in obj:
            exp["value"] = int(obj[k], 0)
    if "iec60870_asdu.bcr.count" in obj:
        exp["value"] = int(obj["iec60870_asdu.bcr.count"])
        exp["seq"] = int(obj["iec60870_asdu.bcr.sq"])
        for n in ("cy", "ca", "iv"):
            if obj.get(f"iec60870_asdu.bcr.{n}") == "1":
                q.append(n.upper())
    if "iec60870_asdu.qds" in obj:
        flags("iec60870_asdu.qds", ("ov", "bl", "sb", "nt", "iv"))
    for k, on in (("sco", "on"), ("dco", "on"), ("rco", "up")):
        if f"iec60870_asdu.{k}" in obj:
            tree = obj[f"iec60870_asdu.{k}_tree"]
            v = int(tree[f"iec60870_asdu.{k}.{on}"])
            exp["value"] = bool(v) if k == "sco" else v
            exp["qu"] = int(tree[f"iec60870_asdu.{k}.qu"])
            exp["se"] = "select" if tree[f"iec60870_asdu.{k}.se"] == "1" else "execute"
    if "iec60870_asdu.qos" in obj:
        tree = obj["iec60870_asdu.qos_tree"]
        exp["ql"] = int(tree["iec60870_asdu.qos.ql"])
        exp["se"] = "select" if tree["iec60870_asdu.qos.se"] == "1" else "execute"
    if "iec60870_asdu.coi" in obj:
        tree = obj["iec60870_asdu.coi_tree"]
        exp["value"] = int(tree["iec60870_asdu.coi_r"])
        if tree["iec60870_asdu.coi_i"] == "1":
            exp["param_change"] = True
    if "iec60870_asdu.cp56time" in obj:
        t = obj["iec60870_asdu.cp56time_tree"]
        ms, mi = int(t["iec60870_asdu.cp56time.ms"]), int(t["iec60870_asdu.cp56time.min"])
        raw = bytes([ms & 0xFF, ms >> 8, mi | (0x80 if t["iec60870_asdu.cp56time.iv"] == "1" else 0),
                     int(t["iec60870_asdu.cp56time.hour"]),
                     int(t["iec60870_asdu.cp56time.day"]) | int(t["iec60870_asdu.cp56time.dow"]) << 5,
                     int(t["iec60870_asdu.cp56time.month"]), int(t["iec60870_asdu.cp56time.year"]) & 0x7F])
        iso, iv = cp56_iso(raw, 0)
        if typeid == 103:
            exp["value"] = iso          # C_CS_NA_1: the clock is the value
        else:
            exp["time"] = iso
            if iv:
                q.append("TIME_IV")
    exp["quality"] = q
    return exp


def _compare_point(typeid: int, obj: dict[str, Any], p: dict[str, Any], where: str) -> int:
    exp = _expected_point(typeid, obj)
    n = 0
    for k, v in exp.items():
        got = p.get(k, [] if k == "quality" else None)
        if isinstance(v, float):
            assert got is not None and math.isclose(got, v, rel_tol=1e-6, abs_tol=1e-6), \
                f"{where} {k}: {got} != {v}"
        elif k == "quality":
            assert sorted(got) == sorted(v), f"{where} quality: {got} != {v}"
        else:
            assert got == v, f"{where} {k}: {got!r} != {v!r}"
        n += 1
    return n


@pytest.mark.tshark
@pytest.mark.parametrize("pcap", CAPTURES, ids=lambda p: p.name)
def test_iec104_vs_tshark(pcap: Path) -> None:
    need_shared(pcap)
    events = events_from_capture(pcap)
    apdus = tshark_apdus(pcap)
    views = _views(events)
    weird_by_frame: dict[int, list[str]] = defaultdict(list)
    for e in events:
        if e.kind == "weird":
            for fr in e.origin.frames:
                weird_by_frame[fr].append(e.fields["name"])
    sessions = [e for e in events if e.kind == "iec104" and e.fields.get("apci") == "U"]
    seen: set[tuple[int, int, int]] = set()
    compared = fields = 0
    for a in apdus:
        fr = a["frame"]
        where = f"{pcap.name} frame {fr}"
        if a["fmt"] == "U":
            fn = UTYPES.get(a["utype"])
            if fn is None or a["apdulen"] != 4:
                # tshark marks it "U (<ERR>)" / decodes a U-frame with a body: we report the bad frame.
                assert "iec104_bad_u_frame" in weird_by_frame[fr], where
                continue
            hit = [e for e in sessions if fr in e.origin.frames and e.fields["u_function"] == fn]
            assert hit, f"{where}: no {fn} session event"
            compared += 1
            continue
        if a["fmt"] == "?":
            # Octets outside any APDU (Wireshark's test capture injects them): tshark shows the layer
            # with no APCI; we report them as iec104_garbage (or a too-short length octet) there.
            assert "iec104_garbage" in weird_by_frame[fr], f"{where}: {a['layer']}"
            continue
        if a["fmt"] == "S":
            # S-frames produce no event. An S-frame with a body (APDU length != 4) is accepted by
            # tshark; 104 section 5.2 fixes the length at 4, so we report it.
            if a["apdulen"] != 4:
                assert "iec104_bad_s_frame" in weird_by_frame[fr], where
            continue
        asdu = a["asdu"]
        if "iec60870_asdu.causetx" not in asdu or a["apdulen"] < 4 + 6:
            # tshark: "[Malformed Packet]" (I-frame shorter than the 6-octet data unit identifier)
            assert "iec104_short_asdu" in weird_by_frame[fr], where
            continue
        key = (a["sport"], a["dport"], a["tx"])
        v = views.get(key)
        assert v is not None, f"{where}: ASDU N(S)={a['tx']} not in any event"
        assert fr in v["frames"], f"{where}: frame not in origin.frames {v['frames']}"
        seen.add(key)
        typeid, cot = int(asdu["iec60870_asdu.typeid"]), int(asdu["iec60870_asdu.causetx"])
        nega = asdu["iec60870_asdu.nega"] == "1"
        ca = int(asdu["iec60870_asdu.addr"])
        objs = [o for k, o in asdu.items() if k.startswith("IOA:")]
        objs = [x for o in objs for x in _as_list(o)]
        ioas = [int(o["iec60870_asdu.ioa"]) for o in objs]
        assert v["type_id"] == typeid, where
        assert v["ca"] == ca, where
        fields += 2
        if v["role"] in ("request", "orphan"):
            f = v["fields"]
            test = asdu["iec60870_asdu.test"] == "1"
            assert (f["cot"], f["negative"], f["test"]) == (cot, nega, test), where
            assert f["oa"] == int(asdu["iec60870_asdu.oa"]), where
            assert f["sq"] == (asdu["iec60870_asdu.sq"] == "1"), where
            assert f["num_objects"] == int(asdu["iec60870_asdu.numix"]), where
            assert f["ioas"] == ioas, f"{where}: IOAs {f['ioas']} != {ioas}"
            assert f["nr"] == a["rx"], where
            fields += 8
            pts = f["points"]
            assert len(pts) == len(objs), where
            for o, p in zip(objs, pts, strict=True):
                assert p["ref"] == f"{ca}:{o['iec60870_asdu.ioa']}", where
                fields += 1 + _compare_point(typeid, o, p, f"{where} IOA {o['iec60870_asdu.ioa']}")
        else:
            assert v["cot"] == cot, f"{where}: cot {v['cot']} != {cot}"
            if v["role"] == "confirm":
                assert v["negative"] == nega, where
            assert v["ioas"][:1] == ioas[:1], where
            fields += 3
        compared += 1
    # nothing the sensor reports that tshark does not show
    extra = set(views) - seen
    assert not extra, f"ASDUs only in the sensor's events: {sorted(extra)}"
    assert compared > 0
    print(f"{pcap.name}: {compared} APDUs, {fields} fields compared")
