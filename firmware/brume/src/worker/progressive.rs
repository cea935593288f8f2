//! Live progressive outputs: fragmented MP4 (`/<stream>.mp4`, one fragment per frame)
//! and MPEG-TS (`/<stream>.ts`), written frame by frame as the input publishes them.
//!
//! # Resuming a connection
//! The response is a sequence of *units*: the head (HTTP head + MP4 init segment), then
//! one unit per frame. Before sending a unit the worker records in its connection
//! record: where the unit starts in the response, its length, the frame's global
//! sequence, and the muxer state *before* it. Muxing is deterministic, so a successor
//! worker (forked by the listener on the same socket after a crash) asks the kernel how
//! many bytes the socket has taken (TCP_INFO bytes acked + SIOCOUTQ), regenerates the
//! unit in flight from the same frame and state, sends the part the client is missing,
//! and continues with the next frame: the client sees one unbroken stream. If the frame
//! has already left the ring, the unit is completed with filler and the stream
//! continues from the newest keyframe.
//!
//! # Timelines
//! MP4: each viewer's timeline starts at 0 with its first frame (a keyframe), as players
//! expect of a file (VLC, mpv's `--length`, GStreamer); the offset is part of the
//! resume state. TS keeps the stream's timeline (MPEG-TS players expect any start).
//!
//! # A new epoch (publisher reconnected, input restarted)
//! The timeline continues. TS continues through any change of the tracks' parameters
//! (a new resolution: the new parameter sets come with the next keyframe) as long as
//! the codecs stay the same. MP4 continues when the tracks are unchanged; otherwise the
//! response ends (an MP4 init segment cannot change) and the player reconnects.

use super::http::{Request, Response};
use super::{open_or_respond, Conn};
use crate::env::Env;
use brume_format::{fmp4, ts, Codec, Frame, Track};
use brume_shm::{Read, Reader};
use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Format {
    Mp4,
    Ts,
}

// Connection-record state words.
const S_BASE: usize = 0; // socket bytes written before this response began
const S_UNIT_START: usize = 1; // unit start, relative to the response
const S_UNIT_LEN: usize = 2;
const S_GSEQ: usize = 3; // frame global sequence + 1 (0: the head unit)
const S_MUX_A: usize = 4;
const S_MUX_B: usize = 5;
const S_MUX_C: usize = 6;

/// No MP4 timeline origin yet (no frame sent).
const NO_ORIGIN: i64 = i64::MIN;

/// The H.264 and AAC tracks: what the progressive muxers carry.
fn usable(tracks: &[Track]) -> Vec<Track> {
    tracks
        .iter()
        .filter(|t| matches!(t.codec, Codec::H264 | Codec::Aac))
        .cloned()
        .collect()
}

enum Muxer {
    Mp4 {
        tracks: Vec<Track>,
        /// Stream dts of this viewer's first frame: its timeline starts there at 0.
        origin: i64,
        seq: u32,
        last_dts: HashMap<u32, i64>,
        /// Duration given to the last fragment's sample (replayed on resume).
        last_duration: i64,
    },
    Ts(ts::TsMuxer),
}

impl Muxer {
    fn new(format: Format, tracks: &[Track]) -> Result<Muxer, String> {
        let usable = usable(tracks);
        if usable.is_empty() {
            return Err("the stream has no H.264 or AAC track".into());
        }
        Ok(match format {
            Format::Mp4 => Muxer::Mp4 {
                tracks: usable,
                origin: NO_ORIGIN,
                seq: 1,
                last_dts: HashMap::new(),
                last_duration: 0,
            },
            Format::Ts => Muxer::Ts(ts::TsMuxer::new(&usable).map_err(|e| e.to_string())?),
        })
    }

    fn head(&self, format: Format) -> Result<Vec<u8>, String> {
        let (ctype, init) = match self {
            Muxer::Mp4 { tracks, .. } => (
                "video/mp4",
                fmp4::init_segment(tracks).map_err(|e| e.to_string())?,
            ),
            Muxer::Ts(_) => ("video/mp2t", Vec::new()),
        };
        let _ = format;
        let mut bytes = Response::live(ctype).to_bytes();
        bytes.extend_from_slice(&init);
        Ok(bytes)
    }

