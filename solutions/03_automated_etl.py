"""Worked solutions for notebook 03. Try each exercise yourself first."""


def exercise_03_1(outcomes: list[dict]) -> set[str]:
    """Faults that break the extract's shape fail the whole day closed: outcome 'blocked'."""
    return {o["fault"] for o in outcomes if o["outcome"] == "blocked"}


def exercise_03_2(quarantined) -> int:
    """Every quarantined row is one row of the quarantine table, whatever its reason."""
    return len(quarantined)


def exercise_03_3(extract):
    """A page load in seconds is a value under 60: no page loads in under 60 ms, and none
    takes over a minute. A missing value is the nulls rule's business, so it is not flagged
    (a comparison with NaN is False)."""
    return extract["page_load_ms"] < 60
