"""Live traffic for the endpoint lesson: concurrent clients calling an endpoint the whole
time, each request on a new connection (a fleet of independent callers), every answer kept
with its latency, status and the version that gave it, split into the phases the lesson
marks (a promotion, a canary, a rollback).

Threads, not processes: the clients mostly wait on the network. One request's latency is
measured from before its connection opens to after its answer is read.
"""

from __future__ import annotations

import http.client
import itertools
import threading
import time
import urllib.parse
from collections.abc import Sequence

import numpy as np
import pandas as pd

VERSION_HEADER = "X-Model-Version"  # the header the endpoint (nginx) adds to every answer


class Load:
    """``clients`` threads calling ``url``'s ``/invocations`` with ``bodies`` in turn until
    stopped; use as a context manager, ``mark`` each phase as it begins."""

    def __init__(self, url: str, bodies: Sequence[bytes], clients: int = 8, timeout: float = 30):
        parts = urllib.parse.urlsplit(url)
        self.host, self.port, self.timeout = parts.hostname, parts.port, timeout
        self.bodies = itertools.cycle(bodies)
        self.lock, self.stopped = threading.Lock(), threading.Event()
        self.calls: list[tuple] = []  # (phase, start, end, status, version)
        self.phase, self.started = "start", time.perf_counter()
        self.marks: list[tuple[float, str]] = [(0.0, "start")]
        self.threads = [threading.Thread(target=self._client, daemon=True) for _ in range(clients)]

    def _client(self) -> None:
        while not self.stopped.is_set():
            with self.lock:
                body, phase = next(self.bodies), self.phase
            start = time.perf_counter()
            try:
                conn = http.client.HTTPConnection(self.host, self.port, timeout=self.timeout)
                conn.request("POST", "/invocations", body, {"Content-Type": "application/json"})
                resp = conn.getresponse()
                resp.read()
                outcome = (resp.status, resp.getheader(VERSION_HEADER))
                conn.close()
            except (OSError, http.client.HTTPException) as exc:
                outcome = (type(exc).__name__, None)  # refused, reset, timed out: failed
            with self.lock:
                self.calls.append((phase, start, time.perf_counter(), *outcome))

    def mark(self, phase: str) -> None:
        """Requests sent from now on belong to ``phase``."""
        with self.lock:
            self.phase = phase
            self.marks.append((time.perf_counter() - self.started, phase))

    def __enter__(self) -> Load:
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stopped.set()
        for t in self.threads:
            t.join(timeout=60)

    def frame(self) -> pd.DataFrame:
        """One row per request: its phase, when it was sent (seconds since the load
        started), latency in ms, status (a number, or the error's name) and version."""
        with self.lock:
            calls = list(self.calls)
        frame = pd.DataFrame(calls, columns=["phase", "start", "end", "status", "version"])
        frame["sent_s"] = frame["start"] - self.started
        frame["latency_ms"] = (frame["end"] - frame["start"]) * 1000
        frame["failed"] = frame["status"] != 200
        return frame.drop(columns=["start", "end"])

    def summary(self) -> pd.DataFrame:
        """Per phase: requests, failed, p50 and p99 latency (ms), and each version's share
        of the answers."""
        frame = self.frame()
        rows = []
        for phase, part in frame.groupby("phase", sort=False):
            ok = part.loc[~part["failed"], "latency_ms"].to_numpy()
            shares = part["version"].dropna().value_counts(normalize=True).sort_index()
            rows.append(
                {
                    "phase": phase,
                    "requests": len(part),
                    "failed": int(part["failed"].sum()),
                    "p50_ms": float(np.percentile(ok, 50)) if len(ok) else None,
                    "p99_ms": float(np.percentile(ok, 99)) if len(ok) else None,
                    "answered_by": ", ".join(f"v{v} {s:.0%}" for v, s in shares.items()),
                }
            )
        return pd.DataFrame(rows).set_index("phase")
