//! Stream processes: an external program attached to a stream. Its angel is a thread
//! of the stream's input process: it starts the program, feeds it the selected tracks
//! as MPEG-TS on stdin, reads MPEG-TS from its stdout and writes what it makes into
//! the stream's buffer as new tracks (or into a stream of its own), turns JSON lines on
//! its fd 3 into `process.<event>` events, and restarts it by its policy.
//!
//! The input never waits for a program: frames go through a bounded queue, and a
//! program that falls behind loses frames up to the next keyframe.

use super::sink::{event, Shared};
use crate::angel::{self, Backoff, Verdict};
use crate::config::{RestartPolicy, StreamProcess, TrackSelect};
use crate::env::Env;
use brume_format::ts::TsMuxer;
use brume_format::ts_demux::{DemuxEvent, TsDemuxer};
use brume_format::{Frame, Track};
use serde_json::{json, Value};
use std::io::{BufRead, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, Ordering};
use std::sync::mpsc::{sync_channel, Receiver, RecvTimeoutError, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Frames queued for a program (about 4 s of a 30 fps stream with audio).
const QUEUE: usize = 256;
/// A program's output timestamps further than this from what it was fed are rebased.
const REBASE_US: i64 = 10_000_000;

enum Msg {
    Tracks(Vec<Track>),
    Frame(Frame),
}

/// The input's side of one stream process.
pub struct ProcessHandle {
    tx: SyncSender<Msg>,
    stop: Arc<AtomicBool>,
    pid: Arc<AtomicU32>,
    thread: Option<std::thread::JoinHandle<()>>,
    select: TrackSelect,
    selected: Vec<u32>,
    video: Vec<u32>,
    /// Frames were dropped: wait for a keyframe before sending more.
    need_key: bool,
    tracks_pending: Option<Vec<Track>>,
    dropped: u64,
}

impl ProcessHandle {
    pub fn tracks(&mut self, tracks: &[Track]) {
        let sel: Vec<Track> = tracks
            .iter()
            .filter(|t| match self.select {
                TrackSelect::All => true,
                TrackSelect::Video => t.codec.is_video(),
                TrackSelect::Audio => t.codec.is_audio(),
            })
            .cloned()
            .collect();
        self.selected = sel.iter().map(|t| t.id).collect();
        self.video = sel
            .iter()
            .filter(|t| t.codec.is_video())
            .map(|t| t.id)
            .collect();
        self.need_key = true;
        match self.tx.try_send(Msg::Tracks(sel)) {
            Ok(()) => self.tracks_pending = None,
            Err(TrySendError::Full(Msg::Tracks(t))) => self.tracks_pending = Some(t),
            Err(_) => {}
        }
    }

    pub fn frame(&mut self, f: &Frame) {
        if !self.selected.contains(&f.track) {
            return;
        }
        if let Some(t) = self.tracks_pending.take() {
            if let Err(TrySendError::Full(Msg::Tracks(t))) = self.tx.try_send(Msg::Tracks(t)) {
                self.tracks_pending = Some(t);
                return;
            }
        }
        if self.need_key {
            let starts = f.key && (self.video.is_empty() || self.video.contains(&f.track));
            if !starts {
                return;
            }
            self.need_key = false;
        }
        if let Err(TrySendError::Full(_)) = self.tx.try_send(Msg::Frame(f.clone())) {
            self.need_key = true;
            self.dropped += 1;
        }
    }

    pub fn stop(mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let pid = self.pid.load(Ordering::SeqCst);
        if pid != 0 {
            // SAFETY: kill takes no pointers.
            unsafe { libc::kill(pid as i32, libc::SIGTERM) };
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if self.dropped > 0 {
            tracing::info!(
                dropped = self.dropped,
                "frames a stream process could not take in time"
            );
        }
    }
}

struct Ctx {
    stream: String,
    index: usize,
    spec: StreamProcess,
    controller: PathBuf,
    ns: brume_shm::Namespace,
    shared: Arc<Mutex<Shared>>,
    stop: Arc<AtomicBool>,
    pid: Arc<AtomicU32>,
    /// Decode time of the last frame fed to the program (for rebasing its output).
    last_fed: Arc<AtomicI64>,
}

pub fn start(
    env: &Env,
    stream: &str,
    index: usize,
    spec: StreamProcess,
    shared: Arc<Mutex<Shared>>,
) -> ProcessHandle {
    let (tx, rx) = sync_channel(QUEUE);
    let stop = Arc::new(AtomicBool::new(false));
    let pid = Arc::new(AtomicU32::new(0));
    let select = spec.tracks;
    let ctx = Ctx {
        stream: stream.to_string(),
        index,
        spec,
        controller: env.controller_socket(),
        ns: env.ns.clone(),
        shared,
        stop: stop.clone(),
        pid: pid.clone(),
        last_fed: Arc::new(AtomicI64::new(i64::MIN)),
    };
    let thread = std::thread::Builder::new()
        .name(format!("process-{index}"))
        .spawn(move || angel(ctx, rx))
        .ok();
    ProcessHandle {
        tx,
        stop,
        pid,
        thread,
        select,
        selected: Vec::new(),
        video: Vec::new(),
        need_key: true,
        tracks_pending: None,
        dropped: 0,
    }
}

/// A pipe whose ends close on exec (the child gets a dup of the write end as fd 3).
fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two descriptors into the array we own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both descriptors were just created and are owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

fn spawn(ctx: &Ctx, events_w: &OwnedFd) -> std::io::Result<Child> {
    let argv: Vec<String> = ctx
        .spec
        .command
        .iter()
        .map(|a| a.replace("{stream}", &ctx.stream))
        .collect();
    let mut cmd = Command::new(&argv[0]);
    cmd.args(&argv[1..])
        .env("BRUME_STREAM", &ctx.stream)
        .env("BRUME_PROCESS", &ctx.spec.name)
        .env("BRUME_EVENTS_FD", "3")
        .stdin(Stdio::piped())
        .stdout(if ctx.spec.no_output {
            Stdio::null()
        } else {
            Stdio::piped()
        })
        .stderr(Stdio::piped());
    let w = events_w.as_raw_fd();
    // SAFETY: between fork and exec only async-signal-safe calls (dup2, fcntl, prctl).
    unsafe {
        cmd.pre_exec(move || {
            if w == 3 {
                let flags = libc::fcntl(3, libc::F_GETFD);
                libc::fcntl(3, libc::F_SETFD, flags & !libc::FD_CLOEXEC);
            } else if libc::dup2(w, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            // The program goes when the input does, however the input ends.
            libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM);
            Ok(())
        });
    }
    cmd.spawn()
}

fn angel(ctx: Ctx, rx: Receiver<Msg>) {
    let name = ctx.spec.name.clone();
    let _span = tracing::info_span!("process", process = %name).entered();
    let mut backoff = Backoff::default();
    let mut tracks: Option<Vec<Track>> = None;
    let output = Arc::new(Mutex::new(None::<brume_shm::Writer>));
    let mut restarts = 0u64;
    while !ctx.stop.load(Ordering::SeqCst) {
        let started = Instant::now();
        let (events_r, events_w) = match pipe() {
            Ok(p) => p,
            Err(e) => {
                tracing::error!(error = %e, "cannot create a pipe for a stream process");
                return;
            }
        };
        let mut child = match spawn(&ctx, &events_w) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(command = %ctx.spec.command[0], error = %e, "cannot start the stream process");
                event(
                    &ctx.controller,
                    "process.exited",
                    &ctx.stream,
                    json!({
                        "process": name, "status": format!("cannot start: {e}"), "restarts": restarts,
                    }),
                );
                return;
            }
        };
        drop(events_w);
        ctx.pid.store(child.id(), Ordering::SeqCst);
        tracing::info!(pid = child.id(), "stream process started");
        let threads = readers(&ctx, &mut child, events_r, output.clone());
        let mut stdin = child.stdin.take();
        let mut muxer: Option<TsMuxer> = tracks.as_deref().and_then(|t| TsMuxer::new(t).ok());
        let mut need_key = true;
        let mut buf = Vec::new();
        let status = loop {
            if ctx.stop.load(Ordering::SeqCst) {
                let _ = child.kill();
                break child.wait().ok();
            }
            if let Ok(Some(st)) = child.try_wait() {
                break Some(st);
            }
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(Msg::Tracks(t)) => {
                    muxer = TsMuxer::new(&t).ok();
                    tracks = Some(t);
                    need_key = true;
                }
                Ok(Msg::Frame(f)) => {
                    let (Some(m), Some(sin)) = (&mut muxer, &mut stdin) else {
                        continue;
                    };
                    if need_key {
                        if !f.key {
                            continue;
                        }
                        need_key = false;
                    }
                    buf.clear();
                    if m.mux(&f, &mut buf).is_err() {
                        continue;
                    }
                    ctx.last_fed.store(f.dts, Ordering::Relaxed);
                    if sin.write_all(&buf).is_err() {
                        // The program closed its input: it is ending.
                        stdin = None;
                    }
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    let _ = child.kill();
                    break child.wait().ok();
                }
            }
        };
        drop(stdin);
        ctx.pid.store(0, Ordering::SeqCst);
        let tail = threads.finish();
        let stopping = ctx.stop.load(Ordering::SeqCst);
        let how = status
            .map(angel::describe)
            .unwrap_or_else(|| "ended".into());
        let clean = status.is_some_and(|s| s.success());
        if stopping {
            tracing::info!("stream process stopped");
            break;
        }
        tracing::warn!(status = %how, stderr = %tail, "stream process exited");
        event(
            &ctx.controller,
            "process.exited",
            &ctx.stream,
            json!({
                "process": name,
                "status": how,
                "code": status.and_then(|s| s.code()),
                "restarts": restarts,
                "stderr": tail,
            }),
        );
        let again = match ctx.spec.restart {
            RestartPolicy::Always => true,
            RestartPolicy::OnFailure => !clean,
            RestartPolicy::Never => false,
        };
        if !again {
            break;
        }
        let delay = match backoff.on_crash(Instant::now(), started.elapsed()) {
            Verdict::Restart(d) => d,
            Verdict::GiveUp => {
                tracing::error!("stream process keeps exiting; not restarting it");
                break;
            }
        };
        restarts += 1;
        let until = Instant::now() + delay;
        while Instant::now() < until && !ctx.stop.load(Ordering::SeqCst) {
            // Keep the queue moving while waiting (frames for a dead program are dropped).
            match rx.recv_timeout(Duration::from_millis(50)) {
                Ok(Msg::Tracks(t)) => tracks = Some(t),
                Ok(Msg::Frame(_)) | Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => return,
            }
        }
    }
    let last = output.lock().expect("output lock").take();
    if let Some(w) = last {
        w.finish();
    }
}

