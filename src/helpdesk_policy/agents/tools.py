"""LLM tool use: the ``decide``, ``explain`` and ``authorize`` tools, and the runner that answers them.

A chatbot or agent built on a tool-calling model gets three tools:

* ``decide``: what would the policy require for what the user asked? A
  preview: it answers ``perform``, ``escalate`` or ``refuse`` and never
  authorizes anything.
* ``explain``: the same answer, with guidance for the model on what to do
  and not do next.
* ``authorize``: ask the guard (:mod:`helpdesk_policy.agents.guard`) right
  before acting. Only a ``perform`` answer carries a permit, and only the
  permit lets the executor make the change, once, for that exact request.

Every result tells the model what to do (``instruction``) and what to tell
the requester (``say_to_requester``:
:func:`~helpdesk_policy.render.audience.explain` with ``audience="requester"``,
which never names a reason, a risk signal, a tier or a person of record,
since the requester may be the attacker, CISA AA23-320A). A raw level is
never returned: ``step_up`` read by a model as "allowed" is how a naive
integration lets a model act on a request that needs a person.

What the model may say, and what it may not
-------------------------------------------

The tools' parameters are only what a model can know from the conversation:
the ``action`` the user asked for, the ``target_id`` they named (``null``:
themselves), their own words (``justification``) and whether they declared
an ``emergency``. Nothing else can be passed: not the user's authentication,
their relationship to the target, the target's privileges, tier, VIP status
or owners. Those come from the :class:`~helpdesk_policy.agents.facts.FactsProvider`
(the directory, the CMDB) and the :class:`~helpdesk_policy.agents.facts.SessionFacts`
the integrator built from its authenticated session, never from the model
(OWASP LLM Top 10 2025 LLM01 prompt injection: a model can be made to say
anything; LLM06 excessive agency: the model proposes, the guard disposes).
The ``justification`` is carried to the helpdesk as the requester's own
unverified words and never decides anything.

The model is untrusted input, so :class:`ToolRunner` parses its arguments
strictly: an unknown argument (``relationship``, ``auth_strength``,
``privileged``: what a naive or injected model adds) is an error result that
names it, never silently dropped and never read; so is a duplicated key, a
wrong type or an argument that is not JSON. Failing the facts of record
fails closed: a target the record does not know is escalated to the service
desk, a record that cannot be read refuses, and nothing is decided from
partial facts.

The definitions are plain dicts for each provider:

* :func:`openai_tools`: OpenAI function calling in strict mode (Structured
  Outputs): every object has ``additionalProperties: false``, every property
  is listed in ``required`` (an optional one is typed ``["string", "null"]``),
  and only the keywords strict mode supports are used (``type``,
  ``description``, ``properties``, ``required``, ``additionalProperties``,
  ``enum``). Lengths and identifier rules cannot be stated in strict mode,
  so the runner checks them.
* :func:`anthropic_tools`: Anthropic tool use (``name``, ``description``,
  ``input_schema``).
* the MCP server (:mod:`helpdesk_policy.agents.mcp_server`) lists the same
  schemas and answers through the same runner.

>>> from helpdesk_policy import HelpdeskPolicy
>>> from helpdesk_policy.agents import IdentityFacts, InMemoryFactsProvider, relayed_by_bot
>>> facts = InMemoryFactsProvider([IdentityFacts(
...     id="u-51876", type="human", status="active", privileged=False, privilege_tier=0, vip=False)])
>>> runner = ToolRunner(HelpdeskPolicy(engine="native"), facts=facts, channel="self_service_portal",
...                     session=relayed_by_bot(user_id="u-51876", auth_strength="mfa"))
>>> result = runner.run("authorize", '{"action": "password_reset", "target_id": null, '
...                                  '"justification": "forgot it", "emergency": false}')
>>> result.instruction, result.content["say_to_requester"]
('perform', 'Your request can be completed now.')
>>> runner.guard.consume(result.permit, result.request).permit_id == result.content["permit"]["permit_id"]
True
>>> runner.run("authorize", {"action": "password_reset", "privileged": False}).content["problems"]
[{'field': 'privileged', 'message': 'is not an argument of this tool (the facts of record are not yours to state)'}]
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from ..errors import FieldError, InvalidConfigError, InvalidRequestError
from ..levels import Level
from ..models import NO_ENGINE, Action, Channel, Decision, Request
from ..render import printable
from ..render.audience import REQUESTER_TEXTS, explain
from .errors import FactsError, UnknownIdentityError
from .facts import (
    FactsProvider,
    ProvenancedRequest,
    RequestFacts,
    SessionFacts,
    _model_arg,
    abuild_request,
    build_request,
    parse_claim,
)
from .guard import Escalation, Guard, Outcome, Refusal, _escalation, _parse_level
from .permits import Permit

if TYPE_CHECKING:  # only a type: importing the agents package does not load the engines
    from ..facade import HelpdeskPolicy

__all__ = [
    "TOOL_NAMES",
    "Instruction",
    "ToolResult",
    "ToolRunner",
    "tool_parameters",
    "tool_descriptions",
    "openai_tools",
    "anthropic_tools",
    "MAX_ARGUMENTS_BYTES",
]

log = logging.getLogger(__name__)

#: The tools, in the order they are listed.
TOOL_NAMES: tuple[str, ...] = ("decide", "explain", "authorize")

#: What a result tells the model to do.
Instruction = Literal["perform", "escalate", "refuse"]

#: The largest arguments document accepted (a 4000-character justification,
#: escaped, fits several times over).
MAX_ARGUMENTS_BYTES = 64 * 1024

_ARGUMENTS: tuple[str, ...] = ("action", "target_id", "justification", "emergency")

_DESCRIPTIONS: dict[str, str] = {
    "decide": (
        "Check what the service desk policy requires before an identity or access change the user asked for "
        "(a password reset, an MFA reset, an unlock, access, a key...). Returns an instruction: 'perform' (it may "
        "be done now: call authorize right before doing it), 'escalate' (a person must act first: hand it to the "
        "service desk) or 'refuse' (do not do it), and say_to_requester, the text to tell the user. A preview "
        "only: it never authorizes a change. Facts about the user and the account (how they signed in, their "
        "relationship to the account, its privileges) come from the systems of record and cannot be given here."
    ),
    "explain": (
        "The same answer as decide, with guidance for you on what to do and not do next. Use it when the user "
        "asks what happens next or why they must wait. Tell the user say_to_requester; never guess or add reasons "
        "(the requester may be an impersonator, and reasons would coach them)."
    ),
    "authorize": (
        "Ask for permission to perform the change now, right before doing it. Only an instruction of 'perform' "
        "with a permit allows the change: hand the permit to the executor, which accepts it once, for exactly "
        "this request, within minutes. 'escalate': do not perform it; the service desk verifies, approves and "
        "calls back (never you), then acts. 'refuse': do not perform it, not partially and not through a "
        "workaround. In every case tell the user say_to_requester."
    ),
}

_PROPERTY_DESCRIPTIONS: dict[str, str] = {
    "action": "What the user asked for.",
    "target_id": (
        "The identifier of the account or identity the request is about (user name, service account, key or "
        "app id), exactly as the user named it; null when the user asks about their own account. Never guess it."
    ),
    "justification": (
        "The user's own words for the request, quoted or closely paraphrased; null if they gave none. It is "
        "passed to the service desk as the user's unverified statement and never changes the decision."
    ),
    "emergency": (
        "True only if the user declared an emergency. It never makes anything faster or skips a check."
    ),
}

#: Guidance for the model, returned by ``explain``, per instruction.
_GUIDANCE_COMMON = (
    "Tell the user say_to_requester in your own words; do not add reasons, guesses about why, or details about "
    "the account.",
    "Never ask the user for a password, a one-time code or a recovery code.",
    "Never accept a phone number, e-mail address or approval given in the conversation as verification: the "
    "service desk uses only what is on record.",
)
_GUIDANCE: dict[str, tuple[str, ...]] = {
    "perform": ("Call authorize right before acting: only its permit allows the change, once, for this exact "
                "request.",),
    "escalate": ("Do not perform the change. Hand the request to escalate_to: people verify, approve and call back "
                 "(an AI agent never does), then act.",),
    "refuse": ("Do not perform the change, not partially and not through a workaround (a temporary password, a "
               "shared credential, a manual grant).",),
}

# Paths of a claim's errors, as the tool's argument names.
_CLAIM_PATHS: dict[str, str] = {f"claim.{name}": name for name in _ARGUMENTS}


# --------------------------------------------------------------------------- the definitions


def tool_parameters() -> dict[str, Any]:
    """The JSON Schema of every tool's arguments (the same for the three tools).

    Valid in OpenAI's strict mode and for Anthropic and MCP: an object with
    ``additionalProperties: false``, every property required, the optional
    ones nullable. A fresh copy on every call.
    """
    return {
        "type": "object",
        "properties": {
            "action": {
                "type": "string",
                "description": _PROPERTY_DESCRIPTIONS["action"],
                "enum": [a.value for a in Action],
            },
            "target_id": {"type": ["string", "null"], "description": _PROPERTY_DESCRIPTIONS["target_id"]},
            "justification": {"type": ["string", "null"], "description": _PROPERTY_DESCRIPTIONS["justification"]},
            "emergency": {"type": "boolean", "description": _PROPERTY_DESCRIPTIONS["emergency"]},
        },
        "required": list(_ARGUMENTS),
        "additionalProperties": False,
    }


def tool_descriptions() -> dict[str, str]:
    """Each tool's description, by name."""
    return dict(_DESCRIPTIONS)


