"""Asset inventory: the devices behind the traffic, learned passively from the sensor's own events.

`AssetInventory` is a sensor observer (see `Sensor.observers`): it is called with every event the
sensor emits and, at the end of each capture, `finish()`. Per device (tenant + unicast IP) it keeps
first/last seen, the MAC(s) the IP was seen with and their vendors (OUI, from the manuf database
bundled with scapy/Wireshark, offline), the roles it plays per protocol (a transaction's src is the
module's `ROLES[0]`, its dst `ROLES[1]`, swapped when the src evidently answered: see
`src_is_responder`; flows give "client"/"server" per transport service such as
"tcp/502"), the protocols it speaks, and its identity (`fields["identity"]` of events, attributed to
`fields["identity_of"]`, default "dst"), each identity value with the event and frames that revealed it.

It emits an `asset` event (action "discover", src = the device, fields = the asset record plus
`"changes"`) when a device is first seen and whenever something new is learned about it (a role,
protocol, identity value or MAC); never one per packet. Updates of last_seen (and of a MAC flipping
back to one already known) are folded into one snapshot per changed device at `finish()`.

    inv = AssetInventory.from_store(store, settings.tenant)   # known devices are not announced again
    sensor = Sensor(settings, observers=[inv])

Asset event ids are derived from the event that caused them (and, for the end-of-capture snapshot,
from the device's last event), not from the sensor's event counter: the sensor's own ids stay the
same whether or not the inventory was seeded, so re-ingesting a capture stays idempotent.
"""

from __future__ import annotations

import hashlib
import ipaddress
from collections.abc import Iterable, Mapping
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from icsight.events import Endpoint, Event, Origin, iso_to_ts, ts_to_iso

if TYPE_CHECKING:
    from storage import EventStore

KIND = "asset"
ACTION = "discover"
NOT_TRAFFIC = frozenset({"asset", "alert"})          # events that describe no new sighting
NOT_TRANSACTION = frozenset({"flow", "weird", "asset", "alert"})
DEFAULT_ROLES = ("client", "server")
# Flows where the responder never answered (or refused) show no service: no role from them
# (Zeek conn_state values; mod_scan-style reconnaissance stays out of the roles).
UNANSWERED = frozenset({"S0", "REJ", "RSTOS0", "SH", "RSTRH"})

NULL_MAC = "00:00:00:00:00:00"   # loopback captures: no hardware address, not a binding

MAX_SERVICE_ROLES = 64      # transport services ("tcp/502") kept per device
MAX_IDENTITY_VALUES = 8     # distinct values kept per identity key (gateways front several devices)
MAX_MACS = 16               # MACs kept per IP
MAX_SEEN = 100_000          # remembered exchanges of the fast path (cleared when full)


@lru_cache(maxsize=65536)
def mac_vendor(mac: str) -> str | None:
    """Vendor of a MAC's OUI from scapy's manuf database (Wireshark's file or scapy's bundled copy;
    both offline), or None: unknown OUI, or a locally administered / group address (no OUI).
    """
    if not mac or len(mac) < 8:
        return None
    try:
        first = int(mac[:2], 16)
    except ValueError:
        return None
    if first & 0x03:                  # bit 0: group (multicast/broadcast); bit 1: locally administered
        return None
    from scapy.config import conf

    short, long = conf.manufdb.lookup(mac.lower())
    name = long or short
    return None if not name or name.lower() == mac.lower() else name


@lru_cache(maxsize=65536)
def is_unicast_ip(ip: str) -> bool:
    """True for an address a single device can own: not multicast, broadcast or unspecified."""
    try:
        a = ipaddress.ip_address(ip)
    except ValueError:
        return False
    if a.is_multicast or a.is_unspecified:
        return False
    return not (a.version == 4 and int(a) == 0xFFFFFFFF)


def _group_mac(mac: str | None) -> bool:
    """A multicast/broadcast destination MAC: the IP beside it is a broadcast, not a device."""
    return bool(mac) and mac[1:2] in "13579bdfBDF"


def asset_event_id(sensor: str, capture: str, *parts: str) -> str:
    """Deterministic id of an asset event (distinct from `make_event_id` ids by its prefix)."""
    key = "\x1f".join(("asset", sensor, capture, *parts))
    return hashlib.blake2b(key.encode(), digest_size=12).hexdigest()


