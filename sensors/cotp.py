"""TPKT (RFC 1006) framing and COTP (ISO 8073 / X.224 class 0) TPDUs, the transport of S7comm.

TPKT: version 3, reserved, 16-bit length of the whole packet (header included), RFC 1006 section 6.
COTP: length indicator (LI, header length without itself), TPDU code in the high nibble of the next
byte (ISO 8073 section 13.2), then the fixed part and variable parameters (code, length, value).
Helpers here are pure functions used by `sensors.s7comm.TcpAnalyzer`; nothing is registered.
"""

from __future__ import annotations

import struct
from typing import Any

TPKT_VERSION = 3
TPKT_HEADER = 4
MIN_TPKT = 7                    # TPKT header + LI + code + one more byte (DT: TPDU-NR/EOT)

_H = struct.Struct("!H")
_CR = struct.Struct("!HHB")     # dst-ref, src-ref, class/options (CR, CC; ISO 8073 13.3, 13.4)
_DR = struct.Struct("!HHB")     # dst-ref, src-ref, reason (DR; 13.5)
_DC = struct.Struct("!HH")      # dst-ref, src-ref (DC; 13.6)
_ER = struct.Struct("!HB")      # dst-ref, reject cause (ER; 13.12)

# TPDU codes (ISO 8073 table 8), high nibble of byte 1.
CR, CC, DR, DC, DT, ED, AK, EA, RJ, ER = 0xE0, 0xD0, 0x80, 0xC0, 0xF0, 0x10, 0x60, 0x20, 0x50, 0x70
TPDU_NAMES = {CR: "CR", CC: "CC", DR: "DR", DC: "DC", DT: "DT", ED: "ED", AK: "AK", EA: "EA", RJ: "RJ",
              ER: "ER"}

# Variable-part parameter codes (ISO 8073 13.3.4).
P_TPDU_SIZE, P_SRC_TSAP, P_DST_TSAP = 0xC0, 0xC1, 0xC2

DR_REASONS = {0x00: "not_specified", 0x01: "congestion", 0x02: "session_entity_not_attached",
              0x03: "address_unknown", 0x80: "normal", 0x81: "remote_congestion",
              0x82: "connection_negotiation_failed", 0x83: "duplicate_source_reference",
              0x84: "mismatched_references", 0x85: "protocol_error", 0x87: "reference_overflow",
              0x88: "connection_request_refused", 0x8A: "header_or_parameter_length_invalid"}
ER_CAUSES = {0x00: "reason_not_specified", 0x01: "invalid_parameter_code", 0x02: "invalid_tpdu_type",
             0x03: "invalid_parameter_value"}
# S7 TSAP first byte: connection resource (the "connection type" of the S7 stack).
TSAP_TYPES = {0x01: "PG", 0x02: "OP", 0x03: "S7_BASIC"}


def tpkt_len(buf: Any, off: int) -> int | None:
    """StreamBuffer callback: total TPKT length, None if the header is incomplete, -1 if not TPKT."""
    if len(buf) - off < TPKT_HEADER:
        return None
    if buf[off] != TPKT_VERSION:
        return -1
    n = (buf[off + 2] << 8) | buf[off + 3]
    return n if n >= MIN_TPKT else -1


def tsap_info(raw: bytes) -> dict[str, Any]:
    """A TSAP as JSON: hex, and for 2-byte S7 TSAPs the connection type, rack and slot.

    Byte 2 of an S7 TSAP is rack * 32 + slot (rack in bits 5-7, slot in bits 0-4); S7-1200/1500
    string TSAPs ("SIMATIC-ROOT-HMI") are given as text.
    """
    out: dict[str, Any] = {"hex": raw.hex()}
    if len(raw) == 2 and raw[0] in TSAP_TYPES:
        out["type"] = TSAP_TYPES[raw[0]]
        out["rack"], out["slot"] = raw[1] >> 5, raw[1] & 0x1F
    elif raw and all(0x20 <= c < 0x7F for c in raw):
        out["text"] = raw.decode("ascii")
    return out


def parse_params(pdu: bytes, off: int, end: int) -> tuple[dict[str, Any], str | None]:
    """Variable part of CR/CC: TPDU size and TSAPs. Returns (fields, error or None)."""
    out: dict[str, Any] = {}
    while off < end:
        if off + 2 > end:
            return out, "parameter header cut short"
        code, plen = pdu[off], pdu[off + 1]
        val = pdu[off + 2:off + 2 + plen]
        if off + 2 + plen > end:
            return out, f"parameter 0x{code:02x} runs past the header"
        if code == P_TPDU_SIZE and plen == 1:
            out["tpdu_size"] = 1 << val[0] if val[0] < 32 else val[0]
        elif code == P_SRC_TSAP:
            out["src_tsap"] = tsap_info(bytes(val))
        elif code == P_DST_TSAP:
            out["dst_tsap"] = tsap_info(bytes(val))
        off += 2 + plen
    return out, None


def parse_cotp(pdu: bytes) -> tuple[int, dict[str, Any], int, str | None]:
    """Decode the COTP header of one TPKT packet.

    Returns (tpdu code, header fields, offset of the user data, error or None). For DT the fields
    hold `eot` (last data unit of a TSDU, ISO 8073 13.7.3) and `tpdu_nr`.
    """
    li = pdu[4]
    hdr_end = 5 + li
    if li < 2 or hdr_end > len(pdu):
        return -1, {}, len(pdu), f"COTP length indicator {li} does not fit the TPKT packet"
    code = pdu[5] & 0xF0
    f: dict[str, Any] = {}
    if code == DT:
        f["eot"] = bool(pdu[6] & 0x80)
        f["tpdu_nr"] = pdu[6] & 0x7F
        return code, f, hdr_end, None
    if code in (CR, CC):
        if li < 6:
            return code, f, hdr_end, f"{TPDU_NAMES[code]} header too short (LI {li})"
        f["dst_ref"], f["src_ref"], cls = _CR.unpack_from(pdu, 6)
        f["class"] = cls >> 4
        params, err = parse_params(pdu, 11, hdr_end)
        f.update(params)
        return code, f, hdr_end, err
    if code == DR:
        if li < 6:
            return code, f, hdr_end, f"DR header too short (LI {li})"
        f["dst_ref"], f["src_ref"], reason = _DR.unpack_from(pdu, 6)
        f["reason"] = DR_REASONS.get(reason, f"unknown-0x{reason:02x}")
        return code, f, hdr_end, None
    if code == DC:
        if li < 5:
            return code, f, hdr_end, f"DC header too short (LI {li})"
        f["dst_ref"], f["src_ref"] = _DC.unpack_from(pdu, 6)
        return code, f, hdr_end, None
    if code == ER:
        if li < 4:
            return code, f, hdr_end, f"ER header too short (LI {li})"
        f["dst_ref"], cause = _ER.unpack_from(pdu, 6)
        f["cause"] = ER_CAUSES.get(cause, f"unknown-0x{cause:02x}")
        return code, f, hdr_end, None
    return code, f, hdr_end, None
