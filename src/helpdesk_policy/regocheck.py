"""Static checks of Rego sources, before any engine compiles them, and readable compile errors.

rego-cpp (the ``rego`` engine and the Rego test runner) accepts recursive
rules and then evaluates them without end: a policy with mutually recursive
rules grew a test run past 3 GB in 30 s. OPA's compiler refuses recursion
(``rego_recursion_error``); this module does the same, statically, over the
sources. :func:`check_modules` finds:

* lexical damage — a string or raw string never closed, a bracket never
  closed or closed by the wrong one — and a module without a ``package``;
* **recursion**: a cycle in the rule dependency graph. Every rule (and
  function: a function calling itself is recursion too, as in OPA) is a node
  named by its path, ``data.<package>.<head ref>``; a rule depends on every
  rule its head or body refers to — a rule of its own package by name, any
  rule through ``data.…`` or an import alias, and every rule *under* a
  referenced path (``data.helpdesk.levels`` depends on all of that
  package), the target of a ``with`` included (OPA counts it too). Local
  variables (function arguments, ``some``/``every`` declarations, ``:=`` in
  bodies and comprehensions) shadow rule names.

Every problem names its file and line. The checks read tokens, not an AST,
and refuse only what OPA refuses too (the recursion check is compared with
OPA's own on generated rule graphs); every other compile error is left to
the compiler — whose message
:func:`describe_regocpp_error` turns into ``file:line:col: message`` lines
(rego-cpp raises an S-expression dump with byte offsets).

>>> check_modules({"a.rego": "package a\\n\\np if q\\n\\nq if p\\n"})
Traceback (most recent call last):
...
helpdesk_policy.errors.PolicyLoadError: the Rego: 1 problem(s):
  a.rego:3: recursion: data.a.p -> data.a.q -> data.a.p (a.rego:3: p refers to q; a.rego:5: q refers to p)
"""

from __future__ import annotations

import ctypes
import json
import os
import re
import sys
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import NamedTuple

from .errors import PolicyLoadError

__all__ = [
    "RegoProblem",
    "check_modules",
    "find_problems",
    "required_files",
    "describe_regocpp_error",
    "compile_error_message",
    "captured_stdout",
    "rule_bodies",
    "module_imports",
    "RuleBody",
    "Expression",
]

_KEYWORDS = frozenset({
    "package", "import", "as", "default", "else", "if", "contains", "in", "not", "some", "every", "with",
    "true", "false", "null",
})
# Tokens after which a line break does not end a top-level statement, and
# tokens that cannot start one (so the line before continues).
_CONTINUES = frozenset({":=", "=", "==", "!=", "<", ">", "<=", ">=", "+", "-", "*", "/", "%", "|", "&", ",", ".",
                        ":", "if", "else", "contains", "in", "not", "with", "as", "some", "every", "default"})
_OPENERS = {"(": ")", "[": "]", "{": "}"}
_CLOSERS = {v: k for k, v in _OPENERS.items()}

# Blanks and a comment are eaten in front of each token (one match per token).
_TOKEN_RE = re.compile(
    r"""
    [ \t\r\f\v]* (?:\#[^\n]*)?
    (?:
      (?P<nl>\n)
    | (?P<string>"(?:[^"\\\n]|\\[^\n])*")
    | (?P<badstring>")
    | (?P<raw>`[^`]*`)
    | (?P<badraw>`)
    | (?P<number>\d+(?:\.\d+)?(?:[eE][+-]?\d+)?)
    | (?P<ident>[A-Za-z_][A-Za-z0-9_]*)
    | (?P<op>:=|==|!=|<=|>=|[-+*/%<>=|&.,;:()\[\]{}])
    | (?P<end>\Z)
    | (?P<other>.)
    )
    """,
    re.VERBOSE,
)


@dataclass(frozen=True)
class RegoProblem:
    """One problem in one module: where, and what."""

    file: str
    line: int
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message}"


class _Token(NamedTuple):
    kind: str
    text: str
    line: int
    col: int
    depth: int  # bracket depth before the token


