//! What V4L2 drivers hand back, where it is parsed without the device: the filled span
//! of a dequeued buffer (driver's data_offset and bytesused), the driver's string
//! fields, fourccs, and the keyframe check on an M2M encoder's coded output.
#![no_main]

use brume_hw::v4l2::{fourcc_text, payload, text};
use brume_hw::v4l2_m2m::Codec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((head, map)) = data.split_first_chunk::<8>() else {
        return;
    };
    let start = u32::from_le_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let end = u32::from_le_bytes([head[4], head[5], head[6], head[7]]) as usize;
    let p = payload(map, start, end);
    assert!(p.len() <= map.len());
    let _ = text(map);
    let _ = fourcc_text(u32::from_le_bytes(
        *head.first_chunk::<4>().expect("4 bytes"),
    ));
    let _ = Codec::H264.is_key(p);
    let _ = Codec::Fwht.is_key(p);
});
