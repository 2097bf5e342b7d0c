"""doctor: every check says OK when things are right and names the problem and its fix when
they are not; `mlops-workbook doctor` is all OK in this environment and has no side effects."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from importlib import metadata
from pathlib import Path
from types import SimpleNamespace

import pytest

from mlops_helpers import config
from mlops_helpers.workbook import doctor
from mlops_helpers.workbook.processes import free_port

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def workspace(monkeypatch, tmp_path):
    """A workspace folder that does not exist yet, and no tracking URI from the caller."""
    monkeypatch.setenv(config.HOME_ENV, str(tmp_path / "ws"))
    monkeypatch.delenv(config.TRACKING_URI_ENV, raising=False)
    return tmp_path / "ws"


def test_check_line_shows_ok_or_the_fix():
    assert doctor.Check("kernel", True, "fine").line() == f"OK    {'kernel':<14}fine"
    line = doctor.Check("kernel", False, "broken", "run: x").line()
    assert line == f"FIX   {'kernel':<14}broken -> run: x"


# -- python -----------------------------------------------------------------------------


def test_python_ok_for_this_interpreter():
    check = doctor.check_python()
    assert check.ok and check.detail.startswith(f"{sys.version_info[0]}.{sys.version_info[1]}.")


@pytest.mark.parametrize(
    ("version", "ok"),
    [("3.11.7", True), ("3.12.1", True), ("3.13.0", True), ("3.10.13", False), ("3.14.0", False)],
)
def test_python_3_11_to_3_13_pass_and_others_get_the_fix(monkeypatch, version, ok):
    """The project's own requires-python: doctor (and notebook 00, which calls it) accepts
    each Python the lock installs on, and names the fix for any other."""
    monkeypatch.setattr(doctor.platform, "python_version", lambda: version)
    check = doctor.check_python()
    assert check.ok is ok, check.detail
    assert check.detail.startswith(version) and ">=3.11,<3.14" in check.detail
    assert ok or "make" in check.fix


def test_python_fix_when_requires_python_excludes_it(tmp_path):
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\nname = "x"\nrequires-python = ">=3.99"\n')
    check = doctor.check_python(pyproject)
    assert not check.ok and ">=3.99" in check.detail and "make" in check.fix


# -- packages ---------------------------------------------------------------------------


def test_packages_ok_when_the_lock_matches(tmp_path):
    lock = tmp_path / "test.lock"
    lock.write_text(f"PyYAML=={metadata.version('pyyaml')}\n    # via mlflow\n")
    check = doctor.check_packages(lock)
    assert check.ok and "1 locked packages" in check.detail


def test_packages_fix_names_the_wrong_and_missing_ones(tmp_path):
    lock = tmp_path / "test.lock"
    lock.write_text(
        "pyyaml==0.0.1\n"
        "no-such-package-xyz==1.0\n"
        "skipped-by-marker==1.0 ; sys_platform == 'nonesuch'\n"
        f"numpy=={metadata.version('numpy')}\n"
    )
    check = doctor.check_packages(lock)
    assert not check.ok
    assert "2 of 3 differ" in check.detail
    assert f"pyyaml {metadata.version('pyyaml')} (lock 0.0.1)" in check.detail
    assert "no-such-package-xyz missing" in check.detail
    assert "install" in check.fix


def test_packages_ok_for_the_real_lock():
    check = doctor.check_packages()
    assert check.ok, check.line()


# -- kernel -----------------------------------------------------------------------------


def _kernel(monkeypatch, tmp_path, argv0: str) -> None:
    """A python3 kernelspec in a folder Jupyter searches first (JUPYTER_PATH)."""
    spec = tmp_path / "jupyter" / "kernels" / "python3"
    spec.mkdir(parents=True)
    argv = [argv0, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    spec.joinpath("kernel.json").write_text(
        json.dumps({"argv": argv, "display_name": "Python 3", "language": "python"})
    )
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))


def test_kernel_ok_in_this_environment():
    check = doctor.check_kernel()
    assert check.ok, check.line()


def test_kernel_ok_when_it_points_at_this_interpreter(monkeypatch, tmp_path):
    _kernel(monkeypatch, tmp_path, sys.executable)
    check = doctor.check_kernel()
    assert check.ok and "this environment" in check.detail


def test_kernel_ok_for_a_bare_python_which_jupyter_replaces_by_its_own(monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path))  # `python` on PATH does not matter
    _kernel(monkeypatch, tmp_path, "python")
    assert doctor.check_kernel().ok


@pytest.mark.skipif(sys.prefix == sys.base_prefix, reason="needs a virtualenv")
def test_kernel_fix_when_it_points_at_the_base_python_the_venv_links_to(monkeypatch, tmp_path):
    # .venv/bin/python is a symlink to the base Python: same file, other environment.
    base = Path(sys.base_prefix) / "bin" / Path(sys.executable).name
    assert base.resolve() == Path(sys.executable).resolve()
    _kernel(monkeypatch, tmp_path, str(base))
    check = doctor.check_kernel()
    assert not check.ok and "not this environment" in check.detail
    install = (
        f"{doctor.shell_path(sys.executable)} -m ipykernel install --sys-prefix --name python3"
    )
    assert install in check.fix
    assert "kernelspec remove" in check.fix, "the kernel found hides this environment's"


def test_kernel_fix_when_it_does_not_run(monkeypatch, tmp_path):
    _kernel(monkeypatch, tmp_path, str(tmp_path / "gone" / "python"))
    check = doctor.check_kernel()
    assert not check.ok and "does not run" in check.detail and "ipykernel install" in check.fix


def test_kernel_fix_when_missing():
    check = doctor.check_kernel("mlops-no-such-kernel")
    assert not check.ok and "no mlops-no-such-kernel kernel" in check.detail
    assert "ipykernel install --sys-prefix --name mlops-no-such-kernel" in check.fix


# -- workspace --------------------------------------------------------------------------


def test_workspace_ok_when_it_can_be_created_and_doctor_does_not_create_it(workspace):
    check = doctor.check_workspace()
    assert check.ok and "will be created" in check.detail and config.HOME_ENV in check.detail
    assert not workspace.exists()
    workspace.mkdir()
    check = doctor.check_workspace()
    assert check.ok and "exists" in check.detail
    assert list(workspace.iterdir()) == [], "the probe file is deleted"


def test_workspace_fix_when_it_is_a_file(workspace):
    workspace.write_text("not a folder")
    check = doctor.check_workspace()
    assert not check.ok and "is a file" in check.detail and config.HOME_ENV in check.fix


def test_workspace_fix_when_not_writable(workspace, monkeypatch):
    workspace.mkdir()

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(doctor.tempfile, "NamedTemporaryFile", refuse)
    check = doctor.check_workspace()
    assert not check.ok and "not writable: Permission denied" in check.detail
    assert f"chmod u+w {workspace}" in check.fix


@pytest.mark.skipif(not Path("/sys/kernel").is_dir(), reason="needs Linux sysfs")
def test_workspace_fix_when_it_cannot_be_created(monkeypatch):
    monkeypatch.setenv(config.HOME_ENV, "/sys/mlops-workbook-ws")  # read-only even for root
    check = doctor.check_workspace()
    assert not check.ok and "cannot be created in /sys" in check.detail
    assert config.HOME_ENV in check.fix


def test_workspace_fix_when_the_disk_is_nearly_full(workspace, monkeypatch):
    monkeypatch.setattr(doctor.shutil, "disk_usage", lambda p: SimpleNamespace(free=1024))
    check = doctor.check_workspace()
    assert not check.ok and "less than 1 GiB" in check.detail and config.HOME_ENV in check.fix


# -- tracking store ---------------------------------------------------------------------


def test_tracking_uri_is_the_one_tracking_uses_without_creating_the_workspace(workspace):
    from mlops_helpers import tracking

    assert config.TRACKING_URI_ENV == tracking.TRACKING_URI_ENV
    uri, source = doctor.tracking_uri()
    assert source == "default" and not workspace.exists()
    assert uri == tracking.default_tracking_uri()


def test_schema_head_is_the_one_mlflow_expects():
    from mlflow.store.db.utils import _get_latest_schema_revision

    head, known, version = doctor.mlflow_schema()
    assert head == _get_latest_schema_revision() and head in known
    assert version == metadata.version("mlflow")


def test_tracking_ok_before_the_store_exists(workspace):
    check = doctor.check_tracking()
    assert check.ok and "created by MLflow on first use" in check.detail
    assert not workspace.exists()


def test_tracking_ok_for_a_store_this_mlflow_made_and_left_unchanged(workspace):
    from mlops_helpers import tracking

    tracking.configure_tracking()  # creates the sqlite store in the workspace
    db = workspace / "mlflow.db"
    before = db.read_bytes()
    check = doctor.check_tracking()
    assert check.ok and "as MLflow" in check.detail, check.line()
    assert db.read_bytes() == before, "doctor must not migrate or write the store"


def _store(path: Path, revision: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with sqlite3.connect(path) as con:
        con.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
        con.execute("INSERT INTO alembic_version VALUES (?)", (revision,))
    con.close()


def test_tracking_fix_for_a_workspace_made_by_another_mlflow(workspace):
    _store(workspace / "mlflow.db", "0123456789ab")
    check = doctor.check_tracking()
    assert not check.ok and "schema 0123456789ab" in check.detail
    assert "newer or unknown MLflow" in check.detail
    assert f"rm {doctor.shell_path(workspace / 'mlflow.db')}" in check.fix
    assert "rm -rf" not in check.fix, "the smallest fix: the store, not the workspace"


def test_tracking_fix_for_an_older_schema_offers_the_upgrade_too(workspace):
    head, known, _ = doctor.mlflow_schema()
    _store(workspace / "mlflow.db", sorted(known - {head})[0])
    check = doctor.check_tracking()
    assert not check.ok and "older MLflow" in check.detail
    assert "db upgrade sqlite:///" in check.fix and "rm " in check.fix


def test_tracking_fix_for_a_file_that_is_not_a_store(workspace, monkeypatch, tmp_path):
    other = tmp_path / "notes.db"
    other.write_text("not sqlite at all, just text that is long enough to have a header")
    monkeypatch.setenv(config.TRACKING_URI_ENV, f"sqlite:///{other}")
    check = doctor.check_tracking()
    assert not check.ok and "not an SQLite database" in check.detail
    assert config.TRACKING_URI_ENV in check.fix and "rm" not in check.fix


def test_tracking_fix_for_a_relative_sqlite_uri(workspace, monkeypatch):
    monkeypatch.setenv(config.TRACKING_URI_ENV, "sqlite:///mlflow.db")
    check = doctor.check_tracking()
    assert not check.ok and "absolute" in check.fix


def test_tracking_fix_when_no_server_listens(workspace, monkeypatch):
    port = free_port()
    monkeypatch.setenv(config.TRACKING_URI_ENV, f"http://127.0.0.1:{port}")
    start = time.perf_counter()
    check = doctor.check_tracking()
    assert time.perf_counter() - start < 5
    assert not check.ok and "does not answer" in check.detail
    assert f"mlflow-server PORT={port}" in check.fix


def _answering(workspace, monkeypatch, mlflow_like: bool) -> doctor.Check:
    """doctor's check of a small HTTP server that answers /health, and MLflow's REST API
    only when ``mlflow_like`` (a stand-in: tests/integration/test_tracking_store.py checks a
    real ``mlflow server``, which takes seconds to start)."""

    class Health(BaseHTTPRequestHandler):
        def do_GET(self):
            api = self.path.startswith("/api/2.0/mlflow/experiments/get-by-name")
            found = self.path == "/health" or (api and mlflow_like)
            self.send_response(200 if found else 404)
            self.end_headers()
            self.wfile.write(b'{"experiment": {"name": "Default"}}' if api and found else b"OK")

        def log_message(self, *args):
            pass

    server = HTTPServer(("127.0.0.1", 0), Health)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        monkeypatch.setenv(config.TRACKING_URI_ENV, f"http://127.0.0.1:{server.server_port}/")
        return doctor.check_tracking()
    finally:
        server.shutdown()
        server.server_close()


def test_tracking_ok_when_the_server_answers_as_mlflow(workspace, monkeypatch):
    check = _answering(workspace, monkeypatch, mlflow_like=True)
    assert check.ok and "answers as an MLflow tracking server" in check.detail


def test_tracking_fix_when_the_server_answers_but_is_not_mlflow(workspace, monkeypatch):
    check = _answering(workspace, monkeypatch, mlflow_like=False)
    assert not check.ok and "not an MLflow tracking server" in check.detail


def test_tracking_fix_for_a_corrupt_store_removes_just_that_file_when_pasted(monkeypatch, tmp_path):
    # A workspace whose path a careless paste would break: a space, and a $ bash expands.
    workspace = tmp_path / "my work $HOME" / "ws"
    (workspace / "artifacts" / "workbook").mkdir(parents=True)
    (workspace / "artifacts" / "workbook" / "model.skops").write_bytes(b"kept")
    (workspace / "mlflow.db").write_bytes(os.urandom(8192))
    (workspace / "mlflow.db.lock").touch()
    monkeypatch.setenv(config.HOME_ENV, str(workspace))
    monkeypatch.delenv(config.TRACKING_URI_ENV, raising=False)
    for cwd in (tmp_path, ROOT):  # relative to where it is pasted, or absolute
        monkeypatch.chdir(cwd)
        check = doctor.check_tracking()
        assert not check.ok and "not an SQLite database" in check.detail
        assert "runs and registered models are lost" in check.fix
        command = check.fix.rsplit("run: ", 1)[1]
        assert command == f"rm {doctor.shell_path(workspace / 'mlflow.db')}"
        before = sorted(p for p in tmp_path.rglob("*"))
        done = subprocess.run(["bash", "-c", command], cwd=cwd, capture_output=True, text=True)
        assert done.returncode == 0, done.stderr
        assert sorted(p for p in tmp_path.rglob("*")) == [
            p for p in before if p != workspace / "mlflow.db"
        ], "exactly mlflow.db is removed"
        (workspace / "mlflow.db").write_bytes(os.urandom(8192))


def test_every_fix_with_a_path_pastes_as_that_path(monkeypatch, tmp_path):
    odd = tmp_path / "it's a $dir"
    python = odd / "bin" / "python"
    monkeypatch.setattr(sys, "executable", str(python))
    monkeypatch.setattr(config, "project_root", lambda: odd)
    monkeypatch.setenv(config.HOME_ENV, str(odd / "ws"))
    fixes = {  # what: (the fix, where its command starts, a path it must paste as)
        "pip": (doctor.install_fix(), "run: ", str(python)),
        "lock": (doctor.install_fix(), "run: ", str(odd / "requirements" / "test.lock")),
        "python": (doctor.check_python(_pyproject(tmp_path)).fix, "rm -rf", str(odd / ".venv")),
        "make -C": (doctor.make("install"), "make", str(odd)),
        "clean": (doctor.clean_workspace_command(), "rm -rf", str(odd / "ws")),
        "kernel": (doctor.check_kernel("no-such-kernel-xyz").fix, "run: ", str(python)),
    }
    for what, (fix, start, path) in fixes.items():
        command = fix[fix.index(start) :].removeprefix("run: ").split(" && ")[0]
        echo = subprocess.run(
            ["bash", "-c", f"printf '%s\\n' {command}"], capture_output=True, text=True
        )
        assert path in echo.stdout.splitlines(), f"{what}: {fix!r} does not paste as {path!r}"


def _pyproject(tmp_path: Path) -> Path:
    pyproject = tmp_path / "pyproject.toml"
    pyproject.write_text('[project]\nname = "x"\nrequires-python = ">=3.99"\n')
    return pyproject


def test_tracking_hides_a_password_in_the_uri(workspace, monkeypatch):
    monkeypatch.setenv(config.TRACKING_URI_ENV, "postgresql://team:s3cret@db.example/mlflow")
    check = doctor.check_tracking()
    assert "s3cret" not in check.line() and "team:***@" in check.detail


# -- serving and telemetry --------------------------------------------------------------


def test_serving_ok_in_this_environment():
    check = doctor.check_serving()
    assert check.ok and "uvicorn" in check.detail, check.line()


def test_serving_fix_without_uvicorn_next_to_python(monkeypatch, tmp_path):
    monkeypatch.setattr(sys, "executable", str(tmp_path / "bin" / "python"))
    check = doctor.check_serving()
    assert not check.ok and "uvicorn" in check.detail and "install" in check.fix


def test_telemetry_ok_and_fix(monkeypatch):
    assert doctor.check_telemetry().ok
    monkeypatch.setitem(config.MLFLOW_ENV, "MLFLOW_DISABLE_TELEMETRY", "false")
    check = doctor.check_telemetry()
    assert not check.ok and "MLFLOW_ENV" in check.fix


def test_a_crashing_check_is_a_fix_line_not_a_traceback(monkeypatch):
    def broken() -> doctor.Check:
        raise OSError("disk on fire")

    broken.__name__ = "check_broken"
    monkeypatch.setattr(doctor, "CHECKS", (broken,))
    [check] = doctor.run_checks()
    assert check.name == "broken" and not check.ok and "disk on fire" in check.detail


# -- the command ------------------------------------------------------------------------


def test_doctor_command_is_all_ok_here_fast_and_creates_nothing(tmp_path):
    env = {
        k: v for k, v in os.environ.items() if k not in (config.TRACKING_URI_ENV, "JUPYTER_PATH")
    }
    env[config.HOME_ENV] = str(tmp_path / "ws")
    start = time.perf_counter()
    done = subprocess.run(
        [str(Path(sys.executable).parent / "mlops-workbook"), "doctor"],
        capture_output=True, text=True, env=env, cwd=ROOT, timeout=60,
    )  # fmt: skip
    seconds = time.perf_counter() - start
    lines = done.stdout.split("\n\n")[0].splitlines()
    assert done.returncode == 0, done.stdout + done.stderr
    assert [ln.split()[1] for ln in lines] == [
        "python", "packages", "kernel", "workspace", "tracking", "serving", "endpoint", "telemetry",
        "orchestrator",
    ]  # fmt: skip
    assert all(ln.startswith("OK    ") for ln in lines), done.stdout
    assert done.stdout.rstrip().endswith("all checks OK") and not done.stderr
    assert not (tmp_path / "ws").exists(), "doctor must not create the workspace"
    assert seconds < 15


def test_doctor_command_exits_1_and_says_how_to_fix(capsys, workspace, monkeypatch):
    from mlops_helpers.workbook import cli

    monkeypatch.setenv(config.TRACKING_URI_ENV, "")  # cli.main sets it; restored after the test
    code = cli.main(["doctor", "--tracking-uri", f"http://127.0.0.1:{free_port()}"])
    out = capsys.readouterr().out
    assert code == 1
    assert "FIX   tracking" in out and "make" in out and "1 of 9 checks need a fix" in out


def test_the_endpoint_check_names_nginx_or_how_to_install_it(monkeypatch):
    from mlops_helpers.workbook import processes

    found = doctor.check_endpoint()
    assert found.ok == (processes.find_nginx() is not None)
    if found.ok:
        assert found.detail.startswith("nginx/")
    monkeypatch.setattr(doctor, "find_nginx", lambda: None)  # a machine without it
    missing = doctor.check_endpoint()
    assert not missing.ok and "make nginx" in missing.fix and "no nginx" in missing.detail
