"""Declarative ticket mappings: a ticketing system's webhook payload to a :class:`~helpdesk_policy.models.Request`.

Every integrator writes the same field mapping by hand; here it is a YAML file,
reviewed like policy. For each request field it names one source:

* ``path:`` a :mod:`payload path <helpdesk_policy.integrations.paths>` in the
  webhook payload (``contact_type``, ``issue.fields.reporter.accountId``,
  ``ticket.custom_fields[id=360012345671].value``);
* ``value:`` a constant (``actor.type: {value: human}``);
* ``from: facts``: the facts of record of an identity, looked up by its id in
  a directory, CMDB or NHI inventory through the caller's facts provider
  (:class:`IdentityLookup`). The target's tier, VIP status, status, owners,
  environment and secret age are what a caller must never be trusted to
  state (CISA AA23-320A: help-desk social engineering works by asserting
  them; NIST SP 800-63A-4: attributes come from an authoritative source).
  ``actor.relationship: {from: facts}`` is the relationship *of record*:
  ``self`` when the actor is the target, ``manager`` when the target's
  manager of record is the actor, ``owner`` when the actor is one of the
  target's owners of record, else ``other`` (never ``helpdesk_agent`` or
  ``admin``: map those from the payload if the system records them).
  A target the provider does not know is an error (nothing can be decided
  about an identity of no record); a requester it does not know (someone
  writing in from outside) has no facts of record: no roles, each of its
  facts read as missing.

and, optionally, how to read it:

* ``map:`` a value map (``phone: phone``, ``self-service: self_service_portal``).
  A value the map does not list is an error naming the payload path, the
  kind of value found (never the value: it may be a pasted secret) and the
  request field; a list field may say ``unmapped: drop`` to skip elements
  that are not its vocabulary (Zendesk tags that are not risk signals);
* ``as:`` ``string``, ``integer``, ``boolean`` or ``number``: ServiceNow sends
  every value as text (``"true"``, ``"2"``), Zendesk numbers its tickets;
* ``split:`` a separator for a list sent as one string (ServiceNow list fields);
* ``fact:`` the facts record's key when it is not the field's name, and
  ``of: target | actor`` whose facts a ``context`` field comes from;
* ``default:`` for a value that is not there. **A default may never be less
  risky than a missing value**: it is accepted only on an optional field, and
  only with the value that field's missing value already stands for or a
  riskier one (:data:`ALLOWED_DEFAULTS`: ``target.environment: production``,
  ``target.owner_active: false``…). Use it to make the reading explicit,
  never to fill a gap with a comfortable guess.

A value is not there when its key is missing, ``null`` (Jira, Zendesk) or
an empty string (ServiceNow's "no value"; with ``split:`` it is an empty
list). What is not there and has no default is left out when the request reads a
missing value at its riskiest (the model documents each: no environment is
production, no secret age is stale), and is an error otherwise: a required
field, and the two observations whose missing value would read as "none
observed" (``context.risk_signals``, ``context.failed_verifications_24h``:
send an empty list or a 0 rather than nothing).

Fail closed (SPEC §5.1): a payload that cannot be mapped raises
:class:`MappingError` naming every bad field at once, each with the payload
path (or facts key) it came from and the request field it was for; a facts
provider that fails raises :class:`FactsUnavailableError`. Neither ever
yields a request built from partial facts.

>>> from helpdesk_policy.integrations.mapping import TicketMapping
>>> mapping = TicketMapping.from_yaml('''
... system: example
... fields:
...   request.id: {path: number}
...   request.action: {value: password_reset}
...   request.channel: {path: contact_type, map: {phone: phone, self-service: self_service_portal}}
...   actor.id: {path: caller}
...   actor.type: {value: human}
...   actor.relationship: {value: self}
...   actor.authenticated: {path: contact_type, map: {phone: false, self-service: true}}
...   actor.auth_strength: {path: contact_type, map: {phone: none, self-service: mfa}}
...   target.id: {path: caller}
...   target.type: {from: facts}
...   target.privileged: {from: facts}
...   target.privilege_tier: {from: facts}
...   target.vip: {from: facts}
...   target.status: {from: facts}
... ''', source="example.yaml")
>>> directory = {"u-1": {"type": "human", "privileged": False, "privilege_tier": 0, "vip": False, "status": "active"}}
>>> req = mapping.to_request({"number": "INC0010001", "contact_type": "phone", "caller": "u-1"}, directory.get)
>>> req.request.channel.value, req.target.privilege_tier
('phone', 0)
>>> mapping.to_request({"number": "INC0010002", "contact_type": "fax", "caller": "u-1"}, directory.get)
Traceback (most recent call last):
...
helpdesk_policy.integrations.mapping.MappingError: invalid ticket payload (3 error(s)):
  - request.channel: payload path 'contact_type' holds a string of 3 characters that the value map does not list (it maps: phone, self-service)
  - actor.authenticated: payload path 'contact_type' holds a string of 3 characters that the value map does not list (it maps: phone, self-service)
  - actor.auth_strength: payload path 'contact_type' holds a string of 3 characters that the value map does not list (it maps: phone, self-service)
"""

