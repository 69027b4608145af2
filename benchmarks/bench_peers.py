"""Peers side by side: the project's engines, the raw evaluators under them, Cedar and a plain-Python floor.

Run on demand (not a test)::

    python benchmarks/bench_peers.py [--rounds 5] [--generated 994] [--batch 10]
                                     [--no-memory] [--show-cedar] [--json]

bench: ``pip install cedarpy`` for the Cedar contender (it is not a dependency
of the package; without it that row is skipped with a message). OPA's Go
evaluator is the development dependency ``opa-golib-python-bindings`` (see
``helpdesk_policy.ci.conformance``); without it the two OPA rows are skipped.

Every contender decides the same requests, the 28 in ``examples/requests``
plus ``--generated`` more from :func:`helpdesk_policy.ci.generate.generate_request_dicts`
(seed 13), 1,022 by default:

=================  ==========================================================================
``floor``          plain Python, dict in, dict out, no validation: a hand-written function
                   with the *Cedar subset's* rules (below) and nothing else; the least any
                   Python caller can pay for those rules
``native``         ``HelpdeskPolicy(engine="native").decide(dict)``: validation, the whole
                   stock policy, decision assembly
``cedar``          cedarpy (Cedar's Rust evaluator) on a translation of the subset: the
                   request mapped to Cedar entities and context, one ``is_authorized``
                   call, the graded level read from the matched policies' ``@id``
                   annotations
``opa-go``         OPA's Go evaluator in-process (``opa_bindings``): the stock Rego, input
                   document in, ``data.helpdesk.decision`` out, no facade
``regopy``         regopy (rego-cpp) with the stock Rego compiled once into a bundle, the
                   input set, the decision queried and read, no facade
``compiled-raw``   the stock Rego compiled to Python (:mod:`helpdesk_policy.compiler`),
                   input document in, ``data.helpdesk.decision`` out, no facade: what an
                   *edited* policy costs to evaluate
``compiled``       ``HelpdeskPolicy(engine="compiled").decide(dict)``: what ``engine="auto"``
                   runs for an edited policy
``rego``           ``HelpdeskPolicy(engine="rego").decide(dict)``
``opa``            ``HelpdeskPolicy(engine="opa").decide(dict)`` over loopback HTTP to
                   ``tests/opa_server.py`` (OPA's REST API over OPA's Go evaluator) running
                   in a child process, so client and server do not share a GIL
``rego-hit``       ``rego`` decide(dict) answered from the decision cache (the same
                   requests again, ids unchanged); only when the facade has one
=================  ==========================================================================

``--only NAME …`` runs some of them (native always runs: the ratios are to
it). The raw contenders (``floor``, ``cedar``, ``opa-go``, ``regopy``) get
the validated input document (every field present, as the engines see it);
the ``decide`` contenders get the request as a plain dict, and each timed
round gives every request a fresh id, so a decision cache, if the facade has
one, misses every time: the table measures evaluation, not cache hits
(``rego-hit`` measures those).

**Method.** Round-robin in one process: the requests are cut into batches of
``--batch``; each contender decides a batch in turn, each call timed on its
own, and the order of the contenders rotates from batch to batch, so machine
load (other processes on the machine) and cache effects fall on all of them
alike. Before timing, one untimed pass warms every contender up and checks its
answers: the Rego contenders must give native's level and reason codes on
every request, Cedar and the floor the subset's (below); the report counts
the agreements, and the script exits with status 1 after it when any falls
short. The report is a
Markdown table (p50, p90, p99, p50 ÷ native's p50) with the machine (CPU
model, cores, Python, the load average before and after) and the date, then
the agreement counts, then the memory of each contender: the peak resident
set (VmHWM) of a fresh interpreter that loads only that contender and decides
the request set once (``--no-memory`` skips it; ``bench_engines.py`` measures
the project's engines over 100,000 decisions).

**The Cedar subset.** Cedar grades nothing: a request is allowed or denied.
The translation keeps the stock policy's levels by annotating each ``permit``
with ``@id("<level>:<reason code>")``; the graded level is the highest level
among the matched policies, and a ``forbid`` (the deny-level rules) makes it
``deny``. It covers, rule for rule, with the stock config's values written in
(``--show-cedar`` prints the policies):

* ``baseline.rego`` whole: the action baseline (``action_baseline`` of the
  config, and the three strong paths that start lower: strong self-service,
  a workload rotating its own credential, an owner's rotation), and the
  rules ``requester_unauthenticated``, ``weak_authentication``,
  ``target_offboarded``, ``target_suspended``, ``break_glass``;
* ``access.rego`` whole: ``privileged_target`` (manager approval, callback
  from the callback tier, not on a strong path), ``vip_target`` and
  ``requested_privilege`` (a grant's requested tier, or the riskiest when
  unknown);
* the channel rules of ``recovery.rego``: ``remote_channel_recovery``,
  ``privileged_remote_recovery``, ``vip_remote_recovery`` and
  ``chained_credential_change``.

It leaves out the rest of ``recovery.rego`` (factor recovery without an
enrolled factor, third-party and unrelated requesters: they read the derived
relationship), ``containment``, ``info``, ``nhi``, ``consent``, ``agents`` and
``risk``, and all obligations and constraints. So Cedar, like the floor,
decides less than the stock policy; it is checked two ways on every request:
its matched rules and their levels equal the stock decision's reasons whose
codes are in the subset (for a denied request Cedar names only the
``forbid``), and on the requests the subset decides alone (every stock reason
is a subset rule) its graded level equals the stock policy's level.

The entity and context mapping: principal ``Actor::"<actor.id>"`` with
``id``, ``type``, ``authenticated``, ``auth_strength``; resource
``Target::"<target.id>"`` with ``id``, ``type``, ``privileged``,
``privilege_tier``, ``vip``, ``status``, ``owners`` (a set of ids) and
``owner_active`` when known; action ``Action::"<request.action>"``; context
``channel``, ``emergency`` and, when known, ``requested_privilege_tier`` and
``recent_credential_change_hours`` (a Cedar ``decimal``: Cedar has no
floating point, and its decimals keep 4 places where the request model keeps
3). An unknown (null) fact is an absent
attribute, and the policies test it with ``has``, reading it at its riskiest
as the Rego does.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = ROOT / "examples" / "requests"
DECISION_PATH = "helpdesk/decision"

LEVELS = ("self_service", "step_up", "manager_approval", "callback", "deny")
LEVEL_RANK = {lvl: i for i, lvl in enumerate(LEVELS)}
# common.rego auth_rank
AUTH_RANK = {"none": 0, "password": 1, "mfa": 2, "phishing_resistant": 3}
# common.rego workload_channels
WORKLOAD_CHANNELS = ("api", "walk_in", "self_service_portal")
# access.rego grant_actions
GRANT_ACTIONS = ("access_grant", "role_change", "privilege_elevation", "delegated_admin")

#: The reason codes the subset (Cedar and the floor) decides.
SUBSET_CODES = frozenset({
    "action_baseline", "requester_unauthenticated", "weak_authentication", "target_offboarded",
    "target_suspended", "break_glass", "privileged_target", "vip_target", "requested_privilege",
    "remote_channel_recovery", "privileged_remote_recovery", "vip_remote_recovery", "chained_credential_change",
})

Decide = Callable[[dict[str, Any]], Any]


class Skip(Exception):  # noqa: N818 (a message, not a failure)
    """A contender cannot run here (its package is missing)."""


# ------------------------------------------------------------------ requests


def load_payload(generated: int, seed: int = 13) -> dict[str, Any]:
    """Everything a contender needs, as JSON: requests (raw and validated), the Rego, its data, the config."""
    from helpdesk_policy.ci.generate import generate_request_dicts
    from helpdesk_policy.models import Request
    from helpdesk_policy.policyset import PolicySet

    raw: list[dict[str, Any]] = []
    for path in sorted(EXAMPLES.glob("*.json")):
        doc = json.loads(path.read_text(encoding="utf-8"))
        raw.extend(doc if isinstance(doc, list) else [doc])
    raw.extend(generate_request_dicts(generated, seed=seed))
    policy_set = PolicySet.load()
    data = policy_set.data()
    return {
        "raw": raw,
        "full": [Request.model_validate(r).to_input() for r in raw],
        "modules": dict(policy_set.modules),
        "data": data,
        "config": data["helpdesk"]["config"],
    }


def with_ids(raw: list[dict[str, Any]], suffix: str) -> list[dict[str, Any]]:
    """The requests with fresh ids (a decision cache keyed on the input misses on each)."""
    return [{**r, "request": {**r["request"], "id": f"{r['request']['id']}-{suffix}"}} for r in raw]


# ------------------------------------------------------------------ the floor


def make_floor(cfg: dict[str, Any]) -> Decide:
    """The subset's rules as a plain Python function on the input dict (no validation).

    Returns ``{"level": …, "reasons": {code: level}}``.
    """
    baseline_of = dict(cfg["action_baseline"])
    recovery = frozenset(cfg["recovery_actions"])
    no_credential = frozenset(cfg["no_credential_actions"])
    containment = frozenset(cfg["containment_actions"])
    factor_change = frozenset(cfg["factor_change_actions"])
    nhi_credential = frozenset(cfg["nhi_credential_actions"])
    strong_self_service = frozenset(cfg["strong_self_service_actions"])
    remote_channels = frozenset(cfg["remote_channels"])
    workload_channels = frozenset(WORKLOAD_CHANNELS)
    grants = frozenset(GRANT_ACTIONS)
    min_rank = AUTH_RANK[cfg["min_auth_strength"]]
    workload_rank = AUTH_RANK[cfg["workload_min_auth_strength"]]
    sss_rank = AUTH_RANK[cfg["strong_self_service_auth"]]
    ptier, ctier = cfg["privileged_tier"], cfg["callback_tier"]
    vip_level = cfg["vip_level"]
    window = cfg["chained_change_window_hours"]
    rank_of = AUTH_RANK
    level_rank = LEVEL_RANK

    def decide(doc: dict[str, Any]) -> dict[str, Any]:
        req, actor, target, ctx = doc["request"], doc["actor"], doc["target"], doc["context"]
        action, channel, strength = req["action"], req["channel"], actor["auth_strength"]
        rank = rank_of[strength]
        authenticated = actor["authenticated"] is True and strength != "none"
        strong_auth = authenticated and rank >= min_rank
        remote = channel in remote_channels
        itself = actor["id"] == target["id"]
        kind = actor["type"]
        owners = target["owners"]
        nhi_cred = action in nhi_credential
        self_service_path = kind == "human" and itself and channel == "self_service_portal" and strong_auth
        workload_self_path = kind == "service" and itself and channel in workload_channels and rank >= workload_rank
        owner_path = (kind == "human" and target["type"] != "human" and actor["id"] in owners
                      and target["owner_active"] is True and strong_auth and not remote)
        strong_path = self_service_path or (nhi_cred and (owner_path or workload_self_path))
        guarded = action != "info_request" and action not in containment
        tier = target["privilege_tier"]
        flagged = target["privileged"] is True
        if flagged and tier < ptier:
            tier = ptier
        privileged = flagged or target["privilege_tier"] >= ptier
        vip = target["vip"] is True

        # baseline.rego
        if ((self_service_path and action in strong_self_service and rank >= sss_rank)
                or (workload_self_path and nhi_cred) or (owner_path and nhi_cred and rank >= sss_rank)):
            out = {"action_baseline": "self_service"}
        else:
            out = {"action_baseline": baseline_of[action]}
        if not authenticated:
            out["requester_unauthenticated"] = "step_up"
        elif not strong_auth:
            out["weak_authentication"] = "step_up"
        status = target["status"]
        if status == "offboarded" and action not in containment:
            out["target_offboarded"] = "deny"
        if status == "suspended" and guarded:
            out["target_suspended"] = "manager_approval"
        if req["emergency"] is True:
            out["break_glass"] = "self_service"
        # recovery.rego, the channel rules
        if action in recovery and remote:
            out["remote_channel_recovery"] = "step_up"
            if action not in no_credential:
                if privileged:
                    out["privileged_remote_recovery"] = "callback"
                if vip:
                    out["vip_remote_recovery"] = "callback"
        if action in factor_change and remote:
            hours = ctx["recent_credential_change_hours"]
            if hours is None or hours <= window:
                out["chained_credential_change"] = "callback"
        # access.rego
        if guarded and action not in no_credential and not strong_path:
            if privileged:
                out["privileged_target"] = "callback" if tier >= ctier else "manager_approval"
            if vip:
                out["vip_target"] = vip_level
        if action in grants:
            requested = req["requested_privilege_tier"]
            if requested is None:
                requested = tier if tier > ptier else ptier
            if requested >= ptier:
                out["requested_privilege"] = "callback" if requested >= ctier else "manager_approval"
        return {"level": LEVELS[max(level_rank[lvl] for lvl in out.values())], "reasons": out}

    return decide


# ------------------------------------------------------------------ Cedar


def _set(values: Any) -> str:
    return "[" + ", ".join(f'"{v}"' for v in values) + "]"


def _actions(values: Any) -> str:
    return "[" + ", ".join(f'Action::"{v}"' for v in values) + "]"


def cedar_policies(cfg: dict[str, Any]) -> str:
    """The subset as Cedar policies, with the config's values written in."""
    at_least = lambda name: _set(s for s, r in AUTH_RANK.items() if r >= AUTH_RANK[cfg[name]])  # noqa: E731
    p, c = cfg["privileged_tier"], cfg["callback_tier"]
    # Cedar has no named helpers: these are the common.rego rules each policy reads, inlined.
    m: dict[str, str] = {}
    m["AUTHENTICATED"] = '(principal.authenticated && principal.auth_strength != "none")'
    m["STRONG_AUTH"] = f'({m["AUTHENTICATED"]} && {at_least("min_auth_strength")}.contains(principal.auth_strength))'
    m["ITSELF"] = "principal.id == resource.id"
    m["REMOTE"] = f"{_set(cfg['remote_channels'])}.contains(context.channel)"
    m["NHI_CRED"] = f"action in {_actions(cfg['nhi_credential_actions'])}"
    m["SELF_SERVICE_PATH"] = (f'(principal.type == "human" && {m["ITSELF"]} && '
                              f'context.channel == "self_service_portal" && {m["STRONG_AUTH"]})')
    m["WORKLOAD_SELF_PATH"] = (f'(principal.type == "service" && {m["ITSELF"]} && '
                               f'{_set(WORKLOAD_CHANNELS)}.contains(context.channel) && '
                               f'{at_least("workload_min_auth_strength")}.contains(principal.auth_strength))')
    m["OWNER_PATH"] = (f'(principal.type == "human" && resource.type != "human" && '
                       f'resource.owners.contains(principal.id) && resource has owner_active && '
                       f'resource.owner_active && {m["STRONG_AUTH"]} && !{m["REMOTE"]})')
    m["STRONG_PATH"] = (f'({m["SELF_SERVICE_PATH"]} || ({m["NHI_CRED"]} && '
                        f'({m["OWNER_PATH"]} || {m["WORKLOAD_SELF_PATH"]})))')
    m["LOWER_START"] = (
        f'(({m["SELF_SERVICE_PATH"]} && action in {_actions(cfg["strong_self_service_actions"])} && '
        f'{at_least("strong_self_service_auth")}.contains(principal.auth_strength)) || '
        f'({m["WORKLOAD_SELF_PATH"]} && {m["NHI_CRED"]}) || '
        f'({m["OWNER_PATH"]} && {m["NHI_CRED"]} && '
        f'{at_least("strong_self_service_auth")}.contains(principal.auth_strength)))'
    )
    m["GUARDED"] = f'!(action in {_actions(["info_request", *cfg["containment_actions"]])})'
    m["ESCALATES"] = f'({m["GUARDED"]} && !(action in {_actions(cfg["no_credential_actions"])}))'
    m["TIER"] = f"(if resource.privileged && resource.privilege_tier < {p} then {p} else resource.privilege_tier)"
    m["PRIVILEGED"] = f"(resource.privileged || resource.privilege_tier >= {p})"
    m["REQUESTED"] = (f'(if context has requested_privilege_tier then context.requested_privilege_tier '
                      f'else if {m["TIER"]} > {p} then {m["TIER"]} else {p})')
    issues_or_changes = (f'action in {_actions(cfg["recovery_actions"])} && '
                         f'!(action in {_actions(cfg["no_credential_actions"])}) && {m["REMOTE"]}')

    rules: list[str] = ["// baseline.rego: the action's baseline, unless a strong path starts lower"]
    for level in LEVELS:
        actions = [a for a, lvl in cfg["action_baseline"].items() if lvl == level]
        if actions:
            rules.append(f'@id("{level}:action_baseline")\npermit (principal, action in {_actions(actions)}, resource)\n'
                         f'unless {{ {m["LOWER_START"]} }};')
    rules += [
        '@id("self_service:action_baseline")\npermit (principal, action, resource)\n'
        f'when {{ {m["LOWER_START"]} }};',
        f'@id("step_up:requester_unauthenticated")\npermit (principal, action, resource)\nwhen {{ !{m["AUTHENTICATED"]} }};',
        '@id("step_up:weak_authentication")\npermit (principal, action, resource)\n'
        f'when {{ {m["AUTHENTICATED"]} && !{m["STRONG_AUTH"]} }};',
        '@id("deny:target_offboarded")\nforbid (principal, action, resource)\n'
        f'when {{ resource.status == "offboarded" && !(action in {_actions(cfg["containment_actions"])}) }};',
        '@id("manager_approval:target_suspended")\npermit (principal, action, resource)\n'
        f'when {{ resource.status == "suspended" && {m["GUARDED"]} }};',
        '@id("self_service:break_glass")\npermit (principal, action, resource)\nwhen { context.emergency };',
        "// recovery.rego: the channel rules",
        f'@id("step_up:remote_channel_recovery")\npermit (principal, action in {_actions(cfg["recovery_actions"])}, resource)\n'
        f'when {{ {m["REMOTE"]} }};',
        '@id("callback:privileged_remote_recovery")\npermit (principal, action, resource)\n'
        f'when {{ {issues_or_changes} && {m["PRIVILEGED"]} }};',
        '@id("callback:vip_remote_recovery")\npermit (principal, action, resource)\n'
        f'when {{ {issues_or_changes} && resource.vip }};',
        '@id("callback:chained_credential_change")\n'
        f'permit (principal, action in {_actions(cfg["factor_change_actions"])}, resource)\n'
        f'when {{ {m["REMOTE"]} && (!(context has recent_credential_change_hours) || '
        f'context.recent_credential_change_hours.lessThanOrEqual(decimal("{cfg["chained_change_window_hours"]}.0"))) }};',
        "// access.rego",
        '@id("callback:privileged_target")\npermit (principal, action, resource)\n'
        f'when {{ {m["ESCALATES"]} && {m["PRIVILEGED"]} && !{m["STRONG_PATH"]} && {m["TIER"]} >= {c} }};',
        '@id("manager_approval:privileged_target")\npermit (principal, action, resource)\n'
        f'when {{ {m["ESCALATES"]} && {m["PRIVILEGED"]} && !{m["STRONG_PATH"]} && {m["TIER"]} < {c} }};',
        f'@id("{cfg["vip_level"]}:vip_target")\npermit (principal, action, resource)\n'
        f'when {{ {m["ESCALATES"]} && resource.vip && !{m["STRONG_PATH"]} }};',
        f'@id("callback:requested_privilege")\npermit (principal, action in {_actions(GRANT_ACTIONS)}, resource)\n'
        f'when {{ {m["REQUESTED"]} >= {c} }};',
        f'@id("manager_approval:requested_privilege")\npermit (principal, action in {_actions(GRANT_ACTIONS)}, resource)\n'
        f'when {{ {m["REQUESTED"]} >= {p} && {m["REQUESTED"]} < {c} }};',
    ]
    return "\n\n".join(rules) + "\n"


