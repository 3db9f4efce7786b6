//! Media events of one rendition into CMAF parts and segments (pure).
//!
//! Parts are cut on the video timeline: a sample joins the open part unless
//! that would make the part longer than PART-TARGET, and a keyframe opens a new
//! segment once the current one has reached half the segment target (the
//! transcoder puts IDRs on a fixed cadence, so segments follow it exactly).
//! A part is closed as soon as the next sample could not fit, so it is listed
//! one frame interval earlier than waiting for that sample would allow.
//!
//! Each sample's duration is the distance to the next sample's DTS, so the
//! newest video frame is held until its successor arrives. Audio runs ahead of
//! transcoded video; it waits in a queue and goes into the part whose time span
//! covers it. The audio timeline counts samples (1024 per AAC frame) so tfdt
//! stays continuous; a real gap (a whole frame missing) lengthens the frame
//! before it instead of breaking continuity.

use std::collections::VecDeque;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use ingest::{AacConfig, AudioFrame, AvcConfig, MediaEvent, VideoFrame};

use super::fmp4::{
    self, AAC_FRAME_SAMPLES, AudioSample, Fmp4Error, PartSamples, VIDEO_TIMESCALE, VideoSample,
};
use super::window::{NewPart, SegmentStart};

/// Audio frames kept waiting for video (about 10 s at 48 kHz). Past it the
/// oldest are dropped: video has stalled and they could never be placed.
pub const MAX_QUEUED_AUDIO_FRAMES: usize = 480;

/// Maps media time to wall-clock time for EXT-X-PROGRAM-DATE-TIME. Shared by
/// every rendition of one publish so that all of them map it the same way.
pub type ClockAnchor = Arc<OnceLock<(Duration, SystemTime)>>;

/// Packaging settings.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackagerSettings {
    /// Longest part.
    pub part_target: Duration,
    /// A keyframe opens a new segment once the current one is this long.
    pub segment_min: Duration,
    /// A segment is cut (even without a keyframe) before it would exceed this.
    pub segment_max: Duration,
}

/// What the packager produced.
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// A new init segment for the parts that follow.
    Init(Bytes),
    /// A part.
    Part(NewPart),
}

fn ticks(d: Duration) -> u64 {
    (d.as_nanos() * u128::from(VIDEO_TIMESCALE) / 1_000_000_000) as u64
}

fn ticks_to_duration(t: u64) -> Duration {
    Duration::from_nanos((u128::from(t) * 1_000_000_000 / u128::from(VIDEO_TIMESCALE)) as u64)
}

/// Watches a rendition's parts, in order, for RFC 8216bis 4.4.4.9's floor:
/// every part lasts at least 85% of PART-TARGET, except an independent part
/// and the last of a segment (known when the next part opens one). A frame
/// rate whose frames do not fill a part well (15 fps with 167-ms parts: two
/// frames, 80%) breaks it on every part.
#[derive(Debug)]
pub struct PartFloor {
    target: Duration,
    /// The last part seen: its duration, and whether the floor spares it.
    last: Option<(Duration, bool)>,
    /// The shortest part under the floor so far.
    pub shortest: Option<Duration>,
}

impl PartFloor {
    pub fn new(target: Duration) -> PartFloor {
        PartFloor {
            target,
            last: None,
            shortest: None,
        }
    }

    /// Sees the next part; true when it shows the one before it was under the
    /// floor.
    pub fn see(&mut self, part: &NewPart) -> bool {
        let before = self.last.replace((part.duration, part.independent));
        let short = match before {
            Some((d, spared)) if !spared && part.new_segment.is_none() => {
                d.as_secs_f64() < 0.85 * self.target.as_secs_f64()
            }
            _ => false,
        };
        if short {
            let d = before.unwrap().0;
            self.shortest = Some(self.shortest.map_or(d, |s| s.min(d)));
        }
        short
    }

    /// The PART-TARGET, in whole milliseconds, that the whole frames of the
    /// shortest part fill at `fps`: rounded up, so that a part of as many
    /// frames on a millisecond clock (RTMP's) never exceeds it.
    pub fn fitting_target_ms(&self, fps: f64) -> Option<u64> {
        let frames = (self.shortest?.as_secs_f64() * fps).round().max(1.0);
        Some((frames * 1000.0 / fps).ceil() as u64)
    }
}

