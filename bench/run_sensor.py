"""Child process of the benchmark: run the sensor over one capture; print JSON.

Modes: `parse` (the sensor alone: decode, reassembly, protocol parsers, no observers, no store),
`store` (as `icsight sensor read` runs it without learned state: asset inventory, rules, store),
`nodetect` (inventory + store, no detection), `detect` (everything, learned layers in protect mode:
the data directory must hold learned state; detection in its worker process when the machine has 2+
CPUs, as `icsight sensor read` runs it), `detect-inline` (the same with detection in the sensor's
process: its whole cost on one core), `learn` (not timed: learn the rule tuning and every
learned layer from the first half of the capture's events into the data directory, as
`icsight detect learn` would; prints the events learned from).
"""

from __future__ import annotations

import json
import resource
import sys
import time
from pathlib import Path

from icsight.settings import Settings
from icsight.wiring import build_sensor
from sensors.pipeline import Sensor
from sensors.run import read_captures


def learn_half(cap: str, settings: Settings) -> None:
    """Learn (rules' tuning + learned layers) from the first half of the capture's events; save them."""
    from detect.runtime import learn
    from sensors.run import events_from_capture

    evs = [e for e in events_from_capture(cap, settings) if e.kind not in ("alert", "asset")]
    t0 = time.perf_counter()
    learn(settings, evs[: len(evs) // 2])
    print(json.dumps({"learned_events": len(evs) // 2, "seconds": time.perf_counter() - t0}))


def main() -> None:
    cap, data_dir, mode = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    settings = Settings(data_dir=data_dir, detect_process=False if mode == "detect-inline" else None)
    data_dir.mkdir(parents=True, exist_ok=True)
    if mode == "learn":
        learn_half(cap, settings)
        return
    sinks = []
    store = None
    if mode != "parse":
        from storage import open_store

        store = open_store(settings)
        sinks.append(store.append)
    counts = {"events": 0}

    def count(evs):
        counts["events"] += len(evs)

    sinks.append(count)
    if mode == "parse":
        s = Sensor(settings)
    else:
        s = build_sensor(settings, store, detection=mode != "nodetect")
    t0 = time.perf_counter()
    cpu0 = _cpu()
    read_captures(s, [cap], sinks, batch=settings.batch_size)
    if store is not None:
        store.close()
    dt = time.perf_counter() - t0
    s.close()                                   # reaps the detection worker: its CPU time is counted
    print(json.dumps({"seconds": dt, "cpu_seconds": _cpu() - cpu0, "frames": s.stats["frames"],
                      "events": counts["events"], "alerts": s.stats.get("events.alert", 0),
                      "worker": s.offload is not None,
                      "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "worker_max_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024}))


def _cpu() -> float:
    """User + system CPU seconds of this process and its reaped children (the detection worker)."""
    me, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime


if __name__ == "__main__":
    main()
