"""Rego (OPA's AST JSON) to Python source, and the refusals of what it does not translate.

:func:`compile_policy` turns the modules of a policy, each given as the AST
OPA's ``rego.parse_module`` returns (or the same shape with ``location`` keys,
from :mod:`helpdesk_policy.compiler.parser`), into a :class:`CompiledPolicy`:
one Python function per rule, executed from source with ``compile``/``exec``.
Anything it cannot translate faithfully (``with``, an unknown or
non-deterministic builtin, complex unification…) is a :class:`Refusal`, and a
policy with any refusal on the entrypoint's path is not compiled at all
(:class:`CompileRefused`): it runs on the interpreter instead, never on a
wrong translation. :func:`analyze` reports, rule by rule, what compiles.

How a body becomes Python: the body runs inside ``for _ in ONCE:``, and every
expression that fails (false, undefined) emits ``continue``; an iteration
(``some x in xs``, ``xs[_]``) opens a nested ``for``, so ``continue`` always
backtracks to the latest choice point, exactly Rego's search. A successful end
of body records the head value (or returns it, where OPA stops at the first
solution). Rules without arguments are evaluated once per decision and cached
in a per-evaluation slot list.

Where OPA's evaluator does something observable beyond the language's meaning,
the generated code mirrors it: the rule indexer checks ``input.x == <constant>``
(and function ``arg == <constant>``) tests before running a body, so such tests
are hoisted to the front of their body, which suppresses errors raised earlier
in it just as OPA does; complete rules and functions with a constant value stop
at their first solution; a function whose definitions all give the same
constant succeeds when any definition does, whatever errors the others raise.

A function that never reads ``input`` (nor calls a rule or function that
does) is a function of its arguments alone, ``data`` being folded in: its
results are memoised across evaluations, per argument tuple, in a bounded
dict (see :func:`_memoised_function`); errors are never kept.
"""

from __future__ import annotations

import itertools
import logging
import re
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from helpdesk_policy.compiler import builtins as _builtins
from helpdesk_policy.compiler import runtime as _runtime
from helpdesk_policy.compiler import values as _values
from helpdesk_policy.compiler.runtime import RegoConflictError, RegoEvalError
from helpdesk_policy.compiler.values import FALSE, TRUE, UNDEFINED, Obj, from_json, to_json
from helpdesk_policy.errors import EngineError, PolicyLoadError, UndefinedDecisionError

__all__ = [
    "Refusal",
    "CompileRefused",
    "RuleStatus",
    "CompileReport",
    "CompiledPolicy",
    "compile_policy",
    "analyze",
]

logger = logging.getLogger(__name__)

ENGINE_NAME = "compiled"


# --- public results ----------------------------------------------------------------------


@dataclass(frozen=True)
class Refusal:
    """One construct the compiler does not translate: where it is and why."""

    file: str
    line: int
    construct: str
    detail: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.construct}: {self.detail}"


class CompileRefused(PolicyLoadError):
    """The policy uses constructs the compiler does not translate; ``refusals`` lists every one."""

    def __init__(self, refusals: Sequence[Refusal]) -> None:
        self.refusals: tuple[Refusal, ...] = tuple(refusals)
        lines = "\n".join(f"  {r}" for r in self.refusals)
        super().__init__(f"cannot compile the policy ({len(self.refusals)} unsupported construct(s)):\n{lines}")


@dataclass(frozen=True)
class RuleStatus:
    """Whether one rule definition compiles: ``name`` is ``package.rule``."""

    name: str
    file: str
    line: int
    compiles: bool
    refusals: tuple[Refusal, ...] = ()


@dataclass(frozen=True)
class CompileReport:
    """What :func:`analyze` found: every rule definition, and every refusal."""

    rules: tuple[RuleStatus, ...]
    refusals: tuple[Refusal, ...]

    @property
    def compiles(self) -> bool:
        """Whether every rule compiles."""
        return not self.refusals


class CompiledPolicy:
    """A policy compiled to Python: :meth:`evaluate` gives ``data.<entrypoint>`` for an input."""

    def __init__(self, source: str, entry: Callable[[Any], Any], rules: tuple[str, ...], entrypoint: str,
                 compile_seconds: float) -> None:
        self.source = source
        self.rules = rules
        self.entrypoint = entrypoint
        self.compile_seconds = compile_seconds
        self._entry = entry

    def evaluate(self, input_doc: Any) -> Any:
        """The entrypoint's value for ``input_doc``, as plain JSON-compatible Python.

        Raises:
            UndefinedDecisionError: the entrypoint is undefined for this input.
            EngineError: evaluation stopped with an error (a builtin's type
                error, conflicting rule values), where OPA errors too.
        """
        try:
            value = self._entry(from_json(input_doc))
        except RegoEvalError as exc:
            raise EngineError(f"evaluation error: {exc}", engine=ENGINE_NAME) from exc
        except (TypeError, RecursionError) as exc:
            raise EngineError(f"evaluation error: {exc}", engine=ENGINE_NAME) from exc
        if value is UNDEFINED:
            raise UndefinedDecisionError(f"{self.entrypoint} is undefined", engine=ENGINE_NAME)
        return to_json(value)

    def evaluate_value(self, rego_input: Any) -> Any:
        """Evaluate on an input already in the Rego representation; returns a Rego value or UNDEFINED.

        For benchmarks and callers that convert once; errors are :class:`RegoEvalError`.
        """
        return self._entry(rego_input)


# --- internal model -------------------------------------------------------------------------


class _Abort(Exception):
    """Stop compiling the current rule definition (its refusal is already recorded)."""


@dataclass
class _Module:
    file: str
    package: tuple[str, ...]
    imports: dict[str, tuple[Any, ...]]
    ast: dict[str, Any]


@dataclass
class _Def:
    module: _Module
    rule: dict[str, Any]
    line: int


@dataclass
class _Group:
    path: tuple[str, ...]
    kind: str  # complete | set | object | function
    defs: list[_Def] = field(default_factory=list)
    default: _Def | None = None
    pyname: str = ""
    slot: int = -1
    arity: int = 0
    generated: bool = False
    constant: Any = None  # a compile-time value for constant rules, else _NOT_CONST
    #: Whether a body of the group reads ``input`` itself (or calls a
    #: non-deterministic builtin): its value may change between evaluations.
    impure: bool = False
    #: The paths of the rule groups its generated code calls (constant rules,
    #: folded at compile time, are not among them).
    calls: set[tuple[str, ...]] = field(default_factory=set)


class _NotConst:
    def __repr__(self) -> str:
        return "NOT_CONST"


_NOT_CONST: Any = _NotConst()

_COMPARISONS = {"equal": "==", "neq": "!=", "lt": "<", "gt": ">", "lte": "<=", "gte": ">="}
_COMPARE_FUNCS = {"lt": "lt", "gt": "gt", "lte": "le", "gte": "ge"}
_ARITH = {"plus": "arith_plus", "minus": "arith_minus", "mul": "arith_mul", "div": "arith_div",
          "rem": "arith_rem", "and": "set_intersection", "or": "set_union"}
#: Builtins that may be undefined for defined arguments.
_MAY_BE_UNDEFINED = {"max", "min"}


def _loc(node: Any, default_file: str) -> tuple[str, int]:
    location = node.get("location") if isinstance(node, dict) else None
    if isinstance(location, dict):
        return str(location.get("file") or default_file), int(location.get("row") or 0)
    return default_file, 0


def _ref_name(terms: Sequence[dict[str, Any]]) -> str | None:
    """``count``, ``object.get``: the dotted name of a call's operator, when it is one."""
    if not terms or terms[0].get("type") != "var":
        return None
    parts = [terms[0]["value"]]
    for term in terms[1:]:
        if term.get("type") != "string":
            return None
        parts.append(term["value"])
    return ".".join(parts)


def _literal(term: dict[str, Any]) -> Any:
    """The value of a literal term, or _NOT_CONST."""
    kind = term.get("type")
    if kind == "null":
        return None
    if kind == "boolean":
        return TRUE if term["value"] else FALSE
    if kind == "number":
        value = term["value"]
        if isinstance(value, str):
            try:
                return int(value)
            except ValueError:
                return float(value)
        return value
    if kind == "string":
        return term["value"]
    if kind == "array":
        items = [_literal(t) for t in term["value"]]
        return _NOT_CONST if any(v is _NOT_CONST for v in items) else tuple(items)
    if kind == "set":
        items = [_literal(t) for t in term["value"]]
        return _NOT_CONST if any(v is _NOT_CONST for v in items) else frozenset(items)
    if kind == "object":
        pairs = [(_literal(k), _literal(v)) for k, v in term["value"]]
        if any(k is _NOT_CONST or v is _NOT_CONST for k, v in pairs):
            return _NOT_CONST
        return Obj(pairs)
    return _NOT_CONST


