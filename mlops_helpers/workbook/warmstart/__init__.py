"""Warm starts: headless kernels and scoring servers forked from a process that has
already imported the workbook's libraries.

A notebook kernel spends seconds of CPU importing pandas, scikit-learn, MLflow and
matplotlib before its first cell does any work, and a headless run of the workbook starts
dozens of kernels (the ten notebooks, the notebooks 06 runs, the runs of 08) and several
scoring servers (05, 09), which import much the same. Here one *template process* per
set-up imports those libraries once (:mod:`.template`, run as ``python -m
mlops_helpers.workbook.warmstart``), then forks a copy of itself for each kernel or
server; the copy becomes what ``python -m ipykernel_launcher -f <connection file>`` or
``python -m uvicorn ... mlflow.pyfunc.scoring_server.app:app`` would start (the module run
as ``__main__`` with the same arguments), in the caller's folder, with the caller's
environment and standard streams. Its command line (``ps -f``, /proc/PID/cmdline) stays
the template's; its name (/proc/PID/comm, what ``ps`` and ``pgrep`` show) is
``ipykernel`` or ``uvicorn``, the template's ``mlops-warmstart``, and its parent is the
template: :func:`templates` and :func:`forked_as` find them so.

This module is the entry point; :mod:`.caller` asks a template for a process,
:mod:`.template` is the template, :mod:`.provisioner` plugs it into jupyter_client.

Where it is switched on, in one function, :func:`enable`: the ``mlops-workbook`` command
(:func:`mlops_helpers.workbook.cli.main`) and the test session (``conftest.py``) call it;
it makes :class:`.provisioner.WarmProvisioner` (a jupyter_client *kernel provisioner*,
registered under :data:`PROVISIONER` in ``pyproject.toml``) the default provisioner of
this process and of the processes it starts (kernels, Dask workers), so papermill,
nbclient and nbval use it without other changes; scoring servers
(:class:`mlops_helpers.workbook.processes.ServerProcess`) ask :func:`fork` when
:func:`forks`. Their templates end 60 s after their last process (the test session ends
them at its end). Everything else starts the usual way: the learner's JupyterLab
(``make lab`` is plain ``jupyter lab``), the papermill command, a script. What such a
process starts through the workbook's helpers (notebook 06's pipeline and batch, 05's
scoring servers: headless work) is warm through :func:`enable_here` (``enable`` with
templates owned by that process, which end when it ends, so a kernel leaves nothing
running after it stops or restarts). ``make notebooks`` (:func:`disabled`) starts
everything the usual way: the committed outputs come from fresh kernels.
``MLOPS_WORKBOOK_WARM_KERNELS=0`` turns warm starts off.

What keeps a forked process the same as a fresh one:

- Only third-party libraries are imported in the template, never ``mlops_helpers``
  (whose settings come from the environment of each run), never a matplotlib backend
  (``matplotlib_inline`` hooks into the running IPython shell when it loads), never
  MLflow's scoring app (it loads the model when imported).
- The template process is keyed by everything an import could have read: the Python
  executable, every environment variable except those a run sets for itself
  (``PER_RUN``), the installed packages (site-packages' mtime) and this package's files.
  A request with another key gets (or starts) another template.
- The template moves what its imports made into the garbage collector's permanent
  generation (``gc.freeze()``) before it forks. A kernel's collections then skip the
  inherited heap instead of walking it, and so do not copy its pages (the kernel's start
  costs a third of the CPU: ``benchmarks/RESULTS.md``). The collector stays on and
  collects everything the process makes; only garbage among the inherited objects
  (none: they are the imported modules) would stay.
- The fork resets what a fresh interpreter would have fresh: signal handlers, session,
  folder, ``os.environ``, ``sys.argv``, ``sys.path[0]``, standard streams, numpy's global
  random state (``random`` reseeds itself on fork). What a library decides at import
  from where it is imported is decided as in a kernel: pandas is imported while the
  builtin ``get_ipython()`` answers as a Jupyter kernel's does (pandas reads it to pick
  ``display.max_columns``), and a scoring server gets back the value of a fresh process
  with ``pandas.set_option``.
- A template serves only its own user (``SO_PEERCRED``), and a caller talks only to a
  template of its own user: the socket's name is visible to every local user, who could
  bind it once a template has ended, so before it sends anything (its environment, its
  streams) the caller checks who listens (``SO_PEERCRED`` on its side), and it takes the
  ``pid N`` answer only for a process of its own user whose parent is that template.
- A template forks only ``python -m ipykernel_launcher`` and ``python -m uvicorn``, exits
  60 s after its last process (at once on SIGTERM or when its owner ends, once its
  processes have ended), and kills a process whose caller has gone (the connection the
  caller holds for it closes, however the caller ends), as ipykernel's parent poller
  would for a kernel.

Native threads in the template when it forks (measured from /proc/PID/task/*/comm after
its imports, on Linux x86-64 with the locked versions): the main thread, which alone runs
Python; one OpenBLAS worker per BLAS library beyond the first core (numpy's
``libscipy_openblas64_`` and SciPy's ``libscipy_openblas``, started when they load: one
each on 2 cores, named ``mlops-warmstart`` as they start after the template names itself);
and jemalloc's background purging thread (``jemalloc_bg_thd``, pyarrow's allocator, started
when pyarrow loads): four threads on 2 cores. libgomp (scikit-learn's OpenMP) is loaded but has
no threads until a parallel region runs, and the template runs none. No Python thread.
Forking is still safe because none of them is running anything the child needs or
holds a lock the child takes: OpenBLAS shuts its pool down in its own ``pthread_atfork``
handler before every fork and starts it again at the next BLAS call (the child then has
only its main thread; the first matrix product starts a fresh pool), jemalloc takes all
its locks before a fork and resets them, and its background thread state, in the
child, and the child only runs Python on its one thread. So nothing needs turning off
in the template (a thread-count setting would also change the kernels' BLAS).

One difference remains: a warning a library prints while it is imported (tqdm's
"IProgress not found" from ``import mlflow``) was printed in the template, so it does not
reach the notebook.

If anything about a launch does not fit (not Linux, no pidfd, another command, a stream
that is a pipe) or the template cannot be reached or is not this user's, the process
starts the usual way: warm starts change how long a start takes, never whether it works.
"""

