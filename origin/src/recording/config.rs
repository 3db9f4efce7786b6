//! `[recording]`: whether broadcasts are recorded for replays, and how much
//! is kept.

use std::time::Duration;

use serde::Deserialize;
use serde_with::{As, DurationSeconds};

/// Replays older than this (since they ended) are deleted: 30 days.
pub const DEFAULT_MAX_AGE: Duration = Duration::from_secs(30 * 24 * 3600);
/// All recordings together; past it the oldest ended replays are deleted
/// first (never a live recording): 10 GiB.
pub const DEFAULT_MAX_BYTES: u64 = 10 << 30;
/// Segments waiting for the disk; past it a segment is dropped (counted and
/// logged), never waited for. About a minute of one broadcast's ladder, or
/// about 40 MB of 720p/480p.
pub const DEFAULT_QUEUE: usize = 128;
/// While the disk is full, how often the writer tries again.
pub const RETRY_AFTER_FULL: Duration = Duration::from_secs(2);
/// How often retention is enforced (also at every end).
pub const SWEEP_INTERVAL: Duration = Duration::from_secs(10);

/// `[recording]`; see the `DEFAULT_*` constants.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(default, deny_unknown_fields)]
pub struct RecordingConfig {
    /// Record broadcasts (each owner may still opt out); on by default.
    pub enabled: bool,
    /// Oldest replay kept, counted from its end.
    #[serde(rename = "max_age_secs", with = "As::<DurationSeconds<u64>>")]
    pub max_age: Duration,
    /// Disk quota of all recordings.
    pub max_bytes: u64,
    /// Segments waiting for the disk.
    pub queue: usize,
}

impl Default for RecordingConfig {
    fn default() -> Self {
        RecordingConfig {
            enabled: true,
            max_age: DEFAULT_MAX_AGE,
            max_bytes: DEFAULT_MAX_BYTES,
            queue: DEFAULT_QUEUE,
        }
    }
}

/// A `[recording]` value that cannot work.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ConfigError {
    /// `queue = 0`.
    #[error("queue must be at least 1")]
    NoQueue,
    /// `max_age_secs = 0`.
    #[error("max_age_secs must be at least 1")]
    NoAge,
}

impl RecordingConfig {
    /// Refuses values that cannot work.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.queue == 0 {
            return Err(ConfigError::NoQueue);
        }
        if self.max_age.is_zero() {
            return Err(ConfigError::NoAge);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_file_names_seconds_and_bytes_and_bad_values_are_refused() {
        let c: RecordingConfig =
            toml::from_str("max_age_secs = 3600\nmax_bytes = 1000\n").expect("parses");
        assert_eq!(c.max_age, Duration::from_secs(3600));
        assert_eq!(c.max_bytes, 1000);
        assert!(c.enabled);
        assert_eq!(c.queue, DEFAULT_QUEUE);
        assert!(toml::from_str::<RecordingConfig>("max_age = 3").is_err());
        let zero = RecordingConfig {
            queue: 0,
            ..Default::default()
        };
        assert_eq!(zero.validate(), Err(ConfigError::NoQueue));
    }
}
