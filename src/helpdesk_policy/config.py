"""The tunable policy parameters (the request contract): data, not code.

The same :class:`PolicyConfig` is read by the native engine and, serialised to
JSON, by the Rego policies as ``data.helpdesk.config``. The stock values live in
``policies/config.yaml`` (documented field by field there). Validation refuses
a config that would break a guarantee, e.g. a ``remote_channels``
set that is not upward-closed in the channel trust order, because such a config
would make a *less* trusted channel get a *lower* level.

>>> from helpdesk_policy.config import PolicyConfig, load_config
>>> cfg = load_config()                       # the stock config.yaml
>>> cfg.privileged_tier, cfg.callback_tier
(1, 2)
>>> cfg.model_copy(update={"callback_tier": 3}).callback_tier
3
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, ValidationError, model_validator
from pydantic_core import PydanticCustomError

from .errors import DocumentError, FieldError, InvalidConfigError, field_errors_from_pydantic
from .levels import Level
from .loading import load_document
from .models import (
    AUTH_STRENGTH_ORDER,
    CHANNEL_TRUST_ORDER,
    MAX_COUNT,
    Action,
    AuthStrength,
    Channel,
    RiskSignal,
    canonical_identifier,
    cross_field_error,
    field_adapter,
    printable_problem,
)
from .resources import stock_policy_dir

#: :data:`helpdesk_policy.evidence.DEFAULT_WINDOW_HOURS`, spelled here so that
#: loading a config does not import the evidence models (a cold start never
#: needs them); tests/test_models.py checks the two agree.
DEFAULT_WINDOW_HOURS = 72

__all__ = ["PolicyConfig", "load_config", "DEFAULT_CONFIG_FILE"]

DEFAULT_CONFIG_FILE = "config.yaml"

Hours = Annotated[int, Field(ge=0, le=24 * 365, strict=True)]

#: A count threshold. Bounded like the request counts it is compared with
#: (models.MAX_COUNT): rego-cpp reads integers as int64 and wraps silently
#: above 2**63-1, so an unbounded threshold could read as negative in the
#: embedded engine and fire for every request there but not in the others.
Threshold = Annotated[int, Field(ge=1, le=MAX_COUNT, strict=True)]


def _data_string(value: str) -> str:
    # Config strings are compared with request strings (an environment with
    # non_production_environments, a role with security_roles), and rego-cpp keeps a string it reads from JSON
    # data in its escaped form: "prodé" arrives as "prod\u00e9" and no longer
    # equals the same word in the input (the same for '"', '\\' and controls),
    # so the embedded engine would call an environment non-critical that the
    # others call critical. Printable ASCII other than those two reads the
    # same in every engine.
    problem = printable_problem(value)
    if problem is None and (not value.isascii() or '"' in value or "\\" in value):
        problem = "must hold printable ASCII characters other than '\"' and '\\\\' (read alike by every engine)"
    if problem is not None:
        raise PydanticCustomError("config_string", problem)
    return value


#: A string the policy compares with a request field (see _data_string).
DataString = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_data_string)]


def _canonical_data_string(value: str) -> str:
    # Compared with a request field stored in canonical form (roles,
    # environments): the config entry must already be in that form, or it
    # could never match and the rule would silently never fire.
    if canonical_identifier(value) != value:
        raise PydanticCustomError("config_canonical", "must be written in lower case (the form requests are compared in)")
    return value


#: A role name compared with ``actor.roles`` (stored canonical).
RoleName = Annotated[DataString, AfterValidator(_canonical_data_string)]
#: An environment name compared with ``target.environment`` (stored canonical).
EnvironmentName = Annotated[DataString, AfterValidator(_canonical_data_string)]


class PolicyConfig(BaseModel):
    """Organisation-tunable parameters of the stock policy.

    Each key is documented in ``policies/config.yaml``. Three are not read by
    the policy but by the facade:

    ``strict_level``
        The answer when no engine can decide (every engine in the chain
        failed; with the stock policies the native mirror ends every chain, so
        this needs a custom policy set or a broken install). ``deny`` (the
        default): ``allowed: false`` with the reason ``engine_unavailable``
        naming the formal process to use instead. ``callback`` keeps the desk
        running, but it **may be looser than the policy**, which might have
        denied the request: such decisions also carry the reason
        ``strict_level_may_be_looser``. Either way they say ``degraded: true``.

    ``exception_max_hours``
        The longest a policy exception may last, from its start to its expiry
        (default 72, at most 720). Checked when one is granted and again on
        every decision it touches, so shortening the cap stops longer
        exceptions already granted (``why_not: exceeds_policy_max``): see
        :mod:`helpdesk_policy.policy_exceptions`.

    ``evidence_window_hours``
        How old the evidence of a ticket may be when
        :meth:`HelpdeskPolicy.verify <helpdesk_policy.HelpdeskPolicy.verify>`
        checks it (default :data:`~helpdesk_policy.evidence.DEFAULT_WINDOW_HOURS`,
        72; 1 to 720): every timestamp the evidence records must lie within
        this many hours before the check.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    action_baseline: dict[Action, Level]
    recovery_actions: frozenset[Action]
    factor_recovery_actions: frozenset[Action]
    factor_change_actions: frozenset[Action]
    no_credential_actions: frozenset[Action]
    access_actions: frozenset[Action]
    nhi_credential_actions: frozenset[Action]
    remediation_actions: frozenset[Action]
    containment_actions: frozenset[Action]
    terminate_sessions_after: frozenset[Action]
    strong_self_service_actions: frozenset[Action]
    strong_self_service_auth: AuthStrength
    workload_min_auth_strength: AuthStrength
    remote_channels: frozenset[Channel]
    min_auth_strength: AuthStrength
    privileged_tier: Annotated[int, Field(ge=1, le=9, strict=True)]
    callback_tier: Annotated[int, Field(ge=1, le=9, strict=True)]
    vip_level: Level
    ai_agent_level: Level
    non_production_environments: frozenset[EnvironmentName]
    nhi_wide_consumers: Threshold
    max_secret_age_days: Threshold
    security_roles: frozenset[RoleName]
    helpdesk_roles: frozenset[RoleName]
    high_risk_signals: frozenset[RiskSignal]
    failed_verifications_callback: Threshold
    chained_change_window_hours: Hours
    revoke_previous_within_hours: Hours
    revoke_compromised_within_hours: Hours
    privileged_access_max_hours: Annotated[int, Field(ge=1, le=24 * 365, strict=True)]
    break_glass_hours: Hours
    temporary_access_pass_max_hours: Annotated[int, Field(ge=1, le=24 * 30, strict=True)]
    post_incident_review_within_hours: Annotated[int, Field(ge=1, le=24 * 365, strict=True)]
    callback_contact_min_age_days: Annotated[int, Field(ge=0, le=3650, strict=True)]
    nhi_governance_contact: DataString
    strict_level: Level = Level.DENY
    exception_max_hours: Annotated[int, Field(ge=1, le=24 * 30, strict=True)] = 72
    evidence_window_hours: Annotated[int, Field(ge=1, le=24 * 30, strict=True)] = DEFAULT_WINDOW_HOURS

    @model_validator(mode="after")
    def _invariants(self) -> PolicyConfig:
        problems = _invariant_problems(self.__dict__)
        if problems:
            raise cross_field_error(type(self).__name__, problems)
        return self

    @property
    def min_auth_rank(self) -> int:
        return AUTH_STRENGTH_ORDER.index(self.min_auth_strength)

    def to_data(self) -> dict[str, Any]:
        """The JSON document Rego reads as ``data.helpdesk.config`` (sets as sorted arrays)."""
        raw = self.model_dump(mode="json")
        return {k: sorted(v) if isinstance(v, list) else v for k, v in raw.items()}

    def canonical_json(self) -> str:
        """Stable JSON used for the policy revision digest."""
        return json.dumps(self.to_data(), sort_keys=True, separators=(",", ":"))

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, source: str | None = None) -> PolicyConfig:
        """Validate a config mapping, or raise :class:`InvalidConfigError` listing every problem.

        Field errors and broken invariants are listed together, each on its
        key; a misspelled key or value gets a "did you mean". ``source`` (the
        file the keys came from) prefixes every path: ``org.yaml: callback_tier``.
        """
        data = dict(data)
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            errors = list(field_errors_from_pydantic(exc, model=cls))
        # Pydantic skips _invariants once a field fails: check them on the
        # fields that are valid alone, so every problem is listed at once.
        valid: dict[str, Any] = {}
        for name, value in data.items():
            if name in cls.model_fields:
                try:
                    valid[name] = field_adapter(cls, name).validate_python(value)
                except ValidationError:
                    pass
        seen = {(e.path, e.message) for e in errors}
        errors += [FieldError(p, m) for p, m in _invariant_problems(valid) if (p, m) not in seen]
        if source is not None:
            errors = [FieldError(f"{source}: {e.path}", e.message) for e in errors]
        raise InvalidConfigError(errors)