struct Readers {
    threads: Vec<std::thread::JoinHandle<()>>,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Readers {
    /// Waits for the readers (the program's pipes are closed by now) and returns the
    /// last lines it wrote to stderr.
    fn finish(self) -> String {
        for t in self.threads {
            let _ = t.join();
        }
        self.stderr.lock().expect("stderr lock").join(" | ")
    }
}

fn readers(
    ctx: &Ctx,
    child: &mut Child,
    events_r: OwnedFd,
    output: Arc<Mutex<Option<brume_shm::Writer>>>,
) -> Readers {
    let mut threads = Vec::new();
    let stderr = Arc::new(Mutex::new(Vec::new()));
    if let Some(err) = child.stderr.take() {
        let tail = stderr.clone();
        threads.push(std::thread::spawn(move || {
            for line in std::io::BufReader::new(err).lines() {
                let Ok(line) = line else { break };
                let mut t = tail.lock().expect("stderr lock");
                if t.len() >= 5 {
                    t.remove(0);
                }
                t.push(line.chars().take(300).collect());
            }
        }));
    }
    {
        let (controller, stream, name) = (
            ctx.controller.clone(),
            ctx.stream.clone(),
            ctx.spec.name.clone(),
        );
        threads.push(std::thread::spawn(move || {
            let reader = std::io::BufReader::new(std::fs::File::from(events_r));
            for line in reader.lines() {
                let Ok(line) = line else { break };
                if line.len() > 8192 {
                    continue;
                }
                let Ok(Value::Object(mut fields)) = serde_json::from_str::<Value>(&line) else {
                    tracing::debug!(line = %line, "a stream process wrote a line that is not a JSON object");
                    continue;
                };
                let Some(Value::String(ev)) = fields.remove("event") else {
                    continue;
                };
                let full = format!("process.{ev}");
                if !crate::config::known_event(&full) || ev == "exited" {
                    continue;
                }
                fields.insert("process".into(), json!(name));
                event(&controller, &full, &stream, Value::Object(fields));
            }
        }));
    }
    if let Some(out) = child.stdout.take() {
        let sink = OutputSink {
            index: ctx.index,
            name: ctx.spec.name.clone(),
            target: ctx.spec.output.clone(),
            ns: ctx.ns.clone(),
            shared: ctx.shared.clone(),
            output,
            last_fed: ctx.last_fed.clone(),
            offset: None,
        };
        threads.push(std::thread::spawn(move || sink.run(out)));
    }
    Readers { threads, stderr }
}

/// Where a program's MPEG-TS goes: new tracks of the stream, or a stream of its own.
struct OutputSink {
    index: usize,
    name: String,
    target: Option<String>,
    ns: brume_shm::Namespace,
    shared: Arc<Mutex<Shared>>,
    output: Arc<Mutex<Option<brume_shm::Writer>>>,
    last_fed: Arc<AtomicI64>,
    offset: Option<i64>,
}

impl OutputSink {
    /// Track ids of a process's tracks in the stream: 100 + 10 × process index + its
    /// own id, clear of the source's ids.
    fn id(&self, own: u32) -> u32 {
        100 + 10 * self.index as u32 + own
    }

