//! JPEG outputs for streams with a JPEG track: a snapshot (`/<stream>.jpg`) and MJPEG
//! as multipart/x-mixed-replace (`/<stream>.mjpg`), the format browsers' <img> tags and
//! NVRs read.

use super::http::{Request, Response};
use super::{open_or_respond, Conn};
use crate::env::Env;
use brume_format::Codec;
use brume_shm::{Read, Reader};
use std::time::{Duration, Instant};

const BOUNDARY: &str = "brumeframe";

/// Opens the stream and finds its JPEG track, or answers why there is none.
fn open_jpeg(
    env: &Env,
    conn: &mut Conn,
    stream: &str,
    proto: &str,
) -> std::io::Result<Option<(Reader, u32)>> {
    let Some(reader) = open_or_respond(env, conn, stream)? else {
        return Ok(None);
    };
    conn.describe(proto, stream);
    let track = reader
        .tracks()
        .iter()
        .find(|t| t.codec == Codec::Jpeg)
        .map(|t| t.id);
    match track {
        Some(t) => Ok(Some((reader, t))),
        None => {
            conn.respond(Response::error(
                404,
                &format!("stream {stream:?} has no JPEG track"),
            ))?;
            Ok(None)
        }
    }
}

pub fn snapshot(env: &Env, conn: &mut Conn, req: &Request, stream: &str) -> std::io::Result<bool> {
    let Some((mut reader, track)) = open_jpeg(env, conn, stream, "jpg")? else {
        return Ok(false);
    };
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        match reader
            .next(Duration::from_millis(500))
            .map_err(std::io::Error::other)?
        {
            Read::Frame(f) if f.track == track => {
                let r = Response::ok("image/jpeg", f.data).header("Cache-Control", "no-store");
                conn.respond(r.for_request(req))?;
                return Ok(false);
            }
            Read::Ended => break,
            _ => {}
        }
    }
    conn.respond(Response::error(503, "no picture yet"))?;
    Ok(false)
}

pub fn mjpeg(env: &Env, conn: &mut Conn, req: &Request, stream: &str) -> std::io::Result<bool> {
    let Some((mut reader, track)) = open_jpeg(env, conn, stream, "mjpg")? else {
        return Ok(false);
    };
    let mut head = Response::live(&format!("multipart/x-mixed-replace; boundary={BOUNDARY}"));
    head.head_only = req.is_head();
    conn.respond(head)?;
    if req.is_head() {
        return Ok(true);
    }
    loop {
        match reader
            .next(Duration::from_secs(5))
            .map_err(std::io::Error::other)?
        {
            Read::Frame(f) if f.track == track => {
                let mut part = format!(
                    "--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {}\r\n\r\n",
                    f.data.len()
                )
                .into_bytes();
                part.extend_from_slice(&f.data);
                part.extend_from_slice(b"\r\n");
                conn.send(&part)?;
                reader.add_bytes(part.len() as u64);
            }
            Read::Ended => return Ok(true),
            _ => {}
        }
    }
}