from __future__ import annotations

import copy
import dataclasses
import difflib
import functools
import logging
import re
import typing
from collections.abc import Callable, Iterable, Sequence
from collections.abc import Mapping as AbcMapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any, Literal, Protocol, runtime_checkable

import yaml
from pydantic import BaseModel, ValidationError

from ..errors import DocumentError, FieldError, HelpdeskPolicyError, InvalidRequestError, field_errors_from_pydantic
from ..loading import load_json, load_yaml, read_text
from ..models import Actor, Context, Request, RequestInfo, Target, canonical_identifier, field_adapter, parse_request
from .paths import PathSyntaxError, PayloadPath, PayloadShapeError, shape_of

__all__ = [
    "TicketMapping",
    "FieldSource",
    "MappedRequest",
    "IdentityLookup",
    "FactsSource",
    "PayloadFieldError",
    "MappingError",
    "MappingDefinitionError",
    "FactsUnavailableError",
    "ALLOWED_DEFAULTS",
    "SHIPPED_MAPPINGS",
    "load_mapping",
    "parse_payload",
    "request_fields",
]

log = logging.getLogger(__name__)

#: The sections of a request and their models.
_SECTIONS: dict[str, type[BaseModel]] = {"request": RequestInfo, "actor": Actor, "target": Target, "context": Context}

#: Optional fields whose missing value is *not* their riskiest reading: an
#: observation left out reads as "none observed". A mapping that names a
#: source for one must find a value there (an empty list, a 0).
UNSAFE_WHEN_MISSING = frozenset({"context.risk_signals", "context.failed_verifications_24h"})

#: The defaults a mapping may give, per field: the value a missing one already
#: stands for, or a riskier one. A default anywhere else, or another value, is
#: refused when the mapping loads (a default may never be less risky than missing).
ALLOWED_DEFAULTS: dict[str, tuple[Any, ...]] = {
    "request.emergency": (False, True),  # missing is false; a declared emergency never lowers a decision
    "request.consent_scope": ("high",),
    "request.consent_tenant_wide": (True,),
    "actor.roles": ([],),
    "target.environment": ("production",),
    "target.owners": ([],),
    "target.owner_active": (False,),
    "target.in_secrets_manager": (False,),
    "target.publisher_verified": (False,),
    "target.holds_secret": (True,),
    "target.contact_age_days": (0,),
    "context.recent_credential_change_hours": (0,),
    "context.enrolled_factor_available": (False,),
}

_TOP_KEYS = ("system", "record", "description", "fields")
_SOURCE_KEYS = ("path", "value", "from", "fact", "of", "map", "as", "split", "unmapped", "default")
_AS_TYPES = ("string", "integer", "boolean", "number")
_MAX_LISTED_KEYS = 20


@dataclass(frozen=True)
class _FieldSpec:
    name: str  # "request.channel"
    model: type[BaseModel]
    attr: str  # "channel"
    required: bool
    is_list: bool


@functools.cache
def _field_specs() -> dict[str, _FieldSpec]:
    specs: dict[str, _FieldSpec] = {}
    for section, model in _SECTIONS.items():
        for attr, info in model.model_fields.items():
            name = f"{section}.{attr}"
            specs[name] = _FieldSpec(name, model, attr, info.is_required(), typing.get_origin(info.annotation) is list)
    return specs


def request_fields() -> list[str]:
    """Every request field a mapping may name, as ``section.field``, in the request's order.

    >>> request_fields()[:3]
    ['request.id', 'request.action', 'request.channel']
    """
    return list(_field_specs())


# --------------------------------------------------------------------- errors


@dataclass(frozen=True)
class PayloadFieldError(FieldError):
    """One request field that could not be filled from a payload.

    ``path`` is the request field (``request.channel``, ``target.owners.1``),
    ``source`` where its value came from (``payload path 'contact_type'``,
    ``the facts of record of the target (key 'vip')``), and ``message`` says
    both and what is wrong, never quoting a value from the payload.
    """

    source: str = ""


class MappingError(InvalidRequestError):
    """A payload cannot be mapped to a request: ``errors`` names every bad field at once.

    Each error is a :class:`PayloadFieldError`: the request field, the payload
    path (or facts key) it came from, and what is wrong. An
    :class:`~helpdesk_policy.errors.InvalidRequestError`: the payload is the
    caller's to fix, and nothing was decided.
    """

    what = "ticket payload"


class FactsUnavailableError(HelpdeskPolicyError):
    """The facts provider failed (raised, or answered something that is not a record).

    Nothing is decided: a request is never decided from partial facts. Not a
    payload error (it carries no ``errors``): the directory or CMDB is at
    fault, so retry later or route the ticket to a person. ``role`` is whose
    facts were asked for (``target`` or ``actor``); the cause, if any, is
    chained. The message names no identifier and quotes nothing the provider said.
    """

    def __init__(self, message: str, *, role: str = "", provider: str = "") -> None:
        super().__init__(message)
        self.role = role
        self.provider = provider


