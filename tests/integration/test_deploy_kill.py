"""`mlops-workbook deploy` killed with SIGKILL at each step it prints: after the gate, while
the candidate's server is up, after the smoke test (right before the alias move) and after
the alias move. Each time champion is the old version or a verified one, and the same
command run again completes with the new champion."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess

import pytest

from mlops_helpers import registry
from tests.integration.conftest import pointed_at
from tests.support import CLI

pytestmark = pytest.mark.slow

ROWS = ["--n-rows", "800"]
STEPS = ("gate:", "serve:", "smoke test:", "promote:")


def _env(ws) -> dict[str, str]:
    return {**os.environ, "MLOPS_WORKBOOK_HOME": str(ws)}


def _kill_at(ws, args: list[str], step: str) -> list[str]:
    """Run the CLI, SIGKILL it as soon as it prints the line of ``step``; its lines so far."""
    proc = subprocess.Popen(
        [*CLI, *args], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, env=_env(ws)
    )
    lines = []
    try:
        for line in proc.stdout:
            lines.append(line)
            # a rerun whose champion already moved finishes instead of promoting again
            if line.startswith((step, "finish:") if step == "promote:" else step):
                proc.send_signal(signal.SIGKILL)
                break
    finally:
        proc.kill()
        proc.wait(timeout=60)
        proc.stdout.close()
    assert lines and lines[-1].startswith((step, "finish:")), f"never reached {step!r}: {lines}"
    return lines


def _stop_left_servers(ws, scoring_servers_in) -> None:
    # a server the killed command started is another item's concern; end it for the next step
    for pid, _ in scoring_servers_in(ws):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


def test_a_deploy_killed_at_any_step_leaves_a_verified_champion_and_reruns_to_completion(
    tmp_path, store, good_run, make_champion, scoring_servers_in
):
    # The champion and the candidate are the session's good model registered twice (the
    # gate passes: no loss); the commands run in a workspace of their own on the same store.
    ws = tmp_path / "ws"
    name, old = make_champion(good_run, "killed-deploy")
    with pointed_at(store):
        new = registry.register(good_run, name)
    command = ["deploy", "--model", name, "--version", new, *ROWS, "--tracking-uri", store.uri]

    seen = []
    for step in STEPS:
        seen.append(_kill_at(ws, command, step)[-1].strip())
        _stop_left_servers(ws, scoring_servers_in)
        with pointed_at(store):
            champion = registry.current_version(name, registry.CHAMPION)
            assert champion == old or (champion == new and registry.verified(name, new)), (
                step,
                champion,
            )
            if champion == old:
                assert registry.current_version(name, registry.CHALLENGER) == new, step

    again = subprocess.run([*CLI, *command], capture_output=True, text=True, env=_env(ws))
    _stop_left_servers(ws, scoring_servers_in)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"DEPLOYED: version {new} is champion" in again.stdout
    with pointed_at(store):
        assert registry.current_version(name, registry.CHAMPION) == new
        assert registry.current_version(name, registry.CHALLENGER) is None
        assert registry.verified(name, new), seen
