"""The template's side: import the libraries once, then fork one process per request."""

from __future__ import annotations

import builtins
import contextlib
import gc
import importlib
import json
import os
import select
import signal
import socket
import sys
import time
from typing import Any

from mlops_helpers.workbook.warmstart.common import (
    FORKABLE,
    FORKED_NAMES,
    IDLE_SECONDS,
    KERNEL_MODULE,
    PRELOAD,
    TEMPLATE_NAME,
    address,
    identity,
    name_self,
    peer,
)

_IMPORTS_SET: dict[str, str] = {}  # in a template: what its imports set in os.environ


class _KernelShell:
    """What a Jupyter kernel's ``get_ipython()`` answers, as far as an import looks."""

    kernel = True


@contextlib.contextmanager
def _as_in_a_kernel():
    """Inside, ``get_ipython()`` answers as it does in a Jupyter kernel; nothing else changes.

    pandas decides ``display.max_columns`` when it is imported (0, fit the terminal,
    outside a Jupyter kernel; 20 inside one) from ``get_ipython()`` having a ``kernel``;
    the template is not a kernel, but its kernels are. Found by nbval comparing committed
    outputs (made in fresh kernels) with a run in forked ones."""
    builtins.get_ipython = _KernelShell  # type: ignore[attr-defined]
    try:
        yield
    finally:
        del builtins.get_ipython  # type: ignore[attr-defined]


def preload() -> None:
    """Import the libraries of :data:`PRELOAD`, pandas as a kernel would import it."""
    before = dict(os.environ)
    with _as_in_a_kernel(), contextlib.suppress(ImportError):
        importlib.import_module("pandas")
    for name in PRELOAD:
        with contextlib.suppress(ImportError):
            importlib.import_module(name)
    with contextlib.suppress(ImportError):
        # Loading a model, MLflow compares its requirements with what is installed, and maps
        # modules to packages once per process by reading every installed package's
        # metadata (a second on its own). Made here, the map is the one a fresh process
        # would make: the template key covers the installed packages.
        from mlflow.utils.requirements_utils import warn_dependency_requirement_mismatches

        warn_dependency_requirement_mismatches(["mlflow"])
    # what the imports put in the environment (scikit-learn's KMP_* settings): a fresh
    # process that imports the same libraries has it too
    _IMPORTS_SET.update({k: v for k, v in os.environ.items() if before.get(k) != v})


def _as_in_a_server() -> None:
    """What a scoring server, started fresh outside a kernel, would have had from pandas."""
    if "pandas" in sys.modules:
        sys.modules["pandas"].set_option("display.max_columns", 0)


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
        # The template runs as ``python -m mlops_helpers.workbook.warmstart``; the process
        # imports the package afresh, under its own environment.
        for name in [m for m in sys.modules if m.split(".")[0] == "mlops_helpers"]:
            del sys.modules[name]
        if "numpy" in sys.modules:  # the global random state was seeded in the template
            sys.modules["numpy"].random.seed()
        module = request["argv"][2]
        name_self(FORKED_NAMES[module])  # ps shows "ipykernel" or "uvicorn", not the template
        sys.path[0] = request["cwd"]  # what ``python -m`` puts first
        if module == KERNEL_MODULE:
            # ipykernel's parent poller then ends the kernel if the template goes away;
            # ipykernel.kernelapp reads JPY_PARENT_PID when it is imported: import it afresh.
            os.environ["JPY_PARENT_PID"] = str(os.getppid())
            sys.modules.pop("ipykernel.kernelapp", None)
        else:
            _as_in_a_server()
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
        listener.bind(address(key))
    except OSError:
        return  # another template already serves this key
    listener.listen(64)
    name_self(TEMPLATE_NAME)
    preload()
    gc.collect()
    gc.freeze()

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
        same = identity(pid) == owner  # checked after pidfd_open: not a reused pid
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
        if peer(conn)[1] != os.getuid():
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


def main(argv: list[str]) -> None:
    """``python -m mlops_helpers.workbook.warmstart KEY OWNER``: be the template, then exit."""
    serve(argv[0], None if argv[1] == "-" else argv[1])
    os._exit(0)  # nothing to flush; tearing down the preloaded modules takes about a second
