//! RTSP 1.0 (RFC 2326) for a server: requests and interleaved binary data parsed from
//! the bytes received so far, responses written to bytes, and the `Transport` header.
//! The caller reads and writes the socket and enforces its time limits.

use crate::http;
pub use crate::http::{MAX_HEAD, MAX_HEADERS};

/// Most bytes a request body may take (clients send small SDP or parameter lists).
pub const MAX_BODY: usize = 16 * 1024;

/// One RTSP request.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Request {
    /// The method, e.g. "DESCRIBE".
    pub method: String,
    /// The request URI as sent (`rtsp://host:port/stream/track1`, or `*`).
    pub uri: String,
    /// Header names as sent, values trimmed.
    pub headers: Vec<(String, String)>,
    /// The body (`Content-Length` bytes).
    pub body: Vec<u8>,
}

impl Request {
    /// The first header called `name` (case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The `CSeq` header, echoed in the response.
    pub fn cseq(&self) -> Option<&str> {
        self.header("cseq")
    }

    /// The path of the URI (without scheme, authority and query), e.g.
    /// `/demo/track1`; `*` gives `*`.
    pub fn path(&self) -> &str {
        path_of(&self.uri)
    }

    /// The query of the URI (after `?`), if any.
    pub fn query(&self) -> Option<&str> {
        self.uri.split_once('?').map(|(_, q)| q)
    }
}

/// The path of an RTSP URI: `rtsp://h:1/a/b?q` gives `/a/b`; an absolute path is
/// returned without its query.
pub fn path_of(uri: &str) -> &str {
    let no_query = uri.split('?').next().unwrap_or("");
    let rest = match no_query.split_once("://") {
        Some((_, rest)) => match rest.find('/') {
            Some(i) => &rest[i..],
            None => "/",
        },
        None => no_query,
    };
    if rest.is_empty() {
        "/"
    } else {
        rest
    }
}

/// What arrives on an RTSP connection.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Incoming {
    /// A request.
    Request(Request),
    /// An interleaved binary packet (`$`, channel, 16-bit length): RTCP receiver
    /// reports of a TCP-interleaved client.
    Interleaved {
        /// The channel number.
        channel: u8,
        /// The packet.
        data: Vec<u8>,
    },
}

/// Parses the next message at the start of `buf`: `Ok(Some((message, consumed)))`
/// when one is complete, `Ok(None)` when more bytes are needed, an error naming the
/// fault when the bytes cannot be RTSP. Request heads are read by the same parser as
/// HTTP ones ([`crate::http::parse_head`]), with its limits.
pub fn parse(buf: &[u8]) -> Result<Option<(Incoming, usize)>, String> {
    if buf.is_empty() {
        return Ok(None);
    }
    if buf[0] == b'$' {
        if buf.len() < 4 {
            return Ok(None);
        }
        let len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
        if buf.len() < 4 + len {
            return Ok(None);
        }
        return Ok(Some((
            Incoming::Interleaved {
                channel: buf[1],
                data: buf[4..4 + len].to_vec(),
            },
            4 + len,
        )));
    }
    let Some(head) = http::parse_head(buf, http::Protocol::Rtsp)? else {
        return Ok(None);
    };
    let len: usize = match head.header("content-length") {
        Some(v) => v.parse().map_err(|_| format!("bad Content-Length {v:?}"))?,
        None => 0,
    };
    if len > MAX_BODY {
        return Err(format!("body of {len} bytes is too large"));
    }
    if buf.len() < head.len + len {
        return Ok(None);
    }
    let req = Request {
        body: buf[head.len..head.len + len].to_vec(),
        method: head.method,
        uri: head.path,
        headers: head.headers,
    };
    Ok(Some((Incoming::Request(req), head.len + len)))
}

/// An RTSP response.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    /// Status code.
    pub status: u16,
    /// Headers after `CSeq` (which [`Response::to_bytes`] writes first).
    pub headers: Vec<(String, String)>,
    /// The body; `Content-Length` is added when it is not empty.
    pub body: Vec<u8>,
}

impl Response {
    /// A response with `status` and no headers.
    pub fn new(status: u16) -> Response {
        Response {
            status,
            headers: Vec::new(),
            body: Vec::new(),
        }
    }

    /// Adds a header.
    pub fn header(mut self, name: &str, value: impl Into<String>) -> Response {
        self.headers.push((name.to_string(), value.into()));
        self
    }

    /// Sets the body and its `Content-Type`.
    pub fn body(mut self, content_type: &str, body: Vec<u8>) -> Response {
        self.headers
            .push(("Content-Type".into(), content_type.to_string()));
        self.body = body;
        self
    }

