//! Shared-memory stream buffer.
