use super::*;
use crate::ts::{TsMuxer, PACKET_SIZE};
use proptest::prelude::*;

const HD: &[u8] = include_bytes!("../testdata/sps_pps_1280x720_high.h264");
const SD: &[u8] = include_bytes!("../testdata/sps_pps_640x360_baseline.h264");

/// A small deterministic PRNG (xorshift64*), so failures reproduce.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.max(1))
    }
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// A number in `0..n` (`n` > 0).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| self.next() as u8).collect()
    }
    /// Bytes without zeros: they cannot form a start code or trailing zero bytes.
    fn nonzero_bytes(&mut self, n: usize) -> Vec<u8> {
        (0..n).map(|_| (self.next() % 255) as u8 + 1).collect()
    }
}

fn avcc(sample: &[u8]) -> Vec<u8> {
    let nals = h264::annexb_nals(sample);
    h264::avcc_from_parameter_sets(&[nals[0]], &[nals[1]]).unwrap()
}

fn hd_tracks() -> Vec<Track> {
    vec![
        Track::video(1, Codec::H264, avcc(HD), 1280, 720),
        Track::audio(
            2,
            Codec::Aac,
            aac::build_asc(2, 48000, 2).unwrap(),
            48000,
            2,
        ),
    ]
}

/// Microseconds of a 90 kHz tick count: the times that survive the 90 kHz round trip.
fn us(ticks: i64) -> i64 {
    ticks_to_us(ticks)
}

/// One AVCC NAL unit of `nal_type` with `len` payload bytes.
fn nal(rng: &mut Rng, nal_type: u8, len: usize) -> Vec<u8> {
    let mut out = ((len + 1) as u32).to_be_bytes().to_vec();
    out.push(0x60 | nal_type);
    out.extend(rng.nonzero_bytes(len));
    out
}

/// `video` frames at 30 fps (keyframe every 30, some reordering) and `audio` AAC frames
/// at 48 kHz, both starting at `start` (90 kHz ticks).
fn media(seed: u64, start: i64, video: usize, audio: usize) -> (Vec<Frame>, Vec<Frame>) {
    let mut rng = Rng::new(seed);
    let v = (0..video)
        .map(|n| {
            let key = n % 30 == 0;
            let mut data = Vec::new();
            if key {
                data.extend(nal(&mut rng, 6, 20));
                let size = if n == 0 {
                    150_000
                } else {
                    5_000 + rng.below(20_000)
                };
                data.extend(nal(&mut rng, 5, size));
            } else {
                let size = 10 + rng.below(3_000);
                data.extend(nal(&mut rng, 1, size));
            }
            let dts = start + n as i64 * 3000;
            let pts = dts + 3000 * (n as i64 % 3);
            Frame {
                track: 1,
                dts: us(dts),
                cts: (us(pts) - us(dts)) as i32,
                key,
                data,
            }
        })
        .collect();
    let a = (0..audio)
        .map(|n| Frame {
            track: 2,
            dts: us(start + n as i64 * 1920),
            cts: 0,
            key: true,
            data: {
                let len = 1 + rng.below(700);
                rng.bytes(len)
            },
        })
        .collect();
    (v, a)
}

/// Muxes `frames` (sorted by dts, video first at equal times) with the crate's muxer.
fn mux(tracks: &[Track], frames: &[&[Frame]]) -> Vec<u8> {
    let mut all: Vec<&Frame> = frames.iter().flat_map(|f| f.iter()).collect();
    all.sort_by_key(|f| (f.dts, f.track));
    let mut muxer = TsMuxer::new(tracks).unwrap();
    let mut out = Vec::new();
    for f in all {
        muxer.mux(f, &mut out).unwrap();
    }
    out
}

fn demux_in(ts: &[u8], chunk: usize) -> (Vec<DemuxEvent>, DemuxStats) {
    let mut d = TsDemuxer::new();
    let mut out = Vec::new();
    for c in ts.chunks(chunk) {
        d.push(c, &mut out);
    }
    d.finish(&mut out);
    (out, d.stats())
}

