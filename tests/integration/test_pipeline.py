"""Pipelines end to end: real papermill runs, each step's executed notebook kept and logged
to MLflow, a failing step that stops the run, ``--resume``, and bad pipeline files."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import mlflow
import nbformat
import pytest

from mlops_helpers import config, tracking
from mlops_helpers.parameters import ParameterError
from mlops_helpers.workbook import cli, pipeline
from mlops_helpers.workbook.specs import SpecError
from tests.support import CLI, UNLUCKY, ran, write_notebook

pytestmark = pytest.mark.slow


@pytest.fixture
def workspace(monkeypatch, tmp_path) -> Path:
    """A fresh workspace for this test: run folders, the sqlite store, ran.log."""
    ws = tmp_path / "ws"
    monkeypatch.setenv(config.HOME_ENV, str(ws))
    return ws


@pytest.fixture
def tiny(tmp_path) -> Path:
    """Three tiny notebooks beside the pipeline files of the test."""
    for label in "abc":
        write_notebook(tmp_path / f"tiny_{label}.ipynb", label)
    return tmp_path


def tiny_pipeline(folder: Path, b_rows: int = UNLUCKY, a_rows: int = 10) -> Path:
    """a -> b -> c on the tiny notebooks; b fails while its n_rows is 13."""
    path = folder / "tiny.yaml"
    path.write_text(
        "name: tiny\n"
        "parameters:\n"
        "  seed: 5\n"
        "steps:\n"
        "  - name: a\n"
        "    notebook: tiny_a.ipynb\n"
        f"    parameters: {{n_rows: {a_rows}}}\n"
        "  - name: b\n"
        "    notebook: tiny_b.ipynb\n"
        "    after: [a]\n"
        f"    parameters: {{n_rows: {b_rows}}}\n"
        "  - name: c\n"
        "    notebook: tiny_c.ipynb\n"
        "    after: [b]\n"
    )
    return path


def step_runs(parent_id: str) -> list[mlflow.entities.Run]:
    """The nested MLflow runs of one pipeline run, oldest first."""
    tracking.configure_tracking(experiment="pipelines")
    client = mlflow.MlflowClient()
    runs = client.search_runs(
        [client.get_run(parent_id).info.experiment_id],
        filter_string=f"tags.mlflow.parentRunId = '{parent_id}'",
        order_by=["attributes.start_time ASC"],
    )
    return list(runs)


def printed(nb: nbformat.NotebookNode) -> str:
    """Everything an executed notebook printed."""
    return "".join(out.get("text", "") for c in nb.cells for out in c.get("outputs", []))


def artifacts(run_id: str) -> list[str]:
    """Paths of the files logged under ``executed/`` by a step's run."""
    return [f.path for f in mlflow.MlflowClient().list_artifacts(run_id, "executed")]


