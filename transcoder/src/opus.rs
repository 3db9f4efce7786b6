//! Audio between the two codecs of the two worlds, once per publish: Opus
//! from WebRTC publishers into AAC, so every LL-HLS stage sees AAC only, and
//! AAC from RTMP publishers into Opus for WebRTC viewers:
//!
//! ```text
//! appsrc (audio/x-opus) ! opusdec  ! audioconvert ! audioresample ! avenc_aac ! appsink
//! appsrc (audio/mpeg)   ! avdec_aac ! audioconvert ! audioresample ! opusenc  ! appsink
//! ```
//!
//! Timestamps pass through: an output frame carries the time of the audio it
//! was encoded from (encoder delays are GStreamer's to account).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use bytes::Bytes;
use gstreamer as gst;
use gstreamer::prelude::*;
use gstreamer_app as gst_app;
use ingest::{AacConfig, AudioFrame, MediaEvent};
use tokio::sync::mpsc;
use tracing::warn;

use crate::error::Error;

/// AAC bitrate for audio that arrives as Opus: the rate our own RTMP guidance
/// asks publishers for.
pub const AAC_BITRATE: i32 = 128_000;
/// Opus bitrate for WebRTC viewers: transparent for stereo music.
pub const OPUS_BITRATE: i32 = 96_000;
/// AAC events buffered between the encoder and the session (about 5 s).
const OUTPUT_CAPACITY: usize = 256;
/// Opus's RTP clock and the rate every WebRTC Opus stream is decoded at.
const OPUS_RATE: i32 = 48_000;

/// A running conversion (Opus → AAC, or AAC → Opus).
pub struct Converter {
    pipeline: gst::Pipeline,
    appsrc: gst_app::AppSrc,
    /// AAC configs and frames, in order.
    pub output: mpsc::Receiver<MediaEvent>,
    dropped: Arc<AtomicU64>,
}

impl Converter {
    /// Opus → AAC, for WebRTC publishers.
    pub fn opus_to_aac() -> Result<Self, Error> {
        crate::pipeline::init()?;
        let input = gst::Caps::builder("audio/x-opus")
            .field("rate", OPUS_RATE)
            .field("channels", 2)
            .field("channel-mapping-family", 0)
            .build();
        let output = gst::Caps::builder("audio/mpeg")
            .field("mpegversion", 4i32)
            .field("stream-format", "raw")
            .build();
        // avenc_aac has no rank, so nothing picks it by itself: it is named.
        Self::new(
            input,
            ("opusdec", "gstreamer1.0-plugins-base"),
            ("avenc_aac", "gstreamer1.0-libav", AAC_BITRATE),
            output,
            aac_events,
        )
    }

    /// AAC → Opus, for WebRTC viewers of RTMP publishers.
    pub fn aac_to_opus(config: &AacConfig) -> Result<Self, Error> {
        crate::pipeline::init()?;
        let input = gst::Caps::builder("audio/mpeg")
            .field("mpegversion", 4i32)
            .field("stream-format", "raw")
            .field("rate", config.sample_rate_hz as i32)
            .field("channels", i32::from(config.channels))
            .field("codec_data", gst::Buffer::from_slice(config.asc.clone()))
            .build();
        let output = gst::Caps::builder("audio/x-opus").build();
        Self::new(
            input,
            ("avdec_aac", "gstreamer1.0-libav"),
            ("opusenc", "gstreamer1.0-plugins-base", OPUS_BITRATE),
            output,
            opus_events,
        )
    }

