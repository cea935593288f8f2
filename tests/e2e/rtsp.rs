//! The RTSP server: `rtsp://HOST:PORT/<stream>` seen by ffprobe and ffmpeg over TCP
//! (interleaved) and UDP, and by a raw client that checks the protocol's fields
//! (SDP, sequence numbers, timestamps, markers, sender reports).

use crate::harness::{ffmpeg, wait_until, Server};
use crate::media::{assert_h264_aac, run, Background};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::{Duration, Instant};

fn url(server: &Server, stream: &str) -> String {
    format!("rtsp://127.0.0.1:{}/{stream}", server.rtsp_port)
}

/// Decodes `seconds` of `url` over `transport` with ffmpeg at `-v error`: asserts
/// nothing is printed and returns the number of video frames decoded.
fn decode(url: &str, transport: &str, seconds: u32) -> u64 {
    let mut cmd = Command::new(ffmpeg());
    cmd.args(["-nostdin", "-v", "error", "-rtsp_transport", transport]);
    cmd.args(["-i", url, "-t", &seconds.to_string()]);
    cmd.args(["-progress", "pipe:1", "-f", "null", "-"]);
    let out = run(cmd, Duration::from_secs(60));
    assert!(
        out.success() && out.stderr.trim().is_empty(),
        "decoding {url} over {transport} was not clean: exit {:?}, stderr:\n{}",
        out.code,
        out.stderr
    );
    out.stdout
        .lines()
        .filter_map(|l| l.strip_prefix("frame="))
        .filter_map(|v| v.trim().parse().ok())
        .max()
        .unwrap_or(0)
}

#[test]
fn demo_over_rtsp_tcp_and_udp() {
    let server = Server::start(None);
    server.login();
    server.wait_live("demo", Duration::from_secs(30));
    let u = url(&server, "demo");
    assert_h264_aac(&u, 1280, 720, Some(48000));
    for transport in ["tcp", "udp"] {
        let frames = decode(&u, transport, 5);
        assert!(frames >= 100, "{transport}: {frames} frames decoded in 5 s");
    }
}

/// A minimal RTSP client on a raw socket.
struct Client {
    sock: TcpStream,
    buf: Vec<u8>,
    cseq: u32,
}

struct Reply {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

enum Msg {
    Reply(Reply),
    Data(u8, Vec<u8>),
}

impl Client {
    fn connect(port: u16) -> Client {
        let sock = TcpStream::connect(("127.0.0.1", port)).expect("connect to RTSP");
        sock.set_read_timeout(Some(Duration::from_secs(20)))
            .unwrap();
        Client {
            sock,
            buf: Vec::new(),
            cseq: 0,
        }
    }

    fn fill(&mut self) -> bool {
        let mut b = [0u8; 65536];
        match self.sock.read(&mut b) {
            Ok(0) | Err(_) => false,
            Ok(n) => {
                self.buf.extend_from_slice(&b[..n]);
                true
            }
        }
    }

    /// The next message; None at the end of the connection.
    fn next(&mut self) -> Option<Msg> {
        loop {
            if self.buf.first() == Some(&b'$') && self.buf.len() >= 4 {
                let len = usize::from(u16::from_be_bytes([self.buf[2], self.buf[3]]));
                if self.buf.len() >= 4 + len {
                    let ch = self.buf[1];
                    let data = self.buf[4..4 + len].to_vec();
                    self.buf.drain(..4 + len);
                    return Some(Msg::Data(ch, data));
                }
            } else if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                let mut lines = head.lines();
                let status_line = lines.next().unwrap_or("");
                assert!(status_line.starts_with("RTSP/1.0 "), "{head}");
                let status = status_line[9..12].parse().expect("status");
                let headers: Vec<(String, String)> = lines
                    .filter_map(|l| l.split_once(':'))
                    .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
                    .collect();
                let len: usize = headers
                    .iter()
                    .find(|(n, _)| n.eq_ignore_ascii_case("content-length"))
                    .map(|(_, v)| v.parse().unwrap())
                    .unwrap_or(0);
                while self.buf.len() < end + 4 + len {
                    assert!(self.fill(), "connection closed inside a body");
                }
                let body = String::from_utf8_lossy(&self.buf[end + 4..end + 4 + len]).into_owned();
                self.buf.drain(..end + 4 + len);
                return Some(Msg::Reply(Reply {
                    status,
                    headers,
                    body,
                }));
            }
            if !self.fill() {
                return None;
            }
        }
    }