    /// The response's bytes, `CSeq` echoed from the request (when it had one).
    pub fn to_bytes(&self, cseq: Option<&str>) -> Vec<u8> {
        let mut s = format!("RTSP/1.0 {} {}\r\n", self.status, reason(self.status));
        if let Some(c) = cseq {
            s.push_str(&format!("CSeq: {}\r\n", clean(c)));
        }
        for (n, v) in &self.headers {
            s.push_str(&format!("{n}: {}\r\n", clean(v)));
        }
        if !self.body.is_empty() {
            s.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        }
        s.push_str("\r\n");
        let mut out = s.into_bytes();
        out.extend_from_slice(&self.body);
        out
    }
}

/// A header value without line breaks (a value echoed from a request cannot add lines).
fn clean(v: &str) -> String {
    v.chars().filter(|c| *c != '\r' && *c != '\n').collect()
}

/// The reason phrase of an RTSP status code.
pub fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        415 => "Unsupported Media Type",
        454 => "Session Not Found",
        455 => "Method Not Valid in This State",
        459 => "Aggregate Operation Not Allowed",
        461 => "Unsupported Transport",
        500 => "Internal Server Error",
        501 => "Not Implemented",
        503 => "Service Unavailable",
        505 => "RTSP Version Not Supported",
        _ => "Error",
    }
}

/// The frame of an interleaved packet on `channel`.
pub fn interleaved(channel: u8, packet: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(4 + packet.len());
    out.push(b'$');
    out.push(channel);
    out.extend_from_slice(&(packet.len().min(usize::from(u16::MAX)) as u16).to_be_bytes());
    out.extend_from_slice(packet);
    out
}

/// How a client asks to receive one track's RTP and RTCP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Transport {
    /// Interleaved on the RTSP connection: RTP on the first channel, RTCP on the second.
    Tcp {
        /// (RTP, RTCP) channels.
        channels: (u8, u8),
    },
    /// UDP unicast to the client's address at these ports.
    Udp {
        /// (RTP, RTCP) ports of the client.
        client_ports: (u16, u16),
    },
}

impl Transport {
    /// Picks the first specification of a `Transport` header this server can serve:
    /// `RTP/AVP/TCP` with `interleaved=` (the channels default to `default_channels`),
    /// or unicast `RTP/AVP[/UDP]` with `client_port=`. None: none of them (multicast,
    /// other profiles).
    pub fn choose(header: &str, default_channels: (u8, u8)) -> Option<Transport> {
        header.split(',').find_map(|spec| {
            let mut params = spec.split(';').map(str::trim);
            let proto = params.next()?;
            let params: Vec<&str> = params.collect();
            if params.iter().any(|p| p.eq_ignore_ascii_case("multicast")) {
                return None;
            }
            let value = |key: &str| {
                params.iter().find_map(|p| {
                    let (k, v) = p.split_once('=')?;
                    k.trim().eq_ignore_ascii_case(key).then(|| v.trim())
                })
            };
            match proto.to_ascii_uppercase().as_str() {
                "RTP/AVP/TCP" => {
                    let channels = match value("interleaved") {
                        Some(v) => pair(v)?,
                        None => (u16::from(default_channels.0), u16::from(default_channels.1)),
                    };
                    Some(Transport::Tcp {
                        channels: (
                            u8::try_from(channels.0).ok()?,
                            u8::try_from(channels.1).ok()?,
                        ),
                    })
                }
                "RTP/AVP" | "RTP/AVP/UDP" => {
                    let ports = pair(value("client_port")?)?;
                    if ports.0 == 0 {
                        return None;
                    }
                    Some(Transport::Udp {
                        client_ports: ports,
                    })
                }
                _ => None,
            }
        })
    }

    /// The `Transport` header of the SETUP response. `server_ports`: this server's
    /// (RTP, RTCP) ports for UDP; `ssrc` of the track's RTP stream.
    pub fn reply(&self, server_ports: Option<(u16, u16)>, ssrc: u32) -> String {
        match self {
            Transport::Tcp { channels } => format!(
                "RTP/AVP/TCP;unicast;interleaved={}-{};ssrc={ssrc:08X}",
                channels.0, channels.1
            ),
            Transport::Udp { client_ports } => {
                let (a, b) = server_ports.unwrap_or((0, 0));
                format!(
                    "RTP/AVP;unicast;client_port={}-{};server_port={a}-{b};ssrc={ssrc:08X}",
                    client_ports.0, client_ports.1
                )
            }
        }
    }
}

