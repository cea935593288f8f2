//! JPEG encoding of I420 pictures (baseline, 4:2:0), optionally downscaled by an
//! integer factor: the MJPEG and snapshot outputs of sources that have no JPEG of
//! their own.

use crate::{Error, Result, I420};
use jpeg_encoder::{ColorType, Encoder, SamplingFactor};

/// Encodes pictures to JPEG.
pub struct JpegEncoder {
    quality: u8,
    scale: u32,
    ycbcr: Vec<u8>,
}

impl JpegEncoder {
    /// `quality` 1..=100; `scale` divides both dimensions (1 = full size).
    pub fn new(quality: u8, scale: u32) -> Result<JpegEncoder> {
        if !(1..=100).contains(&quality) || scale == 0 || scale > 16 {
            return Err(Error::InvalidArgument(format!(
                "JPEG quality {quality} (1..=100) or scale {scale} (1..=16)"
            )));
        }
        Ok(JpegEncoder {
            quality,
            scale,
            ycbcr: Vec::new(),
        })
    }

    /// The size of the pictures `encode` produces for a `width`x`height` input.
    pub fn output_size(&self, width: u32, height: u32) -> (u32, u32) {
        ((width / self.scale).max(1), (height / self.scale).max(1))
    }

    /// One complete JPEG image of `pic`.
    pub fn encode(&mut self, pic: &I420) -> Result<Vec<u8>> {
        if !pic.is_consistent() {
            return Err(Error::InvalidArgument("inconsistent picture".into()));
        }
        let (ow, oh) = self.output_size(pic.width, pic.height);
        if ow > u16::MAX as u32 || oh > u16::MAX as u32 {
            return Err(Error::InvalidArgument("picture too large for JPEG".into()));
        }
        let (cw, _) = pic.chroma_size();
        self.ycbcr.clear();
        self.ycbcr.reserve((ow * oh * 3) as usize);
        for y in 0..oh {
            let sy = y * self.scale;
            let row = (sy * pic.width) as usize;
            let crow = ((sy / 2) * cw) as usize;
            for x in 0..ow {
                let sx = x * self.scale;
                let c = crow + (sx / 2) as usize;
                self.ycbcr
                    .extend_from_slice(&[pic.y[row + sx as usize], pic.u[c], pic.v[c]]);
            }
        }
        let mut out = Vec::with_capacity((ow * oh / 4) as usize);
        let mut enc = Encoder::new(&mut out, self.quality);
        enc.set_sampling_factor(SamplingFactor::F_2_2);
        enc.encode(&self.ycbcr, ow as u16, oh as u16, ColorType::Ycbcr)
            .map_err(|e| Error::InvalidArgument(format!("JPEG encoding: {e}")))?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn encodes_a_scaled_baseline_jpeg() {
        let mut pic = I420::new(320, 180);
        crate::TestPattern::new(320, 180).render(1, &["12:00:00"], &mut pic);
        let mut e = JpegEncoder::new(80, 2).unwrap();
        let jpg = e.encode(&pic).unwrap();
        assert_eq!(&jpg[..2], &[0xff, 0xd8], "SOI");
        assert_eq!(&jpg[jpg.len() - 2..], &[0xff, 0xd9], "EOI");
        // SOF0 carries the scaled size.
        let sof = jpg
            .windows(2)
            .position(|w| w == [0xff, 0xc0])
            .expect("baseline SOF0");
        let h = u16::from_be_bytes([jpg[sof + 5], jpg[sof + 6]]);
        let w = u16::from_be_bytes([jpg[sof + 7], jpg[sof + 8]]);
        assert_eq!((w, h), (160, 90));
        assert!(JpegEncoder::new(0, 1).is_err());
    }
}
