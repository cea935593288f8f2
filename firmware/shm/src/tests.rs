use super::*;
use brume_format::{Codec, Frame, Track};
use proptest::prelude::*;
use std::time::Duration;

fn ns(tag: &str) -> Namespace {
    Namespace {
        dir: std::env::temp_dir(),
        prefix: format!("brumetest{}{}", std::process::id(), tag),
    }
}

fn small() -> Layout {
    Layout {
        max_tracks: 4,
        slots: 64,
        data_capacity: 64 * 1024,
    }
}

fn tracks() -> Vec<Track> {
    vec![
        Track::video(1, Codec::H264, vec![1, 2, 3], 640, 360),
        Track::audio(2, Codec::Aac, vec![0x11, 0x90], 48000, 1),
    ]
}

/// A payload that carries its own proof of integrity: bytes 0..8 are a seed, 8..12 the
/// length, and every following byte is derived from the seed.
fn payload(seed: u64, len: usize) -> Vec<u8> {
    let len = len.max(12);
    let mut v = Vec::with_capacity(len);
    v.extend_from_slice(&seed.to_le_bytes());
    v.extend_from_slice(&(len as u32).to_le_bytes());
    let mut x = seed | 1;
    while v.len() < len {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        v.push(x as u8);
    }
    v
}

fn check_payload(data: &[u8]) -> std::result::Result<u64, String> {
    if data.len() < 12 {
        return Err(format!("short frame of {} bytes", data.len()));
    }
    let seed = u64::from_le_bytes(data[0..8].try_into().unwrap());
    let len = u32::from_le_bytes(data[8..12].try_into().unwrap()) as usize;
    if len != data.len() {
        return Err(format!("seed {seed}: length {} != {len}", data.len()));
    }
    if payload(seed, len) != data {
        return Err(format!("seed {seed}: torn or corrupt payload"));
    }
    Ok(seed)
}

proptest! {
    /// A placed frame never crosses the ring's end, never overlaps the previous frame,
    /// starts 8-byte aligned and wastes less than one frame of space.
    #[test]
    fn place_keeps_frames_whole(
        start in 0u64..1 << 40,
        lens in proptest::collection::vec(1u64..5000, 1..50),
        size_pages in 2u64..8,
    ) {
        let size = size_pages * 4096;
        let mut off = start & !7;
        for len in lens {
            let (s, e) = place(off, len, size);
            prop_assert!(s >= off);
            prop_assert_eq!(s % 8, 0);
            prop_assert!(e - s >= len && e - s < len + 8);
            prop_assert!(s % size + (e - s) <= size, "frame crosses the ring end");
            prop_assert!(s - off < e - s || s % size == 0);
            off = e;
        }
    }

    /// Keyframe and slot positions wrap by masking: index i and i + slots share a slot.
    #[test]
    fn slot_index_wraps(idx in 0u64..u64::MAX / 2) {
        let l = small();
        prop_assert_eq!(idx & (l.slots as u64 - 1), (idx + l.slots as u64) & (l.slots as u64 - 1));
    }
}

#[test]
fn layout_regions_do_not_overlap() {
    let l = Layout::default();
    for t in 0..l.max_tracks {
        assert!(l.track_offset(t) % 4096 == 0);
        assert!(l.slots_offset(t) + l.slots as u64 * 64 <= l.data_offset(t));
        assert!(l.data_offset(t) + l.data_capacity == l.track_offset(t + 1));
    }
}

#[test]
fn frames_round_trip_in_publish_order() {
    let ns = ns("order");
    let mut w = Writer::open(&ns, "s", small()).unwrap();
    w.set_tracks(&tracks()).unwrap();
    let mut r = Reader::open(&ns, "s").unwrap();
    assert!(matches!(r.next(Duration::from_millis(10)).unwrap(), Read::Tracks(t) if t.len() == 2));
    let mut sent = Vec::new();
    for i in 0..10u64 {
        let f = Frame {
            track: if i % 3 == 0 { 1 } else { 2 },
            dts: i as i64 * 1000,
            cts: 0,
            key: i == 0,
            data: payload(i, 100 + i as usize * 7),
        };
        w.write(&f).unwrap();
        sent.push(f);
    }
    for want in &sent {
        match r.next(Duration::from_millis(100)).unwrap() {
            Read::Frame(f) => assert_eq!(&f, want),
            other => panic!("expected a frame, got {other:?}"),
        }
    }
    assert!(matches!(
        r.next(Duration::from_millis(5)).unwrap(),
        Read::Timeout
    ));
    w.finish();
    assert!(matches!(
        r.next(Duration::from_millis(100)).unwrap(),
        Read::Ended
    ));
    assert!(ns.objects().is_empty(), "finish removes the segment");
}

