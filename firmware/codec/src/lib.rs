//! Software encoders and synthetic signals.
