//! The web UI's static files, embedded at build time (build.rs): `/` is
//! `web/index.html`, `/ui/...` is `web/ui/...`. Served gzip-compressed to clients that
//! accept it, with an ETag so browsers revalidate instead of downloading again.
//!
//! The files carry no data and need no login: the UI asks the API for everything.

use axum::http::{header, HeaderMap, HeaderValue, StatusCode, Uri};
use axum::response::{IntoResponse, Response};

pub struct Asset {
    pub path: &'static str,
    pub content_type: &'static str,
    pub etag: &'static str,
    pub body: &'static [u8],
    pub gzip: Option<&'static [u8]>,
}

include!(concat!(env!("OUT_DIR"), "/ui_assets.rs"));

/// Scripts, styles, media and API calls only from this origin; no framing.
const CSP: &str = "default-src 'self'; img-src 'self' data: blob:; media-src 'self' blob:; \
                   style-src 'self'; script-src 'self'; connect-src 'self'; \
                   object-src 'none'; base-uri 'none'; frame-ancestors 'none'";

pub fn find(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|a| a.path == path)
}

fn accepts_gzip(headers: &HeaderMap) -> bool {
    headers
        .get_all(header::ACCEPT_ENCODING)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|e| {
            let mut parts = e.split(';');
            let name = parts.next().unwrap_or("").trim();
            let refused = parts.any(|p| {
                p.trim()
                    .strip_prefix("q=")
                    .and_then(|q| q.trim().parse::<f32>().ok())
                    .is_some_and(|q| q == 0.0)
            });
            (name.eq_ignore_ascii_case("gzip") || name == "*") && !refused
        })
}

pub fn respond(asset: &Asset, headers: &HeaderMap) -> Response {
    let mut h = HeaderMap::new();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(asset.content_type),
    );
    h.insert(header::ETAG, HeaderValue::from_static(asset.etag));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(header::VARY, HeaderValue::from_static("Accept-Encoding"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    if asset.content_type.starts_with("text/html") {
        h.insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
        h.insert(
            header::REFERRER_POLICY,
            HeaderValue::from_static("same-origin"),
        );
    }
    let fresh = headers
        .get(header::IF_NONE_MATCH)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.split(',').any(|t| t.trim() == asset.etag));
    if fresh {
        return (StatusCode::NOT_MODIFIED, h).into_response();
    }
    match asset.gzip {
        Some(gz) if accepts_gzip(headers) => {
            h.insert(header::CONTENT_ENCODING, HeaderValue::from_static("gzip"));
            (h, gz).into_response()
        }
        _ => (h, asset.body).into_response(),
    }
}

pub async fn index(headers: HeaderMap) -> Response {
    respond(
        find("/").expect("build.rs always embeds index.html"),
        &headers,
    )
}

pub async fn file(uri: Uri, headers: HeaderMap) -> Response {
    match find(uri.path()) {
        Some(a) => respond(a, &headers),
        None => (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "no such file in the web UI\n",
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_asset_is_embedded_and_the_ui_is_small() {
        let index = find("/").expect("index.html");
        let html = std::str::from_utf8(index.body).expect("UTF-8");
        assert!(html.contains("/ui/app.js"), "index.html loads the app");
        let mut total = 0;
        for a in ASSETS {
            assert!(a.path == "/" || a.path.starts_with("/ui/"), "{}", a.path);
            assert!(
                !crate::worker::is_media_path(a.path),
                "{} would be routed to a media worker",
                a.path
            );
            total += a.gzip.map_or(a.body.len(), <[u8]>::len);
        }
        assert!(
            total < 150 * 1024,
            "the whole UI is {total} bytes gzipped; the budget is 150 KB"
        );
    }

    #[test]
    fn gzip_only_when_the_client_takes_it() {
        let mut h = HeaderMap::new();
        assert!(!accepts_gzip(&h));
        h.insert(
            header::ACCEPT_ENCODING,
            "gzip, deflate, br".parse().unwrap(),
        );
        assert!(accepts_gzip(&h));
        h.insert(header::ACCEPT_ENCODING, "br, gzip;q=0".parse().unwrap());
        assert!(!accepts_gzip(&h));
        h.insert(header::ACCEPT_ENCODING, "identity".parse().unwrap());
        assert!(!accepts_gzip(&h));
    }
}
