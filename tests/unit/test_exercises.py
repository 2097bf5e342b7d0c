"""Every code exercise's check accepts its worked solution and refuses plausible wrong
answers, each with the hint of the case it failed; the untouched placeholder is "not
attempted". (Notebooks 00 and 01: tests/unit/test_exercises_00_01.py.)"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from sklearn.metrics import roc_auc_score

from mlops_helpers import monitoring, training
from tests.support import check_exercise, worked_solution


def placeholder(*args, **kwargs):
    raise NotImplementedError("write this")


def refused(name, answer, case_words: str) -> str:
    accepted, text = check_exercise(name, answer)
    assert not accepted, text
    assert text.startswith(f"❌ Exercise {name}: not yet"), text
    assert case_words in text, text
    return text


@pytest.mark.parametrize(
    "name", ["01.1", "02.2", "03.3", "04.2", "05.2", "06.2", "07.2", "08.3", "09.3", "10.2", "11.1"]
)
def test_the_worked_solution_passes_and_the_placeholder_is_not_attempted(name):
    accepted, text = check_exercise(name, worked_solution(name))
    assert accepted and text.startswith(f"✅ Exercise {name}: solved ("), text
    untouched = None if name == "06.2" else placeholder
    accepted, text = check_exercise(name, untouched)
    assert not accepted and text.startswith(f"📝 Exercise {name}: not attempted yet"), text


# 01.1 late_rows(extract, day) -----------------------------------------------------------


def test_01_1_comparing_text_with_the_day_misses_the_rows_of_the_next_day():
    refused("01.1", lambda e, day: e[e["ts"].astype(str) < day], "the edges of the day")


def test_01_1_slicing_the_text_breaks_on_real_timestamps():
    text = refused("01.1", lambda e, day: e[e["ts"].str[:10] != day], "real timestamps")
    assert "raised AttributeError" in text


def test_01_1_a_count_instead_of_the_rows_is_refused():
    def count(e, day):
        return int((pd.to_datetime(e["ts"]).dt.normalize() != pd.Timestamp(day)).sum())

    refused("01.1", count, "got int")


def test_01_1_only_the_day_before_misses_the_row_after_midnight():
    def before(e, day):
        return e[pd.to_datetime(e["ts"]) < pd.Timestamp(day)]

    refused("01.1", before, "the edges of the day")


# 02.2 fit_to_ship(model, rows) ----------------------------------------------------------


def _auc(model, rows):
    return roc_auc_score(rows[training.TARGET], training.predict_proba(model, rows))


def test_02_2_checking_only_that_predictions_are_probabilities_is_refused():
    def in_range(model, rows):
        p = model.predict_proba(rows[list(training.FEATURES)])[:, 1]
        return bool(((p >= 0) & (p <= 1)).all())

    refused("02.2", in_range, "a model trained on flipped labels")


def test_02_2_better_than_chance_is_not_enough():
    refused("02.2", lambda model, rows: bool(_auc(model, rows) > 0.5), "the ad's width")


def test_02_2_a_check_that_returns_the_auc_instead_of_a_decision_is_refused():
    refused("02.2", _auc, "a well-trained model")


# 03.3 the seconds rule ------------------------------------------------------------------


def test_03_3_a_rule_that_flags_missing_values_is_refused():
    text = refused("03.3", lambda e: ~(e["page_load_ms"] >= 60), "missing load times")
    assert "do not flag it" in text


def test_03_3_a_rule_for_sub_second_values_only_misses_longer_pages():
    refused("03.3", lambda e: e["page_load_ms"] < 1, "5% of rows in seconds")


def test_03_3_a_count_instead_of_flags_is_refused():
    text = refused("03.3", lambda e: int((e["page_load_ms"] < 60).sum()), "a clean day")
    assert "got int" in text


def test_03_3_flags_on_a_fresh_index_do_not_line_up_with_the_rows():
    refused("03.3", lambda e: (e["page_load_ms"] < 60).reset_index(drop=True), "shuffled index")


# 04.2 split_by_time ---------------------------------------------------------------------


def test_04_2_a_random_split_leaks_the_future_into_training():
    def random_split(table, test_day):
        shuffled = table.sample(frac=1.0, random_state=0)
        return shuffled.iloc[: len(table) // 2], shuffled.iloc[len(table) // 2 :]

    refused("04.2", random_split, "a week, tested on its third day")


def test_04_2_training_on_every_other_day_uses_days_after_the_test_day():
    def not_that_day(table, test_day):
        day = table["ts"].dt.normalize() == pd.Timestamp(test_day)
        return table[~day], table[day]

    text = refused("04.2", not_that_day, "tested on its third day")
    assert "none after it" in text


def test_04_2_comparing_timestamps_instead_of_days_misplaces_midnight():
    def by_timestamp(table, test_day):
        t = pd.Timestamp(test_day)
        return table[table["ts"] <= t], table[table["ts"].dt.normalize() == t]

    refused("04.2", by_timestamp, "tested on its third day")


# 05.2 worse_slices ----------------------------------------------------------------------


def test_05_2_comparing_only_overall_auc_misses_the_slice():
    def overall(frame, champion, challenger, column):
        y = frame["viewable"]
        drop = roc_auc_score(y, champion) - roc_auc_score(y, challenger)
        return set(frame[column]) if drop > 0.02 else set()

    refused("05.2", overall, "worse on mobile")


def test_05_2_any_drop_without_the_tolerance_is_refused():
    def any_drop(frame, champion, challenger, column):
        out = set()
        for value, rows in frame.groupby(column).indices.items():
            y = frame["viewable"].to_numpy()[rows]
            if len(set(y)) > 1 and roc_auc_score(y, challenger[rows]) < roc_auc_score(
                y, champion[rows]
            ):
                out.add(value)
        return out

    refused("05.2", any_drop, "within the tolerance")


def test_05_2_a_slice_that_cannot_be_judged_is_not_worse():
    def unless_proven_no_worse(frame, champion, challenger, column):
        y = frame["viewable"].to_numpy()
        out = set()
        for v, r in frame.groupby(column).indices.items():
            ok = len(set(y[r])) > 1 and (
                roc_auc_score(y[r], challenger[r]) >= roc_auc_score(y[r], champion[r]) - 0.02
            )
            if not ok:
                out.add(v)
        return out

    refused("05.2", unless_proven_no_worse, "only viewable rows")


# 06.2 the monitor step in YAML ----------------------------------------------------------


def test_06_2_a_step_without_after_runs_in_any_order():
    text = "name: monitor\nnotebook: 07_monitoring_and_retraining\nparameters:\n  n_new_days: 2\n  drift: 0.0\n"
    refused("06.2", text, "it runs after train")


def test_06_2_quoted_numbers_are_text_not_numbers():
    text = (
        "name: monitor\nnotebook: 07_monitoring_and_retraining\nafter: [train]\n"
        "parameters:\n  n_new_days: '2'\n  drift: 0.0\n"
    )
    refused("06.2", text, "the pipeline still loads")


def test_06_2_a_list_item_pasted_with_its_dash_is_not_one_step():
    text = "- name: monitor\n  notebook: 07_monitoring_and_retraining\n  after: [train]\n"
    refused("06.2", text, "not one step")


def test_06_2_a_notebook_that_does_not_exist_is_named():
    text = "name: monitor\nnotebook: 07_monitoring\nafter: [train]\n"
    refused("06.2", text, "07_monitoring")


# 07.2 psi -------------------------------------------------------------------------------


def _psi_parts(reference, current, bins, edges_from, clip=True):
    ref, cur = reference.dropna().to_numpy(float), current.dropna().to_numpy(float)
    edges = np.unique(np.quantile(edges_from(ref, cur), np.linspace(0, 1, bins + 1)))
    edges[0], edges[-1] = -np.inf, np.inf
    e = np.histogram(ref, edges)[0] / len(ref)
    a = np.histogram(cur, edges)[0] / len(cur)
    if clip:
        e, a = np.clip(e, monitoring.EPS, None), np.clip(a, monitoring.EPS, None)
    with np.errstate(divide="ignore", invalid="ignore"):
        return float(np.sum((a - e) * np.log(a / e)))


def test_07_2_without_the_epsilon_an_empty_bin_is_not_a_number():
    wrong = lambda r, c, b: _psi_parts(r, c, b, lambda ref, cur: ref, clip=False)  # noqa: E731
    refused("07.2", wrong, "an empty bin")


def test_07_2_bins_from_the_current_day_are_not_the_reference_bins():
    wrong = lambda r, c, b: _psi_parts(r, c, b, lambda ref, cur: cur)  # noqa: E731
    refused("07.2", wrong, "case '")


def test_07_2_equal_width_bins_give_another_number():
    def equal_width(reference, current, bins):
        ref, cur = reference.dropna(), current.dropna()
        edges = np.linspace(ref.min(), ref.max(), bins + 1)
        edges[0], edges[-1] = -np.inf, np.inf
        e = np.clip(np.histogram(ref, edges)[0] / len(ref), monitoring.EPS, None)
        a = np.clip(np.histogram(cur, edges)[0] / len(cur), monitoring.EPS, None)
        return float(np.sum((a - e) * np.log(a / e)))

    refused("07.2", equal_width, "two samples of the same distribution")


# 08.3 a test that catches bugs ----------------------------------------------------------


def test_08_3_a_test_that_asserts_nothing_catches_no_bug():
    def test_nothing(add_features):
        pass

    refused("08.3", test_nothing, "nulls filled with 0")


def test_08_3_a_test_of_the_column_names_only_misses_wrong_values():
    def test_columns(add_features):
        from mlops_helpers.etl import OUTPUT_COLUMNS

        rows = worked_rows()
        assert list(add_features(rows).columns) == list(OUTPUT_COLUMNS)

    refused("08.3", test_columns, "nulls filled with 0")


def test_08_3_a_test_that_fails_on_the_real_function_is_refused():
    def test_wrong(add_features):
        assert add_features(worked_rows())["page_load_ms"].isna().any()

    refused("08.3", test_wrong, "the real etl.add_features")


def worked_rows() -> pd.DataFrame:
    from mlops_helpers.etl import OUTPUT_COLUMNS

    return pd.DataFrame(
        {
            "ts": pd.to_datetime(["2026-01-05 13:10", "2026-01-05 09:00"]),
            "page_load_ms": [100.0, None],
            "viewable": [1, 0],
            **{
                c: [0, 0]
                for c in OUTPUT_COLUMNS
                if c not in ("ts", "page_load_ms", "viewable", "hour")
            },
        }
    )


# 09.3 months_to_break_even --------------------------------------------------------------


def _months(ignore_upkeep=False, negative=False):
    def months(
        build_hours,
        upkeep_hours_per_month,
        faults_per_month,
        manual_hours_per_fault,
        automated_hours_per_fault,
    ):
        saved = faults_per_month * (manual_hours_per_fault - automated_hours_per_fault)
        if not ignore_upkeep:
            saved -= upkeep_hours_per_month
        if saved <= 0 and not negative:
            return math.inf
        return build_hours / saved if saved else -1.0

    return months


def test_09_3_forgetting_the_upkeep_is_refused():
    refused("09.3", _months(ignore_upkeep=True), "a team with two faults a month")


def test_09_3_a_negative_number_of_months_is_refused():
    refused("09.3", _months(negative=True), "upkeep larger than what is saved")


def test_09_3_whole_months_only_is_refused():
    def rounded_up(**kwargs):
        return float(math.ceil(worked_solution("09.3")(**kwargs)))

    refused("09.3", rounded_up, "a team with two faults a month")


# 10.2 the days trained_model[day] reads ------------------------------------------------


def _days(end, window):
    import datetime as dt

    last = dt.date.fromisoformat(end)
    return [last - dt.timedelta(days=k) for k in range(window, 0, -1)]


def test_10_2_the_day_itself_is_never_trained_on():
    def with_day(day, window):
        return [d.isoformat() for d in _days(day, window - 1)] + [day]

    refused("10.2", with_day, "a week's window")


def test_10_2_newest_first_is_not_the_order():
    refused("10.2", lambda day, window: [d.isoformat() for d in _days(day, window)][::-1], "week")


def test_10_2_dates_are_text_not_date_objects():
    refused("10.2", _days, "a week's window")


def test_10_2_ignoring_the_calendar_breaks_at_a_month_end():
    def naive(day, window):
        y, m, d = day.split("-")
        return [f"{y}-{m}-{int(d) - k:02d}" for k in range(window, 0, -1)]

    refused("10.2", naive, "a window across a month's end")


# 11.1 matured_auc(frame) ------------------------------------------------------------------


def test_11_1_counting_the_rows_without_a_label_yet_is_refused():
    def every_row(frame):
        known = frame.fillna({"viewable": 0})  # "no label yet" read as "not viewable"
        return float(roc_auc_score(known["viewable"], known["proba"])), len(known)

    refused("11.1", every_row, "a third of the labels matured")


def test_11_1_an_auc_of_one_label_value_is_refused_not_raised():
    def no_guard(frame):
        matured = frame[frame["viewable"].notna()]
        return float(roc_auc_score(matured["viewable"], matured["proba"])), len(matured)

    text = refused("11.1", no_guard, "no label matured yet")
    assert "raised ValueError" in text


def test_11_1_the_count_must_be_of_the_matured_rows():
    def all_rows_counted(frame):
        matured = frame[frame["viewable"].notna()]
        if matured["viewable"].nunique() < 2:
            return None, len(frame)
        return float(roc_auc_score(matured["viewable"], matured["proba"])), len(frame)

    refused("11.1", all_rows_counted, "a third of the labels matured")
