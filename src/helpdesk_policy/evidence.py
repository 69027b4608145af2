"""Evidence of what the helpdesk did for a decision, and the closure check.

A :class:`~helpdesk_policy.models.Decision` says what must be verified
(its ``requirements``), who may approve and whom to call back (its
``constraints``) and what must be recorded (the ``record_evidence``
obligation). :class:`Evidence` is what the helpdesk recorded while acting on
it; :func:`verify` reads both and lists every requirement and obligation as
``satisfied``, ``missing`` or ``violated``, each with a sentence a person can
act on. ``verify(...).closable`` answers "may this ticket be closed?".

Evidence never holds secrets: it has no free-text field, identifiers are
identifier-shaped and never credential-shaped (an identifier field refuses an
API key, a token, a one-time or recovery code, naming the field and never
echoing the value), a contact must look like a phone number or an e-mail
address, and an authentication event is an event id, never the code used.

When the contact of record cannot be used for the callback (too new, or of
unknown age), the decision's callback constraint names the fallback: the
manager of record confirms the request, or the requester's identity is
checked in person. :class:`Callback` records either the call or that
fallback (``fallback``, ``confirmed_by``); ``verify`` accepts the fallback
only when the contact was not usable.

>>> from datetime import datetime, timezone
>>> from helpdesk_policy import HelpdeskPolicy
>>> policy = HelpdeskPolicy(engine="native")
>>> decision = policy.decide({
...     "request": {"id": "INC-7", "action": "password_reset", "channel": "self_service_portal"},
...     "actor": {"id": "u-1", "type": "human", "relationship": "self",
...               "authenticated": True, "auth_strength": "mfa"},
...     "target": {"id": "u-1", "type": "human", "privileged": False,
...                "privilege_tier": 0, "vip": False, "status": "active"},
... })
>>> now = datetime.now(timezone.utc)
>>> evidence = Evidence(decision_id=decision.decision_id, input_digest=decision.input_digest,
...                     requester_id="u-1", authentication_event="idp-evt-1",
...                     outcome=Outcome(status="completed", at=now), recorded_at=now)
>>> verify(decision, evidence).closable
True
"""

from __future__ import annotations

import re
from collections.abc import Collection, Iterable
from datetime import datetime, timedelta, timezone
from typing import Annotated, Literal

from pydantic import AfterValidator, AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, model_validator
from pydantic_core import PydanticCustomError

from .credentials import not_a_credential
from .levels import Level
from .models import Channel, Decision, Identifier, canonical_identifier

__all__ = [
    "IdentityProof",
    "Approval",
    "Callback",
    "Outcome",
    "Evidence",
    "VerificationItem",
    "Verification",
    "verify",
    "ACCEPTABLE_PROOF_METHODS",
    "EVIDENCE_FIELDS",
    "DEFAULT_WINDOW_HOURS",
    "EvidenceId",
]

#: How long after the evidence was gathered a ticket may still be verified.
DEFAULT_WINDOW_HOURS = 72

#: How far in the future of ``now`` a timestamp may lie (clocks differ a little).
CLOCK_SKEW = timedelta(minutes=5)

ProofMethod = Literal[
    "enrolled_factor_push",
    "phishing_resistant",
    "government_id_in_person",
    "supervised_remote_proofing",
    "knowledge_questions",
]

#: The identity-proof methods a step-up accepts. ``knowledge_questions`` can
#: be recorded (so that its use is flagged) but never satisfies a step-up:
#: the answers are public or phishable (NIST SP 800-63B-4, CISA AA23-320A).
ACCEPTABLE_PROOF_METHODS: frozenset[str] = frozenset({
    "enrolled_factor_push",
    "phishing_resistant",
    "government_id_in_person",
    "supervised_remote_proofing",
})

PartyType = Literal["human", "ai_agent"]

_EMAIL = re.compile(r"^[A-Za-z0-9.!#$%&'*+/=?^_`{|}~-]+@[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)+$")
_PHONE_SEPARATORS = re.compile(r"[ ().-]")
_E164 = re.compile(r"^\+[1-9][0-9]{6,14}$")


