"""The ``rego`` engine's decision path (``engines/rego.py``).

The engine hands rego-cpp its input through the C functions regopy binds,
and reads the output once, instead of going through ``regopy.Input`` and
``regopy.Output``. These tests hold it to regopy's own public path: the same
output text, byte for byte, for every request (rego-cpp reads a string
holding ``"`` or ``\\`` differently depending on how it is handed over, so
"the same JSON" is not enough), the same errors, and still a per-thread
interpreter.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings

regopy = pytest.importorskip("regopy")

from helpdesk_policy import HelpdeskPolicy  # noqa: E402
from helpdesk_policy.engines import rego as rego_module  # noqa: E402
from helpdesk_policy.engines.base import checked_verdict  # noqa: E402
from helpdesk_policy.engines.rego import RegoEngine  # noqa: E402
from helpdesk_policy.errors import EngineError, MalformedDecisionError, UndefinedDecisionError  # noqa: E402
from helpdesk_policy.levels import Level  # noqa: E402
from helpdesk_policy.models import Request  # noqa: E402
from helpdesk_policy.policyset import PolicySet  # noqa: E402
from helpdesk_policy.testing import requests  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "examples" / "requests").glob("*.json"))
NHI = json.loads((ROOT / "examples" / "requests" / "09-nhi-owner-offboarded.json").read_text(encoding="utf-8"))

#: A policy whose decision depends on ``input.mode``: each mode reaches one
#: way an evaluation can end.
PROBE = """package helpdesk

import rego.v1

decision := {"echo": input.s} if input.mode == "echo"

decision := {"all": input} if input.mode == "all"

decision := [1] if input.mode == "list"

decision := {"n": to_number(input.s)} if input.mode == "error"

decision := {"big": concat("", [s | some i in numbers.range(1, input.n); s := "0123456789"])} if input.mode == "big"

