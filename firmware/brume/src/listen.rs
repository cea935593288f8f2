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

use crate::env::Env;
use crate::handoff::{self, MAX_HEAD};
use brume_shm::ConnTable;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

const HEAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Restarts of workers on one connection before the angel gives up on it.
const MAX_RESUMES: u32 = 5;

struct Pending {
    stream: TcpStream,
    head: Vec<u8>,
    deadline: Instant,
    peer: String,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Http,
    Rtmp,
    Rtsp,
}

/// A connection a worker serves; the angel's copy of the socket keeps it open.
struct Conn {
    kind: Kind,
    fd: OwnedFd,
    head: Vec<u8>,
    slot: Option<usize>,
    started: Instant,
    resumes: u32,
}

pub fn main(args: &[String]) -> Result<(), String> {
    crate::logging::init("listen");
    let env = Env::from_env();
    let http_addr = crate::flag(args, "--http").ok_or("--http ADDR:PORT is required")?;
    let rtmp_addr = crate::flag(args, "--rtmp");
    // std binds with SO_REUSEADDR, and no child of ours keeps a listening socket: a
    // listener that replaces a killed one binds at once, even while the old one's
    // accepted connections are still open in their workers.
    let http = TcpListener::bind(http_addr).map_err(|e| format!("HTTP {http_addr}: {e}"))?;
    http.set_nonblocking(true).map_err(|e| e.to_string())?;
    let rtmp = match rtmp_addr {
        Some(a) if a != "off" => {
            let l = TcpListener::bind(a).map_err(|e| format!("RTMP {a}: {e}"))?;
            l.set_nonblocking(true).map_err(|e| e.to_string())?;
            Some(l)
        }
        _ => None,
    };
    // RTSP viewers: one worker per connection (worker::rtsp).
    let rtsp_addr = crate::flag(args, "--rtsp");
    let rtsp = match rtsp_addr {
        Some(a) if a != "off" => {
            let l = TcpListener::bind(a).map_err(|e| format!("RTSP {a}: {e}"))?;
            l.set_nonblocking(true).map_err(|e| e.to_string())?;
            Some(l)
        }
        _ => None,
    };
    let conns = ConnTable::create(&env.ns).map_err(|e| e.to_string())?;
    let sigfd = signal_fd()?;
    tracing::info!(
        http = http_addr,
        rtmp = rtmp_addr.unwrap_or("off"),
        rtsp = rtsp_addr.unwrap_or("off"),
        "listening"
    );

    let mut pending: Vec<Pending> = Vec::new();
    let mut workers: HashMap<i32, Conn> = HashMap::new();
    loop {
        let now = Instant::now();
        let timeout = pending
            .iter()
            .map(|p| p.deadline.saturating_duration_since(now))
            .min()
            .map(|d| {
                PollTimeout::try_from(d.as_millis().min(60_000) as i32 + 1)
                    .unwrap_or(PollTimeout::MAX)
            })
            .unwrap_or(PollTimeout::NONE);
        let rtsp_ready;
        let (sig_ready, http_ready, rtmp_ready, ready): (bool, bool, bool, Vec<bool>) = {
            let mut fds = vec![
                PollFd::new(sigfd.as_fd(), PollFlags::POLLIN),
                PollFd::new(http.as_fd(), PollFlags::POLLIN),
            ];
            if let Some(r) = &rtmp {
                fds.push(PollFd::new(r.as_fd(), PollFlags::POLLIN));
            }
            let rtsp_at = rtsp.as_ref().map(|r| {
                fds.push(PollFd::new(r.as_fd(), PollFlags::POLLIN));
                fds.len() - 1
            });
            let base = fds.len();
            for p in &pending {
                fds.push(PollFd::new(p.stream.as_fd(), PollFlags::POLLIN));
            }
            match poll(&mut fds, timeout) {
                Ok(_) | Err(nix::errno::Errno::EINTR) => {}
                Err(e) => return Err(format!("poll: {e}")),
            }
            let is = |f: &PollFd| f.revents().is_some_and(|r| !r.is_empty());
            rtsp_ready = rtsp_at.is_some_and(|i| is(&fds[i]));
            (
                is(&fds[0]),
                is(&fds[1]),
                rtmp.is_some() && is(&fds[2]),
                fds[base..].iter().map(is).collect(),
            )
        };

        if sig_ready {
            let mut info = [0u8; 128];
            let _ = nix::unistd::read(&sigfd, &mut info);
            let signo = u32::from_ne_bytes([info[0], info[1], info[2], info[3]]) as i32;
            if signo == libc::SIGTERM || signo == libc::SIGINT {
                tracing::info!(connections = workers.len(), "stopping");
                for pid in workers.keys() {
                    // SAFETY: kill takes no pointers.
                    unsafe { libc::kill(*pid, libc::SIGTERM) };
                }
                return Ok(());
            }
            reap(&mut workers, &conns, &env);
        }

        // Requests whose head is complete (or broken) leave `pending`.
        let mut i = 0;
        let mut ready = ready.into_iter();
        while i < pending.len() {
            let r = ready.next().unwrap_or(false);
            let p = &mut pending[i];
            let mut done = None;
            if r {
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
            } else if p.deadline <= Instant::now() {
                done = Some(Route::Reject(408, "request head not received in time"));
            }
            match done {
                None => i += 1,
                Some(route) => {
                    let p = pending.swap_remove(i);
                    dispatch(p, route, &env, &conns, &mut workers);
                }
            }
        }

        if http_ready {
            while let Ok((s, peer)) = http.accept() {
                let _ = s.set_nonblocking(true);
                pending.push(Pending {
                    stream: s,
                    head: Vec::new(),
                    deadline: Instant::now() + HEAD_TIMEOUT,
                    peer: peer.to_string(),
                });
            }
        }
        if rtmp_ready {
            if let Some(l) = &rtmp {
                while let Ok((s, peer)) = l.accept() {
                    let _ = s.set_nonblocking(false);
                    let conn = Conn {
                        kind: Kind::Rtmp,
                        fd: OwnedFd::from(s),
                        head: Vec::new(),
                        slot: None,
                        started: Instant::now(),
                        resumes: 0,
                    };
                    tracing::info!(peer = %peer, "RTMP connection");
                    start(conn, &env, &conns, &mut workers, &peer.to_string());
                }
            }
        }
        if rtsp_ready {
            if let Some(l) = &rtsp {
                while let Ok((s, peer)) = l.accept() {
                    let _ = s.set_nonblocking(false);
                    let conn = Conn {
                        kind: Kind::Rtsp,
                        fd: OwnedFd::from(s),
                        head: Vec::new(),
                        slot: None,
                        started: Instant::now(),
                        resumes: 0,
                    };
                    start(conn, &env, &conns, &mut workers, &peer.to_string());
                }
            }
        }
    }
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

fn dispatch(
    p: Pending,
    route: Route,
    env: &Env,
    conns: &ConnTable,
    workers: &mut HashMap<i32, Conn>,
) {
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
        Route::Worker => {
            let _ = p.stream.set_nonblocking(false);
            let conn = Conn {
                kind: Kind::Http,
                fd: OwnedFd::from(p.stream),
                head: p.head,
                slot: None,
                started: Instant::now(),
                resumes: 0,
            };
            start(conn, env, conns, workers, &p.peer);
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
            let code = match conn.kind {
                Kind::Http => {
                    crate::worker::serve_forked(env, conn.fd, &conn.head, conn.slot, resume)
                }
                Kind::Rtmp => crate::input::rtmp::serve_forked(env, conn.fd),
                Kind::Rtsp => crate::worker::rtsp::serve_forked(env, conn.fd, conn.slot),
            };
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
        let Some(mut conn) = workers.remove(&pid) else {
            continue;
        };
        use std::os::unix::process::ExitStatusExt;
        let status = std::process::ExitStatus::from_raw(status);
        let crashed = !crate::angel::is_clean(status);
        if !crashed {
            if let Some(s) = conn.slot {
                conns.release(s);
            }
            continue; // the worker finished with the connection
        }
        let how = crate::angel::describe(status);
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

/// SIGCHLD, SIGTERM and SIGINT as a readable descriptor, so one poll waits for
/// connections, request bytes and child exits alike.
fn signal_fd() -> Result<OwnedFd, String> {
    // SAFETY: sigset manipulation on a local set; signalfd returns a new descriptor
    // that we own.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for s in [libc::SIGCHLD, libc::SIGTERM, libc::SIGINT] {
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
