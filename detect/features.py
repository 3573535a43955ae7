"""Windowed per-source features for the anomaly models: events -> X with named columns.

One row per (time window, source node) that produced at least one event: counts per kind family and
action, distinct peers / ports / operations, mean flow payload bytes per packet, latency statistics,
broadcast and
ARP counts, and how many talker pairs of the row are not in a given set of known pairs (the learned
baseline). Columns are `FEATURES`, in that order; the model stores them and refuses other columns.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from detect.baseline import event_info
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


@dataclass
class _Row:
    counts: dict[str, float] = field(default_factory=dict)
    dsts: set[str] = field(default_factory=set)
    ports: set[Any] = field(default_factory=set)
    ops: set[str] = field(default_factory=set)
    lats: list[float] = field(default_factory=list)
    events: list[Event] = field(default_factory=list)


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

    def next_close(self) -> float:
        """The capture time at which `close` would first return a row (inf when there is none)."""
        return float("inf") if self.min_b is None else (self.min_b + 1) * self.window

    def add(self, ev: Event) -> None:
        if ev.kind in SKIP:
            return
        b = int(ev.ts // self.window)
        info = event_info(ev)
        key = (b, info.src)
        r = self.rows.get(key)
        if r is None:
            r = self.rows[key] = _Row()
            if self.min_b is None or b < self.min_b:
                self.min_b = b
        c = r.counts
        f = ev.fields
        kind = ev.kind
        c["n_events"] = c.get("n_events", 0.0) + 1.0
        if kind == "flow":
            c["n_flows"] = c.get("n_flows", 0.0) + 1.0
            # a flow's totals land in the window of its first packet, so sums of bytes would swing with
            # flow length: the mean payload bytes per packet is what the row keeps
            c["_flow_bytes"] = c.get("_flow_bytes", 0.0) + (
                float(f.get("orig_bytes") or 0) + float(f.get("resp_bytes") or 0)
            )
            c["_flow_pkts"] = c.get("_flow_pkts", 0.0) + (
                float(f.get("orig_pkts") or 0) + float(f.get("resp_pkts") or 0)
            )
        elif kind == "arp":
            c["n_arp"] = c.get("n_arp", 0.0) + 1.0
            if f.get("op") == "reply":
                c["n_arp_reply"] = c.get("n_arp_reply", 0.0) + 1.0
            if f.get("gratuitous"):
                c["n_arp_gratuitous"] = c.get("n_arp_gratuitous", 0.0) + 1.0
        elif kind == "weird":
            c["n_weird"] = c.get("n_weird", 0.0) + 1.0
        else:
            c["n_transactions"] = c.get("n_transactions", 0.0) + 1.0
        ak = _ACTION_COLS.get(ev.action)
        if ak is not None:
            c[ak] = c.get(ak, 0.0) + 1.0
        if f.get("status") == "no_response":
            c["n_no_response"] = c.get("n_no_response", 0.0) + 1.0
        if f.get("exception"):
            c["n_exception"] = c.get("n_exception", 0.0) + 1.0
        r.dsts.add(info.dst)
        r.ports.add(info.sport)
        r.ops.add(info.feat_op)
        if info.broadcast_dst:
            c["n_broadcast_dst"] = c.get("n_broadcast_dst", 0.0) + 1.0
        lat = f.get("latency")
        if isinstance(lat, int | float):
            r.lats.append(float(lat))
        if self.known is not None and info.talker not in self.known:
            c["n_new_talkers"] = c.get("n_new_talkers", 0.0) + 1.0
        if len(r.events) < self.keep:
            r.events.append(ev)

    def close(self, upto: float | None = None) -> list[tuple[int, str, np.ndarray, list[Event]]]:
        """Rows of windows ending at or before `upto` (all rows when None), removed from the buffer."""
        out = []
        for key in sorted(self.rows, key=lambda k: (k[0], k[1])):
            b, src = key
            if upto is not None and (b + 1) * self.window > upto:
                continue
            r = self.rows.pop(key)
            c = dict(r.counts)
            c["n_distinct_dst"] = len(r.dsts)
            c["n_distinct_dst_ports"] = len(r.ports)
            c["n_distinct_ops"] = len(r.ops)
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
