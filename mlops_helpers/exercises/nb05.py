"""Exercises of notebook 05 (automated deployment)."""

from __future__ import annotations

import numpy as np
import pandas as pd

from mlops_helpers.exercises import Case, Exercise, value_exercise

TOLERANCE = 0.02  # the notebook's stated tolerance: a drop in ROC AUC larger than this


def _evaluation(seed: int, worse: dict[str, float], sizes: dict[str, int]):
    """An evaluation frame by device, the champion's and the challenger's probabilities.

    The challenger is a little better than the champion everywhere except the devices in
    ``worse``, where its scores carry that much more noise."""
    rng = np.random.default_rng(seed)
    device = np.repeat(list(sizes), list(sizes.values()))
    y = (rng.random(len(device)) < 0.4).astype(int)
    signal = y + rng.normal(0, 1.0, len(y))
    champion = 1 / (1 + np.exp(-(signal + rng.normal(0, 0.6, len(y)))))
    extra = np.array([worse.get(d, 0.0) for d in device])
    challenger = 1 / (
        1 + np.exp(-(signal + rng.normal(0, 0.4, len(y)) + rng.normal(0, 1, len(y)) * extra))
    )
    frame = pd.DataFrame(
        {"device": device, "viewable": y, "position": rng.choice(["atf", "btf"], len(y))}
    )
    return frame, champion, challenger


def _slice_case(label, seed, worse, sizes, expected, hint, one_class: str | None = None) -> Case:
    def call(worse_slices):
        frame, champion, challenger = _evaluation(seed, worse, sizes)
        if one_class:  # every row of that slice viewable: its ROC AUC is undefined
            frame.loc[frame["device"] == one_class, "viewable"] = 1
        return worse_slices(frame, champion, challenger, "device")

    accept = lambda got: isinstance(got, set) and got == expected  # noqa: E731
    return Case(label, call, accept, hint)


EVEN = {"desktop": 600, "mobile": 600, "tablet": 600}
FEW_MOBILE = {"desktop": 900, "mobile": 300, "tablet": 900}

EXERCISES = [
    value_exercise(
        "05.1",
        task="say which version a rollback would bring back now",
        hint="rollback undoes the champion's last move: read the 'previous' column of the last champion row",
        expected=lambda champion_moves: champion_moves.iloc[-1]["previous"],
    ),
    Exercise(
        "05.2",
        task="write worse_slices(...): a gate check that no slice gets worse",
        kind="code",
        cases=lambda: [
            _slice_case(
                "a challenger better on every device",
                51,
                {},
                EVEN,
                set(),
                "no slice dropped: return an empty set",
            ),
            _slice_case(
                "better overall, worse on mobile",
                55,
                {"mobile": 1.5},
                FEW_MOBILE,
                {"mobile"},
                "compare ROC AUC slice by slice, not over all rows",
            ),
            _slice_case(
                "slightly worse on tablet, within the tolerance",
                53,
                {"tablet": 0.8},
                EVEN,
                set(),
                f"only a drop larger than {TOLERANCE} counts",
            ),
            _slice_case(
                "a slice with only viewable rows",
                55,
                {"mobile": 1.5},
                FEW_MOBILE,
                {"mobile"},
                "a slice with one class has no ROC AUC: leave it out, do not fail",
                one_class="tablet",
            ),
        ],
        hint=f"group the rows by `column`; flag a slice whose challenger ROC AUC is more than {TOLERANCE} below the champion's",
    ),
]
