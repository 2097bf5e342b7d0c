"""The proof of concept of notebook 09: the same faults through the manual and the automated
path, measured in one run, and a one-page HTML summary of what was measured.

The fault matrix is every data fault of :mod:`mlops_helpers.data` plus two model faults.
Each path turns one fault into a :class:`Record`: caught or missed, by which check, how
long detection and recovery took, and how many manual steps recovery needed. "Caught" on
the manual path means what a person would notice without extra checks: an exception.
"""

from __future__ import annotations

import base64
import functools
import hashlib
import html
import io
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
PATHS = ("manual", "automated")
FAULT_DESCRIPTIONS = {
    **data.FAULT_DESCRIPTIONS,
    "regressed_model": "labels shuffled by a broken join: the retrained model is far worse",
    "breaks_in_serving": "an input column renamed by a feature script: the model scores well "
    "offline but cannot answer the requests clients send",
}
RENAMED = {"scroll_depth": "scroll_depth_pct"}  # the feature script's rename (breaks_in_serving)
LATENCY_BUDGET_MS = 1000.0  # generous: the smoke test checks behaviour, not a benchmark
SUMMARY_PAGE = "summary.html"
MATRIX_FILE = "matrix.csv"


@dataclass
class Record:
    """What one path did with one fault. Times are measured in this run (NaN: never)."""

    fault: str
    path: str
    caught: bool
    check: str  # the check that caught it, or "-"
    detect_s: float
    recover_s: float
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
    if isinstance(exc, QuarantineThresholdError):
        return "quarantine threshold: day blocked"
    what, _, rest = str(exc).partition(": ")
    problem = rest.split(";")[0].split(":")[0]
    return f"data contract ({what.split()[0]}): {problem}, day blocked"


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
    for path in PATHS:
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


# ------------------------------------------------------------------ matrix and summary


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


def headline(
    frame: pd.DataFrame,
    repro: pd.DataFrame,
    hand: HandDeployment,
    deploy_seconds: float,
    run_seconds: float,
) -> dict[str, str]:
    """The page's headline, one sentence per measured fact, automated first."""
    by_path = frame.groupby("path")
    caught, total = by_path["caught"].sum(), by_path.size()
    steps, restored = by_path["manual_steps"].sum(), by_path["restored"].sum()

    def both(values, fmt="{}") -> str:
        return ", ".join(f"{p} {fmt.format(values[p])}" for p in reversed(PATHS))

    return {
        "faults caught": both({p: f"{caught[p]} of {total[p]}" for p in PATHS}),
        "manual steps to recover from every fault": both(steps),
        "back to exactly the state before the fault": both(
            {p: f"{restored[p]} of {total[p]}" for p in PATHS}
        ),
        "the same model when retrained on the same data": both(
            {p: "yes" if repro.loc[p, "identical"] else "no" for p in PATHS}
        ),
        "deployment lead time": (
            f"automated {deploy_seconds:.1f} s in one call (gate, serve, smoke test, promote); "
            f"manual {hand.seconds:.1f} s of computer time over {len(hand.checklist)} steps "
            "a person performs, with none of those checks"
        ),
        "this whole run took": f"{run_seconds:.1f} s",
    }


COLORS = {"manual": "tab:orange", "automated": "tab:blue"}


