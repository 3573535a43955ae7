"""EtherNet/IP encapsulation + CIP (ODVA CIP Vol. 1 "Common Industrial Protocol", Vol. 2 "EtherNet/IP
Adaptation of CIP"; Rockwell 1756-PM020 "Logix 5000 Data Access" for the tag services).

Events:
- kind "enip": encapsulation commands that are not CIP carriers (NOP, ListIdentity, ListServices,
  ListInterfaces, RegisterSession, UnRegisterSession, IndicateStatus, Cancel, unknown ones), paired by
  (command, sender context); and implicit (class 0/1) I/O datagrams on UDP 2222, one per datagram
  ("one_way"). A UDP ListIdentity broadcast gets one event per responder (pairing across flows through a
  per-sensor table).
- kind "cip": one event per CIP request/response of SendRRData (paired by session + sender context)
  and SendUnitData (connected explicit messaging, paired by CIP sequence count within the TCP
  connection). A Multiple_Service_Packet gives a wrapper event plus one event per embedded service;
  an Unconnected_Send is unwrapped (the event describes the embedded request, with its route path).
"""

from __future__ import annotations

import struct
import weakref
from typing import Any

from sensors.base import Analyzer, Pending, StreamBuffer, as_frames, hexstr

PROTOCOL = "enip"
TCP_PORTS = (44818,)
UDP_PORTS = (44818, 2222)
ROLES = ("client", "server")  # explicit messaging: originator (scanner/HMI/workstation) and target

# --- encapsulation (Vol. 2 section 2-3) -------------------------------------------------------------
_HDR = struct.Struct("<HHII8sI")  # command, length, session, status, sender context, options
HDR_LEN = 24
_H = struct.Struct("<H")
_I = struct.Struct("<I")
_HH = struct.Struct("<HH")
_II = struct.Struct("<II")

COMMANDS = {
    0x0000: "NOP",
    0x0001: "ListTargets",
    0x0004: "ListServices",
    0x0063: "ListIdentity",
    0x0064: "ListInterfaces",
    0x0065: "RegisterSession",
    0x0066: "UnRegisterSession",
    0x006F: "SendRRData",
    0x0070: "SendUnitData",
    0x0072: "IndicateStatus",
    0x0073: "Cancel",
}
CMD_ACTIONS = {
    "NOP": "other",
    "ListTargets": "discover",
    "ListServices": "discover",
    "ListIdentity": "discover",
    "ListInterfaces": "discover",
    "RegisterSession": "session",
    "UnRegisterSession": "session",
    "IndicateStatus": "other",
    "Cancel": "other",
}
ONE_WAY_COMMANDS = frozenset({0x0000, 0x0066, 0x0072, 0x0073})  # no reply by design (Vol. 2 2-4)
DISCOVER_COMMANDS = frozenset({0x0001, 0x0004, 0x0063, 0x0064})  # may be broadcast over UDP

ENCAP_STATUS = {  # Vol. 2 table 2-3.3
    0x0000: "Success",
    0x0001: "Invalid or unsupported command",
    0x0002: "Insufficient memory",
    0x0003: "Incorrect data",
    0x0064: "Invalid session handle",
    0x0065: "Invalid length",
    0x0069: "Unsupported encapsulation protocol revision",
}

# Common packet format item types (Vol. 2 table 2-6.3)
CPF_ITEMS = {
    0x0000: "null_address",
    0x000C: "list_identity",
    0x0086: "list_interfaces",
    0x00A1: "connected_address",
    0x00B1: "connected_data",
    0x00B2: "unconnected_data",
    0x0100: "list_services",
    0x8000: "sockaddr_o2t",
    0x8001: "sockaddr_t2o",
    0x8002: "sequenced_address",
}

# --- CIP (Vol. 1) -----------------------------------------------------------------------------------
SERVICES = {  # common services (Vol. 1 appendix A-3); 0x4B-0x63 are object specific, see below
    0x01: "Get_Attribute_All",
    0x02: "Set_Attribute_All",
    0x03: "Get_Attribute_List",
    0x04: "Set_Attribute_List",
    0x05: "Reset",
    0x06: "Start",
    0x07: "Stop",
    0x08: "Create",
    0x09: "Delete",
    0x0A: "Multiple_Service_Packet",
    0x0D: "Apply_Attributes",
    0x0E: "Get_Attribute_Single",
    0x10: "Set_Attribute_Single",
    0x11: "Find_Next_Object_Instance",
    0x14: "Error_Response",
    0x15: "Restore",
    0x16: "Save",
    0x17: "No_Operation",
    0x18: "Get_Member",
    0x19: "Set_Member",
    0x1A: "Insert_Member",
    0x1B: "Remove_Member",
    0x1C: "Group_Sync",
}
CM_SERVICES = {  # Connection Manager object (class 0x06), Vol. 1 3-5.5
    0x4E: "Forward_Close",
    0x52: "Unconnected_Send",
    0x54: "Forward_Open",
    0x56: "Get_Connection_Data",
    0x57: "Search_Connection_Data",
    0x5A: "Get_Connection_Owner",
    0x5B: "Large_Forward_Open",
}
TAG_SERVICES = {  # Rockwell Logix data access (1756-PM020) on symbolic paths / Symbol, Template objects
    0x4C: "Read_Tag",
    0x4D: "Write_Tag",
    0x4E: "Read_Modify_Write_Tag",
    0x52: "Read_Tag_Fragmented",
    0x53: "Write_Tag_Fragmented",
    0x55: "Get_Instance_Attribute_List",
}
FILE_SERVICES = {  # File object (class 0x37), Vol. 1 5A-42
    0x4B: "Initiate_Upload",
    0x4C: "Initiate_Download",
    0x4D: "Initiate_Partial_Read",
    0x4E: "Initiate_Partial_Write",
    0x4F: "Upload_Transfer",
    0x50: "Download_Transfer",
    0x51: "Clear_File",
}

