//! Software encoders and synthetic signals.
//!
//! * [`I420`]: a planar YUV 4:2:0 picture (the input of [`H264Encoder`]).
//! * [`TestPattern`]: a synthetic camera picture (colour bars, a moving box and
//!   burned-in text), cheap enough to render at 1280x720 in real time.
//! * [`H264Encoder`]: OpenH264 (built from the bundled source), low latency, producing
//!   access units in Brume's internal layout (AVCC, 4-byte lengths, no parameter sets)
//!   and the `avcC` record for `Track::init`.
//! * [`AacEncoder`]: Fraunhofer FDK AAC (bundled source), AAC-LC, raw access units and
//!   the AudioSpecificConfig for `Track::init`.
//! * [`Tone`]: a sine generator with continuous phase.
//! * [`g711`]: G.711 A-law and µ-law to linear PCM (IP cameras' audio, encoded to AAC).
#![warn(missing_docs)]

mod aac;
mod convert;
mod font;
pub mod g711;
mod h264;
mod jpeg;
mod pattern;
mod picture;
mod tone;

pub use aac::AacEncoder;
pub use h264::{decode_keyframe, EncodedVideo, H264Encoder};
pub use jpeg::JpegEncoder;
pub use pattern::TestPattern;
pub use picture::I420;
pub use tone::Tone;

/// Errors from the encoders.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A parameter or an input picture is out of range or inconsistent.
    #[error("invalid argument: {0}")]
    InvalidArgument(String),
    /// OpenH264 reported an error or produced output that cannot be used.
    #[error("H.264 encoder: {0}")]
    H264(String),
    /// FDK AAC reported an error or produced output that cannot be used.
    #[error("AAC encoder: {0}")]
    Aac(String),
    /// Building a codec configuration record failed.
    #[error(transparent)]
    Format(#[from] brume_format::Error),
}

/// Result type of this crate.
pub type Result<T> = std::result::Result<T, Error>;

#[cfg(test)]
mod tests {
    /// The encoders can be moved to another thread.
    #[test]
    fn encoders_are_send() {
        fn send<T: Send>() {}
        send::<crate::H264Encoder>();
        send::<crate::AacEncoder>();
        send::<crate::TestPattern>();
        send::<crate::Tone>();
    }
}
