"""Run pytest (with nbval) on a folder in a subprocess, and read its report into a result.

Notebook 08 runs the real ``pytest --nbval`` on a sample notebook; this module is the
plumbing it needs and no lesson is about. The run is isolated from this repository's
settings and from whatever pytest plugins happen to be installed:

- ``PYTEST_DISABLE_PLUGIN_AUTOLOAD=1`` and ``-p PLUGIN`` for each plugin asked for (notebook
  08: ``nbval``), so nothing else loads (a second saved per run), and no ``PYTEST_*``
  variable of the caller (the test session's own) leaks in;
- ``-c /dev/null --rootdir FOLDER``: no ``pyproject.toml`` or ``pytest.ini`` found above the
  folder applies (the workspace sits inside the project, whose ``addopts`` would), and test
  ids are relative to the folder;
- no cache, no parallel workers (``-p no:cacheprovider -p no:xdist``), quiet (``-q``), no
  colour, a fixed report width (``COLUMNS``), the short summary of failures and errors
  (``-rfE``).

:func:`parse_report` reads what pytest printed: the counts of its last line, each failed
or erroring test from the short summary (its id and message), and, for nbval, which
outputs of a cell differed (``mismatch 'stdout'`` in the cell's section).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from mlops_helpers.errors import WorkbookFailure

# Options of every run (then ``--rootdir FOLDER``, ``-p PLUGIN`` for each plugin asked for).
OPTIONS = ("-c", os.devnull, "-p", "no:cacheprovider", "-p", "no:xdist", "-q", "--color=no", "-rfE")
ENV = {"PYTEST_DISABLE_PLUGIN_AUTOLOAD": "1", "COLUMNS": "120"}
# Exit codes after which the report is a report: all passed, some failed, none collected.
REPORTED = (0, 1, 5)

_COUNT = re.compile(r"(\d+) (passed|failed|errors?|skipped|xfailed|xpassed|deselected|warnings?)\b")
_FINAL = re.compile(r"\bin \d+(\.\d+)?s\b")
_SUMMARY = re.compile(r"^(FAILED|ERROR) (\S+(?:::[^\n]*?)?)(?: - (.*))?$", re.M)
_SECTION = re.compile(r"^_{3,} (.+?) _{3,}$", re.M)
_MISMATCH = re.compile(r"mismatch '([^']+)'")


class PytestDidNotRun(WorkbookFailure):
    """pytest stopped before reporting on tests (a usage error, an internal error)."""


@dataclass(frozen=True)
class Failure:
    """One test that did not pass: its id, ``failed`` or ``error``, pytest's one-line
    message, and for an nbval cell the outputs that differed (``stdout``, ``text/plain``)."""

    test: str
    outcome: str
    message: str = ""
    mismatched: tuple[str, ...] = ()


@dataclass(frozen=True)
class PytestRun:
    """What one pytest run reported."""

    args: tuple[str, ...]
    exit_code: int
    counts: dict[str, int] = field(default_factory=dict)
    failures: tuple[Failure, ...] = ()

    @property
    def passed(self) -> int:
        return self.counts.get("passed", 0)

    @property
    def failed(self) -> int:
        return self.counts.get("failed", 0)

    @property
    def errors(self) -> int:
        return self.counts.get("errors", 0)

    @property
    def failed_tests(self) -> list[str]:
        """Ids of the tests that failed or errored, in the order pytest listed them."""
        return [f.test for f in self.failures]

    def summary(self) -> str:
        """The command, its exit code and counts (passed, failed, errors), and one line per
        test that did not pass."""
        counts = ", ".join(
            f"{self.counts[w]} {_word(w, self.counts[w])}"
            for w in ("passed", "failed", "errors")
            if w in self.counts
        )
        lines = [
            f"$ pytest {' '.join(self.args)}",
            f"exit code {self.exit_code}: {counts or 'no tests ran'}",
        ]
        for f in self.failures:
            what = f"output differs in {', '.join(f.mismatched)}" if f.mismatched else f.message
            lines.append(f"  {f.outcome.upper()} {f.test}" + (f": {what}" if what else ""))
        return "\n".join(lines)


def _word(word: str, n: int) -> str:
    return ("error" if n == 1 else "errors") if word == "errors" else word


def parse_report(stdout: str) -> tuple[dict[str, int], tuple[Failure, ...]]:
    """The counts of pytest's final line (``{"passed": 7, "failed": 1}``; ``errors`` and
    ``warnings`` always plural) and each test the short summary lists as failed or erroring.

    Raises ValueError when there is no final line of counts (pytest did not report)."""
    final = next(
        (line for line in reversed(stdout.strip().splitlines()) if _FINAL.search(line)), None
    )
    if final is None:
        raise ValueError("no final line of counts in pytest's output")
    counts: dict[str, int] = {}
    for n, word in _COUNT.findall(final):
        word = {"error": "errors", "warning": "warnings"}.get(word, word)
        counts[word] = int(n)
    head, found, summary = stdout.rpartition("short test summary info")
    if not found:  # nothing failed or errored: no summary, and no failure sections
        head, summary = "", ""
    sections = _sections(head)
    failures = tuple(
        Failure(
            test,
            "failed" if kind == "FAILED" else "error",
            (message or "").strip(),
            _mismatches(sections, test),
        )
        for kind, test, message in _SUMMARY.findall(summary)
    )
    return counts, failures


def _sections(text: str) -> dict[str, str]:
    """The report's sections, by title (``sample.ipynb::Cell 2``, ``test_bad``)."""
    parts = _SECTION.split(text)
    return dict(zip(parts[1::2], parts[2::2], strict=True))


