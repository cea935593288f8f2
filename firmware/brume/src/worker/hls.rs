//! HLS with fMP4 (CMAF) segments: `/hls/<stream>/index.m3u8`, `init.mp4`, `<n>.m4s`.
//!
//! Segments are cut at the primary track's keyframes, straight from the shared-memory
//! ring: segment `n` holds every frame from keyframe `n` up to keyframe `n + 1`, so
//! nothing is stored twice and a segment exists as soon as its closing keyframe does.
//! A request for the segment still being written waits for it (blocking reload).

use super::http::{Request, Response};
use super::{open_or_respond, Conn};
use crate::env::Env;
use brume_format::{fmp4, hls, Codec, Track};
use brume_shm::{KeyFrame, Reader};
use std::time::{Duration, Instant};

/// Segments listed in the live playlist.
const WINDOW: usize = 6;
/// How long a request waits for a segment (or the first one) to complete.
const SEGMENT_WAIT: Duration = Duration::from_secs(12);

pub fn serve(
    env: &Env,
    conn: &mut Conn,
    req: &Request,
    stream: &str,
    file: &str,
) -> std::io::Result<bool> {
    let Some(reader) = open_or_respond(env, conn, stream)? else {
        return Ok(false);
    };
    conn.describe("hls", stream);
    let tracks: Vec<Track> = reader
        .tracks()
        .iter()
        .filter(|t| matches!(t.codec, Codec::H264 | Codec::Aac))
        .cloned()
        .collect();
    if tracks.is_empty() {
        conn.respond(Response::error(415, "the stream has no H.264 or AAC track"))?;
        return Ok(false);
    }
    let response = if file == "index.m3u8" {
        playlist(&reader)
    } else if file == "init.mp4" {
        match fmp4::init_segment(&tracks) {
            Ok(init) => Response::ok("video/mp4", init).header("Cache-Control", "no-cache"),
            Err(e) => Response::error(415, &e.to_string()),
        }
    } else if let Some(n) = file
        .strip_suffix(".m4s")
        .and_then(|n| n.parse::<u64>().ok())
    {
        segment(&reader, &tracks, n)
    } else {
        Response::error(404, "no such HLS file")
    };
    let bytes = response.for_request(req).to_bytes();
    conn.send(&bytes)?;
    reader.add_bytes(bytes.len() as u64);
    Ok(false)
}

/// Waits until `ready` gives a value, sleeping on the buffer's futex between checks.
fn wait_for<T>(reader: &Reader, mut ready: impl FnMut() -> Option<T>) -> Option<T> {
    let deadline = Instant::now() + SEGMENT_WAIT;
    loop {
        let token = reader.change_token();
        if let Some(v) = ready() {
            return Some(v);
        }
        let now = Instant::now();
        if now >= deadline || reader.ended() {
            return None;
        }
        reader.wait(token, deadline - now);
    }
}

fn playlist(reader: &Reader) -> Response {
    let Some(keys) = wait_for(reader, || {
        let k = reader.keyframes();
        (k.len() >= 2).then_some(k)
    }) else {
        return Response::error(503, "no complete segment yet");
    };
    let pairs: Vec<(KeyFrame, KeyFrame)> = keys.windows(2).map(|w| (w[0], w[1])).collect();
    let start = pairs.len().saturating_sub(WINDOW);
    let segments: Vec<hls::Segment> = pairs[start..]
        .iter()
        .enumerate()
        .map(|(i, (a, b))| hls::Segment {
            sequence: a.number,
            duration_us: b.dts - a.dts,
            uri: format!("{}.m4s", a.number),
            discontinuity: i > 0 && pairs[start + i - 1].0.epoch != a.epoch,
        })
        .collect();
    let text = hls::media_playlist(&segments, "init.mp4", reader.ended());
    Response::ok("application/vnd.apple.mpegurl", text.into_bytes())
        .header("Cache-Control", "max-age=1")
}

fn segment(reader: &Reader, tracks: &[Track], n: u64) -> Response {
    let found = wait_for(reader, || {
        let keys = reader.keyframes();
        let oldest = keys.first().map(|k| k.number)?;
        if n < oldest {
            return Some(None); // gone from the ring
        }
        let i = keys.iter().position(|k| k.number == n)?;
        keys.get(i + 1).map(|next| Some((keys[i], *next)))
    });
    let Some(Some((a, b))) = found else {
        return Response::error(404, &format!("segment {n} is not available"));
    };
    let mut frames = Vec::new();
    for t in tracks {
        match reader.frames_between(t.id, a.dts, b.dts) {
            Some(f) => frames.push((t, f)),
            None => return Response::error(404, &format!("segment {n} was overwritten")),
        }
    }
    let runs: Vec<fmp4::TrackRun> = frames
        .iter()
        .filter(|(_, f)| !f.is_empty())
        .map(|(t, f)| fmp4::TrackRun {
            track: t,
            frames: f,
            end_dts: b.dts,
        })
        .collect();
    match fmp4::fragment((n + 1) as u32, &runs) {
        Ok(bytes) => {
            Response::ok("video/iso.segment", bytes).header("Cache-Control", "public, max-age=60")
        }
        Err(e) => Response::error(500, &e.to_string()),
    }
}