/// Packager state for one rendition.
#[derive(Debug)]
pub struct Packager {
    settings: PackagerSettings,
    anchor: ClockAnchor,
    video: Option<AvcConfig>,
    audio: Option<AacConfig>,
    init_dirty: bool,
    discontinuity: bool,
    held: Option<VideoFrame>,
    last_duration: u64,
    /// The duration before `last_duration`: predicting the next frame with the
    /// smaller of the two keeps millisecond jitter (33/34 ms) from closing
    /// parts a frame early.
    prev_duration: u64,
    part: Vec<(VideoFrame, u64)>,
    part_ticks: u64,
    part_opens: Option<SegmentStart>,
    segment_ticks: u64,
    segment_open: bool,
    audio_queue: VecDeque<AudioFrame>,
    audio_next: Option<u64>,
    sequence: u32,
    /// Frames packaged and their total duration, for the frame rate.
    frames: u64,
    frame_ticks: u64,
    /// Audio frames dropped because video stalled.
    pub dropped_audio: u64,
}

impl Packager {
    /// A packager; `continuing` marks the first segment as a discontinuity
    /// (a publisher reconnect or a transcoder restart on an existing window).
    pub fn new(settings: PackagerSettings, anchor: ClockAnchor, continuing: bool) -> Packager {
        Packager {
            settings,
            anchor,
            video: None,
            audio: None,
            init_dirty: true,
            discontinuity: continuing,
            held: None,
            last_duration: u64::from(VIDEO_TIMESCALE / 30),
            prev_duration: u64::from(VIDEO_TIMESCALE / 30),
            part: Vec::new(),
            part_ticks: 0,
            part_opens: None,
            segment_ticks: 0,
            segment_open: false,
            audio_queue: VecDeque::new(),
            audio_next: None,
            sequence: 0,
            frames: 0,
            frame_ticks: 0,
            dropped_audio: 0,
        }
    }

    /// The current video configuration.
    pub fn video_config(&self) -> Option<&AvcConfig> {
        self.video.as_ref()
    }

    /// The current audio configuration.
    pub fn audio_config(&self) -> Option<&AacConfig> {
        self.audio.as_ref()
    }

    /// Measured frames per second so far.
    pub fn frame_rate(&self) -> Option<f64> {
        (self.frames > 1 && self.frame_ticks > 0)
            .then(|| self.frames as f64 * f64::from(VIDEO_TIMESCALE) / self.frame_ticks as f64)
    }

    /// Feeds one event; what it completes is appended to `out`.
    pub fn push(&mut self, event: MediaEvent, out: &mut Vec<Output>) -> Result<(), Fmp4Error> {
        match event {
            MediaEvent::VideoConfig(c) => {
                if self.video.as_ref() != Some(&c) {
                    if self.video.is_some() {
                        self.flush(out)?;
                        self.discontinuity = true;
                    }
                    self.video = Some(c);
                    self.init_dirty = true;
                }
            }
            MediaEvent::AudioConfig(a) => {
                if self.audio.as_ref() != Some(&a) {
                    if self.sequence > 0 {
                        // The init segment changes under a running window.
                        self.flush(out)?;
                        self.discontinuity = true;
                    }
                    self.audio = Some(a);
                    self.init_dirty = true;
                }
            }
            MediaEvent::Video(f) => {
                if self.video.is_none() {
                    return Ok(());
                }
                if let Some(prev) = self.held.take() {
                    let d = ticks(f.dts).saturating_sub(ticks(prev.dts)).max(1);
                    self.prev_duration = self.last_duration;
                    self.last_duration = d;
                    self.add_sample(prev, d, out)?;
                }
                self.held = Some(f);
            }
            MediaEvent::Audio(a) => {
                if self.audio.is_some() {
                    if self.audio_queue.len() >= MAX_QUEUED_AUDIO_FRAMES {
                        self.audio_queue.pop_front();
                        self.dropped_audio += 1;
                    }
                    self.audio_queue.push_back(a);
                }
            }
            MediaEvent::Discontinuity => {
                self.flush(out)?;
                self.discontinuity = true;
            }
            MediaEvent::Metadata(_) | MediaEvent::Opus(_) => {}
        }
        Ok(())
    }

