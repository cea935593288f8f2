//! Live update through the API: `POST /api/v1/system/update` takes a new binary,
//! `POST /api/v1/system/rollback` goes back to the previous one. Both ask the root
//! angel to switch (`update::send_request`) only after their answer is sent: the
//! controller answering is itself replaced during the switch.
//!
//! The upload is the one API request whose body is not read whole before routing
//! (see `serve_connection`): the admin is authenticated from the head alone, then the
//! body is streamed into a staging file in the updates directory, at most
//! `MAX_UPDATE` bytes within `UPLOAD_TIMEOUT` of the hand-over, and checked
//! (`update::verify`) before anything changes.
//!
//! A RAUC bundle (a whole-image update for the A/B image, recognised by its squashfs
//! magic) goes to `rauc install` instead, which checks its signature against the
//! board's keyring and writes the other root slot; it runs after the next reboot.

use super::{Admin, ApiError, ApiResult};
use crate::controller::Shared;
use crate::update::{self, verify, Request, Status};
use axum::body::Body;
use axum::extract::State;
use axum::http::{header, HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use serde_json::{json, Value};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;
use tokio::io::AsyncWriteExt;

/// The upload's path (POST only).
pub const UPLOAD_PATH: &str = "/api/v1/system/update";

/// The largest binary taken (a release build is a few tens of MiB).
pub const MAX_UPDATE: u64 = 256 * 1024 * 1024;

/// The upload's body must have arrived within this time of the hand-over (a total,
/// like every other deadline a client gets).
pub const UPLOAD_TIMEOUT: Duration = Duration::from_secs(600);

/// The header carrying the detached ed25519 signature, in base64.
pub const SIGNATURE_HEADER: &str = "x-brume-signature";

/// How long after its answer the controller asks the root angel to switch: enough
/// for the answer to leave before the controller is replaced.
const SEND_DELAY: Duration = Duration::from_millis(200);

/// An update whose root angel has said nothing for this long no longer blocks another
/// one (a root angel killed mid-way leaves `updating` behind).
const STALE_UPDATING_MS: u64 = 5 * 60 * 1000;

/// True for the one request whose body is streamed to its handler.
pub fn is_upload(method: &Method, path: &str) -> bool {
    method == Method::POST && path == UPLOAD_PATH
}

/// When the upload's body must be complete: the hand-over plus `UPLOAD_TIMEOUT`.
#[derive(Clone, Copy)]
pub struct UploadDeadline(pub tokio::time::Instant);

/// One upload at a time per controller: each holds up to 256 MiB of disk.
static UPLOADING: AtomicBool = AtomicBool::new(false);

struct UploadSlot;

impl UploadSlot {
    fn take() -> Option<UploadSlot> {
        UPLOADING
            .compare_exchange(false, true, Ordering::AcqRel, Ordering::Acquire)
            .ok()
            .map(|_| UploadSlot)
    }
}

impl Drop for UploadSlot {
    fn drop(&mut self) {
        UPLOADING.store(false, Ordering::Release);
    }
}

/// Removes the staging file unless the checks took it over: the handler's future may
/// be dropped anywhere (the client gone, the connection's deadline).
struct Staged(Option<PathBuf>);

impl Drop for Staged {
    fn drop(&mut self) {
        if let Some(p) = self.0.take() {
            let _ = std::fs::remove_file(p);
        }
    }
}

/// `GET /api/v1/system` → `update`: the root angel's last report, or null.
pub fn status_json(state: &Shared) -> Value {
    json!(update::status(&state.env.run_dir))
}

fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

/// An update the root angel is working on (and has reported on recently).
fn in_progress(run_dir: &Path) -> Option<Status> {
    update::status(run_dir).filter(|s| {
        (s.state == "updating" && now_ms().saturating_sub(s.started_ms) < STALE_UPDATING_MS)
            || (s.state == "installing-image"
                && now_ms().saturating_sub(s.started_ms) < RAUC_TIMEOUT.as_millis() as u64)
    })
}

fn busy(s: &Status) -> ApiError {
    ApiError::new(
        StatusCode::CONFLICT,
        format!(
            "an update to {} is in progress; wait for its outcome (GET /api/v1/system)",
            s.target_version.as_deref().unwrap_or("a new version")
        ),
    )
}

/// True when a root angel runs on `run_dir` (its pid record names a live process
/// with the recorded start time), so a request to switch has someone to answer it.
fn root_angel_running(run_dir: &Path) -> bool {
    let Ok(record) = std::fs::read_to_string(update::serve_pid_file(run_dir)) else {
        return false;
    };
    let mut words = record.split_whitespace();
    let pid = words.next().and_then(|w| w.parse::<u32>().ok());
    let start = words.next().and_then(|w| w.parse::<u64>().ok());
    match (pid, start) {
        (Some(pid), Some(start)) => brume_shm::sys::process_start_time(pid) == Some(start),
        _ => false,
    }
}

fn no_root_angel(what: &str) -> ApiError {
    ApiError::new(
        StatusCode::SERVICE_UNAVAILABLE,
        format!("{what}, but no root angel (brume serve) runs on this run directory to switch"),
    )
}

/// Sends the request to the root angel after the answer has left. A request that
/// cannot be delivered is reported in `update.json` as `failed`, where the page that
/// waits for the outcome looks.
fn send_after_answer(state: &Shared, request: Request) {
    let run_dir = state.env.run_dir.clone();
    tokio::spawn(async move {
        tokio::time::sleep(SEND_DELAY).await;
        let r = request.clone();
        let dir = run_dir.clone();
        let sent = tokio::task::spawn_blocking(move || update::send_request(&dir, &r))
            .await
            .unwrap_or_else(|e| Err(e.to_string()));
        match sent {
            Ok(()) => tracing::info!(
                version = %request.version,
                exe = %request.exe.display(),
                rollback = request.rollback,
                "asked the root angel to switch"
            ),
            Err(e) => {
                tracing::error!(error = %e, version = %request.version, "cannot ask the root angel to switch");
                let mut s = update::status(&run_dir).unwrap_or_else(|| Status {
                    version: update::version(),
                    exe: std::fs::read_link("/proc/self/exe").unwrap_or_default(),
                    ..Status::default()
                });
                s.state = "failed".into();
                s.target_version = Some(request.version.clone());
                s.reason = Some(e);
                s.started_ms = now_ms();
                s.finished_ms = s.started_ms;
                s.handover_ms = None;
                update::write_status(&run_dir, &s);
            }
        }
    });
}

fn accepted(version: &str, rollback: bool) -> Response {
    let mut body = json!({ "state": "updating", "version": version });
    if rollback {
        body["rollback"] = json!(true);
    }
    (StatusCode::ACCEPTED, Json(body)).into_response()
}

/// `POST /api/v1/system/update`: the raw binary (`application/octet-stream`), its
/// signature in `X-Brume-Signature` (base64) when the configuration names a key.
pub async fn upload(
    State(state): State<Shared>,
    _: Admin,
    deadline: Option<Extension<UploadDeadline>>,
    headers: HeaderMap,
    mut body: Body,
) -> ApiResult<Response> {
    let deadline = deadline
        .map(|Extension(d)| d.0)
        .unwrap_or_else(|| tokio::time::Instant::now() + UPLOAD_TIMEOUT);
    let length = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<u64>().ok());
    let too_large = || {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            format!("an update is at most {} MiB", MAX_UPDATE >> 20),
        )
    };
    if length.is_some_and(|n| n > MAX_UPDATE) {
        return Err(too_large());
    }
    if length == Some(0) {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "the body is empty: send the new brume binary as application/octet-stream",
        ));
    }
    let signature = match headers.get(SIGNATURE_HEADER) {
        None => None,
        Some(v) => Some(verify::parse_signature(v.as_bytes()).map_err(|e| {
            ApiError::new(StatusCode::BAD_REQUEST, format!("X-Brume-Signature: {e}"))
        })?),
    };
    let key = state
        .config
        .lock()
        .expect("config lock")
        .update
        .key()
        .map_err(ApiError::field)?;
    if let Some(s) = in_progress(&state.env.run_dir) {
        return Err(busy(&s));
    }
    let Some(_slot) = UploadSlot::take() else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "another update is being uploaded",
        ));
    };
    let config = state.env.config.clone();
    let c = config.clone();
    let (path, file) = tokio::task::spawn_blocking(move || verify::staging_file(&c))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("cannot stage the update: {e}"),
            )
        })?;
    let mut staged = Staged(Some(path.clone()));
    if let Some(n) = length {
        if free_bytes(&path).is_some_and(|f| f < n.saturating_add(16 << 20)) {
            return Err(ApiError::new(
                StatusCode::INSUFFICIENT_STORAGE,
                format!(
                    "not enough free space for the update ({} MiB) in {}",
                    n >> 20,
                    path.parent().unwrap_or(&path).display()
                ),
            ));
        }
    }
    let mut out = tokio::io::BufWriter::with_capacity(256 * 1024, tokio::fs::File::from_std(file));
    let mut total: u64 = 0;
    let io_error = |e: std::io::Error| {
        ApiError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            format!("cannot write the update: {e}"),
        )
    };
    loop {
        let chunk = match tokio::time::timeout_at(deadline, next_chunk(&mut body)).await {
            Err(_) => {
                return Err(ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    format!(
                        "the update did not arrive within {} minutes",
                        UPLOAD_TIMEOUT.as_secs() / 60
                    ),
                ))
            }
            Ok(None) => break,
            Ok(Some(Err(e))) => {
                tracing::warn!(error = %e, bytes = total, "update upload broken off");
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!("the upload broke off after {total} bytes"),
                ));
            }
            Ok(Some(Ok(c))) => c,
        };
        total += chunk.len() as u64;
        if total > MAX_UPDATE {
            return Err(too_large());
        }
        out.write_all(&chunk).await.map_err(io_error)?;
    }
    out.flush().await.map_err(io_error)?;
    drop(out);
    if total == 0 {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "the body is empty: send the new brume binary as application/octet-stream",
        ));
    }
    tracing::info!(
        bytes = total,
        signed = signature.is_some(),
        "update received; checking it"
    );
    // The checks own the file from here: they remove it on failure or rename it.
    let staged_path = staged.0.take().expect("staged");
    if is_rauc_bundle(&staged_path) {
        return install_bundle(&state, staged_path).await;
    }
    let run_dir = state.env.run_dir.clone();
    let checked = tokio::task::spawn_blocking(move || {
        verify::stage_and_verify(
            &config,
            &run_dir,
            &staged_path,
            signature.as_ref(),
            key.as_ref(),
        )
    })
    .await
    .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let (exe, version) = match checked {
        Ok(v) => v,
        Err(verify::Error::Refused(m)) => {
            tracing::warn!(reason = %m, "update refused");
            return Err(ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, m));
        }
        Err(verify::Error::Io(m)) => {
            tracing::error!(error = %m, "update could not be staged");
            return Err(ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, m));
        }
    };
    if let Some(s) = in_progress(&state.env.run_dir) {
        return Err(busy(&s));
    }
    if !root_angel_running(&state.env.run_dir) {
        return Err(no_root_angel(&format!(
            "brume {version} is checked and staged as {}",
            exe.display()
        )));
    }
    tracing::info!(version = %version, exe = %exe.display(), "update checked; switching after the answer");
    send_after_answer(
        &state,
        Request {
            exe,
            version: version.clone(),
            rollback: false,
        },
    );
    Ok(accepted(&version, false))
}

