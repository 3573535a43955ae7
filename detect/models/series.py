"""A model over per-second packet-count series (one column per vantage point and protocol).

Features per second: the counts, their sum over the last `span` seconds, and the absolute change from
the previous second, all log1p'd; a `RobustZDetector` with a fixed robust-z threshold (`z`, default 6,
chosen before any scoring), because the stretch it learns from is not known to be attack-free (the
median and MAD resist a few attacks inside it; an extreme quantile would learn them as normal).
Nothing here knows which columns exist: the caller chooses them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from detect.models import RobustZDetector


def series_features(counts: np.ndarray, span: int = 5) -> np.ndarray:
    """(seconds x columns) counts -> (seconds x 3*columns) features: counts, rolling sum, |diff|."""
    c = np.asarray(counts, dtype=float)
    if c.ndim == 1:
        c = c[:, None]
    cs = np.cumsum(np.vstack([np.zeros((1, c.shape[1])), c]), axis=0)
    lo = np.maximum(np.arange(1, len(c) + 1) - span, 0)
    roll = cs[np.arange(1, len(c) + 1)] - cs[lo]
    diff = np.abs(np.diff(c, axis=0, prepend=c[:1]))
    return np.log1p(np.hstack([c, roll, diff]))


class SeriesModel:
    """Fit on a stretch of normal seconds, flag anomalous seconds elsewhere."""

    def __init__(
        self,
        columns: Sequence[str],
        span: int = 5,
        z: float | None = 6.0,
        quantile: float = 0.001,
        margin: float = 1.0,
        min_scale: float = 0.5,
    ) -> None:
        self.columns, self.span = list(columns), span
        self.detector = RobustZDetector(quantile=quantile, min_scale=min_scale, margin=margin, z=z)

    @property
    def feature_names(self) -> list[str]:
        return (
            [*self.columns]
            + [f"{c}_sum{self.span}s" for c in self.columns]
            + [f"{c}_absdiff" for c in self.columns]
        )

    def fit(self, counts: np.ndarray) -> SeriesModel:
        self.detector.fit(series_features(counts, self.span))
        return self

    def decision(self, counts: np.ndarray) -> np.ndarray:
        """decision_function per second (< 0 anomalous)."""
        return self.detector.decision_function(series_features(counts, self.span))
