"""OPC UA Binary over TCP (OPC 10000-6 UA Part 6: Mappings, 7.1 OPC UA Connection Protocol, 6.7 UA
Secure Conversation, 5.2 OPC UA Binary encoding; services from OPC 10000-4).

One `opcua` event per transaction: HEL+ACK (or ERR), OPN request+response, and every service request
paired with its response by request id (6.7.2.4). CLO, RHE and unsolicited ERR are `one_way`.
Secure-channel headers are always decoded; service bodies only where they are readable (security
policy None, or a Sign-only channel whose body is plain). Encrypted messages give header fields and
`encrypted: true`. Node ids are written in their standard string form ("i=2258", "ns=2;s=Tag1").
Written values, read results and data-change notifications become `points`; passwords and user token
secrets are never stored (only `password_present`).
"""

from __future__ import annotations

import base64
import struct
from datetime import UTC, datetime
from typing import Any

from sensors.base import Analyzer, Frames, Pending, StreamBuffer, hexstr

PROTOCOL = "opcua"
TCP_PORTS = (4840,)
ROLES = ("client", "server")

MSG_TYPES = frozenset({b"HEL", b"ACK", b"OPN", b"MSG", b"CLO", b"ERR", b"RHE"})
CHUNK_TYPES = frozenset({ord("F"), ord("C"), ord("A")})
MAX_MESSAGE = 16 << 20          # reassembled message bound (chunks of one request id)
MAX_CHUNKS = 4096
MAX_ITEMS = 256                 # list elements kept per event (nodes, points, endpoints ...)
MAX_ARRAY = 1 << 20             # an encoded array longer than this is garbage
MAX_WEIRDS = 20

# Security policy URIs (OPC 10000-7 profiles) -> short name.
POLICY_PREFIX = "http://opcfoundation.org/UA/SecurityPolicy#"
POLICIES = {
    "None": "None", "Basic128Rsa15": "Basic128Rsa15", "Basic256": "Basic256",
    "Basic256Sha256": "Basic256Sha256", "Aes128_Sha256_RsaOaep": "Aes128_Sha256_RsaOaep",
    "Aes256_Sha256_RsaPss": "Aes256_Sha256_RsaPss",
}
SECURITY_MODES = {0: "Invalid", 1: "None", 2: "Sign", 3: "SignAndEncrypt"}          # Part 4 7.20
REQUEST_TYPES = {0: "issue", 1: "renew"}                                              # Part 4 5.5.2
USER_TOKEN_TYPES = {0: "Anonymous", 1: "UserName", 2: "Certificate", 3: "IssuedToken"}   # Part 4 7.37
APPLICATION_TYPES = {0: "Server", 1: "Client", 2: "ClientAndServer", 3: "DiscoveryServer"}
BROWSE_DIRECTIONS = {0: "Forward", 1: "Inverse", 2: "Both", 3: "Invalid"}
TIMESTAMPS_TO_RETURN = {0: "Source", 1: "Server", 2: "Both", 3: "Neither", 4: "Invalid"}
# Attribute ids (Part 6 A.1).
ATTRIBUTES = {
    1: "NodeId", 2: "NodeClass", 3: "BrowseName", 4: "DisplayName", 5: "Description", 6: "WriteMask",
    7: "UserWriteMask", 8: "IsAbstract", 9: "Symmetric", 10: "InverseName", 11: "ContainsNoLoops",
    12: "EventNotifier", 13: "Value", 14: "DataType", 15: "ValueRank", 16: "ArrayDimensions",
    17: "AccessLevel", 18: "UserAccessLevel", 19: "MinimumSamplingInterval", 20: "Historizing",
    21: "Executable", 22: "UserExecutable", 23: "DataTypeDefinition", 24: "RolePermissions",
    25: "UserRolePermissions", 26: "AccessRestrictions", 27: "AccessLevelEx",
}

# Binary encoding node ids (ns=0) of the service messages (NodeIds.csv, "..._Encoding_DefaultBinary")
# -> (name, action). Responses carry the action of their request.
SERVICES: dict[int, tuple[str, str]] = {
    397: ("ServiceFault", "other"),
    410: ("TestStackRequest", "diagnose"), 413: ("TestStackResponse", "diagnose"),
    416: ("TestStackExRequest", "diagnose"), 419: ("TestStackExResponse", "diagnose"),
    422: ("FindServersRequest", "discover"), 425: ("FindServersResponse", "discover"),
    12208: ("FindServersOnNetworkRequest", "discover"), 12209: ("FindServersOnNetworkResponse", "discover"),
    428: ("GetEndpointsRequest", "discover"), 431: ("GetEndpointsResponse", "discover"),
    437: ("RegisterServerRequest", "discover"), 440: ("RegisterServerResponse", "discover"),
    12211: ("RegisterServer2Request", "discover"), 12212: ("RegisterServer2Response", "discover"),
    446: ("OpenSecureChannelRequest", "session"), 449: ("OpenSecureChannelResponse", "session"),
    452: ("CloseSecureChannelRequest", "session"), 455: ("CloseSecureChannelResponse", "session"),
    461: ("CreateSessionRequest", "session"), 464: ("CreateSessionResponse", "session"),
    467: ("ActivateSessionRequest", "session"), 470: ("ActivateSessionResponse", "session"),
    473: ("CloseSessionRequest", "session"), 476: ("CloseSessionResponse", "session"),
    479: ("CancelRequest", "session"), 482: ("CancelResponse", "session"),
    488: ("AddNodesRequest", "write"), 491: ("AddNodesResponse", "write"),
    494: ("AddReferencesRequest", "write"), 497: ("AddReferencesResponse", "write"),
    500: ("DeleteNodesRequest", "write"), 503: ("DeleteNodesResponse", "write"),
    506: ("DeleteReferencesRequest", "write"), 509: ("DeleteReferencesResponse", "write"),
    527: ("BrowseRequest", "read"), 530: ("BrowseResponse", "read"),
    533: ("BrowseNextRequest", "read"), 536: ("BrowseNextResponse", "read"),
    554: ("TranslateBrowsePathsToNodeIdsRequest", "read"),
    557: ("TranslateBrowsePathsToNodeIdsResponse", "read"),
    560: ("RegisterNodesRequest", "read"), 563: ("RegisterNodesResponse", "read"),
    566: ("UnregisterNodesRequest", "read"), 569: ("UnregisterNodesResponse", "read"),
    615: ("QueryFirstRequest", "read"), 618: ("QueryFirstResponse", "read"),
    621: ("QueryNextRequest", "read"), 624: ("QueryNextResponse", "read"),
    631: ("ReadRequest", "read"), 634: ("ReadResponse", "read"),
    664: ("HistoryReadRequest", "read"), 667: ("HistoryReadResponse", "read"),
    673: ("WriteRequest", "write"), 676: ("WriteResponse", "write"),
    700: ("HistoryUpdateRequest", "write"), 703: ("HistoryUpdateResponse", "write"),
    712: ("CallRequest", "control"), 715: ("CallResponse", "control"),
    751: ("CreateMonitoredItemsRequest", "read"), 754: ("CreateMonitoredItemsResponse", "read"),
    763: ("ModifyMonitoredItemsRequest", "read"), 766: ("ModifyMonitoredItemsResponse", "read"),
    769: ("SetMonitoringModeRequest", "read"), 772: ("SetMonitoringModeResponse", "read"),
    775: ("SetTriggeringRequest", "read"), 778: ("SetTriggeringResponse", "read"),
    781: ("DeleteMonitoredItemsRequest", "read"), 784: ("DeleteMonitoredItemsResponse", "read"),
    787: ("CreateSubscriptionRequest", "read"), 790: ("CreateSubscriptionResponse", "read"),
    793: ("ModifySubscriptionRequest", "read"), 796: ("ModifySubscriptionResponse", "read"),
    799: ("SetPublishingModeRequest", "read"), 802: ("SetPublishingModeResponse", "read"),
    826: ("PublishRequest", "read"), 829: ("PublishResponse", "read"),
    832: ("RepublishRequest", "read"), 835: ("RepublishResponse", "read"),
    841: ("TransferSubscriptionsRequest", "read"), 844: ("TransferSubscriptionsResponse", "read"),
    847: ("DeleteSubscriptionsRequest", "read"), 850: ("DeleteSubscriptionsResponse", "read"),
}
# ExtensionObject bodies we look inside (binary encoding ids).
ENC_ANONYMOUS, ENC_USERNAME, ENC_X509, ENC_ISSUED = 321, 324, 327, 940
IDENTITY_TOKENS = {ENC_ANONYMOUS: "Anonymous", ENC_USERNAME: "UserName", ENC_X509: "X509",
                   ENC_ISSUED: "IssuedToken"}
