"""Refusing hostile Rego before it runs: broken sources, recursion, non-UTF-8 files, compile errors.

The static check (:mod:`helpdesk_policy.regocheck`) must accept every stock
module and every rule family Rego allows, and refuse recursion as OPA's
compiler does (checked against OPA's own Go evaluator on generated rule
graphs). The CLI reports all of it as ``error: …`` with exit status 2,
naming file and line, never a traceback.
"""

from __future__ import annotations

import doctest
import importlib.util
import shutil
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given
from hypothesis import strategies as st

from helpdesk_policy import regocheck
from helpdesk_policy.cli import main
from helpdesk_policy.errors import PolicyLoadError
from helpdesk_policy.policyset import PolicySet
from helpdesk_policy.resources import stock_policy_dir
from helpdesk_policy.regocheck import check_modules, find_problems

ROOT = Path(__file__).resolve().parent.parent
REQUEST = ROOT / "examples" / "requests" / "02-phone-mfa-reset-admin.json"
HAS_OPA = importlib.util.find_spec("opa_bindings") is not None
HAS_REGOPY = importlib.util.find_spec("regopy") is not None
needs_opa = pytest.mark.skipif(not HAS_OPA, reason="OPA's Go bindings are not installed")
needs_regopy = pytest.mark.skipif(not HAS_REGOPY, reason="regopy is not installed")


def _problems(**modules: str) -> list[str]:
    return [str(p) for p in find_problems({f"{name}.rego": src for name, src in modules.items()})]


def test_doctests() -> None:
    result = doctest.testmod(regocheck, optionflags=doctest.ELLIPSIS)
    assert result.attempted and not result.failed


def test_every_stock_module_passes() -> None:
    stock = PolicySet.load()
    assert find_problems({**stock.modules, **stock.test_modules}) == []


# ---------------------------------------------------------- what Rego allows

ALLOWED = {
    "multi_body": "package a\n\nimport rego.v1\n\np if input.x == 1\n\np if input.x == 2\n\nq if p\n",
    "else_chain": (
        "package a\n\nimport rego.v1\n\nlevel := \"high\" if {\n\tinput.x > 2\n} else := \"mid\" if {\n"
        "\tinput.x > 1\n} else := low\n\nlow := \"low\"\n"
    ),
    "partial_sets_and_objects": (
        "package a\n\nimport rego.v1\n\nreasons contains r if {\n\tsome r in input.rs\n}\n\n"
        "by_code[c] := r if {\n\tsome r in reasons\n\tc := r.code\n}\n\ncodes := {c | some c, _ in by_code}\n"
    ),
    "functions": (
        "package a\n\nimport rego.v1\n\ndouble(x) := x * 2\n\nquad(x) := double(double(x))\n\n"
        "f(x) := y if {\n\ty := quad(x)\n} else := 0\n\nv := quad(2)\n"
    ),
    "ref_heads": "package a\n\nimport rego.v1\n\nlimits.max := 3\n\nlimits.min := 1\n\nspan := limits.max - limits.min\n",
    "locals_shadow_rules": (
        "package a\n\nimport rego.v1\n\np := 1\n\nq if {\n\tsome p in [2, 3]\n\tp > 1\n}\n\n"
        "r if {\n\tq := 5\n\tq > 1\n}\n\ns(q) := q + 1\n\nt if {\n\tevery q in [1] {\n\t\tq == 1\n\t}\n}\n\n"
        "u := [y | some x in [1]; y := x + 1]\n"
    ),
    "with_modifiers": (
        "package a\n\nimport rego.v1\n\np if input.ok\n\ntest_p if p with input.ok as true\n\n"
        "q if p with data.a.p as false\n"
    ),
    "across_packages": (
        "package a\n\nimport rego.v1\n\nimport data.b\nimport data.b as other\n\n"
        "p if b.q\n\nr if other.q\n\ns if data.b.q\n\nwhole := data.b\n"
    ),
    "b": "package b\n\nimport rego.v1\n\nq if input.y\n",
    "strings_and_comments": (
        "package a\n\nimport rego.v1\n\n# p if x (not code)\nx := \"p if x # not a comment\"\n\n"
        "y := `raw string\nwith x and p in it`\n"
    ),
}


def test_rule_families_rego_allows_are_accepted() -> None:
    # One package per module name, except "b" which the others import.
    modules = {f"{name}.rego": src.replace("package a\n", f"package {name}\n", 1).replace("data.a.", f"data.{name}.")
               for name, src in ALLOWED.items()}
    assert find_problems(modules) == []


# ----------------------------------------------------------------- recursion

