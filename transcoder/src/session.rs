//! One publish's transcode: waits for the first sequence header, plans the
//! ladder, feeds the pipeline, forwards audio untouched, and restarts the
//! pipeline on errors, replaying the current GOP so output resumes right after
//! the last frame it emitted.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use futures_util::StreamExt;
use gstreamer as gst;
use gstreamer::prelude::*;
use ingest::{AacConfig, AvcConfig, KeyframeRequests, MediaEvent, VideoFrame};
use tokio::sync::{broadcast, mpsc, watch};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use crate::config::{MAX_GOP_CACHE_BYTES, MAX_RESTARTS, TranscoderConfig};
use crate::error::Error;
use crate::ladder::{Planned, Size, plan};
use crate::opus::Converter;
use crate::pipeline::{self, EncodedFrame, Pipeline, PipelineSpec, Sinks, bus_error};
use crate::usage::Usage;

/// How long a finished publish may take to flush out of the pipeline.
const EOS_DRAIN_TIMEOUT: Duration = Duration::from_secs(5);
/// Pause before rebuilding a failed pipeline; doubled per restart, capped at 800 ms
/// so that a restart always completes within a second.
const RESTART_BACKOFF: Duration = Duration::from_millis(100);
/// How often frame drops are reported.
const DROP_REPORT_INTERVAL: Duration = Duration::from_secs(10);
/// Events a real-time subscriber may fall behind by before it misses some:
/// about 4 s of 30 fps video, or 2.5 s of Opus.
pub const REALTIME_CAPACITY: usize = 128;
/// Least time between two keyframe requests to the publisher (WebRTC: PLI).
const KEYFRAME_REQUEST_INTERVAL: Duration = Duration::from_millis(500);

/// What a rendition is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenditionInfo {
    /// URL-safe name, e.g. `720p` or `source`.
    pub name: String,
    /// Picture width.
    pub width: u32,
    /// Picture height.
    pub height: u32,
    /// Encoder target bitrate; 0 for the source passthrough (not ours to know).
    pub bitrate_kbps: u32,
    /// Whether this is the untouched source.
    pub source: bool,
}

/// One rendition's output: codec configs, frames and discontinuity markers.
#[derive(Debug)]
pub struct RenditionOutput {
    /// What the rendition is.
    pub info: RenditionInfo,
    /// Its events; closed when the publish has ended and been drained.
    pub media: mpsc::Receiver<MediaEvent>,
}

/// Counters of a finished transcode.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Source video frames received.
    pub frames_in: u64,
    /// Decoded frames dropped because the encoders could not keep up.
    pub dropped: u64,
    /// Source frames skipped while waiting for a keyframe after a restart.
    pub skipped_for_keyframe: u64,
    /// Pipeline restarts.
    pub restarts: u32,
    /// Encoded frames dropped because a rendition's consumer stalled.
    pub output_overflows: u64,
}

/// Live feeds for real-time (WebRTC) viewers: each rendition's events as
/// they leave its encoder, and the audio as Opus. Subscribing costs the HLS
/// path nothing; a subscriber that falls [`REALTIME_CAPACITY`] events behind
/// misses some (and is told so by the channel).
#[derive(Debug, Clone)]
pub struct Realtime {
    /// Per rendition, largest first: its name and its events.
    pub renditions: Vec<(String, broadcast::Sender<MediaEvent>)>,
    /// The audio as Opus packets ([`MediaEvent::Opus`]): a WebRTC publisher's
    /// own, or an RTMP publisher's AAC converted (only while subscribed).
    pub audio: broadcast::Sender<MediaEvent>,
}

/// A running transcode.
pub struct Transcode {
    /// Renditions, largest first; the source passthrough (if enabled) last.
    pub renditions: Vec<RenditionOutput>,
    /// The latest thumbnail JPEG.
    pub thumbnails: watch::Receiver<Option<Bytes>>,
    /// The session task; resolves when the publish has been drained.
    pub task: JoinHandle<Result<Stats, Error>>,
    /// CPU and media time, for the real-time factor.
    pub usage: Usage,
    /// Feeds for real-time viewers.
    pub realtime: Realtime,
    control: mpsc::Sender<Control>,
}

impl Transcode {
    /// Makes the pipeline fail as if an element had errored (for testing restarts).
    #[doc(hidden)]
    pub async fn inject_error(&self) {
        let _ = self.control.send(Control::InjectError).await;
    }
}

enum Control {
    InjectError,
}

