//! The server side of an RTMP publishing connection, sans-IO.
//!
//! [`PublishSession`] takes the bytes a publisher (ffmpeg, OBS, an encoder) sends and
//! returns [`RtmpEvent`]s: bytes to send back, the publish request, the track list and
//! media frames in Brume's internal format. It owns no socket, clock or thread.
//!
//! Protocol coverage: the simple (version 3, no digest) handshake; the chunk stream
//! with all four chunk header types, extended timestamps (also on type-3 chunks, as
//! the specification and ffmpeg/librtmp do), SetChunkSize, Abort, Window Acknowledgement
//! Size / Acknowledgement and ping; AMF0 commands (`connect`, `releaseStream`,
//! `FCPublish`, `createStream`, `publish`, `FCUnpublish`, `closeStream`,
//! `deleteStream`; AMF3-wrapped commands whose values are AMF0); audio, video and
//! aggregate messages. Data messages (`@setDataFrame` / `onMetaData`) are ignored.

use std::collections::HashMap;

use brume_format::{Codec, Frame, Track};

use crate::amf0::{self, Value};
use crate::error::{Error, Result};
use crate::flv::{self, AacPacket, AvcPacket};

/// Track id of the (single) video track.
const VIDEO_TRACK: u32 = 1;
/// Track id of the (single) audio track.
const AUDIO_TRACK: u32 = 2;

const HANDSHAKE_SIZE: usize = 1536;
const RTMP_VERSION: u8 = 3;
/// The chunk size every RTMP peer starts with.
const DEFAULT_CHUNK_SIZE: u32 = 128;
/// The chunk size this server switches its own output to (announced at `connect`).
const OUT_CHUNK_SIZE: u32 = 4096;
/// The acknowledgement window announced to the peer, and its bandwidth limit.
const SERVER_WINDOW: u32 = 2_500_000;
/// Most chunk streams a peer may use at once (ffmpeg and OBS use fewer than 10).
const MAX_CHUNK_STREAMS: usize = 64;
/// Chunk stream ids used for our own messages.
const CSID_CONTROL: u8 = 2;
const CSID_COMMAND: u8 = 3;

const MSG_SET_CHUNK_SIZE: u8 = 1;
const MSG_ABORT: u8 = 2;
const MSG_ACK: u8 = 3;
const MSG_USER_CONTROL: u8 = 4;
const MSG_WINDOW_ACK_SIZE: u8 = 5;
const MSG_SET_PEER_BANDWIDTH: u8 = 6;
const MSG_AUDIO: u8 = 8;
const MSG_VIDEO: u8 = 9;
const MSG_COMMAND_AMF3: u8 = 17;
const MSG_COMMAND_AMF0: u8 = 20;
const MSG_AGGREGATE: u8 = 22;

/// Resource limits that protect the device from a hostile or broken peer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RtmpLimits {
    /// Largest RTMP message accepted, in bytes (default 4 MiB). A message header
    /// announcing more is an [`Error::MessageTooLarge`] before anything is buffered.
    /// Bytes buffered in incomplete messages across all chunk streams are capped at
    /// twice this value.
    pub max_message_size: usize,
    /// Largest chunk size a peer may set with SetChunkSize (default 16 MiB, larger
    /// than any message). Buffering is bounded by `max_message_size` regardless.
    pub max_chunk_size: u32,
}

impl Default for RtmpLimits {
    fn default() -> Self {
        RtmpLimits {
            max_message_size: 4 << 20,
            max_chunk_size: 16 << 20,
        }
    }
}

/// What a [`PublishSession`] reports after consuming input.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RtmpEvent {
    /// Bytes to send to the peer (handshake replies, acks, command results).
    Send(Vec<u8>),
    /// The peer wants to publish. `app` is e.g. "live"; `name` is the publishing name
    /// without query; `query` the raw query string after '?' in the publishing name
    /// (may be empty; if the name has none, a query on the `connect` app is used).
    ///
    /// Answer with [`PublishSession::accept`] or [`PublishSession::reject`]. The
    /// session stops consuming input right after this event: bytes behind the
    /// `publish` command stay buffered until the next [`PublishSession::feed`] call
    /// (call `feed(&[])` after answering to process them).
    PublishRequested {
        /// The application from `connect`, without query or trailing slash.
        app: String,
        /// The stream name, without query.
        name: String,
        /// The raw query string (without '?').
        query: String,
    },
    /// Track list is known or changed (after the sequence headers arrive; a single
    /// AVC sequence header + AAC sequence header gives 2 tracks: video id 1, audio
    /// id 2). Emitted once both sequence headers are in, or before the first frame
    /// when only one track is present, and again whenever a sequence header changes.
    Tracks(Vec<Track>),
    /// A media frame (after Tracks was emitted). dts/cts in microseconds from the FLV
    /// timestamps (ms) and composition time offset; the 32-bit ms timestamp wrap is
    /// unwrapped into i64.
    Frame(Frame),
    /// The peer stopped publishing (deleteStream / FCUnpublish / closeStream).
    Unpublished,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// Waiting for C0 + C1.
    C0C1,
    /// Waiting for C2.
    C2,
    /// Chunk stream.
    Chunks,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Publish {
    Idle,
    Pending { stream_id: u32, name: String },
    Publishing,
}

