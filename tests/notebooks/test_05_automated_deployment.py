"""05_automated_deployment under papermill: gate, promotion, serving and the deployment drill,
checked from the workspace's MLflow store, with no scoring server left behind."""

from __future__ import annotations

import time

import nbformat
from nbtools import (
    checkpoints_passed,
    exercise_names,
    exercises_solved,
    stderr_text,
)

from mlops_helpers import registry, tracking
from mlops_helpers.workbook import curriculum
from tests.support import server_processes

MODEL = "pm-test-05"


def test_other_seed_promotes_good_models_and_never_a_broken_one(run_notebook):
    nb = run_notebook("05", seed=7, model_name=MODEL, show_solutions=True)
    assert exercises_solved(nb) == exercise_names(nb) != set(), "each exercise takes its solution"
    assert stderr_text(nb) == ""
    committed = nbformat.read(curriculum.find_notebook("05"), as_version=4)
    assert checkpoints_passed(nb) == checkpoints_passed(committed) > 0

    tracking.configure_tracking(experiment="automated_deployment")
    client = registry.client()
    history = registry.alias_history(MODEL)
    champion = history[history["alias"] == registry.CHAMPION]
    # Champion moved only to good versions (1, then 2 if it passed the gate); the broken
    # version 4 was served from its own version URI, failed its smoke test and never moved it.
    assert set(champion["version"]) <= {"1", "2"} and champion.iloc[0]["version"] == "1"
    good = champion.iloc[-1]["version"]
    assert registry.current_version(MODEL, registry.CHAMPION) == good

    # The regressed version was blocked by the gate and never became champion.
    regressed = client.get_model_version(MODEL, "3").tags
    assert regressed["gate.decision"] == "blocked"
    assert "3" not in set(champion["version"])
    evidence = client.get_run(regressed["gate.run_id"])
    assert evidence.data.tags["decision"] == "blocked"
    assert evidence.data.metrics["challenger_roc_auc"] < evidence.data.metrics["champion_roc_auc"]

    # The broken version passed the gate (the evidence says so), then failed the smoke test
    # served from models:/NAME/4, and that is on record: promote refuses it.
    broken = client.get_model_version(MODEL, "4").tags
    assert broken["gate.decision"] == "passed"
    assert client.get_run(broken["gate.run_id"]).data.tags["decision"] == "passed"
    assert broken["smoke.decision"] == "failed"
    assert broken["smoke.model_uri"] == f"models:/{MODEL}/4"
    assert "status 400" in broken["smoke.detail"]
    assert "4" not in set(champion["version"])

    # stop() returns when the server process exits; its uvicorn worker may need a moment more.
    deadline = time.monotonic() + 15
    while server_processes(run_notebook.workspace) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert server_processes(run_notebook.workspace) == [], "a scoring server was left running"
