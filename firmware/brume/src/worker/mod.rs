//! Connection workers: one process per viewer connection, forked by the listener.
//!
//! A worker reads the stream's shared-memory buffer and writes one output format to
//! its client socket: progressive fMP4 and MPEG-TS (`/<stream>.mp4`, `/<stream>.ts`),
//! HLS with fMP4 segments (`/hls/<stream>/...`), MJPEG and JPEG snapshots. It keeps
//! its progress in the connection table so that, if it is killed, the listener can
//! fork a successor that continues the same byte stream (see `progressive`).

pub mod bench;
mod gate;
mod hls;
mod http;
mod jpeg;
mod progressive;
pub mod rtsp;

use crate::env::Env;
use brume_shm::{ConnTable, Read, Reader};
use http::{Request, Response};
use std::net::TcpStream;
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant};

/// How long a request waits for an on-demand stream to start.
const START_WAIT: Duration = Duration::from_secs(15);
/// Keep-alive: a connection with no new request for this long is closed.
const IDLE: Duration = Duration::from_secs(30);
/// A wrong password is answered after this long, so a connection tries one a second.
const WRONG_DELAY: Duration = Duration::from_secs(1);
/// The connection ends at this many wrong passwords.
pub(crate) const MAX_WRONG: u32 = 5;

/// True for paths a worker serves (the listener routes everything else to the
/// controller).
pub fn is_media_path(path: &str) -> bool {
    let path = path.split('?').next().unwrap_or("");
    if let Some(rest) = path.strip_prefix("/hls/") {
        return rest.contains('/');
    }
    match path.strip_prefix('/').and_then(|p| p.rsplit_once('.')) {
        Some((name, ext)) => {
            !name.contains('/') && !name.is_empty() && matches!(ext, "mp4" | "ts" | "mjpg" | "jpg")
        }
        None => false,
    }
}

/// The forked child's entry point. Returns the process exit code.
pub fn serve_forked(env: &Env, fd: OwnedFd, head: &[u8], slot: Option<usize>, resume: bool) -> i32 {
    crate::serve::unblock_signals_here();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let conns = ConnTable::open(&env.ns).ok();
        let mut conn = Conn {
            sock: TcpStream::from(fd),
            conns,
            slot,
            buf: head.to_vec(),
            policy: None,
            opened: None,
            sent: 0,
            since: Instant::now(),
            config: None,
            wrong: 0,
        };
        let r = serve(env, &mut conn, resume);
        conn.closed(env);
        r
    }));
    match result {
        Ok(Ok(())) => 0,
        Ok(Err(e)) => {
            tracing::info!(error = %e, "connection ended");
            0
        }
        Err(_) => 101,
    }
}

/// The client connection and this worker's record in the connection table.
pub struct Conn {
    pub sock: TcpStream,
    conns: Option<ConnTable>,
    slot: Option<usize>,
    /// Bytes received but not yet consumed as requests.
    buf: Vec<u8>,
    /// The viewer-gating policy, read at the first media request.
    policy: Option<Option<gate::Policy>>,
    /// (stream, protocol, peer address) once `connection.opened` was sent.
    opened: Option<(String, &'static str, String)>,
    sent: u64,
    since: Instant,
    /// The configuration, read at the first request that needs it (read credentials).
    config: Option<Option<crate::config::Config>>,
    /// Wrong credentials given on this connection.
    wrong: u32,
}

impl Conn {
    fn peer_ip(&self) -> String {
        self.sock
            .peer_addr()
            .map(|a| a.ip().to_string())
            .unwrap_or_default()
    }

    /// The credentials viewers of `stream` need (None: anyone may watch). Err when the
    /// configuration cannot be read: nobody is let in then.
    fn read_secret(
        &mut self,
        env: &Env,
        stream: &str,
    ) -> Result<Option<brume_proto::auth::Secret>, ()> {
        let config = self
            .config
            .get_or_insert_with(|| crate::config::Config::load(&env.config).ok())
            .as_ref()
            .ok_or(())?;
        match config.read_access(stream) {
            None => Ok(None),
            Some(r) => r.secret().map(Some).ok_or(()),
        }
    }

