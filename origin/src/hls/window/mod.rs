//! One rendition's live window (pure): segments and parts in memory, bounded by
//! named limits, with the lookups the HTTP side needs and the playlist view.
//!
//! RFC 8216 6.2.2: a media segment removed from the playlist MUST stay
//! available for its duration plus that of the longest playlist that
//! contained it. Removed segments are kept behind the window for that long,
//! measured on the window's media clock (the sum of part durations: wall time
//! while live, and it stands still, keeping them longer, while the publisher
//! is away). They count against the byte limit, which drops them first.
//!
//! Layout: this file appends and trims; [`persist`] takes and restores the
//! state kept across restarts; [`view`] renders the playlist view.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::{Bytes, BytesMut};

pub mod history;
pub mod persist;
pub mod view;

use super::directives::Position;
use super::saved::SavedSegment;

/// Completed segments a window holds for [`Window::take_completed`]; older
/// ones are let go (the recording's drains keep it far below).
pub const MAX_COMPLETED: usize = 64;

/// Bounds on a window.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WindowLimits {
    /// Complete segments kept (the playlist's length).
    pub segments_kept: usize,
    /// Bytes of segment data kept; the oldest segments go first past it.
    pub max_bytes: usize,
    /// Trailing segments whose parts the playlist lists (covers 3 x TD).
    pub part_segments_listed: usize,
    /// Trailing segments whose parts stay fetchable: the listed ones plus at
    /// least 3 x TD more, so a part outlives its playlist listing by 3 x TD.
    pub part_segments_kept: usize,
    /// How far back segments stay listed once out of memory, for rewinding
    /// (their bytes are the recording's); zero: not at all.
    pub dvr: Duration,
}

/// A part as stored and served.
#[derive(Debug, Clone, PartialEq)]
pub struct Part {
    /// Global part number within the rendition (its URI).
    pub seq: u64,
    /// The segment it belongs to.
    pub msn: u64,
    /// Its index in that segment.
    pub index: u32,
    /// Duration.
    pub duration: Duration,
    /// Starts with an IDR.
    pub independent: bool,
    /// moof + mdat.
    pub data: Bytes,
}

/// A segment listed for rewinding, without its bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listed {
    /// Media sequence number.
    pub msn: u64,
    /// Duration.
    pub duration: Duration,
    /// Marked with EXT-X-DISCONTINUITY.
    pub discontinuity: bool,
    /// Wall-clock time of its first sample.
    pub program_date_time: SystemTime,
    /// Its init segment.
    pub init_id: u32,
}

/// How the next part starts a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentStart {
    /// Marked with EXT-X-DISCONTINUITY.
    pub discontinuity: bool,
    /// Wall-clock time of the segment's first sample.
    pub program_date_time: SystemTime,
}

/// A part to append.
#[derive(Debug, Clone, PartialEq)]
pub struct NewPart {
    /// Duration.
    pub duration: Duration,
    /// Starts with an IDR.
    pub independent: bool,
    /// moof + mdat.
    pub data: Bytes,
    /// Set when this part opens a new segment.
    pub new_segment: Option<SegmentStart>,
}

/// Why a part could not be appended.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WindowError {
    /// No init segment was set yet.
    #[error("no init segment")]
    NoInit,
    /// The first part of a window must open a segment.
    #[error("no open segment")]
    NoSegment,
    /// The window has ended.
    #[error("window ended")]
    Ended,
    /// The window was frozen for a stop: its final state is being saved.
    #[error("window frozen for a stop")]
    Frozen,
}

#[derive(Debug)]
struct Segment {
    msn: u64,
    parts: Vec<Arc<Part>>,
    duration: Duration,
    complete: bool,
    discontinuity: bool,
    program_date_time: SystemTime,
    init_id: u32,
    data: Option<Bytes>,
}

/// A segment that left the playlist but stays fetchable.
#[derive(Debug)]
struct Removed {
    msn: u64,
    init_id: u32,
    data: Bytes,
    /// The media clock at which it may go.
    until: Duration,
}

