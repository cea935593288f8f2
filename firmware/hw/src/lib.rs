//! Brume's hardware boundary.
//!
//! Everything above this crate sees cameras and microphones through two small traits,
//! [`VideoSource`] and [`AudioSource`], so the whole pipeline runs in `cargo test` with
//! the [`fake`] implementations (synthetic pictures and tones, with a flash and a beep
//! at the same instants for A/V sync tests). The Linux implementations in [`v4l2`] and
//! [`alsa_capture`] are the only code in Brume that issues V4L2 or ALSA ioctls; they
//! are tested against the real kernel drivers (vivid, snd-aloop) under QEMU. Hardware
//! video encoders (V4L2 memory-to-memory: the Pi's bcm2835-codec H.264 encoder) are in
//! [`v4l2_m2m`], tested there against the kernel's vicodec.
//!
//! GPIO (buttons, LEDs) goes through the [`gpio::Gpio`] trait: in-process `sim` pins
//! for tests and laptops, the Linux GPIO character device on any board (tested with
//! gpio-sim under QEMU), and rppal on Raspberry Pi boards.

// Kernel and libasound types (time_t, long, snd_pcm_sframes_t) are 32-bit on armv7
// and 64-bit on aarch64/x86_64: casts that are no-ops on one target are needed on the
// other.
#![allow(clippy::unnecessary_cast)]

pub mod alsa_capture;
pub mod fake;
pub mod gpio;
pub mod v4l2;
pub mod v4l2_m2m;

pub use gpio::{ChipInfo as GpioChipInfo, Gpio};

use serde::Serialize;
use std::time::Duration;

/// Errors from capture devices and GPIO chips, with the device they concern.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The device does not exist (any more): unplugged, or the driver was unloaded.
    #[error("{device}: device gone: {reason}")]
    Gone { device: String, reason: String },
    /// The device exists but cannot do what was asked.
    #[error("{device}: {reason}")]
    Unsupported { device: String, reason: String },
    /// An OS call failed.
    #[error("{device}: {op}: {source}")]
    Os {
        device: String,
        op: &'static str,
        source: std::io::Error,
    },
}

pub type Result<T> = std::result::Result<T, Error>;

/// Pixel formats Brume handles.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum PixelFormat {
    /// Packed 4:2:2 YUYV.
    Yuyv,
    /// 4:2:0, Y plane then interleaved CbCr.
    Nv12,
    /// 4:2:0 planar (I420).
    Yu12,
    /// Motion JPEG: each frame a JPEG.
    Mjpeg,
    /// H.264 Annex B access units.
    H264,
}

impl PixelFormat {
    /// The V4L2 FourCC.
    pub fn fourcc(self) -> u32 {
        let b = match self {
            PixelFormat::Yuyv => b"YUYV",
            PixelFormat::Nv12 => b"NV12",
            PixelFormat::Yu12 => b"YU12",
            PixelFormat::Mjpeg => b"MJPG",
            PixelFormat::H264 => b"H264",
        };
        u32::from_le_bytes(*b)
    }

    pub fn from_fourcc(f: u32) -> Option<PixelFormat> {
        Some(match &f.to_le_bytes() {
            b"YUYV" => PixelFormat::Yuyv,
            b"NV12" => PixelFormat::Nv12,
            b"YU12" => PixelFormat::Yu12,
            b"MJPG" | b"JPEG" => PixelFormat::Mjpeg,
            b"H264" => PixelFormat::H264,
            _ => return None,
        })
    }

    pub fn is_raw(self) -> bool {
        matches!(
            self,
            PixelFormat::Yuyv | PixelFormat::Nv12 | PixelFormat::Yu12
        )
    }
}

/// A size a device offers, with its frame rates.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SizeInfo {
    pub width: u32,
    pub height: u32,
    /// Frames per second offered at this size (best first).
    pub fps: Vec<f64>,
}

/// A pixel format a device offers, with its sizes.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FormatInfo {
    /// FourCC as text ("YUYV", "MJPG", ...).
    pub fourcc: String,
    /// Brume's name, if Brume can use it.
    pub format: Option<PixelFormat>,
    pub description: String,
    pub sizes: Vec<SizeInfo>,
}

/// A V4L2 device.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct VideoDeviceInfo {
    /// The device node (/dev/videoN: may change across reboots and replugs).
    pub path: String,
    /// Stable names (/dev/v4l/by-id/..., /dev/v4l/by-path/...): use these in configs.
    pub stable_paths: Vec<String>,
    pub name: String,
    pub driver: String,
    pub bus: String,
    /// A capture device (camera).
    pub capture: bool,
    /// A memory-to-memory device (hardware codec), e.g. the Pi 4's H.264 encoder.
    pub m2m: bool,
    pub formats: Vec<FormatInfo>,
}

/// An ALSA capture device.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct AudioDeviceInfo {
    /// The name to configure, e.g. "hw:CARD=Loopback,DEV=1".
    pub id: String,
    pub card: String,
    pub name: String,
}

/// What a video capture should deliver.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct VideoConfig {
    /// None: the best the device offers (H.264, then MJPEG, then raw).
    pub format: Option<PixelFormat>,
    pub width: u32,
    pub height: u32,
    pub fps: u32,
}

