"""deploy end to end with real servers: a good challenger is deployed, a worse one is
blocked, one that breaks in serving is rolled back and the previous champion serves again.

The two server-heavy classes are separate scopes, so the two xdist workers share them.
"""

from __future__ import annotations

import numpy as np
import pytest

from mlops_helpers import registry, serving

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("on_store")]

BUDGET_MS = 10_000.0  # behaviour, not timing: the machine may be busy


class TestGoodChallenger:
    @pytest.fixture(scope="class")
    @classmethod
    def deployed(cls, pointed, store, make_champion, good_run):
        """A good champion, then a good challenger deployed over it (one real server)."""
        name, before = make_champion(good_run, "deploy-good")
        with pointed():
            version = registry.register(good_run, name)
            report = serving.deploy(
                name, version, store.held_out, smoke_rows=10, latency_budget_ms=BUDGET_MS
            )
        return name, before, version, report

    def test_status_deployed_with_exit_code_0(self, deployed):
        _, _, _, report = deployed
        assert (report.status, report.failed_step, report.exit_code) == ("deployed", None, 0)
        assert report.gate.passed and report.smoke.passed, report.smoke.table()

    def test_champion_moved_to_the_challenger(self, deployed):
        name, before, version, report = deployed
        assert (report.champion_before, report.champion_after) == (before, version)
        assert registry.current_version(name, registry.CHAMPION) == version
        assert registry.current_version(name, registry.CHALLENGER) is None
        assert registry.describe(name)["why"].startswith("passed the gate")

    def test_lead_time_is_reported_per_step(self, deployed):
        _, _, _, report = deployed
        assert list(report.seconds) == ["gate", "promote", "serve", "smoke"]
        assert all(seconds > 0 for seconds in report.seconds.values())
        assert report.lead_time == pytest.approx(sum(report.seconds.values()))


class TestRollbackDrill:
    @pytest.fixture(scope="class")
    @classmethod
    def drill(cls, pointed, store, make_champion, http_predictions, good_run, renamed_run):
        """Champion answers over HTTP; a challenger that breaks in serving is deployed and
        rolled back; the champion answers again (three real servers in all)."""
        name, champion = make_champion(good_run, "drill")
        frame = store.held_out.head(50)
        uri = f"models:/{name}@{registry.CHAMPION}"
        before = http_predictions(uri, frame)
        with pointed():
            broken = registry.register(renamed_run, name)
            report = serving.deploy(
                name, broken, store.held_out, smoke_rows=10, latency_budget_ms=BUDGET_MS
            )
        after = http_predictions(uri, frame)
        return name, champion, broken, report, before, after

    def test_smoke_failure_rolls_back_with_exit_code_5(self, drill):
        name, champion, _, report, _, _ = drill
        assert (report.status, report.failed_step, report.exit_code) == ("rolled back", "smoke", 5)
        assert report.gate.passed, "the broken model passes offline evaluation"
        assert (report.champion_before, report.champion_after) == (champion, champion)
        assert registry.current_version(name, registry.CHAMPION) == champion
        assert "missing inputs ['scroll_depth_pct']" in report.message
        assert f"rolled back to {champion}" in report.message

    def test_previous_champion_answers_again_with_the_same_predictions(self, drill):
        _, _, _, _, before, after = drill
        assert len(after) == len(before) == 50
        np.testing.assert_allclose(after, before, rtol=0, atol=1e-12)

    def test_history_records_promotion_and_rollback_with_reasons(self, drill):
        name, champion, broken, _, _, _ = drill
        moves = registry.alias_history(name).query("alias == 'champion'").tail(2)
        promotion, rollback = moves.to_dict(orient="records")
        assert (promotion["version"], promotion["previous"]) == (broken, champion)
        assert promotion["reason"].startswith("passed the gate")
        assert (rollback["version"], rollback["previous"]) == (champion, broken)
        assert rollback["reason"].startswith("rollback: smoke test failed")
        assert "invocations answers 200" in rollback["reason"]


def test_a_worse_challenger_is_blocked_with_exit_code_3(fresh_name, store, good_run, shuffled_run):
    first = registry.register(good_run, fresh_name)
    assert registry.gate(fresh_name, first, store.held_out).passed
    registry.promote(fresh_name, first, "first champion")
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
