"""Hypothesis strategies for testing helpdesk-policy decisions in your own suite.

Install the extra: ``pip install 'helpdesk-policy[testing]'``.

* :func:`requests` generates **valid** :class:`~helpdesk_policy.models.Request`
  objects over the whole vocabulary: human, non-human (NHI) and AI-agent or
  service requesters, every action, channel, status and risk signal, optional
  NHI facts sometimes missing, and the fields that depend on each other kept
  consistent (``relationship`` is ``self`` exactly when ``actor.id == target.id``
  in canonical form, and then the actor is of the target's kind,
  ``authenticated`` is false exactly when ``auth_strength`` is ``none``,
  ``service_account_create`` only targets an NHI). Identifiers are any
  printable text (fullwidth, accented, mixed case…), never control or format
  characters.
* :func:`request_dicts` gives the same requests as plain JSON-ready dicts,
  the form a ticketing webhook sends.
* :func:`configs` generates **valid** :class:`~helpdesk_policy.config.PolicyConfig`
  objects by varying the stock config, every validator satisfied.

Every field can be pinned or narrowed, with a value (pinned) or a hypothesis
strategy (narrowed), named in any of four ways:

========================================  =====================================
``**{"target.privilege_tier": 2}``        the dotted path (always works)
``privilege_tier=2``                      the bare field name, when only one
                                          section has it (``id`` and ``type``
                                          are ambiguous: a TypeError says so)
``target_type="api_key"``                 ``<section>_<field>``, for any field
``target={"privileged": True, ...}``      a section and a mapping of its fields
========================================  =====================================

Unnamed fields are drawn over the whole vocabulary, the optional facts of
policy v2 included, each sometimes missing (``None``, read as its riskiest
value):

==========================================  ====================================
``requested_privilege_tier=2``              tier of the access asked for (0..9)
``consent_scope="low"``,                    an OAuth consent's scope and reach
``consent_tenant_wide=False``
``publisher_verified=True``                 the OAuth app's publisher is verified
``runs_as="svc-bot"``                       the identity an agent runs as
``manager="u-2"``                           the target's manager of record
``contact_age_days=45``                     age of the target's contact of record
``holds_secret=False``                      a secretless (federated) NHI
``enrolled_factor_available=True``          a factor still enrolled (from the IdP)
``action="temporary_access_pass"``          the temporary MFA bypass action
==========================================  ====================================

Without an override, the values the rules compare are drawn to collide often:
``on_behalf_of`` and ``runs_as`` are often the target or one of its owners (an
agent acting for the holder, or on the identity it runs as), ``manager`` often
the requester or the person an agent acts for; environments come in inventory
spellings (``PROD``, `` Prod ``, ``staging``, ``Dev``, ``prd``), and roles
include the security and helpdesk roles of the stock config.

>>> from hypothesis import given, settings, strategies as st
>>> from helpdesk_policy import HelpdeskPolicy, Level
>>> from helpdesk_policy.testing import requests
>>> policy = HelpdeskPolicy(engine="native")
>>> @settings(max_examples=30)
... @given(requests(**{"request.action": "mfa_reset",
...                    "target.type": "human",
...                    "target.privilege_tier": st.integers(2, 9)}))
... def test_privileged_mfa_reset_needs_a_callback(req):
...     assert policy.decide(req).level >= Level.CALLBACK
>>> test_privileged_mfa_reset_needs_a_callback()

The keyword form reads better when the name is unambiguous:

>>> @settings(max_examples=30)
... @given(requests(action="delegated_admin", actor_type="ai_agent", relationship="self"))
... def test_agents_never_make_themselves_admin(req):
...     assert policy.decide(req).level is Level.DENY
>>> test_agents_never_make_themselves_admin()

and a section mapping groups the fields of one section:

>>> @settings(max_examples=30)
... @given(requests(action="mfa_reset", channel="phone",
...                 target={"type": "human", "privileged": True, "privilege_tier": st.integers(1, 9)}))
... def test_phone_mfa_reset_of_a_privileged_account(req):
...     assert req.target.privileged and req.request.channel.value == "phone"
...     assert policy.decide(req).level >= Level.CALLBACK
>>> test_phone_mfa_reset_of_a_privileged_account()
>>> requests(target={"privilege_teir": 2})
Traceback (most recent call last):
  ...
TypeError: requests(): unknown field 'target.privilege_teir'; fields of target are ['id', 'type', 'privileged', 'privilege_tier', 'vip', 'status', 'environment', 'owners', 'owner_active', 'secret_age_days', 'consumers', 'in_secrets_manager', 'manager', 'contact_age_days', 'publisher_verified', 'holds_secret']

Overrides never yield an invalid request: fields that depend on an override
follow it (pinning ``relationship="self"`` makes ``target.id`` equal
``actor.id``), a drawn combination that cannot be valid is discarded, and a
pinned value that can never be valid is refused at once:

>>> requests(privilege_tier=12)
Traceback (most recent call last):
  ...
ValueError: requests(): override target.privilege_tier=12 is not a valid value: Input should be less than or equal to 9

Configs work the same way, by top-level key (or ``action_baseline.<action>``):

>>> from helpdesk_policy.testing import configs
>>> @settings(max_examples=10)
... @given(configs(strict_level="deny"), requests())
... def test_every_config_decides(cfg, req):
...     assert HelpdeskPolicy(engine="native", config=cfg).decide(req).level in Level
>>> test_every_config_decides()
"""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable, Mapping
from datetime import datetime, timezone
from typing import Any, TypeVar

try:
    from hypothesis import reject
    from hypothesis import strategies as st
    from hypothesis.strategies import SearchStrategy
except ImportError as exc:  # pragma: no cover - exercised by a subprocess test
    raise ImportError(
        "helpdesk_policy.testing needs the 'testing' extra: pip install 'helpdesk-policy[testing]'"
    ) from exc

