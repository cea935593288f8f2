//! The byte layout of a stream segment, shared by the writer and every reader.
//!
//! ```text
//! offset 0            Header            (magic, version, sizes, writer pid + start time,
//!                                        epoch, state, futex word, global sequence,
//!                                        metadata seqlock, reader table)
//! META_OFFSET         metadata bytes    (JSON: the stream's tracks), META_CAPACITY bytes
//! track_offset(t)     TrackHeader       (head, data watermark, keyframe ring)
//!                     Slot × slots      (one per frame: sequence word + fields)
//!                     data ring         (data_capacity bytes, frames 8-byte aligned)
//! ```
//!
//! Every field that more than one process touches is an atomic. The file is sparse on
//! tmpfs: pages that are never touched (unused tracks, the unused tail of a data ring)
//! cost no memory.

use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64};

pub const MAGIC: u64 = u64::from_le_bytes(*b"BRUMESHM");
pub const VERSION: u32 = 2;

/// Maximum number of reader processes registered at once (for stats and reclaim).
pub const MAX_READERS: usize = 256;
/// Bytes reserved for the metadata JSON.
pub const META_CAPACITY: usize = 64 * 1024;
/// Keyframes remembered per track, at least `KEY_INDEX_MIN_US` apart (HLS segments are
/// cut at these).
pub const KEYS: usize = 256;

/// Milliseconds of wall clock per keyframe number of `Header::key_base`: less than the
/// writer's minimum spacing of indexed keyframes (`KEY_INDEX_MIN_US`).
pub const KEY_BASE_MS: u64 = 800;
/// 2025-01-01T00:00:00Z: where `Header::key_base` counts from.
pub const KEY_BASE_EPOCH_MS: i64 = 1_735_689_600_000;

pub const STATE_LIVE: u32 = 1;
pub const STATE_ENDED: u32 = 2;

/// Sizes chosen by the writer that creates a segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Layout {
    /// Track regions in the segment.
    pub max_tracks: u32,
    /// Frame slots per track (a power of two).
    pub slots: u32,
    /// Bytes of frame data per track (a multiple of 4096).
    pub data_capacity: u64,
}

impl Default for Layout {
    /// 8 tracks × (1024 frames, 8 MiB): 16 s of a 4 Mbit/s video track. Untouched pages
    /// of the sparse file cost nothing.
    fn default() -> Self {
        Layout {
            max_tracks: 8,
            slots: 1024,
            data_capacity: 8 << 20,
        }
    }
}

impl Layout {
    pub fn validate(&self) -> Result<(), &'static str> {
        if self.max_tracks == 0 || self.max_tracks > 64 {
            return Err("max_tracks must be 1..=64");
        }
        if !self.slots.is_power_of_two() || self.slots < 16 {
            return Err("slots must be a power of two >= 16");
        }
        if self.data_capacity < 4096 || !self.data_capacity.is_multiple_of(4096) {
            return Err("data_capacity must be a multiple of 4096");
        }
        Ok(())
    }

    pub fn track_region_size(&self) -> u64 {
        let slots = self.slots as u64 * std::mem::size_of::<Slot>() as u64;
        round_up(TRACK_HEADER_SIZE as u64 + slots, 4096) + self.data_capacity
    }

    pub fn track_offset(&self, track_index: u32) -> u64 {
        META_OFFSET as u64 + META_CAPACITY as u64 + track_index as u64 * self.track_region_size()
    }

    pub fn slots_offset(&self, track_index: u32) -> u64 {
        self.track_offset(track_index) + TRACK_HEADER_SIZE as u64
    }

    pub fn data_offset(&self, track_index: u32) -> u64 {
        let slots = self.slots as u64 * std::mem::size_of::<Slot>() as u64;
        self.track_offset(track_index) + round_up(TRACK_HEADER_SIZE as u64 + slots, 4096)
    }

    pub fn file_size(&self) -> u64 {
        self.track_offset(self.max_tracks)
    }
}

pub const fn round_up(v: u64, to: u64) -> u64 {
    v.div_ceil(to) * to
}

