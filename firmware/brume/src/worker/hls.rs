//! HLS with fMP4 (CMAF) segments: `/hls/<stream>/index.m3u8`, `init-<epoch>.mp4`,
//! `<n>.m4s`; and the same segments as MPEG-TS: `/hls/<stream>/ts.m3u8`, `<n>.ts`,
//! for players that handle fMP4 HLS badly (GStreamer's legacy `hlsdemux`, which
//! `playbin` uses up to 1.22, starts an fMP4 live stream's clock at the playlist
//! position instead of the fragments' decode times, so it waits the stream's whole
//! age before the first frame; old TVs and set-top boxes play TS HLS only).
//!
//! Segments are cut at the primary track's indexed keyframes (about a second apart or
//! more, see `brume_shm::KEY_INDEX_MIN_US`; audio-only streams get ~1 s segments),
//! straight from the shared-memory ring: segment `n` holds every frame from keyframe
//! `n` up to keyframe `n + 1`, so nothing is stored twice and a segment exists as soon
//! as its closing keyframe does. A request for the segment still being written waits
//! for it (blocking reload).
//!
//! The timeline is the buffer's: media sequence numbers are keyframe numbers, which
//! only grow for a stream (across inputs that come back, and across buffers, see
//! `key_base`), and segments carry their wall-clock time as program date-time. A new
//! epoch (a publisher that reconnected, a restarted input, perhaps at a new
//! resolution) gets its own init segment URI and the next discontinuity sequence
//! number (the epoch's, from 0: hls.js stalls on large ones): the playlist lists the
//! newest epoch's segments once it has a complete one.

use super::http::{Request, Response};
use super::{open_or_respond, Conn};
use crate::env::Env;
use brume_format::{fmp4, hls, ts, Codec, Frame, Track};
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
        playlist(&reader, Container::Fmp4)
    } else if file == "ts.m3u8" {
        playlist(&reader, Container::Ts)
    } else if is_init(file) {
        // Any epoch's init gets the current tracks: an older epoch's segments are only
        // listed until the newest epoch has one of its own.
        match fmp4::init_segment(&tracks) {
            Ok(init) => Response::ok("video/mp4", init).header("Cache-Control", "no-cache"),
            Err(e) => Response::error(415, &e.to_string()),
        }
    } else if let Some(n) = file
        .strip_suffix(".m4s")
        .and_then(|n| n.parse::<u64>().ok())
    {
        segment(&reader, &tracks, n, Container::Fmp4)
    } else if let Some(n) = file.strip_suffix(".ts").and_then(|n| n.parse::<u64>().ok()) {
        segment(&reader, &tracks, n, Container::Ts)
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

/// `init.mp4` or `init-<epoch>.mp4`.
fn is_init(file: &str) -> bool {
    file == "init.mp4"
        || file
            .strip_prefix("init-")
            .and_then(|f| f.strip_suffix(".mp4"))
            .is_some_and(|e| e.parse::<u32>().is_ok())
}

/// The segments' container: fMP4 (the default playlist) or MPEG-TS (`ts.m3u8`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Container {
    Fmp4,
    Ts,
}

fn playlist(reader: &Reader, container: Container) -> Response {
    let Some(keys) = wait_for(reader, || {
        let k = reader.keyframes();
        (k.len() >= 2).then_some(k)
    }) else {
        return Response::error(503, "no complete segment yet");
    };
    let pairs: Vec<(KeyFrame, KeyFrame)> = keys.windows(2).map(|w| (w[0], w[1])).collect();
    let text = live_playlist(&pairs, reader.ended(), container);
    Response::ok("application/vnd.apple.mpegurl", text.into_bytes())
        .header("Cache-Control", "max-age=1")
}

/// The playlist of the newest epoch's complete segments (`pairs`: consecutive indexed
/// keyframes, oldest first).
fn live_playlist(pairs: &[(KeyFrame, KeyFrame)], ended: bool, container: Container) -> String {
    let epoch = pairs.last().map_or(1, |(a, _)| a.epoch);
    let same: Vec<&(KeyFrame, KeyFrame)> = pairs.iter().filter(|(a, _)| a.epoch == epoch).collect();
    let start = same.len().saturating_sub(WINDOW);
    let segments: Vec<hls::Segment> = same[start..]
        .iter()
        .map(|(a, b)| hls::Segment {
            sequence: a.number,
            duration_us: b.dts - a.dts,
            uri: match container {
                Container::Fmp4 => format!("{}.m4s", a.number),
                Container::Ts => format!("{}.ts", a.number),
            },
            discontinuity: false,
            date_ms: Some(a.wall_us / 1000),
        })
        .collect();
    let init = format!("init-{epoch}.mp4");
    hls::media_playlist(&hls::Playlist {
        segments: &segments,
        init_uri: (container == Container::Fmp4).then_some(init.as_str()),
        discontinuity_sequence: u64::from(epoch.saturating_sub(1)),
        ended,
    })
}

