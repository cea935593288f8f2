//! `brume controller`: owns the configuration, serves the HTTP API (connections handed
//! over by the listener), supervises the inputs (it is their angel) and collects
//! stats from shared memory. A single-threaded tokio runtime keeps it small.

mod api;
pub mod auth;
pub mod events;
pub mod gate;
mod gpio;
mod push;
mod recording;
mod supervisor;
mod system;
mod ui;

use crate::config::Config;
use crate::env::Env;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Instant;

pub use supervisor::InputState;
pub use system::rss_kib as system_rss_kib;

/// A supervising task (an input's or a recorder's angel) and its stop signal.
pub struct AngelTask {
    stop: tokio::sync::watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl AngelTask {
    /// Spawns `f`, giving it the receiver that turns true when it must stop.
    pub fn spawn<Fut>(f: impl FnOnce(tokio::sync::watch::Receiver<bool>) -> Fut) -> AngelTask
    where
        Fut: std::future::Future<Output = ()> + Send + 'static,
    {
        let (stop, rx) = tokio::sync::watch::channel(false);
        AngelTask {
            stop,
            task: tokio::spawn(f(rx)),
        }
    }

    pub fn running(&self) -> bool {
        !self.task.is_finished()
    }

    /// Signals the task to stop; await the handle (outside any lock) for it to end.
    pub fn stop(self) -> tokio::task::JoinHandle<()> {
        let _ = self.stop.send(true);
        self.task
    }
}

/// Stops a child the controller supervises: SIGTERM, then SIGKILL if it has not ended
/// within `grace`. Returns its exit status.
pub async fn terminate(
    child: &mut tokio::process::Child,
    grace: std::time::Duration,
) -> Option<std::process::ExitStatus> {
    if let Some(pid) = child.id() {
        // SAFETY: kill takes no pointers.
        unsafe { libc::kill(pid as i32, libc::SIGTERM) };
    }
    match tokio::time::timeout(grace, child.wait()).await {
        Ok(st) => st.ok(),
        Err(_) => {
            let _ = child.kill().await;
            child.wait().await.ok()
        }
    }
}

/// A child's stdout, line by line, until it closes.
pub type ChildLines = tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>;

/// The next line of a child's stdout; never resolves once the pipe closed (`None`),
/// so it can sit in a `select!` next to the child's exit.
pub async fn next_line(lines: &mut Option<ChildLines>) -> std::io::Result<Option<String>> {
    match lines {
        Some(l) => l.next_line().await,
        None => std::future::pending().await,
    }
}

/// Everything the controller knows, shared by the API and the supervisor.
pub struct State {
    pub env: Env,
    pub started: Instant,
    pub config: Mutex<Config>,
    pub inputs: Mutex<BTreeMap<String, InputState>>,
    /// The recordings by stream (active or stopped on an error).
    pub recordings: Mutex<BTreeMap<String, recording::RecState>>,
    /// Held while the wanted recordings' file is read and rewritten.
    pub recordings_file: Mutex<()>,
    /// Payload bytes per second of each stream, sampled once a second.
    pub rates: Mutex<std::collections::HashMap<String, f64>>,
    /// Recent events, handler runs and the triggers' queues.
    pub events: events::Hub,
    pub gate: gate::Gate,
    pub gpio: gpio::GpioState,
    pub pushes: Mutex<BTreeMap<String, push::PushState>>,
    pub auth: auth::Auth,
    /// Serialises configuration changes (validate, save, apply).
    pub config_write: tokio::sync::Mutex<()>,
}

pub type Shared = Arc<State>;

pub fn main(_args: &[String]) -> Result<(), String> {
    crate::logging::init("controller");
    limit_malloc();
    let env = Env::from_env();
    let config = Config::load(&env.config).map_err(|e| e.to_string())?;
    std::fs::create_dir_all(&env.run_dir).map_err(|e| e.to_string())?;
    let sock_path = env.controller_socket();
    let _ = std::fs::remove_file(&sock_path);
    let sock = std::os::unix::net::UnixDatagram::bind(&sock_path)
        .map_err(|e| format!("{}: {e}", sock_path.display()))?;

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .max_blocking_threads(2)
        .build()
        .map_err(|e| e.to_string())?;
    let state: Shared = Arc::new(State {
        auth: auth::Auth::new(
            config.admin.password_hash.clone(),
            Some(crate::env::sessions_file(&env.config)),
        ),
        env,
        started: Instant::now(),
        config: Mutex::new(config),
        inputs: Mutex::new(BTreeMap::new()),
        recordings: Mutex::new(BTreeMap::new()),
        recordings_file: Mutex::new(()),
        rates: Mutex::new(std::collections::HashMap::new()),
        events: events::Hub::default(),
        gate: gate::Gate::default(),
        gpio: gpio::GpioState::default(),
        pushes: Mutex::new(BTreeMap::new()),
        config_write: tokio::sync::Mutex::new(()),
    });
    rt.block_on(run(state, sock))
}

async fn run(state: Shared, sock: std::os::unix::net::UnixDatagram) -> Result<(), String> {
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel();
    std::thread::Builder::new()
        .name("handoff".into())
        .spawn(move || loop {
            match crate::handoff::recv(&sock) {
                Ok(m) => {
                    if tx.send(m).is_err() {
                        return;
                    }
                }
                Err(e) => tracing::warn!(error = %e, "bad message on the controller socket"),
            }
        })
        .map_err(|e| e.to_string())?;

    events::sync_triggers(&state);
    events::emit(
        &state,
        "system.start",
        None,
        serde_json::json!({ "version": crate::update::version() }),
    );
    gpio::apply(&state);
    tokio::spawn(gpio::bindings(state.clone()));
    tokio::spawn(gate::serve(state.clone()));
    supervisor::start_configured(&state);
    recording::start_configured(&state);
    recording::resume_wanted(&state);
    push::apply(&state).await;
    tokio::spawn(supervisor::housekeeping(state.clone()));
    tokio::spawn(recording::storage(state.clone()));
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .map_err(|e| e.to_string())?;
    let mut int = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())
        .map_err(|e| e.to_string())?;
    // A live update: `serve` asks this controller to hand over to one of the new binary.
    let mut handover =
        tokio::signal::unix::signal(tokio::signal::unix::SignalKind::user_defined2())
            .map_err(|e| e.to_string())?;
    tracing::info!(config = %state.env.config.display(), "controller ready");
    let api_slots = ApiSlots::default();
    loop {
        tokio::select! {
            m = rx.recv() => match m {
                Some(crate::handoff::Message::Connection { fd, head }) => {
                    let st = state.clone();
                    match api_slots.take(&state, &fd) {
                        Some(slot) => tokio::spawn(async move {
                            api::serve_connection(st, fd, head).await;
                            drop(slot);
                        }),
                        None => tokio::spawn(refuse_busy(fd)),
                    };
                }
                Some(crate::handoff::Message::Demand { stream }) => supervisor::demand(&state, &stream),
                Some(crate::handoff::Message::Log(line)) => crate::logging::remember(line),
                Some(crate::handoff::Message::Status { stream, state: st, error }) => {
                    supervisor::reported(&state, &stream, &st, &error)
                }
                Some(crate::handoff::Message::Event(v)) => events::emit_reported(&state, v),
                None => return Err("hand-over thread ended".into()),
            },
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = handover.recv() => {
                // Nothing is stopped: inputs keep running and the next controller
                // adopts them as after a crash. Recorders and pushers end with this
                // process; the next one starts them again, and a recorder continues
                // its predecessor's recording (see recorder.rs).
                tracing::info!("handing over to the next controller");
                let _ = tokio::time::timeout(
                    std::time::Duration::from_millis(500),
                    events::drain(&state),
                )
                .await;
                return Ok(());
            }
        }
    }
    tracing::info!("controller stopping");
    events::emit(&state, "system.stop", None, serde_json::json!({}));
    push::stop_all(&state).await;
    recording::stop_all(&state).await;
    supervisor::stop_all(&state).await;
    // Let the triggers deliver system.stop (bounded: serve waits for us).
    let _ = tokio::time::timeout(std::time::Duration::from_secs(2), events::drain(&state)).await;
    Ok(())
}

