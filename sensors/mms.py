"""IEC 61850 / ICCP MMS (ISO 9506) over the OSI upper layers on ISO-on-TCP (TCP 102).

Layering: TPKT (RFC 1006) -> COTP (ISO 8073 class 0, DT reassembled until EOT) -> ISO 8327-1 session
SPDU -> ISO 8823 presentation PPDU -> ACSE (ISO 8650) for association set-up/release, MMS PDU
(ISO 9506-2) inside the presentation data values. Some stacks (and crafted captures) put MMS PDUs
straight into COTP without session/presentation: those are parsed too.

TCP 102 is shared with S7comm: `sensors.s7comm.TcpAnalyzer` owns the port, and when a COTP TSDU is
neither S7comm (0x32) nor S7comm-plus (0x72) it hands the connection to this module's `TcpAnalyzer`,
replaying the TPKT packets of that TSDU (see `s7comm.TcpAnalyzer._hand_off`). From then on this analyzer
gets the raw TPKT stream, so it frames TPKT/COTP itself (with the helpers of `sensors.cotp`). That is
why the module has no TCP_PORTS of its own.

Events (kind "mms", one per transaction, see docs/protocols/mms.md for every field):
- association: session CONNECT / presentation CP / ACSE AARQ / MMS initiate-Request paired with
  ACCEPT / CPA / AARE / initiate-Response (or REFUSE, initiate-Error); release: FINISH / RLRQ /
  conclude-Request with DISCONNECT / RLRE / conclude-Response; ABORT one way. Action "session".
- confirmed-RequestPDU paired with confirmed-ResponsePDU / confirmed-ErrorPDU / rejectPDU by
  (requester direction, invokeID): ONE event with status and latency. Both sides may be requesters
  (ICCP/TASE.2 servers send requests too).
- unconfirmed-PDU (informationReport, unsolicitedStatus, eventNotification): one way.
Data values are decoded with `sensors.goose.decode_data` (the same MMS Data CHOICE) and reported as
`points` `{"ref": "<domain>/<item>", "value": v}` (structures flattened as "<ref>.<index>").
"""

from __future__ import annotations

from typing import Any

from sensors import ber, cotp
from sensors.base import Analyzer, Pending, StreamBuffer
from sensors.goose import DATA_TYPES, MAX_DATA_DEPTH, decode_data

PROTOCOL = "mms"
COTP_KIND = "cotp"
ROLES = ("client", "server")
# No TCP_PORTS: reached through sensors.s7comm on TCP 102 (COTP user data that is not S7comm).

MAX_TSDU = 1 << 20           # reassembled COTP user data beyond this is garbage
MAX_POINTS = 1024            # points per event (decode_data bounds each value as well)
MAX_NAMES = 4096             # identifiers kept from one getNameList / variable list

# --- ISO 8327-1 session (section 8.3: SPDU codes, parameter codes) ------------------------------
SPDU_TYPES = {
    0x01: "DATA_TRANSFER", 0x02: "PLEASE_TOKENS", 0x05: "EXPEDITED", 0x07: "PREPARE",
    0x08: "NOT_FINISHED", 0x09: "FINISH", 0x0A: "DISCONNECT", 0x0C: "REFUSE", 0x0D: "CONNECT",
    0x0E: "ACCEPT", 0x0F: "CONNECT_DATA_OVERFLOW", 0x10: "OVERFLOW_ACCEPT", 0x15: "GIVE_TOKENS_CONFIRM",
    0x16: "GIVE_TOKENS_ACK", 0x19: "ABORT", 0x1A: "ABORT_ACCEPT", 0x1D: "ACTIVITY_RESUME",
    0x21: "TYPED_DATA", 0x22: "RESYNCHRONIZE_ACK", 0x29: "MAJOR_SYNC_POINT", 0x2A: "MAJOR_SYNC_ACK",
    0x30: "EXCEPTION_REPORT", 0x31: "MINOR_SYNC_POINT", 0x32: "MINOR_SYNC_ACK", 0x35: "RESYNCHRONIZE",
    0x39: "ACTIVITY_DISCARD", 0x3A: "ACTIVITY_DISCARD_ACK", 0x3D: "CAPABILITY_DATA",
    0x3E: "CAPABILITY_DATA_ACK",
}
SI_DT, SI_FINISH, SI_DISCONNECT, SI_NOT_FINISHED = 0x01, 0x09, 0x0A, 0x08
SI_REFUSE, SI_CONNECT, SI_ACCEPT, SI_ABORT, SI_ABORT_ACCEPT = 0x0C, 0x0D, 0x0E, 0x19, 0x1A
# SPDUs whose user data is carried in the User Data / Extended User Data parameter (PGI 193/194).
_PARAM_UD = frozenset({SI_CONNECT, SI_ACCEPT, SI_REFUSE, SI_FINISH, SI_DISCONNECT, SI_NOT_FINISHED,
                       SI_ABORT, 0x0F, 0x10})
PGI_CONN_ID, PGI_CONN_ACCEPT = 1, 5
PI_PROTOCOL_OPTIONS, PI_TSDU_MAX, PI_VERSION, PI_ISN, PI_TOKEN_SETTING = 19, 21, 22, 23, 26
PI_TOKEN_ITEM, PI_USER_REQ, PI_CALLING_SSEL, PI_CALLED_SSEL = 16, 20, 51, 52
PI_TRANSPORT_DISCONNECT, PI_REASON, PI_ENCLOSURE = 17, 50, 25
PGI_USER_DATA, PGI_EXT_USER_DATA = 193, 194
# Session user requirements bits (8.3.1.16), bit 0 first.
SESSION_REQUIREMENTS = ("half_duplex", "duplex", "expedited_data", "minor_resynchronize",
                        "major_resynchronize", "resynchronize", "activity_management",
                        "negotiated_release", "capability_data", "exceptions", "typed_data",
                        "symmetric_synchronize", "data_separation", "exception_report")
REFUSE_REASONS = {0: "rejection_by_called_ss_user", 1: "congestion", 2: "rejection_with_user_data",
                  0x81: "session_selector_unknown", 0x82: "ss_user_not_attached", 0x83: "spm_congestion",
                  0x84: "proposed_protocol_versions_not_supported", 0x85: "rejection_by_spm",
                  0x86: "rejection_by_spm_implementation_restriction"}

# --- ISO 8823 presentation -------------------------------------------------------------------------
MODES = {0: "x410-1984", 1: "normal"}
PCONTEXT_RESULTS = {0: "acceptance", 1: "user-rejection", 2: "provider-rejection"}
OID_NAMES = {"2.2.1.0.1": "acse", "1.0.9506.2.1": "mms", "1.0.9506.2.3": "mms-application-context",
             "2.1.1": "ber", "1.0.9506.2.2": "mms-abstract-syntax-version1-annex"}

# --- ACSE (ISO 8650-1 / X.227) ---------------------------------------------------------------------
ACSE_PDUS = {0: "AARQ", 1: "AARE", 2: "RLRQ", 3: "RLRE", 4: "ABRT"}
ACSE_RESULTS = {0: "accepted", 1: "rejected-permanent", 2: "rejected-transient"}
ACSE_USER_DIAG = {0: "null", 1: "no-reason-given", 2: "application-context-name-not-supported",
                  3: "calling-AP-title-not-recognized",
                  4: "calling-AP-invocation-identifier-not-recognized",
                  5: "calling-AE-qualifier-not-recognized",
                  6: "calling-AE-invocation-identifier-not-recognized",
                  7: "called-AP-title-not-recognized",
                  8: "called-AP-invocation-identifier-not-recognized",
                  9: "called-AE-qualifier-not-recognized",
                  10: "called-AE-invocation-identifier-not-recognized",
                  11: "authentication-mechanism-name-not-recognized",
                  12: "authentication-mechanism-name-required", 13: "authentication-failure",
                  14: "authentication-required"}
ACSE_PROVIDER_DIAG = {0: "null", 1: "no-reason-given", 2: "no-common-acse-version"}
RELEASE_REQ_REASONS = {0: "normal", 1: "urgent", 30: "user-defined"}
RELEASE_RSP_REASONS = {0: "normal", 1: "not-finished", 30: "user-defined"}
ABORT_SOURCES = {0: "acse-service-user", 1: "acse-service-provider"}
# AARQ/AARE context tags -> record field (AP titles / AE qualifiers: form 2 OID or INTEGER).
AARQ_FIELDS = {2: "called_ap_title", 3: "called_ae_qualifier", 4: "called_ap_invocation_id",
               5: "called_ae_invocation_id", 6: "calling_ap_title", 7: "calling_ae_qualifier",
               8: "calling_ap_invocation_id", 9: "calling_ae_invocation_id"}
AARE_FIELDS = {4: "responding_ap_title", 5: "responding_ae_qualifier",
               6: "responding_ap_invocation_id", 7: "responding_ae_invocation_id"}

