//! Chat settings, with their defaults: room size, how often counts and
//! messages go out, how fast a room may talk.

use std::time::Duration;

use serde::Deserialize;
use serde_with::{As, DurationMilliSeconds, DurationSeconds};

/// Sessions (WebSocket connections) per room. Above 10,000 viewers with
/// room to spare; a connection over it is closed with code 1013 and a reason.
pub const DEFAULT_MAX_SESSIONS_PER_ROOM: usize = 20_000;
/// The viewer count goes out at most this often, and only when it changed:
/// a join or leave costs O(1), not a frame to every member.
pub const DEFAULT_COUNT_INTERVAL: Duration = Duration::from_secs(1);
/// Messages accepted within this interval go out together, as one frame.
pub const DEFAULT_BATCH_INTERVAL: Duration = Duration::from_millis(150);
/// Messages a room accepts per second, all senders on every origin together
/// (at most twice as many in any 2 s); past it senders are told the room is
/// busy.
pub const DEFAULT_ROOM_MESSAGES_PER_SECOND: u32 = 20;
/// Above this many sessions a room is in slow mode: each viewer may send
/// one message per [`DEFAULT_SLOW_MODE_INTERVAL`] (the streamer is exempt).
pub const DEFAULT_SLOW_MODE_ABOVE: usize = 500;
/// In slow mode, the least time between two messages of one viewer.
pub const DEFAULT_SLOW_MODE_INTERVAL: Duration = Duration::from_secs(5);
/// The peak viewer count is written to the store at most this often (and
/// when the room empties).
pub const DEFAULT_PEAK_SAVE_INTERVAL: Duration = Duration::from_secs(5);
/// Frames a room keeps for members that are behind; one that falls further
/// behind is closed (code 4001) instead of slowing the room or growing.
pub const DEFAULT_BACKLOG_FRAMES: usize = 64;

/// Longest chat message, in characters.
pub const MAX_MESSAGE_CHARS: usize = 500;
/// Sustained messages per second per connection, outside slow mode.
pub const MESSAGES_PER_SECOND: f64 = 1.0;
/// Messages a connection may send in a burst before the rate applies.
pub const MESSAGE_BURST: f64 = 5.0;
/// Longest nickname, in characters.
pub const MAX_NICK_CHARS: usize = 24;
/// Messages sent to a client when it joins.
pub const HISTORY_ON_JOIN: usize = 50;
/// Largest WebSocket frame or message accepted from a client.
pub const MAX_FRAME_BYTES: usize = 8 << 10;
/// Errors a connection may cause before it is closed.
pub const MAX_VIOLATIONS: u32 = 20;
/// A connection's WebSocket read buffer. Clients send small frames; the
/// library's default (128 KiB) would cost 4 times the whole budget of an
/// idle session.
pub const READ_BUFFER_BYTES: usize = 4 << 10;
/// Bytes a connection may have queued for a client that does not read.
pub const MAX_WRITE_BUFFER_BYTES: usize = 256 << 10;

/// Chat settings; see the `DEFAULT_*` constants. Read from the `[chat]`
/// table of the config file as it is (`*_ms` in milliseconds, `*_secs` in
/// whole seconds); what the file leaves out keeps its default.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ChatConfig {
    /// Sessions per room.
    pub max_sessions_per_room: usize,
    /// Least time between two viewer-count frames.
    #[serde(rename = "count_interval_ms", with = "As::<DurationMilliSeconds<u64>>")]
    pub count_interval: Duration,
    /// Messages are sent out together this often.
    #[serde(rename = "batch_interval_ms", with = "As::<DurationMilliSeconds<u64>>")]
    pub batch_interval: Duration,
    /// Messages per second a room accepts.
    pub room_messages_per_second: u32,
    /// Sessions above which a room is in slow mode.
    pub slow_mode_above: usize,
    /// Least time between two messages of one viewer in slow mode.
    #[serde(
        rename = "slow_mode_interval_secs",
        with = "As::<DurationSeconds<u64>>"
    )]
    pub slow_mode_interval: Duration,
    /// Least time between two writes of the peak viewer count.
    #[serde(
        rename = "peak_save_interval_secs",
        with = "As::<DurationSeconds<u64>>"
    )]
    pub peak_save_interval: Duration,
    /// Frames kept for members that are behind.
    pub backlog_frames: usize,
}

impl Default for ChatConfig {
    fn default() -> Self {
        Self {
            max_sessions_per_room: DEFAULT_MAX_SESSIONS_PER_ROOM,
            count_interval: DEFAULT_COUNT_INTERVAL,
            batch_interval: DEFAULT_BATCH_INTERVAL,
            room_messages_per_second: DEFAULT_ROOM_MESSAGES_PER_SECOND,
            slow_mode_above: DEFAULT_SLOW_MODE_ABOVE,
            slow_mode_interval: DEFAULT_SLOW_MODE_INTERVAL,
            peak_save_interval: DEFAULT_PEAK_SAVE_INTERVAL,
            backlog_frames: DEFAULT_BACKLOG_FRAMES,
        }
    }
}

/// Why chat settings cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A room must take at least one session.
    #[error("max_sessions_per_room must be at least 1")]
    NoSessions,
    /// Outside 10 ms..=10 s.
    #[error("batch_interval_ms must be between 10 and 10000")]
    BatchInterval,
    /// Shorter than the batch interval, or over a minute.
    #[error("count_interval_ms must be at least batch_interval_ms and at most 60000")]
    CountInterval,
    /// A room that accepts nothing.
    #[error("room_messages_per_second must be at least 1")]
    RoomRate,
    /// Zero.
    #[error("slow_mode_interval_secs and peak_save_interval_secs must be at least 1")]
    Intervals,
    /// Too few to ride out a member's brief stall.
    #[error("backlog_frames must be at least 8")]
    Backlog,
}

/// The window a room's rate is counted over.
pub const ROOM_RATE_WINDOW: Duration = Duration::from_secs(2);

impl ChatConfig {
    /// The room's rate as the store counts it, over every origin.
    pub fn room_rate(&self) -> crate::store::RoomRate {
        crate::store::RoomRate {
            max: self.room_messages_per_second * ROOM_RATE_WINDOW.as_secs() as u32,
            per: ROOM_RATE_WINDOW,
        }
    }

    /// Rejects settings that cannot work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.max_sessions_per_room == 0 {
            return Err(ConfigError::NoSessions);
        }
        if !(Duration::from_millis(10)..=Duration::from_secs(10)).contains(&self.batch_interval) {
            return Err(ConfigError::BatchInterval);
        }
        if self.count_interval < self.batch_interval
            || self.count_interval > Duration::from_secs(60)
        {
            return Err(ConfigError::CountInterval);
        }
        if self.room_messages_per_second == 0 {
            return Err(ConfigError::RoomRate);
        }
        if self.slow_mode_interval.is_zero() || self.peak_save_interval.is_zero() {
            return Err(ConfigError::Intervals);
        }
        if self.backlog_frames < 8 {
            return Err(ConfigError::Backlog);
        }
        Ok(())
    }
}