def _contact(value: str) -> str:
    # Only two shapes are accepted, so that nothing else (a one-time code, a
    # recovery code, a password) can be stored as a "contact".
    if len(value) <= 254 and _EMAIL.match(value):
        return value
    if len(value) <= 32 and _E164.match(_PHONE_SEPARATORS.sub("", value)):
        return value
    raise PydanticCustomError(
        "contact",
        "must be a phone number in international form (+ and country code, e.g. +44 20 7946 0000) or an e-mail address",
    )


#: A phone number (international form, separators allowed) or an e-mail
#: address, stored as given. Not a secret: it is the contact of record called.
Contact = Annotated[str, AfterValidator(_contact)]


#: An identifier in evidence: a canonical :data:`~helpdesk_policy.models.Identifier`
#: that is not credential-shaped.
EvidenceId = Annotated[Identifier, BeforeValidator(not_a_credential)]

#: An authentication event's id in the identity provider's sign-in log (never
#: the code or password used).
EventId = Annotated[
    str, Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,127}$"), BeforeValidator(not_a_credential)
]

ReasonCode = Annotated[str, Field(pattern=r"^[a-z][a-z0-9_]*$", max_length=64)]


def _contact_key(value: str) -> str:
    """A contact in the form two spellings of it compare equal in."""
    return value.lower() if "@" in value else _PHONE_SEPARATORS.sub("", value)


class _Strict(BaseModel):
    # hide_input_in_errors: a refused value (a pasted code) is never echoed in an error message.
    model_config = ConfigDict(extra="forbid", frozen=True, use_attribute_docstrings=True, hide_input_in_errors=True)


class IdentityProof(_Strict):
    """How the requester's identity was proven, and by whom.

    Attributes:
        method: How identity was proven. ``knowledge_questions`` is accepted
            here only so that its use is recorded and flagged as a violation.
        verified_by: Who verified it (canonical identifier).
        verified_by_type: ``human`` or ``ai_agent`` (an AI agent never verifies).
        at: When (timezone-aware).
    """

    method: ProofMethod
    verified_by: EvidenceId
    verified_by_type: PartyType
    at: AwareDatetime


class Approval(_Strict):
    """Who approved the action, and their relationship of record to the target.

    Attributes:
        approver_id: The approver (canonical identifier).
        approver_type: ``human`` or ``ai_agent`` (an AI agent never approves).
        relationship_of_record: The approver's relationship of record to the
            target: ``manager``, ``owner``, ``application_admin`` or ``other``.
        at: When (timezone-aware).
    """

    approver_id: EvidenceId
    approver_type: PartyType
    relationship_of_record: Literal["manager", "owner", "application_admin", "other"]
    at: AwareDatetime


#: The fields of a :class:`Callback` that record a call, and those that record the fallback.
_CALL_FIELDS = ("contact", "contact_source", "contact_age_days", "answered_by", "answered_by_type")
_FALLBACK_FIELDS = ("confirmed_by", "confirmed_by_type")


