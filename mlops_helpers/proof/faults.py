"""The fault matrix of notebook 09: the same faults through the manual and the automated
path, measured in one run, and the tables made of what was measured.

The fault matrix is every data fault of :mod:`mlops_helpers.data` plus two model faults.
Each path turns one fault into a :class:`Record`: caught or missed, by which check, how
long detection and recovery took, and how many manual steps recovery needed. "Caught" on
the manual path means what a person would notice without extra checks: an exception; on
the careful path, an exception or one of its asserts (:mod:`mlops_helpers.proof.careful`).
"""

from __future__ import annotations

import functools
import hashlib
import math
import pickle
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.pipeline import Pipeline

from mlops_helpers import config, data, etl, manual, registry, serving, tracking, training
from mlops_helpers.parameters import check_name
from mlops_helpers.validation import ContractError, QuarantineThresholdError

MODEL_FAULTS = ("regressed_model", "breaks_in_serving")
MATRIX = (*data.FAULTS, *MODEL_FAULTS)
# manual: the hand steps as notebooks 01 and 02 wrote them; careful: the same hand steps with
# a diligent engineer's asserts (proof.careful); automated: pipeline, contract, gate, smoke test.
PATHS = ("manual", "careful", "automated")
TRAINING_PATHS = ("manual", "automated")  # the careful path trains as the manual one does
FAULT_DESCRIPTIONS = {
    **data.FAULT_DESCRIPTIONS,
    "regressed_model": "labels shuffled by a broken join: the retrained model is far worse",
    "breaks_in_serving": "an input column renamed by a feature script: the model scores well "
    "offline but cannot answer the requests clients send",
}
RENAMED = {"scroll_depth": "scroll_depth_pct"}  # the feature script's rename (breaks_in_serving)
LATENCY_BUDGET_MS = 1000.0  # generous: the smoke test checks behaviour, not a benchmark
MATRIX_FILE = "matrix.csv"


@dataclass
class Record:
    """What one path did with one fault. Times are measured in this run (NaN: never)."""

    fault: str
    path: str
    caught: bool
    check: str  # the check that caught it, or "-"
    detect_s: float
    recover_s: float  # computer seconds: the person's time is not in it
    manual_steps: int  # steps a person performs to recover
    restored: bool  # after recovery, production is exactly what it was without the fault
    outcome: str


@dataclass(frozen=True)
class Setup:
    """The extracts both paths read, and the run folder they write into."""

    seed: int
    n_rows: int
    start_day: str
    n_days: int
    run_dir: Path

    def extract(self, fault: str = "none") -> etl.Dataset:
        """The raw extracts with ``fault`` on the last day (generated once per workspace)."""
        return etl.dataset(self.seed, self.n_rows, self.start_day, self.n_days, fault)

    def folder(self, *parts: str) -> Path:
        """A folder inside the run folder (created)."""
        path = self.run_dir.joinpath(*parts)
        path.mkdir(parents=True, exist_ok=True)
        return path


def fresh_run_dir(run_name: str) -> Path:
    """``<workspace>/proof_of_concept/<run_name>``, emptied, so a run never sees an earlier one.

    ``run_name`` is checked first: the folder is deleted, so it must be inside the workspace."""
    check_name("run_name", run_name)
    run_dir = config.ensure_workspace("proof_of_concept", run_name)
    shutil.rmtree(run_dir)
    run_dir.mkdir()
    return run_dir


def _since(start: float) -> float:
    return time.perf_counter() - start


# ------------------------------------------------------------------------ data faults


@functools.lru_cache(maxsize=8)
def _clean_manual_output(setup: Setup) -> str:
    """SHA-256 of the file the manual ETL writes from the extracts without a fault."""
    target = setup.folder("manual", "none") / manual.OUTPUT_NAME
    manual.run_by_hand(setup.extract(), target, [])
    return etl.file_sha256(target)


def manual_data_fault(setup: Setup, fault: str) -> Record:
    """Run the hand-written ETL of notebook 01 on the faulty extracts; recover by rerunning
    every step once the upstream fix arrives (the extracts without the fault)."""
    faulty, fixed = setup.extract(fault), setup.extract()
    target = setup.folder("manual", fault) / manual.OUTPUT_NAME
    start = time.perf_counter()
    try:
        manual.run_by_hand(faulty, target, [])
        caught, check, detect = False, "-", math.nan
    except Exception as exc:  # noqa: BLE001 - an exception is what a person would notice
        caught, check, detect = True, f"exception: {type(exc).__name__}", _since(start)
    written = None if caught else pd.read_csv(target)  # read back, as the trainer will
    checklist: list[dict] = []
    start = time.perf_counter()
    manual.run_by_hand(fixed, target, checklist)
    recover = _since(start)
    return Record(
        fault, "manual", caught, check, detect, recover, len(checklist),
        etl.file_sha256(target) == _clean_manual_output(setup),
        _manual_damage(fault, written, pd.read_csv(target), faulty),
    )  # fmt: skip


