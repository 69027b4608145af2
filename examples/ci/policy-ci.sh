#!/usr/bin/env bash
# Test a policy change and report what it does to decisions, without GitHub.
#
#   examples/ci/policy-ci.sh [BASE_REF] [POLICY_DIR]
#
# BASE_REF    git ref holding the policies to compare with (default origin/main)
# POLICY_DIR  the policy directory in the working tree (default policies)
#
# Environment: GENERATE (500) and SEED (1) for the generated requests,
# REPORT (policy-diff.md) for the Markdown report, ALLOW_LOOSENING=1 after a
# reviewer accepted a loosening, HELPDESK_POLICY (helpdesk-policy) for the
# command, FETCH=0 to skip `git fetch`, REQUIRE_OPA=1 to fail when OPA's Go
# evaluator (the OPA conformance check) is not installed instead of skipping it.
#
# Exit status: 0 all good; 1 a test failed, a decision got looser, or OPA
# reads the policies differently; 2 bad arguments or cases; 3 the Rego engine
# (or, with REQUIRE_OPA=1, OPA's Go evaluator) is not installed.
set -euo pipefail

BASE_REF="${1:-origin/main}"
POLICY_DIR="${2:-policies}"
GENERATE="${GENERATE:-500}"
SEED="${SEED:-1}"
REPORT="${REPORT:-policy-diff.md}"
read -r -a HP <<< "${HELPDESK_POLICY:-helpdesk-policy}"

if ! command -v "${HP[0]}" >/dev/null 2>&1; then
  # Not installed: use a private virtualenv next to the report.
  venv=".policy-ci-venv"
  python3 -m venv "$venv"
  "$venv/bin/python" -m pip install --quiet "helpdesk-policy[rego]"
  # OPA's Go evaluator for the conformance check; its wheel declares Python >= 3.14
  # but works on 3.10+ (x86_64 Linux only: elsewhere the check is skipped, visibly).
  "$venv/bin/python" -m pip install --quiet --ignore-requires-python --no-deps \
    opa-golib-python-bindings==0.4.4 || echo "warning: OPA's Go evaluator not installed" >&2
  HP=("$venv/bin/helpdesk-policy")
fi
opa=()
if [[ "${REQUIRE_OPA:-0}" == "1" ]]; then opa=(--require-opa); fi

# Make sure the base ref is current when it is a remote branch.
if [[ "${FETCH:-1}" == "1" && "$BASE_REF" == origin/* ]]; then
  git fetch --no-tags --quiet origin "${BASE_REF#origin/}" || echo "warning: could not fetch $BASE_REF" >&2
fi

echo "== helpdesk-policy test $POLICY_DIR"
test_rc=0
"${HP[@]}" test "$POLICY_DIR" ${opa[@]+"${opa[@]}"} || test_rc=$?

echo "== helpdesk-policy diff git:$BASE_REF -> $POLICY_DIR (report: $REPORT)"
allow=()
if [[ "${ALLOW_LOOSENING:-0}" == "1" ]]; then allow=(--allow-loosening); fi
cases=()
if [[ -d "$POLICY_DIR/tests" ]]; then cases=(--cases "$POLICY_DIR/tests"); fi
diff_rc=0
"${HP[@]}" diff --base "git:$BASE_REF" --head "$POLICY_DIR" ${cases[@]+"${cases[@]}"} \
  --generate "$GENERATE" --seed "$SEED" --format markdown ${opa[@]+"${opa[@]}"} ${allow[@]+"${allow[@]}"} \
  > "$REPORT" || diff_rc=$?
cat "$REPORT"

if [[ $test_rc -ne 0 ]]; then
  echo "FAILED: helpdesk-policy test exited $test_rc" >&2
  exit "$test_rc"
fi
if [[ $diff_rc -eq 1 ]]; then
  echo "FAILED: decisions became looser (or the new policy cannot decide some, or OPA reads it" >&2
  echo "        differently from the embedded engine); review $REPORT," >&2
  echo "        then re-run with ALLOW_LOOSENING=1 if the loosening is intended." >&2
fi
exit "$diff_rc"
