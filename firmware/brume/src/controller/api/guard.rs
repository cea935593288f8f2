//! Cross-site and DNS-rebinding protection, before any handler runs.
//!
//! * **Host** (every request the controller answers): an IP literal, `localhost` (or a
//!   name under `.localhost`), the machine's host name or `<hostname>.local`, or a name
//!   in `http.allowed_hosts`. A page on `evil.example` whose name an attacker points at
//!   the board (DNS rebinding) sends `Host: evil.example` and is refused. A request
//!   without a Host header (not a browser) passes.
//! * **Origin** (POST, PUT, PATCH, DELETE): when a browser sends one, it must be the
//!   origin of the request's own Host, or in `http.allowed_origins`; `Origin: null` is
//!   refused, and so is `Sec-Fetch-Site: cross-site` or `same-site` without an Origin.
//! * **Content-Type** (API calls that change something): a body must be
//!   `application/json` (415 otherwise), which a cross-site form cannot send without a
//!   CORS preflight that the API never grants. A call without a body needs no type.
//!   The one exception is the upload of a new binary (`POST /api/v1/system/update`),
//!   whose body must be `application/octet-stream` instead; a cross-site form cannot
//!   send that type either.
//!
//! Session cookies are `SameSite=Strict; HttpOnly` as well (see `session_cookie`).

use super::ApiError;
use crate::controller::Shared;
use axum::extract::{Request, State};
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::net::IpAddr;

pub async fn check(State(state): State<Shared>, req: Request, next: Next) -> Response {
    let http = state.config.lock().expect("config lock").http.clone();
    if let Err(e) = admit(req.method(), req.uri().path(), req.headers(), &http) {
        return e.into_response();
    }
    next.run(req).await
}

fn refused(status: StatusCode, msg: String) -> ApiError {
    ApiError::new(status, msg)
}

/// The checks, on the request's method, path and headers.
pub fn admit(
    method: &Method,
    path: &str,
    headers: &HeaderMap,
    http: &crate::config::Http,
) -> Result<(), ApiError> {
    let host = match headers.get(header::HOST) {
        None => None,
        Some(v) => Some(
            v.to_str()
                .ok()
                .map(|s| s.trim().to_ascii_lowercase())
                .filter(|s| !s.is_empty())
                .ok_or_else(|| {
                    refused(
                        StatusCode::BAD_REQUEST,
                        "the Host header is unreadable".into(),
                    )
                })?,
        ),
    };
    if let Some(h) = &host {
        let name = host_name(h);
        if !host_allowed(name, &http.allowed_hosts) {
            tracing::warn!(host = ?h, path = ?path, "refused a request for a foreign host name");
            return Err(refused(
                StatusCode::FORBIDDEN,
                format!(
                    "this board does not answer to the name {name:?}; use its address, \
                     or add the name to http.allowed_hosts in the configuration"
                ),
            ));
        }
    }
    let changes = matches!(
        *method,
        Method::POST | Method::PUT | Method::PATCH | Method::DELETE
    );
    if !changes {
        return Ok(());
    }
    match headers.get(header::ORIGIN) {
        Some(o) => {
            let origin = o.to_str().unwrap_or("").trim().to_ascii_lowercase();
            let own = host.as_deref().is_some_and(|h| same_origin(&origin, h));
            let listed = http
                .allowed_origins
                .iter()
                .any(|a| a.trim_end_matches('/').eq_ignore_ascii_case(&origin));
            if !own && !listed {
                tracing::warn!(origin = ?origin, path = ?path, "refused a cross-origin request");
                return Err(refused(
                    StatusCode::FORBIDDEN,
                    format!(
                        "requests from the page {origin:?} are not accepted; add the origin \
                         to http.allowed_origins in the configuration to allow it"
                    ),
                ));
            }
        }
        None => {
            let site = headers
                .get("sec-fetch-site")
                .and_then(|v| v.to_str().ok())
                .unwrap_or("");
            if site.eq_ignore_ascii_case("cross-site") || site.eq_ignore_ascii_case("same-site") {
                return Err(refused(
                    StatusCode::FORBIDDEN,
                    "requests from other sites are not accepted".into(),
                ));
            }
        }
    }
    if super::update::is_upload(method, path) {
        binary_body(headers)?;
    } else if path.starts_with("/api/") {
        json_body(headers)?;
    }
    Ok(())
}

