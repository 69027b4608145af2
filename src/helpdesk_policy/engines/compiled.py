"""The ``compiled`` engine: the policy set's own Rego, compiled to Python.

For an *edited* policy (a rule family added, a threshold that is not config,
a reason reworded in Rego) this is the fast path: the Rego is parsed and
translated once, at load (:mod:`helpdesk_policy.compiler`), and each decision
is a call into the generated Python, tens of microseconds where the
interpreter takes milliseconds. For the unmodified stock policy the
hand-written ``native`` mirror is faster still, and ``engine="auto"`` picks it.

It loads only what it can translate faithfully: a construct the compiler does
not support (``with``, an unknown or non-deterministic builtin, …) makes the
engine refuse to load, naming the file, line and construct, so a facade with
``engine="auto"`` runs that policy on the interpreter instead; it never runs a
partial or approximate translation. The compiler is proven equal to OPA's own
evaluator by this project's differential tests, and an organisation proves
its own policy with ``helpdesk-policy test DIR`` (the compiled policy against
regopy and OPA's Go evaluator, on its suites and generated requests).

It fails closed like the other engines: an undefined decision raises
:class:`~helpdesk_policy.errors.UndefinedDecisionError`, an evaluation error
(a builtin's type error, conflicting rule values) raises
:class:`~helpdesk_policy.errors.EngineError`, where OPA would error too, and
whoever asks it validates the answer (:func:`~.base.checked_verdict`).

Deciding a validated :class:`~helpdesk_policy.models.Request` takes a direct
path that gives exactly what ``evaluate_input(request.to_input())`` gives,
faster: the request becomes the policy's Rego input in one pass over the
model (:func:`request_to_rego`, no JSON dump and no second conversion), and
the answer becomes plain Python with
:func:`~helpdesk_policy.compiler.values.to_json_document`, which is
:func:`~helpdesk_policy.compiler.values.to_json` specialised for a decision's
shape. ``tests/test_compiled_speed_paths.py`` proves both equal to the
general route.

>>> from helpdesk_policy.engines.compiled import CompiledEngine
>>> from helpdesk_policy.policyset import PolicySet
>>> engine = CompiledEngine(PolicySet.load())
>>> engine.name
'compiled'
"""

from __future__ import annotations

import enum
import functools
import logging
import types
import typing
from collections.abc import Callable
from datetime import datetime
from typing import Any

from pydantic import BaseModel, TypeAdapter

from ..compiler import compile_policy_set
from ..compiler.codegen import ENGINE_NAME
from ..compiler.runtime import RegoEvalError
from ..compiler.values import _SCALARS, _STR_ONLY, FALSE, TRUE, UNDEFINED, Obj, to_json_document
from ..errors import EngineError, UndefinedDecisionError
from ..models import Request
from ..policyset import DECISION_PATH, PolicySet
from .base import BaseEngine, RawDecision

__all__ = ["CompiledEngine", "request_to_rego"]

log = logging.getLogger(__name__)


class CompiledEngine(BaseEngine):
    """Decide with the policy set's Rego compiled to Python.

    Args:
        policy_set: any policy set whose Rego the compiler supports.

    Raises:
        EngineUnavailableError: the parser's dependency (lark, the ``rego``
            extra) is not installed.
        PolicyLoadError: a syntax error, or a construct the compiler refuses
            (every one named with its file and line).
    """

    name = "compiled"

    def __init__(self, policy_set: PolicySet) -> None:
        self.policy_set = policy_set
        self.compiled = compile_policy_set(policy_set, entrypoint=DECISION_PATH.replace("/", "."))
        #: What ``evaluate_input`` calls: input document in, JSON answer out.
        self._evaluate = self.compiled.evaluate
        # The direct path of evaluate() is this same evaluation taken in two
        # cheaper steps; it is taken only while ``_evaluate`` is still this.
        self._own_evaluate = self._evaluate
        self._evaluate_value = self.compiled.evaluate_value
        self._entrypoint = self.compiled.entrypoint
        self._request_to_rego = _request_converter()

    def evaluate(self, request: Request) -> RawDecision:
        if self._evaluate is not self._own_evaluate or type(self).evaluate_input is not _OWN_EVALUATE_INPUT:
            # A subclass (or a test) stands between the request and the policy
            # at the document level: honour it, through the general route.
            return self.evaluate_input(request.to_input())
        rego_input = self._request_to_rego(request)
        if rego_input is None:
            # Not exactly a validated Request (a subclass, a model_construct
            # instance): the general route, which handles anything.
            return self.evaluate_input(request.to_input())
        return self._guarded(self._evaluate_rego, rego_input)

    def _evaluate_rego(self, rego_input: Any) -> Any:
        """``CompiledPolicy.evaluate`` after its input conversion, with the same errors, and the fast output."""
        try:
            value = self._evaluate_value(rego_input)
        except (RegoEvalError, TypeError, RecursionError) as exc:
            raise EngineError(f"evaluation error: {exc}", engine=ENGINE_NAME) from exc
        if value is UNDEFINED:
            raise UndefinedDecisionError(f"{self._entrypoint} is undefined", engine=ENGINE_NAME)
        return to_json_document(value)

    def evaluate_input(self, document: dict[str, Any]) -> RawDecision:
        """Evaluate a raw input document (validated by the caller), as ``RegoEngine.evaluate_input`` does."""
        return self._guarded(self._evaluate, document)

    def _guarded(self, evaluate: Any, argument: Any) -> RawDecision:
        """``evaluate(argument)``, every failure an :class:`EngineError` (never an answer)."""
        try:
            return evaluate(argument)  # type: ignore[no-any-return]
        except EngineError:
            raise
        except RecursionError:
            raise EngineError("evaluation nested too deeply", engine=self.name) from None
        except Exception as exc:  # noqa: BLE001 - a fault in generated code is an engine failure, never an answer
            raise EngineError(f"compiled policy failed: {type(exc).__name__}: {exc}", engine=self.name) from None

    async def aevaluate(self, request: Request) -> RawDecision:
        # Pure CPU, tens of microseconds: a thread hop would cost more than it saves.
        return self.evaluate(request)