def _names(names: tuple[str, ...] | list[str] | None) -> list[str]:
    chosen = list(TOOL_NAMES if names is None else names)
    unknown = [n for n in chosen if n not in TOOL_NAMES]
    if unknown:
        raise ValueError(f"unknown tool name(s) {unknown}: the tools are {list(TOOL_NAMES)}")
    return chosen


def openai_tools(
    names: tuple[str, ...] | list[str] | None = None, *, api: Literal["chat", "responses"] = "chat",
) -> list[dict[str, Any]]:
    """The tools for OpenAI function calling, in strict mode.

    Args:
        names: which tools (default: all three, in :data:`TOOL_NAMES` order).
            An agent that should only preview can be given ``["decide", "explain"]``.
        api: ``"chat"`` for Chat Completions (``{"type": "function",
            "function": {...}}``), ``"responses"`` for the Responses API (the
            function's fields at the top level).

    >>> tool = openai_tools(["authorize"])[0]
    >>> tool["type"], tool["function"]["name"], tool["function"]["strict"]
    ('function', 'authorize', True)
    """
    if api not in ("chat", "responses"):
        raise ValueError("api must be 'chat' or 'responses'")
    tools = []
    for name in _names(names):
        function = {"name": name, "description": _DESCRIPTIONS[name], "parameters": tool_parameters(),
                    "strict": True}
        tools.append({"type": "function", **function} if api == "responses" else
                     {"type": "function", "function": function})
    return tools


