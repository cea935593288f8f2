use super::*;

const HD: &[u8] = include_bytes!("../testdata/sps_pps_1280x720_high.h264");

fn video_track() -> Track {
    let nals = h264::annexb_nals(HD);
    let avcc = h264::avcc_from_parameter_sets(&[nals[0]], &[nals[1]]).unwrap();
    Track::video(1, Codec::H264, avcc, 1280, 720)
}

fn audio_track() -> Track {
    Track::audio(
        2,
        Codec::Aac,
        aac::build_asc(2, 48000, 2).unwrap(),
        48000,
        2,
    )
}

/// The payload of the first box at `path` (each element one level deeper), skipping
/// `skip` header bytes of sample entries / full boxes the caller names.
fn find<'a>(data: &'a [u8], path: &[&str]) -> Option<&'a [u8]> {
    let mut cur = data;
    for (depth, name) in path.iter().enumerate() {
        let mut pos = 0;
        let mut found = None;
        while pos + 8 <= cur.len() {
            let size = u32::from_be_bytes(cur[pos..pos + 4].try_into().unwrap()) as usize;
            assert!(
                size >= 8 && pos + size <= cur.len(),
                "bad box size at {pos}"
            );
            if &cur[pos + 4..pos + 8] == name.as_bytes() {
                found = Some(&cur[pos + 8..pos + size]);
                break;
            }
            pos += size;
        }
        cur = found?;
        // Containers with a header before their children.
        if depth + 1 < path.len() {
            cur = match *name {
                "stsd" | "dref" => &cur[8..],
                "avc1" => &cur[78..],
                "mp4a" => &cur[28..],
                _ => cur,
            };
        }
    }
    Some(cur)
}

fn u32_at(data: &[u8], pos: usize) -> u32 {
    u32::from_be_bytes(data[pos..pos + 4].try_into().unwrap())
}

#[test]
fn init_segment_structure() {
    let tracks = [video_track(), audio_track()];
    let init = init_segment(&tracks).unwrap();
    let ftyp = find(&init, &["ftyp"]).unwrap();
    assert_eq!(&ftyp[..4], b"iso6");
    assert!(ftyp.chunks(4).any(|b| b == b"cmfc"));
    assert!(ftyp.chunks(4).any(|b| b == b"avc1"));

    let avcc = find(
        &init,
        &[
            "moov", "trak", "mdia", "minf", "stbl", "stsd", "avc1", "avcC",
        ],
    );
    assert_eq!(avcc.unwrap(), tracks[0].init.as_slice());
    let tkhd = find(&init, &["moov", "trak", "tkhd"]).unwrap();
    assert_eq!(u32_at(tkhd, 12), 1);
    assert_eq!(u32_at(tkhd, 76), 1280 << 16);
    assert_eq!(u32_at(tkhd, 80), 720 << 16);
    let mdhd = find(&init, &["moov", "trak", "mdia", "mdhd"]).unwrap();
    assert_eq!(u32_at(mdhd, 12), 90_000);

    // The second trak is the audio one.
    let moov = find(&init, &["moov"]).unwrap();
    let first_trak = u32_at(moov, 108) as usize; // after the 108-byte mvhd
    let audio = &moov[108 + first_trak..];
    let hdlr = find(audio, &["trak", "mdia", "hdlr"]).unwrap();
    assert_eq!(&hdlr[8..12], b"soun");
    let mdhd = find(audio, &["trak", "mdia", "mdhd"]).unwrap();
    assert_eq!(u32_at(mdhd, 12), 48_000);
    let esds = find(
        audio,
        &["trak", "mdia", "minf", "stbl", "stsd", "mp4a", "esds"],
    )
    .unwrap();
    // ES_Descriptor tag, then DecoderConfigDescriptor with MPEG-4 audio, then the ASC.
    assert_eq!(esds[4], 0x03);
    assert_eq!(esds[12], 0x04);
    assert_eq!(esds[17], 0x40);
    assert_eq!(&esds[30..37], &[0x05, 0x80, 0x80, 0x80, 2, 0x11, 0x90]);
    assert_eq!(&esds[37..], &[0x06, 0x80, 0x80, 0x80, 1, 2]);

    let mvex = find(&init, &["moov", "mvex"]).unwrap();
    assert_eq!(mvex.len(), 2 * 32);
    assert_eq!(u32_at(mvex, 12), 1);
    assert_eq!(u32_at(mvex, 32 + 12), 2);
}

#[test]
fn init_segment_rejects_bad_tracks() {
    let jpeg = Track::video(1, Codec::Jpeg, vec![], 640, 480);
    assert!(matches!(
        init_segment(&[jpeg]),
        Err(Error::Unsupported { .. })
    ));
    assert!(init_segment(&[]).is_err());
    assert!(init_segment(&[video_track(), video_track()]).is_err());
    let mut broken = video_track();
    broken.init.truncate(10);
    assert!(init_segment(&[broken]).is_err());
    let mut no_size = video_track();
    (no_size.width, no_size.height) = (0, 0);
    let init = init_segment(&[no_size]).unwrap();
    let tkhd = find(&init, &["moov", "trak", "tkhd"]).unwrap();
    assert_eq!(u32_at(tkhd, 76), 1280 << 16);
}

fn frame(track: u32, dts: i64, cts: i32, key: bool, data: &[u8]) -> Frame {
    Frame {
        track,
        dts,
        cts,
        key,
        data: data.to_vec(),
    }
}