def _tokens(file: str, source: str) -> tuple[list[_Token], RegoProblem | None]:
    """Tokens without comments and blanks (line breaks kept), and the first lexical problem."""
    out: list[_Token] = []
    stack: list[_Token] = []
    line, line_start = 1, 0
    for m in _TOKEN_RE.finditer(source):
        kind = m.lastgroup
        if kind is None or kind == "end":
            continue
        text = m.group(kind)
        if kind == "badstring":
            return out, RegoProblem(file, line, "string never closed on its line")
        if kind == "badraw":
            return out, RegoProblem(file, line, "raw string (`…`) never closed")
        if kind == "op" and text in _CLOSERS:
            if not stack:
                return out, RegoProblem(file, line, f"'{text}' closes nothing")
            opener = stack.pop()
            if _OPENERS[opener.text] != text:
                return out, RegoProblem(file, line, f"'{text}' closes the '{opener.text}' opened at line {opener.line}")
        tok = _Token("string" if kind == "raw" else kind, text, line, m.start(kind) - line_start + 1, len(stack))
        out.append(tok)
        if kind == "op" and text in _OPENERS:
            stack.append(tok)
        elif kind == "nl":
            line += 1
            line_start = m.end()
        elif kind == "raw" and "\n" in text:
            line += text.count("\n")
            line_start = m.start(kind) + text.rfind("\n") + 1
    if stack:
        opener = stack[-1]
        return out, RegoProblem(file, opener.line, f"'{opener.text}' opened here is never closed")
    return out, None


def _statements(tokens: list[_Token]) -> list[list[_Token]]:
    """Top-level statements: split at line breaks at depth 0 that do not continue a statement."""
    return _split_lines(tokens, 0, _STATEMENT_LEADS)


def _split_lines(tokens: Sequence[_Token], base: int, leads: frozenset[str]) -> list[list[_Token]]:
    """Split at ``;`` and at line breaks at depth ``base``, unless the line
    before ends in an operator (``_CONTINUES``) or the next starts with one of ``leads``."""
    groups: list[list[_Token]] = []
    current: list[_Token] = []
    for tok in tokens:
        if tok.kind == "nl":
            continue
        if tok.depth == base and tok.text == ";":
            if current:
                groups.append(current)
            current = []
            continue
        if (current and tok.depth == base and tok.line > _end_line(current[-1])
                and current[-1].text not in _CONTINUES and tok.text not in leads):
            groups.append(current)
            current = []
        current.append(tok)
    if current:
        groups.append(current)
    return groups


def _end_line(tok: _Token) -> int:
    return tok.line + tok.text.count("\n")


#: Tokens that, first on a line, continue the expression of the line above.
_LEADS = frozenset({"with", "as", "|", "&", "+", "*", "/", "%", "==", "!=", "<", ">", "<=", ">=", ":=", "=", "in", ".",
                    ")", "]", "}"})
#: The same for a top-level statement, which no ``{`` or keyword of a rule head can start.
_STATEMENT_LEADS = _LEADS | {"if", "else", "contains", ",", ":", "{"}


# ----------------------------------------------------------------- modules


@dataclass
class _Rule:
    path: tuple[str, ...]
    file: str
    line: int
    name: str
    tokens: list[_Token]
    #: Index of the first token after the head ref.
    head_end: int


@dataclass
class _Module:
    file: str
    package: tuple[str, ...]
    aliases: dict[str, tuple[str, ...]] = field(default_factory=dict)
    rules: list[_Rule] = field(default_factory=list)


