//! Windows changing origin (with several origins): continuing another
//! origin's playlists after taking a broadcast over, and letting go of a
//! window another origin took.

use std::sync::Arc;

use tracing::info;

use super::registry::{Hls, Rendition, new_generation};
use super::saved::Counters;
use super::window::Window;

impl Hls {
    /// Continues `id`'s playlists from the counters another origin wrote:
    /// a new URI generation, MSNs and part numbers above any it listed, its
    /// discontinuity sequence, and a discontinuity at the first new segment.
    /// A window of `id` held here before is dropped first (it is stale).
    pub fn continue_from(&self, id: &str, mut counters: Vec<(String, Counters)>) {
        self.release(id);
        let broadcast = self.broadcast_or_new(id);
        counters.sort_by_key(|(_, c)| c.order);
        let mut renditions = Vec::with_capacity(counters.len());
        for (order, (name, c)) in counters.into_iter().enumerate() {
            info!(broadcast = %id, rendition = %name, next_msn = c.next_msn, old = %c.generation, "continuing another origin's window");
            renditions.push(Arc::new(Rendition::new(
                name.clone(),
                new_generation(),
                order,
                Window::continuing(self.config.window_limits(), &c),
                c.facts,
                self.spool.as_ref().and_then(|s| s.writer(id, &name)),
            )));
        }
        *broadcast
            .renditions
            .write()
            .unwrap_or_else(|p| p.into_inner()) = renditions;
        broadcast.refresh(&self.config.playlist_settings());
        broadcast.changed.send_modify(|v| *v += 1);
    }

    /// Lets go of `id`'s window: another origin holds it now. It gets no
    /// ENDLIST (the broadcast goes on there) and nothing more is saved;
    /// requests for it are forwarded from now on. Whether there was one.
    pub fn release(&self, id: &str) -> bool {
        let removed = self
            .broadcasts
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        let Some(broadcast) = removed else {
            return false;
        };
        for r in broadcast.renditions() {
            r.window.lock().unwrap_or_else(|p| p.into_inner()).freeze();
            if let Some(saver) = &r.saver {
                saver.remove();
            }
        }
        true
    }
}
