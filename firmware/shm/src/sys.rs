//! The few OS calls the buffer needs: a shared futex, and process liveness by pid and
//! start time.

use std::sync::atomic::AtomicU32;
use std::time::Duration;

/// Sleeps while `*word == expected`, at most `timeout`. Spurious wake-ups are possible;
/// callers re-check their condition. The futex is *shared* (no FUTEX_PRIVATE_FLAG):
/// writer and readers are different processes mapping the same file.
pub fn futex_wait(word: &AtomicU32, expected: u32, timeout: Duration) {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: `word` is a valid, aligned u32 in a mapping that outlives the call; the
    // kernel only reads it. EAGAIN/EINTR/ETIMEDOUT are all fine: the caller re-checks.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAIT,
            expected,
            &ts as *const libc::timespec,
            std::ptr::null::<u32>(),
            0u32,
        );
    }
}

/// Wakes every process sleeping on `word`.
pub fn futex_wake_all(word: &AtomicU32) {
    // SAFETY: as in `futex_wait`; FUTEX_WAKE does not dereference user memory beyond
    // using the address as a key.
    unsafe {
        libc::syscall(
            libc::SYS_futex,
            word.as_ptr(),
            libc::FUTEX_WAKE,
            i32::MAX,
            std::ptr::null::<libc::timespec>(),
            std::ptr::null::<u32>(),
            0u32,
        );
    }
}

/// A process's start time in clock ticks since boot (field 22 of /proc/PID/stat), or
/// None if the process does not exist. Together with the pid it names a process
/// uniquely: pids are reused, (pid, start time) pairs are not.
pub fn process_start_time(pid: u32) -> Option<u64> {
    if pid == 0 {
        return None;
    }
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may contain spaces and ')'; fields after the last ')'
    // are plain numbers. Field 3 (state) is the first after it, field 22 the 20th.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_ascii_whitespace();
    let state = fields.next()?;
    if state == "Z" || state == "X" {
        return None; // a zombie owns nothing any more
    }
    fields.nth(18)?.parse().ok()
}

/// The calling process's (pid, start time).
pub fn current_process() -> (u32, u64) {
    let pid = std::process::id();
    (pid, process_start_time(pid).unwrap_or(0))
}

/// True if the process that was `pid`, started at `start`, still runs.
pub fn is_alive(pid: u32, start: u64) -> bool {
    process_start_time(pid) == Some(start)
}
