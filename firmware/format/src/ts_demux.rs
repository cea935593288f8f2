//! MPEG-2 transport stream demuxer (ISO/IEC 13818-1): the other direction of
//! [`crate::ts`], for reading the transport stream an external program writes to a pipe.
//!
//! Sans-IO: [`TsDemuxer::push`] takes bytes in any chunking and appends [`DemuxEvent`]s.
//!
//! * Program: the first program of the PAT. Its H.264 (stream type 0x1b) and AAC in
//!   ADTS (0x0f) elementary streams become tracks 1, 2, … in PMT order; other stream
//!   types are ignored.
//! * Tracks are announced once every stream's configuration is known (H.264: an SPS and
//!   a PPS; AAC: an ADTS header), and again whenever the PMT or a configuration changes.
//!   Frames are only emitted after the announcement their track belongs to. A frame of
//!   a stream whose own configuration is still unknown (video before its first SPS and
//!   PPS) is dropped. A frame of a configured stream that arrives while another stream
//!   still waits for its configuration is held back (at most 8 MiB, 2048 frames) and
//!   emitted right after the announcement: a transport stream interleaves streams
//!   coarsely, so the first audio PES often follows several video frames, and dropping
//!   those would lose the first video keyframe and its group of pictures.
//! * H.264: one PES is one access unit. Unbounded PES (length 0, the usual for video)
//!   end at the next PES start on their PID, so a video frame is emitted when the next
//!   one begins (or at [`TsDemuxer::finish`]). Access unit delimiters, parameter sets
//!   and filler data are removed from the frame data, which is AVCC.
//! * AAC: every ADTS frame of a PES becomes a frame (without its ADTS header), timed
//!   `PTS + k * 1024 / sample_rate`.
//! * Time: 90 kHz timestamps are unwrapped across the 33-bit wrap onto one 64-bit
//!   timeline and converted to microseconds (rounded). The first timestamp is kept as
//!   it is, not rebased to zero.
//! * Damage: lost sync is recovered at the next three packets in a row; a continuity
//!   error, a transport error or a PES over 4 MiB drops the PES in progress instead of
//!   emitting a corrupt frame. Any input is safe: nothing here panics.

use crate::ts::{crc32_mpeg, PACKET_SIZE};
use crate::{aac, h264, Codec, Frame, Track};
use std::collections::VecDeque;

/// The first byte of every packet.
const SYNC: u8 = 0x47;
/// A PES that grows beyond this is dropped.
const MAX_PES: usize = 4 << 20;
/// PAT and PMT sections are at most 1024 bytes (section_length <= 1021).
const MAX_SECTION: usize = 1024;
/// Input is processed in pieces of at most this many bytes, bounding the copy buffer.
const CHUNK: usize = 64 * 1024;
/// Period of MPEG timestamps (33 bits of 90 kHz).
const WRAP: i64 = 1 << 33;
/// ADTS frames are at most 8191 bytes; a remainder longer than that is garbage.
const MAX_ADTS: usize = 8191;
/// Samples per AAC frame (as ADTS carries it).
const AAC_FRAME_SAMPLES: i128 = 1024;
/// Bounds of the frames held back until the tracks are announced.
const MAX_HELD_BYTES: usize = 8 << 20;
const MAX_HELD_FRAMES: usize = 2048;

/// Stream type of H.264 video.
const STREAM_TYPE_H264: u8 = 0x1b;
/// Stream type of AAC audio in ADTS.
const STREAM_TYPE_AAC_ADTS: u8 = 0x0f;
/// NAL unit type of filler data.
const NAL_FILLER: u8 = 12;

/// Sampling frequencies by ADTS `sampling_frequency_index`.
const SAMPLE_RATES: [u32; 13] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
];

/// What the demuxer found in the bytes pushed so far.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DemuxEvent {
    /// The program's tracks, emitted once every elementary stream's configuration is
    /// known (H.264: first SPS+PPS seen; AAC: first ADTS header), and again if the PMT
    /// or a stream's parameters (SPS/PPS, ASC) change.
    Tracks(Vec<Track>),
    /// One frame of a track of the last [`DemuxEvent::Tracks`].
    Frame(Frame),
}

