"""What this learner's own runs recorded about each exercise, kept in the workspace.

Every exercise check writes one line of news here: solved (by the learner's own answer),
revealed (the worked solution from ``solutions/`` passed, which is what ``show_solutions``
and CI do), not yet (an answer that fails a case) or not attempted. The best outcome an
exercise ever had stays, with the latest one beside it, so breaking a solved exercise
later shows as "solved, last run: not yet" rather than wiping the record.

The file is the learner's own: ``<workspace>/progress/exercises.json``, written atomically
under a lock, read back only when it belongs to the caller's uid. Nothing is sent anywhere.
"""

from __future__ import annotations

import fcntl
import json
import os
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path

from mlops_helpers import config, storage

SOLVED, REVEALED, NOT_YET, NOT_ATTEMPTED = "solved", "revealed", "not yet", "not attempted"
# A better outcome replaces a worse one as the exercise's status, never the other way.
RANK = {NOT_ATTEMPTED: 0, NOT_YET: 1, REVEALED: 2, SOLVED: 3}


def progress_file(root: Path | None = None) -> Path:
    """Where the record lives: ``<workspace>/progress/exercises.json``."""
    return (root or config.workspace_path()) / "progress" / "exercises.json"


def read(root: Path | None = None) -> dict[str, dict]:
    """The record by exercise name; {} when there is none, or it is not the caller's own."""
    path = progress_file(root)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_CLOEXEC)
    except OSError:  # missing, or a symlink planted in its place
        return {}
    with os.fdopen(fd, encoding="utf-8") as handle:
        if os.fstat(handle.fileno()).st_uid != os.getuid():
            return {}
        try:
            record = json.load(handle)
        except ValueError:  # never half-written (atomic), so only a hand edit does this
            return {}
    return record if isinstance(record, dict) else {}


def record(name: str, outcome: str) -> None:
    """Note ``outcome`` for exercise ``name`` in the workspace's record."""
    if outcome not in RANK:
        raise ValueError(f"unknown outcome {outcome!r}; one of {', '.join(RANK)}")
    root = config.ensure_workspace("progress").parent
    now = datetime.now(UTC).isoformat(timespec="seconds")
    with _locked(root):
        entries = read(root)
        entry = entries.get(name) or {"status": NOT_ATTEMPTED, "runs": 0}
        if RANK[outcome] >= RANK.get(entry.get("status"), 0):
            entry["status"] = outcome
        if outcome in (SOLVED, REVEALED):
            entry.setdefault(f"{outcome.replace(' ', '_')}_at", now)  # when it first happened
        entry.update(last=outcome, last_at=now, runs=int(entry.get("runs", 0)) + 1)
        entries[name] = entry
        text = json.dumps(dict(sorted(entries.items())), indent=1) + "\n"
        storage.atomic_write(progress_file(root), lambda tmp: tmp.write_text(text, "utf-8"))


@contextmanager
def _locked(root: Path) -> Iterator[None]:
    """One writer at a time (two kernels of ``make run`` can check exercises at once)."""
    lock = progress_file(root).with_name(".exercises.lock")
    fd = os.open(lock, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        if os.fstat(fd).st_uid != os.getuid():
            raise PermissionError(f"{config.show_path(lock)} belongs to another user")
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def rows(root: Path | None = None) -> list[dict]:
    """One row per exercise of the workbook, in order, with what this learner's runs recorded."""
    from mlops_helpers import exercises

    entries = read(root)
    table = []
    for name, item in exercises.catalogue().items():
        entry = entries.get(name, {})
        table.append(
            {
                "exercise": name,
                "kind": item.kind,
                "task": item.task,
                "status": entry.get("status", NOT_ATTEMPTED),
                "last run": entry.get("last", ""),
                "when": (
                    entry.get("solved_at") or entry.get("revealed_at") or entry.get("last_at") or ""
                )[:16].replace("T", " "),
            }
        )
    return table


MARK = {SOLVED: "✅", REVEALED: "👀", NOT_YET: "❌", NOT_ATTEMPTED: "📝"}


def summary_line(table: list[dict]) -> str:
    """ "4 of 19 exercises solved by you (2 revealed from solutions/)"."""
    solved = sum(r["status"] == SOLVED for r in table)
    revealed = sum(r["status"] == REVEALED for r in table)
    return f"{solved} of {len(table)} exercises solved by you" + (
        f" ({revealed} more passed with the worked solution)" if revealed else ""
    )


def format_table(table: list[dict]) -> str:
    """The record as text: one line per exercise, then the summary line."""
    lines = []
    for r in table:
        status = r["status"] + (
            f", last run: {r['last run']}" if r["last run"] not in ("", r["status"]) else ""
        )
        when = f"  ({r['when']} UTC)" if r["when"] else ""
        lines.append(f"{MARK[r['status']]} {r['exercise']:>5}  {status:<28} {r['task']}{when}")
    return "\n".join(lines + ["", summary_line(table)])
