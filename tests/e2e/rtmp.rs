//! RTMP publishing with a real encoder (ffmpeg), seen through every output.

use crate::harness::{wait_until, Server};
use crate::http;
use crate::media::{assert_h264_aac, rtmp_publisher, run, Background};
use std::time::Duration;

const CAM: &str = r#"{"streams":{"cam":{"source":{"type":"rtmp","key":"s3cret"}}}}"#;

/// (media sequence, total EXTINF seconds) of a live playlist.
fn playlist_progress(port: u16, path: &str) -> (u64, f64) {
    let r = http::request(port, "GET", path, &[], None).expect("GET the playlist");
    assert_eq!(r.status, 200, "GET {path}: {}", r.text());
    let text = r.text();
    let seq = text
        .lines()
        .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("{path} has no media sequence:\n{text}"));
    let total: f64 = text
        .lines()
        .filter_map(|l| l.strip_prefix("#EXTINF:"))
        .filter_map(|v| {
            v.split(',')
                .next()
                .and_then(|d| d.trim().parse::<f64>().ok())
        })
        .sum();
    assert!(total > 0.0, "{path} lists no segment:\n{text}");
    (seq, total)
}

fn rejections(server: &Server, needle: &str) -> usize {
    server
        .all_logs()
        .lines()
        .filter(|l| l.contains("publisher rejected") && l.contains(needle))
        .count()
}

#[test]
fn rtmp_publish_reaches_every_output() {
    let server = Server::start(Some(CAM));
    server.login();
    let port = server.http_port;
    let url = format!("rtmp://127.0.0.1:{}/live/cam?key=s3cret", server.rtmp_port);
    let log = server.dir.join("publish.log");
    let mut ff = Background::spawn(rtmp_publisher(&url, "640x360", 60, 25), &log);

    let status = wait_until(Duration::from_secs(20), "cam to be live", || {
        if let Some(code) = ff.exited() {
            panic!(
                "the publisher ended early ({code:?}):\n{}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        let v = server.stream("cam");
        (v["status"]["state"] == "live").then_some(v)
    });
    let tracks = status["status"]["tracks"].as_array().expect("tracks");
    assert_eq!(tracks.len(), 2, "cam should have video and audio: {status}");

    let base = format!("http://127.0.0.1:{port}");
    for path in ["/hls/cam/index.m3u8", "/cam.mp4", "/cam.ts"] {
        assert_h264_aac(&format!("{base}{path}"), 640, 360, Some(44100));
    }

    // The live playlist moves on.
    let first = playlist_progress(port, "/hls/cam/index.m3u8");
    wait_until(Duration::from_secs(15), "the HLS playlist to grow", || {
        let now = playlist_progress(port, "/hls/cam/index.m3u8");
        (now.0 > first.0 || now.1 > first.1 + 0.5).then_some(())
    });
    assert!(
        ff.exited().is_none(),
        "the publisher ended while it should still be publishing:\n{}",
        std::fs::read_to_string(&log).unwrap_or_default()
    );
    drop(ff);

    // A wrong key and an unknown stream are refused.
    let before = rejections(&server, "wrong or missing publish key");
    let bad = format!("rtmp://127.0.0.1:{}/live/cam?key=wrong", server.rtmp_port);
    let out = run(
        rtmp_publisher(&bad, "160x90", 10, 25),
        Duration::from_secs(40),
    );
    assert!(
        !out.success(),
        "ffmpeg publishing with a wrong key succeeded:\n{}",
        out.stderr
    );
    wait_until(
        Duration::from_secs(10),
        "\"publisher rejected\" (wrong key) in the log",
        || (rejections(&server, "wrong or missing publish key") > before).then_some(()),
    );

    let unknown = format!("rtmp://127.0.0.1:{}/live/nope?key=s3cret", server.rtmp_port);
    let out = run(
        rtmp_publisher(&unknown, "160x90", 10, 25),
        Duration::from_secs(40),
    );
    assert!(
        !out.success(),
        "ffmpeg publishing to an unknown stream succeeded:\n{}",
        out.stderr
    );
    wait_until(
        Duration::from_secs(10),
        "\"publisher rejected\" (unknown stream) in the log",
        || (rejections(&server, "nope") > 0).then_some(()),
    );
    let (st, _) = server.get("/api/v1/streams/nope");
    assert_eq!(st, 404, "a rejected publisher must not create a stream");
}
