"""A corpus of edited stock policies ("mutants"): the edits organisations make.

Organisations copy the stock policy directory (``policies/helpdesk/*.rego``,
``config.yaml``, ``reasons.yaml``) and change it: a threshold, a comparison, a
new rule family of their own, a reason removed or reworded. Every engine must
read such an edited copy exactly as OPA does, and ``helpdesk-policy diff``
must see what the edit changed. Each :class:`Mutant` here is one such edit,
written as exact text replacements on a copy of the stock tree
(:func:`apply_mutant`), so the corpus is generated from whatever the stock
policy is today. An edit whose ``old`` text no longer occurs exactly once in
the stock file fails loudly instead of silently testing the stock policy.

Mutants marked ``changes_decisions=False`` are decision-neutral by
construction (a rule rewritten equivalently, an else chain that keeps the
value, a default that never applies, an unused rule removed); the others
change at least one decision on the generated requests the tests use.

Decision changes are kept to what ``helpdesk-policy diff`` compares (level,
reason codes, levels and messages, obligations, playbook, the approver and
callback constraints): an edit that only changes a reason's refs is not a
"decision change" for the diff, so no mutant here changes only those.

>>> len(MUTANTS) >= 50
True
"""

from __future__ import annotations

import shutil
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from helpdesk_policy.resources import stock_policy_dir

__all__ = [
    "KINDS",
    "MUTANTS",
    "AddedFile",
    "Edit",
    "Mutant",
    "apply_mutant",
    "kind_counts",
]

#: The kinds of edit the corpus covers, each with several mutants.
KINDS: tuple[str, ...] = (
    "threshold",
    "comparison_flip",
    "rule_family_added",
    "reason_added",
    "rule_removed",
    "else_chain_added",
    "default_added",
    "condition_changed",
    "string_literal_changed",
    "helper_function_added",
    "equivalent_rewrite",
)


@dataclass(frozen=True)
class Edit:
    """Replace ``old`` by ``new`` in ``file`` (relative to the policy directory); ``old`` must occur once."""

    file: str
    old: str
    new: str


@dataclass(frozen=True)
class AddedFile:
    """A file the organisation adds (relative to the policy directory); it must not exist yet."""

    file: str
    text: str


@dataclass(frozen=True)
class Mutant:
    """One edited policy: what kind of edit, what it does, and the edits that make it."""

    name: str
    kind: str
    description: str
    edits: tuple[Edit | AddedFile, ...]
    #: False: the edit keeps every decision by construction (the diff must be empty).
    changes_decisions: bool = True
    #: The policy files the edits touch (derived).
    files: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"mutant {self.name}: unknown kind {self.kind!r}")
        if not self.edits:
            raise ValueError(f"mutant {self.name}: no edits")
        object.__setattr__(self, "files", tuple(dict.fromkeys(e.file for e in self.edits)))


def apply_mutant(mutant: Mutant, dest: Path) -> Path:
    """Copy the stock policy tree to ``dest`` (which must not exist) and apply ``mutant``'s edits.

    Returns:
        ``dest``, a policy directory for :meth:`PolicySet.load`.

    Raises:
        AssertionError: an edit's ``old`` text does not occur exactly once in
            its file (the stock policy changed under the corpus), or an added
            file already exists.
    """
    shutil.copytree(stock_policy_dir(), dest)
    for edit in mutant.edits:
        path = dest / edit.file
        if isinstance(edit, AddedFile):
            assert not path.exists(), f"mutant {mutant.name}: {edit.file} already exists in the stock policy"
            path.write_text(edit.text, encoding="utf-8")
            continue
        text = path.read_text(encoding="utf-8")
        found = text.count(edit.old)
        assert found == 1, (
            f"mutant {mutant.name}: {edit.old!r} occurs {found} times in {edit.file}, expected exactly once "
            f"(did the stock policy change?)"
        )
        path.write_text(text.replace(edit.old, edit.new), encoding="utf-8")
    return dest


def kind_counts(mutants: tuple[Mutant, ...] | None = None) -> Counter[str]:
    """How many mutants of each kind the corpus holds."""
    return Counter(m.kind for m in (MUTANTS if mutants is None else mutants))


# ------------------------------------------------------------------ helpers


def _rego(module: str, old: str, new: str) -> Edit:
    """An edit of ``policies/helpdesk/<module>.rego``."""
    return Edit(f"helpdesk/{module}.rego", old, new)


def _append(module: str, anchor: str, addition: str) -> Edit:
    """Insert ``addition`` right after ``anchor`` (which must occur once) in a Rego module."""
    return _rego(module, anchor, anchor + addition)


