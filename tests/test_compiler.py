"""The Rego-to-Python compiler (issue 14), proven equal to OPA's Go evaluator.

Every semantic check compares the compiled policy with OPA's own evaluator
(``opa_bindings``) on the same modules, data and input: the same value, the
same undefined, an error where OPA errors.
"""

from __future__ import annotations

import copy
import json
import random
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from helpdesk_policy.ci.generate import generate_requests
from helpdesk_policy.compiler import builtins as compiler_builtins
from helpdesk_policy.compiler.codegen import CompiledPolicy, CompileRefused, Refusal, analyze, compile_policy
from helpdesk_policy.errors import EngineError, PolicyLoadError, UndefinedDecisionError
from helpdesk_policy.policyset import PolicySet

opa_bindings = pytest.importorskip("opa_bindings")
from opa_bindings import OpaEngine, OpaError, OpaUndefinedError  # noqa: E402

from compiler_cases import BUILTIN_CASES, CONSTRUCT_CASES  # noqa: E402

_PARSER_ENGINE: list[Any] = []


def _ast_of(name: str, source: str) -> dict[str, Any]:
    """The module's AST: from the pure-Python parser when it exists, else from OPA."""
    try:
        from helpdesk_policy.compiler.parser import parse_module  # type: ignore[import-not-found]
    except ImportError:
        parse_module = None
    if parse_module is not None:
        return parse_module(source, name)
    if not _PARSER_ENGINE:
        _PARSER_ENGINE.append(OpaEngine())
    result = _PARSER_ENGINE[0].eval_query(f"x := rego.parse_module({json.dumps(name)}, {json.dumps(source)})")
    return result[0]["x"]


def _outcome_opa(engine: Any, path: str, doc: Any) -> tuple[Any, ...]:
    try:
        return ("value", engine.eval_document(path, doc))
    except OpaUndefinedError:
        return ("undefined",)
    except OpaError:
        return ("error",)


def _outcome_compiled(policy: CompiledPolicy, doc: Any) -> tuple[Any, ...]:
    try:
        return ("value", policy.evaluate(doc))
    except UndefinedDecisionError:
        return ("undefined",)
    except EngineError:
        return ("error",)


def _same(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    # Compare JSON texts so that key order and bool-vs-int differences count.
    return a[0] == b[0] and json.dumps(a[1:], sort_keys=False) == json.dumps(b[1:], sort_keys=False)


class _StockOracle:
    """OPA's evaluator loaded with the stock modules and some data."""

    def __init__(self, modules: dict[str, str], data: dict[str, Any]) -> None:
        self.engine = OpaEngine()
        for name, source in modules.items():
            self.engine.add_policy(name, source)
        for key, doc in data["helpdesk"].items():
            self.engine.add_data(doc, path=f"helpdesk.{key}")

    def outcome(self, doc: Any) -> tuple[Any, ...]:
        return _outcome_opa(self.engine, "helpdesk.decision", doc)

    def close(self) -> None:
        self.engine.close()


@pytest.fixture(scope="module")
def stock() -> PolicySet:
    return PolicySet.load()


@pytest.fixture(scope="module")
def stock_asts(stock: PolicySet) -> dict[str, dict[str, Any]]:
    return {name: _ast_of(name, source) for name, source in stock.modules.items()}


@pytest.fixture(scope="module")
def stock_compiled(stock: PolicySet, stock_asts: dict[str, dict[str, Any]]) -> CompiledPolicy:
    return compile_policy(stock_asts, data=stock.data())


@pytest.fixture(scope="module")
def stock_oracle(stock: PolicySet):
    oracle = _StockOracle(stock.modules, stock.data())
    yield oracle
    oracle.close()


def _mismatches(policy: CompiledPolicy, oracle: _StockOracle, inputs: list[Any]) -> list[tuple[Any, Any, Any]]:
    found = []
    for doc in inputs:
        expected = oracle.outcome(doc)
        got = _outcome_compiled(policy, doc)
        if not _same(expected, got):
            found.append((doc, expected, got))
    return found


# --- priority 1: the stock policy equals OPA ---------------------------------------------


def test_stock_policy_equals_opa_on_generated_requests(stock_compiled: CompiledPolicy, stock_oracle: _StockOracle) -> None:
    inputs = [r.to_input() for r in generate_requests(2000, seed=1)]
    bad = _mismatches(stock_compiled, stock_oracle, inputs)
    assert not bad, f"{len(bad)} of {len(inputs)} differ; first: {bad[0]}"
    assert any(_outcome_compiled(stock_compiled, d)[0] == "value" for d in inputs[:5])


def _random_config(base: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    data = copy.deepcopy(base)
    config = data["helpdesk"]["config"]
    for key, value in list(config.items()):
        if isinstance(value, bool):
            continue
        if isinstance(value, int):
            config[key] = max(0, value + rng.choice([-2, -1, 0, 1, 2]))
        elif isinstance(value, list) and value and all(isinstance(v, str) for v in value):
            if rng.random() < 0.5:
                config[key] = rng.sample(value, rng.randint(0, len(value)))
    return data


def test_stock_policy_equals_opa_under_random_configs(stock: PolicySet, stock_asts: dict[str, Any]) -> None:
    rng = random.Random(14)
    inputs = [r.to_input() for r in generate_requests(120, seed=7)]
    for _ in range(6):
        data = _random_config(stock.data(), rng)
        policy = compile_policy(stock_asts, data=data)
        oracle = _StockOracle(stock.modules, data)
        try:
            bad = _mismatches(policy, oracle, inputs)
        finally:
            oracle.close()
        assert not bad, f"config {data['helpdesk']['config']}: {len(bad)} differ; first: {bad[0]}"


_WRONG_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-3, 3), st.floats(-2.5, 1e7, allow_nan=False),
                          st.text(max_size=3), st.lists(st.integers(0, 2), max_size=2), st.just({"k": 1}))
