"""The ``mlops-workbook`` command: run the workbook headless, list parameters, refresh notebooks."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from mlops_helpers.parameters import ParameterError


def _load_param_file(path: str) -> dict[str, Any]:
    import yaml

    file = Path(path)
    if not file.is_file():
        raise ParameterError(f"parameter file {path} not found; pass an existing YAML file to -f")
    try:
        data = yaml.safe_load(file.read_text()) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f" line {mark.line + 1}" if mark else ""
        raise ParameterError(f"parameter file {path}{line} is not valid YAML: {exc}") from None
    if not isinstance(data, dict) or not all(isinstance(k, str) for k in data):
        raise ParameterError(
            f"parameter file {path} must be a mapping of NAME: VALUE, got {type(data).__name__}"
        )
    return data


def _selected(names: list[str]) -> list[Path]:
    from mlops_helpers import runner

    return [runner.find_notebook(n) for n in names] if names else runner.list_notebooks()


def cmd_run(args: argparse.Namespace) -> int:
    """Run the selected notebooks (all by default) in order; exit 1 naming the failure."""
    from mlops_helpers import runner

    notebooks = _selected(args.notebooks)
    file_values: dict[str, Any] = {}
    for f in args.param_file or []:
        file_values.update(_load_param_file(f))
    label = f"-f {Path(args.param_file[-1]).name}" if args.param_file else "-f"
    plan = runner.plan_parameters(notebooks, dict(args.param or []), file_values, label)
    run_dir = runner.new_run_dir()
    print(f"run folder: {run_dir}", flush=True)
    results = runner.run_workbook(notebooks, plan, run_dir, progress=not args.no_progress)
    print(runner.summary_table(results))
    failed = [r for r in results if r.status == "failed"]
    if failed:
        r = failed[0]
        print(f"\nFAILED {r.notebook} at {r.error}", file=sys.stderr)
        print(f"executed notebook kept at {r.output}", file=sys.stderr)
        return 1
    print(f"\nall {len(results)} notebooks ran; executed copies in {run_dir}")
    return 0


def cmd_params(args: argparse.Namespace) -> int:
    """Print a notebook's parameters: name, type, default, help."""
    from mlops_helpers import runner

    nb = runner.find_notebook(args.notebook)
    specs = runner.notebook_parameters(nb)
    print(f"{nb.stem}: {len(specs)} parameters")
    for s in specs.values():
        print(f"  {s.name:<24} {s.kind:<6} default {s.default:<14} {s.help}")
    return 0


def cmd_refresh(args: argparse.Namespace) -> int:
    """Re-execute notebooks in place so their stored outputs match what nbval checks."""
    from mlops_helpers import runner

    for nb in _selected(args.notebooks):
        print(f"refreshing {nb.name}", flush=True)
        runner.refresh_notebook(nb)
    return 0


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface."""
    parser = argparse.ArgumentParser(
        prog="mlops-workbook", description="Run the MLOps workbook's notebooks headless."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="execute the notebooks in order into a new run folder")
    run.add_argument("notebooks", nargs="*", help="notebooks to run (default: all), e.g. 03")
    run.add_argument(
        "-p",
        "--param",
        nargs=2,
        action="append",
        metavar=("NAME", "VALUE"),
        help="set a parameter in every selected notebook that declares it",
    )
    run.add_argument(
        "-f",
        "--param-file",
        action="append",
        metavar="FILE",
        help="YAML file of NAME: VALUE parameters (-p wins over -f)",
    )
    run.add_argument("--no-progress", action="store_true", help="no progress bar")
    run.set_defaults(func=cmd_run)
    params = sub.add_parser("params", help="list a notebook's parameters")
    params.add_argument("notebook", help="e.g. 03 or 03_automated_etl")
    params.set_defaults(func=cmd_params)
    refresh = sub.add_parser(
        "refresh", help="re-execute committed notebooks in place (what `make notebooks` does)"
    )
    refresh.add_argument("notebooks", nargs="*", help="notebooks to refresh (default: all)")
    refresh.set_defaults(func=cmd_refresh)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point of ``mlops-workbook``."""
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except ParameterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
