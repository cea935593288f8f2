//! The client side of an RTMP publishing connection ("push"), sans-IO.
//!
//! [`PushClient`] publishes one live stream to an RTMP server (a streaming platform,
//! another media server, `ffmpeg -listen`). The caller owns the socket: it writes what
//! [`PushClient::take_output`] returns and hands what it reads to
//! [`PushClient::receive`], which reports [`PushEvent`]s. The client owns no socket,
//! clock or thread.
//!
//! Sequence: the simple (version 3, no digest) handshake; SetChunkSize 4096; `connect`;
//! on its result `releaseStream`, `FCPublish` and `createStream`; on the stream id
//! `publish(name, "live")`; `onStatus NetStream.Publish.Start` gives
//! [`PushEvent::Publishing`]. Then [`PushClient::send_tracks`] sends
//! `@setDataFrame onMetaData` and the AVC/AAC sequence headers, and
//! [`PushClient::send_frame`] one FLV video or audio message per frame.
//!
//! From the server it handles SetChunkSize, Abort, Window Acknowledgement Size (it
//! acknowledges when the window is reached), Set Peer Bandwidth, User Control (Ping
//! Request gets a Ping Response), `_result`, `_error`, `onStatus` and `close`; other
//! commands (`onBWDone`, `onFCPublish`, ...) and data messages are ignored. Incoming
//! messages are bounded by [`RtmpLimits`].
//!
//! Errors never contain the URL or the stream name: a stream name is usually a
//! publishing key.

use brume_format::{Codec, Frame, Track};

use crate::amf0::{self, Value};
use crate::chunk::{
    handshake_block, msg_err, ChunkReader, ChunkWriter, Command, Input, RtmpLimits, CSID_COMMAND,
    CSID_CONTROL, HANDSHAKE_SIZE, MAX_OUT_MESSAGE, MSG_ACK, MSG_AUDIO, MSG_COMMAND_AMF0,
    MSG_DATA_AMF0, MSG_USER_CONTROL, MSG_VIDEO,
};
use crate::error::{Error, Result};

const DEFAULT_PORT: u16 = 1935;
/// The chunk size the client switches its own output to, right after the handshake.
const OUT_CHUNK_SIZE: u32 = 4096;

/// Chunk stream ids of the client's media and stream commands (the layout FFmpeg uses,
/// plus one for data messages); control messages and connection commands go on
/// [`CSID_CONTROL`] and [`CSID_COMMAND`].
const CSID_AUDIO: u8 = 4;
const CSID_DATA: u8 = 5;
const CSID_VIDEO: u8 = 6;
const CSID_STREAM_COMMAND: u8 = 8;

/// FLV video codec id of AVC and sound format of AAC (as in `onMetaData`).
const FLV_CODEC_AVC: u8 = 7;
const FLV_SOUND_AAC: u8 = 10;

/// Limits for what a server sends a publishing client: commands and control messages
/// only, so far smaller messages than a publisher's media.
const CLIENT_LIMITS: RtmpLimits = RtmpLimits {
    max_message_size: 1 << 20,
    max_chunk_size: 16 << 20,
};

/// What a [`PushClient`] reports after consuming server bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PushEvent {
    /// The server accepted the publish (`onStatus NetStream.Publish.Start`): send the
    /// tracks, then frames.
    Publishing,
    /// The server refused or ended the publish (an `onStatus` of level "error", an
    /// `_error` reply, a `close` command), with its description (or status code). The
    /// client takes no more input or media; the caller closes the connection. The text
    /// is the server's and may repeat the stream name (often a key): log it with care.
    Rejected(String),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// C0 + C1 queued, waiting for S0 + S1 + S2.
    Handshake,
    /// `connect` sent.
    Connecting,
    /// `releaseStream`, `FCPublish`, `createStream` sent.
    CreatingStream,
    /// `publish` sent on the stream.
    PublishSent,
    /// The server accepted the publish.
    Publishing,
}

/// A command the client sent and may get a `_result` / `_error` for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Method {
    Connect,
    ReleaseStream,
    FcPublish,
    CreateStream,
    Publish,
}

impl Method {
    fn name(self) -> &'static str {
        match self {
            Method::Connect => "connect",
            Method::ReleaseStream => "releaseStream",
            Method::FcPublish => "FCPublish",
            Method::CreateStream => "createStream",
            Method::Publish => "publish",
        }
    }
}