def anthropic_tools(names: tuple[str, ...] | list[str] | None = None) -> list[dict[str, Any]]:
    """The tools for Anthropic tool use (``name``, ``description``, ``input_schema``).

    >>> [t["name"] for t in anthropic_tools()]
    ['decide', 'explain', 'authorize']
    """
    return [{"name": name, "description": _DESCRIPTIONS[name], "input_schema": tool_parameters()}
            for name in _names(names)]


# --------------------------------------------------------------------------- the result


@dataclass(frozen=True)
class ToolResult:
    """The answer to one tool call.

    Attributes:
        name: The tool called.
        content: What the model is given (JSON-ready): ``instruction``
            (``perform``, ``escalate`` or ``refuse``), ``say_to_requester``,
            ``decision_id``, ``request_id``; ``permit`` for ``perform`` from
            ``authorize``; ``escalate_to`` and ``needs`` for ``escalate``;
            ``why`` for ``refuse``; ``guidance`` from ``explain``; ``error``
            and ``problems`` for a call that could not be read. Never a
            reason, a risk signal or a fact of record.
        is_error: The call itself was wrong (unknown tool, bad arguments).
        decision: The decision, when one was made (for the integrator and
            the ticket, not the model).
        request: The request decided, built from the facts of record: the
            executor consumes the permit against it.
        built: The request with each fact's provenance.
        outcome: The guard's :class:`~helpdesk_policy.agents.permits.Permit`,
            :class:`~helpdesk_policy.agents.guard.Escalation` or
            :class:`~helpdesk_policy.agents.guard.Refusal` (``authorize`` only).
    """

    name: str
    content: dict[str, Any]
    is_error: bool = False
    decision: Decision | None = None
    request: Request | None = None
    built: ProvenancedRequest | None = field(default=None, repr=False)
    outcome: Outcome | None = None

    @property
    def instruction(self) -> str:
        """``perform``, ``escalate`` or ``refuse``."""
        return str(self.content["instruction"])

    @property
    def say_to_requester(self) -> str:
        return str(self.content["say_to_requester"])

    @property
    def permit(self) -> Permit | None:
        """The permit (``authorize`` answering ``perform``), else ``None``."""
        return self.outcome if isinstance(self.outcome, Permit) else None

    def to_json(self) -> str:
        """:attr:`content` as JSON: the tool result message to give the model."""
        return json.dumps(self.content, ensure_ascii=False, sort_keys=False)

    def for_service_desk(self) -> str | None:
        """The helpdesk agent's steps for this request (``explain(audience="agent")``),
        for the ticket or the hand-off: never for the model or the requester.
        ``None`` when nothing was decided."""
        if self.decision is None or self.request is None:
            return None
        return explain(self.decision, self.request, audience="agent")


