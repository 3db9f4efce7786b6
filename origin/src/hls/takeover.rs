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
        let generation = new_generation();
        for (order, (name, c)) in counters.into_iter().enumerate() {
            info!(broadcast = %id, rendition = %name, next_msn = c.next_msn, old = %c.generation, "continuing another origin's window");
            renditions.push(Arc::new(Rendition::new(
                name.clone(),
                generation.clone(),
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::hls::config::HlsConfig;
    use crate::hls::saved::RenditionFacts;

    fn counters(order: usize) -> Counters {
        Counters {
            order,
            generation: "old".into(),
            facts: RenditionFacts::default(),
            next_msn: 11,
            next_part_seq: 51,
            next_init_id: 1,
            discontinuity_sequence: 0,
            discontinuities_listed: 0,
            segments: Vec::new(),
        }
    }

    #[test]
    fn a_window_and_a_take_over_give_all_renditions_one_generation() {
        let hls = Hls::new(HlsConfig::default(), Arc::default(), None);
        let broadcast = hls.broadcast_or_new("b");
        for name in ["720p", "480p"] {
            let info = transcoder::RenditionInfo {
                name: name.into(),
                width: 1280,
                height: 720,
                bitrate_kbps: 2800,
                source: false,
            };
            broadcast.get_or_add(&info, hls.config.window_limits(), None);
            // The next rendition comes a millisecond later or more.
            std::thread::sleep(Duration::from_millis(2));
        }
        let generations = |hls: &Hls| -> Vec<String> {
            let b = hls.broadcast("b").unwrap();
            b.renditions()
                .iter()
                .map(|r| r.uris.generation.clone())
                .collect()
        };
        let first = generations(&hls);
        assert_eq!(first.len(), 2);
        assert_eq!(first[0], first[1], "one generation per window");
        std::thread::sleep(Duration::from_millis(2));
        hls.continue_from(
            "b",
            vec![("720p".into(), counters(0)), ("480p".into(), counters(1))],
        );
        let taken = generations(&hls);
        assert_eq!(taken.len(), 2);
        assert_eq!(taken[0], taken[1], "one generation per take-over");
        assert!(taken[0] != first[0] && taken[0] != "old", "a new one");
    }
}
