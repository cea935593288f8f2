//! Unit tests of the RTMP push client: URL parsing, the handshake, hand-made server
//! messages, a loopback against the crate's own [`PublishSession`], and fuzzing.

use brume_format::{Codec, Frame, Track};
use proptest::prelude::*;

use super::*;
use crate::chunk::{be24, be32};
use crate::{PublishSession, RtmpEvent};

/// The bytes ffmpeg sent during the first second of a publish (see testdata/README.md).
const RECORDED: &[u8] = include_bytes!("../testdata/ffmpeg_publish.bin");

// ---- URL parsing ----

fn url(u: &str) -> Target {
    parse_url(u).unwrap_or_else(|e| panic!("{u}: {e}"))
}

#[test]
fn url_without_port() {
    let t = url("rtmp://live.example.com/app/streamkey");
    assert_eq!(
        t,
        Target {
            host: "live.example.com".into(),
            port: 1935,
            app: "app".into(),
            stream: "streamkey".into(),
            tc_url: "rtmp://live.example.com:1935/app".into(),
        }
    );
}

#[test]
fn url_with_port_and_upper_case_scheme() {
    let t = url("RTMP://127.0.0.1:1940/live/test");
    assert_eq!((t.host.as_str(), t.port), ("127.0.0.1", 1940));
    assert_eq!((t.app.as_str(), t.stream.as_str()), ("live", "test"));
    assert_eq!(t.tc_url, "rtmp://127.0.0.1:1940/live");
}

#[test]
fn url_query_belongs_to_the_stream_name() {
    let t = url("rtmp://a.rtmp.example.com/live2/abcd-1234?backup=1&key=x/y");
    assert_eq!(t.app, "live2");
    assert_eq!(t.stream, "abcd-1234?backup=1&key=x/y");
    assert_eq!(t.tc_url, "rtmp://a.rtmp.example.com:1935/live2");
}

#[test]
fn url_nested_app_path() {
    let t = url("rtmp://h:19350/app/instance/sub/name");
    assert_eq!(t.app, "app/instance/sub");
    assert_eq!(t.stream, "name");
    assert_eq!(t.tc_url, "rtmp://h:19350/app/instance/sub");
}

#[test]
fn url_ipv6_host_keeps_its_brackets() {
    let t = url("rtmp://[::1]:1936/live/x");
    assert_eq!((t.host.as_str(), t.port), ("[::1]", 1936));
    assert_eq!(t.tc_url, "rtmp://[::1]:1936/live");
    assert_eq!(url("rtmp://[fe80::1]/live/x").port, 1935);
    let c = PushClient::new("rtmp://[::1]/live/x").unwrap();
    assert_eq!(format!("{}:{}", c.host(), c.port()), "[::1]:1935");
}

#[test]
fn rtmps_is_refused_and_says_so() {
    let e = PushClient::new("rtmps://live-api-s.example.com:443/rtmp/SECRETKEY")
        .err()
        .unwrap()
        .to_string();
    assert!(e.contains("rtmps") && e.contains("not supported"), "{e}");
}

#[test]
fn bad_urls_are_errors_that_never_repeat_the_key() {
    for u in [
        "",
        "SECRET",
        "http://host/app/SECRET",
        "srt://host:9000?streamid=SECRET",
        "rtmpe://host/app/SECRET",
        "rtmp://",
        "rtmp://host",
        "rtmp://host/",
        "rtmp://host/SECRET",
        "rtmp://host/SECRET/",
        "rtmp://host//SECRET",
        "rtmp://host?SECRET",
        "rtmp://:1935/app/SECRET",
        "rtmp://host:0/app/SECRET",
        "rtmp://host:99999/app/SECRET",
        "rtmp://host:+12/app/SECRET",
        "rtmp://host:x/app/SECRET",
        "rtmp://user:SECRET@host/app/key",
        "rtmp://[::1/app/SECRET",
        "rtmp://[::1]x/app/SECRET",
        "rtmp://host/app/SECRET key",
        "rtmp://host/app/SECRET\n",
    ] {
        let e = match PushClient::new(u) {
            Ok(_) => panic!("{u:?} was accepted"),
            Err(e) => e.to_string(),
        };
        assert!(!e.contains("SECRET"), "{u:?}: {e}");
        assert!(matches!(PushClient::new(u), Err(Error::Unsupported { .. })));
    }
}

// ---- Hand-made server bytes ----

