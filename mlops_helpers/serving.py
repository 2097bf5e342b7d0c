"""A real scoring server (MLflow's, the one ``mlflow models serve --env-manager local``
runs) on loopback, its smoke test, and the automated deployment: gate, serve the candidate
from its own version URI, smoke test, and only then promote it.

``mlflow models serve --env-manager local`` does two things: it downloads the model, then
execs ``uvicorn mlflow.pyfunc.scoring_server.app:app`` with the model's folder in the
environment, and waits on it. ``ScoringServer`` does the same two things itself by
default (``launcher="direct"``): the download in this process, which has MLflow loaded
already, and the command and environment from MLflow's own
``mlflow.pyfunc.scoring_server.get_cmd``. Same server, same answers; it skips the CLI's
own start-up (its imports) and the extra process. Measured in
``benchmarks/deploy_latency.py``. ``launcher="mlflow-cli"`` runs the CLI itself; a test
checks both answer alike.

The server runs in its own process group, so stopping it stops uvicorn and every worker.
Its log is kept in the workspace and shown when it fails to start.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
import sys
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from mlops_helpers import registry
from mlops_helpers.config import ensure_workspace, show_path
from mlops_helpers.errors import WorkbookInputError
from mlops_helpers.tracking import import_mlflow
from mlops_helpers.training import FEATURES
from mlops_helpers.workbook.processes import (
    HOST,
    LoopbackServer,
    ServerError,
    ServerProcess,
    check_port_free,
    free_port,
    venv_env,
)


class ServingError(ServerError):
    """The scoring server could not be started or answered wrongly; the message says why."""


class ModelNotFound(ServingError, WorkbookInputError):
    """The model to serve does not exist, or its files are gone; the message says the fix."""


class PortInUse(ServingError, WorkbookInputError):
    """The port asked for is taken; pass another one, or none."""


def check_model_uri(model_uri: str) -> None:
    """Raise ModelNotFound unless ``model_uri`` names a model that exists with its files."""
    if model_uri.startswith("models:/"):
        ref = model_uri.removeprefix("models:/")
        name, sep, alias = ref.partition("@")
        if sep:
            version = registry.current_version(name, alias)
            if version is None:
                raise ModelNotFound(
                    f"{model_uri}: alias {alias!r} of model {name!r} points nowhere; "
                    "promote a version first (mlops-workbook deploy)"
                )
        else:
            name, _, version = ref.partition("/")
            try:
                registry.check_version(name, version)
            except registry.ModelNotFound as exc:
                raise ModelNotFound(f"{model_uri}: {exc}") from None
        check_model_files(name, version)
        return
    if model_uri.startswith("runs:/"):
        run_id = model_uri.removeprefix("runs:/").split("/")[0]
        run = registry.read_or_none(
            f"reading run {run_id}", lambda: registry.client().get_run(run_id)
        )
        if run is None:
            raise ModelNotFound(
                f"{model_uri}: run {run_id} does not exist on this tracking server; pass the "
                "id of a run that logged a model (tracking.log_training returns it)"
            )
        return
    if "://" not in model_uri and not Path(model_uri).exists():
        raise ModelNotFound(f"{model_uri}: no such model folder")


def check_model_files(name: str, version: str) -> None:
    """Raise ModelNotFound when the artifacts of ``name`` version ``version`` are gone."""
    import mlflow.artifacts

    try:
        files = {a.path for a in mlflow.artifacts.list_artifacts(f"models:/{name}/{version}")}
    except Exception as exc:  # noqa: BLE001 - anything but a listing means it cannot be served
        files, why = set(), f" ({type(exc).__name__})"
    else:
        why = ""
    if "MLmodel" in files:
        return
    where = registry.client().get_model_version_download_uri(name, version)
    if where.startswith("file:"):
        where = show_path(Path(urllib.parse.urlparse(where).path))
    raise ModelNotFound(
        f"model {name!r} version {version}: its files are gone (no MLmodel in {where}){why}; "
        "the model cannot be loaded from there again: deploy another version, or train and "
        "register a new one (mlops-workbook deploy --train)"
    )


def example_frame() -> pd.DataFrame:
    """One plausible impression, for example requests."""
    row = {
        "ad_width": 300, "ad_height": 250, "page_load_ms": 850.0, "scroll_depth": 0.6,
        "time_on_page_s": 35.0, "hour": 14, "device": "mobile", "site_category": "news",
        "ad_format": "banner", "position": "above_fold",
    }  # fmt: skip
    return pd.DataFrame([row])


def request_body(frame: pd.DataFrame, extra: tuple[str, ...] = ()) -> bytes:
    """The JSON body ``/invocations`` accepts for a frame of feature rows; ``extra``
    columns (an ``impression_id`` that keys the late labels) ride along, the model ignores
    them."""
    split = frame.loc[:, [*extra, *FEATURES]].to_dict(orient="split", index=False)
    return json.dumps({"dataframe_split": split}, default=str).encode()


def post(url: str, body: bytes, timeout: float = 30.0) -> tuple[int, dict]:
    """POST JSON; return the status and the decoded answer (errors included)."""
    req = urllib.request.Request(url, body, {"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as err:
        text = err.read()
        try:
            return err.code, json.loads(text)
        except ValueError:
            return err.code, {"message": text.decode(errors="replace")}


ABSOLUTE_PATH = re.compile(r"(?<![\w.:/])/(?:[\w.@+-]+/)*[\w.@+-]+")


def without_paths(text: str) -> str:
    """``text`` with each absolute path written as ``show_path`` writes it (no local paths)."""
    return ABSOLUTE_PATH.sub(lambda m: show_path(Path(m.group())), text)


def error_message(answer: dict) -> str:
    """The useful part of a scoring server's error answer: its message without the input it
    repeats, the server's stack trace (MLflow's ``stack_trace`` field) or local paths."""
    message = answer.get("message")
    if not isinstance(message, str):
        message = answer.get("error_code") or "no message in the answer"
    message = message.split("\nInput:", 1)[0].split("\nTraceback", 1)[0]
    # MLflow nests "... Error: ..." and quotes the whole input as "data '...'": drop those parts.
    parts = [p for p in message.split("Error: ") if p.strip() and "data '" not in p]
    text = " ".join(" ".join(parts or message.rsplit("Error: ", 1)[-1:]).split())
    trace = answer.get("stack_trace")
    if isinstance(trace, str) and trace.strip():  # only its last line, the cause, is for users
        text = f"{text} (cause: {trace.strip().splitlines()[-1].strip()[:200]})"
    return without_paths(text)[:400]


def viewable_probability(answer: dict) -> np.ndarray:
    """The probability of 'viewable' per row from a server answer."""
    preds = np.asarray(answer["predictions"], dtype=float)
    return preds[:, 1] if preds.ndim == 2 else preds


LAUNCHERS = ("direct", "mlflow-cli")


@dataclass
class ScoringServer(LoopbackServer):
    """MLflow's scoring server for ``model_uri`` on 127.0.0.1; use as a context manager.

    ``launcher="direct"`` (the default) downloads the model here and starts uvicorn with
    MLflow's scoring app, as ``mlflow models serve --env-manager local`` does after its own
    start-up; ``"mlflow-cli"`` runs that command. With ``prediction_log`` (direct only) the
    app is wrapped so that every answer is appended to that file, labelled ``log_version``
    (:mod:`mlops_helpers.workbook.logged_app`).
    """

    model_uri: str
    port: int | None = None
    ready_timeout: float = 60.0
    launcher: str = "direct"
    prediction_log: Path | None = None
    log_version: str = ""
    server: ServerProcess | None = field(default=None, repr=False)
    model_dir: Path | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        if self.launcher not in LAUNCHERS:
            raise ValueError(
                f"launcher {self.launcher!r} is not one of {', '.join(LAUNCHERS)}: "
                "'direct' starts MLflow's scoring app under uvicorn, 'mlflow-cli' runs "
                "`mlflow models serve`"
            )
        if self.prediction_log is not None and self.launcher != "direct":
            raise ValueError("a prediction log needs launcher='direct' (it wraps MLflow's app)")

    def start(self) -> ScoringServer:
        """Check the model and port, start the server, wait until ``/ping`` answers.

        A server that loses a port picked here (none given) before it binds it is started
        again on another, twice at most (:meth:`LoopbackServer._on_a_picked_port`)."""
        mlflow = import_mlflow()
        check_model_uri(self.model_uri)
        picked = self.port is None
        if not picked:
            try:
                check_port_free(self.port)
            except ServerError as exc:
                raise PortInUse(str(exc)) from None
        return self._on_a_picked_port(picked, lambda: self._start(mlflow), free_port)

    def _start(self, mlflow) -> ScoringServer:
        env = venv_env({"MLFLOW_TRACKING_URI": mlflow.get_tracking_uri()})
        if self.launcher == "mlflow-cli":
            command = [
                sys.executable, "-m", "mlflow", "models", "serve", "-m", self.model_uri,
                "--env-manager", "local", "-h", HOST, "-p", str(self.port), "-w", "1",
            ]  # fmt: skip
        else:
            command, env = self._direct_command(env)
        self.server = ServerProcess(
            f"the scoring server for {self.model_uri}",
            command,
            f"{self.url}/ping",
            ensure_workspace("serving", "logs") / f"server-{self.port}.log",
            env,
            self.ready_timeout,
        )
        try:
            self.server.start()
        except ServerError as exc:
            self._remove_model_dir()
            raise ServingError(str(exc)) from None
        return self

    def _direct_command(self, env: dict[str, str]) -> tuple[list[str], dict[str, str]]:
        """Download the model and build MLflow's own uvicorn command for it."""
        import mlflow.artifacts
        from mlflow.pyfunc import scoring_server

        self.model_dir = Path(
            tempfile.mkdtemp(prefix=f"model-{self.port}-", dir=ensure_workspace("serving"))
        )
        try:
            local = mlflow.artifacts.download_artifacts(self.model_uri, dst_path=self.model_dir)
        except Exception as exc:
            self._remove_model_dir()
            first = without_paths(str(exc).strip().splitlines()[0][:200]) if str(exc) else ""
            raise ServingError(
                f"{self.model_uri}: the model could not be downloaded ({type(exc).__name__}: "
                f"{first}); check that its artifacts exist on the tracking server"
            ) from None
        line, model_env = scoring_server.get_cmd(local, self.port, HOST, None, 1)
        program, *args = shlex.split(line)  # "uvicorn --host ... mlflow.pyfunc...app:app"
        if self.prediction_log is not None:
            from mlops_helpers.workbook import logged_app

            args[-1] = f"{logged_app.__name__}:app"
            env = {**env, logged_app.LOG_ENV: str(self.prediction_log),
                   logged_app.VERSION_ENV: self.log_version}  # fmt: skip
        return [sys.executable, "-m", program, *args], {**model_env, **env}

    def _remove_model_dir(self) -> None:
        if self.model_dir is not None:
            shutil.rmtree(self.model_dir, ignore_errors=True)
            self.model_dir = None

    def stop(self) -> None:
        """Stop the server's whole process group and delete the model it downloaded."""
        super().stop()
        self._remove_model_dir()

    def predict(self, frame: pd.DataFrame) -> np.ndarray:
        """Probabilities from the server for the rows of ``frame``; raise on a non-200 answer."""
        try:
            status, answer = post(f"{self.url}/invocations", request_body(frame))
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            state = "running" if self.process and self.process.poll() is None else "not running"
            raise ServingError(
                f"the scoring server at {self.url} did not answer ({exc}); its process is "
                f"{state}: restart it (ScoringServer.start) and read log_tail() for why it stopped"
            ) from None
        if status != 200:
            raise ServingError(f"the server answered {status}: {error_message(answer)}")
        return viewable_probability(answer)