    /// (A, B, C) state words before the next unit.
    fn state(&self) -> (u64, u64, u64) {
        match self {
            Muxer::Mp4 { seq, origin, .. } => (*seq as u64, 0, *origin as u64),
            Muxer::Ts(m) => {
                let s = m.state();
                (s.counters, s.last_psi_dts as u64, 0)
            }
        }
    }

    fn restore(&mut self, a: u64, b: u64, c: u64) {
        match self {
            Muxer::Mp4 { seq, origin, .. } => {
                *seq = a as u32;
                *origin = c as i64;
            }
            Muxer::Ts(m) => m.restore(ts::TsState {
                counters: a,
                last_psi_dts: b as i64,
            }),
        }
    }

    /// The muxer continues from the `old` track list with the `new` one (a new epoch)
    /// if it can.
    fn retrack(&mut self, old: &[Track], new: &[Track]) -> bool {
        let new = usable(new);
        match self {
            Muxer::Mp4 { tracks, .. } => *tracks == new,
            Muxer::Ts(m) => {
                let codecs = |t: &[Track]| t.iter().map(|t| (t.id, t.codec)).collect::<Vec<_>>();
                if codecs(&usable(old)) != codecs(&new) {
                    return false;
                }
                let Ok(mut next) = ts::TsMuxer::new(&new) else {
                    return false;
                };
                // Same continuity counters; tables and parameter sets again at once.
                next.restore(ts::TsState {
                    counters: m.state().counters,
                    last_psi_dts: i64::MIN,
                });
                *m = next;
                true
            }
        }
    }

    /// The bytes of one frame; `duration` replays a recorded fMP4 duration.
    fn unit(&mut self, mut f: Frame, duration: Option<i64>) -> Result<Option<Vec<u8>>, String> {
        match self {
            Muxer::Ts(m) => {
                let mut out = Vec::with_capacity(f.data.len() + f.data.len() / 8 + 400);
                m.mux(&f, &mut out).map_err(|e| e.to_string())?;
                Ok((!out.is_empty()).then_some(out))
            }
            Muxer::Mp4 {
                tracks,
                origin,
                seq,
                last_dts,
                last_duration,
            } => {
                let Some(track) = tracks.iter().find(|t| t.id == f.track) else {
                    return Ok(None);
                };
                if *origin == NO_ORIGIN {
                    *origin = f.dts;
                }
                // Frames of another track that started a little earlier than the
                // first keyframe start at 0 too.
                f.dts = (f.dts - *origin).max(0);
                // The next frame's time is unknown (we send each frame as it comes):
                // estimate the duration from the previous interval; the next
                // fragment's decode time corrects any error.
                let d = duration.unwrap_or_else(|| match last_dts.get(&f.track) {
                    Some(prev) if f.dts > *prev && f.dts - prev < 1_000_000 => f.dts - prev,
                    _ if track.codec == Codec::Aac && track.sample_rate > 0 => {
                        1024 * 1_000_000 / track.sample_rate as i64
                    }
                    _ => 33_333,
                });
                let frames = std::slice::from_ref(&f);
                let run = fmp4::TrackRun {
                    track,
                    frames,
                    end_dts: f.dts + d,
                };
                let out = fmp4::fragment(*seq, &[run]).map_err(|e| e.to_string())?;
                *seq = seq.wrapping_add(1);
                last_dts.insert(f.track, f.dts);
                *last_duration = d;
                Ok(Some(out))
            }
        }
    }

    fn last_duration(&self) -> u64 {
        match self {
            Muxer::Mp4 { last_duration, .. } => *last_duration as u64,
            Muxer::Ts(_) => 0,
        }
    }
}

/// Tracks the response's progress in the connection record.
struct Progress {
    pos: u64,
}