def make_cedar(cfg: dict[str, Any]) -> Decide:
    """Map an input document to a Cedar request, decide it in one call, grade it.

    Returns ``{"level": …, "reasons": {code: level}, "errors": […]}``.
    """
    try:
        import cedarpy
    except ImportError:
        raise Skip("cedarpy is not installed (pip install cedarpy)") from None
    policies = cedarpy.PolicySet.from_str(cedar_policies(cfg))
    is_authorized = cedarpy.is_authorized
    allow = cedarpy.Decision.Allow
    level_rank = LEVEL_RANK

    def decide(doc: dict[str, Any]) -> dict[str, Any]:
        req, actor, target, ctx = doc["request"], doc["actor"], doc["target"], doc["context"]
        principal = {"type": "Actor", "id": actor["id"]}
        resource = {"type": "Target", "id": target["id"]}
        attrs = {
            "id": target["id"], "type": target["type"], "privileged": target["privileged"] is True,
            "privilege_tier": target["privilege_tier"], "vip": target["vip"] is True, "status": target["status"],
            "owners": target["owners"],
        }
        if target["owner_active"] is not None:
            attrs["owner_active"] = target["owner_active"]
        context = {"channel": req["channel"], "emergency": req["emergency"] is True}
        if req["requested_privilege_tier"] is not None:
            context["requested_privilege_tier"] = req["requested_privilege_tier"]
        hours = ctx["recent_credential_change_hours"]
        if hours is not None:
            # Cedar has no floats; its decimal keeps 4 places, and hours carry at most 3 (models.HOURS_DECIMALS).
            context["recent_credential_change_hours"] = {"__extn": {"fn": "decimal", "arg": f"{hours:.4f}"}}
        entities = [
            {"uid": principal, "parents": [], "attrs": {
                "id": actor["id"], "type": actor["type"], "authenticated": actor["authenticated"] is True,
                "auth_strength": actor["auth_strength"],
            }},
            {"uid": resource, "parents": [], "attrs": attrs},
        ]
        result = is_authorized(
            {"principal": principal, "action": {"type": "Action", "id": req["action"]}, "resource": resource,
             "context": context},
            policies, entities,
        )
        diagnostics = result.diagnostics
        reasons = dict(tag.split(":", 1)[::-1] for tag in diagnostics.id_annotations_by_reason.values())
        errors = diagnostics.errors
        if errors or result.decision is not allow or not reasons:
            # A policy that errs is skipped by Cedar: fail closed, as a forbid would.
            return {"level": "deny", "reasons": reasons, "errors": errors}
        return {"level": LEVELS[max(level_rank[lvl] for lvl in reasons.values())], "reasons": reasons, "errors": errors}

    return decide


