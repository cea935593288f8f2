//! A reader of a stream segment (an output worker, the recorder, the stats collector).

use crate::layout::{FLAG_KEY, STATE_ENDED};
use crate::{copy_out, round8, sys, Namespace, Result, Segment};
use brume_format::{Frame, Track};
use std::sync::atomic::{fence, Ordering};
use std::time::{Duration, Instant};

/// What [`Reader::next`] returns.
#[derive(Debug)]
pub enum Read {
    /// The next frame in publish order across tracks.
    Frame(Frame),
    /// The track list changed (or is known for the first time).
    Tracks(Vec<Track>),
    /// The reader fell behind and jumped to the newest keyframe; frames were skipped.
    Resync { skipped: u64 },
    /// A new writer took over (the input restarted): timestamps and init data may
    /// change from the next frame on.
    Discontinuity { epoch: u32 },
    /// The stream ended (the writer finished).
    Ended,
    /// Nothing new within the timeout.
    Timeout,
}

/// A keyframe of the primary track still in the ring.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KeyFrame {
    /// The keyframe's number since the segment was created (HLS media sequence).
    pub number: u64,
    /// Frame index on the primary track.
    pub idx: u64,
    pub dts: i64,
    pub epoch: u32,
    /// Wall-clock time of the keyframe, unix µs.
    pub wall_us: i64,
}

#[derive(Clone, Copy)]
struct Cursor {
    region: u32,
    track_id: u32,
    next: u64,
}

/// A registered reader of one stream.
pub struct Reader {
    seg: Segment,
    meta_gen: u64,
    tracks: Vec<Track>,
    cursors: Vec<Cursor>,
    primary: Option<usize>,
    last_epoch: u32,
    last_gseq: u64,
    reader_slot: Option<usize>,
    /// A reader this far behind the newest frame jumps to the newest keyframe.
    pub max_lag_us: i64,
    started: bool,
}

impl Reader {
    /// Maps the stream's segment and registers this process as a reader. The cursor
    /// starts at the newest keyframe.
    pub fn open(ns: &Namespace, stream: &str) -> Result<Reader> {
        let mut r = Reader::observe(ns, stream)?;
        r.register();
        Ok(r)
    }

    /// Maps the segment without registering (the controller's stats).
    pub fn observe(ns: &Namespace, stream: &str) -> Result<Reader> {
        let path = ns.stream_path(stream)?;
        let seg = Segment::open_path(&path, stream)?;
        Ok(Reader {
            seg,
            meta_gen: 0,
            tracks: Vec::new(),
            cursors: Vec::new(),
            primary: None,
            last_epoch: 0,
            last_gseq: 0,
            reader_slot: None,
            max_lag_us: 3_000_000,
            started: false,
        })
    }

