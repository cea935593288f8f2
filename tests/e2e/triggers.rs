//! Triggers, GPIO and stream processes: a button on the `sim` GPIO backend starts and
//! stops a recording while an LED follows it; a webhook receiver gets the events in
//! order; a blocking viewer trigger keeps viewers out, and a hanging one is timed out
//! with its default applied; a stream process (ffmpeg) adds a scaled track and is
//! restarted when killed.

use crate::harness::{ffmpeg, signal, wait_until, Server};
use crate::media::{assert_decodes_clean, duration_of, probe};
use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// A loopback HTTP server that records every POSTed JSON body and answers with what
/// `answer` returns for it (after `delay`).
struct Receiver {
    port: u16,
    bodies: Arc<Mutex<Vec<Value>>>,
}

impl Receiver {
    fn start(answer: fn(&Value) -> (u16, &'static str)) -> Receiver {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind the receiver");
        let port = l.local_addr().expect("addr").port();
        let bodies = Arc::new(Mutex::new(Vec::new()));
        let b = bodies.clone();
        std::thread::spawn(move || {
            for s in l.incoming() {
                let Ok(mut s) = s else { continue };
                let b = b.clone();
                std::thread::spawn(move || {
                    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
                    let mut r = BufReader::new(s.try_clone().expect("clone"));
                    let mut len = 0usize;
                    let mut line = String::new();
                    let mut request_line = String::new();
                    loop {
                        line.clear();
                        if r.read_line(&mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        if request_line.is_empty() {
                            request_line = line.clone();
                        }
                        if line == "\r\n" {
                            break;
                        }
                        if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                            len = v.trim().parse().unwrap_or(0);
                        }
                    }
                    let mut body = vec![0u8; len];
                    if r.read_exact(&mut body).is_err() {
                        return;
                    }
                    assert!(request_line.starts_with("POST "), "{request_line}");
                    let v: Value = serde_json::from_slice(&body).unwrap_or_else(|e| {
                        panic!(
                            "webhook body is not JSON ({e}): {:?}",
                            String::from_utf8_lossy(&body)
                        )
                    });
                    let (status, text) = answer(&v);
                    b.lock().expect("bodies").push(v);
                    let reply = format!(
                        "HTTP/1.1 {status} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{text}",
                        text.len()
                    );
                    let _ = s.write_all(reply.as_bytes());
                });
            }
        });
        Receiver { port, bodies }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}/hook", self.port)
    }

    fn events(&self) -> Vec<Value> {
        self.bodies.lock().expect("bodies").clone()
    }
}

fn gpio_state(server: &Server, pin: &str) -> Option<bool> {
    let (st, v) = server.get("/api/v1/gpio");
    assert_eq!(st, 200, "{v}");
    v["pins"]
        .as_array()?
        .iter()
        .find(|p| p["name"] == pin)?
        .get("active")?
        .as_bool()
}

fn recording(server: &Server) -> Value {
    server.stream("demo")["status"]["recording"].clone()
}

const DEMO: &str = r#"{"source":{"type":"testsrc","width":320,"height":180,"fps":15,"bitrate_kbps":300},"always_on":true}"#;

