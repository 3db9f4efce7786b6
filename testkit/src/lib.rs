//! Test helpers shared by the workspace's tests, written once: each crate's
//! `tests/common` keeps only what is its own.
//!
//! Layout:
//! - [`ffmpeg`]: the ffmpeg test source, published over RTMP or written to FLV.
//! - [`rtmp`]: a raw RTMP client (real handshake, scriptable writes).
//! - [`wait`]: polling with a bound, and free loopback ports.
//! - [`logs`]: log capture a test can read back.
//! - [`postgres`]: a throwaway PostgreSQL server.

pub mod ffmpeg;
pub mod files;
pub mod logs;
pub mod postgres;
pub mod rtmp;
pub mod wait;
