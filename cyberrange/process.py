"""The physical processes behind the PLCs, simulated over time so polled values move plausibly.

Each model holds named tags (floats; booleans as 0/1), advances in steps of at most one second from
a seeded `random.Random` (same seed and same calls -> same values) and takes writes to its setpoint
tags, so an attacker's write changes what the plant does next (the tank overflows, the line stops,
the feeder opens). `halt()` models a stopped controller: outputs freeze to safe values.
"""

from __future__ import annotations

import math
import random


def _noise(r: random.Random, sigma: float) -> float:
    """Zero-mean noise with standard deviation sigma: a sum of two uniforms (triangular), about three
    times cheaper than gauss() and as plausible for sensor jitter."""
    return (r.random() + r.random() - 1.0) * sigma * 2.449


class ProcessModel:
    """Base: tags, time, writes, halt."""

    STEP = 1.0

    def __init__(self, params: dict[str, float], rng: random.Random) -> None:
        self.p = params
        self.rng = rng
        self.t = 0.0
        self.tags: dict[str, float] = {}
        self.halted = False
        self.init()

    def init(self) -> None:
        raise NotImplementedError

    def step(self, dt: float) -> None:
        raise NotImplementedError

    def advance(self, t: float) -> None:
        """Integrate up to plant time t (seconds since the scenario start)."""
        while self.t < t:
            dt = min(self.STEP, t - self.t)
            self.step(dt)
            self.t += dt

    def get(self, tag: str) -> float:
        return self.tags.get(tag, 0.0)

    def write(self, tag: str, value: float) -> None:
        """A write from the network (operator, attacker) to a tag."""
        self.tags[tag] = float(value)

    def halt(self, on: bool = True) -> None:
        self.halted = on


class WaterTank(ProcessModel):
    """Raw-water tank: inlet valve -> tank -> two transfer pumps, hysteresis control on level setpoints.

    Tags: level_cm, inflow_m3h, outflow_m3h, inlet_valve_pct, pump1_run, pump2_run, hi_sp_cm, lo_sp_cm,
    alarm_high, chlorine_mgl, turbidity_ntu, pressure_kpa.
    """

    def init(self) -> None:
        g = self.p.get
        self.area = g("area_m2", 20.0)
        self.qmax = g("inflow_max_m3h", 160.0)
        self.pump_rate = g("pump_m3h", 120.0)
        self.tags.update(
            level_cm=g("level0_cm", 250.0),
            inflow_m3h=0.0,
            outflow_m3h=0.0,
            inlet_valve_pct=g("valve_pct", 60.0),
            pump1_run=0.0,
            pump2_run=0.0,
            hi_sp_cm=g("hi_sp_cm", 380.0),
            lo_sp_cm=g("lo_sp_cm", 150.0),
            alarm_high=0.0,
            chlorine_mgl=0.8,
            turbidity_ntu=1.2,
            pressure_kpa=0.0,
        )

    def step(self, dt: float) -> None:
        tg, r = self.tags, self.rng
        demand = 1.0 + 0.15 * math.sin(2 * math.pi * self.t / 3600.0)
        tg["inflow_m3h"] = max(0.0, tg["inlet_valve_pct"] / 100.0 * self.qmax * demand + _noise(r, 1.5))
        lvl = tg["level_cm"]
        if not self.halted:
            if lvl >= tg["hi_sp_cm"]:
                tg["pump1_run"] = 1.0
            elif lvl <= tg["lo_sp_cm"]:
                tg["pump1_run"] = 0.0
            tg["pump2_run"] = (
                1.0 if lvl >= tg["hi_sp_cm"] + 40 else (0.0 if lvl <= tg["hi_sp_cm"] else tg["pump2_run"])
            )
        out = self.pump_rate * (tg["pump1_run"] + tg["pump2_run"])
        tg["outflow_m3h"] = max(0.0, out + (_noise(r, 1.0) if out else 0.0))
        lvl += (tg["inflow_m3h"] - tg["outflow_m3h"]) / 3600.0 * dt / self.area * 100.0
        tg["level_cm"] = min(max(lvl, 0.0), 500.0)
        tg["alarm_high"] = 1.0 if tg["level_cm"] >= 460 else 0.0
        tg["pressure_kpa"] = 310.0 + _noise(r, 2.0) if out else 0.0
        # residual chlorine and turbidity sit around their set levels (the dosing loop / the raw water),
        # mean-reverting (time constant ~1 min): another day of the same plant stays in the same band
        k = min(1.0, dt / 60.0)
        tg["chlorine_mgl"] += (self.p.get("chlorine_sp_mgl", 0.8) - tg["chlorine_mgl"]) * k + _noise(r, 0.005)
        tg["chlorine_mgl"] = min(2.0, max(0.2, tg["chlorine_mgl"]))
        tg["turbidity_ntu"] += (self.p.get("turbidity_ntu", 1.2) - tg["turbidity_ntu"]) * k + _noise(r, 0.01)
        tg["turbidity_ntu"] = min(5.0, max(0.1, tg["turbidity_ntu"]))


