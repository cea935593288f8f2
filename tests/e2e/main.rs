//! End-to-end tests of the `brume` binary: real `brume serve` trees on free ports,
//! real clients (ffmpeg, ffprobe, raw sockets), real crashes (SIGKILL).
//!
//! Run with `cargo test -p brume --test e2e -j 2 -- --test-threads=2`.

mod harness;
mod http;
mod media;

mod api;
mod camera;
mod crashes;
mod crosssite;
mod hostile;
mod isolation;
mod lifecycle;
mod liveupdate;
mod outputs;
mod publishers;
mod push;
mod recording;
mod rtmp;
mod rtsp;
mod rtsp_pull;
mod shutdown;
mod slowclients;
mod systemd;
mod triggers;
mod ui_api;
mod update_api;