# --- MMS (ISO 9506-2) ------------------------------------------------------------------------------
# MMSpdu CHOICE tag -> name
PDU_TYPES = {0: "confirmed-RequestPDU", 1: "confirmed-ResponsePDU", 2: "confirmed-ErrorPDU",
             3: "unconfirmed-PDU", 4: "rejectPDU", 5: "cancel-RequestPDU", 6: "cancel-ResponsePDU",
             7: "cancel-ErrorPDU", 8: "initiate-RequestPDU", 9: "initiate-ResponsePDU",
             10: "initiate-ErrorPDU", 11: "conclude-RequestPDU", 12: "conclude-ResponsePDU",
             13: "conclude-ErrorPDU"}
_R, _W, _P, _C, _D, _S, _O = "read", "write", "program", "control", "discover", "session", "other"
# ConfirmedServiceRequest/Response CHOICE tag -> (service name, action). The order is also the bit
# order of ServiceSupportOptions (services supported) for bits 0-77.
SERVICES: dict[int, tuple[str, str]] = {
    0: ("status", _D), 1: ("getNameList", _D), 2: ("identify", _D), 3: ("rename", _W), 4: ("read", _R),
    5: ("write", _W), 6: ("getVariableAccessAttributes", _D), 7: ("defineNamedVariable", _W),
    8: ("defineScatteredAccess", _W), 9: ("getScatteredAccessAttributes", _D),
    10: ("deleteVariableAccess", _W), 11: ("defineNamedVariableList", _W),
    12: ("getNamedVariableListAttributes", _D), 13: ("deleteNamedVariableList", _W),
    14: ("defineNamedType", _W), 15: ("getNamedTypeAttributes", _D), 16: ("deleteNamedType", _W),
    17: ("input", _R), 18: ("output", _W), 19: ("takeControl", _C), 20: ("relinquishControl", _C),
    21: ("defineSemaphore", _W), 22: ("deleteSemaphore", _W), 23: ("reportSemaphoreStatus", _D),
    24: ("reportPoolSemaphoreStatus", _D), 25: ("reportSemaphoreEntryStatus", _D),
    26: ("initiateDownloadSequence", _P), 27: ("downloadSegment", _P),
    28: ("terminateDownloadSequence", _P), 29: ("initiateUploadSequence", _P), 30: ("uploadSegment", _P),
    31: ("terminateUploadSequence", _P), 32: ("requestDomainDownload", _P),
    33: ("requestDomainUpload", _P), 34: ("loadDomainContent", _P), 35: ("storeDomainContent", _P),
    36: ("deleteDomain", _P), 37: ("getDomainAttributes", _D), 38: ("createProgramInvocation", _P),
    39: ("deleteProgramInvocation", _P), 40: ("start", _C), 41: ("stop", _C), 42: ("resume", _C),
    43: ("reset", _C), 44: ("kill", _C), 45: ("getProgramInvocationAttributes", _D),
    46: ("obtainFile", _W), 47: ("defineEventCondition", _W), 48: ("deleteEventCondition", _W),
    49: ("getEventConditionAttributes", _D), 50: ("reportEventConditionStatus", _D),
    51: ("alterEventConditionMonitoring", _W), 52: ("triggerEvent", _C), 53: ("defineEventAction", _W),
    54: ("deleteEventAction", _W), 55: ("getEventActionAttributes", _D),
    56: ("reportEventActionStatus", _D), 57: ("defineEventEnrollment", _W),
    58: ("deleteEventEnrollment", _W), 59: ("alterEventEnrollment", _W),
    60: ("reportEventEnrollmentStatus", _D), 61: ("getEventEnrollmentAttributes", _D),
    62: ("acknowledgeEventNotification", _W), 63: ("getAlarmSummary", _D),
    64: ("getAlarmEnrollmentSummary", _D), 65: ("readJournal", _R), 66: ("writeJournal", _W),
    67: ("initializeJournal", _W), 68: ("reportJournalStatus", _D), 69: ("createJournal", _W),
    70: ("deleteJournal", _W), 71: ("getCapabilityList", _D), 72: ("fileOpen", _R), 73: ("fileRead", _R),
    74: ("fileClose", _R), 75: ("fileRename", _W), 76: ("fileDelete", _W), 77: ("fileDirectory", _D),
}
SERVICE_SUPPORT = (*(SERVICES[i][0] for i in range(78)),
                   "unsolicitedStatus", "informationReport", "eventNotification", "attachToEventCondition",
                   "attachToSemaphore", "conclude", "cancel",
                   # ISO 9506-2:2003 additions (tshark 4.0 stops at "cancel")
                   "getDataExchangeAttributes", "exchangeData", "defineAccessControlList",
                   "getAccessControlListAttributes", "reportAccessControlledObjects",
                   "deleteAccessControlList",
                   "alterAccessControl", "reconfigureProgramInvocation")
PARAMETER_CBB = ("str1", "str2", "vnam", "valt", "vadr", "vsca", "tpy", "vlis", "real", "spare9", "cei")
UNCONFIRMED = {0: ("informationReport", _R), 1: ("unsolicitedStatus", "diagnose"),
               2: ("eventNotification", _O)}
OBJECT_CLASSES = {0: "namedVariable", 1: "scatteredAccess", 2: "namedVariableList", 3: "namedType",
                  4: "semaphore", 5: "eventCondition", 6: "eventAction", 7: "eventEnrollment",
                  8: "journal", 9: "domain", 10: "programInvocation", 11: "operatorStation",
                  12: "dataExchange", 13: "accessControlList"}
OBJECT_SCOPES = {0: "vmdSpecific", 1: "domainSpecific", 2: "aaSpecific"}
DATA_ACCESS_ERRORS = {0: "object-invalidated", 1: "hardware-fault", 2: "temporarily-unavailable",
                      3: "object-access-denied", 4: "object-undefined", 5: "invalid-address",
                      6: "type-unsupported", 7: "type-inconsistent", 8: "object-attribute-inconsistent",
                      9: "object-access-unsupported", 10: "object-non-existent", 11: "object-value-invalid"}
# ServiceError errorClass CHOICE tag -> (class name, code names)
ERROR_CLASSES: dict[int, tuple[str, dict[int, str]]] = {
    0: ("vmd-state", {0: "other", 1: "vmd-state-conflict", 2: "vmd-operational-problem",
                      3: "domain-transfer-problem", 4: "state-machine-id-invalid"}),
    1: ("application-reference", {0: "other", 1: "application-unreachable", 2: "connection-lost",
                                  3: "application-reference-invalid", 4: "context-unsupported"}),
    2: ("definition", {0: "other", 1: "object-undefined", 2: "invalid-address", 3: "type-unsupported",
                       4: "type-inconsistent", 5: "object-exists", 6: "object-attribute-inconsistent"}),
    3: ("resource", {0: "other", 1: "memory-unavailable", 2: "processor-resource-unavailable",
                     3: "mass-storage-unavailable", 4: "capability-unavailable", 5: "capability-unknown"}),
    4: ("service", {0: "other", 1: "primitives-out-of-sequence", 2: "object-state-conflict",
                    3: "pdu-size", 4: "continuation-invalid", 5: "object-constraint-conflict"}),
    5: ("service-preempt", {0: "other", 1: "timeout", 2: "deadlock", 3: "cancel"}),
    6: ("time-resolution", {0: "other", 1: "unsupportable-time-resolution"}),
    7: ("access", {0: "other", 1: "object-access-unsupported", 2: "object-non-existent",
                   3: "object-access-denied", 4: "object-invalidated"}),
    8: ("initiate", {0: "other", 1: "version-incompatible", 2: "max-segment-insufficient",
                     3: "max-services-outstanding-calling-insufficient",
                     4: "max-services-outstanding-called-insufficient", 5: "service-CBB-insufficient",
                     6: "parameter-CBB-insufficient", 7: "nesting-level-insufficient"}),
    9: ("conclude", {0: "other", 1: "further-communication-required"}),
    10: ("cancel", {0: "other", 1: "invoke-id-unknown", 2: "cancel-not-possible"}),
    11: ("file", {0: "other", 1: "filename-ambiguous", 2: "file-busy", 3: "filename-syntax-error",
                  4: "content-type-invalid", 5: "position-invalid", 6: "file-access-denied",
                  7: "file-non-existent", 8: "duplicate-filename", 9: "insufficient-space-in-filestore"}),
    12: ("others", {}),
}
# RejectPDU rejectReason CHOICE tag -> (type, reason names)
REJECT_REASONS: dict[int, tuple[str, dict[int, str]]] = {
    1: ("confirmed-requestPDU", {0: "other", 1: "unrecognized-service", 2: "unrecognized-modifier",
                                 3: "invalid-invokeID", 4: "invalid-argument", 5: "invalid-modifier",
                                 6: "max-serv-outstanding-exceeded", 8: "max-recursion-exceeded",
                                 9: "value-out-of-range"}),
    2: ("confirmed-responsePDU", {0: "other", 1: "unrecognized-service", 2: "invalid-invokeID",
                                  3: "invalid-result", 5: "max-recursion-exceeded", 6: "value-out-of-range"}),
    3: ("confirmed-errorPDU", {0: "other", 1: "unrecognized-service", 2: "invalid-invokeID",
                               3: "invalid-serviceError", 4: "value-out-of-range"}),
    4: ("unconfirmedPDU", {0: "other", 1: "unrecognized-service", 2: "invalid-argument",
                           3: "max-recursion-exceeded", 4: "value-out-of-range"}),
    5: ("pdu-error", {0: "unknown-pdu-type", 1: "invalid-pdu", 2: "illegal-acse-mapping"}),
    6: ("cancel-requestPDU", {0: "other", 1: "invalid-invokeID"}),
    7: ("cancel-responsePDU", {0: "other", 1: "invalid-invokeID"}),
    8: ("cancel-errorPDU", {0: "other", 1: "invalid-invokeID", 2: "invalid-serviceError",
                            3: "value-out-of-range"}),
    9: ("conclude-requestPDU", {0: "other", 1: "invalid-argument"}),
    10: ("conclude-responsePDU", {0: "other", 1: "invalid-result"}),
    11: ("conclude-errorPDU", {0: "other", 1: "invalid-serviceError", 2: "value-out-of-range"}),
}
VMD_LOGICAL = {0: "state-changes-allowed", 1: "no-state-changes-allowed", 2: "limited-services-permitted",
               3: "support-services-allowed"}
