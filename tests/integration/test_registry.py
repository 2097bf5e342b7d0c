"""registry on a real MLflow store: the gate blocks a worse model with recorded evidence,
promotion needs a passed gate, rollback and describe fail clearly when there is nothing.

No scoring server here: these are the registry's own guarantees.
"""

from __future__ import annotations

import uuid

import pytest

from mlops_helpers import registry, serving, tracking
from mlops_helpers.errors import WorkbookInputError

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("on_store")]


@pytest.fixture(scope="module")
def blocked(pointed, store, make_champion, good_run, shuffled_run):
    """A good champion, and a shuffled-label challenger that went through the gate."""
    name, champion = make_champion(good_run, "gate")
    with pointed():
        challenger = registry.register(shuffled_run, name)
        result = registry.gate(name, challenger, store.held_out)
    return name, champion, challenger, result


class TestGateBlocksAWorseModel:
    def test_gate_fails_on_the_floor_and_against_the_champion(self, blocked):
        _, champion, _, result = blocked
        assert not result.passed
        assert result.champion_version == champion
        assert result.challenger["roc_auc"] < 0.65 < result.champion["roc_auc"]
        failed = set(result.table().query("not passed").index)
        assert {"roc_auc >= floor", "roc_auc drop vs champion"} <= failed

    def test_every_check_against_the_champion_is_decided_on_its_interval(self, blocked):
        _, _, _, result = blocked
        table = result.table()
        drop = table.loc["roc_auc drop vs champion"]
        assert drop["low"] <= drop["value"] <= drop["high"]
        assert drop["low"] > 0.01 and drop["rule"] == "low <= 0.01"

    def test_the_slices_that_got_worse_are_named_and_the_small_ones_listed(self, blocked, store):
        _, _, _, result = blocked
        slices = result.slices
        assert set(slices.index) >= {"device=desktop", "device=tablet", "position=below_fold"}
        assert (
            slices["rows"]
            .groupby(slices.index.str.split("=").str[0])
            .sum()
            .eq(len(store.held_out))
            .all()
        ), "each slice column splits every gate row once"
        small = slices[slices["rows"] < registry.GateThresholds().min_slice_rows]
        assert len(small) and not small["compared"].any()
        named = {c["check"] for c in result.checks if c["check"].startswith("roc_auc drop on ")}
        worse = slices[slices["compared"] & (slices["low"] > 0.03)]
        assert len(worse) and named == {f"roc_auc drop on {s}" for s in worse.index}

    def test_promote_raises_and_the_champion_stays(self, blocked):
        name, champion, challenger, _ = blocked
        with pytest.raises(registry.GateBlocked, match="gate decision is blocked"):
            registry.promote(name, challenger, "trying anyway")
        assert registry.current_version(name, registry.CHAMPION) == champion
        assert registry.current_version(name, registry.CHALLENGER) == challenger

    def test_evidence_run_holds_the_decision_and_both_models_metrics(self, blocked):
        name, champion, challenger, result = blocked
        mlflow = tracking.import_mlflow()
        run = mlflow.get_run(result.evidence_run_id)
        gate_experiment = mlflow.get_experiment_by_name(registry.GATE_EXPERIMENT)
        assert run.info.experiment_id == gate_experiment.experiment_id
        assert run.data.tags["decision"] == "blocked"
        assert run.data.tags["version"] == challenger
        assert run.data.tags["champion_version"] == champion
        for key in ("roc_auc", "log_loss", "accuracy", "brier"):
            assert run.data.metrics[f"challenger_{key}"] == pytest.approx(result.challenger[key])
            assert run.data.metrics[f"champion_{key}"] == pytest.approx(result.champion[key])

    def test_model_version_carries_the_gate_decision(self, blocked):
        name, _, challenger, result = blocked
        tags = registry.client().get_model_version(name, challenger).tags
        assert tags["gate.decision"] == "blocked"
        assert tags["gate.run_id"] == result.evidence_run_id


