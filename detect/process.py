"""Layer 3, process values and timing: what each point's values do, how each channel polls, how busy it is.

Learned per point (server + `fields.points[].ref`): min/max (checked with a margin of 10 % of the span,
at least 5 % of the value),
the largest rate of change, monotonic counters, and the value set of small-cardinality points. Learned per
channel (client, server, protocol, operation): the polling period and its jitter (when the channel is
periodic), and the response latency (p99 and max of `fields.latency`). Learned per time window: how many
events, errors and connections the whole site and any single source produce at most (flooding).

Every alert states the learned range / period / rate and the value seen. Events carry capture time, so
the layer works the same on a live interface and on a replayed capture.
"""

from __future__ import annotations

import math
from bisect import bisect_right
from collections import defaultdict
from operator import attrgetter, itemgetter
from operator import le as _le
from typing import Any

import numpy as np

from detect.baseline import EventInfo, Layer, event_info, node, op_of, points_of, server_side
from detect.state import make_alert
from icsight.events import Event, ts_to_iso

MIN_OBS = 10  # observations before a point's range / a channel's period is trusted
SMALL_SET = 8  # at most this many distinct values: the point is checked as a value set
PERIODIC_CV = 0.25  # a channel is periodic when MAD(intervals) / median(interval) is below this
MAX_TS_KEPT = 20000  # learning keeps at most this many timestamps / latencies per channel
RATE_WINDOW = 10.0  # seconds per counting window (flooding)
SKIP = frozenset({"alert", "asset"})
_SET, _COUNTER, _RANGE = 0, 1, 2  # how a learned point is checked (see ProcessTiming._compile)
RUN_GAP = 64  # learned point numbers further apart than this start a new run of slots
RUN_PAD = 16  # empty slots on each side of a run (blocks reaching a little past the learned points)
RUN_QUIET_Q = 0.9  # a run's common quiet time: this quantile of its points' (longer ones: one by one)
_INF = float("inf")
_EXACT = 2.0**53  # integers below this compare with float limits as their float() does
_REF, _VALUE = itemgetter("ref"), itemgetter("value")
_amin = attrgetter("amin")
_ERR_STATUS = ("no_response", "no_request")
_NO_FUNC = object()


def _num(v: Any) -> float | None:
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, int | float) and math.isfinite(v):
        return float(v)
    return None


def _fmt(x: float) -> str:
    return f"{x:.6g}"


def _rate_quiet(e: list[Any]) -> float:
    """Seconds after which a range point's next value inside its limits cannot alert on rate of change.

    The rate alert needs |x - last| > 10 % of the span and |x - last| / dt > 2 * rate; with both values
    inside [lo_lim, hi_lim], |x - last| <= hi_lim - lo_lim =: w, so from dt >= w / (2 * rate) on it cannot
    fire (0.1 % and 1 ms more cover float rounding of capture times). -inf: it can never fire.
    """
    rate, w = e[6], e[5] - e[4]
    if not rate > 0 or w <= e[11]:
        return -_INF
    return w / (2 * rate) * 1.001 + 1e-3


class _Run:
    """Consecutive slots for the point numbers amin .. amin + size - 1 of one family, and how a block of
    them is checked at once (`mode`): _RANGE (every learned point a range point, limits in `_lol` /
    `_hil`, all inside [lo_all, hi_all] at once), _SET (every learned point has the same value set
    `vset`), or None (per point only)."""

    __slots__ = ("amin", "hi_all", "lo_all", "mode", "quiet", "s0", "size", "vset")

    def __init__(self, s0: int, amin: int, size: int) -> None:
        self.s0, self.amin, self.size = s0, amin, size
        self.mode: int | None = None
        self.lo_all, self.hi_all = -_INF, _INF
        self.vset: frozenset[Any] = frozenset()
        self.quiet = -_INF

    def finish(self, learned: list[list[Any]], quiet: list[float]) -> None:
        """Choose the block check from the learned points (`quiet`: the quiet time of each slot)."""
        if all(e[0] == _RANGE and abs(e[4]) < _EXACT and abs(e[5]) < _EXACT for e in learned):
            self.mode = _RANGE
            self.lo_all, self.hi_all = max(e[4] for e in learned), min(e[5] for e in learned)
            qs = sorted(q for q in quiet[self.s0 : self.s0 + self.size] if q > -_INF)
            if qs:
                self.quiet = qs[min(int(RUN_QUIET_Q * len(qs)), len(qs) - 1)]
        elif all(e[0] == _SET for e in learned):
            try:
                sets = {frozenset(e[1]) for e in learned}
            except TypeError:  # an unhashable learned value
                return
            if len(sets) == 1:
                self.mode, self.vset = _SET, sets.pop()


