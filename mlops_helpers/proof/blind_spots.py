"""Faults no rule was written for, in notebook 09: what the automated path does not know.

The fault matrix holds the faults the contract and the gate were written against. These
two were not: every value they leave is valid on its own, so the contract publishes the
day and the careful asserts pass. A shift in a feature's distribution is caught later, by
the drift monitoring of notebook 07 on the published day; labels swapped between
impressions are caught by nothing in this workbook. They are built here, on a copy of the
clean extracts, and never join :data:`mlops_helpers.scenario.FAULTS`.
"""

from __future__ import annotations

import shutil

import numpy as np
import pandas as pd

from mlops_helpers import etl, monitoring, training
from mlops_helpers.proof import careful
from mlops_helpers.proof.faults import Setup
from mlops_helpers.validation import ContractError

BLIND_SPOTS = ("slow_page_loads", "swapped_labels")
BLIND_SPOT_DESCRIPTIONS = {
    "slow_page_loads": "a tracker update times page loads from a later browser event: every "
    "page_load_ms is 30% higher, each value still a plausible page load",
    "swapped_labels": "the label vendor's join swaps the labels of 5% of impressions among "
    "themselves: every label still 0 or 1, as many viewable as before",
}
SLOWER = 1.3  # slow_page_loads: the factor on every page load
SWAPPED = 0.05  # swapped_labels: the share of impressions whose labels are shuffled


def check_blind_spot(fault: str) -> str:
    """Return ``fault`` if it is one of :data:`BLIND_SPOTS`, else raise ValueError."""
    if fault not in BLIND_SPOTS:
        raise ValueError(f"unknown blind spot {fault!r}; use one of {', '.join(BLIND_SPOTS)}")
    return fault


def inject(fault: str, impressions: pd.DataFrame, labels: pd.DataFrame, seed: int):
    """The last day's raw extracts (read as text) with the blind spot in them."""
    if check_blind_spot(fault) == "slow_page_loads":
        load = pd.to_numeric(impressions["page_load_ms"].replace("", np.nan))
        slower = (load * SLOWER).round(1).map(lambda v: "" if pd.isna(v) else f"{v:.1f}")
        return impressions.assign(page_load_ms=slower), labels
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.choice(len(labels), size=round(len(labels) * SWAPPED), replace=False))
    viewable = labels["viewable"].to_numpy().copy()
    viewable[rows] = rng.permutation(viewable[rows])
    return impressions, labels.assign(viewable=viewable)


def blind_spot_extract(setup: Setup, fault: str) -> etl.Dataset:
    """A copy of the clean extracts in the run folder, the blind spot on the last day."""
    check_blind_spot(fault)  # before anything is generated or written
    clean = setup.extract()
    root = setup.folder("blind_spots", fault)
    shutil.rmtree(root)  # rebuilt from the clean extracts on every call: safe to re-run
    shutil.copytree(clean.raw, root / "raw")
    folder = root / "raw" / f"day={clean.days[-1].isoformat()}"
    text = {"dtype": str, "keep_default_na": False}
    impressions, labels = (pd.read_csv(folder / f, **text) for f in ("impressions.csv", "labels.csv"))  # fmt: skip
    impressions, labels = inject(fault, impressions, labels, setup.seed)
    impressions.to_csv(folder / "impressions.csv", index=False)
    labels.to_csv(folder / "labels.csv", index=False)
    return etl.Dataset(root, clean.days)


def _extra_reasons(report: etl.DayReport, baseline: etl.DayReport) -> list[str]:
    return [r for r, n in report.reasons.items() if n > baseline.reasons.get(r, 0)]


def blind_spot(setup: Setup, fault: str, reference: pd.DataFrame, model) -> dict:
    """Run one blind spot past every check there is: the careful asserts, the contract
    (``etl.run_day``), drift monitoring against ``reference`` on the published day, and the
    ROC AUC of ``model`` on that day's labels next to the same day without the fault."""
    faulty, clean = blind_spot_extract(setup, fault), setup.extract()
    day = clean.days[-1]
    try:
        careful.check_by_hand(faulty)
        asserts = "passed"
    except AssertionError as exc:
        asserts = f"failed: {exc}"
    baseline = etl.run_day(clean.raw, setup.folder("automated", "none"), day)
    try:
        extra = _extra_reasons(etl.run_day(faulty.raw, faulty.out, day), baseline)
        contract = f"quarantined: {', '.join(extra)}" if extra else "passed: day published"
    except ContractError as exc:
        contract, extra = f"blocked: {exc.kind}", ["blocked"]
    published = etl.read_partitions(faulty.out, [day])
    drift = monitoring.drift_report(reference, published)
    trigger = monitoring.retrain_trigger(drift)
    clean_day = etl.read_partitions(setup.folder("automated", "none"), [day])
    faulty_scores, clean_scores = (
        training.evaluate(model, published),
        training.evaluate(model, clean_day),
    )
    monitored = "drift in " + ", ".join(trigger.drifted) if trigger.retrain else "no drift"
    caught_by = (
        "contract" if extra else "monitoring, after publication" if trigger.retrain else "nothing"
    )
    return {
        "fault": fault,
        "careful asserts": asserts,
        "contract": contract,
        "monitoring": f"{monitored} (max PSI {trigger.max_psi:.2f})",
        "caught by": caught_by,
        "max_psi": trigger.max_psi,
        "worst_feature": drift["psi"].idxmax(),
        "roc_auc": faulty_scores["roc_auc"],
        "clean roc_auc": clean_scores["roc_auc"],
        "log_loss": faulty_scores["log_loss"],
        "clean log_loss": clean_scores["log_loss"],
    }


def blind_spots(setup: Setup, reference: pd.DataFrame, model) -> pd.DataFrame:
    """:func:`blind_spot` for each of :data:`BLIND_SPOTS`, one row each."""
    rows = [blind_spot(setup, fault, reference, model) for fault in BLIND_SPOTS]
    return pd.DataFrame(rows).set_index("fault")
