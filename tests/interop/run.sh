#!/usr/bin/env bash
# Brume's outputs in real players and its RTMP ingest from real publishers: hls.js and
# the native <video> in Debian's Chromium, VLC, mpv, GStreamer playbin/playbin3 and
# ffmpeg against HLS, MP4, TS, MJPEG and JPEG; ffmpeg and GStreamer publishers. See
# interop.mjs for what each cell checks. Prints the matrices, "N passed, M failed".
#
# As root on Debian it installs what is missing (VLC, mpv, GStreamer with the good, bad,
# ugly and libav plugins, ffmpeg, Chromium, Node.js) and creates the unprivileged
# system user VLC runs as (VLC refuses to run as root). playwright-core and hls.js come
# from the committed package-lock.json. Builds brume unless BRUME_BIN names a binary.
#
#     tests/interop/run.sh [--measure] [--only players|publishers]
#
# --measure: request-to-first-frame per player on HLS, MP4 and TS, median of 5, one
# player at a time (about 6 minutes), instead of the matrices.
set -euo pipefail
cd "$(dirname "$0")"
VLC_USER=${INTEROP_VLC_USER:-brume-interop}
export INTEROP_VLC_USER=$VLC_USER

installed() { [[ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" == *'ok installed'* ]]; }

need=()
command -v vlc >/dev/null || need+=(vlc-bin vlc-plugin-base)
command -v mpv >/dev/null || need+=(mpv)
command -v gst-launch-1.0 >/dev/null || need+=(gstreamer1.0-tools)
command -v ffmpeg >/dev/null || need+=(ffmpeg)
[ -x "${CHROMIUM:-/usr/bin/chromium}" ] || need+=(chromium)
command -v node >/dev/null || need+=(nodejs)
command -v npm >/dev/null || need+=(npm)
if command -v dpkg-query >/dev/null; then
    for p in gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad \
        gstreamer1.0-plugins-ugly gstreamer1.0-libav vlc-plugin-base; do
        installed "$p" || need+=("$p")
    done
fi
if [ ${#need[@]} -gt 0 ]; then
    if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
        echo "tests/interop: installing ${need[*]}"
        export DEBIAN_FRONTEND=noninteractive
        for i in 1 2 3; do apt-get -o DPkg::Lock::Timeout=600 update -qq && break || sleep 5; done
        apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends "${need[@]}" >/dev/null
    else
        echo "tests/interop: please install: ${need[*]}" >&2
        exit 1
    fi
fi
if [ "$(id -u)" = 0 ] && ! id -u "$VLC_USER" >/dev/null 2>&1; then
    useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$VLC_USER"
fi

lock_version() { node -p "require('./package-lock.json').packages['node_modules/$1'].version"; }
have_version() { node -p "try { require('./node_modules/$1/package.json').version } catch { '' }"; }
for m in playwright-core hls.js; do
    if [ "$(lock_version "$m")" != "$(have_version "$m")" ]; then
        npm ci --no-audit --no-fund --loglevel=error
        break
    fi
done

if [ -z "${BRUME_BIN:-}" ]; then
    (cd ../.. && cargo build -p brume -j "${CARGO_BUILD_JOBS:-2}")
    export BRUME_BIN="$PWD/../../target/debug/brume"
fi
exec node interop.mjs "$@"