    fn register(&mut self) {
        let (pid, start) = sys::current_process();
        let h = self.seg.header();
        for (i, e) in h.readers.iter().enumerate() {
            let cur = e.pid.load(Ordering::Acquire);
            let free = cur == 0 || !sys::is_alive(cur, e.start.load(Ordering::Acquire));
            if free
                && e.pid
                    .compare_exchange(cur, pid, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
            {
                e.start.store(start, Ordering::Release);
                e.bytes.store(0, Ordering::Relaxed);
                e.position.store(0, Ordering::Relaxed);
                self.reader_slot = Some(i);
                return;
            }
        }
        // Table full: we still read, we just do not show up in the stats.
    }

    pub fn stream(&self) -> &str {
        &self.seg.stream
    }

    /// The current track list (refreshed by [`Reader::next`]).
    pub fn tracks(&self) -> &[Track] {
        &self.tracks
    }

    /// Re-reads the track list if the writer changed it. Returns true if it changed.
    pub fn refresh_tracks(&mut self) -> Result<bool> {
        let gen = self.seg.header().meta_gen.load(Ordering::Acquire);
        if gen == self.meta_gen || gen % 2 == 1 {
            return Ok(false);
        }
        let Some((gen, tracks)) = self.seg.read_meta()? else {
            return Ok(false);
        };
        self.meta_gen = gen;
        self.tracks = tracks;
        // Map track ids to regions.
        let mut cursors = Vec::new();
        for region in 0..self.seg.layout().max_tracks {
            let th = self.seg.track(region);
            if th.active.load(Ordering::Acquire) != 1 {
                continue;
            }
            let track_id = th.track_id.load(Ordering::Relaxed);
            if !self.tracks.iter().any(|t| t.id == track_id) {
                continue;
            }
            let next = self
                .cursors
                .iter()
                .find(|c| c.region == region)
                .map(|c| c.next)
                .unwrap_or_else(|| th.head.load(Ordering::Acquire));
            cursors.push(Cursor {
                region,
                track_id,
                next,
            });
        }
        self.cursors = cursors;
        // Segments and resyncs follow the first coded video track (not a JPEG track,
        // whose every frame is a keyframe), else the first video track, else the first.
        let find = |pred: &dyn Fn(brume_format::Codec) -> bool| {
            self.cursors.iter().position(|c| {
                self.tracks
                    .iter()
                    .any(|t| t.id == c.track_id && pred(t.codec))
            })
        };
        self.primary =
            find(&|c| matches!(c, brume_format::Codec::H264 | brume_format::Codec::H265))
                .or_else(|| find(&|c| c.is_video()))
                .or(if self.cursors.is_empty() {
                    None
                } else {
                    Some(0)
                });
        if !self.started {
            self.started = true;
            self.seek_live();
        }
        Ok(true)
    }

    /// Moves every cursor to the newest keyframe of the primary track (other tracks to
    /// their first frame at or after it). Returns the number of frames skipped.
    pub fn seek_live(&mut self) -> u64 {
        let before: u64 = self.cursors.iter().map(|c| c.next).sum();
        let Some(p) = self.primary else {
            return 0;
        };
        let key = self.keyframes().last().copied();
        match key {
            Some(k) => {
                self.cursors[p].next = k.idx;
                for i in 0..self.cursors.len() {
                    if i != p {
                        let c = self.cursors[i];
                        self.cursors[i].next = self.find_dts(c.region, k.dts);
                    }
                }
            }
            None => {
                for c in &mut self.cursors {
                    c.next = self.seg.track(c.region).head.load(Ordering::Acquire);
                }
            }
        }
        let after: u64 = self.cursors.iter().map(|c| c.next).sum();
        after.saturating_sub(before)
    }

    /// The first index on `region` whose dts is >= `dts` (head if none).
    fn find_dts(&self, region: u32, dts: i64) -> u64 {
        self.find(region, |_, d| d < dts)
    }

    /// The first index on `region` for which `before(gseq, dts)` is false, assuming it
    /// is true for a prefix of the ring (both gseq and dts grow with the index).
    fn find(&self, region: u32, before: impl Fn(u64, i64) -> bool) -> u64 {
        let th = self.seg.track(region);
        let head = th.head.load(Ordering::Acquire);
        let slots = self.seg.layout().slots as u64;
        let mut lo = head.saturating_sub(slots - 1);
        let mut hi = head;
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            match self.peek(region, mid) {
                Some((g, d, _)) if before(g, d) => lo = mid + 1,
                Some(_) => hi = mid,
                None => lo = mid + 1, // lapped while searching: search the newer half
            }
        }
        lo
    }

    /// Global sequence of the last frame [`Reader::next`] returned (0 before any).
    pub fn position(&self) -> u64 {
        self.last_gseq
    }

    /// Moves every cursor just past the frame with global sequence `gseq`: a worker
    /// resuming a connection continues exactly after the last frame it sent.
    pub fn seek_after(&mut self, gseq: u64) {
        for i in 0..self.cursors.len() {
            let region = self.cursors[i].region;
            self.cursors[i].next = self.find(region, |g, _| g <= gseq);
        }
        self.last_gseq = gseq;
    }

