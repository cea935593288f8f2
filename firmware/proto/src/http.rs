//! Request heads of HTTP/1.x (what viewers send to the media port) and RTSP/1.0 (what
//! RTSP clients send to the RTSP port): one pure parser over the bytes received so far,
//! with its size limits. RTSP/1.0 (RFC 2326) took HTTP/1.1's message syntax: a request
//! line `METHOD TARGET PROTOCOL/1.x`, header lines, a blank line. The two differ only in
//! the protocol named by the request line, so both are read here, and this is the one
//! parser of request heads to fuzz. The caller reads the socket and enforces its time
//! limits.

/// Most bytes a request head may take, its blank line included; a longer one is an
/// error, however it arrives.
pub const MAX_HEAD: usize = 16 * 1024;

/// Most header lines a request head may carry.
pub const MAX_HEADERS: usize = 48;

/// The protocol a request line must name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// `HTTP/1.0` or `HTTP/1.1`.
    Http,
    /// `RTSP/1.0`.
    Rtsp,
}

/// A complete request head.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RequestHead {
    /// The method, e.g. "GET" or "DESCRIBE".
    pub method: String,
    /// The request target as sent (path and query; RTSP: an absolute `rtsp://` URI or
    /// `*`).
    pub path: String,
    /// The minor version: 0 for HTTP/1.0 and RTSP/1.0, 1 for HTTP/1.1.
    pub minor_version: u8,
    /// Header names as sent; values without surrounding white space, decoded as UTF-8
    /// (lossily).
    pub headers: Vec<(String, String)>,
    /// Length of the head in bytes, the blank line included.
    pub len: usize,
}

