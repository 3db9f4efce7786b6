//! Stream health, for the streamer: what arrives from the publisher (bitrate,
//! frame rate, keyframe interval, picture size, codecs, encoder), measured
//! over the last [`WINDOW`] of arrivals, and the glass-to-glass latency that
//! viewers' pages report. `api` adds the transcoder's numbers from the
//! metrics and the warnings ([`warnings`], pure) for `GET
//! /api/broadcasts/{id}/health`.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use ingest::media::MediaEvent;
use serde::Serialize;

/// Arrivals the bitrate and frame rate are measured over.
pub const WINDOW: Duration = Duration::from_secs(5);
/// A viewer's latency report counts for this long.
pub const REPORT_TTL: Duration = Duration::from_secs(30);
/// Reports kept per broadcast (one per viewer session); past it, the oldest
/// are forgotten first.
pub const MAX_REPORTS: usize = 20_000;
/// The longest latency a viewer may report, in seconds.
pub const MAX_LATENCY_SECS: f64 = 120.0;
/// A keyframe interval above this is worth a warning (players start, and
/// renditions switch, only at keyframes; the transcoder re-cuts them anyway,
/// but late joiners of the source wait for them).
pub const MAX_KEYFRAME_INTERVAL: Duration = Duration::from_secs(2);
/// A source this many times the top rendition's bitrate wastes the
/// streamer's upload for nothing.
pub const BITRATE_HEADROOM: f64 = 2.5;
/// A real-time factor above this means the transcoder is about to fall
/// behind (1.0: one core fully used per second of video).
pub const MAX_REALTIME_FACTOR: f64 = 0.9;

/// One publish's arrivals.
#[derive(Debug, Default)]
struct Ingest {
    /// (arrival, video bytes, decode time) of the frames of the last [`WINDOW`].
    frames: VecDeque<(Instant, usize, Duration)>,
    /// When the first frame arrived.
    since: Option<Instant>,
    /// Decode times of the last two keyframes.
    keyframes: VecDeque<Duration>,
    width: Option<u32>,
    height: Option<u32>,
    video_codec: Option<String>,
    audio_codec: Option<String>,
    encoder: Option<String>,
}

/// What arrives now, as the health API shows it.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct IngestHealth {
    /// Video bitrate over the last [`WINDOW`] of arrivals.
    pub bitrate_kbps: f64,
    /// The source's frames per second (by their decode times, over the
    /// frames of the window).
    pub fps: f64,
    /// Between the last two keyframes (decode time); `None` before the second.
    pub keyframe_interval_secs: Option<f64>,
    /// Picture size.
    pub width: Option<u32>,
    /// Picture size.
    pub height: Option<u32>,
    /// RFC 6381, e.g. `avc1.64001f`.
    pub video_codec: Option<String>,
    /// RFC 6381, e.g. `mp4a.40.2`, or `opus` (WHIP).
    pub audio_codec: Option<String>,
    /// What the publisher says it is (RTMP `onMetaData` encoder).
    pub encoder: Option<String>,
}

/// A broadcast's latency reports: session -> (seconds, when).
type Reports = HashMap<String, (f64, Instant)>;

/// Per broadcast: its publish's arrivals and its viewers' latency reports.
#[derive(Debug, Default)]
pub struct Health {
    ingest: Mutex<HashMap<String, Ingest>>,
    reports: Mutex<HashMap<String, Reports>>,
}

impl Health {
    fn ingest(&self) -> std::sync::MutexGuard<'_, HashMap<String, Ingest>> {
        self.ingest.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn reports(&self) -> std::sync::MutexGuard<'_, HashMap<String, Reports>> {
        self.reports.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Notes one event of `broadcast`'s publish, arriving `now`.
    pub fn on_media(&self, broadcast: &str, event: &MediaEvent, now: Instant) {
        let mut all = self.ingest();
        // Per frame: no allocation once the broadcast has its entry.
        if !all.contains_key(broadcast) {
            all.insert(broadcast.to_owned(), Ingest::default());
        }
        let Some(i) = all.get_mut(broadcast) else {
            return;
        };
        match event {
            MediaEvent::Video(f) => {
                i.since.get_or_insert(now);
                i.frames.push_back((now, f.data.len(), f.dts));
                while i
                    .frames
                    .front()
                    .is_some_and(|(t, _, _)| now.duration_since(*t) >= WINDOW)
                {
                    i.frames.pop_front();
                }
                if f.keyframe {
                    i.keyframes.push_back(f.dts);
                    if i.keyframes.len() > 2 {
                        i.keyframes.pop_front();
                    }
                }
            }
            MediaEvent::VideoConfig(c) => {
                (i.width, i.height) = (Some(c.width), Some(c.height));
                i.video_codec = Some(c.codec_string());
            }
            MediaEvent::AudioConfig(c) => i.audio_codec = Some(c.codec_string()),
            MediaEvent::Opus(_) if i.audio_codec.is_none() => i.audio_codec = Some("opus".into()),
            MediaEvent::Metadata(m) => i.encoder = m.encoder.clone(),
            _ => {}
        }
    }

