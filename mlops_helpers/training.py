"""Features, model, data fingerprint, and a reproducible fit and evaluation.

Same data (by fingerprint) + same parameters + same seed -> identical metrics, to the
last bit: the split is seeded, rows are put in a canonical order first, and the model
is deterministic given its ``random_state``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from sklearn.compose import ColumnTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, brier_score_loss, log_loss, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import OneHotEncoder, StandardScaler

NUMERIC_FEATURES = (
    "ad_width",
    "ad_height",
    "page_load_ms",
    "scroll_depth",
    "time_on_page_s",
    "hour",
)
CATEGORICAL_FEATURES = ("device", "site_category", "ad_format", "position")
FEATURES = NUMERIC_FEATURES + CATEGORICAL_FEATURES
TARGET = "viewable"


@dataclass(frozen=True)
class TrainResult:
    """A fitted model with the evidence needed to reproduce it."""

    model: Pipeline
    metrics: dict[str, float]
    params: dict[str, float | int]
    seed: int
    data_fingerprint: str
    n_train: int
    n_test: int
    test_frame: pd.DataFrame = field(repr=False)
    data_days: tuple[str, ...] = ()  # first and last day of the data (its ``ts``), if it has one


def check_training_frame(df: pd.DataFrame) -> None:
    """Raise a clear error when a column the model needs is missing or there is too little data."""
    missing = [c for c in (*FEATURES, TARGET) if c not in df.columns]
    if missing:
        raise ValueError(
            f"training data lacks columns {missing}; train on partitions published by "
            "mlops_helpers.etl, which adds them"
        )
    if len(df) < 20 or df[TARGET].nunique() < 2:
        raise ValueError(
            f"training data has {len(df)} rows and {df[TARGET].nunique()} label values; "
            "need at least 20 rows and both classes: generate more rows or days"
        )


def canonical(df: pd.DataFrame) -> pd.DataFrame:
    """Rows in a fixed order and only the model's columns, so order of arrival cannot matter."""
    keep = ["impression_id", *FEATURES, TARGET] if "impression_id" in df else [*FEATURES, TARGET]
    return df.loc[:, keep].sort_values(keep[0], kind="stable", ignore_index=True)


def data_fingerprint(df: pd.DataFrame) -> str:
    """A SHA-256 of the training table's content (values, columns and dtypes)."""
    frame = canonical(df)
    digest = hashlib.sha256()
    digest.update("|".join(f"{c}:{t}" for c, t in frame.dtypes.astype(str).items()).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()


def build_model(C: float = 1.0, max_iter: int = 200, seed: int = 0) -> Pipeline:
    """Scale numbers, one-hot the categories, then a logistic regression."""
    features = ColumnTransformer(
        [
            ("num", StandardScaler(), list(NUMERIC_FEATURES)),
            ("cat", OneHotEncoder(handle_unknown="ignore"), list(CATEGORICAL_FEATURES)),
        ]
    )
    return Pipeline(
        [
            ("features", features),
            ("model", LogisticRegression(C=C, max_iter=max_iter, random_state=seed)),
        ]
    )


def evaluate(model: Pipeline, df: pd.DataFrame) -> dict[str, float]:
    """ROC AUC, accuracy, log loss and Brier score on ``df``."""
    return metrics(df[TARGET].to_numpy(), predict(model, df))


def predict(model: Pipeline, df: pd.DataFrame) -> np.ndarray:
    """The model's probability that each row of ``df`` is viewable."""
    return model.predict_proba(df.loc[:, list(FEATURES)])[:, 1]


def metrics(y: np.ndarray, proba: np.ndarray) -> dict[str, float]:
    """ROC AUC, accuracy, log loss and Brier score of probabilities ``proba`` for labels ``y``."""
    return {
        "roc_auc": float(roc_auc_score(y, proba)),
        "accuracy": float(accuracy_score(y, proba >= 0.5)),
        "log_loss": float(log_loss(y, proba, labels=[0, 1])),
        "brier": float(brier_score_loss(y, proba)),
    }


def fit_and_evaluate(
    df: pd.DataFrame,
    seed: int,
    C: float = 1.0,
    max_iter: int = 200,
    test_fraction: float = 0.25,
) -> TrainResult:
    """Split with ``seed``, fit, evaluate on the held-out part; deterministic."""
    check_training_frame(df)
    frame = canonical(df)
    train, test = train_test_split(
        frame, test_size=test_fraction, random_state=seed, stratify=frame[TARGET]
    )
    model = build_model(C, max_iter, seed).fit(train.loc[:, list(FEATURES)], train[TARGET])
    return TrainResult(
        model=model,
        metrics=evaluate(model, test),
        params={"C": C, "max_iter": max_iter, "test_fraction": test_fraction},
        seed=seed,
        data_fingerprint=data_fingerprint(df),
        n_train=len(train),
        n_test=len(test),
        test_frame=test.reset_index(drop=True),
        data_days=_days(df),
    )


def _days(df: pd.DataFrame) -> tuple[str, ...]:
    """``(first, last)`` ISO day of ``df["ts"]``; empty without timestamps."""
    if "ts" not in df or df["ts"].isna().all():
        return ()
    ts = pd.to_datetime(df["ts"])
    return (ts.min().date().isoformat(), ts.max().date().isoformat())


def predict_proba(model: Pipeline, df: pd.DataFrame) -> np.ndarray:
    """Probability of 'viewable' for each row of ``df``."""
    return model.predict_proba(df.loc[:, list(FEATURES)])[:, 1]
