"""A facts provider over a SCIM 2.0 directory (RFC 7643, RFC 7644), with the standard library's HTTP client.

Entra ID, Okta, OneLogin, JumpCloud, Ping and most HR and IGA systems serve
their users over SCIM 2.0. :class:`ScimFactsProvider` looks an identity up
by ``userName`` (``GET /Users?filter=userName eq "u-51876"``; RFC 7643 makes
``userName`` case-insensitive, as identifiers are here), by ``externalId``,
or by the SCIM ``id`` (``GET /Users/{id}``), and reads:

==========================  ==================================================================
fact                        from (by default)
==========================  ==================================================================
``status``                  ``active``: ``true`` is ``active``; ``false`` does not say whether
                            suspended or offboarded, so it is read at its riskiest,
                            ``offboarded``, unless ``status`` is mapped to a lifecycle
                            attribute; absent, unknown (also ``offboarded``)
``manager``                 the enterprise extension's ``manager.value``: the manager's SCIM
                            ``id``, resolved with ``GET /Users/{id}`` to their ``userName``
                            (``$ref`` is never followed: it could point anywhere)
``roles``                   ``roles[].value`` and ``groups[].display`` (a name that is not a
                            valid identifier is skipped: roles only ever lower a level, so
                            leaving one out can only raise it)
``type``                    ``identity_type`` (``human`` for ``/Users``)
everything else             the attribute you map in ``attributes``; unmapped, unknown
==========================  ==================================================================

A directory has no standard attribute for a privilege tier, a VIP flag or
an NHI's owners: map your custom extension's attributes (attribute names are
matched case-insensitively, as RFC 7643 §2.1 says). A fact that nothing maps
is unknown and read at its riskiest (tier 9, VIP, privileged), so an
unmapped directory gives strict decisions, never lax ones::

    ScimFactsProvider(
        "https://idp.example.com/scim/v2",
        token=lambda: vault.read("scim-token"),
        attributes={
            "privilege_tier": "urn:example:params:scim:schemas:extension:helpdesk:2.0:User:privilegeTier",
            "privileged": "urn:example:params:scim:schemas:extension:helpdesk:2.0:User:privileged",
            "vip": "urn:example:params:scim:schemas:extension:helpdesk:2.0:User:vip",
            "contact_age_days": "urn:example:params:scim:schemas:extension:helpdesk:2.0:User:contactChangedAt",
        },
    )

A ``*_days`` or ``*_hours`` fact mapped to an RFC 3339 date-time (when the
contact last changed, when the secret was last rotated) is read as the time
since then.

Failures never give partial facts: an unreachable directory, a timeout, an
HTTP error, a redirect (never followed, so the bearer token goes nowhere
else), an answer that is not SCIM JSON, larger than ``max_response_bytes``,
several identities for one identifier, or one for another identifier raises
:class:`~helpdesk_policy.agents.errors.FactsUnavailableError`; a value that
is not a valid fact raises
:class:`~helpdesk_policy.agents.errors.InvalidFactsError` naming the SCIM
attribute and the fact. Only "no such identity" (404, or no match) is
``None``. Errors never hold the token or the directory's answer.

Plain ``http`` is refused except to a loopback address (the bearer token
would cross the network in clear): pass ``allow_insecure_http=True`` to
override. ``aidentity`` runs the look-up in a worker thread.
"""

from __future__ import annotations

import asyncio
import http.client
import ipaddress
import json
import logging
import math
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timezone
from typing import Any, Literal

from pydantic import ValidationError

from ..errors import DocumentError, FieldError, InvalidConfigError, field_errors_from_pydantic
from ..loading import load_json
from ..models import TargetType
from .errors import FactsUnavailableError, InvalidFactsError
from .facts import IdentityFacts, _canonical_or_none

__all__ = [
    "ScimFactsProvider",
    "ENTERPRISE_USER",
    "LIST_RESPONSE",
    "DEFAULT_ATTRIBUTES",
    "DEFAULT_ROLES_FROM",
]

log = logging.getLogger(__name__)

