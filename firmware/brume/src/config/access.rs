//! Who may watch a stream: its read credentials (`"read": {"user": …, "password": …}`).
//!
//! The file keeps the user name and HA1 = MD5(user:realm:password), never the password:
//! HA1 is what an RTSP Digest check needs (and a Basic one, hashed the same way), and it
//! is worthless for any other realm. A password given in the file by hand or through the
//! API is hashed when the configuration is read (`brume serve` then saves it hashed) or
//! changed. Answers show `"password": "…"`; sending that back keeps the hash (see
//! `controller/api/keys.rs`).

use super::{field_err, FieldError};
use serde::{Deserialize, Serialize};

/// The realm of every challenge. HA1 hashes it in, so it never changes.
pub const REALM: &str = "brume";

/// What answers show instead of a password, and what keeps the stored hash when sent.
pub const HIDDEN: &str = "…";

#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReadAccess {
    pub user: String,
    /// Only on the way in (a hand edit, an API call): hashed into `ha1`, then dropped.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<String>,
    /// MD5(user ":" REALM ":" password), 32 hex digits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ha1: Option<String>,
}

impl std::fmt::Debug for ReadAccess {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReadAccess")
            .field("user", &self.user)
            .finish_non_exhaustive()
    }
}

impl ReadAccess {
    /// Replaces a plain password by its hash. A hidden one (`"…"`) is left for the API
    /// to resolve, and refused by [`ReadAccess::validate`] if it cannot.
    pub fn hash_password(&mut self) {
        if let Some(p) = self.password.take() {
            if p == HIDDEN {
                self.password = Some(p);
            } else {
                let h = brume_proto::auth::ha1(&self.user, REALM, &p);
                self.ha1 = Some(brume_proto::auth::hex(&h));
            }
        }
    }

    /// The credentials a worker checks viewers against.
    pub fn secret(&self) -> Option<brume_proto::auth::Secret> {
        let ha1 = match (&self.password, &self.ha1) {
            (Some(p), _) if p != HIDDEN => brume_proto::auth::ha1(&self.user, REALM, p),
            (_, Some(h)) => brume_proto::auth::parse_hex16(h)?,
            _ => return None,
        };
        Some(brume_proto::auth::Secret {
            user: self.user.clone(),
            ha1,
        })
    }

    pub fn validate(&self) -> Result<(), FieldError> {
        // Basic puts a ':' after the user name, Digest quotes it: neither may be in it.
        let user_ok = !self.user.is_empty()
            && self.user.len() <= 64
            && self
                .user
                .bytes()
                .all(|b| b.is_ascii_graphic() && !b":\"\\".contains(&b));
        if !user_ok {
            return Err(field_err(
                "read.user",
                "1-64 visible ASCII characters without : \" or \\",
            ));
        }
        match (&self.password, &self.ha1) {
            (Some(p), _) if p == HIDDEN => Err(field_err(
                "read.password",
                "the password is hidden (answers and exports never show it) and there is \
                 no password of this user to keep; give the password",
            )),
            (Some(p), _) if p.is_empty() || p.len() > 128 || p.chars().any(char::is_control) => {
                Err(field_err(
                    "read.password",
                    "1-128 characters, no control characters",
                ))
            }
            (Some(_), _) => Ok(()),
            (None, Some(h)) if brume_proto::auth::parse_hex16(h).is_some() => Ok(()),
            (None, Some(_)) => Err(field_err(
                "read.ha1",
                "32 hex digits: MD5 of user:brume:password",
            )),
            (None, None) => Err(field_err("read.password", "a password is needed")),
        }
    }

    /// The answers' form: the user, the password hidden.
    pub fn redact(v: &mut serde_json::Value) {
        if let Some(o) = v.as_object_mut() {
            o.remove("ha1");
            o.insert("password".into(), HIDDEN.into());
        }
    }
}

/// A URL split at its password: (everything before it, the password, everything after
/// it), when it has one (`scheme://user:password@host/…`).
fn split_url_password(url: &str) -> Option<(&str, &str, &str)> {
    let after_scheme = url.find("://")? + 3;
    let rest = &url[after_scheme..];
    let authority = &rest[..rest.find(['/', '?', '#']).unwrap_or(rest.len())];
    let at = authority.rfind('@')?;
    let colon = authority[..at].find(':')?;
    let (start, end) = (after_scheme + colon + 1, after_scheme + at);
    Some((&url[..start], &url[start..end], &url[end..]))
}

/// A URL as answers and logs show it: its password (if any) replaced by `…`.
pub fn hide_url_password(url: &str) -> String {
    match split_url_password(url) {
        Some((before, _, after)) => format!("{before}{HIDDEN}{after}"),
        None => url.to_string(),
    }
}

/// True when the URL's password is the hidden one (`…`, or it percent-encoded).
pub fn url_password_hidden(url: &str) -> bool {
    split_url_password(url).is_some_and(|(_, p, _)| p == HIDDEN || p == "%E2%80%A6")
}

/// `new` with the password of `old` in place of its hidden one, when both name the same
/// user at the same place (the password is only good there).
pub fn keep_url_password(new: &str, old: &str) -> Option<String> {
    let (nb, _, na) = split_url_password(new)?;
    let (ob, op, oa) = split_url_password(old)?;
    (url_password_hidden(new) && (nb, na) == (ob, oa)).then(|| format!("{nb}{op}{na}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_hashed_and_checked() {
        let mut a: ReadAccess =
            serde_json::from_str(r#"{"user":"viewer","password":"s3cret"}"#).unwrap();
        a.validate().unwrap();
        let before = a.secret().unwrap();
        a.hash_password();
        assert_eq!(a.password, None);
        a.validate().unwrap();
        assert_eq!(a.secret().unwrap(), before);
        let text = serde_json::to_string(&a).unwrap();
        assert!(
            !text.contains("s3cret") && text.contains("\"ha1\""),
            "{text}"
        );
        assert!(!format!("{a:?}").contains("ha1"));

        let bad = |json: &str| -> String {
            let a: ReadAccess = serde_json::from_str(json).unwrap();
            a.validate().unwrap_err().field
        };
        assert_eq!(bad(r#"{"user":"a:b","password":"x"}"#), "read.user");
        assert_eq!(bad(r#"{"user":"","password":"x"}"#), "read.user");
        assert_eq!(bad(r#"{"user":"a","password":""}"#), "read.password");
        assert_eq!(bad(r#"{"user":"a","password":"…"}"#), "read.password");
        assert_eq!(bad(r#"{"user":"a"}"#), "read.password");
        assert_eq!(bad(r#"{"user":"a","ha1":"xyz"}"#), "read.ha1");
    }

    #[test]
    fn url_passwords() {
        let url = "rtsp://admin:p%40ss@cam.lan:554/Streaming/101?a=b@c";
        let shown = hide_url_password(url);
        assert_eq!(shown, "rtsp://admin:…@cam.lan:554/Streaming/101?a=b@c");
        assert!(url_password_hidden(&shown) && !url_password_hidden(url));
        assert_eq!(keep_url_password(&shown, url).as_deref(), Some(url));
        // Another user or host: the old password is not sent there.
        let other = "rtsp://root:…@cam.lan:554/Streaming/101?a=b@c";
        assert_eq!(keep_url_password(other, url), None);
        assert_eq!(hide_url_password("rtsp://cam/1"), "rtsp://cam/1");
        assert_eq!(hide_url_password("rtsp://user@cam/1"), "rtsp://user@cam/1");
    }
}
