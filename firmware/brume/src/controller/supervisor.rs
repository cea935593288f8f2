//! The inputs' angel: one task per running input process. It starts `brume input
//! <stream>`, restarts it with back-off when it dies, marks the stream failed on a
//! crash loop (with the reason, shown in the API), ends the stream's buffer when the
//! input will not come back, and stops on-demand inputs nobody watches.

use super::{AngelTask, Shared};
use crate::angel::{self, Backoff, Verdict};
use crate::config::{Source, StreamConfig};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// What the controller knows about one stream's input.
#[derive(Default)]
pub struct InputState {
    /// "starting", "running", "restarting", "failed", "stopped".
    pub state: &'static str,
    pub pid: Option<u32>,
    pub restarts: u64,
    pub last_exit: Option<String>,
    pub last_error: Option<String>,
    /// The input's own last report ("running", "device-missing", "error").
    pub reported: String,
    idle_since: Option<Instant>,
    angel: Option<AngelTask>,
}

impl InputState {
    pub fn running(&self) -> bool {
        self.angel.as_ref().is_some_and(AngelTask::running)
    }
}

fn needs_process(s: &StreamConfig) -> bool {
    !matches!(s.source, Source::Rtmp { .. })
}

/// Starts every always-on stream (at start-up and after configuration changes).
pub fn start_configured(state: &Shared) {
    let streams: Vec<(String, StreamConfig)> = state
        .config
        .lock()
        .expect("config lock")
        .streams
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    for (name, s) in streams {
        if s.always_on && needs_process(&s) {
            start(state, &name);
        }
    }
}

/// An input reported its state.
pub fn reported(state: &Shared, stream: &str, st: &str, error: &str) {
    update(state, stream, |s| {
        s.reported = st.to_string();
        if !error.is_empty() {
            s.last_error = Some(error.to_string());
        }
    });
}

/// A viewer asked for an on-demand stream.
pub fn demand(state: &Shared, stream: &str) {
    let known = state
        .config
        .lock()
        .expect("config lock")
        .streams
        .get(stream)
        .is_some_and(needs_process);
    if known {
        start(state, stream);
    }
}

/// Starts the stream's angel task unless it runs (or failed: that needs a restart).
pub fn start(state: &Shared, stream: &str) {
    let mut inputs = state.inputs.lock().expect("inputs lock");
    let entry = inputs.entry(stream.to_string()).or_default();
    if entry.running() || entry.state == "failed" {
        return;
    }
    entry.state = "starting";
    entry.idle_since = None;
    let (st, name) = (state.clone(), stream.to_string());
    entry.angel = Some(AngelTask::spawn(|stop| run(st, name, stop)));
}

/// Stops the stream's input and waits for its angel to finish.
pub async fn stop(state: &Shared, stream: &str) {
    let task = {
        let mut inputs = state.inputs.lock().expect("inputs lock");
        let Some(e) = inputs.get_mut(stream) else {
            return;
        };
        e.angel.take().map(AngelTask::stop)
    };
    if let Some(t) = task {
        let _ = t.await;
    }
}

/// Operator restart: clears a failure and starts again.
pub async fn restart(state: &Shared, stream: &str) {
    stop(state, stream).await;
    if let Some(e) = state.inputs.lock().expect("inputs lock").get_mut(stream) {
        e.state = "stopped";
    }
    start(state, stream);
}

pub async fn stop_all(state: &Shared) {
    let names: Vec<String> = state
        .inputs
        .lock()
        .expect("inputs lock")
        .keys()
        .cloned()
        .collect();
    for n in names {
        stop(state, &n).await;
    }
}

fn update(state: &Shared, stream: &str, f: impl FnOnce(&mut InputState)) {
    if let Some(e) = state.inputs.lock().expect("inputs lock").get_mut(stream) {
        f(e);
    }
}

