"""What generated code calls at run time: lookups, iteration, membership, comparison,
arithmetic with OPA's number semantics, and the evaluation errors.

Everything here works on the representation of :mod:`helpdesk_policy.compiler.values`
and returns :data:`~helpdesk_policy.compiler.values.UNDEFINED` where Rego is
undefined. An evaluation error (a type error in a builtin, conflicting rule
values) raises :class:`RegoEvalError`, which the compiled policy turns into
:class:`helpdesk_policy.errors.EngineError`.
"""

from __future__ import annotations

import decimal
from collections.abc import Iterable
from typing import Any

from helpdesk_policy.compiler.values import (
    _STR_ONLY,
    FALSE,
    TRUE,
    UNDEFINED,
    Obj,
    RegoBool,
    compare,
    sorted_values,
    type_name,
)

__all__ = [
    "RegoEvalError",
    "RegoTypeError",
    "RegoConflictError",
    "ONCE",
    "MISSING",
    "dot",
    "getk",
    "iter_values",
    "iter_items",
    "iter_values_any",
    "iter_items_any",
    "member",
    "member_kv",
    "truthy",
    "lt",
    "le",
    "gt",
    "ge",
    "arith_plus",
    "arith_minus",
    "arith_mul",
    "arith_div",
    "arith_rem",
    "number_operand",
    "set_union",
    "set_intersection",
    "set_difference",
    "EXACT_SCALARS",
    "MEMO_LIMIT",
    "memo_key_part",
]

U = UNDEFINED

#: The one-iteration loop every compiled body runs in: ``continue`` means "this
#: body fails here" and leaves the loop.
ONCE = (None,)


class _Missing:
    __slots__ = ()

    def __repr__(self) -> str:
        return "MISSING"


#: A rule's cache slot before the rule was evaluated.
MISSING: Any = _Missing()


class RegoEvalError(Exception):
    """Evaluation stopped with an error where OPA's evaluator errors too."""


class RegoTypeError(RegoEvalError):
    """A builtin got an operand of the wrong type (``count(null)``)."""


class RegoConflictError(RegoEvalError):
    """A complete rule, function or object key produced two different values."""


# --- lookups and iteration -----------------------------------------------------


def dot(value: Any, key: Any) -> Any:
    """``value[key]`` where key is a string (the common case of a ref)."""
    kind = type(value)
    if kind is Obj:
        return value.get(key, U)
    if kind is frozenset:
        return key if key in value else U
    return U


def getk(value: Any, key: Any) -> Any:
    """``value[key]`` for any key: object members, array indices, set members."""
    kind = type(value)
    if kind is Obj:
        try:
            return value.get(key, U)
        except TypeError:  # pragma: no cover - every Rego value hashes
            return U
    if kind is tuple:
        key_kind = type(key)
        if key_kind is float:
            if key != int(key):
                return U
            key = int(key)
        elif key_kind is not int:
            return U
        if 0 <= key < len(value):
            return value[key]
        return U
    if kind is frozenset:
        return key if key in value else U
    return U


def iter_values(collection: Any) -> Iterable[Any]:
    """The values of a collection in OPA's order (nothing for a scalar)."""
    kind = type(collection)
    if kind is tuple:
        return collection
    if kind is frozenset:
        return sorted_values(collection)
    if kind is Obj:
        if _STR_ONLY.issuperset(map(type, collection)):
            return [collection[k] for k in sorted(collection)]
        return [collection[k] for k in sorted_values(collection.keys())]
    return ()


def iter_items(collection: Any) -> Iterable[tuple[Any, Any]]:
    """(key, value) pairs in OPA's order: index/element for arrays, element/element for sets."""
    kind = type(collection)
    if kind is tuple:
        return enumerate(collection)
    if kind is frozenset:
        return [(v, v) for v in sorted_values(collection)]
    if kind is Obj:
        if _STR_ONLY.issuperset(map(type, collection)):
            return [(k, collection[k]) for k in sorted(collection)]
        return [(k, collection[k]) for k in sorted_values(collection.keys())]
    return ()


def iter_values_any(collection: Any) -> Iterable[Any]:
    """The values of a collection in storage order, for loops whose order is unobservable.

    Sorting a set of objects into OPA's order is the costliest step of an
    iteration; a loop that visits every solution and collects them into a set,
    an object or one conflict-checked value does not need it (the code
    generator decides where that holds).
    """
    kind = type(collection)
    if kind is tuple or kind is frozenset:
        return collection
    if kind is Obj:
        return collection.values()
    return ()


