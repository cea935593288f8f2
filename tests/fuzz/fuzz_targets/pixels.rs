//! Raw camera frames (YUYV, NV12, YU12) converted to I420. The first four bytes pick
//! the negotiated size (what the driver reported), the rest is the frame as dequeued
//! (any length).
#![no_main]

use brume_codec::I420;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((size, frame)) = data.split_first_chunk::<4>() else {
        return;
    };
    let width = u32::from(u16::from_le_bytes([size[0], size[1]]) % 1024);
    let height = u32::from(u16::from_le_bytes([size[2], size[3]]) % 1024);
    for pic in [
        I420::from_yuyv(width, height, frame),
        I420::from_nv12(width, height, frame),
        I420::from_yu12(width, height, frame),
    ]
    .into_iter()
    .flatten()
    {
        assert!(pic.is_consistent());
    }
});