class MappingDefinitionError(HelpdeskPolicyError, ValueError):
    """A mapping file is not valid: ``errors`` names every problem.

    Each :class:`~helpdesk_policy.errors.FieldError` path reads
    ``<file>: line <n>: <key path>`` (``zendesk.yaml: line 14: fields.request.channel.map``).
    """

    def __init__(self, errors: Sequence[FieldError]) -> None:
        self.errors: tuple[FieldError, ...] = tuple(errors)
        lines = "\n".join(f"  - {e}" for e in self.errors)
        super().__init__(f"invalid ticket mapping ({len(self.errors)} error(s)):\n{lines}")

    @property
    def paths(self) -> list[str]:
        """Where each problem is, in the order found."""
        return [e.path for e in self.errors]


# ---------------------------------------------------------------- facts


@runtime_checkable
class IdentityLookup(Protocol):
    """What a mapping needs from a directory, CMDB or NHI inventory: one identity's facts of record.

    ``identity(identifier)`` returns the facts of record of one identity,
    keyed by request field names (``type``, ``privileged``,
    ``privilege_tier``, ``vip``, ``status``, ``environment``, ``owners``,
    ``manager``, ``roles``, ``recent_credential_change_hours``,
    ``enrolled_factor_available``…; a ``None`` value or a missing key is a
    fact not known), or ``None`` when no identity of record has that id.
    ``identifier`` is in canonical form
    (:func:`~helpdesk_policy.models.canonical_identifier`).

    The answer may be a mapping, a pydantic model or a dataclass (read as its
    fields), so :class:`helpdesk_policy.agents.facts.FactsProvider` (whose
    ``identity`` answers an ``IdentityFacts`` model with these names) is one
    as it is: this room may not import the agents room, and need not. A
    plain callable with the same signature works too (``directory.get`` of a
    dict). A provider that raises ``KeyError``, or an error class named
    ``UnknownIdentityError`` (the agents room's), is read as "no such
    identity"; anything else it raises is a :class:`FactsUnavailableError`.
    """

    def identity(self, identifier: str) -> Any:
        """The facts of record of ``identifier`` (a mapping, model or dataclass), or ``None``."""
        ...


#: A facts provider: an :class:`IdentityLookup`, or a callable identifier -> record or None.
FactsSource = IdentityLookup | Callable[[str], Any]


def _lookup_function(facts: Any) -> Callable[[str], Any]:
    method = getattr(facts, "identity", None)
    if callable(method):
        return method  # type: ignore[no-any-return]
    if callable(facts):
        return facts  # type: ignore[no-any-return]
    raise TypeError("a facts provider has an identity(identifier) method or is a callable, "
                    f"not {type(facts).__name__}")


def _unknown_identity(exc: BaseException) -> bool:
    # agents.facts raises UnknownIdentityError (a room this one may not import), a dict's __getitem__ KeyError.
    return isinstance(exc, KeyError) or any(cls.__name__ == "UnknownIdentityError" for cls in type(exc).__mro__)


def _as_record(answer: Any) -> dict[str, Any] | None:
    if isinstance(answer, BaseModel):
        return answer.model_dump(mode="python")
    if dataclasses.is_dataclass(answer) and not isinstance(answer, type):
        return dataclasses.asdict(answer)
    if isinstance(answer, AbcMapping):
        return dict(answer)
    return None


# ------------------------------------------------------------ field sources


@dataclass(frozen=True)
class FieldSource:
    """Where one request field's value comes from, and how it is read (one entry of a mapping's ``fields``)."""

    field: str
    kind: Literal["path", "value", "facts"]
    path: PayloadPath | None = None
    value: Any = None
    fact: str | None = None
    of: Literal["actor", "target"] | None = None
    map: AbcMapping[str, Any] | None = None
    as_type: str | None = None
    split: str | None = None
    unmapped: Literal["error", "drop"] = "error"
    has_default: bool = False
    default: Any = None

    @property
    def derived(self) -> bool:
        """``actor.relationship`` from the facts: the relationship of record, derived."""
        return self.kind == "facts" and self.field == "actor.relationship"

    def describe(self) -> str:
        """Where the value comes from, in words, for messages (never a value)."""
        if self.kind == "path":
            return f"payload path '{self.path}'"
        if self.kind == "value":
            return "the mapping's constant"
        if self.derived:
            return "the relationship of record (derived from the facts of record)"
        return f"the facts of record of the {self.of} (key '{self.fact}')"


@dataclass(frozen=True)
class MappedRequest:
    """A validated request and where each of its fields came from.

    ``sources`` maps each request field the mapping filled (``request.channel``)
    to its source in words (``payload path 'contact_type'``): the audit
    trail of which facts came from the ticket and which from the records.
    """

    request: Request
    sources: AbcMapping[str, str]


