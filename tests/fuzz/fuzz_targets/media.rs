// Shared by the targets that produce tracks and frames from hostile input: the muxers
// downstream (fMP4 init segments, MPEG-TS) must take whatever a parser let through.

use brume_format::{fmp4, ts::TsMuxer, Frame, Track};

/// Builds what viewers would get from these tracks and frames; errors are fine,
/// panics are not.
#[allow(dead_code)]
pub fn mux(tracks: &[Track], frames: &[Frame]) {
    let _ = fmp4::init_segment(tracks);
    if let Ok(mut m) = TsMuxer::new(tracks) {
        let mut out = Vec::new();
        for f in frames {
            let _ = m.mux(f, &mut out);
        }
    }
}
