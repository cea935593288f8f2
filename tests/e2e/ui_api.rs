//! Every call the web UI makes, against the real binary: first-run password setup,
//! the embedded UI files, configuration export and import, the stream calls and the
//! fields the dashboard, the editor and the player read.

use crate::harness::{self, wait_until, Server, SMALL_DEMO};
use crate::http::{self, Reply, Viewer};
use serde_json::{json, Value};
use std::io::Write;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A `brume serve` started without `BRUME_ADMIN_PASSWORD` on an empty configuration:
/// a board on its first boot. (The harness's `Server` always sets a password.)
struct FirstRun {
    dir: PathBuf,
    prefix: String,
    port: u16,
    child: Child,
    seen: Vec<harness::Proc>,
}

impl FirstRun {
    fn start() -> FirstRun {
        let pid = std::process::id();
        let dir = std::env::temp_dir().join(format!("brume-e2e-firstrun-{pid}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the test directory");
        std::fs::write(dir.join("brume.json"), r#"{"streams":{}}"#).expect("write the config");
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let log = std::fs::File::create(dir.join("serve.log")).expect("create the log");
        let prefix = format!("brumee2efirst{pid}t");
        let child = Command::new(env!("CARGO_BIN_EXE_brume"))
            .arg("serve")
            .arg("--config")
            .arg(dir.join("brume.json"))
            .args(["--listen", &format!("127.0.0.1:{port}"), "--rtmp", "off"])
            .env("BRUME_SHM_PREFIX", &prefix)
            .env("BRUME_RTSP_LISTEN", "off")
            .env_remove("BRUME_ADMIN_PASSWORD")
            .env_remove("BRUME_SHM_DIR")
            .env_remove("BRUME_RUN_DIR")
            .env_remove("BRUME_CONFIG")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("spawn brume serve");
        let mut s = FirstRun {
            dir,
            prefix,
            port,
            child,
            seen: Vec::new(),
        };
        wait_until(Duration::from_secs(30), "the HTTP port to answer", || {
            if let Ok(Some(st)) = s.child.try_wait() {
                panic!("brume serve exited ({st}); log:\n{}", s.log());
            }
            http::request(port, "GET", "/api/v1/setup", &[], None)
                .ok()
                .filter(|r| r.status == 200)
        });
        s.seen = harness::tree(s.child.id() as i32);
        s
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("serve.log")).unwrap_or_default()
    }

    /// The one-time code serve wrote (0600) in the run directory.
    fn setup_code(&self) -> String {
        let path = self.dir.join("run/setup-code");
        let mode = std::os::unix::fs::PermissionsExt::mode(
            &std::fs::metadata(&path)
                .expect("the setup-code file")
                .permissions(),
        );
        assert_eq!(mode & 0o777, 0o600, "{}", path.display());
        std::fs::read_to_string(path)
            .expect("the setup code")
            .trim()
            .to_string()
    }

    fn config_on_disk(&self) -> Value {
        serde_json::from_slice(&std::fs::read(self.dir.join("brume.json")).expect("config"))
            .expect("the config file parses")
    }

    fn call(
        &self,
        method: &str,
        path: &str,
        headers: &[(&str, &str)],
        body: Option<&str>,
    ) -> Reply {
        let mut h = headers.to_vec();
        if body.is_some() {
            h.push(("Content-Type", "application/json"));
        }
        http::request(self.port, method, path, &h, body.map(str::as_bytes))
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }
}

impl Drop for FirstRun {
    fn drop(&mut self) {
        self.seen.extend(harness::tree(self.child.id() as i32));
        harness::signal(self.child.id() as i32, libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        for p in &self.seen {
            if p.alive() {
                harness::signal(p.pid, libc::SIGKILL);
            }
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            eprintln!("----- brume serve log -----\n{}", self.log());
        }
        for f in harness::shm_files(&self.prefix) {
            let _ = std::fs::remove_file(f);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn json_of(r: &Reply) -> Value {
    serde_json::from_slice(&r.body)
        .unwrap_or_else(|e| panic!("not JSON ({e}): {} {:?}", r.status, r.text()))
}

#[test]
fn ui_first_run_sets_the_admin_password_once() {
    let s = FirstRun::start();
    let log = s.log();
    assert!(
        log.contains(&format!(
            "Open http://127.0.0.1:{}/ to set the admin password with the setup code ",
            s.port
        )),
        "serve does not say where to set the password:\n{log}"
    );
    let code = s.setup_code();
    assert!(
        log.contains(&code),
        "the setup code is not in the output:\n{log}"
    );
    assert!(
        !log.contains("Generated admin password"),
        "serve generated a password"
    );
    assert!(
        s.config_on_disk()["admin"].get("password_hash").is_none(),
        "a password hash exists before the first visit: {}",
        s.config_on_disk()
    );

    // Before the password is set: the UI and the setup call answer, nothing else does.
    let r = s.call("GET", "/api/v1/setup", &[], None);
    assert_eq!(
        json_of(&r),
        json!({ "needs_password": true, "needs_code": true })
    );
    let r = s.call("GET", "/", &[], None);
    assert_eq!(r.status, 200, "the UI must load to set the password");
    for path in ["/api/v1/streams", "/api/v1/config", "/api/v1/system"] {
        assert_eq!(s.call("GET", path, &[], None).status, 401, "{path}");
    }
    let r = s.call(
        "POST",
        "/api/v1/login",
        &[],
        Some(r#"{"password":"anything1"}"#),
    );
    assert_eq!(r.status, 409, "login before setup: {}", r.text());
    let short = json!({ "password": "short", "code": code }).to_string();
    let r = s.call("POST", "/api/v1/setup", &[], Some(&short));
    assert_eq!(r.status, 422, "{}", r.text());
    assert_eq!(json_of(&r)["field"], "password");
    let no_password = json!({ "code": code }).to_string();
    let r = s.call("POST", "/api/v1/setup", &[], Some(&no_password));
    assert_eq!(r.status, 422, "a body without a password: {}", r.text());
    assert!(
        s.config_on_disk()["admin"].get("password_hash").is_none(),
        "a refused setup wrote a hash"
    );

    // Setting it logs the first visitor in (token and session cookie).
    let first = json!({ "password": "first-run-pw", "code": code }).to_string();
    let r = s.call("POST", "/api/v1/setup", &[], Some(&first));
    assert_eq!(r.status, 200, "{}", r.text());
    let cookie = r
        .header("set-cookie")
        .expect("a session cookie")
        .to_string();
    assert!(
        cookie.starts_with("brume_session=")
            && cookie.contains("HttpOnly")
            && cookie.contains("SameSite=Strict"),
        "{cookie}"
    );
    assert!(json_of(&r)["token"].as_str().is_some_and(|t| t.len() >= 32));
    let session = cookie.split(';').next().expect("name=value").to_string();
    let r = s.call("GET", "/api/v1/streams", &[("Cookie", &session)], None);
    assert_eq!(r.status, 200, "the cookie from setup: {}", r.text());

    // Once only.
    let r = s.call("GET", "/api/v1/setup", &[], None);
    assert_eq!(
        json_of(&r),
        json!({ "needs_password": false, "needs_code": false })
    );
    assert!(
        !s.dir.join("run/setup-code").exists(),
        "the setup code outlived the first run"
    );
    let second = json!({ "password": "second-password", "code": code }).to_string();
    let r = s.call("POST", "/api/v1/setup", &[], Some(&second));
    assert_eq!(r.status, 409, "a second setup: {}", r.text());
    let hash = s.config_on_disk()["admin"]["password_hash"]
        .as_str()
        .expect("the hash is saved")
        .to_string();
    assert!(hash.starts_with("$argon2id$"), "{hash}");

    // Saved, not only in memory: a restarted controller still knows it.
    let controller = harness::tree(s.child.id() as i32)
        .into_iter()
        .find(|p| p.role() == "controller" && p.ppid == s.child.id() as i32)
        .expect("the controller");
    harness::signal(controller.pid, libc::SIGKILL);
    wait_until(
        Duration::from_secs(20),
        "login after the controller restarted",
        || {
            // While the controller restarts, a request may find no one to answer it.
            let body = r#"{"password":"first-run-pw"}"#;
            let json = [("Content-Type", "application/json")];
            http::request(
                s.port,
                "POST",
                "/api/v1/login",
                &json,
                Some(body.as_bytes()),
            )
            .ok()
            .filter(|r| r.status == 200)
        },
    );
    let r = s.call(
        "POST",
        "/api/v1/login",
        &[],
        Some(r#"{"password":"second-password"}"#),
    );
    assert_eq!(r.status, 401, "{}", r.text());
    assert_eq!(
        s.config_on_disk()["admin"]["password_hash"],
        hash,
        "the hash changed"
    );
}

fn gunzip(data: &[u8]) -> Vec<u8> {
    let mut child = Command::new("gzip")
        .arg("-dc")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("run gzip");
    let mut stdin = child.stdin.take().expect("stdin");
    let data = data.to_vec();
    let writer = std::thread::spawn(move || stdin.write_all(&data));
    let out = child.wait_with_output().expect("gzip output");
    writer.join().expect("writer").expect("write to gzip");
    assert!(out.status.success(), "gzip -dc failed: not a gzip body");
    out.stdout
}

/// The `./x.js` and `../x.js` modules a script imports, as absolute paths.
fn imports(from: &str, script: &str) -> Vec<String> {
    let dir = &from[..from.rfind('/').expect("a path") + 1];
    let mut out = Vec::new();
    for part in script.split(" from '").skip(1) {
        let spec = part.split('\'').next().unwrap_or("");
        let mut path = dir.to_string();
        let mut rest = spec;
        loop {
            if let Some(r) = rest.strip_prefix("./") {
                rest = r;
            } else if let Some(r) = rest.strip_prefix("../") {
                path.pop();
                path.truncate(path.rfind('/').expect("a parent") + 1);
                rest = r;
            } else {
                break;
            }
        }
        out.push(format!("{path}{rest}"));
    }
    out
}

#[test]
fn ui_files_are_embedded_typed_and_compressed() {
    let server = Server::start(Some(r#"{"streams":{}}"#));
    let port = server.http_port;
    let get = |path: &str, headers: &[(&str, &str)]| {
        http::request(port, "GET", path, headers, None).unwrap_or_else(|e| panic!("{path}: {e}"))
    };

    let index = get("/", &[]);
    assert_eq!(index.status, 200);
    assert_eq!(
        index.header("content-type"),
        Some("text/html; charset=utf-8")
    );
    assert!(
        index
            .header("content-security-policy")
            .is_some_and(|c| c.contains("default-src 'self'")),
        "no CSP on the page"
    );
    let html = index.text();
    assert!(
        html.contains(r#"<script type="module" src="/ui/app.js">"#),
        "{html}"
    );
    assert!(html.contains(r#"href="/ui/style.css""#), "{html}");
    let head = http::request(port, "HEAD", "/", &[], None).expect("HEAD /");
    assert_eq!(head.status, 200);
    assert!(head.body.is_empty());

    // Every file the page loads, following the module imports from app.js.
    let mut todo = vec![
        "/ui/app.js".to_string(),
        "/ui/style.css".to_string(),
        "/ui/icon.svg".to_string(),
    ];
    let mut done: Vec<String> = Vec::new();
    let mut gzipped_total = 0;
    while let Some(path) = todo.pop() {
        if done.contains(&path) {
            continue;
        }
        let plain = get(&path, &[]);
        assert_eq!(plain.status, 200, "{path}: {}", plain.text());
        assert_eq!(plain.header("content-encoding"), None, "{path}");
        let want = match path.rsplit_once('.').map(|p| p.1) {
            Some("js") => "text/javascript; charset=utf-8",
            Some("css") => "text/css; charset=utf-8",
            Some("svg") => "image/svg+xml",
            other => panic!("unexpected UI file type {other:?}"),
        };
        assert_eq!(plain.header("content-type"), Some(want), "{path}");
        let gz = get(&path, &[("Accept-Encoding", "gzip, deflate, br")]);
        if gz.header("content-encoding") == Some("gzip") {
            assert_eq!(gunzip(&gz.body), plain.body, "{path}: gzip body differs");
            gzipped_total += gz.body.len();
        } else {
            gzipped_total += plain.body.len();
        }
        let etag = plain.header("etag").expect("an ETag").to_string();
        let again = get(&path, &[("If-None-Match", &etag)]);
        assert_eq!(again.status, 304, "{path} with its ETag");
        if want.starts_with("text/javascript") {
            todo.extend(imports(&path, &plain.text()));
        }
        done.push(path);
    }
    for module in [
        "/ui/api.js",
        "/ui/player.js",
        "/ui/views/dashboard.js",
        "/ui/views/editor.js",
        "/ui/views/camera.js",
        "/ui/views/system.js",
    ] {
        assert!(
            done.iter().any(|d| d == module),
            "{module} not reached from app.js"
        );
    }
    assert!(
        gzipped_total + index.body.len() < 150 * 1024,
        "the UI transfers {gzipped_total} bytes gzipped; the budget is 150 KB"
    );
    assert_eq!(get("/ui/nope.js", &[]).status, 404);
}

#[test]
fn ui_config_export_and_import() {
    let server = Server::start(Some(
        r#"{"streams":{"cam":{"source":{"type":"rtmp","key":"cam-key-1"}}}}"#,
    ));
    assert_eq!(server.get("/api/v1/config").0, 401);
    assert_eq!(server.put("/api/v1/config", "{}").0, 401);
    server.login();

    let (st, exported) = server.get("/api/v1/config");
    assert_eq!(st, 200, "{exported}");
    // The publish key is redacted (tests/e2e/crosssite.rs has the rest).
    assert_eq!(exported["streams"]["cam"]["source"]["key"], "…");
    assert!(exported.get("admin").is_none(), "{exported}");
    assert!(!exported.to_string().contains("argon2"), "{exported}");
    let before = server.config_on_disk();
    let hash = before["admin"]["password_hash"].clone();
    assert!(hash.is_string());

    // Refused imports change nothing and name the field.
    let mut bad = exported.clone();
    bad["streams"]["x"] = json!({"source": {"type": "testsrc", "width": 13}});
    let (st, v) = server.put("/api/v1/config", &bad.to_string());
    assert_eq!(st, 422, "{v}");
    assert_eq!(v["field"], "streams.x.source.width", "{v}");
    // A wrong type inside the tagged source is reported on the source (serde buffers
    // internally tagged enums, so the path stops there).
    bad["streams"]["x"]["source"]["width"] = json!("wide");
    let (st, v) = server.put("/api/v1/config", &bad.to_string());
    assert_eq!(st, 422, "{v}");
    assert!(
        v["field"]
            .as_str()
            .is_some_and(|f| f.starts_with("streams.x.source")),
        "{v}"
    );
    let (st, _) = server.put("/api/v1/config", "{not json");
    assert_eq!(st, 400);
    assert_eq!(
        server.config_on_disk(),
        before,
        "a refused import wrote the file"
    );

    // A valid import replaces the streams and keeps the admin password, whatever the
    // file says about it.
    let mut good = exported.clone();
    good["streams"]["cam"]["source"]["key"] = json!("cam-key-2");
    good["streams"]["pub2"] = json!({"source": {"type": "rtmp", "key": "pub2-key"}});
    good["admin"] = json!({"password_hash": "$argon2id$v=19$m=8,t=1,p=1$c2FsdHNhbHQ$aGFzaA"});
    let (st, v) = server.put("/api/v1/config", &good.to_string());
    assert_eq!(st, 200, "{v}");
    assert!(v.get("admin").is_none(), "{v}");
    let after = server.config_on_disk();
    assert_eq!(after["streams"]["cam"]["source"]["key"], "cam-key-2");
    assert_eq!(after["streams"]["pub2"]["source"]["key"], "pub2-key");
    assert_eq!(
        after["admin"]["password_hash"], hash,
        "the import changed the password"
    );
    let (_, list) = server.get("/api/v1/streams");
    let names: Vec<&str> = list["streams"]
        .as_array()
        .expect("streams")
        .iter()
        .filter_map(|s| s["name"].as_str())
        .collect();
    assert_eq!(names, ["cam", "pub2"]);
    server.login(); // the old password still works
}

fn input_of(server: &Server, stream: &str) -> Vec<i32> {
    server
        .tree()
        .into_iter()
        .filter(|p| p.role() == "input" && p.argv.get(2).map(String::as_str) == Some(stream))
        .map(|p| p.pid)
        .collect()
}

#[test]
fn ui_stream_calls_and_the_fields_the_ui_reads() {
    let server = Server::start(Some(SMALL_DEMO));
    let snapshot_path = "/api/v1/streams/demo/snapshot";
    assert_eq!(server.raw("GET", snapshot_path, None).status, 401);
    server.login();
    let v = server.wait_live("demo", Duration::from_secs(30));

    // The player's codec strings, and the JPEG track the thumbnails come from.
    let tracks = v["status"]["tracks"].as_array().expect("tracks").clone();
    let codec = |c: &str| tracks.iter().find(|t| t["codec"] == c).cloned();
    let h264 = codec("h264").expect("an H.264 track");
    let cs = h264["codec_string"]
        .as_str()
        .expect("an H.264 codec string");
    assert!(
        cs.len() == 11 && cs.starts_with("avc1.") && cs[5..].chars().all(|c| c.is_ascii_hexdigit()),
        "{cs}"
    );
    assert_eq!(
        codec("aac").expect("an AAC track")["codec_string"],
        "mp4a.40.2"
    );
    assert!(codec("jpeg").expect("a JPEG track")["codec_string"].is_null());
    for key in ["state", "viewers", "bitrate_kbps", "restarts", "last_error"] {
        assert!(v["status"].get(key).is_some(), "status lacks {key}: {v}");
    }

    // Thumbnail: a JPEG from the controller, on a connection that closes.
    let r = server.raw("GET", snapshot_path, None);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.header("content-type"), Some("image/jpeg"));
    assert!(r.body.starts_with(&[0xff, 0xd8]) && r.body.ends_with(&[0xff, 0xd9]));
    assert_eq!(r.header("connection"), Some("close"));
    assert_eq!(
        server
            .raw("GET", "/api/v1/streams/nope/snapshot", None)
            .status,
        404
    );

    // The editor: create, refuse a bad value by field, update, restart, delete.
    let (st, v) = server.post(
        "/api/v1/streams",
        r#"{"name":"small","source":{"type":"testsrc","width":160,"height":90,"fps":10,"bitrate_kbps":100},"always_on":false,"idle_timeout_s":20}"#,
    );
    assert_eq!(st, 201, "{v}");
    let (st, v) = server.post(
        "/api/v1/streams",
        r#"{"name":"pub","source":{"type":"rtmp","key":"pub-key-1"}}"#,
    );
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["status"]["state"], "waiting", "{v}");
    // Thumbnails of streams that do not run neither fail loudly nor wake them.
    assert_eq!(
        server
            .raw("GET", "/api/v1/streams/small/snapshot", None)
            .status,
        503
    );
    assert_eq!(
        server
            .raw("GET", "/api/v1/streams/pub/snapshot", None)
            .status,
        503
    );
    std::thread::sleep(Duration::from_millis(500));
    assert!(
        input_of(&server, "small").is_empty(),
        "a thumbnail woke an on-demand stream"
    );

    let before = server.config_on_disk();
    let (st, v) = server.put(
        "/api/v1/streams/small",
        r#"{"source":{"type":"testsrc","width":13,"height":90},"always_on":false}"#,
    );
    assert_eq!(st, 422, "{v}");
    assert_eq!(v["field"], "source.width", "{v}");
    let (st, v) = server.post(
        "/api/v1/streams",
        r#"{"name":"small","source":{"type":"rtmp","key":"abcd"}}"#,
    );
    assert_eq!(st, 409, "{v}");
    assert_eq!(v["field"], "name", "{v}");
    let (st, v) = server.post(
        "/api/v1/streams",
        r#"{"name":"api","source":{"type":"rtmp","key":"abcd"}}"#,
    );
    assert_eq!(st, 422, "{v}");
    assert_eq!(v["field"], "name", "{v}");
    assert_eq!(
        server.config_on_disk(),
        before,
        "a refused change wrote the file"
    );
    let (st, v) = server.put(
        "/api/v1/streams/small",
        r#"{"source":{"type":"testsrc","width":160,"height":90,"fps":10,"bitrate_kbps":150},"always_on":false,"idle_timeout_s":40}"#,
    );
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["config"]["idle_timeout_s"], 40);
    assert_eq!(
        server.config_on_disk()["streams"]["small"]["source"]["bitrate_kbps"],
        150
    );

    let old_pid = server.stream("demo")["status"]["input_pid"].clone();
    let (st, v) = server.post("/api/v1/streams/demo/restart", "");
    assert_eq!(st, 200, "{v}");
    wait_until(Duration::from_secs(20), "demo live on a new input", || {
        let s = server.stream("demo");
        (s["status"]["state"] == "live" && s["status"]["input_pid"] != old_pid).then_some(())
    });
    let (st, v) = server.post("/api/v1/streams/pub/restart", "");
    assert_eq!(st, 409, "{v}");

    // The player: the MP4 it feeds to MediaSource starts with the init segment.
    let viewer = Viewer::open(server.http_port, "/demo.mp4");
    viewer.wait_more_than(2048, Duration::from_secs(20), "the MP4 output");
    assert!(
        viewer.status_line().starts_with("HTTP/1.1 200"),
        "{}",
        viewer.status_line()
    );
    let body = viewer.body();
    assert_eq!(&body[4..8], b"ftyp", "the MP4 does not start with ftyp");
    drop(viewer);

    // The dashboard's and system page's figures.
    let (st, sys) = server.get("/api/v1/system");
    assert_eq!(st, 200, "{sys}");
    for key in [
        "version",
        "uptime_s",
        "controller_uptime_s",
        "load",
        "cpus",
        "memory",
        "disk",
    ] {
        assert!(!sys[key].is_null(), "system lacks {key}: {sys}");
    }
    assert!(sys.get("temperature_c").is_some(), "{sys}");
    assert_eq!(sys["rtmp_port"], server.rtmp_port, "{sys}");
    assert!(
        sys["memory"]["total_kib"].as_u64().is_some_and(|k| k > 0),
        "{sys}"
    );
    let (st, logs) = server.get("/api/v1/logs?limit=20");
    assert_eq!(st, 200);
    let lines = logs["lines"].as_array().expect("lines");
    assert!(!lines.is_empty() && lines.len() <= 20, "{logs}");
    // The editor's device picker.
    let (st, dev) = server.get("/api/v1/devices");
    assert_eq!(st, 200, "{dev}");
    assert!(dev["video"].is_array() && dev["audio"].is_array(), "{dev}");
    assert_eq!(dev["fake"]["video"], "fake:camera");

    let (st, _) = server.delete("/api/v1/streams/small");
    assert_eq!(st, 204);
    assert!(server.config_on_disk()["streams"].get("small").is_none());

    // Log out: the session ends and the browser's cookie is cleared.
    let r = server.raw("POST", "/api/v1/logout", Some("{}"));
    assert_eq!(r.status, 204);
    assert!(
        r.header("set-cookie")
            .is_some_and(|c| c.contains("Max-Age=0")),
        "{:?}",
        r.header("set-cookie")
    );
    assert_eq!(server.get("/api/v1/streams").0, 401);
}