/// Counters for diagnostics. They only grow.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DemuxStats {
    /// Transport packets read (whatever their PID).
    pub packets: u64,
    /// Times the packet sync byte was not where it should have been.
    pub lost_sync: u64,
    /// Packets whose continuity counter skipped on a PID the demuxer follows.
    pub continuity_errors: u64,
    /// Packets flagged with transport_error_indicator, ignored.
    pub transport_errors: u64,
    /// PES packets discarded: cut by a continuity or transport error, larger than
    /// 4 MiB, truncated, scrambled, or with a malformed header.
    pub pes_dropped: u64,
    /// Access units discarded: before their stream's configuration was known, beyond
    /// the bound of frames held back until the tracks are announced (or still held at
    /// [`TsDemuxer::finish`]), without a timestamp, or not representable (AAC with
    /// several raw data blocks per ADTS frame or a channel configuration of 0).
    pub frames_dropped: u64,
}

/// A PSI section being reassembled (PAT or PMT).
#[derive(Default)]
struct Section {
    buf: Vec<u8>,
    /// True while `buf` holds the start of a section.
    active: bool,
    last_cc: Option<u8>,
}

impl Section {
    fn reset(&mut self) {
        self.buf.clear();
        self.active = false;
    }
}

/// Known H.264 parameters.
#[derive(Default)]
struct Video {
    /// The SPS and PPS NAL units last seen (each list from one access unit).
    sps: Vec<Vec<u8>>,
    pps: Vec<Vec<u8>>,
    /// `avcC`, width and height built from them.
    config: Option<(Vec<u8>, u32, u32)>,
}

/// Known AAC parameters and the ADTS reassembly state.
#[derive(Default)]
struct Audio {
    /// Profile, sampling frequency index and channel configuration of the ADTS header
    /// the configuration was built from.
    header: Option<(u8, u8, u8)>,
    /// AudioSpecificConfig, sample rate, channels.
    config: Option<(Vec<u8>, u32, u32)>,
    /// Bytes of an ADTS frame cut by the end of a PES.
    pending: Vec<u8>,
    /// The last PTS (unwrapped 90 kHz) and the frames timed since it.
    base: Option<i64>,
    count: i128,
}

enum Kind {
    H264(Video),
    Aac(Audio),
}

struct Stream {
    pid: u16,
    stream_type: u8,
    last_cc: Option<u8>,
    /// The PES being reassembled; meaningful while `pes_active`.
    pes: Vec<u8>,
    pes_active: bool,
    kind: Kind,
}

impl Stream {
    fn new(pid: u16, stream_type: u8) -> Stream {
        let kind = if stream_type == STREAM_TYPE_H264 {
            Kind::H264(Video::default())
        } else {
            Kind::Aac(Audio::default())
        };
        Stream {
            pid,
            stream_type,
            last_cc: None,
            pes: Vec::new(),
            pes_active: false,
            kind,
        }
    }

    /// Forgets the PES in progress (and the audio bytes waiting for it); true if there
    /// was one.
    fn drop_pes(&mut self) -> bool {
        let had = self.pes_active;
        self.pes_active = false;
        self.pes.clear();
        if let Kind::Aac(a) = &mut self.kind {
            a.pending.clear();
        }
        had
    }
}

/// The header fields of one PES that the demuxer uses.
struct PesHeader {
    pts: Option<u64>,
    dts: Option<u64>,
    /// Range of the elementary stream bytes within the PES.
    start: usize,
    end: usize,
}

/// Where a packet's payload goes.
enum Target {
    Pat,
    Pmt,
    Es(usize),
}

/// A sans-IO MPEG-TS demuxer for the first program of a transport stream.
pub struct TsDemuxer {
    /// Unprocessed input: at most one chunk plus a few packets.
    buf: Vec<u8>,
    synced: bool,
    pat: Section,
    pmt: Section,
    /// Program number and PMT PID of the first program of the PAT.
    program: Option<(u16, u16)>,
    /// The supported elementary streams in PMT order (track id = index + 1).
    streams: Vec<Stream>,
    /// True once the current tracks were emitted.
    announced: bool,
    /// The last timestamp read (unwrapped 90 kHz ticks).
    last_ts: Option<i64>,
    /// Frames of configured streams waiting for the tracks to be announced.
    held: VecDeque<Frame>,
    held_bytes: usize,
    stats: DemuxStats,
}

