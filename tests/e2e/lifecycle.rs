//! The root angel's command line and lifecycle: unknown options and --help, a busy
//! port, a second `serve` on the same run directory, SIGHUP, a root angel killed
//! alone; and what the appliance keeps to itself: the admin password (no child's
//! environment), the configuration and session files (0600), sessions across a
//! controller crash.

use crate::harness::{
    self, login_token, signal, tree, wait_until, Proc, Server, PASSWORD, SMALL_DEMO,
};
use crate::http;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// An empty directory of its own, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new(what: &str) -> Scratch {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let dir =
            std::env::temp_dir().join(format!("brume-e2e-life-{}-{what}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create a scratch directory");
        Scratch(dir)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .expect("bind a free port")
        .local_addr()
        .expect("addr")
        .port()
}

/// `brume` with a clean environment (no password, run dir or config from the caller),
/// in `dir`, with a private shared-memory prefix.
fn brume(dir: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_brume"));
    c.args(args)
        .current_dir(dir)
        .env(
            "BRUME_SHM_PREFIX",
            format!(
                "brumelife{}x{}t",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::SeqCst)
            ),
        )
        .env_remove("BRUME_ADMIN_PASSWORD")
        .env("BRUME_RTSP_LISTEN", "off")
        .env_remove("BRUME_RUN_DIR")
        .env_remove("BRUME_CONFIG")
        .env_remove("BRUME_SHM_DIR")
        .stdin(Stdio::null());
    c
}

struct Outcome {
    /// None: still running at the deadline (then killed with its tree).
    status: Option<ExitStatus>,
    stdout: String,
    stderr: String,
}

impl Outcome {
    fn all(&self) -> String {
        format!("stdout:\n{}\nstderr:\n{}", self.stdout, self.stderr)
    }
}

