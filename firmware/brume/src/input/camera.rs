//! Camera streams: a V4L2 camera and/or an ALSA microphone as one stream.
//!
//! One capture thread per device sends frames to this process's writer thread.
//! * **Video.** H.264 cameras pass through (Annex B to Brume's layout). MJPEG cameras
//!   keep their JPEGs as a JPEG track and are decoded and encoded to H.264. Raw
//!   cameras (YUYV, NV12, YU12) are encoded to H.264, plus JPEG at `jpeg_fps`.
//! * **Encoder.** `encoder: "auto"` encodes with the board's V4L2 M2M H.264 encoder
//!   when there is one (the Pi 3/4/Zero 2 W's bcm2835-codec) and in software
//!   (openh264) when there is none or it cannot be opened; `"software"` never uses it;
//!   `"hardware"` fails the stream without one. Its Annex B output takes the H.264
//!   camera's passthrough path.
//! * **Timing.** Both devices are stamped with CLOCK_MONOTONIC: V4L2 buffer
//!   timestamps, and for audio the read time minus what is still buffered. Stream
//!   time is that clock minus the instant the tracks went live. Audio timestamps
//!   follow the sample count (smooth) and are re-anchored when they drift more than
//!   20 ms from the capture clock (sound card and system clocks differ slightly).
//! * **Devices that vanish** (unplugged, driver unloaded) end the input with a
//!   "device-missing" status for the controller, whose angel keeps retrying with
//!   back-off and never declares a crash loop for it.

use super::sink::Sink;
use crate::config::{CameraAudio, CameraVideo};
use crate::env::Env;
use brume_codec::{AacEncoder, H264Encoder, JpegEncoder, I420};
use brume_format::{h264, Codec, Frame, Track};
use brume_hw::v4l2_m2m;
use brume_hw::{AudioConfig, AudioSource, PixelFormat, VideoConfig, VideoSource};
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::Duration;

const VIDEO: u32 = 1;
const AUDIO: u32 = 2;
const JPEG: u32 = 3;
/// Audio re-anchors when its sample clock and the capture clock differ by more.
const DRIFT_US: i64 = 20_000;

pub struct Params {
    pub video: Option<CameraVideo>,
    pub audio: Option<CameraAudio>,
    pub bitrate_bps: u32,
    pub jpeg_fps: u32,
    pub processes: Vec<crate::config::StreamProcess>,
}

enum Msg {
    Track(Track),
    /// A frame stamped with CLOCK_MONOTONIC microseconds.
    Frame(Frame),
    Dropped(u64),
    /// Something the stream's status should show (the encoder fell back to software).
    Note(String),
    /// The thread ended: None when asked to stop, else why.
    Ended(Option<DeviceError>),
}

struct DeviceError {
    missing: bool,
    message: String,
}

impl From<brume_hw::Error> for DeviceError {
    fn from(e: brume_hw::Error) -> Self {
        DeviceError {
            missing: matches!(e, brume_hw::Error::Gone { .. }),
            message: e.to_string(),
        }
    }
}

fn other(e: impl std::fmt::Display) -> DeviceError {
    DeviceError {
        missing: false,
        message: e.to_string(),
    }
}

fn stopping() -> bool {
    super::STOP.load(Ordering::SeqCst)
}

