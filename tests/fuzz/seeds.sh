#!/usr/bin/env bash
# Seed corpora for the fuzz targets, made by real tools: ffmpeg writes H.264, AAC, FLV,
# MPEG-TS, JPEG and raw camera frames; ffmpeg publishes to a real brume over RTMP
# through a recording relay (both directions kept); curl sends its request heads to a
# recording listener; the configurations shipped in the repository.
#
#   tests/fuzz/seeds.sh [OUT_DIR]      (default tests/fuzz/corpus; one dir per target)
#
# Needs ffmpeg, curl and python3. The RTMP capture needs a built brume: $BRUME_BIN, or
# target/debug/brume (skipped with a note if there is none). Small hand-made seeds
# are committed in tests/fuzz/seeds/ and used alongside.
set -euo pipefail
cd "$(dirname "$0")/../.."
out="${1:-tests/fuzz/corpus}"
mkdir -p "$out"
out="$(cd "$out" && pwd)"
for t in rtmp_session rtmp_client flv_tags h264 aac ts_demux http_head rtsp_request rtsp_auth config jpeg pixels v4l2; do
    mkdir -p "$out/$t"
done
tmp="$(mktemp -d)"
brume_pid=
cleanup() {
    if [ -n "$brume_pid" ]; then
        kill "$brume_pid" 2>/dev/null || true
        wait "$brume_pid" 2>/dev/null || true
    fi
    rm -rf "$tmp"
}
trap cleanup EXIT
ff() { ffmpeg -nostdin -hide_banner -loglevel error -y "$@"; }
video() { echo "testsrc2=size=$1:rate=10"; }

# H.264 Annex B: several profiles, sizes and GOPs (SPS, PPS, IDR and P slices).
ff -f lavfi -i "$(video 64x48)" -t 0.5 -c:v libx264 -profile:v baseline -g 3 -f h264 "$out/h264/baseline.264"
ff -f lavfi -i "$(video 96x64)" -t 0.5 -c:v libx264 -profile:v high -bf 2 -f h264 "$out/h264/high-bframes.264"
ff -f lavfi -i "$(video 34x18)" -t 0.3 -c:v libx264 -pix_fmt yuv444p -f h264 "$out/h264/high444-odd.264"
ff -f lavfi -i "$(video 48x32)" -t 0.3 -c:v libx264 -x264-params slices=3 -f h264 "$out/h264/slices.264"

# FLV (what an RTMP publisher sends as message bodies): the tags' bodies, and the
# sequence headers' avcC and ASC for the h264 and aac targets.
ff -f lavfi -i "$(video 64x48)" -f lavfi -i "sine=frequency=440:sample_rate=44100" -t 0.5 \
    -c:v libx264 -g 5 -c:a aac -b:a 32k -f flv "$tmp/av.flv"
ff -f lavfi -i "sine=frequency=300:sample_rate=8000" -t 0.3 -ac 1 -c:a aac -f flv "$tmp/mono8k.flv"
python3 - "$out" "$tmp/av.flv" "$tmp/mono8k.flv" <<'PY'
import sys
out = sys.argv[1]
for path in sys.argv[2:]:
    data = open(path, "rb").read()
    pos, n, kinds = 9 + 4, 0, {}
    while pos + 11 <= len(data):
        kind, size = data[pos], int.from_bytes(data[pos + 1:pos + 4], "big")
        body = data[pos + 11:pos + 11 + size]
        pos += 11 + size + 4
        k = kinds.get(kind, 0)
        kinds[kind] = k + 1
        name = path.rsplit("/", 1)[1].split(".")[0]
        if kind in (8, 9) and k < 4:
            open(f"{out}/flv_tags/{name}-{kind}-{k}", "wb").write(body)
        if kind == 9 and len(body) > 5 and body[1] == 0:
            open(f"{out}/h264/{name}-avcC", "wb").write(body[5:])
        if kind == 8 and len(body) > 2 and body[1] == 0:
            open(f"{out}/aac/{name}-asc", "wb").write(body[2:])
PY

# MPEG-TS with H.264 and AAC (the TS sources and stream processes' output).
ff -f lavfi -i "$(video 64x48)" -f lavfi -i "sine=frequency=440:sample_rate=48000" -t 0.6 \
    -c:v libx264 -g 3 -c:a aac -b:a 32k -f mpegts "$out/ts_demux/av.ts"
ff -f lavfi -i "$(video 32x32)" -t 0.4 -c:v libx264 -f mpegts "$out/ts_demux/video.ts"
ff -f lavfi -i "sine=frequency=440:sample_rate=22050" -t 0.4 -c:a aac -f mpegts "$out/ts_demux/audio.ts"

