"""The project's set-up files agree with each other: pyproject, locks, environment.yml, Makefile."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]


def _norm(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _pins(lock: Path) -> dict[str, str]:
    pins = {}
    for line in lock.read_text().splitlines():
        m = re.match(r"^([A-Za-z0-9_.-]+)==([^\s;]+)", line)
        if m:
            pins[_norm(m.group(1))] = m.group(2)
    return pins


def _requirement_name(req: str) -> str:
    return _norm(re.split(r"[<>=!~;\[ ]", req, maxsplit=1)[0])


PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]


def test_test_lock_pins_every_runtime_and_test_dependency_exactly():
    pins = _pins(ROOT / "requirements/test.lock")
    wanted = PYPROJECT["dependencies"] + PYPROJECT["optional-dependencies"]["test"]
    missing = [r for r in wanted if _requirement_name(r) not in pins]
    assert not missing, f"requirements/test.lock lacks {missing}: run `make lock`"


def test_the_one_lock_has_what_the_browser_test_and_make_lab_need():
    pins = _pins(ROOT / "requirements/test.lock")
    assert {"jupyterlab", "playwright"} <= set(pins), "run `make lock`"
    assert sorted((ROOT / "requirements").glob("*.lock")) == [ROOT / "requirements/test.lock"]


def test_exact_pins_in_pyproject_match_the_lock():
    pins = _pins(ROOT / "requirements/test.lock")
    for req in PYPROJECT["dependencies"]:
        if "==" in req:
            name, version = req.split("==")
            assert pins[_norm(name)] == version, f"{req} but the lock has {pins[_norm(name)]}"


def test_environment_yml_installs_the_lock_and_the_package_on_the_same_python():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    deps = env["dependencies"]
    python = [d for d in deps if isinstance(d, str) and d.startswith("python")]
    assert python == [f"python{PYPROJECT['requires-python']}"] == ["python>=3.11,<3.14"]
    pip = next(d["pip"] for d in deps if isinstance(d, dict) and "pip" in d)
    assert "-r requirements/test.lock" in pip and "-e ." in pip
    assert (ROOT / "requirements/test.lock").is_file()


def test_make_help_lists_every_target():
    makefile = (ROOT / "Makefile").read_text()
    phony = set(re.search(r"^\.PHONY:(.*)$", makefile, re.M).group(1).split())
    shown = subprocess.run(["make", "-s", "help"], cwd=ROOT, capture_output=True, text=True)
    listed = set(re.findall(r"^\s+(?:\x1b\[\d+m)?([\w-]+)", shown.stdout, re.M))
    assert phony <= listed, f"`make help` does not list {sorted(phony - listed)}"


def test_readme_ci_and_workflow_use_make_test():
    readme = (ROOT / "README.md").read_text()
    assert "make run" in readme and "make test" in readme
    assert "make test" in (ROOT / ".ci/run").read_text()
    assert ".ci/run" in (ROOT / ".github/workflows/ci.yml").read_text()


def test_ci_runs_every_python_pyproject_admits_and_no_other():
    from packaging.specifiers import SpecifierSet

    admitted = SpecifierSet(PYPROJECT["requires-python"])
    workflow = yaml.safe_load((ROOT / ".github/workflows/ci.yml").read_text())
    matrix = workflow["jobs"]["test"]["strategy"]["matrix"]["python-version"]
    assert matrix == ["3.11", "3.12", "3.13"]
    assert all(admitted.contains(f"{v}.0") for v in matrix)
    assert not admitted.contains("3.10.0") and not admitted.contains("3.14.0")
    minors = re.search(r"^MINORS=\((.*)\)", (ROOT / "tools/find_python.sh").read_text(), re.M)
    assert sorted(f"3.{m}" for m in minors.group(1).split()) == matrix, "tools/find_python.sh"


def test_generated_state_is_git_ignored():
    ignored = subprocess.run(
        ["git", "check-ignore", "workspace/x", "mlflow.db", ".venv/x", ".venv-3.12/x", "mlruns/x"],
        cwd=ROOT,
        capture_output=True,
        text=True,
    ).stdout.split()
    assert ignored == ["workspace/x", "mlflow.db", ".venv/x", ".venv-3.12/x", "mlruns/x"]


def test_readme_notebook_table_matches_the_curriculum():
    from mlops_helpers.workbook.curriculum import CURRICULUM

    readme = (ROOT / "README.md").read_text()
    rows = re.findall(r"^\| (\d\d) \| ([^|]+) \| ([^|]+) \| (\d+) \| ([^|]+) \|$", readme, re.M)
    table = {
        number: (title, level, int(minutes), shows) for number, title, level, minutes, shows in rows
    }
    expected = {stem[:2]: (c.title, c.level, c.minutes, c.shows) for stem, c in CURRICULUM.items()}
    assert table == expected, "README's notebook table and curriculum.CURRICULUM disagree"


def _excluded() -> set[str]:
    lines = (ROOT / "requirements/excludes.txt").read_text().splitlines()
    return {_norm(line) for line in lines if line.strip() and not line.startswith("#")}


def test_excluded_packages_stay_out_of_the_lock_and_the_install():
    excluded = _excluded()
    assert "rfc3987-syntax" in excluded
    assert not excluded & set(_pins(ROOT / "requirements/test.lock")), "run `make lock`"
    makefile = (ROOT / "Makefile").read_text()
    install = re.search(r"^UV := (.*)$", makefile, re.M).group(1)
    lock = re.search(r"^lock:.*\n\t(.*)$", makefile, re.M).group(1)
    for command in (install, lock):
        assert "--excludes requirements/excludes.txt" in command, command


def test_loading_nbformat_does_not_build_the_rfc3987_grammar():
    # Every papermill, nbclient and nbval process imports nbformat; with rfc3987-syntax
    # installed, jsonschema builds its Lark grammar there (1.2 to 1.6 s each time).
    probe = "import sys, nbformat; print('rfc3987_syntax' in sys.modules)"
    shown = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True)
    assert shown.stdout.strip() == "False", shown.stderr


def test_every_sub_package_is_in_the_distribution():
    """A sub-package missing from setuptools' list works in the editable install and is
    absent from a wheel: every folder of mlops_helpers with an __init__.py is listed."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    found = {
        ".".join(init.parent.relative_to(ROOT).parts)
        for init in (ROOT / "mlops_helpers").rglob("__init__.py")
    }
    assert set(setuptools["packages"]) == found
