//! One replay across origins: what every origin recorded of a broadcast
//! (runs and segment index lines, not the media, which stay on the disk of
//! the origin that recorded them), when the replay was sealed, and whether
//! it was deleted. Only a database several origins share has this
//! ([`postgres`], migration V7); an origin alone reads its own disk.

mod postgres;

use std::time::Duration;

use super::{Node, StoreError};

/// One URI generation of one rendition, as an origin recorded it.
#[derive(Debug, Clone, PartialEq)]
pub struct RunRow {
    pub broadcast: String,
    pub rendition: String,
    pub generation: String,
    /// `recording::replay::Facts` as JSON.
    pub facts: String,
}

/// One recorded segment.
#[derive(Debug, Clone, PartialEq)]
pub struct SegmentRow {
    pub broadcast: String,
    pub rendition: String,
    pub generation: String,
    pub msn: u64,
    /// `recording::replay::Entry` as JSON.
    pub entry: String,
    pub duration_secs: f64,
}

/// A replay as every origin sees it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ReplayState {
    /// Sealed: the broadcast ended, and what was recorded until then is the
    /// replay (nothing recorded later is added to it).
    pub ended: bool,
    /// Deleted, by its owner or by an origin's retention.
    pub deleted: bool,
    /// The longest rendition, once sealed.
    pub duration_secs: f64,
}

/// A sealed replay's index: its runs (with the origin holding each) and
/// its segments, in no particular order.
#[derive(Debug, Clone, Default)]
pub struct ReplayIndex {
    pub runs: Vec<(RunRow, Node)>,
    pub segments: Vec<SegmentRow>,
}

/// What the origins share of their recordings.
#[async_trait::async_trait]
pub trait Recordings: Send + Sync {
    /// Adds what `node` recorded (again: rows known already stay as they
    /// are; a deleted replay's are not added).
    async fn add_recorded(
        &self,
        node: &Node,
        runs: &[RunRow],
        segments: &[SegmentRow],
    ) -> Result<(), StoreError>;

    /// Seals `broadcast`'s replay, with its last thumbnail; a replay sealed
    /// already stays as it was.
    async fn seal(&self, broadcast: &str, thumbnail: Option<&[u8]>) -> Result<(), StoreError>;

    /// Seals the replays of broadcasts that ended more than `settle` ago
    /// without an origin sealing them (their holder was gone); their ids.
    async fn seal_stragglers(&self, settle: Duration) -> Result<Vec<String>, StoreError>;

    /// Deletes `broadcast`'s replay everywhere (its rows go, a mark stays);
    /// whether there was one.
    async fn delete_replay(&self, broadcast: &str) -> Result<bool, StoreError>;

    /// `broadcast`'s replay, if anything of it was recorded.
    async fn replay_state(&self, broadcast: &str) -> Result<Option<ReplayState>, StoreError>;

    /// Replays changed after `since` (database time, Unix seconds; `None`:
    /// all), and the latest change among them.
    async fn replays_changed(
        &self,
        since: Option<f64>,
    ) -> Result<(Vec<(String, ReplayState)>, Option<f64>), StoreError>;

    /// A sealed replay's index (empty if it is not sealed).
    async fn replay_index(&self, broadcast: &str) -> Result<ReplayIndex, StoreError>;

    /// The origin holding a run's segments.
    async fn run_holder(
        &self,
        broadcast: &str,
        rendition: &str,
        generation: &str,
    ) -> Result<Option<Node>, StoreError>;

    /// A sealed replay's thumbnail.
    async fn replay_thumbnail(&self, broadcast: &str) -> Result<Option<Vec<u8>>, StoreError>;

    /// Which of `ids` are deleted.
    async fn deleted_among(&self, ids: &[String]) -> Result<Vec<String>, StoreError>;
}
