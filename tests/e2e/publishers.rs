//! What ordinary publisher settings do to every output: ffmpeg's default keyframe
//! interval (`-g 250`), a publisher that stops and comes back (at another resolution),
//! audio-only streams, and a stream nobody publishes yet.

use crate::harness::{ffmpeg, wait_until, Server};
use crate::http;
use crate::media::{assert_decodes_clean, probe, run, Background};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const CAM: &str = r#"{"streams":{"cam":{"source":{"type":"rtmp","key":"s3cret"}}}}"#;

/// ffmpeg publishing lavfi's test picture (`size`, 25 fps) and/or a tone for
/// `seconds`, with extra encoder options.
fn publisher(url: &str, video: Option<&str>, audio: bool, seconds: u32, opts: &[&str]) -> Command {
    let mut c = Command::new(ffmpeg());
    c.args(["-nostdin", "-hide_banner", "-loglevel", "warning", "-re"]);
    if let Some(size) = video {
        c.args([
            "-f",
            "lavfi",
            "-i",
            &format!("testsrc2=size={size}:rate=25"),
        ]);
    }
    if audio {
        c.args(["-f", "lavfi", "-i", "sine=f=1000:sample_rate=48000"]);
    }
    c.args(["-t", &seconds.to_string()]);
    if video.is_some() {
        c.args(["-c:v", "libx264", "-preset", "veryfast"]);
    }
    if audio {
        c.args(["-c:a", "aac"]);
    }
    c.args(opts);
    c.args(["-f", "flv", url]);
    c
}

fn url(server: &Server) -> String {
    format!("rtmp://127.0.0.1:{}/live/cam?key=s3cret", server.rtmp_port)
}

fn wait_state(server: &Server, state: &str, timeout: Duration) {
    wait_until(timeout, &format!("cam to be {state}"), || {
        (server.stream("cam")["status"]["state"] == state).then_some(())
    });
}

/// A viewer on a raw socket that keeps every byte it receives, with the time of the
/// last one and whether the server closed.
struct Viewer {
    got: Arc<Mutex<(Vec<u8>, Instant, bool)>>,
    _sock: TcpStream,
}

impl Viewer {
    fn open(port: u16, path: &str) -> Viewer {
        let mut sock = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        write!(sock, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n").expect("request");
        let got = Arc::new(Mutex::new((Vec::new(), Instant::now(), false)));
        let (mut rd, g) = (sock.try_clone().expect("clone"), got.clone());
        std::thread::spawn(move || {
            let mut buf = vec![0u8; 65536];
            loop {
                match rd.read(&mut buf) {
                    Ok(0) | Err(_) => {
                        g.lock().unwrap().2 = true;
                        return;
                    }
                    Ok(n) => {
                        let mut g = g.lock().unwrap();
                        g.0.extend_from_slice(&buf[..n]);
                        g.1 = Instant::now();
                    }
                }
            }
        });
        Viewer { got, _sock: sock }
    }

    fn len(&self) -> usize {
        self.got.lock().unwrap().0.len()
    }

    fn closed(&self) -> bool {
        self.got.lock().unwrap().2
    }

    /// The body (after the HTTP head).
    fn body(&self) -> Vec<u8> {
        let g = self.got.lock().unwrap();
        let at =
            g.0.windows(4)
                .position(|w| w == b"\r\n\r\n")
                .map_or(0, |p| p + 4);
        g.0[at..].to_vec()
    }
}

/// The value of `#TAG:` in a playlist, and the segment durations.
fn playlist(port: u16) -> (String, Vec<f64>) {
    let r = http::request(port, "GET", "/hls/cam/index.m3u8", &[], None).expect("GET");
    assert_eq!(r.status, 200, "playlist: {}", r.text());
    let text = r.text();
    let durations = text
        .lines()
        .filter_map(|l| l.strip_prefix("#EXTINF:"))
        .filter_map(|v| v.trim_end_matches(',').parse().ok())
        .collect();
    (text, durations)
}

fn tag<'a>(text: &'a str, name: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(name))
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

