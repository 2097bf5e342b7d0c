"""YAML files of the workbook (pipelines, batch grids): read with line numbers, checked
before anything runs, errors naming the file and line."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import yaml

from mlops_helpers.errors import WorkbookInputError
from mlops_helpers.parameters import NAME_RULE, ParameterError, check_name, is_name

LINE = "__line__"


class SpecError(WorkbookInputError, ValueError):
    """A pipeline or grid file is wrong; the message names the file, the line and the fix."""


class _LineLoader(yaml.SafeLoader):
    """A safe loader that records each mapping's line under ``__line__``."""


def _mapping_with_line(loader: _LineLoader, node: yaml.MappingNode) -> dict:
    _refuse_duplicate_keys(loader, node)
    mapping = loader.construct_mapping(node, deep=True)
    mapping[LINE] = node.start_mark.line + 1
    return mapping


def _refuse_duplicate_keys(loader: _LineLoader, node: yaml.MappingNode) -> None:
    """A key written twice in one mapping is an error: YAML would silently keep the last."""
    first_line: dict[Any, int] = {}
    for key_node, _ in node.value:
        if key_node.tag == "tag:yaml.org,2002:merge":
            continue  # `<<: *base` then a key overriding it is the point of a merge
        key = loader.construct_object(key_node, deep=True)
        try:
            earlier = first_line.get(key)
        except TypeError:
            continue  # an unhashable key: construct_mapping reports it
        if earlier is not None:
            raise yaml.constructor.ConstructorError(
                None,
                None,
                f"key {key!r} is written twice (first on line {earlier}); keep one of them",
                key_node.start_mark,
            )
        first_line[key] = key_node.start_mark.line + 1


_LineLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping_with_line)


def read_yaml(path: Path) -> Any:
    """Parse any YAML document, keeping line numbers and refusing duplicate keys; SpecError
    for a missing file or bad YAML, naming the file and line."""
    path = Path(path)
    if not path.is_file():
        raise SpecError(f"{path}: file not found")
    try:
        return yaml.load(path.read_text(), Loader=_LineLoader)  # noqa: S506 - safe loader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        at = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise SpecError(f"{where}: not valid YAML: {problem}{at}") from None


def load_yaml(path: Path) -> dict:
    """:func:`read_yaml` of a file that must hold a mapping at the top."""
    data = read_yaml(path)
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


@contextmanager
def at(source: str) -> Iterator[None]:
    """Re-raise a ParameterError of the block as a SpecError starting with ``source``
    (``file:line``), so a bad value read from a file names where it was written."""
    try:
        yield
    except ParameterError as exc:
        raise SpecError(f"{source}: {exc}") from None


def spec_name(path: Path, node: Any, what: str, value: Any) -> str:
    """``value`` if it is a valid folder name (:func:`parameters.check_name`); else SpecError
    naming ``file:line`` of ``node``, the value and the allowed characters."""
    try:
        return check_name(what, value)
    except ParameterError as exc:
        hint = f"; quote it: '{value}'" if isinstance(value, (int, float)) else ""
        raise SpecError(f"{where(path, node)}: {exc}{hint}") from None


def file_name(path: Path, spec: dict, what: str) -> str:
    """A pipeline's or grid's (``what``) ``name:``, else the file's stem; SpecError if the
    name is not a valid folder name, saying how to give one."""
    if "name" in spec:
        return spec_name(path, spec, f"{what} name", spec["name"])
    if not is_name(path.stem):
        raise SpecError(
            f"{where(path, spec)}: the {what} has no `name:` and its file name "
            f"{path.stem!r} is not {NAME_RULE}; add a `name:` line (or rename the file)"
        )
    return path.stem


def file_text(what: str, value: Any) -> str:
    """``value`` if a str: ParameterError for a number, with the quoted form to write.

    YAML has already turned ``03`` into the int 3 (and ``010`` into 8, while ``08`` stays
    text), so the text that was written is lost: reading 3 as "03" would be a guess that
    ``010`` shows to be wrong. Asking for quotes is the one reading that is never wrong.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 100:
        raise ParameterError(
            f"{what} must be text, but YAML reads it as the number {value}; "
            f"quote it: {what}: '{value:02d}'"
        )
    raise ParameterError(f"{what} must be text, got {value!r}; quote it: {what}: '...'")


def notebook_beside(path: Path, given: Any) -> Path:
    """The notebook a spec file names: a path relative to the file, else a workbook notebook
    (``03``, ``03_automated_etl``) or a path from the working directory."""
    from mlops_helpers.workbook import curriculum

    given = file_text("notebook", given)
    beside = Path(path).parent / str(given)
    return curriculum.find_notebook(str(beside) if beside.is_file() else str(given))
