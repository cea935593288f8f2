//! MPEG-2 transport stream muxer (ISO/IEC 13818-1) for HLS TS segments and raw TS
//! outputs.
//!
//! One program: PAT, PMT on PID 0x1000, elementary stream `i` of the track list on PID
//! `0x100 + i`. H.264 is written as Annex B with an access unit delimiter and, before
//! every keyframe, the SPS/PPS of the track's `avcC`; AAC is wrapped in ADTS.
//! Timestamps are microseconds converted to 90 kHz (`round(µs * 9 / 100)`, modulo 2^33).

use crate::{aac, h264, Codec, Error, Frame, Result, Track};

/// Size of a transport stream packet.
pub const PACKET_SIZE: usize = 188;
/// PID of the program map table.
const PMT_PID: u16 = 0x1000;
/// PID of the first elementary stream.
const FIRST_ES_PID: u16 = 0x100;
/// In audio-only programs, PAT/PMT are repeated at least this often (µs of dts).
const AUDIO_ONLY_PSI_INTERVAL_US: i64 = 1_000_000;
/// An access unit delimiter NAL unit (primary_pic_type 7: any slice type).
const AUD: [u8; 6] = [0, 0, 0, 1, 0x09, 0xf0];

enum Kind {
    /// H.264, with the SPS and PPS of the `avcC` as Annex B (4-byte start codes).
    H264 { parameter_sets: Vec<u8> },
    /// AAC; the config drives the ADTS headers.
    Aac(aac::AudioSpecificConfig),
}

struct Stream {
    track: u32,
    pid: u16,
    cc: u8,
    kind: Kind,
}

impl Stream {
    fn stream_type(&self) -> u8 {
        match self.kind {
            Kind::H264 { .. } => 0x1b,
            Kind::Aac(_) => 0x0f,
        }
    }
}

/// Muxes frames of several tracks into one MPEG-TS program.
pub struct TsMuxer {
    streams: Vec<Stream>,
    pcr_pid: u16,
    has_video: bool,
    pat_cc: u8,
    pmt_cc: u8,
    /// Decode time of the last PAT/PMT, `None` before the first.
    last_psi_dts: Option<i64>,
}

fn unsupported(reason: impl Into<String>) -> Error {
    Error::Unsupported {
        what: "MPEG-TS muxer",
        reason: reason.into(),
    }
}

/// The part of a [`TsMuxer`] that changes as it muxes: continuity counters and the
/// time of the last PAT/PMT. A worker that takes over a connection restores it so the
/// byte stream continues without a continuity error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct TsState {
    /// 4 bits each: PAT, PMT, then every stream in track order.
    pub counters: u64,
    /// `i64::MIN` before the first PAT/PMT.
    pub last_psi_dts: i64,
}

impl TsMuxer {
    /// The muxer's evolving state.
    pub fn state(&self) -> TsState {
        let mut counters = u64::from(self.pat_cc & 15) | u64::from(self.pmt_cc & 15) << 4;
        for (i, s) in self.streams.iter().enumerate().take(14) {
            counters |= u64::from(s.cc & 15) << (8 + 4 * i);
        }
        TsState {
            counters,
            last_psi_dts: self.last_psi_dts.unwrap_or(i64::MIN),
        }
    }

    /// Restores a state taken with [`TsMuxer::state`] from a muxer of the same tracks.
    pub fn restore(&mut self, state: TsState) {
        self.pat_cc = (state.counters & 15) as u8;
        self.pmt_cc = (state.counters >> 4 & 15) as u8;
        for (i, s) in self.streams.iter_mut().enumerate().take(14) {
            s.cc = (state.counters >> (8 + 4 * i) & 15) as u8;
        }
        self.last_psi_dts = (state.last_psi_dts != i64::MIN).then_some(state.last_psi_dts);
    }

    /// A muxer for `tracks`. Tracks of codecs other than H.264 and AAC are left out of
    /// the program (their frames are ignored by [`TsMuxer::mux`]); it is an error if no
    /// track is left or a track's init data does not parse.
    pub fn new(tracks: &[Track]) -> Result<TsMuxer> {
        let mut streams = Vec::new();
        for (i, track) in tracks.iter().enumerate() {
            let pid = u16::try_from(i)
                .ok()
                .and_then(|i| FIRST_ES_PID.checked_add(i))
                .filter(|&p| p < PMT_PID)
                .ok_or_else(|| unsupported("too many tracks"))?;
            let kind = match track.codec {
                Codec::H264 => {
                    let cfg = h264::parse_avcc(&track.init)?;
                    let mut parameter_sets = Vec::new();
                    for nal in cfg.sps.iter().chain(&cfg.pps) {
                        parameter_sets.extend_from_slice(&[0, 0, 0, 1]);
                        parameter_sets.extend_from_slice(nal);
                    }
                    Kind::H264 { parameter_sets }
                }
                Codec::Aac => {
                    let mut asc = aac::parse_asc(&track.init)?;
                    if asc.channels == 0 {
                        // A program config element defines the layout; ADTS needs a
                        // channel configuration, so fall back to the track's count.
                        asc.channels = u8::try_from(track.channels).unwrap_or(0);
                    }
                    // Fail now rather than on every frame.
                    aac::adts_header(&asc, 0)?;
                    Kind::Aac(asc)
                }
                _ => continue,
            };
            streams.push(Stream {
                track: track.id,
                pid,
                cc: 0,
                kind,
            });
        }
        // 12 bytes of PMT header and CRC plus 5 per stream must fit one packet.
        if streams.len() > 33 {
            return Err(unsupported("more than 33 streams"));
        }
        let video = streams.iter().find(|s| matches!(s.kind, Kind::H264 { .. }));
        let pcr_pid = video
            .or(streams.first())
            .map(|s| s.pid)
            .ok_or_else(|| unsupported("no H.264 or AAC track"))?;
        Ok(TsMuxer {
            pcr_pid,
            has_video: video.is_some(),
            streams,
            pat_cc: 0,
            pmt_cc: 0,
            last_psi_dts: None,
        })
    }

