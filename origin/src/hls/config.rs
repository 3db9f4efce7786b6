//! LL-HLS settings, their defaults and the rules they must keep; the
//! packager, window and playlist settings derived from them.

use std::time::Duration;

use serde::Deserialize;
use serde_with::{As, DurationMilliSeconds, DurationSeconds};

use super::packager::PackagerSettings;
use super::window::WindowLimits;
use super::window::view::PlaylistSettings;

/// Default PART-TARGET: 5 frames at 30 or 29.97 fps, 4 at 25 or 24, 10 at
/// 60. Every part but a segment's last then lasts 85% of it or more, as RFC
/// 8216bis 4.4.4.9 requires; 200 ms did not at 29.97 and 23.976 fps (5 and
/// 4 frames, 83%).
/// Players hold back PART-HOLD-BACK = 3 parts, so about 0.5 s, plus their
/// own start-up (see the README's "Playing it in other players").
pub const DEFAULT_PART_TARGET: Duration = Duration::from_millis(167);
/// Complete segments kept in each window (20 s at 1-s segments): long enough
/// that delta updates (CAN-SKIP-UNTIL = 6 x TD) have something to skip.
pub const DEFAULT_SEGMENTS_KEPT: usize = 20;
/// Segment bytes kept per rendition; the oldest segments go first past it.
pub const DEFAULT_MAX_WINDOW_BYTES: usize = 64 << 20;
/// How long an ended broadcast's window stays for late viewers.
pub const DEFAULT_LINGER_AFTER_END: Duration = Duration::from_secs(300);
/// How long a broadcast stays live (without ENDLIST) after its publisher
/// drops, waiting for a reconnect. OBS retries after 2 s by default.
pub const DEFAULT_RECONNECT_GRACE: Duration = Duration::from_secs(15);
/// Held (blocking) requests allowed per client address. Behind a CDN, edges
/// collapse identical requests, so an edge holds a few per rendition.
pub const DEFAULT_MAX_HELD_PER_CLIENT: usize = 256;
/// Held requests allowed in all.
pub const DEFAULT_MAX_HELD_TOTAL: usize = 100_000;
/// How far back a recorded broadcast's live playlists reach for rewinding:
/// off by default, so that a player's first playlist stays small (30
/// minutes of 1-s segments add 1,800 lines, about 165 kB).
pub const DEFAULT_DVR_WINDOW: Duration = Duration::ZERO;
/// The longest rewind window accepted.
pub const MAX_DVR_WINDOW: Duration = Duration::from_secs(6 * 3600);

/// LL-HLS settings. Read from the `[hls]` table of the config file as it is
/// (`*_ms` in milliseconds, `*_secs` in whole seconds); what the file leaves
/// out keeps its default.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct HlsConfig {
    /// PART-TARGET: the longest part.
    #[serde(rename = "part_target_ms", with = "As::<DurationMilliSeconds<u64>>")]
    pub part_target: Duration,
    /// PART-HOLD-BACK; at least 3 x PART-TARGET. `None`: exactly 3 x
    /// PART-TARGET (see [`HlsConfig::part_hold_back`]).
    #[serde(
        rename = "part_hold_back_ms",
        with = "As::<Option<DurationMilliSeconds<u64>>>"
    )]
    pub part_hold_back: Option<Duration>,
    /// Segment duration: the transcoder's keyframe interval (not in the file).
    #[serde(skip)]
    pub segment_target: Duration,
    /// Segments kept.
    pub segments_kept: usize,
    /// Bytes kept per rendition.
    pub max_window_bytes: usize,
    /// Window lifetime after the end.
    #[serde(rename = "linger_after_end_secs", with = "As::<DurationSeconds<u64>>")]
    pub linger_after_end: Duration,
    /// Wait for a publisher to come back before ending.
    #[serde(rename = "reconnect_grace_secs", with = "As::<DurationSeconds<u64>>")]
    pub reconnect_grace: Duration,
    /// Held requests per client address.
    pub max_held_per_client: usize,
    /// Held requests in all.
    pub max_held_total: usize,
    /// Rewind window of recorded broadcasts' live playlists (zero: off).
    #[serde(rename = "dvr_window_secs", with = "As::<DurationSeconds<u64>>")]
    pub dvr_window: Duration,
}

