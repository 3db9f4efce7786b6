//! Across a restart: windows saved by the last run come back at start (a
//! new URI generation after an unclean stop), and a stop freezes and saves
//! every live window, so the next run continues the playlists.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use super::registry::{Broadcast, Hls, Rendition, new_generation};
use super::window::Window;

/// How long a stopping server waits, in all, for windows to reach the disk.
pub const SAVE_ON_STOP_LIMIT: Duration = Duration::from_secs(5);

impl Hls {
    /// Brings back the windows saved by the last run, for every broadcast
    /// `keep` accepts; the others are deleted. Returns the broadcasts
    /// restored: they are live, waiting for their publishers (whoever owns
    /// the lifecycle ends them if nobody comes back).
    pub async fn restore(
        self: &Arc<Self>,
        keep: impl Fn(&str) -> bool + Send + 'static,
    ) -> Vec<String> {
        let Some(spool) = self.spool.clone() else {
            return Vec::new();
        };
        let mut restored = tokio::task::spawn_blocking(move || spool.load(keep))
            .await
            .unwrap_or_default();
        restored.sort_by_key(|r| (r.broadcast.clone(), r.saved.order));
        let settings = self.config.playlist_settings();
        let mut broadcasts: Vec<Arc<Broadcast>> = Vec::new();
        // The new generation of each broadcast that needs one (its renditions share it).
        let mut fresh: HashMap<String, String> = HashMap::new();
        for r in restored {
            let broadcast = self.broadcast_or_new(&r.broadcast);
            // After a crash, parts (and perhaps segments and init segments)
            // past the saved state were served and are cached forever by edges
            // and players; continuing the numbering under the same URIs would
            // serve other bytes. A new generation makes every URI new.
            let generation = if r.saved.state.clean {
                r.saved.generation
            } else {
                let g = fresh
                    .entry(r.broadcast.clone())
                    .or_insert_with(new_generation)
                    .clone();
                info!(broadcast = %r.broadcast, rendition = %r.rendition, old = %r.saved.generation, new = %g, "window saved before an unclean stop; its URIs get a new generation");
                g
            };
            let window = Window::restore(self.config.window_limits(), r.saved.state);
            let rendition = Arc::new(Rendition::new(
                r.rendition.clone(),
                generation,
                r.saved.order,
                window,
                r.saved.facts,
                self.spool
                    .as_ref()
                    .and_then(|s| s.writer(&r.broadcast, &r.rendition)),
            ));
            let segments = rendition.with_window(|w| w.position().map(|p| p.last_msn));
            info!(broadcast = %broadcast.id, rendition = %rendition.name, last_msn = ?segments, "window restored");
            broadcast
                .renditions
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .push(rendition);
            if !broadcasts.iter().any(|b| b.id == broadcast.id) {
                broadcasts.push(broadcast);
            }
        }
        let mut ids = Vec::with_capacity(broadcasts.len());
        for b in broadcasts {
            b.refresh(&settings);
            b.changed.send_modify(|v| *v += 1);
            ids.push(b.id.clone());
        }
        ids
    }

    /// Stops for a restart: held requests are answered (503, retry), open
    /// segments are closed and every window is saved, so the next run
    /// continues the playlists. Nothing gets EXT-X-ENDLIST: the broadcasts are
    /// not over.
    pub async fn stop(self: &Arc<Self>) {
        self.stopping.cancel();
        let live: Vec<Arc<Broadcast>> = self
            .broadcasts
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .filter(|b| b.ended_at().is_none())
            .cloned()
            .collect();
        let mut renditions: Vec<Arc<Rendition>> = Vec::new();
        for b in &live {
            for r in b.renditions() {
                // Parts still coming from a transcode are refused from here on,
                // so the state saved is the last one served: a clean stop.
                r.window.lock().unwrap_or_else(|p| p.into_inner()).freeze();
                b.save(&r);
                renditions.push(r);
            }
        }
        // One deadline for all of them: the stop as a whole stays bounded.
        let deadline = tokio::time::Instant::now() + SAVE_ON_STOP_LIMIT;
        for r in &renditions {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if let Some(saver) = &r.saver
                && !saver.flush(left).await
            {
                warn!(rendition = %r.name, "window not saved in time");
            }
        }
    }
}
