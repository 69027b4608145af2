"""Rego values in Python: representation, equality, OPA's total order, JSON in and out.

The compiled policy works on a Python representation chosen so that Python's
own ``==`` and ``hash`` *are* Rego equality, which lets generated code use
plain ``==``, ``in`` and native ``frozenset``/``dict`` containers:

======== =====================================================================
Rego     Python
======== =====================================================================
null     ``None``
boolean  :data:`TRUE` / :data:`FALSE`, two singletons of :class:`RegoBool`.
         Not Python's ``bool``: ``True == 1`` and ``hash(True) == hash(1)`` in
         Python, but ``true != 1`` in Rego, and ``{true, 1}`` has two elements.
number   ``int`` or ``float`` (``1 == 1.0`` in both languages)
string   ``str``
array    ``tuple`` (hashable, so arrays can be set elements and object keys)
object   :class:`Obj`, a ``dict`` subclass that is hashable
set      ``frozenset``
======== =====================================================================

:data:`UNDEFINED` stands for Rego's *undefined*, which is not a value: it never
appears inside a container.

OPA's total order (``null < boolean < number < string < array < object <
set``) is :func:`compare`; :func:`sort_key` makes it usable with ``sorted``.
:func:`from_json` converts a JSON-compatible document into this
representation, :func:`to_json` converts back the way OPA serialises a value
(sets become arrays in OPA's order, object keys sorted).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from typing import Any

__all__ = [
    "RegoBool",
    "TRUE",
    "FALSE",
    "Obj",
    "UNDEFINED",
    "rego_bool",
    "from_json",
    "to_json",
    "to_json_document",
    "compare",
    "sort_key",
    "sorted_values",
    "type_name",
    "is_number",
    "format_number",
    "to_rego_text",
]


class RegoBool:
    """A Rego boolean: two singletons, :data:`TRUE` and :data:`FALSE`.

    Equality is identity and the hash is the object's own, so a Rego boolean
    never equals (nor collides in a set with) a number, unlike Python's bool.
    """

    __slots__ = ("value",)

    def __init__(self, value: bool) -> None:
        self.value = value

    def __bool__(self) -> bool:
        return self.value

    def __repr__(self) -> str:
        return "TRUE" if self.value else "FALSE"

    def __reduce__(self) -> str:
        # Pickling keeps the singletons singletons.
        return "TRUE" if self.value else "FALSE"


TRUE = RegoBool(True)
FALSE = RegoBool(False)


class _Undefined:
    """Rego's *undefined*: the result of a failed lookup or a rule with no value."""

    __slots__ = ()

    def __repr__(self) -> str:
        return "UNDEFINED"

    def __reduce__(self) -> str:
        return "UNDEFINED"


UNDEFINED: Any = _Undefined()


class Obj(dict):  # type: ignore[type-arg]
    """A Rego object: a ``dict`` that can be hashed (a set element, an object key).

    Never mutated once built and shared, so hashing its items is sound, and
    the hash is kept after its first computation: a decision hashes the same
    objects (reasons, obligations) several times as they move from set to
    set, and a memoised function's result is hashed again in every decision
    that reuses it.

    The kept hash lives in the instance ``__dict__``, created only when an
    object is first hashed; until then ``_hash`` reads the class default,
    None, without the cost of an AttributeError (a ``__slots__`` member
    raises one until set, which made every first hash dearer than the
    computation it saves). A hash of strings differs between processes, so
    pickling and copying (see :meth:`__reduce__`) leave it behind.
    """

    __slots__ = ("__dict__",)

    #: The object's hash once computed; None before (the class default).
    _hash: int | None = None

    def __hash__(self) -> int:  # type: ignore[override]
        cached = self._hash
        if cached is None:
            cached = self._hash = hash(frozenset(self.items()))
        return cached

    def __reduce__(self) -> tuple[type[Obj], tuple[dict[Any, Any]]]:
        # The members only: a kept hash is valid in this process alone.
        return (Obj, (dict(self),))

    def __repr__(self) -> str:
        return f"Obj({dict.__repr__(self)})"