impl Default for TsDemuxer {
    fn default() -> Self {
        TsDemuxer::new()
    }
}

impl TsDemuxer {
    /// A demuxer that has seen nothing yet.
    pub fn new() -> TsDemuxer {
        TsDemuxer {
            buf: Vec::new(),
            synced: true,
            pat: Section::default(),
            pmt: Section::default(),
            program: None,
            streams: Vec::new(),
            announced: false,
            last_ts: None,
            held: VecDeque::new(),
            held_bytes: 0,
            stats: DemuxStats::default(),
        }
    }

    /// Feeds bytes in any chunking (a pipe read of any size); appends what became
    /// complete.
    pub fn push(&mut self, data: &[u8], out: &mut Vec<DemuxEvent>) {
        for piece in data.chunks(CHUNK) {
            self.buf.extend_from_slice(piece);
            self.process(out);
        }
    }

    /// End of input: emits the last buffered access units. Bytes of an incomplete
    /// packet are discarded, and so are frames still held back because a stream's
    /// configuration never arrived. The demuxer keeps its program and timeline, so more
    /// input may follow as a continuation.
    pub fn finish(&mut self, out: &mut Vec<DemuxEvent>) {
        self.buf.clear();
        for i in 0..self.streams.len() {
            if self.streams[i].pes_active {
                self.complete_pes(i, out);
            }
            if let Kind::Aac(a) = &mut self.streams[i].kind {
                a.pending.clear();
            }
        }
        self.drop_held();
    }

    /// Counters for diagnostics: packets, lost sync, continuity errors, PES dropped.
    pub fn stats(&self) -> DemuxStats {
        self.stats
    }

    /// Splits the buffer into packets, resynchronising where needed.
    fn process(&mut self, out: &mut Vec<DemuxEvent>) {
        let buf = std::mem::take(&mut self.buf);
        let mut pos = 0;
        loop {
            let avail = &buf[pos..];
            if self.synced {
                if avail.len() < PACKET_SIZE {
                    break;
                }
                if avail[0] == SYNC {
                    self.packet(&avail[..PACKET_SIZE], out);
                    pos += PACKET_SIZE;
                    continue;
                }
                self.synced = false;
                self.stats.lost_sync += 1;
            }
            // Out of sync: the next position with sync bytes three packets in a row.
            // A candidate is only judged once all three bytes are here, so the result
            // does not depend on how the input was chunked.
            let mut from = 0;
            let mut decided = None;
            while let Some(p) = avail[from..].iter().position(|&b| b == SYNC) {
                let p = from + p;
                if p + 2 * PACKET_SIZE >= avail.len() {
                    break;
                }
                if avail[p + PACKET_SIZE] == SYNC && avail[p + 2 * PACKET_SIZE] == SYNC {
                    decided = Some(p);
                    break;
                }
                from = p + 1;
            }
            match decided {
                Some(p) => {
                    pos += p;
                    self.synced = true;
                }
                None => {
                    // Keep from the first undecided candidate (or nothing).
                    pos += avail[from..]
                        .iter()
                        .position(|&b| b == SYNC)
                        .map_or(avail.len(), |p| from + p);
                    break;
                }
            }
        }
        let mut buf = buf;
        buf.drain(..pos);
        self.buf = buf;
    }

