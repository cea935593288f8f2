//! Unit tests of the RTMP publish session: handshake, chunk reassembly against a
//! recorded ffmpeg publish, hand-made protocol edge cases, and fuzzing.

use proptest::prelude::*;

use crate::amf0::{self, Value};
use crate::{Error, PublishSession, RtmpEvent, RtmpLimits};

/// The bytes ffmpeg sent during the first second of a publish (see testdata/README.md).
const RECORDED: &[u8] = include_bytes!("../testdata/ffmpeg_publish.bin");

/// Feeds `input`, accepting any publish request; the accept bytes are recorded as a
/// `Send` event right after the `PublishRequested`, and input buffered behind the
/// publish command is processed with `feed(&[])`.
fn drive(s: &mut PublishSession, input: &[u8], out: &mut Vec<RtmpEvent>) -> crate::Result<()> {
    let mut input = input;
    loop {
        let events = s.feed(input)?;
        input = &[];
        let mut again = false;
        for ev in events {
            let publish = matches!(ev, RtmpEvent::PublishRequested { .. });
            out.push(ev);
            if publish {
                out.push(RtmpEvent::Send(s.accept()?));
                again = true;
            }
        }
        if !again {
            return Ok(());
        }
    }
}

fn replay<'a>(pieces: impl IntoIterator<Item = &'a [u8]>) -> crate::Result<Vec<RtmpEvent>> {
    let mut s = PublishSession::new(RtmpLimits::default());
    let mut out = Vec::new();
    for piece in pieces {
        drive(&mut s, piece, &mut out)?;
    }
    Ok(out)
}

// ---- A minimal RTMP client writer for hand-made streams ----

fn c1() -> Vec<u8> {
    (0..1536u32).map(|i| (i * 7 + 3) as u8).collect()
}

fn handshake() -> Vec<u8> {
    let mut v = vec![3];
    v.extend(c1());
    v.extend(vec![0u8; 1536]); // C2
    v
}

/// One message with a type-0 header (extended timestamp when needed) and type-3
/// continuations (repeating the extended timestamp, as the specification says).
fn message(
    out: &mut Vec<u8>,
    csid: u8,
    ts: u32,
    type_id: u8,
    stream_id: u32,
    payload: &[u8],
    chunk: usize,
) {
    let ext = ts >= 0xFF_FFFF;
    out.push(csid);
    out.extend_from_slice(&(if ext { 0xFF_FFFF } else { ts }).to_be_bytes()[1..]);
    out.extend_from_slice(&(payload.len() as u32).to_be_bytes()[1..]);
    out.push(type_id);
    out.extend_from_slice(&stream_id.to_le_bytes());
    if ext {
        out.extend_from_slice(&ts.to_be_bytes());
    }
    for (i, piece) in payload.chunks(chunk).enumerate() {
        if i > 0 {
            out.push(0xC0 | csid);
            if ext {
                out.extend_from_slice(&ts.to_be_bytes());
            }
        }
        out.extend_from_slice(piece);
    }
    if payload.is_empty() {
        // chunks() yields nothing for an empty payload: the header alone is the chunk.
    }
}

fn command(values: &[Value]) -> Vec<u8> {
    let mut out = Vec::new();
    for v in values {
        amf0::encode(v, &mut out);
    }
    out
}

/// Handshake, connect, createStream, publish "cam?x=1" (chunk size 128).
fn publish_prefix() -> Vec<u8> {
    let mut v = handshake();
    let connect = command(&[
        amf0::string("connect"),
        Value::Number(1.0),
        amf0::object(&[
            ("app", amf0::string("live")),
            ("tcUrl", amf0::string("rtmp://h/live")),
        ]),
    ]);
    message(&mut v, 3, 0, 20, 0, &connect, 128);
    let create = command(&[
        amf0::string("createStream"),
        Value::Number(2.0),
        Value::Null,
    ]);
    message(&mut v, 3, 0, 20, 0, &create, 128);
    let publish = command(&[
        amf0::string("publish"),
        Value::Number(3.0),
        Value::Null,
        amf0::string("cam?x=1"),
        amf0::string("live"),
    ]);
    message(&mut v, 4, 0, 20, 1, &publish, 128);
    v
}

