"""A pure-Python Rego v1 parser whose AST is OPA's own.

:func:`parse_module` returns, for a Rego module, the JSON document OPA's
``rego.parse_module(filename, source)`` returns -- the same package, imports,
rules, heads (``name``, ``ref``, ``args``, ``key``, ``value``, ``assign``),
``else`` chains, bodies, expressions with their ``index``, terms, wildcards
renamed ``$0``, ``$1``..., comments with base64 ``Text`` -- plus a
``"location": {"file", "row", "col"}`` on every rule, head, expression and term,
so that a compiler can point at the Rego it refuses.

How it parses: Lark compiles ``rego.lark`` into LALR(1) tables (once per
process, on the first parse; importing this module does not import Lark).
A regex lexer here feeds those tables in a tight loop whose reductions call
the grammar's callbacks, which build the JSON directly (no parse tree). The
lexer answers what the grammar cannot see with one token of lookahead:

* whether ``.``, ``[`` or ``(`` is glued to the term before it (a ref or a call,
  as in OPA: ``f (x)`` is not a call);
* whether a newline ends an expression. OPA reads a body greedily and takes a
  newline as a separator only when the next token cannot continue the current
  expression; the lexer asks the live LALR parser exactly that (simulating the
  reductions on a copy of its state stack) and inserts a separator if not.

Lark's own lexers are not used because that decision needs the parser's
state at every token.
"""

from __future__ import annotations

import base64
import copy
import json
import logging
import re
import threading
from collections.abc import Iterator
from decimal import Decimal
from functools import cmp_to_key
from importlib import resources
from typing import Any

from helpdesk_policy.errors import PolicyLoadError

__all__ = ["RegoSyntaxError", "parse_module"]

logger = logging.getLogger(__name__)

Node = dict[str, Any]


class RegoSyntaxError(PolicyLoadError):
    """A Rego module does not parse, or uses syntax this parser does not support.

    The message reads ``file:row:col: what is wrong``; the parts are kept as
    attributes for callers that build their own reports.
    """

    def __init__(self, filename: str, row: int, col: int, reason: str) -> None:
        super().__init__(f"{filename}:{row}:{col}: {reason}")
        self.filename = filename
        self.row = row
        self.col = col
        self.reason = reason


# ---------------------------------------------------------------------------
# Lexer

_KEYWORDS = {
    "package": "_PACKAGE",
    "import": "_IMPORT",
    "as": "AS",
    "default": "DEFAULT",
    "if": "_IF",
    "else": "ELSE",
    "contains": "CONTAINS",
    "not": "NOT",
    "some": "SOME",
    "every": "EVERY",
    "in": "IN",
    "with": "_WITH",
    "true": "TRUE",
    "false": "FALSE",
    "null": "NULL",
}
# The keyword tokens as the grammar names them -> how to name them in errors.
_KEYWORD_OF_TOKEN = {token: word for word, token in _KEYWORDS.items()}

_OPERATORS = {
    ":=": "ASSIGN",
    "==": "EQ",
    "!=": "NEQ",
    "<=": "LTE",
    ">=": "GTE",
    "=": "UNIFY",
    "<": "LT",
    ">": "GT",
    "+": "PLUS",
    "-": "MINUS",
    "*": "STAR",
    "/": "SLASH",
    "%": "PERCENT",
    "&": "AMP",
    "|": "PIPE",
    ",": "_COMMA",
    ";": "_SEMI",
    ":": "_COLON",
    ".": "DOT",
    "(": "_LPAREN",
    ")": "_RPAREN",
    "[": "LBRACK",
    "]": "_RBRACK",
    "{": "LBRACE",
    "}": "_RBRACE",
}

# OPA's builtin behind each infix operator.
_OPERATOR_BUILTINS = {
    "ASSIGN": "assign",
    "UNIFY": "eq",
    "EQ": "equal",
    "NEQ": "neq",
    "LT": "lt",
    "LTE": "lte",
    "GT": "gt",
    "GTE": "gte",
    "PLUS": "plus",
    "MINUS": "minus",
    "STAR": "mul",
    "SLASH": "div",
    "PERCENT": "rem",
    "AMP": "and",
    "PIPE": "or",
}

_TOKEN_PATTERN = re.compile(
    r"""
    (?P<WS>[ \t\r]+)
    |(?P<NL>\n)
    |(?P<COMMENT>\#[^\n]*)
    |(?P<NUMBER>[0-9]+(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?)
    |(?P<STRING>"(?:[^"\\\n]|\\.)*")
    |(?P<RAW_STRING>`[^`]*`)
    |(?P<NAME>[A-Za-z_][A-Za-z0-9_]*)
    |(?P<OP>:=|==|!=|<=|>=|[-=<>+*/%&|,;:.()\[\]{}])
    """,
    re.VERBOSE,
)

# Tokens after which a glued '.', '[' or '(' continues a ref or makes a call.
_TERM_ENDS = frozenset({"NAME", "CONTAINS", "_RBRACK", "_RPAREN", "_RBRACE"})
_GLUED = {"DOT": "_ADJ_DOT", "LBRACK": "_ADJ_LBRACK", "_LPAREN": "_ADJ_LPAREN"}


class _Comment:
    """A comment as the lexer met it: where, and its text after '#'."""

    __slots__ = ("row", "col", "text")

    def __init__(self, row: int, col: int, text: str) -> None:
        self.row = row
        self.col = col
        self.text = text


