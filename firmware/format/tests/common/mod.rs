//! Test-only helpers: turn the FFmpeg-made fixtures in `testdata/` into Brume tracks and
//! frames, and run ffprobe / ffmpeg on muxed output.

use brume_format::{aac, h264, Codec, Frame, Track};
use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;

const CLIP_H264: &[u8] = include_bytes!("../../testdata/clip_320x180_60f.h264");
const CLIP_TIMES: &str = include_str!("../../testdata/clip_320x180_60f.times");
const CLIP_AAC: &[u8] = include_bytes!("../../testdata/clip_48k_mono_2s.aac");

/// Frames per second of the video fixture.
pub const FPS: i64 = 30;
/// Video fixture frame count.
pub const VIDEO_FRAMES: usize = 60;

fn is_slice(nal: &[u8]) -> bool {
    matches!(h264::nal_type(nal), 1 | 5)
}

/// The video fixture as a track (id `id`) and AVCC frames without parameter sets, with
/// timestamps from the `.times` sidecar shifted so the first dts is 0.
pub fn video(id: u32) -> (Track, Vec<Frame>) {
    let mut sps = Vec::new();
    let mut pps = Vec::new();
    let mut units: Vec<Vec<&[u8]>> = Vec::new();
    let mut has_slice = false;
    for nal in h264::annexb_nals(CLIP_H264) {
        let t = h264::nal_type(nal);
        // A new access unit starts at a non-VCL NAL after a slice, or at a slice whose
        // first_mb_in_slice is 0 (ue(v) "1") after a slice.
        let starts_au = matches!(t, 6..=9 | 14..=18) || (is_slice(nal) && nal[1] & 0x80 != 0);
        if units.is_empty() || (has_slice && starts_au) {
            units.push(Vec::new());
            has_slice = false;
        }
        has_slice |= is_slice(nal);
        match t {
            7 => sps.push(nal),
            8 => pps.push(nal),
            9 => {}
            _ => units.last_mut().unwrap().push(nal),
        }
    }
    sps.dedup();
    pps.dedup();
    assert_eq!(units.len(), VIDEO_FRAMES, "access units in the fixture");
    let init = h264::avcc_from_parameter_sets(&sps, &pps).unwrap();
    let info = h264::parse_sps(sps[0]).unwrap();
    let track = Track::video(id, Codec::H264, init, info.width, info.height);
    let times: Vec<(i64, i64)> = CLIP_TIMES
        .lines()
        .map(|l| {
            let (d, p) = l.split_once(',').unwrap();
            (d.parse().unwrap(), p.parse().unwrap())
        })
        .collect();
    assert_eq!(times.len(), VIDEO_FRAMES);
    let shift = -times[0].0;
    let us = |f: i64| ((f + shift) * 1_000_000 + FPS / 2) / FPS;
    let frames = units
        .into_iter()
        .zip(times)
        .map(|(nals, (d, p))| {
            let mut data = Vec::new();
            for nal in &nals {
                data.extend_from_slice(&(nal.len() as u32).to_be_bytes());
                data.extend_from_slice(nal);
            }
            Frame {
                track: id,
                dts: us(d),
                cts: (us(p) - us(d)) as i32,
                key: h264::avcc_has_idr(&data),
                data,
            }
        })
        .collect();
    (track, frames)
}

/// The audio fixture as a track (id `id`) and raw AAC frames (ADTS headers removed).
pub fn audio(id: u32) -> (Track, Vec<Frame>) {
    let mut pos = 0;
    let mut frames = Vec::new();
    let mut config = None;
    while pos < CLIP_AAC.len() {
        let h = &CLIP_AAC[pos..pos + 7];
        assert_eq!((h[0], h[1] & 0xf6), (0xff, 0xf0), "ADTS sync at {pos}");
        let header_len = if h[1] & 1 == 1 { 7 } else { 9 };
        let object_type = (h[2] >> 6) + 1;
        let rate = [
            96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
        ][usize::from((h[2] >> 2) & 0xf)];
        let channels = ((h[2] & 1) << 2) | (h[3] >> 6);
        config = Some((object_type, rate, channels));
        let len = (usize::from(h[3] & 3) << 11) | (usize::from(h[4]) << 3) | usize::from(h[5] >> 5);
        let n = frames.len() as i64;
        frames.push(Frame {
            track: id,
            dts: (n * 1024 * 1_000_000 + i64::from(rate) / 2) / i64::from(rate),
            cts: 0,
            key: true,
            data: CLIP_AAC[pos + header_len..pos + len].to_vec(),
        });
        pos += len;
    }
    let (object_type, rate, channels) = config.unwrap();
    let asc = aac::build_asc(object_type, rate, channels).unwrap();
    let track = Track::audio(id, Codec::Aac, asc, rate, u32::from(channels));
    (track, frames)
}

/// A fresh directory for one test's output files.
pub fn temp_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("brume-format-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn run(tool: &str, args: &[&str]) -> std::process::Output {
    Command::new(tool).args(args).output().unwrap_or_else(|e| {
        panic!(
            "could not run `{tool}` ({e}): these tests need FFmpeg's {tool} on PATH \
             (e.g. `apt-get install ffmpeg`)"
        )
    })
}

/// `ffprobe -show_streams -show_format -count_packets` of `path` as flat `key=value`
/// pairs (e.g. `streams.stream.0.codec_name` -> `h264`).
pub fn ffprobe(path: &Path) -> HashMap<String, String> {
    let out = run(
        "ffprobe",
        &[
            "-v",
            "error",
            "-count_packets",
            "-show_streams",
            "-show_format",
            "-of",
            "flat",
            path.to_str().unwrap(),
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.is_empty(),
        "ffprobe: {stderr}"
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_string(), v.trim_matches('"').to_string()))
        .collect()
}

/// Decodes `path` fully with ffmpeg and asserts it reports nothing at all.
pub fn assert_decodes_cleanly(path: &Path) {
    let out = run(
        "ffmpeg",
        &[
            "-v",
            "error",
            "-i",
            path.to_str().unwrap(),
            "-f",
            "null",
            "-",
        ],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.is_empty(),
        "ffmpeg decode of {}: {stderr}",
        path.display()
    );
}

/// The index of the stream of `codec_type` in ffprobe output.
pub fn stream_of(probe: &HashMap<String, String>, codec_type: &str) -> usize {
    (0..8)
        .find(|i| {
            probe
                .get(&format!("streams.stream.{i}.codec_type"))
                .map(String::as_str)
                == Some(codec_type)
        })
        .unwrap_or_else(|| panic!("no {codec_type} stream in {probe:#?}"))
}

/// A float field of stream `i` (or of the format with `i` = None).
pub fn float(probe: &HashMap<String, String>, i: Option<usize>, key: &str) -> f64 {
    let k = match i {
        Some(i) => format!("streams.stream.{i}.{key}"),
        None => format!("format.{key}"),
    };
    probe
        .get(&k)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("{k} missing or not a number in {probe:#?}"))
}