/// An accepted session after `publish_prefix`.
fn publishing_session() -> (PublishSession, Vec<RtmpEvent>) {
    let mut s = PublishSession::new(RtmpLimits::default());
    let mut out = Vec::new();
    drive(&mut s, &publish_prefix(), &mut out).unwrap();
    (s, out)
}

/// The avcC and AudioSpecificConfig ffmpeg sent in the recording.
fn recorded_inits() -> (Vec<u8>, Vec<u8>) {
    let events = replay([RECORDED]).unwrap();
    let tracks = events
        .iter()
        .find_map(|e| match e {
            RtmpEvent::Tracks(t) => Some(t.clone()),
            _ => None,
        })
        .unwrap();
    (tracks[0].init.clone(), tracks[1].init.clone())
}

fn video_seq_header(avcc: &[u8]) -> Vec<u8> {
    let mut v = vec![0x17, 0, 0, 0, 0];
    v.extend_from_slice(avcc);
    v
}

fn audio_seq_header(asc: &[u8]) -> Vec<u8> {
    let mut v = vec![0xAF, 0];
    v.extend_from_slice(asc);
    v
}

/// An AVC NALU tag holding one IDR-type NAL unit of `len` bytes.
fn video_frame(key: bool, cts_ms: i32, len: usize) -> Vec<u8> {
    let mut v = vec![if key { 0x17 } else { 0x27 }, 1];
    v.extend_from_slice(&cts_ms.to_be_bytes()[1..]);
    v.extend_from_slice(&(len as u32).to_be_bytes());
    v.push(if key { 0x65 } else { 0x41 });
    v.extend(std::iter::repeat_n(0xAB, len - 1));
    v
}

fn frames(events: &[RtmpEvent]) -> Vec<&brume_format::Frame> {
    events
        .iter()
        .filter_map(|e| match e {
            RtmpEvent::Frame(f) => Some(f),
            _ => None,
        })
        .collect()
}

// ---- Handshake ----

#[test]
fn handshake_c0_c1_gives_s0_s1_s2() {
    let mut s = PublishSession::new(RtmpLimits::default());
    assert_eq!(s.feed(&[3]).unwrap(), []);
    let c1 = c1();
    assert_eq!(s.feed(&c1[..1000]).unwrap(), []);
    let events = s.feed(&c1[1000..]).unwrap();
    let [RtmpEvent::Send(reply)] = events.as_slice() else {
        panic!("{events:?}")
    };
    assert_eq!(reply.len(), 1 + 1536 * 2);
    assert_eq!(reply[0], 3, "S0 version");
    assert_eq!(&reply[1..9], &[0; 8], "S1 time and zero field");
    assert_eq!(&reply[1537..], &c1[..], "S2 echoes C1");
    // C2 is consumed silently.
    assert_eq!(s.feed(&[0; 1536]).unwrap(), []);
}

#[test]
fn handshake_wrong_version_is_an_error() {
    let mut s = PublishSession::new(RtmpLimits::default());
    let err = s.feed(&[6, 0, 0]).unwrap_err();
    assert!(matches!(err, Error::Handshake { offset: 0, .. }), "{err}");
    assert!(matches!(s.feed(&[3]), Err(Error::Closed { .. })));
}

// ---- The recorded ffmpeg publish ----

#[test]
fn recorded_publish_gives_request_tracks_and_frames() {
    let events = replay([RECORDED]).unwrap();
    assert!(events.contains(&RtmpEvent::PublishRequested {
        app: "live".into(),
        name: "cam1".into(),
        query: "key=abc".into()
    }));
    let tracks: Vec<_> = events
        .iter()
        .filter_map(|e| match e {
            RtmpEvent::Tracks(t) => Some(t),
            _ => None,
        })
        .collect();
    assert_eq!(tracks.len(), 1);
    assert_eq!((tracks[0][0].width, tracks[0][0].height), (640, 360));
    assert_eq!(tracks[0][1].sample_rate, 44100);
    let f = frames(&events);
    let video = f.iter().filter(|f| f.track == 1).count();
    let audio = f.iter().filter(|f| f.track == 2).count();
    assert!(
        video >= 20 && audio >= 20,
        "{video} video, {audio} audio frames"
    );
    assert!(f.iter().find(|f| f.track == 1).unwrap().key);
}

