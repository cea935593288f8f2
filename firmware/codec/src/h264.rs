//! H.264 encoding with OpenH264.

use openh264::encoder::{
    BitRate, Complexity, Encoder, EncoderConfig, FrameRate, FrameType, IntraFramePeriod, Profile,
    RateControlMode, SpsPpsStrategy, UsageType,
};
use openh264::formats::YUVSource;
use openh264::{OpenH264API, Timestamp};

use crate::picture::I420;
use crate::{Error, Result};

/// Largest picture side OpenH264 encodes (level 5.2).
const MAX_SIDE: u32 = 3840;
/// Largest shorter picture side OpenH264 encodes.
const MAX_SHORT_SIDE: u32 = 2160;

const NAL_IDR: u8 = 5;
const NAL_SPS: u8 = 7;
const NAL_PPS: u8 = 8;

/// One encoded access unit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EncodedVideo {
    /// The access unit in Brume's internal layout: NAL units each preceded by a 4-byte
    /// big-endian length (AVCC), without SPS/PPS (those are in [`H264Encoder::avcc`]).
    pub data: Vec<u8>,
    /// True for an IDR access unit.
    pub key: bool,
}

/// A low-latency H.264 encoder (OpenH264, built from the bundled source): baseline
/// profile, one slice per picture, no B-frames, no lookahead, one thread, bitrate rate
/// control that never skips a frame, and an IDR every `keyint_frames` pictures or on
/// request.
pub struct H264Encoder {
    enc: Encoder,
    width: u32,
    height: u32,
    fps: u32,
    keyint: u32,
    /// Pictures given to the encoder so far.
    frames: u64,
    /// Pictures encoded since the last IDR, including it; `None` before the first.
    since_key: Option<u32>,
    sps: Vec<u8>,
    pps: Vec<u8>,
    avcc: Option<Vec<u8>>,
}

impl std::fmt::Debug for H264Encoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("H264Encoder")
            .field("width", &self.width)
            .field("height", &self.height)
            .field("fps", &self.fps)
            .field("keyint", &self.keyint)
            .field("frames", &self.frames)
            .finish()
    }
}

/// An [`I420`] seen by OpenH264 (its own `YUVSlices` asserts, this one is checked first).
struct Planes<'a>(&'a I420);

impl YUVSource for Planes<'_> {
    fn dimensions(&self) -> (usize, usize) {
        (self.0.width as usize, self.0.height as usize)
    }

    fn strides(&self) -> (usize, usize, usize) {
        let cw = self.0.width.div_ceil(2) as usize;
        (self.0.width as usize, cw, cw)
    }

    fn y(&self) -> &[u8] {
        &self.0.y
    }

    fn u(&self) -> &[u8] {
        &self.0.u
    }

    fn v(&self) -> &[u8] {
        &self.0.v
    }
}

impl H264Encoder {
    /// An encoder for `width` x `height` pictures (even, from 16x16 up to 3840x2160 or
    /// 2160x3840) at `fps` pictures per second and `bitrate_bps`, with an IDR every
    /// `keyint_frames` pictures (0: only the first picture and forced ones).
    pub fn new(
        width: u32,
        height: u32,
        fps: u32,
        bitrate_bps: u32,
        keyint_frames: u32,
    ) -> Result<Self> {
        let invalid = |m: String| Err(Error::InvalidArgument(m));
        if width < 16 || height < 16 || !width.is_multiple_of(2) || !height.is_multiple_of(2) {
            return invalid(format!(
                "H.264 picture size {width}x{height}: sides must be even and at least 16"
            ));
        }
        if width.max(height) > MAX_SIDE || width.min(height) > MAX_SHORT_SIDE {
            return invalid(format!(
                "H.264 picture size {width}x{height} exceeds 3840x2160"
            ));
        }
        if fps == 0 || fps > 240 {
            return invalid(format!("H.264 frame rate {fps} is not in 1..=240"));
        }
        if bitrate_bps < 1000 || bitrate_bps > i32::MAX as u32 {
            return invalid(format!("H.264 bitrate {bitrate_bps} b/s is out of range"));
        }
        let config = EncoderConfig::new()
            .usage_type(UsageType::CameraVideoRealTime)
            .profile(Profile::Baseline)
            .rate_control_mode(RateControlMode::Bitrate)
            .bitrate(BitRate::from_bps(bitrate_bps))
            .max_frame_rate(FrameRate::from_hz(fps as f32))
            .skip_frames(false)
            // IDRs are placed by `encode`, not by OpenH264's own period or scene detection.
            .intra_frame_period(IntraFramePeriod::from_num_frames(0))
            .scene_change_detect(false)
            .sps_pps_strategy(SpsPpsStrategy::ConstantId)
            .background_detection(false)
            .long_term_reference(false)
            .complexity(Complexity::Low)
            .num_threads(1);
        let enc = Encoder::with_api_config(OpenH264API::from_source(), config)
            .map_err(|e| Error::H264(format!("creating the encoder: {e}")))?;
        Ok(H264Encoder {
            enc,
            width,
            height,
            fps,
            keyint: keyint_frames,
            frames: 0,
            since_key: None,
            sps: Vec::new(),
            pps: Vec::new(),
            avcc: None,
        })
    }

