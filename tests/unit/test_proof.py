"""proof: the fault matrix of notebook 09 on tiny data, without MLflow or a scoring server;
the summary page is one self-contained file."""

from __future__ import annotations

import math
from types import SimpleNamespace

import pandas as pd
import pytest

from mlops_helpers import data, manual, proof, training
from mlops_helpers.parameters import ParameterError, check_parameter

N_ROWS, N_DAYS = 400, 2


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLOPS_WORKBOOK_HOME", str(tmp_path_factory.mktemp("ws")))
        yield proof.Setup(5, N_ROWS, "2026-03-02", N_DAYS, proof.fresh_run_dir("unit"))


def test_the_matrix_is_every_data_fault_and_two_model_faults():
    assert (*data.FAULTS, "regressed_model", "breaks_in_serving") == proof.MATRIX
    assert set(proof.FAULT_DESCRIPTIONS) >= set(proof.MATRIX)


@pytest.mark.parametrize("fault", data.FAULTS)
def test_the_manual_etl_misses_every_data_fault_and_reruns_every_step(setup, fault):
    record = proof.manual_data_fault(setup, fault)
    assert (record.fault, record.path, record.caught, record.check) == (fault, "manual", False, "-")
    assert math.isnan(record.detect_s) and record.recover_s > 0
    assert record.manual_steps == 3 + 7 * N_DAYS  # notebook 01's checklist for N_DAYS days
    assert record.restored and record.outcome.startswith("no error; ")


@pytest.mark.parametrize("fault", data.FAULTS)
def test_the_pipeline_catches_every_data_fault_and_one_rerun_restores_the_day(setup, fault):
    record = proof.automated_data_fault(setup, fault)
    assert (record.fault, record.path, record.caught) == (fault, "automated", True)
    blocked = fault in ("schema_change", "empty_day")
    assert record.check.endswith("day blocked") == blocked
    assert record.check.startswith("data contract" if blocked else "quarantine: ")
    assert record.detect_s > 0 and record.recover_s > 0 and record.manual_steps == 1
    assert record.restored, "the rerun after the fix must publish the clean day's bytes"


def test_a_fault_that_changes_nothing_is_reported_as_missed(setup, monkeypatch):
    """Caught means something beyond the everyday mess: a clean extract is not 'caught'."""
    monkeypatch.setattr(proof.Setup, "extract", lambda self, fault="none": _clean(self))
    record = proof.automated_data_fault(setup, "duplicates")
    assert (record.caught, record.check) == (False, "-") and math.isnan(record.detect_s)


def _clean(setup):
    from mlops_helpers import etl

    return etl.dataset(setup.seed, setup.n_rows, setup.start_day, setup.n_days, "none")


def test_model_faults_by_hand_go_live_without_an_error(setup):
    hand = proof.deploy_by_hand(setup)
    try:
        records = [proof.manual_model_fault(f, hand, seed=5) for f in proof.MODEL_FAULTS]
    finally:
        hand.stop()
    assert not hand.server.thread.is_alive()
    assert [step["step"] for step in hand.checklist] == [
        "get the training table",
        "sample and split the rows (no seed)",
        "fit the model",
        "check the held-out AUC by eye",
        "pickle the model into production",
        "start the hand-written server",
        "query the server by hand",
        "stop the server",
    ]
    regressed, broken = records
    assert not regressed.caught and not broken.caught
    assert broken.outcome == "no error; every request now answered 500"
    # recovery retrains unseeded: a different model from the one before the fault
    assert not regressed.restored and not broken.restored
    assert regressed.manual_steps == broken.manual_steps == 5


def test_faulty_training_rows():
    table = pd.DataFrame({"scroll_depth": [0.1, 0.2, 0.3, 0.4], training.TARGET: [0, 0, 1, 1]})
    regressed = proof.faulty_training("regressed_model", table, seed=1)
    assert sorted(regressed[training.TARGET]) == [0, 0, 1, 1]  # same labels, other rows
    assert list(proof.faulty_training("breaks_in_serving", table, 1)) == [
        "scroll_depth_pct",
        training.TARGET,
    ]
    with pytest.raises(ValueError, match="unknown model fault 'gremlins'"):
        proof.faulty_training("gremlins", table, 1)


def test_a_seeded_retrain_is_the_same_model_an_unseeded_one_is_not(setup):
    train, gate_frame = proof.model_frames(setup)
    assert gate_frame["ts"].min() > train["ts"].max()
    repro = proof.reproducibility(train, seed=5)
    assert repro.loc["automated", "identical"] and not repro.loc["manual", "identical"]
    assert repro.loc["automated", "first"] == repro.loc["automated", "second"]


def _records() -> list[proof.Record]:
    rows = []
    for fault in reversed(proof.MATRIX):  # matrix() puts them in order
        rows.append(proof.Record(fault, "automated", True, "a <check>", 0.5, 0.0, 0, True, "ok"))
        rows.append(
            proof.Record(fault, "manual", False, "-", math.nan, 1.0, 24, False, "no error; x < y")
        )
    return rows


