"""Declared pipelines: notebooks as steps, run by papermill in dependency order.

A pipeline file (``pipelines/*.yaml``) names steps (a notebook, its parameters, the steps
it runs after) and parameters shared by every step that declares them. Steps pass
artifacts, not assumptions: a step lists the ``outputs`` it writes, and another takes them
as ``inputs: {NAME: STEP.OUTPUT}`` (which also makes it run after that step). The whole
file is checked before anything runs, an input that no step produces included. The runner
hands a step its inputs as one JSON parameter, ``inputs``, and the file to write its
outputs to, ``outputs_file``; both are kept in the run's state and in MLflow. Each executed
notebook is kept in the run folder and logged to MLflow as an artifact of that step's run;
``resume`` reruns a run folder from its failed step, skipping steps that completed with the
same parameters.
"""

from __future__ import annotations

import hashlib
import json
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mlops_helpers import parameters
from mlops_helpers.config import workspace_path
from mlops_helpers.parameters import NAME_RULE, ParameterError, check_name, is_name
from mlops_helpers.storage import atomic_write
from mlops_helpers.workbook import execute
from mlops_helpers.workbook.specs import (
    SpecError,
    at,
    clean,
    file_name,
    load_spec,
    notebook_beside,
    spec_name,
    where,
)

STATE = "pipeline.json"
STEP_KEYS = {"name", "notebook", "parameters", "after", "inputs", "outputs", "__line__"}
# Parameters the runner sets for a step that takes inputs or writes outputs; never a file's.
RUNNER_PARAMETERS = ("inputs", "outputs_file")
TOP_KEYS = {"name", "description", "parameters", "steps"}


@dataclass
class Step:
    """One notebook of a pipeline, with its resolved parameters."""

    name: str
    notebook: Path
    parameters: dict[str, Any]
    after: list[str]
    inputs: dict[str, str] = field(default_factory=dict)  # NAME -> "step.output"
    outputs: list[str] = field(default_factory=list)
    # what the notebook declares (not part of the fingerprint: the values are)
    specs: dict[str, parameters.ParamSpec] = field(default_factory=dict, repr=False, compare=False)

    def fingerprint(self) -> str:
        """A hash of the notebook's name, the parameters and where its inputs come from: same
        hash, same work (new input values come from a step that ran again, which reruns this
        one too)."""
        parts = [self.notebook.name, self.parameters]
        if self.inputs or self.outputs:
            parts += [self.inputs, self.outputs]
        text = json.dumps(parts, sort_keys=True, default=str)
        return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class Pipeline:
    """A checked pipeline: steps in the order they run."""

    name: str
    path: Path
    steps: list[Step]


@dataclass
class StepResult:
    """How one step went: ok, failed, done earlier (skipped on resume) or not run."""

    step: str
    status: str
    seconds: float = 0.0
    output: str = ""
    error: str = ""


def _mapping(node: Any, path: Path, what: str, parent: Any) -> dict:
    if node is None:
        return {}
    if not isinstance(node, dict):
        raise SpecError(f"{where(path, parent)}: {what} must be a mapping of NAME: VALUE")
    return node


def _order(steps: list[dict], path: Path) -> list[dict]:
    """Steps in dependency order (file order among equals); SpecError on a cycle."""
    names = [s["name"] for s in steps]
    remaining = {s["name"]: set(s.get("after") or []) for s in steps}
    ordered: list[dict] = []
    while remaining:
        ready = [n for n in names if n in remaining and not remaining[n]]
        if not ready:
            cycle = sorted(remaining)
            first = next(s for s in steps if s["name"] == cycle[0])
            raise SpecError(
                f"{where(path, first)}: the step order has a cycle among "
                f"{', '.join(cycle)}; remove one of their `after` entries"
            )
        for n in ready:
            ordered.append(next(s for s in steps if s["name"] == n))
            del remaining[n]
            for deps in remaining.values():
                deps.discard(n)
    return ordered


def _outputs(raw: dict, path: Path) -> list[str]:
    outputs = raw.get("outputs") or []
    if not isinstance(outputs, list) or not all(is_name(o) for o in outputs):
        raise SpecError(
            f"{where(path, raw)}: step {raw['name']!r}: `outputs` must be a list of names "
            f"({NAME_RULE}), got {outputs!r}"
        )
    return outputs


