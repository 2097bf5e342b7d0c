"""``mlops-workbook serve --endpoint`` in a subprocess, driven only through the registry by
other commands (``rollout``, ``rollback``) and a promotion, with clients calling it the whole
time: it takes each change within seconds, and no request fails. A canary share outside 0
to 100 exits 2 before anything is recorded."""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from mlops_helpers import config, endpoint, registry, serving, traffic
from mlops_helpers.workbook import cli

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("on_store")]


def answered_by_only(load: traffic.Load, versions: set[str], timeout: float = 30.0) -> None:
    """Wait until the last 20 answers came from ``versions`` and no other."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        recent = load.frame().tail(20)
        if len(recent) == 20 and set(recent["version"]) == versions:
            return
        time.sleep(0.2)
    raise AssertionError(f"still answered by {set(load.frame().tail(20)['version'])}")


def test_the_endpoint_follows_rollout_promotion_and_rollback(
    store, make_champion, good_run, monkeypatch
):
    # cli.main sets this variable for the commands it runs; set here, it is undone after
    # the test and no later test in this process sees the store
    monkeypatch.setenv(config.TRACKING_URI_ENV, store.uri)
    name, first = make_champion(good_run, "cli-endpoint")
    second = registry.register(good_run, name)  # @challenger
    with pytest.raises(SystemExit) as refused:
        cli.main(["rollout", "--model", name, "--canary", "101", "--tracking-uri", store.uri])
    assert refused.value.code == 2
    assert endpoint.ROLLOUT_TAG not in registry.client().get_registered_model(name).tags

    env = {**os.environ, "MLOPS_WORKBOOK_HOME": str(store.workspace)}
    serve = subprocess.Popen(
        [sys.executable, "-m", "mlops_helpers.workbook.cli", "serve", "--endpoint",
         "--model", name, "--tracking-uri", store.uri],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env,
    )  # fmt: skip
    try:
        lines = []
        while not any(line.startswith("URL: ") for line in lines):
            line = serve.stdout.readline()
            assert line, "serve --endpoint ended before its URL:\n" + "".join(lines)
            lines.append(line)
        url = next(line for line in lines if line.startswith("URL: ")).split()[1]
        url = url.removesuffix("/invocations")
        assert lines[0].strip() == f"endpoint for {name}: version {first}"
        body = serving.request_body(serving.example_frame())
        with traffic.Load(url, [body], clients=4) as load:
            answered_by_only(load, {first})
            uri = ["--model", name, "--tracking-uri", store.uri]
            assert cli.main(["rollout", *uri, "--canary", "50", "--reason", "try it"]) == 0
            load.mark("canary")
            answered_by_only(load, {first, second})
            registry.set_alias(name, registry.CHAMPION, second, "the canary held up")
            load.mark("promoted")
            answered_by_only(load, {second})
            assert cli.main(["rollback", *uri, "--reason", "a late complaint"]) == 0
            load.mark("rolled back")
            answered_by_only(load, {first})
        assert not load.frame()["failed"].any(), load.summary()
        assert registry.current_version(name, registry.CHAMPION) == first
    finally:
        serve.send_signal(2)  # Ctrl-C
        out, _ = serve.communicate(timeout=60)
    assert serve.returncode == 0, out
    assert f"now serving version {first}, canary version {second} at 50%" in out
    assert f"now serving version {second} (took" in out
    assert "stopping" in out
