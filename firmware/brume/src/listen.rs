//! `brume listen`: the protocol listeners and the angel of every connection.
//!
//! One single-threaded process (no runtime, no other threads, so `fork` is safe) owns
//! the HTTP and RTMP listening sockets. For HTTP it reads the request head (with a
//! deadline and a size limit) and routes it: media paths get a worker process forked
//! from this one; everything else (API, UI) is handed to the controller with the
//! socket. Every RTMP connection is forked into an RTMP input process, every RTSP
//! connection into an RTSP worker.
//!
//! As the connections' angel it keeps its own copy of every client socket: when a
//! worker is killed or crashes while the client is still connected, a new worker is
//! forked on the same socket and resumes the stream where the old one stopped.
//!
//! A listener that replaces another one (after a crash, or in a live update) adopts
//! the workers that still run: each worker watches the connection table's owner and,
//! once the listener that forked it has ended, hands the new owner a copy of its
//! client socket with its record (`handoff::send_adoption`). The new listener watches
//! it through a pidfd and resumes it like its own children.
//!
//! The listening sockets normally come from `brume serve` (`BRUME_LISTEN_FDS`), which
//! keeps them open for the appliance's whole life, so the ports never close while a
//! listener is replaced: connections wait in the backlog.
//!
//! It also caps what clients may hold (`limits` in the configuration): connections in
//! all and per address, workers and RTMP inputs (7/8 of the connections, so request
//! heads always find room), RTMP connections not yet publishing; and it refuses RTMP
//! connections from an address that gave wrong publish keys too often. RTMP inputs
//! report an accepted publisher and a wrong key on the listener's datagram socket.

