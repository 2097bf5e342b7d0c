"""What both sides of a warm start share: names, the template key, reading /proc."""

from __future__ import annotations

import hashlib
import json
import os
import socket
import struct
import sys
from pathlib import Path

PROVISIONER = "mlops-warm-provisioner"
MODULE = "mlops_helpers.workbook.warmstart"  # what the template process runs (``python -m``)
SWITCH = "MLOPS_WORKBOOK_WARM_KERNELS"
PROVISIONER_ENV = "JUPYTER_DEFAULT_PROVISIONER_NAME"  # read by jupyter_client
# "PID:START" of the process whose templates end when it ends (enable_here); START is the
# process's start time (/proc/PID/stat), so a reused pid is never mistaken for the owner.
OWNER_ENV = "MLOPS_WORKBOOK_WARM_OWNER"

# Imported once in the template. Third-party only; no matplotlib backend (see the package).
PRELOAD = (
    "numpy",
    "pandas",
    "pyarrow",
    "pyarrow.compute",
    "pyarrow.csv",
    "pyarrow.parquet",
    "matplotlib",
    "matplotlib.figure",
    "matplotlib.pyplot",
    "sklearn.compose",
    "sklearn.ensemble",
    "sklearn.linear_model",
    "sklearn.metrics",
    "sklearn.model_selection",
    "sklearn.pipeline",
    "sklearn.preprocessing",
    "mlflow",
    "mlflow.artifacts",
    "mlflow.models",
    "mlflow.pyfunc",
    "mlflow.sklearn",
    # the sqlite tracking and registry stores (sqlalchemy, alembic): what a kernel's first
    # configure_tracking imports, a half-second of each kernel that tracks
    "mlflow.store.tracking.sqlalchemy_store",
    "mlflow.store.model_registry.sqlalchemy_store",
    "alembic.command",
    "alembic.runtime.migration",
    "pandera.pandas",
    "yaml",
    "nbformat",
    "nbclient",
    "papermill",
    "IPython",
    "ipykernel.ipkernel",
    # how MLflow loads a scikit-learn model (skops serialization): its import is half a
    # second of each scoring server's start and of each kernel that loads a model
    "skops.io",
    # MLflow's scoring server, less its app (which loads the model when imported)
    "uvicorn",
    "uvicorn.main",
    "fastapi",
    "mlflow.pyfunc.scoring_server",
)

# Environment variables a run or a process sets for itself, read when used, never at import
# by the preloaded libraries: they may differ between processes forked from one template.
# MLOPS_ is this package's own (never preloaded): the workbook's settings, and what each
# endpoint server is told (the version it serves, its prediction log), so the servers of
# all versions share one template.
PER_RUN_PREFIXES = ("MLOPS_", "MLFLOW_EXPERIMENT_", "JPY_", "PYTEST_")
PER_RUN = frozenset(
    {
        "MLFLOW_TRACKING_URI",
        "MLFLOW_REGISTRY_URI",
        "MLFLOW_RUN_ID",
        "_MLFLOW_TELEMETRY_SESSION_ID",  # set by each process that loads MLflow
        "__pyfunc_model_path__",  # the model a scoring server loads when its app starts
        # set by ipykernel in every kernel, so the kernels a kernel starts share a template
        "CLICOLOR",
        "CLICOLOR_FORCE",
        "FORCE_COLOR",
        "GIT_PAGER",
        "PAGER",
        "TERM",
        "PYDEVD_USE_FRAME_EVAL",  # read by debugpy, which the template does not load
        # what a scoring server's environment adds (the venv's bin first on PATH; no
        # preloaded library looks anything up on PATH when it is imported)
        "PATH",
        "MLFLOW_SCORING_SERVER_REQUEST_TIMEOUT",
        # a terminal's size (pytest sets it in notebook 08's runs), read when printing
        "COLUMNS",
        "LINES",
        "__DASK_PARENT_PID",  # a Dask worker's nanny
        # set by the preloaded libraries when imported (scikit-learn for Intel's OpenMP,
        # MLflow for Spark): a caller that has imported them has these, one that has not
        # does not; every forked process gets them, as importing would
        "KMP_DUPLICATE_LIB_OK",
        "KMP_INIT_AT_FORK",
        "SPARK_LOCAL_IP",
        "PYARROW_IGNORE_TIMEZONE",
        "PWD",
        "OLDPWD",
        "SHLVL",
        "_",
    }
)
IDLE_SECONDS = 60.0
# What a template forks: ``python -m MODULE ...`` for these modules only.
KERNEL_MODULE = "ipykernel_launcher"
SERVER_MODULE = "uvicorn"  # MLflow's scoring server (mlops_helpers.serving)
FORKABLE = (KERNEL_MODULE, SERVER_MODULE)
# The names (/proc/PID/comm, what ``ps`` and ``pgrep`` show) a template and the processes it
# forks give themselves; their command line stays the template's.
TEMPLATE_NAME = "mlops-warmstart"
FORKED_NAMES = {KERNEL_MODULE: "ipykernel", SERVER_MODULE: "uvicorn"}


