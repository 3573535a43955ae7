"""PROFINET DCP, Discovery and basic Configuration Protocol (IEC 61158-6-10:2014 section 4.3, "DCP";
PROFINET IO specification v2.4 "DCP"), EtherType 0x8892 frame ids 0xFEFC-0xFEFF.

One event (kind "profinet_dcp") per request/response pair, paired by Xid: Identify (multicast) gets one
event per responder. Other PROFINET RT frame ids (cyclic data, alarms, PTCP) are only counted in the
sensor statistics (`frames.pn_rt.<class>`): they are neither parsed nor weird.
"""

from __future__ import annotations

import struct
from typing import Any

from icsight.events import Endpoint
from sensors.base import FrameAnalyzer, Pending

PROTOCOL = "profinet_dcp"
ETHERTYPES = (0x8892,)
ROLES = ("controller", "device")  # the IO-controller / engineering tool asks, the IO-device answers

_HDR = struct.Struct("!HBBIHH")  # frame id, service id, service type, xid, response delay, data length
_BLK = struct.Struct("!BBH")  # option, suboption, block length
_H = struct.Struct("!H")
HDR_LEN = 12

FRAME_IDS = {0xFEFC: "Hello", 0xFEFD: "GetSet", 0xFEFE: "Identify request", 0xFEFF: "Identify response"}
SERVICE_IDS = {3: "Get", 4: "Set", 5: "Identify", 6: "Hello"}
SERVICE_TYPES = {0: "request", 1: "response_success", 5: "response_unsupported"}
SERVICE_ACTIONS = {"Get": "read", "Set": "write", "Identify": "discover", "Hello": "discover"}

# option -> (option name, {suboption: name})  (IEC 61158-6-10 table "Options and suboptions")
OPTIONS: dict[int, tuple[str, dict[int, str]]] = {
    1: ("ip", {1: "mac_address", 2: "ip_parameter", 3: "full_ip_suite"}),
    2: (
        "device_properties",
        {
            1: "device_vendor",
            2: "name_of_station",
            3: "device_id",
            4: "device_role",
            5: "device_options",
            6: "alias_name",
            7: "device_instance",
            8: "oem_device_id",
            9: "standard_gateway",
            10: "rsi_properties",
        },
    ),
    3: (
        "dhcp",
        {
            12: "host_name",
            43: "vendor_specific",
            54: "server_identifier",
            55: "parameter_request_list",
            60: "class_identifier",
            61: "client_identifier",
            81: "fqdn",
            97: "uuid_client_identifier",
            255: "control_dhcp",
        },
    ),
    5: (
        "control",
        # 1/2 bracket a Set sequence (Start/End Transaction), they do not start or stop the device
        {
            1: "start_transaction",
            2: "end_transaction",
            3: "signal",
            4: "response",
            5: "factory_reset",
            6: "reset_to_factory",
        },
    ),
    6: ("device_initiative", {1: "device_initiative"}),
    7: (
        "nme_domain",
        {1: "nme_domain", 2: "nme_prio", 3: "nme_parameter_uuid", 4: "nme_name", 5: "cim_interface"},
    ),
    255: ("all_selector", {255: "all"}),
}
BLOCK_ERRORS = {
    0: "ok",
    1: "option_not_supported",
    2: "suboption_not_supported",
    3: "suboption_not_set",
    4: "resource_error",
    5: "set_not_possible",
    6: "in_operation",
}
DEVICE_ROLES = {0x01: "io_device", 0x02: "io_controller", 0x04: "io_multidevice", 0x08: "io_supervisor"}
RESET_QUALIFIERS = {
    2: "reset_application_data",
    4: "reset_communication_parameter",
    6: "reset_engineering_parameter",
    8: "reset_all_data",
    10: "reset_device",
    12: "reset_and_restore",
}

MAX_BLOCKS = 64
HARMLESS_SET = frozenset({"control/signal", "control/start_transaction", "control/end_transaction"})
PNIO_VENDORS = {0x002A: "Siemens", 0x00B0: "Phoenix Contact", 0x011E: "WAGO"}  # PI vendor ids (subset)


