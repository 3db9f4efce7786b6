//! A window's durable state: taken for the spool, restored after a restart.

use super::{Segment, Window, WindowLimits};
use crate::hls::saved::{CountedSegment, Counters, RenditionFacts, SavedSegment, WindowState};

impl Window {
    /// The durable part of the window: complete segments only (an open
    /// segment is lost on a crash; a clean stop closes it first).
    pub fn state(&self) -> WindowState {
        let segments: Vec<SavedSegment> = self
            .segments
            .iter()
            .filter_map(|s| {
                Some(SavedSegment {
                    msn: s.msn,
                    duration: s.duration,
                    discontinuity: s.discontinuity,
                    program_date_time: s.program_date_time,
                    init_id: s.init_id,
                    data: s.data.clone().filter(|_| s.complete)?,
                })
            })
            .collect();
        let inits = self
            .inits
            .iter()
            .filter(|(id, _)| segments.iter().any(|s| s.init_id == *id))
            .cloned()
            .collect();
        WindowState {
            next_part_seq: self.next_seq,
            next_init_id: self.next_init_id,
            // The rewind lines are not kept: their discontinuities leave with them.
            discontinuity_sequence: self.discontinuity_sequence + self.history_discontinuities(),
            next_msn: segments.last().map_or(self.next_msn, |s| s.msn + 1),
            inits,
            segments,
            clean: self.frozen,
        }
    }

    /// What another origin needs to continue this window (see [`Counters`]).
    pub fn counters(&self, order: usize, generation: String, facts: RenditionFacts) -> Counters {
        Counters {
            order,
            generation,
            facts,
            next_msn: self.next_msn,
            next_part_seq: self.next_seq,
            next_init_id: self.next_init_id,
            discontinuity_sequence: self.discontinuity_sequence,
            discontinuities_listed: self.segments.iter().filter(|s| s.discontinuity).count() as u64
                + self.history_discontinuities(),
            segments: self
                .segments
                .iter()
                .filter(|s| s.complete)
                .map(|s| CountedSegment {
                    msn: s.msn,
                    duration: s.duration,
                    discontinuity: s.discontinuity,
                    program_date_time: s.program_date_time,
                })
                .collect(),
        }
    }

    /// A window continuing another origin's (after a take-over): it lists
    /// nothing of the old one (those bytes are not here), its first segment
    /// follows every MSN listed before, and the discontinuities that leave
    /// with the old segments are counted. The packager marks that first
    /// segment with EXT-X-DISCONTINUITY.
    pub fn continuing(limits: WindowLimits, c: &Counters) -> Window {
        let mut w = Window::new(limits, c.next_msn);
        w.next_seq = c.next_part_seq;
        w.next_init_id = c.next_init_id;
        w.discontinuity_sequence = c.discontinuity_sequence + c.discontinuities_listed;
        w
    }

    /// A window continuing `state` (after a restart). Segments whose init
    /// segment is missing, or that break the MSN sequence, are dropped from
    /// the front; the next segment follows the last one kept.
    pub fn restore(limits: WindowLimits, state: WindowState) -> Window {
        let mut w = Window::new(limits, state.next_msn);
        w.next_seq = state.next_part_seq;
        w.next_init_id = state
            .inits
            .iter()
            .map(|(id, _)| id + 1)
            .max()
            .unwrap_or(0)
            .max(state.next_init_id);
        w.discontinuity_sequence = state.discontinuity_sequence;
        let mut kept: Vec<SavedSegment> = Vec::new();
        for s in state.segments {
            let follows = kept.last().is_none_or(|k| s.msn == k.msn + 1);
            let has_init = state.inits.iter().any(|(id, _)| *id == s.init_id);
            if !follows || !has_init {
                // Everything before a gap goes; count the discontinuities that leave.
                w.discontinuity_sequence += kept.iter().filter(|k| k.discontinuity).count() as u64;
                kept.clear();
                if !has_init {
                    w.discontinuity_sequence += u64::from(s.discontinuity);
                    continue;
                }
            }
            kept.push(s);
        }
        if let Some(last) = kept.last() {
            w.next_msn = last.msn + 1;
        }
        w.inits = state
            .inits
            .into_iter()
            .filter(|(id, _)| kept.iter().any(|s| s.init_id == *id))
            .collect();
        for s in kept {
            w.bytes += s.data.len();
            w.segments.push_back(Segment {
                msn: s.msn,
                parts: Vec::new(),
                duration: s.duration,
                complete: true,
                discontinuity: s.discontinuity,
                program_date_time: s.program_date_time,
                init_id: s.init_id,
                data: Some(s.data),
            });
        }
        w.trim();
        w
    }
}
