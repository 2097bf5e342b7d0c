"""cli: bad parameters are rejected with a clear message before anything runs."""

from __future__ import annotations

import pytest

from mlops_helpers import parameters
from mlops_helpers.workbook import cli, curriculum


@pytest.fixture
def workspace(monkeypatch, tmp_path):
    monkeypatch.setenv("MLOPS_WORKBOOK_HOME", str(tmp_path / "ws"))
    return tmp_path / "ws"


def run_cli(capsys, *argv):
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["run", "-p", "n_row", "5"], "n_row (-p) not declared by any selected notebook"),
        (["run", "-p", "seed", "1.5"], "parameter seed must be int, got '1.5'"),
        (
            ["run", "-p", "n_rows", "-5"],
            "parameter n_rows must be an int from 1 to 5000000, got -5",
        ),
        (["run", "-p", "seed", "x"], "parameter seed must be int, got 'x'"),
        (["run", "03", "-p", "fault", "typo"], "parameter fault must be one of none"),
        (["run", "99"], "no notebook named '99'"),
    ],
)
def test_bad_run_arguments_exit_2_before_anything_runs(capsys, workspace, argv, message):
    code, out, err = run_cli(capsys, *argv)
    assert code == 2
    assert message in err
    assert not workspace.exists(), "nothing may be written before parameters are valid"


def test_param_file_errors_name_the_file_and_line(capsys, workspace, tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("seed: 7\nn_rows: [1,\n")
    code, _, err = run_cli(capsys, "run", "-f", str(bad))
    assert code == 2 and "bad.yaml" in err and "not valid YAML" in err and "line" in err
    code, _, err = run_cli(capsys, "run", "-f", str(tmp_path / "missing.yaml"))
    assert code == 2 and "missing.yaml not found" in err
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    code, _, err = run_cli(capsys, "run", "-f", str(listing))
    assert code == 2 and "must be a mapping" in err
    assert not workspace.exists()


def test_param_file_values_are_type_checked(capsys, workspace, tmp_path):
    params = tmp_path / "p.yaml"
    params.write_text("n_rows: '100'\n")
    code, _, err = run_cli(capsys, "run", "01", "-f", str(params))
    assert code == 2 and "parameter n_rows (-f p.yaml) must be int, got '100'" in err


def test_params_lists_every_declared_parameter_with_type_default_and_help(capsys):
    nb = curriculum.find_notebook("03")
    code, out, _ = run_cli(capsys, "params", "03")
    assert code == 0
    for spec in parameters.notebook_parameters(nb).values():
        line = next(ln for ln in out.splitlines() if ln.split()[:1] == [spec.name])
        assert spec.kind in line and spec.default in line and spec.help in line


def test_jobs_must_be_at_least_one(capsys, workspace):
    with pytest.raises(SystemExit) as stop:
        cli.main(["run", "--jobs", "0"])
    assert stop.value.code == 2
    assert "--jobs: must be a whole number of at least 1, got '0'" in capsys.readouterr().err
    assert not workspace.exists()
