"""Warm starts: headless kernels and scoring servers forked from a process that has
already imported the workbook's libraries.

A notebook kernel spends 2 to 4 s of CPU importing pandas, scikit-learn, MLflow and
matplotlib before its first cell does any work, and a headless run of the workbook starts
dozens of kernels (the ten notebooks, the notebooks 06 runs, the runs of 08) and several
scoring servers (05, 09), which import much the same. Here one *template process*
per set-up imports those libraries once, then forks a copy of itself for each kernel or
server; the copy becomes what ``python -m ipykernel_launcher -f <connection file>`` or
``python -m uvicorn ... mlflow.pyfunc.scoring_server.app:app`` would start (the module
run as ``__main__`` with the same arguments), in the caller's folder, with the caller's
environment and standard streams, and showing that command line in ``ps``.

How it plugs in: for kernels, :class:`WarmProvisioner` is a jupyter_client *kernel
provisioner* (registered under :data:`PROVISIONER` in ``pyproject.toml``). :func:`enable`
makes it the default provisioner of this process and of the processes it starts (kernels,
Dask workers), so papermill, nbclient and nbval use it without other changes; for
servers, :class:`mlops_helpers.workbook.processes.ServerProcess` asks :func:`fork` when
:func:`active`. The ``mlops-workbook`` command and the test session enable it; their
templates end 60 s after their last process (the test session ends them at its end).
``make lab`` (:mod:`mlops_helpers.workbook.lab`) enables it in JupyterLab, with templates *owned* by
JupyterLab: they end when it ends.

A process started elsewhere (plain ``jupyter lab``'s kernels, the papermill command's, a
script) starts the usual way itself, but what it starts through the workbook's helpers
(notebook 06's pipeline and batch, 05's scoring servers) is warm (:func:`enable_here`),
from templates owned by that process, so a kernel leaves nothing running after it stops or
restarts. ``make notebooks`` (:func:`disabled`) starts everything the usual way: the
committed outputs come from fresh kernels.

What keeps a forked process the same as a fresh one:

- Only third-party libraries are imported in the template, never ``mlops_helpers``
  (whose settings come from the environment of each run), never a matplotlib backend
  (``matplotlib_inline`` hooks into the running IPython shell when it loads), never
  MLflow's scoring app (it loads the model when imported).
- The template process is keyed by everything an import could have read: the Python
  executable, every environment variable except those a run sets for itself
  (:data:`PER_RUN`), the installed packages (site-packages' mtime) and this file. A
  request with another key gets (or starts) another template.
- The fork resets what a fresh interpreter would have fresh: signal handlers,
  session, folder, ``os.environ``, ``sys.argv``, ``sys.path[0]``, standard streams,
  numpy's global random state (``random`` reseeds itself on fork), and what a library
  decided at import because the template is not a kernel (:func:`_as_in_a_kernel`).
- A template serves only its own user (``SO_PEERCRED``), and a caller talks only to a
  template of its own user: the socket's name is visible to every local user, who could
  bind it once a template has ended, so before it sends anything (its environment, its
  streams) the caller checks who listens (``SO_PEERCRED`` on its side), and it takes the
  ``pid N`` answer only for a process of its own user whose parent is that template.
- A template forks only the two commands of :data:`FORKABLE`, has one thread when it
  forks, exits 60 s after its last process (at once on SIGTERM or when its owner ends,
  once its processes have ended), and kills a process whose caller has gone (the
  connection the caller holds for it closes, however the caller ends), as ipykernel's
  parent poller would for a kernel.

One difference remains: a warning a library prints while it is imported (tqdm's
"IProgress not found" from ``import mlflow``) was printed in the template, so it does not
reach the notebook.

If anything about a launch does not fit (not Linux, no pidfd, another command, a stream
that is a pipe) or the template cannot be reached or is not this user's, the process
starts the usual way: warm starts change how long a start takes, never whether it works.
``MLOPS_WORKBOOK_WARM_KERNELS=0`` turns them off.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

PROVISIONER = "mlops-warm-provisioner"
MODULE = "mlops_helpers.workbook.warmstart"  # what the template process runs (``python -m``)
SWITCH = "MLOPS_WORKBOOK_WARM_KERNELS"
PROVISIONER_ENV = "JUPYTER_DEFAULT_PROVISIONER_NAME"  # read by jupyter_client
# "PID:START" of the process whose templates end when it ends (enable_here); START is the
# process's start time (/proc/PID/stat), so a reused pid is never mistaken for the owner.
OWNER_ENV = "MLOPS_WORKBOOK_WARM_OWNER"

# Imported once in the template. Third-party only; no matplotlib backend (see above).
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
    "pandera.pandas",
    "yaml",
    "nbformat",
    "nbclient",
    "papermill",
    "IPython",
    "ipykernel.ipkernel",
    # MLflow's scoring server, less its app (which loads the model when imported)
    "uvicorn",
    "uvicorn.main",
    "fastapi",
    "mlflow.pyfunc.scoring_server",
)

# Environment variables a run or a process sets for itself, read when used, never at import
# by the preloaded libraries: they may differ between processes forked from one template.
PER_RUN_PREFIXES = ("MLOPS_WORKBOOK_", "MLFLOW_EXPERIMENT_", "JPY_", "PYTEST_")
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
        "MLOPS_TRACKING_URI",  # mlops-workbook --tracking-uri (our package: never preloaded)
        # set by the preloaded libraries when imported (scikit-learn for Intel's OpenMP,
        # MLflow for Spark): a caller that has imported them has these, one that has not
        # does not; every forked process gets them, as importing would (_IMPORTS_SET)
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
COMMAND_ROOM = 1024  # bytes of command line a forked process can show
# What a template forks: ``python -m MODULE ...`` for these modules only.
KERNEL_MODULE = "ipykernel_launcher"
SERVER_MODULE = "uvicorn"  # MLflow's scoring server (mlops_helpers.serving)
FORKABLE = (KERNEL_MODULE, SERVER_MODULE)


class WarmStartUnavailable(RuntimeError):
    """The template process could not start this process; the caller starts it the usual way."""


def supported() -> bool:
    return sys.platform == "linux" and hasattr(os, "pidfd_open") and hasattr(socket, "send_fds")


def enabled() -> bool:
    return os.environ.get(SWITCH, "1") != "0" and supported()


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
    ``mlops-workbook`` command, test session or ``make lab`` enabled them already (a kernel
    of plain ``jupyter lab`` or of the papermill command, a script), and for JupyterLab in
    :mod:`mlops_helpers.workbook.lab`. The templates started from here and from the processes it
    starts (a Dask cluster's workers) are owned by this process and end when it ends.

    Called by :func:`mlops_helpers.workbook.execute.execute_notebook`,
    :func:`mlops_helpers.workbook.batch.cluster_client` and
    :meth:`mlops_helpers.workbook.processes.ServerProcess.start`. Returns whether warm starts are on.
    """
    if active():
        return True
    if not enabled():
        return False
    os.environ[OWNER_ENV] = _identity(os.getpid())
    return enable()


