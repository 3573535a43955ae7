"""PROFINET DCP events versus tshark's pn_dcp dissection, frame by frame, for every capture of the folder."""

from __future__ import annotations

from pathlib import Path

import pytest

from sensors.profinet_dcp import OPTIONS, SERVICE_TYPES
from sensors.run import events_from_capture
from tests.conftest import PCAPS, need_shared
from tests.peers import tshark_fields

DCP = PCAPS / "profinet_dcp"
CAPTURES = sorted(DCP.glob("*.pcap"))
FIELDS = [
    "pn_rt.frame_id",
    "pn_dcp.service_id",
    "pn_dcp.service_type",
    "pn_dcp.xid",
    "pn_dcp.option",
    "pn_dcp.suboption_device_nameofstation",
    "pn_dcp.suboption_device_devicevendorvalue",
    "pn_dcp.suboption_vendor_id",
    "pn_dcp.suboption_device_id",
    "pn_dcp.suboption_ip_ip",
    "pn_dcp.suboption_ip_subnetmask",
    "pn_dcp.suboption_ip_standard_gateway",
    "pn_dcp.block_error",
    "pn_dcp.block_qualifier",
]
OPT_CODE = {name: code for code, (name, _) in OPTIONS.items()}
STYPE_CODE = {v: k for k, v in SERVICE_TYPES.items()}


def _opt(block_name: str) -> int:
    o = block_name.split("/")[0]
    return OPT_CODE[o] if o in OPT_CODE else int(o.removeprefix("unknown-"), 16)


def _expect(blocks: list[dict]) -> dict[str, list]:
    """What tshark shows for a frame carrying these blocks."""
    e: dict[str, list] = {k: [] for k in FIELDS[4:]}
    for b in blocks:
        e["pn_dcp.option"].append(_opt(b["block"]))
        e["pn_dcp.option"] += [_opt(n) for n in b.get("options", [])]  # DeviceOptions lists options too
        if b["block"] == "device_properties/name_of_station" and "value" in b:
            e["pn_dcp.suboption_device_nameofstation"].append(b["value"])
        if b["block"] == "device_properties/device_vendor" and "value" in b:
            e["pn_dcp.suboption_device_devicevendorvalue"].append(b["value"])
        if "vendor_id" in b:
            e["pn_dcp.suboption_vendor_id"].append(b["vendor_id"])
            e["pn_dcp.suboption_device_id"].append(b["device_id"])
        if "ip" in b:
            e["pn_dcp.suboption_ip_ip"].append(b["ip"])
            e["pn_dcp.suboption_ip_subnetmask"].append(b["netmask"])
            e["pn_dcp.suboption_ip_standard_gateway"].append(b["gateway"])
        if "error" in b:
            e["pn_dcp.block_error"].append(
                {
                    "ok": 0,
                    "option_not_supported": 1,
                    "suboption_not_supported": 2,
                    "suboption_not_set": 3,
                    "resource_error": 4,
                    "set_not_possible": 5,
                    "in_operation": 6,
                }[b["error"]]
            )
        if "qualifier" in b:
            e["pn_dcp.block_qualifier"].append(b["qualifier"])
    return e


def _norm(field: str, vals: list[str]) -> list:
    if field in (
        "pn_dcp.option",
        "pn_dcp.suboption_vendor_id",
        "pn_dcp.suboption_device_id",
        "pn_dcp.block_error",
        "pn_dcp.block_qualifier",
    ):
        return [int(v, 0) for v in vals]
    return vals


@pytest.mark.parametrize("pcap", CAPTURES, ids=lambda p: p.name)
def test_dcp_vs_tshark(pcap: Path) -> None:
    need_shared(pcap)
    events = [e for e in events_from_capture(pcap) if e.kind == "profinet_dcp"]
    rows = {int(r["frame.number"][0]): r for r in tshark_fields(pcap, FIELDS, "pn_dcp")}
    assert rows
    per_frame: dict[int, tuple[dict, list[dict], bool]] = {}
    for e in events:
        f = e.fields
        frames = list(e.origin.frames)
        if f["status"] == "paired":
            for fr in frames[:-1]:
                per_frame[fr] = (f, f["request_blocks"], True)
            per_frame[frames[-1]] = (f, f["blocks"], False)
        elif f["status"] == "no_request":
            per_frame[frames[0]] = (f, f["blocks"], False)
        else:
            for fr in frames:
                per_frame[fr] = (f, f["blocks"], True)
    # every DCP frame tshark sees is in one of our events, and we claim no frame tshark does not see
    assert sorted(per_frame) == sorted(rows)
    compared = 0
    for fr, (f, blocks, is_req) in per_frame.items():
        r = rows[fr]
        assert int(r["pn_dcp.service_id"][0]) == f["service_id"], fr
        stype = 0 if is_req else STYPE_CODE[f["service_type"]]
        assert int(r["pn_dcp.service_type"][0]) == stype, fr
        assert int(r["pn_dcp.xid"][0], 16) == int(f["xid"], 16), fr
        if is_req:
            assert int(r["pn_rt.frame_id"][0]) == int(f["frame_id"], 16), fr
        for k, v in _expect(blocks).items():
            assert _norm(k, r[k]) == v, (fr, k)
        compared += 3 + len(FIELDS) - 4
    print(f"{pcap.name}: {len(events)} events, {len(rows)} frames, {compared} fields compared with tshark")
