#!/usr/bin/env bash
# The appliance boot test: an aarch64 appliance assembled from the cross-built brume and
# meta-brume's own files, on a card image laid out as the layer's wks describes (MBR
# disk id, boot FAT, root ext4, data ext4 labelled BRUMEDATA), booted with Debian's arm64
# kernel under `qemu-system-aarch64 -M virt` (TCG) with cmdline.txt's root=PARTUUID=... ro,
# the layer's fstab turned into mount units by systemd-fstab-generator, and the units of
# brume and brume-appliance (see guest/init); driven from the host through port forwards
# on 127.0.0.1:
#   boot      the web API answers; the first configuration is the appliance's (no
#             stream), GET /api/v1/system says whether the clock is synchronised
#   layout    root ext4 read-only from root=PARTUUID, /data the BRUMEDATA partition from
#             its label with the fstab's options, /boot not mounted, tmpfs /run /dev/shm
#   units     every unit step of the boot succeeded (no failed unit)
#   demo-hls  the demo on request (testsrc, on demand): ffprobe reads its HLS (h264)
#   create    POST /api/v1/streams creates `persist` (testsrc, on demand)
#   shutdown  a clean poweroff (SIGTERM to brume, the time saved on /data, sync,
#             unmount); the data file system is clean
#   reboot    the same card boots again: `persist` is still there, HLS plays again
# and prints boot-to-first-HLS-segment time (emulated, a relative figure) and the idle
# memory of the appliance userland (RSS/PSS from the guest's /proc).
#
# Run as root on Debian 12: reuses tests/hil/setup.sh (packages, the arm64 kernel and
# busybox, cached under target/hil) and its library resolver. Idempotent, no stdin.
# Prints `N passed, M failed` last and exits non-zero on any failure. Artifacts (serial
# consoles, brume log, the data disk) go to target/appliance/.
# Environment: CARGO_BUILD_JOBS (default 2), BRUME_APPLIANCE_WAIT (seconds for the guest
# and its streams to come up, default 240).
set -uo pipefail
cd "$(dirname "$0")/../.." || exit 2
ROOT=$PWD
HERE=$ROOT/tests/appliance
HILDIR=$ROOT/tests/hil
export HIL=$ROOT/target/hil
OUT=$ROOT/target/appliance
jobs=${CARGO_BUILD_JOBS:-2}
wait_s=${BRUME_APPLIANCE_WAIT:-240}
PASSWORD=appliance-admin-password
TRIPLE=aarch64-unknown-linux-gnu
rm -rf "$OUT"
mkdir -p "$OUT"

T0=$(date +%s)
log() { echo "[appliance +$(($(date +%s) - T0))s] $*"; }
passed=0
failed=0
pass() { passed=$((passed + 1)); echo "PASS: $*"; }
fail() { failed=$((failed + 1)); echo "FAIL: $*"; }
TESTS=(boot layout units demo-hls create shutdown reboot persist-hls)
finish() {
    log "done"
    [ -n "${SUMMARY:-}" ] && echo "$SUMMARY"
    echo
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ]
    exit
}
# fail_rest FROM REASON: the tests from FROM on cannot run: failed, never skipped.
fail_rest() {
    local t on=0
    for t in "${TESTS[@]}"; do
        [ "$t" = "$1" ] && on=1
        [ $on = 1 ] && fail "$t: $2"
    done
    finish
}
QPID=""
stop_guest() {
    [ -n "$QPID" ] || return 0
    kill "$QPID" 2>/dev/null
    for _ in $(seq 1 20); do kill -0 "$QPID" 2>/dev/null || break; sleep 0.25; done
    kill -9 "$QPID" 2>/dev/null
    wait "$QPID" 2>/dev/null
    QPID=""
}
trap stop_guest EXIT
trap 'stop_guest; exit 130' INT TERM

# ---------------------------------------------------------------- host setup and build
log "setup: tests/hil/setup.sh (packages, kernels, busybox)"
if ! "$HILDIR/setup.sh" >"$OUT/setup.log" 2>&1; then
    tail -20 "$OUT/setup.log"
    fail_rest boot "(host setup failed)"
fi
# shellcheck disable=SC1091
. "$HIL/kernel.env" # ABI, K
command -v mkfs.ext4 >/dev/null && command -v e2fsck >/dev/null || {
    [ "$(id -u)" = 0 ] && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq e2fsprogs >/dev/null 2>&1
}
if command -v rustup >/dev/null && ! grep -qx "$TRIPLE" <<<"$(rustup target list --installed 2>/dev/null)"; then
    for _ in 1 2 3; do rustup target add $TRIPLE && break; sleep 5; done
