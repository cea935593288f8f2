//! Starts and stops real `brume serve` trees for the end-to-end tests: free ports, a
//! fresh directory, a private shared-memory prefix, the server log in a file; and
//! finds the processes of the tree through /proc.

use crate::http::{self, Reply};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

pub const PASSWORD: &str = "e2e-admin-pw";

/// A small always-on synthetic stream, to spare the CPUs.
pub const SMALL_DEMO: &str = r#"{"streams":{"demo":{"source":{"type":"testsrc","width":320,"height":180,"fps":15,"bitrate_kbps":300},"always_on":true}}}"#;

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// Polls `f` every 100 ms until it gives a value; panics naming `what` after `timeout`.
pub fn wait_until<T>(timeout: Duration, what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = f() {
            return v;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// One process as seen in /proc: identity (pid + start time), parent, state, argv.
#[derive(Clone, Debug)]
pub struct Proc {
    pub pid: i32,
    pub ppid: i32,
    pub state: char,
    pub start: u64,
    pub argv: Vec<String>,
}

impl Proc {
    pub fn read(pid: i32) -> Option<Proc> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        let close = stat.rfind(')')?;
        let fields: Vec<&str> = stat[close + 1..].split_ascii_whitespace().collect();
        // After "(comm)": state is field 3, ppid 4, starttime 22 (1-based).
        let state = fields.first()?.chars().next()?;
        let ppid = fields.get(1)?.parse().ok()?;
        let start = fields.get(19)?.parse().ok()?;
        let argv = std::fs::read(format!("/proc/{pid}/cmdline"))
            .unwrap_or_default()
            .split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect();
        Some(Proc {
            pid,
            ppid,
            state,
            start,
            argv,
        })
    }

    /// The brume role: "serve", "controller", "listen", "input".
    pub fn role(&self) -> &str {
        self.argv.get(1).map(String::as_str).unwrap_or("")
    }

    /// True while this very process (same pid and start time) exists and is not a
    /// zombie.
    pub fn alive(&self) -> bool {
        Proc::read(self.pid).is_some_and(|p| p.start == self.start && p.state != 'Z')
    }
}

/// Every process on the machine.
pub fn all_procs() -> Vec<Proc> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_string_lossy().parse::<i32>().ok())
        .filter_map(Proc::read)
        .collect()
}

/// `root` and all its descendants that are not zombies.
pub fn tree(root: i32) -> Vec<Proc> {
    let procs = all_procs();
    let mut out: Vec<Proc> = procs
        .iter()
        .filter(|p| p.pid == root && p.state != 'Z')
        .cloned()
        .collect();
    let mut i = 0;
    while i < out.len() {
        let parent = out[i].pid;
        out.extend(
            procs
                .iter()
                .filter(|p| p.ppid == parent && p.state != 'Z')
                .cloned(),
        );
        i += 1;
    }
    out
}

pub fn signal(pid: i32, sig: i32) {
    // SAFETY: kill takes no pointers.
    unsafe { libc::kill(pid, sig) };
}

/// Makes this test process the subreaper of the servers' trees, so processes orphaned
/// by a SIGKILL come to us and are reaped (see `reap`), not left as zombies.
fn become_subreaper() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes no pointers.
        unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    });
}

/// Reaps the given processes if they are our (adopted) zombies. Only these pids: the
/// other threads' children are theirs to wait for.
fn reap(procs: &[Proc]) {
    let me = std::process::id() as i32;
    for p in procs {
        if Proc::read(p.pid).is_some_and(|q| q.start == p.start && q.ppid == me && q.state == 'Z') {
            // SAFETY: waitpid on one specific child with a null status pointer.
            unsafe { libc::waitpid(p.pid, std::ptr::null_mut(), libc::WNOHANG) };
        }
    }
}

/// Files in /dev/shm that belong to a server with this prefix.
pub fn shm_files(prefix: &str) -> Vec<PathBuf> {
    let Ok(dir) = std::fs::read_dir("/dev/shm") else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = dir
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(prefix))
        .map(|e| e.path())
        .collect();
    v.sort();
    v
}

pub struct Server {
    pub dir: PathBuf,
    pub config_path: PathBuf,
    pub log_path: PathBuf,
    pub prefix: String,
    pub http_port: u16,
    pub rtmp_port: u16,
    /// RTSP viewers: rtsp://127.0.0.1:PORT/<stream>.
    pub rtsp_port: u16,
    child: Option<Child>,
    token: Mutex<Option<String>>,
    /// Every process of the tree ever seen (for the final kill and reaping).
    seen: Mutex<Vec<Proc>>,
    /// Leave the directory and the shared memory alone on drop.
    keep: bool,
}

