//! Events and triggers. Every event is a JSON object (`id`, `event`, `time`, `stream`
//! and the event's own fields). Each configured trigger has its own queue and task, so
//! a receiver gets its events in the order they fired, and a slow or failing handler
//! delays only its own trigger. `viewer.requested` is the blocking event: its handlers
//! run while the viewer waits, and any "deny" keeps the viewer out.
//!
//! Every handler run is remembered (event, handler, result, duration) for the API.

use super::Shared;
use crate::config::{BuiltIn, Decision, Handler, Trigger, BLOCKING_EVENT};
use serde_json::{json, Map, Value};
use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// Events and runs kept for the API.
const KEEP: usize = 500;
/// Events waiting per trigger before new ones are dropped (and the drop logged).
const QUEUE: usize = 256;

struct Queue {
    trigger: Trigger,
    index: usize,
    tx: mpsc::Sender<Value>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Default)]
pub struct Hub {
    next_id: AtomicU64,
    recent: Mutex<VecDeque<Value>>,
    runs: Mutex<VecDeque<Value>>,
    queues: Mutex<Vec<Queue>>,
}

/// Wall-clock time as RFC 3339 UTC with milliseconds.
pub fn rfc3339(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    brume_format::clock::rfc3339_ms(d.as_millis() as i64)
}

impl Hub {
    /// The newest events, oldest first.
    pub fn recent(&self, limit: usize) -> Vec<Value> {
        let r = self.recent.lock().expect("events lock");
        r.iter()
            .skip(r.len().saturating_sub(limit))
            .cloned()
            .collect()
    }

    /// The newest handler runs, oldest first.
    pub fn runs(&self, limit: usize) -> Vec<Value> {
        let r = self.runs.lock().expect("runs lock");
        r.iter()
            .skip(r.len().saturating_sub(limit))
            .cloned()
            .collect()
    }

    fn remember(list: &Mutex<VecDeque<Value>>, v: Value) {
        let mut l = list.lock().expect("event list lock");
        if l.len() >= KEEP {
            l.pop_front();
        }
        l.push_back(v);
    }

    fn record_run(&self, run: Value) {
        Hub::remember(&self.runs, run);
    }
}

/// Builds an event: `fields` (an object) plus id, name, time and stream.
fn make(state: &Shared, name: &str, stream: Option<&str>, fields: Value) -> Value {
    let id = state.events.next_id.fetch_add(1, Ordering::Relaxed) + 1;
    let mut m = Map::new();
    m.insert("id".into(), json!(id));
    m.insert("event".into(), json!(name));
    m.insert("time".into(), json!(rfc3339(SystemTime::now())));
    if let Some(s) = stream {
        m.insert("stream".into(), json!(s));
    }
    if let Value::Object(f) = fields {
        for (k, v) in f {
            m.entry(k).or_insert(v);
        }
    }
    Value::Object(m)
}

fn matches(t: &Trigger, event: &Value) -> bool {
    if !event
        .get("event")
        .and_then(Value::as_str)
        .is_some_and(|e| t.fires_on(e))
    {
        return false;
    }
    if !t.streams.is_empty() {
        let s = event.get("stream").and_then(Value::as_str);
        if !s.is_some_and(|s| t.streams.iter().any(|x| x == s)) {
            return false;
        }
    }
    t.matches.iter().all(|(k, v)| event.get(k) == Some(v))
}

/// Fires an event (never blocks; handlers run in their triggers' tasks).
pub fn emit(state: &Shared, name: &str, stream: Option<&str>, fields: Value) {
    let event = make(state, name, stream, fields);
    tracing::debug!(event = %event, "event");
    Hub::remember(&state.events.recent, event.clone());
    let queues = state.events.queues.lock().expect("queues lock");
    for q in queues.iter().filter(|q| matches(&q.trigger, &event)) {
        if q.tx.try_send(event.clone()).is_err() {
            state.events.record_run(json!({
                "time": rfc3339(SystemTime::now()),
                "trigger": q.index,
                "event": event["event"],
                "event_id": event["id"],
                "handler": q.trigger.handler.kind(),
                "result": "dropped",
                "detail": format!("more than {QUEUE} events waiting for this trigger"),
                "duration_ms": 0,
            }));
        }
    }
}

/// An event reported by another process ({"event": ..., "stream": ..., fields}).
pub fn emit_reported(state: &Shared, mut v: Value) {
    let Some(o) = v.as_object_mut() else { return };
    let name = match o.remove("event") {
        Some(Value::String(n)) if crate::config::known_event(&n) && n != BLOCKING_EVENT => n,
        _ => return,
    };
    let stream = match o.remove("stream") {
        Some(Value::String(s)) => Some(s),
        _ => None,
    };
    o.remove("id");
    o.remove("time");
    emit(state, &name, stream.as_deref(), v);
}