def _inputs(raw: dict, path: Path, produced: dict[str, list[str]]) -> dict[str, str]:
    """A step's ``inputs`` checked: each NAME: STEP.OUTPUT names an output a step declares."""
    inputs = clean(_mapping(raw.get("inputs"), path, "inputs", raw))
    known = ", ".join(f"{s}.{o}" for s, outs in produced.items() for o in outs) or "none"
    for name, ref in inputs.items():
        step, _, output = str(ref).partition(".")
        if not is_name(name) or not isinstance(ref, str) or output not in produced.get(step, []):
            raise SpecError(
                f"{where(path, raw)}: step {raw['name']!r}: input {name!r} comes from "
                f"{ref!r}, which no step produces; write NAME: STEP.OUTPUT with one of the "
                f"outputs the steps declare: {known}"
            )
        if step == raw["name"]:
            raise SpecError(
                f"{where(path, raw)}: step {raw['name']!r}: input {name!r} comes from the step "
                "itself; take it from an earlier step"
            )
    return inputs


def _check_steps(raw_steps: list, path: Path) -> set[str]:
    """Each step a mapping with a valid, unique ``name`` and a ``notebook``; the names."""
    seen: set[str] = set()
    for raw in raw_steps:
        if not isinstance(raw, dict) or "name" not in raw or "notebook" not in raw:
            raise SpecError(f"{where(path, raw)}: every step needs `name` and `notebook`")
        name = spec_name(path, raw, "step name", raw["name"])
        for key in set(raw) - STEP_KEYS:
            raise SpecError(f"{where(path, raw)}: step {name!r} has unknown key {key!r}")
        if name in seen:
            raise SpecError(f"{where(path, raw)}: step name {name!r} is used twice")
        seen.add(name)
    produced = {raw["name"]: _outputs(raw, path) for raw in raw_steps}
    for raw in raw_steps:
        inputs = _inputs(raw, path, produced)
        after = raw.get("after") or []
        unknown = (
            [a for a in after if not (is_name(a) and a in seen)]
            if isinstance(after, list)
            else after
        )
        if not isinstance(after, list) or unknown:
            raise SpecError(
                f"{where(path, raw)}: step {raw['name']!r} runs after unknown steps {unknown}; "
                f"steps are: {', '.join(sorted(seen))}"
            )
        # an input makes its step run after the producer (checked for cycles in _order)
        producers = [r.partition(".")[0] for r in inputs.values()]
        raw["after"] = list(dict.fromkeys([*after, *producers]))
    return seen


def load_pipeline(path: Path, cli_values: dict[str, str] | None = None) -> Pipeline:
    """Read and check a pipeline file; ``cli_values`` (``-p`` text, converted to each step's
    declared type) override its parameters, which YAML has already typed."""
    path = Path(path)
    spec = load_spec(path, TOP_KEYS)
    name = file_name(path, spec, "pipeline")
    shared = _mapping(spec.get("parameters"), path, "parameters", spec)
    raw_steps = spec.get("steps")
    if not isinstance(raw_steps, list) or not raw_steps:
        raise SpecError(f"{where(path, spec)}: `steps` must be a non-empty list of steps")
    _check_steps(raw_steps, path)
    steps = [_step(raw, shared, cli_values or {}, path) for raw in _order(raw_steps, path)]
    declared = {n for s in steps for n in s.specs} - set(RUNNER_PARAMETERS)
    for key in shared:
        if key != "__line__" and key not in declared:
            raise SpecError(
                f"{where(path, shared)}: parameter {key!r} is declared by no step's notebook"
            )
    unknown = sorted(set(cli_values or {}) - declared)
    if set(cli_values or {}) & set(RUNNER_PARAMETERS):
        raise ParameterError(
            f"{' and '.join(RUNNER_PARAMETERS)} are set by the pipeline runner from the steps' "
            "declared inputs and outputs; do not pass them with -p"
        )
    if unknown:
        raise ParameterError(
            f"parameter(s) {', '.join(unknown)} (-p) not declared by any step of {path.name}"
        )
    return Pipeline(name, path, steps)


def with_values(pipe: Pipeline, values: dict[str, Any], source: str) -> Pipeline:
    """``pipe`` with typed ``values`` (read at ``source``, e.g. a grid's file:line) set in
    every step that declares them; SpecError for a value no step declares or a wrong one."""
    unknown = sorted(set(values) - {n for s in pipe.steps for n in s.specs})
    if unknown:
        raise SpecError(
            f"{source}: parameter(s) {', '.join(unknown)} declared by no step of {pipe.path.name}"
        )
    with at(source):
        steps = [
            replace(
                step,
                parameters={
                    **step.parameters,
                    **parameters.check_values(values, step.specs, source),
                },
            )
            for step in pipe.steps
        ]
    return Pipeline(pipe.name, pipe.path, steps)


