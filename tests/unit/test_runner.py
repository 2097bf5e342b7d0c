"""runner: parameters planned against what notebooks declare; real papermill runs of tiny notebooks."""

from __future__ import annotations

import logging
import os
import re
from pathlib import Path

import nbformat
import pytest

from mlops_helpers import parameters
from mlops_helpers.parameters import ParameterError
from mlops_helpers.workbook import curriculum, execute, report
from tests.support import make_notebook


@pytest.fixture
def two_notebooks(tmp_path):
    a = make_notebook(
        tmp_path / "10_a.ipynb", "seed: int = 1  # seed\nfault: str = 'none'  # fault", "x = seed"
    )
    b = make_notebook(tmp_path / "11_b.ipynb", "C: float = 1.0  # strength", "y = C")
    return a, b


def test_parameters_are_read_with_type_default_and_help(two_notebooks):
    specs = parameters.notebook_parameters(two_notebooks[0])
    assert specs["seed"] == parameters.ParamSpec("seed", "int", "1", "seed")
    assert specs["fault"].kind == "str"


def test_plan_gives_each_notebook_only_what_it_declares_typed(two_notebooks):
    a, b = two_notebooks
    plan = parameters.plan_parameters([a, b], {"seed": "7", "C": "2"})
    assert plan == {a: {"seed": 7}, b: {"C": 2.0}}
    assert isinstance(plan[b]["C"], float)


def test_plan_rejects_a_name_no_notebook_declares(two_notebooks):
    with pytest.raises(ParameterError, match=r"n_row.*not declared by any selected notebook"):
        parameters.plan_parameters(list(two_notebooks), {"n_row": "5"})


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("seed", "abc", "parameter seed must be int, got 'abc'"),
        ("seed", "-3", "parameter seed must be an int from 0"),
        ("fault", "typo", "parameter fault must be one of none, schema_change"),
        ("C", "0", "parameter C must be a float greater than 0, got 0.0"),
    ],
)
def test_plan_rejects_bad_values_naming_parameter_and_value(two_notebooks, name, value, message):
    with pytest.raises(ParameterError) as err:
        parameters.plan_parameters(list(two_notebooks), {name: value})
    assert message in str(err.value)


@pytest.mark.parametrize(
    ("value", "message"),
    [
        (1.5, "parameter seed (-f p.yaml) must be int, got 1.5"),
        (True, "parameter seed (-f p.yaml) must be int, got True"),
        ("7", "parameter seed (-f p.yaml) must be int, got '7'"),
    ],
)
def test_file_values_must_already_have_the_declared_type(two_notebooks, value, message):
    with pytest.raises(ParameterError) as err:
        parameters.plan_parameters(list(two_notebooks), {}, {"seed": value}, "-f p.yaml")
    assert message in str(err.value)


def test_cli_values_win_over_file_values(two_notebooks):
    a, _ = two_notebooks
    plan = parameters.plan_parameters([a], {"seed": "9"}, {"seed": 3, "fault": "nulls"})
    assert plan[a] == {"seed": 9, "fault": "nulls"}


def test_find_notebook_by_number_stem_or_path():
    first = curriculum.list_notebooks()[0]
    assert curriculum.find_notebook(first.stem.split("_")[0]) == first
    assert curriculum.find_notebook(first.stem) == first
    assert curriculum.find_notebook(str(first)) == first.resolve()
    with pytest.raises(ParameterError, match="no notebook named '42'; choose one of"):
        curriculum.find_notebook("42")


def test_run_stops_at_the_failing_cell_and_skips_the_rest(tmp_path):
    ok = make_notebook(tmp_path / "20_ok.ipynb", "seed: int = 1", "print(seed)")
    bad = make_notebook(
        tmp_path / "21_bad.ipynb", "seed: int = 1", "a = 1", "raise KeyError('page_load_ms')"
    )
    after = make_notebook(tmp_path / "22_after.ipynb", "seed: int = 1", "b = 2")
    out = tmp_path / "run"
    out.mkdir()
    plan = parameters.plan_parameters([ok, bad, after], {"seed": "5"})
    results = execute.run_workbook([ok, bad, after], plan, out, progress=False)
    assert [r.status for r in results] == ["ok", "failed", "skipped"]
    # papermill counts its injected-parameters cell: the raising cell is index 3.
    assert "cell 3" in results[1].error and "KeyError" in results[1].error
    assert "page_load_ms" in results[1].error
    executed = nbformat.read(out / "20_ok.ipynb", as_version=4)
    assert any(
        "5" in "".join(o.get("text", "")) for c in executed.cells for o in c.get("outputs", [])
    )
    assert (out / "21_bad.ipynb").is_file() and not (out / "22_after.ipynb").exists()
    table = report.summary_table(results)
    assert "21_bad" in table and "failed" in table and "skipped" in table