# --------------------------------------------------------------------------- the runner


class ToolRunner:
    """Answers the tools' calls for one authenticated session.

    Args:
        policy: The policy to decide with.
        facts: The system of record for identities.
        session: Who the actor is and how they authenticated, from your
            authenticated session (:func:`~helpdesk_policy.agents.facts.relayed_by_bot`,
            :func:`~helpdesk_policy.agents.facts.acting_agent`): never from the model.
        channel: The channel the conversation actually takes place on.
        guard: The guard that issues permits (default: a new
            :class:`~helpdesk_policy.agents.guard.Guard` for ``policy`` with
            ``max_level``: a random key, permits checked in this process).
            Give your own to share its key and permit store with the executor.
        max_level: The most the model may ever be permitted to perform
            (default ``self_service``: everything else goes to people, OWASP
            LLM06). It can only lower the guard's own cap.
        request_facts: What will be granted, from your access catalogue, when
            the session is about one catalogue item.

    Raises:
        InvalidConfigError: a bad argument (every one named).
    """

    def __init__(
        self,
        policy: HelpdeskPolicy,
        *,
        facts: FactsProvider,
        session: SessionFacts | Mapping[str, Any],
        channel: Channel | str,
        guard: Guard | None = None,
        max_level: Level | str = Level.SELF_SERVICE,
        request_facts: RequestFacts | Mapping[str, Any] | None = None,
    ) -> None:
        problems: list[FieldError] = []
        if not callable(getattr(policy, "decide", None)):
            problems.append(FieldError("policy", "must be a HelpdeskPolicy"))
        if not callable(getattr(facts, "identity", None)):
            problems.append(FieldError("facts", "must be a FactsProvider (an identity(identifier) method)"))
        parsed_session = _model_arg(SessionFacts, session, "session", problems)
        parsed_facts = (_model_arg(RequestFacts, request_facts, "request_facts", problems)
                        if request_facts is not None else None)
        try:
            parsed_channel = Channel(channel)
        except ValueError:
            parsed_channel = None
            problems.append(FieldError("channel", f"must be one of {[c.value for c in Channel]}"))
        try:
            cap = _parse_level(max_level, "max_level")
        except InvalidConfigError as exc:
            cap = Level.SELF_SERVICE
            problems.extend(exc.errors)
        if guard is not None and not isinstance(guard, Guard):
            problems.append(FieldError("guard", "must be a Guard"))
        elif guard is not None and guard.policy is not policy:
            problems.append(FieldError("guard", "must decide with the same policy as the runner"))
        if problems:
            raise InvalidConfigError(problems)
        self.policy = policy
        self.facts = facts
        self.session: SessionFacts = parsed_session
        self.channel: Channel = parsed_channel  # type: ignore[assignment]
        self.request_facts: RequestFacts | None = parsed_facts
        self.guard = guard if guard is not None else Guard(policy, max_level=cap)
        # A runner's cap only lowers the guard's.
        self.max_level: Level = min(cap, self.guard.max_level)

    def __repr__(self) -> str:
        return (f"<ToolRunner actor={self.session.actor_id!r} channel={self.channel.value} "
                f"max_level={self.max_level.value}>")

    # ------------------------------------------------------------------ run

    def run(self, name: str, arguments: Mapping[str, Any] | str | bytes | None, *,
            request_id: str | None = None) -> ToolResult:
        """Answer one tool call.

        Args:
            name: ``decide``, ``explain`` or ``authorize``.
            arguments: The model's arguments: a mapping, or the JSON text
                the provider returned.
            request_id: The ticket id to decide under (default: a new one).

        Returns:
            A :class:`ToolResult`. Never raises for anything the model sent:
            a wrong call is an error result naming what is wrong.
        """
        early = self._precheck(name, arguments)
        if isinstance(early, ToolResult):
            return early
        try:
            built = build_request(early, facts=self.facts, session=self.session, channel=self.channel,
                                  request_id=request_id, request_facts=self.request_facts)
        except Exception as exc:  # noqa: BLE001 - mapped to a result: fail closed
            return self._build_failed(name, exc)
        try:
            if name == "authorize":
                outcome = self.guard.authorize(built.request, max_level=self.max_level)
                return self._authorized(built, outcome)
            decision = self.policy.decide(built.request)
        except Exception:  # noqa: BLE001 - fail closed: whatever failed, nothing is performed
            log.exception("tool %s failed for a request: refusing", name)
            return self._refusal(name, "unavailable", REQUESTER_TEXTS["unavailable"], built=built)
        return self._previewed(name, built, decision)

    async def arun(self, name: str, arguments: Mapping[str, Any] | str | bytes | None, *,
                   request_id: str | None = None) -> ToolResult:
        """:meth:`run` for asyncio: facts, engines and the permit store off the event loop."""
        early = self._precheck(name, arguments)
        if isinstance(early, ToolResult):
            return early
        try:
            built = await abuild_request(early, facts=self.facts, session=self.session, channel=self.channel,
                                         request_id=request_id, request_facts=self.request_facts)
        except Exception as exc:  # noqa: BLE001 - as run
            return self._build_failed(name, exc)
        try:
            if name == "authorize":
                outcome = await self.guard.aauthorize(built.request, max_level=self.max_level)
                return self._authorized(built, outcome)
            decision = await self.policy.adecide(built.request)
        except Exception:  # noqa: BLE001 - as run
            log.exception("tool %s failed for a request: refusing", name)
            return self._refusal(name, "unavailable", REQUESTER_TEXTS["unavailable"], built=built)
        return self._previewed(name, built, decision)

    # ------------------------------------------------------------ internals

    def _precheck(self, name: object, arguments: object) -> Any:
        """The claim the arguments make, or the error result for a call that cannot be read."""
        if not isinstance(name, str) or name not in TOOL_NAMES:
            shown = printable(name, 64) if isinstance(name, str) else type(name).__name__
            log.info("unknown tool %s called", shown)
            return _error("unknown_tool", shown,
                          [{"field": "name", "message": f"is not a tool here: the tools are {list(TOOL_NAMES)}"}])
        problems, values = _parse_arguments(arguments)
        if values is not None:
            try:
                claim = parse_claim(values)
            except InvalidRequestError as exc:
                problems += _problems(exc.errors)
            else:
                if not problems:
                    return claim
        return _error("invalid_arguments", name, sorted(problems, key=lambda p: p["field"]))

    def _build_failed(self, name: str, exc: Exception) -> ToolResult:
        if isinstance(exc, UnknownIdentityError):
            # A person finds out why (a typo, a deleted account, a probe); the
            # requester is told a person will follow up, not that no such account exists.
            log.info("tool %s: the target is not in the record: escalating", name)
            content = _content(name, "escalate", REQUESTER_TEXTS["handoff"], None, None)
            content.update(escalate_to=["service_desk"], needs=["identity_of_record"])
            return _with_guidance(ToolResult(name, content))
        if isinstance(exc, InvalidRequestError):
            return _error("invalid_arguments", name, _problems(exc.errors))
        if isinstance(exc, FactsError):
            log.warning("tool %s: the facts of record could not be read (%s): refusing", name, type(exc).__name__)
            return self._refusal(name, "facts_unavailable", REQUESTER_TEXTS["unavailable"])
        log.error("tool %s: building the request failed (%s): refusing", name, type(exc).__name__, exc_info=exc)
        return self._refusal(name, "unavailable", REQUESTER_TEXTS["unavailable"])

    def _refusal(self, name: str, why: str, say: str, *, built: ProvenancedRequest | None = None,
                 decision: Decision | None = None, outcome: Outcome | None = None) -> ToolResult:
        request = built.request if built is not None else None
        content = _content(name, "refuse", say, decision.decision_id if decision is not None else None,
                           request.request.id if request is not None else None)
        content["why"] = why
        return _with_guidance(ToolResult(name, content, decision=decision, request=request, built=built,
                                         outcome=outcome))

    def _previewed(self, name: str, built: ProvenancedRequest, decision: Decision) -> ToolResult:
        """``decide`` and ``explain``: the guard's answer without evidence, and no permit.

        ``perform`` only when the guard would permit the request as it
        stands: an allowed ``self_service`` decision by an engine, within
        the cap. Anything that needs a person is ``escalate``.
        """
        request = built.request
        if decision.engine == NO_ENGINE:
            return self._refusal(name, "engine_unavailable", explain(decision, audience="requester"), built=built,
                                 decision=decision)
        if not decision.allowed:
            return self._refusal(name, "denied", explain(decision, audience="requester"), built=built,
                                 decision=decision)
        needs = (["max_level"] if decision.level > self.max_level else []) + list(decision.requirements)
        say = explain(decision, audience="requester")
        content = _content(name, "escalate" if needs else "perform", say, decision.decision_id, request.request.id)
        if needs:
            # The guard's own routing, so decide and authorize name the same people.
            escalation = _escalation(decision, needs, None, decision.input_digest)
            content.update(escalate_to=list(escalation.to), needs=list(escalation.needs))
        log.info("tool %s: decision %s -> %s", name, decision.decision_id, content["instruction"])
        return _with_guidance(ToolResult(name, content, decision=decision, request=request, built=built))

    def _authorized(self, built: ProvenancedRequest, outcome: Outcome) -> ToolResult:
        request = built.request
        name = "authorize"
        if isinstance(outcome, Permit):
            content = _content(name, "perform", REQUESTER_TEXTS["now"], outcome.decision_id, request.request.id)
            content["permit"] = outcome.to_dict()
            log.info("tool authorize: permit %s for decision %s", outcome.permit_id, outcome.decision_id)
            return ToolResult(name, content, request=request, built=built, outcome=outcome)
        if isinstance(outcome, Escalation):
            content = _content(name, "escalate", explain(outcome.decision, audience="requester"),
                               outcome.decision_id, request.request.id)
            content.update(escalate_to=list(outcome.to), needs=list(outcome.needs))
            log.info("tool authorize: decision %s escalated", outcome.decision_id)
            return ToolResult(name, content, decision=outcome.decision, request=request, built=built,
                              outcome=outcome)
        assert isinstance(outcome, Refusal)
        if outcome.why == "outcome_recorded":
            say = REQUESTER_TEXTS["closed"]
        elif outcome.decision is None or outcome.why == "guard_error":
            say = REQUESTER_TEXTS["unavailable"]
        else:
            say = explain(outcome.decision, audience="requester")
        return self._refusal(name, outcome.why, say, built=built, decision=outcome.decision, outcome=outcome)


