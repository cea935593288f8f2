#!/bin/sh
# SPDX-License-Identifier: MIT OR Apache-2.0
# The last known time, kept on /data: the Raspberry Pi has no real-time clock, so
# without it every boot starts in 1970 (or at the image's build date) until NTP answers,
# and recordings get names from the past.
#   brume-clock restore   sets the clock forward to the saved time if it is behind it
#   brume-clock save      saves the current time (hourly, and at shutdown)
# GET /api/v1/system says "clock_synced": false until NTP has synchronised the clock.
set -eu
file=${BRUME_CLOCK_FILE:-/data/brume-clock}

case "${1:-}" in
restore)
    [ -s "$file" ] || exit 0
    saved=$(cat "$file")
    case "$saved" in '' | *[!0-9]*) echo "brume-clock: ignoring $file: not a time" >&2; exit 0 ;; esac
    now=$(date +%s)
    if [ "$now" -lt "$saved" ]; then
        date -s "@$saved" >/dev/null
        echo "brume-clock: clock set forward to the last known time, $(date -u '+%Y-%m-%d %H:%M:%S') UTC"
    fi
    ;;
save)
    date +%s >"$file.tmp"
    sync "$file.tmp" 2>/dev/null || sync
    mv "$file.tmp" "$file"
    ;;
*)
    echo "usage: brume-clock restore|save" >&2
    exit 2
    ;;
esac
