//! A small HTTP/1.1 client for webhooks: one POST per connection, a deadline on the
//! whole exchange, a bounded reply. Plain `http://` only: an appliance posting to a
//! local automation server or a relay; TLS would add a crypto stack to every board.

use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The largest reply read (status line, headers and body).
const MAX_REPLY: usize = 64 * 1024;

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HttpUrl {
    pub host: String,
    pub port: u16,
    /// Path and query, starting with '/'.
    pub target: String,
}

impl HttpUrl {
    pub fn parse(url: &str) -> Result<HttpUrl, String> {
        let rest = if let Some(r) = url.strip_prefix("http://") {
            r
        } else if url.starts_with("https://") {
            return Err("https is not supported: use http:// (e.g. a local relay)".into());
        } else {
            return Err("an http:// URL".into());
        };
        if url.len() > 2048 || url.bytes().any(|b| b <= b' ' || b == 0x7f) {
            return Err("a URL without spaces or control characters, up to 2048 bytes".into());
        }
        let (authority, target) = match rest.find(['/', '?']) {
            Some(i) if rest.as_bytes()[i] == b'/' => (&rest[..i], rest[i..].to_string()),
            Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
            None => (rest, "/".to_string()),
        };
        if authority.contains('@') {
            return Err("user:password@ in the URL is not supported".into());
        }
        let (host, port) = if let Some(h) = authority.strip_prefix('[') {
            let (h, p) = h
                .split_once(']')
                .ok_or("an IPv6 address needs a closing ]")?;
            (h.to_string(), p)
        } else {
            match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), p),
                None => (authority.to_string(), ""),
            }
        };
        let port = match port {
            "" => 80,
            p => p
                .strip_prefix(':')
                .unwrap_or(p)
                .parse::<u16>()
                .ok()
                .filter(|p| *p > 0)
                .ok_or("the port must be 1..=65535")?,
        };
        if host.is_empty() {
            return Err("the URL needs a host".into());
        }
        Ok(HttpUrl { host, port, target })
    }
}

/// A reply: status code and body.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub body: String,
}

/// POSTs `body` (JSON) to `url`, all within `timeout`.
pub async fn post_json(
    url: &HttpUrl,
    body: &[u8],
    headers: &[(&str, &str)],
    timeout: Duration,
) -> Result<Reply, String> {
    match tokio::time::timeout(timeout, exchange(url, body, headers)).await {
        Ok(r) => r,
        Err(_) => Err(format!("timed out after {} ms", timeout.as_millis())),
    }
}

async fn exchange(url: &HttpUrl, body: &[u8], headers: &[(&str, &str)]) -> Result<Reply, String> {
    let addr = format!("{}:{}", url.host, url.port);
    let addr = if url.host.contains(':') {
        format!("[{}]:{}", url.host, url.port)
    } else {
        addr
    };
    let mut sock = tokio::net::TcpStream::connect(&addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let host_header = if url.port == 80 {
        url.host.clone()
    } else {
        format!("{}:{}", url.host, url.port)
    };
    let mut req = format!(
        "POST {} HTTP/1.1\r\nHost: {host_header}\r\nUser-Agent: Brume/{}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n",
        url.target,
        env!("CARGO_PKG_VERSION"),
        body.len()
    );
    for (k, v) in headers {
        req.push_str(&format!("{k}: {v}\r\n"));
    }
    req.push_str("\r\n");
    let mut out = req.into_bytes();
    out.extend_from_slice(body);
    sock.write_all(&out)
        .await
        .map_err(|e| format!("send: {e}"))?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        let n = sock
            .read(&mut chunk)
            .await
            .map_err(|e| format!("receive: {e}"))?;
        if n == 0 {
            break;
        }
        buf.extend_from_slice(&chunk[..n]);
        if buf.len() > MAX_REPLY {
            return Err(format!("reply larger than {MAX_REPLY} bytes"));
        }
        // Stop early once a Content-Length body is complete (servers that keep the
        // connection open despite `Connection: close`).
        if let Some(done) = complete_len(&buf) {
            buf.truncate(done);
            break;
        }
    }
    parse_reply(&buf)
}

fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

fn content_length(head: &str) -> Option<usize> {
    head.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case("content-length")
            .then(|| v.trim().parse().ok())?
    })
}

fn complete_len(buf: &[u8]) -> Option<usize> {
    let end = head_end(buf)?;
    let head = std::str::from_utf8(&buf[..end]).ok()?;
    let len = content_length(head)?;
    (buf.len() >= end + len).then_some(end + len)
}

fn parse_reply(buf: &[u8]) -> Result<Reply, String> {
    let end = head_end(buf).ok_or("the reply ended before its headers")?;
    let head = String::from_utf8_lossy(&buf[..end]);
    let status_line = head.lines().next().unwrap_or("");
    let mut parts = status_line.split_whitespace();
    let status = match (parts.next(), parts.next()) {
        (Some(v), Some(code)) if v.starts_with("HTTP/1.") => code
            .parse::<u16>()
            .map_err(|_| format!("bad status line {status_line:?}"))?,
        _ => return Err(format!("not an HTTP reply: {status_line:?}")),
    };
    let chunked = head.lines().any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("transfer-encoding")
                && v.to_ascii_lowercase().contains("chunked")
        })
    });
    let raw = &buf[end..];
    let body = if chunked { dechunk(raw) } else { raw.to_vec() };
    Ok(Reply {
        status,
        body: String::from_utf8_lossy(&body).into_owned(),
    })
}

fn dechunk(mut raw: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    while let Some(i) = raw.windows(2).position(|w| w == b"\r\n") {
        let size = std::str::from_utf8(&raw[..i])
            .ok()
            .and_then(|s| usize::from_str_radix(s.split(';').next()?.trim(), 16).ok());
        let Some(size) = size.filter(|s| *s > 0) else {
            break;
        };
        raw = &raw[i + 2..];
        let take = size.min(raw.len());
        out.extend_from_slice(&raw[..take]);
        raw = raw.get(take + 2..).unwrap_or(&[]);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls() {
        let u = HttpUrl::parse("http://127.0.0.1:9000/hook?x=1").unwrap();
        assert_eq!(
            (u.host.as_str(), u.port, u.target.as_str()),
            ("127.0.0.1", 9000, "/hook?x=1")
        );
        let u = HttpUrl::parse("http://example.net").unwrap();
        assert_eq!((u.port, u.target.as_str()), (80, "/"));
        let u = HttpUrl::parse("http://[::1]:8080/a").unwrap();
        assert_eq!((u.host.as_str(), u.port), ("::1", 8080));
        let u = HttpUrl::parse("http://h?q").unwrap();
        assert_eq!(u.target, "/?q");
        assert!(HttpUrl::parse("https://x/").unwrap_err().contains("https"));
        assert!(HttpUrl::parse("ftp://x/").is_err());
        assert!(HttpUrl::parse("http://:80/").is_err());
        assert!(HttpUrl::parse("http://h:0/").is_err());
        assert!(HttpUrl::parse("http://h:99999/").is_err());
        assert!(HttpUrl::parse("http://u:p@h/").is_err());
        assert!(HttpUrl::parse("http://h/a b").is_err());
    }

    #[test]
    fn replies() {
        let r = parse_reply(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\ndeny").unwrap();
        assert_eq!((r.status, r.body.as_str()), (200, "deny"));
        let r = parse_reply(
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nall\r\n2\r\now\r\n0\r\n\r\n",
        )
        .unwrap();
        assert_eq!(r.body, "allow");
        assert!(parse_reply(b"SSH-2.0\r\n\r\n").is_err());
        assert!(parse_reply(b"HTTP/1.1 200").is_err());
        assert_eq!(
            complete_len(b"HTTP/1.1 204 No\r\nContent-Length: 0\r\n\r\n"),
            Some(38)
        );
    }
}