#: The enterprise user extension (RFC 7643 §4.3): employeeNumber, manager…
ENTERPRISE_USER = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
#: The core user schema (RFC 7643 §4.1), whose attributes sit at the top level.
CORE_USER = "urn:ietf:params:scim:schemas:core:2.0:User"
#: A query's answer (RFC 7644 §3.4.2).
LIST_RESPONSE = "urn:ietf:params:scim:api:messages:2.0:ListResponse"

#: The facts read without configuration (``attributes`` adds to and overrides these).
DEFAULT_ATTRIBUTES: dict[str, str] = {"manager": f"{ENTERPRISE_USER}:manager.value"}
#: Where roles come from: each path's values, together.
DEFAULT_ROLES_FROM: tuple[str, ...] = ("roles.value", "groups.display")

_FACTS = frozenset(IdentityFacts.model_fields) - {"id"}
_BOOLS = frozenset({"privileged", "vip", "owner_active", "in_secrets_manager", "publisher_verified", "holds_secret",
                    "enrolled_factor_available"})
_LISTS = frozenset({"owners", "roles", "risk_signals"})
_DAYS = frozenset({"contact_age_days", "secret_age_days"})
_HOURS = frozenset({"recent_credential_change_hours"})
_INTS = frozenset({"privilege_tier", "consumers", "failed_verifications_24h"}) | _DAYS
_ENUMS = frozenset({"type", "status", "risk_signals"})
_JSON_TYPES = ("application/scim+json", "application/json")
_LOOKUPS = ("userName", "externalId", "id")


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    # urllib would carry the Authorization header to wherever a redirect points.
    def redirect_request(self, req, fp, code, msg, headers, newurl):  # noqa: ANN001, ANN201
        return None