    /// The frame with global sequence `gseq`, if it is still in the ring.
    pub fn frame_at(&self, gseq: u64) -> Option<Frame> {
        self.cursors.iter().find_map(|c| {
            let idx = self.find(c.region, |g, _| g < gseq);
            match self.peek(c.region, idx) {
                Some((g, _, _)) if g == gseq => self.read_at(c.region, idx),
                _ => None,
            }
        })
    }

    /// Keyframes of the primary track still readable, oldest first.
    pub fn keyframes(&self) -> Vec<KeyFrame> {
        let Some(p) = self.primary else {
            return Vec::new();
        };
        let region = self.cursors[p].region;
        let th = self.seg.track(region);
        let count = th.key_count.load(Ordering::Acquire);
        let head = th.head.load(Ordering::Acquire);
        let slots = self.seg.layout().slots as u64;
        let mut out = Vec::new();
        for kno in count.saturating_sub(crate::KEYS as u64)..count {
            let k = self.seg.key(region, kno);
            let s1 = k.seq.load(Ordering::Acquire);
            let idx = k.idx.load(Ordering::Relaxed);
            let dts = k.dts.load(Ordering::Relaxed);
            let epoch = k.epoch.load(Ordering::Relaxed) as u32;
            let wall_us = k.wall_us.load(Ordering::Relaxed);
            fence(Ordering::Acquire);
            if s1 != kno + 1 || k.seq.load(Ordering::Relaxed) != s1 {
                continue;
            }
            // The frame itself must still be in the ring with its data intact.
            if idx + slots <= head || self.read_at(region, idx).is_none() {
                continue;
            }
            out.push(KeyFrame {
                number: kno,
                idx,
                dts,
                epoch,
                wall_us,
            });
        }
        out
    }

    /// The dts of the primary track's newest keyframe still in the ring, without
    /// copying it (checked on every frame of a lagging reader).
    fn newest_key_dts(&self) -> Option<i64> {
        let region = self.cursors[self.primary?].region;
        let th = self.seg.track(region);
        let count = th.key_count.load(Ordering::Acquire);
        let head = th.head.load(Ordering::Acquire);
        let slots = self.seg.layout().slots as u64;
        (count.saturating_sub(crate::KEYS as u64)..count)
            .rev()
            .find_map(|kno| {
                let k = self.seg.key(region, kno);
                let s1 = k.seq.load(Ordering::Acquire);
                let idx = k.idx.load(Ordering::Relaxed);
                let dts = k.dts.load(Ordering::Relaxed);
                fence(Ordering::Acquire);
                let valid = s1 == kno + 1 && k.seq.load(Ordering::Relaxed) == s1;
                (valid && idx + slots > head).then_some(dts)
            })
    }

    /// The number of the segment's first keyframe (see `Header::key_base`).
    pub fn key_base(&self) -> u64 {
        self.seg.header().key_base.load(Ordering::Relaxed)
    }

    /// The primary track's id, if any.
    pub fn primary_track(&self) -> Option<u32> {
        self.primary.map(|p| self.cursors[p].track_id)
    }

    /// Frames of track `track_id` with dts in `[from, to)`, or None if some were
    /// already overwritten (or the track is unknown).
    pub fn frames_between(&self, track_id: u32, from: i64, to: i64) -> Option<Vec<Frame>> {
        let c = self.cursors.iter().find(|c| c.track_id == track_id)?;
        let mut idx = self.find_dts(c.region, from);
        let head = self.seg.track(c.region).head.load(Ordering::Acquire);
        let mut out = Vec::new();
        while idx < head {
            let f = self.read_at(c.region, idx)?;
            if f.dts >= to {
                break;
            }
            if f.dts >= from {
                out.push(f);
            }
            idx += 1;
        }
        Some(out)
    }

    /// (gseq, dts, flags) of frame `idx`, if the slot still holds it.
    fn peek(&self, region: u32, idx: u64) -> Option<(u64, i64, u32)> {
        let slot = self.seg.slot(region, idx);
        let s1 = slot.seq.load(Ordering::Acquire);
        if s1 != idx + 1 {
            return None;
        }
        let g = slot.gseq.load(Ordering::Relaxed);
        let d = slot.dts.load(Ordering::Relaxed);
        let f = slot.flags.load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        (slot.seq.load(Ordering::Relaxed) == s1).then_some((g, d, f))
    }