def _step(raw: dict, shared: dict, cli_values: dict, path: Path) -> Step:
    try:
        notebook = notebook_beside(path, raw["notebook"])
    except ParameterError as exc:
        raise SpecError(f"{where(path, raw)}: step {raw['name']!r}: {exc}") from None
    specs = parameters.notebook_parameters(notebook)
    own = clean(_mapping(raw.get("parameters"), path, "parameters", raw))
    for name in set(own) & set(RUNNER_PARAMETERS):
        raise SpecError(
            f"{where(path, raw)}: step {raw['name']!r}: parameter {name!r} is set by the runner; "
            "declare `inputs:` and `outputs:` on the step instead"
        )
    inputs, outputs = clean(raw.get("inputs") or {}), list(raw.get("outputs") or [])
    for key, needed in (("inputs", inputs), ("outputs_file", outputs)):
        if needed and key not in specs:
            raise SpecError(
                f"{where(path, raw)}: step {raw['name']!r} declares "
                f"{'inputs' if key == 'inputs' else 'outputs'}, but {notebook.stem} has no "
                f'`{key}` parameter to receive them; add `{key}: str = ""` to its '
                "parameters cell"
            )
    for name in own:
        if name not in specs:
            raise SpecError(
                f"{where(path, raw)}: step {raw['name']!r}: parameter {name!r} is not declared "
                f"by {notebook.stem}; it declares: {', '.join(specs)}"
            )
    values: dict[str, Any] = {}
    for node, given in ((shared, clean(shared)), (raw, own)):  # the step's own win
        with at(where(path, node)):
            values.update(parameters.check_values(given, specs, where(path, node)))
    values.update(parameters.text_values(cli_values, specs))
    after = list(raw.get("after") or [])
    return Step(str(raw["name"]), notebook, values, after, inputs, outputs, specs)


def _runs_root(pipe: Pipeline) -> Path:
    """``<workspace>/pipelines/<name>``, refusing a name that could lead outside it."""
    return workspace_path() / "pipelines" / check_name("pipeline name", pipe.name)


def new_run_dir(pipe: Pipeline) -> Path:
    """A fresh folder for one run of ``pipe`` under ``<workspace>/pipelines/<name>/``."""
    return execute.new_run_dir(_runs_root(pipe))


def latest_run_dir(pipe: Pipeline) -> Path | None:
    """The most recent run folder of ``pipe``, or None."""
    root = _runs_root(pipe)
    runs = sorted(p for p in root.glob("*") if (p / STATE).is_file()) if root.is_dir() else []
    return runs[-1] if runs else None


def read_state(run_dir: Path) -> dict:
    """The saved state of a pipeline run (empty when it has none)."""
    path = Path(run_dir) / STATE
    return json.loads(path.read_text()) if path.is_file() else {"steps": {}}


def _save_state(run_dir: Path, state: dict) -> None:
    """Write the run's state atomically: a kill leaves the previous state, never half."""
    text = json.dumps(state, indent=2) + "\n"
    atomic_write(run_dir / STATE, lambda tmp: tmp.write_text(text))