_FUZZ_BASE = [r.to_input() for r in generate_requests(60, seed=3)]


def _paths(doc: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = []
    if isinstance(doc, dict):
        for key, value in doc.items():
            found.append(prefix + (key,))
            found.extend(_paths(value, prefix + (key,)))
    return found


@st.composite
def _fuzzed_inputs(draw: Any) -> Any:
    doc = copy.deepcopy(draw(st.sampled_from(_FUZZ_BASE)))
    paths = _paths(doc)
    for _ in range(draw(st.integers(1, 4))):
        path = draw(st.sampled_from(paths))
        parent = doc
        for key in path[:-1]:
            parent = parent.get(key) if isinstance(parent, dict) else None
        if not isinstance(parent, dict) or path[-1] not in parent:
            continue
        action = draw(st.sampled_from(["drop", "null", "wrong"]))
        if action == "drop":
            del parent[path[-1]]
        elif action == "null":
            parent[path[-1]] = None
        else:
            parent[path[-1]] = draw(_WRONG_VALUES)
    return doc


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(doc=_fuzzed_inputs())
def test_stock_policy_equals_opa_on_fuzzed_inputs(doc: Any, stock_compiled: CompiledPolicy, stock_oracle: _StockOracle) -> None:
    expected = stock_oracle.outcome(doc)
    got = _outcome_compiled(stock_compiled, doc)
    assert _same(expected, got), f"OPA {expected!r:.500}\ncompiled {got!r:.500}"


def test_fuzzing_reaches_errors_and_undefined(stock_compiled: CompiledPolicy) -> None:
    # The fuzz above is only meaningful if it reaches OPA's error and undefined paths.
    rng = random.Random(5)
    kinds = set()
    for doc in _FUZZ_BASE:
        for field, value in (("target", {"owners": None, "type": "service"}), ("request", None), ("actor", 3)):
            mutated = copy.deepcopy(doc)
            if isinstance(value, dict) and isinstance(mutated.get(field), dict):
                mutated[field].update(value)
            else:
                mutated[field] = value
            kinds.add(_outcome_compiled(stock_compiled, mutated)[0])
        rng.random()
    assert {"value", "error"} <= kinds


def test_harness_detects_a_mutated_policy(stock: PolicySet, stock_oracle: _StockOracle) -> None:
    source = stock.modules["common.rego"] if "common.rego" in stock.modules else None
    name = next(n for n in stock.modules if n.endswith("common.rego"))
    source = stock.modules[name]
    target = "auth_rank[input.actor.auth_strength] >= auth_rank[cfg.min_auth_strength]"
    assert target in source
    mutated = dict(stock.modules)
    mutated[name] = source.replace(target, target.replace(">=", ">"), 1)
    asts = {n: _ast_of(n, s) for n, s in mutated.items()}
    policy = compile_policy(asts, data=stock.data())
    inputs = [r.to_input() for r in generate_requests(300, seed=1)]
    assert _mismatches(policy, stock_oracle, inputs), "the mutation went unnoticed"


def test_generated_source_is_readable(stock_compiled: CompiledPolicy) -> None:
    source = stock_compiled.source
    assert "def r_helpdesk_decision(" in source
    assert re.search(r"# data\.helpdesk\.common\.strong_auth \(complete rule\) from \S*common\.rego", source)
    assert "helpdesk.common.strong_auth" in stock_compiled.rules
    compile(source, "<check>", "exec")


# --- priority 2: refusals ------------------------------------------------------------


def _module(rules: str, name: str = "p.rego", package: str = "p") -> dict[str, dict[str, Any]]:
    return {name: _ast_of(name, f"package {package}\nimport rego.v1\n{rules}\n")}


@pytest.mark.parametrize(("rules", "construct"), [
    ("x if { input.a with input.a as 1 }", "with"),
    ("x := frobnicate(input.a)", "unknown builtin"),
    ("x := time.now_ns()", "non-deterministic builtin"),
    ('x := http.send({"method": "get", "url": "http://x"})', "non-deterministic builtin"),
    ("x := rand.intn(\"a\", 3)", "non-deterministic builtin"),
    ("x := uuid.rfc4122(\"a\")", "non-deterministic builtin"),
    ("x := opa.runtime()", "non-deterministic builtin"),
    ("x := net.cidr_contains(\"10.0.0.0/8\", input.ip)", "non-deterministic builtin"),
    ('x if regex.match(`a(?=b)`, input.s)', "regex"),
    ('x if regex.match(`(a)\\1`, input.s)', "regex"),
    ("x if { {\"a\": y} = input.o; y > 1 }", "unification"),
])
def test_refusal_names_construct(rules: str, construct: str) -> None:
    with pytest.raises(CompileRefused) as caught:
        compile_policy(_module(rules), entrypoint="p.x")
    refusals = caught.value.refusals
    assert [r.construct for r in refusals] == [construct]
    assert isinstance(caught.value, PolicyLoadError)
    assert str(refusals[0]).startswith("p.rego:")
    assert f": {construct}: " in str(caught.value)


def test_refusals_list_every_construct_with_lines() -> None:
    source = "package p\nimport rego.v1\n\nx := y if {\n  y := time.now_ns()\n}\n\nz if { input.a with input.a as 1 }\n\nx2 := frobnicate(1)\n"
    ast = _ast_of("pol.rego", source)
    # The pure-Python parser gives locations; OPA's parse_module does not, so add
    # them here the way the parser does, to check they are reported.
    lines = {"x": 4, "z": 8, "x2": 10}
    for rule in ast["rules"]:
        rule["location"] = {"file": "pol.rego", "row": lines[rule["head"]["name"]], "col": 1}
    report = analyze({"pol.rego": ast})
    assert not report.compiles
    # The rule's line, or the expression's own line when the parser gives one (line 5).
    found = {(r.file, 4 if r.line == 5 else r.line, r.construct) for r in report.refusals}
    assert found == {("pol.rego", 4, "non-deterministic builtin"), ("pol.rego", 8, "with"), ("pol.rego", 10, "unknown builtin")}
    by_rule = {s.name: s for s in report.rules}
    assert not by_rule["p.x"].compiles and not by_rule["p.z"].compiles
    with pytest.raises(CompileRefused) as caught:
        compile_policy({"pol.rego": ast}, entrypoint="p.x")
    assert re.search(r"pol\.rego:[45]: non-deterministic builtin: time\.now_ns", str(caught.value))


def test_refusal_without_location_names_the_file() -> None:
    with pytest.raises(CompileRefused) as caught:
        compile_policy(_module("x := time.now_ns()", name="mod.rego"), entrypoint="p.x")
    assert caught.value.refusals[0].file == "mod.rego"


def test_analyze_stock_policy_compiles_everything(stock_asts: dict[str, Any]) -> None:
    report = analyze(stock_asts)
    assert report.compiles, report.refusals
    names = {s.name for s in report.rules}
    assert {"helpdesk.decision", "helpdesk.common.relationship", "helpdesk.risk.reasons"} <= names
    assert all(s.compiles for s in report.rules)


def test_unreachable_refused_rule_does_not_block_compilation() -> None:
    policy = compile_policy(_module("x := 1\ny := time.now_ns()"), entrypoint="p.x")
    assert policy.evaluate({}) == 1
    assert Refusal  # the refusal type is public


def test_refused_regex_at_run_time_is_an_error() -> None:
    policy = compile_policy(_module("x := regex.match(input.p, input.s)"), entrypoint="p.x")
    with pytest.raises(EngineError):
        policy.evaluate({"p": "a(?=b)", "s": "ab"})
    assert policy.evaluate({"p": "^a", "s": "ab"}) is True


# --- priority 3 and 4: constructs and builtins against OPA ---------------------------------

_SNIPPET_DATA = {"d": {"table": {"a": 1, "b": [2]}, "fmt": {"a": "%v is %v", "b": "n=%v"}}}


def _check_snippet(rules: str, inputs: list[Any], extra_modules: dict[str, str] | None = None) -> None:
    modules = {"p.rego": f"package p\nimport rego.v1\n{rules}\n"}
    modules.update(extra_modules or {})
    engine = OpaEngine()
    try:
        for name, source in modules.items():
            engine.add_policy(name, source)
        engine.add_data(_SNIPPET_DATA["d"], path="d")
        try:
            policy = compile_policy({n: _ast_of(n, s) for n, s in modules.items()}, data=_SNIPPET_DATA, entrypoint="p.x")
        except CompileRefused as exc:  # pragma: no cover - reported as a failure below
            pytest.fail(f"refused: {exc}")
        for doc in inputs:
            expected = _outcome_opa(engine, "p.x", doc)
            got = _outcome_compiled(policy, doc)
            assert _same(expected, got), f"input {doc}: OPA {expected} compiled {got}"
    finally:
        engine.close()


@pytest.mark.parametrize(("rules", "inputs"), [pytest.param(r, i, id=n) for n, r, i in CONSTRUCT_CASES if r is not None])
def test_construct_matches_opa(rules: str, inputs: list[Any]) -> None:
    _check_snippet(rules, inputs)


def test_cross_package_import_matches_opa() -> None:
    lib = "package lib.util\nimport rego.v1\nlimit := 3\ndouble(n) := n * 2\nbig contains v if { some v in input.l; v > limit }\n"
    rules = "import data.lib.util\nx := [util.double(input.a), util.big, data.lib.util.limit, util.big[4]]"
    _check_snippet(rules, [{"a": 1, "l": [1, 4, 5]}, {"a": 2, "l": [1]}], {"lib.rego": lib})


@pytest.mark.parametrize(("rules", "inputs"), [pytest.param(r, i, id=n) for n, r, i in BUILTIN_CASES])
def test_builtin_matches_opa(rules: str, inputs: list[Any]) -> None:
    _check_snippet(rules, inputs)


def test_opa_version_is_the_oracles() -> None:
    library = Path(opa_bindings.__file__).parent / "libopabridge.so"
    assert f"open-policy-agent/opa@v{compiler_builtins.OPA_VERSION}/".encode() in library.read_bytes()


def test_every_builtin_name_is_deterministic() -> None:
    assert not [name for name in compiler_builtins.BUILTINS if compiler_builtins.is_non_deterministic(name)]


# --- the speed specialisations: each checked against the general path it replaces ------------

from helpdesk_policy.compiler import values as compiler_values  # noqa: E402

_REGO_SCALARS = st.one_of(st.none(), st.sampled_from([compiler_values.TRUE, compiler_values.FALSE]),
                          st.integers(-3, 3), st.sampled_from([1.0, 2.5, -0.5]), st.sampled_from(["", "a", "b", "ab"]))
_REGO_VALUES = st.recursive(
    _REGO_SCALARS,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3).map(tuple),
        st.frozensets(inner, max_size=3),
        st.dictionaries(st.one_of(st.sampled_from(["a", "b", "code"]), inner), inner, max_size=3).map(compiler_values.Obj),
    ),
    max_leaves=8,
)