def block_name(opt: int, sub: int) -> str:
    """'ip/ip_parameter' style name of an option/suboption (unknown ones as hex)."""
    o = OPTIONS.get(opt)
    if o is None:
        return f"unknown-0x{opt:02x}/unknown-0x{sub:02x}"
    return f"{o[0]}/{o[1].get(sub, f'unknown-0x{sub:02x}')}"


def _ip(b: bytes) -> str:
    return ".".join(str(x) for x in b)


def _text(b: bytes) -> str:
    return bytes(b).decode("utf-8", "replace").rstrip("\0")


class L2Analyzer(FrameAnalyzer):
    """DCP over Ethernet; one instance per sensor."""

    PROTOCOL = PROTOCOL

    def __init__(self, sensor: Any) -> None:
        super().__init__(sensor)
        self.pending = Pending(timeout=30.0, limit=4096)  # (requester mac, xid) -> request record

    def frame(
        self,
        ts: float,
        frame: int,
        src_mac: str,
        dst_mac: str,
        ethertype: int,
        payload: bytes,
        vlan: int | None,
    ) -> None:
        if len(payload) < 2:
            self._weird("truncated_frame_id", f"{len(payload)} bytes", ts, frame, src_mac, dst_mac)
            return
        fid = _H.unpack_from(payload, 0)[0]
        if fid < 0xFEFC or fid > 0xFEFF:
            self.sensor.stats["frames.pn_rt." + _rt_class(fid)] += 1
            return
        for rec in self.pending.expire(ts):
            self._unanswered(rec)
        if len(payload) < HDR_LEN:
            self._weird("truncated_dcp_header", f"{len(payload)} bytes", ts, frame, src_mac, dst_mac)
            return
        fid, sid, stype, xid, delay, dlen = _HDR.unpack_from(payload, 0)
        service = SERVICE_IDS.get(sid, f"unknown-0x{sid:02x}")
        is_req = stype & 1 == 0
        f: dict[str, Any] = {
            "frame_id": f"0x{fid:04x}",
            "service_id": sid,
            "service": service,
            "service_type": SERVICE_TYPES.get(stype, f"unknown-0x{stype:02x}"),
            "xid": f"0x{xid:08x}",
        }
        end = HDR_LEN + dlen
        if end > len(payload):
            self._weird(
                "truncated_dcp_data",
                f"DCPDataLength {dlen}, {len(payload) - HDR_LEN} bytes present",
                ts,
                frame,
                src_mac,
                dst_mac,
            )
            end = len(payload)
        if is_req and sid in (5, 6):
            f["response_delay"] = delay
        blocks, err = self._blocks(payload, HDR_LEN, end, sid, is_req)
        if err:
            self._weird("bad_dcp_block", err, ts, frame, src_mac, dst_mac)
        f["blocks"] = blocks
        if is_req:
            self._request(f, blocks, ts, frame, src_mac, dst_mac)
        else:
            self._response(f, blocks, ts, frame, src_mac, dst_mac)

    # ------------------------------------------------------------------ blocks
    @staticmethod
    def _blocks(
        b: bytes, off: int, end: int, sid: int, is_req: bool
    ) -> tuple[list[dict[str, Any]], str | None]:
        """Decode the DCP blocks (IEC 61158-6-10 4.3.1.3): Get requests list option/suboption pairs only."""
        out: list[dict[str, Any]] = []
        if sid == 3 and is_req:  # Get request: option/suboption pairs
            while off + 2 <= end and len(out) < MAX_BLOCKS:
                out.append({"block": block_name(b[off], b[off + 1])})
                off += 2
            return out, (None if off == end else "odd byte after the Get request options")
        while off < end and len(out) < MAX_BLOCKS:
            if off + 4 > end:
                return out, f"block header cut short at offset {off}"
            opt, sub, ln = _BLK.unpack_from(b, off)
            q = off + 4
            if q + ln > end:
                return out, f"block {block_name(opt, sub)} length {ln} runs past the data"
            d = b[q : q + ln]
            blk: dict[str, Any] = {"block": block_name(opt, sub)}
            if sid == 4 and not is_req:
                # Set response: Control/Response block = option, suboption, BlockError
                if opt == 5 and sub == 4 and len(d) >= 3:
                    blk["response_to"] = block_name(d[0], d[1])
                    blk["error"] = BLOCK_ERRORS.get(d[2], f"unknown-0x{d[2]:02x}")
            elif sid == 5 and is_req:
                _decode_value(blk, opt, sub, d)  # Identify filter: the block value to match
            elif ln >= 2:
                # Set requests carry BlockQualifier, responses BlockInfo, before the value
                qual = _H.unpack_from(d, 0)[0]
                if sid == 4 and is_req:
                    blk["qualifier"] = qual
                    if opt == 5 and sub in (5, 6):
                        blk["reset"] = RESET_QUALIFIERS.get(qual, f"unknown-0x{qual:04x}")
                    elif opt in (1, 2) and qual in (0, 1):
                        blk["permanent"] = bool(qual & 1)
                else:
                    blk["info"] = qual
                _decode_value(blk, opt, sub, d[2:])
            elif ln:
                blk["value"] = d.hex()
            out.append(blk)
            off = q + ln + (ln & 1)  # blocks are padded to an even length
        if off > end + 1:
            return out, "last block padding runs past the data"
        return out, None

    # ------------------------------------------------------------------ pairing
    def _request(
        self, f: dict[str, Any], blocks: list[dict[str, Any]], ts: float, frame: int, src: str, dst: str
    ) -> None:
        sid = f["service_id"]
        action = SERVICE_ACTIONS.get(f["service"], "other")
        if sid == 4:
            names = {b["block"] for b in blocks}
            if names & {"ip/ip_parameter", "ip/full_ip_suite", "device_properties/name_of_station"}:
                f["changes_identity"] = True
            if names & {"control/factory_reset", "control/reset_to_factory"}:
                action = "control"
            elif names and names <= HARMLESS_SET:
                action = "diagnose"  # Signal only flashes the device's LED (identification)
        if sid == 6:  # Hello: a device announces itself, no reply
            f["status"] = "one_way"
            ident = _identity(blocks)
            if ident:
                f["identity"], f["identity_of"] = ident, "src"
            self._emit(action, f, ts, [frame], src, dst)
            return
        key = (src, f["xid"])
        old = self.pending.items.get(key)
        if old is not None and old[1]["fields"] == f:
            old[1]["frames"].append(frame)  # repeated request (DCP retries identical frames)
            return
        rec = {
            "fields": f,
            "frames": [frame],
            "ts": ts,
            "src": src,
            "dst": dst,
            "action": action,
            "answers": 0,
        }
        for r in self.pending.add(key, ts, rec):
            self._unanswered(r)

    def _response(
        self, f: dict[str, Any], blocks: list[dict[str, Any]], ts: float, frame: int, src: str, dst: str
    ) -> None:
        hit = self.pending.items.get((dst, f["xid"]))
        ident = _identity(blocks)
        if hit is None:
            f["status"] = "no_request"
            if ident:
                f["identity"], f["identity_of"] = ident, "src"
            self._emit(SERVICE_ACTIONS.get(f["service"], "other"), f, ts, [frame], dst, src)
            return
        rec = hit[1]
        if rec["fields"]["service_id"] != 5:  # Get/Set: one responder, done
            self.pending.pop((dst, f["xid"]))
        rec["answers"] += 1
        out = dict(rec["fields"])
        out["request_blocks"] = out.pop("blocks")
        out["blocks"] = blocks
        out["service_type"] = f["service_type"]
        out["status"] = "paired"
        out["latency"] = round(max(ts - rec["ts"], 0.0), 6)
        if ident:
            out["identity"], out["identity_of"] = ident, "dst"
        errs = [b["error"] for b in blocks if b.get("error", "ok") != "ok"]
        if errs:
            out["block_errors"] = errs
        self._emit(rec["action"], out, rec["ts"], sorted(set(rec["frames"] + [frame])), dst, src)

    def _unanswered(self, rec: dict[str, Any]) -> None:
        if rec["answers"]:
            return
        f = rec["fields"]
        f["status"] = "no_response"
        self._emit(rec["action"], f, rec["ts"], rec["frames"], rec["src"], rec["dst"])

    def _emit(
        self,
        action: str,
        f: dict[str, Any],
        ts: float,
        frames: list[int],
        src: str,
        dst: str,
    ) -> None:
        self.sensor.emit(PROTOCOL, action, f, ts, frames, Endpoint(mac=src), Endpoint(mac=dst))

    def _weird(self, name: str, reason: str, ts: float, frame: int, src: str, dst: str) -> None:
        self.sensor.weird(PROTOCOL, name, reason, ts, [frame], Endpoint(mac=src), Endpoint(mac=dst))

    def close(self, ts: float) -> None:
        for rec in self.pending.drain():
            self._unanswered(rec)