def _describe_value(kind: str, value: str) -> str:
    """A token as an error message names it."""
    if kind == "NUMBER":
        return f"number {value}"
    if kind in ("STRING", "RAW_STRING"):
        return f"string {value}"
    return repr(value)


def _describe_token(token: Any) -> str:
    """What an unexpected token is, in Rego words."""
    kind = token.type
    if kind == "$END":
        return "end of file"
    if kind == "_SEMI" and token.value == "\n":
        return "newline"
    if kind in _KEYWORD_OF_TOKEN:
        return f"keyword {_KEYWORD_OF_TOKEN[kind]!r}"
    if kind == "NAME":
        return f"name {token.value!r}"
    return _describe_value(kind, token.value)


_EXPECTED_NAMES = {
    "NAME": "a name",
    "NUMBER": "a number",
    "STRING": "a string",
    "_IF": "'if'",
    "_RBRACE": "'}'",
    "_RBRACK": "']'",
    "_RPAREN": "')'",
    "_SEMI": "';' or a newline",
    "_COMMA": "','",
    "_COLON": "':'",
    "IN": "'in'",
    "AS": "'as'",
    "ASSIGN": "':='",
    "LBRACE": "'{'",
}


def _describe_expected(expected: set[str]) -> str:
    """The tokens a parser state would have taken, in a short readable list."""
    names = sorted({_EXPECTED_NAMES[e] for e in expected if e in _EXPECTED_NAMES})
    if not names:
        return ""
    return " (expected " + ", ".join(names[:6]) + ")"


# ---------------------------------------------------------------------------
# AST construction (Lark callbacks, run at each LALR reduction)


def _is_ground(node: Any) -> bool:
    """Whether a term holds no variable anywhere (OPA's Term.IsGround)."""
    if isinstance(node, dict):
        if node.get("type") == "var":
            return False
        return all(_is_ground(v) for k, v in node.items() if k != "location")
    if isinstance(node, list):
        return all(_is_ground(v) for v in node)
    return True


def _contains_type(node: Any, types: frozenset[str]) -> str | None:
    """The first term type from ``types`` in a term, not looking into comprehensions."""
    if isinstance(node, dict):
        kind = node.get("type")
        if kind in ("arraycomprehension", "setcomprehension", "objectcomprehension"):
            return None
        if kind in types:
            return kind
        for key, value in node.items():
            if key != "location":
                found = _contains_type(value, types)
                if found:
                    return found
    elif isinstance(node, list):
        for value in node:
            found = _contains_type(value, types)
            if found:
                return found
    return None


_TERM_NAMES = {
    "var": "var",
    "ref": "ref",
    "call": "call",
    "number": "number",
    "string": "string",
    "boolean": "boolean",
    "null": "null",
    "array": "array",
    "object": "object",
    "set": "set",
}


_TYPE_ORDER = {
    "null": 0,
    "boolean": 1,
    "number": 2,
    "string": 3,
    "var": 5,
    "ref": 6,
    "array": 7,
    "object": 8,
    "set": 9,
    "arraycomprehension": 10,
    "objectcomprehension": 11,
    "setcomprehension": 12,
    "call": 13,
}


def _sign(a: Any, b: Any) -> int:
    return (a > b) - (a < b)


def _compare_term_lists(a: list[Node], b: list[Node], number_texts: dict[int, str]) -> int:
    for x, y in zip(a, b):
        order = _compare_terms(x, y, number_texts)
        if order:
            return order
    return _sign(len(a), len(b))


def _compare_terms(a: Node, b: Node, number_texts: dict[int, str]) -> int:
    """OPA's total order on terms (ast.Compare): type first, then value.

    Numbers compare exactly by their literal text; objects by their sorted
    (key, value) pairs; sets by their sorted elements. Comprehensions, which
    rarely sit in a set, compare by their JSON text -- consistent, not OPA's.
    """
    kind_a, kind_b = a["type"], b["type"]
    if kind_a != kind_b:
        return _sign(_TYPE_ORDER[kind_a], _TYPE_ORDER[kind_b])
    va, vb = a["value"], b["value"]
    if kind_a == "number":
        return _sign(
            Decimal(number_texts.get(id(a), repr(va))), Decimal(number_texts.get(id(b), repr(vb)))
        )
    if kind_a == "var" and (va == "_" or vb == "_"):
        # Wildcards are named $0, $1... only after the parse, in source order;
        # '$' sorts before any name. (With ten or more, OPA's string order of
        # "$10" and "$9" would differ from this; sets of wildcards are rare.)
        if va == "_" and vb == "_":
            la, lb = a["location"], b["location"]
            return _sign((la["row"], la["col"]), (lb["row"], lb["col"]))
        return -1 if va == "_" else 1
    if kind_a in ("string", "var", "boolean"):
        return _sign(va, vb)
    if kind_a == "null":
        return 0
    if kind_a in ("ref", "array", "call", "set"):
        return _compare_term_lists(va, vb, number_texts)
    if kind_a == "object":
        for (ka, xa), (kb, xb) in zip(va, vb):
            order = _compare_terms(ka, kb, number_texts) or _compare_terms(xa, xb, number_texts)
            if order:
                return order
        return _sign(len(va), len(vb))
    text_a = json.dumps(_without_locations(va), sort_keys=True)
    text_b = json.dumps(_without_locations(vb), sort_keys=True)
    return _sign(text_a, text_b)


