//! The GStreamer pipeline of one publish.
//!
//! ```text
//! appsrc (H.264 avc/au, live, time) ! originh264dec (libavcodec, 1 thread, zero-copy) ! videoconvert
//!   ! queue name=raw leaky=downstream max-size-buffers=N      <- the one place frames are dropped
//!     [src probe: drop replayed frames; force-key-unit at every cadence boundary]
//!   ! originswscale ! capsfilter W0xH0 ! tee t0
//!       t0. ! queue ! x264enc ! capsfilter avc/au/high ! appsink r0
//!       t0. ! queue ! originswscale ! capsfilter W1xH1 ! tee t1   (480p scaled from 720p)
//!             t1. ! queue ! x264enc ! capsfilter ! appsink r1
//!             t1. ! [probe: 1 frame per interval] queue leaky ! videoscale ! capsfilter ! jpegenc ! appsink thumb
//! ```
//!
//! The force-key-unit event travels through the tees, so every encoder makes
//! its IDR on the same frame: keyframes are aligned by construction. The
//! non-leaky queues in front of the encoders push back on the raw queue, so
//! when the machine cannot keep up every rendition loses the same frames.

use std::sync::Arc;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use gstreamer_video as gst_video;
use ingest::{AvcConfig, VideoFrame};

use crate::error::Error;
use crate::ladder::{Planned, Size};
use crate::usage::Usage;

/// Queued frames in front of each encoder. Small: they only decouple threads.
const ENCODER_QUEUE_FRAMES: u32 = 3;
/// Largest x264 keyframe interval, in frames. IDRs are forced on the cadence;
/// this only matters if forcing ever failed.
const X264_KEY_INT_MAX: u32 = 600;
/// JPEG quality of thumbnails.
const THUMBNAIL_JPEG_QUALITY: i32 = 75;

/// One encoded access unit from an appsink.
#[derive(Debug, Clone)]
pub struct EncodedFrame {
    /// The frame, on the input timeline.
    pub frame: VideoFrame,
    /// The encoder's avcC when it is new or changed.
    pub codec_data: Option<Bytes>,
}

/// Where encoded frames and thumbnails go. Called on GStreamer threads: must not block.
pub struct Sinks {
    /// One per planned rendition, in plan order.
    pub renditions: Vec<Box<dyn FnMut(EncodedFrame) + Send>>,
    /// Receives each thumbnail JPEG.
    pub thumbnail: Box<dyn FnMut(Bytes) + Send>,
}

/// What to build.
pub struct PipelineSpec<'a> {
    /// The source's decoder configuration.
    pub avc: &'a AvcConfig,
    /// Renditions, largest first.
    pub renditions: &'a [Planned],
    /// x264 speed preset.
    pub preset: &'a str,
    /// x264 threads per encoder (0: x264 chooses).
    pub x264_threads: u32,
    /// IDR cadence.
    pub keyframe_interval: Duration,
    /// Thumbnail cadence.
    pub thumbnail_interval: Duration,
    /// Thumbnail width.
    pub thumbnail_width: u32,
    /// Size of the leaky raw queue.
    pub raw_queue_frames: u32,
    /// After a restart: decoded frames up to this time were already emitted and are dropped.
    pub resume_after: Option<Duration>,
    /// Where the session's CPU time is accounted.
    pub usage: &'a Usage,
    /// After a restart: the last frame each rendition emitted. The first frame
    /// after each is forced to an IDR, so every rendition resumes on a keyframe
    /// even when one encoder had got further than another before the failure.
    pub resume_keyframes_after: Vec<Duration>,
}

/// Frame counters of the raw queue, for drop accounting and timestamp mapping.
#[derive(Debug)]
pub struct Counters {
    /// Decoded frames that entered the raw queue.
    pub raw_in: AtomicU64,
    /// Decoded frames that left it.
    pub raw_out: AtomicU64,
    /// PTS (ns) of the first frame that left the raw queue toward the encoders;
    /// `u64::MAX` until then.
    pub first_pts_ns: AtomicU64,
}

impl Default for Counters {
    fn default() -> Self {
        Self {
            raw_in: AtomicU64::new(0),
            raw_out: AtomicU64::new(0),
            first_pts_ns: AtomicU64::new(u64::MAX),
        }
    }
}

/// A built pipeline. Dropping it stops it (state Null).
pub struct Pipeline {
    /// The pipeline.
    pub pipeline: gst::Pipeline,
    /// Where input frames go.
    pub appsrc: gst_app::AppSrc,
    /// Drop accounting.
    pub counters: Arc<Counters>,
}

