"""The scoring server under load: requests per second and p50/p99 latency by concurrency.

    .venv/bin/python benchmarks/serving_load.py [--clients 1,32,200] [--requests 2000]
        [--seconds 15] [--processes 1]

Trains and registers a small model in a throwaway workspace (removed at the end; the
caller's ``MLOPS_WORKBOOK_HOME`` and ``MLOPS_TRACKING_URI`` are never used), starts
MLflow's scoring server on 127.0.0.1 (`serving.ScoringServer`, as `mlops-workbook serve` does) and, for each number
of concurrent clients, sends single-row ``/invocations`` requests over keep-alive
``http.client`` connections until ``--requests`` are done or ``--seconds`` have passed.
A failed request is a non-200 answer, an answer without predictions, a timeout or a
connection error; the required result is none, and ``/ping`` answering afterwards.
``--processes N`` splits the clients over N forked client processes instead of threads
in this one. The CPU each side used is printed beside the figures: a side whose CPU is
near its limit (one core for a single Python process) is the bottleneck. Exits 1 when a
request failed or ``/ping`` no longer answers, so `make bench` marks the result FAILED.
"""

from __future__ import annotations

import argparse
import http.client
import multiprocessing
import multiprocessing.synchronize
import os
import shutil
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

NAME = "viewability"
REQUEST_TIMEOUT = 10.0  # seconds; a request slower than this counts as failed


@dataclass
class Tally:
    """What a group of clients saw: latencies of good answers, failures, time and CPU."""

    latencies_ms: list[float] = field(default_factory=list)
    failures: dict[str, int] = field(default_factory=dict)
    start: float = float("inf")
    end: float = 0.0
    cpu_s: float = 0.0

    def fail(self, why: str) -> None:
        """Count one failed request by kind."""
        self.failures[why] = self.failures.get(why, 0) + 1

    def merge(self, other: Tally) -> None:
        """Add another group's results to these."""
        self.latencies_ms += other.latencies_ms
        for why, n in other.failures.items():
            self.failures[why] = self.failures.get(why, 0) + n
        self.start, self.end = min(self.start, other.start), max(self.end, other.end)
        self.cpu_s += other.cpu_s


class Budget:
    """A shared request count and deadline, so clients stop together."""

    def __init__(self, requests: int, seconds: float) -> None:
        self.left, self.seconds, self.deadline = requests, seconds, 0.0
        self.lock = threading.Lock()

    def take(self) -> bool:
        """Claim one request; False once the count or the time is used up."""
        with self.lock:
            if self.left <= 0 or time.perf_counter() > self.deadline:
                return False
            self.left -= 1
            return True


def one_request(conn: http.client.HTTPConnection, body: bytes) -> str | None:
    """POST one body on ``conn``; None when it was answered well, else why it failed."""
    try:
        conn.request("POST", "/invocations", body, {"Content-Type": "application/json"})
        resp = conn.getresponse()
        data = resp.read()
    except TimeoutError:
        return "timeout"
    except (OSError, http.client.HTTPException) as exc:
        return type(exc).__name__
    if resp.status != 200:
        return f"HTTP {resp.status}"
    return None if data.startswith(b'{"predictions"') else "no predictions"


def client(port: int, bodies: list[bytes], budget: Budget, gate: threading.Barrier,
           out: Tally, lock: threading.Lock) -> None:  # fmt: skip
    """One client: connect and warm up, wait for the others, then send until the budget ends."""
    mine = Tally()
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT)
    if why := one_request(conn, bodies[0]):  # opens the keep-alive connection
        mine.fail(why)
    try:
        gate.wait(timeout=60)
    except threading.BrokenBarrierError:
        mine.fail("never started")
        budget.left = 0
    i = 0
    while budget.take():
        body = bodies[i % len(bodies)]
        i += 1
        start = time.perf_counter()
        why = one_request(conn, body)
        if why is None:
            mine.latencies_ms.append((time.perf_counter() - start) * 1000)
        else:
            mine.fail(why)
            conn.close()  # a fresh connection for the next request
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=REQUEST_TIMEOUT)
    mine.end = time.perf_counter()
    conn.close()
    with lock:
        out.merge(mine)


