"""A model card for a registered version, written from the registry's own evidence.

Nothing in it is typed by hand: the training run gives the parameters, the held-out
metrics, the data's fingerprint and the days it covered; the gate's run gives each check
with its value and rule and how many rows it scored; the version's tags give the smoke
test; the alias history gives who pointed an alias at the version, when and why. What the
evidence cannot show is listed as a known limitation, from the same evidence (the gate's
size, what it did not check). :func:`log_model_card` logs the card to the version's
training run as ``model_card.md`` and tags the version with where it is, so the card
travels with the model and a rerun rewrites it.
"""

from __future__ import annotations

from mlops_helpers import registry
from mlops_helpers.tracking import import_mlflow

CARD_ARTIFACT = "model_card.md"
CARD_TAG = "model_card"  # on the model version: runs:/<run id>/model_card.md


def _table(header: tuple[str, ...], rows: list[tuple]) -> list[str]:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    cell = lambda v: str(v).replace("|", "\\|").replace("\n", " ")  # noqa: E731
    return lines + ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]


def _or_dash(value) -> str:
    """A version from the alias history, or "-" where there was none (NaN in the frame)."""
    return value if isinstance(value, str) and value else "-"


def _number(value) -> str:
    return "-" if value is None else f"{value:.4f}"


def _gate_section(client, tags: dict) -> tuple[list[str], int | None, bool]:
    """The gate's decision, checks and slices; how many rows it scored (None: never gated);
    whether it compared slices."""
    run_id = tags.get("gate.run_id")
    if not run_id:
        return ["Not gated: no `gate.*` evidence on this version."], None, False
    mlflow = import_mlflow()
    run = client.get_run(run_id)
    evidence = mlflow.artifacts.load_dict(f"runs:/{run_id}/gate.json")
    checks, slices = evidence["checks"], evidence.get("slices") or []
    rows = int(run.data.params.get("eval_rows", 0)) or None
    confidence = run.data.params.get("confidence", "?")
    against = run.data.tags.get("champion_version", "none")
    lines = [
        f"Decision: **{tags.get('gate.decision', '?')}** on {rows} rows, against "
        + ("no champion (the floor only)" if against == "none" else f"champion v{against}")
        + f" (gate run `{run_id}`).",
        "",
        *_table(
            ("check", "value", f"{confidence} interval", "rule", "passed"),
            [
                (
                    c["check"],
                    _number(c["value"]),
                    f"{_number(c.get('low'))} to {_number(c.get('high'))}",
                    c["rule"],
                    "yes" if c["passed"] else "no",
                )
                for c in checks
            ],
        ),
    ]
    if slices:
        lines += [
            "",
            "ROC AUC drop against the champion per slice (interval widened for the number "
            "of slices):",
            "",
            *_table(
                ("slice", "rows", "challenger", "champion", "drop", "interval"),
                [
                    (
                        s["slice"],
                        s["rows"],
                        _number(s["challenger_roc_auc"]),
                        _number(s["champion_roc_auc"]),
                        _number(s["drop"]),
                        f"{_number(s['low'])} to {_number(s['high'])}"
                        if s["compared"]
                        else "too few rows",
                    )
                    for s in slices
                ],
            ),
        ]
    return lines, rows, bool(slices)


def model_card(name: str, version: object) -> str:
    """The card of ``name`` version ``version`` as Markdown (ModelNotFound for a version
    that does not exist)."""
    return _card(name, version)[0]


def _card(name: str, version: object) -> tuple[str, str]:
    """The card, and the run id of the version's training run it belongs to."""
    version = registry.check_version(name, version)
    client = registry.client()
    mv = client.get_model_version(name, version)
    run = client.get_run(mv.run_id)
    params, metrics, run_tags = run.data.params, run.data.metrics, run.data.tags
    tags = mv.tags
    first, last = run_tags.get("data_first_day"), run_tags.get("data_last_day")
    days = f"{first} to {last}" if first and last else "not recorded"
    gate, gate_rows, sliced = _gate_section(client, tags)
    moves = registry.alias_history(name)
    moves = moves[(moves["version"] == version) | (moves["previous"] == version)]
    serving = [
        a for a in ("champion", "challenger") if registry.current_version(name, a) == version
    ]

    lines = [
        f"# Model card: {name} version {version}",
        "",
        f"Serving as: {', '.join(serving) or 'no alias'}. Registered from run `{mv.run_id}`.",
        "",
        "## Training data",
        "",
        f"- fingerprint `{run_tags.get('data_fingerprint', 'not recorded')}`",
        f"- days {days}",
        f"- {run_tags.get('n_train', '?')} training rows, {run_tags.get('n_test', '?')} held out",
        "",
        "## Parameters",
        "",
        *_table(("parameter", "value"), sorted(params.items())),
        "",
        "## Held-out metrics",
        "",
        *_table(("metric", "value"), [(k, f"{v:.4f}") for k, v in sorted(metrics.items())]),
        "",
        "## Gate",
        "",
        *gate,
        "",
        "## Smoke test",
        "",
        f"{tags.get('smoke.decision', 'not run')}"
        + (f": {tags['smoke.detail']}" if tags.get("smoke.detail") else ""),
        "",
        "## Alias history of this version",
        "",
        *(
            _table(
                ("alias", "to", "from", "by", "when", "why"),
                [
                    (m.alias, _or_dash(m.version), _or_dash(m.previous), m.actor, m.time, m.reason)
                    for m in moves.itertuples()
                ],
            )
            if len(moves)
            else ["No alias ever pointed here."]
        ),
        "",
        "## Known limitations",
        "",
        "- Trained and evaluated on synthetic impressions (`mlops_helpers.data`), not on "
        "real traffic.",
        (
            f"- Gated on {gate_rows} rows of one day: a loss smaller than its intervals' "
            "half-width cannot be told from noise, so it passes."
            if gate_rows
            else "- Never gated: nothing shows it is at least as good as another version."
        ),
        (
            "- Slices are compared on ROC AUC only (a slice's calibration is not checked); "
            "slices below the gate's minimum rows are listed, not judged."
            if sliced
            else "- Not compared per slice (device, ad position, site category): it had no "
            "champion to compare with, so a loss on one slice cannot be ruled out."
        ),
        "",
    ]
    return "\n".join(lines), mv.run_id


def log_model_card(name: str, version: object) -> str:
    """Write the card to the version's training run as ``model_card.md``, tag the version
    with its URI (``model_card``), and return the card."""
    card, run_id = _card(name, version)
    client = registry.client()
    client.log_text(run_id, card, CARD_ARTIFACT)
    client.set_model_version_tag(name, str(version), CARD_TAG, f"runs:/{run_id}/{CARD_ARTIFACT}")
    return card