    /// Handles one 188-byte packet starting with the sync byte.
    fn packet(&mut self, p: &[u8], out: &mut Vec<DemuxEvent>) {
        self.stats.packets += 1;
        if p[1] & 0x80 != 0 {
            // The header itself may be damaged: ignore the packet. The continuity
            // counter of the next one drops the PES it belonged to.
            self.stats.transport_errors += 1;
            return;
        }
        let pusi = p[1] & 0x40 != 0;
        let pid = u16::from(p[1] & 0x1f) << 8 | u16::from(p[2]);
        let scrambled = p[3] & 0xc0 != 0;
        let afc = (p[3] >> 4) & 3;
        let cc = p[3] & 0x0f;
        let target = if pid == 0 {
            Target::Pat
        } else if self.program.map(|(_, pmt)| pmt) == Some(pid) {
            Target::Pmt
        } else if let Some(i) = self.streams.iter().position(|s| s.pid == pid) {
            Target::Es(i)
        } else {
            return;
        };
        let mut discontinuity = false;
        let payload: &[u8] = match afc {
            1 => &p[4..],
            2 | 3 => {
                let len = usize::from(p[4]);
                if len > 183 {
                    return;
                }
                if len > 0 {
                    discontinuity = p[5] & 0x80 != 0;
                }
                &p[5 + len..]
            }
            _ => return,
        };
        if afc & 1 == 0 {
            // Adaptation field only: the counter does not advance.
            return;
        }
        let last_cc = match target {
            Target::Pat => &mut self.pat.last_cc,
            Target::Pmt => &mut self.pmt.last_cc,
            Target::Es(i) => &mut self.streams[i].last_cc,
        };
        let previous = last_cc.replace(cc);
        let mut lost = false;
        if let (Some(prev), false) = (previous, discontinuity) {
            if cc == prev {
                // A duplicate packet: its payload was already taken.
                return;
            }
            lost = cc != (prev + 1) & 0x0f;
        }
        if lost {
            self.stats.continuity_errors += 1;
        }
        match target {
            Target::Pat | Target::Pmt => {
                let pat = matches!(target, Target::Pat);
                if lost {
                    self.section(pat).reset();
                }
                if !scrambled {
                    self.psi_payload(pat, pusi, payload, out);
                }
            }
            Target::Es(i) => {
                if (lost || scrambled) && self.streams[i].drop_pes() {
                    self.stats.pes_dropped += 1;
                }
                if !scrambled {
                    self.es_payload(i, pusi, payload, out);
                }
            }
        }
    }

    fn section(&mut self, pat: bool) -> &mut Section {
        if pat {
            &mut self.pat
        } else {
            &mut self.pmt
        }
    }

    /// Reassembles PSI sections and handles every complete one.
    fn psi_payload(&mut self, pat: bool, pusi: bool, payload: &[u8], out: &mut Vec<DemuxEvent>) {
        let mut complete = Vec::new();
        {
            let s = self.section(pat);
            if pusi {
                let Some((&pointer, rest)) = payload.split_first() else {
                    s.reset();
                    return;
                };
                let pointer = usize::from(pointer);
                if pointer > rest.len() {
                    s.reset();
                    return;
                }
                if s.active {
                    s.buf.extend_from_slice(&rest[..pointer]);
                    take_sections(s, &mut complete);
                }
                s.buf.clear();
                s.buf.extend_from_slice(&rest[pointer..]);
                s.active = true;
            } else if s.active {
                s.buf.extend_from_slice(payload);
            } else {
                return;
            }
            take_sections(s, &mut complete);
            if s.buf.len() > MAX_SECTION {
                s.reset();
            }
        }
        for section in complete {
            if pat {
                self.handle_pat(&section);
            } else {
                self.handle_pmt(&section, out);
            }
        }
    }

    fn handle_pat(&mut self, s: &[u8]) {
        let Some(body) = section_body(s, 0x00) else {
            return;
        };
        let section_number = s[6];
        let first = body
            .chunks_exact(4)
            .map(|e| {
                (
                    u16::from_be_bytes([e[0], e[1]]),
                    u16::from_be_bytes([e[2] & 0x1f, e[3]]),
                )
            })
            .find(|&(number, _)| number != 0);
        let Some(program) = first else {
            return;
        };
        if (section_number == 0 || self.program.is_none()) && self.program != Some(program) {
            self.program = Some(program);
            self.pmt = Section::default();
        }
    }