/// S0 + S1 + S2 (S1 is recognisable, S2 echoes nothing in particular).
fn server_handshake() -> (Vec<u8>, Vec<u8>) {
    let s1: Vec<u8> = (0..HANDSHAKE_SIZE as u32)
        .map(|i| (i * 13 + 5) as u8)
        .collect();
    let mut v = vec![3];
    v.extend_from_slice(&s1);
    v.extend(vec![0u8; HANDSHAKE_SIZE]);
    (v, s1)
}

/// One server message: type-0 header, type-3 continuations at `chunk` bytes.
fn message(out: &mut Vec<u8>, csid: u8, type_id: u8, stream_id: u32, payload: &[u8], chunk: usize) {
    out.push(csid);
    out.extend_from_slice(&[0, 0, 0]);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    out.push(type_id);
    out.extend_from_slice(&stream_id.to_le_bytes());
    for (i, piece) in payload.chunks(chunk).enumerate() {
        if i > 0 {
            out.push(0xC0 | csid);
        }
        out.extend_from_slice(piece);
    }
}

fn cmd(out: &mut Vec<u8>, stream_id: u32, values: &[Value]) {
    message(out, 3, 20, stream_id, &amf0::encode_all(values), 128);
}

fn status(level: &str, code: &str, description: &str) -> Vec<Value> {
    vec![
        amf0::string("onStatus"),
        Value::Number(0.0),
        Value::Null,
        amf0::object(&[
            ("level", amf0::string(level)),
            ("code", amf0::string(code)),
            ("description", amf0::string(description)),
        ]),
    ]
}

/// A client that completed the handshake, with its output taken.
fn connected_client() -> PushClient {
    let mut c = PushClient::new("rtmp://127.0.0.1/live/test").unwrap();
    c.take_output();
    assert_eq!(c.receive(&server_handshake().0).unwrap(), []);
    c.take_output();
    c
}

/// Decodes the client's output (after the handshake) with a server session: the
/// commands it sent, as (message stream id, values).
fn sent_commands(bytes: &[u8]) -> Vec<Vec<Value>> {
    // A minimal chunk reader for the client's own output: type 0/1 headers and
    // type-3 continuations at the output chunk size, no extended timestamps.
    let mut pos = 0;
    let mut chunk = 128usize;
    let mut lens = [0usize; 64];
    let mut types = [0u8; 64];
    let mut partial: Vec<Option<Vec<u8>>> = vec![None; 64];
    let mut out = Vec::new();
    while pos < bytes.len() {
        let b0 = bytes[pos];
        let (fmt, csid) = (b0 >> 6, usize::from(b0 & 0x3F));
        pos += 1;
        match fmt {
            0 | 1 => {
                lens[csid] = be24(&bytes[pos + 3..pos + 6]) as usize;
                types[csid] = bytes[pos + 6];
                pos += if fmt == 0 { 11 } else { 7 };
                partial[csid] = Some(Vec::new());
            }
            3 => {}
            f => panic!("client used a type {f} header"),
        }
        let p = partial[csid].as_mut().unwrap();
        let take = (lens[csid] - p.len()).min(chunk);
        p.extend_from_slice(&bytes[pos..pos + take]);
        pos += take;
        if p.len() == lens[csid] {
            let payload = partial[csid].take().unwrap();
            match types[csid] {
                1 => chunk = be32(&payload) as usize,
                20 => out.push(amf0::decode_all(&payload).unwrap()),
                _ => {}
            }
        }
    }
    out
}

fn names(commands: &[Vec<Value>]) -> Vec<&str> {
    commands
        .iter()
        .map(|c| c[0].as_str().unwrap_or("?"))
        .collect()
}