_OWN_EVALUATE_INPUT = CompiledEngine.evaluate_input


# --------------------------------------------------------------------------- request -> Rego input


def request_to_rego(request: Any) -> Any:
    """The policy's Rego input for a validated request, in one pass over the model.

    Equal (Rego equality, and the same Python types throughout) to
    ``from_json(request.to_input())``: every field present, ``None`` kept,
    enums as their values, lists as arrays, booleans as Rego booleans,
    date-times as pydantic writes them in JSON. ``None`` when ``request`` is
    not exactly a :class:`Request` whose every value has the type its
    validation gives (a subclass, a ``model_construct`` instance holding
    something else): the caller then takes the general route, which handles
    anything.
    """
    return _request_converter()(request)


class _Unconvertible(Exception):
    """A model field whose values this module does not convert directly (the general route is taken)."""


@functools.cache
def _request_converter() -> Callable[[Any], Any]:
    """Generate the converter for :class:`Request` from its fields (once per process).

    The function is straight-line Python: one type check and one expression
    per field, so a request costs about a microsecond per section. A model
    this generator does not understand (a field type it does not know, a
    custom serializer) gives a converter that always answers ``None``.
    """
    try:
        source, namespace = _ConverterSource(Request).build()
    except _Unconvertible as exc:
        log.info("compiled engine: requests take the general input conversion (%s)", exc)
        return lambda request: None
    code = compile(source, "<compiled engine: request_to_rego>", "exec")
    exec(code, namespace)  # noqa: S102 - source generated above from the model's own field list
    return namespace["convert"]  # type: ignore[no-any-return]