def _roles_table() -> dict[str, tuple[str, str]]:
    """Event kind -> (requester role, responder role) from the protocol modules' ROLES."""
    from sensors import PROTOCOLS

    out: dict[str, tuple[str, str]] = {}
    for name, mod in PROTOCOLS.items():
        roles = tuple(getattr(mod, "ROLES", DEFAULT_ROLES))
        for kind in (name, getattr(mod, "PROTOCOL", name), *getattr(mod, "KINDS", ())):
            out.setdefault(kind, roles)       # type: ignore[arg-type]
    return out


def _service_ports() -> dict[str, frozenset[int]]:
    """Event kind -> the protocol's well-known server ports (module TCP_PORTS + UDP_PORTS)."""
    from sensors import PROTOCOLS

    out: dict[str, frozenset[int]] = {}
    for name, mod in PROTOCOLS.items():
        ports = frozenset((*getattr(mod, "TCP_PORTS", ()), *getattr(mod, "UDP_PORTS", ())))
        for kind in (name, getattr(mod, "PROTOCOL", name), *getattr(mod, "KINDS", ())):
            out.setdefault(kind, ports)
    return out


def src_is_responder(ev: Event, server_ports: frozenset[int]) -> bool:
    """Whether a transaction event's src answered rather than asked: a response seen without its
    request (status "no_request"), or a message sent from the protocol's server port to another port
    (a DNP3 unsolicited response from port 20000, an MQTT broker's publish from 1883)."""
    if ev.fields.get("status") == "no_request":
        return True
    sp, dp = ev.src.port, ev.dst.port
    return sp is not None and sp in server_ports and dp not in server_ports


class _Device:
    """What is known about one device; `emitted` is the record as last announced (or seeded)."""

    __slots__ = ("emitted", "first", "identity", "ip", "last", "last_event", "mac", "macs", "protocols",
                 "roles", "tenant")

    def __init__(self, tenant: str, ip: str | None, ts: float) -> None:
        self.tenant, self.ip = tenant, ip          # ip None: a device seen only at layer 2 (GOOSE, DCP)
        self.first = self.last = ts
        self.mac: str | None = None
        self.macs: dict[str, list[float]] = {}           # mac -> [first_seen, last_seen]
        self.roles: dict[str, set[str]] = {}             # protocol or "tcp/502" -> roles
        self.protocols: set[str] = set()
        self.identity: dict[str, list[dict[str, Any]]] = {}
        self.emitted: dict[str, Any] | None = None
        self.last_event: Event | None = None             # the latest event that touched the device

    @property
    def key(self) -> str:
        """The device's key in the inventory and the store: its IP, else `mac:<mac>`."""
        return self.ip if self.ip else f"mac:{self.mac}"

    def record(self) -> dict[str, Any]:
        """The asset record: fresh lists and dicts, safe to put into an (immutable) event."""
        return {
            "key": self.key,
            "ip": self.ip,
            "mac": self.mac,
            "vendor": mac_vendor(self.mac) if self.mac else None,
            "macs": [{"mac": m, "vendor": mac_vendor(m), "first_seen": ts_to_iso(f),
                      "last_seen": ts_to_iso(la)}
                     for m, (f, la) in sorted(self.macs.items(), key=lambda kv: kv[1][0])],
            "first_seen": ts_to_iso(self.first),
            "last_seen": ts_to_iso(self.last),
            "roles": {p: sorted(r) for p, r in sorted(self.roles.items())},
            "protocols": sorted(self.protocols),
            "identity": {k: [dict(v, frames=list(v["frames"])) for v in vals]
                         for k, vals in sorted(self.identity.items())},
        }

    @classmethod
    def from_record(cls, tenant: str, rec: Mapping[str, Any]) -> _Device:
        d = cls(tenant, rec.get("ip"), iso_to_ts(rec["first_seen"]))
        d.last = iso_to_ts(rec["last_seen"])
        d.mac = rec.get("mac")
        d.macs = {m["mac"]: [iso_to_ts(m["first_seen"]), iso_to_ts(m["last_seen"])]
                  for m in rec.get("macs", ())}
        d.roles = {p: set(r) for p, r in (rec.get("roles") or {}).items()}
        d.protocols = set(rec.get("protocols") or ())
        d.identity = {k: [dict(v) for v in vals] for k, vals in (rec.get("identity") or {}).items()}
        d.emitted = d.record()
        return d


