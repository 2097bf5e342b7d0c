"""Drift statistics against a training reference, and the retraining trigger.

Per numeric feature: the population stability index (PSI, on the reference's deciles)
and the two-sample Kolmogorov-Smirnov statistic; per categorical feature: PSI on the
category shares. A feature drifts when its PSI crosses its threshold: ``psi_threshold``
(0.2 is the usual "significant shift" line; 0.1 to 0.2 is "watch"), or, on a day too small
for that line, the PSI that sampling noise alone reaches on a day of that size (see
:func:`noise_psi`). Retraining triggers when any feature drifts.

Monitoring runs per day: ``daily_drift`` and ``daily_quality`` score each new labelled day
against the reference and the champion, and ``retrain_if_triggered`` is the retraining job:
nothing without a trigger; with one, a challenger that replaces the champion only through
the registry's gate.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.stats import ks_2samp

from mlops_helpers import registry, tracking
from mlops_helpers.parameters import ParameterError
from mlops_helpers.training import (
    CATEGORICAL_FEATURES,
    NUMERIC_FEATURES,
    evaluate,
    fit_and_evaluate,
)

EPS = 1e-4
# Fewer rows a day than this and noise_psi is so high that only an enormous shift would show.
MIN_ROWS_PER_DAY = 100
# Per feature, so that over a day's ten features an unchanged day raises an alarm about once
# in 100 days (0.01 / 10, Bonferroni); drawn often enough to estimate that tail.
NOISE_QUANTILE = 0.999
NOISE_DRAWS = 10_000


def psi(expected: np.ndarray, actual: np.ndarray) -> float:
    """Population stability index of two share vectors (each summing to 1)."""
    e = np.clip(np.asarray(expected, dtype=float), EPS, None)
    a = np.clip(np.asarray(actual, dtype=float), EPS, None)
    return float(np.sum((a - e) * np.log(a / e)))


def _edges(ref: np.ndarray, bins: int) -> np.ndarray | None:
    """The reference's quantile bin edges, open at both ends; None for a (nearly) constant
    reference, whose values are then compared as categories."""
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)))
    if len(edges) < 3:
        return None
    edges[0], edges[-1] = -np.inf, np.inf
    return edges


def numeric_psi(reference: pd.Series, current: pd.Series, bins: int = 10) -> float:
    """PSI of a numeric feature on the reference's quantile bins."""
    ref = reference.dropna().to_numpy(dtype=float)
    cur = current.dropna().to_numpy(dtype=float)
    edges = _edges(ref, bins)
    if edges is None:
        return categorical_psi(reference.astype(str), current.astype(str))
    ref_share = np.histogram(ref, edges)[0] / max(len(ref), 1)
    cur_share = np.histogram(cur, edges)[0] / max(len(cur), 1)
    return psi(ref_share, cur_share)


def _shares(reference: pd.Series, bins: int = 10) -> np.ndarray:
    """The reference's shares over the bins :func:`numeric_psi` or :func:`categorical_psi`
    cuts it into (a numeric feature's deciles, a categorical feature's categories)."""
    values = reference.dropna()
    if values.dtype.kind in "biuf":
        ref = values.to_numpy(dtype=float)
        edges = _edges(ref, bins)
        if edges is not None:
            return np.histogram(ref, edges)[0] / max(len(ref), 1)
        values = values.astype(str)
    return values.value_counts(normalize=True).to_numpy()


def noise_psi(reference: pd.Series, n_current: int, seed: int = 0) -> float:
    """The PSI that sampling noise alone reaches, at :data:`NOISE_QUANTILE`, between a
    reference of ``len(reference)`` rows and an unchanged day of ``n_current`` rows.

    Simulated, not assumed: both sides are drawn from the reference's own bin shares
    (multinomial counts, :data:`NOISE_DRAWS` times, seeded), then scored as PSI scores them,
    empty bins included (they, not the chi-squared approximation, dominate small days).
    Grows as the day shrinks, roughly as 1/n; above the usual 0.2 only on days of about 150
    rows or fewer (against a training window of 6,000).
    """
    shares = tuple(_shares(reference).tolist())
    return _simulated_noise(shares, max(int(reference.notna().sum()), 1), max(n_current, 1), seed)