def test_matrix_verdicts_and_times():
    frame = proof.matrix(_records())
    assert list(frame["fault"]) == [f for f in proof.MATRIX for _ in ("manual", "automated")]
    assert list(frame["path"][:2]) == ["manual", "automated"]
    careful = proof.Record("nulls", "careful", True, "assert: x", 0.1, 1.0, 24, True, "stopped")
    three = proof.matrix([*_records(), careful])
    assert list(three.loc[three["fault"] == "nulls", "path"]) == list(proof.PATHS)
    assert proof.PATHS == ("manual", "careful", "automated")
    verdicts = proof.verdicts(frame)
    assert list(verdicts.index) == list(proof.MATRIX)
    assert set(verdicts["manual"]) == {"missed"} and set(verdicts["automated"]) == {"caught"}
    assert verdicts["manual steps"].sum() == 24 * len(proof.MATRIX)
    times = proof.times(frame)
    assert times["manual detect s"].isna().all() and (times["automated detect s"] == 0.5).all()


def test_summary_page_is_self_contained_and_holds_the_table(tmp_path):
    import matplotlib.pyplot as plt

    frame = proof.matrix(_records())
    team = proof.Team(6.0, 0.5, 4.0, 160.0, 4.0)
    fig = proof.summary_figure(frame, team)
    try:
        page = proof.write_summary(
            tmp_path, frame, fig, {"faults caught": "9 & 0"}, "PoC <test>", team
        )
    finally:
        plt.close(fig)
    text = page.read_text()
    assert page.name == proof.SUMMARY_PAGE and text.startswith("<!DOCTYPE html>")
    assert "<table>" in text and text.count("<tr>") == 1 + len(frame)
    assert all(f"<td>{fault}</td>" in text for fault in proof.MATRIX)
    assert "data:image/png;base64," in text
    for external in ("src='http", 'src="http', "<script", "<link", "url("):
        assert external not in text
    # text from the records is escaped, never taken as markup
    assert "PoC &lt;test&gt;" in text and "a &lt;check&gt;" in text and "9 &amp; 0" in text
    assert "never" in text  # a missed fault has no detection time
    # a hand recovery is shown in a person's hours, never only in the computer's seconds
    assert "recover (person, assumed)" in text and "<td>6 h</td>" in text


def test_headline_puts_the_automated_path_first():
    frame = proof.matrix(_records())
    repro = pd.DataFrame(
        {"identical": [False, True]}, index=pd.Index(proof.TRAINING_PATHS, name="path")
    )
    hand = SimpleNamespace(seconds=1.25, checklist=[{}] * 8)
    facts = proof.headline(frame, repro, hand, deploy_seconds=7.04, run_seconds=21.0)
    assert facts["faults caught"] == "automated 9 of 9, manual 0 of 9"
    assert facts["manual steps to recover from every fault"] == "automated 0, manual 216"
    assert facts["the same model when retrained on the same data"] == "automated yes, manual no"
    assert facts["deployment lead time"].startswith("automated 7.0 s in one call")
    assert "manual 1.2 s of computer time over 8 steps" in facts["deployment lead time"]


def test_save_matrix_round_trips(tmp_path):
    frame = proof.matrix(_records())
    back = pd.read_csv(proof.save_matrix(frame, tmp_path))
    assert back["caught"].dtype == bool and list(back["fault"]) == list(frame["fault"])


def test_fresh_run_dir_forgets_an_earlier_run(tmp_path, monkeypatch):
    monkeypatch.setenv("MLOPS_WORKBOOK_HOME", str(tmp_path))
    (proof.fresh_run_dir("r1") / "old.txt").write_text("earlier run")
    assert list(proof.fresh_run_dir("r1").iterdir()) == []


def test_run_name_is_a_plain_folder_name():
    assert check_parameter("run_name", "team-demo_2") == "team-demo_2"
    for bad in ("../elsewhere", "a/b", "", "with space"):
        with pytest.raises(ParameterError, match="parameter run_name must be a name of 1 to 64"):
            check_parameter("run_name", bad)


def test_manual_steps_are_the_notebooks_own():
    """manual.py is the hand code of notebooks 01 and 02, and it says so."""
    assert "notebooks 01" in manual.__doc__ and "02" in manual.__doc__
    assert list(training.FEATURES) == manual.FEATURES


def test_a_run_name_outside_the_workspace_deletes_nothing(tmp_path, monkeypatch):
    """fresh_run_dir empties its folder: a name like '../..' must never reach rmtree."""
    monkeypatch.setenv("MLOPS_WORKBOOK_HOME", str(tmp_path / "ws"))
    keep = tmp_path / "keep.txt"
    keep.write_text("mine")
    for bad in ("../..", "..", "/tmp"):
        with pytest.raises(ParameterError, match="run_name must be a name"):
            proof.fresh_run_dir(bad)
    assert keep.read_text() == "mine"
