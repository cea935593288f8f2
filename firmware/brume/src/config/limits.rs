//! Caps and deadlines that keep one client (or a few) from holding the board's
//! descriptors, processes and memory. The defaults suit a 1 GiB board.

use super::{field_err, FieldError};
use serde::{Deserialize, Serialize};
use std::time::Duration;

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Connections the listener holds at once: request heads being read, viewer
    /// workers and RTMP inputs. Workers and RTMP inputs together get at most 7/8 of
    /// it, so request heads (the API's way in) always find room.
    pub max_connections: u32,
    /// The same, from one client address.
    pub max_connections_per_address: u32,
    /// RTMP connections that have not been accepted as a publisher yet (a quarter of
    /// it per address).
    pub max_unauthenticated_rtmp: u32,
    /// API and UI requests the controller serves at once (a quarter of it per address).
    pub max_api_connections: u32,
    /// A request head must be complete this long after the connection was accepted.
    pub head_timeout_s: u32,
    /// A keep-alive connection's next request head must be complete this long after
    /// the previous response.
    pub keepalive_idle_s: u32,
    /// An API request's body must be complete this long after its head.
    pub body_timeout_s: u32,
    /// An RTMP connection must be publishing (handshake, connect, publish, key checked)
    /// this long after it was accepted.
    pub rtmp_publish_timeout_s: u32,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            max_connections: 512,
            max_connections_per_address: 64,
            max_unauthenticated_rtmp: 16,
            max_api_connections: 64,
            head_timeout_s: 10,
            keepalive_idle_s: 10,
            body_timeout_s: 10,
            rtmp_publish_timeout_s: 10,
        }
    }
}

fn secs(s: u32) -> Duration {
    Duration::from_secs(u64::from(s))
}

static CURRENT: std::sync::OnceLock<Limits> = std::sync::OnceLock::new();

impl Limits {
    /// The limits this process was started with (the listener reads them from the
    /// configuration at start; its forked workers and RTMP inputs inherit them).
    pub fn current() -> &'static Limits {
        CURRENT.get_or_init(Limits::default)
    }

    /// Sets what [`Limits::current`] returns (once, at start).
    pub fn set_current(limits: Limits) {
        let _ = CURRENT.set(limits);
    }

    pub fn is_default(&self) -> bool {
        *self == Limits::default()
    }

    pub fn head_timeout(&self) -> Duration {
        secs(self.head_timeout_s)
    }
    pub fn keepalive_idle(&self) -> Duration {
        secs(self.keepalive_idle_s)
    }
    pub fn body_timeout(&self) -> Duration {
        secs(self.body_timeout_s)
    }
    pub fn rtmp_publish_timeout(&self) -> Duration {
        secs(self.rtmp_publish_timeout_s)
    }

    /// Workers and RTMP inputs at once: the rest of `max_connections` is kept for
    /// request heads.
    pub fn max_children(&self) -> usize {
        (self.max_connections - self.max_connections / 8) as usize
    }

    /// RTMP connections not publishing yet from one address.
    pub fn max_unauthenticated_rtmp_per_address(&self) -> usize {
        (self.max_unauthenticated_rtmp / 4).max(1) as usize
    }

    /// API connections from one address at once.
    pub fn max_api_per_address(&self) -> usize {
        (self.max_api_connections / 4).max(1) as usize
    }

    pub(super) fn validate(&self) -> Result<(), FieldError> {
        let range = |name: &str, v: u32, lo: u32, hi: u32| {
            if (lo..=hi).contains(&v) {
                Ok(())
            } else {
                Err(field_err(
                    format!("limits.{name}"),
                    format!("must be {lo}..={hi}"),
                ))
            }
        };
        range("max_connections", self.max_connections, 16, 65_536)?;
        range(
            "max_connections_per_address",
            self.max_connections_per_address,
            1,
            self.max_connections,
        )?;
        range(
            "max_unauthenticated_rtmp",
            self.max_unauthenticated_rtmp,
            1,
            self.max_connections,
        )?;
        range("max_api_connections", self.max_api_connections, 4, 65_536)?;
        range("head_timeout_s", self.head_timeout_s, 1, 300)?;
        range("keepalive_idle_s", self.keepalive_idle_s, 1, 300)?;
        range("body_timeout_s", self.body_timeout_s, 1, 300)?;
        range(
            "rtmp_publish_timeout_s",
            self.rtmp_publish_timeout_s,
            1,
            300,
        )?;
        Ok(())
    }
}
