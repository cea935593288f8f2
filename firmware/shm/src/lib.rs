//! Brume's per-stream shared-memory frame buffer.
//!
//! One file per stream under /dev/shm, mapped by exactly one writer (the stream's input
//! process) and any number of readers (output workers, the recorder, the controller's
//! stats). Per track: a ring of frame slots and a ring of frame bytes.
//!
//! # Concurrency contract
//! * **One writer.** The writer claims `Header::writer_pid` with a compare-exchange
//!   from 0 or from a dead process; a second live writer gets [`Error::Busy`].
//! * **No locks, explicit ordering.** The writer publishes a frame by storing its slot's
//!   sequence word with `Release` after every other store; readers load it with
//!   `Acquire`. This is what makes the buffer correct on ARM's weak memory model, not
//!   just on x86.
//! * **No torn frames.** Slots and data are seqlocks: before the writer overwrites a
//!   slot it stores 0 into the slot's sequence word, and before it overwrites ring bytes
//!   it raises the track's `tail` watermark; both are followed by a `Release` fence.
//!   A reader copies the frame with atomic loads, then issues an `Acquire` fence and
//!   re-checks the sequence word and `tail`. If the writer touched anything the reader
//!   copied, the fences guarantee the re-check sees it and the copy is discarded
//!   (Boehm, "Can seqlocks get along with programming language memory models?", 2012).
//! * **No polling.** The writer bumps a futex word after each frame and wakes sleepers
//!   only when some reader registered as waiting.
//! * **Lapped readers resync** to the newest keyframe of the primary track and report
//!   [`Read::Resync`]; they never see data from another frame.
//! * **Restarts.** A new writer adopting a segment continues the frame indexes, byte
//!   offsets and timeline of the previous one and increments the epoch; readers see an
//!   [`Read::Discontinuity`], never garbage.

pub mod conns;
mod layout;
mod reader;
pub mod sys;
mod writer;

pub use conns::{ConnInfo, ConnTable};
pub use layout::{Layout, KEYS, MAX_READERS};
pub use reader::{KeyFrame, Read, Reader, StreamStatus};
pub use writer::{Writer, KEY_INDEX_MIN_US};

use layout::{Header, KeyEntry, Slot, TrackHeader, MAGIC, META_CAPACITY, META_OFFSET, VERSION};
use memmap2::MmapRaw;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::atomic::{fence, AtomicU64, Ordering};

/// Errors from the shared-memory buffer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("stream {stream}: {op} {path}: {source}")]
    Io {
        stream: String,
        op: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("stream {stream}: no buffer (the stream is not running)")]
    NotFound { stream: String },
    #[error("stream {stream}: buffer {path} is not a Brume buffer of this version")]
    Invalid { stream: String, path: PathBuf },
    #[error("stream {stream}: another writer (pid {pid}) is alive")]
    Busy { stream: String, pid: u32 },
    #[error("invalid stream name {0:?}: use 1-64 of A-Z a-z 0-9 _ -")]
    BadName(String),
    #[error("invalid layout: {0}")]
    BadLayout(&'static str),
    #[error("stream {stream}: track {track}: {reason}")]
    Track {
        stream: String,
        track: u32,
        reason: String,
    },
    #[error("stream {stream}: metadata: {reason}")]
    Meta { stream: String, reason: String },
}

pub type Result<T> = std::result::Result<T, Error>;

/// Checks a stream name: it becomes part of a file name and of URLs.
pub fn validate_stream_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(Error::BadName(name.to_string()))
    }
}

/// Where segments live: `$BRUME_SHM_DIR` (default /dev/shm), files named
/// `$BRUME_SHM_PREFIX-<stream>` (default prefix `brume`). Tests give each server its
/// own prefix.
#[derive(Clone, Debug)]
pub struct Namespace {
    pub dir: PathBuf,
    pub prefix: String,
}

impl Namespace {
    pub fn from_env() -> Namespace {
        Namespace {
            dir: std::env::var_os("BRUME_SHM_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| PathBuf::from("/dev/shm")),
            prefix: std::env::var("BRUME_SHM_PREFIX").unwrap_or_else(|_| "brume".into()),
        }
    }

    pub fn stream_path(&self, stream: &str) -> Result<PathBuf> {
        validate_stream_name(stream)?;
        Ok(self.dir.join(format!("{}-{}", self.prefix, stream)))
    }

    /// Every object of this namespace in the directory: stream segments
    /// (`PREFIX-name`) and the connection table (`PREFIX.conns`).
    pub fn objects(&self) -> Vec<PathBuf> {
        let mut v = self.segments();
        v.extend(self.matching(&format!("{}.", self.prefix)));
        v
    }

    fn segments(&self) -> Vec<PathBuf> {
        self.matching(&format!("{}-", self.prefix))
    }

    fn matching(&self, lead: &str) -> Vec<PathBuf> {
        let Ok(dir) = std::fs::read_dir(&self.dir) else {
            return Vec::new();
        };
        dir.filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().starts_with(lead))
            .map(|e| e.path())
            .collect()
    }

