"""The pure-Python Rego parser against OPA's own parser (the Go oracle).

Every comparison asks OPA's ``rego.parse_module`` for the AST of the same
source and compares it with :func:`parse_module`'s after removing the
``location`` keys this parser adds; the comparison is type-strict (``1`` is
not ``1.0``, ``True`` is not ``1``), so numbers must decode from the same
JSON text OPA writes.
"""

from __future__ import annotations

import json
import random
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest

from helpdesk_policy.compiler.parser import RegoSyntaxError, parse_module
from helpdesk_policy.errors import PolicyLoadError
from helpdesk_policy.policyset import PolicySet

opa_bindings = pytest.importorskip(
    "opa_bindings", reason="OPA's Go evaluator (opa-golib-python-bindings) is the oracle for these tests"
)

PRELUDE = "package p\n\nimport rego.v1\n\n"


@pytest.fixture(scope="module")
def opa() -> Iterator[Any]:
    engine = opa_bindings.OpaEngine()
    yield engine
    engine.close()


def opa_parse(engine: Any, source: str, filename: str = "f.rego") -> dict[str, Any]:
    """OPA's AST for a module, as the Go parser returns it."""
    query = "x := rego.parse_module(" + json.dumps(filename) + ", " + json.dumps(source) + ")"
    return engine.eval_query(query)[0]["x"]


def without_locations(node: Any) -> Any:
    if isinstance(node, dict):
        return {k: without_locations(v) for k, v in node.items() if k != "location"}
    if isinstance(node, list):
        return [without_locations(v) for v in node]
    return node


def first_difference(want: Any, got: Any, path: str = "$") -> str | None:
    """Where two JSON documents differ, comparing types strictly; None if equal."""
    if type(want) is not type(got):
        return f"{path}: OPA has {type(want).__name__} {want!r:.80}, parser has {type(got).__name__} {got!r:.80}"
    if isinstance(want, dict):
        if want.keys() != got.keys():
            return f"{path}: OPA keys {sorted(want)}, parser keys {sorted(got)}"
        for key in want:
            found = first_difference(want[key], got[key], f"{path}.{key}")
            if found:
                return found
    elif isinstance(want, list):
        if len(want) != len(got):
            return f"{path}: OPA has {len(want)} items, parser has {len(got)}"
        for index, (w, g) in enumerate(zip(want, got)):
            found = first_difference(w, g, f"{path}[{index}]")
            if found:
                return found
    elif want != got:
        return f"{path}: OPA has {want!r:.80}, parser has {got!r:.80}"
    return None


def assert_same_as_opa(engine: Any, source: str, filename: str = "f.rego") -> dict[str, Any]:
    ours = parse_module(source, filename)
    difference = first_difference(opa_parse(engine, source, filename), without_locations(ours))
    assert difference is None, difference
    return ours


def stock_modules() -> dict[str, str]:
    policy_set = PolicySet.load()
    modules = dict(policy_set.modules)
    modules.update(policy_set.test_modules)
    return modules


# --- the stock policy ---------------------------------------------------------


def test_every_stock_module_parses_to_opas_ast(opa: Any) -> None:
    modules = stock_modules()
    assert len(modules) >= 28  # 14 policy modules and their tests
    for path, source in sorted(modules.items()):
        ours = parse_module(source, path)
        difference = first_difference(opa_parse(opa, source, path), without_locations(ours))
        assert difference is None, f"{path}: {difference}"


def test_every_module_of_the_edited_policy_corpus_parses_to_opas_ast(opa: Any, tmp_path: Any) -> None:
    """The corpus of edited policies (tests/policy_mutations.py): every module a mutant edits or adds."""
    from policy_mutations import MUTANTS, apply_mutant

    checked = 0
    for mutant in MUTANTS:
        directory = apply_mutant(mutant, tmp_path / mutant.name)
        for path in sorted({edit.file for edit in mutant.edits if edit.file.endswith(".rego")}):
            source = (directory / path).read_text(encoding="utf-8")
            difference = first_difference(opa_parse(opa, source, path), without_locations(parse_module(source, path)))
            assert difference is None, f"{mutant.name}: {path}: {difference}"
            checked += 1
    assert checked >= 60


