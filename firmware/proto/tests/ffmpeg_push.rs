//! Real-peer test: [`PushClient`] pushes ~3 s of H.264 + AAC to the real ffmpeg
//! listening as an RTMP server (`ffmpeg -listen 1 -i rtmp://...`), which copies the
//! stream to an FLV file; ffprobe then checks the file.
//!
//! The frames come from an FLV file ffmpeg encodes first (testsrc + sine, x264 with
//! B-frames so composition times are exercised), parsed with `brume_proto::flv` into
//! Brume's internal tracks and frames.
//!
//! ffmpeg and ffprobe must be installed at /usr/bin (or named by `$FFMPEG` /
//! `$FFPROBE`); if they are missing this test FAILS, it never skips.

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use brume_format::{h264, Codec, Frame, Track};
use brume_proto::flv::{self, AacPacket, AvcPacket};
use brume_proto::{PushClient, PushEvent};

/// Upper bound on each waiting step of the test.
const STEP: Duration = Duration::from_secs(30);
const VIDEO: u32 = 1;
const AUDIO: u32 = 2;

fn tool(env: &str, default: &str) -> PathBuf {
    let path = std::env::var_os(env)
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(default));
    assert!(
        path.exists(),
        "{} not found (install ffmpeg: apt-get install ffmpeg, or set ${env}); \
         this real-peer test does not skip",
        path.display()
    );
    path
}

/// A scratch directory and the listening ffmpeg: ffmpeg is killed and the directory
/// removed however the test ends (the directory is kept after a failure).
struct Scratch {
    dir: PathBuf,
    ffmpeg: Option<Child>,
}

