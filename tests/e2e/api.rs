//! The stream life cycle through the API, as an operator does it.

use crate::harness::{wait_until, Server, SMALL_DEMO};
use crate::http::Viewer;
use std::time::Duration;

fn input_of(server: &Server, stream: &str) -> Vec<i32> {
    server
        .tree()
        .into_iter()
        .filter(|p| p.role() == "input" && p.argv.get(2).map(String::as_str) == Some(stream))
        .map(|p| p.pid)
        .collect()
}

#[test]
fn api_stream_lifecycle() {
    let server = Server::start(Some(SMALL_DEMO));
    server.login();
    let def = r#"{"name":"cam2","source":{"type":"testsrc","width":160,"height":90,"fps":10,"bitrate_kbps":100},"idle_timeout_s":30}"#;
    let (st, v) = server.post("/api/v1/streams", def);
    assert_eq!(st, 201, "create: {v}");
    assert_eq!(v["name"], "cam2", "{v}");
    assert!(
        server.config_on_disk()["streams"]["cam2"].is_object(),
        "the new stream is not in the config file"
    );

    let v = server.stream("cam2");
    let state = v["status"]["state"].as_str().unwrap_or("");
    assert!(
        state == "idle" || state == "stopped",
        "an on-demand stream nobody watches should not run: {v}"
    );
    assert!(
        input_of(&server, "cam2").is_empty(),
        "an input runs for an on-demand stream nobody watches"
    );

    // The first viewer starts it.
    let viewer = Viewer::open(server.http_port, "/cam2.ts");
    viewer.wait_more_than(4096, Duration::from_secs(20), "the on-demand stream");
    assert!(
        viewer.status_line().starts_with("HTTP/1.1 200"),
        "{}",
        viewer.status_line()
    );
    let v = wait_until(
        Duration::from_secs(10),
        "cam2 live with a viewer in the API",
        || {
            let v = server.stream("cam2");
            (v["status"]["state"] == "live" && v["status"]["viewers"].as_u64() >= Some(1))
                .then_some(v)
        },
    );
    let codecs: Vec<&str> = v["status"]["tracks"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|t| t["codec"].as_str())
        .collect();
    assert!(
        codecs.contains(&"h264") && codecs.contains(&"aac"),
        "cam2 should have H.264 video and AAC audio: {v}"
    );
    assert_eq!(input_of(&server, "cam2").len(), 1, "one input for cam2");

    let (st, v) = server.delete("/api/v1/streams/cam2");
    assert_eq!(st, 204, "delete: {v}");
    let (st, v) = server.get("/api/v1/streams/cam2");
    assert_eq!(st, 404, "GET after DELETE: {v}");
    let on_disk = server.config_on_disk();
    assert!(
        on_disk["streams"].get("cam2").is_none(),
        "the config file still has cam2: {on_disk}"
    );
    assert!(
        on_disk["streams"]["demo"].is_object(),
        "demo vanished: {on_disk}"
    );
    wait_until(
        Duration::from_secs(10),
        "the deleted stream's input to stop",
        || input_of(&server, "cam2").is_empty().then_some(()),
    );
}
