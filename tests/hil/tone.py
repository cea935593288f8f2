#!/usr/bin/env python3
"""tone.py RAW [RATE]: the dominant frequency of decoded audio (mono s16le), std only.

Finds the loudest 0.5 s window, then measures its frequency two ways: zero
crossings (with a little hysteresis) and a Goertzel scan from 50 Hz to 4 kHz (10 Hz
steps, refined to 1 Hz around the peak). Prints one JSON line:
{"rms": ..., "zero_crossing_hz": ..., "peak_hz": ..., "peak_share": ...}
where peak_share is the fraction of the window's energy at the peak frequency.
"""
import json
import math
import struct
import sys


def goertzel_power(x, rate, f):
    w = 2.0 * math.pi * f / rate
    c = 2.0 * math.cos(w)
    s1 = s2 = 0.0
    for v in x:
        s0 = v + c * s1 - s2
        s2, s1 = s1, s0
    return s1 * s1 + s2 * s2 - c * s1 * s2


def main():
    path = sys.argv[1]
    rate = int(sys.argv[2]) if len(sys.argv) > 2 else 48000
    data = open(path, "rb").read()
    n = len(data) // 2
    x = struct.unpack("<%dh" % n, data[: 2 * n])
    win = rate // 2
    if n < win:
        print(json.dumps({"error": "only %d samples" % n}))
        return 1
    # The loudest window (the tone may start or end inside the recording).
    best, best_e = 0, -1.0
    for start in range(0, n - win + 1, win // 4):
        e = sum(v * v for v in x[start : start + win : 4])
        if e > best_e:
            best, best_e = start, e
    w = [float(v) for v in x[best : best + win]]
    mean = sum(w) / len(w)
    w = [v - mean for v in w]
    energy = sum(v * v for v in w)
    rms = math.sqrt(energy / len(w))
    # Zero crossings with hysteresis (10% of the RMS).
    h = 0.1 * rms
    state, crossings, first, last = 0, 0, None, None
    for i, v in enumerate(w):
        s = 1 if v > h else (-1 if v < -h else 0)
        if s and s != state:
            if state:
                crossings += 1
                if first is None:
                    first = i
                last = i
            state = s
    zc = (crossings - 1) / 2.0 / ((last - first) / rate) if crossings > 2 and last > first else 0.0
    # Goertzel scan on a 0.2 s slice (enough for 5 Hz resolution), then refine.
    sl = w[: rate // 5]
    scan = [(goertzel_power(sl, rate, f), f) for f in range(50, 4001, 10)]
    _, f0 = max(scan)
    fine = [(goertzel_power(sl, rate, f), f) for f in range(max(1, f0 - 10), f0 + 11)]
    p, peak = max(fine)
    # Share of the slice's energy at the peak (a pure tone gives ~1).
    sl_energy = sum(v * v for v in sl) or 1.0
    share = 2.0 * p / (len(sl) * sl_energy)
    print(json.dumps({"rms": round(rms, 1), "zero_crossing_hz": round(zc, 1), "peak_hz": peak,
                      "peak_share": round(share, 3), "window_start_s": round(best / rate, 2)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
