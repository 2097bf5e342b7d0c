"""serving: MLflow's real scoring server over HTTP on loopback, bad requests, and faults;
started directly (the default) and by ``mlflow models serve`` itself.

One server is shared by the tests that only read from it; the fault tests start (or fail
to start) their own, and each checks that no process is left behind.
"""

from __future__ import annotations

import http.server
import json
import os
import re
import signal
import socket
import subprocess
import threading
from pathlib import Path

import numpy as np
import pytest

from mlops_helpers import registry, serving, training
from mlops_helpers.workbook import warmstart

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("on_store")]


def listening_addresses(port: int) -> list[str]:
    """Local addresses (hex, as the kernel writes them) of sockets in LISTEN state on ``port``."""
    found = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as fh:
            next(fh)
            for line in fh:
                local, _remote, state = line.split()[1:4]
                address, hex_port = local.split(":")
                if int(hex_port, 16) == port and state == "0A":  # 0A = TCP_LISTEN
                    found.append(address)
    return found


@pytest.fixture(scope="module")
def served(pointed, make_champion, good_run, servers_on):
    """The champion of a fresh model, served by one real server for this module's readers."""
    name, version = make_champion(good_run, "serving")
    with pointed(), serving.ScoringServer(f"models:/{name}@{registry.CHAMPION}") as server:
        model = registry.load_sklearn(name, version)
        assert servers_on(server.port), "the process search finds no running server"
        yield server, model
    assert not servers_on(server.port, timeout=5), "a server process (uvicorn) outlived stop()"


class TestRunningServer:
    """The shared server: answers, is exact, rejects bad requests clearly, keeps serving."""

    def test_ping_answers_200(self, served):
        server, _ = served
        with serving.urllib.request.urlopen(f"{server.url}/ping", timeout=5) as resp:
            assert resp.status == 200

    def test_one_probability_per_row_equal_to_in_process_predict(self, served, store):
        server, model = served
        frame = store.held_out.head(100)
        status, answer = serving.post(f"{server.url}/invocations", serving.request_body(frame))
        assert status == 200
        assert len(answer["predictions"]) == len(frame)
        expected = model.predict_proba(frame.loc[:, list(training.FEATURES)])[:, 1]
        np.testing.assert_allclose(server.predict(frame), expected, rtol=0, atol=1e-6)

    def test_listens_on_loopback_only(self, served):
        server, _ = served
        addresses = listening_addresses(server.port)
        assert addresses, f"nothing listens on port {server.port}"
        assert set(addresses) == {"0100007F"}, f"listening on {addresses}, not only 127.0.0.1"

    @pytest.mark.parametrize(
        ("case", "expected"),
        [
            ("renamed column", "missing inputs ['scroll_depth']"),
            ("missing column", "missing inputs ['hour']"),
            ("string for a number", "column page_load_ms"),
            ("string for an integer", "column hour"),
            ("not JSON", "valid JSON"),
            ("no dataframe key", "dataframe_split"),
        ],
    )
    def test_bad_request_gets_4xx_naming_the_problem_then_serving_goes_on(
        self, served, store, case, expected
    ):
        server, model = served
        frame = store.held_out.head(5)
        status, answer = serving.post(f"{server.url}/invocations", bad_body(frame, case))
        assert 400 <= status < 500
        assert expected in serving.error_message(answer)
        good = serving.request_body(frame)
        status, answer = serving.post(f"{server.url}/invocations", good)
        assert status == 200
        expected_proba = model.predict_proba(frame.loc[:, list(training.FEATURES)])[:, 1]
        np.testing.assert_allclose(serving.viewable_probability(answer), expected_proba, atol=1e-6)

    def test_predict_raises_a_clear_error_for_a_rejected_frame(self, served, store):
        server, _ = served
        frame = store.held_out.head(3).astype({"page_load_ms": object})
        frame.loc[:, "page_load_ms"] = "fast"
        with pytest.raises(serving.ServingError, match=r"answered 400: .*column page_load_ms"):
            server.predict(frame)

    def test_smoke_test_passes_on_the_real_server(self, served, store):
        server, model = served
        sample = store.held_out.head(10)
        expected = model.predict_proba(sample.loc[:, list(training.FEATURES)])[:, 1]
        smoke = serving.smoke_test(server.url, sample, expected, 10_000.0, single_requests=3)
        assert smoke.passed, smoke.table()