RECURSIVE = {
    "self": ("package a\n\nimport rego.v1\n\np if {\n\tinput.x\n\tp\n}\n",
             "a.rego:7: recursion: data.a.p -> data.a.p (a.rego:7: p refers to p)"),
    "function": ("package a\n\nimport rego.v1\n\nf(x) := f(x - 1) if x > 0\n",
                 "a.rego:5: recursion: data.a.f -> data.a.f"),
    "else_clause": ("package a\n\nimport rego.v1\n\nv := 1 if {\n\tinput.x\n} else := w\n\nw := v\n",
                    "a.rego:7: recursion: data.a.v -> data.a.w -> data.a.v (a.rego:7: v refers to w; "
                    "a.rego:9: w refers to v)"),
    "whole_package": ("package a\n\nimport rego.v1\n\ncount_rules := count(data.a)\n",
                      "a.rego:5: recursion: data.a.count_rules -> data.a.count_rules"),
    "dynamic_ref": ("package a\n\nimport rego.v1\n\nvalues contains v if {\n\tsome k\n\tv := data.a[k]\n}\n",
                    "a.rego:7: recursion: data.a.values -> data.a.values"),
    "in_a_comprehension": ("package a\n\nimport rego.v1\n\np := {x | some x in q}\n\nq := [y | some y in p]\n",
                           "a.rego:5: recursion: data.a.p -> data.a.q -> data.a.p"),
    "with_target": ("package a\n\nimport rego.v1\n\np if {\n\ttrue with data.a.p as true\n}\n",
                    "a.rego:6: recursion: data.a.p -> data.a.p"),
}


@pytest.mark.parametrize("name", sorted(RECURSIVE))
def test_recursion_is_refused_with_file_and_line(name: str) -> None:
    source, expected = RECURSIVE[name]
    problems = _problems(a=source)
    assert len(problems) == 1 and problems[0].startswith(expected), problems


def test_every_cycle_is_reported_once_and_the_message_lists_them() -> None:
    modules = {"a.rego": RECURSIVE["self"][0], "b.rego": RECURSIVE["function"][0].replace("package a", "package b")}
    with pytest.raises(PolicyLoadError) as caught:
        check_modules(modules, "Rego policies in x")
    message = str(caught.value)
    assert message.startswith("Rego policies in x: 2 problem(s):\n")
    assert "a.rego:7: recursion: data.a.p" in message and "b.rego:5: recursion: data.b.f" in message


@needs_opa
@pytest.mark.parametrize("name", sorted(RECURSIVE))
def test_opa_refuses_the_same_recursion(name: str) -> None:
    assert _opa_says_recursive({"a.rego": RECURSIVE[name][0]}, "data.a")


@needs_opa
def test_opa_accepts_what_the_check_accepts() -> None:
    modules = {f"{name}.rego": src.replace("package a\n", f"package {name}\n", 1).replace("data.a.", f"data.{name}.")
               for name, src in ALLOWED.items()}
    assert not _opa_says_recursive(modules, "data")


def _opa_says_recursive(modules: dict[str, str], query: str) -> bool:
    from opa_bindings import OpaEngine, OpaError

    engine = OpaEngine()
    try:
        for name, source in modules.items():
            engine.add_policy(name, source)
        engine.eval_query(f"x = {query}")
    except OpaError as exc:
        if "rego_recursion_error" in str(exc):
            return True
        raise
    finally:
        engine.close()
    return False


# One body term per reference form: same package by name, another package by
# import alias or by data path, a call of a function rule, and decoys that
# must never count (a local declared with `some` or `:=`, a with target).
_PACKAGES = ("pa", "pb")
_RULES = 3


@st.composite
def rule_graphs(draw: st.DrawFn) -> dict[str, str]:
    modules = {}
    for pkg in _PACKAGES:
        lines = [f"package {pkg}", "", "import rego.v1", ""]
        lines += [f"import data.{other} as alias_{other}" for other in _PACKAGES if other != pkg] + [""]
        for i in range(_RULES):
            terms = []
            for _ in range(draw(st.integers(0, 3))):
                target_pkg = draw(st.sampled_from(_PACKAGES))
                j = draw(st.integers(0, _RULES - 1))
                form = draw(st.sampled_from(["name", "alias", "data", "call", "local_some", "local_assign", "with"]))
                if target_pkg != pkg and form in ("name", "call", "local_some", "local_assign"):
                    form = "alias"
                elif target_pkg == pkg and form == "alias":
                    form = "data"  # a package does not import itself
                terms.append({
                    "name": f"r{j}",
                    "alias": f"alias_{target_pkg}.r{j}",
                    "data": f"data.{target_pkg}.r{j}",
                    "call": f"f{j}(1)",
                    # Locals named like a rule, in a scope of their own (a comprehension).
                    "local_some": f"count([r{j} | some r{j} in [true]]) == 1",
                    "local_assign": f"count([r{j} | r{j} := true]) == 1",
                    "with": f"true with data.{target_pkg}.r{j} as true",
                }[form])
            body = "\n\t".join(terms) if terms else "true"
            lines += [f"r{i} if {{\n\t{body}\n}}", "", f"f{i}(x) := x if r{i}", ""]
        modules[f"{pkg}.rego"] = "\n".join(lines)
    return modules