    /// A wrong password: logged (the user name escaped, never the password), answered
    /// after [`WRONG_DELAY`]. True when the connection has had its [`MAX_WRONG`].
    fn wrong_password(&mut self, stream: &str, protocol: &str, why: &str) -> bool {
        self.wrong += 1;
        tracing::info!(stream, protocol, ip = %self.peer_ip(), reason = %why, "viewer refused: wrong credentials");
        std::thread::sleep(WRONG_DELAY);
        self.wrong >= MAX_WRONG
    }

    /// Fires `connection.opened` once, and asks the viewer gate when triggers gate
    /// viewers. Ok(false) when the viewer was refused (the answer is sent). A stream
    /// with read credentials needs them first, as HTTP Basic: HLS, MP4 and TS players
    /// take `http://user:password@host/…` and browsers ask their user, while Digest's
    /// nonces could not follow a player from one connection to the next (each is its
    /// own process).
    fn admit(
        &mut self,
        env: &Env,
        req: &Request,
        stream: &str,
        protocol: &'static str,
    ) -> std::io::Result<bool> {
        use brume_proto::auth;
        match self.read_secret(env, stream) {
            Ok(None) => {}
            Ok(Some(secret)) => {
                let given = req.header("authorization");
                if !auth::basic_matches(given, crate::config::REALM, &secret) {
                    if given.is_some()
                        && self.wrong_password(stream, protocol, "wrong Basic credentials")
                    {
                        self.respond(
                            Response::error(401, "wrong credentials").header("Connection", "close"),
                        )?;
                        return Err(std::io::Error::other("too many wrong credentials"));
                    }
                    self.respond(
                        Response::error(
                            401,
                            &format!("stream {stream:?} needs its read credentials"),
                        )
                        .header(
                            "WWW-Authenticate",
                            auth::basic_challenge(crate::config::REALM),
                        ),
                    )?;
                    return Ok(false);
                }
            }
            Err(()) => {
                self.respond(Response::error(503, "the configuration cannot be read"))?;
                return Ok(false);
            }
        }
        let ua = req.header("user-agent").unwrap_or("").to_string();
        match self.gate(env, &req.path, &ua, stream, protocol) {
            Ok(()) => Ok(true),
            Err(gate::Refusal::Missing) => {
                self.respond(Response::error(404, &format!("no stream named {stream:?}")))?;
                Ok(false)
            }
            Err(gate::Refusal::Denied(_)) => {
                self.respond(Response::error(
                    403,
                    &format!("access to {stream:?} denied"),
                ))?;
                Ok(false)
            }
        }
    }

    /// The viewer gate for any protocol, without an answer: Err when the viewer is
    /// refused (or the stream does not exist: no handler runs for it). Fires
    /// `connection.opened` once when admitted.
    fn gate(
        &mut self,
        env: &Env,
        path: &str,
        ua: &str,
        stream: &str,
        protocol: &'static str,
    ) -> Result<(), gate::Refusal> {
        let ip = self.peer_ip();
        if self.policy.is_none() {
            self.policy = Some(gate::policy(env));
        }
        if let Some(Some(policy)) = &self.policy {
            match gate::ask(env, policy, stream, &ip, path, ua, protocol) {
                Ok(()) => {}
                Err(gate::Refusal::Denied(why)) => {
                    tracing::info!(stream, ip = %ip, reason = %why, "viewer refused");
                    return Err(gate::Refusal::Denied(why));
                }
                Err(missing) => return Err(missing),
            }
        }
        if self.opened.is_none() {
            let _ = crate::handoff::send_event(
                &env.controller_socket(),
                &serde_json::json!({
                    "event": "connection.opened", "stream": stream, "ip": ip,
                    "protocol": protocol, "path": path.split('?').next().unwrap_or(""),
                    "pid": std::process::id(),
                }),
            );
            self.opened = Some((stream.to_string(), protocol, ip));
        }
        Ok(())
    }