def _invariant_problems(v: Mapping[str, Any]) -> list[tuple[str, str]]:
    """The config's cross-field invariants, as ``(key, message)`` pairs.

    ``v`` holds validated values; a key that is missing (invalid on its own,
    already reported) skips the rules that need it.
    """
    problems: list[tuple[str, str]] = []
    if "action_baseline" in v:
        missing = [a.value for a in Action if a not in v["action_baseline"]]
        if missing:
            problems.append(("action_baseline", f"missing actions {missing}"))
    if "remote_channels" in v:
        # Upward-closed: if a channel counts as remote, every less trusted one must too.
        ranks = sorted(CHANNEL_TRUST_ORDER.index(c) for c in v["remote_channels"])
        if ranks and ranks != list(range(ranks[0], len(CHANNEL_TRUST_ORDER))):
            need = [c.value for c in CHANNEL_TRUST_ORDER[ranks[0]:]]
            problems.append(
                ("remote_channels", f"must contain every channel less trusted than its most trusted member: {need}")
            )
    if "callback_tier" in v and "privileged_tier" in v and v["callback_tier"] < v["privileged_tier"]:
        problems.append(("callback_tier", "must be >= privileged_tier"))
    if "strict_level" in v and v["strict_level"] < Level.CALLBACK:
        problems.append(("strict_level", "the fail-closed level must be 'callback' or 'deny'"))
    for name in ("vip_level", "ai_agent_level"):
        if v.get(name) is Level.DENY:
            problems.append((name, "use a deny rule, not a level, to forbid (must be below 'deny')"))
    _subset(v, problems, "factor_recovery_actions", "recovery_actions")
    _subset(v, problems, "strong_self_service_actions", "factor_change_actions", extra={Action.ACCOUNT_UNLOCK})
    for name in ("strong_self_service_auth", "workload_min_auth_strength"):
        # A strong path that asks for less than the step-up threshold would let
        # a weaker requester skip the step-up.
        if name in v and "min_auth_strength" in v and (
            AUTH_STRENGTH_ORDER.index(v[name]) < AUTH_STRENGTH_ORDER.index(v["min_auth_strength"])
        ):
            problems.append((name, "must be at least min_auth_strength"))
    if (
        "revoke_compromised_within_hours" in v and "revoke_previous_within_hours" in v
        and v["revoke_compromised_within_hours"] > v["revoke_previous_within_hours"]
    ):
        problems.append(("revoke_compromised_within_hours", "must be <= revoke_previous_within_hours"))
    if "no_credential_actions" in v:
        issuing = {Action.PASSWORD_RESET, Action.MFA_RESET, Action.MFA_ADD_FACTOR, Action.TEMPORARY_ACCESS_PASS,
                   Action.API_KEY_REISSUE, Action.SECRET_ROTATION, Action.CONTACT_CHANGE}
        wrong = sorted(a.value for a in v["no_credential_actions"] & issuing)
        if wrong:
            problems.append(("no_credential_actions", f"these issue or change a credential: {wrong}"))
    return problems


