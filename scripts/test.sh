#!/usr/bin/env bash
# The README's test command. Installs what the tests need on Debian/Ubuntu when missing
# (lavapipe, Mesa's software Vulkan, so the GPU code paths run without a GPU), then runs
# the whole test suite.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for pkg in mesa-vulkan-drivers libvulkan1; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if ((${#need[@]})); then
    if command -v apt-get >/dev/null; then
        sudo=""
        [ "$(id -u)" -eq 0 ] || sudo="sudo"
        echo "installing ${need[*]} (software Vulkan for the GPU tests)"
        $sudo apt-get update -qq
        DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
    else
        echo "warning: not a Debian/Ubuntu system; make sure a Vulkan driver is installed" >&2
    fi
fi

# Build outside the clone so repeated runs on one machine are incremental.
export CARGO_TARGET_DIR="${CARGO_TARGET_DIR:-$HOME/.cache/flm-target}"
# Mesa complains without a runtime dir; give it a private one.
if [ -z "${XDG_RUNTIME_DIR:-}" ]; then
    export XDG_RUNTIME_DIR="$HOME/.cache/xdg-runtime"
    mkdir -p "$XDG_RUNTIME_DIR" && chmod 700 "$XDG_RUNTIME_DIR"
fi
# Tests train real (tiny) models: the optimised build makes them take seconds, not minutes,
# and shares its compiled dependencies with `cargo run --release`.
cargo test --release --locked "$@"
