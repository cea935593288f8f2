//! Demuxes MPEG-TS written by FFmpeg: a file it encodes (checked packet by packet
//! against ffprobe), and Brume's own TS after a trip through `ffmpeg -c copy` on pipes,
//! as an input process running an external program sees it. These tests fail (not
//! skip) without FFmpeg installed.
//!
//! What FFmpeg does to timestamps on the way (the mpegts muxer adds twice `-muxdelay`,
//! 0.7 s by default, to every timestamp it writes):
//! * without `-copyts`: the input is rebased so the program's first DTS is 0, then
//!   1.4 s is added;
//! * with `-copyts`: the input times are kept, and 1.4 s is still added;
//! * with `-copyts` and `-muxdelay 0` (or `-mpegts_copyts 1`): times come out exactly
//!   as they went in.

mod common;

use brume_format::ts::TsMuxer;
use brume_format::ts_demux::{DemuxEvent, DemuxStats, TsDemuxer};
use brume_format::{Codec, Frame, Track};
use common::*;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Command, Stdio};

/// The mpegts muxer's default offset: twice the default `-muxdelay` of 0.7 s.
const MUXDELAY_OFFSET_US: i64 = 1_400_000;

/// A minimal JSON value, enough for ffprobe's output.
#[derive(Debug)]
enum Json {
    /// `true`, `false` or `null`.
    Literal(&'static str),
    /// Kept as written, so 64-bit integers stay exact.
    Number(String),
    String(String),
    Array(Vec<Json>),
    Object(Vec<(String, Json)>),
}

impl Json {
    fn parse(text: &str) -> Json {
        let mut p = JsonParser {
            s: text.as_bytes(),
            pos: 0,
        };
        let v = p.value();
        p.ws();
        assert_eq!(p.pos, p.s.len(), "trailing bytes after JSON");
        v
    }

    fn get(&self, key: &str) -> Option<&Json> {
        match self {
            Json::Object(fields) => fields.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    fn as_array(&self) -> &[Json] {
        match self {
            Json::Array(items) => items,
            other => panic!("not an array: {other:?}"),
        }
    }

    fn as_str(&self) -> &str {
        match self {
            Json::String(s) | Json::Number(s) => s,
            Json::Literal(s) => s,
            other => panic!("not a string: {other:?}"),
        }
    }

    fn as_i64(&self) -> i64 {
        self.as_str()
            .parse()
            .unwrap_or_else(|_| panic!("not an integer: {self:?}"))
    }
}

struct JsonParser<'a> {
    s: &'a [u8],
    pos: usize,
}

impl JsonParser<'_> {
    fn ws(&mut self) {
        while self.pos < self.s.len() && self.s[self.pos].is_ascii_whitespace() {
            self.pos += 1;
        }
    }

    fn eat(&mut self, b: u8) {
        self.ws();
        assert_eq!(self.s.get(self.pos), Some(&b), "JSON at byte {}", self.pos);
        self.pos += 1;
    }

    fn peek(&mut self) -> u8 {
        self.ws();
        *self.s.get(self.pos).expect("JSON ended early")
    }

    fn value(&mut self) -> Json {
        match self.peek() {
            b'{' => {
                self.eat(b'{');
                let mut fields = Vec::new();
                if self.peek() == b'}' {
                    self.eat(b'}');
                    return Json::Object(fields);
                }
                loop {
                    let key = self.string();
                    self.eat(b':');
                    fields.push((key, self.value()));
                    if self.peek() == b',' {
                        self.eat(b',');
                    } else {
                        self.eat(b'}');
                        return Json::Object(fields);
                    }
                }
            }
            b'[' => {
                self.eat(b'[');
                let mut items = Vec::new();
                if self.peek() == b']' {
                    self.eat(b']');
                    return Json::Array(items);
                }
                loop {
                    items.push(self.value());
                    if self.peek() == b',' {
                        self.eat(b',');
                    } else {
                        self.eat(b']');
                        return Json::Array(items);
                    }
                }
            }
            b'"' => Json::String(self.string()),
            b't' | b'f' | b'n' => {
                for word in ["true", "false", "null"] {
                    if self.s[self.pos..].starts_with(word.as_bytes()) {
                        self.pos += word.len();
                        return Json::Literal(word);
                    }
                }
                panic!("bad JSON literal at byte {}", self.pos)
            }
            _ => {
                let start = self.pos;
                while self.pos < self.s.len()
                    && matches!(
                        self.s[self.pos],
                        b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9'
                    )
                {
                    self.pos += 1;
                }
                assert!(self.pos > start, "bad JSON at byte {start}");
                Json::Number(String::from_utf8(self.s[start..self.pos].to_vec()).unwrap())
            }
        }
    }

