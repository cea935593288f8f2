//! The viewer gate: connection workers ask here before serving a viewer when a
//! `viewer.requested` trigger is configured. One JSON line in (stream, ip, path,
//! query, user agent, protocol), one line out: `allow` or `deny <reason>`.
//!
//! Answers are cached per (stream, address, query) for [`CACHE`], so an HLS player's
//! playlist and segment requests cost one decision, not one per request.

use super::Shared;
use crate::config::Decision;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

const CACHE: Duration = Duration::from_secs(30);
const MAX_REQUEST: u64 = 8 * 1024;

/// (stream, address, query).
type Key = (String, String, String);

#[derive(Default)]
pub struct Gate {
    cache: Mutex<HashMap<Key, (Decision, String, Instant)>>,
}

impl Gate {
    /// Forgets every cached answer (the triggers changed).
    pub fn clear(&self) {
        self.cache.lock().expect("gate lock").clear();
    }
}

pub fn socket_path(env: &crate::env::Env) -> std::path::PathBuf {
    env.run_dir.join("gate.sock")
}

/// Serves the gate socket for the controller's lifetime.
pub async fn serve(state: Shared) {
    let path = socket_path(&state.env);
    let _ = std::fs::remove_file(&path);
    let listener = match tokio::net::UnixListener::bind(&path) {
        Ok(l) => l,
        Err(e) => {
            tracing::error!(path = %path.display(), error = %e, "cannot open the viewer gate");
            return;
        }
    };
    loop {
        let Ok((sock, _)) = listener.accept().await else {
            continue;
        };
        let st = state.clone();
        tokio::spawn(async move {
            let (r, mut w) = sock.into_split();
            let mut line = String::new();
            let mut reader = BufReader::new(tokio::io::AsyncReadExt::take(r, MAX_REQUEST));
            if reader.read_line(&mut line).await.is_err() {
                return;
            }
            let Ok(req) = serde_json::from_str::<Value>(&line) else {
                let _ = w.write_all(b"deny malformed request\n").await;
                return;
            };
            let (d, reason) = decide(&st, req).await;
            let answer = match d {
                Decision::Allow => "allow\n".to_string(),
                Decision::Deny => format!("deny {reason}\n"),
            };
            let _ = w.write_all(answer.as_bytes()).await;
        });
    }
}

async fn decide(state: &Shared, req: Value) -> (Decision, String) {
    let s = |k: &str| req.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let (stream, ip, query) = (s("stream"), s("ip"), s("query"));
    let key = (stream.clone(), ip.clone(), query.clone());
    {
        let mut cache = state.gate.cache.lock().expect("gate lock");
        cache.retain(|_, (_, _, at)| at.elapsed() < CACHE);
        if let Some((d, r, _)) = cache.get(&key) {
            return (*d, r.clone());
        }
    }
    let fields = serde_json::json!({
        "ip": ip,
        "path": s("path"),
        "query": query,
        "user_agent": s("user_agent"),
        "protocol": s("protocol"),
    });
    let (d, reason) =
        super::events::decide(state, crate::config::BLOCKING_EVENT, Some(&stream), fields).await;
    if d == Decision::Deny {
        tracing::info!(stream = ?stream, ip = ?ip, reason = ?reason, "viewer denied");
    }
    state
        .gate
        .cache
        .lock()
        .expect("gate lock")
        .insert(key, (d, reason.clone(), Instant::now()));
    (d, reason)
}
