//! AAC AudioSpecificConfig (from FLV sequence headers and fMP4/TS sources), and the
//! ADTS header built from what was parsed.
#![no_main]

use brume_format::aac;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(asc) = aac::parse_asc(data) {
        let _ = aac::codec_string(&asc);
        for len in [0, 1, 1000, 8184, 1 << 13, usize::MAX] {
            let _ = aac::adts_header(&asc, len);
        }
    }
});
