"""specs: YAML files read with line numbers, so every error names the file and line."""

from __future__ import annotations

import pytest

from mlops_helpers import runner
from mlops_helpers.specs import SpecError, clean, file_value, load_spec, load_yaml, where


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


def test_file_values_are_typed_against_the_declaration_and_name_their_source():
    spec = runner.ParamSpec("n_rows", "int", "2000", "rows")
    assert file_value("n_rows", 500, spec, "grid.yaml:4") == 500
    with pytest.raises(
        SpecError, match=r"grid.yaml:4: parameter n_rows \(grid.yaml:4\) must be int"
    ):
        file_value("n_rows", "500", spec, "grid.yaml:4")
    with pytest.raises(SpecError, match="grid.yaml:4: parameter n_rows must be an int from 1"):
        file_value("n_rows", 0, spec, "grid.yaml:4")