#[test]
fn recorded_publish_fed_one_byte_at_a_time() {
    let whole = replay([RECORDED]).unwrap();
    let bytes = replay(RECORDED.chunks(1)).unwrap();
    assert_eq!(bytes, whole);
}

#[test]
fn recorded_publish_split_in_two_at_every_position() {
    let whole = replay([RECORDED]).unwrap();
    for at in 0..=RECORDED.len() {
        let (a, b) = RECORDED.split_at(at);
        let split = replay([a, b]).unwrap();
        assert!(split == whole, "events differ when split at byte {at}");
    }
}

#[test]
fn truncated_recording_is_need_more_at_every_length() {
    // Every prefix is either fine (waiting for more) or, never, an error.
    let mut s = PublishSession::new(RtmpLimits::default());
    let mut out = Vec::new();
    for b in RECORDED.chunks(1) {
        drive(&mut s, b, &mut out).unwrap();
    }
}

// ---- Hand-made protocol cases ----

#[test]
fn commands_get_results_and_publish_is_requested() {
    let (_, events) = publishing_session();
    // Handshake, connect reply, createStream reply, request, accept.
    assert_eq!(events.len(), 5, "{events:?}");
    assert_eq!(
        events[3],
        RtmpEvent::PublishRequested {
            app: "live".into(),
            name: "cam".into(),
            query: "x=1".into()
        }
    );
    let RtmpEvent::Send(connect_reply) = &events[1] else {
        panic!()
    };
    let text = String::from_utf8_lossy(connect_reply);
    assert!(text.contains("_result") && text.contains("NetConnection.Connect.Success"));
    let RtmpEvent::Send(accept) = &events[4] else {
        panic!()
    };
    assert!(String::from_utf8_lossy(accept).contains("NetStream.Publish.Start"));
}

#[test]
fn accept_or_reject_without_request_is_a_state_error() {
    let mut s = PublishSession::new(RtmpLimits::default());
    assert!(matches!(s.accept(), Err(Error::State { .. })));
    assert!(matches!(s.reject("no"), Err(Error::State { .. })));
}

#[test]
fn reject_sends_bad_name_and_closes() {
    let mut s = PublishSession::new(RtmpLimits::default());
    let events = s.feed(&publish_prefix()).unwrap();
    assert!(matches!(
        events.last(),
        Some(RtmpEvent::PublishRequested { .. })
    ));
    let bytes = s.reject("nope").unwrap();
    let text = String::from_utf8_lossy(&bytes);
    assert!(text.contains("NetStream.Publish.BadName") && text.contains("nope"));
    assert!(matches!(s.feed(&[]), Err(Error::Closed { .. })));
}

#[test]
fn media_before_accept_is_an_error() {
    let (avcc, _) = recorded_inits();
    let mut data = publish_prefix();
    message(&mut data, 6, 0, 9, 1, &video_seq_header(&avcc), 128);
    let mut s = PublishSession::new(RtmpLimits::default());
    let events = s.feed(&data).unwrap();
    // Processing paused right after the request.
    assert!(matches!(
        events.last(),
        Some(RtmpEvent::PublishRequested { .. })
    ));
    let err = s.feed(&[]).unwrap_err();
    assert!(
        matches!(&err, Error::Message { message, reason, .. }
            if message == "video" && reason.contains("accepted")),
        "{err}"
    );
}

#[test]
fn media_without_publish_is_an_error() {
    let mut data = handshake();
    message(&mut data, 6, 0, 8, 1, &[0xAF, 1, 1, 2], 128);
    let mut s = PublishSession::new(RtmpLimits::default());
    assert!(matches!(s.feed(&data), Err(Error::Message { .. })));
}

