//! The HTTP JSON API under `/api/v1/` (axum), served on connections the listener
//! hands over. Errors are `{"error": "...", "field": "..."}` with a 4xx/5xx status.

mod automation;
mod guard;
mod keys;
mod update;

use super::{events, gpio, push, recording, supervisor, system, ui, Shared};
use crate::config::{Config, FieldError, StreamConfig};
use axum::extract::{DefaultBodyLimit, FromRequestParts, Path, Query, State};
use axum::http::{header, request::Parts, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Extension, Json, Router};
use serde_json::{json, Value};
use std::net::{IpAddr, SocketAddr};
use std::os::fd::OwnedFd;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

const SESSION_COOKIE: &str = "brume_session";

/// An API error: status, message, and the offending field when there is one.
pub struct ApiError {
    status: StatusCode,
    error: String,
    field: Option<String>,
}

impl ApiError {
    fn new(status: StatusCode, error: impl Into<String>) -> ApiError {
        ApiError {
            status,
            error: error.into(),
            field: None,
        }
    }
    fn field(e: FieldError) -> ApiError {
        ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            error: e.message,
            field: Some(e.field),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut body = json!({ "error": self.error });
        if let Some(f) = self.field {
            body["field"] = json!(f);
        }
        (self.status, Json(body)).into_response()
    }
}

type ApiResult<T> = Result<T, ApiError>;

#[derive(Clone, Copy)]
struct Peer(Option<SocketAddr>);

/// Extractor that admits only an authenticated admin (bearer token or session cookie).
struct Admin;

impl FromRequestParts<Shared> for Admin {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Shared,
    ) -> Result<Self, Self::Rejection> {
        let token = token_from(&parts.headers);
        match token {
            Some(t) if state.auth.check(&t) => Ok(Admin),
            _ => Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "log in first: POST /api/v1/login",
            )),
        }
    }
}

fn token_from(headers: &HeaderMap) -> Option<String> {
    if let Some(v) = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
    {
        if let Some(t) = v.strip_prefix("Bearer ") {
            return Some(t.trim().to_string());
        }
    }
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .find_map(|c| {
            c.trim()
                .strip_prefix(&format!("{SESSION_COOKIE}="))
                .map(str::to_string)
        })
}

pub fn router(state: Shared) -> Router {
    Router::new()
        .route("/", get(ui::index))
        .route("/ui/{*path}", get(ui::file))
        .route("/api/v1/setup", get(setup_status).post(setup))
        .route("/api/v1/login", post(login))
        .route("/api/v1/logout", post(logout))
        .route("/api/v1/config", get(get_config).put(put_config))
        .route("/api/v1/streams", get(list_streams).post(create_stream))
        .route(
            "/api/v1/streams/{name}",
            get(get_stream).put(put_stream).delete(delete_stream),
        )
        .route("/api/v1/streams/{name}/restart", post(restart_stream))
        .route("/api/v1/streams/{name}/key", post(keys::regenerate))
        .route("/api/v1/streams/{name}/snapshot", get(snapshot))
        .route(
            "/api/v1/streams/{name}/recording",
            post(start_recording).delete(stop_recording),
        )
        .route("/api/v1/recordings", get(list_recordings))
        .route(
            "/api/v1/recordings/{*path}",
            get(download_recording).delete(delete_recording),
        )
        .route("/api/v1/connections", get(connections))
        .route("/api/v1/system", get(system_status))
        .route(update::UPLOAD_PATH, post(update::upload))
        .route("/api/v1/system/rollback", post(update::rollback))
        .route("/api/v1/logs", get(logs))
        .route("/api/v1/devices", get(devices))
        .route(
            "/api/v1/triggers",
            get(automation::get_triggers).put(automation::put_triggers),
        )
        .route("/api/v1/triggers/runs", get(automation::runs))
        .route("/api/v1/events", get(automation::recent_events))
        .route(
            "/api/v1/gpio",
            get(automation::get_gpio).put(automation::put_gpio),
        )
        .route("/api/v1/gpio/pins/{name}", put(automation::set_pin))
        .route(
            "/api/v1/gpio/pins/{name}/press",
            post(automation::press_pin),
        )
        .route("/api/v1/pushes", get(automation::list_pushes))
        .route(
            "/api/v1/pushes/{name}",
            put(automation::put_push).delete(automation::delete_push),
        )
        .route("/api/v1/pushes/{name}/start", post(automation::start_push))
        .route("/api/v1/pushes/{name}/stop", post(automation::stop_push))
        .fallback(|| async { ApiError::new(StatusCode::NOT_FOUND, "no such path") })
        .layer(DefaultBodyLimit::max(256 * 1024))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            guard::check,
        ))
        .with_state(state)
}