class TestRefusals:
    def test_promotion_refuses_a_version_that_was_never_gated(self, fresh_name, good_run):
        version = registry.register(good_run, fresh_name)
        with pytest.raises(
            registry.GateBlocked, match="gate decision is missing; run registry.gate"
        ):
            registry.promote(fresh_name, version, "no gate")
        assert registry.current_version(fresh_name, registry.CHAMPION) is None

    def test_champion_refuses_a_gated_version_never_served_and_smoke_tested(
        self, fresh_name, store, good_run
    ):
        version = registry.register(good_run, fresh_name)
        assert registry.gate(fresh_name, version, store.held_out).passed
        with pytest.raises(registry.NotSmokeTested, match="its smoke test is missing; deploy it"):
            registry.promote(fresh_name, version, "gated is enough?")
        assert registry.current_version(fresh_name, registry.CHAMPION) is None
        assert registry.current_version(fresh_name, registry.CHALLENGER) == version

    def test_a_missing_version_or_alias_is_bad_input_and_none_is_only_for_does_not_exist(
        self, fresh_name, good_run
    ):
        registry.register(good_run, fresh_name)
        assert registry.current_version(fresh_name, "nowhere") is None  # the model exists
        assert registry.current_version(f"no-model-{uuid.uuid4().hex[:8]}", "champion") is None
        for bad, said in (("999", "has no version 999"), ("abc", "whole number"), ("", "whole")):
            with pytest.raises(registry.ModelNotFound, match=said) as raised:
                registry.check_version(fresh_name, bad)
            assert isinstance(raised.value, WorkbookInputError)

    def test_rollback_without_an_earlier_version_is_refused(self, fresh_name, store, good_run):
        version = registry.register(good_run, fresh_name)
        assert registry.gate(fresh_name, version, store.held_out).passed
        registry.promote(fresh_name, version, "first champion", require_smoke=False)
        with pytest.raises(registry.RegistryError, match="no earlier version to roll back to"):
            registry.rollback(fresh_name, "just because")
        assert registry.current_version(fresh_name, registry.CHAMPION) == version

    def test_rollback_of_a_model_never_promoted_is_refused(self, fresh_name, good_run):
        registry.register(good_run, fresh_name)
        with pytest.raises(registry.RegistryError, match="promote a known-good version"):
            registry.rollback(fresh_name, "nothing to undo")

    def test_register_refuses_a_run_that_does_not_exist(self, fresh_name):
        with pytest.raises(registry.RegistryError, match="does not exist .* log a model first"):
            registry.register("0123456789abcdef0123456789abcdef", fresh_name)


class TestWhatIsServing:
    def test_describe_an_alias_that_points_nowhere(self, fresh_name, good_run):
        registry.register(good_run, fresh_name)
        with pytest.raises(registry.RegistryError, match="points nowhere; register a model"):
            registry.describe(fresh_name, "nowhere")
        with pytest.raises(serving.ServingError, match="points nowhere; promote a version"):
            serving.ScoringServer(f"models:/{fresh_name}@nowhere").start()

    def test_describe_and_history_say_what_serves_and_why(self, fresh_name, store, good_run):
        first = registry.register(good_run, fresh_name)
        assert registry.gate(fresh_name, first, store.held_out).passed
        registry.promote(fresh_name, first, "first champion", require_smoke=False)
        second = registry.register(good_run, fresh_name)
        assert registry.gate(fresh_name, second, store.held_out).passed
        assert registry.promote(fresh_name, second, "newer version", require_smoke=False) == first
        assert registry.rollback(fresh_name, "drill") == first

        info = registry.describe(fresh_name)
        assert (info["version"], info["gate"], info["why"]) == (first, "passed", "rollback: drill")
        champion_moves = registry.alias_history(fresh_name).query("alias == 'champion'")
        moves = champion_moves[["version", "previous", "reason"]].fillna("none")
        assert moves.values.tolist() == [
            [first, "none", "first champion"],
            [second, first, "newer version"],
            [first, second, "rollback: drill"],
        ]