    /// Forgets `broadcast`'s publish (it stopped) and its reports.
    pub fn ended(&self, broadcast: &str) {
        self.ingest().remove(broadcast);
        self.reports().remove(broadcast);
    }

    /// What arrives for `broadcast` now; `None` if nothing is published here.
    pub fn ingest_now(&self, broadcast: &str, now: Instant) -> Option<IngestHealth> {
        let all = self.ingest();
        let i = all.get(broadcast)?;
        let recent: Vec<&(Instant, usize, Duration)> = i
            .frames
            .iter()
            .filter(|(t, _, _)| now.duration_since(*t) < WINDOW)
            .collect();
        // Over the window, or over what there is of it just after the start.
        let span = i
            .since
            .map_or(WINDOW, |s| {
                now.duration_since(s)
                    .clamp(Duration::from_millis(500), WINDOW)
            })
            .as_secs_f64();
        let bytes: usize = recent.iter().map(|(_, b, _)| b).sum();
        let fps = match (recent.first(), recent.last()) {
            (Some(a), Some(b)) if b.2 > a.2 => {
                (recent.len() - 1) as f64 / (b.2 - a.2).as_secs_f64()
            }
            _ => 0.0,
        };
        let interval = match (i.keyframes.front(), i.keyframes.back()) {
            (Some(a), Some(b)) if b > a => Some((*b - *a).as_secs_f64()),
            _ => None,
        };
        Some(IngestHealth {
            bitrate_kbps: (bytes as f64 * 8.0 / 1000.0 / span * 10.0).round() / 10.0,
            fps: (fps * 10.0).round() / 10.0,
            keyframe_interval_secs: interval,
            width: i.width,
            height: i.height,
            video_codec: i.video_codec.clone(),
            audio_codec: i.audio_codec.clone(),
            encoder: i.encoder.clone(),
        })
    }

    /// A viewer `session` of `broadcast` is `secs` behind the publisher;
    /// `false` (and nothing kept) if `broadcast` is not published here.
    pub fn report_latency(&self, broadcast: &str, session: &str, secs: f64, now: Instant) -> bool {
        if !self.ingest().contains_key(broadcast) {
            return false;
        }
        let mut all = self.reports();
        let r = all.entry(broadcast.to_owned()).or_default();
        if r.len() >= MAX_REPORTS && !r.contains_key(session) {
            r.retain(|_, (_, at)| now.duration_since(*at) <= REPORT_TTL);
            if r.len() >= MAX_REPORTS {
                return true;
            }
        }
        r.insert(session.to_owned(), (secs, now));
        true
    }

    /// The median of `broadcast`'s current reports, and how many there are.
    pub fn latency(&self, broadcast: &str, now: Instant) -> (Option<f64>, usize) {
        let mut all = self.reports();
        let Some(r) = all.get_mut(broadcast) else {
            return (None, 0);
        };
        r.retain(|_, (_, at)| now.duration_since(*at) <= REPORT_TTL);
        let mut v: Vec<f64> = r.values().map(|(s, _)| *s).collect();
        v.sort_by(f64::total_cmp);
        (v.get(v.len() / 2).copied(), v.len())
    }
}

/// The transcoder's side, from the metrics.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct TranscodeHealth {
    /// Frames dropped because the transcoder could not keep up, this publish.
    pub dropped_frames: u64,
    /// CPU seconds per second of video (below 1 keeps up on one core).
    pub realtime_factor: f64,
}

