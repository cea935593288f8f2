//! The synthetic camera: a moving test picture with the wall-clock time and a frame
//! counter burned in, encoded to H.264 in software, plus a tone encoded to AAC, paced
//! in real time. Works on any machine; it is the embedded default stream.
//!
//! Like a camera, it follows the clock: each frame takes the slot of the monotonic
//! clock it is made in ([`FrameClock`]), a machine too slow for the frame rate drops
//! frames (counted in the stream's `dropped_frames`) instead of letting media time fall
//! behind, keyframes come once a second of media time, and the tone is generated up to
//! the clock's time.

use super::sink::Sink;
use crate::env::Env;
use brume_codec::{AacEncoder, H264Encoder, JpegEncoder, TestPattern, Tone, I420};
use brume_format::{Codec, Frame, Track};
use brume_hw::{monotonic_us, FrameClock};
use std::sync::atomic::Ordering;
use std::time::Duration;

pub struct Params {
    pub width: u32,
    pub height: u32,
    pub fps: u32,
    pub bitrate_bps: u32,
    pub audio: bool,
    pub tone_hz: u32,
    pub jpeg_fps: u32,
    pub processes: Vec<crate::config::StreamProcess>,
}

const SAMPLE_RATE: u32 = 48_000;
const VIDEO: u32 = 1;
const AUDIO: u32 = 2;
const JPEG: u32 = 3;

pub fn run(env: &Env, stream: &str, p: Params) -> Result<(), String> {
    let mut writer = Sink::open(env, stream, "testsrc", &p.processes).map_err(|e| e.to_string())?;
    tracing::info!(
        epoch = writer.epoch(),
        width = p.width,
        height = p.height,
        fps = p.fps,
        "synthetic camera started"
    );
    let mut pattern = TestPattern::new(p.width, p.height);
    let mut pic = I420::new(p.width, p.height);
    // One keyframe per second of media time (placed below): HLS segments of one second.
    let mut enc =
        H264Encoder::new(p.width, p.height, p.fps, p.bitrate_bps, 0).map_err(|e| e.to_string())?;
    let mut audio = if p.audio {
        let aac = AacEncoder::new(SAMPLE_RATE, 1, 96_000).map_err(|e| e.to_string())?;
        Some((aac, Tone::new(p.tone_hz as f32, SAMPLE_RATE, 1, 0.3)))
    } else {
        None
    };
    // Snapshots at half size above 640 pixels: thumbnails and MJPEG stay light.
    let mut jpeg = if p.jpeg_fps > 0 {
        Some(JpegEncoder::new(75, if p.width > 640 { 2 } else { 1 }).map_err(|e| e.to_string())?)
    } else {
        None
    };
    let jpeg_us = 1_000_000 / p.jpeg_fps.max(1) as i64;
    let frame_us = 1_000_000 / p.fps as i64;
    let mut clock = FrameClock::new(monotonic_us(), p.fps);
    let mut tracks_set = false;
    let mut next_key_us = 0i64;
    let mut next_jpeg_us = 0i64;
    let mut dropped = 0u64;
    let mut audio_samples: u64 = 0; // samples handed to the encoder
    let mut audio_aus: u64 = 0; // access units written
    let mut pcm = vec![0i16; 1024];
    loop {
        if super::STOP.load(Ordering::SeqCst) {
            break;
        }
        let wait = clock.wait_us(monotonic_us());
        if wait > 0 {
            std::thread::sleep(Duration::from_micros(wait as u64));
        }
        let slot = clock.take(monotonic_us());
        if slot.skipped > 0 {
            writer.add_dropped(slot.skipped);
            dropped += slot.skipped;
            if dropped.is_power_of_two() || slot.skipped > p.fps as u64 {
                tracing::warn!(
                    dropped,
                    "the synthetic camera cannot keep up: frames dropped"
                );
            }
        }
        let (n, dts) = (slot.index, slot.time_us);
        let label = format!("{stream} #{n:06}");
        pattern.render(n, &[&wall_clock(), &label], &mut pic);
        let key = dts >= next_key_us;
        let Some(v) = enc.encode(&pic, key).map_err(|e| e.to_string())? else {
            continue;
        };
        if v.key {
            next_key_us = dts + 1_000_000 - frame_us / 2;
        }
        if !tracks_set {
            let avcc = enc.avcc().ok_or("encoder gave no parameter sets")?.to_vec();
            let mut tracks = vec![Track::video(VIDEO, Codec::H264, avcc, p.width, p.height)];
            if let Some((aac, _)) = &audio {
                tracks.push(Track::audio(
                    AUDIO,
                    Codec::Aac,
                    aac.asc().to_vec(),
                    SAMPLE_RATE,
                    1,
                ));
            }
            if let Some(j) = &jpeg {
                let (w, h) = j.output_size(p.width, p.height);
                tracks.push(Track::video(JPEG, Codec::Jpeg, Vec::new(), w, h));
            }
            writer.set_tracks(&tracks).map_err(|e| e.to_string())?;
            tracks_set = true;
        }
        writer
            .write(&Frame {
                track: VIDEO,
                dts,
                cts: 0,
                key: v.key,
                data: v.data,
            })
            .map_err(|e| e.to_string())?;
        if let Some(j) = &mut jpeg {
            if dts >= next_jpeg_us {
                next_jpeg_us = dts + jpeg_us - frame_us / 2;
                let data = j.encode(&pic).map_err(|e| e.to_string())?;
                writer
                    .write(&Frame {
                        track: JPEG,
                        dts,
                        cts: 0,
                        key: true,
                        data,
                    })
                    .map_err(|e| e.to_string())?;
            }
        }
        // Audio up to the end of this video frame. After a stall longer than a second
        // the tone skips ahead (like a microphone's overrun) instead of bursting.
        if let Some((aac, tone)) = &mut audio {
            let until = (dts + frame_us) as u64 * SAMPLE_RATE as u64 / 1_000_000;
            let chunk = pcm.len() as u64;
            if until > audio_samples + SAMPLE_RATE as u64 {
                let skip = (until - audio_samples) / chunk * chunk - chunk;
                audio_samples += skip;
                audio_aus += skip / chunk;
            }
            while audio_samples < until {
                tone.fill(&mut pcm);
                audio_samples += chunk;
                for au in aac.encode(&pcm).map_err(|e| e.to_string())? {
                    let adts = (audio_aus * 1024 * 1_000_000 / SAMPLE_RATE as u64) as i64;
                    audio_aus += 1;
                    writer
                        .write(&Frame {
                            track: AUDIO,
                            dts: adts,
                            cts: 0,
                            key: true,
                            data: au,
                        })
                        .map_err(|e| e.to_string())?;
                }
            }
        }
    }
    tracing::info!("synthetic camera stopped");
    writer.finish();
    Ok(())
}

/// "YYYY-MM-DD HH:MM:SS.mmm" in UTC, without a date-time dependency.
pub fn wall_clock() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let secs = t.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = brume_format::clock::civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}.{:03}",
        rem / 3600,
        rem / 60 % 60,
        rem % 60,
        t.subsec_millis()
    )
}

#[cfg(test)]
mod tests {
    #[test]
    fn wall_clock_has_the_expected_shape() {
        let c = super::wall_clock();
        assert_eq!(c.len(), 23, "{c}");
        assert!(c.starts_with("20"), "{c}");
        assert_eq!(&c[4..5], "-");
        assert_eq!(&c[10..11], " ");
    }
}