fn segment(reader: &Reader, tracks: &[Track], n: u64, container: Container) -> Response {
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
    if container == Container::Ts {
        return ts_segment(tracks, &frames, n);
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

/// Segment `n` as MPEG-TS: PAT, PMT and the parameter sets first (each segment
/// stands alone, RFC 8216 3.2), then every track's frames in decode order. The
/// continuity counters start at 0 in every segment; players take each segment as a new
/// piece of transport stream.
fn ts_segment(tracks: &[Track], frames: &[(&Track, Vec<Frame>)], n: u64) -> Response {
    let mut mux = match ts::TsMuxer::new(tracks) {
        Ok(m) => m,
        Err(e) => return Response::error(415, &e.to_string()),
    };
    let mut all: Vec<&Frame> = frames.iter().flat_map(|(_, f)| f.iter()).collect();
    all.sort_by_key(|f| f.dts);
    let mut out = Vec::with_capacity(all.iter().map(|f| f.data.len() + 200).sum());
    for f in all {
        if let Err(e) = mux.mux(f, &mut out) {
            return Response::error(500, &format!("segment {n}: {e}"));
        }
    }
    Response::ok("video/mp2t", out).header("Cache-Control", "public, max-age=60")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys(epochs: &[u32]) -> Vec<(KeyFrame, KeyFrame)> {
        let k: Vec<KeyFrame> = epochs
            .iter()
            .enumerate()
            .map(|(i, &epoch)| KeyFrame {
                number: 1000 + i as u64,
                idx: i as u64 * 30,
                dts: i as i64 * 1_000_000,
                epoch,
                wall_us: 1_796_679_017_000_000 + i as i64 * 1_000_000,
            })
            .collect();
        k.windows(2).map(|w| (w[0], w[1])).collect()
    }

    #[test]
    fn a_new_epoch_gets_its_own_init_and_discontinuity_sequence() {
        // The new epoch has no complete segment yet: the old one is still listed.
        let text = live_playlist(&keys(&[1, 1, 1, 2]), false, Container::Fmp4);
        assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:1000\n"), "{text}");
        assert!(text.contains("#EXT-X-MAP:URI=\"init-1.mp4\"\n"), "{text}");
        assert!(!text.contains("#EXT-X-DISCONTINUITY"), "{text}");
        assert!(text.contains(
            "#EXT-X-PROGRAM-DATE-TIME:2026-12-07T21:30:17.000Z\n#EXTINF:1.000,\n1000.m4s\n"
        ));
        // It has one: only the new epoch is listed, numbers keep growing.
        let text = live_playlist(&keys(&[1, 1, 1, 2, 2]), false, Container::Fmp4);
        assert!(text.contains("#EXT-X-MEDIA-SEQUENCE:1003\n"), "{text}");
        assert!(text.contains("#EXT-X-MAP:URI=\"init-2.mp4\"\n"), "{text}");
        assert!(text.contains("#EXT-X-DISCONTINUITY-SEQUENCE:1\n"), "{text}");
        assert!(!text.contains("1002.m4s"), "{text}");
        assert!(is_init("init-2.mp4") && is_init("init.mp4") && !is_init("init-x.mp4"));
    }

    #[test]
    fn the_ts_playlist_lists_the_same_segments_without_an_init() {
        let fmp4 = live_playlist(&keys(&[1, 1, 1, 1]), false, Container::Fmp4);
        let ts = live_playlist(&keys(&[1, 1, 1, 1]), false, Container::Ts);
        assert!(!ts.contains("EXT-X-MAP"), "{ts}");
        assert!(ts.contains("#EXT-X-VERSION:3\n"), "{ts}");
        assert_eq!(
            fmp4.lines().filter(|l| l.ends_with(".m4s")).count(),
            ts.lines().filter(|l| l.ends_with(".ts")).count()
        );
        assert!(ts.contains("#EXT-X-MEDIA-SEQUENCE:1000\n"), "{ts}");
    }
}