/// The parts of a push URL.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Target {
    host: String,
    port: u16,
    app: String,
    /// The publishing name with its query, as sent in `publish`.
    stream: String,
    tc_url: String,
}

fn url_err(reason: impl Into<String>) -> Error {
    Error::Unsupported {
        what: "RTMP push URL",
        reason: reason.into(),
    }
}

const URL_FORM: &str = "expected rtmp://host[:port]/app/stream";

/// Parses `rtmp://host[:port]/app[/more]/stream[?query]`. Error texts never repeat
/// the URL (its stream name is usually a key).
fn parse_url(url: &str) -> Result<Target> {
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err(url_err(format!(
            "contains whitespace or control characters ({URL_FORM})"
        )));
    }
    let Some((scheme, rest)) = url.split_once("://") else {
        return Err(url_err(format!("not a URL ({URL_FORM})")));
    };
    match scheme.to_ascii_lowercase().as_str() {
        "rtmp" => {}
        "rtmps" => {
            return Err(url_err(
                "rtmps:// (RTMP over TLS) is not supported; use an rtmp:// URL",
            ))
        }
        s if s.len() <= 16 && s.chars().all(|c| c.is_ascii_alphanumeric()) => {
            return Err(url_err(format!(
                "scheme {s}:// is not supported (only rtmp://)"
            )))
        }
        _ => return Err(url_err(format!("not an rtmp:// URL ({URL_FORM})"))),
    }
    let auth_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let (authority, path) = rest.split_at(auth_end);
    if authority.contains('@') {
        return Err(url_err("credentials in the URL are not supported"));
    }
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let Some((addr, after)) = v6.split_once(']') else {
            return Err(url_err("unclosed '[' in the host"));
        };
        if addr.is_empty() {
            return Err(url_err(format!("no host ({URL_FORM})")));
        }
        let port = match after {
            "" => None,
            p => Some(
                p.strip_prefix(':')
                    .ok_or_else(|| url_err("unexpected text after the IPv6 address"))?,
            ),
        };
        (format!("[{addr}]"), port)
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h.to_owned(), Some(p)),
            None => (authority.to_owned(), None),
        }
    };
    if host.is_empty() {
        return Err(url_err(format!("no host ({URL_FORM})")));
    }
    let port = match port {
        None => DEFAULT_PORT,
        Some(p) => match p.parse::<u16>() {
            Ok(n) if n > 0 && p.chars().all(|c| c.is_ascii_digit()) => n,
            _ => return Err(url_err("the port is not a number from 1 to 65535")),
        },
    };
    let (path, query) = match path.split_once('?') {
        Some((p, q)) => (p, Some(q)),
        None => (path, None),
    };
    let path = path.strip_prefix('/').unwrap_or(path);
    let Some((app, name)) = path.rsplit_once('/') else {
        return Err(url_err(format!(
            "needs both an application and a stream name ({URL_FORM})"
        )));
    };
    if app.is_empty() {
        return Err(url_err(format!("no application ({URL_FORM})")));
    }
    if name.is_empty() {
        return Err(url_err(format!("no stream name ({URL_FORM})")));
    }
    let stream = match query {
        Some(q) => format!("{name}?{q}"),
        None => name.to_owned(),
    };
    let tc_url = format!("rtmp://{host}:{port}/{app}");
    Ok(Target {
        host,
        port,
        app: app.to_owned(),
        stream,
        tc_url,
    })
}

// ---- Outgoing media ----

/// The video track being sent.
#[derive(Clone, Debug, PartialEq, Eq)]
struct VideoOut {
    id: u32,
    /// The `avcC`, with its NAL length size set to 4 (the internal frame layout).
    avcc: Vec<u8>,
    width: u32,
    height: u32,
}

/// The audio track being sent.
#[derive(Clone, Debug, PartialEq, Eq)]
struct AudioOut {
    id: u32,
    asc: Vec<u8>,
    sample_rate: u32,
    channels: u32,
}

/// A non-negative millisecond time on FLV's 32-bit timeline (it wraps).
fn flv_time(ms: i64) -> u32 {
    (ms as u64 & 0xFFFF_FFFF) as u32
}

/// Rounds microseconds to the nearest millisecond.
fn us_to_ms(us: i64) -> i64 {
    us.saturating_add(500).div_euclid(1000)
}

