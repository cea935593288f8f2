//! Camera streams through the hardware boundary's fakes (the same pipeline that
//! serves V4L2 cameras and ALSA microphones): a flash and a beep at the same instants
//! must come out of the stream within 40 ms of each other.

use crate::harness::{ffmpeg, ffprobe, Server};
use crate::media::{assert_h264_aac, run};
use std::process::Command;
use std::time::Duration;

const CONFIG: &str = r#"{"streams":{"cam":{"source":{"type":"camera",
  "video":{"device":"fake:camera","width":320,"height":240,"fps":25},
  "audio":{"device":"fake:microphone","rate":48000,"channels":1},
  "bitrate_kbps":500,"jpeg_fps":5},"always_on":true}}}"#;

/// Rising edges of a signal sampled at `times`: the instants it crosses `high`
/// after having been below `low`.
fn edges(samples: &[(f64, f64)], low: f64, high: f64) -> Vec<f64> {
    let mut out = Vec::new();
    let mut armed = false;
    for (t, v) in samples {
        if *v < low {
            armed = true;
        } else if *v > high && armed {
            out.push(*t);
            armed = false;
        }
    }
    out
}

fn start_time(file: &str, stream: &str) -> f64 {
    let mut c = Command::new(ffprobe());
    c.args([
        "-v",
        "error",
        "-select_streams",
        stream,
        "-show_entries",
        "stream=start_time",
        "-of",
        "csv=p=0",
        file,
    ]);
    let out = run(c, Duration::from_secs(30));
    out.stdout
        .lines()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("no {stream} start time in {file}"))
}

/// Presentation times of flashes: frames whose mean luma jumps high.
fn flashes(file: &str) -> Vec<f64> {
    let mut c = Command::new(ffprobe());
    c.args([
        "-v",
        "error",
        "-f",
        "lavfi",
        "-i",
        &format!("movie={file},scale=16:16,signalstats"),
        "-show_entries",
        "frame=pts_time:frame_tags=lavfi.signalstats.YAVG",
        "-of",
        "csv=p=0",
    ]);
    let out = run(c, Duration::from_secs(60));
    let samples: Vec<(f64, f64)> = out
        .stdout
        .lines()
        .filter_map(|l| {
            let mut p = l.split(',');
            Some((p.next()?.parse().ok()?, p.next()?.parse().ok()?))
        })
        .collect();
    assert!(
        samples.len() > 50,
        "too few decoded frames: {}",
        samples.len()
    );
    edges(&samples, 100.0, 150.0)
}

/// Presentation times of beeps: 1 ms windows whose peak jumps high.
fn beeps(file: &str) -> Vec<f64> {
    let start = start_time(file, "a");
    let raw = format!("{file}.pcm");
    let mut c = Command::new(ffmpeg());
    c.args([
        "-v", "error", "-y", "-i", file, "-map", "0:a", "-f", "s16le", "-ac", "1", "-ar", "48000",
        &raw,
    ]);
    let out = run(c, Duration::from_secs(60));
    assert!(out.success(), "decoding the audio failed: {}", out.stderr);
    let bytes = std::fs::read(&raw).expect("decoded audio");
    let pcm: Vec<i16> = bytes
        .chunks_exact(2)
        .map(|b| i16::from_le_bytes([b[0], b[1]]))
        .collect();
    assert!(
        pcm.len() > 48_000 * 3,
        "too little audio: {} samples",
        pcm.len()
    );
    let samples: Vec<(f64, f64)> = pcm
        .chunks(48)
        .enumerate()
        .map(|(i, w)| {
            let peak = w.iter().map(|s| s.unsigned_abs()).max().unwrap_or(0);
            (start + (i * 48) as f64 / 48_000.0, peak as f64)
        })
        .collect();
    edges(&samples, 1000.0, 5000.0)
}

#[test]
fn flash_and_beep_come_out_together() {
    let server = Server::start(Some(CONFIG));
    server.login();
    let status = server.wait_live("cam", Duration::from_secs(30));
    let codecs: Vec<String> = status["status"]["tracks"]
        .as_array()
        .expect("tracks")
        .iter()
        .map(|t| t["codec"].as_str().unwrap_or("").to_string())
        .collect();
    assert_eq!(
        codecs,
        ["h264", "aac", "jpeg"],
        "camera stream tracks: {status}"
    );
    let base = format!("http://127.0.0.1:{}", server.http_port);
    assert_h264_aac(&format!("{base}/cam.ts"), 320, 240, Some(48_000));

    // Seven seconds of the live TS, as a viewer gets it.
    let file = server.dir.join("cam.ts");
    let mut c = Command::new(ffmpeg());
    c.args([
        "-v",
        "error",
        "-y",
        "-i",
        &format!("{base}/cam.ts"),
        "-t",
        "7",
        "-c",
        "copy",
    ]);
    c.arg(&file);
    let out = run(c, Duration::from_secs(60));
    assert!(out.success(), "recording the stream failed: {}", out.stderr);
    let file = file.display().to_string();

    let (v, a) = (flashes(&file), beeps(&file));
    assert!(v.len() >= 4, "flashes seen: {v:?}");
    let mut pairs = 0;
    for f in &v {
        let nearest = a
            .iter()
            .copied()
            .min_by(|x, y| (x - f).abs().total_cmp(&(y - f).abs()))
            .unwrap_or_else(|| panic!("no beep at all (flashes {v:?})"));
        let offset_ms = (nearest - f) * 1000.0;
        assert!(
            offset_ms.abs() < 40.0,
            "flash at {f:.3} s but the nearest beep at {nearest:.3} s ({offset_ms:+.1} ms); flashes {v:?}, beeps {a:?}"
        );
        pairs += 1;
    }
    assert!(pairs >= 4);

    // The camera's JPEG track feeds the snapshot.
    let snap = server.raw("GET", "/cam.jpg", None);
    assert_eq!(snap.status, 200);
    assert_eq!(&snap.body[..2], &[0xff, 0xd8], "a JPEG");
}

#[test]
fn missing_camera_is_reported_and_retried() {
    let server = Server::start(Some(
        r#"{"streams":{"cam":{"source":{"type":"camera","video":{"device":"/dev/v4l/by-id/no-such-camera","width":320,"height":240,"fps":10}},"always_on":true}}}"#,
    ));
    server.login();
    let s = crate::harness::wait_until(
        Duration::from_secs(20),
        "the missing camera to be reported",
        || {
            let s = server.stream("cam");
            (s["status"]["state"] == "device-missing").then_some(s)
        },
    );
    let err = s["status"]["last_error"].as_str().unwrap_or("");
    assert!(
        err.contains("no-such-camera") && err.contains("gone"),
        "error shown: {s}"
    );
    // It keeps retrying and never declares a crash loop.
    std::thread::sleep(Duration::from_secs(8));
    let s = server.stream("cam");
    assert_eq!(s["status"]["state"], "device-missing", "{s}");
}
