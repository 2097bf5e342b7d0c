"""Notebook parameters, in one place: the rules, the conversion of command-line text, the
check of typed values, and the plan of which notebook gets which value.

Defaults live in each notebook's ``parameters`` cell (the single source of truth); this
module knows what a valid value looks like for each parameter name. Values come from two
kinds of place, and each has one function: ``-p NAME VALUE`` text is converted to the
notebook's declared type by :func:`text_value`; values read from a YAML file (``-f``, a
pipeline, a grid) are already typed and only checked, by :func:`check_value`. Both name
where the value came from (``-p``, ``-f FILE``, ``file:line``) in their errors. Nothing here
imports pandas: ``mlops-workbook --help`` and argument errors load none of it.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mlops_helpers.errors import WorkbookInputError
from mlops_helpers.scenario import FAULTS


class ParameterError(WorkbookInputError, ValueError):
    """A notebook or CLI parameter has the wrong type or value."""


@dataclass(frozen=True)
class Rule:
    """What one parameter accepts."""

    kind: type
    describe: str
    accepts: Callable[[Any], bool] = lambda value: True


# One rule for every name that becomes a folder or a file name in the workspace
# (experiment, model, pipeline, grid, step, run): no separators, no "..", no absolute
# path, nothing hidden, so a name can never point outside the workspace.
NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,63}")
NAME_RULE = "a name of 1 to 64 letters, digits, '-' and '_', starting with a letter or digit"


def is_name(value: object) -> bool:
    """True when ``value`` is a str that may become a folder name in the workspace."""
    return isinstance(value, str) and NAME_PATTERN.fullmatch(value) is not None


def check_name(what: str, value: object) -> str:
    """Return ``value`` if it is a valid name (:data:`NAME_RULE`); else raise ParameterError
    naming ``what`` (e.g. ``"--experiment"``, ``"pipeline name"``) and the value."""
    if not is_name(value):
        raise ParameterError(f"{what} must be {NAME_RULE}, got {value!r}")
    return value  # type: ignore[return-value]


def _iso_day(value: str) -> bool:
    try:
        dt.date.fromisoformat(value)
    except ValueError:
        return False
    return len(value) == 10


RULES: dict[str, Rule] = {
    "seed": Rule(int, "an int from 0 to 4294967295", lambda v: 0 <= v <= 2**32 - 1),
    "n_rows": Rule(int, "an int from 1 to 5000000", lambda v: 1 <= v <= 5_000_000),
    "n_days": Rule(int, "an int from 1 to 366", lambda v: 1 <= v <= 366),
    "n_new_days": Rule(int, "an int from 1 to 60", lambda v: 1 <= v <= 60),
    "start_day": Rule(str, "a date written YYYY-MM-DD", _iso_day),
    "fault": Rule(str, f"one of {', '.join(('none', *FAULTS))}", lambda v: v in ("none", *FAULTS)),
    "max_quarantine_fraction": Rule(float, "a float from 0.0 to 1.0", lambda v: 0.0 <= v <= 1.0),
    "drift": Rule(float, "a float from 0.0 to 5.0", lambda v: 0.0 <= v <= 5.0),
    "shift": Rule(float, "a float from 0.0 to 5.0", lambda v: 0.0 <= v <= 5.0),
    "concept": Rule(float, "a float from 0.0 to 2.0", lambda v: 0.0 <= v <= 2.0),
    "label_delay_days": Rule(int, "an int from 0 to 30", lambda v: 0 <= v <= 30),
    "canary_share": Rule(int, "an int from 0 to 100 (percent)", lambda v: 0 <= v <= 100),
    "clients": Rule(int, "an int from 1 to 64", lambda v: 1 <= v <= 64),
    "phase_seconds": Rule(float, "a float from 0.5 to 60.0", lambda v: 0.5 <= v <= 60.0),
    "C": Rule(float, "a float greater than 0", lambda v: v > 0),
    "max_iter": Rule(int, "an int from 10 to 10000", lambda v: 10 <= v <= 10_000),
    "test_fraction": Rule(float, "a float from 0.05 to 0.5", lambda v: 0.05 <= v <= 0.5),
    "experiment": Rule(str, NAME_RULE, lambda v: is_name(v)),
    "model_name": Rule(str, NAME_RULE, lambda v: is_name(v)),
    "show_plots": Rule(bool, "True or False"),
    "n_workers": Rule(int, "an int from 1 to 64", lambda v: 1 <= v <= 64),
    "run_deploy": Rule(bool, "True or False"),
    "show_solutions": Rule(bool, "True or False"),
    "run_name": Rule(str, NAME_RULE, lambda v: is_name(v)),
    "hours_per_manual_recovery": Rule(
        float, "a float from 0.0 to 1000.0", lambda v: 0 <= v <= 1000
    ),
    "hours_per_automated_recovery": Rule(
        float, "a float from 0.0 to 1000.0", lambda v: 0 <= v <= 1000
    ),
    "faults_per_month": Rule(float, "a float from 0.0 to 1000.0", lambda v: 0 <= v <= 1000),
    "hours_to_build": Rule(float, "a float from 0.0 to 100000.0", lambda v: 0 <= v <= 100_000),
    "upkeep_hours_per_month": Rule(float, "a float from 0.0 to 1000.0", lambda v: 0 <= v <= 1000),
    "gate_days": Rule(int, "an int from 1 to 30", lambda v: 1 <= v <= 30),
    "window": Rule(int, "an int from 1 to 60", lambda v: 1 <= v <= 60),
    "drift_from": Rule(str, "'' or a date written YYYY-MM-DD", lambda v: v == "" or _iso_day(v)),
    "drift_days": Rule(int, "an int from 1 to 366", lambda v: 1 <= v <= 366),
    "reason": Rule(str, "text of at most 500 characters", lambda v: len(v) <= 500),
    # set by the pipeline runner (mlops_helpers.workbook.pipeline), never typed by a person
    "inputs": Rule(str, "a JSON object of a step's inputs", lambda v: v.lstrip().startswith("{")),
    "outputs_file": Rule(str, "the file a step writes its outputs to"),
}


def _type_ok(value: Any, kind: type) -> bool:
    if kind is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if kind is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, kind)


def check_parameter(name: str, value: Any) -> Any:
    """Return ``value`` (ints widened to float where a float is wanted) or raise ParameterError."""
    rule = RULES.get(name)
    if rule is None:
        known = ", ".join(sorted(RULES))
        raise ParameterError(f"unknown parameter {name!r}; known parameters: {known}")
    if not _type_ok(value, rule.kind) or not rule.accepts(value):
        raise ParameterError(f"parameter {name} must be {rule.describe}, got {value!r}")
    return float(value) if rule.kind is float else value


def check_parameters(**params: Any) -> dict[str, Any]:
    """Check every parameter; raise one ParameterError listing all that are wrong."""
    problems, checked = [], {}
    for name, value in params.items():
        try:
            checked[name] = check_parameter(name, value)
        except ParameterError as exc:
            problems.append(str(exc))
    if problems:
        raise ParameterError("; ".join(problems))
    return checked


def coerce_text(name: str, text: str, kind: str) -> Any:
    """Turn a command-line string into the type a notebook declares (int, float, bool, str)."""
    try:
        if kind == "int":
            return int(text)
        if kind == "float":
            return float(text)
        if kind == "bool":
            lowered = text.strip().lower()
            if lowered in ("true", "1", "yes"):
                return True
            if lowered in ("false", "0", "no"):
                return False
            raise ValueError(text)
    except ValueError:
        raise ParameterError(
            f"parameter {name} must be {kind}, got {text!r}; pass e.g. -p {name} "
            f"{ {'int': '7', 'float': '0.5', 'bool': 'true'}[kind] }"
        ) from None
    return text


@dataclass(frozen=True)
class ParamSpec:
    """One parameter a notebook declares in its ``parameters`` cell."""

    name: str
    kind: str
    default: str
    help: str


def notebook_parameters(path: Path) -> dict[str, ParamSpec]:
    """The parameters a notebook declares: name, type, default and help."""
    import papermill

    found = papermill.inspect_notebook(str(path))
    return {
        name: ParamSpec(name, info["inferred_type_name"], info["default"], info["help"])
        for name, info in found.items()
    }


# The Python types a declared kind accepts (papermill's inferred type names).
_KINDS: dict[str, type | tuple[type, ...]] = {
    "int": int,
    "float": (int, float),
    "bool": bool,
    "str": str,
}


def check_value(name: str, value: Any, spec: ParamSpec, source: str) -> Any:
    """A typed value checked against the notebook's declared type and the parameter's rule.

    YAML values arrive typed and are only checked here, never converted: ``'100'`` for an
    int is refused, naming ``source`` (``-f p.yaml``, ``grid.yaml:4``) so the fix is findable.
    """
    expected = _KINDS.get(spec.kind)
    wrong_bool = spec.kind != "bool" and isinstance(value, bool)
    if expected and (not isinstance(value, expected) or wrong_bool):
        raise ParameterError(f"parameter {name} ({source}) must be {spec.kind}, got {value!r}")
    if name in RULES:
        value = check_parameter(name, value)
    return float(value) if spec.kind == "float" else value


def text_value(name: str, text: str, spec: ParamSpec) -> Any:
    """``-p NAME VALUE`` text converted to the notebook's declared type, then checked."""
    return check_value(name, coerce_text(name, text, spec.kind), spec, "-p")