def test_daily_pipeline_hands_partitions_and_version_from_step_to_step(workspace):
    """pipelines/daily.yaml on its step notebooks: train reads exactly the partitions ETL
    published (by fingerprint), deploy takes exactly the version train registered; every
    step's inputs and outputs are in the run folder and in MLflow."""
    from mlops_helpers import etl, registry, steps, training

    pipe = pipeline.load_pipeline(
        config.project_root() / "pipelines" / "daily.yaml",
        {"seed": "3", "n_rows": "400", "n_days": "2"},
    )
    assert [s.name for s in pipe.steps] == ["etl", "train", "deploy"]
    assert pipe.steps[2].after == ["etl", "train"], "inputs make a step run after their producers"
    run_dir = pipeline.new_run_dir(pipe)

    results = pipeline.run_pipeline(pipe, run_dir, progress=False)

    assert [(r.step, r.status) for r in results] == [(s, "ok") for s in ("etl", "train", "deploy")]
    state = pipeline.read_state(run_dir)["steps"]
    published, trained, deployed = (state[s]["outputs"] for s in ("etl", "train", "deploy"))
    out = workspace / published["warehouse"] / "out"
    for part in published["train"] + published["gate"]:
        assert etl.read_manifest(out, part["day"])["fingerprint"] == part["fingerprint"]
    assert [p["day"] for p in published["train"]] == ["2026-01-05"]
    assert [p["day"] for p in published["gate"]] == ["2026-01-06"], "the gate day is not trained on"
    assert state["train"]["inputs"] == {k: published[k] for k in ("warehouse", "train")}
    table = steps.read_exactly(published["warehouse"], published["train"])
    assert trained["data_fingerprint"] == training.data_fingerprint(table)
    assert state["deploy"]["inputs"]["model_version"] == trained["model_version"]
    assert state["deploy"]["inputs"]["gate"] == published["gate"]
    assert deployed == {"status": "deployed", "champion": trained["model_version"]}
    assert registry.current_version("viewability-daily", "champion") == trained["model_version"]
    version = registry.client().get_model_version("viewability-daily", trained["model_version"])
    assert version.run_id == trained["run_id"], "the registered version is the train step's run"
    recorded = mlflow.artifacts.load_dict(
        mlflow.get_run(trained["run_id"]).info.artifact_uri + "/inputs.json"
    )
    assert recorded["train"] == published["train"], "the training run records what it read"

    runs = {r.info.run_name: r for r in step_runs(pipeline.read_state(run_dir)["mlflow_run_id"])}
    listed = {
        n: {f.path for f in mlflow.MlflowClient().list_artifacts(r.info.run_id)}
        for n, r in runs.items()
    }
    assert listed["etl"] == {"executed", "outputs.json"}
    assert listed["deploy"] == {"executed", "inputs.json", "outputs.json"}
    logged = mlflow.artifacts.load_dict(runs["deploy"].info.artifact_uri + "/inputs.json")
    assert logged == state["deploy"]["inputs"], "MLflow holds the inputs the run folder holds"
    for name in ("01_etl", "02_train", "03_deploy"):
        assert (run_dir / f"{name}.ipynb").is_file() and (
            run_dir / f"{name}.outputs.json"
        ).is_file()

    again = pipeline.run_pipeline(pipe, run_dir, resume=True, progress=False)
    assert [r.status for r in again] == ["done"] * 3, "same parameters: nothing reruns"
    assert pipeline.read_state(run_dir)["steps"]["deploy"]["outputs"] == deployed


def handover_pipeline(folder: Path, writes: str) -> Path:
    """make -> use: ``make`` declares output ``thing`` and writes ``writes`` (JSON text)."""
    from tests.support import make_notebook

    make_notebook(
        folder / "make.ipynb",
        'outputs_file: str = ""  # set by the runner\n',
        f"import pathlib\npathlib.Path(outputs_file).write_text({writes!r})",
    )
    make_notebook(
        folder / "use.ipynb",
        'inputs: str = "{}"  # set by the runner\n',
        "import json\nprint('got', json.loads(inputs)['it'])",
    )
    path = folder / "handover.yaml"
    path.write_text(
        "name: handover\n"
        "steps:\n"
        "  - name: make\n"
        "    notebook: make.ipynb\n"
        "    outputs: [thing]\n"
        "  - name: use\n"
        "    notebook: use.ipynb\n"
        "    inputs: {it: make.thing}\n"
    )
    return path


def test_a_step_gets_what_the_step_before_wrote(workspace, tmp_path):
    pipe = pipeline.load_pipeline(handover_pipeline(tmp_path, '{"thing": [1, "two"]}'))
    run_dir = pipeline.new_run_dir(pipe)
    results = pipeline.run_pipeline(pipe, run_dir, track=False, progress=False)
    assert [r.status for r in results] == ["ok", "ok"]
    assert "got [1, 'two']" in printed(nbformat.read(run_dir / "02_use.ipynb", as_version=4))
    assert pipeline.read_state(run_dir)["steps"]["use"]["inputs"] == {"it": [1, "two"]}


def test_a_step_that_does_not_write_its_declared_output_fails_the_run(workspace, tmp_path):
    pipe = pipeline.load_pipeline(handover_pipeline(tmp_path, '{"other": 1}'))
    results = pipeline.run_pipeline(pipe, pipeline.new_run_dir(pipe), track=False, progress=False)
    assert [r.status for r in results] == ["failed", "not run"]
    assert "declared output(s) thing" in results[0].error


def test_the_runner_parameters_cannot_be_passed_with_p(workspace, tmp_path):
    with pytest.raises(ParameterError, match="set by the pipeline runner"):
        pipeline.load_pipeline(handover_pipeline(tmp_path, "{}"), {"inputs": "{}"})


