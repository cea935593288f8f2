//! Publish keys in the API: never shown after the call that made them.
//!
//! Like a push URL's stream key, a stream's publish key is redacted in every answer
//! (`"key": "…"`): `GET /streams`, `GET /streams/<name>`, `GET /config` (the export),
//! and the events that carry a stream's configuration. It is shown once, in the answer
//! that creates it: `POST /streams` (a key is made when none is given) and
//! `POST /streams/<name>/key` (a new one). A change that sends the redacted key back,
//! or none (`PUT /streams/<name>`, an import with `PUT /config`), keeps the stream's
//! key; a redacted key for a stream that has none is refused, naming the field.
//!
//! A stream's read password (`"read": {"user": …, "password": …}`) is kept as a hash
//! (see `config/access.rs`) and shown as `"…"` in every answer, including the one that
//! set it. Sending `"…"` back keeps the hash as long as the user name is the same (the
//! hash covers it); a plain password is hashed before the change is saved. An RTSP
//! source's URL shows its password as `…` too, and keeps it when sent back with the
//! same user, host and path.

use super::{change_config, prefix_field, stream_json, Admin, ApiError, ApiResult};
use crate::config::{Config, Source};
use crate::controller::Shared;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use serde_json::Value;

/// What answers show instead of a key.
pub const REDACTED: &str = "…";

/// A new publish key: 24 letters and digits (~139 bits).
pub fn new_key() -> String {
    crate::controller::auth::random_text(24)
}

/// Replaces the key and the read password of a serialised stream configuration
/// (`{"source": …}`).
pub fn redact_stream(v: &mut Value) {
    if v["source"]["type"] == "rtmp" {
        v["source"]["key"] = Value::from(REDACTED);
    }
    if let Some(read) = v.get_mut("read") {
        crate::config::ReadAccess::redact(read);
    }
    if v["source"]["type"] == "rtsp" {
        if let Some(url) = v["source"]["url"].as_str() {
            v["source"]["url"] = Value::from(crate::config::hide_url_password(url));
        }
    }
}

/// Replaces every key of a serialised configuration (`{"streams": …}`).
pub fn redact_config(v: &mut Value) {
    if let Some(streams) = v.get_mut("streams").and_then(Value::as_object_mut) {
        for s in streams.values_mut() {
            redact_stream(s);
        }
    }
}

/// A stream's configuration as events and answers show it.
pub fn shown(s: &crate::config::StreamConfig) -> Value {
    let mut v = serde_json::to_value(s).expect("a stream config always serialises");
    redact_stream(&mut v);
    v
}

fn is_placeholder(key: &str) -> bool {
    key.is_empty() || key == REDACTED || key.chars().all(|c| c == '•' || c == '…')
}

/// Before a change is validated: an RTMP stream of `new` whose key is the redacted
/// one (or missing) keeps its key from `old`. With nothing to keep, a missing key is
/// made when `generate` (the streams that got one are returned), and a redacted one
/// is refused.
pub fn keep_keys(old: &Config, new: &mut Config, generate: bool) -> ApiResult<Vec<String>> {
    keep_read_passwords(old, new);
    let mut made = Vec::new();
    for (name, s) in new.streams.iter_mut() {
        let Source::Rtmp { key } = &mut s.source else {
            continue;
        };
        if !is_placeholder(key) {
            continue;
        }
        let before = old.streams.get(name).and_then(|o| match &o.source {
            Source::Rtmp { key } => Some(key.clone()),
            _ => None,
        });
        match before {
            Some(k) => *key = k,
            None if generate && key.is_empty() => {
                *key = new_key();
                made.push(name.clone());
            }
            None => {
                return Err(ApiError {
                    status: StatusCode::UNPROCESSABLE_ENTITY,
                    error: "the publish key is hidden (exports and the API never show it); \
                            give this stream a key of its own, or leave it out to have one made"
                        .into(),
                    field: Some(format!("streams.{name}.source.key")),
                })
            }
        }
    }
    Ok(made)
}

/// Read passwords: a hidden one (`"…"`) keeps the stream's hash when the user name is
/// unchanged (validation refuses the ones left hidden); plain ones are hashed.
fn keep_read_passwords(old: &Config, new: &mut Config) {
    for (name, s) in new.streams.iter_mut() {
        // An RTSP source's URL keeps its password the same way.
        if let Source::Rtsp { url, .. } = &mut s.source {
            let before = old.streams.get(name).and_then(|o| match &o.source {
                Source::Rtsp { url, .. } => Some(url.as_str()),
                _ => None,
            });
            if let Some(kept) = before.and_then(|b| crate::config::keep_url_password(url, b)) {
                *url = kept;
            }
        }
        let Some(read) = &mut s.read else {
            continue;
        };
        if read.password.as_deref() == Some(crate::config::HIDDEN) {
            let before = old.streams.get(name).and_then(|o| o.read.as_ref());
            if let Some(b) = before.filter(|b| b.user == read.user && b.ha1.is_some()) {
                read.password = None;
                read.ha1 = b.ha1.clone();
            }
        }
        read.hash_password();
    }
}