/// Runs `cmd` with its output in files (a server it starts by mistake cannot hold a
/// pipe open); kills it and its tree if it has not exited by `deadline`.
fn run(mut cmd: Command, out_dir: &Path, deadline: Duration) -> Outcome {
    let n = COUNTER.fetch_add(1, Ordering::SeqCst);
    let (o, e) = (
        out_dir.join(format!("out{n}.txt")),
        out_dir.join(format!("err{n}.txt")),
    );
    cmd.stdout(std::fs::File::create(&o).expect("stdout file"))
        .stderr(std::fs::File::create(&e).expect("stderr file"));
    let mut child = cmd.spawn().expect("spawn brume");
    let start = Instant::now();
    let status = loop {
        if let Some(st) = child.try_wait().expect("wait for brume") {
            break Some(st);
        }
        if start.elapsed() >= deadline {
            kill_all(&tree(child.id() as i32));
            let _ = child.wait();
            break None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Outcome {
        status,
        stdout: std::fs::read_to_string(&o).unwrap_or_default(),
        stderr: std::fs::read_to_string(&e).unwrap_or_default(),
    }
}

fn kill_all(procs: &[Proc]) {
    for p in procs {
        if p.alive() {
            signal(p.pid, libc::SIGKILL);
        }
    }
    wait_until(Duration::from_secs(10), "killed processes to end", || {
        reap(procs);
        procs.iter().all(|p| !p.alive()).then_some(())
    });
}

/// Waits for those of `procs` that are this test process's (adopted) zombies.
fn reap(procs: &[Proc]) {
    let me = std::process::id() as i32;
    for p in procs {
        if Proc::read(p.pid).is_some_and(|q| q.start == p.start && q.ppid == me && q.state == 'Z') {
            // SAFETY: waitpid on one specific child with a null status pointer.
            unsafe { libc::waitpid(p.pid, std::ptr::null_mut(), libc::WNOHANG) };
        }
    }
}

fn mode(path: &Path) -> u32 {
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .permissions()
        .mode()
        & 0o777
}

#[test]
fn serve_refuses_unknown_options_and_every_command_has_help() {
    let dir = Scratch::new("cli");
    for bad in [
        vec!["serve", "--bogus"],
        vec!["serve", "-x"],
        vec!["serve", "--listen"],
        vec!["serve", "stray"],
    ] {
        let started = Instant::now();
        let out = run(brume(&dir.0, &bad), &dir.0, Duration::from_secs(2));
        let Some(st) = out.status else {
            panic!("brume {bad:?} was still running after 2 s: {}", out.all());
        };
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(!st.success(), "brume {bad:?} exited {st}: {}", out.all());
        let named = bad.last().expect("an argument");
        assert!(
            out.stderr.contains(named),
            "brume {bad:?}: the error does not name {named}: {}",
            out.all()
        );
        assert!(
            !out.stdout.contains("running"),
            "brume {bad:?} claimed to run: {}",
            out.all()
        );
    }

    let port = free_port();
    let listen = format!("127.0.0.1:{port}");
    for help in ["--help", "-h"] {
        let out = run(
            brume(&dir.0, &["serve", "--listen", &listen, help]),
            &dir.0,
            Duration::from_secs(2),
        );
        let Some(st) = out.status else {
            panic!(
                "brume serve {help} was still running after 2 s: {}",
                out.all()
            );
        };
        assert!(
            st.success(),
            "brume serve {help} exited {st}: {}",
            out.all()
        );
        for word in ["usage: brume serve", "--config", "--listen", "--rtmp"] {
            assert!(
                out.stdout.contains(word),
                "brume serve {help}: no {word:?} in the usage: {}",
                out.all()
            );
        }
        std::net::TcpListener::bind(&listen)
            .unwrap_or_else(|e| panic!("brume serve {help} left {listen} bound: {e}"));
    }
    assert!(
        !dir.0.join("brume.json").exists() && !dir.0.join("run").exists(),
        "a refused or help-only serve created files in its directory"
    );

    for role in [
        "serve",
        "devices",
        "bench",
        "controller",
        "listen",
        "input",
        "record",
        "push",
    ] {
        let out = run(
            brume(&dir.0, &[role, "--help"]),
            &dir.0,
            Duration::from_secs(5),
        );
        assert!(
            out.status.is_some_and(|s| s.success()),
            "brume {role} --help: {:?} {}",
            out.status,
            out.all()
        );
        assert!(
            out.stdout.starts_with(&format!("usage: brume {role}")),
            "brume {role} --help printed no usage: {}",
            out.all()
        );
    }
}

#[test]
fn busy_port_is_an_error_naming_the_address() {
    let dir = Scratch::new("busy");
    let held = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let busy = held.local_addr().expect("addr").to_string();
    let free = format!("127.0.0.1:{}", free_port());
    let config = dir.0.join("brume.json");
    std::fs::write(&config, SMALL_DEMO).expect("write the config");
    let config = config.to_str().expect("utf-8 path");
    for (http, rtmp) in [
        (busy.as_str(), free.as_str()),
        (free.as_str(), busy.as_str()),
    ] {
        let started = Instant::now();
        let out = run(
            brume(
                &dir.0,
                &[
                    "serve", "--config", config, "--listen", http, "--rtmp", rtmp,
                ],
            ),
            &dir.0,
            Duration::from_secs(2),
        );
        let Some(st) = out.status else {
            panic!(
                "brume serve on the busy {busy} was still running after 2 s: {}",
                out.all()
            );
        };
        assert!(started.elapsed() < Duration::from_secs(2));
        assert!(!st.success(), "exited {st}: {}", out.all());
        assert!(
            out.stderr.contains(&busy),
            "the error does not name {busy}: {}",
            out.all()
        );
        assert!(
            !out.stdout.contains("Brume is running"),
            "claimed to run on a busy port: {}",
            out.all()
        );
    }
    drop(held);
}

#[test]
fn second_serve_on_the_same_run_dir_is_refused_and_the_first_keeps_serving() {
    let server = Server::start(Some(SMALL_DEMO));
    server.login();
    server.wait_live("demo", Duration::from_secs(20));
    let before = server.tree();
    let controller = server.pids_of("controller");

    let mut second = brume(
        &server.dir,
        &[
            "serve",
            "--config",
            server.config_path.to_str().expect("utf-8 path"),
            "--listen",
            &format!("127.0.0.1:{}", free_port()),
            "--rtmp",
            &format!("127.0.0.1:{}", free_port()),
        ],
    );
    second.env("BRUME_SHM_PREFIX", &server.prefix);
    let out = run(second, &server.dir, Duration::from_secs(5));
    let Some(st) = out.status else {
        panic!(
            "a second serve on the same run dir kept running: {}",
            out.all()
        );
    };
    assert!(!st.success(), "the second serve exited {st}: {}", out.all());
    assert!(
        out.stderr.contains("another brume serve")
            && out.stderr.contains(&server.serve_pid().to_string()),
        "the refusal does not say who holds the run dir: {}",
        out.all()
    );

    // The first one is untouched: same processes, API and stream.
    for p in &before {
        assert!(p.alive(), "{:?} of the first serve died", p.argv);
    }
    assert_eq!(server.pids_of("controller"), controller);
    let v = server.wait_live("demo", Duration::from_secs(5));
    assert_eq!(v["status"]["state"], "live");
    let (st, _) = server.get("/api/v1/system");
    assert_eq!(
        st, 200,
        "the first serve's API after the refused second one"
    );
}

#[test]
fn sighup_leaves_the_tree_and_the_api_alone() {
    let server = Server::start(Some(SMALL_DEMO));
    server.login();
    server.wait_live("demo", Duration::from_secs(20));
    let before = server.tree();
    assert!(
        ["controller", "listen", "input"]
            .iter()
            .all(|r| !server.pids_of(r).is_empty()),
        "incomplete tree: {before:?}"
    );
    for _ in 0..3 {
        signal(server.serve_pid(), libc::SIGHUP);
        std::thread::sleep(Duration::from_millis(300));
    }
    std::thread::sleep(Duration::from_millis(500));
    for p in &before {
        assert!(p.alive(), "{:?} died after SIGHUP to serve", p.argv);
    }
    let (st, v) = server.get("/api/v1/system");
    assert_eq!(st, 200, "the API after SIGHUP: {v}");
    server.wait_live("demo", Duration::from_secs(5));
}

#[test]
fn admin_password_is_in_no_childs_environment() {
    let out = Scratch::new("env");
    let dump = out.0.join("exec-env.txt");
    let config = serde_json::json!({
        "streams": {"demo": {
            "source": {"type": "testsrc", "width": 320, "height": 180, "fps": 15, "bitrate_kbps": 300},
            "always_on": true,
            "processes": [{"name": "sink", "command": ["/bin/sh", "-c", "exec cat >/dev/null"], "no_output": true}]
        }},
        "triggers": [{"event": "stream.ready", "handler": {"type": "exec",
            "command": ["/bin/sh", "-c", format!("env > {}.tmp; mv {0}.tmp {0}; exec sleep 20", dump.display())],
            "timeout_ms": 60000}}]
    });
    let server = Server::start(Some(&config.to_string()));
    server.login();
    server.wait_live("demo", Duration::from_secs(20));
    let serve = server.serve_pid();
    // The whole tree: serve, controller, listener, input, the stream process and the
    // trigger handler (still sleeping).
    let procs = wait_until(
        Duration::from_secs(20),
        "the stream process and the trigger handler in the tree",
        || {
            let t = server.tree();
            let has = |a: &str| t.iter().any(|p| p.argv.first().is_some_and(|x| x == a));
            (has("cat") && has("sleep") && dump.exists()).then_some(t)
        },
    );
    let name = b"BRUME_ADMIN_PASSWORD";
    let value = PASSWORD.as_bytes();
    let mut checked = 0;
    for p in &procs {
        let Ok(environ) = std::fs::read(format!("/proc/{}/environ", p.pid)) else {
            continue;
        };
        checked += 1;
        assert!(
            http::find(&environ, value).is_none(),
            "the admin password is in the environment of {} {:?}",
            p.pid,
            p.argv
        );
        if p.pid != serve {
            assert!(
                http::find(&environ, name).is_none(),
                "BRUME_ADMIN_PASSWORD is in the environment of {} {:?}",
                p.pid,
                p.argv
            );
        }
    }
    assert!(
        checked >= 6,
        "read only {checked} environments of {procs:?}"
    );
    let handler_env = std::fs::read(&dump).expect("the trigger handler's environment");
    assert!(
        http::find(&handler_env, value).is_none() && http::find(&handler_env, name).is_none(),
        "the trigger handler got the admin password"
    );
}

fn status_with(port: u16, method: &str, path: &str, token: &str) -> u16 {
    let auth = format!("Bearer {token}");
    http::request(port, method, path, &[("Authorization", &auth)], None)
        .map(|r| r.status)
        .unwrap_or(0)
}

#[test]
fn session_survives_a_controller_kill_and_logout_still_revokes() {
    let server = Server::start(Some(SMALL_DEMO));
    let port = server.http_port;
    let kept = login_token(port);
    let ended = login_token(port);
    assert_eq!(status_with(port, "GET", "/api/v1/system", &kept), 200);
    assert_eq!(status_with(port, "POST", "/api/v1/logout", &ended), 204);
    assert_eq!(status_with(port, "GET", "/api/v1/system", &ended), 401);

    let old = server.pids_of("controller");
    assert_eq!(old.len(), 1, "one controller: {old:?}");
    let killed = Proc::read(old[0]).expect("the controller runs");
    signal(old[0], libc::SIGKILL);
    wait_until(
        Duration::from_secs(15),
        "serve to restart the controller",
        || {
            let now = server.pids_of("controller");
            (!killed.alive() && now.len() == 1 && now[0] != old[0]).then_some(())
        },
    );
    // 503 while the new controller starts; then the old session is still good.
    let st = wait_until(
        Duration::from_secs(15),
        "the new controller to answer",
        || {
            let st = status_with(port, "GET", "/api/v1/system", &kept);
            (st != 503 && st != 0).then_some(st)
        },
    );
    assert_eq!(
        st, 200,
        "the session did not survive the controller's restart"
    );
    assert_eq!(
        status_with(port, "GET", "/api/v1/system", &ended),
        401,
        "a logged-out session came back with the new controller"
    );
    assert_eq!(
        status_with(port, "GET", "/api/v1/system", "made-up-token"),
        401
    );
    // Logout still revokes, in the new controller.
    assert_eq!(status_with(port, "POST", "/api/v1/logout", &kept), 204);
    assert_eq!(status_with(port, "GET", "/api/v1/system", &kept), 401);
}

#[test]
fn config_and_session_files_are_owner_only() {
    // The harness writes brume.json with the default umask (0644 here); serve rewrites
    // it 0600 at start.
    let server = Server::start(Some(SMALL_DEMO));
    assert_eq!(mode(&server.config_path), 0o600, "brume.json mode");
    let token = login_token(server.http_port);
    let sessions = server.dir.join("brume.sessions.json");
    assert_eq!(mode(&sessions), 0o600, "session table mode");
    let table = std::fs::read_to_string(&sessions).expect("read the session table");
    assert!(
        !table.contains(&token),
        "the session table holds the token itself"
    );
    assert_eq!(mode(&server.dir.join("run")), 0o700, "run dir mode");
    // A configuration change is saved 0600 too.
    server.login();
    let (st, v) = server.put(
        "/api/v1/streams/demo",
        r#"{"source":{"type":"testsrc","width":320,"height":180,"fps":10,"bitrate_kbps":300},"always_on":true}"#,
    );
    assert!(st == 200 || st == 201, "PUT /api/v1/streams/demo: {st} {v}");
    assert_eq!(
        server.config_on_disk()["streams"]["demo"]["source"]["fps"],
        10
    );
    assert_eq!(
        mode(&server.config_path),
        0o600,
        "brume.json mode after a change"
    );
}

/// A `brume serve` of this test, on a given directory and ports.
fn spawn_serve(dir: &Path, prefix: &str, http_port: u16, rtmp_port: u16) -> Child {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(dir.join("serve.log"))
        .expect("open the log");
    let mut c = brume(
        dir,
        &[
            "serve",
            "--config",
            dir.join("brume.json").to_str().expect("utf-8 path"),
            "--listen",
            &format!("127.0.0.1:{http_port}"),
            "--rtmp",
            &format!("127.0.0.1:{rtmp_port}"),
        ],
    );
    c.env("BRUME_SHM_PREFIX", prefix)
        .env("BRUME_ADMIN_PASSWORD", PASSWORD)
        .stdout(log.try_clone().expect("log fd"))
        .stderr(log);
    c.spawn().expect("spawn brume serve")
}

fn wait_api(port: u16, child: &mut Child, dir: &Path) {
    wait_until(Duration::from_secs(30), "the API to answer", || {
        if let Ok(Some(st)) = child.try_wait() {
            panic!(
                "brume serve exited ({st}): {}",
                std::fs::read_to_string(dir.join("serve.log")).unwrap_or_default()
            );
        }
        http::request(port, "GET", "/api/v1/system", &[], None)
            .ok()
            .filter(|r| r.status == 401)
            .map(|_| ())
    });
}

#[test]
fn root_killed_alone_then_a_new_root_stops_the_old_tree() {
    let dir = Scratch::new("root");
    std::fs::write(dir.0.join("brume.json"), SMALL_DEMO).expect("write the config");
    let prefix = format!(
        "brumelife{}r{}t",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    );
    let (http_port, rtmp_port) = (free_port(), free_port());
    let mut first = spawn_serve(&dir.0, &prefix, http_port, rtmp_port);
    wait_api(http_port, &mut first, &dir.0);
    let old_tree = tree(first.id() as i32);
    let old: Vec<Proc> = old_tree
        .iter()
        .filter(|p| p.ppid == first.id() as i32)
        .cloned()
        .collect();
    assert_eq!(old.len(), 2, "controller and listener: {old_tree:?}");

    // The root alone: its controller and listener are left running.
    signal(first.id() as i32, libc::SIGKILL);
    let _ = first.wait();
    std::thread::sleep(Duration::from_millis(300));
    assert!(
        old.iter().all(Proc::alive),
        "the orphans ended on their own"
    );

    // A new root on the same directory and the same ports.
    let mut second = spawn_serve(&dir.0, &prefix, http_port, rtmp_port);
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        // The old processes are stopped (SIGTERM, 10 s, SIGKILL) before the new ones
        // start; until then the old listener and controller may still answer.
        wait_until(
            Duration::from_secs(20),
            "the old controller and listener to be stopped by the new root",
            || {
                reap(&old);
                old.iter().all(|p| !p.alive()).then_some(())
            },
        );
        wait_until(Duration::from_secs(20), "the new controller", || {
            let t = tree(second.id() as i32);
            t.iter().any(|p| p.role() == "controller").then_some(())
        });
        wait_api(http_port, &mut second, &dir.0);
        let t = tree(second.id() as i32);
        let controllers: Vec<&Proc> = t.iter().filter(|p| p.role() == "controller").collect();
        assert_eq!(controllers.len(), 1, "controllers: {controllers:?}");
        let token = login_token(http_port);
        assert_eq!(status_with(http_port, "GET", "/api/v1/system", &token), 200);
        let log = std::fs::read_to_string(dir.0.join("serve.log")).unwrap_or_default();
        assert!(
            log.contains("previous brume serve"),
            "the new root did not say it stopped the old processes: {log}"
        );
    }));
    // Clean up: the new tree with SIGTERM, anything left with SIGKILL.
    let new_tree = tree(second.id() as i32);
    signal(second.id() as i32, libc::SIGTERM);
    let deadline = Instant::now() + Duration::from_secs(15);
    while Instant::now() < deadline && second.try_wait().ok().flatten().is_none() {
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = second.kill();
    let _ = second.wait();
    let all: Vec<Proc> = old_tree.into_iter().chain(new_tree).collect();
    kill_all(&all);
    for f in harness::shm_files(&prefix) {
        let _ = std::fs::remove_file(f);
    }
    if let Err(e) = result {
        std::panic::resume_unwind(e);
    }
}

