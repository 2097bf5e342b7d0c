"""The cost side of notebook 09: what the automation is (lines of code, counted from the
repository's files when asked), what it costs a day in computer time against the hand
path, and after how many faults and days it pays for itself, from a team's own hours."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from mlops_helpers import config, etl, manual
from mlops_helpers.proof.faults import Setup

# The automated path, as files of this repository, by part. The hand path is
# mlops_helpers/manual.py: notebooks 01 and 02's hand steps, replayed by notebook 09.
AUTOMATION_FILES = {
    "pipeline": (
        "pipelines/daily.yaml",
        "mlops_helpers/steps.py",  # the step notebooks of pipelines/steps/ only call it
        "mlops_helpers/etl.py",
        "mlops_helpers/workbook/pipeline.py",
    ),
    "contracts": ("mlops_helpers/validation.py",),
    "gate and deployment": (
        "mlops_helpers/registry.py",
        "mlops_helpers/serving.py",
        "mlops_helpers/tracking.py",
    ),
    "tests": (
        "tests/unit/test_etl.py",
        "tests/unit/test_etl_crash.py",
        "tests/unit/test_validation.py",
        "tests/unit/test_registry_unit.py",
        "tests/integration/test_deploy.py",
        "tests/integration/test_registry.py",
        "tests/integration/test_serving.py",
        "tests/integration/test_pipeline.py",
        "tests/unit/test_steps.py",
    ),
}
HAND_FILES = ("mlops_helpers/manual.py",)
DAYS_PER_MONTH = 365.25 / 12


def count_lines(path: Path) -> int:
    """Lines of ``path`` that hold something (blank lines and comment-only lines left out)."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return sum(1 for line in lines if line.strip() and not line.strip().startswith("#"))


def code_size(files: dict[str, tuple[str, ...]], root: Path | None = None) -> pd.DataFrame:
    """One row per file: its part and its lines (:func:`count_lines`), read from ``root``
    (the source checkout). A missing file raises FileNotFoundError naming it."""
    root = Path(root) if root is not None else config.project_root()
    rows = []
    for part, paths in files.items():
        for name in paths:
            path = root / name
            if not path.is_file():
                raise FileNotFoundError(
                    f"{name} is not in {root.name}: the automation's size is counted from "
                    "the source checkout; update proof.costs.AUTOMATION_FILES if it moved"
                )
            rows.append({"part": part, "file": name, "lines": count_lines(path)})
    return pd.DataFrame(rows)


def automation_size(root: Path | None = None) -> pd.DataFrame:
    """Lines per part of the automated path, and of the hand path it replaces."""
    files = {**AUTOMATION_FILES, "hand path (for comparison)": HAND_FILES}
    return (
        code_size(files, root)
        .groupby("part", sort=False)["lines"]
        .agg(["size", "sum"])
        .rename(columns={"size": "files", "sum": "lines"})
    )


def daily_runtime(setup: Setup, repeats: int = 1) -> pd.DataFrame:
    """Computer seconds per day of the clean extracts: the hand ETL of notebook 01 against
    the pipeline's ``etl.run_day`` (each into a fresh folder, best of ``repeats``)."""
    clean = setup.extract()
    hand, automated = [], []
    for i in range(repeats):
        folder = setup.folder("runtime", str(i))
        start = time.perf_counter()
        manual.run_by_hand(clean, folder / manual.OUTPUT_NAME, [])
        hand.append(time.perf_counter() - start)
        start = time.perf_counter()
        etl.run_days(clean.raw, folder / "out", clean.days)
        automated.append(time.perf_counter() - start)
        shutil.rmtree(folder)
    per_day = pd.Series({"manual": min(hand), "automated": min(automated)}) / len(clean.days)
    return pd.DataFrame({"seconds per day": per_day})


@dataclass(frozen=True)
class Team:
    """A team's hours, as the learner sets them in notebook 09's parameters."""

    hours_per_manual_recovery: float
    hours_per_automated_recovery: float
    faults_per_month: float
    hours_to_build: float
    upkeep_hours_per_month: float

    def recovery_hours(self, path: str, manual_steps: int) -> float:
        """A person's hours to recover from one fault: none when nothing needed recovering."""
        if manual_steps == 0:
            return 0.0
        return (
            self.hours_per_automated_recovery
            if path == "automated"
            else self.hours_per_manual_recovery
        )


def person_hours(frame: pd.DataFrame, team: Team) -> pd.Series:
    """A person's hours to recover, per record of the matrix (assumed: the team's hours)."""
    hours = [
        team.recovery_hours(p, s) for p, s in zip(frame["path"], frame["manual_steps"], strict=True)
    ]
    return pd.Series(hours, index=frame.index, name="recover_person_h")


def automated_hours_per_fault(team: Team, caught: int, not_caught: int) -> float:
    """The automated path's hours per fault over a mix of ``caught`` faults (one automated
    recovery each) and ``not_caught`` ones (found late or never: a hand recovery each)."""
    total = caught * team.hours_per_automated_recovery + not_caught * team.hours_per_manual_recovery
    return total / (caught + not_caught)


@dataclass(frozen=True)
class BreakEven:
    """When the automation has paid back its build hours (math.inf: never)."""

    saved_per_fault: float  # hours
    saved_per_month: float  # hours, after upkeep
    faults: float  # faults until the build hours are saved (upkeep left out)
    months: float  # with the upkeep, at the team's faults per month
    days: float


def break_even(team: Team, automated_hours: float) -> BreakEven:
    """The break-even of ``team`` when a fault costs ``automated_hours`` on the automated
    path and ``team.hours_per_manual_recovery`` by hand."""
    saved_per_fault = team.hours_per_manual_recovery - automated_hours
    saved_per_month = team.faults_per_month * saved_per_fault - team.upkeep_hours_per_month
    inf = float("inf")
    faults = team.hours_to_build / saved_per_fault if saved_per_fault > 0 else inf
    months = team.hours_to_build / saved_per_month if saved_per_month > 0 else inf
    return BreakEven(saved_per_fault, saved_per_month, faults, months, months * DAYS_PER_MONTH)
