use super::*;
use proptest::prelude::*;
use std::collections::HashMap;

const HD: &[u8] = include_bytes!("../testdata/sps_pps_1280x720_high.h264");

fn tracks() -> Vec<Track> {
    let nals = h264::annexb_nals(HD);
    let avcc = h264::avcc_from_parameter_sets(&[nals[0]], &[nals[1]]).unwrap();
    vec![
        Track::video(1, Codec::H264, avcc, 1280, 720),
        Track::video(2, Codec::Jpeg, vec![], 640, 480),
        Track::audio(
            3,
            Codec::Aac,
            aac::build_asc(2, 48000, 2).unwrap(),
            48000,
            2,
        ),
    ]
}

fn frame(track: u32, dts: i64, cts: i32, key: bool, data: Vec<u8>) -> Frame {
    Frame {
        track,
        dts,
        cts,
        key,
        data,
    }
}

/// A packet's PID, payload_unit_start, adaptation field and payload.
struct Packet<'a> {
    pid: u16,
    start: bool,
    cc: u8,
    af: &'a [u8],
    payload: &'a [u8],
}

fn packets(ts: &[u8]) -> Vec<Packet<'_>> {
    assert_eq!(ts.len() % PACKET_SIZE, 0);
    ts.chunks(PACKET_SIZE)
        .map(|p| {
            assert_eq!(p[0], 0x47);
            let pid = u16::from_be_bytes([p[1] & 0x1f, p[2]]);
            let afc = p[3] >> 4;
            let (af, payload) = if afc & 2 != 0 {
                let len = usize::from(p[4]);
                (&p[5..5 + len], &p[5 + len..])
            } else {
                (&p[4..4], &p[4..])
            };
            assert!(afc & 1 != 0, "every packet carries payload");
            Packet {
                pid,
                start: p[1] & 0x40 != 0,
                cc: p[3] & 0x0f,
                af,
                payload,
            }
        })
        .collect()
}

/// Reassembled PES packets per PID; checks continuity counters on the way.
fn pes_by_pid(ts: &[u8]) -> HashMap<u16, Vec<Vec<u8>>> {
    let mut cc: HashMap<u16, u8> = HashMap::new();
    let mut out: HashMap<u16, Vec<Vec<u8>>> = HashMap::new();
    for p in packets(ts) {
        if let Some(prev) = cc.insert(p.pid, p.cc) {
            assert_eq!(p.cc, (prev + 1) & 0x0f, "continuity on PID {:#x}", p.pid);
        }
        if p.pid == 0 || p.pid == PMT_PID {
            continue;
        }
        let list = out.entry(p.pid).or_default();
        if p.start {
            list.push(Vec::new());
        }
        list.last_mut().unwrap().extend_from_slice(p.payload);
    }
    out
}

fn read_timestamp(b: &[u8]) -> u64 {
    (u64::from(b[0] >> 1 & 7) << 30)
        | (u64::from(b[1]) << 22)
        | (u64::from(b[2] >> 1) << 15)
        | (u64::from(b[3]) << 7)
        | u64::from(b[4] >> 1)
}

#[test]
fn pat_matches_ffmpeg() {
    let mut mux = TsMuxer::new(&tracks()).unwrap();
    let mut out = Vec::new();
    mux.mux(&frame(3, 0, 0, true, vec![1, 2, 3]), &mut out)
        .unwrap();
    // FFmpeg's PAT for transport_stream_id 1, program 1, PMT PID 0x1000.
    let pat = [
        0x47, 0x40, 0x00, 0x10, 0x00, 0x00, 0xb0, 0x0d, 0x00, 0x01, 0xc1, 0x00, 0x00, 0x00, 0x01,
        0xf0, 0x00, 0x2a, 0xb1, 0x04, 0xb2,
    ];
    assert_eq!(&out[..pat.len()], &pat);
    assert!(out[pat.len()..PACKET_SIZE].iter().all(|&b| b == 0xff));
    // PMT: PCR on the video PID 0x100, streams 0x100 (H.264) and 0x102 (AAC).
    let pmt = &out[PACKET_SIZE..2 * PACKET_SIZE];
    assert_eq!(&pmt[1..3], &[0x50, 0x00]);
    let section = &pmt[5..5 + 3 + 9 + 10 + 4];
    assert_eq!(&section[8..10], &[0xe1, 0x00]);
    assert_eq!(&section[12..17], &[0x1b, 0xe1, 0x00, 0xf0, 0x00]);
    assert_eq!(&section[17..22], &[0x0f, 0xe1, 0x02, 0xf0, 0x00]);
    assert_eq!(
        crc32_mpeg(section),
        0,
        "a section including its CRC has CRC 0"
    );
}