#[test]
fn handshake_sends_c0_c1_then_c2_chunk_size_and_connect() {
    let mut c = PushClient::new("rtmp://example.com/live/key").unwrap();
    assert_eq!(c.pending(), 1 + HANDSHAKE_SIZE);
    let c0c1 = c.take_output();
    assert_eq!(c.pending(), 0);
    assert_eq!(c0c1.len(), 1 + HANDSHAKE_SIZE);
    assert_eq!(c0c1[0], 3);
    assert_eq!(&c0c1[1..9], &[0; 8]);
    // Deterministic.
    assert_eq!(
        PushClient::new("rtmp://example.com/live/key")
            .unwrap()
            .take_output(),
        c0c1
    );
    let (hs, s1) = server_handshake();
    // Nothing happens until S0 + S1 + S2 are complete.
    assert_eq!(c.receive(&hs[..2000]).unwrap(), []);
    assert_eq!(c.pending(), 0);
    assert_eq!(c.receive(&hs[2000..]).unwrap(), []);
    let out = c.take_output();
    assert_eq!(&out[..HANDSHAKE_SIZE], &s1[..]);
    let rest = &out[HANDSHAKE_SIZE..];
    // SetChunkSize 4096 on chunk stream 2.
    assert_eq!(
        &rest[..16],
        &[0x02, 0, 0, 0, 0, 0, 4, 1, 0, 0, 0, 0, 0, 0, 0x10, 0]
    );
    let commands = sent_commands(rest);
    assert_eq!(names(&commands), ["connect"]);
    let info = &commands[0][2];
    assert_eq!(info.get("app").and_then(Value::as_str), Some("live"));
    assert_eq!(info.get("type").and_then(Value::as_str), Some("nonprivate"));
    assert_eq!(
        info.get("flashVer").and_then(Value::as_str),
        Some("FMLE/3.0 (compatible; Brume)")
    );
    assert_eq!(
        info.get("tcUrl").and_then(Value::as_str),
        Some("rtmp://example.com:1935/live")
    );
}

#[test]
fn wrong_server_version_is_a_handshake_error_then_closed() {
    let mut c = PushClient::new("rtmp://h/live/x").unwrap();
    assert!(matches!(
        c.receive(&[6, 1, 2]),
        Err(Error::Handshake { offset: 0, .. })
    ));
    assert!(matches!(c.receive(&[3]), Err(Error::Closed { .. })));
}

/// The exchange ffmpeg's listening server makes: onFCPublish without arguments, no
/// releaseStream result, onBWDone, Stream Begin, then Publish.Start.
#[test]
fn ffmpeg_like_server_exchange_reaches_publishing() {
    let mut c = connected_client();
    let mut s = Vec::new();
    message(&mut s, 2, 5, 0, &2_500_000u32.to_be_bytes(), 128);
    message(&mut s, 2, 6, 0, &[0, 0x26, 0x25, 0xA0, 2], 128);
    message(&mut s, 2, 1, 0, &4096u32.to_be_bytes(), 128);
    let result = amf0::encode_all(&[
        amf0::string("_result"),
        Value::Number(1.0),
        amf0::object(&[("fmsVer", amf0::string("FMS/3,0,1,123"))]),
        amf0::object(&[
            ("level", amf0::string("status")),
            ("code", amf0::string("NetConnection.Connect.Success")),
            ("description", amf0::string(&"x".repeat(300))),
        ]),
    ]);
    // After SetChunkSize 4096 the server's messages arrive in one chunk.
    message(&mut s, 3, 20, 0, &result, 4096);
    let bw = amf0::encode_all(&[amf0::string("onBWDone"), Value::Number(0.0), Value::Null]);
    message(&mut s, 3, 20, 0, &bw, 4096);
    assert_eq!(c.receive(&s).unwrap(), []);
    let commands = sent_commands(&c.take_output());
    assert_eq!(
        names(&commands),
        ["releaseStream", "FCPublish", "createStream"]
    );
    assert_eq!(commands[0][1], Value::Number(2.0));
    assert_eq!(commands[0][3], amf0::string("test"));
    assert_eq!(commands[2][1], Value::Number(4.0));

    let mut s = Vec::new();
    let mut one = |values: &[Value]| message(&mut s, 3, 20, 0, &amf0::encode_all(values), 4096);
    one(&[amf0::string("onFCPublish")]);
    one(&[
        amf0::string("_result"),
        Value::Number(4.0),
        Value::Null,
        Value::Number(1.0),
    ]);
    assert_eq!(c.receive(&s).unwrap(), []);
    let out = c.take_output();
    let commands = sent_commands(&out);
    assert_eq!(names(&commands), ["publish"]);
    assert_eq!(
        &commands[0][3..],
        &[amf0::string("test"), amf0::string("live")]
    );
    // On chunk stream 8, message stream 1 (type-0 header: first use of the stream).
    assert_eq!(out[0], 0x08);
    assert_eq!(&out[8..12], &1u32.to_le_bytes());

    let mut s = Vec::new();
    message(&mut s, 2, 4, 0, &[0, 0, 0, 0, 0, 1], 4096);
    message(
        &mut s,
        3,
        20,
        1,
        &amf0::encode_all(&status(
            "status",
            "NetStream.Publish.Start",
            "test is now published",
        )),
        4096,
    );
    assert_eq!(c.receive(&s).unwrap(), [PushEvent::Publishing]);
    assert!(c.is_publishing());
}

