"""Worked solutions for notebook 12_live_endpoint (try each exercise first)."""

from __future__ import annotations


def exercise_12_1(calls, version):
    """A failed request was answered by nobody, so it is not in any version's share (its
    count is the separate, more important number: it must be 0)."""
    answered = calls[~calls["failed"]]
    return (answered["version"] == version).groupby(answered["phase"], sort=False).mean().to_dict()


def exercise_12_2(compared) -> int:
    """Each row is one impression that both versions scored (the champion answered it, the
    shadow saw a copy): how far apart their two probabilities were."""
    both = compared.filter(like="proba_v")
    return int((both.max(axis=1) - both.min(axis=1) > 0.05).sum())