/// The client side of one RTMP connection that publishes a stream.
pub struct PushClient {
    target: Target,
    phase: Phase,
    /// `unpublish` was called: no more media, input is still read.
    unpublished: bool,
    /// Bytes to send, not yet taken.
    out: Vec<u8>,
    writer: ChunkWriter,
    reader: ChunkReader,
    next_txid: u32,
    /// Commands awaiting a `_result` / `_error`, by transaction id.
    tracked: Vec<(u32, Method)>,
    /// The message stream id from `createStream`.
    stream_id: u32,
    video: Option<VideoOut>,
    audio: Option<AudioOut>,
    /// `send_tracks` was called successfully since publishing began.
    tracks_sent: bool,
    /// Video frames are skipped until a keyframe after (new) video sequence headers.
    wait_key: bool,
    /// Decode time (µs) of the first frame sent: FLV time 0.
    base_dts: Option<i64>,
    /// Last FLV timestamp (ms, before the 32-bit wrap) sent per media kind.
    last_video_ms: Option<i64>,
    last_audio_ms: Option<i64>,
}

impl PushClient {
    /// A client for `url`, `rtmp://host[:port]/app[/more]/streamname[?query]`, with the
    /// handshake (C0 + C1) queued in the output.
    ///
    /// The application is the path up to the last '/', the stream name is the last
    /// segment with the query (as OBS and FFmpeg split it); the port defaults to 1935;
    /// `tcUrl` is `rtmp://host:port/app`. Other schemes are an error (`rtmps://`, RTMP
    /// over TLS, is not supported), as are a missing host, application or stream name,
    /// a bad port and credentials in the URL. Error messages never repeat the URL.
    pub fn new(url: &str) -> Result<PushClient> {
        PushClient::with_limits(url, CLIENT_LIMITS)
    }

    /// Like [`PushClient::new`] with explicit limits on what the server may send
    /// (the default allows messages of up to 1 MiB: servers send only commands and
    /// control messages to a publisher).
    pub fn with_limits(url: &str, limits: RtmpLimits) -> Result<PushClient> {
        let target = parse_url(url)?;
        let mut out = Vec::with_capacity(1 + HANDSHAKE_SIZE);
        // C0 + C1, its filler derived from the URL.
        handshake_block(&mut out, 0xCBF2_9CE4_8422_2325, url.as_bytes());
        Ok(PushClient {
            target,
            phase: Phase::Handshake,
            unpublished: false,
            out,
            writer: ChunkWriter::new(),
            reader: ChunkReader::new(limits),
            next_txid: 1,
            tracked: Vec::new(),
            stream_id: 0,
            video: None,
            audio: None,
            tracks_sent: false,
            wait_key: true,
            base_dts: None,
            last_video_ms: None,
            last_audio_ms: None,
        })
    }

    /// The server's host name or address, as written in the URL (an IPv6 address keeps
    /// its brackets, so `format!("{host}:{port}")` is a valid socket address string).
    pub fn host(&self) -> &str {
        &self.target.host
    }

    /// The server's TCP port (1935 unless the URL names one).
    pub fn port(&self) -> u16 {
        self.target.port
    }

    /// The application name sent in `connect` (the URL path up to the last '/').
    pub fn app(&self) -> &str {
        &self.target.app
    }

    /// True once the server accepted the publish (after [`PushEvent::Publishing`]),
    /// until a rejection, a protocol error or [`PushClient::unpublish`].
    pub fn is_publishing(&self) -> bool {
        self.phase == Phase::Publishing && self.reader.closed().is_none() && !self.unpublished
    }

    /// Takes the bytes to write to the socket, in order: the handshake (C0 + C1) at
    /// first, then C2, commands, replies to the server and media.
    pub fn take_output(&mut self) -> Vec<u8> {
        std::mem::take(&mut self.out)
    }

    /// Bytes queued but not yet taken with [`PushClient::take_output`], so the caller
    /// can see a slow network and drop frames.
    pub fn pending(&self) -> usize {
        self.out.len()
    }