# ----------------------------------------------------------------- mapping


@dataclass(frozen=True)
class TicketMapping:
    """A declarative mapping from one ticketing system's webhook payload to a request.

    Build one with :meth:`from_file`, :meth:`from_yaml`, :meth:`from_dict` or
    :func:`load_mapping` (the shipped ones by name); every problem in the
    file is reported at once (:class:`MappingDefinitionError`), each with the
    file, line and key path. Then :meth:`to_request` (or :meth:`map_payload`,
    which also says where each field came from) maps payloads.

    Attributes:
        system: the ticketing system, for messages (``servicenow``).
        record: what kind of record it maps (``incident``, ``sc_req_item``).
        source: the file (or name) it was read from.
        fields: the source of each request field, in the file's order.
        description: the file's own description.
    """

    system: str
    record: str | None
    source: str
    fields: AbcMapping[str, FieldSource]
    description: str | None = None

    # ------------------------------------------------------------- loading

    @classmethod
    def from_file(cls, path: str | Path) -> TicketMapping:
        """Read a mapping from a YAML (or ``.json``) file.

        Raises:
            DocumentError: the file is unreadable, not YAML, or has a duplicate key.
            MappingDefinitionError: naming every problem, with the file and line.
        """
        p = Path(path)
        text = read_text(p)
        if p.suffix.lower() == ".json":
            return cls.from_dict(load_json(text, source=str(p)), source=str(p))
        return cls.from_yaml(text, source=str(p))

    @classmethod
    def from_yaml(cls, text: str, *, source: str = "<mapping>") -> TicketMapping:
        """Parse a mapping from YAML text (duplicate keys refused); see :meth:`from_file`."""
        return cls.from_dict(load_yaml(text, source=source), source=source, text=text)

    @classmethod
    def from_dict(cls, doc: Any, *, source: str = "<mapping>", text: str | None = None) -> TicketMapping:
        """Build a mapping from its parsed document; ``text``, when given, lets errors name lines."""
        return _Loader(doc, source, text).load()

    # ------------------------------------------------------------- mapping

    @property
    def needs_facts(self) -> bool:
        """Whether any field comes from the facts of record (then a facts provider is required)."""
        return any(s.kind == "facts" for s in self.fields.values())

    def map_payload(self, payload: Any, facts: FactsSource | None = None) -> MappedRequest:
        """Map ``payload`` to a validated request, saying where each field came from.

        Args:
            payload: the webhook's JSON body, parsed (see :func:`parse_payload`).
            facts: the facts provider; required when :attr:`needs_facts`.

        Raises:
            MappingError: every field that could not be filled or is invalid,
                at once, each naming the request field and its payload path or
                facts key; also an identity the facts provider does not know.
            FactsUnavailableError: no facts provider was given and the mapping
                needs one, or the provider failed.
        """
        return _Run(self, payload, facts).execute()

    def to_request(self, payload: Any, facts: FactsSource | None = None) -> Request:
        """Map ``payload`` to a validated :class:`~helpdesk_policy.models.Request`; see :meth:`map_payload`."""
        return self.map_payload(payload, facts).request


def parse_payload(text: str | bytes, *, source: str = "payload") -> Any:
    """Parse a webhook body as JSON, strictly: a duplicated key, ``NaN`` or deep nesting is refused.

    A payload saying ``"contact_type": "self-service"`` and then
    ``"contact_type": "phone"`` must not be read as whichever came last.

    Raises:
        DocumentError: naming ``source`` and what is wrong (never a value).
    """
    if isinstance(text, bytes | bytearray):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DocumentError(source, f"not UTF-8 text (byte {exc.start})") from None
    return load_json(text, source=source)


#: The mappings shipped with the package, by name (``src/helpdesk_policy/integrations/mappings/<name>.yaml``).
SHIPPED_MAPPINGS: tuple[str, ...] = ("servicenow_incident", "servicenow_catalog", "jira_service_management", "zendesk")
_MAPPINGS_DIR = Path(__file__).resolve().parent / "mappings"


def load_mapping(name_or_path: str | Path) -> TicketMapping:
    """A shipped mapping by name (:data:`SHIPPED_MAPPINGS`), or a mapping file by path.

    The shipped ones are starting points: copy one, point its paths at your
    instance's custom fields and value maps at your choice values, and load
    it by path.

    >>> load_mapping("zendesk").system
    'zendesk'
    """
    if isinstance(name_or_path, str) and name_or_path in SHIPPED_MAPPINGS:
        return _shipped(name_or_path)
    return TicketMapping.from_file(name_or_path)


@functools.cache
def _shipped(name: str) -> TicketMapping:
    return TicketMapping.from_file(_MAPPINGS_DIR / f"{name}.yaml")


# ------------------------------------------------------------------ loader


