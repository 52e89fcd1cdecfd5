#!/usr/bin/env bash
# check-pr.sh: the checks a pull request of a Derive project runs in CI (docs/ci.md).
#
#   1. `derive validate`: every spec; any error fails the check (exit 1), naming the file and field.
#   2. The specs the PR changed against its base branch, by code version (`python -m derive_assets.pr_check
#      changed`): a spec whose file changed but whose code version did not (a description, a check, a comment)
#      writes the same rows and is not built.
#   3. `derive build --env pr_<n> <changed> --last $DERIVE_PR_WINDOWS`: the changed tables (and the changed tables
#      they read) into the PR's own shadow datasets, over their last windows, reading unchanged upstreams from
#      production and never writing production. The build runs every table's checks; a failed run or a failed
#      blocking check fails the check (exit 3).
#   4. `derive diff <table> --env pr_<n>` for each changed table: printed for review; differences are the point of
#      a PR, not a failure (only a diff that cannot run fails, exit 4).
#
# Run from anywhere inside the project's git clone. Environment variables (all optional):
#   DERIVE_PR_BASE     the base revision (default: origin/$GITHUB_BASE_REF on GitHub, origin/
#                      $CI_MERGE_REQUEST_TARGET_BRANCH_NAME on GitLab, else origin/main); must be fetched
#   DERIVE_PR_ENV      the environment to build into (default: pr_<PR number>, else pr_<branch>; see
#                      derive_assets/pr_check.py `pr_env_name`); DERIVE_PR_NUMBER gives the number
#   DERIVE_PR_WINDOWS  how many recent windows of each changed table to build (default 3)
#   DERIVE_PR_DROP     1: drop the PR environment when the check ends (default 0: keep it for review; clean up
#                      with `derive env drop --older-than 14d --yes` on a schedule)
#   DERIVE_PR_SUMMARY  a file to append a Markdown summary to (default: $GITHUB_STEP_SUMMARY when set)
#   DERIVE_BIN         the derive command (default: derive on PATH, else .venv/bin/derive of the clone)
#   DERIVE_PYTHON      the Python that has derive_assets (default: the python beside DERIVE_BIN)
#   DERIVE_SPECS_DIR   the specs (default: table_specs/ of the clone)
# and every setting `derive` itself reads (DERIVE_SPECS_DIR, DERIVE_WAREHOUSE, DERIVE_BIGQUERY_PROJECT, ...).
#
# Exit codes: 0 passed; 1 spec validation errors; 2 setup (git, base revision, environment name, derive missing);
# 3 the build failed or a blocking check failed; 4 a diff could not run.
set -euo pipefail

top="$(git rev-parse --show-toplevel 2>/dev/null)" || {
  echo "check-pr: not inside a git clone; run it from the project's repository" >&2
  exit 2
}

if [[ -n "${DERIVE_BIN:-}" ]]; then
  derive="$DERIVE_BIN"
elif command -v derive >/dev/null 2>&1; then
  derive="$(command -v derive)"
elif [[ -x "$top/.venv/bin/derive" ]]; then
  derive="$top/.venv/bin/derive"
else
  echo "check-pr: no derive command: install the project (pip install -e .) or set DERIVE_BIN" >&2
  exit 2
fi
python="${DERIVE_PYTHON:-$(dirname "$derive")/python}"
export DERIVE_SPECS_DIR="${DERIVE_SPECS_DIR:-$top/table_specs}"
[[ -x "$python" ]] || python="$(command -v python3)"

if [[ -n "${DERIVE_PR_BASE:-}" ]]; then
  base="$DERIVE_PR_BASE"
elif [[ -n "${GITHUB_BASE_REF:-}" ]]; then
  base="origin/$GITHUB_BASE_REF"
elif [[ -n "${CI_MERGE_REQUEST_TARGET_BRANCH_NAME:-}" ]]; then
  base="origin/$CI_MERGE_REQUEST_TARGET_BRANCH_NAME"
else
  base="origin/main"
fi
windows="${DERIVE_PR_WINDOWS:-3}"
if ! [[ "$windows" =~ ^[1-9][0-9]*$ ]]; then
  echo "check-pr: DERIVE_PR_WINDOWS='$windows' is not a positive whole number (e.g. 3)" >&2
  exit 2
fi
summary_file="${DERIVE_PR_SUMMARY:-${GITHUB_STEP_SUMMARY:-}}"
work="$(mktemp -d "${TMPDIR:-/tmp}/derive-check-pr.XXXXXX")"
trap 'rm -rf "$work"' EXIT

summary() { # a line of the Markdown summary (and nothing when no summary file is asked for)
  if [[ -n "$summary_file" ]]; then printf '%s\n' "$@" >>"$summary_file"; fi
}

echo "== derive validate"
if ! "$derive" validate; then
  echo "check-pr: FAILED: the specs have errors (listed above, each with its file and field)" >&2
  summary "### Derive: spec validation failed" "See the job log: every error names its file and field."
  exit 1
fi

echo "== specs changed against $base (by code version)"
rc=0
"$python" -m derive_assets.pr_check changed --base "$base" >"$work/changed" || rc=$?
if [[ $rc -ne 0 ]]; then
  echo "check-pr: FAILED: could not compare the specs with $base (above)" >&2
  exit "$([[ $rc -eq 1 ]] && echo 1 || echo 2)"
fi
mapfile -t changed <"$work/changed"
if [[ ${#changed[@]} -eq 0 ]]; then
  echo "check-pr: passed: no spec changes what a table writes; nothing to build"
  summary "### Derive: specs valid, no table to build"
  exit 0
fi

env_name="$("$python" -m derive_assets.pr_check env-name)" || exit 2
echo "== derive build --env $env_name (${#changed[@]} changed asset(s), last $windows window(s))"
if ! "$derive" build --help >/dev/null 2>&1; then
  echo "check-pr: this derive has no \`build\` command; update Derive to a version with `derive build --env`" >&2
  exit 2
fi
drop_env() {
  if [[ "${DERIVE_PR_DROP:-0}" == "1" ]]; then
    echo "== derive env drop $env_name"
    "$derive" env drop "$env_name" --yes || echo "check-pr: could not drop environment $env_name" >&2
  fi
}
trap 'drop_env; rm -rf "$work"' EXIT
summary "### Derive: environment \`$env_name\`" "" "Changed: ${changed[*]}"
if ! "$derive" build "${changed[@]}" --env "$env_name" --last "$windows"; then
  echo "check-pr: FAILED: the build into $env_name failed or a blocking check failed (above)" >&2
  summary "" "**Build failed** (a failed run or a failed blocking check; see the job log)."
  exit 3
fi

failed_diffs=()
for key in "${changed[@]}"; do
  table="${key/\//.}"
  echo "== derive diff $table --env $env_name"
  rc=0
  "$derive" diff "$table" --env "$env_name" | tee "$work/diff" || rc=$?
  case $rc in
    0) summary "- \`$table\`: same as production" ;;
    1) summary "- \`$table\`: differs from production" '```' "$(cat "$work/diff")" '```' ;;
    *) failed_diffs+=("$table") ;;
  esac
done
if [[ ${#failed_diffs[@]} -gt 0 ]]; then
  echo "check-pr: FAILED: the diff of ${failed_diffs[*]} could not run (above)" >&2
  summary "" "**Diff failed** for ${failed_diffs[*]}."
  exit 4
fi
echo "check-pr: passed: ${#changed[@]} changed asset(s) built into $env_name, their checks passed"