# ------------------------------------------------------------------ Rego, raw


def make_regopy(modules: dict[str, str], data: dict[str, Any]) -> Decide:
    """regopy with the stock Rego compiled once: set the input, query the decision, read it."""
    from helpdesk_policy.engines.regopy_import import import_regopy

    regopy = import_regopy()  # not a plain import: after aiohttp it would leak (see that module)

    interp = regopy.Interpreter()
    interp.strict_built_in_errors = True
    for name, source in modules.items():
        interp.add_module(name, source)
    interp.add_data(data)
    bundle = interp.build(None, [DECISION_PATH])
    if not bundle.ok():
        raise RuntimeError("regopy does not compile the stock policy")
    runner = regopy.Interpreter()
    runner.strict_built_in_errors = True
    set_input, query = runner.set_input, runner.query_bundle_entrypoint

    def decide(doc: dict[str, Any]) -> dict[str, Any]:
        set_input(doc)
        return query(bundle, DECISION_PATH).results[0].expressions[0]

    return decide


def make_opa_go(modules: dict[str, str], data: dict[str, Any]) -> Decide:
    """OPA's Go evaluator in-process with the stock Rego: input in, ``data.helpdesk.decision`` out."""
    try:
        from opa_bindings import OpaEngine
    except ImportError:
        raise Skip("OPA's Go evaluator is not installed (opa-golib-python-bindings)") from None
    engine = OpaEngine()
    for name, source in modules.items():
        engine.add_policy(name, source)
    for name, doc in data["helpdesk"].items():
        engine.add_data(doc, path=f"helpdesk.{name}")
    document = DECISION_PATH.replace("/", ".")
    evaluate = engine.eval_document

    def decide(doc: dict[str, Any]) -> dict[str, Any]:
        return evaluate(document, doc)

    return decide


