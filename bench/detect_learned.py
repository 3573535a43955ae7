"""Cost of the learned detection layers per event: learn on the first half of a capture, protect on the rest.

    .venv/bin/python -m bench.detect_learned bench/_work/modbus_100000.pcap [--learn-all] [--profile]
    .venv/bin/python -m bench.detect_learned bench/_work/modbus_1000000.pcap --sensor [--split]

Prints JSON: events and µs per event of each learned layer in protect mode, checked interleaved per event
as the sensor does (per-layer timer overhead included). `--sensor` instead times the whole sensor without
detection, with the learned layers, and with rules + learned layers (state learned from the first half);
with `--split` the detection observer is also timed on its own (`observer_us`: µs per event inside it;
`outside_us`: the rest of the slowdown per event, which the sensor pays outside the observer: the
parser's own work runs slower beside detection's, plus the timer's ~0.2 µs).
"""

from __future__ import annotations

import cProfile
import json
import pstats
import sys
import time
from pathlib import Path
from typing import Any

from detect.runtime import make_layers
from sensors.run import events_from_capture


def _timed(observer: Any, spent: list[float]) -> Any:
    clock = time.perf_counter

    def timed(ev: Any) -> Any:
        t0 = clock()
        out = observer(ev)
        spent[0] += clock() - t0
        return out

    return timed


def sensor_runs(cap: str, split: bool = False) -> dict:
    """The whole sensor (parse, no store) over `cap`: without detection, with the learned layers, with all.

    The learned state comes from the first half of the capture's events (learned outside the timing).
    """
    import tempfile

    from detect.runtime import LAYERS, build_observers, learn
    from icsight.settings import Settings
    from sensors.pipeline import Sensor
    from sensors.run import read_captures

    tmp = Path(tempfile.mkdtemp(prefix="icsight-bench-"))
    settings = Settings(data_dir=tmp)
    evs = [e for e in events_from_capture(cap) if e.kind not in ("alert", "asset")]
    learn(settings, evs[: len(evs) // 2])
    del evs
    out = {}
    for name, layers in (("none", None), ("learned", [x for x in LAYERS if x != "rules"]), ("all", LAYERS)):
        obs = [] if layers is None else build_observers(settings, layers=layers, mode="protect")
        spent = [0.0]
        if split:
            obs = [_timed(o, spent) for o in obs]
        sensor = Sensor(settings, observers=obs)
        t0 = time.perf_counter()
        n = read_captures(sensor, [cap], [lambda b: None], batch=settings.batch_size)
        dt = time.perf_counter() - t0
        out[name] = {"seconds": round(dt, 2), "frames_per_s": round(sensor.stats["frames"] / dt),
                     "events": n}
        if split and layers is not None:
            out[name]["observer_us"] = round(1e6 * spent[0] / n, 2)
    base = out["none"]["seconds"]
    for name in ("learned", "all"):
        r = out[name]
        r["throughput_lost"] = round(1 - base / r["seconds"], 3)
        if split:
            r["outside_us"] = round(1e6 * (r["seconds"] - base) / r["events"] - r["observer_us"], 2)
    return out


def main() -> None:
    cap = sys.argv[1]
    if "--sensor" in sys.argv:
        print(json.dumps(sensor_runs(cap, "--split" in sys.argv)))
        return
    profile = "--profile" in sys.argv
    evs = [e for e in events_from_capture(cap) if e.kind not in ("alert", "asset")]
    half = len(evs) // 2
    learn_all = "--learn-all" in sys.argv  # every host known: the fast path of known keys
    layers, _ = make_layers(None)
    for ev in evs if learn_all else evs[:half]:
        for layer in layers:
            layer.learn(ev)
    for layer in layers:
        layer.finish_learning()
    model = layers[-1]
    model.set_known_pairs(set(layers[0].talkers))
    test = evs[half:]
    out = {"events": len(test), "learned_on": "all" if learn_all else "first half"}
    spent = [0.0] * len(layers)
    alerts = [0] * len(layers)
    clock = time.perf_counter
    prof = cProfile.Profile() if profile else None
    if prof:
        prof.enable()
    t_all = clock()
    for ev in test:  # interleaved per event, as the sensor's Detection observer runs them
        for i, layer in enumerate(layers):
            t0 = clock()
            alerts[i] += len(layer.check(ev))
            spent[i] += clock() - t0
    for i, layer in enumerate(layers):
        alerts[i] += len(layer.flush())
    t_all = clock() - t_all
    if prof:
        prof.disable()
    for i, layer in enumerate(layers):
        out[layer.name] = {"us_per_event": round(1e6 * spent[i] / len(test), 3), "alerts": alerts[i]}
    out["total_us_per_event"] = round(1e6 * t_all / len(test), 3)
    print(json.dumps(out))
    if prof:
        pstats.Stats(prof).sort_stats("tottime").print_stats(25)


if __name__ == "__main__":
    main()