VMD_PHYSICAL = {0: "operational", 1: "partially-operational", 2: "inoperable", 3: "needs-commissioning"}
# initiate-Request/Response detail context tags -> record field (request, response)
INIT_FIELDS = {0: ("local_detail_calling", "local_detail_called"),
               1: ("max_serv_outstanding_calling", "negotiated_max_serv_outstanding_calling"),
               2: ("max_serv_outstanding_called", "negotiated_max_serv_outstanding_called"),
               3: ("nesting_level", "negotiated_nesting_level")}

# Session-level messages without an MMS PDU (CONNECT with only ACSE, REFUSE, FINISH ...): pairing slot.
_SESSION_REQUESTS = {SI_CONNECT: "assoc", SI_FINISH: "release"}
_SESSION_RESPONSES = {SI_ACCEPT: "assoc", SI_REFUSE: "assoc", SI_DISCONNECT: "release",
                      SI_NOT_FINISHED: "release"}
_MMS_FIRST = frozenset({0xA0, 0xA1, 0xA2, 0xA3, 0xA4, 0x85, 0x86, 0xA7, 0xA8, 0xA9, 0xAA, 0x8B, 0x8C, 0xAD})


def _name(table: dict, code: int) -> str:
    v = table.get(code)
    if v is None:
        return f"unknown-0x{code:02x}" if code >= 0 else f"unknown-{code}"
    return v if isinstance(v, str) else v[0]


def _kids(t: ber.Tlv) -> dict[tuple[int, int], ber.Tlv]:
    """Children of a constructed TLV by (class, tag), first occurrence (SET/SEQUENCE with distinct tags)."""
    out: dict[tuple[int, int], ber.Tlv] = {}
    for c in t.children():
        out.setdefault((c.cls, c.tag), c)
    return out


def _ctx(t: ber.Tlv) -> dict[int, ber.Tlv]:
    """Context-tagged children of a constructed TLV by tag number."""
    return {k[1]: v for k, v in _kids(t).items() if k[0] == ber.CONTEXT}


def _only(t: ber.Tlv) -> ber.Tlv:
    """The single inner TLV of an explicitly tagged value (CHOICE / ANY)."""
    for c in t.children():
        return c
    raise ber.BerError(f"empty {t!r}")


def _bits_names(bits: str, names: tuple[str, ...]) -> list[str]:
    return [names[i] if i < len(names) else f"bit{i}" for i, b in enumerate(bits) if b == "1"]


def _str(t: ber.Tlv) -> str:
    return ber.as_str(t.value, "latin-1")


def object_name(t: ber.Tlv) -> str:
    """ObjectName CHOICE (9506-2 7.5.2): vmd-specific "item", domain-specific "domain/item",
    aa-specific "@item" (association-specific: only meaningful on this association)."""
    if t.cls != ber.CONTEXT:
        raise ber.BerError(f"ObjectName with a {ber.CLASS_NAMES[t.cls]} tag")
    if t.tag == 0 and not t.constructed:
        return _str(t)
    if t.tag == 1 and t.constructed:
        parts = [_str(c) for c in t.children()]
        if len(parts) != 2:
            raise ber.BerError(f"domain-specific ObjectName with {len(parts)} parts")
        return f"{parts[0]}/{parts[1]}"
    if t.tag == 2 and not t.constructed:
        return "@" + _str(t)
    raise ber.BerError(f"ObjectName alternative [{t.tag}]")


def _file_name(t: ber.Tlv) -> str:
    """FileName ::= SEQUENCE OF GraphicString: the parts joined with '/'."""
    return "/".join(_str(c) for c in t.children())


def _var_spec(t: ber.Tlv) -> str:
    """VariableSpecification CHOICE: [0] name, [1] address, [2] variableDescription, [3] scattered,
    [4] invalidated."""
    if t.tag == 0 and t.constructed:
        return object_name(_only(t))
    if t.tag == 1:
        return "address:" + bytes(t.raw).hex()
    return {2: "<variableDescription>", 3: "<scatteredAccessDescription>", 4: "<invalidated>"}.get(
        t.tag, f"<unknown-{t.tag}>")


def list_of_variable(t: ber.Tlv) -> list[str]:
    """SEQUENCE OF SEQUENCE { variableSpecification, [5] alternateAccess } -> variable names."""
    names = []
    for item in t.children():
        names.append(_var_spec(_only(item)))
        if len(names) >= MAX_NAMES:
            break
    return names


def var_access(t: ber.Tlv, rec: dict[str, Any]) -> None:
    """VariableAccessSpecification CHOICE (9506-2 14.4.1): [0] listOfVariable -> rec["variables"],
    [1] variableListName -> rec["variable_list"]."""
    if t.tag == 0 and t.constructed:
        rec["variables"] = list_of_variable(t)
    elif t.tag == 1 and t.constructed:
        rec["variable_list"] = object_name(_only(t))
    else:
        raise ber.BerError(f"VariableAccessSpecification alternative [{t.tag}]")


def _flatten(ref: str, t: ber.Tlv, out: list[dict[str, Any]], depth: int = 0) -> None:
    """One MMS Data value as points: scalars decoded by `goose.decode_data` with their Data type;
    arrays/structures flattened as "<ref>.<index>" (depth bounded like decode_data)."""
    if t.cls == ber.CONTEXT and t.tag in (1, 2) and t.constructed:
        if depth >= MAX_DATA_DEPTH:
            raise ber.BerError(f"Data nested deeper than {MAX_DATA_DEPTH}")
        for i, c in enumerate(t.children()):
            _flatten(f"{ref}.{i}", c, out, depth + 1)
    elif len(out) < MAX_POINTS:                    # beyond: dropped (the event keeps `results`)
        out.append({"ref": ref, "value": decode_data(t), "type": DATA_TYPES.get(t.tag, "?")})


def _refs(rec: dict[str, Any], n: int) -> list[str]:
    """Point refs for n results: the variable names, or "<list>[i]" for a named variable list."""
    names = rec.get("variables")
    if names is not None and len(names) == n:
        return list(names)
    base = rec.get("variable_list", "?")
    return [f"{base}[{i}]" for i in range(n)]


def access_results(t: ber.Tlv, rec: dict[str, Any]) -> None:
    """SEQUENCE OF AccessResult (CHOICE [0] failure DataAccessError | success Data) -> points and
    access_errors on `rec`, refs from the variables already on `rec`."""
    results = list(t.children())
    refs = _refs(rec, len(results))
    points: list[dict[str, Any]] = []
    errors = []
    types = []
    for ref, r in zip(refs, results, strict=True):
        if r.cls == ber.CONTEXT and r.tag == 0 and not r.constructed:
            errors.append({"ref": ref, "error": _name(DATA_ACCESS_ERRORS, ber.as_int(r.value))})
            types.append("failure")
            continue
        types.append(DATA_TYPES.get(r.tag, f"unknown-{r.tag}"))
        _flatten(ref, r, points)
    rec["results"] = len(results)
    rec["result_types"] = types
    rec.setdefault("points", []).extend(points)
    if errors:
        rec["access_errors"] = errors


def service_error(rec: dict[str, Any], t: ber.Tlv) -> None:
    """ServiceError (9506-2 7.4): [0] errorClass CHOICE, [1] additionalCode, [2] additionalDescription."""
    k = _ctx(t)
    if 0 in k:
        c = _only(k[0])
        cname, codes = ERROR_CLASSES.get(c.tag, (f"unknown-{c.tag}", {}))
        code = ber.as_int(c.value)
        rec["error_class"] = cname
        rec["error_code"] = codes.get(code, str(code) if c.tag == 12 else f"unknown-{code}")
    if 1 in k:
        rec["error_additional_code"] = ber.as_int(k[1].value)
    if 2 in k:
        rec["error_description"] = _str(k[2])


