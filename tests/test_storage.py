"""The event store on real SQLite files: round trip, idempotence, every filter, migrations, errors, WAL.

Written against the `EventStore` interface where it can be (the `store` fixture): a later
Elasticsearch backend gets the same tests by adding a fixture parameter.
"""

from __future__ import annotations

import dataclasses
import math
import sqlite3
import threading
from pathlib import Path

import pytest

from icsight.events import Endpoint, Event, Origin, make_event_id
from icsight.settings import Settings
from storage import EventQuery, EventStore, StoreError, open_store
from storage.sqlite import MIGRATIONS, SCHEMA_VERSION, SQLiteStore
from tests.conftest import PCAPS, need_shared

T0 = 1_700_000_000.0


def ev(i: int, *, ts: float | None = None, kind: str = "modbus", tenant: str = "default", sensor: str = "s1",
       action: str = "read", src: Endpoint | None = None, dst: Endpoint | None = None,
       fields: dict | None = None, capture: str = "t.pcap", frames: tuple[int, ...] | None = None) -> Event:
    return Event(make_event_id(sensor, capture, i), T0 + i if ts is None else ts, kind, tenant, sensor,
                 src or Endpoint("10.0.0.1", 40000 + i, "00:0c:29:00:00:01"),
                 dst or Endpoint("10.0.0.2", 502, "00:80:f4:00:00:02"), action,
                 {"func": "READ_HOLDING_REGISTERS", "func_code": 3} if fields is None else fields,
                 Origin(capture, (i + 1,) if frames is None else frames))


@pytest.fixture
def store(data_dir: Path):
    st = open_store(Settings(data_dir=data_dir))
    yield st
    st.close()


def _ids(events) -> list[str]:
    return [e.id for e in events]


