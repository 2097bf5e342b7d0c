"""The ``mlops-workbook`` command: run, params, refresh, deploy, score, serve, rollout,
rollback, pipeline, batch, tracking-server, orchestrator, backfill and doctor."""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import Any

# The one import at the top is pandas-free (tests/unit/test_cli_start.py): --help and a
# wrong argument answer before any command's heavy imports, each made where it is needed.
from mlops_helpers import parameters
from mlops_helpers.parameters import ParameterError, check_name, check_parameters


def _load_param_file(path: str) -> dict[str, Any]:
    """The NAME: VALUE mapping of a ``-f`` file, read by the one YAML loader of the workbook
    (:func:`mlops_helpers.workbook.specs.read_yaml`: line numbers, duplicate keys refused)."""
    from mlops_helpers.workbook import specs

    file = Path(path)
    if not file.is_file():
        raise ParameterError(f"parameter file {path} not found; pass an existing YAML file to -f")
    data = specs.clean(specs.read_yaml(file))
    data = {} if data is None else data
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise ParameterError(
            f"parameter file {path} must be a mapping of NAME: VALUE, got {type(data).__name__}"
        )
    return data


def _positive_int(text: str) -> int:
    """argparse type: an int of at least 1, or a message that says so."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a whole number of at least 1, got {text!r}")
    return value


def _port(text: str) -> int:
    """argparse type: a TCP port from 1 to 65535, or a message that says so."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 65535:
        raise argparse.ArgumentTypeError(f"must be a port from 1 to 65535, got {text!r}")
    return value


def _worker_count(text: str) -> int:
    """argparse type: a number of Dask workers from 1 to 64, or a message that says so."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if not 1 <= value <= 64:
        raise argparse.ArgumentTypeError(
            f"must be a whole number from 1 to 64, got {text!r}; leave it out for one per core"
        )
    return value


def claim_workspace() -> None:
    """Hold the workspace for this command alone (exit 2 naming the holder if it is busy)."""
    from mlops_helpers.workbook import workspace_lock

    workspace_lock.claim()


def _selected(names: list[str]) -> list[Path]:
    from mlops_helpers.workbook import curriculum

    return [curriculum.find_notebook(n) for n in names] if names else curriculum.list_notebooks()


def cmd_run(args: argparse.Namespace) -> int:
    """Run the selected notebooks (all by default) in order; exit 1 naming the failure."""
    from mlops_helpers.workbook import execute, report

    notebooks = _selected(args.notebooks)
    file_values: dict[str, Any] = {}
    for f in args.param_file or []:
        file_values.update(_load_param_file(f))
    label = f"-f {Path(args.param_file[-1]).name}" if args.param_file else "-f"
    plan = parameters.plan_parameters(notebooks, dict(args.param or []), file_values, label)
    claim_workspace()
    run_dir = execute.new_run_dir()
    print(f"run folder: {run_dir}", flush=True)
    start = time.perf_counter()
    results = execute.run_workbook(
        notebooks, plan, run_dir, progress=not args.no_progress, jobs=args.jobs,
        render=not args.no_report,
    )  # fmt: skip
    print(report.summary_table(results, wall=time.perf_counter() - start))
    if not args.no_report:
        print(f"report: {report.write_report(results, run_dir)}")
    failed = [r for r in results if r.status == "failed"]
    if failed:
        r = failed[0]
        print(f"\nFAILED {r.notebook} at {r.error}", file=sys.stderr)
        print(f"executed notebook kept at {r.output}", file=sys.stderr)
        return 1
    print(f"\nall {len(results)} notebooks ran; executed copies in {run_dir}")
    return 0


def cmd_params(args: argparse.Namespace) -> int:
    """Print a notebook's parameters: name, type, default, help."""
    from mlops_helpers.workbook import curriculum

    nb = curriculum.find_notebook(args.notebook)
    specs = parameters.notebook_parameters(nb)
    print(f"{nb.stem}: {len(specs)} parameters")
    for s in specs.values():
        print(f"  {s.name:<24} {s.kind:<6} default {s.default:<14} {s.help}")
    return 0


