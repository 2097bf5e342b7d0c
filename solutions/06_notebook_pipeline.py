"""Worked solutions for notebook 06. Try each exercise yourself first."""


def exercise_06_1(saved: dict) -> set[str]:
    """`train`'s own parameters changed, so its hash changed: it reruns. `etl` runs before it
    and is unchanged: skipped. `deploy` (only in the run folder when run_deploy=True) runs
    after `train`, so it reruns too."""
    return {"train"} | ({"deploy"} & set(saved))
