"""Reading what an executed notebook showed."""

from __future__ import annotations

import nbformat


def output_text(nb: nbformat.NotebookNode) -> str:
    """All text a notebook printed or displayed (stdout, stderr, text/plain)."""
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            parts.append(out.get("text", ""))
            parts.append(out.get("data", {}).get("text/plain", ""))
    return "\n".join(parts)


def stderr_text(nb: nbformat.NotebookNode) -> str:
    """Everything a notebook wrote to stderr (warnings, logs)."""
    return "\n".join(
        out.get("text", "")
        for cell in nb.cells
        for out in cell.get("outputs", [])
        if out.get("name") == "stderr"
    )


def checkpoints_passed(nb: nbformat.NotebookNode) -> int:
    """How many checkpoints printed that they held."""
    return output_text(nb).count("✅ Checkpoint")


def exercise_names(nb: nbformat.NotebookNode) -> set[str]:
    """The exercises a notebook's code checks: the names passed to ``exercise("NN.K", ...``."""
    import re

    return {
        m.group(1)
        for cell in nb.cells
        if cell.cell_type == "code"
        for m in re.finditer(r'exercise\(\s*"(\d\d\.\d+)"', cell.source)
    }


def exercises_solved(nb: nbformat.NotebookNode) -> set[str]:
    """The exercises whose check printed that they were solved."""
    import re

    return set(re.findall(r"✅ Exercise (\d\d\.\d+): solved", output_text(nb)))