def cmd_refresh(args: argparse.Namespace) -> int:
    """Re-execute notebooks in place so their stored outputs match what nbval checks."""
    from mlops_helpers.workbook import refresh

    for nb in _selected(args.notebooks):
        print(f"refreshing {nb.name}", flush=True)
        refresh.refresh_notebook(nb)
    return 0


def _version(text: str) -> str:
    """argparse type: a model version, a whole number of at least 1, or a message that says so."""
    if not (text.isdigit() and int(text) >= 1):
        raise argparse.ArgumentTypeError(
            f"must be a version number of at least 1, got {text!r}; leave it out to deploy "
            "the challenger"
        )
    return str(int(text))


def cmd_deploy(args: argparse.Namespace) -> int:
    """Gate a version, serve it from its version URI, smoke-test it, and only then promote it;
    one line per step as it goes."""
    import datetime as dt

    # the same rules as the notebooks' parameters, checked before anything is written or
    # imported: a wrong argument is refused before pandas or MLflow load
    check_name("--model", args.model)
    check_name("--experiment", args.experiment)
    check_parameters(seed=args.seed, n_rows=args.n_rows, start_day=args.eval_day)
    if args.train and args.version:
        raise ParameterError(
            f"--train registers a new version and deploys it, so --version {args.version} "
            "is not used: pass one of them"
        )
    from mlops_helpers import etl, registry, serving, tracking, training

    claim_workspace()
    tracking.configure_tracking(args.tracking_uri, experiment=args.experiment)
    version = args.version
    if version is not None:
        version = registry.check_version(args.model, version)
        serving.check_model_files(args.model, version)
    if args.train:
        days = 3
        start = (dt.date.fromisoformat(args.eval_day) - dt.timedelta(days=days)).isoformat()
        table = etl.build_training_table(args.seed, args.n_rows, start, days)
        result = training.fit_and_evaluate(table, args.seed, C=args.C)
        run_id = tracking.log_training(result, run_name=f"cli seed={args.seed} C={args.C}")
        version = registry.register(run_id, args.model, reason="mlops-workbook deploy --train")
        print(f"trained and registered {args.model} version {version} as challenger")
    if version is None:
        version = registry.current_version(args.model, registry.CHALLENGER)
        if version is None:
            champion = registry.current_version(args.model, registry.CHAMPION)
            now = f"; its champion is version {champion}" if champion else ""
            raise ParameterError(
                f"model {args.model!r} has no challenger to deploy{now}; pass --version N, "
                "or --train to train and register one first"
            )
    eval_frame = etl.build_training_table(args.seed, args.n_rows, args.eval_day, 1)
    print(f"deploying {args.model} version {version}: gate, serve, smoke test, promote", flush=True)
    report = serving.deploy(
        args.model, str(version), eval_frame, progress=lambda line: print(line, flush=True)
    )
    if report.gate:
        print(f"\ngate ({report.gate.summary()}):")
        print(report.gate.table().to_string())
    if report.smoke:
        print("\nsmoke test:")
        print(report.smoke.table().to_string())
    steps = ", ".join(f"{k} {v:.1f} s" for k, v in report.seconds.items())
    print(f"\nsteps: {steps}; lead time {report.lead_time:.1f} s")
    print(f"{report.status.upper()}: {report.message}")
    if report.failed_step:
        print(f"failed step: {report.failed_step} (exit code {report.exit_code})", file=sys.stderr)
    return report.exit_code