def iter_items_any(collection: Any) -> Iterable[tuple[Any, Any]]:
    """(key, value) pairs in storage order, for loops whose order is unobservable."""
    kind = type(collection)
    if kind is tuple:
        return enumerate(collection)
    if kind is frozenset:
        return zip(collection, collection)
    if kind is Obj:
        return collection.items()
    return ()


def member(value: Any, collection: Any) -> bool:
    """``value in collection``: an element of an array or set, a value of an object."""
    kind = type(collection)
    if kind is frozenset or kind is tuple:
        return value in collection
    if kind is Obj:
        return value in collection.values()
    return False


def member_kv(key: Any, value: Any, collection: Any) -> bool:
    """``key, value in collection``."""
    kind = type(collection)
    if kind is Obj:
        found = collection.get(key, U)
        return found is not U and found == value
    if kind is tuple:
        found = getk(collection, key)
        return found is not U and found == value
    if kind is frozenset:
        return key in collection and key == value
    return False


def truthy(value: Any) -> bool:
    """Whether a term used as an expression succeeds: defined and not false."""
    return value is not U and value is not FALSE


# --- comparison ------------------------------------------------------------------


def _native(a: Any, b: Any) -> bool:
    ta = type(a)
    tb = type(b)
    if ta is str:
        return tb is str
    return (ta is int or ta is float) and (tb is int or tb is float)


def lt(a: Any, b: Any) -> bool:
    """``a < b`` in OPA's total order (never raises across types)."""
    if _native(a, b):
        return a < b
    return compare(a, b) < 0


def le(a: Any, b: Any) -> bool:
    """``a <= b`` in OPA's total order."""
    if _native(a, b):
        return a <= b
    return compare(a, b) <= 0


def gt(a: Any, b: Any) -> bool:
    """``a > b`` in OPA's total order."""
    if _native(a, b):
        return a > b
    return compare(a, b) > 0


def ge(a: Any, b: Any) -> bool:
    """``a >= b`` in OPA's total order."""
    if _native(a, b):
        return a >= b
    return compare(a, b) >= 0


# --- arithmetic --------------------------------------------------------------------

# OPA computes with arbitrary precision (math/big) and prints the result's
# shortest text; a float result that holds an integer is an integer
# (2.5 * 2 is 5). Decimal arithmetic from the floats' shortest text gives the
# same numbers once read back as float64 (0.1 + 0.2 is 0.3, not 0.30000000000000004).
_DECIMAL = decimal.Context(prec=60, Emax=999999, Emin=-999999)


def number_operand(name: str, position: int, value: Any) -> Any:
    """``value`` if it is a number, else the type error OPA raises for builtin ``name``."""
    kind = type(value)
    if kind is int or kind is float:
        return value
    raise RegoTypeError(f"{name}: operand {position} must be number but got {type_name(value)}")


def _to_decimal(value: int | float) -> decimal.Decimal:
    if type(value) is int:
        return decimal.Decimal(value)
    return decimal.Decimal(repr(value))


def _from_decimal(value: decimal.Decimal) -> int | float:
    if value == value.to_integral_value():
        return int(value)
    return float(value)


def arith_plus(a: Any, b: Any) -> Any:
    """``a + b`` with OPA's number semantics."""
    if type(a) is int and type(b) is int:
        return a + b
    number_operand("plus", 1, a)
    number_operand("plus", 2, b)
    return _from_decimal(_DECIMAL.add(_to_decimal(a), _to_decimal(b)))


def arith_minus(a: Any, b: Any) -> Any:
    """``a - b`` for numbers; set difference for sets (OPA's ``minus`` does both)."""
    if type(a) is int and type(b) is int:
        return a - b
    if type(a) is frozenset and type(b) is frozenset:
        return a - b
    if type(a) is frozenset or type(b) is frozenset:
        raise RegoTypeError(f"minus: operand 2 must be set but got {type_name(b)}" if type(a) is frozenset
                            else f"minus: operand 1 must be set but got {type_name(a)}")
    number_operand("minus", 1, a)
    number_operand("minus", 2, b)
    return _from_decimal(_DECIMAL.subtract(_to_decimal(a), _to_decimal(b)))


