//! System figures for the API, read from /proc and /sys (whatever the board exposes).

use serde_json::{json, Value};

fn read(path: &str) -> Option<String> {
    std::fs::read_to_string(path).ok()
}

fn meminfo_kib(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with(key))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|v| v.parse().ok())
}

/// Resident memory of a process in KiB (VmRSS).
pub fn rss_kib(pid: u32) -> Option<u64> {
    meminfo_kib(&read(&format!("/proc/{pid}/status"))?, "VmRSS:")
}

/// Blocks × block size. The statvfs fields are u32 on 32-bit boards (armv7), u64 on
/// 64-bit ones: the casts at the call site are needed on one and no-ops on the other.
fn bytes(blocks: u64, size: u64) -> u64 {
    blocks.saturating_mul(size)
}

/// Whether the kernel's clock is synchronised (NTP, or anything that disciplines it
/// through adjtimex): false on a board without a real-time clock until the network
/// time arrives, so the UI can say the time (and recording names) may be wrong.
/// `None` where the kernel does not say (not Linux, or adjtimex refused).
pub fn clock_synced() -> Option<bool> {
    #[cfg(target_os = "linux")]
    {
        // SAFETY: modes = 0 only reads the kernel's state into the zeroed struct.
        let mut tx: libc::timex = unsafe { std::mem::zeroed() };
        let state = unsafe { libc::adjtimex(&mut tx) };
        if state < 0 {
            return None;
        }
        Some(state != libc::TIME_ERROR && tx.status & libc::STA_UNSYNC == 0)
    }
    #[cfg(not(target_os = "linux"))]
    {
        None
    }
}

#[allow(clippy::unnecessary_cast)]
pub fn status(config_dir: &std::path::Path, controller_uptime_s: u64) -> Value {
    let uptime = read("/proc/uptime")
        .and_then(|s| {
            s.split_whitespace()
                .next()
                .and_then(|v| v.parse::<f64>().ok())
        })
        .map(|v| v as u64);
    let load: Vec<f64> = read("/proc/loadavg")
        .map(|s| {
            s.split_whitespace()
                .take(3)
                .filter_map(|v| v.parse().ok())
                .collect()
        })
        .unwrap_or_default();
    let mem = read("/proc/meminfo").unwrap_or_default();
    // The first thermal zone is the SoC on Raspberry Pi boards.
    let temperature_c = read("/sys/class/thermal/thermal_zone0/temp")
        .and_then(|t| t.trim().parse::<f64>().ok())
        .map(|m| m / 1000.0);
    let disk = nix::sys::statvfs::statvfs(config_dir).ok().map(|s| {
        json!({
            "path": config_dir.display().to_string(),
            "total_bytes": bytes(s.blocks() as u64, s.fragment_size() as u64),
            "free_bytes": bytes(s.blocks_available() as u64, s.fragment_size() as u64),
        })
    });
    json!({
        "version": crate::update::version(),
        "uptime_s": uptime,
        "controller_uptime_s": controller_uptime_s,
        "load": load,
        "cpus": std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1),
        "memory": {
            "total_kib": meminfo_kib(&mem, "MemTotal:"),
            "available_kib": meminfo_kib(&mem, "MemAvailable:"),
            "controller_rss_kib": rss_kib(std::process::id()),
        },
        "temperature_c": temperature_c,
        "disk": disk,
        "clock_synced": clock_synced(),
        // The port of rtsp://HOST:PORT/<stream> (null when the RTSP server is off).
        "rtsp_port": std::env::var(crate::env::RTSP_LISTEN)
            .ok()
            .and_then(|a| a.parse::<std::net::SocketAddr>().ok())
            .map(|a| a.port()),
    })
}
