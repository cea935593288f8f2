//! The root angel's side of a live update: what survives its re-exec into the new
//! binary, and the health probe that decides between keeping the new binary and
//! rolling back.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::os::fd::RawFd;
use std::path::Path;
use std::time::Duration;

/// The environment variable that carries [`Resume`] across the re-exec.
pub const RESUME: &str = "BRUME_SERVE_RESUME";

/// What a root angel hands to itself across `execve`: descriptors that stay open
/// (the run directory's lock, the listening sockets) and the children it keeps.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Resume {
    /// `lock`, `http`, `rtmp`, `rtsp` → descriptor numbers.
    pub fds: BTreeMap<String, RawFd>,
    /// `controller`, `listen` → pid; `retiring` pids are reaped without restart.
    pub children: BTreeMap<String, i32>,
    pub retiring: Vec<i32>,
}

impl Resume {
    /// `fd.lock=3;fd.http=4;child.controller=120;retiring=99,100`
    pub fn encode(&self) -> String {
        let mut parts: Vec<String> = Vec::new();
        for (k, v) in &self.fds {
            parts.push(format!("fd.{k}={v}"));
        }
        for (k, v) in &self.children {
            parts.push(format!("child.{k}={v}"));
        }
        if !self.retiring.is_empty() {
            let pids: Vec<String> = self.retiring.iter().map(|p| p.to_string()).collect();
            parts.push(format!("retiring={}", pids.join(",")));
        }
        parts.join(";")
    }

    pub fn decode(text: &str) -> Result<Resume, String> {
        let mut r = Resume::default();
        for part in text.split(';').filter(|p| !p.is_empty()) {
            let (k, v) = part
                .split_once('=')
                .ok_or_else(|| format!("{RESUME}: {part:?} has no value"))?;
            let bad = || format!("{RESUME}: {part:?} is not a number");
            if let Some(name) = k.strip_prefix("fd.") {
                r.fds.insert(name.into(), v.parse().map_err(|_| bad())?);
            } else if let Some(name) = k.strip_prefix("child.") {
                r.children
                    .insert(name.into(), v.parse().map_err(|_| bad())?);
            } else if k == "retiring" {
                for p in v.split(',').filter(|p| !p.is_empty()) {
                    r.retiring.push(p.parse().map_err(|_| bad())?);
                }
            } else {
                return Err(format!("{RESUME}: unknown part {part:?}"));
            }
        }
        Ok(r)
    }
}

/// Replaces this process with `exe args…`, keeping `keep` open (close-on-exec is
/// cleared on them) and every other descriptor closed (they are close-on-exec).
/// Returns only on failure, with close-on-exec set again.
pub fn exec_into(exe: &Path, args: &[String], keep: &[RawFd]) -> String {
    use std::os::unix::ffi::OsStrExt;
    let Ok(path) = CString::new(exe.as_os_str().as_bytes()) else {
        return "the binary's path has a NUL byte".into();
    };
    let mut argv: Vec<CString> = vec![CString::new("brume").expect("no NUL")];
    for a in args {
        match CString::new(a.as_bytes()) {
            Ok(c) => argv.push(c),
            Err(_) => return format!("argument {a:?} has a NUL byte"),
        }
    }
    for fd in keep {
        // SAFETY: fcntl on descriptors this process owns; takes no pointers.
        unsafe { libc::fcntl(*fd, libc::F_SETFD, 0) };
    }
    let err = match nix::unistd::execv(&path, &argv) {
        Err(e) => e.to_string(),
        Ok(never) => match never {},
    };
    for fd in keep {
        // SAFETY: as above.
        unsafe { libc::fcntl(*fd, libc::F_SETFD, libc::FD_CLOEXEC) };
    }
    err
}

/// Whether the controller answers the API through the listener on `listen` (an
/// `ADDR:PORT`; an unspecified address is reached on loopback): any answer but 503
/// (the listener's "the controller is restarting") counts.
pub fn api_answers(listen: &str, timeout: Duration) -> bool {
    let Some(addr) = loopback(listen) else {
        return false;
    };
    let Ok(mut s) = TcpStream::connect_timeout(&addr, timeout) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(timeout));
    let _ = s.set_write_timeout(Some(timeout));
    let host = if addr.is_ipv6() {
        format!("[{}]", addr.ip())
    } else {
        addr.ip().to_string()
    };
    let req = format!("GET /api/v1/system HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    if s.write_all(req.as_bytes()).is_err() {
        return false;
    }
    let mut head = [0u8; 16];
    let mut n = 0;
    while n < head.len() {
        match s.read(&mut head[n..]) {
            Ok(0) | Err(_) => break,
            Ok(k) => n += k,
        }
    }
    let line = String::from_utf8_lossy(&head[..n]);
    line.starts_with("HTTP/1.") && !line[8..].trim_start().starts_with("503")
}

fn loopback(listen: &str) -> Option<SocketAddr> {
    let mut addr = listen.to_socket_addrs().ok()?.next()?;
    if addr.ip().is_unspecified() {
        addr.set_ip(match addr {
            SocketAddr::V4(_) => std::net::Ipv4Addr::LOCALHOST.into(),
            SocketAddr::V6(_) => std::net::Ipv6Addr::LOCALHOST.into(),
        });
    }
    Some(addr)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resume_round_trips_and_refuses_junk() {
        let mut r = Resume::default();
        r.fds.insert("lock".into(), 3);
        r.fds.insert("http".into(), 100);
        r.children.insert("controller".into(), 1234);
        r.retiring = vec![7, 8];
        assert_eq!(Resume::decode(&r.encode()), Ok(r));
        assert!(Resume::decode("fd.http=x").is_err());
        assert!(Resume::decode("what=1").is_err());
    }

    #[test]
    fn a_port_nobody_answers_is_not_healthy() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap().to_string();
        drop(l);
        assert!(!api_answers(&addr, Duration::from_millis(200)));
    }

    #[test]
    fn a_503_is_not_an_answer_and_a_401_is() {
        for (status, healthy) in [
            ("503 Service Unavailable", false),
            ("401 Unauthorized", true),
        ] {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            let addr = l.local_addr().unwrap().to_string();
            let t = std::thread::spawn(move || {
                let (mut s, _) = l.accept().unwrap();
                let mut buf = [0u8; 512];
                let _ = s.read(&mut buf);
                let _ = write!(s, "HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n");
            });
            assert_eq!(
                api_answers(&addr, Duration::from_secs(2)),
                healthy,
                "{status}"
            );
            t.join().unwrap();
        }
    }
}
