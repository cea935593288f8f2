//! `brume serve`: the root angel. Single-threaded and tiny: it starts the controller
//! and the listener, restarts them with back-off when they die, adopts orphans (it is
//! the children's subreaper), and on SIGTERM/SIGINT stops everything and removes every
//! shared-memory object of this appliance.

use crate::angel::{self, Backoff, Verdict};
use crate::config::Config;
use crate::env::{self, Env};
use crate::update::swap::{self, Resume};
use crate::update::{self as upd, Status};
use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

struct Guarded {
    name: &'static str,
    args: Vec<String>,
    /// The running process (a child of this one).
    child: Option<i32>,
    started: Instant,
    backoff: Backoff,
    restart_at: Option<Instant>,
    /// The longest wait before a restart, crash loop included.
    max_delay: Duration,
    /// Listening sockets passed to the process: name and this process's descriptor.
    fds: Vec<(&'static str, RawFd)>,
    /// Asked to hand over (live update): its exit is expected, and the successor
    /// starts at once. Killed if it has not handed over by this time.
    handing_over: bool,
    handover_kill_at: Option<Instant>,
}

/// The listener's ports are this process's sockets, passed to each listener: a new
/// one serves them at once, and connections wait in the backlog meanwhile. It is back
/// within this long, whatever its history of deaths.
const LISTENER_MAX_DELAY: Duration = Duration::from_millis(500);

/// Set for a root angel that the packaged binary started in its place (so it does not
/// look for another one).
const BOOTED_FROM: &str = "BRUME_BOOTED_FROM";

/// A live update: the new controller must answer the API within this long...
const HEALTH_DEADLINE: Duration = Duration::from_secs(20);
/// ... and it and the new listener must then keep running this long.
const HEALTH_STABLE: Duration = Duration::from_secs(2);

/// A live update in progress (see `update`).
struct Swap {
    request: upd::Request,
    /// What ran before: the binary a failure goes back to.
    old_exe: PathBuf,
    old_version: String,
    started: Instant,
    started_ms: u64,
    deadline: Instant,
    /// When the new controller first answered the API.
    answered: Option<Instant>,
    /// A process of the new binary died before the swap was healthy.
    failed: Option<String>,
    /// Set when this swap is the way back from a failed one: why that one failed.
    undoing: Option<String>,
    /// What a manual rollback went back to before this swap (kept by a swap that
    /// undoes a failed one).
    before: (Option<String>, Option<PathBuf>),
}

pub const USAGE: &str = "\
usage: brume serve [--config PATH] [--listen ADDR:PORT] [--rtmp ADDR:PORT|off]
                   [--rtsp ADDR:PORT|off]
    Run the appliance: the root angel starts the controller and the listener and
    restarts them when they die.

    --config PATH       the configuration file (default: brume.json); created with a
                        demo stream if missing
    --listen ADDR:PORT  HTTP: API, web UI and media (default: 0.0.0.0:8080)
    --rtmp ADDR:PORT    RTMP ingest (default: 0.0.0.0:1935); off: none
    --rtsp ADDR:PORT    RTSP viewers, rtsp://HOST:PORT/<stream> (default:
                        BRUME_RTSP_LISTEN, else the configuration's \"rtsp\", else
                        0.0.0.0:8554); off: none
    -h, --help          this text

    One brume serve per run directory (BRUME_RUN_DIR, default: run/ next to the
    configuration file): a second one exits with an error. SIGTERM or SIGINT stops
    everything; SIGHUP is ignored.

environment:
    BRUME_ADMIN_PASSWORD  the admin password on first run (read once, never passed on);
                          without it, the first visit asks for the setup code printed
                          at start (also in the run directory's setup-code file)
    BRUME_RUN_DIR         sockets, pid records and the lock of this appliance
    BRUME_RTSP_LISTEN     the RTSP address when --rtsp is not given
    BRUME_LOG             error, warn, info (default), debug or trace
";

/// `brume serve`'s command line.
#[derive(Debug, PartialEq, Eq)]
pub struct Options {
    pub config: PathBuf,
    pub listen: String,
    pub rtmp: String,
    /// None: from the environment or the configuration.
    pub rtsp: Option<String>,
}

impl Options {
    /// Parses the options; anything unknown is an error naming it.
    pub fn parse(args: &[String]) -> Result<Options, String> {
        let mut o = Options {
            config: PathBuf::from("brume.json"),
            listen: "0.0.0.0:8080".into(),
            rtmp: "0.0.0.0:1935".into(),
            rtsp: None,
        };
        let mut it = args.iter();
        while let Some(arg) = it.next() {
            let (name, inline) = match arg.split_once('=') {
                Some((n, v)) if n.starts_with("--") => (n, Some(v)),
                _ => (arg.as_str(), None),
            };
            if !matches!(name, "--config" | "--listen" | "--rtmp" | "--rtsp") {
                return Err(if arg.starts_with('-') {
                    format!("unknown option {arg:?}")
                } else {
                    format!("unexpected argument {arg:?}")
                });
            }
            let value = match inline {
                Some(v) => v,
                None => it
                    .next()
                    .map(String::as_str)
                    .ok_or_else(|| format!("{name} needs a value"))?,
            };
            if value.is_empty() {
                return Err(format!("{name} needs a value"));
            }
            match name {
                "--config" => o.config = PathBuf::from(value),
                "--listen" => o.listen = value.to_string(),
                "--rtsp" => o.rtsp = Some(value.to_string()),
                _ => o.rtmp = value.to_string(),
            }
        }
        Ok(o)
    }
}

/// Raises the soft limit on open descriptors to the hard one, for this process and
/// every child (systemd's soft default of 1,024 would let one client's connections
/// exhaust the listener's descriptors; the listener's own caps stay far below this).
fn raise_fd_limit() {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit read and write one local struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) == 0 && lim.rlim_cur < lim.rlim_max {
            let from = lim.rlim_cur;
            lim.rlim_cur = lim.rlim_max;
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) == 0 {
                tracing::info!(from, to = lim.rlim_max, "raised the open-files limit");
            }
        }
    }
}