    /// Removes segments whose writer is dead (pid + start time) and that no live reader
    /// maps, and returns the removed paths. Run by the controller at start-up and by an
    /// input's angel after the input gave up for good.
    pub fn reclaim_dead(&self) -> Vec<PathBuf> {
        let mut removed = Vec::new();
        for path in self.segments() {
            let name = path.file_name().map(|n| n.to_string_lossy().into_owned());
            let dead = match Segment::open_path(&path, name.as_deref().unwrap_or("?")) {
                Ok(seg) => !seg.writer_alive(),
                Err(_) => true, // not a valid segment (a half-created temp file): leftovers
            };
            if dead && std::fs::remove_file(&path).is_ok() {
                removed.push(path);
            }
        }
        removed
    }
}

impl Namespace {
    /// Ends `stream` if its writer is dead: readers see [`Read::Ended`] and the file is
    /// removed. An input's angel does this when it will not restart the input.
    /// Returns true if a segment was ended.
    pub fn end_if_dead(&self, stream: &str) -> bool {
        let Ok(path) = self.stream_path(stream) else {
            return false;
        };
        let Ok(seg) = Segment::open_path(&path, stream) else {
            return false;
        };
        if seg.writer_alive() {
            return false;
        }
        let h = seg.header();
        h.state.store(layout::STATE_ENDED, Ordering::Release);
        h.notify.fetch_add(1, Ordering::SeqCst);
        sys::futex_wake_all(&h.notify);
        std::fs::remove_file(&path).is_ok()
    }
}

/// A mapped segment: the common part of [`Writer`] and [`Reader`].
pub(crate) struct Segment {
    map: MmapRaw,
    layout: Layout,
    pub(crate) stream: String,
    pub(crate) path: PathBuf,
}

// SAFETY (for the whole crate): every access to the mapping goes through the typed
// views below, which point at `repr(C)` structs made only of atomics, at offsets that
// the layout keeps inside the file (checked against the mapped length at open) and
// aligned (the mapping is page aligned, every region starts at a multiple of 64).
// Atomics are valid for any bit pattern, so a corrupt or foreign writer can make us
// read wrong numbers but never undefined behaviour; every number read from the
// mapping is bounds-checked before it is used as an offset.
impl Segment {
    fn open_path(path: &Path, stream: &str) -> Result<Segment> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(path)
            .map_err(|e| {
                if e.kind() == std::io::ErrorKind::NotFound {
                    Error::NotFound {
                        stream: stream.to_string(),
                    }
                } else {
                    io_err(stream, "open", path, e)
                }
            })?;
        Segment::map(file, path, stream)
    }

    fn map(file: File, path: &Path, stream: &str) -> Result<Segment> {
        let invalid = || Error::Invalid {
            stream: stream.to_string(),
            path: path.to_path_buf(),
        };
        let len = file
            .metadata()
            .map_err(|e| io_err(stream, "stat", path, e))?
            .len();
        if len < META_OFFSET as u64 {
            return Err(invalid());
        }
        let map = MmapRaw::map_raw(&file).map_err(|e| io_err(stream, "mmap", path, e))?;
        let mut seg = Segment {
            map,
            layout: Layout::default(),
            stream: stream.to_string(),
            path: path.to_path_buf(),
        };
        let h = seg.header();
        if h.magic.load(Ordering::Acquire) != MAGIC || h.version.load(Ordering::Relaxed) != VERSION
        {
            return Err(invalid());
        }
        let layout = Layout {
            max_tracks: h.max_tracks.load(Ordering::Relaxed),
            slots: h.slots.load(Ordering::Relaxed),
            data_capacity: h.data_capacity.load(Ordering::Relaxed),
        };
        if layout.validate().is_err() || layout.file_size() != len {
            return Err(invalid());
        }
        seg.layout = layout;
        Ok(seg)
    }

    pub(crate) fn layout(&self) -> Layout {
        self.layout
    }

    fn at<T>(&self, offset: u64) -> &T {
        let end = offset + std::mem::size_of::<T>() as u64;
        assert!(
            end <= self.map.len() as u64,
            "layout offset beyond the mapping (checked at open)"
        );
        // SAFETY: in bounds (asserted), aligned (see the impl comment), T is made of
        // atomics only, and the mapping lives as long as &self.
        unsafe { &*(self.map.as_ptr().add(offset as usize) as *const T) }
    }

    pub(crate) fn header(&self) -> &Header {
        self.at(0)
    }

    pub(crate) fn track(&self, t: u32) -> &TrackHeader {
        self.at(self.layout.track_offset(t))
    }

    pub(crate) fn slot(&self, t: u32, idx: u64) -> &Slot {
        let i = idx & (self.layout.slots as u64 - 1);
        self.at(self.layout.slots_offset(t) + i * std::mem::size_of::<Slot>() as u64)
    }

    pub(crate) fn key(&self, t: u32, kno: u64) -> &KeyEntry {
        &self.track(t).keys[(kno % layout::KEYS as u64) as usize]
    }

    /// The data ring of track `t` as words. Frames are stored 8-byte aligned and
    /// copied word by word with relaxed atomics: plain loads on every CPU, but no data
    /// race in the language's model while the writer overwrites them.
    pub(crate) fn data_words(&self, t: u32) -> &[AtomicU64] {
        let off = self.layout.data_offset(t);
        let words = (self.layout.data_capacity / 8) as usize;
        assert!(off + self.layout.data_capacity <= self.map.len() as u64);
        // SAFETY: in bounds (asserted), 4096-aligned, AtomicU64 is valid for any bits.
        unsafe {
            std::slice::from_raw_parts(
                self.map.as_ptr().add(off as usize) as *const AtomicU64,
                words,
            )
        }
    }

    pub(crate) fn meta_words(&self) -> &[AtomicU64] {
        // SAFETY: META_OFFSET..+META_CAPACITY is inside every valid file (file_size
        // starts the tracks after it), page aligned.
        unsafe {
            std::slice::from_raw_parts(
                self.map.as_ptr().add(META_OFFSET) as *const AtomicU64,
                META_CAPACITY / 8,
            )
        }
    }

    pub(crate) fn writer_alive(&self) -> bool {
        let h = self.header();
        let pid = h.writer_pid.load(Ordering::Acquire);
        pid != 0 && sys::is_alive(pid, h.writer_start.load(Ordering::Acquire))
    }

    /// Reads the metadata (seqlock). None while a writer is mid-update for too long.
    pub(crate) fn read_meta(&self) -> Result<Option<(u64, Vec<brume_format::Track>)>> {
        let h = self.header();
        for _ in 0..1000 {
            let g1 = h.meta_gen.load(Ordering::Acquire);
            if g1 == 0 {
                return Ok(None);
            }
            if g1 % 2 == 1 {
                std::thread::yield_now();
                continue;
            }
            let len = h.meta_len.load(Ordering::Relaxed) as usize;
            if len > META_CAPACITY {
                std::thread::yield_now();
                continue;
            }
            let mut bytes = vec![0u8; round8(len)];
            copy_out(self.meta_words(), 0, &mut bytes);
            fence(Ordering::Acquire);
            if h.meta_gen.load(Ordering::Relaxed) != g1 {
                continue;
            }
            bytes.truncate(len);
            let tracks = serde_json::from_slice(&bytes).map_err(|e| Error::Meta {
                stream: self.stream.clone(),
                reason: e.to_string(),
            })?;
            return Ok(Some((g1, tracks)));
        }
        Ok(None)
    }
}