def _subset(v: Mapping[str, Any], problems: list[tuple[str, str]], small: str, big: str,
            extra: frozenset[Action] | set[Action] = frozenset()) -> None:
    if small in v and big in v:
        outside = sorted(a.value for a in v[small] - v[big] - set(extra))
        if outside:
            problems.append((small, f"must be a subset of {big}: {outside} are not"))


def load_config(source: PolicyConfig | Mapping[str, Any] | str | Path | None = None) -> PolicyConfig:
    """Load a :class:`PolicyConfig` from a YAML/JSON file, a mapping, or the stock file.

    A file may override only some keys: they are merged over the stock values.
    Errors name the file and the key (``org.yaml: callback_tier: …``). A
    :class:`PolicyConfig` instance is validated again: one built by
    ``model_copy(update=…)`` or ``model_construct`` never was.

    Raises:
        InvalidConfigError: every problem, each under its key; an unreadable
            file, invalid YAML/JSON or a duplicated key names the file (and line).
    """
    if isinstance(source, PolicyConfig):
        try:
            dumped = source.model_dump(warnings=False)
        except Exception as exc:  # noqa: BLE001 - an unreadable config is an invalid one
            raise InvalidConfigError([FieldError("(root)", f"cannot be read back ({type(exc).__name__})")]) from None
        return PolicyConfig.from_mapping(dumped)
    stock = read_mapping_file(stock_policy_dir() / DEFAULT_CONFIG_FILE)
    if source is None:
        return PolicyConfig.from_mapping(stock)
    if isinstance(source, str | Path):
        return PolicyConfig.from_mapping({**stock, **read_mapping_file(Path(source))}, source=str(source))
    return PolicyConfig.from_mapping({**stock, **dict(source)})