def _reason_entry(key: str, code: str, args: tuple[str, ...], message: str, refs: tuple[str, ...]) -> Edit:
    """A new ``reasons.yaml`` entry, inserted before ``break_glass`` (an anchor that occurs once).

    ``message`` takes one ``%v`` per name in ``args``, as the catalogue requires.
    """
    anchor = "  break_glass:\n    code: break_glass\n"
    entry = (
        f"  {key}:\n"
        f"    code: {code}\n"
        f"    args: [{', '.join(args)}]\n"
        f'    message: "{message}"\n'
        f"    refs: [{', '.join(refs)}]\n"
    )
    return Edit("reasons.yaml", anchor, entry + anchor)


# ------------------------------------------------------------------ the corpus

_THRESHOLDS: tuple[Mutant, ...] = (
    Mutant(
        "risk-compound-needs-three-signals", "threshold",
        "risk_compound fires from three medium signals, not two.",
        (_rego("risk", "\tn >= 2\n", "\tn >= 3\n"),),
    ),
    Mutant(
        "risk-failed-verifications-from-two", "threshold",
        "On an impersonable path one failed verification is tolerated; two raise the level.",
        (_rego("risk", "\tfailures > 0\n\tcommon.impersonable\n", "\tfailures > 1\n\tcommon.impersonable\n"),),
    ),
    Mutant(
        "levels-raise-caps-lower", "threshold",
        "raise() goes to callback from rank 2 on (manager_approval is skipped).",
        (_rego("levels", "\tbase + n < 3\n", "\tbase + n < 2\n"),),
    ),
    Mutant(
        "common-password-ranks-as-mfa", "threshold",
        "A password counts as strong as MFA in the authentication ranking.",
        (_rego("common", '"password": 1, "mfa": 2', '"password": 2, "mfa": 2'),),
    ),
    Mutant(
        "obligations-privilege-grants-last-four-hours", "threshold",
        "A privilege grant lasts 4 hours (a literal in the rule) instead of the config's 8.",
        (_rego("obligations", "time_limits contains cfg.privileged_access_max_hours if privilege_grant\n",
               "time_limits contains 4 if privilege_grant\n"),),
    ),
    Mutant(
        "nhi-wide-distribution-from-five", "threshold",
        "An NHI with five consumers is already widely distributed (the message still cites the config).",
        (_rego("nhi", "\tinput.target.consumers >= cfg.nhi_wide_consumers\n",
               "\tinput.target.consumers >= 5\n"),),
    ),
    Mutant(
        "nhi-secret-fresh-for-thirty-days", "threshold",
        "A secret older than 30 days is stale (the rotate obligation follows), whatever the config says.",
        (_rego("nhi", "\tinput.target.secret_age_days <= cfg.max_secret_age_days\n",
               "\tinput.target.secret_age_days <= 30\n"),),
    ),
    Mutant(
        "config-failed-verifications-callback-two", "threshold",
        "config.yaml: two failed verifications in 24 h go straight to callback.",
        (Edit("config.yaml", "failed_verifications_callback: 3\n", "failed_verifications_callback: 2\n"),),
    ),
)