    fn string(&mut self) -> String {
        self.eat(b'"');
        let mut out = Vec::new();
        loop {
            let b = self.s[self.pos];
            self.pos += 1;
            match b {
                b'"' => return String::from_utf8(out).unwrap(),
                b'\\' => {
                    let e = self.s[self.pos];
                    self.pos += 1;
                    match e {
                        b'n' => out.push(b'\n'),
                        b't' => out.push(b'\t'),
                        b'r' => out.push(b'\r'),
                        b'b' => out.push(8),
                        b'f' => out.push(12),
                        b'u' => {
                            let hex = std::str::from_utf8(&self.s[self.pos..self.pos + 4]).unwrap();
                            self.pos += 4;
                            let c = char::from_u32(u32::from_str_radix(hex, 16).unwrap())
                                .unwrap_or('\u{fffd}');
                            out.extend_from_slice(c.to_string().as_bytes());
                        }
                        other => out.push(other),
                    }
                }
                other => out.push(other),
            }
        }
    }
}

/// One packet as ffprobe reports it (90 kHz ticks).
#[derive(Debug)]
struct ProbePacket {
    video: bool,
    pts: i64,
    dts: i64,
    key: bool,
}

/// `ffprobe -show_packets -of json` of `path`.
fn ffprobe_packets(path: &Path) -> Vec<ProbePacket> {
    let out = Command::new("ffprobe")
        .args(["-v", "error", "-show_packets", "-of", "json"])
        .arg(path)
        .output()
        .expect("these tests need FFmpeg's ffprobe on PATH");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.is_empty(),
        "ffprobe: {stderr}"
    );
    let json = Json::parse(std::str::from_utf8(&out.stdout).unwrap());
    json.get("packets")
        .expect("packets in ffprobe output")
        .as_array()
        .iter()
        .map(|p| ProbePacket {
            video: p.get("codec_type").unwrap().as_str() == "video",
            pts: p.get("pts").unwrap().as_i64(),
            dts: p.get("dts").unwrap().as_i64(),
            key: p.get("flags").unwrap().as_str().starts_with('K'),
        })
        .collect()
}

/// Runs ffmpeg with `args`, feeding `input` on stdin; returns stdout. Fails on any
/// message on stderr.
fn ffmpeg_pipe(args: &[&str], input: &[u8]) -> Vec<u8> {
    let mut child = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin"])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("these tests need FFmpeg's ffmpeg on PATH");
    // `-nostdin` only stops interactive commands; `pipe:0` still reads stdin.
    let mut stdin = child.stdin.take().unwrap();
    let input = input.to_vec();
    let writer = std::thread::spawn(move || {
        stdin.write_all(&input).unwrap();
    });
    let mut stdout = Vec::new();
    child
        .stdout
        .take()
        .unwrap()
        .read_to_end(&mut stdout)
        .unwrap();
    let out = child.wait_with_output().unwrap();
    writer.join().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stderr.is_empty(),
        "ffmpeg {args:?}: {stderr}"
    );
    stdout
}

/// Demuxes `ts` fed in reads of `chunk` bytes.
fn demux(ts: &[u8], chunk: usize) -> (Vec<Vec<Track>>, Vec<Frame>, DemuxStats) {
    let mut d = TsDemuxer::new();
    let mut events = Vec::new();
    for c in ts.chunks(chunk) {
        d.push(c, &mut events);
    }
    d.finish(&mut events);
    let mut tracks = Vec::new();
    let mut frames = Vec::new();
    for e in events {
        match e {
            DemuxEvent::Tracks(t) => {
                assert!(frames.is_empty(), "tracks announced again");
                tracks.push(t);
            }
            DemuxEvent::Frame(f) => frames.push(f),
        }
    }
    (tracks, frames, d.stats())
}