fi
if [ ! -f .cargo/config.toml ]; then
    export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=${CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER:-aarch64-linux-gnu-gcc}
    export PKG_CONFIG_ALLOW_CROSS=1
    export PKG_CONFIG_LIBDIR_aarch64_unknown_linux_gnu=${PKG_CONFIG_LIBDIR_aarch64_unknown_linux_gnu:-/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig}
fi
BRUME=${CARGO_TARGET_DIR:-$ROOT/target}/$TRIPLE/release/brume
log "building brume for $TRIPLE"
if ! cargo build --release -p brume --target $TRIPLE -j "$jobs" >"$OUT/build.log" 2>&1; then
    tail -30 "$OUT/build.log"
    fail_rest boot "(cargo build --release -p brume --target $TRIPLE failed)"
fi

# ---------------------------------------------------------------- the image
# The card as meta-brume lays it out, from the layer's own files:
#   * the partitions of files/wic/brume-sdimage.wks (MBR with its --diskid; boot FAT,
#     root ext4, data ext4, with their labels and order), assembled without loop devices;
#   * the kernel command line of rpi-cmdline.bbappend (root=PARTUUID=... ro);
#   * base-files' fstab and the mount points its bbappend creates, turned into mount
#     units by systemd's own systemd-fstab-generator; the units, scripts, tmpfiles.d
#     entry and first configuration of the brume and brume-appliance recipes.
# An initramfs stands in for what the Pi kernel does alone (modules, root=PARTUUID).
LAYER=$ROOT/yocto/meta-brume
WKS=$LAYER/files/wic/brume-sdimage.wks
FSTAB=$LAYER/recipes-core/base-files/base-files/fstab
APPL=$LAYER/recipes-core/brume-appliance/files
BFILES=$LAYER/recipes-multimedia/brume/files
GEN=/lib/systemd/system-generators/systemd-fstab-generator
[ -x "$GEN" ] || GEN=/usr/lib/systemd/system-generators/systemd-fstab-generator
command -v mkfs.vfat >/dev/null && command -v sfdisk >/dev/null && [ -x "$GEN" ] || {
    [ "$(id -u)" = 0 ] && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq dosfstools fdisk systemd >/dev/null 2>&1
}
GEN=/lib/systemd/system-generators/systemd-fstab-generator
[ -x "$GEN" ] || GEN=/usr/lib/systemd/system-generators/systemd-fstab-generator
# The kernel command line as cmdline.txt has it (meta-raspberrypi's rootfstype=ext4).
CMDLINE_BBAPPEND=$LAYER/recipes-bsp/bootfiles/rpi-cmdline.bbappend
rootpart=$(sed -n 's/^CMDLINE_ROOT_PARTITION:brumeos = "\(.*\)"/\1/p' "$CMDLINE_BBAPPEND")
rootline=$(sed -n 's/^CMDLINE_ROOTFS:brumeos = "\(.*\)"/\1/p' "$CMDLINE_BBAPPEND")
rootline=${rootline//\$\{CMDLINE_ROOT_PARTITION\}/$rootpart}
rootline=${rootline//\$\{CMDLINE_ROOT_FSTYPE\}/rootfstype=ext4}
initramfs() {
    local R=$OUT/initramfs KVER=$ABI-arm64 MODBASE=$K/mods-arm64 m path rel
    rm -rf "$R"
    mkdir -p "$R"/{bin,sbin,usr/bin,usr/sbin,etc/appliance,proc,sys,dev,newroot}
    cp "$K/busybox-arm64" "$R/bin/busybox"
    declare -A seen=()
    : >"$R/etc/appliance/modules"
    for m in virtio_pci virtio_net virtio_blk ext4 vfat; do
        while read -r _ path _; do
            rel=${path#"$MODBASE/lib/modules/$KVER/"}
            [ -n "${seen[$rel]:-}" ] && continue
            seen[$rel]=1
            mkdir -p "$R/lib/modules/$KVER/$(dirname "$rel")"
            cp "$path" "$R/lib/modules/$KVER/$rel"
            echo "$rel" >>"$R/etc/appliance/modules"
        done < <(modprobe -d "$MODBASE" -S "$KVER" --show-depends "$m" | grep '^insmod')
    done
    install -m 755 "$HERE/guest/initramfs-init" "$R/init"
    (cd "$R" && find . | LC_ALL=C sort | cpio -o -H newc --quiet -R 0:0) >"$OUT/initramfs.cpio"
}
build_root() {
    local R=$OUT/rootfs a d
    rm -rf "$R"
    # The root's directories; /data only if base-files' bbappend creates it (the mount
    # point cannot be made at boot on a read-only root).
    mkdir -p "$R"/{bin,sbin,usr/bin,usr/sbin,usr/lib/tmpfiles.d,usr/share,lib/systemd/system,etc/appliance/units,proc,sys,dev,run,tmp,root,var/volatile,www/cgi-bin,hil/cmd}
    while read -r d; do
        mkdir -p "$R/$d"
        echo "mount point from base-files_%.bbappend: /$d"
    done < <(sed -n 's|^ *install -d .*\${D}/\([a-z0-9/]*\)$|\1|p' "$LAYER/recipes-core/base-files/base-files_%.bbappend")
    cp "$K/busybox-arm64" "$R/bin/busybox"
    # Applet links made here: the root is read-only at run time (same busybox build for
    # both architectures).
    for a in $("$K/busybox-amd64" --list); do
        [ -e "$R/bin/$a" ] || ln -s busybox "$R/bin/$a"
    done
    install -m 755 "$HERE/guest/init" "$R/sbin/init"
    install -m 644 "$FSTAB" "$R/etc/fstab"
    # The mount units systemd makes from that fstab at boot.
    SYSTEMD_FSTAB="$R/etc/fstab" SYSTEMD_PROC_CMDLINE="$rootline" \
        "$GEN" "$R/etc/appliance/units" "$R/etc/appliance/units" "$R/etc/appliance/units" 2>&1 &&
        ls "$R/etc/appliance/units"/*.mount >/dev/null || { echo "systemd-fstab-generator failed"; return 1; }
    install -m 755 "$BRUME" "$R/usr/bin/brume"
    aarch64-linux-gnu-strip "$R/usr/bin/brume"
    # shellcheck source=../hil/elflibs.sh
    . "$HILDIR/elflibs.sh"
    elf_libs_install "$R" arm64 "$R/usr/bin/brume" || return 1
    mkdir -p "$R/usr/share/alsa" "$R/usr/share/brume"
    cp -r /usr/share/alsa/alsa.conf /usr/share/alsa/cards /usr/share/alsa/pcm "$R/usr/share/alsa/"
    # brume and brume-appliance, installed where their recipes put them.
    install -m 644 "$BFILES/brume.service" "$R/lib/systemd/system/brume.service"
    install -m 644 "$BFILES/brume-tmpfiles.conf" "$R/usr/lib/tmpfiles.d/brume.conf"
    install -m 644 "$APPL/brume-clock.service" "$R/lib/systemd/system/brume-clock.service"
    install -m 755 "$APPL/brume-clock.sh" "$R/usr/sbin/brume-clock"
    install -m 755 "$APPL/brume-growdata.sh" "$R/usr/sbin/brume-growdata"
    install -m 644 "$APPL/brume.json" "$R/usr/share/brume/brume.json"
    install -m 755 "$HILDIR/guest/run.cgi" "$R/www/cgi-bin/run"
    cp "$HERE/guest/cmd/"*.sh "$R/hil/cmd/"
    echo "$PASSWORD" >"$R/etc/appliance/password"
    echo "root $(du -sk "$R" | cut -f1) KiB (brume stripped $(($(stat -c %s "$R/usr/bin/brume") / 1024)) KiB), libraries: $ELF_LIBS"
}
# wks_parts: "mountpoint fstype label size_mib" per part line, in order.
wks_parts() {
    awk '$1 == "part" {
        mp = $2; fs = ""; label = ""; size = 0
        for (i = 3; i <= NF; i++) {
            if ($i ~ /^--fstype=/) fs = substr($i, 10)
            else if ($i == "--fstype") fs = $(i + 1)
            else if ($i == "--label") label = $(i + 1)
            else if ($i == "--size") size = $(i + 1)
        }
        print mp, fs, label, size
    }' "$WKS"
}
# make_disk: the card image, partitions aligned to 4 MiB as the wks asks.
make_disk() {
    local diskid mp fs label size n=0 start=4 img script="" total
    diskid=$(sed -n 's/^bootloader .*--diskid \(0x[0-9a-fA-F]*\).*/\1/p' "$WKS")
    [ -n "$diskid" ] || { echo "brume-sdimage.wks: no bootloader --diskid"; return 1; }
    script="label: dos"$'\n'"label-id: $diskid"$'\n'"unit: sectors"$'\n'
    PARTS=()
    while read -r mp fs label size; do
        n=$((n + 1))
        img=$OUT/part$n.img
        case "$mp:$fs" in
        /:ext4)
            size=$(( $(du -sm "$OUT/rootfs" | cut -f1) * 13 / 10 + 16 ))
            mkfs.ext4 -q -F -L "$label" -d "$OUT/rootfs" -E root_owner=0:0 "$img" "${size}M" || return 1
            ;;
        *:ext4) mkfs.ext4 -q -F -L "$label" -E root_owner=0:0 "$img" "${size}M" || return 1 ;;
        *:vfat) rm -f "$img"; mkfs.vfat -C -n "$label" "$img" $((size * 1024)) >/dev/null || return 1 ;;
        *) echo "brume-sdimage.wks: unexpected part $mp $fs"; return 1 ;;
        esac
        script+="start=$((start * 2048)), size=$((size * 2048)), type=$([ "$fs" = vfat ] && echo c || echo 83)$([ "$n" = 1 ] && echo ', bootable')"$'\n'
        PARTS+=("$n $start $size $mp $fs $label")
        echo "partition $n: $mp $fs label $label, ${size} MiB at ${start} MiB"
        start=$(( (start + size + 3) / 4 * 4 ))
    done < <(wks_parts)
    total=$((start + 4))
    rm -f "$DISK"
    truncate -s "${total}M" "$DISK"
    sfdisk -q "$DISK" <<<"$script" >/dev/null || return 1
    local p
    for p in "${PARTS[@]}"; do
        read -r n start size _ <<<"$p"
        dd if="$OUT/part$n.img" of="$DISK" bs=1M seek="$start" conv=notrunc status=none || return 1
    done
    echo "disk $total MiB, disk id $diskid; kernel command line: $rootline"
}
# data_part FILE: copies the data partition (the one mounted on /data) out of the disk.
data_part() {
    local p n start size mp
    for p in "${PARTS[@]}"; do
        read -r n start size mp _ <<<"$p"
        [ "$mp" = /data ] && dd if="$DISK" of="$1" bs=1M skip="$start" count="$size" status=none && return 0
    done
    return 1
}
DISK=$OUT/card.img
log "assembling the appliance (the card of brume-sdimage.wks)"
if ! { initramfs && build_root && make_disk; } >"$OUT/image.log" 2>&1; then
    cat "$OUT/image.log"
    fail_rest boot "(cannot assemble the card image)"