def arith_mul(a: Any, b: Any) -> Any:
    """``a * b`` with OPA's number semantics."""
    if type(a) is int and type(b) is int:
        return a * b
    number_operand("mul", 1, a)
    number_operand("mul", 2, b)
    return _from_decimal(_DECIMAL.multiply(_to_decimal(a), _to_decimal(b)))


def arith_div(a: Any, b: Any) -> Any:
    """``a / b``: an error on division by zero, an integer when exact."""
    number_operand("div", 1, a)
    number_operand("div", 2, b)
    if b == 0:
        raise RegoEvalError("div: divide by zero")
    if type(a) is int and type(b) is int and a % b == 0:
        return a // b
    return _from_decimal(_DECIMAL.divide(_to_decimal(a), _to_decimal(b)))


def arith_rem(a: Any, b: Any) -> Any:
    """``a % b``: integers only, the sign of the dividend (Go's ``%``)."""
    number_operand("rem", 1, a)
    number_operand("rem", 2, b)
    if type(a) is float:
        if a != int(a):
            raise RegoEvalError("rem: modulo on floating-point number")
        a = int(a)
    if type(b) is float:
        if b != int(b):
            raise RegoEvalError("rem: modulo on floating-point number")
        b = int(b)
    if b == 0:
        raise RegoEvalError("rem: modulo by zero")
    result = abs(a) % abs(b)
    return -result if a < 0 else result


# --- set operators (| and &) ---------------------------------------------------------


def set_union(a: Any, b: Any) -> Any:
    """``a | b`` (OPA's ``or``): both operands must be sets."""
    if type(a) is not frozenset:
        raise RegoTypeError(f"or: operand 1 must be set but got {type_name(a)}")
    if type(b) is not frozenset:
        raise RegoTypeError(f"or: operand 2 must be set but got {type_name(b)}")
    return a | b


def set_intersection(a: Any, b: Any) -> Any:
    """``a & b`` (OPA's ``and``): both operands must be sets."""
    if type(a) is not frozenset:
        raise RegoTypeError(f"and: operand 1 must be set but got {type_name(a)}")
    if type(b) is not frozenset:
        raise RegoTypeError(f"and: operand 2 must be set but got {type_name(b)}")
    return a & b


def set_difference(a: Any, b: Any) -> Any:
    """``a - b`` on sets."""
    return arith_minus(a, b)


def as_bool(flag: bool) -> RegoBool:
    """The Rego boolean for a Python truth value (used for comparison values)."""
    return TRUE if flag else FALSE


# --- memoised functions ----------------------------------------------------------------

#: The scalar types whose equal values are the same Rego value (floats are not
#: among them: ``1.0 == 1`` in both Rego and Python, yet OPA keeps the number's
#: own text, so ``sprintf("%v", [[1.0]])`` is ``[1.0]`` where ``[[1]]`` gives ``[1]``).
EXACT_SCALARS = frozenset({str, int, RegoBool, type(None)})

#: A memo is cleared when it reaches this many entries, so arguments taken from
#: requests (an id, a name) cannot grow a process's memory without bound.
MEMO_LIMIT = 4096

#: How many elements of array arguments :func:`memo_key_part` inspects before
#: giving up: a large argument costs more to check than most functions to run.
_MEMO_INSPECT_LIMIT = 16


def memo_key_part(value: Any) -> bool:
    """Whether ``value`` can be part of a memo key: every equal value is the same Rego value.

    True for an array (at any depth of arrays) of at most a few elements
    holding no float (so equality in the memo's dict is identity of meaning:
    ``true != 1`` already, since Rego booleans are not Python's). False for a
    float, a set or an object, and a large array: a set of objects (a
    decision's reasons) costs more to check, hash and compare on a hit than
    the functions that take one cost to run. False sends the call around the
    memo, to the function itself; never wrong, only not faster.

    Scalars of :data:`EXACT_SCALARS` are accepted by the generated code
    before it calls this.
    """
    if type(value) is not tuple:
        return False
    pending = list(value)
    inspected = len(pending)
    exact = EXACT_SCALARS
    while pending:
        item = pending.pop()
        kind = type(item)
        if kind in exact:
            continue
        if kind is not tuple:
            return False
        inspected += len(item)
        if inspected > _MEMO_INSPECT_LIMIT:
            return False
        pending.extend(item)
    return inspected <= _MEMO_INSPECT_LIMIT
