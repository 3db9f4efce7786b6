//! What the WebRTC server counts, for the metrics endpoint.

use std::sync::atomic::{AtomicU64, AtomicUsize};

/// Counters for the metrics endpoint.
#[derive(Debug, Default)]
pub struct Stats {
    /// Sessions open now.
    pub sessions: AtomicUsize,
    /// Datagrams received.
    pub datagrams_in: AtomicU64,
    /// Bytes received.
    pub bytes_in: AtomicU64,
    /// Bytes sent.
    pub bytes_out: AtomicU64,
    /// Keyframe requests sent to publishers.
    pub plis_sent: AtomicU64,
    /// Media events dropped because a transcoder was behind.
    pub media_dropped: AtomicU64,
}