def make_compiled(modules: dict[str, str], data: dict[str, Any]) -> Decide:
    """The stock Rego compiled to Python: input document in, ``data.helpdesk.decision`` out."""
    try:
        from helpdesk_policy.compiler.codegen import compile_policy
        from helpdesk_policy.compiler.parser import parse_module
    except ImportError as exc:
        raise Skip(f"the Rego compiler cannot load ({exc})") from None
    asts = {name: parse_module(source, name) for name, source in modules.items()}
    return compile_policy(asts, data=data, entrypoint=DECISION_PATH.replace("/", ".")).evaluate


def make_facade(engine: str, url: str | None = None) -> Decide:
    from helpdesk_policy import HelpdeskPolicy

    options = {"opa": {"url": url, "deadline": 5.0}} if engine == "opa" else None
    return HelpdeskPolicy(engine=engine, engine_options=options).decide


# ------------------------------------------------------------------ contenders


@dataclass
class Contender:
    name: str
    label: str
    takes: str  # "raw": the request dict, a fresh id each round; "same": ids kept; "full": the validated input
    make: Callable[[], Decide]
    fn: Decide | None = None
    samples: list[int] = field(default_factory=list)
    skipped: str | None = None


def contenders(payload: dict[str, Any], opa_url: str | None) -> list[Contender]:
    cfg, modules, data = payload["config"], payload["modules"], payload["data"]
    return [
        Contender("floor", "plain Python, subset rules, dict in/out, no validation", "full", lambda: make_floor(cfg)),
        Contender("native", "`native` decide(dict)", "raw", lambda: make_facade("native")),
        Contender("cedar", "Cedar (cedarpy), subset, one call, graded by annotations", "full",
                  lambda: make_cedar(cfg)),
        Contender("opa-go", "OPA's Go evaluator in-process (`opa_bindings`) raw", "full",
                  lambda: make_opa_go(modules, data)),
        Contender("regopy", "regopy raw, no facade", "full", lambda: make_regopy(modules, data)),
        Contender("compiled-raw", "the Rego compiled to Python, raw, no facade", "full",
                  lambda: make_compiled(modules, data)),
        Contender("compiled", "`compiled` decide(dict)", "raw", lambda: make_facade("compiled")),
        Contender("rego", "`rego` decide(dict)", "raw", lambda: make_facade("rego")),
        Contender("opa", "`opa` decide(dict) over loopback", "raw", lambda: _opa(opa_url)),
        Contender("rego-hit", "`rego` decide(dict), a decision-cache hit", "same", _rego_hit),
    ]