fi
grep -e '^partition' -e '^disk' -e '^root' -e '^mount point' "$OUT/image.log" | sed 's/^/  /'

# ---------------------------------------------------------------- guest helpers
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
jget() { python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2" 2>/dev/null; }
now_ms() { date +%s%3N; }
since() { awk -v a="$1" -v b="$(now_ms)" 'BEGIN {printf "%.1f", (b - a) / 1000}'; }
# boot N: starts QEMU on the data disk; sets QPID, T_BOOT (ms), WEB and CTL.
boot() {
    local n=$1 web ctl
    SERIAL=$OUT/serial-$n.log
    for _ in 1 2 3; do
        web=$(free_port) ctl=$(free_port)
        [ "$web" != "$ctl" ] || continue
        T_BOOT=$(now_ms)
        # timeout: a QEMU orphaned by a killed harness still ends.
        timeout -k 10 900 qemu-system-aarch64 -M virt -cpu cortex-a72 -accel tcg -smp 1 -m 1024 \
            -nographic -no-reboot -kernel "$K/mods-arm64/boot/vmlinuz-$ABI-arm64" -initrd "$OUT/initramfs.cpio" \
            -append "console=ttyAMA0 panic=-1 quiet $rootline" \
            -drive "file=$DISK,if=none,format=raw,id=card" -device virtio-blk-pci,drive=card \
            -netdev "user,id=n,restrict=on,hostfwd=tcp:127.0.0.1:$web-:80,hostfwd=tcp:127.0.0.1:$ctl-:81" \
            -device virtio-net-pci,netdev=n,romfile= </dev/null >"$SERIAL" 2>&1 &
        QPID=$!
        sleep 1
        if kill -0 "$QPID" 2>/dev/null; then
            WEB=http://127.0.0.1:$web CTL=http://127.0.0.1:$ctl
            return 0
        fi
        wait "$QPID" 2>/dev/null
        QPID=""
        grep -q 'host forwarding' "$SERIAL" || break
    done
    return 1
}
ctl() {
    local q=$1
    shift
    for a in "$@"; do q="$q&$a"; done
    curl -fsS -m "${CTL_TIMEOUT:-60}" "$CTL/cgi-bin/run?$q"
}
wait_for() {
    local limit=$1 t
    shift
    t=$(date +%s)
    while [ $(($(date +%s) - t)) -lt "$limit" ]; do
        "$@" && return 0
        kill -0 "$QPID" 2>/dev/null || return 1
        grep -aq '^APPLIANCE: brume exited' "$SERIAL" && return 1
        sleep 0.5
    done
    return 1
}
TOKEN=""
login() {
    TOKEN=$(curl -fsS -m 60 -X POST "$WEB/api/v1/login" -H "Content-Type: application/json" -d "{\"password\":\"$PASSWORD\"}" 2>/dev/null |
        python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])' 2>/dev/null)
    [ -n "$TOKEN" ]
}
api() { curl -fsS -m 30 -H "Authorization: Bearer $TOKEN" "$@"; }
api_up() { curl -fs -m 10 -o /dev/null "$WEB/api/v1/setup"; }
playlist_ready() { grep -q '^#EXTINF' <<<"$(curl -fsS -m 10 "$WEB/hls/$1/index.m3u8" 2>/dev/null)"; }
# hls_h264 NAME FILE: ffprobe reads /hls/NAME/index.m3u8 and sees an h264 video track.
hls_h264() {
    timeout 120 ffprobe -v error -rw_timeout 30000000 -of json -show_entries stream=codec_type,codec_name,width,height \
        "$WEB/hls/$1/index.m3u8" >"$2" 2>"$2.err" &&
        [ "$(jget "$2" '[s["codec_name"] for s in d["streams"] if s["codec_type"] == "video"][0]')" = h264 ]
}
vinfo() { jget "$1" '"%s %sx%s" % [(s["codec_name"], s.get("width"), s.get("height")) for s in d["streams"] if s["codec_type"] == "video"][0]'; }
has_persist() {
    api "$WEB/api/v1/streams" >"$OUT/streams-$1.json" 2>/dev/null &&
        [ "$(jget "$OUT/streams-$1.json" '"persist" in (([s.get("name") for s in d] if isinstance(d, list) else list(d.get("streams", d)) if isinstance(d.get("streams", d), dict) else [s.get("name") for s in d["streams"]]))')" = True ]
}
# up_and_hls: waits for the API, logs in, and for the demo's first segment (the demo is
# on demand: the playlist requests start it); sets BOOT_API, BOOT_SEG (s). With
# CREATE_DEMO=1 it first creates the demo, as the web UI's "synthetic test picture".
DEMO='{"name":"demo","source":{"type":"testsrc"},"always_on":false}'
up_and_hls() {
    BOOT_API="" BOOT_SEG=""
    wait_for "$wait_s" api_up || return 1
    BOOT_API=$(since "$T_BOOT")
    login || return 1
    if [ "${CREATE_DEMO:-0}" = 1 ]; then
        api "$WEB/api/v1/streams" >"$OUT/streams-default.json" 2>&1
        api -X POST -H 'Content-Type: application/json' "$WEB/api/v1/streams" -d "$DEMO" >"$OUT/demo-create.json" 2>&1 || return 2
    fi
    wait_for "$wait_s" playlist_ready demo || return 2
    BOOT_SEG=$(since "$T_BOOT")
}
# shutdown_guest N: the clean poweroff over the control channel; QEMU must exit by itself.
shutdown_guest() {
    local t
    ctl log 2000 >"$OUT/brume-$1.log" 2>&1
    CTL_TIMEOUT=40 ctl poweroff >"$OUT/poweroff-$1.txt" 2>&1
    t=$(date +%s)
    while kill -0 "$QPID" 2>/dev/null && [ $(($(date +%s) - t)) -lt 60 ]; do sleep 0.5; done
    if kill -0 "$QPID" 2>/dev/null; then
        stop_guest
        return 1
    fi
    wait "$QPID" 2>/dev/null
    QPID=""
    grep -q '^unmounted /data' "$OUT/poweroff-$1.txt"
}