#[test]
fn video_pes_layout() {
    let mut mux = TsMuxer::new(&tracks()).unwrap();
    let mut out = Vec::new();
    let idr = vec![0, 0, 0, 3, 0x65, 0x88, 0x84];
    let p = vec![0, 0, 0, 2, 0x41, 0x9a];
    mux.mux(&frame(1, 1_000_000, 66_667, true, idr), &mut out)
        .unwrap();
    mux.mux(&frame(1, 1_033_333, 0, false, p), &mut out)
        .unwrap();
    mux.mux(&frame(2, 0, 0, true, vec![0xff, 0xd8]), &mut out)
        .unwrap();
    mux.mux(&frame(9, 0, 0, true, vec![1]), &mut out).unwrap();
    let pk = packets(&out);
    assert_eq!(
        pk.len(),
        4,
        "PAT, PMT, two video packets; JPEG and unknown ignored"
    );
    // Keyframe packet: PCR and random_access_indicator.
    assert_eq!(pk[2].af[0], 0x50);
    let af = pk[2].af;
    let pcr = (u64::from(af[1]) << 25)
        | (u64::from(af[2]) << 17)
        | (u64::from(af[3]) << 9)
        | (u64::from(af[4]) << 1)
        | u64::from(af[5] >> 7);
    assert_eq!(pcr, 90_000);
    assert_eq!(pk[3].af[0], 0x10, "PCR but no random access on the P frame");

    let pes = &pes_by_pid(&out)[&0x100];
    let first = &pes[0];
    assert_eq!(&first[..9], &[0, 0, 1, 0xe0, 0, 0, 0x84, 0xc0, 10]);
    assert_eq!(read_timestamp(&first[9..]), 96_000);
    assert_eq!(read_timestamp(&first[14..]), 90_000);
    let es = &first[19..];
    let nals = h264::annexb_nals(es);
    let types: Vec<u8> = nals.iter().map(|n| h264::nal_type(n)).collect();
    assert_eq!(types, vec![9, 7, 8, 5]);
    assert_eq!(&es[..6], &AUD);
    let second = &pes[1];
    assert_eq!(&second[7..9], &[0x80, 5]);
    assert_eq!(read_timestamp(&second[9..]), 93_000);
    let types: Vec<u8> = h264::annexb_nals(&second[14..])
        .iter()
        .map(|n| h264::nal_type(n))
        .collect();
    assert_eq!(types, vec![9, 1]);
}

#[test]
fn audio_pes_is_adts_with_length() {
    let t = tracks();
    let mut mux = TsMuxer::new(&t[2..]).unwrap();
    let mut out = Vec::new();
    for i in 0..3 {
        mux.mux(&frame(3, i * 21_333, 0, true, vec![0x21; 300]), &mut out)
            .unwrap();
    }
    // Audio only: PSI once at the start (less than a second passed), PCR on audio.
    let pk = packets(&out);
    assert_eq!(pk.iter().filter(|p| p.pid == 0).count(), 1);
    assert_eq!(pk[1].payload[9..11], [0xe1, 0x00]);
    let pes = &pes_by_pid(&out)[&0x100];
    assert_eq!(pes.len(), 3);
    for p in pes {
        assert_eq!(&p[..4], &[0, 0, 1, 0xc0]);
        assert_eq!(usize::from(u16::from_be_bytes([p[4], p[5]])), p.len() - 6);
        assert_eq!(&p[14..16], &[0xff, 0xf1]);
        assert_eq!(p.len(), 14 + 7 + 300);
    }
    // A second later PAT/PMT are repeated.
    mux.mux(&frame(3, 1_100_000, 0, true, vec![1]), &mut out)
        .unwrap();
    assert_eq!(packets(&out).iter().filter(|p| p.pid == 0).count(), 2);
}

#[test]
fn bad_input_is_an_error_and_writes_nothing() {
    let mut mux = TsMuxer::new(&tracks()).unwrap();
    let mut out = vec![1, 2, 3];
    assert!(mux
        .mux(&frame(1, 0, 0, true, vec![0, 0, 0, 9, 1]), &mut out)
        .is_err());
    assert!(mux
        .mux(&frame(3, 0, 0, true, vec![0; 9000]), &mut out)
        .is_err());
    assert_eq!(out, vec![1, 2, 3]);
    assert!(TsMuxer::new(&tracks()[1..2]).is_err());
    assert!(TsMuxer::new(&[]).is_err());
    let mut broken = tracks();
    broken[0].init.truncate(8);
    assert!(TsMuxer::new(&broken).is_err());
}

#[test]
fn timestamps_wrap_and_negative() {
    assert_eq!(to_90khz(0), 0);
    assert_eq!(to_90khz(33_333), 3000);
    assert_eq!(to_90khz(-1_000_000), (1 << 33) - 90_000);
    assert_eq!(to_90khz(i64::MAX), to_90khz(i64::MAX) & ((1 << 33) - 1));
    let mut mux = TsMuxer::new(&tracks()).unwrap();
    let mut out = Vec::new();
    for dts in [i64::MIN, -5, i64::MAX] {
        mux.mux(
            &frame(1, dts, i32::MAX, true, vec![0, 0, 0, 1, 0x65]),
            &mut out,
        )
        .unwrap();
    }
}

proptest! {
    #[test]
    fn any_size_reassembles(sizes in proptest::collection::vec(0usize..1200, 1..6), key in any::<bool>()) {
        let mut mux = TsMuxer::new(&tracks()).unwrap();
        let mut out = Vec::new();
        let mut expected = Vec::new();
        for (i, size) in sizes.iter().enumerate() {
            let mut data = (*size as u32 + 1).to_be_bytes().to_vec();
            data.push(0x41);
            data.extend((0..*size).map(|b| (b % 251) as u8 + 1));
            expected.push(data[4..].to_vec());
            mux.mux(&frame(1, i as i64 * 40_000, 0, key && i == 0, data), &mut out).unwrap();
        }
        let pes = &pes_by_pid(&out)[&0x100];
        prop_assert_eq!(pes.len(), sizes.len());
        for (p, want) in pes.iter().zip(&expected) {
            let nals = h264::annexb_nals(&p[14..]);
            prop_assert_eq!(nals.last().unwrap(), &want.as_slice());
        }
    }
}