/// Starts one task per configured trigger; call again after configuration changes
/// (tasks of changed triggers finish their queue and end).
pub fn sync_triggers(state: &Shared) {
    let triggers = state.config.lock().expect("config lock").triggers.clone();
    let mut queues = state.events.queues.lock().expect("queues lock");
    let same = queues.len() == triggers.len()
        && queues.iter().zip(&triggers).all(|(q, t)| q.trigger == *t);
    if same {
        return;
    }
    queues.clear();
    for (index, trigger) in triggers.into_iter().enumerate() {
        if trigger.is_blocking() {
            continue; // run inline by `decide`
        }
        let (tx, rx) = mpsc::channel(QUEUE);
        let task = tokio::spawn(deliver(state.clone(), index, trigger.clone(), rx));
        queues.push(Queue {
            trigger,
            index,
            tx,
            task,
        });
    }
}

/// Closes the triggers' queues and waits until they have delivered what they hold.
pub async fn drain(state: &Shared) {
    let queues = std::mem::take(&mut *state.events.queues.lock().expect("queues lock"));
    for q in queues {
        drop(q.tx);
        let _ = q.task.await;
    }
}

async fn deliver(state: Shared, index: usize, trigger: Trigger, mut rx: mpsc::Receiver<Value>) {
    while let Some(event) = rx.recv().await {
        run(&state, index, &trigger, &event, false).await;
    }
}

/// What one handler run came to.
struct Outcome {
    result: &'static str,
    detail: String,
    decision: Option<Decision>,
    attempts: u32,
}

impl Outcome {
    fn ok(detail: impl Into<String>) -> Outcome {
        Outcome {
            result: "ok",
            detail: detail.into(),
            decision: None,
            attempts: 1,
        }
    }
    fn failed(result: &'static str, detail: impl Into<String>) -> Outcome {
        Outcome {
            result,
            detail: detail.into(),
            decision: None,
            attempts: 1,
        }
    }
}

/// Runs a trigger's handler for an event and records the run. Returns the decision
/// of a blocking handler (its default when it failed).
async fn run(
    state: &Shared,
    index: usize,
    trigger: &Trigger,
    event: &Value,
    blocking: bool,
) -> Decision {
    let started = Instant::now();
    let out = match &trigger.handler {
        Handler::Webhook {
            url,
            timeout_ms,
            retries,
            ..
        } => {
            webhook(
                url,
                *timeout_ms,
                if blocking { 0 } else { *retries },
                event,
                blocking,
            )
            .await
        }
        Handler::Exec {
            command,
            timeout_ms,
            ..
        } => exec(command, *timeout_ms, event, blocking).await,
        Handler::Gpio {
            pin,
            action,
            ms,
            count,
        } => match super::gpio::act(state, pin, *action, *ms, *count) {
            Ok(d) => Outcome::ok(d),
            Err(e) => Outcome::failed("error", e),
        },
        Handler::Action {
            action,
            stream,
            push,
        } => builtin(state, *action, stream.as_deref(), push.as_deref(), event).await,
    };
    let default = match &trigger.handler {
        Handler::Webhook { default, .. } | Handler::Exec { default, .. } => *default,
        _ => Decision::Allow,
    };
    // A blocking handler that failed gets its default; one that ran without an
    // answer allows.
    let decision = blocking.then(|| match out.decision {
        Some(d) => d,
        None if out.result == "ok" => Decision::Allow,
        None => default,
    });
    let ms = started.elapsed().as_millis() as u64;
    if out.result != "ok" {
        tracing::warn!(trigger = index, event = %event["event"], handler = trigger.handler.kind(), result = out.result, detail = ?out.detail, "trigger handler failed");
    }
    state.events.record_run(json!({
        "time": rfc3339(SystemTime::now()),
        "trigger": index,
        "event": event["event"],
        "event_id": event["id"],
        "stream": event.get("stream"),
        "handler": trigger.handler.kind(),
        "result": out.result,
        "detail": out.detail,
        "attempts": out.attempts,
        "decision": decision,
        "default_applied": blocking && out.result != "ok",
        "duration_ms": ms,
    }));
    decision.unwrap_or(Decision::Allow)
}

/// Reads "allow"/"deny" (or true/false, or {"allow": bool}) from a handler's answer.
fn parse_decision(text: &str) -> Option<Decision> {
    let t = text.trim();
    let word = t.lines().next().unwrap_or("").trim().to_ascii_lowercase();
    match word.as_str() {
        "allow" | "true" | "1" | "yes" => return Some(Decision::Allow),
        "deny" | "false" | "0" | "no" => return Some(Decision::Deny),
        _ => {}
    }
    let v: Value = serde_json::from_str(t).ok()?;
    match v.get("allow")? {
        Value::Bool(true) => Some(Decision::Allow),
        Value::Bool(false) => Some(Decision::Deny),
        _ => None,
    }
}