# ---------------------------------------------------------------- first boot
log "booting the appliance (1)"
boot 1 || fail_rest boot "(QEMU did not start: $(tail -3 "$OUT/serial-1.log" | tr '\n' ' '))"
CREATE_DEMO=1 up_and_hls
r=$?
if [ -z "$BOOT_API" ]; then
    fail_rest boot "(the API did not answer within $wait_s s: $(tail -5 "$SERIAL" | tr '\n' ' '))"
fi
CTL_TIMEOUT=20 ctl log 400 >"$OUT/brume-1-early.log" 2>&1
api "$WEB/api/v1/system" >"$OUT/system-1.json" 2>&1
synced=$(jget "$OUT/system-1.json" 'd.get("clock_synced", "absent")')
if [ "$(jget "$OUT/streams-default.json" 'len(d) if isinstance(d, list) else len(d.get("streams", d))')" = 0 ] &&
    { [ "$synced" = False ] || [ "$synced" = True ]; }; then
    pass "boot: the API answers $BOOT_API s after QEMU started; the first configuration has no stream (the demo only on request); clock_synced: $synced"
else
    fail "boot: API answers after $BOOT_API s; streams: $(head -c 200 "$OUT/streams-default.json" 2>/dev/null); clock_synced: $synced"
fi
ctl mounts >"$OUT/mounts.txt" 2>&1
datadev=$(awk '$1 == "part" {n++} $1 == "part" && $2 == "/data" {print n}' "$WKS")
rootdev=$(awk '$1 == "part" {n++} $1 == "part" && $2 == "/" {print n}' "$WKS")
dataopts=$(awk '$2 == "/data" {print $4}' "$FSTAB")
layout_ok=1
grep -q '^root: read-only' "$OUT/mounts.txt" || layout_ok=0
grep -Eq "^/dev/vda$rootdev / ext4 ro[,\ ]" "$OUT/mounts.txt" || layout_ok=0
grep -Eq "^/dev/vda$datadev /data ext4 rw,.*noatime" "$OUT/mounts.txt" || layout_ok=0
! grep -q 'commit=1' <<<"$dataopts" || grep -Eq "^/dev/vda$datadev /data ext4 .*commit=1" "$OUT/mounts.txt" || layout_ok=0
grep -Eq ' /boot ' "$OUT/mounts.txt" && layout_ok=0
grep -Eq '^tmpfs /run tmpfs' "$OUT/mounts.txt" && grep -Eq '^tmpfs /dev/shm tmpfs' "$OUT/mounts.txt" || layout_ok=0
if [ "$layout_ok" = 1 ]; then
    pass "layout: root /dev/vda$rootdev (ext4, root=PARTUUID) read-only, /dev/vda$datadev (LABEL=BRUMEDATA) on /data ($dataopts), /boot not mounted, tmpfs /run and /dev/shm"
