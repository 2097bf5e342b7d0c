"""The careful manual baseline of notebook 09: the hand steps of notebooks 01 and 02, with
the ad-hoc asserts a diligent engineer adds to them, run through the same fault matrix.

The asserts are the ones people write after a bad week: the extracts have rows, key
columns are filled, values sit in their range, and, before a model is copied, its
held-out AUC clears a floor and the server still answers. They are checks on what
arrived, not a contract: stricter ones (no duplicate ids, no row from another day) would
fail on every clean day, because every day carries a little mess, so nobody keeps them.
"""

from __future__ import annotations

import math
import pickle
import time

import pandas as pd

from mlops_helpers import etl, manual, registry, training
from mlops_helpers.proof.faults import (
    RENAMED,
    HandDeployment,
    Record,
    Setup,
    _clean_manual_output,
    _manual_damage,
    faulty_training,
)

PATH = "careful"
KEY_COLUMNS = {"impressions": ("impression_id", "placement_id", "device"), "labels": ("impression_id", "viewable")}  # fmt: skip
AUC_FLOOR = registry.GateThresholds().min_roc_auc  # the floor the gate uses, for a fair match
# What each assert checks, in the order they run on each day's extracts.
CAREFUL_ASSERTS = {
    "rows > 0": "the day's impressions and labels extracts have rows",
    "no nulls in key columns": "impression_id, placement_id, device, viewable are filled",
    "scroll_depth in [0, 1]": "scroll depth is a fraction",
    "page_load_ms >= 0": "page loads are not negative (the 1% missing every day are allowed)",
    "viewable is 0 or 1": "labels are binary",
}
MODEL_ASSERTS = {
    "held-out AUC >= floor": f"the retrained model's held-out AUC is at least {AUC_FLOOR}",
    "the server answers 200": "after the copy, a query by hand still gets an answer",
}


def failed_asserts(impressions: pd.DataFrame, labels: pd.DataFrame) -> list[str]:
    """The careful asserts (:data:`CAREFUL_ASSERTS`) one day's raw extracts fail, in order."""
    load = pd.to_numeric(impressions.get("page_load_ms", pd.Series(dtype=float)), "coerce")
    held = {
        "rows > 0": len(impressions) > 0 and len(labels) > 0,
        "no nulls in key columns": all(
            c in frame and frame[c].notna().all()
            for frame, name in ((impressions, "impressions"), (labels, "labels"))
            for c in KEY_COLUMNS[name]
        ),
        "scroll_depth in [0, 1]": "scroll_depth" in impressions
        and impressions["scroll_depth"].between(0, 1).all(),
        "page_load_ms >= 0": bool(load.dropna().ge(0).all()),
        "viewable is 0 or 1": "viewable" in labels and labels["viewable"].isin([0, 1]).all(),
    }
    return [name for name, ok in held.items() if not ok]


def check_by_hand(dataset: etl.Dataset) -> None:
    """Run the careful asserts on every day's raw extracts; raise AssertionError at the first
    that fails, naming the assert (the careful engineer's cell before the hand ETL)."""
    for day in dataset.days:
        folder = dataset.raw / f"day={day.isoformat()}"
        impressions = pd.read_csv(folder / "impressions.csv")
        labels = pd.read_csv(folder / "labels.csv")
        failed = failed_asserts(impressions, labels)
        assert not failed, failed[0]


def careful_data_fault(setup: Setup, fault: str) -> Record:
    """Notebook 01's hand ETL behind the careful asserts, on the faulty extracts; recover as
    the manual path does: every hand step again once the fixed extract arrives."""
    faulty, fixed = setup.extract(fault), setup.extract()
    target = setup.folder(PATH, fault) / manual.OUTPUT_NAME
    start = time.perf_counter()
    written = None
    try:
        check_by_hand(faulty)
        manual.run_by_hand(faulty, target, [])
        caught, check, detect = False, "-", math.nan
        written = pd.read_csv(target)
    except AssertionError as exc:
        caught, check, detect = True, f"assert: {exc}", time.perf_counter() - start
    except Exception as exc:  # noqa: BLE001 - an exception is what a person would notice
        caught, check, detect = (
            True,
            f"exception: {type(exc).__name__}",
            time.perf_counter() - start,
        )
    checklist: list[dict] = []
    start = time.perf_counter()
    manual.run_by_hand(fixed, target, checklist)
    recover = time.perf_counter() - start
    clean = pd.read_csv(target)
    if caught:
        outcome = "the run stopped at the assert; nothing written until the fix"
    else:
        outcome = _manual_damage(fault, written, clean, faulty).replace(
            "no error", "every assert passed"
        )
    return Record(
        fault, PATH, caught, check, detect, recover, len(checklist),
        etl.file_sha256(target) == _clean_manual_output(setup), outcome,
    )  # fmt: skip


def careful_model_fault(fault: str, hand: HandDeployment, seed: int) -> Record:
    """Notebook 02's weekly routine with two asserts: the held-out AUC clears the floor before
    the copy, and the server answers after it. Recover as by hand: retrain and copy again."""
    before = hand.ask()
    numeric = training.NUMERIC_FEATURES
    if fault == "breaks_in_serving":
        numeric = tuple(RENAMED.get(c, c) for c in numeric)
    features = [*numeric, *training.CATEGORICAL_FEATURES]
    start = time.perf_counter()
    train, test = manual.split_by_hand(faulty_training(fault, hand.table, seed))
    model = manual.make_model(numeric).fit(train[features], train[manual.TARGET])
    if manual.held_out_auc(model, test, features) < AUC_FLOOR:
        detect = time.perf_counter() - start
        after = hand.ask()  # nothing was copied: production is what it was
        return Record(
            fault, PATH, True, "assert: held-out AUC >= floor", detect, 0.0, 0,
            after["probabilities"] == before["probabilities"],
            "stopped before the copy; the model in production never changed",
        )  # fmt: skip
    with open(hand.model_file, "wb") as f:
        pickle.dump(model, f)
    answer = hand.ask()
    detect = time.perf_counter() - start
    caught = answer["status"] != 200
    checklist: list[dict] = []
    start = time.perf_counter()
    manual.retrain_and_copy(hand.table, hand.model_file, checklist)
    with manual.manual_step(checklist, "query the server by hand"):
        after = hand.ask()
    outcome = (
        f"caught after the copy: requests answered {answer['status']} until the retrain"
        if caught
        else "every assert passed; the new model answers every request"
    )
    return Record(
        fault, PATH, caught, "assert: the server answers 200" if caught else "-",
        detect if caught else math.nan, time.perf_counter() - start, len(checklist),
        after["status"] == 200 and after["probabilities"] == before["probabilities"], outcome,
    )  # fmt: skip