use crate::config::Limits;
use crate::env::Env;
use crate::handoff::{self, MAX_HEAD};
use brume_shm::ConnTable;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::collections::{HashMap, VecDeque};
use std::io::{Read, Write};
use std::net::{IpAddr, TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::time::{Duration, Instant};

/// Restarts of workers on one connection before the angel gives up on it.
const MAX_RESUMES: u32 = 5;
/// Wrong publish keys from one address within `KEY_WINDOW` that get it refused...
const KEY_FAILURES: usize = 5;
const KEY_WINDOW: Duration = Duration::from_secs(60);
/// ... for this long.
const KEY_REFUSAL: Duration = Duration::from_secs(60);
/// Addresses remembered for the key rate limit (beyond it the oldest are forgotten).
const KEY_ADDRESSES: usize = 4096;

struct Pending {
    stream: TcpStream,
    head: Vec<u8>,
    deadline: Instant,
    peer: String,
    ip: IpAddr,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Http,
    Rtmp,
    Rtsp,
}

impl Kind {
    fn code(self) -> u8 {
        match self {
            Kind::Http => b'h',
            Kind::Rtmp => b'r',
            Kind::Rtsp => b's',
        }
    }

    fn from_code(c: u8) -> Option<Kind> {
        match c {
            b'h' => Some(Kind::Http),
            b'r' => Some(Kind::Rtmp),
            b's' => Some(Kind::Rtsp),
            _ => None,
        }
    }
}

/// The environment variable through which `brume serve` names the listening sockets
/// it passes: `http=3,rtmp=4,rtsp=5`.
pub const LISTEN_FDS: &str = "BRUME_LISTEN_FDS";

/// A connection a worker serves; the angel's copy of the socket keeps it open.
struct Conn {
    kind: Kind,
    fd: OwnedFd,
    head: Vec<u8>,
    slot: Option<usize>,
    started: Instant,
    resumes: u32,
    ip: Option<IpAddr>,
    /// An RTMP input whose publisher was accepted (reported on the listener socket).
    publishing: bool,
}

impl Conn {
    /// A connection just accepted from `ip`, before its first worker.
    fn new(kind: Kind, fd: OwnedFd, head: Vec<u8>, ip: IpAddr) -> Conn {
        Conn {
            kind,
            fd,
            head,
            slot: None,
            started: Instant::now(),
            resumes: 0,
            ip: Some(ip),
            publishing: false,
        }
    }
}

/// Refusals are logged once, then summed up at most every 10 s, so a flood of
/// connections is not a flood of log lines.
#[derive(Default)]
struct Refusals {
    last: Option<Instant>,
    since: u64,
}

impl Refusals {
    fn note(&mut self, ip: IpAddr, why: &str) {
        self.since += 1;
        if self
            .last
            .is_some_and(|t| t.elapsed() < Duration::from_secs(10))
        {
            return;
        }
        tracing::warn!(peer = %ip, refused = self.since, reason = why, "connections refused");
        self.last = Some(Instant::now());
        self.since = 0;
    }
}

/// Wrong publish keys per address, and the addresses refused for them.
#[derive(Default)]
struct KeyFailures {
    failures: HashMap<IpAddr, VecDeque<Instant>>,
    refused: HashMap<IpAddr, Instant>,
}

impl KeyFailures {
    fn failed(&mut self, ip: IpAddr) {
        let now = Instant::now();
        if self.failures.len() >= KEY_ADDRESSES && !self.failures.contains_key(&ip) {
            self.failures.retain(|_, v| {
                v.back()
                    .is_some_and(|t| now.duration_since(*t) < KEY_WINDOW)
            });
            if self.failures.len() >= KEY_ADDRESSES {
                self.failures.clear();
            }
        }
        let v = self.failures.entry(ip).or_default();
        v.push_back(now);
        while v
            .front()
            .is_some_and(|t| now.duration_since(*t) >= KEY_WINDOW)
        {
            v.pop_front();
        }
        if v.len() >= KEY_FAILURES {
            self.failures.remove(&ip);
            if self.refused.len() >= KEY_ADDRESSES {
                self.refused.retain(|_, until| *until > now);
            }
            self.refused.insert(ip, now + KEY_REFUSAL);
            tracing::warn!(
                peer = %ip,
                failures = KEY_FAILURES,
                refused_s = KEY_REFUSAL.as_secs(),
                "RTMP address refused after wrong publish keys"
            );
        }
    }

    fn is_refused(&mut self, ip: IpAddr) -> bool {
        match self.refused.get(&ip) {
            Some(until) if *until > Instant::now() => true,
            Some(_) => {
                self.refused.remove(&ip);
                false
            }
            None => false,
        }
    }
}

/// Everything the listener holds for clients, and its caps.
struct Held {
    limits: Limits,
    pending: Vec<Pending>,
    workers: HashMap<i32, Conn>,
    refusals: Refusals,
    keys: KeyFailures,
    /// Workers of an earlier listener that this one adopted: pid and pidfd (readable
    /// once the process has ended; it is not our child, so there is no status).
    adopted: Vec<(i32, OwnedFd)>,
}

impl Held {
    /// Connections held from `ip`: heads being read, workers and RTMP inputs.
    fn from(&self, ip: IpAddr) -> usize {
        self.pending.iter().filter(|p| p.ip == ip).count()
            + self.workers.values().filter(|c| c.ip == Some(ip)).count()
    }

    fn total(&self) -> usize {
        self.pending.len() + self.workers.len()
    }

    /// RTMP inputs not publishing yet: in all, and from `ip`.
    fn unauthenticated_rtmp(&self, ip: IpAddr) -> (usize, usize) {
        let mut n = (0, 0);
        for c in self.workers.values() {
            if c.kind == Kind::Rtmp && !c.publishing {
                n.0 += 1;
                n.1 += usize::from(c.ip == Some(ip));
            }
        }
        n
    }

    /// Takes a new HTTP connection within the caps: refused with 503 when its address
    /// holds its share; when all connections are taken, the oldest unfinished request
    /// head makes room (it had its chance), else the new one is refused.
    fn admit_http(&mut self, s: TcpStream, ip: IpAddr, peer: String) {
        if self.from(ip) >= self.limits.max_connections_per_address as usize {
            self.refusals
                .note(ip, "too many connections from this address");
            return reject(s, 503, "too many connections from your address");
        }
        if self.total() >= self.limits.max_connections as usize {
            let oldest = (0..self.pending.len()).min_by_key(|i| self.pending[*i].deadline);
            match oldest {
                Some(i) => {
                    let old = self.pending.swap_remove(i);
                    self.refusals.note(old.ip, "all connections taken");
                    reject(old.stream, 503, "the server is busy; try again");
                }
                None => {
                    self.refusals.note(ip, "all connections taken");
                    return reject(s, 503, "the server is busy; try again");
                }
            }
        }
        let _ = s.set_nonblocking(true);
        self.pending.push(Pending {
            stream: s,
            head: Vec::new(),
            deadline: Instant::now() + self.limits.head_timeout(),
            peer,
            ip,
        });
    }

    /// Whether a new RTMP connection from `ip` may have an input process.
    fn admit_rtmp(&mut self, ip: IpAddr) -> bool {
        let why = if self.keys.is_refused(ip) {
            "wrong publish keys from this address"
        } else if self.from(ip) >= self.limits.max_connections_per_address as usize {
            "too many connections from this address"
        } else if self.workers.len() >= self.limits.max_children()
            || self.total() >= self.limits.max_connections as usize
        {
            "all connections taken"
        } else if self.unauthenticated_rtmp(ip).0 >= self.limits.max_unauthenticated_rtmp as usize {
            "too many RTMP connections not publishing yet"
        } else if self.unauthenticated_rtmp(ip).1
            >= self.limits.max_unauthenticated_rtmp_per_address()
        {
            "too many RTMP connections not publishing yet from this address"
        } else {
            return true;
        };
        self.refusals.note(ip, why);
        false
    }

    /// Reports from RTMP inputs (`P<pid>` publishing, `K<ip>` a wrong key) and
    /// adoption requests from workers of an earlier listener.
    fn reports(&mut self, sock: &UnixDatagram, conns: &ConnTable) {
        let mut buf = vec![0u8; MAX_HEAD + 64];
        while let Ok((n, fd)) = handoff::recv_with_fd(sock, &mut buf) {
            if n == 0 {
                continue;
            }
            if buf[0] == b'A' {
                if let Some(fd) = fd {
                    self.adopt(&buf[1..n], fd, conns);
                }
                continue;
            }
            let text = std::str::from_utf8(&buf[1..n]).unwrap_or("");
            match buf.first() {
                Some(b'P') => {
                    if let Some(c) = text
                        .parse()
                        .ok()
                        .and_then(|pid: i32| self.workers.get_mut(&pid))
                    {
                        c.publishing = true;
                    }
                }
                Some(b'K') => {
                    if let Ok(ip) = text.parse() {
                        self.keys.failed(ip);
                    }
                }
                _ => {}
            }
        }
    }
}

/// Tells the listener that this RTMP input's publisher was accepted (best effort).
pub fn report_publishing(env: &Env) {
    report(env, format!("P{}", std::process::id()));
}

/// Tells the listener that `ip` gave a wrong publish key (best effort).
pub fn report_wrong_key(env: &Env, ip: IpAddr) {
    report(env, format!("K{ip}"));
}

impl Held {
    /// A worker of an earlier listener asks to be adopted: its pid, record, kind and
    /// request head, with a copy of its client socket. Taken only when the record
    /// names that running process, so nothing else can plant a connection here.
    fn adopt(&mut self, msg: &[u8], fd: OwnedFd, conns: &ConnTable) {
        if msg.len() < 9 {
            return;
        }
        let pid = u32::from_le_bytes(msg[0..4].try_into().expect("4 bytes")) as i32;
        let slot = u32::from_le_bytes(msg[4..8].try_into().expect("4 bytes")) as usize;
        let Some(kind) = Kind::from_code(msg[8]) else {
            return;
        };
        if slot >= brume_shm::conns::CONN_SLOTS
            || conns.worker(slot) != pid as u32
            || !conns.worker_alive(slot)
            || self.workers.contains_key(&pid)
        {
            tracing::warn!(
                pid,
                slot,
                "adoption refused: the record does not name that worker"
            );
            return;
        }
        // SAFETY: pidfd_open takes no pointers; a negative result is an error.
        let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
        if pidfd < 0 {
            return;
        }
        // SAFETY: the kernel just returned this descriptor; we own it.
        let pidfd = unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(pidfd as RawFd) };
        let ip = conns
            .list()
            .into_iter()
            .find(|c| c.slot == slot)
            .and_then(|c| c.peer.parse::<std::net::SocketAddr>().ok())
            .map(|a| a.ip());
        let conn = Conn {
            kind,
            fd,
            head: msg[9..].to_vec(),
            slot: Some(slot),
            started: Instant::now(),
            resumes: conns.restarts(slot) as u32,
            ip,
            publishing: false,
        };
        tracing::info!(pid, slot, "adopted a connection worker");
        self.workers.insert(pid, conn);
        self.adopted.push((pid, pidfd));
    }
}

