# Shared helpers for the real-window scripts: a virtual X display, the flm window, clicks,
# screenshots. Sourced by the scripts beside it; coordinates assume the default
# 1280×820 window at the top-left of a 1280×860 screen with egui's default fonts.

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
TARGET=${CARGO_TARGET_DIR:-$ROOT/target}
FLM=$TARGET/release/flm

need_packages() {
    local missing=()
    command -v Xvfb >/dev/null || missing+=(xvfb xauth)
    command -v xdotool >/dev/null || missing+=(xdotool)
    command -v import >/dev/null || missing+=(imagemagick)
    command -v zenity >/dev/null || missing+=(zenity)
    command -v xclip >/dev/null || missing+=(xclip)
    [ -e /usr/share/vulkan/icd.d/lvp_icd.x86_64.json ] || missing+=(mesa-vulkan-drivers libvulkan1)
    if [ ${#missing[@]} -gt 0 ]; then
        echo "installing ${missing[*]}" >&2
        local sudo=""; [ "$(id -u)" = 0 ] || sudo=sudo
        $sudo apt-get install -y "${missing[@]}" >/dev/null 2>&1 \
            || { $sudo apt-get update >/dev/null && $sudo apt-get install -y "${missing[@]}" >/dev/null; }
    fi
}

# start_app OUT RUNS: a fresh X display and the app on it, runs in RUNS, frame times to OUT.
# FLM_APP_ARGS, if set, replaces the (empty) command line, e.g. "gui --device gpu".
start_app() {
    local out=$1 runs=$2
    DISPLAY_NUMBER=${DISPLAY_NUMBER:-97}
    Xvfb ":$DISPLAY_NUMBER" -screen 0 1280x860x24 -nolisten tcp >"$out/xvfb.log" 2>&1 &
    XVFB_PID=$!
    export DISPLAY=":$DISPLAY_NUMBER"
    sleep 1
    mkdir -p "$runs"
    FLM_RUNS_DIR=$runs FLM_FRAME_LOG=$out/frames.log "$FLM" ${FLM_APP_ARGS:-} >"$out/app.log" 2>&1 &
    APP_PID=$!
    trap stop_app EXIT
    for _ in $(seq 1 60); do
        if xdotool search --name '^flm' >/dev/null 2>&1; then
            sleep 2
            focus_app
            return
        fi
        sleep 0.5
    done
    echo "the window never appeared; app log:" >&2
    cat "$out/app.log" >&2
    exit 1
}

# focus_app: give the window the keyboard. There is no window manager under Xvfb, and winit
# only takes keys while its window holds the X input focus (lost again when a dialog closes).
focus_app() {
    xdotool windowfocus --sync "$(xdotool search --name '^flm' | head -1)"
}

stop_app() {
    [ -n "${APP_PID:-}" ] && kill "$APP_PID" 2>/dev/null || true
    [ -n "${XVFB_PID:-}" ] && kill "$XVFB_PID" 2>/dev/null || true
}

# quit_app: Ctrl+Q, the app's own way out (it stops training and writes the frame log).
quit_app() {
    xdotool key ctrl+q
    for _ in $(seq 1 40); do
        kill -0 "$APP_PID" 2>/dev/null || { APP_PID=""; return; }
        sleep 0.25
    done
    echo "the app did not quit on Ctrl+Q" >&2
    exit 1
}

click() { xdotool mousemove "$1" "$2" click 1; sleep "${3:-0.6}"; }

# drag_x X Y DX [PAUSE]: press at (X, Y), move DX pixels one at a time (egui needs many
# motion events), PAUSE seconds apart (default 0.02; 0 = one xdotool process, 4 ms apart).
drag_x() {
    local x=$1 y=$2 dx=$3 pause=${4:-0.02} step=1
    [ "$dx" -lt 0 ] && step=-1
    xdotool mousemove "$x" "$y" mousedown 1
    if [ "$pause" = 0 ]; then
        # One xdotool process for the whole drag: spawning one per pixel would steal the CPU
        # being measured.
        local moves=()
        for _ in $(seq 1 "${dx#-}"); do moves+=(mousemove_relative -- "$step" 0 sleep 0.004); done
        xdotool "${moves[@]}"
    else
        for _ in $(seq 1 "${dx#-}"); do xdotool mousemove_relative -- "$step" 0; sleep "$pause"; done
    fi
    xdotool mouseup 1
    sleep 0.5
}

shot() { import -window root "$1"; echo "screenshot: $1"; }

# focus_dialog: wait for the file dialog (zenity: rfd's fallback without a desktop portal)
# and give it the keyboard.
focus_dialog() {
    local dialog=""
    for _ in $(seq 1 20); do
        dialog=$(xdotool search --onlyvisible --class zenity 2>/dev/null | head -1) || true
        [ -n "$dialog" ] && break
        sleep 0.5
    done
    [ -n "$dialog" ] || { echo "no file dialog appeared" >&2; exit 1; }
    xdotool windowfocus --sync "$dialog"
}

# paste_location PATH: into the GTK dialog's location field, pasted (typed text gets
# mangled by GTK's completion), then Return.
paste_location() {
    printf %s "$1" | xclip -selection clipboard
    xdotool key ctrl+l
    sleep 0.5
    xdotool key ctrl+a ctrl+v
    sleep 0.5
    xdotool key Return
}

# choose_file PATH: answer an open-file dialog.
choose_file() {
    focus_dialog
    paste_location "$1"
    sleep 1
    focus_app
}

# choose_folder PATH: answer a folder dialog: leave "Recent" (where a typed location is
# ignored), go to PATH, press OK.
choose_folder() {
    focus_dialog
    click 57 59 1                       # sidebar: Home
    paste_location "$1"
    sleep 1.5
    click 1046 798 1                    # OK
    focus_app
}

# Tabs of the top bar.
tab_data() { click 86 12; }
tab_train() { click 155 12; }
tab_sample() { click 231 12; }
tab_checkpoints() { click 320 12; }

# wait_file PATH SECONDS
wait_file() {
    for _ in $(seq 1 "$2"); do [ -e "$1" ] && return 0; sleep 1; done
    echo "timed out waiting for $1" >&2
    return 1
}



# set_value X Y VALUE: click a number field (egui opens it for typing) and enter VALUE.
set_value() {
    click "$1" "$2" 0.3
    xdotool key ctrl+a
    xdotool type --delay 30 "$3"
    xdotool key Return
    sleep 0.4
}

# Neutral spot: takes keyboard focus away from fields so Space and arrows reach the player.
defocus() { click 1200 780 0.3; }

# model_row N: the y of row N (0-based) of the Sample view's model dropdown; runs are sorted by
# name. The compare dropdown's rows sit 23 px lower.
model_row() { echo $((71 + 23 * $1)); }

# compare_shot PNG FLM_ROW FMLM_ROW [SEED]: on the Sample view, the FLM of dropdown row
# FLM_ROW in 32 Euler steps beside the FMLM of row FMLM_ROW in one step, from the same noise
# (seed SEED, default 0), the FLM paused midway and one token's candidates shown.
compare_shot() {
    local png=$1 flm_row=$2 fmlm_row=$3 seed=${4:-0}
    click 150 44; click 133 "$(model_row "$flm_row")"
    set_value 356 44 32
    set_value 612 44 "$seed"
    # Tick "compare with" only when it is not ticked yet (a second call keeps it).
    [ "${COMPARE_TICKED:-}" = 1 ] || { click 15 67; COMPARE_TICKED=1; }
    click 215 67; click 200 "$(( $(model_row "$fmlm_row") + 23 ))"
    click 50 113 0
    sleep 15
    defocus
    drag_x 786 145 -300
    xdotool mousemove 300 197; sleep 1.5
    shot "$png"
}

now() { date +%s.%N; }

# frame_report LOG T0 T1 LABEL: p50/p95 of frame intervals and UI build times between two
# moments (nearest rank), from the app's FLM_FRAME_LOG.
frame_report() {
    local log=$1 t0=$2 t1=$3 label=$4
    pct() { sort -n | awk '{v[NR]=$1} END {if (NR == 0) {print "-"; exit}
        i50 = int(0.5 * NR + 0.999); i95 = int(0.95 * NR + 0.999);
        printf "p50 %.1f ms, p95 %.1f ms (%d frames)", v[i50], v[i95], NR}'; }
    local intervals builds cpu
    intervals=$(awk -v a="$t0" -v b="$t1" '$1 >= a && $1 <= b && $2 != "-" {print $2}' "$log" | pct)
    builds=$(awk -v a="$t0" -v b="$t1" '$1 >= a && $1 <= b {print $3}' "$log" | pct)
    cpu=$(awk -v a="$t0" -v b="$t1" '$1 >= a && $1 <= b && $4 != "-" {print $4}' "$log" | pct)
    echo "$label: frame interval $intervals; UI build $builds; UI + tessellation + paint calls $cpu"
}
