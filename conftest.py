"""Test session set-up shared by tests/ and the nbval run over notebooks/.

Every pytest process (each xdist worker too) gets its own throw-away workspace, so tests
never touch the learner's ``workspace/`` and never see each other's files.
"""

import os
import tempfile

from mlops_helpers.config import HOME_ENV, apply_mlflow_env, mark_headless


def pytest_configure(config):
    """A fresh workspace, MLflow's quiet offline env, and unattended kernels."""
    os.environ[HOME_ENV] = tempfile.mkdtemp(prefix="mlops-test-ws-")
    apply_mlflow_env()
    mark_headless()  # nbval's kernels too: no progress bars in compared outputs