/// Per chunk stream state: the last header's fields and the message being assembled.
#[derive(Clone, Debug, Default)]
struct ChunkStream {
    timestamp: u32,
    /// The last timestamp field (delta for types 1/2, absolute for type 0).
    delta: u32,
    length: u32,
    type_id: u8,
    stream_id: u32,
    /// The last type 0/1/2 header carried an extended timestamp.
    extended: bool,
    /// The message being assembled, if one is in progress.
    partial: Option<Vec<u8>>,
    /// Stream offset of the first chunk of the message in progress.
    msg_offset: u64,
}

/// A complete RTMP message.
struct Message {
    csid: u32,
    type_id: u8,
    stream_id: u32,
    timestamp: u32,
    offset: u64,
    payload: Vec<u8>,
}

struct VideoInfo {
    init: Vec<u8>,
    length_size: u8,
    width: u32,
    height: u32,
}

struct AudioInfo {
    init: Vec<u8>,
    sample_rate: u32,
    channels: u32,
}

/// The server side of one RTMP connection that publishes a stream.
pub struct PublishSession {
    limits: RtmpLimits,
    phase: Phase,
    /// Set once the session failed or the publish was rejected.
    closed: Option<String>,
    /// Received bytes not yet consumed start at `buf[pos]`.
    buf: Vec<u8>,
    pos: usize,
    /// Stream offset of `buf[0]`.
    base: u64,
    in_chunk_size: u32,
    out_chunk_size: u32,
    streams: HashMap<u32, ChunkStream>,
    /// Bytes held in incomplete messages across all chunk streams.
    pending_bytes: usize,
    /// Acknowledgement window the peer asked for (0: none).
    ack_window: u32,
    /// Stream offset at which we last acknowledged.
    last_ack: u64,
    /// `Some((app, app_query))` once `connect` was received.
    app: Option<(String, String)>,
    next_stream_id: u32,
    publish: Publish,
    /// Stop consuming input until the next `feed` (set after PublishRequested).
    paused: bool,
    video: Option<VideoInfo>,
    audio: Option<AudioInfo>,
    emitted_tracks: Option<Vec<Track>>,
    /// Last 32-bit media timestamp and its unwrapped value.
    last_ts: Option<(u32, i64)>,
}

/// Result of trying to read one unit of input.
enum Step {
    Progress,
    NeedMore,
}

fn be24(b: &[u8]) -> u32 {
    u32::from_be_bytes([0, b[0], b[1], b[2]])
}

fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

fn msg_err(msg: &Message, what: impl Into<String>, reason: impl Into<String>) -> Error {
    Error::Message {
        message: what.into(),
        csid: msg.csid,
        offset: msg.offset,
        reason: reason.into(),
    }
}

/// Appends `payload` as one message (type-0 header, timestamp 0, type-3
/// continuations) chunked at `chunk_size`.
fn write_message(
    out: &mut Vec<u8>,
    chunk_size: u32,
    csid: u8,
    type_id: u8,
    stream_id: u32,
    payload: &[u8],
) {
    let len = u32::try_from(payload.len())
        .unwrap_or(u32::MAX)
        .min(0xFF_FFFF);
    let payload = &payload[..len as usize];
    out.push(csid & 0x3F);
    out.extend_from_slice(&[0, 0, 0]);
    out.extend_from_slice(&len.to_be_bytes()[1..]);
    out.push(type_id);
    out.extend_from_slice(&stream_id.to_le_bytes());
    let chunk = usize::try_from(chunk_size.max(1)).unwrap_or(usize::MAX);
    for (i, piece) in payload.chunks(chunk).enumerate() {
        if i > 0 {
            out.push(0xC0 | (csid & 0x3F));
        }
        out.extend_from_slice(piece);
    }
}

fn command_payload(values: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for v in values {
        amf0::encode(v, &mut out);
    }
    out
}

/// Splits "name?query" at the first '?'.
fn split_query(s: &str) -> (String, String) {
    match s.split_once('?') {
        Some((n, q)) => (n.to_owned(), q.to_owned()),
        None => (s.to_owned(), String::new()),
    }
}

/// Derives the video track parameters from an `avcC`.
fn video_info(avcc: &[u8]) -> std::result::Result<VideoInfo, String> {
    let cfg = brume_format::h264::parse_avcc(avcc).map_err(|e| e.to_string())?;
    let sps = cfg
        .sps
        .first()
        .ok_or_else(|| "avcC holds no SPS".to_owned())?;
    let sps = brume_format::h264::parse_sps(sps).map_err(|e| e.to_string())?;
    Ok(VideoInfo {
        init: avcc.to_vec(),
        length_size: cfg.length_size,
        width: sps.width,
        height: sps.height,
    })
}