    /// The AVCDecoderConfigurationRecord (`avcC`, `Track::init` of the H.264 track) built
    /// from the SPS and PPS the encoder emitted; `None` before the first keyframe.
    pub fn avcc(&self) -> Option<&[u8]> {
        self.avcc.as_deref()
    }

    /// Encodes one picture (which must have the encoder's size). The result is an IDR if
    /// `force_key`, if it is the first picture, or if `keyint_frames` pictures have
    /// passed since the last IDR. `None` if the encoder produced no picture (it is
    /// configured not to skip, so this should not happen).
    pub fn encode(&mut self, pic: &I420, force_key: bool) -> Result<Option<EncodedVideo>> {
        if pic.width != self.width || pic.height != self.height {
            return Err(Error::InvalidArgument(format!(
                "picture is {}x{}, the encoder {}x{}",
                pic.width, pic.height, self.width, self.height
            )));
        }
        if !pic.is_consistent() {
            return Err(Error::InvalidArgument(format!(
                "picture planes ({}, {}, {} bytes) do not match {}x{}",
                pic.y.len(),
                pic.u.len(),
                pic.v.len(),
                pic.width,
                pic.height
            )));
        }
        let want_key = match self.since_key {
            None => true,
            Some(n) => force_key || (self.keyint > 0 && n >= self.keyint),
        };
        // Before the first picture the encoder is not initialised yet, and its first
        // picture is an IDR anyway.
        if want_key && self.frames > 0 {
            self.enc.force_intra_frame();
        }
        let ms = self.frames.saturating_mul(1000) / u64::from(self.fps);
        let ts = Timestamp::from_millis(ms.min(i64::MAX as u64));
        self.frames += 1;

        let bs = self
            .enc
            .encode_at(&Planes(pic), ts)
            .map_err(|e| Error::H264(format!("encoding: {e}")))?;
        if matches!(bs.frame_type(), FrameType::Skip | FrameType::Invalid) {
            return Ok(None);
        }
        let mut data = Vec::new();
        let mut key = false;
        let mut sps: Option<Vec<u8>> = None;
        let mut pps: Option<Vec<u8>> = None;
        for l in 0..bs.num_layers() {
            let Some(layer) = bs.layer(l) else { continue };
            for n in 0..layer.nal_count() {
                let Some(buf) = layer.nal_unit(n) else {
                    continue;
                };
                for nal in split_annex_b(buf) {
                    match nal[0] & 0x1f {
                        NAL_SPS => sps = Some(nal.to_vec()),
                        NAL_PPS => pps = Some(nal.to_vec()),
                        t => {
                            key |= t == NAL_IDR;
                            let len = u32::try_from(nal.len()).map_err(|_| {
                                Error::H264(format!("NAL unit of {} bytes", nal.len()))
                            })?;
                            data.extend_from_slice(&len.to_be_bytes());
                            data.extend_from_slice(nal);
                        }
                    }
                }
            }
        }
        if data.is_empty() {
            return Ok(None);
        }
        if sps.is_some() || pps.is_some() {
            self.set_parameter_sets(sps, pps)?;
        }
        if key {
            if self.avcc.is_none() {
                return Err(Error::H264("IDR without SPS/PPS".into()));
            }
            self.since_key = Some(1);
        } else {
            self.since_key = self.since_key.map(|n| n.saturating_add(1));
        }
        Ok(Some(EncodedVideo { data, key }))
    }