/// One rendition's window.
#[derive(Debug)]
pub struct Window {
    limits: WindowLimits,
    segments: VecDeque<Segment>,
    next_msn: u64,
    next_seq: u64,
    discontinuity_sequence: u64,
    ended: bool,
    inits: Vec<(u32, Bytes)>,
    next_init_id: u32,
    /// Frozen for a stop: no more parts.
    frozen: bool,
    parts: VecDeque<Arc<Part>>,
    /// Bytes of segment data, listed and removed.
    bytes: usize,
    removed: VecDeque<Removed>,
    /// Media time appended so far.
    media_clock: Duration,
    /// The longest the playlist has been.
    longest_playlist: Duration,
    /// Segments completed since [`Window::take_completed`] last ran.
    completed: Vec<SavedSegment>,
    /// Listed for rewinding, out of memory (see [`history`]).
    history: VecDeque<Listed>,
}

impl Window {
    /// An empty window whose first segment will be `first_msn` (at least 1:
    /// hls.js skips blocking reloads while the last MSN is 0).
    pub fn new(limits: WindowLimits, first_msn: u64) -> Window {
        Window {
            limits,
            segments: VecDeque::new(),
            next_msn: first_msn.max(1),
            next_seq: 0,
            discontinuity_sequence: 0,
            ended: false,
            inits: Vec::new(),
            next_init_id: 0,
            frozen: false,
            parts: VecDeque::new(),
            bytes: 0,
            removed: VecDeque::new(),
            media_clock: Duration::ZERO,
            longest_playlist: Duration::ZERO,
            completed: Vec::new(),
            history: VecDeque::new(),
        }
    }

    /// Sets the init segment for the parts that follow; returns its id.
    pub fn set_init(&mut self, data: Bytes) -> u32 {
        if let Some((id, current)) = self.inits.last()
            && *current == data
        {
            return *id;
        }
        let id = self.next_init_id;
        self.next_init_id += 1;
        self.inits.push((id, data));
        id
    }

    /// The init segment `id`, while any kept segment uses it.
    pub fn init(&self, id: u32) -> Option<Bytes> {
        self.inits
            .iter()
            .find(|(i, _)| *i == id)
            .map(|(_, d)| d.clone())
    }

    /// Appends a part, opening a segment first when asked to.
    pub fn push(&mut self, p: NewPart) -> Result<Arc<Part>, WindowError> {
        if self.ended {
            return Err(WindowError::Ended);
        }
        if self.frozen {
            return Err(WindowError::Frozen);
        }
        let init_id = self.inits.last().ok_or(WindowError::NoInit)?.0;
        let open = self.segments.back().is_some_and(|s| !s.complete);
        // A new init segment needs a new segment too (EXT-X-MAP applies per segment).
        let init_changed = self.segments.back().is_some_and(|s| s.init_id != init_id);
        let start = match (p.new_segment, open && !init_changed) {
            (Some(start), _) => Some(start),
            (None, true) => None,
            (None, false) => return Err(WindowError::NoSegment),
        };
        if let Some(start) = start {
            self.close_segment();
            let msn = self.next_msn;
            self.next_msn += 1;
            self.segments.push_back(Segment {
                msn,
                parts: Vec::new(),
                duration: Duration::ZERO,
                complete: false,
                discontinuity: start.discontinuity && msn > 1,
                program_date_time: start.program_date_time,
                init_id,
                data: None,
            });
        }
        let seg = self.segments.back_mut().expect("a segment is open");
        let part = Arc::new(Part {
            seq: self.next_seq,
            msn: seg.msn,
            index: seg.parts.len() as u32,
            duration: p.duration,
            independent: p.independent,
            data: p.data,
        });
        self.next_seq += 1;
        self.media_clock += part.duration;
        seg.duration += part.duration;
        seg.parts.push(part.clone());
        self.parts.push_back(part.clone());
        self.trim();
        Ok(part)
    }

    fn close_segment(&mut self) {
        let Some(seg) = self.segments.back_mut().filter(|s| !s.complete) else {
            return;
        };
        let mut data = BytesMut::with_capacity(seg.parts.iter().map(|p| p.data.len()).sum());
        for p in &seg.parts {
            data.extend_from_slice(&p.data);
        }
        self.bytes += data.len();
        let data = data.freeze();
        if self.completed.len() == MAX_COMPLETED {
            self.completed.remove(0);
        }
        self.completed.push(SavedSegment {
            msn: seg.msn,
            duration: seg.duration,
            discontinuity: seg.discontinuity,
            program_date_time: seg.program_date_time,
            init_id: seg.init_id,
            data: data.clone(),
        });
        seg.data = Some(data);
        seg.complete = true;
    }