def bad_body(frame, case: str) -> bytes:
    """A malformed ``/invocations`` body of one kind."""
    split = frame.loc[:, list(training.FEATURES)].to_dict(orient="split", index=False)
    if case == "renamed column":
        split["columns"] = ["scroll_pct" if c == "scroll_depth" else c for c in split["columns"]]
    elif case == "missing column":
        at = split["columns"].index("hour")
        split["columns"].pop(at)
        split["data"] = [row[:at] + row[at + 1 :] for row in split["data"]]
    elif case.startswith("string for"):
        column = "page_load_ms" if case.endswith("number") else "hour"
        at = split["columns"].index(column)
        split["data"] = [[*row[:at], "fast", *row[at + 1 :]] for row in split["data"]]
    elif case == "not JSON":
        return b"ad_width=300&ad_height=250"
    elif case == "no dataframe key":
        return json.dumps({"rows": split["data"]}, default=str).encode()
    return json.dumps({"dataframe_split": split}, default=str).encode()


@pytest.fixture(scope="module")
def champion(make_champion, good_run):
    """A model whose champion is servable, for the fault tests; they only read it."""
    return make_champion(good_run, "faults")


class TestServerFaults:
    """Bad model URIs, a busy port, a slow start, a server that dies: clear errors, no leftovers."""

    @pytest.mark.parametrize(
        ("uri", "expected"),
        [
            ("models:/nope-{name}@champion", "points nowhere; promote a version first"),
            ("models:/{name}/99", "has no version 99; pass a version it has"),
            ("models:/{name}@nowhere", "alias 'nowhere' of model"),
            ("runs:/0123456789abcdef0123456789abcdef/model", "pass the id of a run"),
            ("/no/such/model/folder", "no such model folder"),
        ],
    )
    def test_a_model_that_does_not_exist_is_refused_before_starting(self, champion, uri, expected):
        name, version = champion
        server = serving.ScoringServer(uri.format(name=name))
        with pytest.raises(serving.ServingError, match=re.escape(expected)):
            server.start()
        assert server.process is None
        assert registry.current_version(name, registry.CHAMPION) == version

    def test_a_port_in_use_is_refused(self, champion):
        name, _ = champion
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
            taken.bind((serving.HOST, 0))
            taken.listen()
            port = taken.getsockname()[1]
            server = serving.ScoringServer(f"models:/{name}@champion", port=port)
            with pytest.raises(serving.ServingError, match=f"port {port} .* already in use"):
                server.start()
        assert server.process is None

    def test_a_picked_port_taken_before_the_server_binds_it_is_replaced(
        self, champion, monkeypatch
    ):
        # free_port is replaced (only here) to make the race happen every time: the port it
        # picks first is taken by a listener of this user that never answers
        name, _ = champion
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as taken:
            taken.bind((serving.HOST, 0))
            taken.listen()
            lost = taken.getsockname()[1]
            picks = iter([lost])
            real = serving.free_port
            monkeypatch.setattr(serving, "free_port", lambda: next(picks, None) or real())
            with serving.ScoringServer(f"models:/{name}@champion") as server:
                assert server.port != lost
                with serving.urllib.request.urlopen(f"{server.url}/ping", timeout=5) as resp:
                    assert resp.status == 200
                first = server.server.log_path.with_name(f"server-{lost}.log")
                assert "address already in use" in first.read_text().lower()
        assert server.process is None

    def test_a_server_not_ready_in_time_is_stopped_and_its_log_shown(self, champion, servers_on):
        name, _ = champion
        # a warm server answers in about half a second: no server answers in 0.05 s
        server = serving.ScoringServer(f"models:/{name}@champion", ready_timeout=0.05)
        with pytest.raises(serving.ServingError, match="not ready after 0.05 s") as err:
            server.start()
        assert "Its log:\n" in str(err.value)
        assert server.process is None
        assert not servers_on(server.port, timeout=5), "a server process outlived the failed start"

    def test_a_server_that_dies_gives_a_clear_error(self, store, champion, servers_on):
        name, _ = champion
        with serving.ScoringServer(f"models:/{name}@champion") as server:
            os.killpg(os.getpgid(server.process.pid), signal.SIGKILL)
            server.process.wait(timeout=10)
            assert not servers_on(server.port, timeout=10)
            with pytest.raises(serving.ServingError, match="did not answer") as err:
                server.predict(store.held_out.head(2))
            assert "not running" in str(err.value) and "restart it" in str(err.value)
        assert not servers_on(server.port, timeout=5)


