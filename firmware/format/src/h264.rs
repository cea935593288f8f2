//! H.264 / AVC helpers: SPS parsing, `avcC` records, Annex B <-> AVCC conversion.
//!
//! Brume's internal H.264 frames are AVCC (4-byte big-endian length-prefixed NAL units);
//! sources and the MPEG-TS muxer use Annex B (start-code delimited).

use crate::bits::{unescape_rbsp, BitReader};
use crate::{Error, Result};

/// NAL unit type of a coded slice of an IDR picture.
pub const NAL_IDR: u8 = 5;
/// NAL unit type of a sequence parameter set.
pub const NAL_SPS: u8 = 7;
/// NAL unit type of a picture parameter set.
pub const NAL_PPS: u8 = 8;
/// NAL unit type of an access unit delimiter.
pub const NAL_AUD: u8 = 9;

/// The fields of a sequence parameter set that Brume needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sps {
    /// `profile_idc` (66 baseline, 77 main, 100 high, ...).
    pub profile_idc: u8,
    /// The byte of `constraint_set0..5_flag` bits following `profile_idc`.
    pub constraint_flags: u8,
    /// `level_idc` (e.g. 31 for level 3.1).
    pub level_idc: u8,
    /// Displayed width in pixels, after frame cropping.
    pub width: u32,
    /// Displayed height in pixels, after frame cropping.
    pub height: u32,
}

/// Everything parsed from an SPS, including what an `avcC` extension needs.
struct SpsFull {
    sps: Sps,
    chroma_format_idc: u32,
    bit_depth_luma_minus8: u32,
    bit_depth_chroma_minus8: u32,
}

/// True for profiles whose SPS carries chroma format / bit depth / scaling lists.
fn is_high_profile(profile_idc: u8) -> bool {
    matches!(
        profile_idc,
        100 | 110 | 122 | 244 | 44 | 83 | 86 | 118 | 128 | 138 | 139 | 134 | 135
    )
}

/// True for profiles whose `avcC` carries the chroma / bit-depth extension bytes
/// (ISO/IEC 14496-15 §5.3.3.1.2: every profile but baseline, main and extended; this
/// is also what FFmpeg writes).
fn avcc_has_extension(profile_idc: u8) -> bool {
    !matches!(profile_idc, 66 | 77 | 88)
}

fn invalid(what: &'static str, offset: usize, reason: impl Into<String>) -> Error {
    Error::Invalid {
        what,
        offset,
        reason: reason.into(),
    }
}

fn skip_scaling_list(r: &mut BitReader, size: u32) -> Result<()> {
    let mut last = 8i32;
    let mut next = 8i32;
    for _ in 0..size {
        if next != 0 {
            let delta = r.se()?;
            next = (last + delta).rem_euclid(256);
        }
        if next != 0 {
            last = next;
        }
    }
    Ok(())
}

