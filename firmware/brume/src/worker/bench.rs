//! `brume bench`: prints the figures the README quotes. Every figure comes from real
//! processes on this machine: a writer, reader processes mapping the same buffer, the
//! real listener forking real workers, clients on loopback sockets.
//!
//! * `shm`: write → reader wake latency, 1 and 100 reader processes.
//! * `latency`: frame written by an input → its bytes written by an output worker to
//!   the viewer's socket (progressive fMP4), 1 and 10 viewers, from each viewer's
//!   second second on.
//! * `fanout`: 1, 10 and 100 viewers of a 4 Mbit/s stream over HTTP-TS: CPU per viewer
//!   (listener + workers) and per-worker memory (USS and PSS from smaps_rollup).
//! * `controller`: the controller's resident memory.
//! * `capture`: CPU per captured stream (the camera pipeline's per-frame work) for
//!   H.264 passthrough, MJPEG (passthrough + decode + H.264 encode) and raw YUYV
//!   (H.264 encode), at 640x480@30 and 1280x720@30.
//! * `encoder [DEVICE] [--codec h264|fwht] [--frames N] [--size WxH]`: a V4L2 M2M
//!   encoder (default: the board's H.264 encoder, bcm2835-codec on a Pi 4) fed a moving
//!   test picture as fast as it takes it: frames, keyframes, bytes, ms per frame. Not
//!   part of `all`.

use brume_format::{Codec, Frame, Track};
use brume_shm::{Layout, Namespace, Read, Reader, Writer};
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const MARKER: &[u8; 8] = b"BRUMELAT";

