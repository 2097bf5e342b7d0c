"""proof, the parts a sceptical colleague asks about: the careful manual baseline, the faults
no rule was written for, and the cost side (size, runtime, break-even), on tiny data."""

from __future__ import annotations

import math

import pandas as pd
import pytest

from mlops_helpers import data, manual, proof, scenario
from mlops_helpers.checks import solution
from mlops_helpers.parameters import ParameterError, check_parameter

N_ROWS, N_DAYS = 600, 2


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLOPS_WORKBOOK_HOME", str(tmp_path_factory.mktemp("ws")))
        yield proof.Setup(5, N_ROWS, "2026-03-02", N_DAYS, proof.fresh_run_dir("honest"))


# ---------------------------------------------------------------- careful manual path


@pytest.mark.parametrize(
    ("fault", "caught_by"),
    [
        ("nulls", "assert: no nulls in key columns"),
        ("out_of_range", "assert: scroll_depth in [0, 1]"),
        ("empty_day", "assert: rows > 0"),
        ("schema_change", "-"),
        ("duplicates", "-"),
        ("late_rows", "-"),
        ("unknown_category", "-"),
    ],
)
def test_the_careful_asserts_catch_some_data_faults_and_miss_the_rest(setup, fault, caught_by):
    record = proof.careful_data_fault(setup, fault)
    assert (record.path, record.check, record.caught) == ("careful", caught_by, caught_by != "-")
    # recovery is notebook 01's hand run again, whatever the asserts did
    assert record.manual_steps == 3 + 7 * N_DAYS and record.restored
    if record.caught:
        assert record.detect_s > 0 and record.outcome.startswith("the run stopped at the assert")
    else:
        assert math.isnan(record.detect_s) and record.outcome.startswith("every assert passed; ")


def test_the_careful_asserts_pass_every_clean_day(setup):
    proof.check_by_hand(setup.extract())  # raises AssertionError if an assert fires


def test_failed_asserts_names_each_assert():
    impressions = pd.DataFrame(
        {"impression_id": ["a"], "placement_id": ["P001"], "device": ["mobile"],
         "scroll_depth": [0.5], "page_load_ms": [float("nan")]}
    )  # fmt: skip
    labels = pd.DataFrame({"impression_id": ["a"], "viewable": [1]})
    assert proof.failed_asserts(impressions, labels) == []  # a missing page load is allowed
    assert proof.failed_asserts(impressions.assign(page_load_ms=-1.0), labels) == [
        "page_load_ms >= 0"
    ]
    assert proof.failed_asserts(impressions, labels.assign(viewable=2)) == ["viewable is 0 or 1"]
    assert proof.failed_asserts(impressions.iloc[0:0], labels) == ["rows > 0"]
    assert set(proof.CAREFUL_ASSERTS) >= {"rows > 0", "no nulls in key columns"}


def test_careful_model_faults(setup):
    hand = proof.deploy_by_hand(setup)
    try:
        regressed, broken = (proof.careful_model_fault(f, hand, 5) for f in proof.MODEL_FAULTS)
    finally:
        hand.stop()
    # the AUC assert stops the shuffled labels before the copy: production untouched
    assert (regressed.caught, regressed.manual_steps, regressed.restored) == (True, 0, True)
    assert regressed.check == "assert: held-out AUC >= floor"
    # the server assert sees the broken model only once it is live; the old model is gone
    assert (broken.caught, broken.check) == (True, "assert: the server answers 200")
    assert broken.manual_steps == 5 and not broken.restored
    assert "500" in broken.outcome


# --------------------------------------------------------- faults no rule was written for


def test_blind_spots_are_not_faults_of_the_generator():
    assert set(proof.BLIND_SPOTS).isdisjoint(scenario.FAULTS)
    assert set(proof.BLIND_SPOTS).isdisjoint(proof.MATRIX)
    assert set(proof.BLIND_SPOT_DESCRIPTIONS) == set(proof.BLIND_SPOTS)
    with pytest.raises(ValueError, match="unknown blind spot 'gremlins'"):
        proof.blind_spot_extract(None, "gremlins")


def test_a_shift_is_caught_by_monitoring_and_swapped_labels_by_nothing(setup):
    train, _ = proof.model_frames(setup)
    from mlops_helpers import training

    model = training.fit_and_evaluate(train, 5).model
    blind = proof.blind_spots(setup, train, model)
    assert list(blind.index) == list(proof.BLIND_SPOTS)
    assert (blind["careful asserts"] == "passed").all()
    assert (blind["contract"] == "passed: day published").all()
    slow, swapped = blind.loc["slow_page_loads"], blind.loc["swapped_labels"]
    assert slow["caught by"] == "monitoring, after publication"
    assert slow["worst_feature"] == "page_load_ms" and slow["max_psi"] > 0.2
    assert swapped["caught by"] == "nothing" and swapped["max_psi"] < 0.2
    assert swapped["roc_auc"] < swapped["clean roc_auc"]


def test_a_blind_spot_changes_only_what_it_says(setup):
    clean = setup.extract()
    day = clean.days[-1].isoformat()
    raw = {f: pd.read_csv(clean.raw / f"day={day}" / f) for f in ("impressions.csv", "labels.csv")}
    slow = proof.blind_spot_extract(setup, "slow_page_loads")
    imp = pd.read_csv(slow.raw / f"day={day}" / "impressions.csv")
    ratio = (imp["page_load_ms"] / raw["impressions.csv"]["page_load_ms"]).dropna()
    assert ratio.between(1.29, 1.31).all()
    assert imp.drop(columns="page_load_ms").equals(
        raw["impressions.csv"].drop(columns="page_load_ms")
    )
    swapped = proof.blind_spot_extract(setup, "swapped_labels")
    labels = pd.read_csv(swapped.raw / f"day={day}" / "labels.csv")
    clean_labels = raw["labels.csv"]
    assert labels["viewable"].sum() == clean_labels["viewable"].sum()  # as many viewable
    changed = (labels["viewable"] != clean_labels["viewable"]).mean()
    assert 0 < changed <= 0.05
    # the earlier days are the clean ones, byte for byte
    first = clean.days[0].isoformat()
    for f in ("impressions.csv", "labels.csv"):
        assert (swapped.raw / f"day={first}" / f).read_bytes() == (
            clean.raw / f"day={first}" / f
        ).read_bytes()


