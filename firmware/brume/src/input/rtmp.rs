//! RTMP publishing: the listener forks this input for every RTMP connection. Once the
//! publisher names a configured stream with the right key, this process becomes that
//! stream's one writer. A malformed or misbehaving publisher ends only this process.
//!
//! Until the publish key is checked, a connection costs little and not for long: it
//! must be publishing within `limits.rtmp_publish_timeout_s` of its accept (a total,
//! which bytes trickled one at a time do not extend), and it may send no message over
//! `PRE_PUBLISH_MESSAGE` (so at most twice that is buffered). The listener counts the
//! connections that are not publishing yet and the wrong keys per address, from what
//! this process reports on its socket.

use super::sink::Sink;
use crate::config::{Config, Source};
use crate::env::Env;
use brume_proto::{PublishSession, RtmpEvent, RtmpLimits};
use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::fd::OwnedFd;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

/// A publisher silent for this long is dropped.
const SILENCE: Duration = Duration::from_secs(10);
/// Largest message before the publish is accepted (commands are well under 1 KiB).
const PRE_PUBLISH_MESSAGE: usize = 32 * 1024;

pub fn serve_forked(env: &Env, fd: OwnedFd) -> i32 {
    crate::serve::unblock_signals_here();
    super::install_stop_handler();
    let sock = TcpStream::from(fd);
    let peer = sock.peer_addr().map(|a| a.to_string()).unwrap_or_default();
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| run(env, sock, &peer)));
    match result {
        Ok(Ok(())) => 0,
        Ok(Err(e)) => {
            tracing::warn!(peer = %peer, error = %e, "RTMP publisher disconnected");
            0
        }
        Err(_) => 101,
    }
}

struct Publish<'a> {
    env: &'a Env,
    sock: TcpStream,
    peer: &'a str,
    session: PublishSession,
    writer: Option<Sink>,
    ended: bool,
}

fn run(env: &Env, sock: TcpStream, peer: &str) -> Result<(), String> {
    let limit = crate::config::Limits::current().rtmp_publish_timeout();
    let deadline = Instant::now() + limit;
    sock.set_write_timeout(Some(SILENCE))
        .map_err(|e| e.to_string())?;
    let _ = sock.set_nodelay(true);
    let mut p = Publish {
        env,
        sock,
        peer,
        session: PublishSession::new(RtmpLimits {
            max_message_size: PRE_PUBLISH_MESSAGE,
            ..RtmpLimits::default()
        }),
        writer: None,
        ended: false,
    };
    let mut buf = vec![0u8; 64 * 1024];
    let result = loop {
        if super::STOP.load(Ordering::SeqCst) || p.ended {
            break Ok(());
        }
        // Until publishing, what is left of the total; then silence per read.
        let wait = if p.writer.is_some() {
            SILENCE
        } else {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break Err(format!("not publishing within {} s", limit.as_secs()));
            }
            left
        };
        if let Err(e) = p.sock.set_read_timeout(Some(wait)) {
            break Err(e.to_string());
        }
        let n = match p.sock.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                ) =>
            {
                if p.writer.is_none() {
                    continue; // the deadline, checked above
                }
                break Err(format!("no data for {} s", SILENCE.as_secs()));
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => break Err(e.to_string()),
        };
        let events = match p.session.feed(&buf[..n]) {
            Ok(ev) => ev,
            Err(e) => break Err(format!("protocol error: {e}")),
        };
        if let Err(e) = p.handle(events) {
            break Err(e);
        }
    };
    if let Some(w) = p.writer.take() {
        // The buffer stays for the publisher's return (OBS reconnects, a network
        // blip): the next publisher adopts it as a new epoch, so viewers stay connected
        // and HLS numbering continues. The controller ends it if nobody comes back
        // within `PUBLISHER_GRACE`.
        tracing::info!(stream = w.stream(), peer = %peer, "publishing ended");
        w.abandon("publisher left");
    }
    result
}