def _ref(tokens: Sequence[_Token], i: int) -> tuple[list[str], int, bool]:
    """The static segments of the ref starting at ``tokens[i]`` (an identifier).

    Returns (segments, index after the ref, whether the ref went on with a
    dynamic segment).
    """
    segments = [tokens[i].text]
    i += 1
    dynamic = False
    while i < len(tokens):
        tok = tokens[i]
        if tok.text == "." and i + 1 < len(tokens) and tokens[i + 1].kind == "ident" and not dynamic:
            segments.append(tokens[i + 1].text)
            i += 2
        elif (tok.text == "[" and i + 2 < len(tokens) and tokens[i + 1].kind == "string"
              and tokens[i + 2].text == "]" and not dynamic and tokens[i + 1].text.startswith('"')):
            segments.append(_unquote(tokens[i + 1].text))
            i += 3
        elif tok.text == "[":
            dynamic = True
            i = _matching(tokens, i) + 1
        elif tok.text == "." and dynamic:
            i += 2
        else:
            break
    return segments, i, dynamic


def _unquote(text: str) -> str:
    try:
        value = json.loads(text)
    except ValueError:
        return text[1:-1]
    return value if isinstance(value, str) else text[1:-1]


def _matching(tokens: Sequence[_Token], i: int) -> int:
    """Index of the bracket closing the one at ``tokens[i]`` (the lexer checked they balance)."""
    depth = tokens[i].depth
    for j in range(i + 1, len(tokens)):
        if tokens[j].depth == depth and tokens[j].text == _OPENERS[tokens[i].text]:
            return j
    return len(tokens) - 1


def _module(file: str, tokens: list[_Token], problems: list[RegoProblem]) -> _Module | None:
    statements = _statements(tokens)
    if not statements or statements[0][0].text != "package":
        line = statements[0][0].line if statements else 1
        problems.append(RegoProblem(file, line, "the module does not start with a package declaration"))
        return None
    head = statements[0]
    if len(head) < 2 or head[1].kind != "ident":
        problems.append(RegoProblem(file, head[0].line, "the package declaration names no package"))
        return None
    segments, _, _ = _ref(head, 1)
    if segments[0] == "data":
        segments = segments[1:]
    module = _Module(file=file, package=("data", *segments))
    for stmt in statements[1:]:
        first = stmt[0]
        if first.text == "package":
            problems.append(RegoProblem(file, first.line, "a second package declaration"))
            continue
        if first.text == "import":
            if len(stmt) > 1 and stmt[1].kind == "ident":
                target, end, _ = _ref(stmt, 1)
                alias = stmt[end + 1].text if end + 1 < len(stmt) and stmt[end].text == "as" else target[-1]
                if target[0] in ("data", "input"):
                    module.aliases[alias] = tuple(target)
            continue
        i = 1 if first.text == "default" and len(stmt) > 1 else 0
        if stmt[i].kind != "ident" or stmt[i].text in _KEYWORDS:
            problems.append(RegoProblem(file, stmt[i].line, f"expected a rule, not '{stmt[i].text}'"))
            continue
        name_segments, end, _ = _ref(stmt, i)
        module.rules.append(_Rule(
            path=module.package + tuple(name_segments), file=file, line=stmt[i].line, name=stmt[i].text,
            tokens=stmt, head_end=end,
        ))
    return module


def _locals(rule: _Rule) -> set[str]:
    """Names the rule declares: function arguments, ``some``/``every`` variables, ``:=`` targets in bodies."""
    toks = rule.tokens
    names: set[str] = set()
    if rule.head_end < len(toks) and toks[rule.head_end].text == "(":
        close = _matching(toks, rule.head_end)
        names.update(t.text for t in toks[rule.head_end + 1 : close] if t.kind == "ident")
    in_body = False
    for i, tok in enumerate(toks):
        if tok.depth == 0 and tok.text == "if":
            in_body = True
        elif tok.depth == 0 and tok.text == "else":
            in_body = False
        elif tok.text in ("some", "every"):
            for t in toks[i + 1 :]:
                if t.text in ("in", "{", ";", "|") or t.depth < tok.depth or (t.line != tok.line and t.depth == tok.depth):
                    break
                if t.kind == "ident":
                    names.add(t.text)
        elif tok.text == ":=" and (in_body or tok.depth > 0) and i > 0:
            prev = toks[i - 1]
            if prev.kind == "ident":
                names.add(prev.text)
            elif prev.text in ("]", "}"):
                opener = next(j for j in range(i - 2, -1, -1)
                              if toks[j].depth == prev.depth and toks[j].text == _CLOSERS[prev.text])
                names.update(t.text for t in toks[opener + 1 : i - 1] if t.kind == "ident")
    names.discard("_")
    return names


