//! Planar YUV 4:2:0 pictures.

/// Luma of black in limited ("TV") range.
pub(crate) const Y_BLACK: u8 = 16;
/// Chroma of a neutral (grey) colour.
pub(crate) const UV_NEUTRAL: u8 = 128;

/// A planar YUV 4:2:0 picture (BT.601, limited range), tightly packed: the luma plane
/// is `width * height` bytes, each chroma plane `ceil(width/2) * ceil(height/2)`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct I420 {
    /// Width in pixels.
    pub width: u32,
    /// Height in pixels.
    pub height: u32,
    /// Luma plane, row stride `width`.
    pub y: Vec<u8>,
    /// Cb plane, row stride `ceil(width/2)`.
    pub u: Vec<u8>,
    /// Cr plane, row stride `ceil(width/2)`.
    pub v: Vec<u8>,
}

impl I420 {
    /// A black picture of `width` x `height` pixels.
    pub fn new(width: u32, height: u32) -> Self {
        let (cw, ch) = chroma_dims(width, height);
        I420 {
            width,
            height,
            y: vec![Y_BLACK; width as usize * height as usize],
            u: vec![UV_NEUTRAL; cw * ch],
            v: vec![UV_NEUTRAL; cw * ch],
        }
    }

    /// Width and height of each chroma plane: `(ceil(width/2), ceil(height/2))`.
    pub fn chroma_size(&self) -> (u32, u32) {
        (self.width.div_ceil(2), self.height.div_ceil(2))
    }

    /// True if the plane lengths match the dimensions.
    pub fn is_consistent(&self) -> bool {
        let (cw, ch) = chroma_dims(self.width, self.height);
        self.y.len() == self.width as usize * self.height as usize
            && self.u.len() == cw * ch
            && self.v.len() == cw * ch
    }

    /// Makes this picture `width` x `height` (contents unspecified if the size changed).
    pub(crate) fn ensure_size(&mut self, width: u32, height: u32) {
        if self.width != width || self.height != height || !self.is_consistent() {
            *self = I420::new(width, height);
        }
    }
}

/// Chroma plane dimensions for a picture size.
pub(crate) fn chroma_dims(width: u32, height: u32) -> (usize, usize) {
    (width.div_ceil(2) as usize, height.div_ceil(2) as usize)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn new_sizes_planes() {
        let p = I420::new(5, 3);
        assert_eq!(p.y.len(), 15);
        assert_eq!(p.u.len(), 3 * 2);
        assert_eq!(p.v.len(), 6);
        assert_eq!(p.chroma_size(), (3, 2));
        assert!(p.is_consistent());
        assert!(I420::new(0, 0).is_consistent());
    }
}
