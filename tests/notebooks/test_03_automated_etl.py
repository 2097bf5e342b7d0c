"""03_automated_etl under papermill: every fault is caught (quarantined or blocked)."""

from __future__ import annotations

import pytest
from nbtools import exercise_names, exercises_solved, stderr_text
from papermill.exceptions import PapermillExecutionError

from mlops_helpers import data, etl

SMALL = {"seed": 7, "n_rows": 600, "start_day": "2026-02-01", "n_days": 2}
BLOCKING = {"schema_change", "empty_day"}
REASON = {
    "duplicates": "duplicate impression_id",
    "nulls": "placement_id is null",
    "out_of_range": "scroll_depth out of range",
    "late_rows": "late row",
    "unknown_category": "device unknown value",
}


@pytest.mark.parametrize("fault", data.FAULTS)
def test_every_fault_is_caught_and_the_invariant_holds(run_notebook, fault):
    nb = run_notebook("03", fault=fault, **SMALL)
    assert stderr_text(nb) == ""
    ds = etl.dataset(SMALL["seed"], SMALL["n_rows"], SMALL["start_day"], SMALL["n_days"], fault)
    first, faulty = (etl.read_manifest(ds.out, d) for d in ds.days)
    assert first is not None and first["rows_in"] == first["rows_out"] + first["rows_quarantined"]
    if fault in BLOCKING:
        assert faulty is None, f"{fault} must fail the day closed: nothing published"
        assert not etl.partition_dir(ds.out, ds.days[-1]).exists()
    else:
        assert faulty["rows_in"] == faulty["rows_out"] + faulty["rows_quarantined"]
        reasons = " ".join(faulty["reasons"])
        assert REASON[fault] in reasons
        caught = sum(n for r, n in faulty["reasons"].items() if REASON[fault] in r)
        assert caught >= 0.9 * data.FAULT_FRACTION * SMALL["n_rows"] / (
            2 if fault in ("nulls", "unknown_category") else 1
        )


def test_larger_day_and_other_seed(run_notebook):
    nb = run_notebook("03", seed=11, n_rows=20_000, fault="none", show_solutions=True)
    assert exercises_solved(nb) == exercise_names(nb) != set(), "each exercise takes its solution"
    assert stderr_text(nb) == ""
    ds = etl.dataset(11, 20_000, "2026-01-05", 3, "none")
    manifests = [etl.read_manifest(ds.out, d) for d in ds.days]
    assert all(m and m["rows_in"] >= 20_000 for m in manifests)


def test_bad_parameter_stops_before_anything_is_written(run_notebook):
    with pytest.raises(PapermillExecutionError) as err:
        run_notebook("03", n_rows=-5, fault="typo")
    message = str(err.value)
    assert "parameter n_rows must be an int from 1 to 5000000, got -5" in message
    assert "parameter fault must be one of none" in message
    assert not (run_notebook.workspace / "datasets").exists()