def _references(rule: _Rule, module: _Module, package_rules: set[str]) -> Iterator[tuple[tuple[str, ...], int]]:
    """(data path, line) of every reference the rule makes to a document that rules may define.

    The target of a ``with`` counts: OPA's recursion check counts it.
    """
    toks = rule.tokens
    local = _locals(rule)
    first = 1 if toks[0].text == "default" else 0
    i = 0
    while i < len(toks):
        tok = toks[i]
        if i == first:
            i = rule.head_end  # the head ref names the rule itself
            continue
        starts_ref = tok.kind == "ident" and tok.text not in _KEYWORDS and (i == 0 or toks[i - 1].text != ".")
        if not starts_ref:
            i += 1
            continue
        segments, end, _ = _ref(toks, i)
        head = segments[0]
        path: tuple[str, ...] | None = None
        if head in local or head == "input" or head == "_":
            path = None
        elif head == "data":
            path = tuple(segments)
        elif head in module.aliases:
            target = module.aliases[head]
            path = target + tuple(segments[1:]) if target[0] == "data" else None
        elif head in package_rules:
            path = module.package + tuple(segments)
        if path is not None:
            yield path, tok.line
        # Continue inside the ref: dynamic segments (``a[b.c]``) hold references too.
        i += 1


_Path = tuple[str, ...]


def _graph(modules: list[_Module]) -> tuple[
        dict[_Path, list[_Rule]], dict[_Path, dict[_Path, tuple[str, int]]]]:
    """The rules by path, and ``edges[a][b]`` = (file, line) of the first place rule ``a`` refers to rule ``b``."""
    rules: dict[_Path, list[_Rule]] = {}
    for m in modules:
        for r in m.rules:
            rules.setdefault(r.path, []).append(r)
    under: dict[_Path, set[_Path]] = {}
    for path in rules:
        for k in range(1, len(path) + 1):
            under.setdefault(path[:k], set()).add(path)
    names_by_package: dict[_Path, set[str]] = {}
    for m in modules:
        names_by_package.setdefault(m.package, set()).update(r.name for r in m.rules)
    edges: dict[_Path, dict[_Path, tuple[str, int]]] = {p: {} for p in rules}
    for m in modules:
        for r in m.rules:
            for path, line in _references(r, m, names_by_package[m.package]):
                # Every rule under the path read, and every rule whose document holds it.
                targets = set(under.get(path, ()))
                targets.update(path[:k] for k in range(1, len(path)) if path[:k] in rules)
                for target in targets:
                    edges[r.path].setdefault(target, (r.file, line))
    return rules, edges


def _cycles(modules: list[_Module]) -> list[RegoProblem]:
    """One problem per strongly connected component of the rule graph that holds a cycle."""
    _, edges = _graph(modules)
    problems = []
    for component in _strongly_connected(edges):
        if len(component) == 1:
            (node,) = component
            if node not in edges[node]:
                continue
        cycle = _a_cycle(sorted(component)[0], component, edges)
        names = " -> ".join(".".join(p) for p in cycle)
        steps = "; ".join(
            f"{edges[a][b][0]}:{edges[a][b][1]}: {a[-1]} refers to {b[-1]}" for a, b in zip(cycle, cycle[1:])
        )
        where = edges[cycle[0]][cycle[1]]
        problems.append(RegoProblem(where[0], where[1], f"recursion: {names} ({steps})"))
    return problems