fn report(env: &Env, msg: String) {
    if let Ok(s) = UnixDatagram::unbound() {
        let _ = s.send_to(msg.as_bytes(), env.listener_socket());
    }
}

pub fn main(args: &[String]) -> Result<(), String> {
    crate::logging::init("listen");
    let env = Env::from_env();
    let http_addr = crate::flag(args, "--http").ok_or("--http ADDR:PORT is required")?;
    let rtmp_addr = crate::flag(args, "--rtmp");
    // RTSP viewers: one worker per connection (worker::rtsp).
    let rtsp_addr = crate::flag(args, "--rtsp");
    let mut passed = inherited_listeners();
    let http = listener(passed.remove("http"), Some(http_addr), "HTTP")?
        .ok_or("--http ADDR:PORT is required")?;
    let rtmp = listener(passed.remove("rtmp"), rtmp_addr, "RTMP")?;
    let rtsp = listener(passed.remove("rtsp"), rtsp_addr, "RTSP")?;
    let sigfd = signal_fd()?;
    let limits = crate::config::Config::load(&env.config)
        .map(|c| c.limits)
        .unwrap_or_default();
    Limits::set_current(limits.clone());
    let report_path = env.listener_socket();
    let _ = std::fs::remove_file(&report_path);
    let reports =
        UnixDatagram::bind(&report_path).map_err(|e| format!("{}: {e}", report_path.display()))?;
    reports.set_nonblocking(true).map_err(|e| e.to_string())?;
    // Owned from here on: workers of the listener this one replaces see the new owner
    // and ask to be adopted on the socket just bound.
    let conns = ConnTable::take_over(&env.ns).map_err(|e| e.to_string())?;
    // A descriptor kept in reserve: when the process runs out of descriptors, it is
    // given up to accept (and refuse) one connection, so a full table never leaves
    // the listening socket readable forever (a busy loop).
    let mut spare = std::fs::File::open("/dev/null").ok();
    tracing::info!(
        http = http_addr,
        rtmp = rtmp_addr.unwrap_or("off"),
        rtsp = rtsp_addr.unwrap_or("off"),
        max_connections = limits.max_connections,
        per_address = limits.max_connections_per_address,
        "listening"
    );

    let mut held = Held {
        limits,
        pending: Vec::new(),
        workers: HashMap::new(),
        refusals: Refusals::default(),
        keys: KeyFailures::default(),
        adopted: Vec::new(),
    };
    // SIGUSR2 (a live update): accept nothing more, finish the request heads being
    // read, then leave the workers running for the next listener to adopt.
    let mut draining = false;
    loop {
        if draining && held.pending.is_empty() {
            tracing::info!(connections = held.workers.len(), "handed over");
            return Ok(());
        }
        let now = Instant::now();
        let timeout = held
            .pending
            .iter()
            .map(|p| p.deadline.saturating_duration_since(now))
            .min()
            .map(|d| {
                PollTimeout::try_from(d.as_millis().min(60_000) as i32 + 1)
                    .unwrap_or(PollTimeout::MAX)
            })
            .unwrap_or(PollTimeout::NONE);
        let rtsp_ready;
        let ended: Vec<i32>;
        let (sig_ready, http_ready, rtmp_ready, ready): (bool, bool, bool, Vec<bool>) = {
            // While draining, the listening sockets are not looked at: the next
            // listener accepts on the same sockets.
            let accepting = if draining {
                PollFlags::empty()
            } else {
                PollFlags::POLLIN
            };
            let mut fds = vec![
                PollFd::new(sigfd.as_fd(), PollFlags::POLLIN),
                PollFd::new(http.as_fd(), accepting),
                PollFd::new(reports.as_fd(), PollFlags::POLLIN),
            ];
            let rtmp_at = rtmp.as_ref().map(|r| {
                fds.push(PollFd::new(r.as_fd(), accepting));
                fds.len() - 1
            });
            let rtsp_at = rtsp.as_ref().map(|r| {
                fds.push(PollFd::new(r.as_fd(), accepting));
                fds.len() - 1
            });
            let adopted_at = fds.len();
            for (_, pidfd) in &held.adopted {
                fds.push(PollFd::new(pidfd.as_fd(), PollFlags::POLLIN));
            }
            let base = fds.len();
            for p in &held.pending {
                fds.push(PollFd::new(p.stream.as_fd(), PollFlags::POLLIN));
            }
            match poll(&mut fds, timeout) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(format!("poll: {e}")),
            }
            let is = |f: &PollFd| f.revents().is_some_and(|r| !r.is_empty());
            rtsp_ready = rtsp_at.is_some_and(|i| is(&fds[i]));
            ended = fds[adopted_at..base]
                .iter()
                .zip(&held.adopted)
                .filter(|(f, _)| is(f))
                .map(|(_, (pid, _))| *pid)
                .collect();
            (
                is(&fds[0]),
                is(&fds[1]),
                rtmp_at.is_some_and(|i| is(&fds[i])),
                fds[base..].iter().map(is).collect(),
            )
        };
        // Publishers accepted and wrong keys, before new RTMP connections are counted.
        held.reports(&reports, &conns);
        // Adopted workers that ended: finished with their connection, or crashed.
        for pid in ended {
            held.adopted.retain(|(p, _)| *p != pid);
            if let Some(conn) = held.workers.remove(&pid) {
                let crashed = conn.slot.is_some_and(|s| conns.worker(s) == pid as u32);
                let how = if crashed {
                    "ended without finishing"
                } else {
                    "finished"
                };
                ended_worker(conn, pid, crashed, how, &mut held.workers, &conns, &env);
            }
        }

        if sig_ready {
            let mut info = [0u8; 128];
            let _ = nix::unistd::read(&sigfd, &mut info);
            let signo = u32::from_ne_bytes([info[0], info[1], info[2], info[3]]) as i32;
            if signo == libc::SIGUSR2 && !draining {
                tracing::info!(
                    connections = held.workers.len(),
                    "handing over to the next listener"
                );
                draining = true;
            }
            if signo == libc::SIGTERM || signo == libc::SIGINT {
                tracing::info!(connections = held.workers.len(), "stopping");
                for pid in held.workers.keys() {
                    // SAFETY: kill takes no pointers.
                    unsafe { libc::kill(*pid, libc::SIGTERM) };
                }
                return Ok(());
            }
            reap(&mut held.workers, &conns, &env);
        }

        // Requests whose head is complete (or broken) leave `pending`. Walked from
        // the end, so removing one never moves another that is still to be looked at.
        let now = Instant::now();
        for i in (0..held.pending.len()).rev() {
            let p = &mut held.pending[i];
            let mut done = None;
            if ready.get(i).copied().unwrap_or(false) {
                let mut buf = [0u8; 4096];
                match p.stream.read(&mut buf) {
                    Ok(0) => done = Some(Route::Drop),
                    Ok(n) => {
                        p.head.extend_from_slice(&buf[..n]);
                        done = route(&p.head);
                    }
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(_) => done = Some(Route::Drop),
                }
            }
            if done.is_none() && p.deadline <= now {
                done = Some(Route::Reject(408, "request head not received in time"));
            }
            if let Some(route) = done {
                let p = held.pending.swap_remove(i);
                dispatch(p, route, &env, &conns, &mut held);
            }
        }

        if http_ready && !draining {
            loop {
                match http.accept() {
                    Ok((s, peer)) => held.admit_http(s, peer.ip(), peer.to_string()),
                    Err(e) if out_of_descriptors(&e) => {
                        drop(spare.take());
                        if let Ok((s, peer)) = http.accept() {
                            held.refusals.note(peer.ip(), "out of descriptors");
                            reject(s, 503, "the server is busy; try again");
                        }
                        spare = std::fs::File::open("/dev/null").ok();
                        break;
                    }
                    Err(_) => break,
                }
            }
        }
        if rtmp_ready && !draining {
            if let Some(l) = &rtmp {
                loop {
                    let (s, peer) = match l.accept() {
                        Ok(a) => a,
                        Err(e) if out_of_descriptors(&e) => {
                            drop(spare.take());
                            drop(l.accept());
                            spare = std::fs::File::open("/dev/null").ok();
                            break;
                        }
                        Err(_) => break,
                    };
                    if !held.admit_rtmp(peer.ip()) {
                        continue; // closed before anything was read or forked
                    }
                    let _ = s.set_nonblocking(false);
                    let conn = Conn::new(Kind::Rtmp, OwnedFd::from(s), Vec::new(), peer.ip());
                    tracing::info!(peer = %peer, "RTMP connection");
                    start(conn, &env, &conns, &mut held.workers, &peer.to_string());
                }
            }
        }
        if rtsp_ready && !draining {
            if let Some(l) = &rtsp {
                while let Ok((s, peer)) = l.accept() {
                    if held.from(peer.ip()) >= held.limits.max_connections_per_address as usize
                        || held.workers.len() >= held.limits.max_children()
                        || held.total() >= held.limits.max_connections as usize
                    {
                        held.refusals.note(peer.ip(), "RTSP: all connections taken");
                        continue; // closed before anything was read or forked
                    }
                    let _ = s.set_nonblocking(false);
                    let conn = Conn::new(Kind::Rtsp, OwnedFd::from(s), Vec::new(), peer.ip());
                    start(conn, &env, &conns, &mut held.workers, &peer.to_string());
                }
            }
        }
    }
}