def run_clients(port: int, bodies: list[bytes], clients: int, requests: int, seconds: float,
                on_start: Callable[[], object] = lambda: None) -> Tally:  # fmt: skip
    """Run ``clients`` threads in this process sharing ``requests`` and ``seconds``.

    The clock starts once every client is connected and warmed up, right after
    ``on_start`` (which samples the server's CPU, or waits for the other client processes).
    """
    budget, out, lock = Budget(requests, seconds), Tally(), threading.Lock()

    def go() -> None:  # runs once, before any client is released
        on_start()
        out.start = time.perf_counter()
        budget.deadline = out.start + seconds

    gate = threading.Barrier(clients + 1, action=go)
    threads = [
        threading.Thread(target=client, args=(port, bodies, budget, gate, out, lock), daemon=True)
        for _ in range(clients)
    ]
    for thread in threads:
        thread.start()
    cpu = time.process_time()
    try:
        gate.wait(timeout=60)
    except threading.BrokenBarrierError:
        out.fail("never started")
    for thread in threads:
        thread.join(timeout=seconds + REQUEST_TIMEOUT + 60)
    out.cpu_s = time.process_time() - cpu
    if any(t.is_alive() for t in threads):
        out.fail("client still running")
    return out


def _child(port: int, bodies: list[bytes], clients: int, requests: int, seconds: float,
           ready: multiprocessing.synchronize.Barrier, queue: multiprocessing.Queue) -> None:  # fmt: skip
    """A forked client process: run its share of the clients, send back what they saw."""
    tally = run_clients(port, bodies, clients, requests, seconds, lambda: ready.wait(60))
    queue.put(tally)


def run_processes(port: int, bodies: list[bytes], clients: int, requests: int, seconds: float,
                  processes: int, on_start: Callable[[], object]) -> Tally:  # fmt: skip
    """Split the clients and requests over ``processes`` forked client processes."""
    ctx = multiprocessing.get_context("fork")
    n = min(processes, clients)  # no process without a client
    shares = [
        (clients // n + (i < clients % n), requests // n + (i < requests % n)) for i in range(n)
    ]
    shares = [(c, r) for c, r in shares if r]
    queue, ready = ctx.Queue(), ctx.Barrier(len(shares) + 1)
    children = [
        ctx.Process(target=_child, args=(port, bodies, c, r, seconds, ready, queue), daemon=True)
        for c, r in shares
    ]
    out = Tally()
    try:
        for child in children:
            child.start()
        ready.wait(timeout=60)  # every client of every process warmed up
        on_start()
        for _ in children:
            out.merge(queue.get(timeout=seconds + REQUEST_TIMEOUT + 60))
    finally:
        for child in children:
            child.join(timeout=5)
            if child.is_alive():
                child.kill()
                child.join(timeout=5)
    return out


def tree_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) used so far by process ``pid`` and its descendants."""
    stats: dict[int, tuple[int, float]] = {}  # pid: (parent pid, CPU ticks)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                fields = f.read().rsplit(")", 1)[1].split()
        except OSError:
            continue
        # the fields after "(comm)": state ppid pgrp session tty tpgid flags minflt cminflt
        # majflt cmajflt utime stime
        stats[int(entry)] = (int(fields[1]), int(fields[11]) + int(fields[12]))
    tree, grew = {pid}, True
    while grew:
        grew = False
        for child, (parent, _) in stats.items():
            if parent in tree and child not in tree:
                tree.add(child)
                grew = True
    total = sum(stats[p][1] for p in tree if p in stats)
    return total / os.sysconf("SC_CLK_TCK")


def pings(port: int) -> bool:
    """True when the server answers ``/ping`` with 200 on a new connection."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/ping")
        return conn.getresponse().status == 200
    except (OSError, http.client.HTTPException):
        return False
    finally:
        conn.close()


def model_and_rows() -> tuple[str, list[bytes]]:
    """Train and register a small model; return its URI and single-row request bodies."""
    from mlops_helpers import etl, registry, serving, tracking, training

    # The throwaway store, even when $MLOPS_TRACKING_URI names a real server.
    tracking.configure_tracking(tracking.default_tracking_uri(), experiment="bench")
    table = etl.build_training_table(42, 2000, "2026-01-05", 3)
    version = registry.register(
        tracking.log_training(training.fit_and_evaluate(table, 42), "load"), NAME
    )
    rows = etl.build_training_table(42, 500, "2026-01-08", 1).loc[:, list(training.FEATURES)]
    bodies = [serving.request_body(rows.iloc[[i]]) for i in range(min(200, len(rows)))]
    return f"models:/{NAME}/{version}", bodies


