//! Just enough HTTP/1.1 for media workers: read a request head (parsed, within its size
//! limits, by `brume_proto::http`), build a response head. Bodies of requests are not accepted
//! (GET and HEAD only).

use std::io::Read;

pub struct Request {
    pub method: String,
    pub path: String,
    pub minor_version: u8,
    pub headers: Vec<(String, String)>,
    /// The request head exactly as received (to hand the connection on).
    pub raw: Vec<u8>,
}

impl Request {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn keep_alive(&self) -> bool {
        match self.header("connection") {
            Some(v) if v.eq_ignore_ascii_case("close") => false,
            Some(v) if v.eq_ignore_ascii_case("keep-alive") => true,
            _ => self.minor_version >= 1,
        }
    }

    pub fn is_head(&self) -> bool {
        self.method == "HEAD"
    }
}

/// Reads the next request head from `sock`, using (and consuming from) `buf` first.
/// Ok(None) when the client closed the connection cleanly between requests.
pub fn read_request(sock: &mut impl Read, buf: &mut Vec<u8>) -> std::io::Result<Option<Request>> {
    loop {
        match brume_proto::http::parse_request_head(buf) {
            Ok(Some(head)) => {
                let r = Request {
                    method: head.method,
                    path: head.path,
                    minor_version: head.minor_version,
                    headers: head.headers,
                    raw: buf[..head.len].to_vec(),
                };
                buf.drain(..head.len);
                return Ok(Some(r));
            }
            Ok(None) => {}
            Err(e) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("malformed request: {e}"),
                ))
            }
        }
        let mut chunk = [0u8; 4096];
        let n = match sock.read(&mut chunk) {
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                0
            }
            Err(e) => return Err(e),
        };
        if n == 0 {
            return Ok(None);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

pub struct Response {
    pub status: u16,
    pub headers: Vec<(&'static str, String)>,
    /// None: a close-delimited body follows (live streams).
    pub body: Option<Vec<u8>>,
    pub head_only: bool,
}

impl Response {
    pub fn new(status: u16) -> Response {
        Response {
            status,
            headers: vec![("Access-Control-Allow-Origin", "*".into())],
            body: Some(Vec::new()),
            head_only: false,
        }
    }

    pub fn ok(content_type: &str, body: Vec<u8>) -> Response {
        Response::new(200)
            .header("Content-Type", content_type)
            .body(body)
    }

    /// A JSON error body `{"error": "..."}`.
    pub fn error(status: u16, message: &str) -> Response {
        let body = serde_json::json!({ "error": message })
            .to_string()
            .into_bytes();
        Response::new(status)
            .header("Content-Type", "application/json")
            .header("Cache-Control", "no-store")
            .body(body)
    }

    /// A live response whose body runs until the connection closes.
    pub fn live(content_type: &str) -> Response {
        let mut r = Response::new(200)
            .header("Content-Type", content_type)
            .header("Cache-Control", "no-store")
            .header("Connection", "close");
        r.body = None;
        r
    }

    pub fn header(mut self, name: &'static str, value: impl Into<String>) -> Response {
        self.headers.push((name, value.into()));
        self
    }

    pub fn body(mut self, body: Vec<u8>) -> Response {
        self.body = Some(body);
        self
    }

    /// Sends only the head of the response (HEAD requests).
    pub fn for_request(mut self, req: &Request) -> Response {
        self.head_only = req.is_head();
        self
    }

    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out = format!("HTTP/1.1 {} {}\r\n", self.status, reason(self.status));
        for (n, v) in &self.headers {
            out.push_str(&format!("{n}: {v}\r\n"));
        }
        if let Some(b) = &self.body {
            out.push_str(&format!("Content-Length: {}\r\n", b.len()));
        }
        out.push_str("\r\n");
        let mut bytes = out.into_bytes();
        if let (Some(b), false) = (&self.body, self.head_only) {
            bytes.extend_from_slice(b);
        }
        bytes
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        206 => "Partial Content",
        400 => "Bad Request",
        401 => "Unauthorized",
        404 => "Not Found",
        405 => "Method Not Allowed",
        410 => "Gone",
        503 => "Service Unavailable",
        _ => "Error",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_pipelined_requests_and_keep_alive() {
        let mut buf = b"GET /a.ts HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.0\r\n\r\n".to_vec();
        let mut empty: &[u8] = &[];
        let r = read_request(&mut empty, &mut buf).unwrap().unwrap();
        assert_eq!(
            (r.method.as_str(), r.path.as_str(), r.keep_alive()),
            ("GET", "/a.ts", true)
        );
        let r = read_request(&mut empty, &mut buf).unwrap().unwrap();
        assert_eq!((r.path.as_str(), r.keep_alive()), ("/b", false));
        assert!(read_request(&mut empty, &mut buf).unwrap().is_none());
    }

    #[test]
    fn garbage_is_an_error() {
        let mut buf = b"\x00\x01garbage\r\n\r\n".to_vec();
        let mut empty: &[u8] = &[];
        assert!(read_request(&mut empty, &mut buf).is_err());
    }
}