    fn new<F>(
        input: gst::Caps,
        decoder: (&'static str, &'static str),
        encoder: (&'static str, &'static str, i32),
        output: gst::Caps,
        events: fn(mpsc::Sender<MediaEvent>, Arc<AtomicU64>) -> F,
    ) -> Result<Self, Error>
    where
        F: FnMut(&gst::Sample) + Send + 'static,
    {
        let make = |factory: &'static str, package: &'static str| {
            gst::ElementFactory::make(factory)
                .build()
                .map_err(|_| Error::MissingElement {
                    element: factory,
                    package,
                })
        };
        let appsrc = gst_app::AppSrc::builder()
            .caps(&input)
            .format(gst::Format::Time)
            .build();
        let dec = make(decoder.0, decoder.1)?;
        let convert = make("audioconvert", "gstreamer1.0-plugins-base")?;
        let resample = make("audioresample", "gstreamer1.0-plugins-base")?;
        let enc = make(encoder.0, encoder.1)?;
        enc.set_property("bitrate", encoder.2);
        // Output times count samples from the first input time, instead of
        // following each input time: RTMP's are rounded to milliseconds, and
        // a jittery RTP clock makes WebRTC receivers conceal audio.
        enc.set_property("perfect-timestamp", true);
        let caps = make("capsfilter", "libgstreamer1.0-0")?;
        caps.set_property("caps", output);
        let (tx, output) = mpsc::channel(OUTPUT_CAPACITY);
        let dropped = Arc::new(AtomicU64::new(0));
        let appsink = gst_app::AppSink::builder()
            .sync(false)
            .callbacks(
                gst_app::AppSinkCallbacks::builder()
                    .new_sample({
                        let mut emit = events(tx, dropped.clone());
                        move |sink| {
                            let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                            emit(&sample);
                            Ok(gst::FlowSuccess::Ok)
                        }
                    })
                    .build(),
            )
            .build();
        let pipeline = gst::Pipeline::with_name(&format!("{}-{}", decoder.0, encoder.0));
        let elements = [
            appsrc.upcast_ref(),
            &dec,
            &convert,
            &resample,
            &enc,
            &caps,
            appsink.upcast_ref(),
        ];
        pipeline
            .add_many(elements)
            .and_then(|_| gst::Element::link_many(elements))
            .map_err(|e| Error::Build(format!("{} to {}: {e}", decoder.0, encoder.0)))?;
        pipeline
            .set_state(gst::State::Playing)
            .map_err(|e| Error::StateChange(e.to_string()))?;
        Ok(Self {
            pipeline,
            appsrc,
            output,
            dropped,
        })
    }

    /// Queues one input frame (an Opus packet, or a raw AAC frame).
    pub fn push(&self, frame: &AudioFrame) -> Result<(), Error> {
        let mut buf = gst::Buffer::from_slice(frame.data.clone());
        buf.get_mut()
            .expect("a fresh buffer is writable")
            .set_pts(gst::ClockTime::from_nseconds(frame.pts.as_nanos() as u64));
        self.appsrc
            .push_buffer(buf)
            .map(|_| ())
            .map_err(|e| Error::Build(format!("audio appsrc push: {e:?}")))
    }

    /// Output frames dropped because the session did not take them in time.
    pub fn dropped(&self) -> u64 {
        self.dropped.load(Ordering::Relaxed)
    }

    /// The first error the conversion posted, if any.
    pub fn error(&self) -> Option<Error> {
        let bus = self.pipeline.bus()?;
        let msg = bus.pop_filtered(&[gst::MessageType::Error])?;
        match msg.view() {
            gst::MessageView::Error(e) => Some(crate::pipeline::bus_error(e)),
            _ => None,
        }
    }
}

impl Drop for Converter {
    fn drop(&mut self) {
        let _ = self.pipeline.set_state(gst::State::Null);
    }
}

/// Turns appsink samples into an AAC config (first, and whenever it changes)
/// and AAC frames; never blocks the streaming thread.
fn aac_events(
    tx: mpsc::Sender<MediaEvent>,
    dropped: Arc<AtomicU64>,
) -> impl FnMut(&gst::Sample) + Send {
    let mut config: Option<Bytes> = None;
    move |sample| {
        let Some(buffer) = sample.buffer() else {
            return;
        };
        let asc = crate::pipeline::codec_data(sample);
        let mut events = Vec::with_capacity(2);
        if let Some(asc) = asc
            && config.as_ref() != Some(&asc)
        {
            match AacConfig::parse(asc.clone()) {
                Ok(c) => events.push(MediaEvent::AudioConfig(c)),
                Err(err) => warn!(%err, "avenc_aac produced an unparseable AudioSpecificConfig"),
            }
            config = Some(asc);
        }
        let (Some(pts), Ok(map)) = (buffer.pts(), buffer.map_readable()) else {
            return;
        };
        events.push(MediaEvent::Audio(AudioFrame {
            pts: Duration::from_nanos(pts.nseconds()),
            data: Bytes::copy_from_slice(&map),
        }));
        send(&tx, &dropped, events);
    }
}

/// Turns appsink samples into Opus packets; never blocks the streaming thread.
fn opus_events(
    tx: mpsc::Sender<MediaEvent>,
    dropped: Arc<AtomicU64>,
) -> impl FnMut(&gst::Sample) + Send {
    move |sample| {
        let Some(buffer) = sample.buffer() else {
            return;
        };
        let (Some(pts), Ok(map)) = (buffer.pts(), buffer.map_readable()) else {
            return;
        };
        let frame = MediaEvent::Opus(AudioFrame {
            pts: Duration::from_nanos(pts.nseconds()),
            data: Bytes::copy_from_slice(&map),
        });
        send(&tx, &dropped, vec![frame]);
    }
}