pub fn main(options: Options) -> Result<(), String> {
    crate::logging::init("serve");
    // Taken with sigtimedwait from here on: a SIGHUP or SIGTERM during start-up waits
    // for the loop instead of killing a half-started root angel.
    let signals = block_signals();
    // Before any child is started: they must not inherit systemd's variables.
    let systemd = Notify::from_env();
    // A root angel that re-executed itself into a new binary (live update): it keeps
    // its lock, its listening sockets and its children.
    let resume = match std::env::var(swap::RESUME) {
        Ok(text) => {
            std::env::remove_var(swap::RESUME);
            Some(Resume::decode(&text)?)
        }
        Err(_) => None,
    };
    raise_fd_limit();
    let Options {
        config: config_path,
        listen,
        rtmp,
        rtsp,
    } = options;
    let config_path = std::path::absolute(&config_path).map_err(|e| e.to_string())?;
    let updates = upd::updates_dir(&config_path);
    // A fresh start runs the binary the last live update left in the updates
    // directory (the root file system is read-only on the appliance), if it is newer.
    if resume.is_none() && std::env::var_os(BOOTED_FROM).is_none() {
        let own = std::env::current_exe().map_err(|e| e.to_string())?;
        if let Some(target) = upd::boot::choose(&updates, &own, &upd::version()) {
            tracing::info!(binary = %target.display(), "starting the updated binary");
            std::env::set_var(BOOTED_FROM, &own);
            systemd.restore_env();
            let mut args = vec!["serve".to_string(), "--config".into()];
            args.push(config_path.display().to_string());
            args.extend([
                "--listen".to_string(),
                listen.clone(),
                "--rtmp".into(),
                rtmp.clone(),
            ]);
            if let Some(r) = &rtsp {
                args.extend(["--rtsp".to_string(), r.clone()]);
            }
            let err = swap::exec_into(&target, &args, &[]);
            tracing::error!(binary = %target.display(), error = %err, "cannot run the updated binary");
            std::env::remove_var(BOOTED_FROM);
            Notify::from_env();
        }
    }
    std::env::remove_var(BOOTED_FROM);

    let run_dir = std::env::var_os(env::RUN_DIR)
        .map(PathBuf::from)
        .unwrap_or_else(|| env::default_run_dir(&config_path));
    let run_dir = std::path::absolute(&run_dir).map_err(|e| e.to_string())?;
    create_private_dir(&run_dir)?;
    let fd_of = |name: &str| resume.as_ref().and_then(|r| r.fds.get(name).copied());
    // One root angel per run directory, held until this process ends (the file is
    // close-on-exec: no child keeps it).
    let lock = match fd_of("lock") {
        // SAFETY: the previous image of this process held this descriptor open for us.
        Some(fd) => unsafe { std::fs::File::from_raw_fd(fd) },
        None => lock_run_dir(&run_dir)?,
    };
    set_cloexec(lock.as_raw_fd());
    let mut ports: Vec<(&'static str, OwnedFd)> = Vec::new();
    if let Some(r) = &resume {
        for name in ["http", "rtmp", "rtsp"] {
            if let Some(fd) = r.fds.get(name) {
                set_cloexec(*fd);
                // SAFETY: as above, one owner per descriptor.
                ports.push((name, unsafe { OwnedFd::from_raw_fd(*fd) }));
            }
        }
    } else {
        // A root angel killed outright (SIGKILL) leaves its controller and listener
        // running: stop them before starting ours.
        stop_previous_tree(&run_dir);
        ports.extend(bind_ports(&listen, &rtmp)?);
    }

    let mut config = Config::load_or_create(&config_path).map_err(|e| e.to_string())?;
    // The password is consumed here and removed from the environment before any
    // child exists, whether or not it was needed.
    let password = env::take_secret(crate::controller::auth::PASSWORD_ENV);
    let has_password = crate::controller::auth::ensure_admin(&mut config, password)?;
    config.save(&config_path).map_err(|e| e.to_string())?;
    let rtsp = rtsp
        .or_else(|| std::env::var(env::RTSP_LISTEN).ok())
        .or_else(|| config.rtsp.clone())
        .unwrap_or_else(|| "0.0.0.0:8554".into());
    if rtsp != "off" && resume.is_none() {
        let l = std::net::TcpListener::bind(&rtsp)
            .map_err(|e| format!("cannot listen for RTSP on {rtsp}: {e}"))?;
        ports.push(("rtsp", high_fd(l.into())?));
    }

    std::env::set_var(env::CONFIG, &config_path);
    std::env::set_var(env::RUN_DIR, &run_dir);
    std::env::set_var(env::RTMP_LISTEN, &rtmp);
    std::env::set_var(env::RTSP_LISTEN, &rtsp);
    let env = Env::from_env();

    // Leftovers of a previous run that was killed outright.
    for p in env.ns.reclaim_dead() {
        tracing::warn!(path = %p.display(), "reclaimed a dead process's shared memory");
    }

    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes no pointers.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    // Descriptors the launcher left open go no further than this process.
    close_on_exec_all();

    // First run without BRUME_ADMIN_PASSWORD: whoever reads this output (the console,
    // the journal) or the run directory gets the one-time code the first-run page asks.
    let setup_code = if resume.is_some() {
        std::fs::read_to_string(crate::controller::auth::setup_code_file(&run_dir))
            .ok()
            .map(|c| c.trim().to_string())
    } else if has_password {
        let _ = std::fs::remove_file(crate::controller::auth::setup_code_file(&run_dir));
        None
    } else {
        Some(crate::controller::auth::new_setup_code(&run_dir)?)
    };

    let host = listen.replace("0.0.0.0", "localhost");
    if resume.is_none() {
        println!("Brume is running. Open http://{host}/ (API: http://{host}/api/v1/)");
        if let Some(code) = &setup_code {
            println!(
            "Open http://{host}/ to set the admin password with the setup code {code} (also in {})",
            crate::controller::auth::setup_code_file(&run_dir).display()
        );
        }
        for name in config.streams.keys() {
            println!("  {name}: http://{host}/hls/{name}/index.m3u8  http://{host}/{name}.mp4  http://{host}/{name}.ts");
        }
    }

    let running_exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut exe = running_exe.clone();
    let serve_args = vec![
        "serve".to_string(),
        "--config".into(),
        config_path.display().to_string(),
        "--listen".into(),
        listen.clone(),
        "--rtmp".into(),
        rtmp.clone(),
        "--rtsp".into(),
        rtsp.clone(),
    ];
    let mut procs = vec![
        Guarded::new("controller", vec!["controller".into()]),
        Guarded::new(
            "listen",
            vec![
                "listen".into(),
                "--http".into(),
                listen.clone(),
                "--rtmp".into(),
                rtmp,
                "--rtsp".into(),
                rtsp,
            ],
        ),
    ];
    procs[1].fds = ports.iter().map(|(n, fd)| (*n, fd.as_raw_fd())).collect();
    // Processes of the binary before an update that are finishing (a listener
    // reading its last request heads): reaped, never restarted.
    let mut retiring: Vec<i32> = Vec::new();
    write_pid_record(&run_dir, "serve", std::process::id() as i32);
    match &resume {
        Some(r) => {
            retiring = r.retiring.clone();
            for p in &mut procs {
                match r.children.get(p.name) {
                    Some(pid) => p.child = Some(*pid),
                    None => p.start(&exe, &run_dir),
                }
            }
            tracing::info!(version = %upd::version(), "running the new binary");
        }
        None => {
            for p in &mut procs {
                p.start(&exe, &run_dir);
            }
        }
    }

    systemd.send("READY=1\nSTATUS=running");
    let mut next_ping = Instant::now();

    let mut stopping = false;
    let mut kill_at: Option<Instant> = None;
    let mut swapping: Option<Swap> = None;
    let mut up_since = Some(Instant::now());
    loop {
        if up_since.is_some_and(|t| t.elapsed() >= upd::boot::STAYED_UP) {
            upd::boot::stayed_up(&updates);
            up_since = None;
        }
        if let Some(every) = systemd.watchdog {
            if !stopping && Instant::now() >= next_ping {
                systemd.send("WATCHDOG=1");
                next_ping = Instant::now() + every;
            }
        }
        // Reap every exited child (ours or adopted orphans).
        loop {
            let mut status = 0;
            // SAFETY: plain waitpid on any child with a valid status pointer.
            let pid = unsafe { libc::waitpid(-1, &mut status, libc::WNOHANG) };
            if pid <= 0 {
                break;
            }
            let status = std::process::ExitStatus::from_raw(status);
            retiring.retain(|r| *r != pid);
            if let Some(p) = procs.iter_mut().find(|p| p.child == Some(pid)) {
                p.child = None;
                if stopping {
                    continue;
                }
                let how = angel::describe(status);
                if p.handing_over {
                    // Handed over for a live update: the successor starts now.
                    p.handing_over = false;
                    tracing::info!(process = p.name, pid, "handed over");
                    p.start(&exe, &run_dir);
                    continue;
                }
                if let Some(sw) = swapping.as_mut().filter(|sw| sw.failed.is_none()) {
                    // The new binary's process died before proving itself.
                    let why = format!("the new {} exited ({how})", p.name);
                    tracing::error!(process = p.name, pid, status = %how, "the new binary failed");
                    sw.failed = Some(why);
                }
                match p.backoff.on_crash(Instant::now(), p.started.elapsed()) {
                    Verdict::Restart(d) => {
                        let d = d.min(p.max_delay);
                        tracing::error!(process = p.name, pid, status = %how, restart_in_ms = d.as_millis() as u64, "crashed; restarting");
                        p.restart_at = Some(Instant::now() + d);
                    }
                    Verdict::GiveUp => {
                        let d = p.max_delay;
                        tracing::error!(process = p.name, pid, status = %how, restart_in_ms = d.as_millis() as u64, "crash loop; restarting");
                        p.restart_at = Some(Instant::now() + d);
                        p.backoff.reset();
                    }
                }
            }
        }
        if stopping && procs.iter().all(|p| p.child.is_none()) && no_children() {
            break;
        }
        // A live update asked for by the controller or `brume update`.
        if take_signal(&signals, libc::SIGUSR1) && !stopping {
            match read_request(&run_dir) {
                Ok(req) if swapping.is_none() => {
                    let sw = begin_swap(req, &exe, &mut procs, &mut retiring, &run_dir);
                    exe = sw.request.exe.clone();
                    swapping = Some(sw);
                }
                Ok(_) => tracing::warn!("an update is already in progress; request ignored"),
                Err(e) => {
                    tracing::error!(error = %e, "update refused");
                    let mut st = upd::status(&run_dir).unwrap_or_default();
                    st.state = "failed".into();
                    st.reason = Some(e);
                    st.version = upd::version();
                    st.exe = exe.clone();
                    st.finished_ms = unix_ms();
                    upd::write_status(&run_dir, &st);
                }
            }
        }
        for p in procs.iter_mut().filter(|p| p.handing_over) {
            if let (Some(pid), Some(t)) = (p.child, p.handover_kill_at) {
                if t <= Instant::now() {
                    tracing::warn!(
                        process = p.name,
                        pid,
                        "did not hand over within 5 s: killed"
                    );
                    // SAFETY: kill takes no pointers.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                    p.handover_kill_at = None;
                }
            }
        }
        if stopping && swapping.take().is_some() {
            tracing::warn!("stopping: the live update in progress is abandoned");
        }
        if let Some(sw) = swapping.as_mut() {
            match check_swap(sw, &procs, &listen) {
                SwapCheck::Waiting => {}
                SwapCheck::Healthy => {
                    let sw = swapping.take().expect("checked above");
                    commit_swap(&sw, &run_dir);
                    upd::boot::set_current(&updates, &sw.request.exe);
                    if sw.request.exe != running_exe {
                        // Become the new binary, keeping children, lock and ports.
                        let mut r = Resume::default();
                        r.fds.insert("lock".into(), lock.as_raw_fd());
                        for (n, fd) in &ports {
                            r.fds.insert((*n).into(), fd.as_raw_fd());
                        }
                        for p in &procs {
                            if let Some(pid) = p.child {
                                r.children.insert(p.name.into(), pid);
                            }
                        }
                        r.retiring = retiring.clone();
                        std::env::set_var(swap::RESUME, r.encode());
                        systemd.restore_env();
                        let keep: Vec<RawFd> = r.fds.values().copied().collect();
                        let err = swap::exec_into(&sw.request.exe, &serve_args, &keep);
                        std::env::remove_var(swap::RESUME);
                        Notify::from_env();
                        tracing::error!(error = %err, "cannot run the new root angel; the old one stays");
                    }
                }
                SwapCheck::Failed(why) => {
                    let sw = swapping.take().expect("checked above");
                    tracing::error!(reason = %why, "update failed; rolling back");
                    let back = upd::Request {
                        exe: sw.old_exe.clone(),
                        version: sw.old_version.clone(),
                        rollback: true,
                    };
                    let mut next = begin_swap(back, &exe, &mut procs, &mut retiring, &run_dir);
                    // The processes of the failed binary may be dead already or in a
                    // crash loop: they are stopped without waiting for a hand-over.
                    next.undoing = Some(why);
                    next.before = sw.before.clone();
                    next.started = sw.started;
                    next.started_ms = sw.started_ms;
                    next.old_exe = sw.request.exe.clone();
                    next.old_version = sw.request.version.clone();
                    exe = next.request.exe.clone();
                    swapping = Some(next);
                }
            }
        }
        let now = Instant::now();
        if !stopping {
            for p in &mut procs {
                if p.restart_at.is_some_and(|t| t <= now) {
                    p.restart_at = None;
                    p.start(&exe, &run_dir);
                }
            }
        }
        let next = procs
            .iter()
            .filter_map(|p| p.restart_at)
            .chain(kill_at)
            .chain(systemd.watchdog.map(|_| next_ping))
            .chain(swapping.as_ref().map(|_| now + Duration::from_millis(100)))
            .min()
            .map(|t| t.saturating_duration_since(now))
            .unwrap_or(Duration::from_secs(5));
        match wait_signal(&signals, next) {
            Some(libc::SIGUSR1) => {
                // Taken at the top of the loop; raise it again for that.
                // SAFETY: raise takes no pointers.
                unsafe { libc::raise(libc::SIGUSR1) };
            }
            Some(libc::SIGHUP) => {
                // There is nothing to reload (the controller applies configuration
                // changes as they are made) and a hang-up of the terminal must not
                // end the root angel and orphan its tree.
                tracing::info!("SIGHUP ignored");
            }
            Some(libc::SIGTERM) | Some(libc::SIGINT) if !stopping => {
                tracing::info!("stopping");
                systemd.send("STOPPING=1");
                stopping = true;
                kill_at = Some(Instant::now() + Duration::from_secs(8));
                // Every descendant, not just our children: inputs whose controller
                // died are ours (subreaper) and must end cleanly too.
                signal_descendants(libc::SIGTERM);
            }
            _ if kill_at.is_some_and(|t| t <= Instant::now()) => {
                tracing::warn!("processes did not stop within 8 s: killing them");
                signal_descendants(libc::SIGKILL);
                kill_at = None;
            }
            _ => {}
        }
    }
    let removed = env.ns.reclaim_dead();
    for p in env.ns.objects() {
        let _ = std::fs::remove_file(&p);
    }
    let _ = std::fs::remove_file(env.controller_socket());
    for p in &procs {
        let _ = std::fs::remove_file(pid_record(&run_dir, p.name));
    }
    let _ = std::fs::remove_file(pid_record(&run_dir, "serve"));
    tracing::info!(reclaimed = removed.len(), "stopped");
    Ok(())
}

impl Guarded {
    fn new(name: &'static str, args: Vec<String>) -> Self {
        Guarded {
            name,
            args,
            child: None,
            started: Instant::now(),
            backoff: Backoff::default(),
            restart_at: None,
            max_delay: if name == "listen" {
                LISTENER_MAX_DELAY
            } else {
                Duration::from_secs(30)
            },
            fds: Vec::new(),
            handing_over: false,
            handover_kill_at: None,
        }
    }

    fn start(&mut self, exe: &Path, run_dir: &Path) {
        let mut cmd = Command::new(exe);
        cmd.args(&self.args);
        unblock_in_child(&mut cmd);
        if !self.fds.is_empty() {
            // Passed as 3, 4, 5…: this process keeps them at 100 and above, so the
            // copies never overwrite one another.
            let from: Vec<RawFd> = self.fds.iter().map(|(_, fd)| *fd).collect();
            let names: Vec<String> = self
                .fds
                .iter()
                .enumerate()
                .map(|(i, (n, _))| format!("{n}={}", 3 + i))
                .collect();
            cmd.env(crate::listen::LISTEN_FDS, names.join(","));
            use std::os::unix::process::CommandExt;
            // SAFETY: only dup2 (async-signal-safe) between fork and exec.
            unsafe {
                cmd.pre_exec(move || {
                    for (i, fd) in from.iter().enumerate() {
                        if libc::dup2(*fd, 3 + i as RawFd) < 0 {
                            return Err(std::io::Error::last_os_error());
                        }
                    }
                    Ok(())
                });
            }
        }
        match cmd.spawn() {
            Ok(c) => {
                tracing::info!(process = self.name, pid = c.id(), "started");
                write_pid_record(run_dir, self.name, c.id() as i32);
                // Reaped with waitpid by pid, in the loop (a re-executed root angel
                // knows its children by pid only).
                self.child = Some(c.id() as i32);
                self.started = Instant::now();
            }
            Err(e) => {
                tracing::error!(process = self.name, error = %e, "cannot start; retrying in 1 s");
                self.restart_at = Some(Instant::now() + Duration::from_secs(1));
            }
        }
    }
}

/// Creates the run directory (owner only: it holds the controller's socket) if it is
/// missing.
fn create_private_dir(dir: &Path) -> Result<(), String> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| format!("{}: {e}", dir.display()))
}

