//! The RTMP chunk stream both ends of a connection share, sans-IO.
//!
//! [`ChunkReader`] buffers the bytes received from the peer and turns them into
//! complete [`Message`]s: basic headers with 1, 2 and 3-byte chunk stream ids, all four
//! message header types, extended timestamps (also on type-3 chunks, as the
//! specification and ffmpeg/librtmp do), per chunk stream state and reassembly, all
//! within [`RtmpLimits`]. It also handles the protocol control messages that belong to
//! the chunk stream (SetChunkSize, Abort, Acknowledgement, Window Acknowledgement Size,
//! Set Peer Bandwidth, User Control ping) and says when an acknowledgement is due.
//! [`ChunkWriter`] splits outgoing messages into chunks. [`handshake_block`] writes
//! C0 + C1 or S0 + S1 of the simple handshake; [`ChunkReader::handshake`] checks the
//! peer's.
//!
//! Errors carry byte offsets into the whole stream received from the peer, handshake
//! included.

use std::collections::HashMap;

use crate::amf0::{self, Value};
use crate::error::{Error, Result};

/// Size of C1/C2 and S1/S2 in the simple handshake.
pub(crate) const HANDSHAKE_SIZE: usize = 1536;
/// The RTMP version of C0/S0 (unencrypted).
const RTMP_VERSION: u8 = 3;
/// The chunk size every RTMP peer starts with.
const DEFAULT_CHUNK_SIZE: u32 = 128;
/// Largest message the chunk header's 24-bit length field can describe.
pub(crate) const MAX_OUT_MESSAGE: usize = 0xFF_FFFF;
/// Most chunk streams a peer may use at once (ffmpeg and OBS use fewer than 10).
const MAX_CHUNK_STREAMS: usize = 64;

/// Chunk stream id of protocol control and User Control messages.
pub(crate) const CSID_CONTROL: u8 = 2;
/// Chunk stream id of connection-level commands.
pub(crate) const CSID_COMMAND: u8 = 3;

// Message type ids.
pub(crate) const MSG_SET_CHUNK_SIZE: u8 = 1;
pub(crate) const MSG_ABORT: u8 = 2;
pub(crate) const MSG_ACK: u8 = 3;
pub(crate) const MSG_USER_CONTROL: u8 = 4;
pub(crate) const MSG_WINDOW_ACK_SIZE: u8 = 5;
pub(crate) const MSG_SET_PEER_BANDWIDTH: u8 = 6;
pub(crate) const MSG_AUDIO: u8 = 8;
pub(crate) const MSG_VIDEO: u8 = 9;
pub(crate) const MSG_COMMAND_AMF3: u8 = 17;
pub(crate) const MSG_DATA_AMF0: u8 = 18;
pub(crate) const MSG_COMMAND_AMF0: u8 = 20;
pub(crate) const MSG_AGGREGATE: u8 = 22;

const USER_CONTROL_PING_REQUEST: u16 = 6;
const USER_CONTROL_PING_RESPONSE: u16 = 7;

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

pub(crate) fn be24(b: &[u8]) -> u32 {
    u32::from_be_bytes([0, b[0], b[1], b[2]])
}

pub(crate) fn be32(b: &[u8]) -> u32 {
    u32::from_be_bytes([b[0], b[1], b[2], b[3]])
}

/// Appends C0 + C1 or S0 + S1: the version byte, time 0, a zero "version" (the
/// simple handshake), then filler derived from `seed` and `bytes`. The filler needs
/// no secrecy; deriving it keeps the crate free of clocks and random sources.
pub(crate) fn handshake_block(out: &mut Vec<u8>, seed: u64, bytes: &[u8]) {
    out.push(RTMP_VERSION);
    out.extend_from_slice(&[0; 8]);
    let mut x = bytes.iter().fold(seed, |h, &b| {
        (h ^ u64::from(b)).wrapping_mul(0x100_0000_01B3)
    }) | 1;
    for _ in 0..(HANDSHAKE_SIZE - 8) {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        out.push((x >> 24) as u8);
    }
}

/// A complete RTMP message from the peer.
pub(crate) struct Message {
    pub(crate) csid: u32,
    pub(crate) type_id: u8,
    pub(crate) stream_id: u32,
    pub(crate) timestamp: u32,
    /// Stream offset of the message's first chunk.
    pub(crate) offset: u64,
    pub(crate) payload: Vec<u8>,
}

