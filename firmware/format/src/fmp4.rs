//! Fragmented MP4 (ISO BMFF / CMAF): an init segment (`ftyp` + `moov`) and media
//! fragments (`moof` + `mdat`), for HLS fMP4, DASH and MSE players.
//!
//! Times are converted from microseconds to each track's timescale from the absolute
//! time of every frame (`round(t * timescale / 1e6)`); a sample's duration is the
//! difference between its converted decode time and the next one, so rounding never
//! accumulates. Negative times are clamped to zero.

use crate::{aac, h264, Codec, Error, Frame, Result, Track, TIMESCALE};

/// Timescale of video tracks in fMP4 (and MPEG-TS).
const VIDEO_TIMESCALE: u32 = 90_000;

/// The fMP4 timescale of a track: 90000 for video, the sample rate for audio (from the
/// track, else from the AAC AudioSpecificConfig, else 48000).
pub fn track_timescale(track: &Track) -> u32 {
    if track.codec.is_video() {
        return VIDEO_TIMESCALE;
    }
    if track.sample_rate > 0 {
        return track.sample_rate;
    }
    if track.codec == Codec::Aac {
        if let Ok(asc) = aac::parse_asc(&track.init) {
            return asc.sample_rate;
        }
    }
    48_000
}

/// Converts microseconds to `timescale` ticks, rounding to nearest; negative times
/// clamp to 0 and results are capped at `i64::MAX`, so differences fit an `i64`.
fn to_timescale(us: i64, timescale: u32) -> u64 {
    let us = u128::from(us.max(0).unsigned_abs());
    let t = (us * u128::from(timescale) + u128::from(TIMESCALE / 2)) / u128::from(TIMESCALE);
    u64::try_from(t.min(i64::MAX as u128)).unwrap_or(i64::MAX as u64)
}

/// Starts a box of type `typ`; returns its offset for [`end_box`].
fn begin_box(out: &mut Vec<u8>, typ: &[u8; 4]) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0, 0, 0, 0]);
    out.extend_from_slice(typ);
    start
}

/// Starts a full box (with version and 24-bit flags).
fn begin_full_box(out: &mut Vec<u8>, typ: &[u8; 4], version: u8, flags: u32) -> usize {
    let start = begin_box(out, typ);
    out.extend_from_slice(&((u32::from(version) << 24) | (flags & 0xff_ffff)).to_be_bytes());
    start
}

/// Patches the size of the box started at `start`.
fn end_box(out: &mut [u8], start: usize) -> Result<()> {
    let size = u32::try_from(out.len() - start).map_err(|_| Error::Unsupported {
        what: "MP4 box",
        reason: "box larger than 4 GiB".into(),
    })?;
    out[start..start + 4].copy_from_slice(&size.to_be_bytes());
    Ok(())
}

fn u16be(out: &mut Vec<u8>, v: u16) {
    out.extend_from_slice(&v.to_be_bytes());
}

fn u32be(out: &mut Vec<u8>, v: u32) {
    out.extend_from_slice(&v.to_be_bytes());
}

/// The unity transformation matrix of `mvhd` / `tkhd`.
fn matrix(out: &mut Vec<u8>) {
    for v in [0x0001_0000u32, 0, 0, 0, 0x0001_0000, 0, 0, 0, 0x4000_0000] {
        u32be(out, v);
    }
}

