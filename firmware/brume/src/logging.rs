//! Structured logs (tracing) to stderr, one line per event, tagged with the role and
//! pid. The controller also keeps the most recent lines in memory for the API.

use std::collections::VecDeque;
use std::io::Write;
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;
use std::sync::Mutex;

const KEEP: usize = 1000;
static RECENT: Mutex<VecDeque<String>> = Mutex::new(VecDeque::new());
/// Other roles forward their lines to the controller (best effort, never blocking).
static FORWARD: Mutex<Option<(UnixDatagram, PathBuf)>> = Mutex::new(None);

/// Starts logging for `role`. Level from `BRUME_LOG` (error, warn, info, debug, trace).
pub fn init(role: &'static str) {
    let level = std::env::var("BRUME_LOG")
        .ok()
        .and_then(|l| l.parse().ok())
        .unwrap_or(tracing::Level::INFO);
    let _ = tracing_subscriber::fmt()
        .with_max_level(level)
        .with_ansi(false)
        .with_target(false)
        .without_time()
        .with_writer(move || Tee { role })
        .try_init();
    if role != "controller" && std::env::var_os(crate::env::RUN_DIR).is_some() {
        let target = crate::env::Env::from_env().controller_socket();
        if let Ok(sock) = UnixDatagram::unbound() {
            let _ = sock.set_nonblocking(true);
            *FORWARD.lock().unwrap_or_else(|p| p.into_inner()) = Some((sock, target));
        }
    }
}

/// The socket that forwards this process's lines to the controller, if any (a child
/// forked from this process keeps it open and logs through it).
pub fn forward_fd() -> Option<std::os::fd::RawFd> {
    use std::os::fd::AsRawFd;
    let f = FORWARD.lock().unwrap_or_else(|p| p.into_inner());
    f.as_ref().map(|(sock, _)| sock.as_raw_fd())
}

/// The most recent log lines of this process, oldest first.
pub fn recent(limit: usize) -> Vec<String> {
    let r = RECENT.lock().unwrap_or_else(|p| p.into_inner());
    r.iter().rev().take(limit).rev().cloned().collect()
}

/// Records a line from another process (a child's crash report) in the recent list.
pub fn remember(line: String) {
    let mut r = RECENT.lock().unwrap_or_else(|p| p.into_inner());
    if r.len() >= KEEP {
        r.pop_front();
    }
    r.push_back(line);
}

struct Tee {
    role: &'static str,
}

impl Write for Tee {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let line = String::from_utf8_lossy(buf);
        let line = format!(
            "{} {}[{}]: {}",
            now(),
            self.role,
            std::process::id(),
            line.trim_end()
        );
        let _ = writeln!(std::io::stderr(), "{line}");
        if let Some((sock, target)) = &*FORWARD.lock().unwrap_or_else(|p| p.into_inner()) {
            let mut msg = Vec::with_capacity(line.len() + 1);
            msg.push(b'L');
            msg.extend_from_slice(line.as_bytes());
            let _ = sock.send_to(&msg, target);
        }
        remember(line);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn now() -> String {
    let t = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    let s = t.as_secs();
    format!(
        "{:02}:{:02}:{:02}.{:03}",
        s / 3600 % 24,
        s / 60 % 60,
        s % 60,
        t.subsec_millis()
    )
}