async fn webhook(
    url: &str,
    timeout_ms: u32,
    retries: u32,
    event: &Value,
    blocking: bool,
) -> Outcome {
    let url = match crate::webhook::HttpUrl::parse(url) {
        Ok(u) => u,
        Err(e) => return Outcome::failed("error", e),
    };
    let body = event.to_string();
    let name = event["event"].as_str().unwrap_or("").to_string();
    let id = event["id"].to_string();
    let headers = [
        ("X-Brume-Event", name.as_str()),
        ("X-Brume-Event-Id", id.as_str()),
    ];
    let timeout = Duration::from_millis(timeout_ms.into());
    let mut attempt = 0;
    loop {
        attempt += 1;
        let r = crate::webhook::post_json(&url, body.as_bytes(), &headers, timeout).await;
        let mut out = match r {
            Ok(reply) if (200..300).contains(&reply.status) => {
                let mut o = Outcome::ok(format!("HTTP {}", reply.status));
                if blocking {
                    o.decision = Some(parse_decision(&reply.body).unwrap_or(Decision::Allow));
                }
                o
            }
            Ok(reply) if blocking && (reply.status == 401 || reply.status == 403) => {
                let mut o = Outcome::ok(format!("HTTP {}", reply.status));
                o.decision = Some(Decision::Deny);
                o
            }
            Ok(reply) => Outcome::failed("error", format!("HTTP {}", reply.status)),
            Err(e) if e.starts_with("timed out") => Outcome::failed("timeout", e),
            Err(e) => Outcome::failed("error", e),
        };
        out.attempts = attempt;
        if out.result == "ok" || attempt > retries {
            return out;
        }
        tokio::time::sleep(Duration::from_secs(1 << (attempt - 1).min(5))).await;
    }
}

async fn exec(command: &[String], timeout_ms: u32, event: &Value, blocking: bool) -> Outcome {
    let Some((prog, args)) = command.split_first() else {
        return Outcome::failed("error", "no command");
    };
    let mut cmd = tokio::process::Command::new(prog);
    cmd.args(args)
        .env("BRUME_EVENT", event["event"].as_str().unwrap_or(""))
        .env("BRUME_EVENT_ID", event["id"].to_string())
        .env("BRUME_STREAM", event["stream"].as_str().unwrap_or(""))
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true);
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) => return Outcome::failed("error", format!("{prog}: {e}")),
    };
    let mut stdin = child.stdin.take();
    let mut stdout = child.stdout.take();
    let body = event.to_string();
    let work = async {
        if let Some(mut i) = stdin.take() {
            // A program that does not read its input is fine.
            let _ = i.write_all(body.as_bytes()).await;
            let _ = i.write_all(b"\n").await;
        }
        let mut reply = Vec::new();
        if let Some(o) = &mut stdout {
            let _ = o.take(64 * 1024).read_to_end(&mut reply).await;
        }
        let status = child.wait().await;
        (status, reply)
    };
    match tokio::time::timeout(Duration::from_millis(timeout_ms.into()), work).await {
        Err(_) => Outcome::failed(
            "timeout",
            format!("no answer within {timeout_ms} ms; killed"),
        ),
        Ok((Err(e), _)) => Outcome::failed("error", e.to_string()),
        Ok((Ok(status), reply)) => {
            let text = String::from_utf8_lossy(&reply).into_owned();
            if !status.success() {
                return Outcome::failed("error", crate::angel::describe(status));
            }
            let mut o = Outcome::ok(crate::angel::describe(status));
            if blocking {
                o.decision = Some(parse_decision(&text).unwrap_or(Decision::Allow));
            }
            o
        }
    }
}