/// Builds the init segment: `ftyp` and a `moov` with one `trak` per track (track ids
/// are `Track::id`) and an `mvex` for fragments. H.264 and AAC are supported; other
/// codecs give [`Error::Unsupported`].
pub fn init_segment(tracks: &[Track]) -> Result<Vec<u8>> {
    if tracks.is_empty() {
        return Err(Error::Invalid {
            what: "fMP4 init segment",
            offset: 0,
            reason: "no tracks".into(),
        });
    }
    let mut out = Vec::with_capacity(1024);
    let ftyp = begin_box(&mut out, b"ftyp");
    out.extend_from_slice(b"iso6");
    u32be(&mut out, 0);
    for brand in [b"iso6", b"cmfc", b"isom", b"mp41", b"dash"] {
        out.extend_from_slice(brand);
    }
    if tracks.iter().any(|t| t.codec == Codec::H264) {
        out.extend_from_slice(b"avc1");
    }
    end_box(&mut out, ftyp)?;

    let moov = begin_box(&mut out, b"moov");
    let mvhd = begin_full_box(&mut out, b"mvhd", 0, 0);
    u32be(&mut out, 0); // creation_time
    u32be(&mut out, 0); // modification_time
    u32be(&mut out, 1000); // timescale
    u32be(&mut out, 0); // duration
    u32be(&mut out, 0x0001_0000); // rate 1.0
    u16be(&mut out, 0x0100); // volume 1.0
    out.extend_from_slice(&[0; 10]);
    matrix(&mut out);
    out.extend_from_slice(&[0; 24]); // pre_defined
    let next_id = tracks
        .iter()
        .map(|t| t.id)
        .max()
        .unwrap_or(0)
        .saturating_add(1);
    u32be(&mut out, next_id);
    end_box(&mut out, mvhd)?;
    for (i, track) in tracks.iter().enumerate() {
        if track.id == 0 || tracks[..i].iter().any(|t| t.id == track.id) {
            return Err(Error::Invalid {
                what: "fMP4 init segment",
                offset: i,
                reason: format!("track id {} is 0 or repeated", track.id),
            });
        }
        write_trak(&mut out, track)?;
    }
    let mvex = begin_box(&mut out, b"mvex");
    for track in tracks {
        let trex = begin_full_box(&mut out, b"trex", 0, 0);
        u32be(&mut out, track.id);
        u32be(&mut out, 1); // default_sample_description_index
        u32be(&mut out, 0); // default_sample_duration
        u32be(&mut out, 0); // default_sample_size
        u32be(&mut out, 0); // default_sample_flags
        end_box(&mut out, trex)?;
    }
    end_box(&mut out, mvex)?;
    end_box(&mut out, moov)?;
    Ok(out)
}

/// Video dimensions of a track: from the track, else from the SPS in its `avcC`.
fn video_size(track: &Track) -> Result<(u16, u16)> {
    let (mut w, mut h) = (track.width, track.height);
    if (w == 0 || h == 0) && track.codec == Codec::H264 {
        let cfg = h264::parse_avcc(&track.init)?;
        if let Some(sps) = cfg.sps.first() {
            let sps = h264::parse_sps(sps)?;
            (w, h) = (sps.width, sps.height);
        }
    }
    let too_big = || Error::Unsupported {
        what: "fMP4 video track",
        reason: format!("size {w}x{h} does not fit 16 bits"),
    };
    Ok((
        u16::try_from(w).map_err(|_| too_big())?,
        u16::try_from(h).map_err(|_| too_big())?,
    ))
}