def cmd_score(args: argparse.Namespace) -> int:
    """Publish a day's impressions without labels and score them with a registered version
    into the day's prediction partition; a rerun of the same day and version changes nothing."""
    check_name("--model", args.model)  # before pandas and MLflow load
    if args.version is None:
        check_name("--alias", args.alias)
    check_parameters(seed=args.seed, n_rows=args.n_rows, start_day=args.day, fault=args.fault)
    from mlops_helpers import config, etl, scoring, tracking
    from mlops_helpers.validation import ContractError

    claim_workspace()
    tracking.configure_tracking(args.tracking_uri)
    version = scoring.resolve_version(args.model, args.version or args.alias)  # before writing
    world = etl.dataset(args.seed, args.n_rows, args.day, 1, args.fault)
    unlabelled, predictions = world.root / "unlabelled", world.root / "predictions"
    try:
        published = etl.run_day(world.raw, unlabelled, args.day, labelled=False)
    except ContractError as exc:
        raise scoring.ScoringError(
            f"day {args.day} cannot be scored, its impressions were blocked by their contract "
            f"({exc})"
        ) from None
    result = scoring.score_day(unlabelled, predictions, args.day, args.model, version)
    where = config.show_path(scoring.prediction_dir(predictions, args.day, version))
    print(
        f"{result.status}: day {args.day}, {published.rows_out} impressions published without "
        f"labels ({published.rows_quarantined} quarantined), scored by {args.model} version "
        f"{version} into {where}"
    )
    print(f"data fingerprint {result.data_fingerprint[:12]}, scored at {result.scored_at}")
    return 0


def cmd_serve(args: argparse.Namespace) -> int:
    """Serve ``models:/NAME@ALIAS`` on 127.0.0.1 until interrupted."""
    import signal

    check_name("--model", args.model)  # before pandas and MLflow load
    from mlops_helpers import registry, serving, tracking

    tracking.configure_tracking(args.tracking_uri)
    if args.endpoint:
        if args.alias != "champion":
            raise ParameterError(
                "--endpoint serves @champion and follows it (and the rollout): leave out --alias"
            )
        return _serve_endpoint(args)
    why = registry.describe(args.model, args.alias)
    server = serving.ScoringServer(f"models:/{args.model}@{args.alias}", port=args.port)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        with server:  # the server ends with this command, however it ends (ServerProcess)
            print(f"serving {args.model}@{args.alias} (version {why['version']}: {why['why']})")
            print(f"URL: {server.url}/invocations   (health: {server.url}/ping)")
            body = serving.request_body(serving.example_frame()).decode()
            print("example request:")
            print(
                f"  curl -s {server.url}/invocations -H 'Content-Type: application/json' -d '{body}'"
            )
            print("Ctrl-C to stop", flush=True)
            return _wait_until_interrupted(server)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM while it was starting: it was stopped
        print("stopping")
        return 0


def _serve_endpoint(args: argparse.Namespace) -> int:
    """The production endpoint: nginx in front of the champion's scoring server, following
    the registry (a promotion, a rollback, a canary or shadow rollout) every second, and
    restarting a scoring server that stopped, until interrupted."""
    import signal

    from mlops_helpers import config, endpoint, serving

    signal.signal(signal.SIGTERM, _interrupt)
    live = endpoint.Endpoint(args.model, port=args.port)
    try:
        with live:
            print(f"endpoint for {args.model}: {endpoint.describe(live.route)}")
            print(f"URL: {live.url}/invocations   (health: {live.url}/ping)")
            print(f"prediction log: {config.show_path(live.log_folder)}")
            body = serving.request_body(serving.example_frame()).decode()
            print(
                f"  curl -si {live.url}/invocations -H 'Content-Type: application/json' -d '{body}'"
            )
            print(
                "it follows the registry: mlops-workbook deploy, rollback and rollout change "
                "what it serves; Ctrl-C to stop",
                flush=True,
            )
            while True:
                time.sleep(1.0)
                if live.server.process.poll() is not None:
                    print(f"failed: nginx stopped:\n{live.log_tail()}", file=sys.stderr)
                    return 1
                try:
                    changed = live.follow()
                except endpoint.EndpointError as exc:
                    changed = f"refused: {exc}"
                if changed:
                    print(changed, flush=True)
    except KeyboardInterrupt:
        print("stopping")
        return 0


def _share(text: str) -> int:
    """argparse type: a canary share, a whole percent from 0 to 100."""
    try:
        value = int(text)
    except ValueError:
        value = -1
    if not 0 <= value <= 100:
        raise argparse.ArgumentTypeError(
            f"must be a whole percent from 0 to 100, got {text!r}; 0 sends the challenger "
            "nothing, 100 everything"
        )
    return value