def test_stock_parse_time(record_property: Any) -> None:
    modules = stock_modules()
    parse_module(PRELUDE)  # the first parse builds the tables
    timings = []
    for _ in range(3):
        started = time.perf_counter()
        for path, source in modules.items():
            parse_module(source, path)
        timings.append(time.perf_counter() - started)
    best = min(timings)
    per_module_ms = best / len(modules) * 1000
    record_property("stock_parse_ms_total", round(best * 1000, 1))
    record_property("stock_parse_ms_per_module", round(per_module_ms, 2))
    sys.stderr.write(f"\nparsed {len(modules)} stock modules in {best * 1000:.1f} ms ({per_module_ms:.2f} ms each)\n")
    assert timings  # the measurement is reported, not asserted


def _without_comments(source: str) -> str:
    kept = []
    in_string = in_comment = False
    for index, char in enumerate(source):
        if in_comment:
            if char == "\n":
                in_comment = False
                kept.append(char)
            continue
        if char == '"' and source[index - 1] != "\\":
            in_string = not in_string
        if char == "#" and not in_string:
            in_comment = True
            continue
        kept.append(char)
    return "".join(kept)


def test_newlines_anywhere_in_the_stock_modules_parse_like_opa(opa: Any) -> None:
    # A newline ends an expression only where it cannot go on: break the
    # stock modules' lines at random spaces and both parsers must agree.
    rng = random.Random(14)
    for path, source in sorted(stock_modules().items()):
        source = _without_comments(source)
        pieces = []
        in_string = False
        for index, char in enumerate(source):
            if char == '"' and source[index - 1] != "\\":
                in_string = not in_string
            if char == " " and not in_string and rng.random() < 0.3:
                char = rng.choice(["\n", "\n\t", " \n "])
            pieces.append(char)
        broken = "".join(pieces)
        assert broken != source
        ours = parse_module(broken, path)
        difference = first_difference(opa_parse(opa, broken, path), without_locations(ours))
        assert difference is None, f"{path}: {difference}"


# --- one snippet per construct ----------------------------------------------

