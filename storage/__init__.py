"""The event store: every stage writes and reads events through the `EventStore` interface.

`open_store(settings)` gives the embedded SQLite store (`storage.sqlite.SQLiteStore`, WAL, no set-up);
an Elasticsearch backend for scale-out deployments will implement the same Protocol, and one contract
test module (tests/test_storage.py) runs on every backend.

    store = open_store(settings)
    new = store.append(events)                      # idempotent on event id
    for ev in store.query(EventQuery(kinds=("modbus",), ip="10.0.0.5", since=t0)): ...
    store.assets(tenant="default")                  # current device inventory
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from icsight.events import Event
from storage.errors import StoreError

if TYPE_CHECKING:
    from icsight.settings import Settings

__all__ = ["EventQuery", "EventStore", "StoreError", "open_store"]


@dataclass(frozen=True)
class EventQuery:
    """Filters of an event query; every filter given must hold (AND). Results are ordered by capture
    time, then by insertion order.
    """

    since: float | None = None          # epoch seconds, inclusive
    until: float | None = None          # epoch seconds, exclusive
    kinds: tuple[str, ...] = ()         # event kinds: "flow", "modbus", "asset", "weird", ...
    protocol: str | None = None         # transactions of one protocol (= that event kind)
    ip: str | None = None               # matches src.ip or dst.ip
    port: int | None = None             # with `ip`: that side's port; alone: either side's port
    tenant: str | None = None
    sensor: str | None = None
    action: str | None = None           # normalised verb (icsight.events.ACTIONS)
    fields: Mapping[str, Any] = field(default_factory=dict)   # top-level fields key -> equal value
    limit: int | None = None
    offset: int = 0


@runtime_checkable
class EventStore(Protocol):
    """What every event-store backend provides."""

    def append(self, events: Iterable[Event]) -> int:
        """Store events in one transaction; returns how many were new (ids already stored are skipped).

        :raise StoreError: the store cannot be written.
        """
        ...

    def query(self, q: EventQuery) -> Iterator[Event]:
        """Events matching `q`, ordered by ts then insertion. :raise StoreError: the store cannot be read."""
        ...

    def count(self, q: EventQuery) -> int:
        """How many events match `q` (limit and offset ignored)."""
        ...

    def assets(self, tenant: str | None = None) -> list[dict[str, Any]]:
        """The current asset records (the fields of the latest `asset` event per tenant + IP)."""
        ...

    def close(self) -> None: ...


def open_store(settings: Settings, readonly: bool = False) -> EventStore:
    """The store for `settings`: SQLite at `settings.db_path` (the data directory is created).

    `readonly` opens an existing store for queries only (the CLI views) and never creates one.

    :raise StoreError: the data directory or the database cannot be created, opened or migrated.
    """
    from storage.sqlite import SQLiteStore

    path = settings.db_path
    if not readonly:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(path.parent, f"cannot create the data directory: {e.strerror or e}") from e
    return SQLiteStore(path, readonly=readonly)
