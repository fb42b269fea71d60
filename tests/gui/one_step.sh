#!/usr/bin/env bash
# The README's one-step screenshot: a built-in task's FLM in 32 Euler steps beside its
# distilled FMLM in one step, from the same noise. Expects a runs folder holding exactly the
# two, the FLM first by name (e.g. repeat-flm, repeat-fmlm from `flm train --data
# builtin:repeat` and `flm distill`):
#
#   bash tests/gui/one_step.sh RUNS_DIR OUT_DIR [SEED]

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
RUNS=$(realpath "$1")
OUT=$(realpath -m "$2")
mkdir -p "$OUT"
need_packages
start_app "$OUT" "$RUNS"
tab_sample
compare_shot "$OUT/sample-repeat-midway.png" 0 1 "${3:-0}"
quit_app