fn frames_of(events: &[DemuxEvent], track: u32) -> Vec<Frame> {
    events
        .iter()
        .filter_map(|e| match e {
            DemuxEvent::Frame(f) if f.track == track => Some(f.clone()),
            _ => None,
        })
        .collect()
}

fn tracks_events(events: &[DemuxEvent]) -> Vec<Vec<Track>> {
    events
        .iter()
        .filter_map(|e| match e {
            DemuxEvent::Tracks(t) => Some(t.clone()),
            _ => None,
        })
        .collect()
}

/// Asserts `got` equals `want` frame by frame (with a readable message).
fn assert_frames(got: &[Frame], want: &[Frame]) {
    assert_eq!(got.len(), want.len(), "frame count");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(
            (g.track, g.dts, g.cts, g.key, g.data.len()),
            (w.track, w.dts, w.cts, w.key, w.data.len()),
            "frame {i}"
        );
        assert!(g.data == w.data, "frame {i} data");
    }
}

/// The PID, payload_unit_start flag and payload offset of every packet.
fn packet_info(ts: &[u8]) -> Vec<(u16, bool)> {
    ts.chunks(PACKET_SIZE)
        .map(|p| (u16::from_be_bytes([p[1] & 0x1f, p[2]]), p[1] & 0x40 != 0))
        .collect()
}

#[test]
fn round_trip_through_muxer_in_any_chunking() {
    let tracks = hd_tracks();
    let (video, audio) = media(1, 900_000, 60, 94);
    let ts = mux(&tracks, &[&video, &audio]);
    for chunk in [1, 7, 188, 4096, ts.len()] {
        let (events, stats) = demux_in(&ts, chunk);
        assert_eq!(
            events[0],
            DemuxEvent::Tracks(tracks.clone()),
            "chunk {chunk}"
        );
        assert_eq!(tracks_events(&events).len(), 1);
        assert_frames(&frames_of(&events, 1), &video);
        assert_frames(&frames_of(&events, 2), &audio);
        assert_eq!(
            stats,
            DemuxStats {
                packets: (ts.len() / PACKET_SIZE) as u64,
                ..DemuxStats::default()
            },
            "chunk {chunk}"
        );
    }
}

#[test]
fn video_only_and_audio_only_programs() {
    let tracks = hd_tracks();
    let (video, audio) = media(2, 0, 31, 40);
    let ts = mux(&tracks[..1], &[&video]);
    let (events, _) = demux_in(&ts, 4096);
    assert_eq!(tracks_events(&events), vec![tracks[..1].to_vec()]);
    assert_frames(&frames_of(&events, 1), &video);

    let mut audio_track = tracks[1].clone();
    audio_track.id = 1;
    let audio: Vec<Frame> = audio.into_iter().map(|f| Frame { track: 1, ..f }).collect();
    let ts = mux(std::slice::from_ref(&audio_track), &[&audio]);
    let (events, _) = demux_in(&ts, 1000);
    assert_eq!(events[0], DemuxEvent::Tracks(vec![audio_track]));
    assert_frames(&frames_of(&events, 1), &audio);
}

#[test]
fn timestamps_unwrap_across_33_bits() {
    let tracks = hd_tracks();
    // One second before the 90 kHz clock wraps; two seconds of media.
    let start = (1 << 33) - 90_000;
    let (video, audio) = media(3, start, 60, 94);
    assert!(video.last().unwrap().dts > us(1 << 33));
    let ts = mux(&tracks, &[&video, &audio]);
    let (events, _) = demux_in(&ts, 4096);
    assert_frames(&frames_of(&events, 1), &video);
    assert_frames(&frames_of(&events, 2), &audio);

    // The same media just after the wrap keeps its small times: nothing is rebased.
    let (video, audio) = media(3, 1234, 60, 94);
    let ts = mux(&tracks, &[&video, &audio]);
    let (events, _) = demux_in(&ts, 4096);
    assert_eq!(frames_of(&events, 1)[0].dts, us(1234));
    assert_frames(&frames_of(&events, 2), &audio);

    // Several wraps in a row stay monotonic.
    let mut d = TsDemuxer::new();
    for step in 0..20i64 {
        let t = step * (1 << 31);
        assert_eq!(d.unwrap_ts(t as u64 & ((1 << 33) - 1)), t);
    }
    // A timestamp slightly before the first one is earlier, not 26 hours later.
    let mut d = TsDemuxer::new();
    assert_eq!(d.unwrap_ts(100), 100);
    assert_eq!(d.unwrap_ts((1 << 33) - 50), -50);
}