class TestLaunchers:
    """``direct`` and ``mlflow-cli`` start the same server: same answers, nothing left over."""

    def test_mlflow_models_serve_answers_exactly_as_the_direct_server(
        self, served, store, servers_on
    ):
        direct, model = served
        frame = store.held_out.head(50)
        with serving.ScoringServer(direct.model_uri, launcher="mlflow-cli") as cli:
            assert cli.model_dir is None  # the CLI downloads the model itself
            np.testing.assert_array_equal(cli.predict(frame), direct.predict(frame))
        assert not servers_on(cli.port, timeout=5), "`mlflow models serve` outlived stop()"

    @pytest.mark.skipif(not warmstart.supported(), reason="warm starts need Linux pidfds")
    def test_a_forked_server_answers_exactly_as_one_started_the_usual_way(
        self, served, store, servers_on, monkeypatch
    ):
        forked, _ = served
        pid = forked.server.process.pid
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        assert int(stat[1]) in warmstart.templates(), "the test session's servers start warm"
        # named uvicorn (its command line stays the template's), and found on its port
        assert warmstart.forked_as(pid) == warmstart.SERVER_MODULE
        assert pid in servers_on(forked.port)
        frame = store.held_out.head(50)
        monkeypatch.setenv(warmstart.SWITCH, "0")
        with serving.ScoringServer(forked.model_uri) as usual:
            assert isinstance(usual.server.process, subprocess.Popen)
            np.testing.assert_array_equal(usual.predict(frame), forked.predict(frame))
        assert not servers_on(usual.port, timeout=5)

    def test_the_direct_server_deletes_the_model_it_downloaded(self, champion):
        name, _ = champion
        with serving.ScoringServer(f"models:/{name}@champion") as server:
            downloaded = server.model_dir
            assert any(downloaded.rglob("MLmodel")), "the model was downloaded here"
        assert not downloaded.exists()

    def test_an_unknown_launcher_is_refused_naming_the_choices(self, champion):
        name, _ = champion
        with pytest.raises(ValueError, match="'docker' is not one of direct, mlflow-cli"):
            serving.ScoringServer(f"models:/{name}@champion", launcher="docker")


class DroppingHandler(http.server.BaseHTTPRequestHandler):
    """Answers /ping, then drops every POST without an answer (a server dying mid-request)."""

    def do_GET(self):  # noqa: N802 - http.server's naming
        self.send_response(200)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def do_POST(self):  # noqa: N802
        self.close_connection = True

    def log_message(self, *args):
        pass


def test_smoke_test_never_raises_when_the_server_drops_requests(store):
    httpd = http.server.HTTPServer((serving.HOST, 0), DroppingHandler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://{serving.HOST}:{httpd.server_address[1]}"
        sample = store.held_out.head(3)
        smoke = serving.smoke_test(url, sample, np.zeros(len(sample)), single_requests=2)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert not smoke.passed
    failed = smoke.table().query("not passed")
    assert list(failed.index) == ["invocations answers 200"]


def test_smoke_test_of_a_stopped_server_fails_on_ping(store):
    sample = store.held_out.head(3)
    url = f"http://{serving.HOST}:{serving.free_port()}"
    smoke = serving.smoke_test(url, sample, np.zeros(len(sample)))
    assert not smoke.passed
    assert list(smoke.table().index) == ["ping answers 200"]