/// RAUC bundles are a squashfs image (its magic first) with a signature appended.
fn is_rauc_bundle(path: &Path) -> bool {
    let mut head = [0u8; 4];
    std::fs::File::open(path)
        .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut head))
        .is_ok()
        && &head == b"hsqs"
}

/// How long `rauc install` may take (writing a root file system to a slow card).
const RAUC_TIMEOUT: Duration = Duration::from_secs(30 * 60);

/// A whole-image update: `rauc install` in the background (202 at once); the outcome
/// goes to `update.json` (`installing-image`, then `image-installed` with "reboot to
/// run it" or `failed` with RAUC's message), where the System page looks.
async fn install_bundle(state: &Shared, bundle: PathBuf) -> ApiResult<Response> {
    let Some(rauc) = which("rauc") else {
        let _ = std::fs::remove_file(&bundle);
        return Err(ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "this is a RAUC bundle (a whole-image update), but this appliance has no RAUC:              it runs the single-root image. Upload a brume binary, or flash the A/B image",
        ));
    };
    if let Some(s) = in_progress(&state.env.run_dir) {
        let _ = std::fs::remove_file(&bundle);
        return Err(busy(&s));
    }
    let run_dir = state.env.run_dir.clone();
    let mut status = update::status(&run_dir).unwrap_or_default();
    status.version = update::version();
    status.exe = std::fs::read_link("/proc/self/exe").unwrap_or_default();
    status.state = "installing-image".into();
    status.target_version = Some("a RAUC bundle".into());
    status.reason = None;
    status.started_ms = now_ms();
    status.finished_ms = 0;
    status.handover_ms = None;
    update::write_status(&run_dir, &status);
    tracing::info!(bundle = %bundle.display(), "whole-image update: rauc install");
    tokio::spawn(async move {
        let run = tokio::process::Command::new(&rauc)
            .arg("install")
            .arg(&bundle)
            .stdin(std::process::Stdio::null())
            .kill_on_drop(true)
            .output();
        let (state_name, reason) = match tokio::time::timeout(RAUC_TIMEOUT, run).await {
            Ok(Ok(out)) if out.status.success() => (
                "image-installed",
                "installed in the other root slot; reboot the appliance to run it".to_string(),
            ),
            Ok(Ok(out)) => {
                let text = String::from_utf8_lossy(&out.stderr);
                let last = text
                    .lines()
                    .rev()
                    .find(|l| !l.trim().is_empty())
                    .unwrap_or("no message")
                    .trim()
                    .to_string();
                ("failed", format!("rauc install refused the bundle: {last}"))
            }
            Ok(Err(e)) => ("failed", format!("cannot run rauc: {e}")),
            Err(_) => (
                "failed",
                "rauc install took more than 30 minutes".to_string(),
            ),
        };
        let _ = std::fs::remove_file(&bundle);
        tracing::info!(state = state_name, reason = %reason, "whole-image update");
        status.state = state_name.into();
        status.reason = Some(reason);
        status.finished_ms = now_ms();
        update::write_status(&run_dir, &status);
    });
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({ "state": "installing-image" })),
    )
        .into_response())
}