    fn request(&mut self, method: &str, uri: &str, headers: &[(&str, &str)]) -> Reply {
        self.cseq += 1;
        let mut r = format!("{method} {uri} RTSP/1.0\r\nCSeq: {}\r\n", self.cseq);
        for (n, v) in headers {
            r.push_str(&format!("{n}: {v}\r\n"));
        }
        r.push_str("\r\n");
        self.sock.write_all(r.as_bytes()).expect("send a request");
        loop {
            match self.next().expect("a reply") {
                Msg::Reply(rep) => {
                    assert_eq!(
                        rep.header("cseq"),
                        Some(self.cseq.to_string().as_str()),
                        "CSeq echoed"
                    );
                    return rep;
                }
                Msg::Data(..) => {}
            }
        }
    }
}

#[test]
fn protocol_fields_over_tcp_and_unknown_streams() {
    let server = Server::start(None);
    server.login();
    server.wait_live("demo", Duration::from_secs(30));
    let base = url(&server, "demo");

    // Unknown stream: 404 to DESCRIBE, to ffprobe as well.
    let mut c = Client::connect(server.rtsp_port);
    let r = c.request("DESCRIBE", &url(&server, "nope"), &[]);
    assert_eq!(r.status, 404);
    let mut probe = Command::new(crate::harness::ffprobe());
    probe.args(["-v", "error", &url(&server, "nope")]);
    let out = run(probe, Duration::from_secs(30));
    assert!(
        !out.success() && out.stderr.contains("404"),
        "{}",
        out.stderr
    );

    let mut c = Client::connect(server.rtsp_port);
    let r = c.request("OPTIONS", &base, &[]);
    assert_eq!(r.status, 200);
    for m in ["DESCRIBE", "SETUP", "PLAY", "TEARDOWN", "GET_PARAMETER"] {
        assert!(r.header("public").unwrap_or("").contains(m), "Public: {m}");
    }
    let r = c.request("DESCRIBE", &base, &[("Accept", "application/sdp")]);
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type"), Some("application/sdp"));
    let sdp = r.body;
    for needle in [
        "m=video 0 RTP/AVP 96",
        "a=rtpmap:96 H264/90000",
        "packetization-mode=1",
        "profile-level-id=",
        "sprop-parameter-sets=",
        "m=audio 0 RTP/AVP 97",
        "a=rtpmap:97 MPEG4-GENERIC/48000/",
        "mode=AAC-hbr;sizelength=13;indexlength=3;indexdeltalength=3;config=",
    ] {
        assert!(sdp.contains(needle), "SDP lacks {needle:?}:\n{sdp}");
    }
    let controls: Vec<&str> = sdp
        .lines()
        .filter_map(|l| l.strip_prefix("a=control:"))
        .filter(|c| *c != "*")
        .collect();
    assert_eq!(controls.len(), 2, "{sdp}");
    let content_base = r
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("content-base"))
        .map(|(_, v)| v.clone())
        .expect("Content-Base");

    let mut session = String::new();
    for (i, ctl) in controls.iter().enumerate() {
        let transport = format!("RTP/AVP/TCP;unicast;interleaved={}-{}", 2 * i, 2 * i + 1);
        let mut h = vec![("Transport", transport.as_str())];
        if !session.is_empty() {
            h.push(("Session", session.as_str()));
        }
        let r = c.request("SETUP", &format!("{content_base}{ctl}"), &h);
        assert_eq!(r.status, 200, "SETUP {ctl}");
        assert!(
            r.header("transport").unwrap().contains(&format!(
                "interleaved={}-{}",
                2 * i,
                2 * i + 1
            )),
            "{:?}",
            r.header("transport")
        );
        session = r
            .header("session")
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_string();
    }
    let r = c.request("PLAY", &base, &[("Session", &session)]);
    assert_eq!(r.status, 200);
    let info = r.header("rtp-info").expect("RTP-Info").to_string();
    assert_eq!(info.matches("seq=").count(), 2, "{info}");

    // 4 s of packets: per channel, sequence numbers without a gap, one timestamp
    // per access unit (video frames ~33 ms apart at 90 kHz), markers at the ends of
    // access units, and sender reports about every second.
    let mut last_seq: [Option<u16>; 2] = [None, None];
    let mut packets = [0u32; 2];
    let mut reports: [Vec<(u64, u32)>; 2] = [Vec::new(), Vec::new()];
    let mut video_ts: Vec<u32> = Vec::new();
    let mut last_marker_ts: Option<u32> = None;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(4) {
        let Some(Msg::Data(ch, p)) = c.next() else {
            continue;
        };
        let track = usize::from(ch / 2);
        assert!(track < 2 && p.len() >= 8 && p[0] >> 6 == 2, "channel {ch}");
        if ch % 2 == 1 {
            assert_eq!(p[1], 200, "a sender report first");
            let ntp = u64::from_be_bytes(p[8..16].try_into().unwrap());
            let rtp = u32::from_be_bytes(p[16..20].try_into().unwrap());
            reports[track].push((ntp, rtp));
            continue;
        }
        assert!(p.len() <= 1400, "packet of {} bytes", p.len());
        packets[track] += 1;
        let seq = u16::from_be_bytes([p[2], p[3]]);
        if let Some(l) = last_seq[track] {
            assert_eq!(seq, l.wrapping_add(1), "track {track}: sequence gap");
        }
        last_seq[track] = Some(seq);
        let ts = u32::from_be_bytes(p[4..8].try_into().unwrap());
        if track == 0 {
            assert_eq!(p[1] & 0x7f, 96);
            if p[1] & 0x80 != 0 {
                video_ts.push(ts);
                last_marker_ts = Some(ts);
            } else if let Some(m) = last_marker_ts {
                assert_ne!(ts, m, "a packet after the marker with its timestamp");
            }
        } else {
            assert_eq!(p[1], 0x80 | 97, "AAC: one AU per packet, marker set");
        }
    }
    assert!(packets[0] > 50 && packets[1] > 50, "packets {packets:?}");
    assert!(
        video_ts.len() >= 60,
        "{} video frames in 4 s",
        video_ts.len()
    );
    let deltas: Vec<u32> = video_ts
        .windows(2)
        .map(|w| w[1].wrapping_sub(w[0]))
        .collect();
    // The demo runs at 30 fps (a loaded machine drops frames: gaps of whole frames).
    let mut sorted = deltas.clone();
    sorted.sort_unstable();
    let median = sorted[sorted.len() / 2];
    assert!(
        (2990..=3010).contains(&median) && deltas.iter().all(|d| *d > 0 && *d < 90_000),
        "video timestamp steps (90 kHz, 30 fps): {deltas:?}"
    );
    for (track, clock) in [(0usize, 90_000f64), (1, 48_000f64)] {
        let r = &reports[track];
        assert!(
            (3..=6).contains(&r.len()),
            "track {track}: {} reports in 4 s",
            r.len()
        );
        // Between two reports, RTP time advances as much as NTP time.
        let (n0, t0) = r[0];
        let (n1, t1) = r[r.len() - 1];
        let wall = (n1 - n0) as f64 / 4_294_967_296.0;
        let media = f64::from(t1.wrapping_sub(t0)) / clock;
        assert!(
            (media - wall).abs() < 0.1,
            "track {track}: {wall} s of wall clock, {media} s of RTP time"
        );
    }
    // Both tracks map one wall clock to their RTP times: measured from the RTP times
    // RTP-Info gives for the play's start, their media times at one NTP time agree
    // (what a client syncs audio and video by).
    let starts: Vec<u32> = info
        .split(',')
        .map(|t| {
            t.split(';')
                .find_map(|p| p.trim().strip_prefix("rtptime="))
                .and_then(|v| v.parse().ok())
                .expect("rtptime in RTP-Info")
        })
        .collect();
    let media_at = |track: usize, clock: f64| {
        let (n, t) = reports[track][reports[track].len() - 1];
        let media = f64::from(t.wrapping_sub(starts[track])) / clock;
        (n as f64 / 4_294_967_296.0, media)
    };
    let (wall_v, media_v) = media_at(0, 90_000.0);
    let (wall_a, media_a) = media_at(1, 48_000.0);
    let skew = (media_v - media_a) - (wall_v - wall_a);
    assert!(
        skew.abs() < 0.005,
        "audio/video mapping differs by {skew} s"
    );

    let r = c.request("GET_PARAMETER", &base, &[("Session", &session)]);
    assert_eq!(r.status, 200);
    let r = c.request("TEARDOWN", &base, &[("Session", &session)]);
    assert_eq!(r.status, 200);
    while c.next().is_some() {}
}

