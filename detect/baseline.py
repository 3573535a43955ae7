"""Layer 2, the learned baseline (allow-list): which assets exist, who talks to whom, with what.

Learning mode records, from every event: IP-MAC bindings (ARP and any frame carrying both), talker pairs
(source, destination, protocol, service port), operations per client and server (event kind + function /
service / op), and the point references each client writes on each server with their address ranges.
Protect mode turns every deviation into an alert that names the missing baseline entry and the learning
window; an operator can accept a deviation into the baseline (`accept`), and the baseline is saved per
site in the data directory (`detect.state`).

Nothing here knows a particular protocol: operations come from the generic record keys (function, func,
service, type_id, op ...) and point refs from `fields["points"]` (sensors/base.py conventions).
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Iterable
from functools import lru_cache
from typing import Any

from detect.state import make_alert
from icsight.events import Endpoint, Event, ts_to_iso

# Record keys that name the operation of a transaction, in order of preference (Modbus func, DNP3/S7
# function, CIP/OPC UA/BACnet service, IEC 104 type_id, MQTT packet_type, ARP op, GOOSE has none).
OP_KEYS = ("function", "func", "service", "type_id", "packet_type", "pdu_type", "command", "op")
WRITE_ACTIONS = frozenset({"write", "control", "program"})
SKIP_KINDS = frozenset({"alert", "asset"})
EPHEMERAL_MIN = 32768  # ports at or above are treated as client-side (Linux default range starts here)
_REF_NUM = re.compile(r"^(.*?)(\d+)$")


class Layer:
    """A learned detection layer: learn events, then check them; its state is plain JSON."""

    name = "layer"
    layer = "?"

    def learn(self, ev: Event) -> None:
        """Learning mode: take one event into the learned state."""

    def finish_learning(self) -> None:
        """End of a learning run: derive summaries (periods, thresholds) from what was collected."""

    def check(self, ev: Event) -> list[Event]:
        """Protect mode: alerts for the deviations of one event."""
        return []

    def flush(self) -> list[Event]:
        """End of input: alerts still pending (windowed layers)."""
        return []

    def to_state(self) -> dict[str, Any]:
        return {}


# ---------------------------------------------------------------------- event helpers
@lru_cache(maxsize=65536)
def _ip_kind(ip: str) -> str:
    try:
        a = ipaddress.ip_address(ip)
    except ValueError:
        return "invalid"
    if a.is_multicast:
        return "multicast"
    if a.version == 4 and (ip.endswith(".255") or ip == "255.255.255.255"):
        return "broadcast"  # directed broadcast on the usual /24 plant networks, or limited broadcast
    if a.is_unspecified:
        return "unspecified"
    return "unicast"


def unicast_ip(ip: str | None) -> bool:
    return bool(ip) and _ip_kind(ip) == "unicast"


_mac_kind: dict[str, bool] = {}


def unicast_mac(mac: str | None) -> bool:
    """A real station address: not group (I/G bit), not all-zero."""
    if not mac:
        return False
    ok = _mac_kind.get(mac)
    if ok is None:
        if len(_mac_kind) >= 65536:
            _mac_kind.clear()
        ok = len(mac) == 17 and not int(mac[:2], 16) & 1 and mac != "00:00:00:00:00:00"
        _mac_kind[mac] = ok
    return ok


def node(ep: Endpoint) -> str:
    """The name of one side: its IP, else its MAC, else "?"."""
    return ep.ip or ep.mac or "?"


_service_ports: frozenset[int] | None = None


def service_ports() -> frozenset[int]:
    """The ports of the parsed protocols (their modules' TCP_PORTS / UDP_PORTS defaults)."""
    global _service_ports
    if _service_ports is None:
        from sensors import PROTOCOLS

        _service_ports = frozenset(
            int(p)
            for m in PROTOCOLS.values()
            for p in (*getattr(m, "TCP_PORTS", ()), *getattr(m, "UDP_PORTS", ()))
        )
    return _service_ports


def src_serves(sp: int, dp: int) -> bool:
    """True when the source port is the service side: the one port of the pair that is a known protocol
    port (EtherNet/IP 44818, BACnet 47808 ... lie in the ephemeral range), else the one below
    EPHEMERAL_MIN."""
    known = _service_ports if _service_ports is not None else service_ports()
    a, b = sp in known, dp in known
    if a is not b:
        return a
    return dp >= EPHEMERAL_MIN > sp


def service_port(ev: Event) -> int | None:
    """The server-side port of an event: the destination's, unless the source's serves (`src_serves`)."""
    sp, dp = ev.src.port, ev.dst.port
    if dp is None:
        return sp
    if sp is not None and src_serves(sp, dp):
        return sp
    return dp


def server_side(ev: Event) -> tuple[Endpoint, Endpoint]:
    """(client, server): the server is the side holding the service port (layer 2: the source publishes)."""
    sp, dp = ev.src.port, ev.dst.port
    if dp is None and sp is None:
        return ev.dst, ev.src
    if sp is not None and dp is not None and src_serves(sp, dp):
        return ev.dst, ev.src
    return ev.src, ev.dst


def protocol_of(ev: Event) -> str:
    """The protocol name of a talker pair: the event kind, or for flows transport/service."""
    if ev.kind == "flow":
        f = ev.fields
        return f"{f.get('proto') or '?'}/{f.get('service') or '-'}"
    return ev.kind


def op_of(ev: Event) -> str:
    """The operation of an event: kind-specific record key (see OP_KEYS), else the action."""
    f, kind = ev.fields, ev.kind
    j = _op_at.get(kind)
    if j is not None:  # the key this kind's events carried so far: check it (and that none before it is set)
        get = f.get
        v = get(OP_KEYS[j])
        if v.__class__ is str:
            for k in _OP_BEFORE[j]:
                if get(k) is not None:
                    break
            else:
                return v
    return _op_of(f, kind, ev.action)


_op_at: dict[str, int] = {}  # kind -> index in OP_KEYS of the key that gave its last operation
_OP_BEFORE = [OP_KEYS[:j] for j in range(len(OP_KEYS))]


def _op_of(f: Any, kind: str, action: str) -> str:
    if kind == "weird":
        return f"weird:{f.get('protocol')}/{f.get('name')}"
    if kind == "flow":
        return f"flow:{f.get('conn_state') or '?'}"
    get = f.get
    for j, k in enumerate(OP_KEYS):
        v = get(k)
        if v is None:
            continue
        if v.__class__ is str:
            op = v
            if kind != "arp":
                _op_at[kind] = j
        elif isinstance(v, dict | list):
            continue
        else:
            op = str(v)
        if kind == "arp" and get("gratuitous"):
            op += "+gratuitous"
        return op
    return action


_points_last: list[Any] = [None, []]  # the last event points_of saw and its result (layers share it)


def points_of(ev: Event) -> list[tuple[str, Any]]:
    """(ref, value) of an event's points; Modbus-style address/values become "<func>:<address>" refs.

    The refs of the last event asked for are kept: every layer checking that event reuses them.
    """
    if ev is _points_last[0]:
        return _points_last[1]
    out = _points_of(ev)
    _points_last[0], _points_last[1] = ev, out
    return out


def _points_of(ev: Event) -> list[tuple[str, Any]]:
    f = ev.fields
    pts = f.get("points")
    if isinstance(pts, list):
        return [(str(p["ref"]), p.get("value")) for p in pts if isinstance(p, dict) and "ref" in p]
    addr, vals = f.get("address"), f.get("values")
    if isinstance(addr, int) and isinstance(vals, list):
        base = str(f.get("func") or ev.kind)
        return [(f"{base}:{addr + i}", v) for i, v in enumerate(vals)]
    return []


def split_ref(ref: str) -> tuple[str, int | None]:
    """ "1:ai:17" -> ("1:ai:", 17): the ref's family and its numeric address, when it ends in one."""
    m = _REF_NUM.match(ref)
    if not m:
        return ref, None
    return m.group(1), int(m.group(2))


def bindings_of(ev: Event) -> list[tuple[str, str]]:
    """(ip, mac) pairs an event shows: ARP sender, and both sides of any frame with unicast IP + MAC."""
    out = []
    if ev.kind == "arp":
        ip, mac = ev.fields.get("sender_ip"), ev.fields.get("sender_mac")
        if unicast_ip(ip) and unicast_mac(mac) and ip != "0.0.0.0":
            out.append((ip, mac))
        return out
    for ep in (ev.src, ev.dst):
        if unicast_ip(ep.ip) and unicast_mac(ep.mac):
            out.append((ep.ip, ep.mac))
    return out


def _day(ts: float | None) -> str:
    return ts_to_iso(ts)[:19] + "Z" if ts else "?"


class EventInfo:
    """The keys the learned layers derive from an event's endpoints, kind, action and operation.

    Computed once per distinct (kind, endpoints, action, operation) and shared through `event_info`: the
    per-event path of the layers is then a dict lookup on a tuple of strings, with no string building.
    Layers keep their own verdicts in dicts keyed by the (identity-hashed) `EventInfo` object.
    """

    __slots__ = (
        "action",
        "broadcast_dst",
        "client",
        "dst",
        "feat_op",
        "kind",
        "op",
        "op_key",
        "point_prefix",
        "proto",
        "server",
        "sport",
        "src",
        "talker",
        "write_prefix",
    )

    def __init__(self, ev: Event, op: str) -> None:
        self.op = op
        self.kind, self.action = ev.kind, ev.action
        self.proto = protocol_of(ev)
        self.src, self.dst = node(ev.src), node(ev.dst)
        client, server = server_side(ev)
        self.client, self.server = node(client), node(server)
        self.sport = service_port(ev)
        self.talker = f"{self.src}|{self.dst}|{self.proto}|{self.sport}"  # = Baseline.talker_key(ev)
        self.op_key = f"{self.client}|{self.server}|{ev.kind}|{op}"  # = Baseline.op_key = channel key
        self.point_prefix = f"{self.server}|{ev.kind}|"  # = ProcessTiming.point_key(ev, "")
        self.write_prefix = f"{self.client}|{self.server}|{ev.kind}|"  # = Baseline.write_key(ev, "")
        self.feat_op = f"{ev.kind}:{op}"
        d = ev.dst
        self.broadcast_dst = bool((d.ip and not unicast_ip(d.ip)) or (d.mac and not unicast_mac(d.mac)))


_info_memo: dict[tuple, EventInfo] = {}
# the Endpoint objects of the last event (one connection, one direction) and its (kind, action, op) -> info
_last_pair: list[Any] = [None, None, {}]
_info_last: list[Any] = [None, None]
INFO_MEMO_MAX = 200_000


def info_key(ev: Event, op: str | None = None) -> tuple:
    """What `EventInfo` (and the baseline's verdict on the endpoints) depends on, as one tuple.

    Ports count only through the service port and which side holds it (`service_port`, `server_side`):
    the connections of one client to one service (new source port each) share their `EventInfo`.
    """
    s, d, f = ev.src, ev.dst, ev.fields
    sp, dp = s.port, d.port
    swap = (sp is None) if dp is None else (sp is not None and src_serves(sp, dp))  # = server_side
    sport = sp if dp is None or swap else dp  # = service_port(ev)
    k = (ev.kind, s.ip, s.mac, d.ip, d.mac, sport, swap, ev.action, op_of(ev) if op is None else op)
    if ev.kind == "flow":
        k += (f.get("proto"), f.get("service"))
    elif ev.kind == "arp":  # ARP bindings come from the sender fields, not the endpoints
        k += (f.get("sender_ip"), f.get("sender_mac"))
    return k


def event_info(ev: Event) -> EventInfo:
    """The shared `EventInfo` of an event (the last event's is kept: each layer asks for it).

    Events of one connection share their `Endpoint` objects (sensors.flows.Conn): while the events
    come from the same pair of objects, the lookup is by kind, action and operation only; otherwise by
    `info_key`. (Only the last pair is kept: a memo of every connection's objects would keep them alive,
    and the sensor pays for that in garbage collection and memory.)
    """
    if ev is _info_last[0]:
        return _info_last[1]
    kind = ev.kind
    if kind == "flow" or kind == "arp":  # keys from fields beyond the operation (`info_key`)
        info = _info_of(info_key(ev), ev)
    else:
        s, d, lp = ev.src, ev.dst, _last_pair
        if s is lp[0] and d is lp[1]:
            infos = lp[2]
        else:
            infos = {}
            lp[0], lp[1], lp[2] = s, d, infos
        op = op_of(ev)
        k = (kind, ev.action, op)
        info = infos.get(k)
        if info is None:
            info = infos[k] = _info_of(info_key(ev, op), ev)
    _info_last[0], _info_last[1] = ev, info
    return info


def _info_of(k: tuple, ev: Event) -> EventInfo:
    info = _info_memo.get(k)
    if info is None:
        if len(_info_memo) >= INFO_MEMO_MAX:
            _info_memo.clear()
        info = _info_memo[k] = EventInfo(ev, k[8])
    return info


# ---------------------------------------------------------------------- the baseline
class Baseline(Layer):
    """The allow-list of one site. State is JSON-able (see `to_state`)."""

    name = "baseline"
    layer = "baseline"

    def __init__(self, state: dict[str, Any] | None = None) -> None:
        s = state or {}
        self.first_ts: float | None = s.get("first_ts")
        self.last_ts: float | None = s.get("last_ts")
        self.bindings: dict[str, list[str]] = {k: list(v) for k, v in s.get("bindings", {}).items()}
        self.macs: set[str] = set(s.get("macs", ()))
        self.ips: set[str] = set(s.get("ips", ()))
        self.talkers: dict[str, int] = dict(s.get("talkers", {}))
        self.ops: dict[str, int] = dict(s.get("ops", {}))
        self.writes: dict[str, list[int]] = {k: list(v) for k, v in s.get("writes", {}).items()}
        self.write_refs: set[str] = set(s.get("write_refs", ()))
        self.accepted: list[dict[str, Any]] = list(s.get("accepted", ()))
        # protect fast path: EventInfo objects whose bindings, assets, talker pair and operation are all
        # in the baseline (entries are only ever added, so a clean verdict stays true)
        self._clean: dict[EventInfo, bool] = {}
        self._wkeys: dict[tuple[str, str], str] = {}  # (write prefix, func) -> write range key
        self._window: tuple[Any, Any, str] | None = None

    # ------------------------------------------------------------------ keys
    @staticmethod
    def talker_key(ev: Event) -> str:
        return f"{node(ev.src)}|{node(ev.dst)}|{protocol_of(ev)}|{service_port(ev)}"

    @staticmethod
    def op_key(ev: Event) -> str:
        client, server = server_side(ev)
        return f"{node(client)}|{node(server)}|{ev.kind}|{op_of(ev)}"

    @staticmethod
    def write_key(ev: Event, family: str) -> str:
        client, server = server_side(ev)
        return f"{node(client)}|{node(server)}|{ev.kind}|{family}"

    # ------------------------------------------------------------------ learn
    def learn(self, ev: Event) -> None:
        if ev.kind in SKIP_KINDS:
            return
        if self.first_ts is None or ev.ts < self.first_ts:
            self.first_ts = ev.ts
        if self.last_ts is None or ev.ts > self.last_ts:
            self.last_ts = ev.ts
        for ip, mac in bindings_of(ev):
            macs = self.bindings.setdefault(ip, [])
            if mac not in macs:
                macs.append(mac)
        for ep in (ev.src, ev.dst):
            if unicast_mac(ep.mac):
                self.macs.add(ep.mac)
            if unicast_ip(ep.ip):
                self.ips.add(ep.ip)
        if ev.kind == "arp" and unicast_mac(ev.fields.get("sender_mac")):
            self.macs.add(ev.fields["sender_mac"])
        k = self.talker_key(ev)
        self.talkers[k] = self.talkers.get(k, 0) + 1
        k = self.op_key(ev)
        self.ops[k] = self.ops.get(k, 0) + 1
        if ev.action in WRITE_ACTIONS:
            for ref, _ in points_of(ev):
                self.write_refs.add(f"{self.write_key(ev, '')}{ref}")
                fam, num = split_ref(ref)
                if num is not None:
                    wk = self.write_key(ev, fam)
                    r = self.writes.get(wk)
                    self.writes[wk] = [num, num] if r is None else [min(r[0], num), max(r[1], num)]

    def to_state(self) -> dict[str, Any]:
        return {
            "first_ts": self.first_ts,
            "last_ts": self.last_ts,
            "bindings": self.bindings,
            "macs": sorted(self.macs),
            "ips": sorted(self.ips),
            "talkers": self.talkers,
            "ops": self.ops,
            "writes": self.writes,
            "write_refs": sorted(self.write_refs),
            "accepted": self.accepted,
        }

    @property
    def window(self) -> str:
        w = self._window
        if w is None or w[0] != self.first_ts or w[1] != self.last_ts:
            w = self._window = (self.first_ts, self.last_ts, f"{_day(self.first_ts)} – {_day(self.last_ts)}")
        return w[2]

    # ------------------------------------------------------------------ protect
    def _alert(
        self,
        ev: Event,
        kind: str,
        key: str,
        severity: str,
        zh: str,
        en: str,
        title_zh: str,
        title_en: str,
        techniques: Iterable[str],
        entry: dict[str, Any],
        group: str | None = None,
    ) -> Event:
        learned = f"learned {self.window}"
        return make_alert(
            detector=f"baseline.{kind}",
            layer="baseline",
            title_zh=title_zh,
            title_en=title_en,
            severity=severity,
            reason_zh=f"{zh}，不在基线中（学习期 {self.window}）",
            reason_en=f"{en} not in baseline {learned}",
            evidence=[ev],
            key=f"baseline.{kind}:{key}",
            techniques=techniques,
            extra={"baseline_entry": entry},
            group=group,
        )

    def check(self, ev: Event) -> list[Event]:
        if ev.kind in SKIP_KINDS:
            return []
        info = event_info(ev)
        if info in self._clean:  # fast path: the endpoints, pair and operation are known
            return self._check_writes(ev, info, []) if ev.action in WRITE_ACTIONS else []
        out: list[Event] = []
        new_node = False
        for ip, mac in bindings_of(ev):
            known = self.bindings.get(ip)
            if known is None:
                if ip not in self.ips:
                    new_node = True
                    out.append(
                        self._alert(
                            ev,
                            "asset",
                            ip,
                            "high",
                            f"新资产 {ip} ({mac})",
                            f"new asset {ip} ({mac})",
                            "新资产",
                            "New asset",
                            ("T0848",),
                            {"table": "bindings", "ip": ip, "mac": mac},
                        )
                    )
            elif mac not in known:
                out.append(
                    self._alert(
                        ev,
                        "binding",
                        f"{ip}|{mac}",
                        "critical",
                        f"IP-MAC 绑定变化 {ip} 现为 {mac}（基线 {', '.join(known)}）",
                        f"IP-MAC binding changed: {ip} now at {mac} (baseline {', '.join(known)})",
                        "IP-MAC 绑定变化（疑似 ARP 欺骗/仿冒）",
                        "IP-MAC binding changed (ARP spoofing / masquerading?)",
                        ("T0830", "T0856"),
                        {"table": "bindings", "ip": ip, "mac": mac},
                    )
                )
        for ep in (ev.src, ev.dst):
            if unicast_mac(ep.mac) and ep.mac not in self.macs and not (ep.ip and unicast_ip(ep.ip)):
                new_node = True
                out.append(
                    self._alert(
                        ev,
                        "asset",
                        ep.mac,
                        "high",
                        f"新设备 MAC {ep.mac}",
                        f"new device MAC {ep.mac}",
                        "新资产",
                        "New asset",
                        ("T0848",),
                        {"table": "macs", "mac": ep.mac},
                    )
                )
        if new_node:
            return out
        tk = info.talker
        if tk not in self.talkers:
            s, d, proto, port = tk.split("|")
            out.append(
                self._alert(
                    ev,
                    "talker",
                    tk,
                    "medium",
                    f"新的通信对 {s} -> {d} {proto}/{port}",
                    f"new talker pair {s} -> {d} {proto}/{port}",
                    "新的通信对",
                    "New talker pair",
                    ("T0869",),
                    {"table": "talkers", "key": tk},
                    # one conversation, one alert: a flow and its transactions are the same new pair
                    group="baseline.talker:" + "|".join(sorted((s, d))),
                )
            )
            return out
        ok = info.op_key
        if ok not in self.ops:
            c, s, kind, op = ok.split("|")
            sev = "high" if ev.action in WRITE_ACTIONS else "medium"
            out.append(
                self._alert(
                    ev,
                    "operation",
                    ok,
                    sev,
                    f"新操作 {c} -> {s} {kind} {op}（{ev.action}）",
                    f"new operation {c} -> {s} {kind} {op} ({ev.action})",
                    "新的协议操作",
                    "New protocol operation",
                    ("T0855",),
                    {"table": "ops", "key": ok},
                )
            )
        if not out:
            if len(self._clean) >= INFO_MEMO_MAX:
                self._clean.clear()
            self._clean[info] = True
        if ev.action in WRITE_ACTIONS:
            return self._check_writes(ev, info, out)
        return out

    def _check_writes(self, ev: Event, info: EventInfo, out: list[Event]) -> list[Event]:
        """Write to a point outside the learned refs and ranges (the first such point alerts)."""
        prefix = info.write_prefix
        f = ev.fields
        if not isinstance(f.get("points"), list):
            # address/values records: refs "<func>:<address>" (points_of) whose family is "<func>:"; when
            # every address lies in the learned range of that family, none can alert
            a0, vals = f.get("address"), f.get("values")
            if isinstance(a0, int) and a0 >= 0 and isinstance(vals, list):
                func = f.get("func") or ev.kind
                wk = self._wkeys.get((prefix, func)) if func.__class__ is str else None
                if wk is None:
                    wk = f"{prefix}{func}:"
                    if func.__class__ is str:
                        if len(self._wkeys) >= INFO_MEMO_MAX:
                            self._wkeys.clear()
                        self._wkeys[(prefix, func)] = wk
                r = self.writes.get(wk)
                if r is not None and r[0] <= a0 and a0 + len(vals) - 1 <= r[1]:
                    return out
        refs = self.write_refs
        for ref, _ in points_of(ev):
            if prefix + ref in refs:
                continue
            fam, num = split_ref(ref)
            wk = prefix + fam
            r = self.writes.get(wk)
            if r is not None and num is not None and r[0] <= num <= r[1]:
                continue
            c, s, kind, _ = wk.split("|")
            rng = f"{fam}{r[0]}..{fam}{r[1]}" if r else "无/none"
            out.append(
                self._alert(
                    ev,
                    "write",
                    f"{wk}|{ref}",
                    "high",
                    f"写入基线外的点 {c} -> {s} {kind} {ref}（学习范围 {rng}）",
                    f"write to point outside baseline {c} -> {s} {kind} {ref} (learned range {rng})",
                    "写入新的寄存器/点",
                    "Write to a point outside the baseline",
                    ("T0836", "T0855"),
                    {
                        "table": "write_refs",
                        "key": prefix + ref,
                        "range_key": wk,
                        "num": num,
                    },
                )
            )
            break
        return out

    # ------------------------------------------------------------------ accept
    def accept(self, entry: dict[str, Any], alert_id: str = "", ts: float | None = None) -> bool:
        """Add a deviation (an alert's `baseline_entry`) to the baseline; False if it was there already."""
        table = entry.get("table")
        changed = False
        if table == "bindings":
            ip, mac = entry["ip"], entry["mac"]
            macs = self.bindings.setdefault(ip, [])
            if mac not in macs:
                macs.append(mac)
                changed = True
            changed |= ip not in self.ips or mac not in self.macs
            self.ips.add(ip)
            self.macs.add(mac)
        elif table == "macs":
            changed = entry["mac"] not in self.macs
            self.macs.add(entry["mac"])
        elif table in ("talkers", "ops"):
            d = self.talkers if table == "talkers" else self.ops
            changed = entry["key"] not in d
            d.setdefault(entry["key"], 0)
        elif table == "write_refs":
            changed = entry["key"] not in self.write_refs
            self.write_refs.add(entry["key"])
            if entry.get("num") is not None:
                r = self.writes.get(entry["range_key"])
                n = entry["num"]
                self.writes[entry["range_key"]] = [n, n] if r is None else [min(r[0], n), max(r[1], n)]
        else:
            raise ValueError(f"not a baseline entry: {entry!r}")
        if changed:
            self.accepted.append({"alert": alert_id, "entry": entry, "ts": ts})
        return changed