def run_level(pid: int, port: int, bodies: list[bytes], clients: int,
              args: argparse.Namespace) -> tuple[Tally, float]:  # fmt: skip
    """One load level; what the clients saw and the server's CPU seconds meanwhile."""
    cpu: list[float] = []

    def sample() -> None:
        cpu.append(tree_cpu_s(pid))

    if args.processes > 1:
        tally = run_processes(
            port, bodies, clients, args.requests, args.seconds, args.processes, sample
        )
    else:
        tally = run_clients(port, bodies, clients, args.requests, args.seconds, sample)
    return tally, tree_cpu_s(pid) - (cpu[0] if cpu else float("nan"))


def measure(args: argparse.Namespace) -> int:
    """Start the server, run each load level, print the table; 1 if anything failed."""
    from mlops_helpers import serving
    from mlops_helpers.workbook import warmstart

    uri, bodies = model_and_rows()
    levels = [int(c) for c in args.clients.split(",")]
    rows, failed = [], 0
    with serving.ScoringServer(uri) as server:
        pid = server.process.pid
        for clients in levels:
            tally, server_cpu = run_level(pid, server.port, bodies, clients, args)
            wall = max(tally.end - tally.start, 1e-9)
            lat = tally.latencies_ms or [float("nan")]
            n_failed = sum(tally.failures.values())
            failed += n_failed
            rows.append(
                (clients, len(tally.latencies_ms), n_failed, len(tally.latencies_ms) / wall,
                 np.percentile(lat, 50), np.percentile(lat, 99), wall,
                 tally.cpu_s / wall, server_cpu / wall,
                 ", ".join(f"{k} {v}" for k, v in sorted(tally.failures.items())))
            )  # fmt: skip
        alive = server.process is not None and server.process.poll() is None
        alive = alive and pings(server.port)
    way = f"{args.processes} client processes" if args.processes > 1 else "threads, 1 process"
    print(f"command: .venv/bin/python benchmarks/serving_load.py {' '.join(sys.argv[1:])}")
    print(
        f"single-row POST /invocations to one scoring server ({uri}, uvicorn, 1 worker, "
        f"warm start {'on' if warmstart.enabled() else 'off'}) on 127.0.0.1; clients: "
        f"{way}, keep-alive http.client; up to {args.requests} requests or {args.seconds:g} s "
        "per level; CPU in cores used (1.00 = one core busy for the whole level)"
    )
    print(
        f"{'clients':>7} {'ok':>6} {'failed':>6} {'req/s':>7} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'wall s':>6} {'client CPU':>10} {'server CPU':>10}"
    )
    for c, ok, bad, rps, p50, p99, wall, ccpu, scpu, why in rows:
        print(
            f"{c:>7} {ok:>6} {bad:>6} {rps:>7.0f} {p50:>7.2f} {p99:>7.2f} {wall:>6.1f} "
            f"{ccpu:>10.2f} {scpu:>10.2f}" + (f"  ({why})" if why else "")
        )
    print(f"failed requests: {failed} (required: 0); /ping afterwards: {'200' if alive else 'NO'}")
    return 0 if failed == 0 and alive else 1


def main() -> int:
    """Parse the arguments, measure in a throwaway workspace, remove it."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", default="1,32,200", help="comma-separated levels")
    parser.add_argument("--requests", type=int, default=2000, help="per level, at most")
    parser.add_argument("--seconds", type=float, default=15.0, help="per level, at most")
    parser.add_argument("--processes", type=int, default=1, help="client processes")
    args = parser.parse_args()
    try:
        levels = [int(c) for c in args.clients.split(",")]
    except ValueError:
        parser.error(f"--clients {args.clients!r}: give whole numbers separated by commas")
    if not levels or min(levels) < 1 or max(levels) > 1000:
        parser.error(f"--clients {args.clients!r}: each level must be from 1 to 1000")
    if args.requests < 1 or not 0 < args.seconds <= 300 or args.processes < 1:
        parser.error("--requests and --processes must be at least 1, --seconds 0 to 300")
    home = tempfile.mkdtemp(prefix="bench-load-")
    os.environ["MLOPS_WORKBOOK_HOME"] = home
    try:
        return measure(args)
    finally:
        shutil.rmtree(home, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
