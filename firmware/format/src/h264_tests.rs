use super::*;
use proptest::prelude::*;

const HD: &[u8] = include_bytes!("../testdata/sps_pps_1280x720_high.h264");
const BASE: &[u8] = include_bytes!("../testdata/sps_pps_640x360_baseline.h264");
const INTERLACED: &[u8] = include_bytes!("../testdata/sps_pps_1920x1080_interlaced.h264");
const HI444: &[u8] = include_bytes!("../testdata/sps_pps_854x480_high444.h264");

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
        .collect()
}

fn sps_pps(stream: &[u8]) -> (&[u8], &[u8]) {
    let nals = annexb_nals(stream);
    assert_eq!(nals.len(), 2);
    assert_eq!(nal_type(nals[0]), NAL_SPS);
    assert_eq!(nal_type(nals[1]), NAL_PPS);
    (nals[0], nals[1])
}

#[test]
fn sps_1280x720_high() {
    let sps = parse_sps(sps_pps(HD).0).unwrap();
    assert_eq!(
        sps,
        Sps {
            profile_idc: 100,
            constraint_flags: 0,
            level_idc: 31,
            width: 1280,
            height: 720
        }
    );
}

#[test]
fn sps_640x360_baseline_cropped() {
    let sps = parse_sps(sps_pps(BASE).0).unwrap();
    assert_eq!((sps.profile_idc, sps.constraint_flags), (66, 0xc0));
    assert_eq!((sps.width, sps.height), (640, 360));
}

#[test]
fn sps_1080i_field_coding() {
    let sps = parse_sps(sps_pps(INTERLACED).0).unwrap();
    assert_eq!(sps.profile_idc, 100);
    assert_eq!((sps.width, sps.height), (1920, 1080));
}

#[test]
fn sps_high444_odd_width() {
    let sps = parse_sps(sps_pps(HI444).0).unwrap();
    assert_eq!(sps.profile_idc, 244);
    assert_eq!((sps.width, sps.height), (854, 480));
}

#[test]
fn sps_rejects_other_nal_types() {
    let (_, pps) = sps_pps(HD);
    assert!(matches!(parse_sps(pps), Err(Error::Invalid { .. })));
    assert!(matches!(parse_sps(&[]), Err(Error::Truncated { .. })));
    assert!(parse_sps(&[0x67, 0x64]).is_err());
}

#[test]
fn avcc_matches_ffmpeg() {
    // The avcC FFmpeg writes when remuxing the same streams to MP4.
    let (sps, pps) = sps_pps(HD);
    assert_eq!(
        avcc_from_parameter_sets(&[sps], &[pps]).unwrap(),
        hex("0164001fffe1001a6764001facd9405005bb0110000003001000000303c0f183196001000668ebe3cb22c0fdf8f800")
    );
    let (sps, pps) = sps_pps(HI444);
    assert_eq!(
        avcc_from_parameter_sets(&[sps], &[pps]).unwrap(),
        hex("01f4001fffe1001b67f4001f919b281b07bc5f8088000003000800000301e078c18cb001000668ebe3c44844fff8f800")
    );
    let (sps, pps) = sps_pps(BASE);
    assert_eq!(
        avcc_from_parameter_sets(&[sps], &[pps]).unwrap(),
        hex("0142c01effe100196742c01ed900a02ff970110000030001000003003c0f162e4801000568cb83cb20")
    );
}

#[test]
fn avcc_round_trip_and_codec_string() {
    let (sps, pps) = sps_pps(HD);
    let record = avcc_from_parameter_sets(&[sps], &[pps]).unwrap();
    let cfg = parse_avcc(&record).unwrap();
    assert_eq!(
        cfg,
        AvcConfig {
            profile_idc: 100,
            level_idc: 31,
            sps: vec![sps.to_vec()],
            pps: vec![pps.to_vec()],
            length_size: 4,
        }
    );
    assert_eq!(codec_string(&cfg), "avc1.64001f");
    let (sps, pps) = sps_pps(BASE);
    let cfg = parse_avcc(&avcc_from_parameter_sets(&[sps], &[pps]).unwrap()).unwrap();
    assert_eq!(codec_string(&cfg), "avc1.42c01e");
}

#[test]
fn avcc_builder_rejects_bad_input() {
    let (sps, pps) = sps_pps(HD);
    assert!(avcc_from_parameter_sets(&[], &[pps]).is_err());
    assert!(avcc_from_parameter_sets(&[sps], &[]).is_err());
    assert!(avcc_from_parameter_sets(&[pps], &[pps]).is_err());
    assert!(avcc_from_parameter_sets(&[sps], &[sps]).is_err());
}

#[test]
fn parse_avcc_truncated() {
    let (sps, pps) = sps_pps(HD);
    let record = avcc_from_parameter_sets(&[sps], &[pps]).unwrap();
    // Cutting anywhere inside the SPS/PPS lists must error, never panic.
    let end_of_lists = record.len() - 4;
    for cut in 0..end_of_lists {
        assert!(parse_avcc(&record[..cut]).is_err(), "cut at {cut}");
    }
    assert!(parse_avcc(&record[..end_of_lists]).is_ok());
}