def cmd_rollout(args: argparse.Namespace) -> int:
    """Record a canary, shadow or no rollout of the challenger; a running endpoint takes it."""
    check_name("--model", args.model)
    from mlops_helpers import endpoint, tracking

    tracking.configure_tracking(args.tracking_uri)
    if args.canary is not None:
        mode, share = "canary", args.canary
    else:
        mode, share = ("shadow" if args.shadow else "off"), 0
    route = endpoint.set_rollout(args.model, mode, share, args.version, args.reason)
    print(f"rollout of {args.model}: {endpoint.describe(route)}")
    print("a running endpoint (mlops-workbook serve --endpoint) takes it within a second")
    return 0


def cmd_rollback(args: argparse.Namespace) -> int:
    """Point @champion back at the version before its last move (the endpoint follows)."""
    check_name("--model", args.model)
    from mlops_helpers import registry, tracking

    tracking.configure_tracking(args.tracking_uri)
    version = registry.rollback(args.model, args.reason)
    print(f"{args.model}@champion is version {version} again ({args.reason})")
    return 0


def cmd_pipeline(args: argparse.Namespace) -> int:
    """Run a declared pipeline; exit 1 naming the failed step, notebook and cell."""
    from mlops_helpers.workbook import pipeline

    pipe = pipeline.load_pipeline(Path(args.file), dict(args.param or []))
    claim_workspace()
    run_dir = pipeline.latest_run_dir(pipe) if args.resume else None
    if args.resume and run_dir is None:
        raise ParameterError(f"--resume: pipeline {pipe.name!r} has no earlier run to resume")
    run_dir = run_dir or pipeline.new_run_dir(pipe)
    print(f"pipeline {pipe.name}: {' -> '.join(s.name for s in pipe.steps)}")
    print(f"run folder: {run_dir}", flush=True)
    results = pipeline.run_pipeline(
        pipe, run_dir, resume=args.resume, progress=not args.no_progress
    )
    width = max(len(r.step) for r in results)
    print(f"{'step':<{width}}  {'status':<8}  {'seconds':>7}")
    for r in results:
        print(f"{r.step:<{width}}  {r.status:<8}  {r.seconds:7.1f}")
    failed = [r for r in results if r.status == "failed"]
    if failed:
        print(f"\nFAILED step {failed[0].step}: {failed[0].error}", file=sys.stderr)
        print(f"fix it, then: mlops-workbook pipeline {args.file} --resume", file=sys.stderr)
        return 1
    return 0


def cmd_batch(args: argparse.Namespace) -> int:
    """Run a grid of parameters on Dask; exit 1 when any item failed (all are still run)."""
    from mlops_helpers.workbook import batch

    grid = batch.load_grid(Path(args.grid), dict(args.param or []))
    claim_workspace()
    print(f"batch {grid.name}: {len(grid.items)} items -> {grid.out_dir}", flush=True)
    results = batch.run_batch(
        grid, scheduler=args.scheduler, n_workers=args.workers, progress=not args.no_progress
    )
    counts = {s: sum(r.status == s for r in results) for s in ("ok", "done", "failed")}
    print(f"ok {counts['ok']}, already done {counts['done']}, failed {counts['failed']}")
    print(f"results: {grid.out_dir / 'results.csv'}  index: {grid.out_dir / 'index.html'}")
    for r in results:
        if r.status == "failed":
            print(f"FAILED {r.parameters}: {r.error}", file=sys.stderr)
    return 1 if counts["failed"] else 0


def cmd_tracking_server(args: argparse.Namespace) -> int:
    """Run a real `mlflow server` (sqlite backend, served artifacts) until interrupted."""
    import signal

    from mlops_helpers import tracking
    from mlops_helpers.config import show_path

    server = tracking.TrackingServer(port=args.port)  # PortInUse (exit 2) before anything
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        with server:  # the server ends with this command, however it ends (ServerProcess)
            print(f"MLflow tracking server: {server.url}")
            backend = show_path(Path(server.backend_uri.removeprefix("sqlite:///")))
            print(f"backend: sqlite {backend}  artifacts: {show_path(server.artifacts)}")
            print(
                f"use it: mlops-workbook run --tracking-uri {server.url}   (Ctrl-C to stop)",
                flush=True,
            )
            return _wait_until_interrupted(server)
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM while it was starting: it was stopped
        print("stopping")
        return 0


