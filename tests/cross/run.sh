#!/usr/bin/env bash
# Cross builds without containers: Debian's cross toolchains build `brume` for
# aarch64-unknown-linux-gnu and armv7-unknown-linux-gnueabihf, the stripped sizes are
# printed (target: < 10 MiB), and the aarch64 binary runs under qemu-user: `--version`
# and a short `serve` smoke test on loopback (HLS read by ffprobe, clean SIGTERM).
#
# Run as root on Debian 12 or newer (installs what it needs; idempotent; no stdin):
#     tests/cross/run.sh
# Environment: CARGO_BUILD_JOBS (default 2), BRUME_CROSS_WAIT (seconds to wait for the
# emulated server, default 90).
# Prints `N passed, M failed` and exits non-zero on any failure.
set -uo pipefail
cd "$(dirname "$0")/../.."
root=$PWD

jobs="${CARGO_BUILD_JOBS:-2}"
wait_s="${BRUME_CROSS_WAIT:-90}"
max_bytes=$((10 * 1024 * 1024))
targets=(aarch64-unknown-linux-gnu armv7-unknown-linux-gnueabihf)
declare -A triple=([aarch64-unknown-linux-gnu]=aarch64-linux-gnu [armv7-unknown-linux-gnueabihf]=arm-linux-gnueabihf)
declare -A qemu=([aarch64-unknown-linux-gnu]=qemu-aarch64 [armv7-unknown-linux-gnueabihf]=qemu-arm)
out="$root/target/cross"
mkdir -p "$out"

passed=0
failed=0
pass() { echo "PASS: $*"; passed=$((passed + 1)); }
fail() { echo "FAIL: $*"; failed=$((failed + 1)); }
finish() {
    echo
    echo "cross: $passed passed, $failed failed"
    [ "$failed" -eq 0 ]
    exit
}
now_ms() { date +%s%3N; }

