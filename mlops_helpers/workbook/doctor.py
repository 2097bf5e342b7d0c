"""``mlops-workbook doctor``: is this machine ready for the workbook? One small check per
concern (Python, locked packages, the ``python3`` kernel, workspace, tracking store,
serving port, telemetry), each with what it found and, when something is wrong, the fix.

Side-effect free: nothing is created or migrated; the only write is a probe file in the
workspace (or the folder it would be created in), deleted at once. mlflow is not
imported (it takes seconds): its schema head is read from its migration files.
"""

from __future__ import annotations

import errno
import os
import platform
import shlex
import shutil
import subprocess
import sys
import tempfile
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from urllib.parse import urlsplit

from mlops_helpers import config
from mlops_helpers.tracking import (  # one answer for doctor and configure_tracking
    mlflow_schema,
    redact,
    server_problem,
    shell_path,
    sqlite_revision,
    store_problem,
    uri_problem,
)
from mlops_helpers.workbook.processes import HOST, find_nginx, free_port

__all__ = ["mlflow_schema", "sqlite_revision"]  # re-exported: doctor reports what they find

KERNEL = config.KERNEL  # the kernel papermill, nbval and the notebooks name
MIN_FREE_GIB = 1.0
GIB = 1024**3
# A kernel whose argv[0] is one of these runs the Python that starts Jupyter, not the one
# on PATH: jupyter_client swaps in its sys.executable (KernelManager.format_kernel_cmd).
BARE_PYTHON = {"python", f"python{sys.version_info[0]}", "python{}.{}".format(*sys.version_info)}


@dataclass(frozen=True)
class Check:
    """One check's result: ``fix`` says what to do when ``ok`` is False."""

    name: str
    ok: bool
    detail: str
    fix: str = ""

    def line(self) -> str:
        """``OK    name          detail`` or ``FIX   name          detail -> fix``."""
        text = self.detail if self.ok or not self.fix else f"{self.detail} -> {self.fix}"
        return f"{'OK' if self.ok else 'FIX':<6}{self.name:<14}{text}"


def show(path: Path | str) -> str:
    """A readable path: relative inside the project, ``~/...`` under home, else absolute."""
    path = Path(path).absolute()
    try:
        root = config.project_root()
    except RuntimeError:  # installed without a checkout: no project to be relative to
        root = None
    if root is not None and path.is_relative_to(root):
        return path.relative_to(root).as_posix() or "."
    home = Path.home()
    if path.is_relative_to(home):
        return f"~/{path.relative_to(home).as_posix()}"
    return str(path)


def make(target: str) -> str:
    """``make TARGET``, with ``-C <project>`` when not run from the project root."""
    root = config.project_root()
    return (
        f"make {target}" if Path.cwd().resolve() == root else f"make -C {shell_path(root)} {target}"
    )


def install_fix() -> str:
    """How to (re)install the locked packages into the environment doctor runs in."""
    root = config.project_root()
    if Path(sys.prefix).resolve() == (root / ".venv").resolve():
        # -B: make install is stamped, so it does nothing after a hand-made pip change.
        return f"run: {make('-B install')}"
    lock = shell_path(root / "requirements" / "test.lock")
    return f"run: {shell_path(sys.executable)} -m pip install -r {lock}"


# -- python -----------------------------------------------------------------------------


def check_python(pyproject: Path | None = None) -> Check:
    """This Python's version satisfies pyproject's ``requires-python``."""
    from packaging.specifiers import SpecifierSet

    pyproject = pyproject or config.project_root() / "pyproject.toml"
    wanted = tomllib.loads(pyproject.read_text())["project"]["requires-python"]
    version = platform.python_version()
    detail = f"{version} at {show(sys.executable)} (pyproject: {wanted})"
    if SpecifierSet(wanted).contains(version, prereleases=True):
        return Check("python", True, detail)
    return Check(
        "python",
        False,
        f"{detail}: the wrong version",
        f"recreate .venv with a Python {wanted}: rm -rf {shell_path(config.project_root() / '.venv')} "
        f"&& {make('install PYTHON=/path/to/that/python')}",
    )


# -- packages ---------------------------------------------------------------------------


