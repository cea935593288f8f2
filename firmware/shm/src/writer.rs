//! The single writer of a stream segment (the stream's input process).

use crate::layout::{
    round_up, Layout, FLAG_KEY, KEY_BASE_EPOCH_MS, KEY_BASE_MS, MAGIC, META_CAPACITY, STATE_ENDED,
    STATE_LIVE, VERSION,
};
use crate::{copy_in, io_err, place, round8, sys, Error, Namespace, Result, Segment};
use brume_format::{Frame, Track};
use std::sync::atomic::{fence, Ordering};

/// Where a track's frames go in the segment.
struct Region {
    track_id: u32,
    index: u32,
    data_size: u64,
    /// Timeline dts of the last keyframe this writer put in the keyframe index.
    last_indexed: Option<i64>,
}

/// Keyframes closer than this to the last indexed one are not indexed: the index holds
/// segment starts about a second apart (HLS segments, resync points), not every frame
/// of a track whose every frame is a keyframe (audio). A 1 s GOP at 30 fps (999,990 µs)
/// indexes every keyframe; a writer's first keyframe is always indexed, so a new epoch
/// starts a segment.
pub const KEY_INDEX_MIN_US: i64 = 900_000;

/// The writer of one stream's segment. See the crate docs for the protocol.
pub struct Writer {
    seg: Segment,
    regions: Vec<Region>,
    epoch: u32,
    /// Added to every dts so a restarted writer continues the previous timeline.
    dts_offset: Option<i64>,
    /// Unix time (µs) minus timeline dts, fixed at this writer's first frame.
    wall_anchor: Option<i64>,
}

impl Writer {
    /// Creates the segment for `stream`, or adopts it if a previous writer died (the
    /// epoch is incremented and indexes continue). Fails with [`Error::Busy`] if
    /// another writer is alive.
    pub fn open(ns: &Namespace, stream: &str, layout: Layout) -> Result<Writer> {
        layout.validate().map_err(Error::BadLayout)?;
        let path = ns.stream_path(stream)?;
        let (pid, start) = sys::current_process();
        let mut attempt = 0;
        let seg = loop {
            attempt += 1;
            match Segment::open_path(&path, stream) {
                Ok(seg) => break seg,
                Err(Error::Invalid { .. }) if attempt < 3 => {
                    // Not ours or from another version: nobody can read it anyway.
                    let _ = std::fs::remove_file(&path);
                }
                Err(Error::NotFound { .. }) if attempt < 3 => {
                    if let Some(seg) = create(ns, stream, layout)? {
                        break seg;
                    } // else another writer created it first: adopt or lose to it
                }
                Err(e) => return Err(e),
            }
        };
        let h = seg.header();
        let old = h.writer_pid.load(Ordering::Acquire);
        if old != 0 && old != pid && seg.writer_alive() {
            return Err(Error::Busy {
                stream: stream.to_string(),
                pid: old,
            });
        }
        if h.writer_pid
            .compare_exchange(old, pid, Ordering::AcqRel, Ordering::Acquire)
            .is_err()
        {
            let now = h.writer_pid.load(Ordering::Acquire);
            return Err(Error::Busy {
                stream: stream.to_string(),
                pid: now,
            });
        }
        h.writer_start.store(start, Ordering::Release);
        let epoch = h.epoch.fetch_add(1, Ordering::AcqRel) + 1;
        h.state.store(STATE_LIVE, Ordering::Release);
        let mut w = Writer {
            seg,
            regions: Vec::new(),
            epoch,
            dts_offset: if epoch == 1 { Some(0) } else { None },
            wall_anchor: None,
        };
        // Re-learn the regions a previous writer set up.
        for index in 0..w.seg.layout().max_tracks {
            let th = w.seg.track(index);
            if th.active.load(Ordering::Acquire) == 1 {
                w.regions.push(Region {
                    track_id: th.track_id.load(Ordering::Relaxed),
                    index,
                    data_size: th.data_size.load(Ordering::Relaxed),
                    last_indexed: None,
                });
            }
        }
        Ok(w)
    }

    pub fn stream(&self) -> &str {
        &self.seg.stream
    }

    pub fn epoch(&self) -> u32 {
        self.epoch
    }

    pub fn layout(&self) -> Layout {
        self.seg.layout()
    }

