//! What a rendition keeps across a restart (written and read by
//! [`super::spool`], taken and restored by [`super::window`]).

use std::time::{Duration, SystemTime};

use bytes::Bytes;

/// Codec facts of a rendition, for the multivariant playlist.
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct RenditionFacts {
    /// RFC 6381 codecs.
    pub codecs: String,
    /// Coded size.
    pub resolution: (u32, u32),
    /// Measured frame rate.
    pub frame_rate: f64,
    /// Configured bitrate (bits/s), used until segments are measured.
    pub nominal_bps: u64,
}

/// A rendition's window as saved.
#[derive(Debug, Clone)]
pub struct Saved {
    /// Its position in the ladder.
    pub order: usize,
    /// The URI generation.
    pub generation: String,
    /// Codec facts for the multivariant playlist.
    pub facts: RenditionFacts,
    /// Counters, segments and init segments.
    pub state: WindowState,
}

/// A complete segment as kept on disk .
#[derive(Debug, Clone, PartialEq)]
pub struct SavedSegment {
    /// Media sequence number.
    pub msn: u64,
    /// Duration.
    pub duration: Duration,
    /// Marked with EXT-X-DISCONTINUITY.
    pub discontinuity: bool,
    /// Wall-clock time of its first sample.
    pub program_date_time: SystemTime,
    /// The init segment it uses.
    pub init_id: u32,
    /// Its bytes.
    pub data: Bytes,
}

/// What a window needs to continue after a restart: its counters, its
/// complete segments and their init segments. Parts are not kept: a restored
/// window lists whole segments until new parts arrive.
#[derive(Debug, Clone, PartialEq)]
pub struct WindowState {
    /// The sequence number the next part gets (part URIs are never reused).
    pub next_part_seq: u64,
    /// The id the next new init segment gets.
    pub next_init_id: u32,
    /// EXT-X-DISCONTINUITY-SEQUENCE.
    pub discontinuity_sequence: u64,
    /// The MSN the next segment gets when there are no segments.
    pub next_msn: u64,
    /// Init segments in use, by id.
    pub inits: Vec<(u32, Bytes)>,
    /// Complete segments, oldest first, with consecutive MSNs.
    pub segments: Vec<SavedSegment>,
    /// Taken from a window frozen for a clean stop: nothing was ever served
    /// from it that this state lacks, so its URIs can go on being used.
    pub clean: bool,
}

/// A complete segment as another origin sees it: no bytes.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CountedSegment {
    /// Media sequence number.
    pub msn: u64,
    /// Duration.
    pub duration: Duration,
    /// Marked with EXT-X-DISCONTINUITY.
    pub discontinuity: bool,
    /// Wall-clock time of its first sample.
    pub program_date_time: SystemTime,
}

/// What another origin needs to continue a rendition's playlist after
/// taking its broadcast over: the counters and the listed segments' times,
/// never media. Written (with the holder's epoch) at every segment close.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Counters {
    /// Its position in the ladder.
    pub order: usize,
    /// The URI generation in use (the next holder picks a new one).
    pub generation: String,
    /// Codec facts for the multivariant playlist.
    pub facts: RenditionFacts,
    /// The MSN the next segment gets: past every segment listed so far,
    /// the open one included.
    pub next_msn: u64,
    /// The sequence number the next part gets.
    pub next_part_seq: u64,
    /// The id the next init segment gets.
    pub next_init_id: u32,
    /// EXT-X-DISCONTINUITY-SEQUENCE of the playlist as last listed.
    pub discontinuity_sequence: u64,
    /// EXT-X-DISCONTINUITY tags on the segments listed (the open one
    /// included): they leave the playlist when another origin continues it.
    pub discontinuities_listed: u64,
    /// The complete segments listed, oldest first.
    pub segments: Vec<CountedSegment>,
}
