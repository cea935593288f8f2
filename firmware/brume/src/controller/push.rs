//! Pushes: the pushers' angel. One `brume push <name>` process per active push reads
//! the stream's buffer and publishes it to an RTMP server; when the connection fails
//! or the process dies it is started again with back-off (1 s doubling to 30 s), for
//! as long as the push is wanted. `push.started` fires when the server accepts the
//! stream, `push.ended` when it stops (with the reason).

use super::{AngelTask, Shared};
use serde_json::{json, Value};
use std::time::{Duration, Instant};
use tokio::io::AsyncBufReadExt;
use tokio::sync::watch;

#[derive(Default)]
pub struct PushState {
    /// "connecting", "pushing", "retrying", "stopped".
    pub state: &'static str,
    pub error: Option<String>,
    pub pid: Option<u32>,
    pub attempts: u64,
    pub since_ms: Option<u64>,
    angel: Option<AngelTask>,
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default()
        .as_millis() as u64
}

fn update(state: &Shared, name: &str, f: impl FnOnce(&mut PushState)) {
    if let Some(p) = state.pushes.lock().expect("pushes lock").get_mut(name) {
        f(p);
    }
}

/// Every configured push with its state.
pub fn list(state: &Shared) -> Vec<Value> {
    let config = state.config.lock().expect("config lock").pushes.clone();
    let pushes = state.pushes.lock().expect("pushes lock");
    config
        .iter()
        .map(|(name, p)| {
            let s = pushes.get(name);
            let active = s.is_some_and(|s| s.angel.as_ref().is_some_and(AngelTask::running));
            json!({
                "name": name,
                "stream": p.stream,
                "url": redact(&p.url),
                "always_on": p.always_on,
                "active": active,
                "state": s.map(|s| s.state).filter(|s| !s.is_empty()).unwrap_or("stopped"),
                "error": s.and_then(|s| s.error.clone()),
                "attempts": s.map(|s| s.attempts).unwrap_or(0),
                "since_ms": s.and_then(|s| s.since_ms),
            })
        })
        .collect()
}

/// The URL without its stream key (the last path segment and the query).
fn redact(url: &str) -> String {
    match url.rsplit_once('/') {
        Some((base, _)) => format!("{base}/…"),
        None => url.to_string(),
    }
}

/// True while a push of `stream` is connected and sending.
pub fn streaming(state: &Shared, stream: &str) -> bool {
    let config = state.config.lock().expect("config lock").pushes.clone();
    let pushes = state.pushes.lock().expect("pushes lock");
    config
        .iter()
        .filter(|(_, p)| p.stream == stream)
        .any(|(n, _)| pushes.get(n).is_some_and(|s| s.state == "pushing"))
}

pub fn start(state: &Shared, name: &str) -> Result<String, String> {
    let Some(p) = state
        .config
        .lock()
        .expect("config lock")
        .pushes
        .get(name)
        .cloned()
    else {
        return Err(format!("no push named {name:?}"));
    };
    let mut pushes = state.pushes.lock().expect("pushes lock");
    let e = pushes.entry(name.to_string()).or_default();
    if e.angel.as_ref().is_some_and(AngelTask::running) {
        return Ok(format!("push {name} already running"));
    }
    let (st, n) = (state.clone(), name.to_string());
    *e = PushState {
        state: "connecting",
        angel: Some(AngelTask::spawn(|stop| run(st, n, stop))),
        ..PushState::default()
    };
    tracing::info!(push = %name, stream = %p.stream, "push started");
    Ok(format!("push {name} of {} started", p.stream))
}

pub async fn stop(state: &Shared, name: &str) -> Result<String, String> {
    let task = state
        .pushes
        .lock()
        .expect("pushes lock")
        .get_mut(name)
        .and_then(|e| e.angel.take())
        .map(AngelTask::stop);
    match task {
        Some(t) => {
            let _ = t.await;
            Ok(format!("push {name} stopped"))
        }
        None => Ok(format!("push {name} was not running")),
    }
}