# ------------------------------------------------------------------------- cost side


def test_automation_size_counts_the_repository_files():
    size = proof.automation_size()
    assert list(size.index) == [*proof.AUTOMATION_FILES, "hand path (for comparison)"]
    assert (size["lines"] > 0).all()
    assert size.loc["tests", "files"] == len(proof.AUTOMATION_FILES["tests"])
    assert size.loc["hand path (for comparison)", "lines"] == proof.count_lines(
        __import__("pathlib").Path(manual.__file__)
    )


def test_count_lines_leaves_out_blank_and_comment_lines(tmp_path):
    path = tmp_path / "x.py"
    path.write_text("# a comment\n\nx = 1  # counted\n   \n    # indented comment\ny = 2\n")
    assert proof.count_lines(path) == 2


def test_a_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="pipelines/daily.yaml is not in"):
        proof.code_size({"pipeline": ("pipelines/daily.yaml",)}, root=tmp_path)


def test_daily_runtime_times_both_paths_per_day(setup):
    runtime = proof.daily_runtime(setup, repeats=1)
    assert list(runtime.index) == ["manual", "automated"]
    assert (runtime["seconds per day"] > 0).all()
    assert not (setup.run_dir / "runtime" / "0").exists()  # each timed run is cleaned up


TEAM = proof.Team(
    hours_per_manual_recovery=6.0,
    hours_per_automated_recovery=0.5,
    faults_per_month=4.0,
    hours_to_build=160.0,
    upkeep_hours_per_month=4.0,
)


def test_break_even():
    pays = proof.break_even(TEAM, 0.5)
    assert pays.saved_per_fault == 5.5 and pays.saved_per_month == 4 * 5.5 - 4
    assert pays.faults == pytest.approx(160 / 5.5)
    assert pays.months == pytest.approx(160 / 18)
    assert pays.days == pytest.approx(pays.months * 365.25 / 12)
    # the same months as exercise 09.3's worked solution, for the same hours
    months = solution("09.3")(160.0, 4.0, 4.0, 6.0, 0.5)
    assert pays.months == pytest.approx(months)


def test_break_even_never_when_nothing_is_saved():
    never = proof.break_even(TEAM, 6.0)
    assert math.isinf(never.faults) and math.isinf(never.months) and math.isinf(never.days)
    upkeep = proof.Team(6.0, 0.5, 0.5, 10.0, 10.0)  # saves 2.75 h a month, costs 10
    assert math.isinf(proof.break_even(upkeep, 0.5).months)


def test_faults_not_caught_cost_a_hand_recovery():
    assert proof.automated_hours_per_fault(TEAM, 9, 0) == 0.5
    assert proof.automated_hours_per_fault(TEAM, 9, 2) == pytest.approx((9 * 0.5 + 2 * 6) / 11)


def test_person_hours_use_the_teams_hours_not_the_computers_seconds():
    frame = pd.DataFrame(
        {"path": ["manual", "careful", "automated", "automated"], "manual_steps": [24, 0, 1, 0]}
    )
    assert list(proof.person_hours(frame, TEAM)) == [6.0, 0.0, 0.5, 0.0]


@pytest.mark.parametrize(
    "name",
    [
        "hours_per_manual_recovery",
        "hours_per_automated_recovery",
        "faults_per_month",
        "hours_to_build",
        "upkeep_hours_per_month",
    ],
)
def test_team_hours_are_parameters_with_rules(name):
    assert check_parameter(name, 3) == 3.0
    with pytest.raises(ParameterError, match=f"parameter {name} must be a float from 0.0"):
        check_parameter(name, -1.0)


# ----------------------------------------------------- steps a person performs, and 09.2


def test_the_worked_solution_of_09_2_counts_the_checklists_steps():
    """solutions/09's 09.2 adds the matrix's steps: 3 + 7 a day per data fault (notebook 01)
    and, per model fault, the checklist from the split to the pickle plus a query."""
    retrain = manual.DEPLOYMENT_CHECKLIST[1:5]
    assert retrain[0].startswith("sample and split") and retrain[-1].startswith("pickle")
    per_model = len(retrain) + 1
    steps = [3 + 7 * N_DAYS] * len(data.FAULTS) + [per_model] * len(proof.MODEL_FAULTS)
    verdicts = pd.DataFrame(
        {"manual steps": steps, "automated steps": [1] * len(data.FAULTS) + [0, 0]},
        index=list(proof.MATRIX),
    )
    by_hand, automated = solution("09.2", verdicts=verdicts)
    assert by_hand == 7 * (3 + 7 * N_DAYS) + 2 * 5 and automated == len(data.FAULTS)


def test_manual_model_recovery_is_the_checklists_steps(setup):
    hand = proof.deploy_by_hand(setup)
    try:
        record = proof.manual_model_fault("regressed_model", hand, 5)
    finally:
        hand.stop()
    assert [s["step"] for s in hand.checklist] == list(manual.DEPLOYMENT_CHECKLIST)
    assert record.manual_steps == len(manual.DEPLOYMENT_CHECKLIST[1:5]) + 1
