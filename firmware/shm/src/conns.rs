//! The connection table: one record per client connection served by a worker process.
//!
//! Created by the listener (the connections' angel); each record is written by the one
//! worker serving that connection and read by the listener (to resume a crashed worker)
//! and the controller (the API's connection list). Records are claimed and released by
//! the listener only, so there is one writer per record.
//!
//! The header names the listener that owns the table (pid and start time). A listener
//! that replaces another one (after a crash, or a live update) keeps the records of
//! workers that still run, writes its own identity, and those workers hand it their
//! client sockets so it can resume them (see `brume listen`).

use crate::{io_err, sys, Error, Namespace, Result};
use memmap2::MmapRaw;
use std::sync::atomic::{AtomicU64, Ordering};

pub const CONN_SLOTS: usize = 1024;
const WORDS: usize = 32;
const MAGIC: u64 = u64::from_le_bytes(*b"BRUMECN2");
/// `OPENED_MS` of a record being claimed (not listed yet).
const CLAIMING: u64 = u64::MAX;
/// Header words before the first record: magic, owner pid, owner start time, spare.
const HEADER: usize = 8;
const SIZE: u64 = ((CONN_SLOTS * WORDS + HEADER) * 8) as u64;

/// Field word indexes within a record.
mod w {
    pub const PID: usize = 0; // worker pid (0 = free)
    pub const START: usize = 1; // worker start time
    pub const OPENED_MS: usize = 2; // unix ms when the client connected
    pub const PEER: usize = 3; // IPv4/IPv6 text, 4 words (32 bytes)
    pub const PROTO: usize = 7; // protocol text, 1 word
    pub const STREAM: usize = 8; // stream name text, 8 words (64 bytes)
    pub const BYTES: usize = 16; // bytes written to the client
    pub const RESTARTS: usize = 17; // workers restarted on this connection
    pub const STATE: usize = 18; // first of the resume-state words
}

/// Words a worker may use to record what it needs to resume the connection.
pub const STATE_WORDS: usize = WORDS - w::STATE;

/// A snapshot of one record, for the API.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnInfo {
    pub slot: usize,
    pub pid: u32,
    pub opened_ms: u64,
    pub peer: String,
    pub proto: String,
    pub stream: String,
    pub bytes: u64,
    pub restarts: u64,
}

pub struct ConnTable {
    map: MmapRaw,
}

impl ConnTable {
    fn path(ns: &Namespace) -> std::path::PathBuf {
        ns.dir.join(format!("{}.conns", ns.prefix))
    }

    /// The listener, at start: maps the table of the listener it replaces, keeping
    /// the records whose worker still runs and freeing the others, or creates a new
    /// one. It then claims the table as its owner.
    pub fn take_over(ns: &Namespace) -> Result<ConnTable> {
        let t = match ConnTable::open(ns) {
            Ok(t) => {
                for s in 0..CONN_SLOTS {
                    if t.word(s, w::OPENED_MS).load(Ordering::Acquire) != 0 && !t.worker_alive(s) {
                        t.release(s);
                    }
                }
                t
            }
            Err(_) => ConnTable::create(ns)?,
        };
        let pid = std::process::id();
        t.word_at(2)
            .store(sys::process_start_time(pid).unwrap_or(0), Ordering::Relaxed);
        t.word_at(1).store(pid as u64, Ordering::Release);
        Ok(t)
    }

    /// The listener that owns the table now (0 before any).
    pub fn owner(&self) -> u32 {
        self.word_at(1).load(Ordering::Acquire) as u32
    }

    /// True when the record's worker (pid and start time) still runs.
    pub fn worker_alive(&self, slot: usize) -> bool {
        let pid = self.word(slot, w::PID).load(Ordering::Acquire) as u32;
        pid != 0
            && sys::process_start_time(pid)
                == Some(self.word(slot, w::START).load(Ordering::Relaxed))
    }

    /// The record's worker pid (0: none, or it finished with the connection).
    pub fn worker(&self, slot: usize) -> u32 {
        self.word(slot, w::PID).load(Ordering::Acquire) as u32
    }

    /// Worker: it is done with the connection (it exits on purpose, not by a crash),
    /// so a listener that sees it exit without a status does not resume it.
    pub fn finished(&self, slot: usize, pid: u32) {
        let _ = self.word(slot, w::PID).compare_exchange(
            pid as u64,
            0,
            Ordering::AcqRel,
            Ordering::Relaxed,
        );
    }

