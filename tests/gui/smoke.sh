#!/usr/bin/env bash
# The whole loop in the real window, by mouse (and a typed path in the file dialog):
# pick a text file → train an FLM → distill an FMLM → generate (FLM 32 steps beside its FMLM
# in 1) → scrub → export. Screenshots of each step, frame times while training and while
# scrubbing, and checks on the files the app wrote.
#
#   bash tests/gui/smoke.sh [OUT_DIR] [TEXT_FILE]
#
# Needs a release build (cargo build --release) and, on Debian/Ubuntu, installs Xvfb, xdotool,
# ImageMagick and zenity when missing. Takes about 3½ minutes (two one-minute runs).

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

OUT=$(realpath -m "${1:-$(mktemp -d /tmp/flm-gui-smoke.XXXX)}")
TEXT=$(realpath "${2:-$ROOT/tests/fixtures/tiny_sonnets.txt}")
RUNS=$OUT/runs
mkdir -p "$OUT"
need_packages
[ -x "$FLM" ] || { echo "build first: cargo build --release" >&2; exit 1; }
stem=$(basename "$TEXT" .txt)

start_app "$OUT" "$RUNS"
shot "$OUT/01-data-start.png"

# 1. Data: the file dialog, then the analysis.
click 294 92 0
choose_file "$TEXT"
sleep 6
shot "$OUT/02-data-file.png"

# 2. Train: one minute, then Start.
tab_train
set_value 262 183 1
click 62 206 10
t0=$(now); sleep 30; t1=$(now)
shot "$OUT/03-training.png"
wait_file "$RUNS/$stem-flm/checkpoint/state.json" 120
sleep 4
shot "$OUT/04-trained.png"

# 3. Distill the new FLM (pre-selected as teacher) for one minute.
set_value 250 547 1
click 70 593 0
sleep 40
shot "$OUT/05-distilling.png"
wait_file "$RUNS/$stem-flm-fmlm/checkpoint/state.json" 120
sleep 4
shot "$OUT/06-distilled.png"

# 4. Sample: the FLM in 32 steps beside its FMLM in 1 step, from the same noise.
tab_sample
click 50 113 0
sleep 15
shot "$OUT/07-sample-end.png"
# Scrub: drag the slider knob from the last step to the first, then play with Space.
defocus
s0=$(now); drag_x 786 145 -680 0; s1=$(now)
shot "$OUT/08-sample-start.png"
defocus
xdotool key space
sleep 1.2
shot "$OUT/09-sample-playing.png"
sleep 3

# 5. Checkpoints: select the FLM, export it through the folder dialog.
tab_checkpoints
click 40 91
shot "$OUT/10-checkpoints.png"
mkdir -p "$OUT/exported"
click 780 92 0
choose_folder "$OUT/exported"
sleep 3
shot "$OUT/11-exported.png"
quit_app

echo "--- checks"
for file in config.json tokenizer.json model.safetensors; do
    [ -s "$OUT/exported/$file" ] || { echo "export is missing $file" >&2; exit 1; }
done
"$FLM" sample --ckpt "$OUT/exported" --steps 4 --n 1 --device cpu >/dev/null
echo "exported model samples: ok"
frame_report "$OUT/frames.log" "$t0" "$t1" "training, Train view shown"
frame_report "$OUT/frames.log" "$s0" "$s1" "scrubbing 32 steps"
echo "all screenshots in $OUT"