from pydantic import BaseModel, ValidationError

from .config import PolicyConfig, load_config
from .levels import Level
from .models import (
    AUTH_STRENGTH_ORDER,
    CHANNEL_TRUST_ORDER,
    MAX_COUNT,
    MAX_ID_LENGTH,
    Action,
    Actor,
    ActorType,
    AuthStrength,
    Channel,
    ConsentScope,
    Context,
    Relationship,
    Request,
    RequestInfo,
    RiskSignal,
    Target,
    TargetStatus,
    TargetType,
    canonical_identifier,
    field_adapter,
    printable_problem,
    self_kind_matches,
)

__all__ = ["requests", "request_dicts", "configs", "REQUEST_FIELDS", "CONFIG_FIELDS"]

_T = TypeVar("_T")

#: Sections of a request and the model of each (the request contract).
_SECTIONS: dict[str, type[BaseModel]] = {
    "request": RequestInfo,
    "actor": Actor,
    "target": Target,
    "context": Context,
}

#: Every request leaf, as the dotted path an override names.
REQUEST_FIELDS: tuple[str, ...] = tuple(
    f"{section}.{name}" for section, model in _SECTIONS.items() for name in model.model_fields
)

#: Every top-level config key an override may name (plus ``action_baseline.<action>``).
CONFIG_FIELDS: tuple[str, ...] = tuple(PolicyConfig.model_fields)


def _request_aliases() -> dict[str, str]:
    # Bare leaf names where unambiguous (``action``), and ``<section>_<leaf>``
    # for every leaf (``target_type``), so keyword arguments can name any field.
    by_leaf: dict[str, list[str]] = {}
    for path in REQUEST_FIELDS:
        by_leaf.setdefault(path.split(".", 1)[1], []).append(path)
    aliases = {leaf: paths[0] for leaf, paths in by_leaf.items() if len(paths) == 1}
    aliases.update({path.replace(".", "_", 1): path for path in REQUEST_FIELDS})
    return aliases


_REQUEST_ALIASES = _request_aliases()
_AMBIGUOUS = {
    path.split(".", 1)[1]
    for path in REQUEST_FIELDS
    if sum(p.split(".", 1)[1] == path.split(".", 1)[1] for p in REQUEST_FIELDS) > 1
}


# ------------------------------------------------------------------ field checks


def _field_error(model: type[BaseModel], name: str, value: Any) -> str | None:
    # One field validated on its own, with the constraints the model declares,
    # so a generated or pinned value is checked against the model as it is
    # today (if the model tightens a bound, generation follows).
    try:
        field_adapter(model, name).validate_python(value)
    except ValidationError as exc:
        return "; ".join(e["msg"] for e in exc.errors(include_input=False, include_url=False))
    return None


def _request_field_ok(path: str) -> Callable[[Any], bool]:
    section, name = path.split(".", 1)
    model = _SECTIONS[section]
    return lambda value: _field_error(model, name, value) is None


def _plain(value: Any) -> Any:
    """Enums to their values, sets to sorted lists: the JSON form the models parse."""
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted(_plain(v) for v in value)
    if isinstance(value, Mapping):
        return {_plain(k): _plain(v) for k, v in value.items()}
    return value


# ---------------------------------------------------------- default vocabularies

_ACTIONS = [a.value for a in Action]
_NHI_TYPES = [t.value for t in TargetType if t.is_nhi]
_NON_SELF = [r.value for r in Relationship if r is not Relationship.SELF]
_STRONG = [s.value for s in AuthStrength if s is not AuthStrength.NONE]

#: Characters an identifier may hold (models.printable_problem refuses the rest).
_PRINTABLE = st.characters(exclude_categories=("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp"))


def _printable_text(max_size: int, *, identifier: bool = False) -> SearchStrategy[str]:
    """Printable text the models accept: no surrounding whitespace, and for an
    identifier a canonical form that is valid too (NFKC can add a leading space)."""
    def valid(s: str) -> bool:
        if printable_problem(s) is not None:
            return False
        if not identifier:
            return True
        c = canonical_identifier(s)
        return len(c) <= MAX_ID_LENGTH and printable_problem(c) is None and canonical_identifier(c) == c

    return st.text(_PRINTABLE, min_size=1, max_size=max_size).filter(valid)


#: A small pool of identifiers, so owners, principals and actors collide often
#: (an actor who owns the NHI, an agent acting for the target), the same ids in
#: other spellings (one identity once canonical), plus any printable text.
_ID_POOL = ["u-1", "u-2", "u-3", "mgr-1", "svc-1", "key-1", "bot-1"]
_ID_SPELLINGS = ["U-1", "Ｕ-２", "BOT-1", "ｂｏｔ-1", "Key-1"]
_IDS: SearchStrategy[str] = st.one_of(
    st.sampled_from(_ID_POOL), st.sampled_from(_ID_SPELLINGS), _printable_text(24, identifier=True)
)

#: Counts: mostly small (thresholds live there), sometimes anything the model
#: accepts, because integrations do send absurd numbers.
_COUNTS: SearchStrategy[int] = st.one_of(st.just(0), st.integers(0, 40), st.integers(min_value=0))

#: Hours: whole numbers, values just beside a whole number (config thresholds
#: are whole hours, so that is where rounding bites; 24, 72 and 168 are the
#: usual windows), and any non-negative float.
_HOURS: SearchStrategy[float] = st.one_of(
    st.integers(0, 200).map(float),
    st.tuples(
        st.one_of(st.integers(0, 200), st.sampled_from([24, 72, 168])),
        st.sampled_from([1e-9, 1e-7, -1e-7, 0.5]),
    ).map(lambda t: max(0.0, t[0] + t[1])),
    st.floats(min_value=0, allow_nan=False),
)

