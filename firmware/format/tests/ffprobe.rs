//! Muxes real H.264 and AAC (fixtures made by FFmpeg, see `testdata/README.md`) to
//! fragmented MP4 and MPEG-TS, then checks the files with ffprobe and ffmpeg. These
//! tests fail (not skip) without FFmpeg installed.

mod common;

use brume_format::fmp4::{self, TrackRun};
use brume_format::ts::TsMuxer;
use brume_format::{Frame, Track};
use common::*;

/// Video is 60 frames at 30 fps; audio 95 AAC frames of 1024 samples at 48 kHz.
const VIDEO_SECONDS: f64 = 2.0;

fn audio_seconds(frames: usize) -> f64 {
    frames as f64 * 1024.0 / 48_000.0
}

/// The frames of `frames` with `from <= dts < to`, and the dts following them.
fn split(frames: &[Frame], from: i64, to: i64, last_duration: i64) -> (&[Frame], i64) {
    let start = frames
        .iter()
        .position(|f| f.dts >= from)
        .unwrap_or(frames.len());
    let end = frames
        .iter()
        .position(|f| f.dts >= to)
        .unwrap_or(frames.len());
    let end_dts = frames
        .get(end)
        .map(|f| f.dts)
        .unwrap_or_else(|| frames.last().map_or(0, |f| f.dts + last_duration));
    (&frames[start..end], end_dts)
}

fn check_probe(path: &std::path::Path, video: &Track, audio_frames: usize, fmp4: bool) {
    let probe = ffprobe(path);
    let v = stream_of(&probe, "video");
    let a = stream_of(&probe, "audio");
    assert_eq!(probe[&format!("streams.stream.{v}.codec_name")], "h264");
    assert_eq!(probe[&format!("streams.stream.{v}.profile")], "High");
    assert_eq!(
        probe[&format!("streams.stream.{v}.width")],
        video.width.to_string()
    );
    assert_eq!(
        probe[&format!("streams.stream.{v}.height")],
        video.height.to_string()
    );
    assert_eq!((video.width, video.height), (320, 180));
    assert_eq!(probe[&format!("streams.stream.{v}.nb_read_packets")], "60");
    assert_eq!(probe[&format!("streams.stream.{a}.codec_name")], "aac");
    assert_eq!(probe[&format!("streams.stream.{a}.profile")], "LC");
    assert_eq!(probe[&format!("streams.stream.{a}.sample_rate")], "48000");
    assert_eq!(probe[&format!("streams.stream.{a}.channels")], "1");
    assert_eq!(
        probe[&format!("streams.stream.{a}.nb_read_packets")],
        audio_frames.to_string()
    );
    let expected = VIDEO_SECONDS.max(audio_seconds(audio_frames));
    let duration = float(&probe, None, "duration");
    assert!(
        (duration - expected).abs() < 0.15,
        "duration {duration}, expected about {expected}"
    );
    if fmp4 {
        assert!((float(&probe, Some(v), "duration") - VIDEO_SECONDS).abs() < 0.01);
        let audio = float(&probe, Some(a), "duration");
        assert!(
            (audio - audio_seconds(audio_frames)).abs() < 0.01,
            "audio duration {audio}"
        );
    }
}

#[test]
fn fmp4_init_and_two_fragments_play_in_ffmpeg() {
    let (vt, vf) = video(1);
    let (at, af) = audio(2);
    let mut file = fmp4::init_segment(&[vt.clone(), at.clone()]).unwrap();
    let video_frame = 1_000_000 / FPS;
    let audio_frame = 21_333;
    for (seq, (from, to)) in [(0, 1_000_000), (1_000_000, i64::MAX)]
        .into_iter()
        .enumerate()
    {
        let (v, v_end) = split(&vf, from, to, video_frame);
        let (a, a_end) = split(&af, from, to, audio_frame);
        assert!(v[0].key, "each fragment starts with a keyframe");
        let runs = [
            TrackRun {
                track: &vt,
                frames: v,
                end_dts: v_end,
            },
            TrackRun {
                track: &at,
                frames: a,
                end_dts: a_end,
            },
        ];
        file.extend(fmp4::fragment(seq as u32 + 1, &runs).unwrap());
    }
    let dir = temp_dir("fmp4");
    let path = dir.join("out.mp4");
    std::fs::write(&path, &file).unwrap();
    check_probe(&path, &vt, af.len(), true);
    assert_decodes_cleanly(&path);
    if std::env::var_os("BRUME_KEEP_TEST_FILES").is_none() {
        std::fs::remove_dir_all(dir).unwrap();
    }
}

#[test]
fn fmp4_single_track_fragments_play_in_ffmpeg() {
    // Separate video-only and audio-only CMAF tracks, as HLS/DASH renditions.
    let dir = temp_dir("fmp4-single");
    let runs = [
        ("v.mp4", video(1), 1_000_000 / FPS, VIDEO_SECONDS),
        ("a.mp4", audio(1), 21_333, audio_seconds(95)),
    ];
    for (name, (track, frames), last_duration, seconds) in runs {
        let mut file = fmp4::init_segment(std::slice::from_ref(&track)).unwrap();
        for (i, chunk) in frames.chunks(30).enumerate() {
            let end_dts = frames
                .get((i + 1) * 30)
                .map_or(chunk.last().unwrap().dts + last_duration, |f| f.dts);
            let run = TrackRun {
                track: &track,
                frames: chunk,
                end_dts,
            };
            file.extend(fmp4::fragment(i as u32 + 1, &[run]).unwrap());
        }
        let path = dir.join(name);
        std::fs::write(&path, &file).unwrap();
        let probe = ffprobe(&path);
        assert_eq!(probe["streams.stream.0.codec_name"], track.codec.as_str());
        assert_eq!(
            probe["streams.stream.0.nb_read_packets"],
            frames.len().to_string()
        );
        let duration = float(&probe, Some(0), "duration");
        assert!(
            (duration - seconds).abs() < 0.01,
            "{name}: duration {duration}"
        );
        assert_decodes_cleanly(&path);
    }
    if std::env::var_os("BRUME_KEEP_TEST_FILES").is_none() {
        std::fs::remove_dir_all(dir).unwrap();
    }
}

#[test]
fn ts_plays_in_ffmpeg() {
    let (vt, vf) = video(1);
    let (at, af) = audio(2);
    let mut mux = TsMuxer::new(&[vt.clone(), at.clone()]).unwrap();
    let mut all: Vec<&Frame> = vf.iter().chain(&af).collect();
    all.sort_by_key(|f| f.dts);
    let mut file = Vec::new();
    for f in all {
        mux.mux(f, &mut file).unwrap();
    }
    assert_eq!(file.len() % 188, 0);
    let dir = temp_dir("ts");
    let path = dir.join("out.ts");
    std::fs::write(&path, &file).unwrap();
    check_probe(&path, &vt, af.len(), false);
    let probe = ffprobe(&path);
    assert_eq!(probe["format.format_name"], "mpegts");
    assert_decodes_cleanly(&path);
    if std::env::var_os("BRUME_KEEP_TEST_FILES").is_none() {
        std::fs::remove_dir_all(dir).unwrap();
    }
}
