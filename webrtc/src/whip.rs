//! One WHIP publisher: a browser's (or OBS's) H.264 and Opus, depacketized by
//! str0m, into the same [`MediaEvent`]s an RTMP publish gives.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use bytes::Bytes;
use ingest::{AudioFrame, LiveGuard, MediaEvent};
use str0m::Rtc;
use str0m::format::Codec;
use str0m::media::{KeyframeRequestKind, MediaData, Mid};
use tokio::sync::mpsc;
use tracing::debug;

use crate::clock::{Kind, Timeline};
use crate::h264::Assembler;
use crate::stats::Stats;

/// Least time between two keyframe requests (PLI) to a publisher.
const PLI_INTERVAL: Duration = Duration::from_millis(500);

/// The publishing side of a WHIP session.
pub struct Publisher {
    media: mpsc::Sender<MediaEvent>,
    timeline: Timeline,
    video: Assembler,
    video_mid: Option<Mid>,
    last_pli: Option<Instant>,
    /// Media events dropped because the transcoder was behind.
    pub dropped: u64,
    /// Keeps the broadcast's one-publisher slot until the session ends.
    _live: LiveGuard,
}

impl Publisher {
    /// A publisher feeding `media`, holding the broadcast's slot.
    pub fn new(media: mpsc::Sender<MediaEvent>, live: LiveGuard) -> Self {
        Self {
            media,
            timeline: Timeline::new(),
            video: Assembler::new(),
            video_mid: None,
            last_pli: None,
            dropped: 0,
            _live: live,
        }
    }

    /// Whoever took the media is gone (the publish was ended or moved).
    pub fn abandoned(&self) -> bool {
        self.media.is_closed()
    }

    /// One depacketized frame from the publisher.
    pub fn media(&mut self, rtc: &mut Rtc, data: MediaData, stats: &Stats) {
        let report = data
            .last_sender_info
            .map(|s| (s.ntp_time, s.rtp_time.numer() as u32));
        let rtp = data.time.numer() as u32;
        let rate = data.time.denom();
        let mut events = Vec::with_capacity(2);
        match data.params.spec().codec {
            Codec::H264 => {
                self.video_mid = Some(data.mid);
                if !data.contiguous {
                    self.video.lost();
                }
                if let Some(pts) =
                    self.timeline
                        .place(Kind::Video, rtp, rate, data.network_time, report)
                {
                    self.video.push(&data.data, pts, &mut events);
                }
                if self.video.needs_keyframe() {
                    self.keyframe(rtc, stats);
                }
            }
            Codec::Opus => {
                if let Some(pts) =
                    self.timeline
                        .place(Kind::Audio, rtp, rate, data.network_time, report)
                {
                    events.push(MediaEvent::Opus(AudioFrame {
                        pts,
                        data: Bytes::copy_from_slice(&data.data),
                    }));
                }
            }
            other => debug!(?other, "ignoring media in a codec we did not offer"),
        }
        for e in events {
            let video = !matches!(e, MediaEvent::Opus(_));
            if self.media.try_send(e).is_err() {
                self.dropped += 1;
                stats.media_dropped.fetch_add(1, Ordering::Relaxed);
                if video {
                    // Start over at the next IDR, config included.
                    self.video = Assembler::new();
                    self.keyframe(rtc, stats);
                }
            }
        }
    }

    /// Asks the publisher for a keyframe (PLI), at most once per interval.
    pub fn keyframe(&mut self, rtc: &mut Rtc, stats: &Stats) {
        let now = Instant::now();
        if self.last_pli.is_some_and(|t| now < t + PLI_INTERVAL) {
            return;
        }
        let Some(mid) = self.video_mid else { return };
        if let Some(mut w) = rtc.writer(mid)
            && w.request_keyframe(None, KeyframeRequestKind::Pli).is_ok()
        {
            self.last_pli = Some(now);
            stats.plis_sent.fetch_add(1, Ordering::Relaxed);
            debug!("asked the publisher for a keyframe (PLI)");
        }
    }
}