#[derive(Default)]
struct OutState {
    last_pts: Option<Duration>,
    /// Emit a discontinuity before the first frame at or after each of these times.
    pending_discontinuities: Vec<Duration>,
    pending_config: Option<AvcConfig>,
    /// The config in force, repeated to real-time viewers before every
    /// keyframe (they join at any keyframe).
    config: Option<AvcConfig>,
    /// After an overflow drop, frames are skipped until the next keyframe.
    resync: bool,
}

/// The shared end of one transcoded rendition.
struct Out {
    tx: mpsc::Sender<MediaEvent>,
    /// What real-time viewers get: the same events.
    live: broadcast::Sender<MediaEvent>,
    state: Mutex<OutState>,
    overflows: AtomicU64,
}

impl Out {
    /// Called on a GStreamer streaming thread: never blocks.
    fn emit(&self, encoded: EncodedFrame) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(cd) = encoded.codec_data {
            match AvcConfig::parse(cd) {
                Ok(c) => st.pending_config = Some(c),
                Err(err) => warn!(%err, "encoder produced an unparseable avcC"),
            }
        }
        let frame = encoded.frame;
        // Frames at or before the last one are replays after a restart.
        if st.last_pts.is_some_and(|last| frame.pts <= last) || (st.resync && !frame.keyframe) {
            return;
        }
        let mut events = Vec::with_capacity(3);
        if st.pending_discontinuities.iter().any(|t| *t <= frame.pts) {
            st.pending_discontinuities.retain(|t| *t > frame.pts);
            events.push(MediaEvent::Discontinuity);
        }
        if let Some(c) = st.pending_config.take() {
            st.config = Some(c.clone());
            events.push(MediaEvent::VideoConfig(c));
        }
        let pts = frame.pts;
        let keyframe = frame.keyframe;
        events.push(MediaEvent::Video(frame));
        if self.tx.capacity() < events.len() {
            // The consumer stalled: drop this frame and the rest of its GOP.
            self.overflows.fetch_add(1, Ordering::Relaxed);
            for e in events {
                match e {
                    MediaEvent::VideoConfig(c) => st.pending_config = Some(c),
                    MediaEvent::Discontinuity => st.pending_discontinuities.push(Duration::ZERO),
                    _ => {}
                }
            }
            st.resync = true;
            return;
        }
        // The real-time feed only while someone follows it (WHEP viewers).
        let watched = self.live.receiver_count() > 0;
        if watched
            && keyframe
            && let Some(c) = &st.config
            && !matches!(events.first(), Some(MediaEvent::VideoConfig(_)))
        {
            let _ = self.live.send(MediaEvent::VideoConfig(c.clone()));
        }
        for e in events {
            if watched {
                let _ = self.live.send(e.clone());
            }
            let _ = self.tx.try_send(e);
        }
        st.last_pts = Some(pts);
        if keyframe {
            st.resync = false;
        }
    }

    fn mark_discontinuity_at(&self, t: Duration) {
        let mut st = self.state.lock().unwrap_or_else(|p| p.into_inner());
        st.pending_discontinuities.push(t);
    }

    fn last_pts(&self) -> Option<Duration> {
        self.state
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .last_pts
    }
}

struct Session {
    config: Arc<TranscoderConfig>,
    planned: Vec<Planned>,
    avc: AvcConfig,
    outs: Vec<Arc<Out>>,
    source: Option<mpsc::Sender<MediaEvent>>,
    thumbs: Arc<watch::Sender<Option<Bytes>>>,
    gop: Vec<VideoFrame>,
    gop_bytes: usize,
    gop_complete: bool,
    need_keyframe: bool,
    discontinuity_armed: bool,
    stats: Stats,
    usage: Usage,
    /// Asks the publisher for a keyframe while frames wait for one.
    keyframes: KeyframeRequests,
    last_keyframe_request: Option<tokio::time::Instant>,
    /// Opus from a WebRTC publisher, into AAC; started at the first packet.
    opus: Option<Converter>,
    /// The audio as Opus for real-time viewers.
    realtime_audio: broadcast::Sender<MediaEvent>,
    /// An RTMP publisher's AAC into Opus, while real-time viewers listen.
    to_opus: Option<Converter>,
    aac_config: Option<AacConfig>,
}

impl Drop for Session {
    fn drop(&mut self) {
        self.usage.finish();
    }
}

