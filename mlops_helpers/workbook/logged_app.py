"""MLflow's scoring app with every answer written to a prediction log.

The endpoint (:mod:`mlops_helpers.endpoint`) runs each version's scoring server as
``uvicorn mlops_helpers.workbook.logged_app:app``: MLflow's own app
(``mlflow.pyfunc.scoring_server.app``, built from the model folder in its environment,
exactly as ``mlflow models serve`` builds it) wrapped in an ASGI middleware that, as
each ``/invocations`` answer is sent (before its last byte, so a client that has the answer
finds it logged), appends one JSON line to the version's log:

``{"time", "request_id", "role", "version", "status", "columns", "data", "predictions"}``

- ``request_id`` is nginx's ``$request_id``, sent to every server a request reached (the
  one that answered and, in shadow mode, the one that did not), so the two answers join;
- ``role`` is ``live``, ``canary`` or ``shadow`` (what nginx routed the request as);
- ``columns``/``data`` are the request's rows as sent (an ``impression_id`` column, which
  the model ignores, keys the late labels), ``predictions`` the model's answer.

The file is opened for appending, owner-only, and each record is one ``write`` of one
line, so records of a server killed mid-write lose at most that line; a new server writes
a newline first when the file does not end with one, and readers
(:func:`mlops_helpers.scoring.read_online`) skip a torn line. A restarted server appends
to the same file: nothing logged is lost.
"""

from __future__ import annotations

import json
import os
import time

LOG_ENV = "MLOPS_PREDICTION_LOG"  # the file this server appends to
VERSION_ENV = "MLOPS_MODEL_VERSION"  # the version it serves


class Logged:
    """ASGI middleware: ``app``'s ``/invocations`` answers, each logged as one line."""

    def __init__(self, app, path: str, version: str):
        self.app, self.version = app, version
        self.fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        size = os.fstat(self.fd).st_size
        if size:
            with open(path, "rb") as f:
                f.seek(size - 1)
                if f.read(1) != b"\n":  # the last server was killed mid-line
                    os.write(self.fd, b"\n")

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope["path"] != "/invocations":
            return await self.app(scope, receive, send)
        request, answer, status = [], [], []

        async def receive_logged():
            message = await receive()
            if message["type"] == "http.request":
                request.append(message.get("body", b""))
            return message

        logged = []

        def log() -> None:
            logged.append(True)
            headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
            self.write(headers, b"".join(request), status[0] if status else 500, b"".join(answer))

        length = []  # the answer's Content-Length, when it has one

        async def send_logged(message):
            if message["type"] == "http.response.start":
                status.append(message["status"])
                length.extend(
                    int(v) for k, v in message.get("headers", []) if k.lower() == b"content-length"
                )
            elif message["type"] == "http.response.body":
                answer.append(message.get("body", b""))
                whole = bool(length) and sum(map(len, answer)) >= length[0]
                if not logged and (whole or not message.get("more_body", False)):
                    # before the message that ends the answer: a client that has the whole
                    # answer finds it logged. MLflow's app sends the body with more_body
                    # and then an empty last message, so the end is the Content-Length.
                    log()
            await send(message)

        await self.app(scope, receive_logged, send_logged)
        if not logged:  # the app ended without a whole answer
            log()

    def write(self, headers: dict, body: bytes, status: int, answer: bytes) -> None:
        record = {
            "time": round(time.time(), 6),
            "request_id": headers.get("x-request-id"),
            "role": headers.get("x-endpoint-role", "direct"),
            "version": self.version,
            "status": status,
        }
        try:
            rows = json.loads(body)["dataframe_split"]
            record |= {"columns": rows["columns"], "data": rows["data"]}
        except (ValueError, KeyError, TypeError):
            record |= {"columns": None, "data": None}  # logged all the same: it was asked
        try:
            record["predictions"] = json.loads(answer)["predictions"] if status == 200 else None
        except (ValueError, KeyError, TypeError):
            record["predictions"] = None
        os.write(self.fd, (json.dumps(record, separators=(",", ":")) + "\n").encode())


def build():
    """MLflow's scoring app for the model in this process's environment, logged."""
    from mlflow.pyfunc.scoring_server.app import app as scoring_app

    return Logged(scoring_app, os.environ[LOG_ENV], os.environ[VERSION_ENV])


if os.environ.get(LOG_ENV):  # imported by uvicorn in a server the endpoint started
    app = build()