/// An [`Error::Message`] about `msg`.
pub(crate) fn msg_err(msg: &Message, what: impl Into<String>, reason: impl Into<String>) -> Error {
    Error::Message {
        message: what.into(),
        csid: msg.csid,
        offset: msg.offset,
        reason: reason.into(),
    }
}

fn control_u32(msg: &Message, what: &str) -> Result<u32> {
    msg.payload
        .get(..4)
        .map(be32)
        .ok_or_else(|| msg_err(msg, what, format!("{} bytes, need 4", msg.payload.len())))
}

/// A command message from the peer, decoded.
pub(crate) struct Command {
    /// The command name, the first value.
    pub(crate) name: String,
    /// All values, the name first.
    pub(crate) values: Vec<Value>,
    pub(crate) msg: Message,
}

impl Command {
    /// Decodes a command message: AMF0, or AMF3 whose values are AMF0 after a format
    /// byte. The first value, the command name, must be a string.
    fn decode(msg: Message) -> Result<Command> {
        let (what, skip) = if msg.type_id == MSG_COMMAND_AMF3 {
            ("command (AMF3)", 1)
        } else {
            ("command", 0)
        };
        let body = msg.payload.get(skip..).unwrap_or_default();
        let values = amf0::decode_all(body).map_err(|e| {
            msg_err(
                &msg,
                what,
                format!("AMF0 at message byte {}: {}", e.offset + skip, e.reason),
            )
        })?;
        let Some(name) = values.first().and_then(Value::as_str) else {
            return Err(msg_err(&msg, "command", "the command name is not a string"));
        };
        Ok(Command {
            name: name.to_owned(),
            values,
            msg,
        })
    }
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

/// What [`ChunkReader::read_chunk`] found.
enum Chunk {
    /// No complete chunk is buffered.
    NeedMore,
    /// A chunk was consumed; its message is not complete yet.
    Partial,
    /// A chunk was consumed and completed this message.
    Message(Message),
}

/// What [`ChunkReader::read`] found.
pub(crate) enum Input {
    /// No complete chunk is buffered.
    NeedMore,
    /// A chunk was consumed: its message is not complete yet, or it completed a
    /// protocol control message that needs no answer.
    Consumed,
    /// A Ping Request: send this User Control body (the Ping Response) back.
    PingResponse(Vec<u8>),
    /// A command message.
    Command(Command),
    /// Any other complete message (media, data, shared objects, ...).
    Message(Message),
}

/// Reassembles the peer's chunk stream into messages, within [`RtmpLimits`].
pub(crate) struct ChunkReader {
    limits: RtmpLimits,
    /// Received bytes not yet consumed start at `buf[pos]`.
    buf: Vec<u8>,
    pos: usize,
    /// Stream offset of `buf[0]`.
    base: u64,
    /// The peer's chunk size.
    chunk_size: u32,
    streams: HashMap<u32, ChunkStream>,
    /// Bytes held in incomplete messages across all chunk streams.
    pending_bytes: usize,
    /// Acknowledgement window the peer asked for (0: none).
    ack_window: u32,
    /// Stream offset at which we last acknowledged.
    last_ack: u64,
    /// Set once the connection failed or was closed: it takes no more input.
    closed: Option<String>,
}

impl ChunkReader {
    /// A reader at the start of the peer's stream (its C0), at the default chunk size.
    pub(crate) fn new(limits: RtmpLimits) -> ChunkReader {
        ChunkReader {
            limits,
            buf: Vec::new(),
            pos: 0,
            base: 0,
            chunk_size: DEFAULT_CHUNK_SIZE,
            streams: HashMap::new(),
            pending_bytes: 0,
            ack_window: 0,
            last_ack: 0,
            closed: None,
        }
    }

    /// Replaces the limits for the chunks still to come.
    pub(crate) fn set_limits(&mut self, limits: RtmpLimits) {
        self.limits = limits;
    }

    /// Why the connection takes no more input, once it does not.
    pub(crate) fn closed(&self) -> Option<&str> {
        self.closed.as_deref()
    }

