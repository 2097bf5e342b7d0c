"""Model registry: register, gate, promote and roll back, with aliases (never stages).

Every alias move is recorded in the registered model's tags (``alias_history.NNNN``: who
pointed which alias where, when and why), so "what is serving and why" has an answer.
Promotion to ``champion`` only happens for a version whose recorded evidence says it
passed the gate (``gate.*`` tags) and, unless the caller opts out, was served and
smoke-tested from its own version URI (``smoke.*`` tags, written by ``serving.deploy``).

Only MLflow's "does not exist" answers mean "no such thing" here; any other failure of the
tracking store stops the operation with :class:`StoreError` and changes nothing more.
"""

from __future__ import annotations

import datetime as dt
import getpass
import json
import os
from dataclasses import asdict, dataclass, field

import pandas as pd

from mlops_helpers import comparison
from mlops_helpers.errors import WorkbookFailure, WorkbookInputError
from mlops_helpers.tracking import ensure_experiment, import_mlflow
from mlops_helpers.training import TARGET, metrics, predict

CHAMPION = "champion"
CHALLENGER = "challenger"
HISTORY_PREFIX = "alias_history."
GATE_EXPERIMENT = "deployment_gate"
SMOKE_TAGS = ("smoke.decision", "smoke.model_uri", "smoke.time", "smoke.detail")


class RegistryError(RuntimeError):
    """A registry operation cannot be done as asked; the message says what to do."""


class GateBlocked(RegistryError):
    """The challenger did not pass the evaluation gate; nothing was promoted."""


class NotSmokeTested(GateBlocked):
    """The version was never served and smoke-tested successfully; nothing was promoted."""


class ModelNotFound(RegistryError, WorkbookInputError):
    """The model, version, run or alias the user named does not exist."""


class StoreError(RegistryError, WorkbookFailure):
    """The tracking store failed (not "does not exist"); nothing more was changed."""


def is_missing(exc: BaseException) -> bool:
    """True when ``exc`` is MLflow's answer for a model, version, alias or run that does not
    exist (RESOURCE_DOES_NOT_EXIST; INVALID_PARAMETER_VALUE "... not found" for an alias)."""
    from mlflow.exceptions import MlflowException

    if not isinstance(exc, MlflowException):
        return False
    code = exc.error_code
    return code == "RESOURCE_DOES_NOT_EXIST" or (
        code == "INVALID_PARAMETER_VALUE" and "not found" in exc.message
    )


def store_failed(what: str, exc: BaseException) -> StoreError:
    """A StoreError saying which read or write failed and that nothing more was changed."""
    first = str(exc).strip().splitlines()[0][:200] if str(exc).strip() else type(exc).__name__
    return StoreError(
        f"the tracking store failed while {what} ({type(exc).__name__}: {first}); nothing "
        "more was changed: check the store (mlops-workbook doctor) and run the command again"
    )


def read_or_none(what: str, read):
    """``read()``, or None when what it reads does not exist (:func:`is_missing`); raise
    StoreError naming ``what`` when the store fails otherwise."""
    try:
        return read()
    except Exception as exc:
        if is_missing(exc):
            return None
        raise store_failed(what, exc) from exc


@dataclass(frozen=True)
class GateThresholds:
    """What a challenger must reach: an absolute floor, and no real loss against the champion.

    A loss is "real" when its whole interval at ``confidence`` (paired, on the gate's rows:
    :mod:`mlops_helpers.comparison`) lies above the allowed loss, so noise alone never
    blocks, and a larger evaluation set gives a sharper decision. The same holds inside
    each slice (device, ad position, site category) of at least ``min_slice_rows`` rows.
    """

    min_roc_auc: float = 0.65
    max_roc_auc_drop: float = 0.01
    max_log_loss_increase: float = 0.02
    max_slice_roc_auc_drop: float = 0.03
    confidence: float = 0.95
    min_slice_rows: int = 100


@dataclass
class GateResult:
    """The gate's decision with its evidence (metrics, each check, the MLflow run holding them)."""

    name: str
    version: str
    passed: bool
    challenger: dict[str, float]
    champion: dict[str, float] | None
    champion_version: str | None
    checks: list[dict] = field(default_factory=list)
    evidence_run_id: str = ""
    slices: pd.DataFrame | None = field(default=None, repr=False)  # per slice, with a champion

    def summary(self) -> str:
        """One line: the challenger's ROC AUC against the champion's (or the floor)."""
        auc = f"roc_auc {self.challenger['roc_auc']:.4f}"
        if self.champion is None:
            return f"{auc}, no champion to compare with"
        return f"{auc} vs champion v{self.champion_version} {self.champion['roc_auc']:.4f}"

    def table(self) -> pd.DataFrame:
        """The checks as a table: check, value (the point estimate), low and high (its
        interval), rule, passed."""
        return pd.DataFrame(self.checks).set_index("check")