def _without_locations(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: _without_locations(v) for k, v in node.items() if k != "location"}
    if isinstance(node, list):
        return [_without_locations(v) for v in node]
    return node


def _sorted_terms(terms: list[Node], number_texts: dict[int, str]) -> list[Node]:
    """Terms in OPA's order (stable, so the first of equal terms stays first)."""
    if all(term["type"] == "string" for term in terms):
        return sorted(terms, key=lambda term: term["value"])
    return sorted(terms, key=cmp_to_key(lambda x, y: _compare_terms(x, y, number_texts)))


class _ParseContext:
    """What one parse accumulates: file name, source, comments, wildcards."""

    def __init__(self, source: str, filename: str) -> None:
        self.source = source
        self.filename = filename
        self.comments: list[_Comment] = []
        # (source offset, tie-break, term or slot) in the order OPA's parser
        # would have generated wildcard names; numbered after the parse.
        self.wildcards: list[tuple[int, int, Any]] = []
        # head copies for else-branches and chained bodies, built after numbering
        self.deferred: list[Any] = []
        # id(number term) -> its literal text, for OPA's exact number order
        self.number_texts: dict[int, str] = {}

    def loc(self, token: Any) -> Node:
        return {"file": self.filename, "row": token.line, "col": token.column}

    def fail(self, row: int, col: int, reason: str) -> None:
        raise RegoSyntaxError(self.filename, row, col, reason)

    def fail_at(self, location: Node, reason: str) -> None:
        raise RegoSyntaxError(self.filename, location["row"], location["col"], reason)


class _WildcardSlot:
    """A ``$N`` name OPA generates for a head copy (an else branch's ``_`` argument)."""

    __slots__ = ("name",)

    def __init__(self) -> None:
        self.name = ""


def _term(kind: str, value: Any, location: Node) -> Node:
    return {"type": kind, "value": value, "location": location}


def _op_ref(name: str, location: Node) -> Node:
    return _term("ref", [_term("var", name, location)], location)


def _member_ref(arity: int, location: Node) -> Node:
    return _term(
        "ref",
        [_term("var", "internal", location), _term("string", f"member_{arity}", location)],
        location,
    )


def _true(location: Node) -> Node:
    return _term("boolean", True, location)


def _expr(terms: Any, location: Node, index: int = 0) -> Node:
    return {"index": index, "terms": terms, "location": location}