def _identity(pid: int) -> str:
    return f"{pid}:{_stat(pid)[19]}"  # field 22: start time, in clock ticks since boot


def _owner(env: dict[str, str]) -> str | None:
    """Whose lifetime the templates for ``env`` share: its owner, else this process's."""
    return env.get(OWNER_ENV) or os.environ.get(OWNER_ENV) or None


@contextlib.contextmanager
def disabled():
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


def _per_run(name: str) -> bool:
    return name in PER_RUN or name.startswith(PER_RUN_PREFIXES)


def _keyed_env(env: dict[str, str]) -> dict[str, str]:
    out = {k: v for k, v in env.items() if not _per_run(k)}
    # ipykernel sets this in every kernel it starts; a kernel's own kernels inherit it.
    out.setdefault("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    return out


def template_key(executable: str, env: dict[str, str]) -> str:
    import sysconfig

    site = Path(sysconfig.get_paths()["purelib"])
    stamp = {
        "executable": os.path.realpath(executable),
        "env": sorted(_keyed_env(env).items()),
        "owner": _owner(env),  # an owned template serves only its owner's processes
        "site": site.stat().st_mtime_ns if site.exists() else 0,
        "module": Path(__file__).stat().st_mtime_ns,
        "preload": PRELOAD,
    }
    return hashlib.sha256(json.dumps(stamp).encode()).hexdigest()[:20]


def _stat(pid: int | str = "self") -> list[str]:
    """The fields of /proc/PID/stat after the command name: [0] is field 3 (state)."""
    return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()


def _address(key: str) -> str:
    # Linux abstract namespace: no file to clean up, gone when the template exits, and a
    # second template racing to bind the same key fails instead of replacing the first.
    return f"\0mlops-workbook-kernel-template-{os.getuid()}-{key}"


# --------------------------------------------------------------------------- caller side


class ForkedProcess:
    """The caller's handle on a forked kernel or server: what jupyter_client and
    :class:`mlops_helpers.workbook.processes.ServerProcess` need of a ``Popen``."""

    stdin = stdout = stderr = None

    def __init__(self, conn: socket.socket, pid: int, pidfd: int) -> None:
        self._conn = conn
        self.pid = pid
        self._pidfd = pidfd  # a pidfd on ``pid``, owned (and closed once) by this handle
        self.returncode: int | None = None

    def poll(self) -> int | None:
        if self.returncode is not None:
            return self.returncode
        ready, _, _ = select.select([self._pidfd], [], [], 0)
        if not ready:
            return None
        self.returncode = self._exit_status()
        self._close()
        return self.returncode

    def _exit_status(self) -> int:
        # The template reaps the kernel and sends its status on the connection.
        self._conn.settimeout(5)
        try:
            data = b""
            while not data.endswith(b"\n"):
                chunk = self._conn.recv(64)
                if not chunk:
                    break
                data += chunk
            return int(data.split()[-1]) if data.startswith(b"exit ") else 1
        except (OSError, ValueError):
            return 1

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            if deadline is not None and time.monotonic() > deadline:
                raise subprocess.TimeoutExpired(f"process {self.pid}", timeout)
            time.sleep(0.02)
        return self.returncode  # type: ignore[return-value]

    def send_signal(self, signum: int) -> None:
        if self.returncode is None:
            signal.pidfd_send_signal(self._pidfd, signum)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)

    def _close(self) -> None:
        """Close the pidfd and the connection, once: poll() and __del__ both call this, and
        a second os.close of the number would close whatever file was opened under it since."""
        pidfd, self._pidfd = self._pidfd, -1
        if pidfd >= 0:
            with contextlib.suppress(OSError):
                os.close(pidfd)
        with contextlib.suppress(OSError):
            self._conn.close()  # a socket object closes its descriptor once

    def __del__(self) -> None:
        self._close()


