//! H.264 as it arrives from publishers, TS sources and encoders: Annex B byte
//! streams, length-prefixed (AVCC) access units, avcC records and SPS NAL units.
#![no_main]

use brume_format::h264;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // Annex B: split, convert, and parse every SPS found.
    let nals = h264::annexb_nals(data);
    for nal in &nals {
        let _ = h264::nal_type(nal);
        if h264::nal_type(nal) == 7 {
            let _ = h264::parse_sps(nal);
        }
    }
    let sps: Vec<&[u8]> = nals
        .iter()
        .copied()
        .filter(|n| h264::nal_type(n) == 7)
        .collect();
    let pps: Vec<&[u8]> = nals
        .iter()
        .copied()
        .filter(|n| h264::nal_type(n) == 8)
        .collect();
    if let Ok(record) = h264::avcc_from_parameter_sets(&sps, &pps) {
        let cfg = h264::parse_avcc(&record).expect("a record we built parses");
        let _ = h264::codec_string(&cfg);
    }
    let avcc = h264::annexb_to_avcc(data);
    let _ = h264::avcc_has_idr(&avcc);
    let mut back = Vec::new();
    h264::avcc_to_annexb(&avcc, &mut back).expect("converted AVCC is well formed");

    // The same bytes as AVCC, as an avcC record and as one SPS.
    let _ = h264::avcc_nals(data);
    let _ = h264::avcc_has_idr(data);
    let mut out = Vec::new();
    let _ = h264::avcc_to_annexb(data, &mut out);
    if let Ok(cfg) = h264::parse_avcc(data) {
        let _ = h264::codec_string(&cfg);
    }
    let _ = h264::parse_sps(data);
});
