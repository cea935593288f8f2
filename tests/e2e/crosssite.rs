//! Cross-site requests, DNS rebinding, the first-run setup code, the viewer gate's
//! cache and publish keys, against the real binary.
//!
//! A page on another site can make a browser send "simple" requests (a form post with
//! `Content-Type: text/plain`) without asking first; a page whose name an attacker
//! points at the board (DNS rebinding) sends the board's requests under its own name.
//! Neither may change anything. Handler runs of the blocking `viewer.requested` trigger
//! must not be multiplied by junk query strings or concurrent requests, and publish
//! keys are shown once.

use crate::harness::{wait_until, Server, PASSWORD, SMALL_DEMO};
use crate::http::{self, Reply};
use serde_json::{json, Value};
use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

/// One request with exactly these headers (`Host` too: 127.0.0.1:PORT unless given).
fn send(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&str>,
) -> Reply {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    let mut head = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        head.push_str(&format!("Host: 127.0.0.1:{port}\r\n"));
    }
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    if let Some(b) = body {
        head.push_str(&format!("Content-Length: {}\r\n", b.len()));
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    out.extend_from_slice(body.unwrap_or("").as_bytes());
    s.write_all(&out).expect("send");
    let raw = http::read_until_close(&mut s, Duration::from_secs(30)).expect("reply");
    http::parse_reply(&raw).unwrap_or_else(|| panic!("not HTTP: {}", http::preview(&raw)))
}

fn json_of(r: &Reply) -> Value {
    serde_json::from_slice(&r.body).unwrap_or(Value::Null)
}

fn refused(r: &Reply, what: &str) {
    assert!(
        r.status == 403 || r.status == 415,
        "{what}: answered {} {}",
        r.status,
        r.text()
    );
    assert!(
        r.header("set-cookie").is_none(),
        "{what}: a refused request set a cookie"
    );
    assert!(
        json_of(r).get("token").is_none(),
        "{what}: a refused request got a token"
    );
}

