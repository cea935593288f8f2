//! A sine tone generator.

use std::f64::consts::TAU;

/// A sine generator producing interleaved signed 16-bit samples, the same signal in every
/// channel, with continuous phase across [`Tone::fill`] calls.
#[derive(Clone, Debug)]
pub struct Tone {
    /// Phase increment per sample frame, radians, of the base tone.
    step: f64,
    /// Current phase, radians, in `0..TAU`.
    phase: f64,
    channels: usize,
    /// Which channel the next sample written belongs to (so partial frames continue).
    next_channel: usize,
    /// Peak amplitude in sample units.
    peak: f64,
    /// Sample of the current frame (repeated for each channel).
    current: i16,
    beep: bool,
}

impl Tone {
    /// A tone of `freq_hz` at `sample_rate` with `channels` interleaved channels and a
    /// peak `amplitude` relative to full scale (clamped to `0.0..=1.0`). A zero sample
    /// rate or channel count is treated as 1; a non-finite frequency as silence.
    pub fn new(freq_hz: f32, sample_rate: u32, channels: u32, amplitude: f32) -> Self {
        let rate = f64::from(sample_rate.max(1));
        let freq = if freq_hz.is_finite() {
            f64::from(freq_hz)
        } else {
            0.0
        };
        let amplitude = if amplitude.is_finite() {
            amplitude.clamp(0.0, 1.0)
        } else {
            0.0
        };
        Tone {
            step: (TAU * freq / rate).rem_euclid(TAU),
            phase: 0.0,
            channels: channels.max(1) as usize,
            next_channel: 0,
            peak: f64::from(amplitude) * f64::from(i16::MAX),
            current: 0,
            beep: false,
        }
    }

    /// Switches the beep on or off: while on, the tone sounds one octave higher (twice
    /// the frequency) at the same amplitude, so a beep is easy to tell from the base tone
    /// in a recording. The phase stays continuous across the switch.
    pub fn set_beep(&mut self, on: bool) {
        self.beep = on;
    }

    /// Fills `out` with interleaved samples, continuing where the previous call stopped
    /// (also mid-frame, if the previous buffer was not a multiple of the channel count).
    pub fn fill(&mut self, out: &mut [i16]) {
        let step = if self.beep {
            (2.0 * self.step).rem_euclid(TAU)
        } else {
            self.step
        };
        for s in out.iter_mut() {
            if self.next_channel == 0 {
                // `as` saturates, and |peak * sin| <= i16::MAX anyway.
                self.current = (self.peak * self.phase.sin()).round() as i16;
                self.phase += step;
                if self.phase >= TAU {
                    self.phase -= TAU;
                }
            }
            *s = self.current;
            self.next_channel = (self.next_channel + 1) % self.channels;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn crossings(s: &[i16]) -> usize {
        s.windows(2).filter(|w| (w[0] < 0) != (w[1] < 0)).count()
    }

    #[test]
    fn continuous_across_calls_and_channels() {
        let mut a = Tone::new(440.0, 48_000, 2, 0.5);
        let mut whole = vec![0i16; 4801];
        a.fill(&mut whole);
        let mut b = Tone::new(440.0, 48_000, 2, 0.5);
        let mut parts = vec![0i16; 4801];
        let (x, rest) = parts.split_at_mut(7);
        let (y, z) = rest.split_at_mut(1000);
        b.fill(x);
        b.fill(y);
        b.fill(z);
        assert_eq!(whole, parts);
        assert!(whole.chunks_exact(2).all(|f| f[0] == f[1]));
        let peak = whole.iter().map(|v| v.unsigned_abs()).max().unwrap();
        assert!((16_000..=16_384).contains(&peak), "peak {peak}");
    }

    #[test]
    fn frequency_and_beep() {
        let mut t = Tone::new(1000.0, 48_000, 1, 0.8);
        let mut buf = vec![0i16; 48_000];
        t.fill(&mut buf);
        let c = crossings(&buf);
        assert!((1990..=2010).contains(&c), "{c} crossings");
        t.set_beep(true);
        t.fill(&mut buf);
        let c = crossings(&buf);
        assert!((3990..=4010).contains(&c), "{c} crossings");
    }

    #[test]
    fn odd_parameters() {
        let mut buf = [1i16; 16];
        Tone::new(f32::NAN, 0, 0, f32::INFINITY).fill(&mut buf);
        assert!(buf.iter().all(|&v| v == 0));
        Tone::new(1e9, 8000, 3, 2.0).fill(&mut buf);
        Tone::new(-5.0, 8000, 1, -1.0).fill(&mut buf);
    }
}