def client():
    """An MlflowClient on the current tracking URI (call tracking.configure_tracking first)."""
    return import_mlflow().MlflowClient()


def register(run_id: str, name: str, alias: str | None = CHALLENGER, reason: str = "") -> str:
    """Register the model logged by ``run_id`` as a new version of ``name``; return the version.

    With ``alias`` (default ``challenger``) the new version also gets that alias.
    """
    c = client()
    run = read_or_none(f"reading run {run_id}", lambda: c.get_run(run_id))
    if run is None:
        raise ModelNotFound(
            f"run {run_id} does not exist on this tracking server; log a model first "
            "(tracking.log_training) and pass its run id"
        )
    outputs = run.outputs.model_outputs
    if not outputs:
        raise RegistryError(f"run {run_id} logged no model; log one with tracking.log_training")
    model_id = outputs[-1].model_id
    if registered(name) is None:
        c.create_registered_model(name)
    version = c.create_model_version(
        name, source=f"models:/{model_id}", run_id=run_id, model_id=model_id
    ).version
    if alias:
        set_alias(name, alias, str(version), reason or "registered from a tracked training run")
    return str(version)


def _history(name: str, tags: dict[str, str] | None = None) -> list[dict]:
    """The alias moves recorded in the model's tags (read now, unless ``tags`` are given)."""
    if tags is None:
        tags = client().get_registered_model(name).tags
    keys = sorted(k for k in tags if k.startswith(HISTORY_PREFIX))
    return [json.loads(tags[k]) for k in keys]


def alias_history(name: str) -> pd.DataFrame:
    """Every alias move of ``name``, oldest first: alias, version, previous, actor, time, reason."""
    columns = ["alias", "version", "previous", "actor", "time", "reason"]
    return pd.DataFrame(_history(name), columns=columns)


def moves(name: str, alias: str, tags: dict[str, str] | None = None) -> int:
    """How many times ``alias`` of ``name`` has moved (its history's length); from ``tags``
    when the caller has just read them (see :func:`registered`)."""
    return sum(h["alias"] == alias for h in _history(name, tags))


def registered(name: str):
    """The registered model ``name`` (its aliases and tags in one read), or None when it
    does not exist; raise StoreError when the store fails otherwise."""
    return read_or_none(f"reading model {name!r}", lambda: client().get_registered_model(name))


def current_version(name: str, alias: str) -> str | None:
    """The version ``alias`` points to, or None when it (or the model) does not exist;
    raise StoreError when the store fails otherwise."""
    found = read_or_none(
        f"reading alias {alias!r} of model {name!r}",
        lambda: client().get_model_version_by_alias(name, alias),
    )
    return None if found is None else str(found.version)


def check_version(name: str, version: object) -> str:
    """Return ``version`` as a str if ``name`` has it; else raise ModelNotFound with the fix."""
    text = str(version).strip()
    if not text.isdigit() or text != str(version) or int(text) < 1:
        raise ModelNotFound(
            f"model version must be a whole number of at least 1, got {version!r}; "
            "see the registered versions in the MLflow UI or registry.alias_history"
        )
    what = f"reading version {text} of model {name!r}"
    if read_or_none(what, lambda: client().get_model_version(name, text)) is None:
        raise ModelNotFound(
            f"model {name!r} has no version {text}; pass a version it has (see the MLflow UI "
            "or registry.alias_history), or --train to train and register a new one"
        )
    return text


def record_smoke(name: str, version: str, passed: bool, model_uri: str, detail: str) -> None:
    """Tag ``version`` with the outcome of serving and smoke-testing it from ``model_uri``."""
    c = client()
    # The decision goes last: a kill between the tags never leaves a "passed" without its detail.
    c.set_model_version_tag(name, str(version), "smoke.decision", "running")
    for key, value in (
        ("smoke.model_uri", model_uri),
        ("smoke.time", dt.datetime.now(dt.UTC).isoformat(timespec="seconds")),
        ("smoke.detail", detail[:1000]),
        ("smoke.decision", "passed" if passed else "failed"),
    ):
        c.set_model_version_tag(name, str(version), key, value)


def verified(name: str, version: str) -> bool:
    """True when ``version`` passed the gate and was served and smoke-tested (recorded tags)."""
    tags = client().get_model_version(name, str(version)).tags
    return tags.get("gate.decision") == "passed" and tags.get("smoke.decision") == "passed"