/// ffmpeg's default keyframe interval is 250 frames (10 s at 25 fps). A new MP4 viewer
/// starts at the newest keyframe and plays forward, on a timeline of its own from 0:
/// it used to be sent the same keyframe over and over (hundreds of MB in 3 s).
#[test]
fn long_gop_viewers_play_forward_from_the_newest_keyframe() {
    let server = Server::start(Some(CAM));
    server.login();
    let log = server.dir.join("publish.log");
    let opts = [
        "-g", "250", "-b:v", "1M", "-maxrate", "1M", "-bufsize", "2M",
    ];
    let _ff = Background::spawn(
        publisher(&url(&server), Some("640x360"), true, 60, &opts),
        &log,
    );
    wait_state(&server, "live", Duration::from_secs(20));
    std::thread::sleep(Duration::from_secs(4)); // a viewer joins mid-GOP

    let mp4 = Viewer::open(server.http_port, "/cam.mp4");
    let ts = Viewer::open(server.http_port, "/cam.ts");
    std::thread::sleep(Duration::from_secs(3));
    let (mp4_bytes, ts_bytes) = (mp4.len(), ts.len());
    eprintln!(
        "-g 250 at 1 Mbit/s: first 3 s to a new viewer: MP4 {mp4_bytes} bytes, TS {ts_bytes} bytes"
    );
    // One 10 s GOP at 1 Mbit/s is ~1.25 MB; allow for the encoder's overshoot.
    for (what, n) in [("MP4", mp4_bytes), ("TS", ts_bytes)] {
        assert!(n > 50_000, "{what}: only {n} bytes in 3 s");
        assert!(
            n < 3_000_000,
            "{what}: {n} bytes in 3 s: more than a GOP's worth"
        );
    }
    std::thread::sleep(Duration::from_secs(3));
    for (name, v) in [("long-gop.mp4", &mp4), ("long-gop.ts", &ts)] {
        let path = server.dir.join(name);
        std::fs::write(&path, v.body()).expect("write");
        let path = path.to_str().expect("utf-8");
        assert_decodes_clean(path, None);
        let video = probe(path)
            .into_iter()
            .find(|s| s["codec_type"] == "video")
            .expect("a video stream");
        if name.ends_with(".mp4") {
            let start: f64 = video["start_time"].as_str().unwrap_or("9").parse().unwrap();
            assert!(
                start.abs() < 0.5,
                "{name}: the viewer's timeline starts at {start} s"
            );
        }
    }
    // A snapshot, though the stream has no JPEG track: its newest keyframe, decoded.
    let r = http::request(server.http_port, "GET", "/cam.jpg", &[], None).expect("GET");
    assert_eq!(r.status, 200, "/cam.jpg: {}", r.text());
    assert_eq!(r.header("content-type"), Some("image/jpeg"));
    let jpg = server.dir.join("snapshot.jpg");
    std::fs::write(&jpg, &r.body).expect("write");
    let pic = probe(jpg.to_str().expect("utf-8"));
    assert_eq!(pic[0]["width"], 640, "{pic:?}");
    // HLS of the same stream works too.
    let (text, durations) = playlist(server.http_port);
    assert!(
        durations.iter().all(|d| *d > 5.0),
        "HLS segments are whole GOPs:\n{text}"
    );
}