    /// Consumes bytes read from the socket; returns events in order. Replies (C2,
    /// commands, acknowledgements, ping responses) are queued in the output.
    ///
    /// Incomplete input is kept and completed by later calls. A protocol error is an
    /// `Err` (the caller closes the connection); after it, and after a
    /// [`PushEvent::Rejected`], the client takes no more input.
    pub fn receive(&mut self, data: &[u8]) -> Result<Vec<PushEvent>> {
        self.reader.receive(data)?;
        let mut events = Vec::new();
        let result = self.process(&mut events);
        self.reader.finish(result, events)
    }

    /// Sends the stream's tracks: `@setDataFrame onMetaData` and the sequence headers
    /// of the first H.264 track (its `avcC`) and the first AAC track (its
    /// AudioSpecificConfig). Other tracks are not sent, and their frames are ignored.
    ///
    /// Call after [`PushEvent::Publishing`], before the first frame, and again when
    /// the tracks change; a call with the tracks already sent does nothing. After new
    /// video sequence headers, video frames are sent from the next keyframe on.
    /// Errors: not publishing, no H.264 or AAC track, an `avcC` too short to be one.
    pub fn send_tracks(&mut self, tracks: &[Track]) -> Result<()> {
        self.check_publishing("send_tracks")?;
        let video = tracks.iter().find(|t| t.codec == Codec::H264);
        let audio = tracks.iter().find(|t| t.codec == Codec::Aac);
        if video.is_none() && audio.is_none() {
            return Err(Error::Unsupported {
                what: "push tracks",
                reason: "no H.264 or AAC track to send".into(),
            });
        }
        let video = match video {
            Some(t) => {
                if t.init.len() < 7 || t.init[0] != 1 {
                    return Err(Error::Flv {
                        what: "AVC sequence header",
                        offset: 0,
                        reason: format!(
                            "the H.264 track's init ({} bytes) is not an avcC",
                            t.init.len()
                        ),
                    });
                }
                let mut avcc = t.init.clone();
                // Frames always carry 4-byte NAL lengths: say so, whatever the source
                // of the record said.
                avcc[4] |= 0x03;
                Some(VideoOut {
                    id: t.id,
                    avcc,
                    width: t.width,
                    height: t.height,
                })
            }
            None => None,
        };
        let audio = match audio {
            Some(t) => {
                if t.init.is_empty() {
                    return Err(Error::Flv {
                        what: "AAC sequence header",
                        offset: 0,
                        reason: "the AAC track has no AudioSpecificConfig".into(),
                    });
                }
                Some(AudioOut {
                    id: t.id,
                    asc: t.init.clone(),
                    sample_rate: t.sample_rate,
                    channels: t.channels,
                })
            }
            None => None,
        };
        if self.tracks_sent && video == self.video && audio == self.audio {
            return Ok(());
        }
        // At the latest media time sent, so no chunk stream's time goes back.
        let ts = flv_time(self.last_video_ms.max(self.last_audio_ms).unwrap_or(0));
        let stream_id = self.stream_id;
        self.writer.write(
            &mut self.out,
            CSID_DATA,
            MSG_DATA_AMF0,
            stream_id,
            ts,
            &metadata(video.as_ref(), audio.as_ref()),
        )?;
        if let Some(v) = &video {
            let mut body = vec![0x10 | FLV_CODEC_AVC, 0, 0, 0, 0];
            body.extend_from_slice(&v.avcc);
            self.writer
                .write(&mut self.out, CSID_VIDEO, MSG_VIDEO, stream_id, ts, &body)?;
        }
        if let Some(a) = &audio {
            let mut body = vec![aac_tag_byte(), 0];
            body.extend_from_slice(&a.asc);
            self.writer
                .write(&mut self.out, CSID_AUDIO, MSG_AUDIO, stream_id, ts, &body)?;
        }
        if video != self.video {
            self.wait_key = true;
        }
        self.video = video;
        self.audio = audio;
        self.tracks_sent = true;
        Ok(())
    }