impl RequestHead {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// Parses the HTTP/1.x request head at the start of `buf`; see [`parse_head`].
pub fn parse_request_head(buf: &[u8]) -> Result<Option<RequestHead>, String> {
    parse_head(buf, Protocol::Http)
}

/// Parses the request head at the start of `buf`: `Ok(Some(head))` when it is complete
/// (`head.len` bytes of `buf`), `Ok(None)` when more bytes are needed, and an error
/// naming the fault when the bytes cannot be a request head of `protocol`, carry more
/// than [`MAX_HEADERS`] header lines or take more than [`MAX_HEAD`] bytes.
///
/// Empty lines before the request line are skipped (RFC 9112, 2.2), and the words of
/// the request line may be separated by several spaces (RFC 9112, 3). Header lines are
/// read by `httparse`; lines may end in CRLF or a bare LF.
pub fn parse_head(buf: &[u8], protocol: Protocol) -> Result<Option<RequestHead>, String> {
    let mut start = 0;
    loop {
        match &buf[start..] {
            [b'\n', ..] => start += 1,
            [b'\r', b'\n', ..] => start += 2,
            [b'\r'] => return Ok(None),
            [b'\r', ..] => return Err("a CR without LF before the request line".into()),
            _ => break,
        }
    }
    let too_large = || format!("request head over {MAX_HEAD} bytes");
    let Some(nl) = buf[start..].iter().position(|b| *b == b'\n') else {
        if buf.len() > MAX_HEAD {
            return Err(too_large());
        }
        // Not complete: junk is refused as early as it shows.
        request_line(&buf[start..], protocol, true)?;
        return Ok(None);
    };
    let line_end = start + nl + 1;
    let (method, path, minor_version) = request_line(&buf[start..start + nl], protocol, false)?
        .expect("a complete request line has its three words");
    let mut headers = [httparse::EMPTY_HEADER; MAX_HEADERS];
    let (len, headers) = match httparse::parse_headers(&buf[line_end..], &mut headers) {
        Ok(httparse::Status::Complete((n, headers))) => (line_end + n, headers),
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => return Err(too_large()),
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(httparse::Error::TooManyHeaders) => {
            return Err(format!("more than {MAX_HEADERS} header lines"))
        }
        Err(e) => return Err(format!("malformed header line: {e}")),
    };
    if len > MAX_HEAD {
        return Err(too_large());
    }
    Ok(Some(RequestHead {
        method: method.to_string(),
        path: path.to_string(),
        minor_version,
        headers: headers
            .iter()
            .map(|h| {
                (
                    h.name.to_string(),
                    String::from_utf8_lossy(h.value).trim().to_string(),
                )
            })
            .collect(),
        len,
    }))
}

/// Token characters (RFC 9110, 5.6.2): what a method is made of.
fn is_token(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

/// What a request target may contain: visible ASCII, and bytes over 0x7f (which
/// clients send unescaped and the router rejects later if it must).
fn is_target(b: u8) -> bool {
    (0x21..0x7f).contains(&b) || b >= 0x80
}

/// The request line `line` (without its LF). `partial`: `line` is all that arrived so
/// far, so missing words and a version cut short are fine (Ok(None)), but bytes that
/// no request line may contain are errors already.
fn request_line(
    line: &[u8],
    protocol: Protocol,
    partial: bool,
) -> Result<Option<(&str, &str, u8)>, String> {
    let line = match line.strip_suffix(b"\r") {
        Some(l) => l,
        None => line,
    };
    let show = || String::from_utf8_lossy(&line[..line.len().min(80)]).into_owned();
    let mut words = line.split(|b| *b == b' ').filter(|w| !w.is_empty());
    let method = words.next().unwrap_or_default();
    if !method.iter().all(|b| is_token(*b)) {
        return Err(format!("malformed method in request line {:?}", show()));
    }
    let target = words.next().unwrap_or_default();
    if !target.iter().all(|b| is_target(*b)) {
        return Err(format!("malformed target in request line {:?}", show()));
    }
    let version = words.next().unwrap_or_default();
    if words.next().is_some() {
        return Err(format!(
            "request line {:?} has more than three words",
            show()
        ));
    }
    let minor = match (protocol, version) {
        (Protocol::Http, b"HTTP/1.0") | (Protocol::Rtsp, b"RTSP/1.0") => Some(0),
        (Protocol::Http, b"HTTP/1.1") => Some(1),
        (Protocol::Http, v) if partial && b"HTTP/1.".starts_with(v) => None,
        (Protocol::Rtsp, v) if partial && b"RTSP/1.0".starts_with(v) => None,
        (_, v) => {
            let wanted = match protocol {
                Protocol::Http => "HTTP/1.0 or HTTP/1.1",
                Protocol::Rtsp => "RTSP/1.0",
            };
            return Err(format!(
                "unsupported version {:?} (only {wanted})",
                String::from_utf8_lossy(v)
            ));
        }
    };
    if partial {
        return Ok(None);
    }
    match (minor, method.is_empty() || target.is_empty()) {
        (Some(minor), false) => Ok(Some((
            std::str::from_utf8(method).expect("token characters are ASCII"),
            // Bytes over 0x7f that are not UTF-8 cannot name anything served here.
            std::str::from_utf8(target)
                .map_err(|_| format!("request target of {:?} is not UTF-8", show()))?,
            minor,
        ))),
        _ => Err(format!("malformed request line {:?}", show())),
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

    #[test]
    fn every_prefix_of_a_head_is_incomplete() {
        let heads: [(&[u8], Protocol); 3] = [
            (
                b"\r\nGET /hls/demo/index.m3u8 HTTP/1.1\r\nHost: a\r\nUser-Agent: b c\r\n\r\n",
                Protocol::Http,
            ),
            (
                b"DESCRIBE rtsp://h:8554/demo RTSP/1.0\r\nCSeq: 2\r\nAccept: application/sdp\r\n\r\n",
                Protocol::Rtsp,
            ),
            (
                b"OPTIONS  *  RTSP/1.0\nCSeq:1\n\n",
                Protocol::Rtsp,
            ),
        ];
        for (head, protocol) in heads {
            let h = parse_head(head, protocol).unwrap().unwrap();
            assert_eq!(h.len, head.len());
            for i in 0..head.len() {
                assert_eq!(parse_head(&head[..i], protocol), Ok(None), "{i} bytes");
            }
        }
        let h = parse_head(b"OPTIONS  *  RTSP/1.0\nCSeq:1\n\n", Protocol::Rtsp)
            .unwrap()
            .unwrap();
        assert_eq!((h.method.as_str(), h.path.as_str()), ("OPTIONS", "*"));
        assert_eq!(h.header("cseq"), Some("1"));
    }

    #[test]
    fn each_protocol_its_version() {
        let rtsp = b"PLAY rtsp://h/demo RTSP/1.0\r\nSession: 12\r\n\r\n";
        let h = parse_head(rtsp, Protocol::Rtsp).unwrap().unwrap();
        assert_eq!((h.minor_version, h.header("session")), (0, Some("12")));
        assert!(parse_head(rtsp, Protocol::Http)
            .unwrap_err()
            .contains("unsupported version"));
        assert!(parse_head(b"GET / HTTP/1.1\r\n\r\n", Protocol::Rtsp).is_err());
        assert!(parse_head(b"GET / RTSP/2.0\r\n\r\n", Protocol::Rtsp).is_err());
        // Cut short, a wrong version is refused as soon as it differs.
        assert!(parse_head(b"GET / HTTX", Protocol::Http).is_err());
        assert_eq!(parse_head(b"GET / RTSP/", Protocol::Rtsp), Ok(None));
    }

    #[test]
    fn limits_and_junk() {
        for protocol in [Protocol::Http, Protocol::Rtsp] {
            assert!(parse_head(&vec![b'A'; MAX_HEAD + 1], protocol).is_err());
            let mut long = b"GET / HTTP/1.1\r\nRTSP: x\r\nX: ".to_vec();
            long.resize(MAX_HEAD + 1, b'y');
            assert!(parse_head(&long, protocol).is_err());
            // Complete but over the limit: the same answer as when it arrives in pieces.
            long.extend_from_slice(b"\r\n\r\n");
            assert!(parse_head(&long, protocol).is_err());
            for junk in [
                &b"DESCRIBE\r\n\r\n"[..],
                b"PLAY * RTSP/1.0 x\r\n\r\n",
                b"PLAY * RTSP/1.0\r\nbroken\r\n\r\n",
                b"PL\x01Y",
                b"PLAY \x7f",
                b"\r\r\n",
            ] {
                assert!(parse_head(junk, protocol).is_err(), "{junk:?}");
            }
        }
    }
}
