//! Recordings: the recorders' angel (one `brume record <stream>` per active recording,
//! restarted with back-off like an input) and the recordings directory (list, read,
//! delete) behind the API.

use super::{supervisor, AngelTask, Shared};
use crate::angel::{self, Backoff, Verdict};
use crate::recorder::{EXIT_DISK_FULL, EXIT_WRITE_ERROR};
use serde_json::{json, Value};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::AsyncBufReadExt;
use tokio::sync::watch;

/// What the controller knows about one stream's recording.
#[derive(Default)]
pub struct RecState {
    pub active: bool,
    /// The file being written, relative to the recordings directory.
    pub file: Option<String>,
    /// When the recording was started (ms since the Unix epoch).
    pub since_ms: Option<u64>,
    /// Why the recording stopped on its own ("disk full", ...).
    pub error: Option<String>,
    pub pid: Option<u32>,
    pub restarts: u64,
    angel: Option<AngelTask>,
}

impl RecState {
    fn running(&self) -> bool {
        self.angel.as_ref().is_some_and(AngelTask::running)
    }

    pub fn json(&self) -> Value {
        json!({
            "active": self.active,
            "file": self.file,
            "since_ms": self.since_ms,
            "error": self.error,
            "pid": self.pid,
            "restarts": self.restarts,
        })
    }
}

/// The recording state of `stream` as JSON (inactive if it was never recorded).
pub fn status(state: &Shared, stream: &str) -> Value {
    state
        .recordings
        .lock()
        .expect("recordings lock")
        .get(stream)
        .map(RecState::json)
        .unwrap_or_else(|| RecState::default().json())
}