    /// Sends one frame as an FLV video (H.264) or audio (AAC) message. Frames of
    /// tracks not sent by [`PushClient::send_tracks`] are ignored, as are video frames
    /// before the first keyframe after the video sequence header.
    ///
    /// Timestamps are milliseconds from the first frame sent (rounded); a frame
    /// earlier than that, or earlier than the previous frame of its kind, is sent at
    /// the earliest time allowed, so each track's timeline never goes backwards. The
    /// 32-bit FLV time wraps after 49.7 days (extended timestamps from 4.66 hours on).
    /// For H.264 the composition time (pts - dts) goes in the tag.
    /// Errors: not publishing, tracks not sent, a frame larger than an RTMP message
    /// (16 MiB).
    pub fn send_frame(&mut self, frame: &Frame) -> Result<()> {
        self.check_publishing("send_frame")?;
        if !self.tracks_sent {
            return Err(Error::State {
                call: "send_frame",
                reason: "send_tracks was not called since publishing began".into(),
            });
        }
        let is_video = self.video.as_ref().is_some_and(|v| v.id == frame.track);
        let is_audio = !is_video && self.audio.as_ref().is_some_and(|a| a.id == frame.track);
        if !(is_video || is_audio) || frame.data.is_empty() {
            return Ok(());
        }
        let size = frame.data.len().saturating_add(5);
        if size > MAX_OUT_MESSAGE {
            return Err(Error::Limit {
                what: "frame size in bytes",
                value: size as u64,
                limit: MAX_OUT_MESSAGE as u64,
                offset: 0,
            });
        }
        if is_video && self.wait_key {
            if !frame.key {
                return Ok(());
            }
            self.wait_key = false;
        }
        let base = *self.base_dts.get_or_insert(frame.dts);
        let rel = frame.dts.saturating_sub(base);
        let last = if is_video {
            self.last_video_ms
        } else {
            self.last_audio_ms
        };
        let exact_ms = us_to_ms(rel);
        // pts - dts from the rounded times, so the presentation time stays the nearest
        // millisecond; it follows dts when that is held back. An i32 of microseconds
        // always fits FLV's signed 24 bits of milliseconds.
        let cts_ms = us_to_ms(rel.saturating_add(i64::from(frame.cts))).saturating_sub(exact_ms);
        let cts_ms = cts_ms.clamp(-0x80_0000, 0x7F_FFFF);
        let dts_ms = exact_ms.max(0).max(last.unwrap_or(0));
        let ts = flv_time(dts_ms);
        let stream_id = self.stream_id;
        if is_video {
            let mut body = Vec::with_capacity(size);
            body.push(if frame.key { 0x10 } else { 0x20 } | FLV_CODEC_AVC);
            body.push(1);
            body.extend_from_slice(&(cts_ms as i32).to_be_bytes()[1..]);
            body.extend_from_slice(&frame.data);
            self.writer
                .write(&mut self.out, CSID_VIDEO, MSG_VIDEO, stream_id, ts, &body)?;
            self.last_video_ms = Some(dts_ms);
        } else {
            let mut body = Vec::with_capacity(size);
            body.push(aac_tag_byte());
            body.push(1);
            body.extend_from_slice(&frame.data);
            self.writer
                .write(&mut self.out, CSID_AUDIO, MSG_AUDIO, stream_id, ts, &body)?;
            self.last_audio_ms = Some(dts_ms);
        }
        Ok(())
    }

    /// Ends the publish politely: queues `FCUnpublish` and `deleteStream`. The caller
    /// then writes the output and closes the connection. The client takes no more
    /// media but still reads what the server sends meanwhile. Does nothing unless the
    /// publish was accepted.
    pub fn unpublish(&mut self) {
        if !self.is_publishing() {
            return;
        }
        let name = self.target.stream.clone();
        let txid = self.txid();
        let fc = amf0::encode_all(&[
            amf0::string("FCUnpublish"),
            Value::Number(f64::from(txid)),
            Value::Null,
            amf0::string(&name),
        ]);
        let txid = self.txid();
        let delete = amf0::encode_all(&[
            amf0::string("deleteStream"),
            Value::Number(f64::from(txid)),
            Value::Null,
            Value::Number(f64::from(self.stream_id)),
        ]);
        // Commands are far below the message size limit.
        let _ = self
            .writer
            .write(&mut self.out, CSID_COMMAND, MSG_COMMAND_AMF0, 0, 0, &fc);
        let _ = self
            .writer
            .write(&mut self.out, CSID_COMMAND, MSG_COMMAND_AMF0, 0, 0, &delete);
        self.unpublished = true;
    }

    fn check_publishing(&self, call: &'static str) -> Result<()> {
        self.reader.check_open()?;
        if self.unpublished {
            return Err(Error::Closed {
                reason: "the stream was unpublished".into(),
            });
        }
        if self.phase != Phase::Publishing {
            return Err(Error::State {
                call,
                reason: "the server has not accepted the publish yet".into(),
            });
        }
        Ok(())
    }