def _decode_value(blk: dict[str, Any], opt: int, sub: int, d: bytes) -> None:
    """The value of one block, by option/suboption (IEC 61158-6-10 4.3.1.3.x)."""
    if opt == 1 and sub == 2 and len(d) >= 12:
        blk["ip"], blk["netmask"], blk["gateway"] = _ip(d[0:4]), _ip(d[4:8]), _ip(d[8:12])
        if len(d) >= 28:
            blk["dns"] = [_ip(d[i : i + 4]) for i in range(12, 28, 4)]
    elif opt == 1 and sub == 3 and len(d) >= 12:
        blk["ip"], blk["netmask"], blk["gateway"] = _ip(d[0:4]), _ip(d[4:8]), _ip(d[8:12])
    elif opt == 1 and sub == 1 and len(d) >= 6:
        blk["mac"] = bytes(d[:6]).hex(":")
    elif opt == 2 and sub in (1, 2, 6):
        blk["value"] = _text(d)
    elif opt == 2 and sub == 3 and len(d) >= 4:
        blk["vendor_id"], blk["device_id"] = struct.unpack_from("!HH", d, 0)
    elif opt == 2 and sub == 4 and d:
        blk["role"] = [n for bit, n in DEVICE_ROLES.items() if d[0] & bit] or [f"0x{d[0]:02x}"]
    elif opt == 2 and sub == 5:
        blk["options"] = [block_name(d[i], d[i + 1]) for i in range(0, len(d) - 1, 2)]
    elif opt == 2 and sub == 7 and len(d) >= 2:
        blk["instance"] = f"{d[0]}.{d[1]}"
    elif opt == 2 and sub == 8 and len(d) >= 4:
        blk["oem_vendor_id"], blk["oem_device_id"] = struct.unpack_from("!HH", d, 0)
    elif opt == 5 and sub == 3 and len(d) >= 2:
        blk["signal"] = _H.unpack_from(d, 0)[0]
    elif opt == 3 and d:
        blk["value"] = d.hex()
    elif opt == 6 and len(d) >= 2:
        blk["value"] = _H.unpack_from(d, 0)[0]
    elif d:
        blk["value"] = d.hex()


