//! Inputs: the one writer of each stream's buffer. `brume input <stream>` runs the
//! stream's configured source (the synthetic camera, a V4L2/ALSA camera, an RTSP
//! server), started by the controller, which is its angel; RTMP publishers get an input
//! process forked by the listener for their connection.

pub mod camera;
mod process;
pub mod rtmp;
mod rtsp;
mod sink;
mod testsrc;

use crate::config::{Config, Source};
use crate::env::Env;
use std::sync::atomic::{AtomicBool, Ordering};

/// Set by SIGTERM/SIGINT: finish the stream cleanly.
pub static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_stop(_: libc::c_int) {
    STOP.store(true, Ordering::SeqCst);
}

pub fn install_stop_handler() {
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGTERM, on_stop as *const () as libc::sighandler_t);
        libc::signal(libc::SIGINT, on_stop as *const () as libc::sighandler_t);
    }
}

/// Tells the controller how this input is doing (shown in the API).
pub fn report(env: &Env, stream: &str, state: &str, error: &str) {
    let _ = crate::handoff::send_status(&env.controller_socket(), stream, state, error);
}

pub fn main(args: &[String]) -> Result<(), String> {
    crate::logging::init("input");
    let stream = args.first().ok_or("usage: brume input <stream>")?;
    let env = Env::from_env();
    let config = Config::load(&env.config).map_err(|e| e.to_string())?;
    let s = config
        .streams
        .get(stream)
        .ok_or_else(|| format!("no stream {stream:?} in {}", env.config.display()))?;
    install_stop_handler();
    let _span = tracing::info_span!("input", stream = %stream).entered();
    match &s.source {
        Source::Testsrc {
            width,
            height,
            fps,
            bitrate_kbps,
            audio,
            tone_hz,
            jpeg_fps,
        } => testsrc::run(
            &env,
            stream,
            testsrc::Params {
                width: *width,
                height: *height,
                fps: *fps,
                bitrate_bps: bitrate_kbps * 1000,
                audio: *audio,
                tone_hz: *tone_hz,
                jpeg_fps: *jpeg_fps,
                processes: s.processes.clone(),
            },
        ),
        Source::Camera {
            video,
            audio,
            bitrate_kbps,
            jpeg_fps,
        } => camera::run(
            &env,
            stream,
            camera::Params {
                video: video.clone(),
                audio: audio.clone(),
                bitrate_bps: bitrate_kbps * 1000,
                jpeg_fps: *jpeg_fps,
                processes: s.processes.clone(),
            },
        ),
        Source::Rtsp { url, transport } => rtsp::run(
            &env,
            stream,
            rtsp::Params {
                url: url.clone(),
                transport: transport.clone(),
                processes: s.processes.clone(),
            },
        ),
        Source::Rtmp { .. } => Err(format!(
            "stream {stream:?} is fed by RTMP publishers; it has no input to start"
        )),
    }
}
