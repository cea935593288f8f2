//! Sans-IO protocol state machines: bytes in, bytes and events out. No sockets, no clock.
#![forbid(unsafe_code)]