@settings(max_examples=300, deadline=None)
@given(_REGO_VALUES, _REGO_VALUES)
def test_sort_key_orders_as_compare_does(a: Any, b: Any) -> None:
    key_a, key_b = compiler_values.sort_key(a), compiler_values.sort_key(b)
    assert (key_a > key_b) - (key_a < key_b) == compiler_values.compare(a, b)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.dictionaries(st.sampled_from(["code", "level", "z"]),
                                st.one_of(st.sampled_from(["a", "b", "c"]), st.integers(0, 2), st.just(compiler_values.TRUE)),
                                max_size=3).map(compiler_values.Obj), min_size=2, max_size=5))
def test_sorting_objects_by_first_member_is_opas_order(objects: list[Any]) -> None:
    expected = sorted(objects, key=compiler_values.sort_key)
    got = compiler_values.sorted_values(objects)
    assert [json.dumps(compiler_values.to_json(o)) for o in got] == [json.dumps(compiler_values.to_json(o)) for o in expected]


def test_fast_object_sort_applies_only_where_the_first_member_decides() -> None:
    obj = compiler_values.Obj
    distinct = [obj({"code": "b", "x": 1}), obj({"code": "a"})]
    assert compiler_values._sort_objects_by_first_member(list(distinct))
    for undecided in ([obj({"code": "a", "y": 2}), obj({"code": "a", "y": 1})],  # a tie
                      [obj({"code": "a"}), obj({"a": 0})],  # different first keys
                      [obj({"code": 1}), obj({"code": "a"})],  # mixed types
                      [obj({1: "a"}), obj({"code": "a"})]):  # a key that is not a string
        assert not compiler_values._sort_objects_by_first_member(list(undecided))