    /// Takes no more input from now on, for `reason`.
    pub(crate) fn close(&mut self, reason: String) {
        self.closed = Some(reason);
    }

    /// An [`Error::Closed`] once the connection takes no more input.
    pub(crate) fn check_open(&self) -> Result<()> {
        match &self.closed {
            Some(reason) => Err(Error::Closed {
                reason: reason.clone(),
            }),
            None => Ok(()),
        }
    }

    /// Appends received bytes, unless the connection takes no more input.
    pub(crate) fn receive(&mut self, data: &[u8]) -> Result<()> {
        self.check_open()?;
        self.buf.extend_from_slice(data);
        Ok(())
    }

    /// The received bytes not yet consumed.
    pub(crate) fn available(&self) -> &[u8] {
        &self.buf[self.pos..]
    }

    /// The `len` bytes after the peer's version byte (C0 or S0) once they are all
    /// buffered. A version other than 3 is an error; `peer_says` introduces it in the
    /// error's reason (e.g. "C0 asks for").
    pub(crate) fn handshake(&self, peer_says: &str, len: usize) -> Result<Option<&[u8]>> {
        let avail = self.available();
        let Some(&version) = avail.first() else {
            return Ok(None);
        };
        if version != RTMP_VERSION {
            return Err(Error::Handshake {
                offset: self.offset(),
                reason: format!(
                    "{peer_says} RTMP version {version} (only 3, unencrypted, is supported)"
                ),
            });
        }
        Ok(avail.get(1..1 + len))
    }

    /// Consumes `n` available bytes (the handshake).
    pub(crate) fn consume(&mut self, n: usize) {
        self.pos += n;
    }

