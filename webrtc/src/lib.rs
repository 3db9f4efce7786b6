//! WebRTC for the origin, on [str0m](https://docs.rs/str0m): WHIP ingest
//! (RFC 9725) from browsers and OBS, and WHEP playback of the transcoded
//! ladder with Opus audio. One UDP socket serves every peer (ICE
//! lite, host candidates on the advertised addresses); one task owns every
//! session. A WHIP publish becomes an [`ingest::Publish`] like an RTMP one:
//! H.264 access units as AVCC frames with their configuration from in-band
//! SPS/PPS, Opus packets for the transcoder to turn into AAC, both on one
//! timeline aligned by RTCP sender reports, and keyframe requests (PLI) when
//! the transcoder waits for one. It knows nothing of HTTP or GStreamer.
//!
//! Layout:
//! - [`server`]: the [`Webrtc`] handle: offers in, answers out.
//! - [`task`]: the session task: the socket, every session, the fan-out.
//! - [`session`]: what the task holds and is told.
//! - [`timers`]: when each session wants waking.
//! - [`net`]: the UDP socket and ICE-TCP connections.
//! - [`whip`]: one publisher's media into [`ingest::MediaEvent`]s.
//! - [`whep`]: feeds, the once-per-frame conversion, one viewer.
//! - [`h264`]: Annex B into AVCC and decoder configuration records (pure).
//! - [`clock`]: RTP clocks onto one timeline with sender reports (pure).
//! - [`stats`]: what the server counts.
//! - [`config`].

pub mod clock;
pub mod config;
pub mod h264;
pub mod net;
pub mod server;
pub mod session;
pub mod stats;
pub mod task;
pub mod timers;
pub mod whep;
pub mod whip;

pub use config::{ConfigError, IceServer, Transport, WebrtcConfig};
pub use net::Sockets;
pub use server::{Answer, OfferError, Webrtc};
pub use stats::Stats;
pub use whep::Feeds;