class _Loader:
    """Checks a mapping document, collecting every problem with its key path."""

    def __init__(self, doc: Any, source: str, text: str | None) -> None:
        self.doc = doc
        self.source = source
        self.text = text
        self.problems: list[tuple[tuple[str, ...], str]] = []

    def problem(self, keys: Sequence[str], message: str) -> None:
        self.problems.append((tuple(keys), message))

    def load(self) -> TicketMapping:
        doc = self.doc
        if not isinstance(doc, AbcMapping):
            self.problem((), f"a mapping is an object with the keys {', '.join(_TOP_KEYS)}, not {shape_of(doc)}")
            self.fail()
        for key in doc:
            if key not in _TOP_KEYS:
                self.problem((str(key),),
                             "unknown key" + _hint(key, _TOP_KEYS) + f" (a mapping has {', '.join(_TOP_KEYS)})")
        system = doc.get("system")
        if not isinstance(system, str) or not system.strip():
            self.problem(("system",),
                         "must be the ticketing system's name (servicenow, jira_service_management, zendesk…)")
        record = doc.get("record")
        if record is not None and not isinstance(record, str):
            self.problem(("record",), "must be a string (the kind of record mapped: incident, sc_req_item…)")
        description = doc.get("description")
        if description is not None and not isinstance(description, str):
            self.problem(("description",), "must be a string")
        fields_doc = doc.get("fields")
        sources: dict[str, FieldSource] = {}
        if not isinstance(fields_doc, AbcMapping) or not fields_doc:
            self.problem(("fields",),
                         "must be an object naming a source for each request field (request.id: {path: number})")
        else:
            for name, spec in fields_doc.items():
                parsed = self.field(str(name), spec)
                if parsed is not None:
                    sources[str(name)] = parsed
            missing = [f.name for f in _field_specs().values() if f.required and f.name not in fields_doc]
            if missing:
                self.problem(("fields",), "has no source for the required request field(s) " + ", ".join(missing))
        self.fail()
        return TicketMapping(system=str(system), record=record, source=self.source,
                             fields=MappingProxyType(sources), description=description)

    def field(self, name: str, spec: Any) -> FieldSource | None:
        keys = ("fields", name)
        specs = _field_specs()
        if name not in specs:
            self.problem(keys, "is not a request field" + _hint(name, specs)
                         + " (fields are section.name: request.channel)")
            return None
        info = specs[name]
        if not isinstance(spec, AbcMapping):
            self.problem(keys,
                         f"must be an object ({{path: …}}, {{value: …}} or {{from: facts}}), not {shape_of(spec)}")
            return None
        before = len(self.problems)
        for key in spec:
            if key not in _SOURCE_KEYS:
                self.problem((*keys, str(key)), "unknown key" + _hint(key, _SOURCE_KEYS)
                             + f" (a field source has {', '.join(_SOURCE_KEYS)})")
        given = [k for k in ("path", "value", "from") if k in spec]
        if len(given) != 1:
            has = f" (it has {', '.join(given)})" if given else ""
            self.problem(keys, "needs exactly one of path, value or from" + has)
            return None
        kind = given[0]
        path: PayloadPath | None = None
        if kind == "path":
            try:
                path = PayloadPath.parse(spec["path"])
            except PathSyntaxError as exc:
                self.problem((*keys, "path"), f"is not a payload path: {exc}")
        elif kind == "from" and spec["from"] != "facts":
            self.problem((*keys, "from"), "must be 'facts' (the facts of record, from the facts provider)")
        fact, of = self.facts_options(keys, info, spec, kind)
        value_map = self.value_map(keys, info, spec)
        as_type = spec.get("as")
        if as_type is not None and as_type not in _AS_TYPES:
            self.problem((*keys, "as"), f"must be one of {', '.join(_AS_TYPES)}")
        if as_type is not None and value_map is not None:
            self.problem((*keys, "as"), "cannot be used with map (a map's values are already what the request takes)")
        split = spec.get("split")
        if split is not None and (kind != "path" or not info.is_list or not isinstance(split, str) or not split):
            self.problem((*keys, "split"), "is a non-empty separator, for a list field read from a payload path")
        unmapped = spec.get("unmapped", "error")
        if unmapped not in ("error", "drop"):
            self.problem((*keys, "unmapped"), "must be 'error' or 'drop'")
        elif unmapped == "drop" and (value_map is None or not info.is_list):
            self.problem((*keys, "unmapped"),
                         "'drop' is only for a list field with a map (elements not in its vocabulary)")
        if kind == "value":
            self.check_value((*keys, "value"), info, spec["value"])
            for key in ("map", "as"):
                if key in spec:
                    self.problem((*keys, key), "is for a value read from the payload or the facts, not a constant")
        has_default = "default" in spec
        if has_default:
            self.check_default((*keys, "default"), info, spec["default"], kind)
        if len(self.problems) > before:
            return None
        return FieldSource(
            field=name, kind="facts" if kind == "from" else kind, path=path,  # type: ignore[arg-type]
            value=copy.deepcopy(spec.get("value")), fact=fact, of=of,
            map=None if value_map is None else MappingProxyType(value_map), as_type=as_type, split=split,
            unmapped=unmapped, has_default=has_default, default=copy.deepcopy(spec.get("default")),
        )

    def facts_options(self, keys: tuple[str, ...], info: _FieldSpec, spec: AbcMapping[str, Any],
                      kind: str) -> tuple[str | None, Literal["actor", "target"] | None]:
        section = info.name.split(".", 1)[0]
        if kind != "from":
            for key in ("fact", "of"):
                if key in spec:
                    self.problem((*keys, key), "is only for a field taken from the facts (from: facts)")
            return None, None
        if info.attr == "id" and section in ("actor", "target"):
            self.problem(keys, f"{info.name} cannot come from the facts: the facts are looked up by it")
        if section == "request":
            self.problem(keys, "a request.* field is the ticket's own: it comes from the payload, "
                               "not the facts of an identity")
        of = spec.get("of", section if section in ("actor", "target") else None)
        if of not in ("actor", "target"):
            self.problem((*keys, "of"), "must be 'target' or 'actor': whose facts of record hold this field")
            of = None
        fact = spec.get("fact", info.attr)
        if not isinstance(fact, str) or not fact:
            self.problem((*keys, "fact"), "must be the facts record's key (a non-empty string)")
            fact = None
        return fact, of

    def value_map(self, keys: tuple[str, ...], info: _FieldSpec, spec: AbcMapping[str, Any]) -> dict[str, Any] | None:
        if "map" not in spec:
            return None
        raw = spec["map"]
        if not isinstance(raw, AbcMapping) or not raw:
            self.problem((*keys, "map"), "must be a non-empty object: payload value -> request value")
            return None
        out: dict[str, Any] = {}
        for key, value in raw.items():
            if not isinstance(key, str):
                # YAML reads unquoted yes/no/on/off/true/false as booleans and digits as numbers.
                self.problem((*keys, "map", str(key)),
                             f"a value map's key must be a string ({shape_of(key)} here): quote it")
                continue
            if self.check_value((*keys, "map", key), info, [value] if info.is_list else value):
                out[key] = value
        return out

    def check_value(self, keys: tuple[str, ...], info: _FieldSpec, value: Any) -> bool:
        """Whether ``value`` is valid for the field; a problem naming why if not."""
        try:
            field_adapter(info.model, info.attr).validate_python(value)
        except ValidationError as exc:
            for err in field_errors_from_pydantic(exc):
                self.problem(keys, f"not a valid {info.name}: {err.message}")
            return False
        return True

    def check_default(self, keys: tuple[str, ...], info: _FieldSpec, value: Any, kind: str) -> None:
        if kind == "value":
            self.problem(keys, "a constant has no default")
            return
        allowed = ALLOWED_DEFAULTS.get(info.name)
        if info.required or allowed is None:
            self.problem(keys, f"{info.name} may have no default: a default may never be less risky than a missing "
                               "value (defaults are for " + ", ".join(ALLOWED_DEFAULTS) + ")")
        elif not any(type(value) is type(a) and value == a for a in allowed):
            shown = " or ".join(repr(a) for a in allowed)
            self.problem(keys, f"the only default {info.name} may have is {shown}: what a missing value already "
                               "stands for, or riskier (a default may never be less risky than missing)")

    def fail(self) -> None:
        if self.problems:
            raise MappingDefinitionError([FieldError(self.where(keys), message) for keys, message in self.problems])

    def where(self, keys: tuple[str, ...]) -> str:
        line = _line_of(self.text, keys) if self.text is not None else None
        dotted = ".".join(keys) if keys else "(root)"
        return f"{self.source}: line {line}: {dotted}" if line is not None else f"{self.source}: {dotted}"