    /// Copies frame `idx` of `region` out of the ring. None if it is not (or no longer)
    /// there; never a torn frame.
    fn read_at(&self, region: u32, idx: u64) -> Option<Frame> {
        let th = self.seg.track(region);
        let slot = self.seg.slot(region, idx);
        let s1 = slot.seq.load(Ordering::Acquire);
        if s1 != idx + 1 {
            return None;
        }
        let dts = slot.dts.load(Ordering::Relaxed);
        let offset = slot.offset.load(Ordering::Relaxed);
        let len = slot.len.load(Ordering::Relaxed) as usize;
        let cts = slot.cts.load(Ordering::Relaxed) as i32;
        let flags = slot.flags.load(Ordering::Relaxed);
        let track_id = th.track_id.load(Ordering::Relaxed);
        let size = th.data_size.load(Ordering::Relaxed);
        fence(Ordering::Acquire);
        if slot.seq.load(Ordering::Relaxed) != s1 {
            return None;
        }
        // Bounds come from shared memory: check them before use.
        let start = offset.checked_rem(size)?;
        if size > self.seg.layout().data_capacity || start + round8(len) as u64 > size {
            return None;
        }
        if offset < th.tail.load(Ordering::Acquire) {
            return None;
        }
        let mut data = vec![0u8; round8(len)];
        copy_out(self.seg.data_words(region), start as usize, &mut data);
        fence(Ordering::Acquire);
        if offset < th.tail.load(Ordering::Relaxed) || slot.seq.load(Ordering::Relaxed) != s1 {
            return None; // overwritten while we copied
        }
        data.truncate(len);
        Some(Frame {
            track: track_id,
            dts,
            cts,
            key: flags & FLAG_KEY != 0,
            data,
        })
    }

