"""Application PDUs of the range's protocols, packed with struct: Modbus/TCP, S7comm, DNP3, IEC 104.

Each builder returns the bytes a real stack puts in one TCP segment. Layouts follow the specs the
sensor cites (Modbus AP V1.1b3 / TCP V1.0b; S7comm as the Wireshark dissector; IEEE 1815-2012;
IEC 60870-5-101/104), so tshark and the sensor dissect them as they would a real device's traffic.
"""

from __future__ import annotations

import struct
from datetime import UTC, datetime

# ---------------------------------------------------------------------------------------- Modbus/TCP
_MBAP = struct.Struct("!HHHB")


def mbap(tid: int, unit: int, pdu: bytes) -> bytes:
    """MBAP header (TCP 3.1.3): transaction id, protocol 0, length of unit id + PDU, unit id."""
    return _MBAP.pack(tid & 0xFFFF, 0, len(pdu) + 1, unit) + pdu


def mb_read_req(fc: int, address: int, count: int) -> bytes:
    """FC 1/2/3/4 request (AP 6.1-6.4)."""
    return struct.pack("!BHH", fc, address, count)


def mb_read_resp(fc: int, values: list[int]) -> bytes:
    """FC 3/4: byte count + registers; FC 1/2: byte count + packed bits, LSB first (AP 6.1)."""
    if fc in (3, 4):
        return struct.pack(f"!BB{len(values)}H", fc, 2 * len(values), *(v & 0xFFFF for v in values))
    nbytes = (len(values) + 7) // 8
    packed = bytearray(nbytes)
    for i, v in enumerate(values):
        if v:
            packed[i // 8] |= 1 << (i % 8)
    return struct.pack("!BB", fc, nbytes) + bytes(packed)


def mb_write_single(fc: int, address: int, value: int) -> bytes:
    """FC 5 (coil: 0xFF00 on / 0x0000 off) or FC 6 (register); the response echoes it (AP 6.5, 6.6)."""
    if fc == 5:
        value = 0xFF00 if value else 0
    return struct.pack("!BHH", fc, address, value & 0xFFFF)


def mb_write_multiple_req(address: int, values: list[int]) -> bytes:
    """FC 16 request (AP 6.12)."""
    n = len(values)
    return struct.pack(f"!BHHB{n}H", 16, address, n, 2 * n, *(v & 0xFFFF for v in values))


def mb_write_multiple_resp(address: int, count: int) -> bytes:
    return struct.pack("!BHH", 16, address, count)


def mb_exception(fc: int, code: int) -> bytes:
    """Exception response (AP 7): function code | 0x80, exception code."""
    return struct.pack("!BB", fc | 0x80, code)


def mb_device_id_req() -> bytes:
    """FC 43 / MEI 14 read device identification, basic stream from object 0 (AP 6.21)."""
    return b"\x2b\x0e\x01\x00"


def mb_device_id_resp(vendor: str, product_code: str, revision: str) -> bytes:
    objs = [vendor.encode(), product_code.encode(), revision.encode()]
    body = b"".join(bytes([i, len(v)]) + v for i, v in enumerate(objs))
    return b"\x2b\x0e\x01\x01\x00\x00" + bytes([len(objs)]) + body


def mb_write_file_record(file_no: int, record_no: int, data: bytes) -> bytes:
    """FC 21 write file record, one sub-request of reference type 6 (AP 6.15); the response echoes it."""
    if len(data) % 2:
        data += b"\x00"
    sub = struct.pack("!BHHH", 6, file_no, record_no, len(data) // 2) + data
    return struct.pack("!BB", 21, len(sub)) + sub


def mb_diagnostics(sub: int, data: int = 0) -> bytes:
    """FC 8 diagnostics with a sub-function (AP 6.8); the response echoes it."""
    return struct.pack("!BHH", 8, sub, data)


# ------------------------------------------------------------------------------------ S7comm / COTP
def tpkt(payload: bytes) -> bytes:
    """RFC 1006 section 6: version 3, reserved, length including the 4-byte header."""
    return struct.pack("!BBH", 3, 0, 4 + len(payload)) + payload


def cotp_cr(src_ref: int, src_tsap: int, dst_tsap: int) -> bytes:
    """Connection request (ISO 8073 13.3) with TPDU size 1024 and the S7 TSAPs."""
    params = b"\xc0\x01\x0a" + struct.pack("!BBH", 0xC1, 2, src_tsap) + struct.pack("!BBH", 0xC2, 2, dst_tsap)
    body = struct.pack("!BHHB", 0xE0, 0, src_ref, 0) + params
    return tpkt(bytes([len(body)]) + body)


def cotp_cc(dst_ref: int, src_ref: int, src_tsap: int, dst_tsap: int) -> bytes:
    """Connection confirm (ISO 8073 13.4)."""
    params = b"\xc0\x01\x0a" + struct.pack("!BBH", 0xC1, 2, src_tsap) + struct.pack("!BBH", 0xC2, 2, dst_tsap)
    body = struct.pack("!BHHB", 0xD0, dst_ref, src_ref, 0) + params
    return tpkt(bytes([len(body)]) + body)


def s7(rosctr: int, pdu_ref: int, param: bytes, data: bytes = b"", error: int | None = None) -> bytes:
    """S7 PDU in a COTP DT TPDU (EOT) in TPKT: 0x32, ROSCTR, reference, lengths (+ error in ACK_DATA)."""
    hdr = struct.pack("!BBHHHH", 0x32, rosctr, 0, pdu_ref & 0xFFFF, len(param), len(data))
    if rosctr in (2, 3):
        hdr += struct.pack("!H", error or 0)
    return tpkt(b"\x02\xf0\x80" + hdr + param + data)


JOB, ACK_DATA, USERDATA = 1, 3, 7
AREAS = {"DB": 0x84, "I": 0x81, "Q": 0x82, "M": 0x83}


def s7_setup_req(pdu_len: int = 480) -> bytes:
    return struct.pack("!BBHHH", 0xF0, 0, 1, 1, pdu_len)


def s7_item(area: str, db: int, offset: int, length: int) -> bytes:
    """S7-ANY variable specification (syntax id 0x10), transport size BYTE, bit address offset*8."""
    addr = offset * 8
    return struct.pack(
        "!BBBBHHB", 0x12, 0x0A, 0x10, 0x02, length, db if area == "DB" else 0, AREAS[area]
    ) + addr.to_bytes(3, "big")


def s7_read_req(items: list[bytes]) -> bytes:
    return bytes([0x04, len(items)]) + b"".join(items)


def s7_read_resp(datas: list[bytes]) -> tuple[bytes, bytes]:
    """Param and data of a read-var ACK_DATA: per item return code 0xFF, transport BYTE/WORD (4), bits."""
    out = bytearray()
    for i, d in enumerate(datas):
        out += struct.pack("!BBH", 0xFF, 0x04, 8 * len(d)) + d
        if len(d) % 2 and i < len(datas) - 1:
            out += b"\x00"
    return bytes([0x04, len(datas)]), bytes(out)


def s7_write_req(items: list[bytes], datas: list[bytes]) -> tuple[bytes, bytes]:
    out = bytearray()
    for i, d in enumerate(datas):
        out += struct.pack("!BBH", 0x00, 0x04, 8 * len(d)) + d
        if len(d) % 2 and i < len(datas) - 1:
            out += b"\x00"
    return bytes([0x05, len(items)]) + b"".join(items), bytes(out)


def s7_write_resp(n: int) -> tuple[bytes, bytes]:
    return bytes([0x05, n]), b"\xff" * n


def s7_szl_req(szl_id: int, index: int, seq: int = 0) -> tuple[bytes, bytes]:
    """Userdata CPU functions / read SZL request: parameter head 000112, method 0x11, group 0x44."""
    return bytes([0x00, 0x01, 0x12, 0x04, 0x11, 0x44, 0x01, seq]), struct.pack(
        "!BBHHH", 0xFF, 0x09, 4, szl_id, index
    )


def s7_szl_resp(
    szl_id: int, index: int, entry_len: int, entries: list[bytes], seq: int = 1
) -> tuple[bytes, bytes]:
    """Read SZL response (method 0x12, group 0x84): last data unit, no error, the partial list."""
    body = struct.pack("!HHHH", szl_id, index, entry_len, len(entries)) + b"".join(entries)
    param = bytes([0x00, 0x01, 0x12, 0x08, 0x12, 0x84, 0x01, seq, 0x00, 0x00, 0x00, 0x00])
    return param, struct.pack("!BBH", 0xFF, 0x09, len(body)) + body


def _ver(v: str) -> tuple[int, int, int]:
    parts = [int(x) for x in v.lstrip("Vv").split(".")[:3]] + [0, 0, 0]
    return parts[0], parts[1], parts[2]


def szl_0011(order_number: str, firmware: str, hardware: int = 1) -> list[bytes]:
    """SZL 0x0011 module identification: index 1 (module), 6 (hardware), 7 (firmware); 28 bytes each."""
    mlfb = order_number.encode().ljust(20)[:20]
    a, b, c = _ver(firmware)
    return [
        struct.pack("!H20sHHH", 1, mlfb, 0, 0x2020, hardware),
        struct.pack("!H20sHHH", 6, mlfb, 0, 0x0000, hardware),
        struct.pack("!H20sHHH", 7, b" " * 20, 0, 0x5600 | a, (b << 8) | c),
    ]


def szl_001c(entries: dict[int, str]) -> list[bytes]:
    """SZL 0x001C component identification: index + 32 bytes of text (1 system, 2 module name, 5 serial)."""
    return [struct.pack("!H", i) + v.encode()[:32].ljust(32, b"\x00") for i, v in sorted(entries.items())]


def s7_plc_stop() -> bytes:
    """PLC STOP job (function 0x29): 5 unknown bytes, then the PI service name P_PROGRAM."""
    return b"\x29\x00\x00\x00\x00\x00\x09P_PROGRAM"


def s7_pi(service: str, block: bytes = b"") -> bytes:
    """PI service job (function 0x28): 7 unknown bytes (00.. fd), parameter block, service name."""
    name = service.encode()
    return (
        b"\x28\x00\x00\x00\x00\x00\x00\xfd"
        + struct.pack("!H", len(block))
        + block
        + bytes([len(name)])
        + name
    )


def s7_filename(block_type: str, number: int, fs: str = "P") -> bytes:
    return f"_{block_type}{number:05d}{fs}".encode()


def s7_request_download(fname: bytes, load_len: int, mc7_len: int) -> bytes:
    part2 = f"1{load_len:06d}{mc7_len:06d}".encode()
    return b"\x1a\x00\x01\x00\x00\x00\x00\x00" + bytes([len(fname)]) + fname + bytes([len(part2)]) + part2


def s7_blockctl_job(fc: int, fname: bytes) -> bytes:
    """Download block (0x1B) / download ended (0x1C) job, sent by the PLC to the programming device."""
    return bytes([fc, 0x00, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00, len(fname)]) + fname


# ---------------------------------------------------------------------------------------------- DNP3
def _crc_table() -> list[int]:
    tab = []
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0xA6BC if c & 1 else c >> 1
        tab.append(c)
    return tab


_CRC = _crc_table()


def dnp3_crc(b: bytes) -> bytes:
    """IEEE 1815 9.2.4.1.2: CRC-16 polynomial 0x3D65 (reflected 0xA6BC), complemented, little endian."""
    c = 0
    for x in b:
        c = (c >> 8) ^ _CRC[(c ^ x) & 0xFF]
    return struct.pack("<H", ~c & 0xFFFF)


def dnp3_link(ctrl: int, dst: int, src: int, user: bytes) -> bytes:
    """A link frame: header + CRC, then user data in 16-byte blocks each followed by its CRC (clause 9)."""
    hdr = struct.pack("<HBBHH", 0x6405, 5 + len(user), ctrl, dst, src)
    out = [hdr, dnp3_crc(hdr)]
    for i in range(0, len(user), 16):
        blk = user[i : i + 16]
        out += [blk, dnp3_crc(blk)]
    return b"".join(out)


def dnp3_frame(master_to_outstation: bool, dst: int, src: int, tseq: int, apdu: bytes) -> bytes:
    """One-segment application fragment: transport FIR|FIN|seq, link UNCONFIRMED_USER_DATA (PRM=1)."""
    ctrl = 0xC4 if master_to_outstation else 0x44
    return dnp3_link(ctrl, dst, src, bytes([0xC0 | (tseq & 0x3F)]) + apdu)


def dnp3_req(seq: int, fc: int, objects: bytes = b"") -> bytes:
    return bytes([0xC0 | (seq & 0x0F), fc]) + objects


def dnp3_resp(seq: int, objects: bytes, iin: int = 0, fc: int = 0x81) -> bytes:
    return bytes([0xC0 | (seq & 0x0F), fc]) + struct.pack("<H", iin) + objects


def dnp3_class_objs(classes: tuple[int, ...]) -> bytes:
    """Group 60 variation 1..4 (class 0..3 data), qualifier 0x06 (all objects)."""
    return b"".join(bytes([60, c + 1, 0x06]) for c in classes)


def dnp3_binary_inputs(values: list[bool]) -> bytes:
    """Group 1 var 2 (binary input with flags), qualifier 0x00 start/stop; flag ONLINE | state bit 7."""
    if not values:
        return b""
    return bytes([1, 2, 0x00, 0, len(values) - 1]) + bytes(0x01 | (0x80 if v else 0) for v in values)


def dnp3_analog_inputs(values: list[int]) -> bytes:
    """Group 30 var 1 (32-bit analog input with flag), qualifier 0x00; flag ONLINE."""
    if not values:
        return b""
    return bytes([30, 1, 0x00, 0, len(values) - 1]) + b"".join(struct.pack("<Bi", 0x01, v) for v in values)


def dnp3_crob(index: int, code: int, on_ms: int = 1000, off_ms: int = 0, status: int = 0) -> bytes:
    """Group 12 var 1 CROB, qualifier 0x28 (2-octet count, 2-octet index prefix); 11 octets of control."""
    return bytes([12, 1, 0x28]) + struct.pack("<HHBBIIB", 1, index, code, 1, on_ms, off_ms, status)


def dnp3_time_delay(ms: int) -> bytes:
    """Group 52 var 2 (fine time delay, ms), qualifier 0x07 count 1: the cold restart answer."""
    return bytes([52, 2, 0x07, 1]) + struct.pack("<H", ms)


# ------------------------------------------------------------------------------------------- IEC 104
STARTDT_ACT, STARTDT_CON, STOPDT_ACT, STOPDT_CON, TESTFR_ACT, TESTFR_CON = 0x07, 0x0B, 0x13, 0x23, 0x43, 0x83


def apci_u(code: int) -> bytes:
    """U-format APCI (104 section 5.3)."""
    return bytes([0x68, 4, code, 0, 0, 0])


def apci_s(nr: int) -> bytes:
    """S-format APCI: receive sequence number N(R) (104 section 5.2)."""
    return bytes([0x68, 4, 1, 0]) + struct.pack("<H", (nr & 0x7FFF) << 1)


def apci_i(ns: int, nr: int, asdu: bytes) -> bytes:
    """I-format APCI: N(S), N(R) shifted left by one (104 section 5.1)."""
    return bytes([0x68, 4 + len(asdu)]) + struct.pack("<HH", (ns & 0x7FFF) << 1, (nr & 0x7FFF) << 1) + asdu


def asdu(type_id: int, cot: int, ca: int, objects: list[bytes], negative: bool = False, oa: int = 0) -> bytes:
    """Data unit identifier (101 7.2; 104 sizes: COT 2, CA 2) + information objects (IOA 3 octets each)."""
    return struct.pack("<BBBBH", type_id, len(objects), cot | (0x40 if negative else 0), oa, ca) + b"".join(
        objects
    )


def ioa(n: int) -> bytes:
    return n.to_bytes(3, "little")


def cp56(ts: float) -> bytes:
    """CP56Time2a (101 7.2.6.18): ms, minutes, hours, day of month + day of week, month, year - 2000."""
    d = datetime.fromtimestamp(ts, UTC)
    ms = d.second * 1000 + d.microsecond // 1000
    return struct.pack("<HBBBBB", ms, d.minute, d.hour, d.day | (d.isoweekday() << 5), d.month, d.year - 2000)


def m_sp(n: int, value: bool, ts: float | None = None) -> bytes:
    """M_SP_NA_1 / M_SP_TB_1 element: SIQ (SPI bit 0), with CP56 when ts is given."""
    return ioa(n) + bytes([1 if value else 0]) + (cp56(ts) if ts is not None else b"")


def m_me_nc(n: int, value: float, ts: float | None = None) -> bytes:
    """M_ME_NC_1 / M_ME_TF_1 element: short float + QDS, with CP56 when ts is given."""
    return ioa(n) + struct.pack("<fB", value, 0) + (cp56(ts) if ts is not None else b"")


M_SP_NA_1, M_ME_NC_1, M_SP_TB_1, M_ME_TF_1, C_SC_NA_1, C_IC_NA_1 = 1, 13, 30, 36, 45, 100
COT_SPONT, COT_ACT, COT_ACTCON, COT_ACTTERM, COT_INROGEN = 3, 6, 7, 10, 20