def _hint(word: Any, choices: Iterable[str]) -> str:
    if not isinstance(word, str):
        return ""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" — did you mean {close[0]!r}?" if close else ""


def _line_of(text: str, keys: tuple[str, ...]) -> int | None:
    """The line of the deepest of ``keys`` found in the YAML ``text`` (1-based), or None."""
    try:
        node = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError:
        return None
    line = None
    for key in keys:
        if not isinstance(node, yaml.MappingNode):
            break
        for key_node, value_node in node.value:
            if isinstance(key_node, yaml.ScalarNode) and key_node.value == key:
                line = key_node.start_mark.line + 1
                node = value_node
                break
        else:
            break
    if line is None and node is not None and not keys:
        line = node.start_mark.line + 1
    return line


# --------------------------------------------------------------------- run

_INTEGER = re.compile(r"-?[0-9]{1,18}")
_NUMBER = re.compile(r"-?[0-9]{1,18}(\.[0-9]{1,18})?")
_AS_WORDS = {"string": "a string", "integer": "an integer", "boolean": "a boolean", "number": "a number"}


def _convert(value: Any, as_type: str) -> tuple[bool, Any]:
    if isinstance(value, str):
        text = value.strip()
        if as_type == "string":
            return True, value
        if as_type == "integer" and _INTEGER.fullmatch(text):
            return True, int(text)
        if as_type == "number" and _NUMBER.fullmatch(text):
            return True, float(text)
        if as_type == "boolean" and text.lower() in ("true", "false"):
            return True, text.lower() == "true"
        return False, None
    if isinstance(value, bool):
        return (as_type == "boolean"), value
    if isinstance(value, int):
        if as_type == "string":
            return True, str(value)
        if as_type == "number":
            return True, float(value)
        return (as_type == "integer"), value
    if isinstance(value, float):
        return (as_type == "number"), value
    return False, None


