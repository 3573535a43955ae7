"""The model layer: an outlier detector over per-(window, source) feature rows (`detect.features`).

Learning collects rows; `finish_learning` fits the estimator (log1p of the counts) and calibrates its
threshold on the training rows. Protect mode closes each window once capture time has moved past it
and alerts on rows the model calls anomalous; the alert time is the window's end (when a streaming
sensor could know), and the alert lists the features furthest from normal.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from detect.baseline import Layer
from detect.features import FEATURES, WindowFeatures
from detect.models import IsolationDetector, RobustZDetector, load_model, save_model
from detect.state import make_alert
from icsight.events import Event

ESTIMATORS = {"robustz": RobustZDetector, "iforest": IsolationDetector}
MIN_ROWS = 20  # fewer training rows than this: no model (too little to calibrate)


class WindowModel(Layer):
    """Windowed anomaly model of one site."""

    name = "model"
    layer = "model"

    def __init__(
        self,
        window: float = 10.0,
        estimator: str = "robustz",
        quantile: float = 0.001,
        margin: float = 1.0,
        known_pairs: set[str] | None = None,
    ) -> None:
        self.window, self.estimator, self.quantile, self.margin = window, estimator, quantile, margin
        self.model: Any = None
        self.meta: dict[str, Any] = {}
        self.first_ts: float | None = None
        self.last_ts: float | None = None
        self._learn = WindowFeatures(window, None, keep_events=0)
        self._rows: list[np.ndarray] = []
        self._live = WindowFeatures(window, known_pairs)
        self._max_ts = float("-inf")
        self._late = float("-inf")  # = (int(_max_ts // window) - 1) * window

    def set_known_pairs(self, pairs: set[str]) -> None:
        self._live.known = set(pairs)

    # ------------------------------------------------------------------ learn
    def learn(self, ev: Event) -> None:
        if ev.kind in ("alert", "asset"):
            return
        self.first_ts = ev.ts if self.first_ts is None else min(self.first_ts, ev.ts)
        self.last_ts = ev.ts if self.last_ts is None else max(self.last_ts, ev.ts)
        self._learn.add(ev)
        if len(self._learn.rows) > 4096:
            self._rows.extend(r[2] for r in self._learn.close(ev.ts - 2 * self.window))

    def finish_learning(self) -> None:
        """Fit on every row learned so far (may be called again after more learning)."""
        self._rows.extend(r[2] for r in self._learn.close())
        if len(self._rows) < MIN_ROWS:
            return
        X = np.log1p(np.vstack(self._rows))
        self.fit(X, (self.first_ts or 0.0, self.last_ts or 0.0))

    def fit(self, X: np.ndarray, window: tuple[float, float]) -> None:
        """Fit the estimator on log1p feature rows of normal traffic."""
        cls = ESTIMATORS[self.estimator]
        self.model = cls(quantile=self.quantile, margin=self.margin).fit(X)
        self.meta = {
            "feature_names": list(FEATURES),
            "training_window": list(window),
            "rows": len(X),
            "window_s": self.window,
            "estimator": self.estimator,
        }

    def save(self, directory: Path) -> None:
        if self.model is not None:
            save_model(
                directory / "window.joblib",
                self.model,
                FEATURES,
                tuple(self.meta["training_window"]),
                {"rows": self.meta["rows"], "window_s": self.window, "estimator": self.estimator},
            )

    def load(self, directory: Path) -> bool:
        """Load the saved model if there is one. :raise ModelMismatch: it does not fit this version."""
        p = directory / "window.joblib"
        if not p.exists():
            return False
        self.model, self.meta = load_model(p, FEATURES)
        self.window = float(self.meta.get("window_s", self.window))
        self._live.window = self.window
        if self._max_ts > float("-inf"):
            self._late = (int(self._max_ts // self.window) - 1) * self.window
        return True

    # ------------------------------------------------------------------ protect
    def check(self, ev: Event) -> list[Event]:
        if self.model is None or ev.kind in ("alert", "asset"):
            return []
        out: list[Event] = []
        ts, w, live = ev.ts, self.window, self._live
        if ts > self._max_ts:
            self._max_ts = ts
            b = int(ts // w)
            self._late = (b - 1) * w  # events before the window preceding the latest one's drop
            # close() would hand back nothing before the earliest open window has ended
            if live.min_b is not None and ts >= (live.min_b + 1) * live.window and b * w > 0:
                out = self._score(live.close(ts))
            if ts >= self._late:
                live.add(ev, b if live.window == w else None)
        elif ts >= self._late:  # late events of past windows drop
            live.add(ev)
        return out

    def flush(self) -> list[Event]:
        if self.model is None:
            return []
        return self._score(self._live.close())

    def _score(self, rows: list) -> list[Event]:
        if not rows:
            return []
        X = np.log1p(np.vstack([r[2] for r in rows]))
        d = self.model.decision_function(X)
        out = []
        names = list(FEATURES)
        for (b, src, x, evs), xi, di in zip(rows, X, d, strict=True):
            if di >= 0 or not evs:
                continue
            top = []
            if hasattr(self.model, "explain"):
                top = [
                    (n, float(np.expm1(v)), float(np.expm1(c))) for n, v, c in self.model.explain(xi, names)
                ]
            else:
                top = [(n, float(x[i]), 0.0) for i, n in sorted(enumerate(names), key=lambda t: -x[t[0]])[:3]]
            feats_en = ", ".join(f"{n}={v:g} (normal {c:g})" for n, v, c in top)
            feats_zh = "，".join(f"{n}={v:g}（正常 {c:g}）" for n, v, c in top)
            end = (b + 1) * self.window
            score = float(di)
            out.append(
                make_alert(
                    detector=f"model.window.{self.estimator}",
                    layer="model",
                    title_zh="流量行为异常（模型）",
                    title_en="Anomalous traffic window (model)",
                    severity="medium",
                    reason_zh=f"{src} 在 {self.window:g} 秒窗口内的行为偏离学习模型"
                    f"（分数 {score:.3f} < 0）：{feats_zh}",
                    reason_en=f"{src}: {self.window:g} s window deviates from the learned model "
                    f"(decision {score:.3f} < 0): {feats_en}",
                    evidence=evs,
                    key=f"model.window:{src}",
                    ts=end,
                    techniques=("T0846",),
                    extra={
                        "score": score,
                        "window": [b * self.window, end],
                        "features": {n: v for n, v, _ in top},
                    },
                )
            )
        return out
