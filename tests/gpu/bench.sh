#!/usr/bin/env bash
# The GPU check, prepared so that a lent accelerator is used in one call: build, then flm's
# wgpu benchmarks against eager PyTorch CUDA on the same model and step (bench/compare.sh,
# alternating A B A B), for the tiny and small presets at V = 1024 and 8192. Results go to
# $OUT (or ./gpu-results): one log per setting and a summary.
#
#   OUT=/some/dir bash tests/gpu/bench.sh
set -uo pipefail
cd "$(dirname "$0")/../.."
OUT=${OUT:-gpu-results}
mkdir -p "$OUT"
{
    nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv 2>&1 || true
    python3 -c "import torch; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" 2>&1
} > "$OUT/machine.txt"
if ! cargo build --release > "$OUT/build.log" 2>&1; then
    echo "build failed, see build.log" | tee "$OUT/summary.txt"
    exit 1
fi
export FLM=${CARGO_TARGET_DIR:-target}/release/flm
"$FLM" bench kernels --json > "$OUT/kernels.json" 2> "$OUT/kernels.err"
for setting in "tiny 1024 16" "tiny 8192 16" "small 8192 32"; do
    set -- $setting
    log="$OUT/compare-$1-V$2-B$3.log"
    timeout 240 bash bench/compare.sh cuda "$1" "$2" "$3" 3 > "$log" 2>&1
    { echo "== $1 V=$2 B=$3"; tail -4 "$log"; } >> "$OUT/summary.txt"
done
cat "$OUT/summary.txt"
