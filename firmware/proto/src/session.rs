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

use brume_format::{Codec, Frame, Track};

use crate::amf0::{self, Value};
use crate::chunk::{
    be24, handshake_block, msg_err, ChunkReader, ChunkWriter, Command, Input, Message, RtmpLimits,
    CSID_COMMAND, CSID_CONTROL, HANDSHAKE_SIZE, MSG_ACK, MSG_AGGREGATE, MSG_AUDIO,
    MSG_COMMAND_AMF0, MSG_SET_PEER_BANDWIDTH, MSG_USER_CONTROL, MSG_VIDEO, MSG_WINDOW_ACK_SIZE,
};
use crate::error::{Error, Result};
use crate::flv::{self, AacPacket, AvcPacket};

/// Track id of the (single) video track.
const VIDEO_TRACK: u32 = 1;
/// Track id of the (single) audio track.
const AUDIO_TRACK: u32 = 2;
/// The chunk size this server switches its own output to (announced at `connect`).
const OUT_CHUNK_SIZE: u32 = 4096;
/// The acknowledgement window announced to the peer, and its bandwidth limit.
const SERVER_WINDOW: u32 = 2_500_000;

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
    phase: Phase,
    /// The publisher's chunk stream; closed once the session failed or the publish
    /// was rejected.
    reader: ChunkReader,
    writer: ChunkWriter,
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
            phase: Phase::C0C1,
            reader: ChunkReader::new(limits),
            writer: ChunkWriter::new(),
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
        self.reader.receive(data)?;
        self.paused = false;
        let mut events = Vec::new();
        let result = self.process(&mut events);
        self.reader.finish(result, events)
    }

    /// Replaces the limits on what the peer may send from now on (a server keeps an
    /// unauthenticated peer to small messages and relaxes them once the publish is
    /// accepted). A message already being received keeps the size it announced.
    pub fn set_limits(&mut self, limits: RtmpLimits) {
        self.reader.set_limits(limits);
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
        self.writer
            .write_plain(&mut out, CSID_CONTROL, MSG_USER_CONTROL, 0, &begin);
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
        self.reader.close("the publish was rejected".into());
        Ok(out)
    }

    fn check_open(&self, call: &'static str) -> Result<()> {
        match self.reader.closed() {
            Some(reason) => Err(Error::State {
                call,
                reason: format!("session closed: {reason}"),
            }),
            None => Ok(()),
        }
    }

    fn on_status(&self, out: &mut Vec<u8>, stream_id: u32, level: &str, code: &str, desc: &str) {
        let payload = amf0::encode_all(&[
            amf0::string("onStatus"),
            Value::Number(0.0),
            Value::Null,
            amf0::object(&[
                ("level", amf0::string(level)),
                ("code", amf0::string(code)),
                ("description", amf0::string(desc)),
            ]),
        ]);
        self.writer
            .write_plain(out, CSID_COMMAND, MSG_COMMAND_AMF0, stream_id, &payload);
    }

    fn process(&mut self, events: &mut Vec<RtmpEvent>) -> Result<()> {
        loop {
            if self.paused {
                return Ok(());
            }
            let step = match self.phase {
                Phase::C0C1 => self.read_c0c1(events)?,
                Phase::C2 => {
                    if self.reader.available().len() < HANDSHAKE_SIZE {
                        Step::NeedMore
                    } else {
                        // C2 echoes S1; nothing in it matters to a server.
                        self.reader.consume(HANDSHAKE_SIZE);
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
        let Some(c1) = self.reader.handshake("C0 asks for", HANDSHAKE_SIZE)? else {
            return Ok(Step::NeedMore);
        };
        let mut out = Vec::with_capacity(1 + 2 * HANDSHAKE_SIZE);
        // S0 + S1, its filler derived from C1.
        handshake_block(&mut out, 0x9E37_79B9_7F4A_7C15, c1);
        // S2: echo of C1.
        out.extend_from_slice(c1);
        self.reader.consume(1 + HANDSHAKE_SIZE);
        self.phase = Phase::C2;
        events.push(RtmpEvent::Send(out));
        Ok(Step::Progress)
    }

    /// Reads one chunk and handles the message it completes; acknowledges when due.
    fn read_chunk(&mut self, events: &mut Vec<RtmpEvent>) -> Result<Step> {
        match self.reader.read()? {
            Input::NeedMore => return Ok(Step::NeedMore),
            Input::Consumed => {}
            Input::PingResponse(body) => self.send_control(MSG_USER_CONTROL, &body, events),
            Input::Command(cmd) => self.handle_command(&cmd, events)?,
            Input::Message(msg) => match msg.type_id {
                MSG_AUDIO | MSG_VIDEO => {
                    self.handle_media(&msg, msg.type_id, msg.timestamp, &msg.payload, events)?;
                }
                MSG_AGGREGATE => self.handle_aggregate(&msg, events)?,
                // Data (@setDataFrame / onMetaData), shared objects, anything else:
                // ignored.
                _ => {}
            },
        }
        if let Some(sequence) = self.reader.ack_due() {
            self.send_control(MSG_ACK, &sequence, events);
        }
        Ok(Step::Progress)
    }

    /// Sends one protocol control or User Control message.
    fn send_control(&mut self, type_id: u8, payload: &[u8], events: &mut Vec<RtmpEvent>) {
        let mut out = Vec::new();
        self.writer
            .write_plain(&mut out, CSID_CONTROL, type_id, 0, payload);
        events.push(RtmpEvent::Send(out));
    }

    fn send_command(&mut self, stream_id: u32, values: &[Value], events: &mut Vec<RtmpEvent>) {
        let mut out = Vec::new();
        self.writer.write_plain(
            &mut out,
            CSID_COMMAND,
            MSG_COMMAND_AMF0,
            stream_id,
            &amf0::encode_all(values),
        );
        events.push(RtmpEvent::Send(out));
    }

    fn handle_command(&mut self, cmd: &Command, events: &mut Vec<RtmpEvent>) -> Result<()> {
        let (msg, name, values) = (&cmd.msg, cmd.name.as_str(), cmd.values.as_slice());
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
                self.writer.write_plain(
                    &mut out,
                    CSID_CONTROL,
                    MSG_WINDOW_ACK_SIZE,
                    0,
                    &SERVER_WINDOW.to_be_bytes(),
                );
                let mut bw = SERVER_WINDOW.to_be_bytes().to_vec();
                bw.push(2); // dynamic
                self.writer
                    .write_plain(&mut out, CSID_CONTROL, MSG_SET_PEER_BANDWIDTH, 0, &bw);
                self.writer.announce_chunk_size(&mut out, OUT_CHUNK_SIZE);
                let result = amf0::encode_all(&[
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
                self.writer
                    .write_plain(&mut out, CSID_COMMAND, MSG_COMMAND_AMF0, 0, &result);
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
