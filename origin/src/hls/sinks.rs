//! Where a window's state goes besides memory, through sinks that never
//! wait: counters for other origins ([`CounterSink`], see
//! [`crate::cluster`]), complete segments for the recording
//! ([`SegmentSink`], see `crate::recording`), so that packaging never waits
//! on a database or a disk.

use bytes::Bytes;

use super::saved::{Counters, RenditionFacts, SavedSegment};

/// A segment that just completed, with what a recording needs to play it.
#[derive(Debug, Clone)]
pub struct Completed {
    /// Broadcast id.
    pub broadcast: String,
    /// Rendition name.
    pub rendition: String,
    /// The window's URI generation.
    pub generation: String,
    /// The rendition's place in the ladder.
    pub order: usize,
    /// Codec facts for a multivariant playlist.
    pub facts: RenditionFacts,
    /// The segment, bytes included.
    pub segment: SavedSegment,
    /// Its init segment (`None` only if the window no longer had it).
    pub init: Option<Bytes>,
}

/// Takes complete segments and ends; never waits.
pub trait SegmentSink: Send + Sync {
    /// A segment of a recorded broadcast completed.
    fn completed(&self, c: Completed);
    /// A recorded broadcast ended: what it completed is all there is.
    /// `here`: it was live on this origin (its last segments are this
    /// origin's); not when another origin held it, or a crash lost it.
    fn ended(&self, broadcast: &str, here: bool);
    /// A recorded broadcast's latest thumbnail, for its replay.
    fn thumbnail(&self, broadcast: &str, jpeg: Bytes);
}

/// Where a holder's counters go at every segment close, so that another
/// origin can continue its playlists (see [`crate::cluster`]). Never waits.
pub trait CounterSink: Send + Sync {
    /// Keeps `counters` of `broadcast`'s `rendition` (a newer call replaces
    /// one not yet written).
    fn save(&self, broadcast: &str, rendition: &str, counters: Counters);
}
