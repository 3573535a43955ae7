"""Detection in a worker process (sensors/offload.py) gives the sensor's output byte for byte as inline.

The traffic is the cyber range's water plant: a learned baseline day, then the attack day read with
small batches, so that many batches are in flight and alerts are merged back across batch boundaries.
"""

from __future__ import annotations

import dataclasses
import functools
import tempfile
from pathlib import Path

import pytest

from cyberrange.generator import Range
from cyberrange.scenario import load_scenario
from detect.runtime import learn
from icsight.events import Event
from icsight.settings import Settings
from icsight.wiring import build_sensor
from sensors.offload import can_offload
from sensors.pipeline import Sensor
from sensors.run import events_from_capture, read_captures

pytestmark = pytest.mark.skipif(not can_offload(), reason="needs 2+ CPUs, fork and no running thread")


@functools.cache
def _site() -> tuple[Path, Path]:
    """A data directory with 30 min of learned water-plant baseline, and an attack-day capture."""
    d = Path(tempfile.mkdtemp(prefix="icsight-offload-"))
    base = load_scenario("water_baseline", duration=1800.0)
    Range(base, base.seed + 1000).run(d / "baseline.pcap")
    learn(Settings(data_dir=d / "data"), events_from_capture(d / "baseline.pcap"))
    attack = load_scenario("water_attack")
    Range(attack, attack.seed).run(d / "attack.pcap")
    return d / "data", d / "attack.pcap"


def _read(data: Path, cap: Path, offload: bool, batch: int = 200) -> tuple[list[str], dict, Sensor]:
    settings = dataclasses.replace(Settings(data_dir=data), detect_process=offload, batch_size=batch)
    sensor = build_sensor(settings)
    out: list[Event] = []
    try:
        read_captures(sensor, [cap, cap], [out.extend], batch=batch)   # two captures: two ends
    finally:
        sensor.close()
    return [e.to_json() for e in out], dict(sensor.stats), sensor


def test_worker_output_is_the_inline_output():
    data, cap = _site()
    inline, inline_stats, s1 = _read(data, cap, offload=False)
    piped, piped_stats, s2 = _read(data, cap, offload=True)
    assert s1.offload is None and s2.offload is not None
    layers = {e.split('"layer":"', 1)[1].split('"', 1)[0] for e in inline if '"kind":"alert"' in e}
    assert {"rule", "baseline", "process"} <= layers      # alerts of several layers, merged back
    assert piped_stats["events.alert"] == inline_stats["events.alert"] > 20
    assert piped == inline                                 # same events, same order, same ids


def test_worker_failure_is_raised_in_the_sensor():
    _, cap = _site()

    def broken(ev: Event) -> None:
        if ev.kind == "modbus":
            raise ValueError("observer bug on purpose")

    sensor = Sensor(Settings(data_dir=Path(".")), offload=broken)
    try:
        with pytest.raises(RuntimeError, match="ValueError: observer bug on purpose"):
            read_captures(sensor, [cap], [lambda evs: None], batch=100)
    finally:
        sensor.close()
    assert not sensor.offload.proc.is_alive()