def test_failing_step_stops_the_pipeline_and_resume_reruns_from_it(workspace, tiny):
    pipe = pipeline.load_pipeline(tiny_pipeline(tiny))
    run_dir = pipeline.new_run_dir(pipe)

    results = pipeline.run_pipeline(pipe, run_dir, progress=False)

    assert [(r.step, r.status) for r in results] == [("a", "ok"), ("b", "failed"), ("c", "not run")]
    error = results[1].error
    assert error.startswith("tiny_b cell ")
    assert "ValueError: n_rows 13 is unlucky: this step fails on purpose" in error
    kept = nbformat.read(run_dir / "02_b.ipynb", as_version=4)
    assert any(out.get("ename") == "ValueError" for c in kept.cells for out in c.get("outputs", []))
    assert not (run_dir / "03_c.ipynb").exists()
    state = pipeline.read_state(run_dir)
    assert state["steps"]["b"]["status"] == "failed" and "unlucky" in state["steps"]["b"]["error"]
    steps = {r.info.run_name: r for r in step_runs(state["mlflow_run_id"])}
    assert set(steps) == {"a", "b"}, "c did not run"
    assert steps["b"].data.tags["status"] == "failed"
    assert "unlucky" in steps["b"].data.tags["error"]
    assert artifacts(steps["b"].info.run_id) == ["executed/02_b.ipynb"], "kept to debug"
    assert mlflow.get_run(state["mlflow_run_id"]).info.status == "FAILED"

    fixed = pipeline.load_pipeline(tiny_pipeline(tiny, b_rows=12))
    resumed = pipeline.run_pipeline(fixed, run_dir, resume=True, progress=False)

    assert [(r.step, r.status) for r in resumed] == [("a", "done"), ("b", "ok"), ("c", "ok")]
    assert ran(workspace) == {
        "a seed=5 n_rows=10": 1,
        "b seed=5 n_rows=13": 1,
        "b seed=5 n_rows=12": 1,
        "c seed=5 n_rows=10": 1,
    }, "a completed with the same parameters, so it is not run again"
    logged = [(r.info.run_name, r.data.tags["status"]) for r in step_runs(state["mlflow_run_id"])]
    assert logged == [("a", "ok"), ("b", "failed"), ("b", "ok"), ("c", "ok")]
    assert mlflow.get_run(state["mlflow_run_id"]).info.status == "FINISHED"

    changed = pipeline.load_pipeline(tiny_pipeline(tiny, b_rows=12, a_rows=11))
    rerun = pipeline.run_pipeline(changed, run_dir, resume=True, progress=False)
    assert [r.status for r in rerun] == ["ok", "ok", "ok"], (
        "a changed, so b and c (same parameters, new input) run again too"
    )


def _cli(workspace: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, config.HOME_ENV: str(workspace)}
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, env=env, timeout=300, check=False
    )


def test_cli_exit_codes_1_for_a_failed_step_2_for_a_bad_file(workspace, tiny):
    path = tiny_pipeline(tiny)
    failed = _cli(workspace, "pipeline", str(path), "--no-progress")
    assert failed.returncode == 1, failed.stdout + failed.stderr
    assert "FAILED step b: tiny_b cell " in failed.stderr
    assert "n_rows 13 is unlucky" in failed.stderr
    assert "--resume" in failed.stderr

    bad = tiny / "bad.yaml"
    bad.write_text("name: bad\nsteps:\n  - name: a\n    notebook: 99_nowhere\n")
    refused = _cli(workspace, "pipeline", str(bad))
    assert refused.returncode == 2
    assert f"error: {bad}:3: step 'a': no notebook named '99_nowhere'" in refused.stderr
    assert not (workspace / "pipelines" / "bad").exists()