/// Serves one handed-over connection (one request: the controller closes after it,
/// so media requests on a reused connection always reach a worker).
pub async fn serve_connection(state: Shared, fd: OwnedFd, head: Vec<u8>) {
    let std_stream = std::net::TcpStream::from(fd);
    let peer = std_stream.peer_addr().ok();
    if std_stream.set_nonblocking(true).is_err() {
        return;
    }
    let Ok(stream) = tokio::net::TcpStream::from_std(std_stream) else {
        return;
    };
    let io = hyper_util::rt::TokioIo::new(Rewind {
        prefix: head,
        pos: 0,
        inner: stream,
    });
    let body_timeout = state
        .config
        .lock()
        .map(|c| c.limits.body_timeout())
        .unwrap_or(Duration::from_secs(10));
    let app = router(state).layer(Extension(Peer(peer)));
    let inner = hyper_util::service::TowerToHyperService::new(app);
    let handed_over = tokio::time::Instant::now();
    // The body is read whole, within a total deadline from the hand-over, before the
    // request is routed: a client trickling its body holds only its own task and only
    // that long, and no handler ever waits on a client.
    let deadline = handed_over + body_timeout;
    // The whole exchange, answer included, ends by this time (moved later for an
    // update's upload).
    let conn_deadline = Arc::new(Mutex::new(handed_over + CONNECTION_TIMEOUT));
    let conn_until = conn_deadline.clone();
    let svc = hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
        let inner = inner.clone();
        let conn_deadline = conn_deadline.clone();
        async move {
            // The one exception: a new binary is streamed to its handler, which checks
            // the admin from the head alone before it reads a byte of the body, and
            // reads it within its own deadline (see api/update.rs).
            if update::is_upload(req.method(), req.uri().path()) {
                let until = handed_over + update::UPLOAD_TIMEOUT;
                *conn_deadline.lock().expect("deadline lock") = until + CONNECTION_TIMEOUT;
                let mut req = req.map(axum::body::Body::new);
                req.extensions_mut().insert(update::UploadDeadline(until));
                return hyper::service::Service::call(&inner, req).await;
            }
            let (parts, body) = req.into_parts();
            let read = axum::body::to_bytes(axum::body::Body::new(body), MAX_BODY);
            let refused = match tokio::time::timeout_at(deadline, read).await {
                Ok(Ok(bytes)) => {
                    let req = hyper::Request::from_parts(parts, axum::body::Body::from(bytes));
                    return hyper::service::Service::call(&inner, req).await;
                }
                Ok(Err(_)) if body_too_large(&parts.headers) => ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    format!("the request body is over {} KiB", MAX_BODY / 1024),
                ),
                Ok(Err(_)) => ApiError::new(
                    StatusCode::BAD_REQUEST,
                    format!(
                        "the request body could not be read (at most {} KiB)",
                        MAX_BODY / 1024
                    ),
                ),
                Err(_) => ApiError::new(
                    StatusCode::REQUEST_TIMEOUT,
                    format!(
                        "the request body did not arrive within {} s",
                        body_timeout.as_secs()
                    ),
                ),
            };
            Ok::<_, std::convert::Infallible>(refused.into_response())
        }
    });
    let conn = hyper::server::conn::http1::Builder::new()
        .keep_alive(false)
        .serve_connection(io, svc);
    let mut conn = std::pin::pin!(conn);
    loop {
        let until = *conn_until.lock().expect("deadline lock");
        if tokio::time::timeout_at(until, conn.as_mut()).await.is_ok() {
            break;
        }
        if *conn_until.lock().expect("deadline lock") <= tokio::time::Instant::now() {
            break;
        }
    }
}

/// How long one handed-over connection may take in all (beyond an upload's deadline).
const CONNECTION_TIMEOUT: Duration = Duration::from_secs(60);

/// Largest request body (the whole configuration fits many times).
const MAX_BODY: usize = 256 * 1024;

