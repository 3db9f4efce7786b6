//! A WebRTC publisher's RTP clocks on one timeline (pure).
//!
//! Each track's RTP time counts from its first packet, whose place on the
//! timeline is first taken from its arrival. Once both tracks have a sender
//! report (RTCP SR: the same instant in NTP and in RTP time), audio is moved
//! to where the reports say it belongs relative to video, so the two stay in
//! sync whatever the network did to the first packets. Video is never moved:
//! its timestamps stay exactly the publisher's.

use std::time::{Duration, Instant, SystemTime};

/// Audio is moved only when the reports disagree with it by more than this.
const RESYNC_THRESHOLD_US: i64 = 5_000;
/// An RTP step forward larger than this, or any step back beyond reordering,
/// means the publisher restarted its clock: the track is re-based.
const MAX_FORWARD_STEP_US: i64 = 10_000_000;
const MAX_BACKWARD_STEP_US: i64 = 1_000_000;

/// Which track a packet belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The video track: the timeline's reference.
    Video,
    /// The audio track: aligned to video by sender reports.
    Audio,
}

/// A sender report: an NTP wall-clock time and the RTP time of the same instant.
pub type SenderReport = (SystemTime, u32);

#[derive(Debug)]
struct Track {
    rate: i64,
    first_rtp: u32,
    last_rtp: u32,
    /// RTP ticks since `first_rtp`, unwrapped.
    ticks: i64,
    /// Where `first_rtp` sits on the timeline, in microseconds.
    base_us: i64,
    report: Option<SenderReport>,
    last_us: Option<i64>,
}

impl Track {
    fn us(&self) -> i64 {
        self.base_us + self.ticks * 1_000_000 / self.rate
    }

    /// The NTP time of `first_rtp`, by the latest report.
    fn first_ntp_us(&self) -> Option<i64> {
        let (ntp, rtp) = self.report?;
        let ntp_us = match ntp.duration_since(SystemTime::UNIX_EPOCH) {
            Ok(d) => d.as_micros() as i64,
            Err(_) => return None,
        };
        let back = i64::from(rtp.wrapping_sub(self.first_rtp) as i32);
        Some(ntp_us - back * 1_000_000 / self.rate)
    }
}

/// The timeline of one publish.
#[derive(Debug)]
pub struct Timeline {
    start: Option<Instant>,
    video: Option<Track>,
    audio: Option<Track>,
}

impl Default for Timeline {
    fn default() -> Self {
        Self::new()
    }
}

impl Timeline {
    /// A timeline whose zero is the arrival of the first packet.
    pub fn new() -> Self {
        Self {
            start: None,
            video: None,
            audio: None,
        }
    }

    /// Where a packet of `kind` with RTP time `rtp` (clock `rate` Hz) that
    /// arrived at `arrival` sits on the timeline, given its stream's latest
    /// sender report; `None` when it is not after the previous one of its
    /// track (a duplicate, or audio moved back by a report).
    pub fn place(
        &mut self,
        kind: Kind,
        rtp: u32,
        rate: u32,
        arrival: Instant,
        report: Option<SenderReport>,
    ) -> Option<Duration> {
        let start = *self.start.get_or_insert(arrival);
        let rate = i64::from(rate.max(1));
        let slot = match kind {
            Kind::Video => &mut self.video,
            Kind::Audio => &mut self.audio,
        };
        let arrival_us = arrival.saturating_duration_since(start).as_micros() as i64;
        let track = slot.get_or_insert_with(|| Track {
            rate,
            first_rtp: rtp,
            last_rtp: rtp,
            ticks: 0,
            base_us: arrival_us,
            report: None,
            last_us: None,
        });
        let step = i64::from(rtp.wrapping_sub(track.last_rtp) as i32);
        let step_us = step * 1_000_000 / track.rate;
        if !(-MAX_BACKWARD_STEP_US..=MAX_FORWARD_STEP_US).contains(&step_us) {
            // A new clock: continue right after the last packet.
            let after = track.last_us.map_or(arrival_us, |l| l + 1);
            *track = Track {
                rate,
                first_rtp: rtp,
                last_rtp: rtp,
                ticks: 0,
                base_us: after,
                report: None,
                last_us: track.last_us,
            };
        } else {
            track.ticks += step;
            track.last_rtp = rtp;
        }
        if report.is_some() {
            track.report = report;
        }
        self.align();
        let track = match kind {
            Kind::Video => self.video.as_mut(),
            Kind::Audio => self.audio.as_mut(),
        }
        .expect("inserted above");
        let us = track.us().max(0);
        if track.last_us.is_some_and(|l| us <= l) {
            return None;
        }
        track.last_us = Some(us);
        Some(Duration::from_micros(us as u64))
    }

