//! `brume record <stream> --dir DIR --segment-s N`: records one stream to fragmented
//! MP4 files. Started and restarted by the controller (its angel), one process per
//! active recording; it only reads the stream's buffer.
//!
//! A file is an init segment (`ftyp` + `moov`) followed by one `moof` + `mdat` fragment
//! per ~1 s, cut at video keyframes. Every fragment is appended with one write and
//! made durable with `fdatasync` before the next one is built, so a `kill -9` or a
//! power cut loses at most the fragment in progress and the file up to the last
//! complete fragment plays. A failed write is cut back to the last complete fragment.
//! A new file starts every `segment_s` seconds (at the next keyframe), laid out as
//! `<dir>/<stream>/<YYYY-MM-DD>/<stream>-<HHMMSS>.mp4` (UTC). Timestamps in a file start
//! at zero.
//!
//! The controller reads this process's stdout: `file <path relative to dir>` when a
//! file starts, `error <message>` before an exit with [`EXIT_DISK_FULL`] or
//! [`EXIT_WRITE_ERROR`] (the recording stops; it is not restarted).

use crate::env::Env;
use brume_format::{fmp4, Codec, Frame, Track};
use brume_shm::{Read, Reader};
use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// Exit status: the disk is full; the recording stopped cleanly.
pub const EXIT_DISK_FULL: i32 = 3;
/// Exit status: another write error; the recording stopped.
pub const EXIT_WRITE_ERROR: i32 = 4;
/// Fragments are cut at the first video keyframe this long after the last cut: about a
/// second, so a 1 s GOP (999,990 µs at 30 fps) makes 1 s fragments, not 2 s ones.
const FRAGMENT_US: i64 = brume_shm::KEY_INDEX_MIN_US;

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

/// Why recording stopped early.
#[derive(Debug)]
pub enum Stop {
    DiskFull,
    Io(std::io::Error),
    Other(String),
}

impl From<std::io::Error> for Stop {
    fn from(e: std::io::Error) -> Stop {
        if e.raw_os_error() == Some(libc::ENOSPC) || e.kind() == std::io::ErrorKind::StorageFull {
            Stop::DiskFull
        } else {
            Stop::Io(e)
        }
    }
}

pub fn main(args: &[String]) -> Result<(), String> {
    crate::logging::init("record");
    let usage = "usage: brume record <stream> --dir DIR [--segment-s N]";
    let stream = args.first().ok_or(usage)?.clone();
    brume_shm::validate_stream_name(&stream).map_err(|e| e.to_string())?;
    let dir = PathBuf::from(crate::flag(args, "--dir").ok_or(usage)?);
    let segment_s: i64 = crate::flag(args, "--segment-s")
        .unwrap_or("600")
        .parse()
        .map_err(|_| usage.to_string())?;
    // SAFETY: the handler only stores to an atomic (async-signal-safe); prctl and
    // getppid take no pointers. A recorder whose controller died finishes its file.
    unsafe {
        libc::signal(libc::SIGTERM, on_stop as *const () as libc::sighandler_t);
        libc::signal(libc::SIGINT, on_stop as *const () as libc::sighandler_t);
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
        if libc::getppid() == 1 {
            STOP.store(true, Ordering::SeqCst);
        }
    }
    let env = Env::from_env();
    // One recorder per stream at a time: a successor (after a controller restart or a
    // live update) waits for its predecessor to finish its file and leave its note.
    let _lock = lock_stream(&env, &stream);
    tracing::info!(stream = %stream, dir = %dir.display(), "recording");
    let mut rec = Recorder::new(&dir, &stream, segment_s.max(1) * 1_000_000);
    match rec.run(&env) {
        Ok(()) => {
            tracing::info!(stream = %stream, "recording stopped");
            Ok(())
        }
        Err(Stop::DiskFull) => {
            tracing::error!(stream = %stream, "recording stopped: disk full");
            say("error disk full");
            std::process::exit(EXIT_DISK_FULL);
        }
        Err(Stop::Io(e)) => {
            tracing::error!(stream = %stream, error = %e, "recording stopped: write error");
            say(&format!("error write error: {e}"));
            std::process::exit(EXIT_WRITE_ERROR);
        }
        Err(Stop::Other(e)) => Err(e),
    }
}