/// API connections being served, in all and per client address.
#[derive(Clone, Default)]
struct ApiSlots(Arc<Mutex<(usize, std::collections::HashMap<std::net::IpAddr, usize>)>>);

/// One API connection's place in [`ApiSlots`], given back on drop.
struct ApiSlot {
    slots: ApiSlots,
    ip: Option<std::net::IpAddr>,
}

impl ApiSlots {
    /// A place for this connection, unless the controller serves `max_api_connections`
    /// already, or a quarter of them for the same address.
    fn take(&self, state: &Shared, fd: &std::os::fd::OwnedFd) -> Option<ApiSlot> {
        let limits = state
            .config
            .lock()
            .map(|c| c.limits.clone())
            .unwrap_or_default();
        let ip = std::os::fd::AsFd::as_fd(fd)
            .try_clone_to_owned()
            .ok()
            .map(std::net::TcpStream::from)
            .and_then(|s| s.peer_addr().ok())
            .map(|a| a.ip());
        let mut g = self.0.lock().unwrap_or_else(|e| e.into_inner());
        let from = ip.and_then(|ip| g.1.get(&ip).copied()).unwrap_or(0);
        if g.0 >= limits.max_api_connections as usize || from >= limits.max_api_per_address() {
            tracing::warn!(peer = ?ip, "API connection refused: too many at once");
            return None;
        }
        g.0 += 1;
        if let Some(ip) = ip {
            *g.1.entry(ip).or_default() += 1;
        }
        Some(ApiSlot {
            slots: self.clone(),
            ip,
        })
    }
}