BAD_FILES = {
    "invalid YAML": (
        "name: p\nsteps:\n  - name: a\n    notebook: tiny_a.ipynb\n    parameters: {seed: [1, 2}\n",
        5,
        "not valid YAML",
    ),
    "missing notebook": (
        "name: p\nsteps:\n  - name: a\n    notebook: 99_nowhere\n",
        3,
        "step 'a': no notebook named '99_nowhere'; choose one of: 00_start_here",
    ),
    "parameter no step declares": (
        "name: p\nparameters:\n  seed: 1\n  colour: red\nsteps:\n  - name: a\n"
        "    notebook: tiny_a.ipynb\n",
        3,
        "parameter 'colour' is declared by no step's notebook",
    ),
    "parameter the step's notebook does not declare": (
        "name: p\nsteps:\n  - name: a\n    notebook: tiny_a.ipynb\n    parameters:\n"
        "      fault: nulls\n",
        3,
        "step 'a': parameter 'fault' is not declared by tiny_a; it declares: seed, n_rows, pause",
    ),
    "cycle": (
        "name: p\nsteps:\n  - name: a\n    notebook: tiny_a.ipynb\n    after: [c]\n"
        "  - name: b\n    notebook: tiny_b.ipynb\n    after: [a]\n"
        "  - name: c\n    notebook: tiny_c.ipynb\n    after: [b]\n",
        3,
        "the step order has a cycle among a, b, c",
    ),
    "unknown after": (
        "name: p\nsteps:\n  - name: a\n    notebook: tiny_a.ipynb\n"
        "  - name: b\n    notebook: tiny_b.ipynb\n    after: [etl]\n",
        5,
        "step 'b' runs after unknown steps ['etl']; steps are: a, b",
    ),
    "step name a list": (
        "name: p\nsteps:\n  - name: [a, b]\n    notebook: tiny_a.ipynb\n",
        3,
        "step name must be a name of 1 to 64 letters, digits, '-' and '_', starting with a "
        "letter or digit, got ['a', 'b']",
    ),
    "step name a path": (
        "name: p\nsteps:\n  - name: ../../a\n    notebook: tiny_a.ipynb\n",
        3,
        "step name must be a name of 1 to 64 letters",
    ),
    "pipeline name a path": (
        "name: /etc/cron.d\nsteps:\n  - name: a\n    notebook: tiny_a.ipynb\n",
        1,
        "pipeline name must be a name of 1 to 64 letters, digits, '-' and '_', starting with a "
        "letter or digit, got '/etc/cron.d'",
    ),
    "notebook written as a number": (
        "name: p\nsteps:\n  - name: a\n    notebook: 03\n",
        3,
        "step 'a': notebook must be text, but YAML reads it as the number 3; "
        "quote it: notebook: '03'",
    ),
    "a key written twice": (
        "name: p\nsteps:\n  - name: a\n    notebook: tiny_a.ipynb\n    parameters:\n"
        "      seed: 1\n      seed: 2\n",
        7,
        "not valid YAML: key 'seed' is written twice (first on line 6); keep one of them",
    ),
    "an input no step produces": (
        "name: p\nsteps:\n  - name: a\n    notebook: tiny_a.ipynb\n"
        "  - name: b\n    notebook: tiny_b.ipynb\n    inputs: {x: a.table}\n",
        5,
        "step 'b': input 'x' comes from 'a.table', which no step produces; write NAME: "
        "STEP.OUTPUT with one of the outputs the steps declare: none",
    ),
    "an input from the step itself": (
        "name: p\nsteps:\n  - name: a\n    notebook: tiny_a.ipynb\n    outputs: [t]\n"
        "    inputs: {x: a.t}\n",
        3,
        "step 'a': input 'x' comes from the step itself",
    ),
    "outputs not a list of names": (
        "name: p\nsteps:\n  - name: a\n    notebook: tiny_a.ipynb\n    outputs: t\n",
        3,
        "step 'a': `outputs` must be a list of names",
    ),
    "outputs a notebook cannot write": (
        "name: p\nsteps:\n  - name: a\n    notebook: tiny_a.ipynb\n    outputs: [t]\n",
        3,
        "step 'a' declares outputs, but tiny_a has no `outputs_file` parameter",
    ),
    "an after entry that is a list": (
        "name: p\nsteps:\n  - name: a\n    notebook: tiny_a.ipynb\n    after: [[a]]\n",
        3,
        "step 'a' runs after unknown steps [['a']]; steps are: a",
    ),
}


@pytest.mark.parametrize("case", list(BAD_FILES))
def test_bad_pipeline_file_names_file_and_line_before_anything_runs(workspace, tiny, case):
    text, line, message = BAD_FILES[case]
    path = tiny / "bad.yaml"
    path.write_text(text)
    with pytest.raises(SpecError) as err:
        pipeline.load_pipeline(path)
    assert str(err.value).startswith(f"{path}:{line}: ")
    assert message in str(err.value)
    assert not workspace.exists(), "nothing may run or be written for a bad file"


@pytest.mark.parametrize(
    "case",
    [
        "step name a list",
        "notebook written as a number",
        "a key written twice",
        "pipeline name a path",
        "an input no step produces",
    ],
)
def test_bad_pipeline_file_exits_2_with_one_line_and_no_traceback(capsys, workspace, tiny, case):
    text, line, message = BAD_FILES[case]
    path = tiny / "bad.yaml"
    path.write_text(text)
    code = cli.main(["pipeline", str(path), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.startswith(f"error: {path}:{line}: ")
    assert message in err and "Traceback" not in err and err.count("\n") == 1
    assert not workspace.exists()
