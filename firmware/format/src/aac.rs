//! AAC helpers: AudioSpecificConfig (ISO/IEC 14496-3 §1.6.2.1) and ADTS headers.

use crate::bits::BitReader;
use crate::{Error, Result};

/// The sampling frequencies addressable by a 4-bit `samplingFrequencyIndex`.
const SAMPLE_RATES: [u32; 13] = [
    96000, 88200, 64000, 48000, 44100, 32000, 24000, 22050, 16000, 12000, 11025, 8000, 7350,
];

/// The fields of an AudioSpecificConfig that Brume needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AudioSpecificConfig {
    /// Audio object type (2 = AAC-LC). For explicitly signalled SBR/PS (HE-AAC, types
    /// 5 and 29) this is the underlying core object type, as ADTS needs.
    pub object_type: u8,
    /// Sampling frequency in Hz (of the core decoder for HE-AAC).
    pub sample_rate: u32,
    /// Channel count: 1-6 for channel configurations 1-6, 8 for configuration 7, 0 when
    /// the configuration is defined by a program config element.
    pub channels: u8,
}

fn invalid(offset: usize, reason: impl Into<String>) -> Error {
    Error::Invalid {
        what: "AudioSpecificConfig",
        offset,
        reason: reason.into(),
    }
}

fn read_object_type(r: &mut BitReader) -> Result<u8> {
    let t = r.bits(5)?;
    let t = if t == 31 { 32 + r.bits(6)? } else { t };
    // At most 32 + 63 = 95.
    Ok(t as u8)
}

fn read_sample_rate(r: &mut BitReader) -> Result<u32> {
    let index = r.bits(4)?;
    if index == 15 {
        return r.bits(24);
    }
    SAMPLE_RATES
        .get(index as usize)
        .copied()
        .ok_or_else(|| invalid(0, format!("reserved samplingFrequencyIndex {index}")))
}

/// Parses an AudioSpecificConfig (as in an `esds` DecoderSpecificInfo or RTMP's AAC
/// sequence header).
pub fn parse_asc(data: &[u8]) -> Result<AudioSpecificConfig> {
    let mut r = BitReader::new(data, "AudioSpecificConfig");
    let mut object_type = read_object_type(&mut r)?;
    if object_type == 0 {
        return Err(invalid(0, "audio object type 0"));
    }
    let sample_rate = read_sample_rate(&mut r)?;
    let channel_config = r.bits(4)?;
    if object_type == 5 || object_type == 29 {
        // Explicit hierarchical SBR signalling: extension rate, then the core type.
        let _extension_rate = read_sample_rate(&mut r)?;
        object_type = read_object_type(&mut r)?;
    }
    if sample_rate == 0 {
        return Err(invalid(1, "sample rate 0"));
    }
    let channels = match channel_config {
        // At most 6.
        0..=6 => channel_config as u8,
        7 => 8,
        other => return Err(invalid(1, format!("reserved channelConfiguration {other}"))),
    };
    Ok(AudioSpecificConfig {
        object_type,
        sample_rate,
        channels,
    })
}

fn sample_rate_index(sample_rate: u32) -> Option<u8> {
    // The table has 13 entries, so the index fits a u8.
    SAMPLE_RATES
        .iter()
        .position(|&r| r == sample_rate)
        .map(|i| i as u8)
}

fn channel_config(channels: u8) -> Result<u8> {
    match channels {
        1..=6 => Ok(channels),
        8 => Ok(7),
        other => Err(Error::Unsupported {
            what: "AudioSpecificConfig",
            reason: format!("{other} channels have no channelConfiguration"),
        }),
    }
}

/// Builds a minimal AudioSpecificConfig (GASpecificConfig with all flags zero).
/// `channels` must be 1-6 or 8; `object_type` 1-95. Sample rates outside the standard
/// table are written with the explicit 24-bit form.
pub fn build_asc(object_type: u8, sample_rate: u32, channels: u8) -> Result<Vec<u8>> {
    if object_type == 0 || object_type > 95 {
        return Err(invalid(0, format!("audio object type {object_type}")));
    }
    if sample_rate == 0 || sample_rate >= 1 << 24 {
        return Err(invalid(0, format!("sample rate {sample_rate}")));
    }
    let config = channel_config(channels)?;
    let mut bits: Vec<(u32, u32)> = Vec::with_capacity(6);
    if object_type >= 31 {
        bits.push((5, 31));
        bits.push((6, u32::from(object_type - 32)));
    } else {
        bits.push((5, u32::from(object_type)));
    }
    match sample_rate_index(sample_rate) {
        Some(i) => bits.push((4, u32::from(i))),
        None => {
            bits.push((4, 15));
            bits.push((24, sample_rate));
        }
    }
    bits.push((4, u32::from(config)));
    // frameLengthFlag, dependsOnCoreCoder, extensionFlag.
    bits.push((3, 0));
    let mut out = Vec::with_capacity(8);
    let mut acc: u64 = 0;
    let mut n = 0u32;
    for (width, value) in bits {
        acc = (acc << width) | u64::from(value);
        n += width;
        while n >= 8 {
            n -= 8;
            // Masked to 8 bits.
            out.push((acc >> n) as u8);
            acc &= (1 << n) - 1;
        }
    }
    if n > 0 {
        // Fewer than 8 bits remain; pad them to a byte with zeros.
        out.push((acc << (8 - n)) as u8);
    }
    Ok(out)
}