    /// Packages everything still held (end of stream or before a discontinuity).
    pub fn flush(&mut self, out: &mut Vec<Output>) -> Result<(), Fmp4Error> {
        if let Some(prev) = self.held.take() {
            let d = self.last_duration;
            self.add_sample(prev, d, out)?;
        }
        self.close_part(out)?;
        self.segment_open = false;
        Ok(())
    }

    /// Where the publish's media timeline starts: its first video frame, which
    /// every rendition puts at decode time zero. The playlist's times then
    /// equal the media's (the sum of the EXTINFs before a segment is its
    /// tfdt), so a player that checks one against the other finds no drift:
    /// Shaka Player re-anchors each append that disagrees by a millisecond,
    /// which drops the part when it does not start with a keyframe.
    fn media_start(&self) -> Duration {
        self.anchor
            .get()
            .map_or(Duration::ZERO, |(media0, _)| *media0)
    }

    fn pdt(&self, dts: Duration) -> SystemTime {
        let (media0, wall0) = *self.anchor.get_or_init(|| (dts, SystemTime::now()));
        if dts >= media0 {
            wall0 + (dts - media0)
        } else {
            wall0 - (media0 - dts)
        }
    }

    fn add_sample(
        &mut self,
        f: VideoFrame,
        d: u64,
        out: &mut Vec<Output>,
    ) -> Result<(), Fmp4Error> {
        let s = &self.settings;
        let opens_segment = !self.segment_open
            || self.discontinuity
            || self.init_dirty
            || (f.keyframe && self.segment_ticks >= ticks(s.segment_min))
            || self.segment_ticks + d > ticks(s.segment_max);
        if opens_segment || self.part_ticks + d > ticks(s.part_target) {
            self.close_part(out)?;
        }
        if opens_segment {
            if self.init_dirty {
                let video = self.video.as_ref().expect("video config precedes frames");
                out.push(Output::Init(fmp4::init_segment(
                    video,
                    self.audio.as_ref(),
                )?));
                self.init_dirty = false;
            }
            if self.discontinuity {
                // Audio restarts on the new timeline.
                self.audio_next = None;
            }
            self.part_opens = Some(SegmentStart {
                discontinuity: std::mem::take(&mut self.discontinuity),
                program_date_time: self.pdt(f.dts),
            });
            self.segment_open = true;
            self.segment_ticks = 0;
        }
        self.part_ticks += d;
        self.segment_ticks += d;
        self.frames += 1;
        self.frame_ticks += d;
        self.part.push((f, d));
        // Close now if the next frame could not fit anyway.
        let next = self.last_duration.min(self.prev_duration);
        if self.part_ticks + next > ticks(self.settings.part_target) {
            self.close_part(out)?;
        }
        Ok(())
    }

    fn close_part(&mut self, out: &mut Vec<Output>) -> Result<(), Fmp4Error> {
        if self.part.is_empty() {
            return Ok(());
        }
        let samples = std::mem::take(&mut self.part);
        let first_dts = samples[0].0.dts;
        let end = first_dts + ticks_to_duration(self.part_ticks);
        let video: Vec<VideoSample> = samples
            .iter()
            .map(|(f, d)| VideoSample {
                duration: *d as u32,
                composition_offset: (ticks(f.pts) as i64 - ticks(f.dts) as i64) as i32,
                keyframe: f.keyframe,
                data: f.data.clone(),
            })
            .collect();
        let (audio_decode_time, audio) = self.take_audio(end);
        self.sequence += 1;
        let data = fmp4::part(&PartSamples {
            sequence: self.sequence,
            video_decode_time: ticks(first_dts.saturating_sub(self.media_start())),
            video,
            audio_decode_time,
            audio,
        })?;
        out.push(Output::Part(NewPart {
            duration: ticks_to_duration(self.part_ticks),
            independent: samples[0].0.keyframe,
            data,
            new_segment: self.part_opens.take(),
        }));
        self.part_ticks = 0;
        Ok(())
    }