def _day(text: str) -> str:
    """argparse type: a day written YYYY-MM-DD, or a message that says so."""
    import datetime as dt

    try:
        return dt.date.fromisoformat(text).isoformat()
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"must be a day written YYYY-MM-DD, got {text!r}"
        ) from None


def cmd_orchestrator(args: argparse.Namespace) -> int:
    """Run the Dagster UI and daemon (``dagster dev``) on 127.0.0.1 over the daily pipeline's
    definitions, with DAGSTER_HOME in the workspace, until interrupted."""
    import signal
    import subprocess

    from mlops_helpers.orchestration import home, settings
    from mlops_helpers.workbook import processes

    loaded = settings.load_settings(args.settings)  # SpecError (exit 2) before anything
    processes.check_port_free(args.port)  # PortInUse (exit 2)
    claim_workspace()  # its runs publish, register and promote, as a pipeline does
    env = processes.venv_env(
        {
            **home.dagster_env(),
            settings.SETTINGS_ENV: loaded.source,
            "DAGSTER_DISABLE_TELEMETRY": "1",
        }
    )
    dagster = str(Path(sys.executable).parent / "dagster")
    command = [dagster, "dev", "-m", "mlops_helpers.orchestration.definitions",
               "-h", processes.HOST, "-p", str(args.port)]  # fmt: skip
    from mlops_helpers.config import show_path

    print(f"Dagster UI and daemon: http://{processes.HOST}:{args.port}   (Ctrl-C to stop)")
    print(
        f"DAGSTER_HOME: {show_path(Path(env['DAGSTER_HOME']))}  settings: {show_path(Path(loaded.source))}"
    )
    print(f"  {' '.join(['dagster', *command[1:]])}", flush=True)
    process = subprocess.Popen(command, env=env, cwd=env["DAGSTER_HOME"], start_new_session=True)
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        return process.wait()
    except KeyboardInterrupt:  # Ctrl-C or SIGTERM: dagster dev stops its webserver and daemon
        print("stopping")
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()
        return 0


def cmd_backfill(args: argparse.Namespace) -> int:
    """Materialize the daily job's partitions from --from to --to, one run per day in order;
    exit 1 naming the day whose run failed."""
    from mlops_helpers.orchestration import backfill, settings

    loaded = settings.load_settings(args.settings)  # SpecError (exit 2) before anything
    plan = backfill.plan_backfill(loaded, args.first, args.last)  # BackfillError (exit 2)
    claim_workspace()
    how = (
        "pipelined: a second process publishes and trains ahead, champions here in day order"
        if args.workers > 1
        else "the whole job for one day after another, in process"
    )
    print(f"backfill of job daily: {len(plan.days)} days {args.first}..{args.last} ({how})")
    print(f"{'day':<10}  {'run':<6}  {'seconds':>8}  what came out", flush=True)
    start = time.perf_counter()
    results = backfill.run_backfill(
        loaded, args.first, args.last, args.workers, say=lambda line: print(line, flush=True)
    )
    ok = sum(r.success for r in results)
    print(f"\n{ok} of {len(results)} runs succeeded in {time.perf_counter() - start:.1f} s")
    failed = [r for r in results if not r.success]
    if failed:
        print(f"FAILED {failed[0].day}: {failed[0].error}", file=sys.stderr)
        print(
            f"fix it, then: mlops-workbook backfill --from {failed[0].day} --to {args.last}",
            file=sys.stderr,
        )
        return 1
    return 0


def cmd_doctor(args: argparse.Namespace) -> int:
    """Check this machine for the workbook: one OK or FIX line per check; exit 1 on any FIX."""
    from mlops_helpers.workbook import doctor

    checks = doctor.run_checks()
    for check in checks:
        print(check.line())
    failed = sum(not c.ok for c in checks)
    print(f"\n{failed} of {len(checks)} checks need a fix" if failed else "\nall checks OK")
    return 1 if failed else 0


