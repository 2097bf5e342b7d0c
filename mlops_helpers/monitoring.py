"""Drift statistics against a training reference, and the retraining trigger.

Per numeric feature: the population stability index (PSI, on the reference's deciles)
and the two-sample Kolmogorov-Smirnov statistic; per categorical feature: PSI on the
category shares. A feature drifts when its PSI crosses ``psi_threshold`` (0.2 is the
usual "significant shift" line; 0.1 to 0.2 is "watch"). Retraining triggers when any
feature drifts.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import ks_2samp

from mlops_helpers.training import CATEGORICAL_FEATURES, NUMERIC_FEATURES

EPS = 1e-4


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index of two share vectors (each summing to 1)."""
    e = np.clip(np.asarray(expected, dtype=float), EPS, None)
    a = np.clip(np.asarray(actual, dtype=float), EPS, None)
    return float(np.sum((a - e) * np.log(a / e)))


def numeric_psi(reference: pd.Series, current: pd.Series, bins: int = 10) -> float:
    """PSI of a numeric feature on the reference's quantile bins."""
    ref = reference.dropna().to_numpy(dtype=float)
    cur = current.dropna().to_numpy(dtype=float)
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)))
    if len(edges) < 3:  # a (nearly) constant reference: compare its values directly
        return categorical_psi(reference.astype(str), current.astype(str))
    edges[0], edges[-1] = -np.inf, np.inf
    ref_share = np.histogram(ref, edges)[0] / max(len(ref), 1)
    cur_share = np.histogram(cur, edges)[0] / max(len(cur), 1)
    return psi(ref_share, cur_share)


def categorical_psi(reference: pd.Series, current: pd.Series) -> float:
    """PSI of a categorical feature on the union of categories seen."""
    ref = reference.value_counts(normalize=True)
    cur = current.value_counts(normalize=True)
    cats = ref.index.union(cur.index)
    return psi(
        ref.reindex(cats, fill_value=0).to_numpy(), cur.reindex(cats, fill_value=0).to_numpy()
    )


@dataclass(frozen=True)
class DriftThresholds:
    """When a feature counts as drifted."""

    psi_threshold: float = 0.2


def drift_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    thresholds: DriftThresholds | None = None,
) -> pd.DataFrame:
    """One row per feature: kind, PSI, KS statistic and p-value (numeric), drifted."""
    limits = thresholds or DriftThresholds()
    missing = [c for c in (*NUMERIC_FEATURES, *CATEGORICAL_FEATURES) if c not in current]
    if missing:
        raise ValueError(
            f"current data lacks feature columns {missing}; pass a table published by "
            "mlops_helpers.etl (the same columns the model was trained on)"
        )
    if current.empty or reference.empty:
        raise ValueError(
            "drift needs rows on both sides: the reference or the current data is empty"
        )
    rows = []
    for name in NUMERIC_FEATURES:
        ks = ks_2samp(reference[name].dropna(), current[name].dropna())
        value = numeric_psi(reference[name], current[name])
        rows.append(("numeric", name, value, float(ks.statistic), float(ks.pvalue)))
    for name in CATEGORICAL_FEATURES:
        rows.append(
            ("categorical", name, categorical_psi(reference[name], current[name]), np.nan, np.nan)
        )
    report = pd.DataFrame(rows, columns=["kind", "feature", "psi", "ks_stat", "ks_pvalue"])
    report["drifted"] = report["psi"] > limits.psi_threshold
    return report.set_index("feature")


@dataclass(frozen=True)
class Trigger:
    """The retraining decision and the features that caused it."""

    retrain: bool
    drifted: tuple[str, ...]
    max_psi: float

    def reason(self) -> str:
        """One line a log or a registry tag can carry."""
        if not self.retrain:
            return f"no feature drifted (max PSI {self.max_psi:.3f})"
        return f"drift in {', '.join(self.drifted)} (max PSI {self.max_psi:.3f})"


def retrain_trigger(report: pd.DataFrame) -> Trigger:
    """Retrain when any feature of ``report`` drifted."""
    drifted = tuple(report.index[report["drifted"]])
    return Trigger(bool(drifted), drifted, float(report["psi"].max()))
