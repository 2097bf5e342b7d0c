"""Checkpoints and exercise checks a learner reads in the notebooks.

A checkpoint is an assertion with a sentence: it prints what held, or stops the notebook
with what went wrong. An exercise check never stops the notebook: it says solved, not
yet attempted, or not yet right with a hint, so a batch run of an untouched notebook
still succeeds.
"""

from __future__ import annotations

from typing import Any

import numpy as np


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


def _matches(answer: Any, expected: Any) -> bool:
    """``answer == expected``, also for arrays, Series and frames (compared as a whole)."""
    try:
        return bool(answer == expected)
    except (TypeError, ValueError):  # an element-wise result has no single truth value
        try:
            return bool(np.array_equal(np.asarray(answer), np.asarray(expected)))
        except (TypeError, ValueError):
            return False
