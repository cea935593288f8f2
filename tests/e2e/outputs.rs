//! What a viewer of the embedded demo stream gets.

use crate::harness::Server;
use crate::media::{assert_decodes_clean, assert_h264_aac};
use std::time::Duration;

/// The default config (created by brume on first run): the demo stream's HLS, MP4 and
/// TS outputs decode without a single error, as H.264 1280x720 + AAC.
#[test]
fn demo_outputs_decode() {
    let server = Server::start(None);
    let config = server.config_on_disk();
    assert!(
        config["streams"]["demo"].is_object(),
        "brume did not create the default config with the demo stream: {config}"
    );
    server.login();
    server.wait_live("demo", Duration::from_secs(20));
    let base = format!("http://127.0.0.1:{}", server.http_port);
    let urls = [
        format!("{base}/hls/demo/index.m3u8"),
        format!("{base}/demo.mp4"),
        format!("{base}/demo.ts"),
    ];
    std::thread::scope(|s| {
        for u in &urls {
            s.spawn(move || assert_decodes_clean(u, Some(5)));
        }
    });
    for u in &urls {
        assert_h264_aac(u, 1280, 720, None);
    }
}