fn body_too_large(headers: &HeaderMap) -> bool {
    headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .is_some_and(|n| n > MAX_BODY)
}

/// The bytes the listener already read, then the socket.
struct Rewind {
    prefix: Vec<u8>,
    pos: usize,
    inner: tokio::net::TcpStream,
}

impl AsyncRead for Rewind {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.pos < self.prefix.len() {
            let n = buf.remaining().min(self.prefix.len() - self.pos);
            let start = self.pos;
            buf.put_slice(&self.prefix[start..start + n]);
            self.pos += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Rewind {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

/// Parses a JSON body, naming the field that failed.
fn parse_body<T: serde::de::DeserializeOwned>(body: &[u8]) -> ApiResult<T> {
    let mut de = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let path = e.path().to_string();
        let inner = e.into_inner();
        if inner.is_syntax() || inner.is_eof() {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                format!("body is not valid JSON: {inner}"),
            )
        } else {
            ApiError {
                status: StatusCode::UNPROCESSABLE_ENTITY,
                error: inner.to_string(),
                field: (path != ".").then_some(path),
            }
        }
    })
}

fn session_cookie(token: &str) -> String {
    format!("{SESSION_COOKIE}={token}; HttpOnly; SameSite=Strict; Path=/")
}

/// Logged in: the token in the body (for scripts) and as the session cookie (for the UI).
fn logged_in(token: String) -> Response {
    (
        [(header::SET_COOKIE, session_cookie(&token))],
        Json(json!({ "token": token })),
    )
        .into_response()
}

/// First run: whether the admin password still has to be chosen (and so the setup
/// code asked for). Open to everyone, as is the UI that asks it.
async fn setup_status(State(state): State<Shared>) -> Json<Value> {
    let needs = !state.auth.has_password();
    Json(json!({ "needs_password": needs, "needs_code": needs }))
}

/// First run: sets the admin password (only while none exists, and only with the
/// setup code `brume serve` printed) and logs in.
async fn setup(
    State(state): State<Shared>,
    Extension(peer): Extension<Peer>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    #[derive(serde::Deserialize)]
    struct Setup {
        password: String,
        #[serde(default)]
        code: Option<String>,
    }
    let already = || {
        ApiError::new(
            StatusCode::CONFLICT,
            "the admin password is already set; log in instead",
        )
    };
    if state.auth.has_password() {
        return Err(already());
    }
    let req: Setup = parse_body(&body)?;
    let ip = peer.0.map(|p| p.ip()).unwrap_or(IpAddr::from([0, 0, 0, 0]));
    let code_file = super::auth::setup_code_file(&state.env.run_dir);
    let code_error = |status, error: &str| ApiError {
        status,
        error: error.into(),
        field: Some("code".into()),
    };
    match state
        .auth
        .check_setup_code(ip, &code_file, req.code.as_deref())
    {
        Ok(()) => {}
        Err(super::auth::SetupCodeError::Missing) => {
            return Err(code_error(
                StatusCode::FORBIDDEN,
                "the setup code is needed: brume printed it when it started \
                 (journalctl -u brume, or the console)",
            ))
        }
        Err(super::auth::SetupCodeError::Wrong) => {
            tracing::warn!(peer = %ip, "wrong first-run setup code");
            return Err(code_error(StatusCode::FORBIDDEN, "wrong setup code"));
        }
        Err(super::auth::SetupCodeError::NoCode) => {
            return Err(code_error(
                StatusCode::CONFLICT,
                "this run has no setup code: restart brume serve to get one, \
                 or start it with BRUME_ADMIN_PASSWORD set",
            ))
        }
        Err(super::auth::SetupCodeError::Limited(secs)) => {
            return Ok((
                StatusCode::TOO_MANY_REQUESTS,
                [(header::RETRY_AFTER, secs.to_string())],
                Json(json!({
                    "error": format!("too many wrong setup codes; retry in {secs} s"),
                    "field": "code",
                })),
            )
                .into_response())
        }
    }
    super::auth::check_new_password(&req.password).map_err(|m| ApiError {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        error: m,
        field: Some("password".into()),
    })?;
    let hash = tokio::task::spawn_blocking(move || super::auth::hash_password(&req.password))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e))?;
    let h = hash.clone();
    change_config(&state, move |c| {
        if c.admin.password_hash.is_some() {
            return Err(already());
        }
        c.admin.password_hash = Some(h);
        Ok(())
    })
    .await?;
    let token = state.auth.set_first_password(hash).ok_or_else(already)?;
    let _ = std::fs::remove_file(&code_file);
    tracing::info!("admin password set on first run");
    Ok(logged_in(token))
}

