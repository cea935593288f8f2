//! `brume serve`: the root angel. Single-threaded and tiny: it starts the controller
//! and the listener, restarts them with back-off when they die, adopts orphans (it is
//! the children's subreaper), and on SIGTERM/SIGINT stops everything and removes every
//! shared-memory object of this appliance.

use crate::angel::{self, Backoff, Verdict};
use crate::config::Config;
use crate::env::{self, Env};
use std::os::unix::process::ExitStatusExt;
use std::path::PathBuf;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

struct Guarded {
    name: &'static str,
    args: Vec<String>,
    child: Option<Child>,
    started: Instant,
    backoff: Backoff,
    restart_at: Option<Instant>,
    /// The longest wait before a restart, crash loop included.
    max_delay: Duration,
}

/// The listener owns the ports, and a new one binds them at once (its children hold
/// no copy of the listening sockets): it is back within this long, whatever its
/// history of deaths.
const LISTENER_MAX_DELAY: Duration = Duration::from_millis(500);

pub fn main(args: &[String]) -> Result<(), String> {
    crate::logging::init("serve");
    // Before any child is started: they must not inherit systemd's variables.
    let systemd = Notify::from_env();
    let config_path = PathBuf::from(crate::flag(args, "--config").unwrap_or("brume.json"));
    let listen = crate::flag(args, "--listen")
        .unwrap_or("0.0.0.0:8080")
        .to_string();
    let rtmp = crate::flag(args, "--rtmp")
        .unwrap_or("0.0.0.0:1935")
        .to_string();
    let config_path = std::path::absolute(&config_path).map_err(|e| e.to_string())?;

    let mut config = Config::load_or_create(&config_path).map_err(|e| e.to_string())?;
    let has_password = crate::controller::auth::ensure_admin(&mut config)?;
    config.save(&config_path).map_err(|e| e.to_string())?;

    let run_dir = std::env::var_os(env::RUN_DIR)
        .map(PathBuf::from)
        .unwrap_or_else(|| env::default_run_dir(&config_path));
    std::fs::create_dir_all(&run_dir).map_err(|e| format!("{}: {e}", run_dir.display()))?;
    std::env::set_var(env::CONFIG, &config_path);
    std::env::set_var(env::RUN_DIR, &run_dir);
    std::env::set_var(env::RTMP_LISTEN, &rtmp);
    let env = Env::from_env();

    // Leftovers of a previous run that was killed outright.
    for p in env.ns.reclaim_dead() {
        tracing::warn!(path = %p.display(), "reclaimed a dead process's shared memory");
    }

    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes no pointers.
    unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    // Descriptors the launcher left open go no further than this process.
    close_on_exec_all();
    let signals = block_signals();

    let host = listen.replace("0.0.0.0", "localhost");
    println!("Brume is running. Open http://{host}/ (API: http://{host}/api/v1/)");
    if !has_password {
        println!("Open http://{host}/ to set the admin password");
    }
    for name in config.streams.keys() {
        println!("  {name}: http://{host}/hls/{name}/index.m3u8  http://{host}/{name}.mp4  http://{host}/{name}.ts");
    }

    let exe = std::env::current_exe().map_err(|e| e.to_string())?;
    let mut procs = vec![
        Guarded::new("controller", vec!["controller".into()]),
        Guarded::new(
            "listen",
            vec![
                "listen".into(),
                "--http".into(),
                listen,
                "--rtmp".into(),
                rtmp,
            ],
        ),
    ];
    for p in &mut procs {
        p.start(&exe);
    }

    systemd.send("READY=1\nSTATUS=running");
    let mut next_ping = Instant::now();

    let mut stopping = false;
    let mut kill_at: Option<Instant> = None;
    loop {
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
            if let Some(p) = procs
                .iter_mut()
                .find(|p| p.child.as_ref().map(|c| c.id()) == Some(pid as u32))
            {
                p.child = None;
                if stopping {
                    continue;
                }
                let how = angel::describe(status);
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
        let now = Instant::now();
        if !stopping {
            for p in &mut procs {
                if p.restart_at.is_some_and(|t| t <= now) {
                    p.restart_at = None;
                    p.start(&exe);
                }
            }
        }
        let next = procs
            .iter()
            .filter_map(|p| p.restart_at)
            .chain(kill_at)
            .chain(systemd.watchdog.map(|_| next_ping))
            .min()
            .map(|t| t.saturating_duration_since(now))
            .unwrap_or(Duration::from_secs(5));
        match wait_signal(&signals, next) {
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
        }
    }

    fn start(&mut self, exe: &std::path::Path) {
        let mut cmd = Command::new(exe);
        cmd.args(&self.args);
        unblock_in_child(&mut cmd);
        match cmd.spawn() {
            Ok(c) => {
                tracing::info!(process = self.name, pid = c.id(), "started");
                self.child = Some(c);
                self.started = Instant::now();
            }
            Err(e) => {
                tracing::error!(process = self.name, error = %e, "cannot start; retrying in 1 s");
                self.restart_at = Some(Instant::now() + Duration::from_secs(1));
            }
        }
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

/// Blocks SIGCHLD, SIGTERM and SIGINT so they are taken with `sigtimedwait`, not by
/// handlers: no polling and no async-signal-safety concerns.
fn block_signals() -> libc::sigset_t {
    // SAFETY: sigset manipulation on a local, zero-initialised set.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGCHLD);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGINT);
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
        for v in ["NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID"] {
            std::env::remove_var(v);
        }
        Notify {
            watchdog: socket.as_ref().and(watchdog),
            socket,
        }
    }

    fn send(&self, msg: &str) {
        if let Some((sock, addr)) = &self.socket {
            let _ = sock.send_to_addr(msg.as_bytes(), addr);
        }
    }
}