/// A live writer left by a previous controller (adopted instead of started twice).
fn live_writer(state: &Shared, stream: &str) -> Option<u32> {
    let r = brume_shm::Reader::observe(&state.env.ns, stream).ok()?;
    let s = r.status();
    (s.writer_alive && !s.ended).then_some(s.writer_pid)
}

async fn run(state: Shared, stream: String, mut stop: watch::Receiver<bool>) {
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            update(&state, &stream, |s| {
                s.state = "failed";
                s.last_error = Some(format!("cannot find the brume executable: {e}"));
            });
            return;
        }
    };
    let mut backoff = Backoff::default();
    let mut device_wait = Duration::ZERO;
    loop {
        let started = Instant::now();
        let status: Option<std::process::ExitStatus> = if let Some(pid) =
            live_writer(&state, &stream)
        {
            tracing::info!(stream = %stream, pid, "adopted a running input");
            update(&state, &stream, |s| {
                s.state = "running";
                s.pid = Some(pid);
            });
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(Duration::from_millis(250)) => {}
                    _ = stop.changed() => {
                        // SAFETY: kill takes no pointers.
                        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
                        break;
                    }
                }
                if live_writer(&state, &stream).is_none() {
                    break;
                }
            }
            None // not our child: its exit status is unknown
        } else {
            let mut cmd = tokio::process::Command::new(&exe);
            cmd.arg("input").arg(&stream);
            let mut child = match cmd.spawn() {
                Ok(c) => c,
                Err(e) => {
                    tracing::error!(stream = %stream, error = %e, "cannot start the input");
                    update(&state, &stream, |s| {
                        s.state = "failed";
                        s.last_error = Some(format!("cannot start the input: {e}"));
                    });
                    return;
                }
            };
            let pid = child.id();
            update(&state, &stream, |s| {
                s.state = "running";
                s.pid = pid;
            });
            tokio::select! {
                st = child.wait() => st.ok(),
                _ = stop.changed() => super::terminate(&mut child, Duration::from_secs(5)).await,
            }
        };
        if *stop.borrow() {
            break;
        }
        let how = status
            .map(angel::describe)
            .unwrap_or_else(|| "ended".into());
        let clean = status.is_some_and(|s| s.success());
        if clean {
            tracing::info!(stream = %stream, "input ended; starting it again");
        } else {
            tracing::error!(stream = %stream, status = %how, ran_ms = started.elapsed().as_millis() as u64, "input crashed");
            super::events::emit(
                &state,
                "input.crashed",
                Some(&stream),
                serde_json::json!({
                    "status": how,
                    "code": status.and_then(|s| s.code()),
                    "signal": status.and_then(|s| std::os::unix::process::ExitStatusExt::signal(&s)),
                    "ran_ms": started.elapsed().as_millis() as u64,
                }),
            );
        }
        // A camera or microphone that is missing is not a crash loop: wait for it to
        // come back, checking every few seconds, for as long as it takes.
        let missing = state
            .inputs
            .lock()
            .expect("inputs lock")
            .get(&stream)
            .is_some_and(|s| s.reported == "device-missing");
        if missing {
            device_wait =
                (device_wait * 2).clamp(Duration::from_millis(500), Duration::from_secs(5));
            tracing::warn!(stream = %stream, retry_ms = device_wait.as_millis() as u64, "input device missing; retrying");
            update(&state, &stream, |s| {
                s.pid = None;
                s.state = "device-missing";
                s.last_exit = Some(how.clone());
            });
            tokio::select! {
                _ = tokio::time::sleep(device_wait) => {}
                _ = stop.changed() => break,
            }
            continue;
        }
        device_wait = Duration::ZERO;
        let verdict = backoff.on_crash(Instant::now(), started.elapsed());
        let total = backoff.total;
        update(&state, &stream, |s| {
            s.pid = None;
            s.restarts = total;
            s.last_exit = Some(how.clone());
        });
        match verdict {
            Verdict::Restart(d) => {
                update(&state, &stream, |s| s.state = "restarting");
                tokio::select! {
                    _ = tokio::time::sleep(d) => {}
                    _ = stop.changed() => break,
                }
            }
            Verdict::GiveUp => {
                let reason = format!(
                    "crashed {} times within {} s (last: {how}); not restarting until the stream is restarted",
                    angel::LOOP_CRASHES,
                    angel::LOOP_WINDOW.as_secs()
                );
                tracing::error!(stream = %stream, reason = %reason, "input failed");
                update(&state, &stream, |s| {
                    s.state = "failed";
                    s.last_error = Some(reason);
                });
                state.env.ns.end_if_dead(&stream);
                return;
            }
        }
    }
    state.env.ns.end_if_dead(&stream);
    update(&state, &stream, |s| {
        s.state = "stopped";
        s.pid = None;
    });
}

