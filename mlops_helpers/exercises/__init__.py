"""The exercises of the notebooks: what the learner writes and the cases that check it.

An exercise is checked against *cases*, each a call of the learner's answer and a test
of what came back. For an exercise where the learner writes code, the cases are inputs
the notebook never prints (they live here, one module per notebook, ``nbNN.py``), so the
answer cannot be read off an earlier output: only code that does the job passes. Each
failed case is named, with a hint, so "not yet" says where to look.

Reading a module here before trying is like reading ``solutions/``: allowed, and a
spoiler. :func:`mlops_helpers.checks.exercise` runs the cases; ``mlops-workbook progress``
lists every exercise and what this learner's own runs recorded (:mod:`.progress`).
"""

from __future__ import annotations

import functools
import importlib
import pkgutil
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd


@dataclass(frozen=True)
class Case:
    """One check of an answer: ``accept(call(answer))`` must be true.

    ``label`` says what the case is ("a day sent in seconds"); ``hint`` what to look at
    when it fails. ``show`` turns what came back into the short text the learner sees.
    """

    label: str
    call: Callable[[Any], Any]
    accept: Callable[[Any], bool]
    hint: str
    show: Callable[[Any], str] = repr


@dataclass(frozen=True)
class Exercise:
    """An exercise of a notebook: its name ("03.3"), what the learner writes, its cases.

    ``kind`` is ``"code"`` when the answer is a function (or text such as YAML) the
    learner writes, ``"value"`` when it is a value they work out. ``cases`` builds the
    cases from the notebook values the check is given (code exercises need none).
    """

    name: str
    task: str
    kind: str
    cases: Callable[..., list[Case]]
    hint: str

    @property
    def notebook(self) -> str:
        return self.name.partition(".")[0]


def value(expected: Any, hint: str, label: str = "your answer") -> list[Case]:
    """The single case of a value exercise: the answer equals ``expected``."""
    return [Case(label, lambda answer: answer, lambda got: matches(got, expected), hint)]


def value_exercise(name: str, task: str, hint: str, expected: Callable[..., Any]) -> Exercise:
    """An exercise whose answer is a value; ``expected(**context)`` works out the right one
    from the notebook values the check is given, here rather than in the notebook's cell."""
    return Exercise(name, task, "value", lambda **context: value(expected(**context), hint), hint)


def fresh_table(seed: int, n_rows: int, start_day: str, n_days: int = 1) -> pd.DataFrame:
    """A clean training table built in memory (generator, then the automated ETL's
    transform), for cases: seeds the notebooks never use give rows no notebook has shown."""
    return _table(seed, n_rows, start_day, n_days).copy()


@functools.lru_cache(maxsize=8)
def _table(seed: int, n_rows: int, start_day: str, n_days: int) -> pd.DataFrame:
    from mlops_helpers import data, etl

    placements = data.generate_placements(seed)
    days = data.day_range(start_day, n_days)
    parts = [
        etl.transform_day(data.generate_day(seed, n_rows, d, placements=placements), placements)
        for d in days
    ]
    return pd.concat([p.table for p in parts], ignore_index=True)


def matches(answer: Any, expected: Any) -> bool:
    """``answer == expected``, also for arrays, Series and frames (compared as a whole)."""
    try:
        return bool(answer == expected)
    except (TypeError, ValueError):  # an element-wise result has no single truth value
        try:
            return bool(np.array_equal(np.asarray(answer), np.asarray(expected)))
        except (TypeError, ValueError):
            return False


def catalogue() -> dict[str, Exercise]:
    """Every exercise of the workbook by name, in notebook order (from the ``nbNN`` modules)."""
    found: dict[str, Exercise] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        if info.name.startswith("nb") and info.name[2:].isdigit():
            module = importlib.import_module(f"{__name__}.{info.name}")
            for item in module.EXERCISES:
                found[item.name] = item
    return dict(sorted(found.items(), key=lambda kv: tuple(map(int, kv[0].split(".")))))


def get(name: str) -> Exercise:
    """The exercise called ``name`` (e.g. ``"03.3"``); LookupError naming the known ones."""
    number = name.partition(".")[0]
    try:
        module = importlib.import_module(f"{__name__}.nb{number}")
    except ModuleNotFoundError:
        module = None
    for item in getattr(module, "EXERCISES", ()):
        if item.name == name:
            return item
    known = ", ".join(catalogue())
    raise LookupError(f"no exercise {name!r} in mlops_helpers/exercises; known: {known}")