async fn login(
    State(state): State<Shared>,
    Extension(peer): Extension<Peer>,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    #[derive(serde::Deserialize)]
    struct Login {
        password: String,
    }
    let req: Login = parse_body(&body)?;
    let ip = peer.0.map(|p| p.ip()).unwrap_or(IpAddr::from([0, 0, 0, 0]));
    let st = state.clone();
    let result = tokio::task::spawn_blocking(move || st.auth.login(ip, &req.password))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    match result {
        Ok(token) => Ok(logged_in(token)),
        Err(super::auth::LoginError::NoPassword) => Err(ApiError::new(
            StatusCode::CONFLICT,
            "no admin password yet: set one first (POST /api/v1/setup)",
        )),
        Err(super::auth::LoginError::Wrong) => {
            tracing::warn!(peer = %ip, "failed admin login");
            Err(ApiError::new(StatusCode::UNAUTHORIZED, "wrong password"))
        }
        Err(super::auth::LoginError::Limited(secs)) => Ok((
            StatusCode::TOO_MANY_REQUESTS,
            [(header::RETRY_AFTER, secs.to_string())],
            Json(json!({ "error": format!("too many failed logins; retry in {secs} s") })),
        )
            .into_response()),
    }
}

async fn logout(State(state): State<Shared>, headers: HeaderMap) -> Response {
    if let Some(t) = token_from(&headers) {
        state.auth.logout(&t);
    }
    let expired = format!("{SESSION_COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0");
    (StatusCode::NO_CONTENT, [(header::SET_COOKIE, expired)]).into_response()
}

/// The codec parameter string of a track for MIME types (`avc1.64001f`, `mp4a.40.2`):
/// what a browser's MediaSource needs to know before the first byte.
fn codec_string(t: &brume_format::Track) -> Option<String> {
    use brume_format::{aac, h264, Codec};
    match t.codec {
        Codec::H264 => h264::parse_avcc(&t.init)
            .ok()
            .map(|c| h264::codec_string(&c)),
        Codec::Aac => aac::parse_asc(&t.init).ok().map(|a| aac::codec_string(&a)),
        _ => None,
    }
}

fn stream_json(state: &Shared, name: &str, config: &StreamConfig) -> Value {
    let (mut st, pid, restarts, last_exit, last_error) = {
        let inputs = state.inputs.lock().expect("inputs lock");
        match inputs.get(name) {
            Some(i) => (
                i.state,
                i.pid,
                i.restarts,
                i.last_exit.clone(),
                i.last_error.clone(),
            ),
            None => ("stopped", None, 0, None, None),
        }
    };
    let mut tracks = Vec::new();
    let (mut viewers, mut frames, mut writer_pid, mut epoch, mut dropped) = (0, 0, None, 0, 0);
    if let Ok(mut r) = brume_shm::Reader::observe(&state.env.ns, name) {
        let _ = r.refresh_tracks();
        let s = r.status();
        viewers = s.readers;
        frames = s.frames;
        epoch = s.epoch;
        dropped = s.dropped;
        if s.writer_alive {
            writer_pid = Some(s.writer_pid);
        }
        for t in r.tracks() {
            tracks.push(json!({
                "id": t.id, "codec": t.codec, "width": t.width, "height": t.height,
                "sample_rate": t.sample_rate, "channels": t.channels,
                "codec_string": codec_string(t),
            }));
        }
        if s.writer_alive && !s.ended && !tracks.is_empty() && st != "failed" {
            st = "live";
        }
    } else if st == "stopped" && !config.always_on {
        st = "idle";
    }
    if st != "live" && matches!(config.source, crate::config::Source::Rtmp { .. }) {
        st = "waiting"; // for a publisher (its buffer may be kept for one coming back)
    }
    let bitrate = state
        .rates
        .lock()
        .expect("rates lock")
        .get(name)
        .copied()
        .unwrap_or(0.0);
    json!({
        "name": name,
        "config": keys::shown(config),
        "status": {
            "state": st,
            "input_pid": pid.or(writer_pid),
            "restarts": restarts,
            "last_exit": last_exit,
            "last_error": last_error,
            "tracks": tracks,
            "viewers": viewers,
            "frames": frames,
            "epoch": epoch,
            "dropped_frames": dropped,
            "bitrate_kbps": (bitrate * 8.0 / 1000.0).round(),
            "recording": recording::status(state, name),
        }
    })
}

