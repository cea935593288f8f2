//! Camera pixel formats to I420 (the encoders' input): packed YUYV 4:2:2, NV12, YU12,
//! and JPEG (MJPEG cameras) through a pure-Rust decoder.

use crate::{Error, Result, I420};

fn check(len: usize, want: usize, what: &str) -> Result<()> {
    if len < want {
        return Err(Error::InvalidArgument(format!(
            "{what} frame of {len} bytes, {want} expected"
        )));
    }
    Ok(())
}

impl I420 {
    /// From packed YUYV (4:2:2): chroma of every other row is dropped.
    pub fn from_yuyv(width: u32, height: u32, data: &[u8]) -> Result<I420> {
        let (w, h) = (width as usize, height as usize);
        check(data.len(), w * h * 2, "YUYV")?;
        let mut pic = I420::new(width, height);
        let (cw, _) = pic.chroma_size();
        let cw = cw as usize;
        for y in 0..h {
            let row = &data[y * w * 2..(y + 1) * w * 2];
            for x in 0..w {
                pic.y[y * w + x] = row[x * 2];
            }
            if y % 2 == 0 {
                for cx in 0..w / 2 {
                    pic.u[(y / 2) * cw + cx] = row[cx * 4 + 1];
                    pic.v[(y / 2) * cw + cx] = row[cx * 4 + 3];
                }
            }
        }
        Ok(pic)
    }

    /// From NV12 (Y plane, then interleaved CbCr at half resolution).
    pub fn from_nv12(width: u32, height: u32, data: &[u8]) -> Result<I420> {
        let (w, h) = (width as usize, height as usize);
        let mut pic = I420::new(width, height);
        let (cw, ch) = pic.chroma_size();
        let (cw, ch) = (cw as usize, ch as usize);
        check(data.len(), w * h + cw * ch * 2, "NV12")?;
        pic.y.copy_from_slice(&data[..w * h]);
        for i in 0..cw * ch {
            pic.u[i] = data[w * h + 2 * i];
            pic.v[i] = data[w * h + 2 * i + 1];
        }
        Ok(pic)
    }

    /// From YU12 (I420 planes back to back).
    pub fn from_yu12(width: u32, height: u32, data: &[u8]) -> Result<I420> {
        let (w, h) = (width as usize, height as usize);
        let mut pic = I420::new(width, height);
        let (cw, ch) = pic.chroma_size();
        let c = (cw * ch) as usize;
        check(data.len(), w * h + 2 * c, "YU12")?;
        pic.y.copy_from_slice(&data[..w * h]);
        pic.u.copy_from_slice(&data[w * h..w * h + c]);
        pic.v.copy_from_slice(&data[w * h + c..w * h + 2 * c]);
        Ok(pic)
    }

    /// Decodes a JPEG (an MJPEG camera's frame).
    pub fn from_jpeg(data: &[u8]) -> Result<I420> {
        use zune_jpeg::zune_core::colorspace::ColorSpace;
        use zune_jpeg::zune_core::options::DecoderOptions;
        let opts = DecoderOptions::default().jpeg_set_out_colorspace(ColorSpace::YCbCr);
        // The decoder may panic on a hostile or corrupt frame (an arithmetic overflow in
        // its IDCT, found by tests/fuzz): that is a bad frame, not a dead input.
        let decoded = std::panic::catch_unwind(|| {
            let mut dec = zune_jpeg::JpegDecoder::new_with_options(data, opts);
            let pixels = dec.decode();
            (pixels, dec.dimensions())
        });
        let (pixels, dimensions) =
            decoded.map_err(|_| Error::InvalidArgument("JPEG decoding: a corrupt frame".into()))?;
        let pixels = pixels.map_err(|e| Error::InvalidArgument(format!("JPEG decoding: {e:?}")))?;
        let (w, h) =
            dimensions.ok_or_else(|| Error::InvalidArgument("JPEG without dimensions".into()))?;
        check(pixels.len(), w * h * 3, "decoded JPEG")?;
        let mut pic = I420::new(w as u32, h as u32);
        let (cw, _) = pic.chroma_size();
        let cw = cw as usize;
        for y in 0..h {
            for x in 0..w {
                let p = (y * w + x) * 3;
                pic.y[y * w + x] = pixels[p];
                if y % 2 == 0 && x % 2 == 0 {
                    pic.u[(y / 2) * cw + x / 2] = pixels[p + 1];
                    pic.v[(y / 2) * cw + x / 2] = pixels[p + 2];
                }
            }
        }
        Ok(pic)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yuyv_and_nv12_convert_and_short_frames_are_errors() {
        let yuyv = [10u8, 100, 20, 200].repeat(4 * 2); // 4x2 pixels
        let pic = I420::from_yuyv(4, 2, &yuyv).unwrap();
        assert_eq!(pic.y, vec![10, 20, 10, 20, 10, 20, 10, 20]);
        assert_eq!(
            (pic.u.clone(), pic.v.clone()),
            (vec![100, 100], vec![200, 200])
        );
        assert!(I420::from_yuyv(4, 2, &yuyv[..10]).is_err());
        let mut nv12 = vec![7u8; 8];
        nv12.extend_from_slice(&[1, 2, 3, 4]);
        let pic = I420::from_nv12(4, 2, &nv12).unwrap();
        assert_eq!((pic.u, pic.v), (vec![1, 3], vec![2, 4]));
    }

    #[test]
    fn jpeg_round_trip_keeps_the_picture() {
        let mut pic = I420::new(64, 48);
        crate::TestPattern::new(64, 48).render(3, &[], &mut pic);
        let jpg = crate::JpegEncoder::new(90, 1)
            .unwrap()
            .encode(&pic)
            .unwrap();
        let back = I420::from_jpeg(&jpg).unwrap();
        assert_eq!((back.width, back.height), (64, 48));
        let diff: u64 = pic
            .y
            .iter()
            .zip(&back.y)
            .map(|(a, b)| a.abs_diff(*b) as u64)
            .sum();
        assert!(diff / (64 * 48) < 8, "mean luma error {}", diff / (64 * 48));
        assert!(I420::from_jpeg(b"not a jpeg").is_err());
    }

    #[test]
    fn a_jpeg_that_overflows_the_decoders_idct_is_an_error() {
        // Found by tests/fuzz (target jpeg): the decoder panicked (multiply overflow).
        let jpg = include_bytes!("regressions/jpeg-idct-overflow.jpg");
        assert!(I420::from_jpeg(jpg).is_err());
    }
}