/// A program by name in PATH.
fn which(name: &str) -> Option<PathBuf> {
    use std::os::unix::fs::PermissionsExt;
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(name))
        .find(|p| {
            std::fs::metadata(p)
                .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
                .unwrap_or(false)
        })
}

/// Free space where `path` is. The statvfs fields are u32 on 32-bit boards (armv7),
/// u64 on 64-bit ones: the casts are needed on one and no-ops on the other.
#[allow(clippy::unnecessary_cast)]
fn free_bytes(path: &Path) -> Option<u64> {
    let s = nix::sys::statvfs::statvfs(path).ok()?;
    Some((s.blocks_available() as u64).saturating_mul(s.fragment_size() as u64))
}

/// The body's next data chunk (trailers skipped); None at its end.
async fn next_chunk(body: &mut Body) -> Option<Result<axum::body::Bytes, axum::Error>> {
    use hyper::body::Body as _;
    loop {
        let frame =
            std::future::poll_fn(|cx| std::pin::Pin::new(&mut *body).poll_frame(cx)).await?;
        match frame {
            Ok(f) => {
                if let Ok(data) = f.into_data() {
                    return Some(Ok(data));
                }
            }
            Err(e) => return Some(Err(e)),
        }
    }
}

/// `POST /api/v1/system/rollback`: back to the binary the last update replaced.
pub async fn rollback(State(state): State<Shared>, _: Admin) -> ApiResult<Response> {
    let run_dir = state.env.run_dir.clone();
    if let Some(s) = in_progress(&run_dir) {
        return Err(busy(&s));
    }
    let status = update::status(&run_dir);
    let (Some(exe), Some(version)) = (
        status.as_ref().and_then(|s| s.previous_exe.clone()),
        status.as_ref().and_then(|s| s.previous_version.clone()),
    ) else {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "there is no previous version to roll back to (no update has replaced one)",
        ));
    };
    if !exe.is_file() {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            format!(
                "the previous version {version} is gone ({} no longer exists)",
                exe.display()
            ),
        ));
    }
    if !root_angel_running(&run_dir) {
        return Err(no_root_angel(&format!(
            "{version} is there to roll back to"
        )));
    }
    tracing::info!(version = %version, exe = %exe.display(), "rolling back after the answer");
    send_after_answer(
        &state,
        Request {
            exe,
            version: version.clone(),
            rollback: true,
        },
    );
    Ok(accepted(&version, true))
}
