//! Sans-IO protocol state machines: bytes in, bytes and events out. No sockets, no clock.
//!
//! * [`PublishSession`]: the server side of an RTMP publishing connection, producing
//!   [`brume_format::Track`]s and [`brume_format::Frame`]s.
//! * [`PushClient`]: the client side of an RTMP publishing connection, sending
//!   [`brume_format::Track`]s and [`brume_format::Frame`]s to a server.
//! * [`flv`]: parsing of FLV video/audio tag bodies (the RTMP media payloads).
//! * [`http`]: parsing of HTTP/1.x and RTSP/1.0 request heads (what viewers send), one
//!   parser for both.
//! * [`rtsp`], [`sdp`], [`rtp`]: an RTSP server's requests and responses, session
//!   descriptions, RTP packetization (H.264, AAC) and RTCP sender reports.
//! * [`auth`]: RTSP Digest and Basic, HTTP Basic: challenges and the check of a
//!   viewer's credentials against the stored HA1.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod amf0;
pub mod auth;
mod chunk;
mod client;
mod error;
pub mod flv;
pub mod http;
pub mod rtp;
pub mod rtsp;
pub mod sdp;
mod session;

pub use chunk::RtmpLimits;
pub use client::{PushClient, PushEvent};
pub use error::{Error, Result};
pub use session::{PublishSession, RtmpEvent};

#[cfg(test)]
mod tests;
