"""Differential tests (guarantee 3): ``rego``, ``native`` and real OPA agree exactly.

Three engines decide every generated request:

* ``rego``   — the stock Rego under regopy (rego-cpp), the embedded default;
* ``native`` — the pure-Python mirror;
* ``opa-go`` — the same Rego under OPA's own Go evaluator (``tests/oracle.py``),
  the conformance oracle: it stands in for the ``opa`` server engine, which
  evaluates the same files with the same evaluator.

"Agree" means the whole validated verdict is identical: level, allowed,
requirements, every reason with its message and refs, obligations (with their
deadlines and recipients), playbook and constraints (who may approve, whom to
call back) — not only the parity key guarantee 3 names, because people read
the messages and programs act on the refs and constraints.

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

from helpdesk_policy import (
    HelpdeskPolicy,
    Level,
    PolicyConfig,
    Request,
    Verdict,
    load_config,
    parse_request,
)
from helpdesk_policy.engines.base import Engine
from helpdesk_policy.engines.native import NativeEngine
from helpdesk_policy.engines.rego import RegoEngine
from helpdesk_policy.errors import InvalidConfigError, InvalidRequestError
from helpdesk_policy.models import MAX_COUNT, MAX_HOURS
from helpdesk_policy.policyset import PolicySet
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


def _known_defects(req: Request, cfg: PolicyConfig) -> dict[str, str]:
    """Engines known to misread this input, and why (each pinned by a strict xfail).

    None today. Fixed, with regression tests at the end of this file:

    * BUG-1 (rego): rego-cpp wraps integers above 2**63-1. Request counts and
      config thresholds are bounded by ``models.MAX_COUNT`` (10**9).
    * BUG-2 (rego): rego-cpp keeps 6 decimals of a float. Hours are bounded
      and cut to ``models.HOURS_DECIMALS`` (3) decimals before any engine reads them.
    * BUG-3 (opa-go): ``inf``/``nan`` hours are refused by the model.
    * BUG-8 (rego): unparsable regopy output raises MalformedDecisionError.
    * BUG-9 (rego): ``levels.raise`` (and every other rule) no longer uses
      rego-cpp's ``min``/``max``, which order numbers as strings.

    A new defect is added here with its own strict-xfail test, so that the
    exclusion goes away when the defect is fixed.
    """
    return {}


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
    """Tuning the config never breaks parity (guarantee 3): per generated config,
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
    """Through ``HelpdeskPolicy``: the decision documents differ only in
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

#: (name, request, documented level or None). Sources: README, docstrings.
DOCUMENTED: list[tuple[str, dict[str, Any], Level | None]] = [
    ("the documented input example", {
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
        context={"recent_credential_change_hours": 1000},
    ), Level.STEP_UP),
    ("policy v2: the same call without a change history may be a chained takeover", _scenario(
        "password_reset", "phone",
        {"id": "u-1", "type": "human", "relationship": "self", "authenticated": True, "auth_strength": "password"},
        {"id": "u-1", "type": "human", "privileged": False, "privilege_tier": 0, "vip": False, "status": "active"},
    ), Level.CALLBACK),
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
    give the same decision document, and the level the documentation states."""
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


# ------------------------------------------------------------ fixed defects
# Regression tests for the defects _known_defects() used to step around.

def _nhi_owner_request(channel: str = "self_service_portal", **context: Any) -> dict[str, Any]:
    return _scenario(
        "api_key_reissue", channel,
        {"id": "u-1", "type": "human", "relationship": "owner", "authenticated": True, "auth_strength": "mfa"},
        {"id": "key-1", "type": "api_key", "privileged": False, "privilege_tier": 0, "vip": False,
         "status": "active", "environment": "dev", "owners": ["u-1"], "owner_active": True,
         "consumers": context.pop("consumers", 2), "secret_age_days": context.pop("secret_age_days", 10),
         "in_secrets_manager": True},
        context={"risk_signals": [], **context},
    )


