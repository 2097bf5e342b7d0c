"""12_live_endpoint under papermill with other parameters: no request fails through a
shadow, a canary, a promotion and a rollback, the endpoint and every scoring server it
started are stopped afterwards, the prediction log holds both answers of the shadowed
requests, and a bad parameter is refused before anything starts."""

from __future__ import annotations

import nbformat
import pytest
from nbtools import checkpoints_passed, exercise_names, exercises_solved, output_text, stderr_text
from papermill.exceptions import PapermillExecutionError

from mlops_helpers import scoring
from mlops_helpers.workbook import curriculum
from tests.support import server_processes

pytestmark = pytest.mark.slow


def test_other_parameters_roll_out_with_no_failed_request(run_notebook):
    nb = run_notebook(
        "12", seed=7, n_rows=800, canary_share=60, clients=4, phase_seconds=0.5,
        model_name="pm-test-12", show_solutions=True,
    )  # fmt: skip
    assert stderr_text(nb) == ""
    committed = nbformat.read(curriculum.find_notebook("12"), as_version=4)
    assert checkpoints_passed(nb) == checkpoints_passed(committed) > 0
    assert exercises_solved(nb) == exercise_names(nb) == {"12.1", "12.2"}
    assert "503 ENDPOINT_UNAVAILABLE" in output_text(nb)
    assert not server_processes(run_notebook.workspace), "the endpoint stopped its servers"
    online = scoring.read_online(run_notebook.workspace / "endpoint" / "pm-test-12" / "predictions")
    assert set(online["role"]) == {"live", "canary", "shadow"}
    assert set(online["model_version"]) == {"1", "2"}
    shadowed = online.loc[online["role"] == "shadow", "request_id"]
    assert shadowed.isin(online.loc[online["role"] == "live", "request_id"]).all()


def test_bad_parameter_is_rejected_before_any_side_effect(run_notebook):
    with pytest.raises(PapermillExecutionError) as err:
        run_notebook("12", canary_share=101)
    assert "parameter canary_share must be an int from 0 to 100 (percent), got 101" in str(
        err.value
    )
    assert not (run_notebook.workspace / "endpoint").exists()
    assert not (run_notebook.workspace / "mlflow.db").exists()
