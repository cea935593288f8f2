//! A small MSB-first bit reader for bitstream headers (SPS, AudioSpecificConfig).

use crate::{Error, Result};

/// Reads bits MSB-first from a byte slice; every read past the end is an error.
pub(crate) struct BitReader<'a> {
    data: &'a [u8],
    /// Position in bits from the start of `data`.
    pos: usize,
    what: &'static str,
}

impl<'a> BitReader<'a> {
    /// A reader over `data`; `what` names the structure in errors.
    pub(crate) fn new(data: &'a [u8], what: &'static str) -> Self {
        BitReader { data, pos: 0, what }
    }

    fn truncated(&self) -> Error {
        Error::Truncated {
            what: self.what,
            offset: self.pos / 8,
        }
    }

    /// Reads one bit.
    pub(crate) fn bit(&mut self) -> Result<bool> {
        let byte = *self
            .data
            .get(self.pos / 8)
            .ok_or_else(|| self.truncated())?;
        let bit = (byte >> (7 - (self.pos % 8))) & 1;
        self.pos += 1;
        Ok(bit == 1)
    }

    /// Reads `n` (at most 32) bits as an unsigned number.
    pub(crate) fn bits(&mut self, n: u32) -> Result<u32> {
        debug_assert!(n <= 32);
        let mut v: u64 = 0;
        for _ in 0..n {
            v = (v << 1) | u64::from(self.bit()?);
        }
        // At most 32 bits were shifted in, so this always fits.
        Ok(v as u32)
    }

    /// Reads 8 bits.
    pub(crate) fn u8(&mut self) -> Result<u8> {
        // 8 bits always fit in a u8.
        Ok(self.bits(8)? as u8)
    }

    /// Reads an Exp-Golomb unsigned number (`ue(v)`), at most 32 bits of value.
    pub(crate) fn ue(&mut self) -> Result<u32> {
        let mut zeros = 0u32;
        while !self.bit()? {
            zeros += 1;
            if zeros > 31 {
                return Err(Error::Invalid {
                    what: self.what,
                    offset: self.pos / 8,
                    reason: "Exp-Golomb code longer than 32 bits".into(),
                });
            }
        }
        let rest = self.bits(zeros)?;
        // zeros <= 31, so (1 << zeros) - 1 + rest <= 2^32 - 2.
        Ok(((1u64 << zeros) - 1 + u64::from(rest)) as u32)
    }

    /// Reads an Exp-Golomb signed number (`se(v)`).
    pub(crate) fn se(&mut self) -> Result<i32> {
        let k = i64::from(self.ue()?);
        let v = if k % 2 == 1 { (k + 1) / 2 } else { -(k / 2) };
        // |v| <= 2^31 - 1 because k < 2^32 - 1.
        Ok(v as i32)
    }
}

/// Removes H.264/H.265 emulation-prevention bytes (`00 00 03` becomes `00 00`).
pub(crate) fn unescape_rbsp(data: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(data.len());
    let mut zeros = 0usize;
    for &b in data {
        if zeros >= 2 && b == 3 {
            zeros = 0;
            continue;
        }
        if b == 0 {
            zeros += 1;
        } else {
            zeros = 0;
        }
        out.push(b);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exp_golomb() {
        // 1 | 010 | 011 | 00100 | 00101 -> 0, 1, 2, 3, 4
        let data = [0b1010_0110, 0b0100_0010, 0b1000_0000];
        let mut r = BitReader::new(&data, "test");
        assert_eq!(r.ue().unwrap(), 0);
        assert_eq!(r.ue().unwrap(), 1);
        assert_eq!(r.ue().unwrap(), 2);
        assert_eq!(r.ue().unwrap(), 3);
        assert_eq!(r.ue().unwrap(), 4);
        assert!(r.ue().is_err());
    }

    #[test]
    fn signed_exp_golomb() {
        // ue 1 -> +1, ue 2 -> -1
        let data = [0b0100_1100];
        let mut r = BitReader::new(&data, "test");
        assert_eq!(r.se().unwrap(), 1);
        assert_eq!(r.se().unwrap(), -1);
    }

    #[test]
    fn unescape() {
        assert_eq!(
            unescape_rbsp(&[0, 0, 3, 1, 0, 0, 3, 0, 0, 3]),
            vec![0, 0, 1, 0, 0, 0, 0]
        );
    }

    #[test]
    fn all_zero_ue_is_error() {
        let data = [0u8; 8];
        assert!(BitReader::new(&data, "t").ue().is_err());
    }
}