/// Derives the audio track parameters from an AudioSpecificConfig.
fn audio_info(asc: &[u8]) -> std::result::Result<AudioInfo, String> {
    let cfg = brume_format::aac::parse_asc(asc).map_err(|e| e.to_string())?;
    Ok(AudioInfo {
        init: asc.to_vec(),
        sample_rate: cfg.sample_rate,
        channels: u32::from(cfg.channels),
    })
}

/// Rewrites one FLV AVC access unit (NAL units with `length_size`-byte prefixes) as
/// 4-byte length-prefixed NAL units without SPS/PPS.
fn convert_access_unit(data: &[u8], length_size: u8) -> std::result::Result<Vec<u8>, String> {
    let ls = usize::from(length_size);
    if !matches!(ls, 1 | 2 | 4) {
        return Err(format!("NAL length size {ls}"));
    }
    let mut out = Vec::with_capacity(data.len() + 16);
    let mut pos = 0;
    while pos < data.len() {
        let prefix = data
            .get(pos..pos + ls)
            .ok_or_else(|| format!("NAL length prefix truncated at access unit byte {pos}"))?;
        let len = prefix
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        pos += ls;
        let nal = pos
            .checked_add(len)
            .and_then(|end| data.get(pos..end))
            .ok_or_else(|| {
                format!(
                    "NAL unit of {len} bytes at access unit byte {pos} runs past the end ({} bytes)",
                    data.len()
                )
            })?;
        pos += len;
        let nal_type = brume_format::h264::nal_type(nal);
        if nal.is_empty()
            || nal_type == brume_format::h264::NAL_SPS
            || nal_type == brume_format::h264::NAL_PPS
        {
            continue;
        }
        // `len` came from at most 4 bytes, so it fits in u32.
        out.extend_from_slice(&u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes());
        out.extend_from_slice(nal);
    }
    Ok(out)
}

impl PublishSession {
    /// A session waiting for the client's C0/C1 handshake bytes.
    pub fn new(limits: RtmpLimits) -> Self {
        PublishSession {
            limits,
            phase: Phase::C0C1,
            closed: None,
            buf: Vec::new(),
            pos: 0,
            base: 0,
            in_chunk_size: DEFAULT_CHUNK_SIZE,
            out_chunk_size: DEFAULT_CHUNK_SIZE,
            streams: HashMap::new(),
            pending_bytes: 0,
            ack_window: 0,
            last_ack: 0,
            app: None,
            next_stream_id: 1,
            publish: Publish::Idle,
            paused: false,
            video: None,
            audio: None,
            emitted_tracks: None,
            last_ts: None,
        }
    }