/// 90 kHz ticks to microseconds, rounded.
fn us(ticks: i64) -> i64 {
    (ticks * 100 + 4).div_euclid(9)
}

fn clean(stats: DemuxStats) -> bool {
    stats
        == DemuxStats {
            packets: stats.packets,
            ..DemuxStats::default()
        }
}

#[test]
fn ffmpeg_encoded_ts_matches_ffprobe() {
    let dir = temp_dir("ts-demux-ffmpeg");
    let path = dir.join("x264-aac.ts");
    let status = Command::new("ffmpeg")
        .args(["-v", "error", "-nostdin", "-y"])
        .args(["-f", "lavfi", "-i", "testsrc2=size=320x180:rate=30"])
        .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
        .args([
            "-t", "2", "-c:v", "libx264", "-pix_fmt", "yuv420p", "-g", "30",
        ])
        .args(["-c:a", "aac", "-f", "mpegts"])
        .arg(&path)
        .status()
        .expect("these tests need FFmpeg's ffmpeg on PATH");
    assert!(status.success());
    let ts = std::fs::read(&path).unwrap();
    let probe = ffprobe(&path);
    let packets = ffprobe_packets(&path);

    for chunk in [1, 188, 1000, 4096, 65536] {
        let (tracks, frames, stats) = demux(&ts, chunk);
        assert!(clean(stats), "{stats:?}");
        assert_eq!(tracks.len(), 1, "tracks announced once");
        let tracks = &tracks[0];
        assert_eq!(tracks.len(), 2);
        let (vt, at) = (&tracks[0], &tracks[1]);
        assert_eq!((vt.id, vt.codec), (1, Codec::H264));
        assert_eq!((at.id, at.codec), (2, Codec::Aac));
        let v = stream_of(&probe, "video");
        let a = stream_of(&probe, "audio");
        assert_eq!((vt.width, vt.height), (320, 180));
        assert_eq!(probe[&format!("streams.stream.{v}.width")], "320");
        assert_eq!(probe[&format!("streams.stream.{v}.height")], "180");
        assert_eq!(
            probe[&format!("streams.stream.{a}.sample_rate")],
            at.sample_rate.to_string()
        );
        assert_eq!(
            probe[&format!("streams.stream.{a}.channels")],
            at.channels.to_string()
        );
        assert_eq!((at.sample_rate, at.channels), (48000, 1));

        for (video, track) in [(true, 1), (false, 2)] {
            let want: Vec<&ProbePacket> = packets.iter().filter(|p| p.video == video).collect();
            let got: Vec<&Frame> = frames.iter().filter(|f| f.track == track).collect();
            assert_eq!(got.len(), want.len(), "track {track} frames");
            for (i, (g, w)) in got.iter().zip(&want).enumerate() {
                assert_eq!(
                    (g.dts, g.pts(), g.key),
                    (us(w.dts), us(w.pts), w.key),
                    "track {track} frame {i}"
                );
            }
        }
        let video_frames = frames.iter().filter(|f| f.track == 1).count();
        assert_eq!(video_frames, VIDEO_FRAMES);
        // The first timestamp is FFmpeg's, not rebased: its stream start time.
        let first_pts = frames.iter().map(Frame::pts).min().unwrap();
        let start = float(&probe, None, "start_time");
        assert!(
            (first_pts as f64 / 1e6 - start).abs() < 1e-5,
            "{first_pts} vs {start}"
        );
    }
    if std::env::var_os("BRUME_KEEP_TEST_FILES").is_none() {
        std::fs::remove_dir_all(dir).unwrap();
    }
}

/// Brume's fixtures muxed by Brume, starting at `offset_us`, in interleaved dts order.
fn brume_ts(offset_us: i64) -> (Vec<Track>, Vec<Frame>, Vec<u8>) {
    let (vt, vf) = video(1);
    let (at, af) = audio(2);
    let mut frames: Vec<Frame> = vf.into_iter().chain(af).collect();
    for f in &mut frames {
        f.dts += offset_us;
    }
    frames.sort_by_key(|f| (f.dts, f.track));
    let tracks = vec![vt, at];
    let mut mux = TsMuxer::new(&tracks).unwrap();
    let mut ts = Vec::new();
    for f in &frames {
        mux.mux(f, &mut ts).unwrap();
    }
    (tracks, frames, ts)
}