#[test]
fn tick_conversion_rounds() {
    assert_eq!(ticks_to_us(0), 0);
    assert_eq!(ticks_to_us(3000), 33_333);
    assert_eq!(ticks_to_us(6000), 66_667);
    assert_eq!(ticks_to_us(-3000), -33_333);
    assert_eq!(ticks_to_us(1), 11);
    assert_eq!(ticks_to_us(i64::MAX), i64::MAX);
    // 44.1 kHz: frame k is at k * 1024 / 44100 s, rounded once.
    assert_eq!(aac_time_us(0, 1, 44_100), 23_220);
    assert_eq!(aac_time_us(0, 10, 44_100), 232_200);
    assert_eq!(aac_time_us(90_000, 3, 48_000), 1_064_000);
}

#[test]
fn continuity_error_drops_only_the_damaged_frame() {
    let tracks = hd_tracks();
    let (video, audio) = media(4, 0, 60, 94);
    let ts = mux(&tracks, &[&video, &audio]);
    let info = packet_info(&ts);
    // A packet in the middle of the big first keyframe (PID 0x100, no PES start, and
    // the next one continues the same PES).
    let victim = (1..info.len() - 1)
        .find(|&i| info[i] == (0x100, false) && info[i + 1] == (0x100, false))
        .unwrap();
    let mut damaged = ts[..victim * PACKET_SIZE].to_vec();
    damaged.extend_from_slice(&ts[(victim + 1) * PACKET_SIZE..]);
    let (events, stats) = demux_in(&damaged, 188);
    assert_eq!(stats.continuity_errors, 1);
    assert_eq!(stats.pes_dropped, 1);
    // The first keyframe carried the SPS/PPS, so the tracks come with the second one;
    // the frames before it are dropped (video) or held and emitted (audio).
    assert_frames(&frames_of(&events, 1), &video[30..]);
    assert_frames(&frames_of(&events, 2), &audio);

    // A loss in a later P frame costs that frame only.
    let victim = (info.len() / 2..info.len() - 1)
        .find(|&i| info[i] == (0x100, false) && info[i + 1] == (0x100, false))
        .unwrap();
    let lost = info[..victim]
        .iter()
        .filter(|&&(pid, start)| pid == 0x100 && start)
        .count()
        - 1;
    let mut damaged = ts[..victim * PACKET_SIZE].to_vec();
    damaged.extend_from_slice(&ts[(victim + 1) * PACKET_SIZE..]);
    let (events, stats) = demux_in(&damaged, 4096);
    assert_eq!((stats.continuity_errors, stats.pes_dropped), (1, 1));
    let mut want = video.clone();
    want.remove(lost);
    assert_frames(&frames_of(&events, 1), &want);
    assert_frames(&frames_of(&events, 2), &audio);

    // A duplicated packet is ignored without complaint.
    let mut dup = ts[..(victim + 1) * PACKET_SIZE].to_vec();
    dup.extend_from_slice(&ts[victim * PACKET_SIZE..]);
    let (events, stats) = demux_in(&dup, 4096);
    assert_eq!(stats.continuity_errors, 0);
    assert_frames(&frames_of(&events, 1), &video);
}