pub fn main(args: &[String]) -> Result<(), String> {
    if args.first().map(String::as_str) == Some("--shm-reader") {
        return shm_reader(&args[1..]);
    }
    let what = args.first().map(String::as_str).unwrap_or("all");
    if what == "encoder" {
        return bench_encoder(&args[1..]);
    }
    println!(
        "brume bench on {} ({} CPUs)",
        machine(),
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    );
    let all = what == "all";
    if all || what == "shm" {
        bench_shm(1)?;
        bench_shm(100)?;
    }
    if all || what == "latency" {
        bench_latency(1)?;
        bench_latency(10)?;
    }
    if all || what == "fanout" {
        for n in [1, 10, 100] {
            bench_fanout(n)?;
        }
    }
    if all || what == "controller" {
        bench_controller()?;
    }
    if all || what == "capture" {
        bench_capture()?;
    }
    Ok(())
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|c| {
            c.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    format!("{cpu}, {}", std::env::consts::ARCH)
}

/// A clock's reading in nanoseconds (`clock_gettime`).
fn clock_ns(clock: libc::clockid_t) -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: valid timespec pointer.
    unsafe { libc::clock_gettime(clock, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// CLOCK_MONOTONIC: the same clock in every process, so write and read times compare.
fn now_ns() -> u64 {
    clock_ns(libc::CLOCK_MONOTONIC)
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[i] as f64
}

fn scratch(tag: &str) -> (Namespace, PathBuf) {
    let ns = Namespace {
        dir: PathBuf::from("/dev/shm"),
        prefix: format!("brumebench{}{tag}", std::process::id()),
    };
    let dir = std::env::temp_dir().join(format!("brume-bench-{}-{tag}", std::process::id()));
    let _ = std::fs::create_dir_all(&dir);
    (ns, dir)
}

fn cleanup(ns: &Namespace, dir: &PathBuf) {
    for p in ns.objects() {
        let _ = std::fs::remove_file(p);
    }
    let _ = std::fs::remove_dir_all(dir);
}

/// Writer in this process, `readers` reader processes; each frame carries its write
/// time; readers report wake latencies.
fn bench_shm(readers: usize) -> Result<(), String> {
    let (ns, dir) = scratch(&format!("shm{readers}"));
    let mut w = Writer::open(&ns, "b", Layout::default()).map_err(|e| e.to_string())?;
    w.set_tracks(&[Track::video(1, Codec::H264, vec![], 16, 16)])
        .map_err(|e| e.to_string())?;
    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut children: Vec<Child> = (0..readers)
        .map(|_| {
            Command::new(&exe)
                .args(["bench", "--shm-reader", &ns.prefix])
                .stdout(Stdio::piped())
                .spawn()
                .map_err(|e| e.to_string())
        })
        .collect::<Result<_, _>>()?;
    // Let every reader map and register.
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let r = Reader::observe(&ns, "b").map_err(|e| e.to_string())?;
        if r.status().readers >= readers {
            break;
        }
        if Instant::now() > deadline {
            return Err("readers did not start".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let frames = 300;
    for i in 0..frames {
        let mut data = now_ns().to_le_bytes().to_vec();
        data.resize(4000, 0);
        w.write(&Frame {
            track: 1,
            dts: i * 10_000,
            cts: 0,
            key: true,
            data,
        })
        .map_err(|e| e.to_string())?;
        std::thread::sleep(Duration::from_millis(10));
    }
    w.finish();
    let mut all = Vec::new();
    for c in children.drain(..) {
        let out = c.wait_with_output().map_err(|e| e.to_string())?;
        for l in String::from_utf8_lossy(&out.stdout).lines() {
            all.extend(l.split(' ').filter_map(|v| v.parse::<u64>().ok()));
        }
    }
    all.sort_unstable();
    println!(
        "shm write -> reader wake, {readers:>3} reader process(es): p50 {:.3} ms, p99 {:.3} ms, max {:.3} ms ({} wake-ups)",
        percentile(&all, 0.5) / 1e6,
        percentile(&all, 0.99) / 1e6,
        all.last().copied().unwrap_or(0) as f64 / 1e6,
        all.len()
    );
    cleanup(&ns, &dir);
    Ok(())
}

fn shm_reader(args: &[String]) -> Result<(), String> {
    let ns = Namespace {
        dir: PathBuf::from("/dev/shm"),
        prefix: args.first().ok_or("prefix")?.clone(),
    };
    let mut r = Reader::open(&ns, "b").map_err(|e| e.to_string())?;
    let mut lat = Vec::new();
    loop {
        match r.next(Duration::from_secs(10)).map_err(|e| e.to_string())? {
            Read::Frame(f) => {
                let t = u64::from_le_bytes(f.data[..8].try_into().map_err(|_| "short")?);
                lat.push(now_ns().saturating_sub(t));
            }
            Read::Ended | Read::Timeout => break,
            _ => {}
        }
    }
    let text: Vec<String> = lat.iter().map(|v| v.to_string()).collect();
    println!("{}", text.join(" "));
    Ok(())
}

/// A synthetic H.264 stream for the output benchmarks: real parameter sets, frames
/// made of a filler NAL of the wanted size (outputs only repackage; nothing decodes).
struct Synthetic {
    writer: Writer,
    frame_bytes: usize,
    n: u64,
}

impl Synthetic {
    fn new(ns: &Namespace, bitrate_bps: usize) -> Result<Synthetic, String> {
        let mut enc =
            brume_codec::H264Encoder::new(320, 180, 30, 300_000, 30).map_err(|e| e.to_string())?;
        let pic = brume_codec::I420::new(320, 180);
        enc.encode(&pic, true).map_err(|e| e.to_string())?;
        let avcc = enc.avcc().ok_or("no avcC")?.to_vec();
        let mut writer = Writer::open(ns, "bench", Layout::default()).map_err(|e| e.to_string())?;
        writer
            .set_tracks(&[Track::video(1, Codec::H264, avcc, 320, 180)])
            .map_err(|e| e.to_string())?;
        Ok(Synthetic {
            writer,
            frame_bytes: bitrate_bps / 8 / 30,
            n: 0,
        })
    }

    /// Writes the next frame: one filler NAL (type 12) holding the marker, the frame
    /// number and the write time, padded to the frame size.
    fn write(&mut self) -> Result<(), String> {
        let mut nal = vec![0x0c];
        nal.extend_from_slice(MARKER);
        nal.extend_from_slice(&self.n.to_le_bytes());
        nal.extend_from_slice(&now_ns().to_le_bytes());
        nal.resize(self.frame_bytes.max(32), 0xff);
        let mut data = (nal.len() as u32).to_be_bytes().to_vec();
        data.extend_from_slice(&nal);
        let f = Frame {
            track: 1,
            dts: self.n as i64 * 33_333,
            cts: 0,
            key: self.n.is_multiple_of(30),
            data,
        };
        self.n += 1;
        self.writer.write(&f).map_err(|e| e.to_string())
    }
}

/// A loopback port nobody listens on right now.
fn free_port() -> Result<u16, String> {
    let l = std::net::TcpListener::bind("127.0.0.1:0").map_err(|e| e.to_string())?;
    Ok(l.local_addr().map_err(|e| e.to_string())?.port())
}

/// Starts the real listener (the connections' angel) for the benchmark namespace.
fn start_listener(ns: &Namespace, dir: &std::path::Path) -> Result<(Child, u16), String> {
    let port = free_port()?;
    let config = dir.join("brume.json");
    std::fs::write(&config, br#"{"streams":{}}"#).map_err(|e| e.to_string())?;
    let child = Command::new(std::env::current_exe().map_err(|e| e.to_string())?)
        .args([
            "listen",
            "--http",
            &format!("127.0.0.1:{port}"),
            "--rtmp",
            "off",
        ])
        .env("BRUME_SHM_PREFIX", &ns.prefix)
        .env("BRUME_SHM_DIR", &ns.dir)
        .env(crate::env::CONFIG, &config)
        .env(crate::env::RUN_DIR, dir)
        .env("BRUME_LOG", "warn")
        .spawn()
        .map_err(|e| e.to_string())?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while TcpStream::connect(("127.0.0.1", port)).is_err() {
        if Instant::now() > deadline {
            return Err("listener did not start".into());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    Ok((child, port))
}

fn open_viewer(port: u16, path: &str) -> Result<TcpStream, String> {
    let mut s = TcpStream::connect(("127.0.0.1", port)).map_err(|e| e.to_string())?;
    write!(s, "GET {path} HTTP/1.1\r\nHost: bench\r\n\r\n").map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .map_err(|e| e.to_string())?;
    Ok(s)
}

fn bench_latency(viewers: usize) -> Result<(), String> {
    let (ns, dir) = scratch(&format!("lat{viewers}"));
    let mut syn = Synthetic::new(&ns, 4_000_000)?;
    let (mut listener, port) = start_listener(&ns, &dir)?;
    syn.write()?;
    let stop = Arc::new(AtomicBool::new(false));
    let samples = Arc::new(Mutex::new(Vec::new()));
    let mut threads = Vec::new();
    for _ in 0..viewers {
        let mut s = open_viewer(port, "/bench.mp4")?;
        let (stop, samples) = (stop.clone(), samples.clone());
        threads.push(std::thread::spawn(move || {
            let started = Instant::now();
            let mut buf = vec![0u8; 1 << 16];
            let mut carry: Vec<u8> = Vec::new();
            while !stop.load(Ordering::Relaxed) {
                let Ok(n) = s.read(&mut buf) else { break };
                if n == 0 {
                    break;
                }
                let t = now_ns();
                carry.extend_from_slice(&buf[..n]);
                let mut i = 0;
                while let Some(p) = find(&carry[i..], MARKER) {
                    let at = i + p + MARKER.len();
                    if carry.len() < at + 16 {
                        break;
                    }
                    let written =
                        u64::from_le_bytes(carry[at + 8..at + 16].try_into().expect("8 bytes"));
                    // From each viewer's second second on (the first is start-up).
                    if started.elapsed() > Duration::from_secs(1) {
                        samples
                            .lock()
                            .expect("samples")
                            .push(t.saturating_sub(written));
                    }
                    i = at + 16;
                }
                let keep = carry
                    .len()
                    .saturating_sub(i.max(carry.len().saturating_sub(32)));
                carry.drain(..carry.len() - keep);
            }
        }));
    }
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(6) {
        syn.write()?;
        std::thread::sleep(Duration::from_millis(33));
    }
    stop.store(true, Ordering::Relaxed);
    syn.writer.finish();
    for t in threads {
        let _ = t.join();
    }
    let _ = listener.kill();
    let _ = listener.wait();
    let mut all = samples.lock().expect("samples").clone();
    all.sort_unstable();
    println!(
        "ingest -> output socket (fMP4), {viewers:>2} viewer(s): p50 {:.3} ms, p99 {:.3} ms ({} frames)",
        percentile(&all, 0.5) / 1e6,
        percentile(&all, 0.99) / 1e6,
        all.len()
    );
    cleanup(&ns, &dir);
    Ok(())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn children_of(pid: u32) -> Vec<u32> {
    std::fs::read_to_string(format!("/proc/{pid}/task/{pid}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Nanoseconds a process has run on a CPU (/proc/PID/schedstat: exact, unlike the
/// clock-tick counts in /proc/PID/stat, which round a light worker down to zero).
fn cpu_ns(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/schedstat"))
        .ok()
        .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
        .unwrap_or(0)
}

/// (USS, PSS) in KiB from /proc/PID/smaps_rollup.
fn memory_kib(pid: u32) -> (u64, u64) {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).unwrap_or_default();
    let field = |k: &str| -> u64 {
        text.lines()
            .find(|l| l.starts_with(k))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (
        field("Private_Clean:") + field("Private_Dirty:"),
        field("Pss:"),
    )
}

fn bench_fanout(viewers: usize) -> Result<(), String> {
    let (ns, dir) = scratch(&format!("fan{viewers}"));
    let mut syn = Synthetic::new(&ns, 4_000_000)?;
    let (mut listener, port) = start_listener(&ns, &dir)?;
    syn.write()?;
    let stop = Arc::new(AtomicBool::new(false));
    let received = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    for _ in 0..viewers {
        let mut s = open_viewer(port, "/bench.ts")?;
        let (stop, received) = (stop.clone(), received.clone());
        threads.push(std::thread::spawn(move || {
            let mut buf = vec![0u8; 1 << 16];
            while !stop.load(Ordering::Relaxed) {
                match s.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => {
                        received.fetch_add(n as u64, Ordering::Relaxed);
                    }
                }
            }
        }));
    }
    // Warm up 2 s, then measure 10 s.
    let warm = Instant::now();
    while warm.elapsed() < Duration::from_secs(2) {
        syn.write()?;
        std::thread::sleep(Duration::from_millis(33));
    }
    let workers = children_of(listener.id());
    let pids: Vec<u32> = std::iter::once(listener.id())
        .chain(workers.iter().copied())
        .collect();
    let cpu0: u64 = pids.iter().map(|p| cpu_ns(*p)).sum();
    let bytes0 = received.load(Ordering::Relaxed);
    let t0 = Instant::now();
    let next = Instant::now();
    let mut k = 0u32;
    while t0.elapsed() < Duration::from_secs(10) {
        syn.write()?;
        k += 1;
        let due = next + Duration::from_micros(33_333 * k as u64);
        if let Some(d) = due.checked_duration_since(Instant::now()) {
            std::thread::sleep(d);
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    let cpu1: u64 = pids.iter().map(|p| cpu_ns(*p)).sum();
    let bytes1 = received.load(Ordering::Relaxed);
    let mem: Vec<(u64, u64)> = workers.iter().map(|p| memory_kib(*p)).collect();
    stop.store(true, Ordering::Relaxed);
    syn.writer.finish();
    for t in threads {
        let _ = t.join();
    }
    let _ = listener.kill();
    let _ = listener.wait();
    let cpu_ms_per_s = cpu1.saturating_sub(cpu0) as f64 / 1e6 / secs;
    let n = mem.len().max(1) as f64;
    let uss = mem.iter().map(|m| m.0).sum::<u64>() as f64 / n;
    let pss = mem.iter().map(|m| m.1).sum::<u64>() as f64 / n;
    println!(
        "fan-out HTTP-TS 4 Mbit/s, {viewers:>3} viewer(s): {:.1} Mbit/s delivered, CPU {:.1} ms/s total = {:.2} ms per viewer per s; worker USS {:.0} KiB, PSS {:.0} KiB ({} workers)",
        (bytes1 - bytes0) as f64 * 8.0 / secs / 1e6,
        cpu_ms_per_s,
        cpu_ms_per_s / viewers as f64,
        uss,
        pss,
        workers.len()
    );
    cleanup(&ns, &dir);
    Ok(())
}

fn bench_controller() -> Result<(), String> {
    let (ns, dir) = scratch("ctl");
    let port = free_port()?;
    let config = dir.join("brume.json");
    std::fs::write(
        &config,
        br#"{"streams":{"cam":{"source":{"type":"rtmp","key":"benchkey"}},"demo":{"source":{"type":"testsrc","width":320,"height":180,"fps":15,"bitrate_kbps":300},"always_on":true}}}"#,
    )
    .map_err(|e| e.to_string())?;
    let mut serve = Command::new(std::env::current_exe().map_err(|e| e.to_string())?)
        .args(["serve", "--config"])
        .arg(&config)
        .args(["--listen", &format!("127.0.0.1:{port}"), "--rtmp", "off"])
        .env("BRUME_SHM_PREFIX", &ns.prefix)
        .env("BRUME_ADMIN_PASSWORD", "bench")
        .env("BRUME_LOG", "warn")
        .stdout(Stdio::null())
        .spawn()
        .map_err(|e| e.to_string())?;
    std::thread::sleep(Duration::from_secs(3));
    // Exercise the API a little (login hashes with argon2), then measure.
    for _ in 0..3 {
        if let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) {
            let body = r#"{"password":"bench"}"#;
            let _ = write!(s, "POST /api/v1/login HTTP/1.1\r\nHost: b\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}", body.len());
            let mut sink = Vec::new();
            let _ = s.read_to_end(&mut sink);
        }
    }
    std::thread::sleep(Duration::from_secs(1));
    let kids = children_of(serve.id());
    let mut report = Vec::new();
    for pid in kids {
        let cmd = std::fs::read_to_string(format!("/proc/{pid}/cmdline")).unwrap_or_default();
        let role = cmd.split('\0').nth(1).unwrap_or("?").to_string();
        let rss = crate::controller::system_rss_kib(pid).unwrap_or(0);
        let (uss, pss) = memory_kib(pid);
        report.push(format!(
            "{role} RSS {:.1} MiB (USS {:.1} MiB, PSS {:.1} MiB)",
            rss as f64 / 1024.0,
            uss as f64 / 1024.0,
            pss as f64 / 1024.0
        ));
    }
    let root_rss = crate::controller::system_rss_kib(serve.id()).unwrap_or(0);
    println!(
        "processes: serve (root angel) RSS {:.1} MiB; {}",
        root_rss as f64 / 1024.0,
        report.join("; ")
    );
    // SAFETY: kill takes no pointers.
    unsafe { libc::kill(serve.id() as i32, libc::SIGTERM) };
    let _ = serve.wait();
    cleanup(&ns, &dir);
    Ok(())
}

/// CPU time of the calling thread, nanoseconds.
fn thread_cpu_ns() -> u64 {
    clock_ns(libc::CLOCK_THREAD_CPUTIME_ID)
}

fn bench_capture() -> Result<(), String> {
    use crate::input::camera::VideoPipeline;
    use brume_codec::{H264Encoder, JpegEncoder, TestPattern, I420};
    use brume_hw::PixelFormat;
    for (w, h) in [(640u32, 480u32), (1280, 720)] {
        // 30 different camera frames of each kind, made from a moving test picture.
        let mut pattern = TestPattern::new(w, h);
        let mut yuyv = Vec::new();
        let mut mjpeg = Vec::new();
        let mut annexb = Vec::new();
        let mut jpeg = JpegEncoder::new(80, 1).map_err(|e| e.to_string())?;
        let mut enc = H264Encoder::new(w, h, 30, 2_000_000, 30).map_err(|e| e.to_string())?;
        for n in 0..30u64 {
            let mut pic = I420::new(w, h);
            pattern.render(n, &["12:00:00.000", "camera"], &mut pic);
            let mut packed = Vec::with_capacity((w * h * 2) as usize);
            let cw = (w / 2) as usize;
            for y in 0..h as usize {
                for x in (0..w as usize).step_by(2) {
                    let c = (y / 2) * cw + x / 2;
                    packed.extend_from_slice(&[
                        pic.y[y * w as usize + x],
                        pic.u[c],
                        pic.y[y * w as usize + x + 1],
                        pic.v[c],
                    ]);
                }
            }
            yuyv.push(packed);
            mjpeg.push(jpeg.encode(&pic).map_err(|e| e.to_string())?);
            if let Some(v) = enc.encode(&pic, false).map_err(|e| e.to_string())? {
                let cfg = brume_format::h264::parse_avcc(enc.avcc().ok_or("avcC")?)
                    .map_err(|e| e.to_string())?;
                let mut au = Vec::new();
                if v.key {
                    for ps in cfg.sps.iter().chain(&cfg.pps) {
                        au.extend_from_slice(&[0, 0, 0, 1]);
                        au.extend_from_slice(ps);
                    }
                }
                brume_format::h264::avcc_to_annexb(&v.data, &mut au).map_err(|e| e.to_string())?;
                annexb.push(au);
            }
        }
        for (label, format, frames) in [
            ("H.264 passthrough", PixelFormat::H264, &annexb),
            (
                "MJPEG passthrough + H.264 encode",
                PixelFormat::Mjpeg,
                &mjpeg,
            ),
            ("YUYV software H.264 encode", PixelFormat::Yuyv, &yuyv),
        ] {
            let mut pipe = VideoPipeline::new(format, w, h, 30, 2_000_000, 0, None)?;
            let frames_done = 90;
            let t0 = thread_cpu_ns();
            for i in 0..frames_done {
                match pipe.process(&frames[i % frames.len()])? {
                    Ok(_) => {}
                    Err(e) => return Err(format!("{label}: {e}")),
                }
            }
            let cpu_ms = (thread_cpu_ns() - t0) as f64 / 1e6;
            let per_second = cpu_ms / (frames_done as f64 / 30.0);
            println!(
                "capture {label}, {w}x{h}@30: {per_second:.2} ms CPU per second ({:.2}% of one core)",
                per_second / 10.0
            );
        }
    }
    Ok(())
}

/// `brume bench encoder`: a V4L2 M2M encoder, as fast as it goes.
fn bench_encoder(args: &[String]) -> Result<(), String> {
    use brume_codec::{TestPattern, I420};
    use brume_hw::v4l2_m2m::{self, Codec, EncoderConfig};
    let usage = "usage: brume bench encoder [DEVICE] [--codec h264|fwht] [--frames N] [--size WxH]";
    let mut device = None;
    let mut i = 0;
    while i < args.len() {
        match args[i].as_str() {
            "--codec" | "--frames" | "--size" => i += 2,
            a if a.starts_with('-') => return Err(format!("unknown option {a}; {usage}")),
            a => {
                device = Some(a.to_string());
                i += 1;
            }
        }
    }
    let codec = match crate::flag(args, "--codec").unwrap_or("h264") {
        "h264" => Codec::H264,
        "fwht" => Codec::Fwht,
        c => return Err(format!("--codec {c}: h264 or fwht; {usage}")),
    };
    let frames: usize = crate::flag(args, "--frames")
        .unwrap_or("300")
        .parse()
        .ok()
        .filter(|n| *n > 0)
        .ok_or_else(|| format!("--frames: a positive number; {usage}"))?;
    let (w, h) = crate::flag(args, "--size")
        .unwrap_or("1280x720")
        .split_once('x')
        .and_then(|(w, h)| Some((w.parse::<u32>().ok()?, h.parse::<u32>().ok()?)))
        .filter(|(w, h)| {
            (16..=4096).contains(w) && (16..=2160).contains(h) && w % 2 == 0 && h % 2 == 0
        })
        .ok_or_else(|| format!("--size: WxH, even, up to 4096x2160; {usage}"))?;
    let device = match device {
        Some(d) => d,
        None => v4l2_m2m::find_encoder(codec).ok_or_else(|| {
            format!("no V4L2 M2M encoder for {codec:?} on this machine (see `brume devices`, \"encoders\")")
        })?,
    };
    let fps = 30;
    let mut enc = v4l2_m2m::Encoder::open(
        &device,
        EncoderConfig {
            codec,
            width: w,
            height: h,
            fps,
            bitrate_bps: 4_000_000,
            gop: fps,
        },
    )
    .map_err(|e| e.to_string())?;
    // 30 different pictures, made before the clock starts.
    let mut pattern = TestPattern::new(w, h);
    let pics: Vec<I420> = (0..30u64)
        .map(|n| {
            let mut pic = I420::new(w, h);
            pattern.render(n, &["12:00:00.000", "encoder"], &mut pic);
            pic
        })
        .collect();
    let (mut encoded, mut keys, mut bytes) = (0usize, 0usize, 0usize);
    let (mut smallest, mut largest) = (usize::MAX, 0usize);
    let mut parameter_sets = false;
    let t0 = Instant::now();
    for n in 0..frames {
        let pic = &pics[n % pics.len()];
        let Some(f) = enc
            .encode([&pic.y, &pic.u, &pic.v], false)
            .map_err(|e| format!("frame {n}: {e}"))?
        else {
            continue;
        };
        encoded += 1;
        keys += f.key as usize;
        bytes += f.data.len();
        smallest = smallest.min(f.data.len());
        largest = largest.max(f.data.len());
        if codec == Codec::H264 && f.key {
            let nals = brume_format::h264::annexb_nals(&f.data);
            parameter_sets |= nals
                .iter()
                .any(|n| brume_format::h264::nal_type(n) == brume_format::h264::NAL_SPS)
                && nals
                    .iter()
                    .any(|n| brume_format::h264::nal_type(n) == brume_format::h264::NAL_PPS);
        }
    }
    let secs = t0.elapsed().as_secs_f64();
    println!(
        "encoder {device} ({}, {}-planar API) {codec:?} {w}x{h}: frames={encoded} of {frames} keyframes={keys} bytes={bytes} min_frame_bytes={} max_frame_bytes={largest} ms_per_frame={:.2} fps={:.1}{}",
        enc.name(),
        if enc.multiplanar() { "multi" } else { "single" },
        if encoded == 0 { 0 } else { smallest },
        secs * 1000.0 / frames as f64,
        frames as f64 / secs.max(1e-9),
        if codec == Codec::H264 {
            format!(" parameter_sets={}", if parameter_sets { "yes" } else { "no" })
        } else {
            String::new()
        }
    );
    if encoded == 0 {
        return Err(format!("{device}: no coded frame came out"));
    }
    Ok(())
}
