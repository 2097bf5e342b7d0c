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
    assert "| roc_auc drop vs champion |" in blocked and "| no |" in blocked
    assert "Serving as: challenger." in blocked
    assert f"point estimates on {rows} rows" in blocked, "the gate's size as a limitation"


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
