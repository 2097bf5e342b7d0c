"""deploy end to end with real servers: a good challenger is served from its own version
URI, smoke-tested and only then promoted; a worse one is blocked; one that breaks in serving
is never promoted, so the champion never moves; a rerun after a kill finishes the job.

The two server-heavy classes are separate scopes, so the two xdist workers share them.
"""

from __future__ import annotations

import re
import shutil
import urllib.parse
from pathlib import Path

import numpy as np
import pytest

from mlops_helpers import registry, serving, tracking, training

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("on_store")]

BUDGET_MS = 10_000.0  # behaviour, not timing: the machine may be busy


class TestGoodChallenger:
    @pytest.fixture(scope="class")
    @classmethod
    def deployed(cls, pointed, store, make_champion, good_run):
        """A good champion, then a good challenger deployed over it (one real server)."""
        name, before = make_champion(good_run, "deploy-good")
        lines: list[str] = []
        with pointed():
            version = registry.register(good_run, name)
            report = serving.deploy(
                name, version, store.held_out, smoke_rows=10, latency_budget_ms=BUDGET_MS,
                progress=lines.append,
            )  # fmt: skip
        return name, before, version, report, lines

    def test_status_deployed_with_exit_code_0(self, deployed):
        _, _, _, report, _ = deployed
        assert (report.status, report.failed_step, report.exit_code) == ("deployed", None, 0)
        assert report.gate.passed and report.smoke.passed, report.smoke.table()

    def test_champion_moved_to_the_challenger(self, deployed):
        name, before, version, report, _ = deployed
        assert (report.champion_before, report.champion_after) == (before, version)
        assert registry.current_version(name, registry.CHAMPION) == version
        assert registry.current_version(name, registry.CHALLENGER) is None
        assert registry.describe(name)["why"].startswith("passed the gate and the smoke test")

    def test_its_model_card_is_written_with_the_deploy_outcome(self, deployed):
        import mlflow

        from mlops_helpers import model_card

        name, _, version, _, _ = deployed
        uri = registry.client().get_model_version(name, version).tags[model_card.CARD_TAG]
        card = mlflow.artifacts.load_text(uri)
        assert f"# Model card: {name} version {version}" in card
        assert "Serving as: champion." in card and "\n## Smoke test\n\npassed: " in card

    def test_the_candidate_was_served_from_its_own_version_before_champion_moved(self, deployed):
        name, _, version, _, lines = deployed
        tags = registry.client().get_model_version(name, version).tags
        assert tags["smoke.decision"] == "passed"
        assert tags["smoke.model_uri"] == f"models:/{name}/{version}"
        assert registry.describe(name)["smoke"] == "passed"
        assert [line.split(":")[0] for line in lines] == ["gate", "serve", "smoke test", "promote"]
        assert f"served from models:/{name}/{version}" in lines[1]

    def test_lead_time_is_reported_per_step(self, deployed):
        _, _, _, report, _ = deployed
        assert list(report.seconds) == ["gate", "serve", "smoke", "promote"]
        assert all(seconds > 0 for seconds in report.seconds.values())
        assert report.lead_time == pytest.approx(sum(report.seconds.values()))

    def test_a_rerun_after_a_kill_between_the_alias_writes_finishes_without_serving(
        self, deployed, store
    ):
        name, _, version, _, _ = deployed
        # the state a kill between promote's two writes leaves: champion moved, challenger not
        registry.set_alias(name, registry.CHALLENGER, version, "left by a killed deploy")
        gate_runs = len(registry.client().search_runs([_gate_experiment()]))

        report = serving.deploy(name, version, store.held_out, latency_budget_ms=BUDGET_MS)

        assert (report.status, report.exit_code, list(report.seconds)) == (
            "deployed",
            0,
            ["finish"],
        )
        assert registry.current_version(name, registry.CHAMPION) == version
        assert registry.current_version(name, registry.CHALLENGER) is None
        assert len(registry.client().search_runs([_gate_experiment()])) == gate_runs


def _gate_experiment() -> str:
    return registry.client().get_experiment_by_name(registry.GATE_EXPERIMENT).experiment_id


