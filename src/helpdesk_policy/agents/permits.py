"""Permits: single-use, expiring, signed authority to perform one identity change.

A :class:`Permit` is what :meth:`Guard.authorize <helpdesk_policy.agents.guard.Guard.authorize>`
hands out when a request may be performed now. It is bound to the decision
that allowed it (``decision_id``), to the exact request decided
(``input_digest``: any other action, target, channel or fact gives another
digest), to the request as the caller submitted it (``request_digest``: the
same unless the guard rebuilt it from the facts of record) and to the policy
revision that decided it. It expires
(``expires_at``, a few minutes after ``issued_at``) and authorizes one
execution: the executor *consumes* it right before making the change, and
:class:`PermitVerifier` refuses a permit that is

* forged: its HMAC-SHA256 ``signature`` does not match its fields under the
  guard's key (edited, or never issued by the guard): :class:`PermitForgedError`;
* mismatched: the request being executed is not the one authorized, or the
  policy revision changed since: :class:`PermitMismatchError`;
* expired: :class:`PermitExpiredError`;
* replayed: consumed before, as recorded atomically in a
  :class:`PermitStore`: :class:`PermitReplayedError`.

This is the enforcement point that keeps an AI agent within the decision
(OWASP LLM Top 10 2025 LLM06 *excessive agency*: the model proposes, a
deterministic check outside it disposes; NIST CSF 2.0 PR.AA-05: access is
authorized per action and per request, least privilege), and a permit that
can be replayed or transplanted onto another request would be a bearer
credential for identity changes (OWASP NHI Top 10 2025, NHI7 long-lived
secrets: hence single use and minutes of life).

The signature covers every field, so an executor in another process can check
a permit it received as JSON (:meth:`Permit.to_dict` / :meth:`Permit.from_dict`)
with a :class:`PermitVerifier` holding the same key. Single use across
processes needs a shared :class:`PermitStore` (one ``claim`` that succeeds
once per permit id, e.g. an ``INSERT`` under a unique key in the ticketing
database or Redis ``SET NX``): the :class:`InMemoryPermitStore` counts uses
only inside one process.

A permit holds no secret: its signature proves origin, it cannot be used
for anything but the one request it names, and it names no credential.

>>> from datetime import datetime, timedelta, timezone
>>> verifier = PermitVerifier(key=b"k" * 32)
>>> now = datetime.now(timezone.utc)
>>> permit = verifier.issue(decision_id="d-1", input_digest="sha256:" + "0" * 64,
...                         request_digest="sha256:" + "0" * 64, policy_revision="sha256:" + "1" * 64, level="self_service",
...                         action="password_reset", target_id="u-1", request_id="INC-1",
...                         issued_at=now, expires_at=now + timedelta(minutes=5))
>>> verifier.consume(permit).permit_id == permit.permit_id
True
>>> verifier.consume(permit)
Traceback (most recent call last):
...
helpdesk_policy.agents.errors.PermitReplayedError: permit ... was consumed before: a permit authorizes one execution
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
import secrets
import threading
import uuid
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta, timezone
from typing import Annotated, Any, Protocol, runtime_checkable

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator

from ..digest import input_digest
from ..errors import FieldError, InvalidConfigError
from ..levels import Level
from ..models import TIMESTAMP_FORMAT, Request, parse_request
from .errors import (
    PermitError,
    PermitExpiredError,
    PermitForgedError,
    PermitMismatchError,
    PermitReplayedError,
)

__all__ = [
    "Permit",
    "PermitStore",
    "InMemoryPermitStore",
    "PermitVerifier",
    "Clock",
    "utc_now",
    "PERMIT_FORMAT",
    "MIN_KEY_BYTES",
    "parse_key",
]

log = logging.getLogger(__name__)

#: The format tag signed with every permit: a permit of another format (or
#: another kind of signed object under the same key) never verifies as this one.
PERMIT_FORMAT = "helpdesk-policy/permit/v1"

#: The shortest HMAC key accepted: 256 bits, the security strength of
#: HMAC-SHA256 (NIST SP 800-107r1 section 5.3.4; SP 800-224).
MIN_KEY_BYTES = 32

#: A function returning the current time (timezone-aware). Injected in tests.
Clock = Callable[[], datetime]


def utc_now() -> datetime:
    """The current time in UTC (the default :data:`Clock`)."""
    return datetime.now(timezone.utc)


def _now(clock: Clock) -> datetime:
    now = clock()
    if not isinstance(now, datetime) or now.tzinfo is None or now.utcoffset() is None:
        # A naive time is ambiguous by hours: an expiry check on it proves nothing.
        raise PermitError("the clock returned a time without a time zone: cannot check a permit's expiry")
    return now.astimezone(timezone.utc)


def _digest_field(value: str) -> str:
    if not value.startswith("sha256:") or len(value) != 71 or any(c not in "0123456789abcdef" for c in value[7:]):
        raise ValueError("must be sha256: and 64 lowercase hex digits")
    return value


_Id = Annotated[str, Field(min_length=1, max_length=256)]


class Permit(BaseModel):
    """Authority to perform one identity change, once, before ``expires_at``.

    Issued by :meth:`Guard.authorize <helpdesk_policy.agents.guard.Guard.authorize>`
    (never built by hand: without the guard's key its signature does not
    verify). Check and use it with :meth:`consume` right before the change.

    Attributes:
        permit_id: Random, unique (``permit-`` and a UUID4).
        decision_id: The decision that allowed the change.
        input_digest: The decided request's digest: the permit is for that
            request and no other.
        request_digest: The digest of the request as the caller submitted it
            (before the guard's ``resolve`` hook rebuilt it from the facts of
            record; the same as ``input_digest`` without one). An executor
            may present either request.
        policy_revision: The policy revision that decided it.
        level: The decision's level (never ``deny``).
        action: The action permitted (e.g. ``mfa_reset``).
        target_id: The identity it may be performed on.
        request_id: The ticket (``request.id``).
        verified: The requirements the evidence showed (empty for self-service).
        issued_at: When it was issued (UTC).
        expires_at: When it stops being valid (UTC).
        signature: HMAC-SHA256 over every other field under the guard's key, hex.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True, hide_input_in_errors=True)

    permit_id: _Id
    decision_id: _Id
    input_digest: Annotated[str, Field(max_length=71)]
    request_digest: Annotated[str, Field(max_length=71)]
    policy_revision: _Id
    level: Level
    action: Annotated[str, Field(min_length=1, max_length=64)]
    target_id: _Id
    request_id: _Id
    verified: list[Annotated[str, Field(min_length=1, max_length=64)]] = Field(default_factory=list, max_length=8)
    issued_at: AwareDatetime
    expires_at: AwareDatetime
    signature: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]

    _verifier: PermitVerifier | None = PrivateAttr(default=None)

    @field_validator("input_digest", "request_digest")
    @classmethod
    def _a_digest(cls, value: str) -> str:
        return _digest_field(value)

    @field_validator("level")
    @classmethod
    def _allowed_level(cls, value: Level) -> Level:
        if not value.allowed:
            raise ValueError("a permit is never issued for a denied request")
        return value

    @field_validator("issued_at", "expires_at")
    @classmethod
    def _utc(cls, value: datetime) -> datetime:
        return value.astimezone(timezone.utc)

    # ------------------------------------------------------------------ use

    @property
    def instruction(self) -> str:
        """``"perform"``: what a permit tells its holder (as an Escalation says ``escalate``)."""
        return "perform"

    def consume(self, request: Request | Mapping[str, Any] | None = None) -> Permit:
        """Check this permit and use it up, right before making the change.

        Args:
            request: The request about to be executed. Pass it: the permit is
                then refused unless the request is exactly the one authorized.

        Returns:
            This permit, now consumed.

        Raises:
            PermitForgedError, PermitMismatchError, PermitExpiredError,
            PermitReplayedError: see :meth:`PermitVerifier.consume`.
            PermitError: the permit is not bound to a verifier (one read with
                :meth:`from_dict` without ``verifier``): use
                ``verifier.consume(permit, request)``.
        """
        return self._bound().consume(self, request)

    async def aconsume(self, request: Request | Mapping[str, Any] | None = None) -> Permit:
        """Async twin of :meth:`consume` (a shared store's claim runs off the event loop)."""
        return await self._bound().aconsume(self, request)

    def _bound(self) -> PermitVerifier:
        if self._verifier is None:
            raise PermitError(f"permit {self.permit_id} is not bound to a guard: check it with "
                              "PermitVerifier(key=..., store=...).consume(permit, request)", permit_id=self.permit_id)
        return self._verifier

    # ---------------------------------------------------------- serialization

    def signed_fields(self) -> dict[str, Any]:
        """Every field but the signature, in the form the signature covers."""
        return _signed_fields(self.model_dump(mode="python", exclude={"signature"}))

    def to_dict(self) -> dict[str, Any]:
        """The permit as JSON-ready data (timestamps as ``YYYY-MM-DDTHH:MM:SS.ffffffZ``)."""
        return {**self.signed_fields(), "signature": self.signature}

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], *, verifier: PermitVerifier | None = None) -> Permit:
        """Read a permit back (e.g. in the executor's process); not yet checked.

        Raises:
            PermitForgedError: the data is not a permit (naming each bad field,
                never a value).
        """
        try:
            permit = cls.model_validate(dict(data))
        except ValidationError as exc:
            paths = ", ".join(".".join(str(p) for p in e.get("loc", ())) or "(root)"
                              for e in exc.errors(include_url=False))
            raise PermitForgedError(f"not a valid permit: {paths}") from None
        except TypeError:
            raise PermitForgedError("not a valid permit: (root)") from None
        permit._verifier = verifier
        return permit

    def __repr__(self) -> str:
        return (f"<Permit {self.permit_id} {self.level.value} {self.action} on {self.target_id!r} "
                f"expires {self.expires_at.strftime(TIMESTAMP_FORMAT)}>")


