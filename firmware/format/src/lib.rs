//! Brume's internal media format and pure container code.
//!
//! Nothing in this crate touches a socket, a file, a clock or a thread: muxers take
//! frames and return bytes, parsers take bytes and return values or errors. That keeps
//! every process (inputs, outputs, recorder) able to share it, and keeps it testable
//! against fixtures.
#![forbid(unsafe_code)]

pub mod aac;
mod bits;
pub mod clock;
pub mod fmp4;
pub mod h264;
pub mod hls;
pub mod media;
pub mod ts;
pub mod ts_demux;

pub use media::{Codec, Frame, Track, TIMESCALE};

/// Errors from parsing media bitstreams and containers.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Error {
    /// The input ended before a complete structure could be read.
    #[error("{what}: truncated at byte {offset}")]
    Truncated { what: &'static str, offset: usize },
    /// The input is not valid for the structure being parsed.
    #[error("{what}: invalid at byte {offset}: {reason}")]
    Invalid {
        what: &'static str,
        offset: usize,
        reason: String,
    },
    /// The input is valid but uses a feature Brume does not handle.
    #[error("{what}: unsupported: {reason}")]
    Unsupported { what: &'static str, reason: String },
}

pub type Result<T> = std::result::Result<T, Error>;
