//! The RTSP server's worker: one process per RTSP connection (forked by the listener
//! from its RTSP port), serving `rtsp://HOST:8554/<stream>` (the path MistServer
//! uses) with `brume_proto::{rtsp, sdp, rtp}` doing the protocol.
//!
//! * DESCRIBE answers with the SDP of the stream's H.264 and AAC tracks; SETUP takes
//!   `RTP/AVP/TCP` (interleaved on this connection) or `RTP/AVP` unicast UDP (to the
//!   client's address at its `client_port`, sent from a pair of this worker's own
//!   ports); PLAY starts at the newest keyframe; GET_PARAMETER and SET_PARAMETER keep
//!   the session alive; TEARDOWN or the connection's end ends it (a session lives on
//!   its connection).
//! * RTP timestamps come from each frame's time (video at 90 kHz from its presentation
//!   time, audio at its sample rate); SPS and PPS are sent before every keyframe. A
//!   sender report per track about every second maps one wall clock to both tracks'
//!   RTP times (the writer's wall-clock time of a keyframe), so a client can sync audio
//!   and video.
//! * Session timeout: a UDP session with no request and no RTCP from the client for
//!   60 s ends. Over TCP the connection itself tells: a client that stops reading
//!   fails the writes after 10 s.
//! * Behind NAT, UDP reaches the client only if it sends first: the packets go to the
//!   client's address as this server sees it (the NAT's), at the ports it asked for
//!   until a packet from that address arrives on this worker's ports (ffmpeg sends
//!   such packets after SETUP, most clients send RTCP receiver reports), then to the
//!   port it came from (symmetric RTP). A client that sends nothing gets nothing
//!   through the NAT; it falls back to TCP (ffmpeg and VLC do after several seconds
//!   without packets) or must be told to use TCP.
//! * A stream with read credentials needs them on DESCRIBE, SETUP and PLAY (Digest or
//!   Basic, `brume_proto::auth`); a wrong answer gets a fresh challenge after a second,
//!   and the fifth ends the connection.
//! * A killed worker is not resumed (RTP state is not recorded): the listener closes
//!   the connection, and the client reconnects as it would after any server restart.

use super::{open_stream, Conn, OpenError};
use crate::env::Env;
use brume_format::{h264, Codec, Frame, Track};
use brume_proto::auth;
use brume_proto::rtp::RtpStream;
use brume_proto::rtsp::{self, Incoming, Request, Response, Transport};
use brume_proto::sdp;
use brume_shm::{ConnTable, Read, Reader};
use std::io::Read as _;
use std::net::{SocketAddr, TcpStream, UdpSocket};
use std::os::fd::OwnedFd;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// A session without a sign of its client for this long ends.
const SESSION_TIMEOUT: Duration = Duration::from_secs(60);
/// Writes to a client that does not read fail after this long.
const WRITE_TIMEOUT: Duration = Duration::from_secs(10);
/// Sender reports per track, about this often.
const SR_EVERY: Duration = Duration::from_secs(1);
/// How long the media loop sleeps on the buffer before looking at the connection.
const TICK: Duration = Duration::from_millis(200);
const PUBLIC: &str =
    "OPTIONS, DESCRIBE, SETUP, PLAY, PAUSE, TEARDOWN, GET_PARAMETER, SET_PARAMETER";

/// The forked child's entry point. Returns the process exit code.
pub fn serve_forked(env: &Env, fd: OwnedFd, slot: Option<usize>) -> i32 {
    crate::serve::unblock_signals_here();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut conn = Conn {
            sock: TcpStream::from(fd),
            conns: ConnTable::open(&env.ns).ok(),
            slot,
            buf: Vec::new(),
            policy: None,
            opened: None,
            sent: 0,
            since: Instant::now(),
            config: None,
            wrong: 0,
        };
        let r = serve(env, &mut conn);
        conn.closed(env);
        r
    }));
    match result {
        Ok(Ok(())) => 0,
        Ok(Err(e)) => {
            tracing::info!(error = %e, "RTSP connection ended");
            0
        }
        Err(_) => 101,
    }
}

/// One track the client set up.
struct Setup {
    track: Track,
    rtp: RtpStream,
    transport: Transport,
    /// UDP: (RTP socket, RTCP socket, RTP destination, RTCP destination).
    udp: Option<(UdpSocket, UdpSocket, SocketAddr, SocketAddr)>,
    sent_any: bool,
}