#[test]
fn rtmp_published_stream_over_rtsp_and_a_killed_worker() {
    let server = Server::start(Some(
        r#"{"streams":{"cam":{"source":{"type":"rtmp","key":"s3cret"}}}}"#,
    ));
    let mut c = Command::new(ffmpeg());
    c.args(["-nostdin", "-hide_banner", "-loglevel", "warning", "-re"]);
    c.args(["-f", "lavfi", "-i", "testsrc=size=640x360:rate=25"]);
    c.args(["-f", "lavfi", "-i", "sine=f=1000:sample_rate=44100"]);
    c.args(["-t", "60", "-c:v", "libx264", "-preset", "ultrafast"]);
    c.args([
        "-tune",
        "zerolatency",
        "-g",
        "25",
        "-c:a",
        "aac",
        "-f",
        "flv",
    ]);
    c.arg(format!(
        "rtmp://127.0.0.1:{}/live/cam?key=s3cret",
        server.rtmp_port
    ));
    server.login();
    let _publisher = Background::spawn(c, &server.dir.join("publisher.log"));
    server.wait_live("cam", Duration::from_secs(30));
    let u = url(&server, "cam");
    assert_h264_aac(&u, 640, 360, Some(44100));
    let frames = decode(&u, "tcp", 4);
    assert!(frames >= 75, "{frames} frames in 4 s at 25 fps");

    // A killed RTSP worker: the connection ends (RTP state is not resumed); a new
    // connection plays again.
    let before = server.pids_of("worker");
    let mut c = Client::connect(server.rtsp_port);
    let r = c.request("DESCRIBE", &u, &[]);
    assert_eq!(r.status, 200);
    let worker = wait_until(Duration::from_secs(5), "the RTSP worker", || {
        server
            .pids_of("worker")
            .into_iter()
            .find(|p| !before.contains(p))
    });
    crate::harness::signal(worker, libc::SIGKILL);
    let t = Instant::now();
    while c.next().is_some() {
        assert!(t.elapsed() < Duration::from_secs(5), "still connected");
    }
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "the connection stayed open"
    );
    let frames = decode(&u, "udp", 3);
    assert!(frames >= 50, "{frames} frames in 3 s after the kill");
}

