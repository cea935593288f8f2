//! The MPEG-TS demuxer (TS sources: packets, PAT/PMT, PES, H.264 and ADTS inside),
//! fed in pieces, and the muxers downstream of the tracks and frames it finds.
#![no_main]

mod media;

use brume_format::ts_demux::{DemuxEvent, TsDemuxer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut d = TsDemuxer::new();
    let mut events = Vec::new();
    for piece in data.chunks(1 + data.len() % 401) {
        d.push(piece, &mut events);
    }
    d.finish(&mut events);
    let _ = d.stats();
    let mut tracks = Vec::new();
    let mut frames = Vec::new();
    for e in events {
        match e {
            DemuxEvent::Tracks(t) => tracks = t,
            DemuxEvent::Frame(f) => frames.push(f),
        }
    }
    media::mux(&tracks, &frames);
});