pub fn run(env: &Env, stream: &str, p: Params) -> Result<(), String> {
    let (tx, rx) = mpsc::sync_channel::<Msg>(256);
    let mut expected = 0;
    if let Some(v) = p.video.clone() {
        let tx = tx.clone();
        let (bitrate, jpeg_fps) = (p.bitrate_bps, p.jpeg_fps);
        expected += 1;
        std::thread::spawn(move || {
            let end = video_thread(&v, bitrate, jpeg_fps, &tx).err();
            let _ = tx.send(Msg::Ended(end));
        });
    }
    if let Some(a) = p.audio.clone() {
        let tx = tx.clone();
        expected += 1;
        std::thread::spawn(move || {
            let end = audio_thread(&a, &tx).err();
            let _ = tx.send(Msg::Ended(end));
        });
    }
    drop(tx);

    let mut writer: Option<Sink> = None;
    let mut tracks: Vec<Track> = Vec::new();
    let mut inited = std::collections::HashSet::new();
    let mut t0: Option<i64> = None;
    let mut dropped = 0u64;
    let mut note = String::new();
    let result = loop {
        let msg = match rx.recv_timeout(Duration::from_millis(500)) {
            Ok(m) => m,
            Err(mpsc::RecvTimeoutError::Timeout) if stopping() => break Ok(()),
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => break Ok(()),
        };
        match msg {
            Msg::Track(t) => {
                // The video thread announces the JPEG track with the video track.
                if t.id != JPEG {
                    inited.insert(t.id);
                }
                tracks.retain(|x| x.id != t.id);
                tracks.push(t);
                tracks.sort_by_key(|t| t.id);
                if inited.len() == expected {
                    let w = match writer.as_mut() {
                        Some(w) => w,
                        None => {
                            let w = Sink::open(env, stream, "camera", &p.processes)
                                .map_err(|e| e.to_string())?;
                            tracing::info!(
                                epoch = w.epoch(),
                                tracks = tracks.len(),
                                "camera stream live"
                            );
                            writer.insert(w)
                        }
                    };
                    w.set_tracks(&tracks).map_err(|e| e.to_string())?;
                    t0.get_or_insert_with(brume_hw::monotonic_us);
                    super::report(env, stream, "running", &note);
                }
            }
            Msg::Frame(mut f) => {
                let (Some(w), Some(t0)) = (writer.as_mut(), t0) else {
                    continue; // not every track is ready yet
                };
                f.dts -= t0;
                if f.dts < 0 {
                    continue; // captured before the stream went live
                }
                if let Err(e) = w.write(&f) {
                    tracing::warn!(error = %e, "frame dropped");
                }
            }
            Msg::Dropped(n) => {
                dropped += n;
                if let Some(w) = &writer {
                    w.add_dropped(n);
                }
                if dropped.is_power_of_two() {
                    tracing::warn!(dropped, "the camera dropped frames");
                }
            }
            Msg::Note(n) => note = n,
            Msg::Ended(None) => break Ok(()),
            Msg::Ended(Some(e)) => {
                let state = if e.missing { "device-missing" } else { "error" };
                super::report(env, stream, state, &e.message);
                break Err(e.message);
            }
        }
    };
    super::STOP.store(true, Ordering::SeqCst); // ends the other capture thread
    if let Some(w) = writer {
        match &result {
            Ok(()) => w.finish(),
            // On a device error the buffer stays: the restarted input adopts it and
            // viewers continue after a discontinuity.
            Err(e) => w.abandon(e),
        }
    }
    result
}

fn open_video(v: &CameraVideo) -> Result<Box<dyn VideoSource>, DeviceError> {
    if v.device == "fake:camera" {
        return Ok(Box::new(brume_hw::fake::FakeCamera::new(
            v.width,
            v.height,
            v.fps,
            Duration::from_secs(1),
        )));
    }
    let node = brume_hw::v4l2::resolve(&v.device)?;
    let format = match v.format.as_str() {
        "h264" => Some(PixelFormat::H264),
        "mjpeg" => Some(PixelFormat::Mjpeg),
        "yuyv" => Some(PixelFormat::Yuyv),
        "nv12" => Some(PixelFormat::Nv12),
        "yu12" => Some(PixelFormat::Yu12),
        _ => None,
    };
    let cap = brume_hw::v4l2::Capture::open(
        &node,
        VideoConfig {
            format,
            width: v.width,
            height: v.height,
            fps: v.fps,
        },
    )?;
    Ok(Box::new(cap))
}

fn video_thread(
    v: &CameraVideo,
    bitrate: u32,
    jpeg_fps: u32,
    tx: &mpsc::SyncSender<Msg>,
) -> Result<(), DeviceError> {
    let mut src = open_video(v)?;
    let (format, w, h, fps) = src.format();
    tracing::info!(device = %v.device, ?format, width = w, height = h, fps, "camera opened");
    let hardware = if format == PixelFormat::H264 {
        None
    } else {
        hardware_encoder(&v.encoder, w, h, fps, bitrate, tx)?
    };
    let mut pipe =
        VideoPipeline::new(format, w, h, fps, bitrate, jpeg_fps, hardware).map_err(other)?;
    let mut announced = false;
    let mut last_seq: Option<u32> = None;
    while !stopping() {
        let Some(frame) = src.next_frame(Duration::from_millis(500))? else {
            continue;
        };
        if let Some(prev) = last_seq {
            let gap = frame.sequence.wrapping_sub(prev).saturating_sub(1);
            if gap > 0 && gap < 1_000_000 {
                let _ = tx.send(Msg::Dropped(gap as u64));
            }
        }
        last_seq = Some(frame.sequence);
        let out = match pipe.process(&frame.data).map_err(other)? {
            Ok(out) => out,
            Err(why) => {
                // A corrupt frame (USB hiccup) costs one frame, not the stream.
                tracing::warn!(error = %why, "camera frame skipped");
                let _ = tx.send(Msg::Dropped(1));
                continue;
            }
        };
        if !announced {
            let Some(tracks) = pipe.tracks() else {
                continue;
            };
            for t in tracks {
                let _ = tx.send(Msg::Track(t));
            }
            announced = true;
        }
        let time = frame.time_us;
        if let Some((data, key)) = out.video {
            let f = Frame {
                track: VIDEO,
                dts: time,
                cts: 0,
                key,
                data,
            };
            if tx.send(Msg::Frame(f)).is_err() {
                return Ok(());
            }
        }
        if let Some(data) = out.jpeg {
            let _ = tx.send(Msg::Frame(Frame {
                track: JPEG,
                dts: time,
                cts: 0,
                key: true,
                data,
            }));
        }
    }
    Ok(())
}