_COMPARISON_FLIPS: tuple[Mutant, ...] = (
    Mutant(
        "constraints-contact-usable-strictly-above", "comparison_flip",
        "contact_usable: the contact of record must be older than the minimum age, not at it "
        "(changes only the callback constraint, which the diff compares).",
        (_rego("constraints", "input.target.contact_age_days >= cfg.callback_contact_min_age_days",
               "input.target.contact_age_days > cfg.callback_contact_min_age_days"),),
    ),
    Mutant(
        "common-privileged-tier-strictly-above", "comparison_flip",
        "privileged_target: tier > privileged_tier instead of >=.",
        (_rego("common", "\tinput.target.privilege_tier >= cfg.privileged_tier\n",
               "\tinput.target.privilege_tier > cfg.privileged_tier\n"),),
    ),
    Mutant(
        "common-strong-auth-strictly-above", "comparison_flip",
        "strong_auth: the authentication must rank above min_auth_strength, not at it.",
        (_rego("common", "auth_rank[input.actor.auth_strength] >= auth_rank[cfg.min_auth_strength]",
               "auth_rank[input.actor.auth_strength] > auth_rank[cfg.min_auth_strength]"),),
    ),
    Mutant(
        "risk-failed-callback-strictly-above", "comparison_flip",
        "failed_level: callback above failed_verifications_callback, not at it.",
        (_rego("risk", "failed_level := \"callback\" if failures >= cfg.failed_verifications_callback",
               "failed_level := \"callback\" if failures > cfg.failed_verifications_callback"),),
    ),
    Mutant(
        "access-privileged-callback-strictly-above", "comparison_flip",
        "privileged_level: callback only above callback_tier.",
        (_rego("access", "privileged_level := \"callback\" if common.effective_tier >= cfg.callback_tier",
               "privileged_level := \"callback\" if common.effective_tier > cfg.callback_tier"),),
    ),
    Mutant(
        "common-active-owner-count-at-least-zero", "comparison_flip",
        "active_owner: count(owners) >= 0 instead of > 0, so an NHI with no owner can have an active one.",
        (_rego("common", "\tcount(input.target.owners) > 0\n", "\tcount(input.target.owners) >= 0\n"),),
    ),
    Mutant(
        "obligations-time-bound-strict-minimum", "comparison_flip",
        "time_bound_hours compares with < (every limit is compared with itself too, so the rule is "
        "never defined and the time_bound_access obligation disappears).",
        (_rego("obligations", "\t\thours <= other\n", "\t\thours < other\n"),),
    ),
    Mutant(
        "common-effective-tier-at-most", "comparison_flip",
        "effective_tier: <= instead of <; at equality both branches give the same tier.",
        (_rego("common", "\tinput.target.privilege_tier < cfg.privileged_tier\n",
               "\tinput.target.privilege_tier <= cfg.privileged_tier\n"),),
        changes_decisions=False,
    ),
)

_ORG_RULES_MODULE = """\
# Our organisation's own concern: a remote, identity-changing request with no
# stated justification needs a step-up.
package helpdesk.org_rules

import rego.v1

import data.helpdesk.common

reasons contains common.reason("org_unjustified_remote", "step_up", [common.action]) if {
\tcommon.guarded
\tcommon.remote
\tinput.request.justification == null
}
"""

_RULE_FAMILIES: tuple[Mutant, ...] = (
    Mutant(
        "baseline-family-contractor-step-up", "rule_family_added",
        "A new rule in baseline.rego: a requester holding the contractor role steps up.",
        (
            _append("baseline", "\tinput.request.emergency == true\n}\n", (
                '\nreasons contains common.reason("org_contractor_requester", "step_up", []) if {\n'
                '\t"contractor" in input.actor.roles\n'
                "\tcommon.guarded\n"
                "}\n"
            )),
            _reason_entry("org_contractor_requester", "org_contractor_requester", (),
                          "The requester is a contractor: verify them with a step-up before acting.",
                          ("NIST-CSF-2.0:PR.AA-03",)),
        ),
    ),
    Mutant(
        "org-rules-module-unjustified-remote", "rule_family_added",
        "A new module helpdesk/org_rules.rego joined into decision.rego: remote requests without a "
        "justification step up.",
        (
            AddedFile("helpdesk/org_rules.rego", _ORG_RULES_MODULE),
            _rego("decision", "import data.helpdesk.obligations\n",
                  "import data.helpdesk.obligations\nimport data.helpdesk.org_rules\n"),
            _rego("decision", "agents.reasons, risk.reasons,\n", "agents.reasons, risk.reasons, org_rules.reasons,\n"),
            _reason_entry("org_unjustified_remote", "org_unjustified_remote", ("action",),
                          "%v requested remotely without a justification: step up the requester first.",
                          ("CISA-AA23-320A",)),
        ),
    ),
    Mutant(
        "recovery-family-email-factor-callback", "rule_family_added",
        "A new rule in recovery.rego: factor recovery asked for by email needs a callback.",
        (
            _append("recovery", "} else := \"chained_credential_change\"\n", (
                '\nreasons contains common.reason("org_email_factor_recovery", "callback", [common.action]) if {\n'
                "\tcommon.is_factor_recovery\n"
                '\tchannel == "email"\n'
                "}\n"
            )),
            _reason_entry("org_email_factor_recovery", "org_email_factor_recovery", ("action",),
                          "%v asked for by email: call the holder back on a contact of record.",
                          ("CISA-AA23-320A", "NIST-SP-800-63B-4")),
        ),
    ),
    Mutant(
        "nhi-family-api-key-unknown-environment", "rule_family_added",
        "A new rule in nhi.rego: an API key whose environment is unknown needs manager approval.",
        (
            _append("nhi", "issues_credential if common.action == \"service_account_create\"\n", (
                '\nreasons contains common.reason("org_api_key_unknown_environment", "manager_approval", []) if {\n'
                "\trules_apply\n"
                '\tinput.target.type == "api_key"\n'
                "\tinput.target.environment == null\n"
                "}\n"
            )),
            _reason_entry("org_api_key_unknown_environment", "org_api_key_unknown_environment", (),
                          "The API key has no environment of record: its owner approves before it changes.",
                          ("OWASP-NHI-2025:NHI1",)),
        ),
    ),
    Mutant(
        "agents-family-runs-as-target-deny", "rule_family_added",
        "A new rule in agents.rego: an AI agent acting on the identity it runs as is denied.",
        (
            _append("agents", "\tinput.actor.on_behalf_of == null\n}\n", (
                '\nreasons contains common.reason("org_agent_runs_as_target", "deny", []) if {\n'
                "\tcommon.is_agent\n"
                "\tcommon.guarded\n"
                "\tinput.actor.runs_as == input.target.id\n"
                "}\n"
            )),
            _reason_entry("org_agent_runs_as_target", "org_agent_runs_as_target", (),
                          "An AI agent may not change the identity it runs as.",
                          ("OWASP-LLM-2025:LLM06",)),
        ),
    ),
)

