//! RTMP's 32-bit millisecond timestamps unwrapped into one monotonic 64-bit timeline.
//!
//! RTMP timestamps wrap after 2^32 ms (49.7 days) and some encoders jump them
//! backwards on reconnect-less restarts. We extend each value to 64 bits relative
//! to the previous one. A message that repeats or slightly undercuts its track's
//! previous time (GStreamer's flvmux clamps the negative DTS of leading B-frames
//! to 0) is nudged 1 ms past it. Anything that runs further backwards, or leaps
//! far forwards, is a discontinuity: the timeline is re-based so that it keeps
//! going up, and the caller emits [`crate::MediaEvent::Discontinuity`].

use std::time::Duration;

/// Largest forward step between consecutive messages that is taken at face value.
/// A larger gap is an encoder restart, not 10 s of silence: RTMP publishers send
/// audio or video many times per second.
pub const MAX_FORWARD_JUMP_MS: i64 = 10_000;

/// How far a message may lag the newest one before it counts as a backwards
/// jump. Audio and video are interleaved with a little skew (tens of ms).
pub const MAX_INTERLEAVE_SKEW_MS: i64 = 1_000;

/// Which elementary stream a timestamp belongs to; each must be monotonic on its own.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Track {
    /// The H.264 track.
    Video = 0,
    /// The AAC track.
    Audio = 1,
}

/// Stateful unwrapper shared by the tracks of one publish.
#[derive(Debug, Default)]
pub struct Unwrapper {
    /// The previous raw value extended to 64 bits.
    last_extended_ms: Option<i64>,
    /// Added to extended values to produce output times.
    offset_ms: i64,
    /// Last output per track.
    last_out_ms: [Option<i64>; 2],
    /// Last positive step per track, used to place the first frame after a jump.
    last_step_ms: [i64; 2],
}

/// One unwrapped timestamp.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Unwrapped {
    /// Time on the monotonic timeline, strictly after the track's previous one.
    pub time: Duration,
    /// The time before any 1 ms nudge; composition offsets apply to this one.
    pub unnudged: Duration,
    /// True when the timeline had to be re-based before this message.
    pub discontinuity: bool,
}

impl Unwrapper {
    /// Maps one raw RTMP timestamp of `track` onto the timeline.
    pub fn unwrap(&mut self, track: Track, raw_ms: u32) -> Unwrapped {
        const WRAP: i64 = 1 << 32;
        let raw = i64::from(raw_ms);
        let extended = match self.last_extended_ms {
            None => raw,
            Some(last) => {
                // Pick raw + k * 2^32 nearest to the previous value.
                let base = last - last.rem_euclid(WRAP);
                [base - WRAP, base, base + WRAP]
                    .into_iter()
                    .map(|b| b + raw)
                    .min_by_key(|c| (c - last).abs())
                    .unwrap_or(raw)
            }
        };
        let step = self.last_extended_ms.map_or(0, |last| extended - last);
        self.last_extended_ms = Some(extended);

        let idx = track as usize;
        let mut out = extended + self.offset_ms;
        let newest = self.last_out_ms.iter().flatten().copied().max();
        let behind_track = self.last_out_ms[idx].map_or(0, |last| last - out);
        let jumped = !(-MAX_INTERLEAVE_SKEW_MS..=MAX_FORWARD_JUMP_MS).contains(&step)
            || behind_track > MAX_INTERLEAVE_SKEW_MS;
        let discontinuity = newest.is_some() && jumped;
        let mut unnudged = out;
        if let (true, Some(newest)) = (discontinuity, newest) {
            let gap = self.last_step_ms[idx].max(1);
            let target = newest + gap;
            self.offset_ms += target - out;
            out = target;
            unnudged = out;
        } else if let Some(last) = self.last_out_ms[idx] {
            if out <= last {
                out = last + 1;
            } else {
                self.last_step_ms[idx] = out - last;
            }
        }
        self.last_out_ms[idx] = Some(out);
        // Both are never negative: they start at a u32 and only move forward.
        Unwrapped {
            time: Duration::from_millis(out.max(0) as u64),
            unnudged: Duration::from_millis(unnudged.max(0) as u64),
            discontinuity,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(u: Unwrapped) -> u64 {
        u.time.as_millis() as u64
    }

    #[test]
    fn ordinary_timestamps_pass_through() {
        let mut u = Unwrapper::default();
        assert_eq!(ms(u.unwrap(Track::Video, 0)), 0);
        assert_eq!(ms(u.unwrap(Track::Audio, 0)), 0);
        assert_eq!(ms(u.unwrap(Track::Video, 33)), 33);
        assert_eq!(ms(u.unwrap(Track::Audio, 21)), 21);
        let v = u.unwrap(Track::Video, 66);
        assert_eq!((ms(v), v.discontinuity), (66, false));
    }

    #[test]
    fn the_32_bit_wrap_continues_upwards() {
        let mut u = Unwrapper::default();
        let near_end = u32::MAX - 20;
        assert_eq!(ms(u.unwrap(Track::Video, near_end)), u64::from(near_end));
        let after = u.unwrap(Track::Video, 12);
        assert!(!after.discontinuity);
        assert_eq!(ms(after), (1u64 << 32) + 12);
    }

    #[test]
    fn a_backwards_jump_is_a_discontinuity_not_negative_time() {
        let mut u = Unwrapper::default();
        u.unwrap(Track::Video, 50_000);
        u.unwrap(Track::Video, 50_033);
        let j = u.unwrap(Track::Video, 0);
        assert!(j.discontinuity);
        assert_eq!(ms(j), 50_066);
        let next = u.unwrap(Track::Video, 33);
        assert!(!next.discontinuity);
        assert_eq!(ms(next), 50_099);
    }

    #[test]
    fn a_huge_forward_jump_is_a_discontinuity() {
        let mut u = Unwrapper::default();
        u.unwrap(Track::Audio, 1000);
        u.unwrap(Track::Audio, 1021);
        let j = u.unwrap(Track::Audio, 3_000_000);
        assert!(j.discontinuity);
        assert_eq!(ms(j), 1042);
    }

    #[test]
    fn interleave_skew_between_tracks_is_not_a_discontinuity() {
        let mut u = Unwrapper::default();
        u.unwrap(Track::Video, 1000);
        let a = u.unwrap(Track::Audio, 980);
        assert!(!a.discontinuity);
        assert_eq!(ms(a), 980);
    }

    #[test]
    fn a_repeated_timestamp_is_nudged_not_a_discontinuity() {
        let mut u = Unwrapper::default();
        u.unwrap(Track::Video, 0);
        let r = u.unwrap(Track::Video, 0);
        assert!(!r.discontinuity);
        assert_eq!((ms(r), r.unnudged.as_millis()), (1, 0));
        let next = u.unwrap(Track::Video, 33);
        assert_eq!((ms(next), next.discontinuity), (33, false));
    }
}