#: Environments as inventories spell them: production in several spellings
#: (every unrecognised spelling is production), and non-production ones in
#: other cases and with padding, which validation canonicalises (trimmed,
#: case-folded) so they stay non-production.
_ENVIRONMENTS = ["production", "prod", "PROD", " Prod ", "Production", "prd", "live",
                 "staging", "Staging", "dev", "Dev", " DEV ", "test", "qa", "sandbox", "uat"]
#: Roles: ordinary ones, and the security and helpdesk roles of the stock
#: config (in other spellings too: roles are compared canonical).
_ROLES = ["employee", "contractor", "admin", "helpdesk", "service_desk", "security", "security_operations",
          "incident_response", "Security", "HelpDesk"]
#: What a config string the policy compares with a request may hold
#: (config.DataString): printable ASCII but '"' and '\\', no surrounding space.
_CONFIG_TEXT = st.text(
    st.characters(min_codepoint=0x20, max_codepoint=0x7E, exclude_characters='"\\'), min_size=1, max_size=16
).filter(lambda s: s == s.strip())

_TIMES = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.sampled_from([timezone.utc, None])
).map(lambda d: d.isoformat())


def _maybe(strategy: SearchStrategy[_T]) -> SearchStrategy[_T | None]:
    return st.one_of(st.none(), strategy)


#: Default strategy per leaf (JSON values). Fields that depend on another
#: (ids, relationship, authentication, target type, owners) are drawn in
#: :func:`_request_doc`; their entries here are what they start from.
_REQUEST_DEFAULTS: dict[str, SearchStrategy[Any]] = {
    "request.id": st.one_of(st.integers(1, 99999).map(lambda n: f"INC-{n}"), _printable_text(32)),
    "request.action": st.sampled_from(_ACTIONS),
    "request.channel": st.sampled_from([c.value for c in Channel]),
    "request.justification": _maybe(st.text(max_size=120)),
    "request.emergency": st.booleans(),
    "request.requested_at": _maybe(_TIMES),
    "actor.id": _IDS,
    "actor.type": st.sampled_from([t.value for t in ActorType]),
    "actor.relationship": st.sampled_from([r.value for r in Relationship]),
    "actor.authenticated": st.booleans(),
    "actor.auth_strength": st.sampled_from([s.value for s in AuthStrength]),
    "actor.on_behalf_of": _maybe(_IDS),
    "actor.roles": st.lists(st.one_of(st.sampled_from(_ROLES), _IDS), max_size=3),
    "actor.runs_as": _maybe(_IDS),
    "target.id": _IDS,
    # Half human, half one of the six NHI kinds.
    "target.type": st.one_of(st.just(TargetType.HUMAN.value), st.sampled_from(_NHI_TYPES)),
    "target.privileged": st.booleans(),
    "target.privilege_tier": st.integers(0, 9),
    "target.vip": st.booleans(),
    # Mostly active (most tickets are), every status reachable.
    "target.status": st.one_of(st.just(TargetStatus.ACTIVE.value), st.sampled_from([s.value for s in TargetStatus])),
    "target.environment": _maybe(st.one_of(st.sampled_from(_ENVIRONMENTS), _printable_text(64))),
    "target.owners": st.lists(_IDS, max_size=3),
    "target.owner_active": _maybe(st.booleans()),
    "target.secret_age_days": _maybe(_COUNTS),
    "target.consumers": _maybe(_COUNTS),
    "target.in_secrets_manager": _maybe(st.booleans()),
    "target.manager": _maybe(_IDS),
    # Around the stock callback_contact_min_age_days (30), where the rule bites.
    "target.contact_age_days": _maybe(st.one_of(st.integers(25, 35), _COUNTS)),
    "target.publisher_verified": _maybe(st.booleans()),
    "target.holds_secret": _maybe(st.booleans()),
    "context.risk_signals": st.lists(st.sampled_from([s.value for s in RiskSignal]), max_size=6),
    "context.failed_verifications_24h": _COUNTS,
    "context.recent_credential_change_hours": _maybe(_HOURS),
    "context.enrolled_factor_available": _maybe(st.booleans()),
    "request.requested_privilege_tier": _maybe(st.integers(0, 9)),
    "request.consent_scope": _maybe(st.sampled_from([c.value for c in ConsentScope])),
    "request.consent_tenant_wide": _maybe(st.booleans()),
}
# Keep the numbers inside what the model accepts today: if it gains a bound
# (a maximum count, finite hours), generation follows instead of rejecting
# whole requests. Other fields are drawn from the vocabulary itself; filtering
# them too would only cost time.
_NUMERIC = ("target.privilege_tier", "target.secret_age_days", "target.consumers", "target.contact_age_days",
            "context.failed_verifications_24h", "context.recent_credential_change_hours",
            "request.requested_privilege_tier")
_REQUEST_DEFAULTS.update({p: _REQUEST_DEFAULTS[p].filter(_request_field_ok(p)) for p in _NUMERIC})


# -------------------------------------------------------------------- overrides


def _expand_sections(overrides: Mapping[str, Any]) -> list[tuple[str, Any]]:
    """``target={"privileged": True}`` -> ``("target.privileged", True)``; other keys as given."""
    out: list[tuple[str, Any]] = []
    for key, value in overrides.items():
        if key not in _SECTIONS:
            out.append((key, value))
            continue
        if not isinstance(value, Mapping):
            raise TypeError(f"requests(): {key}= takes a mapping of its fields (e.g. {key}={{...: value}}); "
                            f"to narrow one field with a strategy, put the strategy inside the mapping")
        leaves = list(_SECTIONS[key].model_fields)
        for leaf, leaf_value in value.items():
            if leaf not in leaves:
                raise TypeError(f"requests(): unknown field '{key}.{leaf}'; fields of {key} are {leaves}")
            out.append((f"{key}.{leaf}", leaf_value))
    return out


