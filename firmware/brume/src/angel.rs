//! The angels' shared policy: restart with back-off, detect crash loops, describe how
//! a process ended. Used by the root angel (`serve`), the controller (inputs) and the
//! listener (connection workers).

use std::time::{Duration, Instant};

/// Crash-loop rule: this many crashes inside the window and the angel gives up.
pub const LOOP_CRASHES: usize = 5;
pub const LOOP_WINDOW: Duration = Duration::from_secs(60);
/// A process that ran this long is considered healthy again.
const HEALTHY_AFTER: Duration = Duration::from_secs(30);
const FIRST_DELAY: Duration = Duration::from_millis(100);
const MAX_DELAY: Duration = Duration::from_secs(10);

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Restart after this delay.
    Restart(Duration),
    /// Crash loop: stop restarting, report the stream/process as failed.
    GiveUp,
}

#[derive(Debug, Default, Clone)]
pub struct Backoff {
    crashes: Vec<Instant>,
    delay: Option<Duration>,
    /// Crashes since the process was first started (shown in the API).
    pub total: u64,
}

impl Backoff {
    /// Records an unexpected exit at `now` of a process that ran for `ran_for`.
    pub fn on_crash(&mut self, now: Instant, ran_for: Duration) -> Verdict {
        self.total += 1;
        if ran_for >= HEALTHY_AFTER {
            self.delay = None;
        }
        self.crashes
            .retain(|t| now.duration_since(*t) < LOOP_WINDOW);
        self.crashes.push(now);
        if self.crashes.len() >= LOOP_CRASHES {
            return Verdict::GiveUp;
        }
        let d = match self.delay {
            None => FIRST_DELAY,
            Some(d) => (d * 2).min(MAX_DELAY),
        };
        self.delay = Some(d);
        Verdict::Restart(d)
    }

    /// Forgets the history (after an operator restarts a failed stream).
    pub fn reset(&mut self) {
        self.crashes.clear();
        self.delay = None;
    }
}

/// How a process ended, for logs and the API: "exit code 3", "killed by SIGKILL".
pub fn describe(status: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    if let Some(code) = status.code() {
        format!("exit code {code}")
    } else if let Some(sig) = status.signal() {
        let name = nix::sys::signal::Signal::try_from(sig)
            .map(|s| s.as_str().to_string())
            .unwrap_or_else(|_| format!("signal {sig}"));
        format!("killed by {name}")
    } else {
        "ended".to_string()
    }
}

/// True if the exit is a planned stop (exit 0 or SIGTERM we sent).
pub fn is_clean(status: std::process::ExitStatus) -> bool {
    use std::os::unix::process::ExitStatusExt;
    status.success() || status.signal() == Some(libc::SIGTERM)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backs_off_then_gives_up_on_a_crash_loop() {
        let mut b = Backoff::default();
        let t0 = Instant::now();
        let mut delays = Vec::new();
        for i in 0..LOOP_CRASHES as u64 {
            match b.on_crash(t0 + Duration::from_secs(i), Duration::from_millis(10)) {
                Verdict::Restart(d) => delays.push(d.as_millis()),
                Verdict::GiveUp => delays.push(0),
            }
        }
        assert_eq!(delays, vec![100, 200, 400, 800, 0]);
    }

    #[test]
    fn spaced_out_crashes_never_give_up() {
        let mut b = Backoff::default();
        let t0 = Instant::now();
        for i in 0..20u64 {
            let v = b.on_crash(t0 + Duration::from_secs(i * 61), Duration::from_secs(61));
            assert_eq!(v, Verdict::Restart(FIRST_DELAY));
        }
        assert_eq!(b.total, 20);
    }
}