class AssetInventory:
    """Sensor observer building the device inventory; see the module docstring."""

    def __init__(self, roles: Mapping[str, tuple[str, str]] | None = None) -> None:
        self.devices: dict[tuple[str, str], _Device] = {}
        self.roles = dict(_roles_table() if roles is None else roles)
        self.server_ports = _service_ports()
        self._seen: dict[tuple, tuple[tuple[_Device, str | None, list[float] | None], ...]] = {}
        self.by_mac: dict[tuple[str, str], _Device] = {}       # (tenant, mac) -> device, for L2 events

    @classmethod
    def from_store(cls, store: EventStore, tenant: str | None = None,
                   roles: Mapping[str, tuple[str, str]] | None = None) -> AssetInventory:
        """An inventory seeded with the devices already in `store` (all tenants when None), so a
        further capture into the same store announces only what is new.

        :raise StoreError: the store cannot be read.
        """
        inv = cls(roles)
        for rec in store.assets(tenant):
            t = rec["tenant"]
            rec = {k: v for k, v in rec.items() if k != "tenant"}
            dev = _Device.from_record(t, rec)
            inv.devices[(t, dev.key)] = dev
            for m in dev.macs:
                inv.by_mac.setdefault((t, m), dev)
        return inv

    def records(self, tenant: str | None = None) -> list[dict[str, Any]]:
        """Current records (with "tenant"), e.g. for a report at the end of a run."""
        return [dict(d.record(), tenant=t) for (t, _), d in sorted(self.devices.items())
                if tenant is None or t == tenant]

    # ------------------------------------------------------------------ observer
    def __call__(self, ev: Event) -> list[Event] | None:
        """Learn from one sensor event; returns the asset events it caused (usually none)."""
        kind = ev.kind
        if kind in NOT_TRAFFIC:
            return None
        fields = ev.fields
        src, dst = ev.src, ev.dst
        sig = None
        if kind != "flow" and "identity" not in fields:
            # Fast path: an exchange already learned from (same kind, endpoints and direction) can
            # teach nothing new, only move last_seen. Most events of a long capture end here.
            sig = (kind, ev.tenant, src.ip, src.port, src.mac, dst.ip, dst.port, dst.mac,
                   fields.get("status") == "no_request")
            hit = self._seen.get(sig)
            if hit is not None:
                ts = ev.ts
                for dev, mac, seen in hit:
                    if ts > dev.last:
                        dev.last = ts
                    elif ts < dev.first:
                        dev.first = ts
                    if seen is not None:
                        if ts > seen[1]:
                            seen[1] = ts
                        dev.mac = mac
                    dev.last_event = ev
                return None
        learned: list[tuple[_Device, list[str]]] = []
        touched: list[tuple[_Device, str | None, list[float] | None]] = []
        for side, ep in (("src", src), ("dst", dst)):
            ip = ep.ip
            if not ip:
                # Layer-2 protocols (GOOSE, PROFINET DCP) name devices by MAC only: the device that
                # owns the MAC (an IP device already bound to it, else a MAC-keyed device).
                mac = ep.mac
                if kind == "flow" or not mac or mac == NULL_MAC or _group_mac(mac):
                    continue
                changes, dev = self._learn(ev, side, ep, self.by_mac.get((ev.tenant, mac)))
            elif not is_unicast_ip(ip) or (side == "dst" and _group_mac(ep.mac)):
                continue
            else:
                changes, dev = self._learn(ev, side, ep)
            touched.append((dev, ep.mac, dev.macs.get(ep.mac) if ep.mac else None))
            if changes:
                if learned and learned[0][0] is dev:      # both sides one device (loopback captures)
                    learned[0][1].extend(c for c in changes if c != "new")
                else:
                    learned.append((dev, changes))
        if sig is not None:
            if len(self._seen) >= MAX_SEEN:
                self._seen.clear()
            self._seen[sig] = tuple(touched)
        return [self._announce(dev, ev, changes) for dev, changes in learned] if learned else None

    def _learn(self, ev: Event, side: str, ep: Endpoint,
               dev: _Device | None = None) -> tuple[list[str], _Device]:
        key = (ev.tenant, ep.ip or f"mac:{ep.mac}")
        if dev is None:
            dev = self.devices.get(key)
        changes: list[str] = []
        ts = ev.ts
        end = ts
        kind = ev.kind
        fields = ev.fields
        if kind == "flow":
            dur = fields.get("duration")
            if isinstance(dur, (int, float)) and dur > 0:
                end = ts + dur
        if dev is None:
            dev = self.devices[key] = _Device(ev.tenant, ep.ip, ts)
            if not ep.ip:
                dev.mac = ep.mac
            changes.append("new")
        if ts < dev.first:
            dev.first = ts
        if end > dev.last:
            dev.last = end
        dev.last_event = ev

        mac = ep.mac
        if mac and mac != NULL_MAC and not _group_mac(mac):
            seen = dev.macs.get(mac)
            if seen is None:
                if len(dev.macs) < MAX_MACS:
                    if dev.macs:
                        changes.append(f"mac_changed:{dev.mac}->{mac}")
                    elif not changes:
                        changes.append(f"mac:{mac}")
                    dev.macs[mac] = [ts, end]
                    self.by_mac.setdefault((ev.tenant, mac), dev)
                dev.mac = mac
            else:
                if ts < seen[0]:
                    seen[0] = ts
                if end > seen[1]:
                    seen[1] = end
                dev.mac = mac

        if kind not in NOT_TRANSACTION:
            roles = self.roles.get(kind, DEFAULT_ROLES)
            asked = side == "src"
            if src_is_responder(ev, self.server_ports.get(kind, frozenset())):
                asked = not asked
            role = roles[0] if asked else roles[1]
            have = dev.roles.get(kind)
            if have is None:
                have = dev.roles[kind] = set()
            if role not in have:
                have.add(role)
                changes.append(f"role:{kind}={role}")
            if kind not in dev.protocols:
                dev.protocols.add(kind)
                changes.append(f"protocol:{kind}")
        elif kind == "flow":
            self._learn_flow(dev, ev, side, changes)

        ident = fields.get("identity")
        if ident and isinstance(ident, Mapping) and fields.get("identity_of", "dst") == side:
            for k, v in ident.items():
                if v is None or v == "":
                    continue
                vals = dev.identity.setdefault(k, [])
                if len(vals) < MAX_IDENTITY_VALUES and all(x["value"] != v for x in vals):
                    vals.append({"value": v, "event": ev.id, "frames": list(ev.frames)})
                    changes.append(f"identity:{k}={v}")
        return changes, dev

    def _learn_flow(self, dev: _Device, ev: Event, side: str, changes: list[str]) -> None:
        f = ev.fields
        if f.get("conn_state") in UNANSWERED or not f.get("resp_pkts"):
            return
        port = ev.dst.port
        if port is None:
            return                          # ICMP: no transport service
        svc = f"{f.get('proto', '?')}/{port}"
        role = "client" if side == "src" else "server"
        have = dev.roles.get(svc)
        if have is None:
            if sum(1 for p in dev.roles if "/" in p) >= MAX_SERVICE_ROLES:
                return
            have = dev.roles[svc] = set()
        if role not in have:
            have.add(role)
            changes.append(f"role:{svc}={role}")
        service = f.get("service")
        if service and service not in dev.protocols:
            dev.protocols.add(service)
            changes.append(f"protocol:{service}")

    def _announce(self, dev: _Device, ev: Event, changes: list[str]) -> Event:
        rec = dev.record()
        dev.emitted = rec
        fields = dict(rec, changes=changes)
        return Event(asset_event_id(ev.sensor, ev.origin.capture, ev.id, dev.key), ev.ts, KIND, dev.tenant,
                     ev.sensor, Endpoint(dev.ip, None, dev.mac), Endpoint(), ACTION, fields,
                     Origin(ev.origin.capture, tuple(ev.origin.frames)))

    # ------------------------------------------------------------------ end of capture
    def finish(self) -> list[Event]:
        """End of a capture: one snapshot per device whose record changed since it was last announced
        (last_seen, a MAC flipping back); `changes` names the keys that differ."""
        out = []
        for (_, _ip), dev in sorted(self.devices.items()):
            ev = dev.last_event
            if ev is None:
                continue                    # seeded from the store and not seen in this capture
            rec = dev.record()
            old = dev.emitted or {}
            changed = [k for k in rec if rec[k] != old.get(k)]
            if not changed:
                continue
            dev.emitted = rec
            out.append(Event(asset_event_id(ev.sensor, ev.origin.capture, "final", ev.id, dev.key), dev.last,
                             KIND, dev.tenant, ev.sensor, Endpoint(dev.ip, None, dev.mac), Endpoint(), ACTION,
                             dict(rec, changes=changed), Origin(ev.origin.capture, tuple(ev.origin.frames))))
        for dev in self.devices.values():
            dev.last_event = None
        return out


def observe(inventory: AssetInventory, events: Iterable[Event]) -> list[Event]:
    """Run the inventory over already-produced events (offline use): the events plus the asset events
    interleaved as a sensor would emit them, then the end-of-capture snapshots."""
    out: list[Event] = []
    for ev in events:
        out.append(ev)
        more = inventory(ev)
        if more:
            out.extend(more)
    out.extend(inventory.finish())
    return out