def rego_bool(flag: bool) -> RegoBool:
    """The Rego boolean for a Python truth value."""
    return TRUE if flag else FALSE


def is_number(value: Any) -> bool:
    """Whether ``value`` is a Rego number (an int or float, never a boolean)."""
    kind = type(value)
    return kind is int or kind is float


# --- JSON in and out -----------------------------------------------------------


#: The types that are their own Rego and JSON representation.
_SCALARS = frozenset({str, int, float, type(None)})
#: ``_STR_ONLY.issuperset(map(type, obj))``: whether every key of an object is a
#: string (twice as fast as ``all(...)`` over a generator).
_STR_ONLY = frozenset({str})


def from_json(doc: Any) -> Any:
    """Convert a JSON-compatible Python document into the Rego representation.

    Tuples and (frozen)sets are accepted as arrays and sets, so a value that is
    already in the Rego representation converts to itself.

    Raises:
        TypeError: a value with no JSON meaning (a date, an object, a NaN key…).
    """
    kind = type(doc)
    if kind in _SCALARS:
        return doc
    if kind is bool:
        return TRUE if doc else FALSE
    if kind is dict or kind is Obj:
        # Scalars are converted inline: most members of a request are strings.
        return Obj({(k if type(k) is str else from_json(k)): (v if type(v) in _SCALARS else from_json(v))
                    for k, v in doc.items()})
    if kind is list or kind is tuple:
        return tuple([v if type(v) in _SCALARS else from_json(v) for v in doc])
    if kind is RegoBool:
        return doc
    if kind is frozenset or kind is set:
        return frozenset(from_json(v) for v in doc)
    if isinstance(doc, bool):
        return TRUE if doc else FALSE
    if isinstance(doc, int):
        return int(doc)
    if isinstance(doc, float):
        return float(doc)
    if isinstance(doc, str):
        return str(doc)
    if isinstance(doc, dict):
        return Obj({from_json(k): from_json(v) for k, v in doc.items()})
    if isinstance(doc, (list, tuple)):
        return tuple(from_json(v) for v in doc)
    raise TypeError(f"not a JSON value: {kind.__name__}")


def to_json(value: Any) -> Any:
    """Convert a Rego value into plain JSON-compatible Python, as OPA serialises it.

    Sets become lists sorted in OPA's order; object keys come in OPA's order
    (non-string keys are kept as Python values, since OPA would stringify them
    only when serialising to JSON text).
    """
    kind = type(value)
    if kind in _SCALARS:
        return value
    if kind is RegoBool:
        return value.value
    # Members that are scalars (most of them) are converted inline, without a call.
    if kind is tuple:
        return [v if type(v) in _SCALARS else to_json(v) for v in value]
    if kind is Obj or kind is dict:
        if _STR_ONLY.issuperset(map(type, value)):
            return {k: (v if type(v) in _SCALARS else to_json(v)) for k, v in sorted(value.items())}
        return {to_json(k): to_json(value[k]) for k in sorted_values(value.keys())}
    if kind is frozenset:
        return [v if type(v) in _SCALARS else to_json(v) for v in sorted_values(value)]
    raise TypeError(f"not a Rego value: {kind.__name__}")


def to_json_document(value: Any) -> Any:
    """:func:`to_json`, specialised for a document such as a policy's decision.

    Gives exactly what :func:`to_json` gives (the same keys in the same order,
    the same values, the same list orders) with fewer calls, for the shape a
    decision document has: an object with string keys whose members are
    scalars, arrays of scalars, nested such objects, and sets of such objects
    (reasons, obligations). A set of objects whose smallest key is the same
    in every element, with distinct string (or distinct number) values under
    it, is OPA-ordered by that value alone (as
    :func:`_sort_objects_by_first_member` argues), so each element is
    converted once, in storage order, and the converted list sorted. Anything
    else is handed to :func:`to_json`.

    Raises:
        TypeError: as :func:`to_json`, for a value that is not a Rego value.
    """
    if type(value) is not Obj or not _STR_ONLY.issuperset(map(type, value)):
        return to_json(value)
    return _document_object(value)


