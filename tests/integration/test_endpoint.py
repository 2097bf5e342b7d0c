"""The production endpoint on a real store: nginx in front of real scoring servers, clients
calling it the whole time while the version under it is switched and rolled back. Not one
request may fail, and after each switch returns every new answer comes from the new
version. A version that fails its smoke test never takes traffic; a port in use is refused
before anything starts. A canary gets its share, a shadow sees every request and answers
none, both answers are in the prediction log under one request id, a killed scoring server
gives a clear 503 until the endpoint restarts it, and the log outlives the endpoint."""

from __future__ import annotations

import json
import os
import signal
import socket
import time
import urllib.error
import urllib.request

import psutil
import pytest

from mlops_helpers import endpoint, registry, scoring, serving, traffic
from mlops_helpers.workbook import warmstart
from mlops_helpers.workbook.processes import PortInUse

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("on_store")]


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
    body = serving.request_body(serving.example_frame().head(3))
    with endpoint.Endpoint(name) as live:
        assert live.answered_by() == first
        with traffic.Load(live.url, [body], clients=8) as load:
            time.sleep(1.0)
            live.switch(second)
            load.mark("switched")
            time.sleep(1.0)
            with pytest.raises(endpoint.EndpointError, match=f"version {broken} failed its smoke"):
                live.switch(broken)
            time.sleep(0.5)
            load.mark("rolling back")  # sent during the rollback: either version may answer
            live.rollback()
            load.mark("rolled back")
            time.sleep(1.0)
        calls = load.frame()
        assert len(calls) > 50 and not calls["failed"].any(), load.summary()
        answered = calls.groupby("phase")["version"].unique().map(set).to_dict()
        assert answered["switched"] == {second}
        assert answered["rolled back"] == {first}, "after the rollback, only the old version"
        assert broken not in set(calls["version"]), "a broken version never took traffic"
        assert (live.live, live.previous) == (first, second)
        assert set(live.servers) == {first, second}, "the replaced version stays warm"
        if warmstart.active():  # as in make test: every version forks from one template
            parents = {psutil.Process(s.process.pid).ppid() for s in live.servers.values()}
            assert len(parents) == 1 and parents <= set(warmstart.templates()), parents
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


def test_a_picked_port_taken_before_nginx_binds_it_is_replaced(versions, store, monkeypatch):
    # free_port is replaced (only here, only nginx's) to make the race happen every time:
    # the port it picks first is taken by a listener of this user that never answers
    name, first, *_ = versions
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        lost = taken.getsockname()[1]
        picks = iter([lost])
        real = endpoint.free_port
        monkeypatch.setattr(endpoint, "free_port", lambda: next(picks, None) or real())
        with endpoint.Endpoint(name) as live:
            assert live.port != lost
            status, version, *_ = call(live.url, impressions(store, 1)[0])
            assert (status, version) == (200, first)
        assert live.server is None, "stopped"


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


