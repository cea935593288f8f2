//! AAC-LC encoding with Fraunhofer FDK AAC.

use fdk_aac::enc::{AudioObjectType, BitRate, ChannelMode, Encoder, EncoderParams, Transport};

use crate::{Error, Result};

/// Sample rates AAC-LC can signal with a sampling frequency index.
const SAMPLE_RATES: [u32; 12] = [
    96_000, 88_200, 64_000, 48_000, 44_100, 32_000, 24_000, 22_050, 16_000, 12_000, 11_025, 8_000,
];

/// Output buffer size: more than the 6144 bits per channel an AAC frame can take.
const OUT_BUF_BYTES: usize = 8192;

/// An AAC-LC encoder (FDK AAC, built from the bundled source) producing raw access units
/// (no ADTS header), 1024 samples per channel each, and the AudioSpecificConfig for
/// `Track::init`. Constant bitrate; mono or stereo.
pub struct AacEncoder {
    delay: u32,
    enc: Encoder,
    asc: Vec<u8>,
    channels: usize,
    frame_samples: u32,
    /// Interleaved input not yet given to the encoder (less than one frame after each call).
    pending: Vec<i16>,
    out: Vec<u8>,
}

impl std::fmt::Debug for AacEncoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AacEncoder")
            .field("channels", &self.channels)
            .field("asc", &self.asc)
            .field("pending", &self.pending.len())
            .finish()
    }
}

impl AacEncoder {
    /// An encoder for `sample_rate` Hz (one of the AAC rates, 8000 to 96000), `channels`
    /// (1 or 2) interleaved channels, at `bitrate_bps` (constant bitrate; FDK clamps it to
    /// what the rate and channels allow).
    pub fn new(sample_rate: u32, channels: u32, bitrate_bps: u32) -> Result<Self> {
        if !SAMPLE_RATES.contains(&sample_rate) {
            return Err(Error::InvalidArgument(format!(
                "AAC sample rate {sample_rate} Hz is not one of {SAMPLE_RATES:?}"
            )));
        }
        let mode = match channels {
            1 => ChannelMode::Mono,
            2 => ChannelMode::Stereo,
            n => {
                return Err(Error::InvalidArgument(format!(
                    "AAC encoder supports 1 or 2 channels, not {n}"
                )))
            }
        };
        if bitrate_bps == 0 {
            return Err(Error::InvalidArgument("AAC bitrate must not be 0".into()));
        }
        let enc = Encoder::new(EncoderParams {
            bit_rate: BitRate::Cbr(bitrate_bps),
            sample_rate,
            transport: Transport::Raw,
            channels: mode,
            audio_object_type: AudioObjectType::Mpeg4LowComplexity,
        })
        .map_err(|e| Error::Aac(format!("configuring the encoder: {e}")))?;
        let info = enc
            .info()
            .map_err(|e| Error::Aac(format!("reading the encoder info: {e}")))?;
        let asc_len = (info.confSize as usize).min(info.confBuf.len());
        let asc = info.confBuf[..asc_len].to_vec();
        if asc.len() < 2 {
            return Err(Error::Aac(format!(
                "AudioSpecificConfig of {} bytes",
                asc.len()
            )));
        }
        if info.frameLength == 0 {
            return Err(Error::Aac("frame length 0".into()));
        }
        Ok(AacEncoder {
            enc,
            asc,
            channels: channels as usize,
            frame_samples: info.frameLength,
            delay: info.nDelay,
            pending: Vec::new(),
            out: vec![0; OUT_BUF_BYTES.max(info.maxOutBufBytes as usize)],
        })
    }

    /// The AudioSpecificConfig (`Track::init` of an AAC track).
    pub fn asc(&self) -> &[u8] {
        &self.asc
    }

    /// The codec's delay in samples per channel (FDK's `nDelay`): the input sample a
    /// decoder's output starts with lags the access unit's position by this much, so
    /// timestamps are moved back by it to line audio up with video.
    pub fn delay_samples(&self) -> u32 {
        self.delay
    }

    /// Samples per channel in one access unit (1024).
    pub fn frame_samples(&self) -> u32 {
        self.frame_samples
    }

    /// Encodes interleaved samples (any count; a partial frame is kept for the next call)
    /// and returns the access units completed, oldest first, each one raw AAC frame of
    /// [`AacEncoder::frame_samples`] samples per channel. The encoder's priming delay
    /// means the first access units carry the start of the signal late, as with any AAC
    /// encoder.
    pub fn encode(&mut self, pcm: &[i16]) -> Result<Vec<Vec<u8>>> {
        self.pending.extend_from_slice(pcm);
        let frame = self.frame_samples as usize * self.channels;
        let mut aus = Vec::new();
        let mut pos = 0;
        while self.pending.len() - pos >= frame {
            let info = self
                .enc
                .encode(&self.pending[pos..pos + frame], &mut self.out)
                .map_err(|e| Error::Aac(format!("encoding: {e}")))?;
            if info.input_consumed == 0 && info.output_size == 0 {
                self.pending.drain(..pos);
                return Err(Error::Aac(
                    "the encoder neither took input nor gave output".into(),
                ));
            }
            if info.output_size > self.out.len() {
                self.pending.drain(..pos);
                return Err(Error::Aac(format!("output of {} bytes", info.output_size)));
            }
            pos += info.input_consumed.min(frame);
            if info.output_size > 0 {
                aus.push(self.out[..info.output_size].to_vec());
            }
        }
        self.pending.drain(..pos);
        Ok(aus)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_parameters() {
        assert!(AacEncoder::new(47_999, 1, 64_000).is_err());
        assert!(AacEncoder::new(48_000, 0, 64_000).is_err());
        assert!(AacEncoder::new(48_000, 3, 64_000).is_err());
        assert!(AacEncoder::new(48_000, 1, 0).is_err());
    }

    #[test]
    fn buffers_partial_frames() {
        let mut enc = AacEncoder::new(44_100, 2, 96_000).unwrap();
        assert_eq!(enc.asc(), [0x12, 0x10], "AAC-LC, 44.1 kHz, stereo");
        assert!(enc.encode(&[]).unwrap().is_empty());
        // 1023 stereo frames plus one lone left-channel sample: not yet a frame.
        assert!(enc.encode(&vec![100i16; 2047]).unwrap().is_empty());
        assert_eq!(enc.encode(&[100]).unwrap().len(), 1);
        assert_eq!(enc.encode(&vec![0i16; 2048 * 3 + 5]).unwrap().len(), 3);
    }
}