/// How long an RTMP stream's buffer waits for its publisher to come back before it
/// ends (its viewers get the end of the stream, HLS an `EXT-X-ENDLIST`).
pub const PUBLISHER_GRACE: Duration = Duration::from_secs(20);

/// Once a second: stop on-demand inputs nobody watched for their idle timeout, and end
/// the buffers of RTMP streams whose publisher left more than `PUBLISHER_GRACE` ago.
pub async fn housekeeping(state: Shared) {
    let mut last_bytes: std::collections::HashMap<String, (u64, Instant)> = Default::default();
    let mut orphaned: std::collections::HashMap<String, Instant> = Default::default();
    loop {
        tokio::time::sleep(Duration::from_secs(1)).await;
        let config = state.config.lock().expect("config lock").clone();
        for (name, sc) in &config.streams {
            if needs_process(sc) {
                continue;
            }
            let dead = brume_shm::Reader::observe(&state.env.ns, name)
                .is_ok_and(|r| !r.status().writer_alive);
            if !dead {
                orphaned.remove(name);
                continue;
            }
            let since = *orphaned.entry(name.clone()).or_insert_with(Instant::now);
            if since.elapsed() >= PUBLISHER_GRACE && state.env.ns.end_if_dead(name) {
                tracing::info!(stream = %name, "the publisher did not come back; stream ended");
                orphaned.remove(name);
            }
        }
        // Bitrates from the buffers' byte counters.
        for name in config.streams.keys() {
            let bytes = brume_shm::Reader::observe(&state.env.ns, name).map(|r| r.status().bytes);
            let mut rates = state.rates.lock().expect("rates lock");
            match bytes {
                Ok(b) => {
                    let now = Instant::now();
                    if let Some((prev, at)) = last_bytes.insert(name.clone(), (b, now)) {
                        let secs = now.duration_since(at).as_secs_f64().max(0.001);
                        rates.insert(name.clone(), b.saturating_sub(prev) as f64 / secs);
                    }
                }
                Err(_) => {
                    last_bytes.remove(name);
                    rates.remove(name);
                }
            }
        }
        let mut to_stop = Vec::new();
        {
            let mut inputs = state.inputs.lock().expect("inputs lock");
            for (name, e) in inputs.iter_mut() {
                let Some(sc) = config.streams.get(name) else {
                    continue;
                };
                if sc.always_on || !e.running() {
                    e.idle_since = None;
                    continue;
                }
                let viewers = brume_shm::Reader::observe(&state.env.ns, name)
                    .map(|r| r.status().readers)
                    .unwrap_or(0);
                if viewers > 0 {
                    e.idle_since = None;
                } else {
                    let since = *e.idle_since.get_or_insert_with(Instant::now);
                    if since.elapsed() >= Duration::from_secs(sc.idle_timeout_s as u64) {
                        to_stop.push(name.clone());
                    }
                }
            }
        }
        for name in to_stop {
            tracing::info!(stream = %name, "no viewers; stopping the on-demand input");
            stop(&state, &name).await;
        }
    }
}