/// Initialises GStreamer once per process.
pub fn init() -> Result<(), Error> {
    static INIT: OnceLock<Result<(), String>> = OnceLock::new();
    INIT.get_or_init(|| {
        gst::init().map_err(|e| e.to_string())?;
        crate::h264dec::register().map_err(|e| e.to_string())?;
        crate::swscale::register().map_err(|e| e.to_string())
    })
    .clone()
    .map_err(Error::Init)
}

fn package_of(factory: &str) -> &'static str {
    match factory {
        "x264enc" => "gstreamer1.0-plugins-ugly",
        "jpegenc" => "gstreamer1.0-plugins-good",
        "queue" | "tee" | "capsfilter" => "libgstreamer1.0-0",
        _ => "gstreamer1.0-plugins-base",
    }
}

fn make(factory: &'static str, name: &str) -> Result<gst::Element, Error> {
    gst::ElementFactory::make(factory)
        .name(name)
        .build()
        .map_err(|_| Error::MissingElement {
            element: factory,
            package: package_of(factory),
        })
}

fn capsfilter(name: &str, caps: gst::Caps) -> Result<gst::Element, Error> {
    let f = make("capsfilter", name)?;
    f.set_property("caps", caps);
    Ok(f)
}

fn raw_caps(size: Size) -> gst::Caps {
    gst::Caps::builder("video/x-raw")
        .field("width", size.width as i32)
        .field("height", size.height as i32)
        .field("pixel-aspect-ratio", gst::Fraction::new(1, 1))
        .build()
}

/// Caps for the appsrc: the source's avcC as codec_data.
pub fn input_caps(avc: &AvcConfig) -> gst::Caps {
    let mut b = gst::Caps::builder("video/x-h264")
        .field("stream-format", "avc")
        .field("alignment", "au")
        .field("codec_data", gst::Buffer::from_slice(avc.record.clone()))
        .field("width", avc.width as i32)
        .field("height", avc.height as i32);
    if let Some(fps) = avc.frame_rate {
        let f = gst::Fraction::approximate_f64(fps).unwrap_or_else(|| gst::Fraction::new(30, 1));
        b = b.field("framerate", f);
    }
    b.build()
}

fn link(elements: &[&gst::Element]) -> Result<(), Error> {
    gst::Element::link_many(elements.iter().copied()).map_err(|e| Error::Build(e.to_string()))
}

/// Builds (but does not start) the pipeline.
pub fn build_pipeline(spec: &PipelineSpec<'_>, sinks: Sinks) -> Result<Pipeline, Error> {
    init()?;
    if spec.renditions.is_empty() || spec.renditions.len() != sinks.renditions.len() {
        return Err(Error::Build("one sink per rendition is required".into()));
    }
    let pipeline = gst::Pipeline::with_name("transcode");
    let appsrc = gst_app::AppSrc::builder()
        .name("src")
        .caps(&input_caps(spec.avc))
        .is_live(true)
        .format(gst::Format::Time)
        // Bounded: far more than the raw queue downstream ever lets build up.
        .max_bytes(64 << 20)
        .block(false)
        .build();
    // libavcodec, one thread, pictures passed on without a copy.
    let decode = make(crate::h264dec::FACTORY, "decode")?;
    let convert = make("videoconvert", "convert")?;
    let raw = make("queue", "raw")?;
    raw.set_property("max-size-buffers", spec.raw_queue_frames);
    raw.set_property("max-size-bytes", 0u32);
    raw.set_property("max-size-time", 0u64);
    raw.set_property_from_str("leaky", "downstream");
    pipeline
        .add_many([appsrc.upcast_ref(), &decode, &convert, &raw])
        .map_err(|e| Error::Build(e.to_string()))?;
    link(&[appsrc.upcast_ref(), &decode, &convert, &raw])?;

    let counters = Arc::new(Counters::default());
    install_raw_probes(&raw, spec, counters.clone())?;

    let mut upstream = raw.clone();
    let mut last_tee = None;
    for (i, (r, sink)) in spec.renditions.iter().zip(sinks.renditions).enumerate() {
        let q = make("queue", &format!("scaleq{i}"))?;
        // libswscale: a third of videoscale's CPU for the same bilinear scaling.
        let scale = make(crate::swscale::FACTORY, &format!("scale{i}"))?;
        let caps = capsfilter(&format!("size{i}"), raw_caps(r.size))?;
        let tee = make("tee", &format!("t{i}"))?;
        let encq = make("queue", &format!("encq{i}"))?;
        encq.set_property("max-size-buffers", ENCODER_QUEUE_FRAMES);
        encq.set_property("max-size-bytes", 0u32);
        encq.set_property("max-size-time", 0u64);
        let enc = make("x264enc", &format!("enc{i}"))?;
        enc.set_property("bitrate", r.spec.bitrate_kbps);
        enc.set_property_from_str("tune", "zerolatency");
        enc.set_property_from_str("speed-preset", spec.preset);
        enc.set_property("bframes", 0u32);
        enc.set_property("b-adapt", false);
        enc.set_property("key-int-max", X264_KEY_INT_MAX);
        // No scene-cut IDRs: they would land at different frames per rendition.
        enc.set_property("option-string", "scenecut=0");
        enc.set_property("threads", spec.x264_threads);
        let enc_caps = capsfilter(
            &format!("h264caps{i}"),
            gst::Caps::builder("video/x-h264")
                .field("stream-format", "avc")
                .field("alignment", "au")
                .field("profile", "high")
                .build(),
        )?;
        let appsink = appsink(&format!("r{i}"), rendition_callback(sink, counters.clone()));
        let elements = [
            &q,
            &scale,
            &caps,
            &tee,
            &encq,
            &enc,
            &enc_caps,
            appsink.upcast_ref(),
        ];
        pipeline
            .add_many(elements)
            .map_err(|e| Error::Build(e.to_string()))?;
        if i == 0 {
            // The first scaler hangs directly off the raw queue; no extra queue needed.
            pipeline
                .remove(&q)
                .map_err(|e| Error::Build(e.to_string()))?;
            link(&[&upstream, &scale, &caps, &tee])?;
        } else {
            link(&[&upstream, &q, &scale, &caps, &tee])?;
        }
        link(&[&tee, &encq, &enc, &enc_caps, appsink.upcast_ref()])?;
        upstream = tee.clone();
        last_tee = Some((tee, r.size));
    }

    if let Some((tee, size)) = last_tee {
        add_thumbnail_branch(&pipeline, &tee, size, spec, sinks.thumbnail)?;
    }
    name_streaming_threads(&pipeline, spec.usage);
    Ok(Pipeline {
        pipeline,
        appsrc,
        counters,
    })
}