    /// Moves audio to where the sender reports put it relative to video.
    fn align(&mut self) {
        let (Some(video), Some(audio)) = (&self.video, &mut self.audio) else {
            return;
        };
        let (Some(v0), Some(a0)) = (video.first_ntp_us(), audio.first_ntp_us()) else {
            return;
        };
        let want = video.base_us + (a0 - v0);
        if (want - audio.base_us).abs() > RESYNC_THRESHOLD_US {
            tracing::debug!(
                moved_us = want - audio.base_us,
                "audio aligned to video by sender reports"
            );
            audio.base_us = want;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn rtp_time_counts_from_the_first_arrival_and_wraps() {
        let t0 = Instant::now();
        let mut tl = Timeline::new();
        let first = u32::MAX - 1500; // wraps within the first 20 ms
        assert_eq!(tl.place(Kind::Video, first, 90_000, t0, None), Some(ms(0)));
        // Arrival jitter does not move video: RTP time rules.
        assert_eq!(
            tl.place(
                Kind::Video,
                first.wrapping_add(3000),
                90_000,
                t0 + ms(45),
                None
            ),
            Some(Duration::from_micros(33_333))
        );
        assert_eq!(
            tl.place(
                Kind::Video,
                first.wrapping_add(90_000),
                90_000,
                t0 + ms(990),
                None
            ),
            Some(ms(1000))
        );
        // A repeated timestamp is not placed twice.
        assert_eq!(
            tl.place(
                Kind::Video,
                first.wrapping_add(90_000),
                90_000,
                t0 + ms(990),
                None
            ),
            None
        );
    }

    #[test]
    fn sender_reports_put_audio_in_sync_with_video() {
        let t0 = Instant::now();
        let wall = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let mut tl = Timeline::new();
        // Video's first frame was captured at `wall` with RTP 1000.
        assert_eq!(tl.place(Kind::Video, 1000, 90_000, t0, None), Some(ms(0)));
        // Audio's first packet (RTP 5000) was captured 100 ms later, but
        // arrived 300 ms later: by arrival it is 200 ms late.
        assert_eq!(
            tl.place(Kind::Audio, 5000, 48_000, t0 + ms(300), None),
            Some(ms(300))
        );
        let v_report = Some((wall + ms(500), 1000 + 45_000));
        tl.place(Kind::Video, 1000 + 45_000, 90_000, t0 + ms(500), v_report);
        // The audio report: RTP 5000 + 48 000 is wall + 1100 ms. Audio moves
        // back to 100 ms; packets already placed after that are not repeated.
        let a_report = Some((wall + ms(1100), 5000 + 48_000));
        assert_eq!(
            tl.place(Kind::Audio, 5000 + 48_000, 48_000, t0 + ms(1300), a_report),
            Some(ms(1100))
        );
        assert_eq!(
            tl.place(Kind::Audio, 5000 + 960, 48_000, t0 + ms(1320), None),
            None
        );
        assert_eq!(
            tl.place(Kind::Audio, 5000 + 48_960, 48_000, t0 + ms(1320), None),
            Some(ms(1120))
        );
    }

    #[test]
    fn a_restarted_clock_continues_after_the_last_packet() {
        let t0 = Instant::now();
        let mut tl = Timeline::new();
        tl.place(Kind::Video, 0, 90_000, t0, None);
        assert_eq!(
            tl.place(Kind::Video, 9000, 90_000, t0 + ms(100), None),
            Some(ms(100))
        );
        // The publisher's clock jumps an hour ahead.
        let after = tl
            .place(
                Kind::Video,
                9000 + 90_000 * 3600,
                90_000,
                t0 + ms(133),
                None,
            )
            .unwrap();
        assert!(after > ms(100) && after < ms(101), "{after:?}");
        assert_eq!(
            tl.place(
                Kind::Video,
                9000 + 90_000 * 3600 + 3000,
                90_000,
                t0 + ms(166),
                None
            ),
            Some(after + Duration::from_micros(33_333))
        );
    }
}