def _rego_hit() -> Decide:
    decide = make_facade("rego")
    if not hasattr(decide.__self__, "cache_info"):  # type: ignore[attr-defined]
        raise Skip("this version of the facade has no decision cache")
    return decide


def inputs(payload: dict[str, Any], takes: str) -> list[dict[str, Any]]:
    return payload["raw" if takes == "same" else takes]


def _opa(url: str | None) -> Decide:
    if url is None:
        raise Skip("no loopback OPA server (it needs opa-golib-python-bindings)")
    return make_facade("opa", url)


class OpaServer:
    """tests/opa_server.py in a child process (benchmarks/bench_opa.py's), or nothing when it cannot run."""

    def __init__(self) -> None:
        self.url: str | None = None
        self.why: str | None = None
        self._proc: Any = None

    def __enter__(self) -> OpaServer:
        try:
            import opa_bindings  # noqa: F401
        except ImportError:
            self.why = "opa-golib-python-bindings is not installed"
            return self
        sys.path.insert(0, str(Path(__file__).resolve().parent))
        from bench_opa import ServerProcess

        self._proc = ServerProcess()
        self.url = self._proc.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._proc is not None:
            self._proc.__exit__(*exc)


# ------------------------------------------------------------------ agreement


def stock_subset(decision: Any) -> dict[str, str]:
    """The stock decision's reasons whose codes the subset decides: {code: level}."""
    return {r.code: r.level.value for r in decision.reasons if r.code in SUBSET_CODES}