    /// Creates (or re-creates) an empty table.
    pub fn create(ns: &Namespace) -> Result<ConnTable> {
        let path = ConnTable::path(ns);
        let tmp = ns
            .dir
            .join(format!("{}.conns.new{}", ns.prefix, std::process::id()));
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .map_err(|e| io_err("-", "create", &tmp, e))?;
        f.set_len(SIZE).map_err(|e| io_err("-", "size", &tmp, e))?;
        let map = MmapRaw::map_raw(&f).map_err(|e| io_err("-", "mmap", &tmp, e))?;
        let t = ConnTable { map };
        t.word_at(0).store(MAGIC, Ordering::Release);
        std::fs::rename(&tmp, &path).map_err(|e| io_err("-", "rename", &path, e))?;
        Ok(t)
    }

    /// Maps an existing table (workers, controller).
    pub fn open(ns: &Namespace) -> Result<ConnTable> {
        let path = ConnTable::path(ns);
        let f = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&path)
            .map_err(|e| io_err("-", "open", &path, e))?;
        let len = f
            .metadata()
            .map_err(|e| io_err("-", "stat", &path, e))?
            .len();
        if len != SIZE {
            return Err(Error::Invalid {
                stream: "-".into(),
                path,
            });
        }
        let map = MmapRaw::map_raw(&f).map_err(|e| io_err("-", "mmap", &path, e))?;
        let t = ConnTable { map };
        if t.word_at(0).load(Ordering::Acquire) != MAGIC {
            return Err(Error::Invalid {
                stream: "-".into(),
                path,
            });
        }
        Ok(t)
    }

    fn word_at(&self, i: usize) -> &AtomicU64 {
        assert!((i + 1) * 8 <= self.map.len(), "word index inside the table");
        // SAFETY: in bounds (asserted; the length is checked at open), 8-aligned
        // (page-aligned mapping), AtomicU64 is valid for any bits, and the mapping
        // lives as long as &self.
        unsafe { &*(self.map.as_ptr().add(i * 8) as *const AtomicU64) }
    }

    fn word(&self, slot: usize, field: usize) -> &AtomicU64 {
        self.word_at(HEADER + slot * WORDS + field)
    }

    fn set_text(&self, slot: usize, field: usize, words: usize, text: &str) {
        let mut bytes = vec![0u8; words * 8];
        let n = text.len().min(words * 8);
        bytes[..n].copy_from_slice(&text.as_bytes()[..n]);
        for (i, c) in bytes.chunks_exact(8).enumerate() {
            let v = u64::from_le_bytes(c.try_into().expect("chunks_exact(8)"));
            self.word(slot, field + i).store(v, Ordering::Relaxed);
        }
    }

    fn text(&self, slot: usize, field: usize, words: usize) -> String {
        let mut bytes = Vec::with_capacity(words * 8);
        for i in 0..words {
            bytes.extend_from_slice(
                &self
                    .word(slot, field + i)
                    .load(Ordering::Relaxed)
                    .to_le_bytes(),
            );
        }
        let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
        String::from_utf8_lossy(&bytes[..end]).into_owned()
    }

    /// Listener: claims a free record for a new connection. Claimed with a
    /// compare-exchange: during a live update two listeners share the table for a
    /// moment (the old one finishing the request heads it was reading).
    pub fn claim(&self, peer: &str, opened_ms: u64) -> Option<usize> {
        let slot = (0..CONN_SLOTS).find(|s| {
            self.word(*s, w::OPENED_MS)
                .compare_exchange(0, CLAIMING, Ordering::AcqRel, Ordering::Relaxed)
                .is_ok()
        })?;
        for f in (0..WORDS).filter(|f| *f != w::OPENED_MS) {
            self.word(slot, f).store(0, Ordering::Relaxed);
        }
        self.set_text(slot, w::PEER, 4, peer);
        self.word(slot, w::OPENED_MS)
            .store(opened_ms, Ordering::Release);
        Some(slot)
    }

    /// Listener: the connection is closed; the record is free again.
    pub fn release(&self, slot: usize) {
        self.word(slot, w::PID).store(0, Ordering::Relaxed);
        self.word(slot, w::OPENED_MS).store(0, Ordering::Release);
    }

    /// Listener: a (new) worker serves the record's connection.
    pub fn set_worker(&self, slot: usize, pid: u32, restarted: bool) {
        self.word(slot, w::START)
            .store(sys::process_start_time(pid).unwrap_or(0), Ordering::Relaxed);
        self.word(slot, w::PID).store(pid as u64, Ordering::Release);
        if restarted {
            self.word(slot, w::RESTARTS).fetch_add(1, Ordering::Relaxed);
        }
    }

    /// Worker: what it serves.
    pub fn describe(&self, slot: usize, proto: &str, stream: &str) {
        self.set_text(slot, w::PROTO, 1, proto);
        self.set_text(slot, w::STREAM, 8, stream);
    }

    /// Worker: bytes written to the client so far.
    pub fn add_bytes(&self, slot: usize, n: u64) {
        self.word(slot, w::BYTES).fetch_add(n, Ordering::Relaxed);
    }

    pub fn bytes(&self, slot: usize) -> u64 {
        self.word(slot, w::BYTES).load(Ordering::Relaxed)
    }

    /// Worker: resume-state word `i` (0..STATE_WORDS).
    pub fn state(&self, slot: usize, i: usize) -> &AtomicU64 {
        assert!(i < STATE_WORDS, "resume-state word index");
        self.word(slot, w::STATE + i)
    }

    pub fn restarts(&self, slot: usize) -> u64 {
        self.word(slot, w::RESTARTS).load(Ordering::Relaxed)
    }

    /// Every open connection (the API).
    pub fn list(&self) -> Vec<ConnInfo> {
        (0..CONN_SLOTS)
            .filter_map(|s| {
                let opened_ms = self.word(s, w::OPENED_MS).load(Ordering::Acquire);
                (opened_ms != 0 && opened_ms != CLAIMING).then(|| ConnInfo {
                    slot: s,
                    pid: self.word(s, w::PID).load(Ordering::Relaxed) as u32,
                    opened_ms,
                    peer: self.text(s, w::PEER, 4),
                    proto: self.text(s, w::PROTO, 1),
                    stream: self.text(s, w::STREAM, 8),
                    bytes: self.word(s, w::BYTES).load(Ordering::Relaxed),
                    restarts: self.word(s, w::RESTARTS).load(Ordering::Relaxed),
                })
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claim_describe_list_release() {
        let ns = Namespace {
            dir: std::env::temp_dir(),
            prefix: format!("brumeconns{}", std::process::id()),
        };
        let t = ConnTable::create(&ns).unwrap();
        let other = ConnTable::open(&ns).unwrap();
        let s = t.claim("127.0.0.1:5000", 1234).unwrap();
        t.set_worker(s, std::process::id(), false);
        other.describe(
            s,
            "hls",
            "a-very-long-stream-name-that-still-fits-in-sixty-four-bytes-xx",
        );
        other.add_bytes(s, 10);
        let l = t.list();
        assert_eq!(l.len(), 1);
        assert_eq!(l[0].peer, "127.0.0.1:5000");
        assert_eq!(l[0].proto, "hls");
        assert_eq!(l[0].bytes, 10);
        assert_eq!(l[0].stream.len(), 62);
        t.release(s);
        assert!(t.list().is_empty());
        let _ = std::fs::remove_file(ConnTable::path(&ns));
    }

    #[test]
    fn a_new_owner_keeps_the_records_of_live_workers() {
        let ns = Namespace {
            dir: std::env::temp_dir(),
            prefix: format!("brumeconntake{}", std::process::id()),
        };
        let t = ConnTable::create(&ns).unwrap();
        let live = t.claim("127.0.0.1:1", 1).unwrap();
        t.set_worker(live, std::process::id(), false);
        t.state(live, 0).store(77, Ordering::Relaxed);
        let dead = t.claim("127.0.0.1:2", 2).unwrap();
        // A pid that does not run (beyond pid_max on every Linux).
        t.set_worker(dead, 0x7fff_fff0, false);
        let finished = t.claim("127.0.0.1:3", 3).unwrap();
        t.set_worker(finished, std::process::id(), false);
        t.finished(finished, std::process::id());

        let next = ConnTable::take_over(&ns).unwrap();
        assert_eq!(next.owner(), std::process::id());
        let slots: Vec<usize> = next.list().iter().map(|c| c.slot).collect();
        assert_eq!(slots, vec![live], "only the live worker's record is kept");
        assert_eq!(next.state(live, 0).load(Ordering::Relaxed), 77);
        assert_eq!(next.worker(live), std::process::id());
        let _ = std::fs::remove_file(ConnTable::path(&ns));
    }
}
