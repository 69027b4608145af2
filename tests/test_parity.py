"""Differential tests (SPEC §5.3): ``rego``, ``native`` and real OPA agree exactly.

Three engines decide every generated request:

* ``rego``   — the stock Rego under regopy (rego-cpp), the embedded default;
* ``native`` — the pure-Python mirror;
* ``opa-go`` — the same Rego under OPA's own Go evaluator (``tests/oracle.py``),
  the conformance oracle: it stands in for the ``opa`` server engine, which
  evaluates the same files with the same evaluator.

"Agree" means the whole validated verdict is identical: level, allowed,
requirements, every reason with its message and refs, obligations and
playbook — not only the parity key SPEC §5.3 names, because people read the
messages and programs act on the refs.

Number of examples: ``max(1000, 5 × profile max_examples)`` requests with the
stock config, and ``max(60, profile max_examples / 3)`` generated configs with
several requests each; ``HYPOTHESIS_PROFILE=thorough`` runs 25 times more.
The counts are printed in the terminal summary ("examples run").

Known engine defects are excluded from the comparison *for the affected engine
only* (the other two still must agree) and pinned by strict-xfail tests at the
end of this file; see ``_known_defects``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from helpdesk_policy import HelpdeskPolicy, Level, PolicyConfig, Request, Verdict, load_config, parse_request
from helpdesk_policy.engines.base import Engine
from helpdesk_policy.engines.native import NativeEngine
from helpdesk_policy.engines.rego import RegoEngine
from helpdesk_policy.policies import PolicySet
from helpdesk_policy.testing import configs, requests

pytest.importorskip("opa_bindings", reason="the OPA oracle needs opa-golib-python-bindings (make dev)")
from oracle import OpaOracle  # noqa: E402 - tests/ is on sys.path (rootdir conftest, prepend import mode)

ROOT = Path(__file__).resolve().parent.parent

#: Requests with the stock config: at least 1,000 in the default ``ci`` profile.
N_STOCK = max(1000, 5 * settings.default.max_examples)
#: Generated configs, each compiled for all three engines (the expensive part).
N_CONFIGS = max(60, settings.default.max_examples // 3)
REQUESTS_PER_CONFIG = 8

INT64_MAX = 2**63 - 1
RIGHT_BELOW_DBL_MAX = 1.7976931348623155e308  # the second largest finite double


# ------------------------------------------------------------------- helpers


def _verdict(engine: Engine, req: Request) -> dict[str, Any] | str:
    """The engine's answer as a canonical validated verdict dict, or the error it raised."""
    try:
        raw = engine.evaluate(req)
    except Exception as exc:  # noqa: BLE001 - an error is a disagreement to show, not to hide
        return f"error: {type(exc).__name__}: {exc}"
    if isinstance(raw, BaseModel):
        # Re-validate: the native engine builds its verdict without validation.
        raw = raw.model_dump(mode="json")
    return Verdict.model_validate(raw).model_dump(mode="json")


def _ints(value: Any) -> Iterator[int]:
    if isinstance(value, bool):
        return
    if isinstance(value, int):
        yield value
    elif isinstance(value, Mapping):
        for v in value.values():
            yield from _ints(v)
    elif isinstance(value, list | tuple | set | frozenset):
        for v in value:
            yield from _ints(v)


def _known_defects(req: Request, cfg: PolicyConfig) -> dict[str, str]:
    """Engines known to misread this input, and why (each pinned by an xfail below).

    * BUG-1 (rego): rego-cpp stores integers as int64; an input or config
      integer above 2**63-1 wraps (2**63 reads as -2**63), silently: a huge
      ``consumers`` loses ``nhi_widely_distributed`` (a lower level), a huge
      ``failed_verifications_24h`` can lose its callback.
    * BUG-2 (rego): rego-cpp keeps 6 decimals of an input float, so
      ``recent_credential_change_hours`` just above the window (72.0000001)
      reads as inside it.
    * BUG-3 (opa-go): ``recent_credential_change_hours`` may be ``inf``
      (the model allows it); it is not JSON, so OPA cannot evaluate it.
    * BUG-8 (rego): the two largest finite doubles (>= 1.7976931348623155e308)
      make regopy's output unparsable; RegoEngine leaks a bare JSONDecodeError.
    * BUG-9 (rego): rego-cpp's ``min``/``max``/``sort`` order numbers as
      strings (``min({3, 10})`` is 10), so ``levels.raise(base, n)`` is
      undefined once ``base + n >= 10`` and ``risk_compound`` vanishes. Stock
      config cannot reach it (at most 6 medium signals); a config with fewer
      high-risk signals can, and then rego decides a *lower* level.
    """
    out: dict[str, str] = {}
    doc = req.to_input()
    if any(i > INT64_MAX for i in _ints(doc)) or any(i > INT64_MAX for i in _ints(cfg.to_data())):
        out["rego"] = "BUG-1"
    medium = set(req.context.risk_signals) - set(cfg.high_risk_signals)
    if cfg.action_baseline[req.request.action].rank + len(medium) >= 10:
        out["rego"] = "BUG-9"
    hours = req.context.recent_credential_change_hours
    if hours is not None:
        window = cfg.chained_change_window_hours
        if window < hours < window + 1e-6:
            out["rego"] = "BUG-2"
        if math.isinf(hours):
            out["opa-go"] = "BUG-3"
        elif hours >= RIGHT_BELOW_DBL_MAX:
            out["rego"] = "BUG-8"
    return out