    fn txid(&mut self) -> u32 {
        let id = self.next_txid;
        self.next_txid = self.next_txid.wrapping_add(1).max(1);
        id
    }

    fn send_command(&mut self, csid: u8, stream_id: u32, values: &[Value]) {
        // Commands are far below the message size limit.
        let _ = self.writer.write(
            &mut self.out,
            csid,
            MSG_COMMAND_AMF0,
            stream_id,
            0,
            &amf0::encode_all(values),
        );
    }

    /// Sends a tracked command `name(txid, null, args...)`.
    fn call(&mut self, method: Method, csid: u8, stream_id: u32, args: &[Value]) {
        let txid = self.txid();
        self.tracked.push((txid, method));
        let mut values = vec![
            amf0::string(method.name()),
            Value::Number(f64::from(txid)),
            Value::Null,
        ];
        values.extend_from_slice(args);
        self.send_command(csid, stream_id, &values);
    }

    fn process(&mut self, events: &mut Vec<PushEvent>) -> Result<()> {
        loop {
            if self.reader.closed().is_some() {
                return Ok(());
            }
            if self.phase == Phase::Handshake {
                if !self.read_handshake()? {
                    return Ok(());
                }
                continue;
            }
            match self.reader.read()? {
                Input::NeedMore => return Ok(()),
                Input::PingResponse(body) => self.send_control(MSG_USER_CONTROL, &body),
                Input::Command(cmd) => self.handle_command(&cmd, events)?,
                // Data, media, shared objects: nothing to do.
                Input::Consumed | Input::Message(_) => {}
            }
            if let Some(sequence) = self.reader.ack_due() {
                self.send_control(MSG_ACK, &sequence);
            }
        }
    }

    /// Queues one protocol control or User Control message.
    fn send_control(&mut self, type_id: u8, payload: &[u8]) {
        // Control messages are far below the message size limit.
        let _ = self
            .writer
            .write(&mut self.out, CSID_CONTROL, type_id, 0, 0, payload);
    }

    /// Consumes S0 + S1 + S2 once complete and answers: C2 (the echo of S1), then
    /// SetChunkSize and `connect`. Returns whether it made progress.
    fn read_handshake(&mut self) -> Result<bool> {
        let Some(s1s2) = self.reader.handshake("S0 announces", 2 * HANDSHAKE_SIZE)? else {
            return Ok(false);
        };
        // S2 should echo C1; servers differ and nothing depends on it, so it is not
        // checked.
        self.out.extend_from_slice(&s1s2[..HANDSHAKE_SIZE]);
        self.reader.consume(1 + 2 * HANDSHAKE_SIZE);
        self.writer
            .announce_chunk_size(&mut self.out, OUT_CHUNK_SIZE);
        let info = amf0::object(&[
            ("app", amf0::string(&self.target.app)),
            ("type", amf0::string("nonprivate")),
            ("flashVer", amf0::string("FMLE/3.0 (compatible; Brume)")),
            ("tcUrl", amf0::string(&self.target.tc_url)),
        ]);
        let txid = self.txid();
        self.tracked.push((txid, Method::Connect));
        self.send_command(
            CSID_COMMAND,
            0,
            &[
                amf0::string("connect"),
                Value::Number(f64::from(txid)),
                info,
            ],
        );
        self.phase = Phase::Connecting;
        Ok(true)
    }

    fn reject(&mut self, why: String, events: &mut Vec<PushEvent>) {
        self.reader
            .close(format!("the server refused or ended the publish: {why}"));
        events.push(PushEvent::Rejected(why));
    }