else
    fail "layout: $(tr '\n' ';' <"$OUT/mounts.txt" | cut -c1-500)"
fi
units=$(grep -a '^APPLIANCE: UNIT' "$SERIAL" | tr -d '\r' | sed 's/^APPLIANCE: UNIT //')
if [ -n "$units" ] && ! grep -q FAILED <<<"$units" && grep -q '^data\.mount .* ok$' <<<"$units" &&
    grep -q '^brume\.service started ok$' <<<"$units"; then
    pass "units: no failed unit ($(grep -c '' <<<"$units") steps: $(cut -d' ' -f1 <<<"$units" | tr '\n' ' '))"
else
    fail "units: $(grep -a -e FAILED -e 'not found' "$SERIAL" | tr '\n' ';' | cut -c1-500) [steps: $(tr '\n' ';' <<<"$units")]"
fi
if [ $r = 0 ] && hls_h264 demo "$OUT/demo-1.json"; then
    pass "demo-hls: the demo, created on request, plays on demand: $(vinfo "$OUT/demo-1.json"); first segment $BOOT_SEG s after QEMU started"
else
    fail "demo-hls: $(cat "$OUT/demo-create.json" "$OUT/demo-1.json" "$OUT/demo-1.json.err" 2>/dev/null | tr -s ' \n' ' ' | cut -c1-300)"