/// The V4L2 M2M H.264 encoder the configuration asks for: "software" none, "auto"
/// the board's if it opens (else software, said once in the log and the stream's
/// status), "hardware" the board's or an error.
fn hardware_encoder(
    choice: &str,
    width: u32,
    height: u32,
    fps: u32,
    bitrate: u32,
    tx: &mpsc::SyncSender<Msg>,
) -> Result<Option<v4l2_m2m::Encoder>, DeviceError> {
    if choice == "software" {
        return Ok(None);
    }
    let Some(node) = v4l2_m2m::find_h264_encoder() else {
        return match choice {
            "hardware" => Err(other(
                "encoder \"hardware\": this board has no V4L2 M2M H.264 encoder",
            )),
            _ => Ok(None),
        };
    };
    let cfg = v4l2_m2m::EncoderConfig {
        codec: v4l2_m2m::Codec::H264,
        width,
        height,
        fps,
        bitrate_bps: bitrate,
        gop: fps,
    };
    match v4l2_m2m::Encoder::open(&node, cfg) {
        Ok(e) => {
            tracing::info!(device = %node, name = %e.name(), "hardware H.264 encoder");
            Ok(Some(e))
        }
        Err(e) if choice == "hardware" => Err(other(format!("hardware H.264 encoder: {e}"))),
        Err(e) => {
            tracing::warn!(error = %e, "hardware H.264 encoder unusable: encoding in software");
            let _ = tx.send(Msg::Note(format!(
                "hardware H.264 encoder unusable ({e}): encoding in software"
            )));
            Ok(None)
        }
    }
}

/// What one captured frame became.
pub struct Processed {
    /// H.264 in Brume's layout, and whether it is a keyframe.
    pub video: Option<(Vec<u8>, bool)>,
    /// A JPEG for the JPEG track.
    pub jpeg: Option<Vec<u8>>,
}

/// The per-frame work of a camera stream: passthrough, decoding, encoding.
pub struct VideoPipeline {
    format: PixelFormat,
    width: u32,
    height: u32,
    enc: Option<Encoder>,
    jpeg: Option<JpegEncoder>,
    jpeg_every: u64,
    /// avcC of an H.264 camera or the hardware encoder, once seen.
    sets: Option<Vec<u8>>,
    n: u64,
}

/// The H.264 encoder of a raw or MJPEG camera.
enum Encoder {
    Software(Box<H264Encoder>),
    /// A V4L2 M2M encoder: Annex B out, taken through [`passthrough`].
    Hardware(v4l2_m2m::Encoder),
}

impl VideoPipeline {
    /// `hardware`: the M2M encoder to use instead of openh264 (ignored for H.264
    /// cameras).
    pub fn new(
        format: PixelFormat,
        width: u32,
        height: u32,
        fps: u32,
        bitrate: u32,
        jpeg_fps: u32,
        hardware: Option<v4l2_m2m::Encoder>,
    ) -> Result<VideoPipeline, String> {
        let enc = match hardware {
            _ if format == PixelFormat::H264 => None,
            Some(h) => Some(Encoder::Hardware(h)),
            None => Some(Encoder::Software(Box::new(
                H264Encoder::new(width, height, fps, bitrate, fps).map_err(|e| e.to_string())?,
            ))),
        };
        let jpeg = if format.is_raw() && jpeg_fps > 0 {
            Some(JpegEncoder::new(75, if width > 640 { 2 } else { 1 }).map_err(|e| e.to_string())?)
        } else {
            None
        };
        Ok(VideoPipeline {
            format,
            width,
            height,
            enc,
            jpeg,
            jpeg_every: (fps / jpeg_fps.max(1)).max(1) as u64,
            sets: None,
            n: 0,
        })
    }

