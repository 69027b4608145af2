"""The tunable policy parameters (SPEC §3): data, not code.

The same :class:`PolicyConfig` is read by the native engine and, serialised to
JSON, by the Rego policies as ``data.helpdesk.config``. The stock values live in
``policies/config.yaml`` (documented field by field there). Validation refuses
a config that would break an invariant of SPEC §5, e.g. a ``remote_channels``
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

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .errors import InvalidConfigError
from .levels import Level
from .models import AUTH_STRENGTH_ORDER, CHANNEL_TRUST_ORDER, MAX_COUNT, Action, AuthStrength, Channel, RiskSignal

__all__ = ["PolicyConfig", "load_config", "DEFAULT_CONFIG_FILE"]

DEFAULT_CONFIG_FILE = "config.yaml"

Hours = Annotated[int, Field(ge=0, le=24 * 365, strict=True)]

#: A count threshold. Bounded like the request counts it is compared with
#: (models.MAX_COUNT): rego-cpp reads integers as int64 and wraps silently
#: above 2**63-1, so an unbounded threshold could read as negative in the
#: embedded engine and fire for every request there but not in the others.
Threshold = Annotated[int, Field(ge=1, le=MAX_COUNT, strict=True)]


class PolicyConfig(BaseModel):
    """Organisation-tunable parameters of the stock policy."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    action_baseline: dict[Action, Level]
    recovery_actions: frozenset[Action]
    factor_change_actions: frozenset[Action]
    access_actions: frozenset[Action]
    nhi_credential_actions: frozenset[Action]
    containment_actions: frozenset[Action]
    terminate_sessions_after: frozenset[Action]
    remote_channels: frozenset[Channel]
    min_auth_strength: AuthStrength
    privileged_tier: Annotated[int, Field(ge=1, le=9, strict=True)]
    callback_tier: Annotated[int, Field(ge=1, le=9, strict=True)]
    vip_level: Level
    ai_agent_level: Level
    critical_environments: frozenset[Annotated[str, Field(min_length=1)]]
    nhi_wide_consumers: Threshold
    max_secret_age_days: Threshold
    high_risk_signals: frozenset[RiskSignal]
    failed_verifications_callback: Threshold
    chained_change_window_hours: Hours
    revoke_previous_within_hours: Hours
    break_glass_hours: Hours
    strict_level: Level = Level.CALLBACK

    @model_validator(mode="after")
    def _invariants(self) -> PolicyConfig:
        problems: list[str] = []
        missing = [a.value for a in Action if a not in self.action_baseline]
        if missing:
            problems.append(f"action_baseline: missing actions {missing}")
        # Upward-closed: if a channel counts as remote, every less trusted one must too.
        ranks = sorted(CHANNEL_TRUST_ORDER.index(c) for c in self.remote_channels)
        if ranks and ranks != list(range(ranks[0], len(CHANNEL_TRUST_ORDER))):
            need = [c.value for c in CHANNEL_TRUST_ORDER[ranks[0]:]]
            problems.append(f"remote_channels: must contain every channel less trusted than its most trusted member: {need}")
        if self.callback_tier < self.privileged_tier:
            problems.append("callback_tier: must be >= privileged_tier")
        if self.strict_level < Level.CALLBACK:
            problems.append("strict_level: the fail-closed level must be 'callback' or 'deny'")
        for name in ("vip_level", "ai_agent_level"):
            if getattr(self, name) is Level.DENY:
                problems.append(f"{name}: use a deny rule, not a level, to forbid (must be below 'deny')")
        if problems:
            raise ValueError("; ".join(problems))
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
    def from_mapping(cls, data: Mapping[str, Any]) -> PolicyConfig:
        try:
            return cls.model_validate(dict(data))
        except ValidationError as exc:
            raise InvalidConfigError.from_pydantic(exc) from None


def load_config(source: PolicyConfig | Mapping[str, Any] | str | Path | None = None) -> PolicyConfig:
    """Load a :class:`PolicyConfig` from a YAML/JSON file, a mapping, or the stock file.

    A file may override only some keys: they are merged over the stock values.
    """
    if isinstance(source, PolicyConfig):
        return source
    from .policies import stock_policy_dir  # local import: policies imports config

    stock = _read_file(stock_policy_dir() / DEFAULT_CONFIG_FILE)
    if source is None:
        return PolicyConfig.from_mapping(stock)
    overrides = _read_file(Path(source)) if isinstance(source, str | Path) else dict(source)
    return PolicyConfig.from_mapping({**stock, **overrides})


def _read_file(path: Path) -> dict[str, Any]:
    from .errors import FieldError

    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InvalidConfigError([FieldError(str(path), f"cannot read: {exc.strerror}")]) from None
    try:
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (ValueError, yaml.YAMLError) as exc:
        raise InvalidConfigError([FieldError(str(path), f"not valid YAML/JSON: {exc}")]) from None
    if not isinstance(data, dict):
        raise InvalidConfigError([FieldError(str(path), "must contain a mapping at the top level")])
    return data