ENC_DATA_CHANGE = 811            # DataChangeNotification (Part 4 7.20.2)

# Server-object variables whose Read result describes the server (Part 5 6.3.1, BuildInfo).
BUILD_INFO = {"i=2261": "product", "i=2262": "product_uri", "i=2263": "vendor", "i=2264": "firmware",
              "i=2265": "build"}

# StatusCode symbolic names (OPC 10000-6 A.2, StatusCode.csv): the high 16 bits name the code.
STATUS_CODES = {
    0x0000: "Good", 0x4000: "Uncertain", 0x8000: "Bad",
    0x8001: "BadUnexpectedError", 0x8002: "BadInternalError", 0x8003: "BadOutOfMemory",
    0x8004: "BadResourceUnavailable", 0x8005: "BadCommunicationError", 0x8006: "BadEncodingError",
    0x8007: "BadDecodingError", 0x8008: "BadEncodingLimitsExceeded", 0x8009: "BadUnknownResponse",
    0x800A: "BadTimeout", 0x800B: "BadServiceUnsupported", 0x800C: "BadShutdown",
    0x800D: "BadServerNotConnected", 0x800E: "BadServerHalted", 0x800F: "BadNothingToDo",
    0x8010: "BadTooManyOperations", 0x8011: "BadDataTypeIdUnknown", 0x8012: "BadCertificateInvalid",
    0x8013: "BadSecurityChecksFailed", 0x8014: "BadCertificateTimeInvalid",
    0x8015: "BadCertificateIssuerTimeInvalid", 0x8016: "BadCertificateHostNameInvalid",
    0x8017: "BadCertificateUriInvalid", 0x8018: "BadCertificateUseNotAllowed",
    0x8019: "BadCertificateIssuerUseNotAllowed", 0x801A: "BadCertificateUntrusted",
    0x801B: "BadCertificateRevocationUnknown", 0x801C: "BadCertificateIssuerRevocationUnknown",
    0x801D: "BadCertificateRevoked", 0x801E: "BadCertificateIssuerRevoked",
    0x801F: "BadUserAccessDenied", 0x8020: "BadIdentityTokenInvalid", 0x8021: "BadIdentityTokenRejected",
    0x8022: "BadSecureChannelIdInvalid", 0x8023: "BadInvalidTimestamp", 0x8024: "BadNonceInvalid",
    0x8025: "BadSessionIdInvalid", 0x8026: "BadSessionClosed", 0x8027: "BadSessionNotActivated",
    0x8028: "BadSubscriptionIdInvalid", 0x802A: "BadRequestHeaderInvalid",
    0x802B: "BadTimestampsToReturnInvalid", 0x802C: "BadRequestCancelledByClient",
    0x002D: "GoodSubscriptionTransferred", 0x002E: "GoodCompletesAsynchronously", 0x002F: "GoodOverload",
    0x0030: "GoodClamped", 0x8031: "BadNoCommunication", 0x8032: "BadWaitingForInitialData",
    0x8033: "BadNodeIdInvalid", 0x8034: "BadNodeIdUnknown", 0x8035: "BadAttributeIdInvalid",
    0x8036: "BadIndexRangeInvalid", 0x8037: "BadIndexRangeNoData", 0x8038: "BadDataEncodingInvalid",
    0x8039: "BadDataEncodingUnsupported", 0x803A: "BadNotReadable", 0x803B: "BadNotWritable",
    0x803C: "BadOutOfRange", 0x803D: "BadNotSupported", 0x803E: "BadNotFound", 0x803F: "BadObjectDeleted",
    0x8040: "BadNotImplemented", 0x8041: "BadMonitoringModeInvalid", 0x8042: "BadMonitoredItemIdInvalid",
    0x8043: "BadMonitoredItemFilterInvalid", 0x8044: "BadMonitoredItemFilterUnsupported",
    0x8045: "BadFilterNotAllowed", 0x8046: "BadStructureMissing", 0x8047: "BadEventFilterInvalid",
    0x8048: "BadContentFilterInvalid", 0x804A: "BadContinuationPointInvalid",
    0x804B: "BadNoContinuationPoints", 0x804C: "BadReferenceTypeIdInvalid",
    0x804D: "BadBrowseDirectionInvalid", 0x804E: "BadNodeNotInView", 0x804F: "BadServerUriInvalid",
    0x8050: "BadServerNameMissing", 0x8051: "BadDiscoveryUrlMissing", 0x8053: "BadRequestTypeInvalid",
    0x8054: "BadSecurityModeRejected", 0x8055: "BadSecurityPolicyRejected", 0x8056: "BadTooManySessions",
    0x8057: "BadUserSignatureInvalid", 0x8058: "BadApplicationSignatureInvalid",
    0x8059: "BadNoValidCertificates", 0x805A: "BadRequestCancelledByRequest",
    0x805B: "BadParentNodeIdInvalid", 0x805C: "BadReferenceNotAllowed", 0x805D: "BadNodeIdRejected",
    0x805E: "BadNodeIdExists", 0x805F: "BadNodeClassInvalid", 0x8060: "BadBrowseNameInvalid",
    0x8061: "BadBrowseNameDuplicated", 0x8062: "BadNodeAttributesInvalid",
    0x8063: "BadTypeDefinitionInvalid", 0x8064: "BadSourceNodeIdInvalid", 0x8065: "BadTargetNodeIdInvalid",
    0x8066: "BadDuplicateReferenceNotAllowed", 0x8067: "BadInvalidSelfReference",
    0x8068: "BadReferenceLocalOnly", 0x8069: "BadNoDeleteRights", 0x806A: "BadServerIndexInvalid",
    0x806B: "BadViewIdUnknown", 0x806D: "BadTooManyMatches", 0x806E: "BadQueryTooComplex",
    0x806F: "BadNoMatch", 0x8070: "BadMaxAgeInvalid", 0x8071: "BadHistoryOperationInvalid",
    0x8072: "BadHistoryOperationUnsupported", 0x8073: "BadWriteNotSupported", 0x8074: "BadTypeMismatch",
    0x8075: "BadMethodInvalid", 0x8076: "BadArgumentsMissing", 0x8077: "BadTooManySubscriptions",
    0x8078: "BadTooManyPublishRequests", 0x8079: "BadNoSubscription", 0x807A: "BadSequenceNumberUnknown",
    0x807B: "BadMessageNotAvailable", 0x807C: "BadInsufficientClientProfile",
    0x807D: "BadTcpServerTooBusy", 0x807E: "BadTcpMessageTypeInvalid",
    0x807F: "BadTcpSecureChannelUnknown", 0x8080: "BadTcpMessageTooLarge",
    0x8081: "BadTcpNotEnoughResources", 0x8082: "BadTcpInternalError", 0x8083: "BadTcpEndpointUrlInvalid",
    0x8084: "BadRequestInterrupted", 0x8085: "BadRequestTimeout", 0x8086: "BadSecureChannelClosed",
    0x8087: "BadSecureChannelTokenUnknown", 0x8088: "BadSequenceNumberInvalid",
    0x8089: "BadConfigurationError", 0x808A: "BadNotConnected", 0x808B: "BadDeviceFailure",
    0x808C: "BadSensorFailure", 0x808D: "BadOutOfService", 0x808E: "BadDeadbandFilterInvalid",
    0x00A5: "GoodNoData", 0x00A6: "GoodMoreData", 0x80AB: "BadInvalidArgument",
    0x80AC: "BadConnectionRejected", 0x80AD: "BadDisconnect", 0x80AE: "BadConnectionClosed",
    0x80AF: "BadInvalidState", 0x80B0: "BadEndOfStream", 0x80B7: "BadMaxConnectionsReached",
    0x80B8: "BadRequestTooLarge", 0x80B9: "BadResponseTooLarge", 0x80BE: "BadProtocolVersionUnsupported",
    0x80DB: "BadTooManyMonitoredItems",
}