/// A body must be declared JSON; no body needs no type.
fn json_body(headers: &HeaderMap) -> Result<(), ApiError> {
    let unsupported = |what: String| {
        refused(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!("the API takes JSON bodies (Content-Type: application/json), not {what}"),
        )
    };
    match headers.get(header::CONTENT_TYPE) {
        Some(v) => {
            let t = v.to_str().unwrap_or("");
            let essence = t.split(';').next().unwrap_or("").trim();
            if essence.eq_ignore_ascii_case("application/json") {
                Ok(())
            } else {
                Err(unsupported(format!("{t:?}")))
            }
        }
        None => {
            let length = headers
                .get(header::CONTENT_LENGTH)
                .and_then(|v| v.to_str().ok())
                .map(|v| v.trim() != "0")
                .unwrap_or(false);
            if length || headers.contains_key(header::TRANSFER_ENCODING) {
                Err(unsupported("a body without a Content-Type".into()))
            } else {
                Ok(())
            }
        }
    }
}

/// The upload of a new binary: its body must be declared `application/octet-stream`.
fn binary_body(headers: &HeaderMap) -> Result<(), ApiError> {
    let t = headers
        .get(header::CONTENT_TYPE)
        .map(|v| v.to_str().unwrap_or(""))
        .unwrap_or("");
    let essence = t.split(';').next().unwrap_or("").trim();
    if essence.eq_ignore_ascii_case("application/octet-stream") {
        Ok(())
    } else {
        Err(refused(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            format!(
                "an update is the binary itself (Content-Type: application/octet-stream), not {}",
                if t.is_empty() {
                    "a body without a Content-Type".to_string()
                } else {
                    format!("{t:?}")
                }
            ),
        ))
    }
}

/// The name part of a Host header (lower case): without the port, the brackets of an
/// IPv6 literal and a trailing dot.
fn host_name(host: &str) -> &str {
    let name = if let Some(rest) = host.strip_prefix('[') {
        rest.split(']').next().unwrap_or("")
    } else {
        match host.rsplit_once(':') {
            Some((n, port)) if port.bytes().all(|b| b.is_ascii_digit()) => n,
            _ => host,
        }
    };
    name.strip_suffix('.').unwrap_or(name)
}

fn host_allowed(name: &str, allowed: &[String]) -> bool {
    if name.parse::<IpAddr>().is_ok() || name == "localhost" || name.ends_with(".localhost") {
        return true;
    }
    if let Some(me) = machine_hostname() {
        let me = me.to_ascii_lowercase();
        if name == me || name.strip_suffix(".local") == Some(me.as_str()) {
            return true;
        }
    }
    allowed.iter().any(|a| {
        let a = a.strip_suffix('.').unwrap_or(a);
        a.eq_ignore_ascii_case(name)
    })
}

