//! A tiny HTTP/1.1 client over std TcpStream, and live-stream viewers that count (and
//! keep) the bytes they receive.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Bound on every request/response exchange of the client.
const EXCHANGE: Duration = Duration::from_secs(30);

#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
}

/// One request on a fresh connection (`Connection: close`); reads the whole reply.
pub fn request(
    port: u16,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<&[u8]>,
) -> std::io::Result<Reply> {
    let mut s = TcpStream::connect(("127.0.0.1", port))?;
    s.set_write_timeout(Some(EXCHANGE))?;
    let mut head =
        format!("{method} {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n");
    for (n, v) in headers {
        head.push_str(&format!("{n}: {v}\r\n"));
    }
    if let Some(b) = body {
        head.push_str(&format!("Content-Length: {}\r\n", b.len()));
    }
    head.push_str("\r\n");
    let mut out = head.into_bytes();
    if let Some(b) = body {
        out.extend_from_slice(b);
    }
    s.write_all(&out)?;
    let raw = read_until_close(&mut s, EXCHANGE)?;
    parse_reply(&raw)
        .ok_or_else(|| std::io::Error::other(format!("not an HTTP reply: {:?}", preview(&raw))))
}

/// Reads until the peer closes (or resets after sending), bounded by `timeout`.
pub fn read_until_close(s: &mut TcpStream, timeout: Duration) -> std::io::Result<Vec<u8>> {
    let deadline = Instant::now() + timeout;
    let mut raw = Vec::new();
    let mut buf = [0u8; 16384];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!(
                    "no end of reply within {timeout:?} (got {:?})",
                    preview(&raw)
                ),
            ));
        }
        s.set_read_timeout(Some(left))?;
        match s.read(&mut buf) {
            Ok(0) => return Ok(raw),
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) => {}
            // A reset after the reply (the server closed with our bytes unread).
            Err(_) if !raw.is_empty() => return Ok(raw),
            Err(e) => return Err(e),
        }
    }
}

pub fn preview(raw: &[u8]) -> String {
    String::from_utf8_lossy(&raw[..raw.len().min(300)]).into_owned()
}

/// Parses a complete reply (head + body by Content-Length, chunked or to the end).
pub fn parse_reply(raw: &[u8]) -> Option<Reply> {
    let end = find(raw, b"\r\n\r\n")?;
    let head = std::str::from_utf8(&raw[..end]).ok()?;
    let mut lines = head.split("\r\n");
    let status_line = lines.next()?;
    let status = status_line.split(' ').nth(1)?.parse().ok()?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(n, v)| (n.trim().to_string(), v.trim().to_string()))
        .collect();
    let mut body = raw[end + 4..].to_vec();
    let get = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(n))
            .map(|(_, v)| v.clone())
    };
    if get("transfer-encoding").is_some_and(|v| v.eq_ignore_ascii_case("chunked")) {
        body = dechunk(&body)?;
    } else if let Some(len) = get("content-length").and_then(|v| v.parse::<usize>().ok()) {
        body.truncate(len);
    }
    Some(Reply {
        status,
        headers,
        body,
    })
}

fn dechunk(mut b: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = find(b, b"\r\n")?;
        let size_text = std::str::from_utf8(&b[..line_end]).ok()?;
        let size = usize::from_str_radix(size_text.split(';').next()?.trim(), 16).ok()?;
        b = &b[line_end + 2..];
        if size == 0 {
            return Some(out);
        }
        out.extend_from_slice(b.get(..size)?);
        b = b.get(size + 2..)?;
    }
}