def _signed_fields(values: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in values.items():
        if isinstance(value, datetime):
            value = value.astimezone(timezone.utc).strftime(TIMESTAMP_FORMAT)
        elif isinstance(value, Level):
            value = value.value
        elif isinstance(value, list):
            value = list(value)
        out[name] = value
    return out


def _payload(fields: Mapping[str, Any]) -> bytes:
    # Canonical JSON: sorted keys, no spaces, ASCII; the format tag first so a
    # signature never verifies a document of another kind made with the same key.
    body = json.dumps({"format": PERMIT_FORMAT, **fields}, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return body.encode("ascii")


# ------------------------------------------------------------------- the store


@runtime_checkable
class PermitStore(Protocol):
    """Where permit uses are recorded: the single-use check.

    ``claim`` must be atomic: of any number of concurrent calls with one
    ``permit_id``, across every process sharing the store, exactly one
    returns True, ever (until ``expires_at`` has long passed: a store may
    forget a permit once it has expired, since an expired permit is refused
    anyway). A store that cannot answer must raise, never return True.
    Several processes (web workers, a service behind a load balancer) need
    one shared store; per-process stores would let each process accept the
    permit once.

    A store may also define ``async def aclaim(permit_id, expires_at)``;
    :meth:`PermitVerifier.aconsume` awaits it when present, and otherwise
    runs ``claim`` in a worker thread.
    """

    def claim(self, permit_id: str, expires_at: datetime) -> bool:
        """Record the use of ``permit_id``; True the first time only."""
        ...


class InMemoryPermitStore:
    """A thread-safe :class:`PermitStore` for one process.

    Remembers each permit id until ``retain`` after its expiry (then an
    expiry check refuses it anyway), so memory stays bounded by the permits
    issued within one time-to-live. It does not survive a restart and is not
    shared between processes: use a shared store for several workers.

    Args:
        retain: How long after ``expires_at`` a claimed id is kept (covers
            clock differences between the verifier and this store).
        clock: The current time (default: UTC now).
    """

    def __init__(self, *, retain: timedelta = timedelta(minutes=10), clock: Clock | None = None) -> None:
        self._claimed: dict[str, datetime] = {}
        self._lock = threading.Lock()
        self._retain = retain
        self._clock = clock or utc_now
        self._next_purge: datetime | None = None

    def claim(self, permit_id: str, expires_at: datetime) -> bool:
        now = _now(self._clock)
        with self._lock:
            if self._next_purge is None or now >= self._next_purge:
                self._purge(now)
            if permit_id in self._claimed:
                return False
            self._claimed[permit_id] = expires_at
            return True

    def _purge(self, now: datetime) -> None:
        horizon = now - self._retain
        for pid in [p for p, exp in self._claimed.items() if exp < horizon]:
            del self._claimed[pid]
        self._next_purge = now + timedelta(seconds=30)

    def __len__(self) -> int:
        with self._lock:
            return len(self._claimed)

    def __repr__(self) -> str:
        return f"<InMemoryPermitStore claimed={len(self)}>"


# ---------------------------------------------------------------- the verifier


def parse_key(key: bytes | str | None, name: str = "key") -> bytes:
    """The HMAC key as bytes: a random one when ``None``.

    Raises:
        InvalidConfigError: the key is not bytes or str, or shorter than
            :data:`MIN_KEY_BYTES` (naming the argument, never the key).
    """
    if key is None:
        return secrets.token_bytes(MIN_KEY_BYTES)
    if isinstance(key, str):
        key = key.encode("utf-8", "surrogatepass")
    if not isinstance(key, bytes | bytearray) or len(key) < MIN_KEY_BYTES:
        raise InvalidConfigError([FieldError(name, f"must be bytes or str of at least {MIN_KEY_BYTES} bytes "
                                                   "(a random key from a secrets manager), or None")])
    return bytes(key)


class PermitVerifier:
    """Signs permits, and checks and consumes them at execution time.

    A :class:`~helpdesk_policy.agents.guard.Guard` holds one; an executor in
    another process builds its own with the same ``key`` and a shared
    ``store`` and calls :meth:`consume` before every identity change.

    Args:
        key: The HMAC-SHA256 key (at least 32 bytes). ``None``: a random key
            for this process only (permits then verify nowhere else). Keep
            it in a secrets manager; it is never logged or shown in ``repr``.
        store: Where uses are recorded (default: a new
            :class:`InMemoryPermitStore`, this process only).
        clock: The current time (default: UTC now).
        policy_revision: The revision permits must carry (a str, or a
            callable returning the current one); ``None`` skips the check.
            A permit decided on another revision is refused: the policy that
            allowed it is no longer the one in force.

    Raises:
        InvalidConfigError: a bad key or store.
    """

    def __init__(
        self,
        *,
        key: bytes | str | None = None,
        store: PermitStore | None = None,
        clock: Clock | None = None,
        policy_revision: str | Callable[[], str] | None = None,
    ) -> None:
        problems: list[FieldError] = []
        try:
            self._key = parse_key(key)
        except InvalidConfigError as exc:
            problems.extend(exc.errors)
        if store is not None and not callable(getattr(store, "claim", None)):
            problems.append(FieldError("store", "must have a claim(permit_id, expires_at) method "
                                                "(a PermitStore such as InMemoryPermitStore)"))
        if problems:
            raise InvalidConfigError(problems)
        self.store: PermitStore = store if store is not None else InMemoryPermitStore(clock=clock)
        self.clock: Clock = clock or utc_now
        self._revision = policy_revision

    # ------------------------------------------------------------------ issue

    def issue(self, **fields: Any) -> Permit:
        """A new signed permit for ``fields`` (every :class:`Permit` field but
        ``permit_id`` and ``signature``), bound to this verifier."""
        values = {"permit_id": f"permit-{uuid.uuid4()}", **fields}
        # Validated first, so that what is signed is exactly what a reader will parse.
        unsigned = Permit.model_validate({**values, "signature": "0" * 64})
        signed = unsigned.model_copy(update={"signature": self._sign(unsigned.signed_fields())})
        signed._verifier = self
        return signed

    def _sign(self, fields: Mapping[str, Any]) -> str:
        return hmac.new(self._key, _payload(fields), hashlib.sha256).hexdigest()

    # ------------------------------------------------------------------ check

    def check(self, permit: Permit | Mapping[str, Any], request: Request | Mapping[str, Any] | None = None) -> Permit:
        """Every check of :meth:`consume` but the single-use one; nothing is recorded.

        For a dry run ("would this permit be accepted?"); the executor calls
        :meth:`consume`.
        """
        permit = self._read(permit)
        expected = self._sign(permit.signed_fields())
        if not hmac.compare_digest(expected, permit.signature):
            raise PermitForgedError(f"permit {permit.permit_id} has a signature that does not match its fields: "
                                    "it was edited or not issued by this guard", permit_id=permit.permit_id)
        revision = self._revision() if callable(self._revision) else self._revision
        if revision is not None and revision != permit.policy_revision:
            raise PermitMismatchError(f"permit {permit.permit_id} was decided on another policy revision than the "
                                      "one in force: authorize again", permit_id=permit.permit_id)
        now = _now(self.clock)
        if now >= permit.expires_at:
            raise PermitExpiredError(f"permit {permit.permit_id} expired at "
                                     f"{permit.expires_at.strftime(TIMESTAMP_FORMAT)}: authorize again",
                                     permit_id=permit.permit_id)
        if request is not None:
            inner = getattr(request, "request", None)  # a provenanced request: its Request
            digest = input_digest(parse_request(inner if isinstance(inner, Request) else request))
            if not (hmac.compare_digest(digest, permit.input_digest)
                    or hmac.compare_digest(digest, permit.request_digest)):
                raise PermitMismatchError(f"permit {permit.permit_id} is for another request (decision "
                                          f"{permit.decision_id}): the request being executed differs from the "
                                          "one authorized; authorize this request", permit_id=permit.permit_id)
        return permit

    def consume(self, permit: Permit | Mapping[str, Any], request: Request | Mapping[str, Any] | None = None) -> Permit:
        """Check ``permit`` and record its use: call right before the change.

        The checks, in order: the signature, the policy revision, the expiry,
        the request (when given: its digest must be the permit's
        ``input_digest`` or ``request_digest``), then the atomic claim in the
        store. A permit refused by the first
        four is not used up.

        Args:
            permit: The permit (or its :meth:`Permit.to_dict` form).
            request: The request about to be executed. An executor should
                always pass it.

        Returns:
            The permit, consumed.

        Raises:
            PermitForgedError: malformed, or the signature does not match.
            PermitMismatchError: another request or policy revision.
            PermitExpiredError: past ``expires_at``.
            PermitReplayedError: consumed before.
            InvalidRequestError: ``request`` is not a valid request.
        """
        permit = self.check(permit, request)
        if self.store.claim(permit.permit_id, permit.expires_at) is not True:
            raise self._replayed(permit)
        log.info("permit %s consumed (decision %s, %s)", permit.permit_id, permit.decision_id, permit.level.value)
        return permit

    async def aconsume(
        self, permit: Permit | Mapping[str, Any], request: Request | Mapping[str, Any] | None = None,
    ) -> Permit:
        """Async twin of :meth:`consume`: a store's ``aclaim`` is awaited; a
        plain ``claim`` of a shared store runs in a worker thread."""
        permit = self.check(permit, request)
        aclaim = getattr(self.store, "aclaim", None)
        if aclaim is not None:
            claimed = await aclaim(permit.permit_id, permit.expires_at)
        elif isinstance(self.store, InMemoryPermitStore):
            claimed = self.store.claim(permit.permit_id, permit.expires_at)  # a dict under a lock: no I/O
        else:
            claimed = await asyncio.to_thread(self.store.claim, permit.permit_id, permit.expires_at)
        if claimed is not True:
            raise self._replayed(permit)
        log.info("permit %s consumed (decision %s, %s)", permit.permit_id, permit.decision_id, permit.level.value)
        return permit

    def _replayed(self, permit: Permit) -> PermitReplayedError:
        log.warning("permit %s (decision %s) presented again after use: refused", permit.permit_id,
                    permit.decision_id)
        return PermitReplayedError(f"permit {permit.permit_id} was consumed before: a permit authorizes one "
                                   "execution", permit_id=permit.permit_id)

    def _read(self, permit: Permit | Mapping[str, Any]) -> Permit:
        if isinstance(permit, Permit):
            # Validated again: model_copy(update=...) and model_construct skip
            # validation, and a signature is only meaningful over valid fields.
            try:
                data = permit.model_dump(mode="python", warnings=False)
            except Exception:  # noqa: BLE001 - whatever an unvalidated permit holds, it is not a permit
                raise PermitForgedError("not a valid permit: cannot be read back") from None
            read = Permit.from_dict(data, verifier=self)
        elif isinstance(permit, Mapping):
            read = Permit.from_dict(permit, verifier=self)
        else:
            raise PermitForgedError(f"not a permit: {type(permit).__name__}")
        return read

    def __repr__(self) -> str:
        return f"<PermitVerifier store={self.store!r}>"  # never the key