class _InfoChecks:
    """What the rate and timing checks need of one `EventInfo` (compiled once per info)."""

    __slots__ = ("ch", "ck", "error", "fam", "func", "last", "src_fam", "timing")

    def __init__(self) -> None:
        self.timing: tuple[Any, ...] | None = None
        self.func: Any = _NO_FUNC  # the last func of an address/values record, and its family (or None)
        self.fam: Any = None


class ProcessTiming(Layer):
    """Point values, channel timing and window rates of one site."""

    name = "process"
    layer = "process"

    def __init__(self, state: dict[str, Any] | None = None, window: float = RATE_WINDOW) -> None:
        s = state or {}
        self.window = float(s.get("window", window))
        self.points: dict[str, dict[str, Any]] = s.get("points", {})
        self.channels: dict[str, dict[str, Any]] = s.get("channels", {})
        self.rates: dict[str, float] = s.get("rates", {})
        self.first_ts, self.last_ts = s.get("first_ts"), s.get("last_ts")
        # learning scratch
        self._last_val: dict[str, tuple[float, float]] = {}
        self._ts: dict[str, list[float]] = defaultdict(list)
        self._lat: dict[str, list[float]] = defaultdict(list)
        self._buckets: dict[str, dict[int, int]] = defaultdict(lambda: defaultdict(int))  # recent windows
        self._bmax: dict[str, int] = {}  # the most per window so far, per family (bounded state)
        # protect scratch
        self._seen_last: dict[str, list[float | None]] = {}  # channel -> [latest capture time]
        self._counts: dict[int, dict[str, int]] = {}  # window -> family -> events
        self._cur_b: int | None = None
        self._cur_counts: dict[str, int] = {}
        self._fired: set[tuple[str, int]] = set()
        self._max_bucket = -1
        self._pts: dict[str, list[Any]] | None = None  # compiled point checks (built on the first check)
        self._limits: dict[str, int] = {}

    # ------------------------------------------------------------------ keys
    @staticmethod
    def point_key(ev: Event, ref: str) -> str:
        return f"{node(server_side(ev)[1])}|{ev.kind}|{ref}"

    @staticmethod
    def channel_key(ev: Event) -> str:
        c, s = server_side(ev)
        return f"{node(c)}|{node(s)}|{ev.kind}|{op_of(ev)}"

    def _families(self, ev: Event) -> list[str]:
        fam = ["conns"] if ev.kind == "flow" else ["events", f"src:{node(ev.src)}"]
        f = ev.fields
        if (
            ev.kind == "weird"
            or ev.action == "error"
            or f.get("exception")
            or f.get("status") in ("no_response", "no_request")
        ):
            fam.append("errors")
        return fam

    # ------------------------------------------------------------------ learn
    def learn(self, ev: Event) -> None:
        if ev.kind in SKIP:
            return
        self._pts = None
        self.first_ts = ev.ts if self.first_ts is None else min(self.first_ts, ev.ts)
        self.last_ts = ev.ts if self.last_ts is None else max(self.last_ts, ev.ts)
        b = int(ev.ts // self.window)
        for fam in self._families(ev):
            bk = self._buckets[fam]
            bk[b] += 1
            if bk[b] > self._bmax.get(fam, 0):
                self._bmax[fam] = bk[b]
            if len(bk) > 8:  # keep only the latest windows (flows arrive late)
                for old in sorted(bk)[:-4]:
                    del bk[old]
        if ev.kind == "flow":
            return
        for ref, v in points_of(ev):
            k = self.point_key(ev, ref)
            p = self.points.get(k)
            if p is None:
                p = self.points[k] = {
                    "n": 0,
                    "min": None,
                    "max": None,
                    "rate": 0.0,
                    "values": [],
                    "numeric": True,
                    "monotonic": True,
                    "increases": 0,
                    "step": 0.0,
                }
            p["n"] += 1
            if v is not None and len(p["values"]) <= SMALL_SET and v not in p["values"]:
                p["values"].append(v)
            x = _num(v)
            if x is None:
                p["numeric"] = False
                continue
            p["min"] = x if p["min"] is None else min(p["min"], x)
            p["max"] = x if p["max"] is None else max(p["max"], x)
            last = self._last_val.get(k)
            if last is not None:
                dt = ev.ts - last[0]
                if x < last[1]:
                    p["monotonic"] = False
                elif x > last[1]:
                    p["increases"] += 1
                if dt > 1e-3:
                    p["rate"] = max(p["rate"], abs(x - last[1]) / dt)
                p["step"] = max(p.get("step", 0.0), abs(x - last[1]))  # the largest change between samples
            self._last_val[k] = (ev.ts, x)
        ck = self.channel_key(ev)
        if len(self._ts[ck]) < MAX_TS_KEPT:
            self._ts[ck].append(ev.ts)
        lat = _num(ev.fields.get("latency"))
        if lat is not None and len(self._lat[ck]) < MAX_TS_KEPT:
            self._lat[ck].append(lat)

    def finish_learning(self) -> None:
        """Summaries from everything learned so far (may be called again after more learning)."""
        self._pts = None
        for ck, tss in self._ts.items():
            ch = self.channels[ck] = {"n": len(tss)}
            if len(tss) > MIN_OBS:
                iv = np.diff(np.sort(np.asarray(tss)))
                med = float(np.median(iv))
                mad = float(np.median(np.abs(iv - med)))
                if med > 0 and mad / med < PERIODIC_CV:
                    ch["period"] = med
                    ch["jitter"] = float(np.quantile(np.abs(iv - med), 0.99))
        for ck, lats in self._lat.items():
            if len(lats) >= MIN_OBS:
                a = np.asarray(lats)
                ch = self.channels.setdefault(ck, {"n": 0})
                ch["lat_p99"], ch["lat_max"] = float(np.quantile(a, 0.99)), float(a.max())
        for fam, most in self._bmax.items():
            key = "per_src" if fam.startswith("src:") else fam
            self.rates[key] = max(self.rates.get(key, 0), most)

    def to_state(self) -> dict[str, Any]:
        return {
            "window": self.window,
            "points": {k: {f: v for f, v in p.items() if f != "_cat"} for k, p in self.points.items()},
            "channels": self.channels,
            "rates": self.rates,
            "first_ts": self.first_ts,
            "last_ts": self.last_ts,
        }

    # ------------------------------------------------------------------ protect
    def _alert(
        self,
        ev: Event,
        kind: str,
        key: str,
        sev: str,
        zh: str,
        en: str,
        tzh: str,
        ten: str,
        tech: tuple[str, ...],
        extra: dict[str, Any] | None = None,
    ) -> Event:
        return make_alert(
            detector=f"process.{kind}",
            layer="process",
            title_zh=tzh,
            title_en=ten,
            severity=sev,
            reason_zh=zh,
            reason_en=en,
            evidence=[ev],
            key=f"process.{kind}:{key}",
            techniques=tech,
            extra=extra,
        )

    # compiled per-point checks (static; the protect state of a point lives in the slot arrays):
    # [mode, values, lo, hi, lo_lim, hi_lim, rate, slot, key, ref, 2 * rate, 0.1 * (hi - lo)]
    def _compile(self) -> None:
        """Index the learned points for the protect path (redone after any further learning).

        Points with fewer than MIN_OBS observations, or with neither a value set nor a numeric range,
        can never alert and are left out. `_pts` maps the full point key to its entry. Each point has a
        slot in parallel lists (last time, last value, rate deadline, limits); the points of a family
        ("server|kind|<base>:" + number, e.g. Modbus "...|READ_HOLDING_REGISTERS:" + address, DNP3
        "...|1:ai:" + index) take consecutive slots by number (`_Run`, unlearned numbers in between get
        empty slots), so that a block of consecutive points is checked with slices (`_block`).
        """
        pts: dict[str, list[Any]] = {}
        fams: dict[str, dict[int, list[Any]]] = {}
        singles: list[list[Any]] = []
        for k, p in self.points.items():
            if p["n"] < MIN_OBS:
                continue
            vals = p["values"]
            cat = len(vals) <= SMALL_SET and (not p["numeric"] or all(isinstance(u, bool) for u in vals))
            lo, hi = p["min"], p["max"]
            if cat:
                mode = _SET
            elif lo is None:
                continue
            elif p["monotonic"] and p["increases"] >= 2:
                mode = _COUNTER
            else:
                mode = _RANGE
            margin = max(0.1 * (hi - lo), 0.05 * max(abs(lo), abs(hi))) if lo is not None else 0.0
            parts = k.split("|", 2)
            ref = parts[2] if len(parts) == 3 else k
            span10 = 0.1 * (hi - lo) if lo is not None else 0.0
            e = [mode, vals, lo, hi, (lo or 0.0) - margin, (hi or 0.0) + margin, p["rate"], -1, k, ref,
                 2 * p["rate"], span10, p.get("step", 0.0)]
            pts[k] = e
            singles.append(e)
            if len(parts) == 3:
                base, _, digits = ref.rpartition(":")
                if _:
                    try:
                        n = int(digits)
                    except ValueError:
                        continue
                    if str(n) == digits:
                        fams.setdefault(f"{parts[0]}|{parts[1]}|{base}:", {})[n] = e
                        singles.pop()
        ent: list[list[Any] | None] = []
        lol: list[float] = []
        hil: list[float] = []
        dl: list[float] = []

        def slot(e: list[Any] | None) -> None:
            if e is None:  # no learned point: never holds up a block
                lims = (-_INF, _INF, -_INF)
            elif e[0] == _RANGE:
                lims = (e[4], e[5], _rate_quiet(e))
            else:  # value sets and counters: never on the range fast path
                lims = (_INF, -_INF, -_INF)
            if e is not None:
                e[7] = len(ent)
            ent.append(e)
            lol.append(lims[0])
            hil.append(lims[1])
            dl.append(lims[2])

        addr: dict[str, tuple[list[_Run], dict[int, list[Any]]]] = {}
        for fk, by_num in fams.items():
            nums = sorted(by_num)
            runs: list[_Run] = []
            first = 0
            for i in range(1, len(nums) + 1):
                if i < len(nums) and nums[i] - nums[i - 1] <= RUN_GAP:
                    continue
                amin = nums[first] - RUN_PAD
                run = _Run(len(ent), amin, nums[i - 1] + RUN_PAD - amin + 1)
                for a in range(amin, amin + run.size):
                    slot(by_num.get(a))
                run.finish([by_num[a] for a in nums[first:i]], dl)
                runs.append(run)
                first = i
            addr[fk] = (runs, by_num)
        for e in singles:
            slot(e)
        slot_run: list[_Run | None] = [None] * len(ent)
        for runs, _ in addr.values():
            for run in runs:
                if run.mode is not None:
                    slot_run[run.s0 : run.s0 + run.size] = [run] * run.size
        self._slot_run = slot_run
        self._pts, self._addr = pts, addr
        self._ent, self._lol, self._hil, self._dl = ent, lol, hil, dl
        # slot state: last capture time (-inf: none yet), last value, and whether that value lies outside
        # the point's limits (`_out`); `_slow` marks the slots whose quiet time is longer than their run's
        self._lts: list[float] = [-_INF] * len(ent)
        self._lx: list[Any] = [0.0] * len(ent)
        self._out = bytearray(len(ent))
        self._n_out = 0  # slots flagged in _out
        # value-set points in alarm (an unseen value alerted; cleared by the next learned value): a point
        # alerts when it enters the abnormal state, not again on every poll while it stays there (range
        # points: `_out` before the update says the same)
        self._alarm = bytearray(len(ent))
        slow = bytearray(len(ent))
        for runs, _ in addr.values():
            for run in runs:
                for i in range(run.s0, run.s0 + run.size):
                    if dl[i] > run.quiet:
                        slow[i] = 1
        self._slow = bytes(slow)
        self._plans: dict[tuple[str, tuple[Any, ...]], list[tuple[Any, ...]]] = {}
        self._ci: dict[EventInfo, _InfoChecks] = {}
        self._limits = {
            fam: max(math.ceil(v * 1.5), v + 5) for fam, v in (("per_src", 0), *self.rates.items())
        }
        lim = self._limits
        self._lim_events, self._lim_src = lim.get("events", 5), lim.get("per_src", 5)
        self._lim_conns, self._lim_errors = lim.get("conns", 5), lim.get("errors", 5)

    def _info_checks(self, info: EventInfo, ev: Event) -> _InfoChecks:
        """The per-(kind, endpoints, action, operation) part of the checks: rate family, channel timing."""
        ci = _InfoChecks()
        ci.src_fam = "src:" + info.src
        ci.error = info.kind == "weird" or info.action == "error"
        ck = info.op_key  # = channel_key(ev)
        ci.last = self._seen_last.setdefault(ck, [None])
        ch = self.channels.get(ck)
        ci.ck, ci.ch = ck, ch
        if ch is not None:  # (period, shortest and longest gap without an alert, latency limit)
            period, p99 = ch.get("period"), ch.get("lat_p99")
            tol = max(4 * ch.get("jitter", 0.0), 0.25 * period) if period else 0.0
            lat_limit = max(3 * p99, ch["lat_max"] * 1.5, p99 + 0.05) if p99 is not None else None
            ci.timing = (period, period - tol, period + max(tol, period), lat_limit) if period else (
                None, 0.0, 0.0, lat_limit
            )
        if len(self._ci) >= 200_000:
            self._ci.clear()
        self._ci[info] = ci
        return ci

    def check(self, ev: Event) -> list[Event]:
        kind = ev.kind
        if kind in SKIP:
            return []
        if self._pts is None:
            self._compile()
        info = event_info(ev)
        ci = self._ci.get(info)
        if ci is None:
            ci = self._info_checks(info, ev)
        ts, f = ev.ts, ev.fields
        out: list[Event] = []
        # events, connections and errors per window, overall and per source, against the learned most
        b = int(ts // self.window)
        counts = self._cur_counts if b == self._cur_b else self._bucket(b)
        if kind == "flow":
            c = counts.get("conns", 0) + 1
            counts["conns"] = c
            if c > self._lim_conns:
                self._rate_alert(ev, "conns", b, c, self._lim_conns, out)
        else:
            c = counts.get("events", 0) + 1
            counts["events"] = c
            if c > self._lim_events:
                self._rate_alert(ev, "events", b, c, self._lim_events, out)
            fam = ci.src_fam
            c = counts.get(fam, 0) + 1
            counts[fam] = c
            if c > self._lim_src:
                self._rate_alert(ev, fam, b, c, self._lim_src, out)
        if ci.error or f.get("exception") or f.get("status") in _ERR_STATUS:
            c = counts.get("errors", 0) + 1
            counts["errors"] = c
            if c > self._lim_errors:
                self._rate_alert(ev, "errors", b, c, self._lim_errors, out)
        if kind == "flow":
            return out
        # point values
        pl = f.get("points")
        if isinstance(pl, list):
            if pl:
                self._check_point_list(ev, info.point_prefix, pl, out)
        else:
            a0, vals = f.get("address"), f.get("values")
            if isinstance(a0, int) and isinstance(vals, list) and vals:
                func = f.get("func") or kind
                if func is not ci.func:
                    ci.func, ci.fam = func, self._addr.get(f"{info.point_prefix}{func}:")
                fam = ci.fam
                if fam is not None:
                    runs = fam[0]
                    run = runs[0] if len(runs) == 1 else runs[max(bisect_right(runs, a0, key=_amin) - 1, 0)]
                    i0, n = a0 - run.amin, len(vals)
                    if i0 >= 0 and i0 + n <= run.size:  # one block of consecutive slots
                        s0 = run.s0 + i0
                        if run.mode is None or not self._block(run, s0, vals, ts):
                            self._points(ev, zip(self._ent[s0 : s0 + n], vals, strict=True), out)
                    else:
                        self._points(ev, zip(map(fam[1].get, range(a0, a0 + n)), vals, strict=True), out)
        # channel timing (see _timing_alerts for the full check)
        st = ci.last
        last = st[0]
        if last is None or ts > last:
            st[0] = ts
        c = ci.timing
        if c is None:
            return out
        if c[0] and last is not None:
            gap = ts - last
            if 0 <= gap < c[1] or gap > c[2]:
                return self._timing_alerts(ev, ci.ck, ci.ch, last, out)
        if c[3] is not None:
            lat = f.get("latency")
            if lat is not None and (lat.__class__ is not float or lat > c[3]):
                return self._timing_alerts(ev, ci.ck, ci.ch, last, out)
        return out

    def _bucket(self, b: int) -> dict[str, int]:
        """The counts of window `b` (made the current one); windows long past are dropped first."""
        if b > self._max_bucket + 2:  # bounded state
            self._counts = {k: c for k, c in self._counts.items() if k >= b - 2}
            self._fired = {k for k in self._fired if k[1] >= b - 2}
        if b > self._max_bucket:
            self._max_bucket = b
        counts = self._counts.get(b)
        if counts is None:
            counts = self._counts[b] = {}
        self._cur_b, self._cur_counts = b, counts
        return counts

    # ------------------------------------------------------------------ protect: point values
    def _block(self, run: _Run, s0: int, vals: list[Any], ts: float) -> bool:
        """Check values of the consecutive slots s0.. of `run` at once; True when none can alert.

        Modbus-style address/values records (`check`) and runs of a point list (`_check_point_list`)
        whose numbers are consecutive: the usual poll is one block.

        On True the slots' state is updated as the per-point check would have (last time and value).
        False (nothing changed) sends the block to the per-point check (`_points`), which is exact: this
        is only a filter, and it may say False where no alert would fire.
        A range block passes when every value is a finite number inside its point's limits and no point
        can alert on rate of change: each point's last value lies inside its limits too (not `_out`)
        and its last update is at least its quiet time ago (`_rate_quiet`): the run's `quiet` (the
        longest of its points but a few) for all at once, the point's own for the `_slow` ones.
        """
        if run.mode == _SET:
            try:
                ok = run.vset.issuperset(vals)
            except TypeError:  # an unhashable value
                return False
            if ok and self._alarm.count(1, s0, s0 + len(vals)):
                self._alarm[s0 : s0 + len(vals)] = bytes(len(vals))
            return ok
        n = len(vals)
        s1 = s0 + n
        lts = self._lts
        if max(lts[s0:s1]) > ts - run.quiet or (self._n_out and self._out.count(0, s0, s1) != n):
            return False  # (first: points polled faster than their quiet time fail here, cheaply)
        try:
            t = sum(vals)  # TypeError: not all numbers; NaN: min/max below could step over it
            if t != t:
                return False
            if not (run.lo_all <= min(vals) and max(vals) <= run.hi_all) and not (
                all(map(_le, self._lol[s0:s1], vals)) and all(map(_le, vals, self._hil[s0:s1]))
            ):
                return False
        except TypeError:
            return False
        slow = self._slow
        s = slow.find(1, s0, s1)
        while s >= 0:
            if lts[s] + self._dl[s] > ts:
                return False
            s = slow.find(1, s + 1, s1)
        # the values as given: the per-point check keeps float(v), the same number (|v| < 2**53 here)
        self._lx[s0:s1] = vals
        lts[s0:s1] = [ts] * n
        return True

    def _check_point_list(self, ev: Event, prefix: str, pl: list[Any], out: list[Event]) -> None:
        """`fields.points` records: the refs of a list are planned once into blocks of consecutive slots."""
        try:
            refs = tuple(map(_REF, pl))
            vals = list(map(_VALUE, pl))
            plan = self._plans.get((prefix, refs))
        except (KeyError, TypeError):  # not all points are {"ref", "value"} dicts: per point, as learned
            get = self._pts.get
            self._points(ev, [(get(prefix + ref), v) for ref, v in points_of(ev)], out)
            return
        if plan is None:
            plan = self._plan(prefix, refs)
        ts = ev.ts
        for run, s0, j0, j1, ents in plan:
            vs = vals if j0 == 0 and j1 == len(vals) else vals[j0:j1]
            if run is not None and self._block(run, s0, vs, ts):
                continue
            self._points(ev, zip(ents, vs, strict=True), out)

    def _plan(self, prefix: str, refs: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        """Split a point list into blocks: (run, first slot, start, end, entries); run None: per point."""
        get = self._pts.get
        ents = [get(prefix + str(r)) for r in refs]
        runs = [self._slot_run[e[7]] if e is not None else None for e in ents]
        plan: list[tuple[Any, ...]] = []
        j = 0
        while j < len(ents):
            run, k = runs[j], j + 1
            if run is not None:  # consecutive slots of one run
                s0 = ents[j][7]
                while k < len(ents) and runs[k] is run and ents[k][7] == s0 + (k - j):
                    k += 1
            else:
                s0 = -1
                while k < len(ents) and runs[k] is None:
                    k += 1
            plan.append((run, s0, j, k, ents[j:k]))
            j = k
        if all(r.__class__ is str for r in refs):  # (other refs could equal another's: True == 1)
            if len(self._plans) >= 50_000:
                self._plans.clear()
            self._plans[(prefix, refs)] = plan
        return plan

    def _points(self, ev: Event, pairs: Any, out: list[Event]) -> None:
        """The per-point check of (entry, value) pairs, in order (entry None: the point is not learned)."""
        ts = ev.ts
        lts_, lx_, out_ = self._lts, self._lx, self._out
        for e, v in pairs:
            if e is None:
                continue
            # inline fast path for the usual case: an int inside the learned range, usual rate of change
            if e[0] == _RANGE and v.__class__ is int:
                x = float(v)
                if e[4] <= x <= e[5]:
                    s = e[7]
                    lts, lx = lts_[s], lx_[s]
                    lts_[s], lx_[s] = ts, x
                    if out_[s]:
                        out_[s] = 0
                        self._n_out -= 1
                    if lts == -_INF or e[6] <= 0 or ts - lts <= 1e-3:
                        continue
                    d = abs(x - lx)
                    if d <= e[11] or d / (ts - lts) <= e[10]:
                        continue
                    lts_[s], lx_[s] = lts, lx  # an alert: undo, the full check below builds it
            elif e[0] == _SET and v in e[1]:
                if self._alarm[e[7]]:
                    self._alarm[e[7]] = 0
                continue
            a = self._check_point(ev, e, v)
            if a is not None:
                out.append(a)

    def _rate_alert(self, ev: Event, fam: str, b: int, c: int, limit: int, out: list[Event]) -> None:
        k = (fam, b)
        if k in self._fired:
            return
        self._fired.add(k)
        lk = "per_src" if fam[:4] == "src:" else fam
        learned = self.rates.get(lk, 0)
        what = {"events": "events", "conns": "connections", "errors": "errors/exceptions"}.get(
            fam, f"events from {fam[4:]}"
        )
        out.append(
            self._alert(
                ev,
                "rate",
                fam,
                "high",
                f"{self.window:g} 秒内 {what} 数 {c} 超过学习上限 {learned:g}（阈值 {limit}）",
                f"{c} {what} within {self.window:g} s exceeds the learned maximum {learned:g} "
                f"(limit {limit})",
                "流量速率异常（疑似泛洪）",
                "Rate above the learned maximum (flooding?)",
                ("T0814",),
                {"count": c, "learned_max": learned, "window_s": self.window},
            )
        )

    def _check_point(self, ev: Event, e: list[Any], v: Any) -> Event | None:
        mode, vals = e[0], e[1]
        if mode == _SET:  # checked as a value set: few distinct bool/string values
            if v not in vals:
                if self._alarm[e[7]]:  # still in alarm since its alert
                    return None
                self._alarm[e[7]] = 1
                k, ref = e[8], e[9]
                return self._alert(
                    ev,
                    "value",
                    f"{k}|{v}",
                    "high",
                    f"点 {ref} 出现学习期未见的值 {v!r}（学习值 {vals!r}）",
                    f"point {ref} value {v!r} never seen while learning (learned values {vals!r})",
                    "过程值异常",
                    "Process value outside the learned set",
                    ("T0832", "T0836"),
                    {"point": k, "value": v, "learned_values": vals},
                )
            self._alarm[e[7]] = 0
            return None
        if v.__class__ is int or v.__class__ is float:
            x = float(v) if math.isfinite(v) else None
        else:
            x = _num(v)
        if x is None:
            return None
        s = e[7]
        lts, lx = self._lts[s], self._lx[s]
        if lts == -_INF:
            lts = None
        self._lts[s], self._lx[s] = ev.ts, x
        lo, hi = e[2], e[3]
        out = 0 if mode == _RANGE and e[4] <= x <= e[5] else 1
        was_out = self._out[s]
        if out != was_out:
            self._out[s] = out
            self._n_out += 1 if out else -1
        if mode == _COUNTER:
            if lts is not None and x < lx:
                k, ref = e[8], e[9]
                return self._alert(
                    ev,
                    "counter",
                    k,
                    "medium",
                    f"计数点 {ref} 回退 {_fmt(lx)} -> {_fmt(x)}",
                    f"counter {ref} went backwards {_fmt(lx)} -> {_fmt(x)} (learned as monotonic)",
                    "计数器回退",
                    "Counter went backwards",
                    ("T0832",),
                    {"point": k},
                )
        elif x < e[4] or x > e[5]:
            if was_out:  # still outside since its alert (latched until a value inside the limits)
                return None
            k, ref = e[8], e[9]
            return self._alert(
                ev,
                "range",
                f"{k}",
                "high",
                f"点 {ref} 值 {_fmt(x)} 超出学习范围 [{_fmt(lo)}, {_fmt(hi)}]"
                "（余量：跨度的 10%，至少为值的 5%）",
                f"point {ref} value {_fmt(x)} outside learned range [{_fmt(lo)}, {_fmt(hi)}] "
                "(margin 10% of the span, at least 5% of the value)",
                "过程值超出范围",
                "Process value out of range",
                ("T0832", "T0836"),
                {"point": k, "value": x, "learned_min": lo, "learned_max": hi},
            )
        rate = e[6]
        if lts is not None and rate > 0:
            dt = ev.ts - lts
            if dt > 1e-3:
                r = abs(x - lx) / dt
                # faster than twice the learned rate AND a bigger change than any between two learned
                # samples: a learned step (a breaker, a setpoint change) seen over a shorter gap is not one
                if r > 2 * rate and abs(x - lx) > 0.1 * (hi - lo) and abs(x - lx) > e[12]:
                    k, ref = e[8], e[9]
                    return self._alert(
                        ev,
                        "rate_of_change",
                        k,
                        "medium",
                        f"点 {ref} 变化率 {_fmt(r)}/s 超过学习最大值 {_fmt(rate)}/s 的 2 倍",
                        f"point {ref} changes at {_fmt(r)}/s, over twice the learned maximum "
                        f"{_fmt(rate)}/s",
                        "过程值变化过快",
                        "Process value changes too fast",
                        ("T0832",),
                        {"point": k, "rate": r, "learned_rate": rate},
                    )
        return None

    def _timing_alerts(self, ev: Event, ck: str, ch: dict[str, Any], last: float | None, out: list[Event]):
        """The timing alerts of one event (the full check, run when the fast check above saw a deviation)."""
        period = ch.get("period")
        if period and last is not None:
            gap = ev.ts - last
            tol = max(4 * ch.get("jitter", 0.0), 0.25 * period)
            if 0 <= gap < period - tol:
                out.append(
                    self._alert(
                        ev,
                        "extra_poll",
                        ck,
                        "medium",
                        f"通道 {ck} 间隔 {gap:.3f}s 短于学习周期 {period:.3f}s±{tol:.3f}s（多余请求）",
                        f"channel {ck}: {gap:.3f} s since the previous message, learned period "
                        f"{period:.3f} s +/- {tol:.3f} s (extra poll)",
                        "轮询时序异常（多余请求）",
                        "Extra poll outside the learned period",
                        ("T0855",),
                        {"gap": gap, "period": period},
                    )
                )
            elif gap > period + max(tol, period):
                missed = round(gap / period) - 1
                out.append(
                    self._alert(
                        ev,
                        "missed_poll",
                        ck,
                        "low",
                        f"通道 {ck} 间隔 {gap:.3f}s，约缺失 {missed} 次轮询（学习周期 {period:.3f}s）",
                        f"channel {ck}: {gap:.3f} s without a message, about {missed} polls missed "
                        f"(learned period {period:.3f} s)",
                        "轮询缺失",
                        "Missed polls",
                        ("T0814",),
                        {"gap": gap, "period": period},
                    )
                )
        lat = _num(ev.fields.get("latency"))
        p99 = ch.get("lat_p99")
        if lat is not None and p99 is not None:
            limit = max(3 * p99, ch["lat_max"] * 1.5, p99 + 0.05)
            if lat > limit:
                out.append(
                    self._alert(
                        ev,
                        "latency",
                        ck,
                        "medium",
                        f"通道 {ck} 响应时延 {lat * 1000:.1f}ms 超过学习值 p99 {p99 * 1000:.1f}ms / "
                        f"最大 {ch['lat_max'] * 1000:.1f}ms",
                        f"channel {ck}: response latency {lat * 1000:.1f} ms, learned p99 "
                        f"{p99 * 1000:.1f} ms, max {ch['lat_max'] * 1000:.1f} ms",
                        "响应时延异常（疑似中间人）",
                        "Response latency shift (man-in-the-middle?)",
                        ("T0830",),
                        {"latency": lat, "learned_p99": p99},
                    )
                )
        return out

    def describe(self) -> str:
        return f"learned {ts_to_iso(self.first_ts or 0)} – {ts_to_iso(self.last_ts or 0)}"
