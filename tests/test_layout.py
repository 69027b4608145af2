"""The package's layering, as the README's Layout section states it.

Every module under ``src/helpdesk_policy`` is parsed with :mod:`ast`; every
import of a ``helpdesk_policy`` module in it (at any depth: module level,
function-local, under ``TYPE_CHECKING``; relative ones resolved) must go to a
room its own room may import. A new top-level module or subpackage must be
given a room here first (and a line in the README's Layout section).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "helpdesk_policy"
SRC = ROOT / "src" / PACKAGE

#: The room of every top-level module and subpackage of ``helpdesk_policy``
#: (a subpackage's modules are in its room).
ROOMS: dict[str, str] = {
    # The package itself: the public API (lazy re-exports), and ``python -m``.
    "__init__": "api",
    "__main__": "cli",
    # The contract: models, config, policy sets, what a decision must satisfy.
    "errors": "core",
    "levels": "core",
    "models": "core",
    "config": "core",
    "loading": "core",
    "digest": "core",
    "regocheck": "core",
    "catalogue": "core",
    "resources": "core",
    "policyset": "core",
    "expectations": "core",
    "evidence": "core",
    "credentials": "core",
    "policy_exceptions": "core",
    "cache": "core",
    "engines": "engines",
    # The Rego-to-Python compiler, which the compiled engine runs (it imports only the core).
    "compiler": "engines",
    "chain": "chain",
    "facade": "facade",
    # Parallel replay: worker processes for decide_many and diff (it never imports the facade).
    "replay": "facade",
    "render": "render",
    "bundle": "bundle",
    "testing": "testing",
    "pytest_plugin": "testing",
    "ci": "ci",
    "cli": "cli",
    # Subsystems above the facade: the ledger, agents, ticketing integrations, the service.
    "ledger": "ledger",
    "agents": "agents",
    "integrations": "integrations",
    "service": "service",
}

BELOW_FACADE = frozenset({"core", "engines", "chain", "facade"})
FUTURE = ("ledger", "agents", "integrations", "service")
ALL_ROOMS = frozenset(ROOMS.values())

#: The rooms each room may import (its own always included).
MAY_IMPORT: dict[str, frozenset[str]] = {
    "core": frozenset({"core"}),
    "engines": frozenset({"core", "engines"}),
    "chain": frozenset({"core", "engines", "chain"}),
    "facade": BELOW_FACADE,
    "render": frozenset({"core", "render"}),
    "bundle": frozenset({"core", "bundle"}),
    "testing": BELOW_FACADE | {"testing"},
    "api": BELOW_FACADE | {"api"},
    **{room: BELOW_FACADE | {"render", room} for room in FUTURE},
    "ci": ALL_ROOMS - {"cli"},
    "cli": ALL_ROOMS,
}

#: Third-party packages the runtime library must not need: the command line's
#: (click) and the test tooling's (hypothesis, pytest).
NOT_AT_RUNTIME = frozenset({"click", "hypothesis", "pytest"})
RUNTIME_ROOMS = frozenset({"core", "engines", "chain", "facade", "render", "bundle", "api", *FUTURE})


@dataclass(frozen=True)
class Import:
    importer: str  # module name
    target: str  # module name (helpdesk_policy.x.y), or a third-party top-level package
    line: int


def module_name(rel: str) -> str:
    """``engines/shadow.py`` -> ``helpdesk_policy.engines.shadow``; ``ci/__init__.py`` -> ``helpdesk_policy.ci``."""
    parts = [PACKAGE, *Path(rel).with_suffix("").parts]
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def tree_sources() -> dict[str, str]:
    """Every module of the package: path relative to ``src/helpdesk_policy`` -> source."""
    return {p.relative_to(SRC).as_posix(): p.read_text(encoding="utf-8") for p in sorted(SRC.rglob("*.py"))}


def imports(sources: Mapping[str, str]) -> Iterator[Import]:
    """Every import in ``sources``, at any depth, relative ones resolved."""
    modules = {module_name(rel) for rel in sources}
    for rel, source in sources.items():
        name = module_name(rel)
        package = name if rel.endswith("__init__.py") else name.rpartition(".")[0]
        for node in ast.walk(ast.parse(source, filename=rel)):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    yield Import(name, alias.name, node.lineno)
            elif isinstance(node, ast.ImportFrom):
                if node.level:
                    base = package.split(".")
                    base = base[: len(base) - (node.level - 1)]
                    origin = ".".join(base + ([node.module] if node.module else []))
                else:
                    origin = node.module or ""
                if origin == "__future__":
                    continue
                for alias in node.names:
                    # ``from pkg import name``: the submodule when there is one, else pkg itself.
                    sub = f"{origin}.{alias.name}"
                    yield Import(name, sub if sub in modules else origin, node.lineno)


def room_of(module: str) -> str | None:
    parts = module.split(".")
    if parts[0] != PACKAGE:
        return None
    return ROOMS["__init__"] if len(parts) == 1 else ROOMS.get(parts[1])


def layering_problems(sources: Mapping[str, str]) -> list[str]:
    """Every module in no room, and every import a room may not make, one line each."""
    problems: list[str] = []
    for rel in sources:
        name = module_name(rel)
        if room_of(name) is None:
            top = name.split(".")[1]
            problems.append(f"{name} is in no room: add {top!r} to a room in ROOMS in tests/test_layout.py "
                            "(and a line for it in the README's Layout section)")
    for imp in imports(sources):
        room = room_of(imp.importer)
        if room is None:
            continue  # reported above
        top = imp.target.split(".")[0]
        if top != PACKAGE:
            if top in NOT_AT_RUNTIME and room in RUNTIME_ROOMS:
                problems.append(f"{imp.importer} ({room}) imports {imp.target} at line {imp.line}: "
                                f"the runtime library needs none of {sorted(NOT_AT_RUNTIME)}")
            continue
        target_room = room_of(imp.target)
        if target_room is None:
            problems.append(f"{imp.importer} ({room}) imports {imp.target} at line {imp.line}, which is in no room")
        elif target_room not in MAY_IMPORT[room]:
            problems.append(f"{imp.importer} ({room}) imports {imp.target} ({target_room}) at line {imp.line}: "
                            f"{room} may import only {', '.join(sorted(MAY_IMPORT[room]))}")
    return problems


def import_cycles(sources: Mapping[str, str]) -> list[list[str]]:
    """Groups of modules that import each other, directly or through others (at any depth)."""
    graph: dict[str, set[str]] = {module_name(rel): set() for rel in sources}
    for imp in imports(sources):
        if imp.target in graph and imp.target != imp.importer:
            graph[imp.importer].add(imp.target)
    # Tarjan's strongly connected components, iteratively.
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    cycles: list[list[str]] = []
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = len(index)
        stack.append(start)
        while work:
            node, edges = work[-1]
            nxt = next(edges, None)
            if nxt is None:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    group = []
                    while True:
                        member = stack.pop()
                        group.append(member)
                        if member == node:
                            break
                    if len(group) > 1:
                        cycles.append(sorted(group))
            elif nxt not in index:
                index[nxt] = low[nxt] = len(index)
                stack.append(nxt)
                work.append((nxt, iter(sorted(graph[nxt]))))
            elif nxt in stack:
                low[node] = min(low[node], index[nxt])
    return cycles


# ------------------------------------------------------------------------ tests


def test_the_tree_keeps_its_layering() -> None:
    problems = layering_problems(tree_sources())
    assert not problems, "\n".join(problems)


def test_no_modules_import_each_other() -> None:
    # A function-local import hid config <-> policies; cycles are refused at any depth.
    assert import_cycles(tree_sources()) == []


def test_an_import_cycle_is_caught() -> None:
    sources = tree_sources()
    sources["config.py"] += "\ndef _stock():\n    from .policyset import PolicySet\n"
    cycles = import_cycles(sources)
    assert any({"helpdesk_policy.config", "helpdesk_policy.policyset"} <= set(c) for c in cycles), cycles
    assert not import_cycles(tree_sources())


def test_every_room_has_its_rules() -> None:
    assert set(MAY_IMPORT) == ALL_ROOMS
    assert all(room in MAY_IMPORT[room] for room in ALL_ROOMS)


def test_the_rules_say_what_the_readme_says() -> None:
    # No engine imports the facade; the core imports no CLI; CI tooling and the
    # subsystems to come sit above the facade: nothing below it imports them.
    assert "facade" not in MAY_IMPORT["engines"]
    assert MAY_IMPORT["core"] == {"core"}
    for below in ("core", "engines", "chain", "facade", "render", "bundle", "testing"):
        assert not MAY_IMPORT[below] & {"ci", "cli", *FUTURE}, below
    for room in FUTURE:
        assert MAY_IMPORT[room] == {"core", "engines", "chain", "facade", "render", room}


@pytest.mark.parametrize(("path", "source", "expected"), [
    # An engine importing the facade, however it is spelled.
    ("engines/fake.py", "from ..facade import HelpdeskPolicy\n", "engines may import only"),
    ("engines/fake.py", "import helpdesk_policy.facade\n", "engines may import only"),
    ("engines/fake.py", "def f():\n    from helpdesk_policy import facade\n", "engines may import only"),
    ("engines/fake.py", "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..chain import EngineChain\n",
     "helpdesk_policy.chain (chain)"),
    # The core importing the command line, CI tooling, or the package's lazy API.
    ("fake_core.py", "from .cli.errors import CliError\n", "in no room"),
    ("digest.py", "from .cli.errors import CliError\n", "core may import only core"),
    ("models.py", "def f():\n    from .ci import suites\n", "helpdesk_policy.ci.suites (ci)"),
    ("levels.py", "from . import HelpdeskPolicy\n", "helpdesk_policy (api)"),
    ("config.py", "import click\n", "the runtime library needs none of"),
    # The user-facing test API must not depend on the CI runner.
    ("testing.py", "from .ci.suites import load_suite\n", "testing may import only"),
    ("pytest_plugin.py", "from helpdesk_policy.cli import main\n", "testing may import only"),
    # Below the facade, nothing imports a subsystem to come; they do not import the CLI.
    ("chain.py", "from .ledger import record\n", "chain may import only"),
    ("render/fake.py", "from ..agents.runtime import Agent\n", "render may import only"),
    ("service/app.py", "from ..cli import main\n", "service may import only"),
    ("ci/fake.py", "from ..cli.errors import CliError\n", "ci may import only"),
])
def test_a_violating_import_is_caught(path: str, source: str, expected: str) -> None:
    sources = tree_sources()
    sources[path] = sources.get(path, "") + source
    problems = layering_problems(sources)
    assert any(expected in p for p in problems), problems


def test_allowed_imports_pass() -> None:
    sources = tree_sources()
    sources["service/app.py"] = "from ..facade import HelpdeskPolicy\nfrom ..render import render_explain\n"
    sources["ledger/__init__.py"] = "from ..models import Decision\n"
    sources["ci/fake.py"] = "from ..ledger import Decision\nfrom .. import testing\n"
    assert layering_problems(sources) == []


def test_the_readme_layout_names_every_room() -> None:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text.split("\n## Layout\n", 1)[1].split("\n## ", 1)[0]
    entries = {p.stem if p.is_file() else p.name for p in SRC.iterdir()
               if (p.suffix == ".py" or (p / "__init__.py").is_file())}
    missing = sorted(e for e in entries if not re.search(rf"(?<![\w./]){re.escape(e)}(\.py|/)", section))
    assert not missing, f"the README's Layout section does not name {missing}"
