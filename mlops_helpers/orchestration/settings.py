"""The orchestrator's settings: ``pipelines/orchestrator.yaml``, checked before anything runs.

Every value is checked against its range when the file is read, and a value out of range
raises :class:`~mlops_helpers.workbook.specs.SpecError` naming the file and the line it is
written on, so neither ``dagster dev`` nor a backfill starts on a wrong file. A key left
out takes the default below (the committed file spells every one out). Nothing here
imports Dagster, pandas or MLflow.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from mlops_helpers import config
from mlops_helpers.parameters import check_parameter
from mlops_helpers.workbook import specs

SETTINGS_ENV = "MLOPS_ORCHESTRATOR_SETTINGS"  # another settings file (tests, a learner's copy)
# monitoring.MIN_ROWS_PER_DAY, repeated so that reading settings imports no pandas or scipy
# (tests/unit/test_monitoring.py keeps the two equal)
MIN_ROWS_PER_DAY = 100


def default_path() -> Path:
    """``$MLOPS_ORCHESTRATOR_SETTINGS``, else ``<project>/pipelines/orchestrator.yaml``."""
    env = os.environ.get(SETTINGS_ENV, "").strip()
    if env:
        return Path(env).expanduser().resolve()
    return config.project_root() / "pipelines" / "orchestrator.yaml"


@dataclass(frozen=True)
class Settings:
    """What the Dagster definitions are built from (defaults: the committed file's values)."""

    seed: int = 42
    n_rows: int = 2000
    model_name: str = "viewability-dagster"
    start_day: str = "2026-01-05"
    window: int = 3
    retries: int = 2
    retry_delay: float = 2.0
    drift: float = 0.0
    drift_from: str = ""
    drift_days: int = 1
    psi_threshold: float = 0.2
    recent_days: int = 3
    sensor_interval: int = 60
    source: str = "(defaults)"

    def world(self) -> dict[str, Any]:
        """The keyword arguments of :func:`mlops_helpers.steps.publish_day` for the world."""
        return {"drift": self.drift, "drift_from": self.drift_from, "drift_days": self.drift_days}


def _number(kind: type, low: float, high: float, low_open: bool = False):
    """A check: a ``kind`` (int, or float that also takes an int) in [low, high] (low open)."""

    def check(value: Any) -> Any:
        ok_type = isinstance(value, int if kind is int else (int, float))
        if isinstance(value, bool) or not ok_type:
            return None
        if (value <= low if low_open else value < low) or value > high:
            return None
        return float(value) if kind is float else value

    check.describe = (
        f"{'a whole number' if kind is int else 'a number'} "
        f"{'greater than' if low_open else 'from'} {low:g} {'and at most' if low_open else 'to'} "
        f"{high:g}"
    )
    return check


# key in the file -> (field, check, help); a check returns the value or None when it is wrong.
# `None` as a check: the workbook's parameter rule of that name (mlops_helpers.parameters).
TOP = {
    "seed": ("seed", None, "seed of the generated days and of the model"),
    "n_rows": ("n_rows", None, "rows per generated day"),
    "model_name": ("model_name", None, "registered model the assets train and deploy"),
    "start_day": ("start_day", None, "the first daily partition"),
    "window": ("window", _number(int, 1, 60), "days before D that trained_model[D] trains on"),
    "retries": ("retries", _number(int, 0, 10), "RetryPolicy.max_retries of every asset"),
    "retry_delay": ("retry_delay", _number(float, 0, 600), "seconds between attempts"),
}
WORLD = {
    "drift": ("drift", None, "how far the generated days drift"),
    "drift_from": ("drift_from", None, "'' (drift from the start) or the day the drift starts"),
    "drift_days": ("drift_days", None, "days the drift takes to ramp up from drift_from"),
}
SENSOR = {
    "psi_threshold": (
        "psi_threshold",
        _number(float, 0, 5, low_open=True),
        "PSI above which a feature drifted",
    ),
    "recent_days": (
        "recent_days",
        _number(int, 1, 30),
        "latest published days the sensor compares with the champion's training days",
    ),
    "interval": (
        "sensor_interval",
        _number(int, 10, 86_400),
        "seconds between two evaluations of the sensor",
    ),
}
SECTIONS = {"world": WORLD, "sensor": SENSOR}


def _key_lines(path: Path) -> dict[tuple[str, ...], int]:
    """The line each key is written on, as ``(section, key)`` or ``(key,)``."""
    lines: dict[tuple[str, ...], int] = {}
    try:
        root = yaml.compose(path.read_text(), Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return lines  # specs.load_spec has already reported it
    if not isinstance(root, yaml.MappingNode):
        return lines
    for key, value in root.value:
        lines[(key.value,)] = key.start_mark.line + 1
        if isinstance(value, yaml.MappingNode):
            for sub, _ in value.value:
                lines[(key.value, sub.value)] = sub.start_mark.line + 1
    return lines


def load_settings(path: Path | str | None = None) -> Settings:
    """Read and check a settings file; SpecError naming ``file:line`` for any wrong value."""
    path = Path(path) if path else default_path()
    spec = specs.load_spec(path, set(TOP) | set(SECTIONS))
    lines = _key_lines(path)
    values: dict[str, Any] = {}

    def take(node: dict, table: dict, section: str = "") -> None:
        for key in set(node) - set(table) - {specs.LINE} - (set() if section else set(SECTIONS)):
            raise specs.SpecError(
                f"{path}:{lines.get((section, key), node.get(specs.LINE, 1))}: unknown key "
                f"{(section + '.' if section else '') + key!r}; use {sorted(table)}"
            )
        for key, (field, check, help_) in table.items():
            if key not in node:
                continue
            name = f"{section}.{key}" if section else key
            at = f"{path}:{lines.get((section, key) if section else (key,), '?')}"
            value = node[key]
            if check is None:
                with specs.at(at):
                    values[field] = check_parameter(field, value)
                continue
            checked = check(value)
            if checked is None:
                raise specs.SpecError(
                    f"{at}: {name} must be {check.describe} ({help_}), got {value!r}"
                )
            values[field] = checked

    take(spec, TOP)
    for section, table in SECTIONS.items():
        node = spec.get(section, {})
        if not isinstance(node, dict):
            raise specs.SpecError(
                f"{path}:{lines.get((section,), '?')}: {section} must be a mapping of "
                f"{', '.join(table)}, got {node!r}"
            )
        take(node, table, section)
    settings = Settings(**values, source=str(path))
    _check_together(settings, path, lines)
    return settings


def _check_together(settings: Settings, path: Path, lines: dict) -> None:
    """What no single value shows: enough rows to monitor, days in the past."""
    if settings.n_rows < MIN_ROWS_PER_DAY:
        raise specs.SpecError(
            f"{path}:{lines.get(('n_rows',), '?')}: n_rows must be at least {MIN_ROWS_PER_DAY} "
            f"for the drift sensor, got {settings.n_rows}: on smaller days sampling noise "
            "alone reaches a PSI that hides any real shift"
        )
    if dt.date.fromisoformat(settings.start_day) >= dt.date.today():
        raise specs.SpecError(
            f"{path}:{lines.get(('start_day',), '?')}: start_day {settings.start_day} has no "
            "finished day yet (a daily partition exists once its day has ended); use an "
            "earlier day"
        )
    if settings.drift_from and not settings.drift:
        raise specs.SpecError(
            f"{path}:{lines.get(('world', 'drift_from'), '?')}: world.drift_from is set but "
            "world.drift is 0, so nothing drifts; set world.drift or remove drift_from"
        )


def describe() -> list[tuple[str, str]]:
    """``(key, help)`` of every setting, for documentation and the tests."""
    out = [(key, help_) for key, (_, _, help_) in TOP.items()]
    for section, table in SECTIONS.items():
        out += [(f"{section}.{key}", help_) for key, (_, _, help_) in table.items()]
    return out
