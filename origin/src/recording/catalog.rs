//! What is known of every recording, shared by the writer (which keeps it)
//! and the HTTP side (which reads it), and the replays rendered for HTTP.

use std::collections::HashMap;
use std::sync::atomic::AtomicUsize;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde::Serialize;

/// Rendered replays kept in memory; past it the cache starts over.
const MAX_RENDERED: usize = 256;

/// What is known of one broadcast's recording (kept by the writer).
#[derive(Debug, Clone)]
pub struct Summary {
    /// Bytes on disk.
    pub bytes: u64,
    /// When it ended.
    pub ended: Option<SystemTime>,
    /// Deleted by its owner.
    pub deleted: bool,
    /// The last segment written.
    pub last_write: SystemTime,
    /// Seconds recorded per rendition.
    pub durations: HashMap<String, Duration>,
}

impl Default for Summary {
    fn default() -> Self {
        Summary {
            bytes: 0,
            ended: None,
            deleted: false,
            last_write: SystemTime::now(),
            durations: HashMap::new(),
        }
    }
}

/// A broadcast's recording as the API shows it.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct ReplayInfo {
    /// `recording` (not ended yet), `ready` (playable at `playback_url`)
    /// or `deleted` (by its owner).
    pub state: &'static str,
    /// Seconds recorded (the longest rendition).
    pub duration_secs: f64,
}

/// A replay's playlists, rendered once.
#[derive(Debug)]
pub struct Rendered {
    /// The multivariant playlist.
    pub master: Bytes,
    /// Media playlists by rendition.
    pub media: HashMap<String, Bytes>,
}

/// What the writer and the HTTP side share.
#[derive(Default)]
pub struct Shared {
    pub(super) catalog: Mutex<HashMap<String, Summary>>,
    /// Rendered replay playlists, per broadcast (dropped on every change).
    rendered: Mutex<HashMap<String, Arc<Rendered>>>,
    /// Segments in the queue.
    pub queued: AtomicUsize,
}

impl Shared {
    pub fn catalog(&self) -> std::sync::MutexGuard<'_, HashMap<String, Summary>> {
        self.catalog.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn forget_rendered(&self, id: &str) {
        self.rendered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
    }

    pub fn rendered_of(&self, id: &str) -> Option<Arc<Rendered>> {
        self.rendered
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(id)
            .cloned()
    }

    /// Keeps `r` as `id`'s rendered replay.
    pub fn keep_rendered(&self, id: &str, r: Arc<Rendered>) {
        let mut cache = self.rendered.lock().unwrap_or_else(|p| p.into_inner());
        if cache.len() >= MAX_RENDERED {
            cache.clear();
        }
        cache.insert(id.to_owned(), r);
    }
}