    /// Processes one captured frame. The outer error is fatal (the encoder failed);
    /// the inner one means this frame was unusable and is skipped.
    #[allow(clippy::type_complexity)]
    pub fn process(&mut self, data: &[u8]) -> Result<Result<Processed, String>, String> {
        if self.format == PixelFormat::H264 {
            let video = match self.pass(data) {
                Ok(v) => v,
                Err(e) => return Ok(Err(e)),
            };
            return Ok(Ok(Processed { video, jpeg: None }));
        }
        let (w, h) = (self.width, self.height);
        let pic = match self.format {
            PixelFormat::Yuyv => I420::from_yuyv(w, h, data),
            PixelFormat::Nv12 => I420::from_nv12(w, h, data),
            PixelFormat::Yu12 => I420::from_yu12(w, h, data),
            _ => I420::from_jpeg(data),
        };
        let pic = match pic {
            Ok(p) => p,
            Err(e) => return Ok(Err(e.to_string())),
        };
        let mut jpeg = None;
        if self.format == PixelFormat::Mjpeg {
            jpeg = Some(data.to_vec());
        } else if let Some(j) = &mut self.jpeg {
            if self.n.is_multiple_of(self.jpeg_every) {
                jpeg = Some(j.encode(&pic).map_err(|e| e.to_string())?);
            }
        }
        self.n += 1;
        let video = match self.enc.as_mut() {
            Some(Encoder::Software(e)) => e
                .encode(&pic, false)
                .map_err(|e| e.to_string())?
                .map(|v| (v.data, v.key)),
            Some(Encoder::Hardware(e)) => {
                match e
                    .encode([&pic.y, &pic.u, &pic.v], false)
                    .map_err(|e| e.to_string())?
                {
                    Some(v) => self.pass(&v.data)?.map(|(data, key)| (data, key || v.key)),
                    None => None,
                }
            }
            None => return Err("no encoder for a non-H.264 camera".into()),
        };
        Ok(Ok(Processed { video, jpeg }))
    }

    /// Annex B (an H.264 camera's or the hardware encoder's) to Brume's layout,
    /// keeping the parameter sets; None until they are known.
    fn pass(&mut self, annexb: &[u8]) -> Result<Option<(Vec<u8>, bool)>, String> {
        let p = passthrough(annexb)?;
        if let Some(a) = p.avcc {
            self.sets = Some(a);
        }
        Ok((self.sets.is_some() && !p.data.is_empty()).then_some((p.data, p.key)))
    }

    /// The stream's video tracks, once the H.264 parameter sets are known.
    pub fn tracks(&self) -> Option<Vec<Track>> {
        let avcc = match (&self.sets, &self.enc) {
            (Some(a), _) => a.clone(),
            (None, Some(Encoder::Software(e))) => e.avcc()?.to_vec(),
            _ => return None,
        };
        let (w, h) = (self.width, self.height);
        let mut tracks = vec![Track::video(VIDEO, Codec::H264, avcc, w, h)];
        if self.format == PixelFormat::Mjpeg {
            tracks.push(Track::video(JPEG, Codec::Jpeg, Vec::new(), w, h));
        } else if let Some(j) = &self.jpeg {
            let (jw, jh) = j.output_size(w, h);
            tracks.push(Track::video(JPEG, Codec::Jpeg, Vec::new(), jw, jh));
        }
        Some(tracks)
    }
}

/// An H.264 camera's access unit in Brume's layout.
struct Passthrough {
    /// AVCC (4-byte lengths), parameter sets and delimiters removed.
    data: Vec<u8>,
    key: bool,
    /// avcC built from the SPS and PPS, if the unit carried them.
    avcc: Option<Vec<u8>>,
}

/// Converts an H.264 camera's Annex B access unit.
fn passthrough(annexb: &[u8]) -> Result<Passthrough, String> {
    let nals = h264::annexb_nals(annexb);
    let sps: Vec<&[u8]> = nals
        .iter()
        .copied()
        .filter(|n| h264::nal_type(n) == h264::NAL_SPS)
        .collect();
    let pps: Vec<&[u8]> = nals
        .iter()
        .copied()
        .filter(|n| h264::nal_type(n) == h264::NAL_PPS)
        .collect();
    let avcc = if !sps.is_empty() && !pps.is_empty() {
        Some(h264::avcc_from_parameter_sets(&sps, &pps).map_err(|e| e.to_string())?)
    } else {
        None
    };
    let mut data = Vec::with_capacity(annexb.len());
    let mut key = false;
    for n in nals {
        match h264::nal_type(n) {
            h264::NAL_SPS | h264::NAL_PPS | h264::NAL_AUD => {}
            t => {
                key |= t == h264::NAL_IDR;
                data.extend_from_slice(&(n.len() as u32).to_be_bytes());
                data.extend_from_slice(n);
            }
        }
    }
    Ok(Passthrough { data, key, avcc })
}

