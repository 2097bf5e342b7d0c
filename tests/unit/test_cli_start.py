"""cli start-up: --help and argument errors answer before anything heavy is imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

HEAVY = ("pandas", "numpy", "pyarrow", "mlflow", "papermill", "sklearn", "dask")

# Runs one command line in a fresh interpreter and reports its exit code, the heavy modules
# it loaded and its time (printed for information only: a timing assertion would be flaky).
PROBE = """
import json, sys, time
start = time.perf_counter()
from mlops_helpers.workbook import cli
try:
    code = cli.main(sys.argv[1:])
except SystemExit as stop:
    code = stop.code
heavy = sorted(m for m in {heavy!r} if m in sys.modules)
print(json.dumps({{"code": code, "heavy": heavy, "seconds": time.perf_counter() - start}}))
"""


def probe(tmp_path, *argv: str) -> dict:
    """Run ``mlops-workbook ARGV`` in a subprocess with an empty workspace; its report."""
    env = {**os.environ, "MLOPS_WORKBOOK_HOME": str(tmp_path / "ws")}
    done = subprocess.run(
        [sys.executable, "-c", PROBE.format(heavy=HEAVY), *argv],
        capture_output=True, text=True, env=env, timeout=60, check=False,
    )  # fmt: skip
    report = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"{' '.join(argv)}: exit {report['code']} in {report['seconds']:.3f} s")
    return {**report, "err": done.stderr}


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        (["--help"], 0),
        (["run", "--help"], 0),
        (["batch", "--help"], 0),
        (["serve", "--port", "0"], 2),
        (["batch", "--grid", "g.yaml", "--workers", "-1"], 2),
        (["run", "--jobs", "0"], 2),
        (["deploy", "--model", "../x"], 2),
        (["deploy", "--train", "--version", "3"], 2),
        (["deploy", "--seed", "-1"], 2),
        (["serve", "--model", "a/b"], 2),
    ],
)
def test_help_and_argument_errors_load_nothing_heavy(tmp_path, argv, code):
    report = probe(tmp_path, *argv)
    assert report["code"] == code, report["err"]
    assert report["heavy"] == [], f"{' '.join(argv)} imported {report['heavy']}"
    assert not (tmp_path / "ws").exists(), "an argument error writes nothing"


def test_an_argument_error_says_what_is_wrong(tmp_path):
    report = probe(tmp_path, "deploy", "--model", "../x")
    assert "error: --model must be a name of 1 to 64 letters" in report["err"]
    assert "Traceback" not in report["err"]


def test_the_parameter_rules_import_without_pandas():
    code = (
        "import sys, mlops_helpers.parameters, mlops_helpers.workbook.specs; "
        f"print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