def test_loops_sort_only_where_order_is_observable() -> None:
    source = compile_policy(_module(
        "s := {v | some v in input.l}\n"       # collects into a set: unsorted
        "a := [v | some v in input.l]\n"       # builds an array: OPA's order
        "f if { some v in input.l; v > 1 }\n"  # stops at the first solution: OPA's order
        "x := [s, a, f]"), entrypoint="p.x").source
    def loop_of(rule: str) -> str:
        body = source.split(f"def r_p_{rule}(", 1)[1].split("\ndef ", 1)[0]
        return re.search(r"for \w+ in (\w+)\(", body).group(1)  # type: ignore[union-attr]
    assert loop_of("s") == "iter_values_any"
    assert loop_of("a") == "iter_values"
    assert loop_of("f") == "iter_values"


def test_input_paths_are_looked_up_once_per_evaluation(stock_compiled: CompiledPolicy) -> None:
    source = stock_compiled.source
    evaluate = source.split("def evaluate(i):", 1)[1]
    rules = source.split("def evaluate(i):", 1)[0]
    assert "dot(dot(i" not in rules and "i.get(" not in rules
    # Looked up under one test of the parent's type, with its bound get, or by dot() for a non-object.
    assert re.search(r"if type\(i\) is Obj:\n        get = i\.get\n(        p\d+ = get\('\w+', U\)\n)*"
                     r"        p\d+ = get\('request', U\)", evaluate)
    assert re.search(r"p\d+ = dot\(i, 'request'\)", evaluate)