#[test]
fn connect_error_is_a_rejection_with_the_description() {
    let mut c = connected_client();
    let mut s = Vec::new();
    cmd(
        &mut s,
        0,
        &[
            amf0::string("_error"),
            Value::Number(1.0),
            Value::Null,
            amf0::object(&[
                ("level", amf0::string("error")),
                ("code", amf0::string("NetConnection.Connect.Rejected")),
                ("description", amf0::string("unknown application")),
            ]),
        ],
    );
    assert_eq!(
        c.receive(&s).unwrap(),
        [PushEvent::Rejected("unknown application".into())]
    );
    assert!(matches!(c.receive(&[]), Err(Error::Closed { .. })));
    assert!(matches!(c.send_tracks(&[]), Err(Error::Closed { .. })));
}

#[test]
fn release_stream_and_fcpublish_errors_are_ignored_publish_error_is_not() {
    let mut c = connected_client();
    let mut s = Vec::new();
    cmd(
        &mut s,
        0,
        &[amf0::string("_result"), Value::Number(1.0), Value::Null],
    );
    for txid in [2.0, 3.0] {
        cmd(
            &mut s,
            0,
            &[
                amf0::string("_error"),
                Value::Number(txid),
                Value::Null,
                amf0::object(&[("code", amf0::string("NetConnection.Call.Failed"))]),
            ],
        );
    }
    cmd(
        &mut s,
        0,
        &[
            amf0::string("_result"),
            Value::Number(4.0),
            Value::Null,
            Value::Number(7.0),
        ],
    );
    assert_eq!(c.receive(&s).unwrap(), []);
    let mut s = Vec::new();
    // An onStatus error without description: the code is reported.
    cmd(&mut s, 7, &status("error", "NetStream.Publish.BadName", ""));
    assert_eq!(
        c.receive(&s).unwrap(),
        [PushEvent::Rejected("NetStream.Publish.BadName".into())]
    );
}

#[test]
fn ping_request_gets_a_response_and_acks_follow_the_window() {
    let mut c = connected_client();
    let mut s = Vec::new();
    message(&mut s, 2, 4, 0, &[0, 6, 0xDE, 0xAD, 0xBE, 0xEF], 128);
    c.receive(&s).unwrap();
    // Chunk stream 2 already carried SetChunkSize: a type-1 header.
    assert_eq!(
        c.take_output(),
        [0x42, 0, 0, 0, 0, 0, 6, 4, 0, 7, 0xDE, 0xAD, 0xBE, 0xEF]
    );
    // Window of 100 bytes: an acknowledgement of the total received once passed.
    let mut s = Vec::new();
    message(&mut s, 2, 5, 0, &100u32.to_be_bytes(), 128);
    let total = (1 + 2 * HANDSHAKE_SIZE) as u32 + 18 + 16;
    c.receive(&s).unwrap();
    assert_eq!(
        c.take_output(),
        [&[0x42, 0, 0, 0, 0, 0, 4, 3][..], &total.to_be_bytes()].concat()
    );
    let mut s = Vec::new();
    for _ in 0..5 {
        message(
            &mut s,
            3,
            20,
            0,
            &amf0::encode_all(&[amf0::string("onBWDone")]),
            128,
        );
    }
    c.receive(&s[..50]).unwrap();
    assert_eq!(c.pending(), 0);
    c.receive(&s[50..]).unwrap();
    let total = total + s.len() as u32;
    assert_eq!(
        c.take_output(),
        [&[0x42, 0, 0, 0, 0, 0, 4, 3][..], &total.to_be_bytes()].concat()
    );
}

#[test]
fn oversized_server_message_is_refused_before_buffering() {
    let mut c = connected_client();
    let mut s = vec![0x03, 0, 0, 0, 0x20, 0, 0, 20, 0, 0, 0, 0];
    s.extend_from_slice(&[0; 64]);
    assert!(matches!(
        c.receive(&s),
        Err(Error::MessageTooLarge {
            size: 0x20_0000,
            limit: 0x10_0000,
            ..
        })
    ));
    assert!(matches!(c.receive(&[]), Err(Error::Closed { .. })));
}