    /// The segments completed since the last call, oldest first (at most the
    /// last [`MAX_COMPLETED`]), with the init segments they use.
    pub fn take_completed(&mut self) -> Vec<(SavedSegment, Option<Bytes>)> {
        let done = std::mem::take(&mut self.completed);
        done.into_iter()
            .map(|s| {
                let init = self.init(s.init_id);
                (s, init)
            })
            .collect()
    }

    fn trim(&mut self) {
        let complete = |w: &Window| w.segments.iter().filter(|s| s.complete).count();
        while complete(self) > self.limits.segments_kept {
            self.retire_oldest();
        }
        while self
            .removed
            .front()
            .is_some_and(|r| r.until <= self.media_clock)
        {
            self.drop_removed();
        }
        // Past the byte limit, removed segments go first, then listed ones
        // (given up on at once: memory wins over availability).
        while self.bytes > self.limits.max_bytes {
            if !self.removed.is_empty() {
                self.drop_removed();
                continue;
            }
            if complete(self) <= 1 {
                break;
            }
            self.retire_oldest();
            self.drop_removed();
        }
        let keep_from = self
            .next_msn
            .saturating_sub(self.limits.part_segments_kept as u64 + 1);
        while self.parts.front().is_some_and(|p| p.msn < keep_from) {
            self.parts.pop_front();
        }
        for s in &mut self.segments {
            if s.msn < keep_from && s.complete {
                s.parts.clear();
            }
        }
        let first_init = self
            .history
            .front()
            .map(|h| h.init_id)
            .or(self.removed.front().map(|r| r.init_id))
            .or(self.segments.front().map(|s| s.init_id));
        if let Some(first) = first_init {
            self.inits.retain(|(id, _)| *id >= first);
        }
    }

    /// Takes the oldest segment out of the playlist, keeping its bytes
    /// fetchable for its duration plus the longest playlist's [6.2.2].
    fn retire_oldest(&mut self) {
        let listed: Duration = self.segments.iter().map(|s| s.duration).sum();
        self.longest_playlist = self.longest_playlist.max(listed);
        let Some(old) = self.segments.pop_front() else {
            return;
        };
        self.unlist_or_keep(&old);
        if let Some(data) = old.data {
            self.removed.push_back(Removed {
                msn: old.msn,
                init_id: old.init_id,
                data,
                until: self.media_clock + old.duration + self.longest_playlist,
            });
        }
    }

    fn drop_removed(&mut self) {
        if let Some(r) = self.removed.pop_front() {
            self.bytes -= r.data.len();
        }
    }

    /// Closes the open segment and marks the window ended (EXT-X-ENDLIST).
    pub fn end(&mut self) {
        self.close_segment();
        self.ended = true;
    }

    /// Takes an ended window live again (a new publish on the same broadcast).
    pub fn resume(&mut self) {
        self.ended = false;
    }

    /// Closes the open segment and takes no more parts: the window's state is
    /// final, so saving it now is a clean stop.
    pub fn freeze(&mut self) {
        self.close_segment();
        self.frozen = true;
    }

    /// Closes the open segment (before a discontinuity or a new publish).
    pub fn finish_segment(&mut self) {
        self.close_segment();
    }

    /// Where the window stands; `None` until a segment is complete.
    pub fn position(&self) -> Option<Position> {
        let complete_msn = self.segments.iter().rev().find(|s| s.complete)?.msn;
        let last = self.segments.back()?;
        Some(Position {
            first_msn: self.first_listed()?,
            last_msn: last.msn,
            last_part: last.parts.len().saturating_sub(1) as u32,
            complete_msn: Some(complete_msn),
            ended: self.ended,
        })
    }

    /// The MSN the next segment will get.
    pub fn next_msn(&self) -> u64 {
        self.next_msn
    }

    /// The sequence number the next part will get (the preload hint).
    pub fn next_part_seq(&self) -> u64 {
        self.next_seq
    }

