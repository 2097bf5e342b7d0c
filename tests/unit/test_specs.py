"""specs: YAML files read with line numbers, so every error names the file and line."""

from __future__ import annotations

import re

import pytest

from mlops_helpers import parameters
from mlops_helpers.parameters import NAME_RULE, ParameterError
from mlops_helpers.workbook.specs import (
    SpecError,
    at,
    clean,
    load_spec,
    load_yaml,
    notebook_beside,
    spec_name,
    where,
)


def write(tmp_path, text):
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    return path


def test_mappings_remember_their_line_and_clean_forgets_it(tmp_path):
    path = write(tmp_path, "name: x\nsteps:\n  - name: a\n    notebook: 03\n")
    spec = load_yaml(path)
    assert where(path, spec["steps"][0]) == f"{path}:3"
    assert clean(spec) == {"name": "x", "steps": [{"name": "a", "notebook": 3}]}


def test_invalid_yaml_names_file_and_line(tmp_path):
    path = write(tmp_path, "name: x\nsteps: [a,\n  b: c\n")
    with pytest.raises(SpecError, match=rf"{path}:\d+: not valid YAML"):
        load_yaml(path)


def test_top_level_must_be_a_mapping_and_the_file_must_exist(tmp_path):
    with pytest.raises(SpecError, match="expected a mapping at the top, got list"):
        load_yaml(write(tmp_path, "- a\n- b\n"))
    with pytest.raises(SpecError, match="file not found"):
        load_yaml(tmp_path / "missing.yaml")


def test_unknown_top_level_key_is_named_with_the_allowed_ones(tmp_path):
    path = write(tmp_path, "name: x\nstpes: []\n")
    with pytest.raises(SpecError) as err:
        load_spec(path, {"name", "steps"})
    assert f"{path}:1: unknown key 'stpes'; use ['name', 'steps']" == str(err.value)


def file_value(name, value, spec, source):
    """A value read at ``source`` checked the way pipelines and grids check theirs."""
    with at(source):
        return parameters.check_value(name, value, spec, source)


def test_file_values_are_typed_against_the_declaration_and_name_their_source():
    spec = parameters.ParamSpec("n_rows", "int", "2000", "rows")
    assert file_value("n_rows", 500, spec, "grid.yaml:4") == 500
    with pytest.raises(
        SpecError, match=r"grid.yaml:4: parameter n_rows \(grid.yaml:4\) must be int"
    ):
        file_value("n_rows", "500", spec, "grid.yaml:4")
    with pytest.raises(SpecError, match="grid.yaml:4: parameter n_rows must be an int from 1"):
        file_value("n_rows", 0, spec, "grid.yaml:4")


def test_at_names_the_file_and_line_only_for_parameter_errors():
    with pytest.raises(SpecError) as err, at("grid.yaml:7"):
        parameters.check_name("grid name", "../x")
    assert str(err.value).startswith("grid.yaml:7: grid name must be ")
    with pytest.raises(KeyError), at("grid.yaml:7"):
        raise KeyError("a bug keeps its own type and traceback")


@pytest.mark.parametrize(
    ("text", "line", "key", "first"),
    [
        ("name: a\nsteps: []\nname: b\n", 3, "name", 1),
        ("steps:\n  - name: a\n    notebook: '03'\n    name: b\n", 4, "name", 2),
        ("grid: {seed: [1], seed: [2]}\n", 1, "seed", 1),
    ],
)
def test_a_key_written_twice_is_refused_naming_both_lines(tmp_path, text, line, key, first):
    path = write(tmp_path, text)
    with pytest.raises(SpecError) as err:
        load_yaml(path)
    assert str(err.value).startswith(f"{path}:{line}: not valid YAML: key {key!r} is written ")
    assert f"twice (first on line {first}); keep one of them" in str(err.value)


def test_a_merge_key_may_still_be_overridden(tmp_path):
    path = write(tmp_path, "base: &b {seed: 1, n_rows: 5}\nitem:\n  <<: *b\n  seed: 2\n")
    assert clean(load_yaml(path))["item"] == {"seed": 2, "n_rows": 5}


def test_a_parameter_file_with_a_key_written_twice_exits_2(capsys, monkeypatch, tmp_path):
    from mlops_helpers.workbook import cli

    monkeypatch.setenv("MLOPS_WORKBOOK_HOME", str(tmp_path / "ws"))
    params = write(tmp_path, "seed: 7\nn_rows: 100\nseed: 8\n")
    code = cli.main(["run", "01", "-f", str(params), "--no-progress", "--no-report"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert f"{params}:3: not valid YAML: key 'seed' is written twice (first on line 1)" in err
    assert not (tmp_path / "ws").exists(), "nothing runs on an ambiguous parameter file"


@pytest.mark.parametrize(
    ("written", "message"),
    [
        ("03", "YAML reads it as the number 3; quote it: notebook: '03'"),
        ("3", "YAML reads it as the number 3; quote it: notebook: '03'"),
        ("010", "YAML reads it as the number 8; quote it: notebook: '08'"),
        ("[03]", "notebook must be text, got [3]"),
    ],
)
def test_a_notebook_written_as_a_number_asks_for_quotes(tmp_path, written, message):
    path = write(tmp_path, f"notebook: {written}\n")
    given = load_yaml(path)["notebook"]
    with pytest.raises(ParameterError, match=re.escape(message)):
        notebook_beside(path, given)
    assert notebook_beside(write(tmp_path, "notebook: '03'\n"), "03").stem == "03_automated_etl"


def test_spec_names_follow_the_one_folder_name_rule(tmp_path):
    path = write(tmp_path, "name: x\n")
    spec = load_yaml(path)
    assert spec_name(path, spec, "grid name", "backfill_2026-01") == "backfill_2026-01"
    with pytest.raises(SpecError) as err:
        spec_name(path, spec, "grid name", "../x")
    assert str(err.value) == f"{path}:1: grid name must be {NAME_RULE}, got '../x'"
    with pytest.raises(SpecError, match=r"got 2026; quote it: '2026'"):
        spec_name(path, spec, "grid name", 2026)