async fn builtin(
    state: &Shared,
    action: BuiltIn,
    stream: Option<&str>,
    push: Option<&str>,
    event: &Value,
) -> Outcome {
    let stream = stream
        .map(str::to_string)
        .or_else(|| event["stream"].as_str().map(str::to_string));
    let known = |s: &str| {
        state
            .config
            .lock()
            .expect("config lock")
            .streams
            .contains_key(s)
    };
    let need_stream = || match &stream {
        Some(s) if known(s) => Ok(s.clone()),
        Some(s) => Err(Outcome::failed("error", format!("no stream named {s:?}"))),
        None => Err(Outcome::failed(
            "error",
            "the event names no stream and the handler none",
        )),
    };
    match action {
        BuiltIn::StartRecording | BuiltIn::StopRecording | BuiltIn::ToggleRecording => {
            let s = match need_stream() {
                Ok(s) => s,
                Err(o) => return o,
            };
            let recording = super::recording::is_active(state, &s);
            let start = match action {
                BuiltIn::StartRecording => true,
                BuiltIn::StopRecording => false,
                _ => !recording,
            };
            if start && !recording {
                super::recording::start(state, &s);
                Outcome::ok(format!("recording {s} started"))
            } else if !start && recording {
                super::recording::stop(state, &s).await;
                Outcome::ok(format!("recording {s} stopped"))
            } else {
                Outcome::ok(format!(
                    "recording {s} already {}",
                    if recording { "running" } else { "stopped" }
                ))
            }
        }
        BuiltIn::RestartStream => {
            let s = match need_stream() {
                Ok(s) => s,
                Err(o) => return o,
            };
            super::supervisor::restart(state, &s).await;
            Outcome::ok(format!("stream {s} restarted"))
        }
        BuiltIn::StartPush | BuiltIn::StopPush => {
            let Some(p) = push else {
                return Outcome::failed("error", "no push named");
            };
            let r = if action == BuiltIn::StartPush {
                super::push::start(state, p)
            } else {
                super::push::stop(state, p).await
            };
            match r {
                Ok(d) => Outcome::ok(d),
                Err(e) => Outcome::failed("error", e),
            }
        }
    }
}

/// Runs the handlers of a blocking event in order; the first "deny" decides.
pub async fn decide(
    state: &Shared,
    name: &str,
    stream: Option<&str>,
    fields: Value,
) -> (Decision, String) {
    let event = make(state, name, stream, fields);
    Hub::remember(&state.events.recent, event.clone());
    let triggers = state.config.lock().expect("config lock").triggers.clone();
    for (index, t) in triggers.iter().enumerate() {
        if !matches(t, &event) {
            continue;
        }
        if run(state, index, t, &event, true).await == Decision::Deny {
            return (
                Decision::Deny,
                format!("denied by trigger {index} ({})", t.handler.kind()),
            );
        }
    }
    (Decision::Allow, String::new())
}

/// The longest a blocking event's handlers can take (for callers' deadlines).
pub fn blocking_budget(triggers: &[Trigger]) -> Duration {
    let ms: u64 = triggers
        .iter()
        .filter(|t| t.is_blocking())
        .map(|t| match &t.handler {
            Handler::Webhook { timeout_ms, .. } | Handler::Exec { timeout_ms, .. } => {
                u64::from(*timeout_ms)
            }
            _ => 0,
        })
        .sum();
    Duration::from_millis(ms + 1000)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decisions() {
        assert_eq!(parse_decision("deny\n"), Some(Decision::Deny));
        assert_eq!(parse_decision("ALLOW"), Some(Decision::Allow));
        assert_eq!(parse_decision("false"), Some(Decision::Deny));
        assert_eq!(
            parse_decision(r#"{"allow": false, "reason": "x"}"#),
            Some(Decision::Deny)
        );
        assert_eq!(parse_decision(r#"{"allow": true}"#), Some(Decision::Allow));
        assert_eq!(parse_decision("maybe"), None);
        assert_eq!(parse_decision(""), None);
    }

    #[test]
    fn times() {
        let t = UNIX_EPOCH + Duration::from_millis(1_764_000_000_123);
        assert_eq!(rfc3339(t), "2025-11-24T16:00:00.123Z");
    }

    #[test]
    fn matching() {
        let t: Trigger = serde_json::from_value(json!({
            "event": "gpio.edge", "match": {"pin": "button", "active": true},
            "handler": {"type": "action", "action": "toggle_recording", "stream": "demo"}
        }))
        .unwrap();
        let e = json!({"event": "gpio.edge", "pin": "button", "active": true});
        assert!(matches(&t, &e));
        assert!(!matches(
            &t,
            &json!({"event": "gpio.edge", "pin": "button", "active": false})
        ));
        assert!(!matches(
            &t,
            &json!({"event": "gpio.edge", "pin": "other", "active": true})
        ));
        let t: Trigger = serde_json::from_value(json!({
            "event": "stream.ready", "streams": ["a"],
            "handler": {"type": "webhook", "url": "http://127.0.0.1:1/"}
        }))
        .unwrap();
        assert!(matches(
            &t,
            &json!({"event": "stream.ready", "stream": "a"})
        ));
        assert!(!matches(
            &t,
            &json!({"event": "stream.ready", "stream": "b"})
        ));
        assert!(!matches(&t, &json!({"event": "stream.ready"})));
    }
}
