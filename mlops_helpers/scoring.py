"""Batch scoring with late labels: what production does with a model after it is deployed.

Each day's impressions are published *without* labels (``etl.run_day(labelled=False)``:
on the day itself nobody knows yet whether an ad was viewable) and scored with a
registered version, named by its alias or its number, into a prediction partition of the
predictions folder, ``day=D/version=V/part.parquet``, and its manifest (model, version, the
published day's fingerprint, rows, scoring time, the file's SHA-256), written last as the
commit point. Scoring a day again with the same version and the same data changes nothing,
byte for byte (the manifest keeps its first scoring time); a second version scores into a
folder of its own, so both answers are kept, each labelled with its version.

Labels arrive days later (``data.label_arrivals``). ``matured_labels`` is what has arrived
by a given date, ``attach_labels`` joins it to the predictions, and ``day_performance``
measures the model on matured labels only, always with their count: a day whose labels
have not arrived has no performance yet, not a bad one.
"""

from __future__ import annotations

import datetime as dt
import functools
import io
import json
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from mlops_helpers import comparison, etl, registry
from mlops_helpers.data import as_day, label_arrivals
from mlops_helpers.errors import WorkbookInputError
from mlops_helpers.storage import remove_dead_temps, rename_into_place, staged
from mlops_helpers.training import FEATURES, TARGET
from mlops_helpers.validation import check_labels

DATA_FILE = "part.parquet"
MANIFEST = "_manifest.json"
COLUMNS = ("impression_id", "ts", "proba", "model_version")


class ScoringError(WorkbookInputError, ValueError):
    """A day that cannot be scored (not published, or blocked by its contract)."""


@dataclass(frozen=True)
class Scored:
    """What scoring one day did: ``scored``, or ``unchanged`` (already scored from the same
    data with the same version)."""

    day: str
    model: str
    version: str
    status: str
    rows: int
    data_fingerprint: str
    scored_at: str
    sha256: str


def prediction_dir(out_root: Path, day: str | dt.date, version: str) -> Path:
    """The folder of one day's predictions by one model version, in the predictions folder
    ``out_root``."""
    return Path(out_root) / f"day={as_day(day).isoformat()}" / f"version={version}"


def resolve_version(name: str, model: str | int) -> str:
    """The version number behind ``model``: an alias (``champion``, ``challenger``) or a
    version number; ModelNotFound with the fix when there is none."""
    text = str(model)
    if text.isdigit():
        try:
            return registry.check_version(name, text)
        except registry.ModelNotFound:
            raise registry.ModelNotFound(
                f"model {name!r} has no version {text}; name a version it has (the MLflow UI "
                "or registry.alias_history) or an alias such as champion"
            ) from None
    version = registry.current_version(name, text)
    if version is None:
        raise registry.ModelNotFound(
            f"model {name!r} has no alias {text!r}; deploy a version first "
            "(mlops-workbook deploy) or name a version number"
        )
    return version


@functools.lru_cache(maxsize=8)
def _load(name: str, version: str):
    """The pyfunc model of a version, loaded once per process (a version never changes)."""
    from mlops_helpers.tracking import import_mlflow

    return import_mlflow().pyfunc.load_model(f"models:/{name}/{version}")


def _manifest(folder: Path) -> dict | None:
    try:
        return json.loads((folder / MANIFEST).read_text())
    except (FileNotFoundError, ValueError):
        return None  # no commit yet (or a torn one): the day is scored again


def score_day(
    published: Path, out_root: Path, day: str | dt.date, name: str, model: str | int = "champion"
) -> Scored:
    """Score the unlabelled impressions ``published`` for ``day`` with ``name``'s ``model``
    (alias or version) into ``out_root``; skip when already scored from the same data."""
    day = as_day(day)
    found = etl.read_checked(published, day)  # checked once: the manifest and the data
    if found is None:
        raise ScoringError(
            f"day {day.isoformat()} is not published in {Path(published).name}: publish its "
            "impressions first (etl.run_day(..., labelled=False)); a day its contract blocked "
            "has nothing to score until its extract is fixed"
        )
    version = resolve_version(name, model)
    folder = prediction_dir(out_root, day, version)
    published_manifest, data = found
    fingerprint = published_manifest["fingerprint"]
    done = _manifest(folder)
    if (
        done is not None
        and done.get("data_fingerprint") == fingerprint
        and (folder / DATA_FILE).is_file()
        and etl.file_sha256(folder / DATA_FILE) == done.get("sha256")
    ):
        return Scored(**{**done, "status": "unchanged"})
    impressions = pd.read_parquet(io.BytesIO(data))
    proba = np.asarray(_load(name, version).predict(impressions.loc[:, list(FEATURES)]))[:, 1]
    table = pa.table(
        {
            "impression_id": pa.array(impressions["impression_id"], pa.string()),
            "ts": pa.array(impressions["ts"]),
            "proba": pa.array(proba.astype("float64")),
            "model_version": pa.repeat(pa.scalar(version, pa.string()), len(proba)),
        }
    )
    scored_at = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    with staged(folder / DATA_FILE, lambda tmp: pq.write_table(table, tmp)) as data_tmp:
        result = Scored(
            day.isoformat(),
            name,
            version,
            "scored",
            len(proba),
            fingerprint,
            scored_at,
            etl.file_sha256(data_tmp),
        )
        text = json.dumps(asdict(result), indent=2) + "\n"
        with staged(folder / MANIFEST, lambda tmp: tmp.write_text(text)) as manifest_tmp:
            remove_dead_temps(folder)
            rename_into_place(data_tmp, folder / DATA_FILE)
            rename_into_place(manifest_tmp, folder / MANIFEST)  # the commit point
    return result


