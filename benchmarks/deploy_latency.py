"""Automated deploy lead time, and serving latency against in-process predict.

    .venv/bin/python benchmarks/deploy_latency.py [--deploys 3] [--requests 500] [--starts 3]

Lead time = gate + promote + scoring server ready + smoke test (`serving.deploy`), for
`--deploys` passing challengers in a fresh workspace. Latency = `--requests` sequential
single-row POSTs to MLflow's scoring server against `pyfunc.predict` on the same
rows in-process. Server start = seconds until `/ping` answers, `--starts` times each,
alternating: `serving.ScoringServer`'s `direct` launcher forked from the warm template (what
`mlops-workbook deploy` and headless runs do), the same started the usual way, and the
`mlflow models serve --env-manager local` command itself. `mlops-workbook deploy` enables
warm starts, so this script does too: the first deploy pays for the template's imports,
later ones fork from it. If notebook 02's checklist.json exists in the workspace (run
`mlops-workbook run 02` first), the manual path's measured steps are printed beside it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

import numpy as np

os.environ.setdefault("MLOPS_WORKBOOK_HOME", tempfile.mkdtemp(prefix="bench-deploy-"))

from mlops_helpers import config, etl, registry, serving, tracking, training  # noqa: E402
from mlops_helpers.workbook import warmstart  # noqa: E402

NAME = "viewability"


def lead_times(n: int, eval_frame) -> list[dict[str, float]]:
    """Deploy ``n`` passing challengers; return each deploy's seconds per step."""
    table = etl.build_training_table(42, 2000, "2026-01-05", 3)
    out = []
    for i in range(n):
        result = training.fit_and_evaluate(table, 42 + i)
        version = registry.register(tracking.log_training(result, f"bench {i}"), NAME)
        report = serving.deploy(NAME, version, eval_frame)
        if report.status != "deployed":
            raise SystemExit(f"deploy {i} did not deploy: {report.message}")
        out.append(report.seconds)
    return out


def latencies(rows, n: int) -> tuple[list[float], list[float]]:
    """Milliseconds per single-row request: over HTTP, and in-process pyfunc predict."""
    mlflow = tracking.import_mlflow()
    model = mlflow.pyfunc.load_model(f"models:/{NAME}@{registry.CHAMPION}")
    bodies = [serving.request_body(rows.iloc[[i % len(rows)]]) for i in range(n)]
    frames = [rows.iloc[[i % len(rows)]] for i in range(n)]
    http, local = [], []
    with serving.ScoringServer(f"models:/{NAME}@{registry.CHAMPION}") as server:
        url = f"{server.url}/invocations"
        for body in bodies[:20]:  # warm-up
            serving.post(url, body)
        for body in bodies:
            start = time.perf_counter()
            status, _ = serving.post(url, body)
            http.append((time.perf_counter() - start) * 1000)
            assert status == 200
    for frame in frames[:20]:
        model.predict(frame)
    for frame in frames:
        start = time.perf_counter()
        model.predict(frame)
        local.append((time.perf_counter() - start) * 1000)
    return http, local


STARTS = {  # label: (launcher, warm starts on)
    "direct, forked": ("direct", "1"),
    "direct": ("direct", "0"),
    "mlflow-cli": ("mlflow-cli", "0"),
}


def server_starts(n: int) -> dict[str, list[float]]:
    """Seconds until ``/ping`` answers, ``n`` times per way of starting, alternating."""
    times: dict[str, list[float]] = {label: [] for label in STARTS}
    for _ in range(n):
        for label, values in times.items():
            launcher, warm = STARTS[label]
            os.environ[warmstart.SWITCH] = warm
            server = serving.ScoringServer(f"models:/{NAME}@{registry.CHAMPION}", launcher=launcher)
            start = time.perf_counter()
            with server:
                values.append(time.perf_counter() - start)
    os.environ[warmstart.SWITCH] = "1"
    return times


def pct(values: list[float], q: float) -> float:
    """The q-th percentile."""
    return float(np.percentile(values, q))


def main() -> int:
    """Measure and print."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--deploys", type=int, default=3)
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--starts", type=int, default=3)
    args = parser.parse_args()
    warmstart.enable()
    tracking.configure_tracking(experiment="bench")
    eval_frame = etl.build_training_table(42, 2000, "2026-01-08", 1)
    steps = lead_times(args.deploys, eval_frame)
    totals = [sum(s.values()) for s in steps]
    print(f"command: {' '.join(sys.argv)}")
    print(
        f"\ndeploy lead time over {len(totals)} deploys (s): median {statistics.median(totals):.2f}"
        f", min {min(totals):.2f}, max {max(totals):.2f}"
    )
    for step in steps[0]:
        values = [s[step] for s in steps]
        print(f"  {step:<8} median {statistics.median(values):6.2f} s")
    http, local = latencies(eval_frame.loc[:, list(training.FEATURES)], args.requests)
    print(f"\nsingle-row latency over {args.requests} sequential requests (ms):")
    print(f"  {'':<22} {'p50':>8} {'p99':>8}")
    print(f"  {'HTTP scoring server':<22} {pct(http, 50):8.2f} {pct(http, 99):8.2f}")
    print(f"  {'in-process pyfunc':<22} {pct(local, 50):8.2f} {pct(local, 99):8.2f}")
    print(
        f"  ratio HTTP / in-process: p50 {pct(http, 50) / pct(local, 50):.1f}x, "
        f"p99 {pct(http, 99) / pct(local, 99):.1f}x"
    )
    starts = server_starts(args.starts)
    print(f"\nscoring server start, until /ping answers, {args.starts} each (s):")
    for label, values in starts.items():
        print(
            f"  {label:<15} median {statistics.median(values):6.2f}  "
            f"min {min(values):6.2f}  max {max(values):6.2f}"
        )
    forked, direct, cli = (statistics.median(starts[k]) for k in STARTS)
    print(
        f"  ratio mlflow-cli / direct: {cli / direct:.2f}x; direct / forked: {direct / forked:.2f}x"
    )
    checklist = config.workspace_path() / "manual_deployment" / "checklist.json"
    if checklist.is_file():
        steps_manual = json.loads(checklist.read_text())
        total = sum(s["seconds"] for s in steps_manual)
        print(
            f"\nmanual path (notebook 02 checklist): {len(steps_manual)} steps, {total:.2f} s "
            "of measured work, plus the human time between steps that no clock records"
        )
    else:
        print("\nmanual path: no checklist.json in this workspace (run notebook 02 to record it)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