#[test]
fn resyncs_after_garbage_between_packets() {
    let tracks = hd_tracks();
    let (video, audio) = media(5, 0, 60, 94);
    let ts = mux(&tracks, &[&video, &audio]);
    let mut rng = Rng::new(55);
    let mut garbled = Vec::new();
    let cut = 40 * PACKET_SIZE;
    garbled.extend_from_slice(&ts[..cut]);
    let mut junk = rng.bytes(1000);
    junk[10] = SYNC;
    junk[198] = SYNC;
    garbled.extend_from_slice(&junk);
    garbled.extend_from_slice(&ts[cut..]);
    // Leading garbage, too.
    let mut lead = rng.bytes(77);
    lead[0] = 0;
    lead.extend_from_slice(&garbled);
    for chunk in [1, 100, 4096] {
        let (events, stats) = demux_in(&lead, chunk);
        assert_eq!(stats.lost_sync, 2, "chunk {chunk}");
        assert_eq!(stats.packets, (ts.len() / PACKET_SIZE) as u64);
        assert_frames(&frames_of(&events, 1), &video);
        assert_frames(&frames_of(&events, 2), &audio);
    }
}

#[test]
fn oversized_pes_is_dropped() {
    let tracks = hd_tracks();
    let (mut video, audio) = media(6, 0, 40, 60);
    let mut rng = Rng::new(6);
    video[10].data = nal(&mut rng, 1, MAX_PES + 1000);
    let ts = mux(&tracks, &[&video, &audio]);
    let (events, stats) = demux_in(&ts, 4096);
    assert_eq!(stats.pes_dropped, 1);
    video.remove(10);
    assert_frames(&frames_of(&events, 1), &video);
    assert_frames(&frames_of(&events, 2), &audio);
}

#[test]
fn joining_mid_stream_waits_for_a_keyframe() {
    let tracks = hd_tracks();
    let (video, audio) = media(7, 0, 60, 94);
    let ts = mux(&tracks, &[&video, &audio]);
    let info = packet_info(&ts);
    // Start a few packets into the first keyframe's PES: PAT/PMT come again with the
    // second keyframe.
    let (events, stats) = demux_in(&ts[5 * PACKET_SIZE..], 4096);
    assert_eq!(events[0], DemuxEvent::Tracks(tracks.clone()));
    assert_frames(&frames_of(&events, 1), &video[30..]);
    let got_audio = frames_of(&events, 2);
    // Audio waits for the PMT; then it is held until the video keyframe completes.
    let second_pat = (1..info.len()).find(|&i| info[i].0 == 0).unwrap();
    let audio_before = info[..second_pat]
        .iter()
        .filter(|&&(pid, start)| pid == 0x101 && start)
        .count();
    assert_frames(&got_audio, &audio[audio_before..]);
    assert!(stats.frames_dropped == 0, "nothing decodable was dropped");
}

#[test]
fn parameter_changes_announce_tracks_again() {
    let hd = hd_tracks();
    let mut sd = hd.clone();
    sd[0] = Track::video(1, Codec::H264, avcc(SD), 640, 360);
    let (video, audio) = media(8, 0, 60, 94);
    let (video2, audio2) = media(9, 180_000, 60, 94);
    let mut first = TsMuxer::new(&hd).unwrap();
    let mut ts = Vec::new();
    let mut all: Vec<&Frame> = video.iter().chain(&audio).collect();
    all.sort_by_key(|f| (f.dts, f.track));
    for f in all {
        first.mux(f, &mut ts).unwrap();
    }
    let mut second = TsMuxer::new(&sd).unwrap();
    second.restore(first.state());
    let mut all: Vec<&Frame> = video2.iter().chain(&audio2).collect();
    all.sort_by_key(|f| (f.dts, f.track));
    for f in all {
        second.mux(f, &mut ts).unwrap();
    }
    // Then an audio-only program: the PMT changes.
    let mut mono = hd[1].clone();
    mono.id = 1;
    mono.channels = 1;
    mono.init = aac::build_asc(2, 48000, 1).unwrap();
    let audio3: Vec<Frame> = media(10, 360_000, 0, 20)
        .1
        .into_iter()
        .map(|f| Frame { track: 1, ..f })
        .collect();
    let mut third = TsMuxer::new(std::slice::from_ref(&mono)).unwrap();
    // Continue the counters of PAT, PMT and PID 0x100.
    third.restore(second.state());
    for f in &audio3 {
        third.mux(f, &mut ts).unwrap();
    }

    let (events, stats) = demux_in(&ts, 4096);
    assert_eq!(stats.continuity_errors, 0);
    assert_eq!(tracks_events(&events), vec![hd, sd, vec![mono]]);
    let cut = events
        .iter()
        .position(|e| matches!(e, DemuxEvent::Tracks(t) if t[0].width == 640))
        .unwrap();
    let (before, after) = events.split_at(cut);
    assert_frames(&frames_of(before, 1), &video);
    assert!(matches!(&after[1], DemuxEvent::Frame(f) if f.key && f.track == 1));
    let cut3 = events
        .iter()
        .rposition(|e| matches!(e, DemuxEvent::Tracks(_)))
        .unwrap();
    assert_frames(&frames_of(&events[cut..cut3], 1), &video2);
    assert_frames(&frames_of(&events[cut3..], 1), &audio3);
    let mut all_audio = audio.clone();
    all_audio.extend(audio2);
    assert_frames(&frames_of(&events[..cut3], 2), &all_audio);
}