/// Takes the run directory's lock (`flock` on `serve.lock`, which then holds our pid)
/// or explains who holds it. The lock ends with this process, however it ends.
fn lock_run_dir(run_dir: &Path) -> Result<std::fs::File, String> {
    use std::os::unix::fs::OpenOptionsExt;
    let path = run_dir.join("serve.lock");
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(|e| format!("{}: {e}", path.display()))?;
    // SAFETY: flock on a descriptor this function owns.
    if unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0 {
        let e = std::io::Error::last_os_error();
        if e.raw_os_error() != Some(libc::EWOULDBLOCK) {
            return Err(format!("locking {}: {e}", path.display()));
        }
        let holder = std::fs::read_to_string(&path).unwrap_or_default();
        let holder = match holder.trim() {
            "" => String::new(),
            pid => format!(" (pid {pid})"),
        };
        return Err(format!(
            "another brume serve{holder} is running on {}: stop it first, or give this \
             one another configuration directory or BRUME_RUN_DIR",
            run_dir.display()
        ));
    }
    let mine = format!("{}\n", std::process::id());
    f.set_len(0)
        .and_then(|()| f.write_all(mine.as_bytes()))
        .map_err(|e| format!("{}: {e}", path.display()))?;
    Ok(f)
}

/// `run/<role>.pid`: the pid and start time of the controller or listener this root
/// angel started last, so the next root angel can stop them if this one is killed
/// outright.
fn pid_record(run_dir: &Path, role: &str) -> PathBuf {
    run_dir.join(format!("{role}.pid"))
}