/// A 7-byte ADTS header (no CRC) for one raw AAC access unit of `payload_len` bytes.
/// The object type must be 1-4 (ADTS's 2-bit profile), the sample rate one of the
/// standard table, and the channel count one that has a channel configuration.
pub fn adts_header(asc: &AudioSpecificConfig, payload_len: usize) -> Result<[u8; 7]> {
    const WHAT: &str = "ADTS header";
    if !(1..=4).contains(&asc.object_type) {
        return Err(Error::Unsupported {
            what: WHAT,
            reason: format!("audio object type {} in ADTS", asc.object_type),
        });
    }
    let profile = asc.object_type - 1;
    let freq = sample_rate_index(asc.sample_rate).ok_or_else(|| Error::Unsupported {
        what: WHAT,
        reason: format!("sample rate {} in ADTS", asc.sample_rate),
    })?;
    let chan = channel_config(asc.channels)?;
    let frame_len = payload_len
        .checked_add(7)
        .filter(|&l| l < 1 << 13)
        .ok_or_else(|| Error::Unsupported {
            what: WHAT,
            reason: format!("AAC frame of {payload_len} bytes is too long for ADTS"),
        })?;
    // frame_len < 2^13 was checked above; the shifts below keep every byte in range.
    let frame_len = frame_len as u16;
    Ok([
        0xff,
        0xf1, // MPEG-4, layer 0, no CRC
        (profile << 6) | (freq << 2) | (chan >> 2),
        ((chan & 3) << 6) | ((frame_len >> 11) as u8),
        (frame_len >> 3) as u8,
        (((frame_len & 7) as u8) << 5) | 0x1f, // buffer fullness 0x7ff (VBR)
        0xfc,                                  // fullness, one raw data block
    ])
}

/// The RFC 6381 codec string, e.g. `mp4a.40.2`.
pub fn codec_string(asc: &AudioSpecificConfig) -> String {
    format!("mp4a.40.{}", asc.object_type)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn parse_common_configs() {
        // AAC-LC 48 kHz stereo / 44.1 kHz mono.
        assert_eq!(
            parse_asc(&[0x11, 0x90]).unwrap(),
            AudioSpecificConfig {
                object_type: 2,
                sample_rate: 48000,
                channels: 2
            }
        );
        assert_eq!(
            parse_asc(&[0x12, 0x08]).unwrap(),
            AudioSpecificConfig {
                object_type: 2,
                sample_rate: 44100,
                channels: 1
            }
        );
        // HE-AAC explicit signalling: SBR (5), 24 kHz core, stereo, 48 kHz ext, AAC-LC.
        let he = parse_asc(&[0x2b, 0x11, 0x88, 0x00]).unwrap();
        assert_eq!((he.object_type, he.sample_rate, he.channels), (2, 24000, 2));
    }

    #[test]
    fn build_round_trips() {
        assert_eq!(build_asc(2, 48000, 2).unwrap(), vec![0x11, 0x90]);
        assert_eq!(build_asc(2, 44100, 1).unwrap(), vec![0x12, 0x08]);
        for (ot, rate, ch) in [(2, 8000, 1), (1, 96000, 6), (2, 12345, 8), (42, 48000, 2)] {
            let asc = parse_asc(&build_asc(ot, rate, ch).unwrap()).unwrap();
            assert_eq!(
                (asc.object_type, asc.sample_rate, asc.channels),
                (ot, rate, ch)
            );
        }
        assert!(build_asc(0, 48000, 2).is_err());
        assert!(build_asc(2, 0, 2).is_err());
        assert!(build_asc(2, 48000, 7).is_err());
        assert!(build_asc(2, 48000, 0).is_err());
    }

    #[test]
    fn parse_rejects_bad_input() {
        assert!(parse_asc(&[]).is_err());
        assert!(parse_asc(&[0x11]).is_err());
        assert!(parse_asc(&[0x00, 0x00]).is_err());
        // Reserved sampling frequency index 13.
        assert!(parse_asc(&[0x16, 0x90]).is_err());
    }

    #[test]
    fn adts_matches_ffmpeg() {
        // First header of testdata/clip_48k_mono_2s.aac (AAC-LC, 48 kHz, mono) holds a
        // 6-byte payload; FFmpeg writes buffer fullness 0x7ff too.
        let data = include_bytes!("../testdata/clip_48k_mono_2s.aac");
        let asc = AudioSpecificConfig {
            object_type: 2,
            sample_rate: 48000,
            channels: 1,
        };
        let len = (usize::from(data[3] & 3) << 11)
            | (usize::from(data[4]) << 3)
            | usize::from(data[5] >> 5);
        assert_eq!(adts_header(&asc, len - 7).unwrap(), data[..7]);
        assert!(adts_header(&asc, 8192 - 7).is_err());
        assert!(adts_header(&asc, 8191 - 7).is_ok());
        let bad = AudioSpecificConfig {
            object_type: 5,
            ..asc.clone()
        };
        assert!(adts_header(&bad, 10).is_err());
        assert_eq!(codec_string(&asc), "mp4a.40.2");
    }

    proptest! {
        #[test]
        fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..16)) {
            if let Ok(asc) = parse_asc(&data) {
                let _ = adts_header(&asc, 100);
                let _ = build_asc(asc.object_type, asc.sample_rate, asc.channels);
            }
        }
    }
}