    /// Records new parameter sets and rebuilds the `avcC` if they changed.
    fn set_parameter_sets(&mut self, sps: Option<Vec<u8>>, pps: Option<Vec<u8>>) -> Result<()> {
        let sps = sps.unwrap_or_else(|| self.sps.clone());
        let pps = pps.unwrap_or_else(|| self.pps.clone());
        if self.avcc.is_some() && sps == self.sps && pps == self.pps {
            return Ok(());
        }
        if sps.is_empty() || pps.is_empty() {
            return Err(Error::H264(
                "the encoder emitted an SPS or PPS alone".into(),
            ));
        }
        let avcc = brume_format::h264::avcc_from_parameter_sets(&[&sps], &[&pps])?;
        self.sps = sps;
        self.pps = pps;
        self.avcc = Some(avcc);
        Ok(())
    }
}

/// The NAL units of an Annex-B buffer (start codes and trailing zero bytes removed;
/// empty units skipped). A buffer without a start code is one NAL unit.
fn split_annex_b(buf: &[u8]) -> Vec<&[u8]> {
    let mut starts = Vec::new();
    let mut i = 0;
    while i + 3 <= buf.len() {
        if buf[i] == 0 && buf[i + 1] == 0 && buf[i + 2] == 1 {
            starts.push(i + 3);
            i += 3;
        } else {
            i += 1;
        }
    }
    if starts.is_empty() {
        starts.push(0);
    }
    let mut nals = Vec::with_capacity(starts.len());
    for (k, &s) in starts.iter().enumerate() {
        let end = starts.get(k + 1).map_or(buf.len(), |&next| next - 3);
        let mut nal = &buf[s..end.max(s)];
        while let [rest @ .., 0] = nal {
            nal = rest;
        }
        if !nal.is_empty() {
            nals.push(nal);
        }
    }
    nals
}

