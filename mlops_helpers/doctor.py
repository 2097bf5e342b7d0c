"""``mlops-workbook doctor``: is this machine ready for the workbook? One small check per
concern (Python, locked packages, the ``python3`` kernel, workspace, tracking store,
serving port, telemetry), each with what it found and, when something is wrong, the fix.

Side-effect free: nothing is created or migrated; the only write is a probe file in the
workspace (or the folder it would be created in), deleted at once. mlflow is not
imported (it takes seconds): its schema head is read from its migration files.
"""

from __future__ import annotations

import ast
import errno
import os
import platform
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import tomllib
import urllib.error
import urllib.request
from collections.abc import Callable
from contextlib import closing
from dataclasses import dataclass
from importlib import metadata, util
from pathlib import Path
from urllib.parse import urlsplit

from mlops_helpers import config
from mlops_helpers.processes import HOST, free_port

KERNEL = "python3"  # the kernel papermill, nbval and the notebooks' metadata name
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
    return f"make {target}" if Path.cwd().resolve() == root else f"make -C {root} {target}"


def install_fix() -> str:
    """How to (re)install the locked packages into the environment doctor runs in."""
    root = config.project_root()
    if Path(sys.prefix).resolve() == (root / ".venv").resolve():
        # -B: make install is stamped, so it does nothing after a hand-made pip change.
        return f"run: {make('-B install')}"
    return f"run: {sys.executable} -m pip install -r {root / 'requirements' / 'test.lock'}"


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
        f"recreate .venv with a Python {wanted}: rm -rf {config.project_root() / '.venv'} "
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
    install = f"{sys.executable} -m ipykernel install --sys-prefix --name {name}"
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
        fix = f"the {name} in {show(found_in)} hides this environment's; run: {jupyter} kernelspec remove -f {name} && {install}"
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
        return f"rm -rf {config.workspace_path()}"
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
            f"make {target} writable (chmod u+w {target}) or {elsewhere}"
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


def mlflow_schema() -> tuple[str, set[str], str] | None:
    """(head revision, every known revision, mlflow version) from the installed mlflow's
    migration files, without importing mlflow; None when mlflow is not installed.

    The head is the one revision no other revision names as its ``down_revision``: what
    mlflow.store.db.utils._get_latest_schema_revision computes with alembic.
    """
    spec = util.find_spec("mlflow")
    if spec is None or not spec.submodule_search_locations:
        return None
    versions = Path(spec.submodule_search_locations[0]) / "store" / "db_migrations" / "versions"
    revisions, downs = set(), set()
    for file in versions.glob("*.py"):
        for node in ast.parse(file.read_text()).body:
            if isinstance(node, ast.Assign) and len(node.targets) == 1:
                target, value = node.targets[0], node.value
            elif isinstance(node, ast.AnnAssign) and node.value is not None:
                target, value = node.target, node.value
            else:
                continue
            if isinstance(target, ast.Name) and target.id in ("revision", "down_revision"):
                found = ast.literal_eval(value)
                names = found if isinstance(found, tuple | list) else (found,)
                (revisions if target.id == "revision" else downs).update(n for n in names if n)
    heads = revisions - downs
    if len(heads) != 1:
        raise RuntimeError(f"mlflow's migrations in {versions} have {len(heads)} heads, not 1")
    return heads.pop(), revisions, metadata.version("mlflow")


def sqlite_revision(db: Path) -> str | None:
    """The alembic revision stored in an existing SQLite file, opened read-only.

    None for a database without tables (MLflow initialises it on first use); raises
    ValueError when it is not an MLflow store.
    """
    try:
        with closing(sqlite3.connect(f"{db.as_uri()}?mode=ro", uri=True, timeout=2)) as con:
            tables = {
                r[0] for r in con.execute("SELECT name FROM sqlite_master WHERE type='table'")
            }
            if not tables:
                return None
            if "alembic_version" not in tables:
                raise ValueError("it has tables but no alembic_version: not an MLflow store")
            row = con.execute("SELECT version_num FROM alembic_version").fetchone()
    except sqlite3.DatabaseError as exc:
        raise ValueError(f"it cannot be read as SQLite ({exc})") from None
    if row is None:
        raise ValueError("its alembic_version table is empty")
    return row[0]


