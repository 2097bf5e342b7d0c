"""One workspace, one writer: a second `mlops-workbook run` on a busy workspace is refused
in seconds naming the first; a killed holder blocks nobody; a learner's kernel and a
headless run refuse each other; kernels share a workspace. Real commands, real kernels."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from jupyter_client.manager import KernelManager

from mlops_helpers import config
from mlops_helpers.workbook import workspace_lock
from tests.support import CLI

pytestmark = pytest.mark.slow

# A process that holds the workspace as a writing command does, until it is killed.
HOLDER = """
import sys, time
from mlops_helpers.workbook import workspace_lock
workspace_lock.{how}
print("held", flush=True)
time.sleep(300)
"""


def _env(ws: Path) -> dict[str, str]:
    env = {**os.environ, config.HOME_ENV: str(ws)}
    env.pop(workspace_lock.TOKEN_ENV, None)
    return env


def _run(ws: Path, *args: str, timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [*CLI, *args], capture_output=True, text=True, env=_env(ws), timeout=timeout
    )


def _start_run(ws: Path) -> subprocess.Popen:
    """`mlops-workbook run 03` in the background, once it holds the workspace."""
    proc = subprocess.Popen(
        [*CLI, "run", "03", "--no-progress", "--no-report"],
        env=_env(ws),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        with_record = (ws / workspace_lock.LOCK_NAME).is_file() and (
            ws / workspace_lock.LOCK_NAME
        ).read_text().strip()
        if with_record and json.loads(with_record)["pid"] == proc.pid:
            return proc
        time.sleep(0.1)
    proc.kill()
    raise AssertionError(f"the run never held the workspace: {proc.communicate()}")


def _start_holder(ws: Path, how: str) -> subprocess.Popen:
    code = HOLDER.format(how=how)
    proc = subprocess.Popen(
        [sys.executable, "-c", code], env=_env(ws), stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.kill()
    proc.communicate(timeout=60)


def test_a_second_run_is_refused_in_seconds_naming_the_first_which_succeeds(tmp_path):
    ws = tmp_path / "ws"
    first = _start_run(ws)
    try:
        start = time.monotonic()
        second = _run(ws, "run", "03", "--no-progress", "--no-report", timeout=60)
        assert time.monotonic() - start < 20, "refused within seconds, not after a run"
        assert second.returncode == 2, second.stdout + second.stderr
        err = second.stderr
        assert err.startswith(f"error: the workspace {config.HOME_ENV}={ws} is in use by ")
        assert f"pid {first.pid} (python -m mlops_helpers.workbook.cli run 03 --no-progress" in err
        assert ", since 20" in err, "when the holder started"
        assert f"run in parallel in a workspace of its own: {config.HOME_ENV}=" in err
        assert err.count("\n") == 1 and "Traceback" not in err
        out, err = first.communicate(timeout=300)
        assert first.returncode == 0, out + err
    finally:
        _stop(first)
    assert len(list((ws / "runs").iterdir())) == 1, "the refused run made no run folder"


def test_a_killed_run_does_not_block_the_next_one(tmp_path):
    ws = tmp_path / "ws"
    first = _start_run(ws)
    os.kill(first.pid, signal.SIGKILL)  # the holder only: its lock goes with it
    # wait for the holder itself, not for end of file on its pipes: the kernel it started
    # inherited them and may take a while to notice its parent is gone
    first.wait(timeout=60)
    first.stdout.close()
    first.stderr.close()
    assert json.loads((ws / workspace_lock.LOCK_NAME).read_text())["pid"] == first.pid
    again = _run(ws, "run", "03", "--no-progress", "--no-report")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "all 1 notebooks ran" in again.stdout


def _kernel(ws: Path) -> tuple[KernelManager, object]:
    manager = KernelManager(kernel_name="python3")
    manager.start_kernel(env=_env(ws), cwd=str(config.notebooks_dir()))
    client = manager.client()
    client.start_channels()
    client.wait_for_ready(timeout=120)
    return manager, client


def _cell(client, code: str) -> dict:
    """Run a cell; its reply content, with what it printed under ``stdout``."""
    printed: list[str] = []

    def keep(msg: dict) -> None:
        if msg["msg_type"] == "stream":
            printed.append(msg["content"]["text"])

    reply = client.execute_interactive(code, timeout=120, output_hook=keep)
    return {**reply["content"], "stdout": "".join(printed)}


def test_a_learners_kernel_and_a_headless_command_refuse_each_other(tmp_path):
    ws = tmp_path / "ws"
    write = "from mlops_helpers import config\nconfig.ensure_workspace('lab')"
    holder = _start_holder(ws, "claim(['mlops-workbook', 'run', '03'])")
    manager, client = _kernel(ws)
    try:
        refused = _cell(client, write)
        assert refused["status"] == "error" and refused["ename"] == "WorkspaceBusy"
        assert f"is in use by pid {holder.pid} (python -c" in refused["evalue"]
        assert "so this kernel cannot write there now" in refused["evalue"]
        assert f"start the kernel (JupyterLab) with {config.HOME_ENV} set to" in refused["evalue"]
        assert not (ws / "lab").exists(), "the refused cell wrote nothing"

        _stop(holder)  # the headless command ends (killed): the learner's cell now works
        assert _cell(client, write)["status"] == "ok"
        assert (ws / "lab").is_dir()
        kernel_pid = int(_cell(client, "import os; print(os.getpid())")["stdout"])

        blocked = _run(ws, "run", "03", "--no-progress", timeout=60)
        assert blocked.returncode == 2, blocked.stdout + blocked.stderr
        assert f"is in use by pid {kernel_pid} (a Jupyter kernel: " in blocked.stderr
        assert not (ws / "runs").exists(), "the refused run wrote nothing"
    finally:
        _stop(holder)
        client.stop_channels()
        manager.shutdown_kernel(now=True)
    # the kernel has ended: the workspace is free for a command again
    _stop(_start_holder(ws, "claim()"))


def test_kernels_share_a_workspace_and_one_command_waits_for_none_of_them(tmp_path):
    ws = tmp_path / "ws"
    ws.mkdir()
    first = _start_holder(ws, f"hold_shared(__import__('pathlib').Path({str(ws)!r}))")
    second = _start_holder(ws, f"hold_shared(__import__('pathlib').Path({str(ws)!r}))")
    try:
        refused = _run(ws, "deploy", "--version", "1", timeout=60)
        assert refused.returncode == 2, refused.stderr
        assert f"pid {first.pid} (" in refused.stderr and f"pid {second.pid} (" in refused.stderr
    finally:
        _stop(first)
        _stop(second)


def test_a_lock_file_of_another_user_is_refused_not_read(tmp_path, monkeypatch):
    ws = tmp_path / "ws"
    ws.mkdir()
    lock = ws / workspace_lock.LOCK_NAME
    lock.write_text(json.dumps({"pid": 1, "token": "theirs"}))
    os.chown(lock, 65534, 65534)  # another local user's file in the folder
    monkeypatch.setenv(config.HOME_ENV, str(ws))
    monkeypatch.setenv(workspace_lock.TOKEN_ENV, "theirs")  # a token it would match
    with (
        pytest.raises(workspace_lock.WorkspaceBusy, match="belongs to uid 65534, not to you"),
        workspace_lock.hold_exclusive(),
    ):
        pass
    assert lock.read_text() == json.dumps({"pid": 1, "token": "theirs"})