    /// The next frame in publish order, or an event. Sleeps on the futex up to
    /// `timeout` when there is nothing new.
    pub fn next(&mut self, timeout: Duration) -> Result<Read> {
        let deadline = Instant::now() + timeout;
        loop {
            if self.refresh_tracks()? {
                return Ok(Read::Tracks(self.tracks.clone()));
            }
            match self.pick() {
                Pick::Frame(i, gseq) => {
                    let c = self.cursors[i];
                    let Some(frame) = self.read_at(c.region, c.next) else {
                        let skipped = self.seek_live();
                        return Ok(Read::Resync { skipped });
                    };
                    let epoch = self
                        .seg
                        .slot(c.region, c.next)
                        .epoch
                        .load(Ordering::Relaxed);
                    // Behind live by more than max_lag: jump, but only forward, to a
                    // keyframe newer than this frame. A reader already in the newest
                    // GOP (a new viewer of a stream with 10 s between keyframes) plays
                    // on from where it is.
                    let last = self.seg.header().last_dts.load(Ordering::Acquire);
                    if last - frame.dts > self.max_lag_us
                        && self.newest_key_dts().is_some_and(|k| k > frame.dts)
                    {
                        let skipped = self.seek_live();
                        if skipped > 0 {
                            return Ok(Read::Resync { skipped });
                        }
                    }
                    self.cursors[i].next += 1;
                    self.last_gseq = gseq;
                    if let Some(e) = self.reader_slot.map(|s| &self.seg.header().readers[s]) {
                        e.position.store(gseq, Ordering::Relaxed);
                    }
                    if epoch != self.last_epoch {
                        let first = self.last_epoch == 0;
                        self.last_epoch = epoch;
                        if !first {
                            self.cursors[i].next -= 1; // deliver the frame after the event
                            return Ok(Read::Discontinuity { epoch });
                        }
                    }
                    return Ok(Read::Frame(frame));
                }
                Pick::Lapped => {
                    let skipped = self.seek_live();
                    return Ok(Read::Resync { skipped });
                }
                Pick::Nothing => {}
            }
            let h = self.seg.header();
            if h.state.load(Ordering::Acquire) == STATE_ENDED {
                return Ok(Read::Ended);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(Read::Timeout);
            }
            h.waiters.fetch_add(1, Ordering::SeqCst);
            let v = h.notify.load(Ordering::SeqCst);
            if matches!(self.pick(), Pick::Nothing)
                && h.meta_gen.load(Ordering::Acquire) == self.meta_gen
                && h.state.load(Ordering::Acquire) != STATE_ENDED
            {
                sys::futex_wait(&h.notify, v, deadline - now);
            }
            h.waiters.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// The cursor whose next frame was published first.
    fn pick(&self) -> Pick {
        let mut best: Option<(usize, u64)> = None;
        for (i, c) in self.cursors.iter().enumerate() {
            let head = self.seg.track(c.region).head.load(Ordering::Acquire);
            if c.next >= head {
                continue;
            }
            match self.peek(c.region, c.next) {
                Some((g, _, _)) => {
                    if best.is_none_or(|(_, bg)| g < bg) {
                        best = Some((i, g));
                    }
                }
                None => return Pick::Lapped,
            }
        }
        match best {
            Some((i, g)) => Pick::Frame(i, g),
            None => Pick::Nothing,
        }
    }

    /// A token for [`Reader::wait`]: take it before checking for what you wait for.
    pub fn change_token(&self) -> u32 {
        self.seg.header().notify.load(Ordering::SeqCst)
    }

    /// Sleeps until the writer publishes anything after `token` was taken, the stream
    /// ends, or `timeout` passes.
    pub fn wait(&self, token: u32, timeout: Duration) {
        let h = self.seg.header();
        h.waiters.fetch_add(1, Ordering::SeqCst);
        if h.notify.load(Ordering::SeqCst) == token
            && h.state.load(Ordering::Acquire) != STATE_ENDED
        {
            sys::futex_wait(&h.notify, token, timeout);
        }
        h.waiters.fetch_sub(1, Ordering::SeqCst);
    }

    /// True once the writer finished the stream.
    pub fn ended(&self) -> bool {
        self.seg.header().state.load(Ordering::Acquire) == STATE_ENDED
    }

    /// Adds to the bytes this reader reports as delivered.
    pub fn add_bytes(&self, n: u64) {
        if let Some(s) = self.reader_slot {
            self.seg.header().readers[s]
                .bytes
                .fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Stream-level numbers for the API.
    pub fn status(&self) -> StreamStatus {
        let h = self.seg.header();
        let readers = h
            .readers
            .iter()
            .filter(|e| {
                let pid = e.pid.load(Ordering::Acquire);
                pid != 0 && sys::is_alive(pid, e.start.load(Ordering::Acquire))
            })
            .count();
        StreamStatus {
            writer_pid: h.writer_pid.load(Ordering::Acquire),
            writer_alive: self.seg.writer_alive(),
            epoch: h.epoch.load(Ordering::Acquire),
            frames: h.global_seq.load(Ordering::Acquire),
            bytes: h.bytes.load(Ordering::Relaxed),
            dropped: h.dropped.load(Ordering::Relaxed),
            last_dts: h.last_dts.load(Ordering::Acquire),
            readers,
            ended: h.state.load(Ordering::Acquire) == STATE_ENDED,
        }
    }
}

enum Pick {
    Frame(usize, u64),
    Lapped,
    Nothing,
}

/// Stream-level numbers read from a segment.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct StreamStatus {
    pub writer_pid: u32,
    pub writer_alive: bool,
    pub epoch: u32,
    pub frames: u64,
    pub bytes: u64,
    pub dropped: u64,
    pub last_dts: i64,
    /// Live registered readers.
    pub readers: usize,
    pub ended: bool,
}

impl Drop for Reader {
    fn drop(&mut self) {
        if let Some(s) = self.reader_slot {
            self.seg.header().readers[s].pid.store(0, Ordering::Release);
        }
    }
}
