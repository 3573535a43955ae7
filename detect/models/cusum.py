"""Two-sided CUSUM (Page 1954) over robust-standardised series: small sustained shifts, not single spikes.

A window model flags a second whose features are far from normal; a low-rate flood adds a few packets per
second at one end of a link, each second unremarkable on its own. CUSUM accumulates the excess: with the
series standardised against its learned median and MAD (floor `min_scale`), S+ = max(0, S+ + z - k) and
S- = max(0, S- - z - k); an alarm when either exceeds `h`, after which both restart from 0. `k` is the
drift allowance (shifts smaller than k robust units per sample are ignored), `h` the evidence needed.
"""

from __future__ import annotations

import numpy as np


class Cusum:
    """Per-column two-sided CUSUM; `fit` learns the centre and scale, `alarms` flags samples."""

    def __init__(self, k: float = 1.0, h: float = 20.0, min_scale: float = 0.5) -> None:
        self.k, self.h, self.min_scale = k, h, min_scale

    def fit(self, X: np.ndarray) -> Cusum:
        X = np.asarray(X, dtype=float).reshape(len(X), -1)
        self.center_ = np.median(X, axis=0)
        self.scale_ = np.maximum(np.median(np.abs(X - self.center_), axis=0) * 1.4826, self.min_scale)
        return self

    def alarms(self, X: np.ndarray) -> np.ndarray:
        """Boolean per row: some column's CUSUM crossed `h` at that row."""
        Z = (np.asarray(X, dtype=float).reshape(len(X), -1) - self.center_) / self.scale_
        out = np.zeros(len(Z), dtype=bool)
        k, h = self.k, self.h
        for c in range(Z.shape[1]):
            col = Z[:, c].tolist()
            sp = sn = 0.0
            for t, z in enumerate(col):
                sp = sp + z - k
                sn = sn - z - k
                if sp < 0.0:
                    sp = 0.0
                if sn < 0.0:
                    sn = 0.0
                if sp > h or sn > h:
                    out[t] = True
                    sp = sn = 0.0
        return out