def _strongly_connected(edges: Mapping[tuple[str, ...], Mapping[tuple[str, ...], object]]) -> list[set[tuple[str, ...]]]:
    """Tarjan's algorithm, iterative (a long chain of rules must not hit Python's recursion limit)."""
    index: dict[tuple[str, ...], int] = {}
    low: dict[tuple[str, ...], int] = {}
    on_stack: set[tuple[str, ...]] = set()
    stack: list[tuple[str, ...]] = []
    out: list[set[tuple[str, ...]]] = []
    counter = 0
    for root in sorted(edges):
        if root in index:
            continue
        work: list[tuple[tuple[str, ...], Iterator[tuple[str, ...]]]] = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = set()
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.add(member)
                    if member == node:
                        break
                out.append(component)
    return out


def _a_cycle(start: tuple[str, ...], component: set[tuple[str, ...]],
             edges: Mapping[tuple[str, ...], Mapping[tuple[str, ...], object]]) -> list[tuple[str, ...]]:
    """A shortest cycle through ``start`` inside its component: [start, …, start]."""
    if start in edges[start]:
        return [start, start]
    previous: dict[tuple[str, ...], tuple[str, ...]] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for child in sorted(edges[node]):
                if child not in component:
                    continue
                if child == start:
                    path = [node]
                    while path[-1] != start:
                        path.append(previous[path[-1]])
                    return [start, *reversed(path[:-1]), start] if len(path) > 1 else [start, node, start]
                if child not in previous:
                    previous[child] = node
                    following.append(child)
        frontier = following
    return [start, start]  # unreachable: a component with a cycle has one through every member


def _parse(modules: Mapping[str, str]) -> tuple[list[_Module], list[RegoProblem]]:
    problems: list[RegoProblem] = []
    parsed: list[_Module] = []
    for file, source in sorted(modules.items()):
        tokens, problem = _tokens(file, source)
        if problem is not None:
            problems.append(problem)
            continue
        module = _module(file, tokens, problems)
        if module is not None:
            parsed.append(module)
    return parsed, problems


def find_problems(modules: Mapping[str, str]) -> list[RegoProblem]:
    """Every problem :func:`check_modules` would report, in file order (see the module doc)."""
    parsed, problems = _parse(modules)
    return problems + _cycles(parsed)


def required_files(modules: Mapping[str, str], roots: set[str]) -> set[str]:
    """The files whose rules the rules of ``roots`` need, directly or not, ``roots`` included.

    Lets a caller compile only what some modules use (rego-cpp compiles
    everything it is given, which for big test suites takes seconds).
    """
    parsed, _ = _parse(modules)
    rules, edges = _graph(parsed)
    seen: set[_Path] = {r.path for m in parsed if m.file in roots for r in m.rules}
    frontier = list(seen)
    while frontier:
        node = frontier.pop()
        for child in edges.get(node, ()):
            if child not in seen:
                seen.add(child)
                frontier.append(child)
    return set(roots) | {r.file for path in seen for r in rules.get(path, ())}


def check_modules(modules: Mapping[str, str], where: str = "the Rego") -> None:
    """Refuse Rego that no engine should be asked to compile (see the module doc).

    Args:
        modules: file name -> Rego source, every module compiled together.
        where: what the modules are, for the message.

    Raises:
        PolicyLoadError: listing every problem as ``file:line: message``.
    """
    problems = find_problems(modules)
    if problems:
        lines = "\n".join(f"  {p}" for p in problems)
        raise PolicyLoadError(f"{where}: {len(problems)} problem(s):\n{lines}")


# -------------------------------------------------------------- rule bodies

_COMPARISONS = ("==", "!=", "<=", ">=", "<", ">")


@dataclass(frozen=True)
class Expression:
    """One top-level expression of a rule body, as source text.

    ``comparison`` is ``(left, operator, right)`` when the expression is a
    comparison (``a == b``), and ``modifiers`` its trailing ``with … as …``
    text, so that each side can be evaluated under the same modifiers.
    """

    text: str
    line: int
    comparison: tuple[str, str, str] | None = None
    modifiers: str = ""
    #: How many ``with`` sites the expression holds (rego-cpp compiles each one).
    with_sites: int = 0


@dataclass(frozen=True)
class RuleBody:
    """One body of one definition of a rule: where it starts, and its expressions in order."""

    file: str
    line: int
    expressions: tuple[Expression, ...]