    /// Audio frames that start before `end`, on the sample-counting timeline.
    fn take_audio(&mut self, end: Duration) -> (u64, Vec<AudioSample>) {
        let Some(rate) = self.audio.as_ref().map(|a| u64::from(a.sample_rate_hz)) else {
            return (0, Vec::new());
        };
        let media_start = self.media_start();
        let at = |pts: Duration| {
            (pts.saturating_sub(media_start).as_nanos() * u128::from(rate) / 1_000_000_000) as u64
        };
        let mut out = Vec::new();
        let mut first = None;
        while self.audio_queue.front().is_some_and(|a| a.pts < end) {
            let frame = self.audio_queue.pop_front().expect("checked non-empty");
            if frame.pts < media_start {
                // Sound from before the first picture: no player plays it.
                continue;
            }
            let start = *self.audio_next.get_or_insert(at(frame.pts));
            first.get_or_insert(start);
            let mut duration = u64::from(AAC_FRAME_SAMPLES);
            if let Some(next) = self.audio_queue.front() {
                let next_at = at(next.pts);
                // A whole frame or more missing: stretch this one over the gap.
                if next_at > start + 2 * duration {
                    duration = next_at - start;
                }
            }
            self.audio_next = Some(start + duration);
            out.push(AudioSample {
                duration: duration as u32,
                data: frame.data,
            });
        }
        (first.unwrap_or(0), out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ingest::AudioFrame;

    const SETTINGS: PackagerSettings = PackagerSettings {
        part_target: Duration::from_millis(200),
        segment_min: Duration::from_millis(500),
        segment_max: Duration::from_millis(1490),
    };

    /// A real x264 avcC (1280x720 High 3.1).
    const AVCC: &[u8] = &[
        0x01, 0x64, 0x00, 0x1f, 0xff, 0xe1, 0x00, 0x1a, 0x67, 0x64, 0x00, 0x1f, 0xac, 0xd9, 0x40,
        0x50, 0x05, 0xbb, 0x01, 0x10, 0x00, 0x00, 0x03, 0x00, 0x10, 0x00, 0x00, 0x03, 0x03, 0xc0,
        0xf1, 0x83, 0x19, 0x60, 0x01, 0x00, 0x06, 0x68, 0xeb, 0xe3, 0xcb, 0x22, 0xc0, 0xfd, 0xf8,
        0xf8, 0x00,
    ];

    fn configs() -> Vec<MediaEvent> {
        vec![
            MediaEvent::VideoConfig(AvcConfig::parse(Bytes::from_static(AVCC)).unwrap()),
            MediaEvent::AudioConfig(AacConfig::parse(Bytes::from_static(&[0x11, 0x90])).unwrap()),
        ]
    }

    /// 30 fps on RTMP's millisecond clock, IDR every 30 frames, plus AAC at 48 kHz.
    fn stream(frames: u64) -> Vec<MediaEvent> {
        let mut v = configs();
        let mut audio_n = 0u64;
        for n in 0..frames {
            let t = Duration::from_millis(n * 1000 / 30);
            while Duration::from_micros(audio_n * 21_333) <= t {
                v.push(MediaEvent::Audio(AudioFrame {
                    pts: Duration::from_millis(audio_n * 64 / 3),
                    data: Bytes::from_static(&[0x21, 0x10, 0x04]),
                }));
                audio_n += 1;
            }
            v.push(MediaEvent::Video(VideoFrame {
                dts: t,
                pts: t,
                keyframe: n % 30 == 0,
                data: Bytes::from(vec![0, 0, 0, 1, if n % 30 == 0 { 0x65 } else { 0x41 }]),
            }));
        }
        v
    }

    fn run(events: Vec<MediaEvent>) -> Vec<Output> {
        let mut p = Packager::new(SETTINGS, Arc::default(), false);
        let mut out = vec![];
        for e in events {
            p.push(e, &mut out).unwrap();
        }
        p.flush(&mut out).unwrap();
        out
    }

    fn parts(out: &[Output]) -> Vec<&NewPart> {
        out.iter()
            .filter_map(|o| match o {
                Output::Part(p) => Some(p),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn parts_never_exceed_the_part_target_and_segments_follow_the_keyframes() {
        let out = run(stream(90));
        assert!(matches!(out[0], Output::Init(_)));
        let parts = parts(&out);
        assert!(parts.iter().all(|p| p.duration <= SETTINGS.part_target));
        let starts: Vec<usize> = parts
            .iter()
            .enumerate()
            .filter(|(_, p)| p.new_segment.is_some())
            .map(|(i, _)| i)
            .collect();
        // 30 frames of 1/30 s (33/34 ms on RTMP's clock) in 200 ms parts: 5 parts of
        // 6 frames per segment, each closed as soon as its sixth frame is known.
        assert_eq!(starts, vec![0, 5, 10]);
        // (The last part ends on a flushed frame whose duration is a guess.)
        let full = &parts[..parts.len() - 1];
        assert!(
            full.iter().all(|p| p.duration == SETTINGS.part_target),
            "{:?}",
            full.iter().map(|p| p.duration).collect::<Vec<_>>()
        );
        assert!(
            parts
                .iter()
                .enumerate()
                .all(|(i, p)| p.independent == starts.contains(&i))
        );
        let per_segment: Duration = parts[5..10].iter().map(|p| p.duration).sum();
        assert_eq!(per_segment, Duration::from_secs(1));
    }

    /// (video tfdt, audio tfdt, audio samples) of a part.
    fn decode_times(p: &NewPart) -> (u64, u64, usize) {
        use mp4_atom::{Any, Decode};
        let mut data = &p.data[..];
        let Any::Moof(moof) = Any::decode(&mut data).unwrap() else {
            panic!("a part starts with a moof")
        };
        let tfdt = |i: usize| moof.traf[i].tfdt.as_ref().unwrap().base_media_decode_time;
        (tfdt(0), tfdt(1), moof.traf[1].trun[0].samples.len())
    }

    #[test]
    fn the_media_timeline_starts_at_zero_with_the_first_picture() {
        // The publisher's clock starts at 5.021 s, with sound from 4.9 s on.
        let shift = |d: Duration| d + Duration::from_millis(5021);
        let mut events = configs();
        for n in 0..6u64 {
            events.push(MediaEvent::Audio(AudioFrame {
                pts: Duration::from_millis(4900 + n * 64 / 3),
                data: Bytes::from_static(&[0x21, 0x10, 0x04]),
            }));
        }
        events.extend(stream(60).into_iter().skip(2).map(|e| match e {
            MediaEvent::Video(mut v) => {
                v.dts = shift(v.dts);
                v.pts = shift(v.pts);
                MediaEvent::Video(v)
            }
            MediaEvent::Audio(mut a) => {
                a.pts = shift(a.pts);
                MediaEvent::Audio(a)
            }
            e => e,
        }));
        let out = run(events);
        let parts = parts(&out);
        let (video0, audio0, _) = decode_times(parts[0]);
        assert_eq!(video0, 0, "the first picture is at zero");
        assert!(audio0 < 1024, "sound starts within a frame of it: {audio0}");
        // The second segment starts exactly where the first one's duration says.
        let first: Duration = parts[..5].iter().map(|p| p.duration).sum();
        assert!(parts[5].new_segment.is_some());
        assert_eq!(decode_times(parts[5]).0, ticks(first));
        // The 6 frames from before the first picture (4.9-5.0 s) are left out.
        let audio: usize = parts.iter().map(|p| decode_times(p).2).sum();
        assert_eq!(
            audio,
            stream(60)
                .iter()
                .filter(|e| matches!(e, MediaEvent::Audio(_)))
                .count()
        );
    }

    #[test]
    fn a_discontinuity_opens_a_marked_segment() {
        let mut events = stream(45);
        events.push(MediaEvent::Discontinuity);
        events.extend(stream(30).into_iter().skip(2).map(|e| match e {
            MediaEvent::Video(mut v) => {
                v.dts += Duration::from_secs(100);
                v.pts += Duration::from_secs(100);
                MediaEvent::Video(v)
            }
            MediaEvent::Audio(mut a) => {
                a.pts += Duration::from_secs(100);
                MediaEvent::Audio(a)
            }
            e => e,
        }));
        let out = run(events);
        let marked: Vec<bool> = parts(&out)
            .iter()
            .filter_map(|p| p.new_segment.map(|s| s.discontinuity))
            .collect();
        assert_eq!(marked, vec![false, false, true]);
    }

    #[test]
    fn a_new_sequence_header_brings_a_new_init_segment() {
        let mut events = stream(30);
        let mut other = AvcConfig::parse(Bytes::from_static(AVCC)).unwrap();
        other.width = 640;
        events.push(MediaEvent::VideoConfig(other));
        events.extend(stream(30).into_iter().skip(2));
        let inits = run(events)
            .iter()
            .filter(|o| matches!(o, Output::Init(_)))
            .count();
        assert_eq!(inits, 2);
    }

    /// 4 s of video at `num/den` fps on a nanosecond clock (the transcoder's),
    /// with a keyframe at each whole second, as the transcoder forces them.
    fn video_at(num: u64, den: u64) -> Vec<MediaEvent> {
        let mut v = configs();
        let at = |n: u64| Duration::from_nanos(n * den * 1_000_000_000 / num);
        for n in 0..(4 * num / den) {
            let keyframe = n == 0 || at(n).as_secs() > at(n - 1).as_secs();
            v.push(MediaEvent::Video(VideoFrame {
                dts: at(n),
                pts: at(n),
                keyframe,
                data: Bytes::from(vec![0, 0, 0, 1, if keyframe { 0x65 } else { 0x41 }]),
            }));
        }
        v
    }

    #[test]
    fn the_default_part_target_fits_common_frame_rates_within_the_spec() {
        // RFC 8216bis 4.4.4.9: a part lasts at most PART-TARGET and at least
        // 85% of it, except an independent part and the last of a segment.
        // 200 ms failed at 29.97 and 23.976 fps (5 and 4 frames, 83%).
        let settings = super::super::config::HlsConfig::default().packager_settings();
        let target = settings.part_target;
        for (num, den) in [
            (30, 1),
            (30_000, 1001),
            (25, 1),
            (24, 1),
            (24_000, 1001),
            (60, 1),
            (60_000, 1001),
            (50, 1),
            (20, 1),
        ] {
            let mut p = Packager::new(settings, Arc::default(), false);
            let mut out = vec![];
            for e in video_at(num, den) {
                p.push(e, &mut out).unwrap();
            }
            let fps = num as f64 / den as f64;
            let (longest, floor) = floor_of(target, &out);
            assert!(longest <= target, "{fps} fps: a part lasts {longest:?}");
            assert_eq!(
                floor.shortest, None,
                "{fps} fps: a part under 85% of {target:?}"
            );
        }
    }

    /// The longest part in `out`, and what [`PartFloor`] saw of them.
    fn floor_of(target: Duration, out: &[Output]) -> (Duration, PartFloor) {
        let mut floor = PartFloor::new(target);
        let mut longest = Duration::ZERO;
        for p in parts(out) {
            floor.see(p);
            longest = longest.max(p.duration);
        }
        (longest, floor)
    }

    #[test]
    fn parts_under_the_floor_are_seen_with_the_part_target_that_fits() {
        let packaged = |target_ms: u64, num: u64, den: u64| {
            let settings = PackagerSettings {
                part_target: Duration::from_millis(target_ms),
                ..SETTINGS
            };
            let mut p = Packager::new(settings, Arc::default(), false);
            let mut out = vec![];
            for e in video_at(num, den) {
                p.push(e, &mut out).unwrap();
            }
            floor_of(settings.part_target, &out).1
        };
        // 15 fps: two-frame parts of 133.3 ms, 80% of 167.
        let f = packaged(167, 15, 1);
        assert_eq!(f.shortest.map(|d| d.as_millis()), Some(133));
        assert_eq!(f.fitting_target_ms(15.0), Some(134));
        // ... and 134 ms fits them.
        assert_eq!(packaged(134, 15, 1).shortest, None);
        // 29.97 fps with the old 200 ms: five frames, 83%.
        let fps = 30_000.0 / 1001.0;
        assert_eq!(
            packaged(200, 30_000, 1001).fitting_target_ms(fps),
            Some(167)
        );
        assert_eq!(packaged(167, 30_000, 1001).shortest, None);
        // 25 fps: each segment's one-frame last part is spared.
        assert_eq!(packaged(167, 25, 1).shortest, None);
    }
}