def _normalise_request_overrides(overrides: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in _expand_sections(overrides):
        path = key if key in REQUEST_FIELDS else _REQUEST_ALIASES.get(key)
        if path is None:
            if key in _AMBIGUOUS:
                options = [p for p in REQUEST_FIELDS if p.endswith("." + key)]
                raise TypeError(f"requests(): {key!r} is ambiguous; name one of {options} (or e.g. actor_{key}=...)")
            raise TypeError(f"requests(): unknown field {key!r}; fields are {list(REQUEST_FIELDS)}")
        if path in out:
            raise TypeError(f"requests(): {path} is overridden twice ({key!r})")
        out[path] = value
    return out


def _pinned_values(overrides: Mapping[str, Any], check: Callable[[str, Any], str | None], who: str) -> dict[str, Any]:
    """Validate every pinned (non-strategy) override now, so that a value that
    can never be valid fails loudly instead of filtering every example away."""
    pinned: dict[str, Any] = {}
    for path, value in overrides.items():
        if isinstance(value, SearchStrategy):
            continue
        plain = _plain(value)
        problem = check(path, plain)
        if problem is not None:
            raise ValueError(f"{who}: override {path}={value!r} is not a valid value: {problem}")
        pinned[path] = plain
    return pinned


def _check_request_field(path: str, value: Any) -> str | None:
    section, name = path.split(".", 1)
    return _field_error(_SECTIONS[section], name, value)


def _check_pinned_request(p: Mapping[str, Any]) -> None:
    # The model's cross-field rules, for values pinned together.
    problems = []
    if "actor.relationship" in p and "actor.id" in p and "target.id" in p:
        if (p["actor.relationship"] == "self") != _same_id(p["actor.id"], p["target.id"]):
            problems.append("actor.relationship is 'self' exactly when actor.id == target.id (in canonical form)")
    if p.get("actor.relationship") == "self" and "actor.type" in p and "target.type" in p:
        if not _kinds_match(p["actor.type"], p["target.type"]):
            problems.append("relationship 'self' needs an actor.type of the target.type's kind")
    if "actor.authenticated" in p and "actor.auth_strength" in p:
        if p["actor.authenticated"] == (p["actor.auth_strength"] == "none"):
            problems.append("actor.authenticated is false exactly when actor.auth_strength is 'none'")
    if p.get("request.action") == "service_account_create" and p.get("target.type") == "human":
        problems.append("service_account_create needs a non-human target.type")
    if problems:
        raise ValueError("requests(): the pinned overrides can never be valid together: " + "; ".join(problems))


def _same_id(a: str, b: str) -> bool:
    return canonical_identifier(a) == canonical_identifier(b)


def _kinds_match(actor_type: str, target_type: str) -> bool:
    try:
        return self_kind_matches(ActorType(actor_type), TargetType(target_type))
    except ValueError:  # not a vocabulary word: the model refuses it anyway
        return False


#: For relationship 'self': the actor type a target type's identity has, and
#: the target types an actor type can be (models.self_kind_matches).
_SELF_ACTOR = {t.value: next(a.value for a in ActorType if self_kind_matches(a, t)) for t in TargetType}
_SELF_TARGETS = {a.value: [t.value for t in TargetType if self_kind_matches(a, t)] for a in ActorType}


def _as_strategy(value: Any) -> SearchStrategy[Any]:
    return value if isinstance(value, SearchStrategy) else st.just(_plain(value))


# --------------------------------------------------------------------- requests


@st.composite
def _request_doc(draw: Callable[[SearchStrategy[Any]], Any], overrides: Mapping[str, SearchStrategy[Any]]) -> dict[str, Any]:
    def pick(path: str) -> Any:
        return _plain(draw(overrides.get(path, _REQUEST_DEFAULTS[path])))

    def override(path: str) -> Any:
        # An overridden value, or None when the field is free.
        return _plain(draw(overrides[path])) if path in overrides else None

    doc: dict[str, dict[str, Any]] = {section: {} for section in _SECTIONS}
    # Simple leaves first; the dependent ones below overwrite their entries.
    # A field the model gained after this module was written has no default
    # strategy: it is left to its model default unless overridden.
    for path in REQUEST_FIELDS:
        if path not in _DEPENDENT and (path in _REQUEST_DEFAULTS or path in overrides):
            section, name = path.split(".", 1)
            doc[section][name] = pick(path)

    # relationship is 'self' exactly when the ids are equal (in canonical
    # form): whichever of the three is free follows the ones that are given.
    rel, actor_id, target_id = override("actor.relationship"), override("actor.id"), override("target.id")
    if rel is None:
        if actor_id is not None and target_id is not None:
            rel = "self" if _same_id(actor_id, target_id) else draw(st.sampled_from(_NON_SELF))
        else:
            rel = pick("actor.relationship")
    is_self = rel == Relationship.SELF.value
    if is_self:
        if actor_id is None:
            actor_id = target_id if target_id is not None else pick("actor.id")
        if target_id is None:
            target_id = actor_id
        if not _same_id(actor_id, target_id):
            reject()
    else:
        if actor_id is None:
            actor_id = _other_id(draw, "actor.id", target_id)
        if target_id is None:
            target_id = _other_id(draw, "target.id", actor_id)
        if _same_id(actor_id, target_id):
            reject()

    # service_account_create only makes sense for (and is only valid with) an
    # NHI; and an actor that is the target ('self') is of the target's kind.
    action = doc["request"]["action"]
    actor_type = override("actor.type")
    if "target.type" in overrides:
        target_type = override("target.type")
    else:
        choices = _NHI_TYPES if action == Action.SERVICE_ACCOUNT_CREATE.value else None
        if is_self and actor_type in _SELF_TARGETS:
            choices = [t for t in _SELF_TARGETS[actor_type] if choices is None or t in choices]
            if not choices:
                reject()  # a pinned human actor that is the target of service_account_create
        target_type = draw(st.sampled_from(choices)) if choices else pick("target.type")
    if actor_type is None:
        actor_type = _SELF_ACTOR.get(target_type) if is_self else pick("actor.type")
    if action == Action.SERVICE_ACCOUNT_CREATE.value and target_type == TargetType.HUMAN.value:
        reject()  # only reachable when overrides draw both
    if is_self and not _kinds_match(actor_type, target_type):
        reject()  # only reachable when overrides draw both

    # authenticated is false exactly when auth_strength is 'none'.
    authenticated, strength = override("actor.authenticated"), override("actor.auth_strength")
    if authenticated is None and strength is None:
        strength = pick("actor.auth_strength")
    if authenticated is None:
        authenticated = strength != AuthStrength.NONE.value
    if strength is None:
        strength = draw(st.sampled_from(_STRONG)) if authenticated else AuthStrength.NONE.value
    if authenticated == (strength == AuthStrength.NONE.value):
        reject()

    # Owners: sometimes the actor is one of them (an owner asking for their NHI).
    if "target.owners" in overrides:
        owners = override("target.owners")
    else:
        owners = pick("target.owners")
        if draw(st.booleans()):
            owners = [actor_id, *owners]

    # Who an agent acts for, the identity it runs as, and the target's manager
    # of record: often the identities the rules compare them with (the
    # target, an owner, the requester), so the relationship of record, agent
    # self-privilege through a proxy identity and the approver constraint
    # fire often; otherwise any id, or none.
    related = [target_id, *owners] if owners else [target_id]
    if "actor.on_behalf_of" in overrides:
        on_behalf_of = override("actor.on_behalf_of")
    else:
        on_behalf_of = draw(st.one_of(_REQUEST_DEFAULTS["actor.on_behalf_of"], st.sampled_from(related)))
    if "actor.runs_as" in overrides:
        runs_as = override("actor.runs_as")
    else:
        runs_as = draw(st.one_of(_REQUEST_DEFAULTS["actor.runs_as"], st.sampled_from(related)))
    if "target.manager" in overrides:
        manager = override("target.manager")
    else:
        principals = [actor_id] if on_behalf_of is None else [actor_id, on_behalf_of]
        manager = draw(st.one_of(_REQUEST_DEFAULTS["target.manager"], st.sampled_from(principals)))

    doc["request"]["action"] = action
    doc["actor"]["type"] = actor_type
    doc["target"]["type"] = target_type
    doc["actor"].update(id=actor_id, relationship=rel, authenticated=authenticated, auth_strength=strength,
                        on_behalf_of=on_behalf_of, runs_as=runs_as)
    doc["target"].update(id=target_id, owners=owners, manager=manager)
    return doc


def _other_id(draw: Callable[[SearchStrategy[Any]], Any], path: str, other: str | None) -> str:
    # An id different from ``other`` without a filter: hypothesis analyses the
    # source of every new filter lambda, which is slow when built per draw.
    value: str = draw(_REQUEST_DEFAULTS[path])
    if other is not None and _same_id(value, other):
        value = draw(st.sampled_from([i for i in _ID_POOL if not _same_id(i, other)]))
    return value


_DEPENDENT = frozenset(
    {"target.type", "actor.type", "actor.id", "target.id", "actor.relationship", "actor.authenticated",
     "actor.auth_strength", "target.owners", "actor.on_behalf_of", "actor.runs_as", "target.manager"}
)


def _validated(doc: dict[str, Any]) -> Request:
    try:
        return Request.model_validate(doc)
    except ValidationError:
        reject()  # a strategy override drew a value or combination the model refuses
        raise AssertionError("unreachable") from None  # pragma: no cover - reject() raises


def requests(**overrides: Any) -> SearchStrategy[Request]:
    """A strategy of valid :class:`~helpdesk_policy.models.Request` objects.

    Args:
        **overrides: pin or narrow fields. Keys are dotted paths
            (``"target.type"``, pass them with ``**{...}``), bare leaf names where
            unambiguous (``action``, ``channel``, ``privilege_tier``),
            ``<section>_<leaf>`` (``target_type``, ``actor_id``), or a section
            (``request``, ``actor``, ``target``, ``context``) with a mapping of
            its leaves. Values are a value (an enum member or its string) or a
            hypothesis strategy.

    Returns:
        A strategy whose every example passes the model's validation. Fields
        that depend on an overridden one follow it; drawn combinations that
        cannot be valid are discarded.

    Raises:
        TypeError: an unknown or ambiguous field name.
        ValueError: a pinned value, or a combination of pinned values, that can
            never be valid.

    Examples:
        >>> from hypothesis import given, settings, strategies as st
        >>> from helpdesk_policy.testing import requests
        >>> @settings(max_examples=20)
        ... @given(requests(target_type=st.sampled_from(["api_key", "oauth_app"]), action="api_key_reissue"))
        ... def test_shape(req):
        ...     assert req.target.type.is_nhi and req.request.action.value == "api_key_reissue"
        >>> test_shape()
        >>> requests(id="x")
        Traceback (most recent call last):
          ...
        TypeError: requests(): 'id' is ambiguous; name one of ['request.id', 'actor.id', 'target.id'] (or e.g. actor_id=...)
    """
    paths = _normalise_request_overrides(overrides)
    pinned = _pinned_values(paths, _check_request_field, "requests()")
    _check_pinned_request(pinned)
    strategies = {path: _as_strategy(value) for path, value in paths.items()}
    return _request_doc(strategies).map(_validated)


def request_dicts(**overrides: Any) -> SearchStrategy[dict[str, Any]]:
    """The requests of :func:`requests` as JSON-ready dicts (every field present).

    Args:
        **overrides: as for :func:`requests`.

    Returns:
        A strategy of dicts that :func:`helpdesk_policy.parse_request` accepts.

    Examples:
        >>> from hypothesis import given, settings
        >>> from helpdesk_policy import parse_request
        >>> from helpdesk_policy.testing import request_dicts
        >>> @settings(max_examples=20)
        ... @given(request_dicts(channel="phone"))
        ... def test_round_trip(doc):
        ...     assert doc["request"]["channel"] == "phone"
        ...     assert parse_request(doc).to_input() == doc
        >>> test_round_trip()
    """
    return requests(**overrides).map(Request.to_input)


# ---------------------------------------------------------------------- configs


@functools.lru_cache(maxsize=1)
def _stock() -> PolicyConfig:
    return load_config()


_LEVELS = [lvl.value for lvl in Level]
_BELOW_DENY = [lvl.value for lvl in Level if lvl is not Level.DENY]


def _near(stock_value: Any, varied: SearchStrategy[Any]) -> SearchStrategy[Any]:
    # Half the time a field keeps its stock value, so a config differs from
    # stock in a few places at once, like a real organisation's override file.
    return st.one_of(st.just(_plain(stock_value)), varied)


def _subsets(values: list[str]) -> SearchStrategy[list[str]]:
    return st.frozensets(st.sampled_from(values)).map(sorted)


#: Actions that issue or change a credential: never in no_credential_actions
#: (PolicyConfig refuses it).
_ISSUING = frozenset({Action.PASSWORD_RESET.value, Action.MFA_RESET.value, Action.MFA_ADD_FACTOR.value,
                      Action.TEMPORARY_ACCESS_PASS.value, Action.API_KEY_REISSUE.value,
                      Action.SECRET_ROTATION.value, Action.CONTACT_CHANGE.value})
_AUTH = [a.value for a in AUTH_STRENGTH_ORDER]
#: Config words compared with canonical request fields (environments, roles)
#: must be canonical themselves: lower-case printable ASCII.
_CANONICAL_TEXT = _CONFIG_TEXT.map(str.lower)
_CONFIG_ENVIRONMENTS = ["dev", "development", "test", "staging", "qa", "uat", "sandbox", "prod", "production"]
_CONFIG_ROLES = ["security", "security_operations", "incident_response", "helpdesk", "service_desk", "admin"]


@functools.lru_cache(maxsize=1)  # strategies are immutable; building them each draw is slow
def _config_defaults() -> dict[str, SearchStrategy[Any]]:
    s = _stock()
    channels = [c.value for c in CHANNEL_TRUST_ORDER]
    return {
        "recovery_actions": _near(s.recovery_actions, _subsets(_ACTIONS)),
        "factor_recovery_actions": _near(s.factor_recovery_actions, _subsets(_ACTIONS)),
        "factor_change_actions": _near(s.factor_change_actions, _subsets(_ACTIONS)),
        "no_credential_actions": _near(s.no_credential_actions,
                                       _subsets([a for a in _ACTIONS if a not in _ISSUING])),
        "access_actions": _near(s.access_actions, _subsets(_ACTIONS)),
        "nhi_credential_actions": _near(s.nhi_credential_actions, _subsets(_ACTIONS)),
        "remediation_actions": _near(s.remediation_actions, _subsets(_ACTIONS)),
        "containment_actions": _near(s.containment_actions, _subsets(_ACTIONS)),
        "terminate_sessions_after": _near(s.terminate_sessions_after, _subsets(_ACTIONS)),
        "strong_self_service_actions": _near(s.strong_self_service_actions, _subsets(_ACTIONS)),
        "strong_self_service_auth": _near(s.strong_self_service_auth, st.sampled_from(_AUTH)),
        "workload_min_auth_strength": _near(s.workload_min_auth_strength, st.sampled_from(_AUTH)),
        # Upward-closed in the trust order: a suffix of it, possibly empty.
        "remote_channels": _near(s.remote_channels, st.integers(0, len(channels)).map(lambda k: channels[k:])),
        "min_auth_strength": _near(s.min_auth_strength, st.sampled_from(_AUTH)),
        "vip_level": _near(s.vip_level, st.sampled_from(_BELOW_DENY)),
        "ai_agent_level": _near(s.ai_agent_level, st.sampled_from(_BELOW_DENY)),
        "non_production_environments": _near(
            s.non_production_environments,
            st.frozensets(st.one_of(st.sampled_from(_CONFIG_ENVIRONMENTS), _CANONICAL_TEXT), max_size=6).map(sorted),
        ),
        "nhi_wide_consumers": _near(s.nhi_wide_consumers, st.one_of(st.integers(1, 50), st.integers(1, MAX_COUNT))),
        "max_secret_age_days": _near(s.max_secret_age_days, st.one_of(st.integers(1, 400), st.integers(1, MAX_COUNT))),
        "security_roles": _near(
            s.security_roles, st.frozensets(st.one_of(st.sampled_from(_CONFIG_ROLES), _CANONICAL_TEXT), max_size=4).map(sorted)
        ),
        "helpdesk_roles": _near(
            s.helpdesk_roles, st.frozensets(st.one_of(st.sampled_from(_CONFIG_ROLES), _CANONICAL_TEXT), max_size=4).map(sorted)
        ),
        "high_risk_signals": _near(s.high_risk_signals, _subsets([r.value for r in RiskSignal])),
        "failed_verifications_callback": _near(s.failed_verifications_callback, st.integers(1, 10)),
        "chained_change_window_hours": _near(s.chained_change_window_hours, st.one_of(st.integers(0, 200), st.integers(0, 24 * 365))),
        "revoke_previous_within_hours": _near(s.revoke_previous_within_hours, st.integers(0, 24 * 365)),
        "revoke_compromised_within_hours": _near(s.revoke_compromised_within_hours,
                                                 st.one_of(st.just(0), st.integers(0, 24 * 365))),
        "privileged_access_max_hours": _near(s.privileged_access_max_hours, st.integers(1, 24 * 365)),
        "break_glass_hours": _near(s.break_glass_hours, st.integers(0, 24 * 365)),
        "temporary_access_pass_max_hours": _near(s.temporary_access_pass_max_hours, st.integers(1, 24 * 30)),
        "post_incident_review_within_hours": _near(s.post_incident_review_within_hours, st.integers(1, 24 * 365)),
        "callback_contact_min_age_days": _near(s.callback_contact_min_age_days,
                                               st.one_of(st.integers(0, 90), st.integers(0, 3650))),
        "nhi_governance_contact": _near(s.nhi_governance_contact,
                                        st.one_of(st.sampled_from(["nhi-governance", "security", "iam"]), _CONFIG_TEXT)),
        "strict_level": _near(s.strict_level, st.sampled_from([Level.CALLBACK.value, Level.DENY.value])),
    }


@functools.lru_cache(maxsize=1)
def _baseline_defaults() -> dict[str, SearchStrategy[Any]]:
    stock = _stock()
    return {a.value: _near(stock.action_baseline[a], st.sampled_from(_LEVELS)) for a in Action}


def _check_config_field(path: str, value: Any) -> str | None:
    if path.startswith("action_baseline."):
        return _field_error_level(value)
    problem = _field_error(PolicyConfig, path, value)
    if problem is None:
        problem = _config_single_field_rule(path, value)
    return problem


def _field_error_level(value: Any) -> str | None:
    try:
        Level(value)
    except ValueError:
        return f"must be one of {_LEVELS}"
    return None


def _config_single_field_rule(path: str, value: Any) -> str | None:
    # PolicyConfig's model-level rules that concern one field alone.
    if path in ("vip_level", "ai_agent_level") and Level(value) is Level.DENY:
        return "must be below 'deny'"
    if path == "strict_level" and Level(value) < Level.CALLBACK:
        return "must be 'callback' or 'deny'"
    if path == "remote_channels":
        ranks = sorted(CHANNEL_TRUST_ORDER.index(Channel(c)) for c in value)
        if ranks and ranks != list(range(ranks[0], len(CHANNEL_TRUST_ORDER))):
            return "must be upward-closed in CHANNEL_TRUST_ORDER"
    if path == "action_baseline" and {Action(a) for a in value} != set(Action):
        return "must give every action a level"
    if path == "no_credential_actions" and _ISSUING & set(value):
        return f"these issue or change a credential: {sorted(_ISSUING & set(value))}"
    return None


#: Config keys whose values must nest: ``small ⊆ big ∪ extra``.
_CONFIG_SUBSETS: tuple[tuple[str, str, frozenset[str]], ...] = (
    ("factor_recovery_actions", "recovery_actions", frozenset()),
    ("strong_self_service_actions", "factor_change_actions", frozenset({Action.ACCOUNT_UNLOCK.value})),
)
#: Config keys that must be at least as strong as ``min_auth_strength``.
_AT_LEAST_MIN_AUTH = ("strong_self_service_auth", "workload_min_auth_strength")


def _auth_rank(value: str) -> int:
    return _AUTH.index(value)


def _check_pinned_config(p: Mapping[str, Any]) -> None:
    # PolicyConfig's cross-key rules, for values pinned together.
    problems = []
    if isinstance(p.get("privileged_tier"), int) and isinstance(p.get("callback_tier"), int):
        if p["callback_tier"] < p["privileged_tier"]:
            problems.append("callback_tier >= privileged_tier")
    for small, big, extra in _CONFIG_SUBSETS:
        if small in p and big in p and set(p[small]) - set(p[big]) - extra:
            problems.append(f"{small} must be a subset of {big}" + (f" (plus {sorted(extra)})" if extra else ""))
    for name in _AT_LEAST_MIN_AUTH:
        if name in p and "min_auth_strength" in p and _auth_rank(p[name]) < _auth_rank(p["min_auth_strength"]):
            problems.append(f"{name} >= min_auth_strength")
    if "revoke_compromised_within_hours" in p and "revoke_previous_within_hours" in p:
        if p["revoke_compromised_within_hours"] > p["revoke_previous_within_hours"]:
            problems.append("revoke_compromised_within_hours <= revoke_previous_within_hours")
    if problems:
        raise ValueError("configs(): the pinned overrides can never be valid together: " + "; ".join(problems))


def _normalise_config_overrides(overrides: Mapping[str, Any]) -> dict[str, Any]:
    baseline_paths = {f"action_baseline.{a}" for a in _ACTIONS}
    for key in overrides:
        if key not in CONFIG_FIELDS and key not in baseline_paths:
            raise TypeError(f"configs(): unknown field {key!r}; fields are {list(CONFIG_FIELDS)} or action_baseline.<action>")
    return dict(overrides)


@st.composite
def _config_doc(draw: Callable[[SearchStrategy[Any]], Any], overrides: Mapping[str, SearchStrategy[Any]]) -> dict[str, Any]:
    stock = _stock()
    # Start from stock, so a key added to PolicyConfig later keeps its stock value.
    doc: dict[str, Any] = stock.to_data()
    drawn_below = {*_config_defaults(), "action_baseline", "privileged_tier", "callback_tier"}
    for name in CONFIG_FIELDS:  # a fixed order: hypothesis replays draws in order
        if name in overrides and name not in drawn_below:
            doc[name] = _plain(draw(overrides[name]))
    for name, default in _config_defaults().items():
        doc[name] = _plain(draw(overrides.get(name, default)))
    if "action_baseline" in overrides:
        baseline = dict(_plain(draw(overrides["action_baseline"])))
    else:
        baseline = {a: _plain(draw(strategy)) for a, strategy in _baseline_defaults().items()}
    for action in _ACTIONS:
        key = f"action_baseline.{action}"
        if key in overrides:
            baseline[action] = _plain(draw(overrides[key]))
    doc["action_baseline"] = baseline

    # callback_tier >= privileged_tier: the free one follows the given one.
    p_tier = _plain(draw(overrides["privileged_tier"])) if "privileged_tier" in overrides else None
    c_tier = _plain(draw(overrides["callback_tier"])) if "callback_tier" in overrides else None
    if p_tier is None:
        hi = c_tier if isinstance(c_tier, int) and 1 <= c_tier <= 9 else 9
        p_tier = draw(_near(min(stock.privileged_tier, hi), st.integers(1, hi)))
    if c_tier is None:
        lo = p_tier if isinstance(p_tier, int) and 1 <= p_tier <= 9 else 1
        c_tier = draw(_near(max(stock.callback_tier, lo), st.integers(lo, 9)))
    doc.update(privileged_tier=p_tier, callback_tier=c_tier)

    # The other cross-key rules: whichever key is free follows the ones given.
    for small, big, extra in _CONFIG_SUBSETS:
        if small not in overrides:
            doc[small] = sorted(set(doc[small]) & (set(doc[big]) | extra))
        elif big not in overrides:
            doc[big] = sorted(set(doc[big]) | (set(doc[small]) - extra))
    if "no_credential_actions" not in overrides:
        doc["no_credential_actions"] = sorted(set(doc["no_credential_actions"]) - _ISSUING)
    if "min_auth_strength" not in overrides:
        pinned = [doc[n] for n in _AT_LEAST_MIN_AUTH if n in overrides and doc[n] in _AUTH]
        if doc["min_auth_strength"] in _AUTH:
            doc["min_auth_strength"] = min([doc["min_auth_strength"], *pinned], key=_auth_rank)
    for name in _AT_LEAST_MIN_AUTH:
        if name not in overrides and doc["min_auth_strength"] in _AUTH:
            doc[name] = max(doc[name], doc["min_auth_strength"], key=_auth_rank)
    if "revoke_compromised_within_hours" not in overrides:
        previous = doc["revoke_previous_within_hours"]
        if isinstance(previous, int) and not isinstance(previous, bool):
            doc["revoke_compromised_within_hours"] = min(doc["revoke_compromised_within_hours"], max(previous, 0))
    elif "revoke_previous_within_hours" not in overrides:
        compromised = doc["revoke_compromised_within_hours"]
        if isinstance(compromised, int) and not isinstance(compromised, bool):
            doc["revoke_previous_within_hours"] = max(doc["revoke_previous_within_hours"], compromised)
    return doc


def _validated_config(doc: dict[str, Any]) -> PolicyConfig:
    try:
        return PolicyConfig.model_validate(doc)
    except ValidationError:
        reject()
        raise AssertionError("unreachable") from None  # pragma: no cover


def configs(**overrides: Any) -> SearchStrategy[PolicyConfig]:
    """A strategy of valid :class:`~helpdesk_policy.config.PolicyConfig` objects.

    Each example is the stock config (``load_config()``) with some fields
    varied: action sets are arbitrary subsets of the actions, ``remote_channels``
    an upward-closed suffix of the channel trust order (possibly empty), tiers
    with ``callback_tier >= privileged_tier``, ``vip_level`` and ``ai_agent_level``
    below ``deny``, ``strict_level`` ``callback`` or ``deny``, any baseline level
    per action, and every cross-key invariant kept: ``factor_recovery_actions``
    within ``recovery_actions``, ``strong_self_service_actions`` within
    ``factor_change_actions`` (plus ``account_unlock``), no credential-issuing
    action in ``no_credential_actions``, ``strong_self_service_auth`` and
    ``workload_min_auth_strength`` at least ``min_auth_strength``,
    ``revoke_compromised_within_hours`` at most ``revoke_previous_within_hours``,
    environments and roles in canonical (lower-case) form. Of two keys bound
    by an invariant, the one you leave free follows the one you give.

    Args:
        **overrides: top-level config keys (``strict_level="deny"``), or
            ``action_baseline.<action>`` with ``**{...}``; a value or a strategy.

    Returns:
        A strategy whose every example passes ``PolicyConfig`` validation.

    Raises:
        TypeError: an unknown key.
        ValueError: a pinned value that can never be valid.

    Examples:
        >>> from hypothesis import given, settings
        >>> from helpdesk_policy.testing import configs
        >>> @settings(max_examples=20)
        ... @given(configs(**{"action_baseline.mfa_reset": "callback", "privileged_tier": 3}))
        ... def test_pinned(cfg):
        ...     assert cfg.action_baseline["mfa_reset"] == "callback"
        ...     assert cfg.callback_tier >= cfg.privileged_tier == 3
        >>> test_pinned()
        >>> configs(remote_channels=["chat"])
        Traceback (most recent call last):
          ...
        ValueError: configs(): override remote_channels=['chat'] is not a valid value: must be upward-closed in CHANNEL_TRUST_ORDER
    """
    paths = _normalise_config_overrides(overrides)
    pinned = _pinned_values(paths, _check_config_field, "configs()")
    _check_pinned_config(pinned)
    strategies = {path: _as_strategy(value) for path, value in paths.items()}
    return _config_doc(strategies).map(_validated_config)


# ---------------------------------------------------------------- assertions
# The assertion helper (helpdesk_policy.expectations, which the expectation
# suites share), re-exported here so a test suite finds strategies and
# assertions in one module (the pytest plugin offers it too, without importing
# pydantic until it is used).

from .expectations import assert_decision  # noqa: E402

__all__ += ["assert_decision"]
