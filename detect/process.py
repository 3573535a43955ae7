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

from detect.baseline import Layer, node, op_of, points_of, server_side
from detect.state import make_alert
from icsight.events import Event, ts_to_iso

MIN_OBS = 10  # observations before a point's range / a channel's period is trusted
SMALL_SET = 8  # at most this many distinct values: the point is checked as a value set
PERIODIC_CV = 0.25  # a channel is periodic when MAD(intervals) / median(interval) is below this
MAX_TS_KEPT = 20000  # learning keeps at most this many timestamps / latencies per channel
RATE_WINDOW = 10.0  # seconds per counting window (flooding)
SKIP = frozenset({"alert", "asset"})


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

    def check(self, ev: Event) -> list[Event]:
        if ev.kind in SKIP:
            return []
        out = self._check_rates(ev)
        if ev.kind == "flow":
            return out
        pts = points_of(ev)
        if pts:
            prefix = f"{node(server_side(ev)[1])}|{ev.kind}|"  # = point_key(ev, ref) without the ref
            for ref, v in pts:
                a = self._check_point(ev, ref, v, prefix + ref)
                if a is not None:
                    out.append(a)
        out.extend(self._check_timing(ev))
        return out

    def _check_rates(self, ev: Event) -> list[Event]:
        out = []
        b = int(ev.ts // self.window)
        if b > self._max_bucket + 2:  # drop counts of windows long past (bounded state)
            self._counts = {k: c for k, c in self._counts.items() if k[1] >= b - 2}
            self._fired = {k for k in self._fired if k[1] >= b - 2}
        self._max_bucket = max(self._max_bucket, b)
        for fam in self._families(ev):
            k = (fam, b)
            c = self._counts.get(k, 0) + 1
            self._counts[k] = c
            learned = self.rates.get("per_src" if fam.startswith("src:") else fam, 0)
            limit = max(math.ceil(learned * 1.5), learned + 5)
            if c > limit and k not in self._fired:
                self._fired.add(k)
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

    def _check_point(self, ev: Event, ref: str, v: Any, k: str) -> Event | None:
        p = self.points.get(k)
        x = _num(v)
        last = self._pv_last.get(k)
        if x is not None:
            self._pv_last[k] = (ev.ts, x)
        if p is None or p["n"] < MIN_OBS:
            return None
        vals = p["values"]
        cat = p.get("_cat")
        if cat is None:  # checked as a value set: few distinct bool/string values (cached per point)
            cat = p["_cat"] = len(vals) <= SMALL_SET and (
                not p["numeric"] or all(isinstance(u, bool) for u in vals)
            )
        if cat:
            if v not in vals:
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
        if x is None or p["min"] is None:
            return None
        lo, hi = p["min"], p["max"]
        if p["monotonic"] and p["increases"] >= 2:
            if last is not None and x < last[1]:
                return self._alert(
                    ev,
                    "counter",
                    k,
                    "medium",
                    f"计数点 {ref} 回退 {_fmt(last[1])} -> {_fmt(x)}",
                    f"counter {ref} went backwards {_fmt(last[1])} -> {_fmt(x)} (learned as monotonic)",
                    "计数器回退",
                    "Counter went backwards",
                    ("T0832",),
                    {"point": k},
                )
        else:
            margin = max(0.1 * (hi - lo), 0.05 * max(abs(lo), abs(hi)))
            if x < lo - margin or x > hi + margin:
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
        if last is not None and p["rate"] > 0:
            dt = ev.ts - last[0]
            if dt > 1e-3:
                r = abs(x - last[1]) / dt
                if r > 2 * p["rate"] and abs(x - last[1]) > 0.1 * (hi - lo):
                    return self._alert(
                        ev,
                        "rate_of_change",
                        k,
                        "medium",
                        f"点 {ref} 变化率 {_fmt(r)}/s 超过学习最大值 {_fmt(p['rate'])}/s 的 2 倍",
                        f"point {ref} changes at {_fmt(r)}/s, over twice the learned maximum "
                        f"{_fmt(p['rate'])}/s",
                        "过程值变化过快",
                        "Process value changes too fast",
                        ("T0832",),
                        {"point": k, "rate": r, "learned_rate": p["rate"]},
                    )
        return None

    def _check_timing(self, ev: Event) -> list[Event]:
        out = []
        ck = self.channel_key(ev)
        ch = self.channels.get(ck)
        last = self._seen_last.get(ck)
        self._seen_last[ck] = ev.ts if last is None else max(last, ev.ts)
        if ch is None:
            return out
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
