"""The model card on a real MLflow store: written from the registry's evidence (the
training run, the gate's run and checks, the alias history), logged to the version's run
and tagged on the version; a version that does not exist is refused with the fix."""

from __future__ import annotations

import pytest

from mlops_helpers import model_card, registry

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("on_store")]


@pytest.fixture(scope="module")
def cards(pointed, store, make_champion, good_run, shuffled_run):
    """A champion and a blocked challenger, each with its card logged."""
    name, champion = make_champion(good_run, "card")
    with pointed():
        challenger = registry.register(shuffled_run, name)
        registry.gate(name, challenger, store.held_out)
        return name, {v: model_card.log_model_card(name, v) for v in (champion, challenger)}


def test_the_card_carries_the_training_runs_evidence(cards, good_run):
    name, by_version = cards
    card = by_version["1"]
    run = registry.client().get_run(good_run)
    assert card.startswith(f"# Model card: {name} version 1\n")
    assert f"Serving as: champion. Registered from run `{good_run}`" in card
    assert f"fingerprint `{run.data.tags['data_fingerprint']}`" in card
    assert "- days 2026-01-05 to 2026-01-07" in card, "the days the model trained on"
    assert f"| C | {run.data.params['C']} |" in card
    assert f"| roc_auc | {run.data.metrics['roc_auc']:.4f} |" in card


def test_the_card_shows_the_gate_checks_and_who_moved_which_alias_why(cards, store):
    _, by_version = cards
    champion, blocked = by_version["1"], by_version["2"]
    rows = len(store.held_out)
    assert f"Decision: **passed** on {rows} rows, against no champion" in champion
    assert "| champion | 1 | - | " in champion and "| first champion of the test |" in champion
    assert f"Decision: **blocked** on {rows} rows, against champion v1" in blocked
    assert "Serving as: challenger." in blocked
    assert f"Gated on {rows} rows of one day" in blocked, "the gate's size as a limitation"


def _row(card: str, first: str) -> list[str]:
    (line,) = [x for x in card.splitlines() if x.startswith(f"| {first} |")]
    return [cell.strip() for cell in line.strip("|").split("|")]


def test_the_card_shows_each_check_with_its_interval_and_the_slices(cards):
    _, by_version = cards
    champion, blocked = by_version["1"], by_version["2"]
    check, value, interval, rule, passed = _row(blocked, "roc_auc drop vs champion")
    low, high = (float(x) for x in interval.split(" to "))
    assert low <= float(value) <= high and low > 0.01, "blocked: the whole interval is a loss"
    assert (rule, passed) == ("low <= 0.01", "no")
    for label in ("device=desktop", "position=above_fold", "site_category=news"):
        assert len(_row(blocked, label)) == 6, f"the slice {label} is in the card"
    assert "Not compared per slice" in champion, "a first champion had nothing to compare with"


def test_the_card_is_logged_with_the_version(cards):
    import mlflow

    name, by_version = cards
    for version, card in by_version.items():
        uri = registry.client().get_model_version(name, version).tags[model_card.CARD_TAG]
        assert uri.endswith(f"/{model_card.CARD_ARTIFACT}")
        assert mlflow.artifacts.load_text(uri) == card


def test_a_version_that_does_not_exist_is_refused_with_the_fix(cards):
    name, _ = cards
    with pytest.raises(registry.ModelNotFound, match=f"model '{name}' has no version 9"):
        model_card.model_card(name, "9")
