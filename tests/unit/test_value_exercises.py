"""Every value exercise (the learner answers with a value worked out from the notebook's
own results) refuses a plausible wrong answer with its hint and accepts the right one. The
contexts are small and made here, so the check is proved on values no notebook printed.
(The code exercises: test_exercises.py; notebooks 00 and 01: test_exercises_00_01.py.)"""

from __future__ import annotations

import json
from types import SimpleNamespace

import pandas as pd
import pytest

from mlops_helpers import config, exercises, training
from tests.support import check_exercise


def _06_context(tmp_path):
    """A saved run of the daily pipeline in which every step completed."""
    from mlops_helpers.workbook import pipeline

    daily_file = config.project_root() / "pipelines" / "daily.yaml"
    overrides = {"seed": "5", "n_rows": "300", "start_day": "2026-02-01", "n_days": "2"}
    steps = pipeline.load_pipeline(daily_file, overrides).steps
    state = {"steps": {s.name: {"status": "ok", "hash": s.fingerprint()} for s in steps}}
    (tmp_path / pipeline.STATE).write_text(json.dumps(state))
    return {"daily_file": daily_file, "overrides": overrides, "run_dir": tmp_path}


def _table():
    return exercises.fresh_table(977, 200, "2026-03-02", 2)


# name -> (context, the right answer, a plausible wrong answer and why it is plausible)
CASES = {
    "02.1": (
        lambda _: {"train": _table().iloc[:150]},
        lambda c: training.data_fingerprint(c["train"])[:12],
        lambda c: training.data_fingerprint(_table())[:12],  # the whole table, not `train`
    ),
    "03.1": (
        lambda _: {
            "outcomes": [
                {"fault": "schema_change", "outcome": "blocked"},
                {"fault": "nulls", "outcome": "quarantined"},
                {"fault": "empty_day", "outcome": "blocked"},
            ]
        },
        lambda c: {"schema_change", "empty_day"},
        lambda c: {"schema_change"},  # forgot that an empty day blocks too
    ),
    "03.2": (
        lambda _: {"quarantined": pd.DataFrame({"reason": ["late row"] * 7})},
        lambda c: 7,
        lambda c: 0,  # "nothing was lost"
    ),
    "04.1": (
        lambda _: {"table": _table()},
        lambda c: {"a", "b"},
        lambda c: {"a"},  # thinks the column order is part of the content
    ),
    "05.1": (
        lambda _: {
            "champion_moves": pd.DataFrame({"version": ["1", "2"], "previous": [None, "1"]})
        },
        lambda c: "1",
        lambda c: "2",  # the champion now, not the one a rollback brings back
    ),
    "06.1": (
        _06_context,
        lambda c: {"train", "deploy"},
        lambda c: {"train"},  # forgot that the steps after a rerun step rerun too
    ),
    "07.1": (
        lambda _: {
            "daily": pd.DataFrame({"psi": [0.004, 0.013, 0.009]}),
            "candidates": (0.005, 0.01, 0.02, 0.05),
        },
        lambda c: 0.01,
        lambda c: 0.02,  # the first threshold above the largest PSI: the one that stays quiet
    ),
    "08.1": (
        lambda _: {
            "candidates": {"a": r"\d+", "b": r"\d{4}-\d\d-\d\dT[\d:.]+", "c": r"run at .*"},
            "committed": ["", "sum 3", "run at 2026-12-03T14:33:56.557476"],
            "rerun": ["", "sum 4", "run at 2026-12-04T09:01:02.000001"],
        },
        lambda c: {"b", "c"},
        lambda c: {"a", "b", "c"},  # \d+ hides the timestamp, and the wrong sum with it
    ),
    "08.2": (
        lambda _: {
            "changes": {"a": "impression_id", "b": "scroll_depth", "c": "ts"},
            "invariant": lambda column: column not in training.FEATURES,
        },
        lambda c: {"a", "c"},
        lambda c: {"a", "b", "c"},  # a feature the model reads cannot be demanded invariant
    ),
    "09.1": (
        lambda _: {
            "records": [
                SimpleNamespace(
                    fault="schema_change", path="automated", outcome="day blocked: schema"
                ),
                SimpleNamespace(fault="nulls", path="automated", outcome="rows quarantined: 12"),
                SimpleNamespace(fault="empty_day", path="manual", outcome="day blocked? no"),
            ]
        },
        lambda c: {"schema_change"},
        lambda c: {"schema_change", "nulls"},  # a quarantine is not a blocked day
    ),
    "09.2": (
        lambda _: {
            "frame": pd.DataFrame(
                {"path": ["manual", "manual", "automated"], "manual_steps": [3, 5, 1]}
            )
        },
        lambda c: (8, 1),
        lambda c: (2, 1),  # counted the faults, not the steps
    ),
    "10.1": (
        lambda _: {},
        lambda c: 6,
        lambda c: 9,  # every partition of the backfill, the first `window` too
    ),
    "11.2": (
        lambda _: {
            "decisions": pd.DataFrame(
                {
                    "drifted": ["-", "page_load_ms", "scroll_depth", "-"],
                    "decision": ["no retrain", "no retrain", "retrain", "retrain"],
                },
                index=["2026-03-01", "2026-03-02", "2026-03-03", "2026-03-04"],
            )
        },
        lambda c: ["2026-03-02"],
        lambda c: ["2026-03-02", "2026-03-03"],  # every drifted day: the drift-only trigger itself
    ),
    "12.2": (
        lambda _: {
            "compared": pd.DataFrame(
                {
                    "request_id": ["a", "b", "c", "d"],
                    "impression_id": ["i1", "i2", "i3", "i4"],
                    "proba_v1": [0.20, 0.50, 0.70, 0.40],
                    "proba_v2": [0.30, 0.52, 0.60, 0.33],
                }
            )
        },
        lambda c: 3,
        lambda c: 1,  # only where the challenger scored higher: the gap goes both ways
    ),
}


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_plausible_wrong_value_is_refused_with_the_hint_and_the_right_one_solved(name, tmp_path):
    make_context, right, wrong = CASES[name]
    context = make_context(tmp_path)
    hint = exercises.get(name).hint
    accepted, text = check_exercise(name, wrong(context), **context)
    assert not accepted and text.startswith(f"❌ Exercise {name}: not yet"), text
    assert hint in text, text
    accepted, text = check_exercise(name, right(context), **context)
    assert accepted and text.startswith(f"✅ Exercise {name}: solved"), text


def test_every_value_exercise_has_a_wrong_answer_tried():
    tried_elsewhere = {"00.1", "00.2", "01.2"}  # test_exercises_00_01.py
    values = {n for n, e in exercises.catalogue().items() if e.kind == "value"}
    assert values - tried_elsewhere == set(CASES)
