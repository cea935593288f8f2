//! The internal media format: tracks and frames, shared by every process.
//!
//! * Time: every timestamp is in microseconds ([`TIMESCALE`]), one timescale for all
//!   tracks of a stream. Muxers convert to their container's timescale from the
//!   absolute time of each frame, never by accumulating durations, so no drift builds up.
//! * H.264 / H.265 frame data: one access unit as 4-byte big-endian length-prefixed NAL
//!   units (the MP4 "AVCC" layout), without parameter sets; `Track::init` holds the
//!   AVCDecoderConfigurationRecord (`avcC`) / HEVCDecoderConfigurationRecord (`hvcC`).
//! * AAC frame data: one raw access unit (no ADTS header); `init` holds the
//!   AudioSpecificConfig.
//! * Opus frame data: one packet; `init` holds the `OpusHead` (RFC 7845).
//! * JPEG frame data: one complete JFIF/JPEG image; `init` is empty.

use serde::{Deserialize, Serialize};

/// Ticks per second of every timestamp in the internal format (microseconds).
pub const TIMESCALE: u32 = 1_000_000;

/// A codec Brume carries. Repackaged into every output without re-encoding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Codec {
    H264,
    H265,
    Aac,
    Opus,
    Jpeg,
}

impl Codec {
    pub fn is_video(self) -> bool {
        matches!(self, Codec::H264 | Codec::H265 | Codec::Jpeg)
    }
    pub fn is_audio(self) -> bool {
        matches!(self, Codec::Aac | Codec::Opus)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Codec::H264 => "h264",
            Codec::H265 => "h265",
            Codec::Aac => "aac",
            Codec::Opus => "opus",
            Codec::Jpeg => "jpeg",
        }
    }
}

/// A track's description: what a decoder needs before the first frame.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Track {
    /// Track id, 1-based, unique within the stream.
    pub id: u32,
    pub codec: Codec,
    /// Codec initialisation data (see the module docs for its layout per codec).
    #[serde(with = "hex_bytes")]
    pub init: Vec<u8>,
    /// Video: pixel dimensions (0 for audio).
    pub width: u32,
    pub height: u32,
    /// Audio: sample rate in Hz and channel count (0 for video).
    pub sample_rate: u32,
    pub channels: u32,
}

impl Track {
    pub fn video(id: u32, codec: Codec, init: Vec<u8>, width: u32, height: u32) -> Self {
        Track {
            id,
            codec,
            init,
            width,
            height,
            sample_rate: 0,
            channels: 0,
        }
    }
    pub fn audio(id: u32, codec: Codec, init: Vec<u8>, sample_rate: u32, channels: u32) -> Self {
        Track {
            id,
            codec,
            init,
            width: 0,
            height: 0,
            sample_rate,
            channels,
        }
    }
}

/// One frame (access unit) of one track.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Frame {
    pub track: u32,
    /// Decode time, microseconds.
    pub dts: i64,
    /// Presentation time minus decode time, microseconds (0 without B-frames).
    pub cts: i32,
    /// True for a frame a decoder can start at (IDR for video; every audio frame).
    pub key: bool,
    pub data: Vec<u8>,
}

impl Frame {
    /// Presentation time, microseconds (saturating, so absurd times cannot overflow).
    pub fn pts(&self) -> i64 {
        self.dts.saturating_add(i64::from(self.cts))
    }
}

mod hex_bytes {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &[u8], s: S) -> Result<S::Ok, S::Error> {
        let mut out = String::with_capacity(v.len() * 2);
        for b in v {
            out.push_str(&format!("{b:02x}"));
        }
        s.serialize_str(&out)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<u8>, D::Error> {
        let s = String::deserialize(d)?;
        if s.len() % 2 != 0 {
            return Err(serde::de::Error::custom("odd hex length"));
        }
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).map_err(serde::de::Error::custom))
            .collect()
    }
}
