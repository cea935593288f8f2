//! `Authorization` headers as RTSP and HTTP viewers send them: parsed, then checked
//! against a stream's credentials the way the workers check them (Digest and Basic on
//! RTSP, Basic on HTTP). Nothing a client sends may panic, and no made-up answer may be
//! granted.
#![no_main]

use brume_proto::auth::{basic_matches, ha1, parse_authorization, Guard, Secret, Verdict};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = parse_authorization(text);
    let secret = Secret {
        user: "nvr".into(),
        ha1: ha1("nvr", "brume", "a password no input holds \u{1F512}"),
    };
    let mut guard = Guard::new("brume", [0x5a; 16]);
    for method in ["DESCRIBE", "PLAY"] {
        let v = guard.check(method, Some(text), &secret, 1_000_000);
        assert_ne!(v, Verdict::Granted, "{text:?}");
    }
    assert!(!basic_matches(Some(text), "brume", &secret));
});
