//! Live update: replacing the running binary without dropping a connection.
//!
//! Who does what:
//! * The controller (`POST /api/v1/system/update`) or `brume update FILE` stages the
//!   new binary in the updates directory and checks it (`verify`), then asks the root
//!   angel to switch: it writes `update.request` in the run directory and sends
//!   `brume serve` SIGUSR1 (its pid is in `serve.pid`).
//! * The root angel (`serve.rs`) hands the controller and the listener over to the
//!   new binary, checks the new ones' health and either re-executes itself into the
//!   new binary or rolls back. It reports every step in `update.json` in the run
//!   directory, which the API shows under `/api/v1/system` → `update`.
//!
//! The two files are this module's types, so both sides read and write the same JSON.

pub mod boot;
pub mod swap;
pub mod verify;

use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

/// What the root angel is asked to do (`run/update.request`).
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Request {
    /// The staged, verified binary to switch to.
    pub exe: PathBuf,
    /// Its version, as `exe --version` printed it.
    pub version: String,
    /// A rollback (to the previous binary) rather than an update.
    #[serde(default)]
    pub rollback: bool,
}

/// Where an update stands (`run/update.json`, written by the root angel).
#[derive(Clone, Debug, Default, Serialize, Deserialize, PartialEq, Eq)]
pub struct Status {
    /// `updating`, `updated`, `rolled-back` (the new binary failed its health check;
    /// `reason` says why) or `failed` (the request itself was refused).
    pub state: String,
    /// The version running now (after a success: the new one).
    pub version: String,
    /// The binary running now.
    pub exe: PathBuf,
    /// The version and binary the last update replaced: what a rollback goes back to.
    #[serde(default)]
    pub previous_version: Option<String>,
    #[serde(default)]
    pub previous_exe: Option<PathBuf>,
    /// The version an update in progress (or the last failed one) tried.
    #[serde(default)]
    pub target_version: Option<String>,
    #[serde(default)]
    pub reason: Option<String>,
    /// Unix milliseconds: the request was taken, and the outcome was known.
    #[serde(default)]
    pub started_ms: u64,
    #[serde(default)]
    pub finished_ms: u64,
    /// From the request to the new controller answering the API, in milliseconds.
    #[serde(default)]
    pub handover_ms: Option<u64>,
}

/// The request file in the run directory.
pub fn request_file(run_dir: &Path) -> PathBuf {
    run_dir.join("update.request")
}

/// The status file in the run directory.
pub fn status_file(run_dir: &Path) -> PathBuf {
    run_dir.join("update.json")
}

/// The root angel's pid record in the run directory.
pub fn serve_pid_file(run_dir: &Path) -> PathBuf {
    run_dir.join("serve.pid")
}

/// Where staged binaries live: `updates/` next to the configuration (on the
/// appliance, the data partition; the root file system is read-only).
pub fn updates_dir(config: &Path) -> PathBuf {
    config
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(Path::new("."))
        .join("updates")
}

/// The last status the root angel wrote, if any.
pub fn status(run_dir: &Path) -> Option<Status> {
    let text = std::fs::read(status_file(run_dir)).ok()?;
    serde_json::from_slice(&text).ok()
}

/// Writes `status` atomically (the root angel).
pub fn write_status(run_dir: &Path, status: &Status) {
    let path = status_file(run_dir);
    let tmp = run_dir.join("update.json.new");
    let text = serde_json::to_vec_pretty(status).expect("the update status serialises");
    if std::fs::write(&tmp, text).is_ok() {
        let _ = std::fs::rename(&tmp, &path);
    }
}

/// Asks the running root angel of `run_dir` to switch to `request.exe`: writes the
/// request, then sends SIGUSR1 to the pid in `serve.pid` (checked against its start
/// time, so a recycled pid is never signalled).
pub fn send_request(run_dir: &Path, request: &Request) -> Result<(), String> {
    let record = std::fs::read_to_string(serve_pid_file(run_dir))
        .map_err(|e| format!("no running brume serve in {}: {e}", run_dir.display()))?;
    let mut words = record.split_whitespace();
    let pid: i32 = words
        .next()
        .and_then(|w| w.parse().ok())
        .ok_or("serve.pid is malformed")?;
    let start: u64 = words
        .next()
        .and_then(|w| w.parse().ok())
        .ok_or("serve.pid is malformed")?;
    if brume_shm::sys::process_start_time(pid as u32) != Some(start) {
        return Err(format!(
            "no running brume serve in {} (pid {pid} has ended)",
            run_dir.display()
        ));
    }
    let tmp = run_dir.join("update.request.new");
    let text = serde_json::to_vec(request).expect("the update request serialises");
    std::fs::write(&tmp, text).map_err(|e| format!("{}: {e}", tmp.display()))?;
    std::fs::rename(&tmp, request_file(run_dir)).map_err(|e| e.to_string())?;
    // SAFETY: kill takes no pointers.
    if unsafe { libc::kill(pid, libc::SIGUSR1) } != 0 {
        return Err(format!(
            "cannot signal brume serve (pid {pid}): {}",
            std::io::Error::last_os_error()
        ));
    }
    Ok(())
}

/// The version of this binary: the package version, and the build stamp when one was
/// written into the binary (`+stamp`), so two builds of one source tell apart.
pub fn version() -> String {
    let stamp = build_stamp();
    if stamp.is_empty() {
        env!("CARGO_PKG_VERSION").to_string()
    } else {
        format!("{}+{stamp}", env!("CARGO_PKG_VERSION"))
    }
}

/// A fixed-size field in the binary that packaging may overwrite in place (the bytes
/// after the marker, NUL-padded): a build identifier without a rebuild.
#[used]
static BUILD_STAMP: [u8; 64] = *b"BRUME-BUILD-STAMP:\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0\0";

/// The marker that precedes the stamp in the binary.
pub const STAMP_MARKER: &[u8] = b"BRUME-BUILD-STAMP:";

fn build_stamp() -> String {
    // Read through a volatile load: the compiler must not fold the constant, since
    // the bytes may be changed in the file after the build.
    let bytes: [u8; 64] = unsafe { std::ptr::read_volatile(&BUILD_STAMP) };
    let field = &bytes[STAMP_MARKER.len()..];
    let end = field.iter().position(|b| *b == 0).unwrap_or(field.len());
    String::from_utf8_lossy(&field[..end])
        .chars()
        .filter(|c| c.is_ascii_graphic())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unstamped_binary_has_the_package_version() {
        assert_eq!(version(), env!("CARGO_PKG_VERSION"));
    }

    #[test]
    fn status_round_trips() {
        let dir = std::env::temp_dir().join(format!("brume-update-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let s = Status {
            state: "updated".into(),
            version: "1.2.3".into(),
            exe: "/data/updates/brume-1.2.3".into(),
            handover_ms: Some(420),
            ..Status::default()
        };
        write_status(&dir, &s);
        assert_eq!(status(&dir), Some(s));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