def _assert_refused(doc: dict[str, Any], path: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        parse_request(doc)
    assert path in info.value.paths, info.value.paths


@pytest.mark.parametrize("field", ["consumers", "secret_age_days", "failed_verifications_24h"])
@pytest.mark.parametrize("value", [MAX_COUNT + 1, INT64_MAX, 2**63, 2**64 + 1])
def test_bug1_counts_above_the_bound_are_refused(field: str, value: int) -> None:
    """BUG-1: rego-cpp wraps integers above 2**63-1 (2**63 consumers read as
    negative); every count is bounded well below, and naming the field."""
    section = "context" if field == "failed_verifications_24h" else "target"
    _assert_refused(_nhi_owner_request(**{field: value}), f"{section}.{field}")


@pytest.mark.parametrize("field", ["nhi_wide_consumers", "max_secret_age_days", "failed_verifications_callback"])
def test_bug1_config_thresholds_above_the_bound_are_refused(field: str) -> None:
    with pytest.raises(InvalidConfigError) as info:
        load_config({field: 2**63})
    assert field in info.value.paths
    assert getattr(load_config({field: MAX_COUNT}), field) == MAX_COUNT


def test_bug1_engines_agree_at_the_count_bound(stock_engines: dict[str, Engine]) -> None:
    # Over chat: off the owner's hygiene path, so the distribution counts.
    req = parse_request(_nhi_owner_request("chat", consumers=MAX_COUNT, failed_verifications_24h=MAX_COUNT,
                                           secret_age_days=MAX_COUNT))
    native = _verdict(stock_engines["native"], req)
    assert native["level"] == "callback"  # type: ignore[index]  # widely distributed, failed verifications
    assert {"nhi_widely_distributed", "failed_verifications"} <= {r["code"] for r in native["reasons"]}  # type: ignore[index]
    assert _verdict(stock_engines["rego"], req) == native
    assert _verdict(stock_engines["opa-go"], req) == native


def test_bug2_hours_are_cut_to_a_precision_every_engine_reads(stock_engines: dict[str, Engine]) -> None:
    """BUG-2: rego-cpp keeps 6 decimals of a float, so 72.0000001 h read as 72
    there and as just outside a 72 h window elsewhere. Hours are now cut down
    to 3 decimals (fail closed: a change never looks older than it is), so
    every engine reads the same number."""
    def doc(hours: float) -> dict[str, Any]:
        return _scenario(  # by phone: the chained-change rule reads the hours on remote channels
            "mfa_reset", "phone",
            {"id": "u-1", "type": "human", "relationship": "self", "authenticated": True, "auth_strength": "mfa"},
            {"id": "u-1", "type": "human", "privileged": False, "privilege_tier": 0, "vip": False, "status": "active"},
            context={"recent_credential_change_hours": hours},
        )

    for hours, stored, level in [
        (72.0000001, 72.0, "callback"),  # inside the 72 h window once cut: the stricter reading
        (72.0009999, 72.0, "callback"),
        (72.001, 72.001, "step_up"),  # what the caller wrote is kept
        (71.9999999, 71.999, "callback"),
        (1.001, 1.001, "callback"),
        (float(MAX_HOURS), float(MAX_HOURS), "step_up"),
    ]:
        req = parse_request(doc(hours))
        assert req.context.recent_credential_change_hours == stored
        native = _verdict(stock_engines["native"], req)
        assert native["level"] == level, hours  # type: ignore[index]
        assert _verdict(stock_engines["opa-go"], req) == native
        assert _verdict(stock_engines["rego"], req) == native
    _assert_refused(doc(MAX_HOURS + 0.001), "context.recent_credential_change_hours")


@pytest.mark.parametrize("hours", [math.inf, -math.inf, math.nan, RIGHT_BELOW_DBL_MAX, 1.7976931348623157e308])
def test_bug3_non_finite_or_huge_hours_are_refused(hours: float) -> None:
    """BUG-3: inf/nan are not JSON (OPA cannot evaluate them); refused, naming the field."""
    _assert_refused(_nhi_owner_request(recent_credential_change_hours=hours), "context.recent_credential_change_hours")


def test_bug8_rego_engine_fails_with_an_engine_error_on_unparsable_output(stock_engines: dict[str, Engine]) -> None:
    """BUG-8: hours >= 1.7976931348623155e308 make regopy's output unparsable.
    The model refuses such hours now, so the request is built without
    validation to reach the engine: its failure must be an EngineError (the
    engine contract, engines/base.py), not a bare json.JSONDecodeError."""
    from helpdesk_policy import EngineError
    from helpdesk_policy.errors import MalformedDecisionError
    from helpdesk_policy.models import Context

    req = parse_request(_scenario(  # the chained-change rule compares these hours with the window
        "password_reset", "phone",
        {"id": "u-1", "type": "human", "relationship": "self", "authenticated": True, "auth_strength": "mfa"},
        {"id": "u-1", "type": "human", "privileged": False, "privilege_tier": 0, "vip": False, "status": "active"},
    ))
    unchecked = req.model_copy(update={"context": Context.model_construct(
        risk_signals=[], failed_verifications_24h=0, recent_credential_change_hours=1.7976931348623157e308,
    )})
    with pytest.raises(MalformedDecisionError) as info:
        stock_engines["rego"].evaluate(unchecked)
    assert isinstance(info.value, EngineError) and info.value.engine == "rego"
    assert "1.79" not in str(info.value)  # no input value echoed
    # Through the facade such a request never reaches an engine: a model
    # instance is validated again however it was built (issue 8 item 2).
    with pytest.raises(InvalidRequestError) as refused:
        HelpdeskPolicy(engine=stock_engines["rego"], fallback=[stock_engines["native"]]).decide(unchecked)
    assert refused.value.paths == ["context.recent_credential_change_hours"]


def test_bug9_rego_compound_risk_with_ten_medium_signals() -> None:
    """BUG-9: rego-cpp min()/max()/sort() order numbers as strings (min({3, 10}) == 10),
    so levels.raise(base, n) was undefined for base + n >= 10 and rego decided lower."""
    from helpdesk_policy.models import RiskSignal

    cfg = load_config({"high_risk_signals": []})  # every signal is "medium"
    engines = _three_engines(PolicySet(config=cfg))
    for action in ("account_unlock", "delegated_admin"):  # baselines self_service and above
        doc = _scenario(  # at the walk-in desk: off the strong self-service path, where signals compound
            action, "walk_in",
            {"id": "u-1", "type": "human", "relationship": "self", "authenticated": True, "auth_strength": "mfa"},
            {"id": "u-1", "type": "human", "privileged": False, "privilege_tier": 0, "vip": False, "status": "active"},
            context={"risk_signals": [s.value for s in RiskSignal]},
        )
        req = parse_request(doc)
        try:
            native = _verdict(engines["native"], req)
            assert native["level"] == "callback"  # type: ignore[index]  # risk_compound: 10 medium signals
            assert "risk_compound" in {r["code"] for r in native["reasons"]}  # type: ignore[index]
            assert _verdict(engines["opa-go"], req) == native
            assert _verdict(engines["rego"], req) == native
        finally:
            if action == "delegated_admin":
                engines["opa-go"].close()


# --------------------------------------------- identifiers (guarantee 8, issue 8 item 1)

from unicode_ids import holds_refused_character, respelled  # noqa: E402 - tests/ is on sys.path

from helpdesk_policy.testing import request_dicts  # noqa: E402

N_UNICODE = max(600, 3 * settings.default.max_examples)


def test_parity_over_identifiers_from_the_whole_unicode_range(
    stock_engines: dict[str, Engine], example_counts: Any
) -> None:
    """Identifier fields drawn from every code point (controls, format
    characters, surrogates, unassigned ones, other spellings of one id): a
    request is refused with InvalidRequestError, never anything else, and
    always when an id holds a control or format character; a valid one is
    decided identically by native, rego and OPA's Go evaluator."""
    cfg = load_config()
    ran = {"valid": 0, "refused": 0}

    @settings(max_examples=N_UNICODE)
    @given(doc=respelled(request_dicts()))
    def check(doc: dict[str, Any]) -> None:
        try:
            req = parse_request(doc)
        except InvalidRequestError:
            ran["refused"] += 1
            return
        assert not holds_refused_character(doc), "an identifier with a control or format character was accepted"
        _assert_identical(stock_engines, req, cfg, example_counts, "parity/unicode ids")
        ran["valid"] += 1

    check()
    example_counts["parity/unicode identifiers: decided"] += ran["valid"]
    example_counts["parity/unicode identifiers: refused"] += ran["refused"]
    assert ran["valid"] >= N_UNICODE // 4 and ran["refused"] >= N_UNICODE // 10, ran


def _api_key_reissue(actor_id: str, owners: list[str], channel: str = "self_service_portal",
                     **target: Any) -> dict[str, Any]:
    return _scenario(
        "api_key_reissue", channel,
        {"id": actor_id, "type": "human", "relationship": "helpdesk_agent", "authenticated": True,
         "auth_strength": "mfa"},
        {"id": "key-1", "type": "api_key", "privileged": False, "privilege_tier": 0, "vip": False,
         "status": "active", "environment": "dev", "owners": owners, "owner_active": True, "consumers": 2,
         "secret_age_days": 10, "in_secrets_manager": True, **target},
    )


@pytest.mark.parametrize(("doc", "path"), [
    # A non-owner reissuing an API key: deny on native, step_up on rego (which read "u-7").
    (_api_key_reissue("u-7\x00attacker", ["u-7"]), "actor.id"),
    (_api_key_reissue("u-7", ["u-7\x00x"]), "target.owners.0"),
    # "production\x00x" read as "production" by rego only.
    (_api_key_reissue("u-7", ["u-7"], environment="production\x00x"), "target.environment"),
], ids=["NUL in actor.id", "NUL in an owner", "NUL in the environment"])
def test_a_nul_no_longer_splits_the_engines(stock_engines: dict[str, Engine], doc: dict[str, Any], path: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        parse_request(doc)
    assert info.value.paths == [path]
    # Written without it, all three engines agree.
    clean = json.loads(json.dumps(doc).replace("\\u0000attacker", "").replace("\\u0000x", ""))
    req = parse_request(clean)
    assert _verdict(stock_engines["rego"], req) == _verdict(stock_engines["native"], req) == _verdict(
        stock_engines["opa-go"], req)


def _agent_self(actor_id: str, relationship: str = "self") -> dict[str, Any]:
    return _scenario(
        "privilege_elevation", "api",
        {"id": actor_id, "type": "ai_agent", "relationship": relationship, "authenticated": True,
         "auth_strength": "phishing_resistant", "on_behalf_of": "u-1"},
        {"id": "agent-7", "type": "ai_agent", "privileged": False, "privilege_tier": 0, "vip": False,
         "status": "active", "environment": "dev", "owners": ["u-1"], "owner_active": True, "consumers": 1,
         "secret_age_days": 3, "in_secrets_manager": True},
    )


SPELLINGS = ["AGENT-7", "Agent-7", "ａｇｅｎｔ-７", "ＡＧＥＮＴ－７", "agent-\uff17"]


def test_an_agent_cannot_escape_a_rule_about_itself_by_spelling_its_id(stock_engines: dict[str, Engine]) -> None:
    """Guarantee 8: every spelling of the agent's own id is the agent — ai_agent_self_privilege
    fires on all three engines exactly as for the plain spelling, and claiming
    another relationship with it is refused."""
    plain = {name: _verdict(engine, parse_request(_agent_self("agent-7"))) for name, engine in stock_engines.items()}
    assert plain["native"]["level"] == "deny"  # type: ignore[index]
    assert "ai_agent_self_privilege" in {r["code"] for r in plain["native"]["reasons"]}  # type: ignore[index]
    for spelling in SPELLINGS:
        req = parse_request(_agent_self(spelling))
        assert req.actor.id == "agent-7"
        assert {name: _verdict(engine, req) for name, engine in stock_engines.items()} == plain, spelling
        for relationship in ("admin", "owner", "other"):
            with pytest.raises(InvalidRequestError) as info:
                parse_request(_agent_self(spelling, relationship))
            assert info.value.paths == ["actor.relationship"]


@pytest.mark.parametrize("spelling", ["agent-7 ", " agent-7", "agent-7\u200b", "\u200bagent-7", "agent\u00ad-7",
                                      "agent-7\u202e", "agent-7\ufeff", "agent-7\n"])
def test_an_agent_id_with_invisible_characters_is_refused(spelling: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        parse_request(_agent_self(spelling))
    assert info.value.paths == ["actor.id"]


@pytest.mark.parametrize(("actor_id", "owners", "plain_actor", "plain_owners", "owner"), [
    ("U-1", ["u-1"], "u-1", ["u-1"], True),  # the owner, spelled otherwise
    ("ｕ-１", ["u-1"], "u-1", ["u-1"], True),
    ("u-1", ["U-1", "Key-Owner"], "u-1", ["u-1", "key-owner"], True),
    ("U-2", ["u-1"], "u-2", ["u-1"], False),  # not the owner, spelled otherwise
    ("ｕ-２", ["Ｕ-1"], "u-2", ["u-1"], False),
])
def test_nhi_ownership_is_decided_on_one_spelling(
    stock_engines: dict[str, Engine], actor_id: str, owners: list[str], plain_actor: str, plain_owners: list[str],
    owner: bool,
) -> None:
    """nhi_requester_not_owner fires (or not) for every spelling as for the plain one, on all three engines."""
    expected = _verdict(stock_engines["native"], parse_request(_api_key_reissue(plain_actor, plain_owners)))
    req = parse_request(_api_key_reissue(actor_id, owners))
    for engine in stock_engines.values():
        assert _verdict(engine, req) == expected
    assert ("nhi_requester_not_owner" in {r["code"] for r in expected["reasons"]}) is not owner  # type: ignore[index]


def test_a_config_environment_no_engine_reads_alike_is_refused(stock_engines: dict[str, Engine]) -> None:
    """rego-cpp keeps a string it reads from JSON data escaped ("prod\\u00e9"),
    so "devé" would be non-production for native and OPA and not for rego.
    Environments are compared canonical (trimmed, case-folded), so config
    entries are lower-case printable ASCII."""
    for bad in ("devé", "Dev"):
        with pytest.raises(InvalidConfigError) as info:
            load_config({"non_production_environments": [bad]})
        assert info.value.paths == ["non_production_environments.0"]
    cfg = load_config({"non_production_environments": ["dev-eu"]})
    engines = _three_engines(PolicySet(config=cfg))
    try:
        for env in ("dev-eu", "devé", "DEV-EU", " Dev-Eu ", "production"):
            # Over chat: off the owner's hygiene path, so the environment counts.
            req = parse_request(_api_key_reissue("u-7", ["u-7"], "chat", environment=env))
            verdicts = [_verdict(engine, req) for engine in engines.values()]
            assert verdicts[0] == verdicts[1] == verdicts[2], env
            production = "nhi_critical_environment" in {r["code"] for r in verdicts[0]["reasons"]}  # type: ignore[index]
            assert production is (env.strip().lower() != "dev-eu")
    finally:
        for engine in engines.values():
            engine.close()


# ------------------------------------------------ policy v2: targeted parity
# Every rule family policy v2 added or reworked, on hand-written requests
# (both sides of each condition) and on generated requests narrowed to it, so
# the families are exercised however the default strategies weigh them.

_V2_BASE: dict[str, Any] = {
    "request": {"id": "INC-V2", "action": "mfa_reset", "channel": "phone"},
    "actor": {"id": "u-1", "type": "human", "relationship": "self", "authenticated": True, "auth_strength": "mfa"},
    "target": {"id": "u-1", "type": "human", "privileged": False, "privilege_tier": 0, "vip": False, "status": "active"},
    "context": {"recent_credential_change_hours": 1000, "enrolled_factor_available": True},
}

_NHI_TARGET = {"id": "svc-1", "type": "service_account", "privileged": False, "privilege_tier": 0, "vip": False,
               "status": "active", "environment": "production", "owners": ["u-2"], "owner_active": True,
               "secret_age_days": 10, "consumers": 40, "in_secrets_manager": True}

_AGENT = {"id": "bot-1", "type": "ai_agent", "relationship": "helpdesk_agent", "authenticated": True,
          "auth_strength": "phishing_resistant", "on_behalf_of": "u-1"}


def _v2(**sections: dict[str, Any]) -> dict[str, Any]:
    doc = json.loads(json.dumps(_V2_BASE))
    for section, fields in sections.items():
        if section.endswith("_replace"):
            doc[section.removesuffix("_replace")] = fields
        else:
            doc[section].update(fields)
    return doc


V2_CASES: dict[str, dict[str, Any]] = {
    # baseline: the strong paths
    "strong self-service, phishing-resistant": _v2(request={"channel": "self_service_portal"},
                                                    actor={"auth_strength": "phishing_resistant"}),
    "strong self-service with a leaked credential (remediation)": _v2(
        request={"action": "password_reset", "channel": "self_service_portal"},
        actor={"auth_strength": "phishing_resistant"}, context={"risk_signals": ["leaked_credential", "new_device"]}),
    "portal, push MFA, impossible travel": _v2(request={"action": "mfa_add_factor", "channel": "self_service_portal"},
                                               context={"risk_signals": ["impossible_travel"]}),
    "portal, failed verifications": _v2(request={"action": "password_reset", "channel": "self_service_portal"},
                                        context={"failed_verifications_24h": 4}),
    "workload rotating itself": _v2(
        request={"action": "secret_rotation", "channel": "api"},
        actor={"id": "svc-1", "type": "service", "auth_strength": "phishing_resistant"}, target_replace=_NHI_TARGET),
    "workload rotating itself with a static secret": _v2(
        request={"action": "secret_rotation", "channel": "api"},
        actor={"id": "svc-1", "type": "service", "auth_strength": "password"}, target_replace=_NHI_TARGET),
    "workload whose owner left": _v2(
        request={"action": "secret_rotation", "channel": "api"},
        actor={"id": "svc-1", "type": "service", "auth_strength": "phishing_resistant"},
        target_replace={**_NHI_TARGET, "owner_active": False}),
    "owner rotating in the portal": _v2(
        request={"action": "secret_rotation", "channel": "self_service_portal"},
        actor={"id": "u-2", "relationship": "owner"}, target_replace=_NHI_TARGET),
    "owner reissuing a leaked key over chat": _v2(
        request={"action": "api_key_reissue", "channel": "chat"}, actor={"id": "u-2", "relationship": "owner"},
        target_replace={**_NHI_TARGET, "in_secrets_manager": None}, context={"risk_signals": ["leaked_credential"]}),
    # recovery
    "phone MFA reset, no factor": _v2(actor={"authenticated": False, "auth_strength": "none"},
                                      context={"enrolled_factor_available": None}),
    "walk-in MFA reset, no factor": _v2(request={"channel": "walk_in"}, actor={"auth_strength": "password"},
                                        context={"enrolled_factor_available": False}),
    "temporary access pass by phone": _v2(request={"action": "temporary_access_pass"},
                                          actor={"authenticated": False, "auth_strength": "none"}),
    "VIP contact change by email, no history": _v2(request={"action": "contact_change", "channel": "email"},
                                                   target={"vip": True, "contact_age_days": 400},
                                                   context={"recent_credential_change_hours": None}),
    "manager of record asking": _v2(actor={"id": "u-9", "relationship": "manager"}, target={"manager": "u-9"}),
    "manager claim the directory contradicts": _v2(actor={"id": "u-9", "relationship": "manager"},
                                                  target={"manager": "u-8"}),
    "owner claim on a person": _v2(actor={"id": "u-9", "relationship": "owner"}),
    "agent for the manager of record": _v2(actor={**_AGENT, "on_behalf_of": "u-9"}, target={"manager": "u-9"}),
    "agent with no principal": _v2(actor={**_AGENT, "relationship": "manager", "on_behalf_of": None}),
    "unlock of a tier-3 admin by phone": _v2(request={"action": "account_unlock"}, target={"privilege_tier": 3}),
    # access
    "stated tier-0 grant": _v2(request={"action": "access_grant", "channel": "walk_in", "requested_privilege_tier": 0}),
    "stated tier-5 grant": _v2(request={"action": "role_change", "channel": "walk_in", "requested_privilege_tier": 5}),
    "unstated elevation of a tier-4 account": _v2(request={"action": "privilege_elevation", "channel": "walk_in"},
                                                  target={"privilege_tier": 4, "manager": "u-9"}),
    "emergency delegated admin": _v2(request={"action": "delegated_admin", "emergency": True}),
    # containment
    "holder revoking tokens": _v2(request={"action": "token_revoke"}),
    "colleague disabling a VIP": _v2(request={"action": "account_disable"},
                                     actor={"id": "u-9", "relationship": "helpdesk_agent"}, target={"vip": True}),
    "colleague revoking on a leak alert": _v2(request={"action": "token_revoke"},
                                              actor={"id": "u-9", "relationship": "helpdesk_agent"},
                                              context={"risk_signals": ["leaked_credential"]}),
    "security analyst disabling an admin": _v2(request={"action": "account_disable"},
                                               actor={"id": "u-9", "relationship": "admin", "roles": ["Security"]},
                                               target={"privilege_tier": 2}),
    "agent with no principal revoking": _v2(request={"action": "credential_revoke"},
                                            actor={**_AGENT, "on_behalf_of": None}),
    # information requests
    "holder asking about their factors": _v2(request={"action": "info_request"}),
    "stranger asking about someone's factors": _v2(request={"action": "info_request"},
                                                   actor={"id": "u-9", "relationship": "other",
                                                          "authenticated": False, "auth_strength": "none"}),
    "verified helpdesk agent asking": _v2(request={"action": "info_request", "channel": "api"},
                                          actor={"id": "u-9", "relationship": "helpdesk_agent", "roles": ["helpdesk"]}),
    # NHI
    "unlock of a production NHI by its owner": _v2(request={"action": "account_unlock", "channel": "self_service_portal"},
                                                    actor={"id": "u-2", "relationship": "owner"},
                                                    target_replace={**_NHI_TARGET, "consumers": None}),
    "grant to a secretless workload": _v2(request={"action": "access_grant", "requested_privilege_tier": 0},
                                          actor={"id": "u-2", "relationship": "owner"},
                                          target_replace={**_NHI_TARGET, "type": "workload_identity",
                                                          "holds_secret": False, "secret_age_days": None,
                                                          "in_secrets_manager": None}),
    "role change of an NHI with an unmanaged secret": _v2(request={"action": "role_change", "channel": "walk_in"},
                                                          actor={"id": "u-2", "relationship": "owner"},
                                                          target_replace={**_NHI_TARGET, "in_secrets_manager": False}),
    "creating an NHI for another owner": _v2(request={"action": "service_account_create", "channel": "walk_in"},
                                             actor={"id": "u-7", "relationship": "admin"},
                                             target_replace={**_NHI_TARGET, "secret_age_days": None}),
    # OAuth consent
    "safe consent": _v2(request={"action": "oauth_consent", "channel": "self_service_portal", "consent_scope": "low",
                                 "consent_tenant_wide": False},
                        actor={"relationship": "admin"},
                        target_replace={**_NHI_TARGET, "type": "oauth_app", "publisher_verified": True}),
    "consent with nothing stated": _v2(request={"action": "oauth_consent"}, actor={"relationship": "admin"},
                                       target_replace={**_NHI_TARGET, "type": "oauth_app", "owner_active": None}),
    # AI agents
    "agent granting the account it runs as": _v2(
        request={"action": "access_grant", "channel": "api"},
        actor={**_AGENT, "relationship": "admin", "on_behalf_of": "u-2", "runs_as": "svc-1"}, target_replace=_NHI_TARGET),
    "agent granting an NHI it co-owns": _v2(
        request={"action": "role_change", "channel": "api"}, actor={**_AGENT, "relationship": "owner", "on_behalf_of": "u-2"},
        target_replace={**_NHI_TARGET, "owners": ["u-2", "bot-1"]}),
}


@pytest.mark.parametrize("name", sorted(V2_CASES))
def test_v2_rule_families_agree(stock_engines: dict[str, Engine], name: str, example_counts: Any) -> None:
    req = parse_request(V2_CASES[name])
    _assert_identical(stock_engines, req, load_config(), example_counts, "parity/v2 cases")
    example_counts["parity/v2 hand-written cases"] += 1


#: Generated requests narrowed to one rule family each.
V2_FAMILIES: dict[str, dict[str, Any]] = {
    "strong self-service": {"channel": "self_service_portal", "actor_type": "human", "relationship": "self",
                            "target_type": "human"},
    "workload self path": {"actor_type": "service", "relationship": "self", "channel": "api",
                           "action": st.sampled_from(["api_key_reissue", "secret_rotation"])},
    "owner path": {"actor_type": "human", "relationship": "owner", "target_type": st.sampled_from(["api_key", "service_account"]),
                   "action": st.sampled_from(["api_key_reissue", "secret_rotation"])},
    "factor recovery": {"target_type": "human", "action": st.sampled_from(["mfa_reset", "mfa_add_factor", "contact_change",
                                                                            "temporary_access_pass"])},
    "access": {"action": st.sampled_from(["access_grant", "role_change", "privilege_elevation", "delegated_admin"])},
    "containment": {"action": st.sampled_from(["token_revoke", "credential_revoke", "account_disable"])},
    "information requests": {"action": "info_request"},
    "oauth consent": {"action": "oauth_consent"},
    "ai agents": {"actor_type": "ai_agent"},
}


@pytest.mark.parametrize("family", sorted(V2_FAMILIES))
def test_v2_rule_families_agree_on_generated_requests(
    stock_engines: dict[str, Engine], family: str, example_counts: Any
) -> None:
    cfg = load_config()

    @settings(max_examples=max(60, settings.default.max_examples // 4))
    @given(req=requests(**V2_FAMILIES[family]))
    def check(req: Request) -> None:
        _assert_identical(stock_engines, req, cfg, example_counts, f"parity/v2 {family}")
        example_counts[f"parity/v2 family {family}: requests"] += 1

    check()


@pytest.mark.parametrize("spelling", ['corp\\jdoe', 'a"b', "u-1\uff02", "\uff3cx"])
def test_an_identifier_no_engine_echoes_alike_is_refused(stock_engines: dict[str, Engine], spelling: str) -> None:
    """A decision echoes identifiers (constraints name the approvers, the
    excluded requester, the callback target), and rego-cpp prints '"' and
    '\\\\' inside strings unescaped: its output would stop being JSON, or read
    as another id. Identifiers holding one, as sent or once normalised
    (fullwidth quotation mark and reverse solidus), are refused."""
    doc = _v2(actor={"id": spelling}, target={"id": spelling})
    with pytest.raises(InvalidRequestError) as info:
        parse_request(doc)
    assert info.value.paths == ["actor.id", "target.id"]
    for field in ("manager", "owners"):
        bad = _v2(target={field: [spelling] if field == "owners" else spelling})
        with pytest.raises(InvalidRequestError):
            parse_request(bad)
    # The same request spelled without it is decided alike, its ids echoed.
    req = parse_request(_v2(target={"privilege_tier": 2, "manager": "corp-jdoe"}))
    verdicts = [_verdict(engine, req) for engine in stock_engines.values()]
    assert verdicts[0] == verdicts[1] == verdicts[2]
    assert verdicts[0]["constraints"]["approver"]["ids"] == ["corp-jdoe"]  # type: ignore[index]
