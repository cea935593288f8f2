//! HTTP/1.1 request heads, as viewers send them to the media port: a pure parser over
//! the bytes received so far (the caller reads the socket and enforces its limits).

/// Most header lines a request head may carry.
pub const MAX_HEADERS: usize = 48;

/// A complete request head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestHead {
    /// The method, e.g. "GET".
    pub method: String,
    /// The request target as sent (path and query).
    pub path: String,
    /// 0 for HTTP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    /// Header names as sent; values decoded as UTF-8 (lossily).
    pub headers: Vec<(String, String)>,
    /// Length of the head in bytes, the blank line included.
    pub len: usize,
}

/// Parses the request head at the start of `buf`: `Ok(Some(head))` when it is
/// complete (`head.len` bytes of `buf`), `Ok(None)` when more bytes are needed, and
/// an error naming the fault when the bytes cannot be a request head (or carry more
/// than [`MAX_HEADERS`] header lines).
pub fn parse_request_head(buf: &[u8]) -> Result<Option<RequestHead>, String> {
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let mut req = httparse::Request::new(&mut headers);
    match req.parse(buf) {
        Ok(httparse::Status::Complete(len)) => Ok(Some(RequestHead {
            method: req.method.unwrap_or("").to_string(),
            path: req.path.unwrap_or("/").to_string(),
            minor_version: req.version.unwrap_or(1),
            headers: req
                .headers
                .iter()
                .map(|h| {
                    (
                        h.name.to_string(),
                        String::from_utf8_lossy(h.value).into_owned(),
                    )
                })
                .collect(),
            len,
        })),
        Ok(httparse::Status::Partial) => Ok(None),
        Err(e) => Err(e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn complete_partial_and_malformed() {
        let buf = b"GET /a.ts?x=1 HTTP/1.0\r\nHost: x\r\n\r\nGET /b";
        let h = parse_request_head(buf).unwrap().unwrap();
        assert_eq!(
            (h.method.as_str(), h.path.as_str(), h.minor_version, h.len),
            ("GET", "/a.ts?x=1", 0, 35)
        );
        assert_eq!(h.headers, vec![("Host".to_string(), "x".to_string())]);
        assert_eq!(parse_request_head(&buf[h.len..]), Ok(None));
        assert!(parse_request_head(b"\x00\x01garbage\r\n\r\n").is_err());
        let many = format!(
            "GET / HTTP/1.1\r\n{}\r\n",
            "a: b\r\n".repeat(MAX_HEADERS + 1)
        );
        assert!(parse_request_head(many.as_bytes()).is_err());
    }
}