    fn handle_pmt(&mut self, s: &[u8], out: &mut Vec<DemuxEvent>) {
        let Some(body) = section_body(s, 0x02) else {
            return;
        };
        let number = u16::from_be_bytes([s[3], s[4]]);
        if self.program.map(|(n, _)| n) != Some(number) || body.len() < 4 {
            return;
        }
        let info_len = usize::from(u16::from_be_bytes([body[2] & 0x0f, body[3]]));
        let mut pos = 4 + info_len;
        let mut wanted: Vec<(u16, u8)> = Vec::new();
        while let Some(e) = body.get(pos..pos + 5) {
            let stream_type = e[0];
            let pid = u16::from_be_bytes([e[1] & 0x1f, e[2]]);
            pos += 5 + usize::from(u16::from_be_bytes([e[3] & 0x0f, e[4]]));
            let usable = matches!(stream_type, STREAM_TYPE_H264 | STREAM_TYPE_AAC_ADTS)
                && pid != 0
                && pid != 0x1fff
                && Some(pid) != self.program.map(|(_, pmt)| pmt)
                && !wanted.iter().any(|&(p, _)| p == pid);
            if usable {
                wanted.push((pid, stream_type));
            }
        }
        let current: Vec<(u16, u8)> = self
            .streams
            .iter()
            .map(|s| (s.pid, s.stream_type))
            .collect();
        if wanted == current {
            return;
        }
        // Streams that go away complete their frame in progress under the old tracks.
        for i in 0..self.streams.len() {
            let key = (self.streams[i].pid, self.streams[i].stream_type);
            if !wanted.contains(&key) && self.streams[i].pes_active {
                self.complete_pes(i, out);
            }
        }
        // Held frames carry the old track ids.
        self.drop_held();
        let mut old = std::mem::take(&mut self.streams);
        for (pid, stream_type) in wanted {
            let kept = old
                .iter()
                .position(|s| s.pid == pid && s.stream_type == stream_type)
                .map(|i| old.swap_remove(i));
            self.streams
                .push(kept.unwrap_or_else(|| Stream::new(pid, stream_type)));
        }
        self.announced = false;
        self.announce(out);
    }

    /// Emits the tracks if they are not announced yet and every configuration is known.
    fn announce(&mut self, out: &mut Vec<DemuxEvent>) {
        if self.announced || self.streams.is_empty() {
            return;
        }
        let mut tracks = Vec::with_capacity(self.streams.len());
        for (i, s) in self.streams.iter().enumerate() {
            // Fewer than 2^32 streams fit in one PMT.
            let id = i as u32 + 1;
            let track = match &s.kind {
                Kind::H264(Video {
                    config: Some((init, w, h)),
                    ..
                }) => Track::video(id, Codec::H264, init.clone(), *w, *h),
                Kind::Aac(Audio {
                    config: Some((init, rate, channels)),
                    ..
                }) => Track::audio(id, Codec::Aac, init.clone(), *rate, *channels),
                _ => return,
            };
            tracks.push(track);
        }
        self.announced = true;
        out.push(DemuxEvent::Tracks(tracks));
        out.extend(self.held.drain(..).map(DemuxEvent::Frame));
        self.held_bytes = 0;
    }

    /// Emits a frame of a configured stream, or holds it back until the tracks are
    /// announced.
    fn emit(&mut self, frame: Frame, out: &mut Vec<DemuxEvent>) {
        if self.announced {
            out.push(DemuxEvent::Frame(frame));
            return;
        }
        self.held_bytes += frame.data.len();
        self.held.push_back(frame);
        while self.held.len() > MAX_HELD_FRAMES || self.held_bytes > MAX_HELD_BYTES {
            let Some(oldest) = self.held.pop_front() else {
                break;
            };
            self.held_bytes -= oldest.data.len();
            self.stats.frames_dropped += 1;
        }
    }

    fn drop_held(&mut self) {
        self.stats.frames_dropped += self.held.len() as u64;
        self.held.clear();
        self.held_bytes = 0;
    }

    /// Adds one packet's payload to stream `i`'s PES.
    fn es_payload(&mut self, i: usize, pusi: bool, payload: &[u8], out: &mut Vec<DemuxEvent>) {
        if pusi {
            if self.streams[i].pes_active {
                self.complete_pes(i, out);
            }
            let s = &mut self.streams[i];
            s.pes.clear();
            s.pes.extend_from_slice(payload);
            s.pes_active = true;
        } else {
            let s = &mut self.streams[i];
            if !s.pes_active {
                return;
            }
            if s.pes.len() + payload.len() > MAX_PES {
                s.drop_pes();
                self.stats.pes_dropped += 1;
                return;
            }
            s.pes.extend_from_slice(payload);
        }
        let pes = &self.streams[i].pes;
        if let Some(len) = pes.get(4..6) {
            let len = usize::from(u16::from_be_bytes([len[0], len[1]]));
            if len != 0 && pes.len() >= 6 + len {
                self.complete_pes(i, out);
            }
        }
    }