@functools.lru_cache(maxsize=256)
def _simulated_noise(shares: tuple[float, ...], n_ref: int, n_cur: int, seed: int) -> float:
    """:func:`noise_psi`'s simulation; the same for every day of the same size against the
    same reference, so a week of days pays for it once per feature."""
    rng = np.random.default_rng(seed)
    ref = rng.multinomial(n_ref, shares, size=NOISE_DRAWS) / n_ref
    cur = rng.multinomial(n_cur, shares, size=NOISE_DRAWS) / n_cur
    e, a = np.clip(ref, EPS, None), np.clip(cur, EPS, None)
    return float(np.quantile(np.sum((a - e) * np.log(a / e), axis=1), NOISE_QUANTILE))


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
    """When a feature counts as drifted: its PSI above ``psi_threshold``, or above what
    sampling noise reaches on a day of its size when that is higher (``size_aware``)."""

    psi_threshold: float = 0.2
    size_aware: bool = True


def drift_report(
    reference: pd.DataFrame,
    current: pd.DataFrame,
    thresholds: DriftThresholds | None = None,
) -> pd.DataFrame:
    """One row per feature: kind, PSI, KS statistic and p-value (numeric), the threshold
    the PSI is held to (see :class:`DriftThresholds`), drifted."""
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
        with warnings.catch_warnings():
            # On small samples scipy falls back from the exact to the asymptotic p-value, and
            # says so on stderr; the fallback is what we want.
            warnings.filterwarnings("ignore", message="ks_2samp: Exact calculation unsuccessful")
            ks = ks_2samp(reference[name].dropna(), current[name].dropna())
        value = numeric_psi(reference[name], current[name])
        rows.append(("numeric", name, value, float(ks.statistic), float(ks.pvalue)))
    for name in CATEGORICAL_FEATURES:
        rows.append(
            ("categorical", name, categorical_psi(reference[name], current[name]), np.nan, np.nan)
        )
    report = pd.DataFrame(rows, columns=["kind", "feature", "psi", "ks_stat", "ks_pvalue"])
    report["threshold"] = [
        max(limits.psi_threshold, noise_psi(reference[f], len(current)))
        if limits.size_aware
        else limits.psi_threshold
        for f in report["feature"]
    ]
    report["drifted"] = report["psi"] > report["threshold"]
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
    """Retrain when any feature of ``report`` drifted.

    ``report`` is one day's :func:`drift_report`, or a :func:`daily_drift` table, where any
    drifted day triggers; features are named once, in the order they first drifted.
    """
    flagged = report.index[report["drifted"].to_numpy()].get_level_values(-1)
    drifted = tuple(dict.fromkeys(flagged))
    return Trigger(bool(drifted), drifted, float(report["psi"].max()))


def check_rows_per_day(n_rows: int) -> int:
    """Return ``n_rows`` if days that size can be monitored; else raise ParameterError."""
    if n_rows < MIN_ROWS_PER_DAY:
        raise ParameterError(
            f"parameter n_rows must be at least {MIN_ROWS_PER_DAY} to monitor drift, got "
            f"{n_rows}: on smaller days sampling noise alone reaches a PSI that hides any "
            "real shift"
        )
    return n_rows


def daily_drift(
    reference: pd.DataFrame,
    days: Mapping[str, pd.DataFrame],
    thresholds: DriftThresholds | None = None,
) -> pd.DataFrame:
    """:func:`drift_report` of each day in ``days`` (day -> table), stacked on a (day, feature) index."""
    if not days:
        raise ValueError("no days to monitor: pass at least one day's published table")
    reports = {day: drift_report(reference, table, thresholds) for day, table in days.items()}
    return pd.concat(reports, names=["day"])


def daily_summary(daily: pd.DataFrame) -> pd.DataFrame:
    """One row per day of a :func:`daily_drift` table: worst PSI and feature, what drifted."""
    rows = {}
    for day, report in daily.groupby(level="day", sort=False):
        trigger = retrain_trigger(report)
        rows[day] = {
            "max_psi": trigger.max_psi,
            "worst_feature": report["psi"].idxmax()[-1],
            "drifted": ", ".join(trigger.drifted) or "-",
            "retrain": trigger.retrain,
        }
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("day")


MAX_AUC_DROP = 0.03  # a day's ROC AUC this far below the reference is a real loss ...
MIN_LABELS = 100  # ... when at least this many of its labels have matured


