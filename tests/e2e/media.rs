//! ffmpeg and ffprobe, run with a bound on their time.

use crate::harness::{ffmpeg, ffprobe};
use serde_json::Value;
use std::io::Read;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

pub struct Output {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn success(&self) -> bool {
        self.code == Some(0)
    }
}

/// Runs `cmd` to its end; kills it and panics if it takes longer than `timeout`.
pub fn run(mut cmd: Command, timeout: Duration) -> Output {
    let shown = format!("{cmd:?}");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {shown}: {e}"));
    let out = drain(child.stdout.take());
    let err = drain(child.stderr.take());
    let deadline = Instant::now() + timeout;
    let status = loop {
        if let Some(st) = child.try_wait().expect("try_wait") {
            break st;
        }
        if Instant::now() >= deadline {
            let _ = child.kill();
            let _ = child.wait();
            let stderr = err.join().unwrap_or_default();
            panic!("{shown} did not finish within {timeout:?}; stderr:\n{stderr}");
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    Output {
        code: status.code(),
        stdout: out.join().unwrap_or_default(),
        stderr: err.join().unwrap_or_default(),
    }
}

fn drain<R: Read + Send + 'static>(r: Option<R>) -> std::thread::JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = Vec::new();
        if let Some(mut r) = r {
            let _ = r.read_to_end(&mut s);
        }
        String::from_utf8_lossy(&s).into_owned()
    })
}

/// Decodes `input` (URL or file) completely, or its first `seconds`, to nothing; panics
/// unless ffmpeg exits 0 and prints nothing at `-v error`.
pub fn assert_decodes_clean(input: &str, seconds: Option<u32>) {
    let mut cmd = Command::new(ffmpeg());
    cmd.args(["-nostdin", "-v", "error", "-i", input]);
    if let Some(s) = seconds {
        cmd.args(["-t", &s.to_string()]);
    }
    cmd.args(["-f", "null", "-"]);
    let out = run(cmd, Duration::from_secs(60));
    assert!(
        out.success() && out.stderr.trim().is_empty(),
        "decoding {input} was not clean: exit {:?}, stderr:\n{}",
        out.code,
        out.stderr
    );
}

/// ffprobe's stream list for `input`.
pub fn probe(input: &str) -> Vec<Value> {
    let mut cmd = Command::new(ffprobe());
    cmd.args(["-v", "error", "-show_streams", "-of", "json", input]);
    let out = run(cmd, Duration::from_secs(60));
    assert!(
        out.success(),
        "ffprobe {input} failed (exit {:?}):\n{}",
        out.code,
        out.stderr
    );
    let v: Value = serde_json::from_str(&out.stdout)
        .unwrap_or_else(|e| panic!("ffprobe {input}: output is not JSON ({e}): {}", out.stdout));
    v["streams"].as_array().cloned().unwrap_or_default()
}

/// Asserts ffprobe sees H.264 at `w`x`h` and AAC (at `rate` Hz when given).
pub fn assert_h264_aac(input: &str, w: u64, h: u64, rate: Option<u64>) {
    let streams = probe(input);
    let video = streams
        .iter()
        .find(|s| s["codec_type"] == "video")
        .unwrap_or_else(|| panic!("{input}: ffprobe sees no video stream: {streams:?}"));
    assert_eq!(video["codec_name"], "h264", "{input}: video codec");
    assert_eq!(
        (video["width"].as_u64(), video["height"].as_u64()),
        (Some(w), Some(h)),
        "{input}: picture size"
    );
    let audio = streams
        .iter()
        .find(|s| s["codec_type"] == "audio")
        .unwrap_or_else(|| panic!("{input}: ffprobe sees no audio stream: {streams:?}"));
    assert_eq!(audio["codec_name"], "aac", "{input}: audio codec");
    if let Some(r) = rate {
        assert_eq!(
            audio["sample_rate"]
                .as_str()
                .and_then(|s| s.parse::<u64>().ok()),
            Some(r),
            "{input}: audio sample rate"
        );
    }
}

/// A background process killed (and waited for) when dropped.
pub struct Background {
    pub child: Child,
}

impl Background {
    pub fn spawn(mut cmd: Command, log: &std::path::Path) -> Background {
        let what = format!("{cmd:?}");
        let f = std::fs::File::create(log).expect("create a log file");
        let child = cmd
            .stdin(Stdio::null())
            .stdout(f.try_clone().expect("log fd"))
            .stderr(f)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
        Background { child }
    }

    /// Its exit code once it ended, None while it runs.
    pub fn exited(&mut self) -> Option<Option<i32>> {
        self.child.try_wait().expect("try_wait").map(|s| s.code())
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The file's duration according to ffprobe, in seconds.
pub fn duration_of(path: &str) -> f64 {
    let mut cmd = Command::new(ffprobe());
    cmd.args([
        "-v",
        "error",
        "-show_entries",
        "format=duration",
        "-of",
        "csv=p=0",
        path,
    ]);
    let out = run(cmd, Duration::from_secs(60));
    assert!(out.success(), "ffprobe {path}: {}", out.stderr);
    out.stdout
        .trim()
        .parse()
        .unwrap_or_else(|_| panic!("ffprobe {path}: no duration in {:?}", out.stdout))
}

/// ffmpeg publishing a test picture of `size` (e.g. "320x180") at 25 fps and a tone
/// over RTMP, for `seconds`, with a keyframe every `gop` frames.
pub fn rtmp_publisher(url: &str, size: &str, seconds: u32, gop: u32) -> Command {
    let mut c = Command::new(ffmpeg());
    c.args(["-nostdin", "-hide_banner", "-loglevel", "warning", "-re"]);
    c.args(["-f", "lavfi", "-i", &format!("testsrc=size={size}:rate=25")]);
    c.args(["-f", "lavfi", "-i", "sine=f=1000:sample_rate=44100"]);
    c.args(["-t", &seconds.to_string()]);
    c.args([
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-tune",
        "zerolatency",
    ]);
    c.args(["-g", &gop.to_string(), "-c:a", "aac", "-f", "flv", url]);
    c
}