def _document_object(value: Obj) -> dict[str, Any]:
    # ``value`` is an Obj whose keys are all strings (checked by the caller).
    # Members that are scalars (most of them) are taken inline, without a call.
    out: dict[str, Any] = {}
    for key in sorted(value):
        member = value[key]
        out[key] = member if type(member) in _SCALARS else _document_member(member)
    return out


def _document_member(member: Any) -> Any:
    """A member of a document that is not a scalar, as :func:`to_json` converts it."""
    kind = type(member)
    if kind is RegoBool:
        return member.value
    if kind is tuple:
        return list(member) if _SCALARS.issuperset(map(type, member)) else to_json(member)
    if kind is frozenset:
        return _document_set(member)
    if kind is Obj and _STR_ONLY.issuperset(map(type, member)):
        return _document_object(member)
    return to_json(member)


def _document_set(members: frozenset[Any]) -> list[Any]:
    """A set as :func:`to_json` converts it; one pass for a set of objects keyed as reasons are."""
    if len(members) < 2:
        return to_json(members)  # type: ignore[no-any-return]
    rows: list[dict[str, Any]] = []
    firsts: set[Any] = set()
    first_key: str | None = None
    first_kind: str | None = None
    for item in members:
        if type(item) is not Obj or not item or not _STR_ONLY.issuperset(map(type, item)):
            return to_json(members)  # type: ignore[no-any-return]
        keys = sorted(item)
        key = keys[0]
        row: dict[str, Any] = {}
        for k in keys:
            member = item[k]
            row[k] = member if type(member) in _SCALARS else _document_member(member)
        kind = _ORDER_KIND.get(type(row[key]))
        if first_key is None:
            first_key, first_kind = key, kind
        if kind is None or key != first_key or kind != first_kind:
            # Not ordered by one member of one kind: OPA's order needs the general comparison.
            return to_json(members)  # type: ignore[no-any-return]
        firsts.add(row[key])
        rows.append(row)
    if len(firsts) != len(rows):
        # Two elements agree on the first member (1 and 1.0 agree too): the order needs the later ones.
        return to_json(members)  # type: ignore[no-any-return]
    rows.sort(key=lambda row: row[first_key])
    return rows


#: The kinds of first-member values that order a set of objects alone: strings,
#: or numbers (never a mix: OPA orders every number before every string).
_ORDER_KIND: dict[type, str] = {str: "string", int: "number", float: "number"}


# --- OPA's total order ---------------------------------------------------------

_RANK: dict[type, int] = {
    type(None): 0,
    RegoBool: 1,
    int: 2,
    float: 2,
    str: 3,
    tuple: 4,
    Obj: 5,
    dict: 5,
    frozenset: 6,
}


def compare(a: Any, b: Any) -> int:
    """OPA's total order on values: -1, 0 or 1. Never raises for Rego values.

    Types order ``null < boolean < number < string < array < object < set``;
    arrays compare element by element then by length; objects by their keys
    in sorted order (key, then value, pair by pair) then by size; sets by
    their sorted elements then by size, as OPA's ``ast.Compare`` does.
    """
    ra = _RANK[type(a)]
    rb = _RANK[type(b)]
    if ra != rb:
        return -1 if ra < rb else 1
    if ra == 2 or ra == 3:
        return -1 if a < b else (1 if a > b else 0)
    if ra == 0:
        return 0
    if ra == 1:
        return (a.value > b.value) - (a.value < b.value)
    if ra == 4:
        return _compare_sequences(a, b)
    if ra == 5:
        keys_a = sorted_values(a.keys())
        keys_b = sorted_values(b.keys())
        for ka, kb in zip(keys_a, keys_b):
            order = compare(ka, kb)
            if order:
                return order
            order = compare(a[ka], b[kb])
            if order:
                return order
        return (len(a) > len(b)) - (len(a) < len(b))
    return _compare_sequences(sorted_values(a), sorted_values(b))