impl Drop for ApiSlot {
    fn drop(&mut self) {
        let mut g = self.slots.0.lock().unwrap_or_else(|e| e.into_inner());
        g.0 = g.0.saturating_sub(1);
        if let Some(ip) = self.ip {
            if let Some(n) = g.1.get_mut(&ip) {
                *n -= 1;
                if *n == 0 {
                    g.1.remove(&ip);
                }
            }
        }
    }
}

/// Answers 503 on a connection the controller has no room for, and closes it.
async fn refuse_busy(fd: std::os::fd::OwnedFd) {
    use tokio::io::AsyncWriteExt;
    let s = std::net::TcpStream::from(fd);
    if s.set_nonblocking(true).is_err() {
        return;
    }
    let Ok(mut s) = tokio::net::TcpStream::from_std(s) else {
        return;
    };
    let body = "{\"error\":\"too many API requests at once; try again\"}\n";
    let reply = format!(
        "HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/json\r\nContent-Length: {}\r\nRetry-After: 1\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    let _ = tokio::time::timeout(
        std::time::Duration::from_secs(2),
        s.write_all(reply.as_bytes()),
    )
    .await;
}

/// Keeps the controller's resident memory small: large blocks (argon2's 7 MiB work
/// area at each login) are mmapped and returned on free instead of staying in the
/// heap, and blocking threads share arenas instead of growing their own.
fn limit_malloc() {
    #[cfg(target_env = "gnu")]
    // SAFETY: mallopt only adjusts allocator parameters; called before other threads.
    unsafe {
        libc::mallopt(libc::M_MMAP_THRESHOLD, 64 * 1024);
        libc::mallopt(libc::M_TRIM_THRESHOLD, 128 * 1024);
        libc::mallopt(libc::M_ARENA_MAX, 2);
    }
}