@dataclass
class SmokeResult:
    """Each smoke check with its value, and whether all passed."""

    checks: list[dict]
    latency_ms: dict[str, float]

    @property
    def passed(self) -> bool:
        """True when every check passed."""
        return all(c["passed"] for c in self.checks)

    def table(self) -> pd.DataFrame:
        """The checks as a table."""
        return pd.DataFrame(self.checks).set_index("check")


def smoke_test(
    url: str,
    sample: pd.DataFrame,
    expected: np.ndarray,
    latency_budget_ms: float = 250.0,
    single_requests: int = 20,
) -> SmokeResult:
    """Check a running server: ping, status, response schema, predictions equal to the
    in-process ones, and the median single-row latency within budget. Never raises."""
    checks = []

    def check(name: str, ok: bool, detail: str) -> bool:
        checks.append({"check": name, "passed": bool(ok), "detail": detail})
        return bool(ok)

    try:
        with urllib.request.urlopen(f"{url}/ping", timeout=5) as resp:
            check("ping answers 200", resp.status == 200, f"status {resp.status}")
    except Exception as exc:  # noqa: BLE001 - every failure is a failed check
        check("ping answers 200", False, type(exc).__name__)
        return SmokeResult(checks, {})
    try:
        status, answer = post(f"{url}/invocations", request_body(sample))
    except Exception as exc:  # noqa: BLE001 - a server that drops the request fails the check
        status, answer = None, {"message": f"{type(exc).__name__}: {exc}"}
    detail = f"status {status}" + ("" if status == 200 else f": {error_message(answer)}")
    if not check("invocations answers 200", status == 200, detail):
        return SmokeResult(checks, {})
    preds = answer.get("predictions")
    shape_ok = isinstance(preds, list) and len(preds) == len(sample)
    if not check("one prediction per row", shape_ok, f"{len(preds or [])} for {len(sample)}"):
        return SmokeResult(checks, {})
    proba = viewable_probability(answer)
    check("probabilities in [0, 1]", bool(((proba >= 0) & (proba <= 1)).all()), "")
    diff = float(np.max(np.abs(proba - expected)))
    check("same as in-process predict", diff <= 1e-6, f"max difference {diff:.1e}")
    times = []
    for i in range(single_requests):
        body = request_body(sample.iloc[[i % len(sample)]])
        start = time.perf_counter()
        try:
            post(f"{url}/invocations", body)
        except Exception as exc:  # noqa: BLE001
            check("single-row requests answer", False, f"{type(exc).__name__}: {exc}")
            return SmokeResult(checks, {})
        times.append((time.perf_counter() - start) * 1000)
    latency = {"p50": float(np.median(times)), "max": float(np.max(times))}
    check(
        f"median latency <= {latency_budget_ms:.0f} ms",
        latency["p50"] <= latency_budget_ms,
        f"{latency['p50']:.1f} ms",
    )
    return SmokeResult(checks, latency)