class ScimFactsProvider:
    """Facts of record from a SCIM 2.0 service provider over HTTP(S).

    Args:
        base_url: the SCIM base URL (``https://idp.example.com/scim/v2``).
        token: the bearer token, or a callable returning it (called per
            request, so a rotated token is picked up). ``None``: no
            ``Authorization`` header.
        attributes: fact name -> SCIM attribute path, over
            :data:`DEFAULT_ATTRIBUTES`: a core attribute (``active``,
            ``name.familyName``) or a schema URN and attribute
            (``urn:…:User:privilegeTier``). A multi-valued complex attribute
            gives its ``value`` sub-attributes.
        lookup: how an identifier is looked up: ``userName`` (default),
            ``externalId`` (both by filter), or ``id`` (``GET /Users/{id}``;
            only for a directory whose ids are lower case, since identifiers
            are compared case-folded).
        identity_type: the ``type`` of an identity whose ``type`` is not mapped.
        resource: the resource endpoint (``Users``).
        resolve_manager: read ``manager`` as a SCIM ``id`` and look the
            manager up to get their identifier (one more request). Off: the
            value is taken as the identifier.
        roles_from: attribute paths whose values are the roles.
        timeout: seconds for the whole of one HTTP exchange.
        max_response_bytes: the largest answer read.
        ssl_context: for ``https`` (a private CA, a client certificate).
        proxies: ``urllib`` proxies by scheme; ``None`` reads the
            environment's (``HTTPS_PROXY``…), ``{}`` uses none.
        allow_insecure_http: allow ``http`` to a host that is not loopback.
        clock: the current time, for date-time attributes (default: UTC now).

    Raises:
        InvalidConfigError: every bad argument (the URL, the token's form,
            an unknown fact, a bad lookup…), each named; never the token itself.

    >>> ScimFactsProvider("https://idp.example.com/scim/v2", token="t0ken")
    ScimFactsProvider('https://idp.example.com/scim/v2', lookup='userName')
    """

    source = "scim"

    def __init__(
        self,
        base_url: str,
        *,
        token: str | Callable[[], str] | None = None,
        attributes: Mapping[str, str] | None = None,
        lookup: Literal["userName", "externalId", "id"] = "userName",
        identity_type: TargetType | str = TargetType.HUMAN,
        resource: str = "Users",
        resolve_manager: bool = True,
        roles_from: Sequence[str] = DEFAULT_ROLES_FROM,
        timeout: float = 5.0,
        max_response_bytes: int = 1 << 20,
        ssl_context: Any = None,
        proxies: Mapping[str, str] | None = None,
        allow_insecure_http: bool = False,
        clock: Callable[[], datetime] | None = None,
    ) -> None:
        errors: list[FieldError] = []
        self.base_url = _base_url(base_url, allow_insecure_http, errors)
        if token is not None and not callable(token):
            _token_problem(token, errors)
        self._token = token
        mapping = {**DEFAULT_ATTRIBUTES, **dict(attributes or {})}
        for fact, path in mapping.items():
            if fact not in _FACTS:
                errors.append(FieldError(f"attributes.{fact}"[:80], f"is not a fact (one of {sorted(_FACTS)})"))
            elif not isinstance(path, str) or not path.strip():
                errors.append(FieldError(f"attributes.{fact}", "must be a SCIM attribute path"))
        self.attributes = mapping
        if lookup not in _LOOKUPS:
            errors.append(FieldError("lookup", f"must be one of {list(_LOOKUPS)}"))
        self.lookup = lookup
        try:
            self.identity_type = TargetType(identity_type)
        except ValueError:
            errors.append(FieldError("identity_type", f"must be one of {[t.value for t in TargetType]}"))
        if not isinstance(resource, str) or not resource or not all(c.isalnum() for c in resource):
            errors.append(FieldError("resource", "must be a resource endpoint name such as 'Users'"))
        self.resource = resource
        self.resolve_manager = bool(resolve_manager)
        self.roles_from = tuple(roles_from)
        if isinstance(timeout, bool) or not isinstance(timeout, int | float) or not (0 < timeout <= 120):
            errors.append(FieldError("timeout", "must be a number of seconds in (0, 120]"))
        self.timeout = timeout
        if isinstance(max_response_bytes, bool) or not isinstance(max_response_bytes, int) or max_response_bytes < 1024:
            errors.append(FieldError("max_response_bytes", "must be a whole number of at least 1024"))
        self.max_response_bytes = max_response_bytes
        if errors:
            raise InvalidConfigError(errors)
        handlers: list[Any] = [_NoRedirect()]
        if proxies is not None:
            handlers.append(urllib.request.ProxyHandler(dict(proxies)))
        if ssl_context is not None:
            handlers.append(urllib.request.HTTPSHandler(context=ssl_context))
        self._opener = urllib.request.build_opener(*handlers)
        self._clock = clock or (lambda: datetime.now(timezone.utc))

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.base_url!r}, lookup={self.lookup!r})"

    # ------------------------------------------------------------------ look-ups

    def identity(self, identifier: str) -> IdentityFacts | None:
        """The identity's facts, ``None`` when the directory has no such identity.

        Raises:
            FactsUnavailableError: the directory did not answer usably.
            InvalidFactsError: it holds a value that is not a valid fact.
        """
        key = _canonical_or_none(identifier)
        if key is None:
            return None
        deadline = time.monotonic() + self.timeout
        resource = self._find(key, deadline)
        if resource is None:
            return None
        return self._facts(key, resource, deadline)

    async def aidentity(self, identifier: str) -> IdentityFacts | None:
        """:meth:`identity` in a worker thread (the HTTP client is synchronous)."""
        return await asyncio.to_thread(self.identity, identifier)

    def _find(self, key: str, deadline: float) -> dict[str, Any] | None:
        if self.lookup == "id":
            resource = self._get(f"/{self.resource}/{urllib.parse.quote(key, safe='')}", deadline)
            if resource is None:
                return None
            _expect_resource(resource)
            found = resource.get("id")
        else:
            # A SCIM filter's string is a JSON string (RFC 7644 §3.4.2.2).
            query = urllib.parse.urlencode({"filter": f"{self.lookup} eq {json.dumps(key)}"})
            answer = self._get(f"/{self.resource}?{query}", deadline)
            if answer is None:
                return None  # 404 on a query: treated as no match
            resource = _single(answer)
            if resource is None:
                return None
            found = _attribute(resource, self.lookup)
        if not isinstance(found, str) or _canonical_or_none(found) != key:
            # A server that ignored the filter must not hand us someone else.
            raise FactsUnavailableError(f"answered with an identity whose {self.lookup} is not the one asked for",
                                        source=self.source)
        return resource

    def _facts(self, key: str, resource: dict[str, Any], deadline: float) -> IdentityFacts:
        values: dict[str, Any] = {"id": key, "type": self.identity_type}
        sources: dict[str, str] = {"id": self.lookup, "type": "identity_type"}
        errors: list[FieldError] = []
        if "status" not in self.attributes:
            active = _attribute(resource, "active")
            sources["status"] = "active"
            if active is True:
                values["status"] = "active"
            elif active is False:
                values["status"] = "offboarded"  # suspended or offboarded: the riskiest
            elif active is not None:
                errors.append(FieldError("scim:active -> status", "must be true or false"))
        for fact, path in self.attributes.items():
            raw = _attribute(resource, path)
            if raw is None:
                continue
            sources[fact] = path
            try:
                values[fact] = self._value(fact, raw)
            except ValueError as exc:
                errors.append(FieldError(f"scim:{path} -> {fact}", str(exc)))
        if "manager" in values and self.resolve_manager and self.lookup != "id":
            values["manager"] = self._manager(values["manager"], deadline)
        if "roles" not in self.attributes:
            values["roles"] = self._roles(resource)
        if errors:
            raise InvalidFactsError(errors)
        try:
            return IdentityFacts.model_validate({k: v for k, v in values.items() if v is not None})
        except ValidationError as exc:
            raise InvalidFactsError([
                FieldError(f"scim:{sources.get(e.path.split('.')[0], e.path)} -> {e.path}", e.message)
                for e in field_errors_from_pydantic(exc, model=IdentityFacts)
            ]) from None

    def _manager(self, manager_id: Any, deadline: float) -> str | None:
        """The manager's identifier, from their SCIM id; ``None`` when the directory has no such user."""
        if not isinstance(manager_id, str) or not manager_id:
            raise InvalidFactsError([FieldError(f"scim:{self.attributes['manager']} -> manager",
                                                "must be the manager's SCIM id")])
        resource = self._get(f"/{self.resource}/{urllib.parse.quote(manager_id, safe='')}", deadline)
        if resource is None:
            return None
        _expect_resource(resource)
        found = _attribute(resource, self.lookup)
        return found if isinstance(found, str) else None

    def _roles(self, resource: Mapping[str, Any]) -> list[str]:
        roles: list[str] = []
        skipped = 0
        for path in self.roles_from:
            raw = _attribute(resource, path)
            for item in raw if isinstance(raw, list) else ([] if raw is None else [raw]):
                role = _canonical_or_none(item) if isinstance(item, str) else None
                if role is None:
                    skipped += 1
                elif role not in roles:
                    roles.append(role)
        if skipped:
            log.debug("scim: %d role or group name(s) that are not valid identifiers skipped", skipped)
        return roles[:256]

    def _value(self, fact: str, raw: Any) -> Any:
        """A SCIM attribute's value as a fact's (``ValueError`` says what is wrong, never the value)."""
        if fact in _LISTS:
            items = raw if isinstance(raw, list) else [raw]
            out = [_scalar(i) for i in items]
            if not all(isinstance(i, str) for i in out):
                raise ValueError("must be strings (or complex values with a string 'value')")
            return [i.lower() for i in out] if fact in _ENUMS else out
        value = _scalar(raw)
        if fact in _BOOLS:
            if isinstance(value, str) and value.strip().lower() in ("true", "false"):
                return value.strip().lower() == "true"
            if not isinstance(value, bool):
                raise ValueError("must be a boolean")
            return value
        if fact in _DAYS or fact in _HOURS:
            if isinstance(value, str) and not value.strip().isdigit():
                return self._age(value, days=fact in _DAYS)
        if fact in _INTS:
            if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
                return int(value.strip())
            if isinstance(value, bool) or not isinstance(value, int):
                raise ValueError("must be a whole number" + (" or an RFC 3339 date-time" if fact in _DAYS else ""))
            return value
        if fact in _HOURS:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise ValueError("must be a number of hours or an RFC 3339 date-time")
            return float(value)
        if not isinstance(value, str):
            raise ValueError("must be a string")
        return value.strip().lower() if fact in _ENUMS else value

    def _age(self, text: str, *, days: bool) -> int | float:
        try:
            then = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
        except ValueError:
            raise ValueError("must be a number or an RFC 3339 date-time") from None
        if then.tzinfo is None or then.utcoffset() is None:
            raise ValueError("must carry a time zone (Z or +hh:mm)")
        seconds = (self._clock() - then).total_seconds()
        if seconds < 0:
            raise ValueError("is in the future")
        # Rounded down: an age only ever reads younger, which is the riskier side.
        return int(seconds // 86400) if days else math.floor(seconds / 3.6) / 1000

    # ------------------------------------------------------------------ HTTP

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": ", ".join(_JSON_TYPES), "User-Agent": "helpdesk-policy-scim"}
        token = self._token
        if callable(token):
            try:
                token = token()
            except Exception as exc:  # noqa: BLE001 - a token source that fails means no look-up
                raise FactsUnavailableError(f"the token source failed ({type(exc).__name__})",
                                            source=self.source) from None
            problems: list[FieldError] = []
            _token_problem(token, problems)
            if problems:
                raise FactsUnavailableError("the token source returned no usable token", source=self.source)
        if token is not None:
            headers["Authorization"] = f"Bearer {token}"
        return headers

    def _get(self, path: str, deadline: float) -> dict[str, Any] | None:
        """GET ``path`` under the base URL: the JSON object, or ``None`` on 404."""
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise FactsUnavailableError(f"no answer within {self.timeout} s", source=self.source)
        request = urllib.request.Request(self.base_url + path, headers=self._headers(), method="GET")
        try:
            with self._opener.open(request, timeout=remaining) as response:
                ctype = response.headers.get_content_type()
                body = self._read(response, deadline)
        except urllib.error.HTTPError as exc:
            exc.close()
            if exc.code == 404:
                return None
            raise FactsUnavailableError(_status_message(exc.code), source=self.source) from None
        except FactsUnavailableError:
            raise
        except (urllib.error.URLError, http.client.HTTPException, OSError, ValueError) as exc:
            reason = getattr(exc, "reason", None) or exc
            raise FactsUnavailableError(f"the directory did not answer ({type(reason).__name__})",
                                        source=self.source) from None
        if ctype not in _JSON_TYPES:
            raise FactsUnavailableError("answered with something that is not SCIM JSON", source=self.source)
        try:
            text = body.decode("utf-8")
            data = load_json(text, source="scim")
        except (UnicodeDecodeError, DocumentError):
            raise FactsUnavailableError("answered with something that is not valid JSON", source=self.source) from None
        if not isinstance(data, dict):
            raise FactsUnavailableError("answered with JSON that is not an object", source=self.source)
        return data

    def _read(self, response: Any, deadline: float) -> bytes:
        # read1 returns after one receive, so a server that trickles bytes
        # meets the deadline instead of holding the caller for ever.
        chunks: list[bytes] = []
        size = 0
        while True:
            if time.monotonic() > deadline:
                raise FactsUnavailableError(f"no complete answer within {self.timeout} s", source=self.source)
            chunk = response.read1(65536)
            if not chunk:
                return b"".join(chunks)
            size += len(chunk)
            if size > self.max_response_bytes:
                raise FactsUnavailableError(f"answered more than {self.max_response_bytes} bytes", source=self.source)
            chunks.append(chunk)


# --------------------------------------------------------------------------- helpers


def _base_url(value: object, allow_insecure_http: bool, errors: list[FieldError]) -> str:
    if not isinstance(value, str):
        errors.append(FieldError("base_url", "must be an http(s) URL"))
        return ""
    parts = urllib.parse.urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        errors.append(FieldError("base_url", "must be an http(s) URL with a host"))
        return ""
    if parts.username is not None or parts.password is not None:
        errors.append(FieldError("base_url", "must not hold credentials (pass token=)"))
    if parts.query or parts.fragment:
        errors.append(FieldError("base_url", "must not hold a query or a fragment"))
    if parts.scheme == "http" and not allow_insecure_http and not _loopback(parts.hostname):
        errors.append(FieldError("base_url", "is plain http to a host that is not loopback: the token would "
                                             "cross the network in clear (use https, or allow_insecure_http=True)"))
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}{parts.path.rstrip('/')}"


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _token_problem(token: object, errors: list[FieldError]) -> None:
    # Printable ASCII without spaces: anything else could split the header.
    if not isinstance(token, str) or not token or not token.isascii() or not token.isprintable() or " " in token:
        errors.append(FieldError("token", "must be a non-empty printable ASCII string without spaces"))