# Variant built-in type ids (Part 6 5.1.2).
BUILTIN_TYPES = {
    1: "Boolean", 2: "SByte", 3: "Byte", 4: "Int16", 5: "UInt16", 6: "Int32", 7: "UInt32", 8: "Int64",
    9: "UInt64", 10: "Float", 11: "Double", 12: "String", 13: "DateTime", 14: "Guid", 15: "ByteString",
    16: "XmlElement", 17: "NodeId", 18: "ExpandedNodeId", 19: "StatusCode", 20: "QualifiedName",
    21: "LocalizedText", 22: "ExtensionObject", 23: "DataValue", 24: "Variant", 25: "DiagnosticInfo",
}
_SCALARS = {1: struct.Struct("<?"), 2: struct.Struct("<b"), 3: struct.Struct("<B"), 4: struct.Struct("<h"),
            5: struct.Struct("<H"), 6: struct.Struct("<i"), 7: struct.Struct("<I"), 8: struct.Struct("<q"),
            9: struct.Struct("<Q"), 10: struct.Struct("<f"), 11: struct.Struct("<d")}

_HDR = struct.Struct("<3sBI")          # message type, chunk type, message size (7.1.2.2)
_U16 = struct.Struct("<H")
_U32 = struct.Struct("<I")
_I32 = struct.Struct("<i")
_I64 = struct.Struct("<q")
_F64 = struct.Struct("<d")
_GUID = struct.Struct("<IHH8s")
_EPOCH_1601 = 11644473600          # seconds from 1601-01-01 to 1970-01-01 (DateTime, Part 6 5.2.2.5)


class Malformed(ValueError):
    """Bytes that do not fit the structure being decoded (caught by the analyzer, becomes a weird)."""


def status_name(code: int) -> str:
    """StatusCode -> symbolic name ("Good", "BadNodeIdUnknown", or "unknown-0x80ff0000")."""
    return STATUS_CODES.get(code >> 16) or f"unknown-0x{code:08x}"


def policy_name(uri: str | None) -> str | None:
    if uri is None:
        return None
    if uri.startswith(POLICY_PREFIX):
        return POLICIES.get(uri[len(POLICY_PREFIX):], uri[len(POLICY_PREFIX):])
    return uri


def pdu_len(buf: Any, off: int) -> int | None:
    """7.1.2.2 message header: 3-byte type, chunk type F/C/A, UInt32 size including the header."""
    if len(buf) - off < 8:
        return None
    mtype, chunk, size = _HDR.unpack_from(buf, off)
    if mtype not in MSG_TYPES or chunk not in CHUNK_TYPES or size < 8:
        return -1
    return size


def probe(data: bytes, is_orig: bool) -> bool:
    """A UA Connection Protocol / Secure Conversation header of plausible size."""
    if len(data) < 8:
        return False
    mtype, chunk, size = _HDR.unpack_from(data, 0)
    if mtype not in MSG_TYPES or chunk not in CHUNK_TYPES:
        return False
    if mtype in (b"HEL", b"ACK"):
        return 28 <= size <= 8192 and chunk == ord("F")         # endpoint URL <= 4096 bytes
    return 16 <= size <= 1 << 24


