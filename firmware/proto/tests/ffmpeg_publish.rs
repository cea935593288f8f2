//! Real-peer tests: the real ffmpeg publishes to a tiny blocking TCP loop around
//! [`PublishSession`] on 127.0.0.1.
//!
//! ffmpeg must be installed at /usr/bin/ffmpeg (or named by `$FFMPEG`); if it is
//! missing these tests FAIL, they never skip.
//!
//! With `BRUME_RECORD_FIXTURE=<path>` set, `ffmpeg_publish_is_accepted` also writes the
//! bytes ffmpeg sent during the first second to `<path>` (how
//! `testdata/ffmpeg_publish.bin` was made).

use std::io::{ErrorKind, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use brume_format::{Codec, Frame, Track};
use brume_proto::{PublishSession, RtmpEvent, RtmpLimits};

/// Upper bound on one test's run time: ffmpeg publishes 3 s in real time.
const DEADLINE: Duration = Duration::from_secs(60);

fn ffmpeg_path() -> PathBuf {
    let path = std::env::var_os("FFMPEG")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/ffmpeg"));
    assert!(
        path.exists(),
        "ffmpeg not found at {} (install it: apt-get install ffmpeg, or set $FFMPEG); \
         this real-peer test does not skip",
        path.display()
    );
    path
}

fn spawn_ffmpeg(port: u16) -> Child {
    Command::new(ffmpeg_path())
        .args([
            "-nostdin",
            "-v",
            "error",
            "-re",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=640x360:rate=30",
            "-f",
            "lavfi",
            "-i",
            "sine=f=440:sample_rate=44100",
            "-c:v",
            "libx264",
            "-preset",
            "ultrafast",
            "-tune",
            "zerolatency",
            "-g",
            "30",
            "-c:a",
            "aac",
            "-t",
            "3",
            "-f",
            "flv",
        ])
        .arg(format!("rtmp://127.0.0.1:{port}/live/cam1?key=abc"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("failed to start ffmpeg")
}

/// Accepts one connection, failing early if ffmpeg exits first.
fn accept_one(listener: &TcpListener, ffmpeg: &mut Child) -> TcpStream {
    listener.set_nonblocking(true).unwrap();
    let start = Instant::now();
    loop {
        match listener.accept() {
            Ok((stream, _)) => {
                stream.set_nonblocking(false).unwrap();
                return stream;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                if let Some(status) = ffmpeg.try_wait().unwrap() {
                    panic!("ffmpeg exited ({status}) before connecting");
                }
                assert!(start.elapsed() < DEADLINE, "ffmpeg never connected");
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => panic!("accept failed: {e}"),
        }
    }
}

struct Run {
    events: Vec<RtmpEvent>,
    /// Bytes received during the first second after the connection.
    first_second: Vec<u8>,
    ffmpeg: Output,
    reject_bytes: Option<Vec<u8>>,
}

/// Runs ffmpeg against a blocking loop; `reject` answers the publish with `reject()`.
fn run(reject: Option<&str>) -> Run {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let mut ffmpeg = spawn_ffmpeg(port);
    let mut stream = accept_one(&listener, &mut ffmpeg);
    stream
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let mut session = PublishSession::new(RtmpLimits::default());
    let mut events = Vec::new();
    let mut first_second = Vec::new();
    let mut reject_bytes = None;
    let mut rejected = false;
    let start = Instant::now();
    let mut buf = vec![0u8; 64 * 1024];
    let mut exited_at: Option<Instant> = None;
    loop {
        assert!(start.elapsed() < DEADLINE, "test ran past its deadline");
        let n = match stream.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut) => {
                // ffmpeg gone and nothing more arrives: done.
                if exited_at.is_none() && ffmpeg.try_wait().unwrap().is_some() {
                    exited_at = Some(Instant::now());
                }
                if exited_at.is_some_and(|t| t.elapsed() > Duration::from_millis(500)) {
                    break;
                }
                continue;
            }
            Err(e) if e.kind() == ErrorKind::ConnectionReset => break,
            Err(e) => panic!("read failed: {e}"),
        };
        if start.elapsed() < Duration::from_secs(1) {
            first_second.extend_from_slice(&buf[..n]);
        }
        if rejected {
            // The session takes no more input after reject(); wait for ffmpeg to leave.
            continue;
        }
        let mut input: &[u8] = &buf[..n];
        loop {
            let new = session.feed(input).expect("session error");
            input = &[];
            let mut answered = false;
            for ev in new {
                match &ev {
                    RtmpEvent::Send(bytes) => stream.write_all(bytes).unwrap(),
                    RtmpEvent::PublishRequested { .. } => {
                        let reply = match reject {
                            Some(reason) => {
                                rejected = true;
                                let b = session.reject(reason).unwrap();
                                reject_bytes = Some(b.clone());
                                b
                            }
                            None => session.accept().unwrap(),
                        };
                        stream.write_all(&reply).unwrap();
                        answered = true;
                    }
                    _ => {}
                }
                events.push(ev);
            }
            // Bytes behind the publish command wait for the next feed.
            if !answered || rejected {
                break;
            }
        }
    }
    drop(stream);
    if ffmpeg.try_wait().unwrap().is_none() {
        // Give it a moment to notice the close, then stop it.
        std::thread::sleep(Duration::from_millis(500));
        if ffmpeg.try_wait().unwrap().is_none() {
            let _ = ffmpeg.kill();
        }
    }
    let output = ffmpeg.wait_with_output().unwrap();
    Run {
        events,
        first_second,
        ffmpeg: output,
        reject_bytes,
    }
}

#[test]
fn ffmpeg_publish_is_accepted() {
    let run = run(None);
    let stderr = String::from_utf8_lossy(&run.ffmpeg.stderr);
    assert!(
        run.ffmpeg.status.success(),
        "ffmpeg failed ({}): {stderr}",
        run.ffmpeg.status
    );
    if let Some(path) = std::env::var_os("BRUME_RECORD_FIXTURE") {
        std::fs::write(&path, &run.first_second).unwrap();
    }

    let requests: Vec<_> = run
        .events
        .iter()
        .filter(|e| matches!(e, RtmpEvent::PublishRequested { .. }))
        .collect();
    assert_eq!(
        requests,
        [&RtmpEvent::PublishRequested {
            app: "live".into(),
            name: "cam1".into(),
            query: "key=abc".into()
        }]
    );

    // Tracks before any frame; the last Tracks has both tracks.
    let first_tracks = run
        .events
        .iter()
        .position(|e| matches!(e, RtmpEvent::Tracks(_)))
        .expect("no Tracks event");
    let first_frame = run
        .events
        .iter()
        .position(|e| matches!(e, RtmpEvent::Frame(_)))
        .expect("no Frame event");
    assert!(first_tracks < first_frame);
    let tracks: Vec<&Vec<Track>> = run
        .events
        .iter()
        .filter_map(|e| match e {
            RtmpEvent::Tracks(t) => Some(t),
            _ => None,
        })
        .collect();
    assert_eq!(
        tracks.len(),
        1,
        "tracks announced more than once: {tracks:?}"
    );
    let tracks = tracks[0];
    assert_eq!(tracks.len(), 2, "{tracks:?}");
    let video = &tracks[0];
    assert_eq!(
        (video.id, video.codec, video.width, video.height),
        (1, Codec::H264, 640, 360)
    );
    assert_eq!(video.init[0], 1, "avcC configurationVersion");
    let audio = &tracks[1];
    assert_eq!(
        (audio.id, audio.codec, audio.sample_rate, audio.channels),
        (2, Codec::Aac, 44100, 1)
    );
    assert!(!audio.init.is_empty());

    let frames: Vec<&Frame> = run
        .events
        .iter()
        .filter_map(|e| match e {
            RtmpEvent::Frame(f) => Some(f),
            _ => None,
        })
        .collect();
    let vframes: Vec<&&Frame> = frames.iter().filter(|f| f.track == 1).collect();
    let aframes: Vec<&&Frame> = frames.iter().filter(|f| f.track == 2).collect();
    eprintln!(
        "{} video frames ({} key), {} audio frames, tracks {tracks:?}",
        vframes.len(),
        vframes.iter().filter(|f| f.key).count(),
        aframes.len()
    );
    assert!(
        (85..=95).contains(&vframes.len()),
        "{} video frames",
        vframes.len()
    );
    assert!(vframes[0].key, "first video frame is not a keyframe");
    assert!(vframes.iter().filter(|f| f.key).count() >= 3);
    // 3 s of 44.1 kHz AAC is about 129 frames of 1024 samples.
    assert!(aframes.len() > 100, "{} audio frames", aframes.len());
    for list in [&vframes, &aframes] {
        for pair in list.windows(2) {
            assert!(
                pair[1].dts > pair[0].dts,
                "dts not increasing: {} then {}",
                pair[0].dts,
                pair[1].dts
            );
        }
    }
    // Video frames at ~33.3 ms steps, in microseconds.
    let span = vframes.last().unwrap().dts - vframes[0].dts;
    assert!(
        (2_700_000..=3_100_000).contains(&span),
        "video spans {span} us"
    );
    // Internal format: 4-byte length prefixed NAL units, no parameter sets.
    for f in &vframes {
        let nals = brume_format::h264::avcc_nals(&f.data).expect("frame is not AVCC");
        assert!(!nals.is_empty());
        for nal in nals {
            let t = brume_format::h264::nal_type(nal);
            assert!(t != 7 && t != 8, "parameter set in frame data");
        }
    }
    assert!(brume_format::h264::avcc_has_idr(&vframes[0].data));
    // ffmpeg ends with FCUnpublish/deleteStream.
    assert_eq!(run.events.last(), Some(&RtmpEvent::Unpublished));
}

#[test]
fn ffmpeg_publish_is_rejected() {
    let run = run(Some("stream key not allowed"));
    let stderr = String::from_utf8_lossy(&run.ffmpeg.stderr);
    eprintln!("ffmpeg said: {stderr}");
    let bytes = run.reject_bytes.expect("no publish request arrived");
    assert!(!bytes.is_empty());
    assert!(
        !run.ffmpeg.status.success(),
        "ffmpeg succeeded despite the rejection: {stderr}"
    );
    assert!(
        stderr.contains("stream key not allowed"),
        "ffmpeg did not report the rejection reason: {stderr}"
    );
    assert!(!run
        .events
        .iter()
        .any(|e| matches!(e, RtmpEvent::Frame(_) | RtmpEvent::Tracks(_))));
}
