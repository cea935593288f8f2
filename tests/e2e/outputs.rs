//! What a viewer of the embedded demo stream gets.

use crate::harness::Server;
use crate::media::{assert_decodes_clean, assert_h264_aac};
use std::time::Duration;

/// The default config (created by brume on first run): the demo stream's HLS (fMP4 and
/// MPEG-TS segments), MP4 and TS outputs decode without a single error, as H.264
/// 1280x720 + AAC.
#[test]
fn demo_outputs_decode() {
    let server = Server::start(None);
    let config = server.config_on_disk();
    assert!(
        config["streams"]["demo"].is_object(),
        "brume did not create the default config with the demo stream: {config}"
    );
    server.login();
    server.wait_live("demo", Duration::from_secs(20));
    let base = format!("http://127.0.0.1:{}", server.http_port);
    let urls = [
        format!("{base}/hls/demo/index.m3u8"),
        format!("{base}/hls/demo/ts.m3u8"),
        format!("{base}/demo.mp4"),
        format!("{base}/demo.ts"),
    ];
    std::thread::scope(|s| {
        for u in &urls {
            s.spawn(move || assert_decodes_clean(u, Some(5)));
        }
    });
    for u in &urls {
        assert_h264_aac(u, 1280, 720, None);
    }
}

/// A browser keeps a connection alive after a media request and sends its next API
/// call down the same socket: the API must answer it (not the media worker).
#[test]
fn keep_alive_connection_reaches_the_api_after_media() {
    use std::io::{Read, Write};
    let server = Server::start(Some(
        r#"{"streams":{"demo":{"source":{"type":"testsrc","width":320,"height":180,"fps":15,"bitrate_kbps":300},"always_on":true}}}"#,
    ));
    server.login();
    server.wait_live("demo", Duration::from_secs(20));
    let mut s = std::net::TcpStream::connect(("127.0.0.1", server.http_port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(b"GET /hls/demo/index.m3u8 HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    // Read exactly the playlist response (Content-Length delimited).
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let body_start = loop {
        let n = s.read(&mut buf).expect("playlist response");
        assert!(
            n > 0,
            "connection closed after the playlist: {:?}",
            String::from_utf8_lossy(&got)
        );
        got.extend_from_slice(&buf[..n]);
        if let Some(p) = crate::http::find(&got, b"\r\n\r\n") {
            break p + 4;
        }
    };
    let head = String::from_utf8_lossy(&got[..body_start]).to_lowercase();
    assert!(head.starts_with("http/1.1 200"), "{head}");
    let len: usize = head
        .lines()
        .find_map(|l| l.strip_prefix("content-length:"))
        .expect("content-length")
        .trim()
        .parse()
        .unwrap();
    while got.len() < body_start + len {
        let n = s.read(&mut buf).expect("playlist body");
        assert!(n > 0);
        got.extend_from_slice(&buf[..n]);
    }
    assert!(String::from_utf8_lossy(&got[body_start..]).starts_with("#EXTM3U"));
    // Same connection: an unauthenticated API call gets the API's 401 JSON (under a
    // name the board answers to: the API refuses foreign Host names).
    s.write_all(b"GET /api/v1/streams HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
        .unwrap();
    let rest = crate::http::read_until_close(&mut s, Duration::from_secs(20)).expect("API reply");
    let reply = crate::http::parse_reply(&rest).expect("an HTTP reply");
    assert_eq!(reply.status, 401, "{}", reply.text());
    assert!(reply.text().contains("log in"), "{}", reply.text());
}