#[test]
fn tracks_then_frames_with_composition_time_and_keyframes() {
    let (avcc, asc) = recorded_inits();
    let (mut s, _) = publishing_session();
    let mut data = Vec::new();
    // Metadata is ignored.
    let meta = command(&[
        amf0::string("@setDataFrame"),
        amf0::string("onMetaData"),
        amf0::object(&[("width", Value::Number(640.0))]),
    ]);
    message(&mut data, 4, 0, 18, 1, &meta, 128);
    message(&mut data, 6, 0, 9, 1, &video_seq_header(&avcc), 128);
    message(&mut data, 4, 0, 8, 1, &audio_seq_header(&asc), 128);
    message(&mut data, 6, 1000, 9, 1, &video_frame(true, 66, 300), 128);
    message(&mut data, 4, 1010, 8, 1, &[0xAF, 1, 0x21, 0x22], 128);
    message(&mut data, 6, 1033, 9, 1, &video_frame(false, -5, 50), 128);
    let mut events = Vec::new();
    drive(&mut s, &data, &mut events).unwrap();
    let RtmpEvent::Tracks(tracks) = &events[0] else {
        panic!("{events:?}")
    };
    assert_eq!(tracks.len(), 2);
    assert_eq!((tracks[0].id, tracks[1].id), (1, 2));
    let f = frames(&events);
    assert_eq!(f.len(), 3);
    assert_eq!(
        (f[0].track, f[0].dts, f[0].cts, f[0].key),
        (1, 1_000_000, 66_000, true)
    );
    assert_eq!(f[0].data.len(), 4 + 300);
    assert_eq!(&f[0].data[..5], &[0, 0, 1, 44, 0x65]);
    assert_eq!((f[1].track, f[1].dts, f[1].key), (2, 1_010_000, true));
    assert_eq!(f[1].data, [0x21, 0x22]);
    assert_eq!((f[2].dts, f[2].cts, f[2].key), (1_033_000, -5_000, false));
}

#[test]
fn parameter_sets_are_removed_from_frames() {
    let (avcc, _) = recorded_inits();
    let (mut s, _) = publishing_session();
    let mut data = Vec::new();
    message(&mut data, 6, 0, 9, 1, &video_seq_header(&avcc), 4096);
    let mut tag = vec![0x17, 1, 0, 0, 0];
    for nal in [&[0x67u8, 1, 2][..], &[0x68, 3], &[0x06, 5], &[0x65, 9, 9]] {
        tag.extend_from_slice(&(nal.len() as u32).to_be_bytes());
        tag.extend_from_slice(nal);
    }
    message(&mut data, 6, 0, 9, 1, &tag, 4096);
    let mut events = Vec::new();
    drive(&mut s, &data, &mut events).unwrap();
    let f = frames(&events);
    assert_eq!(f[0].data, [0, 0, 0, 2, 0x06, 5, 0, 0, 0, 3, 0x65, 9, 9]);
}

#[test]
fn extended_timestamps_on_type3_chunks() {
    let (avcc, _) = recorded_inits();
    let (mut s, _) = publishing_session();
    let mut data = Vec::new();
    message(
        &mut data,
        6,
        0x0100_0000,
        9,
        1,
        &video_seq_header(&avcc),
        128,
    );
    // A 300-byte frame at an extended timestamp: type-0 + two type-3 continuations,
    // each carrying the extended timestamp.
    let frame = video_frame(true, 0, 300);
    message(&mut data, 6, 0x0100_0000, 9, 1, &frame, 128);
    // The next message on the stream with a type-1 header and an extended delta, then
    // one with only a type-3 header: same length and delta (also extended).
    let next = video_frame(false, 0, 300);
    data.push(0x40 | 6);
    data.extend_from_slice(&[0xFF, 0xFF, 0xFF]);
    data.extend_from_slice(&(next.len() as u32).to_be_bytes()[1..]);
    data.push(9);
    let delta = 0x0100_0000u32;
    for (i, piece) in next.chunks(128).enumerate() {
        if i > 0 {
            data.push(0xC0 | 6);
        }
        data.extend_from_slice(&delta.to_be_bytes());
        data.extend_from_slice(piece);
    }
    for piece in next.chunks(128) {
        data.push(0xC0 | 6);
        data.extend_from_slice(&delta.to_be_bytes());
        data.extend_from_slice(piece);
    }
    let mut events = Vec::new();
    drive(&mut s, &data, &mut events).unwrap();
    let f = frames(&events);
    let dts: Vec<i64> = f.iter().map(|f| f.dts).collect();
    let base = 0x0100_0000i64 * 1000;
    assert_eq!(dts, [base, 2 * base, 3 * base]);
    assert!(f.iter().all(|f| f.data.len() == 304));
}

