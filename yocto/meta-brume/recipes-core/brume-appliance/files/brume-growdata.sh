#!/bin/sh
# SPDX-License-Identifier: MIT OR Apache-2.0
# Grows the data partition (label BRUMEDATA, the last on the card) to the end of the
# card, then its ext4 file system. Runs before /data is mounted on every boot and
# does nothing once the partition reaches the end, so a power cut mid-way is retried.
set -eu

part=$(readlink -f /dev/disk/by-label/BRUMEDATA)
name=${part##*/}
sys=/sys/class/block/$name
num=$(cat "$sys/partition")
diskname=$(basename "$(readlink -f "$sys/..")")
disk=/dev/$diskname

disk_sectors=$(cat "/sys/class/block/$diskname/size")
end=$(($(cat "$sys/start") + $(cat "$sys/size")))
# Less than 16 MiB to gain: done (or nothing to do on a card of the image's size).
if [ $((disk_sectors - end)) -lt 32768 ]; then
    exit 0
fi

echo "brume-growdata: growing $part to the end of $disk"
echo ", +" | sfdisk --no-reread --no-tell-kernel -N "$num" "$disk"
partx -u --nr "$num" "$disk"
# e2fsck exits 1 when it corrected something: fine before a resize.
rc=0
e2fsck -fy "$part" || rc=$?
[ "$rc" -le 1 ] || exit "$rc"
resize2fs "$part"