_REASONS_ADDED: tuple[Mutant, ...] = (
    Mutant(
        "containment-service-variant", "reason_added",
        "containment: a service requester gets its own reason code.",
        (
            _rego("containment",
                  'approval_key := "containment_needs_approval.agent" if common.is_agent else := "containment_needs_approval"',
                  'approval_key := "containment_needs_approval.agent" if {\n\tcommon.is_agent\n'
                  '} else := "containment_needs_approval.service" if {\n\tcommon.is_service\n'
                  '} else := "containment_needs_approval"'),
            _reason_entry("containment_needs_approval.service", "containment_needs_approval_service", ("action",),
                          "%v asked for by automation that is not entitled to it: a person approves first.",
                          ("NIST-CSF-2.0:PR.AA-05",)),
        ),
    ),
    Mutant(
        "recovery-chained-by-phone", "reason_added",
        "recovery: a chained change asked for by phone gets its own reason code.",
        (
            _rego("recovery", 'chained_key := "chained_credential_change.unknown" if {\n',
                  'chained_key := "chained_credential_change.phone" if {\n'
                  '\tchannel == "phone"\n'
                  '} else := "chained_credential_change.unknown" if {\n'),
            _reason_entry("chained_credential_change.phone", "chained_credential_change_phone",
                          ("hours",), "A credential change by phone within %v hours of another, or with no "
                          "history: the pattern of a phoned-in chained takeover.", ("CISA-AA23-320A",)),
        ),
    ),
    Mutant(
        "nhi-unmanaged-api-key", "reason_added",
        "nhi: an unmanaged API key secret gets its own reason code.",
        (
            _rego("nhi",
                  'unmanaged_key := "nhi_secret_unmanaged" if issues_credential else := "nhi_secret_unmanaged.existing"',
                  'unmanaged_key := "nhi_secret_unmanaged" if {\n\tissues_credential\n'
                  '} else := "nhi_api_key_unmanaged" if {\n\tinput.target.type == "api_key"\n'
                  '} else := "nhi_secret_unmanaged.existing"'),
            _reason_entry("nhi_api_key_unmanaged", "nhi_api_key_unmanaged", (),
                          "The API key is not in a secrets manager: move it there.",
                          ("OWASP-NHI-2025:NHI2",)),
        ),
    ),
    Mutant(
        "risk-high-agent-deny", "reason_added",
        "risk: a high-risk signal on an AI agent's request is a denial with its own code.",
        (
            _rego("risk", '} else := common.reason("risk_high", "callback", [s, description(s)])',
                  '} else := common.reason("risk_high_agent", "deny", [s]) if {\n'
                  "\tcommon.is_agent\n"
                  '} else := common.reason("risk_high", "callback", [s, description(s)])'),
            _reason_entry("risk_high_agent", "risk_high_agent", ("signal",),
                          "High-risk signal %v on an AI agent's request: refused.",
                          ("OWASP-LLM-2025:LLM06",)),
        ),
    ),
    Mutant(
        "consent-broad-tenant-wide-callback", "reason_added",
        "consent: a tenant-wide consent (or one of unknown reach) beyond the low scope gets its own reason "
        "code at callback.",
        (
            _append("consent", "scope_args := [] if scope == null else := [scope]\n", (
                '\nreasons contains common.reason("oauth_consent_broad", "callback", []) if {\n'
                "\tconsent\n"
                '\tscope != "low"\n'
                "\tinput.request.consent_tenant_wide != false\n"
                "}\n"
            )),
            _reason_entry("oauth_consent_broad", "oauth_consent_broad", (),
                          "The app asks for more than sign-in for the whole tenant: call the requester back first.",
                          ("OWASP-NHI-2025:NHI3",)),
        ),
    ),
)