def _compare_sequences(a: Any, b: Any) -> int:
    for x, y in zip(a, b):
        order = compare(x, y)
        if order:
            return order
    return (len(a) > len(b)) - (len(a) < len(b))


def sort_key(value: Any) -> Any:
    """A key for ``sorted`` that orders values as :func:`compare` does, without pairwise calls.

    Every value maps to a tuple whose first element is its type's rank, so
    values of different types never meet in a Python comparison. Python
    compares tuples element by element and then by length, which is exactly
    how OPA compares arrays, objects (their (key, value) pairs in key order)
    and sets (their sorted elements).
    """
    kind = type(value)
    if kind is str:
        return (3, value)
    if kind is int or kind is float:
        return (2, value)
    if value is None:
        return (0,)
    if kind is RegoBool:
        return (1, value.value)
    if kind is tuple:
        return (4, tuple([sort_key(v) for v in value]))
    if kind is Obj or kind is dict:
        keys = sorted([sort_key(k) for k in value]) if not _STR_ONLY.issuperset(map(type, value)) else None
        if keys is None:
            return (5, tuple([((3, k), sort_key(value[k])) for k in sorted(value)]))
        by_key = {sort_key(k): k for k in value}
        return (5, tuple([(key, sort_key(value[by_key[key]])) for key in keys]))
    if kind is frozenset:
        return (6, tuple(sorted([sort_key(v) for v in value])))
    raise TypeError(f"not a Rego value: {kind.__name__}")


def sorted_values(values: Iterable[Any]) -> list[Any]:
    """The values in OPA's order; a fast path when all are strings or all numbers."""
    items = list(values)
    if not items:
        return items
    first = type(items[0])
    if first is str:
        if all(type(v) is str for v in items):
            items.sort()
            return items
    elif first is int or first is float:
        if all(type(v) is int or type(v) is float for v in items):
            items.sort()
            return items
    elif first is Obj and len(items) > 1 and _sort_objects_by_first_member(items):
        return items
    items.sort(key=sort_key)
    return items


def _sort_objects_by_first_member(items: list[Any]) -> bool:
    """Sort objects in place by their first member's value when that alone decides OPA's order.

    OPA compares objects (key, value) pair by pair in key order. When every
    item is an object with string keys whose smallest key is the same, and
    the values under that key are distinct strings (or distinct numbers), the
    first pair already differs between any two items, so ordering by that
    value is OPA's order (a set of reasons, each with a distinct ``code``).
    Returns False, leaving ``items`` as they were, when that does not hold.
    """
    first_keys = set()
    for item in items:
        if type(item) is not Obj or not item or not _STR_ONLY.issuperset(map(type, item)):
            return False
        first_keys.add(min(item))
        if len(first_keys) > 1:
            return False
    (key,) = first_keys
    values = [item[key] for item in items]
    kind = type(values[0])
    if kind is str:
        if not all(type(v) is str for v in values):
            return False
    elif kind is int or kind is float:
        if not all(type(v) is int or type(v) is float for v in values):
            return False
    else:
        return False
    if len(set(values)) != len(values):
        return False
    items.sort(key=lambda item: item[key])
    return True


def type_name(value: Any) -> str:
    """The Rego type name of a value, as ``type_name`` and error messages give it."""
    kind = type(value)
    if value is None:
        return "null"
    if kind is RegoBool:
        return "boolean"
    if kind is int or kind is float:
        return "number"
    if kind is str:
        return "string"
    if kind is tuple:
        return "array"
    if kind is Obj or kind is dict:
        return "object"
    if kind is frozenset:
        return "set"
    return kind.__name__