# --- memoised pure functions and kept object hashes ------------------------------------------


def _memoised(policy: CompiledPolicy) -> set[str]:
    return set(re.findall(r"^# data\.([\w.]+) reads no input: memoised", policy.source, re.M))


def test_only_functions_that_never_read_input_are_memoised(stock_compiled: CompiledPolicy) -> None:
    policy = compile_policy(_module(
        "t := {\"a\": 1}\n"
        "pure(k) := sprintf(\"%v=%v\", [k, t[k]])\n"              # data and arguments only
        "reads(k) := concat(\",\", [k, input.s])\n"                # reads input itself
        "through(k) := pure(k) if { helper }\nhelper if input.f\n"  # reads input through a rule
        "calls_reads(k) := reads(k)\n"                              # ... through a function
        "x := [pure(input.k), reads(input.k), through(input.k), calls_reads(input.k)]"), entrypoint="p.x")
    assert _memoised(policy) == {"p.pure"}
    assert {"helpdesk.common.reason", "helpdesk.common.code_of"} <= _memoised(stock_compiled)
    assert not {"helpdesk.document", "helpdesk.obligations.for_level"} & _memoised(stock_compiled)


def test_memoised_function_keeps_values_not_errors() -> None:
    policy = compile_policy(_module("f(a, b) := a / b\nx := f(input.a, input.b)"), entrypoint="p.x")
    assert _memoised(policy) == {"p.f"}
    memo = policy._entry.__globals__["MEMO_r_p_f"]
    for _ in range(2):
        # Each call with a zero divisor errors anew: an error is never kept.
        with pytest.raises(EngineError):
            policy.evaluate({"a": 1, "b": 0})
        assert not memo
    assert policy.evaluate({"a": 6, "b": 3}) == 2
    assert memo == {(6, 3): 2}
    assert policy.evaluate({"a": 6, "b": 3}) == 2
    # Floats go around the memo (6.0 == 6, but OPA prints each as written); so do sets.
    assert policy.evaluate({"a": 6.0, "b": 3}) == 2
    assert memo == {(6, 3): 2}


