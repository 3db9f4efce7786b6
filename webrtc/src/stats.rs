//! What the WebRTC server counts, for the metrics endpoint.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize};

/// Counters for the metrics endpoint.
#[derive(Debug, Default)]
pub struct Stats {
    /// Sessions open now.
    pub sessions: AtomicUsize,
    /// WHEP viewers among them.
    pub viewers: AtomicUsize,
    /// WHEP viewers per broadcast.
    pub viewers_by_broadcast: Mutex<HashMap<String, usize>>,
    /// Keyframe requests (PLI/FIR) viewers sent; answered by the next IDR.
    pub viewer_keyframe_requests: AtomicU64,
    /// Datagrams received.
    pub datagrams_in: AtomicU64,
    /// Bytes received.
    pub bytes_in: AtomicU64,
    /// Bytes sent.
    pub bytes_out: AtomicU64,
    /// Keyframe requests sent to publishers.
    pub plis_sent: AtomicU64,
    /// Retransmission requests (NACK) sent to publishers.
    pub nacks_sent: AtomicU64,
    /// NACKs received from viewers.
    pub nacks_received: AtomicU64,
    /// Media events dropped because a transcoder was behind.
    pub media_dropped: AtomicU64,
}