def _connect(address: str, timeout: float) -> socket.socket | None:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(address)
        return sock
    except OSError:
        sock.close()
        return None


def _template_of_ours(conn: socket.socket) -> int:
    """The pid of the process listening at the other end of ``conn``, a process of this
    user; WarmStartUnavailable when another user holds the name (nothing sent to it)."""
    pid, uid = _peer(conn)
    if uid != os.getuid():
        raise WarmStartUnavailable(
            f"the template's socket is held by another user (uid {uid}), not by a template"
        )
    return pid


def _open_child(pid: int, template: int) -> int:
    """A pidfd on ``pid`` if it is a process of this user forked by ``template``;
    WarmStartUnavailable otherwise (a reply naming some other process is not trusted)."""
    pidfd = os.pidfd_open(pid)  # first: /proc/PID below is then this process, not a reuse
    try:
        parent = int(_stat(pid)[1])
        owner = os.stat(f"/proc/{pid}").st_uid
    except (OSError, ValueError, IndexError):
        parent = owner = -1
    if parent != template or owner != os.getuid():
        os.close(pidfd)
        raise WarmStartUnavailable(f"the template answered pid {pid}, not a process it forked")
    return pidfd


def _start_template(executable: str, env: dict[str, str], key: str) -> None:
    # what its key covers, and PATH: nothing of one run (its workspace, its store) in the
    # shared template's environment
    template_env = _keyed_env(env)
    if "PATH" in env:
        template_env["PATH"] = env["PATH"]
    subprocess.Popen(
        # the blank argument reserves room for each forked process's own command line
        [executable, "-m", MODULE, key, _owner(env) or "-", " " * COMMAND_ROOM],
        env=template_env,
        cwd="/",
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )


def prestart(env: dict[str, str] | None = None) -> bool:
    """Start the template that a kernel started here with ``env`` would use, without
    waiting for it, so that its imports overlap with this process's own start-up work (a
    Dask worker before its first item). Returns whether a template was started."""
    if not active():
        return False
    env = dict(os.environ if env is None else env)
    key = template_key(sys.executable, env)
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.bind(_address(key))  # free: no template serves this key yet
    except OSError:
        return False
    finally:
        probe.close()
    _start_template(sys.executable, env, key)
    return True


def fork(
    cmd: list[str], env: dict[str, str], cwd: str, streams: tuple[int, int, int] = (0, 1, 2)
) -> ForkedProcess:
    """Ask the template process for ``cmd`` (``python -m`` one of :data:`FORKABLE`) as a
    forked process whose standard streams are the file descriptors ``streams``."""
    key = template_key(cmd[0], env)
    address = _address(key)
    conn = _connect(address, timeout=120)
    if conn is None:
        _start_template(cmd[0], env, key)
        deadline = time.monotonic() + 10
        while conn is None and time.monotonic() < deadline:
            time.sleep(0.02)
            conn = _connect(address, timeout=120)
        if conn is None:
            raise WarmStartUnavailable("the kernel template process did not start")
    try:
        template = _template_of_ours(conn)  # before anything is sent
        request = json.dumps({"argv": cmd, "env": env, "cwd": cwd}).encode() + b"\n"
        socket.send_fds(conn, [request], list(streams))
        reply = b""
        while not reply.endswith(b"\n"):
            chunk = conn.recv(64)  # waits while the template finishes its imports
            if not chunk:
                raise WarmStartUnavailable("the kernel template process closed the connection")
            reply += chunk
        if not reply.startswith(b"pid "):
            raise WarmStartUnavailable(reply.decode(errors="replace").strip())
        pid = int(reply.split()[1])
        pidfd = _open_child(pid, template)
        conn.settimeout(None)
        return ForkedProcess(conn, pid, pidfd)
    except WarmStartUnavailable:
        conn.close()
        raise
    except (OSError, ValueError) as exc:
        conn.close()
        raise WarmStartUnavailable(str(exc)) from exc


@functools.cache
def devnull() -> int:
    """A file descriptor open on /dev/null (one per process, kept open)."""
    return os.open(os.devnull, os.O_RDWR)


def _streams(kwargs: dict[str, Any]) -> tuple[int, int, int] | None:
    """The kernel's stdin, stdout and stderr as this process's file descriptors, as
    ``Popen`` would give them; None for what a fork cannot give (a pipe to read)."""
    fds = []
    for number, name in enumerate(("stdin", "stdout", "stderr")):
        given = kwargs.get(name)
        if given is None:
            fds.append(number)
        elif given == subprocess.DEVNULL:
            fds.append(devnull())
        elif isinstance(given, int) and given >= 0:
            fds.append(given)
        elif hasattr(given, "fileno"):
            fds.append(given.fileno())
        else:
            return None
    return fds[0], fds[1], fds[2]


def active() -> bool:
    """Warm starts are on here: :func:`enable` ran in this process or one it descends from."""
    return enabled() and os.environ.get(PROVISIONER_ENV) == PROVISIONER


