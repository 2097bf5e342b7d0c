"""The prediction log's middleware (``mlops_helpers.workbook.logged_app``) against a tiny
ASGI app standing in for MLflow's (this tests the middleware's order of events, which
MLflow's app does not change; the endpoint's integration tests run the real one)."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest

from mlops_helpers.workbook.logged_app import Logged

REQUEST = {"dataframe_split": {"columns": ["impression_id", "x"], "data": [["imp-1", 0.5]]}}
ANSWER = {"predictions": [[0.3, 0.7]]}


def scoring_app(empty_last: bool):
    """An app that answers in two pieces; with ``empty_last``, as MLflow's FastAPI app does
    through Starlette's middleware: the whole body with more_body, then an empty message."""

    async def app(scope, receive, send):
        await receive()
        body = json.dumps(ANSWER).encode()
        headers = [(b"content-length", str(len(body)).encode())]
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": body[:5], "more_body": True})
        await send({"type": "http.response.body", "body": body[5:], "more_body": empty_last})
        if empty_last:
            await send({"type": "http.response.body", "body": b""})

    return app


@pytest.mark.parametrize("empty_last", [False, True], ids=["last-bytes-end", "empty-end"])
def test_an_answer_is_logged_before_its_last_byte_reaches_the_client(tmp_path, empty_last):
    log = tmp_path / "version=3.jsonl"
    app = Logged(scoring_app(empty_last), str(log), "3")
    seen_when_done = []
    sent = []

    async def receive():
        return {"type": "http.request", "body": json.dumps(REQUEST).encode()}

    async def send(message):
        if message["type"] == "http.response.body":
            sent.append(message.get("body", b""))
            if b"".join(sent) == json.dumps(ANSWER).encode() and not seen_when_done:
                seen_when_done.append(log.read_text())  # what a client with the answer reads

    scope = {
        "type": "http",
        "path": "/invocations",
        "headers": [(b"x-request-id", b"r-1"), (b"x-endpoint-role", b"canary")],
    }
    # in a thread of its own: an earlier test in this process may have left an event loop
    # running in this one (papermill's), where asyncio.run refuses to start
    worker = threading.Thread(target=asyncio.run, args=(app(scope, receive, send),))
    worker.start()
    worker.join()
    [text] = seen_when_done
    [record] = [json.loads(line) for line in text.splitlines()]
    assert (record["request_id"], record["role"], record["version"]) == ("r-1", "canary", "3")
    assert record["predictions"] == ANSWER["predictions"]
    assert record["data"] == REQUEST["dataframe_split"]["data"]
    assert log.read_text() == text, "the answer was logged twice"