/// Drop accounting, replay skipping and keyframe forcing on the raw queue.
fn install_raw_probes(
    raw: &gst::Element,
    spec: &PipelineSpec<'_>,
    counters: Arc<Counters>,
) -> Result<(), Error> {
    let sink = raw
        .static_pad("sink")
        .ok_or(Error::Build("raw sink".into()))?;
    let src = raw
        .static_pad("src")
        .ok_or(Error::Build("raw src".into()))?;
    let c = counters.clone();
    sink.add_probe(gst::PadProbeType::BUFFER, move |_, _| {
        c.raw_in.fetch_add(1, Ordering::Relaxed);
        gst::PadProbeReturn::Ok
    });
    let interval = spec.keyframe_interval.as_nanos().max(1) as u64;
    let resume_after = spec.resume_after.map(|d| d.as_nanos() as u64);
    let resume_keys = std::sync::Mutex::new(
        spec.resume_keyframes_after
            .iter()
            .map(|d| d.as_nanos() as u64)
            .collect::<Vec<_>>(),
    );
    // u64::MAX: no frame seen yet.
    let next_key = AtomicU64::new(u64::MAX);
    src.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
        counters.raw_out.fetch_add(1, Ordering::Relaxed);
        let Some(pts) = info.buffer().and_then(|b| b.pts()) else {
            return gst::PadProbeReturn::Ok;
        };
        let t = pts.nseconds();
        if resume_after.is_some_and(|r| t <= r) {
            return consume(info);
        }
        let _ = counters.first_pts_ns.compare_exchange(
            u64::MAX,
            t,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
        let resume_key = {
            let mut keys = resume_keys.lock().unwrap_or_else(|p| p.into_inner());
            let before = keys.len();
            keys.retain(|k| t <= *k);
            keys.len() != before
        };
        let due = next_key.load(Ordering::Relaxed);
        if due == u64::MAX || t >= due || resume_key {
            // The first frame is an IDR anyway; every later boundary k * interval forces one.
            if due == u64::MAX || t >= due {
                next_key.store((t / interval + 1) * interval, Ordering::Relaxed);
            }
            // No running time: the event is serialized right before this frame, so
            // "the next frame" is this one. (A running time would be compared with
            // x264enc's internal one, which carries its 1000-hour offset.)
            let event = gst_video::DownstreamForceKeyUnitEvent::builder()
                .timestamp(pts)
                .all_headers(true)
                .build();
            pad.push_event(event);
        }
        gst::PadProbeReturn::Ok
    });
    Ok(())
}