    /// A part that is still fetchable.
    pub fn part(&self, seq: u64) -> Option<Arc<Part>> {
        let first = self.parts.front()?.seq;
        let p = self.parts.get(seq.checked_sub(first)? as usize)?;
        (p.seq == seq).then(|| p.clone())
    }

    /// A complete segment's bytes (exactly its parts, concatenated), while
    /// listed or recently removed.
    pub fn segment(&self, msn: u64) -> Option<Bytes> {
        self.segments
            .iter()
            .find(|s| s.msn == msn)
            .and_then(|s| s.data.clone())
            .or_else(|| {
                let r = self.removed.iter().find(|r| r.msn == msn)?;
                Some(r.data.clone())
            })
    }
}

#[cfg(test)]
mod tests {
    use super::view::PlaylistSettings;
    use super::*;
    use crate::hls::saved::Counters;
    use crate::hls::uris::Uris;

    const LIMITS: WindowLimits = WindowLimits {
        segments_kept: 4,
        max_bytes: 1 << 20,
        part_segments_listed: 2,
        part_segments_kept: 3,
        dvr: Duration::ZERO,
    };

    fn start() -> Option<SegmentStart> {
        Some(SegmentStart {
            discontinuity: false,
            program_date_time: SystemTime::UNIX_EPOCH,
        })
    }

    fn part(new_segment: Option<SegmentStart>, byte: u8) -> NewPart {
        NewPart {
            duration: Duration::from_millis(200),
            independent: new_segment.is_some(),
            data: Bytes::from(vec![byte; 10]),
            new_segment,
        }
    }

    fn uris() -> Uris {
        Uris {
            rendition: "r".into(),
            generation: "g".into(),
        }
    }

    fn settings() -> PlaylistSettings {
        PlaylistSettings {
            target_duration_secs: 1,
            part_target: Duration::from_millis(200),
            part_hold_back: Duration::from_millis(600),
            can_skip_until: Duration::from_secs(6),
        }
    }

    /// Pushes `segments` segments of 5 parts each.
    fn filled(segments: usize) -> Window {
        filled_with(LIMITS, segments)
    }

    /// Pushes `segments` segments of 5 parts each into a window with `limits`.
    fn filled_with(limits: WindowLimits, segments: usize) -> Window {
        let mut w = Window::new(limits, 1);
        w.set_init(Bytes::from_static(b"init"));
        for s in 0..segments {
            for i in 0..5 {
                w.push(part(if i == 0 { start() } else { None }, s as u8))
                    .unwrap();
            }
        }
        w
    }

    #[test]
    fn completed_segments_are_handed_over_once_with_their_init_segment() {
        let mut w = filled(3); // the third is still open
        let done = w.take_completed();
        let msns: Vec<u64> = done.iter().map(|(s, _)| s.msn).collect();
        assert_eq!(msns, [1, 2]);
        assert_eq!(done[0].0.data, w.segment(1).unwrap(), "the segment's bytes");
        assert_eq!(done[0].1.as_deref(), Some(&b"init"[..]));
        assert!(w.take_completed().is_empty(), "each segment once");
        w.end();
        let last: Vec<u64> = w.take_completed().iter().map(|(s, _)| s.msn).collect();
        assert_eq!(last, [3], "the end closes the open segment");
        // Nobody draining: only the newest are held.
        let mut w = filled(MAX_COMPLETED + 5);
        let held = w.take_completed();
        assert_eq!(held.len(), MAX_COMPLETED);
        assert_eq!(held.last().unwrap().0.msn, MAX_COMPLETED as u64 + 4);
    }