impl Default for HlsConfig {
    fn default() -> Self {
        Self {
            part_target: DEFAULT_PART_TARGET,
            part_hold_back: None,
            segment_target: transcoder::config::DEFAULT_KEYFRAME_INTERVAL,
            segments_kept: DEFAULT_SEGMENTS_KEPT,
            max_window_bytes: DEFAULT_MAX_WINDOW_BYTES,
            linger_after_end: DEFAULT_LINGER_AFTER_END,
            reconnect_grace: DEFAULT_RECONNECT_GRACE,
            max_held_per_client: DEFAULT_MAX_HELD_PER_CLIENT,
            max_held_total: DEFAULT_MAX_HELD_TOTAL,
            dvr_window: DEFAULT_DVR_WINDOW,
        }
    }
}

impl HlsConfig {
    /// PART-HOLD-BACK: as set, or 3 x PART-TARGET (the least allowed).
    pub fn part_hold_back(&self) -> Duration {
        self.part_hold_back.unwrap_or(self.part_target * 3)
    }

    /// EXT-X-TARGETDURATION: the segment target rounded up to whole seconds.
    pub fn target_duration_secs(&self) -> u64 {
        self.segment_target.as_secs_f64().ceil().max(1.0) as u64
    }

    /// Requests still unsatisfied after 3 x TD get 503 [6.2.5.2].
    pub fn hold_timeout(&self) -> Duration {
        Duration::from_secs(3 * self.target_duration_secs())
    }

    /// CAN-SKIP-UNTIL: 6 x TD, the minimum the spec allows [4.4.3.8].
    pub fn can_skip_until(&self) -> Duration {
        Duration::from_secs(6 * self.target_duration_secs())
    }

    /// The largest part index a request may name.
    pub fn max_part_index(&self) -> u32 {
        let per_segment = self.segment_target.as_secs_f64() * 2.0 / self.part_target.as_secs_f64();
        per_segment.ceil() as u32 + 2
    }

    pub(crate) fn playlist_settings(&self) -> PlaylistSettings {
        PlaylistSettings {
            target_duration_secs: self.target_duration_secs(),
            part_target: self.part_target,
            part_hold_back: self.part_hold_back(),
            can_skip_until: self.can_skip_until(),
        }
    }

    pub(crate) fn packager_settings(&self) -> PackagerSettings {
        PackagerSettings {
            part_target: self.part_target,
            segment_min: self.segment_target / 2,
            // Longest segment whose EXTINF still rounds to TARGETDURATION.
            segment_max: Duration::from_secs(self.target_duration_secs())
                + Duration::from_millis(490),
        }
    }

    pub(crate) fn window_limits(&self) -> WindowLimits {
        let td = self.target_duration_secs() as f64;
        let seg = self.segment_target.as_secs_f64();
        let listed = ((3.0 * td) / seg).ceil() as usize;
        WindowLimits {
            segments_kept: self.segments_kept,
            max_bytes: self.max_window_bytes,
            part_segments_listed: listed,
            part_segments_kept: 2 * listed + 1,
            dvr: self.dvr_window,
        }
    }

    /// Rejects settings that break the LL-HLS rules.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.dvr_window > MAX_DVR_WINDOW {
            return Err(ConfigError::DvrWindow);
        }
        if self.part_target < Duration::from_millis(50) || self.part_target > Duration::from_secs(2)
        {
            return Err(ConfigError::PartTarget);
        }
        if self.part_hold_back() < self.part_target * 3 {
            return Err(ConfigError::PartHoldBack);
        }
        if self.segment_target < self.part_target * 2 {
            return Err(ConfigError::SegmentTarget);
        }
        if (self.segments_kept as f64) * self.segment_target.as_secs_f64()
            <= self.can_skip_until().as_secs_f64()
        {
            return Err(ConfigError::SegmentsKept);
        }
        if self.max_held_per_client == 0 || self.max_held_total == 0 {
            return Err(ConfigError::HeldLimits);
        }
        Ok(())
    }
}

/// Why LL-HLS settings break the rules.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// Outside 50 ms..=2 s.
    #[error("part_target must be between 50 ms and 2 s")]
    PartTarget,
    /// Below 3 x PART-TARGET [RFC 8216bis 4.4.3.8].
    #[error("PART-HOLD-BACK must be at least 3 x PART-TARGET")]
    PartHoldBack,
    /// A segment must hold at least two parts.
    #[error("the segment target must hold at least two parts")]
    SegmentTarget,
    /// Delta updates need more than CAN-SKIP-UNTIL in the window.
    #[error("segments_kept must cover more than CAN-SKIP-UNTIL (6 x TD)")]
    SegmentsKept,
    /// A zero limit refuses every held request.
    #[error("held-request limits must be positive")]
    HeldLimits,
    /// Over [`MAX_DVR_WINDOW`].
    #[error("dvr_window_secs must be at most 21600 (6 hours)")]
    DvrWindow,
}