CLASSES = {
    0x01: "Identity",
    0x02: "Message Router",
    0x03: "DeviceNet",
    0x04: "Assembly",
    0x05: "Connection",
    0x06: "Connection Manager",
    0x07: "Register",
    0x08: "Discrete Input Point",
    0x09: "Discrete Output Point",
    0x0A: "Analog Input Point",
    0x0B: "Analog Output Point",
    0x0E: "Presence Sensing",
    0x0F: "Parameter",
    0x10: "Parameter Group",
    0x12: "Group",
    0x1D: "Discrete Input Group",
    0x1E: "Discrete Output Group",
    0x1F: "Discrete Group",
    0x20: "Analog Input Group",
    0x21: "Analog Output Group",
    0x22: "Analog Group",
    0x23: "Position Sensor",
    0x24: "Position Controller Supervisor",
    0x25: "Position Controller",
    0x26: "Block Sequencer",
    0x27: "Command Block",
    0x28: "Motor Data",
    0x29: "Control Supervisor",
    0x2A: "AC/DC Drive",
    0x2B: "Acknowledge Handler",
    0x2C: "Overload",
    0x2D: "Softstart",
    0x2E: "Selection",
    0x30: "S-Device Supervisor",
    0x31: "S-Analog Sensor",
    0x32: "S-Analog Actor",
    0x33: "S-Single Stage Controller",
    0x34: "S-Gas Calibration",
    0x35: "Trip Point",
    0x37: "File",
    0x38: "S-Partial Pressure",
    0x39: "Safety Supervisor",
    0x3A: "Safety Validator",
    0x3B: "Safety Discrete Output Point",
    0x3C: "Safety Discrete Output Group",
    0x3D: "Safety Discrete Input Point",
    0x3E: "Safety Discrete Input Group",
    0x3F: "Safety Dual Channel Output",
    0x40: "S-Sensor Calibration",
    0x41: "Event Log",
    0x42: "Motion Axis",
    0x43: "Time Sync",
    0x44: "Modbus",
    0x45: "Originator Connection List",
    0x46: "Modbus Serial Link",
    0x47: "Device Level Ring",
    0x48: "QoS",
    0x49: "Safety Analog Input Point",
    0x4A: "Safety Analog Input Group",
    0x4B: "Safety Dual Channel Analog Input",
    0x4C: "SERCOS III Link",
    0x4D: "Target Connection List",
    0x4E: "Base Energy",
    0x4F: "Electrical Energy",
    0x50: "Non-Electrical Energy",
    0x51: "Base Switch",
    0x52: "SNMP",
    0x53: "Power Management",
    0x54: "RSTP Bridge",
    0x55: "RSTP Port",
    0x56: "PRP/HSR Protocol",
    0x57: "PRP/HSR Nodes Table",
    0x58: "Safety Feedback",
    0x59: "Safety Dual Channel Feedback",
    0x5A: "Safety Stop Functions",
    0x5B: "Safety Limit Functions",
    0x5C: "Power Curtailment",
    0x5D: "CIP Security",
    0x5E: "EtherNet/IP Security",
    0x5F: "Certificate Management",
    # Rockwell Logix objects (vendor specific range 0x64-0xC7): only the ones public references agree on
    0x67: "PCCC",
    0x68: "Program (Rockwell)",
    0x6B: "Symbol",
    0x6C: "Template",
    0x6D: "Routine (Rockwell)",
    0x8B: "Wall Clock Time (Rockwell)",
    0xF0: "ControlNet",
    0xF1: "ControlNet Keeper",
    0xF2: "ControlNet Scheduling",
    0xF3: "Connection Configuration",
    0xF4: "Port",
    0xF5: "TCP/IP Interface",
    0xF6: "Ethernet Link",
    0xF7: "CompoNet Link",
    0xF8: "CompoNet Repeater",
}
# Classes whose changes are program/logic/file transfers rather than data writes (docs/protocols/enip.md):
# File object, Rockwell Program and Routine objects, and 0x6A (unnamed; addressed under Program 0x68 by the
# Create and vendor services of the logic download in the QuickDraw EIP-RebootorRestart capture).
PROGRAM_CLASSES = frozenset({0x37, 0x68, 0x6A, 0x6D})

GENERAL_STATUS = {  # Vol. 1 appendix B-1
    0x00: "Success",
    0x01: "Connection failure",
    0x02: "Resource unavailable",
    0x03: "Invalid parameter value",
    0x04: "Path segment error",
    0x05: "Path destination unknown",
    0x06: "Partial transfer",
    0x07: "Connection lost",
    0x08: "Service not supported",
    0x09: "Invalid attribute value",
    0x0A: "Attribute list error",
    0x0B: "Already in requested mode/state",
    0x0C: "Object state conflict",
    0x0D: "Object already exists",
    0x0E: "Attribute not settable",
    0x0F: "Privilege violation",
    0x10: "Device state conflict",
    0x11: "Reply data too large",
    0x12: "Fragmentation of a primitive value",
    0x13: "Not enough data",
    0x14: "Attribute not supported",
    0x15: "Too much data",
    0x16: "Object does not exist",
    0x17: "Service fragmentation sequence not in progress",
    0x18: "No stored attribute data",
    0x19: "Store operation failure",
    0x1A: "Routing failure, request packet too large",
    0x1B: "Routing failure, response packet too large",
    0x1C: "Missing attribute list entry data",
    0x1D: "Invalid attribute value list",
    0x1E: "Embedded service error",
    0x1F: "Vendor specific error",
    0x20: "Invalid parameter",
    0x21: "Write-once value or medium already written",
    0x22: "Invalid reply received",
    0x23: "Buffer overflow",
    0x24: "Message format error",
    0x25: "Key failure in path",
    0x26: "Path size invalid",
    0x27: "Unexpected attribute in list",
    0x28: "Invalid Member ID",
    0x29: "Member not settable",
    0x2A: "Group 2 only server general failure",
    0x2B: "Unknown Modbus error",
    0x2C: "Attribute not gettable",
}

VENDORS = {  # ODVA vendor ids of common vendors (the full list has ~1500 entries)
    1: "Rockwell Automation/Allen-Bradley",
    2: "Namco Controls Corp.",
    5: "Rockwell Automation/Reliance Electric",
    8: "Molex Incorporated",
    9: "Honeywell Inc.",
    13: "Eaton Electrical",
    21: "Hitachi Ltd.",
    26: "Festo Corporation",
    40: "WAGO Corporation",
    44: "Banner Engineering Corporation",
    46: "Yaskawa Electric Corporation",
    47: "Omron Corporation",
    49: "Siemens Energy & Automation, Inc.",
    50: "Schneider Automation, Inc.",
    58: "Turck, Inc.",
    62: "Murrelektronik GmbH",
    73: "Phoenix Contact",
    90: "HMS Industrial Networks AB",
    108: "Beckhoff Automation GmbH",
    110: "Schneider Electric",
    124: "Yokogawa Electric Corporation",
    145: "Pepperl + Fuchs",
    161: "Mitsubishi Electric Automation, Inc.",
    243: "Schneider Electric (Telemecanique)",
    253: "Parker Hannifin Corporation",
    283: "Hilscher GmbH",
    356: "Fanuc Robotics America",
    357: "Moxa Inc.",
    359: "Bosch Rexroth",
    534: "Prosoft Technology",
    562: "Phoenix Contact GmbH",
    678: "Cognex Corporation",
    735: "SICK AG",
    1105: "Keyence Corporation",
    1111: "Red Lion Controls",
    1251: "Weidmuller Interface GmbH",
    1318: "Moxa Inc. (Taiwan)",
}
DEVICE_TYPES = {  # Vol. 1 6-7 device profiles
    0x00: "Generic Device (deprecated)",
    0x02: "AC Drive",
    0x03: "Motor Overload",
    0x04: "Limit Switch",
    0x05: "Inductive Proximity Switch",
    0x06: "Photoelectric Sensor",
    0x07: "General Purpose Discrete I/O",
    0x09: "Resolver",
    0x0C: "Communications Adapter",
    0x0E: "Programmable Logic Controller",
    0x10: "Position Controller",
    0x13: "DC Drive",
    0x15: "Contactor",
    0x16: "Motor Starter",
    0x17: "Soft Start",
    0x18: "Human-Machine Interface",
    0x1A: "Mass Flow Controller",
    0x1B: "Pneumatic Valve",
    0x1C: "Vacuum Pressure Gauge",
    0x1D: "Process Control Value",
    0x1E: "Residual Gas Analyzer",
    0x1F: "DC Power Generator",
    0x20: "RF Power Generator",
    0x21: "Turbomolecular Vacuum Pump",
    0x22: "Encoder",
    0x23: "Safety Discrete I/O Device",
    0x24: "Fluid Flow Controller",
    0x25: "CIP Motion Drive",
    0x26: "CompoNet Repeater",
    0x27: "Mass Flow Controller, Enhanced",
    0x28: "CIP Modbus Device",
    0x29: "CIP Modbus Translator",
    0x2A: "Safety Analog I/O Device",
    0x2B: "Generic Device (keyable)",
    0x2C: "Managed Switch",
    0x32: "ControlNet Physical Layer Component",
}
IDENTITY_STATES = {
    0: "Nonexistent",
    1: "Device Self Testing",
    2: "Standby",
    3: "Operational",
    4: "Major Recoverable Fault",
    5: "Major Unrecoverable Fault",
    255: "Default",
}

