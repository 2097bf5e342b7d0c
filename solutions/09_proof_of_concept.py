"""Worked solutions for notebook 09_proof_of_concept (try each exercise yourself first)."""

from __future__ import annotations

import pandas as pd


def exercise_09_1(frame: pd.DataFrame) -> set[str]:
    """The faults the automated path caught by blocking the whole day.

    A contract rule about the *shape* of an extract (its exact columns, having rows at all)
    cannot be applied row by row: if a column is renamed, no row of that day can be trusted,
    and an empty extract has no rows to quarantine. So the pipeline blocks the whole day,
    and its check says so ("..., day blocked"). Every other data fault breaks single rows,
    which are quarantined with a reason while the rest of the day is published.
    """
    automated = frame[frame["path"] == "automated"]
    return set(automated.loc[automated["check"].str.endswith("day blocked"), "fault"])


def exercise_09_2(verdicts: pd.DataFrame) -> tuple[int, int]:
    """Manual steps to recover from every fault of the matrix, (by hand, automated).

    By hand, every data fault means notebook 01's hand ETL again: 3 steps for the run
    (read placements, concatenate, write) plus 7 for each day (read impressions, read
    labels, join placements, join labels, select columns, fill, stamp the day), so
    3 + 7 * n_days. Every model fault means a retrain and copy, the steps of
    ``manual.DEPLOYMENT_CHECKLIST`` from "sample and split the rows" to "pickle the model
    into production" (4), plus "query the server by hand": 5. Automated, a data fault needs
    one command (rerun the day once the fixed extract is there), and a model fault none:
    the gate or the smoke test stopped it before the champion moved. The per-fault table of
    section 7 has both counts in its 'manual steps' and 'automated steps' columns; add each
    column up.
    """
    return int(verdicts["manual steps"].sum()), int(verdicts["automated steps"].sum())


def exercise_09_3(
    build_hours: float,
    upkeep_hours_per_month: float,
    faults_per_month: float,
    manual_hours_per_fault: float,
    automated_hours_per_fault: float,
) -> float:
    """Months until the hours saved pay back the hours spent building the automation; it
    never pays (math.inf) when what it saves each month does not exceed its upkeep."""
    import math

    saved = faults_per_month * (manual_hours_per_fault - automated_hours_per_fault)
    saved -= upkeep_hours_per_month
    if saved <= 0:
        return math.inf
    return build_hours / saved