#[test]
fn udp_reports_and_the_port_a_client_sends_from() {
    use std::net::UdpSocket;
    let server = Server::start(None);
    server.login();
    server.wait_live("demo", Duration::from_secs(30));
    let base = url(&server, "demo");
    // The ports the client names (RTP, RTCP), and the one it really receives on (as
    // behind a NAT, where the mapped port differs from the named one).
    let (named, named_rtcp) = loop {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let p = a.local_addr().unwrap().port();
        if p.is_multiple_of(2) {
            if let Ok(b) = UdpSocket::bind(("127.0.0.1", p + 1)) {
                break (a, b);
            }
        }
    };
    let mapped = UdpSocket::bind("127.0.0.1:0").unwrap();
    for s in [&named, &named_rtcp, &mapped] {
        s.set_read_timeout(Some(Duration::from_millis(5))).unwrap();
    }
    let port = named.local_addr().unwrap().port();

    let mut c = Client::connect(server.rtsp_port);
    let r = c.request("DESCRIBE", &base, &[]);
    assert_eq!(r.status, 200);
    let transport = format!("RTP/AVP;unicast;client_port={}-{}", port, port + 1);
    let r = c.request(
        "SETUP",
        &format!("{base}/track1"),
        &[("Transport", &transport)],
    );
    assert_eq!(r.status, 200);
    let t = r.header("transport").unwrap().to_string();
    assert!(
        t.contains(&format!("client_port={}-{}", port, port + 1)),
        "{t}"
    );
    let server_port: u16 = t
        .split(';')
        .find_map(|p| p.strip_prefix("server_port="))
        .and_then(|v| v.split('-').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no server_port in {t}"));
    assert_eq!(server_port % 2, 0, "RTP on an even port");
    let session = r
        .header("session")
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_string();
    mapped
        .send_to(
            &[0x80, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0],
            ("127.0.0.1", server_port),
        )
        .unwrap();
    let r = c.request("PLAY", &base, &[("Session", &session)]);
    assert_eq!(r.status, 200);

    let (mut at_mapped, mut reports) = (0, 0);
    let start = Instant::now();
    let mut b = [0u8; 2048];
    while start.elapsed() < Duration::from_secs(3) {
        if let Ok(n) = mapped.recv(&mut b) {
            assert!(n > 12 && b[1] & 0x7f == 96, "RTP, payload type 96");
            at_mapped += 1;
        }
        if let Ok(n) = named_rtcp.recv(&mut b) {
            assert!(n >= 28 && b[1] == 200, "a sender report");
            reports += 1;
        }
    }
    assert!(
        at_mapped >= 30,
        "{at_mapped} packets at the port the client sent from"
    );
    assert!(reports >= 2, "{reports} sender reports in 3 s");
    let r = c.request("TEARDOWN", &base, &[("Session", &session)]);
    assert_eq!(r.status, 200);
}

#[test]
fn viewer_gate_sees_rtsp_viewers_and_their_query() {
    let server = Server::start(None);
    server.login();
    server.wait_live("demo", Duration::from_secs(30));
    let gate = serde_json::json!({ "triggers": [ {
        "event": "viewer.requested",
        "handler": { "type": "exec", "timeout_ms": 5000, "default": "deny",
                     "command": ["sh", "-c", "grep -q '\"protocol\":\"rtsp\".*token=good\\|token=good.*\"protocol\":\"rtsp\"' && echo allow || echo deny"] }
    } ] });
    let (st, v) = server.put("/api/v1/triggers", &gate.to_string());
    assert_eq!(st, 200, "{v}");
    let base = url(&server, "demo");
    let mut c = Client::connect(server.rtsp_port);
    assert_eq!(
        c.request("DESCRIBE", &format!("{base}?token=bad"), &[])
            .status,
        403
    );
    let mut c = Client::connect(server.rtsp_port);
    assert_eq!(c.request("DESCRIBE", &base, &[]).status, 403);
    assert_h264_aac(&format!("{base}?token=good"), 1280, 720, Some(48000));
}

/// ffprobe of `url`: Ok when it plays, else its stderr.
fn probe_result(url: &str) -> Result<(), String> {
    let mut probe = Command::new(crate::harness::ffprobe());
    probe.args(["-v", "error", "-rtsp_transport", "tcp", url]);
    let out = run(probe, Duration::from_secs(30));
    if out.success() {
        Ok(())
    } else {
        Err(out.stderr)
    }
}

#[test]
fn read_credentials_digest_basic_and_http() {
    use brume_proto::auth::{digest_response, ha1};
    let server = Server::start(Some(
        r#"{"streams":{
            "cam":{"source":{"type":"testsrc","width":640,"height":360,"jpeg_fps":0},
                   "always_on":true,"read":{"user":"nvr","password":"pa55-w0rd"}},
            "open":{"source":{"type":"testsrc","width":320,"height":240,"jpeg_fps":0},
                    "always_on":true}}}"#,
    ));
    server.login();
    server.wait_live("cam", Duration::from_secs(30));
    server.wait_live("open", Duration::from_secs(30));
    // The file and the API keep no password: the file has its hash, answers hide it.
    let disk = server.config_on_disk();
    let read = &disk["streams"]["cam"]["read"];
    assert!(
        read["password"].is_null() && read["ha1"].as_str().map(str::len) == Some(32),
        "{read}"
    );
    let (_, v) = server.get("/api/v1/streams/cam");
    assert_eq!(
        v["config"]["read"],
        serde_json::json!({"user": "nvr", "password": "…"})
    );

    // ffmpeg answers the Digest challenge (it prefers Digest to Basic).
    let port = server.rtsp_port;
    let good = format!("rtsp://nvr:pa55-w0rd@127.0.0.1:{port}/cam");
    assert_h264_aac(&good, 640, 360, Some(48000));
    let frames = decode(&good, "tcp", 3);
    assert!(frames >= 60, "{frames} frames in 3 s");
    for (what, u) in [
        ("wrong", format!("rtsp://nvr:nope@127.0.0.1:{port}/cam")),
        (
            "wrong user",
            format!("rtsp://admin:pa55-w0rd@127.0.0.1:{port}/cam"),
        ),
        ("no", format!("rtsp://127.0.0.1:{port}/cam")),
    ] {
        let e = probe_result(&u).expect_err(&format!("{what} credentials played"));
        assert!(e.contains("401"), "{what} credentials: {e}");
    }
    // A stream without credentials needs none.
    probe_result(&url(&server, "open")).expect("a stream without credentials");

    // The protocol by hand: a challenge offering Digest (qop=auth) and Basic; answers
    // in both Digest forms (ffmpeg's qop=auth, live555's and GStreamer's without).
    let base = url(&server, "cam");
    let mut c = Client::connect(port);
    assert_eq!(
        c.request("OPTIONS", &base, &[]).status,
        200,
        "OPTIONS is open"
    );
    let r = c.request("DESCRIBE", &base, &[]);
    assert_eq!(r.status, 401);
    let challenges: Vec<&str> = r
        .headers
        .iter()
        .filter(|(n, _)| n.eq_ignore_ascii_case("www-authenticate"))
        .map(|(_, v)| v.as_str())
        .collect();
    assert!(
        challenges.len() == 2
            && challenges[0].starts_with("Digest realm=\"brume\"")
            && challenges[0].contains("qop=\"auth\"")
            && challenges[1] == "Basic realm=\"brume\"",
        "{challenges:?}"
    );
    let nonce = challenges[0]
        .split("nonce=\"")
        .nth(1)
        .and_then(|n| n.split('"').next())
        .expect("a nonce")
        .to_string();
    let h = ha1("nvr", "brume", "pa55-w0rd");
    let legacy = format!(
        "Digest username=\"nvr\", realm=\"brume\", nonce=\"{nonce}\", uri=\"{base}\", response=\"{}\"",
        digest_response(&h, "DESCRIBE", &base, &nonce, None)
    );
    let r = c.request("DESCRIBE", &base, &[("Authorization", &legacy)]);
    assert_eq!(r.status, 200, "RFC 2069 form");
    assert!(r.body.contains("m=video"));
    let qop = format!(
        "Digest username=\"nvr\", realm=\"brume\", nonce=\"{nonce}\", uri=\"{base}\", \
         response=\"{}\", qop=auth, nc=00000001, cnonce=\"c0ffee\"",
        digest_response(&h, "DESCRIBE", &base, &nonce, Some(("00000001", "c0ffee")))
    );
    assert_eq!(
        c.request("DESCRIBE", &base, &[("Authorization", &qop)])
            .status,
        200,
        "qop=auth"
    );
    // A wrong answer gets a fresh challenge (after a delay); the fifth ends the connection.
    let wrong = legacy.replace("response=\"", "response=\"0");
    let t = Instant::now();
    let r = c.request("DESCRIBE", &base, &[("Authorization", &wrong)]);
    assert_eq!(r.status, 401);
    assert!(
        t.elapsed() >= Duration::from_millis(900),
        "answered at once"
    );
    assert!(r.header("www-authenticate").unwrap().contains("nonce=\""));
    for _ in 0..4 {
        c.cseq += 1;
        let req = format!(
            "DESCRIBE {base} RTSP/1.0\r\nCSeq: {}\r\nAuthorization: {wrong}\r\n\r\n",
            c.cseq
        );
        c.sock.write_all(req.as_bytes()).unwrap();
    }
    let mut replies = 0;
    while let Some(m) = c.next() {
        if let Msg::Reply(r) = m {
            assert_eq!(r.status, 401);
            replies += 1;
        }
    }
    assert_eq!(
        replies, 4,
        "the connection ends after the fifth wrong answer"
    );
    // Basic works over RTSP as well.
    let basic = format!("Basic {}", base64_of("nvr:pa55-w0rd"));
    let mut c = Client::connect(port);
    assert_eq!(
        c.request("DESCRIBE", &base, &[("Authorization", &basic)])
            .status,
        200
    );

    // The HTTP outputs of the stream need the same credentials (HTTP Basic).
    let r = crate::http::request(server.http_port, "GET", "/cam.ts", &[], None).unwrap();
    assert_eq!(r.status, 401);
    assert!(r
        .header("www-authenticate")
        .is_some_and(|v| v.starts_with("Basic realm=\"brume\"")));
    let r = crate::http::request(
        server.http_port,
        "GET",
        "/hls/cam/index.m3u8",
        &[("Authorization", &format!("Basic {}", base64_of("nvr:nope")))],
        None,
    )
    .unwrap();
    assert_eq!(r.status, 401);
    let http = |path: &str| format!("http://nvr:pa55-w0rd@127.0.0.1:{}{path}", server.http_port);
    assert_h264_aac(&http("/cam.mp4"), 640, 360, Some(48000));
    assert_h264_aac(&http("/hls/cam/index.m3u8"), 640, 360, Some(48000));
    let r =
        crate::http::request(server.http_port, "GET", "/hls/open/index.m3u8", &[], None).unwrap();
    assert_eq!(r.status, 200, "a stream without credentials over HTTP");
}

fn base64_of(text: &str) -> String {
    const A: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in text.as_bytes().chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(A[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}