# CIP elementary data types (Vol. 1 C-6.1) for tag values: code -> (name, struct or None)
DATA_TYPES = {
    0xC1: ("BOOL", struct.Struct("<B")),
    0xC2: ("SINT", struct.Struct("<b")),
    0xC3: ("INT", struct.Struct("<h")),
    0xC4: ("DINT", struct.Struct("<i")),
    0xC5: ("LINT", struct.Struct("<q")),
    0xC6: ("USINT", struct.Struct("<B")),
    0xC7: ("UINT", struct.Struct("<H")),
    0xC8: ("UDINT", struct.Struct("<I")),
    0xC9: ("ULINT", struct.Struct("<Q")),
    0xCA: ("REAL", struct.Struct("<f")),
    0xCB: ("LREAL", struct.Struct("<d")),
    0xD3: ("DWORD", struct.Struct("<I")),
}

# PCCC function codes (DF1 protocol manual 1770-6.5.16) carried by Execute_PCCC: fnc -> action
PCCC_ACTIONS = {
    0x01: "read",
    0x67: "write",
    0x68: "read",
    0xA1: "read",
    0xA2: "read",
    0xA9: "write",
    0xAA: "write",
    0xAB: "write",
    0x80: "control",
    0x3A: "control",
    0x11: "program",
    0x12: "program",
    0x52: "program",
    0x53: "program",
    0x55: "program",
    0x56: "program",
    0x57: "program",
    0x5E: "program",
}

MAX_MSP = 256  # embedded services decoded per Multiple_Service_Packet


def _name(table: dict[int, str], code: int, width: int = 2) -> str:
    n = table.get(code)
    return n if n is not None else f"unknown-0x{code:0{width}x}"


def service_name(code: int, cls: int | None, symbolic: bool) -> str:
    """Name of a CIP request service; codes 0x4B-0x63 depend on the object class (Vol. 1 4-9.7)."""
    if code < 0x4B or code > 0x63:
        return _name(SERVICES, code)
    if cls == 0x06 and code in CM_SERVICES:
        return CM_SERVICES[code]
    if cls == 0x37 and code in FILE_SERVICES:
        return FILE_SERVICES[code]
    if cls == 0x67 and code == 0x4B:
        return "Execute_PCCC"  # PCCC object (Rockwell, 1756-RM005)
    if (symbolic or cls in (0x6B, None)) and code in TAG_SERVICES:
        return TAG_SERVICES[code]
    if cls == 0x01 and code == 0x4B:
        return "Flash_LEDs"
    return f"unknown-0x{code:02x}"


_ACTIONS: dict[tuple[str, int | None], str] = {}   # (service name, class) -> service_action, as seen


def service_action(name: str, cls: int | None, inst: int | None) -> str:
    """Normalised verb of a CIP request (docs/protocols/enip.md); remembered per (name, class)."""
    key = (name, cls)
    act = _ACTIONS.get(key)
    if act is None:
        if len(_ACTIONS) >= 4096:
            _ACTIONS.clear()
        act = _ACTIONS[key] = _service_action(name, cls)
    return act


def _service_action(name: str, cls: int | None) -> str:
    if name in ("Reset", "Start", "Stop"):
        return "control"
    if (
        cls in PROGRAM_CLASSES
        and not name.startswith("Get_")
        and name not in ("Read_Tag", "Find_Next_Object_Instance")
    ):
        return "program"
    if name in FILE_SERVICES.values():
        return "program"
    if name.startswith(("Get_", "Read_Tag", "Find_Next")) or name in (
        "Get_Member",
        "Search_Connection_Data",
        "Get_Connection_Data",
        "Get_Connection_Owner",
    ):
        return "read"
    if name.startswith(("Set_", "Write_Tag")) or name in (
        "Read_Modify_Write_Tag",
        "Create",
        "Delete",
        "Apply_Attributes",
        "Restore",
        "Save",
        "Insert_Member",
        "Remove_Member",
    ):
        return "write"
    if name in ("Forward_Open", "Large_Forward_Open", "Forward_Close"):
        return "session"
    if name == "No_Operation":
        return "diagnose"
    return "other"


# --- EPATH (Vol. 1 appendix C-1) -------------------------------------------------------------------
def parse_path(b: bytes, off: int, end: int) -> tuple[dict[str, Any], str | None]:
    """Decode a padded EPATH into class/instance/attribute/member, symbols, port hops and extras.

    Returns (path dict, error reason or None). Keys appear only when present.
    """
    p: dict[str, Any] = {}
    n = len(b)
    if end > n:
        return p, "path runs past the message"
    logical = ("class", "instance", "element", "connection_point", "attribute", "special", "service_id")
    while off < end:
        seg = b[off]
        st = seg >> 5
        if st == 1:  # logical segment (C-1.4.2)
            lt, fmt = (seg >> 2) & 7, seg & 3
            key = logical[lt] if lt < 7 else "extended_logical"
            if lt == 5:  # electronic key (C-1.4.2.1)
                if off + 10 > end:
                    return p, "electronic key cut short"
                p["electronic_key"] = hexstr(b[off + 2 : off + 10])
                off += 10
                continue
            if fmt == 0:
                if off + 2 > end:
                    return p, "logical segment cut short"
                val, off = b[off + 1], off + 2
            elif fmt == 1:
                if off + 4 > end:
                    return p, "logical segment cut short"
                val, off = _H.unpack_from(b, off + 2)[0], off + 4
            elif fmt == 2:
                if off + 6 > end:
                    return p, "logical segment cut short"
                val, off = _I.unpack_from(b, off + 2)[0], off + 6
            else:
                return p, f"reserved logical format in segment 0x{seg:02x}"
            if key == "element" and "symbols" in p:
                p["symbols"][-1] += f"[{val}]"
            elif key == "class" and "class" in p:
                # hierarchical path (e.g. Rockwell Program 0x68 / Routine 0x6A): the last class is the
                # object addressed; the ones before it are kept as its parents
                p.setdefault("parents", []).append(
                    {"class": p.pop("class"), "instance": p.pop("instance", None)}
                )
                p.pop("attribute", None)
                p["class"] = val
            elif key in p and key in ("instance", "attribute"):
                p.setdefault("extra_" + key, []).append(val)
            else:
                p[key] = val
        elif seg == 0x91:  # ANSI extended symbol segment (C-1.5.2)
            if off + 2 > end:
                return p, "symbol segment cut short"
            ln = b[off + 1]
            if off + 2 + ln > end:
                return p, "symbol runs past the path"
            p.setdefault("symbols", []).append(bytes(b[off + 2 : off + 2 + ln]).decode("latin-1"))
            off += 2 + ln + (ln & 1)
        elif st == 0:  # port segment (C-1.4.1)
            port, ext = seg & 0x0F, seg & 0x10
            q = off + 1
            if port == 0x0F:
                if q + 2 > end:
                    return p, "port segment cut short"
                port, q = _H.unpack_from(b, q)[0], q + 2
            if ext:
                if q + 1 > end:
                    return p, "port segment cut short"
                ln = b[q]
                if q + 1 + ln > end:
                    return p, "link address runs past the path"
                link = bytes(b[q + 1 : q + 1 + ln]).decode("latin-1")
                q += 1 + ln
            else:
                if q + 1 > end:
                    return p, "port segment cut short"
                link, q = str(b[q]), q + 1
            if (q - off) & 1:
                q += 1
            p.setdefault("route", []).append(f"{port}/{link}")
            off = q
        elif st == 4:  # data segment (C-1.4.4)
            if seg == 0x80:
                if off + 2 > end:
                    return p, "data segment cut short"
                ln = b[off + 1] * 2
                p["data_segment"] = hexstr(b[off + 2 : off + 2 + ln])
                off += 2 + ln
            else:
                return p, f"unsupported data segment 0x{seg:02x}"
        elif st == 2:  # network segment (C-1.4.3)
            if seg == 0x5F or seg == 0x50:
                if off + 2 > end:
                    return p, "network segment cut short"
                off += 2 + b[off + 1] * 2
            else:
                off += 2
        else:
            return p, f"unsupported path segment 0x{seg:02x}"
    if off > end:
        return p, "last path segment runs past the path size"
    return p, None


