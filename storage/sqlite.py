"""The embedded event store: one SQLite file in WAL mode, no set-up (architecture.md "Storage").

Layout (docs/storage.md has the why and the measurements):

- `events`: a rowid table. `seq` (the rowid) is the insertion order; the envelope is split into
  columns (ts as the exact float of `Event.ts`, kind, tenant, sensor, action, src/dst ip/port/mac,
  capture, frames) and `fields` holds the protocol record as JSON, so an `Event` is rebuilt exactly
  (`to_json()` of a queried event equals that of the inserted one).
- one index, `UNIQUE (ts, id)`: it makes `INSERT OR IGNORE` idempotent on the event id (an id is
  deterministic and always carries the same capture time), serves time ranges and the (ts, seq)
  order, and grows at its tail (capture time mostly increases), so a batch dirties few index pages.
  Every further index costs about 1 us of CPU per inserted event (docs/storage.md): kind, address,
  action and field filters scan within the time range instead.
- `assets`: the current record per (tenant, ip), upserted from every newly inserted `asset` event in
  the same transaction, so the inventory is listed without scanning events.

Schema changes are numbered migrations (`MIGRATIONS`), applied on open, each in its own transaction,
tracked in `PRAGMA user_version`. Benchmark: `python -m bench.store` (see docs/storage.md).
"""

from __future__ import annotations

import gc
import ipaddress
import sqlite3
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson

from icsight.events import Endpoint, Event, Origin
from storage import EventQuery
from storage.errors import StoreError

# Numbered migrations: MIGRATIONS[n] takes the schema from version n to n + 1. Append only; never
# edit a released step (a store that already ran it would not run it again).
MIGRATIONS: tuple[tuple[str, ...], ...] = (
    # 1: events
    (
        """CREATE TABLE events (
            seq      INTEGER PRIMARY KEY,   -- insertion order (tie-break of the ts order)
            id       TEXT NOT NULL,         -- Event.id (deterministic: sensor + capture + index)
            ts       REAL NOT NULL,         -- capture time, epoch seconds (the exact float)
            kind     TEXT NOT NULL,         -- flow, <protocol>, asset, weird, alert
            tenant   TEXT NOT NULL,
            sensor   TEXT NOT NULL,
            action   TEXT NOT NULL,
            src_ip   TEXT, src_port INTEGER, src_mac TEXT,
            dst_ip   TEXT, dst_port INTEGER, dst_mac TEXT,
            capture  TEXT NOT NULL,         -- Origin.capture
            frames   TEXT NOT NULL,         -- Origin.frames as "12,13"
            fields   TEXT NOT NULL          -- Event.fields as JSON
        )""",
        # The only index: idempotent INSERT OR IGNORE (an id always carries the same capture time),
        # time ranges, and the (ts, seq) order.
        "CREATE UNIQUE INDEX events_ts_id ON events (ts, id)",
    ),
    # 2: materialised asset inventory, upserted (in append's transaction) from each newly stored
    #    asset event. Not a trigger: its WHEN test on every inserted row cost ~10% of insert throughput.
    (
        """CREATE TABLE assets (
            tenant     TEXT NOT NULL,
            ip         TEXT NOT NULL,
            mac        TEXT,
            vendor     TEXT,
            first_seen TEXT,                -- ISO 8601 UTC, as in the record
            last_seen  TEXT,
            record     TEXT NOT NULL,       -- the asset event's fields without "changes" (JSON)
            event_id   TEXT NOT NULL,       -- the asset event it came from
            PRIMARY KEY (tenant, ip)
        )""",
    ),
)
SCHEMA_VERSION = len(MIGRATIONS)
PAGE_SIZE = 16384

_COLUMNS = ("id", "ts", "kind", "tenant", "sensor", "action", "src_ip", "src_port", "src_mac", "dst_ip",
            "dst_port", "dst_mac", "capture", "frames", "fields")
_INSERT = (f"INSERT OR IGNORE INTO events ({', '.join(_COLUMNS)}) "
           f"VALUES ({', '.join('?' * len(_COLUMNS))})")
_SELECT = f"SELECT {', '.join(_COLUMNS)} FROM events"
_UPSERT_ASSET = """INSERT INTO assets (tenant, ip, mac, vendor, first_seen, last_seen, record, event_id)
    VALUES (?, ?, ?, ?, ?, ?, ?, ?)
    ON CONFLICT (tenant, ip) DO UPDATE SET mac = excluded.mac, vendor = excluded.vendor,
      first_seen = excluded.first_seen, last_seen = excluded.last_seen, record = excluded.record,
      event_id = excluded.event_id"""

_ORJSON_OPTS = orjson.OPT_NON_STR_KEYS     # same bytes as Event.to_json() gives for fields (bar key order)


_FIELD_NAME_OK = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-.")