fn write_pid_record(run_dir: &Path, role: &str, pid: i32) {
    let Some(start) = start_time(pid) else {
        return;
    };
    let path = pid_record(run_dir, role);
    let tmp = run_dir.join(format!(".{role}.pid.tmp"));
    let write = std::fs::write(&tmp, format!("{pid} {start}\n"))
        .and_then(|()| std::fs::rename(&tmp, &path));
    if let Err(e) = write {
        tracing::warn!(path = %path.display(), error = %e, "cannot write the pid record");
    }
}

/// A process's start time (clock ticks after boot), its identity next to its pid; None
/// if it does not exist or is a zombie.
fn start_time(pid: i32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let fields: Vec<&str> = stat[stat.rfind(')')? + 1..]
        .split_ascii_whitespace()
        .collect();
    // After "(comm)": state is field 3 and starttime field 22 (1-based).
    if *fields.first()? == "Z" {
        return None;
    }
    fields.get(19)?.parse().ok()
}

/// Stops the controller and listener of a previous root angel of this run directory
/// that were left running (found by their pid records: same pid and start time):
/// SIGTERM, so the controller stops its inputs and the listener its workers, then
/// SIGKILL after 10 s. Called with the run directory's lock held, so that root angel
/// is gone.
fn stop_previous_tree(run_dir: &Path) {
    let mut left: Vec<(&str, i32, u64)> = Vec::new();
    for role in ["controller", "listen"] {
        let path = pid_record(run_dir, role);
        let record = std::fs::read_to_string(&path).unwrap_or_default();
        let mut it = record.split_ascii_whitespace().map(str::parse::<u64>);
        if let (Some(Ok(pid)), Some(Ok(start))) = (it.next(), it.next()) {
            let pid = pid as i32;
            if pid > 1 && start_time(pid) == Some(start) {
                left.push((role, pid, start));
            }
        }
        let _ = std::fs::remove_file(&path);
    }
    if left.is_empty() {
        return;
    }
    let alive = |(_, pid, start): &(&str, i32, u64)| start_time(*pid) == Some(*start);
    for (sig, wait) in [(libc::SIGTERM, 10_000u64), (libc::SIGKILL, 2_000)] {
        for (role, pid, _) in left.iter().filter(|p| alive(p)) {
            tracing::warn!(
                process = *role,
                pid = *pid,
                "stopping the process of a previous brume serve that was killed"
            );
            // SAFETY: kill takes no pointers.
            unsafe { libc::kill(*pid, sig) };
        }
        let deadline = Instant::now() + Duration::from_millis(wait);
        while left.iter().any(alive) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

/// Binds the listening addresses once, for the appliance's whole life: a busy port is
/// an error now, naming the address, and each listener is given these sockets, so the
/// ports stay open while a listener is replaced.
fn bind_ports(listen: &str, rtmp: &str) -> Result<Vec<(&'static str, OwnedFd)>, String> {
    let bind = |what: &str, addr: &str| {
        std::net::TcpListener::bind(addr)
            .map_err(|e| format!("cannot listen for {what} on {addr}: {e}"))
    };
    let mut out = vec![("http", high_fd(bind("HTTP", listen)?.into())?)];
    if rtmp != "off" {
        out.push(("rtmp", high_fd(bind("RTMP", rtmp)?.into())?));
    }
    Ok(out)
}

/// The same socket at a descriptor of 100 or more (close-on-exec), so the listener's
/// copies at 3, 4 and 5 never overwrite one another.
fn high_fd(fd: OwnedFd) -> Result<OwnedFd, String> {
    // SAFETY: fcntl on a descriptor we own; the result is a new descriptor we own.
    let n = unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_DUPFD_CLOEXEC, 100) };
    if n < 0 {
        return Err(format!("dup: {}", std::io::Error::last_os_error()));
    }
    // SAFETY: as above.
    Ok(unsafe { OwnedFd::from_raw_fd(n) })
}