fn parse_sps_full(nal: &[u8]) -> Result<SpsFull> {
    const WHAT: &str = "H.264 SPS";
    let header = *nal.first().ok_or(Error::Truncated {
        what: WHAT,
        offset: 0,
    })?;
    if header & 0x1f != NAL_SPS {
        return Err(invalid(
            WHAT,
            0,
            format!("NAL type {} is not an SPS", header & 0x1f),
        ));
    }
    let rbsp = unescape_rbsp(&nal[1..]);
    let mut r = BitReader::new(&rbsp, WHAT);
    let profile_idc = r.u8()?;
    let constraint_flags = r.u8()?;
    let level_idc = r.u8()?;
    let _sps_id = r.ue()?;
    let mut chroma_format_idc = 1;
    let mut separate_colour_plane = false;
    let mut bit_depth_luma_minus8 = 0;
    let mut bit_depth_chroma_minus8 = 0;
    if is_high_profile(profile_idc) {
        chroma_format_idc = r.ue()?;
        if chroma_format_idc > 3 {
            return Err(invalid(WHAT, 4, "chroma_format_idc > 3"));
        }
        if chroma_format_idc == 3 {
            separate_colour_plane = r.bit()?;
        }
        bit_depth_luma_minus8 = r.ue()?;
        bit_depth_chroma_minus8 = r.ue()?;
        if bit_depth_luma_minus8 > 6 || bit_depth_chroma_minus8 > 6 {
            return Err(invalid(WHAT, 4, "bit depth above 14"));
        }
        let _qpprime_y_zero_transform_bypass = r.bit()?;
        if r.bit()? {
            let lists = if chroma_format_idc == 3 { 12 } else { 8 };
            for i in 0..lists {
                if r.bit()? {
                    skip_scaling_list(&mut r, if i < 6 { 16 } else { 64 })?;
                }
            }
        }
    }
    let _log2_max_frame_num_minus4 = r.ue()?;
    match r.ue()? {
        0 => {
            let _log2_max_poc_lsb_minus4 = r.ue()?;
        }
        1 => {
            let _delta_pic_order_always_zero = r.bit()?;
            let _offset_for_non_ref_pic = r.se()?;
            let _offset_for_top_to_bottom_field = r.se()?;
            let cycle = r.ue()?;
            if cycle > 255 {
                return Err(invalid(
                    WHAT,
                    0,
                    "num_ref_frames_in_pic_order_cnt_cycle > 255",
                ));
            }
            for _ in 0..cycle {
                let _offset_for_ref_frame = r.se()?;
            }
        }
        2 => {}
        other => {
            return Err(invalid(WHAT, 0, format!("pic_order_cnt_type {other}")));
        }
    }
    let _max_num_ref_frames = r.ue()?;
    let _gaps_in_frame_num_allowed = r.bit()?;
    let width_mbs = u64::from(r.ue()?) + 1;
    let height_map_units = u64::from(r.ue()?) + 1;
    let frame_mbs_only = r.bit()?;
    if !frame_mbs_only {
        let _mb_adaptive_frame_field = r.bit()?;
    }
    let _direct_8x8_inference = r.bit()?;
    let (mut crop_l, mut crop_r, mut crop_t, mut crop_b) = (0u64, 0u64, 0u64, 0u64);
    if r.bit()? {
        crop_l = r.ue()?.into();
        crop_r = r.ue()?.into();
        crop_t = r.ue()?.into();
        crop_b = r.ue()?.into();
    }
    let field_factor = if frame_mbs_only { 1 } else { 2 };
    let chroma_array_type = if separate_colour_plane {
        0
    } else {
        chroma_format_idc
    };
    let (crop_unit_x, crop_unit_y) = if chroma_array_type == 0 {
        (1, field_factor)
    } else {
        let sub_width = if chroma_format_idc == 3 { 1 } else { 2 };
        let sub_height = if chroma_format_idc == 1 { 2 } else { 1 };
        (sub_width, sub_height * field_factor)
    };
    let full_w = width_mbs * 16;
    let full_h = height_map_units * 16 * field_factor;
    let crop_w = (crop_l + crop_r) * crop_unit_x;
    let crop_h = (crop_t + crop_b) * crop_unit_y;
    if crop_w >= full_w || crop_h >= full_h {
        return Err(invalid(WHAT, 0, "frame cropping larger than the picture"));
    }
    let width = u32::try_from(full_w - crop_w).map_err(|_| invalid(WHAT, 0, "width too large"))?;
    let height =
        u32::try_from(full_h - crop_h).map_err(|_| invalid(WHAT, 0, "height too large"))?;
    Ok(SpsFull {
        sps: Sps {
            profile_idc,
            constraint_flags,
            level_idc,
            width,
            height,
        },
        chroma_format_idc,
        bit_depth_luma_minus8,
        bit_depth_chroma_minus8,
    })
}

/// Parses a sequence parameter set NAL unit (`nal` starts with the 1-byte NAL header,
/// may contain emulation-prevention bytes, and has no start code or length prefix).
pub fn parse_sps(nal: &[u8]) -> Result<Sps> {
    parse_sps_full(nal).map(|f| f.sps)
}

