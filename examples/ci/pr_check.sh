#!/usr/bin/env bash
# Score only the masks a pull request changed, consistently with main's full run, and gate.
#
#   examples/ci/pr_check.sh MASKS PREDICTIONS BASE_REF BASELINE_RANKING [FAIL_UNDER]
#
# BASELINE_RANKING is main's `segaudit score MASKS PREDICTIONS --method softmin,clc -o main.csv`
# (with main.run.json beside it). Run from the repository root. Writes pr-ranking.csv and
# pr-summary.md; exits 0 (all gates pass), 1 (a changed image is under the gate: the
# images are named on stderr) or 2 (bad input).
set -euo pipefail
masks=$1 predictions=$2 base_ref=$3 baseline=$4 fail_under=${5:-0.5}

git diff --name-only --diff-filter=ACMRD "$base_ref"...HEAD -- "$masks" \
  | segaudit score "$masks" "$predictions" --only - --baseline "$baseline" \
      --method softmin,clc --fail-under "$fail_under" \
      -o pr-ranking.csv --summary-md pr-summary.md