class Callback(_Strict):
    """The out-of-band callback, or the fallback taken instead of it.

    A call records ``contact``, ``contact_source``, ``contact_age_days``,
    ``answered_by`` and ``answered_by_type``. When the contact of record
    could not be used (the decision's ``constraints.callback.contact_usable``
    is false), the fallback the constraint names is recorded instead:
    ``fallback`` (``manager_of_record``: the target's manager of record
    confirmed the request; ``in_person``: the requester's identity was
    checked in person), ``confirmed_by`` and ``confirmed_by_type``, and none
    of the call's fields.

    Attributes:
        contact: The number or address called, as given (not a secret).
        contact_source: Where the contact came from: ``directory``,
            ``inventory`` or ``hr_record``. ``request`` can be recorded so
            that it is flagged: a contact supplied in the request is never used.
        contact_age_days: How long that contact had been of record.
        answered_by: Who answered (canonical identifier).
        answered_by_type: ``human`` or ``ai_agent``.
        fallback: The fallback taken instead of a call, if one was.
        confirmed_by: Who confirmed, for a fallback: the manager of record,
            or the person who checked identity in person (never the
            requester, never an AI agent).
        confirmed_by_type: ``human`` or ``ai_agent``.
        at: When (timezone-aware).
    """

    contact: Contact | None = None
    contact_source: Literal["directory", "inventory", "hr_record", "request"] | None = None
    contact_age_days: Annotated[int, Field(ge=0, strict=True)] | None = None
    answered_by: EvidenceId | None = None
    answered_by_type: PartyType | None = None
    fallback: Literal["manager_of_record", "in_person"] | None = None
    confirmed_by: EvidenceId | None = None
    confirmed_by_type: PartyType | None = None
    at: AwareDatetime

    @model_validator(mode="after")
    def _a_call_or_a_fallback(self) -> Callback:
        if self.fallback is None:
            absent = [f for f in _CALL_FIELDS if getattr(self, f) is None]
            extra = [f for f in _FALLBACK_FIELDS if getattr(self, f) is not None]
            if absent or extra:
                raise PydanticCustomError(
                    "callback_fields",
                    "a callback records contact, contact_source, contact_age_days, answered_by and "
                    "answered_by_type{missing}{extra}",
                    {"missing": f"; missing: {', '.join(absent)}" if absent else "",
                     "extra": f"; {', '.join(extra)} belong to a fallback" if extra else ""},
                )
        else:
            absent = [f for f in _FALLBACK_FIELDS if getattr(self, f) is None]
            extra = [f for f in _CALL_FIELDS if getattr(self, f) is not None]
            if absent or extra:
                raise PydanticCustomError(
                    "callback_fields",
                    "a fallback records confirmed_by and confirmed_by_type, not a call{missing}{extra}",
                    {"missing": f"; missing: {', '.join(absent)}" if absent else "",
                     "extra": f"; remove {', '.join(extra)} (record the call or the fallback)" if extra else ""},
                )
        return self


class Outcome(_Strict):
    """What became of the request.

    Attributes:
        status: ``completed`` (the change was made), ``refused`` (the helpdesk
            declined) or ``abandoned`` (the requester went away).
        at: When (timezone-aware).
    """

    status: Literal["completed", "refused", "abandoned"]
    at: AwareDatetime


class Evidence(_Strict):
    """What the helpdesk recorded while acting on one decision. Holds no secrets.

    Attributes:
        decision_id: The decision acted on (binds the evidence to it).
        input_digest: The decision's ``input_digest`` (binds it to the request).
        requester_id: Who asked (canonical identifier).
        identity_proof: How identity was proven, when it was.
        approval: Who approved, when someone did.
        callback: The out-of-band callback, when one was made, or the
            fallback taken instead.
        recovered_factor_contact: For a factor recovery: the number or
            address of the factor being recovered (the lost phone, the
            address being replaced), when it has one. The callback must not
            go there: whoever holds it now would answer.
        authentication_event: The identity provider's sign-in event id of the
            requester's session (self-service), never the code used.
        channel: The channel the request came in on.
        caller_contact: The number or address the request came from.
        denial_reason: For a denial: the reason code given to the requester,
            one of the decision's reasons.
        outcome: What became of the request.
        recorded_at: When this record was written (timezone-aware).
    """

    decision_id: Annotated[str, Field(min_length=1, max_length=128), BeforeValidator(not_a_credential)]
    input_digest: Annotated[str, Field(pattern=r"^sha256:[0-9a-f]{64}$")]
    requester_id: EvidenceId
    identity_proof: IdentityProof | None = None
    approval: Approval | None = None
    callback: Callback | None = None
    recovered_factor_contact: Contact | None = None
    authentication_event: EventId | None = None
    channel: Channel | None = None
    caller_contact: Contact | None = None
    denial_reason: ReasonCode | None = None
    outcome: Outcome | None = None
    recorded_at: AwareDatetime


Status = Literal["satisfied", "missing", "violated"]


class VerificationItem(_Strict):
    """One requirement or obligation checked against the evidence.

    Attributes:
        check: What was checked, e.g. ``requirement:manager_approval``,
            ``obligation:record_evidence``, ``binding``, ``window``,
            ``policy_revision``, ``outcome``.
        status: ``satisfied``, ``missing`` or ``violated``.
        reason: A sentence a person can act on.
    """

    check: str
    status: Status
    reason: str


