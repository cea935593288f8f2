//! The crate's error type.

/// Errors from the RTMP session and the FLV tag parsers.
///
/// Every variant says where the problem was: `offset` fields in session errors are
/// byte offsets into the whole stream received from the peer (handshake included);
/// `offset` fields in [`Error::Flv`] are byte offsets into the tag body.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum Error {
    /// The RTMP handshake (C0/C1/C2) was malformed.
    #[error("RTMP handshake: {reason} (at stream byte {offset})")]
    Handshake {
        /// Stream byte offset of the faulty field.
        offset: u64,
        /// What was wrong.
        reason: String,
    },
    /// A chunk header or the chunk stream state was invalid.
    #[error("RTMP chunk stream {csid}: {reason} (chunk at stream byte {offset})")]
    Chunk {
        /// Chunk stream id.
        csid: u32,
        /// Stream byte offset of the chunk's basic header.
        offset: u64,
        /// What was wrong.
        reason: String,
    },
    /// A message header announced more bytes than [`crate::RtmpLimits::max_message_size`].
    #[error(
        "RTMP chunk stream {csid}: message of {size} bytes exceeds the limit of {limit} bytes (chunk at stream byte {offset})"
    )]
    MessageTooLarge {
        /// Chunk stream id.
        csid: u32,
        /// Stream byte offset of the chunk's basic header.
        offset: u64,
        /// Announced message length.
        size: usize,
        /// The configured limit.
        limit: usize,
    },
    /// A resource limit of the session was exceeded (chunk size, chunk streams,
    /// buffered bytes).
    #[error("RTMP limit exceeded: {what} is {value}, limit {limit} (at stream byte {offset})")]
    Limit {
        /// Which limit.
        what: &'static str,
        /// The value the peer asked for or caused.
        value: u64,
        /// The limit.
        limit: u64,
        /// Stream byte offset of the message or chunk that exceeded it.
        offset: u64,
    },
    /// A complete RTMP message (protocol control, command, media) was malformed or
    /// not allowed in the session's current state.
    #[error(
        "RTMP {message} message on chunk stream {csid}: {reason} (message at stream byte {offset})"
    )]
    Message {
        /// Message kind, e.g. `"SetChunkSize"`, `"command 'publish'"`, `"video"`.
        message: String,
        /// Chunk stream id the message arrived on.
        csid: u32,
        /// Stream byte offset of the first chunk of the message.
        offset: u64,
        /// What was wrong.
        reason: String,
    },
    /// An FLV tag body was malformed.
    #[error("FLV {what}: {reason} (at tag body byte {offset})")]
    Flv {
        /// Which structure, e.g. `"video tag"`.
        what: &'static str,
        /// Byte offset within the tag body.
        offset: usize,
        /// What was wrong.
        reason: String,
    },
    /// Valid input that uses a feature Brume does not handle (e.g. a non-AVC video
    /// codec or Enhanced RTMP).
    #[error("unsupported {what}: {reason}")]
    Unsupported {
        /// Which feature area.
        what: &'static str,
        /// What exactly.
        reason: String,
    },
    /// `accept` / `reject` were called with no publish request pending.
    #[error("{call}: {reason}")]
    State {
        /// The API call.
        call: &'static str,
        /// Why it is not allowed now.
        reason: String,
    },
    /// The session failed earlier, or the publish was rejected; it takes no more input.
    #[error("RTMP session closed: {reason}")]
    Closed {
        /// Why the session is closed.
        reason: String,
    },
}

/// Result alias for this crate.
pub type Result<T> = std::result::Result<T, Error>;