def _manual_damage(fault: str, written, clean: pd.DataFrame, faulty: etl.Dataset) -> str:
    """What the fault left in the output, next to the same count in a clean run."""
    if written is None:
        return "the run stopped with an error"
    if fault == "empty_day":
        return f"no error; {len(clean) - len(written)} rows missing from the output"
    placements = pd.read_csv(faulty.raw / "placements.csv")
    days = [d.isoformat() for d in faulty.days]
    mark = manual.FAULT_DAMAGE[fault]
    wrong = manual.damage_counts(written, placements, days)[mark]
    usual = manual.damage_counts(clean, placements, days)[mark]
    return f"no error; {wrong} rows with '{mark}' in the output ({usual} in a clean run)"


def _blocked_check(exc: ContractError) -> str:
    """The check that blocked a day, from the error's fields (never its message)."""
    if isinstance(exc, QuarantineThresholdError):
        return "quarantine threshold: day blocked"
    return f"data contract ({exc.extract}): {exc.kind}, day blocked"


def automated_data_fault(setup: Setup, fault: str) -> Record:
    """The daily run of notebook 03's pipeline on the day the fault arrives (the last);
    recover by rerunning that day once the fixed extract arrives. Caught = the day blocked,
    or rows quarantined for a reason the same day without the fault does not have."""
    faulty, fixed = setup.extract(fault), setup.extract()
    day = faulty.days[-1]
    baseline = etl.run_day(fixed.raw, setup.folder("automated", "none"), day)
    out = setup.folder("automated", fault)
    start = time.perf_counter()
    try:
        report = etl.run_day(faulty.raw, out, day)
    except ContractError as exc:
        detect = _since(start)
        caught, check, outcome = True, _blocked_check(exc), "day blocked, nothing published"
    else:
        detect = _since(start)
        extra = {
            reason: rows - baseline.reasons.get(reason, 0)
            for reason, rows in report.reasons.items()
            if rows > baseline.reasons.get(reason, 0)
        }
        caught = bool(extra)
        check = f"quarantine: {', '.join(extra)}" if extra else "-"
        outcome = f"day published; {sum(extra.values())} more rows quarantined with a reason"
    start = time.perf_counter()
    recovered = etl.run_day(fixed.raw, out, day)
    recover = _since(start)
    return Record(
        fault, "automated", caught, check, detect if caught else math.nan, recover, 1,
        recovered.fingerprint == baseline.fingerprint, outcome,
    )  # fmt: skip


# ----------------------------------------------------------------------- model faults


def model_frames(setup: Setup) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Clean training days (published by the pipeline) and the day after them, for the gate."""
    table = etl.build_training_table(setup.seed, setup.n_rows, setup.start_day, setup.n_days + 1)
    gate_day = data.day_range(setup.start_day, setup.n_days + 1)[-1]
    on_gate_day = (table["ts"].dt.date == gate_day).to_numpy()
    return table[~on_gate_day].reset_index(drop=True), table[on_gate_day].reset_index(drop=True)


def check_model_fault(fault: str) -> str:
    """Return ``fault`` if it is a model fault of the matrix, else raise ValueError."""
    if fault not in MODEL_FAULTS:
        raise ValueError(f"unknown model fault {fault!r}; use one of {', '.join(MODEL_FAULTS)}")
    return fault


def faulty_training(fault: str, table: pd.DataFrame, seed: int) -> pd.DataFrame:
    """The training rows a model fault starts from (a renamed column for the serving break)."""
    if check_model_fault(fault) == "regressed_model":
        rng = np.random.default_rng(seed)
        return table.assign(**{training.TARGET: rng.permutation(table[training.TARGET].to_numpy())})
    return table.rename(columns=RENAMED)


@dataclass
class HandDeployment:
    """Notebook 02's deployment, replayed: model.pkl in a folder, served by a thread."""

    model_file: Path
    server: manual.HandServer
    table: pd.DataFrame  # the training rows of the first model
    model: Pipeline  # the first model, as long as this process keeps it in memory
    checklist: list[dict] = field(default_factory=list)

    @property
    def probe(self) -> pd.DataFrame:
        """Five fixed impressions a client asks about."""
        return self.table.head(5)

    def ask(self) -> dict:
        """What a client gets for the probe rows now."""
        return manual.ask_server(self.server.url, self.probe)

    def stop(self) -> None:
        """The checklist's last step: stop the server."""
        with manual.manual_step(self.checklist, "stop the server"):
            self.server.stop()

    @property
    def seconds(self) -> float:
        """Computer time of the whole checklist (the person's time is not in it)."""
        return sum(step["seconds"] for step in self.checklist)


