"""Rego builtin functions for compiled policies, pinned to the OPA version the oracle embeds.

Each builtin takes Rego values (see :mod:`helpdesk_policy.compiler.values`) and
returns a Rego value, :data:`~helpdesk_policy.compiler.values.UNDEFINED` where
OPA is undefined (``max([])``), or raises
:class:`~helpdesk_policy.compiler.runtime.RegoTypeError` where OPA halts with a
type error (``count(null)``). :data:`BUILTINS` maps the Rego name to a
:class:`Builtin`; a name missing from it is refused by the compiler, and so is
every name in :data:`NON_DETERMINISTIC` (a compiled decision must be a pure
function of input and data).

Regular expressions are Go RE2 in OPA. :func:`translate_regex` turns an RE2
pattern into a Python ``re`` pattern with the same meaning, or raises
:class:`UnsupportedRegex` for constructs whose meaning differs (lookarounds,
backreferences, Unicode classes…); the compiler refuses such constant patterns
and a pattern only known at run time is an evaluation error.
"""

from __future__ import annotations

import functools
import math
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from helpdesk_policy.compiler.runtime import RegoEvalError, RegoTypeError, arith_plus, arith_mul, number_operand
from helpdesk_policy.compiler.values import (
    FALSE,
    TRUE,
    UNDEFINED,
    Obj,
    RegoBool,
    format_number,
    go_float_g,
    sorted_values,
    to_rego_text,
    type_name,
)

__all__ = [
    "OPA_VERSION",
    "Builtin",
    "BUILTINS",
    "NON_DETERMINISTIC",
    "is_non_deterministic",
    "UnsupportedRegex",
    "translate_regex",
    "sprintf",
]

#: The OPA release whose builtins these reproduce: the one embedded in the
#: ``opa-golib-python-bindings`` oracle (its Go module path names it).
OPA_VERSION = "1.20.2"

U = UNDEFINED


@dataclass(frozen=True)
class Builtin:
    """One builtin: its Rego name, how many arguments it takes, its implementation."""

    name: str
    arity: int
    function: Callable[..., Any]


#: Builtins whose result depends on something other than their arguments.
NON_DETERMINISTIC_PREFIXES = ("time.", "rand.", "uuid.", "net.", "http.", "crypto.x509.parse_and_verify")
NON_DETERMINISTIC = frozenset({"http.send", "opa.runtime", "rand.intn", "uuid.rfc4122", "time.now_ns", "trace", "print"})


def is_non_deterministic(name: str) -> bool:
    """Whether the builtin ``name`` may answer differently for the same arguments."""
    return name in NON_DETERMINISTIC or name.startswith(NON_DETERMINISTIC_PREFIXES)


def _operand_error(name: str, position: int, want: str, got: Any) -> RegoTypeError:
    return RegoTypeError(f"{name}: operand {position} must be {want} but got {type_name(got)}")


def _string(name: str, position: int, value: Any) -> str:
    if type(value) is not str:
        raise _operand_error(name, position, "string", value)
    return value


def _int(name: str, position: int, value: Any) -> int:
    number_operand(name, position, value)
    if type(value) is float:
        if value != int(value):
            raise RegoTypeError(f"{name}: operand {position} must be integer number but got floating-point number")
        return int(value)
    return value


def _collection(name: str, position: int, value: Any, want: str = "one of {array, set}") -> Any:
    kind = type(value)
    if kind is tuple or kind is frozenset:
        return value
    raise _operand_error(name, position, want, value)


# --- aggregates ---------------------------------------------------------------------


def b_count(value: Any) -> Any:
    kind = type(value)
    if kind is tuple or kind is frozenset or kind is Obj or kind is str:
        return len(value)
    raise _operand_error("count", 1, "one of {array, object, set, string}", value)


def b_sum(value: Any) -> Any:
    total: Any = 0
    for item in _collection("sum", 1, value):
        total = arith_plus(total, number_operand("sum", 1, item))
    return total


