"""Worked solutions for notebook 05. Try each exercise yourself first."""


def exercise_05_1(champion_moves) -> str:
    """A rollback moves the champion back to the version it replaced last. After the drill's
    rollback, the last move replaced the broken version 4: rolling back again brings it back,
    which is why a rollback is a decision to record, not a button to press twice."""
    return str(champion_moves.iloc[-1]["previous"])