def deploy_by_hand(setup: Setup) -> HandDeployment:
    """Replay notebook 02's checklist, timed step by step; the server is left running."""
    checklist: list[dict] = []
    model_file = setup.folder("manual", "production") / "model.pkl"
    with manual.manual_step(checklist, "get the training table"):
        table, _ = model_frames(setup)
    model = manual.retrain_and_copy(table, model_file, checklist)
    with manual.manual_step(checklist, "start the hand-written server"):
        server = manual.start_server(model_file)
    hand = HandDeployment(model_file, server, table, model, checklist)
    with manual.manual_step(checklist, "query the server by hand"):
        answer = hand.ask()
    if answer["status"] != 200:
        hand.stop()
        raise RuntimeError(f"the hand-written server did not answer: {answer}")
    return hand


def manual_model_fault(fault: str, hand: HandDeployment, seed: int) -> Record:
    """Notebook 02's weekly routine on faulty training rows (retrain, glance, copy over
    model.pkl); recover by retraining on the good rows and copying again."""
    before = hand.ask()
    renamed = tuple(RENAMED.get(c, c) for c in training.NUMERIC_FEATURES)
    numeric = renamed if fault == "breaks_in_serving" else training.NUMERIC_FEATURES
    start = time.perf_counter()
    try:
        bad = manual.retrain_and_copy(
            faulty_training(fault, hand.table, seed), hand.model_file, [], numeric
        )
        caught, check, detect = False, "-", math.nan
    except Exception as exc:  # noqa: BLE001 - an exception is what a person would notice
        bad, caught, check, detect = None, True, f"exception: {type(exc).__name__}", _since(start)
    answer = hand.ask()  # the next client's request
    if answer["status"] != 200:
        outcome = f"no error; every request now answered {answer['status']}"
    elif bad is not None and worse(bad, hand.model, hand.table):
        outcome = "no error; a worse model (lower AUC on the true labels) answers every request"
    else:
        outcome = "no error; the new model answers every request"
    checklist: list[dict] = []
    start = time.perf_counter()
    manual.retrain_and_copy(hand.table, hand.model_file, checklist)
    with manual.manual_step(checklist, "query the server by hand"):
        after = hand.ask()
    return Record(
        fault, "manual", caught, check, detect, _since(start), len(checklist),
        after["status"] == 200 and after["probabilities"] == before["probabilities"], outcome,
    )  # fmt: skip


def worse(model: Pipeline, than: Pipeline, table: pd.DataFrame) -> bool:
    """True when ``model`` ranks the rows of ``table`` worse (lower ROC AUC) than ``than``."""
    return manual.held_out_auc(model, table) < manual.held_out_auc(than, table)


@dataclass(frozen=True)
class Champion:
    """The registered model the automated path protects, and its training result."""

    name: str
    version: str
    result: training.TrainResult


def first_champion(
    name: str, table: pd.DataFrame, gate_frame: pd.DataFrame, seed: int, experiment: str
) -> Champion:
    """Start ``name`` afresh (its old versions are deleted: this run owns the name), then
    train, log, register, gate and promote a first champion. No server is started."""
    tracking.configure_tracking(experiment=experiment)
    client = registry.client()
    if client.search_registered_models(filter_string=f"name = '{name}'"):
        client.delete_registered_model(name)
    result = training.fit_and_evaluate(table, seed)
    version = registry.register(tracking.log_training(result, "champion"), name)
    gate = registry.gate(name, version, gate_frame)
    registry.promote(name, version, f"first model: {gate.summary()}", require_smoke=False)
    return Champion(name, version, result)


DEPLOY_CHECKS = {"gate": "evaluation gate", "serve": "serving readiness", "smoke": "smoke test"}