def check(cs: list[Contender], payload: dict[str, Any]) -> dict[str, Any]:
    """One untimed pass (the warm-up): every contender's answers against the stock policy's."""
    from helpdesk_policy import HelpdeskPolicy

    stock = HelpdeskPolicy(engine="native")
    decisions = [stock.decide(r) for r in payload["raw"]]
    alone = [i for i, d in enumerate(decisions) if all(r.code in SUBSET_CODES for r in d.reasons)]
    report: dict[str, Any] = {"requests": len(decisions), "subset_alone": len(alone)}
    for c in cs:
        if c.fn is None:
            continue
        answers = [c.fn(x) for x in inputs(payload, c.takes)]
        if c.name == "native":
            continue  # the reference itself (this pass is its warm-up)
        if c.name in ("floor", "cedar"):
            same_rules = sum(
                _subset_agrees(a, decisions[i]) for i, a in enumerate(answers)
            )
            same_level = sum(answers[i]["level"] == decisions[i].level.value for i in alone)
            errors = sum(bool(a.get("errors")) for a in answers)
            report[c.name] = {"rules": same_rules, "level_alone": same_level, "errors": errors}
        else:
            same = 0
            for a, d in zip(answers, decisions):
                level, codes = (a.level.value, sorted(r.code for r in a.reasons)) if hasattr(a, "level") else (
                    a["level"], sorted(r["code"] for r in a["reasons"]))
                same += level == d.level.value and codes == sorted(r.code for r in d.reasons)
            report[c.name] = {"same": same}
    return report