fn send(tx: &mpsc::Sender<MediaEvent>, dropped: &AtomicU64, events: Vec<MediaEvent>) {
    for e in events {
        if tx.try_send(e).is_err() {
            dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Opus packets from GStreamer's own encoder, as a browser would send them.
    fn opus_packets(seconds: u32) -> Vec<AudioFrame> {
        crate::pipeline::init().unwrap();
        let p = gst::parse::launch(&format!(
            "audiotestsrc num-buffers={} samplesperbuffer=960 ! audio/x-raw,rate=48000,channels=2 \
             ! opusenc frame-size=20 ! appsink name=out sync=false",
            seconds * 50
        ))
        .unwrap()
        .downcast::<gst::Pipeline>()
        .unwrap();
        let sink = p
            .by_name("out")
            .unwrap()
            .downcast::<gst_app::AppSink>()
            .unwrap();
        p.set_state(gst::State::Playing).unwrap();
        let mut out = Vec::new();
        while let Ok(s) = sink.pull_sample() {
            let b = s.buffer().unwrap();
            out.push(AudioFrame {
                pts: Duration::from_nanos(b.pts().unwrap().nseconds()),
                data: Bytes::copy_from_slice(&b.map_readable().unwrap()),
            });
        }
        p.set_state(gst::State::Null).unwrap();
        out
    }

    #[tokio::test]
    async fn opus_becomes_aac_lc_with_its_timestamps() {
        let packets = opus_packets(2);
        assert!(packets.len() >= 100, "{} Opus packets", packets.len());
        let mut conv = Converter::opus_to_aac().unwrap();
        // The browser's clock does not start at zero.
        let base = Duration::from_secs(7);
        for p in &packets {
            conv.push(&AudioFrame {
                pts: p.pts + base,
                data: p.data.clone(),
            })
            .unwrap();
        }
        conv.appsrc.end_of_stream().unwrap();
        let mut config = None;
        let mut frames = Vec::new();
        while let Ok(Some(e)) =
            tokio::time::timeout(Duration::from_secs(5), conv.output.recv()).await
        {
            match e {
                MediaEvent::AudioConfig(c) => config = Some(c),
                MediaEvent::Audio(a) => frames.push(a.pts),
                other => panic!("unexpected {other:?}"),
            }
            if frames.len() >= 90 {
                break;
            }
        }
        let config = config.expect("an AAC config first");
        assert_eq!(
            (config.object_type, config.sample_rate_hz, config.channels),
            (2, 48_000, 2)
        );
        // 2 s of 48 kHz audio is 93.75 AAC frames of 1024 samples, 21.3 ms apart.
        assert!(frames.len() >= 90, "{} AAC frames", frames.len());
        assert!(frames.windows(2).all(|w| w[1] > w[0]));
        let first = frames[0];
        assert!(
            first >= base - Duration::from_millis(50) && first <= base + Duration::from_millis(50),
            "first AAC frame at {first:?}, Opus started at {base:?}"
        );
        let step = (frames[89] - frames[0]) / 89;
        assert!(
            (step.as_micros() as i64 - 21_333).abs() < 200,
            "AAC frames {step:?} apart"
        );
        assert_eq!(conv.dropped(), 0);
        assert!(conv.error().is_none());
    }

    #[tokio::test]
    async fn aac_becomes_opus_with_its_timestamps() {
        // AAC made from Opus, then back: 20-ms Opus packets in order.
        let mut to_aac = Converter::opus_to_aac().unwrap();
        for p in opus_packets(2) {
            to_aac.push(&p).unwrap();
        }
        to_aac.appsrc.end_of_stream().unwrap();
        let mut aac = Vec::new();
        let mut config = None;
        while let Ok(Some(e)) =
            tokio::time::timeout(Duration::from_secs(1), to_aac.output.recv()).await
        {
            match e {
                MediaEvent::AudioConfig(c) => config = Some(c),
                MediaEvent::Audio(a) => aac.push(a),
                _ => {}
            }
        }
        let mut to_opus = Converter::aac_to_opus(&config.unwrap()).unwrap();
        for a in &aac {
            to_opus.push(a).unwrap();
        }
        to_opus.appsrc.end_of_stream().unwrap();
        let mut pts = Vec::new();
        while let Ok(Some(e)) =
            tokio::time::timeout(Duration::from_secs(1), to_opus.output.recv()).await
        {
            let MediaEvent::Opus(o) = e else {
                panic!("{e:?}")
            };
            assert!(!o.data.is_empty());
            pts.push(o.pts);
        }
        assert!(pts.len() >= 90, "{} Opus packets", pts.len());
        assert!(pts.windows(2).all(|w| w[1] > w[0]));
        // opusenc's default 20-ms frames (the first one shortened by its lookahead).
        let step = (pts[80] - pts[10]) / 70;
        assert!(
            (step.as_micros() as i64 - 20_000).abs() < 200,
            "Opus packets {step:?} apart"
        );
        assert!(to_opus.error().is_none());
    }
}