def check_values(values: dict[str, Any], specs: dict[str, ParamSpec], source: str) -> dict:
    """The typed ``values`` a notebook declares (``specs``), each checked; the rest left out."""
    return {n: check_value(n, v, specs[n], source) for n, v in values.items() if n in specs}


def text_values(texts: dict[str, str], specs: dict[str, ParamSpec]) -> dict[str, Any]:
    """The ``-p`` texts a notebook declares (``specs``), each converted and checked."""
    return {n: text_value(n, t, specs[n]) for n, t in texts.items() if n in specs}


def plan_parameters(
    notebooks: list[Path],
    cli_values: dict[str, Any],
    file_values: dict[str, Any] | None = None,
    file_label: str = "-f",
) -> dict[Path, dict[str, Any]]:
    """Give each notebook the parameters it declares; reject names no notebook declares.

    ``cli_values`` (``-p`` text) win over ``file_values`` (typed, from ``-f``); a file value
    that ``-p`` replaces is not checked.
    """
    sources = {name: file_label for name in file_values or {}}
    sources.update({name: "-p" for name in cli_values})
    values = {**(file_values or {}), **cli_values}
    specs = {nb: notebook_parameters(nb) for nb in notebooks}
    declared = {name for s in specs.values() for name in s}
    unknown = sorted(set(values) - declared)
    if unknown:
        names = ", ".join(p.stem for p in notebooks)
        where = ", ".join(f"{n} ({sources[n]})" for n in unknown)
        raise ParameterError(
            f"parameter(s) {where} not declared by any selected notebook ({names}); "
            "see `mlops-workbook params NOTEBOOK` for what each accepts"
        )
    return {
        nb: {
            name: text_value(name, value, spec[name])
            if name in cli_values
            else check_value(name, value, spec[name], file_label)
            for name, value in values.items()
            if name in spec
        }
        for nb, spec in specs.items()
    }