#[test]
fn cross_site_first_run_login_and_changes_are_refused() {
    let s = Server::start_first_run(r#"{"streams":{}}"#);
    let port = s.http_port;
    let code = s.setup_code();
    assert_eq!(code.len(), 14, "{code}");
    let log = s.log();
    assert!(
        log.contains(&code),
        "serve did not print the setup code:\n{log}"
    );
    let own = format!("http://127.0.0.1:{port}");
    let evil_host = format!("evil.example:{port}");
    let evil_origin = format!("http://evil.example:{port}");
    let no_hash = |what: &str| {
        assert!(
            s.config_on_disk()["admin"].get("password_hash").is_none(),
            "{what} set the admin password"
        );
    };

    // The first-run page, driven from elsewhere: even with the right code, nothing.
    let attack = json!({ "password": "attacker-password", "code": code }).to_string();
    let r = send(
        port,
        "POST",
        "/api/v1/setup",
        &[("Origin", &evil_origin), ("Content-Type", "text/plain")],
        Some(&attack),
    );
    refused(&r, "a cross-origin text/plain setup");
    let r = send(
        port,
        "POST",
        "/api/v1/setup",
        &[("Origin", "null"), ("Content-Type", "application/json")],
        Some(&attack),
    );
    refused(&r, "a setup from an opaque origin");
    // DNS rebinding: the page's own name now points at the board, so Origin and Host
    // agree; the name is not the board's.
    let r = send(
        port,
        "POST",
        "/api/v1/setup",
        &[
            ("Host", &evil_host),
            ("Origin", &evil_origin),
            ("Content-Type", "application/json"),
        ],
        Some(&attack),
    );
    assert_eq!(r.status, 403, "a rebound setup: {}", r.text());
    for path in ["/api/v1/setup", "/", "/api/v1/system"] {
        let r = send(port, "GET", path, &[("Host", &evil_host)], None);
        assert_eq!(
            r.status,
            403,
            "GET {path} under a foreign name: {}",
            r.text()
        );
    }
    // Same origin, but not JSON.
    let r = send(
        port,
        "POST",
        "/api/v1/setup",
        &[("Content-Type", "text/plain")],
        Some(&attack),
    );
    assert_eq!(r.status, 415, "a text/plain setup: {}", r.text());
    let r = send(
        port,
        "POST",
        "/api/v1/setup",
        &[("Content-Type", "application/x-www-form-urlencoded")],
        Some("password=attacker-password"),
    );
    assert_eq!(r.status, 415, "a form setup: {}", r.text());
    no_hash("a refused cross-site setup");

    // The setup code is required, and a wrong one is refused.
    let json_own = [
        ("Content-Type", "application/json"),
        ("Origin", own.as_str()),
    ];
    let r = send(
        port,
        "POST",
        "/api/v1/setup",
        &json_own,
        Some(&json!({ "password": PASSWORD }).to_string()),
    );
    assert_eq!(r.status, 403, "a setup without the code: {}", r.text());
    assert_eq!(json_of(&r)["field"], "code", "{}", r.text());
    let r = send(
        port,
        "POST",
        "/api/v1/setup",
        &json_own,
        Some(&json!({ "password": PASSWORD, "code": "AAAA-BBBB-CCCC" }).to_string()),
    );
    assert_eq!(r.status, 403, "a wrong code: {}", r.text());
    assert_eq!(json_of(&r)["field"], "code", "{}", r.text());
    no_hash("a setup without the right code");
    let r = send(port, "GET", "/api/v1/setup", &[], None);
    assert_eq!(json_of(&r)["needs_password"], true);

    // Same origin, JSON, the code as printed (in lower case, as someone may type it).
    let r = send(
        port,
        "POST",
        "/api/v1/setup",
        &json_own,
        Some(&json!({ "password": PASSWORD, "code": code.to_lowercase() }).to_string()),
    );
    assert_eq!(r.status, 200, "the owner's setup: {}", r.text());
    let cookie = r
        .header("set-cookie")
        .expect("a session cookie")
        .to_string();
    assert!(
        cookie.contains("HttpOnly") && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    let session = cookie.split(';').next().expect("name=value").to_string();
    assert!(
        !s.dir.join("run/setup-code").exists(),
        "the code outlived its use"
    );

    // Login from elsewhere: refused before the password is even checked.
    let login = json!({ "password": PASSWORD }).to_string();
    let r = send(
        port,
        "POST",
        "/api/v1/login",
        &[("Origin", &evil_origin), ("Content-Type", "text/plain")],
        Some(&login),
    );
    refused(&r, "a cross-origin text/plain login");
    let r = send(
        port,
        "POST",
        "/api/v1/login",
        &[("Content-Type", "text/plain")],
        Some(&login),
    );
    assert_eq!(r.status, 415, "a text/plain login: {}", r.text());
    refused(&r, "a text/plain login");
    let r = send(
        port,
        "POST",
        "/api/v1/login",
        &[("Host", &evil_host), ("Content-Type", "application/json")],
        Some(&login),
    );
    assert_eq!(r.status, 403, "a login under a foreign name: {}", r.text());
    let r = send(port, "POST", "/api/v1/login", &json_own, Some(&login));
    assert_eq!(r.status, 200, "a same-origin login: {}", r.text());
    s.login();

    // Changes with the owner's session cookie, sent by a page elsewhere.
    let stream = r#"{"name":"x","source":{"type":"testsrc"}}"#;
    let auth = [("Cookie", session.as_str())];
    let with = |extra: &[(&'static str, &str)]| -> Vec<(String, String)> {
        auth.iter()
            .chain(extra.iter())
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    };
    type Case<'a> = (&'a str, &'a str, Vec<(String, String)>, Option<&'a str>);
    let cases: Vec<Case> = vec![
        (
            "POST",
            "/api/v1/streams",
            with(&[("Origin", &evil_origin), ("Content-Type", "text/plain")]),
            Some(stream),
        ),
        (
            "POST",
            "/api/v1/streams",
            with(&[("Content-Type", "text/plain")]),
            Some(stream),
        ),
        (
            "POST",
            "/api/v1/streams",
            with(&[
                ("Origin", &evil_origin),
                ("Content-Type", "application/json"),
            ]),
            Some(stream),
        ),
        (
            "POST",
            "/api/v1/streams",
            with(&[
                ("Host", &evil_host),
                ("Origin", &evil_origin),
                ("Content-Type", "application/json"),
            ]),
            Some(stream),
        ),
        (
            "POST",
            "/api/v1/streams",
            with(&[
                ("Sec-Fetch-Site", "cross-site"),
                ("Content-Type", "application/json"),
            ]),
            Some(stream),
        ),
        (
            "PUT",
            "/api/v1/config",
            with(&[("Content-Type", "text/plain")]),
            Some(r#"{"streams":{}}"#),
        ),
        (
            "POST",
            "/api/v1/logout",
            with(&[("Origin", &evil_origin)]),
            None,
        ),
    ];
    for (method, path, headers, body) in &cases {
        let h: Vec<(&str, &str)> = headers
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        let r = send(port, method, path, &h, *body);
        refused(&r, &format!("{method} {path} with {headers:?}"));
    }
    let r = send(
        port,
        "GET",
        "/api/v1/streams",
        &[("Host", &evil_host), ("Cookie", &session)],
        None,
    );
    assert_eq!(r.status, 403, "reading under a foreign name: {}", r.text());
    let (_, list) = s.get("/api/v1/streams");
    assert_eq!(
        list["streams"],
        json!([]),
        "a refused request made a stream"
    );
    assert_eq!(s.config_on_disk()["streams"], json!({}));
    // The cookie still works: the cross-site logout did not end the session.
    let r = send(
        port,
        "GET",
        "/api/v1/streams",
        &[("Cookie", &session)],
        None,
    );
    assert_eq!(r.status, 200, "{}", r.text());

    // The same call from the board's own page works.
    let r = send(
        port,
        "POST",
        "/api/v1/streams",
        &with(&[("Origin", &own), ("Content-Type", "application/json")])
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect::<Vec<_>>(),
        Some(r#"{"name":"x","source":{"type":"testsrc","width":160,"height":90,"fps":5}}"#),
    );
    assert_eq!(r.status, 201, "a same-origin change: {}", r.text());

    // A name given to the board in the configuration is accepted, with its origin.
    let (st, v) = s.get("/api/v1/config");
    assert_eq!(st, 200);
    let mut c = v.clone();
    c["http"] = json!({ "allowed_hosts": ["cam.example.lan"] });
    let (st, v) = s.put("/api/v1/config", &c.to_string());
    assert_eq!(st, 200, "{v}");
    let named = format!("cam.example.lan:{port}");
    let named_origin = format!("http://cam.example.lan:{port}");
    let r = send(
        port,
        "POST",
        "/api/v1/streams/x/restart",
        &[
            ("Host", &named),
            ("Origin", &named_origin),
            ("Cookie", &session),
        ],
        None,
    );
    assert_eq!(r.status, 200, "the configured name: {}", r.text());
}

#[test]
fn a_password_from_the_environment_needs_no_setup_code() {
    let s = Server::start(Some(r#"{"streams":{}}"#));
    assert!(!s.dir.join("run/setup-code").exists());
    let (st, v) = s.get("/api/v1/setup");
    assert_eq!(st, 200);
    assert_eq!(v, json!({ "needs_password": false, "needs_code": false }));
    assert!(!s.log().contains("setup code"), "{}", s.log());
    s.login();
}

/// The handler's stdin, one JSON object a line.
fn runs_of(file: &std::path::Path) -> Vec<Value> {
    std::fs::read_to_string(file)
        .unwrap_or_default()
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

fn get_in_parallel(port: u16, paths: Vec<String>) -> Vec<u16> {
    let threads: Vec<_> = paths
        .into_iter()
        .map(|p| {
            std::thread::spawn(move || {
                http::request(port, "GET", &p, &[], None)
                    .map(|r| r.status)
                    .unwrap_or(0)
            })
        })
        .collect();
    threads
        .into_iter()
        .map(|t| t.join().expect("thread"))
        .collect()
}

#[test]
fn viewer_gate_runs_a_handler_once_per_viewer_and_never_for_missing_streams() {
    let dir = std::env::temp_dir().join(format!("brume-e2e-gate-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let runs = dir.join("runs.jsonl");
    // Each run appends its event (one line) and takes a while, so requests overlap it.
    let script = format!(
        "tr -d '\\n' >> {0}; echo >> {0}; sleep 1; echo allow",
        runs.display()
    );
    let demo: Value = serde_json::from_str(SMALL_DEMO).expect("demo");
    let config = json!({
        "streams": demo["streams"],
        "triggers": [{
            "event": "viewer.requested",
            "handler": { "type": "exec", "command": ["sh", "-c", script], "timeout_ms": 5000, "default": "deny" }
        }]
    });
    let server = Server::start(Some(&config.to_string()));
    server.login();
    server.wait_live("demo", Duration::from_secs(30));
    let port = server.http_port;

    // 20 identical requests at once: one handler run, every viewer served.
    let statuses = get_in_parallel(port, vec!["/demo.jpg?token=t1".to_string(); 20]);
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    assert_eq!(runs_of(&runs).len(), 1, "{:?}", runs_of(&runs));

    // 20 requests with junk in their query strings, at once: one run for the token.
    let paths = (0..20)
        .map(|i| format!("/demo.jpg?token=t2&junk={i}&_={}", i * 7))
        .collect();
    let statuses = get_in_parallel(port, paths);
    assert!(statuses.iter().all(|s| *s == 200), "{statuses:?}");
    let seen = runs_of(&runs);
    assert_eq!(seen.len(), 2, "{seen:?}");
    // The handler sees the access parameters only.
    assert_eq!(seen[1]["query"], "token=t2", "{}", seen[1]);
    // And one after the other, without a token: one run.
    for i in 0..20 {
        let r = http::request(
            port,
            "GET",
            &format!("/demo.jpg?cachebuster={i}"),
            &[],
            None,
        )
        .expect("GET");
        assert_eq!(r.status, 200, "{}", r.text());
    }
    assert_eq!(runs_of(&runs).len(), 3, "{:?}", runs_of(&runs));

    // Streams that do not exist: 404, and no handler runs.
    for path in [
        "/nope.jpg?token=t9",
        "/nope.ts",
        "/nope.mp4?token=t1",
        "/hls/nope/index.m3u8?token=z",
    ] {
        let r = http::request(port, "GET", path, &[], None).expect("GET");
        assert_eq!(r.status, 404, "{path}: {}", r.text());
    }
    std::thread::sleep(Duration::from_millis(500));
    assert_eq!(runs_of(&runs).len(), 3, "{:?}", runs_of(&runs));
    let (_, r) = server.get("/api/v1/triggers/runs");
    assert_eq!(r["runs"].as_array().map(Vec::len), Some(3), "{r}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn publish_keys_are_shown_once() {
    let server = Server::start(Some(
        r#"{"streams":{"cam":{"source":{"type":"rtmp","key":"cam-secret-key-1"}},
            "demo":{"source":{"type":"testsrc","width":160,"height":90,"fps":5}}}}"#,
    ));
    server.login();
    let hidden = |what: &str, v: &Value, key: &str| {
        assert!(!v.to_string().contains(key), "{what} shows the key: {v}");
    };
    let (_, list) = server.get("/api/v1/streams");
    hidden("GET /streams", &list, "cam-secret-key-1");
    let cam = list["streams"]
        .as_array()
        .and_then(|l| l.iter().find(|s| s["name"] == "cam"))
        .cloned()
        .expect("cam");
    assert_eq!(cam["config"]["source"]["key"], "…", "{cam}");
    hidden(
        "GET /streams/cam",
        &server.stream("cam"),
        "cam-secret-key-1",
    );
    let (_, exported) = server.get("/api/v1/config");
    hidden("GET /config", &exported, "cam-secret-key-1");
    assert_eq!(exported["streams"]["cam"]["source"]["key"], "…");

    // Created without a key: one is made and shown in this answer only.
    let (st, v) = server.post(
        "/api/v1/streams",
        r#"{"name":"pub","source":{"type":"rtmp"}}"#,
    );
    assert_eq!(st, 201, "{v}");
    let key = v["key"].as_str().expect("the new key").to_string();
    assert!(key.len() >= 16, "{key}");
    assert_eq!(v["config"]["source"]["key"], key.as_str());
    assert_eq!(
        server.config_on_disk()["streams"]["pub"]["source"]["key"],
        key.as_str()
    );
    hidden("GET /streams", &server.get("/api/v1/streams").1, &key);
    // A key given at creation is shown back once as well.
    let (st, v) = server.post(
        "/api/v1/streams",
        r#"{"name":"given","source":{"type":"rtmp","key":"given-key-1"}}"#,
    );
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["key"], "given-key-1");

    // A new key: shown once, saved, the old one gone.
    let (st, v) = server.post("/api/v1/streams/pub/key", "{}");
    assert_eq!(st, 200, "{v}");
    let fresh = v["key"].as_str().expect("a new key").to_string();
    assert_ne!(fresh, key);
    assert_eq!(
        server.config_on_disk()["streams"]["pub"]["source"]["key"],
        fresh.as_str()
    );
    hidden("GET /streams", &server.get("/api/v1/streams").1, &fresh);
    hidden("GET /config", &server.get("/api/v1/config").1, &fresh);
    assert_eq!(server.post("/api/v1/streams/demo/key", "{}").0, 409);
    assert_eq!(server.post("/api/v1/streams/nope/key", "{}").0, 404);

    // The editor sends the redacted key back: the stream keeps its key.
    let (st, v) = server.put(
        "/api/v1/streams/cam",
        r#"{"source":{"type":"rtmp","key":"…"}}"#,
    );
    assert_eq!(st, 200, "{v}");
    hidden("PUT /streams/cam", &v, "cam-secret-key-1");
    assert_eq!(
        server.config_on_disk()["streams"]["cam"]["source"]["key"],
        "cam-secret-key-1"
    );

    // Importing the export keeps every key; a redacted key for a new stream is refused.
    let (_, exported) = server.get("/api/v1/config");
    let (st, v) = server.put("/api/v1/config", &exported.to_string());
    assert_eq!(st, 200, "{v}");
    let disk = server.config_on_disk();
    assert_eq!(disk["streams"]["cam"]["source"]["key"], "cam-secret-key-1");
    assert_eq!(disk["streams"]["pub"]["source"]["key"], fresh.as_str());
    let mut bad = exported.clone();
    bad["streams"]["other"] = json!({"source": {"type": "rtmp", "key": "…"}});
    let (st, v) = server.put("/api/v1/config", &bad.to_string());
    assert_eq!(st, 422, "{v}");
    assert_eq!(v["field"], "streams.other.source.key", "{v}");
    assert_eq!(
        server.config_on_disk(),
        disk,
        "a refused import wrote the file"
    );

    // Events and their log carry no keys either.
    let (_, events) = server.get("/api/v1/events?limit=500");
    for k in [
        "cam-secret-key-1",
        key.as_str(),
        fresh.as_str(),
        "given-key-1",
    ] {
        hidden("GET /events", &events, k);
    }
    wait_until(Duration::from_secs(5), "the logs", || {
        let logs = server.all_logs();
        (!logs.is_empty()).then_some(())
    });
    let logs = server.all_logs();
    for k in ["cam-secret-key-1", key.as_str(), fresh.as_str()] {
        assert!(!logs.contains(k), "a log shows the key {k}");
    }
}