/// Starts the always-on pushes and stops those no longer configured.
pub async fn apply(state: &Shared) {
    let config = state.config.lock().expect("config lock").pushes.clone();
    let running: Vec<String> = state
        .pushes
        .lock()
        .expect("pushes lock")
        .keys()
        .cloned()
        .collect();
    for name in running {
        if !config.contains_key(&name) {
            let _ = stop(state, &name).await;
            state.pushes.lock().expect("pushes lock").remove(&name);
        }
    }
    for (name, p) in &config {
        if p.always_on {
            let _ = start(state, name);
        }
    }
}

pub async fn stop_all(state: &Shared) {
    let names: Vec<String> = state
        .pushes
        .lock()
        .expect("pushes lock")
        .keys()
        .cloned()
        .collect();
    for n in names {
        let _ = stop(state, &n).await;
    }
}

async fn run(state: Shared, name: String, mut stop: watch::Receiver<bool>) {
    let exe = match std::env::current_exe() {
        Ok(e) => e,
        Err(e) => {
            update(&state, &name, |p| {
                p.state = "stopped";
                p.error = Some(format!("cannot find the brume executable: {e}"));
            });
            return;
        }
    };
    let stream = state
        .config
        .lock()
        .expect("config lock")
        .pushes
        .get(&name)
        .map(|p| p.stream.clone())
        .unwrap_or_default();
    let mut delay = Duration::from_secs(1);
    loop {
        let started = Instant::now();
        update(&state, &name, |p| {
            p.state = "connecting";
            p.attempts += 1;
        });
        let mut cmd = tokio::process::Command::new(&exe);
        cmd.arg("push")
            .arg(&name)
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true);
        let mut child = match cmd.spawn() {
            Ok(c) => c,
            Err(e) => {
                update(&state, &name, |p| {
                    p.state = "stopped";
                    p.error = Some(format!("cannot start the pusher: {e}"));
                });
                return;
            }
        };
        update(&state, &name, |p| p.pid = child.id());
        let mut lines = child
            .stdout
            .take()
            .map(|o| tokio::io::BufReader::new(o).lines());
        let mut error: Option<String> = None;
        let mut pushing = false;
        let status = loop {
            tokio::select! {
                line = super::next_line(&mut lines) => match line {
                    Ok(Some(l)) => {
                        if l == "pushing" {
                            pushing = true;
                            delay = Duration::from_secs(1);
                            update(&state, &name, |p| {
                                p.state = "pushing";
                                p.error = None;
                                p.since_ms = Some(now_ms());
                            });
                            super::events::emit(&state, "push.started", Some(&stream), json!({"push": name}));
                        } else if let Some(m) = l.strip_prefix("error ") {
                            error = Some(m.to_string());
                        }
                    }
                    _ => lines = None,
                },
                st = child.wait() => break st.ok(),
                _ = stop.changed() => break super::terminate(&mut child, Duration::from_secs(5)).await,
            }
        };
        let stopping = *stop.borrow();
        let reason = if stopping {
            "stopped".to_string()
        } else {
            error.clone().unwrap_or_else(|| {
                status
                    .map(crate::angel::describe)
                    .unwrap_or_else(|| "ended".into())
            })
        };
        if pushing {
            super::events::emit(
                &state,
                "push.ended",
                Some(&stream),
                json!({"push": name, "reason": reason, "duration_s": started.elapsed().as_secs_f64()}),
            );
        }
        if stopping {
            update(&state, &name, |p| {
                p.state = "stopped";
                p.pid = None;
            });
            return;
        }
        tracing::warn!(push = %name, reason = %reason, retry_s = delay.as_secs(), "push interrupted");
        update(&state, &name, |p| {
            p.state = "retrying";
            p.pid = None;
            p.error = Some(reason);
        });
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.changed() => {
                update(&state, &name, |p| p.state = "stopped");
                return;
            }
        }
        delay = (delay * 2).min(Duration::from_secs(30));
    }
}