def _tag(path: dict[str, Any]) -> str | None:
    s = path.get("symbols")
    return ".".join(s) if s else None


def _values(dtype: int, data: bytes, off: int, count: int, ref: str) -> list[dict[str, Any]]:
    """Tag values of an elementary type as points (only the first 64 elements)."""
    t = DATA_TYPES.get(dtype)
    if t is None:
        return []
    name, st = t
    out = []
    for i in range(min(count, 64)):
        o = off + i * st.size
        if o + st.size > len(data):
            break
        v = st.unpack_from(data, o)[0]
        if name == "BOOL":
            v = bool(v)
        elif name in ("REAL", "LREAL") and v == v and abs(v) != float("inf"):
            v = round(v, 6)
        elif name in ("REAL", "LREAL"):
            v = str(v)
        out.append({"ref": ref if count == 1 else f"{ref}[{i}]", "value": v, "type": name})
    return out


# --- shared per-sensor state ------------------------------------------------------------------------
class _SensorState:
    """Discovery requests sent over UDP (often broadcast, so answered on other flows), and connection
    ids learnt from Forward_Open responses (to tell the direction of implicit I/O)."""

    __slots__ = ("conn_ids", "discover", "o2t_of")

    def __init__(self) -> None:
        self.discover = Pending(timeout=30.0, limit=1024)
        self.conn_ids: dict[int, str] = {}  # connection id -> "o2t" | "t2o"
        self.o2t_of: dict[int, int] = {}  # T->O connection id -> its O->T partner (and O->T -> itself)


_STATE: weakref.WeakKeyDictionary[Any, _SensorState] = weakref.WeakKeyDictionary()


def _state(sensor: Any) -> _SensorState:
    st = _STATE.get(sensor)
    if st is None:
        st = _STATE[sensor] = _SensorState()
    return st


def probe(data: bytes, is_orig: bool) -> bool:
    """An encapsulation header: known command, length matching the payload, sane status/options."""
    if len(data) < HDR_LEN:
        return False
    cmd, ln, _sess, status, _ctx, opts = _HDR.unpack_from(data, 0)
    if cmd not in COMMANDS or opts != 0 or status not in ENCAP_STATUS:
        return False
    if cmd == 0x0000:
        return False  # NOP alone is too weak a signature
    return HDR_LEN + ln == len(data) or (HDR_LEN + ln < len(data) and cmd in (0x006F, 0x0070))


class _Msg:
    """One CIP request waiting for its response."""

    __slots__ = ("fields", "frames", "is_orig", "msp", "ts")

    def __init__(self, fields: dict[str, Any], frames: list[int], ts: float, is_orig: bool) -> None:
        self.fields, self.frames, self.ts, self.is_orig = fields, frames, ts, is_orig
        self.msp: list[dict[str, Any]] = []