def scored_versions(out_root: Path, day: str | dt.date) -> list[str]:
    """The versions that have committed predictions for ``day``, oldest first."""
    root = Path(out_root) / f"day={as_day(day).isoformat()}"
    found = (p.parent.name.removeprefix("version=") for p in root.glob(f"version=*/{MANIFEST}"))
    return sorted(found, key=int)


def read_predictions(out_root: Path, day: str | dt.date, version: str | None = None):
    """A day's committed predictions (every version when ``version`` is None), each file
    checked against its manifest's SHA-256 first."""
    versions = scored_versions(out_root, day) if version is None else [str(version)]
    frames = []
    for v in versions:
        folder = prediction_dir(out_root, day, v)
        manifest = _manifest(folder)
        if manifest is None:
            raise ScoringError(
                f"day {as_day(day).isoformat()} has no predictions by version {v}: score it "
                "first (scoring.score_day)"
            )
        content = (folder / DATA_FILE).read_bytes()
        if etl.sha256_bytes(content) != manifest["sha256"]:
            raise ScoringError(
                f"predictions of day {manifest['day']} by version {v} do not match their "
                "manifest (an interrupted write, or a changed file); score the day again"
            )
        frames.append(pd.read_parquet(io.BytesIO(content)))
    return pd.concat(frames, ignore_index=True)


def matured_labels(
    raw_root: Path, day: str | dt.date, as_of: str | dt.date, delay_days: int, seed: int
) -> pd.DataFrame:
    """The labels of ``day``'s impressions that have arrived by ``as_of`` (the labels
    extract, checked by its contract, with ``data.label_arrivals``'s arrival dates)."""
    day = as_day(day)
    labels = check_labels(etl.extract_day(raw_root, day).labels, day)
    arrived = label_arrivals(labels, day, delay_days, seed)
    arrived = arrived[arrived["arrives"] <= as_day(as_of)]
    return arrived.drop_duplicates("impression_id").reset_index(drop=True)


def attach_labels(predictions: pd.DataFrame, labels: pd.DataFrame) -> pd.DataFrame:
    """``predictions`` with ``viewable`` where a label has arrived (NaN where not yet)."""
    return predictions.merge(
        labels[["impression_id", TARGET]], on="impression_id", how="left", validate="m:1"
    )


def day_performance(labelled: pd.DataFrame, min_labels: int = 100) -> dict:
    """Performance over matured labels only: how many rows were scored and how many labels
    matured, ROC AUC with its interval, log loss, and calibration (mean predicted minus
    observed viewability). None for the metrics below ``min_labels`` or with one label."""
    matured = labelled[labelled[TARGET].notna()]
    y, proba = matured[TARGET].to_numpy().astype(int), matured["proba"].to_numpy()
    out = {"scored": len(labelled), "matured": len(matured)}
    if len(matured) < min_labels or len(np.unique(y)) < 2:
        return out | dict.fromkeys(("roc_auc", "low", "high", "log_loss", "calibration"))
    auc = comparison.roc_auc_interval(y, proba)
    return out | {
        "roc_auc": auc.estimate,
        "low": auc.low,
        "high": auc.high,
        "log_loss": float(comparison.row_log_loss(y, proba).mean()),
        "calibration": float(proba.mean() - y.mean()),
    }


ENDPOINT_ROLES = ("live", "canary", "shadow")  # routed by the endpoint ("direct": not)


def read_online(log_folder: Path, roles: tuple[str, ...] = ENDPOINT_ROLES) -> pd.DataFrame:
    """The endpoint's prediction log (``endpoint.Endpoint.log_folder``) as one row per
    predicted impression, shaped like ``read_predictions`` (``impression_id``, ``proba``,
    ``model_version``) plus ``request_id``, ``role`` (live, canary, shadow), ``time`` and
    the features as sent, so batch and online predictions are monitored by the same code.
    Requests with ``roles`` only; failed answers and a torn last line (a server killed
    mid-write) are left out."""
    frames = []
    for path in sorted(Path(log_folder).glob("version=*.jsonl")):
        for line in path.read_bytes().splitlines():
            try:
                record = json.loads(line)
            except ValueError:
                continue  # torn by a kill: the request it logged got no answer either
            if record.get("role") not in roles or record.get("predictions") is None:
                continue
            preds = np.asarray(record["predictions"], dtype=float)
            frame = pd.DataFrame(record["data"], columns=record["columns"])
            frame["proba"] = preds[:, 1] if preds.ndim == 2 else preds
            frame["model_version"] = record["version"]
            frame["request_id"] = record["request_id"]
            frame["role"] = record["role"]
            frame["time"] = record["time"]
            frames.append(frame)
    if not frames:
        return pd.DataFrame(
            columns=["impression_id", "proba", "model_version", "request_id", "role", "time"]
        )
    online = pd.concat(frames, ignore_index=True)
    online["time"] = pd.to_datetime(online["time"], unit="s", utc=True)
    return online


def compare_answers(online: pd.DataFrame) -> pd.DataFrame:
    """The requests that two versions answered (a shadow beside the live one), one row per
    impression with each version's probability in its own column: what the notebook
    compares before a promotion."""
    both = online.pivot_table(
        index=["request_id", "impression_id"], columns="model_version", values="proba"
    ).dropna()
    both.columns = [f"proba_v{c}" for c in both.columns]
    return both.reset_index()
