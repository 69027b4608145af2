"""Strict readers for every JSON and YAML document the library reads.

``json.loads`` and ``yaml.safe_load`` resolve a duplicated key silently (the
last one wins), so a request that says ``"privilege_tier": 2`` and then
``"privilege_tier": 0`` would be decided as tier 0 while a reviewer reading the
file sees tier 2. They also accept JSON's non-standard ``NaN``/``Infinity``
and raise a bare ``RecursionError`` on deeply nested input. The readers here
refuse all three with a :class:`~helpdesk_policy.errors.DocumentError` that
names the source and, where the parser knows it, the line.

>>> from helpdesk_policy.loading import load_json
>>> load_json('{"a": 1}', source="req.json")
{'a': 1}
>>> load_json('{"a": 1, "a": 2}', source="req.json")
Traceback (most recent call last):
...
helpdesk_policy.errors.DocumentError: req.json: duplicate key 'a'
"""

from __future__ import annotations

import functools
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .errors import DocumentError

if TYPE_CHECKING:
    # PyYAML is imported when a first YAML document is read, not at import:
    # the stock documents read at every start come from a JSON copy
    # (see helpdesk_policy.config.read_mapping_file).
    import yaml

__all__ = ["load_json", "load_yaml", "load_document", "read_text", "MAX_DEPTH"]

#: The deepest nesting of objects and arrays a document may have. Requests,
#: configs and suites are a few levels deep; anything near this is an attack
#: or a mistake, and refusing it early keeps the parsers off Python's
#: recursion limit.
MAX_DEPTH = 64

_KEY_SHOWN = 64


def _shown(key: object) -> str:
    text = repr(key) if not isinstance(key, str) else repr(key[:_KEY_SHOWN])
    return text if len(str(key)) <= _KEY_SHOWN else text[:-1] + "…'"


def _pairs(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _Duplicate(key)
        out[key] = value
    return out


class _Duplicate(ValueError):
    def __init__(self, key: object) -> None:
        super().__init__(key)
        self.key = key


def _no_constant(name: str) -> Any:
    raise ValueError(f"{name} is not valid JSON")


def _depth_exceeded(text: str, limit: int) -> bool:
    """True when brackets nest deeper than ``limit`` (strings skipped); a cheap pre-scan."""
    depth = 0
    in_string = escaped = False
    for ch in text:
        if in_string:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                in_string = False
        elif ch == '"':
            in_string = True
        elif ch in "[{":
            depth += 1
            if depth > limit:
                return True
        elif ch in "]}":
            depth -= 1
    return False


def load_json(text: str, *, source: str = "<json>") -> Any:
    """Parse JSON text, refusing duplicate keys, NaN/Infinity and deep nesting.

    Raises:
        DocumentError: names ``source`` and what is wrong (with the line for a
            syntax error).
    """
    if _depth_exceeded(text, MAX_DEPTH):
        raise DocumentError(source, f"nested deeper than {MAX_DEPTH} levels")
    try:
        return json.loads(text, object_pairs_hook=_pairs, parse_constant=_no_constant)
    except _Duplicate as exc:
        raise DocumentError(source, f"duplicate key {_shown(exc.key)}") from None
    except json.JSONDecodeError as exc:
        raise DocumentError(source, f"not valid JSON: {exc.msg}", line=exc.lineno) from None
    except (ValueError, RecursionError) as exc:
        raise DocumentError(source, f"not valid JSON: {exc}") from None


class _NoDuplicateKeys:
    """A YAML constructor that refuses duplicate mapping keys (mixed into a loader)."""

    _source = "<yaml>"

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            try:
                duplicate = key in seen
            except TypeError:  # an unhashable key: let SafeLoader report it
                continue
            if duplicate:
                raise DocumentError(
                    self._source, f"duplicate key {_shown(key)}", line=key_node.start_mark.line + 1
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)  # type: ignore[misc]


@functools.cache
def _strict_loader() -> type:
    """A SafeLoader that refuses duplicate mapping keys and deep nesting (built when first needed)."""
    import yaml

    class _StrictLoader(_NoDuplicateKeys, yaml.SafeLoader):
        def compose_node(self, parent: Any, index: Any) -> Any:
            self._depth = getattr(self, "_depth", 0) + 1
            try:
                if self._depth > MAX_DEPTH:
                    mark = self.peek_event().start_mark
                    raise DocumentError(self._source, f"nested deeper than {MAX_DEPTH} levels", line=mark.line + 1)
                return super().compose_node(parent, index)
            finally:
                self._depth -= 1

    return _StrictLoader


@functools.cache
def _package_data_loader() -> type | None:
    """A libyaml-backed loader refusing duplicate keys, or None without libyaml.

    For the package's own files only: libyaml composes the document in C,
    where the strict loader's nesting limit cannot run (duplicate keys are
    still refused: constructing is Python).
    """
    import yaml

    base = getattr(yaml, "CSafeLoader", None)
    return None if base is None else type("_PackageDataLoader", (_NoDuplicateKeys, base), {})


def load_yaml(text: str, *, source: str = "<yaml>", package_data: bool = False) -> Any:
    """Parse YAML text safely, refusing duplicate keys and deep nesting.

    Args:
        text: the YAML.
        source: what to call it in errors.
        package_data: the text is one of the files shipped in the package
            (the stock config and reason catalogue, read at every start):
            parsed by libyaml where it is installed, about ten times faster,
            still refusing duplicate keys. Never for a file a user supplies
            (libyaml composes nesting in C, where the depth limit cannot apply).

    Raises:
        DocumentError: names ``source``, the line and what is wrong.
    """
    import yaml

    fast = _package_data_loader() if package_data else None
    loader = fast(text) if fast is not None else _strict_loader()(text)
    loader._source = source
    try:
        return loader.get_single_data()
    except DocumentError:
        raise
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        line = mark.line + 1 if mark is not None else None
        raise DocumentError(source, f"not valid YAML: {exc.problem or exc.context}", line=line) from None
    except (yaml.YAMLError, RecursionError, ValueError) as exc:
        raise DocumentError(source, f"not valid YAML: {exc}") from None
    finally:
        loader.dispose()


def read_text(path: str | Path) -> str:
    """A file's text as UTF-8; a missing, unreadable or non-UTF-8 file is a DocumentError."""
    p = Path(path)
    try:
        return p.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise DocumentError(str(p), f"not UTF-8 text (byte {exc.start})") from None
    except OSError as exc:
        raise DocumentError(str(p), f"cannot read: {exc.strerror or exc}") from None


def load_document(path: str | Path, *, package_data: bool = False) -> Any:
    """Read a ``.json`` file as JSON and anything else as YAML, strictly.

    ``package_data``: the file is one shipped in the package (see :func:`load_yaml`).
    """
    p = Path(path)
    text = read_text(p)
    if p.suffix.lower() == ".json":
        return load_json(text, source=str(p))
    return load_yaml(text, source=str(p), package_data=package_data)