EXIT_CODES = {"deployed": 0, "gate": 3, "serve": 4, "smoke": 5}


@dataclass
class DeployReport:
    """What a deployment did, step by step, and how long each step took."""

    name: str
    version: str
    status: str
    failed_step: str | None
    champion_before: str | None
    champion_after: str | None
    gate: registry.GateResult | None
    smoke: SmokeResult | None = None
    seconds: dict[str, float] = field(default_factory=dict)
    message: str = ""

    @property
    def exit_code(self) -> int:
        """0 when deployed, else the code of the step that failed (gate 3, serve 4, smoke 5)."""
        return EXIT_CODES[self.failed_step or "deployed"]

    @property
    def lead_time(self) -> float:
        """Seconds from the start of the gate to the end of the last step."""
        return sum(self.seconds.values())


def _failed(result: registry.GateResult) -> str:
    """The failed checks, with the slices that got worse named in one entry."""
    failed = [c["check"] for c in result.checks if not c["passed"]]
    prefix = "roc_auc drop on "
    slices = [c.removeprefix(prefix) for c in failed if c.startswith(prefix)]
    named = [c for c in failed if not c.startswith(prefix)]
    if slices:
        named.append(f"roc_auc drop on {len(slices)} slice(s): {', '.join(slices)}")
    return ", ".join(named)