/// Starts transcoding a publish: waits for its first video sequence header,
/// then returns the rendition outputs while a task drives the pipeline.
/// `keyframes` is asked whenever source frames wait for a keyframe.
pub async fn start(
    config: Arc<TranscoderConfig>,
    mut input: mpsc::Receiver<MediaEvent>,
    keyframes: KeyframeRequests,
) -> Result<Transcode, Error> {
    config.validate()?;
    pipeline::init()?;
    let mut audio = None;
    let avc = loop {
        match input.recv().await {
            Some(MediaEvent::VideoConfig(c)) => break c,
            Some(MediaEvent::AudioConfig(a)) => audio = Some(a),
            Some(_) => {}
            None => return Err(Error::NoVideo),
        }
    };
    let planned = plan(
        Size {
            width: avc.width,
            height: avc.height,
        },
        &config.renditions,
    );
    let mut renditions = Vec::new();
    let mut outs = Vec::new();
    for p in &planned {
        let (tx, rx) = mpsc::channel(config.output_capacity);
        outs.push(Arc::new(Out {
            tx,
            live: broadcast::channel(REALTIME_CAPACITY).0,
            state: Mutex::default(),
            overflows: AtomicU64::new(0),
        }));
        renditions.push(RenditionOutput {
            info: RenditionInfo {
                name: p.spec.name.clone(),
                width: p.size.width,
                height: p.size.height,
                bitrate_kbps: p.spec.bitrate_kbps,
                source: false,
            },
            media: rx,
        });
    }
    let mut source = None;
    if config.source_passthrough {
        let (tx, rx) = mpsc::channel(config.output_capacity);
        let _ = tx.try_send(MediaEvent::VideoConfig(avc.clone()));
        source = Some(tx);
        renditions.push(RenditionOutput {
            info: RenditionInfo {
                name: "source".into(),
                width: avc.width,
                height: avc.height,
                bitrate_kbps: 0,
                source: true,
            },
            media: rx,
        });
    }
    if let Some(a) = audio {
        for tx in outs.iter().map(|o| &o.tx).chain(source.iter()) {
            let _ = tx.try_send(MediaEvent::AudioConfig(a.clone()));
        }
    }
    let realtime = Realtime {
        renditions: planned
            .iter()
            .zip(&outs)
            .map(|(p, o)| (p.spec.name.clone(), o.live.clone()))
            .collect(),
        audio: broadcast::channel(REALTIME_CAPACITY).0,
    };
    let (thumb_tx, thumbnails) = watch::channel(None);
    info!(
        source = %format!("{}x{}", avc.width, avc.height),
        renditions = ?planned.iter().map(|p| format!("{}={}x{}", p.spec.name, p.size.width, p.size.height)).collect::<Vec<_>>(),
        "transcode starting"
    );
    let session = Session {
        config,
        planned,
        avc,
        outs,
        source,
        thumbs: Arc::new(thumb_tx),
        gop: Vec::new(),
        gop_bytes: 0,
        gop_complete: false,
        need_keyframe: true,
        discontinuity_armed: false,
        stats: Stats::default(),
        usage: Usage::new(),
        keyframes,
        last_keyframe_request: None,
        opus: None,
        realtime_audio: realtime.audio.clone(),
        to_opus: None,
        aac_config: None,
    };
    let usage = session.usage.clone();
    let pipeline = session.build(None, Vec::new())?;
    pipeline.start()?;
    let (control, control_rx) = mpsc::channel(4);
    let task = tokio::spawn(session.run(input, pipeline, control_rx));
    Ok(Transcode {
        renditions,
        thumbnails,
        task,
        usage,
        realtime,
        control,
    })
}

impl Session {
    fn build(
        &self,
        resume_after: Option<Duration>,
        resume_keyframes_after: Vec<Duration>,
    ) -> Result<Pipeline, Error> {
        let sinks = Sinks {
            renditions: self
                .outs
                .iter()
                .map(|o| {
                    let o = o.clone();
                    Box::new(move |f: EncodedFrame| o.emit(f))
                        as Box<dyn FnMut(EncodedFrame) + Send>
                })
                .collect(),
            thumbnail: {
                let t = self.thumbs.clone();
                Box::new(move |jpeg| {
                    t.send_replace(Some(jpeg));
                })
            },
        };
        pipeline::build_pipeline(
            &PipelineSpec {
                avc: &self.avc,
                renditions: &self.planned,
                preset: &self.config.preset,
                x264_threads: self.config.x264_threads,
                keyframe_interval: self.config.keyframe_interval,
                thumbnail_interval: self.config.thumbnail_interval,
                thumbnail_width: self.config.thumbnail_width,
                raw_queue_frames: self.config.raw_queue_frames,
                resume_after,
                resume_keyframes_after,
                usage: &self.usage,
            },
            sinks,
        )
    }

