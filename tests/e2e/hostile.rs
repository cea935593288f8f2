//! Hostile and broken clients: each is refused or dropped on its own, and nobody else
//! notices.

use crate::harness::{wait_until, Server, PASSWORD, SMALL_DEMO};
use crate::http::{self, find, Viewer};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// Deterministic pseudo-random bytes (xorshift64*).
fn noise(n: usize, mut seed: u64) -> Vec<u8> {
    (0..n)
        .map(|_| {
            seed ^= seed >> 12;
            seed ^= seed << 25;
            seed ^= seed >> 27;
            (seed.wrapping_mul(0x2545_f491_4f6c_dd1d) >> 56) as u8
        })
        .collect()
}

/// Writes `bytes` (ignoring a server that stops reading), then reads until the server
/// closes or resets the connection; panics if it stays open for `timeout`.
fn send_until_closed(port: u16, bytes: &[u8], timeout: Duration) -> Vec<u8> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let mut w = s.try_clone().expect("clone the socket");
    let bytes = bytes.to_vec();
    let writer = std::thread::spawn(move || {
        let _ = w.set_write_timeout(Some(Duration::from_secs(10)));
        let _ = w.write_all(&bytes);
    });
    let deadline = Instant::now() + timeout;
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    s.set_read_timeout(Some(Duration::from_millis(200)))
        .expect("read timeout");
    loop {
        match s.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) => {}
            Err(_) => break, // reset: closed too
        }
        if Instant::now() >= deadline {
            panic!(
                "the server kept the connection open for {timeout:?} (got {} bytes)",
                got.len()
            );
        }
    }
    let _ = writer.join();
    got
}

fn status_of(raw: &[u8]) -> u16 {
    http::parse_reply(raw)
        .unwrap_or_else(|| panic!("not an HTTP reply: {:?}", http::preview(raw)))
        .status
}

/// RTMP: a valid handshake (C0 + C1, C2), then a chunk cut short, then close.
fn truncated_rtmp_session(port: u16) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect to RTMP");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut c0c1 = vec![3u8];
    c0c1.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0, 0]);
    c0c1.extend_from_slice(&noise(1528, 7));
    s.write_all(&c0c1).expect("send C0+C1");
    let mut s0s1s2 = vec![0u8; 1 + 1536 + 1536];
    s.read_exact(&mut s0s1s2)
        .expect("the server answers the handshake with S0+S1+S2");
    assert_eq!(s0s1s2[0], 3, "S0 must be version 3");
    s.write_all(&s0s1s2[1..1537]).expect("send C2");
    // Chunk basic header (fmt 0, csid 3), type-0 message header announcing a
    // 300-byte AMF0 command on stream 0, then only the start of its payload.
    let mut chunk = vec![0x03, 0, 0, 0, 0x00, 0x01, 0x2c, 0x14, 0, 0, 0, 0];
    chunk.extend_from_slice(&[0x02, 0x00, 0x07]);
    chunk.extend_from_slice(b"conn");
    s.write_all(&chunk).expect("send the truncated chunk");
    drop(s);
}

#[test]
fn bad_input_is_contained() {
    let server = Server::start(Some(SMALL_DEMO));
    server.login();
    server.wait_live("demo", Duration::from_secs(20));
    let original = server.config_on_disk()["streams"].clone();
    let port = server.http_port;
    let viewer = Viewer::open(port, "/demo.ts");
    viewer.wait_more_than(0, Duration::from_secs(20), "first bytes");
    let workers_before = server.pids_of("worker");

    // (a) Random bytes on the RTMP port: the server closes the connection.
    let mut junk = noise(5000, 0x5eed);
    if junk[0] == 3 {
        junk[0] = 0x55; // not the RTMP version: garbage from the first byte
    }
    send_until_closed(server.rtmp_port, &junk, Duration::from_secs(20));

    // (b) A valid handshake, then a truncated chunk, then the client goes away.
    truncated_rtmp_session(server.rtmp_port);
    wait_until(
        Duration::from_secs(20),
        "the RTMP connection processes to end",
        || {
            let mut now = server.pids_of("worker");
            now.sort();
            let mut before = workers_before.clone();
            before.sort();
            (now == before).then_some(())
        },
    );

    // (c) A 64 KiB request header: 431.
    let mut big = b"GET /demo.ts HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    big.extend(std::iter::repeat_n(b'a', 64 * 1024));
    big.extend_from_slice(b"\r\n\r\n");
    let raw = send_until_closed(port, &big, Duration::from_secs(20));
    assert_eq!(status_of(&raw), 431, "a 64 KiB header");

    // (d) A request line of garbage: 400.
    let raw = send_until_closed(
        port,
        b"\x16\x03\x01garbage\x00\xff\r\n\r\n",
        Duration::from_secs(20),
    );
    assert_eq!(status_of(&raw), 400, "a garbage request line");

    // (e) Invalid stream definitions: refused with the reason and the field.
    let (st, v) = server.post("/api/v1/streams", "{\"name\": \"x\", \"source\": ");
    assert_eq!(st, 400, "invalid JSON: {v}");
    assert!(v["error"].is_string(), "no error message: {v}");
    let (st, v) = server.post(
        "/api/v1/streams",
        r#"{"name":"x","source":{"type":"testsrc","width":13}}"#,
    );
    assert_eq!(st, 422, "width 13: {v}");
    assert_eq!(v["field"], "source.width", "{v}");
    assert!(v["error"].is_string(), "no error message: {v}");
    let (st, v) = server.put(
        "/api/v1/streams/demo",
        r#"{"source":{"type":"satellite","dish":"big"}}"#,
    );
    assert_eq!(st, 422, "unknown source type: {v}");
    assert!(v["error"].is_string(), "no error message: {v}");
    let (st, _) = server.get("/api/v1/streams/x");
    assert_eq!(st, 404, "the refused stream x exists anyway");

    // (f) No token: 401. Guessing passwords: the 6th wrong attempt is throttled.
    let r = http::request(port, "GET", "/api/v1/streams", &[], None).expect("GET");
    assert_eq!(r.status, 401, "unauthenticated: {}", r.text());
    let mut statuses = Vec::new();
    let mut retry_after = None;
    for i in 0..6 {
        let body = format!("{{\"password\":\"not-{PASSWORD}-{i}\"}}");
        let r = http::request(
            port,
            "POST",
            "/api/v1/login",
            &[("Content-Type", "application/json")],
            Some(body.as_bytes()),
        )
        .expect("POST /api/v1/login");
        statuses.push(r.status);
        retry_after = r.header("retry-after").map(str::to_string);
    }
    assert_eq!(statuses, vec![401, 401, 401, 401, 401, 429], "wrong logins");
    assert!(
        retry_after.is_some_and(|s| s.parse::<u64>().is_ok_and(|s| s > 0)),
        "the 429 does not say when to retry"
    );

    // Nobody else noticed.
    let n = viewer.bytes();
    viewer.wait_more_than(
        n + 16 * 1024,
        Duration::from_secs(10),
        "the viewer after the attacks",
    );
    let (st, v) = server.get("/api/v1/streams");
    assert_eq!(st, 200, "the API after the attacks: {v}");
    assert_eq!(v["streams"].as_array().map(Vec::len), Some(1), "{v}");
    assert_eq!(v["streams"][0]["status"]["state"], "live", "{v}");
    assert_eq!(
        server.config_on_disk()["streams"],
        original,
        "the config file changed"
    );
    assert!(
        find(server.log().as_bytes(), b"panicked").is_none(),
        "a process panicked:\n{}",
        server.log()
    );
}