    #[test]
    fn a_restored_window_continues_numbering_after_a_discontinuity() {
        let w = filled(4); // the fourth is still open: lost on a crash
        let state = w.state();
        assert_eq!(state.segments.len(), 3, "complete segments only");
        assert_eq!(state.next_msn, 4, "the open segment's MSN is not skipped");
        let mut r = Window::restore(LIMITS, state.clone());
        assert_eq!(r.state(), state, "restoring is lossless");
        assert_eq!(r.segment(2), w.segment(2));
        assert_eq!(r.init(0), w.init(0));
        let pos = r.position().unwrap();
        assert_eq!(
            (pos.first_msn, pos.last_msn, pos.complete_msn),
            (1, 3, Some(3))
        );
        assert_eq!(r.part(0), None, "parts are not kept");
        // The next publish: same init bytes keep the id; parts never reuse a URI.
        assert_eq!(r.set_init(w.init(0).unwrap()), 0);
        let next = r
            .push(part(
                Some(SegmentStart {
                    discontinuity: true,
                    program_date_time: SystemTime::UNIX_EPOCH,
                }),
                7,
            ))
            .unwrap();
        assert_eq!((next.msn, next.seq), (4, w.next_part_seq()));
        let pl = r.playlist(&uris(), &settings(), vec![]);
        assert_eq!(pl.media_sequence, 1);
        let msns: Vec<(u64, bool)> = pl
            .segments
            .iter()
            .map(|s| (s.msn, s.discontinuity))
            .collect();
        assert_eq!(msns, [(1, false), (2, false), (3, false), (4, true)]);
    }

    #[test]
    fn a_window_taken_over_follows_every_msn_listed_and_keeps_counting_discontinuities() {
        let mut w = Window::new(LIMITS, 1);
        w.set_init(Bytes::from_static(b"init"));
        for s in 0..7u8 {
            let disc = s == 5; // a reconnect: the sixth segment is marked
            for i in 0..5 {
                let start = (i == 0).then_some(SegmentStart {
                    discontinuity: disc,
                    program_date_time: SystemTime::UNIX_EPOCH,
                });
                w.push(part(start, s)).unwrap();
            }
        }
        // Segments 3..=7 listed (7 open), one of them marked.
        let before = w.playlist(&uris(), &settings(), vec![]);
        let c = w.counters(1, "g".into(), Default::default());
        assert_eq!((c.next_msn, c.discontinuities_listed), (8, 1));
        assert_eq!(
            c.segments.iter().map(|s| s.msn).collect::<Vec<_>>(),
            [3, 4, 5, 6],
            "complete segments only"
        );
        let json = serde_json::to_string(&c).unwrap();
        assert_eq!(serde_json::from_str::<Counters>(&json).unwrap(), c);

        let mut n = Window::continuing(LIMITS, &c);
        assert_eq!(n.position(), None, "nothing of the old window is listed");
        n.set_init(Bytes::from_static(b"other init"));
        let first = n
            .push(part(
                Some(SegmentStart {
                    discontinuity: true,
                    program_date_time: SystemTime::UNIX_EPOCH,
                }),
                9,
            ))
            .unwrap();
        assert_eq!(first.msn, 8, "above the open segment's MSN");
        assert!(first.seq >= w.next_part_seq(), "part numbers go on rising");
        let after = n.playlist(&uris(), &settings(), vec![]);
        assert!(after.media_sequence > before.segments.last().unwrap().msn);
        assert!(after.segments[0].discontinuity);
        // A player numbers discontinuities from the header: the last one it
        // saw was `seen`; the new (marked) first segment is `seen + 1`.
        let seen = before.discontinuity_sequence
            + before.segments.iter().filter(|s| s.discontinuity).count() as u64;
        assert_eq!(after.discontinuity_sequence, seen);
    }

    #[test]
    fn a_frozen_window_takes_no_parts_and_its_state_is_clean() {
        let mut w = filled(2);
        assert!(
            !w.state().clean,
            "a live window's state may lag what was served"
        );
        w.freeze();
        assert_eq!(w.push(part(None, 1)), Err(WindowError::Frozen));
        assert_eq!(w.push(part(start(), 1)), Err(WindowError::Frozen));
        let state = w.state();
        assert!(state.clean);
        assert_eq!(state.segments.len(), 2, "the open segment was closed");
        assert_eq!(
            state.next_part_seq, 10,
            "every part served is accounted for"
        );
    }

    #[test]
    fn restoring_drops_segments_before_a_gap_or_without_their_init() {
        let mut state = filled(5).state();
        state.segments[1].discontinuity = true;
        state.segments.remove(2); // msn 3 missing on disk
        let r = Window::restore(LIMITS, state.clone());
        let pos = r.position().unwrap();
        assert_eq!((pos.first_msn, pos.last_msn), (4, 4));
        assert_eq!(
            r.playlist(&uris(), &settings(), vec![])
                .discontinuity_sequence,
            1
        );
        state.inits.clear();
        let r = Window::restore(LIMITS, state);
        assert_eq!(r.position(), None);
        assert_eq!(r.next_msn(), 5, "MSNs still never go back");
    }