# --------------------------------------------------------------------------- helpers


def _content(name: str, instruction: str, say: str, decision_id: str | None, request_id: str | None) -> dict[str, Any]:
    return {"tool": name, "instruction": instruction, "say_to_requester": say, "decision_id": decision_id,
            "request_id": request_id}


def _with_guidance(result: ToolResult) -> ToolResult:
    if result.name == "explain":
        result.content["guidance"] = [*_GUIDANCE[result.instruction], *_GUIDANCE_COMMON]
    return result


def _error(code: str, name: str, problems: list[dict[str, str]]) -> ToolResult:
    content = _content(name, "refuse", REQUESTER_TEXTS["unavailable"], None, None)
    content.update(why=code, error=code, problems=problems)
    return ToolResult(name, content, is_error=True)


def _problems(errors: tuple[FieldError, ...] | list[FieldError]) -> list[dict[str, str]]:
    out = []
    for e in errors:
        path = _CLAIM_PATHS.get(e.path.split(".says", 1)[0], e.path)
        out.append({"field": path, "message": e.message})
    return out


def _refuse_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    doc: dict[str, Any] = {}
    for key, value in pairs:
        if key in doc:
            # Two values for one argument: which one a reader takes differs
            # between parsers, an old trick to smuggle one past a check.
            raise _Duplicate(key)
        doc[key] = value
    return doc