def forks(cmd: list[str]) -> bool:
    """Whether :func:`fork` would be asked for ``cmd`` (a scoring server's command line)."""
    return active() and len(cmd) > 2 and cmd[1] == "-m" and cmd[2] in FORKABLE


def _provisioner_class() -> type:
    from jupyter_client.provisioning.local_provisioner import LocalProvisioner

    class WarmProvisioner(LocalProvisioner):
        """jupyter_client's local provisioner, but the kernel is forked from a warm template."""

        warm = False

        async def launch_kernel(self, cmd: list[str], **kwargs: Any):
            kernel = enabled() and tuple(cmd[1:3]) == ("-m", KERNEL_MODULE)
            streams = _streams(kwargs) if kernel else None
            if streams is not None:
                env = dict(kwargs.get("env") or os.environ)
                cwd = str(kwargs.get("cwd") or os.getcwd())
                loop = asyncio.get_running_loop()
                try:
                    process = await loop.run_in_executor(None, fork, cmd, env, cwd, streams)
                except WarmStartUnavailable as exc:
                    self.log.warning(
                        "warm kernel start unavailable (%s); starting it the usual way", exc
                    )
                else:
                    self.process = process
                    self.pid = self.pgid = process.pid
                    self.cwd = cwd
                    self.warm = True
                    return self.connection_info
            return await super().launch_kernel(cmd, **kwargs)

    WarmProvisioner.__module__ = __name__
    return WarmProvisioner


def __getattr__(name: str) -> Any:
    # The provisioner class (the entry point jupyter_client loads) is built on first use,
    # so that importing this module, as the mlops-workbook command does, stays cheap.
    if name == "WarmProvisioner":
        globals()[name] = cls = _provisioner_class()
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# ------------------------------------------------------------------------- template side

_IMPORTS_SET: dict[str, str] = {}  # in a template: what its imports set in os.environ


def _show_command(argv: list[str]) -> None:
    """Make ``ps``, ``pgrep`` and /proc/PID/cmdline show the command this process stands
    for instead of the template's: written over the template's own command line, in room
    the template reserved for it (what setproctitle does)."""
    import ctypes

    fields = _stat()
    start, end = int(fields[45]), int(fields[46])  # arg_start, arg_end
    data = b"\0".join(a.encode() for a in argv)[: end - start - 1]
    ctypes.memmove(start, data.ljust(end - start, b"\0"), end - start)


def _as_in_a_kernel() -> None:
    """Redo what a preloaded library decided at import from where it was imported: the
    template is not a kernel. Each case here was found by nbval comparing the committed
    outputs (made in fresh kernels) with a run in forked ones."""
    if "pandas" in sys.modules:
        # pandas sets display.max_columns at import: 0 (fit the terminal) outside a
        # Jupyter kernel, 20 inside one. Set both the value and the default reset_option uses.
        from pandas._config import config as pandas_config

        key = "display.max_columns"
        registered = pandas_config._registered_options.get(key)
        if registered is not None:
            pandas_config._registered_options[key] = registered._replace(defval=20)
        pandas_config.set_option(key, 20)


def _child(request: dict[str, Any], fds: list[int]) -> None:
    """In the forked process: become what ``python -m MODULE ARGS...`` would be."""
    code = 1
    try:
        signal.set_wakeup_fd(-1)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        os.setsid()
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        for name, value in _IMPORTS_SET.items():
            os.environ.setdefault(name, value)
        # The template runs as ``python -m mlops_helpers.workbook.warmstart``; the process imports
        # the package afresh, under its own environment.
        for name in [m for m in sys.modules if m.split(".")[0] == "mlops_helpers"]:
            del sys.modules[name]
        if "numpy" in sys.modules:  # the global random state was seeded in the template
            sys.modules["numpy"].random.seed()
        with contextlib.suppress(OSError, ValueError, IndexError):
            _show_command(request["argv"])
        module = request["argv"][2]
        sys.path[0] = request["cwd"]  # what ``python -m`` puts first
        if module == KERNEL_MODULE:
            # ipykernel's parent poller then ends the kernel if the template goes away;
            # ipykernel.kernelapp reads JPY_PARENT_PID when it is imported: import it afresh.
            os.environ["JPY_PARENT_PID"] = str(os.getppid())
            sys.modules.pop("ipykernel.kernelapp", None)
            _as_in_a_kernel()
        sys.argv = [sys.argv[0], *request["argv"][3:]]
        import runpy

        runpy.run_module(module, run_name="__main__", alter_sys=True)
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        with contextlib.suppress(Exception):
            sys.stdout.flush()
            sys.stderr.flush()
        os._exit(code)