impl Progress {
    fn send_unit(
        &mut self,
        conn: &mut Conn,
        gseq1: u64,
        before: (u64, u64, u64),
        extra: u64,
        bytes: &[u8],
    ) -> std::io::Result<()> {
        if let Some(w) = conn.state(S_UNIT_START) {
            w.store(self.pos, Ordering::Relaxed);
        }
        for (i, v) in [
            (S_UNIT_LEN, bytes.len() as u64),
            (S_GSEQ, gseq1),
            (S_MUX_A, before.0),
            (S_MUX_B, if extra != 0 { extra } else { before.1 }),
            (S_MUX_C, before.2),
        ] {
            if let Some(w) = conn.state(i) {
                w.store(v, Ordering::Relaxed);
            }
        }
        conn.send(bytes)?;
        self.pos += bytes.len() as u64;
        Ok(())
    }
}

pub fn serve(
    env: &Env,
    conn: &mut Conn,
    req: &Request,
    stream: &str,
    format: Format,
) -> std::io::Result<bool> {
    let Some(mut reader) = open_or_respond(env, conn, stream)? else {
        return Ok(false);
    };
    conn.describe(if format == Format::Mp4 { "mp4" } else { "ts" }, stream);
    let mut muxer = match Muxer::new(format, reader.tracks()) {
        Ok(m) => m,
        Err(e) => {
            conn.respond(Response::error(415, &e))?;
            return Ok(false);
        }
    };
    if req.is_head() {
        let mut r = Response::live(if format == Format::Mp4 {
            "video/mp4"
        } else {
            "video/mp2t"
        });
        r.head_only = true;
        conn.respond(r)?;
        return Ok(false);
    }
    if let Some(w) = conn.state(S_BASE) {
        w.store(tcp_written(&conn.sock).unwrap_or(0), Ordering::Relaxed);
    }
    let mut progress = Progress { pos: 0 };
    let head = muxer.head(format).map_err(std::io::Error::other)?;
    progress.send_unit(conn, 0, muxer.state(), 0, &head)?;
    live(conn, &mut reader, &mut muxer, &mut progress)?;
    Ok(true)
}

fn live(
    conn: &mut Conn,
    reader: &mut Reader,
    muxer: &mut Muxer,
    progress: &mut Progress,
) -> std::io::Result<()> {
    let mut tracks = reader.tracks().to_vec();
    loop {
        match reader
            .next(Duration::from_secs(5))
            .map_err(std::io::Error::other)?
        {
            Read::Frame(f) => {
                let before = muxer.state();
                let gseq1 = reader.position() + 1;
                if let Some(bytes) = muxer.unit(f, None).map_err(std::io::Error::other)? {
                    let extra = muxer.last_duration();
                    progress.send_unit(conn, gseq1, before, extra, &bytes)?;
                    reader.add_bytes(bytes.len() as u64);
                }
            }
            Read::Tracks(t) if t != tracks => {
                if !muxer.retrack(&tracks, &t) {
                    tracing::info!(
                        stream = reader.stream(),
                        "tracks changed; closing so the client reconnects"
                    );
                    return Ok(());
                }
                tracks = t;
            }
            Read::Ended => return Ok(()),
            Read::Tracks(_) | Read::Resync { .. } | Read::Discontinuity { .. } | Read::Timeout => {}
        }
    }
}