SNIPPETS: dict[str, str] = {
    "constant_assign": "a := 1",
    "constant_unify": "a = 1",
    "boolean_rule_literal_body": "allow if input.user == \"admin\"",
    "boolean_rule_braced_body": "allow if {\n\tinput.user == \"admin\"\n\tinput.method != \"DELETE\"\n}",
    "semicolons": "allow if { x := 1; y := 2; x < y }",
    "default_value": "default p := 1",
    "default_object": "default p := {\"allowed\": false, \"reasons\": []}",
    "default_function": "default f(_) := false",
    "function_several_args": "f(x, y, z) := x + y * z",
    "function_if_body": "f(x) := y if {\n\ty := x * 2\n\ty > 1\n}",
    "function_boolean": "is_admin(user) if user.role == \"admin\"",
    "else_chain_values": "a := 1 if { input.x } else := 2 if { input.y } else := 3",
    "else_without_values": "a if { input.x } else if { input.y }",
    "else_unify": "a := \"x\" if { false } else = \"y\"",
    "function_else_chain_wildcards": "f(_, x) := 1 if { x > 1 } else := 2 if { x > 0 } else := 3",
    "partial_set": "s contains x if { some x in input.xs }",
    "partial_set_object_value": "reasons contains {\"code\": \"x\", \"level\": 2} if input.flag",
    "partial_set_no_body": "s contains \"a\"",
    "partial_object": "o[k] := v if { some k, v in input.m }",
    "multi_part_head": "p.q.r if { input.x == 1 }",
    "multi_part_head_with_var": "p.q[r] := v if { r := \"a\"; v := 1 }",
    "ground_bracket_head": "p[\"a\"] if true",
    "dotted_head_without_if": "p.q := 1",
    "some_declaration": "a := x if { some x; x := 1 }",
    "some_in": "a if { some x in [1, 2]; x > 1 }",
    "some_key_value_in": "a if { some k, v in {\"a\": 1}; k == \"a\"; v == 1 }",
    "every_value": "a if { every x in [1, 2] { x > 0 } }",
    "every_key_value": "a if { every k, v in [1] { v > 0; k >= 0 } }",
    "not": "a if { x := 1; not x == 2 }",
    "not_ref": "a if not input.denied",
    "with_as": "a if { count([1]) with input as 2 with data.x as 3 }",
    "not_with": "a if not input.x with input as {\"x\": false}",
    "array_comprehension": "a := [x | some x in [1, 2]; x > 1]",
    "set_comprehension": "a := {x | x := [1, 2][_]}",
    "object_comprehension": "a := {k: v | some k, v in {\"a\": 1}}",
    "nested_comprehensions": "a := [x | x := {y | y := [z | z := 1][_]}[_]]",
    "some_inside_comprehension": "a := {r |\n\tsome c in [[1], [2]]\n\tsome r in c\n}",
    "comprehension_precedence_over_or": "a := {x | x := input.y}",
    "literals": "a := [null, true, false, 1, \"s\", `raw`]",
    "empty_collections": "a := [set(), {}, []]",
    "set_literal_sorted_deduplicated": "a := {\"b\", 1, null, true, 1, [1], {\"x\": 1}, \"a\", 0.5, -3}",
    "object_literal_sorted": "a := {\"b\": 1, \"a\": {\"d\": 1, \"c\": 2}, 1: \"n\"}",
    "trailing_commas": "a := {\"a\": [1, 2,], \"b\": {3,}, \"c\": f(1,),}",
    "multi_line_set_and_call": "a := {\n\t1,\n\t2,\n}\n\nb := concat(\n\t\"-\",\n\t[\"x\", \"y\"],\n)",
    "newline_continues_an_unfinished_expression": "a if {\n\tx := 1 +\n\t\t2\n\ty := [1,\n\t\t2]\n\tx < 4\n}",
    "newline_before_operator_continues": "a if {\n\tx := 1\n\t- 2\n}",
    "newline_before_bracket_separates": "a if {\n\tx := input.y\n\t[1] == [1]\n}",
    "refs": "a := input.x[y].z[\"w\"][1] if y := 1",
    "ref_on_call_result": "a := f(1).x[0]",
    "ref_on_collection": "a := [[1, 2][0], {1}[1]]",
    "dotted_calls": "a if { object.get({}, \"a\", 1) == 1; regex.match(`^a`, \"abc\") }",
    "data_ref": "a := data.p.b",
    "keyword_in_ref": "a if input.x.contains\nb if input.in[0]",
    "contains_builtin_call": "a if contains(\"abc\", \"b\")",
    "wildcards": "a if { _ = input.x[_] }",
    "precedence": "a := x if { x := 1 | 2 & 3 == 4 + 5 * 6 - 7 / 8 % 9 }",
    "relations_chain_left": "a := x if { x := 1 < 2 == true }",
    "in_operator": "a if { 1 in [1]; 1, 2 in [1]; x := 1 in [1] }",
    "in_inside_list": "a := [1, 2 in [3]]",
    "unary_minus": "a := x if { x := -1; y := - 2; z := -input.x; w := 3 - -1; v := [1, -2] }",
    "unary_minus_call": "a := -f(1)",
    "negative_zero": "a := -0",
    "numbers": "a := [0.5, 1e3, 1E+3, 1.5e-3, 10000000000000000000000, 1.0, 0]",
    "string_escapes": "a := \"a\\u00e9\\n\\t\\\"\\\\\\/\\u0041 \\ud83d\\ude00\"",
    "raw_string_keeps_backslashes": "a := `raw\\n \\u0041`",
    "unicode_strings": "a := \"é😀 ünïcödé\"",
    "comments": "# leading\na := 1 # trailing ü\n#\nb := 2",
    "imports": "import data.x.y as z\nimport input.q\nimport data.foo[\"bar\"]\n\na := z",
    "parenthesised": "a := (1 + 2) * 3",
    "chained_bodies": "p if { input.a } { input.b }",
    "empty_object_body": "p if {}",
    "unify_array": "a if { [x, y] := [1, 2] }",
}


@pytest.mark.parametrize("name", sorted(SNIPPETS))
def test_snippet_parses_like_opa(opa: Any, name: str) -> None:
    assert len(SNIPPETS) >= 40
    assert_same_as_opa(opa, PRELUDE + SNIPPETS[name])


def test_numbers_decode_from_opas_json_text(opa: Any) -> None:
    # OPA writes a number as the literal's text; its JSON decodes to int or float
    ours = assert_same_as_opa(opa, PRELUDE + "a := [1e3, 1.0, 10, -0, 0.5e1]")
    values = [term["value"] for term in ours["rules"][0]["head"]["value"]["value"]]
    assert values == [1000.0, 1.0, 10, 0, 5.0]
    assert [type(v) for v in values] == [float, float, int, int, float]


# --- locations ----------------------------------------------------------------

