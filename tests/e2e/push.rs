//! Pushing a stream to another RTMP server (here ffmpeg listening as one): started by
//! the API, the server receives H.264 + AAC that play; `push.started`/`push.ended`
//! fire; a server that goes away is retried.

use crate::harness::{ffmpeg, wait_until, Server, SMALL_DEMO};
use crate::media::{assert_h264_aac, Background};
use std::process::Command;
use std::time::Duration;

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind")
        .local_addr()
        .expect("addr")
        .port()
}

#[test]
fn push_to_an_rtmp_server_plays_and_fires_events() {
    let server = Server::start(Some(SMALL_DEMO));
    server.login();
    server.wait_live("demo", Duration::from_secs(20));
    let port = free_port();
    let out = server.dir.join("pushed.ts");
    let mut cmd = Command::new(ffmpeg());
    cmd.args([
        "-hide_banner",
        "-loglevel",
        "error",
        "-nostdin",
        "-listen",
        "1",
        "-i",
    ])
    .arg(format!("rtmp://127.0.0.1:{port}/live/secretkey"))
    .args(["-t", "4", "-c", "copy", "-f", "mpegts"])
    .arg(&out);
    let mut receiver = Background::spawn(cmd, &server.dir.join("receiver.log"));
    std::thread::sleep(Duration::from_millis(500));

    let body = format!(r#"{{"stream":"demo","url":"rtmp://127.0.0.1:{port}/live/secretkey"}}"#);
    let (st, v) = server.put("/api/v1/pushes/out", &body);
    assert_eq!(st, 200, "{v}");
    assert!(
        !v["url"].as_str().unwrap_or("").contains("secretkey"),
        "the key is not shown: {v}"
    );
    let (st, v) = server.post("/api/v1/pushes/out/start", "");
    assert_eq!(st, 200, "{v}");
    wait_until(Duration::from_secs(20), "the push to connect", || {
        let (_, v) = server.get("/api/v1/pushes");
        (v["pushes"][0]["state"] == "pushing").then_some(())
    });
    // ffmpeg records 4 s and exits: the push ends and is retried.
    wait_until(Duration::from_secs(30), "the receiver to finish", || {
        receiver.exited()
    });
    let out = out.to_str().expect("utf-8");
    assert_h264_aac(out, 320, 180, None);
    wait_until(Duration::from_secs(20), "push.ended", || {
        let (_, ev) = server.get("/api/v1/events?limit=500");
        let ev = ev["events"].as_array().cloned().unwrap_or_default();
        let started = ev
            .iter()
            .position(|e| e["event"] == "push.started" && e["push"] == "out")?;
        let ended = ev
            .iter()
            .position(|e| e["event"] == "push.ended" && e["push"] == "out")?;
        (started < ended).then_some(())
    });
    wait_until(Duration::from_secs(20), "the push to retry", || {
        let (_, v) = server.get("/api/v1/pushes");
        let p = &v["pushes"][0];
        (p["attempts"].as_u64() >= Some(2) && p["state"] != "pushing").then_some(())
    });
    let (st, v) = server.post("/api/v1/pushes/out/stop", "");
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["state"], "stopped", "{v}");

    // Bad URLs are refused with the field.
    let (st, v) = server.put(
        "/api/v1/pushes/bad",
        r#"{"stream":"demo","url":"rtmps://x/live/k"}"#,
    );
    assert_eq!(st, 422, "{v}");
    assert_eq!(v["field"], "url", "{v}");
    let (st, v) = server.put(
        "/api/v1/pushes/bad",
        r#"{"stream":"nope","url":"rtmp://x/live/k"}"#,
    );
    assert_eq!(st, 422, "{v}");
    assert_eq!(v["field"], "stream", "{v}");
}