/// A packet of `pid` carrying `payload` (at most 184 bytes), padded with adaptation
/// field stuffing.
fn packet(pid: u16, start: bool, cc: u8, payload: &[u8]) -> Vec<u8> {
    let mut p = vec![
        SYNC,
        if start { 0x40 } else { 0 } | (pid >> 8) as u8,
        pid as u8,
        0x10 | cc,
    ];
    let stuffing = 184 - payload.len();
    if stuffing > 0 {
        p[3] |= 0x20;
        p.push((stuffing - 1) as u8);
        if stuffing > 1 {
            p.push(0);
            p.resize(4 + stuffing, 0xff);
        }
    }
    p.extend_from_slice(payload);
    p
}

fn pes_packets(pid: u16, cc: &mut u8, pes: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    for (i, chunk) in pes.chunks(184).enumerate() {
        out.extend(packet(pid, i == 0, *cc, chunk));
        *cc = (*cc + 1) & 15;
    }
    out
}

/// An audio PES with a PTS and the given payload.
fn audio_pes(pts: u64, payload: &[u8]) -> Vec<u8> {
    let mut pes = vec![0, 0, 1, 0xc0];
    pes.extend_from_slice(&((payload.len() + 8) as u16).to_be_bytes());
    pes.extend_from_slice(&[0x84, 0x80, 5]);
    pes.push(0x21 | ((pts >> 29) & 0x0e) as u8);
    pes.push((pts >> 22) as u8);
    pes.push(((pts >> 14) & 0xfe) as u8 | 1);
    pes.push((pts >> 7) as u8);
    pes.push(((pts << 1) & 0xfe) as u8 | 1);
    pes.extend_from_slice(payload);
    pes
}

/// An ADTS frame (AAC-LC, 44.1 kHz, stereo), with CRC if `crc`.
fn adts(payload: &[u8], crc: bool) -> Vec<u8> {
    let asc = aac::AudioSpecificConfig {
        object_type: 2,
        sample_rate: 44_100,
        channels: 2,
    };
    let extra = if crc { 2 } else { 0 };
    let mut h = aac::adts_header(&asc, payload.len() + extra)
        .unwrap()
        .to_vec();
    if crc {
        h[1] &= 0xfe;
        h.extend_from_slice(&[0xab, 0xcd]);
    }
    h.extend_from_slice(payload);
    h
}

/// PAT and PMT of an audio-only program with its stream on PID 0x100.
fn audio_psi() -> Vec<u8> {
    let asc = aac::build_asc(2, 44_100, 2).unwrap();
    let track = Track::audio(1, Codec::Aac, asc, 44_100, 2);
    let mut ts = Vec::new();
    let frame = Frame {
        track: 1,
        dts: 0,
        cts: 0,
        key: true,
        data: vec![1],
    };
    TsMuxer::new(&[track])
        .unwrap()
        .mux(&frame, &mut ts)
        .unwrap();
    ts.truncate(2 * PACKET_SIZE);
    ts
}

