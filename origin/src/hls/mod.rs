//! LL-HLS: packaging renditions into CMAF parts, the live windows in memory,
//! and serving them.
//!
//! Layout:
//! - [`config`]: settings, defaults and the LL-HLS rules they keep.
//! - [`fmp4`]: init segments and parts (pure).
//! - [`packager`]: media events into parts and segments (pure).
//! - [`window`]: one rendition's live window (pure).
//! - [`playlist`]: media and multivariant playlists (pure).
//! - [`directives`]: `_HLS_*` parsing and hold decisions (pure).
//! - [`uris`]: the name rule and media URIs (pure).
//! - [`saved`]: what a window keeps across a restart (pure).
//! - [`registry`]: broadcasts, renditions and their snapshots.
//! - [`sinks`]: where counters and complete segments go besides memory.
//! - [`recorded`]: complete segments handed to the recording.
//! - [`package`]: one publish's renditions into their windows.
//! - [`restart`]: windows restored at start and saved at a stop.
//! - [`takeover`]: windows continued from, or released to, another origin.
//! - [`held`]: held-request limits.
//! - [`server`]: the HTTP side.
//! - [`spool`]: windows on disk, continued after a restart.

pub mod config;
pub mod directives;
pub mod fmp4;
pub mod held;
pub mod package;
pub mod packager;
pub mod playlist;
pub mod recorded;
pub mod registry;
pub mod restart;
pub mod saved;
pub mod server;
pub mod sinks;
pub mod spool;
pub mod takeover;
pub mod uris;
pub mod window;

pub use config::HlsConfig;
pub use registry::{Broadcast, Hls, Rendition, Snapshot};
pub use sinks::CounterSink;