fn set_cloexec(fd: RawFd) {
    // SAFETY: fcntl on a descriptor number; takes no pointers.
    unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) };
}

fn unix_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// The request `update.request` holds, checked: the binary exists and is executable.
fn read_request(run_dir: &Path) -> Result<upd::Request, String> {
    let path = upd::request_file(run_dir);
    let text = std::fs::read(&path).map_err(|e| format!("{}: {e}", path.display()))?;
    let _ = std::fs::remove_file(&path);
    let req: upd::Request =
        serde_json::from_slice(&text).map_err(|e| format!("{}: {e}", path.display()))?;
    let c = std::ffi::CString::new(std::os::unix::ffi::OsStrExt::as_bytes(req.exe.as_os_str()))
        .map_err(|_| "the binary's path has a NUL byte".to_string())?;
    // SAFETY: access with a valid NUL-terminated path.
    if unsafe { libc::access(c.as_ptr(), libc::X_OK) } != 0 {
        return Err(format!("{} is not an executable file", req.exe.display()));
    }
    Ok(req)
}

/// Starts a swap to `req.exe`: the controller is asked to hand over (it exits without
/// stopping inputs, recorders or pushes; its successor adopts them), and the listener
/// to drain (it accepts nothing more and leaves its workers to the next listener,
/// which is started at once on the same sockets).
fn begin_swap(
    req: upd::Request,
    exe: &Path,
    procs: &mut [Guarded],
    retiring: &mut Vec<i32>,
    run_dir: &Path,
) -> Swap {
    tracing::info!(exe = %req.exe.display(), version = %req.version, rollback = req.rollback, "live update");
    let old = upd::status(run_dir).unwrap_or_default();
    let sw = Swap {
        old_exe: exe.to_path_buf(),
        old_version: if old.exe == exe && !old.version.is_empty() {
            old.version.clone()
        } else {
            upd::version()
        },
        started: Instant::now(),
        started_ms: unix_ms(),
        deadline: Instant::now() + HEALTH_DEADLINE,
        answered: None,
        failed: None,
        undoing: None,
        before: (old.previous_version.clone(), old.previous_exe.clone()),
        request: req,
    };
    upd::write_status(
        run_dir,
        &Status {
            state: "updating".into(),
            version: sw.old_version.clone(),
            exe: sw.old_exe.clone(),
            previous_version: old.previous_version.clone(),
            previous_exe: old.previous_exe.clone(),
            target_version: Some(sw.request.version.clone()),
            started_ms: sw.started_ms,
            ..Status::default()
        },
    );
    for p in procs.iter_mut() {
        p.restart_at = None;
        p.backoff.reset();
        let Some(pid) = p.child else {
            p.start(&sw.request.exe, run_dir);
            continue;
        };
        if p.name == "listen" {
            // SAFETY: kill takes no pointers.
            unsafe { libc::kill(pid, libc::SIGUSR2) };
            retiring.push(pid);
            p.child = None;
            p.start(&sw.request.exe, run_dir);
        } else {
            p.handing_over = true;
            p.handover_kill_at = Some(Instant::now() + Duration::from_secs(5));
            // SAFETY: as above.
            unsafe { libc::kill(pid, libc::SIGUSR2) };
        }
    }
    sw
}

