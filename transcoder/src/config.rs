//! Transcoder settings.

use std::time::Duration;

use serde::Deserialize;
use serde_with::{As, DurationSeconds, DurationSecondsWithFrac};

use crate::ladder::RenditionSpec;

/// Keyframe (and so segment) cadence. One second keeps LL-HLS joins and quality
/// switches fast; latency itself is set by the part duration, not this.
pub const DEFAULT_KEYFRAME_INTERVAL: Duration = Duration::from_secs(1);
/// x264 speed preset.
pub const DEFAULT_PRESET: &str = "veryfast";
/// x264 threads per rendition. One: a rendition's encoder is already one
/// stage of a pipeline whose decoder, scalers and other encoders run on the
/// other cores, and a server runs several publishes at once. Slicing each
/// picture across threads (x264's low-latency threading) costs about 1% more
/// CPU for the same output and only saves a few milliseconds per frame.
/// 0 lets x264 choose (one slice per thread, threads from the core count).
pub const DEFAULT_X264_THREADS: u32 = 1;
/// Most x264 threads per rendition accepted in the config.
pub const MAX_X264_THREADS: u32 = 16;
/// Bitrate of the 720p rung.
pub const DEFAULT_720P_KBPS: u32 = 2800;
/// Bitrate of the 480p rung.
pub const DEFAULT_480P_KBPS: u32 = 1200;
/// How often a thumbnail JPEG is taken.
pub const DEFAULT_THUMBNAIL_INTERVAL: Duration = Duration::from_secs(5);
/// Thumbnail width in pixels (height follows the aspect ratio).
pub const DEFAULT_THUMBNAIL_WIDTH: u32 = 320;
/// Decoded frames that may wait for the scalers and encoders. This queue is the
/// one place frames are dropped when the machine cannot keep up; it bounds the
/// added latency to about a quarter second at 30 fps.
pub const DEFAULT_RAW_QUEUE_FRAMES: u32 = 8;
/// Events buffered per rendition output (about 15 s of video and audio). The
/// origin drains it far faster than real time; it fills only if the origin stalls.
pub const DEFAULT_OUTPUT_CAPACITY: usize = 1024;
/// Encoded input kept since the last source keyframe, replayed into a restarted
/// pipeline so output resumes right after the last frame it emitted.
pub const MAX_GOP_CACHE_BYTES: usize = 32 << 20;
/// Pipeline restarts allowed per publish before it is given up.
pub const MAX_RESTARTS: u32 = 10;
/// x264 presets accepted in the config.
pub const PRESETS: [&str; 10] = [
    "ultrafast",
    "superfast",
    "veryfast",
    "faster",
    "fast",
    "medium",
    "slow",
    "slower",
    "veryslow",
    "placebo",
];

/// Transcoder settings; see the `DEFAULT_*` constants. Read from the
/// `[transcoder]` table of the config file as it is (the keyframe interval in
/// seconds with a fraction, the thumbnail interval in whole seconds); what the
/// file leaves out keeps its default.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct TranscoderConfig {
    /// The ladder, any order.
    pub renditions: Vec<RenditionSpec>,
    /// IDR cadence, identical in every rendition.
    #[serde(
        rename = "keyframe_interval_secs",
        with = "As::<DurationSecondsWithFrac<f64>>"
    )]
    pub keyframe_interval: Duration,
    /// x264 speed preset.
    pub preset: String,
    /// x264 threads per rendition; 0 lets x264 choose.
    pub x264_threads: u32,
    /// Also offer the source H.264 untouched, as rendition `source`.
    pub source_passthrough: bool,
    /// Thumbnail cadence.
    #[serde(
        rename = "thumbnail_interval_secs",
        with = "As::<DurationSeconds<u64>>"
    )]
    pub thumbnail_interval: Duration,
    /// Thumbnail width.
    pub thumbnail_width: u32,
    /// Size of the leaky raw-frame queue (not in the file).
    #[serde(skip)]
    pub raw_queue_frames: u32,
    /// Capacity of each rendition's output channel (not in the file).
    #[serde(skip)]
    pub output_capacity: usize,
}