fn open_audio(a: &CameraAudio) -> Result<Box<dyn AudioSource>, DeviceError> {
    let cfg = AudioConfig {
        rate: a.rate,
        channels: a.channels,
    };
    if a.device == "fake:microphone" {
        return Ok(Box::new(brume_hw::fake::FakeMicrophone::new(
            cfg,
            Duration::from_secs(1),
        )));
    }
    Ok(Box::new(brume_hw::alsa_capture::Capture::open(
        &a.device, cfg,
    )?))
}

fn audio_thread(a: &CameraAudio, tx: &mpsc::SyncSender<Msg>) -> Result<(), DeviceError> {
    let mut src = open_audio(a)?;
    let cfg = src.config();
    tracing::info!(device = %a.device, rate = cfg.rate, channels = cfg.channels, "microphone opened");
    let mut aac = AacEncoder::new(cfg.rate, cfg.channels, 64_000 * cfg.channels).map_err(other)?;
    let _ = tx.send(Msg::Track(Track::audio(
        AUDIO,
        Codec::Aac,
        aac.asc().to_vec(),
        cfg.rate,
        cfg.channels,
    )));
    let rate = cfg.rate as i64;
    let delay = aac.delay_samples() as i64;
    let mut anchor: Option<i64> = None; // capture time of sample 0
    let mut samples: i64 = 0; // samples per channel handed to the encoder
    let mut aus: i64 = 0;
    let mut overruns = 0u64;
    while !stopping() {
        let chunk = src.read()?;
        if chunk.overruns > 0 {
            overruns += chunk.overruns as u64;
            tracing::warn!(overruns, "microphone overrun recovered");
            // Samples were lost: the sample clock must follow the capture clock again.
            anchor = None;
        }
        let expected = anchor.map(|a| a + samples * 1_000_000 / rate);
        match expected {
            Some(e) if (chunk.time_us - e).abs() <= DRIFT_US => {}
            Some(e) => {
                tracing::info!(drift_us = chunk.time_us - e, "audio clock drift corrected");
                anchor = Some(chunk.time_us - samples * 1_000_000 / rate);
            }
            None => anchor = Some(chunk.time_us - samples * 1_000_000 / rate),
        }
        samples += (chunk.samples.len() / cfg.channels.max(1) as usize) as i64;
        let base = anchor.expect("set above");
        for au in aac.encode(&chunk.samples).map_err(other)? {
            // The decoder's output for AU n starts at input sample n*1024 - delay.
            let first = aus * 1024 - delay;
            aus += 1;
            let f = Frame {
                track: AUDIO,
                dts: base + first * 1_000_000 / rate,
                cts: 0,
                key: true,
                data: au,
            };
            if tx.send(Msg::Frame(f)).is_err() {
                return Ok(());
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn encoder_choice_software_auto_hardware() {
        let (tx, _rx) = std::sync::mpsc::sync_channel(4);
        let choose = |c: &str| super::hardware_encoder(c, 640, 360, 30, 1_000_000, &tx);
        assert!(matches!(choose("software"), Ok(None)));
        if brume_hw::v4l2_m2m::find_h264_encoder().is_none() {
            // No H.264 M2M encoder here: "auto" encodes in software, "hardware" fails.
            assert!(matches!(choose("auto"), Ok(None)));
            match choose("hardware") {
                Err(e) => assert!(e.message.contains("no V4L2 M2M H.264 encoder")),
                Ok(_) => panic!("\"hardware\" without an encoder must fail"),
            }
        }
    }

    #[test]
    fn passthrough_strips_parameter_sets_and_finds_keys() {
        let sps = [0x67, 0x42, 0xc0, 0x1e, 0xd9, 0x00, 0xa0, 0x47, 0xfe, 0xc8];
        let pps = [0x68, 0xce, 0x3c, 0x80];
        let idr = [0x65, 0x88, 0x84, 0x21];
        let mut annexb = Vec::new();
        for n in [&sps[..], &pps[..], &idr[..]] {
            annexb.extend_from_slice(&[0, 0, 0, 1]);
            annexb.extend_from_slice(n);
        }
        let p = super::passthrough(&annexb).unwrap();
        assert!(p.key);
        assert!(p.avcc.is_some());
        assert_eq!(p.data, [&[0, 0, 0, 4][..], &idr[..]].concat());
        let p = super::passthrough(&[0, 0, 1, 0x41, 0x9a, 0x00]).unwrap();
        assert!(!p.key && p.avcc.is_none());
    }
}