/// The recordings directory of the current configuration.
pub fn dir(state: &Shared) -> PathBuf {
    state
        .config
        .lock()
        .expect("config lock")
        .recording
        .dir_for(&state.env.config)
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

fn update(state: &Shared, stream: &str, f: impl FnOnce(&mut RecState)) {
    if let Some(e) = state
        .recordings
        .lock()
        .expect("recordings lock")
        .get_mut(stream)
    {
        f(e);
    }
}

/// Starts recording `stream` (and its input, if it runs on demand) unless it records.
pub fn start(state: &Shared, stream: &str) {
    supervisor::demand(state, stream);
    let mut recs = state.recordings.lock().expect("recordings lock");
    let e = recs.entry(stream.to_string()).or_default();
    if e.running() {
        return;
    }
    let (st, name) = (state.clone(), stream.to_string());
    *e = RecState {
        active: true,
        since_ms: Some(now_ms()),
        angel: Some(AngelTask::spawn(|stop| run(st, name, stop))),
        ..RecState::default()
    };
    tracing::info!(stream = %stream, "recording started");
}

/// Stops recording `stream` and waits for the recorder to finish its file.
pub async fn stop(state: &Shared, stream: &str) {
    let task = {
        let mut recs = state.recordings.lock().expect("recordings lock");
        let Some(e) = recs.get_mut(stream) else {
            return;
        };
        e.angel.take().map(AngelTask::stop)
    };
    if let Some(t) = task {
        let _ = t.await;
        tracing::info!(stream = %stream, "recording stopped");
    }
    update(state, stream, |e| {
        e.active = false;
        e.pid = None;
    });
}

/// Starts the recordings of streams configured with `"record": true` (not those that
/// stopped on an error: they wait for an operator).
pub fn start_configured(state: &Shared) {
    let names: Vec<String> = state
        .config
        .lock()
        .expect("config lock")
        .streams
        .iter()
        .filter(|(_, s)| s.record)
        .map(|(n, _)| n.clone())
        .collect();
    for n in names {
        let failed = state
            .recordings
            .lock()
            .expect("recordings lock")
            .get(&n)
            .is_some_and(|e| e.error.is_some() && !e.active);
        if !failed {
            start(state, &n);
        }
    }
}

pub async fn stop_all(state: &Shared) {
    let names: Vec<String> = state
        .recordings
        .lock()
        .expect("recordings lock")
        .keys()
        .cloned()
        .collect();
    for n in names {
        stop(state, &n).await;
    }
}

/// Stops the recording with `error` (it is not restarted).
fn stopped(state: &Shared, stream: &str, error: String) {
    update(state, stream, |e| {
        e.active = false;
        e.pid = None;
        e.error = Some(error);
    });
}

async fn run(state: Shared, stream: String, mut stop: watch::Receiver<bool>) {
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            return stopped(
                &state,
                &stream,
                format!("cannot find the brume executable: {e}"),
            )
        }
    };
    let mut backoff = Backoff::default();
    loop {
        let started = Instant::now();
        let (dir, segment_s) = {
            let c = state.config.lock().expect("config lock");
            (
                c.recording.dir_for(&state.env.config),
                c.recording.segment_s,
            )
        };
        let mut cmd = tokio::process::Command::new(&exe);
        cmd.arg("record")
            .arg(&stream)
            .arg("--dir")
            .arg(&dir)
            .arg("--segment-s")
            .arg(segment_s.to_string())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped());
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(stream = %stream, error = %e, "cannot start the recorder");
                return stopped(&state, &stream, format!("cannot start the recorder: {e}"));
            }
        };
        let pid = child.id();
        update(&state, &stream, |e| e.pid = pid);
        let mut lines = child
            .stdout
            .take()
            .map(|o| tokio::io::BufReader::new(o).lines());
        let mut error: Option<String> = None;
        let status = loop {
            tokio::select! {
                line = async {
                    match &mut lines {
                        Some(l) => l.next_line().await,
                        None => std::future::pending().await,
                    }
                } => match line {
                    Ok(Some(l)) => {
                        if let Some(f) = l.strip_prefix("file ") {
                            update(&state, &stream, |e| e.file = Some(f.to_string()));
                        } else if let Some(m) = l.strip_prefix("error ") {
                            error = Some(m.to_string());
                        }
                    }
                    _ => {
                        lines = None;
                    }
                },
                st = child.wait() => break st.ok(),
                _ = stop.changed() => {
                    if let Some(pid) = pid {
                        // SAFETY: kill takes no pointers.
                        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
                    }
                    match tokio::time::timeout(Duration::from_secs(10), child.wait()).await {
                        Ok(st) => break st.ok(),
                        Err(_) => {
                            let _ = child.kill().await;
                            break child.wait().await.ok();
                        }
                    }
                }
            }
        };
        // Lines written just before the exit.
        if let Some(l) = &mut lines {
            while let Ok(Ok(Some(line))) =
                tokio::time::timeout(Duration::from_millis(200), l.next_line()).await
            {
                if let Some(m) = line.strip_prefix("error ") {
                    error = Some(m.to_string());
                }
            }
        }
        if *stop.borrow() {
            return;
        }
        let code = status.and_then(|s| s.code());
        if code == Some(EXIT_DISK_FULL) {
            return stopped(&state, &stream, "disk full".into());
        }
        if code == Some(EXIT_WRITE_ERROR) {
            let e = error.unwrap_or_else(|| "write error".into());
            return stopped(&state, &stream, e);
        }
        let how = status
            .map(angel::describe)
            .unwrap_or_else(|| "ended".into());
        tracing::error!(stream = %stream, status = %how, "recorder crashed");
        let verdict = backoff.on_crash(Instant::now(), started.elapsed());
        let total = backoff.total;
        update(&state, &stream, |e| {
            e.pid = None;
            e.restarts = total;
        });
        match verdict {
            Verdict::Restart(d) => {
                tokio::select! {
                    _ = tokio::time::sleep(d) => {}
                    _ = stop.changed() => return,
                }
            }
            Verdict::GiveUp => {
                let reason = format!(
                    "the recorder crashed {} times within {} s (last: {how})",
                    angel::LOOP_CRASHES,
                    angel::LOOP_WINDOW.as_secs()
                );
                tracing::error!(stream = %stream, reason = %reason, "recording failed");
                return stopped(&state, &stream, reason);
            }
        }
    }
}

/// A path inside the recordings directory from an API path: relative, no `..`, `.`
/// or empty components. None if it is not one.
pub fn resolve(dir: &Path, rel: &str) -> Option<PathBuf> {
    if rel.is_empty() || rel.contains('\0') || rel.contains('\\') || rel.starts_with('/') {
        return None;
    }
    if rel
        .split('/')
        .any(|c| c.is_empty() || c == "." || c == "..")
    {
        return None;
    }
    let p = Path::new(rel);
    if !p.components().all(|c| matches!(c, Component::Normal(_))) {
        return None;
    }
    Some(dir.join(p))
}

