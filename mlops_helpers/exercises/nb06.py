"""Exercises of notebook 06 (notebook pipeline)."""

from __future__ import annotations

import tempfile
from pathlib import Path

import yaml

from mlops_helpers.exercises import Case, Exercise, value_exercise


def _reruns(daily_file, overrides, run_dir) -> set[str]:
    """The steps of the saved run that a resume reruns after train's experiment changes."""
    from mlops_helpers.workbook import pipeline

    changed = pipeline.load_pipeline(daily_file, overrides)
    next(s for s in changed.steps if s.name == "train").parameters["experiment"] = "another"
    saved = pipeline.read_state(run_dir)["steps"]
    reruns: set[str] = set()
    for s in (s for s in changed.steps if s.name in saved):
        if s.fingerprint() != saved[s.name]["hash"] or reruns.intersection(s.after):
            reruns.add(s.name)
    return reruns


def _with_step(text: str):
    """Load pipelines/daily.yaml with the learner's step added: the checked Pipeline, or the
    error text the workbook gives for it (a str)."""
    from mlops_helpers.config import project_root
    from mlops_helpers.errors import WorkbookInputError
    from mlops_helpers.workbook import pipeline

    try:
        step = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        return f"not YAML: {str(exc).splitlines()[0]}"
    if not isinstance(step, dict):
        return f"not one step (a mapping of name, notebook, after, parameters): {step!r}"
    daily = project_root() / "pipelines" / "daily.yaml"
    spec = yaml.safe_load(daily.read_text())
    for existing in spec["steps"]:  # the copy lives elsewhere: its step notebooks stay found
        beside = daily.parent / existing["notebook"]
        existing["notebook"] = str(beside) if beside.is_file() else existing["notebook"]
    spec["steps"].append(step)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "daily.yaml"
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
        try:
            return pipeline.load_pipeline(path)
        except WorkbookInputError as exc:
            return str(exc).replace(str(path), "daily.yaml")


def _step(got, name="monitor"):
    return (
        next((s for s in got.steps if s.name == name), None) if not isinstance(got, str) else None
    )


def _show(got) -> str:
    if isinstance(got, str):
        return got
    step = _step(got)
    if step is None:
        return f"steps {[s.name for s in got.steps]}: no step named 'monitor'"
    return (
        f"monitor: notebook {step.notebook.name}, after {step.after}, parameters {step.parameters}"
    )


def _monitor_cases() -> list[Case]:
    def case(label, accept, hint):
        return Case(label, _with_step, accept, hint, _show)

    def order(got):
        names = [s.name for s in got.steps]
        return names.index("monitor") > names.index("train")

    return [
        case(
            "the pipeline still loads",
            lambda got: not isinstance(got, str) and _step(got) is not None,
            "one mapping: name: monitor, notebook, after: [train], parameters",
        ),
        case(
            "it runs notebook 07",
            lambda got: _step(got).notebook.stem == "07_monitoring_and_retraining",
            "notebook: 07_monitoring_and_retraining",
        ),
        case(
            "it runs after train",
            lambda got: "train" in _step(got).after and order(got),
            "after: [train] (a list of step names)",
        ),
        case(
            "two new days, no drift, typed as 07 declares",
            lambda got: (
                _step(got).parameters.get("n_new_days") == 2
                and type(_step(got).parameters.get("n_new_days")) is int
                and _step(got).parameters.get("drift") == 0.0
            ),
            "parameters: n_new_days: 2 and drift: 0.0 (numbers, not quoted text)",
        ),
    ]


EXERCISES = [
    value_exercise(
        "06.1",
        task="say which steps a resume reruns after one step's parameter changes",
        hint="a step's hash covers its notebook and its own parameters; steps after a rerun step rerun too",
        expected=_reruns,
    ),
    Exercise(
        "06.2",
        task="write a pipeline step in YAML: monitor after train",
        kind="code",
        cases=_monitor_cases,
        hint="write the step as YAML text: name, notebook, after and parameters, as the steps of daily.yaml",
    ),
]
