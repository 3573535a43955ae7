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
from collections import defaultdict
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


def _num(v: Any) -> float | None:
    if isinstance(v, bool):
        return float(v)
    if isinstance(v, int | float) and math.isfinite(v):
        return float(v)
    return None


def _fmt(x: float) -> str:
    return f"{x:.6g}"


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
        self._seen_last: dict[str, float] = {}
        self._pv_last: dict[str, tuple[float, float]] = {}
        self._counts: dict[tuple[str, int], int] = {}
        self._fired: set[tuple[str, int]] = set()
        self._max_bucket = -1
        self._pts: dict[str, list[Any]] | None = None  # compiled point checks (built on the first check)
        self._addr: dict[str, dict[int, list[Any]]] = {}
        self._limits: dict[str, int] = {}
        self._chc: dict[str, tuple[Any, ...]] = {}  # compiled channel checks

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

    # compiled per-point checks:
    # [mode, values, lo, hi, lo_lim, hi_lim, rate, last_ts, last_x, key, ref, 2 * rate, 0.1 * (hi - lo)]
    def _compile(self) -> None:
        """Index the learned points for the protect path (redone after any further learning).

        Points with fewer than MIN_OBS observations, or with neither a value set nor a numeric range,
        can never alert and are left out. `_pts` maps the full point key; `_addr` maps
        "server|kind|<func>:" to {address: entry} for the Modbus-style address/values records, so their
        refs need no string building.
        """
        pts: dict[str, list[Any]] = {}
        addr: dict[str, dict[int, list[Any]]] = {}
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
            e = [mode, vals, lo, hi, (lo or 0.0) - margin, (hi or 0.0) + margin, p["rate"], None, 0.0, k, ref,
                 2 * p["rate"], span10]
            pts[k] = e
            if len(parts) == 3:
                base, _, digits = ref.rpartition(":")
                if _:
                    try:
                        n = int(digits)
                    except ValueError:
                        continue
                    if str(n) == digits:
                        addr.setdefault(f"{parts[0]}|{parts[1]}|{base}:", {})[n] = e
        self._pts, self._addr = pts, addr
        self._chc: dict[str, tuple[Any, ...]] = {}
        self._limits = {
            fam: max(math.ceil(v * 1.5), v + 5) for fam, v in (("per_src", 0), *self.rates.items())
        }

    def check(self, ev: Event) -> list[Event]:
        if ev.kind in SKIP:
            return []
        if self._pts is None:
            self._compile()
        info = event_info(ev)
        out = self._check_rates(ev, info)
        if ev.kind == "flow":
            return out
        f = ev.fields
        pl = f.get("points")
        pairs: Any = ()
        if isinstance(pl, list):
            if pl:
                prefix, get = info.point_prefix, self._pts.get
                pairs = [(get(prefix + ref), v) for ref, v in points_of(ev)]
        else:
            a0, vals = f.get("address"), f.get("values")
            if isinstance(a0, int) and isinstance(vals, list) and vals:
                fam = self._addr.get(f"{info.point_prefix}{f.get('func') or ev.kind}:")
                if fam is not None:
                    pairs = zip(map(fam.get, range(a0, a0 + len(vals))), vals, strict=True)
        ts = ev.ts
        for e, v in pairs:
            if e is None:
                continue
            # inline fast path for the usual case: an int inside the learned range, usual rate of change
            if e[0] == _RANGE and v.__class__ is int:
                x = float(v)
                if e[4] <= x <= e[5]:
                    lts, lx = e[7], e[8]
                    e[7], e[8] = ts, x
                    if lts is None or e[6] <= 0 or ts - lts <= 1e-3:
                        continue
                    d = abs(x - lx)
                    if d <= e[12] or d / (ts - lts) <= e[11]:
                        continue
                    e[7], e[8] = lts, lx  # an alert: undo, the full check below builds it
            elif e[0] == _SET and v in e[1]:
                continue
            a = self._check_point(ev, e, v)
            if a is not None:
                out.append(a)
        self._check_timing(ev, info, out)
        return out

    def _check_rates(self, ev: Event, info: EventInfo) -> list[Event]:
        out: list[Event] = []
        b = int(ev.ts // self.window)
        if b > self._max_bucket + 2:  # drop counts of windows long past (bounded state)
            self._counts = {k: c for k, c in self._counts.items() if k[1] >= b - 2}
            self._fired = {k for k in self._fired if k[1] >= b - 2}
        if b > self._max_bucket:
            self._max_bucket = b
        f = ev.fields
        if ev.kind == "flow":
            fams: tuple[str, ...] = ("conns",)
        else:
            fams = ("events", "src:" + info.src)
        if (
            ev.kind == "weird"
            or ev.action == "error"
            or f.get("exception")
            or f.get("status") in ("no_response", "no_request")
        ):
            fams += ("errors",)
        counts, limits = self._counts, self._limits
        for fam in fams:
            k = (fam, b)
            c = counts.get(k, 0) + 1
            counts[k] = c
            lk = "per_src" if fam[:4] == "src:" else fam
            limit = limits.get(lk, 5)
            if c > limit and k not in self._fired:
                self._fired.add(k)
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
        return out

    def _check_point(self, ev: Event, e: list[Any], v: Any) -> Event | None:
        mode, vals = e[0], e[1]
        if mode == _SET:  # checked as a value set: few distinct bool/string values
            if v not in vals:
                k, ref = e[9], e[10]
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
            return None
        if v.__class__ is int or v.__class__ is float:
            x = float(v) if math.isfinite(v) else None
        else:
            x = _num(v)
        if x is None:
            return None
        lts, lx = e[7], e[8]
        e[7], e[8] = ev.ts, x
        lo, hi = e[2], e[3]
        if mode == _COUNTER:
            if lts is not None and x < lx:
                k, ref = e[9], e[10]
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
            k, ref = e[9], e[10]
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
                if r > 2 * rate and abs(x - lx) > 0.1 * (hi - lo):
                    k, ref = e[9], e[10]
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

    def _check_timing(self, ev: Event, info: EventInfo, out: list[Event]) -> list[Event]:
        ck = info.op_key  # = channel_key(ev)
        ts = ev.ts
        last = self._seen_last.get(ck)
        if last is None or ts > last:
            self._seen_last[ck] = ts
        ch = self.channels.get(ck)
        if ch is None:
            return out
        c = self._chc.get(ck)
        if c is None:  # (period, shortest and longest gap without an alert, latency limit)
            period, p99 = ch.get("period"), ch.get("lat_p99")
            tol = max(4 * ch.get("jitter", 0.0), 0.25 * period) if period else 0.0
            lat_limit = max(3 * p99, ch["lat_max"] * 1.5, p99 + 0.05) if p99 is not None else None
            c = self._chc[ck] = (period, period - tol, period + max(tol, period), lat_limit) if period else (
                None, 0.0, 0.0, lat_limit
            )
        if c[0] and last is not None:
            gap = ts - last
            if 0 <= gap < c[1] or gap > c[2]:
                return self._timing_alerts(ev, ck, ch, last, out)
        if c[3] is not None:
            lat = ev.fields.get("latency")
            if lat is not None and (lat.__class__ is not float or lat > c[3]):
                return self._timing_alerts(ev, ck, ch, last, out)
        return out

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