impl Default for TranscoderConfig {
    fn default() -> Self {
        Self {
            renditions: vec![
                RenditionSpec {
                    name: "720p".into(),
                    height: 720,
                    bitrate_kbps: DEFAULT_720P_KBPS,
                },
                RenditionSpec {
                    name: "480p".into(),
                    height: 480,
                    bitrate_kbps: DEFAULT_480P_KBPS,
                },
            ],
            keyframe_interval: DEFAULT_KEYFRAME_INTERVAL,
            preset: DEFAULT_PRESET.into(),
            x264_threads: DEFAULT_X264_THREADS,
            source_passthrough: false,
            thumbnail_interval: DEFAULT_THUMBNAIL_INTERVAL,
            thumbnail_width: DEFAULT_THUMBNAIL_WIDTH,
            raw_queue_frames: DEFAULT_RAW_QUEUE_FRAMES,
            output_capacity: DEFAULT_OUTPUT_CAPACITY,
        }
    }
}

/// Why transcoder settings cannot work.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// The ladder is empty.
    #[error("at least one rendition is required")]
    NoRenditions,
    /// Two renditions share a name, or one is called `source`.
    #[error("rendition name {0:?} is duplicated or reserved")]
    DuplicateName(String),
    /// Not an even height in 144..=2160.
    #[error("rendition {0}: height must be even, 144..=2160")]
    Height(String),
    /// Not in 100..=50000 kbit/s.
    #[error("rendition {0}: bitrate_kbps must be 100..=50000")]
    Bitrate(String),
    /// Not one of x264's presets.
    #[error("unknown x264 preset {0:?}")]
    Preset(String),
    /// More threads than [`MAX_X264_THREADS`].
    #[error("x264_threads must be 0..={MAX_X264_THREADS}")]
    Threads,
    /// Not in 0.5..=10 s.
    #[error("keyframe_interval must be between 0.5 s and 10 s")]
    KeyframeInterval,
    /// Under 1 s.
    #[error("thumbnail_interval must be at least 1 s")]
    ThumbnailInterval,
    /// Not in 64..=1920.
    #[error("thumbnail_width must be 64..=1920")]
    ThumbnailWidth,
    /// Queues too small to run.
    #[error("raw_queue_frames must be >= 1 and output_capacity >= 64")]
    Queues,
}

impl TranscoderConfig {
    /// Rejects settings that cannot work. Rendition names are checked
    /// against the URL name rule by whoever serves them.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.renditions.is_empty() {
            return Err(ConfigError::NoRenditions);
        }
        let mut names = std::collections::HashSet::new();
        for r in &self.renditions {
            if !names.insert(r.name.as_str()) || r.name == "source" {
                return Err(ConfigError::DuplicateName(r.name.clone()));
            }
            if r.height < 144 || r.height > 2160 || r.height % 2 != 0 {
                return Err(ConfigError::Height(r.name.clone()));
            }
            if !(100..=50_000).contains(&r.bitrate_kbps) {
                return Err(ConfigError::Bitrate(r.name.clone()));
            }
        }
        if !PRESETS.contains(&self.preset.as_str()) {
            return Err(ConfigError::Preset(self.preset.clone()));
        }
        if self.x264_threads > MAX_X264_THREADS {
            return Err(ConfigError::Threads);
        }
        if self.keyframe_interval < Duration::from_millis(500)
            || self.keyframe_interval > Duration::from_secs(10)
        {
            return Err(ConfigError::KeyframeInterval);
        }
        if self.thumbnail_interval < Duration::from_secs(1) {
            return Err(ConfigError::ThumbnailInterval);
        }
        if !(64..=1920).contains(&self.thumbnail_width) {
            return Err(ConfigError::ThumbnailWidth);
        }
        if self.raw_queue_frames == 0 || self.output_capacity < 64 {
            return Err(ConfigError::Queues);
        }
        Ok(())
    }
}