/// Plain-words warnings for the common mistakes (pure): `top_kbps` is the
/// ladder's highest bitrate.
pub fn warnings(ingest: &IngestHealth, transcode: &TranscodeHealth, top_kbps: u32) -> Vec<String> {
    let mut w = Vec::new();
    if let Some(k) = ingest.keyframe_interval_secs
        && k > MAX_KEYFRAME_INTERVAL.as_secs_f64() + 0.05
    {
        w.push(format!(
            "Keyframes arrive every {k:.1} s. Set your encoder's keyframe interval to 1 or 2 s \
             (OBS: Settings → Output → Keyframe Interval)."
        ));
    }
    let far = f64::from(top_kbps) * BITRATE_HEADROOM;
    if ingest.bitrate_kbps > far {
        w.push(format!(
            "You send {:.0} kbit/s; viewers get at most {top_kbps} kbit/s. Lower your bitrate to \
             about {} kbit/s to save your upload.",
            ingest.bitrate_kbps,
            top_kbps * 3 / 2
        ));
    }
    if transcode.realtime_factor > MAX_REALTIME_FACTOR || transcode.dropped_frames > 0 {
        w.push(format!(
            "The server's transcoder is falling behind ({} frames dropped, {:.2} CPU s per s of \
             video). Lower your resolution or frame rate.",
            transcode.dropped_frames, transcode.realtime_factor
        ));
    }
    w
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use ingest::media::VideoFrame;

    fn frame(dts_ms: u64, bytes: usize, keyframe: bool) -> MediaEvent {
        MediaEvent::Video(VideoFrame {
            dts: Duration::from_millis(dts_ms),
            pts: Duration::from_millis(dts_ms),
            keyframe,
            data: Bytes::from(vec![0; bytes]),
        })
    }

    #[test]
    fn bitrate_fps_and_keyframe_interval_come_from_the_last_window() {
        let h = Health::default();
        let t0 = Instant::now();
        // 10 s of 25 fps, 5,000 bytes a frame (1,000 kbit/s), a keyframe every 3 s.
        for n in 0..250u64 {
            let at = t0 + Duration::from_millis(n * 40);
            h.on_media("b", &frame(n * 40, 5000, n % 75 == 0), at);
        }
        let s = h
            .ingest_now("b", t0 + Duration::from_millis(9_960))
            .unwrap();
        assert_eq!((s.bitrate_kbps, s.fps), (1000.0, 25.0));
        assert_eq!(s.keyframe_interval_secs, Some(3.0));
        let warn = warnings(
            &s,
            &TranscodeHealth {
                dropped_frames: 0,
                realtime_factor: 0.3,
            },
            2800,
        );
        assert_eq!(warn.len(), 1, "{warn:?}");
        assert!(warn[0].contains("every 3.0 s"), "{warn:?}");
        // A publisher that stopped sending: the rate falls to nothing.
        let later = h.ingest_now("b", t0 + Duration::from_secs(30)).unwrap();
        assert_eq!((later.bitrate_kbps, later.fps), (0.0, 0.0));
        h.ended("b");
        assert!(h.ingest_now("b", t0).is_none());
    }

    #[test]
    fn too_much_bitrate_and_a_slow_transcoder_are_warned_about() {
        let s = IngestHealth {
            bitrate_kbps: 8000.0,
            fps: 30.0,
            keyframe_interval_secs: Some(1.0),
            width: Some(1920),
            height: Some(1080),
            video_codec: None,
            audio_codec: None,
            encoder: None,
        };
        let fine = TranscodeHealth {
            dropped_frames: 0,
            realtime_factor: 0.5,
        };
        assert_eq!(warnings(&s, &fine, 2800).len(), 1);
        assert!(warnings(&s, &fine, 2800)[0].contains("about 4200 kbit/s"));
        assert!(warnings(&s, &fine, 4000).is_empty());
        let slow = TranscodeHealth {
            dropped_frames: 12,
            realtime_factor: 0.95,
        };
        assert!(warnings(&s, &slow, 4000)[0].contains("12 frames dropped"));
    }

    #[test]
    fn the_latency_is_the_median_of_current_reports_and_bounded() {
        let h = Health::default();
        let t0 = Instant::now();
        assert!(!h.report_latency("b", "s0", 0.6, t0), "not published here");
        h.on_media("b", &frame(0, 10, true), t0);
        h.on_media("c", &frame(0, 10, true), t0);
        for (i, s) in [0.6, 0.7, 3.0].iter().enumerate() {
            h.report_latency("b", &format!("s{i}"), *s, t0);
        }
        h.report_latency("b", "s0", 0.65, t0); // a viewer's newer report replaces its older one
        assert_eq!(h.latency("b", t0), (Some(0.7), 3));
        assert_eq!(
            h.latency("b", t0 + REPORT_TTL * 2),
            (None, 0),
            "old reports expire"
        );
        for i in 0..MAX_REPORTS + 10 {
            h.report_latency("c", &format!("s{i}"), 1.0, t0);
        }
        assert_eq!(h.latency("c", t0).1, MAX_REPORTS);
        h.ended("c");
        assert_eq!(h.latency("c", t0), (None, 0), "forgotten with the publish");
    }
}
