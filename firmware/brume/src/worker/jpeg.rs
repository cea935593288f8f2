//! JPEG outputs for streams with a JPEG track: a snapshot (`/<stream>.jpg`) and MJPEG
//! as multipart/x-mixed-replace (`/<stream>.mjpg`), the format browsers' <img> tags and
//! NVRs read. A stream without a JPEG track (an RTMP publisher, an H.264 camera) still
//! has snapshots: this worker decodes its newest H.264 keyframe and encodes it to JPEG,
//! on demand and in its own process.

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
    let Some(reader) = open_or_respond(env, conn, stream)? else {
        return Ok(false);
    };
    conn.describe("jpg", stream);
    let tracks = reader.tracks();
    let jpeg = tracks.iter().find(|t| t.codec == Codec::Jpeg).map(|t| t.id);
    let h264 = tracks.iter().find(|t| t.codec == Codec::H264).cloned();
    match (jpeg, h264) {
        (Some(track), _) => jpeg_snapshot(conn, req, reader, track),
        (None, Some(video)) => {
            let r = match decoded_snapshot(&reader, &video) {
                Ok(jpeg) => Response::ok("image/jpeg", jpeg).header("Cache-Control", "no-store"),
                Err(why) => Response::error(503, &why),
            };
            conn.respond(r.for_request(req))?;
            Ok(false)
        }
        (None, None) => {
            let why = format!("stream {stream:?} has no picture (no JPEG or H.264 track)");
            conn.respond(Response::error(404, &why))?;
            Ok(false)
        }
    }
}

/// The newest H.264 keyframe, decoded and encoded as JPEG (half size above 640 pixels,
/// like the synthetic camera's snapshots).
fn decoded_snapshot(reader: &Reader, video: &brume_format::Track) -> Result<Vec<u8>, String> {
    let key = reader
        .keyframes()
        .into_iter()
        .rev()
        .find_map(|k| reader.frames_between(video.id, k.dts, k.dts + 1))
        .and_then(|f| f.into_iter().find(|f| f.key))
        .ok_or("no keyframe yet")?;
    let picture =
        brume_codec::decode_keyframe(&video.init, &key.data).map_err(|e| e.to_string())?;
    let scale = if picture.width > 640 { 2 } else { 1 };
    brume_codec::JpegEncoder::new(80, scale)
        .and_then(|mut j| j.encode(&picture))
        .map_err(|e| e.to_string())
}

fn jpeg_snapshot(
    conn: &mut Conn,
    req: &Request,
    mut reader: Reader,
    track: u32,
) -> std::io::Result<bool> {
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
