//! The RTMP server side (`PublishSession`): handshake, chunk stream, AMF0 commands,
//! FLV payloads, the tracks and frames it derives. The input is what a publisher
//! sends. It is fed twice, at once and in small pieces: the media events must not
//! depend on how the bytes were split.
#![no_main]

mod media;

use brume_format::{Frame, Track};
use brume_proto::{PublishSession, RtmpEvent, RtmpLimits};
use libfuzzer_sys::fuzz_target;

/// Feeds `data` in pieces of `step` bytes, accepting every publish request. Returns
/// the events other than `Send`, and whether every call succeeded.
fn run(data: &[u8], step: usize) -> (Vec<RtmpEvent>, bool) {
    let mut s = PublishSession::new(RtmpLimits::default());
    let mut events = Vec::new();
    for piece in data.chunks(step) {
        let mut input = piece;
        loop {
            let evs = match s.feed(input) {
                Ok(evs) => evs,
                Err(_) => return (events, false),
            };
            input = &[];
            let mut again = false;
            for e in evs {
                match e {
                    RtmpEvent::Send(_) => {}
                    RtmpEvent::PublishRequested { .. } => {
                        if s.accept().is_err() {
                            return (events, false);
                        }
                        again = true;
                        events.push(e);
                    }
                    e => events.push(e),
                }
            }
            if !again {
                break;
            }
        }
    }
    (events, true)
}

fuzz_target!(|data: &[u8]| {
    let (whole, ok_whole) = run(data, data.len().max(1));
    let (pieces, ok_pieces) = run(data, 1 + data.len() % 97);
    if ok_whole && ok_pieces {
        assert_eq!(whole, pieces, "events depend on how the input was split");
    }
    let mut tracks: Vec<Track> = Vec::new();
    let mut frames: Vec<Frame> = Vec::new();
    for e in whole {
        match e {
            RtmpEvent::Tracks(t) => tracks = t,
            RtmpEvent::Frame(f) => frames.push(f),
            _ => {}
        }
    }
    media::mux(&tracks, &frames);
});