def _iso(ticks: int) -> str | None:
    """DateTime (100 ns ticks since 1601) -> ISO 8601 UTC, None for 0 / out of range."""
    if ticks <= 0 or ticks >= 2650467743990000000:       # 0 and MaxValue mean "not set"
        return None
    try:
        return datetime.fromtimestamp(ticks / 1e7 - _EPOCH_1601, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    except (OverflowError, OSError, ValueError):
        return None


class _R:
    """Little-endian cursor over a message body (Part 6 5.2 built-in types); raises Malformed."""

    __slots__ = ("buf", "end", "pos")

    def __init__(self, buf: bytes, pos: int = 0) -> None:
        self.buf, self.pos, self.end = buf, pos, len(buf)

    def need(self, n: int) -> int:
        p = self.pos
        if p + n > self.end:
            raise Malformed(f"truncated at offset {p} (need {n} bytes)")
        self.pos = p + n
        return p

    def u8(self) -> int:
        return self.buf[self.need(1)]

    def boolean(self) -> bool:
        return self.buf[self.need(1)] != 0

    def u16(self) -> int:
        return _U16.unpack_from(self.buf, self.need(2))[0]

    def u32(self) -> int:
        return _U32.unpack_from(self.buf, self.need(4))[0]

    def i32(self) -> int:
        return _I32.unpack_from(self.buf, self.need(4))[0]

    def i64(self) -> int:
        return _I64.unpack_from(self.buf, self.need(8))[0]

    def f64(self) -> float:
        return _F64.unpack_from(self.buf, self.need(8))[0]

    def bytestring(self) -> bytes | None:
        n = self.i32()
        if n < 0:
            return None
        p = self.need(n)
        return self.buf[p:p + n]

    def string(self) -> str | None:
        b = self.bytestring()
        return None if b is None else b.decode("utf-8", "replace")

    def count(self) -> int:
        """Array length (5.2.5): -1 is a null array, read as empty."""
        n = self.i32()
        if n < 0:
            return 0
        if n > self.end - self.pos or n > MAX_ARRAY:
            raise Malformed(f"array of {n} elements in {self.end - self.pos} bytes")
        return n

    def guid(self) -> str:
        d1, d2, d3, d4 = _GUID.unpack_from(self.buf, self.need(16))
        return f"{d1:08x}-{d2:04x}-{d3:04x}-{d4[:2].hex()}-{d4[2:].hex()}"

    def nodeid(self, mask: int | None = None) -> str:
        """NodeId (5.2.2.9) in its string form."""
        enc = self.u8() if mask is None else mask
        kind = enc & 0x0F
        if kind == 0:
            return f"i={self.u8()}"
        if kind == 1:
            ns, ident = self.u8(), self.u16()
            return f"ns={ns};i={ident}" if ns else f"i={ident}"
        ns = self.u16()
        pre = f"ns={ns};" if ns else ""
        if kind == 2:
            return f"{pre}i={self.u32()}"
        if kind == 3:
            return f"{pre}s={self.string() or ''}"
        if kind == 4:
            return f"{pre}g={self.guid()}"
        if kind == 5:
            return f"{pre}b={base64.b64encode(self.bytestring() or b'').decode()}"
        raise Malformed(f"NodeId encoding 0x{enc:02x}")

    def expanded_nodeid(self) -> str:
        """ExpandedNodeId (5.2.2.10): NodeId plus optional namespace URI and server index."""
        enc = self.u8()
        nid = self.nodeid(enc)
        if enc & 0x80:
            uri = self.string()
            if uri:
                nid = f"nsu={uri};{nid.split(';', 1)[-1]}"
        if enc & 0x40:
            srv = self.u32()
            if srv:
                nid = f"svr={srv};{nid}"
        return nid

    def numeric_id(self) -> int | None:
        """A NodeId whose ns=0 numeric identifier is returned (None for other forms)."""
        enc = self.u8()
        kind = enc & 0x0F
        if kind == 0:
            return self.u8()
        if kind == 1:
            ns, ident = self.u8(), self.u16()
            return ident if ns == 0 else None
        if kind == 2:
            ns, ident = self.u16(), self.u32()
            return ident if ns == 0 else None
        self.pos -= 1
        self.nodeid()
        return None

    def qualified_name(self) -> str:
        ns, name = self.u16(), self.string() or ""
        return f"{ns}:{name}" if ns else name

    def localized_text(self) -> str | None:
        mask = self.u8()
        if mask & 0x01:
            self.string()
        return self.string() if mask & 0x02 else None

    def diagnostic_info(self, depth: int = 0) -> None:
        """DiagnosticInfo (5.2.2.12), skipped."""
        mask = self.u8()
        for bit in (0x01, 0x02, 0x08, 0x04):
            if mask & bit:
                self.need(4)
        if mask & 0x10:
            self.string()
        if mask & 0x20:
            self.need(4)
        if mask & 0x40:
            if depth > 8:
                raise Malformed("DiagnosticInfo nested too deeply")
            self.diagnostic_info(depth + 1)

    def extension_object(self) -> tuple[int | None, bytes | None]:
        """ExtensionObject (5.2.2.15): (numeric ns=0 type id or None, binary body or None)."""
        tid = self.numeric_id()
        enc = self.u8()
        if enc == 0:
            return tid, None
        if enc == 1:
            return tid, self.bytestring()
        if enc == 2:                                # XmlElement body: not decoded
            self.bytestring()
            return tid, None
        raise Malformed(f"ExtensionObject encoding {enc}")

    def variant(self, depth: int = 0) -> tuple[str, Any]:
        """Variant (5.2.2.16) -> (type name, JSON-able value; a list for arrays)."""
        mask = self.u8()
        tid = mask & 0x3F
        tname = BUILTIN_TYPES.get(tid, f"unknown-0x{tid:02x}")
        if tid == 0:
            return "Null", None
        if tid not in BUILTIN_TYPES:
            raise Malformed(f"Variant type {tid}")
        if mask & 0x80:
            n = self.count()
            vals = [self.scalar(tid, depth) for _ in range(n)]
            if mask & 0x40:                      # ArrayDimensions follow the values
                for _ in range(self.count()):
                    self.need(4)
            return tname, vals[:MAX_ITEMS]
        return tname, self.scalar(tid, depth)

    def scalar(self, tid: int, depth: int = 0) -> Any:
        st = _SCALARS.get(tid)
        if st is not None:
            v = st.unpack_from(self.buf, self.need(st.size))[0]
            if isinstance(v, float) and v != v:           # NaN is not JSON
                return "NaN"
            if isinstance(v, float) and v in (float("inf"), float("-inf")):
                return str(v)
            return v
        if tid in (12, 16):
            return self.string()
        if tid == 13:
            return _iso(self.i64())
        if tid == 14:
            return self.guid()
        if tid == 15:
            b = self.bytestring()
            return None if b is None else hexstr(b[:64])
        if tid == 17:
            return self.nodeid()
        if tid == 18:
            return self.expanded_nodeid()
        if tid == 19:
            return status_name(self.u32())
        if tid == 20:
            return self.qualified_name()
        if tid == 21:
            return self.localized_text()
        if tid == 22:
            t, body = self.extension_object()
            return {"type_id": t, "length": None if body is None else len(body)}
        if depth > 8:
            raise Malformed("Variant nested too deeply")
        if tid == 23:
            return self.data_value(depth + 1).get("value")
        if tid == 24:
            return self.variant(depth + 1)[1]
        self.diagnostic_info()
        return None

    def data_value(self, depth: int = 0) -> dict[str, Any]:
        """DataValue (5.2.2.17) -> {"type", "value", "status", "source_time", "server_time"}."""
        mask = self.u8()
        out: dict[str, Any] = {}
        if mask & 0x01:
            out["type"], out["value"] = self.variant(depth)
        if mask & 0x02:
            out["status"] = status_name(self.u32())
        if mask & 0x04:
            t = _iso(self.i64())
            if t:
                out["source_time"] = t
        if mask & 0x10:
            self.need(2)
        if mask & 0x08:
            t = _iso(self.i64())
            if t:
                out["server_time"] = t
        if mask & 0x20:
            self.need(2)
        return out

    def application_description(self) -> dict[str, Any]:
        """ApplicationDescription (Part 4 7.2)."""
        d = {"application_uri": self.string(), "product_uri": self.string(), "name": self.localized_text(),
             "type": APPLICATION_TYPES.get(self.u32(), "unknown")}
        self.string()                               # gatewayServerUri
        self.string()                               # discoveryProfileUri
        urls = [self.string() for _ in range(self.count())]
        if urls:
            d["discovery_urls"] = urls[:MAX_ITEMS]
        return {k: v for k, v in d.items() if v is not None}

    def endpoint_description(self) -> dict[str, Any]:
        """EndpointDescription (Part 4 7.14)."""
        url = self.string()
        server = self.application_description()
        self.bytestring()                           # serverCertificate
        mode = self.u32()
        policy = self.string()
        tokens = []
        for _ in range(self.count()):
            policy_id = self.string()
            ttype = self.u32()
            self.string()                           # issuedTokenType
            self.string()                           # issuerEndpointUrl
            tpol = self.string()
            tok = {"policy_id": policy_id, "type": USER_TOKEN_TYPES.get(ttype, f"unknown-{ttype}")}
            if tpol:
                tok["security_policy"] = policy_name(tpol)
            tokens.append(tok)
        self.string()                               # transportProfileUri
        level = self.u8()
        return {"url": url, "server": server, "security_mode": SECURITY_MODES.get(mode, f"unknown-{mode}"),
                "security_policy": policy_name(policy), "user_tokens": tokens[:MAX_ITEMS],
                "security_level": level}

    def read_value_id(self) -> dict[str, Any]:
        """ReadValueId (Part 4 7.29)."""
        nid = self.nodeid()
        attr = self.u32()
        rng = self.string()
        self.qualified_name()                       # dataEncoding
        d: dict[str, Any] = {"node_id": nid, "attribute": ATTRIBUTES.get(attr, f"unknown-{attr}")}
        if rng:
            d["index_range"] = rng
        return d


# ---------------------------------------------------------------------- service bodies
# Each decoder gets the reader positioned after the request/response header and the record to fill.

def _request_header(r: _R, f: dict[str, Any]) -> None:
    """RequestHeader (Part 4 7.28)."""
    tok = r.nodeid()
    if tok != "i=0":
        f["authentication_token"] = tok
    r.i64()                                         # timestamp
    f["request_handle"] = r.u32()
    r.u32()                                         # returnDiagnostics
    r.string()                                      # auditEntryId
    r.u32()                                         # timeoutHint
    r.extension_object()


def _response_header(r: _R, f: dict[str, Any]) -> None:
    """ResponseHeader (Part 4 7.29)."""
    r.i64()
    f["response_handle"] = r.u32()
    code = r.u32()
    f["service_result"] = code
    f["service_result_name"] = status_name(code)
    r.diagnostic_info()
    for _ in range(r.count()):
        r.string()
    r.extension_object()


def _points(node: str, dv: dict[str, Any]) -> list[dict[str, Any]]:
    """A DataValue as points (arrays become one point per element, "node[i]")."""
    if "value" not in dv:
        return []
    extra = {k: v for k, v in (("type", dv.get("type")), ("quality", dv.get("status")),
                               ("time", dv.get("source_time"))) if v is not None}
    val = dv["value"]
    if isinstance(val, list):
        return [{"ref": f"{node}[{i}]", "value": _point_value(v), **extra} for i, v in enumerate(val[:64])]
    return [{"ref": node, "value": _point_value(val), **extra}]


def _point_value(v: Any) -> Any:
    if v is None or isinstance(v, (bool, int, float, str)):
        return v
    return str(v)


def _req_open(r: _R, f: dict[str, Any], st: _State) -> None:
    r.u32()                                         # clientProtocolVersion
    rt, mode = r.u32(), r.u32()
    f["request_type"] = REQUEST_TYPES.get(rt, f"unknown-{rt}")
    f["security_mode"] = SECURITY_MODES.get(mode, f"unknown-{mode}")
    r.bytestring()                                  # clientNonce
    f["requested_lifetime"] = r.u32()


def _resp_open(r: _R, f: dict[str, Any], st: _State) -> None:
    r.u32()                                         # serverProtocolVersion
    f["secure_channel_id"] = r.u32()
    f["token_id"] = r.u32()
    r.i64()
    f["revised_lifetime"] = r.u32()


def _req_get_endpoints(r: _R, f: dict[str, Any], st: _State) -> None:
    f["endpoint_url"] = r.string()


def _resp_endpoints(r: _R, f: dict[str, Any], st: _State) -> None:
    eps = [r.endpoint_description() for _ in range(r.count())]
    f["endpoints"] = [{k: v for k, v in e.items() if k != "server"} for e in eps][:MAX_ITEMS]
    if eps:
        _server_identity(f, eps[0]["server"])


def _server_identity(f: dict[str, Any], app: dict[str, Any]) -> None:
    ident = f.setdefault("identity", {})
    for key in ("application_uri", "product_uri", "name"):
        if app.get(key):
            ident[key] = app[key]
    if not ident:
        del f["identity"]


def _req_find_servers(r: _R, f: dict[str, Any], st: _State) -> None:
    f["endpoint_url"] = r.string()


def _resp_find_servers(r: _R, f: dict[str, Any], st: _State) -> None:
    apps = [r.application_description() for _ in range(r.count())]
    f["servers"] = apps[:MAX_ITEMS]


def _req_create_session(r: _R, f: dict[str, Any], st: _State) -> None:
    f["client"] = r.application_description()
    f["server_uri"] = r.string()
    f["endpoint_url"] = r.string()
    f["session_name"] = r.string()
    r.bytestring()                                  # clientNonce
    f["client_certificate"] = r.bytestring() is not None
    f["requested_session_timeout"] = r.f64()


def _resp_create_session(r: _R, f: dict[str, Any], st: _State) -> None:
    f["session_id"] = r.nodeid()
    r.nodeid()                                      # authenticationToken (the session secret)
    f["revised_session_timeout"] = r.f64()
    r.bytestring()                                  # serverNonce
    f["server_certificate"] = r.bytestring() is not None
    eps = [r.endpoint_description() for _ in range(r.count())]
    f["endpoints"] = [{k: v for k, v in e.items() if k != "server"} for e in eps][:MAX_ITEMS]
    if eps:
        _server_identity(f, eps[0]["server"])


def _req_activate_session(r: _R, f: dict[str, Any], st: _State) -> None:
    r.string()                                      # clientSignature.algorithm
    r.bytestring()                                  # clientSignature.signature
    for _ in range(r.count()):                      # clientSoftwareCertificates
        r.bytestring()
        r.bytestring()
    for _ in range(r.count()):                      # localeIds
        r.string()
    tid, body = r.extension_object()
    f["user_token_type"] = IDENTITY_TOKENS.get(tid, f"unknown-{tid}") if tid is not None else "unknown"
    if body is not None:
        b = _R(body)
        f["user_policy_id"] = b.string()
        if tid == ENC_USERNAME:
            f["user_name"] = b.string()
            pw = b.bytestring()                     # the password: never stored
            f["password_present"] = bool(pw)
        elif tid == ENC_X509:
            f["user_certificate"] = b.bytestring() is not None
        elif tid == ENC_ISSUED:
            f["password_present"] = bool(b.bytestring())


def _resp_status_list(r: _R, f: dict[str, Any], st: _State) -> None:
    codes = [r.u32() for _ in range(r.count())]
    f["results"] = [status_name(c) for c in codes][:MAX_ITEMS]


def _resp_activate_session(r: _R, f: dict[str, Any], st: _State) -> None:
    r.bytestring()                                  # serverNonce
    _resp_status_list(r, f, st)


def _req_close_session(r: _R, f: dict[str, Any], st: _State) -> None:
    f["delete_subscriptions"] = r.boolean()


def _req_read(r: _R, f: dict[str, Any], st: _State) -> None:
    f["max_age"] = r.f64()
    ttr = r.u32()
    f["timestamps_to_return"] = TIMESTAMPS_TO_RETURN.get(ttr, f"unknown-{ttr}")
    f["nodes"] = [r.read_value_id() for _ in range(r.count())][:MAX_ITEMS]


def _resp_read(r: _R, f: dict[str, Any], st: _State) -> None:
    f["read_results"] = [r.data_value() for _ in range(r.count())][:MAX_ITEMS]


def _req_write(r: _R, f: dict[str, Any], st: _State) -> None:
    nodes = []
    for _ in range(r.count()):
        d = {"node_id": r.nodeid()}
        attr = r.u32()
        d["attribute"] = ATTRIBUTES.get(attr, f"unknown-{attr}")
        rng = r.string()
        if rng:
            d["index_range"] = rng
        dv = r.data_value()
        if "value" in dv:
            d["type"], d["value"] = dv["type"], dv["value"]
        nodes.append(d)
    f["nodes"] = nodes[:MAX_ITEMS]


def _req_browse(r: _R, f: dict[str, Any], st: _State) -> None:
    view = r.nodeid()
    r.i64()
    r.u32()
    if view != "i=0":
        f["view_id"] = view
    f["max_references"] = r.u32()
    nodes = []
    for _ in range(r.count()):
        nid = r.nodeid()
        direction = r.u32()
        ref = r.nodeid()
        r.boolean()                                 # includeSubtypes
        r.u32()                                     # nodeClassMask
        r.u32()                                     # resultMask
        nodes.append({"node_id": nid, "direction": BROWSE_DIRECTIONS.get(direction, f"unknown-{direction}"),
                      "reference_type": ref})
    f["nodes"] = nodes[:MAX_ITEMS]


def _resp_browse(r: _R, f: dict[str, Any], st: _State) -> None:
    out = []
    for _ in range(r.count()):
        code = r.u32()
        r.bytestring()                              # continuationPoint
        refs = []
        for _ in range(r.count()):
            r.nodeid()                              # referenceTypeId
            r.boolean()
            target = r.expanded_nodeid()
            name = r.qualified_name()
            r.localized_text()
            r.u32()                                 # nodeClass
            r.expanded_nodeid()                     # typeDefinition
            refs.append({"node_id": target, "browse_name": name})
        out.append({"status": status_name(code), "references": refs[:MAX_ITEMS]})
    f["browse_results"] = out[:MAX_ITEMS]


def _req_browse_next(r: _R, f: dict[str, Any], st: _State) -> None:
    f["release_continuation_points"] = r.boolean()
    f["continuation_points"] = sum(1 for _ in range(r.count()) if r.bytestring() is not None)


def _req_translate(r: _R, f: dict[str, Any], st: _State) -> None:
    nodes = []
    for _ in range(r.count()):
        start = r.nodeid()
        path = []
        for _ in range(r.count()):
            r.nodeid()
            r.boolean()
            r.boolean()
            path.append(r.qualified_name())
        nodes.append({"node_id": start, "path": path[:MAX_ITEMS]})
    f["nodes"] = nodes[:MAX_ITEMS]


def _resp_translate(r: _R, f: dict[str, Any], st: _State) -> None:
    out = []
    for _ in range(r.count()):
        code = r.u32()
        targets = []
        for _ in range(r.count()):
            targets.append(r.expanded_nodeid())
            r.u32()                                 # remainingPathIndex
        out.append({"status": status_name(code), "targets": targets[:MAX_ITEMS]})
    f["translate_results"] = out[:MAX_ITEMS]


def _req_call(r: _R, f: dict[str, Any], st: _State) -> None:
    calls = []
    for _ in range(r.count()):
        obj, meth = r.nodeid(), r.nodeid()
        args = [r.variant()[1] for _ in range(r.count())]
        calls.append({"object_id": obj, "method_id": meth, "input_arguments": args[:MAX_ITEMS]})
    f["methods"] = calls[:MAX_ITEMS]


def _resp_call(r: _R, f: dict[str, Any], st: _State) -> None:
    out = []
    for _ in range(r.count()):
        code = r.u32()
        for _ in range(r.count()):
            r.u32()
        for _ in range(r.count()):
            r.diagnostic_info()
        outs = [r.variant()[1] for _ in range(r.count())]
        out.append({"status": status_name(code), "output_arguments": outs[:MAX_ITEMS]})
    f["call_results"] = out[:MAX_ITEMS]


def _req_register_nodes(r: _R, f: dict[str, Any], st: _State) -> None:
    f["nodes"] = [{"node_id": r.nodeid()} for _ in range(r.count())][:MAX_ITEMS]


def _resp_register_nodes(r: _R, f: dict[str, Any], st: _State) -> None:
    f["registered_node_ids"] = [r.nodeid() for _ in range(r.count())][:MAX_ITEMS]


def _req_add_nodes(r: _R, f: dict[str, Any], st: _State) -> None:
    nodes = []
    for _ in range(r.count()):
        parent = r.expanded_nodeid()
        ref = r.nodeid()
        new = r.expanded_nodeid()
        name = r.qualified_name()
        nclass = r.u32()
        r.extension_object()                        # nodeAttributes
        tdef = r.expanded_nodeid()
        nodes.append({"parent_node_id": parent, "reference_type": ref, "node_id": new, "browse_name": name,
                      "node_class": nclass, "type_definition": tdef})
    f["nodes"] = nodes[:MAX_ITEMS]


def _resp_add_nodes(r: _R, f: dict[str, Any], st: _State) -> None:
    out = []
    for _ in range(r.count()):
        code = r.u32()
        out.append({"status": status_name(code), "added_node_id": r.nodeid()})
    f["add_results"] = out[:MAX_ITEMS]


def _req_delete_nodes(r: _R, f: dict[str, Any], st: _State) -> None:
    nodes = []
    for _ in range(r.count()):
        nid = r.nodeid()
        nodes.append({"node_id": nid, "delete_target_references": r.boolean()})
    f["nodes"] = nodes[:MAX_ITEMS]


def _req_history_read(r: _R, f: dict[str, Any], st: _State) -> None:
    tid, _ = r.extension_object()
    f["history_details_type"] = tid
    r.u32()
    r.boolean()
    nodes = []
    for _ in range(r.count()):
        nid = r.nodeid()
        r.string()
        r.qualified_name()
        r.bytestring()
        nodes.append({"node_id": nid})
    f["nodes"] = nodes[:MAX_ITEMS]


def _req_create_subscription(r: _R, f: dict[str, Any], st: _State) -> None:
    f["requested_publishing_interval"] = r.f64()
    f["requested_lifetime_count"] = r.u32()
    f["requested_max_keep_alive_count"] = r.u32()
    f["max_notifications_per_publish"] = r.u32()
    f["publishing_enabled"] = r.boolean()
    f["priority"] = r.u8()


def _resp_create_subscription(r: _R, f: dict[str, Any], st: _State) -> None:
    f["subscription_id"] = r.u32()
    f["revised_publishing_interval"] = r.f64()
    f["revised_lifetime_count"] = r.u32()
    f["revised_max_keep_alive_count"] = r.u32()


def _req_create_monitored_items(r: _R, f: dict[str, Any], st: _State) -> None:
    f["subscription_id"] = r.u32()
    r.u32()
    nodes = []
    for _ in range(r.count()):
        d = r.read_value_id()
        r.u32()                                     # monitoringMode
        handle = r.u32()
        d["client_handle"] = handle
        d["sampling_interval"] = r.f64()
        r.extension_object()                        # filter
        r.u32()                                     # queueSize
        r.boolean()                                 # discardOldest
        nodes.append(d)
        if len(st.handles) < 4096:
            st.handles[handle] = d["node_id"]       # so Publish notifications name their node
    f["nodes"] = nodes[:MAX_ITEMS]


def _resp_create_monitored_items(r: _R, f: dict[str, Any], st: _State) -> None:
    out = []
    for _ in range(r.count()):
        code = r.u32()
        mid = r.u32()
        r.f64()
        r.u32()
        r.extension_object()
        out.append({"status": status_name(code), "monitored_item_id": mid})
    f["monitored_items"] = out[:MAX_ITEMS]


def _req_delete_subscriptions(r: _R, f: dict[str, Any], st: _State) -> None:
    f["subscription_ids"] = [r.u32() for _ in range(r.count())][:MAX_ITEMS]


def _req_publish(r: _R, f: dict[str, Any], st: _State) -> None:
    f["acknowledgements"] = len([(r.u32(), r.u32()) for _ in range(r.count())])


def _resp_publish(r: _R, f: dict[str, Any], st: _State) -> None:
    f["subscription_id"] = r.u32()
    for _ in range(r.count()):
        r.u32()
    f["more_notifications"] = r.boolean()
    f["notification_sequence"] = r.u32()
    r.i64()
    changes = []
    for _ in range(r.count()):
        tid, body = r.extension_object()
        if tid == ENC_DATA_CHANGE and body is not None:
            b = _R(body)
            for _ in range(b.count()):
                handle = b.u32()
                changes.append((handle, b.data_value()))
    if changes:
        f["notifications"] = [{"client_handle": h, "node_id": st.handles.get(h), **dv}
                              for h, dv in changes][:MAX_ITEMS]


# encoding id -> decoder of the body after the header
DECODERS = {
    446: _req_open, 449: _resp_open, 428: _req_get_endpoints, 431: _resp_endpoints,
    422: _req_find_servers, 425: _resp_find_servers, 461: _req_create_session, 464: _resp_create_session,
    467: _req_activate_session, 470: _resp_activate_session, 473: _req_close_session,
    631: _req_read, 634: _resp_read, 673: _req_write, 676: _resp_status_list,
    527: _req_browse, 530: _resp_browse, 533: _req_browse_next, 536: _resp_browse,
    554: _req_translate, 557: _resp_translate, 712: _req_call, 715: _resp_call,
    560: _req_register_nodes, 563: _resp_register_nodes, 488: _req_add_nodes, 491: _resp_add_nodes,
    500: _req_delete_nodes, 503: _resp_status_list, 664: _req_history_read,
    787: _req_create_subscription, 790: _resp_create_subscription,
    751: _req_create_monitored_items, 754: _resp_create_monitored_items,
    847: _req_delete_subscriptions, 850: _resp_status_list, 826: _req_publish, 829: _resp_publish,
}


def decode_service(body: bytes, st: _State) -> dict[str, Any]:
    """Decode a service message body (encoding NodeId, header, service fields).

    A body cut short after its encoding NodeId gives the fields decoded so far plus `malformed`.
    :raise Malformed: not even the encoding NodeId fits.
    """
    r = _R(body)
    tid = r.numeric_id()
    f: dict[str, Any] = {}
    if tid is None:
        f["service"] = "unknown"
        f["is_response"] = False
        return f
    name = SERVICES.get(tid, (f"unknown-{tid}", "other"))[0]
    f["service_id"] = tid
    f["service"] = name
    is_resp = name.endswith("Response") or tid == 397
    f["is_response"] = is_resp
    if tid not in SERVICES:
        return f
    try:
        if is_resp:
            _response_header(r, f)
        else:
            _request_header(r, f)
        dec = DECODERS.get(tid)
        if dec is not None and (not is_resp or f.get("service_result", 0) < 0x80000000):
            dec(r, f, st)
    except Malformed as e:
        # Keep what was decoded (service, header) so the transaction still pairs; the analyzer
        # reports the reason as a weird.
        f["malformed"] = str(e)
    return f


class _State:
    """Per-connection knowledge: secure channels (policy, readability) and monitored-item handles."""

    __slots__ = ("channels", "handles")

    def __init__(self) -> None:
        self.channels: dict[int, str | None] = {}        # channel id -> security policy short name
        self.handles: dict[int, str] = {}                # client handle -> node id


class _Txn:
    __slots__ = ("action", "fields", "frames", "is_orig", "ts")

    def __init__(self, fields: dict[str, Any], action: str, frames: Frames, ts: float, is_orig: bool) -> None:
        self.fields, self.action, self.frames, self.ts, self.is_orig = fields, action, frames, ts, is_orig


_ACK = struct.Struct("<IIIII")


class TcpAnalyzer(Analyzer):
    """Per-connection OPC UA Binary analyzer: framing, secure-channel headers, chunks, services."""

    PROTOCOL = PROTOCOL
    __slots__ = ("bufs", "chunks", "dead", "expired_at", "pending", "st", "weirds")

    def __init__(self, conn: Any) -> None:
        super().__init__(conn)
        self.bufs = (StreamBuffer(), StreamBuffer())
        self.pending = Pending(timeout=300.0, limit=1024)
        self.chunks: dict[tuple[bool, int], tuple[list[bytes], Frames, float, int]] = {}
        self.st = _State()
        self.dead = False
        self.weirds = 0
        self.expired_at = 0.0

    def _weird(self, name: str, reason: str, ts: float, frames: Frames, is_orig: bool) -> None:
        if self.dead:
            return
        self.weirds += 1
        self.conn.weird(PROTOCOL, name, reason, ts, frames, is_orig)
        if self.weirds >= MAX_WEIRDS:
            self.dead = True
            self.conn.weird(PROTOCOL, "too_many_errors", f"{MAX_WEIRDS} malformed messages: stopped parsing",
                            ts, frames, is_orig)

    def data(self, is_orig: bool, data: bytes, ts: float, frames: int | Frames) -> None:
        if self.dead:
            return
        if ts - self.expired_at > 30.0:
            self.expired_at = ts
            for tx in self.pending.expire(ts):
                self._finish(tx, "no_response")
        for pdu, fl, t in self.bufs[is_orig].feed(data, ts, frames, pdu_len):
            if pdu is None:
                self._weird("bad_message_header", "not an OPC UA message header (type/chunk/size)", t, fl,
                            is_orig)
            else:
                try:
                    self._message(is_orig, pdu, t, fl)
                except Malformed as e:
                    self._weird("malformed_message", f"{pdu[:3].decode('latin-1')}: {e}", t, fl, is_orig)
            if self.dead:
                return

    def gap(self, is_orig: bool, size: int, ts: float) -> None:
        self.bufs[is_orig].clear()
        for k in [k for k in self.chunks if k[0] == is_orig]:
            del self.chunks[k]

    def close(self, ts: float) -> None:
        for is_orig in (True, False):
            buf = self.bufs[is_orig]
            if len(buf):
                self._weird("truncated_message", f"{len(buf)} bytes of an unfinished message at close", ts,
                            buf.pending_frames(), is_orig)
            buf.clear()
        for (is_orig, _), (_, fl, t, _) in self.chunks.items():
            self._weird("unfinished_chunks", "intermediate chunks without a final chunk", t, fl, is_orig)
        self.chunks.clear()
        for tx in self.pending.drain():
            self._finish(tx, "no_response")

    # ------------------------------------------------------------------ emission
    def _finish(self, tx: _Txn, status: str, ts: float | None = None) -> None:
        f = tx.fields
        f["status"] = status
        if ts is not None:
            f["latency"] = round(max(ts - tx.ts, 0.0), 6)
        self._emit(tx.action, f, tx.ts, tx.frames, tx.is_orig)

    def _emit(self, action: str, f: dict[str, Any], ts: float, frames: Frames, is_orig: bool) -> None:
        self._make_points(f)
        f = {k: v for k, v in f.items() if v is not None}
        self.conn.emit(PROTOCOL, action, f, ts, frames, is_orig)

    def _add(self, key: Any, tx: _Txn) -> None:
        for old in self.pending.add(key, tx.ts, tx):
            self._finish(old, "no_response")

    def _respond(self, key: Any, resp: dict[str, Any], action: str, ts: float, frames: Frames,
                 is_orig: bool) -> None:
        tx = self.pending.pop(key)
        if tx is None:
            resp["status"] = "no_request"
            self._emit(action, resp, ts, frames, not is_orig)
            return
        f = tx.fields
        for k, v in resp.items():
            if k == "identity" and "identity" in f:
                f["identity"].update(v)
            elif k not in f or k in ("secure_channel_id", "token_id"):
                f[k] = v
            elif k == "service":
                f["response"] = v
            elif k == "service_id":
                f["response_id"] = v
            elif k == "seq":
                f["response_seq"] = v
            elif k == "nodes":
                f["result_nodes"] = v
        tx.frames = tx.frames + [x for x in frames if x not in tx.frames]
        self._finish(tx, "paired", ts)

    @staticmethod
    def _make_points(f: dict[str, Any]) -> None:
        """Written values, read results and notifications -> points; BuildInfo reads -> identity."""
        pts: list[dict[str, Any]] = []
        svc = f.get("service")
        if svc == "WriteRequest":
            for n in f.get("nodes", ()):
                if "value" in n and n.get("attribute") == "Value":
                    pts += _points(n["node_id"], n)
        elif svc == "ReadRequest" and "read_results" in f:
            for n, dv in zip(f.get("nodes", ()), f["read_results"], strict=False):
                if n.get("attribute") == "Value":
                    pts += _points(n["node_id"], dv)
                    key = BUILD_INFO.get(n["node_id"])
                    if key and isinstance(dv.get("value"), str):
                        f.setdefault("identity", {})[key] = dv["value"]
        elif svc == "PublishRequest" and "notifications" in f:
            for n in f["notifications"]:
                pts += _points(n.get("node_id") or f"handle:{n['client_handle']}", n)
        if pts:
            f["points"] = pts[:MAX_ITEMS]

    # ------------------------------------------------------------------ messages
    def _message(self, is_orig: bool, pdu: bytes, ts: float, frames: Frames) -> None:
        mtype = pdu[:3]
        chunk = chr(pdu[3])
        r = _R(pdu, 8)
        if mtype == b"HEL":                           # 7.1.2.3
            v, rb, sb, mm, mc = _ACK.unpack_from(pdu, r.need(20))
            f = {"msg_type": "HEL", "protocol_version": v, "receive_buffer_size": rb, "send_buffer_size": sb,
                 "max_message_size": mm, "max_chunk_count": mc, "endpoint_url": r.string()}
            self._add("hello", _Txn(f, "session", frames, ts, is_orig))
        elif mtype == b"ACK":                         # 7.1.2.4
            v, rb, sb, mm, mc = _ACK.unpack_from(pdu, r.need(20))
            f = {"msg_type": "HEL", "ack_protocol_version": v, "ack_receive_buffer_size": rb,
                 "ack_send_buffer_size": sb, "ack_max_message_size": mm, "ack_max_chunk_count": mc}
            self._respond("hello", f, "session", ts, frames, is_orig)
        elif mtype == b"ERR":                         # 7.1.2.5
            code = r.u32()
            f = {"msg_type": "ERR", "error": code, "error_name": status_name(code), "reason": r.string()}
            if "hello" in self.pending.items:
                self._respond("hello", f, "session", ts, frames, is_orig)
            else:
                f["status"] = "one_way"
                self._emit("error", f, ts, frames, is_orig)
        elif mtype == b"RHE":                         # 7.1.2.6 ReverseHello
            f = {"msg_type": "RHE", "server_uri": r.string(), "endpoint_url": r.string(), "status": "one_way"}
            self._emit("session", f, ts, frames, is_orig)
        elif mtype == b"OPN":
            self._open(is_orig, pdu, r, chunk, ts, frames)
        else:                                         # MSG, CLO (6.7.2)
            self._symmetric(is_orig, pdu, r, mtype.decode(), chunk, ts, frames)

    def _open(self, is_orig: bool, pdu: bytes, r: _R, chunk: str, ts: float, frames: Frames) -> None:
        """OPN: asymmetric security header (6.7.2.3), then sequence header and body if readable."""
        cid = r.u32()
        uri = r.string()
        cert = r.bytestring()
        thumb = r.bytestring()
        policy = policy_name(uri)
        f: dict[str, Any] = {"msg_type": "OPN", "secure_channel_id": cid, "security_policy": policy,
                             "security_policy_uri": uri, "sender_certificate": bool(cert),
                             "receiver_thumbprint": bool(thumb)}
        if cid:
            self.st.channels[cid] = policy
        body_at = r.pos
        readable = policy == "None" or self._looks_plain(pdu, body_at + 8)
        if not readable:
            f["encrypted"] = True
            if is_orig:
                self._add("opn-encrypted", _Txn(f, "session", frames, ts, is_orig))
            else:
                self._respond("opn-encrypted", f, "session", ts, frames, is_orig)
            return
        f["seq"] = r.u32()
        rid = r.u32()
        f["request_id"] = rid
        if chunk != "F":
            self._chunk(is_orig, rid, chunk, pdu[r.pos:], f, ts, frames)
            return
        self._service(is_orig, rid, f, pdu[r.pos:], ts, frames)

    def _symmetric(self, is_orig: bool, pdu: bytes, r: _R, mtype: str, chunk: str, ts: float,
                   frames: Frames) -> None:
        """MSG/CLO: channel id, token id (symmetric security header), then sequence header + body."""
        cid, tok = r.u32(), r.u32()
        f: dict[str, Any] = {"msg_type": mtype, "secure_channel_id": cid, "token_id": tok}
        policy = self.st.channels.get(cid)
        if policy is not None:
            f["security_policy"] = policy
        # Readable: policy None, or the body starts like a service message (Sign-only or unknown
        # channel), or it continues a chunked message we are already collecting.
        readable = len(pdu) >= 24 and (policy == "None" or self._looks_plain(pdu, 24)
                                       or (is_orig, _U32.unpack_from(pdu, 20)[0]) in self.chunks)
        if not readable:
            f["encrypted"] = True
            f["status"] = "one_way"
            self._emit("session" if mtype == "CLO" else "other", f, ts, frames, is_orig)
            return
        f["seq"] = r.u32()
        rid = r.u32()
        f["request_id"] = rid
        if chunk != "F":
            self._chunk(is_orig, rid, chunk, pdu[r.pos:], f, ts, frames)
            return
        self._service(is_orig, rid, f, pdu[r.pos:], ts, frames)

    def _looks_plain(self, pdu: bytes, at: int) -> bool:
        """Heuristic for channels whose mode is unknown (encrypted OPN, mid-stream start): the body
        starts with the encoding NodeId of a known service (ns=0 two/four-byte numeric form)."""
        if len(pdu) < at + 4:
            return False
        enc = pdu[at]
        if enc == 0x01 and pdu[at + 1] == 0:
            return _U16.unpack_from(pdu, at + 2)[0] in SERVICES
        if enc == 0x00:
            return pdu[at + 1] in SERVICES
        return False

    def _chunk(self, is_orig: bool, rid: int, chunk: str, body: bytes, f: dict[str, Any], ts: float,
               frames: Frames) -> None:
        """6.7.2.2: 'C' intermediate chunks are buffered per request id; 'A' aborts the message."""
        key = (is_orig, rid)
        parts, fl, t0, size = self.chunks.get(key, ([], [], ts, 0))
        if chunk == "A":
            self.chunks.pop(key, None)
            r = _R(body)
            code = r.u32()
            f.update({"aborted": True, "abort_code": code, "abort_name": status_name(code),
                      "abort_reason": r.string()})
            if not is_orig or ("req", rid) in self.pending.items:
                self._respond(("req", rid), f, "other", ts, fl + frames, is_orig)
            return
        size += len(body)
        if size > MAX_MESSAGE or len(parts) >= MAX_CHUNKS:
            self.chunks.pop(key, None)
            self._weird("message_too_large", f"request id {rid}: over {MAX_MESSAGE} bytes in chunks", ts,
                        fl + frames, is_orig)
            return
        parts.append(body)
        self.chunks[key] = (parts, fl + [x for x in frames if x not in fl], t0, size)

    def _service(self, is_orig: bool, rid: int, f: dict[str, Any], body: bytes, ts: float,
                 frames: Frames) -> None:
        key = (is_orig, rid)
        if key in self.chunks:                        # final chunk of a multi-chunk message
            parts, fl, ts, _ = self.chunks.pop(key)
            body = b"".join(parts) + body
            frames = fl + [x for x in frames if x not in fl]
            f["chunks"] = len(parts) + 1
        svc = decode_service(body, self.st)
        if "malformed" in svc:
            self._weird("malformed_message", f"{svc.get('service')}: {svc['malformed']}", ts, frames, is_orig)
        is_resp = svc.pop("is_response")
        tid = svc.get("service_id")
        action = SERVICES.get(tid, ("", "other"))[1] if tid is not None else "other"
        f.update(svc)
        if f["msg_type"] == "CLO":
            f["status"] = "one_way"
            self._emit("session", f, ts, frames, is_orig)
            return
        if f["msg_type"] == "OPN" and "secure_channel_id" in svc and svc["secure_channel_id"]:
            self.st.channels.setdefault(svc["secure_channel_id"], f.get("security_policy"))
        if is_resp:
            if tid == 397:                            # ServiceFault answers any request
                tx = self.pending.items.get(("req", rid))
                action = tx[1].action if tx else "other"
            self._respond(("req", rid), f, action, ts, frames, is_orig)
        else:
            self._add(("req", rid), _Txn(f, action, frames, ts, is_orig))