def b_product(value: Any) -> Any:
    total: Any = 1
    for item in _collection("product", 1, value):
        total = arith_mul(total, number_operand("product", 1, item))
    return total


def b_max(value: Any) -> Any:
    items = _collection("max", 1, value)
    if not items:
        return U
    return sorted_values(items)[-1]


def b_min(value: Any) -> Any:
    items = _collection("min", 1, value)
    if not items:
        return U
    return sorted_values(items)[0]


def b_sort(value: Any) -> Any:
    return tuple(sorted_values(_collection("sort", 1, value)))


# --- strings ------------------------------------------------------------------------


def b_concat(delimiter: Any, values: Any) -> Any:
    _string("concat", 1, delimiter)
    items = _collection("concat", 2, values)
    if type(items) is frozenset:
        items = sorted_values(items)
    parts = []
    for item in items:
        if type(item) is not str:
            raise RegoTypeError(f"concat: operand 2 must be array of strings but got {type_name(item)} element")
        parts.append(item)
    return delimiter.join(parts)


def b_replace(text: Any, old: Any, new: Any) -> Any:
    return _string("replace", 1, text).replace(_string("replace", 2, old), _string("replace", 3, new))


def b_contains(text: Any, sub: Any) -> Any:
    return TRUE if _string("contains", 2, sub) in _string("contains", 1, text) else FALSE


def b_startswith(text: Any, prefix: Any) -> Any:
    return TRUE if _string("startswith", 1, text).startswith(_string("startswith", 2, prefix)) else FALSE


def b_endswith(text: Any, suffix: Any) -> Any:
    return TRUE if _string("endswith", 1, text).endswith(_string("endswith", 2, suffix)) else FALSE


def _simple_case(text: str, convert: Callable[[str], str]) -> str:
    # Go maps rune by rune (unicode.ToUpper/ToLower): "ß" stays "ß" where
    # Python's full case mapping would give "SS".
    out = []
    for char in text:
        mapped = convert(char)
        out.append(mapped if len(mapped) == 1 else char)
    return "".join(out)


def b_lower(text: Any) -> Any:
    return _simple_case(_string("lower", 1, text), str.lower)


def b_upper(text: Any) -> Any:
    return _simple_case(_string("upper", 1, text), str.upper)


def b_trim(text: Any, cutset: Any) -> Any:
    return _string("trim", 1, text).strip(_string("trim", 2, cutset))


def b_trim_left(text: Any, cutset: Any) -> Any:
    return _string("trim_left", 1, text).lstrip(_string("trim_left", 2, cutset))


def b_trim_right(text: Any, cutset: Any) -> Any:
    return _string("trim_right", 1, text).rstrip(_string("trim_right", 2, cutset))


# Go's unicode.IsSpace, which strings.TrimSpace uses.
_GO_SPACE = "\t\n\v\f\r \x85\xa0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u2028\u2029\u202f\u205f\u3000"


def b_trim_space(text: Any) -> Any:
    return _string("trim_space", 1, text).strip(_GO_SPACE)


def b_trim_prefix(text: Any, prefix: Any) -> Any:
    return _string("trim_prefix", 1, text).removeprefix(_string("trim_prefix", 2, prefix))


def b_trim_suffix(text: Any, suffix: Any) -> Any:
    return _string("trim_suffix", 1, text).removesuffix(_string("trim_suffix", 2, suffix))


def b_split(text: Any, delimiter: Any) -> Any:
    text = _string("split", 1, text)
    delimiter = _string("split", 2, delimiter)
    if delimiter == "":
        # Go's strings.Split with an empty separator splits into UTF-8 sequences.
        return tuple(text)
    return tuple(text.split(delimiter))


def b_substring(text: Any, offset: Any, length: Any) -> Any:
    text = _string("substring", 1, text)
    start = _int("substring", 2, offset)
    size = _int("substring", 3, length)
    if start < 0:
        raise RegoEvalError("substring: negative offset")
    if start >= len(text):
        return ""
    if size < 0:
        return text[start:]
    return text[start:start + size]