/// One captured picture.
#[derive(Clone, Debug)]
pub struct VideoFrame {
    pub data: Vec<u8>,
    /// Capture time, CLOCK_MONOTONIC microseconds (the kernel's buffer timestamp).
    pub time_us: i64,
    /// The driver's frame counter: gaps are dropped frames.
    pub sequence: u32,
}

/// A camera, negotiated and streaming.
pub trait VideoSource: Send {
    /// What was negotiated: format, width, height, frames per second.
    fn format(&self) -> (PixelFormat, u32, u32, u32);
    /// The next frame; Ok(None) on timeout. `Error::Gone` when the device vanished.
    fn next_frame(&mut self, timeout: Duration) -> Result<Option<VideoFrame>>;
}

/// What an audio capture should deliver.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AudioConfig {
    pub rate: u32,
    pub channels: u32,
}

/// Captured samples.
#[derive(Clone, Debug, Default)]
pub struct AudioChunk {
    /// Interleaved signed 16-bit samples.
    pub samples: Vec<i16>,
    /// Capture time of the first sample, CLOCK_MONOTONIC microseconds.
    pub time_us: i64,
    /// Overruns (samples lost) recovered before this chunk.
    pub overruns: u32,
}

/// A microphone, configured and running.
pub trait AudioSource: Send {
    /// The negotiated rate and channel count.
    fn config(&self) -> AudioConfig;
    /// Blocks for the next chunk of samples.
    fn read(&mut self) -> Result<AudioChunk>;
}

/// CLOCK_MONOTONIC now, microseconds: the clock V4L2 buffer timestamps use.
pub fn monotonic_us() -> i64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid timespec pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as i64 * 1_000_000 + ts.tv_nsec as i64 / 1000
}

/// Frame slots on the monotonic clock, for sources that make their own frames (the
/// synthetic camera, the fakes). Slot `n` is at `start + n / fps`. A source takes the
/// slot the clock is in when it makes a frame and skips the slots it was too late for,
/// as a camera drops frames: media time follows the clock however slow the machine is,
/// never a frame count.
#[derive(Clone, Debug)]
pub struct FrameClock {
    start_us: i64,
    fps: u32,
    next: u64,
}

/// A frame's place on a [`FrameClock`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Slot {
    /// The slot's number since the clock's start (frame counters burn this in).
    pub index: u64,
    /// The slot's time, microseconds since the clock's start.
    pub time_us: i64,
    /// Slots skipped before this one because the source was late: dropped frames.
    pub skipped: u64,
}

impl FrameClock {
    pub fn new(start_us: i64, fps: u32) -> FrameClock {
        FrameClock {
            start_us,
            fps: fps.max(1),
            next: 0,
        }
    }

    pub fn start_us(&self) -> i64 {
        self.start_us
    }

    fn at(&self, index: u64) -> i64 {
        (index as i128 * 1_000_000 / self.fps as i128) as i64
    }

    /// Microseconds from `now_us` until the next slot is due (0 if it is due or late).
    pub fn wait_us(&self, now_us: i64) -> i64 {
        (self.start_us + self.at(self.next) - now_us).max(0)
    }

    /// Takes the newest slot that has begun at `now_us` (or the next one, if it has not
    /// begun yet), skipping any slots in between.
    pub fn take(&mut self, now_us: i64) -> Slot {
        let elapsed = (now_us - self.start_us).max(0) as i128;
        let current = (elapsed * self.fps as i128 / 1_000_000) as u64;
        let index = current.max(self.next);
        let skipped = index - self.next;
        self.next = index + 1;
        Slot {
            index,
            time_us: self.at(index),
            skipped,
        }
    }
}

#[cfg(test)]
mod frame_clock_tests {
    use super::FrameClock;

    #[test]
    fn on_time_frames_take_every_slot() {
        let mut c = FrameClock::new(1_000, 30);
        for n in 0..90u64 {
            let due = 1_000 + n as i64 * 1_000_000 / 30;
            assert_eq!(c.wait_us(due - 500), 500);
            assert_eq!(c.wait_us(due + 500), 0);
            let s = c.take(due + 500);
            assert_eq!((s.index, s.skipped), (n, 0));
        }
        assert_eq!(c.take(1_000 + 3_000_000).time_us, 3_000_000);
    }

    #[test]
    fn a_late_source_skips_slots_and_keeps_clock_time() {
        // 30 fps, but each frame takes 100 ms to make: a third of the frames, at the
        // right times, and two of every three slots counted as dropped.
        let mut c = FrameClock::new(0, 30);
        let mut now = 0i64;
        let mut dropped = 0;
        let mut last = None;
        while now < 10_000_000 {
            now += c.wait_us(now);
            let s = c.take(now);
            dropped += s.skipped;
            assert!(
                (now - s.time_us) < 33_334,
                "slot {} at {} for {now}",
                s.index,
                s.time_us
            );
            last = Some(s);
            now += 100_000;
        }
        let last = last.unwrap();
        assert!(
            last.time_us > 9_800_000,
            "media time follows the clock: {last:?}"
        );
        assert!((190..=205).contains(&dropped), "{dropped} dropped");
    }

    #[test]
    fn an_early_source_waits_for_its_slot() {
        let mut c = FrameClock::new(0, 25);
        assert_eq!(c.take(0).index, 0);
        assert_eq!(c.wait_us(10_000), 30_000);
        let s = c.take(10_000);
        assert_eq!((s.index, s.time_us, s.skipped), (1, 40_000, 0));
    }
}
