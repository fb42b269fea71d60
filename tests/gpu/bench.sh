#!/usr/bin/env bash
# The GPU check, prepared so that a lent accelerator is used in one or two calls: build (or
# take a prebuilt binary), then flm's wgpu benchmarks against eager PyTorch CUDA on the same
# model and step (bench/compare.sh, alternating A B A B), at presets tiny/small/base and
# batch 16/64, plus V = 8192. Results go to $OUT (or ./gpu-results): machine.txt,
# kernels.json, one log per setting and table.md, the table of all settings.
#
#   OUT=/some/dir bash tests/gpu/bench.sh           # on the GPU machine
#   SMOKE=1 bash tests/gpu/bench.sh                 # here, on lavapipe: one small setting
#
# Environment:
#   FLM=path        use this binary instead of building (e.g. a stripped release build carried
#                   to the device machine in an ignored folder)
#   BUDGET_S=N      start no new setting after N seconds (default 480, under a 600 s call)
#   SETTINGS="…"    override the settings: "PRESET VOCAB BATCH" triples, comma-separated
#   SMOKE=1         the lavapipe smoke run: V = 1024 kernels, setting "tiny 1024 4", 1 round of
#                   1 timed step and 1 sampling batch
# PyTorch runs on CUDA where it finds it, else on the CPU.
# If ./.gl holds Vulkan loader .debs (see the device notes), they are unpacked first.
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-gpu-results}
BUDGET_S=${BUDGET_S:-480}
mkdir -p "$OUT"
start=$SECONDS

if compgen -G ".gl/*.deb" > /dev/null; then
    for f in .gl/*.deb; do dpkg -x "$f" /; done
    ldconfig
fi
has_cuda=$(python3 -c "import torch; print(int(torch.cuda.is_available()))" 2>/dev/null || echo 0)
{
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 || true
    python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" 2>&1
    nproc
} > "$OUT/machine.txt"

if [ -z "${FLM:-}" ]; then
    if ! cargo build --release > "$OUT/build.log" 2>&1; then
        echo "build failed, see build.log" | tee "$OUT/table.md"
        exit 1
    fi
    FLM=${CARGO_TARGET_DIR:-target}/release/flm
fi
export FLM
kernel_flags=()
[ "${SMOKE:-0}" = 1 ] && kernel_flags=(--vocab 1024 --runs 1)
"$FLM" bench kernels "${kernel_flags[@]}" --json > "$OUT/kernels.json" 2> "$OUT/kernels.err"
adapter=$(grep -m1 -io 'device: .*' "$OUT/kernels.err" || echo "device: wgpu")

if [ "${SMOKE:-0}" = 1 ]; then
    SETTINGS=${SETTINGS:-"tiny 1024 4"}
    ROUNDS=1
    export TRAIN_STEPS=1 SAMPLE_RUNS=1 MANY_STEPS=2
else
    SETTINGS=${SETTINGS:-"tiny 1024 16,tiny 1024 64,small 1024 16,small 1024 64,base 1024 16,base 1024 64,tiny 8192 16"}
    ROUNDS=${ROUNDS:-3}
fi
export FLM_DEVICE=gpu
export TORCH_DEVICE=$([ "$has_cuda" = 1 ] && echo cuda || echo cpu)

table="$OUT/table.md"
{
    echo "flm --device gpu ($adapter) vs PyTorch eager on $TORCH_DEVICE; L = 128; medians of $ROUNDS alternated rounds (bench/compare.sh)"
    echo
    echo "| preset | V | batch | flm ms/step | torch ms/step | flm tokens/s | torch tokens/s | train flm/torch | 1 call flm / torch ms | ${MANY_STEPS:-32} calls flm / torch ms per call |"
    echo "|---|---|---|---|---|---|---|---|---|---|"
} > "$table"
IFS=',' read -ra settings <<< "$SETTINGS"
for setting in "${settings[@]}"; do
    read -r preset vocab batch <<< "$setting"
    if (( SECONDS - start > BUDGET_S )); then
        echo "| $preset | $vocab | $batch | not run: the ${BUDGET_S} s budget was spent |||||||" >> "$table"
        continue
    fi
    log="$OUT/compare-$preset-V$vocab-B$batch.log"
    timeout 300 bash bench/compare.sh cpu "$preset" "$vocab" "$batch" "$ROUNDS" > "$log" 2>&1
    result=$(grep '^RESULT' "$log" | tail -1)
    if [ -z "$result" ]; then
        echo "| $preset | $vocab | $batch | failed or timed out: $(basename "$log") |||||||" >> "$table"
        continue
    fi
    read -r _ p v b tf tt cf ct c32f c32t <<< "$result"
    awk -v p="$p" -v v="$v" -v b="$b" -v tf="$tf" -v tt="$tt" -v cf="$cf" -v ct="$ct" \
        -v c32f="$c32f" -v c32t="$c32t" 'BEGIN {
        tokens = b * 128
        printf "| %s | %s | %s | %.1f | %.1f | %.0f | %.0f | %.2f | %.1f / %.1f | %.1f / %.1f |\n",
            p, v, b, 1000 * tokens / tf, 1000 * tokens / tt, tf, tt, tf / tt, cf, ct, c32f, c32t
    }' >> "$table"
done
echo >> "$table"
echo "$(( SECONDS - start )) s in all" >> "$table"
cat "$table"