# JPEG frames as MJPEG cameras send them (4:2:0, 4:2:2, 4:4:4, grey, odd sizes).
for f in yuvj420p:32x24 yuvj422p:40x16 yuvj444p:16x16 gray:24x8 yuvj420p:17x9; do
    ff -f lavfi -i "$(video "${f#*:}")" -frames:v 1 -pix_fmt "${f%%:*}" -c:v mjpeg -f mjpeg \
        "$out/jpeg/${f%%:*}-${f#*:}.jpg"
done

# Raw camera frames: a 4-byte little-endian size (width, height), then the frame.
for f in yuyv422:16x8 nv12:16x8 yuv420p:16x8 yuyv422:7x5 nv12:9x3; do
    size="${f#*:}"
    python3 -c 'import sys; w, h = map(int, sys.argv[1].split("x")); sys.stdout.buffer.write(w.to_bytes(2, "little") + h.to_bytes(2, "little"))' \
        "$size" >"$out/pixels/${f%%:*}-$size"
    ff -f lavfi -i "$(video "$size")" -frames:v 1 -pix_fmt "${f%%:*}" -f rawvideo "$tmp/frame"
    cat "$tmp/frame" >>"$out/pixels/${f%%:*}-$size"
done

# V4L2 buffers: an 8-byte (data_offset, bytesused) header, then the buffer: an
# encoder's coded keyframe.
python3 - "$out/v4l2/h264-key" "$out/h264/baseline.264" <<'PY'
import sys
data = open(sys.argv[2], "rb").read()[:2000]
open(sys.argv[1], "wb").write((0).to_bytes(4, "little") + len(data).to_bytes(4, "little") + data)
PY

# The configurations shipped in the repository.
for f in yocto/meta-brume/recipes-core/brume-appliance/files/brume.json tests/hil/guest/*.json; do
    [ -f "$f" ] && cp "$f" "$out/config/$(echo "$f" | tr / _)"
done

# HTTP request heads from curl, recorded by a listener that answers nothing useful.
cat >"$tmp/record.py" <<'PY'
import socket, sys, threading
out = sys.argv[1]
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(8)
print(srv.getsockname()[1], flush=True)
n = 0
while True:
    c, _ = srv.accept()
    c.settimeout(2)
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            b = c.recv(4096)
            if not b:
                break
            data += b
    except OSError:
        pass
    open(f"{out}/curl-{n}", "wb").write(data)
    n += 1
    c.sendall(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
    c.close()
PY
coproc REC { exec python3 "$tmp/record.py" "$out/http_head"; }
rec_pid=$REC_PID
read -r port <&"${REC[0]}"
base="http://127.0.0.1:$port"
c() { curl -s -o /dev/null --max-time 5 "$@" || true; }
c "$base/hls/demo/index.m3u8"
c -I "$base/demo.mp4"
c -0 "$base/demo.ts?token=abc&x=%20y"
c -H 'Range: bytes=0-' -H 'Connection: keep-alive' -A 'VLC/3.0.18 LibVLC/3.0.18' "$base/demo.mjpg"
c -u admin:secret -H 'Accept: application/json' "$base/api/v1/streams"
c -H 'Cookie: brume_session=0123456789abcdef' -e "$base/" "$base/demo.jpg"
kill "$rec_pid" 2>/dev/null || true
wait "$rec_pid" 2>/dev/null || true

# RTMP: ffmpeg publishes to a real brume through a relay that records each direction
# (publisher to server: the session's input; server to publisher: the push client's).
bin="${BRUME_BIN:-$PWD/target/debug/brume}"
if [ ! -x "$bin" ]; then
    echo "seeds.sh: no brume binary at $bin: RTMP captures skipped (committed seeds only)"
    exit 0
fi
ports="$(python3 -c 'import socket
s = [socket.socket() for _ in range(2)]
for x in s: x.bind(("127.0.0.1", 0))
print(" ".join(str(x.getsockname()[1]) for x in s))')"
read -r http_port rtmp_port <<<"$ports"
mkdir -p "$tmp/run"
echo '{"streams":{"cam":{"source":{"type":"rtmp","key":"seedkey"}}}}' >"$tmp/run/brume.json"
BRUME_SHM_PREFIX="brumefuzzseed$$" BRUME_ADMIN_PASSWORD=fuzz-seeds BRUME_RTSP_LISTEN=off \
    "$bin" serve --config "$tmp/run/brume.json" --listen "127.0.0.1:$http_port" \
    --rtmp "127.0.0.1:$rtmp_port" >"$tmp/run/serve.log" 2>&1 &
brume_pid=$!
for _ in $(seq 300); do
    kill -0 "$brume_pid" 2>/dev/null || break
    curl -s -o /dev/null --max-time 1 "http://127.0.0.1:$http_port/" && break
    sleep 0.1
done
cat >"$tmp/relay.py" <<'PY'
import select, socket, sys, time
rtmp_port, up_path, down_path = int(sys.argv[1]), sys.argv[2], sys.argv[3]
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(1)
print(srv.getsockname()[1], flush=True)
srv.settimeout(30)
c, _ = srv.accept()
for _ in range(100):
    try:
        s = socket.create_connection(("127.0.0.1", rtmp_port))
        break
    except OSError:
        time.sleep(0.1)
up, down = open(up_path, "wb"), open(down_path, "wb")
peer = {c: (s, up), s: (c, down)}
deadline = time.time() + 20
while peer and time.time() < deadline:
    r, _, _ = select.select(list(peer), [], [], 1)
    for x in r:
        b = x.recv(65536)
        to, rec = peer[x]
        if not b:
            peer = {}
            break
        rec.write(b)
        to.sendall(b)
up.close()
down.close()
PY
coproc RELAY { exec python3 "$tmp/relay.py" "$rtmp_port" "$tmp/up" "$tmp/down"; }
relay_pid=$RELAY_PID
read -r relay_port <&"${RELAY[0]}"
ff -re -f lavfi -i "$(video 64x48)" -f lavfi -i "sine=frequency=440:sample_rate=44100" -t 1 \
    -c:v libx264 -g 5 -c:a aac -b:a 32k -f flv "rtmp://127.0.0.1:$relay_port/live/cam?key=seedkey" ||
    echo "seeds.sh: ffmpeg's publish ended with an error (the capture is kept)"
wait "$relay_pid" || true
if [ ! -s "$tmp/up" ]; then
    echo "seeds.sh: the RTMP capture is empty; brume's log:" >&2
    cat "$tmp/run/serve.log" >&2
    exit 1
fi
cp "$tmp/up" "$out/rtmp_session/ffmpeg-publish"
cp "$tmp/down" "$out/rtmp_client/brume-replies"
echo "seeds.sh: RTMP capture: $(wc -c <"$tmp/up") bytes up, $(wc -c <"$tmp/down") bytes down"