class EnipAnalyzer(Analyzer):
    """Encapsulation + CIP over one TCP connection or UDP flow."""

    PROTOCOL = PROTOCOL
    __slots__ = ("bufs", "cip", "encap", "mine", "udp")

    def __init__(self, conn: Any) -> None:
        super().__init__(conn)
        self.bufs = (StreamBuffer(), StreamBuffer())
        self.encap = Pending(timeout=60.0)  # (command, context) -> request record
        self.cip = Pending(timeout=60.0)  # ("rr", session, context) | ("c", seq) -> _Msg
        self.udp = conn.proto == "udp"
        # Lower bounds of the request times in `encap` / `cip`: while the bound is not older than the
        # timeout nothing can expire, and `_expire` skips the sweep of the table.
        self.mine: set[Any] = set()  # keys this flow put in the per-sensor discover table

    # ------------------------------------------------------------------ framing
    @staticmethod
    def _pdu_len(buf: Any, off: int) -> int | None:
        if len(buf) - off < 4:
            return None
        return HDR_LEN + _H.unpack_from(buf, off + 2)[0]

    def data(self, is_orig: bool, data: bytes, ts: float, frames: int | list[int]) -> None:
        if self.udp:
            port = self.conn.resp.port
            if port == 2222 or (len(data) >= 6 and _H.unpack_from(data, 2)[0] == 0x8002 and port != 44818):
                self._io(is_orig, data, ts, as_frames(frames))
                return
            off, fl = 0, as_frames(frames)
            while off < len(data):
                if len(data) - off < HDR_LEN:
                    self.conn.weird(
                        PROTOCOL,
                        "truncated_encapsulation_header",
                        f"{len(data) - off} bytes",
                        ts,
                        fl,
                        is_orig,
                    )
                    return
                size = HDR_LEN + _H.unpack_from(data, off + 2)[0]
                if off + size > len(data):
                    self.conn.weird(
                        PROTOCOL,
                        "truncated_encapsulation",
                        f"length field says {size} bytes, datagram has {len(data) - off}",
                        ts,
                        fl,
                        is_orig,
                    )
                    return
                self._pdu(is_orig, data[off : off + size], ts, fl)
                off += size
            return
        buf = self.bufs[0 if is_orig else 1]
        for pdu, fl, t in buf.feed(data, ts, frames, self._pdu_len):
            if pdu is None:
                self.conn.weird(
                    PROTOCOL, "bad_encapsulation_length", "length field out of range", t, fl, is_orig
                )
                continue
            self._pdu(is_orig, pdu, t, fl)

    def gap(self, is_orig: bool, size: int, ts: float) -> None:
        self.bufs[0 if is_orig else 1].clear()

    # ------------------------------------------------------------------ encapsulation
    def _pdu(self, is_orig: bool, pdu: bytes, ts: float, frames: list[int]) -> None:
        cmd, ln, sess, status, ctx, opts = _HDR.unpack_from(pdu, 0)
        self._expire(ts)
        if cmd in (0x006F, 0x0070):
            self._send_data(is_orig, cmd, pdu, sess, status, ctx, ts, frames)
            return
        name = COMMANDS.get(cmd)
        if name is None:
            # not a command of Vol. 2 table 2-3.2: most likely a stream out of step (or a foreign protocol)
            self.conn.weird(
                PROTOCOL, "unknown_command", f"encapsulation command 0x{cmd:04x}", ts, frames, is_orig
            )
            return
        f: dict[str, Any] = {
            "command_code": cmd,
            "command": name,
            "length": ln,
            "session": f"0x{sess:08x}",
            "sender_context": ctx.hex(),
            "options": opts,
        }
        body = pdu[HDR_LEN:]
        # Requests are sent by the originator; a UDP flow's originator may also be a device answering
        # a broadcast (the flow then is the response's own): the header cannot tell, the body can.
        if cmd in ONE_WAY_COMMANDS:  # no reply by design, whichever side sends it
            f["status"] = "one_way"
            if cmd == 0x0072 and body:
                f["data_length"] = len(body)
            self.conn.emit(PROTOCOL, CMD_ACTIONS.get(name, "other"), f, ts, frames, is_orig)
            return
        if not self._is_response(cmd, is_orig, body):
            if cmd == 0x0065 and len(body) >= 4:
                f["protocol_version"], f["option_flags"] = _HH.unpack_from(body, 0)
            rec = (f, frames, ts, is_orig)
            if self.udp and cmd in DISCOVER_COMMANDS:
                ep = self.conn.orig if is_orig else self.conn.resp
                key = (ep.ip, ep.port, cmd, ctx)
                dropped = _state(self.conn.sensor).discover.add(key, ts, [rec, 0, self])
                self.mine.add(key)
                for d in dropped:
                    d[2]._discover_done(d)
                return
            for old in self.encap.add((cmd, ctx), ts, rec):
                self._encap_unmatched(old)
            return
        f["encap_status_code"] = status
        f["encap_status"] = _name(ENCAP_STATUS, status, 4)
        self._encap_body(cmd, body, f, ts, frames, is_orig)
        if self.udp and cmd in DISCOVER_COMMANDS:
            ep = self.conn.resp if is_orig else self.conn.orig
            st = _state(self.conn.sensor)
            hit = st.discover.items.get((ep.ip, ep.port, cmd, ctx))
            if hit is not None:
                req = hit[1]
                req[1] += 1
                self._paired(req[0], f, ts, frames, is_orig)
                return
        else:
            req = self.encap.pop((cmd, ctx))
            if req is not None:
                self._paired(req, f, ts, frames, is_orig)
                return
        f["status"] = "no_request"
        self._emit_encap(f, ts, frames, not is_orig)

    def _is_response(self, cmd: int, is_orig: bool, body: bytes) -> bool:
        if cmd in (0x0063, 0x0004, 0x0064, 0x0001):
            return len(body) > 0  # requests carry no data (Vol. 2 2-4.2..2-4.4)
        return not is_orig

    def _paired(
        self, req: tuple, f: dict[str, Any], ts: float, frames: list[int], resp_is_orig: bool
    ) -> None:
        """One event for a request and its reply (src = the requester, whichever flow the reply is on)."""
        rf, rframes, rts, _ = req
        out = dict(rf)
        for k, v in f.items():
            if k not in out or k in ("length",):
                out[k if k != "length" else "response_length"] = v
        out["session"] = f["session"]  # RegisterSession: the handle is assigned in the reply
        out["status"] = "paired"
        out["latency"] = round(max(ts - rts, 0.0), 6)
        if "identity" in f:
            out["identity"] = f["identity"]
            out["identity_of"] = "dst"
        self._emit_encap(out, rts, sorted(set(rframes + frames)), not resp_is_orig)

    def _emit_encap(self, f: dict[str, Any], ts: float, frames: list[int], is_orig: bool) -> None:
        self.conn.emit(PROTOCOL, CMD_ACTIONS.get(f.get("command", ""), "other"), f, ts, frames, is_orig)

    def _encap_unmatched(self, req: tuple) -> None:
        f, frames, ts, is_orig = req
        f["status"] = "no_response"
        self._emit_encap(f, ts, frames, is_orig)

    def _discover_done(self, entry: list) -> None:
        rec, n, _owner = entry
        if n == 0:
            self._encap_unmatched(rec)

    def _encap_body(
        self, cmd: int, body: bytes, f: dict[str, Any], ts: float, frames: list[int], is_orig: bool
    ) -> None:
        """Decode the reply data of ListIdentity / ListServices / ListInterfaces / RegisterSession."""
        if cmd == 0x0065:
            if len(body) >= 4:
                f["protocol_version"], f["option_flags"] = _HH.unpack_from(body, 0)
            return
        if cmd not in (0x0063, 0x0004, 0x0064, 0x0001) or not body:
            return
        items, err = self._cpf(body, 0)
        if err:
            self.conn.weird(PROTOCOL, "bad_cpf", err, ts, frames, is_orig)
        for typ, data in items:
            if typ == 0x000C:
                ident = self._identity_item(data)
                if ident is None:
                    self.conn.weird(
                        PROTOCOL, "bad_list_identity", "identity item cut short", ts, frames, is_orig
                    )
                else:
                    f["identity"] = ident
            elif typ == 0x0100 and len(data) >= 20:
                ver, flags = _HH.unpack_from(data, 0)
                f.setdefault("services", []).append(
                    {
                        "version": ver,
                        "capability_flags": flags,
                        "name": bytes(data[4:20]).split(b"\0", 1)[0].decode("latin-1"),
                    }
                )
            else:
                f.setdefault("items", []).append(_name(CPF_ITEMS, typ, 4))

    @staticmethod
    def _identity_item(d: bytes) -> dict[str, Any] | None:
        """ListIdentity reply item (Vol. 2 table 2-4.4)."""
        if len(d) < 2 + 16 + 15:
            return None
        ver = _H.unpack_from(d, 0)[0]
        port = (d[4] << 8) | d[5]
        ip = ".".join(str(x) for x in d[6:10])
        ident = _identity_attrs(d, 18)
        if ident is None:
            return None
        ident["encapsulation_version"] = ver
        ident["socket_address"], ident["socket_port"] = ip, port
        off = 18 + 15 + ident.pop("_name_len")
        if off < len(d):
            ident["state"] = d[off]
            ident["state_name"] = _name(IDENTITY_STATES, d[off])
        return ident

    @staticmethod
    def _cpf(b: bytes, off: int) -> tuple[list[tuple[int, bytes]], str | None]:
        """Common packet format items (Vol. 2 2-6)."""
        n = len(b)
        if off + 2 > n:
            return [], "item count cut short"
        count = _H.unpack_from(b, off)[0]
        off += 2
        items = []
        item_hdr = _HH.unpack_from
        for _ in range(count):
            if off + 4 > n:
                return items, "item header cut short"
            typ, ln = item_hdr(b, off)
            start = off + 4
            off = start + ln
            if off > n:
                return items, f"item 0x{typ:04x} length {ln} runs past the message"
            items.append((typ, b[start:off]))
        return items, None

    # ------------------------------------------------------------------ SendRRData / SendUnitData
    def _send_data(
        self,
        is_orig: bool,
        cmd: int,
        pdu: bytes,
        sess: int,
        status: int,
        ctx: bytes,
        ts: float,
        frames: list[int],
    ) -> None:
        if len(pdu) < HDR_LEN + 6:
            if status == 0:
                self.conn.weird(
                    PROTOCOL, "truncated_send_data", "no interface handle/timeout/CPF", ts, frames, is_orig
                )
            else:  # an error reply may carry no data (Vol. 2 2-3.3)
                f = {
                    "command": _name(COMMANDS, cmd, 4),
                    "command_code": cmd,
                    "session": f"0x{sess:08x}",
                    "sender_context": ctx.hex(),
                    "encap_status_code": status,
                    "encap_status": _name(ENCAP_STATUS, status, 4),
                    "status": "one_way",
                }
                self.conn.emit(PROTOCOL, "error", f, ts, frames, is_orig)
            return
        items, err = self._cpf(pdu, HDR_LEN + 6)
        if err:
            self.conn.weird(PROTOCOL, "bad_cpf", err, ts, frames, is_orig)
            return
        conn_id = seq = None
        body = None
        sockaddr: dict[str, str] = {}
        for typ, data in items:
            if typ == 0x00A1 and len(data) >= 4:
                conn_id = _I.unpack_from(data, 0)[0]
            elif typ in (0x8000, 0x8001) and len(data) >= 8:
                # sockaddr info (Vol. 2 2-6.3.2): big-endian sin_family, sin_port, sin_addr
                sockaddr["o2t" if typ == 0x8000 else "t2o"] = (
                    f"{'.'.join(str(x) for x in data[4:8])}:{(data[2] << 8) | data[3]}"
                )
            elif typ == 0x00B2:
                body = data
            elif typ == 0x00B1:
                if len(data) < 2:
                    self.conn.weird(PROTOCOL, "bad_connected_data", "no sequence count", ts, frames, is_orig)
                    return
                seq = _H.unpack_from(data, 0)[0]
                body = data[2:]
        if body is None:
            self.conn.weird(
                PROTOCOL, "no_cip_data", f"{_name(COMMANDS, cmd, 4)} without a data item", ts, frames, is_orig
            )
            return
        if not body:
            return  # empty data item (keep-alive)
        envelope: dict[str, Any] = {"command": COMMANDS[cmd], "session": f"0x{sess:08x}"}   # 0x6F or 0x70
        if cmd == 0x006F:
            envelope["sender_context"] = ctx.hex()
            key: tuple = ("rr", sess, ctx)
        else:
            envelope["connection_id"] = f"0x{conn_id:08x}" if conn_id is not None else None
            envelope["sequence_count"] = seq
            # Requests travel on the O->T id, replies on the T->O id: with the Forward_Open seen, both map
            # to the O->T id, so two CIP connections in one TCP connection cannot mix their counts.
            key = ("c", _state(self.conn.sensor).o2t_of.get(conn_id) if conn_id is not None else None, seq)
        if status:
            envelope["encap_status"] = _name(ENCAP_STATUS, status, 4)
        if sockaddr:
            envelope["sockaddr"] = sockaddr
        if body[0] & 0x80:
            self._cip_response(is_orig, body, envelope, key, ts, frames)
        else:
            self._cip_request(is_orig, body, envelope, key, ts, frames)

    # ------------------------------------------------------------------ CIP requests
    def _decode_request(
        self, b: bytes, ts: float, frames: list[int], is_orig: bool, depth: int = 0
    ) -> dict[str, Any] | None:
        """One CIP request (Vol. 1 2-4.1): service, path, service-specific data."""
        if len(b) < 2:
            self.conn.weird(PROTOCOL, "truncated_cip_request", f"{len(b)} bytes", ts, frames, is_orig)
            return None
        code, words = b[0], b[1]
        end = 2 + words * 2
        if end > len(b):
            self.conn.weird(
                PROTOCOL, "bad_cip_path_size", f"path of {words} words in {len(b)} bytes", ts, frames, is_orig
            )
            return None
        path, err = parse_path(b, 2, end)
        if err:
            self.conn.weird(PROTOCOL, "bad_cip_path", err, ts, frames, is_orig)
        cls, inst = path.get("class"), path.get("instance")
        tag = _tag(path)
        name = service_name(code, cls, tag is not None)
        f: dict[str, Any] = {"service_code": code, "service": name}
        if cls is not None:
            f["class_id"], f["class"] = cls, _name(CLASSES, cls)
        for k in (
            "instance",
            "attribute",
            "element",
            "connection_point",
            "route",
            "parents",
            "extra_instance",
            "extra_attribute",
        ):
            if k in path:
                f[k] = path[k]
        if tag is not None:
            f["tag"] = tag
        data = b[end:]
        action = service_action(name, cls, inst)
        try:
            action = self._request_data(f, name, code, cls, data, path, ts, frames, is_orig, depth) or action
        except (struct.error, IndexError):
            self.conn.weird(
                PROTOCOL, "truncated_cip_request_data", f"{name} data cut short", ts, frames, is_orig
            )
        if cls == 0x01 and name == "Reset":
            f["reboot"] = True
        f["_action"] = action
        return f

    def _request_data(
        self,
        f: dict[str, Any],
        name: str,
        code: int,
        cls: int | None,
        d: bytes,
        path: dict[str, Any],
        ts: float,
        frames: list[int],
        is_orig: bool,
        depth: int,
    ) -> str | None:
        """Service-specific request data; returns an action overriding the service's default."""
        if name in ("Get_Attribute_List", "Set_Attribute_List"):
            n = _H.unpack_from(d, 0)[0]
            if name == "Get_Attribute_List":
                f["attributes"] = [_H.unpack_from(d, 2 + 2 * i)[0] for i in range(min(n, 64))]
            else:
                f["attribute_count"] = n
                f["attributes"] = [_H.unpack_from(d, 2)[0]] if n else []
        elif name == "Reset" and d:
            f["reset_type"] = d[0]
        elif name in ("Read_Tag", "Read_Tag_Fragmented"):
            f["elements"] = _H.unpack_from(d, 0)[0]
            if name == "Read_Tag_Fragmented":
                f["offset"] = _I.unpack_from(d, 2)[0]
        elif name in ("Write_Tag", "Write_Tag_Fragmented"):
            dtype, count = _HH.unpack_from(d, 0)
            f["data_type"] = DATA_TYPES.get(dtype, (f"unknown-0x{dtype:04x}",))[0]
            f["elements"] = count
            voff = 4
            if name == "Write_Tag_Fragmented":
                f["offset"] = _I.unpack_from(d, 4)[0]
                voff = 8
            if name == "Write_Tag" and f.get("tag"):
                pts = _values(dtype, d, voff, count, "tag:" + f["tag"])
                if pts:
                    f["points"] = pts
        elif name == "Set_Attribute_Single" and cls is not None:
            f["value"] = hexstr(d[:64])
        elif name in ("Forward_Open", "Large_Forward_Open"):
            self._forward_open_req(f, d, name == "Large_Forward_Open", ts, frames, is_orig)
        elif name == "Forward_Close":
            f["connection_serial"], f["originator_vendor"] = _HH.unpack_from(d, 2)
            f["originator_serial"] = f"0x{_I.unpack_from(d, 6)[0]:08x}"
            words = d[10]
            cp, _e = parse_path(d, 12, 12 + words * 2)
            f["connection_path"] = _path_str(cp)
        elif name == "Unconnected_Send" and depth < 4:
            return self._unconnected_send(f, d, ts, frames, is_orig, depth)
        elif name == "Multiple_Service_Packet" and depth < 4:
            self._msp_request(f, d, ts, frames, is_orig, depth)
            return "other"
        elif name == "Execute_PCCC":
            return self._pccc(f, d)
        return None

    def _forward_open_req(
        self, f: dict[str, Any], d: bytes, large: bool, ts: float, frames: list[int], is_orig: bool
    ) -> None:
        """Forward_Open / Large_Forward_Open request (Vol. 1 3-5.5.2)."""
        ot, to = _II.unpack_from(d, 2)
        f["o2t_connection_id"], f["t2o_connection_id"] = f"0x{ot:08x}", f"0x{to:08x}"
        f["connection_serial"], f["originator_vendor"] = _HH.unpack_from(d, 10)
        f["originator_serial"] = f"0x{_I.unpack_from(d, 14)[0]:08x}"
        f["timeout_multiplier"] = d[18]
        off = 22
        f["o2t_rpi_us"] = _I.unpack_from(d, off)[0]
        off += 4
        if large:
            f["o2t_params"] = f"0x{_I.unpack_from(d, off)[0]:08x}"
            off += 4
        else:
            f["o2t_params"] = f"0x{_H.unpack_from(d, off)[0]:04x}"
            off += 2
        f["t2o_rpi_us"] = _I.unpack_from(d, off)[0]
        off += 4
        if large:
            f["t2o_params"] = f"0x{_I.unpack_from(d, off)[0]:08x}"
            off += 4
        else:
            f["t2o_params"] = f"0x{_H.unpack_from(d, off)[0]:04x}"
            off += 2
        f["transport_trigger"] = d[off]
        words = d[off + 1]
        cp, err = parse_path(d, off + 2, off + 2 + words * 2)
        if err:
            self.conn.weird(PROTOCOL, "bad_connection_path", err, ts, frames, is_orig)
        f["connection_path"] = _path_str(cp)

    def _unconnected_send(
        self, f: dict[str, Any], d: bytes, ts: float, frames: list[int], is_orig: bool, depth: int
    ) -> str | None:
        """Unconnected_Send (Vol. 1 3-5.5.4): unwrap the embedded request and keep its route path."""
        size = _H.unpack_from(d, 2)[0]
        if 4 + size > len(d):
            self.conn.weird(
                PROTOCOL, "bad_unconnected_send", f"embedded size {size} past the data", ts, frames, is_orig
            )
            return None
        inner = self._decode_request(d[4 : 4 + size], ts, frames, is_orig, depth + 1)
        off = 4 + size + (size & 1)
        route = None
        if off + 2 <= len(d):
            words = d[off]
            rp, _e = parse_path(d, off + 2, off + 2 + words * 2)
            route = rp.get("route")
        if inner is None:
            return None
        wrapper = {k: f.pop(k) for k in list(f)}
        f.update(inner)
        f["unconnected_send"] = {
            "route_path": route,
            "timeout_ticks": d[1],
            "priority_tick": d[0],
            "class": wrapper.get("class_id"),
            "instance": wrapper.get("instance"),
        }
        return inner["_action"]

    def _msp_request(
        self, f: dict[str, Any], d: bytes, ts: float, frames: list[int], is_orig: bool, depth: int
    ) -> None:
        """Multiple_Service_Packet (Vol. 1 A-4.10): count, offsets from the count field, requests."""
        n = _H.unpack_from(d, 0)[0]
        offs = [_H.unpack_from(d, 2 + 2 * i)[0] for i in range(min(n, MAX_MSP))]
        subs = []
        for i, o in enumerate(offs):
            end = offs[i + 1] if i + 1 < len(offs) else len(d)
            if o >= len(d) or end > len(d) or end <= o:
                self.conn.weird(PROTOCOL, "bad_msp_offset", f"service {i} offset {o}", ts, frames, is_orig)
                break
            sub = self._decode_request(d[o:end], ts, frames, is_orig, depth + 1)
            if sub is None:
                break
            subs.append(sub)
        f["service_count"] = n
        f["services"] = [s["service"] for s in subs]
        f["_msp"] = subs

    @staticmethod
    def _pccc(f: dict[str, Any], d: bytes) -> str:
        """Execute_PCCC: requestor id (its length byte counts itself), then CMD STS TNS FNC (DF1 protocol
        manual 1770-6.5.16 ch. 7). CMD 0x06 is diagnostics, 0x07 I/O and scan control, 0x0F the PLC-5/SLC
        command set whose function code says read, write, mode change or upload/download."""
        ln = d[0]
        cmd, sts = d[ln], d[ln + 1]
        tns = _H.unpack_from(d, ln + 2)[0]
        f["pccc"] = {"cmd": cmd, "sts": sts, "tns": tns}
        if cmd in (0x06, 0x07, 0x0F) and ln + 4 < len(d):
            fnc = d[ln + 4]
            f["pccc"]["fnc"] = fnc
            if cmd == 0x0F:
                return PCCC_ACTIONS.get(fnc, "other")
        return {0x01: "read", 0x02: "read", 0x06: "diagnose", 0x07: "control", 0x08: "write"}.get(
            cmd, "other"
        )

    def _cip_request(
        self, is_orig: bool, body: bytes, env: dict[str, Any], key: tuple, ts: float, frames: list[int]
    ) -> None:
        f = self._decode_request(body, ts, frames, is_orig)
        if f is None:
            return
        f = {**env, **f}
        m = _Msg(f, frames, ts, is_orig)
        m.msp = f.pop("_msp", [])
        for old in self.cip.add(key, ts, m):
            self._cip_emit(old, None, None, [])

    # ------------------------------------------------------------------ CIP responses
    def _decode_response(
        self, b: bytes, ts: float, frames: list[int], is_orig: bool
    ) -> dict[str, Any] | None:
        """Message router response (Vol. 1 2-4.2): service|0x80, reserved, status, ext status."""
        if len(b) < 4:
            self.conn.weird(PROTOCOL, "truncated_cip_response", f"{len(b)} bytes", ts, frames, is_orig)
            return None
        code, gs, words = b[0] & 0x7F, b[2], b[3]
        end = 4 + words * 2
        if end > len(b):
            self.conn.weird(
                PROTOCOL, "bad_cip_status_size", f"{words} words of extended status", ts, frames, is_orig
            )
            return None
        r: dict[str, Any] = {
            "service_code": code,
            "general_status_code": gs,
            "general_status": _name(GENERAL_STATUS, gs),
        }
        if words:
            r["extended_status"] = [_H.unpack_from(b, 4 + 2 * i)[0] for i in range(words)]
        r["_data"] = b[end:]
        return r

    def _cip_response(
        self, is_orig: bool, body: bytes, env: dict[str, Any], key: tuple, ts: float, frames: list[int]
    ) -> None:
        r = self._decode_response(body, ts, frames, is_orig)
        if r is None:
            return
        m = self.cip.pop(key)
        if (
            m is not None
            and m.fields.get("service_code") != r["service_code"]
            and not (r["service_code"] == 0x52 and "unconnected_send" in m.fields)
        ):
            self._cip_emit(m, None, None, [])  # a reply to something else: the request went unanswered
            m = None
        if m is None:
            code = r["service_code"]
            name = _name(SERVICES, code) if code < 0x4B else _name({**TAG_SERVICES, **CM_SERVICES}, code)
            m = _Msg({**env, "service_code": code, "service": name}, [], ts, not is_orig)
            m.fields["_action"] = service_action(name, None, None)
            self._cip_emit(m, r, ts, frames, no_request=True)
            return
        self._cip_emit(m, r, ts, frames)

    def _response_data(
        self, f: dict[str, Any], r: dict[str, Any], ts: float, frames: list[int], is_orig: bool
    ) -> None:
        """Service-specific reply data worth keeping: identity, tag values, Forward_Open results."""
        d = r["_data"]
        name = f.get("service")
        try:
            if r["general_status_code"] not in (0, 6):
                return
            if name == "Get_Attribute_All" and f.get("class_id") == 0x01:
                ident = _identity_attrs(d, 0)
                if ident is not None:
                    ident.pop("_name_len")
                    f["identity"] = ident
                    f["identity_of"] = "dst"
            elif name in ("Read_Tag", "Read_Tag_Fragmented") and len(d) >= 2:
                dtype = _H.unpack_from(d, 0)[0]
                if dtype == 0x02A0:  # structure: type handle follows
                    f["data_type"] = "STRUCT"
                    f["structure_handle"] = f"0x{_H.unpack_from(d, 2)[0]:04x}"
                    return
                f["data_type"] = DATA_TYPES.get(dtype, (f"unknown-0x{dtype:04x}",))[0]
                t = DATA_TYPES.get(dtype)
                if t is not None and f.get("tag"):
                    count = (len(d) - 2) // t[1].size
                    pts = _values(dtype, d, 2, count, "tag:" + f["tag"])
                    if pts:
                        f["points"] = pts
            elif name in ("Forward_Open", "Large_Forward_Open") and len(d) >= 26:
                ot, to = _II.unpack_from(d, 0)
                f["o2t_connection_id"], f["t2o_connection_id"] = f"0x{ot:08x}", f"0x{to:08x}"
                # reply: O->T id, T->O id, serial, vendor, originator serial, O->T API, T->O API (3-5.5.2.2)
                f["o2t_api_us"], f["t2o_api_us"] = _II.unpack_from(d, 16)
                st = _state(self.conn.sensor)
                if len(st.conn_ids) < 65536:
                    st.conn_ids[ot], st.conn_ids[to] = "o2t", "t2o"
                    st.o2t_of[ot], st.o2t_of[to] = ot, ot
            elif name == "Get_Attribute_Single" and d:
                f["value"] = hexstr(d[:64])
        except (struct.error, IndexError):
            self.conn.weird(
                PROTOCOL, "truncated_cip_response_data", f"{name} reply data cut short", ts, frames, is_orig
            )

    def _cip_emit(
        self, m: _Msg, r: dict[str, Any] | None, ts: float | None, frames: list[int], no_request: bool = False
    ) -> None:
        """Emit the transaction event (and, for a Multiple_Service_Packet, one per embedded service)."""
        f = m.fields
        action = f.pop("_action", "other")
        if r is not None:
            f["general_status_code"] = r["general_status_code"]
            f["general_status"] = r["general_status"]
            if "extended_status" in r:
                f["extended_status"] = r["extended_status"]
            self._response_data(f, r, ts or m.ts, frames, not m.is_orig)
        if no_request:
            f["status"] = "no_request"
            allf = frames
        elif r is None:
            f["status"] = "no_response"
            allf = m.frames
        else:
            f["status"] = "paired"
            f["latency"] = round(max((ts or m.ts) - m.ts, 0.0), 6)
            allf = sorted(set(m.frames + frames))
        t0 = m.ts if not no_request else (ts or m.ts)
        f.pop("_msp", None)
        self.conn.emit("cip", action, f, t0, allf, m.is_orig)
        if not m.msp:
            return
        subs_r: list[dict[str, Any] | None] = [None] * len(m.msp)
        if r is not None and r["general_status_code"] in (0, 0x1E) and r.get("_data"):
            subs_r = self._msp_replies(r["_data"], len(m.msp), ts or m.ts, frames, not m.is_orig)
        n = len(m.msp)
        for i, (sf, sr) in enumerate(zip(m.msp, subs_r, strict=True)):
            sf = {
                k: v
                for k, v in f.items()
                if k in ("command", "session", "sender_context", "connection_id", "sequence_count")
            } | sf
            sf["multiple_service"] = {"index": i, "count": n}
            sm = _Msg(sf, m.frames, m.ts, m.is_orig)
            self._cip_emit(sm, sr, ts, frames if r is not None else [])

    def _msp_replies(
        self, d: bytes, n: int, ts: float, frames: list[int], is_orig: bool
    ) -> list[dict | None]:
        out: list[dict | None] = [None] * n
        if len(d) < 2:
            return out
        cnt = _H.unpack_from(d, 0)[0]
        if cnt != n:
            self.conn.weird(
                PROTOCOL, "msp_count_mismatch", f"{n} requests, {cnt} replies", ts, frames, is_orig
            )
        offs = [_H.unpack_from(d, 2 + 2 * i)[0] for i in range(min(cnt, n)) if 4 + 2 * i <= len(d)]
        for i, o in enumerate(offs):
            end = offs[i + 1] if i + 1 < len(offs) else len(d)
            if o >= len(d) or end > len(d) or end <= o:
                self.conn.weird(PROTOCOL, "bad_msp_offset", f"reply {i} offset {o}", ts, frames, is_orig)
                break
            out[i] = self._decode_response(d[o:end], ts, frames, is_orig)
        return out

    # ------------------------------------------------------------------ implicit I/O (UDP 2222)
    def _io(self, is_orig: bool, d: bytes, ts: float, frames: list[int]) -> None:
        """Class 0/1 I/O: CPF with a sequenced address item and a connected data item (Vol. 2 3-2)."""
        items, err = self._cpf(d, 0)
        if err:
            self.conn.weird(PROTOCOL, "bad_io_cpf", err, ts, frames, is_orig)
            return
        f: dict[str, Any] = {"command": "implicit_io"}
        for typ, data in items:
            if typ == 0x8002 and len(data) >= 8:
                cid, seq = _II.unpack_from(data, 0)
                f["connection_id"], f["sequence_number"] = f"0x{cid:08x}", seq
            elif typ == 0x00B1:
                f["data_length"] = len(data)
                f["data"] = hexstr(data[:64])
            elif typ in (0x8000, 0x8001):
                pass
        if "connection_id" not in f:
            self.conn.weird(
                PROTOCOL, "io_without_sequenced_address", "no sequenced address item", ts, frames, is_orig
            )
            return
        f["status"] = "one_way"
        direction = _state(self.conn.sensor).conn_ids.get(int(f["connection_id"], 16))
        action = {"o2t": "write", "t2o": "read"}.get(direction or "", "other")
        if direction:
            f["direction"] = direction
        self.conn.emit(PROTOCOL, action, f, ts, frames, is_orig)

    # ------------------------------------------------------------------ expiry
    def _expire(self, ts: float) -> None:
        for rec in self.encap.expire(ts):
            self._encap_unmatched(rec)
        for m in self.cip.expire(ts):
            self._cip_emit(m, None, None, [])
        if self.udp and self.mine:
            st = _state(self.conn.sensor)
            for entry in st.discover.expire(ts):
                entry[2]._discover_done(entry)

    def close(self, ts: float) -> None:
        for rec in self.encap.drain():
            self._encap_unmatched(rec)
        for m in self.cip.drain():
            self._cip_emit(m, None, None, [])
        if self.mine:
            st = _state(self.conn.sensor)
            for key in self.mine:
                entry = st.discover.pop(key)
                if entry is not None:
                    self._discover_done(entry)
            self.mine = set()