fn write_trak(out: &mut Vec<u8>, track: &Track) -> Result<()> {
    let video = track.codec.is_video();
    // Check the codec first so unsupported tracks fail before any work.
    match track.codec {
        Codec::H264 | Codec::Aac => {}
        other => {
            return Err(Error::Unsupported {
                what: "fMP4 init segment",
                reason: format!("codec {}", other.as_str()),
            })
        }
    }
    let (width, height) = if video { video_size(track)? } else { (0, 0) };
    let trak = begin_box(out, b"trak");
    let tkhd = begin_full_box(out, b"tkhd", 0, 3); // enabled, in movie
    u32be(out, 0); // creation_time
    u32be(out, 0); // modification_time
    u32be(out, track.id);
    u32be(out, 0); // reserved
    u32be(out, 0); // duration
    out.extend_from_slice(&[0; 8]);
    u16be(out, 0); // layer
    u16be(out, 0); // alternate_group
    u16be(out, if video { 0 } else { 0x0100 }); // volume
    u16be(out, 0);
    matrix(out);
    u32be(out, u32::from(width) << 16);
    u32be(out, u32::from(height) << 16);
    end_box(out, tkhd)?;

    let mdia = begin_box(out, b"mdia");
    let mdhd = begin_full_box(out, b"mdhd", 0, 0);
    u32be(out, 0);
    u32be(out, 0);
    u32be(out, track_timescale(track));
    u32be(out, 0); // duration
    u16be(out, 0x55c4); // language "und"
    u16be(out, 0);
    end_box(out, mdhd)?;
    let hdlr = begin_full_box(out, b"hdlr", 0, 0);
    u32be(out, 0); // pre_defined
    out.extend_from_slice(if video { b"vide" } else { b"soun" });
    out.extend_from_slice(&[0; 12]);
    out.extend_from_slice(if video {
        b"VideoHandler\0"
    } else {
        b"SoundHandler\0"
    });
    end_box(out, hdlr)?;

    let minf = begin_box(out, b"minf");
    if video {
        let vmhd = begin_full_box(out, b"vmhd", 0, 1);
        out.extend_from_slice(&[0; 8]); // graphicsmode, opcolor
        end_box(out, vmhd)?;
    } else {
        let smhd = begin_full_box(out, b"smhd", 0, 0);
        out.extend_from_slice(&[0; 4]); // balance, reserved
        end_box(out, smhd)?;
    }
    let dinf = begin_box(out, b"dinf");
    let dref = begin_full_box(out, b"dref", 0, 0);
    u32be(out, 1);
    let url = begin_full_box(out, b"url ", 0, 1); // media in the same file
    end_box(out, url)?;
    end_box(out, dref)?;
    end_box(out, dinf)?;

    let stbl = begin_box(out, b"stbl");
    let stsd = begin_full_box(out, b"stsd", 0, 0);
    u32be(out, 1);
    match track.codec {
        Codec::H264 => write_avc1(out, track, width, height)?,
        _ => write_mp4a(out, track)?,
    }
    end_box(out, stsd)?;
    for typ in [b"stts", b"stsc", b"stco"] {
        let b = begin_full_box(out, typ, 0, 0);
        u32be(out, 0);
        end_box(out, b)?;
    }
    let stsz = begin_full_box(out, b"stsz", 0, 0);
    u32be(out, 0); // sample_size
    u32be(out, 0); // sample_count
    end_box(out, stsz)?;
    end_box(out, stbl)?;
    end_box(out, minf)?;
    end_box(out, mdia)?;
    end_box(out, trak)
}

fn write_avc1(out: &mut Vec<u8>, track: &Track, width: u16, height: u16) -> Result<()> {
    // Validates the record; it is copied verbatim.
    h264::parse_avcc(&track.init)?;
    let avc1 = begin_box(out, b"avc1");
    out.extend_from_slice(&[0; 6]);
    u16be(out, 1); // data_reference_index
    out.extend_from_slice(&[0; 16]); // pre_defined, reserved
    u16be(out, width);
    u16be(out, height);
    u32be(out, 0x0048_0000); // 72 dpi
    u32be(out, 0x0048_0000);
    u32be(out, 0); // reserved
    u16be(out, 1); // frame_count
    out.extend_from_slice(&[0; 32]); // compressorname
    u16be(out, 0x0018); // depth
    u16be(out, 0xffff); // pre_defined = -1
    let avcc = begin_box(out, b"avcC");
    out.extend_from_slice(&track.init);
    end_box(out, avcc)?;
    end_box(out, avc1)
}

/// Appends an MPEG-4 descriptor header (tag and expandable size).
fn descriptor(out: &mut Vec<u8>, tag: u8, len: usize) -> Result<()> {
    if len >= 1 << 28 {
        return Err(Error::Unsupported {
            what: "esds",
            reason: "descriptor too large".into(),
        });
    }
    out.push(tag);
    // Four 7-bit groups, most significant first; the masks keep each in a byte.
    for shift in [21u32, 14, 7] {
        out.push(0x80 | ((len >> shift) & 0x7f) as u8);
    }
    out.push((len & 0x7f) as u8);
    Ok(())
}