def run_pipeline(
    pipe: Pipeline, run_dir: Path, resume: bool = False, track: bool = True, progress: bool = True
) -> list[StepResult]:
    """Run the steps in order into ``run_dir``; stop at the first failure.

    With ``resume``, steps that completed in this run folder with the same parameters are
    skipped (status ``done``), unless a step they run after had to run again. With
    ``track``, each step is an MLflow run (nested under one run for the pipeline) holding
    its parameters and executed notebook.
    """
    tqdm = execute.progress_bar()
    state = read_state(run_dir) if resume else {"steps": {}}
    state.update(pipeline=pipe.name, file=str(pipe.path))
    tracker = _Tracker(pipe, run_dir, state) if track else None
    results: list[StepResult] = []
    failed = False
    rerun: set[str] = set()  # steps run now: what runs after them must run again too
    for i, step in enumerate(tqdm(pipe.steps, desc=pipe.name, unit="step", disable=not progress)):
        before = state["steps"].get(step.name, {})
        if failed:
            results.append(StepResult(step.name, "not run"))
            continue
        same = before.get("status") == "ok" and before.get("hash") == step.fingerprint()
        if resume and same and not rerun.intersection(step.after):
            results.append(
                StepResult(step.name, "done", before.get("seconds", 0.0), before.get("output", ""))
            )
            continue
        rerun.add(step.name)
        output = run_dir / f"{i + 1:02d}_{step.name}.ipynb"
        outputs_file = run_dir / f"{i + 1:02d}_{step.name}.outputs.json"
        inputs = _inputs_from(step, state)
        start = time.perf_counter()
        outputs: dict[str, Any] = {}
        try:
            outputs_file.unlink(missing_ok=True)  # an earlier attempt's outputs are not ours
            execute.execute_notebook(
                step.notebook, output, {**step.parameters, **_handover(step, inputs, outputs_file)}
            )
            outputs = _read_outputs(step, outputs_file)
            result = StepResult(step.name, "ok", time.perf_counter() - start, output.name)
        except Exception as exc:  # noqa: BLE001 - reported with notebook and cell, run stops
            failed = True
            error = f"{step.notebook.stem} {execute.describe_failure(exc)}"
            result = StepResult(
                step.name, "failed", time.perf_counter() - start, output.name, error
            )
        results.append(result)
        state["steps"][step.name] = {
            "status": result.status,
            "hash": step.fingerprint(),
            "seconds": round(result.seconds, 2),
            "output": result.output,
            "error": result.error,
            "parameters": step.parameters,
            **({"inputs": inputs} if step.inputs else {}),
            **({"outputs": outputs} if step.outputs else {}),
        }
        _save_state(run_dir, state)
        if tracker:
            tracker.log_step(step, result, output, inputs, outputs)
    if tracker:
        tracker.finish(results)
        _save_state(run_dir, state)
    return results


def _inputs_from(step: Step, state: dict) -> dict[str, Any]:
    """The values of ``step``'s inputs: what its producers wrote in this run."""
    values = {}
    for name, ref in step.inputs.items():
        producer, _, output = ref.partition(".")
        values[name] = state["steps"][producer]["outputs"][output]
    return values


def _handover(step: Step, inputs: dict[str, Any], outputs_file: Path) -> dict[str, str]:
    """The runner's parameters for ``step``: its inputs as JSON, where to write its outputs."""
    given = {"inputs": json.dumps(inputs, sort_keys=True)} if step.inputs else {}
    return {**given, **({"outputs_file": str(outputs_file)} if step.outputs else {})}


class StepOutputError(RuntimeError):
    """A step finished without writing an output it declares."""


def _read_outputs(step: Step, outputs_file: Path) -> dict[str, Any]:
    """The outputs ``step`` declares, read from the file it wrote; StepOutputError if any is
    missing (a step that declares an output and does not write it is broken)."""
    if not step.outputs:
        return {}
    written = json.loads(outputs_file.read_text()) if outputs_file.is_file() else {}
    missing = [o for o in step.outputs if o not in written]
    if missing:
        raise StepOutputError(
            f"finished without writing its declared output(s) {', '.join(missing)} to "
            "outputs_file; write them with mlops_helpers.steps.write_outputs"
        )
    return {o: written[o] for o in step.outputs}


class _Tracker:
    """MLflow bookkeeping of a pipeline run: one parent run, one nested run per step."""

    def __init__(self, pipe: Pipeline, run_dir: Path, state: dict):
        from mlops_helpers import tracking

        tracking.configure_tracking(experiment="pipelines")
        self.mlflow = tracking.import_mlflow()
        parent_id = state.get("mlflow_run_id")
        if parent_id:
            self.parent = self.mlflow.start_run(run_id=parent_id)
        else:
            self.parent = self.mlflow.start_run(run_name=f"{pipe.name} {run_dir.name}")
            state["mlflow_run_id"] = self.parent.info.run_id
        self.mlflow.set_tags({"pipeline": pipe.name, "run_folder": run_dir.name})

    def log_step(
        self, step: Step, result: StepResult, output: Path, inputs: dict, outputs: dict
    ) -> None:
        with self.mlflow.start_run(run_name=step.name, nested=True):
            self.mlflow.log_params({"notebook": step.notebook.stem, **step.parameters})
            self.mlflow.log_metric("seconds", result.seconds)
            self.mlflow.set_tags({"status": result.status, "error": result.error[:5000]})
            if step.inputs:
                self.mlflow.log_dict(inputs, "inputs.json")
            if step.outputs and outputs:
                self.mlflow.log_dict(outputs, "outputs.json")
            if output.is_file():
                self.mlflow.log_artifact(str(output), artifact_path="executed")

    def finish(self, results: list[StepResult]) -> None:
        status = "failed" if any(r.status == "failed" for r in results) else "ok"
        self.mlflow.set_tag("status", status)
        self.mlflow.end_run("FAILED" if status == "failed" else "FINISHED")
