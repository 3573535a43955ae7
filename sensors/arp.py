"""ARP (RFC 826) over Ethernet: one `arp` event per frame, for IP-MAC bindings and ARP-poisoning checks.

The sensor core hands ARP frames (EtherType 0x0806) to this layer-2 analyzer. Only the Ethernet/IPv4
form (htype 1, ptype 0x0800, hlen 6, plen 4) is decoded into addresses; other forms keep their codes.
"""

from __future__ import annotations

import socket
import struct
from typing import Any

from icsight.events import Endpoint
from sensors.base import FrameAnalyzer

PROTOCOL = "arp"
ETHERTYPES = (0x0806,)
ROLES = ("sender", "target")

_HDR = struct.Struct("!HHBBH")  # htype, ptype, hlen, plen, oper (RFC 826 "Packet format")

OPERATIONS = {
    1: "request",
    2: "reply",
    3: "rarp_request",
    4: "rarp_reply",
    8: "inarp_request",
    9: "inarp_reply",
}  # IANA arp-parameters "Operation Codes"


def parse_arp(payload: bytes) -> tuple[dict[str, Any] | None, str | None]:
    """Decode one ARP packet; returns (record, None) or (None, reason) when it is too short."""
    if len(payload) < 8:
        return None, f"{len(payload)} bytes, header needs 8"
    htype, ptype, hlen, plen, oper = _HDR.unpack_from(payload, 0)
    rec: dict[str, Any] = {
        "op_code": oper,
        "op": OPERATIONS.get(oper, f"unknown-0x{oper:02x}"),
        "htype": htype,
        "ptype": ptype,
    }
    need = 8 + 2 * (hlen + plen)
    if len(payload) < need:
        return None, f"{len(payload)} bytes, addresses need {need}"
    if htype == 1 and ptype == 0x0800 and hlen == 6 and plen == 4:
        o = 8
        rec["sender_mac"] = payload[o : o + 6].hex(":")
        rec["sender_ip"] = socket.inet_ntoa(payload[o + 6 : o + 10])
        rec["target_mac"] = payload[o + 10 : o + 16].hex(":")
        rec["target_ip"] = socket.inet_ntoa(payload[o + 16 : o + 20])
        # Gratuitous ARP: sender announces its own address (sender IP == target IP), request or reply.
        rec["gratuitous"] = rec["sender_ip"] == rec["target_ip"]
    return rec, None


class L2Analyzer(FrameAnalyzer):
    """Every ARP frame of a sensor: emits kind "arp" (action "discover" for requests, "other" else)."""

    PROTOCOL = PROTOCOL

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
        rec, problem = parse_arp(payload)
        src, dst = Endpoint(mac=src_mac or None), Endpoint(mac=dst_mac or None)
        if rec is None:
            self.sensor.weird(PROTOCOL, "truncated_arp", problem or "", ts, [frame], src, dst)
            return
        if "sender_ip" in rec:
            src = Endpoint(ip=rec["sender_ip"], mac=src_mac or None)
            dst = Endpoint(ip=rec["target_ip"], mac=dst_mac or None)
            # The Ethernet source and the ARP sender MAC differ in proxy ARP and in some spoofing tools.
            rec["eth_mismatch"] = bool(src_mac) and src_mac != rec["sender_mac"]
        if vlan is not None:
            rec["vlan"] = vlan
        rec["status"] = "one_way"
        self.sensor.emit(
            PROTOCOL, "discover" if rec["op_code"] in (1, 3, 8) else "other", rec, ts, [frame], src, dst
        )