/// Every recording under `dir` (`<stream>/<date>/<file>.mp4`), oldest first.
pub fn list(dir: &Path) -> Vec<Value> {
    let mut out = Vec::new();
    let entries = |p: &Path| -> Vec<(String, PathBuf)> {
        let mut v: Vec<(String, PathBuf)> = std::fs::read_dir(p)
            .map(|rd| {
                rd.filter_map(Result::ok)
                    .filter_map(|e| Some((e.file_name().into_string().ok()?, e.path())))
                    .collect()
            })
            .unwrap_or_default();
        v.sort();
        v
    };
    for (stream, sp) in entries(dir) {
        if !sp.is_dir() {
            continue;
        }
        for (date, dp) in entries(&sp) {
            if !dp.is_dir() {
                continue;
            }
            for (name, fp) in entries(&dp) {
                let Ok(meta) = std::fs::metadata(&fp) else {
                    continue;
                };
                if !meta.is_file() || !name.ends_with(".mp4") {
                    continue;
                }
                // <stream>-HHMMSS[-n].mp4
                let hms = name
                    .strip_prefix(&format!("{stream}-"))
                    .and_then(|r| r.get(..6))
                    .filter(|t| t.bytes().all(|b| b.is_ascii_digit()));
                let start = hms.map(|t| format!("{date}T{}:{}:{}Z", &t[..2], &t[2..4], &t[4..]));
                let modified_ms = meta
                    .modified()
                    .ok()
                    .and_then(|m| m.duration_since(UNIX_EPOCH).ok())
                    .map(|d| d.as_millis() as u64);
                out.push(json!({
                    "stream": stream,
                    "path": format!("{stream}/{date}/{name}"),
                    "size": meta.len(),
                    "start": start,
                    "modified_ms": modified_ms,
                }));
            }
        }
    }
    out
}

/// True if `rel` is the file an active recording writes.
pub fn in_use(state: &Shared, rel: &str) -> bool {
    state
        .recordings
        .lock()
        .expect("recordings lock")
        .values()
        .any(|e| e.active && e.file.as_deref() == Some(rel))
}

/// A parsed `Range` header for a file of `size` bytes: Ok(None) for the whole file,
/// Ok(Some((first, last))) for one satisfiable range, Err(()) if unsatisfiable.
/// Malformed or multi-range headers are ignored (the whole file is sent).
#[allow(clippy::result_unit_err)]
pub fn parse_range(header: Option<&str>, size: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = header.and_then(|h| h.trim().strip_prefix("bytes=")) else {
        return Ok(None);
    };
    if spec.contains(',') {
        return Ok(None);
    }
    let Some((a, b)) = spec.trim().split_once('-') else {
        return Ok(None);
    };
    let (a, b) = (a.trim(), b.trim());
    let range = if a.is_empty() {
        let Ok(n) = b.parse::<u64>() else {
            return Ok(None);
        };
        if n == 0 || size == 0 {
            return Err(());
        }
        (size.saturating_sub(n), size - 1)
    } else {
        let Ok(first) = a.parse::<u64>() else {
            return Ok(None);
        };
        let last = if b.is_empty() {
            size.saturating_sub(1)
        } else {
            match b.parse::<u64>() {
                Ok(l) if l >= first => l.min(size.saturating_sub(1)),
                _ => return Ok(None),
            }
        };
        if first >= size {
            return Err(());
        }
        (first, last)
    };
    Ok(Some(range))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_stay_inside() {
        let d = Path::new("/rec");
        assert_eq!(
            resolve(d, "demo/2024-01-01/demo-120000.mp4"),
            Some(PathBuf::from("/rec/demo/2024-01-01/demo-120000.mp4"))
        );
        for bad in [
            "",
            "/etc/passwd",
            "../x",
            "demo/../../x",
            "demo//x",
            "./x",
            "a\\..\\b",
        ] {
            assert_eq!(resolve(d, bad), None, "{bad}");
        }
    }

    #[test]
    fn ranges() {
        assert_eq!(parse_range(None, 100), Ok(None));
        assert_eq!(parse_range(Some("bytes=0-9"), 100), Ok(Some((0, 9))));
        assert_eq!(parse_range(Some("bytes=90-"), 100), Ok(Some((90, 99))));
        assert_eq!(parse_range(Some("bytes=-10"), 100), Ok(Some((90, 99))));
        assert_eq!(parse_range(Some("bytes=50-500"), 100), Ok(Some((50, 99))));
        assert_eq!(parse_range(Some("bytes=100-"), 100), Err(()));
        assert_eq!(parse_range(Some("bytes=0-1,5-6"), 100), Ok(None));
        assert_eq!(parse_range(Some("items=0-1"), 100), Ok(None));
    }
}