def _subset_agrees(answer: dict[str, Any], decision: Any) -> bool:
    expected = stock_subset(decision)
    if answer["level"] == "deny" and answer["reasons"] and set(answer["reasons"].values()) == {"deny"}:
        # Cedar names only the forbids that decided a denial.
        return answer["reasons"] == {k: v for k, v in expected.items() if v == "deny"} and not answer.get("errors")
    return answer["reasons"] == expected and not answer.get("errors")


# ------------------------------------------------------------------ timing


def round_robin(cs: list[Contender], payload: dict[str, Any], rounds: int, batch: int) -> None:
    full = payload["full"]
    live = [c for c in cs if c.fn is not None]
    n = len(full)
    starts = list(range(0, n, batch))
    turn = 0
    clock = time.perf_counter_ns
    for k in range(rounds):
        given = {"full": full, "same": payload["raw"], "raw": with_ids(payload["raw"], f"R{k}")}
        for start in starts:
            turn += 1
            shift = turn % len(live)
            for c in live[shift:] + live[:shift]:
                fn, out = c.fn, c.samples
                assert fn is not None
                for x in given[c.takes][start:start + batch]:
                    t0 = clock()
                    fn(x)
                    out.append(clock() - t0)


def pct(samples: list[int], q: float) -> float:
    s = sorted(samples)
    return s[min(len(s) - 1, int(q * len(s)))] / 1e3


def fmt_us(us: float) -> str:
    return f"{us:,.1f} µs" if us < 100 else f"{us:,.0f} µs"


# ------------------------------------------------------------------ memory


def status_kb(name: str) -> int:
    # VmHWM: this process image's peak resident set; VmRSS: now (Linux).
    with open("/proc/self/status", encoding="ascii") as f:
        return next(int(line.split()[1]) for line in f if line.startswith(name + ":"))


def memory_child(name: str, payload_path: str, url: str | None) -> None:
    """In a fresh interpreter: load one contender, decide the request set once, print its memory as JSON."""
    payload = json.loads(Path(payload_path).read_text(encoding="utf-8"))
    gc.collect()
    base = status_kb("VmHWM")
    (c,) = [c for c in contenders(payload, url) if c.name == name]
    try:
        fn = c.make()
    except Skip as exc:
        print(json.dumps({"skipped": str(exc)}))
        return
    loaded = status_kb("VmHWM")
    for x in inputs(payload, c.takes):
        fn(x)
    print(json.dumps({"base_kb": base, "load_kb": loaded - base, "pass_kb": status_kb("VmHWM") - loaded,
                      "peak_kb": status_kb("VmHWM")}))


def memory(cs: list[Contender], payload: dict[str, Any], url: str | None) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    with tempfile.NamedTemporaryFile("w", suffix=".json", encoding="utf-8", delete=False) as f:
        json.dump(payload, f)
    try:
        for c in cs:
            if c.skipped or c.name == "rego-hit":  # rego's memory, with a full cache
                continue
            argv = [sys.executable, __file__, "--memory-child", c.name, f.name] + (["--url", url] if url else [])
            done = subprocess.run(argv, capture_output=True, text=True)
            if done.returncode:
                last = (done.stderr.strip().splitlines() or ["no output"])[-1]
                out[c.name] = {"failed": last}
                print(f"memory run of {c.name} failed: {last}", file=sys.stderr)
                continue
            out[c.name] = json.loads(done.stdout.strip().splitlines()[-1])
    finally:
        os.unlink(f.name)
    return out


# ------------------------------------------------------------------ report


def machine() -> dict[str, str]:
    model = "unknown CPU"
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as f:
            model = next(line.split(":", 1)[1].strip() for line in f if line.startswith("model name"))
    except (OSError, StopIteration):
        pass
    versions = {}
    for dist in ("regopy", "cedarpy", "opa-golib-python-bindings", "pydantic"):
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            pass
    return {
        "cpu": model,
        "cores": str(os.cpu_count()),
        "python": platform.python_version(),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "versions": ", ".join(f"{k} {v}" for k, v in versions.items()),
    }


def agrees(a: dict[str, int], agreement: dict[str, Any]) -> bool:
    if "same" in a:
        return a["same"] == agreement["requests"]
    return a["rules"] == agreement["requests"] and a["level_alone"] == agreement["subset_alone"] and not a["errors"]


def _cache_info(c: Contender) -> Any:
    policy = getattr(c.fn, "__self__", None)
    return policy.cache_info() if hasattr(policy, "cache_info") else None


