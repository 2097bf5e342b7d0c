"""Dagster's overhead per step: one partition's asset materialized in process against the
step function it calls, called directly on the same inputs.

    .venv/bin/python benchmarks/orchestrator_overhead.py [--rows 2000] [--repeats 5]

Each step in turn, on one published world in a temp workspace: ``publish_day`` (a day
already published, so both sides find it unchanged: the ETL's skip by lineage, the
orchestrator's run around it), ``train_step`` (trains and registers a version each time on
both sides) and ``deploy_step`` (gate, serve, smoke test; the version already champion and
verified is the quick rerun path on both sides, so this measures the run, not the server).
Prints the median, min and max seconds of each, and the overhead (Dagster - direct) per step.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

START = "2026-01-05"
DAY = "2026-01-07"  # partition D: trains on 01-05 and 01-06 (window 2), gates on D


def timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def show(name: str, dagster: list[float], direct: list[float]) -> None:
    d, s = statistics.median(dagster), statistics.median(direct)
    print(
        f"{name:<14} dagster {d:6.2f} s (min {min(dagster):.2f}, max {max(dagster):.2f})   "
        f"direct {s:6.2f} s (min {min(direct):.2f}, max {max(direct):.2f})   "
        f"overhead {d - s:+.2f} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    root = Path(tempfile.mkdtemp(prefix="bench-orchestrator-"))
    os.environ["MLOPS_WORKBOOK_HOME"] = str(root / "ws")
    settings_file = root / "orchestrator.yaml"
    settings_file.write_text(
        f'seed: 1\nn_rows: {args.rows}\nmodel_name: bench-orchestrator\nstart_day: "{START}"\n'
        "window: 2\nretries: 0\n"
    )
    import dagster as dg

    from mlops_helpers import steps
    from mlops_helpers.orchestration import definitions, home
    from mlops_helpers.orchestration.backfill import QUIET
    from mlops_helpers.orchestration.settings import load_settings

    settings = load_settings(settings_file)
    job = definitions.build_definitions(settings).resolve_job_def(definitions.JOB)
    instance = home.instance()
    for day in (START, "2026-01-06", DAY):  # warm up: publish, train, deploy once
        assert job.execute_in_process(
            partition_key=day, instance=instance, run_config=QUIET
        ).success
    published = {
        d: steps.publish_day(settings.seed, settings.n_rows, d) for d in (START, "2026-01-06", DAY)
    }
    warehouse = published[DAY]["warehouse"]
    train = [{"day": d, "fingerprint": published[d]["fingerprint"]} for d in (START, "2026-01-06")]
    gate = [{"day": DAY, "fingerprint": published[DAY]["fingerprint"]}]
    trained = steps.train_step(warehouse, train, settings.model_name, settings.seed,
                               experiment=definitions.EXPERIMENT)  # fmt: skip
    steps.deploy_step(warehouse, gate, settings.model_name, trained["model_version"])

    def asset(name: str):
        return lambda: job.execute_in_process(
            partition_key=DAY, instance=instance, run_config=QUIET,
            asset_selection=[dg.AssetKey(name)],
        )  # fmt: skip

    last = {}

    def direct_train():
        last["v"] = steps.train_step(warehouse, train, settings.model_name, settings.seed,
                                     experiment=definitions.EXPERIMENT)["model_version"]  # fmt: skip

    cases = {
        "publish_day": (asset("published_day"),
                        lambda: steps.publish_day(settings.seed, settings.n_rows, DAY)),
        "train_step": (asset("trained_model"), direct_train),
        "deploy_step": (asset("champion"), None),
    }  # fmt: skip
    print(f"{sys.executable} benchmarks/orchestrator_overhead.py --rows {args.rows} "
          f"--repeats {args.repeats}")  # fmt: skip
    print(f"one partition ({DAY}, {args.rows} rows a day, window 2), {args.repeats} repeats each")
    for name, (on_dagster, direct) in cases.items():
        if name == "deploy_step":
            # the champion asset deploys what trained_model[D] stored last: make it champion
            # once, then both sides take the quick rerun path of that same version
            asset("champion")()
            stored = instance.fetch_materializations(
                dg.AssetRecordsFilter(asset_key=dg.AssetKey("trained_model"),
                                      asset_partitions=[DAY]), limit=1,
            ).records[0].asset_materialization.metadata["model_version"].value  # fmt: skip

            def direct(v=stored):
                steps.deploy_step(warehouse, gate, settings.model_name, v)

        on = [timed(on_dagster) for _ in range(args.repeats)]
        off = [timed(direct) for _ in range(args.repeats)]
        show(name, on, off)


if __name__ == "__main__":
    main()
