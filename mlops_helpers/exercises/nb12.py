"""Exercises of notebook 12 (a live endpoint: canary, shadow, rollback)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mlops_helpers.exercises import Case, Exercise, value_exercise


def _calls(seed: int, shares: dict[str, float], failed: float = 0.0) -> pd.DataFrame:
    """Requests of a load, per phase a ``shares[phase]`` part answered by version "2", the
    rest by "1", a ``failed`` part failed (no version, status the error's name)."""
    rng = np.random.default_rng(seed)
    rows = []
    for phase, share in shares.items():
        for _ in range(int(rng.integers(40, 120))):
            if rng.random() < failed:
                rows.append((phase, "ConnectionResetError", None))
            else:
                rows.append((phase, 200, "2" if rng.random() < share else "1"))
    frame = pd.DataFrame(rows, columns=["phase", "status", "version"])
    frame["failed"] = frame["status"] != 200
    return frame.sample(frac=1.0, random_state=seed).reset_index(drop=True)


def _want(frame: pd.DataFrame, version: str) -> dict[str, float]:
    answered = frame[~frame["failed"]]
    return (answered["version"] == version).groupby(answered["phase"], sort=False).mean().to_dict()


def _same(got, want: dict[str, float]) -> bool:
    try:
        got = dict(got)
    except (TypeError, ValueError):
        return False
    return set(got) == set(want) and all(abs(float(got[p]) - want[p]) < 1e-9 for p in want)


def _cases() -> list[Case]:
    cases = []
    for label, frame, hint in (
        (
            "two phases, no failure",
            _calls(121, {"before": 0.0, "canary": 0.3}),
            "per phase: the share of its answers that came from the version",
        ),
        (
            "a phase of failed requests among them",
            _calls(122, {"canary": 0.5, "promoted": 1.0}, failed=0.2),
            "a failed request was answered by no version: leave it out of the share",
        ),
        (
            "phases in their own order, not sorted",
            _calls(123, {"shadow": 0.0, "canary": 0.1, "after": 1.0}),
            "one share per phase that has requests",
        ),
    ):
        want = _want(frame, "2")
        cases.append(
            Case(
                label,
                lambda fn, f=frame: fn(f.copy(), "2"),
                lambda got, want=want: _same(got, want),
                hint,
                show=lambda got: repr(got)[:200],
            )
        )
    return cases


EXERCISES = [
    Exercise(
        "12.1",
        task="write share_answered_by(calls, version): per phase, the share of its answered "
        "requests that came from version",
        kind="code",
        cases=_cases,
        hint="group the answered requests (failed ones have no version) by phase",
    ),
    value_exercise(
        "12.2",
        task="how many impressions did the shadow and the champion score more than 0.05 apart?",
        hint="scoring.compare_answers gives both answers side by side, one row per impression",
        expected=lambda compared: int(
            (
                compared.filter(like="proba_v").max(axis=1)
                - compared.filter(like="proba_v").min(axis=1)
                > 0.05
            ).sum()
        ),
    ),
]