LOCATED = """package p

import rego.v1

# a comment
allow if {
\tsome x in input.xs
\tnot x == "a"
}

f(a, b) := a + b

reasons contains {"code": c} if c := "x"

v := 1 if { false } else := 2
"""


def test_locations_point_at_the_source() -> None:
    module = parse_module(LOCATED, "policy.rego")
    allow, function, reasons, value = module["rules"]

    def at(node: dict[str, Any]) -> tuple[str, int, int]:
        location = node["location"]
        return (location["file"], location["row"], location["col"])

    assert at(allow) == ("policy.rego", 6, 1)
    assert at(allow["head"]) == ("policy.rego", 6, 1)
    some_expr, not_expr = allow["body"]
    assert at(some_expr) == ("policy.rego", 7, 2)
    member = some_expr["terms"]["symbols"][0]
    assert at(member["value"][1]) == ("policy.rego", 7, 7)  # x
    assert at(member["value"][2]) == ("policy.rego", 7, 12)  # input.xs
    assert at(not_expr) == ("policy.rego", 8, 2)
    assert at(not_expr["terms"][0]) == ("policy.rego", 8, 8)  # the == operator
    assert at(not_expr["terms"][2]) == ("policy.rego", 8, 11)  # "a"
    assert at(function["head"]["args"][1]) == ("policy.rego", 11, 6)
    plus = function["head"]["value"]
    assert at(plus) == ("policy.rego", 11, 12)
    assert at(plus["value"][0]) == ("policy.rego", 11, 14)
    assert at(reasons["head"]["key"]) == ("policy.rego", 13, 18)
    assert at(reasons["body"][0]) == ("policy.rego", 13, 33)
    assert at(value["else"]) == ("policy.rego", 15, 21)
    assert at(value["else"]["head"]["value"]) == ("policy.rego", 15, 29)
    assert module["comments"] == [
        {"Location": {"file": "policy.rego", "row": 5, "col": 1}, "Text": "IGEgY29tbWVudA=="}
    ]


def test_locations_on_every_rule_head_expression_and_term() -> None:
    missing: list[str] = []

    def located(node: dict[str, Any], path: str) -> None:
        location = node.get("location")
        if not (isinstance(location, dict) and set(location) == {"file", "row", "col"}):
            missing.append(path)

    def term(node: dict[str, Any], path: str) -> None:
        located(node, path)
        kind, value = node["type"], node["value"]
        if kind in ("ref", "array", "set", "call"):
            for index, item in enumerate(value):
                term(item, f"{path}[{index}]")
        elif kind == "object":
            for index, (key, item) in enumerate(value):
                term(key, f"{path}[{index}].key")
                term(item, f"{path}[{index}].value")
        elif kind.endswith("comprehension"):
            for part in ("term", "key", "value"):
                if part in value:
                    term(value[part], f"{path}.{part}")
            body(value["body"], f"{path}.body")

    def body(exprs: list[dict[str, Any]], path: str) -> None:
        for index, expr in enumerate(exprs):
            where = f"{path}[{index}]"
            located(expr, where)
            terms = expr["terms"]
            if isinstance(terms, list):
                for position, item in enumerate(terms):
                    term(item, f"{where}.terms[{position}]")
            elif "type" in terms:
                term(terms, f"{where}.terms")
            elif "symbols" in terms:
                for position, item in enumerate(terms["symbols"]):
                    term(item, f"{where}.symbols[{position}]")
            else:  # every
                for part in ("key", "value", "domain"):
                    if terms[part] is not None:
                        term(terms[part], f"{where}.{part}")
                body(terms["body"], f"{where}.body")
            for position, modifier in enumerate(expr.get("with", ())):
                term(modifier["target"], f"{where}.with[{position}].target")
                term(modifier["value"], f"{where}.with[{position}].value")

    def rule(node: dict[str, Any], path: str) -> None:
        located(node, path)
        head = node["head"]
        located(head, f"{path}.head")
        for index, item in enumerate(head["ref"] + head.get("args", [])):
            term(item, f"{path}.head.ref_or_args[{index}]")
        for part in ("key", "value"):
            if part in head:
                term(head[part], f"{path}.head.{part}")
        body(node["body"], f"{path}.body")
        if "else" in node:
            rule(node["else"], f"{path}.else")

    sources = dict(stock_modules())
    sources.update({name: PRELUDE + snippet for name, snippet in SNIPPETS.items()})
    rules = 0
    for name, source in sources.items():
        for index, node in enumerate(parse_module(source, name).get("rules", [])):
            rule(node, f"{name}: rules[{index}]")
            rules += 1
    assert rules > 500
    assert missing == []