pub(crate) fn io_err(stream: &str, op: &'static str, path: &Path, source: std::io::Error) -> Error {
    Error::Io {
        stream: stream.to_string(),
        op,
        path: path.to_path_buf(),
        source,
    }
}

pub(crate) const fn round8(n: usize) -> usize {
    (n + 7) & !7
}

/// Copies `out.len()` (a multiple of 8) bytes from the word ring starting at byte
/// offset `start` (a multiple of 8, not wrapping).
pub(crate) fn copy_out(words: &[AtomicU64], start: usize, out: &mut [u8]) {
    debug_assert!(start.is_multiple_of(8) && out.len().is_multiple_of(8));
    let first = start / 8;
    for (i, chunk) in out.chunks_exact_mut(8).enumerate() {
        let w = words[first + i].load(Ordering::Relaxed);
        chunk.copy_from_slice(&w.to_ne_bytes());
    }
}

/// Copies `data` into the word ring at byte offset `start` (a multiple of 8), padding
/// the last word with zeros.
pub(crate) fn copy_in(words: &[AtomicU64], start: usize, data: &[u8]) {
    let first = start / 8;
    let mut chunks = data.chunks_exact(8);
    for (i, chunk) in chunks.by_ref().enumerate() {
        let w = u64::from_ne_bytes(chunk.try_into().expect("chunks_exact(8)"));
        words[first + i].store(w, Ordering::Relaxed);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let mut last = [0u8; 8];
        last[..rest.len()].copy_from_slice(rest);
        words[first + data.len() / 8].store(u64::from_ne_bytes(last), Ordering::Relaxed);
    }
}

/// Where frame data of `len` bytes goes when the next free logical offset is `off` in
/// a ring of `size` bytes: the same offset if the 8-byte-padded frame fits before the
/// ring's end, else the start of the next lap (the tail of this lap is skipped so a
/// frame is never split). Returns (start, end) logical offsets.
pub fn place(off: u64, len: u64, size: u64) -> (u64, u64) {
    let len8 = (len + 7) & !7;
    let pos = off % size;
    let start = if pos + len8 > size {
        off - pos + size
    } else {
        off
    };
    (start, start + len8)
}

#[cfg(test)]
mod tests;