class _Builder:
    """Lark callbacks: each reduction of rego.lark becomes OPA-shaped JSON."""

    ctx: _ParseContext

    # -- scalars -----------------------------------------------------------

    def number(self, children: list[Any]) -> Node:
        token = children[0]
        term = _term("number", self._number_value(token, token.value), self.ctx.loc(token))
        self.ctx.number_texts[id(term)] = token.value
        return term

    def negative_number(self, children: list[Any]) -> Node:
        minus, token = children
        term = _term("number", self._number_value(token, "-" + token.value), self.ctx.loc(minus))
        self.ctx.number_texts[id(term)] = "-" + token.value
        return term

    def _number_value(self, token: Any, text: str) -> int | float:
        literal = token.value
        if len(literal) > 1 and literal[0] == "0" and literal[1] not in ".eE":
            self.ctx.fail(token.line, token.column, f"number {literal}: expected number without leading zero")
        # OPA keeps the literal's text as the number's JSON; decoding that
        # text is what OPA's JSON gives a reader (1e3 -> 1000.0, 10 -> 10).
        return json.loads(text)

    def negated_ref(self, children: list[Any]) -> Node:
        minus, operand = children
        location = self.ctx.loc(minus)
        if operand["type"] not in ("var", "ref", "call") or (
            operand["type"] == "ref" and operand["value"][0]["type"] != "var"
        ):
            self.ctx.fail_at(operand["location"], "unary minus applies to numbers, variables, refs and calls only")
        # OPA reads -x as 0 - x
        return _term("call", [_op_ref("minus", location), _term("number", 0, location), operand], location)

    def string(self, children: list[Any]) -> Node:
        token = children[0]
        literal = token.value
        inner = literal[1:-1]
        if "\\" in inner:
            try:
                inner = json.loads(literal)
            except ValueError:
                self.ctx.fail(token.line, token.column, f"illegal escape sequence in string {literal}")
            # Go decodes a lone surrogate escape to U+FFFD
            inner = re.sub("[\ud800-\udfff]", "\ufffd", inner)
        return _term("string", inner, self.ctx.loc(token))

    def raw_string(self, children: list[Any]) -> Node:
        token = children[0]
        return _term("string", token.value[1:-1], self.ctx.loc(token))

    def true(self, children: list[Any]) -> Node:
        return _term("boolean", True, self.ctx.loc(children[0]))

    def false(self, children: list[Any]) -> Node:
        return _term("boolean", False, self.ctx.loc(children[0]))

    def null(self, children: list[Any]) -> Node:
        # OPA's Null marshals as an empty JSON object
        return _term("null", {}, self.ctx.loc(children[0]))

    # -- refs and calls ----------------------------------------------------

    def _var(self, token: Any) -> Node:
        term = _term("var", token.value, self.ctx.loc(token))
        if token.value == "_":
            self.ctx.wildcards.append((token.start_pos, 0, term))
        return term

    def dot_suffix(self, children: list[Any]) -> tuple[str, Any]:
        token = children[0]
        return ("dot", _term("string", token.value, self.ctx.loc(token)))

    def bracket_suffix(self, children: list[Any]) -> tuple[str, Any]:
        return ("index", children[0])

    def call_suffix(self, children: list[Any]) -> tuple[str, Any]:
        return ("call", children)

    def paren(self, children: list[Any]) -> Node:
        return children[0]

    def ref_chain(self, children: list[Any]) -> Node:
        head = children[0]
        if not isinstance(head, dict):  # a NAME or CONTAINS token
            head = self._var(head)
        if len(children) == 1:
            if head["type"] == "var" and head["value"] in ("input", "data"):
                return _term("ref", [head], head["location"])
            return head
        location = head["location"]
        if head["type"] in ("number", "string", "boolean", "null", "ref"):
            self.ctx.fail_at(location, f"illegal ref (head cannot be {_TERM_NAMES[head['type']]})")
        current = head
        parts: list[Node] | None = None
        for kind, payload in children[1:]:
            if kind == "call":
                if parts is not None:
                    operator = _term("ref", parts, location)
                elif current["type"] == "var":
                    operator = _term("ref", [current], location)
                else:
                    self.ctx.fail_at(location, f"a {_TERM_NAMES.get(current['type'], current['type'])} cannot be called")
                if not payload and [p["value"] for p in operator["value"]] == ["set"]:
                    current = _term("set", [], location)
                else:
                    current = _term("call", [operator, *payload], location)
                parts = None
            else:
                if parts is None:
                    parts = [current]
                parts.append(payload)
        if parts is not None:
            return _term("ref", parts, location)
        return current

    # -- operators ---------------------------------------------------------

    def binary_call(self, children: list[Any]) -> Node:
        lhs, op, rhs = children
        return _term("call", [_op_ref(_OPERATOR_BUILTINS[op.type], self.ctx.loc(op)), lhs, rhs], lhs["location"])

    def member(self, children: list[Any]) -> Node:
        lhs, op, rhs = children
        return _term("call", [_member_ref(2, self.ctx.loc(op)), lhs, rhs], lhs["location"])

    def member_with_key(self, children: list[Any]) -> Node:
        key, value, op, rhs = children
        return _term("call", [_member_ref(3, self.ctx.loc(op)), key, value, rhs], key["location"])

    # -- collections -------------------------------------------------------

    def array(self, children: list[Any]) -> Node:
        return _term("array", children[1:], self.ctx.loc(children[0]))

    def set(self, children: list[Any]) -> Node:
        # OPA keeps a set's elements sorted in its term order, without repeats
        elements = _sorted_terms(children[1:], self.ctx.number_texts)
        unique = elements[:1]
        for element in elements[1:]:
            if _compare_terms(unique[-1], element, self.ctx.number_texts) != 0:
                unique.append(element)
        return _term("set", unique, self.ctx.loc(children[0]))

    def empty_object(self, children: list[Any]) -> Node:
        return _term("object", [], self.ctx.loc(children[0]))

    def pair(self, children: list[Any]) -> list[Node]:
        return [children[0], children[1]]

    def object(self, children: list[Any]) -> Node:
        # OPA keeps an object's pairs sorted by key (a repeated key stays twice)
        pairs = children[1:]
        number_texts = self.ctx.number_texts
        if all(key["type"] == "string" for key, _ in pairs):
            pairs.sort(key=lambda pair: pair[0]["value"])
        else:
            pairs.sort(key=cmp_to_key(lambda a, b: _compare_terms(a[0], b[0], number_texts)))
        return _term("object", pairs, self.ctx.loc(children[0]))

    def array_comprehension(self, children: list[Any]) -> Node:
        bracket, head, _pipe, body = children
        return _term("arraycomprehension", {"term": head, "body": body}, self.ctx.loc(bracket))

    def set_comprehension(self, children: list[Any]) -> Node:
        brace, head, _pipe, body = children
        return _term("setcomprehension", {"term": head, "body": body}, self.ctx.loc(brace))

    def object_comprehension(self, children: list[Any]) -> Node:
        brace, key, value, _pipe, body = children
        return _term("objectcomprehension", {"key": key, "value": value, "body": body}, self.ctx.loc(brace))

    # -- literals and bodies -----------------------------------------------

    def query(self, children: list[Any]) -> list[Node]:
        for index, expr in enumerate(children):
            expr["index"] = index
        return children

    def assignment(self, children: list[Any]) -> tuple[Any, Node]:
        return (children[0], children[1])

    def expr_literal(self, children: list[Any]) -> Node:
        negation, lhs, assignment, *withs = children
        if assignment is not None:
            op, rhs = assignment
            terms: Any = [_op_ref(_OPERATOR_BUILTINS[op.type], self.ctx.loc(op)), lhs, rhs]
        elif lhs["type"] == "call":
            # OPA turns a top-level call into the expression's term list
            terms = lhs["value"]
        else:
            terms = lhs
        location = self.ctx.loc(negation) if negation is not None else lhs["location"]
        expr = _expr(terms, location)
        if negation is not None:
            expr["negated"] = True
        if withs:
            expr["with"] = withs
        return expr

    def with_modifier(self, children: list[Any]) -> Node:
        target, _as, value = children
        if target["type"] not in ("ref", "var"):
            self.ctx.fail_at(target["location"], f"with target must be a ref or a var, not a {_TERM_NAMES.get(target['type'], target['type'])}")
        return {"target": target, "value": value}

    def some_symbols(self, children: list[Any]) -> list[Node]:
        return children

    def some_literal(self, children: list[Any]) -> Node:
        keyword, symbols, in_token, domain, *withs = children
        location = self.ctx.loc(keyword)
        if in_token is not None:
            if len(symbols) > 2:
                self.ctx.fail_at(symbols[2]["location"], "some: expected `x in xs` or `k, v in xs`")
            member = _term("call", [_member_ref(len(symbols) + 1, self.ctx.loc(in_token)), *symbols, domain], symbols[0]["location"])
            declaration: list[Node] = [member]
        else:
            for symbol in symbols:
                if symbol["type"] != "var":
                    self.ctx.fail_at(symbol["location"], f"some: expected var, found {_TERM_NAMES.get(symbol['type'], symbol['type'])}")
            declaration = symbols
        expr = _expr({"symbols": declaration}, location)
        if withs:
            expr["with"] = withs
        return expr

    def every_value(self, children: list[Any]) -> Node:
        keyword, value, _in, domain, _brace, body, *withs = children
        return self._every(keyword, None, value, domain, body, withs)

    def every_key_value(self, children: list[Any]) -> Node:
        keyword, key, value, _in, domain, _brace, body, *withs = children
        return self._every(keyword, key, value, domain, body, withs)

    def _every(self, keyword: Any, key: Node | None, value: Node, domain: Node, body: list[Node], withs: list[Node]) -> Node:
        if key is not None and key["type"] != "var":
            self.ctx.fail_at(key["location"], "every: expected key to be a variable")
        if value["type"] != "var":
            self.ctx.fail_at(value["location"], "every: expected value to be a variable")
        expr = _expr({"key": key, "value": value, "domain": domain, "body": body}, self.ctx.loc(keyword))
        if withs:
            expr["with"] = withs
        return expr

    # -- rules ---------------------------------------------------------------

    def head_value(self, children: list[Any]) -> tuple[Any, Node]:
        return (children[0], children[1])

    def else_value(self, children: list[Any]) -> tuple[Any, Node]:
        return (children[0], children[1])

    def braced_body(self, children: list[Any]) -> list[Node]:
        return children[1]

    def empty_object_body(self, children: list[Any]) -> list[Node]:
        location = self.ctx.loc(children[0])
        return [_expr(_term("object", [], location), location)]

    def literal_body(self, children: list[Any]) -> list[Node]:
        expr = children[0]
        terms = expr["terms"]
        if isinstance(terms, dict) and terms.get("type") == "set":
            # OPA: a set literal is never false, so `p if set()` is refused
            self.ctx.fail_at(expr["location"], "rule body expected after `if`, found a set literal")
        return [expr]

    def else_with_body(self, children: list[Any]) -> dict[str, Any]:
        keyword, value, body, chained = children
        return {"keyword": keyword, "value": value, "body": body, "else": chained}

    def else_without_body(self, children: list[Any]) -> dict[str, Any]:
        keyword, value = children
        return {"keyword": keyword, "value": value, "body": None, "else": None}

    def chained_body(self, children: list[Any]) -> tuple[Any, list[Node]]:
        return (children[0], children[1])

    def _head(self, head_term: Node) -> Node:
        """A rule head from its ref or call term (OPA's parseHead, before the value)."""
        kind = head_term["type"]
        location = head_term["location"]
        if kind == "var":
            return {"name": head_term["value"], "ref": [head_term], "location": location}
        if kind == "ref":
            ref = head_term["value"]
            if ref[0]["type"] != "var":
                self.ctx.fail_at(location, "rule head must start with a name")
            head = {"ref": ref, "location": location}
            return head
        if kind == "call":
            operator, *args = head_term["value"]
            ref = operator["value"]
            if ref[0]["type"] != "var" or any(part["type"] != "string" for part in ref[1:]):
                self.ctx.fail_at(location, "function name must be a name or a dotted path of names")
            head = {"ref": ref, "args": args, "location": location}
            if len(ref) == 1:
                head["name"] = ref[0]["value"]
            return head
        self.ctx.fail_at(location, f"{_TERM_NAMES.get(kind, kind)} cannot be used for rule name")
        raise AssertionError("unreachable")

    def default_rule(self, children: list[Any]) -> Node:
        keyword, head_term, op, value = children
        location = self.ctx.loc(keyword)
        head = self._head(head_term)
        head["value"] = value
        if op.type == "ASSIGN":
            head["assign"] = True
        found = _contains_type(value, frozenset({"var", "ref", "call"}))
        if found:
            self.ctx.fail_at(location, f"illegal default rule (value cannot contain {found})")
        seen: set[str] = set()
        for arg in head.get("args", ()):
            if arg["type"] != "var":
                self.ctx.fail_at(location, f"illegal default rule (arguments cannot contain {_TERM_NAMES.get(arg['type'], arg['type'])})")
            if arg["value"] in seen:
                self.ctx.fail_at(location, f"illegal default rule (arguments cannot be repeated {arg['value']})")
            seen.add(arg["value"])
        return {
            "default": True,
            "head": head,
            "body": [_expr(_true(location), location)],
            "location": location,
        }

    def rule(self, children: list[Any]) -> Any:
        head_term, head_value, body, else_clause, *chained = children
        ctx = self.ctx
        head = self._head(head_term)
        location = head["location"]
        ref = head["ref"]
        has_args = "args" in head
        uses_contains = False
        if head_value is not None:
            op, value = head_value
            if op.type == "CONTAINS":
                if has_args:
                    ctx.fail(op.line, op.column, "the contains keyword can only be used with multi-value rule definitions")
                head["key"] = value
                uses_contains = True
            else:
                head["value"] = value
                if op.type == "ASSIGN":
                    head["assign"] = True
        if "value" not in head and "key" not in head and (len(ref) != 2 or has_args):
            head["value"] = _true(location)
        has_if = body is not None
        if has_if and not uses_contains and len(ref) == 2:
            second = ref[1]
            if (not _is_ground(second) or second["type"] == "ref") and not has_args:
                head["key"] = second
            if "value" not in head:
                head["value"] = _true(location)
            else:
                head["name"] = ref[0]["value"]
        if not has_if and not uses_contains and not has_args and len(ref) == 2:
            head["name"] = ref[0]["value"]
            head["key"] = ref[1]
            if "value" not in head:
                head["ref"] = ref[:1]
        if not has_if:
            if "value" not in head and not uses_contains:
                ctx.fail_at(location, "rule needs a value (:= or =), `contains` or an `if` body")
            body = [_expr(_true(location), location)]
        rule: Node = {"head": head, "body": body, "location": location}
        if else_clause is not None:
            if len(ref) > 1 and not _is_ground(ref):
                ctx.fail(else_clause["keyword"].line, else_clause["keyword"].column, "else keyword cannot be used on rules with variables in head")
            if "key" in head:
                ctx.fail(else_clause["keyword"].line, else_clause["keyword"].column, "else keyword cannot be used on multi-value rules")
            if not has_if:
                ctx.fail(else_clause["keyword"].line, else_clause["keyword"].column, "else needs a rule with an `if` body before it")
            rule["else"] = self._else(head, else_clause)
        rules = [rule]
        for brace, chained_body in chained:
            if not has_if:
                ctx.fail(brace.line, brace.column, "`if` keyword is required before rule body")
            if else_clause is not None:
                ctx.fail(brace.line, brace.column, "expected else keyword")
            brace_location = ctx.loc(brace)
            rules.append(self._chained_rule(head, brace, brace_location, chained_body))
        return rules

    def _head_copy(self, head: Node, keyword: Any, location: Node) -> tuple[Node, list[tuple[int, _WildcardSlot]]]:
        """A shallow head copy for an else branch or a chained body; wildcard args get new names later."""
        copy_head = dict(head)
        copy_head["location"] = location
        slots: list[tuple[int, _WildcardSlot]] = []
        for position, arg in enumerate(head.get("args", ())):
            if arg["type"] == "var" and arg["value"] == "_":
                slot = _WildcardSlot()
                self.ctx.wildcards.append((keyword.start_pos, position + 1, slot))
                slots.append((position, slot))
        return copy_head, slots

    def _finish_head_copy(self, copy_head: Node, slots: list[tuple[int, _WildcardSlot]], location: Node) -> None:
        """Deep-copy the copied head's terms once wildcards have their names."""
        for key in ("ref", "args", "key", "value"):
            if key in copy_head:
                copy_head[key] = copy.deepcopy(copy_head[key])
        for position, slot in slots:
            copy_head["args"][position] = _term("var", slot.name, location)

    def _else(self, head: Node, clause: dict[str, Any]) -> Node:
        keyword = clause["keyword"]
        location = self.ctx.loc(keyword)
        else_head, slots = self._head_copy(head, keyword, location)
        value = clause["value"]
        if value is None:
            else_head["value"] = _true(location)
        else:
            op, term = value
            else_head["value"] = term
            if op.type == "ASSIGN":
                else_head["assign"] = True
            else:
                else_head.pop("assign", None)
        value_term = else_head["value"]

        def finish() -> None:
            self._finish_head_copy(else_head, slots, location)
            # the value is the else branch's own, not a copy of the head's
            else_head["value"] = value_term

        self.ctx.deferred.append(finish)
        body = clause["body"]
        if body is None:
            body = [_expr(_true(location), location)]
        rule: Node = {"head": else_head, "body": body, "location": location}
        if clause["else"] is not None:
            rule["else"] = self._else(head, clause["else"])
        return rule

    def _chained_rule(self, head: Node, brace: Any, location: Node, body: list[Node]) -> Node:
        chained_head, slots = self._head_copy(head, brace, location)
        self.ctx.deferred.append(lambda: self._finish_head_copy(chained_head, slots, location))
        return {"head": chained_head, "body": body, "location": location}

    # -- module --------------------------------------------------------------

    def package(self, children: list[Any]) -> Node:
        term = children[0]
        location = term["location"]
        if term["type"] == "var":
            path = [_term("var", "data", location), _term("string", term["value"], location)]
        elif term["type"] == "ref":
            first, *rest = term["value"]
            if first["type"] != "var":
                self.ctx.fail_at(location, "package path must start with a name")
            path = [_term("var", "data", first["location"]), _term("string", first["value"], first["location"])]
            for part in rest:
                if part["type"] != "string":
                    self.ctx.fail_at(part["location"], f"unexpected {_TERM_NAMES.get(part['type'], part['type'])} in package path: expecting string")
                path.append(part)
        else:
            self.ctx.fail_at(location, "package path expected")
        return {"path": path}

    def import_decl(self, children: list[Any]) -> Node:
        term, _as, alias = children
        location = term["location"]
        if term["type"] == "var":
            term = _term("ref", [term], location)
        elif term["type"] != "ref":
            self.ctx.fail_at(location, "import path expected")
        path = term["value"]
        for part in path[1:]:
            if part["type"] != "string":
                self.ctx.fail_at(part["location"], f"unexpected {_TERM_NAMES.get(part['type'], part['type'])} in import path: expecting string")
        root = path[0]["value"]
        if root not in ("data", "input", "future", "rego"):
            self.ctx.fail_at(location, f"unexpected import path, must begin with one of: {{data, future, input, rego}}, got: {root}")
        declaration: Node = {"path": term}
        if alias is not None:
            declaration["alias"] = alias.value
        elif root != "future" and len(path) > 1 and path[-1]["value"] in _KEYWORDS:
            self.ctx.fail_at(path[-1]["location"], f"unexpected import path, must not end with a keyword, got: {path[-1]['value']}")
        return declaration

    def start(self, children: list[Any]) -> Node:
        module: Node = {"package": children[0]}
        imports = []
        rules: list[Node] = []
        for child in children[1:]:
            if isinstance(child, list):
                rules.extend(child)
            elif "path" in child:
                imports.append(child)
            else:
                rules.append(child)
        if imports:
            module["imports"] = imports
        if rules:
            module["rules"] = rules
        return module