    #[test]
    fn segments_start_at_msn_1_and_serve_exactly_their_parts() {
        let w = filled(2);
        let pos = w.position().unwrap();
        assert_eq!((pos.first_msn, pos.last_msn, pos.last_part), (1, 2, 4));
        assert_eq!(pos.complete_msn, Some(1));
        let seg = w.segment(1).unwrap();
        let parts: Vec<u8> = (0..5)
            .flat_map(|s| w.part(s).unwrap().data.to_vec())
            .collect();
        assert_eq!(&seg[..], &parts[..]);
        assert!(w.segment(2).is_none(), "segment 2 is not complete yet");
    }

    #[test]
    fn no_position_until_a_segment_is_complete() {
        let w = filled(1);
        assert!(w.position().is_none());
    }

    #[test]
    fn the_window_slides_and_parts_outlive_their_listing() {
        let w = filled(8);
        let p = w.playlist(&uris(), &settings(), vec![]);
        assert_eq!(p.media_sequence, 4);
        assert_eq!(p.segments.len(), 5, "4 complete + the open one");
        let with_parts: Vec<u64> = p
            .segments
            .iter()
            .filter(|s| !s.parts.is_empty())
            .map(|s| s.msn)
            .collect();
        assert_eq!(with_parts, vec![6, 7, 8]);
        // Segment 5's parts are no longer listed but still fetchable.
        assert!(w.part(5 * 5 - 5).is_some());
        assert!(w.part(3 * 5 - 5).is_none());
        assert_eq!(p.preload_hint.as_deref(), Some("r/g/p40.m4s"));
    }

    #[test]
    fn discontinuities_count_once_they_slide_out() {
        let mut w = filled(1);
        w.push(part(
            Some(SegmentStart {
                discontinuity: true,
                program_date_time: SystemTime::UNIX_EPOCH,
            }),
            9,
        ))
        .unwrap();
        for s in 0..5 {
            w.push(part(start(), s)).unwrap();
        }
        assert_eq!(
            w.playlist(&uris(), &settings(), vec![])
                .discontinuity_sequence,
            1
        );
    }

    #[test]
    fn a_changed_init_opens_a_segment_with_a_new_map() {
        let mut w = filled(1);
        w.set_init(Bytes::from_static(b"init2"));
        assert_eq!(w.push(part(None, 1)), Err(WindowError::NoSegment));
        w.push(part(start(), 1)).unwrap();
        assert_eq!(w.init(1).as_deref(), Some(&b"init2"[..]));
    }

    #[test]
    fn ending_closes_the_last_segment_and_drops_the_hint() {
        let mut w = filled(2);
        w.end();
        assert_eq!(w.position().unwrap().complete_msn, Some(2));
        assert!(w.position().unwrap().ended);
        assert!(w.segment(2).is_some());
        assert_eq!(w.push(part(start(), 0)), Err(WindowError::Ended));
    }

    #[test]
    fn a_removed_segment_stays_fetchable_for_its_duration_plus_the_longest_playlist() {
        // LIMITS lists 4 complete segments of 1 s plus the open one. Segment 1
        // leaves with the first part of segment 6 (media clock 5.2 s), when
        // the window held 5.2 s (counted before the removal: never short).
        let mut w = filled(6);
        let p = w.playlist(&uris(), &settings(), vec![]);
        assert_eq!(p.media_sequence, 2, "segment 1 left the playlist");
        let bytes = w.segment(1).expect("still fetchable");
        assert_eq!(bytes, Bytes::from(vec![0u8; 50]), "with its own bytes");
        assert!(w.init(0).is_some(), "and its init segment");
        // So it stays until 5.2 + 1 + 5.2 = 11.4 s of media.
        let mut pushed = 6;
        let mut first_gone = None;
        while first_gone.is_none() {
            for i in 0..5 {
                w.push(part(if i == 0 { start() } else { None }, pushed as u8))
                    .unwrap();
                if w.segment(1).is_none() && first_gone.is_none() {
                    first_gone = Some(w.media_clock);
                }
            }
            pushed += 1;
        }
        assert_eq!(first_gone, Some(Duration::from_millis(11_400)));
        assert!(w.segment(2).is_some(), "segment 2 left a second later");
    }