enum SwapCheck {
    Waiting,
    Healthy,
    Failed(String),
}

fn check_swap(sw: &mut Swap, procs: &[Guarded], listen: &str) -> SwapCheck {
    if let Some(why) = sw.failed.take() {
        if sw.undoing.is_none() {
            return SwapCheck::Failed(why);
        }
        // The binary a failed update went back to fails too: its processes restart
        // under the normal policy; swapping back and forth would help nothing.
        tracing::error!(reason = %why, "the previous binary fails too");
    }
    let running = procs.iter().all(|p| p.child.is_some() && !p.handing_over);
    if running && sw.answered.is_none() && swap::api_answers(listen, Duration::from_millis(500)) {
        tracing::info!(
            handover_ms = sw.started.elapsed().as_millis() as u64,
            "the new controller answers"
        );
        sw.answered = Some(Instant::now());
    }
    match sw.answered {
        Some(t) if running && t.elapsed() >= HEALTH_STABLE => SwapCheck::Healthy,
        // A rollback is recorded as done even when the old binary is slow to answer.
        None if Instant::now() >= sw.deadline && sw.undoing.is_some() => SwapCheck::Healthy,
        None if Instant::now() >= sw.deadline => SwapCheck::Failed(format!(
            "the new controller did not answer within {} s",
            HEALTH_DEADLINE.as_secs()
        )),
        _ => SwapCheck::Waiting,
    }
}