#[test]
fn limits_and_malformed_chunks_are_errors() {
    let mut c = connected_client();
    let mut s = Vec::new();
    message(&mut s, 2, 1, 0, &0x4000_0000u32.to_be_bytes(), 128);
    assert!(matches!(
        c.receive(&s),
        Err(Error::Limit {
            what: "chunk size",
            ..
        })
    ));

    let mut c = connected_client();
    let offset = (1 + 2 * HANDSHAKE_SIZE) as u64;
    assert!(matches!(
        c.receive(&[0xC9]),
        Err(Error::Chunk { csid: 9, offset: o, .. }) if o == offset
    ));

    let mut c = connected_client();
    let mut s = Vec::new();
    message(&mut s, 3, 20, 0, &[0x02, 0, 9, b'x'], 128);
    assert!(matches!(c.receive(&s), Err(Error::Message { csid: 3, .. })));

    // Many chunk streams each holding a partial message: the buffered total is capped.
    let mut c = PushClient::with_limits(
        "rtmp://h/live/x",
        RtmpLimits {
            max_message_size: 1000,
            max_chunk_size: 4096,
        },
    )
    .unwrap();
    c.receive(&server_handshake().0).unwrap();
    let mut s = Vec::new();
    for csid in 10..40 {
        s.extend_from_slice(&[csid, 0, 0, 0, 0, 0x03, 0xE8, 18, 0, 0, 0, 0]);
        s.extend_from_slice(&[0; 128]);
    }
    assert!(matches!(
        c.receive(&s),
        Err(Error::Limit {
            what: "bytes buffered in incomplete messages",
            ..
        })
    ));
}

#[test]
fn media_calls_before_publishing_are_state_errors() {
    let mut c = connected_client();
    let (tracks, frames) = recorded();
    assert!(matches!(
        c.send_tracks(&tracks),
        Err(Error::State {
            call: "send_tracks",
            ..
        })
    ));
    assert!(matches!(
        c.send_frame(&frames[0]),
        Err(Error::State {
            call: "send_frame",
            ..
        })
    ));
    c.unpublish();
    assert_eq!(c.pending(), 0);
}

// ---- Loopback against PublishSession ----

/// Replays the recorded ffmpeg publish through a PublishSession: its tracks and frames.
fn recorded() -> (Vec<Track>, Vec<Frame>) {
    let mut s = PublishSession::new(RtmpLimits::default());
    let mut tracks = Vec::new();
    let mut frames = Vec::new();
    let mut input = RECORDED;
    loop {
        let mut again = false;
        for ev in s.feed(input).unwrap() {
            match ev {
                RtmpEvent::PublishRequested { .. } => {
                    s.accept().unwrap();
                    again = true;
                }
                RtmpEvent::Tracks(t) => tracks = t,
                RtmpEvent::Frame(f) => frames.push(f),
                _ => {}
            }
        }
        input = &[];
        if !again {
            break;
        }
    }
    assert_eq!(tracks.len(), 2);
    assert!(frames.len() > 40, "{} frames", frames.len());
    (tracks, frames)
}

/// A client and a server session connected back to back.
struct Loopback {
    client: PushClient,
    server: PublishSession,
    /// Everything the server reported (its `Send`s excluded).
    server_events: Vec<RtmpEvent>,
    client_events: Vec<PushEvent>,
    /// Answer the publish request with this rejection reason instead of accepting.
    reject: Option<&'static str>,
    /// Feed the client one byte at a time.
    bytewise: bool,
}

impl Loopback {
    fn new(url: &str) -> Loopback {
        Loopback {
            client: PushClient::new(url).unwrap(),
            server: PublishSession::new(RtmpLimits::default()),
            server_events: Vec::new(),
            client_events: Vec::new(),
            reject: None,
            bytewise: false,
        }
    }