class _ConverterSource:
    """Python source of ``convert(request)``: the model walked field by field, each value type-checked."""

    def __init__(self, model: type[BaseModel]) -> None:
        self.model = model
        self.lines: list[str] = []
        self.namespace: dict[str, Any] = {"Obj": Obj, "TRUE": TRUE, "FALSE": FALSE, "_SCALARS": _SCALARS,
                                          "_STR_ONLY": _STR_ONLY}
        self.counter = 0

    def build(self) -> tuple[str, dict[str, Any]]:
        self.lines = []
        result = self._model("request", self.model)
        self._emit(f"return {result}")
        # A model_construct instance may lack a field: that is for the general route to report.
        body = ["    " + line for line in self.lines]
        source = ["def convert(request):", "    try:", *body, "    except KeyError:", "        return None"]
        return "\n".join(source) + "\n", self.namespace

    def _name(self, prefix: str) -> str:
        self.counter += 1
        return f"{prefix}{self.counter}"

    def _global(self, value: Any, prefix: str) -> str:
        name = self._name(prefix)
        self.namespace[name] = value
        return name

    def _emit(self, line: str) -> None:
        self.lines.append("    " + line)

    def _model(self, var: str, model: type[BaseModel]) -> str:
        """Check ``var`` is exactly ``model``; return the expression building its Rego object."""
        _check_plain_serialisation(model)
        cls = self._global(model, "M")
        fields = self._name("f")
        self._emit(f"if type({var}) is not {cls}: return None")
        self._emit(f"{fields} = {var}.__dict__")
        members = []
        for name, info in model.model_fields.items():
            value = self._name("v")
            self._emit(f"{value} = {fields}[{name!r}]")
            members.append(f"{name!r}: {self._value(value, info.annotation, f'{model.__name__}.{name}')}")
        return "Obj({" + ", ".join(members) + "})"

    def _value(self, var: str, annotation: Any, where: str) -> str:
        """Emit the checks of ``var`` against ``annotation``; return its Rego expression."""
        optional, inner = _optional(annotation)
        if optional:
            # Checked and converted only when present; None is null in both representations.
            result = self._name("o")
            self._emit(f"if {var} is None: {result} = None")
            self._emit("else:")
            self._indent_block(lambda: self._emit(f"{result} = {self._value(var, inner, where)}"))
            return result
        if isinstance(inner, type) and issubclass(inner, BaseModel):
            return self._model(var, inner)
        if inner is bool:
            result = self._name("b")
            self._emit(f"if {var} is True: {result} = TRUE")
            self._emit(f"elif {var} is False: {result} = FALSE")
            self._emit("else: return None")
            return result
        if inner is str or inner is int:
            self._emit(f"if type({var}) is not {inner.__name__}: return None")
            return var
        if inner is float:
            # NaN and infinities are refused by validation (pydantic would write them as null).
            self._emit(f"if type({var}) is not float or {var} - {var} != 0.0: return None")
            return var
        if isinstance(inner, type) and issubclass(inner, enum.Enum):
            self._enum(inner, where)
            cls = self._global(inner, "E")
            self._emit(f"if type({var}) is not {cls}: return None")
            return f"{var}._value_"
        if inner is datetime:
            # The text pydantic writes for this field, by pydantic itself (its exact format).
            # (Validators do not change how a date-time is written; serializers were refused above.)
            dump = self._global(TypeAdapter(datetime).serializer.to_python, "D")
            self._emit(f"if type({var}) is not datetime: return None")
            self.namespace["datetime"] = datetime
            return f"{dump}({var}, mode='json')"
        if typing.get_origin(inner) is list:
            (item,) = typing.get_args(inner) or (Any,)
            _, item = _strip_annotated(item)
            if item is str:
                self._emit(f"if type({var}) is not list or not _STR_ONLY.issuperset(map(type, {var})): return None")
                return f"tuple({var})"
            if isinstance(item, type) and issubclass(item, enum.Enum):
                self._enum(item, where)
                only = self._global(frozenset({item}), "K")
                self._emit(f"if type({var}) is not list or not {only}.issuperset(map(type, {var})): return None")
                return f"tuple([e._value_ for e in {var}])"
        raise _Unconvertible(f"{where}: no direct conversion for {annotation!r}")

    def _indent_block(self, emit: Callable[[], None]) -> None:
        start = len(self.lines)
        emit()
        self.lines[start:] = ["    " + line for line in self.lines[start:]]

    @staticmethod
    def _enum(cls: type[enum.Enum], where: str) -> None:
        if not all(type(member._value_) is str for member in cls):
            raise _Unconvertible(f"{where}: {cls.__name__} has values that are not strings")


def _check_plain_serialisation(model: type[BaseModel]) -> None:
    """Refuse a model whose JSON dump is not its fields' values as they are (custom serializers…)."""
    decorators = model.__pydantic_decorators__
    if decorators.field_serializers or decorators.model_serializers or model.model_computed_fields:
        raise _Unconvertible(f"{model.__name__} has its own serializers")
    config = model.model_config
    if config.get("serialize_by_alias") or config.get("use_enum_values") or config.get("ser_json_temporal") \
            or config.get("ser_json_timedelta") or config.get("ser_json_inf_nan") or config.get("extra") == "allow":
        raise _Unconvertible(f"{model.__name__} has a serialisation setting this conversion does not follow")
    for name, info in model.model_fields.items():
        if info.exclude:
            raise _Unconvertible(f"{model.__name__}.{name} is excluded from dumps")


def _strip_annotated(annotation: Any) -> tuple[tuple[Any, ...], Any]:
    if typing.get_origin(annotation) is typing.Annotated:
        base, *metadata = typing.get_args(annotation)
        return tuple(metadata), base
    return (), annotation


def _optional(annotation: Any) -> tuple[bool, Any]:
    """(whether ``annotation`` admits None, the annotation without it)."""
    _, annotation = _strip_annotated(annotation)
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1 and len(args) < len(typing.get_args(annotation)):
            return True, _strip_annotated(args[0])[1]
    return False, annotation

