//! Pure parsing of FLV video and audio tag bodies (the payload of RTMP video/audio
//! messages, i.e. an FLV tag without its 11-byte tag header).
//!
//! Supported: AVC (codec id 7) video and AAC (sound format 10) audio. Other legacy
//! codecs, video command frames and Enhanced RTMP (FourCC) video headers give
//! [`Error::Unsupported`]; malformed bodies give [`Error::Flv`].

use crate::error::{Error, Result};

/// FLV video codec id of AVC / H.264.
pub const CODEC_AVC: u8 = 7;
/// FLV sound format of AAC.
pub const SOUND_FORMAT_AAC: u8 = 10;

/// The FLV video frame type (upper nibble of the first body byte).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum VideoFrameType {
    /// 1: a keyframe (for AVC, a seekable frame).
    Key,
    /// 2: an inter frame.
    Inter,
    /// 3: a disposable inter frame (H.263 only).
    DisposableInter,
    /// 4: a generated keyframe (server use only).
    GeneratedKey,
}

/// One AVC packet inside an FLV video tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AvcPacket<'a> {
    /// AVCPacketType 0: the AVCDecoderConfigurationRecord (`avcC`), unparsed.
    SequenceHeader(&'a [u8]),
    /// AVCPacketType 1: one access unit of length-prefixed NAL units (prefix size as
    /// given by the `avcC`'s `lengthSizeMinusOne`).
    Nalus {
        /// Composition time offset (pts - dts) in milliseconds, signed 24-bit.
        composition_time_ms: i32,
        /// The NAL unit data, unparsed.
        data: &'a [u8],
    },
    /// AVCPacketType 2: end of sequence.
    EndOfSequence,
}

/// A parsed FLV video tag body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct VideoTag<'a> {
    /// The frame type.
    pub frame_type: VideoFrameType,
    /// The AVC packet.
    pub packet: AvcPacket<'a>,
}

impl VideoTag<'_> {
    /// True for frame type 1 (keyframe) or 4 (generated keyframe).
    pub fn is_keyframe(&self) -> bool {
        matches!(
            self.frame_type,
            VideoFrameType::Key | VideoFrameType::GeneratedKey
        )
    }
}

/// One AAC packet inside an FLV audio tag.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AacPacket<'a> {
    /// AACPacketType 0: the AudioSpecificConfig, unparsed.
    SequenceHeader(&'a [u8]),
    /// AACPacketType 1: one raw AAC access unit (no ADTS header).
    Raw(&'a [u8]),
}

/// A parsed FLV audio tag body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AudioTag<'a> {
    /// The AAC packet. (The FLV rate/size/channel bits are fixed for AAC and carry
    /// no information; the AudioSpecificConfig is authoritative.)
    pub packet: AacPacket<'a>,
}

fn flv_err(what: &'static str, offset: usize, reason: impl Into<String>) -> Error {
    Error::Flv {
        what,
        offset,
        reason: reason.into(),
    }
}

/// Parses an FLV video tag body. Only AVC (codec id 7) is supported.
pub fn parse_video_tag(body: &[u8]) -> Result<VideoTag<'_>> {
    const WHAT: &str = "video tag";
    let first = *body
        .first()
        .ok_or_else(|| flv_err(WHAT, 0, "empty video tag"))?;
    if first & 0x80 != 0 {
        return Err(Error::Unsupported {
            what: "FLV video",
            reason: "Enhanced RTMP (FourCC) video headers".into(),
        });
    }
    let frame_type = match first >> 4 {
        1 => VideoFrameType::Key,
        2 => VideoFrameType::Inter,
        3 => VideoFrameType::DisposableInter,
        4 => VideoFrameType::GeneratedKey,
        5 => {
            return Err(Error::Unsupported {
                what: "FLV video",
                reason: "video info/command frame".into(),
            })
        }
        t => return Err(flv_err(WHAT, 0, format!("invalid frame type {t}"))),
    };
    let codec = first & 0x0F;
    if codec != CODEC_AVC {
        return Err(Error::Unsupported {
            what: "FLV video",
            reason: format!("video codec id {codec} (only 7, AVC, is supported)"),
        });
    }
    if body.len() < 5 {
        return Err(flv_err(
            WHAT,
            body.len(),
            format!("AVC video tag of {} bytes is shorter than 5", body.len()),
        ));
    }
    // Signed 24-bit composition time: sign-extend through the top byte.
    let composition_time_ms = i32::from_be_bytes([body[2], body[3], body[4], 0]) >> 8;
    let rest = &body[5..];
    let packet = match body[1] {
        0 => {
            if rest.is_empty() {
                return Err(flv_err(WHAT, 5, "empty AVC sequence header"));
            }
            AvcPacket::SequenceHeader(rest)
        }
        1 => AvcPacket::Nalus {
            composition_time_ms,
            data: rest,
        },
        2 => AvcPacket::EndOfSequence,
        t => return Err(flv_err(WHAT, 1, format!("invalid AVCPacketType {t}"))),
    };
    Ok(VideoTag { frame_type, packet })
}