# ---------------------------------------------------------------------------
# Tokens, tables and the parse loop

class _Token:
    """One token: its grammar type, text and position (what the callbacks read)."""

    __slots__ = ("type", "value", "start_pos", "line", "column")

    def __init__(self, kind: str, value: str, start_pos: int, line: int, column: int) -> None:
        self.type = kind
        self.value = value
        self.start_pos = start_pos
        self.line = line
        self.column = column


class _Tables:
    """Lark's LALR(1) tables for rego.lark, recast for a tight parse loop.

    ``actions[state][symbol]`` is ``(next_state, None)`` for a shift (or a
    goto on a nonterminal) and ``(size, (origin, callback))`` for a reduction
    by a rule of ``size`` symbols whose value ``callback`` builds.
    """

    def __init__(self) -> None:
        from lark import Lark
        from lark.lexer import Lexer
        from lark.parsers.lalr_analysis import Shift

        class _UnusedLexer(Lexer):
            # Tokens come from the loop in _parse, which asks the parser
            # whether a newline ends an expression; Lark's lexers cannot.
            __future_interface__ = 2

            def __init__(self, lexer_conf: Any) -> None:
                self.lexer_conf = lexer_conf

            def lex(self, lexer_state: Any, parser_state: Any) -> Iterator[Any]:
                raise NotImplementedError("parser.py feeds tokens itself")

        grammar = resources.files("helpdesk_policy.compiler").joinpath("rego.lark").read_text(encoding="utf-8")
        lark = Lark(grammar, parser="lalr", lexer=_UnusedLexer, transformer=_builder, maybe_placeholders=True)
        conf = lark.parse_interactive().parser_state.parse_conf
        self.start_state: int = conf.start_state
        self.end_state: int = conf.end_state
        self.actions: dict[int, dict[str, tuple[Any, Any]]] = {}
        for state, row in conf.states.items():
            converted: dict[str, tuple[Any, Any]] = {}
            for symbol, (action, arg) in row.items():
                # plain str keys: Lark's names are Token objects, slower to compare
                if action is Shift:
                    converted[str(symbol)] = (arg, None)
                else:
                    converted[str(symbol)] = (len(arg.expansion), (str(arg.origin.name), conf.callbacks[arg]))
            self.actions[state] = converted


