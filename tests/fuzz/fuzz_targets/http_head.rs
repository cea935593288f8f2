//! Request heads as viewers send them to the media port (HTTP/1.x) and to the RTSP port
//! (RTSP/1.0): one parser for both, fed the way a worker reads: each complete head is
//! consumed, pipelined ones follow.
#![no_main]

use brume_proto::http::{parse_head, Protocol, MAX_HEAD};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    for protocol in [Protocol::Http, Protocol::Rtsp] {
        let mut rest = data;
        while let Ok(Some(head)) = parse_head(rest, protocol) {
            assert!(head.len > 0 && head.len <= rest.len().min(MAX_HEAD));
            // A prefix of a complete head is never complete with another length.
            if let Ok(Some(h)) = parse_head(&rest[..head.len], protocol) {
                assert_eq!(h, head);
            }
            rest = &rest[head.len..];
        }
    }
});