/// Continues a progressive response after the previous worker on this connection died.
pub fn resume(env: &Env, conn: &mut Conn) -> std::io::Result<()> {
    let Some(req) = super::http::read_request(&mut std::io::empty(), &mut conn.buf)? else {
        return Ok(());
    };
    let path = req.path.split('?').next().unwrap_or("").to_string();
    let (stream, format) = match path.strip_prefix('/').and_then(|p| p.rsplit_once('.')) {
        Some((s, "mp4")) => (s.to_string(), Format::Mp4),
        Some((s, "ts")) => (s.to_string(), Format::Ts),
        // Not resumable mid-response (HLS, JPEG): nothing was promised beyond the
        // current request, so the client retries.
        _ => return Ok(()),
    };
    let word = |i| {
        conn.state(i)
            .map(|w| w.load(Ordering::Relaxed))
            .unwrap_or(0)
    };
    let (base, unit_start, unit_len, gseq1, a, b) = (
        word(S_BASE),
        word(S_UNIT_START),
        word(S_UNIT_LEN),
        word(S_GSEQ),
        word(S_MUX_A),
        word(S_MUX_B),
    );
    let written = tcp_written(&conn.sock).map_err(std::io::Error::other)?;
    let pos = written.saturating_sub(base);
    if unit_len == 0 {
        // Died before sending anything: start the response afresh.
        return serve(env, conn, &req, &stream, format).map(|_| ());
    }
    let Ok(mut reader) = super::open_stream(env, &stream) else {
        return Ok(()); // stream gone: close (the listener's copy closes with us)
    };
    conn.describe(if format == Format::Mp4 { "mp4" } else { "ts" }, &stream);
    let mut muxer = Muxer::new(format, reader.tracks()).map_err(std::io::Error::other)?;
    muxer.restore(a, b, word(S_MUX_C));
    let regenerated = if gseq1 == 0 {
        Some(muxer.head(format).map_err(std::io::Error::other)?)
    } else {
        reader.frame_at(gseq1 - 1).and_then(|f| {
            let replay = if format == Format::Mp4 {
                Some(b as i64)
            } else {
                None
            };
            muxer.unit(f, replay).ok().flatten()
        })
    };
    let done = pos.saturating_sub(unit_start).min(unit_len) as usize;
    let mut progress = Progress { pos };
    match regenerated {
        Some(bytes) if bytes.len() as u64 == unit_len => {
            conn.send(&bytes[done..])?;
            progress.pos += (bytes.len() - done) as u64;
            if gseq1 > 0 {
                reader.seek_after(gseq1 - 1);
            }
            tracing::info!(stream = %stream, resent = bytes.len() - done, "connection resumed seamlessly");
        }
        _ => {
            // The frame is gone: complete the unit so the container stays parseable,
            // then continue from the newest keyframe.
            let missing = unit_len as usize - done;
            let fill = match format {
                Format::Mp4 => vec![0u8; missing],
                Format::Ts => vec![0xffu8; missing % ts::PACKET_SIZE],
            };
            conn.send(&fill)?;
            progress.pos += fill.len() as u64;
            reader.seek_live();
            tracing::warn!(stream = %stream, "connection resumed from the newest keyframe");
        }
    }
    live(conn, &mut reader, &mut muxer, &mut progress)
}

/// Bytes the application has written into a TCP socket: acknowledged by the peer
/// (TCP_INFO's tcpi_bytes_acked) plus still queued (SIOCOUTQ).
pub fn tcp_written(sock: &std::net::TcpStream) -> Result<u64, String> {
    use std::os::fd::AsRawFd;
    const BYTES_ACKED_OFFSET: usize = 120; // struct tcp_info, Linux >= 4.1
    let fd = sock.as_raw_fd();
    let mut info = [0u8; 256];
    let mut len = info.len() as libc::socklen_t;
    // SAFETY: getsockopt writes at most `len` bytes into `info`.
    let r = unsafe {
        libc::getsockopt(
            fd,
            libc::IPPROTO_TCP,
            libc::TCP_INFO,
            info.as_mut_ptr() as *mut libc::c_void,
            &mut len,
        )
    };
    if r != 0 || (len as usize) < BYTES_ACKED_OFFSET + 8 {
        return Err(format!("TCP_INFO: {}", std::io::Error::last_os_error()));
    }
    let acked = u64::from_ne_bytes(
        info[BYTES_ACKED_OFFSET..BYTES_ACKED_OFFSET + 8]
            .try_into()
            .expect("8 bytes"),
    );
    let mut queued: libc::c_int = 0;
    // SAFETY: SIOCOUTQ (TIOCOUTQ) writes one int.
    let r = unsafe { libc::ioctl(fd, libc::TIOCOUTQ, &mut queued) };
    if r != 0 {
        return Err(format!("SIOCOUTQ: {}", std::io::Error::last_os_error()));
    }
    Ok(acked + queued.max(0) as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    #[test]
    fn tcp_written_counts_exactly_the_bytes_written() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (mut server, _) = l.accept().unwrap();
        assert_eq!(tcp_written(&server).unwrap(), 0);
        let data = vec![7u8; 300_000];
        let reader = std::thread::spawn(move || {
            let mut got = vec![0u8; 100_000];
            client.read_exact(&mut got).unwrap();
            client
        });
        server.write_all(&data).unwrap();
        let _client = reader.join().unwrap();
        assert_eq!(tcp_written(&server).unwrap(), 300_000);
    }
}