class Verification(_Strict):
    """The result of :func:`verify`: every check, and whether the ticket may close.

    Attributes:
        decision_id: The decision verified.
        level: Its level.
        outcome: The outcome the evidence records, if any.
        items: Every check, in a stable order.
    """

    decision_id: str
    level: Level
    outcome: Literal["completed", "refused", "abandoned"] | None
    items: list[VerificationItem]

    @property
    def ok(self) -> bool:
        """Nothing is missing or violated."""
        return all(i.status == "satisfied" for i in self.items)

    @property
    def closable(self) -> bool:
        """The ticket may be closed: :attr:`ok`, and the change was completed
        (an allowed decision) or refused (a denial)."""
        if not self.ok:
            return False
        if self.level is Level.DENY:
            return self.outcome == "refused"
        return self.outcome == "completed"

    @property
    def problems(self) -> list[VerificationItem]:
        """The items that are missing or violated."""
        return [i for i in self.items if i.status != "satisfied"]


#: How each field a ``record_evidence`` obligation names is found in :class:`Evidence`.
EVIDENCE_FIELDS: dict[str, str] = {
    "requester": "requester_id",
    "authentication_event": "authentication_event",
    "identity_proof": "identity_proof",
    "verifier": "identity_proof.verified_by",
    "approver": "approval.approver_id",
    "callback_contact": "callback.contact",
    "callback_contact_source": "callback.contact_source",
    "callback_answered_by": "callback.answered_by",
    "channel": "channel",
    "caller_contact": "caller_contact",
    "denial_reason": "denial_reason",
    "outcome": "outcome",
}


def _lookup(evidence: Evidence, path: str) -> object:
    value: object = evidence
    for part in path.split("."):
        if value is None:
            return None
        value = getattr(value, part)
    return value


def _item(check: str, problems: list[str], missing: str | None, ok: str) -> VerificationItem:
    if missing is not None:
        return VerificationItem(check=check, status="missing", reason=missing)
    if problems:
        text = "; ".join(problems)
        return VerificationItem(check=check, status="violated", reason=text[:1].upper() + text[1:] + ".")
    return VerificationItem(check=check, status="satisfied", reason=ok)


def verify(
    decision: Decision,
    evidence: Evidence,
    *,
    now: datetime | None = None,
    window_hours: int = DEFAULT_WINDOW_HOURS,
    withdrawn_revisions: Collection[str] = (),
) -> Verification:
    """Check ``evidence`` against what ``decision`` requires. A pure function.

    Reads the requirements, the approver and callback constraints and the
    ``record_evidence`` obligation from the decision itself. Anything the
    evidence does not show is ``missing``, never ``satisfied``.

    Args:
        decision: The decision acted on.
        evidence: What was recorded.
        now: The time to check the window against (default: the current UTC time).
        window_hours: Every evidence timestamp must lie within this many hours
            before ``now`` (and not after it, beyond a few minutes' clock skew).
        withdrawn_revisions: Policy revisions withdrawn since: a decision made
            on one is flagged.

    Returns:
        A :class:`Verification` listing every check.

    Raises:
        ValueError: ``now`` is naive or ``window_hours`` is below 1.
    """
    if now is None:
        now = datetime.now(timezone.utc)
    elif now.tzinfo is None or now.utcoffset() is None:
        raise ValueError("now must be timezone-aware")
    if isinstance(window_hours, bool) or not isinstance(window_hours, int) or window_hours < 1:
        raise ValueError("window_hours must be an integer >= 1")
    # Revalidated like a request: model_copy(update=...) and model_construct skip validation.
    evidence = Evidence.model_validate(evidence.model_dump(mode="python", round_trip=True))
    requester = canonical_identifier(evidence.requester_id)
    items = [
        _binding(decision, evidence),
        _window(evidence, now, window_hours),
        _revision(decision, withdrawn_revisions),
    ]
    for requirement in decision.requirements:
        check = _REQUIREMENT_CHECKS.get(requirement)
        if check is None:
            items.append(VerificationItem(
                check=f"requirement:{requirement}", status="missing",
                reason=f"No evidence can show the requirement {requirement!r}: verify it by hand before closing.",
            ))
        else:
            items.append(check(decision, evidence, requester))
    for obligation in decision.obligations:
        if obligation.code == "record_evidence":
            items.append(_record(decision, evidence, obligation.fields or []))
    items.append(_outcome(decision, evidence))
    return Verification(
        decision_id=decision.decision_id,
        level=decision.level,
        outcome=None if evidence.outcome is None else evidence.outcome.status,
        items=items,
    )


