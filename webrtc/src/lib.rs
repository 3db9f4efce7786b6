//! WebRTC for the origin, on [str0m](https://docs.rs/str0m): WHIP ingest
//! (RFC 9725) from browsers and OBS. One UDP socket serves every peer (ICE
//! lite, host candidates on the advertised addresses); one task owns every
//! session. A WHIP publish becomes an [`ingest::Publish`] like an RTMP one:
//! H.264 access units as AVCC frames with their configuration from in-band
//! SPS/PPS, Opus packets for the transcoder to turn into AAC, both on one
//! timeline aligned by RTCP sender reports, and keyframe requests (PLI) when
//! the transcoder waits for one. It knows nothing of HTTP or GStreamer.
//!
//! Layout:
//! - [`server`]: the socket, the session task, and the [`Webrtc`] handle.
//! - [`whip`]: one publisher's media into [`ingest::MediaEvent`]s.
//! - [`h264`]: Annex B into AVCC and decoder configuration records (pure).
//! - [`clock`]: RTP clocks onto one timeline with sender reports (pure).
//! - [`stats`]: what the server counts.
//! - [`config`].

pub mod clock;
pub mod config;
pub mod h264;
pub mod server;
pub mod stats;
pub mod whip;

pub use config::{ConfigError, IceServer, WebrtcConfig};
pub use server::{Answer, OfferError, Webrtc};
pub use stats::Stats;
