//! RTSP pull inputs against a real third-party RTSP server: GStreamer's (the
//! `rtsp_camera.py` stand-in for an IP camera, H.264 with AAC or G.711, Digest
//! authentication). Brume's stream of it plays over HLS, MP4, TS and RTSP; the camera
//! killed and started again, the stream comes back by itself as a new epoch.

use crate::harness::{wait_until, Server};
use crate::media::{assert_decodes_clean, assert_h264_aac, probe, Background};
use serde_json::Value;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

/// The stand-in camera's picture: its width and height, and the `RTSP_CAMERA_VIDEO` it
/// is made with (640x360, x264 asked for 800 kbit/s; `BRUME_E2E_PULL_VIDEO=
/// 1280x720:3000:snow` to measure a picture that needs its bitrate).
fn video() -> (u64, u64, String) {
    let spec = std::env::var("BRUME_E2E_PULL_VIDEO").unwrap_or_else(|_| "640x360:800".into());
    let size = spec.split(':').next().and_then(|s| s.split_once('x'));
    match size.and_then(|(w, h)| Some((w.parse().ok()?, h.parse().ok()?))) {
        Some((w, h)) => (w, h, spec),
        None => panic!("BRUME_E2E_PULL_VIDEO={spec:?}: give WxH:KBPS[:PATTERN]"),
    }
}