def _accepts(actions: dict[int, dict[str, tuple[Any, Any]]], stack: list[int], kind: str) -> bool:
    """Whether the parser with state stack ``stack`` can take a token of ``kind``.

    It replays the reductions the token would trigger on a copy of the stack
    (building no values) until the token is shifted or refused, so the
    answer is exact even where LALR's merged lookaheads reduce before failing.
    """
    stack = list(stack)
    while True:
        action = actions[stack[-1]].get(kind)
        if action is None:
            return False
        target, reduction = action
        if reduction is None:
            return True
        if target:
            del stack[-target:]
        stack.append(actions[stack[-1]][reduction[0]][0])


def _parse(tables: _Tables, ctx: _ParseContext) -> Node:
    """Lex ``ctx.source`` and run the LALR automaton over it; the callbacks build the AST."""
    text = ctx.source
    actions = tables.actions
    end_state = tables.end_state
    stack: list[int] = [tables.start_state]
    values: list[Any] = []
    match = _TOKEN_PATTERN.match
    keywords = _KEYWORDS
    operators = _OPERATORS
    fail = ctx.fail

    def feed(token: _Token) -> None:
        kind = token.type
        while True:
            action = actions[stack[-1]].get(kind)
            if action is None:
                _unexpected(ctx, token, actions[stack[-1]])
            target, reduction = action
            if reduction is None:
                stack.append(target)
                values.append(token)
                return
            origin, callback = reduction
            if target:
                children = values[-target:]
                del stack[-target:]
                del values[-target:]
            else:
                children = []
            value = callback(children)
            stack.append(actions[stack[-1]][origin][0])
            values.append(value)

    pos = 0
    end = len(text)
    line = 1
    line_start = 0
    newline_before = False
    prev_type = ""
    prev_end = -1
    while pos < end:
        m = match(text, pos)
        if m is None:
            col = pos - line_start + 1
            char = text[pos]
            if char == '"':
                fail(line, col, "non-terminated string")
            if char == "`":
                fail(line, col, "non-terminated raw string")
            fail(line, col, f"illegal {char!r} character")
        kind = m.lastgroup
        value = m.group()
        start = pos
        pos = m.end()
        if kind == "WS":
            continue
        if kind == "NL":
            line += 1
            line_start = pos
            newline_before = True
            continue
        col = start - line_start + 1
        if kind == "COMMENT":
            ctx.comments.append(_Comment(line, col, value[1:]))
            continue
        glued = start == prev_end
        if kind == "NAME":
            if prev_type == "_ADJ_DOT":
                # after '.', a keyword is a plain name: input.contains
                if not glued:
                    fail(line, col, "unexpected whitespace after '.': expected a name")
            else:
                kind = keywords.get(value, "NAME")
        elif kind == "OP":
            kind = operators[value]
            if kind in _GLUED:
                if glued and prev_type in _TERM_ENDS:
                    kind = _GLUED[kind]
                elif kind == "DOT":
                    fail(line, col, "unexpected '.': a ref continues only right after a term")
            elif kind == "LBRACE" and prev_type == "_IF":
                kind = "BODY_LBRACE"
        elif prev_type == "_ADJ_DOT":
            fail(line, col, f"unexpected {_describe_value(kind, value)} after '.': expected a name")
        token = _Token(kind, value, start, line, col)
        if kind == "RAW_STRING" and "\n" in value:
            # a raw string may span lines; keep the rows after it right
            line += value.count("\n")
            line_start = start + value.rindex("\n") + 1
        if (
            newline_before
            and prev_type
            and not _accepts(actions, stack, kind)
            and _accepts(actions, stack, "_SEMI")
        ):
            # OPA ends an expression at a newline only where it cannot go on
            feed(_Token("_SEMI", "\n", start, token.line, col))
        newline_before = False
        prev_type = kind
        prev_end = pos
        feed(token)

    row, col = _end_position(text)
    end_token = _Token("$END", "", end, row, col)
    while True:
        action = actions[stack[-1]].get("$END")
        if action is None:
            _unexpected(ctx, end_token, actions[stack[-1]])
        target, reduction = action
        origin, callback = reduction
        if target:
            children = values[-target:]
            del stack[-target:]
            del values[-target:]
        else:
            children = []
        value = callback(children)
        goto = actions[stack[-1]][origin][0]
        if goto == end_state:
            return value
        stack.append(goto)
        values.append(value)