/// (duration, size, flags, composition offset) of every sample of the first trun.
fn samples(trun: &[u8]) -> Vec<(u32, u32, u32, i32)> {
    let flags = u32_at(trun, 0) & 0xff_ffff;
    let count = u32_at(trun, 4) as usize;
    let has_cts = flags & 0x800 != 0;
    let stride = if has_cts { 16 } else { 12 };
    (0..count)
        .map(|i| {
            let p = 12 + i * stride;
            let cts = if has_cts {
                u32_at(trun, p + 12) as i32
            } else {
                0
            };
            (
                u32_at(trun, p),
                u32_at(trun, p + 4),
                u32_at(trun, p + 8),
                cts,
            )
        })
        .collect()
}

#[test]
fn durations_never_drift() {
    let track = audio_track();
    // 1024-sample AAC frames at 48 kHz are 21333.33 µs: rounded µs times.
    let frames: Vec<Frame> = (0..1000)
        .map(|i| frame(2, (i * 1024 * 1_000_000 + 24_000) / 48_000, 0, true, &[1]))
        .collect();
    let end = (1000 * 1024 * 1_000_000 + 24_000) / 48_000;
    let frag = fragment(
        7,
        &[TrackRun {
            track: &track,
            frames: &frames,
            end_dts: end,
        }],
    )
    .unwrap();
    assert_eq!(u32_at(find(&frag, &["moof", "mfhd"]).unwrap(), 4), 7);
    let trun = find(&frag, &["moof", "traf", "trun"]).unwrap();
    assert!(samples(trun).iter().all(|s| *s == (1024, 1, FLAGS_SYNC, 0)));
    // A later fragment starts exactly where this one ended.
    let tfdt = |frag: &[u8]| {
        let b = find(frag, &["moof", "traf", "tfdt"]).unwrap();
        u64::from_be_bytes(b[4..12].try_into().unwrap())
    };
    let later = fragment(
        8,
        &[TrackRun {
            track: &track,
            frames: &[frame(2, end, 0, true, &[1])],
            end_dts: end + 21_333,
        }],
    )
    .unwrap();
    assert_eq!(tfdt(&later), 1000 * 1024);
}

#[test]
fn data_offsets_and_composition() {
    let (v, a) = (video_track(), audio_track());
    let video = [
        frame(1, 0, 66_667, true, &[0, 0, 0, 1, 0x65]),
        frame(1, 33_333, 100_000, false, &[0, 0, 0, 1, 0x41]),
        frame(1, 66_667, 0, false, &[0, 0, 0, 1, 0x01]),
    ];
    let audio = [
        frame(2, 0, 0, true, &[7, 7]),
        frame(2, 21_333, 0, true, &[8]),
    ];
    let frag = fragment(
        1,
        &[
            TrackRun {
                track: &v,
                frames: &video,
                end_dts: 100_000,
            },
            TrackRun {
                track: &a,
                frames: &[],
                end_dts: 0,
            },
            TrackRun {
                track: &a,
                frames: &audio,
                end_dts: 42_667,
            },
        ],
    )
    .unwrap();
    let moof = find(&frag, &["moof"]).unwrap();
    let trun = find(&frag, &["moof", "traf", "trun"]).unwrap();
    assert_eq!(trun[0], 1, "signed composition offsets need trun version 1");
    assert_eq!(
        samples(trun),
        vec![
            (3000, 5, FLAGS_SYNC, 6000),
            (3000, 5, FLAGS_NON_SYNC, 9000),
            (3000, 5, FLAGS_NON_SYNC, 0)
        ]
    );
    let offset = u32_at(trun, 8) as usize;
    assert_eq!(&frag[offset..offset + 5], &[0, 0, 0, 1, 0x65]);
    // The audio traf (the empty run is skipped) points after the 15 video bytes.
    let video_traf_len = u32_at(moof, 16) as usize;
    let audio_trun = find(&moof[16 + video_traf_len..], &["traf", "trun"]).unwrap();
    assert_eq!(audio_trun[0], 0);
    let offset = u32_at(audio_trun, 8) as usize;
    assert_eq!(&frag[offset..], &[7, 7, 8]);
    assert_eq!(
        samples(audio_trun),
        vec![(1024, 2, FLAGS_SYNC, 0), (1024, 1, FLAGS_SYNC, 0)]
    );
    let mdat = find(&frag, &["mdat"]).unwrap();
    assert_eq!(mdat.len(), 18);
}

#[test]
fn bad_times_and_tracks_do_not_panic() {
    let v = video_track();
    let frames = [
        frame(1, -50_000, -10, true, &[1]),
        frame(1, i64::MIN, i32::MIN, false, &[2]),
        frame(1, i64::MAX, i32::MAX, false, &[3]),
        frame(1, 0, 0, false, &[4]),
    ];
    for end_dts in [i64::MIN, -1, 0, i64::MAX] {
        let _ = fragment(
            0,
            &[TrackRun {
                track: &v,
                frames: &frames,
                end_dts,
            }],
        );
    }
    let wrong = [frame(2, 0, 0, true, &[1])];
    assert!(fragment(
        0,
        &[TrackRun {
            track: &v,
            frames: &wrong,
            end_dts: 1
        }]
    )
    .is_err());
    // No runs at all still makes a valid (empty) fragment.
    let empty = fragment(3, &[]).unwrap();
    assert!(find(&empty, &["mdat"]).unwrap().is_empty());
}

#[test]
fn timescales() {
    assert_eq!(track_timescale(&video_track()), 90_000);
    assert_eq!(track_timescale(&audio_track()), 48_000);
    let mut a = audio_track();
    a.sample_rate = 0;
    a.init = aac::build_asc(2, 44_100, 2).unwrap();
    assert_eq!(track_timescale(&a), 44_100);
    assert_eq!(to_timescale(33_333, 90_000), 3000);
    assert_eq!(to_timescale(-5, 90_000), 0);
    assert_eq!(to_timescale(i64::MAX, u32::MAX), i64::MAX as u64);
}
