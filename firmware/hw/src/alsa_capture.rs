//! ALSA capture (the `alsa` crate over libasound): device enumeration and interleaved
//! 16-bit capture with overrun recovery.

use crate::{monotonic_us, AudioChunk, AudioConfig, AudioDeviceInfo, AudioSource, Error, Result};
use alsa::pcm::{Access, Format, HwParams, PCM};
use alsa::{Direction, ValueOr};

/// Frames read per call: ~21 ms at 48 kHz, one AAC frame.
const PERIOD: usize = 1024;

fn err(device: &str, op: &'static str, e: alsa::Error) -> Error {
    let errno = e.errno();
    if errno == libc::ENODEV || errno == libc::ENOENT || errno == libc::EBADFD {
        Error::Gone {
            device: device.to_string(),
            reason: e.to_string(),
        }
    } else {
        Error::Os {
            device: device.to_string(),
            op,
            source: std::io::Error::from_raw_os_error(errno),
        }
    }
}

/// Every ALSA capture device (card and device number).
pub fn list_devices() -> Vec<AudioDeviceInfo> {
    let mut out = Vec::new();
    for card in alsa::card::Iter::new().flatten() {
        let Ok(ctl) = alsa::Ctl::from_card(&card, false) else {
            continue;
        };
        let Ok(info) = ctl.card_info() else { continue };
        let card_id = info.get_id().unwrap_or("").to_string();
        let card_name = info.get_name().unwrap_or("").to_string();
        for dev in alsa::ctl::DeviceIter::new(&ctl) {
            if let Ok(pi) = ctl.pcm_info(dev as u32, 0, Direction::Capture) {
                out.push(AudioDeviceInfo {
                    id: format!("hw:CARD={card_id},DEV={dev}"),
                    card: card_name.clone(),
                    name: pi.get_name().unwrap_or("").to_string(),
                });
            }
        }
    }
    out
}

/// A running ALSA capture.
pub struct Capture {
    pcm: PCM,
    device: String,
    config: AudioConfig,
    overruns: u32,
    buf: Vec<i16>,
}

// SAFETY: the PCM handle is used from one thread at a time (it moves into the capture
// thread); libasound allows a handle to be used from any single thread.
unsafe impl Send for Capture {}

impl Capture {
    pub fn open(device: &str, want: AudioConfig) -> Result<Capture> {
        let pcm =
            PCM::new(device, Direction::Capture, false).map_err(|e| err(device, "open", e))?;
        let config = {
            let hwp = HwParams::any(&pcm).map_err(|e| err(device, "hw_params", e))?;
            hwp.set_access(Access::RWInterleaved)
                .map_err(|e| err(device, "access", e))?;
            hwp.set_format(Format::s16())
                .map_err(|e| err(device, "format S16", e))?;
            hwp.set_channels(want.channels)
                .map_err(|e| err(device, "channels", e))?;
            hwp.set_rate(want.rate, ValueOr::Nearest)
                .map_err(|e| err(device, "rate", e))?;
            hwp.set_period_size_near(PERIOD as alsa::pcm::Frames, ValueOr::Nearest)
                .map_err(|e| err(device, "period", e))?;
            hwp.set_buffer_size_near((PERIOD * 8) as alsa::pcm::Frames)
                .map_err(|e| err(device, "buffer", e))?;
            pcm.hw_params(&hwp)
                .map_err(|e| err(device, "hw_params", e))?;
            let rate = hwp.get_rate().map_err(|e| err(device, "rate", e))?;
            let channels = hwp.get_channels().map_err(|e| err(device, "channels", e))?;
            AudioConfig { rate, channels }
        };
        pcm.start().map_err(|e| err(device, "start", e))?;
        Ok(Capture {
            pcm,
            device: device.to_string(),
            buf: vec![0; PERIOD * config.channels as usize],
            config,
            overruns: 0,
        })
    }
}

impl AudioSource for Capture {
    fn config(&self) -> AudioConfig {
        self.config
    }

    fn read(&mut self) -> Result<AudioChunk> {
        loop {
            let io = self.pcm.io_i16().map_err(|e| err(&self.device, "io", e))?;
            match io.readi(&mut self.buf) {
                Ok(frames) => {
                    let ch = self.config.channels as usize;
                    // First sample's time: now, minus what we read, minus what waits.
                    let delay = self.pcm.delay().unwrap_or(0).max(0) as i64;
                    let rate = self.config.rate.max(1) as i64;
                    let time_us = monotonic_us() - (frames as i64 + delay) * 1_000_000 / rate;
                    let overruns = std::mem::take(&mut self.overruns);
                    return Ok(AudioChunk {
                        samples: self.buf[..frames * ch].to_vec(),
                        time_us,
                        overruns,
                    });
                }
                Err(e) if e.errno() == libc::EPIPE => {
                    // Overrun: samples were lost; recover and count it.
                    self.overruns += 1;
                    self.pcm
                        .prepare()
                        .map_err(|e| err(&self.device, "prepare", e))?;
                    self.pcm
                        .start()
                        .map_err(|e| err(&self.device, "start", e))?;
                }
                Err(e) if e.errno() == libc::EINTR || e.errno() == libc::EAGAIN => {}
                Err(e) => return Err(err(&self.device, "read", e)),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_missing_device_is_an_error_not_a_panic() {
        let r = super::Capture::open(
            "hw:CARD=NoSuchCard,DEV=0",
            crate::AudioConfig {
                rate: 48000,
                channels: 1,
            },
        );
        assert!(r.is_err());
        // Enumeration works on machines without sound cards too.
        let _ = super::list_devices();
    }
}