class BodyShop(ProcessModel):
    """Body-in-white line: N robot cells on a conveyor, part counters, short faults.

    Tags: line_running, conveyor_mpm, takt_sp_s, robot_speed_pct, parts_total, and per cell i (1..N):
    cell{i}_state (0 idle, 1 welding, 2 blocked, 3 fault), cell{i}_parts, cell{i}_temp_c.
    """

    def init(self) -> None:
        self.cells = int(self.p.get("cells", 4))
        self.tags.update(
            line_running=1.0,
            conveyor_mpm=self.p.get("conveyor_mpm", 12.0),
            takt_sp_s=self.p.get("takt_s", 58.0),
            robot_speed_pct=100.0,
            parts_total=0.0,
        )
        for i in range(1, self.cells + 1):
            self.tags.update({f"cell{i}_state": 1.0, f"cell{i}_parts": 0.0, f"cell{i}_temp_c": 35.0})
        self.phase = 0.0
        self.fault_left = [0.0] * (self.cells + 1)

    def step(self, dt: float) -> None:
        tg, r = self.tags, self.rng
        running = tg["line_running"] >= 0.5 and not self.halted
        nominal = self.p.get("conveyor_mpm", 12.0) * tg["robot_speed_pct"] / 100.0
        tg["conveyor_mpm"] = max(0.0, nominal + _noise(r, 0.05)) if running else 0.0
        if running:
            self.phase += dt
        takt = max(10.0, tg["takt_sp_s"])
        done = running and self.phase >= takt
        if done:
            self.phase -= takt
            tg["parts_total"] += 1
        for i in range(1, self.cells + 1):
            st = f"cell{i}_state"
            if not running:
                tg[st] = 0.0
            elif self.fault_left[i] > 0:
                self.fault_left[i] -= dt
                tg[st] = 3.0 if self.fault_left[i] > 0 else 1.0
            elif r.random() < dt / 5400.0:  # a fault every ~90 min per cell
                self.fault_left[i] = r.uniform(20, 90)
                tg[st] = 3.0
            else:
                tg[st] = 1.0 if self.phase < takt * 0.8 else 2.0
            if done and tg[st] != 3.0:
                tg[f"cell{i}_parts"] += 1
            target = 55.0 if running and tg[st] == 1.0 else 30.0
            tg[f"cell{i}_temp_c"] += (target - tg[f"cell{i}_temp_c"]) * 0.01 * dt + _noise(r, 0.05)


class Substation(ProcessModel):
    """110 kV substation: bus voltage, feeders with breakers, daily load curve; a 10 kV recloser feeder.

    Tags: bus_kv, freq_hz, and per feeder i (1..N): q{i}_closed, i{i}_a, p{i}_mw, and the DNP3 feeder:
    recloser_closed, feeder_kv, feeder_a, feeder_mw.
    """

    def init(self) -> None:
        self.feeders = int(self.p.get("feeders", 4))
        self.tags.update(
            bus_kv=110.0, freq_hz=50.0, recloser_closed=1.0, feeder_kv=10.5, feeder_a=180.0, feeder_mw=3.0
        )
        for i in range(1, self.feeders + 1):
            self.tags.update({f"q{i}_closed": 1.0, f"i{i}_a": 100.0, f"p{i}_mw": 18.0})
        # feeder base loads belong to the plant, not to the day: a fixed spread over 14-26 MW (golden-ratio
        # steps), so the day's seed only drives the noise and every day is the same plant
        self.base = [0.0, *(14.0 + 12.0 * ((i * 0.618034) % 1.0) for i in range(1, self.feeders + 1))]

    def step(self, dt: float) -> None:
        tg, r = self.tags, self.rng
        day = 0.8 + 0.2 * math.sin(2 * math.pi * (self.t / 86400.0 + 0.1))
        tg["freq_hz"] = 50.0 + _noise(r, 0.01)
        load = 0.0
        for i in range(1, self.feeders + 1):
            closed = tg[f"q{i}_closed"] >= 0.5
            p = self.base[i] * day * (1 + _noise(r, 0.01)) if closed else 0.0
            tg[f"p{i}_mw"] = p
            tg[f"i{i}_a"] = p * 1e6 / (math.sqrt(3) * tg["bus_kv"] * 1e3 * 0.95) if closed else 0.0
            load += p
        tg["bus_kv"] = 115.0 - load * 0.04 + _noise(r, 0.05)
        closed = tg["recloser_closed"] >= 0.5
        tg["feeder_mw"] = 3.0 * day * (1 + _noise(r, 0.02)) if closed else 0.0
        tg["feeder_kv"] = 10.5 + _noise(r, 0.02)
        tg["feeder_a"] = tg["feeder_mw"] * 1e6 / (math.sqrt(3) * tg["feeder_kv"] * 1e3 * 0.95)


MODELS = {"water_tank": WaterTank, "body_shop": BodyShop, "substation": Substation}
