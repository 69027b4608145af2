"""CI tooling for policy changes: what ``helpdesk-policy test`` and ``diff`` run.

* :mod:`~helpdesk_policy.ci.suites` — expectation suites: named requests and
  what their decision must say (:mod:`helpdesk_policy.expectations`);
* :mod:`~helpdesk_policy.ci.regotest` — the Rego unit-test runner (regopy and
  OPA's Go evaluator);
* :mod:`~helpdesk_policy.ci.conformance` — do two engines decide alike:
  rego/native parity and OPA conformance;
* :mod:`~helpdesk_policy.ci.runner` — ``helpdesk-policy test``: all of the
  above for one policy directory;
* :mod:`~helpdesk_policy.ci.diff` — ``helpdesk-policy diff``: what a policy
  change makes looser or stricter;
* :mod:`~helpdesk_policy.ci.generate` — reproducible generated requests.

This package sits above the facade: it may use the whole library, while
nothing below it (the core, the engines, the chain, the facade, rendering,
the user-facing test API) imports it. Its commands live in
:mod:`helpdesk_policy.cli.ci`.
"""