_RULES_REMOVED: tuple[Mutant, ...] = (
    Mutant(
        "baseline-no-suspended-rule", "rule_removed",
        "The target_suspended rule is deleted.",
        (_rego("baseline",
               'reasons contains common.reason("target_suspended", "manager_approval", []) if {\n'
               '\tinput.target.status == "suspended"\n\tcommon.guarded\n}\n\n', ""),),
    ),
    Mutant(
        "agents-no-principal-rule-removed", "rule_removed",
        "The ai_agent_no_principal rule is deleted.",
        (_rego("agents",
               '\nreasons contains common.reason("ai_agent_no_principal", "callback", []) if {\n'
               "\tcommon.is_agent\n\tcommon.guarded\n\tinput.actor.on_behalf_of == null\n}\n", ""),),
    ),
    Mutant(
        "recovery-no-privileged-remote-rule", "rule_removed",
        "The privileged_remote_recovery rule is deleted.",
        (_rego("recovery",
               'reasons contains common.reason("privileged_remote_recovery", "callback", '
               "[common.effective_tier, channel]) if {\n"
               "\tissues_or_changes\n\tcommon.remote\n\tcommon.privileged_target\n}\n\n", ""),),
    ),
    Mutant(
        "obligations-no-previous-contact-notice", "rule_removed",
        "The notify_previous_contact obligation rule is deleted.",
        (_rego("obligations",
               'unless_denied contains {"code": "notify_previous_contact"} if {\n'
               '\tcommon.action == "contact_change"\n}\n\n', ""),),
    ),
    Mutant(
        "nhi-no-stale-secret-reason", "rule_removed",
        "The nhi_stale_secret reason rule is deleted (the rotate_stale_secret obligation stays).",
        (_rego("nhi",
               'reasons contains common.reason("nhi_stale_secret", "self_service", [cfg.max_secret_age_days]) '
               "if stale_secret\n\n", ""),),
    ),
    Mutant(
        "obligations-unused-obligations-rule-removed", "rule_removed",
        "The obligations rule, which the decision does not read (it calls for_level), is deleted.",
        (_rego("obligations", "obligations := for_level(helpdesk.level)\n\n", ""),),
        changes_decisions=False,
    ),
    Mutant(
        "constraints-unused-constraints-rule-removed", "rule_removed",
        "The constraints rule, which the decision does not read (it calls for_requirements), is deleted.",
        (_rego("constraints", "constraints := for_requirements(helpdesk.requirements)\n\n", ""),),
        changes_decisions=False,
    ),
)

_ELSE_CHAINS: tuple[Mutant, ...] = (
    Mutant(
        "recovery-channel-else-chain-same-value", "else_chain_added",
        "channel becomes an else chain whose every branch gives input.request.channel.",
        (_rego("recovery", "channel := input.request.channel\n",
               'channel := "phone" if {\n\tinput.request.channel == "phone"\n} else := input.request.channel\n'),),
        changes_decisions=False,
    ),
    Mutant(
        "access-privileged-level-extra-branch", "else_chain_added",
        "privileged_level gets a middle branch giving the value the last branch gives anyway.",
        (_rego("access",
               'privileged_level := "callback" if common.effective_tier >= cfg.callback_tier else := "manager_approval"',
               'privileged_level := "callback" if {\n\tcommon.effective_tier >= cfg.callback_tier\n'
               '} else := "manager_approval" if {\n\tcommon.effective_tier >= cfg.privileged_tier\n'
               '} else := "manager_approval"'),),
        changes_decisions=False,
    ),
    Mutant(
        "risk-failures-ignored-at-the-desk", "else_chain_added",
        "failures becomes an else chain: failed verifications count as none for a walk-in (verified in person).",
        (_rego("risk", "failures := input.context.failed_verifications_24h\n",
               'failures := 0 if {\n\tinput.request.channel == "walk_in"\n'
               "} else := input.context.failed_verifications_24h\n"),),
    ),
    Mutant(
        "consent-unknown-scope-high", "else_chain_added",
        "scope becomes an else chain: an unstated scope reads as high (a new argument for the message).",
        (_rego("consent", "scope := input.request.consent_scope\n",
               'scope := "high" if {\n\tinput.request.consent_scope == null\n} else := input.request.consent_scope\n'),),
    ),
    Mutant(
        "common-base-rank-emergency", "else_chain_added",
        "base_rank becomes an else chain: an emergency starts at rank 1 for raise().",
        (_rego("common", "base_rank := levels.rank[baseline_level]\n",
               "base_rank := 1 if {\n\tinput.request.emergency == true\n} else := levels.rank[baseline_level]\n"),),
    ),
)