def test_two_jobs_run_two_notebooks_at_the_same_time(tmp_path):
    # Each notebook waits for the other's flag file: only two at once can both finish.
    wait_for = (
        "import pathlib, time\n"
        "pathlib.Path(mine).touch()\n"
        "deadline = time.monotonic() + 60\n"
        "while not pathlib.Path(other).exists():\n"
        "    assert time.monotonic() < deadline, 'the other notebook never started'\n"
        "    time.sleep(0.05)"
    )
    a, b = tmp_path / "a.flag", tmp_path / "b.flag"
    first = make_notebook(
        tmp_path / "30_a.ipynb", f"mine = {str(a)!r}\nother = {str(b)!r}", wait_for
    )
    second = make_notebook(
        tmp_path / "31_b.ipynb", f"mine = {str(b)!r}\nother = {str(a)!r}", wait_for
    )
    out = tmp_path / "run"
    out.mkdir()
    cwd = os.getcwd()
    results = execute.run_workbook([first, second], {}, out, progress=False, jobs=2)
    assert [(r.notebook, r.status) for r in results] == [("30_a", "ok"), ("31_b", "ok")]
    assert os.getcwd() == cwd, "running notebooks side by side must not move this process"
    assert "wall clock" in report.summary_table(results, wall=1.0)


def test_after_a_failure_with_two_jobs_nothing_new_starts(tmp_path):
    bad = make_notebook(tmp_path / "40_bad.ipynb", "seed: int = 1", "raise ValueError('no')")
    slow = make_notebook(tmp_path / "41_slow.ipynb", "seed: int = 1", "import time; time.sleep(5)")
    never = make_notebook(tmp_path / "42_never.ipynb", "seed: int = 1", "x = 1")
    out = tmp_path / "run"
    out.mkdir()
    results = execute.run_workbook([bad, slow, never], {}, out, progress=False, jobs=2)
    assert [r.status for r in results] == ["failed", "ok", "skipped"]
    assert not (out / "42_never.ipynb").exists()


def stdout_of(executed: Path) -> str:
    nb = nbformat.read(executed, as_version=4)
    return "".join(o.get("text", "") for c in nb.cells for o in c.get("outputs", []))


def test_headless_runs_use_warm_kernels_and_render_each_notebook(tmp_path, monkeypatch):
    from mlops_helpers.workbook import warmstart

    if not warmstart.supported():
        pytest.skip("warm kernel starts need Linux pidfds")
    monkeypatch.delenv(warmstart.SWITCH, raising=False)
    parent = "import os; print(open(f'/proc/{os.getppid()}/cmdline').read().split(chr(0)))"
    nb = make_notebook(tmp_path / "50_parent.ipynb", "seed: int = 1", parent)
    out = tmp_path / "run"
    out.mkdir()
    [result] = execute.run_workbook([nb], {}, out, progress=False, render=True)
    assert result.status == "ok" and result.page == "50_parent.html"
    assert (out / "50_parent.html").is_file()
    printed = stdout_of(out / "50_parent.ipynb")
    assert warmstart.MODULE in printed  # the kernel's parent is the template process

    monkeypatch.setenv(warmstart.SWITCH, "0")
    [result] = execute.run_workbook([nb], {}, out, progress=False)
    printed = stdout_of(out / "50_parent.ipynb")
    assert result.status == "ok" and warmstart.MODULE not in printed