pub fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// A client playing a live HTTP stream in a thread: counts and keeps every byte.
pub struct Viewer {
    pub path: String,
    pub local: SocketAddr,
    bytes: Arc<AtomicU64>,
    closed: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    data: Arc<Mutex<Vec<u8>>>,
    why: Arc<Mutex<String>>,
    /// When each read returned bytes.
    reads: Arc<Mutex<Vec<Instant>>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Viewer {
    pub fn open(port: u16, path: &str) -> Viewer {
        let mut s = TcpStream::connect(("127.0.0.1", port))
            .unwrap_or_else(|e| panic!("connect for {path}: {e}"));
        let local = s.local_addr().expect("local addr");
        write!(s, "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n")
            .unwrap_or_else(|e| panic!("send GET {path}: {e}"));
        s.set_read_timeout(Some(Duration::from_millis(200)))
            .expect("read timeout");
        let bytes = Arc::new(AtomicU64::new(0));
        let closed = Arc::new(AtomicBool::new(false));
        let stop = Arc::new(AtomicBool::new(false));
        let data = Arc::new(Mutex::new(Vec::new()));
        let why = Arc::new(Mutex::new(String::new()));
        let reads = Arc::new(Mutex::new(Vec::new()));
        let thread = {
            let (bytes, closed, stop, data, why, reads) = (
                bytes.clone(),
                closed.clone(),
                stop.clone(),
                data.clone(),
                why.clone(),
                reads.clone(),
            );
            std::thread::spawn(move || {
                let mut buf = vec![0u8; 65536];
                while !stop.load(Ordering::Relaxed) {
                    match s.read(&mut buf) {
                        Ok(0) => {
                            *why.lock().expect("why") = "closed by the server".into();
                            break;
                        }
                        Ok(n) => {
                            reads.lock().expect("reads").push(Instant::now());
                            data.lock().expect("data").extend_from_slice(&buf[..n]);
                            bytes.fetch_add(n as u64, Ordering::SeqCst);
                        }
                        Err(e)
                            if matches!(
                                e.kind(),
                                std::io::ErrorKind::WouldBlock
                                    | std::io::ErrorKind::TimedOut
                                    | std::io::ErrorKind::Interrupted
                            ) => {}
                        Err(e) => {
                            *why.lock().expect("why") = e.to_string();
                            break;
                        }
                    }
                }
                closed.store(true, Ordering::SeqCst);
            })
        };
        Viewer {
            path: path.to_string(),
            local,
            bytes,
            closed,
            stop,
            data,
            why,
            reads,
            thread: Some(thread),
        }
    }

    /// The longest time without bytes between `from` and `to`.
    pub fn longest_gap(&self, from: Instant, to: Instant) -> Duration {
        let reads = self.reads.lock().expect("reads");
        let mut last = from;
        let mut longest = Duration::ZERO;
        for t in reads.iter().filter(|t| **t > from && **t <= to) {
            longest = longest.max(*t - last);
            last = *t;
        }
        longest.max(to.saturating_duration_since(last))
    }

    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::SeqCst)
    }

    pub fn closed(&self) -> bool {
        self.closed.load(Ordering::SeqCst)
    }

    /// Why the connection ended ("" while open).
    pub fn why(&self) -> String {
        self.why.lock().expect("why").clone()
    }

    /// Waits until more than `than` bytes arrived in total; panics if the connection
    /// ends or nothing comes within `timeout`.
    pub fn wait_more_than(&self, than: u64, timeout: Duration, what: &str) -> u64 {
        let deadline = Instant::now() + timeout;
        loop {
            let n = self.bytes();
            if n > than {
                return n;
            }
            if self.closed() {
                panic!(
                    "{what}: viewer of {} ({}) ended ({}) at {n} bytes, waiting for more than {than}",
                    self.path,
                    self.local,
                    self.why()
                );
            }
            if Instant::now() >= deadline {
                panic!(
                    "{what}: viewer of {} ({}) stuck at {n} bytes for {timeout:?} (wanted more than {than})",
                    self.path, self.local
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Everything received so far (HTTP head included).
    pub fn data(&self) -> Vec<u8> {
        self.data.lock().expect("data").clone()
    }

    /// The response body received so far (after the HTTP head).
    pub fn body(&self) -> Vec<u8> {
        let d = self.data();
        match find(&d, b"\r\n\r\n") {
            Some(i) => d[i + 4..].to_vec(),
            None => Vec::new(),
        }
    }

    /// The response status line.
    pub fn status_line(&self) -> String {
        let d = self.data();
        let end = find(&d, b"\r\n").unwrap_or(0);
        String::from_utf8_lossy(&d[..end]).into_owned()
    }

    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Viewer {
    fn drop(&mut self) {
        self.stop();
    }
}
