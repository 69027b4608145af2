"""Payload paths: where a value sits in a ticketing system's webhook payload.

A small, dotted, JSONPath-like language, enough for the three systems'
payloads and no more (no wildcards, no recursion, no expressions), so that a
path always names at most one value:

* ``number``, ``caller_id.user_name``: keys of nested objects;
* ``issue.fields.customfield_10010.requestType.name``: Jira's custom fields;
* ``variables["access role"]``: a key that is not a plain name, quoted;
* ``comments[0].body``: a list index (from 0; ``[-1]`` is the last);
* ``ticket.custom_fields[id=360001234567].value``: the one element of a list
  of objects whose ``id`` is that value (Zendesk's custom fields). The
  literal matches a number or the same digits as a string; more than one
  match is an error (which one would decide?), none is a missing value.

>>> path = PayloadPath.parse("ticket.custom_fields[id=3601].value")
>>> path.resolve({"ticket": {"custom_fields": [{"id": 3600, "value": "a"}, {"id": 3601, "value": "b"}]}})
(True, 'b')
>>> PayloadPath.parse("a.b").resolve({"a": {}})
(False, None)
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["PayloadPath", "PathSyntaxError", "PayloadShapeError", "shape_of"]

#: A plain key: what the three systems' field names look like (``sys_id``,
#: ``customfield_10010``, ``u_affected_user``, ``@timestamp``, ``x-id``).
_NAME = r"[A-Za-z_$@][A-Za-z0-9_$@-]*"
_TOKEN = re.compile(
    rf"""
    (?P<name>{_NAME})
    | \[ \s* (?P<index>-?[0-9]+) \s* \]
    | \[ \s* (?P<quote>["']) (?P<qkey>(?:(?!(?P=quote)).)+) (?P=quote) \s* \]
    | \[ \s* (?P<mkey>{_NAME}) \s* = \s* (?:(?P<mnum>-?[0-9]+) | (?P<mq>["']) (?P<mstr>(?:(?!(?P=mq)).)*) (?P=mq)
          | (?P<mbare>[A-Za-z0-9_.:@-]+)) \s* \]
    | (?P<dot>\.)
    """,
    re.VERBOSE,
)

#: The longest path accepted (a path is written by a person, in a mapping file).
MAX_PATH_LENGTH = 512


class PathSyntaxError(ValueError):
    """A payload path is not written in the path language (the message says where)."""


class PayloadShapeError(ValueError):
    """The payload does not have the shape a path expects (never quotes a value)."""


@dataclass(frozen=True)
class _Key:
    name: str


@dataclass(frozen=True)
class _Index:
    index: int


@dataclass(frozen=True)
class _Match:
    key: str
    literal: str | int


_Step = _Key | _Index | _Match


@dataclass(frozen=True)
class PayloadPath:
    """A parsed payload path; ``text`` is how it was written."""

    text: str
    steps: tuple[_Step, ...]

    @classmethod
    def parse(cls, text: str) -> PayloadPath:
        """Parse ``text``.

        Raises:
            PathSyntaxError: naming the position of the first character that is
                not part of a path.
        """
        if not isinstance(text, str) or not text:
            raise PathSyntaxError("must be a non-empty string such as 'fields.contact_type'")
        if len(text) > MAX_PATH_LENGTH:
            raise PathSyntaxError(f"is longer than {MAX_PATH_LENGTH} characters")
        steps: list[_Step] = []
        pos = 0
        expect_step = True  # at the start and after a dot, a step must follow
        while pos < len(text):
            m = _TOKEN.match(text, pos)
            if m is None:
                raise PathSyntaxError(f"unexpected character at position {pos + 1}")
            if m.group("dot"):
                if expect_step:
                    raise PathSyntaxError(f"a '.' at position {pos + 1} has no key before it")
                expect_step = True
            elif m.group("name") is not None:
                if not expect_step:
                    raise PathSyntaxError(f"a key at position {pos + 1} needs a '.' before it")
                steps.append(_Key(m.group("name")))
                expect_step = False
            else:
                if expect_step and steps:
                    raise PathSyntaxError(f"a '[' at position {pos + 1} follows a '.': write a[0], not a.[0]")
                if m.group("index") is not None:
                    steps.append(_Index(int(m.group("index"))))
                elif m.group("qkey") is not None:
                    steps.append(_Key(m.group("qkey")))
                elif m.group("mnum") is not None:
                    steps.append(_Match(m.group("mkey"), int(m.group("mnum"))))
                else:
                    literal = m.group("mstr") if m.group("mstr") is not None else m.group("mbare")
                    steps.append(_Match(m.group("mkey"), literal))
                expect_step = False
            pos = m.end()
        if expect_step:
            raise PathSyntaxError("ends with '.'")
        return cls(text, tuple(steps))

    def resolve(self, payload: Any) -> tuple[bool, Any]:
        """``(found, value)``: the value at this path, ``(False, None)`` when it is not there.

        A JSON ``null`` reads as not there: the systems send ``null`` (Jira,
        Zendesk) or leave a field out for "no value".

        Raises:
            PayloadShapeError: a step meets a value of the wrong kind (a key
                looked up in a list, an index in an object), or a ``[key=…]``
                matches more than one element. The message names the path up
                to that step and the kind of value found, never the value.
        """
        node = payload
        for i, step in enumerate(self.steps):
            where = self._prefix(i)
            if isinstance(step, _Key):
                if not isinstance(node, Mapping):
                    raise PayloadShapeError(f"expected an object at {where}, found {shape_of(node)}")
                if step.name not in node:
                    return False, None
                node = node[step.name]
            elif isinstance(step, _Index):
                if not _is_list(node):
                    raise PayloadShapeError(f"expected a list at {where}, found {shape_of(node)}")
                if not -len(node) <= step.index < len(node):
                    return False, None
                node = node[step.index]
            else:
                if not _is_list(node):
                    raise PayloadShapeError(f"expected a list at {where}, found {shape_of(node)}")
                found = [item for item in node
                         if isinstance(item, Mapping) and _matches(item.get(step.key), step.literal)]
                if len(found) > 1:
                    raise PayloadShapeError(f"[{step.key}=…] matches {len(found)} elements of {where}, not one")
                if not found:
                    return False, None
                node = found[0]
            if node is None:
                return False, None
        return True, node

    def _prefix(self, upto: int) -> str:
        """The path up to (not including) step ``upto``, for messages; ``(root)`` for none."""
        text = ""
        for step in self.steps[:upto]:
            if isinstance(step, _Key):
                plain = _PLAIN.fullmatch(step.name) is not None
                text += (("." if text else "") + step.name) if plain else f"[{step.name!r}]"
            elif isinstance(step, _Index):
                text += f"[{step.index}]"
            else:
                text += f"[{step.key}=…]"
        return f"'{text}'" if text else "the payload's root"

    def __str__(self) -> str:
        return self.text


_PLAIN = re.compile(_NAME)


def _is_list(value: Any) -> bool:
    return isinstance(value, Sequence) and not isinstance(value, str | bytes | bytearray)


def _matches(value: Any, literal: str | int) -> bool:
    # Zendesk's ids are numbers in JSON and often strings elsewhere: "3601" and 3601 are one id.
    if isinstance(value, bool):
        return False
    if isinstance(literal, int):
        return (isinstance(value, int) and value == literal) or (isinstance(value, str) and value == str(literal))
    return isinstance(value, str) and value == literal


def shape_of(value: Any) -> str:
    """What kind of value ``value`` is, in words, without quoting it (it may be a secret).

    >>> shape_of("hunter2"), shape_of(3), shape_of([1, 2]), shape_of(None)
    ('a string of 7 characters', 'an integer', 'a list of 2 items', 'null')
    """
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a number"
    if isinstance(value, str):
        return "an empty string" if not value else f"a string of {len(value)} character{'s' if len(value) != 1 else ''}"
    if isinstance(value, Mapping):
        return f"an object with {len(value)} key{'s' if len(value) != 1 else ''}"
    if _is_list(value):
        return f"a list of {len(value)} item{'s' if len(value) != 1 else ''}"
    return f"a {type(value).__name__}"