def deploy(
    name: str,
    version: str,
    eval_frame: pd.DataFrame,
    thresholds: registry.GateThresholds | None = None,
    smoke_rows: int = 20,
    latency_budget_ms: float = 250.0,
    progress: Callable[[str], None] | None = None,
) -> DeployReport:
    """Gate ``version``; if it passes, serve it from ``models:/NAME/VERSION``, smoke-test it,
    record the outcome on the version, and only then make it champion.

    A failure anywhere leaves ``champion`` where it was. A kill anywhere leaves it where it
    was or on a verified version; rerunning finishes (clears ``challenger``). ``progress``
    gets one line per finished step. Whatever the outcome, the version's model card is
    written last from the evidence just recorded (:mod:`mlops_helpers.model_card`).
    """
    from mlops_helpers import model_card

    version = registry.check_version(name, version)
    check_model_files(name, version)
    report = _deploy(name, version, eval_frame, thresholds, smoke_rows, latency_budget_ms, progress)
    model_card.log_model_card(name, version)
    return report


def _deploy(name, version, eval_frame, thresholds, smoke_rows, latency_budget_ms, progress):
    """The steps of :func:`deploy` after its checks: gate, serve, smoke test, promote."""
    say = progress or (lambda line: None)
    timer = time.perf_counter()
    seconds: dict[str, float] = {}

    def lap(step: str) -> None:
        nonlocal timer
        now = time.perf_counter()
        seconds[step] = now - timer
        timer = now

    before = registry.current_version(name, registry.CHAMPION)
    if before == version and registry.verified(name, version):
        return _finish(name, version, seconds, say)
    result = registry.gate(name, version, eval_frame, thresholds)
    lap("gate")
    say(f"gate: {'passed' if result.passed else 'blocked'} ({result.summary()})")
    report = DeployReport(name, version, "blocked", "gate", before, before, result, None, seconds)
    if not result.passed:
        report.message = f"gate blocked version {version} ({_failed(result)}); champion unchanged"
        return report
    sample = eval_frame.head(smoke_rows)
    expected = registry.load_sklearn(name, version).predict_proba(sample.loc[:, list(FEATURES)])
    uri = f"models:/{name}/{version}"
    server = ScoringServer(uri)
    try:
        server.start()
    except ServingError as exc:
        lap("serve")
        log = show_path(server.server.log_path) if server.server else "no log"
        first = re.sub(r"[;.] [Ii]ts log:$", "", str(exc).splitlines()[0])
        why = f"{first} (log: {log})"
        registry.record_smoke(name, version, False, uri, f"serve: {why}")
        return _not_promoted(report, "serve", why)
    lap("serve")
    say(f"serve: version {version} answers at {server.url} (served from {uri})")
    try:
        smoke = smoke_test(server.url, sample, expected[:, 1], latency_budget_ms, smoke_rows)
    finally:
        server.stop()
    lap("smoke")
    report.smoke = smoke
    failed = "; ".join(f"{c['check']} ({c['detail']})" for c in smoke.checks if not c["passed"])
    registry.record_smoke(name, version, smoke.passed, uri, failed or "every check passed")
    say(f"smoke test: {'passed' if smoke.passed else 'FAILED: ' + failed}")
    if not smoke.passed:
        return _not_promoted(report, "smoke", f"smoke test failed: {failed}")
    registry.promote(name, version, f"passed the gate and the smoke test: {result.summary()}")
    lap("promote")
    say(f"promote: champion {before or 'none'} -> {version}; challenger cleared")
    report.status, report.failed_step = "deployed", None
    report.champion_after = version
    report.message = f"version {version} is champion, served and smoke-tested"
    return report


def _finish(name: str, version: str, seconds: dict, say: Callable[[str], None]) -> DeployReport:
    """The rerun of a deploy killed after the champion moved: clear challenger, report."""
    start = time.perf_counter()
    if registry.current_version(name, registry.CHALLENGER) == version:
        registry.set_alias(name, registry.CHALLENGER, None, "promoted to champion")
    seconds["finish"] = time.perf_counter() - start
    say(f"finish: version {version} was already champion, gated and smoke-tested")
    return DeployReport(
        name, version, "deployed", None, version, version, None, None, seconds,
        f"version {version} is champion, served and smoke-tested (verified earlier; "
        "nothing left to do but clear challenger)",
    )  # fmt: skip


def _not_promoted(report: DeployReport, step: str, why: str) -> DeployReport:
    report.status, report.failed_step = "not promoted", step
    champion = report.champion_before
    report.message = f"{why}; version {report.version} was not promoted, champion " + (
        f"stays version {champion}" if champion else "stays unset"
    )
    return report