#[test]
fn gpio_button_toggles_a_recording_and_the_led_follows_it() {
    let config = json!({
        "streams": { "demo": serde_json::from_str::<Value>(DEMO).unwrap() },
        "gpio": {
            "backend": "sim",
            "pins": {
                "button": { "line": 17, "direction": "input", "pull": "up", "active_low": true, "debounce_ms": 20 },
                "led": { "line": 27, "direction": "output" }
            },
            "bindings": [ { "pin": "led", "when": "recording", "stream": "demo" } ]
        },
        "triggers": [ {
            "event": "gpio.edge", "match": { "pin": "button", "active": true },
            "handler": { "type": "action", "action": "toggle_recording", "stream": "demo" }
        } ]
    });
    let server = Server::start(Some(&config.to_string()));
    server.login();
    server.wait_live("demo", Duration::from_secs(20));
    assert_eq!(gpio_state(&server, "led"), Some(false));
    assert_eq!(gpio_state(&server, "button"), Some(false));

    // Press: the recording starts and the LED lights.
    let (st, v) = server.post("/api/v1/gpio/pins/button/press", "");
    assert_eq!(st, 200, "press: {v}");
    let first = Instant::now();
    wait_until(Duration::from_secs(10), "the recording to start", || {
        (recording(&server)["active"] == true).then_some(())
    });
    wait_until(Duration::from_secs(5), "the LED to light", || {
        (gpio_state(&server, "led") == Some(true)).then_some(())
    });
    let file = wait_until(Duration::from_secs(20), "the recording's file", || {
        recording(&server)["file"].as_str().map(str::to_string)
    });
    std::thread::sleep(Duration::from_secs(5).saturating_sub(first.elapsed()));

    // Press again: it stops and the LED goes dark.
    let (st, v) = server.post("/api/v1/gpio/pins/button/press", "");
    assert_eq!(st, 200, "press: {v}");
    let between = first.elapsed().as_secs_f64();
    wait_until(Duration::from_secs(15), "the recording to stop", || {
        (recording(&server)["active"] == false).then_some(())
    });
    wait_until(Duration::from_secs(5), "the LED to go dark", || {
        (gpio_state(&server, "led") == Some(false)).then_some(())
    });

    let path = server.dir.join("recordings").join(&file);
    let path = path.to_str().expect("utf-8");
    assert_decodes_clean(path, None);
    let d = duration_of(path);
    assert!(
        (d - between).abs() <= 1.0,
        "the file lasts {d:.2} s; the presses were {between:.2} s apart"
    );

    // Both edges were events; the handler ran twice, successfully.
    let (_, ev) = server.get("/api/v1/events?limit=500");
    let edges: Vec<&Value> = ev["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["event"] == "gpio.edge" && e["pin"] == "button")
        .collect();
    assert_eq!(edges.len(), 4, "press+release twice: {edges:?}");
    let (_, runs) = server.get("/api/v1/triggers/runs");
    let ok = runs["runs"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["handler"] == "action" && r["result"] == "ok")
        .count();
    assert_eq!(ok, 2, "{runs}");

    // Pins are checked: an unknown pin is 404, an unknown field is refused; outputs
    // can be driven by hand.
    assert_eq!(server.post("/api/v1/gpio/pins/nope/press", "").0, 404);
    assert_eq!(server.put("/api/v1/gpio/pins/led", r#"{"level":1}"#).0, 422);
    let (st, _) = server.put("/api/v1/gpio/pins/led", r#"{"active":true}"#);
    assert_eq!(st, 200);
    assert_eq!(gpio_state(&server, "led"), Some(true));
}

#[test]
fn webhook_receives_the_events_in_order() {
    let rx = Receiver::start(|_| (200, "ok"));
    let config = json!({
        "streams": { "demo": serde_json::from_str::<Value>(DEMO).unwrap() },
        "triggers": [ {
            "event": ["stream.started", "stream.ready", "recording.started", "recording.ended",
                      "stream.added", "stream.removed", "stream.ended"],
            "handler": { "type": "webhook", "url": rx.url(), "timeout_ms": 2000 }
        } ]
    });
    let server = Server::start(Some(&config.to_string()));
    server.login();
    server.wait_live("demo", Duration::from_secs(20));
    let (st, v) = server.post("/api/v1/streams/demo/recording", "");
    assert_eq!(st, 200, "{v}");
    wait_until(Duration::from_secs(20), "the recording's file", || {
        recording(&server)["file"].as_str().map(str::to_string)
    });
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(server.delete("/api/v1/streams/demo/recording").0, 200);
    let (st, v) = server.post(
        "/api/v1/streams",
        r#"{"name":"extra","source":{"type":"testsrc","width":160,"height":90,"fps":10,"bitrate_kbps":100,"jpeg_fps":0},"always_on":true}"#,
    );
    assert_eq!(st, 201, "{v}");
    server.wait_live("extra", Duration::from_secs(20));
    assert_eq!(server.delete("/api/v1/streams/extra").0, 204);

    let expected = [
        ("stream.started", "demo"),
        ("stream.ready", "demo"),
        ("recording.started", "demo"),
        ("recording.ended", "demo"),
        ("stream.added", "extra"),
        ("stream.started", "extra"),
        ("stream.ready", "extra"),
        ("stream.removed", "extra"),
        ("stream.ended", "extra"),
    ];
    let got = wait_until(
        Duration::from_secs(15),
        "every event at the receiver",
        || {
            let got = rx.events();
            (got.len() >= expected.len()).then_some(got)
        },
    );
    let names: Vec<(String, String)> = got
        .iter()
        .map(|e| {
            (
                e["event"].as_str().unwrap_or("").to_string(),
                e["stream"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect();
    // stream.removed and the input's stream.ended race (the API answers while the
    // input stops); everything else is in firing order.
    let mut want: Vec<(String, String)> = expected
        .iter()
        .map(|(a, b)| (a.to_string(), b.to_string()))
        .collect();
    let mut have = names.clone();
    want[7..].sort();
    have[7..].sort();
    assert_eq!(have, want, "events at the receiver: {names:?}");
    let ids: Vec<u64> = got
        .iter()
        .map(|e| e["id"].as_u64().expect("an id"))
        .collect();
    assert!(
        ids[..7].windows(2).all(|w| w[0] < w[1]),
        "ids in order: {ids:?}"
    );
    for e in &got {
        assert!(
            e["time"]
                .as_str()
                .is_some_and(|t| t.ends_with('Z') && t.len() == 24),
            "{e}"
        );
    }
    let ended = &got[3];
    assert!(
        ended["duration_s"].as_f64().is_some_and(|d| d > 1.0),
        "{ended}"
    );
    assert!(
        ended["path"].as_str().is_some_and(|p| p.ends_with(".mp4")),
        "{ended}"
    );

    // Every delivery is in the run log.
    let (_, runs) = server.get("/api/v1/triggers/runs?limit=500");
    let runs = runs["runs"].as_array().unwrap().clone();
    assert!(runs.len() >= expected.len(), "{runs:?}");
    assert!(
        runs.iter()
            .all(|r| r["result"] == "ok" && r["handler"] == "webhook"),
        "{runs:?}"
    );
}

#[test]
fn blocking_viewer_trigger_denies_and_a_hanging_handler_gets_its_default() {
    // "deny" for ?token=bad, "allow" otherwise.
    let rx = Receiver::start(|e| {
        if e["query"].as_str().unwrap_or("").contains("token=bad") {
            (200, "deny")
        } else {
            (200, "allow")
        }
    });
    let config = json!({
        "streams": { "demo": serde_json::from_str::<Value>(DEMO).unwrap() },
        "triggers": [ {
            "event": "viewer.requested",
            "handler": { "type": "webhook", "url": rx.url(), "timeout_ms": 2000, "default": "deny" }
        } ]
    });
    let server = Server::start(Some(&config.to_string()));
    server.login();
    server.wait_live("demo", Duration::from_secs(20));
    let get = |path: &str| {
        crate::http::request(server.http_port, "GET", path, &[], None).expect("request")
    };
    let denied = get("/demo.jpg?token=bad");
    assert_eq!(denied.status, 403, "{}", denied.text());
    let allowed = get("/demo.jpg?token=good");
    assert_eq!(allowed.status, 200, "{}", allowed.text());
    assert!(allowed.body.starts_with(&[0xff, 0xd8]), "a JPEG");
    let asked = rx.events();
    assert_eq!(asked.len(), 2, "{asked:?}");
    assert_eq!(asked[0]["event"], "viewer.requested");
    assert_eq!(asked[0]["stream"], "demo");
    assert_eq!(asked[0]["ip"], "127.0.0.1");
    assert_eq!(asked[0]["protocol"], "jpeg");

    // A handler that hangs: killed at its timeout, and its default ("deny") applies.
    let hang = json!({ "triggers": [ {
        "event": "viewer.requested",
        "handler": { "type": "exec", "command": ["sleep", "30"], "timeout_ms": 500, "default": "deny" }
    } ] });
    let (st, v) = server.put("/api/v1/triggers", &hang.to_string());
    assert_eq!(st, 200, "{v}");
    let t = Instant::now();
    let r = get("/demo.ts?token=x");
    assert_eq!(r.status, 403, "{}", r.text());
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "answered after {:?}",
        t.elapsed()
    );
    let (_, runs) = server.get("/api/v1/triggers/runs");
    let last = runs["runs"].as_array().unwrap().last().cloned().unwrap();
    assert_eq!(last["result"], "timeout", "{last}");
    assert_eq!(last["decision"], "deny", "{last}");
    assert_eq!(last["default_applied"], true, "{last}");

    // The same hang with "allow" as its default lets the viewer in.
    let hang = json!({ "triggers": [ {
        "event": "viewer.requested",
        "handler": { "type": "exec", "command": ["sleep", "30"], "timeout_ms": 500, "default": "allow" }
    } ] });
    assert_eq!(server.put("/api/v1/triggers", &hang.to_string()).0, 200);
    let r = get("/demo.jpg?token=y");
    assert_eq!(r.status, 200, "{}", r.text());

    // A trigger that names an unknown event, or a GPIO handler for the blocking one,
    // is refused with the field.
    let (st, v) = server.put(
        "/api/v1/triggers",
        r#"{"triggers":[{"event":"nope","handler":{"type":"exec","command":["true"]}}]}"#,
    );
    assert_eq!(st, 422, "{v}");
    assert_eq!(v["field"], "triggers.0.event", "{v}");
}

/// The `brume input` process of the stream and the ffmpeg it runs.
fn process_pid(server: &Server) -> Option<i32> {
    server
        .tree()
        .into_iter()
        .find(|p| {
            p.argv.first().is_some_and(|a| a.ends_with("ffmpeg"))
                && p.argv.iter().any(|a| a == "pipe:1")
        })
        .map(|p| p.pid)
}

#[test]
fn stream_process_adds_a_scaled_track_and_is_restarted_when_killed() {
    let config = json!({
        "streams": { "demo": {
            "source": { "type": "testsrc", "width": 640, "height": 360, "fps": 15, "bitrate_kbps": 500, "jpeg_fps": 0 },
            "always_on": true,
            "processes": [ {
                "name": "small",
                "tracks": "video",
                "command": [ffmpeg(), "-hide_banner", "-loglevel", "error", "-analyzeduration", "500000",
                            "-copyts", "-i", "pipe:0",
                            "-map", "0:v:0", "-vf", "scale=320:180", "-c:v", "libx264", "-preset", "ultrafast",
                            "-tune", "zerolatency", "-g", "15", "-muxdelay", "0", "-f", "mpegts", "pipe:1"]
            } ]
        } }
    });
    let server = Server::start(Some(&config.to_string()));
    server.login();
    server.wait_live("demo", Duration::from_secs(20));
    let small = |server: &Server| {
        server.stream("demo")["status"]["tracks"]
            .as_array()
            .and_then(|t| {
                t.iter()
                    .find(|t| t["width"] == 320 && t["height"] == 180 && t["codec"] == "h264")
                    .cloned()
            })
    };
    let track = wait_until(
        Duration::from_secs(30),
        "the process's 320x180 track",
        || small(&server),
    );
    assert!(track["id"].as_u64() >= Some(100), "{track}");

    // The outputs carry it: ffprobe sees both renditions in the TS output.
    let url = format!("http://127.0.0.1:{}/demo.ts", server.http_port);
    let sizes = |url: &str| -> Vec<(u64, u64)> {
        probe(url)
            .iter()
            .filter(|s| s["codec_type"] == "video")
            .map(|s| {
                (
                    s["width"].as_u64().unwrap_or(0),
                    s["height"].as_u64().unwrap_or(0),
                )
            })
            .collect()
    };
    let seen = sizes(&url);
    assert!(
        seen.contains(&(640, 360)) && seen.contains(&(320, 180)),
        "video streams: {seen:?}"
    );

    // Killing the program: the input stays, the program is started again and the
    // track keeps coming.
    let input_before = server.stream("demo")["status"]["input_pid"].clone();
    let pid = wait_until(Duration::from_secs(10), "the ffmpeg process", || {
        process_pid(&server)
    });
    signal(pid, libc::SIGKILL);
    let (_, _) = server.get("/api/v1/events");
    wait_until(Duration::from_secs(10), "a process.exited event", || {
        let (_, ev) = server.get("/api/v1/events?limit=500");
        ev["events"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["event"] == "process.exited" && e["process"] == "small")
            .cloned()
    });
    let again = wait_until(Duration::from_secs(15), "a new ffmpeg process", || {
        process_pid(&server).filter(|p| *p != pid)
    });
    assert_ne!(again, pid);
    assert_eq!(
        server.stream("demo")["status"]["input_pid"],
        input_before,
        "the input was not restarted"
    );
    wait_until(
        Duration::from_secs(40),
        "the restarted program's track in /demo.ts",
        || sizes(&url).contains(&(320, 180)).then_some(()),
    );
}

/// A JSON line on fd 3 of a stream process fires `process.<event>` triggers: here
/// "motion" starts a recording.
#[test]
fn stream_process_events_fire_triggers() {
    let script = "cat >/dev/null & sleep 1; echo '{\"event\":\"motion\",\"score\":0.9}' >&3; wait";
    let config = json!({
        "streams": { "demo": {
            "source": { "type": "testsrc", "width": 320, "height": 180, "fps": 15, "bitrate_kbps": 300, "jpeg_fps": 0 },
            "always_on": true,
            "processes": [ { "name": "detector", "no_output": true, "command": ["sh", "-c", script] } ]
        } },
        "triggers": [ {
            "event": "process.motion", "streams": ["demo"],
            "handler": { "type": "action", "action": "start_recording" }
        } ]
    });
    let server = Server::start(Some(&config.to_string()));
    server.login();
    server.wait_live("demo", Duration::from_secs(20));
    wait_until(
        Duration::from_secs(15),
        "the recording the motion event starts",
        || (recording(&server)["active"] == true).then_some(()),
    );
    let (_, ev) = server.get("/api/v1/events?limit=500");
    let motion = ev["events"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event"] == "process.motion")
        .cloned()
        .expect("a motion event");
    assert_eq!(motion["stream"], "demo");
    assert_eq!(motion["process"], "detector");
    assert_eq!(motion["score"], 0.9);
}

/// A stream process whose output is a stream of its own (`"output"`): viewers read it
/// like any stream while the program runs.
#[test]
fn stream_process_output_can_be_a_stream_of_its_own() {
    let config = json!({
        "streams": { "demo": {
            "source": { "type": "testsrc", "width": 320, "height": 180, "fps": 15, "bitrate_kbps": 300, "jpeg_fps": 0 },
            "always_on": true,
            "processes": [ {
                "name": "copy", "output": "demo_copy",
                "command": [ffmpeg(), "-hide_banner", "-loglevel", "error", "-analyzeduration", "500000",
                            "-copyts", "-i", "pipe:0", "-c", "copy", "-muxdelay", "0", "-f", "mpegts", "pipe:1"]
            } ]
        } }
    });
    let server = Server::start(Some(&config.to_string()));
    server.login();
    server.wait_live("demo", Duration::from_secs(20));
    let url = format!("http://127.0.0.1:{}/demo_copy.ts", server.http_port);
    let streams = wait_until(Duration::from_secs(30), "the process's own stream", || {
        let r = crate::http::request(
            server.http_port,
            "GET",
            "/hls/demo_copy/index.m3u8",
            &[],
            None,
        )
        .ok()?;
        (r.status == 200).then(|| probe(&url))
    });
    let kinds: Vec<(String, String)> = streams
        .iter()
        .map(|s| {
            (
                s["codec_type"].as_str().unwrap_or("").into(),
                s["codec_name"].as_str().unwrap_or("").into(),
            )
        })
        .collect();
    assert!(
        kinds.contains(&("video".into(), "h264".into())),
        "{kinds:?}"
    );
    assert!(kinds.contains(&("audio".into(), "aac".into())), "{kinds:?}");
    // The source stream keeps only its own tracks.
    let tracks = server.stream("demo")["status"]["tracks"]
        .as_array()
        .unwrap()
        .len();
    assert_eq!(tracks, 2, "{}", server.stream("demo"));
}