def automated_model_fault(
    fault: str, champion: Champion, table: pd.DataFrame, gate_frame: pd.DataFrame, seed: int
) -> tuple[Record, serving.DeployReport]:
    """Train and register the faulty model, then ``serving.deploy`` it (gate, serve its own
    version, smoke test, promote only if all passed); return the record and the report."""
    if check_model_fault(fault) == "regressed_model":
        result = training.fit_and_evaluate(faulty_training(fault, table, seed), seed)
        run_id = tracking.log_training(result, "regressed: shuffled labels")
    else:  # the champion's own model: only its signature carries the renamed column
        run_id = tracking.log_training(
            champion.result, "broken: renamed input", rename_inputs=RENAMED
        )
    version = registry.register(run_id, champion.name)
    report = serving.deploy(champion.name, version, gate_frame, latency_budget_ms=LATENCY_BUDGET_MS)
    caught = report.status != "deployed"
    step = DEPLOY_CHECKS.get(report.failed_step, "-")
    check = f"{step} (exit {report.exit_code})" if caught else "-"
    if report.status == "not promoted":  # served from its own version URI, champion never moved
        outcome = f"{step} failed; not promoted, champion v{report.champion_after} unchanged"
    elif report.status == "blocked":
        outcome = f"blocked before serving; champion v{report.champion_after} unchanged"
    else:
        outcome = report.message
    return Record(
        fault, "automated", caught, check, report.lead_time if caught else math.nan,
        0.0, 0,  # nothing to recover: champion never moved
        registry.current_version(champion.name, registry.CHAMPION) == champion.version, outcome,
    ), report  # fmt: skip


# ------------------------------------------------------------------ reproducibility


def model_fingerprint(model) -> str:
    """SHA-256 of the pickled model: equal only for models that are the same to the bit."""
    return hashlib.sha256(pickle.dumps(model)).hexdigest()


def reproducibility(table: pd.DataFrame, seed: int) -> pd.DataFrame:
    """Train twice on the same rows, by each path: is the second model the first one again?"""
    rows = []
    for path in TRAINING_PATHS:
        if path == "automated":
            models = [training.fit_and_evaluate(table, seed).model for _ in range(2)]
        else:
            models = []
            for _ in range(2):
                train, _test = manual.split_by_hand(table)
                models.append(manual.make_model().fit(train[manual.FEATURES], train[manual.TARGET]))
        first, second = (model_fingerprint(m) for m in models)
        rows.append(
            {"path": path, "identical": first == second, "first": first[:12], "second": second[:12]}
        )
    return pd.DataFrame(rows).set_index("path")


# ----------------------------------------------------------------------- the matrix


def matrix(records: list[Record]) -> pd.DataFrame:
    """The records as a table, in matrix order (faults) and path order."""
    frame = pd.DataFrame([asdict(r) for r in records])
    order = {f: i for i, f in enumerate(MATRIX)}
    frame = frame.assign(
        _f=frame["fault"].map(order), _p=frame["path"].map({p: i for i, p in enumerate(PATHS)})
    )
    return frame.sort_values(["_f", "_p"]).drop(columns=["_f", "_p"]).reset_index(drop=True)


def verdicts(frame: pd.DataFrame) -> pd.DataFrame:
    """The deterministic part of the matrix, one row per fault: caught by which check, steps."""
    wide = frame.pivot(index="fault", columns="path", values=["caught", "check", "manual_steps"])
    wide = wide.reindex([f for f in MATRIX if f in set(frame["fault"])])
    out = pd.DataFrame(index=wide.index)
    for path in PATHS:
        if path in set(frame["path"]):
            out[f"{path}"] = wide[("caught", path)].map({True: "caught", False: "missed"})
            out[f"{path} check"] = wide[("check", path)]
            out[f"{path} steps"] = wide[("manual_steps", path)].astype(int)
    return out


def times(frame: pd.DataFrame) -> pd.DataFrame:
    """Seconds to detect and to recover, per fault and path (NaN: never detected)."""
    wide = frame.pivot(index="fault", columns="path", values=["detect_s", "recover_s"])
    wide.columns = [f"{path} {what.removesuffix('_s')} s" for what, path in wide.columns]
    columns = [f"{p} {w} s" for p in PATHS for w in ("detect", "recover")]
    return wide.reindex([f for f in MATRIX if f in set(frame["fault"])])[
        [c for c in columns if c in wide]
    ]


def save_matrix(frame: pd.DataFrame, run_dir: Path) -> Path:
    """Write the matrix (with this run's times) as CSV into the run folder."""
    path = Path(run_dir) / MATRIX_FILE
    frame.to_csv(path, index=False)
    return path