/// Builds an AVCDecoderConfigurationRecord (`avcC`) from SPS and PPS NAL units (each
/// with its NAL header, no start code). Profile and level come from the first SPS;
/// `lengthSizeMinusOne` is 3; for high profiles the chroma format and bit-depth
/// extension is appended.
pub fn avcc_from_parameter_sets(sps: &[&[u8]], pps: &[&[u8]]) -> Result<Vec<u8>> {
    const WHAT: &str = "avcC";
    let first = *sps
        .first()
        .ok_or_else(|| invalid(WHAT, 0, "no SPS given"))?;
    if pps.is_empty() {
        return Err(invalid(WHAT, 0, "no PPS given"));
    }
    if sps.len() > 31 {
        return Err(invalid(WHAT, 0, "more than 31 SPS"));
    }
    if pps.len() > 255 {
        return Err(invalid(WHAT, 0, "more than 255 PPS"));
    }
    let info = parse_sps_full(first)?;
    let mut out =
        Vec::with_capacity(16 + first.len() + pps.iter().map(|p| p.len() + 2).sum::<usize>());
    out.push(1);
    out.push(info.sps.profile_idc);
    out.push(info.sps.constraint_flags);
    out.push(info.sps.level_idc);
    out.push(0xfc | 3);
    // sps.len() <= 31 was checked above.
    out.push(0xe0 | sps.len() as u8);
    for (i, nal) in sps.iter().enumerate() {
        if nal.first().map(|h| h & 0x1f) != Some(NAL_SPS) {
            return Err(invalid(
                WHAT,
                i,
                "SPS list holds a NAL unit that is not an SPS",
            ));
        }
        let len = u16::try_from(nal.len())
            .map_err(|_| invalid(WHAT, i, "SPS longer than 65535 bytes"))?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(nal);
    }
    // pps.len() <= 255 was checked above.
    out.push(pps.len() as u8);
    for (i, nal) in pps.iter().enumerate() {
        if nal.first().map(|h| h & 0x1f) != Some(NAL_PPS) {
            return Err(invalid(
                WHAT,
                i,
                "PPS list holds a NAL unit that is not a PPS",
            ));
        }
        let len = u16::try_from(nal.len())
            .map_err(|_| invalid(WHAT, i, "PPS longer than 65535 bytes"))?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(nal);
    }
    if avcc_has_extension(info.sps.profile_idc) {
        // Each value was checked to be <= 6 (bit depth) or <= 3 (chroma) by the parser.
        out.push(0xfc | info.chroma_format_idc as u8);
        out.push(0xf8 | info.bit_depth_luma_minus8 as u8);
        out.push(0xf8 | info.bit_depth_chroma_minus8 as u8);
        out.push(0); // numOfSequenceParameterSetExt
    }
    Ok(out)
}

/// A parsed AVCDecoderConfigurationRecord.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AvcConfig {
    /// `AVCProfileIndication`.
    pub profile_idc: u8,
    /// `AVCLevelIndication`.
    pub level_idc: u8,
    /// SPS NAL units (with NAL header).
    pub sps: Vec<Vec<u8>>,
    /// PPS NAL units (with NAL header).
    pub pps: Vec<Vec<u8>>,
    /// Bytes per NAL length prefix in samples (1, 2 or 4).
    pub length_size: u8,
}

/// Parses an AVCDecoderConfigurationRecord (`avcC` box payload). The optional
/// high-profile extension after the PPS list is ignored.
pub fn parse_avcc(record: &[u8]) -> Result<AvcConfig> {
    const WHAT: &str = "avcC";
    let trunc = |offset| Error::Truncated { what: WHAT, offset };
    if record.len() < 6 {
        return Err(trunc(record.len()));
    }
    if record[0] != 1 {
        return Err(invalid(
            WHAT,
            0,
            format!("configurationVersion {}", record[0]),
        ));
    }
    let length_size = (record[4] & 3) + 1;
    if length_size == 3 {
        return Err(invalid(WHAT, 4, "NAL length size 3"));
    }
    let mut pos = 5;
    let read_list = |count: usize, pos: &mut usize| -> Result<Vec<Vec<u8>>> {
        let mut list = Vec::with_capacity(count);
        for _ in 0..count {
            let len_bytes = record.get(*pos..*pos + 2).ok_or(trunc(*pos))?;
            let len = usize::from(u16::from_be_bytes([len_bytes[0], len_bytes[1]]));
            *pos += 2;
            let nal = record.get(*pos..*pos + len).ok_or(trunc(*pos))?;
            if nal.is_empty() {
                return Err(invalid(WHAT, *pos, "empty parameter set"));
            }
            list.push(nal.to_vec());
            *pos += len;
        }
        Ok(list)
    };
    let sps_count = usize::from(record[5] & 0x1f);
    pos += 1;
    let sps = read_list(sps_count, &mut pos)?;
    let pps_count = usize::from(*record.get(pos).ok_or(trunc(pos))?);
    pos += 1;
    let pps = read_list(pps_count, &mut pos)?;
    Ok(AvcConfig {
        profile_idc: record[1],
        level_idc: record[3],
        sps,
        pps,
        length_size,
    })
}