/// Asserts the demuxed frames are `sent`, per track and in order, with every timestamp
/// moved by `shift_us`.
fn assert_same_frames(got: &[Frame], sent: &[Frame], shift_us: i64) {
    for track in [1, 2] {
        let got: Vec<&Frame> = got.iter().filter(|f| f.track == track).collect();
        let sent: Vec<&Frame> = sent.iter().filter(|f| f.track == track).collect();
        assert_eq!(got.len(), sent.len(), "track {track} frames");
        for (i, (g, s)) in got.iter().zip(&sent).enumerate() {
            assert_eq!(
                (g.dts, g.cts, g.key),
                (s.dts + shift_us, s.cts, s.key),
                "track {track} frame {i}"
            );
            assert!(g.data == s.data, "track {track} frame {i} data");
        }
    }
}

#[test]
fn brume_ts_through_ffmpeg_copy_keeps_timestamps() {
    // 10 s in, so a rebase to zero would show.
    let offset = 10_000_000;
    let (tracks, sent, ts) = brume_ts(offset);
    // Our own stream demuxes to what was muxed.
    let (got_tracks, got, stats) = demux(&ts, 4096);
    assert!(clean(stats), "{stats:?}");
    assert_eq!(got_tracks, vec![tracks.clone()]);
    assert_same_frames(&got, &sent, 0);

    let dir = temp_dir("ts-demux-pipe");
    let cases: [(&[&str], Option<i64>); 3] = [
        // Exactly preserved: no rebase, no muxer delay.
        (
            &["-copyts", "-i", "pipe:0", "-c", "copy", "-muxdelay", "0"],
            Some(0),
        ),
        // No rebase, but the mpegts muxer still adds its delay.
        (
            &["-copyts", "-i", "pipe:0", "-c", "copy"],
            Some(MUXDELAY_OFFSET_US),
        ),
        // Rebased so the first DTS is 0, then the muxer delay.
        (&["-i", "pipe:0", "-c", "copy"], None),
    ];
    for (i, (args, shift)) in cases.into_iter().enumerate() {
        let mut args = args.to_vec();
        args.extend(["-f", "mpegts", "pipe:1"]);
        let out = ffmpeg_pipe(&args, &ts);
        let path = dir.join(format!("pipe{i}.ts"));
        std::fs::write(&path, &out).unwrap();
        assert_decodes_cleanly(&path);
        for chunk in [188, 4096, 65536] {
            let (got_tracks, got, stats) = demux(&out, chunk);
            assert!(clean(stats), "{args:?}: {stats:?}");
            assert_eq!(got_tracks, vec![tracks.clone()], "{args:?}");
            let first_dts = sent.iter().map(|f| f.dts).min().unwrap();
            let shift = shift.unwrap_or(MUXDELAY_OFFSET_US - first_dts);
            assert_same_frames(&got, &sent, shift);
        }
        // ffprobe agrees on the first video frame's time.
        let probed = ffprobe_packets(&path)
            .into_iter()
            .find(|p| p.video)
            .unwrap();
        let (_, got, _) = demux(&out, 4096);
        let first = got.iter().find(|f| f.track == 1).unwrap();
        assert_eq!((us(probed.dts), us(probed.pts)), (first.dts, first.pts()));
    }
    // The video fixture's frame period survives in the output: 30 fps.
    let out = ffmpeg_pipe(
        &[
            "-copyts",
            "-i",
            "pipe:0",
            "-c",
            "copy",
            "-muxdelay",
            "0",
            "-f",
            "mpegts",
            "pipe:1",
        ],
        &ts,
    );
    let (_, got, _) = demux(&out, 4096);
    let v: Vec<i64> = got.iter().filter(|f| f.track == 1).map(|f| f.dts).collect();
    assert_eq!(v[1] - v[0], (1_000_000 + FPS / 2) / FPS);
    if std::env::var_os("BRUME_KEEP_TEST_FILES").is_none() {
        std::fs::remove_dir_all(dir).unwrap();
    }
}