class _Run:
    """One payload through one mapping: every error collected, then one verdict."""

    def __init__(self, mapping: TicketMapping, payload: Any, facts: FactsSource | None) -> None:
        self.mapping = mapping
        self.payload = payload
        self.facts = facts
        self.doc: dict[str, dict[str, Any]] = {section: {} for section in _SECTIONS}
        self.errors: list[PayloadFieldError] = []
        self.sources: dict[str, str] = {}
        self.failed: set[str] = set()  # fields with an error of their own

    def error(self, src: FieldSource | None, field: str, message: str) -> None:
        source = src.describe() if src is not None else "(not mapped)"
        self.errors.append(PayloadFieldError(field, f"{source} {message}", source=source))
        self.failed.add(field)

    def set(self, field: str, value: Any, source: str) -> None:
        section, attr = field.split(".", 1)
        self.doc[section][attr] = value
        self.sources[field] = source

    def execute(self) -> MappedRequest:
        if not isinstance(self.payload, AbcMapping):
            raise MappingError([PayloadFieldError(
                "(root)", f"the payload must be a JSON object, not {shape_of(self.payload)}", source="payload")])
        for field, src in self.mapping.fields.items():
            if src.kind == "value":
                self.set(field, copy.deepcopy(src.value), src.describe())
            elif src.kind == "path":
                try:
                    found, raw = src.path.resolve(self.payload)  # type: ignore[union-attr]
                except PayloadShapeError as exc:
                    self.error(src, field, f"cannot be read: {exc}")
                    continue
                self.take(field, src, found, raw)
        if self.mapping.needs_facts:
            self.fill_from_facts()
        return self.validated()

    def take(self, field: str, src: FieldSource, found: bool, raw: Any) -> None:
        """Read one found (or missing) value into the request."""
        spec = _field_specs()[field]
        if src.split is not None and isinstance(raw, str):
            raw = [part.strip() for part in raw.split(src.split) if part.strip()]  # "" is an empty list
        elif isinstance(raw, str) and not raw:
            found = False  # ServiceNow sends "" for "no value", where Jira and Zendesk send null
        if not found:
            if src.has_default:
                self.set(field, copy.deepcopy(src.default), f"{src.describe()}: not there, the mapping's default")
            elif spec.required:
                self.error(src, field, f"holds no value, and {field} is required")
            elif field in UNSAFE_WHEN_MISSING:
                self.error(src, field, f"holds no value: {field} left out would read as none observed "
                                       "(send an empty list or 0 when there is none)")
            # else: left out, read at its riskiest by the request model
            return
        if spec.is_list and isinstance(raw, list | tuple):
            out: list[Any] = []
            ok = True
            for i, item in enumerate(raw):
                state, value = self.element(field, src, item, f"[{i}]")
                if state is None:
                    continue  # unmapped: drop
                ok = ok and state
                out.append(value)
            if ok:
                self.set(field, out, src.describe())
            return
        state, value = self.element(field, src, raw, "")
        if state:
            self.set(field, value, src.describe())

    def element(self, field: str, src: FieldSource, item: Any, at: str) -> tuple[bool | None, Any]:
        """``(True, value)``, ``(False, None)`` after an error, ``(None, None)`` for a dropped element."""
        where = f" (element {at})" if at else ""
        if src.map is not None:
            # Keys are text: a number is looked up by its digits (Zendesk's numeric values).
            key = item if isinstance(item, str) else (
                str(item) if isinstance(item, int) and not isinstance(item, bool) else None)
            if key is not None and key in src.map:
                return True, copy.deepcopy(src.map[key])
            if src.unmapped == "drop":
                return None, None
            keys = sorted(src.map)
            more = f", … ({len(keys)} in all)" if len(keys) > _MAX_LISTED_KEYS else ""
            listed = ", ".join(keys[:_MAX_LISTED_KEYS]) + more
            if key is None:
                self.error(src, field, f"holds {shape_of(item)}{where}, and the value map has only text keys "
                                       f"(it maps: {listed})")
            else:
                self.error(src, field, f"holds {shape_of(item)}{where} that the value map does not list "
                                       f"(it maps: {listed})")
            return False, None
        if src.as_type is not None:
            ok, value = _convert(item, src.as_type)
            if not ok:
                self.error(src, field, f"holds {shape_of(item)}{where}, not {_AS_WORDS[src.as_type]}")
                return False, None
            return True, value
        return True, item

    # -------------------------------------------------------------- facts

    def fill_from_facts(self) -> None:
        if self.facts is None:
            raise FactsUnavailableError(
                f"the {self.mapping.system} mapping ({self.mapping.source}) takes fields from the facts of record, "
                "but no facts provider was given: nothing is decided from the ticket's word alone")
        try:
            lookup = _lookup_function(self.facts)
        except TypeError as exc:
            raise FactsUnavailableError(str(exc)) from None
        facts_fields = [(f, s) for f, s in self.mapping.fields.items() if s.kind == "facts"]
        # The relationship of record is read from the target's record (its manager and owners).
        needed = {"target" if s.derived else s.of for _, s in facts_fields}
        ids = {role: self.identity_of(role) for role in ("target", "actor")}
        records: dict[str, dict[str, Any] | None] = {}
        for role in ("target", "actor"):
            identity = ids[role]
            if role not in needed or identity is None:
                continue  # a missing or invalid id is reported by the request's own validation
            if role == "actor" and "target" in records and ids["target"] == identity:
                records[role] = records["target"]  # acting on itself: one record, one look-up, one error
                continue
            records[role] = self.lookup(lookup, role, identity)
            if records[role] is None and role == "actor":
                # A requester of no record (an outsider writing in) has no roles and no facts of
                # record: each is read as missing, at its riskiest; a required one is an error.
                records[role] = {}
            elif records[role] is None:
                self.error(self.mapping.fields.get(f"{role}.id"), f"{role}.id",
                           f"names no identity the facts provider knows (no record in the directory or inventory): "
                           f"the {role}'s facts of record cannot be filled, and nothing is decided without them")
        for field, src in facts_fields:
            role = "target" if src.derived else (src.of or "")
            record = records.get(role)
            if record is None or (src.derived and ids["actor"] is None):
                # No record to read (an unknown identity, or a missing or invalid id): reported once, at the
                # id, not again as every field the record would have filled.
                self.failed.add(field)
                continue
            if src.derived:
                self.derive_relationship(field, src, ids["actor"], ids["target"], record)  # type: ignore[arg-type]
                continue
            value = record.get(src.fact or "")
            self.take(field, src, value is not None, value)

    def identity_of(self, role: str) -> str | None:
        raw = self.doc[role].get("id")
        if raw is None:
            return None
        model = Target if role == "target" else Actor
        try:
            return str(field_adapter(model, "id").validate_python(raw))
        except ValidationError:
            return None  # reported with the request's own validation

    def lookup(self, lookup: Callable[[str], Any], role: str, identity: str) -> dict[str, Any] | None:
        provider = type(self.facts).__name__
        try:
            answer = lookup(identity)
        except Exception as exc:  # noqa: BLE001 - any failure of the directory: nothing is decided
            if _unknown_identity(exc):
                return None
            log.warning("facts provider %s failed for the %s of a %s ticket: %s", provider, role,
                        self.mapping.system, type(exc).__name__)
            raise FactsUnavailableError(
                f"the facts provider ({provider}) failed for the {role}: nothing is decided from partial facts",
                role=role, provider=provider) from exc
        if answer is None:
            return None
        record = _as_record(answer)
        if record is None:
            raise FactsUnavailableError(
                f"the facts provider ({provider}) answered {shape_of(answer)} for the {role}, not a record of facts",
                role=role, provider=provider)
        return record

    def derive_relationship(self, field: str, src: FieldSource, actor_id: str, target_id: str,
                            target: dict[str, Any]) -> None:
        if actor_id == target_id:
            relationship = "self"
        elif _canonical(target.get("manager")) == actor_id:
            relationship = "manager"
        elif actor_id in {_canonical(o) for o in (target.get("owners") or ()) if isinstance(o, str)}:
            relationship = "owner"
        else:
            relationship = "other"
        self.set(field, relationship, src.describe())

    # ---------------------------------------------------------- validation

    def validated(self) -> MappedRequest:
        problems = list(self.errors)
        try:
            request = parse_request(self.doc)
        except InvalidRequestError as exc:
            request = None
            for err in exc.errors:
                field = ".".join(err.path.split(".")[:2])
                if field in self.failed:
                    continue  # its own mapping error says more than "Field required"
                src = self.mapping.fields.get(field)
                source = self.sources.get(field) or (src.describe() if src is not None else "(not mapped)")
                problems.append(PayloadFieldError(err.path, f"{source}: {err.message}", source=source))
        if problems:
            raise MappingError(problems)
        assert request is not None
        return MappedRequest(request, MappingProxyType(dict(self.sources)))


def _canonical(value: Any) -> str | None:
    return canonical_identifier(value) if isinstance(value, str) else None