decision := {
\t"level": "self_service", "allowed": true, "requirements": [], "obligations": [],
\t"playbook": "password-reset-self-service",
\t"reasons": [{"code": "lie", "level": "deny", "message": "denied, yet answered self_service", "refs": []}],
} if input.request.action == "password_reset"
"""


@pytest.fixture(scope="module")
def stock() -> RegoEngine:
    return RegoEngine(PolicySet.load())


@pytest.fixture(scope="module")
def probe_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    directory = tmp_path_factory.mktemp("probe") / "policies"
    (directory / "helpdesk").mkdir(parents=True)
    (directory / "helpdesk" / "probe.rego").write_text(PROBE, encoding="utf-8")
    return directory


@pytest.fixture(scope="module")
def probe(probe_dir: Path) -> RegoEngine:
    return RegoEngine(PolicySet.load(probe_dir))


def _regopy_text(engine: RegoEngine, document: Any) -> tuple[bool, str]:
    """What regopy's public path gives: ``set_input(dict)`` (regopy.Input), then the output's text."""
    interp = regopy.Interpreter()
    interp.strict_built_in_errors = True
    interp.set_input(document)
    rs = regopy.rego_shared  # regopy's Output parses on construction, which fails on some outputs
    out = rs.rego_bundle_query_entrypoint(interp._impl, engine._bundle._impl, engine.entrypoint)
    try:
        return rs.rego_output_ok(out), rs.rego_output_string(out)
    finally:
        rs.rego_free_output(out)


def _engine_text(engine: RegoEngine, document: Any) -> tuple[bool, str]:
    runner = engine._runner()
    engine._set_input(runner, document)
    ok, raw = engine._query(runner)
    return ok, raw.decode("utf-8")


def _variant(path: str, value: Any) -> dict[str, Any]:
    doc = Request.model_validate(NHI).to_input()
    section, field = path.split(".")
    doc[section][field] = value
    return doc


# ----------------------------------------------------------------- same input


def test_the_direct_path_is_in_use() -> None:
    # Without it every test below would compare regopy with itself.
    assert rego_module._C is not None and rego_module._push is not None


@pytest.mark.parametrize("path", EXAMPLES, ids=lambda p: p.stem)
def test_every_example_reads_byte_for_byte_as_through_regopy(stock: RegoEngine, path: Path) -> None:
    doc = Request.model_validate_json(path.read_text(encoding="utf-8")).to_input()
    ok, text = _engine_text(stock, doc)
    assert ok and text.startswith('{"expressions":[{"allowed":')
    assert (ok, text) == _regopy_text(stock, doc)
    assert stock.evaluate_input(doc) == json.loads(text)["expressions"][0]


@settings(max_examples=40)
@given(requests())
def test_generated_requests_read_byte_for_byte_as_through_regopy(stock: RegoEngine, req: Request) -> None:
    doc = req.to_input()
    assert _engine_text(stock, doc) == _regopy_text(stock, doc)


STRINGS = ['a"b', "back\\slash", "new\nline", "tab\t", "\x01", "é ünï", "😀", "\u2028", "it's", "", "x\x00y"]


@pytest.mark.parametrize("text", STRINGS, ids=repr)
def test_strings_rego_cpp_reads_by_how_they_are_handed_over(probe: RegoEngine, text: str) -> None:
    """rego-cpp keeps the characters of a string set through its input
    builder and prints them raw ('a"b' makes the output stop being JSON);
    a string parsed from JSON text keeps its escapes instead. The engine must
    hand strings over as regopy.Input does, whatever they hold."""
    for doc in ({"mode": "echo", "s": text}, {"mode": "all", "s": text, "k": {text: [text, 1]}}):
        assert _engine_text(probe, doc) == _regopy_text(probe, doc)


NUMBERS = [0, -1, 10**9, 2**63 - 1, -(2**63), 0.0, -0.0, 72.0, 72.001, 1e-7, 123456.789, 1e300]


@pytest.mark.parametrize("number", NUMBERS, ids=repr)
def test_numbers_read_as_through_regopy(probe: RegoEngine, stock: RegoEngine, number: float) -> None:
    # rego-cpp prints a float it is handed as a double with 6 decimals ("72.000000"):
    # the text shows whether the number went in as an int or as a float.
    doc = {"mode": "all", "x": number, "xs": [number, True, None]}
    assert _engine_text(probe, doc) == _regopy_text(probe, doc)
    for path in ("context.recent_credential_change_hours", "target.consumers", "target.secret_age_days"):
        assert _engine_text(stock, _variant(path, number)) == _regopy_text(stock, _variant(path, number))


@pytest.mark.parametrize("odd", [(1, "a"), {"b", "a"}, {1: "one"}, frozenset({3}), Level.DENY],
                         ids=["tuple", "set", "int key", "frozenset", "str enum"])
def test_other_types_go_through_regopy_input(probe: RegoEngine, odd: Any) -> None:
    doc = {"mode": "all", "odd": odd, "after": "kept"}
    assert _engine_text(probe, doc) == _regopy_text(probe, doc)


def test_values_regopy_refuses_are_refused_alike(probe: RegoEngine) -> None:
    for bad in (object(), "\ud800"):  # no conversion; no UTF-8 form
        with pytest.raises(ValueError):
            regopy.Interpreter().set_input({"mode": "all", "bad": bad})
        with pytest.raises(MalformedDecisionError):
            probe.evaluate_input({"mode": "all", "bad": bad})
    # The interpreter is fine afterwards: the half-built input was dropped.
    assert probe.evaluate_input({"mode": "echo", "s": "after"}) == {"echo": "after"}


def test_without_the_c_functions_regopy_s_own_path_decides_alike(
    stock: RegoEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Another regopy release without the binding this relies on still decides (slower)."""
    docs = [Request.model_validate_json(p.read_text(encoding="utf-8")).to_input() for p in EXAMPLES[:6]]
    direct = [stock.evaluate_input(doc) for doc in docs]
    monkeypatch.setattr(rego_module, "_C", None)
    monkeypatch.setattr(rego_module, "_push", None)
    fallback = RegoEngine(PolicySet.load())
    assert [fallback.evaluate_input(doc) for doc in docs] == direct
    assert [_engine_text(fallback, doc) for doc in docs] == [_regopy_text(stock, doc) for doc in docs]


# ------------------------------------------------------- the output, read once


def test_each_way_an_evaluation_ends(probe: RegoEngine) -> None:
    assert probe.evaluate_input({"mode": "echo", "s": "ok"}) == {"echo": "ok"}
    with pytest.raises(UndefinedDecisionError, match=r"^rego: data\.helpdesk\.decision is undefined$"):
        probe.evaluate_input({"mode": "nothing"})
    with pytest.raises(UndefinedDecisionError, match=r"^rego: decision is not an object: list$"):
        probe.evaluate_input({"mode": "list"})
    with pytest.raises(EngineError, match=r"^rego: evaluation error: ") as error:
        probe.evaluate_input({"mode": "error", "s": "not a number"})
    assert type(error.value) is EngineError


def test_output_that_is_not_json_names_the_position_but_no_input(probe: RegoEngine) -> None:
    # rego-cpp prints the '"' it was handed raw: {"expressions":[{"echo":"sec"ret"}]}
    # is not JSON from "ret" on, 29 characters in (column 30).
    with pytest.raises(MalformedDecisionError) as error:
        probe.evaluate_input({"mode": "echo", "s": 'sec"ret'})
    assert str(error.value) == "rego: output is not valid JSON at line 1 column 30"
    assert "ret" not in str(error.value)