fi
STREAM='{"name":"persist","source":{"type":"testsrc","width":160,"height":90,"fps":5,"bitrate_kbps":100},"always_on":false}'
if api -X POST -H 'Content-Type: application/json' "$WEB/api/v1/streams" -d "$STREAM" >"$OUT/create.json" 2>"$OUT/create.err" &&
    has_persist 1; then
    pass "create: POST /api/v1/streams created persist (testsrc, on demand)"
else
    fail "create: $(cat "$OUT/create.json" "$OUT/create.err" 2>/dev/null | tr -s ' \n' ' ' | cut -c1-300)"
fi
# Idle memory: no viewer for a while (the HLS viewers above time out), then /proc.
sleep 10
ctl mem >"$OUT/mem-1.txt" 2>&1
MEM1=$(sed -n 's/^brume procs=\([0-9]*\) rss_kb=\([0-9]*\) pss_kb=\([0-9]*\)/\1 \2 \3/p' "$OUT/mem-1.txt")
ALL1=$(sed -n 's/^userland procs=\([0-9]*\) rss_kb=\([0-9]*\) pss_kb=\([0-9]*\)/\1 \2 \3/p' "$OUT/mem-1.txt")
SYS1=$(sed -n 's/^system used_kb=\([0-9]*\).*/\1/p' "$OUT/mem-1.txt")
SEG1=$BOOT_SEG

