"""Worked solutions for notebook 08_testing_in_ci: one function per exercise."""

from __future__ import annotations

import difflib
import re


def exercise_08_1(candidates: dict[str, str], committed: list[str], rerun: list[str]) -> set[str]:
    """Keep the regexes that cover every character that changed in the timestamp cell, and
    touch nothing in the cells that show facts.

    nbval replaces each match in both outputs before comparing them. So a regex makes the
    volatile cell (2) pass only if its matches cover every character that differs between
    the committed and the rerun output ((a) leaves the time of day uncovered). And it keeps
    real changes visible only if it matches nothing in the fact cell (1): ``\\d+`` turns
    "sum of squares 1..5: 55" and "1..10: 385" into the same text, hiding a real change.
    """
    volatile = (committed[2], rerun[2])
    facts = (committed[1], rerun[1])
    return {
        letter
        for letter, regex in candidates.items()
        if _covers_changes(regex, *volatile) and not any(re.search(regex, t) for t in facts)
    }


def _covers_changes(regex: str, a: str, b: str) -> bool:
    """True when every character that differs between ``a`` and ``b`` lies inside a match."""
    opcodes = difflib.SequenceMatcher(a=a, b=b, autojunk=False).get_opcodes()
    for text, side in ((a, 1), (b, 3)):
        spans = [m.span() for m in re.finditer(regex, text)]
        for tag, *bounds in opcodes:
            start, end = bounds[side - 1], bounds[side]
            if tag != "equal" and not any(s <= start and end <= e for s, e in spans):
                return False
    return True


def exercise_08_2(changes: dict, rows, features: tuple[str, ...]) -> set[str]:
    """Keep the changes that leave every column the model reads untouched, row by row.

    A fitted pipeline scores each row from its ``features`` columns alone, so a change is
    invisible to it exactly when those columns keep their values for every row (matched by
    index, so a shuffle changes nothing). An id and the event's date are not features; the
    device and the time on page are, so (b) and (c) must move some scores.
    """
    model_view = rows.loc[:, list(features)]
    return {
        letter
        for letter, change in changes.items()
        if change(rows).loc[rows.index, list(features)].equals(model_view)
    }


def exercise_08_3(add_features) -> None:
    """A test of what add_features promises, on rows written by hand: nulls filled with the
    day's median, the hour from the event time, the rows in the order they came, exactly the
    output columns."""
    import pandas as pd

    from mlops_helpers.etl import OUTPUT_COLUMNS

    rows = pd.DataFrame(
        {
            "impression_id": ["c", "a", "b"],
            "ts": pd.to_datetime(["2026-01-05 13:10", "2026-01-05 09:00", "2026-01-05 22:59"]),
            "page_load_ms": [100.0, None, 300.0],
            "viewable": [1, 0, 1],
            **{
                c: [0, 0, 0]
                for c in OUTPUT_COLUMNS
                if c not in ("impression_id", "ts", "page_load_ms", "viewable", "hour")
            },
        }
    )
    out = add_features(rows)
    assert list(out.columns) == list(OUTPUT_COLUMNS)
    assert list(out["impression_id"]) == ["c", "a", "b"], "rows keep their order"
    assert list(out["page_load_ms"]) == [100.0, 200.0, 300.0], "a null becomes the median"
    assert list(out["hour"]) == [13, 9, 22]