def test_memo_keys_tell_true_from_1_and_1_from_1_0() -> None:
    policy = compile_policy(_module("f(v) := sprintf(\"%v %v\", [v, [v]])\nx := f(input.v)"), entrypoint="p.x")
    assert _memoised(policy) == {"p.f"}
    assert [policy.evaluate({"v": v}) for v in (1, True, 1.0, 1, True, [1], [True], [1.0])] == [
        "1 [1]", "true [true]", "1 [1.0]", "1 [1]", "true [true]", "[1] [[1]]", "[true] [[true]]", "[1.0] [[1.0]]"]


def test_memo_is_bounded() -> None:
    from helpdesk_policy.compiler import runtime

    policy = compile_policy(_module("f(v) := concat(\"-\", [v, v])\nx := f(input.v)"), entrypoint="p.x")
    memo = policy._entry.__globals__["MEMO_r_p_f"]
    for n in range(runtime.MEMO_LIMIT + 10):
        assert policy.evaluate({"v": str(n)}) == f"{n}-{n}"
    assert 0 < len(memo) <= runtime.MEMO_LIMIT


def test_memo_key_part_accepts_only_float_free_small_arrays() -> None:
    from helpdesk_policy.compiler.runtime import memo_key_part

    obj, true = compiler_values.Obj, compiler_values.TRUE
    assert memo_key_part(()) and memo_key_part(("a", 1, true, None, ("b", (2,))))
    for refused in (1.0, ("a", 1.0), (("a", (0.5,)),), tuple(range(40)), frozenset({"a"}), obj({"a": 1}), ("a", obj())):
        assert not memo_key_part(refused), refused


def test_object_hash_is_kept_and_left_behind_by_pickle() -> None:
    import pickle

    reason = compiler_values.Obj({"code": "a", "refs": ("x",), "n": 1})
    assert hash(reason) == hash(frozenset(reason.items())) == reason._hash
    assert hash(compiler_values.Obj(reason)) == hash(reason)  # equal objects, equal hashes
    assert {reason, compiler_values.Obj({"n": 1, "refs": ("x",), "code": "a"})} == {reason}
    copied = pickle.loads(pickle.dumps(reason))
    assert copied == reason and type(copied) is compiler_values.Obj and "_hash" not in vars(copied)