async fn list_streams(State(state): State<Shared>, _: Admin) -> Json<Value> {
    let config = state.config.lock().expect("config lock").clone();
    let list: Vec<Value> = config
        .streams
        .iter()
        .map(|(n, s)| stream_json(&state, n, s))
        .collect();
    Json(json!({ "streams": list }))
}

async fn get_stream(
    State(state): State<Shared>,
    _: Admin,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let s = &stream_config(&state, &name)?;
    Ok(Json(stream_json(&state, &name, s)))
}

/// Validates, saves atomically, then applies a configuration change. A change that
/// fails validation or saving leaves both the file and the running state untouched.
async fn change_config(
    state: &Shared,
    change: impl FnOnce(&mut Config) -> ApiResult<()>,
) -> ApiResult<Config> {
    let _guard = state.config_write.lock().await;
    let old = state.config.lock().expect("config lock").clone();
    let mut new = old.clone();
    change(&mut new)?;
    new.validate().map_err(ApiError::field)?;
    let path = state.env.config.clone();
    let to_save = new.clone();
    tokio::task::spawn_blocking(move || to_save.save(&path))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?
        .map_err(|e| {
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("saving failed, nothing changed: {e}"),
            )
        })?;
    *state.config.lock().expect("config lock") = new.clone();
    // Apply: stop recordings of removed streams (and those no longer always on), stop
    // inputs of removed or changed streams, then start what should run.
    for (name, s) in &old.streams {
        if new.streams.get(name).is_none_or(|n| s.record && !n.record) {
            recording::stop(state, name).await;
        }
    }
    for (name, s) in &old.streams {
        if new.streams.get(name) != Some(s) {
            supervisor::stop(state, name).await;
            state.inputs.lock().expect("inputs lock").remove(name);
        }
    }
    supervisor::start_configured(state);
    recording::start_configured(state);
    events::sync_triggers(state);
    state.gate.clear();
    gpio::apply(state);
    push::apply(state).await;
    for (name, s) in &new.streams {
        match old.streams.get(name) {
            None => events::emit(
                state,
                "stream.added",
                Some(name),
                json!({ "config": keys::shown(s) }),
            ),
            Some(o) if o != s => events::emit(
                state,
                "stream.changed",
                Some(name),
                json!({ "config": keys::shown(s) }),
            ),
            _ => {}
        }
    }
    for name in old.streams.keys() {
        if !new.streams.contains_key(name) {
            events::emit(state, "stream.removed", Some(name), json!({}));
        }
    }
    Ok(new)
}

async fn create_stream(
    State(state): State<Shared>,
    _: Admin,
    body: axum::body::Bytes,
) -> ApiResult<Response> {
    let mut v: Value = parse_body(&body)?;
    let name = v
        .as_object_mut()
        .and_then(|o| o.remove("name"))
        .and_then(|n| n.as_str().map(str::to_string))
        .ok_or_else(|| ApiError {
            status: StatusCode::UNPROCESSABLE_ENTITY,
            error: "a stream needs a name".into(),
            field: Some("name".into()),
        })?;
    crate::config::validate_stream_name(&name).map_err(|m| ApiError {
        status: StatusCode::UNPROCESSABLE_ENTITY,
        error: m,
        field: Some("name".into()),
    })?;
    let sc: StreamConfig = parse_body(v.to_string().as_bytes())?;
    let n = name.clone();
    let config = change_config(&state, move |c| {
        if c.streams.contains_key(&n) {
            return Err(ApiError {
                status: StatusCode::CONFLICT,
                error: format!("a stream named {n:?} exists"),
                field: Some("name".into()),
            });
        }
        let before = c.clone();
        c.streams.insert(n, sc);
        keys::keep_keys(&before, c, true).map(drop)
    })
    .await
    .map_err(|e| prefix_field(e, "streams", &name))?;
    tracing::info!(stream = %name, "stream created");
    // The one answer that shows the stream's publish key.
    Ok((
        StatusCode::CREATED,
        Json(keys::with_key(&state, &name, &config)),
    )
        .into_response())
}