# --- text forms ----------------------------------------------------------------

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63


def format_number(value: int | float) -> str:
    """A number as OPA's ``sprintf("%v")`` prints it.

    OPA hands sprintf an integer when the number holds one that fits int64
    (``1000000.0`` -> ``1000000``, ``-0.0`` -> ``0``), a big integer for longer
    integer text, and a float64 otherwise, which Go's ``%v`` prints as
    :func:`go_float_g` does (``12345678.9`` -> ``1.23456789e+07``).
    """
    if type(value) is int:
        return str(value)
    if math.isinf(value) or math.isnan(value):
        return "+Inf" if value > 0 else ("-Inf" if value < 0 else "NaN")
    if value == int(value) and _INT64_MIN <= value < _INT64_MAX:
        return str(int(value))
    return go_float_g(value)


def go_float_g(value: float) -> str:
    """Go's ``strconv.FormatFloat(value, 'g', -1, 64)``.

    Shortest round-tripping digits (Python's ``repr`` finds the same digits);
    exponent form when the decimal exponent is below -4 or at least 6 (Go uses
    precision 6 for that decision in the shortest form). Exponents have at
    least two digits (``1e-05``, ``1.23456789e+07``).
    """
    text = repr(float(value))
    sign = ""
    if text.startswith("-"):
        sign, text = "-", text[1:]
    mantissa, _, exp_text = text.partition("e")
    exponent = int(exp_text) if exp_text else 0
    whole, _, frac = mantissa.partition(".")
    if frac == "0":
        frac = ""
    digits = (whole + frac).lstrip("0")
    # Position of the decimal point relative to the start of ``digits``.
    point = len(whole.lstrip("0")) + exponent if whole.strip("0") else exponent - (len(frac) - len(frac.lstrip("0")))
    digits = digits.rstrip("0") or "0"
    decimal_exponent = point - 1
    if decimal_exponent < -4 or decimal_exponent >= 6:
        head, tail = digits[0], digits[1:]
        body = head + ("." + tail if tail else "")
        exp_sign = "-" if decimal_exponent < 0 else "+"
        return f"{sign}{body}e{exp_sign}{abs(decimal_exponent):02d}"
    if point <= 0:
        return f"{sign}0.{'0' * (-point)}{digits}"
    if point >= len(digits):
        return f"{sign}{digits}{'0' * (point - len(digits))}"
    return f"{sign}{digits[:point]}.{digits[point:]}"


def to_rego_text(value: Any) -> str:
    """A value in Rego syntax, as OPA's ``sprintf("%v")`` prints composite values."""
    kind = type(value)
    if value is None:
        return "null"
    if kind is RegoBool:
        return "true" if value.value else "false"
    if kind is int:
        return str(value)
    if kind is float:
        # Inside a composite OPA prints a number's own JSON text, which for an
        # input float is the text Python's json module wrote: its repr.
        return repr(value)
    if kind is str:
        return _quote(value)
    if kind is tuple:
        return "[" + ", ".join(to_rego_text(v) for v in value) + "]"
    if kind is Obj or kind is dict:
        keys = sorted_values(value.keys())
        return "{" + ", ".join(f"{to_rego_text(k)}: {to_rego_text(value[k])}" for k in keys) + "}"
    if kind is frozenset:
        if not value:
            return "set()"
        return "{" + ", ".join(to_rego_text(v) for v in sorted_values(value)) + "}"
    return str(value)


def _quote(text: str) -> str:
    # Go's strconv.Quote as encoding/json would write it for Rego strings:
    # OPA prints strings inside composites as JSON strings.
    import json

    return json.dumps(text, ensure_ascii=False)


def iter_ordered(values: Iterable[Any]) -> Iterator[Any]:
    """Iterate values in OPA's order."""
    return iter(sorted_values(values))