def b_indexof(text: Any, sub: Any) -> Any:
    text = _string("indexof", 1, text)
    if _string("indexof", 2, sub) == "":
        raise RegoEvalError("indexof: empty search character")
    return text.find(sub)


def b_strings_reverse(text: Any) -> Any:
    return _string("strings.reverse", 1, text)[::-1]


def b_format_int(number: Any, base: Any) -> Any:
    number_operand("format_int", 1, number)
    base = _int("format_int", 2, base)
    if base not in (2, 8, 10, 16):
        raise RegoEvalError("format_int: operand 2 must be one of {2, 8, 10, 16}")
    # OPA truncates toward zero (big.Float.Int).
    value = int(number)
    digits = {2: "b", 8: "o", 10: "d", 16: "x"}[base]
    return format(value, digits)


def b_to_number(value: Any) -> Any:
    kind = type(value)
    if value is None:
        return 0
    if kind is RegoBool:
        return 1 if value.value else 0
    if kind is int or kind is float:
        return value
    if kind is str:
        text = value
        if not re.fullmatch(r"[+-]?(\d+(\.\d*)?|\.\d+)([eE][+-]?\d+)?", text):
            raise RegoEvalError(f"to_number: invalid syntax: {text!r}")
        if re.fullmatch(r"[+-]?\d+", text):
            return int(text)
        result = float(text)
        if result == int(result) and "e" not in text.lower():
            return int(result) if "." not in text else result
        return result
    raise _operand_error("to_number", 1, "one of {boolean, null, number, string}", value)


# --- sprintf ----------------------------------------------------------------------

_VERB = re.compile(r"%([-+# 0]*)(\d+)?(?:\.(\d+))?([a-zA-Z%])")


def _go_type(value: Any) -> str:
    kind = type(value)
    if kind is int:
        return "int64" if -(2**63) <= value < 2**63 else "*big.Int"
    if kind is float:
        if value == int(value) and -(2**63) <= value < 2**63:
            return "int64"
        return "float64"
    if kind is str:
        return "string"
    if kind is RegoBool:
        return "bool"
    return "ast." + {type(None): "Null", tuple: "*Array", Obj: "object", frozenset: "*set"}.get(kind, "Value")


def _as_go_number(value: Any) -> Any:
    # OPA hands fmt an int for an integral number that fits int64, else a float64.
    if type(value) is float and value == int(value) and -(2**63) <= value < 2**63:
        return int(value)
    return value


def _pad(text: str, flags: str, width: str | None) -> str:
    if not width:
        return text
    size = int(width)
    if "-" in flags:
        return text.ljust(size)
    if "0" in flags and text[:1] in "-+0123456789":
        sign = text[0] if text[0] in "+-" else ""
        return sign + text[len(sign):].rjust(size - len(sign), "0")
    return text.rjust(size)


def _format_one(verb: str, flags: str, width: str | None, precision: str | None, value: Any) -> str:
    kind = type(value)
    go_value = _as_go_number(value)
    if verb in "vs":
        if kind is str:
            text = value
        elif kind is int or kind is float:
            if verb == "s":
                return f"%!s({_go_type(value)}={format_number(value)})"
            text = format_number(value)
        elif kind is RegoBool:
            if verb == "s":
                return f"%!s(bool={'true' if value.value else 'false'})"
            text = "true" if value.value else "false"
        else:
            text = to_rego_text(value)
        if precision is not None and verb == "s":
            text = text[: int(precision)]
        return _pad(text, flags, width)
    if verb == "d":
        if type(go_value) is int:
            text = str(go_value)
            if "+" in flags and go_value >= 0:
                text = "+" + text
            return _pad(text, flags, width)
        return f"%!d({_go_type(value)}={_plain(value)})"
    if verb in "fFeEgG":
        if kind is int or kind is float:
            number = float(value)
            digits = 6 if precision is None else int(precision)
            if verb in "gG" and precision is None:
                text = go_float_g(number)
            else:
                text = format(number, f".{digits}{verb}")
                if verb in "eE":
                    text = re.sub(r"([eE][+-])(\d)$", r"\g<1>0\2", text)
            if "+" in flags and number >= 0:
                text = "+" + text
            return _pad(text, flags, width)
        return f"%!{verb}({_go_type(value)}={_plain(value)})"
    if verb in "xX":
        if type(go_value) is int:
            text = format(go_value, "x" if verb == "x" else "X")
            return _pad(text, flags, width)
        if kind is str:
            text = value.encode("utf-8").hex()
            return _pad(text.upper() if verb == "X" else text, flags, width)
        return f"%!{verb}({_go_type(value)}={_plain(value)})"
    if verb == "q":
        if kind is str:
            return _pad(_go_quote(value), flags, width)
        return f"%!q({_go_type(value)}={_plain(value)})"
    if verb == "t":
        if kind is RegoBool:
            return _pad("true" if value.value else "false", flags, width)
        return f"%!t({_go_type(value)}={_plain(value)})"
    return f"%!{verb}({_go_type(value)}={_plain(value)})"


