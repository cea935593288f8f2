//! `brume push <name>`: publishes one stream to an RTMP server (the configured push
//! `name`). Started and restarted by the controller (its angel). It reads the stream's
//! buffer like a viewer, from the newest keyframe, and writes FLV messages to the
//! server; a network too slow for the stream makes the reader fall behind and jump to
//! the newest keyframe, so the push stays live rather than building a backlog.
//!
//! The controller reads this process's stdout: `pushing` once the server accepted the
//! stream, `error <message>` before a failure exit.

use crate::config::Config;
use crate::env::Env;
use brume_proto::{PushClient, PushEvent};
use brume_shm::Read;
use std::io::{Read as _, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

const CONNECT: Duration = Duration::from_secs(10);
/// The server must accept the publish within this.
const HANDSHAKE: Duration = Duration::from_secs(15);
/// A write blocked this long means the connection is dead.
const WRITE: Duration = Duration::from_secs(15);

fn fail(msg: String) -> Result<(), String> {
    println!("error {msg}");
    let _ = std::io::stdout().flush();
    Err(msg)
}

pub fn main(args: &[String]) -> Result<(), String> {
    crate::logging::init("push");
    let name = args.first().ok_or("usage: brume push <name>")?.clone();
    let env = Env::from_env();
    let config = Config::load(&env.config).map_err(|e| e.to_string())?;
    let Some(p) = config.pushes.get(&name).cloned() else {
        return fail(format!("no push named {name:?}"));
    };
    crate::input::install_stop_handler();
    // SAFETY: prctl takes no pointers: a pusher whose controller died stops.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) };
    let _span = tracing::info_span!("push", push = %name, stream = %p.stream).entered();
    let mut client = PushClient::new(&p.url).map_err(|e| e.to_string())?;
    let mut reader = match crate::worker::open_stream(&env, &p.stream) {
        Ok(r) => r,
        Err(crate::worker::OpenError::NoSuchStream) => {
            return fail(format!("no stream named {:?}", p.stream))
        }
        Err(crate::worker::OpenError::NotStarted(why)) => {
            return fail(format!("stream not available: {why}"))
        }
    };
    let target = format!("{}:{}", client.host(), client.port());
    let addrs: Vec<_> = match target.to_socket_addrs() {
        Ok(a) => a.collect(),
        Err(e) => return fail(format!("{target}: {e}")),
    };
    let mut sock = None;
    let mut last_err = format!("{target}: no address");
    for a in addrs {
        match TcpStream::connect_timeout(&a, CONNECT) {
            Ok(s) => {
                sock = Some(s);
                break;
            }
            Err(e) => last_err = format!("connect {a}: {e}"),
        }
    }
    let Some(mut sock) = sock else {
        return fail(last_err);
    };
    let _ = sock.set_nodelay(true);
    let _ = sock.set_write_timeout(Some(WRITE));
    tracing::info!(server = %target, "connected");

    // Handshake and publish.
    let deadline = Instant::now() + HANDSHAKE;
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        flush(&mut sock, &mut client)?;
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return fail("the server did not accept the stream in time".into());
        }
        let _ = sock.set_read_timeout(Some(left));
        let n = match sock.read(&mut buf) {
            Ok(0) => return fail("the server closed the connection".into()),
            Ok(n) => n,
            Err(e)
                if e.kind() == std::io::ErrorKind::WouldBlock
                    || e.kind() == std::io::ErrorKind::TimedOut =>
            {
                continue
            }
            Err(e) => return fail(format!("receive: {e}")),
        };
        let mut accepted = false;
        for ev in client.receive(&buf[..n]).map_err(|e| e.to_string())? {
            match ev {
                PushEvent::Publishing => accepted = true,
                PushEvent::Rejected(why) => {
                    return fail(format!(
                        "the server refused the stream: {}",
                        redact(&why, &p.url)
                    ))
                }
            }
        }
        if accepted {
            break;
        }
    }
    println!("pushing");
    let _ = std::io::stdout().flush();
    tracing::info!(server = %target, "pushing");
    client
        .send_tracks(reader.tracks())
        .map_err(|e| e.to_string())?;
    reader.seek_live();
    let mut frames = 0u64;
    while !crate::input::STOP.load(Ordering::SeqCst) {
        match reader.next(Duration::from_millis(250)) {
            Ok(Read::Frame(f)) => {
                if let Err(e) = client.send_frame(&f) {
                    tracing::debug!(error = %e, "frame not sent");
                }
                frames += 1;
            }
            Ok(Read::Tracks(t)) => client.send_tracks(&t).map_err(|e| e.to_string())?,
            Ok(Read::Ended) => return fail("the stream ended".into()),
            Ok(Read::Resync { skipped }) => {
                tracing::warn!(
                    skipped,
                    "the server cannot keep up; skipped to the newest keyframe"
                )
            }
            Ok(Read::Discontinuity { .. } | Read::Timeout) => {}
            Err(e) => return fail(e.to_string()),
        }
        flush(&mut sock, &mut client)?;
        // Whatever the server sent (acknowledgement windows, pings, a late error).
        loop {
            match nix::sys::socket::recv(
                std::os::fd::AsRawFd::as_raw_fd(&sock),
                &mut buf,
                nix::sys::socket::MsgFlags::MSG_DONTWAIT,
            ) {
                Ok(0) => return fail("the server closed the connection".into()),
                Ok(n) => {
                    for ev in client.receive(&buf[..n]).map_err(|e| e.to_string())? {
                        if let PushEvent::Rejected(why) = ev {
                            return fail(format!(
                                "the server ended the stream: {}",
                                redact(&why, &p.url)
                            ));
                        }
                    }
                }
                Err(nix::errno::Errno::EAGAIN) => break,
                Err(nix::errno::Errno::EINTR) => continue,
                Err(e) => return fail(format!("receive: {e}")),
            }
        }
    }
    tracing::info!(frames, "push stopped");
    Ok(())
}

/// A server's message without the stream key (the URL's last segment), which servers
/// tend to repeat and which must not reach the logs.
fn redact(text: &str, url: &str) -> String {
    let key = url.rsplit('/').next().unwrap_or("");
    let name = key.split('?').next().unwrap_or("");
    let mut t = text.to_string();
    for secret in [key, name] {
        if secret.len() >= 4 {
            t = t.replace(secret, "…");
        }
    }
    t
}

fn flush(sock: &mut TcpStream, client: &mut PushClient) -> Result<(), String> {
    let out = client.take_output();
    if out.is_empty() {
        return Ok(());
    }
    sock.write_all(&out).or_else(|e| fail(format!("send: {e}")))
}