_DEFAULTS: tuple[Mutant, ...] = (
    Mutant(
        "nhi-default-fresh-secret-false", "default_added",
        "default fresh_secret := false: only ever read negated, where false and undefined agree.",
        (_rego("nhi", "fresh_secret if {\n", "default fresh_secret := false\n\nfresh_secret if {\n"),),
        changes_decisions=False,
    ),
    Mutant(
        "containment-default-entitled-false", "default_added",
        "default entitled := false: only ever read negated.",
        (_rego("containment", "entitled if common.relationship in",
               "default entitled := false\n\nentitled if common.relationship in"),),
        changes_decisions=False,
    ),
    Mutant(
        "risk-default-failed-level", "default_added",
        "default failed_level := \"callback\": the else chain always ends in a value, so it never applies.",
        (_rego("risk", "failed_level := \"callback\" if",
               "default failed_level := \"callback\"\n\nfailed_level := \"callback\" if"),),
        changes_decisions=False,
    ),
    Mutant(
        "obligations-default-compromised-false", "default_added",
        "default compromised := false: read only as a condition, where false and undefined agree.",
        (_rego("obligations", "compromised if common.action == \"mfa_reset\"\n",
               "default compromised := false\n\ncompromised if common.action == \"mfa_reset\"\n"),),
        changes_decisions=False,
    ),
    Mutant(
        "common-default-holds-secret-true", "default_added",
        "default holds_secret := true: an NHI stated to hold no secret is treated as holding one.",
        (_rego("common", "holds_secret if input.target.holds_secret != false\n",
               "default holds_secret := true\n\nholds_secret if input.target.holds_secret != false\n"),),
    ),
    Mutant(
        "recovery-default-recent-change-true", "default_added",
        "default recent_change := true: every factor change counts as chained.",
        (_rego("recovery", "recent_change if input.context.recent_credential_change_hours == null\n",
               "default recent_change := true\n\n"
               "recent_change if input.context.recent_credential_change_hours == null\n"),),
    ),
)

_CONDITIONS: tuple[Mutant, ...] = (
    Mutant(
        "info-disclosure-remote-only", "condition_changed",
        "identity_info_disclosure gains a condition: only on a remote channel.",
        (_rego("info", "\tnot common.support_role\n", "\tnot common.support_role\n\tcommon.remote\n"),),
    ),
    Mutant(
        "baseline-offboarded-containment-too", "condition_changed",
        "target_offboarded loses a condition: containment of an offboarded identity is denied too.",
        (_rego("baseline", '\tinput.target.status == "offboarded"\n\tnot common.is_containment\n',
               '\tinput.target.status == "offboarded"\n'),),
    ),
    Mutant(
        "nhi-no-active-owner-production-only", "condition_changed",
        "nhi_no_active_owner gains a condition: only in production.",
        (_rego("nhi", "\trules_apply\n\tnot common.active_owner\n",
               "\trules_apply\n\tnot common.active_owner\n\tcommon.env_production\n"),),
    ),
    Mutant(
        "access-privileged-target-escalates-always", "condition_changed",
        "privileged_target loses a condition: an unlock of a privileged account escalates too.",
        (_rego("access", "\tcommon.escalates\n\tcommon.privileged_target\n", "\tcommon.privileged_target\n"),),
    ),
    Mutant(
        "recovery-third-party-any-target", "condition_changed",
        "third_party_recovery loses a condition: it applies to NHI targets too.",
        (_rego("recovery", "\tissues_or_changes\n\tcommon.is_human\n\tnot common.relationship in",
               "\tissues_or_changes\n\tnot common.relationship in"),),
    ),
    Mutant(
        "agents-requester-redundant-condition", "condition_changed",
        "ai_agent_requester gains a condition that common.is_agent already implies.",
        (_rego("agents", "\tcommon.is_agent\n\tcommon.guarded\n}\n\nreasons contains",
               '\tcommon.is_agent\n\tcommon.guarded\n\tinput.actor.type == "ai_agent"\n}\n\nreasons contains'),),
        changes_decisions=False,
    ),
    Mutant(
        "common-strong-auth-redundant-condition-removed", "condition_changed",
        "strong_auth loses auth_strength != \"none\": \"none\" ranks below min_auth_strength anyway.",
        (_rego("common",
               '\tinput.actor.auth_strength != "none"\n\tauth_rank[input.actor.auth_strength] >= '
               "auth_rank[cfg.min_auth_strength]\n",
               "\tauth_rank[input.actor.auth_strength] >= auth_rank[cfg.min_auth_strength]\n"),),
        changes_decisions=False,
    ),
)

