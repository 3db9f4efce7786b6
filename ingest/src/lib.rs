//! RTMP ingest: accepts OBS and ffmpeg publishers on `rtmp://HOST:1935/live/KEY`,
//! asks an [`Authorizer`] whether the key may publish, and demuxes each publish
//! into typed media ([`MediaEvent`]: H.264 and AAC configs and frames on a
//! monotonic 64-bit timeline) on a bounded channel. It knows nothing of
//! GStreamer or HTTP. rml_rtmp does the RTMP session work; every connection
//! runs in its own task, behind a [`chunk::ChunkGuard`] that enforces our limits,
//! with library panics contained to that connection.
//!
//! Layout:
//! - [`rtmp`]: the listener and per-connection task.
//! - [`chunk`]: the chunk-header guard in front of rml_rtmp (pure; fuzzed).
//! - [`amf`]: AMF nesting depth, measured without recursion (pure; fuzzed).
//! - [`flv`]: FLV tag bodies into media events (pure).
//! - [`timestamp`]: 32-bit RTMP time into a monotonic 64-bit timeline (pure).
//! - [`media`]: the media types the later stages consume.
//! - [`auth`]: the authorizer seam, key fingerprints, one publisher per broadcast.
//! - [`config`], [`error`].

pub mod amf;
pub mod auth;
pub mod chunk;
pub mod config;
pub mod error;
pub mod flv;
pub mod media;
pub mod rtmp;
pub mod timestamp;

pub use auth::{Authorizer, Grant, LiveGuard, LiveSet, Refusal, StaticKeys, fingerprint};
pub use config::{ConfigError, IngestConfig};
pub use error::Error;
pub use media::{
    AacConfig, AudioFrame, AvcConfig, KeyframeRequests, MediaEvent, Metadata, VideoFrame,
};
pub use rtmp::{Publish, run};