def locked_versions(lock: Path) -> dict[str, str]:
    """``name: version`` for every ``name==version`` line of a lock (markers honoured)."""
    from packaging.markers import Marker

    pins = {}
    for raw in lock.read_text().splitlines():
        line = raw.split("#", 1)[0].strip()
        if "==" not in line or line.startswith("-"):
            continue
        requirement, _, marker = line.partition(";")
        if marker.strip() and not Marker(marker.strip()).evaluate():
            continue
        name, _, version = requirement.partition("==")
        pins[name.split("[", 1)[0].strip()] = version.strip()
    return pins


def _same_version(installed: str, locked: str) -> bool:
    from packaging.version import InvalidVersion, Version

    try:
        return Version(installed) == Version(locked)
    except InvalidVersion:
        return installed == locked


def check_packages(lock: Path | None = None, shown: int = 4) -> Check:
    """Every package pinned in the lock is installed at exactly its pinned version."""
    lock = lock or config.project_root() / "requirements" / "test.lock"
    pins = locked_versions(lock)
    wrong = []
    for name, version in pins.items():
        try:
            installed = metadata.version(name)  # finds the distribution by normalised name
        except metadata.PackageNotFoundError:
            wrong.append(f"{name} missing")
            continue
        if not _same_version(installed, version):
            wrong.append(f"{name} {installed} (lock {version})")
    if not wrong:
        return Check(
            "packages", True, f"{len(pins)} locked packages at their versions ({show(lock)})"
        )
    more = f" and {len(wrong) - shown} more" if len(wrong) > shown else ""
    return Check(
        "packages",
        False,
        f"{len(wrong)} of {len(pins)} differ from {show(lock)}: {', '.join(wrong[:shown])}{more}",
        install_fix(),
    )


# -- kernel -----------------------------------------------------------------------------


def interpreter_prefix(executable: str, env: dict[str, str] | None = None) -> Path | None:
    """``sys.prefix`` of the Python at ``executable`` (None when it does not run).

    Asked of the interpreter itself: a virtualenv's ``bin/python`` is a symlink to the base
    Python, so comparing resolved paths would call the base interpreter "this environment".
    """
    try:
        done = subprocess.run(
            [executable, "-c", "import sys; print(sys.prefix)"],
            capture_output=True, text=True, timeout=10, env={**os.environ, **(env or {})},
        )  # fmt: skip
    except (OSError, subprocess.TimeoutExpired):
        return None
    return Path(done.stdout.strip()).resolve() if done.returncode == 0 else None


def check_kernel(name: str = KERNEL) -> Check:
    """Jupyter finds kernel ``name`` and it runs this environment's Python."""
    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    manager = KernelSpecManager()
    env_dir = (Path(sys.prefix) / "share" / "jupyter" / "kernels").resolve()
    install = (
        f"{shell_path(sys.executable)} -m ipykernel install --sys-prefix --name {shlex.quote(name)}"
    )
    try:
        spec = manager.get_kernel_spec(name)
    except NoSuchKernel:
        return Check("kernel", False, f"no {name} kernel on Jupyter's path", f"run: {install}")
    program = spec.argv[0] if spec.argv else ""
    if program in BARE_PYTHON:
        return Check(
            "kernel",
            True,
            f"{name} runs `{program}`: Jupyter starts it with its own Python, "
            f"{show(sys.executable)} under make lab / mlops-workbook",
        )
    executable = program if os.path.isabs(program) else shutil.which(program) or program
    prefix = interpreter_prefix(executable, spec.env)
    if prefix == Path(sys.prefix).resolve():
        return Check("kernel", True, f"{name} -> {show(executable)} (this environment)")
    where = f"its prefix is {show(prefix)}" if prefix else "it does not run"
    found_in = Path(spec.resource_dir).resolve().parent
    dirs = [Path(d).resolve() for d in manager.kernel_dirs]
    hides = (
        found_in in dirs
        and found_in != env_dir
        and (env_dir not in dirs or dirs.index(found_in) < dirs.index(env_dir))
    )
    fix = f"run: {install}"
    if hides:  # an install into this environment would still be hidden by the one found
        jupyter = Path(sys.executable).parent / "jupyter"
        remove = f"{shell_path(jupyter)} kernelspec remove -f {shlex.quote(name)}"
        fix = f"the {name} in {show(found_in)} hides this environment's; run: {remove} && {install}"
    return Check(
        "kernel",
        False,
        f"{name} points at {show(executable)} ({where}), not this environment ({show(sys.prefix)})",
        fix,
    )


# -- workspace --------------------------------------------------------------------------


