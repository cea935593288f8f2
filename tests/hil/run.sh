#!/usr/bin/env bash
# The real-driver tier: Debian's own amd64 and arm64 kernels under QEMU (TCG) with
# vivid (V4L2), snd-aloop (ALSA) and gpio-sim, each running the real `brume serve` as
# the appliance does, driven from the host over port forwards on 127.0.0.1 only.
#
#     tests/hil/run.sh [--only synthetic|camera] [--arch amd64|arm64]
#
# Groups of tests (per guest):
#   synthetic  the guest boots, the kernel drivers are there (/dev/video0 from vivid,
#              the Loopback card, a gpio-sim /dev/gpiochipN), and the guest's brume
#              serves the synthetic stream `demo`, read from the host by ffprobe.
#   camera     a stream `cam` from vivid's /dev/video0 + the ALSA loopback:
#              `brume devices` and GET /api/v1/devices list them, ffprobe sees H.264 at
#              vivid's 640x360 and an audio track, a 1 kHz tone played into the
#              loopback's playback side comes out of the stream at 1 kHz, and unbinding
#              vivid (unplug) shows `device-missing` in the API until it is bound again
#              and the stream comes back. GPIO through the real character device
#              (gpio-sim): pulling the button line low (a press) starts a recording of
#              `demo` and lights the LED line (read back from sim_gpioN/value); a
#              second press stops both; the file plays and lasts as long as the
#              presses were apart (within 1 s). The V4L2 M2M encoder code through
#              `brume bench encoder` on vicodec's FWHT encoder (built out of tree),
#              with the single-planar API (m2m) and the multi-planar one (m2m-mplane,
#              what the Pi's bcm2835-codec uses): 60 frames of 640x360, keyframes,
#              non-trivial sizes, exit 0.
# Default: both groups. With --only synthetic the guests run a configuration without
# the camera stream. With --only camera the synthetic checks still run first (they
# prove the guest works) but are not counted.
#
# Run as root on Debian 12 (installs packages, fetches the kernels; idempotent, no
# stdin; everything is cached under target/hil). Prints `N passed, M failed` and exits
# non-zero on any failure. Artifacts (serial consoles, brume logs, probes) go to
# target/hil/out/<arch>/.
# Environment: CARGO_BUILD_JOBS (default 2), BRUME_HIL_WAIT (seconds for a guest and its
# streams to come up, default 180).
set -uo pipefail
SELF=$(cd "$(dirname "$0")" && pwd)/$(basename "$0")
cd "$(dirname "$0")/../.." || exit 2
ROOT=$PWD
HERE=$ROOT/tests/hil
export HIL=$ROOT/target/hil
only=all
arches=(amd64 arm64)
while [ $# -gt 0 ]; do
    case "$1" in
        --only) only=${2:-}; shift 2 ;;
        --only=*) only=${1#--only=}; shift ;;
        --arch) arches=("${2:-}"); shift 2 ;;
        --arch=*) arches=("${1#--arch=}"); shift ;;
        -h | --help) sed -n '2,/^set -uo/p' "$SELF" | sed '$d; s/^# \{0,1\}//'; exit 0 ;;
        *) echo "usage: tests/hil/run.sh [--only synthetic|camera] [--arch amd64|arm64]" >&2; exit 2 ;;
    esac
done
case "$only" in all | synthetic | camera) ;; *) echo "--only: synthetic or camera" >&2; exit 2 ;; esac
for a in "${arches[@]}"; do case "$a" in amd64 | arm64) ;; *) echo "--arch: amd64 or arm64" >&2; exit 2 ;; esac; done

jobs=${CARGO_BUILD_JOBS:-2}
wait_s=${BRUME_HIL_WAIT:-180}
export HIL_PASSWORD=hil-admin-password
mkdir -p "$HIL/out"