def rule_bodies(file: str, source: str, name: str) -> list[RuleBody]:
    """The bodies (``if { … }`` or ``if expr``) of every definition of rule ``name`` in one module.

    Expressions are split at line breaks and ``;`` outside brackets, as Rego
    does. Returns an empty list when the module does not lex, or the rule
    has no body (``test_x := false``). Else-clauses are left out: they are
    alternatives, not the body that failed.
    """
    tokens, problem = _tokens(file, source)
    if problem is not None:
        return []
    lines = source.split("\n")
    bodies = []
    for stmt in _statements(tokens):
        if stmt[0].kind != "ident" or stmt[0].text != name:
            continue
        first_if = next((i for i, t in enumerate(stmt) if t.depth == 0 and t.text == "if"), None)
        if first_if is None:
            continue
        exprs = _split_expressions(_body_tokens(stmt, first_if + 1))
        bodies.append(RuleBody(file, stmt[0].line, tuple(_expression(lines, e) for e in exprs)))
    return bodies


def module_imports(file: str, source: str) -> list[str]:
    """The text of every ``import`` statement of a module (empty when it does not lex)."""
    tokens, problem = _tokens(file, source)
    if problem is not None:
        return []
    lines = source.split("\n")
    return [_text(lines, stmt) for stmt in _statements(tokens) if stmt[0].text == "import"]


def _expression(lines: list[str], toks: list[_Token]) -> Expression:
    base = toks[0].depth
    text = _text(lines, toks)
    with_at = next((i for i, t in enumerate(toks) if t.depth == base and t.text == "with"), len(toks))
    modifiers = _text(lines, toks[with_at:]) if with_at < len(toks) else ""
    sites = sum(t.text == "with" for t in toks)
    comparison = None
    if toks[0].text not in ("not", "some", "every"):
        ops = [i for i, t in enumerate(toks[:with_at]) if t.depth == base and t.text in _COMPARISONS]
        if len(ops) == 1 and 0 < ops[0] < with_at - 1:
            i = ops[0]
            comparison = (_text(lines, toks[:i]), toks[i].text, _text(lines, toks[i + 1 : with_at]))
    return Expression(text, toks[0].line, comparison, modifiers, sites)


def _body_tokens(stmt: list[_Token], i: int) -> list[_Token]:
    if i < len(stmt) and stmt[i].text == "{":
        return stmt[i + 1 : _matching(stmt, i)]
    end = next((j for j in range(i, len(stmt)) if stmt[j].depth == 0 and stmt[j].text == "else"), len(stmt))
    return stmt[i:end]


def _split_expressions(body: list[_Token]) -> list[list[_Token]]:
    return _split_lines(body, body[0].depth, _LEADS) if body else []


def _text(lines: list[str], tokens: Sequence[_Token]) -> str:
    """The source text from the first token to the end of the last, across lines."""
    tokens = [t for t in tokens if t.kind != "nl"]
    first, last = tokens[0], tokens[-1]
    last_line = last.line + last.text.count("\n")
    end_col = (len(last.text) - last.text.rfind("\n") - 1) if "\n" in last.text else last.col - 1 + len(last.text)
    if first.line == last_line:
        return lines[first.line - 1][first.col - 1 : end_col]
    parts = [lines[first.line - 1][first.col - 1 :]]
    parts += lines[first.line : last_line - 1]
    parts.append(lines[last_line - 1][:end_col])
    return "\n".join(parts)


# ------------------------------------------------------ rego-cpp's messages

_ERROR_RE = re.compile(rb"\(error\b ?(?:(\d+):)?")
_ERRORMSG_RE = re.compile(rb"\(errormsg (\d+):")


