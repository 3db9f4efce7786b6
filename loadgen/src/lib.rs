//! Load generators for benchmarks and tests, run on the same machine as the
//! server they measure. A crate of its own so that the server binary links
//! no HTTP or WebSocket client; the origin's tests use it as a
//! dev-dependency.
//!
//! Layout:
//! - [`llhls`]: simulated hls.js-like low-latency viewers (`llhls-load`).
//! - [`chat`]: a chat and presence crowd in one room (`chat-load`).
//! - [`forwarded`]: what forwarding to another origin adds (`forward-probe`).
//! - [`whep`]: real-time viewers over WebRTC (`whep-load`).
//! - [`proc`]: a process's CPU time and RSS, from `/proc`.

pub mod chat;
pub mod forwarded;
pub mod llhls;
pub mod proc;
pub mod whep;