/// Records the outcome of a swap that proved healthy.
fn commit_swap(sw: &Swap, run_dir: &Path) {
    let handover_ms = sw.answered.map(|t| (t - sw.started).as_millis() as u64);
    let status = Status {
        state: if sw.undoing.is_some() {
            "rolled-back".into()
        } else {
            "updated".into()
        },
        version: sw.request.version.clone(),
        exe: sw.request.exe.clone(),
        previous_version: match &sw.undoing {
            Some(_) => sw.before.0.clone(),
            None => Some(sw.old_version.clone()),
        },
        previous_exe: match &sw.undoing {
            Some(_) => sw.before.1.clone(),
            None => Some(sw.old_exe.clone()),
        },
        target_version: Some(if sw.undoing.is_some() {
            sw.old_version.clone()
        } else {
            sw.request.version.clone()
        }),
        reason: sw.undoing.clone(),
        started_ms: sw.started_ms,
        finished_ms: unix_ms(),
        handover_ms,
    };
    tracing::info!(state = %status.state, version = %status.version, handover_ms, "live update done");
    upd::write_status(run_dir, &status);
}

/// Whether `sig` is pending (taken if so), without waiting.
fn take_signal(set: &libc::sigset_t, sig: i32) -> bool {
    // SAFETY: sigset manipulation on local sets; sigtimedwait with a zero timeout.
    unsafe {
        let mut pending: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut pending);
        libc::sigpending(&mut pending);
        if libc::sigismember(&pending, sig) != 1 || libc::sigismember(set, sig) != 1 {
            return false;
        }
        let mut one: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut one);
        libc::sigaddset(&mut one, sig);
        let ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        libc::sigtimedwait(&one, std::ptr::null_mut(), &ts) == sig
    }
}

/// Sends `sig` to every process below this one (read from /proc).
fn signal_descendants(sig: i32) {
    let me = std::process::id() as i32;
    let mut parents: Vec<(i32, i32)> = Vec::new();
    if let Ok(dir) = std::fs::read_dir("/proc") {
        for e in dir.flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                continue;
            };
            let ppid = stat
                .rfind(')')
                .and_then(|i| stat[i + 1..].split_ascii_whitespace().nth(1))
                .and_then(|p| p.parse().ok());
            if let Some(ppid) = ppid {
                parents.push((pid, ppid));
            }
        }
    }
    let mut ours = vec![me];
    let mut i = 0;
    while i < ours.len() {
        let p = ours[i];
        ours.extend(parents.iter().filter(|(_, pp)| *pp == p).map(|(c, _)| *c));
        i += 1;
    }
    for pid in ours.into_iter().skip(1) {
        // SAFETY: kill takes no pointers.
        unsafe { libc::kill(pid, sig) };
    }
}

fn no_children() -> bool {
    // SAFETY: waitpid with WNOHANG and a null status pointer.
    let r = unsafe { libc::waitpid(-1, std::ptr::null_mut(), libc::WNOHANG) };
    r == -1 // ECHILD: none left (0 would mean some still run)
}

/// Blocks SIGCHLD, SIGTERM, SIGINT, SIGHUP and SIGUSR1 (a live update) so they are taken with `sigtimedwait`, not by
/// handlers: no polling and no async-signal-safety concerns.
fn block_signals() -> libc::sigset_t {
    // SAFETY: sigset manipulation on a local, zero-initialised set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGHUP);
        libc::sigaddset(&mut set, libc::SIGUSR1);
        libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
        set
    }
}