/// A publisher that stops and comes back, at a new resolution: HLS numbering keeps
/// growing, with a new init segment and a discontinuity; a TS viewer stays connected
/// through it and gets the new pictures; the stream says it waits in between.
#[test]
fn a_returning_publisher_continues_hls_and_keeps_ts_viewers() {
    let server = Server::start(Some(CAM));
    server.login();
    let port = server.http_port;

    // Nobody has published yet: outputs say so at once.
    let r = http::request(port, "GET", "/hls/cam/index.m3u8", &[], None).expect("GET");
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.text().contains("no publisher"), "{}", r.text());
    assert_eq!(server.stream("cam")["status"]["state"], "waiting");

    let opts = ["-g", "25"];
    let first = Background::spawn(
        publisher(&url(&server), Some("640x360"), true, 9, &opts),
        &server.dir.join("publish-1.log"),
    );
    wait_state(&server, "live", Duration::from_secs(20));
    wait_until(Duration::from_secs(15), "three HLS segments", || {
        (playlist(port).1.len() >= 3).then_some(())
    });
    let ts = Viewer::open(port, "/cam.ts");
    let mp4 = Viewer::open(port, "/cam.mp4");
    let (text, _) = playlist(port);
    let seq1: u64 = tag(&text, "#EXT-X-MEDIA-SEQUENCE:").parse().unwrap();
    let disc1 = discontinuity_sequence(&text);
    let init1 = tag(&text, "#EXT-X-MAP:URI=").to_string();
    assert!(text.contains("#EXT-X-PROGRAM-DATE-TIME:20"), "{text}");

    // The publisher leaves: the stream waits for it, viewers stay.
    drop(wait_exit(first));
    wait_state(&server, "waiting", Duration::from_secs(10));
    let before = ts.len();
    assert!(
        !ts.closed(),
        "the TS viewer was dropped when the publisher left"
    );

    // It comes back at another resolution.
    let _second = Background::spawn(
        publisher(&url(&server), Some("320x180"), true, 30, &opts),
        &server.dir.join("publish-2.log"),
    );
    wait_state(&server, "live", Duration::from_secs(20));
    let text = wait_until(
        Duration::from_secs(20),
        "the new epoch in the playlist",
        || {
            let (text, d) = playlist(port);
            (tag(&text, "#EXT-X-MAP:URI=") != init1 && !d.is_empty()).then_some(text)
        },
    );
    let seq2: u64 = tag(&text, "#EXT-X-MEDIA-SEQUENCE:").parse().unwrap();
    let disc2 = discontinuity_sequence(&text);
    assert!(
        seq2 > seq1,
        "media sequence went from {seq1} to {seq2}:\n{text}"
    );
    assert!(
        disc2 > disc1,
        "discontinuity sequence went from {disc1} to {disc2}:\n{text}"
    );
    let init2 = tag(&text, "#EXT-X-MAP:URI=").trim_matches('"').to_string();
    let init = http::request(port, "GET", &format!("/hls/cam/{init2}"), &[], None).expect("init");
    assert_eq!(init.status, 200, "{init2}");

    std::thread::sleep(Duration::from_secs(4));
    assert!(
        !ts.closed(),
        "the TS viewer was dropped when the publisher came back"
    );
    assert!(
        ts.len() > before + 20_000,
        "the TS viewer got nothing after the return"
    );
    assert!(
        mp4.closed(),
        "an MP4 viewer cannot change resolution: its response ends"
    );
    let path = server.dir.join("reconnect.ts");
    std::fs::write(&path, ts.body()).expect("write");
    let mut cmd = Command::new(crate::harness::ffprobe());
    cmd.args([
        "-v",
        "error",
        "-select_streams",
        "v",
        "-show_entries",
        "frame=width",
    ]);
    cmd.args(["-of", "csv=p=0", path.to_str().expect("utf-8")]);
    let widths = run(cmd, Duration::from_secs(60)).stdout;
    for w in ["640", "320"] {
        assert!(
            widths.lines().any(|l| l.trim() == w),
            "the TS viewer's stream has no {w}-wide picture"
        );
    }
}

/// `EXT-X-DISCONTINUITY-SEQUENCE` (0 when absent). Small: hls.js stalls on large ones.
fn discontinuity_sequence(text: &str) -> u64 {
    let n = text
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-DISCONTINUITY-SEQUENCE:"))
        .map_or(0, |v| v.parse().unwrap());
    assert!(n < 1000, "discontinuity sequence {n}:\n{text}");
    n
}

/// Waits (bounded) for a publisher that was given a duration to finish.
fn wait_exit(mut p: Background) -> Background {
    wait_until(Duration::from_secs(30), "the publisher to finish", || {
        p.exited().map(|_| ())
    });
    p
}

/// An audio-only stream is cut into segments of about a second, not one 21 ms AAC
/// frame each, and plays.
#[test]
fn audio_only_hls_has_second_long_segments() {
    let server = Server::start(Some(CAM));
    server.login();
    let _ff = Background::spawn(
        publisher(&url(&server), None, true, 60, &[]),
        &server.dir.join("publish.log"),
    );
    wait_state(&server, "live", Duration::from_secs(20));
    let (text, durations) = wait_until(Duration::from_secs(15), "four segments", || {
        let (text, d) = playlist(server.http_port);
        (d.len() >= 4).then_some((text, d))
    });
    assert!(
        durations.iter().all(|d| (0.85..=2.1).contains(d)),
        "audio-only segments should last about a second:\n{text}"
    );
    let url = format!("http://127.0.0.1:{}/hls/cam/index.m3u8", server.http_port);
    assert_decodes_clean(&url, Some(3));
}