    fn closed(&self, env: &Env) {
        if let Some((stream, protocol, ip)) = &self.opened {
            let _ = crate::handoff::send_event(
                &env.controller_socket(),
                &serde_json::json!({
                    "event": "connection.closed", "stream": stream, "ip": ip,
                    "protocol": protocol, "bytes": self.sent,
                    "duration_s": self.since.elapsed().as_secs_f64(),
                    "pid": std::process::id(),
                }),
            );
        }
    }

    fn describe(&self, proto: &str, stream: &str) {
        if let (Some(t), Some(s)) = (&self.conns, self.slot) {
            t.describe(s, proto, stream);
        }
    }

    fn count(&self, n: u64) {
        if let (Some(t), Some(s)) = (&self.conns, self.slot) {
            t.add_bytes(s, n);
        }
    }

    /// Resume-state word `i` of this connection, if it has a record.
    fn state(&self, i: usize) -> Option<&std::sync::atomic::AtomicU64> {
        match (&self.conns, self.slot) {
            (Some(t), Some(s)) => Some(t.state(s, i)),
            _ => None,
        }
    }

    fn send(&mut self, bytes: &[u8]) -> std::io::Result<()> {
        use std::io::Write;
        self.sock.write_all(bytes)?;
        self.count(bytes.len() as u64);
        self.sent += bytes.len() as u64;
        Ok(())
    }

    fn respond(&mut self, r: Response) -> std::io::Result<()> {
        let bytes = r.to_bytes();
        self.send(&bytes)
    }
}

fn serve(env: &Env, conn: &mut Conn, resume: bool) -> std::io::Result<()> {
    if resume {
        return progressive::resume(env, conn);
    }
    let _ = conn.sock.set_read_timeout(Some(IDLE));
    let idle = crate::config::Limits::current().keepalive_idle();
    loop {
        // The next request head must be complete within `idle` of the last response:
        // a total, so a client trickling bytes cannot hold the worker.
        let mut head = Deadline {
            sock: &conn.sock,
            until: Instant::now() + idle,
        };
        let next = http::read_request(&mut head, &mut conn.buf);
        let _ = conn.sock.set_read_timeout(Some(IDLE));
        let Some(req) = next? else {
            return Ok(()); // client closed between requests, or too slow
        };
        if !is_media_path(&req.path) {
            // A keep-alive client (a browser) reused this connection for the API or
            // the UI: the controller serves those, so it gets the connection.
            let mut bytes = req.raw.clone();
            bytes.extend_from_slice(&conn.buf);
            use std::os::fd::AsRawFd;
            let sent = crate::handoff::send_connection(
                &env.controller_socket(),
                conn.sock.as_raw_fd(),
                &bytes,
            );
            if sent.is_err() {
                conn.respond(Response::error(
                    503,
                    "the controller is restarting; try again",
                ))?;
            }
            return Ok(());
        }
        let keep_alive = req.keep_alive();
        let done = handle(env, conn, &req)?;
        if done || !keep_alive {
            return Ok(());
        }
    }
}

/// Reads from the socket until `until`, then times out.
struct Deadline<'a> {
    sock: &'a TcpStream,
    until: Instant,
}

impl std::io::Read for Deadline<'_> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let left = self.until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(std::io::ErrorKind::TimedOut.into());
        }
        self.sock.set_read_timeout(Some(left))?;
        std::io::Read::read(&mut self.sock, buf)
    }
}

