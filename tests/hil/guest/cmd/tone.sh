# tone.sh HZ SECONDS: plays a sine into the loopback's playback side (device 0,
# subdevice 0; it comes out of capture device 1, subdevice 0) in the background.
card=$(awk '/\[Loopback/ {print $1; exit}' /proc/asound/cards)
[ -n "$card" ] || { echo "no Loopback card"; exit 1; }
hil-probe tone "/dev/snd/pcmC${card}D0p" "${1:-1000}" "${2:-10}" >/tmp/tone.log 2>&1 &
echo "tone started: pid $! on /dev/snd/pcmC${card}D0p"