# ---------------------------------------------------------------- toolchains
installed() { [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" == *'ok installed'* ]]; }
pkgs=(gcc-aarch64-linux-gnu g++-aarch64-linux-gnu libc6-dev-arm64-cross
    gcc-arm-linux-gnueabihf g++-arm-linux-gnueabihf libc6-dev-armhf-cross
    qemu-user qemu-user-binfmt pkg-config ffmpeg curl
    # libasound for the ALSA input (firmware/hw); libstdc++6:arm64 completes the
    # multiarch arm64 runtime that the `serve` smoke test runs on (see below).
    libasound2-dev:arm64 libasound2-dev:armhf libstdc++6:arm64)
if command -v dpkg >/dev/null && [ "$(id -u)" = 0 ]; then
    t0=$(now_ms)
    added=0
    for arch in arm64 armhf; do
        if ! grep -qx "$arch" <<<"$(dpkg --print-foreign-architectures)"; then
            dpkg --add-architecture "$arch"
            added=1
        fi
    done
    need=()
    for p in "${pkgs[@]}"; do installed "$p" || need+=("$p"); done
    if [ ${#need[@]} -gt 0 ] || [ "$added" = 1 ]; then
        echo "cross: installing ${need[*]}"
        # A mirror mid-sync fails one index now and then: retry, then go on with what we have.
        for i in 1 2 3; do
            apt-get update -qq && break
            echo "cross: apt-get update failed (try $i)"
            sleep $((i * 5))
        done
        if [ ${#need[@]} -gt 0 ]; then
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need[@]}" >"$out/apt.log" 2>&1 ||
                { tail -20 "$out/apt.log"; fail "apt-get install ${need[*]}"; finish; }
        fi
    fi
    echo "cross: toolchains ready in $((($(now_ms) - t0) / 1000)) s"
else
    echo "cross: not root on Debian: assuming the cross toolchains and qemu-user are installed"
fi
for t in "${targets[@]}"; do
    command -v "${triple[$t]}-g++" >/dev/null || { fail "${triple[$t]}-g++ missing"; finish; }
done

if command -v rustup >/dev/null; then
    for i in 1 2 3; do rustup target add "${targets[@]}" && break; sleep 5; done
fi

# `serve` re-executes itself for its children, so the kernel must hand aarch64 ELF
# files to qemu by itself (binfmt_misc, with Debian's qemu-user-binfmt entry).
binfmt=/proc/sys/fs/binfmt_misc
if [ ! -e "$binfmt/register" ] && [ "$(id -u)" = 0 ]; then
    mount -t binfmt_misc binfmt_misc "$binfmt" 2>/dev/null || true
fi
if [ -e "$binfmt/register" ] && [ ! -e "$binfmt/qemu-aarch64" ] && [ -f /usr/lib/binfmt.d/qemu-aarch64.conf ]; then
    cat /usr/lib/binfmt.d/qemu-aarch64.conf >"$binfmt/register" 2>/dev/null || true
fi

# ---------------------------------------------------------------- Cross.toml
# For users with Docker/Podman (`cross` reads only this file name): both targets get
# their architecture's libasound in pre-build.
if command -v python3 >/dev/null; then
    if python3 - "${targets[@]}" <<'PY'; then
import sys, tomllib
c = tomllib.load(open("Cross.toml", "rb"))
for t in sys.argv[1:]:
    pre = " ".join(c["target"][t]["pre-build"])
    assert "dpkg --add-architecture $CROSS_DEB_ARCH" in pre and "libasound2-dev:$CROSS_DEB_ARCH" in pre, t
assert "PKG_CONFIG_ALLOW_CROSS=1" in c["build"]["env"]["passthrough"]
PY
        pass "Cross.toml: pre-build for ${targets[*]}"
    else
        fail "Cross.toml: missing or incomplete"
    fi
fi

# ---------------------------------------------------------------- builds
declare -A build_s
for t in "${targets[@]}"; do
    t0=$(now_ms)
    if cargo build --release -p brume --target "$t" -j "$jobs" 2>"$out/build-$t.log"; then
        build_s[$t]=$((($(now_ms) - t0) / 1000))
        pass "cargo build --release --target $t (${build_s[$t]} s)"
    else
        tail -30 "$out/build-$t.log"
        fail "cargo build --release --target $t"
    fi
done

# ---------------------------------------------------------------- sizes, ELF, glibc
declare -A machine=([aarch64-unknown-linux-gnu]=AArch64 [armv7-unknown-linux-gnueabihf]=ARM)
for t in "${targets[@]}"; do
    bin="target/$t/release/brume"
    [ -f "$bin" ] || continue
    stripped="$out/brume-$t"
    "${triple[$t]}-strip" -o "$stripped" "$bin"
    size=$(stat -c %s "$stripped")
    mib=$(awk "BEGIN { printf \"%.2f\", $size / 1048576 }")
    if [ "$size" -lt "$max_bytes" ]; then
        pass "stripped size $t: $size bytes ($mib MiB) < 10 MiB"
    else
        fail "stripped size $t: $size bytes ($mib MiB) >= 10 MiB"
    fi
    if grep -q "Machine:.*${machine[$t]}" <<<"$("${triple[$t]}-readelf" -h "$stripped")"; then
        pass "$t: ELF machine ${machine[$t]}"
    else
        fail "$t: ELF machine is not ${machine[$t]}"
    fi
    # Debian 12 / Raspberry Pi OS bookworm ship glibc 2.36: nothing newer may be required.
    glibc=$("${triple[$t]}-objdump" -T "$stripped" | grep -o 'GLIBC_[0-9.]*' | sort -uV | tail -1)
    if [ -n "$glibc" ] && [ "$(printf '%s\nGLIBC_2.36\n' "$glibc" | sort -V | tail -1)" = GLIBC_2.36 ]; then
        pass "$t: needs $glibc (<= 2.36)"
    else
        fail "$t: needs ${glibc:-unknown glibc}"
    fi
done

# ---------------------------------------------------------------- qemu-user: --version
version=$(sed -n 's/^version *= *"\(.*\)"/\1/p' Cargo.toml | sed -n 1p)
for t in "${targets[@]}"; do
    bin="target/$t/release/brume"
    [ -f "$bin" ] || continue
    got=$("${qemu[$t]}" -L "/usr/${triple[$t]}" "$bin" --version 2>&1)
    if [ "$got" = "brume $version" ]; then
        pass "${qemu[$t]} brume --version: $got"
    else
        fail "${qemu[$t]} brume --version: $got"
    fi
done

# ---------------------------------------------------------------- qemu-user: serve
# Runs on the multiarch arm64 runtime (libc6:arm64, libasound2:arm64, libstdc++6:arm64),
# without -L: with -L /usr/aarch64-linux-gnu the loader comes from the cross libc
# (libc6-arm64-cross) but libasound pulls libc.so.6 from libc6:arm64, a different build,
# and forked children then spin before exec. `--version` above is unaffected.
bin="target/aarch64-unknown-linux-gnu/release/brume"
if [ ! -f "$bin" ]; then
    fail "serve smoke test: no aarch64 binary"
    finish
fi
if [ ! -e /lib/ld-linux-aarch64.so.1 ]; then
    fail "serve smoke test: no arm64 runtime (libc6:arm64) installed"
    finish
fi
if [ ! -e "$binfmt/qemu-aarch64" ]; then
    fail "serve smoke test: binfmt_misc has no qemu-aarch64 entry (serve re-executes itself)"
    finish
fi

port_free() { ! (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
port=$((20000 + $$ % 20000))
while ! port_free "$port" || ! port_free $((port + 1)); do port=$((port + 2)); done
rtmp=$((port + 1))
tmp=$(mktemp -d /tmp/brume-cross.XXXXXX)
prefix="brume-xtest-$$"
stream=smoke
cat >"$tmp/brume.json" <<EOF
{
  "version": 1,
  "streams": {
    "$stream": {
      "source": {"type": "testsrc", "width": 320, "height": 180, "fps": 10,
                 "bitrate_kbps": 300, "audio": true, "jpeg_fps": 0},
      "always_on": true
    }
  }
}
EOF
base="http://127.0.0.1:$port"
t0=$(now_ms)
BRUME_SHM_PREFIX="$prefix" BRUME_ADMIN_PASSWORD="cross-smoke-test" BRUME_RUN_DIR="$tmp/run" \
    setsid qemu-aarch64 "$bin" serve --config "$tmp/brume.json" \
    --listen "127.0.0.1:$port" --rtmp "127.0.0.1:$rtmp" >"$tmp/serve.log" 2>&1 </dev/null &
serve=$!
cleanup() {
    kill -KILL -- "-$serve" 2>/dev/null
    rm -f /dev/shm/"$prefix"-* /dev/shm/"$prefix".conns
}
trap cleanup EXIT

up=""
while [ $((($(now_ms) - t0) / 1000)) -lt "$wait_s" ] && kill -0 "$serve" 2>/dev/null; do
    if curl -fsS -m 5 -o /dev/null "$base/api/v1/setup" 2>/dev/null || curl -fsS -m 5 -o /dev/null "$base/" 2>/dev/null; then
        up=$(($(now_ms) - t0))
        break
    fi
    sleep 0.5
done
if [ -n "$up" ]; then
    pass "serve under qemu-user answers HTTP after $up ms"
else
    fail "serve under qemu-user did not answer within $wait_s s"
    tail -20 "$tmp/serve.log"
fi

playlist=""
if [ -n "$up" ]; then
    while [ $((($(now_ms) - t0) / 1000)) -lt $((wait_s * 2)) ] && kill -0 "$serve" 2>/dev/null; do
        if curl -fsS -m 10 -o "$tmp/index.m3u8" "$base/hls/$stream/index.m3u8" 2>/dev/null &&
            grep -q '^#EXTM3U' "$tmp/index.m3u8" && grep -q '^#EXTINF' "$tmp/index.m3u8"; then
            playlist=$(($(now_ms) - t0))
            break
        fi
        sleep 0.5
    done
    if [ -n "$playlist" ]; then
        pass "first HLS playlist with a segment under qemu-user: $playlist ms after start"
    else
        fail "no HLS playlist for $stream"
        tail -20 "$tmp/serve.log"
    fi
fi

if [ -n "$playlist" ]; then
    codec=$(timeout 120 ffprobe -v error -rw_timeout 30000000 -select_streams v:0 \
        -show_entries stream=codec_name -of csv=p=0 "$base/hls/$stream/index.m3u8" 2>"$tmp/ffprobe.log" | sed -n 1p)
    if [ "$codec" = h264 ]; then
        pass "ffprobe reads the HLS: video codec $codec"
    else
        fail "ffprobe on the HLS: codec '${codec}'"
        tail -5 "$tmp/ffprobe.log"
    fi
fi

if kill -0 "$serve" 2>/dev/null; then
    kill -TERM "$serve"
    stopped=""
    for _ in $(seq 1 120); do
        kill -0 -- "-$serve" 2>/dev/null || { stopped=1; break; }
        sleep 0.25
    done
    if [ -n "$stopped" ]; then
        wait "$serve" 2>/dev/null
        pass "SIGTERM stops serve and all its processes (exit $?)"
    else
        fail "processes of serve still running 30 s after SIGTERM"
        kill -KILL -- "-$serve" 2>/dev/null
        wait "$serve" 2>/dev/null
    fi
else
    fail "serve exited before SIGTERM"
    tail -20 "$tmp/serve.log"
fi
left=$(ls /dev/shm 2>/dev/null | grep -c "^$prefix" || true)
if [ "$left" -eq 0 ]; then
    pass "nothing left in /dev/shm with prefix $prefix"
else
    fail "$left objects left in /dev/shm with prefix $prefix"
fi
cp "$tmp/serve.log" "$out/serve-aarch64.log" 2>/dev/null
rm -rf "$tmp"

echo
echo "cross: figures"
for t in "${targets[@]}"; do
    [ -f "$out/brume-$t" ] && echo "  $t stripped: $(stat -c %s "$out/brume-$t") bytes; needs" \
        $("${triple[$t]}-readelf" -d "$out/brume-$t" | sed -n 's/.*Shared library: \[\(.*\)\]/\1/p')
done
[ -n "$up" ] && echo "  qemu-user aarch64 serve: HTTP after $up ms, first HLS playlist after ${playlist:-?} ms"
finish