/// Splits an Annex B byte stream into NAL units (without start codes). Both 3- and
/// 4-byte start codes are recognised; bytes before the first start code, empty NAL
/// units and trailing zero bytes are dropped.
pub fn annexb_nals(data: &[u8]) -> Vec<&[u8]> {
    let mut nals = Vec::new();
    let mut start: Option<usize> = None;
    let mut i = 0;
    while i + 3 <= data.len() {
        if data[i] == 0 && data[i + 1] == 0 && data[i + 2] == 1 {
            if let Some(s) = start {
                push_trimmed(&mut nals, &data[s..i]);
            }
            i += 3;
            start = Some(i);
        } else if data[i + 2] > 1 {
            // No start code can begin at i, i + 1 or i + 2.
            i += 3;
        } else {
            i += 1;
        }
    }
    if let Some(s) = start {
        push_trimmed(&mut nals, &data[s..]);
    }
    nals
}

fn push_trimmed<'a>(nals: &mut Vec<&'a [u8]>, nal: &'a [u8]) {
    let end = nal.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1);
    if end > 0 {
        nals.push(&nal[..end]);
    }
}

/// Converts an Annex B byte stream to AVCC (4-byte length prefixes). Every NAL unit is
/// kept, including parameter sets and access unit delimiters.
pub fn annexb_to_avcc(data: &[u8]) -> Vec<u8> {
    let nals = annexb_nals(data);
    let mut out = Vec::with_capacity(data.len() + nals.len());
    for nal in nals {
        // A NAL unit longer than 4 GiB cannot exist in a slice on the targets we build
        // for in practice; saturate rather than panic if it ever does.
        let len = u32::try_from(nal.len()).unwrap_or(u32::MAX);
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(nal);
    }
    out
}

/// Splits AVCC data (4-byte big-endian length prefixes) into NAL units. Errors if a
/// length runs past the end or fewer than 4 bytes are left for a length.
pub fn avcc_nals(data: &[u8]) -> Result<Vec<&[u8]>> {
    let mut nals = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        let len_bytes = data.get(pos..pos + 4).ok_or(Error::Truncated {
            what: "AVCC NAL length",
            offset: pos,
        })?;
        let len = u32::from_be_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]);
        pos += 4;
        let nal = usize::try_from(len)
            .ok()
            .and_then(|len| data.get(pos..pos.checked_add(len)?))
            .ok_or(Error::Truncated {
                what: "AVCC NAL unit",
                offset: pos,
            })?;
        pos += nal.len();
        nals.push(nal);
    }
    Ok(nals)
}

/// Appends AVCC data converted to Annex B (4-byte start codes) to `out`. On error
/// `out` is left unchanged.
pub fn avcc_to_annexb(data: &[u8], out: &mut Vec<u8>) -> Result<()> {
    let nals = avcc_nals(data)?;
    out.reserve(data.len());
    for nal in nals {
        out.extend_from_slice(&[0, 0, 0, 1]);
        out.extend_from_slice(nal);
    }
    Ok(())
}

/// The NAL unit type (low 5 bits of the header byte); 0 for an empty slice.
pub fn nal_type(nal: &[u8]) -> u8 {
    nal.first().map_or(0, |h| h & 0x1f)
}

/// True if AVCC data holds an IDR slice. Stops quietly at malformed lengths.
pub fn avcc_has_idr(data: &[u8]) -> bool {
    let mut pos = 0usize;
    while let Some(len_bytes) = data.get(pos..pos + 4) {
        let len = u32::from_be_bytes([len_bytes[0], len_bytes[1], len_bytes[2], len_bytes[3]]);
        pos += 4;
        if data.get(pos).map(|h| h & 0x1f) == Some(NAL_IDR) {
            return true;
        }
        match usize::try_from(len).ok().and_then(|l| pos.checked_add(l)) {
            Some(next) => pos = next,
            None => return false,
        }
    }
    false
}

/// The RFC 6381 codec string, e.g. `avc1.64001f` (profile, constraint flags from the
/// first SPS, level), for HLS `CODECS` and MSE.
pub fn codec_string(cfg: &AvcConfig) -> String {
    let compat = cfg.sps.first().and_then(|s| s.get(2)).copied().unwrap_or(0);
    format!(
        "avc1.{:02x}{:02x}{:02x}",
        cfg.profile_idc, compat, cfg.level_idc
    )
}

#[cfg(test)]
#[path = "h264_tests.rs"]
mod tests;