T0=$(date +%s)
log() { echo "[hil +$(($(date +%s) - T0))s] $*"; }
passed=0
failed=0
counting=1
pass() {
    if [ $counting = 1 ]; then passed=$((passed + 1)); echo "PASS: $*"; else echo "ok (not counted): $*"; fi
}
fail() {
    if [ $counting = 1 ]; then failed=$((failed + 1)); echo "FAIL: $*"; else echo "failed (not counted): $*"; fi
}
SYNTHETIC_TESTS=(boot drivers serve demo-hls)
CAMERA_TESTS=(devices cam-hls tone unplug replug gpio-press gpio-release gpio-file m2m m2m-mplane)
finish() {
    log "done"
    echo
    echo "$passed passed, $failed failed"
    [ "$failed" -eq 0 ]
    exit
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

# ---------------------------------------------------------------- host setup
log "setup: packages, kernels, gpio-sim, busybox"
if ! "$HERE/setup.sh"; then
    fail "host setup (tests/hil/setup.sh)"
    finish
fi
# shellcheck disable=SC1091
. "$HIL/kernel.env"

# ---------------------------------------------------------------- builds
if command -v rustup >/dev/null && ! grep -qx aarch64-unknown-linux-gnu <<<"$(rustup target list --installed 2>/dev/null)"; then
    for _ in 1 2 3; do rustup target add aarch64-unknown-linux-gnu && break; sleep 5; done
fi
if [ ! -f .cargo/config.toml ]; then
    export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER=${CARGO_TARGET_AARCH64_UNKNOWN_LINUX_GNU_LINKER:-aarch64-linux-gnu-gcc}
    export PKG_CONFIG_ALLOW_CROSS=1
    export PKG_CONFIG_LIBDIR_aarch64_unknown_linux_gnu=${PKG_CONFIG_LIBDIR_aarch64_unknown_linux_gnu:-/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig}
fi
declare -A brume probe triple=([amd64]=x86_64-unknown-linux-gnu [arm64]=aarch64-unknown-linux-gnu)
target_dir=${CARGO_TARGET_DIR:-$ROOT/target}
for a in "${arches[@]}"; do
    t=${triple[$a]}
    if [ "$a" = amd64 ]; then target_args=(); dir=$target_dir/release; else target_args=(--target "$t"); dir=$target_dir/$t/release; fi
    log "building brume for $t"
    if cargo build --release -p brume "${target_args[@]}" -j "$jobs" >"$HIL/out/build-$a.log" 2>&1; then
        brume[$a]=$dir/brume
    else
        tail -30 "$HIL/out/build-$a.log"
        fail "$a: cargo build --release -p brume ${target_args[*]}"
    fi
    if CARGO_TARGET_DIR=$HIL/probe cargo build --release --locked --manifest-path "$HERE/probe/Cargo.toml" \
        "${target_args[@]}" -j "$jobs" >"$HIL/out/probe-$a.log" 2>&1; then
        if [ "$a" = amd64 ]; then probe[$a]=$HIL/probe/release/hil-probe; else probe[$a]=$HIL/probe/$t/release/hil-probe; fi
    else
        tail -30 "$HIL/out/probe-$a.log"
        fail "$a: build tests/hil/probe"
    fi
done

# ---------------------------------------------------------------- guest helpers
free_port() { python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }
# jget FILE EXPR: a Python expression over the JSON document `d` in FILE.
jget() { python3 -c 'import json, sys; d = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2" 2>/dev/null; }
secs() { echo $(($(date +%s) - $1)); }

# boot ARCH MODE: starts QEMU; sets QPID, WEB (brume, guest :80), CTL (control, guest :81).
boot() {
    local arch=$1 mode=$2 qemu web ctl
    local out=$HIL/out/$arch
    for _ in 1 2 3; do
        web=$(free_port) ctl=$(free_port)
        [ "$web" != "$ctl" ] || continue
        local net=(-netdev "user,id=n,restrict=on,hostfwd=tcp:127.0.0.1:$web-:80,hostfwd=tcp:127.0.0.1:$ctl-:81"
            -device "virtio-net-pci,netdev=n,romfile=")
        if [ "$arch" = amd64 ]; then
            # No KVM here (no vmx/svm): TCG, and the uncompressed vmlinux (PVH entry).
            qemu=(qemu-system-x86_64 -accel tcg -M q35 -cpu max -kernel "$K/vmlinux-amd64"
                -append "console=ttyS0 panic=-1 quiet hil.mode=$mode")
        else
            # cortex-a72: `-cpu max` is several times slower under TCG (pointer auth).
            qemu=(qemu-system-aarch64 -accel tcg -M virt -cpu cortex-a72 -kernel "$K/mods-arm64/boot/vmlinuz-$ABI-arm64"
                -append "console=ttyAMA0 panic=-1 quiet hil.mode=$mode")
        fi
        # timeout: a QEMU orphaned by a killed harness still ends.
        timeout -k 10 1800 "${qemu[@]}" -smp 1 -m 1024 -nographic -no-reboot -initrd "$HIL/initrd-$arch.cpio" "${net[@]}" \
            </dev/null >"$out/serial.log" 2>&1 &
        QPID=$!
        sleep 1
        if kill -0 "$QPID" 2>/dev/null; then
            WEB=http://127.0.0.1:$web CTL=http://127.0.0.1:$ctl
            return 0
        fi
        wait "$QPID" 2>/dev/null
        QPID=""
        grep -q 'host forwarding' "$out/serial.log" || break # not a port race: give up
    done
    return 1
}
# ctl NAME [ARG...]: runs /hil/cmd/NAME.sh in the guest; output on stdout.
ctl() {
    local q=$1
    shift
    for a in "$@"; do q="$q&$a"; done
    curl -fsS -m "${CTL_TIMEOUT:-60}" "$CTL/cgi-bin/run?$q"
}
# wait_for SECONDS COMMAND...: retries COMMAND until it succeeds (gives up early when
# QEMU or brume has exited).
wait_for() {
    local limit=$1 t
    shift
    t=$(date +%s)
    while [ "$(secs "$t")" -lt "$limit" ]; do
        "$@" && return 0
        kill -0 "$QPID" 2>/dev/null || return 1
        grep -aq '^HIL: brume exited' "$out/serial.log" && return 1
        sleep 0.5
    done
    return 1
}
TOKEN=""
login() {
    TOKEN=$(curl -fsS -m 60 -X POST "$WEB/api/v1/login" -H "Content-Type: application/json" -d "{\"password\":\"$HIL_PASSWORD\"}" 2>/dev/null | python3 -c 'import json, sys; print(json.load(sys.stdin)["token"])' 2>/dev/null)
    [ -n "$TOKEN" ]
}
api() { curl -fsS -m 30 -H "Authorization: Bearer $TOKEN" "$WEB$1"; }
playlist_ready() { grep -q '^#EXTINF' <<<"$(curl -fsS -m 10 "$WEB/hls/$1/index.m3u8" 2>/dev/null)"; }
# probe_streams URL FILE: ffprobe's view of the streams of URL, as JSON, into FILE.
probe_streams() {
    timeout 120 ffprobe -v error -rw_timeout 30000000 -of json \
        -show_entries stream=codec_type,codec_name,width,height,sample_rate,channels "$1" >"$2" 2>"$2.err"
}
stream_state() { api /api/v1/streams/cam >"$out/cam-status.json" 2>/dev/null && jget "$out/cam-status.json" 'd["status"]["state"]'; }

# ---------------------------------------------------------------- tests of one guest
synthetic_tests() {
    local arch=$1
    # The kernel drivers, as the guest's /init reports them on the serial console.
    if grep -aEq '^HIL: video /dev/video0 name=vivid-[0-9]+-vid-cap exists=yes' "$out/serial.log" &&
        grep -aEq '^HIL: alsa card[0-9]+ \[Loopback *\]' "$out/serial.log" &&
        grep -aEq '^HIL: gpio /dev/gpiochip[0-9]+ dev=gpio-sim\.[0-9]+ label=hil-bank lines=8' "$out/serial.log"; then
        pass "$arch: drivers: $(grep -aE '^HIL: (video|gpio)' "$out/serial.log" | cut -d' ' -f2-3 | tr '\n' ' ')+ Loopback card"
    else
        fail "$arch: drivers: missing: $(grep -aE '^HIL: (video|alsa|gpio)' "$out/serial.log" | tr '\n' ';')"
    fi
    # The synthetic stream, read from the host.
    local t
    t=$(date +%s)
    if ! wait_for "$wait_s" curl -fs -m 10 -o /dev/null "$WEB/api/v1/setup"; then
        fail "$arch: serve: brume serve does not answer on the guest's :80 ($(secs "$t") s): $(ctl log 5 2>&1 | tr '\n' ' ' | cut -c1-300)"
        fail "$arch: demo-hls: brume serve is not running"
        return 1
    fi
    pass "$arch: serve: brume serve answers on the guest's :80 ($(secs "$T_BOOT") s after QEMU started)"
    if wait_for "$wait_s" playlist_ready demo && probe_streams "$WEB/hls/demo/index.m3u8" "$out/demo.json" &&
        [ "$(jget "$out/demo.json" '[(s["codec_name"], s.get("width"), s.get("height")) for s in d["streams"] if s["codec_type"] == "video"][0]')" = "('h264', 320, 180)" ]; then
        pass "$arch: demo-hls: ffprobe reads /hls/demo/index.m3u8: h264 320x180 ($(secs "$t") s)"
    else
        fail "$arch: demo-hls: ffprobe on /hls/demo/index.m3u8: $(cat "$out/demo.json" "$out/demo.json.err" 2>/dev/null | tr -s ' \n' ' ' | cut -c1-300)"
    fi
}

camera_tests() {
    local arch=$1 t
    login || echo "note: $arch: cannot log in to the API"
    # 1. Enumeration: `brume devices` in the guest, and the API.
    ctl devices >"$out/devices.txt" 2>&1
    sed -n '/^{/,/^}/p' "$out/devices.txt" >"$out/devices.json"
    api /api/v1/devices >"$out/api-devices.json" 2>/dev/null
    local want='any(v["path"] == "/dev/video0" and v["driver"] == "vivid" and any(s["width"] == 640 and s["height"] == 360 for f in v["formats"] for s in f["sizes"]) for v in d["video"]) and any(a["id"] == "hw:CARD=Loopback,DEV=1" for a in d["audio"])'
    local dv da
    dv=$(jget "$out/devices.json" "$want")
    da=$(jget "$out/api-devices.json" "$want")
    if [ "$dv" = True ] && [ "$da" = True ]; then
        pass "$arch: devices: brume devices and GET /api/v1/devices list vivid's /dev/video0 (640x360) and hw:CARD=Loopback,DEV=1"
    else
        fail "$arch: devices: vivid's /dev/video0 with 640x360 and hw:CARD=Loopback,DEV=1 listed by brume devices: ${dv:-no JSON}, by GET /api/v1/devices: ${da:-no JSON} (see ${out#"$ROOT"/}/devices.txt, api-devices.json)"
    fi
    # 2. The camera stream: H.264 at vivid's resolution and an audio track.
    t=$(date +%s)
    if wait_for 120 playlist_ready cam && probe_streams "$WEB/hls/cam/index.m3u8" "$out/cam.json" &&
        [ "$(jget "$out/cam.json" '[(s["codec_name"], s.get("width"), s.get("height")) for s in d["streams"] if s["codec_type"] == "video"][0]')" = "('h264', 640, 360)" ] &&
        [ -n "$(jget "$out/cam.json" '[s["codec_name"] for s in d["streams"] if s["codec_type"] == "audio"][0]')" ]; then
        pass "$arch: cam-hls: ffprobe reads /hls/cam/index.m3u8: h264 640x360 + $(jget "$out/cam.json" '"%s %s Hz x%s" % [(s["codec_name"], s.get("sample_rate"), s.get("channels")) for s in d["streams"] if s["codec_type"] == "audio"][0]') ($(secs "$t") s)"
    else
        fail "$arch: cam-hls: state '$(stream_state)', last_error '$(jget "$out/cam-status.json" 'd["status"]["last_error"]')': $(cat "$out/cam.json" "$out/cam.json.err" 2>/dev/null | tr -s ' \n' ' ' | cut -c1-300)"
    fi
    if [ "$(stream_state)" != live ]; then
        local t
        for t in tone unplug replug; do fail "$arch: $t: the camera stream is not live (state '$(stream_state)')"; done
        return 1
    fi
    # 3. A 1 kHz tone into the loopback's playback side comes out of the stream at 1 kHz.
    if ctl tone 1000 15 >"$out/tone-start.txt" 2>&1 && grep -q 'tone started' "$out/tone-start.txt"; then
        sleep 3
        timeout 60 ffmpeg -v error -nostdin -y -rw_timeout 30000000 -i "$WEB/cam.ts" -t 8 -vn -ac 1 -ar 48000 -f s16le "$out/cam-audio.raw" 2>"$out/cam-audio.err"
        python3 "$HERE/tone.py" "$out/cam-audio.raw" >"$out/tone.json" 2>&1
        ctl tonelog >"$out/tone-player.txt" 2>&1
        local f
        f=$(jget "$out/tone.json" '"%s %s %s" % (d["zero_crossing_hz"], d["peak_hz"], d["rms"])')
        if [ "$(jget "$out/tone.json" 'abs(d["zero_crossing_hz"] - 1000) <= 10 and abs(d["peak_hz"] - 1000) <= 10 and d["rms"] > 1000 and d["peak_share"] > 0.5')" = True ]; then
            pass "$arch: tone: a 1000 Hz tone into hw:Loopback,0 comes out of /cam.ts at $(jget "$out/tone.json" 'd["zero_crossing_hz"]') Hz (zero crossings; peak $(jget "$out/tone.json" 'd["peak_hz"]') Hz, rms $(jget "$out/tone.json" 'd["rms"]'))"
        else
            fail "$arch: tone: measured ${f:-nothing} (zero-crossing Hz, peak Hz, rms): $(cat "$out/tone.json" "$out/cam-audio.err" | tr -s ' \n' ' ' | cut -c1-300)"
        fi
    else
        fail "$arch: tone: could not start the player: $(cat "$out/tone-start.txt")"
    fi
    # 4. Unplug (unbind vivid): the API shows the device missing; replug: the stream is back.
    local epoch0 frames0
    api /api/v1/streams/cam >"$out/cam-before.json" 2>/dev/null
    epoch0=$(jget "$out/cam-before.json" 'd["status"]["epoch"]')
    t=$(date +%s)
    if ! ctl unplug >"$out/unplug.txt" 2>&1 || ! grep -q '^unbound' "$out/unplug.txt"; then
        fail "$arch: unplug: cannot unbind vivid: $(cat "$out/unplug.txt")"
        fail "$arch: replug: not unplugged"
        return 1
    fi
    missing() { [ "$(stream_state)" = device-missing ]; }
    if wait_for 60 missing; then
        pass "$arch: unplug: state device-missing after $(secs "$t") s, last_error: $(jget "$out/cam-status.json" 'd["status"]["last_error"]' | cut -c1-120)"
    else
        fail "$arch: unplug: state stayed '$(stream_state)' for 60 s"
    fi
    ctl replug >"$out/replug.txt" 2>&1
    t=$(date +%s)
    back() {
        [ "$(stream_state)" = live ] && [ "$(jget "$out/cam-status.json" 'd["status"]["epoch"]')" != "$epoch0" ] || return 1
        frames0=$(jget "$out/cam-status.json" 'd["status"]["frames"]')
        sleep 2
        api /api/v1/streams/cam >"$out/cam-status.json" 2>/dev/null
        [ "$(jget "$out/cam-status.json" "d['status']['frames'] > $frames0")" = True ]
    }
    if grep -q '^bound' "$out/replug.txt" && wait_for 90 back && probe_streams "$WEB/hls/cam/index.m3u8" "$out/cam-after.json" &&
        [ "$(jget "$out/cam-after.json" '[(s["codec_name"], s.get("width"), s.get("height")) for s in d["streams"] if s["codec_type"] == "video"][0]')" = "('h264', 640, 360)" ]; then
        pass "$arch: replug: stream live again (epoch $epoch0 -> $(jget "$out/cam-status.json" 'd["status"]["epoch"]')) $(secs "$t") s after bind, ffprobe h264 640x360"
    else
        fail "$arch: replug: state '$(stream_state)', $(cat "$out/replug.txt" | tr '\n' ' ')"
    fi
}

gpio_tests() {
    local arch=$1 t0 t1 between rec file
    login || true
    led() { ctl gpio 5 2>/dev/null | sed -n 's/^value //p'; }
    press() { ctl gpio 3 pull-down >/dev/null 2>&1 && sleep 0.3 && ctl gpio 3 pull-up >/dev/null 2>&1; }
    recording() { api /api/v1/streams/demo >"$out/demo-status.json" 2>/dev/null && jget "$out/demo-status.json" 'd["status"]["recording"]["active"]'; }
    api /api/v1/gpio >"$out/gpio.json" 2>/dev/null
    if [ "$(jget "$out/gpio.json" 'd.get("error")')" != None ] || [ "$(led)" != 0 ]; then
        fail "$arch: gpio-press: gpio not ready (LED value '$(led)'): $(tr -s ' \n' ' ' <"$out/gpio.json" | cut -c1-300)"
        fail "$arch: gpio-release: gpio not ready"
        fail "$arch: gpio-file: gpio not ready"
        return 1
    fi
    press
    t0=$(date +%s.%N)
    on() { [ "$(recording)" = True ] && [ "$(led)" = 1 ]; }
    if wait_for 30 on; then
        pass "$arch: gpio-press: button line 3 pulled low on $(jget "$out/gpio.json" 'd["device"]'): recording started, LED line 5 reads 1"
    else
        fail "$arch: gpio-press: recording '$(recording)', LED '$(led)': $(ctl log 20 2>&1 | grep -i gpio | tr '\n' ' ' | cut -c1-300)"
        fail "$arch: gpio-release: no recording to stop"
        fail "$arch: gpio-file: no recording"
        return 1
    fi
    sleep 6
    recording >/dev/null
    file=$(jget "$out/demo-status.json" 'd["status"]["recording"]["file"]')
    press
    t1=$(date +%s.%N)
    between=$(python3 -c "print(round($t1 - $t0, 2))")
    off() { [ "$(recording)" = False ] && [ "$(led)" = 0 ]; }
    if wait_for 30 off; then
        pass "$arch: gpio-release: second press stopped the recording and the LED reads 0"
    else
        fail "$arch: gpio-release: recording '$(recording)', LED '$(led)'"
    fi
    rec=$out/gpio-recording.mp4
    if curl -fsS -m 120 -H "Authorization: Bearer $TOKEN" -o "$rec" "$WEB/api/v1/recordings/$file" &&
        d=$(timeout 60 ffprobe -v error -show_entries format=duration -of csv=p=0 "$rec") &&
        [ "$(python3 -c "print(abs($d - $between) <= 1.0)")" = True ] &&
        timeout 120 ffmpeg -v error -nostdin -i "$rec" -f null - 2>"$rec.err" && [ ! -s "$rec.err" ]; then
        pass "$arch: gpio-file: $file decodes clean, $d s for presses $between s apart"
    else
        fail "$arch: gpio-file: '$file': duration '${d:-?}' s for presses $between s apart: $(head -c 300 "$rec.err" 2>/dev/null)"
    fi
}

m2m_tests() {
    local arch=$1 api test line f k b m node listed
    for api in single multi; do
        test=m2m
        [ $api = multi ] && test=m2m-mplane
        CTL_TIMEOUT=120 ctl m2m $api 60 640x360 >"$out/$test.txt" 2>&1
        line=$(grep -m1 '^encoder ' "$out/$test.txt")
        node=$(sed -n 's/^vicodec multiplanar=. encoder //p' "$out/$test.txt")
        f=$(echo "$line" | sed -n 's/.* frames=\([0-9]*\) of 60 .*/\1/p')
        k=$(echo "$line" | sed -n 's/.* keyframes=\([0-9]*\) .*/\1/p')
        b=$(echo "$line" | sed -n 's/.* bytes=\([0-9]*\) .*/\1/p')
        m=$(echo "$line" | sed -n 's/.* min_frame_bytes=\([0-9]*\) .*/\1/p')
        # `brume devices` (taken by the camera tests, with vicodec as loaded at boot)
        # lists vicodec's encoder under "encoders", and neither of its decoders.
        listed=yes
        [ $api = single ] && [ "$(jget "$out/devices.json" 'd["encoders"]')" != "['$node']" ] && listed=no
        if grep -q '^bench-exit 0$' "$out/$test.txt" && [ "${f:-0}" = 60 ] && [ "${k:-0}" -ge 2 ] &&
            [ "${m:-0}" -gt 64 ] && [ "${b:-0}" -gt 60000 ] && [ $listed = yes ]; then
            pass "$arch: $test: brume bench encoder on vicodec ($node, multiplanar=$([ $api = multi ] && echo Y || echo N)): ${line#*: }"
        else
            fail "$arch: $test: encoders in brume devices: $(jget "$out/devices.json" 'd["encoders"]'); $(tr -s '\n' ' ' <"$out/$test.txt" | cut -c1-400)"
        fi
    done
}

# ---------------------------------------------------------------- each guest
mode=synthetic
[ "$only" = synthetic ] || mode=camera
planned() {
    local t
    for t in "${SYNTHETIC_TESTS[@]}"; do echo "$1: $t"; done
    [ "$only" = synthetic ] || for t in "${CAMERA_TESTS[@]}"; do echo "$1: $t"; done
}
# fail_guest ARCH REASON: tests that cannot run count as failed, never as skipped.
fail_guest() {
    local t
    while read -r t; do fail "$t $2"; done < <(planned "$1")
}
for arch in "${arches[@]}"; do
    out=$HIL/out/$arch
    rm -rf "$out"
    mkdir -p "$out"
    if [ -z "${brume[$arch]:-}" ] || [ -z "${probe[$arch]:-}" ]; then
        fail_guest "$arch" "(no binaries to test)"
        continue
    fi
    if ! "$HERE/mkinitramfs.sh" "$arch" "$HIL/initrd-$arch.cpio" "${brume[$arch]}" "${probe[$arch]}" >"$out/initramfs.log" 2>&1; then
        cat "$out/initramfs.log"
        fail_guest "$arch" "(no initramfs)"
        continue
    fi
    log "$(tail -1 "$out/initramfs.log")"
    log "$arch: booting ($mode)"
    T_BOOT=$(date +%s)
    if ! boot "$arch" "$mode"; then
        fail_guest "$arch" "(QEMU did not start: $(tail -3 "$out/serial.log" | tr '\n' ' '))"
        continue
    fi
    [ "$only" = camera ] && counting=0
    if wait_for "$wait_s" curl -fs -m 10 -o /dev/null "$CTL/cgi-bin/run?status"; then
        pass "$arch: boot: Debian $ABI-$arch under QEMU TCG, control server up after $(secs "$T_BOOT") s"
        synthetic_tests "$arch"
        counting=1
        if [ "$only" != synthetic ]; then
            camera_tests "$arch"
            gpio_tests "$arch"
            m2m_tests "$arch"
        fi
    else
        counting=1
        fail_guest "$arch" "(the guest did not come up within $wait_s s: $(tail -5 "$out/serial.log" | tr '\n' ' '))"
    fi
    CTL_TIMEOUT=20 ctl log 2000 >"$out/brume.log" 2>&1
    CTL_TIMEOUT=20 ctl status >"$out/status.txt" 2>&1
    stop_guest
    grep -aq 'brume exited' "$out/serial.log" && echo "note: $arch: $(grep -a 'brume exited' "$out/serial.log")"
    log "$arch: done ($(secs "$T_BOOT") s); artifacts in ${out#"$ROOT"/}"
done
finish