    /// Moves bytes both ways until neither side has anything to say.
    fn pump(&mut self) {
        loop {
            let mut to_client = Vec::new();
            let mut input = self.client.take_output();
            let moved = !input.is_empty();
            // After an accept, feed again (bytes behind `publish` wait for it); a
            // rejected session takes no more input.
            let mut feed = moved;
            while feed {
                feed = false;
                for ev in self.server.feed(&input).unwrap() {
                    match ev {
                        RtmpEvent::Send(b) => to_client.extend(b),
                        RtmpEvent::PublishRequested { .. } => {
                            let reply = match self.reject {
                                Some(reason) => self.server.reject(reason).unwrap(),
                                None => {
                                    feed = true;
                                    self.server.accept().unwrap()
                                }
                            };
                            to_client.extend(reply);
                            self.server_events.push(ev);
                        }
                        ev => self.server_events.push(ev),
                    }
                }
                input.clear();
            }
            if !moved && to_client.is_empty() {
                return;
            }
            if self.bytewise {
                for b in &to_client {
                    self.client_events
                        .extend(self.client.receive(std::slice::from_ref(b)).unwrap());
                }
            } else {
                self.client_events
                    .extend(self.client.receive(&to_client).unwrap());
            }
        }
    }

    fn publish(url: &str) -> Loopback {
        let mut l = Loopback::new(url);
        l.pump();
        assert_eq!(l.client_events, [PushEvent::Publishing]);
        l
    }

    fn server_frames(&self) -> Vec<&Frame> {
        self.server_events
            .iter()
            .filter_map(|e| match e {
                RtmpEvent::Frame(f) => Some(f),
                _ => None,
            })
            .collect()
    }

    fn server_tracks(&self) -> Vec<&Vec<Track>> {
        self.server_events
            .iter()
            .filter_map(|e| match e {
                RtmpEvent::Tracks(t) => Some(t),
                _ => None,
            })
            .collect()
    }
}

/// `frames` as the server should see them: timestamps relative to the first frame,
/// rounded to milliseconds, track ids 1 (video) and 2 (audio).
fn expected(frames: &[Frame], video: u32) -> Vec<Frame> {
    let base = frames[0].dts;
    frames
        .iter()
        .map(|f| {
            let dts = us_to_ms(f.dts - base);
            let pts = us_to_ms(f.pts() - base);
            Frame {
                track: if f.track == video { 1 } else { 2 },
                dts: dts * 1000,
                cts: ((pts - dts) * 1000) as i32,
                key: f.key,
                data: f.data.clone(),
            }
        })
        .collect()
}

#[test]
fn loopback_publish_tracks_and_frames_arrive_identical() {
    let (tracks, frames) = recorded();
    let mut l = Loopback::publish("rtmp://127.0.0.1/live/cam1?key=abc");
    assert_eq!(
        l.server_events,
        [RtmpEvent::PublishRequested {
            app: "live".into(),
            name: "cam1".into(),
            query: "key=abc".into()
        }]
    );
    l.client.send_tracks(&tracks).unwrap();
    // Again with the same tracks: nothing more.
    let queued = l.client.pending();
    l.client.send_tracks(&tracks).unwrap();
    assert_eq!(l.client.pending(), queued);
    for f in &frames {
        l.client.send_frame(f).unwrap();
    }
    l.pump();
    assert_eq!(l.server_tracks(), [&tracks]);
    let got: Vec<Frame> = l.server_frames().into_iter().cloned().collect();
    assert_eq!(got.len(), frames.len());
    assert_eq!(got, expected(&frames, tracks[0].id));
    // The recording starts at 0 and is in whole milliseconds: identical frames.
    assert_eq!(frames[0].dts, 0);
    assert_eq!(got, frames);

    l.client.unpublish();
    l.pump();
    assert_eq!(l.server_events.last(), Some(&RtmpEvent::Unpublished));
    assert!(matches!(
        l.client.send_frame(&frames[0]),
        Err(Error::Closed { .. })
    ));
}

#[test]
fn loopback_with_bytewise_input_other_track_ids_and_offset_times() {
    let (tracks, frames) = recorded();
    let mut l = Loopback::new("rtmp://127.0.0.1:1935/app/inst/name");
    l.bytewise = true;
    l.pump();
    assert_eq!(l.client_events, [PushEvent::Publishing]);
    assert!(matches!(
        &l.server_events[0],
        RtmpEvent::PublishRequested { app, name, query }
            if app == "app/inst" && name == "name" && query.is_empty()
    ));
    // Video is track 7, audio 3, plus a JPEG track that is not sent; times start at
    // an arbitrary instant and are not whole milliseconds.
    let mut mine = vec![Track::video(9, Codec::Jpeg, Vec::new(), 640, 360)];
    mine.push(Track {
        id: 7,
        ..tracks[0].clone()
    });
    mine.push(Track {
        id: 3,
        ..tracks[1].clone()
    });
    l.client.send_tracks(&mine).unwrap();
    let shifted: Vec<Frame> = frames
        .iter()
        .map(|f| Frame {
            track: if f.track == tracks[0].id { 7 } else { 3 },
            dts: f.dts + 987_654_321_123 + (f.dts % 7) * 71,
            ..f.clone()
        })
        .collect();
    for f in &shifted {
        l.client.send_frame(f).unwrap();
        // JPEG frames are ignored.
        let before = l.client.pending();
        l.client
            .send_frame(&Frame {
                track: 9,
                data: vec![0xFF, 0xD8],
                ..f.clone()
            })
            .unwrap();
        assert_eq!(l.client.pending(), before);
        l.pump();
    }
    assert_eq!(l.server_tracks(), [&tracks]);
    let got: Vec<Frame> = l.server_frames().into_iter().cloned().collect();
    assert_eq!(got, expected(&shifted, 7));
}