def _status_message(code: int) -> str:
    if 300 <= code < 400:
        return f"answered HTTP {code}, a redirect (not followed: the token is sent to the base URL only)"
    if code in (401, 403):
        return f"refused the credentials (HTTP {code})"
    if code == 429:
        return "is rate-limiting (HTTP 429)"
    return f"answered HTTP {code}"


def _expect_resource(resource: Mapping[str, Any]) -> None:
    if not isinstance(resource.get("schemas"), list):
        raise FactsUnavailableError("answered with an object that is not a SCIM resource (no 'schemas')",
                                    source=ScimFactsProvider.source)


def _single(answer: Mapping[str, Any]) -> dict[str, Any] | None:
    """The one resource of a ListResponse; None when there is none."""
    schemas = answer.get("schemas")
    if not isinstance(schemas, list) or LIST_RESPONSE not in schemas:
        raise FactsUnavailableError("answered a query with something that is not a SCIM ListResponse",
                                    source=ScimFactsProvider.source)
    total = answer.get("totalResults")
    resources = answer.get("Resources", [])
    if isinstance(total, bool) or not isinstance(total, int) or not isinstance(resources, list):
        raise FactsUnavailableError("answered a ListResponse without totalResults or Resources",
                                    source=ScimFactsProvider.source)
    if total == 0 and not resources:
        return None
    if total != 1 or len(resources) != 1 or not isinstance(resources[0], dict):
        # Two identities for one identifier: neither is the record.
        raise FactsUnavailableError("several identities match one identifier", source=ScimFactsProvider.source)
    _expect_resource(resources[0])
    return resources[0]