#[test]
fn lapped_reader_resyncs_to_newest_keyframe() {
    let ns = ns("lap");
    let mut w = Writer::open(&ns, "s", small()).unwrap();
    w.set_tracks(&tracks()[..1]).unwrap();
    let mut r = Reader::open(&ns, "s").unwrap();
    assert!(matches!(r.next(Duration::ZERO).unwrap(), Read::Tracks(_)));
    // Far more than 64 slots: the reader is lapped.
    for i in 0..500u64 {
        let f = Frame {
            track: 1,
            dts: i as i64 * 33_333,
            cts: 0,
            key: i % 30 == 0,
            data: payload(i, 2000),
        };
        w.write(&f).unwrap();
    }
    assert!(matches!(
        r.next(Duration::ZERO).unwrap(),
        Read::Resync { .. }
    ));
    match r.next(Duration::ZERO).unwrap() {
        Read::Frame(f) => {
            assert!(f.key, "resync lands on a keyframe");
            assert_eq!(check_payload(&f.data).unwrap(), 480);
        }
        other => panic!("{other:?}"),
    }
    w.finish();
}

/// A new viewer of a stream with 10 s between keyframes starts at the newest keyframe,
/// 9 s behind live, and plays forward through the GOP: every frame once, in order, never
/// pulled back to the keyframe it is already past.
#[test]
fn long_gop_reader_plays_forward_from_the_newest_keyframe() {
    let ns = ns("gop");
    let layout = Layout {
        max_tracks: 4,
        slots: 1024,
        data_capacity: 256 * 1024,
    };
    let mut w = Writer::open(&ns, "s", layout).unwrap();
    w.set_tracks(&tracks()).unwrap();
    let frame = |i: u64, track: u32| Frame {
        track,
        dts: i as i64 * 33_333,
        cts: 0,
        key: track == 1 && i.is_multiple_of(300),
        data: payload(i * 2 + track as u64, 64),
    };
    // Keyframes at 0 s and 10 s; live is at 19 s.
    for i in 0..570u64 {
        w.write(&frame(i, 1)).unwrap();
        w.write(&frame(i, 2)).unwrap();
    }
    let mut r = Reader::open(&ns, "s").unwrap();
    assert!(matches!(r.next(Duration::ZERO).unwrap(), Read::Tracks(_)));
    let mut video = Vec::new();
    for _ in 0..1000 {
        match r.next(Duration::ZERO).unwrap() {
            Read::Frame(f) if f.track == 1 => video.push(f.dts / 33_333),
            Read::Frame(_) => {}
            Read::Timeout => break,
            other => panic!("unexpected {other:?} after {} frames", video.len()),
        }
    }
    let want: Vec<i64> = (300..570).collect();
    assert_eq!(video, want, "the newest GOP once, in order");
    // Live moves on 5 s, past the next keyframe (at 20 s), while the reader waits: it
    // jumps forward to that keyframe.
    for i in 570..720u64 {
        w.write(&frame(i, 1)).unwrap();
        w.write(&frame(i, 2)).unwrap();
    }
    let mut after = Vec::new();
    for _ in 0..1000 {
        match r.next(Duration::ZERO).unwrap() {
            Read::Frame(f) if f.track == 1 => after.push(f.dts / 33_333),
            Read::Frame(_) | Read::Resync { .. } => {}
            Read::Timeout => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    assert_eq!(
        after.first(),
        Some(&600),
        "jumped to the 20 s keyframe: {after:?}"
    );
    assert!(after.windows(2).all(|p| p[0] < p[1]), "never backwards");
    assert_eq!(after.last(), Some(&719));
    w.finish();
}

/// An audio-only stream (every frame a keyframe) indexes a keyframe about once a
/// second, so HLS segments and resync points are ~1 s, not one 21 ms AAC frame; each
/// index entry carries the wall-clock time of its frame.
#[test]
fn keyframe_index_is_about_a_second_apart() {
    let ns = ns("keyidx");
    let mut w = Writer::open(&ns, "s", small()).unwrap();
    w.set_tracks(&tracks()[1..]).unwrap();
    let t0 = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_micros() as i64;
    let mut r = Reader::open(&ns, "s").unwrap();
    assert!(matches!(r.next(Duration::ZERO).unwrap(), Read::Tracks(_)));
    // 1024-sample AAC frames at 48 kHz for 2.5 s; the ring keeps the last 64 (1.4 s).
    for i in 0..118u64 {
        let f = Frame {
            track: 2,
            dts: (i * 1024 * 1_000_000 / 48_000) as i64,
            cts: 0,
            key: true,
            data: payload(i, 300),
        };
        w.write(&f).unwrap();
    }
    let keys = r.keyframes();
    assert!(!keys.is_empty());
    for k in &keys {
        assert!(
            (k.wall_us - t0 - k.dts).abs() < 1_000_000,
            "wall clock of key {} ({} µs) against dts {}",
            k.number,
            k.wall_us - t0,
            k.dts
        );
    }
    // Indexed: frames 0, 43 (0.917 s) and 86 (1.835 s), each the first ≥ 0.9 s after
    // the last indexed one.
    assert_eq!(keys.last().unwrap().idx, 86);
    assert_eq!(keys.last().unwrap().number - r.key_base(), 2);
    w.finish();
}

#[test]
fn second_live_writer_is_refused_and_restart_continues_timeline() {
    let ns = ns("busy");
    let mut w = Writer::open(&ns, "s", small()).unwrap();
    w.set_tracks(&tracks()[..1]).unwrap();
    // Same process counts as alive: a second writer from another live pid is refused;
    // simulate with a fake live pid (our parent, which outlives us).
    let seg = Segment::open_path(&ns.stream_path("s").unwrap(), "s").unwrap();
    let ppid = std::os::unix::process::parent_id();
    seg.header().writer_pid.store(ppid, Ordering::SeqCst);
    seg.header()
        .writer_start
        .store(sys::process_start_time(ppid).unwrap(), Ordering::SeqCst);
    assert!(matches!(
        Writer::open(&ns, "s", small()),
        Err(Error::Busy { .. })
    ));
    // A dead writer (pid with a wrong start time) is adopted: epoch 2.
    seg.header().writer_start.store(1, Ordering::SeqCst);
    let mut r = Reader::open(&ns, "s").unwrap();
    assert!(matches!(r.next(Duration::ZERO).unwrap(), Read::Tracks(_)));
    w.write(&Frame {
        track: 1,
        dts: 5_000_000,
        cts: 0,
        key: true,
        data: payload(1, 50),
    })
    .unwrap();
    drop(w);
    let mut w2 = Writer::open(&ns, "s", small()).unwrap();
    assert_eq!(w2.epoch(), 2);
    w2.write(&Frame {
        track: 1,
        dts: 0,
        cts: 0,
        key: true,
        data: payload(2, 50),
    })
    .unwrap();
    let mut got = Vec::new();
    loop {
        match r.next(Duration::from_millis(50)).unwrap() {
            Read::Timeout => break,
            Read::Frame(f) => got.push(("frame", f.dts)),
            Read::Discontinuity { .. } => got.push(("disc", 0)),
            Read::Tracks(_) | Read::Resync { .. } => {}
            Read::Ended => break,
        }
    }
    assert_eq!(
        got,
        vec![("frame", 5_000_000), ("disc", 0), ("frame", 5_033_333)]
    );
    w2.finish();
}

#[test]
fn reclaim_removes_only_dead_segments() {
    let ns = ns("reclaim");
    let w = Writer::open(&ns, "alive", small()).unwrap();
    let w2 = Writer::open(&ns, "dead", small()).unwrap();
    let seg = Segment::open_path(&ns.stream_path("dead").unwrap(), "dead").unwrap();
    seg.header().writer_start.store(1, Ordering::SeqCst); // pid reused by someone else
    std::fs::write(ns.dir.join(format!("{}-junk.new1", ns.prefix)), b"half").unwrap();
    let removed = ns.reclaim_dead();
    assert_eq!(removed.len(), 2, "{removed:?}");
    assert_eq!(ns.objects(), vec![ns.stream_path("alive").unwrap()]);
    drop(w2);
    w.finish();
}

#[test]
fn corrupt_segment_is_rejected_not_trusted() {
    let ns = ns("corrupt");
    let path = ns.stream_path("s").unwrap();
    std::fs::write(&path, vec![0xffu8; 100_000]).unwrap();
    assert!(matches!(Reader::open(&ns, "s"), Err(Error::Invalid { .. })));
    // A writer replaces it.
    let w = Writer::open(&ns, "s", small()).unwrap();
    w.finish();
    assert!(matches!(
        Reader::open(&ns, "s"),
        Err(Error::NotFound { .. })
    ));
}

#[test]
fn bad_names_are_refused() {
    for bad in ["", "../x", "a/b", "a b", &"x".repeat(65)] {
        assert!(validate_stream_name(bad).is_err(), "{bad:?}");
    }
}

const STRESS_ENV: &str = "BRUME_SHM_STRESS_CHILD";

/// Child side of `multi_process_stress`: reads until the stream ends, verifying every
/// frame. Prints one line of figures; exits non-zero on any corrupt frame.
#[test]
fn stress_reader_child() {
    let Ok(spec) = std::env::var(STRESS_ENV) else {
        return; // only meaningful when started by multi_process_stress
    };
    let (prefix, slow) = spec.split_once(',').unwrap();
    let ns = Namespace {
        dir: std::env::temp_dir(),
        prefix: prefix.to_string(),
    };
    let mut r = loop {
        match Reader::open(&ns, "s") {
            Ok(r) => break r,
            Err(_) => std::thread::sleep(Duration::from_millis(1)),
        }
    };
    let (mut frames, mut resyncs) = (0u64, 0u64);
    let mut last = [None::<u64>; 3];
    loop {
        match r.next(Duration::from_secs(10)).unwrap() {
            Read::Frame(f) => {
                let seed = check_payload(&f.data).unwrap_or_else(|e| panic!("{e}"));
                assert_eq!(seed >> 32, f.track as u64, "frame on the wrong track");
                assert_eq!(f.dts, (seed & 0xffff_ffff) as i64 * 10, "dts mismatch");
                let n = seed & 0xffff_ffff;
                if let Some(prev) = last[f.track as usize] {
                    assert!(n > prev, "track {} went back from {prev} to {n}", f.track);
                }
                last[f.track as usize] = Some(n);
                frames += 1;
                if slow == "1" && frames % 50 == 0 {
                    std::thread::sleep(Duration::from_millis(3));
                }
            }
            Read::Resync { .. } => resyncs += 1,
            Read::Ended => break,
            Read::Timeout => panic!("writer stalled"),
            Read::Tracks(_) | Read::Discontinuity { .. } => {}
        }
    }
    println!("STRESS frames={frames} resyncs={resyncs}");
}

/// The concurrency proof: one writer laps 8 reader processes (half of them slowed
/// down) on a tiny ring with frames of random sizes; every frame every reader gets is
/// checked byte for byte, and the slow readers must actually have been lapped.
#[test]
fn multi_process_stress() {
    let ns = ns("stress");
    let mut w = Writer::open(&ns, "s", small()).unwrap();
    w.set_tracks(&tracks()).unwrap();
    let exe = std::env::current_exe().unwrap();
    let children: Vec<_> = (0..8)
        .map(|i| {
            std::process::Command::new(&exe)
                .args([
                    "--exact",
                    "tests::stress_reader_child",
                    "--nocapture",
                    "--test-threads=1",
                ])
                .env(STRESS_ENV, format!("{},{}", ns.prefix, i % 2))
                .stdout(std::process::Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    // Wait for the readers to register.
    let seg = Segment::open_path(&ns.stream_path("s").unwrap(), "s").unwrap();
    let t0 = std::time::Instant::now();
    while seg
        .header()
        .readers
        .iter()
        .filter(|e| e.pid.load(Ordering::SeqCst) != 0)
        .count()
        < 8
    {
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "readers did not start"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
    let mut x = 0x9e3779b97f4a7c15u64;
    let mut n = [0u64; 3];
    for i in 0..40_000u64 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let track = if i % 4 == 0 { 2 } else { 1 };
        let k = n[track as usize];
        n[track as usize] += 1;
        let len = 12 + (x % 9000) as usize;
        let f = Frame {
            track,
            dts: k as i64 * 10,
            cts: 0,
            key: track == 2 || k % 20 == 0,
            data: payload(((track as u64) << 32) | k, len),
        };
        w.write(&f).unwrap();
        if i % 500 == 0 {
            std::thread::yield_now();
        }
    }
    w.finish();
    let mut total_resyncs = 0;
    for c in children {
        let out = c.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(out.status.success(), "a reader failed: {text}");
        let line = text[text
            .find("STRESS")
            .unwrap_or_else(|| panic!("no figures in {text:?}"))..]
            .lines()
            .next()
            .unwrap();
        let field = |name: &str| -> u64 {
            let at = line.find(name).unwrap() + name.len() + 1;
            line[at..].split(' ').next().unwrap().parse().unwrap()
        };
        let (frames, resyncs) = (field("frames"), field("resyncs"));
        assert!(frames > 100, "reader verified only {frames} frames");
        total_resyncs += resyncs;
    }
    assert!(
        total_resyncs > 0,
        "no reader was ever lapped: the test proved nothing"
    );
}
