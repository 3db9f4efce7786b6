//! Ingest settings.

use std::time::Duration;

use serde::Deserialize;
use serde_with::{As, DurationSeconds};

/// The RTMP application publishers must connect to: `rtmp://HOST:1935/live`.
pub const DEFAULT_APP: &str = "live";
/// Simultaneous RTMP connections, handshaking or publishing. Past it, new
/// connections are closed at once; each live publish costs a transcode, so a
/// box runs out of CPU long before this.
pub const DEFAULT_MAX_CONNECTIONS: usize = 256;
/// Time a new connection has to complete the RTMP handshake.
pub const DEFAULT_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection that sends nothing for this long is closed. Publishers send
/// media many times a second; clients that connect and wait get this long.
pub const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(30);
/// Largest RTMP message accepted. A 4K keyframe at 50 Mbit/s is about 3 MB;
/// the protocol's own ceiling is 16 MiB, which no publisher needs.
pub const DEFAULT_MAX_MESSAGE_SIZE: usize = 8 << 20;
/// Deepest nesting of AMF values (objects, arrays) accepted in a command or
/// metadata message. Publishers send flat objects (`connect`'s command object
/// is one level); the AMF decoder recurses per level, so unbounded depth would
/// let one connection overflow the stack and abort the process.
pub const DEFAULT_MAX_AMF_DEPTH: usize = 64;
/// The highest `max_amf_depth` allowed: deep enough for anything real, shallow
/// enough that decoding stays far inside a 2 MiB thread stack.
pub const MAX_AMF_DEPTH_LIMIT: usize = 256;
/// Media events buffered between a connection and its consumer. About 5 s of
/// 30 fps video with audio; when full the connection stops reading, which
/// pushes back on the publisher through TCP.
pub const DEFAULT_MEDIA_CHANNEL_CAPACITY: usize = 512;

/// Ingest settings; see the `DEFAULT_*` constants for what each one means.
/// Read from the `[ingest]` table of the config file as it is (durations in
/// whole seconds, as `*_secs`); what the file leaves out keeps its default.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct IngestConfig {
    /// RTMP application name publishers connect to.
    pub app: String,
    /// Simultaneous connections.
    pub max_connections: usize,
    /// Handshake deadline.
    #[serde(rename = "handshake_timeout_secs", with = "As::<DurationSeconds<u64>>")]
    pub handshake_timeout: Duration,
    /// Read inactivity deadline.
    #[serde(rename = "idle_timeout_secs", with = "As::<DurationSeconds<u64>>")]
    pub idle_timeout: Duration,
    /// Largest accepted RTMP message.
    pub max_message_size: usize,
    /// Capacity of each publish's media channel (not in the file).
    #[serde(skip)]
    pub media_channel_capacity: usize,
    /// Deepest accepted AMF nesting.
    pub max_amf_depth: usize,
}

impl Default for IngestConfig {
    fn default() -> Self {
        Self {
            app: DEFAULT_APP.into(),
            max_connections: DEFAULT_MAX_CONNECTIONS,
            handshake_timeout: DEFAULT_HANDSHAKE_TIMEOUT,
            idle_timeout: DEFAULT_IDLE_TIMEOUT,
            max_message_size: DEFAULT_MAX_MESSAGE_SIZE,
            media_channel_capacity: DEFAULT_MEDIA_CHANNEL_CAPACITY,
            max_amf_depth: DEFAULT_MAX_AMF_DEPTH,
        }
    }
}

/// Why ingest settings cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The application name is not one path segment.
    #[error("app {0:?} must be one path segment")]
    App(String),
    /// No connection would be accepted.
    #[error("max_connections must be at least 1")]
    NoConnections,
    /// Outside what RTMP and publishers need.
    #[error("max_message_size must be between 64 KiB and 16 MiB")]
    MessageSize,
    /// A zero timeout closes every connection.
    #[error("timeouts must be positive")]
    ZeroTimeout,
    /// Outside 1..=[`MAX_AMF_DEPTH_LIMIT`].
    #[error("max_amf_depth must be between 1 and {MAX_AMF_DEPTH_LIMIT}")]
    AmfDepth,
    /// Too small to smooth a publisher's bursts.
    #[error("media_channel_capacity must be at least 16")]
    MediaChannel,
}

impl IngestConfig {
    /// Rejects settings that cannot work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.app.is_empty() || self.app.contains('/') {
            return Err(ConfigError::App(self.app.clone()));
        }
        if self.max_connections == 0 {
            return Err(ConfigError::NoConnections);
        }
        if self.max_message_size < 64 << 10 || self.max_message_size > 0xFF_FFFF {
            return Err(ConfigError::MessageSize);
        }
        if self.handshake_timeout.is_zero() || self.idle_timeout.is_zero() {
            return Err(ConfigError::ZeroTimeout);
        }
        if self.max_amf_depth == 0 || self.max_amf_depth > MAX_AMF_DEPTH_LIMIT {
            return Err(ConfigError::AmfDepth);
        }
        if self.media_channel_capacity < 16 {
            return Err(ConfigError::MediaChannel);
        }
        Ok(())
    }
}