/// An AMF0 command message (type 20) on chunk stream 3, in one chunk (under the
/// default chunk size of 128 bytes).
fn rtmp_command(values: &[Vec<u8>]) -> Vec<u8> {
    let body: Vec<u8> = values.concat();
    assert!(body.len() <= 128, "one chunk only");
    let mut m = vec![0x03, 0, 0, 0];
    m.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
    m.push(20);
    m.extend_from_slice(&0u32.to_le_bytes());
    m.extend_from_slice(&body);
    m
}

fn amf_string(s: &str) -> Vec<u8> {
    let mut v = vec![0x02];
    v.extend_from_slice(&(s.len() as u16).to_be_bytes());
    v.extend_from_slice(s.as_bytes());
    v
}

fn amf_number(n: f64) -> Vec<u8> {
    let mut v = vec![0x00];
    v.extend_from_slice(&n.to_be_bytes());
    v
}

#[test]
fn rtmp_stream_name_cannot_forge_a_log_line() {
    use std::io::{Read, Write};
    let server = Server::start(Some(SMALL_DEMO));
    let mut s = std::net::TcpStream::connect(("127.0.0.1", server.rtmp_port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut c0c1 = vec![3u8];
    c0c1.extend(std::iter::repeat_n(0x5a, 1536));
    s.write_all(&c0c1).expect("send C0+C1");
    let mut s0s1s2 = vec![0u8; 1 + 2 * 1536];
    s.read_exact(&mut s0s1s2).expect("S0+S1+S2");
    s.write_all(&s0s1s2[1..1537]).expect("send C2");
    let mut app = vec![0x03];
    app.extend_from_slice(&3u16.to_be_bytes());
    app.extend_from_slice(b"app");
    app.extend(amf_string("live"));
    app.extend_from_slice(&[0, 0, 9]);
    s.write_all(&rtmp_command(&[
        amf_string("connect"),
        amf_number(1.0),
        app,
    ]))
    .expect("send connect");
    let forged = "nope\n12:00:00.000 serve[1]:  INFO FORGED line";
    s.write_all(&rtmp_command(&[
        amf_string("publish"),
        amf_number(0.0),
        vec![0x05],
        amf_string(forged),
        amf_string("live"),
    ]))
    .expect("send publish");
    let _ = http::read_until_close(&mut s, Duration::from_secs(10));
    let log = wait_until(Duration::from_secs(10), "the rejection in the log", || {
        let log = server.log();
        log.contains("publisher rejected").then_some(log)
    });
    assert!(
        !log.lines().any(|l| l.starts_with("12:00:00.000 serve[1]")),
        "a publisher's stream name forged a log line:\n{log}"
    );
    assert!(
        log.contains(r"nope\n12:00:00.000"),
        "the name is not in the log, escaped:\n{log}"
    );
}