_STRING_LITERALS: tuple[Mutant, ...] = (
    Mutant(
        "nhi-unmanaged-existing-reads-as-new", "string_literal_changed",
        "unmanaged_key: an existing unmanaged secret reads with the new-credential message.",
        (_rego("nhi", 'else := "nhi_secret_unmanaged.existing"', 'else := "nhi_secret_unmanaged"'),),
    ),
    Mutant(
        "containment-agent-reads-as-person", "string_literal_changed",
        "approval_key: an AI agent's containment request reads with the message for people.",
        (_rego("containment", 'approval_key := "containment_needs_approval.agent" if',
               'approval_key := "containment_needs_approval" if'),),
    ),
    Mutant(
        "recovery-unrelated-agent-reads-as-person", "string_literal_changed",
        "unrelated_key: an AI agent's unrelated request reads with the message for people.",
        (_rego("recovery", 'unrelated_key := "unrelated_requester.agent" if common.is_agent',
               'unrelated_key := "unrelated_requester" if common.is_agent'),),
    ),
    Mutant(
        "reasons-suspended-reworded", "string_literal_changed",
        "reasons.yaml: target_suspended's message is reworded (same code, same refs).",
        (Edit("reasons.yaml",
              '"The target identity is suspended: acting on it needs its manager or owner of record."',
              '"The identity is suspended: its manager or owner of record approves any change."'),),
    ),
    Mutant(
        "obligations-previous-contact-on-mfa-reset", "string_literal_changed",
        "notify_previous_contact follows an MFA reset instead of a contact change.",
        (_rego("obligations", '\tcommon.action == "contact_change"\n}', '\tcommon.action == "mfa_reset"\n}'),),
    ),
)

_HELPERS: tuple[Mutant, ...] = (
    Mutant(
        "nhi-helper-at-least", "helper_function_added",
        "A helper at_least(value, floor) replaces the comparison in nhi_widely_distributed.",
        (
            _rego("nhi", "\tinput.target.consumers >= cfg.nhi_wide_consumers\n",
                  "\tat_least(input.target.consumers, cfg.nhi_wide_consumers)\n"),
            _append("nhi", "issues_credential if common.action == \"service_account_create\"\n",
                    "\nat_least(value, floor) if value >= floor\n"),
        ),
        changes_decisions=False,
    ),
    Mutant(
        "access-helper-tier-level", "helper_function_added",
        "A helper tier_level(tier) computes both privileged_level and requested_level.",
        (
            _rego("access",
                  'privileged_level := "callback" if common.effective_tier >= cfg.callback_tier else := "manager_approval"',
                  "privileged_level := tier_level(common.effective_tier)\n\n"
                  'tier_level(tier) := "callback" if tier >= cfg.callback_tier else := "manager_approval"'),
            _rego("access",
                  'requested_level := "callback" if requested_tier >= cfg.callback_tier else := "manager_approval"',
                  "requested_level := tier_level(requested_tier)"),
        ),
        changes_decisions=False,
    ),
    Mutant(
        "decision-helper-playbook-name", "helper_function_added",
        "A helper playbook_name(action, level) builds the playbook.",
        (
            _rego("decision",
                  '"playbook": concat("-", [replace(common.action, "_", "-"), replace(lvl, "_", "-")]),',
                  '"playbook": playbook_name(common.action, lvl),'),
            _append("decision", "\t}\n}\n",
                    '\nplaybook_name(action, lvl) := concat("-", [replace(action, "_", "-"), replace(lvl, "_", "-")])\n'),
        ),
        changes_decisions=False,
    ),
    Mutant(
        "recovery-helper-impersonable-channel", "helper_function_added",
        "A helper impersonable_channel(ch) (remote channels and the API) decides remote_channel_recovery.",
        (
            _rego("recovery",
                  'reasons contains common.reason("remote_channel_recovery", "step_up", [common.action, channel]) if {\n'
                  "\tcommon.is_recovery\n\tcommon.remote\n}\n",
                  'reasons contains common.reason("remote_channel_recovery", "step_up", [common.action, channel]) if {\n'
                  "\tcommon.is_recovery\n\timpersonable_channel(channel)\n}\n\n"
                  "impersonable_channel(ch) if ch in cfg.remote_channels\n\n"
                  'impersonable_channel(ch) if ch == "api"\n'),
        ),
    ),
    Mutant(
        "info-helper-managers-may-ask", "helper_function_added",
        "A helper may_ask(relationship) lets a manager of record ask about the identity's set-up too.",
        (
            _rego("info", '\tnot common.relationship in {"self", "owner"}\n', "\tnot may_ask(common.relationship)\n"),
            _append("info", "\tnot common.support_role\n}\n",
                    '\nmay_ask(relationship) if relationship in {"self", "owner", "manager"}\n'),
        ),
    ),
    Mutant(
        "levels-helper-capped-rank", "helper_function_added",
        "A helper capped(rank) in levels.rego caps raise() at manager_approval instead of callback.",
        (
            _rego("levels", 'raise(base, n) := names[base + n] if {\n\tbase + n < 3\n} else := "callback"',
                  "raise(base, n) := names[capped(base + n)]\n\n"
                  "capped(r) := r if r < 2 else := 2"),
        ),
    ),
)

