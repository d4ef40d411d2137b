#!/usr/bin/env bash
# The whole test suite, in the order that fails fastest. Called by `make test` after
# `make deps collection`; each stage runs even if an earlier one failed, and the script
# exits non-zero if any stage failed.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT" || exit 1
failed=()
stage() {
  local name=$1; shift
  local t0=$SECONDS
  echo "=== $name"
  if "$@"; then
    echo "=== $name: passed in $((SECONDS - t0))s"
  else
    echo "=== $name: FAILED in $((SECONDS - t0))s"
    failed+=("$name")
  fi
}
stage sanity make --no-print-directory sanity
stage changelog make --no-print-directory changelog-lint
stage lint make --no-print-directory lint
stage units make --no-print-directory units
stage integration make --no-print-directory integration
if ((${#failed[@]})); then
  echo "FAILED stages: ${failed[*]}"
  exit 1
fi
echo "all stages passed"