    /// Stream offset of the next unconsumed byte.
    pub(crate) fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    /// After processing input: drops the consumed bytes and passes `events` on. A
    /// failure closes the connection and drops everything buffered.
    pub(crate) fn finish<T>(&mut self, result: Result<()>, events: T) -> Result<T> {
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

    /// Reads one chunk if it is complete in the buffer (state changes only then) and
    /// handles the message it completes if that is a protocol control message:
    /// SetChunkSize (within [`RtmpLimits::max_chunk_size`]), Abort, Window
    /// Acknowledgement Size and User Control (a Ping Request asks for a response);
    /// Acknowledgement and Set Peer Bandwidth need nothing. Commands are decoded.
    pub(crate) fn read(&mut self) -> Result<Input> {
        let msg = match self.read_chunk()? {
            Chunk::NeedMore => return Ok(Input::NeedMore),
            Chunk::Partial => return Ok(Input::Consumed),
            Chunk::Message(msg) => msg,
        };
        match msg.type_id {
            MSG_SET_CHUNK_SIZE => {
                let v = control_u32(&msg, "SetChunkSize")? & 0x7FFF_FFFF;
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
                self.chunk_size = v;
            }
            MSG_ABORT => {
                let csid = control_u32(&msg, "Abort")?;
                if let Some(st) = self.streams.get_mut(&csid) {
                    if let Some(p) = st.partial.take() {
                        self.pending_bytes = self.pending_bytes.saturating_sub(p.len());
                    }
                }
            }
            MSG_ACK | MSG_SET_PEER_BANDWIDTH => {}
            MSG_WINDOW_ACK_SIZE => {
                self.ack_window = control_u32(&msg, "WindowAcknowledgementSize")?;
            }
            MSG_USER_CONTROL => {
                let Some(event) = msg.payload.get(..2) else {
                    return Err(msg_err(&msg, "UserControl", "shorter than 2 bytes"));
                };
                if u16::from_be_bytes([event[0], event[1]]) == USER_CONTROL_PING_REQUEST {
                    let Some(ts) = msg.payload.get(2..6) else {
                        return Err(msg_err(&msg, "UserControl PingRequest", "truncated"));
                    };
                    let mut body = USER_CONTROL_PING_RESPONSE.to_be_bytes().to_vec();
                    body.extend_from_slice(ts);
                    return Ok(Input::PingResponse(body));
                }
                // Stream Begin, Stream EOF, ...: nothing to do.
            }
            MSG_COMMAND_AMF0 | MSG_COMMAND_AMF3 => {
                return Ok(Input::Command(Command::decode(msg)?));
            }
            _ => return Ok(Input::Message(msg)),
        }
        Ok(Input::Consumed)
    }

    /// Reads one chunk if it is complete in the buffer; state changes only then.
    fn read_chunk(&mut self) -> Result<Chunk> {
        let offset = self.offset();
        let avail = &self.buf[self.pos..];
        let Some(&b0) = avail.first() else {
            return Ok(Chunk::NeedMore);
        };
        let fmt = b0 >> 6;
        let (csid, mut p) = match b0 & 0x3F {
            0 => match avail.get(1) {
                Some(&b1) => (64 + u32::from(b1), 2),
                None => return Ok(Chunk::NeedMore),
            },
            1 => match avail.get(1..3) {
                Some(b) => (64 + u32::from(b[0]) + 256 * u32::from(b[1]), 3),
                None => return Ok(Chunk::NeedMore),
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
        let header_len = [11usize, 7, 3, 0][usize::from(fmt)];
        let Some(h) = avail.get(p..p + header_len) else {
            return Ok(Chunk::NeedMore);
        };
        p += header_len;
        let have = prev.and_then(|s| s.partial.as_ref().map(Vec::len));
        if have.is_some() && fmt != 3 {
            return Err(chunk_err(format!(
                "type {fmt} chunk header while a message is incomplete"
            )));
        }
        // (timestamp field, length, type, stream id, extended)
        let (ts_field, length, type_id, stream_id, extended) = match (fmt, prev) {
            (3, Some(s)) => (s.delta, s.length, s.type_id, s.stream_id, s.extended),
            (3, None) => {
                return Err(chunk_err(
                    "type 3 chunk on a chunk stream without a previous header".into(),
                ))
            }
            _ => {
                let ts_field = be24(&h[0..3]);
                let (length, type_id) = match fmt {
                    2 => prev.map_or((0, 0), |s| (s.length, s.type_id)),
                    _ => (be24(&h[3..6]), h[6]),
                };
                let stream_id = match fmt {
                    0 => u32::from_le_bytes([h[7], h[8], h[9], h[10]]),
                    _ => prev.map_or(0, |s| s.stream_id),
                };
                (ts_field, length, type_id, stream_id, ts_field == 0xFF_FFFF)
            }
        };
        let ts_value = if extended {
            let Some(e) = avail.get(p..p + 4) else {
                return Ok(Chunk::NeedMore);
            };
            p += 4;
            be32(e)
        } else {
            ts_field
        };
        let length_usize = usize::try_from(length).unwrap_or(usize::MAX);
        if have.is_none() && length_usize > self.limits.max_message_size {
            return Err(Error::MessageTooLarge {
                csid,
                offset,
                size: length_usize,
                limit: self.limits.max_message_size,
            });
        }
        let have = have.unwrap_or(0);
        let remaining = length_usize.saturating_sub(have);
        let take = remaining.min(usize::try_from(self.chunk_size).unwrap_or(usize::MAX));
        if avail.len() - p < take {
            return Ok(Chunk::NeedMore);
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
        if st.partial.is_none() {
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
        }
        let mut partial = st.partial.take().unwrap_or_default();
        partial.extend_from_slice(&self.buf[payload_range]);
        if completes {
            self.pending_bytes = self.pending_bytes.saturating_sub(have);
            Ok(Chunk::Message(Message {
                csid,
                type_id: st.type_id,
                stream_id: st.stream_id,
                timestamp: st.timestamp,
                offset: st.msg_offset,
                payload: partial,
            }))
        } else {
            self.pending_bytes += take;
            st.partial = Some(partial);
            Ok(Chunk::Partial)
        }
    }

    /// The Acknowledgement payload to send once the bytes received since the last
    /// one reach the peer's window.
    pub(crate) fn ack_due(&mut self) -> Option<[u8; 4]> {
        let received = self.offset();
        if self.ack_window > 0 && received - self.last_ack >= u64::from(self.ack_window) {
            self.last_ack = received;
            // The sequence number wraps at 32 bits like the peer's counter.
            Some((received as u32).to_be_bytes())
        } else {
            None
        }
    }
}

/// The last header written on one of our chunk streams.
#[derive(Clone, Copy, Debug)]
struct OutHeader {
    timestamp: u32,
    stream_id: u32,
}

/// Splits outgoing messages into chunks at the output chunk size.
pub(crate) struct ChunkWriter {
    chunk_size: u32,
    /// The last header written per chunk stream id (for [`ChunkWriter::write`]).
    last: [Option<OutHeader>; 64],
}

impl ChunkWriter {
    /// A writer at the default chunk size (128).
    pub(crate) fn new() -> ChunkWriter {
        ChunkWriter {
            chunk_size: DEFAULT_CHUNK_SIZE,
            last: [None; 64],
        }
    }

    /// Appends a SetChunkSize message announcing `size` (through [`ChunkWriter::write`],
    /// at timestamp 0), and writes at that size from then on.
    pub(crate) fn announce_chunk_size(&mut self, out: &mut Vec<u8>, size: u32) {
        // Four bytes always fit a message.
        let _ = self.write(
            out,
            CSID_CONTROL,
            MSG_SET_CHUNK_SIZE,
            0,
            0,
            &size.to_be_bytes(),
        );
        self.chunk_size = size;
    }

    /// Appends `payload` as one message with a type-0 header at timestamp 0 and type-3
    /// continuations. A payload beyond the 24-bit length field is cut to fit.
    pub(crate) fn write_plain(
        &self,
        out: &mut Vec<u8>,
        csid: u8,
        type_id: u8,
        stream_id: u32,
        payload: &[u8],
    ) {
        let payload = &payload[..payload.len().min(MAX_OUT_MESSAGE)];
        self.write_chunks(out, 0, csid & 0x3F, 0, type_id, stream_id, payload);
    }

    /// Appends one message: a type-0 header for the first message on the chunk stream
    /// (or when the stream id changes or time goes backwards), else a type-1 header
    /// with the timestamp delta; type-3 continuations, each repeating an extended
    /// timestamp field. A payload beyond the 24-bit length field is an error.
    pub(crate) fn write(
        &mut self,
        out: &mut Vec<u8>,
        csid: u8,
        type_id: u8,
        stream_id: u32,
        timestamp: u32,
        payload: &[u8],
    ) -> Result<()> {
        if payload.len() > MAX_OUT_MESSAGE {
            return Err(Error::Limit {
                what: "outgoing message size in bytes",
                value: payload.len() as u64,
                limit: MAX_OUT_MESSAGE as u64,
                offset: 0,
            });
        }
        let csid = csid & 0x3F;
        let slot = &mut self.last[usize::from(csid)];
        let (fmt, ts_value) = match *slot {
            Some(prev) if prev.stream_id == stream_id && timestamp >= prev.timestamp => {
                (1u8, timestamp - prev.timestamp)
            }
            _ => (0u8, timestamp),
        };
        *slot = Some(OutHeader {
            timestamp,
            stream_id,
        });
        self.write_chunks(out, fmt, csid, ts_value, type_id, stream_id, payload);
        Ok(())
    }

    /// Appends a type `fmt` (0 or 1) header and the payload in chunks; `payload` fits
    /// the 24-bit length field and `csid` is below 64.
    #[allow(clippy::too_many_arguments)]
    fn write_chunks(
        &self,
        out: &mut Vec<u8>,
        fmt: u8,
        csid: u8,
        ts_value: u32,
        type_id: u8,
        stream_id: u32,
        payload: &[u8],
    ) {
        let extended = ts_value >= 0xFF_FFFF;
        out.reserve(payload.len() + 16 + payload.len() / 512);
        out.push((fmt << 6) | csid);
        out.extend_from_slice(&ts_value.min(0xFF_FFFF).to_be_bytes()[1..]);
        // Length fits in 24 bits (checked by the callers).
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
        out.push(type_id);
        if fmt == 0 {
            out.extend_from_slice(&stream_id.to_le_bytes());
        }
        if extended {
            out.extend_from_slice(&ts_value.to_be_bytes());
        }
        let chunk = usize::try_from(self.chunk_size.max(1)).unwrap_or(usize::MAX);
        for (i, piece) in payload.chunks(chunk).enumerate() {
            if i > 0 {
                out.push(0xC0 | csid);
                if extended {
                    out.extend_from_slice(&ts_value.to_be_bytes());
                }
            }
            out.extend_from_slice(piece);
        }
    }
}
