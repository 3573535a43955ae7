"""Windowed per-source features for the anomaly models: events -> X with named columns.

One row per (time window, source node) that produced at least one event: counts per kind family and
action, distinct peers / ports / operations, mean flow payload bytes per packet, latency statistics,
broadcast and
ARP counts, and how many talker pairs of the row are not in a given set of known pairs (the learned
baseline). Columns are `FEATURES`, in that order; the model stores them and refuses other columns.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np

from detect.baseline import EventInfo, event_info
from icsight.events import Event

ACTIONS = ("read", "write", "program", "control", "diagnose", "discover", "session", "error", "other")
FEATURES: tuple[str, ...] = (
    "n_events",
    "n_flows",
    "n_transactions",
    "n_arp",
    "n_arp_reply",
    "n_arp_gratuitous",
    "n_weird",
    *(f"n_{a}" for a in ACTIONS),
    "n_no_response",
    "n_exception",
    "n_distinct_dst",
    "n_distinct_dst_ports",
    "n_distinct_ops",
    "n_broadcast_dst",
    "flow_bytes_per_pkt",
    "latency_mean",
    "latency_max",
    "n_new_talkers",
)
SKIP = frozenset({"alert", "asset"})
_ACTION_COLS = {a: f"n_{a}" for a in ACTIONS}
_KIND_COLS = {"flow": "n_flows", "arp": "n_arp", "weird": "n_weird"}  # any other kind: n_transactions


class _Row:
    """One (window, source) row being filled: events counted per `EventInfo` (`per_info`; the columns
    that follow from the info are added up at `close`), the columns that depend on other fields
    (`counts`), latencies and evidence events."""

    __slots__ = ("counts", "events", "lats", "per_info")

    def __init__(self) -> None:
        self.per_info: dict[EventInfo, int] = {}
        self.counts: dict[str, float] = {}
        self.lats: list[float] = []
        self.events: list[Event] = []


class WindowFeatures:
    """Accumulates events into (window, source) rows; `close(upto)` hands back rows of finished windows.

    `known_pairs` (talker keys of a baseline) feeds the `n_new_talkers` column; rows keep up to
    `keep_events` events as evidence.
    """

    def __init__(
        self, window: float = 10.0, known_pairs: Iterable[str] | None = None, keep_events: int = 20
    ) -> None:
        self.window = float(window)
        self.known = set(known_pairs) if known_pairs is not None else None
        self.keep = keep_events
        self.rows: dict[tuple[int, str], _Row] = {}
        self.min_b: int | None = None  # the earliest window with a row (None: no rows)
        self._cur_b: int | None = None  # the rows of window _cur_b by source (a cache of `rows`)
        self._cur: dict[str, _Row] = {}

    def next_close(self) -> float:
        """The capture time at which `close` would first return a row (inf when there is none)."""
        return float("inf") if self.min_b is None else (self.min_b + 1) * self.window

    def add(self, ev: Event, b: int | None = None) -> None:
        """Count one event into its row (`b`: its window index, int(ts // window), when known)."""
        if ev.kind in SKIP:
            return
        if b is None:
            b = int(ev.ts // self.window)
        info = event_info(ev)
        if b == self._cur_b:
            r = self._cur.get(info.src)
            if r is None:
                r = self._row(b, info.src)
        else:
            r = self._row(b, info.src)
        pi = r.per_info
        pi[info] = pi.get(info, 0) + 1
        f = ev.fields
        kind = info.kind
        if kind == "flow" or kind == "arp":
            self._special(r.counts, kind, f)
        if f.get("status") == "no_response":
            r.counts["n_no_response"] = r.counts.get("n_no_response", 0.0) + 1.0
        if f.get("exception"):
            r.counts["n_exception"] = r.counts.get("n_exception", 0.0) + 1.0
        lat = f.get("latency")
        if lat.__class__ is float or isinstance(lat, int | float):
            r.lats.append(float(lat))
        if self.known is not None and info.talker not in self.known:
            r.counts["n_new_talkers"] = r.counts.get("n_new_talkers", 0.0) + 1.0
        if len(r.events) < self.keep:
            r.events.append(ev)

    def _row(self, b: int, src: str) -> _Row:
        key = (b, src)
        r = self.rows.get(key)
        if r is None:
            r = self.rows[key] = _Row()
            if self.min_b is None or b < self.min_b:
                self.min_b = b
        if b != self._cur_b:
            self._cur_b, self._cur = b, {}
        self._cur[src] = r
        return r

    @staticmethod
    def _special(c: dict[str, float], kind: str, f: Any) -> None:
        """The columns of flows and ARP that depend on their fields."""
        if kind == "flow":
            # a flow's totals land in the window of its first packet, so sums of bytes would swing with
            # flow length: the mean payload bytes per packet is what the row keeps
            c["_flow_bytes"] = c.get("_flow_bytes", 0.0) + (
                float(f.get("orig_bytes") or 0) + float(f.get("resp_bytes") or 0)
            )
            c["_flow_pkts"] = c.get("_flow_pkts", 0.0) + (
                float(f.get("orig_pkts") or 0) + float(f.get("resp_pkts") or 0)
            )
        else:
            if f.get("op") == "reply":
                c["n_arp_reply"] = c.get("n_arp_reply", 0.0) + 1.0
            if f.get("gratuitous"):
                c["n_arp_gratuitous"] = c.get("n_arp_gratuitous", 0.0) + 1.0

    def close(self, upto: float | None = None) -> list[tuple[int, str, np.ndarray, list[Event]]]:
        """Rows of windows ending at or before `upto` (all rows when None), removed from the buffer."""
        out = []
        self._cur_b, self._cur = None, {}
        for key in sorted(self.rows, key=lambda k: (k[0], k[1])):
            b, src = key
            if upto is not None and (b + 1) * self.window > upto:
                continue
            r = self.rows.pop(key)
            c = dict(r.counts)
            n: dict[str, int] = {}  # the columns that follow from the events' infos
            dsts, ports, ops = set(), set(), set()
            for info, k in r.per_info.items():
                n["n_events"] = n.get("n_events", 0) + k
                col = _KIND_COLS.get(info.kind, "n_transactions")
                n[col] = n.get(col, 0) + k
                col = _ACTION_COLS.get(info.action)
                if col is not None:
                    n[col] = n.get(col, 0) + k
                if info.broadcast_dst:
                    n["n_broadcast_dst"] = n.get("n_broadcast_dst", 0) + k
                dsts.add(info.dst)
                ports.add(info.sport)
                ops.add(info.feat_op)
            for col, k in n.items():
                c[col] = float(k)
            c["n_distinct_dst"] = len(dsts)
            c["n_distinct_dst_ports"] = len(ports)
            c["n_distinct_ops"] = len(ops)
            if c.get("_flow_pkts"):
                c["flow_bytes_per_pkt"] = c["_flow_bytes"] / c["_flow_pkts"]
            if r.lats:
                c["latency_mean"] = float(np.mean(r.lats))
                c["latency_max"] = float(np.max(r.lats))
            out.append((b, src, np.array([c.get(k, 0.0) for k in FEATURES], dtype=float), r.events))
        self.min_b = min((k[0] for k in self.rows), default=None)
        return out


def build_matrix(
    events: Iterable[Event], window: float = 10.0, known_pairs: Iterable[str] | None = None
) -> tuple[np.ndarray, list[tuple[int, str]]]:
    """X (rows x FEATURES) and the (window index, source) of each row, from a batch of events."""
    wf = WindowFeatures(window, known_pairs, keep_events=0)
    for ev in events:
        wf.add(ev)
    rows = wf.close()
    if not rows:
        return np.zeros((0, len(FEATURES))), []
    return np.vstack([r[2] for r in rows]), [(r[0], r[1]) for r in rows]