from __future__ import annotations

import contextlib
import os
import sys
from collections.abc import Iterator

from mlops_helpers.workbook.warmstart.caller import (
    ForkedProcess,
    cpu_seconds,
    devnull,
    drain_all,
    fork,
    forked_as,
    prestart,
    templates,
)
from mlops_helpers.workbook.warmstart.common import (
    FORKABLE,
    IDLE_SECONDS,
    KERNEL_MODULE,
    MODULE,
    OWNER_ENV,
    PROVISIONER,
    PROVISIONER_ENV,
    SERVER_MODULE,
    SWITCH,
    WarmStartUnavailable,
    active,
    enabled,
    identity,
    supported,
)

__all__ = [
    "FORKABLE", "IDLE_SECONDS", "KERNEL_MODULE", "MODULE", "OWNER_ENV", "PROVISIONER",
    "PROVISIONER_ENV", "SERVER_MODULE", "SWITCH", "ForkedProcess", "WarmStartUnavailable",
    "active", "cpu_seconds", "devnull", "disabled", "drain_all", "enable", "enable_here",
    "enabled", "fork", "forked_as", "forks", "prestart", "supported", "templates",
]  # fmt: skip


def enable() -> bool:
    """Make warm starts the default for kernels this process, and the processes it starts,
    launch. Returns whether they are on (see :data:`SWITCH`)."""
    if not enabled():
        return False
    os.environ[PROVISIONER_ENV] = PROVISIONER
    factory = sys.modules.get("jupyter_client.provisioning.factory")
    if factory is not None and factory.KernelProvisionerFactory.initialized():
        # it read the environment when it was first used
        factory.KernelProvisionerFactory.instance().default_provisioner_name = PROVISIONER
    return True


def enable_here() -> bool:
    """Warm starts for what this process starts through the workbook's helpers, when no
    ``mlops-workbook`` command or test session enabled them already (a kernel of the
    learner's JupyterLab or of the papermill command, a script). The templates started from
    here and from the processes it starts (a Dask cluster's workers) are owned by this
    process and end when it ends.

    Called by :func:`mlops_helpers.workbook.execute.execute_notebook`,
    :func:`mlops_helpers.workbook.batch.cluster_client` and
    :meth:`mlops_helpers.workbook.processes.ServerProcess.start`. Returns whether warm
    starts are on.
    """
    if active():
        return True
    if not enabled():
        return False
    os.environ[OWNER_ENV] = identity(os.getpid())
    return enable()


@contextlib.contextmanager
def disabled() -> Iterator[None]:
    """Kernels started inside start the usual way (``make notebooks``: the committed
    outputs come from fresh kernels, and nbval compares warm runs against them)."""
    before = os.environ.get(SWITCH)
    os.environ[SWITCH] = "0"
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(SWITCH, None)
        else:
            os.environ[SWITCH] = before


def forks(cmd: list[str]) -> bool:
    """Whether :func:`fork` would be asked for ``cmd`` (a scoring server's command line)."""
    return active() and len(cmd) > 2 and cmd[1] == "-m" and cmd[2] in FORKABLE