fn out_of_descriptors(e: &std::io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EMFILE) | Some(libc::ENFILE))
}

enum Route {
    /// Serve in a forked worker.
    Worker,
    /// Hand to the controller.
    Controller,
    /// Answer with this status and close.
    Reject(u16, &'static str),
    /// The client went away.
    Drop,
}

/// Decides where a request goes once its head is complete. None: need more bytes.
fn route(head: &[u8]) -> Option<Route> {
    let end = head.windows(4).position(|w| w == b"\r\n\r\n");
    if end.is_none() {
        return if head.len() > MAX_HEAD {
            Some(Route::Reject(431, "request head too large"))
        } else {
            None
        };
    }
    let line_end = head.iter().position(|b| *b == b'\r').unwrap_or(0);
    let line = std::str::from_utf8(&head[..line_end]).unwrap_or("");
    let mut parts = line.split(' ');
    let (Some(_method), Some(path), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Some(Route::Reject(400, "malformed request line"));
    };
    if !version.starts_with("HTTP/1.") {
        return Some(Route::Reject(505, "only HTTP/1.x is served"));
    }
    if crate::worker::is_media_path(path) {
        Some(Route::Worker)
    } else {
        Some(Route::Controller)
    }
}

fn dispatch(p: Pending, route: Route, env: &Env, conns: &ConnTable, held: &mut Held) {
    match route {
        Route::Drop => {}
        Route::Reject(code, why) => {
            tracing::warn!(peer = %p.peer, status = code, reason = why, "request refused");
            reject(p.stream, code, why);
        }
        Route::Controller => {
            let sent =
                handoff::send_connection(&env.controller_socket(), p.stream.as_raw_fd(), &p.head);
            if let Err(e) = sent {
                tracing::warn!(peer = %p.peer, error = %e, "controller unavailable");
                reject(p.stream, 503, "the controller is restarting; try again");
            }
        }
        Route::Worker if held.workers.len() >= held.limits.max_children() => {
            held.refusals.note(p.ip, "all workers taken");
            reject(p.stream, 503, "too many viewers; try again");
        }
        Route::Worker => {
            let _ = p.stream.set_nonblocking(false);
            let conn = Conn::new(Kind::Http, OwnedFd::from(p.stream), p.head, p.ip);
            start(conn, env, conns, &mut held.workers, &p.peer);
        }
    }
}

fn reject(mut s: TcpStream, code: u16, why: &str) {
    let _ = s.set_nonblocking(false);
    let _ = s.set_write_timeout(Some(Duration::from_secs(1)));
    let body = format!("{{\"error\":\"{why}\"}}\n");
    let reason = match code {
        400 => "Bad Request",
        408 => "Request Timeout",
        431 => "Request Header Fields Too Large",
        503 => "Service Unavailable",
        _ => "HTTP Version Not Supported",
    };
    let _ = write!(
        s,
        "HTTP/1.1 {code} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// Forks a worker for `conn` (a new connection, or a resumed one).
fn start(
    mut conn: Conn,
    env: &Env,
    conns: &ConnTable,
    workers: &mut HashMap<i32, Conn>,
    peer: &str,
) {
    let resume = conn.slot.is_some();
    if conn.slot.is_none() && conn.kind != Kind::Rtmp {
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(1);
        conn.slot = conns.claim(peer, ms.max(1));
    }
    // SAFETY: this process is single-threaded (no runtime, no helper threads), so the
    // child may run arbitrary code after fork.
    match unsafe { nix::unistd::fork() } {
        Ok(nix::unistd::ForkResult::Child) => {
            // Nothing of the listener's outlives the fork in this child: not the
            // listening sockets (a new listener could not bind while a child held
            // them), not the other clients' sockets (their connections would never
            // end while this child lives). Fork without exec ignores close-on-exec.
            let mut keep = vec![conn.fd.as_raw_fd()];
            keep.extend(crate::logging::forward_fd());
            close_inherited(&keep);
            if let Some(slot) = conn.slot {
                watch_angel(env, &conn.fd, slot, conn.kind, &conn.head);
            }
            let slot = conn.slot;
            let code = match conn.kind {
                Kind::Http => {
                    crate::worker::serve_forked(env, conn.fd, &conn.head, conn.slot, resume)
                }
                Kind::Rtmp => crate::input::rtmp::serve_forked(env, conn.fd),
                Kind::Rtsp => crate::worker::rtsp::serve_forked(env, conn.fd, conn.slot),
            };
            if code == 0 {
                if let Some(s) = slot {
                    // An adopting listener gets no exit status: the record says it.
                    conns.finished(s, std::process::id());
                }
            }
            std::process::exit(code);
        }
        Ok(nix::unistd::ForkResult::Parent { child }) => {
            if let Some(s) = conn.slot {
                conns.set_worker(s, child.as_raw() as u32, resume);
            }
            conn.started = Instant::now();
            workers.insert(child.as_raw(), conn);
        }
        Err(e) => {
            tracing::error!(error = %e, "fork failed; closing the connection");
            if let Some(s) = conn.slot {
                conns.release(s);
            }
        }
    }
}

/// Closes every descriptor of this just-forked child except stdio and `keep`.
fn close_inherited(keep: &[RawFd]) {
    let mut keep: Vec<u32> = keep
        .iter()
        .filter(|fd| **fd > 2)
        .map(|fd| *fd as u32)
        .collect();
    keep.sort_unstable();
    keep.dedup();
    // The gaps between the kept descriptors, then everything above the last one.
    let mut ranges = Vec::with_capacity(keep.len() + 1);
    let mut from = 3u32;
    for k in &keep {
        if *k > from {
            ranges.push((from, k - 1));
        }
        from = k + 1;
    }
    ranges.push((from, u32::MAX));
    let mut by_range = true;
    for (first, last) in ranges {
        // SAFETY: close_range takes no pointers; the descriptors it closes belong to
        // objects of the parent's that this child never uses (it exits without
        // returning to them).
        if unsafe { libc::syscall(libc::SYS_close_range, first, last, 0) } != 0 {
            by_range = false;
            break;
        }
    }
    if by_range {
        return;
    }
    // Kernels before 5.9: every open descriptor, from /proc.
    let open: Vec<RawFd> = match std::fs::read_dir("/proc/self/fd") {
        Ok(dir) => dir
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect(),
        Err(_) => (3..1024).collect(),
    };
    for fd in open {
        if fd > 2 && !keep.contains(&(fd as u32)) {
            // SAFETY: as above; a descriptor already closed gives EBADF, ignored.
            unsafe { libc::close(fd) };
        }
    }
}

/// Collects exited workers; resumes connections whose worker died while the client
/// is still there.
fn reap(workers: &mut HashMap<i32, Conn>, conns: &ConnTable, env: &Env) {
    loop {
        let mut status = 0;
        // SAFETY: waitpid with a valid status pointer.
        let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
        if pid <= 0 {
            return;
        }
        let Some(conn) = workers.remove(&pid) else {
            continue;
        };
        use std::os::unix::process::ExitStatusExt;
        let status = std::process::ExitStatus::from_raw(status);
        let crashed = !crate::angel::is_clean(status);
        let how = crate::angel::describe(status);
        ended_worker(conn, pid, crashed, &how, workers, conns, env);
    }
}

/// A worker ended: its record is released, or, when it crashed while its client is
/// still connected, a successor resumes the connection.
fn ended_worker(
    mut conn: Conn,
    pid: i32,
    crashed: bool,
    how: &str,
    workers: &mut HashMap<i32, Conn>,
    conns: &ConnTable,
    env: &Env,
) {
    if !crashed {
        if let Some(s) = conn.slot {
            conns.release(s);
        }
        return; // the worker finished with the connection
    }
    let alive = client_connected(&conn.fd);
    let resumable = conn.kind == Kind::Http && alive && conn.resumes < MAX_RESUMES;
    tracing::error!(
        pid,
        status = %how,
        ran_ms = conn.started.elapsed().as_millis() as u64,
        resume = resumable,
        "connection worker crashed"
    );
    if resumable {
        conn.resumes += 1;
        let peer = String::new();
        start(conn, env, conns, workers, &peer);
    } else if let Some(s) = conn.slot {
        conns.release(s);
    }
}

/// In a just-forked worker: a thread that watches the connection table's owner. Once
/// the listener that forked this worker has ended and another owns the table, it
/// hands that one a copy of the client socket, so the connection keeps an angel.
fn watch_angel(env: &Env, fd: &OwnedFd, slot: usize, kind: Kind, head: &[u8]) {
    // The worker's own descriptor, not a copy: a copy would be one more descriptor per
    // worker, and it would keep the connection open after the worker closed it. The
    // worker closes it only on its way out, when this thread ends with the process.
    let client = fd.as_raw_fd();
    let Ok(table) = ConnTable::open(&env.ns) else {
        return;
    };
    let forker = nix::unistd::getppid();
    let head = head.to_vec();
    let to = env.listener_socket();
    let mut angel = table.owner();
    let spawned = std::thread::Builder::new()
        .name("angel-watch".into())
        .stack_size(64 * 1024)
        .spawn(move || loop {
            std::thread::sleep(Duration::from_millis(100));
            if nix::unistd::getppid() == forker {
                continue; // the listener that forked this worker still runs
            }
            let owner = table.owner();
            if owner == 0 || owner == angel {
                continue;
            }
            if handoff::send_adoption(&to, client, slot, kind.code(), &head).is_ok() {
                angel = owner;
            }
        });
    if let Err(e) = spawned {
        tracing::warn!(error = %e, "cannot watch the listener; this connection is not adoptable");
    }
}

/// The listening sockets `brume serve` passed (`BRUME_LISTEN_FDS`), by name.
fn inherited_listeners() -> HashMap<String, TcpListener> {
    let mut out = HashMap::new();
    let Some(spec) = std::env::var_os(LISTEN_FDS) else {
        return out;
    };
    std::env::remove_var(LISTEN_FDS);
    for part in spec.to_string_lossy().split(',') {
        let Some((name, fd)) = part.split_once('=') else {
            continue;
        };
        let Ok(fd) = fd.parse::<RawFd>() else {
            continue;
        };
        // SAFETY: `brume serve` passed this descriptor to us as a listening socket,
        // named once in the variable (removed above), so nothing else owns it.
        let l = unsafe { <TcpListener as std::os::fd::FromRawFd>::from_raw_fd(fd) };
        // Close-on-exec from here on: only this process serves on it.
        let _ = nix::fcntl::fcntl(
            &l,
            nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
        );
        out.insert(name.to_string(), l);
    }
    out
}

/// The listening socket passed for a protocol, else bound to `addr` (a listener run
/// on its own); None when the protocol is off.
fn listener(
    passed: Option<TcpListener>,
    addr: Option<&str>,
    what: &str,
) -> Result<Option<TcpListener>, String> {
    let l = match (passed, addr) {
        (_, Some("off")) | (None, None) => return Ok(None),
        (Some(l), _) => l,
        // std binds with SO_REUSEADDR.
        (None, Some(a)) => TcpListener::bind(a).map_err(|e| format!("{what} {a}: {e}"))?,
    };
    l.set_nonblocking(true).map_err(|e| e.to_string())?;
    Ok(Some(l))
}

/// True unless the peer closed or reset the connection.
fn client_connected(fd: &OwnedFd) -> bool {
    let mut p = libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLRDHUP,
        revents: 0,
    };
    // SAFETY: one valid pollfd, zero timeout.
    let n = unsafe { libc::poll(&mut p, 1, 0) };
    n == 0 || (n > 0 && p.revents & (libc::POLLRDHUP | libc::POLLHUP | libc::POLLERR) == 0)
}

/// SIGCHLD, SIGTERM, SIGINT and SIGUSR2 as a readable descriptor, so one poll waits for
/// connections, request bytes and child exits alike.
fn signal_fd() -> Result<OwnedFd, String> {
    // SAFETY: sigset manipulation on a local set; signalfd returns a new descriptor
    // that we own.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGCHLD, libc::SIGTERM, libc::SIGINT, libc::SIGUSR2] {
            libc::sigaddset(&mut set, s);
        }
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        let fd = libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK);
        if fd < 0 {
            return Err(format!("signalfd: {}", std::io::Error::last_os_error()));
        }
        Ok(std::os::fd::FromRawFd::from_raw_fd(fd))
    }
}
