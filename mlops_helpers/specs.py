"""YAML files of the workbook (pipelines, batch grids): read with line numbers, checked
before anything runs, errors naming the file and line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from mlops_helpers.errors import WorkbookInputError

LINE = "__line__"


class SpecError(WorkbookInputError, ValueError):
    """A pipeline or grid file is wrong; the message names the file, the line and the fix."""


class _LineLoader(yaml.SafeLoader):
    """A safe loader that records each mapping's line under ``__line__``."""


def _mapping_with_line(loader: _LineLoader, node: yaml.MappingNode) -> dict:
    mapping = loader.construct_mapping(node, deep=True)
    mapping[LINE] = node.start_mark.line + 1
    return mapping


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_with_line)


def load_yaml(path: Path) -> dict:
    """Parse a YAML mapping, keeping line numbers; SpecError for a missing file or bad YAML."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"{path}: file not found")
    try:
        data = yaml.load(path.read_text(), Loader=_LineLoader)  # noqa: S506 - safe loader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError(f"{where}: not valid YAML: {problem}") from None
    if not isinstance(data, dict):
        raise SpecError(f"{path}:1: expected a mapping at the top, got {type(data).__name__}")
    return data


def load_spec(path: Path, keys: set[str]) -> dict:
    """:func:`load_yaml`, then SpecError for any top-level key not in ``keys``."""
    spec = load_yaml(path)
    for key in set(spec) - keys - {LINE}:
        raise SpecError(f"{where(path, spec)}: unknown key {key!r}; use {sorted(keys)}")
    return spec


def where(path: Path, node: Any) -> str:
    """``file:line`` of a mapping read by :func:`load_yaml` (``file`` alone otherwise)."""
    line = node.get(LINE) if isinstance(node, dict) else None
    return f"{path}:{line}" if line else str(path)


def clean(node: Any) -> Any:
    """A copy without the ``__line__`` bookkeeping."""
    if isinstance(node, dict):
        return {k: clean(v) for k, v in node.items() if k != LINE}
    if isinstance(node, list):
        return [clean(v) for v in node]
    return node


def file_value(name: str, value: Any, spec, source: str) -> Any:
    """A parameter value read from a YAML file, typed and checked against the notebook's
    declaration ``spec``; SpecError naming ``source`` (file:line) when it is wrong."""
    from mlops_helpers import runner
    from mlops_helpers.parameters import ParameterError

    try:
        return runner.typed_value(name, value, spec, source)
    except ParameterError as exc:
        raise SpecError(f"{source}: {exc}") from None


def notebook_beside(path: Path, given: Any) -> Path:
    """The notebook a spec file names: a path relative to the file, else a workbook notebook
    (``03``, ``03_automated_etl``) or a path from the working directory."""
    from mlops_helpers import runner

    beside = Path(path).parent / str(given)
    return runner.find_notebook(str(beside) if beside.is_file() else str(given))
