//! Live update and listener re-adoption: the running binary is replaced with viewers
//! (TS, MP4, HLS), a publisher and a recording running, and none of them notices; a
//! new binary that cannot start is rolled back; a killed listener's workers are
//! adopted by the next listener, which still resumes them byte-exact.

use crate::harness::{login_token, signal, wait_until, Proc, Server, SMALL_DEMO};
use crate::http::{self, Viewer};
use crate::media::{assert_decodes_clean, duration_of, rtmp_publisher, run, Background};
use serde_json::Value;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const DEMO_AND_CAM: &str = r#"{"streams":{
  "demo":{"source":{"type":"testsrc","width":320,"height":180,"fps":15,"bitrate_kbps":300},"always_on":true},
  "cam":{"source":{"type":"rtmp","key":"s3cret"}}},
  "limits":{"max_connections":1024,"max_connections_per_address":1024}}"#;

/// The worker serving `v` now (from the API's connection list).
fn worker_of(server: &Server, v: &Viewer) -> i32 {
    let local = v.local.to_string();
    wait_until(Duration::from_secs(10), "the viewer's connection", || {
        server
            .connection_of(&local)
            .and_then(|c| c["pid"].as_i64())
            .filter(|p| *p > 0)
    }) as i32
}

/// Kills the worker of `v` and waits until a new worker resumed its connection.
fn kill_and_see_resumed(server: &Server, v: &Viewer, what: &str) {
    let pid = worker_of(server, v);
    let victim = Proc::read(pid).expect("the worker runs");
    let before = v.bytes();
    signal(pid, libc::SIGKILL);
    let local = v.local.to_string();
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let c = server.connection_of(&local);
        if c.as_ref().is_some_and(|c| {
            c["pid"].as_i64().is_some_and(|p| p > 0 && p as i32 != pid)
                && c["worker_restarts"].as_u64().is_some_and(|r| r >= 1)
        }) {
            break;
        }
        if Instant::now() >= deadline {
            let log = server.all_logs();
            let tail: Vec<&str> = log.lines().filter(|l| l.contains("listen[")).collect();
            panic!(
                "{what}: worker {pid} killed 15 s ago, not resumed; its record: {c:?}\nlistener log:\n{}",
                tail[tail.len().saturating_sub(30)..].join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(!victim.alive(), "the killed worker still runs");
    v.wait_more_than(
        before + 64 * 1024,
        Duration::from_secs(20),
        "the killed viewer's bytes after the resume",
    );
    assert!(
        !v.closed(),
        "{what}: the connection was closed: {}",
        v.why()
    );
}

/// The listener serving the ports now: a child of serve named `listen` that is not a
/// worker left by an earlier listener (those hold no listening socket: they have a
/// client connection as their only TCP socket, and they appear in the connection
/// table).
fn current_listener(server: &Server) -> Option<i32> {
    let (st, v) = server.get("/api/v1/connections");
    if st != 200 {
        return None;
    }
    let workers: Vec<i64> = v["connections"]
        .as_array()
        .map(|a| a.iter().filter_map(|c| c["pid"].as_i64()).collect())
        .unwrap_or_default();
    let l: Vec<i32> = server
        .pids_of("listen")
        .into_iter()
        .filter(|p| !workers.contains(&(*p as i64)))
        .collect();
    (l.len() == 1).then(|| l[0])
}

#[test]
fn a_killed_listeners_workers_are_adopted_and_still_resumed() {
    let server = Server::start(Some(SMALL_DEMO));
    server.login();
    server.wait_live("demo", Duration::from_secs(20));
    let port = server.http_port;
    let viewers: Vec<Viewer> = (0..6)
        .map(|i| Viewer::open(port, if i % 2 == 0 { "/demo.ts" } else { "/demo.mp4" }))
        .collect();
    for v in &viewers {
        v.wait_more_than(0, Duration::from_secs(20), "first bytes");
    }
    let old = wait_until(Duration::from_secs(10), "one listener", || {
        current_listener(&server)
    });
    let old = Proc::read(old).expect("the listener runs");

    signal(old.pid, libc::SIGKILL);
    let new = wait_until(Duration::from_secs(10), "a new listener", || {
        current_listener(&server).filter(|p| *p != old.pid)
    });
    // The workers of the killed listener (children of serve now) are adopted: killed,
    // each is resumed on its connection by the new listener, byte-exact.
    let workers_before: Vec<i32> = viewers.iter().map(|v| worker_of(&server, v)).collect();
    for pid in &workers_before {
        let p = Proc::read(*pid).expect("the worker runs");
        assert_ne!(
            p.ppid, old.pid,
            "worker {pid} still names the killed listener"
        );
    }
    wait_until(
        Duration::from_secs(10),
        "the new listener to adopt the workers",
        || {
            let log = server.all_logs();
            (log.matches(&format!("listen[{new}]:  INFO adopted a connection worker"))
                .count()
                >= viewers.len())
            .then_some(())
        },
    );
    kill_and_see_resumed(&server, &viewers[0], "a TS viewer adopted, then killed");
    kill_and_see_resumed(&server, &viewers[1], "an MP4 viewer adopted, then killed");

    // A second listener kill: the resumed workers (children of the killed one) and the
    // adopted ones move on to the third listener.
    signal(new, libc::SIGKILL);
    let third = wait_until(Duration::from_secs(10), "a third listener", || {
        current_listener(&server).filter(|p| *p != new)
    });
    wait_until(
        Duration::from_secs(10),
        "the third listener to adopt the workers",
        || {
            let log = server.all_logs();
            (log.matches(&format!(
                "listen[{third}]:  INFO adopted a connection worker"
            ))
            .count()
                >= viewers.len())
            .then_some(())
        },
    );
    kill_and_see_resumed(&server, &viewers[0], "a TS viewer resumed twice");

    let mut viewers = viewers;
    for v in &mut viewers {
        assert!(!v.closed(), "{}: closed: {}", v.path, v.why());
        v.stop();
    }
    for (i, v) in viewers.iter().enumerate().take(2) {
        let saved = server
            .dir
            .join(format!("adopted{i}{}", if i == 0 { ".ts" } else { ".mp4" }));
        std::fs::write(&saved, v.body()).expect("save the viewer's bytes");
        assert_decodes_clean(saved.to_str().expect("utf-8 path"), None);
    }
}

/// A copy of the brume binary with `stamp` written into its build-stamp field: the
/// same program reporting another version.
fn stamped_binary(dir: &Path, stamp: &str) -> PathBuf {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_brume"));
    let mut bytes = std::fs::read(&exe).expect("read the brume binary");
    let marker = b"BRUME-BUILD-STAMP:";
    let at = bytes
        .windows(marker.len())
        .position(|w| w == marker)
        .expect("the binary has a build-stamp field");
    assert!(
        bytes[at + marker.len()..]
            .windows(marker.len())
            .all(|w| w != marker),
        "one build-stamp field"
    );
    bytes[at + marker.len()..at + marker.len() + stamp.len()].copy_from_slice(stamp.as_bytes());
    let out = dir.join(format!("brume-{stamp}"));
    std::fs::write(&out, bytes).expect("write the stamped copy");
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&out, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    out
}

/// Uploads `binary` as an update; returns the API's status and answer.
fn upload(server: &Server, token: &str, binary: &Path) -> (u16, Value) {
    let bytes = std::fs::read(binary).expect("read the update");
    let auth = format!("Bearer {token}");
    let r = http::request(
        server.http_port,
        "POST",
        "/api/v1/system/update",
        &[
            ("Authorization", &auth),
            ("Content-Type", "application/octet-stream"),
        ],
        Some(&bytes),
    )
    .expect("POST /api/v1/system/update");
    let v = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    (r.status, v)
}

/// `/api/v1/system` once the update is over (`updated`, `rolled-back` or `failed`),
/// read through the API the whole time (it may answer 503 for a moment).
fn wait_update_done(server: &Server, token: &str) -> Value {
    let auth = format!("Bearer {token}");
    wait_until(Duration::from_secs(60), "the update's outcome", || {
        let r = http::request(
            server.http_port,
            "GET",
            "/api/v1/system",
            &[("Authorization", &auth)],
            None,
        )
        .ok()?;
        let v: Value = serde_json::from_slice(&r.body).ok()?;
        let state = v["update"]["state"].as_str()?;
        matches!(state, "updated" | "rolled-back" | "failed").then_some(v)
    })
}

/// An HLS client like hls.js: one keep-alive connection, the playlist every second,
/// each new segment fetched once. Counts requests that got no 200 answer (a request
/// on a connection the server had closed while idle is retried once on a new one, as
/// browsers do).
struct HlsClient {
    failures: Arc<AtomicU64>,
    segments: Arc<AtomicU64>,
    errors: Arc<Mutex<Vec<String>>>,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl HlsClient {
    fn start(port: u16, stream: &str) -> HlsClient {
        let failures = Arc::new(AtomicU64::new(0));
        let segments = Arc::new(AtomicU64::new(0));
        let errors = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let base = format!("/hls/{stream}/");
        let thread = {
            let (failures, segments, errors, stop) = (
                failures.clone(),
                segments.clone(),
                errors.clone(),
                stop.clone(),
            );
            std::thread::spawn(move || {
                let mut conn: Option<BufReader<TcpStream>> = None;
                let mut seen: Vec<String> = Vec::new();
                let mut last_seq: i64 = -1;
                while !stop.load(Ordering::Relaxed) {
                    let playlist = match get(&mut conn, port, &format!("{base}index.m3u8")) {
                        Ok(b) => String::from_utf8_lossy(&b).into_owned(),
                        Err(e) => {
                            failures.fetch_add(1, Ordering::SeqCst);
                            errors
                                .lock()
                                .expect("errors")
                                .push(format!("playlist: {e}"));
                            std::thread::sleep(Duration::from_secs(1));
                            continue;
                        }
                    };
                    if let Some(seq) = playlist
                        .lines()
                        .find_map(|l| l.strip_prefix("#EXT-X-MEDIA-SEQUENCE:"))
                        .and_then(|n| n.trim().parse::<i64>().ok())
                    {
                        if seq < last_seq {
                            failures.fetch_add(1, Ordering::SeqCst);
                            errors
                                .lock()
                                .expect("errors")
                                .push(format!("media sequence went back: {last_seq} -> {seq}"));
                        }
                        last_seq = seq;
                    }
                    let uris: Vec<&str> = playlist
                        .lines()
                        .filter(|l| !l.is_empty() && !l.starts_with('#'))
                        .collect();
                    if let Some(uri) = uris.last() {
                        if !seen.iter().any(|s| s == uri) {
                            let path = if uri.starts_with('/') {
                                uri.to_string()
                            } else {
                                format!("{base}{uri}")
                            };
                            match get(&mut conn, port, &path) {
                                Ok(b) if !b.is_empty() => {
                                    segments.fetch_add(1, Ordering::SeqCst);
                                    seen.push(uri.to_string());
                                }
                                Ok(_) => {
                                    failures.fetch_add(1, Ordering::SeqCst);
                                    errors
                                        .lock()
                                        .expect("errors")
                                        .push(format!("{path}: empty"));
                                }
                                Err(e) => {
                                    failures.fetch_add(1, Ordering::SeqCst);
                                    errors.lock().expect("errors").push(format!("{path}: {e}"));
                                }
                            }
                        }
                    }
                    std::thread::sleep(Duration::from_secs(1));
                }
            })
        };
        HlsClient {
            failures,
            segments,
            errors,
            stop,
            thread: Some(thread),
        }
    }

    fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// GET on the keep-alive connection (opened if needed); the body of a 200 answer.
fn get(conn: &mut Option<BufReader<TcpStream>>, port: u16, path: &str) -> Result<Vec<u8>, String> {
    for attempt in 0..2 {
        let reused = conn.is_some();
        if conn.is_none() {
            let s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
            s.set_read_timeout(Some(Duration::from_secs(10)))
                .map_err(|e| e.to_string())?;
            *conn = Some(BufReader::new(s));
        }
        let c = conn.as_mut().expect("connected");
        let sent = write!(
            c.get_mut(),
            "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n"
        );
        match sent
            .map_err(|e| e.to_string())
            .and_then(|()| read_answer(c))
        {
            Ok((200, body)) => return Ok(body),
            Ok((status, _)) => {
                *conn = None;
                return Err(format!("status {status}"));
            }
            Err(e) => {
                *conn = None;
                if !(reused && attempt == 0) {
                    return Err(e);
                }
            }
        }
    }
    Err("no answer".into())
}

fn read_answer(c: &mut BufReader<TcpStream>) -> Result<(u16, Vec<u8>), String> {
    let mut line = String::new();
    if c.read_line(&mut line).map_err(|e| e.to_string())? == 0 {
        return Err("closed".into());
    }
    let status: u16 = line
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("not a status line: {line:?}"))?;
    let mut length = 0usize;
    loop {
        let mut h = String::new();
        c.read_line(&mut h).map_err(|e| e.to_string())?;
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((n, v)) = h.split_once(':') {
            if n.eq_ignore_ascii_case("content-length") {
                length = v.trim().parse().map_err(|_| format!("bad length {v:?}"))?;
            }
        }
    }
    let mut body = vec![0u8; length];
    c.read_exact(&mut body).map_err(|e| e.to_string())?;
    Ok((status, body))
}

/// The files of `stream`'s recording, oldest first (names sort by time).
fn recording_files(server: &Server, stream: &str) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut dirs = vec![server.dir.join("recordings").join(stream)];
    while let Some(d) = dirs.pop() {
        for e in std::fs::read_dir(&d).into_iter().flatten().flatten() {
            let p = e.path();
            if p.is_dir() {
                dirs.push(p);
            } else if p.extension().is_some_and(|x| x == "mp4") {
                files.push(p);
            }
        }
    }
    files.sort();
    files
}

#[test]
fn live_update_drops_no_viewer_publisher_or_recording() {
    let server = Server::start(Some(DEMO_AND_CAM));
    server.login();
    let token = login_token(server.http_port);
    server.wait_live("demo", Duration::from_secs(20));
    // A publisher with ffmpeg's long default-like GOP (4 s at 25 fps).
    let url = format!("rtmp://127.0.0.1:{}/live/cam?key=s3cret", server.rtmp_port);
    let log = server.dir.join("publish.log");
    let mut ff = Background::spawn(rtmp_publisher(&url, "320x180", 300, 100), &log);
    let publish_log = || std::fs::read_to_string(&log).unwrap_or_default();
    wait_until(Duration::from_secs(30), "cam to be live", || {
        if let Some(code) = ff.exited() {
            panic!("the publisher ended early ({code:?}):\n{}", publish_log());
        }
        (server.stream("cam")["status"]["state"] == "live").then_some(())
    });
    let frames = |s: &Server| s.stream("cam")["status"]["frames"].as_u64().unwrap_or(0);

    // A recording of the publisher's stream.
    let (st, v) = server.post("/api/v1/streams/cam/recording", "");
    assert_eq!(st, 200, "start recording: {v}");
    wait_until(
        Duration::from_secs(20),
        "the recording's first file",
        || (!recording_files(&server, "cam").is_empty()).then_some(()),
    );
    let recording_since = Instant::now();

    // 100 viewers (BRUME_E2E_UPDATE_VIEWERS for another count, e.g. 300 to measure):
    // TS and MP4 of both streams, and one HLS client for every four of those.
    let port = server.http_port;
    let clients: usize = std::env::var("BRUME_E2E_UPDATE_VIEWERS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100);
    let progressive = clients - clients / 5;
    let paths = ["/demo.ts", "/demo.mp4", "/cam.ts", "/cam.mp4"];
    let viewers: Vec<Viewer> = (0..progressive)
        .map(|i| Viewer::open(port, paths[i % paths.len()]))
        .collect();
    for v in &viewers {
        v.wait_more_than(0, Duration::from_secs(60), "first bytes");
        assert!(
            v.status_line().starts_with("HTTP/1.1 200"),
            "{}: {}",
            v.path,
            v.status_line()
        );
    }
    let mut hls: Vec<HlsClient> = (0..clients / 5)
        .map(|i| HlsClient::start(port, if i % 2 == 0 { "demo" } else { "cam" }))
        .collect();
    wait_until(
        Duration::from_secs(30),
        "every HLS client's first segment",
        || {
            hls.iter()
                .all(|h| h.segments.load(Ordering::SeqCst) > 0)
                .then_some(())
        },
    );
    std::thread::sleep(Duration::from_secs(2));

    // The update: the same program with another version string.
    let (_, before) = server.get("/api/v1/system");
    let old_version = before["version"].as_str().expect("a version").to_string();
    let binary = stamped_binary(&server.dir, "e2e2");
    let expected = format!("{old_version}+e2e2");
    let bytes_before: Vec<u64> = viewers.iter().map(Viewer::bytes).collect();
    let frames_before = frames(&server);
    let asked = Instant::now();
    let (st, v) = upload(&server, &token, &binary);
    assert_eq!(st, 202, "the update was not accepted: {v}");
    let done = wait_update_done(&server, &token);
    let answered = asked.elapsed();
    assert_eq!(done["update"]["state"], "updated", "{done}");
    assert_eq!(done["version"], expected.as_str(), "{done}");
    assert_eq!(
        done["update"]["previous_version"],
        old_version.as_str(),
        "{done}"
    );
    // The root angel itself runs the new binary now.
    let serve_exe =
        std::fs::read_link(format!("/proc/{}/exe", server.serve_pid())).expect("serve's binary");
    assert!(
        serve_exe.to_string_lossy().contains("updates/"),
        "serve runs {}",
        serve_exe.display()
    );
    std::thread::sleep(Duration::from_secs(3));
    let window_end = Instant::now();

    // Every viewer is still connected and receiving.
    for (i, v) in viewers.iter().enumerate() {
        v.wait_more_than(
            bytes_before[i] + 1,
            Duration::from_secs(20),
            "a viewer after the update",
        );
        assert!(!v.closed(), "{} was disconnected: {}", v.path, v.why());
    }
    let gaps: Vec<Duration> = viewers
        .iter()
        .map(|v| v.longest_gap(asked, window_end))
        .collect();
    let longest = gaps.iter().max().copied().unwrap_or_default();
    // The publisher was never disconnected: still running, the stream keeps growing.
    wait_until(Duration::from_secs(20), "cam's frames to grow", || {
        if let Some(code) = ff.exited() {
            panic!(
                "the publisher ended after the update ({code:?}):\n{}",
                publish_log()
            );
        }
        (frames(&server) > frames_before + 50).then_some(())
    });
    assert_eq!(server.stream("cam")["status"]["state"], "live");
    for h in &mut hls {
        h.stop();
    }
    for h in &hls {
        assert_eq!(
            h.failures.load(Ordering::SeqCst),
            0,
            "an HLS client's requests failed: {:?}",
            h.errors.lock().expect("errors")
        );
    }

    // The recording went on: its files cover the whole time, with no gap longer than
    // one fragment (about 1 s) at the hand-over.
    let (st, v) = server.delete("/api/v1/streams/cam/recording");
    assert_eq!(st, 200, "stop recording: {v}");
    let recorded_for = recording_since.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs(1));
    let files = recording_files(&server, "cam");
    assert!(
        files.len() >= 2,
        "the recording rolled to a new file: {files:?}"
    );
    let mut total = 0.0;
    for f in &files {
        let p = f.to_str().expect("utf-8 path");
        assert_decodes_clean(p, None);
        total += duration_of(p);
    }

    let mut viewers = viewers;
    for v in &mut viewers {
        v.stop();
    }
    for (i, v) in viewers.iter().enumerate().take(4) {
        let saved = server
            .dir
            .join(format!("viewer{i}{}", &v.path[v.path.len() - 3..]));
        std::fs::write(&saved, v.body()).expect("save the viewer's bytes");
        assert_decodes_clean(saved.to_str().expect("utf-8 path"), None);
    }
    eprintln!(
        "live update with {} TS/MP4 viewers, {} HLS clients, a publisher and a recording: \
         new controller answering {} ms after the request (angel's hand-over {} ms); \
         longest byte gap of any viewer {} ms (median {} ms); recording {:.2} s in {} files over {:.2} s",
        progressive,
        clients / 5,
        answered.as_millis(),
        done["update"]["handover_ms"],
        longest.as_millis(),
        {
            let mut g = gaps.clone();
            g.sort();
            g[g.len() / 2].as_millis()
        },
        total,
        files.len(),
        recorded_for
    );
    assert!(
        total >= recorded_for - 1.5,
        "the recording's files hold {total:.2} s of the {recorded_for:.2} s it ran: a gap at the hand-over"
    );
}

#[test]
fn an_update_that_cannot_start_is_rolled_back() {
    let server = Server::start(Some(SMALL_DEMO));
    server.login();
    let token = login_token(server.http_port);
    server.wait_live("demo", Duration::from_secs(20));
    // A program that passes the check (`--version` prints a brume version) and exits
    // at once in every role.
    let src = server.dir.join("broken.c");
    std::fs::write(
        &src,
        "#include <stdio.h>\n#include <string.h>\n\
         int main(int c, char **v) {\n\
           if (c > 1 && !strcmp(v[1], \"--version\")) { puts(\"brume 99.0.0\"); return 0; }\n\
           fputs(\"this build cannot start\\n\", stderr); return 1;\n}\n",
    )
    .expect("write the program");
    let binary = server.dir.join("brume-broken");
    let mut cc = Command::new("cc");
    cc.arg("-o").arg(&binary).arg(&src);
    let out = run(cc, Duration::from_secs(60));
    assert!(out.success(), "cc: {}", out.stderr);

    let port = server.http_port;
    let viewers: Vec<Viewer> = (0..10)
        .map(|i| Viewer::open(port, if i % 2 == 0 { "/demo.ts" } else { "/demo.mp4" }))
        .collect();
    for v in &viewers {
        v.wait_more_than(0, Duration::from_secs(20), "first bytes");
    }
    let (_, before) = server.get("/api/v1/system");
    let bytes_before: Vec<u64> = viewers.iter().map(Viewer::bytes).collect();

    let (st, v) = upload(&server, &token, &binary);
    assert_eq!(st, 202, "the update was not accepted: {v}");
    let done = wait_update_done(&server, &token);
    assert_eq!(done["update"]["state"], "rolled-back", "{done}");
    let reason = done["update"]["reason"].as_str().unwrap_or("");
    assert!(reason.contains("exited"), "the reason: {done}");
    assert_eq!(done["version"], before["version"], "{done}");
    assert_eq!(done["update"]["target_version"], "99.0.0", "{done}");
    // The API and the viewers: all there.
    server.login();
    let (st, _) = server.get("/api/v1/streams");
    assert_eq!(st, 200);
    for (i, v) in viewers.iter().enumerate() {
        v.wait_more_than(
            bytes_before[i] + 1,
            Duration::from_secs(20),
            "a viewer after the rollback",
        );
        assert!(!v.closed(), "{} was disconnected: {}", v.path, v.why());
    }
    // A new viewer is served by the old binary's listener.
    let new = Viewer::open(port, "/demo.ts");
    new.wait_more_than(0, Duration::from_secs(20), "a new viewer's first bytes");
}

/// A RAUC bundle (a whole-image update, squashfs magic first) is not taken for a
/// binary: it goes to `rauc install`, which refuses this one (it is not a bundle RAUC
/// can open, or the machine has no RAUC service); without RAUC it is refused at once.
/// Either way the running version is untouched and the outcome is reported.
#[test]
fn a_rauc_bundle_goes_to_rauc_and_a_bad_one_changes_nothing() {
    let server = Server::start(Some(SMALL_DEMO));
    server.login();
    let token = login_token(server.http_port);
    let (_, before) = server.get("/api/v1/system");
    let bundle = server.dir.join("image.raucb");
    let mut bytes = b"hsqs".to_vec();
    bytes.extend(std::iter::repeat_n(0x5au8, 64 * 1024));
    std::fs::write(&bundle, &bytes).expect("write the bundle");
    let (st, v) = upload(&server, &token, &bundle);
    match st {
        422 => assert!(
            v["error"].as_str().unwrap_or("").contains("RAUC"),
            "a bundle without RAUC: {v}"
        ),
        202 => {
            assert_eq!(v["state"], "installing-image", "{v}");
            let done = wait_update_done(&server, &token);
            assert_eq!(done["update"]["state"], "failed", "{done}");
            let reason = done["update"]["reason"].as_str().unwrap_or("");
            assert!(reason.contains("rauc"), "the reason names rauc: {done}");
        }
        _ => panic!("a RAUC bundle: {st} {v}"),
    }
    let (_, after) = server.get("/api/v1/system");
    assert_eq!(after["version"], before["version"]);
    assert!(
        !server.dir.join("run/update.request").exists(),
        "a bundle must not ask the root angel to switch binaries"
    );
    let staged: Vec<_> = std::fs::read_dir(server.dir.join("updates"))
        .map(|d| d.flatten().map(|e| e.file_name()).collect())
        .unwrap_or_default();
    assert!(staged.is_empty(), "the bundle was removed: {staged:?}");
}

/// The binary an update installed is the one the next start runs: the packaged binary
/// (here the test's) hands over to `updates/current` at start, as the appliance's unit
/// starts `/usr/bin/brume` from a read-only root after a power cut.
#[test]
fn the_next_start_runs_the_updated_binary() {
    let server = Server::start(Some(SMALL_DEMO));
    server.login();
    let token = login_token(server.http_port);
    let (_, before) = server.get("/api/v1/system");
    let old_version = before["version"].as_str().expect("a version").to_string();
    let binary = stamped_binary(&server.dir, "e2e3");
    let (st, v) = upload(&server, &token, &binary);
    assert_eq!(st, 202, "the update was not accepted: {v}");
    let done = wait_update_done(&server, &token);
    assert_eq!(done["update"]["state"], "updated", "{done}");

    // A clean stop, then a start of the original binary on the same directory.
    let mut server = server;
    server.terminate(Duration::from_secs(20));
    let server = server.kill_tree().restart();
    server.login();
    let (st, v) = server.get("/api/v1/system");
    assert_eq!(st, 200, "{v}");
    assert_eq!(
        v["version"],
        format!("{old_version}+e2e3").as_str(),
        "the restarted appliance runs the updated binary: {v}"
    );
    let exe = std::fs::read_link(format!("/proc/{}/exe", server.serve_pid())).expect("exe");
    assert!(
        exe.to_string_lossy().contains("updates/"),
        "serve runs {}",
        exe.display()
    );
}