/// Holds `run/record-<stream>.lock` (close-on-exec; released when the process ends,
/// however it ends), waiting up to 5 s for a recorder of the same stream that is
/// finishing. Recording goes on without the lock rather than not at all.
fn lock_stream(env: &Env, stream: &str) -> Option<File> {
    use std::os::fd::AsRawFd;
    let path = env.run_dir.join(format!("record-{stream}.lock"));
    let f = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .ok()?;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    loop {
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
            return Some(f);
        }
        if std::time::Instant::now() >= deadline || STOP.load(Ordering::SeqCst) {
            tracing::warn!(stream = %stream, "another recorder of this stream is still finishing");
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// One line to the controller.
fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// The file being written.
pub struct Output {
    file: File,
    /// Bytes of complete units (init segment and fragments).
    len: u64,
    pub rel: String,
    /// The first decode time of the file: every timestamp in it is relative to this.
    base: i64,
    seq: u32,
}

impl Output {
    /// Creates a new file for `stream` under `dir`, named after the UTC time `now`,
    /// and writes the init segment.
    pub fn create(
        dir: &Path,
        stream: &str,
        now: SystemTime,
        tracks: &[Track],
        base: i64,
    ) -> Result<Output, Stop> {
        let secs = now.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs() as i64;
        let (y, m, d) = brume_format::clock::civil_from_days(secs.div_euclid(86_400));
        let t = secs.rem_euclid(86_400);
        let date = format!("{y:04}-{m:02}-{d:02}");
        let name = format!("{stream}-{:02}{:02}{:02}", t / 3600, t / 60 % 60, t % 60);
        let day_dir = dir.join(stream).join(&date);
        std::fs::create_dir_all(&day_dir)?;
        let mut n = 0;
        let (file, file_name) = loop {
            let file_name = if n == 0 {
                format!("{name}.mp4")
            } else {
                format!("{name}-{n}.mp4")
            };
            match File::options()
                .write(true)
                .create_new(true)
                .open(day_dir.join(&file_name))
            {
                Ok(f) => break (f, file_name),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists && n < 1000 => n += 1,
                Err(e) => return Err(e.into()),
            }
        };
        // The new name must survive a power cut too.
        for d in [&day_dir, &dir.join(stream)] {
            File::open(d)?.sync_all()?;
        }
        let mut out = Output {
            file,
            len: 0,
            rel: format!("{stream}/{date}/{file_name}"),
            base,
            seq: 1,
        };
        let init = fmp4::init_segment(tracks).map_err(|e| Stop::Other(e.to_string()))?;
        out.append(&init)?;
        Ok(out)
    }

    /// Appends one unit durably; on failure cuts the file back to the last whole unit.
    pub fn append(&mut self, bytes: &[u8]) -> Result<(), Stop> {
        let r = self
            .file
            .write_all(bytes)
            .and_then(|()| self.file.sync_data());
        if let Err(e) = r {
            let _ = self.file.set_len(self.len);
            let _ = self.file.sync_data();
            return Err(e.into());
        }
        self.len += bytes.len() as u64;
        Ok(())
    }
}

struct Recorder<'a> {
    dir: &'a Path,
    stream: &'a str,
    segment_us: i64,
    /// The H.264 and AAC tracks, in the order of the stream's track list.
    tracks: Vec<Track>,
    /// The H.264 track fragments and files are cut on.
    primary: Option<u32>,
    /// Frames read but not yet written, per track (same order as `tracks`).
    pending: Vec<Vec<Frame>>,
    /// Decode time of the first frame of the fragment being collected.
    frag_start: Option<i64>,
    out: Option<Output>,
    /// The first file starts at a keyframe at or after this decode time.
    min_start: Option<i64>,
    /// The buffer being read (its `key_base`) and the decode time of the last frame
    /// written from it: where a successor continues (see `Continuation`).
    key_base: u64,
    written_to: Option<i64>,
    /// Frames at or before these decode times (per track) were already taken from the
    /// buffer's history when continuing a predecessor's recording.
    replayed: Vec<i64>,
}

/// Where a recorder that stopped left off (`run/record-<stream>.last`): the recorder
/// that continues the recording (after a controller restart or a live update) starts
/// its file at the newest keyframe at or before that point, taking the frames from the
/// buffer's history, so the two files overlap by less than a GOP instead of leaving a
/// gap of up to a GOP plus the restart.
struct Continuation {
    key_base: u64,
    dts: i64,
    unix_ms: u64,
}

/// A note older than this is not continued (the recording was stopped on purpose).
const CONTINUE_WITHIN_MS: u64 = 30_000;

impl Continuation {
    fn path(env: &Env, stream: &str) -> PathBuf {
        env.run_dir.join(format!("record-{stream}.last"))
    }

    fn now_ms() -> u64 {
        SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_millis() as u64)
            .unwrap_or(0)
    }

    fn write(&self, env: &Env, stream: &str) {
        let path = Continuation::path(env, stream);
        let tmp = path.with_extension("new");
        let text = format!("{} {} {}\n", self.key_base, self.dts, self.unix_ms);
        if std::fs::write(&tmp, text).is_ok() {
            let _ = std::fs::rename(&tmp, &path);
        }
    }

    /// The note left for `stream`, if recent; it is used once.
    fn take(env: &Env, stream: &str) -> Option<Continuation> {
        let path = Continuation::path(env, stream);
        let text = std::fs::read_to_string(&path).ok()?;
        let _ = std::fs::remove_file(&path);
        let mut w = text.split_whitespace().map(|w| w.parse::<i64>().ok());
        let (Some(Some(key_base)), Some(Some(dts)), Some(Some(unix_ms))) =
            (w.next(), w.next(), w.next())
        else {
            return None;
        };
        let c = Continuation {
            key_base: key_base as u64,
            dts,
            unix_ms: unix_ms as u64,
        };
        (Continuation::now_ms().saturating_sub(c.unix_ms) < CONTINUE_WITHIN_MS).then_some(c)
    }
}

