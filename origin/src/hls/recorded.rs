//! Handing complete segments, ends and thumbnails of recorded broadcasts
//! to the recording's [`SegmentSink`].

use std::sync::Arc;
use std::sync::atomic::Ordering;

use bytes::Bytes;

use super::registry::{Broadcast, Hls, Rendition};
use super::sinks::{Completed, SegmentSink};

impl Hls {
    /// Sends every recorded broadcast's complete segments to `sink` from now
    /// on (set once at start).
    pub fn record_to(&self, sink: Arc<dyn SegmentSink>) {
        let _ = self.recorder.set(sink);
    }

    /// Keeps `jpeg` as the thumbnail of `id`'s replay, if it is recorded.
    pub fn record_thumbnail(&self, id: &str, jpeg: Bytes) {
        if let Some(b) = self.broadcast(id)
            && let Some(sink) = b.recorder.as_ref().filter(|_| b.recorded())
        {
            sink.thumbnail(id, jpeg);
        }
    }
}

impl Broadcast {
    /// Hands `r`'s segments completed since the last call to the recording,
    /// if this broadcast is recorded.
    pub(super) fn record(&self, r: &Rendition) {
        let done = r
            .window
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take_completed();
        let Some(sink) = self.recorder.as_ref().filter(|_| self.recorded()) else {
            return;
        };
        let facts = r.facts();
        for (segment, init) in done {
            sink.completed(Completed {
                broadcast: self.id.clone(),
                rendition: r.name.clone(),
                generation: r.uris.generation.clone(),
                order: r.order,
                facts: facts.clone(),
                segment,
                init,
            });
        }
    }

    /// Tells the recording that this broadcast ended.
    pub(super) fn record_end(&self) {
        if let Some(sink) = self.recorder.as_ref().filter(|_| self.recorded()) {
            sink.ended(&self.id, true);
        }
    }

    /// Whether its segments are recorded.
    pub fn recorded(&self) -> bool {
        self.recorded.load(Ordering::Relaxed)
    }
}