#[test]
fn several_adts_frames_per_pes_with_and_without_crc() {
    let mut ts = audio_psi();
    let mut cc = 0;
    let mut rng = Rng::new(11);
    let payloads: Vec<Vec<u8>> = (0..7).map(|i| rng.bytes(50 + i * 40)).collect();
    // PES 1: three frames (the second with CRC); PES 2: two frames, the first one cut
    // across the PES boundary; PES 3 has no PTS and continues the clock.
    let mut es1 = Vec::new();
    es1.extend(adts(&payloads[0], false));
    es1.extend(adts(&payloads[1], true));
    es1.extend(adts(&payloads[2], false));
    let f3 = adts(&payloads[3], false);
    es1.extend_from_slice(&f3[..20]);
    ts.extend(pes_packets(0x100, &mut cc, &audio_pes(900_000, &es1)));
    let mut es2 = f3[20..].to_vec();
    es2.extend(adts(&payloads[4], true));
    es2.extend(adts(&payloads[5], false));
    // The PTS names the first frame starting here (the fifth): 4 frames after 900000.
    let pts2 = 900_000 + 4 * 1024 * 90_000 / 44_100;
    ts.extend(pes_packets(0x100, &mut cc, &audio_pes(pts2, &es2)));
    let mut pes3 = vec![0, 0, 1, 0xc0];
    let es3 = adts(&payloads[6], false);
    pes3.extend_from_slice(&((es3.len() + 3) as u16).to_be_bytes());
    pes3.extend_from_slice(&[0x84, 0x00, 0]);
    pes3.extend_from_slice(&es3);
    ts.extend(pes_packets(0x100, &mut cc, &pes3));

    let (events, stats) = demux_in(&ts, 7);
    assert_eq!(
        stats,
        DemuxStats {
            packets: (ts.len() / PACKET_SIZE) as u64,
            ..DemuxStats::default()
        }
    );
    let asc = aac::build_asc(2, 44_100, 2).unwrap();
    assert_eq!(
        events[0],
        DemuxEvent::Tracks(vec![Track::audio(1, Codec::Aac, asc, 44_100, 2)])
    );
    let frames = frames_of(&events, 1);
    assert_eq!(frames.len(), 7);
    for (k, f) in frames.iter().enumerate() {
        assert_eq!(f.data, payloads[k], "frame {k}");
        assert!(f.key);
        assert_eq!(f.cts, 0);
    }
    let times: Vec<i64> = frames.iter().map(|f| f.dts).collect();
    let exact = |k: i64| aac_time_us(900_000, k.into(), 44_100);
    assert_eq!(&times[..4], &[exact(0), exact(1), exact(2), exact(3)]);
    assert_eq!(times[4], ticks_to_us(pts2 as i64));
    assert_eq!(times[5], aac_time_us(pts2 as i64, 1, 44_100));
    assert_eq!(times[6], aac_time_us(pts2 as i64, 2, 44_100));
}

#[test]
fn adts_multiple_blocks_and_pce_are_skipped() {
    let mut ts = audio_psi();
    let mut cc = 0;
    let good = adts(&[1, 2, 3], false);
    let mut blocks = adts(&[4, 5, 6], false);
    blocks[6] |= 1; // two raw data blocks
    let mut pce = adts(&[7, 8, 9], false);
    pce[2] &= !1;
    pce[3] &= 0x3f; // channel configuration 0
    let mut es = good.clone();
    es.extend(&blocks);
    es.extend(&pce);
    es.extend(&good);
    ts.extend(pes_packets(0x100, &mut cc, &audio_pes(0, &es)));
    let (events, stats) = demux_in(&ts, 188);
    let frames = frames_of(&events, 1);
    assert_eq!(frames.len(), 2);
    assert_eq!(stats.frames_dropped, 2);
    // The skipped frames still take their time: 1 + 2 + 1 frames before the last.
    assert_eq!(frames[1].dts, aac_time_us(0, 4, 44_100));
}