def _unexpected(ctx: _ParseContext, token: _Token, row: dict[str, Any]) -> None:
    """Raise the syntax error for a token the parser cannot take here."""
    expected = {symbol for symbol in row if symbol.isupper() or symbol.startswith("_") and symbol[1:].isupper()}
    ctx.fail(token.line, token.column, f"unexpected {_describe_token(token)}" + _describe_expected(expected))


# ---------------------------------------------------------------------------
# The cached tables and the entry point

_builder = _Builder()
_tables: _Tables | None = None
# One parse at a time: the callbacks read the current parse's context from
# the shared builder. Parsing holds the GIL throughout, so this costs nothing.
_parse_lock = threading.Lock()


def _get_tables() -> _Tables:
    """The LALR tables for rego.lark, built on first use and kept for the process."""
    global _tables
    if _tables is None:
        with _parse_lock:
            if _tables is None:
                _tables = _Tables()
                logger.debug("built the Rego LALR parser")
    return _tables


def parse_module(source: str, filename: str = "<policy>") -> dict[str, Any]:
    """Parse one Rego v1 module into OPA's AST JSON, with locations.

    Args:
        source: the module's text.
        filename: the name locations and error messages use.

    Returns:
        The document ``rego.parse_module(filename, source)`` returns in OPA
        (``package``, ``imports``, ``rules``, ``comments``), where every rule,
        head, body expression and term also carries
        ``"location": {"file": filename, "row": int, "col": int}``.

    Raises:
        RegoSyntaxError: the module does not parse, or uses syntax this parser
            does not support; the message is ``file:row:col: what is wrong``.
    """
    tables = _get_tables()
    ctx = _ParseContext(source, filename)
    with _parse_lock:
        _builder.ctx = ctx
        try:
            module = _parse(tables, ctx)
        finally:
            del _builder.ctx
    _name_wildcards(ctx)
    for finish in ctx.deferred:
        finish()
    if ctx.comments:
        module["comments"] = [
            {
                "Location": {"file": filename, "row": c.row, "col": c.col},
                "Text": base64.b64encode(c.text.encode("utf-8")).decode("ascii"),
            }
            for c in ctx.comments
        ]
    return module


def _name_wildcards(ctx: _ParseContext) -> None:
    """Rename each ``_`` to ``$0``, ``$1``... in the order OPA's parser meets them."""
    ctx.wildcards.sort(key=lambda entry: (entry[0], entry[1]))
    for number, (_, _, holder) in enumerate(ctx.wildcards):
        if isinstance(holder, _WildcardSlot):
            holder.name = f"${number}"
        else:
            holder["value"] = f"${number}"


def _end_position(source: str) -> tuple[int, int]:
    """Row and column just past the last character, for errors at end of file."""
    row = source.count("\n") + 1
    col = len(source) - (source.rfind("\n") + 1) + 1
    return row, col