def _peer(conn: socket.socket) -> tuple[int, int]:
    """The pid and uid of the process at the other end of a Unix socket (the kernel's word)."""
    creds = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, _gid = struct.unpack("3i", creds)
    return pid, uid


def _receive(conn: socket.socket) -> tuple[dict[str, Any], list[int]]:
    data, fds = b"", []
    while not data.endswith(b"\n"):
        chunk, new_fds, _, _ = socket.recv_fds(conn, 1 << 20, 3)
        if not chunk:
            raise OSError("caller closed the connection")
        data += chunk
        fds += new_fds
    return json.loads(data), fds


def serve(key: str, owner: str | None = None) -> None:
    """The template process: bind, import, then fork one process per request.

    Ends 60 s after its last process, or on SIGTERM or when its ``owner`` ("PID:START")
    ends, once its processes have ended (it stops taking requests at once; a new request
    starts a new template).
    """
    owner_fd = _watch(owner) if owner else None
    if owner and owner_fd is None:
        return  # the owner has ended already
    listener: socket.socket | None = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(_address(key))
    except OSError:
        return  # another template already serves this key
    listener.listen(64)
    import importlib

    before = dict(os.environ)
    for name in PRELOAD:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    # what the imports put in the environment (scikit-learn's KMP_* settings): a fresh
    # process that imports the same libraries has it too
    _IMPORTS_SET.update({k: v for k, v in os.environ.items() if before.get(k) != v})

    draining = False

    def drain(*_: object) -> None:
        nonlocal draining
        draining = True

    wake_r, wake_w = os.pipe()
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda *_: None)
    signal.signal(signal.SIGTERM, drain)
    children: dict[int, socket.socket] = {}  # pid -> its caller's connection
    last_busy = time.monotonic()
    while True:
        _reap(children)
        if draining and listener is not None:
            listener.close()
            listener = None
        if not children and (listener is None or time.monotonic() - last_busy > IDLE_SECONDS):
            return
        waiting = [wake_r, *children.values(), *([listener] if listener else [])]
        if owner_fd is not None:
            waiting.append(owner_fd)
        timeout = None if children else max(0.0, IDLE_SECONDS - (time.monotonic() - last_busy))
        ready, _, _ = select.select(waiting, [], [], timeout)
        if wake_r in ready:
            os.read(wake_r, 4096)
        if owner_fd is not None and owner_fd in ready:  # the owner has ended
            os.close(owner_fd)
            owner_fd = None
            drain()
            continue
        for pid, conn in list(children.items()):
            if conn in ready and _caller_gone(conn):
                # the caller went away without stopping its process: as ipykernel's parent
                # poller would for a kernel, end it (and what it started)
                with contextlib.suppress(OSError):
                    os.killpg(pid, signal.SIGKILL)
        if listener is not None and listener in ready:
            conn, _ = listener.accept()
            child = _fork_for(conn, listener, children, (wake_r, wake_w))
            if child:
                children[child] = conn
            last_busy = time.monotonic()
        if children:
            last_busy = time.monotonic()