/// Decodes one H.264 keyframe (length-prefixed NAL units, as in the buffer) with the
/// track's avcC: the picture of a snapshot (`/<stream>.jpg`) for streams that have no
/// JPEG track (RTMP publishers, H.264 cameras). A fresh decoder per picture: nothing
/// is kept between snapshots.
pub fn decode_keyframe(avcc: &[u8], frame: &[u8]) -> Result<I420> {
    let cfg = brume_format::h264::parse_avcc(avcc)?;
    let mut annexb = Vec::with_capacity(frame.len() + 256);
    let nals = brume_format::h264::avcc_nals(frame)?;
    for nal in cfg
        .sps
        .iter()
        .chain(&cfg.pps)
        .map(Vec::as_slice)
        .chain(nals)
    {
        annexb.extend_from_slice(&[0, 0, 0, 1]);
        annexb.extend_from_slice(nal);
    }
    let mut dec = openh264::decoder::Decoder::new()
        .map_err(|e| Error::H264(format!("creating the decoder: {e}")))?;
    let copy = |yuv: &openh264::decoder::DecodedYUV<'_>| {
        let (w, h) = yuv.dimensions();
        let (sy, su, sv) = yuv.strides();
        let mut pic = I420::new(w as u32, h as u32);
        let (cw, ch) = pic.chroma_size();
        let rows = |dst: &mut Vec<u8>, src: &[u8], stride: usize, w: usize, h: usize| {
            for (r, row) in dst.chunks_exact_mut(w).take(h).enumerate() {
                row.copy_from_slice(&src[r * stride..r * stride + w]);
            }
        };
        rows(&mut pic.y, yuv.y(), sy, w, h);
        rows(&mut pic.u, yuv.u(), su, cw as usize, ch as usize);
        rows(&mut pic.v, yuv.v(), sv, cw as usize, ch as usize);
        pic
    };
    let decoded = dec
        .decode(&annexb)
        .map_err(|e| Error::H264(format!("decoding: {e}")))?;
    if let Some(yuv) = decoded {
        return Ok(copy(&yuv));
    }
    let rest = dec
        .flush_remaining()
        .map_err(|e| Error::H264(format!("decoding: {e}")))?;
    rest.first()
        .map(copy)
        .ok_or_else(|| Error::H264("the keyframe gave no picture".into()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyframes_decode_to_the_encoded_picture() {
        let mut enc = H264Encoder::new(64, 48, 25, 200_000, 25).unwrap();
        let mut pic = I420::new(64, 48);
        pic.y
            .iter_mut()
            .enumerate()
            .for_each(|(i, p)| *p = (i % 64 * 3) as u8);
        let out = enc.encode(&pic, true).unwrap().unwrap();
        let got = decode_keyframe(enc.avcc().unwrap(), &out.data).unwrap();
        assert_eq!((got.width, got.height), (64, 48));
        let err: u64 = got
            .y
            .iter()
            .zip(&pic.y)
            .map(|(a, b)| a.abs_diff(*b) as u64)
            .sum();
        assert!(err / (64 * 48) < 8, "mean luma error {}", err / (64 * 48));
        assert!(decode_keyframe(enc.avcc().unwrap(), &[0, 0, 0, 9, 1]).is_err());
    }

    #[test]
    fn splits_annex_b() {
        let buf = [
            0, 0, 0, 1, 0x67, 1, 2, 0, 0, 1, 0x68, 3, 0, 0, 0, 1, 0x65, 4, 0,
        ];
        let nals = split_annex_b(&buf);
        assert_eq!(nals, vec![&[0x67, 1, 2][..], &[0x68, 3], &[0x65, 4]]);
        assert_eq!(split_annex_b(&[0x41, 9]), vec![&[0x41, 9][..]]);
        assert!(split_annex_b(&[]).is_empty());
        assert!(split_annex_b(&[0, 0, 1]).is_empty());
        assert!(split_annex_b(&[0, 0, 1, 0, 0, 1]).is_empty());
    }

    #[test]
    fn rejects_bad_parameters_and_pictures() {
        assert!(H264Encoder::new(0, 240, 30, 500_000, 30).is_err());
        assert!(H264Encoder::new(321, 240, 30, 500_000, 30).is_err());
        assert!(H264Encoder::new(8, 8, 30, 500_000, 30).is_err());
        assert!(H264Encoder::new(4096, 2160, 30, 500_000, 30).is_err());
        assert!(H264Encoder::new(320, 240, 0, 500_000, 30).is_err());
        assert!(H264Encoder::new(320, 240, 30, 0, 30).is_err());
        let mut enc = H264Encoder::new(320, 240, 30, 500_000, 30).unwrap();
        assert!(enc.encode(&I420::new(160, 120), false).is_err());
        let mut bad = I420::new(320, 240);
        bad.u.pop();
        assert!(enc.encode(&bad, false).is_err());
        assert!(enc.avcc().is_none());
        // Still usable after rejected input.
        let out = enc.encode(&I420::new(320, 240), false).unwrap().unwrap();
        assert!(out.key);
        let avcc = enc.avcc().unwrap();
        assert_eq!(avcc[1], 66, "baseline profile");
    }

    #[test]
    fn forced_and_periodic_keys_and_smallest_size() {
        let mut enc = H264Encoder::new(16, 16, 25, 100_000, 4).unwrap();
        let pic = I420::new(16, 16);
        let keys: Vec<bool> = (0..10)
            .map(|i| {
                enc.encode(&pic, i == 6)
                    .unwrap()
                    .expect("no skipped frames")
                    .key
            })
            .collect();
        assert_eq!(
            keys,
            [true, false, false, false, true, false, true, false, false, false]
        );
    }
}