/// Parses an FLV audio tag body. Only AAC (sound format 10) is supported.
pub fn parse_audio_tag(body: &[u8]) -> Result<AudioTag<'_>> {
    const WHAT: &str = "audio tag";
    let first = *body
        .first()
        .ok_or_else(|| flv_err(WHAT, 0, "empty audio tag"))?;
    let format = first >> 4;
    if format != SOUND_FORMAT_AAC {
        return Err(Error::Unsupported {
            what: "FLV audio",
            reason: format!("sound format {format} (only 10, AAC, is supported)"),
        });
    }
    let kind = *body
        .get(1)
        .ok_or_else(|| flv_err(WHAT, 1, "AAC audio tag without AACPacketType"))?;
    let rest = &body[2..];
    let packet = match kind {
        0 => {
            if rest.is_empty() {
                return Err(flv_err(WHAT, 2, "empty AAC sequence header"));
            }
            AacPacket::SequenceHeader(rest)
        }
        1 => AacPacket::Raw(rest),
        t => return Err(flv_err(WHAT, 1, format!("invalid AACPacketType {t}"))),
    };
    Ok(AudioTag { packet })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn avc_sequence_header() {
        let body = [0x17, 0, 0, 0, 0, 1, 0x64, 0, 0x1f];
        let tag = parse_video_tag(&body).unwrap();
        assert!(tag.is_keyframe());
        assert_eq!(tag.packet, AvcPacket::SequenceHeader(&body[5..]));
    }

    #[test]
    fn avc_nalus_with_negative_composition_time() {
        let body = [0x27, 1, 0xFF, 0xFF, 0xFE, 0, 0, 0, 1, 0x41];
        let tag = parse_video_tag(&body).unwrap();
        assert_eq!(tag.frame_type, VideoFrameType::Inter);
        assert_eq!(
            tag.packet,
            AvcPacket::Nalus {
                composition_time_ms: -2,
                data: &body[5..]
            }
        );
        let body = [0x17, 1, 0x00, 0x00, 0x50];
        match parse_video_tag(&body).unwrap().packet {
            AvcPacket::Nalus {
                composition_time_ms,
                data,
            } => {
                assert_eq!(composition_time_ms, 80);
                assert!(data.is_empty());
            }
            p => panic!("{p:?}"),
        }
    }

    #[test]
    fn avc_end_of_sequence() {
        let tag = parse_video_tag(&[0x17, 2, 0, 0, 0]).unwrap();
        assert_eq!(tag.packet, AvcPacket::EndOfSequence);
    }

    #[test]
    fn video_errors() {
        assert!(matches!(parse_video_tag(&[]), Err(Error::Flv { .. })));
        assert!(matches!(
            parse_video_tag(&[0x17, 1, 0]),
            Err(Error::Flv { offset: 3, .. })
        ));
        assert!(matches!(
            parse_video_tag(&[0x17, 3, 0, 0, 0]),
            Err(Error::Flv { offset: 1, .. })
        ));
        assert!(matches!(
            parse_video_tag(&[0x07, 1, 0, 0, 0]),
            Err(Error::Flv { offset: 0, .. })
        ));
        assert!(matches!(
            parse_video_tag(&[0x12, 0, 0]),
            Err(Error::Unsupported { .. })
        ));
        // Enhanced RTMP: IsExHeader | keyframe, PacketTypeCodedFrames, 'avc1'.
        assert!(matches!(
            parse_video_tag(&[0x91, b'a', b'v', b'c', b'1']),
            Err(Error::Unsupported { .. })
        ));
        assert!(matches!(
            parse_video_tag(&[0x57, 0]),
            Err(Error::Unsupported { .. })
        ));
    }

    #[test]
    fn aac_packets() {
        let asc = [0xAF, 0, 0x12, 0x10];
        assert_eq!(
            parse_audio_tag(&asc).unwrap().packet,
            AacPacket::SequenceHeader(&[0x12, 0x10])
        );
        let raw = [0xAF, 1, 0x21, 0x10, 0x04];
        assert_eq!(
            parse_audio_tag(&raw).unwrap().packet,
            AacPacket::Raw(&[0x21, 0x10, 0x04])
        );
        assert!(matches!(parse_audio_tag(&[]), Err(Error::Flv { .. })));
        assert!(matches!(
            parse_audio_tag(&[0xAF]),
            Err(Error::Flv { offset: 1, .. })
        ));
        assert!(matches!(
            parse_audio_tag(&[0xAF, 0]),
            Err(Error::Flv { offset: 2, .. })
        ));
        assert!(matches!(
            parse_audio_tag(&[0xAF, 7]),
            Err(Error::Flv { offset: 1, .. })
        ));
        assert!(matches!(
            parse_audio_tag(&[0x2F, 0xFF]),
            Err(Error::Unsupported { .. })
        ));
    }
}