fn write_mp4a(out: &mut Vec<u8>, track: &Track) -> Result<()> {
    let asc = aac::parse_asc(&track.init)?;
    let channels = if track.channels > 0 {
        track.channels
    } else {
        u32::from(asc.channels.max(1))
    };
    let channels = u16::try_from(channels).map_err(|_| Error::Invalid {
        what: "fMP4 audio track",
        offset: 0,
        reason: format!("{channels} channels"),
    })?;
    let rate = track_timescale(track);
    let mp4a = begin_box(out, b"mp4a");
    out.extend_from_slice(&[0; 6]);
    u16be(out, 1); // data_reference_index
    out.extend_from_slice(&[0; 8]); // reserved
    u16be(out, channels);
    u16be(out, 16); // samplesize
    u32be(out, 0); // pre_defined, reserved
                   // 16.16 fixed point; rates above 65535 Hz do not fit and are left to the ASC.
    u32be(out, if rate <= 0xffff { rate << 16 } else { 0 });

    let esds = begin_full_box(out, b"esds", 0, 0);
    let asc_len = track.init.len();
    let dcd_len = 13 + 5 + asc_len;
    let es_len = 3 + 5 + dcd_len + 5 + 1;
    descriptor(out, 0x03, es_len)?; // ES_Descriptor
    u16be(out, 0); // ES_ID
    out.push(0); // no dependency, URL or OCR stream
    descriptor(out, 0x04, dcd_len)?; // DecoderConfigDescriptor
    out.push(0x40); // objectTypeIndication: MPEG-4 Audio
    out.push(0x15); // streamType audio (5) << 2 | reserved 1
    out.extend_from_slice(&[0; 3]); // bufferSizeDB
    u32be(out, 0); // maxBitrate
    u32be(out, 0); // avgBitrate
    descriptor(out, 0x05, asc_len)?; // DecoderSpecificInfo
    out.extend_from_slice(&track.init);
    descriptor(out, 0x06, 1)?; // SLConfigDescriptor
    out.push(0x02); // predefined: MP4
    end_box(out, esds)?;
    end_box(out, mp4a)
}

/// The frames of one track to put in a fragment.
#[derive(Clone, Copy, Debug)]
pub struct TrackRun<'a> {
    /// The track the frames belong to (`Frame::track` must equal `track.id`).
    pub track: &'a Track,
    /// The frames, in decode order.
    pub frames: &'a [Frame],
    /// Decode time (µs) right after the last frame: the next frame's dts, used for the
    /// last sample's duration.
    pub end_dts: i64,
}

/// `sample_flags` of a sync sample: sample_depends_on = 2 (depends on no other).
const FLAGS_SYNC: u32 = 0x0200_0000;
/// `sample_flags` of a non-sync sample: sample_depends_on = 1, is_non_sync_sample.
const FLAGS_NON_SYNC: u32 = 0x0101_0000;