def _existing_ancestor(path: Path) -> Path:
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def clean_workspace_command() -> str:
    """How to delete the workspace: ``make clean-workspace`` for the default one."""
    if os.environ.get(config.HOME_ENV, "").strip():
        return f"rm -rf {shell_path(config.workspace_path())}"
    return make("clean-workspace")


def check_workspace(min_free_gib: float = MIN_FREE_GIB) -> Check:
    """The workspace exists or can be created, is writable, and has disk space left."""
    ws = config.workspace_path()
    source = config.HOME_ENV if os.environ.get(config.HOME_ENV, "").strip() else "default"
    elsewhere = f"set {config.HOME_ENV} to a writable folder"
    if ws.exists() and not ws.is_dir():
        return Check(
            "workspace", False, f"{show(ws)} ({source}) is a file, not a folder", elsewhere
        )
    target = ws if ws.is_dir() else _existing_ancestor(ws)
    if not target.is_dir():
        return Check(
            "workspace",
            False,
            f"{show(ws)} ({source}) cannot be created: {show(target)} is a file",
            elsewhere,
        )
    try:
        with tempfile.NamedTemporaryFile(dir=target, prefix=".doctor-probe-") as probe:
            probe.write(b"ok")
            probe.flush()
    except OSError as exc:
        what = "is not writable" if target == ws else f"cannot be created in {show(target)}"
        return Check(
            "workspace",
            False,
            f"{show(ws)} ({source}) {what}: {exc.strerror or exc}",
            f"make {show(target)} writable (chmod u+w {shell_path(target)}) or {elsewhere}"
            if exc.errno in (errno.EACCES, errno.EPERM)
            else elsewhere,
        )
    free = shutil.disk_usage(target).free / GIB
    state = "exists" if target == ws else "will be created"
    detail = f"{show(ws)} ({source}; {state}, writable, {free:.1f} GiB free)"
    if free < min_free_gib:
        return Check(
            "workspace",
            False,
            f"{detail}: less than {min_free_gib:g} GiB",
            f"free disk space (old runs go with: {clean_workspace_command()}) or set "
            f"{config.HOME_ENV} to a folder on a larger disk",
        )
    return Check("workspace", True, detail)


# -- tracking store ---------------------------------------------------------------------


def tracking_uri() -> tuple[str, str]:
    """The URI the workbook will use and where it comes from; creates nothing (unlike
    tracking.default_tracking_uri, which creates the workspace)."""
    uri = os.environ.get(config.TRACKING_URI_ENV, "").strip()
    if uri:
        return uri, config.TRACKING_URI_ENV
    return f"sqlite:///{config.workspace_path() / 'mlflow.db'}", "default"


def check_tracking() -> Check:
    """The tracking store answers as MLflow (server) or is a whole store of this MLflow's
    schema (sqlite), by the same rules configure_tracking applies."""
    uri, source = tracking_uri()
    label = f"{redact(uri)} ({source})"
    problem = uri_problem(uri)
    if problem is not None:
        what, fix = problem
        return Check("tracking", False, f"{label} {what}", fix)
    if uri.startswith("sqlite:"):
        return _check_sqlite(Path(uri.removeprefix("sqlite:///").split("?", 1)[0]), source)
    if uri.startswith(("http://", "https://")):
        return _check_server(uri, label)
    scheme = uri.split(":", 1)[0]
    return Check("tracking", True, f"{label}: a {scheme} store, not checked here")


def _check_sqlite(db: Path, source: str) -> Check:
    label = f"sqlite {show(db)} ({source})"
    if not db.exists():
        return Check("tracking", True, f"{label}: created by MLflow on first use")
    schema = mlflow_schema()
    if schema is None:
        return Check("tracking", False, f"{label}: mlflow is not installed", install_fix())
    problem = store_problem(db)
    if problem is not None:
        what, fix = problem
        return Check("tracking", False, f"{label} {what}", fix)
    head, _, version = schema
    if sqlite_revision(db) is None:
        return Check("tracking", True, f"{label}: empty, MLflow {version} initialises it")
    return Check("tracking", True, f"{label}: schema {head}, as MLflow {version} expects")