    /// Appends the 188-byte packets of one frame to `out`: PAT and PMT first if they
    /// are due (at the start, before every video keyframe, and every second in
    /// audio-only programs), then the frame's PES. Frames of tracks not in the program
    /// are ignored. On error nothing is appended.
    pub fn mux(&mut self, frame: &Frame, out: &mut Vec<u8>) -> Result<()> {
        let Some(index) = self.streams.iter().position(|s| s.track == frame.track) else {
            return Ok(());
        };
        let mut pes = Vec::with_capacity(frame.data.len() + 64);
        let video = match &self.streams[index].kind {
            Kind::H264 { parameter_sets } => {
                pes_header(&mut pes, 0xe0, frame, 0);
                pes.extend_from_slice(&AUD);
                if frame.key {
                    pes.extend_from_slice(parameter_sets);
                }
                for nal in h264::avcc_nals(&frame.data)? {
                    if h264::nal_type(nal) != h264::NAL_AUD && !nal.is_empty() {
                        pes.extend_from_slice(&[0, 0, 0, 1]);
                        pes.extend_from_slice(nal);
                    }
                }
                true
            }
            Kind::Aac(asc) => {
                let adts = aac::adts_header(asc, frame.data.len())?;
                pes_header(&mut pes, 0xc0, frame, adts.len() + frame.data.len());
                pes.extend_from_slice(&adts);
                pes.extend_from_slice(&frame.data);
                false
            }
        };
        let psi_due = match self.last_psi_dts {
            None => true,
            Some(_) if video && frame.key => true,
            Some(last) => {
                !self.has_video && frame.dts.saturating_sub(last) >= AUDIO_ONLY_PSI_INTERVAL_US
            }
        };
        out.reserve((pes.len() / 184 + 3) * PACKET_SIZE);
        if psi_due {
            self.write_psi(out);
            self.last_psi_dts = Some(frame.dts);
        }
        let pcr = (self.streams[index].pid == self.pcr_pid).then(|| to_90khz(frame.dts));
        let stream = &mut self.streams[index];
        write_pes_packets(out, stream.pid, &mut stream.cc, &pes, pcr, frame.key);
        Ok(())
    }

    fn write_psi(&mut self, out: &mut Vec<u8>) {
        let mut pat = vec![
            0x00, // table_id
            0xb0, 13,   // section_syntax_indicator, section_length
            0x00, // transport_stream_id
            0x01, 0xc1, // version 0, current
            0x00, // section_number
            0x00, // last_section_number
            0x00, // program_number 1
            0x01,
        ];
        pat.extend_from_slice(&(0xe000 | PMT_PID).to_be_bytes());
        write_section(out, 0, &mut self.pat_cc, pat);

        // At most 33 streams (checked in `new`): the length fits one packet.
        let section_length = (9 + 5 * self.streams.len() + 4) as u16;
        let mut pmt = vec![0x02];
        pmt.extend_from_slice(&(0xb000 | section_length).to_be_bytes());
        pmt.extend_from_slice(&[0x00, 0x01, 0xc1, 0x00, 0x00]);
        pmt.extend_from_slice(&(0xe000 | self.pcr_pid).to_be_bytes());
        pmt.extend_from_slice(&[0xf0, 0x00]); // program_info_length 0
        for s in &self.streams {
            pmt.push(s.stream_type());
            pmt.extend_from_slice(&(0xe000 | s.pid).to_be_bytes());
            pmt.extend_from_slice(&[0xf0, 0x00]); // ES_info_length 0
        }
        write_section(out, PMT_PID, &mut self.pmt_cc, pmt);
    }
}

/// Microseconds to 90 kHz ticks, rounded, modulo 2^33.
fn to_90khz(us: i64) -> u64 {
    let t = (i128::from(us) * 9 + 50).div_euclid(100);
    // rem_euclid of a positive modulus is in 0..2^33.
    t.rem_euclid(1 << 33) as u64
}