log "shutting down (poweroff over the control channel)"
if shutdown_guest 1; then
    if data_part "$OUT/data-after.img" && e2fsck -fn "$OUT/data-after.img" >"$OUT/fsck.log" 2>&1 &&
        grep -q '^brume-clock saved [0-9]' "$OUT/poweroff-1.txt"; then
        pass "shutdown: SIGTERM to brume, the time saved on /data, sync, /data unmounted, QEMU powered off; e2fsck of BRUMEDATA: clean"
    else
        fail "shutdown: $(grep brume-clock "$OUT/poweroff-1.txt"); e2fsck -fn: $(tail -5 "$OUT/fsck.log" | tr '\n' ' ')"
    fi
else
    fail "shutdown: not clean: $(tr '\n' ' ' <"$OUT/poweroff-1.txt" | cut -c1-300)"
fi

# ---------------------------------------------------------------- second boot
log "booting the appliance again (2), same data disk"
boot 2 || fail_rest reboot "(QEMU did not start: $(tail -3 "$OUT/serial-2.log" | tr '\n' ' '))"
up_and_hls
r=$?
if [ -n "$BOOT_API" ] && login && has_persist 2 && [ $r = 0 ] && hls_h264 demo "$OUT/demo-2.json" &&
    ! grep -aq 'UNIT .* FAILED' "$SERIAL"; then
    pass "reboot: no failed unit; persist is still in GET /api/v1/streams; demo HLS plays again ($(vinfo "$OUT/demo-2.json"), first segment $BOOT_SEG s after QEMU started)"
else
    fail "reboot: api ${BOOT_API:-never}, segment ${BOOT_SEG:-never}: $(head -c 300 "$OUT/streams-2.json" 2>/dev/null) $(head -c 200 "$OUT/demo-2.json.err" 2>/dev/null)"
fi
if wait_for 120 playlist_ready persist && hls_h264 persist "$OUT/persist.json"; then
    pass "persist-hls: the stream created before the reboot plays on demand: $(vinfo "$OUT/persist.json")"
else
    fail "persist-hls: $(cat "$OUT/persist.json" "$OUT/persist.json.err" 2>/dev/null | tr -s ' \n' ' ' | cut -c1-300)"
fi
shutdown_guest 2 >/dev/null 2>&1 || true
stop_guest

read -r bn brss bpss <<<"${MEM1:-? ? ?}"
read -r an arss apss <<<"${ALL1:-? ? ?}"
mb() { awk -v k="$1" 'BEGIN {if (k ~ /^[0-9]+$/) printf "%.1f MiB", k / 1024; else print "?"}'; }
SUMMARY="appliance: boot to first HLS segment ${SEG1:-?} s (emulated; reboot ${BOOT_SEG:-?} s); userland memory: brume $bn processes RSS $(mb "$brss") PSS $(mb "$bpss"), all $an processes RSS $(mb "$arss") PSS $(mb "$apss"), kernel+userland used $(mb "${SYS1:-?}")"
finish
