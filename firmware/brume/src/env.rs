//! What every Brume process learns from its environment. `brume serve` sets these for
//! its children, so all roles of one appliance agree on the files they share.

use brume_shm::Namespace;
use std::path::PathBuf;

pub const CONFIG: &str = "BRUME_CONFIG";
pub const RUN_DIR: &str = "BRUME_RUN_DIR";
/// The RTMP listen address given to `serve` (for the publish URLs the UI shows).
pub const RTMP_LISTEN: &str = "BRUME_RTMP_LISTEN";
/// The RTSP listen address: read by `serve` when `--rtsp` is not given, and set by it
/// for its children (`off`: no RTSP).
pub const RTSP_LISTEN: &str = "BRUME_RTSP_LISTEN";

#[derive(Clone, Debug)]
pub struct Env {
    /// The configuration file (read by every role; written only by the controller).
    pub config: PathBuf,
    /// Sockets and pid records of this appliance.
    pub run_dir: PathBuf,
    /// Shared-memory objects of this appliance.
    pub ns: Namespace,
}

impl Env {
    pub fn from_env() -> Env {
        let config = std::env::var_os(CONFIG)
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("brume.json"));
        let run_dir = std::env::var_os(RUN_DIR)
            .map(PathBuf::from)
            .unwrap_or_else(|| default_run_dir(&config));
        Env {
            config,
            run_dir,
            ns: Namespace::from_env(),
        }
    }

    /// The controller's datagram socket: connection hand-overs and demands.
    pub fn controller_socket(&self) -> PathBuf {
        self.run_dir.join("controller.sock")
    }

    /// The listener's datagram socket: RTMP inputs report an accepted publisher and a
    /// wrong publish key there.
    pub fn listener_socket(&self) -> PathBuf {
        self.run_dir.join("listen.sock")
    }
}

pub fn default_run_dir(config: &std::path::Path) -> PathBuf {
    let dir = config
        .parent()
        .filter(|p| !p.as_os_str().is_empty())
        .unwrap_or(std::path::Path::new("."));
    dir.join("run")
}

/// Reads a secret from the environment once and removes it, so no child (controller,
/// inputs, stream processes, trigger handlers) inherits it. The original bytes are
/// overwritten as well: /proc/PID/environ shows the environment this process started
/// with, not the current one. Call before any other thread exists.
pub fn take_secret(name: &str) -> Option<String> {
    let value = std::env::var(name).ok();
    if let Ok(cname) = std::ffi::CString::new(name) {
        // SAFETY: getenv returns null or a pointer to the NUL-terminated value inside
        // this process's (writable) environment block; the process has one thread,
        // so nothing reads or changes the environment meanwhile. The bytes are
        // overwritten in place, up to (not including) the terminating NUL.
        unsafe {
            let p = libc::getenv(cname.as_ptr());
            if !p.is_null() {
                let len = libc::strlen(p);
                for i in 0..len {
                    std::ptr::write_volatile(p.add(i), 0);
                }
            }
        }
    }
    std::env::remove_var(name);
    value.filter(|v| !v.is_empty())
}

/// The persisted admin sessions: next to the configuration file, named after it
/// (`brume.json` → `brume.sessions.json`).
pub fn sessions_file(config: &std::path::Path) -> PathBuf {
    let stem = config
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| "brume".into());
    config.with_file_name(format!("{stem}.sessions.json"))
}
