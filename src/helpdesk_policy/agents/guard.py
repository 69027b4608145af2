"""The guard: an AI agent or an automation performs an identity change only with a permit.

An agent (a chatbot, an LLM with tools, a workflow) asks the guard before it
resets a password, a factor, an access right. :meth:`Guard.authorize`
decides the request with the policy and answers one of three things:

* :class:`~helpdesk_policy.agents.permits.Permit`: perform it, now, once. A
  single-use, signed (HMAC-SHA256), short-lived permit bound to the
  decision, the request's ``input_digest`` and the policy revision (NIST CSF
  2.0 PR.AA-05: access authorized per action); the function that makes the
  change consumes it (:meth:`Permit.consume`) and refuses a replayed,
  expired, forged or mismatched one.
* :class:`Escalation`: a person must act first: verify identity, approve,
  call back (``needs`` says which), or the change is above what this caller
  may do (``max_level``). The decision's constraints and playbook say to whom.
* :class:`Refusal`: the policy denies it, no engine could decide, or the
  guard failed: do not perform it.

The rule, exactly (:meth:`Guard.authorize`):

1. A denied decision, or one no engine made (``engine: "none"``, whatever the
   configured strict level), is a :class:`Refusal`. So is evidence that
   records an outcome already (the change was completed, refused or
   abandoned: a permit would act on a closed ticket).
2. ``max_level`` is the most this caller may ever perform (the guard's
   ``max_level``, lowered, never raised, per call). A decision above it is an
   :class:`Escalation`, whatever evidence comes with it: evidence never lifts
   the cap. The cap is the agent's authority (OWASP LLM06 *excessive agency*:
   an agent configured for self-service changes hands everything else to
   people, who act through their own guard with a higher cap).
3. At or below the cap, ``self_service`` needs nothing: a :class:`Permit`.
4. Any other level needs ``evidence`` that
   :meth:`HelpdeskPolicy.verify <helpdesk_policy.facade.HelpdeskPolicy.verify>`
   accepts for every requirement of the decision (``identity_step_up``,
   ``manager_approval``, ``out_of_band_callback``) and for its binding (the
   evidence's ``input_digest`` is the request's, as decided or as
   submitted), its time window and the policy revision. The guard has no
   check of its own: ``verify`` refuses an AI agent as verifier, approver,
   callback answerer or fallback confirmer,
   the requester approving their own request, an approver the decision
   excludes (the person an agent acts for, the identity it runs as), a
   callback to a contact from the request or too new. Anything not shown is
   an :class:`Escalation` listing it. All shown: a :class:`Permit`.

The guard decides the request afresh on every call (the decision in force,
not one an agent remembers), so the evidence is checked against the current
decision. The evidence's ``decision_id`` names the decision the people acted
on (the :class:`Escalation`'s, for the ticket's record); what binds it is
its ``input_digest``: the decided request's (``Escalation.input_digest``),
or the request's as the caller submitted it (``Escalation.request_digest``),
which stays the same across calls even when the ``resolve`` hook stamps
each rebuilt request with the time it was made.

What the guard cannot know: the guard decides the request it is given and
trusts the evidence it is given. An agent must never be the one to supply
either. Build the request from the systems of record (the ``resolve`` hook,
e.g. :mod:`helpdesk_policy.agents.facts`: a claimed fact is read at its
riskiest value, so an agent's claims never lower a decision), and take the
evidence from the ticketing system's records of who verified, approved and
called back (``evidence_source``), never from the model's tool call (OWASP
LLM01 prompt injection: a model can be made to say anything; CISA AA23-320A:
helpdesk social engineering targets exactly these checks).

>>> from helpdesk_policy import HelpdeskPolicy
>>> guard = Guard(HelpdeskPolicy(engine="native"))
>>> outcome = guard.authorize({
...     "request": {"id": "INC-7", "action": "password_reset", "channel": "self_service_portal"},
...     "actor": {"id": "u-1", "type": "human", "relationship": "self",
...               "authenticated": True, "auth_strength": "mfa"},
...     "target": {"id": "u-1", "type": "human", "privileged": False,
...                "privilege_tier": 0, "vip": False, "status": "active"},
... })
>>> outcome.instruction, outcome.level
('perform', <Level.SELF_SERVICE: 'self_service'>)
>>> outcome.consume().permit_id == outcome.permit_id
True
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from typing import TYPE_CHECKING, Any, Literal, TypeVar, Union

from pydantic import ValidationError

from ..errors import FieldError, InvalidConfigError, InvalidRequestError
from ..digest import input_digest
from ..evidence import Evidence, Verification
from ..levels import Level
from ..models import NO_ENGINE, ApproverConstraint, CallbackConstraint, Decision, Request, parse_request
from .errors import EscalationRequiredError, NotPermittedError, PermitError, RefusedError
from .permits import Clock, Permit, PermitStore, PermitVerifier, _now, utc_now

if TYPE_CHECKING:  # only a type: importing the agents package does not load the engines
    from ..facade import HelpdeskPolicy

__all__ = [
    "Guard",
    "Escalation",
    "Refusal",
    "Outcome",
    "PermitScope",
    "guarded",
    "requires_permit",
    "EvidenceSource",
    "RequestResolver",
    "REQUESTER_MESSAGES",
    "MAX_TTL_S",
]

log = logging.getLogger(__name__)

#: The longest permit life accepted: a permit is for "now", not for later.
MAX_TTL_S = 3600

#: Returns the request with the facts the caller must not be trusted to
#: state taken from the systems of record (a FactsProvider). Sync or async.
RequestResolver = Callable[[Request], Union[Request, Awaitable[Request]]]

#: Returns the evidence of record for a request (from the ticketing system:
#: who verified identity, approved, called back), or None. Sync or async.
EvidenceSource = Callable[[Request], Union[Evidence, None, Awaitable[Union[Evidence, None]]]]

#: What the requester may be told, per outcome. Deliberately generic: the
#: reasons (a caller-ID mismatch, a failed-verification count, a new device)
#: are internal risk signals that would coach an attacker on what to fake
#: next (CISA AA23-320A), so none is ever quoted.
REQUESTER_MESSAGES: dict[str, str] = {
    "permit": "Your request can be completed now.",
    "step_up": "We need to verify your identity before we can complete this request.",
    "manager_approval": "This request needs approval before it can be completed. We will follow up with you.",
    "callback": "We will confirm this request with you through contact details we already hold before "
                "completing it.",
    "above_max_level": "This request needs to be handled by a member of the service desk. We will follow up "
                       "with you.",
    "refused": "We cannot complete this request through this channel. Please contact the service desk.",
    "unavailable": "We cannot complete this request right now. Please contact the service desk.",
}

#: The verify() checks that must be satisfied before acting (the record_evidence
#: obligation and the outcome are recorded after acting, so they are not among them).
_PRE_CHECKS = ("binding", "window", "policy_revision")

_F = TypeVar("_F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Escalation:
    """A person must act before this request can be performed.

    Attributes:
        decision: The decision in force.
        needs: What is missing, in order: ``max_level`` (the level is above
            what this caller may perform), then each requirement not shown
            by the evidence (``identity_step_up``, ``manager_approval``,
            ``out_of_band_callback``, or any other the policy names), then
            ``evidence_binding``, ``evidence_window`` or ``policy_revision``
            when the evidence failed those checks.
        to: Who must act: ``service_desk`` (verifies identity; performs a
            change above the cap), the approver of record (``manager``,
            ``owner``, ``application_admin``), ``callback:holder`` or
            ``callback:owners``.
        approver: Who may approve (the decision's constraint), if needed.
        callback: Whom to call back (the decision's constraint), if needed.
        verification: ``verify``'s answer when evidence was given.
        message: What the requester may be told (never a risk signal).
        request_digest: The digest of the request as submitted (before the
            ``resolve`` hook); evidence may be bound to it instead of
            :attr:`input_digest`.
    """

    decision: Decision
    needs: list[str]
    to: list[str]
    approver: ApproverConstraint | None = None
    callback: CallbackConstraint | None = None
    verification: Verification | None = None
    message: str = REQUESTER_MESSAGES["above_max_level"]
    request_digest: str | None = None
    kind: Literal["escalation"] = field(default="escalation", init=False)

    @property
    def instruction(self) -> str:
        """``"escalate"``: hand the request to the people in :attr:`to`."""
        return "escalate"

    @property
    def level(self) -> Level:
        return self.decision.level

    @property
    def decision_id(self) -> str:
        """The decision to record evidence against (``Evidence.decision_id``)."""
        return self.decision.decision_id

    @property
    def input_digest(self) -> str:
        """The request's digest (``Evidence.input_digest``)."""
        return self.decision.input_digest

    @property
    def playbook(self) -> str:
        return self.decision.playbook

    @property
    def reasons(self) -> list[str]:
        """The decision's reason codes: for the helpdesk and the logs, not the requester."""
        return [r.code for r in self.decision.reasons]

    @property
    def problems(self) -> list[str]:
        """``verify``'s reasons for each check the evidence failed (for helpdesk staff)."""
        if self.verification is None:
            return []
        return [f"{i.check}: {i.reason}" for i in self.verification.problems if i.check not in _AFTER_CHECKS]

    def to_dict(self, *, include_reasons: bool = False) -> dict[str, Any]:
        """JSON-ready: what to do, what is missing, to whom; reason codes only when asked."""
        doc: dict[str, Any] = {
            "kind": self.kind, "instruction": self.instruction, "level": self.level.value,
            "decision_id": self.decision_id, "input_digest": self.input_digest,
            "request_digest": self.request_digest, "needs": list(self.needs),
            "to": list(self.to), "playbook": self.playbook, "message": self.message,
        }
        if include_reasons:
            doc["reasons"] = self.reasons
        return doc


@dataclass(frozen=True)
class Refusal:
    """Do not perform this request.

    Attributes:
        why: ``denied`` (the policy denies it), ``engine_unavailable`` (no
            engine could decide: fail closed), ``outcome_recorded`` (the
            evidence says the ticket already has an outcome) or
            ``guard_error`` (the guard itself failed: fail closed).
        decision: The decision, when there is one.
        message: What the requester may be told (never a risk signal).
    """

    why: Literal["denied", "engine_unavailable", "outcome_recorded", "guard_error"]
    decision: Decision | None = None
    message: str = REQUESTER_MESSAGES["refused"]
    kind: Literal["refusal"] = field(default="refusal", init=False)

    @property
    def instruction(self) -> str:
        """``"refuse"``: do not perform it; tell the requester :attr:`message`."""
        return "refuse"

    @property
    def level(self) -> Level:
        return self.decision.level if self.decision is not None else Level.DENY

    @property
    def decision_id(self) -> str | None:
        return self.decision.decision_id if self.decision is not None else None

    @property
    def playbook(self) -> str | None:
        return self.decision.playbook if self.decision is not None else None

    @property
    def reasons(self) -> list[str]:
        """The reason codes (the decision's, or ``guard_error``): not for the requester."""
        if self.decision is None:
            return [self.why]
        return [r.code for r in self.decision.reasons]

    def to_dict(self, *, include_reasons: bool = False) -> dict[str, Any]:
        """JSON-ready; reason codes only when asked (they may name risk signals)."""
        doc: dict[str, Any] = {
            "kind": self.kind, "instruction": self.instruction, "why": self.why, "level": self.level.value,
            "decision_id": self.decision_id, "playbook": self.playbook, "message": self.message,
        }
        if include_reasons:
            doc["reasons"] = self.reasons
        return doc


#: What :meth:`Guard.authorize` answers.
Outcome = Union[Permit, Escalation, Refusal]

#: Checks verify() makes that concern closing the ticket, not acting.
_AFTER_CHECKS = frozenset({"obligation:record_evidence", "outcome"})


def _parse_level(value: Any, name: str) -> Level:
    try:
        level = value if isinstance(value, Level) else Level(value)
    except (ValueError, TypeError):
        raise InvalidConfigError([FieldError(name, f"must be one of {[lv.value for lv in Level if lv.allowed]}")]) \
            from None
    if not level.allowed:
        raise InvalidConfigError([FieldError(name, "must be an allowed level: nothing performs a denied request")])
    return level


class Guard:
    """Decides whether a caller may perform a request now, and issues the permit.

    Args:
        policy: The policy to decide with.
        permits: Where permit uses are recorded (default: an in-memory store
            for this process; several processes need one shared
            :class:`~helpdesk_policy.agents.permits.PermitStore`).
        ttl_s: Seconds a permit lives (1 to 3600; default 300).
        key: The permits' HMAC-SHA256 key, at least 32 bytes (default: a
            random key for this process). Executors in other processes need
            the same key.
        clock: The current time, timezone-aware (default: UTC now).
        max_level: The most this caller may ever perform (default
            ``self_service``: everything else goes to people). A call's own
            ``max_level`` can only lower it.
        resolve: Called with every request before it is decided; returns
            the request with its facts of record, e.g.
            :func:`~helpdesk_policy.agents.facts.claim_resolver` bound to
            the authenticated session: a claimed fact is read at its
            riskiest. Its failure refuses.
        evidence_source: Where the evidence comes from when it must not come
            from the caller (the ticketing system's records). When set,
            evidence passed to :meth:`authorize` is not accepted (an
            Escalation says ``evidence_source_only``).

    Raises:
        InvalidConfigError: a bad ``ttl_s``, ``key``, ``permits`` or ``max_level``
            (every bad argument is named).
    """

    def __init__(
        self,
        policy: HelpdeskPolicy,
        *,
        permits: PermitStore | None = None,
        ttl_s: float = 300,
        key: bytes | str | None = None,
        clock: Clock | None = None,
        max_level: Level | str = Level.SELF_SERVICE,
        resolve: RequestResolver | None = None,
        evidence_source: EvidenceSource | None = None,
    ) -> None:
        problems: list[FieldError] = []
        if not callable(getattr(policy, "decide", None)) or not callable(getattr(policy, "verify", None)):
            problems.append(FieldError("policy", "must be a HelpdeskPolicy"))
        if isinstance(ttl_s, bool) or not isinstance(ttl_s, int | float) or not 1 <= ttl_s <= MAX_TTL_S:
            problems.append(FieldError("ttl_s", f"must be a number of seconds from 1 to {MAX_TTL_S}"))
        for name, hook in (("resolve", resolve), ("evidence_source", evidence_source)):
            if hook is not None and not callable(hook):
                problems.append(FieldError(name, "must be callable"))
        try:
            self.max_level = _parse_level(max_level, "max_level")
        except InvalidConfigError as exc:
            problems.extend(exc.errors)
        try:
            self.verifier = PermitVerifier(key=key, store=permits, clock=clock,
                                           policy_revision=lambda: self.policy.policy_revision)
        except InvalidConfigError as exc:
            problems.extend(FieldError("permits" if e.path == "store" else e.path, e.message) for e in exc.errors)
        if problems:
            raise InvalidConfigError(problems)
        self.policy = policy
        self.ttl = timedelta(seconds=ttl_s)
        self.clock: Clock = clock or utc_now
        self.resolve = resolve
        self.evidence_source = evidence_source

    # ----------------------------------------------------------------- decide

    def authorize(
        self,
        request: Request | Mapping[str, Any],
        evidence: Evidence | Mapping[str, Any] | None = None,
        *,
        max_level: Level | str | None = None,
    ) -> Outcome:
        """Decide ``request`` and answer Permit, Escalation or Refusal (see the module's rule).

        Args:
            request: The request (a :class:`Request`, a dict, or an object
                whose ``request`` attribute is one, such as a provenanced request).
            evidence: What people verified, approved and called back for it.
            max_level: Lowers this call's cap below the guard's (never raises it).

        Returns:
            A :class:`Permit` (perform now, once), an :class:`Escalation` or a
            :class:`Refusal`. Never a permit when anything fails.

        Raises:
            InvalidRequestError: the request or the evidence is invalid
                (every bad field named; evidence fields as ``evidence.…``).
            InvalidConfigError: ``max_level`` is not an allowed level.
        """
        cap = self._cap(max_level)
        req, ev = _parse_inputs(request, evidence)
        submitted = input_digest(req)
        try:
            req = self._resolved(req)
            ev = self._evidence(req, ev)
            decision = self.policy.decide(req)
            return self._outcome(req, submitted, decision, ev, cap)
        except InvalidRequestError:
            raise
        except Exception:  # noqa: BLE001 - fail closed: whatever failed, no permit
            log.exception("guard failed for a request: refusing")
            return Refusal("guard_error", message=REQUESTER_MESSAGES["unavailable"])

    async def aauthorize(
        self,
        request: Request | Mapping[str, Any],
        evidence: Evidence | Mapping[str, Any] | None = None,
        *,
        max_level: Level | str | None = None,
    ) -> Outcome:
        """Async twin of :meth:`authorize` (engines, hooks and stores off the event loop)."""
        cap = self._cap(max_level)
        req, ev = _parse_inputs(request, evidence)
        submitted = input_digest(req)
        try:
            if self.resolve is not None:
                req = parse_request(_unwrap(await _call(self.resolve, req)))
            ev = await self._aevidence(req, ev)
            decision = await self.policy.adecide(req)
            return self._outcome(req, submitted, decision, ev, cap)
        except InvalidRequestError:
            raise
        except Exception:  # noqa: BLE001 - fail closed: whatever failed, no permit
            log.exception("guard failed for a request: refusing")
            return Refusal("guard_error", message=REQUESTER_MESSAGES["unavailable"])

    # ---------------------------------------------------------------- consume

    def consume(self, permit: Permit | Mapping[str, Any], request: Request | Mapping[str, Any] | None = None) -> Permit:
        """Check and use up ``permit`` for ``request``: see
        :meth:`PermitVerifier.consume <helpdesk_policy.agents.permits.PermitVerifier.consume>`.

        ``request`` may be the request as submitted to :meth:`authorize`
        or as decided (after the ``resolve`` hook; a provenanced request is
        read as its request): the permit names both digests.
        """
        return self.verifier.consume(permit, _unwrap(request) if request is not None else None)

    async def aconsume(
        self, permit: Permit | Mapping[str, Any], request: Request | Mapping[str, Any] | None = None,
    ) -> Permit:
        """Async twin of :meth:`consume`."""
        return await self.verifier.aconsume(permit, _unwrap(request) if request is not None else None)

    def permit_for(
        self,
        request: Request | Mapping[str, Any],
        evidence: Evidence | Mapping[str, Any] | None = None,
        *,
        max_level: Level | str | None = None,
    ) -> PermitScope:
        """A context manager (``with`` or ``async with``) around an identity change.

        On entry it authorizes the request and consumes the permit, so the
        block runs at most once per permit and only with one; otherwise it
        raises :class:`EscalationRequiredError` or :class:`RefusedError` with
        the outcome attached (``exc.outcome``) and the block does not run.

        >>> with guard.permit_for(request, evidence) as permit:   # doctest: +SKIP
        ...     idp.reset_mfa(request["target"]["id"])
        """
        return PermitScope(self, request, evidence, max_level)

    def __repr__(self) -> str:
        return f"<Guard max_level={self.max_level.value} ttl={int(self.ttl.total_seconds())}s>"

    # -------------------------------------------------------------- internals

    def _cap(self, max_level: Level | str | None) -> Level:
        if max_level is None:
            return self.max_level
        level = _parse_level(max_level, "max_level")
        # A caller may lower its own cap, never raise it: the cap is the guard's configuration.
        return min(level, self.max_level)

    def _resolved(self, req: Request) -> Request:
        if self.resolve is None:
            return req
        resolved = self.resolve(req)
        if inspect.isawaitable(resolved):
            resolved = _run(resolved)
        return parse_request(_unwrap(resolved))

    def _evidence(self, req: Request, given: Evidence | None) -> Evidence | None:
        if self.evidence_source is None:
            return given
        if given is not None:
            return _REFUSED_EVIDENCE
        found = self.evidence_source(req)
        if inspect.isawaitable(found):
            found = _run(found)
        return _as_evidence(found)

    async def _aevidence(self, req: Request, given: Evidence | None) -> Evidence | None:
        if self.evidence_source is None:
            return given
        if given is not None:
            return _REFUSED_EVIDENCE
        return _as_evidence(await _call(self.evidence_source, req))

    def _outcome(self, req: Request, submitted: str, decision: Decision, evidence: Evidence | None,
                 cap: Level) -> Outcome:
        ticket = decision.decision_id
        if decision.engine == NO_ENGINE:
            # The strict level stands in for a policy no engine could run: it
            # may be looser than the policy (strict_level_may_be_looser), so never a permit.
            log.warning("decision %s made by no engine: refusing", ticket)
            return Refusal("engine_unavailable", decision, REQUESTER_MESSAGES["unavailable"])
        if not decision.allowed:
            log.info("decision %s denies the request: refusing", ticket)
            return Refusal("denied", decision, REQUESTER_MESSAGES["refused"])
        if evidence is not None and evidence is not _REFUSED_EVIDENCE and evidence.outcome is not None:
            log.warning("decision %s: the evidence already records an outcome (%s): refusing", ticket,
                        evidence.outcome.status)
            return Refusal("outcome_recorded", decision, REQUESTER_MESSAGES["refused"])
        needs: list[str] = []
        if decision.level > cap:
            needs.append("max_level")
        verification = None
        if evidence is _REFUSED_EVIDENCE:
            needs.append("evidence_source_only")
            missing = list(decision.requirements)
        elif evidence is None:
            missing = list(decision.requirements)
        else:
            # Bound to the evidence's decision id: the people acted on the
            # decision an Escalation gave them; this fresh one states the
            # same request (the binding check compares the input_digest:
            # the decided request's, or the submitted one's).
            update = {"decision_id": evidence.decision_id}
            if evidence.input_digest == submitted:
                update["input_digest"] = submitted
            bound = decision.model_copy(update=update)
            verification = self.policy.verify(bound, evidence, now=_now(self.clock))
            missing = _unmet(decision, verification)
        needs.extend(missing)
        if needs:
            escalation = _escalation(decision, needs, verification, submitted)
            log.info("decision %s (%s) escalated: needs %s", ticket, decision.level.value, ", ".join(needs))
            return escalation
        now = _now(self.clock)
        permit = self.verifier.issue(
            decision_id=decision.decision_id, input_digest=decision.input_digest, request_digest=submitted,
            policy_revision=decision.policy_revision, level=decision.level, action=req.request.action.value,
            target_id=req.target.id, request_id=req.request.id, verified=list(decision.requirements),
            issued_at=now, expires_at=now + self.ttl,
        )
        log.info("permit %s issued for decision %s (%s)", permit.permit_id, ticket, decision.level.value)
        return permit


class PermitScope:
    """``with guard.permit_for(...) as permit`` (or ``async with``): see :meth:`Guard.permit_for`."""

    def __init__(self, guard: Guard, request: Any, evidence: Any, max_level: Level | str | None) -> None:
        self._guard = guard
        self._request = request
        self._evidence = evidence
        self._max_level = max_level
        self.outcome: Outcome | None = None

    def __enter__(self) -> Permit:
        self.outcome = self._guard.authorize(self._request, self._evidence, max_level=self._max_level)
        return self._guard.consume(_permit_or_raise(self.outcome), self._request)

    def __exit__(self, *exc: object) -> None:
        return None

    async def __aenter__(self) -> Permit:
        self.outcome = await self._guard.aauthorize(self._request, self._evidence, max_level=self._max_level)
        return await self._guard.aconsume(_permit_or_raise(self.outcome), self._request)

    async def __aexit__(self, *exc: object) -> None:
        return None


# ------------------------------------------------------------------ decorators


def guarded(guard: Guard, *, max_level: Level | str | None = None, request_arg: str = "request") -> Callable[[_F], _F]:
    """Wrap an identity-changing function so that it runs only with a consumed permit.

    The wrapper authorizes the call's request (the argument named
    ``request_arg``) with the evidence passed as ``evidence=`` (popped from
    the call when the function has no ``evidence`` parameter), consumes the
    permit, then calls the function, passing ``permit=`` when it has a
    ``permit`` parameter. Without a permit it raises
    :class:`EscalationRequiredError` or :class:`RefusedError` (``exc.outcome``)
    and the function does not run. ``async def`` functions are supported.

    >>> @guarded(guard, max_level="step_up")               # doctest: +SKIP
    ... def reset_mfa(request, *, permit):
    ...     idp.reset_mfa(permit.target_id)
    >>> reset_mfa(request, evidence=evidence)              # doctest: +SKIP
    """
    if max_level is not None:
        _parse_level(max_level, "max_level")

    def decorate(fn: _F) -> _F:
        call = _Call(fn, request_arg)
        if inspect.iscoroutinefunction(fn):
            @functools.wraps(fn)
            async def awrapper(*args: Any, **kwargs: Any) -> Any:
                args, kwargs, request, evidence = call.split(args, kwargs)
                async with guard.permit_for(request, evidence, max_level=max_level) as permit:
                    return await fn(*args, **call.with_permit(kwargs, permit))
            return awrapper  # type: ignore[return-value]

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            args, kwargs, request, evidence = call.split(args, kwargs)
            with guard.permit_for(request, evidence, max_level=max_level) as permit:
                return fn(*args, **call.with_permit(kwargs, permit))
        return wrapper  # type: ignore[return-value]

    return decorate


def requires_permit(verifier: Guard | PermitVerifier, *, request_arg: str = "request") -> Callable[[_F], _F]:
    """The executor's side: the function runs only after the ``permit=`` it is
    given is consumed for the call's request.

    For an executor separate from the agent (another process, a queue
    worker): the agent authorizes and passes the permit along; the executor
    checks it at execution time. A missing, forged, expired, replayed or
    mismatched permit raises a :class:`PermitError` and the function does
    not run.

    >>> @requires_permit(PermitVerifier(key=KEY, store=shared_store))   # doctest: +SKIP
    ... def reset_mfa(request):
    ...     idp.reset_mfa(request["target"]["id"])
    >>> reset_mfa(request, permit=permit_json)                           # doctest: +SKIP
    """
    if not isinstance(verifier, Guard | PermitVerifier):
        raise InvalidConfigError([FieldError("verifier", "must be a Guard or a PermitVerifier")])

    def decorate(fn: _F) -> _F:
        call = _Call(fn, request_arg)
        if inspect.iscoroutinefunction(fn):
            @functools.wraps(fn)
            async def awrapper(*args: Any, **kwargs: Any) -> Any:
                args, kwargs, request, permit = call.split_permit(args, kwargs)
                consumed = await verifier.aconsume(permit, request)
                return await fn(*args, **call.with_permit(kwargs, consumed))
            return awrapper  # type: ignore[return-value]

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            args, kwargs, request, permit = call.split_permit(args, kwargs)
            consumed = verifier.consume(permit, request)
            return fn(*args, **call.with_permit(kwargs, consumed))
        return wrapper  # type: ignore[return-value]

    return decorate


class _Call:
    """How a wrapped function receives its request, evidence and permit."""

    def __init__(self, fn: Callable[..., Any], request_arg: str) -> None:
        self.signature = inspect.signature(fn)
        params = self.signature.parameters
        if request_arg not in params:
            raise InvalidConfigError([FieldError("request_arg", f"{fn.__qualname__} has no parameter "
                                                                f"{request_arg!r}: name the request's parameter")])
        self.request_arg = request_arg
        self.takes_evidence = "evidence" in params
        self.takes_permit = "permit" in params

    def _request(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        partial = {k: v for k, v in kwargs.items() if k != "permit"}
        try:
            bound = self.signature.bind_partial(*args, **partial)
        except TypeError as exc:
            raise TypeError(f"cannot find the request argument: {exc}") from None
        if self.request_arg not in bound.arguments:
            raise TypeError(f"missing the request argument {self.request_arg!r}")
        return bound.arguments[self.request_arg]

    def split(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any], Any, Any]:
        kwargs = dict(kwargs)
        if "permit" in kwargs and self.takes_permit:
            # The guard issues the permit for this call; one handed in is not trusted to stand for it.
            raise TypeError("a guarded function is given its permit by the guard, not by the caller")
        evidence = kwargs.get("evidence") if self.takes_evidence else kwargs.pop("evidence", None)
        return args, kwargs, self._request(args, kwargs), evidence

    def split_permit(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> tuple[tuple[Any, ...], dict[str, Any], Any, Any]:
        kwargs = dict(kwargs)
        permit = kwargs.get("permit") if self.takes_permit else kwargs.pop("permit", None)
        if permit is None:
            raise PermitError("no permit was given: authorize the request first")
        if self.takes_permit:
            del kwargs["permit"]
        return args, kwargs, self._request(args, kwargs), permit

    def with_permit(self, kwargs: dict[str, Any], permit: Permit) -> dict[str, Any]:
        return {**kwargs, "permit": permit} if self.takes_permit else kwargs


# ------------------------------------------------------------------- helpers


#: Stands for evidence the caller passed although the guard reads it from its source.
_REFUSED_EVIDENCE: Any = object()


def _unwrap(request: Any) -> Any:
    """A provenanced request (``.request`` holding the Request) as its Request."""
    inner = getattr(request, "request", None)
    if isinstance(inner, Request):
        return inner
    return request


def _parse_inputs(request: Any, evidence: Any) -> tuple[Request, Evidence | None]:
    """The request and the evidence validated; every bad field of both in one error."""
    errors: list[FieldError] = []
    req: Request | None = None
    try:
        req = parse_request(_unwrap(request))
    except InvalidRequestError as exc:
        errors.extend(exc.errors)
    ev: Evidence | None = None
    try:
        ev = _as_evidence(evidence)
    except InvalidRequestError as exc:
        errors.extend(exc.errors)
    if errors or req is None:
        raise InvalidRequestError(errors)
    return req, ev


def _as_evidence(evidence: Any) -> Evidence | None:
    if evidence is None:
        return None
    try:
        if isinstance(evidence, Evidence):
            # Validated again: model_copy(update=...) and model_construct skip validation.
            evidence = evidence.model_dump(mode="python", round_trip=True, warnings=False)
        return Evidence.model_validate(evidence)
    except ValidationError as exc:
        raise InvalidRequestError.from_pydantic(exc, prefix="evidence", model=Evidence) from None  # type: ignore[misc]


def _unmet(decision: Decision, verification: Verification) -> list[str]:
    """The requirements and pre-checks ``verification`` does not show as satisfied."""
    status = {item.check: item.status for item in verification.items}
    unmet = [r for r in decision.requirements if status.get(f"requirement:{r}") != "satisfied"]
    names = {"binding": "evidence_binding", "window": "evidence_window", "policy_revision": "policy_revision"}
    unmet += [names[c] for c in _PRE_CHECKS if status.get(c) != "satisfied"]
    return unmet


def _escalation(decision: Decision, needs: list[str], verification: Verification | None,
                submitted: str) -> Escalation:
    constraints = decision.constraints
    approver = constraints.approver if constraints is not None else None
    callback = constraints.callback if constraints is not None else None
    to: list[str] = []
    if "max_level" in needs or "identity_step_up" in needs:
        to.append("service_desk")
    if "manager_approval" in needs:
        to.append(approver.of_record if approver is not None else "approver_of_record")
    if "out_of_band_callback" in needs:
        to.append(f"callback:{callback.to}" if callback is not None else "callback:holder")
    if not to:
        to.append("service_desk")
    if "max_level" in needs:
        message = REQUESTER_MESSAGES["above_max_level"]
    else:
        message = REQUESTER_MESSAGES.get(decision.level.value, REQUESTER_MESSAGES["above_max_level"])
    return Escalation(decision=decision, needs=needs, to=to, approver=approver, callback=callback,
                      verification=verification, message=message, request_digest=submitted)


def _permit_or_raise(outcome: Outcome) -> Permit:
    if isinstance(outcome, Permit):
        return outcome
    if isinstance(outcome, Escalation):
        raise EscalationRequiredError(
            f"decision {outcome.decision_id} ({outcome.level.value}) needs {', '.join(outcome.needs)} first: "
            "the change was not made", outcome=outcome)
    if isinstance(outcome, Refusal):
        raise RefusedError(f"the request is refused ({outcome.why}): the change was not made", outcome=outcome)
    raise NotPermittedError("the guard gave no permit: the change was not made", outcome=outcome)


async def _call(fn: Callable[..., Any], *args: Any) -> Any:
    """Await an async hook; run a plain one in a worker thread (it may do I/O)."""
    if inspect.iscoroutinefunction(fn) or inspect.iscoroutinefunction(getattr(fn, "__call__", None)):
        return await fn(*args)
    result = await asyncio.to_thread(fn, *args)
    if inspect.isawaitable(result):
        result = await result
    return result


def _run(awaitable: Awaitable[Any]) -> Any:
    """Run an async hook's result from the sync :meth:`Guard.authorize`."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(_awaited(awaitable))
    if inspect.iscoroutine(awaitable):
        awaitable.close()
    raise RuntimeError("an async hook cannot run from authorize() inside an event loop: use aauthorize()")


async def _awaited(awaitable: Awaitable[Any]) -> Any:
    return await awaitable
