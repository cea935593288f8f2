//! The RTMP client side (`PushClient`): what a remote RTMP server sends back to a
//! push (handshake, chunk stream, AMF0 results and status). Once the server accepts
//! the publish, tracks and a frame are sent, as `brume push` does.
#![no_main]

use brume_format::{aac, Codec, Frame, Track};
use brume_proto::PushClient;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut c = PushClient::new("rtmp://127.0.0.1:1935/live/key").expect("a valid URL");
    let _ = c.take_output();
    let step = 1 + data.len() % 89;
    let mut sent = false;
    for piece in data.chunks(step) {
        match c.receive(piece) {
            Ok(_) => {}
            Err(_) => return,
        }
        let _ = c.take_output();
        if c.is_publishing() && !sent {
            sent = true;
            let asc = aac::build_asc(2, 48000, 2).expect("a valid ASC");
            let tracks = [Track::audio(2, Codec::Aac, asc, 48000, 2)];
            let _ = c.send_tracks(&tracks);
            let _ = c.send_frame(&Frame {
                track: 2,
                dts: 0,
                cts: 0,
                key: true,
                data: vec![0x21; 32],
            });
            let _ = c.take_output();
        }
    }
});