def summary_figure(frame: pd.DataFrame):
    """Three charts: faults caught per path, seconds to detect and recover per fault (log
    scale), manual steps per path."""
    import matplotlib.pyplot as plt

    fig, (ax_caught, ax_time, ax_steps) = plt.subplots(
        1, 3, figsize=(14, 4.6), gridspec_kw={"width_ratios": [1, 2.2, 1]}
    )
    caught = frame.groupby("path")["caught"].sum().reindex(PATHS)
    total = frame.groupby("path").size().reindex(PATHS)
    bars = ax_caught.bar(PATHS, caught, color=[COLORS[p] for p in PATHS])
    ax_caught.bar_label(bars, labels=[f"{c} of {t}" for c, t in zip(caught, total, strict=True)])
    ax_caught.set(ylabel="faults caught", title="Faults caught", ylim=(0, total.max() * 1.15))

    seconds = times(frame)
    y = np.arange(len(seconds))
    series = [
        ("automated detect s", "automated: detect", COLORS["automated"]),
        ("automated recover s", "automated: recover", "lightskyblue"),
        ("manual recover s", "manual: recover by hand", COLORS["manual"]),
    ]
    height = 0.8 / len(series)
    for i, (column, label, color) in enumerate(series):
        values = seconds[column].where(seconds[column] > 0)  # 0 or never: no bar
        ax_time.barh(y + (i - 1) * height, values, height, color=color, label=label)
    ax_time.set_yticks(y, seconds.index, fontsize=8)
    ax_time.invert_yaxis()
    ax_time.set(xscale="log", xlabel="seconds (log scale)")
    ax_time.set_title("Time to detect and recover (the manual path detects nothing)")
    ax_time.legend(fontsize="small", loc="upper center", bbox_to_anchor=(0.5, -0.14), ncol=3)

    steps = frame.groupby("path")["manual_steps"].sum().reindex(PATHS)
    bars = ax_steps.bar(PATHS, steps, color=[COLORS[p] for p in PATHS])
    ax_steps.bar_label(bars)
    ax_steps.set(
        ylabel="manual steps to recover, whole matrix",
        title="Manual steps",
        ylim=(0, steps.max() * 1.15),
    )
    fig.tight_layout()
    return fig


def figure_png(fig) -> str:
    """A figure as a base64 PNG, to embed in a page without external files."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90)
    return base64.b64encode(buffer.getvalue()).decode("ascii")


_STYLE = """
body { font-family: system-ui, sans-serif; max-width: 70rem; margin: 1.5rem auto; color: #222; }
table { border-collapse: collapse; font-size: 0.85rem; }
th, td { border: 1px solid #ccc; padding: 0.25rem 0.5rem; text-align: left; }
th { background: #f0f0f0; }
td.caught { background: #e3f4e3; } td.missed { background: #fbe3e0; }
img { max-width: 100%; }
"""


def summary_html(frame: pd.DataFrame, figure, facts: dict[str, str], title: str) -> str:
    """The one-page summary: headline facts, the matrix with its times, the charts."""
    rows = []
    for r in frame.itertuples(index=False):
        verdict = "caught" if r.caught else "missed"
        cells = [
            r.fault, r.path, verdict, r.check, _seconds(r.detect_s), _seconds(r.recover_s),
            str(r.manual_steps), "yes" if r.restored else "no", r.outcome,
        ]  # fmt: skip
        rows.append(
            "<tr>"
            + "".join(
                f'<td class="{verdict}">{html.escape(c)}</td>'
                if i == 2
                else f"<td>{html.escape(c)}</td>"
                for i, c in enumerate(cells)
            )
            + "</tr>"
        )
    head = ["fault", "path", "verdict", "caught by", "detect", "recover", "manual steps",
            "restored", "what happened"]  # fmt: skip
    facts_html = "".join(
        f"<li><b>{html.escape(k)}</b>: {html.escape(v)}</li>" for k, v in facts.items()
    )
    return (
        "<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'>"
        f"<title>{html.escape(title)}</title><style>{_STYLE}</style></head><body>\n"
        f"<h1>{html.escape(title)}</h1>\n"
        "<p>The same faults, injected into the same data, through the manual path (the hand "
        "steps of notebooks 01 and 02) and the automated path (pipeline, contract, gate, smoke "
        "test before promotion). Every number on this page was measured in one run.</p>\n"
        f"<h2>Headline</h2>\n<ul>{facts_html}</ul>\n"
        "<h2>Per fault</h2>\n<table><thead><tr>"
        + "".join(f"<th>{h}</th>" for h in head)
        + "</tr></thead><tbody>\n"
        + "\n".join(rows)
        + "\n</tbody></table>\n"
        "<p>Caught on the manual path means an exception a person would notice. Restored: "
        "after recovery, production holds exactly what it held without the fault.</p>\n"
        "<h2>Charts</h2>\n"
        f"<img alt='faults caught, time to detect and recover, manual steps' "
        f"src='data:image/png;base64,{figure_png(figure)}'>\n"
        "</body></html>\n"
    )


def _seconds(value: float) -> str:
    return "never" if math.isnan(value) else f"{value:.3f} s"


def write_summary(
    run_dir: Path, frame: pd.DataFrame, figure, facts: dict[str, str], title: str
) -> Path:
    """Write the summary page into the run folder; return its path."""
    path = Path(run_dir) / SUMMARY_PAGE
    path.write_text(summary_html(frame, figure, facts, title), encoding="utf-8")
    return path