def _identity_attrs(d: bytes, off: int) -> dict[str, Any] | None:
    """Identity object attributes 1-7 (Vol. 1 5A-2): vendor .. product name (SHORT_STRING)."""
    if off + 15 > len(d):
        return None
    vendor, dtype, pcode = struct.unpack_from("<HHH", d, off)
    major, minor = d[off + 6], d[off + 7]
    status, serial = struct.unpack_from("<HI", d, off + 8)
    ln = d[off + 14]
    name = bytes(d[off + 15 : off + 15 + ln]).decode("latin-1")
    return {
        "vendor_id": vendor,
        "vendor": _name(VENDORS, vendor, 4),
        "device_type_id": dtype,
        "device_type": _name(DEVICE_TYPES, dtype, 4),
        "product_code": pcode,
        "revision": f"{major}.{minor}",
        "firmware": f"{major}.{minor}",
        "device_status": f"0x{status:04x}",
        "serial": f"0x{serial:08x}",
        "product": name,
        "_name_len": ln,
    }


def _path_str(p: dict[str, Any]) -> str:
    """A connection/route path as text: '1/0 class 0x02 instance 1'."""
    parts = list(p.get("route", []))
    for q in p.get("parents", []):
        parts.append(
            f"class 0x{q['class']:02x}" + (f" instance {q['instance']}" if q["instance"] is not None else "")
        )
    for k in ("class", "instance", "connection_point", "attribute"):
        if k in p:
            parts.append(f"{k} 0x{p[k]:02x}" if k == "class" else f"{k} {p[k]}")
    parts += [f"instance {c}" for c in p.get("extra_instance", [])]  # e.g. config/consume/produce assemblies
    if "symbols" in p:
        parts.append(".".join(p["symbols"]))
    return " ".join(parts)


TcpAnalyzer = EnipAnalyzer
UdpAnalyzer = EnipAnalyzer