class WarmStartUnavailable(RuntimeError):
    """The template process could not start this process; the caller starts it the usual way."""


def supported() -> bool:
    """Linux with pidfds and descriptor passing: what a warm start needs."""
    return sys.platform == "linux" and hasattr(os, "pidfd_open") and hasattr(socket, "send_fds")


def enabled() -> bool:
    """Supported, and not switched off (``MLOPS_WORKBOOK_WARM_KERNELS=0``)."""
    return os.environ.get(SWITCH, "1") != "0" and supported()


def active() -> bool:
    """Warm starts are on here: ``enable`` ran in this process or one it descends from."""
    return enabled() and os.environ.get(PROVISIONER_ENV) == PROVISIONER


def stat(pid: int | str = "self") -> list[str]:
    """The fields of /proc/PID/stat after the command name: [0] is field 3 (state)."""
    return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()


def identity(pid: int) -> str:
    """``PID:START``: a process, never mistaken for a later one that reuses its pid."""
    return f"{pid}:{stat(pid)[19]}"  # field 22: start time, in clock ticks since boot


def owner(env: dict[str, str]) -> str | None:
    """Whose lifetime the templates for ``env`` share: its owner, else this process's."""
    return env.get(OWNER_ENV) or os.environ.get(OWNER_ENV) or None


def per_run(name: str) -> bool:
    """Whether ``name`` is an environment variable a run sets for itself (see PER_RUN)."""
    return name in PER_RUN or name.startswith(PER_RUN_PREFIXES)


def keyed_env(env: dict[str, str]) -> dict[str, str]:
    """The part of ``env`` an import could have read: what the template key covers."""
    out = {k: v for k, v in env.items() if not per_run(k)}
    # ipykernel sets this in every kernel it starts; a kernel's own kernels inherit it.
    out.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    return out


def _code_stamp() -> int:
    """The newest modification time of this package's files: new code, new templates."""
    return max(p.stat().st_mtime_ns for p in Path(__file__).parent.glob("*.py"))


def template_key(executable: str, env: dict[str, str]) -> str:
    """Which template serves a process of ``executable`` with ``env``."""
    import sysconfig

    site = Path(sysconfig.get_paths()["purelib"])
    stamp = {
        "executable": os.path.realpath(executable),
        "env": sorted(keyed_env(env).items()),
        "owner": owner(env),  # an owned template serves only its owner's processes
        "site": site.stat().st_mtime_ns if site.exists() else 0,
        "module": _code_stamp(),
        "preload": PRELOAD,
    }
    return hashlib.sha256(json.dumps(stamp).encode()).hexdigest()[:20]


def address(key: str) -> str:
    """The template's socket name for ``key``."""
    # Linux abstract namespace: no file to clean up, gone when the template exits, and a
    # second template racing to bind the same key fails instead of replacing the first.
    return f"\0mlops-workbook-kernel-template-{os.getuid()}-{key}"


def peer(conn: socket.socket) -> tuple[int, int]:
    """The pid and uid of the process at the other end of a Unix socket (the kernel's word)."""
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, _gid = struct.unpack("3i", creds)
    return pid, uid


def name_self(name: str) -> None:
    """Set this process's name (/proc/self/comm: what ``ps`` and ``pgrep`` show), not its
    command line. Best effort: a process that cannot is only harder to spot."""
    try:
        with open("/proc/self/comm", "w") as comm:
            comm.write(name[:15])
    except OSError:
        pass