def read_mapping_file(path: Path) -> dict[str, Any]:
    """A YAML or JSON file holding a mapping (a config, a reason catalogue), read strictly.

    Raises:
        InvalidConfigError: the file cannot be read, is not strict JSON/YAML (a
            duplicated key is an error, not "the last one wins"), or holds no mapping.
    """
    package_data = path.parent == stock_policy_dir()
    if package_data:
        cached = _from_stock_cache(path)
        if cached is not None:
            return cached
    try:
        # The files shipped in the package (the stock config and reason
        # catalogue, read at every start) are the library's own: read with
        # libyaml where there is one. Every other file is read strictly.
        data = load_document(path, package_data=package_data)
    except DocumentError as exc:
        where = exc.source if exc.line is None else f"{exc.source}: line {exc.line}"
        raise InvalidConfigError([FieldError(where, exc.detail)]) from None
    if not isinstance(data, dict):
        raise InvalidConfigError([FieldError(str(path), "must contain a mapping at the top level")])
    return data


#: The stock documents shipped in the package (``config.yaml`` and the
#: reason catalogue ``reasons.yaml``, read at every start), already parsed,
#: each with the sha256 of the bytes it was parsed from: reading one then
#: needs neither PyYAML nor a YAML parse. A document whose file no longer
#: has those bytes is read from the file. Written by :func:`write_stock_cache`
#: (``python -m helpdesk_policy.config``); tests/test_models.py checks it is current.
STOCK_CACHE = Path(__file__).with_name("stock_documents.json")

#: The documents :data:`STOCK_CACHE` holds, by file name in the stock policy directory.
STOCK_DOCUMENTS = (DEFAULT_CONFIG_FILE, "reasons.yaml")


def _from_stock_cache(path: Path) -> dict[str, Any] | None:
    """The stock document at ``path`` from :data:`STOCK_CACHE` (fresh objects), or None when it is not there as is."""
    try:
        data = path.read_bytes()
        cache = json.loads(STOCK_CACHE.read_bytes())
    except (OSError, ValueError):
        return None
    entry = cache.get(path.name) if isinstance(cache, dict) else None
    if not isinstance(entry, dict) or entry.get("sha256") != hashlib.sha256(data).hexdigest():
        return None
    document = entry.get("document")
    return document if isinstance(document, dict) else None


def write_stock_cache(target: Path | None = None) -> Path:
    """Write :data:`STOCK_CACHE` from the stock documents (after editing one of them).

    Raises:
        InvalidConfigError: a stock document cannot be read, or does not survive
            a JSON round trip unchanged (so it cannot be cached).
    """
    cache: dict[str, Any] = {"about": "The stock config.yaml and reasons.yaml, parsed; written by "
                                      "`python -m helpdesk_policy.config`. Do not edit."}
    for name in STOCK_DOCUMENTS:
        path = stock_policy_dir() / name
        try:
            document = load_document(path)
        except DocumentError as exc:
            raise InvalidConfigError([FieldError(str(path), exc.detail)]) from None
        if json.loads(json.dumps(document)) != document:
            raise InvalidConfigError([FieldError(str(path), "does not survive a JSON round trip")])
        cache[name] = {"sha256": hashlib.sha256(path.read_bytes()).hexdigest(), "document": document}
    target = STOCK_CACHE if target is None else target
    target.write_text(json.dumps(cache, indent=1, ensure_ascii=False) + "\n", encoding="utf-8")
    return target


if __name__ == "__main__":  # pragma: no cover - the maintainer's command
    print(f"wrote {write_stock_cache()}")