# --- errors -------------------------------------------------------------------

ERRORS = [
    ("missing_if", "p { true }", 5, 3, "`if` keyword is required"),
    ("unclosed_body", "p if {\n\tx := 1\n", 7, 1, "end of file"),
    ("bad_operator_sequence", "p := 1 +* 2", 5, 9, "'*'"),
    ("two_terms_on_one_line", "p if { x := 1 y := 2 }", 5, 15, "name 'y'"),
    ("illegal_character", "p := 1 $ 2", 5, 8, "illegal '$' character"),
    ("unterminated_string", "p := \"abc", 5, 6, "non-terminated string"),
    ("bad_escape", "p := \"\\q\"", 5, 6, "illegal escape"),
    ("leading_zero", "p := 007", 5, 6, "leading zero"),
    ("default_with_var", "default p := x", 5, 1, "illegal default rule (value cannot contain var)"),
    ("else_on_multi_value", "p[x] := 1 if { x := 1 } else := 2", 5, 25, "else keyword cannot be used"),
    ("negated_some", "p if { not some x in [1] }", 5, 12, "keyword 'some'"),
    ("some_non_var", "p if { some 1 }", 5, 13, "expected var"),
    ("every_non_var", "p if { every 1 in [1] { true } }", 5, 14, "expected value to be a variable"),
    ("import_bad_root", "import foo.bar", 5, 8, "must begin with one of"),
    ("trailing_semicolon", "p if { x := 1; }", 5, 16, "'}'"),
    ("contains_function", "f(x) contains 1 if true", 5, 6, "contains keyword"),
    ("with_on_literal_target", "p if x with 1 as 2", 5, 13, "with target"),
    ("string_ref_head", "p := \"ab\"[0]", 5, 10, "'['"),
]


@pytest.mark.parametrize(("name", "body", "row", "col", "what"), ERRORS, ids=[e[0] for e in ERRORS])
def test_syntax_error_names_file_row_col(opa: Any, name: str, body: str, row: int, col: int, what: str) -> None:
    source = PRELUDE + body
    with pytest.raises(opa_bindings.OpaError):  # OPA refuses it too
        opa_parse(opa, source)
    with pytest.raises(RegoSyntaxError) as raised:
        parse_module(source, "bad.rego")
    error = raised.value
    assert isinstance(error, PolicyLoadError)
    assert str(error).startswith(f"bad.rego:{row}:{col}: "), str(error)
    assert what in str(error)
    assert (error.filename, error.row, error.col) == ("bad.rego", row, col)


def test_error_row_matches_opas_row(opa: Any) -> None:
    for _, body, row, _, _ in ERRORS:
        source = PRELUDE + body
        with pytest.raises(opa_bindings.OpaError) as refused:
            opa_parse(opa, source)
        rows = {int(part.split(":")[0]) for part in str(refused.value).split("f.rego:")[1:] if part[:1].isdigit()}
        if body.endswith("\n") or not rows:
            continue  # OPA reports an unclosed body at the `{`, this parser at the end of file
        assert row in rows, (body, rows)


def test_what_opa_refuses_is_refused(opa: Any) -> None:
    refused_by_opa = [
        "p contains x { x := 1 }",
        "a := - \"s\"",
        "a := -[1]",
        "a := --1",
        "a := f (1)",
        "a := f(1)(2)",
        "a if { false } else { true }",
        "import data.x.in",
        "default f(1) := 1",
        "a if { x := 1;; y := 2 }",
    ]
    for body in refused_by_opa:
        source = PRELUDE + body
        with pytest.raises(opa_bindings.OpaError):
            opa_parse(opa, source)
        with pytest.raises(RegoSyntaxError):
            parse_module(source)


# --- packaging ------------------------------------------------------------------


def test_import_does_not_build_the_parser() -> None:
    code = (
        "import sys\n"
        "import helpdesk_policy.compiler.parser as parser\n"
        "assert parser._tables is None\n"
        "assert 'lark' not in sys.modules\n"
        "parser.parse_module('package p\\n')\n"
        "assert parser._tables is not None\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_tables_are_built_once() -> None:
    from helpdesk_policy.compiler import parser

    parse_module(PRELUDE + "a := 1")
    tables = parser._tables
    parse_module(PRELUDE + "b := 2")
    assert parser._tables is tables
