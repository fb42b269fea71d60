#!/usr/bin/env bash
# flm against eager PyTorch on the same model and step, alternating A B A B A B so that a
# shared machine's drift hits both alike; prints each run and the ratio of the medians.
#
#   bash bench/compare.sh [cpu|cuda] [PRESET] [VOCAB] [BATCH] [ROUNDS]
#
# FLM_DEVICE=cpu|gpu and TORCH_DEVICE=cpu|cuda override the pairing that the first argument
# picks (a lavapipe smoke run pairs flm's gpu with PyTorch's cpu). TRAIN_STEPS (default 5) and
# SAMPLE_RUNS (default 2) set the timed steps and sampling batches of each run, MANY_STEPS
# (default 32) the step count of the many-call sampling run. The last line, `RESULT …`,
# is for scripts (tests/gpu/bench.sh builds its table from it).
#
# Needs a release build (`cargo build --release`) and `pip install torch numpy`. CPU runs pin
# PyTorch to the machine's cores (torch.set_num_threads), as flm's thread pool uses them all.
# Run it on an idle machine: PyTorch's OpenMP threads slow down sharply beside another busy
# process.
set -euo pipefail
cd "$(dirname "$0")/.."
DEVICE=${1:-cpu}
PRESET=${2:-tiny}
VOCAB=${3:-1024}
BATCH=${4:-16}
ROUNDS=${5:-3}
TRAIN_STEPS=${TRAIN_STEPS:-5}
SAMPLE_RUNS=${SAMPLE_RUNS:-2}
MANY_STEPS=${MANY_STEPS:-32}
FLM=${FLM:-${CARGO_TARGET_DIR:-target}/release/flm}
[ -x "$FLM" ] || { echo "build first: cargo build --release (or set FLM=path/to/flm)" >&2; exit 1; }
THREADS=$(nproc)
FLM_DEVICE=${FLM_DEVICE:-$([ "$DEVICE" = cuda ] && echo gpu || echo cpu)}
TORCH_DEVICE=${TORCH_DEVICE:-$DEVICE}
shape=(--preset "$PRESET" --vocab "$VOCAB" --batch "$BATCH" --seq-len 128)

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
field() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

train_flm=() train_torch=() call_flm=() call_torch=() call32_flm=() call32_torch=()
for round in $(seq "$ROUNDS"); do
    f=$("$FLM" bench train "${shape[@]}" --steps "$TRAIN_STEPS" --device "$FLM_DEVICE" --json 2>/dev/null)
    t=$(python3 bench/torch_reference.py train "${shape[@]}" --steps "$TRAIN_STEPS" --threads "$THREADS" --device "$TORCH_DEVICE" --json)
    train_flm+=("$(echo "$f" | field 'd["train"]["tokens_per_sec"]')")
    train_torch+=("$(echo "$t" | field 'd["tokens_per_sec"]')")
    f=$("$FLM" bench sample "${shape[@]}" --steps "1,$MANY_STEPS" --runs "$SAMPLE_RUNS" --device "$FLM_DEVICE" --json 2>/dev/null)
    t1=$(python3 bench/torch_reference.py sample "${shape[@]}" --steps 1 --runs "$SAMPLE_RUNS" --threads "$THREADS" --device "$TORCH_DEVICE" --json)
    t32=$(python3 bench/torch_reference.py sample "${shape[@]}" --steps "$MANY_STEPS" --runs "$SAMPLE_RUNS" --threads "$THREADS" --device "$TORCH_DEVICE" --json)
    call_flm+=("$(echo "$f" | field 'd["sample"][0]["ms_per_call"]')")
    call32_flm+=("$(echo "$f" | field 'd["sample"][1]["ms_per_call"]')")
    call_torch+=("$(echo "$t1" | field 'd["ms_per_call"]')")
    call32_torch+=("$(echo "$t32" | field 'd["ms_per_call"]')")
    echo "round $round: train tokens/s flm ${train_flm[-1]} torch ${train_torch[-1]};" \
        "ms/call (1 step) flm ${call_flm[-1]} torch ${call_torch[-1]};" \
        "ms/call ($MANY_STEPS steps) flm ${call32_flm[-1]} torch ${call32_torch[-1]}"
done
m() { printf '%s\n' "$@" | median; }
tf=$(m "${train_flm[@]}"); tt=$(m "${train_torch[@]}")
cf=$(m "${call_flm[@]}"); ct=$(m "${call_torch[@]}")
c32f=$(m "${call32_flm[@]}"); c32t=$(m "${call32_torch[@]}")
echo "medians ($PRESET, V=$VOCAB, B=$BATCH, L=128, flm $FLM_DEVICE vs torch $TORCH_DEVICE, $ROUNDS rounds):"
awk -v a="$tf" -v b="$tt" 'BEGIN {printf "  training: flm %.0f tokens/s, torch %.0f tokens/s, flm/torch %.2f\n", a, b, a/b}'
awk -v a="$cf" -v b="$ct" 'BEGIN {printf "  sampling, 1 call: flm %.1f ms, torch %.1f ms, speed flm/torch %.2f\n", a, b, b/a}'
awk -v n="$MANY_STEPS" -v a="$c32f" -v b="$c32t" 'BEGIN {printf "  sampling, %d calls: flm %.1f ms/call, torch %.1f ms/call, speed flm/torch %.2f\n", n, a, b, b/a}'
echo "RESULT $PRESET $VOCAB $BATCH $tf $tt $cf $ct $c32f $c32t"
