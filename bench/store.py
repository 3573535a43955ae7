"""Append throughput of the SQLite event store (`python -m bench.store --events 1000000`).

Batches of distinct events (a capture's events replayed with fresh ids and times, or a synthetic
Modbus mix) are appended to a fresh store; prints wall and CPU rates and bytes per event.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from pathlib import Path

from icsight.events import Endpoint, Event, Origin
from storage.sqlite import SQLiteStore


def _bench_events(capture: str | None, n: int) -> Iterator[list[Event]]:
    """Batches of distinct events: a capture's events replayed with fresh ids (or a Modbus-like mix)."""
    import dataclasses

    from icsight.events import make_event_id

    if capture:
        from sensors.run import events_from_capture

        proto = events_from_capture(capture)
        if not proto:
            raise SystemExit(f"{capture}: no events")
    else:
        def mk(i: int) -> Event:
            fc = (3, 4, 16, 6)[i % 4]
            pts = [{"ref": f"hr:{100 + k}", "value": (i * 7 + k) % 65536} for k in range(1 + i % 4)]
            return Event(make_event_id("bench", "synthetic", i), 1.7e9 + i * 0.01, "modbus", "default",
                         "sensor-1", Endpoint("10.0.0.10", 49152 + i % 4, "00:0c:29:aa:bb:cc"),
                         Endpoint(f"10.0.1.{i % 20}", 502, "00:80:f4:01:02:03"),
                         "write" if fc in (6, 16) else "read",
                         {"trans_id": i & 0xFFFF, "unit_id": 1, "func_code": fc,
                          "func": "READ_HOLDING_REGISTERS", "address": 100, "quantity": len(pts),
                          "points": pts, "status": "paired", "latency": 0.000512},
                         Origin("synthetic.pcap", (2 * i + 1, 2 * i + 2)))
        proto = [mk(i) for i in range(1000)]
    span = (proto[-1].ts - proto[0].ts) + 1.0
    made = 0
    rnd = 0
    while made < n:
        batch = []
        for e in proto:
            batch.append(dataclasses.replace(e, id=make_event_id("bench", str(rnd), made),
                                             ts=e.ts + rnd * span))
            made += 1
            if made >= n:
                break
        rnd += 1
        yield batch


def bench(path: Path, n: int = 500_000, batch: int = 5000, capture: str | None = None) -> float:
    """Append `n` distinct events in batches of `batch` to a fresh store at `path`; returns events/s."""
    for suffix in ("", "-wal", "-shm"):
        Path(str(path) + suffix).unlink(missing_ok=True)
    pending: list[Event] = []
    total = cpu = 0.0
    done = 0
    with SQLiteStore(path) as store:
        for chunk in _bench_events(capture, n):
            pending.extend(chunk)
            while len(pending) >= batch or (pending and done + len(pending) >= n):
                b, pending = pending[:batch], pending[batch:]
                t0, c0 = time.perf_counter(), time.process_time()
                new = store.append(b)
                total += time.perf_counter() - t0
                cpu += time.process_time() - c0
                assert new == len(b)
                done += len(b)
    size = path.stat().st_size + (Path(str(path) + "-wal").stat().st_size
                                  if Path(str(path) + "-wal").exists() else 0)
    rate = done / total
    print(f"{done} events in batches of {batch}: {total:.2f} s in append() ({cpu:.2f} s CPU), "
          f"{rate:,.0f} events/s ({done / cpu:,.0f}/s of CPU time), {size / done:.0f} bytes/event on disk")
    return rate


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.store", description="event store append throughput")
    ap.add_argument("--events", type=int, default=500_000)
    ap.add_argument("--batch", type=int, default=5000)
    ap.add_argument("--capture", help="replay this capture's events (default: synthetic Modbus mix)")
    ap.add_argument("--path", default="/tmp/icsight-bench.sqlite")
    args = ap.parse_args(argv)
    bench(Path(args.path), args.events, args.batch, args.capture)


if __name__ == "__main__":
    main()
