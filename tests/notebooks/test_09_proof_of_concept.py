"""09_proof_of_concept under papermill: the matrix it saves says what the workbook claims
(every fault caught automated; by hand, every data fault of notebook 01 and both model
faults of notebook 02 missed; by a careful hand, what its asserts can see), the faults no
rule was written for get past the contract, the summary page holds it, and no server is left
behind."""

from __future__ import annotations

import time

import nbformat
import pandas as pd
import pytest
from nbtools import (
    checkpoints_passed,
    exercise_names,
    exercises_solved,
    output_text,
    stderr_text,
)
from papermill.exceptions import PapermillExecutionError

from mlops_helpers import config, data, proof
from tests.support import server_processes

COMMITTED = config.notebooks_dir() / "09_proof_of_concept.ipynb"


def test_other_parameters_measure_the_claims_and_write_the_page(run_notebook):
    nb = run_notebook(
        "09", seed=7, n_rows=1200, n_days=2, run_name="pm", model_name="pm-test-09",
        show_solutions=True,
    )  # fmt: skip
    assert stderr_text(nb) == ""
    assert exercises_solved(nb) == exercise_names(nb) == {"09.1", "09.2", "09.3"}
    committed = nbformat.read(COMMITTED, as_version=4)
    assert checkpoints_passed(nb) == checkpoints_passed(committed) >= 10
    assert str(run_notebook.workspace) not in output_text(nb)

    run_dir = run_notebook.workspace / "proof_of_concept" / "pm"
    matrix = pd.read_csv(run_dir / proof.MATRIX_FILE)
    automated = matrix[matrix["path"] == "automated"].set_index("fault")
    by_hand = matrix[matrix["path"] == "manual"].set_index("fault")
    assert list(automated.index) == list(by_hand.index) == list(proof.MATRIX)
    assert automated["caught"].all() and automated["restored"].all()
    # notebook 01's claim: every data fault passes the manual ETL silently
    assert not by_hand.loc[list(data.FAULTS), "caught"].any()
    # notebook 02's claims: no gate, no smoke test (both model faults go live), no
    # reproducibility (the manual recovery retrains a different model)
    assert not by_hand.loc[list(proof.MODEL_FAULTS), "caught"].any()
    assert not by_hand.loc[list(proof.MODEL_FAULTS), "restored"].any()
    assert automated.loc["regressed_model", "check"] == "evaluation gate (exit 3)"
    assert automated.loc["breaks_in_serving", "check"] == "smoke test (exit 5)"
    assert by_hand["detect_s"].isna().all() and automated["detect_s"].gt(0).all()
    assert (by_hand.loc[list(data.FAULTS), "manual_steps"] == 3 + 7 * 2).all()
    assert "rerun gives the identical model automated, and a different one by hand" in output_text(
        nb
    )
    # the careful baseline: its asserts catch three data faults and both model faults (one
    # only once live), and miss the four whose every value is valid on its own
    careful = matrix[matrix["path"] == "careful"].set_index("fault")
    assert list(careful.index) == list(proof.MATRIX)
    assert set(careful.index[careful["caught"]]) == {
        "nulls", "out_of_range", "empty_day", "regressed_model", "breaks_in_serving"
    }  # fmt: skip
    # a hand recovery costs the team's hours (parameters), not the computer's seconds
    assert set(matrix.loc[by_hand_rows := matrix["path"] == "manual", "recover_person_h"]) == {6.0}
    assert by_hand_rows.sum() == len(proof.MATRIX)
    text = output_text(nb)
    assert "monitoring caught the slower page loads after publication" in text
    assert "nothing caught the swapped labels" in text
    assert "the hand deployment is notebook 02's checklist: 8 steps a person performs" in text

    page = (run_dir / proof.SUMMARY_PAGE).read_text()
    assert "<table>" in page and "data:image/png;base64," in page
    assert all(f"<td>{fault}</td>" in page for fault in proof.MATRIX)
    assert "seed=7" in page

    # deploy stops its scoring server; its uvicorn worker may need a moment more
    deadline = time.monotonic() + 15
    while server_processes(run_notebook.workspace) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert server_processes(run_notebook.workspace) == [], "a scoring server was left running"


def test_too_few_rows_are_rejected_before_anything_is_written(run_notebook):
    with pytest.raises(PapermillExecutionError) as err:
        run_notebook("09", n_rows=100)
    assert "needs n_rows of at least 500 impressions per day, got 100" in str(err.value)
    assert not (run_notebook.workspace / "proof_of_concept").exists()
