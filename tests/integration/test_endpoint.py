"""The production endpoint on a real store: nginx in front of real scoring servers, clients
calling it the whole time while the version under it is switched and rolled back. Not one
request may fail, and after each switch returns every new answer comes from the new
version. A version that fails its smoke test never takes traffic; a port in use is refused
before anything starts."""

from __future__ import annotations

import socket
import threading
import time
import urllib.error
import urllib.request

import pytest

from mlops_helpers import endpoint, registry, serving
from mlops_helpers.workbook.processes import PortInUse

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("on_store")]

CLIENTS = 8


class Load:
    """Clients that call the endpoint until stopped, one new connection per request (as a
    fleet of independent callers does); every answer or failure is kept with its times."""

    def __init__(self, url: str):
        self.url, self.stop, self.calls = url, threading.Event(), []
        self.body = serving.request_body(serving.example_frame().head(3))
        self.threads = [threading.Thread(target=self._client, daemon=True) for _ in range(CLIENTS)]

    def _client(self) -> None:
        while not self.stop.is_set():
            started = time.monotonic()
            request = urllib.request.Request(
                f"{self.url}/invocations", self.body, {"Content-Type": "application/json"}
            )
            try:
                with urllib.request.urlopen(request, timeout=30) as resp:
                    resp.read()
                    outcome = (resp.status, resp.headers.get(endpoint.VERSION_HEADER))
            except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
                outcome = (type(exc).__name__, None)
            self.calls.append((started, time.monotonic(), *outcome))

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()
        for t in self.threads:
            t.join(timeout=60)

    def after(self, moment: float) -> set:
        """The versions that answered the requests sent after ``moment``."""
        return {version for started, _, _, version in self.calls if started > moment}


@pytest.fixture(scope="module")
def versions(pointed, make_champion, good_run, renamed_run):
    """A champion, a second good version, and one that breaks in serving."""
    name, first = make_champion(good_run, "endpoint")
    with pointed():
        second = registry.register(good_run, name)
        broken = registry.register(renamed_run, name)
    return name, first, second, broken


def test_switch_and_rollback_under_load_fail_no_request(versions):
    name, first, second, broken = versions
    with endpoint.Endpoint(name) as live:
        assert live.answered_by(serving.request_body(serving.example_frame())) == first
        with Load(live.url) as load:
            time.sleep(1.0)
            live.switch(second)
            switched = time.monotonic()
            time.sleep(1.0)
            with pytest.raises(endpoint.EndpointError, match=f"version {broken} failed its smoke"):
                live.switch(broken)
            time.sleep(0.5)
            live.rollback()
            rolled_back = time.monotonic()
            time.sleep(1.0)
        failed = [c for c in load.calls if c[2] != 200]
        assert len(load.calls) > 50 and not failed, f"{len(failed)} of {len(load.calls)} failed"
        assert load.after(switched) - load.after(rolled_back) == {second}
        assert load.after(rolled_back) == {first}, "after the rollback, only the old version"
        assert broken not in {c[3] for c in load.calls}, "a broken version never took traffic"
        assert (live.live, live.previous) == (first, second)
        assert set(live.servers) == {first, second}, "the replaced version stays warm"
        ports = [s.port for s in live.servers.values()]
    for port in ports:
        with socket.socket() as s:
            assert s.connect_ex(("127.0.0.1", port)) != 0, "every scoring server stopped"


def test_a_port_in_use_is_refused_before_anything_starts(versions):
    name, *_ = versions
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(PortInUse, match=f"port {port} on 127.0.0.1 is already in use"):
            endpoint.Endpoint(name, port=port).start()


def test_nothing_to_roll_back_to_and_no_champion_are_named(versions, fresh_name):
    name, first, *_ = versions
    with (
        endpoint.Endpoint(name) as live,
        pytest.raises(endpoint.EndpointError, match=f"has served only version {first}"),
    ):
        live.rollback()
    registry.client().create_registered_model(fresh_name)
    with pytest.raises(endpoint.EndpointError, match="has no champion to serve"):
        endpoint.Endpoint(fresh_name).start()