# ------------------------------------------------------------------ the checks


def _binding(decision: Decision, evidence: Evidence) -> VerificationItem:
    problems = []
    if evidence.decision_id != decision.decision_id:
        problems.append(f"the evidence is for decision {evidence.decision_id!r}, not {decision.decision_id!r}: "
                        "record evidence against the decision actually acted on")
    if evidence.input_digest != decision.input_digest:
        problems.append("the evidence's input_digest is not the decision's: the request acted on is not the one "
                        "decided; decide the request again")
    return _item("binding", problems, None, "The evidence is bound to this decision and its request.")


def _timestamps(evidence: Evidence) -> Iterable[tuple[str, datetime]]:
    yield "recorded_at", evidence.recorded_at
    for name in ("identity_proof", "approval", "callback", "outcome"):
        part = getattr(evidence, name)
        if part is not None:
            yield f"{name}.at", part.at


def _window(evidence: Evidence, now: datetime, window_hours: int) -> VerificationItem:
    oldest = now - timedelta(hours=window_hours)
    problems = []
    for name, at in _timestamps(evidence):
        if at < oldest:
            problems.append(f"{name} ({at.isoformat()}) is more than {window_hours} h old: gather that evidence again")
        elif at > now + CLOCK_SKEW:
            problems.append(f"{name} ({at.isoformat()}) is in the future: check the recording system's clock")
    return _item("window", problems, None, f"Every timestamp lies within the last {window_hours} h.")


def _revision(decision: Decision, withdrawn: Collection[str]) -> VerificationItem:
    problems = []
    if decision.policy_revision in withdrawn:
        problems.append(f"the decision was made on policy revision {decision.policy_revision[:19]}…, since "
                        "withdrawn: decide the request again on the current policy")
    return _item("policy_revision", problems, None, "The decision's policy revision has not been withdrawn.")


def _identity_step_up(decision: Decision, evidence: Evidence, requester: str) -> VerificationItem:
    check = "requirement:identity_step_up"
    proof = evidence.identity_proof
    if proof is None:
        return _item(check, [], "No identity proof is recorded: verify the requester's identity with an enrolled "
                                "factor, a phishing-resistant authenticator or an ID check, and record it.", "")
    problems = []
    if proof.method not in ACCEPTABLE_PROOF_METHODS:
        problems.append(f"identity was proven with {proof.method}, which never proves identity: verify again with "
                        "an enrolled factor, a phishing-resistant authenticator or an ID check")
    if proof.verified_by_type != "human":
        problems.append(f"the verifier {proof.verified_by!r} is an AI agent: a person must verify identity")
    if canonical_identifier(proof.verified_by) == requester:
        problems.append("the requester verified their own identity: someone else must verify it")
    return _item(check, problems, None, f"Identity proven by {proof.method}, verified by {proof.verified_by!r}.")


