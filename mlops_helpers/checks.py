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

from mlops_helpers import config
from mlops_helpers.errors import WorkbookInputError


class CheckpointError(AssertionError):
    """A checkpoint in a notebook did not hold."""


def checkpoint(ok: bool, message: str, fix: str = "") -> None:
    """Print ``✅ Checkpoint: message`` when ``ok``; otherwise raise CheckpointError."""
    if not ok:
        raise CheckpointError(f"Checkpoint failed: {message}" + (f". {fix}" if fix else ""))
    print(f"✅ Checkpoint: {message}")


# The answers solution() handed out in this kernel, so a check can tell a revealed
# worked solution from the learner's own answer.
_REVEALED: dict[str, Any] = {}


def exercise(name: str, answer: Any, **context: Any) -> bool:
    """Check the learner's ``answer`` to exercise ``name``: solved, not attempted or not yet.

    The cases come from :mod:`mlops_helpers.exercises` (``context`` holds the notebook
    values a value exercise is checked against); the learner sees which case failed and
    its hint, never the cases' inputs. An answer of ``None``, or a function that still
    raises ``NotImplementedError``, is "not attempted". The check never stops the notebook,
    and it records the outcome in the workspace (``mlops-workbook progress``).
    """
    from mlops_helpers import exercises
    from mlops_helpers.exercises import progress

    item = exercises.get(name)
    outcome, message = _run_cases(name, answer, lambda: item.cases(**context), item.hint)
    revealed = name in _REVEALED and _REVEALED[name] is answer
    if outcome == progress.SOLVED and revealed:
        outcome = progress.REVEALED
        message += " with the worked solution; now try your own"
    print(message)
    try:
        progress.record(name, outcome)
    except (OSError, WorkbookInputError) as exc:  # a record we cannot keep must not stop the lesson
        print(f"(progress not recorded: {exc})")
    return outcome in (progress.SOLVED, progress.REVEALED)


def _run_cases(name: str, answer: Any, build, hint: str) -> tuple[str, str]:
    """Build and run every case; the outcome and the line the learner reads."""
    from mlops_helpers.exercises import progress

    not_attempted = (progress.NOT_ATTEMPTED, f"📝 Exercise {name}: not attempted yet. Hint: {hint}")
    if answer is None:
        return not_attempted
    cases = build()
    for case in cases:
        try:
            got = case.call(answer)
        except NotImplementedError:
            return not_attempted
        except Exception as exc:  # the learner's code failed: say how, never stop the lesson
            return progress.NOT_YET, (
                f"❌ Exercise {name}: not yet, case '{case.label}' raised "
                f"{type(exc).__name__}: {_short(str(exc))}. Hint: {case.hint}"
            )
        try:
            ok = bool(case.accept(got))
        except Exception:  # an answer of the wrong type or shape
            ok = False
        if not ok:
            where = "" if len(cases) == 1 else f" case '{case.label}':"
            return progress.NOT_YET, (
                f"❌ Exercise {name}: not yet,{where} got {_short(case.show(got))}. Hint: {case.hint}"
            )
    count = f" ({len(cases)} cases passed)" if len(cases) > 1 else ""
    return progress.SOLVED, f"✅ Exercise {name}: solved{count}"


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


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
    # A code exercise's solution is the learner's function itself (or the text they write,
    # such as a YAML step); a value exercise's works the value out from the notebook's.
    answer = function if _is_code(name) or not callable(function) else function(**variables)
    _REVEALED[name] = answer
    return answer


def _is_code(name: str) -> bool:
    """True for an exercise whose answer is the learner's function (the solution is one too)."""
    from mlops_helpers import exercises

    try:
        return exercises.get(name).kind == "code"
    except LookupError:  # not registered: solution() still hands out its value
        return False