    /// Publishes the stream's track list. Tracks keep their region across calls and
    /// across writer restarts (matched by id); new ids get a free region.
    pub fn set_tracks(&mut self, tracks: &[Track]) -> Result<()> {
        let json = serde_json::to_vec(tracks).expect("tracks always serialise");
        if json.len() > META_CAPACITY {
            return Err(Error::Meta {
                stream: self.seg.stream.clone(),
                reason: format!("{} bytes of metadata (max {META_CAPACITY})", json.len()),
            });
        }
        let layout = self.seg.layout();
        for t in tracks {
            if self.regions.iter().any(|r| r.track_id == t.id) {
                continue;
            }
            let index = (0..layout.max_tracks)
                .find(|i| !self.regions.iter().any(|r| r.index == *i))
                .ok_or_else(|| Error::Track {
                    stream: self.seg.stream.clone(),
                    track: t.id,
                    reason: format!("more than {} tracks", layout.max_tracks),
                })?;
            // Audio needs far less room than video; the ring's pages are only
            // touched (and so only cost memory) as it fills.
            let data_size = if t.codec.is_audio() {
                round_up(layout.data_capacity / 16, 4096)
                    .max(64 * 1024)
                    .min(layout.data_capacity)
            } else {
                layout.data_capacity
            };
            let th = self.seg.track(index);
            th.track_id.store(t.id, Ordering::Relaxed);
            let base = self.seg.header().key_base.load(Ordering::Relaxed);
            th.key_count.fetch_max(base, Ordering::Relaxed);
            th.data_size.store(data_size, Ordering::Relaxed);
            th.active.store(1, Ordering::Release);
            self.regions.push(Region {
                track_id: t.id,
                index,
                data_size,
                last_indexed: None,
            });
        }
        let h = self.seg.header();
        let g = h.meta_gen.load(Ordering::Relaxed);
        let g = if g % 2 == 1 { g + 1 } else { g }; // a writer that died mid-update
        h.meta_gen.store(g + 1, Ordering::Relaxed);
        fence(Ordering::Release);
        let mut padded = json.clone();
        padded.resize(round8(json.len()), 0);
        copy_in(self.seg.meta_words(), 0, &padded);
        h.meta_len.store(json.len() as u64, Ordering::Relaxed);
        h.meta_gen.store(g + 2, Ordering::Release);
        self.wake();
        Ok(())
    }

    /// Publishes one frame and wakes the readers.
    pub fn write(&mut self, frame: &Frame) -> Result<()> {
        let h = self.seg.header();
        let offset = *self.dts_offset.get_or_insert_with(|| {
            // First frame after a restart: continue one frame after the previous
            // writer's last frame if our own clock would go back.
            let last = h.last_dts.load(Ordering::Acquire);
            (last + 33_333 - frame.dts).max(0)
        });
        let dts = frame.dts + offset;
        let wall_anchor = *self.wall_anchor.get_or_insert_with(|| unix_us() - dts);
        let Some(region) = self.regions.iter_mut().find(|r| r.track_id == frame.track) else {
            return Err(Error::Track {
                stream: self.seg.stream.clone(),
                track: frame.track,
                reason: "frame for a track that is not in the track list".into(),
            });
        };
        let size = region.data_size;
        let len = frame.data.len() as u64;
        if round8(frame.data.len()) as u64 > size / 2 {
            h.dropped.fetch_add(1, Ordering::Relaxed);
            return Err(Error::Track {
                stream: self.seg.stream.clone(),
                track: frame.track,
                reason: format!("frame of {len} bytes does not fit a {size}-byte ring"),
            });
        }
        let t = region.index;
        let th = self.seg.track(t);
        let idx = th.head.load(Ordering::Relaxed);

        // 1. Data. Raise the watermark over the bytes we are about to overwrite, then
        //    fence, then write: a reader that sees any new byte also sees the new tail.
        let (start, end) = place(th.write_off.load(Ordering::Relaxed), len, size);
        if end > size {
            th.tail.fetch_max(end - size, Ordering::Relaxed);
        }
        fence(Ordering::Release);
        copy_in(self.seg.data_words(t), (start % size) as usize, &frame.data);

        // 2. Slot (seqlock): invalidate, fence, fill, publish with Release.
        let slot = self.seg.slot(t, idx);
        slot.seq.store(0, Ordering::Relaxed);
        fence(Ordering::Release);
        let gseq = h.global_seq.load(Ordering::Relaxed);
        slot.gseq.store(gseq, Ordering::Relaxed);
        slot.dts.store(dts, Ordering::Relaxed);
        slot.offset.store(start, Ordering::Relaxed);
        slot.len.store(len as u32, Ordering::Relaxed);
        slot.cts.store(frame.cts as u32, Ordering::Relaxed);
        slot.flags
            .store(if frame.key { FLAG_KEY } else { 0 }, Ordering::Relaxed);
        slot.epoch.store(self.epoch, Ordering::Relaxed);
        slot.seq.store(idx + 1, Ordering::Release);
        th.write_off.store(end, Ordering::Relaxed);
        th.head.store(idx + 1, Ordering::Release);

        // 3. Keyframe index (seqlock per entry), about one entry a second at most.
        if frame.key
            && region
                .last_indexed
                .is_none_or(|last| dts - last >= KEY_INDEX_MIN_US)
        {
            region.last_indexed = Some(dts);
            let kno = th.key_count.load(Ordering::Relaxed);
            let k = self.seg.key(t, kno);
            k.seq.store(0, Ordering::Relaxed);
            fence(Ordering::Release);
            k.idx.store(idx, Ordering::Relaxed);
            k.dts.store(dts, Ordering::Relaxed);
            k.epoch.store(self.epoch as u64, Ordering::Relaxed);
            k.wall_us.store(wall_anchor + dts, Ordering::Relaxed);
            k.seq.store(kno + 1, Ordering::Release);
            th.key_count.store(kno + 1, Ordering::Release);
        }

        h.global_seq.store(gseq + 1, Ordering::Release);
        h.last_dts.fetch_max(dts, Ordering::AcqRel);
        h.bytes.fetch_add(len, Ordering::Relaxed);
        self.wake();
        Ok(())
    }