    fn handle_command(&mut self, cmd: &Command, events: &mut Vec<PushEvent>) -> Result<()> {
        let (msg, values) = (&cmd.msg, cmd.values.as_slice());
        let txid = values.get(1).and_then(Value::as_number);
        let method = txid.and_then(|t| {
            let i = self
                .tracked
                .iter()
                .position(|&(id, _)| f64::from(id) == t)?;
            Some(self.tracked.remove(i).1)
        });
        // The information object: the first object after the transaction id.
        let info = values
            .iter()
            .skip(2)
            .find(|v| matches!(v, Value::Object(_)));
        let field = |key: &str| {
            info.and_then(|i| i.get(key))
                .and_then(Value::as_str)
                .filter(|s| !s.is_empty())
        };
        let level = field("level");
        let description = field("description").or(field("code")).map(str::to_owned);
        match cmd.name.as_str() {
            "_result" => match method {
                Some(Method::Connect) => {
                    if level == Some("error") {
                        let why = description.unwrap_or_else(|| "connect failed".into());
                        self.reject(why, events);
                        return Ok(());
                    }
                    if self.phase != Phase::Connecting {
                        return Err(msg_err(msg, "command '_result'", "connect result twice"));
                    }
                    let stream = amf0::string(&self.target.stream);
                    self.call(
                        Method::ReleaseStream,
                        CSID_COMMAND,
                        0,
                        std::slice::from_ref(&stream),
                    );
                    self.call(Method::FcPublish, CSID_COMMAND, 0, &[stream]);
                    self.call(Method::CreateStream, CSID_COMMAND, 0, &[]);
                    self.phase = Phase::CreatingStream;
                }
                Some(Method::CreateStream) => {
                    let id = values
                        .get(3)
                        .and_then(Value::as_number)
                        .filter(|n| n.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(n))
                        .ok_or_else(|| {
                            msg_err(
                                msg,
                                "command '_result'",
                                "createStream result without a valid stream id",
                            )
                        })?;
                    self.stream_id = id as u32;
                    let stream_id = self.stream_id;
                    self.call(
                        Method::Publish,
                        CSID_STREAM_COMMAND,
                        stream_id,
                        &[amf0::string(&self.target.stream), amf0::string("live")],
                    );
                    self.phase = Phase::PublishSent;
                }
                // releaseStream / FCPublish results, untracked ones: nothing to do.
                _ => {}
            },
            "_error" => match method {
                // Historical Adobe commands many servers do not know: harmless.
                Some(Method::ReleaseStream | Method::FcPublish) => {}
                m => {
                    let why = description.unwrap_or_else(|| match m {
                        Some(m) => format!("the server answered {} with an error", m.name()),
                        None => "the server sent an error".into(),
                    });
                    self.reject(why, events);
                }
            },
            "onStatus" => {
                if level == Some("error") {
                    let why = description.unwrap_or_else(|| "publish failed".into());
                    self.reject(why, events);
                } else if field("code") == Some("NetStream.Publish.Start")
                    && self.phase == Phase::PublishSent
                {
                    self.phase = Phase::Publishing;
                    self.tracks_sent = false;
                    events.push(PushEvent::Publishing);
                }
                // Other statuses (Unpublish.Success, ...): nothing to do.
            }
            "close" => {
                let why = description.unwrap_or_else(|| "the server closed the stream".into());
                self.reject(why, events);
            }
            // onBWDone, onFCPublish, onFCUnpublish, _checkbw, ...: nothing to do.
            _ => {}
        }
        Ok(())
    }
}

/// The first byte of an AAC audio tag: sound format 10, and the rate (44 kHz), size
/// (16 bit) and type (stereo) bits FLV fixes for AAC; the AudioSpecificConfig is
/// authoritative.
fn aac_tag_byte() -> u8 {
    (FLV_SOUND_AAC << 4) | 0x0F
}

/// The `@setDataFrame onMetaData` data message body.
fn metadata(video: Option<&VideoOut>, audio: Option<&AudioOut>) -> Vec<u8> {
    let mut props = vec![("duration", Value::Number(0.0))];
    if let Some(v) = video {
        props.push(("width", Value::Number(f64::from(v.width))));
        props.push(("height", Value::Number(f64::from(v.height))));
        props.push(("videocodecid", Value::Number(f64::from(FLV_CODEC_AVC))));
    }
    if let Some(a) = audio {
        props.push(("audiocodecid", Value::Number(f64::from(FLV_SOUND_AAC))));
        props.push(("audiosamplerate", Value::Number(f64::from(a.sample_rate))));
        props.push(("audiosamplesize", Value::Number(16.0)));
        props.push(("stereo", Value::Boolean(a.channels > 1)));
    }
    props.push(("encoder", amf0::string("Brume")));
    let mut out = amf0::encode_all(&[amf0::string("@setDataFrame"), amf0::string("onMetaData")]);
    amf0::encode_ecma_array(&props, &mut out);
    out
}

#[cfg(test)]
#[path = "client_tests.rs"]
mod tests;