/// The stream's answer with its real key: only for the call that made the key.
pub fn with_key(state: &Shared, name: &str, config: &Config) -> Value {
    let s = &config.streams[name];
    let mut v = stream_json(state, name, s);
    if let Source::Rtmp { key } = &s.source {
        v["config"]["source"]["key"] = Value::from(key.clone());
        v["key"] = Value::from(key.clone());
    }
    v
}

/// `POST /streams/<name>/key`: a new publish key, shown in this answer only. The
/// publisher that is connected stays until it reconnects; the next one needs the new key.
pub async fn regenerate(
    State(state): State<Shared>,
    _: Admin,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let n = name.clone();
    let config = change_config(&state, move |c| {
        let Some(s) = c.streams.get_mut(&n) else {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no stream named {n:?}"),
            ));
        };
        match &mut s.source {
            Source::Rtmp { key } => {
                *key = new_key();
                Ok(())
            }
            _ => Err(ApiError::new(
                StatusCode::CONFLICT,
                "only RTMP streams have a publish key",
            )),
        }
    })
    .await
    .map_err(|e| prefix_field(e, "streams", &name))?;
    tracing::info!(stream = %name, "new publish key made");
    Ok(Json(with_key(&state, &name, &config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(json: &str) -> Config {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn redacted_or_missing_keys_keep_the_old_one() {
        let old = config(r#"{"streams":{"a":{"source":{"type":"rtmp","key":"old-key-a"}}}}"#);
        let mut new = config(
            r#"{"streams":{"a":{"source":{"type":"rtmp","key":"…"}},"b":{"source":{"type":"rtmp"}}}}"#,
        );
        let made = keep_keys(&old, &mut new, true).unwrap_or_else(|e| panic!("{}", e.error));
        assert_eq!(made, ["b"]);
        assert_eq!(
            new.streams["a"].source,
            Source::Rtmp {
                key: "old-key-a".into()
            }
        );
        let Source::Rtmp { key } = &new.streams["b"].source else {
            panic!()
        };
        assert_eq!(key.len(), 24);
        new.validate().unwrap();

        // A redacted key with nothing to keep is refused, naming the field.
        let mut imported = config(r#"{"streams":{"c":{"source":{"type":"rtmp","key":"…"}}}}"#);
        let Err(e) = keep_keys(&old, &mut imported, true) else {
            panic!("a redacted key without a key to keep was taken")
        };
        assert_eq!(e.field.as_deref(), Some("streams.c.source.key"));
        // Without generation a missing key is refused too.
        let mut missing = config(r#"{"streams":{"c":{"source":{"type":"rtmp"}}}}"#);
        assert!(keep_keys(&old, &mut missing, false).is_err());
    }

    #[test]
    fn read_passwords_are_hashed_hidden_and_kept() {
        let mut old = config(
            r#"{"streams":{"a":{"source":{"type":"testsrc"},"read":{"user":"u","password":"p1"}}}}"#,
        );
        keep_keys(&Config::default(), &mut old, false).unwrap_or_else(|e| panic!("{}", e.error));
        let hash = old.streams["a"].read.clone().unwrap().ha1.unwrap();
        assert_eq!(old.streams["a"].read.as_ref().unwrap().password, None);
        let mut shown = serde_json::to_value(&old).unwrap();
        redact_config(&mut shown);
        assert_eq!(
            shown["streams"]["a"]["read"],
            serde_json::json!({"user": "u", "password": "…"})
        );
        // Sent back hidden: kept. With another user: refused at validation.
        let mut back: Config = serde_json::from_value(shown.clone()).unwrap();
        keep_keys(&old, &mut back, false).unwrap_or_else(|e| panic!("{}", e.error));
        back.validate().unwrap();
        assert_eq!(back.streams["a"].read.as_ref().unwrap().ha1, Some(hash));
        shown["streams"]["a"]["read"]["user"] = "v".into();
        let mut renamed: Config = serde_json::from_value(shown).unwrap();
        keep_keys(&old, &mut renamed, false).unwrap_or_else(|e| panic!("{}", e.error));
        assert_eq!(
            renamed.validate().unwrap_err().field,
            "streams.a.read.password"
        );
    }

    #[test]
    fn answers_hide_keys() {
        let mut v = serde_json::json!({"streams": {
            "a": {"source": {"type": "rtmp", "key": "secret-key"}},
            "b": {"source": {"type": "testsrc"}}}});
        redact_config(&mut v);
        assert_eq!(v["streams"]["a"]["source"]["key"], REDACTED);
        assert!(v["streams"]["b"]["source"].get("key").is_none());
    }
}
