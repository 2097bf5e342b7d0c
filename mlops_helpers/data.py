"""Synthetic raw extracts for the ad-viewability scenario, deterministic from a seed.

Each day has an impressions extract and a viewability-labels extract; a placements
reference table is shared by all days. Every day carries a little realistic mess
(a few exact duplicates, late rows from the day before, missing optional values,
missing labels); ``fault`` injects one larger problem into a day.

Every generator takes its arguments in one order: ``seed, n_rows``, then the day
(``day``, or ``start_day, n_days``), then ``fault``; anything else by keyword.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from mlops_helpers.scenario import (  # noqa: F401 - the scenario's names, read as data.NAME
    AD_FORMATS,
    AD_SIZES,
    DEVICES,
    FAULT_DESCRIPTIONS,
    FAULT_FRACTION,
    FAULTS,
    IMPRESSION_COLUMNS,
    LABEL_COLUMNS,
    N_PLACEMENTS,
    POSITIONS,
    SITE_CATEGORIES,
)
from mlops_helpers.storage import atomic_write

# Baseline mess present on every day, fault or not.
BASE_DUPLICATES = 0.005
BASE_LATE = 0.002
BASE_MISSING_LOAD = 0.01
BASE_MISSING_LABEL = 0.01


@dataclass(frozen=True)
class RawDay:
    """One day's raw extracts as they arrive: impressions and their viewability labels
    (None when only the impressions were read: ``etl.extract_impressions``)."""

    day: dt.date
    impressions: pd.DataFrame
    labels: pd.DataFrame | None


def as_day(value: str | dt.date) -> dt.date:
    """Parse ``YYYY-MM-DD`` (or pass a date through)."""
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(value)


def day_range(start_day: str | dt.date, n_days: int) -> list[dt.date]:
    """``n_days`` consecutive days from ``start_day``."""
    start = as_day(start_day)
    return [start + dt.timedelta(days=i) for i in range(n_days)]


def check_fault(fault: str) -> str:
    """Return ``fault`` if it is ``"none"`` or a known fault name, else raise ValueError."""
    if fault != "none" and fault not in FAULTS:
        raise ValueError(f"unknown fault {fault!r}; use 'none' or one of {', '.join(FAULTS)}")
    return fault


def generate_placements(seed: int) -> pd.DataFrame:
    """The placements reference table: site category, ad format and position per placement."""
    rng = np.random.default_rng([seed, 0])
    ids = [f"P{i:03d}" for i in range(N_PLACEMENTS)]
    return pd.DataFrame(
        {
            "placement_id": ids,
            "site_category": rng.choice(SITE_CATEGORIES, N_PLACEMENTS),
            "ad_format": rng.choice(AD_FORMATS, N_PLACEMENTS, p=[0.6, 0.2, 0.2]),
            "position": rng.choice(POSITIONS, N_PLACEMENTS),
        }
    )


def _impressions(day: dt.date, n: int, rng: np.random.Generator, drift: float) -> pd.DataFrame:
    ids = pd.Series(np.arange(n)).astype(str).str.zfill(7)
    seconds = rng.integers(0, 86_400, n)
    size = rng.integers(0, len(AD_SIZES), n)
    widths = np.array([w for w, _ in AD_SIZES])[size]
    heights = np.array([h for _, h in AD_SIZES])[size]
    return pd.DataFrame(
        {
            "impression_id": day.strftime("%Y%m%d-") + ids,
            "ts": pd.Timestamp(day) + pd.to_timedelta(seconds, unit="s"),
            "placement_id": np.array([f"P{i:03d}" for i in range(N_PLACEMENTS)])[
                rng.integers(0, N_PLACEMENTS, n)
            ],
            "device": rng.choice(DEVICES, n, p=[0.45, 0.45, 0.10]),
            "ad_width": widths,
            "ad_height": heights,
            "page_load_ms": np.round(rng.lognormal(np.log(800) + 0.4 * drift, 0.5, n), 1),
            "scroll_depth": np.round(rng.beta(2.0, 2.0 + 2.0 * drift, n), 4),
            "time_on_page_s": np.round(rng.exponential(40.0, n), 1),
        }
    )


def _labels(
    impressions: pd.DataFrame,
    placements: pd.DataFrame,
    rng: np.random.Generator,
    drift: float,
    concept: float = 0.0,
) -> pd.DataFrame:
    ref = placements.set_index("placement_id")
    above = impressions["placement_id"].map(ref["position"]).eq("above_fold").to_numpy()
    video = impressions["placement_id"].map(ref["ad_format"]).eq("video").to_numpy()
    mobile = impressions["device"].eq("mobile").to_numpy()
    load = np.log(impressions["page_load_ms"].to_numpy() / 800.0)
    scroll = impressions["scroll_depth"].to_numpy() - 0.5
    logit = (
        -0.3
        + 1.6 * (1.0 - 0.8 * concept) * above
        + 0.7 * video
        - 0.4 * mobile
        + 2.5 * (1.0 - 0.3 * drift - 1.5 * concept) * scroll
        - 0.9 * load
        + 0.004 * impressions["time_on_page_s"].to_numpy()
    )
    viewable = rng.random(len(impressions)) < 1.0 / (1.0 + np.exp(-logit))
    return pd.DataFrame(
        {"impression_id": impressions["impression_id"], "viewable": viewable.astype("int64")}
    )


def _sample(n: int, fraction: float, rng: np.random.Generator) -> np.ndarray:
    k = int(round(n * fraction))
    return np.sort(rng.choice(n, size=k, replace=False)) if k else np.array([], dtype=int)


def _add_mess(df: pd.DataFrame, day: dt.date, rng: np.random.Generator) -> pd.DataFrame:
    late = _sample(len(df), BASE_LATE, rng)
    df.loc[late, "ts"] = df.loc[late, "ts"] - pd.Timedelta(days=1)
    missing = _sample(len(df), BASE_MISSING_LOAD, rng)
    df.loc[missing, "page_load_ms"] = np.nan
    dupes = df.iloc[_sample(len(df), BASE_DUPLICATES, rng)]
    return pd.concat([df, dupes], ignore_index=True)


def inject_fault(impressions: pd.DataFrame, fault: str, rng: np.random.Generator) -> pd.DataFrame:
    """Return a copy of ``impressions`` with ``fault`` injected (``"none"`` returns it as is)."""
    df = impressions.copy()
    if check_fault(fault) == "none":
        return df
    rows = _sample(len(df), FAULT_FRACTION, rng)
    half = rows[: len(rows) // 2]
    other = rows[len(rows) // 2 :]
    if fault == "schema_change":
        df = df.rename(columns={"page_load_ms": "page_load_time_ms"})
    elif fault == "duplicates":
        df = pd.concat([df, df.iloc[rows]], ignore_index=True)
    elif fault == "nulls":
        df["placement_id"] = df["placement_id"].astype(object)
        df["device"] = df["device"].astype(object)
        df.loc[half, "placement_id"] = None
        df.loc[other, "device"] = None
    elif fault == "out_of_range":
        df.loc[rows, "scroll_depth"] = np.round(df.loc[rows, "scroll_depth"] * 100 + 1, 2)
    elif fault == "late_rows":
        df.loc[rows, "ts"] = df.loc[rows, "ts"] - pd.Timedelta(days=1)
    elif fault == "empty_day":
        df = df.iloc[0:0]
    elif fault == "unknown_category":
        df.loc[half, "device"] = "smart_tv"
        df.loc[other, "placement_id"] = "P999"
    return df


def generate_day(
    seed: int,
    n_rows: int,
    day: str | dt.date,
    fault: str = "none",
    *,
    drift: float = 0.0,
    shift: float = 0.0,
    concept: float = 0.0,
    placements: pd.DataFrame | None = None,
) -> RawDay:
    """Generate one day's raw extracts (deterministic from ``seed`` and ``day``).

    Three ways for a day to move away from the calm ones (0 is calm, 1 is strong):
    ``drift`` moves the inputs (slower pages, shallower scrolls) and weakens scrolling's
    effect on viewability; ``shift`` moves the inputs only, so what makes an ad viewable
    stays as it was (covariate shift); ``concept`` changes only what makes an ad viewable
    (scrolling starts to count against it, position counts less) while the inputs look
    exactly as before (concept drift).
    """
    day = as_day(day)
    check_fault(fault)
    if n_rows < 1:
        raise ValueError(f"n_rows must be a positive int, got {n_rows}")
    placements = generate_placements(seed) if placements is None else placements
    rng = np.random.default_rng([seed, day.toordinal()])
    clean = _impressions(day, n_rows, rng, drift + shift)
    labels = _labels(clean, placements, rng, drift, concept)
    labels = labels.drop(index=_sample(len(labels), BASE_MISSING_LABEL, rng))
    messy = _add_mess(clean, day, rng)
    faulty = inject_fault(messy, fault, np.random.default_rng([seed, day.toordinal(), 1]))
    if fault == "empty_day":
        labels = labels.iloc[0:0]
    return RawDay(day, faulty.reset_index(drop=True), labels.reset_index(drop=True))


LABEL_EXTRA_DAYS = (0, 1, 2)  # some labels come a day or two after the delay ...
LABEL_EXTRA_SHARES = (0.6, 0.3, 0.1)  # ... in these shares (a vendor's late batches)


def label_arrivals(labels: pd.DataFrame, day: str | dt.date, delay_days: int, seed: int):
    """``labels`` of ``day``'s impressions with the date each arrives (``arrives``).

    Viewability is measured by a vendor and delivered late: ``delay_days`` after the day
    for most labels, one or two days later for the rest. Deterministic from ``seed`` and
    ``day``; the raw extract itself is not changed.
    """
    if isinstance(delay_days, bool) or not isinstance(delay_days, int) or delay_days < 0:
        raise ValueError(f"delay_days must be a whole number of days >= 0, got {delay_days!r}")
    day = as_day(day)
    rng = np.random.default_rng([seed, day.toordinal(), 2])
    extra = rng.choice(LABEL_EXTRA_DAYS, len(labels), p=LABEL_EXTRA_SHARES)
    arrives = [day + dt.timedelta(days=delay_days + int(e)) for e in extra]
    return labels.assign(arrives=arrives)


def raw_day_dir(raw_root: Path, day: dt.date) -> Path:
    """The folder of one day's raw extracts."""
    return Path(raw_root) / f"day={day.isoformat()}"