    /// Handles stream `i`'s PES in progress as complete.
    fn complete_pes(&mut self, i: usize, out: &mut Vec<DemuxEvent>) {
        let pes = std::mem::take(&mut self.streams[i].pes);
        self.streams[i].pes_active = false;
        match parse_pes_header(&pes) {
            Some(h) => {
                // Unwrap in stream order, whatever happens to the frame.
                let pts = h.pts.map(|t| self.unwrap_ts(t));
                let dts = h.dts.map(|t| self.unwrap_ts(t));
                let data = &pes[h.start..h.end];
                if matches!(self.streams[i].kind, Kind::H264(_)) {
                    self.video_pes(i, pts, dts, data, out);
                } else {
                    self.audio_pes(i, pts, data, out);
                }
            }
            None => self.stats.pes_dropped += 1,
        }
        // Give the allocation back for the next PES.
        let mut pes = pes;
        pes.clear();
        self.streams[i].pes = pes;
    }

    /// Places a 33-bit timestamp on the 64-bit timeline: the value congruent to it
    /// modulo 2^33 closest to the previous timestamp. The first is taken as it is.
    fn unwrap_ts(&mut self, raw: u64) -> i64 {
        // Masked to 33 bits, so it fits.
        let raw = (raw & (WRAP as u64 - 1)) as i64;
        let t = match self.last_ts {
            None => raw,
            Some(last) => {
                let diff = (raw - last.rem_euclid(WRAP)).rem_euclid(WRAP);
                let diff = if diff >= WRAP / 2 { diff - WRAP } else { diff };
                last.saturating_add(diff)
            }
        };
        self.last_ts = Some(t);
        t
    }

    fn video_pes(
        &mut self,
        i: usize,
        pts: Option<i64>,
        dts: Option<i64>,
        es: &[u8],
        out: &mut Vec<DemuxEvent>,
    ) {
        let mut sps: Vec<Vec<u8>> = Vec::new();
        let mut pps: Vec<Vec<u8>> = Vec::new();
        let mut data = Vec::with_capacity(es.len() + 16);
        let mut key = false;
        for nal in h264::annexb_nals(es) {
            match h264::nal_type(nal) {
                h264::NAL_SPS => push_unique(&mut sps, nal),
                h264::NAL_PPS => push_unique(&mut pps, nal),
                h264::NAL_AUD | NAL_FILLER => {}
                t => {
                    key |= t == h264::NAL_IDR;
                    // A NAL unit of 4 GiB cannot come out of a 4 MiB PES.
                    data.extend_from_slice(&(nal.len() as u32).to_be_bytes());
                    data.extend_from_slice(nal);
                }
            }
        }
        let Kind::H264(v) = &mut self.streams[i].kind else {
            return;
        };
        let mut changed = false;
        if (!sps.is_empty() && sps != v.sps) || (!pps.is_empty() && pps != v.pps) {
            if !sps.is_empty() {
                v.sps = sps;
            }
            if !pps.is_empty() {
                v.pps = pps;
            }
            if let Some(config) = video_config(&v.sps, &v.pps) {
                if v.config.as_ref() != Some(&config) {
                    v.config = Some(config);
                    changed = true;
                }
            }
        }
        let configured = v.config.is_some();
        if changed {
            self.announced = false;
            self.announce(out);
        }
        if data.is_empty() {
            return;
        }
        let Some(pts) = pts else {
            self.stats.frames_dropped += 1;
            return;
        };
        if !configured {
            self.stats.frames_dropped += 1;
            return;
        }
        let dts_us = ticks_to_us(dts.unwrap_or(pts));
        let cts = ticks_to_us(pts).saturating_sub(dts_us);
        let frame = Frame {
            // Fewer than 2^32 streams fit in one PMT.
            track: i as u32 + 1,
            dts: dts_us,
            cts: i32::try_from(cts).unwrap_or(if cts < 0 { i32::MIN } else { i32::MAX }),
            key,
            data,
        };
        self.emit(frame, out);
    }