fn wait_signal(set: &libc::sigset_t, timeout: Duration) -> Option<i32> {
    let ts = libc::timespec {
        tv_sec: timeout.as_secs() as libc::time_t,
        tv_nsec: timeout.subsec_nanos() as libc::c_long,
    };
    // SAFETY: valid set and timespec; a null siginfo pointer is allowed.
    let sig = unsafe { libc::sigtimedwait(set, std::ptr::null_mut(), &ts) };
    (sig > 0).then_some(sig)
}

/// Children must not inherit the blocked signal mask.
pub fn unblock_in_child(cmd: &mut Command) {
    use std::os::unix::process::CommandExt;
    // SAFETY: only async-signal-safe calls (sigemptyset, pthread_sigmask) between
    // fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::pthread_sigmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
            Ok(())
        });
    }
}

/// Unblocks every signal in this process (a child forked from a process that blocked
/// some for `signalfd`/`sigtimedwait`).
pub fn unblock_signals_here() {
    // SAFETY: sigset manipulation on a local set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::pthread_sigmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
    }
}

/// Sets close-on-exec on every descriptor above stdio, so no child inherits what this
/// process was started with (a shell's or a test runner's descriptors).
fn close_on_exec_all() {
    let Ok(dir) = std::fs::read_dir("/proc/self/fd") else {
        return;
    };
    let fds: Vec<i32> = dir
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|fd| *fd > 2)
        .collect();
    for fd in fds {
        // SAFETY: fcntl on a descriptor number takes no pointers; one that is not open
        // (the directory's, closed by now) fails with EBADF.
        unsafe {
            let flags = libc::fcntl(fd, libc::F_GETFD);
            if flags >= 0 && flags & libc::FD_CLOEXEC == 0 {
                libc::fcntl(fd, libc::F_SETFD, flags | libc::FD_CLOEXEC);
            }
        }
    }
}

/// systemd's notification protocol (sd_notify): readiness, the watchdog, stopping.
/// Only when started by systemd with `Type=notify` (NOTIFY_SOCKET is set); the
/// watchdog is pinged at half of WatchdogSec from the root angel's loop, so a hung
/// root angel gets the whole service restarted.
struct Notify {
    socket: Option<(
        std::os::unix::net::UnixDatagram,
        std::os::unix::net::SocketAddr,
    )>,
    watchdog: Option<Duration>,
    /// The variables as systemd set them, put back for a re-exec (live update).
    env: Vec<(&'static str, std::ffi::OsString)>,
}

impl Notify {
    fn from_env() -> Notify {
        let socket = std::env::var_os("NOTIFY_SOCKET").and_then(|path| {
            use std::os::linux::net::SocketAddrExt;
            let bytes = std::os::unix::ffi::OsStrExt::as_bytes(path.as_os_str()).to_vec();
            let addr = match bytes.strip_prefix(b"@") {
                Some(name) => std::os::unix::net::SocketAddr::from_abstract_name(name).ok()?,
                None => std::os::unix::net::SocketAddr::from_pathname(std::path::Path::new(&path))
                    .ok()?,
            };
            Some((std::os::unix::net::UnixDatagram::unbound().ok()?, addr))
        });
        let for_us = std::env::var("WATCHDOG_PID")
            .map(|p| p == std::process::id().to_string())
            .unwrap_or(true);
        let watchdog = std::env::var("WATCHDOG_USEC")
            .ok()
            .and_then(|v| v.parse::<u64>().ok())
            .filter(|us| *us > 0 && for_us)
            .map(|us| Duration::from_micros(us / 2));
        // Children must not talk to systemd in our name.
        let mut env = Vec::new();
        for v in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] {
            if let Some(value) = std::env::var_os(v) {
                env.push((v, value));
            }
            std::env::remove_var(v);
        }
        Notify {
            watchdog: socket.as_ref().and(watchdog),
            socket,
            env,
        }
    }

    /// Puts systemd's variables back (the pid does not change across exec), so the
    /// re-executed root angel keeps notifying and pinging the watchdog.
    fn restore_env(&self) {
        for (k, v) in &self.env {
            std::env::set_var(k, v);
        }
    }

    fn send(&self, msg: &str) {
        if let Some((sock, addr)) = &self.socket {
            let _ = sock.send_to_addr(msg.as_bytes(), addr);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(a: &[&str]) -> Vec<String> {
        a.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn options_are_parsed_strictly() {
        let o = Options::parse(&args(&[
            "--config",
            "/x/b.json",
            "--listen=127.0.0.1:1",
            "--rtmp",
            "off",
            "--rtsp=127.0.0.1:2",
        ]))
        .unwrap();
        assert_eq!(o.config, PathBuf::from("/x/b.json"));
        assert_eq!(o.listen, "127.0.0.1:1");
        assert_eq!(o.rtmp, "off");
        assert_eq!(o.rtsp.as_deref(), Some("127.0.0.1:2"));
        let d = Options::parse(&[]).unwrap();
        assert_eq!(
            (d.listen.as_str(), d.rtmp.as_str()),
            ("0.0.0.0:8080", "0.0.0.0:1935")
        );
        for (bad, named) in [
            (&["--bogus"][..], "--bogus"),
            (&["--listen"][..], "--listen"),
            (&["--config", ""][..], "--config"),
            (&["stray"][..], "stray"),
            (&["--listen=1", "-v"][..], "-v"),
        ] {
            let e = Options::parse(&args(bad)).unwrap_err();
            assert!(e.contains(named), "{bad:?}: {e}");
        }
    }
}
