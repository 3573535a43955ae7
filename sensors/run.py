"""Drive a Sensor over captures or a live interface, batching events to sinks (store, JSON lines)."""

from __future__ import annotations

import gc
import logging
import sys
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import IO

from icsight.errors import CaptureError
from icsight.events import Event
from sensors.capture import LiveCapture, capture_size, iter_frames
from sensors.pipeline import SUPPORTED_LINKTYPES, Sensor

log = logging.getLogger(__name__)

Sink = Callable[[list[Event]], None]


def jsonl_sink(out: IO[str]) -> Sink:
    """Write events as JSON lines (the golden-file format)."""

    def write(events: list[Event]) -> None:
        out.write("".join([e.to_json() + "\n" for e in events]))

    return write


def _flush(sensor: Sensor, sinks: Sequence[Sink]) -> int:
    events = sensor.drain()
    if events:
        for s in sinks:
            s(events)
    # The automatic cyclic GC is off while a capture is read (it rescans the batch of live events
    # hundreds of times per batch: ~12% of the run). Collect here instead: the young generations at
    # every batch, everything every 8th batch (cycles in long-lived analyzers reach the oldest
    # generation, and memory must stay flat however long the capture).
    sensor.batches += 1
    gc.collect(2 if sensor.batches % 8 == 0 else 1)
    return len(events)


def read_captures(sensor: Sensor, paths: Iterable[str | Path], sinks: Sequence[Sink],
                  progress: bool = False, batch: int = 5000) -> int:
    """Run the sensor over each capture in turn; returns the number of events written.

    :raise CaptureError: a file is unreadable or breaks off; every event before the break (including
        the flows and unmatched requests flushed at that point) has been written to the sinks.
    """
    total = 0
    gc_was_enabled = gc.isenabled()
    gc.disable()
    # Everything alive now (rules, learned baselines and models, parser tables) lives as long as the
    # run: freeze it out of the collector, or every full collection rescans it (~4 us per event with
    # detection on). Unfrozen at the end, so a long-lived caller's garbage is collected as before.
    gc.collect()
    gc.freeze()
    try:
        for p in paths:
            total += _read_one(sensor, Path(p), sinks, progress, batch)
    finally:
        gc.unfreeze()
        if gc_was_enabled:
            gc.enable()
    return total


def _read_one(sensor: Sensor, path: Path, sinks: Sequence[Sink], progress: bool, batch: int) -> int:
    """One capture through the sensor; flows and pending requests are flushed at its end."""
    total = 0
    sensor.begin(path.name)
    bar = None
    if progress and sys.stderr.isatty():
        from tqdm import tqdm

        bar = tqdm(total=capture_size(path), unit="B", unit_scale=True, desc=path.name, file=sys.stderr,
                   leave=False)
    try:
        warned: set[int] = set()
        packet, out = sensor.packet, sensor.out
        nbytes = 0
        for number, ts, data, linktype in iter_frames(path):
            if linktype not in SUPPORTED_LINKTYPES and linktype not in warned:
                warned.add(linktype)
                log.warning("%s: link type %d is not supported; its frames are counted only", path, linktype)
            packet(number, ts, data, linktype)
            if len(out) >= batch:
                total += _flush(sensor, sinks)
                out = sensor.out
            if bar is not None:
                nbytes += len(data) + 16
                if not number & 4095:
                    bar.n = min(bar.total, nbytes)
                    bar.refresh()
    except CaptureError:
        sensor.end()
        total += _flush(sensor, sinks)
        raise
    finally:
        if bar is not None:
            bar.close()
    sensor.end()
    return total + _flush(sensor, sinks)


def run_live(sensor: Sensor, iface: str, sinks: Sequence[Sink], bpf: str | None = None, count: int = 0,
             capture: LiveCapture | None = None) -> int:
    """Watch an interface until interrupted (or `count` frames), flushing events every second."""
    import time

    cap = capture or LiveCapture(iface, bpf, count)
    sensor.begin(f"iface:{iface}@{int(time.time())}")
    total = 0
    last = time.monotonic()

    def handle(fr) -> None:
        nonlocal total, last
        sensor.packet(fr.number, fr.ts, fr.data, fr.linktype)
        now = time.monotonic()
        if len(sensor.out) >= 1000 or now - last >= 1.0:
            total += _flush(sensor, sinks)
            last = now

    try:
        cap.run(handle)
    finally:
        sensor.end()
        total += _flush(sensor, sinks)
    return total


def events_from_capture(path: str | Path, settings=None, observers: Sequence = ()) -> list[Event]:
    """All events of one capture, in emission order (tests, golden files, small tools).

    :raise CaptureError: as `read_captures`.
    """
    from icsight.settings import Settings

    sensor = Sensor(settings or Settings(data_dir=Path(".")), observers=observers)
    out: list[Event] = []
    read_captures(sensor, [path], [out.extend])
    return out