/// Appends a 5-byte PTS/DTS field with the 4-bit `prefix`.
fn timestamp(out: &mut Vec<u8>, prefix: u8, t: u64) {
    // Each value is masked to the bits its byte holds.
    out.push((prefix << 4) | (((t >> 29) & 0x0e) as u8) | 1);
    out.push((t >> 22) as u8);
    out.push((((t >> 14) & 0xfe) as u8) | 1);
    out.push((t >> 7) as u8);
    out.push((((t << 1) & 0xfe) as u8) | 1);
}

/// Appends a PES header; `payload_len` 0 writes PES_packet_length 0 (unbounded, video).
fn pes_header(out: &mut Vec<u8>, stream_id: u8, frame: &Frame, payload_len: usize) {
    let dts = to_90khz(frame.dts);
    let pts = to_90khz(frame.pts());
    let header_len: usize = if pts == dts { 5 } else { 10 };
    out.extend_from_slice(&[0, 0, 1, stream_id]);
    let len = if payload_len == 0 {
        0
    } else {
        u16::try_from(3 + header_len + payload_len).unwrap_or(0)
    };
    out.extend_from_slice(&len.to_be_bytes());
    out.push(0x84); // marker bits, data_alignment_indicator
    if pts == dts {
        out.extend_from_slice(&[0x80, 5]);
        timestamp(out, 0b0010, pts);
    } else {
        out.extend_from_slice(&[0xc0, 10]);
        timestamp(out, 0b0011, pts);
        timestamp(out, 0b0001, dts);
    }
}

/// The 4-byte packet header.
fn packet_header(out: &mut Vec<u8>, pid: u16, start: bool, adaptation: bool, cc: &mut u8) {
    let pusi = if start { 0x40 } else { 0 };
    // PIDs are below 0x2000, so the high byte fits the 5 bits.
    out.push(0x47);
    out.push(pusi | ((pid >> 8) as u8 & 0x1f));
    out.push((pid & 0xff) as u8);
    out.push(if adaptation { 0x30 } else { 0x10 } | *cc);
    *cc = (*cc + 1) & 0x0f;
}

/// Appends a PSI section (everything before the CRC) in one packet with its CRC.
fn write_section(out: &mut Vec<u8>, pid: u16, cc: &mut u8, mut section: Vec<u8>) {
    let crc = crc32_mpeg(&section);
    section.extend_from_slice(&crc.to_be_bytes());
    let start = out.len();
    packet_header(out, pid, true, false, cc);
    out.push(0); // pointer_field
    out.extend_from_slice(&section);
    out.resize(start + PACKET_SIZE, 0xff);
}

/// Splits a PES into packets. The first carries PCR (when `pcr` is given) and the
/// random access indicator (when `key`); the last is padded with adaptation-field
/// stuffing.
fn write_pes_packets(
    out: &mut Vec<u8>,
    pid: u16,
    cc: &mut u8,
    pes: &[u8],
    pcr: Option<u64>,
    key: bool,
) {
    let mut pos = 0;
    let mut first = true;
    while pos < pes.len() {
        let pcr = if first { pcr } else { None };
        let rai = first && key;
        // Adaptation field bytes needed for flags (length + flags + PCR).
        let needed = if pcr.is_some() || rai {
            2 + if pcr.is_some() { 6 } else { 0 }
        } else {
            0
        };
        let take = (184 - needed).min(pes.len() - pos);
        let af_len = 184 - take; // total adaptation field bytes, length byte included
        let start = out.len();
        packet_header(out, pid, first, af_len > 0, cc);
        if af_len > 0 {
            // af_len <= 184, so the length byte fits.
            out.push((af_len - 1) as u8);
            if af_len > 1 {
                let mut flags = 0;
                if rai {
                    flags |= 0x40;
                }
                if pcr.is_some() {
                    flags |= 0x10;
                }
                out.push(flags);
                if let Some(base) = pcr {
                    // 33-bit base, 6 reserved bits, 9-bit extension 0; bytes masked.
                    out.push((base >> 25) as u8);
                    out.push((base >> 17) as u8);
                    out.push((base >> 9) as u8);
                    out.push((base >> 1) as u8);
                    out.push((((base & 1) as u8) << 7) | 0x7e);
                    out.push(0);
                }
                out.resize(start + 4 + af_len, 0xff);
            }
        }
        out.extend_from_slice(&pes[pos..pos + take]);
        pos += take;
        first = false;
    }
}

/// CRC-32/MPEG-2 (polynomial 0x04c11db7, initial 0xffffffff, no reflection); a
/// section including its CRC yields 0.
pub(crate) fn crc32_mpeg(data: &[u8]) -> u32 {
    let mut crc = 0xffff_ffffu32;
    for &b in data {
        crc ^= u32::from(b) << 24;
        for _ in 0..8 {
            crc = if crc & 0x8000_0000 != 0 {
                (crc << 1) ^ 0x04c1_1db7
            } else {
                crc << 1
            };
        }
    }
    crc
}

#[cfg(test)]
#[path = "ts_tests.rs"]
mod tests;