    /// Counts frames the source lost before they reached the buffer (camera drops).
    pub fn add_dropped(&self, n: u64) {
        self.seg.header().dropped.fetch_add(n, Ordering::Relaxed);
    }

    fn wake(&self) {
        let h = self.seg.header();
        // SeqCst pairs with the reader's SeqCst `waiters` increment followed by its
        // `notify` load: either we see the waiter, or it sees our increment.
        h.notify.fetch_add(1, Ordering::SeqCst);
        if h.waiters.load(Ordering::SeqCst) > 0 {
            sys::futex_wake_all(&h.notify);
        }
    }

    /// Ends the stream: readers see [`crate::Read::Ended`], the file is removed.
    /// Lets go of the segment without ending it: readers wait (they see no writer) and
    /// the next writer adopts it at once, as a new epoch continuing the timeline.
    pub fn release(self) {
        let h = self.seg.header();
        let (pid, _) = sys::current_process();
        let _ = h
            .writer_pid
            .compare_exchange(pid, 0, Ordering::AcqRel, Ordering::Acquire);
        self.wake();
    }

    pub fn finish(self) {
        let h = self.seg.header();
        h.state.store(STATE_ENDED, Ordering::Release);
        self.wake();
        h.writer_pid.store(0, Ordering::Release);
        let _ = std::fs::remove_file(&self.seg.path);
    }
}

/// Creates a new segment file under a temporary name, initialises it and links it into
/// place, so nobody ever maps a half-initialised segment. Returns None if another
/// process created the segment first (link refuses to replace it).
fn create(ns: &Namespace, stream: &str, layout: Layout) -> Result<Option<Segment>> {
    let path = ns.stream_path(stream)?;
    let tmp = ns.dir.join(format!(
        "{}-{}.new{}",
        ns.prefix,
        stream,
        std::process::id()
    ));
    let file = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&tmp)
        .map_err(|e| io_err(stream, "create", &tmp, e))?;
    file.set_len(layout.file_size())
        .map_err(|e| io_err(stream, "size", &tmp, e))?;
    let map = memmap2::MmapRaw::map_raw(&file).map_err(|e| io_err(stream, "mmap", &tmp, e))?;
    let seg = Segment {
        map,
        layout,
        stream: stream.to_string(),
        path: path.clone(),
    };
    let h = seg.header();
    h.version.store(VERSION, Ordering::Relaxed);
    h.max_tracks.store(layout.max_tracks, Ordering::Relaxed);
    h.slots.store(layout.slots, Ordering::Relaxed);
    h.data_capacity
        .store(layout.data_capacity, Ordering::Relaxed);
    h.key_base.store(
        (unix_us() / 1000 - KEY_BASE_EPOCH_MS).max(0) as u64 / KEY_BASE_MS,
        Ordering::Relaxed,
    );
    h.magic.store(MAGIC, Ordering::Release);
    let linked = std::fs::hard_link(&tmp, &path);
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(Some(seg)),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(None),
        Err(e) => Err(io_err(stream, "link", &path, e)),
    }
}

fn unix_us() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_micros() as i64)
}