/// The configuration as exported: everything but the admin password's hash and the
/// publish keys (redacted; an import of the export keeps them).
fn exported(config: &Config) -> Value {
    let mut v = serde_json::to_value(config).expect("config always serialises");
    if let Some(o) = v.as_object_mut() {
        o.remove("admin");
    }
    keys::redact_config(&mut v);
    v
}

async fn get_config(State(state): State<Shared>, _: Admin) -> Json<Value> {
    let config = state.config.lock().expect("config lock").clone();
    Json(exported(&config))
}

/// Replaces the whole configuration (an import). Validated as a whole; the admin
/// password stays what it is, whatever the body says about it, and so does the key of
/// a stream whose key is redacted (as exported).
async fn put_config(
    State(state): State<Shared>,
    _: Admin,
    body: axum::body::Bytes,
) -> ApiResult<Json<Value>> {
    let new: Config = parse_body(&body)?;
    let config = change_config(&state, move |c| {
        let before = c.clone();
        *c = new;
        c.admin = before.admin.clone();
        // The key that signs updates is set in the file only (see config::Update).
        c.update = before.update.clone();
        keys::keep_keys(&before, c, false).map(drop)
    })
    .await?;
    tracing::info!(streams = config.streams.len(), "configuration imported");
    Ok(Json(exported(&config)))
}

/// Config validation names fields from the root ("streams.x.source.width"); for a call
/// on one entry of `map` ("streams", "pushes"), report them relative to the request
/// body ("source.width").
fn prefix_field(mut e: ApiError, map: &str, name: &str) -> ApiError {
    if let Some(f) = &e.field {
        if let Some(rest) = f.strip_prefix(&format!("{map}.{name}.")) {
            e.field = Some(rest.to_string());
        }
    }
    e
}

async fn put_stream(
    State(state): State<Shared>,
    _: Admin,
    Path(name): Path<String>,
    body: axum::body::Bytes,
) -> ApiResult<Json<Value>> {
    let sc: StreamConfig = parse_body(&body)?;
    let n = name.clone();
    let mut made = Vec::new();
    let config = change_config(&state, |c| {
        if !c.streams.contains_key(&n) {
            return Err(ApiError::new(
                StatusCode::NOT_FOUND,
                format!("no stream named {n:?}"),
            ));
        }
        // The redacted key (or none) keeps the stream's; a stream that becomes an
        // RTMP stream without one gets a new key, shown in this answer.
        let before = c.clone();
        c.streams.insert(n, sc);
        made = keys::keep_keys(&before, c, true)?;
        Ok(())
    })
    .await
    .map_err(|e| prefix_field(e, "streams", &name))?;
    tracing::info!(stream = %name, "stream updated");
    if made.is_empty() {
        Ok(Json(stream_json(&state, &name, &config.streams[&name])))
    } else {
        Ok(Json(keys::with_key(&state, &name, &config)))
    }
}

async fn delete_stream(
    State(state): State<Shared>,
    _: Admin,
    Path(name): Path<String>,
) -> ApiResult<StatusCode> {
    let n = name.clone();
    change_config(&state, move |c| {
        c.streams
            .remove(&n)
            .map(|_| ())
            .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no stream named {n:?}")))
    })
    .await?;
    tracing::info!(stream = %name, "stream deleted");
    Ok(StatusCode::NO_CONTENT)
}

async fn restart_stream(
    State(state): State<Shared>,
    _: Admin,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    let s = &stream_config(&state, &name)?;
    if matches!(s.source, crate::config::Source::Rtmp { .. }) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "RTMP streams are started by their publisher",
        ));
    }
    supervisor::restart(&state, &name).await;
    Ok(Json(stream_json(&state, &name, s)))
}

