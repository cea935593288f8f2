//! The viewer gate: connection workers ask here before serving a viewer when a
//! `viewer.requested` trigger is configured. One JSON line in (stream, ip, path,
//! query, user agent, protocol), one line out: `allow`, `deny <reason>`, or `missing`
//! for a stream that does not exist (no handler runs; the worker answers 404).
//!
//! Answers are cached for [`CACHE`] per (stream, address, access parameters), so an
//! HLS player's playlist and segment requests cost one decision, not one per request.
//! The access parameters are the values of the query's `token` and `key` parameters
//! ([`ACCESS_PARAMS`]), and they are all of the query a handler sees: extra or varied
//! query parameters can neither change a decision nor multiply handler runs. The path,
//! user agent and protocol a handler sees are those of the request that ran it.
//! Concurrent identical requests are coalesced: one runs the handlers, the others wait
//! for its answer.

use super::Shared;
use crate::config::Decision;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::sync::watch;

const CACHE: Duration = Duration::from_secs(30);
const MAX_REQUEST: u64 = 8 * 1024;
/// Cached answers kept at most (the oldest goes first beyond this).
const MAX_ENTRIES: usize = 4096;
/// The query parameters a `viewer.requested` handler sees, and the cache keys on.
pub const ACCESS_PARAMS: &[&str] = &["token", "key"];

/// (stream, address, access parameters).
type Key = (String, String, String);

type Answer = (Decision, String);

enum Entry {
    Done(Answer, Instant),
    /// A request is running the handlers; its answer arrives here.
    Pending(watch::Receiver<Option<Answer>>),
}

#[derive(Default)]
pub struct Gate {
    cache: Mutex<HashMap<Key, Entry>>,
}

impl Gate {
    /// Forgets every cached answer (the triggers changed).
    pub fn clear(&self) {
        self.cache.lock().expect("gate lock").clear();
    }
}

/// The access parameters of a query string, in a fixed order (`token=…&key=…`, the
/// first value of each, as sent); everything else is dropped.
pub fn access_query(query: &str) -> String {
    let mut out = Vec::new();
    for name in ACCESS_PARAMS {
        let value = query.split('&').find_map(|kv| {
            let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
            (k == *name).then_some(v)
        });
        if let Some(v) = value {
            out.push(format!("{name}={v}"));
        }
    }
    out.join("&")
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
            let answer = match decide(&st, req).await {
                None => "missing\n".to_string(),
                Some((Decision::Allow, _)) => "allow\n".to_string(),
                Some((Decision::Deny, reason)) => format!("deny {reason}\n"),
            };
            let _ = w.write_all(answer.as_bytes()).await;
        });
    }
}

/// The answer for one viewer (None: no such stream), from the cache, from a request
/// already running the handlers, or from running them.
async fn decide(state: &Shared, req: Value) -> Option<Answer> {
    let s = |k: &str| req.get(k).and_then(Value::as_str).unwrap_or("").to_string();
    let (stream, ip) = (s("stream"), s("ip"));
    if !state.config.lock().expect("config lock").serves(&stream) {
        return None;
    }
    let query = access_query(&s("query"));
    let key = (stream.clone(), ip.clone(), query.clone());
    loop {
        let (tx, rx) = {
            let mut cache = state.gate.cache.lock().expect("gate lock");
            cache.retain(|_, e| match e {
                Entry::Done(_, at) => at.elapsed() < CACHE,
                Entry::Pending(_) => true,
            });
            match cache.get(&key) {
                Some(Entry::Done(a, _)) => return Some(a.clone()),
                Some(Entry::Pending(rx)) => (None, rx.clone()),
                None => {
                    if cache.len() >= MAX_ENTRIES {
                        evict_oldest(&mut cache);
                    }
                    let (tx, rx) = watch::channel(None);
                    cache.insert(key.clone(), Entry::Pending(rx.clone()));
                    (Some(tx), rx)
                }
            }
        };
        let Some(tx) = tx else {
            // Another request runs the handlers: wait for its answer. If it vanished
            // without one, ask again (its entry is gone, see Running).
            let mut rx = rx;
            let waited = rx.wait_for(Option::is_some).await.map(|a| a.clone());
            let answer = waited.unwrap_or_else(|_| rx.borrow().clone());
            match answer {
                Some(a) => return Some(a),
                None => continue,
            }
        };
        let running = Running {
            state,
            key: &key,
            rx: &rx,
        };
        let fields = serde_json::json!({
            "ip": ip,
            "path": s("path"),
            "query": query,
            "user_agent": s("user_agent"),
            "protocol": s("protocol"),
        });
        let answer =
            super::events::decide(state, crate::config::BLOCKING_EVENT, Some(&stream), fields)
                .await;
        if answer.0 == Decision::Deny {
            tracing::info!(stream = ?stream, ip = ?ip, reason = ?answer.1, "viewer denied");
        }
        {
            let mut cache = state.gate.cache.lock().expect("gate lock");
            // Unless the triggers changed meanwhile (the cache was cleared).
            if matches!(cache.get(&key), Some(Entry::Pending(p)) if p.same_channel(&rx)) {
                cache.insert(key.clone(), Entry::Done(answer.clone(), Instant::now()));
            }
        }
        drop(running);
        let _ = tx.send(Some(answer.clone()));
        return Some(answer);
    }
}

/// Removes a running request's pending entry if it ends without an answer (its
/// waiters then ask again instead of waiting on a sender that is gone).
struct Running<'a> {
    state: &'a Shared,
    key: &'a Key,
    rx: &'a watch::Receiver<Option<Answer>>,
}

impl Drop for Running<'_> {
    fn drop(&mut self) {
        let Ok(mut cache) = self.state.gate.cache.lock() else {
            return;
        };
        if matches!(cache.get(self.key), Some(Entry::Pending(p)) if p.same_channel(self.rx)) {
            cache.remove(self.key);
        }
    }
}

fn evict_oldest(cache: &mut HashMap<Key, Entry>) {
    let oldest = cache
        .iter()
        .filter_map(|(k, e)| match e {
            Entry::Done(_, at) => Some((k, *at)),
            Entry::Pending(_) => None,
        })
        .min_by_key(|(_, at)| *at)
        .map(|(k, _)| k.clone());
    if let Some(k) = oldest {
        cache.remove(&k);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_access_parameters_count() {
        assert_eq!(access_query(""), "");
        assert_eq!(access_query("junk=1&_=2"), "");
        assert_eq!(access_query("a=1&token=t1&b=2"), "token=t1");
        assert_eq!(access_query("key=k&x=1&token=t"), "token=t&key=k");
        assert_eq!(access_query("token=t&token=u"), "token=t");
        assert_eq!(access_query("tokens=t&xtoken=u"), "");
    }
}