def cmd_progress(args: argparse.Namespace) -> int:
    """List every exercise and what this learner's runs recorded about it (nothing is sent)."""
    import json

    from mlops_helpers.config import show_path
    from mlops_helpers.exercises import progress

    table = progress.rows()
    if args.json:
        print(json.dumps(table, indent=1))
    else:
        print(f"Exercises, as recorded in {show_path(progress.progress_file())}:\n")
        print(progress.format_table(table))
    return 0


def _wait_until_interrupted(server) -> int:
    """Block while ``server`` runs; 0 on Ctrl-C or SIGTERM, 1 (with its log) if it dies."""
    try:
        while server.process is not None and server.process.poll() is None:
            time.sleep(0.5)
    except KeyboardInterrupt:
        print("stopping")
        return 0
    print(f"error: the server exited; its log:\n{server.log_tail()}", file=sys.stderr)
    return 1


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(
        prog="mlops-workbook", description="Run the MLOps workbook's notebooks headless."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute the notebooks in order into a new run folder")
    run.add_argument("notebooks", nargs="*", help="notebooks to run (default: all), e.g. 03")
    run.add_argument(
        "-p",
        "--param",
        nargs=2,
        action="append",
        metavar=("NAME", "VALUE"),
        help="set a parameter in every selected notebook that declares it",
    )
    run.add_argument(
        "-f",
        "--param-file",
        action="append",
        metavar="FILE",
        help="YAML file of NAME: VALUE parameters (-p wins over -f)",
    )
    run.add_argument(
        "-j",
        "--jobs",
        type=_positive_int,
        default=2,
        help="notebooks run at once (default 2: one computes while another waits on a server)",
    )
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.add_argument(
        "--no-report", action="store_true", help="skip the HTML report (index.html) of the run"
    )
    run.set_defaults(func=cmd_run)
    params = sub.add_parser("params", help="list a notebook's parameters")
    params.add_argument("notebook", help="e.g. 03 or 03_automated_etl")
    params.set_defaults(func=cmd_params)
    refresh = sub.add_parser(
        "refresh", help="re-execute committed notebooks in place (what `make notebooks` does)"
    )
    refresh.add_argument("notebooks", nargs="*", help="notebooks to refresh (default: all)")
    refresh.set_defaults(func=cmd_refresh)
    deploy = sub.add_parser(
        "deploy",
        help="gate, serve and smoke-test a model version, then promote it to champion",
        description="The candidate is served from its own version URI and smoke-tested "
        "before champion moves; a failure leaves champion unchanged. Exit codes: 0 deployed, "
        "2 bad input, 3 blocked by the gate, 4 the server did not start (not promoted), "
        "5 the smoke test failed (not promoted).",
    )
    deploy.add_argument("--model", default="viewability", help="registered model name")
    deploy.add_argument(
        "--version", type=_version, help="version to deploy (default: the challenger)"
    )
    deploy.add_argument("--train", action="store_true", help="train and register one first")
    deploy.add_argument("--seed", type=int, default=42, help="seed of data and model")
    deploy.add_argument("--n-rows", type=int, default=2000, help="rows per generated day")
    deploy.add_argument("--C", type=float, default=1.0, help="regularisation, with --train")
    deploy.add_argument(
        "--eval-day", default="2026-01-08", help="held-out day for the gate (YYYY-MM-DD)"
    )
    deploy.add_argument("--experiment", default="cli", help="experiment for --train runs")
    deploy.set_defaults(func=cmd_deploy)
    score = sub.add_parser(
        "score",
        help="score a day's impressions, published without labels, into a prediction partition",
        description="Generates the day (once), publishes its impressions without labels and "
        "scores them with the version behind --alias (or --version) into "
        "<workspace>/datasets/<world>/predictions/day=D/version=V. Exit 2: a model, version or "
        "alias that does not exist, a day its contract blocks.",
    )
    score.add_argument("--model", default="viewability", help="registered model name")
    score.add_argument("--alias", default="champion", help="alias to score with")
    score.add_argument("--version", type=_version, help="version to score with (not the alias)")
    score.add_argument("--day", default="2026-01-08", help="day to score (YYYY-MM-DD)")
    score.add_argument("--seed", type=int, default=42, help="seed of the generated day")
    score.add_argument("--n-rows", type=int, default=2000, help="impressions of the day")
    score.add_argument("--fault", default="none", help="a fault injected into the day's extract")
    score.set_defaults(func=cmd_score)
    serve = sub.add_parser("serve", help="serve models:/MODEL@ALIAS on 127.0.0.1 until Ctrl-C")
    serve.add_argument("--model", default="viewability", help="registered model name")
    serve.add_argument("--alias", default="champion", help="alias to serve")
    serve.add_argument("--port", type=_port, help="port (default: a free one)")
    serve.add_argument(
        "--endpoint",
        action="store_true",
        help="the production endpoint: nginx in front of @champion, following promotions, "
        "rollbacks and rollouts without a failed request, every answer logged",
    )
    serve.set_defaults(func=cmd_serve)
    rollout = sub.add_parser(
        "rollout",
        help="send the challenger a canary share of the endpoint's traffic, or a shadow copy",
        description="Recorded in the registry (tag endpoint.rollout); a running "
        "`serve --endpoint` takes it within a second. Exit 2: a share outside 0 to 100, no "
        "champion, no challenger, a version that does not exist or is the champion.",
    )
    rollout.add_argument("--model", default="viewability", help="registered model name")
    way = rollout.add_mutually_exclusive_group(required=True)
    way.add_argument("--canary", type=_share, metavar="PERCENT", help="share of requests")
    way.add_argument("--shadow", action="store_true", help="a copy of every request")
    way.add_argument("--off", action="store_true", help="the champion answers everything")
    rollout.add_argument("--version", type=_version, help="version (default: @challenger)")
    rollout.add_argument("--reason", default="", help="why, kept with the rollout")
    rollout.set_defaults(func=cmd_rollout)
    rollback = sub.add_parser(
        "rollback", help="point @champion back at the version before its last move"
    )
    rollback.add_argument("--model", default="viewability", help="registered model name")
    rollback.add_argument("--reason", default="rolled back by hand", help="why, kept in history")
    rollback.set_defaults(func=cmd_rollback)
    pipe = sub.add_parser("pipeline", help="run a declared pipeline (pipelines/*.yaml)")
    pipe.add_argument("file", help="pipeline file, e.g. pipelines/daily.yaml")
    pipe.add_argument("-p", "--param", nargs=2, action="append", metavar=("NAME", "VALUE"))
    pipe.add_argument(
        "--resume", action="store_true", help="rerun the last run from its failed step"
    )
    pipe.add_argument("--no-progress", action="store_true", help="no progress bar")
    pipe.set_defaults(func=cmd_pipeline)
    grid = sub.add_parser(
        "batch", help="run a notebook or pipeline over a grid, in parallel on Dask"
    )
    grid.add_argument("--grid", required=True, help="grid file, e.g. params/backfill.yaml")
    grid.add_argument("-p", "--param", nargs=2, action="append", metavar=("NAME", "VALUE"))
    grid.add_argument("--scheduler", help="Dask scheduler address (default: a LocalCluster)")
    grid.add_argument(
        "--workers",
        type=_worker_count,
        help="LocalCluster workers, 1 to 64 (default: one per core)",
    )
    grid.add_argument("--no-progress", action="store_true", help="no progress bar")
    grid.set_defaults(func=cmd_batch)
    server = sub.add_parser(
        "tracking-server", help="run a team MLflow tracking server on 127.0.0.1"
    )
    server.add_argument("--port", type=_port, default=5000, help="port (default 5000)")
    server.set_defaults(func=cmd_tracking_server)
    orchestrator = sub.add_parser(
        "orchestrator",
        help="run the Dagster UI and daemon on 127.0.0.1 over the daily pipeline's assets",
        description="dagster dev on mlops_helpers.orchestration.definitions, loopback only, "
        "DAGSTER_HOME in the workspace (telemetry off). Exit codes: 2 for a port in use or a "
        "wrong settings file, before anything starts.",
    )
    orchestrator.add_argument("--port", type=_port, default=3070, help="port (default 3070)")
    backfill = sub.add_parser(
        "backfill",
        help="materialize the daily job's partitions over a range of days (Dagster)",
        description="Dagster runs for each day, oldest first; with --workers 2 a second process runs "
        "published_day and trained_model for the days ahead while champion[D] runs here in "
        "day order (it gates against what D-1 left). The window days "
        "before --from that are not published yet are published first. Exit codes: 0 every "
        "run succeeded, 1 a run failed, 2 bad input (an empty or reversed range, days outside "
        "the partitions, a wrong settings file), before anything runs.",
    )
    backfill.add_argument("--from", dest="first", type=_day, required=True, help="first day")
    backfill.add_argument("--to", dest="last", type=_day, required=True, help="last day")
    backfill.add_argument(
        "--workers",
        type=_worker_count,
        default=2,
        help="2 (default): publish and train ahead in a second process; 1: one day after another",
    )
    for command in (orchestrator, backfill):
        command.add_argument(
            "--settings",
            help="settings file (default: $MLOPS_ORCHESTRATOR_SETTINGS, else "
            "pipelines/orchestrator.yaml)",
        )
    orchestrator.set_defaults(func=cmd_orchestrator)
    backfill.set_defaults(func=cmd_backfill)
    doctor = sub.add_parser(
        "doctor",
        help="check Python, packages, the python3 kernel, workspace, tracking store and port",
        description="Check that this machine can run the workbook; print one line per check, "
        "OK or FIX with the command that fixes it. Creates and migrates nothing. "
        "Exit codes: 0 every check OK, 1 at least one needs a fix.",
    )
    doctor.add_argument(
        "--tracking-uri",
        help="check this tracking URI (default: $MLOPS_TRACKING_URI, else the workspace's sqlite store)",
    )
    doctor.set_defaults(func=cmd_doctor)
    progress = sub.add_parser(
        "progress",
        help="list every exercise and whether you have solved it (from your own runs)",
        description="Read what the exercise checks of your own notebook runs recorded in the "
        "workspace (progress/exercises.json) and list every exercise of the workbook: solved "
        "by you, passed with the worked solution, not yet right, or not attempted. Nothing "
        "is sent anywhere.",
    )
    progress.add_argument("--json", action="store_true", help="print the rows as JSON")
    progress.set_defaults(func=cmd_progress)
    for command in (run, deploy, score, serve, rollout, rollback, pipe, grid):
        command.add_argument(
            "--tracking-uri",
            help="MLflow tracking URI for this command and its notebooks "
            "(default: the workspace's sqlite store)",
        )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``mlops-workbook``."""
    args = build_parser().parse_args(argv)
    # Kernels this command starts, and the kernels those start, fork from a warm template
    # (mlops_helpers.workbook.warmstart), from templates that outlive it by up to a minute.
    from mlops_helpers.workbook import warmstart

    warmstart.enable()
    from mlops_helpers import config

    if getattr(args, "tracking_uri", None):
        os.environ[config.TRACKING_URI_ENV] = args.tracking_uri
    from mlops_helpers.errors import WorkbookFailure, WorkbookInputError
    from mlops_helpers.workbook.workspace_lock import command_scope

    # Only the workbook's own input errors are "bad input" (exit 2, one line); a failure
    # of what the workbook relies on is its message and exit 1; anything else is a bug and
    # keeps its traceback (exit 1).
    try:
        if args.command not in ("params", "refresh", "doctor", "progress"):
            config.check_workspace()  # creates nothing: a bad MLOPS_WORKBOOK_HOME, at once
        with command_scope():  # the workspace a command claimed is released when it ends
            return args.func(args)
    except WorkbookInputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except WorkbookFailure as exc:
        print(f"failed: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