/// The newest JPEG picture of a running stream, read straight from its buffer: the
/// UI's thumbnails. Unlike `/<name>.jpg` it never wakes an on-demand stream, does not
/// count as a viewer, and (like every controller answer) closes the connection, so the
/// browser never reuses a media worker's connection for its API calls.
async fn snapshot(
    State(state): State<Shared>,
    _: Admin,
    Path(name): Path<String>,
) -> ApiResult<Response> {
    stream_config(&state, &name)?;
    let Ok(mut reader) = brume_shm::Reader::observe(&state.env.ns, &name) else {
        return Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "the stream is not running",
        ));
    };
    let _ = reader.refresh_tracks();
    let Some(track) = reader
        .tracks()
        .iter()
        .find(|t| t.codec == brume_format::Codec::Jpeg)
        .map(|t| t.id)
    else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            format!("stream {name:?} has no JPEG track"),
        ));
    };
    // The last picture since the newest keyframe still in the ring (a few frames).
    let picture = reader.keyframes().iter().rev().find_map(|k| {
        reader
            .frames_between(track, k.dts, i64::MAX)
            .and_then(|f| f.into_iter().last())
    });
    match picture {
        Some(f) => Ok((
            [
                (header::CONTENT_TYPE, "image/jpeg"),
                (header::CACHE_CONTROL, "no-store"),
            ],
            f.data,
        )
            .into_response()),
        None => Err(ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "no picture yet",
        )),
    }
}

async fn connections(State(state): State<Shared>, _: Admin) -> Json<Value> {
    let list: Vec<Value> = brume_shm::ConnTable::open(&state.env.ns)
        .map(|t| t.list())
        .unwrap_or_default()
        .into_iter()
        .map(|c| {
            json!({
                "pid": c.pid, "peer": c.peer, "protocol": c.proto, "stream": c.stream,
                "bytes": c.bytes, "opened_ms": c.opened_ms, "worker_restarts": c.restarts,
            })
        })
        .collect();
    Json(json!({ "connections": list }))
}

async fn system_status(State(state): State<Shared>, _: Admin) -> Json<Value> {
    let dir = state
        .env
        .config
        .parent()
        .map(|p| p.to_path_buf())
        .unwrap_or_else(|| ".".into());
    let mut v = system::status(&dir, state.started.elapsed().as_secs());
    // The port publishers push to (None when RTMP is off or the address is unknown).
    let rtmp_port = std::env::var(crate::env::RTMP_LISTEN)
        .ok()
        .and_then(|a| a.parse::<SocketAddr>().ok())
        .map(|a| a.port());
    v["rtmp_port"] = json!(rtmp_port);
    v["update"] = update::status_json(&state);
    Json(v)
}

async fn devices(_: Admin) -> ApiResult<Json<Value>> {
    tokio::task::spawn_blocking(crate::devices)
        .await
        .map(Json)
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))
}

#[derive(serde::Deserialize)]
struct LogQuery {
    limit: Option<usize>,
}

async fn logs(_: Admin, Query(q): Query<LogQuery>) -> Json<Value> {
    Json(json!({ "lines": crate::logging::recent(q.limit.unwrap_or(200).min(1000)) }))
}

/// The configuration of stream `name`, or a 404 naming it.
fn stream_config(state: &Shared, name: &str) -> ApiResult<StreamConfig> {
    let config = state.config.lock().expect("config lock");
    config
        .streams
        .get(name)
        .cloned()
        .ok_or_else(|| ApiError::new(StatusCode::NOT_FOUND, format!("no stream named {name:?}")))
}

async fn start_recording(
    State(state): State<Shared>,
    _: Admin,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    stream_config(&state, &name)?;
    recording::start(&state, &name);
    Ok(Json(
        json!({ "recording": recording::status(&state, &name) }),
    ))
}

async fn stop_recording(
    State(state): State<Shared>,
    _: Admin,
    Path(name): Path<String>,
) -> ApiResult<Json<Value>> {
    stream_config(&state, &name)?;
    recording::stop(&state, &name).await;
    Ok(Json(
        json!({ "recording": recording::status(&state, &name) }),
    ))
}

async fn list_recordings(State(state): State<Shared>, _: Admin) -> ApiResult<Json<Value>> {
    let dir = recording::dir(&state);
    let list = tokio::task::spawn_blocking(move || recording::list(&dir))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    Ok(Json(json!({ "recordings": list })))
}

fn recording_path(state: &Shared, rel: &str) -> ApiResult<std::path::PathBuf> {
    recording::resolve(&recording::dir(state), rel).ok_or_else(|| {
        ApiError::new(
            StatusCode::BAD_REQUEST,
            "a recording path is relative to the recordings directory, without . or ..",
        )
    })
}