    fn audio_pes(&mut self, i: usize, pts: Option<i64>, es: &[u8], out: &mut Vec<DemuxEvent>) {
        let Kind::Aac(a) = &mut self.streams[i].kind else {
            return;
        };
        let mut pending = std::mem::take(&mut a.pending);
        // The PTS belongs to the first ADTS frame that starts in this PES.
        let new_from = pending.len();
        let mut pts = pts;
        pending.extend_from_slice(es);
        let mut pos = 0;
        while pos + 7 <= pending.len() {
            let h = &pending[pos..];
            if h[0] != 0xff || h[1] & 0xf6 != 0xf0 {
                pos += 1;
                continue;
            }
            let len = usize::from(h[3] & 3) << 11 | usize::from(h[4]) << 3 | usize::from(h[5] >> 5);
            let header_len = if h[1] & 1 == 1 { 7 } else { 9 };
            if len < header_len {
                pos += 1;
                continue;
            }
            if pos + len > pending.len() {
                break;
            }
            if pos >= new_from {
                if let Some(p) = pts.take() {
                    if let Kind::Aac(a) = &mut self.streams[i].kind {
                        a.base = Some(p);
                        a.count = 0;
                    }
                }
            }
            let frame = &pending[pos..pos + len];
            self.adts_frame(i, frame, header_len, out);
            pos += len;
        }
        pending.drain(..pos);
        if pending.len() > MAX_ADTS {
            pending.clear();
        }
        if let Kind::Aac(a) = &mut self.streams[i].kind {
            a.pending = pending;
        }
    }

    /// Handles one complete ADTS frame of stream `i`.
    fn adts_frame(&mut self, i: usize, frame: &[u8], header_len: usize, out: &mut Vec<DemuxEvent>) {
        let Kind::Aac(a) = &mut self.streams[i].kind else {
            return;
        };
        let profile = frame[2] >> 6;
        let freq = (frame[2] >> 2) & 0x0f;
        let chan = (frame[2] & 1) << 2 | frame[3] >> 6;
        let blocks = i128::from(frame[6] & 3) + 1;
        let time = a.base.and_then(|base| {
            let rate = *SAMPLE_RATES.get(usize::from(freq))?;
            Some(aac_time_us(base, a.count, rate))
        });
        a.count += blocks;
        let Some(&rate) = SAMPLE_RATES.get(usize::from(freq)) else {
            self.stats.frames_dropped += 1;
            return;
        };
        if blocks != 1 || chan == 0 {
            self.stats.frames_dropped += 1;
            return;
        }
        let mut changed = false;
        if a.header != Some((profile, freq, chan)) {
            a.header = Some((profile, freq, chan));
            let channels = if chan == 7 { 8 } else { chan };
            if let Ok(asc) = aac::build_asc(profile + 1, rate, channels) {
                a.config = Some((asc, rate, u32::from(channels)));
                changed = true;
            }
        }
        let configured = a.config.is_some();
        if changed {
            self.announced = false;
            self.announce(out);
        }
        let Some(dts) = time else {
            self.stats.frames_dropped += 1;
            return;
        };
        if !configured {
            self.stats.frames_dropped += 1;
            return;
        }
        let frame = Frame {
            // Fewer than 2^32 streams fit in one PMT.
            track: i as u32 + 1,
            dts,
            cts: 0,
            key: true,
            data: frame[header_len..].to_vec(),
        };
        self.emit(frame, out);
    }
}

/// Moves every complete section out of `s.buf` into `complete`; stops at stuffing.
fn take_sections(s: &mut Section, complete: &mut Vec<Vec<u8>>) {
    let mut pos = 0;
    loop {
        let rest = &s.buf[pos..];
        if rest.first().is_none_or(|&b| b == 0xff) {
            // Stuffing (or nothing) up to the end of the packet.
            s.reset();
            return;
        }
        let Some(h) = rest.get(..3) else {
            break;
        };
        let len = 3 + usize::from(u16::from_be_bytes([h[1] & 0x0f, h[2]]));
        if len > MAX_SECTION {
            s.reset();
            return;
        }
        let Some(section) = rest.get(..len) else {
            break;
        };
        complete.push(section.to_vec());
        pos += len;
    }
    s.buf.drain(..pos);
}