#[test]
fn ignores_other_stream_types_and_programs() {
    // A PMT listing MPEG-2 video (0x02), then H.264, then private data, then AAC.
    let tracks = hd_tracks();
    let (video, audio) = media(12, 0, 31, 30);
    let ts = mux(&tracks, &[&video, &audio]);
    let mut patched = Vec::new();
    for p in ts.chunks(PACKET_SIZE) {
        let pid = u16::from_be_bytes([p[1] & 0x1f, p[2]]);
        if pid == 0x1000 {
            let cc = p[3] & 15;
            let mut section = vec![
                0x02, 0xb0, 0, 0x00, 0x01, 0xc1, 0x00, 0x00, 0xe1, 0x00, 0xf0, 0x00,
            ];
            for (t, pid) in [
                (0x02u8, 0x1ff0u16),
                (0x1b, 0x100),
                (0x06, 0x1ff1),
                (0x0f, 0x101),
            ] {
                section.push(t);
                section.extend_from_slice(&(0xe000 | pid).to_be_bytes());
                section.extend_from_slice(&[0xf0, 0x03, 1, 2, 3]);
            }
            let len = section.len() - 3 + 4;
            section[2] = len as u8;
            let crc = crc32_mpeg(&section);
            section.extend_from_slice(&crc.to_be_bytes());
            let mut payload = vec![0];
            payload.extend(section);
            let mut pk = vec![SYNC, 0x50, 0x00, 0x10 | cc];
            pk.extend(payload);
            pk.resize(PACKET_SIZE, 0xff);
            patched.extend(pk);
        } else {
            patched.extend_from_slice(p);
        }
        // Packets on PIDs nobody asked for, including the null PID.
        patched.extend(packet(0x1ff0, true, 0, &[0, 0, 1, 0xe0, 0, 0]));
        patched.extend(packet(0x1fff, false, 0, &[0xff; 184]));
    }
    let (events, stats) = demux_in(&patched, 4096);
    assert_eq!(tracks_events(&events), vec![tracks]);
    assert_frames(&frames_of(&events, 1), &video);
    assert_frames(&frames_of(&events, 2), &audio);
    assert_eq!(stats.continuity_errors, 0);
}

#[test]
fn random_bytes_never_panic() {
    let mut rng = Rng::new(0x5eed);
    let mut d = TsDemuxer::new();
    let mut out = Vec::new();
    for _ in 0..200 {
        let len = rng.below(20_000);
        let data = rng.bytes(len);
        d.push(&data, &mut out);
    }
    d.finish(&mut out);
    assert!(d.stats().lost_sync > 0);

    // Random packets with valid sync bytes after a real PAT/PMT: every PES and section
    // path sees garbage.
    let tracks = hd_tracks();
    let (video, audio) = media(13, 0, 2, 2);
    let psi = mux(&tracks, &[&video, &audio]);
    for seed in 0..50 {
        let mut rng = Rng::new(seed + 100);
        let mut ts = psi.clone();
        for _ in 0..500 {
            let mut p = rng.bytes(PACKET_SIZE);
            p[0] = SYNC;
            let pid = [0u16, 0x1000, 0x100, 0x101][rng.below(4)];
            p[1] = (p[1] & 0x60) | (pid >> 8) as u8;
            p[2] = pid as u8;
            if rng.below(3) == 0 {
                // A plausible PES start.
                p[1] |= 0x40;
                p[3] = 0x10 | (p[3] & 0x0f);
                p[4..8].copy_from_slice(&[0, 0, 1, if pid == 0x100 { 0xe0 } else { 0xc0 }]);
                if rng.below(2) == 0 {
                    p[8] = 0;
                    p[9] = 0;
                }
                p[10] = 0x80 | (p[10] & 0x3f);
            }
            ts.extend(p);
        }
        let chunk = 1 + rng.below(600);
        let (events, _) = demux_in(&ts, chunk);
        check_consistent(&events);
    }
}

