//! Recordings: the recorders' angel (one `brume record <stream>` per active recording,
//! restarted with back-off like an input) and the recordings directory (list, read,
//! delete) behind the API.
//!
//! A recording that was started (through the API, a trigger or a GPIO button) stays
//! wanted until it is stopped the same way or fails: the set of wanted recordings is
//! kept next to the configuration (`brume.recordings.json`, written atomically), so a
//! restart, a controller crash or a power cut resumes each in a new file, with
//! `"resumed": true` in its status.

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
    /// Started again by the controller after a restart (it was wanted before).
    pub resumed: bool,
    /// The first file of this recording (for `recording.started`).
    first_file: Option<String>,
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
            "resumed": self.resumed,
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

/// True while `stream` is being recorded.
pub fn is_active(state: &Shared, stream: &str) -> bool {
    state
        .recordings
        .lock()
        .expect("recordings lock")
        .get(stream)
        .is_some_and(|e| e.active && e.running())
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

/// The file that lists the wanted recordings: next to the configuration, named after
/// it (`brume.json` → `brume.recordings.json`).
fn wanted_file(state: &Shared) -> PathBuf {
    let config = &state.env.config;
    let stem = config
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "brume".into());
    config.with_file_name(format!("{stem}.recordings.json"))
}

fn wanted(state: &Shared) -> Vec<String> {
    std::fs::read(wanted_file(state))
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|v| {
            v["wanted"].as_array().map(|a| {
                a.iter()
                    .filter_map(|s| s.as_str().map(str::to_string))
                    .collect()
            })
        })
        .unwrap_or_default()
}

/// Marks `stream`'s recording wanted (or not) on disk, so a restart resumes it.
fn set_wanted(state: &Shared, stream: &str, on: bool) {
    let _guard = state.recordings_file.lock().expect("recordings file lock");
    let mut list = wanted(state);
    if on == list.iter().any(|s| s == stream) {
        return;
    }
    if on {
        list.push(stream.to_string());
    } else {
        list.retain(|s| s != stream);
    }
    let bytes = serde_json::to_vec_pretty(&json!({ "wanted": list })).expect("JSON");
    if let Err(e) = crate::config::write_private(&wanted_file(state), &bytes) {
        tracing::warn!(error = %e, "cannot save the wanted recordings: a restart would not resume them");
    }
}

/// Resumes the recordings that were wanted when the controller last ran (a restart,
/// a crash, a power cut), each in a new file. Streams that no longer exist are
/// forgotten.
pub fn resume_wanted(state: &Shared) {
    let streams: Vec<String> = {
        let config = state.config.lock().expect("config lock");
        wanted(state)
            .into_iter()
            .filter(|s| config.streams.contains_key(s))
            .collect()
    };
    for s in wanted(state) {
        if !streams.contains(&s) {
            set_wanted(state, &s, false);
        }
    }
    for s in streams {
        if is_active(state, &s) {
            continue;
        }
        tracing::info!(stream = %s, "resuming the recording that was running before the restart");
        start(state, &s);
        update(state, &s, |e| e.resumed = true);
    }
}

/// Starts recording `stream` (and its input, if it runs on demand) unless it records.
/// The recording stays wanted, across restarts, until [`stop`] or a failure.
pub fn start(state: &Shared, stream: &str) {
    set_wanted(state, stream, true);
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

/// Stops recording `stream` and waits for the recorder to finish its file; it is no
/// longer wanted.
pub async fn stop(state: &Shared, stream: &str) {
    set_wanted(state, stream, false);
    halt(state, stream).await;
}

/// Stops the recorder and waits for it; the recording stays wanted (shutdown).
async fn halt(state: &Shared, stream: &str) {
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
        ended(state, stream, "stopped");
    }
    update(state, stream, |e| {
        e.active = false;
        e.pid = None;
    });
}

/// Fires `recording.ended` with the last file and the recording's duration.
fn ended(state: &Shared, stream: &str, reason: &str) {
    let (file, since) = state
        .recordings
        .lock()
        .expect("recordings lock")
        .get(stream)
        .map(|e| (e.file.clone(), e.since_ms))
        .unwrap_or_default();
    let duration_s = since.map(|s| now_ms().saturating_sub(s) as f64 / 1000.0);
    let path = file
        .as_ref()
        .map(|f| dir(state).join(f).display().to_string());
    super::events::emit(
        state,
        "recording.ended",
        Some(stream),
        json!({ "file": file, "path": path, "duration_s": duration_s, "reason": reason }),
    );
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
        halt(state, &n).await;
    }
}

