//! G.711 (ITU-T G.711, PCMA and PCMU) to linear 16-bit PCM: what IP cameras send as
//! telephone-quality audio, decoded so it can be encoded to AAC. Each byte is one
//! sample; the expansion is the standard's segment arithmetic (as in Sun's reference
//! `g711.c`), exact, with no table to build.

/// One A-law byte (PCMA) to a linear sample.
pub fn alaw_to_linear(byte: u8) -> i16 {
    let a = byte ^ 0x55;
    let mantissa = i32::from(a & 0x0f) << 4;
    let segment = (a & 0x70) >> 4;
    let magnitude = match segment {
        0 => mantissa + 8,
        s => (mantissa + 0x108) << (s - 1),
    };
    // A-law's sign bit set means positive.
    (if a & 0x80 != 0 { magnitude } else { -magnitude }) as i16
}

/// One µ-law byte (PCMU) to a linear sample.
pub fn ulaw_to_linear(byte: u8) -> i16 {
    const BIAS: i32 = 0x84;
    let u = !byte;
    let t = ((i32::from(u & 0x0f) << 3) + BIAS) << ((u & 0x70) >> 4);
    (if u & 0x80 != 0 { BIAS - t } else { t - BIAS }) as i16
}

/// Decodes a G.711 payload (`alaw`: PCMA, else PCMU) to linear samples.
pub fn decode(payload: &[u8], alaw: bool) -> Vec<i16> {
    let f = if alaw { alaw_to_linear } else { ulaw_to_linear };
    payload.iter().map(|b| f(*b)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_codes() {
        // Silence, the smallest steps and the extremes, as the reference decoder gives them.
        assert_eq!(
            [0xff, 0x7f, 0xfe, 0x7e, 0x00, 0x80].map(ulaw_to_linear),
            [0, 0, 8, -8, -32124, 32124]
        );
        assert_eq!(
            [0xd5, 0x55, 0xaa, 0x2a].map(alaw_to_linear),
            [8, -8, 32256, -32256]
        );
    }

    #[test]
    fn same_as_ffmpeg() {
        // `ffmpeg -f alaw|mulaw -ar 8000 -i codes.bin -f s16le -` (ffmpeg 5.1).
        let codes = [
            0x00, 0x01, 0x02, 0x10, 0x2a, 0x55, 0x7e, 0x7f, 0x80, 0xaa, 0xd5, 0xfe, 0xff,
        ];
        assert_eq!(
            decode(&codes, true),
            [-5504, -5248, -6016, -2752, -32256, -8, -880, -848, 5504, 32256, 8, 880, 848]
        );
        assert_eq!(
            decode(&codes, false),
            [-32124, -31100, -30076, -15996, -5372, -716, -8, 0, 32124, 5372, 716, 8, 0]
        );
    }

    #[test]
    fn monotonic_over_each_half() {
        // Larger codes are larger magnitudes within a sign (after each law's inversion).
        let u: Vec<i16> = (0u8..=0x7f).map(|b| ulaw_to_linear(0x7f - b)).collect();
        assert!(u.windows(2).all(|w| w[0] > w[1]), "µ-law negative half");
        let a: Vec<i16> = (0u8..=0x7f)
            .map(|b| alaw_to_linear((b | 0x80) ^ 0x55))
            .collect();
        assert!(a.windows(2).all(|w| w[0] < w[1]), "A-law positive half");
    }
}
