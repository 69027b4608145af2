"""generate_requests: valid, varied, and the same on every machine and Python version."""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from collections.abc import Callable
from typing import Any

import pytest

from helpdesk_policy import HelpdeskPolicy, Level
from helpdesk_policy.ci.generate import generate_request_dicts, generate_requests
from helpdesk_policy.models import (
    Action,
    ActorType,
    AuthStrength,
    Channel,
    Relationship,
    Request,
    RiskSignal,
    TargetStatus,
    TargetType,
)

#: sha256 of generate_request_dicts(200, seed=1) as sorted-key JSON. If this
#: changes, every published "GEN-1-…" example and every CI diff baseline
#: changes meaning: only update it on purpose (and say so in the changelog).
#: Last changed on purpose: ``relationship: self`` now requires a requester of
#: the target's kind (the request model refuses an AI agent claiming to *be*
#: a human target), so the generator draws the requester kind from the target.
GOLDEN_200_SEED_1 = "ea5c747e15740b7b79fd7bab11ece14ce151f26c7eb02cc00db49c02ca051da5"


def _digest(docs: list[dict[str, Any]]) -> str:
    return hashlib.sha256(json.dumps(docs, sort_keys=True).encode()).hexdigest()


def test_same_n_and_seed_give_the_same_requests() -> None:
    assert generate_requests(60, seed=5) == generate_requests(60, seed=5)


def test_a_shorter_run_is_a_prefix_of_a_longer_one() -> None:
    # So "--generate 500" contains every example "--generate 200" reported.
    assert generate_requests(200, seed=9) == generate_requests(500, seed=9)[:200]


def test_different_seeds_differ() -> None:
    assert generate_request_dicts(50, seed=1) != generate_request_dicts(50, seed=2)


def test_pinned_output_is_stable() -> None:
    assert _digest(generate_request_dicts(200, seed=1)) == GOLDEN_200_SEED_1


def test_independent_of_hash_randomisation() -> None:
    # Set or dict iteration order would leak PYTHONHASHSEED into the output.
    code = ("import hashlib, json; from helpdesk_policy.ci.generate import generate_request_dicts; "
            "print(hashlib.sha256(json.dumps(generate_request_dicts(200, 1), sort_keys=True).encode()).hexdigest())")
    for hash_seed in ("0", "12345"):
        env = {**os.environ, "PYTHONHASHSEED": hash_seed}
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        assert out.stdout.strip() == GOLDEN_200_SEED_1


def test_edge_sizes() -> None:
    assert generate_requests(0, seed=1) == []
    with pytest.raises(ValueError, match="n must be >= 0"):
        generate_requests(-1, seed=1)


def test_ids_are_stable_names() -> None:
    reqs = generate_requests(3, seed=42)
    assert [r.request.id for r in reqs] == ["GEN-42-00000", "GEN-42-00001", "GEN-42-00002"]


@pytest.fixture(scope="module")
def sample() -> list[Request]:
    return generate_requests(200, seed=0)


VOCABULARIES: list[tuple[str, Callable[[Request], Any], set[str]]] = [
    ("action", lambda r: [r.request.action], {a.value for a in Action}),
    ("channel", lambda r: [r.request.channel], {c.value for c in Channel}),
    ("actor.type", lambda r: [r.actor.type], {t.value for t in ActorType}),
    ("relationship", lambda r: [r.actor.relationship], {x.value for x in Relationship}),
    ("auth_strength", lambda r: [r.actor.auth_strength], {s.value for s in AuthStrength}),
    ("target.type", lambda r: [r.target.type], {t.value for t in TargetType}),
    ("status", lambda r: [r.target.status], {s.value for s in TargetStatus}),
    ("risk_signals", lambda r: r.context.risk_signals, {s.value for s in RiskSignal}),
]


@pytest.mark.parametrize(("name", "get", "expected"), VOCABULARIES, ids=[v[0] for v in VOCABULARIES])
def test_200_requests_cover_the_whole_vocabulary(sample: list[Request], name: str,
                                                 get: Callable[[Request], Any], expected: set[str]) -> None:
    seen = {v.value for r in sample for v in get(r)}
    assert seen == expected, f"{name}: missing {sorted(expected - seen)}"


def test_every_action_appears_in_any_17_consecutive_requests() -> None:
    reqs = generate_requests(17, seed=3)
    assert {r.request.action for r in reqs} == set(Action)


def test_cross_field_rules_and_optional_facts(sample: list[Request]) -> None:
    for r in sample:
        assert (r.actor.relationship is Relationship.SELF) == (r.actor.id == r.target.id)
        if r.actor.relationship is Relationship.SELF:
            # Only an identity of the target's own kind can be it.
            expected = (ActorType.HUMAN if r.target.type is TargetType.HUMAN
                        else ActorType.AI_AGENT if r.target.type is TargetType.AI_AGENT else ActorType.SERVICE)
            assert r.actor.type is expected, r.request.id
        assert r.actor.authenticated == (r.actor.auth_strength is not AuthStrength.NONE)
        if r.request.action is Action.SERVICE_ACCOUNT_CREATE:
            assert r.target.type.is_nhi
    nhis = [r.target for r in sample if r.target.type.is_nhi]
    for fact in ("environment", "owner_active", "secret_age_days", "consumers", "in_secrets_manager"):
        values = [getattr(t, fact) for t in nhis]
        assert None in values and any(v is not None for v in values), fact
    assert any(r.actor.on_behalf_of is None for r in sample if r.actor.type is ActorType.AI_AGENT)
    assert any(r.actor.on_behalf_of is not None for r in sample if r.actor.type is ActorType.AI_AGENT)
    assert {r.request.emergency for r in sample} == {True, False}
    assert {r.target.privileged for r in sample} == {True, False}
    assert {r.target.vip for r in sample} == {True, False}
    assert any(r.context.failed_verifications_24h for r in sample)
    assert any(r.context.recent_credential_change_hours is not None for r in sample)


@pytest.mark.parametrize("seed", [0, 1, 7, 123])
def test_every_generated_request_passes_the_request_model(seed: int) -> None:
    # The dicts, not Request objects built from them: validated exactly as an integration's JSON would be.
    from helpdesk_policy.models import parse_request

    for doc in generate_request_dicts(400, seed):
        parse_request(doc)


def test_decisions_span_every_level(sample: list[Request]) -> None:
    policy = HelpdeskPolicy(engine="native")
    assert {policy.decide(r).level for r in sample} == set(Level)
