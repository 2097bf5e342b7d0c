"""nbtesting runs pytest in a subprocess, isolated, and reads the report pytest really prints:
every test here runs pytest on files it writes into tmp_path."""

from __future__ import annotations

import textwrap

import nbformat
import pytest

from mlops_helpers.workbook import nbtesting

TESTS = """
import pytest


def test_passes():
    assert True


def test_fails():
    assert 1 + 1 == 3, "arithmetic is broken"


@pytest.fixture
def broken():
    raise RuntimeError("the fixture broke")


def test_errors(broken):
    pass


class TestGroup:
    def test_fails_too(self):
        raise ValueError("a bad value")

    @pytest.mark.parametrize("n", [1, 2])
    def test_param(self, n):
        assert n == 1
"""


def write(folder, name, text):
    path = folder / name
    path.write_text(textwrap.dedent(text))
    return path


def test_counts_and_failing_tests_from_a_real_report(tmp_path):
    write(tmp_path, "test_sample.py", TESTS)
    run = nbtesting.run_pytest("test_sample.py", cwd=tmp_path)

    assert run.exit_code == 1
    assert run.counts == {"failed": 3, "passed": 2, "errors": 1}
    assert (run.passed, run.failed, run.errors) == (2, 3, 1)
    assert sorted(run.failed_tests) == [
        "test_sample.py::TestGroup::test_fails_too",
        "test_sample.py::TestGroup::test_param[2]",
        "test_sample.py::test_errors",
        "test_sample.py::test_fails",
    ]
    by_test = {f.test: f for f in run.failures}
    assert by_test["test_sample.py::test_errors"].outcome == "error"
    assert "the fixture broke" in by_test["test_sample.py::test_errors"].message
    assert by_test["test_sample.py::test_fails"].outcome == "failed"
    assert "arithmetic is broken" in by_test["test_sample.py::test_fails"].message
    assert "a bad value" in by_test["test_sample.py::TestGroup::test_fails_too"].message
    assert all(f.mismatched == () for f in run.failures), "only nbval cells have mismatches"
    summary = run.summary()
    assert summary.splitlines()[:2] == [
        "$ pytest test_sample.py",
        "exit code 1: 2 passed, 3 failed, 1 error",
    ]
    assert "  FAILED test_sample.py::test_fails: AssertionError: arithmetic is broken" in summary


def test_all_passing_and_none_collected(tmp_path):
    write(tmp_path, "test_ok.py", "def test_a():\n    pass\n\ndef test_b():\n    pass\n")
    run = nbtesting.run_pytest("test_ok.py", cwd=tmp_path)
    assert (run.exit_code, run.counts, run.failures) == (0, {"passed": 2}, ())
    assert run.summary().splitlines()[1] == "exit code 0: 2 passed"

    write(tmp_path, "test_empty.py", "x = 1\n")
    empty = nbtesting.run_pytest("test_empty.py", cwd=tmp_path)
    assert (empty.exit_code, empty.passed, empty.failed_tests) == (5, 0, [])


def test_the_run_is_isolated_from_settings_above_and_plugins_installed(tmp_path, monkeypatch):
    # a config above the folder that would fail every run, and a PYTEST_ variable of the caller
    write(tmp_path, "pytest.ini", "[pytest]\naddopts = --no-such-option\n")
    folder = tmp_path / "inner"
    folder.mkdir()
    write(folder, "test_one.py", "def test_one():\n    pass\n")
    monkeypatch.setenv("PYTEST_ADDOPTS", "--no-such-option-either")
    run = nbtesting.run_pytest("test_one.py", cwd=folder)
    assert (run.exit_code, run.passed) == (0, 1)
    assert run.failed_tests == []


def test_a_usage_error_is_not_read_as_a_report(tmp_path):
    write(tmp_path, "test_one.py", "def test_one():\n    pass\n")
    with pytest.raises(nbtesting.PytestDidNotRun) as err:
        nbtesting.run_pytest("--no-such-option", "test_one.py", cwd=tmp_path)
    assert "exit code 4" in str(err.value) and "--no-such-option" in str(err.value)


def test_parse_report_refuses_text_without_a_final_line():
    with pytest.raises(ValueError, match="no final line of counts"):
        nbtesting.parse_report("collected 0 items\n")


@pytest.mark.slow
def test_nbval_names_the_cell_and_the_output_that_differs(tmp_path):
    nb = nbformat.v4.new_notebook(
        cells=[
            nbformat.v4.new_code_cell("print(1 + 1)"),
            nbformat.v4.new_code_cell("21 * 2"),
            nbformat.v4.new_code_cell("print('same')"),
        ],
        metadata={
            "kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}
        },
    )
    nb.cells[0].outputs = [nbformat.v4.new_output("stream", name="stdout", text="3\n")]
    nb.cells[1].outputs = [
        nbformat.v4.new_output("execute_result", data={"text/plain": "41"}, execution_count=1)
    ]
    nb.cells[2].outputs = [nbformat.v4.new_output("stream", name="stdout", text="same\n")]
    for count, cell in enumerate(nb.cells, 1):
        cell.execution_count = count  # as a saved, executed notebook has them
    nbformat.write(nb, tmp_path / "wrong.ipynb")

    run = nbtesting.run_nbval("--nbval", "wrong.ipynb", cwd=tmp_path)
    assert run.exit_code == 1
    assert (run.passed, run.failed) == (1, 2)
    assert run.failed_tests == ["wrong.ipynb::Cell 0", "wrong.ipynb::Cell 1"]
    assert [f.mismatched for f in run.failures] == [("stdout",), ("text/plain",)]
    assert run.summary().splitlines() == [
        "$ pytest --nbval wrong.ipynb",
        "exit code 1: 1 passed, 2 failed",
        "  FAILED wrong.ipynb::Cell 0: output differs in stdout",
        "  FAILED wrong.ipynb::Cell 1: output differs in text/plain",
    ]


def test_a_kernel_that_did_not_start_is_run_once_more_and_only_once(monkeypatch, tmp_path):
    # A stand-in for pytest: a kernel's port taken by another process cannot be made to
    # happen on demand, and the retry is about what run_nbval does with such a report.
    died = nbtesting.PytestRun(
        ("--nbval",), 1, {"errors": 1},
        (nbtesting.Failure("s.ipynb::Cell 0", "error", f"RuntimeError: {nbtesting.KERNEL_START_FAILED}"),),
    )  # fmt: skip
    fine = nbtesting.PytestRun(("--nbval",), 0, {"passed": 1})
    differs = nbtesting.PytestRun(
        ("--nbval",), 1, {"failed": 1}, (nbtesting.Failure("s.ipynb::Cell 0", "failed"),)
    )
    for reports, expected, calls in (
        ([died, fine], fine, 2),
        ([died, died], died, 2),
        ([differs], differs, 1),
    ):
        queue = list(reports)
        monkeypatch.setattr(nbtesting, "run_pytest", lambda *a, q=queue, **k: q.pop(0))
        assert nbtesting.run_nbval("--nbval", "s.ipynb", cwd=tmp_path) is expected
        assert len(reports) - len(queue) == calls