#[test]
fn annexb_split_mixed_start_codes() {
    let data = [
        0xff, 0, 0, 1, 0x67, 1, 2, 0, 0, 0, 1, 0x68, 3, 0, 0, 1, 0, 0, 1, 0x65, 0, 0, 3, 1, 0, 0,
    ];
    let nals = annexb_nals(&data);
    assert_eq!(
        nals,
        vec![&[0x67, 1, 2][..], &[0x68, 3][..], &[0x65, 0, 0, 3, 1][..]]
    );
    assert!(annexb_nals(&[1, 2, 3]).is_empty());
    assert!(annexb_nals(&[]).is_empty());
}

#[test]
fn avcc_conversions() {
    let avcc = annexb_to_avcc(&[0, 0, 1, 0x65, 0xaa, 0, 0, 0, 1, 0x41, 0xbb]);
    assert_eq!(avcc, vec![0, 0, 0, 2, 0x65, 0xaa, 0, 0, 0, 2, 0x41, 0xbb]);
    assert!(avcc_has_idr(&avcc));
    assert!(!avcc_has_idr(&avcc[6..]));
    assert_eq!(
        avcc_nals(&avcc).unwrap(),
        vec![&[0x65, 0xaa][..], &[0x41, 0xbb][..]]
    );
    let mut out = vec![9];
    avcc_to_annexb(&avcc, &mut out).unwrap();
    assert_eq!(out, vec![9, 0, 0, 0, 1, 0x65, 0xaa, 0, 0, 0, 1, 0x41, 0xbb]);
    let mut out = vec![9];
    assert!(avcc_to_annexb(&avcc[..11], &mut out).is_err());
    assert_eq!(out, vec![9]);
    assert!(avcc_nals(&[0, 0, 0]).is_err());
    assert!(avcc_nals(&[0xff, 0xff, 0xff, 0xff, 1]).is_err());
    assert_eq!(nal_type(&[]), 0);
    assert_eq!(nal_type(&[0x65]), 5);
}

/// A NAL unit as an encoder would emit it: escaped and not ending in a zero byte.
fn escaped_nal() -> impl Strategy<Value = Vec<u8>> {
    proptest::collection::vec(any::<u8>(), 1..64).prop_map(|raw| {
        let mut out = Vec::new();
        let mut zeros = 0;
        for b in raw {
            if zeros >= 2 && b <= 3 {
                out.push(3);
                zeros = 0;
            }
            zeros = if b == 0 { zeros + 1 } else { 0 };
            out.push(b);
        }
        if out.last() == Some(&0) {
            out.push(0x80);
        }
        out
    })
}

proptest! {
    #[test]
    fn annexb_avcc_round_trip(
        nals in proptest::collection::vec((escaped_nal(), any::<bool>()), 0..8)
    ) {
        let mut annexb = Vec::new();
        for (nal, long) in &nals {
            if *long {
                annexb.push(0);
            }
            annexb.extend_from_slice(&[0, 0, 1]);
            annexb.extend_from_slice(nal);
        }
        let expected: Vec<&[u8]> = nals.iter().map(|(n, _)| n.as_slice()).collect();
        prop_assert_eq!(annexb_nals(&annexb), expected.clone());
        let avcc = annexb_to_avcc(&annexb);
        prop_assert_eq!(avcc_nals(&avcc).unwrap(), expected.clone());
        let mut back = Vec::new();
        avcc_to_annexb(&avcc, &mut back).unwrap();
        prop_assert_eq!(annexb_nals(&back), expected);
        prop_assert_eq!(annexb_to_avcc(&back), avcc);
    }

    #[test]
    fn avcc_nals_round_trip(nals in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 0..40), 0..8)) {
        let mut avcc = Vec::new();
        for nal in &nals {
            avcc.extend_from_slice(&(nal.len() as u32).to_be_bytes());
            avcc.extend_from_slice(nal);
        }
        let got = avcc_nals(&avcc).unwrap();
        prop_assert_eq!(got, nals.iter().map(Vec::as_slice).collect::<Vec<_>>());
    }

    #[test]
    fn garbage_never_panics(data in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = parse_sps(&data);
        let mut sps = vec![0x67];
        sps.extend_from_slice(&data);
        let _ = parse_sps(&sps);
        let _ = parse_avcc(&data);
        let _ = annexb_nals(&data);
        let _ = annexb_to_avcc(&data);
        let _ = avcc_nals(&data);
        let _ = avcc_has_idr(&data);
        let mut out = Vec::new();
        let _ = avcc_to_annexb(&data, &mut out);
        let _ = avcc_from_parameter_sets(&[&sps], &[&data]);
    }

    #[test]
    fn mutated_real_sps_never_panics(pos in 1usize..26, val in any::<u8>(), cut in 1usize..27) {
        let (sps, _) = sps_pps(HD);
        let mut m = sps.to_vec();
        let i = pos % m.len();
        m[i] = val;
        m.truncate(cut);
        let _ = parse_sps(&m);
    }
}
