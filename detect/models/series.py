"""A model over per-second packet-count series (one column per vantage point and protocol).

Features per second: the counts, their sum over the last `span` seconds, and the absolute change from
the previous second, all log1p'd. With `pairs` (two columns that see the same traffic from both ends of
a link, e.g. the master's and the outstation's DNP3 counts) also the difference of each pair summed over
the last `pair_spans` seconds (signed log1p): on a healthy link both ends count the same packets, so a
difference means packets one end sent or received that the other end never saw (an impostor answering in
the outstation's place, injected or flooded packets reaching only one side).

The detector is a `RobustZDetector` with a fixed robust-z threshold (`z`, default 6, chosen before any
scoring), because the stretch it learns from is not known to be attack-free (the median and MAD resist a
few attacks inside it; an extreme quantile would learn them as normal). Nothing here knows which columns
exist: the caller chooses them and the pairs.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from detect.models import RobustZDetector


def _rolling_sum(c: np.ndarray, span: int) -> np.ndarray:
    """Sum of each column over the last `span` rows (fewer at the start)."""
    cs = np.cumsum(np.vstack([np.zeros((1, c.shape[1])), c]), axis=0)
    lo = np.maximum(np.arange(1, len(c) + 1) - span, 0)
    return cs[np.arange(1, len(c) + 1)] - cs[lo]


def series_features(
    counts: np.ndarray,
    span: int = 5,
    pairs: Sequence[tuple[int, int]] = (),
    pair_spans: Sequence[int] = (5, 30),
    pair_log: bool = True,
) -> np.ndarray:
    """(seconds x columns) counts -> features: counts, rolling sum, |diff| (3 per column), then for each
    pair (i, j) and each of `pair_spans` sum(counts[:, i] - counts[:, j]), signed-log1p'd (`pair_log`)
    or raw (then a robust z of 6 with the MAD floor 0.5 means a difference of 3 packets)."""
    c = np.asarray(counts, dtype=float)
    if c.ndim == 1:
        c = c[:, None]
    roll = _rolling_sum(c, span)
    diff = np.abs(np.diff(c, axis=0, prepend=c[:1]))
    parts = [np.log1p(np.hstack([c, roll, diff]))]
    if pairs:
        d = c[:, [i for i, _ in pairs]] - c[:, [j for _, j in pairs]]
        for s in pair_spans:
            r = _rolling_sum(d, s)
            parts.append(np.sign(r) * np.log1p(np.abs(r)) if pair_log else r)
    return np.hstack(parts)


class SeriesModel:
    """Fit on a stretch of normal seconds, flag anomalous seconds elsewhere.

    `pairs`: (column, column) names seeing the same traffic from the two ends of a link; `pair_log`:
    their differences log1p'd (default: robust to bursts) or raw (more sensitive to a few packets).
    """

    def __init__(
        self,
        columns: Sequence[str],
        span: int = 5,
        z: float | None = 6.0,
        quantile: float = 0.001,
        margin: float = 1.0,
        min_scale: float = 0.5,
        pairs: Sequence[tuple[str, str]] = (),
        pair_spans: Sequence[int] = (5, 30),
        pair_log: bool = True,
    ) -> None:
        self.columns, self.span = list(columns), span
        self.pairs, self.pair_spans, self.pair_log = [tuple(p) for p in pairs], tuple(pair_spans), pair_log
        self._pair_idx = [(self.columns.index(a), self.columns.index(b)) for a, b in self.pairs]
        self.detector = RobustZDetector(quantile=quantile, min_scale=min_scale, margin=margin, z=z)

    @property
    def feature_names(self) -> list[str]:
        return (
            [*self.columns]
            + [f"{c}_sum{self.span}s" for c in self.columns]
            + [f"{c}_absdiff" for c in self.columns]
            + [f"{a}-{b}_sum{s}s" for s in self.pair_spans for a, b in self.pairs]
        )

    def features(self, counts: np.ndarray) -> np.ndarray:
        return series_features(counts, self.span, self._pair_idx, self.pair_spans, self.pair_log)

    def fit(self, counts: np.ndarray) -> SeriesModel:
        self.detector.fit(self.features(counts))
        return self

    def decision(self, counts: np.ndarray) -> np.ndarray:
        """decision_function per second (< 0 anomalous)."""
        return self.detector.decision_function(self.features(counts))

    def explain(self, counts_row_features: np.ndarray, top: int = 3) -> list[tuple[str, float, float]]:
        """The features furthest from normal for one feature row (see `features`)."""
        return self.detector.explain(counts_row_features, self.feature_names, top)
