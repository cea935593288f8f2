//! JPEG frames of MJPEG cameras, decoded to I420.
#![no_main]

use brume_codec::I420;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // from_jpeg turns a panic of the third-party decoder into an error: take back
    // libfuzzer-sys's aborting panic hook so that a caught panic is no crash. A panic
    // that escapes from_jpeg still aborts (libfuzzer-sys checks every run).
    static DEFAULT_HOOK: std::sync::Once = std::sync::Once::new();
    DEFAULT_HOOK.call_once(|| drop(std::panic::take_hook()));
    if let Ok(pic) = I420::from_jpeg(data) {
        assert!(pic.is_consistent());
    }
});
