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
# command, FETCH=0 to skip `git fetch`.
#
# Exit status: 0 all good; 1 a test failed or a decision got looser;
# 2 bad arguments or cases; 3 the Rego engine is not installed.
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
  HP=("$venv/bin/helpdesk-policy")
fi

# Make sure the base ref is current when it is a remote branch.
if [[ "${FETCH:-1}" == "1" && "$BASE_REF" == origin/* ]]; then
  git fetch --no-tags --quiet origin "${BASE_REF#origin/}" || echo "warning: could not fetch $BASE_REF" >&2
fi

echo "== helpdesk-policy test $POLICY_DIR"
test_rc=0
"${HP[@]}" test "$POLICY_DIR" || test_rc=$?

echo "== helpdesk-policy diff git:$BASE_REF -> $POLICY_DIR (report: $REPORT)"
allow=()
if [[ "${ALLOW_LOOSENING:-0}" == "1" ]]; then allow=(--allow-loosening); fi
cases=()
if [[ -d "$POLICY_DIR/tests" ]]; then cases=(--cases "$POLICY_DIR/tests"); fi
diff_rc=0
"${HP[@]}" diff --base "git:$BASE_REF" --head "$POLICY_DIR" ${cases[@]+"${cases[@]}"} \
  --generate "$GENERATE" --seed "$SEED" --format markdown ${allow[@]+"${allow[@]}"} > "$REPORT" || diff_rc=$?
cat "$REPORT"

if [[ $test_rc -ne 0 ]]; then
  echo "FAILED: helpdesk-policy test exited $test_rc" >&2
  exit "$test_rc"
fi
if [[ $diff_rc -eq 1 ]]; then
  echo "FAILED: decisions became looser (or the new policy cannot decide some); review $REPORT," >&2
  echo "        then re-run with ALLOW_LOOSENING=1 if the loosening is intended." >&2
fi
exit "$diff_rc"