/// Drops a buffer inside a probe by consuming it (returning `Drop` from a
/// sink-pad probe triggers a GStreamer-CRITICAL unref of NULL with 1.22).
fn consume(info: &mut gst::PadProbeInfo) -> gst::PadProbeReturn {
    drop(info.data.take());
    gst::PadProbeReturn::Handled
}

/// Every streaming thread (the source's and each queue's) takes the session's
/// name on the first thing it pushes, before x264 starts its own threads from
/// it, so that [`Usage::cpu_seconds`] finds them all.
fn name_streaming_threads(pipeline: &gst::Pipeline, usage: &Usage) {
    for e in pipeline.iterate_elements().into_iter().flatten() {
        let starts_thread =
            e.is::<gst_app::AppSrc>() || e.factory().is_some_and(|f| f.name() == "queue");
        if let (true, Some(pad)) = (starts_thread, e.static_pad("src")) {
            let usage = usage.clone();
            // The first event (stream-start) comes before the caps that make
            // x264 start its threads.
            let first = gst::PadProbeType::EVENT_DOWNSTREAM | gst::PadProbeType::BUFFER;
            pad.add_probe(first, move |_, _| {
                usage.name_this_thread();
                gst::PadProbeReturn::Remove
            });
        }
    }
}

fn add_thumbnail_branch(
    pipeline: &gst::Pipeline,
    tee: &gst::Element,
    size: Size,
    spec: &PipelineSpec<'_>,
    mut sink: Box<dyn FnMut(Bytes) + Send>,
) -> Result<(), Error> {
    let q = make("queue", "thumbq")?;
    q.set_property("max-size-buffers", 1u32);
    q.set_property_from_str("leaky", "downstream");
    let scale = make("videoscale", "thumbscale")?;
    let width = spec.thumbnail_width.min(size.width) & !1;
    let height =
        ((u64::from(width) * u64::from(size.height) / u64::from(size.width)) as u32 & !1).max(2);
    let caps = capsfilter("thumbsize", raw_caps(Size { width, height }))?;
    let jpeg = make("jpegenc", "thumbjpeg")?;
    jpeg.set_property("quality", THUMBNAIL_JPEG_QUALITY);
    let appsink = appsink(
        "thumb",
        Box::new(move |sample: &gst::Sample| {
            if let Some(buf) = sample.buffer()
                && let Ok(map) = buf.map_readable()
            {
                sink(Bytes::copy_from_slice(&map));
            }
        }),
    );
    pipeline
        .add_many([&q, &scale, &caps, &jpeg, appsink.upcast_ref()])
        .map_err(|e| Error::Build(e.to_string()))?;
    link(&[tee, &q, &scale, &caps, &jpeg, appsink.upcast_ref()])?;
    // Only one frame per interval enters the branch, so scaling and JPEG cost nothing in between.
    let interval = spec.thumbnail_interval.as_nanos() as u64;
    let next = AtomicU64::new(u64::MAX);
    let pad = q
        .static_pad("sink")
        .ok_or(Error::Build("thumb sink".into()))?;
    pad.add_probe(gst::PadProbeType::BUFFER, move |_, info| {
        let Some(t) = info.buffer().and_then(|b| b.pts()).map(|p| p.nseconds()) else {
            return consume(info);
        };
        let due = next.load(Ordering::Relaxed);
        if due == u64::MAX || t >= due {
            next.store(t + interval, Ordering::Relaxed);
            gst::PadProbeReturn::Ok
        } else {
            consume(info)
        }
    });
    Ok(())
}

fn appsink(name: &str, mut on_sample: Box<dyn FnMut(&gst::Sample) + Send>) -> gst_app::AppSink {
    gst_app::AppSink::builder()
        .name(name)
        .sync(false)
        .callbacks(
            gst_app::AppSinkCallbacks::builder()
                .new_sample(move |sink| {
                    let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                    on_sample(&sample);
                    Ok(gst::FlowSuccess::Ok)
                })
                .build(),
        )
        .build()
}