def set_alias(name: str, alias: str, version: str | None, reason: str) -> None:
    """Point ``alias`` at ``version`` (None removes it) and record the move in the history."""
    c = client()
    previous = current_version(name, alias)
    if version is None:
        if previous is not None:
            c.delete_registered_model_alias(name, alias)
    else:
        c.set_registered_model_alias(name, alias, str(version))
    entry = {
        "alias": alias,
        "version": None if version is None else str(version),
        "previous": previous,
        "actor": os.environ.get("MLOPS_ACTOR") or getpass.getuser(),
        "time": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "reason": reason,
    }
    key = f"{HISTORY_PREFIX}{len(_history(name)) + 1:04d}"
    c.set_registered_model_tag(name, key, json.dumps(entry))


def load_sklearn(name: str, version: str):
    """The scikit-learn model of one registered version (no input-schema enforcement)."""
    return import_mlflow().sklearn.load_model(f"models:/{name}/{version}")


def gate(
    name: str,
    version: str,
    eval_frame: pd.DataFrame,
    thresholds: GateThresholds | None = None,
) -> GateResult:
    """Compare ``version`` with the current champion on ``eval_frame``; record the evidence.

    Checks: the challenger's ROC AUC reaches the floor; against a champion, its ROC AUC
    drop and log-loss increase (paired intervals) are not surely above what is allowed,
    and no slice's ROC AUC drop is (a failing slice is named in its check). The evidence
    (both models' metrics, every check with its interval, the slices, the decision) is
    logged as a run of the ``deployment_gate`` experiment and tagged on the version.
    """
    mlflow = import_mlflow()
    limits = thresholds or GateThresholds()
    y = eval_frame[TARGET].to_numpy()
    mine = predict(load_sklearn(name, version), eval_frame)
    challenger = metrics(y, mine)
    auc = comparison.roc_auc_interval(y, mine, limits.confidence)
    checks = [_check("roc_auc >= floor", auc.estimate, limits.min_roc_auc, ">=", auc)]
    champion_version = current_version(name, CHAMPION)
    champion, slices = None, None
    if champion_version is not None and champion_version != str(version):
        theirs = predict(load_sklearn(name, champion_version), eval_frame)
        champion = metrics(y, theirs)
        drop = comparison.roc_auc_difference(y, theirs, mine, limits.confidence)
        rise = comparison.log_loss_difference(y, mine, theirs, limits.confidence)
        checks.append(
            _check("roc_auc drop vs champion", drop.estimate, limits.max_roc_auc_drop, "<=", drop)
        )
        checks.append(
            _check(
                "log_loss increase vs champion",
                rise.estimate,
                limits.max_log_loss_increase,
                "<=",
                rise,
            )
        )
        slices = comparison.slice_auc_drops(
            eval_frame, y, mine, theirs, limits.confidence, limits.min_slice_rows
        )
        checks.extend(_slice_checks(slices, limits))
    result = GateResult(
        name,
        str(version),
        all(c["passed"] for c in checks),
        challenger,
        champion,
        champion_version if champion else None,
        checks,
        slices=slices,
    )
    result.evidence_run_id = _record_gate(mlflow, result, limits, len(eval_frame))
    return result


def _check(
    label: str,
    value: float,
    threshold: float,
    op: str,
    interval: comparison.Interval | None = None,
) -> dict:
    """One check. With an ``interval``, a loss (``<=``) fails only when the interval's low
    end is above the threshold: the whole interval says "worse than allowed". A floor
    (``>=``) is absolute and decided on the estimate; its interval is shown."""
    if interval is None:
        ok = value >= threshold if op == ">=" else value <= threshold
        return {"check": label, "value": round(value, 6), "rule": f"{op} {threshold}", "passed": ok}
    if op == ">=":
        ok, rule = value >= threshold, f">= {threshold}"
    else:
        ok, rule = interval.low <= threshold, f"low <= {threshold}"
    return {
        "check": label,
        "value": round(value, 6),
        "low": round(interval.low, 6),
        "high": round(interval.high, 6),
        "rule": rule,
        "passed": bool(ok),
    }


def _slice_checks(slices: pd.DataFrame, limits: GateThresholds) -> list[dict]:
    """One check per slice whose drop is surely above the allowed one; else one check for
    the slice that comes closest (its interval's low end is the highest)."""
    compared = slices[slices["compared"]]
    if compared.empty:
        return []
    limit = limits.max_slice_roc_auc_drop
    failing = compared[compared["low"] > limit]
    shown = failing if len(failing) else compared.sort_values("low").tail(1)
    checks = []
    for label, row in shown.iterrows():
        interval = comparison.Interval(row["drop"], row["low"], row["high"], limits.confidence)
        title = f"roc_auc drop on {label}" if len(failing) else f"roc_auc drop, worst slice {label}"
        checks.append(_check(title, row["drop"], limit, "<=", interval))
    return checks