# --- service decoders: (record, service TLV) -> None; raise BerError on malformed contents --------

def _req_read(rec: dict, t: ber.Tlv) -> None:
    k = _ctx(t)
    if 0 in k:
        rec["specification_with_result"] = ber.as_bool(k[0].value)
    if 1 not in k:
        raise ber.BerError("read request without variableAccessSpecification")
    var_access(_only(k[1]), rec)


def _rsp_read(rec: dict, t: ber.Tlv) -> None:
    k = _ctx(t)
    if 0 in k:            # specificationWithResult: the server repeats the variables
        var_access(_only(k[0]), rec)
    if 1 in k:
        access_results(k[1], rec)


def _req_write(rec: dict, t: ber.Tlv) -> None:
    kids = list(t.children())
    if len(kids) < 2:
        raise ber.BerError("write request without listOfData")
    var_access(kids[0], rec)
    data = list(kids[1].children())
    refs = _refs(rec, len(data))
    points: list[dict[str, Any]] = []
    for ref, d in zip(refs, data, strict=True):
        _flatten(ref, d, points)
    rec["points"] = points


def _rsp_write(rec: dict, t: ber.Tlv) -> None:
    out = []
    for r in t.children():                       # CHOICE { [0] failure DataAccessError, [1] success NULL }
        out.append("success" if r.tag == 1 else _name(DATA_ACCESS_ERRORS, ber.as_int(r.value)))
    rec["write_results"] = out


def _req_get_name_list(rec: dict, t: ber.Tlv) -> None:
    k = _ctx(t)
    if 0 in k:
        c = _only(k[0])       # ObjectClass CHOICE: [0] basicObjectClass, [1] csObjectClass
        rec["object_class"] = _name(OBJECT_CLASSES, ber.as_int(c.value)) if c.tag == 0 else \
            f"cs-{ber.as_int(c.value)}"
    if 1 in k:
        s = _only(k[1])
        rec["object_scope"] = _name(OBJECT_SCOPES, s.tag)
        if s.tag == 1:
            rec["domain"] = _str(s)
    if 2 in k:
        rec["continue_after"] = _str(k[2])


def _rsp_get_name_list(rec: dict, t: ber.Tlv) -> None:
    k = _ctx(t)
    if 0 in k:
        names = []
        for c in k[0].children():
            names.append(_str(c))
            if len(names) >= MAX_NAMES:
                break
        rec["identifiers"] = names
    rec["more_follows"] = ber.as_bool(k[1].value) if 1 in k else True     # DEFAULT TRUE


def _rsp_identify(rec: dict, t: ber.Tlv) -> None:
    k = _ctx(t)
    ident = {}
    for tag, key, ikey in ((0, "vendor_name", "vendor"), (1, "model_name", "model"),
                           (2, "revision", "firmware")):
        if tag in k:
            rec[key] = ident[ikey] = _str(k[tag])
    if ident:
        rec["identity"] = ident


def _req_gvaa(rec: dict, t: ber.Tlv) -> None:
    c = _only(t)              # CHOICE { [0] name ObjectName, [1] address }
    if c.tag == 0:
        rec["variables"] = [object_name(_only(c))]
    else:
        rec["variables"] = ["address:" + bytes(c.raw).hex()]


def _rsp_gvaa(rec: dict, t: ber.Tlv) -> None:
    k = _ctx(t)
    if 0 in k:
        rec["mms_deletable"] = ber.as_bool(k[0].value)


def _req_object(rec: dict, t: ber.Tlv) -> None:
    """Services whose request is one ObjectName (getNamedVariableListAttributes ...)."""
    rec["variable_list"] = object_name(_only(t))


def _rsp_gnvla(rec: dict, t: ber.Tlv) -> None:
    k = _ctx(t)
    if 0 in k:
        rec["mms_deletable"] = ber.as_bool(k[0].value)
    if 1 in k:
        rec["variables"] = list_of_variable(k[1])


def _req_define_nvl(rec: dict, t: ber.Tlv) -> None:
    kids = list(t.children())
    if not kids:
        raise ber.BerError("empty defineNamedVariableList request")
    rec["variable_list"] = object_name(kids[0])
    if len(kids) > 1:
        var_access(kids[1], rec)


def _req_delete_nvl(rec: dict, t: ber.Tlv) -> None:
    k = _ctx(t)
    if 0 in k:
        rec["scope_of_delete"] = {0: "specific", 1: "aa-specific", 2: "domain", 3: "vmd"}.get(
            ber.as_int(k[0].value), "unknown")
    if 1 in k:
        rec["variable_lists"] = [object_name(c) for c in k[1].children()]
    if 2 in k:
        rec["domain"] = _str(k[2])


def _rsp_delete_nvl(rec: dict, t: ber.Tlv) -> None:
    k = _ctx(t)
    if 0 in k:
        rec["number_matched"] = ber.as_uint(k[0].value)
    if 1 in k:
        rec["number_deleted"] = ber.as_uint(k[1].value)


def _req_status(rec: dict, t: ber.Tlv) -> None:
    rec["extended_derivation"] = ber.as_bool(t.value)


def _rsp_status(rec: dict, t: ber.Tlv) -> None:
    k = _ctx(t)
    if 0 in k:
        rec["vmd_logical_status"] = _name(VMD_LOGICAL, ber.as_int(k[0].value))
    if 1 in k:
        rec["vmd_physical_status"] = _name(VMD_PHYSICAL, ber.as_int(k[1].value))


def _req_identifier(rec: dict, t: ber.Tlv) -> None:
    """Services whose request is one Identifier (domain or program invocation name)."""
    rec["name"] = _str(t)


def _req_named_first(rec: dict, t: ber.Tlv) -> None:
    """SEQUENCE whose [0] is the domain / program invocation name (start, stop, reset, kill ...)."""
    k = _ctx(t)
    if 0 in k:
        rec["name"] = _str(k[0])


def _req_download(rec: dict, t: ber.Tlv) -> None:
    k = _ctx(t)
    if 0 in k:
        rec["name"] = _str(k[0])
    if 1 in k:
        rec["capabilities"] = [_str(c) for c in k[1].children()]
    if 2 in k:
        rec["sharable"] = ber.as_bool(k[2].value)


def _rsp_segment(rec: dict, t: ber.Tlv) -> None:
    """downloadSegment / uploadSegment response: loadData CHOICE ([0] non-coded | coded), [1] moreFollows."""
    for c in t.children():
        if c.cls == ber.CONTEXT and c.tag == 1 and not c.constructed:
            rec["more_follows"] = ber.as_bool(c.value)
        elif "load_data_bytes" not in rec:
            rec["load_data_bytes"] = c.length
    rec.setdefault("more_follows", True)


def _req_file_name(rec: dict, t: ber.Tlv) -> None:
    """fileDelete: the request is a FileName."""
    rec["file"] = _file_name(t)


def _req_file_open(rec: dict, t: ber.Tlv) -> None:
    k = _ctx(t)
    if 0 in k:
        rec["file"] = _file_name(k[0])
    if 1 in k:
        rec["initial_position"] = ber.as_uint(k[1].value)


def _rsp_file_open(rec: dict, t: ber.Tlv) -> None:
    k = _ctx(t)
    if 0 in k:
        rec["frsm_id"] = ber.as_int(k[0].value)
    if 1 in k:
        a = _ctx(k[1])
        if 0 in a:
            rec["file_size"] = ber.as_uint(a[0].value)


def _req_frsm(rec: dict, t: ber.Tlv) -> None:
    """fileRead / fileClose: the request is the FRSM id (Integer32)."""
    rec["frsm_id"] = ber.as_int(t.value)


def _rsp_file_read(rec: dict, t: ber.Tlv) -> None:
    k = _ctx(t)
    if 0 in k:
        rec["file_data_bytes"] = k[0].length
    rec["more_follows"] = ber.as_bool(k[1].value) if 1 in k else True


def _req_file_dir(rec: dict, t: ber.Tlv) -> None:
    k = _ctx(t)
    if 0 in k:
        rec["file"] = _file_name(k[0])
    if 1 in k:
        rec["continue_after"] = _file_name(k[1])


def _rsp_file_dir(rec: dict, t: ber.Tlv) -> None:
    k = _ctx(t)
    files = []
    if 0 in k:
        for entry in k[0].children():
            e = _ctx(entry)
            if 0 in e:
                files.append(_file_name(e[0]))
            if len(files) >= MAX_NAMES:
                break
    rec["files"] = files
    rec["more_follows"] = ber.as_bool(k[1].value) if 1 in k else False       # DEFAULT FALSE


def _req_file_rename(rec: dict, t: ber.Tlv) -> None:
    k = _ctx(t)
    if 0 in k:
        rec["file"] = _file_name(k[0])
    if 1 in k:
        rec["new_file"] = _file_name(k[1])