impl Publish<'_> {
    fn handle(&mut self, events: Vec<RtmpEvent>) -> Result<(), String> {
        for ev in events {
            match ev {
                RtmpEvent::Send(bytes) => self.sock.write_all(&bytes).map_err(|e| e.to_string())?,
                RtmpEvent::PublishRequested { app, name, query } => {
                    match self.authorize(&app, &name, &query) {
                        Ok(writer) => {
                            tracing::info!(stream = %name, peer = %self.peer, epoch = writer.epoch(), "publisher accepted");
                            self.writer = Some(writer);
                            self.session.set_limits(RtmpLimits::default());
                            crate::listen::report_publishing(self.env);
                            let bytes = self.session.accept().map_err(|e| e.to_string())?;
                            self.sock.write_all(&bytes).map_err(|e| e.to_string())?;
                            // Bytes that came after the publish command.
                            let more = self.session.feed(&[]).map_err(|e| e.to_string())?;
                            self.handle(more)?;
                        }
                        Err(Refused { reason, guess }) => {
                            tracing::warn!(stream = ?name, app = ?app, peer = %self.peer, reason = %reason, "publisher rejected");
                            if guess {
                                // Counted before the client hears the answer, so its next
                                // connection already meets the count.
                                if let Ok(ip) = self.sock.peer_addr().map(|a| a.ip()) {
                                    crate::listen::report_wrong_key(self.env, ip);
                                }
                            }
                            let bytes = self.session.reject(&reason).map_err(|e| e.to_string())?;
                            let _ = self.sock.write_all(&bytes);
                            return Err(format!("rejected: {reason}"));
                        }
                    }
                }
                RtmpEvent::Tracks(tracks) => {
                    if let Some(w) = &mut self.writer {
                        w.set_tracks(&tracks).map_err(|e| e.to_string())?;
                    }
                }
                RtmpEvent::Frame(f) => {
                    if let Some(w) = &mut self.writer {
                        if let Err(e) = w.write(&f) {
                            tracing::warn!(stream = w.stream(), error = %e, "frame dropped");
                        }
                    }
                }
                RtmpEvent::Unpublished => self.ended = true,
            }
        }
        Ok(())
    }

    /// Checks the publishing request against the configuration and claims the stream.
    fn authorize(&self, app: &str, name: &str, query: &str) -> Result<Sink, Refused> {
        if app != "live" {
            return Err(Refused::guess(format!(
                "unknown application {app:?} (publish to rtmp://HOST/live/STREAM?key=KEY)"
            )));
        }
        let config = Config::load(&self.env.config).map_err(|e| Refused::other(e.to_string()))?;
        let Some(stream) = config.streams.get(name) else {
            return Err(Refused::guess(format!("no stream named {name:?}")));
        };
        let Source::Rtmp { key } = &stream.source else {
            return Err(Refused::guess(format!(
                "stream {name:?} does not take RTMP publishers"
            )));
        };
        let given = query
            .split('&')
            .find_map(|kv| kv.strip_prefix("key="))
            .unwrap_or("");
        if !constant_time_eq(given.as_bytes(), key.as_bytes()) {
            return Err(Refused::guess("wrong or missing publish key".into()));
        }
        Sink::open(self.env, name, "rtmp", &stream.processes).map_err(|e| {
            Refused::other(match e {
                brume_shm::Error::Busy { .. } => format!("stream {name:?} already has a publisher"),
                e => e.to_string(),
            })
        })
    }
}

/// Why a publish request was refused; `guess`: a wrong key, stream or application,
/// which counts towards the address's refusal.
struct Refused {
    reason: String,
    guess: bool,
}

impl Refused {
    fn guess(reason: String) -> Refused {
        Refused {
            reason,
            guess: true,
        }
    }
    fn other(reason: String) -> Refused {
        Refused {
            reason,
            guess: false,
        }
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}