def write_raw_dataset(
    raw_root: Path,
    seed: int,
    n_rows: int,
    start_day: str | dt.date,
    n_days: int,
    fault: str = "none",
    *,
    drift: float = 0.0,
    shift: float = 0.0,
    concept: float = 0.0,
) -> list[dt.date]:
    """Write placements and ``n_days`` of raw extracts as CSV; ``fault`` hits the last day.
    ``drift``, ``shift`` and ``concept`` move every day written (``generate_day``).

    Raw data is immutable: a day whose files already exist is left untouched.
    Returns the days written or found.
    """
    raw_root = Path(raw_root)
    raw_root.mkdir(parents=True, exist_ok=True)
    placements = generate_placements(seed)
    _write_csv_once(placements, raw_root / "placements.csv")
    days = day_range(start_day, n_days)
    for day in days:
        folder = raw_day_dir(raw_root, day)
        if (folder / "labels.csv").exists():
            continue
        fault_here = fault if day == days[-1] else "none"
        raw = generate_day(
            seed,
            n_rows,
            day,
            fault_here,
            drift=drift,
            shift=shift,
            concept=concept,
            placements=placements,
        )
        folder.mkdir(parents=True, exist_ok=True)
        _write_csv_once(raw.impressions, folder / "impressions.csv")
        _write_csv_once(raw.labels, folder / "labels.csv")
    return days


def _write_csv_once(df: pd.DataFrame, path: Path) -> None:
    """Write a raw extract as CSV, atomically, unless it exists (raw extracts never change)."""
    if path.exists():
        return
    atomic_write(path, lambda tmp: df.to_csv(tmp, index=False, date_format="%Y-%m-%d %H:%M:%S"))
