"""The compiled engine's direct path is the general route, faster: proven equal here.

``CompiledEngine.evaluate(request)`` skips the JSON round trip: the validated
request becomes the Rego input in one pass (``request_to_rego``), and the
answer becomes plain Python with ``to_json_document``. Each is compared with
the route it replaces (``from_json(request.to_input())`` and ``to_json``), on
hypothesis' requests and on generated ones, value for value, type for type and
in the same key and list order; the engine's answers and its errors are
compared with ``evaluate_input(request.to_input())``.
"""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel, field_serializer

from helpdesk_policy.ci.generate import generate_requests
from helpdesk_policy.compiler.runtime import RegoConflictError, RegoTypeError
from helpdesk_policy.compiler.values import FALSE, TRUE, UNDEFINED, Obj, RegoBool, from_json, to_json, to_json_document
from helpdesk_policy.engines import compiled as compiled_module
from helpdesk_policy.engines.compiled import CompiledEngine, request_to_rego
from helpdesk_policy.errors import EngineError, UndefinedDecisionError
from helpdesk_policy.models import Request, RiskSignal
from helpdesk_policy.policyset import PolicySet
from helpdesk_policy.testing import requests

GENERATED = generate_requests(2000, seed=1)


@pytest.fixture(scope="module")
def engine() -> CompiledEngine:
    return CompiledEngine(PolicySet.load())


def same_value(a: Any, b: Any) -> bool:
    """Rego equality (the compiler's ``==``) and, recursively, the same Python types.

    ``==`` alone would let ``1`` pass for ``1.0`` and a list for a tuple.
    """
    if type(a) is not type(b) or a != b:
        return False
    if type(a) is Obj:
        return all(same_value(a[k], b[k]) for k in a)
    if type(a) is tuple:
        return all(same_value(x, y) for x, y in zip(a, b))
    if type(a) is frozenset:
        by_repr = {repr(x): x for x in b}
        return all(repr(x) in by_repr and same_value(x, by_repr[repr(x)]) for x in a)
    return True


def byte_identical(a: Any, b: Any) -> bool:
    """The same JSON text, keys and lists in the same order, ``true`` never ``1`` (repr tells)."""
    return json.dumps(a) == json.dumps(b) and repr(a) == repr(b)


# ----------------------------------------------------------------- request -> Rego input


@given(requests())
def test_the_direct_input_is_the_general_conversion_of_any_request(request: Request) -> None:
    direct = request_to_rego(request)
    assert direct is not None, "a validated request always takes the direct path"
    assert same_value(direct, from_json(request.to_input()))


def test_the_direct_input_is_the_general_conversion_of_generated_requests() -> None:
    for request in GENERATED:
        direct = request_to_rego(request)
        assert direct is not None and same_value(direct, from_json(request.to_input())), request.request.id


@pytest.mark.parametrize("moment", [
    datetime(2026, 1, 5, 9, 0, tzinfo=timezone.utc),
    datetime(2026, 1, 5, 9, 0, 0, 123, tzinfo=timezone(timedelta(hours=-3, minutes=-30))),
    datetime(2026, 1, 5, 9, 0, 0, 999999),
    datetime(1999, 12, 31, 23, 59, 59, tzinfo=timezone(timedelta(hours=14))),
])
def test_a_date_time_is_written_as_pydantic_writes_it(moment: datetime) -> None:
    request = GENERATED[0].model_copy(update={"request": GENERATED[0].request.model_copy(
        update={"requested_at": moment})})
    direct = request_to_rego(request)
    assert direct is not None
    assert direct["request"]["requested_at"] == request.to_input()["request"]["requested_at"]


def test_every_kind_of_field_value_converts_as_json_would() -> None:
    """Booleans, counts, hours, enums and lists, set and unset, in one request."""
    base = next(r for r in GENERATED if r.target.owners and r.actor.roles)
    target = base.target.model_copy(update={"owner_active": False, "holds_secret": True, "consumers": 0,
                                            "publisher_verified": None})
    context = base.context.model_copy(update={
        "risk_signals": [RiskSignal.IMPOSSIBLE_TRAVEL, RiskSignal.LEAKED_CREDENTIAL],
        "recent_credential_change_hours": 0.5, "enrolled_factor_available": False})
    request = base.model_copy(update={"target": target, "context": context})
    direct = request_to_rego(request)
    assert same_value(direct, from_json(request.to_input()))
    assert direct["target"]["owner_active"] is FALSE and direct["target"]["holds_secret"] is TRUE
    assert type(direct["target"]["owners"]) is tuple and type(direct["context"]["risk_signals"]) is tuple


