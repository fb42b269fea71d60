#!/usr/bin/env bash
# Screenshots of every view with trained models, and frame times while a 256-step,
# 128-token trajectory plays and is scrubbed. Expects a runs folder holding
#   austen-flm, austen-fmlm (L = 128, trained on austen_train.txt)
#   repeat-flm, repeat-fmlm (builtin:repeat)
# e.g. made with `flm train` / `flm distill` (see the README), and the Austen training text
# for the Data and Train screenshots (any large text file works; the README's are Austen's).
#
#   bash tests/gui/screenshots.sh RUNS_DIR OUT_DIR AUSTEN_TRAIN_TXT

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
RUNS=$(realpath "$1")
OUT=$(realpath -m "$2")
CORPUS=$(realpath "${3:?the third argument is the text file for the Data and Train views}")
mkdir -p "$OUT"
need_packages
DISPLAY_NUMBER=96
start_app "$OUT" "$RUNS"


# --- Sample: the Austen FLM in 256 steps beside its FMLM in 1 step.
tab_sample
click 150 44; click 133 "$(model_row 0)"            # model: austen-flm
set_value 356 44 256                            # steps
click 15 67                                     # compare with …
click 215 67; click 200 "$(( $(model_row 1) + 23 ))" # … austen-fmlm
click 50 113 0                                   # Generate
sleep 60
defocus
shot "$OUT/sample-austen-final.png"
# Playback at the default 12 steps/s: 21 s of animation; frame times over 10 s of it.
click 70 145 1
p0=$(now); sleep 10; p1=$(now)
click 70 145 0.5                                # pause
# Scrub: drag the knob over all 256 steps and back, as fast as events come.
click 22 145                                    # first step
s0=$(now); drag_x 112 145 680 0; drag_x 786 145 -680 0; s1=$(now)
# A step in the middle of the denoising, with the candidates of one token.
drag_x 112 145 300
xdotool mousemove 200 197; sleep 1.5
shot "$OUT/sample-austen-midway.png"

# --- Sample: builtin:repeat, FLM 32 steps beside its FMLM in 1 step.
COMPARE_TICKED=1 compare_shot "$OUT/sample-repeat-midway.png" 2 3

# --- Checkpoints: the Austen FLM's settings and curves.
tab_checkpoints
click 40 91
shot "$OUT/checkpoints.png"

# --- Data: the Austen corpus.
tab_data
click 294 92 0
choose_file "$CORPUS"
sleep 25
xdotool mousemove 1200 700; sleep 0.5               # no tooltip over the source
shot "$OUT/data-austen.png"

# --- Train: a live run on it (tiny model), curves after 80 s.
tab_train
set_value 262 183 2
click 62 206 20
t0=$(now); sleep 60; t1=$(now)
shot "$OUT/train-austen.png"
quit_app

frame_report "$OUT/frames.log" "$p0" "$p1" "playback, 256 steps × 128 tokens"
frame_report "$OUT/frames.log" "$s0" "$s1" "scrubbing, 256 steps × 128 tokens"
frame_report "$OUT/frames.log" "$t0" "$t1" "training on Austen, Train view shown"