/// Frames belong to the tracks announced before them and carry well-formed data.
fn check_consistent(events: &[DemuxEvent]) {
    let mut tracks: Option<&Vec<Track>> = None;
    for e in events {
        match e {
            DemuxEvent::Tracks(t) => {
                assert!(!t.is_empty());
                tracks = Some(t);
            }
            DemuxEvent::Frame(f) => {
                let t = tracks.expect("frame before tracks");
                let track = &t[f.track as usize - 1];
                assert_eq!(track.id, f.track);
                if track.codec == Codec::H264 {
                    let nals = h264::avcc_nals(&f.data).unwrap();
                    assert!(!nals.is_empty());
                    assert!(nals
                        .iter()
                        .all(|n| !matches!(h264::nal_type(n), 7 | 8 | 9 | 12)));
                    assert_eq!(f.key, h264::avcc_has_idr(&f.data));
                }
            }
        }
    }
}

#[test]
fn corrupted_real_stream_never_panics() {
    let tracks = hd_tracks();
    let (video, audio) = media(14, 0, 120, 180);
    let ts = mux(&tracks, &[&video, &audio]);
    let mut with_frames = 0;
    for seed in 0..60 {
        let mut rng = Rng::new(seed + 1000);
        let mut bad = ts.clone();
        for _ in 0..1 + rng.below(12) {
            let at = rng.below(bad.len());
            match rng.below(7) {
                0 => bad[at] ^= 1 << rng.below(8),
                1 => {
                    let n = rng.below(400).min(bad.len() - at);
                    let junk = rng.bytes(n);
                    bad[at..at + n].copy_from_slice(&junk);
                }
                2 => {
                    let n = rng.below(1000).min(bad.len() - at);
                    bad.drain(at..at + n);
                }
                3 => {
                    let n = rng.below(300);
                    let junk = rng.bytes(n);
                    bad.splice(at..at, junk);
                }
                4 => {
                    let n = rng.below(2000).min(bad.len() - at);
                    let copy = bad[at..at + n].to_vec();
                    let to = rng.below(bad.len());
                    bad.splice(to..to, copy);
                }
                5 => {
                    // A header byte of some packet: flags, PID, counter.
                    let p = at - at % PACKET_SIZE;
                    let i = p + 1 + rng.below(4);
                    if i < bad.len() {
                        bad[i] = rng.next() as u8;
                    }
                }
                _ => {
                    let n = rng.below(600).min(bad.len() - at);
                    bad[at..at + n].fill(0);
                }
            }
            if bad.is_empty() {
                break;
            }
        }
        let chunk = [1, 7, 188, 4096, 100_000][rng.below(5)];
        let (events, _) = demux_in(&bad, chunk);
        check_consistent(&events);
        if events.len() > 100 {
            with_frames += 1;
        }
    }
    // Most damage leaves most of the stream usable.
    assert!(with_frames > 40, "{with_frames} of 60 runs kept frames");
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]
    #[test]
    fn chunking_does_not_change_the_result(cuts in proptest::collection::vec(0usize..400_000, 0..40), seed in 0u64..1000) {
        let tracks = hd_tracks();
        let (video, audio) = media(seed, 0, 31, 40);
        let mut ts = mux(&tracks, &[&video, &audio]);
        // Some damage, identical for both runs.
        let mut rng = Rng::new(seed);
        for _ in 0..3 {
            let at = rng.below(ts.len());
            ts[at] = rng.next() as u8;
        }
        let (whole, whole_stats) = demux_in(&ts, ts.len());
        let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % (ts.len() + 1)).collect();
        cuts.sort_unstable();
        let mut d = TsDemuxer::new();
        let mut out = Vec::new();
        let mut from = 0;
        for c in cuts.into_iter().chain([ts.len()]) {
            d.push(&ts[from..c], &mut out);
            from = c;
        }
        d.finish(&mut out);
        prop_assert_eq!(d.stats(), whole_stats);
        prop_assert!(out == whole);
    }
}
