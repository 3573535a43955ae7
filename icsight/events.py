"""The one event type that flows through every stage (sensors -> storage -> detect -> incidents -> web).

Its JSON (sorted keys, compact) is the golden-file format, the JSON-lines output, the store document
and the API payload. Use `Event.to_json()` / `Event.from_json()`; never build the dict by hand.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import orjson

_JSON_OPTS = orjson.OPT_SORT_KEYS | orjson.OPT_NON_STR_KEYS

KINDS_FIXED = ("flow", "asset", "weird", "alert")

# Normalised verbs (architecture.md): what an operation does to the process, whatever the protocol.
ACTIONS = ("read", "write", "program", "control", "diagnose", "discover", "session", "error", "other",
           "alert")


@dataclass(frozen=True, slots=True)
class Endpoint:
    """One side of an event: IP, transport port and MAC as seen on the wire (any may be unknown)."""

    ip: str | None = None
    port: int | None = None
    mac: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"ip": self.ip, "port": self.port, "mac": self.mac}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any] | None) -> Endpoint:
        d = d or {}
        return cls(d.get("ip"), d.get("port"), d.get("mac"))


@dataclass(frozen=True, slots=True)
class Origin:
    """Where an event came from: a capture name (or `iface:NAME`) and every 1-based frame behind it."""

    capture: str
    frames: tuple[int, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {"capture": self.capture, "frames": list(self.frames)}

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Origin:
        return cls(d["capture"], tuple(d.get("frames", ())))


_iso_cache: dict[int, str] = {}


def ts_to_iso(ts: float) -> str:
    """Capture time (epoch seconds) as ISO 8601 UTC with microseconds, e.g. 2013-01-01T00:00:00.123456Z."""
    us = round(ts * 1_000_000)
    sec, frac = divmod(us, 1_000_000)
    head = _iso_cache.get(sec)
    if head is None:
        if len(_iso_cache) > 4096:
            _iso_cache.clear()
        head = _iso_cache[sec] = datetime.fromtimestamp(sec, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    return f"{head}.{frac:06d}Z"


def iso_to_ts(s: str) -> float:
    """Inverse of `ts_to_iso`."""
    return datetime.strptime(s, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()


def id_prefix(sensor: str, capture: str) -> str:
    """The id prefix of every event of one (sensor, capture): 16 hex digits of a hash."""
    return hashlib.blake2b(f"{sensor}\x1f{capture}".encode(), digest_size=8).hexdigest()


def make_event_id(sensor: str, capture: str, index: int) -> str:
    """Deterministic id from sensor + origin + index, so re-ingesting a capture inserts nothing twice."""
    return f"{id_prefix(sensor, capture)}{index:08x}"


@dataclass(frozen=True, slots=True)
class Event:
    """A transaction, flow, asset, weird or alert record.

    `ts` is capture time in epoch seconds (UTC) taken from the packet, never the wall clock; in JSON it
    is ISO 8601. `fields` is the protocol record (JSON-able values only: bytes become hex strings).
    `src` is the side that started the exchange (client/master/requester).
    """

    id: str
    ts: float
    kind: str
    tenant: str
    sensor: str
    src: Endpoint
    dst: Endpoint
    action: str
    fields: Mapping[str, Any] = field(default_factory=dict)
    origin: Origin = field(default_factory=lambda: Origin(""))

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "ts": ts_to_iso(self.ts),
            "kind": self.kind,
            "tenant": self.tenant,
            "sensor": self.sensor,
            "src": self.src.to_dict(),
            "dst": self.dst.to_dict(),
            "action": self.action,
            "fields": self.fields,
            "origin": self.origin.to_dict(),
        }

    def to_json(self) -> str:
        """Compact UTF-8 JSON with sorted keys: stable byte-for-byte for the same event."""
        return orjson.dumps(self.to_dict(), option=_JSON_OPTS).decode()

    def to_json_bytes(self) -> bytes:
        """`to_json` as bytes (what the store and JSON-lines writers need)."""
        return orjson.dumps(self.to_dict(), option=_JSON_OPTS)

    @classmethod
    def fast(cls, id: str, ts: float, kind: str, tenant: str, sensor: str, src: Endpoint, dst: Endpoint,
             action: str, fields: Mapping[str, Any], origin: Origin) -> Event:
        """Positional constructor for the sensor's hot path (the frozen __init__ costs ~5x more)."""
        e = _new(cls)
        _set_id(e, id)
        _set_ts(e, ts)
        _set_kind(e, kind)
        _set_tenant(e, tenant)
        _set_sensor(e, sensor)
        _set_src(e, src)
        _set_dst(e, dst)
        _set_action(e, action)
        _set_fields(e, fields)
        _set_origin(e, origin)
        return e

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> Event:
        return cls(
            id=d["id"],
            ts=iso_to_ts(d["ts"]),
            kind=d["kind"],
            tenant=d["tenant"],
            sensor=d["sensor"],
            src=Endpoint.from_dict(d.get("src")),
            dst=Endpoint.from_dict(d.get("dst")),
            action=d["action"],
            fields=d.get("fields") or {},
            origin=Origin.from_dict(d["origin"]),
        )

    @classmethod
    def from_json(cls, s: str | bytes) -> Event:
        return cls.from_dict(orjson.loads(s))

    @property
    def frames(self) -> Sequence[int]:
        return self.origin.frames


_new = object.__new__
(_set_id, _set_ts, _set_kind, _set_tenant, _set_sensor, _set_src, _set_dst, _set_action, _set_fields,
 _set_origin) = (getattr(Event, n).__set__ for n in ("id", "ts", "kind", "tenant", "sensor", "src", "dst",
                                                      "action", "fields", "origin"))