fn video_frame(dts_ms: i64, cts_ms: i32, key: bool, len: usize) -> Frame {
    let mut data = (len as u32 - 4).to_be_bytes().to_vec();
    data.push(if key { 0x65 } else { 0x41 });
    data.extend((5..len).map(|i| i as u8));
    Frame {
        track: 1,
        dts: dts_ms * 1000,
        cts: cts_ms * 1000,
        key,
        data,
    }
}

fn audio_frame(dts_ms: i64, byte: u8) -> Frame {
    Frame {
        track: 2,
        dts: dts_ms * 1000,
        cts: 0,
        key: true,
        data: vec![0x21, byte, byte],
    }
}

#[test]
fn extended_timestamps_and_the_32_bit_wrap() {
    let (tracks, _) = recorded();
    let mut l = Loopback::publish("rtmp://h/live/x");
    l.client.send_tracks(&tracks).unwrap();
    let ext = 0x0100_0000i64;
    let frames = vec![
        video_frame(0, 66, true, 100),
        // Type-1 header with an extended delta, over several chunks.
        video_frame(ext, 33, false, 10_000),
        // Type-0 header (first audio message) with an extended timestamp.
        audio_frame(ext + 10, 1),
        video_frame(ext + 33, 0, false, 9_000),
        audio_frame(ext + 33, 2),
        // Large steps up to and across the 32-bit wrap.
        video_frame((1 << 31) - 1, 0, true, 5_000),
        audio_frame((1 << 31) + 5, 3),
        video_frame((1 << 32) - 10, -20, false, 5_000),
        audio_frame((1 << 32) + 20, 4),
        video_frame((1 << 32) + 23, 0, false, 9_000),
    ];
    for f in &frames {
        l.client.send_frame(f).unwrap();
    }
    l.pump();
    let got: Vec<Frame> = l.server_frames().into_iter().cloned().collect();
    assert_eq!(got, frames);
}

#[test]
fn frames_before_the_first_keyframe_are_skipped_and_time_never_goes_back() {
    let (tracks, _) = recorded();
    let mut l = Loopback::publish("rtmp://h/live/x");
    l.client.send_tracks(&tracks).unwrap();
    // A non-key video frame first: skipped, so the audio frame is time 0.
    l.client
        .send_frame(&video_frame(960, 0, false, 50))
        .unwrap();
    l.client.send_frame(&audio_frame(1000, 1)).unwrap();
    // Video earlier than the first frame sent: at time 0, its composition time kept.
    l.client
        .send_frame(&video_frame(990, 40, true, 50))
        .unwrap();
    // Audio going back in time: held at its previous time.
    l.client.send_frame(&audio_frame(1030, 2)).unwrap();
    l.client.send_frame(&audio_frame(1020, 3)).unwrap();
    l.client
        .send_frame(&video_frame(1023, 0, false, 50))
        .unwrap();
    l.pump();
    let got: Vec<(u32, i64, i32)> = l
        .server_frames()
        .iter()
        .map(|f| (f.track, f.dts, f.cts))
        .collect();
    assert_eq!(
        got,
        [
            (2, 0, 0),
            (1, 0, 40_000),
            (2, 30_000, 0),
            (2, 30_000, 0),
            (1, 23_000, 0)
        ]
    );
}

