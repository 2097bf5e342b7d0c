"""Test session set-up shared by tests/ and the nbval run over notebooks/.

Every pytest process (each xdist worker too) gets its own throw-away workspace, so tests
never touch the learner's ``workspace/`` and never see each other's files.
"""

import os
import shutil
import signal
import tempfile

import pytest

from mlops_helpers.config import HOME_ENV, STORE_TEMPLATE_ENV, apply_mlflow_env, mark_headless
from mlops_helpers.workbook import warmstart

TEMPLATE_FOLDER = pytest.StashKey[str]()


def pytest_configure(config):
    """A fresh workspace, MLflow's quiet offline env, unattended kernels started warm, and
    one MLflow store template for the session (xdist workers inherit the controller's)."""
    # Tests stop what they start with Ctrl-C (SIGINT), as a learner does. A shell starts a
    # background job (`make test &` in a script) with SIGINT ignored, and every process
    # inherits that: the commands under test would never see their Ctrl-C, and a pool's
    # workers never end. The session gets back the terminal's default.
    if signal.getsignal(signal.SIGINT) == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    os.environ[HOME_ENV] = tempfile.mkdtemp(prefix="mlops-test-ws-")
    if STORE_TEMPLATE_ENV not in os.environ:  # new stores: a copy, not 1.5 s of migrations
        folder = tempfile.mkdtemp(prefix="mlops-test-store-template-")
        os.environ[STORE_TEMPLATE_ENV] = os.path.join(folder, "mlflow.db")
        config.stash[TEMPLATE_FOLDER] = folder
    apply_mlflow_env()
    mark_headless()  # nbval's kernels too: no progress bars in compared outputs
    warmstart.enable()  # nbval's and papermill's kernels fork from a warm template


def pytest_unconfigure(config):
    """The process that made the store template deletes it, and lets the kernel template
    processes end when their last kernel has (instead of 60 s later)."""
    folder = config.stash.get(TEMPLATE_FOLDER, None)
    if folder:
        shutil.rmtree(folder, ignore_errors=True)
        os.environ.pop(STORE_TEMPLATE_ENV, None)
        warmstart.drain_all()


# Longest work first, so that under `pytest -n 2 --dist loadscope --no-loadscope-reorder`
# (make test) the browser test, one scope of about two minutes, starts at once on one
# worker while the other worker takes everything else, instead of starting halfway
# through and running alone at the end. Within a scope the order is unchanged.
LONGEST_FIRST = ("tests/lab/", "notebooks/", "tests/integration/", "tests/notebooks/")


def pytest_collection_modifyitems(config, items):
    """Order the items by LONGEST_FIRST (a stable sort: nbval cells keep their order)."""

    def rank(item) -> int:
        path = item.nodeid.replace("\\", "/")
        return next(
            (i for i, prefix in enumerate(LONGEST_FIRST) if path.startswith(prefix)),
            len(LONGEST_FIRST),
        )

    items.sort(key=rank)
