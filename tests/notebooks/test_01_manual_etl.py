"""01_manual_etl under papermill: every fault passes the hand-run steps and lands in the output."""

from __future__ import annotations

import nbformat
import pandas as pd
import pytest
from nbtools import checkpoints_passed, exercise_names, exercises_solved, stderr_text

from mlops_helpers import data, etl
from mlops_helpers.workbook import curriculum

SMALL = {"seed": 5, "n_rows": 600, "start_day": "2026-03-01", "n_days": 2}


def _damage(fault: str, last: pd.DataFrame) -> int:
    """Rows of the faulty day that carry the fault's damage, measured in the output file."""
    if fault == "schema_change":
        return int(last["page_load_ms"].eq(0).sum())
    if fault == "duplicates":
        return int(last["impression_id"].duplicated().sum())
    if fault == "nulls":
        return int(
            (last["placement_id"].astype(str).eq("0") | last["device"].astype(str).eq("0")).sum()
        )
    if fault == "out_of_range":
        return int(last["scroll_depth"].gt(1).sum())
    if fault == "late_rows":
        return int(pd.to_datetime(last["ts"]).dt.strftime("%Y-%m-%d").ne(last["day"]).sum())
    if fault == "unknown_category":
        return int((last["device"].eq("smart_tv") | last["placement_id"].eq("P999")).sum())
    raise AssertionError(fault)


@pytest.mark.parametrize("fault", data.FAULTS)
def test_every_fault_passes_silently_into_the_output(run_notebook, fault):
    nb = run_notebook("01", fault=fault, **SMALL)
    assert stderr_text(nb) == ""
    ds = etl.dataset(SMALL["seed"], SMALL["n_rows"], SMALL["start_day"], SMALL["n_days"], fault)
    written = pd.read_csv(run_notebook.workspace / "manual_etl" / ds.root.name / "viewability.csv")
    last_day = ds.days[-1].isoformat()
    last = written[written["day"] == last_day]
    if fault == "empty_day":
        assert last.empty and not written.empty, "an empty day is written as no rows, silently"
        return
    expected = (
        data.FAULT_FRACTION
        * SMALL["n_rows"]
        * (0.5 if fault in ("nulls", "unknown_category") else 1)
    )
    assert _damage(fault, last) >= 0.9 * expected


def test_another_seed_and_a_larger_size(run_notebook):
    nb = run_notebook("01", seed=9, n_rows=20_000, fault="none", show_solutions=True)
    assert exercises_solved(nb) == exercise_names(nb) != set(), "each exercise takes its solution"
    assert stderr_text(nb) == ""
    committed = nbformat.read(curriculum.find_notebook("01"), as_version=4)
    # the mean-versus-median and late-rows claims hold on another seed and size too
    assert checkpoints_passed(nb) == checkpoints_passed(committed) > 0
    ds = etl.dataset(9, 20_000, "2026-01-05", 3, "none")
    written = pd.read_csv(run_notebook.workspace / "manual_etl" / ds.root.name / "viewability.csv")
    assert len(written) > 3 * 19_000