/// `a-b` (or `a`, meaning `a-(a+1)`).
fn pair(v: &str) -> Option<(u16, u16)> {
    match v.split_once('-') {
        Some((a, b)) => Some((a.trim().parse().ok()?, b.trim().parse().ok()?)),
        None => {
            let a: u16 = v.trim().parse().ok()?;
            Some((a, a.checked_add(1)?))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_interleaved_data_are_split() {
        let mut buf =
            b"OPTIONS rtsp://h:8554/demo RTSP/1.0\r\nCSeq: 1\r\nUser-Agent: x\r\n\r\n".to_vec();
        buf.extend_from_slice(&[b'$', 1, 0, 3, 9, 8, 7]);
        buf.extend_from_slice(
            b"SET_PARAMETER * RTSP/1.0\r\nCSeq: 2\r\nContent-Length: 4\r\n\r\nab",
        );
        let (m, n) = parse(&buf).unwrap().unwrap();
        let Incoming::Request(r) = m else { panic!() };
        assert_eq!(
            (r.method.as_str(), r.path(), r.cseq()),
            ("OPTIONS", "/demo", Some("1"))
        );
        let buf = &buf[n..];
        let (m, n) = parse(buf).unwrap().unwrap();
        assert_eq!(
            m,
            Incoming::Interleaved {
                channel: 1,
                data: vec![9, 8, 7]
            }
        );
        let buf = &buf[n..];
        assert_eq!(parse(buf).unwrap(), None, "body incomplete");
        let mut full = buf.to_vec();
        full.extend_from_slice(b"cd");
        let (m, n) = parse(&full).unwrap().unwrap();
        assert_eq!(n, full.len());
        let Incoming::Request(r) = m else { panic!() };
        assert_eq!(r.body, b"abcd");
        assert_eq!(parse(b"$\x00\x00").unwrap(), None);
    }

    #[test]
    fn bad_requests_are_errors() {
        assert!(parse(b"GET / HTTP/1.1\r\n\r\n").is_err());
        assert!(parse(b"DESCRIBE\r\n\r\n").is_err());
        assert!(parse(b"PLAY * RTSP/1.0\r\nbroken\r\n\r\n").is_err());
        assert!(parse(b"PLAY * RTSP/1.0\r\nContent-Length: 99999999\r\n\r\n").is_err());
        assert!(parse(&vec![b'A'; MAX_HEAD + 1]).is_err());
    }

    #[test]
    fn uri_paths() {
        assert_eq!(path_of("rtsp://h:1/demo/track2?key=a"), "/demo/track2");
        assert_eq!(path_of("rtsp://h:1"), "/");
        assert_eq!(path_of("/demo"), "/demo");
        assert_eq!(path_of("*"), "*");
    }

    #[test]
    fn responses_echo_cseq_without_line_breaks() {
        let r = Response::new(404).header("Public", "OPTIONS");
        let s = String::from_utf8(r.to_bytes(Some("7\r\nX: y"))).unwrap();
        assert_eq!(
            s,
            "RTSP/1.0 404 Not Found\r\nCSeq: 7X: y\r\nPublic: OPTIONS\r\n\r\n"
        );
        let r = Response::new(200).body("application/sdp", b"v=0\r\n".to_vec());
        let s = String::from_utf8(r.to_bytes(Some("2"))).unwrap();
        assert!(s.ends_with("Content-Type: application/sdp\r\nContent-Length: 5\r\n\r\nv=0\r\n"));
    }

    #[test]
    fn transports() {
        assert_eq!(
            Transport::choose("RTP/AVP/TCP;unicast;interleaved=2-3", (0, 1)),
            Some(Transport::Tcp { channels: (2, 3) })
        );
        assert_eq!(
            Transport::choose("RTP/AVP/TCP;unicast", (4, 5)),
            Some(Transport::Tcp { channels: (4, 5) })
        );
        assert_eq!(
            Transport::choose(
                "RTP/AVP;multicast, RTP/AVP;unicast;client_port=5000-5001",
                (0, 1)
            ),
            Some(Transport::Udp {
                client_ports: (5000, 5001)
            })
        );
        assert_eq!(
            Transport::choose("RTP/AVP/UDP;unicast;client_port=6000", (0, 1)),
            Some(Transport::Udp {
                client_ports: (6000, 6001)
            })
        );
        assert_eq!(
            Transport::choose("RTP/SAVP;unicast;client_port=1-2", (0, 1)),
            None
        );
        assert_eq!(Transport::choose("RTP/AVP;unicast", (0, 1)), None);
        assert_eq!(
            Transport::Udp {
                client_ports: (5000, 5001)
            }
            .reply(Some((6000, 6001)), 0xab),
            "RTP/AVP;unicast;client_port=5000-5001;server_port=6000-6001;ssrc=000000AB"
        );
    }
}