@needs_opa
@given(rule_graphs())
def test_recursion_found_exactly_where_opa_finds_it(modules: dict[str, str]) -> None:
    ours = [p for p in find_problems(modules) if "recursion" in p.message]
    assert not [p for p in find_problems(modules) if "recursion" not in p.message]
    assert bool(ours) == _opa_says_recursive(modules, "data"), "\n\n".join(modules.values())


# -------------------------------------------------------------- lexical damage

@pytest.mark.parametrize(("source", "expected"), [
    ("package a\n\nx := {\n", "a.rego:3: '{' opened here is never closed"),
    ("package a\n\nx := [1, 2)\n", "a.rego:3: ')' closes the '[' opened at line 3"),
    ("package a\n\nx := 1]\n", "a.rego:3: ']' closes nothing"),
    ('package a\n\nx := "abc\n', "a.rego:3: string never closed on its line"),
    ("package a\n\nx := `abc\n\n", "a.rego:3: raw string (`…`) never closed"),
    ("x := 1\n", "a.rego:1: the module does not start with a package declaration"),
    ("# only a comment\n", "a.rego:1: the module does not start with a package declaration"),
    ("package a\n\n1 == 1\n", "a.rego:3: expected a rule, not '1'"),
])
def test_damaged_sources_are_refused_with_file_and_line(source: str, expected: str) -> None:
    assert _problems(a=source) == [expected]


# ------------------------------------------------------------- loading files


def _copy_stock(tmp_path: Path) -> Path:
    target = tmp_path / "policies"
    shutil.copytree(stock_policy_dir(), target)
    return target


def test_a_non_utf8_rego_file_is_a_load_error_naming_it(tmp_path: Path) -> None:
    policies = _copy_stock(tmp_path)
    bad = policies / "helpdesk" / "latin1.rego"
    bad.write_bytes(b"package helpdesk.latin1\n\n# caf\xe9\nx := 1\n")
    with pytest.raises(PolicyLoadError, match=r"latin1\.rego: line 3: not UTF-8 \(byte 0xe9"):
        PolicySet.load(policies)


# ------------------------------------------------------------------- the CLI

BROKEN_SYNTAX = "package helpdesk.oops\n\nimport rego.v1\n\nx := 1\n\ny if {\n\t1 ==\n}\n"


@pytest.fixture(scope="module")
def broken_dirs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """Policy directories broken in each way, keyed by what is wrong (see WHERE)."""
    tmp_path = tmp_path_factory.mktemp("broken")
    out = {}
    for name, (file, content) in {
        "non_utf8": ("helpdesk/latin1.rego", b"package helpdesk.latin1\n\n# caf\xe9\nx := 1\n"),
        "unclosed": ("helpdesk/oops.rego", b"package helpdesk.oops\n\nimport rego.v1\n\nx := {\n"),
        "recursive": ("helpdesk/loop.rego", b"package helpdesk.loop\n\nimport rego.v1\n\np if q\n\nq if p\n"),
        "syntax": ("helpdesk/oops.rego", BROKEN_SYNTAX.encode()),
    }.items():
        policies = _copy_stock(tmp_path / name)
        (policies / file).write_bytes(content)
        out[name] = policies
    return out


WHERE = {
    "non_utf8": "latin1.rego: line 3: not UTF-8",
    "unclosed": "helpdesk/oops.rego:5: '{' opened here is never closed",
    "recursive": "helpdesk/loop.rego:5: recursion: data.helpdesk.loop.p -> data.helpdesk.loop.q",
    "syntax": "helpdesk/oops.rego:8:4: Invalid boolean operator",
}


@needs_regopy
@pytest.mark.parametrize("kind", sorted(WHERE))
def test_decide_on_a_broken_policy_dir_exits_2_naming_file_and_line(kind: str, broken_dirs: dict[str, Path]) -> None:
    result = CliRunner().invoke(main, ["decide", "--policy-dir", str(broken_dirs[kind]), str(REQUEST)])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert "Traceback" not in result.output
    assert WHERE[kind] in result.stderr, result.stderr
    assert result.stdout == ""  # nothing on stdout: rego-cpp's own dump is kept out of it


@needs_regopy
@pytest.mark.parametrize("kind", ["non_utf8", "unclosed", "recursive"])
def test_test_command_on_a_broken_policy_dir_exits_2_naming_file_and_line(kind: str,
                                                                           broken_dirs: dict[str, Path]) -> None:
    result = CliRunner().invoke(main, ["test", str(broken_dirs[kind]), "--skip", "parity"])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert WHERE[kind] in result.stderr, result.stderr


@needs_regopy
def test_test_command_names_file_and_line_of_a_compile_error(broken_dirs: dict[str, Path]) -> None:
    """A policy only the compiler rejects: no traceback, the compiler's error as file:line:col."""
    result = CliRunner().invoke(main, ["test", str(broken_dirs["syntax"]), "--skip", "parity", "--format", "json"])
    assert result.exit_code == 2, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    assert not result.stdout.strip(), "no partial report on a usage error"
    assert WHERE["syntax"] in result.stderr, result.stderr