def call(url: str, frame) -> tuple[int, str | None, str | None, dict]:
    """One request with the rows' impression ids: status, answering version, request id."""
    body = serving.request_body(frame, extra=("impression_id",))
    request = urllib.request.Request(
        f"{url}/invocations", body, {"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            headers, status, answer = resp.headers, resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        headers, status, answer = err.headers, err.code, json.loads(err.read())
    return (
        status,
        headers.get(endpoint.VERSION_HEADER),
        headers.get(endpoint.REQUEST_HEADER),
        answer,
    )


def impressions(store, n: int):
    """``n`` one-row frames of real impressions, each with its id."""
    rows = store.held_out.head(n).reset_index(drop=True)
    rows["impression_id"] = [f"imp-{i:05d}" for i in range(n)]
    return [rows.iloc[[i]] for i in range(n)]


def test_a_canary_gets_its_share_and_both_answers_are_logged(versions, store):
    name, first, second, _ = versions
    with endpoint.Endpoint(name) as live:
        assert live.prepare(second) > 0 and second in live.servers
        assert live.route == endpoint.Route(first), "a prepared version takes no traffic yet"
        assert {call(live.url, row)[1] for row in impressions(store, 10)} == {first}
        prepared = live.servers[second].port
        live.canary(second, 30)
        assert live.servers[second].port == prepared, "the canary is the prepared server"
        calls = [call(live.url, row) for row in impressions(store, 200)]
        online = scoring.read_online(live.log_folder)
    assert {status for status, *_ in calls} == {200}
    to_canary = sum(version == second for _, version, _, _ in calls)
    assert 30 <= to_canary <= 95, f"{to_canary} of 200 went to a 30% canary"
    assert {version for _, version, _, _ in calls} == {first, second}
    ours = online[online["request_id"].isin([rid for _, _, rid, _ in calls])]
    assert len(ours) == 200 and ours["impression_id"].is_unique
    roles = {r.request_id: (r.role, r.model_version) for r in ours.itertuples()}
    for _, version, rid, answer in calls:
        assert roles[rid] == ("canary" if version == second else "live", version)
        assert ours.set_index("request_id").loc[rid, "proba"] == answer["predictions"][0][1]


def test_a_shadow_sees_every_request_and_answers_none(versions, store):
    name, first, second, _ = versions
    with endpoint.Endpoint(name) as live:
        live.shadow(second)
        calls = [call(live.url, row) for row in impressions(store, 40)]
        time.sleep(0.5)  # nginx sends the copy beside the answer: let the last one land
        online = scoring.read_online(live.log_folder)
        live.switch(first)  # the shadow off again: its server stays up, gets nothing
        after = [call(live.url, row) for row in impressions(store, 5)]
        time.sleep(0.5)
        later = scoring.read_online(live.log_folder)
    assert {(status, version) for status, version, *_ in calls + after} == {(200, first)}
    ids = {rid for *_, rid, _ in calls}
    ours = online[online["request_id"].isin(ids)]
    assert ours.groupby("role")["request_id"].nunique().to_dict() == {"live": 40, "shadow": 40}
    assert set(ours.loc[ours["role"] == "shadow", "model_version"]) == {second}
    both = scoring.compare_answers(ours)
    assert len(both) == 40 and {f"proba_v{first}", f"proba_v{second}"} <= set(both.columns)
    after_ids = {rid for *_, rid, _ in after}
    assert set(later.loc[later["request_id"].isin(after_ids), "role"]) == {"live"}


def test_a_killed_scoring_server_is_a_clear_503_until_healed_and_the_log_survives(versions, store):
    name, first, *_ = versions
    rows = impressions(store, 3)
    answered = {}  # request id -> impression id, of each request answered with 200
    with endpoint.Endpoint(name) as live:
        status, _, rid, _ = call(live.url, rows[0])
        assert status == 200
        answered[rid] = "imp-00000"
        os.killpg(live.servers[first].process.pid, signal.SIGKILL)
        live.servers[first].process.wait(timeout=10)
        status, _, failed, answer = call(live.url, rows[1])
        assert status == 503 and answer["error_code"] == "ENDPOINT_UNAVAILABLE"
        assert "restarts it" in answer["message"]
        assert live.heal() == [first]
        assert live.heal() == [], "a running server is left alone"
        status, _, rid, _ = call(live.url, rows[1])
        assert status == 200
        answered[rid] = "imp-00001"
    with endpoint.Endpoint(name) as again:  # a new endpoint appends to the same log
        status, _, rid, _ = call(again.url, rows[2])
        assert status == 200
        answered[rid] = "imp-00002"
        online = scoring.read_online(again.log_folder)
    # by request id: earlier tests of this module logged the same impression ids
    logged = dict(zip(online["request_id"], online["impression_id"], strict=True))
    assert {rid: logged.get(rid) for rid in answered} == answered, "an answer is missing"
    assert failed and failed not in logged, "the 503 names its request and logged nothing"