def _plain(value: Any) -> str:
    kind = type(value)
    if kind is str:
        return value
    if kind is int or kind is float:
        return format_number(value)
    if kind is RegoBool:
        return "true" if value.value else "false"
    return to_rego_text(value)


def _go_quote(text: str) -> str:
    out = ['"']
    for char in text:
        code = ord(char)
        if char == '"':
            out.append('\\"')
        elif char == "\\":
            out.append("\\\\")
        elif char == "\n":
            out.append("\\n")
        elif char == "\t":
            out.append("\\t")
        elif char == "\r":
            out.append("\\r")
        elif code < 0x20 or code == 0x7F:
            out.append(f"\\x{code:02x}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


#: Parsed sprintf formats: a policy uses a handful of constant formats, so each
#: is split into (literal text, verb spec) parts once per process.
_FORMATS: dict[str, tuple[tuple[str, tuple[str, str | None, str | None, str] | None], ...]] = {}
_FORMATS_SIZE = 1024


def _parse_format(fmt: str) -> tuple[tuple[str, tuple[str, str | None, str | None, str] | None], ...]:
    """``fmt`` as (literal text, (flags, width, precision, verb)) parts; the last part has no verb."""
    parts: list[tuple[str, tuple[str, str | None, str | None, str] | None]] = []
    position = 0
    while True:
        match = _VERB.search(fmt, position)
        if match is None:
            parts.append((fmt[position:], None))
            return tuple(parts)
        parts.append((fmt[position:match.start()], match.groups()))  # type: ignore[arg-type]
        position = match.end()


def sprintf(fmt: Any, args: Any) -> Any:
    """OPA's ``sprintf``: Go's ``fmt.Sprintf`` on the arguments as OPA converts them.

    Numbers print from their value (``1000000.0`` as ``1000000``, ``12345678.9``
    as ``1.23456789e+07``), null and composites in Rego syntax (``{1, 2}``,
    ``set()``), mismatched verbs the way Go reports them (``%!d(string=x)``).
    """
    fmt = _string("sprintf", 1, fmt)
    if type(args) is not tuple:
        raise _operand_error("sprintf", 2, "array", args)
    parts = _FORMATS.get(fmt)
    if parts is None:
        parts = _parse_format(fmt)
        if len(_FORMATS) < _FORMATS_SIZE:
            _FORMATS[fmt] = parts
    out: list[str] = []
    index = 0
    count = len(args)
    for literal, spec in parts:
        out.append(literal)
        if spec is None:
            break
        flags, width, precision, verb = spec
        if verb == "%":
            out.append("%")
            continue
        if index >= count:
            out.append(f"%!{verb}(MISSING)")
            continue
        value = args[index]
        index += 1
        if type(value) is str and verb == "v" and not flags and width is None and precision is None:
            out.append(value)  # the common ``%v`` of a string prints it as it is
        else:
            out.append(_format_one(verb, flags, width, precision, value))
    if index < len(args):
        extra = ", ".join(f"{_go_type(v)}={_plain(v)}" for v in args[index:])
        out.append(f"%!(EXTRA {extra})")
    return "".join(out)


# --- objects, arrays, sets ------------------------------------------------------------


def b_object_get(obj: Any, key: Any, default: Any) -> Any:
    if type(obj) is not Obj:
        raise _operand_error("object.get", 1, "object", obj)
    if type(key) is tuple:
        # A path: walk it; any missing step gives the default.
        current = obj
        for step in key:
            if type(current) is Obj:
                current = current.get(step, U)
            elif type(current) is tuple and type(step) is int and 0 <= step < len(current):
                current = current[step]
            elif type(current) is frozenset:
                current = step if step in current else U
            else:
                current = U
            if current is U:
                return default
        return current
    found = obj.get(key, U)
    return default if found is U else found


def b_object_keys(obj: Any) -> Any:
    if type(obj) is not Obj:
        raise _operand_error("object.keys", 1, "object", obj)
    return frozenset(obj.keys())


def _merge(a: Any, b: Any) -> Any:
    if type(a) is Obj and type(b) is Obj:
        merged = dict(a)
        for key, value in b.items():
            merged[key] = _merge(a[key], value) if key in a else value
        return Obj(merged)
    return b


def b_object_union(a: Any, b: Any) -> Any:
    if type(a) is not Obj:
        raise _operand_error("object.union", 1, "object", a)
    if type(b) is not Obj:
        raise _operand_error("object.union", 2, "object", b)
    return _merge(a, b)


def b_object_remove(obj: Any, keys: Any) -> Any:
    if type(obj) is not Obj:
        raise _operand_error("object.remove", 1, "object", obj)
    kind = type(keys)
    if kind is Obj:
        drop = set(keys.keys())
    elif kind is tuple or kind is frozenset:
        drop = set(keys)
    else:
        raise _operand_error("object.remove", 2, "one of {array, object, set}", keys)
    return Obj({k: v for k, v in obj.items() if k not in drop})


def b_union(sets: Any) -> Any:
    if type(sets) is not frozenset:
        raise _operand_error("union", 1, "set of sets", sets)
    result: frozenset[Any] = frozenset()
    for item in sets:
        if type(item) is not frozenset:
            raise _operand_error("union", 1, "set of sets", sets)
        result = result | item
    return result


def b_intersection(sets: Any) -> Any:
    if type(sets) is not frozenset:
        raise _operand_error("intersection", 1, "set of sets", sets)
    result: frozenset[Any] | None = None
    for item in sets:
        if type(item) is not frozenset:
            raise _operand_error("intersection", 1, "set of sets", sets)
        result = item if result is None else result & item
    return result if result is not None else frozenset()


def b_array_concat(a: Any, b: Any) -> Any:
    if type(a) is not tuple:
        raise _operand_error("array.concat", 1, "array", a)
    if type(b) is not tuple:
        raise _operand_error("array.concat", 2, "array", b)
    return a + b


def b_array_slice(array: Any, start: Any, stop: Any) -> Any:
    if type(array) is not tuple:
        raise _operand_error("array.slice", 1, "array", array)
    first = _int("array.slice", 2, start)
    last = _int("array.slice", 3, stop)
    size = len(array)
    first = min(max(first, 0), size)
    last = min(max(last, 0), size)
    if first >= last:
        return ()
    return array[first:last]


def b_array_reverse(array: Any) -> Any:
    if type(array) is not tuple:
        raise _operand_error("array.reverse", 1, "array", array)
    return array[::-1]


# --- numbers --------------------------------------------------------------------------


def b_abs(value: Any) -> Any:
    return abs(number_operand("abs", 1, value))


def b_round(value: Any) -> Any:
    number = number_operand("round", 1, value)
    if type(number) is int:
        return number
    # Go's math.Round: half away from zero.
    return int(math.floor(abs(number) + 0.5)) * (1 if number >= 0 else -1)


def b_ceil(value: Any) -> Any:
    number = number_operand("ceil", 1, value)
    return number if type(number) is int else math.ceil(number)


def b_floor(value: Any) -> Any:
    number = number_operand("floor", 1, value)
    return number if type(number) is int else math.floor(number)


def b_numbers_range(start: Any, stop: Any) -> Any:
    first = _int("numbers.range", 1, start)
    last = _int("numbers.range", 2, stop)
    step = 1 if last >= first else -1
    return tuple(range(first, last + step, step))


# --- types ----------------------------------------------------------------------------


def _is(kind: type) -> Callable[[Any], Any]:
    def check(value: Any) -> Any:
        return TRUE if type(value) is kind else FALSE

    return check


def b_is_number(value: Any) -> Any:
    return TRUE if type(value) is int or type(value) is float else FALSE


def b_is_null(value: Any) -> Any:
    return TRUE if value is None else FALSE


def b_type_name(value: Any) -> Any:
    return type_name(value)


# --- regex and glob -------------------------------------------------------------------


class UnsupportedRegex(ValueError):
    """An RE2 pattern whose meaning Python's ``re`` does not reproduce."""


_WORD = "[0-9A-Za-z_]"
# RE2's Perl classes and word boundaries are ASCII; Python's are Unicode.
_ASCII_CLASSES = {
    "d": "[0-9]", "D": "[^0-9]", "w": _WORD, "W": "[^0-9A-Za-z_]", "s": "[\\t\\n\\f\\r ]", "S": "[^\\t\\n\\f\\r ]",
    "b": f"(?:(?<={_WORD})(?!{_WORD})|(?<!{_WORD})(?={_WORD}))",
    "B": f"(?:(?<={_WORD})(?={_WORD})|(?<!{_WORD})(?!{_WORD}))",
}


@functools.lru_cache(maxsize=512)
def translate_regex(pattern: str) -> re.Pattern[str]:
    """Compile an RE2 pattern as a Python pattern with the same meaning.

    ``\\w``, ``\\d``, ``\\s`` and ``\\b`` are ASCII in RE2 and become explicit ASCII classes; ``$``
    without the ``m`` flag matches only at the very end (``\\Z``); ``\\z`` is
    ``\\Z``; ``(?<name>…)`` is ``(?P<name>…)``.

    Raises:
        UnsupportedRegex: lookarounds, backreferences, atomic groups, ``\\p``
            classes, POSIX classes, ``\\Q…\\E``, ``\\C``, set operations in
            classes, or a pattern that does not compile.
    """
    out: list[str] = []
    in_class = False
    multiline = False
    i = 0
    n = len(pattern)
    while i < n:
        char = pattern[i]
        if char == "\\":
            if i + 1 >= n:
                raise UnsupportedRegex("trailing backslash")
            nxt = pattern[i + 1]
            if nxt.isdigit():
                raise UnsupportedRegex("backreference or octal escape")
            if nxt in "pPQECXRKGgkNhHvVZ":
                raise UnsupportedRegex(f"escape \\{nxt}")
            if nxt == "z":
                out.append("\\Z")
            elif nxt in _ASCII_CLASSES:
                if in_class:
                    if nxt in "DWS":
                        raise UnsupportedRegex(f"negated class \\{nxt} inside brackets")
                    out.append(_ASCII_CLASSES[nxt][1:-1])
                else:
                    out.append(_ASCII_CLASSES[nxt])
            else:
                out.append(char + nxt)
            i += 2
            continue
        if in_class:
            if char == "[":
                if pattern.startswith("[:", i):
                    raise UnsupportedRegex("POSIX character class")
                out.append("\\[")
                i += 1
                continue
            if pattern.startswith(("--", "&&", "~~", "||"), i):
                raise UnsupportedRegex("character class set operation")
            if char == "]" and not (out and out[-1] in ("[", "[^")):
                in_class = False
            out.append(char)
            i += 1
            continue
        if char == "[":
            in_class = True
            if pattern.startswith("[^", i):
                out.append("[^")
                i += 2
            else:
                out.append("[")
                i += 1
            if i < n and pattern[i] == "]":
                out.append("\\]")
                i += 1
            continue
        if char == "(" and pattern.startswith("(?", i):
            rest = pattern[i + 2:]
            if rest.startswith(("=", "!", "<=", "<!", ">", "(", "P=", "P>", "#", "|")):
                raise UnsupportedRegex("lookaround, atomic group, conditional or backreference")
            if rest.startswith("<"):
                out.append("(?P<")
                i += 3
                continue
            if not rest.startswith(("P<", ":")):
                flags = re.match(r"[a-zA-Z-]*", rest)
                flag_text = flags.group(0) if flags else ""
                if "U" in flag_text:
                    raise UnsupportedRegex("ungreedy flag")
                if "m" in flag_text.split("-")[0]:
                    multiline = True
        if char == "{" and pattern.startswith("{,", i):
            raise UnsupportedRegex("{,n} repetition")
        if char == "$" and not multiline:
            out.append("\\Z")
            i += 1
            continue
        out.append(char)
        i += 1
    translated = "".join(out)
    try:
        import warnings

        with warnings.catch_warnings():
            warnings.simplefilter("error")
            return re.compile(translated)
    except (re.error, FutureWarning, DeprecationWarning) as exc:
        raise UnsupportedRegex(str(exc)) from exc


def _regex(name: str, pattern: Any) -> re.Pattern[str]:
    try:
        return translate_regex(_string(name, 1, pattern))
    except UnsupportedRegex as exc:
        raise RegoEvalError(f"{name}: pattern not supported by the compiled engine: {exc}") from exc


def b_regex_match(pattern: Any, text: Any) -> Any:
    compiled = _regex("regex.match", pattern)
    return TRUE if compiled.search(_string("regex.match", 2, text)) else FALSE


def b_regex_split(pattern: Any, text: Any) -> Any:
    compiled = _regex("regex.split", pattern)
    return tuple(compiled.split(_string("regex.split", 2, text)))


def b_regex_replace(text: Any, pattern: Any, replacement: Any) -> Any:
    compiled = _regex("regex.replace", pattern)
    value = _string("regex.replace", 1, text)
    new = _string("regex.replace", 3, replacement)
    if "$" in new or "\\" in new:
        raise RegoEvalError("regex.replace: replacement templates are not supported by the compiled engine")
    return compiled.sub(lambda _m: new, value)


def b_regex_find_n(pattern: Any, text: Any, count: Any) -> Any:
    compiled = _regex("regex.find_n", pattern)
    limit = _int("regex.find_n", 3, count)
    found = [m.group(0) for m in compiled.finditer(_string("regex.find_n", 2, text))]
    return tuple(found if limit < 0 else found[:limit])


@functools.lru_cache(maxsize=512)
def _glob_regex(pattern: str, delimiters: tuple[str, ...]) -> re.Pattern[str]:
    not_delim = "[^" + "".join(re.escape(d) for d in delimiters) + "]" if delimiters else "."
    out: list[str] = []
    i = 0
    n = len(pattern)
    depth = 0
    while i < n:
        char = pattern[i]
        if char == "\\" and i + 1 < n:
            out.append(re.escape(pattern[i + 1]))
            i += 2
        elif char == "*":
            if pattern.startswith("**", i):
                out.append(".*")
                i += 2
            else:
                out.append(not_delim + "*")
                i += 1
        elif char == "?":
            out.append(not_delim)
            i += 1
        elif char == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                raise RegoEvalError("glob.match: unexpected end of input")
            body = pattern[i + 1:end]
            negate = body.startswith("!")
            if negate:
                body = body[1:]
            items = []
            j = 0
            while j < len(body):
                if j + 2 < len(body) and body[j + 1] == "-":
                    items.append(re.escape(body[j]) + "-" + re.escape(body[j + 2]))
                    j += 3
                else:
                    items.append(re.escape(body[j]))
                    j += 1
            out.append("[" + ("^" if negate else "") + "".join(items) + "]")
            i = end + 1
        elif char == "{":
            out.append("(?:")
            depth += 1
            i += 1
        elif char == "}" and depth:
            out.append(")")
            depth -= 1
            i += 1
        elif char == "," and depth:
            out.append("|")
            i += 1
        else:
            out.append(re.escape(char))
            i += 1
    if depth:
        raise RegoEvalError("glob.match: unexpected end of input")
    return re.compile("".join(out), re.DOTALL)


def b_glob_match(pattern: Any, delimiters: Any, text: Any) -> Any:
    pattern = _string("glob.match", 1, pattern)
    if delimiters is None:
        chars: tuple[str, ...] = ()
    elif type(delimiters) is tuple:
        for d in delimiters:
            if type(d) is not str:
                raise _operand_error("glob.match", 2, "array of strings", delimiters)
        chars = delimiters if delimiters else (".",)
    else:
        raise _operand_error("glob.match", 2, "array", delimiters)
    compiled = _glob_regex(pattern, chars)
    return TRUE if compiled.fullmatch(_string("glob.match", 3, text)) else FALSE


# --- the registry ---------------------------------------------------------------------


def _register(*entries: tuple[str, int, Callable[..., Any]]) -> dict[str, Builtin]:
    return {name: Builtin(name, arity, function) for name, arity, function in entries}


BUILTINS: dict[str, Builtin] = _register(
    ("count", 1, b_count),
    ("sum", 1, b_sum),
    ("product", 1, b_product),
    ("max", 1, b_max),
    ("min", 1, b_min),
    ("sort", 1, b_sort),
    ("concat", 2, b_concat),
    ("replace", 3, b_replace),
    ("contains", 2, b_contains),
    ("startswith", 2, b_startswith),
    ("endswith", 2, b_endswith),
    ("lower", 1, b_lower),
    ("upper", 1, b_upper),
    ("trim", 2, b_trim),
    ("trim_left", 2, b_trim_left),
    ("trim_right", 2, b_trim_right),
    ("trim_space", 1, b_trim_space),
    ("trim_prefix", 2, b_trim_prefix),
    ("trim_suffix", 2, b_trim_suffix),
    ("split", 2, b_split),
    ("substring", 3, b_substring),
    ("indexof", 2, b_indexof),
    ("strings.reverse", 1, b_strings_reverse),
    ("format_int", 2, b_format_int),
    ("to_number", 1, b_to_number),
    ("sprintf", 2, sprintf),
    ("object.get", 3, b_object_get),
    ("object.keys", 1, b_object_keys),
    ("object.union", 2, b_object_union),
    ("object.remove", 2, b_object_remove),
    ("union", 1, b_union),
    ("intersection", 1, b_intersection),
    ("array.concat", 2, b_array_concat),
    ("array.slice", 3, b_array_slice),
    ("array.reverse", 1, b_array_reverse),
    ("abs", 1, b_abs),
    ("round", 1, b_round),
    ("ceil", 1, b_ceil),
    ("floor", 1, b_floor),
    ("numbers.range", 2, b_numbers_range),
    ("is_string", 1, _is(str)),
    ("is_boolean", 1, _is(RegoBool)),
    ("is_array", 1, _is(tuple)),
    ("is_object", 1, _is(Obj)),
    ("is_set", 1, _is(frozenset)),
    ("is_number", 1, b_is_number),
    ("is_null", 1, b_is_null),
    ("type_name", 1, b_type_name),
    ("regex.match", 2, b_regex_match),
    ("re_match", 2, b_regex_match),
    ("regex.split", 2, b_regex_split),
    ("regex.replace", 3, b_regex_replace),
    ("regex.find_n", 3, b_regex_find_n),
    ("glob.match", 3, b_glob_match),
)

#: Builtins whose first argument is a regular expression (checked at compile time when constant).
REGEX_BUILTINS = {"regex.match": 0, "re_match": 0, "regex.split": 0, "regex.find_n": 0, "regex.replace": 1}