/// Turns appsink samples into [`EncodedFrame`]s for one rendition.
///
/// x264enc moves its output timestamps: it adds 1000 hours (to keep DTS
/// positive) and re-bases on running time. Every frame that leaves the raw
/// queue reaches every encoder, and x264 does not reorder without B-frames, so
/// the first output frame is the first frame that left the raw queue: the
/// difference between the two is the offset to subtract, measured, not assumed.
fn rendition_callback(
    mut sink: Box<dyn FnMut(EncodedFrame) + Send>,
    counters: Arc<Counters>,
) -> Box<dyn FnMut(&gst::Sample) + Send> {
    let mut last_codec: Option<Bytes> = None;
    let mut offset_ns: Option<i128> = None;
    Box::new(move |sample: &gst::Sample| {
        let Some(buffer) = sample.buffer_owned() else {
            return;
        };
        let codec = codec_data(sample);
        let codec_data = if codec.is_some() && codec != last_codec {
            last_codec.clone_from(&codec);
            codec
        } else {
            None
        };
        let Some(out_pts) = buffer.pts() else {
            return;
        };
        let out_pts = i128::from(out_pts.nseconds());
        let offset = *offset_ns.get_or_insert_with(|| {
            let first_in = counters.first_pts_ns.load(Ordering::Relaxed);
            out_pts - i128::from(if first_in == u64::MAX { 0 } else { first_in })
        });
        let to_input = |ns: i128| Duration::from_nanos((ns - offset).max(0) as u64);
        let pts = to_input(out_pts);
        let dts = buffer
            .dts()
            .map(|d| to_input(i128::from(d.nseconds())))
            .unwrap_or(pts)
            .min(pts);
        let keyframe = !buffer.flags().contains(gst::BufferFlags::DELTA_UNIT);
        let Ok(mapped) = buffer.into_mapped_buffer_readable() else {
            return;
        };
        sink(EncodedFrame {
            frame: VideoFrame {
                dts,
                pts,
                keyframe,
                data: Bytes::from_owner(mapped),
            },
            codec_data,
        });
    })
}

/// The `codec_data` of a sample's caps (avcC, AudioSpecificConfig), if any.
pub fn codec_data(sample: &gst::Sample) -> Option<Bytes> {
    sample
        .caps()
        .and_then(|c| c.structure(0))
        .and_then(|s| s.get::<gst::Buffer>("codec_data").ok())
        .and_then(|b| b.map_readable().ok().map(|m| Bytes::copy_from_slice(&m)))
}

impl Pipeline {
    /// Starts the pipeline.
    pub fn start(&self) -> Result<(), Error> {
        self.pipeline
            .set_state(gst::State::Playing)
            .map(|_| ())
            .map_err(|e| Error::StateChange(e.to_string()))
    }

    /// Queues one source access unit.
    pub fn push(&self, frame: &VideoFrame) -> Result<(), Error> {
        let mut buf = gst::Buffer::from_slice(frame.data.clone());
        {
            let b = buf.get_mut().expect("a fresh buffer is writable");
            b.set_pts(gst::ClockTime::from_nseconds(frame.pts.as_nanos() as u64));
            b.set_dts(gst::ClockTime::from_nseconds(frame.dts.as_nanos() as u64));
            if !frame.keyframe {
                b.set_flags(gst::BufferFlags::DELTA_UNIT);
            }
        }
        self.appsrc
            .push_buffer(buf)
            .map(|_| ())
            .map_err(|e| Error::Build(format!("appsrc push: {e:?}")))
    }

    /// Switches the input to a new sequence header (a mid-stream resolution change).
    pub fn set_input(&self, avc: &AvcConfig) {
        self.appsrc.set_caps(Some(&input_caps(avc)));
    }

    /// Signals the end of input; the bus reports EOS once everything is out.
    pub fn end_of_stream(&self) {
        let _ = self.appsrc.end_of_stream();
    }

    /// Frames dropped by the raw queue so far (frames still queued are not counted).
    pub fn dropped(&self) -> u64 {
        let level: u32 = self
            .pipeline
            .by_name("raw")
            .map(|q| q.property("current-level-buffers"))
            .unwrap_or(0);
        self.counters
            .raw_in
            .load(Ordering::Relaxed)
            .saturating_sub(self.counters.raw_out.load(Ordering::Relaxed) + u64::from(level))
    }

    /// Posts an error on the bus as if an element had failed (fault-injection for tests).
    #[doc(hidden)]
    pub fn inject_error(&self) {
        gst::element_error!(self.appsrc, gst::StreamError::Failed, ["injected fault"]);
    }
}

impl Drop for Pipeline {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// Turns a bus error message into our typed error.
pub fn bus_error(err: &gst::message::Error) -> Error {
    Error::Bus {
        element: err
            .src()
            .map(|s| s.path_string().to_string())
            .unwrap_or_default(),
        message: err.error().to_string(),
        debug: err.debug().map(|d| d.to_string()).unwrap_or_default(),
    }
}