fn no_recording(rel: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, format!("no recording {rel:?}"))
}

/// A recording's bytes, whole or one range (`Range: bytes=...`), streamed from disk.
async fn download_recording(
    State(state): State<Shared>,
    _: Admin,
    Path(rel): Path<String>,
    headers: HeaderMap,
) -> ApiResult<Response> {
    use tokio::io::AsyncSeekExt;
    let path = recording_path(&state, &rel)?;
    let mut file = tokio::fs::File::open(&path)
        .await
        .map_err(|_| no_recording(&rel))?;
    let meta = file.metadata().await.map_err(|_| no_recording(&rel))?;
    if !meta.is_file() {
        return Err(no_recording(&rel));
    }
    let size = meta.len();
    let range = headers.get(header::RANGE).and_then(|v| v.to_str().ok());
    let (status, first, len, content_range) = match recording::parse_range(range, size) {
        Ok(None) => (StatusCode::OK, 0, size, None),
        Ok(Some((a, b))) => (
            StatusCode::PARTIAL_CONTENT,
            a,
            b - a + 1,
            Some(format!("bytes {a}-{b}/{size}")),
        ),
        Err(()) => {
            return Ok((
                StatusCode::RANGE_NOT_SATISFIABLE,
                [
                    (header::CONTENT_RANGE, format!("bytes */{size}")),
                    (header::ACCEPT_RANGES, "bytes".to_string()),
                ],
                Json(json!({ "error": format!("the recording has {size} bytes") })),
            )
                .into_response())
        }
    };
    file.seek(std::io::SeekFrom::Start(first))
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    let mut r = Response::new(axum::body::Body::new(FileBody {
        file,
        remaining: len,
        buf: Vec::new(),
    }));
    *r.status_mut() = status;
    let h = r.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("video/mp4"),
    );
    h.insert(
        header::ACCEPT_RANGES,
        header::HeaderValue::from_static("bytes"),
    );
    h.insert(header::CONTENT_LENGTH, header::HeaderValue::from(len));
    if let Some(cr) = content_range.and_then(|c| header::HeaderValue::from_str(&c).ok()) {
        h.insert(header::CONTENT_RANGE, cr);
    }
    Ok(r)
}

/// A response body read from a file in 64 KiB pieces, `remaining` bytes in all.
struct FileBody {
    file: tokio::fs::File,
    remaining: u64,
    buf: Vec<u8>,
}

impl hyper::body::Body for FileBody {
    type Data = hyper::body::Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<hyper::body::Frame<Self::Data>, Self::Error>>> {
        if self.remaining == 0 {
            return Poll::Ready(None);
        }
        let this = &mut *self;
        let want = this.remaining.min(64 * 1024) as usize;
        this.buf.resize(want, 0);
        let mut rb = ReadBuf::new(&mut this.buf[..want]);
        match Pin::new(&mut this.file).poll_read(cx, &mut rb) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Err(e)) => Poll::Ready(Some(Err(e))),
            Poll::Ready(Ok(())) => {
                let n = rb.filled().len();
                if n == 0 {
                    return Poll::Ready(Some(Err(std::io::ErrorKind::UnexpectedEof.into())));
                }
                this.remaining -= n as u64;
                let data = hyper::body::Bytes::copy_from_slice(rb.filled());
                Poll::Ready(Some(Ok(hyper::body::Frame::data(data))))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.remaining == 0
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.remaining)
    }
}

async fn delete_recording(
    State(state): State<Shared>,
    _: Admin,
    Path(rel): Path<String>,
) -> ApiResult<StatusCode> {
    let path = recording_path(&state, &rel)?;
    if recording::in_use(&state, &rel) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "the recording is being written; stop it first",
        ));
    }
    match tokio::fs::symlink_metadata(&path).await {
        Ok(m) if m.is_file() => {}
        _ => return Err(no_recording(&rel)),
    }
    tokio::fs::remove_file(&path)
        .await
        .map_err(|e| ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?;
    // The day's directory goes with its last file.
    if let Some(day) = path.parent() {
        let _ = tokio::fs::remove_dir(day).await;
    }
    tracing::info!(path = %rel, "recording deleted");
    Ok(StatusCode::NO_CONTENT)
}