def test_a_request_that_is_not_exactly_a_validated_one_takes_the_general_route(engine: CompiledEngine) -> None:
    class Tagged(Request):
        pass

    request = GENERATED[5]
    subclassed = Tagged.model_construct(**dict(request))
    # A model_construct instance holding what validation would never give (a bare string for an enum).
    loose = request.model_copy(update={"request": request.request.model_copy(update={"action": "password_reset"})})
    truthy = request.model_copy(update={"target": request.target.model_copy(update={"vip": 1})})
    missing = Request.model_construct(request=request.request, actor=request.actor)  # no target at all
    for odd in (subclassed, loose, truthy, missing):
        assert request_to_rego(odd) is None
    # The engine still answers them, as the general route does.
    assert byte_identical(engine.evaluate(subclassed), engine.evaluate_input(request.to_input()))
    with pytest.warns(UserWarning, match="serializer warnings"):  # pydantic's, dumping the loose value
        assert byte_identical(engine.evaluate(loose), engine.evaluate_input(loose.to_input()))


def test_a_model_the_generator_does_not_know_gets_no_direct_converter() -> None:
    class Odd(BaseModel):
        shape: dict[str, int]

    class Rewritten(BaseModel):
        name: str

        @field_serializer("name")
        def _upper(self, value: str) -> str:
            return value.upper()

    for model in (Odd, Rewritten):
        with pytest.raises(compiled_module._Unconvertible):
            compiled_module._ConverterSource(model).build()


# ----------------------------------------------------------------- Rego answer -> JSON


def test_the_fast_output_is_to_json_on_every_generated_decision(engine: CompiledEngine) -> None:
    for request in GENERATED:
        value = engine.compiled.evaluate_value(from_json(request.to_input()))
        assert byte_identical(to_json_document(value), to_json(value)), request.request.id


_SCALAR_VALUES = st.one_of(st.none(), st.sampled_from([TRUE, FALSE]), st.integers(-3, 3),
                           st.sampled_from([1.0, 0.5, -2.0]), st.sampled_from(["a", "b", "code", "z", ""]))


