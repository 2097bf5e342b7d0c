"""Worked solutions for notebook 06. Try each exercise yourself first."""


def exercise_06_1(saved: dict) -> set[str]:
    """`train`'s own parameters changed, so its hash changed: it reruns. `etl` runs before it
    and is unchanged: skipped. `deploy` (only in the run folder when run_deploy=True) runs
    after `train`, so it reruns too."""
    return {"train"} | ({"deploy"} & set(saved))


# A step is YAML text, as in pipelines/daily.yaml: 07 monitors two new days, calm ones.
exercise_06_2 = """
name: monitor
notebook: 07_monitoring_and_retraining
after: [train]
parameters:
  n_new_days: 2
  drift: 0.0
"""