class _Duplicate(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _parse_arguments(arguments: object) -> tuple[list[dict[str, str]], dict[str, Any] | None]:
    """The problems with the arguments, each named, and the tool's own arguments
    among them (``None`` when the arguments are not an object at all)."""
    if arguments is None:
        arguments = {}
    if isinstance(arguments, bytes | bytearray):
        try:
            arguments = bytes(arguments).decode("utf-8")
        except UnicodeDecodeError:
            return [{"field": "arguments", "message": "is not UTF-8 text"}], None
    if isinstance(arguments, str):
        if len(arguments.encode("utf-8", "surrogatepass")) > MAX_ARGUMENTS_BYTES:
            return [{"field": "arguments", "message": f"is longer than {MAX_ARGUMENTS_BYTES} bytes"}], None
        try:
            arguments = json.loads(arguments or "{}", object_pairs_hook=_refuse_duplicates)
        except _Duplicate as dup:
            return [{"field": printable(dup.key, 64), "message": "is given twice"}], None
        except (ValueError, RecursionError):
            return [{"field": "arguments", "message": "is not a JSON object"}], None
    if not isinstance(arguments, Mapping):
        return [{"field": "arguments", "message": "must be a JSON object"}], None
    problems = []
    for key in arguments:
        if key not in _ARGUMENTS:
            # Named, never dropped: an argument the model adds (relationship,
            # auth_strength, privileged...) is a claim the schema does not take.
            shown = printable(key, 64) if isinstance(key, str) else type(key).__name__
            problems.append({"field": shown, "message": "is not an argument of this tool (the facts of record are "
                                                        "not yours to state)"})
    # Missing optional arguments (a provider outside strict mode may leave
    # them out) take their defaults: null, and no emergency.
    return problems, copy.deepcopy({k: v for k, v in arguments.items() if k in _ARGUMENTS})
