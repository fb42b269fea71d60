#!/usr/bin/env bash
# Screenshots of an infilled sample and of the simplex view, and frame times while scrubbing
# with the simplex view shown (issue 18: p95 ≤ 16 ms). Expects a runs folder whose first run
# (by name) is a text FLM, e.g. one trained on austen_train.txt:
#
#   bash tests/gui/prompt_simplex.sh RUNS_DIR OUT_DIR ["TEMPLATE"]
#
# The template uses the Prompt field's syntax (each ___ is one generated token).

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
RUNS=$(realpath "$1")
OUT=$(realpath -m "$2")
TEMPLATE=${3:-"It is a truth ___ ___ ___ ___, that a single man in possession of a good fortune, must be in want of a ___ ___ ___"}
mkdir -p "$OUT"
need_packages
DISPLAY_NUMBER=93
start_app "$OUT" "$RUNS"

tab_sample
click 150 44; click 133 71                      # model: the first run
set_value 356 44 64                             # steps
click 270 90 0.3                                # Prompt field
printf %s "$TEMPLATE" | xclip -selection clipboard
xdotool key ctrl+v; sleep 0.3
defocus
click 50 113 0                                  # Generate
sleep 45
defocus
shot "$OUT/sample-infill.png"

# Scrub without the simplex view, then with it, in the same run (alternating would need
# the view closed again): all 64 steps and back, as fast as events come.
click 22 145
a0=$(now); drag_x 112 145 680 0; drag_x 786 145 -680 0; a1=$(now)
# The simplex view of a generated position: the first blank after the fixed opening.
click 22 145                                    # first step
drag_x 112 145 200
click "${SIMPLEX_X:-262}" 196 1                 # a token: its simplex path
click 22 145
b0=$(now); drag_x 112 145 680 0; drag_x 786 145 -680 0; b1=$(now)
drag_x 112 145 200
for _ in 1 2 3 4 5; do xdotool mousemove 640 700 click 5; sleep 0.2; done   # scroll down
sleep 1
shot "$OUT/sample-simplex.png"
quit_app
frame_report "$OUT/frames.log" "$a0" "$a1" "scrubbing 64 steps, no simplex view"
frame_report "$OUT/frames.log" "$b0" "$b1" "scrubbing 64 steps, simplex view shown"