def _assert_identical(engines: Mapping[str, Engine], req: Request, cfg: PolicyConfig, counts: Any, area: str) -> None:
    skip = _known_defects(req, cfg)
    verdicts = {name: _verdict(engine, req) for name, engine in engines.items() if name not in skip}
    for name, bug in skip.items():
        counts[f"{area}: {name} not compared ({bug})"] += 1
    reference = verdicts["native"]
    assert not isinstance(reference, str), f"native failed on a valid request: {reference}"
    for name, verdict in verdicts.items():
        assert verdict == reference, f"{name} disagrees with native for input {json.dumps(req.to_input(), default=str)}"
    # The facade trusts the native verdict as built, so its own order must
    # already be the canonical one (else Decision.to_dict would differ by engine).
    assert engines["native"].evaluate(req).model_dump(mode="json") == reference  # type: ignore[union-attr]


def _three_engines(policy_set: PolicySet) -> dict[str, Engine]:
    return {"rego": RegoEngine(policy_set), "native": NativeEngine(policy_set), "opa-go": OpaOracle(policy_set)}


@pytest.fixture(scope="module")
def stock_engines() -> Iterator[dict[str, Engine]]:
    engines = _three_engines(PolicySet.load())
    yield engines
    for engine in engines.values():
        engine.close()


# --------------------------------------------------------------- differential


def test_stock_config_parity(stock_engines: dict[str, Engine], example_counts: Any) -> None:
    """Every generated valid request: the three engines give the identical verdict."""
    cfg = load_config()
    ran = 0

    @settings(max_examples=N_STOCK)
    @given(req=requests())
    def check(req: Request) -> None:
        nonlocal ran
        _assert_identical(stock_engines, req, cfg, example_counts, "parity/stock")
        ran += 1

    check()
    example_counts["parity/stock config: requests"] += ran
    assert ran >= N_STOCK


def test_generated_config_parity(example_counts: Any) -> None:
    """Tuning the config never breaks parity (SPEC §3): per generated config,
    all three engines are built from it and decide several requests."""
    ran = 0

    @settings(max_examples=N_CONFIGS)
    @given(cfg=configs(), reqs=st.lists(requests(), min_size=REQUESTS_PER_CONFIG, max_size=REQUESTS_PER_CONFIG))
    def check(cfg: PolicyConfig, reqs: list[Request]) -> None:
        nonlocal ran
        engines = _three_engines(PolicySet(config=cfg))
        try:
            for req in reqs:
                _assert_identical(engines, req, cfg, example_counts, "parity/configs")
                example_counts["parity/generated configs: requests"] += 1
        finally:
            for engine in engines.values():
                engine.close()
        ran += 1

    check()
    example_counts["parity/generated configs: configs"] += ran
    assert ran >= N_CONFIGS


