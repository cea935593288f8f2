# m2m [single|multi] [FRAMES] [WxH]: `brume bench encoder` on vicodec's FWHT encoder
# (the same V4L2 M2M API as the Pi's H.264 encoder), with vicodec loaded for the
# single-planar (default) or the multi-planar API (what bcm2835-codec uses).
api=${1:-single}
case "$api" in single) want=N ;; multi) want=Y ;; *) echo "single or multi"; exit 2 ;; esac
p=/sys/module/vicodec_oot/parameters/multiplanar
if [ "$(cat $p 2>/dev/null)" != "$want" ]; then
    rmmod vicodec_oot 2>/dev/null
    insmod /lib/extra/vicodec.ko multiplanar=$([ $want = Y ] && echo 1 || echo 0) || { echo "insmod vicodec failed"; exit 1; }
fi
dev=""
for v in /sys/class/video4linux/video*; do
    [ "$(cat "$v/name" 2>/dev/null)" = stateful-encoder ] && dev=/dev/${v##*/}
done
[ -n "$dev" ] && [ -c "$dev" ] || { echo "no vicodec stateful-encoder node"; exit 1; }
echo "vicodec multiplanar=$(cat $p) encoder $dev"
brume bench encoder "$dev" --codec fwht --frames "${2:-60}" --size "${3:-640x360}"
rc=$?
echo "bench-exit $rc"
exit $rc