#[test]
fn timestamp_wrap_is_unwrapped() {
    let (_, asc) = recorded_inits();
    let (mut s, _) = publishing_session();
    let mut data = Vec::new();
    message(&mut data, 4, 0, 8, 1, &audio_seq_header(&asc), 128);
    for ts in [0xFFFF_FF00u32, 0xFFFF_FFF0, 0x0000_0010, 0x0000_0100] {
        message(&mut data, 4, ts, 8, 1, &[0xAF, 1, 7], 128);
    }
    let mut events = Vec::new();
    drive(&mut s, &data, &mut events).unwrap();
    let dts: Vec<i64> = frames(&events).iter().map(|f| f.dts / 1000).collect();
    let w = 1i64 << 32;
    assert_eq!(dts, [w - 256, w - 16, w + 16, w + 256]);
}

#[test]
fn set_chunk_size_and_interleaved_chunk_streams() {
    let (avcc, asc) = recorded_inits();
    let (mut s, _) = publishing_session();
    let mut data = Vec::new();
    message(&mut data, 2, 0, 1, 0, &200u32.to_be_bytes(), 128);
    message(&mut data, 6, 0, 9, 1, &video_seq_header(&avcc), 200);
    message(&mut data, 4, 0, 8, 1, &audio_seq_header(&asc), 200);
    // Interleave a 500-byte video message (3 chunks) with a whole audio message.
    let mut video = Vec::new();
    message(&mut video, 6, 40, 9, 1, &video_frame(true, 0, 500), 200);
    let mut audio = Vec::new();
    message(&mut audio, 4, 41, 8, 1, &[0xAF, 1, 1, 2, 3], 200);
    data.extend_from_slice(&video[..12 + 200]);
    data.extend_from_slice(&audio);
    data.extend_from_slice(&video[12 + 200..]);
    let mut events = Vec::new();
    drive(&mut s, &data, &mut events).unwrap();
    let f = frames(&events);
    assert_eq!(f.len(), 2);
    assert_eq!((f[0].track, f[0].dts), (2, 41_000));
    assert_eq!((f[1].track, f[1].dts, f[1].data.len()), (1, 40_000, 504));
}

#[test]
fn abort_discards_a_partial_message() {
    let (_, asc) = recorded_inits();
    let (mut s, _) = publishing_session();
    let mut data = Vec::new();
    message(&mut data, 4, 0, 8, 1, &audio_seq_header(&asc), 128);
    let mut partial = Vec::new();
    message(&mut partial, 4, 5, 8, 1, &[0xAF; 200], 128);
    data.extend_from_slice(&partial[..12 + 128]);
    message(&mut data, 2, 0, 2, 0, &4u32.to_be_bytes(), 128);
    message(&mut data, 4, 9, 8, 1, &[0xAF, 1, 5], 128);
    let mut events = Vec::new();
    drive(&mut s, &data, &mut events).unwrap();
    let f = frames(&events);
    assert_eq!(f.len(), 1);
    assert_eq!((f[0].dts, f[0].data.clone()), (9_000, vec![5]));
}