# ---------------------------------------------------------------------------- round trip
def _capture_events() -> list[Event]:
    from sensors.run import events_from_capture

    out: list[Event] = []
    for folder in ("modbus", "dnp3", "s7comm", "enip", "bacnet", "iec104", "opcua", "mqtt"):
        d = need_shared(PCAPS / folder)
        caps = sorted((p for p in d.iterdir() if p.suffix in (".pcap", ".pcapng", ".cap")),
                      key=lambda p: p.stat().st_size)
        out += events_from_capture(caps[len(caps) // 2])
    return out


def test_round_trip_of_real_events_is_exact(store: EventStore):
    events = _capture_events()
    assert len({e.kind for e in events}) >= 6              # many protocols' records, flows, weird
    assert store.append(events) == len(events)
    got = list(store.query(EventQuery()))
    expect = sorted(events, key=lambda e: e.ts)             # stable: equal ts keep insertion order
    assert [e.to_json() for e in got] == [e.to_json() for e in expect]
    assert got == expect                                    # the dataclasses too, not only their JSON


def test_round_trip_of_awkward_values(store: EventStore):
    odd = [
        ev(0, fields={"name": "泵站 #1 \"quoted\" \\ \n", "nested": {"a": [1, 2.5, None, True]},
                      "big": 2**62, "neg": -1, "float": 0.1 + 0.2, "empty": {}, "list": []}),
        ev(1, fields={}, frames=(), src=Endpoint(), dst=Endpoint("fe80::1", None, None)),
        ev(2, fields={"points": [{"ref": "hr:1", "value": math.nan}, {"ref": "hr:2", "value": -math.inf}]}),
        ev(3, ts=T0 + 0.1234565, fields={"frames_many": True}, frames=tuple(range(1, 1001))),
        ev(4, ts=0.000001),
    ]
    store.append(odd)
    got = {e.id: e for e in store.query(EventQuery())}
    for e in odd:
        assert got[e.id].to_json() == e.to_json()
        assert got[e.id].ts == e.ts                          # the exact float, not the ISO microseconds


# ---------------------------------------------------------------------------- idempotence
def test_append_is_idempotent_on_event_id(store: EventStore):
    batch = [ev(i) for i in range(50)]
    assert store.append(batch) == 50
    assert store.append(batch) == 0
    assert store.append([ev(i) for i in range(40, 60)]) == 10     # only the 10 unseen ids
    assert store.count(EventQuery()) == 60
    assert store.append([]) == 0


def test_reingesting_a_capture_stores_nothing_new(store: EventStore):
    from sensors.run import events_from_capture

    cap = need_shared(PCAPS / "modbus" / "modbus_example.pcap")
    first = events_from_capture(cap)
    assert store.append(first) == len(first)
    assert store.append(events_from_capture(cap)) == 0
    assert store.count(EventQuery()) == len(first)


# ---------------------------------------------------------------------------- filters
@pytest.fixture
def filled(store: EventStore) -> EventStore:
    plc, hmi, eng = "10.0.0.2", "10.0.0.1", "10.0.0.9"
    store.append([
        ev(0, kind="flow", action="session", fields={"proto": "tcp", "service": "modbus"}),
        ev(1, fields={"func": "READ_COILS", "func_code": 1, "unit_id": 1, "more": False}),
        ev(2, action="write", fields={"func": "WRITE_SINGLE_REGISTER", "func_code": 6, "unit_id": 1,
                                      "more": True}),
        ev(3, kind="dnp3", tenant="plant-b", src=Endpoint(eng, 20001), dst=Endpoint(plc, 20000),
           fields={"function": "READ"}),
        ev(4, kind="weird", action="error", src=Endpoint(hmi, 40004), dst=Endpoint(eng, 502),
           fields={"protocol": "modbus", "name": "bad_length"}),
        ev(5, kind="asset", action="discover", src=Endpoint(plc, None), dst=Endpoint(),
           fields={"ip": plc, "changes": ["new"]}),
        ev(6, sensor="s2", fields={"func": "READ_COILS", "func_code": 1, "unit_id": None}),
    ])
    return store


@pytest.mark.parametrize(("q", "expect"), [
    (EventQuery(), [0, 1, 2, 3, 4, 5, 6]),
    (EventQuery(since=T0 + 2), [2, 3, 4, 5, 6]),                  # since is inclusive
    (EventQuery(until=T0 + 2), [0, 1]),                           # until is exclusive
    (EventQuery(since=T0 + 1, until=T0 + 3), [1, 2]),
    (EventQuery(kinds=("flow", "weird")), [0, 4]),
    (EventQuery(kinds=("asset",)), [5]),
    (EventQuery(protocol="modbus"), [1, 2, 6]),                   # transactions only, not flows/weird
    (EventQuery(protocol="dnp3"), [3]),
    (EventQuery(ip="10.0.0.9"), [3, 4]),                          # as src (3) and as dst (4)
    (EventQuery(ip="10.0.0.2", port=502), [0, 1, 2, 6]),          # that side's port
    (EventQuery(ip="10.0.0.2", port=20000), [3]),
    (EventQuery(port=20001), [3]),
    (EventQuery(tenant="plant-b"), [3]),
    (EventQuery(tenant="default", kinds=("dnp3",)), []),
    (EventQuery(sensor="s2"), [6]),
    (EventQuery(action="write"), [2]),
    (EventQuery(fields={"func": "READ_COILS"}), [1, 6]),
    (EventQuery(fields={"func_code": 6}), [2]),
    (EventQuery(fields={"more": True}), [2]),
    (EventQuery(fields={"more": False}), [1]),
    (EventQuery(fields={"func": "READ_COILS", "unit_id": 1}), [1]),
    (EventQuery(fields={"unit_id": None}, protocol="modbus"), [6]),   # null or absent
    (EventQuery(fields={"func": "NOPE"}), []),
    (EventQuery(limit=2), [0, 1]),
    (EventQuery(limit=2, offset=3), [3, 4]),
    (EventQuery(offset=5), [5, 6]),
])
def test_query_filters(filled: EventStore, q: EventQuery, expect: list[int]):
    got = list(filled.query(q))
    assert [int(e.origin.frames[0]) - 1 for e in got] == expect
    unlimited = dataclasses.replace(q, limit=None, offset=0)
    assert filled.count(q) == len(list(filled.query(unlimited)))


def test_count_ignores_limit_and_offset(filled: EventStore):
    assert filled.count(EventQuery(limit=1, offset=2)) == 7


def test_order_is_ts_then_insertion(store: EventStore):
    same = [ev(i, ts=T0) for i in (5, 3, 9, 1)]
    store.append([ev(0, ts=T0 + 1)])
    store.append(same[:2])
    store.append(same[2:])
    assert _ids(store.query(EventQuery())) == [*_ids(same), ev(0).id]


def test_invalid_field_name_is_refused(store: EventStore):
    with pytest.raises(ValueError, match="invalid field name"):
        list(store.query(EventQuery(fields={'func") OR 1=1 --': "x"})))


# ---------------------------------------------------------------------------- asset table
def test_assets_table_follows_newly_stored_asset_events(store: EventStore):
    def asset(i: int, ip: str, mac: str, tenant: str = "default", changes=("new",)) -> Event:
        rec = {"ip": ip, "mac": mac, "vendor": None, "first_seen": "2023-11-14T22:13:20.000000Z",
               "last_seen": f"2023-11-14T22:13:{20 + i:02d}.000000Z", "roles": {}, "protocols": [],
               "identity": {}, "macs": []}
        return ev(i, kind="asset", action="discover", tenant=tenant, src=Endpoint(ip, None, mac),
                  dst=Endpoint(), fields=dict(rec, changes=list(changes)))

    first = asset(1, "10.0.0.2", "00:80:f4:00:00:02")
    store.append([first, asset(2, "10.0.0.10", "00:0c:29:00:00:10"), asset(3, "10.0.0.2", "00:80:f4:00:00:02",
                                                                          tenant="plant-b")])
    store.append([asset(4, "10.0.0.2", "00:80:f4:00:00:99", changes=("mac_changed",))])
    recs = store.assets("default")
    assert [r["ip"] for r in recs] == ["10.0.0.2", "10.0.0.10"]            # numeric IP order
    assert recs[0]["mac"] == "00:80:f4:00:00:99" and "changes" not in recs[0]
    assert recs[0]["last_seen"] == "2023-11-14T22:13:24.000000Z"           # the latest event wins
    assert [r["tenant"] for r in store.assets()] == ["default", "default", "plant-b"]
    store.append([first])                       # a duplicate event is ignored, so it changes nothing
    assert store.assets("default")[0]["mac"] == "00:80:f4:00:00:99"


# ---------------------------------------------------------------------------- schema
def test_migrations_from_an_empty_file(tmp_path: Path):
    path = tmp_path / "events.sqlite"
    path.write_bytes(b"")
    with SQLiteStore(path) as st:
        assert st.schema_version == SCHEMA_VERSION == len(MIGRATIONS)
        assert st.con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        tables = {r[0] for r in st.con.execute("SELECT name FROM sqlite_master WHERE type='table'")}
        assert {"events", "assets"} <= tables
        st.append([ev(1)])
    with SQLiteStore(path) as st:                   # reopening migrates nothing and keeps the data
        assert st.count(EventQuery()) == 1


def test_migration_from_version_1_keeps_events(tmp_path: Path):
    path = tmp_path / "events.sqlite"
    con = sqlite3.connect(path)
    for stmt in MIGRATIONS[0]:
        con.execute(stmt)
    con.execute("PRAGMA user_version = 1")
    con.execute("INSERT INTO events (id, ts, kind, tenant, sensor, action, capture, frames, fields) "
                "VALUES ('x', 1.5, 'flow', 'default', 's', 'session', 'c', '1,2', '{}')")
    con.commit()
    con.close()
    with SQLiteStore(path) as st:
        assert st.schema_version == SCHEMA_VERSION
        (e,) = st.query(EventQuery())
        assert (e.id, e.ts, e.origin.frames) == ("x", 1.5, (1, 2))
        assert st.assets() == []


def test_failed_migration_rolls_back(tmp_path: Path):
    path = tmp_path / "events.sqlite"
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE events (x)")          # in the way of migration 1
    con.commit()
    con.close()
    with pytest.raises(StoreError, match="already exists") as ei:
        SQLiteStore(path)
    assert str(path) in str(ei.value)
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA user_version").fetchone()[0] == 0
    con.close()


def test_newer_schema_is_refused(tmp_path: Path):
    path = tmp_path / "events.sqlite"
    with SQLiteStore(path):
        pass
    con = sqlite3.connect(path)
    con.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    con.commit()
    con.close()
    for ro in (False, True):
        with pytest.raises(StoreError, match="newer than this icsight supports") as ei:
            SQLiteStore(path, readonly=ro)
        assert ei.value.path == str(path)


# ---------------------------------------------------------------------------- failures
def test_corrupt_file_is_a_store_error(tmp_path: Path):
    path = tmp_path / "events.sqlite"
    path.write_bytes(b"this is not a database, just some bytes " * 200)
    with pytest.raises(StoreError) as ei:
        SQLiteStore(path)
    assert str(path) in str(ei.value) and "not a database" in str(ei.value)


def test_unwritable_location_is_a_store_error(tmp_path: Path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(StoreError) as ei:
        open_store(Settings(data_dir=blocker / "data"))     # the data dir would be under a file
    assert str(blocker) in str(ei.value)
    with pytest.raises(StoreError):
        SQLiteStore(blocker / "events.sqlite")


def test_readonly_store(tmp_path: Path):
    with pytest.raises(StoreError, match="no event store"):
        open_store(Settings(data_dir=tmp_path / "nothing"), readonly=True)
    assert not (tmp_path / "nothing").exists()               # a query never creates a store
    open_store(Settings(data_dir=tmp_path)).close()
    st = open_store(Settings(data_dir=tmp_path), readonly=True)
    try:
        with pytest.raises(StoreError, match="cannot write"):
            st.append([ev(1)])
    finally:
        st.close()


# ---------------------------------------------------------------------------- concurrency (WAL)
def test_reader_keeps_its_snapshot_while_a_writer_commits(tmp_path: Path):
    path = tmp_path / "events.sqlite"
    writer, reader = SQLiteStore(path), SQLiteStore(path)
    try:
        writer.append([ev(i) for i in range(3000)])
        it = reader.query(EventQuery())
        first = next(it)                                 # the read transaction is now open
        assert writer.append([ev(i) for i in range(3000, 5000)]) == 2000    # not blocked by the reader
        assert 1 + sum(1 for _ in it) == 3000             # the reader saw one consistent snapshot
        assert first.id == ev(0).id
        assert reader.count(EventQuery()) == 5000         # a new read sees the commit
    finally:
        writer.close()
        reader.close()


def test_concurrent_reader_sees_only_whole_batches(tmp_path: Path):
    path = tmp_path / "events.sqlite"
    SQLiteStore(path).close()
    batch, batches = 400, 15
    errors: list[BaseException] = []

    def write() -> None:
        try:
            with SQLiteStore(path) as w:
                for b in range(batches):
                    w.append([ev(b * batch + i) for i in range(batch)])
        except BaseException as e:          # reported by the main thread below
            errors.append(e)

    seen = []
    with SQLiteStore(path) as r:
        t = threading.Thread(target=write)
        t.start()
        while t.is_alive():
            seen.append(r.count(EventQuery()))
        t.join()
        seen.append(r.count(EventQuery()))
    assert not errors, errors
    assert seen[-1] == batch * batches
    assert all(n % batch == 0 for n in seen)             # a batch is one transaction
    assert seen == sorted(seen)
