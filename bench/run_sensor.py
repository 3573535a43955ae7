"""Child process of the benchmark: run the sensor over one capture; print JSON.

Modes: `parse` (the sensor alone: decode, reassembly, protocol parsers, no observers, no store),
`store` (as `icsight sensor read` runs it without learned state: asset inventory, rules, store),
`nodetect` (inventory + store, no detection), `detect` (everything, learned layers in protect mode:
the data directory must hold learned state, see bench/__main__.py).
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


def main() -> None:
    cap, data_dir, mode = sys.argv[1], Path(sys.argv[2]), sys.argv[3]
    settings = Settings(data_dir=data_dir)
    data_dir.mkdir(parents=True, exist_ok=True)
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
    read_captures(s, [cap], sinks, batch=settings.batch_size)
    if store is not None:
        store.close()
    dt = time.perf_counter() - t0
    print(json.dumps({"seconds": dt, "frames": s.stats["frames"], "events": counts["events"],
                      "alerts": s.stats.get("events.alert", 0),
                      "max_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))


if __name__ == "__main__":
    main()
