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