    async fn run(
        mut self,
        mut input: mpsc::Receiver<MediaEvent>,
        mut pipeline: Pipeline,
        mut control: mpsc::Receiver<Control>,
    ) -> Result<Stats, Error> {
        let mut bus = pipeline
            .pipeline
            .bus()
            .expect("pipelines have a bus")
            .stream();
        let mut report = tokio::time::interval(DROP_REPORT_INTERVAL);
        let mut reported_drops = 0;
        loop {
            tokio::select! {
                event = input.recv() => match event {
                    Some(event) => {
                        if let Err(err) = self.input(&pipeline, event).await {
                            warn!(%err, "feeding the pipeline failed; restarting");
                            pipeline = self.restart(pipeline).await?;
                            bus = pipeline.pipeline.bus().expect("bus").stream();
                        }
                    }
                    None => break,
                },
                Some(msg) = bus.next() => {
                    if let gst::MessageView::Error(e) = msg.view() {
                        let err = bus_error(e);
                        warn!(%err, "pipeline error; restarting");
                        pipeline = self.restart(pipeline).await?;
                        bus = pipeline.pipeline.bus().expect("bus").stream();
                    }
                }
                Some(aac) = next_output(&mut self.opus) => self.audio(aac).await,
                Some(opus) = next_output(&mut self.to_opus) => {
                    let _ = self.realtime_audio.send(opus);
                }
                Some(Control::InjectError) = control.recv() => pipeline.inject_error(),
                _ = report.tick() => {
                    let dropped = self.stats.dropped + pipeline.dropped();
                    if dropped > reported_drops {
                        warn!(dropped, "transcoder cannot keep up; decoded frames dropped");
                        reported_drops = dropped;
                    }
                }
            }
        }
        // The publisher left: flush what is in flight, bounded in time.
        pipeline.end_of_stream();
        let drained = tokio::time::timeout(EOS_DRAIN_TIMEOUT, async {
            while let Some(msg) = bus.next().await {
                match msg.view() {
                    gst::MessageView::Eos(_) => return true,
                    gst::MessageView::Error(_) => return false,
                    _ => {}
                }
            }
            false
        })
        .await
        .unwrap_or(false);
        self.stats.dropped += pipeline.dropped();
        stop(pipeline).await;
        self.stats.output_overflows = self
            .outs
            .iter()
            .map(|o| o.overflows.load(Ordering::Relaxed))
            .sum();
        info!(drained, stats = ?self.stats, "transcode finished");
        Ok(self.stats.clone())
    }

    async fn input(&mut self, pipeline: &Pipeline, event: MediaEvent) -> Result<(), Error> {
        match event {
            MediaEvent::VideoConfig(c) => {
                if c != self.avc {
                    info!(
                        width = c.width,
                        height = c.height,
                        "source changed its sequence header"
                    );
                    pipeline.set_input(&c);
                    self.avc = c.clone();
                    self.reset_gop();
                    self.to_source(MediaEvent::Discontinuity).await;
                    self.to_source(MediaEvent::VideoConfig(c)).await;
                }
            }
            MediaEvent::Video(f) => {
                self.stats.frames_in += 1;
                self.usage.saw(f.pts);
                if f.keyframe {
                    self.reset_gop();
                    self.need_keyframe = false;
                }
                if self.need_keyframe {
                    self.stats.skipped_for_keyframe += 1;
                    self.ask_for_keyframe();
                    return Ok(());
                }
                if self.discontinuity_armed {
                    self.discontinuity_armed = false;
                    for o in &self.outs {
                        o.mark_discontinuity_at(f.pts);
                    }
                }
                if self.gop_complete {
                    if self.gop_bytes + f.data.len() > MAX_GOP_CACHE_BYTES {
                        self.gop_complete = false;
                        self.gop.clear();
                    } else {
                        self.gop_bytes += f.data.len();
                        self.gop.push(f.clone());
                    }
                }
                pipeline.push(&f)?;
                self.to_source(MediaEvent::Video(f)).await;
            }
            MediaEvent::Discontinuity => {
                self.discontinuity_armed = true;
                self.to_source(MediaEvent::Discontinuity).await;
            }
            e @ (MediaEvent::AudioConfig(_) | MediaEvent::Audio(_)) => {
                self.aac_to_opus(&e);
                self.audio(e).await;
            }
            MediaEvent::Opus(f) => {
                let _ = self.realtime_audio.send(MediaEvent::Opus(f.clone()));
                self.opus(&f);
            }
            MediaEvent::Metadata(_) => {}
        }
        Ok(())
    }