def _get_ci(obj: Any, name: str) -> Any:
    """``obj[name]``, attribute names compared case-insensitively (RFC 7643 §2.1)."""
    if not isinstance(obj, Mapping):
        return None
    if name in obj:
        return obj[name]
    lowered = name.lower()
    for key, value in obj.items():
        if isinstance(key, str) and key.lower() == lowered:
            return value
    return None


def _attribute(resource: Mapping[str, Any], path: str) -> Any:
    """The value at a SCIM attribute path: ``active``, ``name.familyName``,
    ``urn:…:enterprise:2.0:User:manager.value``; a multi-valued attribute gives a list."""
    node: Any = resource
    if path.lower().startswith("urn:"):
        urn, _, path = path.rpartition(":")
        if urn.lower() != CORE_USER.lower():  # the core schema's attributes are at the top level
            node = _get_ci(resource, urn)
    for part in path.split("."):
        if isinstance(node, list):
            node = [v for v in (_get_ci(item, part) for item in node) if v is not None]
        else:
            node = _get_ci(node, part)
        if node is None:
            return None
    return node


def _scalar(value: Any) -> Any:
    """A complex value's ``value`` sub-attribute (``{"value": "u-1", "display": …}``)."""
    if isinstance(value, Mapping):
        return _get_ci(value, "value")
    return value