def _is_true_body(body: Sequence[dict[str, Any]]) -> bool:
    return (len(body) == 1 and not body[0].get("negated") and not body[0].get("with")
            and isinstance(body[0].get("terms"), dict) and body[0]["terms"].get("type") == "boolean"
            and body[0]["terms"].get("value") is True)


_IDENT = re.compile(r"[^0-9a-zA-Z_]")
#: Python expressions that cost nothing to evaluate again: names, numbers, short
#: strings, and slots of the per-evaluation list.
_SIMPLE_CODE = re.compile(r"[A-Za-z_]\w*|-?\d+(\.\d+)?|'[^'\\]{0,40}'|c\[-?\d+\]")


def _py_ident(text: str) -> str:
    return _IDENT.sub("_", text)


# --- the compiler -------------------------------------------------------------------------


class _Compiler:
    def __init__(self, asts: Mapping[str, dict[str, Any]], data: Mapping[str, Any] | None) -> None:
        self.data = from_json(dict(data or {}))
        self.refusals: list[Refusal] = []
        self.namespace: dict[str, Any] = {}
        self.constants: dict[tuple[type, Any], str] = {}
        self.input_paths: dict[tuple[str, ...], int] = {}
        self.chunks: list[str] = []
        self.groups: dict[tuple[str, ...], _Group] = {}
        self.tree: dict[str, Any] = {}
        self.slots = 0
        self.names: set[str] = set()
        self.def_refusals: dict[int, list[Refusal]] = {}
        self.current_def: _Def | None = None
        #: The group whose code is being written: :meth:`ensure` records its calls.
        self.writing: _Group | None = None
        self.modules = [self._module(name, ast) for name, ast in asts.items()]
        for module in self.modules:
            self._collect(module)

    # -- refusals
    def refuse(self, node: Any, construct: str, detail: str, *, fatal: bool = True) -> None:
        module = self.current_def.module if self.current_def else None
        file, line = _loc(node, module.file if module else "?")
        if line == 0 and self.current_def is not None:
            line = self.current_def.line
        refusal = Refusal(file, line, construct, detail)
        if refusal not in self.refusals:
            self.refusals.append(refusal)
        if self.current_def is not None:
            self.def_refusals.setdefault(id(self.current_def), []).append(refusal)
        if fatal:
            raise _Abort()

    # -- modules and the rule tree
    def _module(self, name: str, ast: dict[str, Any]) -> _Module:
        package_terms = ast.get("package", {}).get("path", [])
        package = tuple(t["value"] for t in package_terms[1:])
        imports: dict[str, tuple[Any, ...]] = {}
        module = _Module(name, package, imports, ast)
        for imp in ast.get("imports") or []:
            path_terms = imp.get("path", {}).get("value", [])
            head = path_terms[0].get("value") if path_terms else None
            if head in ("rego", "future"):
                continue
            parts: list[Any] = [head]
            for term in path_terms[1:]:
                if term.get("type") != "string":
                    self.current_def = None
                    self._record_module_refusal(module, imp, "import", "an import path with a variable")
                    break
                parts.append(term["value"])
            alias = imp.get("alias") or parts[-1]
            imports[str(alias)] = tuple(parts)
        return module

    def _record_module_refusal(self, module: _Module, node: Any, construct: str, detail: str) -> None:
        file, line = _loc(node, module.file)
        self.refusals.append(Refusal(file, line, construct, detail))

    def _collect(self, module: _Module) -> None:
        for rule in module.ast.get("rules") or []:
            head = rule.get("head", {})
            ref = head.get("ref") or [{"type": "var", "value": head.get("name")}]
            parts: list[str] = [ref[0]["value"]]
            file, line = _loc(rule, module.file)
            rdef = _Def(module, rule, line)
            kind = "complete"
            tail = ref[1:]
            if head.get("args") is not None:
                kind = "function"
            elif head.get("key") is not None and head.get("value") is None:
                kind = "set"
            elif head.get("key") is not None:
                kind = "object"
                tail = ref[1:-1]
            bad = False
            for term in tail:
                if term.get("type") != "string":
                    bad = True
                    break
                parts.append(term["value"])
            if bad:
                self._record_module_refusal(module, rule, "rule head", "a rule head reference with a variable inside")
                continue
            path = module.package + tuple(parts)
            group = self.groups.get(path)
            if group is None:
                group = _Group(path, kind, constant=None)
                group.arity = len(head.get("args") or [])
                self.groups[path] = group
                node = self.tree
                for part in path[:-1]:
                    child = node.setdefault(part, {})
                    if isinstance(child, _Group):
                        self._record_module_refusal(module, rule, "rule head", f"{'.'.join(path)} nests under a rule")
                        break
                    node = child
                else:
                    if isinstance(node.get(path[-1]), dict) and node[path[-1]]:
                        self._record_module_refusal(module, rule, "rule head", f"{'.'.join(path)} is also a package")
                    node[path[-1]] = group
            elif group.kind != kind:
                self._record_module_refusal(module, rule, "rule kinds", f"{'.'.join(path)} mixes {group.kind} and {kind} definitions")
                continue
            if rule.get("default"):
                group.default = rdef
            else:
                group.defs.append(rdef)

    # -- input paths
    def input_ref(self, path: tuple[str, ...]) -> str:
        """The expression for ``input.<path>`` (every step a string): a slot of the cache list.

        A decision reads the same input fields from many rules (about 140
        lookups for the stock policy, over some 40 distinct paths), so each
        distinct path is looked up once when the evaluation starts and kept at
        a negative index of the per-evaluation list ``c``, after the rules'
        slots. A lookup never errors, so doing it early changes nothing.
        """
        for length in range(1, len(path) + 1):
            prefix = path[:length]
            if prefix not in self.input_paths:
                self.input_paths[prefix] = len(self.input_paths)
        return f"c[{-1 - self.input_paths[path]}]"

    def input_prologue(self) -> list[str]:
        """The lines of ``evaluate`` that look every input path up and append them to ``c``.

        The members of one parent are looked up together, under one test of
        the parent's type: the common case (an object) with its bound ``get``,
        anything else with :func:`~helpdesk_policy.compiler.runtime.dot`. A
        parent is always looked up before its members (a path's prefixes are
        numbered before it), so the groups run in the order of their parents.
        """
        lines: list[str] = []
        names: list[str] = []
        children: dict[int, list[tuple[int, str]]] = {}
        for path, index in self.input_paths.items():
            parent_index = -1 if len(path) == 1 else self.input_paths[path[:-1]]
            children.setdefault(parent_index, []).append((index, path[-1]))
            names.append(f"p{index}")
        for parent_index in sorted(children):
            parent = "i" if parent_index < 0 else f"p{parent_index}"
            members = children[parent_index]
            lines.append(f"    if type({parent}) is Obj:")
            lines.append(f"        get = {parent}.get")
            lines.extend(f"        p{index} = get({key!r}, U)" for index, key in members)
            lines.append("    else:")
            lines.extend(f"        p{index} = dot({parent}, {key!r})" for index, key in members)
        if names:
            lines.append(f"    c += ({''.join(name + ', ' for name in reversed(names))})")
        return lines

    # -- constants
    def const(self, value: Any) -> str:
        """The Python expression for a compile-time Rego value."""
        kind = type(value)
        if value is None:
            return "None"
        if value is TRUE:
            return "TRUE"
        if value is FALSE:
            return "FALSE"
        if value is UNDEFINED:
            return "U"
        if kind is str or kind is int:
            return repr(value)
        if kind is float and value == value and value not in (float("inf"), float("-inf")):
            return repr(value)
        key = (kind, value)
        name = self.constants.get(key)
        if name is None:
            name = f"K{len(self.constants)}"
            self.constants[key] = name
            self.namespace[name] = value
        return name

    def member_const(self, value: Any) -> str:
        """A constant for fast ``in`` tests: an array's elements as a frozenset."""
        if type(value) is tuple:
            return self.const(frozenset(value))
        return self.const(value)

    def base_data(self, path: Sequence[Any]) -> Any:
        current = self.data
        for part in path:
            current = _runtime.getk(current, part)
            if current is UNDEFINED:
                return UNDEFINED
        return current

    def group_constant(self, group: _Group) -> Any:
        """The value of a rule that is a constant (one unconditional definition), else _NOT_CONST."""
        if group.constant is not None:
            return group.constant
        group.constant = _NOT_CONST
        if group.kind != "complete" or len(group.defs) != 1:
            return _NOT_CONST
        rdef = group.defs[0]
        rule = rdef.rule
        if rule.get("else") or not _is_true_body(rule.get("body") or []):
            return _NOT_CONST
        value_term = rule.get("head", {}).get("value")
        if value_term is None:
            return _NOT_CONST
        saved = self.current_def
        self.current_def = rdef
        try:
            value = self.const_term(value_term, rdef.module)
        finally:
            self.current_def = saved
        group.constant = value
        return value

    def const_term(self, term: dict[str, Any], module: _Module) -> Any:
        """Evaluate a term at compile time when it only involves literals, base data and constant rules."""
        value = _literal(term)
        if value is not _NOT_CONST:
            return value
        kind = term.get("type")
        if kind == "array":
            items = [self.const_term(t, module) for t in term["value"]]
            if any(v is _NOT_CONST or v is UNDEFINED for v in items):
                return _NOT_CONST
            return tuple(items)
        if kind == "object":
            pairs = [(self.const_term(k, module), self.const_term(v, module)) for k, v in term["value"]]
            if any(x is _NOT_CONST or x is UNDEFINED for pair in pairs for x in pair):
                return _NOT_CONST
            result = Obj()
            for k, v in pairs:
                if k in result and result[k] != v:
                    return _NOT_CONST
                result[k] = v
            return result
        if kind == "set":
            items = [self.const_term(t, module) for t in term["value"]]
            if any(v is _NOT_CONST or v is UNDEFINED for v in items):
                return _NOT_CONST
            return frozenset(items)
        if kind == "var":
            return self.const_ref([term], module)
        if kind == "ref":
            return self.const_ref(term["value"], module)
        return _NOT_CONST

    def const_ref(self, terms: Sequence[dict[str, Any]], module: _Module) -> Any:
        head = terms[0]
        if head.get("type") != "var":
            return _NOT_CONST
        path = self.data_path(head["value"], module)
        if path is None:
            return _NOT_CONST
        ops = list(path[1:]) + [_literal(t) for t in terms[1:]]
        if path[0] != "data" or any(op is _NOT_CONST for op in ops):
            return _NOT_CONST
        node: Any = self.tree
        for index, op in enumerate(ops):
            if isinstance(node, _Group):
                value = self.group_constant(node)
                if value is _NOT_CONST:
                    return _NOT_CONST
                for rest in ops[index:]:
                    value = _runtime.getk(value, rest)
                return value
            if isinstance(node, dict) and type(op) is str and op in node:
                node = node[op]
                continue
            if isinstance(node, dict):
                return self.base_data(ops)
            return _NOT_CONST
        if isinstance(node, _Group):
            return self.group_constant(node)
        if isinstance(node, dict) and node:
            return _NOT_CONST
        return self.base_data(ops)

    def data_path(self, name: str, module: _Module) -> tuple[Any, ...] | None:
        """Where a free variable name points: ``("data", …)``, ``("input", …)``, or None."""
        if name == "data":
            return ("data",)
        if name == "input":
            return ("input",)
        if name in module.imports:
            return module.imports[name]
        node: Any = self.tree
        for part in module.package:
            node = node.get(part) if isinstance(node, dict) else None
            if node is None:
                return None
        if isinstance(node, dict) and name in node:
            return ("data",) + module.package + (name,)
        return None

    # -- groups
    def ensure(self, group: _Group) -> str:
        """The Python name of a rule group's function, generating it on first use."""
        if not group.pyname:
            base = "r_" + _py_ident("_".join(group.path))
            name = base
            counter = itertools.count(2)
            while name in self.names:
                name = f"{base}_{next(counter)}"
            self.names.add(name)
            group.pyname = name
            if group.kind != "function":
                group.slot = self.slots
                self.slots += 1
            self.pending.append(group)
        if self.writing is not None and self.writing is not group:
            self.writing.calls.add(group.path)
        return group.pyname

    def generate_all(self, roots: Sequence[_Group]) -> None:
        self.pending: list[_Group] = []
        for group in roots:
            self.ensure(group)
        while self.pending:
            group = self.pending.pop()
            if not group.generated:
                group.generated = True
                self.writing = group
                try:
                    self.chunks.append(_GroupWriter(self, group).write())
                finally:
                    self.writing = None

    def pure_groups(self) -> list[_Group]:
        """The generated groups whose value depends on nothing but their arguments and ``data``.

        A group is pure when none of its bodies reads ``input`` or calls a
        non-deterministic builtin, and every group it calls is pure in turn
        (computed to a fixed point, so a chain of any length counts). Base
        data and constant rules are folded into the code, so they never vary.
        """
        generated = {group.path: group for group in self.groups.values() if group.generated}
        impure = {path for path, group in generated.items() if group.impure}
        changed = True
        while changed:
            changed = False
            for path, group in generated.items():
                if path not in impure and any(call in impure or call not in generated for call in group.calls):
                    impure.add(path)
                    changed = True
        return [group for path, group in generated.items() if path not in impure]


