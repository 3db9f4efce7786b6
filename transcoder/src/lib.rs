//! The transcoder: the only crate that links GStreamer. For each live publish
//! it decodes the source H.264 once, scales it down a ladder (720p, then 480p
//! from the 720p picture), and encodes every rendition with x264 with IDRs
//! forced at the same timestamps on a fixed cadence. AAC passes through
//! untouched; Opus (from WebRTC publishers) becomes AAC. Real-time feeds of
//! every rendition and of the audio as Opus serve WebRTC viewers. Output is one bounded stream of ingest's [`ingest::MediaEvent`]
//! per rendition, plus a JPEG thumbnail every few seconds.
//!
//! Layout:
//! - [`session`]: one publish: ladder planning, feeding, restarts, outputs.
//! - [`pipeline`]: the GStreamer pipeline (build, probes, appsinks).
//! - [`h264dec`]: the decoder element, on FFmpeg's libavcodec, zero-copy.
//! - [`swscale`]: the scaler element, on FFmpeg's libswscale.
//! - [`opus`]: Opus from WebRTC publishers into AAC, and AAC into Opus for
//!   WebRTC viewers, once per publish.
//! - [`ladder`]: which renditions a source gets and at what sizes (pure).
//! - [`usage`]: CPU and media time of a session, for the real-time factor.
//! - [`config`], [`error`].

pub mod config;
pub mod error;
pub mod h264dec;
pub mod ladder;
pub mod opus;
pub mod pipeline;
pub mod session;
pub mod swscale;
pub mod usage;

pub use config::TranscoderConfig;
pub use error::Error;
pub use ladder::RenditionSpec;
pub use session::{Realtime, RenditionInfo, RenditionOutput, Stats, Transcode, start};
