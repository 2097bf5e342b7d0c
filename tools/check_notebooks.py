"""Notebook hygiene: what nbval and a reader on a code host need from a committed notebook.

Usage: python tools/check_notebooks.py [NOTEBOOK ...]   (default: notebooks/*.ipynb)
Prints one line per problem and exits 1 if there is any.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
VOLATILE = re.compile(
    r"""((?:^|[\s'"(=])/(?:home|root|tmp|work|Users|var|opt)/[\w./-]+"""
    r"""|\b[0-9a-f]{32}\b|m-[0-9a-f]{32}|\b0x[0-9a-f]{8,}|Warning:|Traceback)"""
)
SKIP_TAGS = {"nbval-ignore-output", "nbval-skip"}


def _text(out: dict) -> str:
    parts = [out.get("text", ""), out.get("data", {}).get("text/plain", "")]
    return "\n".join("".join(p) if isinstance(p, list) else str(p) for p in parts)


def problems(path: Path) -> list[str]:
    """Every hygiene problem of one notebook, as readable lines."""
    nb = json.loads(path.read_text())
    found = []
    if nb.get("metadata", {}).get("kernelspec", {}).get("name") != "python3":
        found.append("kernelspec name must be 'python3'")
    cells = nb.get("cells", [])
    tagged = [c for c in cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(tagged) != 1:
        found.append(f"needs exactly one cell tagged 'parameters', found {len(tagged)}")
    if not cells or not "".join(cells[0].get("source", "")).lstrip().startswith("# "):
        found.append("first cell must be markdown starting with an H1 title")
    counts = [c.get("execution_count") for c in cells if c.get("cell_type") == "code"]
    if None in counts or counts != sorted(counts):
        found.append("not executed top to bottom: run `make notebooks`")
    for i, cell in enumerate(cells):
        meta = cell.get("metadata", {})
        if "execution" in meta or "papermill" in meta:
            found.append(f"cell {i}: timing metadata stored: run `make notebooks`")
        tags = set(meta.get("tags", []))
        for out in cell.get("outputs", []):
            if out.get("output_type") == "error" and "raises-exception" not in tags:
                found.append(f"cell {i}: error output {out.get('ename')}")
            if out.get("name") == "stderr" and not tags & SKIP_TAGS:
                found.append(f"cell {i}: stderr output (warnings or logs) is compared by nbval")
            match = VOLATILE.search(_text(out))
            if match and not tags & SKIP_TAGS:
                found.append(f"cell {i}: volatile text in output: {match.group(0).strip()[:40]}")
    return found


def main(argv: list[str]) -> int:
    """Check the given notebooks (default: all committed ones)."""
    paths = [Path(a) for a in argv] or sorted((ROOT / "notebooks").glob("*.ipynb"))
    bad = 0
    for path in paths:
        for problem in problems(path):
            bad += 1
            print(f"{path.name}: {problem}")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
