//! What a window looks like from outside: its playlist and bitrates.

use std::time::Duration;

use super::Window;
use crate::hls::playlist::{MediaPlaylist, PartLine, Report, SegmentLine};
use crate::hls::uris::Uris;

/// Playlist-wide settings that do not change while live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlaylistSettings {
    /// EXT-X-TARGETDURATION.
    pub target_duration_secs: u64,
    /// PART-TARGET.
    pub part_target: Duration,
    /// PART-HOLD-BACK.
    pub part_hold_back: Duration,
    /// CAN-SKIP-UNTIL.
    pub can_skip_until: Duration,
}

impl Window {
    /// Peak and average bitrate over complete segments, in bits per second.
    pub fn bitrates(&self) -> Option<(u64, u64)> {
        let rates: Vec<(u64, Duration)> = self
            .segments
            .iter()
            .filter_map(|s| Some((s.data.as_ref()?.len() as u64 * 8, s.duration)))
            .filter(|(_, d)| *d >= Duration::from_millis(100))
            .collect();
        if rates.is_empty() {
            return None;
        }
        let peak = rates
            .iter()
            .map(|(bits, d)| (*bits as f64 / d.as_secs_f64()) as u64)
            .max()?;
        let bits: u64 = rates.iter().map(|(b, _)| b).sum();
        let secs: f64 = rates.iter().map(|(_, d)| d.as_secs_f64()).sum();
        Some((peak, (bits as f64 / secs) as u64))
    }

    /// The playlist view of the window.
    pub fn playlist(
        &self,
        uris: &Uris,
        settings: &PlaylistSettings,
        reports: Vec<Report>,
    ) -> MediaPlaylist {
        let listed_from = self
            .next_msn
            .saturating_sub(self.limits.part_segments_listed as u64 + 1);
        let mut prev_init = None;
        let rewind = self.history.iter().map(|h| {
            let map = (prev_init != Some(h.init_id)).then(|| uris.init(h.init_id));
            prev_init = Some(h.init_id);
            SegmentLine {
                msn: h.msn,
                uri: Some(uris.segment(h.msn)),
                duration: h.duration,
                discontinuity: h.discontinuity,
                program_date_time: h.program_date_time,
                map,
                parts: Vec::new(),
            }
        });
        let mut segments: Vec<SegmentLine> = rewind.collect();
        let live = self.segments.iter().map(|s| {
            let map = (prev_init != Some(s.init_id)).then(|| uris.init(s.init_id));
            prev_init = Some(s.init_id);
            SegmentLine {
                msn: s.msn,
                uri: s.complete.then(|| uris.segment(s.msn)),
                duration: s.duration,
                discontinuity: s.discontinuity,
                program_date_time: s.program_date_time,
                map,
                parts: if s.msn >= listed_from || !s.complete {
                    s.parts
                        .iter()
                        .map(|p| PartLine {
                            uri: uris.part(p.seq),
                            duration: p.duration,
                            independent: p.independent,
                        })
                        .collect()
                } else {
                    Vec::new()
                },
            }
        });
        segments.extend(live);
        MediaPlaylist {
            target_duration_secs: settings.target_duration_secs,
            part_target: settings.part_target,
            part_hold_back: settings.part_hold_back,
            can_skip_until: settings.can_skip_until,
            media_sequence: self.first_listed().unwrap_or(self.next_msn),
            discontinuity_sequence: self.discontinuity_sequence,
            segments,
            preload_hint: (!self.ended).then(|| uris.part(self.next_seq)),
            reports,
            ended: self.ended,
        }
    }
}