def test_an_output_larger_than_the_buffer_is_read_whole(probe_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rego_module, "_BUFFER_SIZE", 64)
    monkeypatch.setattr(rego_module, "_BUFFER_KEPT", 20_000)
    engine = RegoEngine(PolicySet.load(probe_dir))
    assert engine.evaluate_input({"mode": "echo", "s": "x" * 100}) == {"echo": "x" * 100}
    kept = engine._runner().buffer
    assert 64 < len(kept) < 200  # grown to the output, and kept
    assert engine.evaluate_input({"mode": "big", "n": 3000}) == {"big": "0123456789" * 3000}
    assert engine._runner().buffer is kept  # a 30 KB output's buffer is not kept
    assert engine.evaluate_input({"mode": "echo", "s": "short"}) == {"echo": "short"}


# --------------------------------------------------------- a lying engine


def test_a_lying_decision_is_still_caught(probe: RegoEngine, probe_dir: Path) -> None:
    """The engine answers the document as rego-cpp printed it; whoever asks
    it validates that once, and a decision its own reasons contradict is refused."""
    req = Request.model_validate_json(EXAMPLES[0].read_text(encoding="utf-8"))
    assert req.request.action.value == "password_reset"
    raw = probe.evaluate(req)
    assert raw["level"] == "self_service" and raw["reasons"][0]["level"] == "deny"
    with pytest.raises(MalformedDecisionError, match="not the maximum of the reasons"):
        checked_verdict(probe, raw)
    # Through the facade: no engine decides this custom policy, so it fails closed.
    with HelpdeskPolicy(engine="rego", policy_dir=probe_dir) as policy:
        decision = policy.decide(req)
    assert decision.level is Level.DENY and decision.engine != "rego"
    assert [r.code for r in decision.reasons] == ["engine_unavailable"]


# ------------------------------------------------------------------- threads


def test_threads_decide_concurrently_each_on_its_own_interpreter(stock: RegoEngine) -> None:
    docs = [Request.model_validate_json(p.read_text(encoding="utf-8")).to_input() for p in EXAMPLES]
    expected = [_regopy_text(stock, doc)[1] for doc in docs]
    seen: dict[int, list[str]] = {}
    runners: set[int] = set()
    lock = threading.Lock()
    start = threading.Barrier(4)

    def work(k: int) -> None:
        start.wait()
        order = docs[k:] + docs[:k]  # each thread in its own order
        texts = [_engine_text(stock, doc)[1] for doc in order]
        with lock:
            seen[k] = texts[-k:] + texts[:-k] if k else texts
            runners.add(id(stock._runner()))

    threads = [threading.Thread(target=work, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(runners) == 4
    assert all(seen[k] == expected for k in range(4))


# ------------------------------------------------------------------ memory


_GROWTH = """
import ctypes, gc, sys
{before}
from helpdesk_policy.ci.generate import generate_requests
from helpdesk_policy.engines.rego import RegoEngine
from helpdesk_policy.policyset import PolicySet

def rss_mb():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:")) / 1024

engine = RegoEngine(PolicySet.load())
requests = generate_requests(100, seed=3)
for r in requests:
    engine.evaluate(r)
gc.collect()
start = rss_mb()
for _ in range(3):
    for r in requests:
        engine.evaluate(r)
gc.collect()
print(rss_mb() - start)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the leak and its fix are about glibc's dlopen")
@pytest.mark.parametrize("before", [
    # What Python does for an extension module linking the C++ runtime (frozenlist's, under aiohttp).
    "ctypes.CDLL('libstdc++.so.6')",
    "import aiohttp",
    "",
], ids=["libstdc++ loaded locally first", "aiohttp imported first", "nothing first"])
def test_the_rego_engine_does_not_grow_whatever_was_imported_before_it(before: str) -> None:
    """Loaded after a local libstdc++, rego-cpp leaked ~650 KB per evaluation (300 evaluations: +195 MB);
    engines/regopy_import.py makes libstdc++ global first. Measured in a fresh interpreter."""
    if before == "import aiohttp":
        pytest.importorskip("aiohttp", reason="the opa extra brings aiohttp")
    out = subprocess.run([sys.executable, "-c", _GROWTH.format(before=before)], capture_output=True, text=True,
                         check=True)
    assert float(out.stdout.strip()) < 15, f"RSS grew {out.stdout.strip()} MB over 300 evaluations"