def _redact(uri: str) -> str:
    """A URI without its password (team servers and databases may carry one)."""
    parts = urlsplit(uri)
    if parts.password is None:
        return uri
    return uri.replace(f":{parts.password}@", ":***@", 1)


def check_tracking() -> Check:
    """The tracking store answers (server) or matches this MLflow's schema (sqlite)."""
    uri, source = tracking_uri()
    if uri.startswith("sqlite:"):
        return _check_sqlite(uri, source)
    if uri.startswith(("http://", "https://")):
        return _check_server(uri, source)
    scheme = uri.split(":", 1)[0] if ":" in uri else "file"
    return Check("tracking", True, f"{_redact(uri)} ({source}): a {scheme} store, not checked here")


def _check_sqlite(uri: str, source: str) -> Check:
    path = uri.removeprefix("sqlite:///").split("?", 1)[0]
    if not uri.startswith("sqlite:///") or not Path(path).is_absolute():
        return Check(
            "tracking",
            False,
            f"{uri} ({source}) is not an absolute sqlite path",
            "use an absolute path: sqlite:////abs/path/mlflow.db",
        )
    db = Path(path)
    label = f"sqlite {show(db)} ({source})"
    if not db.exists():
        return Check("tracking", True, f"{label}: created by MLflow on first use")
    schema = mlflow_schema()
    if schema is None:
        return Check("tracking", False, f"{label}: mlflow is not installed", install_fix())
    head, known, version = schema
    default_db = source == "default"
    elsewhere = f"point {config.TRACKING_URI_ENV} (or --tracking-uri) at another file"
    try:
        revision = sqlite_revision(db)
    except ValueError as exc:
        fix = f"run: {clean_workspace_command()}" if default_db else elsewhere
        return Check("tracking", False, f"{label}: {exc}", fix)
    if revision is None:
        return Check("tracking", True, f"{label}: empty, MLflow {version} initialises it")
    if revision == head:
        return Check("tracking", True, f"{label}: schema {revision}, as MLflow {version} expects")
    older = revision in known
    upgrade = f"back it up, then run: {Path(sys.executable).parent / 'mlflow'} db upgrade {uri}"
    if default_db:
        fix = f"run: {clean_workspace_command()} (the workspace was made by another MLflow version)"
        fix += f"; or, to keep its runs, {upgrade}" if older else ""
    else:
        fix = (
            f"to keep its runs, {upgrade}"
            if older
            else f"use the MLflow that made it, or {elsewhere}"
        )
    age = "an older" if older else "a newer or unknown"
    return Check(
        "tracking",
        False,
        f"{label}: schema {revision} from {age} MLflow; MLflow {version} expects {head}",
        fix,
    )


def _check_server(uri: str, source: str, timeout: float = 3.0) -> Check:
    parts = urlsplit(uri)
    local = parts.hostname in ("127.0.0.1", "localhost", "::1")
    # a proxy would answer for a loopback address, or refuse it: go direct
    handlers = [urllib.request.ProxyHandler({})] if local else []
    opener = urllib.request.build_opener(*handlers)
    health = f"{uri.rstrip('/')}/health"
    label = f"{_redact(uri)} ({source})"
    try:
        with opener.open(health, timeout=timeout) as resp:
            if resp.status == 200:
                return Check("tracking", True, f"{label}: /health answers 200")
            why = f"/health answered {resp.status}"
    except urllib.error.HTTPError as exc:
        why = f"/health answered {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        why = f"no answer on /health ({getattr(reason, 'strerror', None) or reason})"
    if local:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        fix = f"start it: {make('mlflow-server' if port == 5000 else f'mlflow-server PORT={port}')}"
    else:
        fix = f"check that the server runs and is reachable from here (or unset {config.TRACKING_URI_ENV})"
    return Check("tracking", False, f"{label}: {why}", fix)


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


CHECKS: tuple[Callable[[], Check], ...] = (
    check_python,
    check_packages,
    check_kernel,
    check_workspace,
    check_tracking,
    check_serving,
    check_telemetry,
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