def _req_obtain_file(rec: dict, t: ber.Tlv) -> None:
    k = _ctx(t)
    if 0 in k:
        rec["source_file_server"] = "present"
    if 1 in k:
        rec["file"] = _file_name(k[1])
    if 2 in k:
        rec["new_file"] = _file_name(k[2])


def _req_semaphore(rec: dict, t: ber.Tlv) -> None:
    k = _ctx(t)
    if 0 in k:
        rec["semaphore"] = object_name(_only(k[0]) if k[0].constructed and k[0].tag == 0 else k[0])


def _rsp_get_domain_attr(rec: dict, t: ber.Tlv) -> None:
    k = _ctx(t)
    if 0 in k:
        rec["capabilities"] = [_str(c) for c in k[0].children()]
    if 1 in k:
        rec["state"] = ber.as_int(k[1].value)
    if 2 in k:
        rec["mms_deletable"] = ber.as_bool(k[2].value)


REQUEST_DECODERS = {
    0: _req_status, 1: _req_get_name_list, 4: _req_read, 5: _req_write, 6: _req_gvaa,
    11: _req_define_nvl, 12: _req_object, 13: _req_delete_nvl, 15: _req_object, 19: _req_semaphore,
    20: _req_semaphore, 26: _req_download, 27: _req_identifier, 28: _req_named_first,
    29: _req_identifier, 30: _req_frsm, 31: _req_frsm, 32: _req_named_first, 33: _req_named_first,
    36: _req_identifier, 37: _req_identifier, 38: _req_named_first, 39: _req_identifier,
    40: _req_named_first, 41: _req_named_first, 42: _req_named_first, 43: _req_named_first,
    44: _req_named_first, 45: _req_identifier, 46: _req_obtain_file, 72: _req_file_open, 73: _req_frsm,
    74: _req_frsm, 75: _req_file_rename, 76: _req_file_name, 77: _req_file_dir,
}
RESPONSE_DECODERS = {
    0: _rsp_status, 1: _rsp_get_name_list, 2: _rsp_identify, 4: _rsp_read, 5: _rsp_write, 6: _rsp_gvaa,
    12: _rsp_gnvla, 13: _rsp_delete_nvl, 27: _rsp_segment, 30: _rsp_segment, 37: _rsp_get_domain_attr,
    72: _rsp_file_open, 73: _rsp_file_read, 77: _rsp_file_dir,
}


def initiate(t: ber.Tlv, rec: dict[str, Any], response: bool) -> None:
    """initiate-RequestPDU / initiate-ResponsePDU (9506-2 8.2): limits, version, CBBs, services."""
    side = 1 if response else 0
    for tag, c in _ctx(t).items():
        if tag in INIT_FIELDS:
            rec[INIT_FIELDS[tag][side]] = ber.as_int(c.value)
        elif tag == 4 and c.constructed:         # mmsInitRequestDetail / mmsInitResponseDetail
            d = _ctx(c)
            pre = "negotiated_" if response else ""
            if 0 in d:
                rec[pre + "version"] = ber.as_int(d[0].value)
            if 1 in d:
                rec[pre + "parameter_cbb"] = _bits_names(ber.as_bits(d[1].value), PARAMETER_CBB)
            if 2 in d:
                key = "services_supported_called" if response else "services_supported_calling"
                rec[key] = _bits_names(ber.as_bits(d[2].value), SERVICE_SUPPORT)


def _oid_or_int(t: ber.Tlv) -> str | int:
    """AP-title / AE-qualifier: form 2 (OBJECT IDENTIFIER / INTEGER), form 1 given as hex."""
    c = _only(t) if t.constructed else t
    if c.cls == ber.UNIVERSAL and c.tag == 6:
        return ber.as_oid(c.value)
    if c.cls == ber.UNIVERSAL and c.tag == 2:
        return ber.as_int(c.value)
    return bytes(c.raw).hex()


class _Txn:
    """A request (or association set-up / release) waiting for its answer."""

    __slots__ = ("action", "fields", "frames", "is_orig", "ts")

    def __init__(self, ts: float, frames: list[int], is_orig: bool, fields: dict, action: str) -> None:
        self.ts, self.frames, self.is_orig, self.fields, self.action = ts, frames, is_orig, fields, action