impl Scratch {
    fn new() -> Scratch {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .subsec_nanos();
        let dir = std::env::temp_dir().join(format!("brume-push-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        Scratch { dir, ffmpeg: None }
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        if let Some(mut child) = self.ffmpeg.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        if std::thread::panicking() {
            eprintln!("test files kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Encodes 3 s of 320x240 25 fps H.264 (with B-frames) and 48 kHz stereo AAC to FLV.
fn encode_source(dir: &Path) -> PathBuf {
    let out = dir.join("source.flv");
    let status = Command::new(tool("FFMPEG", "/usr/bin/ffmpeg"))
        .args([
            "-nostdin",
            "-v",
            "error",
            "-f",
            "lavfi",
            "-i",
            "testsrc=size=320x240:rate=25",
            "-f",
            "lavfi",
            "-i",
            "sine=f=440:sample_rate=48000",
            "-t",
            "3",
            "-c:v",
            "libx264",
            "-preset",
            "veryfast",
            "-bf",
            "2",
            "-g",
            "25",
            "-pix_fmt",
            "yuv420p",
            "-c:a",
            "aac",
            "-ac",
            "2",
            "-f",
            "flv",
            "-y",
        ])
        .arg(&out)
        .status()
        .expect("failed to start ffmpeg");
    assert!(status.success(), "encoding the source failed: {status}");
    out
}

/// Reads an FLV file into internal tracks and frames (video track 1, audio track 2).
fn read_flv(path: &Path) -> (Vec<Track>, Vec<Frame>) {
    let data = std::fs::read(path).unwrap();
    assert_eq!(&data[..3], b"FLV");
    let mut pos = u32::from_be_bytes(data[5..9].try_into().unwrap()) as usize + 4;
    let mut video = None;
    let mut audio = None;
    let mut frames = Vec::new();
    while pos + 11 <= data.len() {
        let h = &data[pos..pos + 11];
        let size = u32::from_be_bytes([0, h[1], h[2], h[3]]) as usize;
        let ts = i64::from(u32::from_be_bytes([h[7], h[4], h[5], h[6]]));
        let body = &data[pos + 11..pos + 11 + size];
        pos += 11 + size + 4;
        match h[0] & 0x1F {
            9 => {
                let tag = flv::parse_video_tag(body).unwrap();
                match tag.packet {
                    AvcPacket::SequenceHeader(avcc) => {
                        let cfg = h264::parse_avcc(avcc).unwrap();
                        assert_eq!(cfg.length_size, 4);
                        let sps = h264::parse_sps(&cfg.sps[0]).unwrap();
                        video = Some(Track::video(
                            VIDEO,
                            Codec::H264,
                            avcc.to_vec(),
                            sps.width,
                            sps.height,
                        ));
                    }
                    AvcPacket::Nalus {
                        composition_time_ms,
                        data,
                    } => {
                        let mut au = Vec::new();
                        for nal in h264::avcc_nals(data).unwrap() {
                            if !matches!(h264::nal_type(nal), h264::NAL_SPS | h264::NAL_PPS) {
                                au.extend_from_slice(&(nal.len() as u32).to_be_bytes());
                                au.extend_from_slice(nal);
                            }
                        }
                        frames.push(Frame {
                            track: VIDEO,
                            dts: ts * 1000,
                            cts: composition_time_ms * 1000,
                            key: tag.is_keyframe(),
                            data: au,
                        });
                    }
                    AvcPacket::EndOfSequence => {}
                }
            }
            8 => match flv::parse_audio_tag(body).unwrap().packet {
                AacPacket::SequenceHeader(asc) => {
                    let cfg = brume_format::aac::parse_asc(asc).unwrap();
                    audio = Some(Track::audio(
                        AUDIO,
                        Codec::Aac,
                        asc.to_vec(),
                        cfg.sample_rate,
                        u32::from(cfg.channels),
                    ));
                }
                AacPacket::Raw(raw) => frames.push(Frame {
                    track: AUDIO,
                    dts: ts * 1000,
                    cts: 0,
                    key: true,
                    data: raw.to_vec(),
                }),
            },
            _ => {}
        }
    }
    let tracks = vec![
        video.expect("no video track"),
        audio.expect("no audio track"),
    ];
    (tracks, frames)
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Connects to the listening ffmpeg, retrying while it starts.
fn connect(port: u16, ffmpeg: &mut Child) -> TcpStream {
    let start = Instant::now();
    loop {
        match TcpStream::connect(("127.0.0.1", port)) {
            Ok(s) => return s,
            Err(e) => {
                if let Some(status) = ffmpeg.try_wait().unwrap() {
                    panic!("ffmpeg exited ({status}) before listening");
                }
                assert!(
                    start.elapsed() < STEP,
                    "ffmpeg never listened on {port}: {e}"
                );
                std::thread::sleep(Duration::from_millis(20));
            }
        }
    }
}

/// Reads the socket on a thread: chunks arrive on the channel, which closes at EOF.
fn spawn_reader(stream: &TcpStream) -> mpsc::Receiver<Vec<u8>> {
    let mut stream = stream.try_clone().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            match stream.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    if tx.send(buf[..n].to_vec()).is_err() {
                        return;
                    }
                }
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(_) => return,
            }
        }
    });
    rx
}

/// Hands everything the reader got so far to the client; panics on a rejection.
fn drain(client: &mut PushClient, rx: &mpsc::Receiver<Vec<u8>>) -> Vec<PushEvent> {
    let mut events = Vec::new();
    while let Ok(bytes) = rx.try_recv() {
        events.extend(client.receive(&bytes).expect("client protocol error"));
    }
    for ev in &events {
        if let PushEvent::Rejected(why) = ev {
            panic!("ffmpeg rejected the publish: {why}");
        }
    }
    events
}

fn flush(client: &mut PushClient, stream: &mut TcpStream) {
    let out = client.take_output();
    if !out.is_empty() {
        stream.write_all(&out).expect("write to ffmpeg failed");
    }
}

fn ffprobe(args: &[&str], file: &Path) -> String {
    let out = Command::new(tool("FFPROBE", "/usr/bin/ffprobe"))
        .args(["-v", "error"])
        .args(args)
        .arg(file)
        .output()
        .expect("failed to start ffprobe");
    assert!(
        out.status.success(),
        "ffprobe failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[test]
fn push_to_ffmpeg_listen() {
    let mut scratch = Scratch::new();
    let (tracks, frames) = read_flv(&encode_source(&scratch.dir));
    let video_frames = frames.iter().filter(|f| f.track == VIDEO).count();
    let audio_frames = frames.len() - video_frames;
    assert!(
        frames.iter().any(|f| f.cts != 0),
        "no B-frames in the source"
    );
    eprintln!("source: {video_frames} video, {audio_frames} audio frames; {tracks:?}");

    let port = free_port();
    let out_path = scratch.dir.join("out.flv");
    let log_path = scratch.dir.join("ffmpeg.log");
    let ffmpeg = scratch.ffmpeg.insert(
        Command::new(tool("FFMPEG", "/usr/bin/ffmpeg"))
            .args(["-nostdin", "-loglevel", "error", "-listen", "1", "-i"])
            .arg(format!("rtmp://127.0.0.1:{port}/live/test"))
            .args(["-c", "copy", "-f", "flv", "-y"])
            .arg(&out_path)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log_path).unwrap())
            .spawn()
            .expect("failed to start ffmpeg"),
    );
    let mut stream = connect(port, ffmpeg);
    stream.set_write_timeout(Some(STEP)).unwrap();
    let rx = spawn_reader(&stream);

    let mut client = PushClient::new(&format!("rtmp://127.0.0.1:{port}/live/test")).unwrap();
    let start = Instant::now();
    loop {
        flush(&mut client, &mut stream);
        let bytes = rx
            .recv_timeout(STEP.saturating_sub(start.elapsed()))
            .expect("ffmpeg did not accept the publish in time");
        let events = client.receive(&bytes).expect("client protocol error");
        if let Some(PushEvent::Rejected(why)) = events.first() {
            panic!("ffmpeg rejected the publish: {why}");
        }
        if events.contains(&PushEvent::Publishing) {
            break;
        }
    }
    eprintln!("publishing after {:?}", start.elapsed());

    client.send_tracks(&tracks).unwrap();
    for f in &frames {
        client.send_frame(f).unwrap();
        if client.pending() > 64 * 1024 {
            flush(&mut client, &mut stream);
        }
        drain(&mut client, &rx);
    }
    client.unpublish();
    flush(&mut client, &mut stream);
    stream.shutdown(Shutdown::Write).unwrap();

    // ffmpeg ends its input at our end of stream, writes the file and closes.
    let start = Instant::now();
    let status = loop {
        if let Some(status) = ffmpeg.try_wait().unwrap() {
            break status;
        }
        assert!(start.elapsed() < STEP, "ffmpeg did not finish");
        std::thread::sleep(Duration::from_millis(20));
    };
    // What ffmpeg sent meanwhile is still parsed (acknowledgements, statuses).
    while let Ok(bytes) = rx.recv_timeout(Duration::from_secs(1)) {
        client.receive(&bytes).expect("client protocol error");
    }
    let log = std::fs::read_to_string(&log_path).unwrap_or_default();
    assert!(status.success(), "ffmpeg failed ({status}): {log}");
    if !log.trim().is_empty() {
        eprintln!("ffmpeg said: {log}");
    }

    let streams = ffprobe(
        &[
            "-count_packets",
            "-show_entries",
            "stream=codec_type,codec_name,width,height,sample_rate,channels,nb_read_packets",
            "-of",
            "compact=p=0",
        ],
        &out_path,
    );
    eprintln!("ffprobe streams:\n{streams}");
    let field = |line: &str, key: &str| -> String {
        line.split('|')
            .find_map(|kv| kv.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("no {key} in {line}"))
            .to_owned()
    };
    let lines: Vec<&str> = streams.lines().filter(|l| !l.is_empty()).collect();
    assert_eq!(lines.len(), 2, "{streams}");
    let video = lines
        .iter()
        .find(|l| field(l, "codec_type") == "video")
        .expect("no video stream");
    let audio = lines
        .iter()
        .find(|l| field(l, "codec_type") == "audio")
        .expect("no audio stream");
    assert_eq!(field(video, "codec_name"), "h264");
    assert_eq!(
        (field(video, "width"), field(video, "height")),
        ("320".into(), "240".into())
    );
    assert_eq!(field(video, "nb_read_packets"), video_frames.to_string());
    assert_eq!(field(audio, "codec_name"), "aac");
    assert_eq!(field(audio, "sample_rate"), "48000");
    assert_eq!(field(audio, "channels"), "2");
    assert_eq!(field(audio, "nb_read_packets"), audio_frames.to_string());

    let duration: f64 = ffprobe(
        &["-show_entries", "format=duration", "-of", "csv=p=0"],
        &out_path,
    )
    .trim()
    .parse()
    .unwrap();
    eprintln!("duration {duration} s");
    assert!((duration - 3.0).abs() <= 0.5, "duration {duration} s");

    // Every frame arrives with its timestamps (ms from the first frame sent) and size.
    let packets = ffprobe(
        &[
            "-show_entries",
            "packet=codec_type,dts,pts,size",
            "-of",
            "compact=p=0",
        ],
        &out_path,
    );
    let base = frames[0].dts;
    for (track, kind) in [(VIDEO, "video"), (AUDIO, "audio")] {
        let got: Vec<(i64, i64, usize)> = packets
            .lines()
            .filter(|l| !l.is_empty() && field(l, "codec_type") == kind)
            .map(|l| {
                (
                    field(l, "dts").parse().unwrap(),
                    field(l, "pts").parse().unwrap(),
                    field(l, "size").parse().unwrap(),
                )
            })
            .collect();
        let want: Vec<(i64, i64, usize)> = frames
            .iter()
            .filter(|f| f.track == track)
            .map(|f| ((f.dts - base) / 1000, (f.pts() - base) / 1000, f.data.len()))
            .collect();
        assert_eq!(got, want, "{kind} packets (dts ms, pts ms, size)");
    }
}