def _check_server(uri: str, label: str) -> Check:
    why = server_problem(uri)
    if why is None:
        return Check("tracking", True, f"{label}: answers as an MLflow tracking server")
    parts = urlsplit(uri)
    if parts.hostname in ("127.0.0.1", "localhost", "::1"):
        port = parts.port or (443 if parts.scheme == "https" else 80)
        fix = f"start it: {make('mlflow-server' if port == 5000 else f'mlflow-server PORT={port}')}"
    else:
        fix = f"check that the server runs and is reachable from here (or unset {config.TRACKING_URI_ENV})"
    return Check("tracking", False, f"{label} {why}", fix)


# -- serving ----------------------------------------------------------------------------


def check_serving() -> Check:
    """A free port on 127.0.0.1, and uvicorn (which ``mlflow models serve`` runs) installed
    next to this Python (the scoring server puts that folder first on PATH)."""
    try:
        port = free_port()
    except OSError as exc:
        return Check(
            "serving",
            False,
            f"cannot open a port on {HOST}: {exc.strerror or exc}",
            "bring up the loopback interface (ip link set lo up) or allow local sockets",
        )
    uvicorn = Path(sys.executable).parent / "uvicorn"
    if not (uvicorn.is_file() and os.access(uvicorn, os.X_OK)):
        return Check(
            "serving",
            False,
            f"port {HOST}:{port} free, but no {show(uvicorn)} (mlflow models serve runs it)",
            install_fix(),
        )
    return Check("serving", True, f"port {HOST}:{port} free; {show(uvicorn)} present")


# -- endpoint ---------------------------------------------------------------------------


def check_endpoint() -> Check:
    """nginx, which the production endpoint (``mlops_helpers.endpoint``) runs in front of
    the scoring servers, is installed and answers ``nginx -v``."""
    nginx = find_nginx()
    if nginx is None:
        return Check(
            "endpoint",
            False,
            "no nginx (the production endpoint runs it in front of the scoring servers)",
            f"run: {make('nginx')} (as root it installs Debian's nginx-light)",
        )
    done = subprocess.run([nginx, "-v"], capture_output=True, text=True, timeout=10)
    version = (done.stderr or done.stdout).strip().removeprefix("nginx version: ")
    if done.returncode != 0:
        return Check(
            "endpoint", False, f"{nginx} -v failed: {version}", f"reinstall nginx ({make('nginx')})"
        )
    return Check("endpoint", True, f"{version} at {show(nginx)}")


# -- telemetry --------------------------------------------------------------------------


def check_telemetry() -> Check:
    """MLflow telemetry is off in the environment the workbook gives MLflow."""
    key = "MLFLOW_DISABLE_TELEMETRY"
    value = config.MLFLOW_ENV.get(key, "")
    if value.lower() != "true":
        return Check(
            "telemetry",
            False,
            f"config.MLFLOW_ENV sets {key}={value or '(nothing)'}",
            f"set {key} to 'true' in mlops_helpers/config.py (MLFLOW_ENV)",
        )
    shell = os.environ.get(key)
    note = (
        f"; this shell's {key}={shell} is overridden" if shell and shell.lower() != "true" else ""
    )
    return Check("telemetry", True, f"off: the workbook sets {key}=true before MLflow loads{note}")


# -- orchestrator -----------------------------------------------------------------------


def check_orchestrator() -> Check:
    """The Dagster definitions load and validate, and DAGSTER_HOME is usable
    (:func:`mlops_helpers.orchestration.doctor_check`)."""
    from mlops_helpers import orchestration

    parts = orchestration.doctor_check()
    wrong = [(name, detail, fix) for name, ok, detail, fix in parts if not ok]
    if wrong:
        name, detail, fix = wrong[0]
        return Check("orchestrator", False, f"{name}: {detail}", fix)
    return Check("orchestrator", True, "; ".join(detail for _, _, detail, _ in parts))


CHECKS: tuple[Callable[[], Check], ...] = (
    check_python,
    check_packages,
    check_kernel,
    check_workspace,
    check_tracking,
    check_serving,
    check_endpoint,
    check_telemetry,
    check_orchestrator,
)


def run_checks() -> list[Check]:
    """Run every check; a check that crashes is reported as a FIX line, not raised."""
    results = []
    for check in CHECKS:
        try:
            results.append(check())
        except Exception as exc:  # noqa: BLE001 - doctor reports, it does not crash
            name = check.__name__.removeprefix("check_")
            results.append(
                Check(
                    name, False, f"the check failed: {type(exc).__name__}: {exc}", "see the message"
                )
            )
    return results