    /// Feed received bytes; returns events in order. After an Err the session is dead.
    ///
    /// Incomplete input is kept and completed by later calls. Processing pauses after
    /// a [`RtmpEvent::PublishRequested`]; the next call (possibly `feed(&[])`)
    /// resumes it. Media arriving while the publish is not accepted is an error.
    pub fn feed(&mut self, data: &[u8]) -> Result<Vec<RtmpEvent>> {
        if let Some(reason) = &self.closed {
            return Err(Error::Closed {
                reason: reason.clone(),
            });
        }
        self.buf.extend_from_slice(data);
        self.paused = false;
        let mut events = Vec::new();
        let result = self.process(&mut events);
        // Drop consumed bytes.
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.base += self.pos as u64;
            self.pos = 0;
        }
        match result {
            Ok(()) => Ok(events),
            Err(e) => {
                self.closed = Some(format!("failed earlier: {e}"));
                self.buf = Vec::new();
                Err(e)
            }
        }
    }

    /// Answer a PublishRequested: accept (sends onStatus NetStream.Publish.Start).
    /// Returns the bytes to send.
    pub fn accept(&mut self) -> Result<Vec<u8>> {
        self.check_open("accept")?;
        let Publish::Pending { stream_id, name } = &self.publish else {
            return Err(Error::State {
                call: "accept",
                reason: "no publish request is pending".into(),
            });
        };
        let (stream_id, name) = (*stream_id, name.clone());
        let mut out = Vec::new();
        let mut begin = vec![0, 0];
        begin.extend_from_slice(&stream_id.to_be_bytes());
        write_message(
            &mut out,
            self.out_chunk_size,
            CSID_CONTROL,
            MSG_USER_CONTROL,
            0,
            &begin,
        );
        self.on_status(
            &mut out,
            stream_id,
            "status",
            "NetStream.Publish.Start",
            &format!("{name} is now published."),
        );
        self.publish = Publish::Publishing;
        Ok(out)
    }

    /// Answer a PublishRequested: reject (sends onStatus NetStream.Publish.BadName with
    /// level "error" and `reason` as description). Returns the bytes to send; the
    /// caller then closes the connection: the session takes no more input.
    pub fn reject(&mut self, reason: &str) -> Result<Vec<u8>> {
        self.check_open("reject")?;
        let Publish::Pending { stream_id, .. } = &self.publish else {
            return Err(Error::State {
                call: "reject",
                reason: "no publish request is pending".into(),
            });
        };
        let stream_id = *stream_id;
        let mut out = Vec::new();
        self.on_status(
            &mut out,
            stream_id,
            "error",
            "NetStream.Publish.BadName",
            reason,
        );
        self.publish = Publish::Idle;
        self.closed = Some("the publish was rejected".into());
        Ok(out)
    }

    fn check_open(&self, call: &'static str) -> Result<()> {
        match &self.closed {
            Some(reason) => Err(Error::State {
                call,
                reason: format!("session closed: {reason}"),
            }),
            None => Ok(()),
        }
    }

    fn on_status(&self, out: &mut Vec<u8>, stream_id: u32, level: &str, code: &str, desc: &str) {
        let payload = command_payload(&[
            amf0::string("onStatus"),
            Value::Number(0.0),
            Value::Null,
            amf0::object(&[
                ("level", amf0::string(level)),
                ("code", amf0::string(code)),
                ("description", amf0::string(desc)),
            ]),
        ]);
        write_message(
            out,
            self.out_chunk_size,
            CSID_COMMAND,
            MSG_COMMAND_AMF0,
            stream_id,
            &payload,
        );
    }

    /// Stream offset of the next unconsumed byte.
    fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    fn process(&mut self, events: &mut Vec<RtmpEvent>) -> Result<()> {
        loop {
            if self.paused {
                return Ok(());
            }
            let step = match self.phase {
                Phase::C0C1 => self.read_c0c1(events)?,
                Phase::C2 => {
                    if self.buf.len() - self.pos < HANDSHAKE_SIZE {
                        Step::NeedMore
                    } else {
                        // C2 echoes S1; nothing in it matters to a server.
                        self.pos += HANDSHAKE_SIZE;
                        self.phase = Phase::Chunks;
                        Step::Progress
                    }
                }
                Phase::Chunks => self.read_chunk(events)?,
            };
            if let Step::NeedMore = step {
                return Ok(());
            }
        }
    }

    fn read_c0c1(&mut self, events: &mut Vec<RtmpEvent>) -> Result<Step> {
        let avail = &self.buf[self.pos..];
        let Some(&version) = avail.first() else {
            return Ok(Step::NeedMore);
        };
        if version != RTMP_VERSION {
            return Err(Error::Handshake {
                offset: self.offset(),
                reason: format!(
                    "C0 asks for RTMP version {version} (only 3, unencrypted, is supported)"
                ),
            });
        }
        let Some(c1) = avail.get(1..1 + HANDSHAKE_SIZE) else {
            return Ok(Step::NeedMore);
        };
        let mut out = Vec::with_capacity(1 + 2 * HANDSHAKE_SIZE);
        out.push(RTMP_VERSION);
        // S1: time 0, zero "version" (simple handshake), pseudo-random filler derived
        // from C1 (no RNG or clock in a sans-IO library; the filler needs no secrecy).
        out.extend_from_slice(&[0; 8]);
        let mut x = c1.iter().fold(0x9E37_79B9_7F4A_7C15u64, |h, &b| {
            (h ^ u64::from(b)).wrapping_mul(0x100_0000_01B3)
        }) | 1;
        for _ in 0..(HANDSHAKE_SIZE - 8) {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            out.push((x >> 24) as u8);
        }
        // S2: echo of C1.
        out.extend_from_slice(c1);
        self.pos += 1 + HANDSHAKE_SIZE;
        self.phase = Phase::C2;
        events.push(RtmpEvent::Send(out));
        Ok(Step::Progress)
    }

    /// Reads one chunk if it is complete in the buffer; state changes only then.
    fn read_chunk(&mut self, events: &mut Vec<RtmpEvent>) -> Result<Step> {
        let offset = self.offset();
        let avail = &self.buf[self.pos..];
        let Some(&b0) = avail.first() else {
            return Ok(Step::NeedMore);
        };
        let fmt = b0 >> 6;
        let (csid, mut p) = match b0 & 0x3F {
            0 => match avail.get(1) {
                Some(&b1) => (64 + u32::from(b1), 2),
                None => return Ok(Step::NeedMore),
            },
            1 => match avail.get(1..3) {
                Some(b) => (64 + u32::from(b[0]) + 256 * u32::from(b[1]), 3),
                None => return Ok(Step::NeedMore),
            },
            c => (u32::from(c), 1),
        };
        let chunk_err = |reason: String| Error::Chunk {
            csid,
            offset,
            reason,
        };
        let prev = self.streams.get(&csid);
        if prev.is_none() && self.streams.len() >= MAX_CHUNK_STREAMS {
            return Err(Error::Limit {
                what: "number of chunk streams",
                value: self.streams.len() as u64 + 1,
                limit: MAX_CHUNK_STREAMS as u64,
                offset,
            });
        }
        let prev = prev.map(ChunkStream::header);
        let header_len = [11usize, 7, 3, 0][usize::from(fmt)];
        let Some(h) = avail.get(p..p + header_len) else {
            return Ok(Step::NeedMore);
        };
        p += header_len;
        let in_progress = prev.as_ref().is_some_and(|s| s.partial_len.is_some());
        if in_progress && fmt != 3 {
            return Err(chunk_err(format!(
                "type {fmt} chunk header while a message is incomplete"
            )));
        }
        // (timestamp field, length, type, stream id, extended)
        let (ts_field, length, type_id, stream_id, extended) = match (fmt, &prev) {
            (0, _) => (
                be24(&h[0..3]),
                be24(&h[3..6]),
                h[6],
                u32::from_le_bytes([h[7], h[8], h[9], h[10]]),
                be24(&h[0..3]) == 0xFF_FFFF,
            ),
            (1, p) => {
                let sid = p.as_ref().map_or(0, |s| s.stream_id);
                (
                    be24(&h[0..3]),
                    be24(&h[3..6]),
                    h[6],
                    sid,
                    be24(&h[0..3]) == 0xFF_FFFF,
                )
            }
            (2, p) => {
                let (len, ty, sid) = p
                    .as_ref()
                    .map_or((0, 0, 0), |s| (s.length, s.type_id, s.stream_id));
                (be24(&h[0..3]), len, ty, sid, be24(&h[0..3]) == 0xFF_FFFF)
            }
            (_, Some(s)) => (s.delta, s.length, s.type_id, s.stream_id, s.extended),
            (_, None) => {
                return Err(chunk_err(
                    "type 3 chunk on a chunk stream without a previous header".into(),
                ))
            }
        };
        let ts_value = if extended {
            let Some(e) = avail.get(p..p + 4) else {
                return Ok(Step::NeedMore);
            };
            p += 4;
            be32(e)
        } else {
            ts_field
        };
        let length_usize = usize::try_from(length).unwrap_or(usize::MAX);
        if !in_progress && length_usize > self.limits.max_message_size {
            return Err(Error::MessageTooLarge {
                csid,
                offset,
                size: length_usize,
                limit: self.limits.max_message_size,
            });
        }
        let have = prev.as_ref().and_then(|s| s.partial_len).unwrap_or(0);
        let remaining = length_usize.saturating_sub(have);
        let in_chunk = usize::try_from(self.in_chunk_size).unwrap_or(usize::MAX);
        let take = remaining.min(in_chunk);
        if avail.len() - p < take {
            return Ok(Step::NeedMore);
        }
        let completes = take == remaining;
        if !completes {
            let cap = self.limits.max_message_size.saturating_mul(2);
            let buffered = self.pending_bytes.saturating_add(take);
            if buffered > cap {
                return Err(Error::Limit {
                    what: "bytes buffered in incomplete messages",
                    value: buffered as u64,
                    limit: cap as u64,
                    offset,
                });
            }
        }
        // The chunk is complete: commit.
        let payload_range = self.pos + p..self.pos + p + take;
        self.pos += p + take;
        let st = self.streams.entry(csid).or_default();
        if !in_progress {
            st.timestamp = match fmt {
                0 => ts_value,
                _ => st.timestamp.wrapping_add(ts_value),
            };
            if fmt != 3 {
                st.delta = ts_value;
                st.extended = extended;
            }
            st.length = length;
            st.type_id = type_id;
            st.stream_id = stream_id;
            st.msg_offset = offset;
            st.partial = Some(Vec::new());
        }
        let mut partial = st.partial.take().unwrap_or_default();
        partial.extend_from_slice(&self.buf[payload_range]);
        if completes {
            self.pending_bytes = self.pending_bytes.saturating_sub(have);
            let msg = Message {
                csid,
                type_id: st.type_id,
                stream_id: st.stream_id,
                timestamp: st.timestamp,
                offset: st.msg_offset,
                payload: partial,
            };
            self.handle_message(msg, events)?;
        } else {
            self.pending_bytes += take;
            st.partial = Some(partial);
        }
        self.maybe_ack(events);
        Ok(Step::Progress)
    }

    fn maybe_ack(&mut self, events: &mut Vec<RtmpEvent>) {
        let received = self.offset();
        if self.ack_window > 0 && received - self.last_ack >= u64::from(self.ack_window) {
            self.last_ack = received;
            let mut out = Vec::new();
            // The sequence number wraps at 32 bits like the peer's counter.
            write_message(
                &mut out,
                self.out_chunk_size,
                CSID_CONTROL,
                MSG_ACK,
                0,
                &(received as u32).to_be_bytes(),
            );
            events.push(RtmpEvent::Send(out));
        }
    }

    fn handle_message(&mut self, msg: Message, events: &mut Vec<RtmpEvent>) -> Result<()> {
        match msg.type_id {
            MSG_SET_CHUNK_SIZE => {
                let v = self.control_u32(&msg, "SetChunkSize")? & 0x7FFF_FFFF;
                if v == 0 {
                    return Err(msg_err(&msg, "SetChunkSize", "chunk size 0"));
                }
                if v > self.limits.max_chunk_size {
                    return Err(Error::Limit {
                        what: "chunk size",
                        value: u64::from(v),
                        limit: u64::from(self.limits.max_chunk_size),
                        offset: msg.offset,
                    });
                }
                self.in_chunk_size = v;
            }
            MSG_ABORT => {
                let csid = self.control_u32(&msg, "Abort")?;
                if let Some(st) = self.streams.get_mut(&csid) {
                    if let Some(p) = st.partial.take() {
                        self.pending_bytes = self.pending_bytes.saturating_sub(p.len());
                    }
                }
            }
            MSG_ACK | MSG_SET_PEER_BANDWIDTH => {}
            MSG_WINDOW_ACK_SIZE => {
                self.ack_window = self.control_u32(&msg, "WindowAcknowledgementSize")?;
            }
            MSG_USER_CONTROL => {
                if msg.payload.len() < 2 {
                    return Err(msg_err(&msg, "UserControl", "shorter than 2 bytes"));
                }
                // PingRequest: answer with a PingResponse carrying the same timestamp.
                if msg.payload[..2] == [0, 6] {
                    let Some(ts) = msg.payload.get(2..6) else {
                        return Err(msg_err(&msg, "UserControl PingRequest", "truncated"));
                    };
                    let mut body = vec![0, 7];
                    body.extend_from_slice(ts);
                    let mut out = Vec::new();
                    write_message(
                        &mut out,
                        self.out_chunk_size,
                        CSID_CONTROL,
                        MSG_USER_CONTROL,
                        0,
                        &body,
                    );
                    events.push(RtmpEvent::Send(out));
                }
            }
            MSG_AUDIO | MSG_VIDEO => {
                self.handle_media(&msg, msg.type_id, msg.timestamp, &msg.payload, events)?;
            }
            MSG_AGGREGATE => self.handle_aggregate(&msg, events)?,
            MSG_COMMAND_AMF0 => {
                let values = amf0::decode_all(&msg.payload).map_err(|e| {
                    msg_err(
                        &msg,
                        "command",
                        format!("AMF0 at message byte {}: {}", e.offset, e.reason),
                    )
                })?;
                self.handle_command(&msg, &values, events)?;
            }
            MSG_COMMAND_AMF3 => {
                // An AMF3 command message starts with a format byte, then AMF0 values.
                let body = msg.payload.get(1..).unwrap_or_default();
                let values = amf0::decode_all(body).map_err(|e| {
                    msg_err(
                        &msg,
                        "command (AMF3)",
                        format!("AMF0 at message byte {}: {}", e.offset + 1, e.reason),
                    )
                })?;
                self.handle_command(&msg, &values, events)?;
            }
            // Data (@setDataFrame / onMetaData), shared objects, anything else: ignored.
            _ => {}
        }
        Ok(())
    }

    fn control_u32(&self, msg: &Message, what: &str) -> Result<u32> {
        msg.payload
            .get(..4)
            .map(be32)
            .ok_or_else(|| msg_err(msg, what, format!("{} bytes, need 4", msg.payload.len())))
    }

    fn send_command(&mut self, stream_id: u32, values: &[Value], events: &mut Vec<RtmpEvent>) {
        let mut out = Vec::new();
        write_message(
            &mut out,
            self.out_chunk_size,
            CSID_COMMAND,
            MSG_COMMAND_AMF0,
            stream_id,
            &command_payload(values),
        );
        events.push(RtmpEvent::Send(out));
    }

    fn handle_command(
        &mut self,
        msg: &Message,
        values: &[Value],
        events: &mut Vec<RtmpEvent>,
    ) -> Result<()> {
        let Some(name) = values.first().and_then(Value::as_str) else {
            return Err(msg_err(msg, "command", "the command name is not a string"));
        };
        let what = format!("command '{name}'");
        let txid = values.get(1).and_then(Value::as_number).unwrap_or(0.0);
        match name {
            "connect" => {
                if self.app.is_some() {
                    return Err(msg_err(msg, what, "second connect on one connection"));
                }
                let app = values
                    .get(2)
                    .and_then(|o| o.get("app"))
                    .and_then(Value::as_str)
                    .ok_or_else(|| msg_err(msg, &what, "no 'app' string in the command object"))?;
                let (app, query) = split_query(app);
                self.app = Some((app.trim_end_matches('/').to_owned(), query));
                let mut out = Vec::new();
                write_message(
                    &mut out,
                    self.out_chunk_size,
                    CSID_CONTROL,
                    MSG_WINDOW_ACK_SIZE,
                    0,
                    &SERVER_WINDOW.to_be_bytes(),
                );
                let mut bw = SERVER_WINDOW.to_be_bytes().to_vec();
                bw.push(2); // dynamic
                write_message(
                    &mut out,
                    self.out_chunk_size,
                    CSID_CONTROL,
                    MSG_SET_PEER_BANDWIDTH,
                    0,
                    &bw,
                );
                write_message(
                    &mut out,
                    self.out_chunk_size,
                    CSID_CONTROL,
                    MSG_SET_CHUNK_SIZE,
                    0,
                    &OUT_CHUNK_SIZE.to_be_bytes(),
                );
                self.out_chunk_size = OUT_CHUNK_SIZE;
                let result = command_payload(&[
                    amf0::string("_result"),
                    Value::Number(txid),
                    amf0::object(&[
                        ("fmsVer", amf0::string("FMS/3,0,1,123")),
                        ("capabilities", Value::Number(31.0)),
                    ]),
                    amf0::object(&[
                        ("level", amf0::string("status")),
                        ("code", amf0::string("NetConnection.Connect.Success")),
                        ("description", amf0::string("Connection succeeded.")),
                        ("objectEncoding", Value::Number(0.0)),
                    ]),
                ]);
                write_message(
                    &mut out,
                    self.out_chunk_size,
                    CSID_COMMAND,
                    MSG_COMMAND_AMF0,
                    0,
                    &result,
                );
                events.push(RtmpEvent::Send(out));
            }
            "releaseStream" | "FCPublish" => {
                self.send_command(
                    0,
                    &[
                        amf0::string("_result"),
                        Value::Number(txid),
                        Value::Null,
                        Value::Undefined,
                    ],
                    events,
                );
            }
            "createStream" => {
                let id = self.next_stream_id;
                self.next_stream_id = self.next_stream_id.saturating_add(1);
                self.send_command(
                    0,
                    &[
                        amf0::string("_result"),
                        Value::Number(txid),
                        Value::Null,
                        Value::Number(f64::from(id)),
                    ],
                    events,
                );
            }
            "publish" => {
                let Some((app, app_query)) = self.app.clone() else {
                    return Err(msg_err(msg, what, "publish before connect"));
                };
                if self.publish != Publish::Idle {
                    return Err(msg_err(msg, what, "a publish is already pending or active"));
                }
                let full = values
                    .get(3)
                    .and_then(Value::as_str)
                    .ok_or_else(|| msg_err(msg, &what, "no publishing name string"))?;
                let (name, mut query) = split_query(full);
                if query.is_empty() {
                    query = app_query;
                }
                self.publish = Publish::Pending {
                    stream_id: msg.stream_id,
                    name: name.clone(),
                };
                self.paused = true;
                events.push(RtmpEvent::PublishRequested { app, name, query });
            }
            "FCUnpublish" | "closeStream" | "deleteStream" if self.publish != Publish::Idle => {
                self.publish = Publish::Idle;
                self.video = None;
                self.audio = None;
                self.emitted_tracks = None;
                self.last_ts = None;
                events.push(RtmpEvent::Unpublished);
            }
            "play" | "play2" => {
                return Err(msg_err(msg, what, "this session only accepts publishers"));
            }
            // _checkbw, getStreamLength, _result/_error replies, ...: nothing to do.
            _ => {}
        }
        Ok(())
    }

    fn handle_aggregate(&mut self, msg: &Message, events: &mut Vec<RtmpEvent>) -> Result<()> {
        let data = &msg.payload;
        let mut pos = 0;
        let mut first_ts: Option<u32> = None;
        while pos < data.len() {
            let Some(h) = data.get(pos..pos + 11) else {
                return Err(msg_err(
                    msg,
                    "aggregate",
                    format!("sub-tag header truncated at message byte {pos}"),
                ));
            };
            let tag_type = h[0] & 0x1F;
            let size = usize::try_from(be24(&h[1..4])).unwrap_or(usize::MAX);
            let ts = u32::from_be_bytes([h[7], h[4], h[5], h[6]]);
            let body_start = pos + 11;
            let Some(body) = body_start
                .checked_add(size)
                .and_then(|end| data.get(body_start..end))
            else {
                return Err(msg_err(
                    msg,
                    "aggregate",
                    format!("sub-tag body of {size} bytes at message byte {body_start} runs past the end"),
                ));
            };
            let first = *first_ts.get_or_insert(ts);
            let timestamp = msg.timestamp.wrapping_add(ts.wrapping_sub(first));
            if tag_type == MSG_AUDIO || tag_type == MSG_VIDEO {
                self.handle_media(msg, tag_type, timestamp, body, events)?;
            }
            // Skip the body and the trailing 4-byte previous-tag-size (may be absent at
            // the very end).
            pos = (body_start + size + 4).min(data.len());
        }
        Ok(())
    }

    fn handle_media(
        &mut self,
        msg: &Message,
        type_id: u8,
        timestamp: u32,
        body: &[u8],
        events: &mut Vec<RtmpEvent>,
    ) -> Result<()> {
        let what = if type_id == MSG_VIDEO {
            "video"
        } else {
            "audio"
        };
        if body.is_empty() {
            // Some encoders send empty media messages as keep-alives.
            return Ok(());
        }
        match self.publish {
            Publish::Publishing => {}
            Publish::Pending { .. } => {
                return Err(msg_err(msg, what, "media before the publish was accepted"))
            }
            Publish::Idle => return Err(msg_err(msg, what, "media without an active publish")),
        }
        let media_err = |e: Error| msg_err(msg, what, e.to_string());
        if type_id == MSG_VIDEO {
            let tag = match flv::parse_video_tag(body) {
                Ok(t) => t,
                // Other codecs / Enhanced RTMP / command frames: not carried, ignored.
                Err(Error::Unsupported { .. }) => return Ok(()),
                Err(e) => return Err(media_err(e)),
            };
            match tag.packet {
                AvcPacket::SequenceHeader(avcc) => {
                    let info = video_info(avcc)
                        .map_err(|e| msg_err(msg, what, format!("AVC sequence header: {e}")))?;
                    self.video = Some(info);
                    self.tracks_changed(events);
                }
                AvcPacket::Nalus {
                    composition_time_ms,
                    data,
                } => {
                    let Some(info) = &self.video else {
                        // No sequence header yet: undecodable, dropped.
                        return Ok(());
                    };
                    let data = convert_access_unit(data, info.length_size)
                        .map_err(|e| msg_err(msg, what, e))?;
                    if data.is_empty() {
                        return Ok(());
                    }
                    let cts = composition_time_ms.checked_mul(1000).ok_or_else(|| {
                        msg_err(
                            msg,
                            what,
                            format!("composition time {composition_time_ms} ms out of range"),
                        )
                    })?;
                    let dts = self.unwrap_ts(timestamp).saturating_mul(1000);
                    self.ensure_tracks(events);
                    events.push(RtmpEvent::Frame(Frame {
                        track: VIDEO_TRACK,
                        dts,
                        cts,
                        key: tag.is_keyframe(),
                        data,
                    }));
                }
                AvcPacket::EndOfSequence => {}
            }
        } else {
            let tag = match flv::parse_audio_tag(body) {
                Ok(t) => t,
                Err(Error::Unsupported { .. }) => return Ok(()),
                Err(e) => return Err(media_err(e)),
            };
            match tag.packet {
                AacPacket::SequenceHeader(asc) => {
                    let info = audio_info(asc)
                        .map_err(|e| msg_err(msg, what, format!("AAC sequence header: {e}")))?;
                    self.audio = Some(info);
                    self.tracks_changed(events);
                }
                AacPacket::Raw(data) => {
                    if self.audio.is_none() || data.is_empty() {
                        return Ok(());
                    }
                    let dts = self.unwrap_ts(timestamp).saturating_mul(1000);
                    self.ensure_tracks(events);
                    events.push(RtmpEvent::Frame(Frame {
                        track: AUDIO_TRACK,
                        dts,
                        cts: 0,
                        key: true,
                        data: data.to_vec(),
                    }));
                }
            }
        }
        Ok(())
    }

    /// Unwraps a 32-bit millisecond timestamp into a continuous i64 (steps are taken
    /// as signed 32-bit differences, so small backward steps stay backward).
    fn unwrap_ts(&mut self, ts: u32) -> i64 {
        let value = match self.last_ts {
            None => i64::from(ts),
            Some((last, value)) => value.saturating_add(i64::from(ts.wrapping_sub(last) as i32)),
        };
        self.last_ts = Some((ts, value));
        value
    }

    fn current_tracks(&self) -> Vec<Track> {
        let mut tracks = Vec::new();
        if let Some(v) = &self.video {
            tracks.push(Track::video(
                VIDEO_TRACK,
                Codec::H264,
                v.init.clone(),
                v.width,
                v.height,
            ));
        }
        if let Some(a) = &self.audio {
            tracks.push(Track::audio(
                AUDIO_TRACK,
                Codec::Aac,
                a.init.clone(),
                a.sample_rate,
                a.channels,
            ));
        }
        tracks
    }

    /// After a sequence header: announce the tracks if they were announced before
    /// and changed, or if both tracks are now known.
    fn tracks_changed(&mut self, events: &mut Vec<RtmpEvent>) {
        if self.emitted_tracks.is_some() || (self.video.is_some() && self.audio.is_some()) {
            self.ensure_tracks(events);
        }
    }

    /// Emits `Tracks` unless the current list was already emitted.
    fn ensure_tracks(&mut self, events: &mut Vec<RtmpEvent>) {
        let tracks = self.current_tracks();
        if self.emitted_tracks.as_ref() != Some(&tracks) {
            self.emitted_tracks = Some(tracks.clone());
            events.push(RtmpEvent::Tracks(tracks));
        }
    }
}

/// The header fields of a chunk stream, without the message buffer.
struct HeaderState {
    delta: u32,
    length: u32,
    type_id: u8,
    stream_id: u32,
    extended: bool,
    partial_len: Option<usize>,
}

impl ChunkStream {
    /// The header fields, without the message buffer.
    fn header(&self) -> HeaderState {
        HeaderState {
            delta: self.delta,
            length: self.length,
            type_id: self.type_id,
            stream_id: self.stream_id,
            extended: self.extended,
            partial_len: self.partial.as_ref().map(Vec::len),
        }
    }
}