/// One registered reader process.
#[repr(C)]
pub struct ReaderEntry {
    /// 0 = free. Claimed with a compare-exchange.
    pub pid: AtomicU32,
    pub _pad: AtomicU32,
    /// The reader's start time (clock ticks since boot, /proc/PID/stat field 22), so a
    /// reused pid is never mistaken for a live reader.
    pub start: AtomicU64,
    /// Bytes the reader has delivered to its client (stats).
    pub bytes: AtomicU64,
    /// Global sequence of the last frame the reader consumed (stats: lag).
    pub position: AtomicU64,
}

#[repr(C)]
pub struct Header {
    pub magic: AtomicU64,
    pub version: AtomicU32,
    pub max_tracks: AtomicU32,
    pub slots: AtomicU32,
    pub state: AtomicU32,
    pub data_capacity: AtomicU64,
    /// Current writer; 0 when none. Claimed with a compare-exchange so there is never
    /// more than one writer.
    pub writer_pid: AtomicU32,
    /// Incremented each time a new writer adopts the segment (a restarted input).
    pub epoch: AtomicU32,
    pub writer_start: AtomicU64,
    /// Futex word: incremented after every publish; readers sleep on it.
    pub notify: AtomicU32,
    /// Number of readers sleeping on `notify` (the writer skips the wake syscall at 0).
    pub waiters: AtomicU32,
    /// Frames published across all tracks (the next frame's global sequence).
    pub global_seq: AtomicU64,
    /// Metadata seqlock: odd while being written.
    pub meta_gen: AtomicU64,
    pub meta_len: AtomicU64,
    /// Decode time of the last frame published (µs), so a restarted writer continues
    /// the timeline instead of jumping back.
    pub last_dts: AtomicI64,
    /// Frames the writer refused or dropped (stats).
    pub dropped: AtomicU64,
    /// Total payload bytes published (stats: bitrate).
    pub bytes: AtomicU64,
    /// The first keyframe number of every track, from the wall clock at creation
    /// (`(unix ms - KEY_BASE_EPOCH_MS) / KEY_BASE_MS`): numbers grow faster than
    /// keyframes are indexed, so a stream's keyframe numbers (its HLS media sequence)
    /// keep growing when its buffer is created anew (a publisher that comes back after
    /// the buffer ended), and stay far below 2^31 for decades (players that keep the
    /// media sequence in a 32-bit integer).
    pub key_base: AtomicU64,
    pub readers: [ReaderEntry; MAX_READERS],
}

pub const META_OFFSET: usize = round_up(std::mem::size_of::<Header>() as u64, 4096) as usize;

#[repr(C)]
pub struct KeyEntry {
    /// Keyframe number + 1 (0 = empty); seqlock word for this entry.
    pub seq: AtomicU64,
    pub idx: AtomicU64,
    pub dts: AtomicI64,
    pub epoch: AtomicU64,
    /// Wall-clock time of the keyframe (unix µs): the writer's clock when its first
    /// frame was written, plus the timeline since then (HLS program date-time).
    pub wall_us: AtomicI64,
}

#[repr(C)]
pub struct TrackHeader {
    /// 1 when the track is in use.
    pub active: AtomicU32,
    /// The track id this region carries.
    pub track_id: AtomicU32,
    /// Bytes of the data ring in use (<= data_capacity).
    pub data_size: AtomicU64,
    /// Frames published on this track: the next frame's index.
    pub head: AtomicU64,
    /// Logical data offset below which bytes may have been overwritten.
    pub tail: AtomicU64,
    /// Logical offset where the next frame's data goes.
    pub write_off: AtomicU64,
    /// Keyframes published on this track.
    pub key_count: AtomicU64,
    pub keys: [KeyEntry; KEYS],
}

pub const TRACK_HEADER_SIZE: usize =
    round_up(std::mem::size_of::<TrackHeader>() as u64, 64) as usize;

pub const FLAG_KEY: u32 = 1;

/// One frame's index entry. `seq` is the seqlock word: `idx + 1` when the slot holds
/// frame `idx`, 0 while it is being rewritten.
#[repr(C, align(64))]
pub struct Slot {
    pub seq: AtomicU64,
    pub gseq: AtomicU64,
    pub dts: AtomicI64,
    pub offset: AtomicU64,
    pub len: AtomicU32,
    pub cts: AtomicU32,
    pub flags: AtomicU32,
    pub epoch: AtomicU32,
}