_REWRITES: tuple[Mutant, ...] = (
    Mutant(
        "access-grant-actions-reordered", "equivalent_rewrite",
        "grant_actions lists the same actions in another order.",
        (_rego("access", 'grant_actions := {"access_grant", "role_change", "privilege_elevation", "delegated_admin"}',
               'grant_actions := {"delegated_admin", "privilege_elevation", "role_change", "access_grant"}'),),
        changes_decisions=False,
    ),
    Mutant(
        "decision-concerns-reordered", "equivalent_rewrite",
        "The concerns are joined in another order (a set of reasons either way).",
        (_rego("decision",
               "\t\tbaseline.reasons, recovery.reasons, access.reasons, containment.reasons,\n"
               "\t\tinfo.reasons, nhi.reasons, consent.reasons, agents.reasons, risk.reasons,\n",
               "\t\trisk.reasons, agents.reasons, consent.reasons, nhi.reasons, info.reasons,\n"
               "\t\tcontainment.reasons, access.reasons, recovery.reasons, baseline.reasons,\n"),),
        changes_decisions=False,
    ),
    Mutant(
        "common-privileged-target-operands-swapped", "equivalent_rewrite",
        "privileged_target: tier >= privileged_tier written as privileged_tier <= tier.",
        (_rego("common", "\tinput.target.privilege_tier >= cfg.privileged_tier\n",
               "\tcfg.privileged_tier <= input.target.privilege_tier\n"),),
        changes_decisions=False,
    ),
    Mutant(
        "levels-raise-sum-commuted", "equivalent_rewrite",
        "raise(base, n): base + n written as n + base.",
        (_rego("levels", 'raise(base, n) := names[base + n] if {\n\tbase + n < 3\n}',
               'raise(base, n) := names[n + base] if {\n\tn + base < 3\n}'),),
        changes_decisions=False,
    ),
    Mutant(
        "consent-tenant-wide-key-as-two-rules", "equivalent_rewrite",
        "tenant_wide_key: the else chain written as two complementary rules.",
        (_rego("consent",
               'tenant_wide_key := "oauth_consent_tenant_wide.unknown" if {\n'
               "\tinput.request.consent_tenant_wide == null\n"
               '} else := "oauth_consent_tenant_wide"\n',
               'tenant_wide_key := "oauth_consent_tenant_wide.unknown" if {\n'
               "\tinput.request.consent_tenant_wide == null\n"
               "}\n\n"
               'tenant_wide_key := "oauth_consent_tenant_wide" if {\n'
               "\tinput.request.consent_tenant_wide != null\n"
               "}\n"),),
        changes_decisions=False,
    ),
)

#: Every mutant, grouped by kind.
MUTANTS: tuple[Mutant, ...] = (
    *_THRESHOLDS, *_COMPARISON_FLIPS, *_RULE_FAMILIES, *_REASONS_ADDED, *_RULES_REMOVED, *_ELSE_CHAINS,
    *_DEFAULTS, *_CONDITIONS, *_STRING_LITERALS, *_HELPERS, *_REWRITES,
)

_names = [m.name for m in MUTANTS]
if len(_names) != len(set(_names)):
    raise ValueError(f"mutant names must be unique: {sorted(n for n in _names if _names.count(n) > 1)}")
