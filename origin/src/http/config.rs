//! HTTP limits and timeouts, with their defaults.

use std::time::Duration;

use serde::Deserialize;
use serde_with::{As, DurationSeconds};

/// Simultaneous HTTP connections, WebSockets included. Each costs a socket and
/// about 20 KiB; behind an edge a few hundred suffice, and 10,000 viewers
/// watching and chatting directly need about two each.
pub const DEFAULT_MAX_CONNECTIONS: usize = 50_000;
/// Time from when a connection waits for a request until that request's head
/// (request line and headers) has arrived: a client trickling a head in is
/// closed after it. Held requests and WebSockets are past their head and
/// never cut by it.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection with no request being answered that moves no bytes for this
/// long is closed. Players ask every part (167 ms); edges reuse theirs for
/// less (see `deploy/nginx-edge.conf`). At most the header timeout, whose
/// clock also runs while a connection waits.
pub const DEFAULT_KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest request head (request line and headers) in bytes; larger gets 431.
/// 16 KiB is what common servers and CDNs accept.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 16 << 10;
/// HTTP settings; see the `DEFAULT_*` constants for what each one means.
/// Read from the `[http]` table of the config file as it is (durations in
/// whole seconds, as `*_secs`); what the file leaves out keeps its default.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HttpConfig {
    /// Simultaneous connections.
    pub max_connections: usize,
    /// Deadline for a request head.
    #[serde(
        rename = "header_read_timeout_secs",
        with = "As::<DurationSeconds<u64>>"
    )]
    pub header_read_timeout: Duration,
    /// Silence after which an idle connection is closed.
    #[serde(
        rename = "keep_alive_timeout_secs",
        with = "As::<DurationSeconds<u64>>"
    )]
    pub keep_alive_timeout: Duration,
    /// Largest request head.
    pub max_header_bytes: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            keep_alive_timeout: DEFAULT_KEEP_ALIVE_TIMEOUT,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
        }
    }
}

/// Why HTTP settings cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// No connection would be accepted.
    #[error("max_connections must be at least 1")]
    NoConnections,
    /// Under 1 s.
    #[error("header_read_timeout must be at least 1 s")]
    HeaderTimeout,
    /// Under 1 s, or longer than the header timeout.
    #[error("keep_alive_timeout must be at least 1 s and at most header_read_timeout")]
    KeepAlive,
    /// hyper's read buffer cannot be smaller than 8 KiB.
    #[error("max_header_bytes must be between 8 KiB and 1 MiB")]
    HeaderBytes,
}

impl HttpConfig {
    /// Rejects settings that cannot work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_connections == 0 {
            return Err(ConfigError::NoConnections);
        }
        if self.header_read_timeout < Duration::from_secs(1) {
            return Err(ConfigError::HeaderTimeout);
        }
        if self.keep_alive_timeout < Duration::from_secs(1)
            || self.keep_alive_timeout > self.header_read_timeout
        {
            return Err(ConfigError::KeepAlive);
        }
        if !(8 << 10..=1 << 20).contains(&self.max_header_bytes) {
            return Err(ConfigError::HeaderBytes);
        }
        Ok(())
    }
}