def _identity(blocks: list[dict[str, Any]]) -> dict[str, Any]:
    """What a device reveals about itself in Identify/Get responses or Hello."""
    ident: dict[str, Any] = {}
    for b in blocks:
        n = b["block"]
        if n == "device_properties/name_of_station" and "value" in b:
            ident["name"] = b["value"]
        elif n == "device_properties/device_vendor" and "value" in b:
            ident["product"] = b["value"]  # DeviceVendorValue: the device type, e.g. "SCALANCE X-200"
        elif n == "device_properties/device_id" and "vendor_id" in b:
            ident["vendor_id"], ident["device_id"] = b["vendor_id"], b["device_id"]
            if b["vendor_id"] in PNIO_VENDORS:
                ident["vendor"] = PNIO_VENDORS[b["vendor_id"]]
        elif n in ("ip/ip_parameter", "ip/full_ip_suite") and "ip" in b:
            ident["ip"], ident["netmask"], ident["gateway"] = b["ip"], b["netmask"], b["gateway"]
        elif n == "ip/mac_address" and "mac" in b:
            ident["mac"] = b["mac"]
        elif n == "device_properties/device_role" and "role" in b:
            ident["role"] = b["role"]
        elif n == "device_properties/alias_name" and "value" in b:
            ident["alias"] = b["value"]
    return ident


def _rt_class(fid: int) -> str:
    """PROFINET RT frame id ranges (IEC 61158-6-10 table "FrameID range")."""
    if fid < 0x0100:
        return "time_sync"
    if fid < 0x8000:
        return "rt_class_3"
    if fid < 0xC000:
        return "rt_class_2"
    if fid < 0xFC00:
        return "rt_class_1"
    if fid in (0xFC01, 0xFE01):
        return "alarm"
    if fid >= 0xFF00:
        return "ptcp"
    return "other"
