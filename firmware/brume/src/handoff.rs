//! Messages to the controller over its Unix datagram socket: a client connection handed
//! over (the socket travels as SCM_RIGHTS, with the request bytes already read), or a
//! demand to start an on-demand stream.

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags, UnixAddr};
use std::io::IoSliceMut;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixDatagram;
use std::path::Path;

/// Largest request head the listener reads before routing (and so the largest message):
/// the parser's limit.
pub const MAX_HEAD: usize = brume_proto::http::MAX_HEAD;

pub enum Message {
    /// A client connection for the controller (API, UI), with what was already read.
    Connection { fd: OwnedFd, head: Vec<u8> },
    /// A viewer wants this on-demand stream.
    Demand { stream: String },
    /// A log line from another Brume process (for the API's recent logs).
    Log(String),
    /// An event fired in another process (a JSON object with `event` and `stream`).
    Event(serde_json::Value),
    /// An input's own account of its state ("running", "device-missing", "error").
    Status {
        stream: String,
        state: String,
        error: String,
    },
}

/// Sends an input's status (best effort: the controller may be restarting).
pub fn send_status(to: &Path, stream: &str, state: &str, error: &str) -> std::io::Result<()> {
    let body = serde_json::json!({ "stream": stream, "state": state, "error": error });
    let mut payload = vec![b'S'];
    payload.extend_from_slice(body.to_string().as_bytes());
    send(to, &payload, None)
}

fn send(to: &Path, payload: &[u8], fd: Option<RawFd>) -> std::io::Result<()> {
    let sock = UnixDatagram::unbound()?;
    let addr = UnixAddr::new(to).map_err(std::io::Error::from)?;
    let iov = [std::io::IoSlice::new(payload)];
    let fds;
    let cmsgs: &[ControlMessage] = match fd {
        Some(fd) => {
            fds = [fd];
            &[ControlMessage::ScmRights(&fds)]
        }
        None => &[],
    };
    sendmsg(
        sock.as_raw_fd(),
        &iov,
        cmsgs,
        MsgFlags::empty(),
        Some(&addr),
    )?;
    Ok(())
}

/// Sends an event to the controller's triggers (best effort, like a status).
pub fn send_event(to: &Path, event: &serde_json::Value) -> std::io::Result<()> {
    let mut payload = vec![b'E'];
    payload.extend_from_slice(event.to_string().as_bytes());
    send(to, &payload, None)
}

pub fn send_connection(to: &Path, fd: RawFd, head: &[u8]) -> std::io::Result<()> {
    let mut payload = Vec::with_capacity(head.len() + 1);
    payload.push(b'C');
    payload.extend_from_slice(head);
    send(to, &payload, Some(fd))
}

pub fn send_demand(to: &Path, stream: &str) -> std::io::Result<()> {
    let mut payload = vec![b'D'];
    payload.extend_from_slice(stream.as_bytes());
    send(to, &payload, None)
}

/// A connection worker whose listener ended asks the listener that owns the
/// connection table now to adopt it: its pid, its record, the kind of connection, the
/// request head it was started with, and a copy of its client socket.
pub fn send_adoption(
    to: &Path,
    fd: RawFd,
    slot: usize,
    kind: u8,
    head: &[u8],
) -> std::io::Result<()> {
    let mut payload = Vec::with_capacity(head.len() + 10);
    payload.push(b'A');
    payload.extend_from_slice(&std::process::id().to_le_bytes());
    payload.extend_from_slice(&(slot as u32).to_le_bytes());
    payload.push(kind);
    payload.extend_from_slice(head);
    send(to, &payload, Some(fd))
}

/// One datagram and the last descriptor that came with it (any others are closed).
pub fn recv_with_fd(
    sock: &UnixDatagram,
    buf: &mut [u8],
) -> std::io::Result<(usize, Option<OwnedFd>)> {
    let mut cmsg = nix::cmsg_space!([RawFd; 4]);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    let mut fds: Vec<OwnedFd> = Vec::new();
    for c in msg.cmsgs().map_err(std::io::Error::from)? {
        if let ControlMessageOwned::ScmRights(list) = c {
            // SAFETY: the kernel just installed these descriptors for us; we own them.
            fds.extend(
                list.into_iter()
                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
            );
        }
    }
    Ok((msg.bytes, fds.pop()))
}

/// Blocks for the next message. Malformed messages are skipped (their fds closed).
pub fn recv(sock: &UnixDatagram) -> std::io::Result<Message> {
    let mut buf = vec![0u8; MAX_HEAD + 16];
    loop {
        let (n, fd) = recv_with_fd(sock, &mut buf)?;
        let data = &buf[..n];
        match (data.first(), fd) {
            (Some(b'C'), Some(fd)) => {
                return Ok(Message::Connection {
                    fd,
                    head: data[1..].to_vec(),
                })
            }
            (Some(b'S'), None) => {
                let v: serde_json::Value = serde_json::from_slice(&data[1..]).unwrap_or_default();
                let field = |k: &str| v.get(k).and_then(|x| x.as_str()).unwrap_or("").to_string();
                return Ok(Message::Status {
                    stream: field("stream"),
                    state: field("state"),
                    error: field("error"),
                });
            }
            (Some(b'E'), None) => match serde_json::from_slice(&data[1..]) {
                Ok(v @ serde_json::Value::Object(_)) => return Ok(Message::Event(v)),
                _ => continue,
            },
            (Some(b'L'), None) => {
                return Ok(Message::Log(
                    String::from_utf8_lossy(&data[1..]).into_owned(),
                ))
            }
            (Some(b'D'), None) => {
                return Ok(Message::Demand {
                    stream: String::from_utf8_lossy(&data[1..]).into_owned(),
                })
            }
            _ => continue,
        }
    }
}
