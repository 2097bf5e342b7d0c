"""Re-execute committed notebooks in place: the stored outputs nbval compares against."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from mlops_helpers.config import KERNEL, apply_mlflow_env, mark_headless
from mlops_helpers.workbook.execute import KERNEL_ARGS


def refresh_notebook(path: Path, timeout: int = 600) -> None:
    """Re-execute a committed notebook in place, in a fresh empty workspace, with no timing
    metadata, so its stored outputs are exactly what nbval will compare against."""
    import nbformat
    from nbclient import NotebookClient

    from mlops_helpers.workbook import warmstart

    nb = nbformat.read(path, as_version=4)
    with tempfile.TemporaryDirectory(prefix="mlops-refresh-") as home:
        previous = os.environ.get("MLOPS_WORKBOOK_HOME")
        os.environ["MLOPS_WORKBOOK_HOME"] = home
        apply_mlflow_env()
        mark_headless()
        try:
            with warmstart.disabled():  # committed outputs come from fresh kernels
                NotebookClient(
                    nb,
                    kernel_name=KERNEL,
                    timeout=timeout,
                    record_timing=False,
                    extra_arguments=KERNEL_ARGS,
                    resources={"metadata": {"path": str(path.parent)}},
                ).execute()
        finally:
            if previous is None:
                os.environ.pop("MLOPS_WORKBOOK_HOME", None)
            else:
                os.environ["MLOPS_WORKBOOK_HOME"] = previous
    nb.metadata.pop("papermill", None)
    for cell in nb.cells:
        cell.metadata.pop("execution", None)
        cell.metadata.pop("papermill", None)
    nbformat.write(nb, path)