def _watch(owner: str) -> int | None:
    """A pidfd on the owner process (readable once it ends); None if it has ended."""
    try:
        pid = int(owner.split(":")[0])
        fd = os.pidfd_open(pid)
    except (OSError, ValueError):
        return None
    try:
        same = _identity(pid) == owner  # checked after pidfd_open: not a reused pid
    except (OSError, IndexError):
        same = False
    if not same:
        os.close(fd)
        return None
    return fd


def _reap(children: dict[int, socket.socket]) -> None:
    """Collect ended children and send each caller its process's exit code."""
    while children:
        try:
            pid, status = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return
        if pid == 0:
            return
        conn = children.pop(pid, None)
        if conn is not None:
            with contextlib.suppress(OSError):
                conn.sendall(f"exit {os.waitstatus_to_exitcode(status)}\n".encode())
            conn.close()


def _caller_gone(conn: socket.socket) -> bool:
    try:
        return conn.recv(1, socket.MSG_PEEK | socket.MSG_DONTWAIT) == b""
    except BlockingIOError:
        return False
    except OSError:
        return True


def _fork_for(
    conn: socket.socket,
    listener: socket.socket,
    children: dict[int, socket.socket],
    pipe: tuple[int, int],
) -> int:
    """Serve one request: fork the process and answer ``pid N``, or answer ``error ...``
    (the caller then starts it the usual way). Returns the child's pid or 0."""
    fds: list[int] = []
    try:
        if _peer(conn)[1] != os.getuid():
            raise PermissionError("the caller is another user")
        conn.settimeout(10)
        request, fds = _receive(conn)
        if len(fds) != 3:
            raise ValueError("expected the three standard streams")
        argv = request["argv"]
        if os.path.realpath(argv[0]) != os.path.realpath(sys.executable):
            raise ValueError("the command names another Python")
        if argv[1:2] != ["-m"] or argv[2:3] == [] or argv[2] not in FORKABLE:
            raise ValueError(f"only python -m {' or '.join(FORKABLE)} can be forked")
        pid = os.fork()
        if pid == 0:
            listener.close()
            for other in children.values():
                other.close()
            conn.close()
            for fd in pipe:
                os.close(fd)
            _child(request, fds)  # does not return
        conn.sendall(f"pid {pid}\n".encode())
        conn.settimeout(None)
        return pid
    except Exception as exc:  # noqa: BLE001 - reported to the caller, who starts it the usual way
        with contextlib.suppress(OSError):
            conn.sendall(f"error {type(exc).__name__}: {exc}\n".encode())
        conn.close()
        return 0
    finally:
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)


def templates() -> list[int]:
    """Process ids of this user's template processes (any key), not of their kernels."""
    commands: dict[int, tuple[bytes, int]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
            ppid = int(_stat(entry.name)[1])
            owner = entry.stat().st_uid
        except (OSError, ValueError, IndexError):
            continue
        if owner == os.getuid() and argv[1:3] == [b"-m", MODULE.encode()] and len(argv) > 3:
            commands[int(entry.name)] = (b" ".join(argv), ppid)
    # a forked process whose command line could not be rewritten (_show_command) still
    # shows its template's; its parent is that template
    return [
        pid
        for pid, (command, ppid) in commands.items()
        if commands.get(ppid, (b"", 0))[0] != command
    ]


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and of its ended children it has collected."""
    ticks = sum(int(f) for f in _stat(pid)[11:15])  # utime, stime, cutime, cstime
    return ticks / os.sysconf("SC_CLK_TCK")


def drain_all(wait: float = 0.0) -> list[int]:
    """Ask every template of this user to end once its processes have: new ones then
    start from a fresh template. Processes running now are not touched. With ``wait``,
    wait up to that many seconds for the templates to be gone (benchmarks: each run pays
    for its own template, as a first run does)."""
    pids = templates()
    for pid in pids:
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + wait
    while wait and set(templates()) & set(pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    return pids


if __name__ == "__main__":
    serve(sys.argv[1], None if sys.argv[2] == "-" else sys.argv[2])
    os._exit(0)  # nothing to flush; tearing down the preloaded modules takes about a second