def test_with_two_jobs_the_longest_notebooks_start_first_and_results_keep_their_order(
    tmp_path, monkeypatch
):
    # When each notebook is handed to a job, recorded around the real _run_one (the
    # notebooks still run): a notebook's own first cell is no clock of that, since one
    # kernel can take longer to start than another takes to run a whole notebook.
    started = []
    run_one = execute._run_one
    monkeypatch.setattr(
        execute, "_run_one", lambda nb, *a: started.append(nb.stem) or run_one(nb, *a)
    )
    names = [
        "00_start_here",
        "03_automated_etl",
        "05_automated_deployment",
        "06_notebook_pipeline",
        "12_live_endpoint",
    ]
    books = [make_notebook(tmp_path / f"{n}.ipynb", f"name = {n!r}") for n in names]
    out = tmp_path / "run"
    out.mkdir()
    results = execute.run_workbook(books, {}, out, progress=False, jobs=2)
    assert [r.notebook for r in results] == names
    assert all(r.status == "ok" for r in results)
    assert set(started[:2]) == {"06_notebook_pipeline", "05_automated_deployment"}
    assert started[2:] == ["12_live_endpoint", "00_start_here", "03_automated_etl"], (
        "12 takes the first free job, the rest follow in curriculum order"
    )


def test_jobs_below_one_is_refused(tmp_path):
    with pytest.raises(ValueError, match="jobs must be at least 1, got 0"):
        execute.run_workbook([], {}, tmp_path, progress=False, jobs=0)


def test_new_run_dirs_are_distinct_and_inside_the_workspace(monkeypatch, tmp_path):
    monkeypatch.setenv("MLOPS_WORKBOOK_HOME", str(tmp_path))
    first, second = execute.new_run_dir(), execute.new_run_dir()
    assert first != second
    assert first.parent == second.parent == tmp_path / "runs"


def test_the_curriculum_maps_exactly_the_notebooks_of_the_workbook():
    assert list(curriculum.CURRICULUM) == [p.stem for p in curriculum.list_notebooks()]
    assert all(c.level in {"-", "0", "1", "1-2", "2"} for c in curriculum.CURRICULUM.values())
    assert all(5 <= c.minutes <= 60 for c in curriculum.CURRICULUM.values())


@pytest.mark.parametrize(
    ("failures", "message", "calls", "raises"),
    [
        (1, execute.KERNEL_NEVER_READY, 2, False),  # a port taken at start: the retry runs it
        (2, execute.KERNEL_NEVER_READY, 2, True),  # a kernel that cannot start: no loop
        (1, "Kernel didn't respond in 60 seconds", 1, True),  # not a start that died
    ],
)
def test_a_kernel_that_dies_before_answering_is_started_once_more(
    tmp_path, monkeypatch, failures, message, calls, raises
):
    # papermill is replaced here because the failure it stands for, another process taking
    # a kernel's port between jupyter_client picking it and the kernel binding it, cannot be
    # produced on demand; the retry around it is what is tested.
    import papermill

    seen = []

    def papermill_execute(*args, **kwargs):
        seen.append(kwargs["kernel_name"])
        if len(seen) <= failures:
            # what nbclient logs, through papermill's logger, before it raises
            logging.getLogger("papermill").error(f"Error occurred while starting: {message}")
            raise RuntimeError(message)

    monkeypatch.setattr(papermill, "execute_notebook", papermill_execute)
    logged = []
    handler = logging.Handler()
    handler.emit = lambda record: logged.append(record.getMessage())
    logging.getLogger("papermill").addHandler(handler)
    nb = make_notebook(tmp_path / "60_any.ipynb", "seed: int = 1", "x = 1")
    try:
        if raises:
            with pytest.raises(RuntimeError, match=re.escape(message)):
                execute.execute_notebook(nb, tmp_path / "out.ipynb", {})
        else:
            execute.execute_notebook(nb, tmp_path / "out.ipynb", {})
    finally:
        logging.getLogger("papermill").removeHandler(handler)
    assert seen == [execute.KERNEL] * calls
    retried = message == execute.KERNEL_NEVER_READY
    assert logged == ([] if retried else [f"Error occurred while starting: {message}"] * calls), (
        "a start that is retried puts no error on the caller's stderr; other errors stay"
    )
