#!/usr/bin/env bash
# Memory soak of the desktop app (issue 17): pick a text file in the Data view, train on it
# from the Train view for MINUTES minutes, and log the app's resident memory once a minute.
# Memory should stay flat (within ~10%) after the first minutes; a leak shows as a climb.
#
#   bash tests/gui/soak.sh CORPUS.txt OUT_DIR [MINUTES]      (default 30)
#
# Writes OUT_DIR/rss.txt ("minute MiB" lines), screenshots at the start and the end, the
# app's log and frame log.

source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
CORPUS=$(realpath "${1:?the first argument is the text file to train on}")
OUT=$(realpath -m "${2:?the second argument is the output folder}")
MINUTES=${3:-30}
mkdir -p "$OUT"
need_packages
DISPLAY_NUMBER=95
start_app "$OUT" "$OUT/runs"

tab_data
click 294 92 0
choose_file "$CORPUS"
sleep 20
tab_train
set_value 262 183 "$((MINUTES + 2))"   # Duration (minutes): outlast the sampling
click 62 206 20                         # Start training
shot "$OUT/soak-start.png"

rss() { awk '/VmRSS/ {printf "%.0f", $2 / 1024}' "/proc/$APP_PID/status"; }
: >"$OUT/rss.txt"
for minute in $(seq 0 "$MINUTES"); do
    kill -0 "$APP_PID" 2>/dev/null || { echo "the app exited at minute $minute" >&2; exit 1; }
    echo "$minute $(rss)" | tee -a "$OUT/rss.txt"
    [ "$minute" -lt "$MINUTES" ] && sleep 60
done
shot "$OUT/soak-end.png"
quit_app
awk 'NR == 1 {first = $2} {last = $2; if ($1 >= 5) {if (!lo || $2 < lo) lo = $2; if ($2 > hi) hi = $2}}
     END {printf "RSS: minute 0 %d MiB, last %d MiB; from minute 5 on between %d and %d MiB (spread %.1f%%)\n",
          first, last, lo, hi, 100 * (hi - lo) / lo}' "$OUT/rss.txt"
