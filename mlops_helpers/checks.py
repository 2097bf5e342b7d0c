"""Checkpoints and exercise checks a learner reads in the notebooks.

A checkpoint is an assertion with a sentence: it prints what held, or stops the notebook
with what went wrong. An exercise check never stops the notebook: it says solved, not
yet attempted, or not yet right with a hint, so a batch run of an untouched notebook
still succeeds.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from mlops_helpers import config


class CheckpointError(AssertionError):
    """A checkpoint in a notebook did not hold."""


def checkpoint(ok: bool, message: str, fix: str = "") -> None:
    """Print ``✅ Checkpoint: message`` when ``ok``; otherwise raise CheckpointError."""
    if not ok:
        raise CheckpointError(f"Checkpoint failed: {message}" + (f". {fix}" if fix else ""))
    print(f"✅ Checkpoint: {message}")


def exercise(name: str, answer: Any, expected: Any, hint: str) -> bool:
    """Report an exercise: solved, not attempted (``answer is None``) or wrong, with a hint."""
    if answer is None:
        print(f"📝 Exercise {name}: not attempted yet. Hint: {hint}")
        return False
    if _matches(answer, expected):
        print(f"✅ Exercise {name}: solved")
        return True
    print(f"❌ Exercise {name}: not yet, got {answer!r}. Hint: {hint}")
    return False


def solutions_dir() -> Path:
    """The folder of worked solutions, one ``NN_name.py`` per notebook."""
    return config.project_root() / "solutions"


def solution(name: str, **variables: Any) -> Any:
    """The worked answer to exercise ``name`` (e.g. ``"04.1"``), computed from ``variables``.

    Solutions live outside the notebooks, in ``solutions/NN_name.py``, as one function
    ``exercise_NN_K`` per exercise that takes the notebook values it needs by keyword. A
    learner reveals one on purpose: open the file, or run the notebook with
    ``show_solutions=True`` (CI does, to prove that every check accepts its solution).
    """
    number, _, part = name.partition(".")
    if not (number.isdigit() and part.isdigit()):
        raise ValueError(f"exercise name must look like '04.1', got {name!r}")
    matches = sorted(solutions_dir().glob(f"{int(number):02d}_*.py"))
    if not matches:
        raise FileNotFoundError(
            f"no solutions file for exercise {name} in {config.show_path(solutions_dir())}; "
            f"expected solutions/{int(number):02d}_<notebook name>.py"
        )
    spec = importlib.util.spec_from_file_location(f"solutions_{int(number):02d}", matches[0])
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    function = getattr(module, f"exercise_{int(number):02d}_{int(part)}", None)
    if function is None:
        raise LookupError(
            f"{config.show_path(matches[0])} has no function exercise_{int(number):02d}_{int(part)} "
            f"for exercise {name}"
        )
    return function(**variables)


def _matches(answer: Any, expected: Any) -> bool:
    """``answer == expected``, also for arrays, Series and frames (compared as a whole)."""
    try:
        return bool(answer == expected)
    except (TypeError, ValueError):  # an element-wise result has no single truth value
        try:
            return bool(np.array_equal(np.asarray(answer), np.asarray(expected)))
        except (TypeError, ValueError):
            return False