/// The stand-in camera on `port`, serving `audio`, with Digest `creds` if any; returns
/// once it listens.
fn camera(dir: &Path, port: u16, audio: &str, creds: Option<&str>) -> Background {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests/e2e/rtsp_camera.py");
    let mut cmd = Command::new("/usr/bin/python3");
    cmd.env("RTSP_CAMERA_VIDEO", video().2);
    cmd.arg(script).arg(port.to_string()).arg(audio);
    if let Some(c) = creds {
        cmd.arg(c);
    }
    let log = dir.join(format!("camera-{port}.log"));
    let mut cam = Background::spawn(cmd, &log);
    wait_until(Duration::from_secs(20), "the RTSP camera to listen", || {
        if let Some(code) = cam.exited() {
            panic!(
                "the RTSP camera exited ({code:?}): {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
        }
        std::fs::read_to_string(&log)
            .unwrap_or_default()
            .contains("ready")
            .then_some(())
    });
    cam
}

fn free_port() -> u16 {
    let l = std::net::TcpListener::bind("127.0.0.1:0").expect("a free port");
    l.local_addr().expect("its address").port()
}

/// CPU time (user + system) of a process so far.
fn cpu(pid: u64) -> Duration {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<u64> = after
        .split_ascii_whitespace()
        .map(|v| v.parse().unwrap_or(0))
        .collect();
    // SAFETY: sysconf only reads a constant of the system.
    let hz = unsafe { libc::sysconf(libc::_SC_CLK_TCK) }.max(1) as u64;
    let ticks = f.get(11).copied().unwrap_or(0) + f.get(12).copied().unwrap_or(0);
    Duration::from_millis(ticks * 1000 / hz)
}

/// Prints the CPU share of the stream's input over `seconds` (a figure, not a check).
fn print_input_cpu(server: &Server, name: &str, what: &str, seconds: u64) {
    let Some(pid) = status(server, name)["input_pid"].as_u64() else {
        return;
    };
    let (c0, t0) = (cpu(pid), std::time::Instant::now());
    std::thread::sleep(Duration::from_secs(seconds));
    let share = (cpu(pid) - c0).as_secs_f64() / t0.elapsed().as_secs_f64();
    let rate = status(server, name)["bitrate_kbps"].as_f64().unwrap_or(0.0);
    eprintln!(
        "RTSP pull CPU, {what}, {rate:.0} kbit/s measured: {:.1} % of one core \
         (input process, {seconds} s, no viewers)",
        share * 100.0
    );
}

fn status(server: &Server, name: &str) -> Value {
    server.stream(name)["status"].clone()
}

#[test]
fn ip_camera_plays_everywhere_and_comes_back() {
    let (w, h, _) = video();
    let port = free_port();
    let config = serde_json::json!({ "streams": { "ipcam": {
        "source": { "type": "rtsp", "transport": "tcp",
                    "url": format!("rtsp://cam:s3cret@127.0.0.1:{port}/cam") },
        "always_on": true } } });
    let server = Server::start(Some(&config.to_string()));
    let cam = camera(&server.dir, port, "aac", Some("cam:s3cret"));
    server.login();
    server.wait_live("ipcam", Duration::from_secs(30));
    // The camera's password is not shown.
    let shown = server.stream("ipcam")["config"]["source"]["url"].clone();
    assert_eq!(
        shown,
        Value::from(format!("rtsp://cam:…@127.0.0.1:{port}/cam"))
    );

    let http = |path: &str| format!("http://127.0.0.1:{}{path}", server.http_port);
    let rtsp = format!("rtsp://127.0.0.1:{}/ipcam", server.rtsp_port);
    for u in [
        http("/hls/ipcam/index.m3u8"),
        http("/ipcam.mp4"),
        http("/ipcam.ts"),
        rtsp.clone(),
    ] {
        assert_h264_aac(&u, w, h, Some(48000));
    }
    print_input_cpu(
        &server,
        "ipcam",
        &format!("H.264 {w}x{h} 25 fps + AAC 48 kHz stereo over TCP"),
        10,
    );
    assert_decodes_clean(&http("/ipcam.ts"), Some(10));
    assert_decodes_clean(&rtsp, Some(3));
    let epoch = status(&server, "ipcam")["epoch"]
        .as_u64()
        .expect("an epoch");

    // The camera goes away: the stream says so, and nothing crash-loops.
    drop(cam);
    let st = wait_until(Duration::from_secs(30), "the camera to be missing", || {
        let st = status(&server, "ipcam");
        (st["state"] == "device-missing").then_some(st)
    });
    let why = st["last_error"].as_str().unwrap_or("").to_string();
    assert!(
        why.contains("rtsp://cam:…@127.0.0.1") && !why.contains("s3cret"),
        "{why}"
    );
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(status(&server, "ipcam")["state"], "device-missing");

    // It comes back: so does the stream, as a new epoch of the same buffer.
    let _cam = camera(&server.dir, port, "aac", Some("cam:s3cret"));
    let v = server.wait_live("ipcam", Duration::from_secs(30));
    assert!(
        v["status"]["epoch"].as_u64() > Some(epoch),
        "epoch {epoch}, then {}",
        v["status"]["epoch"]
    );
    assert_h264_aac(&http("/ipcam.ts"), w, h, Some(48000));
    assert_decodes_clean(&http("/hls/ipcam/index.m3u8"), Some(4));
    let logs = server.all_logs();
    assert!(!logs.contains("s3cret"), "the camera's password was logged");
}

#[test]
fn g711_over_udp_becomes_aac_and_a_wrong_password_is_reported() {
    let (w, h, _) = video();
    let port = free_port();
    let config = serde_json::json!({ "streams": {
        "door": { "source": { "type": "rtsp", "transport": "udp",
                              "url": format!("rtsp://cam:s3cret@127.0.0.1:{port}/cam") },
                  "always_on": true },
        "locked": { "source": { "type": "rtsp",
                                "url": format!("rtsp://cam:wrong@127.0.0.1:{port}/cam") },
                    "always_on": true } } });
    let server = Server::start(Some(&config.to_string()));
    let _cam = camera(&server.dir, port, "pcma", Some("cam:s3cret"));
    server.login();
    let v = server.wait_live("door", Duration::from_secs(30));
    let tracks = v["status"]["tracks"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    assert!(
        tracks
            .iter()
            .any(|t| t["codec"] == "aac" && t["sample_rate"] == 8000),
        "{tracks:?}"
    );
    let ts = format!("http://127.0.0.1:{}/door.ts", server.http_port);
    let streams = probe(&ts);
    assert!(
        streams.iter().any(|s| s["codec_name"] == "h264")
            && streams
                .iter()
                .any(|s| s["codec_name"] == "aac" && s["sample_rate"] == "8000"),
        "{streams:?}"
    );
    assert_decodes_clean(&ts, Some(5));
    print_input_cpu(
        &server,
        "door",
        &format!("H.264 {w}x{h} 25 fps + G.711 8 kHz encoded to AAC, over UDP"),
        10,
    );
    // A wrong password: the stream says why, and keeps trying without a crash loop.
    let st = wait_until(Duration::from_secs(30), "the refusal to show", || {
        let st = status(&server, "locked");
        (st["state"] == "device-missing").then_some(st)
    });
    let why = st["last_error"].as_str().unwrap_or("");
    assert!(why.contains("401") && !why.contains("wrong@"), "{why}");
    std::thread::sleep(Duration::from_secs(6));
    assert_eq!(status(&server, "locked")["state"], "device-missing");
}