def _manager_approval(decision: Decision, evidence: Evidence, requester: str) -> VerificationItem:
    check = "requirement:manager_approval"
    constraint = decision.constraints.approver if decision.constraints is not None else None
    approval = evidence.approval
    of_record = constraint.of_record if constraint is not None else "manager or owner"
    if approval is None:
        return _item(check, [], f"No approval is recorded: get the approval of the {of_record} of record "
                                "and record it.", "")
    approver = canonical_identifier(approval.approver_id)
    problems = []
    excluded = {canonical_identifier(i) for i in (constraint.exclude if constraint is not None else [])}
    if approver == requester:
        problems.append(f"the approver {approver!r} is the requester: get the {of_record} of record to approve")
    elif approver in excluded:
        problems.append(f"the approver {approver!r} may never approve this request (the requester, or whom an AI "
                        f"agent acts for or runs as): get the {of_record} of record to approve")
    if approval.approver_type != "human":
        problems.append(f"the approver {approver!r} is an AI agent: a person must approve")
    if constraint is not None:
        if approval.relationship_of_record != constraint.of_record:
            problems.append(f"the approver is the target's {approval.relationship_of_record} of record, not its "
                            f"{constraint.of_record}: get the {constraint.of_record} of record to approve")
        ids = [canonical_identifier(i) for i in constraint.ids or []]
        if ids and approver not in ids and approver != requester and approver not in excluded:
            problems.append(f"the approver {approver!r} is not among the approvers of record {ids}: get one of "
                            "them to approve")
    elif approval.relationship_of_record == "other":
        problems.append("the approver has no relationship of record to the target: get its manager or owner "
                        "of record to approve")
    note = ""
    if constraint is not None and constraint.ids is None:
        note = " (the decision named no approver: confirm them in the directory or inventory)"
    elif constraint is not None and constraint.ids == []:
        note = " (no approver of record remained: confirm the approval went one level up)"
    return _item(check, problems, None,
                 f"Approved by {approver!r}, {approval.relationship_of_record} of record{note}.")


def _out_of_band_callback(decision: Decision, evidence: Evidence, requester: str) -> VerificationItem:
    check = "requirement:out_of_band_callback"
    constraint = decision.constraints.callback if decision.constraints is not None else None
    callback = evidence.callback
    fallback = constraint.fallback if constraint is not None else "manager_of_record_or_in_person"
    if callback is None:
        advice = ("call back a contact of record (from the directory, inventory or HR record, never the request)"
                  if constraint is None or constraint.contact_usable else
                  f"the contact of record is too new or unknown, so use the fallback ({fallback})")
        return _item(check, [], f"No callback is recorded: {advice}, and record it.", "")
    if callback.fallback is not None:
        return _callback_fallback(decision, evidence, requester, callback)
    problems = []
    if callback.contact_source == "request":
        problems.append("the callback went to a contact supplied in the request: call a contact of record "
                        "(directory, inventory or HR record) instead")
    if evidence.caller_contact is not None and _contact_key(evidence.caller_contact) == _contact_key(callback.contact):
        problems.append("the callback went to the contact the request came from: call a contact of record instead")
    if constraint is not None and callback.contact_age_days < constraint.min_contact_age_days:
        problems.append(f"the contact called had been of record for {callback.contact_age_days} day(s), less than "
                        f"{constraint.min_contact_age_days}: use the fallback ({fallback})")
    recovered = evidence.recovered_factor_contact
    if (constraint is not None and constraint.not_the_recovered_factor and recovered is not None
            and _contact_key(recovered) == _contact_key(callback.contact)):
        problems.append("the callback went to the factor being recovered: whoever holds that device or address "
                        f"now would answer; call another contact of record, or use the fallback ({fallback})")
    if constraint is not None and constraint.ids:
        ids = [canonical_identifier(i) for i in constraint.ids]
        if canonical_identifier(callback.answered_by) not in ids:
            problems.append(f"the callback was answered by {callback.answered_by!r}, not by the {constraint.to} "
                            f"{ids}: call the {constraint.to} of record")
    if callback.answered_by_type != "human":
        problems.append("the callback was answered by an AI agent: a person must answer it")
    note = ""
    if constraint is not None and constraint.not_the_recovered_factor and recovered is None:
        # Not "missing": a lost authenticator app or security key has no
        # contact to record, and the contact called is already one of record,
        # old enough, from the directory. The reason says what to confirm.
        note = " (the evidence does not say which contact is being recovered: confirm it was not the one called)"
    return _item(check, problems, None,
                 f"Called back a {callback.contact_source} contact of record, answered by "
                 f"{callback.answered_by!r}{note}.")