#[test]
fn changed_tracks_are_sent_again_and_the_avcc_says_four_byte_lengths() {
    let (tracks, _) = recorded();
    let mut l = Loopback::publish("rtmp://h/live/x");
    // Audio only first.
    l.client.send_tracks(&tracks[1..]).unwrap();
    // Video: not a sent track, ignored.
    l.client.send_frame(&video_frame(0, 0, true, 50)).unwrap();
    l.client.send_frame(&audio_frame(5, 1)).unwrap();
    // Then video too, its avcC declaring 2-byte NAL lengths.
    let mut video = tracks[0].clone();
    video.init[4] = 0xFD;
    l.client
        .send_tracks(&[video.clone(), tracks[1].clone()])
        .unwrap();
    l.client.send_frame(&video_frame(40, 0, true, 60)).unwrap();
    l.pump();
    let announced = l.server_tracks();
    assert_eq!(announced.len(), 2, "{announced:?}");
    assert_eq!(announced[0].len(), 1);
    assert_eq!(announced[1][0].init[4], 0xFF);
    assert_eq!(announced[1][0].init[5..], video.init[5..]);
    let got: Vec<(u32, i64)> = l.server_frames().iter().map(|f| (f.track, f.dts)).collect();
    assert_eq!(got, [(2, 0), (1, 35_000)]);
    let f = l.server_frames()[1];
    assert_eq!(f.data, video_frame(0, 0, true, 60).data);
}

#[test]
fn no_h264_or_aac_track_is_an_error() {
    let mut l = Loopback::publish("rtmp://h/live/x");
    let jpeg = Track::video(1, Codec::Jpeg, Vec::new(), 640, 360);
    assert!(matches!(
        l.client.send_tracks(&[jpeg]),
        Err(Error::Unsupported { .. })
    ));
    let bad = Track::video(1, Codec::H264, vec![1, 2], 640, 360);
    assert!(matches!(
        l.client.send_tracks(&[bad]),
        Err(Error::Flv { .. })
    ));
    assert!(matches!(
        l.client.send_frame(&audio_frame(0, 1)),
        Err(Error::State { .. })
    ));
}

#[test]
fn rejected_publish_reports_the_server_reason() {
    let mut l = Loopback::new("rtmp://h/live/x?key=wrong");
    l.reject = Some("stream key not allowed");
    l.pump();
    assert_eq!(
        l.client_events,
        [PushEvent::Rejected("stream key not allowed".into())]
    );
    assert!(!l.client.is_publishing());
    assert!(matches!(l.client.receive(&[]), Err(Error::Closed { .. })));
}

#[test]
fn pending_counts_queued_media() {
    let (tracks, frames) = recorded();
    let mut l = Loopback::publish("rtmp://h/live/x");
    l.client.send_tracks(&tracks).unwrap();
    let before = l.client.pending();
    let f = frames.iter().find(|f| f.track == tracks[0].id).unwrap();
    l.client.send_frame(f).unwrap();
    // Tag header (5) + type-1 message header (8: the chunk stream carried the sequence
    // header) + one byte per continuation chunk.
    let chunks = (f.data.len() + 5).div_ceil(4096);
    assert_eq!(
        l.client.pending() - before,
        f.data.len() + 5 + 8 + (chunks - 1)
    );
    l.client.take_output();
    assert_eq!(l.client.pending(), 0);
}

#[test]
fn frames_too_large_are_errors() {
    let (tracks, _) = recorded();
    let mut l = Loopback::publish("rtmp://h/live/x");
    l.client.send_tracks(&tracks).unwrap();
    let huge = video_frame(0, 0, true, MAX_OUT_MESSAGE);
    assert!(matches!(
        l.client.send_frame(&huge),
        Err(Error::Limit { .. })
    ));
    // Still usable.
    l.client.send_frame(&video_frame(0, 0, true, 10)).unwrap();
}

// ---- Fuzzing: never panic ----

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_server_bytes_never_panic(
        data in proptest::collection::vec(any::<u8>(), 0..4096),
        split in 0usize..4096,
        handshake in any::<bool>(),
    ) {
        let mut c = PushClient::with_limits(
            "rtmp://h/live/x",
            RtmpLimits { max_message_size: 2048, max_chunk_size: 4096 },
        )
        .unwrap();
        let mut pieces = Vec::new();
        let hs = server_handshake().0;
        if handshake {
            pieces.push(&hs[..]);
        }
        let split = split.min(data.len());
        pieces.push(&data[..split]);
        pieces.push(&data[split..]);
        for p in pieces {
            if c.receive(p).is_err() {
                let closed = matches!(c.receive(&[1]), Err(Error::Closed { .. }));
                prop_assert!(closed);
                break;
            }
        }
    }
}
