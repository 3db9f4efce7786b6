//! Rewind (DVR): segments that left memory but stay listed for
//! [`WindowLimits::dvr`], so players can seek back that far. Only their
//! lines are kept here; their bytes are the recording's (served from disk
//! when the window no longer has them), so a window keeps a long DVR
//! playlist only for recorded broadcasts. Delta updates (`_HLS_skip`) leave
//! these lines out of every reload at the live edge.
//!
//! [`WindowLimits::dvr`]: super::WindowLimits::dvr

use std::time::Duration;

use super::{Listed, Segment, Window};

impl Window {
    /// A segment leaves memory: listed on for rewinding while it is within
    /// the DVR window, else gone from the playlist (its discontinuity, if
    /// any, now counted by EXT-X-DISCONTINUITY-SEQUENCE).
    pub(super) fn unlist_or_keep(&mut self, old: &Segment) {
        if self.limits.dvr.is_zero() {
            self.discontinuity_sequence += u64::from(old.discontinuity);
            return;
        }
        self.history.push_back(Listed {
            msn: old.msn,
            duration: old.duration,
            discontinuity: old.discontinuity,
            program_date_time: old.program_date_time,
            init_id: old.init_id,
        });
        self.trim_history();
    }

    /// Sets the DVR window: each publish decides it (a window restored or
    /// taken over was made with the configured one, whatever the broadcast
    /// chose). Rewind lines past it go.
    pub fn set_dvr(&mut self, dvr: Duration) {
        self.limits.dvr = dvr;
        self.trim_history();
    }

    fn trim_history(&mut self) {
        let mut listed: Duration = self.history.iter().map(|h| h.duration).sum();
        while listed > self.limits.dvr {
            let Some(gone) = self.history.pop_front() else {
                break;
            };
            listed = listed.saturating_sub(gone.duration);
            self.discontinuity_sequence += u64::from(gone.discontinuity);
        }
    }

    /// Discontinuities among the rewind lines: what a window that drops
    /// them (saved for a restart, continued by another origin) must count.
    pub(super) fn history_discontinuities(&self) -> u64 {
        self.history.iter().filter(|h| h.discontinuity).count() as u64
    }

    /// The first MSN listed.
    pub(super) fn first_listed(&self) -> Option<u64> {
        self.history
            .front()
            .map(|h| h.msn)
            .or(self.segments.front().map(|s| s.msn))
    }
}