def _callback_fallback(decision: Decision, evidence: Evidence, requester: str, callback: Callback) -> VerificationItem:
    """The fallback recorded instead of a call: accepted only when the contact of record was not usable."""
    check = "requirement:out_of_band_callback"
    constraints = decision.constraints
    constraint = constraints.callback if constraints is not None else None
    taken = callback.fallback
    if constraint is None or constraint.contact_usable:
        why = ("the decision names a usable contact of record" if constraint is not None else
               "the decision does not say the contact of record was unusable")
        return _item(check, [], f"Only a fallback ({taken}) is recorded, but {why}: call that contact back "
                                "and record the call; the fallback stands in only when the contact cannot be used.", "")
    confirmer = canonical_identifier(callback.confirmed_by)
    problems = []
    if callback.confirmed_by_type != "human":
        problems.append(f"the {taken} confirmation was given by an AI agent {confirmer!r}: a person must give it")
    if confirmer == requester:
        problems.append(f"the requester confirmed their own request ({taken}): someone else must confirm it")
    approver = constraints.approver if constraints is not None else None
    note = ""
    if taken == "manager_of_record":
        holders = {canonical_identifier(i) for i in constraint.ids} if constraint.to == "holder" else set()
        excluded = {canonical_identifier(i) for i in (approver.exclude if approver is not None else [])}
        managers = ([canonical_identifier(i) for i in approver.ids or []]
                    if approver is not None and approver.of_record == "manager" else [])
        if confirmer != requester and (confirmer in holders or confirmer in excluded):
            problems.append(f"{confirmer!r} is the account holder or may never approve for this request, not its "
                            "manager of record: get the manager of record to confirm")
        elif managers and confirmer not in managers and confirmer != requester:
            problems.append(f"{confirmer!r} is not the manager of record {managers}: get the manager of record "
                            "to confirm, or check identity in person")
        if not managers:
            note = " (the decision named no manager: confirm them in the directory)"
        what = f"confirmed by the manager of record {confirmer!r}{note}"
    else:
        what = f"identity checked in person by {confirmer!r}"
    return _item(check, problems, None,
                 f"The contact of record was not usable, so the fallback was taken: {what}.")


_REQUIREMENT_CHECKS = {
    "identity_step_up": _identity_step_up,
    "manager_approval": _manager_approval,
    "out_of_band_callback": _out_of_band_callback,
}


#: With a fallback recorded instead of a call, where each callback field is found
#: (the contact fields then name nothing: no one was called).
_FALLBACK_FIELDS_RECORDED = {
    "callback_contact": "callback.fallback",
    "callback_contact_source": "callback.fallback",
    "callback_answered_by": "callback.confirmed_by",
}


def _record(decision: Decision, evidence: Evidence, fields: list[str]) -> VerificationItem:
    check = "obligation:record_evidence"
    where = dict(EVIDENCE_FIELDS)
    if evidence.callback is not None and evidence.callback.fallback is not None:
        where.update(_FALLBACK_FIELDS_RECORDED)
    absent = [f for f in fields if f not in where or _lookup(evidence, where[f]) is None]
    problems = []
    if evidence.denial_reason is not None and "denial_reason" in fields:
        codes = {r.code for r in decision.reasons}
        if evidence.denial_reason not in codes:
            problems.append(f"the denial reason {evidence.denial_reason!r} is not a reason of this decision: "
                            f"record one of {sorted(codes)}")
    missing = None
    if absent:
        unknown = [f for f in absent if f not in EVIDENCE_FIELDS]
        missing = f"The evidence does not record {', '.join(absent)}: record them before closing."
        if unknown:
            missing += f" ({', '.join(unknown)} cannot be recorded in Evidence: keep it with the ticket and check it by hand.)"
    return _item(check, problems, missing, f"Every field the decision asks for is recorded ({', '.join(fields)}).")


def _outcome(decision: Decision, evidence: Evidence) -> VerificationItem:
    outcome = evidence.outcome
    if outcome is None:
        return _item("outcome", [], "No outcome is recorded: record whether the change was completed, "
                                    "refused or abandoned.", "")
    problems = []
    if decision.level is Level.DENY and outcome.status == "completed":
        problems.append("the change was completed although the decision denied it: reverse it and report a "
                        "security incident")
    return _item("outcome", problems, None, f"The outcome is recorded: {outcome.status}.")
