//! Fake devices for tests and machines without hardware: a camera that produces a
//! moving YUYV picture with a white flash every `flash_every` and a microphone that
//! produces a tone with a beep at the same instants, both paced by CLOCK_MONOTONIC,
//! so A/V sync can be checked end to end. Like real devices they follow the clock when
//! their reader is late: the camera skips the frames it missed (a gap in `sequence`),
//! the microphone overruns once it is more than its buffer behind.

use crate::{
    monotonic_us, AudioChunk, AudioConfig, AudioSource, FrameClock, PixelFormat, Result,
    VideoFrame, VideoSource,
};
use std::time::Duration;

/// How long a flash (and a beep) lasts.
pub const FLASH_US: i64 = 100_000;

/// True while `t_us` (since the fake's start) is inside a flash/beep.
pub fn flashing(t_us: i64, every_us: i64) -> bool {
    every_us > 0 && t_us.rem_euclid(every_us) < FLASH_US
}

pub struct FakeCamera {
    width: u32,
    height: u32,
    fps: u32,
    clock: FrameClock,
    flash_every_us: i64,
}

impl FakeCamera {
    pub fn new(width: u32, height: u32, fps: u32, flash_every: Duration) -> FakeCamera {
        FakeCamera {
            width: width & !1,
            height,
            fps: fps.max(1),
            clock: FrameClock::new(monotonic_us(), fps),
            flash_every_us: flash_every.as_micros() as i64,
        }
    }
}

impl VideoSource for FakeCamera {
    fn format(&self) -> (PixelFormat, u32, u32, u32) {
        (PixelFormat::Yuyv, self.width, self.height, self.fps)
    }

    fn next_frame(&mut self, timeout: Duration) -> Result<Option<VideoFrame>> {
        let wait = self.clock.wait_us(monotonic_us());
        if wait > timeout.as_micros() as i64 {
            std::thread::sleep(timeout);
            return Ok(None);
        }
        if wait > 0 {
            std::thread::sleep(Duration::from_micros(wait as u64));
        }
        let slot = self.clock.take(monotonic_us());
        let t = slot.time_us;
        let flash = flashing(t, self.flash_every_us);
        let (w, h) = (self.width as usize, self.height as usize);
        let mut data = vec![0u8; w * h * 2];
        let bar = (slot.index as usize * 4) % w.max(1);
        for y in 0..h {
            for x in (0..w).step_by(2) {
                let i = (y * w + x) * 2;
                let luma = if flash {
                    235
                } else if (x + w - bar) % w < w / 8 {
                    180
                } else {
                    40
                };
                data[i] = luma;
                data[i + 1] = 128;
                data[i + 2] = luma;
                data[i + 3] = 128;
            }
        }
        Ok(Some(VideoFrame {
            data,
            time_us: self.clock.start_us() + t,
            sequence: slot.index as u32,
        }))
    }
}

/// How far the fake microphone's reader may fall behind before it overruns.
const BUFFER_US: i64 = 500_000;

pub struct FakeMicrophone {
    config: AudioConfig,
    start_us: i64,
    samples: u64,
    flash_every_us: i64,
}

impl FakeMicrophone {
    pub fn new(config: AudioConfig, flash_every: Duration) -> FakeMicrophone {
        FakeMicrophone {
            config,
            start_us: monotonic_us(),
            samples: 0,
            flash_every_us: flash_every.as_micros() as i64,
        }
    }
}

impl AudioSource for FakeMicrophone {
    fn config(&self) -> AudioConfig {
        self.config
    }

    fn read(&mut self) -> Result<AudioChunk> {
        let rate = self.config.rate.max(1) as i64;
        let frames = 1024u64;
        // A reader more than the device's buffer behind loses what did not fit, as
        // ALSA's ring does: the next chunk is the newest one.
        let behind = monotonic_us() - (self.start_us + self.samples as i64 * 1_000_000 / rate);
        let mut overruns = 0;
        if behind > BUFFER_US {
            let lost = (behind * rate / 1_000_000) as u64 / frames * frames - frames;
            self.samples += lost;
            overruns = 1;
        }
        let first_us = self.start_us + self.samples as i64 * 1_000_000 / rate;
        let end_us = self.start_us + (self.samples + frames) as i64 * 1_000_000 / rate;
        let wait = end_us - monotonic_us();
        if wait > 0 {
            std::thread::sleep(Duration::from_micros(wait as u64));
        }
        let ch = self.config.channels.max(1) as usize;
        let mut out = Vec::with_capacity(frames as usize * ch);
        for k in 0..frames {
            let s = self.samples + k;
            let t_us = s as i64 * 1_000_000 / rate;
            // Silence, with a loud 1 kHz beep during each flash.
            let v = if flashing(t_us, self.flash_every_us) {
                let phase = (s as f64) * 1000.0 / rate as f64 * std::f64::consts::TAU;
                (phase.sin() * 20_000.0) as i16
            } else {
                0
            };
            for _ in 0..ch {
                out.push(v);
            }
        }
        self.samples += frames;
        Ok(AudioChunk {
            samples: out,
            time_us: first_us,
            overruns,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn late_readers_lose_frames_and_samples_not_time() {
        let mut cam = FakeCamera::new(64, 48, 50, Duration::from_secs(10));
        let mut mic = FakeMicrophone::new(
            AudioConfig {
                rate: 48000,
                channels: 1,
            },
            Duration::from_secs(10),
        );
        let first = cam.next_frame(Duration::from_secs(1)).unwrap().unwrap();
        mic.read().unwrap();
        std::thread::sleep(Duration::from_millis(700));
        let f = cam.next_frame(Duration::from_secs(1)).unwrap().unwrap();
        let now = monotonic_us();
        assert!(
            f.sequence >= first.sequence + 30,
            "frames skipped: {}",
            f.sequence
        );
        assert!(
            now - f.time_us < 25_000,
            "stamped {} µs before now",
            now - f.time_us
        );
        let a = mic.read().unwrap();
        assert_eq!(a.overruns, 1, "the microphone overran");
        assert!(
            (now - a.time_us).abs() < 60_000,
            "chunk {} µs from now",
            now - a.time_us
        );
    }

    #[test]
    fn flash_and_beep_share_instants() {
        let every = Duration::from_secs(1);
        let mut cam = FakeCamera::new(64, 48, 50, every);
        let mut mic = FakeMicrophone::new(
            AudioConfig {
                rate: 48000,
                channels: 1,
            },
            every,
        );
        let f = cam.next_frame(Duration::from_secs(1)).unwrap().unwrap();
        assert_eq!(f.data[0], 235, "the first frame is inside the first flash");
        let a = mic.read().unwrap();
        assert!(
            a.samples.iter().any(|s| s.abs() > 10_000),
            "the first chunk beeps"
        );
        assert!(flashing(1_050_000, 1_000_000) && !flashing(1_200_000, 1_000_000));
    }
}