def _rego_values(leaves: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    def extend(children: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
        keys = st.one_of(st.sampled_from(["code", "level", "a", "refs", "z"]), _SCALAR_VALUES)
        return st.one_of(
            st.lists(children, max_size=3).map(tuple),
            st.dictionaries(keys, children, max_size=4).map(Obj),
            st.lists(children, max_size=4).map(lambda items: frozenset(_hashable(items))),
        )
    return st.recursive(leaves, extend, max_leaves=12)


def _hashable(items: list[Any]) -> list[Any]:
    return [item for item in items if _can_hash(item)]


def _can_hash(item: Any) -> bool:
    try:
        hash(item)
    except TypeError:
        return False
    return True


#: Sets of objects keyed like reasons, with the collisions the fast path must notice:
#: equal first members (1 and 1.0 too), mixed kinds, a different smallest key, empty objects.
_REASON_LIKE = st.frozensets(st.builds(
    lambda code, rest: Obj({"code": code, **rest}),
    st.one_of(st.sampled_from(["a", "b", "c", "d"]), st.sampled_from([1, 1.0, 2, 2.5]), st.sampled_from([TRUE, None])),
    st.dictionaries(st.sampled_from(["level", "message", "refs", "aaa"]), _rego_values(_SCALAR_VALUES), max_size=3),
) | st.just(Obj()), max_size=5)


@settings(max_examples=300)
@given(st.one_of(_rego_values(_SCALAR_VALUES),
                 st.dictionaries(st.sampled_from(["reasons", "obligations", "level", "allowed"]),
                                 st.one_of(_REASON_LIKE, _rego_values(_SCALAR_VALUES)), max_size=4).map(Obj)))
def test_the_fast_output_is_to_json_on_any_value(value: Any) -> None:
    assert byte_identical(to_json_document(value), to_json(value))


@settings(max_examples=300)
@given(_REASON_LIKE)
def test_the_fast_output_orders_a_set_of_objects_as_to_json_does(members: frozenset[Any]) -> None:
    assert byte_identical(to_json_document(Obj({"reasons": members})), to_json(Obj({"reasons": members})))


@pytest.mark.parametrize("members", [
    [Obj({"code": "a"}), Obj({"code": 1})],  # a string and a number: numbers come first
    [Obj({"code": 1}), Obj({"code": 1.0, "level": "x"})],  # equal first members: the next ones decide
    [Obj({"code": "a", "refs": ("x",)}), Obj({"aaa": "z", "code": "b"})],  # another smallest key
    [Obj({"code": "a"}), Obj({"level": "b"})],  # a smallest key the others lack
    [Obj({"code": TRUE}), Obj({"code": FALSE})],  # booleans: not ordered by value alone here
    [Obj(), Obj({"code": "a"})],  # the empty object
    [Obj({"code": "a"}), Obj({1: "a"})],  # a key that is not a string
    [Obj({"code": "b"}), ("a",)],  # not all objects
])
def test_the_fast_output_falls_back_where_one_member_does_not_order_a_set(members: list[Any]) -> None:
    value = Obj({"reasons": frozenset(members)})
    assert byte_identical(to_json_document(value), to_json(value))


def test_the_fast_output_refuses_what_to_json_refuses() -> None:
    for bad in (Obj({"when": datetime(2026, 1, 1)}), Obj({"reasons": frozenset({Obj({"code": "a"}), Obj({"code": "b", "x": object()})})}),
                Obj({"nested": Obj({"x": [1]})})):
        with pytest.raises(TypeError):
            to_json(bad)
        with pytest.raises(TypeError):
            to_json_document(bad)


# ----------------------------------------------------------------- the engine, both routes


def test_the_engine_answers_every_generated_request_as_the_general_route_does(engine: CompiledEngine) -> None:
    for request in GENERATED:
        assert byte_identical(engine.evaluate(request), engine.evaluate_input(request.to_input())), request.request.id


@pytest.mark.parametrize("fault, expected", [
    (RegoTypeError("count: operand 1 must be one of {array, object, set, string} but got null"), EngineError),
    (RegoConflictError("complete rules must not produce multiple outputs"), EngineError),
    (TypeError("unhashable type"), EngineError),
    (RecursionError("maximum recursion depth exceeded"), EngineError),
    (KeyError("a fault in generated code"), EngineError),
    (UNDEFINED, UndefinedDecisionError),
])
def test_the_engine_fails_alike_on_both_routes(engine: CompiledEngine, monkeypatch: pytest.MonkeyPatch,
                                               fault: Any, expected: type[Exception]) -> None:
    def entry(rego_input: Any) -> Any:
        if fault is UNDEFINED:
            return UNDEFINED
        raise fault

    # Both routes call the compiled policy's entry function.
    monkeypatch.setattr(engine.compiled, "_entry", entry)
    request = GENERATED[7]
    failures = []
    for route in (lambda: engine.evaluate(request), lambda: engine.evaluate_input(request.to_input())):
        with pytest.raises(expected) as caught:
            route()
        failures.append((type(caught.value), str(caught.value), caught.value.engine,  # type: ignore[attr-defined]
                         type(caught.value.__cause__)))
    assert failures[0] == failures[1]


def test_a_subclass_that_overrides_evaluate_input_is_honoured() -> None:
    seen: list[str] = []

    class Audited(CompiledEngine):
        def evaluate_input(self, document: dict[str, Any]) -> Any:
            seen.append(document["request"]["id"])
            return super().evaluate_input(document)

    audited = Audited(PolicySet.load())
    audited.evaluate(GENERATED[3])
    assert seen == [GENERATED[3].request.id]


def test_a_decision_from_the_facade_is_unchanged() -> None:
    """The whole facade call, both routes: the same verdict for every generated request."""
    from helpdesk_policy import HelpdeskPolicy

    with HelpdeskPolicy(engine="compiled", cache_size=0) as policy:
        engine = policy.engines[0]
        assert isinstance(engine, CompiledEngine)
        fast = [policy.decide(r) for r in GENERATED[:300]]
        # Any other document-level evaluator sends the engine down the general route.
        engine._evaluate = lambda document: engine.compiled.evaluate(document)  # type: ignore[attr-defined]
        general = [policy.decide(r) for r in GENERATED[:300]]
    for a, b in zip(fast, general):
        assert a.model_dump(mode="json", exclude={"decision_id"}) == b.model_dump(mode="json", exclude={"decision_id"})
