//! FLV video and audio tag bodies (RTMP media payloads), and what is derived from a
//! sequence header: the avcC record and the AudioSpecificConfig.
#![no_main]

use brume_format::{aac, h264};
use brume_proto::flv::{self, AacPacket, AvcPacket};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(tag) = flv::parse_video_tag(data) {
        let _ = tag.is_keyframe();
        match tag.packet {
            AvcPacket::SequenceHeader(record) => {
                if let Ok(cfg) = h264::parse_avcc(record) {
                    let _ = h264::codec_string(&cfg);
                }
            }
            AvcPacket::Nalus { data, .. } => {
                let _ = h264::avcc_nals(data);
                let _ = h264::avcc_has_idr(data);
            }
            _ => {}
        }
    }
    if let Ok(tag) = flv::parse_audio_tag(data) {
        if let AacPacket::SequenceHeader(asc) = tag.packet {
            if let Ok(asc) = aac::parse_asc(asc) {
                let _ = aac::codec_string(&asc);
            }
        }
    }
});
