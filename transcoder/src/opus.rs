//! Opus from WebRTC publishers into AAC, once per publish, so that every later
//! stage (packaging, LL-HLS players) sees AAC only:
//!
//! ```text
//! appsrc (audio/x-opus) ! opusdec ! audioconvert ! audioresample ! avenc_aac ! appsink
//! ```
//!
//! Timestamps pass through: an AAC frame carries the time of the Opus audio
//! it was encoded from (the encoder's priming delay is GStreamer's to account).

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
/// AAC events buffered between the encoder and the session (about 5 s).
const OUTPUT_CAPACITY: usize = 256;
/// Opus's RTP clock and the rate every WebRTC Opus stream is decoded at.
const OPUS_RATE: i32 = 48_000;

/// A running Opus → AAC conversion.
pub struct OpusToAac {
    pipeline: gst::Pipeline,
    appsrc: gst_app::AppSrc,
    /// AAC configs and frames, in order.
    pub output: mpsc::Receiver<MediaEvent>,
    dropped: Arc<AtomicU64>,
}

impl OpusToAac {
    /// Builds and starts the conversion.
    pub fn new() -> Result<Self, Error> {
        crate::pipeline::init()?;
        let make = |factory: &'static str, package: &'static str| {
            gst::ElementFactory::make(factory)
                .build()
                .map_err(|_| Error::MissingElement {
                    element: factory,
                    package,
                })
        };
        let appsrc = gst_app::AppSrc::builder()
            .caps(
                &gst::Caps::builder("audio/x-opus")
                    .field("rate", OPUS_RATE)
                    .field("channels", 2)
                    .field("channel-mapping-family", 0)
                    .build(),
            )
            .format(gst::Format::Time)
            .build();
        let dec = make("opusdec", "gstreamer1.0-plugins-base")?;
        let convert = make("audioconvert", "gstreamer1.0-plugins-base")?;
        let resample = make("audioresample", "gstreamer1.0-plugins-base")?;
        // avenc_aac has no rank, so nothing picks it by itself: it is named.
        let enc = make("avenc_aac", "gstreamer1.0-libav")?;
        enc.set_property("bitrate", AAC_BITRATE);
        let caps = make("capsfilter", "libgstreamer1.0-0")?;
        caps.set_property(
            "caps",
            gst::Caps::builder("audio/mpeg")
                .field("mpegversion", 4i32)
                .field("stream-format", "raw")
                .build(),
        );
        let (tx, output) = mpsc::channel(OUTPUT_CAPACITY);
        let dropped = Arc::new(AtomicU64::new(0));
        let appsink = gst_app::AppSink::builder()
            .sync(false)
            .callbacks(
                gst_app::AppSinkCallbacks::builder()
                    .new_sample({
                        let mut emit = aac_events(tx, dropped.clone());
                        move |sink| {
                            let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                            emit(&sample);
                            Ok(gst::FlowSuccess::Ok)
                        }
                    })
                    .build(),
            )
            .build();
        let pipeline = gst::Pipeline::with_name("opus-to-aac");
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
            .map_err(|e| Error::Build(format!("opus to aac: {e}")))?;
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

    /// Queues one Opus packet.
    pub fn push(&self, frame: &AudioFrame) -> Result<(), Error> {
        let mut buf = gst::Buffer::from_slice(frame.data.clone());
        buf.get_mut()
            .expect("a fresh buffer is writable")
            .set_pts(gst::ClockTime::from_nseconds(frame.pts.as_nanos() as u64));
        self.appsrc
            .push_buffer(buf)
            .map(|_| ())
            .map_err(|e| Error::Build(format!("opus appsrc push: {e:?}")))
    }

    /// AAC frames dropped because the session did not take them in time.
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

impl Drop for OpusToAac {
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
        for e in events {
            if tx.try_send(e).is_err() {
                dropped.fetch_add(1, Ordering::Relaxed);
            }
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
        let mut conv = OpusToAac::new().unwrap();
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
}