def describe_regocpp_error(text: str, modules: Mapping[str, str]) -> list[str]:
    """``file:line:col: message`` lines (each with the source line) from a rego-cpp error dump.

    rego-cpp raises ``(rego-errorseq (error <n>:<file>|<offset>|<length>
    (errormsg <n>:<message>) …) …)``: length-prefixed strings and byte
    offsets into the module. An error without a location keeps its message
    alone; an empty list means nothing could be read.
    """
    raw = text.encode("utf-8", "replace")
    starts = list(_ERROR_RE.finditer(raw))
    out: list[str] = []
    for k, m in enumerate(starts):
        scope = raw[m.end() : starts[k + 1].start() if k + 1 < len(starts) else len(raw)]
        origin, pos = "", None
        if m.group(1) is not None:
            n = int(m.group(1))
            origin = scope[:n].decode("utf-8", "replace")
            pos = re.match(rb"\|(\d+)\|(\d+)", scope[n:])
        msg_match = _ERRORMSG_RE.search(scope)
        message = ""
        if msg_match:
            n = int(msg_match.group(1))
            message = scope[msg_match.end() : msg_match.end() + n].decode("utf-8", "replace").strip()
        message = message or "compile error"
        source = modules.get(origin)
        if pos and source is not None:
            line, col, snippet = _locate(source, int(pos.group(1)))
            out.append(f"{origin}:{line}:{col}: {message}\n      {snippet}")
        elif origin:
            out.append(f"{origin}: {message}")
        else:
            out.append(message)
    return list(dict.fromkeys(out))


def compile_error_message(where: str, error: BaseException | None, printed: Sequence[str],
                          modules: Mapping[str, str]) -> str:
    """``<where> do not compile:`` and one ``file:line:col: message`` per rego-cpp error.

    Args:
        where: what was compiled, e.g. ``Rego policies in DIR``.
        error: the ``RegoError`` rego-cpp raised, if any.
        printed: what rego-cpp printed meanwhile (used when the error has no structure).
        modules: the sources compiled, to turn byte offsets into lines.
    """
    found = describe_regocpp_error(str(error), modules) if error is not None else []
    if not found:
        text = "".join(printed).strip() or (str(error) if error is not None else "") or "no message"
        found = [text[:2000]]
    lines = "\n".join(f"  {e}" for e in found)
    return f"{where} do not compile:\n{lines}"


def _locate(source: str, offset: int) -> tuple[int, int, str]:
    """(line, column, that line's text) of a UTF-8 byte offset into ``source``."""
    data = source.encode("utf-8")
    before = data[:offset]
    line = before.count(b"\n") + 1
    line_start = before.rfind(b"\n") + 1
    col = len(data[line_start:offset].decode("utf-8", "replace")) + 1
    end = data.find(b"\n", line_start)
    snippet = data[line_start : end if end >= 0 else len(data)].decode("utf-8", "replace").strip()
    return line, col, snippet


#: One capture at a time: two threads swapping fd 1 at once could leave it
#: pointing at the other's temporary file for good.
_CAPTURE_LOCK = threading.RLock()


@contextmanager
def captured_stdout() -> Iterator[list[str]]:
    """Capture what native code writes to file descriptor 1 (appended to the yielded list on exit).

    rego-cpp prints its compile errors (and ``print()``) to the C++ stdout,
    where they would land in the middle of a command's JSON output. This is
    process-wide: anything another thread writes to stdout meanwhile is
    captured too, so callers write back what they do not use.
    """
    sink: list[str] = []
    with _CAPTURE_LOCK:
        try:
            sys.stdout.flush()
            saved = os.dup(1)
        except (OSError, ValueError, AttributeError):
            # No usable fd 1 (closed, or a replaced sys.stdout without one): run uncaptured.
            yield sink
            return
        with tempfile.TemporaryFile() as tmp:
            os.dup2(tmp.fileno(), 1)
            try:
                yield sink
            finally:
                _flush_c_stdio()
                os.dup2(saved, 1)
                os.close(saved)
                tmp.seek(0)
                sink.append(tmp.read().decode("utf-8", errors="replace"))


def _flush_c_stdio() -> None:
    # C++ iostreams synced with stdio sit in libc's stdout buffer until flushed.
    try:
        ctypes.CDLL(None).fflush(None)
    except (OSError, AttributeError):  # pragma: no cover - no libc (non-POSIX)
        pass