/// Stops the recording with `error` (it is not restarted, and no longer wanted: it
/// waits for an operator).
fn stopped(state: &Shared, stream: &str, error: String) {
    set_wanted(state, stream, false);
    ended(state, stream, &error);
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
                line = super::next_line(&mut lines) => match line {
                    Ok(Some(l)) => {
                        if let Some(f) = l.strip_prefix("file ") {
                            let mut first = false;
                            update(&state, &stream, |e| {
                                e.file = Some(f.to_string());
                                if e.first_file.is_none() {
                                    e.first_file = Some(f.to_string());
                                    first = true;
                                }
                            });
                            if first {
                                let path = self::dir(&state).join(f).display().to_string();
                                super::events::emit(&state, "recording.started", Some(&stream), json!({ "file": f, "path": path }));
                            }
                        } else if let Some(m) = l.strip_prefix("error ") {
                            error = Some(m.to_string());
                        }
                    }
                    _ => {
                        lines = None;
                    }
                },
                st = child.wait() => break st.ok(),
                _ = stop.changed() => break super::terminate(&mut child, Duration::from_secs(10)).await,
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
            let d = self::dir(&state);
            let free = free_mb(&d);
            super::events::emit(
                &state,
                "disk.low",
                Some(&stream),
                json!({ "dir": d.display().to_string(), "free_mb": free, "full": true }),
            );
            // With a retention policy, make room and carry on in a new file.
            if enforce_retention(&state) > 0 {
                tracing::warn!(stream = %stream, "disk full: deleted old recordings, recording on");
                continue;
            }
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

/// Free space of the filesystem holding `dir` (MiB), if it can be read.
#[allow(clippy::unnecessary_cast)]
pub fn free_mb(dir: &Path) -> Option<u64> {
    // The directory may not exist yet: ask about the nearest one that does.
    let existing = dir.ancestors().find(|p| p.exists())?;
    let s = nix::sys::statvfs::statvfs(existing).ok()?;
    Some((s.blocks_available() as u64).saturating_mul(s.fragment_size() as u64) >> 20)
}

/// Applies the retention policy: recordings older than `max_age_days` go, then the
/// oldest go while less than `min_free_mb` is free. Files being written are kept.
/// Returns how many files were deleted.
pub fn enforce_retention(state: &Shared) -> usize {
    let Some(policy) = state
        .config
        .lock()
        .expect("config lock")
        .recording
        .retention
        .clone()
    else {
        return 0;
    };
    let d = dir(state);
    let mut deleted = 0;
    let now = now_ms();
    for r in list(&d) {
        let Some(rel) = r["path"].as_str() else {
            continue;
        };
        if in_use(state, rel) {
            continue;
        }
        let age_days = r["modified_ms"]
            .as_u64()
            .map(|m| now.saturating_sub(m) / 86_400_000);
        let too_old = policy.max_age_days > 0
            && age_days.is_some_and(|a| a >= u64::from(policy.max_age_days));
        let short = policy.min_free_mb > 0 && free_mb(&d).is_some_and(|f| f < policy.min_free_mb);
        if !(too_old || short) {
            if policy.max_age_days == 0 {
                break; // oldest first: the rest is newer and there is room
            }
            continue;
        }
        if let Some(p) = resolve(&d, rel) {
            match std::fs::remove_file(&p) {
                Ok(()) => {
                    deleted += 1;
                    tracing::info!(file = %rel, reason = if too_old { "age" } else { "free space" }, "retention deleted a recording");
                }
                Err(e) => {
                    tracing::warn!(file = %rel, error = %e, "retention could not delete a recording")
                }
            }
        }
    }
    deleted
}

/// Every 10 s: fires `disk.low` when the recordings' filesystem drops below
/// `disk_low_mb` free (once, until it recovers), and applies the retention policy.
pub async fn storage(state: Shared) {
    let mut low = false;
    loop {
        tokio::time::sleep(Duration::from_secs(10)).await;
        let threshold = state
            .config
            .lock()
            .expect("config lock")
            .recording
            .disk_low_mb;
        let d = dir(&state);
        let Some(free) = free_mb(&d) else { continue };
        if !low && threshold > 0 && free < threshold {
            low = true;
            tracing::warn!(
                free_mb = free,
                threshold_mb = threshold,
                "recordings disk low"
            );
            super::events::emit(
                &state,
                "disk.low",
                None,
                json!({ "dir": d.display().to_string(), "free_mb": free, "threshold_mb": threshold, "full": false }),
            );
        } else if low && free >= threshold + threshold / 10 {
            low = false;
        }
        // The event first, then the remedy.
        enforce_retention(&state);
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