/// What a server killed outright leaves behind, to start the next one on.
pub struct Leftovers {
    pub dir: PathBuf,
    pub prefix: String,
    pub procs: Vec<Proc>,
    restarted: bool,
}

impl Leftovers {
    /// Starts a new server on the same directory, config and shared-memory prefix.
    pub fn restart(mut self) -> Server {
        self.restarted = true;
        Server::start_in(self.dir.clone(), self.prefix.clone())
    }
}

fn free_ports() -> (u16, u16) {
    let a = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    let b = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    (
        a.local_addr().expect("addr").port(),
        b.local_addr().expect("addr").port(),
    )
}

impl Server {
    /// Starts a server on `config_json` (None: brume creates its default config).
    pub fn start(config_json: Option<&str>) -> Server {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let dir = std::env::temp_dir().join(format!("brume-e2e-{pid}-{n}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the test directory");
        let prefix = format!("brumee2e{pid}x{n}t");
        if let Some(c) = config_json {
            std::fs::write(dir.join("brume.json"), c).expect("write the config");
        }
        Server::start_in(dir, prefix)
    }

    /// Starts a server on `config_json` without `BRUME_ADMIN_PASSWORD`: a first run,
    /// where the admin password is set with the setup code (see `setup_code`).
    pub fn start_first_run(config_json: &str) -> Server {
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let pid = std::process::id();
        let dir = std::env::temp_dir().join(format!("brume-e2e-{pid}-{n}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create the test directory");
        std::fs::write(dir.join("brume.json"), config_json).expect("write the config");
        Server::launch(dir, format!("brumee2e{pid}x{n}t"), None)
    }

    /// The first run's one-time setup code (`run/setup-code`).
    pub fn setup_code(&self) -> String {
        std::fs::read_to_string(self.dir.join("run/setup-code"))
            .expect("the setup-code file")
            .trim()
            .to_string()
    }

    /// Starts a server in an existing directory (its brume.json) with a given prefix.
    pub fn start_in(dir: PathBuf, prefix: String) -> Server {
        Server::launch(dir, prefix, Some(PASSWORD))
    }

    fn launch(dir: PathBuf, prefix: String, password: Option<&str>) -> Server {
        ensure_tools();
        become_subreaper();
        let config_path = dir.join("brume.json");
        let log_path = dir.join("serve.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .expect("open the server log");
        let (http_port, rtmp_port) = free_ports();
        let rtsp_port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_brume"));
        match password {
            Some(p) => cmd.env("BRUME_ADMIN_PASSWORD", p),
            None => cmd.env_remove("BRUME_ADMIN_PASSWORD"),
        };
        let child = cmd
            .arg("serve")
            .arg("--config")
            .arg(&config_path)
            .args(["--listen", &format!("127.0.0.1:{http_port}")])
            .args(["--rtmp", &format!("127.0.0.1:{rtmp_port}")])
            .args(["--rtsp", &format!("127.0.0.1:{rtsp_port}")])
            .env("BRUME_SHM_PREFIX", &prefix)
            .env_remove("BRUME_SHM_DIR")
            .env_remove("BRUME_RUN_DIR")
            .env_remove("BRUME_CONFIG")
            .stdin(Stdio::null())
            .stdout(log.try_clone().expect("log fd"))
            .stderr(log)
            .spawn()
            .expect("spawn brume serve");
        let mut s = Server {
            dir,
            config_path,
            log_path,
            prefix,
            http_port,
            rtmp_port,
            rtsp_port,
            child: Some(child),
            token: Mutex::new(None),
            seen: Mutex::new(Vec::new()),
            keep: false,
        };
        s.wait_http();
        s
    }

    fn wait_http(&mut self) {
        let port = self.http_port;
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(Ok(Some(st))) = self.child.as_mut().map(|c| c.try_wait()) {
                panic!(
                    "brume serve exited during start-up ({st}); log:\n{}",
                    self.log()
                );
            }
            // Any HTTP answer from the API (401 without a token) means the listener
            // and the controller are both up.
            if let Ok(r) = http::request(port, "GET", "/api/v1/system", &[], None) {
                if r.status == 401 || r.status == 200 {
                    return;
                }
            }
            if Instant::now() >= deadline {
                panic!("the HTTP port {port} did not answer within 30 s");
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    pub fn serve_pid(&self) -> i32 {
        self.child.as_ref().expect("server running").id() as i32
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// The running tree (serve and every descendant); remembered for the clean-up.
    pub fn tree(&self) -> Vec<Proc> {
        let Some(c) = &self.child else {
            return Vec::new();
        };
        let t = tree(c.id() as i32);
        let mut seen = self.seen.lock().expect("seen");
        for p in &t {
            if !seen.iter().any(|q| q.pid == p.pid && q.start == p.start) {
                seen.push(p.clone());
            }
        }
        t
    }

    /// Pids of a role: "controller" and "listen" (children of serve), "input"
    /// (children of the controller), "worker" (children of the listener).
    pub fn pids_of(&self, role: &str) -> Vec<i32> {
        let t = self.tree();
        let serve = self.serve_pid();
        let of = |parent_role: &str, parent: i32| -> Vec<i32> {
            let parents: Vec<i32> = t
                .iter()
                .filter(|p| p.ppid == parent && p.role() == parent_role)
                .map(|p| p.pid)
                .collect();
            parents
        };
        match role {
            "controller" | "listen" => of(role, serve),
            "input" => {
                let ctl = of("controller", serve);
                t.iter()
                    .filter(|p| ctl.contains(&p.ppid) && p.role() == "input")
                    .map(|p| p.pid)
                    .collect()
            }
            "worker" => {
                let l = of("listen", serve);
                t.iter()
                    .filter(|p| l.contains(&p.ppid))
                    .map(|p| p.pid)
                    .collect()
            }
            _ => panic!("unknown role {role}"),
        }
    }

    // ---- HTTP and the API ----

    pub fn raw(&self, method: &str, path: &str, body: Option<&str>) -> Reply {
        let token = self.token.lock().expect("token").clone();
        let mut headers: Vec<(String, String)> = Vec::new();
        if let Some(t) = token {
            headers.push(("Authorization".into(), format!("Bearer {t}")));
        }
        if body.is_some() {
            headers.push(("Content-Type".into(), "application/json".into()));
        }
        let h: Vec<(&str, &str)> = headers
            .iter()
            .map(|(a, b)| (a.as_str(), b.as_str()))
            .collect();
        http::request(self.http_port, method, path, &h, body.map(str::as_bytes))
            .unwrap_or_else(|e| panic!("{method} {path}: {e}"))
    }

    fn json(&self, method: &str, path: &str, body: Option<&str>) -> (u16, Value) {
        let r = self.raw(method, path, body);
        let v = if r.body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&r.body).unwrap_or_else(|e| {
                panic!(
                    "{method} {path}: {} answered a body that is not JSON ({e}): {:?}",
                    r.status,
                    String::from_utf8_lossy(&r.body)
                )
            })
        };
        (r.status, v)
    }

    pub fn get(&self, path: &str) -> (u16, Value) {
        self.json("GET", path, None)
    }
    pub fn post(&self, path: &str, body: &str) -> (u16, Value) {
        self.json("POST", path, Some(body))
    }
    pub fn put(&self, path: &str, body: &str) -> (u16, Value) {
        self.json("PUT", path, Some(body))
    }
    pub fn delete(&self, path: &str) -> (u16, Value) {
        self.json("DELETE", path, None)
    }

    /// Logs in as the admin; later API calls carry the token.
    pub fn login(&self) {
        let t = login_token(self.http_port);
        *self.token.lock().expect("token") = Some(t);
    }

    /// The API's record of the connection from `local` (a viewer's address).
    pub fn connection_of(&self, local: &str) -> Option<Value> {
        let (st, v) = self.get("/api/v1/connections");
        assert_eq!(st, 200, "GET /api/v1/connections: {v}");
        v["connections"]
            .as_array()?
            .iter()
            .find(|c| c["peer"] == local)
            .cloned()
    }

    /// GET /api/v1/streams/<name> (must exist).
    pub fn stream(&self, name: &str) -> Value {
        let (st, v) = self.get(&format!("/api/v1/streams/{name}"));
        assert_eq!(st, 200, "GET /api/v1/streams/{name}: {v}");
        v
    }

    /// Waits until the stream's state is "live" (logged in first).
    pub fn wait_live(&self, name: &str, timeout: Duration) -> Value {
        wait_until(timeout, &format!("stream {name} to be live"), || {
            let v = self.stream(name);
            (v["status"]["state"] == "live").then_some(v)
        })
    }

    /// The controller's recent log lines joined with the server log file.
    pub fn all_logs(&self) -> String {
        let (st, v) = self.get("/api/v1/logs?limit=1000");
        let mut text = String::new();
        if st == 200 {
            for l in v["lines"].as_array().into_iter().flatten() {
                text.push_str(l.as_str().unwrap_or(""));
                text.push('\n');
            }
        }
        text.push_str(&self.log());
        text
    }

    /// The config file on disk, parsed.
    pub fn config_on_disk(&self) -> Value {
        let bytes = std::fs::read(&self.config_path).expect("read the config file");
        serde_json::from_slice(&bytes).unwrap_or_else(|e| {
            panic!(
                "the config file no longer parses ({e}): {}",
                String::from_utf8_lossy(&bytes)
            )
        })
    }

    // ---- stopping ----

    /// SIGTERM to serve, then waits (bounded) for it to exit; returns its status.
    pub fn terminate(&mut self, timeout: Duration) -> ExitStatus {
        let tree = self.tree();
        let child = self.child.as_mut().expect("server running");
        signal(child.id() as i32, libc::SIGTERM);
        let deadline = Instant::now() + timeout;
        let st = loop {
            if let Some(st) = child.try_wait().expect("wait for serve") {
                break st;
            }
            if Instant::now() >= deadline {
                panic!("brume serve did not exit within {timeout:?} of SIGTERM");
            }
            std::thread::sleep(Duration::from_millis(50));
        };
        self.child = None;
        reap(&tree);
        st
    }

    /// SIGKILLs every process of the tree at once and waits until they are gone. The
    /// directory and the shared memory are left as they are.
    pub fn kill_tree(mut self) -> Leftovers {
        let procs = self.tree();
        for p in &procs {
            signal(p.pid, libc::SIGKILL);
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
        wait_until(
            Duration::from_secs(10),
            "the killed tree to be gone",
            || {
                reap(&procs);
                procs.iter().all(|p| !p.alive()).then_some(())
            },
        );
        self.keep = true;
        Leftovers {
            dir: self.dir.clone(),
            prefix: self.prefix.clone(),
            procs,
            restarted: false,
        }
    }

    fn stop_for_drop(&mut self) {
        let Some(child) = self.child.as_ref() else {
            return;
        };
        let serve = child.id() as i32;
        self.tree();
        signal(serve, libc::SIGTERM);
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut exited = false;
        while Instant::now() < deadline {
            if let Some(Ok(Some(_))) = self.child.as_mut().map(|c| c.try_wait()) {
                exited = true;
                break;
            }
            self.tree();
            std::thread::sleep(Duration::from_millis(50));
        }
        let seen = self.seen.lock().expect("seen").clone();
        if !exited {
            eprintln!("brume serve did not stop within 10 s of SIGTERM: killing its tree");
        }
        for p in &seen {
            if p.alive() {
                signal(p.pid, libc::SIGKILL);
            }
        }
        if let Some(mut c) = self.child.take() {
            let _ = c.wait();
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            reap(&seen);
            if seen.iter().all(|p| !p.alive()) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop_for_drop();
        if self.keep {
            return;
        }
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            let from = lines.len().saturating_sub(400);
            eprintln!(
                "----- brume serve log ({}; last {} lines) -----\n{}\n----- end of log -----",
                self.log_path.display(),
                lines.len() - from,
                lines[from..].join("\n")
            );
        }
        remove_shm(&self.prefix);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Cleans up after a server that was killed and not restarted.
impl Drop for Leftovers {
    fn drop(&mut self) {
        reap(&self.procs);
        if self.restarted {
            return;
        }
        remove_shm(&self.prefix);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn remove_shm(prefix: &str) {
    for f in shm_files(&format!("{prefix}-"))
        .into_iter()
        .chain(shm_files(&format!("{prefix}.")))
    {
        let _ = std::fs::remove_file(f);
    }
}

pub fn ffmpeg() -> &'static str {
    "/usr/bin/ffmpeg"
}
pub fn ffprobe() -> &'static str {
    "/usr/bin/ffprobe"
}

fn ensure_tools() {
    for t in [ffmpeg(), ffprobe()] {
        assert!(
            Path::new(t).exists(),
            "{t} is missing: the end-to-end tests need ffmpeg and ffprobe (apt-get install ffmpeg)"
        );
    }
}

/// A new admin session on its own connection: its bearer token (for raw requests).
pub fn login_token(port: u16) -> String {
    let body = serde_json::json!({ "password": PASSWORD }).to_string();
    let r = http::request(
        port,
        "POST",
        "/api/v1/login",
        &[("Content-Type", "application/json")],
        Some(body.as_bytes()),
    )
    .expect("POST /api/v1/login");
    assert_eq!(
        r.status,
        200,
        "login failed: {}",
        String::from_utf8_lossy(&r.body)
    );
    let v: Value = serde_json::from_slice(&r.body).expect("login JSON");
    v["token"].as_str().expect("a token").to_string()
}