class TcpAnalyzer(Analyzer):
    """One ISO-on-TCP connection carrying MMS (handed over by sensors.s7comm)."""

    PROTOCOL = PROTOCOL
    __slots__ = ("bufs", "contexts", "last_expire", "pending", "seg_frames", "seg_ts", "segs")

    def __init__(self, conn) -> None:
        super().__init__(conn)
        self.bufs = (StreamBuffer(), StreamBuffer())     # [0] responder, [1] originator
        self.segs: list[list[bytes]] = [[], []]
        self.seg_frames: list[list[int]] = [[], []]
        self.seg_ts: list[float | None] = [None, None]
        self.pending = Pending(timeout=120.0)
        self.last_expire = 0.0
        self.contexts: dict[int, str] = {}               # presentation context id -> abstract syntax OID

    # ------------------------------------------------------------------ TPKT / COTP framing
    def data(self, is_orig: bool, data: bytes, ts: float, frames) -> None:
        for pdu, fl, t in self.bufs[is_orig].feed(data, ts, frames, cotp.tpkt_len):
            if pdu is None:
                self._weird("bad_tpkt", "bytes that are not a TPKT header (version 3, length >= 7)", t, fl,
                            is_orig)
                self._drop(is_orig)
                continue
            self._tpkt(is_orig, pdu, t, fl)
        if ts - self.last_expire > 10.0:
            self.last_expire = ts
            for txn in self.pending.expire(ts):
                self._unmatched(txn)

    def gap(self, is_orig: bool, size: int, ts: float) -> None:
        self.bufs[is_orig].clear()
        self._drop(is_orig)

    def close(self, ts: float) -> None:
        for is_orig in (True, False):
            buf = self.bufs[is_orig]
            if len(buf):
                self._weird("truncated_tpkt", f"{len(buf)} bytes of an unfinished TPKT packet at close", ts,
                            buf.pending_frames(), is_orig)
                buf.clear()
            if self.segs[is_orig]:
                self._weird("unfinished_cotp_tsdu", "COTP DT segments without a final (EOT) segment", ts,
                            self.seg_frames[is_orig], is_orig)
                self._drop(is_orig)
        for txn in self.pending.drain():
            self._unmatched(txn)

    def _weird(self, name: str, reason: str, ts: float, frames: list[int], is_orig: bool,
               protocol: str = PROTOCOL) -> None:
        self.conn.weird(protocol, name, reason, ts, frames, is_orig)

    def _drop(self, is_orig: bool) -> None:
        self.segs[is_orig] = []
        self.seg_frames[is_orig] = []
        self.seg_ts[is_orig] = None

    def _tpkt(self, is_orig: bool, pdu: bytes, ts: float, frames: list[int]) -> None:
        code, f, off, err = cotp.parse_cotp(pdu)
        if err is not None:
            self._weird("bad_cotp_header", err, ts, frames, is_orig, COTP_KIND)
            if code < 0:
                return
        if code != cotp.DT:
            # After the hand-off only the release (DR/DC) or errors are expected here.
            name = cotp.TPDU_NAMES.get(code, f"unknown-0x{code:02x}")
            self.conn.emit(COTP_KIND, "error" if code == cotp.ER else "session",
                           {"tpdu": name, **f, "status": "one_way"}, ts, frames, is_orig)
            return
        segs = self.segs[is_orig]
        if not f["eot"] and off == len(pdu) and not segs:
            return                                    # empty DT without EOT: keep-alive
        if segs:
            fl = self.seg_frames[is_orig]
            fl.extend(x for x in frames if x not in fl)
        else:
            self.seg_frames[is_orig] = list(frames)
            self.seg_ts[is_orig] = ts
        segs.append(pdu[off:])
        if not f["eot"]:
            if sum(map(len, segs)) > MAX_TSDU:
                self._weird("cotp_tsdu_too_long", f"reassembled COTP data over {MAX_TSDU} bytes", ts,
                            self.seg_frames[is_orig], is_orig, COTP_KIND)
                self._drop(is_orig)
            return
        payload = segs[0] if len(segs) == 1 else b"".join(segs)
        fl, t0 = self.seg_frames[is_orig], self.seg_ts[is_orig]
        self._drop(is_orig)
        self.pdu(is_orig, payload, t0 if t0 is not None else ts, fl)

    # ------------------------------------------------------------------ ISO 8327 session
    def pdu(self, is_orig: bool, p: bytes, ts: float, frames: list[int]) -> None:
        """One COTP TSDU (reassembled user data): session SPDU(s), or an MMS PDU without session."""
        if not p:
            return
        if p[0] in _MMS_FIRST:                         # no session/presentation layer (e.g. some RTUs)
            self._mms_bytes(is_orig, memoryview(p), {}, ts, frames)
            return
        try:
            self._session(is_orig, memoryview(p), ts, frames)
        except (ber.BerError, IndexError) as e:
            self._weird("malformed_session", f"{type(e).__name__}: {e}", ts, frames, is_orig)

    @staticmethod
    def _li(mv: memoryview, off: int, end: int) -> tuple[int, int]:
        """Session length indicator (8.2.5): one octet, or 0xFF followed by two. Returns (value, next)."""
        if off >= end:
            raise ber.BerError("session length indicator missing")
        n = mv[off]
        if n != 0xFF:
            return n, off + 1
        if off + 3 > end:
            raise ber.BerError("session length indicator cut short")
        return (mv[off + 1] << 8) | mv[off + 2], off + 3

    def _params(self, mv: memoryview, off: int, end: int, sess: dict[str, Any], ts: float,
                frames: list[int], is_orig: bool) -> memoryview | None:
        """SPDU parameters (PI / PGI units, 8.2.6): session fields into `sess`; returns the user data
        (PGI 193 / 194) if present."""
        ud = None
        while off < end:
            code = mv[off]
            n, voff = self._li(mv, off + 1, end)
            if voff + n > end:
                self._weird("bad_session_parameter",
                            f"parameter {code} of {n} octets runs past the SPDU ({end - voff} left)",
                            ts, frames, is_orig)
                return ud
            v = mv[voff:voff + n]
            if code in (PGI_CONN_ACCEPT, PGI_CONN_ID):
                self._params(mv, voff, voff + n, sess, ts, frames, is_orig)
            elif code == PI_PROTOCOL_OPTIONS and n == 1:
                sess["extended_concatenation"] = bool(v[0] & 1)
            elif code == PI_VERSION and n == 1:
                sess["version"] = [i + 1 for i in range(8) if v[0] >> i & 1]
            elif code == PI_TSDU_MAX and n == 4:
                sess["tsdu_max_size"] = [(v[0] << 8) | v[1], (v[2] << 8) | v[3]]
            elif code == PI_USER_REQ and n == 2:
                bits = (v[0] << 8) | v[1]
                sess["requirements"] = [nm for i, nm in enumerate(SESSION_REQUIREMENTS) if bits >> i & 1]
            elif code == PI_CALLING_SSEL:
                sess["calling_selector"] = bytes(v).hex()
            elif code == PI_CALLED_SSEL:
                sess["called_selector"] = bytes(v).hex()
            elif code == PI_TRANSPORT_DISCONNECT and n == 1:
                sess["transport_disconnect"] = "released" if v[0] & 1 == 0 else "kept"
                if v[0] & 2:
                    sess["user_abort"] = True
            elif code == PI_REASON and n >= 1:
                sess["reason"] = _name(REFUSE_REASONS, v[0])
                if n > 1 and v[0] == 2:
                    ud = v[1:]
            elif code in (PGI_USER_DATA, PGI_EXT_USER_DATA):
                ud = v
            off = voff + n
        return ud

    def _session(self, is_orig: bool, mv: memoryview, ts: float, frames: list[int]) -> None:
        end = len(mv)
        si = mv[0]
        li, off = self._li(mv, 1, end)
        sess: dict[str, Any] = {}
        if si == SI_DT:
            # 8.3.1 / 7.9: a GIVE TOKENS (or PLEASE TOKENS) SPDU of category 0 is concatenated in front
            # of the DATA TRANSFER SPDU; the user information follows the DT's parameters.
            if li == 0 and off < end and mv[off] in (SI_DT, 0x02):
                si2 = mv[off]
                li, off = self._li(mv, off + 1, end)
                if si2 != SI_DT:
                    self._weird("unexpected_spdu", f"SPDU {si2} after GIVE TOKENS", ts, frames, is_orig)
                    return
            if off + li > end:
                self._weird("bad_spdu_length",
                            f"DATA TRANSFER parameters of {li} octets, {end - off} present",
                            ts, frames, is_orig)
                return
            if li:
                self._params(mv, off, off + li, sess, ts, frames, is_orig)
            self._presentation(is_orig, SI_DT, mv[off + li:], sess, ts, frames)
            return
        name = SPDU_TYPES.get(si)
        if name is None:
            self._weird("unknown_spdu", f"SPDU type 0x{si:02x}", ts, frames, is_orig)
            return
        if off + li > end:
            self._weird("bad_spdu_length", f"{name} SPDU length {li}, {end - off} octets present", ts, frames,
                        is_orig)
            li = end - off
        elif off + li < end and si != SI_ABORT_ACCEPT:
            self._weird("trailing_spdu_data", f"{end - off - li} octets after the {name} SPDU", ts, frames,
                        is_orig)
        ud = self._params(mv, off, off + li, sess, ts, frames, is_orig)
        sess["spdu"] = name
        if si in _PARAM_UD:
            self._presentation(is_orig, si, ud, sess, ts, frames)
        else:
            self._session_only(is_orig, si, sess, ts, frames)

    # ------------------------------------------------------------------ ISO 8823 presentation
    def _presentation(self, is_orig: bool, si: int, ud: memoryview | None, sess: dict[str, Any], ts: float,
                      frames: list[int]) -> None:
        """The PPDU in the session user data: CP/CPA/CPR (connection), fully/simply encoded user data."""
        rec: dict[str, Any] = {}
        if si != SI_DT:
            rec["spdu"] = sess.pop("spdu")
            if sess:
                rec["session"] = sess
        if ud is None or len(ud) == 0:
            self._session_only(is_orig, si, rec, ts, frames)
            return
        try:
            t = ber.read_tlv(ud)
            if t.end != len(ud):
                self._weird("trailing_presentation_data", f"{len(ud) - t.end} octets after the PPDU", ts,
                            frames, is_orig)
            payloads = self._ppdu(t, rec)
        except ber.BerError as e:
            self._weird("malformed_presentation", str(e), ts, frames, is_orig)
            self._session_only(is_orig, si, rec, ts, frames)
            return
        self._upper(is_orig, si, payloads, rec, ts, frames)

    def _ppdu(self, t: ber.Tlv, rec: dict[str, Any]) -> list[tuple[int | None, ber.Tlv]]:
        """Presentation fields into rec["presentation"]; returns the (context id, PDV) user data."""
        if t.cls == ber.UNIVERSAL and t.tag in (16, 17) and t.constructed:
            pres: dict[str, Any] = {}
            kids = _ctx(t)
            if 0 in kids:                                       # [0] mode-selector SET { [0] mode-value }
                m = _ctx(kids[0])
                if 0 in m:
                    pres["mode"] = _name(MODES, ber.as_int(m[0].value))
            out: list[tuple[int | None, ber.Tlv]] = []
            params = kids.get(2)                                # [2] normal-mode-parameters
            if params is None and t.tag == 16:                  # CPR-PPDU / ARP-PPDU: SEQUENCE
                params = t
            if params is not None and params.constructed:
                for c in params.children():
                    self._pres_param(c, pres, out)
            rec["presentation"] = pres
            return out
        if t.cls == ber.CONTEXT and t.tag == 0 and t.constructed:          # ARU-PPDU normal mode
            pres = {"ppdu": "ARU"}
            out = []
            for c in t.children():
                self._pres_param(c, pres, out)
            rec["presentation"] = pres
            return out
        out = []
        self._user_data(t, out)
        return out

    def _pres_param(self, c: ber.Tlv, pres: dict[str, Any], out: list) -> None:
        tag = c.tag
        if c.cls == ber.APPLICATION:
            self._user_data(c, out)
        elif c.cls != ber.CONTEXT:
            return
        elif tag == 1 and not c.constructed:
            pres["calling_selector"] = bytes(c.value).hex()
        elif tag == 2 and not c.constructed:
            pres["called_selector"] = bytes(c.value).hex()
        elif tag == 3 and not c.constructed:
            pres["responding_selector"] = bytes(c.value).hex()
        elif tag == 4 and c.constructed:                        # presentation-context-definition-list
            ctxs = []
            for item in c.children():
                pcid, syntax, transfer = None, None, []
                for x in item.children():
                    if x.tag == 2 and x.cls == ber.UNIVERSAL:
                        pcid = ber.as_int(x.value)
                    elif x.tag == 6 and x.cls == ber.UNIVERSAL:
                        syntax = ber.as_oid(x.value)
                    elif x.constructed:
                        transfer = [ber.as_oid(s.value) for s in x.children()]
                if pcid is not None and syntax is not None and len(self.contexts) < 64:
                    self.contexts[pcid] = syntax
                ctxs.append({"id": pcid, "abstract_syntax": syntax,
                             "abstract_syntax_name": OID_NAMES.get(syntax or "", "unknown"),
                             "transfer_syntaxes": transfer})
            pres["contexts"] = ctxs
        elif tag == 5 and c.constructed:                        # presentation-context-definition-result-list
            res = []
            for item in c.children():
                r = _ctx(item)
                res.append(_name(PCONTEXT_RESULTS, ber.as_int(r[0].value)) if 0 in r else "?")
            pres["context_results"] = res
        elif tag == 0 and not c.constructed and "ppdu" not in pres:
            pres["protocol_version"] = ber.as_bits(c.value) if c.length else ""

    def _user_data(self, t: ber.Tlv, out: list) -> None:
        """User-data: [APPLICATION 1] fully-encoded-data (SEQUENCE OF PDV-list) or [APPLICATION 0]
        simply-encoded-data (an OCTET STRING of the default context)."""
        if t.cls != ber.APPLICATION:
            raise ber.BerError(f"presentation user data with tag {t!r}")
        if t.tag == 0:
            out.append((None, ber.read_tlv(t.value)))
            return
        if t.tag != 1:
            raise ber.BerError(f"presentation user data [APPLICATION {t.tag}]")
        for pdv in t.children():                       # PDV-list SEQUENCE
            pcid = None
            for x in pdv.children():
                if x.cls == ber.UNIVERSAL and x.tag == 2:
                    pcid = ber.as_int(x.value)
                elif x.cls == ber.CONTEXT and x.tag == 0:   # single-ASN1-type: exactly one value
                    out.append((pcid, _only(x)))
                elif x.cls == ber.CONTEXT and x.tag == 1:   # octet-aligned
                    out.append((pcid, ber.read_tlv(x.value)))

    # ------------------------------------------------------------------ ACSE / MMS dispatch
    def _upper(self, is_orig: bool, si: int, payloads: list, rec: dict[str, Any], ts: float,
               frames: list[int]) -> None:
        mms_pdus: list[tuple[int | None, ber.Tlv]] = []
        for pcid, t in payloads:
            if t.cls == ber.APPLICATION:                          # ACSE APDU
                try:
                    mms_pdus.extend(self._acse(t, rec))
                except ber.BerError as e:
                    self._weird("malformed_acse", str(e), ts, frames, is_orig)
                if pcid is not None:
                    rec["acse_context_id"] = pcid
            else:
                mms_pdus.append((pcid, t))
        if not mms_pdus:
            self._session_only(is_orig, si, rec, ts, frames)
            return
        if len(mms_pdus) > 1:
            self._weird("several_mms_pdus", f"{len(mms_pdus)} MMS PDUs in one TSDU", ts, frames, is_orig)
        pcid, t = mms_pdus[0]
        if pcid is not None:
            rec["context_id"] = pcid
        self._mms(is_orig, t, rec, ts, frames)

    def _acse(self, t: ber.Tlv, rec: dict[str, Any]) -> list[tuple[int | None, ber.Tlv]]:
        """AARQ / AARE / RLRQ / RLRE / ABRT: fields into rec; returns MMS PDUs in user-information."""
        name = _name(ACSE_PDUS, t.tag)
        a: dict[str, Any] = {"apdu": name}
        rec["acse"] = a
        out: list[tuple[int | None, ber.Tlv]] = []
        fields = AARQ_FIELDS if t.tag == 0 else AARE_FIELDS if t.tag == 1 else {}
        for c in t.children():
            if c.cls != ber.CONTEXT:
                continue
            tag = c.tag
            if tag == 1 and t.tag in (0, 1):
                oid = ber.as_oid(_only(c).value)
                a["application_context"] = oid
                a["application_context_name"] = OID_NAMES.get(oid, "unknown")
            elif tag in fields:
                a[fields[tag]] = _oid_or_int(c)
            elif tag == 2 and t.tag == 1:
                a["result"] = _name(ACSE_RESULTS, ber.as_int(_only(c).value))
            elif tag == 3 and t.tag == 1:
                d = _only(c)
                table = ACSE_USER_DIAG if d.tag == 1 else ACSE_PROVIDER_DIAG
                a["diagnostic"] = _name(table, ber.as_int(_only(d).value))
                a["diagnostic_source"] = "service-user" if d.tag == 1 else "service-provider"
            elif tag == 0 and t.tag in (2, 3):
                table = RELEASE_REQ_REASONS if t.tag == 2 else RELEASE_RSP_REASONS
                a["reason"] = _name(table, ber.as_int(c.value))
            elif tag == 0 and t.tag == 4:
                a["abort_source"] = _name(ABORT_SOURCES, ber.as_int(c.value))
            elif (tag, t.tag) in ((11, 0), (9, 1)):
                a["mechanism"] = ber.as_oid(c.value)
            elif (tag, t.tag) in ((12, 0), (10, 1)):
                # Authentication-value: record the kind and length, never the secret itself.
                v = _only(c)
                a["authentication"] = {0: "charstring", 1: "bitstring", 2: "external", 3: "other"}.get(
                    v.tag, "unknown")
                a["authentication_length"] = v.length
            elif tag == 30 and c.constructed:                     # user-information: EXTERNALs
                for ext in c.children():
                    pcid = None
                    for x in ext.children():
                        if x.cls == ber.UNIVERSAL and x.tag == 2:
                            pcid = ber.as_int(x.value)
                        elif x.cls == ber.CONTEXT and x.tag == 0:
                            out.append((pcid, _only(x)))
                        elif x.cls == ber.CONTEXT and x.tag == 1:
                            out.append((pcid, ber.read_tlv(x.value)))
        return out

    def _mms_bytes(self, is_orig: bool, mv: memoryview, rec: dict[str, Any], ts: float,
                   frames: list[int]) -> None:
        try:
            t = ber.read_tlv(mv)
        except ber.BerError as e:
            self._weird("malformed_mms", str(e), ts, frames, is_orig)
            return
        if t.end != len(mv):
            self._weird("trailing_mms_data", f"{len(mv) - t.end} octets after the MMS PDU", ts, frames,
                        is_orig)
        self._mms(is_orig, t, rec, ts, frames)

    # ------------------------------------------------------------------ MMS PDUs
    def _mms(self, is_orig: bool, t: ber.Tlv, rec: dict[str, Any], ts: float, frames: list[int]) -> None:
        if t.cls != ber.CONTEXT or t.tag not in PDU_TYPES:
            self._weird("unknown_mms_pdu", f"MMS PDU with tag {t!r}", ts, frames, is_orig)
            return
        tag = t.tag
        try:
            if tag == 0:
                self._confirmed_request(is_orig, t, rec, ts, frames)
            elif tag in (1, 2):
                self._confirmed_response(is_orig, t, rec, ts, frames)
            elif tag == 3:
                self._unconfirmed(is_orig, t, rec, ts, frames)
            elif tag == 4:
                self._reject(is_orig, t, rec, ts, frames)
            elif tag in (5, 8, 11):
                self._assoc_request(is_orig, t, rec, ts, frames)
            else:
                self._assoc_response(is_orig, t, rec, ts, frames)
        except ber.BerError as e:
            self._weird("malformed_mms", f"{PDU_TYPES[tag]}: {e}", ts, frames, is_orig)

    def _decode(self, dec, rec: dict, t: ber.Tlv, ts: float, frames: list[int], is_orig: bool) -> None:
        """Run a service decoder; malformed contents -> weird + rec["malformed"], the event still goes out."""
        try:
            dec(rec, t)
        except (ber.BerError, ValueError, IndexError) as e:
            rec["malformed"] = True
            self._weird("malformed_mms", f"{rec.get('service')}: {e}", ts, frames, is_orig)

    def _confirmed_request(self, is_orig: bool, t: ber.Tlv, rec: dict, ts: float, frames: list[int]) -> None:
        invoke, svc = None, None
        for c in t.children():
            if c.cls == ber.UNIVERSAL and c.tag == 2:
                invoke = ber.as_uint(c.value)
            elif c.cls == ber.CONTEXT:
                svc = c
        if invoke is None or svc is None:
            raise ber.BerError("confirmed-RequestPDU without invokeID or service")
        name, action = SERVICES.get(svc.tag, (f"unknown-{svc.tag}", _O))
        rec.update(pdu=PDU_TYPES[0], invoke_id=invoke, service=name)
        dec = REQUEST_DECODERS.get(svc.tag)
        if dec is not None:
            self._decode(dec, rec, svc, ts, frames, is_orig)
        for old in self.pending.add(("c", is_orig, invoke), ts, _Txn(ts, frames, is_orig, rec, action)):
            self._unmatched(old)

    def _confirmed_response(self, is_orig: bool, t: ber.Tlv, rec: dict, ts: float, frames: list[int]) -> None:
        error = t.tag == 2
        invoke, svc = None, None
        if error:
            k = _ctx(t)
            if 0 in k:
                invoke = ber.as_uint(k[0].value)
            svc = k.get(2)
        else:
            for c in t.children():
                if c.cls == ber.UNIVERSAL and c.tag == 2:
                    invoke = ber.as_uint(c.value)
                elif c.cls == ber.CONTEXT:
                    svc = c
        if invoke is None:
            raise ber.BerError(f"{PDU_TYPES[t.tag]} without invokeID")
        txn = self.pending.pop(("c", not is_orig, invoke))
        if txn is None:
            out: dict[str, Any] = {"invoke_id": invoke, "status": "no_request"}
            action = "error" if error else _O
            if svc is not None and not error:
                name, action = SERVICES.get(svc.tag, (f"unknown-{svc.tag}", _O))
                out["service"] = name
            t0, fl = ts, frames
        else:
            out, action = txn.fields, txn.action
            out["status"] = "paired"
            out["latency"] = round(ts - txn.ts, 6)
            t0, fl = txn.ts, txn.frames + [f for f in frames if f not in txn.frames]
        for k2, v in rec.items():                      # session/presentation context of the response
            if k2 == "context_id" and out.get(k2) == v:
                continue
            out.setdefault("response_" + k2 if k2 in out else k2, v)
        out["response_pdu"] = PDU_TYPES[t.tag]
        if svc is None and not error:
            self._weird("missing_mms_service", "confirmed-ResponsePDU without a ConfirmedServiceResponse", ts,
                        frames, is_orig)
        if error:
            if svc is not None:
                self._decode(service_error, out, svc, ts, frames, is_orig)
        elif svc is not None:
            rname = SERVICES.get(svc.tag, (f"unknown-{svc.tag}",))[0]
            if out.get("service", rname) != rname:
                out["response_service"] = rname
                self._weird("service_mismatch", f"{out.get('service')} request answered by {rname}", ts,
                            frames, is_orig)
            else:
                dec = RESPONSE_DECODERS.get(svc.tag)
                if dec is not None:
                    self._decode(dec, out, svc, ts, frames, is_orig)
        if "identity" in out and txn is None:
            out["identity_of"] = "src"          # no request seen: the sender of the response is the server
        self.conn.emit(PROTOCOL, action, out, t0, fl, not is_orig)

    def _unconfirmed(self, is_orig: bool, t: ber.Tlv, rec: dict, ts: float, frames: list[int]) -> None:
        svc = next((c for c in t.children() if c.cls == ber.CONTEXT), None)
        if svc is None:
            raise ber.BerError("unconfirmed-PDU without a service")
        name, action = UNCONFIRMED.get(svc.tag, (f"unknown-{svc.tag}", _O))
        rec.update(pdu=PDU_TYPES[3], service=name, status="one_way")
        if svc.tag == 0:
            def report(r: dict, s: ber.Tlv) -> None:
                kids = list(s.children())
                if len(kids) < 2:
                    raise ber.BerError("informationReport without listOfAccessResult")
                var_access(kids[0], r)
                access_results(kids[1], r)
            self._decode(report, rec, svc, ts, frames, is_orig)
        self.conn.emit(PROTOCOL, action, rec, ts, frames, is_orig)

    def _reject(self, is_orig: bool, t: ber.Tlv, rec: dict, ts: float, frames: list[int]) -> None:
        k = _ctx(t)
        invoke = ber.as_uint(k[0].value) if 0 in k else None
        reason = next((c for tag, c in k.items() if tag != 0), None)
        txn = self.pending.pop(("c", not is_orig, invoke)) if invoke is not None else None
        if txn is not None:
            out, action = txn.fields, txn.action
            out.update(status="paired", latency=round(ts - txn.ts, 6), response_pdu=PDU_TYPES[4])
            t0, fl, req_orig = txn.ts, txn.frames + frames, txn.is_orig
        else:
            out = {**rec, "pdu": PDU_TYPES[4], "status": "one_way"}
            if invoke is not None:
                out["invoke_id"] = invoke
            action, t0, fl, req_orig = "error", ts, frames, is_orig
        if reason is not None:
            rtype, codes = REJECT_REASONS.get(reason.tag, (f"unknown-{reason.tag}", {}))
            out["reject_type"] = rtype
            out["reject_reason"] = _name(codes, ber.as_int(reason.value))
        self.conn.emit(PROTOCOL, action, out, t0, fl, req_orig)

    # ------------------------------------------------------------------ association / release / cancel
    @staticmethod
    def _assoc_key(tag: int, is_orig: bool, t: ber.Tlv) -> tuple:
        """Pairing key: initiate [8]-[10] and conclude [11]-[13] per requester direction; cancel by
        invokeID."""
        if tag in (8, 9, 10):
            return ("assoc", is_orig)
        if tag in (11, 12, 13):
            return ("release", is_orig)
        if tag == 7:
            k = _ctx(t)
            return ("cancel", is_orig, ber.as_uint(k[0].value) if 0 in k else None)
        return ("cancel", is_orig, ber.as_uint(t.value))

    def _assoc_request(self, is_orig: bool, t: ber.Tlv, rec: dict, ts: float, frames: list[int]) -> None:
        tag = t.tag
        rec["pdu"] = PDU_TYPES[tag]
        rec["service"] = {8: "initiate", 11: "conclude", 5: "cancel"}[tag]
        if tag == 8:
            self._decode(lambda r, x: initiate(x, r, False), rec, t, ts, frames, is_orig)
        elif tag == 5:
            rec["invoke_id"] = ber.as_uint(t.value)
        key = self._assoc_key(tag, is_orig, t)
        for old in self.pending.add(key, ts, _Txn(ts, frames, is_orig, rec, "session")):
            self._unmatched(old)

    def _assoc_response(self, is_orig: bool, t: ber.Tlv, rec: dict, ts: float, frames: list[int]) -> None:
        tag = t.tag
        req_tag = {6: 5, 7: 5, 9: 8, 10: 8, 12: 11, 13: 11}[tag]
        txn = self.pending.pop(self._assoc_key(req_tag, not is_orig, t) if tag not in (6, 7) else
                               self._assoc_key(tag, not is_orig, t))
        service = {9: "initiate", 10: "initiate", 12: "conclude", 13: "conclude"}.get(tag, "cancel")
        last = self._pair_session(is_orig, txn, rec, PDU_TYPES[tag], ts, frames, service)
        out = last[0]
        if tag == 9:
            self._decode(lambda r, x: initiate(x, r, True), out, t, ts, frames, is_orig)
        elif tag in (10, 13):
            self._decode(service_error, out, t, ts, frames, is_orig)
        elif tag == 7:
            k = _ctx(t)
            if 1 in k:
                self._decode(service_error, out, k[1], ts, frames, is_orig)
        self._emit_session(last)

    # Session-level messages without an MMS PDU (CONNECT with only ACSE, REFUSE, ABORT, FINISH ...).

    def _session_only(self, is_orig: bool, si: int, rec: dict, ts: float, frames: list[int]) -> None:
        if si == SI_DT:
            if rec:
                self._weird("empty_session_data", "DATA TRANSFER without an MMS PDU", ts, frames, is_orig)
            return
        if si in (SI_CONNECT, SI_ACCEPT, SI_REFUSE):
            service = "initiate"
        elif si in (SI_FINISH, SI_DISCONNECT, SI_NOT_FINISHED):
            service = "conclude"
        elif si in (SI_ABORT, SI_ABORT_ACCEPT):
            service = "abort"
        else:                     # tokens, synchronisation, activity, capability data, typed data ...
            service = "session-control"
        if si in _SESSION_REQUESTS:
            rec["service"] = service
            for old in self.pending.add((_SESSION_REQUESTS[si], is_orig), ts,
                                        _Txn(ts, frames, is_orig, rec, "session")):
                self._unmatched(old)
            return
        if si in _SESSION_RESPONSES:
            txn = self.pending.pop((_SESSION_RESPONSES[si], not is_orig))
            self._emit_session(self._pair_session(is_orig, txn, rec, None, ts, frames, service))
            return
        rec["service"] = service
        rec["status"] = "one_way"
        self.conn.emit(PROTOCOL, "session", rec, ts, frames, is_orig)

    def _pair_session(self, is_orig: bool, txn: _Txn | None, rec: dict, pdu: str | None, ts: float,
                      frames: list[int], service: str) -> tuple[dict, float, list[int], bool]:
        """Merge a response (session/presentation/ACSE fields in `rec`) into its request record."""
        if txn is None:
            out = {"service": service, "status": "no_request"}
            t0, fl, req_orig = ts, frames, not is_orig
        else:
            out = txn.fields
            out["status"] = "paired"
            out["latency"] = round(ts - txn.ts, 6)
            t0, fl, req_orig = txn.ts, txn.frames + [f for f in frames if f not in txn.frames], txn.is_orig
        for k, v in rec.items():
            if k in ("spdu", "session", "presentation", "acse", "context_id", "acse_context_id"):
                out["response_" + k] = v
            else:
                out.setdefault(k, v)
        if pdu is not None:
            out["response_pdu"] = pdu
        return out, t0, fl, req_orig

    def _emit_session(self, last: tuple[dict, float, list[int], bool]) -> None:
        out, t0, fl, req_orig = last
        self.conn.emit(PROTOCOL, "session", out, t0, fl, req_orig)

    def _unmatched(self, txn: _Txn) -> None:
        txn.fields["status"] = "no_response"
        self.conn.emit(PROTOCOL, txn.action, txn.fields, txn.ts, txn.frames, txn.is_orig)


# Name used by the lead's brief for the COTP hand-off object.
MmsSession = TcpAnalyzer