#[test]
fn acknowledgement_is_sent_when_the_window_is_reached() {
    let (mut s, _) = publishing_session();
    let mut data = Vec::new();
    message(&mut data, 2, 0, 5, 0, &1000u32.to_be_bytes(), 128);
    for _ in 0..12 {
        // 100-byte ignored data messages.
        message(&mut data, 4, 0, 18, 1, &[0x05; 100], 128);
    }
    let events = s.feed(&data).unwrap();
    let acks: Vec<&Vec<u8>> = events
        .iter()
        .filter_map(|e| match e {
            RtmpEvent::Send(b) if b.len() == 16 && b[7] == 3 => Some(b),
            _ => None,
        })
        .collect();
    let seqs: Vec<u32> = acks
        .iter()
        .map(|b| u32::from_be_bytes([b[12], b[13], b[14], b[15]]))
        .collect();
    // The handshake and commands already exceed the window: acknowledged at once,
    // then again once 1000 more bytes arrived (12 x 112 bytes = 1344 bytes sent).
    assert_eq!(seqs.len(), 2, "{events:?}");
    assert_eq!(seqs[0] as usize, publish_prefix().len() + 16);
    assert!(seqs[1] - seqs[0] >= 1000 && seqs[1] - seqs[0] < 1112);
}

#[test]
fn ping_request_gets_a_response() {
    let (mut s, _) = publishing_session();
    let mut data = Vec::new();
    message(&mut data, 2, 0, 4, 0, &[0, 6, 1, 2, 3, 4], 128);
    let events = s.feed(&data).unwrap();
    let [RtmpEvent::Send(b)] = events.as_slice() else {
        panic!("{events:?}")
    };
    assert_eq!(&b[12..], &[0, 7, 1, 2, 3, 4]);
}

#[test]
fn message_above_the_limit_is_an_error_before_buffering() {
    let mut s = PublishSession::new(RtmpLimits {
        max_message_size: 1000,
        ..RtmpLimits::default()
    });
    let mut data = handshake();
    // A 16 MiB - 1 video message header; no payload follows.
    data.extend_from_slice(&[6, 0, 0, 0, 0xFF, 0xFF, 0xFF, 9, 1, 0, 0, 0]);
    let err = s.feed(&data).unwrap_err();
    assert_eq!(
        err,
        Error::MessageTooLarge {
            csid: 6,
            offset: 3073,
            size: 0xFF_FFFF,
            limit: 1000
        }
    );
}

#[test]
fn limits_set_before_publishing_are_relaxed_after_it() {
    // Small messages until the publish is accepted, then the usual limits.
    let small = RtmpLimits {
        max_message_size: 2048,
        ..RtmpLimits::default()
    };
    let mut s = PublishSession::new(small);
    let mut out = Vec::new();
    drive(&mut s, &publish_prefix(), &mut out).unwrap();
    s.set_limits(RtmpLimits::default());
    let mut data = Vec::new();
    message(&mut data, 6, 0, 18, 1, &[0u8; 4000], 128);
    s.feed(&data).unwrap();
    // The same message before publishing is refused from its header on.
    let mut s = PublishSession::new(small);
    let mut data = handshake();
    message(&mut data, 6, 0, 18, 1, &[0u8; 4000], 128);
    assert!(matches!(
        s.feed(&data),
        Err(Error::MessageTooLarge { limit: 2048, .. })
    ));
}

#[test]
fn chunk_size_above_the_limit_is_an_error() {
    let mut s = PublishSession::new(RtmpLimits {
        max_chunk_size: 65536,
        ..RtmpLimits::default()
    });
    let mut data = handshake();
    message(&mut data, 2, 0, 1, 0, &65537u32.to_be_bytes(), 128);
    assert!(matches!(
        s.feed(&data),
        Err(Error::Limit {
            what: "chunk size",
            ..
        })
    ));
}

#[test]
fn type3_chunk_without_header_is_an_error() {
    let mut s = PublishSession::new(RtmpLimits::default());
    let mut data = handshake();
    data.push(0xC5);
    assert!(matches!(
        s.feed(&data),
        Err(Error::Chunk {
            csid: 5,
            offset: 3073,
            ..
        })
    ));
}

