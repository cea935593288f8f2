//! What an RTSP client sends to the RTSP port, parsed the way the RTSP worker reads it:
//! requests (heads through the shared head parser, bodies by Content-Length) and
//! interleaved binary packets, one after another; each request's `Transport` header and
//! URI as SETUP and the routing read them. Fed whole and in two pieces (the split point
//! from the first byte), which must give the same messages.
#![no_main]

use brume_proto::rtsp::{parse, path_of, Incoming, Transport};
use libfuzzer_sys::fuzz_target;

fn messages(mut rest: &[u8]) -> Vec<Incoming> {
    let mut out = Vec::new();
    while let Ok(Some((msg, n))) = parse(rest) {
        assert!(n > 0 && n <= rest.len());
        rest = &rest[n..];
        out.push(msg);
    }
    out
}

fuzz_target!(|data: &[u8]| {
    let Some((&split, data)) = data.split_first() else {
        return;
    };
    let whole = messages(data);
    for m in &whole {
        if let Incoming::Request(r) = m {
            let _ = path_of(&r.uri);
            let _ = r.query();
            if let Some(t) = r.header("transport") {
                if let Some(t) = Transport::choose(t, (0, 1)) {
                    let _ = t.reply(Some((6000, 6001)), 1);
                }
            }
        }
    }
    // A reader that got the first bytes alone, then the rest, sees the same messages
    // (a message complete in the first piece is the same message in the whole).
    let cut = usize::from(split) * data.len() / 256;
    let mut buf = data[..cut].to_vec();
    let mut pieced = Vec::new();
    for more in [&data[cut..], &[][..]] {
        while let Ok(Some((msg, n))) = parse(&buf) {
            buf.drain(..n);
            pieced.push(msg);
        }
        buf.extend_from_slice(more);
    }
    assert!(pieced.len() <= whole.len());
    assert_eq!(&whole[..pieced.len()], &pieced[..]);
});