    /// AAC, from the publisher or from its Opus, goes to every rendition.
    async fn audio(&self, e: MediaEvent) {
        for o in &self.outs {
            let _ = o.tx.send(e.clone()).await;
        }
        self.to_source(e).await;
    }

    /// Opus goes into AAC. A conversion that failed is logged and started
    /// afresh at the next packet; video is never held up by audio.
    fn opus(&mut self, frame: &ingest::AudioFrame) {
        convert(&mut self.opus, frame, "opus to aac", Converter::opus_to_aac);
    }

    /// A publisher's AAC into Opus, only while real-time viewers listen.
    fn aac_to_opus(&mut self, e: &MediaEvent) {
        let frame = match e {
            MediaEvent::AudioConfig(c) => {
                self.aac_config = Some(c.clone());
                self.to_opus = None;
                return;
            }
            MediaEvent::Audio(a) => a,
            _ => return,
        };
        if self.realtime_audio.receiver_count() == 0 {
            self.to_opus = None;
            return;
        }
        let Some(config) = &self.aac_config else {
            return;
        };
        convert(&mut self.to_opus, frame, "aac to opus", || {
            Converter::aac_to_opus(config)
        });
    }

    fn ask_for_keyframe(&mut self) {
        let now = tokio::time::Instant::now();
        if self
            .last_keyframe_request
            .is_none_or(|t| now.duration_since(t) >= KEYFRAME_REQUEST_INTERVAL)
        {
            self.last_keyframe_request = Some(now);
            self.keyframes.request();
        }
    }

    fn reset_gop(&mut self) {
        self.gop.clear();
        self.gop_bytes = 0;
        self.gop_complete = true;
    }

    async fn to_source(&self, e: MediaEvent) {
        if let Some(tx) = &self.source {
            let _ = tx.send(e).await;
        }
    }

    async fn restart(&mut self, old: Pipeline) -> Result<Pipeline, Error> {
        self.stats.restarts += 1;
        self.stats.dropped += old.dropped();
        stop(old).await;
        if self.stats.restarts > MAX_RESTARTS {
            return Err(Error::TooManyRestarts(self.stats.restarts));
        }
        let backoff = RESTART_BACKOFF * 2u32.pow((self.stats.restarts - 1).min(3));
        tokio::time::sleep(backoff).await;
        // Resume after the frame the slowest rendition emitted last; each
        // rendition's first new frame is forced to an IDR.
        let lasts: Vec<Option<Duration>> = self.outs.iter().map(|o| o.last_pts()).collect();
        let resume_after = lasts.iter().copied().min().flatten();
        for o in &self.outs {
            o.mark_discontinuity_at(Duration::ZERO);
        }
        let pipeline = self.build(resume_after, lasts.into_iter().flatten().collect())?;
        pipeline.start()?;
        if self.gop_complete && !self.gop.is_empty() {
            for f in &self.gop {
                pipeline.push(f)?;
            }
        } else {
            self.need_keyframe = true;
        }
        info!(
            restarts = self.stats.restarts,
            ?resume_after,
            replayed = self.gop.len(),
            "pipeline restarted"
        );
        Ok(pipeline)
    }
}

/// Pushes `frame` into `conv`, started with `start` if there is none. A
/// conversion that fails is logged and dropped, to start afresh at the next
/// frame; nothing else waits for it.
fn convert(
    conv: &mut Option<Converter>,
    frame: &ingest::AudioFrame,
    what: &str,
    start: impl FnOnce() -> Result<Converter, Error>,
) {
    if conv.is_none() {
        match start() {
            Ok(c) => *conv = Some(c),
            Err(err) => {
                warn!(%err, what, "audio conversion did not start; its audio is dropped");
                return;
            }
        }
    }
    let c = conv.as_ref().expect("set above");
    if let Some(err) = c.push(frame).err().or_else(|| c.error()) {
        warn!(%err, what, "audio conversion failed; restarting it");
        *conv = None;
    }
}

/// The next output of a conversion; never, while there is none.
async fn next_output(conv: &mut Option<Converter>) -> Option<MediaEvent> {
    match conv {
        Some(o) => o.output.recv().await,
        None => std::future::pending().await,
    }
}

/// Stops a pipeline off the async threads (the state change waits for streaming threads).
async fn stop(pipeline: Pipeline) {
    let _ = tokio::task::spawn_blocking(move || drop(pipeline)).await;
}
