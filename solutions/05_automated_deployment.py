"""Worked solutions for notebook 05. Try each exercise yourself first."""


def exercise_05_1(champion_moves) -> str:
    """A rollback moves the champion back to the version it replaced last. The broken version
    was never promoted (deploy smoke-tests before the alias moves), so the last champion move
    is the challenger replacing the first model: a rollback brings the first model back, which
    is why a rollback is a decision to record, not a button to press."""
    return str(champion_moves.iloc[-1]["previous"])