    fn run(mut self, mut out: std::process::ChildStdout) {
        let mut demux = TsDemuxer::new();
        let mut events = Vec::new();
        let mut buf = vec![0u8; 64 * 1024];
        loop {
            let n = match out.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => n,
            };
            demux.push(&buf[..n], &mut events);
            for ev in events.drain(..) {
                if let Err(e) = self.handle(ev) {
                    tracing::warn!(error = %e, "stream process output dropped");
                }
            }
        }
        demux.finish(&mut events);
        for ev in events.drain(..) {
            let _ = self.handle(ev);
        }
    }

    fn handle(&mut self, ev: DemuxEvent) -> Result<(), String> {
        match ev {
            DemuxEvent::Tracks(mut tracks) => match &self.target {
                None => {
                    for t in &mut tracks {
                        t.id = self.id(t.id);
                    }
                    tracing::info!(
                        tracks = tracks.len(),
                        "stream process output joins the stream"
                    );
                    self.shared
                        .lock()
                        .expect("sink lock")
                        .set_added(&self.name, tracks)
                        .map_err(|e| e.to_string())
                }
                Some(target) => {
                    let mut out = self.output.lock().expect("output lock");
                    if out.is_none() {
                        let w =
                            brume_shm::Writer::open(&self.ns, target, brume_shm::Layout::default())
                                .map_err(|e| e.to_string())?;
                        tracing::info!(output = %target, "stream process output is a stream");
                        *out = Some(w);
                    }
                    out.as_mut()
                        .expect("just set")
                        .set_tracks(&tracks)
                        .map_err(|e| e.to_string())
                }
            },
            DemuxEvent::Frame(mut f) => {
                // Programs that keep timestamps (ffmpeg -copyts) line up with the
                // stream; others start near zero and are moved to where they were fed.
                let offset = *self.offset.get_or_insert_with(|| {
                    let fed = self.last_fed.load(Ordering::Relaxed);
                    if fed != i64::MIN && (f.dts - fed).abs() > REBASE_US {
                        fed - f.dts
                    } else {
                        0
                    }
                });
                f.dts += offset;
                match &self.target {
                    None => {
                        f.track = self.id(f.track);
                        self.shared
                            .lock()
                            .expect("sink lock")
                            .writer
                            .write(&f)
                            .map_err(|e| e.to_string())
                    }
                    Some(_) => match self.output.lock().expect("output lock").as_mut() {
                        Some(w) => w.write(&f).map_err(|e| e.to_string()),
                        None => Ok(()),
                    },
                }
            }
        }
    }
}