/// The loop bytes of a current long-form section of `table_id` with a valid CRC:
/// everything after the 8-byte header and before the CRC.
fn section_body(s: &[u8], table_id: u8) -> Option<&[u8]> {
    if s.len() < 12 || s[0] != table_id || s[1] & 0x80 == 0 || s[5] & 1 == 0 {
        return None;
    }
    if crc32_mpeg(s) != 0 {
        return None;
    }
    Some(&s[8..s.len() - 4])
}

/// Parses a complete PES's header; `None` if it is malformed or truncated or its stream
/// id has no optional header (padding, private stream 2, ...).
fn parse_pes_header(pes: &[u8]) -> Option<PesHeader> {
    if pes.len() < 9 || pes[..3] != [0, 0, 1] {
        return None;
    }
    if matches!(
        pes[3],
        0xbc | 0xbe | 0xbf | 0xf0 | 0xf1 | 0xf2 | 0xf8 | 0xff
    ) {
        return None;
    }
    let len = usize::from(u16::from_be_bytes([pes[4], pes[5]]));
    let end = if len == 0 {
        pes.len()
    } else if pes.len() >= 6 + len {
        6 + len
    } else {
        return None;
    };
    if pes[6] & 0xc0 != 0x80 {
        return None;
    }
    let start = 9 + usize::from(pes[8]);
    if start > end {
        return None;
    }
    let header = &pes[9..start];
    let (pts, dts) = match pes[7] >> 6 {
        2 => (Some(read_timestamp(header.get(..5)?)), None),
        3 => (
            Some(read_timestamp(header.get(..5)?)),
            Some(read_timestamp(header.get(5..10)?)),
        ),
        _ => (None, None),
    };
    Some(PesHeader {
        pts,
        dts,
        start,
        end,
    })
}

/// Reads a 5-byte PTS/DTS field (marker bits are not checked).
fn read_timestamp(b: &[u8]) -> u64 {
    (u64::from(b[0] >> 1 & 7) << 30)
        | (u64::from(b[1]) << 22)
        | (u64::from(b[2] >> 1) << 15)
        | (u64::from(b[3]) << 7)
        | u64::from(b[4] >> 1)
}

/// 90 kHz ticks to microseconds, rounded to nearest, saturating.
fn ticks_to_us(t: i64) -> i64 {
    // t * 100 / 9 never lands on a half, so adding 4 before flooring rounds.
    clamp_i64((i128::from(t) * 100 + 4).div_euclid(9))
}

/// Microseconds of the `count`th AAC frame after a PES timestamp `base` (90 kHz), with
/// one rounding of the exact time.
fn aac_time_us(base: i64, count: i128, rate: u32) -> i64 {
    let rate = i128::from(rate);
    // µs = base * 100 / 9 + count * 1024 * 10^6 / rate, over the common denominator.
    let num = i128::from(base) * 100 * rate + count * AAC_FRAME_SAMPLES * 9_000_000;
    let den = 9 * rate;
    clamp_i64((2 * num + den).div_euclid(2 * den))
}

fn clamp_i64(v: i128) -> i64 {
    // Clamped into range first, so the conversion cannot fail.
    v.clamp(i128::from(i64::MIN), i128::from(i64::MAX)) as i64
}

fn push_unique(list: &mut Vec<Vec<u8>>, nal: &[u8]) {
    if !list.iter().any(|n| n == nal) {
        list.push(nal.to_vec());
    }
}

/// `avcC`, width and height from parameter sets; `None` if they do not parse.
fn video_config(sps: &[Vec<u8>], pps: &[Vec<u8>]) -> Option<(Vec<u8>, u32, u32)> {
    let info = h264::parse_sps(sps.first()?).ok()?;
    let sps: Vec<&[u8]> = sps.iter().map(Vec::as_slice).collect();
    let pps: Vec<&[u8]> = pps.iter().map(Vec::as_slice).collect();
    let avcc = h264::avcc_from_parameter_sets(&sps, &pps).ok()?;
    Some((avcc, info.width, info.height))
}

#[cfg(test)]
#[path = "ts_demux_tests.rs"]
mod tests;
