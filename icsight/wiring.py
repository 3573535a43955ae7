"""Pipeline wiring: the sensor as every entry point runs it (CLI, demo, benchmark).

Observers, in order: the asset inventory (seeded from the store), then detection. Detection always
runs the rules; the learned layers (baseline, process/timing, models) run in protect mode when the
data directory holds learned state for the tenant (`icsight detect learn` writes it). Reading a
capture never learns by itself: a capture read into an empty data directory may be an attack day.
With 2+ CPUs detection runs in a worker process beside the parsers (`sensors.offload`; setting
`detect_process`), with the same output.
"""

from __future__ import annotations

import multiprocessing as mp
from typing import Any

from icsight.errors import ConfigError
from icsight.settings import Settings
from sensors.offload import can_offload
from sensors.pipeline import Sensor


def build_sensor(settings: Settings, store: Any = None, detection: bool = True,
                 inventory: bool = True) -> Sensor:
    """A Sensor with the inventory and (optionally) detection observers attached.

    :raise ConfigError: a rule or learned-state file is invalid (the message names the file).
    """
    observers: list[Any] = []
    if inventory:
        from sensors.assets import AssetInventory

        observers.append(AssetInventory.from_store(store, settings.tenant) if store is not None
                         else AssetInventory())
    if detection:
        from detect.runtime import LAYERS, build_observers
        from detect.state import has_state_in, state_dir

        learned = has_state_in(state_dir(settings.data_dir, settings.tenant))
        try:
            detectors = build_observers(settings, store, layers=LAYERS if learned else ("rules",),
                                        mode="protect")
        except ValueError as e:           # InvalidRule and friends name the file and line
            raise ConfigError(str(e)) from e
        use = settings.detect_process
        if (can_offload() if use is None else use and "fork" in mp.get_all_start_methods()) \
                and len(detectors) == 1:
            return Sensor(settings, observers=observers, offload=detectors[0])
        observers.extend(detectors)
    return Sensor(settings, observers=observers)