/// Builds one fragment: a `moof` (sequence number `sequence`, one `traf` per non-empty
/// run) followed by one `mdat` holding every run's samples in order.
pub fn fragment(sequence: u32, runs: &[TrackRun]) -> Result<Vec<u8>> {
    const WHAT: &str = "fMP4 fragment";
    let mut payload: usize = 0;
    for (r, run) in runs.iter().enumerate() {
        if let Some(i) = run.frames.iter().position(|f| f.track != run.track.id) {
            return Err(Error::Invalid {
                what: WHAT,
                offset: i,
                reason: format!(
                    "frame of track {} in the run of track {} (run {r})",
                    run.frames[i].track, run.track.id
                ),
            });
        }
        payload = run
            .frames
            .iter()
            .try_fold(payload, |acc, f| acc.checked_add(f.data.len()))
            .filter(|&p| p < (u32::MAX / 2) as usize)
            .ok_or_else(|| Error::Unsupported {
                what: WHAT,
                reason: "more than 2 GiB of samples in one fragment".into(),
            })?;
    }
    let sample_count: usize = runs.iter().map(|r| r.frames.len()).sum();
    let mut out = Vec::with_capacity(payload + 128 + sample_count * 16);
    let moof = begin_box(&mut out, b"moof");
    let mfhd = begin_full_box(&mut out, b"mfhd", 0, 0);
    u32be(&mut out, sequence);
    end_box(&mut out, mfhd)?;
    // (offset of the trun data_offset field, offset of the run's data within mdat).
    let mut patches = Vec::with_capacity(runs.len());
    let mut data_pos = 0usize;
    for run in runs.iter().filter(|r| !r.frames.is_empty()) {
        let field = write_traf(&mut out, run)?;
        patches.push((field, data_pos));
        data_pos += run.frames.iter().map(|f| f.data.len()).sum::<usize>();
    }
    end_box(&mut out, moof)?;
    let moof_len = out.len() - moof;
    for (field, data_pos) in patches {
        // moof_len + 8 + data_pos < 2^31 given the payload check above and the moof
        // size (16 + 12 per sample, far below 2 GiB for any slice that fits memory).
        let offset = i32::try_from(moof_len + 8 + data_pos).map_err(|_| Error::Unsupported {
            what: WHAT,
            reason: "fragment too large".into(),
        })?;
        out[field..field + 4].copy_from_slice(&offset.to_be_bytes());
    }
    let mdat = begin_box(&mut out, b"mdat");
    for run in runs {
        for f in run.frames {
            out.extend_from_slice(&f.data);
        }
    }
    end_box(&mut out, mdat)?;
    Ok(out)
}

/// Writes one `traf`; returns the offset of its `trun` data_offset field.
fn write_traf(out: &mut Vec<u8>, run: &TrackRun) -> Result<usize> {
    let ts = track_timescale(run.track);
    let dts: Vec<u64> = run.frames.iter().map(|f| to_timescale(f.dts, ts)).collect();
    let end = to_timescale(run.end_dts, ts);
    let cts: Vec<i64> = run
        .frames
        .iter()
        .zip(&dts)
        .map(|(f, &d)| {
            let pts = to_timescale(f.pts(), ts);
            // Both are at most i64::MAX (see to_timescale), so the difference fits.
            pts as i64 - d as i64
        })
        .collect();
    let has_cts = cts.iter().any(|&c| c != 0);
    let too_long = |what: &str| Error::Unsupported {
        what: "fMP4 fragment",
        reason: format!("{what} does not fit 32 bits"),
    };

    let traf = begin_box(out, b"traf");
    let tfhd = begin_full_box(out, b"tfhd", 0, 0x02_0000); // default-base-is-moof
    u32be(out, run.track.id);
    end_box(out, tfhd)?;
    let tfdt = begin_full_box(out, b"tfdt", 1, 0);
    out.extend_from_slice(&dts[0].to_be_bytes());
    end_box(out, tfdt)?;

    // data-offset, sample-duration, sample-size, sample-flags, [composition offsets].
    let flags = 0x0001 | 0x0100 | 0x0200 | 0x0400 | if has_cts { 0x0800 } else { 0 };
    let trun = begin_full_box(out, b"trun", u8::from(has_cts), flags);
    u32be(
        out,
        u32::try_from(run.frames.len()).map_err(|_| too_long("sample count"))?,
    );
    let field = out.len();
    u32be(out, 0); // data_offset, patched by `fragment`
    for (i, f) in run.frames.iter().enumerate() {
        let next = dts.get(i + 1).copied().unwrap_or(end);
        // Out-of-order or repeated times give a zero duration rather than wrapping.
        let duration =
            u32::try_from(next.saturating_sub(dts[i])).map_err(|_| too_long("duration"))?;
        u32be(out, duration);
        u32be(
            out,
            u32::try_from(f.data.len()).map_err(|_| too_long("sample size"))?,
        );
        u32be(out, if f.key { FLAGS_SYNC } else { FLAGS_NON_SYNC });
        if has_cts {
            let c = i32::try_from(cts[i]).map_err(|_| too_long("composition offset"))?;
            out.extend_from_slice(&c.to_be_bytes());
        }
    }
    end_box(out, trun)?;
    end_box(out, traf)?;
    Ok(field)
}

#[cfg(test)]
#[path = "fmp4_tests.rs"]
mod tests;