class TestBrokenInServing:
    @pytest.fixture(scope="class")
    @classmethod
    def drill(cls, pointed, store, make_champion, http_predictions, good_run, renamed_run):
        """Champion answers over HTTP; a challenger that breaks in serving is deployed and not
        promoted; the champion answers again (three real servers in all)."""
        name, champion = make_champion(good_run, "drill")
        frame = store.held_out.head(50)
        uri = f"models:/{name}@{registry.CHAMPION}"
        before = http_predictions(uri, frame)
        with pointed():
            moves = len(registry.alias_history(name).query("alias == 'champion'"))
            broken = registry.register(renamed_run, name)
            report = serving.deploy(
                name, broken, store.held_out, smoke_rows=10, latency_budget_ms=BUDGET_MS
            )
        after = http_predictions(uri, frame)
        return name, champion, broken, report, before, after, moves

    def test_smoke_failure_is_not_promoted_with_exit_code_5(self, drill):
        name, champion, broken, report, _, _, _ = drill
        assert (report.status, report.failed_step, report.exit_code) == ("not promoted", "smoke", 5)
        assert report.gate.passed, "the broken model passes offline evaluation"
        assert (report.champion_before, report.champion_after) == (champion, champion)
        assert registry.current_version(name, registry.CHAMPION) == champion
        assert registry.current_version(name, registry.CHALLENGER) == broken
        assert "missing inputs ['scroll_depth_pct']" in report.message
        assert f"not promoted, champion stays version {champion}" in report.message
        assert "rolled back" not in report.message

    def test_the_champion_never_moved(self, drill):
        name, _, _, _, _, _, moves = drill
        assert len(registry.alias_history(name).query("alias == 'champion'")) == moves

    def test_the_failed_smoke_test_is_on_record_and_promote_refuses_it(self, drill):
        name, champion, broken, _, _, _, _ = drill
        tags = registry.client().get_model_version(name, broken).tags
        assert (tags["gate.decision"], tags["smoke.decision"]) == ("passed", "failed")
        assert "invocations answers 200" in tags["smoke.detail"]
        with pytest.raises(registry.NotSmokeTested, match="its smoke test is failed; deploy it"):
            registry.promote(name, broken, "ship it anyway")
        assert registry.current_version(name, registry.CHAMPION) == champion

    def test_previous_champion_answers_with_the_same_predictions(self, drill):
        _, _, _, _, before, after, _ = drill
        assert len(after) == len(before) == 50
        np.testing.assert_allclose(after, before, rtol=0, atol=1e-12)


def test_an_input_the_model_cannot_score_gives_its_cause_without_trace_or_paths(
    fresh_name, store, good_run
):
    version = registry.register(good_run, fresh_name)
    bad = serving.example_frame().assign(page_load_ms=float("nan"), device=None)
    with serving.ScoringServer(f"models:/{fresh_name}/{version}") as server:
        status, answer = serving.post(f"{server.url}/invocations", serving.request_body(bad))
        with pytest.raises(serving.ServingError) as raised:
            server.predict(bad)
    assert status == 400 and "Traceback" in answer["stack_trace"], "MLflow sends its trace"
    message = str(raised.value)
    assert "NaN" in message, message  # the cause, from the trace's last line
    assert "Traceback" not in message and 'File "' not in message
    assert not re.search(r"(^|[\s'\"(])/[\w.-]+/", message), f"a local path in: {message}"


def test_a_worse_challenger_is_blocked_with_exit_code_3(fresh_name, store, good_run, shuffled_run):
    first = registry.register(good_run, fresh_name)
    assert registry.gate(fresh_name, first, store.held_out).passed
    registry.promote(fresh_name, first, "first champion", require_smoke=False)
    worse = registry.register(shuffled_run, fresh_name)

    report = serving.deploy(fresh_name, worse, store.held_out, latency_budget_ms=BUDGET_MS)

    assert (report.status, report.failed_step, report.exit_code) == ("blocked", "gate", 3)
    assert (report.champion_before, report.champion_after) == (first, first)
    assert registry.current_version(fresh_name, registry.CHAMPION) == first
    assert "champion unchanged" in report.message and "roc_auc >= floor" in report.message
    assert list(report.seconds) == ["gate"] and report.smoke is None
    run = registry.client().get_run(report.gate.evidence_run_id)
    assert run.data.tags["decision"] == "blocked"
    assert {"challenger_roc_auc", "champion_roc_auc"} <= set(run.data.metrics)


def test_deleted_model_files_are_refused_before_the_gate_with_the_fix(fresh_name, store):
    run_id = tracking.log_training(training.fit_and_evaluate(store.table, seed=1), "doomed")
    version = registry.register(run_id, fresh_name)
    where = registry.client().get_model_version_download_uri(fresh_name, version)
    shutil.rmtree(Path(urllib.parse.urlparse(where).path))

    with pytest.raises(serving.ModelNotFound) as raised:
        serving.deploy(fresh_name, version, store.held_out, latency_budget_ms=BUDGET_MS)
    message = str(raised.value)
    assert f"version {version}: its files are gone (no MLmodel in <workspace>/" in message
    assert "deploy another version, or train and register a new one" in message
    assert str(store.workspace) not in message
    tags = registry.client().get_model_version(fresh_name, version).tags
    assert not any(k.startswith(("gate.", "smoke.")) for k in tags), "nothing was recorded"
    with pytest.raises(serving.ModelNotFound, match="its files are gone"):
        serving.ScoringServer(f"models:/{fresh_name}@{registry.CHALLENGER}").start()
