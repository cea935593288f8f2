#!/bin/sh
# SPDX-License-Identifier: MIT OR Apache-2.0
# Marks the booted RAUC slot good once Brume has served for a while: its API answers
# on the appliance's port and brume.service has stayed up for STAY seconds. Until then
# U-Boot counts this boot as a try (BOOT_x_LEFT); a slot that never gets here falls
# back to the other one after three tries (brume.service reboots after repeated
# failures, see 20-rauc-fallback.conf).
STAY=${BRUME_RAUC_STAY:-60}
URL=${BRUME_RAUC_URL:-http://127.0.0.1/api/v1/system}
deadline=$(( $(cut -d. -f1 /proc/uptime) + 600 ))
up_since=
while [ "$(cut -d. -f1 /proc/uptime)" -lt "$deadline" ]; do
    now=$(cut -d. -f1 /proc/uptime)
    # Any HTTP answer counts (401 without a session): the controller is serving.
    answer=$(wget -q -S -O /dev/null -T 5 "$URL" 2>&1)
    case $answer in
    *"HTTP/1."[01]" "[1-4][0-9][0-9]*) answered=1 ;;
    *) answered= ;;
    esac
    if [ -n "$answered" ] && systemctl is-active --quiet brume.service; then
        [ -n "$up_since" ] || up_since=$now
        if [ $((now - up_since)) -ge "$STAY" ]; then
            exec rauc status mark-good
        fi
    else
        up_since=
    fi
    sleep 5
done
echo "brume did not serve for ${STAY} s within 10 min: the slot is not marked good" >&2
exit 1