def _record_gate(mlflow, result: GateResult, limits: GateThresholds, n_rows: int) -> str:
    experiment_id = ensure_experiment(GATE_EXPERIMENT)
    decision = "passed" if result.passed else "blocked"
    with mlflow.start_run(
        experiment_id=experiment_id, run_name=f"{result.name} v{result.version}"
    ) as run:
        mlflow.log_params({**asdict(limits), "eval_rows": n_rows})
        mlflow.log_metrics({f"challenger_{k}": v for k, v in result.challenger.items()})
        if result.champion:
            mlflow.log_metrics({f"champion_{k}": v for k, v in result.champion.items()})
        mlflow.set_tags(
            {
                "model": result.name,
                "version": result.version,
                "champion_version": result.champion_version or "none",
                "decision": decision,
            }
        )
        slices = [] if result.slices is None else _records(result.slices)
        mlflow.log_dict(
            {"checks": result.checks, "slices": slices, "decision": decision}, "gate.json"
        )
    c = client()
    for key, value in (
        ("gate.decision", decision),
        ("gate.run_id", run.info.run_id),
        ("gate.roc_auc", f"{result.challenger['roc_auc']:.6f}"),
    ):
        c.set_model_version_tag(result.name, result.version, key, value)
    return run.info.run_id


def _records(frame: pd.DataFrame) -> list[dict]:
    """A frame's rows as JSON-ready dicts: a slice that was not compared has None, not NaN."""
    flat = frame.reset_index().astype(object)
    return flat.where(flat.notna(), None).to_dict("records")


def promote(
    name: str, version: str, reason: str, alias: str = CHAMPION, require_smoke: bool = True
) -> str | None:
    """Point ``alias`` at ``version`` if its recorded gate decision is 'passed' and, for
    ``champion`` with ``require_smoke``, its recorded smoke test passed; then clear
    ``challenger`` if it pointed there. Return the version ``alias`` pointed to before.

    Raises GateBlocked (NotSmokeTested) otherwise. The alias moves before challenger is
    cleared, so a kill in between leaves a verified champion that a rerun finishes.
    """
    tags = client().get_model_version(name, str(version)).tags
    decision = tags.get("gate.decision")
    if decision != "passed":
        raise GateBlocked(
            f"{name} version {version} cannot become {alias}: its gate decision is "
            f"{decision or 'missing'}; run registry.gate() on it and promote only if it passes"
        )
    smoke = tags.get("smoke.decision")
    if alias == CHAMPION and require_smoke and smoke != "passed":
        raise NotSmokeTested(
            f"{name} version {version} cannot become {alias}: its smoke test is "
            f"{smoke or 'missing'}; deploy it with serving.deploy (or mlops-workbook deploy), "
            "which serves and smoke-tests it before promoting"
        )
    previous = current_version(name, alias)
    set_alias(name, alias, str(version), reason)
    if current_version(name, CHALLENGER) == str(version):
        set_alias(name, CHALLENGER, None, f"promoted to {alias}")
    return previous


def rollback(name: str, reason: str, alias: str = CHAMPION) -> str:
    """Point ``alias`` back at the version it pointed to before its last move; return it."""
    moves = [h for h in _history(name) if h["alias"] == alias]
    if not moves or moves[-1]["previous"] is None:
        raise RegistryError(
            f"{name}@{alias} has no earlier version to roll back to; "
            "promote a known-good version explicitly instead"
        )
    previous = moves[-1]["previous"]
    set_alias(name, alias, previous, f"rollback: {reason}")
    return previous


def describe(name: str, alias: str = CHAMPION) -> dict:
    """What ``name@alias`` serves and why: version, source run, gate evidence, last move."""
    c = client()
    version = current_version(name, alias)
    if version is None:
        raise ModelNotFound(
            f"alias {alias!r} of model {name!r} points nowhere; register a model and "
            "promote it through the gate first"
        )
    mv = c.get_model_version(name, version)
    moves = [h for h in _history(name) if h["alias"] == alias and h["version"] == version]
    last = moves[-1] if moves else {}
    return {
        "model": name,
        "alias": alias,
        "version": version,
        "run_id": mv.run_id,
        "gate": mv.tags.get("gate.decision", "none"),
        "gate_roc_auc": mv.tags.get("gate.roc_auc"),
        "smoke": mv.tags.get("smoke.decision", "none"),
        "since": last.get("time"),
        "by": last.get("actor"),
        "why": last.get("reason"),
    }
