"""Layer 4, anomaly models (scikit-learn) over windowed features, and their persistence.

Estimators follow the scikit-learn outlier-detector contract (style.md §5): parameters stored as given
in `__init__`, learned attributes end in `_`, `score_samples` is higher-is-more-normal,
`decision_function = score_samples - offset_` (< 0 anomalous), `predict` gives -1 / 1. The threshold
`offset_` is the `quantile` of the training scores, i.e. the false-alarm rate the model is calibrated to
on normal data (a quantile of 0.001 means about 1 training row in 1000 would alert).

`save_model` writes the estimator with its feature names, training window and library versions;
`load_model` refuses anything that does not match (`ModelMismatch`).
"""

from __future__ import annotations

import json
import platform
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import joblib
import numpy as np
import sklearn
from sklearn.base import BaseEstimator, OutlierMixin
from sklearn.ensemble import IsolationForest
from sklearn.utils.validation import check_is_fitted, validate_data

from detect.state import StateError, save_json

FORMAT = 1


class ModelMismatch(StateError):
    """A saved model does not fit: other feature names, library versions or format."""


class RobustZDetector(OutlierMixin, BaseEstimator):
    """Per-feature robust z-scores: score = -max_j |x_j - median_j| / scale_j (higher = more normal).

    `scale_j` is 1.4826 * MAD of the training column, floored at `min_scale` (count features of a quiet
    network have MAD 0: without the floor any change would be infinitely anomalous). `quantile` is the
    calibrated false-alarm rate on the training data. With `z` set, the threshold is that many robust
    standard deviations instead (for training data that may hold anomalies: the median and MAD are robust
    to them, an extreme quantile is not).
    """

    def __init__(
        self, quantile: float = 0.001, min_scale: float = 1.0, margin: float = 0.0, z: float | None = None
    ) -> None:
        self.quantile = quantile
        self.min_scale = min_scale
        self.margin = margin
        self.z = z

    def fit(self, X, y=None):
        X = validate_data(self, X, dtype=np.float64)
        self.center_ = np.median(X, axis=0)
        mad = np.median(np.abs(X - self.center_), axis=0) * 1.4826
        self.scale_ = np.maximum(mad, self.min_scale)
        if self.z is not None:
            self.offset_ = -float(self.z)
        else:
            self.offset_ = float(np.quantile(self._raw(X), self.quantile)) - self.margin
        return self

    def _raw(self, X: np.ndarray) -> np.ndarray:
        return -np.max(np.abs(X - self.center_) / self.scale_, axis=1)

    def score_samples(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return self._raw(X)

    def decision_function(self, X):
        return self.score_samples(X) - self.offset_

    def predict(self, X):
        return np.where(self.decision_function(X) < 0, -1, 1)

    def explain(self, x: np.ndarray, names: Sequence[str], top: int = 3) -> list[tuple[str, float, float]]:
        """The features furthest from normal for one row: (name, value, learned median)."""
        z = np.abs(np.asarray(x, dtype=float) - self.center_) / self.scale_
        idx = np.argsort(-z)[:top]
        return [(names[i], float(x[i]), float(self.center_[i])) for i in idx if z[i] > 0]


class IsolationDetector(OutlierMixin, BaseEstimator):
    """IsolationForest whose threshold is the `quantile` of its training scores (not `contamination`).

    Training rows are deduplicated-weighted as given; `random_state` fixes the trees.
    """

    def __init__(
        self,
        n_estimators: int = 100,
        quantile: float = 0.001,
        margin: float = 0.0,
        random_state: int | None = 0,
    ) -> None:
        self.n_estimators = n_estimators
        self.quantile = quantile
        self.margin = margin
        self.random_state = random_state

    def fit(self, X, y=None):
        X = validate_data(self, X, dtype=np.float64)
        self.forest_ = IsolationForest(n_estimators=self.n_estimators, random_state=self.random_state).fit(X)
        self.offset_ = float(np.quantile(self.forest_.score_samples(X), self.quantile)) - self.margin
        return self

    def score_samples(self, X):
        check_is_fitted(self)
        X = validate_data(self, X, dtype=np.float64, reset=False)
        return self.forest_.score_samples(X)

    def decision_function(self, X):
        return self.score_samples(X) - self.offset_

    def predict(self, X):
        return np.where(self.decision_function(X) < 0, -1, 1)


def versions() -> dict[str, str]:
    """The library versions a model file is tied to."""
    return {
        "sklearn": sklearn.__version__,
        "numpy": np.__version__,
        "joblib": joblib.__version__,
        "python": platform.python_version(),
    }


def save_model(
    path: Path,
    model: Any,
    feature_names: Sequence[str],
    window: tuple[float, float],
    extra: dict[str, Any] | None = None,
) -> None:
    """Write `path` (joblib) and `path.with_suffix('.json')` (metadata: features, window, versions)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    meta = {
        "format": FORMAT,
        "class": type(model).__name__,
        "feature_names": list(feature_names),
        "training_window": list(window),
        "versions": versions(),
        "params": model.get_params(),
        **(extra or {}),
    }
    tmp = path.with_suffix(".joblib.tmp")
    joblib.dump({"model": model, "meta": meta}, tmp)
    tmp.replace(path)
    save_json(path.with_suffix(".json"), meta)


def load_model(path: Path, feature_names: Sequence[str] | None = None) -> tuple[Any, dict[str, Any]]:
    """The model and its metadata. :raise ModelMismatch: versions, format or feature names differ."""
    meta_path = path.with_suffix(".json")
    try:
        meta = json.loads(meta_path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise ModelMismatch(f"{meta_path}: no readable model metadata: {e}") from e
    if meta.get("format") != FORMAT:
        raise ModelMismatch(
            f"{path}: model format {meta.get('format')} != {FORMAT}; retrain it (icsight detect learn)"
        )
    have = versions()
    for lib in ("sklearn", "numpy"):
        if meta.get("versions", {}).get(lib) != have[lib]:
            raise ModelMismatch(
                f"{path}: trained with {lib} {meta.get('versions', {}).get(lib)}, this is "
                f"{have[lib]}; retrain it (icsight detect learn)"
            )
    if feature_names is not None and list(feature_names) != meta.get("feature_names"):
        raise ModelMismatch(
            f"{path}: trained on features {meta.get('feature_names')}, expected "
            f"{list(feature_names)}; retrain it (icsight detect learn)"
        )
    obj = joblib.load(path)
    return obj["model"], meta