def _mismatches(sections: dict[str, str], test: str) -> tuple[str, ...]:
    """The outputs nbval found different in ``test``'s section (none for other tests)."""
    body = sections.get(test, "")
    return tuple(sorted(set(_MISMATCH.findall(body))))


def run_pytest(
    *args: str,
    cwd: Path,
    plugins: tuple[str, ...] = (),
    options: tuple[str, ...] = (),
    timeout: float = 600,
) -> PytestRun:
    """Run ``python -m pytest ARGS`` in ``cwd`` with only ``plugins`` loaded, the isolating
    :data:`OPTIONS` (see the module docstring) and ``options``; the parsed report, whose
    ``args`` (what :meth:`PytestRun.summary` shows) are ``args`` alone. PytestDidNotRun
    when pytest exits without a report of tests (exit 2, 3 or 4), with its output."""
    command = [sys.executable, "-m", "pytest", *OPTIONS, "--rootdir", str(cwd)]
    for plugin in plugins:
        command += ["-p", plugin]
    command += options
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST_")} | ENV
    done = subprocess.run(
        [*command, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout
    )
    try:
        if done.returncode not in REPORTED:
            raise ValueError(f"exit code {done.returncode}")
        counts, failures = parse_report(done.stdout)
    except ValueError as exc:
        raise PytestDidNotRun(
            f"pytest {' '.join(args)} did not report on tests ({exc}):\n"
            f"{done.stdout}{done.stderr}".rstrip()
        ) from None
    return PytestRun(tuple(args), done.returncode, counts, failures)


KERNEL_START_FAILED = "Kernel died before replying to kernel_info"


def run_nbval(*args: str, cwd: Path, timeout: float = 600) -> PytestRun:
    """``pytest ARGS`` with the nbval plugin alone, in ``cwd``, and ``--nbval-current-env``
    (the kernel is this Python's, as ``make test`` runs it). Pass the mode (``--nbval``,
    ``--nbval-lax``), a sanitize file and the notebooks in ``args``.

    Run once more when a kernel did not start (:data:`KERNEL_START_FAILED`: a port it was
    given was taken by another process before it bound it): that is no result about the
    notebooks, as papermill's retried start (``execute.RetriedKernelStart``) is not."""

    def once() -> PytestRun:
        return run_pytest(
            *args, cwd=cwd, plugins=("nbval",), options=("--nbval-current-env",), timeout=timeout
        )

    run = once()
    if any(KERNEL_START_FAILED in f.message for f in run.failures):
        run = once()
    return run
