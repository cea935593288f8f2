//! HTTP/1.1 request heads as viewers send them to the media port, parsed the way a
//! worker reads them: each complete head is consumed, pipelined ones follow.
#![no_main]

use brume_proto::http::parse_request_head;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut rest = data;
    while let Ok(Some(head)) = parse_request_head(rest) {
        assert!(head.len > 0 && head.len <= rest.len());
        // A prefix of a complete head is never complete with another length.
        if let Ok(Some(h)) = parse_request_head(&rest[..head.len]) {
            assert_eq!(h, head);
        }
        rest = &rest[head.len..];
    }
});