/// Serves one request. Returns true if the response used up the connection
/// (a live stream that ended, or a close-delimited body).
fn handle(env: &Env, conn: &mut Conn, req: &Request) -> std::io::Result<bool> {
    if req.method != "GET" && req.method != "HEAD" {
        conn.respond(Response::error(405, "only GET and HEAD are served here"))?;
        return Ok(false);
    }
    let path = req.path.split('?').next().unwrap_or("").to_string();
    if let Some(rest) = path.strip_prefix("/hls/") {
        let Some((stream, file)) = rest.split_once('/') else {
            conn.respond(Response::error(404, "no such HLS path"))?;
            return Ok(false);
        };
        if !conn.admit(env, req, stream, "hls")? {
            return Ok(false);
        }
        return hls::serve(env, conn, req, stream, file);
    }
    let (name, ext) = path
        .strip_prefix('/')
        .and_then(|p| p.rsplit_once('.'))
        .unwrap_or(("", ""));
    let protocol = match ext {
        "mp4" => "mp4",
        "ts" => "ts",
        "jpg" => "jpeg",
        "mjpg" => "mjpeg",
        _ => "",
    };
    if !protocol.is_empty() && !conn.admit(env, req, name, protocol)? {
        return Ok(false);
    }
    match ext {
        "mp4" => progressive::serve(env, conn, req, name, progressive::Format::Mp4),
        "ts" => progressive::serve(env, conn, req, name, progressive::Format::Ts),
        "jpg" => jpeg::snapshot(env, conn, req, name),
        "mjpg" => jpeg::mjpeg(env, conn, req, name),
        _ => {
            conn.respond(Response::error(404, "not found"))?;
            Ok(false)
        }
    }
}

/// Why a stream cannot be served.
pub enum OpenError {
    NoSuchStream,
    NotStarted(String),
}

/// Opens `stream` for reading: asks the controller to start an on-demand stream and
/// waits for it, then waits for its track list.
pub fn open_stream(env: &Env, stream: &str) -> Result<Reader, OpenError> {
    let deadline = Instant::now() + START_WAIT;
    let mut demanded = false;
    let mut reader = loop {
        match Reader::open(&env.ns, stream) {
            Ok(r) => break r,
            Err(brume_shm::Error::NotFound { .. }) => {
                if !demanded {
                    let source = crate::config::Config::load(&env.config)
                        .ok()
                        .and_then(|c| c.streams.get(stream).map(|s| s.source.clone()));
                    match source {
                        None => return Err(OpenError::NoSuchStream),
                        Some(crate::config::Source::Rtmp { .. }) => {
                            return Err(OpenError::NotStarted(
                                "no publisher is connected (publish to rtmp://HOST/live/STREAM?key=KEY)"
                                    .into(),
                            ))
                        }
                        Some(_) => {}
                    }
                    if let Err(e) = crate::handoff::send_demand(&env.controller_socket(), stream) {
                        return Err(OpenError::NotStarted(format!(
                            "cannot reach the controller: {e}"
                        )));
                    }
                    demanded = true;
                }
            }
            Err(brume_shm::Error::BadName(_)) => return Err(OpenError::NoSuchStream),
            Err(e) => return Err(OpenError::NotStarted(e.to_string())),
        }
        if Instant::now() >= deadline {
            return Err(OpenError::NotStarted(
                "the stream did not start in time".into(),
            ));
        }
        // Only while a stream starts (once per request): the buffer does not exist
        // yet, so there is nothing to wait on.
        std::thread::sleep(Duration::from_millis(20));
    };
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match reader.next(left.min(Duration::from_millis(500))) {
            Ok(Read::Tracks(_)) => return Ok(reader),
            Ok(Read::Ended) => return Err(OpenError::NotStarted("the stream ended".into())),
            Ok(_) if Instant::now() < deadline => {}
            Ok(_) => return Err(OpenError::NotStarted("the stream has no tracks yet".into())),
            Err(e) => return Err(OpenError::NotStarted(e.to_string())),
        }
    }
}

/// Opens the stream or answers the request with the reason it cannot be served.
fn open_or_respond(env: &Env, conn: &mut Conn, stream: &str) -> std::io::Result<Option<Reader>> {
    match open_stream(env, stream) {
        Ok(r) => Ok(Some(r)),
        Err(OpenError::NoSuchStream) => {
            conn.respond(Response::error(404, &format!("no stream named {stream:?}")))?;
            Ok(None)
        }
        Err(OpenError::NotStarted(why)) => {
            conn.respond(Response::error(
                503,
                &format!("stream {stream:?} is not available: {why}"),
            ))?;
            Ok(None)
        }
    }
}