struct Session {
    id: String,
    stream: String,
    reader: Reader,
    /// The playable tracks, in SDP order.
    tracks: Vec<Track>,
    setups: Vec<Setup>,
    playing: bool,
    /// Unix µs minus media µs: one wall clock for every track's sender reports.
    wall_offset: Option<i64>,
    /// The first frame to send after PLAY (read to fill RTP-Info).
    first: Option<Frame>,
    last_sr: Instant,
    last_heard: Instant,
}

fn now_us() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_micros() as i64)
        .unwrap_or(0)
}

/// A number no other session or stream of this machine is likely to share (session
/// ids, SSRCs, RTP origins): the clock's nanoseconds and the pid, mixed.
fn random(salt: u64) -> u64 {
    let t = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mut x =
        t ^ (u64::from(std::process::id()) << 32) ^ salt.wrapping_mul(0x9e37_79b9_7f4a_7c15);
    // splitmix64 finaliser
    x = (x ^ (x >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x = (x ^ (x >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

fn serve(env: &Env, conn: &mut Conn) -> std::io::Result<()> {
    let _ = conn.sock.set_write_timeout(Some(WRITE_TIMEOUT));
    let _ = conn.sock.set_read_timeout(Some(SESSION_TIMEOUT));
    let mut session: Option<Session> = None;
    let mut key = [0u8; 16];
    rand_core::RngCore::fill_bytes(&mut rand_core::OsRng, &mut key);
    let mut guard = auth::Guard::new(crate::config::REALM, key);
    loop {
        let playing = session.as_ref().is_some_and(|s| s.playing);
        if !playing {
            // Waiting for requests: blocking reads, up to the session timeout.
            let Some(msg) = next_message(conn, true)? else {
                return Ok(());
            };
            if !request(env, conn, &mut guard, &mut session, msg)? {
                return Ok(());
            }
            continue;
        }
        let s = session.as_mut().expect("playing");
        if !media(conn, s)? {
            return Ok(());
        }
        // Whatever the client sent meanwhile (keep-alives, RTCP, TEARDOWN).
        while let Some(msg) = next_message(conn, false)? {
            if let Some(s) = session.as_mut() {
                s.last_heard = Instant::now();
            }
            if !request(env, conn, &mut guard, &mut session, msg)? {
                return Ok(());
            }
        }
        let s = session.as_mut().expect("session");
        for st in &mut s.setups {
            if let Some((rtp_sock, rtcp_sock, rtp_to, rtcp_to)) = &mut st.udp {
                if heard(rtp_sock, rtp_to) | heard(rtcp_sock, rtcp_to) {
                    s.last_heard = Instant::now();
                }
            }
        }
        let udp = s.setups.iter().any(|st| st.udp.is_some());
        if udp && s.last_heard.elapsed() > SESSION_TIMEOUT {
            tracing::info!(stream = %s.stream, "RTSP session timed out");
            return Ok(());
        }
    }
}

/// The next message from the client: with `block`, waits (up to the read timeout;
/// Ok(None) at the end of the connection or the timeout); without, returns only what
/// has already arrived.
fn next_message(conn: &mut Conn, block: bool) -> std::io::Result<Option<Incoming>> {
    loop {
        match rtsp::parse(&conn.buf) {
            Ok(Some((msg, n))) => {
                conn.buf.drain(..n);
                return Ok(Some(msg));
            }
            Ok(None) => {}
            Err(e) => {
                let bytes = Response::new(400).to_bytes(None);
                let _ = conn.send(&bytes);
                return Err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("malformed RTSP: {e}"),
                ));
            }
        }
        let mut chunk = [0u8; 4096];
        let n = if block {
            match conn.sock.read(&mut chunk) {
                Ok(n) => n,
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    tracing::info!("RTSP client silent for too long");
                    return Ok(None);
                }
                Err(e) => return Err(e),
            }
        } else {
            use nix::sys::socket::{recv, MsgFlags};
            use std::os::fd::AsRawFd;
            match recv(conn.sock.as_raw_fd(), &mut chunk, MsgFlags::MSG_DONTWAIT) {
                Ok(0) => return Err(std::io::ErrorKind::UnexpectedEof.into()),
                Ok(n) => n,
                Err(nix::errno::Errno::EAGAIN) | Err(nix::errno::Errno::EINTR) => return Ok(None),
                Err(e) => return Err(e.into()),
            }
        };
        if n == 0 {
            return Ok(None);
        }
        conn.buf.extend_from_slice(&chunk[..n]);
    }
}

fn reply(conn: &mut Conn, req: &Request, r: Response) -> std::io::Result<()> {
    let bytes = r.to_bytes(req.cseq());
    conn.send(&bytes)
}

/// `/<stream>[/<control>]` of a request: the stream and the track control, if any.
fn target(req: &Request) -> (String, Option<String>) {
    let path = req.path().trim_start_matches('/').trim_end_matches('/');
    match path.split_once('/') {
        Some((s, c)) => (s.to_string(), Some(c.to_string())),
        None => (path.to_string(), None),
    }
}

/// Handles one message. Ok(false): the session is over (TEARDOWN, or a refusal that
/// ends the connection).
fn request(
    env: &Env,
    conn: &mut Conn,
    guard: &mut auth::Guard,
    session: &mut Option<Session>,
    msg: Incoming,
) -> std::io::Result<bool> {
    let req = match msg {
        Incoming::Request(r) => r,
        Incoming::Interleaved { .. } => return Ok(true), // RTCP receiver reports
    };
    tracing::debug!(method = %req.method, uri = ?req.uri, "RTSP request");
    if let (Some(s), Some(given)) = (session.as_ref(), req.header("session")) {
        let given = given.split(';').next().unwrap_or("").trim();
        if given != s.id && req.method != "OPTIONS" {
            reply(conn, &req, Response::new(454))?;
            return Ok(true);
        }
    }
    // What shows or plays media needs the stream's read credentials, on every request;
    // the other methods act on a session, whose id only an authorised SETUP gives out.
    if matches!(req.method.as_str(), "DESCRIBE" | "SETUP" | "PLAY") {
        let stream = match session.as_ref() {
            Some(s) => s.stream.clone(),
            None => target(&req).0,
        };
        if !authorized(env, conn, guard, &req, &stream)? {
            return Ok(conn.wrong < super::MAX_WRONG);
        }
    }
    match req.method.as_str() {
        "OPTIONS" => reply(conn, &req, Response::new(200).header("Public", PUBLIC))?,
        "DESCRIBE" => {
            let (stream, _) = target(&req);
            if !open(env, conn, session, &req, &stream)? {
                return Ok(true);
            }
            let s = session.as_ref().expect("opened");
            let local = conn
                .sock
                .local_addr()
                .map(|a| a.ip().to_string())
                .unwrap_or_else(|_| "0.0.0.0".into());
            let body = sdp::describe(&s.tracks, &stream, random(1) >> 1, &local);
            let base = req
                .uri
                .split('?')
                .next()
                .unwrap_or("")
                .trim_end_matches('/');
            reply(
                conn,
                &req,
                Response::new(200)
                    .header("Content-Base", format!("{base}/"))
                    .body("application/sdp", body.into_bytes()),
            )?;
        }
        "SETUP" => setup(env, conn, session, &req)?,
        "PLAY" => {
            let Some(s) = session.as_mut().filter(|s| !s.setups.is_empty()) else {
                reply(conn, &req, Response::new(455))?;
                return Ok(true);
            };
            if !s.playing {
                start_play(s);
            }
            let base = req
                .uri
                .split('?')
                .next()
                .unwrap_or("")
                .trim_end_matches('/');
            let base = match target(&req).1 {
                // PLAY on a track URL: the session's base is its parent.
                Some(_) => base.rsplit_once('/').map(|(b, _)| b).unwrap_or(base),
                None => base,
            };
            let npt_us = s.first.as_ref().map(Frame::pts).unwrap_or(0);
            let info: Vec<String> = s
                .setups
                .iter()
                .map(|st| {
                    format!(
                        "url={base}/{};seq={};rtptime={}",
                        sdp::control(&st.track),
                        st.rtp.next_seq(),
                        st.rtp.timestamp(npt_us)
                    )
                })
                .collect();
            let id = s.id.clone();
            reply(
                conn,
                &req,
                Response::new(200)
                    .header("Session", id)
                    .header("Range", "npt=now-")
                    .header("RTP-Info", info.join(",")),
            )?;
        }
        "PAUSE" => {
            if let Some(s) = session.as_mut() {
                s.playing = false;
            }
            let id = session.as_ref().map(|s| s.id.clone()).unwrap_or_default();
            reply(conn, &req, Response::new(200).header("Session", id))?;
        }
        "GET_PARAMETER" | "SET_PARAMETER" => {
            let mut r = Response::new(200);
            if let Some(s) = session.as_ref() {
                r = r.header("Session", s.id.clone());
            }
            reply(conn, &req, r)?;
        }
        "TEARDOWN" => {
            reply(conn, &req, Response::new(200))?;
            return Ok(false);
        }
        _ => reply(conn, &req, Response::new(501).header("Public", PUBLIC))?,
    }
    Ok(true)
}

/// Checks the request's credentials when `stream` has read credentials. Ok(false) when
/// refused (answered 401 with fresh challenges, after a delay if the answer was wrong).
fn authorized(
    env: &Env,
    conn: &mut Conn,
    guard: &mut auth::Guard,
    req: &Request,
    stream: &str,
) -> std::io::Result<bool> {
    let secret = match conn.read_secret(env, stream) {
        Ok(None) => return Ok(true),
        Ok(Some(s)) => s,
        Err(()) => {
            reply(conn, req, Response::new(503))?;
            return Ok(false);
        }
    };
    let now = now_us().max(0) as u64 / 1_000_000;
    let verdict = guard.check(&req.method, req.header("authorization"), &secret, now);
    match &verdict {
        auth::Verdict::Granted => return Ok(true),
        auth::Verdict::Wrong(why) => {
            conn.wrong_password(stream, "rtsp", why);
        }
        auth::Verdict::Missing | auth::Verdict::Stale => {}
    }
    let [digest, basic] = guard.challenges(now, verdict == auth::Verdict::Stale);
    reply(
        conn,
        req,
        Response::new(401)
            .header("WWW-Authenticate", digest)
            .header("WWW-Authenticate", basic),
    )?;
    Ok(false)
}

/// Gates the viewer and opens the stream for the session (once per connection: a
/// session serves one stream). Ok(false) when refused (answered).
fn open(
    env: &Env,
    conn: &mut Conn,
    session: &mut Option<Session>,
    req: &Request,
    stream: &str,
) -> std::io::Result<bool> {
    if let Some(s) = session.as_ref() {
        if s.stream == stream {
            return Ok(true);
        }
        reply(conn, req, Response::new(459))?;
        return Ok(false);
    }
    if stream.is_empty() || stream.contains('/') {
        reply(conn, req, Response::new(404))?;
        return Ok(false);
    }
    let ua = req.header("user-agent").unwrap_or("").to_string();
    let path = match req.query() {
        Some(q) => format!("/{stream}?{q}"),
        None => format!("/{stream}"),
    };
    match conn.gate(env, &path, &ua, stream, "rtsp") {
        Ok(()) => {}
        Err(super::gate::Refusal::Missing) => {
            reply(conn, req, Response::new(404))?;
            return Ok(false);
        }
        Err(super::gate::Refusal::Denied(_)) => {
            reply(conn, req, Response::new(403))?;
            return Ok(false);
        }
    }
    let reader = match open_stream(env, stream) {
        Ok(r) => r,
        Err(OpenError::NoSuchStream) => {
            reply(conn, req, Response::new(404))?;
            return Ok(false);
        }
        Err(OpenError::NotStarted(why)) => {
            tracing::info!(stream, reason = %why, "RTSP stream not available");
            reply(conn, req, Response::new(503))?;
            return Ok(false);
        }
    };
    let tracks = sdp::playable(reader.tracks());
    if tracks.is_empty() {
        reply(conn, req, Response::new(415))?;
        return Ok(false);
    }
    conn.describe("rtsp", stream);
    *session = Some(Session {
        id: format!("{:016X}", random(2)),
        stream: stream.to_string(),
        reader,
        tracks,
        setups: Vec::new(),
        playing: false,
        wall_offset: None,
        first: None,
        last_sr: Instant::now(),
        last_heard: Instant::now(),
    });
    Ok(true)
}

fn setup(
    env: &Env,
    conn: &mut Conn,
    session: &mut Option<Session>,
    req: &Request,
) -> std::io::Result<()> {
    let (stream, control) = target(req);
    if !open(env, conn, session, req, &stream)? {
        return Ok(());
    }
    let s = session.as_mut().expect("opened");
    // A bare stream URL sets up its first track (clients of one-track streams).
    let index = match &control {
        Some(c) => s.tracks.iter().position(|t| sdp::control(t) == *c),
        None => Some(0),
    };
    let Some(index) = index else {
        reply(conn, req, Response::new(404))?;
        return Ok(());
    };
    let default_channels = (2 * index as u8, 2 * index as u8 + 1);
    let Some(transport) = req
        .header("transport")
        .and_then(|h| Transport::choose(h, default_channels))
    else {
        reply(conn, req, Response::new(461))?;
        return Ok(());
    };
    let track = s.tracks[index].clone();
    let mut udp = None;
    let mut server_ports = None;
    if let Transport::Udp { client_ports } = transport {
        let local = conn.sock.local_addr()?.ip();
        let peer = conn.sock.peer_addr()?.ip();
        let Some((a, b)) = udp_pair(local) else {
            reply(conn, req, Response::new(500))?;
            return Ok(());
        };
        server_ports = Some((a.local_addr()?.port(), b.local_addr()?.port()));
        udp = Some((
            a,
            b,
            SocketAddr::new(peer, client_ports.0),
            SocketAddr::new(peer, client_ports.1),
        ));
    }
    let seed = random(10 + index as u64);
    let rtp = RtpStream::new(
        sdp::payload_type(index),
        seed as u32,
        (seed >> 32) as u16,
        sdp::clock_rate(&track),
        (seed >> 48) as u32 ^ (seed as u32).rotate_left(7),
    );
    let reply_transport = transport.reply(server_ports, rtp.ssrc());
    let setup = Setup {
        track,
        rtp,
        transport,
        udp,
        sent_any: false,
    };
    match s.setups.iter().position(|st| st.track.id == setup.track.id) {
        Some(i) => s.setups[i] = setup,
        None => s.setups.push(setup),
    }
    let id = format!("{};timeout={}", s.id, SESSION_TIMEOUT.as_secs());
    reply(
        conn,
        req,
        Response::new(200)
            .header("Transport", reply_transport)
            .header("Session", id),
    )
}

/// Reads what the client sent to one of this track's UDP ports (RTCP receiver
/// reports, the packets clients send to open a NAT's mapping). True if anything came
/// from the client's address. Symmetric RTP: the packets go on to the port they came
/// from, so a client behind a NAT that sends first receives at the NAT's mapped port
/// rather than at the one it named (only from the RTSP connection's address, so a
/// stranger cannot redirect the stream).
fn heard(sock: &UdpSocket, to: &mut SocketAddr) -> bool {
    let mut b = [0u8; 1500];
    let mut any = false;
    while let Ok((_, from)) = sock.recv_from(&mut b) {
        if from.ip() == to.ip() {
            any = true;
            if from != *to {
                tracing::debug!(from = %from, to = %to, "RTP destination follows the client's port");
                *to = from;
            }
        }
    }
    any
}

/// Two UDP sockets on consecutive ports, the first even (RTP, RTCP), on `ip`.
fn udp_pair(ip: std::net::IpAddr) -> Option<(UdpSocket, UdpSocket)> {
    for _ in 0..32 {
        let a = UdpSocket::bind(SocketAddr::new(ip, 0)).ok()?;
        let port = a.local_addr().ok()?.port();
        if port % 2 != 0 || port == u16::MAX {
            continue;
        }
        if let Ok(b) = UdpSocket::bind(SocketAddr::new(ip, port + 1)) {
            a.set_nonblocking(true).ok()?;
            b.set_nonblocking(true).ok()?;
            return Some((a, b));
        }
    }
    None
}

/// PLAY: from the newest keyframe; its frame is read now so that RTP-Info can name
/// the RTP time the play starts at.
fn start_play(s: &mut Session) {
    s.playing = true;
    s.last_heard = Instant::now();
    s.reader.seek_live();
    let keys = s.reader.keyframes();
    if let Some(k) = keys.last() {
        s.wall_offset = Some(k.wall_us - k.dts);
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while s.first.is_none() && Instant::now() < deadline {
        match s.reader.next(TICK) {
            Ok(Read::Frame(f)) if s.setups.iter().any(|st| st.track.id == f.track) => {
                s.first = Some(f)
            }
            Ok(Read::Frame(_)) | Ok(Read::Timeout) | Ok(Read::Resync { .. }) => {}
            Ok(Read::Discontinuity { .. }) | Ok(Read::Tracks(_)) => {}
            Ok(Read::Ended) | Err(_) => break,
        }
    }
    if s.wall_offset.is_none() {
        if let Some(f) = &s.first {
            s.wall_offset = Some(now_us() - f.pts());
        }
    }
}

/// Sends what the buffer has for up to one tick, and the sender reports that are due.
/// Ok(false): the stream ended.
fn media(conn: &mut Conn, s: &mut Session) -> std::io::Result<bool> {
    if let Some(f) = s.first.take() {
        send_frame(conn, s, &f)?;
    }
    let until = Instant::now() + TICK;
    loop {
        let left = until.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break;
        }
        match s.reader.next(left).map_err(std::io::Error::other)? {
            Read::Frame(f) => {
                send_frame(conn, s, &f)?;
                s.reader.add_bytes(f.data.len() as u64);
            }
            Read::Tracks(t) => {
                let now = sdp::playable(&t);
                for st in &mut s.setups {
                    match now.iter().find(|n| n.id == st.track.id) {
                        // New parameter sets (a new resolution) go out before the
                        // next keyframe.
                        Some(n) if n.codec == st.track.codec => st.track = n.clone(),
                        _ => {
                            tracing::info!(stream = %s.stream, "tracks changed; ending the session");
                            return Ok(false);
                        }
                    }
                }
            }
            Read::Ended => return Ok(false),
            Read::Timeout => break,
            Read::Resync { .. } | Read::Discontinuity { .. } => {}
        }
    }
    if s.last_sr.elapsed() >= SR_EVERY {
        s.last_sr = Instant::now();
        send_reports(conn, s)?;
    }
    Ok(true)
}

fn send_frame(conn: &mut Conn, s: &mut Session, f: &Frame) -> std::io::Result<()> {
    let Some(st) = s.setups.iter_mut().find(|st| st.track.id == f.track) else {
        return Ok(());
    };
    if s.wall_offset.is_none() {
        s.wall_offset = Some(now_us() - f.pts());
    }
    let packets = match st.track.codec {
        Codec::H264 => {
            let sets = if f.key {
                h264::parse_avcc(&st.track.init)
                    .map(|c| c.sps.into_iter().chain(c.pps).collect())
                    .unwrap_or_default()
            } else {
                Vec::new()
            };
            match st.rtp.h264(&f.data, f.pts(), &sets) {
                Ok(p) => p,
                Err(e) => {
                    tracing::debug!(error = %e, "frame not sent");
                    return Ok(());
                }
            }
        }
        Codec::Aac => st.rtp.aac(&f.data, f.dts),
        _ => return Ok(()),
    };
    let first = !st.sent_any;
    st.sent_any = true;
    send_packets(conn, st, &packets, false)?;
    if first {
        // A report right away: clients sync audio and video from the first ones.
        let wall = now_us();
        let media = wall - s.wall_offset.unwrap_or(0);
        let report = st.rtp.sender_report(wall, media, "brume");
        send_packets(conn, st, &[report], true)?;
    }
    Ok(())
}

fn send_reports(conn: &mut Conn, s: &mut Session) -> std::io::Result<()> {
    let wall = now_us();
    let media = wall - s.wall_offset.unwrap_or(0);
    for st in &s.setups {
        if st.sent_any {
            let report = st.rtp.sender_report(wall, media, "brume");
            send_packets(conn, st, &[report], true)?;
        }
    }
    Ok(())
}

fn send_packets(
    conn: &mut Conn,
    st: &Setup,
    packets: &[Vec<u8>],
    rtcp: bool,
) -> std::io::Result<()> {
    match (&st.transport, &st.udp) {
        (Transport::Tcp { channels }, _) => {
            let channel = if rtcp { channels.1 } else { channels.0 };
            let mut out = Vec::with_capacity(packets.iter().map(|p| p.len() + 4).sum());
            for p in packets {
                out.extend_from_slice(&rtsp::interleaved(channel, p));
            }
            conn.send(&out)
        }
        (Transport::Udp { .. }, Some((rtp_sock, rtcp_sock, rtp_to, rtcp_to))) => {
            let (sock, to) = if rtcp {
                (rtcp_sock, rtcp_to)
            } else {
                (rtp_sock, rtp_to)
            };
            let mut n = 0u64;
            for p in packets {
                // A full socket buffer or an ICMP error drops the packet, as UDP does.
                if sock.send_to(p, to).is_ok() {
                    n += p.len() as u64;
                }
            }
            conn.count(n);
            conn.sent += n;
            Ok(())
        }
        _ => Ok(()),
    }
}