fn machine_hostname() -> Option<String> {
    let mut buf = [0u8; 256];
    // SAFETY: gethostname writes at most buf.len() bytes into the buffer we own.
    let r = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if r != 0 {
        return None;
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    let name = std::str::from_utf8(&buf[..end]).ok()?.trim();
    (!name.is_empty()).then(|| name.to_string())
}

/// True when `origin` (`scheme://authority`, lower case) is the origin of a page
/// served under `host` (the Host header, lower case); default ports are ignored.
fn same_origin(origin: &str, host: &str) -> bool {
    let (scheme, authority) = match origin.split_once("://") {
        Some((s @ ("http" | "https"), a)) => (s, a),
        _ => return false,
    };
    let strip = |a: &str| -> String {
        let default = if scheme == "https" { ":443" } else { ":80" };
        a.strip_suffix(default).unwrap_or(a).to_string()
    };
    !authority.is_empty() && strip(authority) == strip(host)
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderValue;

    fn headers(list: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (n, v) in list {
            h.append(*n, HeaderValue::from_static(v));
        }
        h
    }

    fn status(method: Method, path: &str, list: &[(&'static str, &'static str)]) -> u16 {
        let http = crate::config::Http {
            allowed_hosts: vec!["cam.example.lan".into()],
            allowed_origins: vec!["https://proxy.example.lan".into()],
        };
        match admit(&method, path, &headers(list), &http) {
            Ok(()) => 200,
            Err(e) => e.status.as_u16(),
        }
    }

    #[test]
    fn host_names_the_board_answers_to() {
        for ok in [
            "127.0.0.1:8080",
            "192.168.1.20",
            "[::1]:8080",
            "[fe80::1]",
            "localhost:8080",
            "Brume.localhost",
            "cam.example.lan:8080",
            "cam.example.lan.",
        ] {
            let h = HeaderValue::from_str(ok).unwrap();
            let mut map = HeaderMap::new();
            map.insert(header::HOST, h);
            let http = crate::config::Http {
                allowed_hosts: vec!["cam.example.lan".into()],
                ..Default::default()
            };
            assert!(
                admit(&Method::GET, "/api/v1/setup", &map, &http).is_ok(),
                "{ok}"
            );
        }
        for bad in [
            "evil.example",
            "evil.example:8080",
            "127.0.0.1.nip.io",
            "localhost.evil",
        ] {
            let mut map = HeaderMap::new();
            map.insert(header::HOST, HeaderValue::from_str(bad).unwrap());
            let r = admit(&Method::GET, "/", &map, &Default::default());
            assert!(r.is_err(), "{bad}");
        }
        if let Some(me) = machine_hostname() {
            assert!(host_allowed(&me.to_ascii_lowercase(), &[]));
            assert!(host_allowed(
                &format!("{}.local", me.to_ascii_lowercase()),
                &[]
            ));
        }
    }

    #[test]
    fn origins_and_bodies_of_changes() {
        let json = ("content-type", "application/json");
        let host = ("host", "10.0.0.5:8080");
        let post =
            |list: &[(&'static str, &'static str)]| status(Method::POST, "/api/v1/login", list);
        assert_eq!(post(&[host, json, ("origin", "http://10.0.0.5:8080")]), 200);
        assert_eq!(post(&[host, json]), 200, "curl sends no Origin");
        assert_eq!(
            post(&[host, json, ("origin", "https://proxy.example.lan")]),
            200
        );
        assert_eq!(post(&[host, json, ("origin", "http://evil.example")]), 403);
        assert_eq!(post(&[host, json, ("origin", "null")]), 403);
        assert_eq!(post(&[host, json, ("origin", "http://10.0.0.5:9090")]), 403);
        assert_eq!(post(&[host, json, ("sec-fetch-site", "cross-site")]), 403);
        assert_eq!(
            post(&[
                host,
                ("content-type", "text/plain"),
                ("content-length", "5")
            ]),
            415
        );
        assert_eq!(post(&[host, ("content-length", "5")]), 415);
        assert_eq!(post(&[host, ("content-length", "0")]), 200);
        assert_eq!(
            post(&[host, ("content-type", "application/json; charset=utf-8")]),
            200
        );
        assert_eq!(post(&[("host", "evil.example:8080"), json]), 403);
        // Same origin on the default port.
        assert_eq!(
            status(
                Method::DELETE,
                "/api/v1/streams/x",
                &[("host", "localhost"), ("origin", "http://localhost")]
            ),
            200
        );
        // The upload of a binary takes exactly that type, and only there.
        let binary = ("content-type", "application/octet-stream");
        let update = |list: &[(&'static str, &'static str)]| {
            status(Method::POST, "/api/v1/system/update", list)
        };
        assert_eq!(update(&[host, binary, ("content-length", "5")]), 200);
        assert_eq!(update(&[host, json, ("content-length", "5")]), 415);
        assert_eq!(update(&[host, ("content-length", "5")]), 415);
        assert_eq!(
            update(&[host, binary, ("origin", "http://evil.example")]),
            403
        );
        assert_eq!(update(&[("host", "evil.example"), binary]), 403);
        assert_eq!(post(&[host, binary, ("content-length", "5")]), 415);
        assert_eq!(
            status(
                Method::PUT,
                "/api/v1/system/update",
                &[host, binary, ("content-length", "5")]
            ),
            415
        );
        // Reads need no Origin check.
        assert_eq!(
            status(
                Method::GET,
                "/api/v1/streams",
                &[host, ("origin", "http://evil.example")]
            ),
            200
        );
    }
}