class SQLiteStore:
    """The SQLite event store (see the module docstring). Use one instance from one thread at a time;
    open another instance (another connection) for concurrent readers: WAL lets them read while a
    writer appends.

    :raise StoreError: the file cannot be opened or created, is not a database, or has a newer schema.
    """

    def __init__(self, path: str | Path, readonly: bool = False, busy_timeout: float = 10.0) -> None:
        self.path = Path(path)
        self.readonly = readonly
        if readonly and not self.path.exists():
            raise StoreError(self.path, "no event store here (run the sensor with this data directory first)")
        mode = "ro" if readonly else "rwc"
        try:
            self.con = sqlite3.connect(f"file:{quote(str(self.path.absolute()))}?mode={mode}", uri=True,
                                       isolation_level=None, timeout=busy_timeout, check_same_thread=False)
        except sqlite3.Error as e:
            raise StoreError(self.path, f"cannot open the event store: {e}") from e
        try:
            self._setup()
        except sqlite3.Error as e:
            self.con.close()
            raise StoreError(self.path, f"cannot use the event store: {e}") from e
        except StoreError:
            self.con.close()
            raise

    # ------------------------------------------------------------------ schema
    def _setup(self) -> None:
        con = self.con
        version = con.execute("PRAGMA user_version").fetchone()[0]   # fails here on a non-database file
        if version > SCHEMA_VERSION:
            raise StoreError(self.path, f"schema version {version} is newer than this icsight supports "
                                        f"({SCHEMA_VERSION}); use a newer icsight")
        if self.readonly:
            if version < SCHEMA_VERSION:
                raise StoreError(self.path, f"schema version {version} is older than {SCHEMA_VERSION}; "
                                            "open it once read-write (run the sensor) to migrate it")
            return
        if version == 0:
            # 16 KiB pages (a new file only): ~30% faster appends of ~1 KiB events than 4 KiB pages
            con.execute(f"PRAGMA page_size={PAGE_SIZE}")
        con.execute("PRAGMA journal_mode=WAL")
        con.execute("PRAGMA synchronous=NORMAL")      # WAL: durable at checkpoints, never corrupt
        con.execute("PRAGMA cache_size=-65536")       # 64 MiB page cache: index tails stay in memory
        self._migrate(version)

    def _migrate(self, version: int) -> None:
        con = self.con
        while version < SCHEMA_VERSION:
            con.execute("BEGIN IMMEDIATE")            # one migrating process at a time
            try:
                current = con.execute("PRAGMA user_version").fetchone()[0]
                if current > SCHEMA_VERSION:
                    raise StoreError(self.path, f"schema version {current} is newer than this icsight "
                                                f"supports ({SCHEMA_VERSION}); use a newer icsight")
                if current < SCHEMA_VERSION:
                    for stmt in MIGRATIONS[current]:
                        con.execute(stmt)
                    con.execute(f"PRAGMA user_version = {current + 1}")
                con.execute("COMMIT")
            except BaseException:
                if con.in_transaction:
                    con.execute("ROLLBACK")
                raise
            version = con.execute("PRAGMA user_version").fetchone()[0]

    @property
    def schema_version(self) -> int:
        return self.con.execute("PRAGMA user_version").fetchone()[0]

    # ------------------------------------------------------------------ write
    @staticmethod
    def _rows(events: Iterable[Event], assets: list[Event]) -> Iterator[tuple]:
        dumps, opts = orjson.dumps, _ORJSON_OPTS
        for e in events:
            if e.kind == "asset":
                assets.append(e)
            s, d, o = e.src, e.dst, e.origin
            yield (e.id, e.ts, e.kind, e.tenant, e.sensor, e.action, s.ip, s.port, s.mac, d.ip, d.port, d.mac,
                   o.capture, ",".join(map(str, o.frames)), dumps(e.fields, option=opts).decode())

    def append(self, events: Iterable[Event]) -> int:
        """Insert events in one transaction; returns how many were new (known ids are skipped).

        :raise StoreError: the store cannot be written (read-only, disk full, locked past the timeout).
        """
        con = self.con
        # Rows are generated while SQLite consumes them (one tuple alive at a time), and the cyclic GC,
        # which would otherwise rescan every live object many times per batch, waits until the end.
        gc_was_enabled = gc.isenabled()
        gc.disable()
        try:
            con.execute("BEGIN IMMEDIATE")
            try:
                before = con.execute("SELECT coalesce(max(seq), 0) FROM events").fetchone()[0]
                assets: list[Event] = []
                cur = con.executemany(_INSERT, self._rows(events, assets))
                if assets:
                    self._upsert_assets(assets, before)
                con.execute("COMMIT")
            except BaseException:
                if con.in_transaction:
                    con.execute("ROLLBACK")
                raise
            return max(cur.rowcount, 0)
        except sqlite3.Error as e:
            raise StoreError(self.path, f"cannot write events: {e}") from e
        finally:
            if gc_was_enabled:
                gc.enable()

    def _upsert_assets(self, assets: list[Event], before: int) -> None:
        """Materialise the asset events this transaction stored (seq past `before`); the latest wins."""
        con = self.con
        for e in assets:
            row = con.execute("SELECT seq FROM events WHERE ts = ? AND id = ?", (e.ts, e.id)).fetchone()
            # The device key: its IP, or `mac:<mac>` for a device seen only at layer 2.
            key = e.fields.get("key") or e.src.ip
            if row is None or row[0] <= before or not key:
                continue                      # already stored before: a re-ingest changes nothing
            f = e.fields
            record = orjson.dumps({k: v for k, v in f.items() if k != "changes"}, option=_ORJSON_OPTS)
            con.execute(_UPSERT_ASSET, (e.tenant, key, f.get("mac"), f.get("vendor"),
                                        f.get("first_seen"), f.get("last_seen"), record.decode(), e.id))

    # ------------------------------------------------------------------ read
    @staticmethod
    def _where(q: EventQuery) -> tuple[str, list[Any]]:
        conds: list[str] = []
        params: list[Any] = []
        if q.since is not None:
            conds.append("ts >= ?")
            params.append(float(q.since))
        if q.until is not None:
            conds.append("ts < ?")
            params.append(float(q.until))
        kinds = (q.kinds,) if isinstance(q.kinds, str) else tuple(q.kinds)
        if kinds:
            conds.append(f"kind IN ({', '.join('?' * len(kinds))})")
            params.extend(kinds)
        if q.protocol is not None:
            conds.append("kind = ?")
            params.append(q.protocol)
        if q.ip is not None and q.port is not None:
            conds.append("((src_ip = ? AND src_port = ?) OR (dst_ip = ? AND dst_port = ?))")
            params += [q.ip, int(q.port), q.ip, int(q.port)]
        elif q.ip is not None:
            conds.append("(src_ip = ? OR dst_ip = ?)")
            params += [q.ip, q.ip]
        elif q.port is not None:
            conds.append("(src_port = ? OR dst_port = ?)")
            params += [int(q.port), int(q.port)]
        for col in ("tenant", "sensor", "action"):
            val = getattr(q, col)
            if val is not None:
                conds.append(f"{col} = ?")
                params.append(val)
        for name, value in q.fields.items():
            if not name or not set(name) <= _FIELD_NAME_OK:
                raise ValueError(f"invalid field name {name!r} (letters, digits, _ - . only)")
            expr = "json_extract(fields, ?)"
            params.append(f'$."{name}"')
            if value is None:
                conds.append(f"{expr} IS NULL")
            else:
                conds.append(f"{expr} = ?")
                params.append(int(value) if isinstance(value, bool) else value)
        return (" WHERE " + " AND ".join(conds)) if conds else "", params

    @staticmethod
    def _event(row: tuple) -> Event:
        (eid, ts, kind, tenant, sensor, action, sip, sport, smac, dip, dport, dmac, capture, frames,
         fields) = row
        return Event.fast(eid, ts, kind, tenant, sensor, Endpoint(sip, sport, smac),
                          Endpoint(dip, dport, dmac), action, orjson.loads(fields),
                          Origin(capture, tuple(map(int, frames.split(","))) if frames else ()))

    def query(self, q: EventQuery) -> Iterator[Event]:
        """Events matching `q`, ordered by ts then insertion, rebuilt exactly as they were appended.

        :raise StoreError: the store cannot be read. :raise ValueError: an invalid field name.
        """
        where, params = self._where(q)
        sql = _SELECT + where + " ORDER BY ts, seq"
        if q.limit is not None or q.offset:
            sql += " LIMIT ? OFFSET ?"
            params += [-1 if q.limit is None else int(q.limit), int(q.offset)]
        try:
            cur = self.con.execute(sql, params)
            while True:
                rows = cur.fetchmany(1000)
                if not rows:
                    return
                for row in rows:
                    yield self._event(row)
        except sqlite3.Error as e:
            raise StoreError(self.path, f"cannot read events: {e}") from e

    def count(self, q: EventQuery) -> int:
        """Number of events matching `q` (limit and offset ignored). :raise StoreError: unreadable."""
        where, params = self._where(q)
        try:
            return self.con.execute("SELECT count(*) FROM events" + where, params).fetchone()[0]
        except sqlite3.Error as e:
            raise StoreError(self.path, f"cannot count events: {e}") from e

    def assets(self, tenant: str | None = None) -> list[dict[str, Any]]:
        """Current asset records (`tenant` added), by tenant then IP. :raise StoreError: unreadable."""
        sql = "SELECT tenant, ip, record FROM assets"
        params: list[Any] = []
        if tenant is not None:
            sql += " WHERE tenant = ?"
            params.append(tenant)
        try:
            rows = self.con.execute(sql, params).fetchall()
        except sqlite3.Error as e:
            raise StoreError(self.path, f"cannot read assets: {e}") from e
        out = []
        for t, _ip, record in rows:
            rec = orjson.loads(record)
            rec["tenant"] = t
            out.append(rec)
        out.sort(key=lambda r: (r["tenant"], _ip_key(r.get("key") or r["ip"])))
        return out

    # ------------------------------------------------------------------ lifecycle
    def close(self) -> None:
        self.con.close()

    def __enter__(self) -> SQLiteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _ip_key(ip: str) -> tuple[int, int, str]:
    try:
        a = ipaddress.ip_address(ip)
        return (a.version, int(a), "")
    except ValueError:
        return (9, 0, ip)