    #[test]
    fn the_byte_limit_drops_removed_segments_first() {
        let w = filled_with(
            WindowLimits {
                max_bytes: 260,
                ..LIMITS
            },
            7,
        );
        // 4 listed complete segments (200 bytes) leave room for one removed.
        assert_eq!(w.position().unwrap().first_msn, 3);
        assert!(w.segment(2).is_some() && w.segment(1).is_none());
        assert!(w.bytes <= 260);
    }

    #[test]
    fn the_byte_limit_drops_the_oldest_segments() {
        let w = filled_with(
            WindowLimits {
                max_bytes: 120,
                ..LIMITS
            },
            4,
        );
        // 50 bytes per segment: at most two complete ones fit in 120.
        assert_eq!(w.position().unwrap().first_msn, 2);
    }

    #[test]
    fn rewind_lines_stay_listed_for_the_dvr_window_without_their_bytes() {
        let dvr = WindowLimits {
            dvr: Duration::from_secs(3),
            ..LIMITS
        };
        // 1-s segments: 9 complete and one open; 4 complete in memory.
        let mut w = filled_with(dvr, 10);
        let pl = w.playlist(&uris(), &settings(), vec![]);
        let listed: Vec<(u64, bool)> = pl
            .segments
            .iter()
            .map(|s| (s.msn, !s.parts.is_empty()))
            .collect();
        assert_eq!(pl.media_sequence, 3, "3 s of rewind: 3, 4 and 5");
        assert_eq!(listed[..3], [(3, false), (4, false), (5, false)]);
        assert_eq!(listed.len(), 3 + 4 + 1);
        assert_eq!(pl.segments[0].map.as_deref(), Some("r/g/init0.mp4"));
        assert_eq!(w.position().unwrap().first_msn, 3);
        // Delta updates skip them: with CAN-SKIP-UNTIL 2 s, of 8 s listed,
        // the segments ending 3 s or more before the end (the 3 rewind lines
        // and 2 in memory).
        let short_skip = PlaylistSettings {
            can_skip_until: Duration::from_secs(2),
            ..settings()
        };
        let pl2 = w.playlist(&uris(), &short_skip, vec![]);
        assert_eq!(crate::hls::playlist::skippable(&pl2), 5);
        // A discontinuity among them is counted once it leaves the list, and
        // by a saved state (which drops them) at once.
        let marked = w
            .push(part(
                Some(SegmentStart {
                    discontinuity: true,
                    program_date_time: SystemTime::UNIX_EPOCH,
                }),
                9,
            ))
            .unwrap();
        for i in 0..4 {
            w.push(part(None, i)).unwrap();
        }
        for s in 0..5 {
            for i in 0..5 {
                w.push(part(if i == 0 { start() } else { None }, s))
                    .unwrap();
            }
        }
        let pl = w.playlist(&uris(), &settings(), vec![]);
        assert!(pl.segments[0].msn <= marked.msn && pl.segments.iter().any(|s| s.discontinuity));
        assert_eq!(pl.discontinuity_sequence, 0);
        assert_eq!(w.state().discontinuity_sequence, 1);
        for s in 0..4 {
            for i in 0..5 {
                w.push(part(if i == 0 { start() } else { None }, s))
                    .unwrap();
            }
        }
        let pl = w.playlist(&uris(), &settings(), vec![]);
        assert!(!pl.segments.iter().any(|s| s.discontinuity));
        assert_eq!(pl.discontinuity_sequence, 1);
        // Without a DVR window, nothing out of memory is listed.
        let plain = filled_with(LIMITS, 10).playlist(&uris(), &settings(), vec![]);
        assert_eq!(plain.media_sequence, 6);
        // A window made with one (restored, say) for a broadcast that has none.
        let mut opted_out = filled_with(dvr, 10);
        opted_out.set_dvr(Duration::ZERO);
        let pl = opted_out.playlist(&uris(), &settings(), vec![]);
        assert_eq!(pl.media_sequence, 6, "its rewind lines went");
    }
}