#[test]
fn unpublish_commands_end_the_publish_once() {
    let (mut s, _) = publishing_session();
    let mut data = Vec::new();
    for name in ["FCUnpublish", "deleteStream", "closeStream"] {
        let c = command(&[amf0::string(name), Value::Number(0.0), Value::Null]);
        message(&mut data, 3, 0, 20, 0, &c, 128);
    }
    assert_eq!(s.feed(&data).unwrap(), [RtmpEvent::Unpublished]);
}

#[test]
fn aggregate_messages_are_split_into_frames() {
    let (_, asc) = recorded_inits();
    let (mut s, _) = publishing_session();
    let mut data = Vec::new();
    message(&mut data, 4, 0, 8, 1, &audio_seq_header(&asc), 128);
    let mut agg = Vec::new();
    for (ts, byte) in [(500u32, 1u8), (523, 2)] {
        let body = [0xAF, 1, byte];
        agg.push(8);
        agg.extend_from_slice(&(body.len() as u32).to_be_bytes()[1..]);
        agg.extend_from_slice(&ts.to_be_bytes()[1..]);
        agg.push(0);
        agg.extend_from_slice(&[0, 0, 0]);
        agg.extend_from_slice(&body);
        agg.extend_from_slice(&(11 + body.len() as u32).to_be_bytes());
    }
    message(&mut data, 4, 2000, 22, 1, &agg, 128);
    let mut events = Vec::new();
    drive(&mut s, &data, &mut events).unwrap();
    let f = frames(&events);
    let got: Vec<(i64, u8)> = f.iter().map(|f| (f.dts, f.data[0])).collect();
    assert_eq!(got, [(2_000_000, 1), (2_023_000, 2)]);
}

#[test]
fn composition_time_out_of_range_is_an_error() {
    let (avcc, _) = recorded_inits();
    let (mut s, _) = publishing_session();
    let mut data = Vec::new();
    message(&mut data, 6, 0, 9, 1, &video_seq_header(&avcc), 4096);
    message(
        &mut data,
        6,
        0,
        9,
        1,
        &video_frame(true, 8_000_000, 10),
        4096,
    );
    assert!(matches!(s.feed(&data), Err(Error::Message { .. })));
}

#[test]
fn malformed_command_is_an_error_with_context() {
    let mut s = PublishSession::new(RtmpLimits::default());
    let mut data = handshake();
    message(&mut data, 3, 0, 20, 0, &[0x02, 0x00, 0x10, b'c'], 128);
    let err = s.feed(&data).unwrap_err();
    assert!(
        matches!(
            &err,
            Error::Message {
                csid: 3,
                offset: 3073,
                ..
            }
        ),
        "{err}"
    );
}

// ---- Fuzzing: never panic ----

fn feed_all(limits: RtmpLimits, pieces: &[&[u8]]) {
    let mut s = PublishSession::new(limits);
    let mut out = Vec::new();
    for p in pieces {
        if drive(&mut s, p, &mut out).is_err() {
            // Dead after an error: further input is refused, without panicking.
            assert!(matches!(s.feed(&[1, 2, 3]), Err(Error::Closed { .. })));
            return;
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn random_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..4096)) {
        feed_all(RtmpLimits::default(), &[&data]);
    }

    #[test]
    fn random_chunk_stream_after_handshake_never_panics(
        data in proptest::collection::vec(any::<u8>(), 0..4096),
        split in 0usize..4096,
    ) {
        let hs = handshake();
        let split = split.min(data.len());
        let small = RtmpLimits { max_message_size: 2048, max_chunk_size: 4096 };
        feed_all(small, &[&hs, &data[..split], &data[split..]]);
    }

    #[test]
    fn corrupted_recording_never_panics(
        edits in proptest::collection::vec((0usize..RECORDED.len(), any::<u8>()), 1..8),
        cut in 0usize..RECORDED.len(),
    ) {
        let mut data = RECORDED.to_vec();
        for (at, byte) in edits {
            data[at] = byte;
        }
        let (a, b) = data.split_at(cut);
        feed_all(RtmpLimits::default(), &[a, b]);
    }
}