def report(cs: list[Contender], agreement: dict[str, Any], mem: dict[str, dict[str, Any]], info: dict[str, Any]) -> str:
    live = sorted((c for c in cs if c.samples), key=lambda c: pct(c.samples, 0.5))
    native = next((pct(c.samples, 0.5) for c in live if c.name == "native"), None)
    n = agreement["requests"]
    lines = [
        f"| contender, same stock policy, {n:,} requests × {info['rounds']} rounds | p50 | p90 | p99 | ÷ native |",
        "|---|---:|---:|---:|---:|",
    ]
    for c in live:
        p50 = pct(c.samples, 0.5)
        ratio = f"{p50 / native:.2f}" if native else "-"
        lines.append(f"| {c.label} | {fmt_us(p50)} | {fmt_us(pct(c.samples, 0.9))} | "
                     f"{fmt_us(pct(c.samples, 0.99))} | {ratio} |")
    m = info["machine"]
    lines += [
        "",
        f"Machine: {m['cpu']}, {m['cores']} cores, Python {m['python']}; {m['versions']}. {m['date']}. "
        f"Load average {info['load_before']:.2f} before, {info['load_after']:.2f} after; "
        f"{info['seconds']:.0f} s of round-robin, {info['samples']:,} timed calls per contender.",
    ]
    for c in cs:
        if c.skipped:
            lines.append(f"Skipped {c.name}: {c.skipped}.")
    caches = [f"{c.name} {info.hits:,} hits, {info.misses:,} misses" for c in cs
              if (info := _cache_info(c)) is not None and info.enabled]
    if caches:
        lines.append("Decision cache: " + "; ".join(caches) + ".")
    lines += ["", f"Agreement with the stock policy (native) on {n:,} requests:"]
    for c in cs:
        a = agreement.get(c.name)
        if a is None:
            continue
        if not agrees(a, agreement):
            lines.append(f"- **{c.name} DISAGREES with the stock policy: its row compares unlike work**")
        if "same" in a:
            lines.append(f"- {c.name}: level and reason codes equal on {a['same']:,}/{n:,}")
        else:
            lines.append(
                f"- {c.name}: the subset's rules and levels equal on {a['rules']:,}/{n:,}; graded level equals the "
                f"stock level on {a['level_alone']:,}/{agreement['subset_alone']:,} requests the subset decides "
                f"alone; {a['errors']} evaluation errors"
            )
    if mem:
        lines += ["", "| contender, fresh interpreter | peak RSS | of which loading | deciding the set once |",
                  "|---|---:|---:|---:|"]
        for c in cs:
            r = mem.get(c.name)
            if r is None or "skipped" in r:
                continue
            if "failed" in r:
                lines.append(f"| {c.name} | failed: {r['failed']} | | |")
                continue
            lines.append(f"| {c.name} | {r['peak_kb'] / 1024:.1f} MB | +{r['load_kb'] / 1024:.1f} MB | "
                         f"+{r['pass_kb'] / 1024:.1f} MB |")
        lines.append(f"(The interpreter with the request set loaded, before any contender: "
                     f"{min(r['base_kb'] for r in mem.values() if 'base_kb' in r) / 1024:.1f} MB; "
                     "opa: the client only, the server runs in its own process.)")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=5, help="timed passes over the request set")
    parser.add_argument("--generated", type=int, default=994, help="generated requests besides the 28 examples")
    parser.add_argument("--batch", type=int, default=10, help="requests a contender decides before the next one's turn")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="run only these contenders (native always runs)")
    parser.add_argument("--no-memory", action="store_true", help="skip the fresh-interpreter memory runs")
    parser.add_argument("--show-cedar", action="store_true", help="print the Cedar policies and exit")
    parser.add_argument("--json", action="store_true", help="print the numbers as JSON after the report")
    parser.add_argument("--memory-child", nargs=2, metavar=("NAME", "PAYLOAD"), help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    args = parser.parse_args()

    if args.memory_child:
        memory_child(*args.memory_child, args.url)
        return
    import logging

    logging.getLogger("helpdesk_policy").setLevel(logging.ERROR)
    payload = load_payload(args.generated)
    if args.show_cedar:
        print(cedar_policies(payload["config"]), end="")
        return

    load_before = os.getloadavg()[0]
    with OpaServer() as server:
        cs = contenders(payload, server.url)
        if args.only:
            cs = [c for c in cs if c.name in args.only or c.name == "native"]
        for c in cs:
            try:
                c.fn = c.make()
            except Skip as exc:
                c.skipped = str(exc) if c.name != "opa" or not server.why else server.why
                print(f"skipping {c.name}: {c.skipped}", file=sys.stderr)
        print(f"{len(payload['raw']):,} requests; checking answers (the warm-up pass)", file=sys.stderr)
        agreement = check(cs, payload)
        print(f"round-robin, {args.rounds} rounds", file=sys.stderr)
        started = time.perf_counter()
        round_robin(cs, payload, args.rounds, args.batch)
        seconds = time.perf_counter() - started
        load_after = os.getloadavg()[0]
        mem = {} if args.no_memory else memory(cs, payload, server.url)
    info = {"machine": machine(), "rounds": args.rounds, "load_before": load_before, "load_after": load_after,
            "seconds": seconds, "samples": len(payload["raw"]) * args.rounds}
    print(report(cs, agreement, mem, info))
    failed = [name for name, a in agreement.items() if isinstance(a, dict) and not agrees(a, agreement)]
    if args.json:
        print(json.dumps({
            "machine": info["machine"], "load": [load_before, load_after], "agreement": agreement, "memory": mem,
            "latency_us": {c.name: {q: pct(c.samples, v) for q, v in (("p50", 0.5), ("p90", 0.9), ("p99", 0.99))}
                           for c in cs if c.samples},
        }, indent=2))
    if failed:
        sys.exit(f"disagreement with the stock policy: {', '.join(failed)}")


if __name__ == "__main__":
    main()
