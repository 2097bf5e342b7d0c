"""The production endpoint under load, through a switch and a rollback, against calling the
scoring server directly.

    .venv/bin/python benchmarks/endpoint_load.py [--clients 50] [--requests 10000]

In a throwaway workspace: a small model registered twice (versions 1 and 2), version 1
champion, ``endpoint.Endpoint`` started on it (nginx in front of one scoring server per
version). First ``--requests`` single-row requests from ``--clients`` concurrent clients
straight to version 1's scoring server; then as many through the endpoint, during which the
endpoint switches to version 2 (a third of the way) and rolls back to version 1 (two
thirds). Each request opens its own connection (independent callers). Prints p50/p99 both
ways and their ratio (goal: within 1.5x), the failed requests (goal: 0), and how long the
switch and the rollback took from the call until every new request was answered by the new
version (goal for the rollback: within 1 s). Exits 1 when a request failed.
"""

from __future__ import annotations

import argparse
import http.client
import os
import shutil
import sys
import tempfile
import threading
import time
import urllib.parse

import numpy as np


def load(url: str, body: bytes, clients: int, requests: int, during=None) -> dict:
    """Send ``requests`` from ``clients`` threads; ``during(done)`` runs beside them."""
    parts = urllib.parse.urlsplit(url)
    lock, sent, calls = threading.Lock(), [0], []

    def client() -> None:
        while True:
            with lock:
                if sent[0] >= requests:
                    return
                sent[0] += 1
            start = time.perf_counter()
            try:
                conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=10)
                conn.request("POST", "/invocations", body, {"Content-Type": "application/json"})
                resp = conn.getresponse()
                resp.read()
                outcome = (resp.status, resp.getheader("X-Model-Version"))
                conn.close()
            except (OSError, http.client.HTTPException) as exc:
                outcome = (type(exc).__name__, None)
            end = time.perf_counter()
            with lock:
                calls.append((start, end, *outcome))

    threads = [threading.Thread(target=client, daemon=True) for _ in range(clients)]
    for t in threads:
        t.start()
    marks = during(lambda: len(calls)) if during else {}
    for t in threads:
        t.join()
    return {"calls": calls, **marks}


def quantiles(calls) -> tuple[float, float]:
    ms = np.array([(end - start) * 1000 for start, end, status, _ in calls if status == 200])
    return float(np.percentile(ms, 50)), float(np.percentile(ms, 99))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--requests", type=int, default=10_000)
    args = parser.parse_args()
    root = tempfile.mkdtemp(prefix="bench-endpoint-")
    os.environ["MLOPS_WORKBOOK_HOME"] = root
    os.environ.pop("MLOPS_TRACKING_URI", None)
    from mlops_helpers import endpoint, etl, registry, serving, tracking, training

    tracking.configure_tracking(experiment="bench-endpoint")
    table = etl.build_training_table(1, 2000, "2026-01-05", 3)
    run = tracking.log_training(training.fit_and_evaluate(table, 1), "bench")
    first, second = (registry.register(run, "bench-endpoint") for _ in range(2))
    registry.set_alias("bench-endpoint", "champion", first, "benchmark")
    body = serving.request_body(serving.example_frame().head(1))
    live = endpoint.Endpoint("bench-endpoint").start()
    try:
        direct = load(live.servers[first].url, body, args.clients, args.requests)

        def switch_and_roll_back(done) -> dict:
            while done() < args.requests // 3:
                time.sleep(0.005)
            switch = live.switch(second)
            while done() < 2 * args.requests // 3:
                time.sleep(0.005)
            called = time.perf_counter()
            rollback = live.rollback()
            return {"switch_s": switch, "rollback_s": rollback, "rolled_back_at": called + rollback}

        through = load(live.url, body, args.clients, args.requests, switch_and_roll_back)
    finally:
        live.stop()
        shutil.rmtree(root, ignore_errors=True)
    calls = through["calls"]
    failed = [c for c in calls if c[2] != 200]
    late = [c for c in calls if c[0] > through["rolled_back_at"] and c[3] != first]
    (d50, d99), (e50, e99) = quantiles(direct["calls"]), quantiles(calls)
    seen = {v for *_, v in calls}
    print(
        f"{args.clients} clients, {len(calls)} requests through the endpoint (a new connection each)"
    )
    print(f"direct to the scoring server   p50 {d50:6.1f} ms   p99 {d99:6.1f} ms")
    print(f"through the endpoint (nginx)   p50 {e50:6.1f} ms   p99 {e99:6.1f} ms")
    print(
        f"ratio endpoint/direct          p50 {e50 / d50:.2f}x   p99 {e99 / d99:.2f}x (goal: within 1.5x)"
    )
    print(
        f"failed requests: {len(failed)} of {len(calls)} (goal: 0); versions seen: {sorted(seen)}"
    )
    print(f"switch to version {second}: {through['switch_s']:.3f} s; rollback to version {first}: "
          f"{through['rollback_s']:.3f} s (goal: within 1 s)")  # fmt: skip
    print(f"requests sent after the rollback returned but answered by another version: {len(late)}")
    return 1 if failed or late else 0


if __name__ == "__main__":
    sys.exit(main())