def test_facade_decisions_identical_across_engines(stock_engines: dict[str, Engine], example_counts: Any) -> None:
    """Through ``HelpdeskPolicy``: the SPEC §4 documents differ only in
    ``engine`` and ``decision_id`` (same revision, same input digest)."""
    policies = {name: HelpdeskPolicy(engine=engine) for name, engine in stock_engines.items()}
    cfg = load_config()

    @settings(max_examples=max(100, settings.default.max_examples // 2))
    @given(req=requests())
    def check(req: Request) -> None:
        skip = _known_defects(req, cfg)
        docs = {}
        for name, policy in policies.items():
            if name in skip:
                continue
            decision = policy.decide(req)
            assert (decision.engine, decision.degraded) == (stock_engines[name].name, False)
            doc = decision.to_dict()
            doc.pop("engine"), doc.pop("decision_id")
            docs[name] = doc
        assert docs["rego" if "rego" in docs else "opa-go"] == docs["native"]
        if "opa-go" in docs:
            assert docs["opa-go"] == docs["native"]
        example_counts["parity/facade: requests"] += 1

    check()


# ------------------------------------------------------ documented scenarios


def _scenario(action: str, channel: str, actor: dict[str, Any], target: dict[str, Any], **extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"request": {"id": "INC-DOC", "action": action, "channel": channel}, "actor": actor, "target": target}
    doc.update(extra)
    return doc


_HUMAN_SELF = {"id": "u-123", "type": "human", "relationship": "self", "authenticated": True,
               "auth_strength": "password", "on_behalf_of": None, "roles": ["employee"]}

#: (name, request, documented level or None). Sources: SPEC §3, README, docstrings.
DOCUMENTED: list[tuple[str, dict[str, Any], Level | None]] = [
    ("SPEC §3 input example", {
        "request": {"id": "INC-1042", "action": "mfa_reset", "channel": "phone", "justification": "lost phone",
                    "emergency": False, "requested_at": "2026-11-24T10:00:00Z"},
        "actor": _HUMAN_SELF,
        "target": {"id": "u-123", "type": "human", "privileged": False, "privilege_tier": 0, "vip": False,
                   "status": "active", "environment": None, "owners": [], "owner_active": True,
                   "secret_age_days": None, "consumers": None, "in_secrets_manager": None},
        "context": {"risk_signals": ["new_device"], "failed_verifications_24h": 0,
                    "recent_credential_change_hours": None},
    }, None),
    ("README: phone MFA reset of a tier-2 admin", {
        "request": {"id": "INC-1042", "action": "mfa_reset", "channel": "phone", "justification": "lost phone",
                    "emergency": False},
        "actor": {"id": "u-123", "type": "human", "relationship": "self", "authenticated": True,
                  "auth_strength": "password", "roles": ["employee"]},
        "target": {"id": "u-123", "type": "human", "privileged": True, "privilege_tier": 2, "vip": False,
                   "status": "active"},
        "context": {"risk_signals": ["new_device"]},
    }, Level.CALLBACK),
    ("package docstring: unauthenticated phone MFA reset, privileged", _scenario(
        "mfa_reset", "phone",
        {"id": "u-9", "type": "human", "relationship": "self", "authenticated": False, "auth_strength": "none"},
        {"id": "u-9", "type": "human", "privileged": True, "privilege_tier": 2, "vip": False, "status": "active"},
    ), Level.CALLBACK),
    ("facade docstring: portal password reset after MFA", _scenario(
        "password_reset", "self_service_portal",
        {"id": "u-1", "type": "human", "relationship": "self", "authenticated": True, "auth_strength": "mfa"},
        {"id": "u-1", "type": "human", "privileged": False, "privilege_tier": 0, "vip": False, "status": "active"},
    ), Level.SELF_SERVICE),
    ("test_facade: phone password reset, password only", _scenario(
        "password_reset", "phone",
        {"id": "u-1", "type": "human", "relationship": "self", "authenticated": True, "auth_strength": "password",
         "roles": ["employee"]},
        {"id": "u-1", "type": "human", "privileged": False, "privilege_tier": 0, "vip": False, "status": "active"},
        request={"id": "INC-1", "action": "password_reset", "channel": "phone",
                 "justification": "my password is hunter2, please reset it", "emergency": False},
    ), Level.STEP_UP),
    ("RULES: an AI agent granting itself privileges", _scenario(
        "privilege_elevation", "api",
        {"id": "bot-1", "type": "ai_agent", "relationship": "self", "authenticated": True,
         "auth_strength": "phishing_resistant", "on_behalf_of": "u-1"},
        {"id": "bot-1", "type": "ai_agent", "privileged": False, "privilege_tier": 0, "vip": False,
         "status": "active", "environment": "dev", "owners": ["u-1"], "owner_active": True, "consumers": 1,
         "secret_age_days": 3, "in_secrets_manager": True},
    ), Level.DENY),
    ("RULES: someone unrelated resetting another person's password", _scenario(
        "password_reset", "phone",
        {"id": "u-7", "type": "human", "relationship": "other", "authenticated": True, "auth_strength": "mfa"},
        {"id": "u-1", "type": "human", "privileged": False, "privilege_tier": 0, "vip": False, "status": "active"},
    ), Level.DENY),
    ("RULES: revoking a token of an offboarded identity stays allowed", _scenario(
        "token_revoke", "self_service_portal",
        {"id": "u-1", "type": "human", "relationship": "owner", "authenticated": True, "auth_strength": "mfa"},
        {"id": "tok-1", "type": "automation_token", "privileged": False, "privilege_tier": 0, "vip": False,
         "status": "offboarded", "owners": ["u-1"], "owner_active": False},
    ), Level.SELF_SERVICE),
    ("RULES: a human asking for an NHI's key without owning it", _scenario(
        "api_key_reissue", "chat",
        {"id": "u-2", "type": "human", "relationship": "helpdesk_agent", "authenticated": True,
         "auth_strength": "mfa"},
        {"id": "key-1", "type": "api_key", "privileged": False, "privilege_tier": 0, "vip": False,
         "status": "active", "environment": "production", "owners": ["u-1"], "owner_active": True, "consumers": 2,
         "secret_age_days": 400, "in_secrets_manager": False},
    ), Level.DENY),
    ("RULES: owner rotating a small dev secret", _scenario(
        "secret_rotation", "self_service_portal",
        {"id": "u-1", "type": "human", "relationship": "owner", "authenticated": True, "auth_strength": "mfa"},
        {"id": "key-1", "type": "api_key", "privileged": False, "privilege_tier": 0, "vip": False,
         "status": "active", "environment": "dev", "owners": ["u-1"], "owner_active": True, "consumers": 2,
         "secret_age_days": 10, "in_secrets_manager": True},
    ), Level.STEP_UP),
]


def _example_files() -> list[Any]:
    # examples/requests/*.json are documented scenarios too (README, `make demo`).
    # Top-level keys starting with "_" are commentary, not request fields.
    params = []
    for path in sorted((ROOT / "examples" / "requests").glob("*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        doc = {k: v for k, v in doc.items() if not k.startswith("_")}
        params.append(pytest.param(path.name, doc, None, id=f"examples/requests/{path.name}"))
    return params


SCENARIOS = [pytest.param(name, doc, level, id=name) for name, doc, level in DOCUMENTED] + _example_files()


@pytest.fixture(scope="module")
def policies(stock_engines: dict[str, Engine]) -> dict[str, HelpdeskPolicy]:
    return {
        "rego": HelpdeskPolicy(engine="rego"),
        "native": HelpdeskPolicy(engine="native"),
        "opa-go": HelpdeskPolicy(engine=stock_engines["opa-go"]),
    }


@pytest.mark.parametrize(("name", "doc", "level"), SCENARIOS)
def test_documented_scenario_through_the_facade(
    policies: dict[str, HelpdeskPolicy], name: str, doc: dict[str, Any], level: Level | None, example_counts: Any
) -> None:
    """Each documented scenario: all three engines, through ``HelpdeskPolicy``,
    give the same SPEC §4 document, and the level the documentation states."""
    documents = {}
    for engine_name, policy in policies.items():
        decision = policy.decide(doc)
        assert decision.engine == policy.engines[0].name and decision.degraded is False
        out = decision.to_dict()
        out.pop("engine"), out.pop("decision_id")
        documents[engine_name] = out
    assert documents["rego"] == documents["native"] == documents["opa-go"]
    if level is not None:
        assert documents["native"]["level"] == level.value, name
    assert documents["native"]["input_digest"] == policies["native"].decide(parse_request(doc)).input_digest
    example_counts["parity/documented scenarios"] += 1


# ------------------------------------------------------------ known defects
# Minimal inputs for the defects _known_defects() steps around. Strict xfail:
# when a defect is fixed the test XPASSes, which fails the run, so that the
# exclusion in _known_defects() is removed at the same time.

def _nhi_owner_request(**context: Any) -> dict[str, Any]:
    return _scenario(
        "api_key_reissue", "self_service_portal",
        {"id": "u-1", "type": "human", "relationship": "owner", "authenticated": True, "auth_strength": "mfa"},
        {"id": "key-1", "type": "api_key", "privileged": False, "privilege_tier": 0, "vip": False,
         "status": "active", "environment": "dev", "owners": ["u-1"], "owner_active": True,
         "consumers": context.pop("consumers", 2), "secret_age_days": 10, "in_secrets_manager": True},
        context={"risk_signals": [], **context},
    )


@pytest.mark.xfail(strict=True, reason="BUG-1: rego-cpp wraps integers above 2**63-1 (2**63 consumers read as negative)")
def test_bug1_rego_reads_huge_consumer_count(stock_engines: dict[str, Engine]) -> None:
    req = parse_request(_nhi_owner_request(consumers=2**63))
    native = _verdict(stock_engines["native"], req)
    assert native["level"] == "callback"  # type: ignore[index]  # widely distributed
    assert _verdict(stock_engines["rego"], req) == native  # rego: step_up, nhi_widely_distributed missing


@pytest.mark.xfail(strict=True, reason="BUG-1: rego-cpp wraps integers above 2**63-1 (2**64+1 failures read as 1)")
def test_bug1_rego_reads_huge_failed_verification_count(stock_engines: dict[str, Engine]) -> None:
    req = parse_request(_nhi_owner_request(failed_verifications_24h=2**64 + 1))
    native = _verdict(stock_engines["native"], req)
    assert native["level"] == "callback"  # type: ignore[index]
    assert _verdict(stock_engines["rego"], req) == native  # rego: manager_approval, "1 failed verification"


@pytest.mark.xfail(strict=True, reason="BUG-2: rego-cpp rounds input floats to 6 decimals (72.0000001 h reads as 72)")
def test_bug2_rego_rounds_hours(stock_engines: dict[str, Engine]) -> None:
    doc = _scenario(
        "mfa_reset", "self_service_portal",
        {"id": "u-1", "type": "human", "relationship": "self", "authenticated": True, "auth_strength": "mfa"},
        {"id": "u-1", "type": "human", "privileged": False, "privilege_tier": 0, "vip": False, "status": "active"},
        context={"recent_credential_change_hours": 72.0000001},
    )
    req = parse_request(doc)
    native = _verdict(stock_engines["native"], req)
    assert native["level"] == "step_up"  # type: ignore[index]  # outside the 72 h window
    assert _verdict(stock_engines["opa-go"], req) == native
    assert _verdict(stock_engines["rego"], req) == native  # rego: callback, chained_credential_change


@pytest.mark.xfail(strict=True, reason="BUG-3: the model accepts hours=inf, which is not JSON: OPA cannot evaluate it")
def test_bug3_infinite_hours_is_valid_but_not_evaluable(stock_engines: dict[str, Engine]) -> None:
    doc = _nhi_owner_request(recent_credential_change_hours=math.inf)
    try:
        req = parse_request(doc)
    except Exception:  # noqa: BLE001 - the fix may be to refuse it: then this is not a defect
        return
    assert _verdict(stock_engines["opa-go"], req) == _verdict(stock_engines["native"], req)


@pytest.mark.xfail(strict=True, reason=(
    "BUG-8: hours >= 1.7976931348623155e308 (the two largest doubles) make regopy's output unparsable; "
    "RegoEngine.evaluate raises a bare json.JSONDecodeError instead of an EngineError"))
def test_bug8_rego_engine_fails_with_an_engine_error_on_the_largest_doubles(stock_engines: dict[str, Engine]) -> None:
    from helpdesk_policy import EngineError

    doc = _scenario(  # the chained-change rule compares these hours with the window
        "password_reset", "self_service_portal",
        {"id": "u-1", "type": "human", "relationship": "self", "authenticated": True, "auth_strength": "mfa"},
        {"id": "u-1", "type": "human", "privileged": False, "privilege_tier": 0, "vip": False, "status": "active"},
        context={"recent_credential_change_hours": 1.7976931348623157e308},
    )
    try:
        req = parse_request(doc)
    except Exception:  # noqa: BLE001 - refusing such hours is a fix too
        return
    try:
        raw = stock_engines["rego"].evaluate(req)
    except EngineError:
        return  # the engine contract (engines/base.py): a failure is an EngineError
    assert Verdict.model_validate(raw).model_dump(mode="json") == _verdict(stock_engines["native"], req)


@pytest.mark.xfail(strict=True, reason=(
    "BUG-9: rego-cpp min()/max()/sort() order numbers as strings (min({3, 10}) == 10): levels.raise(base, n) "
    "is undefined for base + n >= 10, risk_compound vanishes and rego decides lower than native and OPA"))
def test_bug9_rego_compound_risk_with_ten_medium_signals() -> None:
    from helpdesk_policy.models import RiskSignal

    cfg = load_config({"high_risk_signals": []})  # every signal is "medium"
    engines = _three_engines(PolicySet(config=cfg))
    doc = _scenario(
        "account_unlock", "self_service_portal",
        {"id": "u-1", "type": "human", "relationship": "self", "authenticated": True, "auth_strength": "mfa"},
        {"id": "u-1", "type": "human", "privileged": False, "privilege_tier": 0, "vip": False, "status": "active"},
        context={"risk_signals": [s.value for s in RiskSignal]},
    )
    req = parse_request(doc)
    try:
        native = _verdict(engines["native"], req)
        assert native["level"] == "callback"  # type: ignore[index]  # risk_compound: 10 medium signals
        assert _verdict(engines["opa-go"], req) == native
        assert _verdict(engines["rego"], req) == native  # rego: step_up, no risk_compound
    finally:
        engines["opa-go"].close()