def drift_and_performance(
    summary: pd.DataFrame,
    performance: pd.DataFrame,
    reference_auc: float,
    max_auc_drop: float = MAX_AUC_DROP,
    min_labels: int = MIN_LABELS,
) -> pd.DataFrame:
    """Per day, the retraining decision from drift *and* measured performance.

    ``summary`` is :func:`daily_summary` (day -> drifted features), ``performance`` has per
    day the matured labels and ROC AUC with its interval (``scoring.day_performance``), and
    ``reference_auc`` is what the model reached where it was gated. A day's performance has
    dropped when its whole ROC AUC interval lies more than ``max_auc_drop`` below the
    reference. Decisions:

    - ``retrain``: performance dropped (with input drift, or without it: concept drift,
      which no input statistic can see);
    - ``no retrain``: performance holds on matured labels, drift or not (inputs that moved
      while the model still ranks them well are worth a look, not a retrain);
    - ``wait for labels``: inputs drifted and too few labels have matured to say whether
      it matters: decide when they arrive;
    - ``no retrain`` also when nothing drifted and nothing is measured yet.
    """
    rows = {}
    for day in summary.index:
        drifted = summary.loc[day, "drifted"]
        drifted = "" if drifted == "-" else drifted
        perf = performance.loc[day] if day in performance.index else None
        matured = 0 if perf is None else int(perf["matured"])
        measured = perf is not None and matured >= min_labels and pd.notna(perf["roc_auc"])
        dropped = measured and perf["high"] < reference_auc - max_auc_drop
        if dropped:
            why = "input drift and" if drifted else "no input drift (concept drift), but"
            decision, reason = "retrain", f"{why} ROC AUC surely below the reference"
        elif measured:
            decision = "no retrain"
            reason = (
                "inputs moved, the model still performs: drift alone is a false alarm"
                if drifted
                else "calm, and performance holds"
            )
        elif drifted:
            decision, reason = "wait for labels", f"drift, {matured} labels matured so far"
        else:
            decision, reason = "no retrain", "calm; performance not measured yet"
        rows[day] = {
            "drifted": drifted or "-",
            "matured": matured,
            "roc_auc": perf["roc_auc"] if measured else np.nan,
            "decision": decision,
            "reason": reason,
        }
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("day")


def daily_quality(model, days: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """The model's metrics (ROC AUC, accuracy, log loss, Brier) on each labelled day of ``days``."""
    scores = {day: evaluate(model, table) for day, table in days.items()}
    return pd.DataFrame.from_dict(scores, orient="index").rename_axis("day")


@dataclass
class Retraining:
    """What the retraining job did: nothing (no trigger), or a challenger and its gate decision."""

    trigger: Trigger
    version: str | None = None
    gate: registry.GateResult | None = None
    promoted: bool = False

    @property
    def retrained(self) -> bool:
        """Whether a challenger was trained and registered."""
        return self.version is not None

    def summary(self) -> str:
        """One line: nothing retrained and why, or the challenger's gate decision."""
        if not self.retrained:
            return f"nothing retrained: {self.trigger.reason()}"
        if self.promoted:
            return f"version {self.version} passed the gate and is champion ({self.gate.summary()})"
        return f"version {self.version} blocked by the gate, champion unchanged ({self.gate.summary()})"


def retrain_if_triggered(
    trigger: Trigger,
    train_frame: pd.DataFrame,
    gate_frame: pd.DataFrame,
    model_name: str,
    seed: int,
    thresholds: registry.GateThresholds | None = None,
    run_name: str = "retrained on drift",
    tags: dict[str, str] | None = None,
) -> Retraining:
    """The retraining job: when ``trigger`` fired, fit on ``train_frame``, log and register a
    challenger, gate it against the champion on ``gate_frame``, promote it only if it passed.

    Without a trigger nothing is trained, logged or registered. Needs a configured tracking
    store (``tracking.configure_tracking``) only when it retrains.
    """
    if not trigger.retrain:
        return Retraining(trigger)
    result = fit_and_evaluate(train_frame, seed)
    run_id = tracking.log_training(
        result, run_name, tags={"trigger": trigger.reason(), **(tags or {})}
    )
    version = registry.register(run_id, model_name, reason=f"retrained: {trigger.reason()}")
    gate = registry.gate(model_name, version, gate_frame, thresholds)
    if gate.passed:
        registry.promote(
            model_name,
            version,
            f"retrained on drift, passed the gate: {gate.summary()}",
            require_smoke=False,  # this lesson's job gates only; serving.deploy also serves
        )
    return Retraining(trigger, version, gate, promoted=gate.passed)