class _Scope:
    """Rego variable name -> Python local; None for declared (``some x``) but not yet bound."""

    def __init__(self, parent: dict[str, str | None] | None = None) -> None:
        self.vars: dict[str, str | None] = dict(parent or {})


class _GroupWriter:
    """Writes the Python for one rule group (all definitions of one rule)."""

    def __init__(self, compiler: _Compiler, group: _Group) -> None:
        self.c = compiler
        self.group = group
        self.lines: list[str] = []
        self.indent = 0
        self.tmp = itertools.count()
        self.module: _Module = group.defs[0].module if group.defs else group.default.module  # type: ignore[union-attr]
        self.loops: list[int] = []
        # Where the headers of the loops opened in the current block are in
        # ``lines``: a block that ends by collecting every solution into an
        # unordered result rewrites them to iterate without sorting.
        self.loop_lines: list[int] = []
        self.store_slot: int | None = None
        self.scope = _Scope()
        self.args: set[str] = set()

    # -- emission helpers
    def emit(self, line: str) -> None:
        self.lines.append("    " * self.indent + line)

    def fresh(self, prefix: str = "t") -> str:
        return f"_{prefix}{next(self.tmp)}"

    def open_loop(self, header: str) -> None:
        """Open an iteration (``for … in iter_values(…)`` / ``iter_items(…)``) in OPA's order."""
        self.loop_lines.append(len(self.lines))
        self.emit(header)
        self.loops.append(self.indent)
        self.indent += 1

    def block(self) -> tuple[int, list[int], list[int]]:
        """Start a ``for _ in ONCE:`` block; returns what :meth:`close` needs."""
        saved = (self.indent, self.loops, self.loop_lines)
        self.emit("for _ in ONCE:")
        self.loops = []
        self.loop_lines = []
        self.indent += 1
        return saved

    def succeed_and_break(self, flag: str) -> None:
        """Set ``flag`` and leave every loop opened in the current block."""
        self.emit(f"{flag} = True")
        self.emit("break")
        for level in reversed(self.loops):
            self.indent = level
            self.emit(f"if {flag}: break")

    def close(self, saved: tuple[int, list[int], list[int]], *, unordered: bool = False) -> None:
        """End a block. ``unordered``: the block visits every solution and only collects them
        into a set, an object or a conflict-checked single value, so the order of its
        iterations cannot change the result (nor whether it errors): its loops then iterate
        sets and objects as they are stored instead of sorting them into OPA's order.

        Blocks that stop at a first solution (``return``, negation, ``every``) or build an
        array keep OPA's order: there, which element comes first is observable.
        """
        if unordered:
            for index in self.loop_lines:
                line = self.lines[index]
                if " in iter_values(" in line:
                    line = line.replace(" in iter_values(", " in iter_values_any(", 1)
                else:
                    line = line.replace(" in iter_items(", " in iter_items_any(", 1)
                self.lines[index] = line
        self.indent, self.loops, self.loop_lines = saved

    # -- the group
    def write(self) -> str:
        group = self.group
        header_defs = group.defs or ([group.default] if group.default else [])
        locs = ", ".join(sorted({f"{d.module.file}:{d.line}" if d.line else d.module.file for d in header_defs}))
        name = ".".join(group.path)
        out: list[str] = [f"# data.{name} ({group.kind} rule) from {locs}"]
        if group.kind == "function":
            out.extend(self.write_function())
        else:
            out.extend(self.write_cached())
        return "\n".join(out) + "\n"

    def def_function(self, rdef: _Def, index: int, *, name: str | None = None,
                     store_slot: int | None = None) -> tuple[str, list[str]] | None:
        """One definition (with its else chain) as its own function; None if refused.

        ``name`` names the function (``<group>__<index>`` by default); with
        ``store_slot`` every value it returns is also stored in that cache slot,
        so the definition *is* the rule's cached function (no wrapper call).
        """
        name = name or f"{self.group.pyname}__{index}"
        self.store_slot = store_slot
        self.c.current_def = rdef
        self.lines = []
        self.loop_lines = []
        self.indent = 1
        self.tmp = itertools.count()
        self.module = rdef.module
        params = "c, i" + "".join(f", a{k}" for k in range(self.group.arity))
        if self.group.kind in ("set", "object"):
            params += ", acc"
        try:
            self.write_def_body(rdef)
        except _Abort:
            return None
        finally:
            self.c.current_def = None
        where = f"{rdef.module.file}:{rdef.line}" if rdef.line else rdef.module.file
        return name, [f"def {name}({params}):  # {where}"] + self.lines

    def write_def_body(self, rdef: _Def) -> None:
        kind = self.group.kind
        chain: list[dict[str, Any]] = []
        rule: dict[str, Any] | None = rdef.rule
        while rule is not None:
            chain.append(rule)
            rule = rule.get("else")
        if kind in ("set", "object") and len(chain) > 1:
            self.c.refuse(rdef.rule, "else", "else on a partial rule")
        multi = kind in ("complete", "function")
        if multi:
            self.emit("out = U")
        for position, rule in enumerate(chain):
            self.scope = _Scope()
            self.loops = []
            head = rule.get("head", {})
            value_term = head.get("value")
            constant_value = value_term is not None and _literal(value_term) is not _NOT_CONST
            saved = self.block()
            self.bind_args(rdef.rule.get("head", {}).get("args") or [])
            body = self.hoist(rule.get("body") or [])
            self.compile_body(body)
            unordered = True
            if kind == "set":
                key = self.need(head["key"])
                self.emit(f"acc.add({key})")
            elif kind == "object":
                key = self.need(head["key"])
                value = self.need(value_term)
                self.emit(f"_old = acc.get({key}, U)")
                self.emit(f"if _old is U: acc[{key}] = {value}")
                self.emit(f"elif _old != {value}: raise RegoConflictError('object keys must be unique: data.{'.'.join(self.group.path)}')")
            else:
                value = "TRUE" if value_term is None else self.need(value_term)
                if constant_value or value_term is None or not self.loops:
                    # OPA stops at the first solution of a body with a constant value;
                    # a body without iteration has at most one solution anyway.
                    self.emit_return(value)
                    unordered = False
                else:
                    self.emit(f"if out is U: out = {value}")
                    self.emit(f"elif out != {value}: raise RegoConflictError('complete rules must not produce multiple outputs: data.{'.'.join(self.group.path)}')")
            self.close(saved, unordered=unordered)
            if multi and position < len(chain) - 1:
                self.emit("if out is not U:")
                self.indent += 1
                self.emit_return("out")
                self.indent -= 1
        if multi:
            self.emit_return("out")

    def emit_return(self, code: str) -> None:
        """Return ``code`` from a definition (storing it in the rule's slot when the
        definition is the rule's cached function)."""
        if self.store_slot is None:
            self.emit(f"return {code}")
            return
        code = self.simple(code)
        self.emit(f"c[{self.store_slot}] = {code}")
        self.emit(f"return {code}")

    def bind_args(self, args: Sequence[dict[str, Any]]) -> None:
        self.args = set()
        for index, arg in enumerate(args):
            pyarg = f"a{index}"
            if arg.get("type") == "var" and not arg["value"].startswith("$") and arg["value"] != "_":
                name = arg["value"]
                if self.scope.vars.get(name):
                    self.emit(f"if {pyarg} != {self.scope.vars[name]}: continue")
                else:
                    self.scope.vars[name] = pyarg
                    self.args.add(name)
            elif arg.get("type") == "var":
                continue
            else:
                self.unify_value(arg, pyarg)

    def write_cached(self) -> list[str]:
        group = self.group
        if group.kind == "complete" and len(group.defs) == 1 and group.default is None:
            # One definition, no default: the definition is the cached function
            # itself. Its callers read the slot first (see data_ref), so it runs
            # once per evaluation and stores whatever it returns, undefined too.
            made = self.def_function(group.defs[0], 0, name=group.pyname, store_slot=group.slot)
            if made is not None:
                return made[1]
        defs: list[tuple[str, list[str]]] = []
        for index, rdef in enumerate(group.defs):
            made = self.def_function(rdef, index)
            if made is not None:
                defs.append(made)
        default_code = "U"
        if group.default is not None:
            self.c.current_def = group.default
            self.lines = []
            self.indent = 1
            self.scope = _Scope()
            self.module = group.default.module
            try:
                value_term = group.default.rule.get("head", {}).get("value")
                default_value = self.c.const_term(value_term, self.module) if value_term else TRUE
                if default_value is _NOT_CONST or default_value is UNDEFINED:
                    self.c.refuse(group.default.rule, "default", "a default value that is not a constant")
                default_code = self.c.const(default_value)
            except _Abort:
                pass
            finally:
                self.c.current_def = None
        out: list[str] = []
        inline = group.kind in ("set", "object")
        if not inline:
            for _name, lines in defs:
                out.extend(lines)
        slot = group.slot
        out.append(f"def {group.pyname}(c, i):")
        out.append(f"    v = c[{slot}]")
        out.append("    if v is not M: return v")
        if inline:
            # Each definition of a partial rule is a self-contained ``for _ in ONCE:``
            # block that adds to ``acc`` (its temporaries are assigned before they are
            # read), so they run inline, one after the other, rather than as calls.
            out.append("    acc = set()" if group.kind == "set" else "    acc = {}")
            for _name, lines in defs:
                where = lines[0].partition("#")[2].strip()
                out.append(f"    # {where}")
                out.extend(lines[1:])
            out.append("    v = frozenset(acc)" if group.kind == "set" else "    v = Obj(acc)")
        elif len(defs) == 1:
            out.append(f"    v = {defs[0][0]}(c, i)")
            if default_code != "U":
                out.append(f"    if v is U: v = {default_code}")
        else:
            out.append("    v = U")
            for name, _ in defs:
                out.append(f"    w = {name}(c, i)")
                out.append("    if w is not U:")
                out.append("        if v is U: v = w")
                out.append(f"        elif v != w: raise RegoConflictError('complete rules must not produce multiple outputs: data.{'.'.join(group.path)}')")
            if default_code != "U":
                out.append(f"    if v is U: v = {default_code}")
        out.append(f"    c[{slot}] = v")
        out.append("    return v")
        return out

    def write_function(self) -> list[str]:
        group = self.group
        if group.default is not None:
            self.c.current_def = group.default
            try:
                self.c.refuse(group.default.rule, "default function", "default on a function")
            except _Abort:
                pass
            finally:
                self.c.current_def = None
        defs: list[tuple[str, list[str]]] = []
        for index, rdef in enumerate(group.defs):
            # A function with one definition is that definition: no wrapper call.
            made = self.def_function(rdef, index, name=group.pyname if len(group.defs) == 1 else None)
            if made is not None:
                defs.append(made)
        # All definitions (and their else branches) giving one same constant:
        # OPA succeeds when any definition does, whatever errors others raise.
        constants = set()
        same_constant = True
        for rdef in group.defs:
            rule: dict[str, Any] | None = rdef.rule
            while rule is not None:
                value_term = rule.get("head", {}).get("value")
                literal = TRUE if value_term is None else _literal(value_term)
                if literal is _NOT_CONST:
                    same_constant = False
                else:
                    constants.add((type(literal), literal))
                rule = rule.get("else")
        same_constant = same_constant and len(constants) == 1 and len(defs) > 1
        args = "".join(f", a{k}" for k in range(group.arity))
        out: list[str] = []
        for _name, lines in defs:
            out.extend(lines)
        if len(defs) == 1 and defs[0][0] == group.pyname:
            return out
        out.append(f"def {group.pyname}(c, i{args}):")
        if len(defs) == 1:
            out.append(f"    return {defs[0][0]}(c, i{args})")
            return out
        out.append("    v = U")
        if same_constant:
            out.append("    error = None")
            for name, _ in defs:
                out.append("    try:")
                out.append(f"        w = {name}(c, i{args})")
                out.append("    except RegoEvalError as exc:")
                out.append("        error = exc")
                out.append("        continue_ = True")
                out.append("    else:")
                out.append("        if w is not U: return w")
            out.append("    if error is not None: raise error")
            out.append("    return U")
            return out
        for name, _ in defs:
            out.append(f"    w = {name}(c, i{args})")
            out.append("    if w is not U:")
            out.append("        if v is U: v = w")
            out.append(f"        elif v != w: raise RegoConflictError('functions must not produce multiple outputs for same inputs: data.{'.'.join(group.path)}')")
        out.append("    return v")
        return out

    # -- the rule indexer's early checks
    def hoist(self, body: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
        """Move the expressions OPA's rule indexer checks before the body to the front."""
        first = [e for e in body if self.indexed(e)]
        if not first:
            return list(body)
        return first + [e for e in body if not self.indexed(e)]

    def indexed(self, expr: dict[str, Any]) -> bool:
        if expr.get("negated") or expr.get("with"):
            return False
        terms = expr.get("terms")
        if not isinstance(terms, list) or len(terms) != 3:
            return False
        op = _ref_name(terms[0].get("value", [])) if terms[0].get("type") == "ref" else None
        if op not in ("equal", "eq"):
            return False
        a, b = terms[1], terms[2]
        return (self.index_ref(a) and _literal(b) is not _NOT_CONST) or (
            self.index_ref(b) and _literal(a) is not _NOT_CONST)

    def index_ref(self, term: dict[str, Any]) -> bool:
        if term.get("type") == "var":
            return term["value"] in self.args
        if term.get("type") != "ref":
            return False
        parts = term["value"]
        head = parts[0]
        if head.get("type") != "var":
            return False
        path = self.c.data_path(head["value"], self.module) if head["value"] not in self.scope.vars else None
        if path is None or path[0] not in ("input", "data"):
            return False
        for op in parts[1:]:
            if _literal(op) is not _NOT_CONST:
                continue
            if op.get("type") == "ref" and self.index_ref(op):
                continue
            return False
        if path[0] == "data":
            node: Any = self.c.tree
            for op in list(path[1:]) + [_literal(t) for t in parts[1:]]:
                if isinstance(node, _Group):
                    return False
                if not isinstance(node, dict) or type(op) is not str or op not in node:
                    return True
                node = node[op]
            return not isinstance(node, _Group) and not node
        return True

    # -- bodies
    def compile_body(self, body: Sequence[dict[str, Any]]) -> None:
        for expr in body:
            self.compile_expr(expr)

    def compile_expr(self, expr: dict[str, Any]) -> None:
        if expr.get("with"):
            self.c.refuse(expr, "with", "the with keyword is not compiled")
        if expr.get("negated"):
            inner = dict(expr)
            inner.pop("negated")
            # OPA's compiler binds the refs, calls and comprehensions inside a
            # negated call's arguments to variables *before* the negation
            # (rewriteDynamics, after == became =), so an undefined argument
            # makes ``not f(input.missing)`` fail rather than succeed.
            outside: list[dict[str, Any]] = []
            inner = self.rewrite_dynamics(inner, outside)
            for pre in outside:
                self.compile_expr(pre)
            flag = self.fresh("n")
            self.emit(f"{flag} = False")
            saved_scope = self.scope
            self.scope = _Scope(saved_scope.vars)
            saved = self.block()
            self.compile_expr(inner)
            self.succeed_and_break(flag)
            self.close(saved)
            self.scope = saved_scope
            self.emit(f"if {flag}: continue")
            return
        terms = expr.get("terms")
        if isinstance(terms, dict):
            if "symbols" in terms:
                self.compile_some(expr, terms["symbols"])
                return
            if "domain" in terms:
                self.compile_every(expr, terms)
                return
            value = self.term(terms)
            self.test_truthy(value)
            return
        if not isinstance(terms, list) or not terms:
            self.c.refuse(expr, "expression", "an expression of unknown shape")
            return
        op_term = terms[0]
        name = _ref_name(op_term.get("value", [])) if op_term.get("type") == "ref" else None
        args = terms[1:]
        if name == "eq" and len(args) == 2:
            self.unify(args[0], args[1], expr)
            return
        if name == "assign" and len(args) == 2:
            self.assign(args[0], args[1], expr)
            return
        if name in _COMPARISONS and len(args) == 2:
            self.emit(f"if not ({self.condition(name, args)}): continue")
            return
        if name == "internal.member_2" and len(args) == 2:
            self.emit(f"if not ({self.member_test(args)}): continue")
            return
        value = self.call(op_term, args, expr)
        self.test_truthy(value)

    def rewrite_dynamics(self, expr: dict[str, Any], out: list[dict[str, Any]]) -> dict[str, Any]:
        """OPA's rewriteDynamics on one expression: the extracted bindings go to ``out``."""
        terms = expr.get("terms")
        expr = dict(expr)
        if isinstance(terms, list) and terms:
            name = _ref_name(terms[0].get("value", [])) if terms[0].get("type") == "ref" else None
            if name in ("eq", "equal") and len(terms) == 3:
                expr["terms"] = [terms[0]] + [self.dynamics_in_term(t, out) for t in terms[1:]]
            else:
                expr["terms"] = [terms[0]] + [self.dynamics_one(t, out) for t in terms[1:]]
        elif isinstance(terms, dict) and "type" in terms:
            expr["terms"] = self.dynamics_in_term(terms, out)
        return expr

    def dynamics_in_term(self, term: dict[str, Any], out: list[dict[str, Any]]) -> dict[str, Any]:
        kind = term.get("type")
        if kind == "ref":
            parts = term["value"]
            return {**term, "value": [parts[0]] + [self.dynamics_one(t, out) for t in parts[1:]]}
        if kind in ("arraycomprehension", "setcomprehension", "objectcomprehension", "var"):
            return term
        return self.dynamics_one(term, out)

    def dynamics_one(self, term: dict[str, Any], out: list[dict[str, Any]]) -> dict[str, Any]:
        kind = term.get("type")
        if kind == "var":
            name = term["value"]
            if name in self.scope.vars or name in ("_",) or name.startswith("$") or self.c.data_path(name, self.module) is None:
                return term
            term = {**term, "type": "ref", "value": [term]}
            kind = "ref"
        if kind == "ref":
            parts = term["value"]
            term = {**term, "value": [parts[0]] + [self.dynamics_one(t, out) for t in parts[1:]]}
        elif kind in ("array", "set"):
            return {**term, "value": [self.dynamics_one(t, out) for t in term["value"]]}
        elif kind == "object":
            return {**term, "value": [[self.dynamics_one(k, out), self.dynamics_one(v, out)] for k, v in term["value"]]}
        elif kind == "call":
            parts = term["value"]
            term = {**term, "value": [parts[0]] + [self.dynamics_one(t, out) for t in parts[1:]]}
        elif kind not in ("arraycomprehension", "setcomprehension", "objectcomprehension"):
            return term
        generated = {"type": "var", "value": f"__local{next(self.tmp)}__"}
        out.append({"terms": [{"type": "ref", "value": [{"type": "var", "value": "eq"}]}, generated, term]})
        return generated

    def simple(self, code: str) -> str:
        """``code`` if it is cheap to evaluate twice (a name, a literal, a cache slot), else a
        temporary holding its value (computed here, once, in the same order)."""
        if _SIMPLE_CODE.fullmatch(code):
            return code
        temp = self.fresh()
        self.emit(f"{temp} = {code}")
        return temp

    def test_truthy(self, value: tuple[str, bool]) -> None:
        code, maybe_undefined = value
        if code == "TRUE":
            return
        code = self.simple(code)
        if maybe_undefined:
            self.emit(f"if {code} is U or {code} is FALSE: continue")
        else:
            self.emit(f"if {code} is FALSE: continue")

    def condition(self, name: str, args: Sequence[dict[str, Any]]) -> str:
        left = self.need(args[0])
        right = self.need(args[1])
        if name not in ("equal", "neq"):
            # The specialised comparison below names each operand twice.
            left = self.simple(left)
            right = self.simple(right)
        if name in ("equal", "neq"):
            return f"{left} {_COMPARISONS[name]} {right}"
        left_const = _literal(args[0])
        right_const = _literal(args[1])
        # Same-kind operands compare natively; a number or string literal fixes one side's kind.
        for const, other in ((right_const, left), (left_const, right)):
            if type(const) in (int, float):
                return (f"(type({other}) in NUM and {left} {_COMPARISONS[name]} {right}"
                        f" or type({other}) not in NUM and {_COMPARE_FUNCS[name]}({left}, {right}))")
            if type(const) is str:
                return (f"(type({other}) is str and {left} {_COMPARISONS[name]} {right}"
                        f" or type({other}) is not str and {_COMPARE_FUNCS[name]}({left}, {right}))")
        return f"{_COMPARE_FUNCS[name]}({left}, {right})"

    def member_test(self, args: Sequence[dict[str, Any]]) -> str:
        """``x in xs`` as a Python test; a constant array or set becomes a frozenset lookup."""
        item = self.need(args[0])
        constant = self.c.const_term(args[1], self.module)
        if type(constant) in (tuple, frozenset):
            return f"{item} in {self.c.member_const(constant)}"
        collection = self.need(args[1])
        return f"member({item}, {collection})"

    def compile_some(self, expr: dict[str, Any], symbols: Sequence[dict[str, Any]]) -> None:
        for symbol in symbols:
            if symbol.get("type") == "var":
                self.scope.vars[symbol["value"]] = None
                continue
            if symbol.get("type") == "call":
                name = _ref_name(symbol["value"][0].get("value", []))
                args = symbol["value"][1:]
                if name == "internal.member_2":
                    collection = self.need(args[1])
                    item = self.fresh("v")
                    self.open_loop(f"for {item} in iter_values({collection}):")
                    self.unify_value(args[0], item, declare=True)
                    continue
                if name == "internal.member_3":
                    collection = self.need(args[2])
                    key, item = self.fresh("k"), self.fresh("v")
                    self.open_loop(f"for {key}, {item} in iter_items({collection}):")
                    self.unify_value(args[0], key, declare=True)
                    self.unify_value(args[1], item, declare=True)
                    continue
            self.c.refuse(expr, "some", "a some declaration of unsupported shape")

    def compile_every(self, expr: dict[str, Any], terms: dict[str, Any]) -> None:
        domain = self.need(terms["domain"])
        failed = self.fresh("e")
        key, item = self.fresh("k"), self.fresh("v")
        self.emit(f"if type({domain}) not in COLLECTIONS: continue")
        self.emit(f"{failed} = False")
        saved_scope = self.scope
        self.scope = _Scope(saved_scope.vars)
        self.emit(f"for {key}, {item} in iter_items({domain}):")
        outer_loops, outer_indent = self.loops, self.indent
        self.indent += 1
        self.loops = []
        ok = self.fresh("s")
        self.emit(f"{ok} = False")
        saved = self.block()
        if terms.get("key") is not None:
            self.unify_value(terms["key"], key, declare=True)
        self.unify_value(terms["value"], item, declare=True)
        self.compile_body(terms.get("body") or [])
        self.succeed_and_break(ok)
        self.close(saved)
        self.emit(f"if not {ok}:")
        self.emit(f"    {failed} = True")
        self.emit("    break")
        self.indent, self.loops = outer_indent, outer_loops
        self.scope = saved_scope
        self.emit(f"if {failed}: continue")

    # -- binding
    def is_unbound_var(self, term: dict[str, Any]) -> bool:
        if term.get("type") != "var":
            return False
        name = term["value"]
        if name in self.scope.vars:
            return self.scope.vars[name] is None
        return self.c.data_path(name, self.module) is None

    def bind(self, name: str, code: str) -> None:
        if name == "_" or (name.startswith("$") and name[1:].isdigit() and False):
            return
        pyname = self.fresh("x_" + _py_ident(name.lstrip("$")) + "_")
        self.emit(f"{pyname} = {code}")
        self.scope.vars[name] = pyname

    def assign(self, target: dict[str, Any], value_term: dict[str, Any], expr: dict[str, Any]) -> None:
        value = self.need(value_term)
        if target.get("type") == "var":
            name = target["value"]
            pyname = self.fresh("x_" + _py_ident(name) + "_")
            self.emit(f"{pyname} = {value}")
            self.scope.vars[name] = pyname
            return
        self.unify_value(target, value, declare=True, node=expr)

    def unify(self, a: dict[str, Any], b: dict[str, Any], expr: dict[str, Any]) -> None:
        if self.is_unbound_var(a) and self.is_unbound_var(b):
            self.c.refuse(expr, "unification", "both sides are unbound variables")
        if self.is_unbound_var(a) or (self.has_unbound(a) and not self.has_unbound(b)):
            self.unify_value(a, self.need(b), node=expr)
            return
        if self.is_unbound_var(b) or self.has_unbound(b):
            self.unify_value(b, self.need(a), node=expr)
            return
        self.emit(f"if {self.need(a)} != {self.need(b)}: continue")

    def has_unbound(self, term: dict[str, Any]) -> bool:
        kind = term.get("type")
        if kind == "var":
            return self.is_unbound_var(term)
        if kind in ("array", "set"):
            return any(self.has_unbound(t) for t in term["value"])
        if kind == "object":
            return any(self.has_unbound(k) or self.has_unbound(v) for k, v in term["value"])
        return False

    def unify_value(self, pattern: dict[str, Any], code: str, *, declare: bool = False, node: Any = None) -> None:
        """Match ``pattern`` against the (defined) Python value ``code``, binding its unbound variables."""
        kind = pattern.get("type")
        if kind == "var":
            name = pattern["value"]
            if declare or self.is_unbound_var(pattern):
                if name == "_" or name.startswith("$"):
                    return
                self.bind(name, code)
                return
        if kind == "array" and self.has_unbound(pattern) or (declare and kind == "array"):
            items = pattern["value"]
            self.emit(f"if type({code}) is not tuple or len({code}) != {len(items)}: continue")
            for index, item in enumerate(items):
                element = self.fresh("p")
                self.emit(f"{element} = {code}[{index}]")
                self.unify_value(item, element, declare=declare, node=node)
            return
        if self.has_unbound(pattern):
            self.c.refuse(node or pattern, "unification", f"a {kind} pattern with unbound variables")
        self.emit(f"if {code} != {self.need(pattern)}: continue")

    # -- terms
    def need(self, term: dict[str, Any]) -> str:
        """A Python expression for a term's value; the body fails here when it is undefined."""
        code, maybe_undefined = self.term(term)
        if not maybe_undefined:
            return code
        if re.fullmatch(r"_[a-zA-Z]\w*", code):
            self.emit(f"if {code} is U: continue")
            return code
        temp = self.fresh()
        self.emit(f"{temp} = {code}")
        self.emit(f"if {temp} is U: continue")
        return temp

    def term(self, term: dict[str, Any]) -> tuple[str, bool]:
        """(Python expression, whether it may be undefined) for a term."""
        literal = _literal(term)
        if literal is not _NOT_CONST:
            return self.c.const(literal), False
        kind = term.get("type")
        if kind == "var":
            return self.var(term)
        if kind == "ref":
            return self.ref(term["value"], term)
        if kind == "array":
            items = [self.need(t) for t in term["value"]]
            return "(" + "".join(f"{x}, " for x in items) + ")", False
        if kind == "set":
            items = [self.need(t) for t in term["value"]]
            return "frozenset((" + "".join(f"{x}, " for x in items) + "))", False
        if kind == "object":
            pairs = [(self.need(k), self.need(v)) for k, v in term["value"]]
            if all(_literal(k) is not _NOT_CONST for k, _ in term["value"]):
                return "Obj({" + ", ".join(f"{k}: {v}" for k, v in pairs) + "})", False
            return "make_object((" + "".join(f"({k}, {v}), " for k, v in pairs) + "))", False
        if kind == "call":
            return self.call(term["value"][0], term["value"][1:], term)
        if kind in ("arraycomprehension", "setcomprehension", "objectcomprehension"):
            return self.comprehension(kind, term["value"], term), False
        self.c.refuse(term, "term", f"a {kind} term")
        return "U", True

    def var(self, term: dict[str, Any]) -> tuple[str, bool]:
        name = term["value"]
        if name in self.scope.vars:
            pyname = self.scope.vars[name]
            if pyname is None:
                self.c.refuse(term, "unsafe variable", f"{name} is used before it is bound")
            return str(pyname), False
        return self.ref([term], term)

    def ref(self, parts: Sequence[dict[str, Any]], node: Any) -> tuple[str, bool]:
        head = parts[0]
        ops = list(parts[1:])
        if head.get("type") == "var":
            name = head["value"]
            if name in self.scope.vars:
                pyname = self.scope.vars[name]
                if pyname is None:
                    self.c.refuse(node, "unsafe variable", f"{name} is used before it is bound")
                return self.apply_ops(str(pyname), ops, node)
            path = self.c.data_path(name, self.module)
            if path is None:
                self.c.refuse(node, "unsafe variable", f"{name} is not bound (OPA would reorder or reject the body)")
            if path[0] == "input":  # type: ignore[index]
                self.group.impure = True
                const_ops = [{"type": "string", "value": p} for p in path[1:]]  # type: ignore[index]
                return self.apply_ops("i", const_ops + ops, node)
            return self.data_ref(list(path[1:]), ops, node)  # type: ignore[index]
        code, maybe_undefined = self.term(head)
        if maybe_undefined:
            code = self.need(head)
        return self.apply_ops(code, ops, node)

    def data_ref(self, prefix: list[Any], ops: list[dict[str, Any]], node: Any) -> tuple[str, bool]:
        path = list(prefix)
        rest = list(ops)
        tree: Any = self.c.tree
        walked: list[Any] = []
        for part in path:
            if isinstance(tree, _Group):
                break
            walked.append(part)
            tree = tree.get(part, {}) if isinstance(tree, dict) else {}
        else:
            while rest and isinstance(tree, dict) and tree:
                literal = _literal(rest[0])
                if type(literal) is not str:
                    self.c.refuse(node, "dynamic data reference", "a variable key into a document with rules under it")
                walked.append(literal)
                rest.pop(0)
                tree = tree.get(literal, {})
                if isinstance(tree, _Group):
                    break
        if isinstance(tree, _Group):
            extra = [{"type": "string", "value": p} for p in path[len(walked):]]
            group = tree
            constant = self.c.group_constant(group)
            if constant is not _NOT_CONST:
                return self.apply_ops(self.c.const(constant), extra + rest, node, constant=constant)
            if group.kind == "function":
                self.c.refuse(node, "function reference", "a function used as a value")
            name = self.c.ensure(group)
            # Read the rule's cache slot inline: most reads of a rule find it already
            # evaluated, and a Python call costs more than the rest of such a read.
            slot = group.slot
            code = f"(c[{slot}] if c[{slot}] is not M else {name}(c, i))"
            return self.apply_ops(code, extra + rest, node, maybe_undefined=group.kind == "complete")
        if isinstance(tree, dict) and tree:
            self.c.refuse(node, "virtual document", f"a reference to the whole of data.{'.'.join(map(str, walked))}")
        value = self.c.base_data(walked)
        return self.apply_ops(self.c.const(value), rest, node, constant=value)

    def apply_ops(self, code: str, ops: Sequence[dict[str, Any]], node: Any, *, maybe_undefined: bool = True,
                  constant: Any = _NOT_CONST) -> tuple[str, bool]:
        if constant is not _NOT_CONST:
            maybe_undefined = constant is UNDEFINED
        if code == "i" and not ops:
            return code, False
        if code == "i" and ops and type(_literal(ops[0])) is str:
            # input.a.b.c: the input does not change during an evaluation, so its
            # constant paths are looked up once, at its start (see input_ref).
            path: list[str] = []
            while len(path) < len(ops) and type(_literal(ops[len(path)])) is str:
                path.append(_literal(ops[len(path)]))
            code = self.c.input_ref(tuple(path))
            ops = ops[len(path):]
            maybe_undefined = True
        for index, op in enumerate(ops):
            literal = _literal(op)
            if constant is not _NOT_CONST and literal is not _NOT_CONST:
                constant = _runtime.getk(constant, literal) if constant is not UNDEFINED else UNDEFINED
                code = self.c.const(constant)
                maybe_undefined = constant is UNDEFINED
                continue
            base_constant, constant = constant, _NOT_CONST
            if type(literal) is str:
                if _SIMPLE_CODE.fullmatch(code):
                    # dot() inlined for the common case, an object.
                    code = f"({code}.get({literal!r}, U) if type({code}) is Obj else dot({code}, {literal!r}))"
                else:
                    code = f"dot({code}, {literal!r})"
                maybe_undefined = True
                continue
            if literal is not _NOT_CONST:
                code = f"getk({code}, {self.c.const(literal)})"
                maybe_undefined = True
                continue
            if self.is_unbound_var(op) or (op.get("type") == "var" and (op["value"] == "_" or op["value"].startswith("$")) and op["value"] not in self.scope.vars):
                collection = code
                if maybe_undefined:
                    collection = self.fresh()
                    self.emit(f"{collection} = {code}")
                    self.emit(f"if {collection} is U: continue")
                key, item = self.fresh("k"), self.fresh("v")
                if base_constant is not _NOT_CONST:
                    # A constant collection's (key, value) pairs in OPA's order, listed once.
                    pairs = tuple(tuple(pair) for pair in _runtime.iter_items(base_constant))
                    self.open_loop(f"for {key}, {item} in {self.c.const(pairs)}:")
                else:
                    self.open_loop(f"for {key}, {item} in iter_items({collection}):")
                self.unify_value(op, key, declare=True)
                code, maybe_undefined = item, False
                continue
            if self.has_unbound(op):
                self.c.refuse(node, "reference", "a composite key pattern with unbound variables")
            base = code
            if maybe_undefined:
                base = self.fresh()
                self.emit(f"{base} = {code}")
                self.emit(f"if {base} is U: continue")
            key = self.need(op)
            if type(base_constant) is Obj:
                # A constant object's member: Python's dict lookup is Rego's here
                # (the representation makes == and hash Rego equality).
                code = f"{base}.get({key}, U)"
            else:
                code = f"getk({base}, {key})"
            maybe_undefined = True
        return code, maybe_undefined

    def call(self, op_term: dict[str, Any], args: Sequence[dict[str, Any]], node: Any) -> tuple[str, bool]:
        parts = op_term.get("value", []) if op_term.get("type") == "ref" else []
        name = _ref_name(parts)
        if name is None:
            self.c.refuse(node, "call", "a call whose operator is not a name")
        group = self.function_group(parts)
        if group is not None:
            if len(args) != group.arity:
                self.c.refuse(node, "call", f"{name} called with {len(args)} argument(s), defined with {group.arity}")
            codes = [self.need(a) for a in args]
            pyname = self.c.ensure(group)
            return f"{pyname}(c, i{''.join(', ' + x for x in codes)})", True
        assert name is not None
        if name in _COMPARISONS and len(args) == 2:
            return f"(TRUE if {self.condition(name, args)} else FALSE)", False
        if name in _ARITH and len(args) == 2:
            codes = [self.need(a) for a in args]
            return f"{_ARITH[name]}({codes[0]}, {codes[1]})", False
        if name == "internal.member_2" and len(args) == 2:
            return f"(TRUE if {self.member_test(args)} else FALSE)", False
        if name == "internal.member_3" and len(args) == 3:
            key, item, collection = (self.need(a) for a in args)
            return f"(TRUE if member_kv({key}, {item}, {collection}) else FALSE)", False
        if _builtins.is_non_deterministic(name):
            self.group.impure = True
            self.c.refuse(node, "non-deterministic builtin", f"{name} depends on more than its arguments")
        builtin = _builtins.BUILTINS.get(name)
        if builtin is None:
            self.c.refuse(node, "unknown builtin", f"{name} is not supported by the compiler")
        assert builtin is not None
        if len(args) != builtin.arity:
            if len(args) == builtin.arity + 1:
                self.c.refuse(node, "call", f"{name} with an output argument")
            self.c.refuse(node, "call", f"{name} takes {builtin.arity} argument(s), got {len(args)}")
        if name in _builtins.REGEX_BUILTINS:
            pattern = _literal(args[_builtins.REGEX_BUILTINS[name]])
            if type(pattern) is str:
                try:
                    _builtins.translate_regex(pattern)
                except _builtins.UnsupportedRegex as exc:
                    self.c.refuse(node, "regex", f"pattern {pattern!r} means something else in Python: {exc}")
        codes = [self.need(a) for a in args]
        pyname = "B_" + _py_ident(name)
        self.c.namespace[pyname] = builtin.function
        return f"{pyname}({', '.join(codes)})", name in _MAY_BE_UNDEFINED

    def function_group(self, parts: Sequence[dict[str, Any]]) -> _Group | None:
        head = parts[0].get("value")
        if head in self.scope.vars:
            return None
        path = self.c.data_path(str(head), self.module)
        if path is None or path[0] != "data":
            return None
        full = tuple(path[1:]) + tuple(t["value"] for t in parts[1:])
        group = self.c.groups.get(full)
        if group is not None and group.kind == "function":
            return group
        return None

    def comprehension(self, kind: str, spec: dict[str, Any], node: Any) -> str:
        acc = self.fresh("acc")
        init = {"arraycomprehension": "[]", "setcomprehension": "set()", "objectcomprehension": "{}"}[kind]
        self.emit(f"{acc} = {init}")
        saved_scope = self.scope
        self.scope = _Scope(saved_scope.vars)
        saved = self.block()
        self.compile_body(spec.get("body") or [])
        if kind == "arraycomprehension":
            self.emit(f"{acc}.append({self.need(spec['term'])})")
        elif kind == "setcomprehension":
            self.emit(f"{acc}.add({self.need(spec['term'])})")
        else:
            key = self.need(spec["key"])
            value = self.need(spec["value"])
            self.emit(f"_old = {acc}.get({key}, U)")
            self.emit(f"if _old is U: {acc}[{key}] = {value}")
            self.emit(f"elif _old != {value}: raise RegoConflictError('object keys must be unique')")
        # Only an array comprehension's value depends on the order of its solutions.
        self.close(saved, unordered=kind != "arraycomprehension")
        self.scope = saved_scope
        result = self.fresh("r")
        wrap = {"arraycomprehension": "tuple", "setcomprehension": "frozenset", "objectcomprehension": "Obj"}[kind]
        self.emit(f"{result} = {wrap}({acc})")
        return result


def make_object(pairs: Sequence[tuple[Any, Any]]) -> Obj:
    """An object literal with computed keys; as in OPA, a repeated key keeps the later value."""
    return Obj(pairs)


_RUNTIME_NAMES: dict[str, Any] = {
    "U": UNDEFINED,
    "M": _runtime.MISSING,
    "TRUE": TRUE,
    "FALSE": FALSE,
    "Obj": Obj,
    "ONCE": _runtime.ONCE,
    "NUM": (int, float),
    "COLLECTIONS": (tuple, frozenset, Obj),
    "EXACT": _runtime.EXACT_SCALARS,
    "MEMO_LIMIT": _runtime.MEMO_LIMIT,
    "memo_key_part": _runtime.memo_key_part,
    "dot": _runtime.dot,
    "getk": _runtime.getk,
    "iter_values": _runtime.iter_values,
    "iter_items": _runtime.iter_items,
    "iter_values_any": _runtime.iter_values_any,
    "iter_items_any": _runtime.iter_items_any,
    "member": _runtime.member,
    "member_kv": _runtime.member_kv,
    "lt": _runtime.lt,
    "le": _runtime.le,
    "gt": _runtime.gt,
    "ge": _runtime.ge,
    "arith_plus": _runtime.arith_plus,
    "arith_minus": _runtime.arith_minus,
    "arith_mul": _runtime.arith_mul,
    "arith_div": _runtime.arith_div,
    "arith_rem": _runtime.arith_rem,
    "set_union": _runtime.set_union,
    "set_intersection": _runtime.set_intersection,
    "make_object": make_object,
    "RegoConflictError": RegoConflictError,
    "RegoEvalError": RegoEvalError,
}


def _memoised_function(compiler: _Compiler, group: _Group) -> str:
    """A pure function's memo: its group function renamed, and a wrapper under its name.

    The function's value depends only on its arguments (and ``data``, folded
    into the code), so a result computed in one evaluation holds in every
    other: the memo keeps it per argument tuple across evaluations. Only
    values are kept (undefined too, as UNDEFINED); an error propagates
    uncached, so it is raised again by every call that makes it. Arguments
    holding a float (or too large to check cheaply) go around the memo, see
    :func:`~helpdesk_policy.compiler.runtime.memo_key_part`. The dict is
    shared by threads: a get and a set are each atomic, and a lost entry
    (two threads computing one key, a clear racing a set) only costs a
    recomputation.
    """
    name = group.pyname
    compute = f"{name}__compute"
    memo = f"MEMO_{name}"
    compiler.namespace[memo] = {}
    params = [f"a{k}" for k in range(group.arity)]
    args = "".join(f", {p}" for p in params)
    key = params[0] if len(params) == 1 else "(" + "".join(f"{p}, " for p in params) + ")"
    # Strings, integers, booleans and null (most arguments) are checked inline; so is an
    # array of them (a message's arguments), without a call. Anything else asks memo_key_part.
    checks = " and ".join(f"(type({p}) in EXACT or type({p}) is tuple and len({p}) <= 16"
                          f" and EXACT.issuperset(map(type, {p})) or memo_key_part({p}))" for p in params) or "True"
    lines = [
        f"# data.{'.'.join(group.path)} reads no input: memoised across evaluations",
        f"{compute} = {name}",
        f"def {name}(c, i{args}):",
        f"    if {checks}:",
        f"        k = {key}",
        f"        v = {memo}.get(k, M)",
        "        if v is M:",
        f"            v = {compute}(c, i{args})",
        f"            if len({memo}) >= MEMO_LIMIT: {memo}.clear()",
        f"            {memo}[k] = v",
        "        return v",
        f"    return {compute}(c, i{args})",
    ]
    return "\n".join(lines) + "\n"


def _entry_group(compiler: _Compiler, entrypoint: str) -> tuple[str, _Group | None, Any]:
    path = tuple(p for p in entrypoint.split(".") if p)
    node: Any = compiler.tree
    for index, part in enumerate(path):
        if isinstance(node, _Group):
            return "group", node, path[index:]
        if not isinstance(node, dict) or part not in node:
            return "data", None, path
        node = node[part]
    if isinstance(node, _Group):
        return "group", node, ()
    if isinstance(node, dict) and node:
        return "virtual", None, path
    return "data", None, path


def _build(asts: Mapping[str, dict[str, Any]], data: Mapping[str, Any] | None, entrypoint: str,
           all_rules: bool) -> tuple[_Compiler, str, str]:
    compiler = _Compiler(asts, data)
    kind, group, rest = _entry_group(compiler, entrypoint)
    roots = list(compiler.groups.values()) if all_rules else ([group] if group is not None else [])
    compiler.generate_all(roots)
    for pure in compiler.pure_groups():
        if pure.kind == "function":
            compiler.chunks.append(_memoised_function(compiler, pure))
    entry_lines = ["def evaluate(i):"]
    if kind == "group" and group is not None:
        constant = compiler.group_constant(group)
        if constant is not _NOT_CONST:
            code = compiler.const(constant)
        else:
            entry_lines.append(f"    c = [M] * {compiler.slots}")
            entry_lines.extend(compiler.input_prologue())
            code = f"{group.pyname}(c, i)" if group.kind != "function" else "U"
        for part in rest:
            code = f"getk({code}, {part!r})"
        entry_lines.append(f"    return {code}")
    elif kind == "data":
        entry_lines.append(f"    return {compiler.const(compiler.base_data(list(rest)))}")
    else:
        compiler.refusals.append(Refusal("<entrypoint>", 0, "virtual document",
                                         f"the entrypoint {entrypoint} is a package, not a rule"))
        entry_lines.append("    return U")
    header = [
        f"# Generated by helpdesk_policy.compiler from {len(asts)} module(s); entrypoint data.{entrypoint}.",
        "# Every rule is a function r_<path>(c, i): c is the per-evaluation cache, i the input.",
        "",
    ]
    source = "\n".join(header) + "\n".join(compiler.chunks) + "\n" + "\n".join(entry_lines) + "\n"
    return compiler, source, entrypoint


def compile_policy(asts: Mapping[str, dict[str, Any]], *, data: Mapping[str, Any] | None = None,
                   entrypoint: str = "helpdesk.decision") -> CompiledPolicy:
    """Compile Rego modules (OPA AST JSON, by file name) into a :class:`CompiledPolicy`.

    Only the rules the entrypoint depends on are translated. ``data`` is the
    base document; it is folded into the code as constants.

    Raises:
        CompileRefused: some construct on the entrypoint's path is not translated;
            ``refusals`` lists every one as ``file:line: construct: detail``.
    """
    started = time.perf_counter()
    compiler, source, _ = _build(asts, data, entrypoint, all_rules=False)
    if compiler.refusals:
        raise CompileRefused(compiler.refusals)
    namespace: dict[str, Any] = dict(_RUNTIME_NAMES)
    namespace.update(compiler.namespace)
    code = compile(source, f"<compiled rego: {entrypoint}>", "exec")
    exec(code, namespace)  # noqa: S102 - our own generated source
    rules = tuple(sorted(".".join(g.path) for g in compiler.groups.values() if g.generated))
    elapsed = time.perf_counter() - started
    logger.debug("compiled %d rules for %s in %.3f s (%d bytes of Python)", len(rules), entrypoint, elapsed, len(source))
    return CompiledPolicy(source, namespace["evaluate"], rules, entrypoint, elapsed)


def analyze(asts: Mapping[str, dict[str, Any]]) -> CompileReport:
    """Report, for every rule definition, whether it compiles, and every refusal. Never raises for
    unsupported constructs."""
    compiler, _source, _ = _build(asts, None, "", all_rules=True)
    statuses: list[RuleStatus] = []
    for group in compiler.groups.values():
        for rdef in ([group.default] if group.default else []) + group.defs:
            found = tuple(compiler.def_refusals.get(id(rdef), ()))
            statuses.append(RuleStatus(".".join(group.path), rdef.module.file, rdef.line, not found, found))
    refusals = [r for r in compiler.refusals if r.construct != "virtual document" or r.file != "<entrypoint>"]
    return CompileReport(tuple(statuses), tuple(refusals))
