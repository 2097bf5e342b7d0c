"""Fresh set-up time and `make test` time, on a fresh clone of this repository's HEAD.

    .venv/bin/python benchmarks/setup_and_test.py [--skip-test]

Set-up = `make install` in the clone: a new virtual environment and the locked install
(uv's package cache is warm after the first install on a machine; the first ever install
also downloads). Test = `make test` in the same clone, after install.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def timed(command: list[str], cwd: Path) -> tuple[float, str]:
    """Wall seconds of a command, and its pytest summary line (else its last line)."""
    start = time.perf_counter()
    done = subprocess.run(command, cwd=cwd, capture_output=True, text=True)
    elapsed = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(
            f"{' '.join(command)} failed:\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}"
        )
    lines = [ln for ln in done.stdout.splitlines() if ln.strip()]
    summary = [ln for ln in lines if " passed" in ln and ln.startswith("=")]
    return elapsed, (summary or lines or [""])[-1]


def main() -> int:
    """Clone, install, test; print the seconds."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--skip-test", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        clone = Path(tmp) / "clone"
        subprocess.run(["git", "clone", "-q", str(ROOT), str(clone)], check=True)
        install, _ = timed(["make", "install"], clone)
        print(f"command: {' '.join(sys.argv)}")
        print(f"fresh set-up (make install on a clean clone, warm package cache): {install:.1f} s")
        if not args.skip_test:
            test, last = timed(["make", "test"], clone)
            print(f"make test after install: {test:.1f} s  ({last.strip('= ')})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
