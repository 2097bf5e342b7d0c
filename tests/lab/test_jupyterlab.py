"""Every notebook, opened in JupyterLab in a real (headless) Chromium, runs top to bottom
with the python3 kernel: its outputs cleared, then Run > Run All Cells. No cell shows an
error or a warning, its checkpoints and plots are rendered, and a screenshot of the whole
notebook is kept. Then some cells of 02 and 05 are run again, as a learner does, and no
server may leak, no checkpoint fail and no crafted pickle run a second time. The same
thing a learner does after ``make lab``."""

from __future__ import annotations

import nbformat
import pytest
from labtools import STDERR, LabRun, cell_label, run_in_lab

from mlops_helpers import config

NOTEBOOKS = sorted(config.notebooks_dir().glob("[0-9][0-9]_*.ipynb"))
CHECKPOINT = "✅ Checkpoint"

# After Run All, a learner runs some cells again. Per notebook: the cells, in order (the
# start of their first line), each with how many more TCP ports than after Run All the
# kernel and its children listen on once it is done: a server cell run twice leaves one
# server, not two, and a cell that starts and stops a server leaves none.
RERUNS = {
    "02_manual_deployment": (
        ('previous = globals().get("server")', 1),  # start the hand-written server again
        ('previous = globals().get("server")', 1),  # and again: the first one was stopped
        ("import urllib.error", 1),  # ask it: it loads model.pkl, which is a model again
        ("steps = pd.DataFrame(checklist)", 1),  # the checklist, re-run steps counted once
        ("from mlops_helpers.manual import DEPLOYMENT_CHECKLIST", 1),  # its checkpoint holds
        ('with manual_step("stop the server"):', 0),  # stop it: nothing listens
    ),
    "05_automated_deployment": (
        ("sample = gate_frame.head(5)", 0),  # serve @champion, smoke-test, stop
        ('with serving.ScoringServer(f"models:/{model_name}@champion") as server:', 0),
    ),
}
PICKLE_MARKER = "manual_deployment/pickle_ran_code.txt"  # 02's crafted pickle writes it


def committed_key_outputs(notebook: nbformat.NotebookNode) -> tuple[int, int]:
    """How many checkpoint messages and plots (PNG outputs) the committed notebook shows."""
    outputs = [out for cell in notebook.cells for out in cell.get("outputs", [])]
    checkpoints = sum(out.get("text", "").count(CHECKPOINT) for out in outputs)
    plots = sum("image/png" in out.get("data", {}) for out in outputs)
    return checkpoints, plots


def problems_seen(run: LabRun, committed: nbformat.NotebookNode) -> list[str]:
    """What a learner would see go wrong, one line each, naming the cell."""
    problems = list(run.problems)
    if run.kernel != "python3":
        problems.append(f"ran with the kernel {run.kernel!r}, not python3")
    if run.plain is not True:
        problems.append(
            "its kernel was not started the usual way (JupyterLab's own child running "
            "python -m ipykernel_launcher): make lab's kernels must not be forked from a "
            "warm template (mlops_helpers.workbook.warmstart)"
        )
    if run.saved is None:  # timed out: run.problems names the cell
        return problems
    raised = False
    for index, (cell, saved) in enumerate(zip(run.cells, run.saved.cells, strict=True), 1):
        errors = [out for out in saved.get("outputs", []) if out.output_type == "error"]
        problems += [f"{cell_label(index, cell)} raised {e.ename}: {e.evalue}" for e in errors]
        raised = raised or bool(errors)
        if not errors:  # a warning or a log line: the notebooks promise an empty stderr
            problems += [
                f"{cell_label(index, cell)} shows stderr: {out['text'][:200]!r}"
                for out in cell["outputs"]
                if out["mime"] == STDERR
            ]
    if raised:
        return problems  # the cells after it did not run: their outputs are no news
    problems += [
        f"{cell_label(index, cell)} did not run"
        for index, cell in enumerate(run.cells, 1)
        if cell["code"] and cell["prompt"] == "[ ]:"
    ]
    shown = sum(out["text"].count(CHECKPOINT) for cell in run.cells for out in cell["outputs"])
    images = sum(w > 0 for cell in run.cells for out in cell["outputs"] for w in out["images"])
    checkpoints, plots = committed_key_outputs(committed)
    if shown < max(1, checkpoints):
        problems.append(
            f"shows {shown} '{CHECKPOINT}' messages, the committed notebook {checkpoints}"
        )
    if images < plots:
        problems.append(f"shows {images} plots, the committed notebook {plots}")
    return problems + rerun_problems(run)


def rerun_problems(run: LabRun) -> list[str]:
    """What went wrong when cells were run again after Run All, one line each."""
    problems = []
    expected = dict(RERUNS.get(run.notebook.removesuffix(".ipynb"), ()))
    for rerun in run.reruns:
        name = f"run again, the cell `{rerun.first_line[:50]}`"
        if rerun.cell is None:
            problems.append(f"{name} was not found once, or did not finish")
            continue
        shown = [out["text"][:200] for out in rerun.cell["outputs"] if out["mime"] == STDERR]
        problems += [f"{name} showed an error or a warning: {text!r}" for text in shown]
        more = rerun.listening - run.listening
        if more != expected[rerun.first_line] and not shown:
            problems.append(
                f"{name} left {more} more listening ports than Run All, "
                f"not {expected[rerun.first_line]}: a server leaked or did not start"
            )
    return problems


@pytest.mark.slow
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_in_jupyterlab(notebook, page, lab, screenshots, run_times):
    screenshot = screenshots / f"{notebook.stem}.png"
    reruns = tuple(first for first, _ in RERUNS.get(notebook.stem, ()))
    run = run_in_lab(page, lab, notebook.name, screenshot, reruns)
    run_times[notebook.stem] = run.seconds
    problems = problems_seen(run, nbformat.read(notebook, as_version=4))
    marker = lab.workspace / PICKLE_MARKER
    if run.reruns and marker.exists() and marker.stat().st_mtime >= run.reruns_started:
        problems.append("a re-run cell loaded the crafted pickle again: its marker was rewritten")
    assert not problems, (
        f"{notebook.name} in JupyterLab (screenshot: {screenshot}):\n  - "
        + "\n  - ".join(problems)
        + f"\nJupyterLab's log ends:\n{lab.log_tail(15)}"
    )