impl<'a> Recorder<'a> {
    fn new(dir: &'a Path, stream: &'a str, segment_us: i64) -> Recorder<'a> {
        Recorder {
            dir,
            stream,
            segment_us,
            tracks: Vec::new(),
            primary: None,
            pending: Vec::new(),
            frag_start: None,
            out: None,
            min_start: None,
            key_base: 0,
            written_to: None,
            replayed: Vec::new(),
        }
    }

    fn run(&mut self, env: &Env) -> Result<(), Stop> {
        while !STOP.load(Ordering::SeqCst) {
            let mut reader = match Reader::open(&env.ns, self.stream) {
                Ok(r) => r,
                Err(_) => {
                    // The input is starting (the controller asked for it).
                    std::thread::sleep(Duration::from_millis(250));
                    continue;
                }
            };
            self.key_base = reader.key_base();
            self.record(&mut reader, env)?;
            self.finish()?;
            if !STOP.load(Ordering::SeqCst) {
                std::thread::sleep(Duration::from_millis(250));
            }
        }
        self.finish()?;
        if let Some(dts) = self.written_to {
            Continuation {
                key_base: self.key_base,
                dts,
                unix_ms: Continuation::now_ms(),
            }
            .write(env, self.stream);
        }
        Ok(())
    }

    /// Records from `reader` until the stream ends or the recorder is stopped.
    fn record(&mut self, reader: &mut Reader, env: &Env) -> Result<(), Stop> {
        loop {
            if STOP.load(Ordering::SeqCst) {
                return Ok(());
            }
            let ev = reader
                .next(Duration::from_millis(250))
                .map_err(|e| Stop::Other(e.to_string()))?;
            match ev {
                Read::Frame(f) => self.frame(f)?,
                Read::Tracks(t) => {
                    let usable: Vec<Track> = t
                        .into_iter()
                        .filter(|t| matches!(t.codec, Codec::H264 | Codec::Aac))
                        .collect();
                    if usable != self.tracks {
                        self.finish()?;
                        self.primary = usable.iter().find(|t| t.codec == Codec::H264).map(|t| t.id);
                        self.pending = vec![Vec::new(); usable.len()];
                        self.tracks = usable;
                    }
                    if self.min_start.is_none() && !self.continue_predecessor(reader, env)? {
                        // Start at the newest keyframe if it is recent, else at the next.
                        let last = reader.status().last_dts;
                        self.min_start = Some(match reader.keyframes().last() {
                            Some(k) if last - k.dts > FRAGMENT_US / 2 => k.dts + 1,
                            Some(k) => k.dts,
                            None => i64::MIN,
                        });
                    }
                }
                Read::Resync { .. } | Read::Discontinuity { .. } => self.finish()?,
                Read::Ended => return Ok(()),
                Read::Timeout => {}
            }
        }
    }

    /// Continues where a stopped recorder of this stream left off, if it left a note
    /// for this very buffer: the frames from the newest keyframe at or before that
    /// point up to now are taken from the buffer's history. False: nothing to continue.
    fn continue_predecessor(&mut self, reader: &Reader, env: &Env) -> Result<bool, Stop> {
        let Some(note) = Continuation::take(env, self.stream) else {
            return Ok(false);
        };
        if note.key_base != reader.key_base() || self.tracks.is_empty() {
            return Ok(false);
        }
        let keys = reader.keyframes();
        let Some(k) = keys.iter().rev().find(|k| k.dts <= note.dts + 1) else {
            return Ok(false);
        };
        let mut frames = Vec::new();
        for t in &self.tracks {
            match reader.frames_between(t.id, k.dts, i64::MAX) {
                Some(f) => frames.extend(f),
                None => return Ok(false), // overwritten meanwhile: start afresh
            }
        }
        frames.sort_by_key(|f| f.dts);
        tracing::info!(
            stream = %self.stream,
            overlap_ms = (note.dts - k.dts) / 1000,
            "continuing the previous recorder's recording"
        );
        self.min_start = Some(k.dts);
        let mut replayed = vec![i64::MIN; self.tracks.len()];
        for f in frames {
            if let Some(i) = self.tracks.iter().position(|t| t.id == f.track) {
                replayed[i] = replayed[i].max(f.dts);
            }
            self.frame(f)?;
        }
        // The reader goes on from its own position: what it returns again is skipped.
        self.replayed = replayed;
        Ok(true)
    }

    fn frame(&mut self, f: Frame) -> Result<(), Stop> {
        let Some(i) = self.tracks.iter().position(|t| t.id == f.track) else {
            return Ok(());
        };
        if self.replayed.get(i).is_some_and(|r| f.dts <= *r) {
            return Ok(()); // already taken from the history
        }
        let is_primary = Some(f.track) == self.primary;
        // A cut point: a keyframe of the video track, or any frame without video.
        let cut = self.primary.is_none() || (is_primary && f.key);
        match &self.out {
            None => {
                if !cut || f.dts < self.min_start.unwrap_or(i64::MIN) {
                    return Ok(());
                }
                self.open(f.dts)?;
            }
            Some(out) => {
                if cut && self.frag_start.is_some_and(|s| f.dts - s >= FRAGMENT_US) {
                    if f.dts - out.base >= self.segment_us {
                        self.finish()?;
                        self.open(f.dts)?;
                    } else {
                        self.flush(Some(f.dts))?;
                    }
                }
            }
        }
        let base = self.out.as_ref().map_or(0, |o| o.base);
        if f.dts < base {
            return Ok(());
        }
        if self.frag_start.is_none() && (is_primary || self.primary.is_none()) {
            self.frag_start = Some(f.dts);
        }
        self.pending[i].push(f);
        Ok(())
    }

    fn open(&mut self, base: i64) -> Result<(), Stop> {
        let out = Output::create(self.dir, self.stream, SystemTime::now(), &self.tracks, base)?;
        tracing::info!(stream = %self.stream, file = %out.rel, "recording to a new file");
        say(&format!("file {}", out.rel));
        self.out = Some(out);
        self.frag_start = None;
        for p in &mut self.pending {
            p.clear();
        }
        Ok(())
    }

    /// Writes a fragment of the pending frames. `end`: the decode time of the video
    /// keyframe that starts the next fragment; None: the file ends here, so every
    /// pending frame is written and the last durations are estimated.
    fn flush(&mut self, end: Option<i64>) -> Result<(), Stop> {
        let Some(out) = &mut self.out else {
            return Ok(());
        };
        let base = out.base;
        let mut frames: Vec<Vec<Frame>> = Vec::with_capacity(self.tracks.len());
        let mut ends = Vec::with_capacity(self.tracks.len());
        for (t, p) in self.tracks.iter().zip(&mut self.pending) {
            let primary = Some(t.id) == self.primary;
            // Other tracks keep their last frame until the next one gives its duration.
            let take = match end {
                Some(_) if !primary => p.len().saturating_sub(1),
                _ => p.len(),
            };
            let run: Vec<Frame> = p.drain(..take).collect();
            let end_dts = match (end, p.first(), run.last()) {
                (Some(e), _, _) if primary => e,
                (_, Some(next), _) => next.dts,
                (_, None, Some(last)) => last.dts + estimate(t, &run),
                (_, None, None) => 0,
            };
            frames.push(
                run.into_iter()
                    .map(|mut f| {
                        f.dts -= base;
                        f
                    })
                    .collect(),
            );
            ends.push(end_dts - base);
        }
        self.frag_start = None;
        if frames.iter().all(Vec::is_empty) {
            return Ok(());
        }
        let runs: Vec<fmp4::TrackRun> = self
            .tracks
            .iter()
            .zip(&frames)
            .zip(&ends)
            .map(|((track, frames), &end_dts)| fmp4::TrackRun {
                track,
                frames,
                end_dts,
            })
            .collect();
        let bytes = fmp4::fragment(out.seq, &runs).map_err(|e| Stop::Other(e.to_string()))?;
        out.seq = out.seq.wrapping_add(1);
        out.append(&bytes)?;
        let last = frames
            .iter()
            .filter_map(|f| f.last())
            .map(|f| f.dts + base)
            .max();
        self.written_to = self.written_to.max(last);
        Ok(())
    }

    /// Writes what is pending and closes the file.
    fn finish(&mut self) -> Result<(), Stop> {
        let r = self.flush(None);
        if let Some(out) = self.out.take() {
            tracing::info!(stream = %self.stream, file = %out.rel, bytes = out.len, "file finished");
        }
        for p in &mut self.pending {
            p.clear();
        }
        self.frag_start = None;
        r
    }
}

/// The duration of the last frame of a run when no next frame is known.
fn estimate(track: &Track, run: &[Frame]) -> i64 {
    if let [.., a, b] = run {
        if b.dts > a.dts {
            return b.dts - a.dts;
        }
    }
    if track.codec == Codec::Aac && track.sample_rate > 0 {
        return 1024 * 1_000_000 / i64::from(track.sample_rate);
    }
    33_333
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_disk_stops_with_disk_full_and_keeps_whole_units() {
        let Ok(file) = File::options().write(true).open("/dev/full") else {
            return;
        };
        let mut out = Output {
            file,
            len: 0,
            rel: String::new(),
            base: 0,
            seq: 1,
        };
        assert!(matches!(out.append(b"moof"), Err(Stop::DiskFull)));
        assert_eq!(out.len, 0);
    }
}
