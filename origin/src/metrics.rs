//! Prometheus metrics, served at `/metrics` in the text exposition format.
//! Counters are bumped where things happen; gauges (held requests, viewers)
//! are read at scrape time.

use std::sync::Mutex;
use std::sync::atomic::AtomicU64;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

/// `broadcast` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct BroadcastLabel {
    /// Broadcast id.
    pub broadcast: String,
}

/// `broadcast` and `rendition` labels.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RenditionLabel {
    /// Broadcast id.
    pub broadcast: String,
    /// Rendition name.
    pub rendition: String,
}

/// `reason` label: why the server closed a chat connection.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ChatCloseLabel {
    /// `full` (the room was), `slow` (fell behind the room), `errors` (too many bad frames).
    pub reason: &'static str,
}

/// `status` label (HTTP status code).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StatusLabel {
    /// The status code.
    pub status: u16,
}

/// Every metric the server exports.
pub struct Metrics {
    registry: Mutex<Registry>,
    /// HTTP responses by status code.
    pub http_responses: Family<StatusLabel, Counter>,
    /// Bytes of video received from publishers (rate() gives the ingest bitrate).
    pub ingest_video_bytes: Family<BroadcastLabel, Counter>,
    /// Video frames received from publishers (rate() gives the frame rate).
    pub ingest_video_frames: Family<BroadcastLabel, Counter>,
    /// Decoded frames the transcoder dropped because it could not keep up.
    pub transcode_dropped_frames: Family<BroadcastLabel, Counter>,
    /// Transcoder pipeline restarts.
    pub transcode_restarts: Family<BroadcastLabel, Counter>,
    /// Transcoder CPU seconds per second of source video over the last
    /// sample interval (the real-time factor; it keeps up on one core below 1).
    pub transcode_realtime_factor: Family<BroadcastLabel, Gauge<f64, AtomicU64>>,
    /// LL-HLS parts produced.
    pub parts: Family<RenditionLabel, Counter>,
    /// Chat messages accepted.
    pub chat_messages: Family<BroadcastLabel, Counter>,
    /// Chat connections the server closed, by reason.
    pub chat_closed: Family<ChatCloseLabel, Counter>,
    /// Requests held for a blocking reload or a preload hint (set at scrape).
    pub held_requests: Gauge,
    /// People watching, per broadcast (set at scrape).
    pub viewers: Family<BroadcastLabel, Gauge>,
    /// Open HTTP connections, WebSockets included.
    pub http_connections: Gauge,
    /// HTTP connections closed at once because the connection cap was reached.
    pub http_connections_refused: Counter,
    /// HTTP connections closed because a request head did not arrive in time
    /// (half-sent requests and idle keep-alive connections).
    pub http_header_timeouts: Counter,
    /// HTTP connections closed after the keep-alive timeout with nothing to do.
    pub http_idle_closed: Counter,
    /// WebRTC sessions open (set at scrape).
    pub webrtc_sessions: Gauge,
    /// WHEP viewers among them (set at scrape).
    pub webrtc_viewers: Gauge,
    /// Keyframe requests from WHEP viewers, answered by the next IDR (synced at scrape).
    pub webrtc_viewer_keyframe_requests: Counter,
    /// WebRTC bytes received and sent, by direction (synced at scrape).
    pub webrtc_bytes: Family<DirectionLabel, Counter>,
    /// Keyframe requests (PLI) sent to WebRTC publishers (synced at scrape).
    pub webrtc_plis_sent: Counter,
    /// WHIP media dropped because a transcoder was behind (synced at scrape).
    pub webrtc_media_dropped: Counter,
    /// Video frames packetized for WHEP viewers (synced at scrape).
    pub webrtc_frames_packetized: Counter,
    /// NACKs sent to publishers (`in`) and received from viewers (`out`).
    pub webrtc_nacks: Family<DirectionLabel, Counter>,
    /// Webhook events, by what became of them.
    pub webhook_events: Family<WebhookLabel, Counter>,
    /// Segments written to recordings.
    pub recording_segments: Counter,
    /// Segments not recorded, by reason (`queue_full`, `disk_full`, `error`).
    pub recording_dropped: Family<ReasonLabel, Counter>,
    /// 1 while recording is paused because the disk is full (an alert).
    pub recording_paused: Gauge,
    /// Bytes of all recordings on disk.
    pub recording_bytes: Gauge,
    /// Replays deleted, by reason (`owner`, `max_age`, `max_bytes`).
    pub replays_deleted: Family<ReasonLabel, Counter>,
}

/// `reason` label.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabel {
    /// Why.
    pub reason: &'static str,
}

/// `result` label of a webhook event.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WebhookLabel {
    /// `delivered`, `retried` (a failed try that will be tried again),
    /// `failed` (given up), `dropped` (its endpoint's queue was full).
    pub result: &'static str,
}

/// `direction="in"` or `"out"`.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct DirectionLabel {
    /// `in` or `out`.
    pub direction: &'static str,
}

impl Default for Metrics {
    fn default() -> Self {
        let m = Metrics {
            registry: Mutex::new(Registry::with_prefix("origin")),
            http_responses: Family::default(),
            ingest_video_bytes: Family::default(),
            ingest_video_frames: Family::default(),
            transcode_dropped_frames: Family::default(),
            transcode_restarts: Family::default(),
            transcode_realtime_factor: Family::default(),
            parts: Family::default(),
            chat_messages: Family::default(),
            chat_closed: Family::default(),
            held_requests: Gauge::default(),
            viewers: Family::default(),
            http_connections: Gauge::default(),
            http_connections_refused: Counter::default(),
            http_header_timeouts: Counter::default(),
            http_idle_closed: Counter::default(),
            webrtc_sessions: Gauge::default(),
            webrtc_viewers: Gauge::default(),
            webrtc_viewer_keyframe_requests: Counter::default(),
            webrtc_bytes: Family::default(),
            webrtc_plis_sent: Counter::default(),
            webrtc_media_dropped: Counter::default(),
            webrtc_frames_packetized: Counter::default(),
            webrtc_nacks: Family::default(),
            webhook_events: Family::default(),
            recording_segments: Counter::default(),
            recording_dropped: Family::default(),
            recording_paused: Gauge::default(),
            recording_bytes: Gauge::default(),
            replays_deleted: Family::default(),
        };
        {
            let mut r = m.registry.lock().unwrap_or_else(|p| p.into_inner());
            r.register(
                "http_responses",
                "HTTP responses by status",
                m.http_responses.clone(),
            );
            r.register(
                "ingest_video_bytes",
                "Video bytes received per broadcast",
                m.ingest_video_bytes.clone(),
            );
            r.register(
                "ingest_video_frames",
                "Video frames received per broadcast",
                m.ingest_video_frames.clone(),
            );
            r.register(
                "transcode_dropped_frames",
                "Decoded frames dropped because the transcoder could not keep up",
                m.transcode_dropped_frames.clone(),
            );
            r.register(
                "transcode_restarts",
                "Transcoder pipeline restarts",
                m.transcode_restarts.clone(),
            );
            r.register(
                "transcode_realtime_factor",
                "Transcoder CPU seconds per second of source video, over the last few seconds",
                m.transcode_realtime_factor.clone(),
            );
            r.register(
                "parts",
                "LL-HLS parts produced per rendition",
                m.parts.clone(),
            );
            r.register(
                "chat_messages",
                "Chat messages accepted per broadcast",
                m.chat_messages.clone(),
            );
            r.register(
                "chat_closed",
                "Chat connections closed by the server, by reason (full, slow, errors, restart)",
                m.chat_closed.clone(),
            );
            r.register(
                "held_requests",
                "Requests held for blocking reloads and preload hints",
                m.held_requests.clone(),
            );
            r.register(
                "viewers",
                "People watching per broadcast",
                m.viewers.clone(),
            );
            r.register(
                "http_connections",
                "Open HTTP connections, WebSockets included",
                m.http_connections.clone(),
            );
            r.register(
                "http_connections_refused",
                "HTTP connections closed at once at the connection cap",
                m.http_connections_refused.clone(),
            );
            r.register(
                "http_header_timeouts",
                "HTTP connections closed because a request head did not arrive in time",
                m.http_header_timeouts.clone(),
            );
            r.register(
                "http_idle_closed",
                "HTTP connections closed after the keep-alive timeout",
                m.http_idle_closed.clone(),
            );
            r.register(
                "webrtc_sessions",
                "WebRTC sessions open (WHIP publishers and WHEP viewers)",
                m.webrtc_sessions.clone(),
            );
            r.register("webrtc_viewers", "WHEP viewers", m.webrtc_viewers.clone());
            r.register(
                "webrtc_viewer_keyframe_requests",
                "Keyframe requests (PLI/FIR) from WHEP viewers; the next aligned IDR answers them",
                m.webrtc_viewer_keyframe_requests.clone(),
            );
            r.register(
                "webrtc_bytes",
                "WebRTC bytes received (in) and sent (out); rate() gives the bitrate",
                m.webrtc_bytes.clone(),
            );
            r.register(
                "webrtc_plis_sent",
                "Keyframe requests (PLI) sent to WebRTC publishers",
                m.webrtc_plis_sent.clone(),
            );
            r.register(
                "webrtc_nacks",
                "Retransmission requests (NACK) sent to WHIP publishers (in) and received from WHEP viewers (out)",
                m.webrtc_nacks.clone(),
            );
            r.register(
                "webhook_events",
                "Webhook events by result (delivered, retried, failed, dropped)",
                m.webhook_events.clone(),
            );
            r.register(
                "recording_segments",
                "Segments written to recordings",
                m.recording_segments.clone(),
            );
            r.register(
                "recording_dropped",
                "Segments not recorded, by reason (queue_full, disk_full, error)",
                m.recording_dropped.clone(),
            );
            r.register(
                "recording_paused",
                "1 while recording is paused because the disk is full",
                m.recording_paused.clone(),
            );
            r.register(
                "recording_bytes",
                "Bytes of all recordings on disk",
                m.recording_bytes.clone(),
            );
            r.register(
                "replays_deleted",
                "Replays deleted, by reason (owner, max_age, max_bytes)",
                m.replays_deleted.clone(),
            );
            r.register(
                "webrtc_media_dropped",
                "WHIP media dropped because a transcoder was behind",
                m.webrtc_media_dropped.clone(),
            );
            r.register(
                "webrtc_frames_packetized",
                "Video frames packetized for WHEP viewers: once per frame of a watched broadcast's rendition, whatever the number of viewers",
                m.webrtc_frames_packetized.clone(),
            );
        }
        m
    }
}

impl Metrics {
    /// One webhook event's `result`.
    pub fn count_webhook(&self, result: &'static str) {
        self.webhook_events
            .get_or_create(&WebhookLabel { result })
            .inc();
    }

    /// A segment not recorded, and why.
    pub fn count_recording_drop(&self, reason: &'static str) {
        self.recording_dropped
            .get_or_create(&ReasonLabel { reason })
            .inc();
    }

    /// The text exposition.
    pub fn encode(&self) -> String {
        let mut out = String::new();
        let r = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        prometheus_client::encoding::text::encode(&mut out, &r)
            .expect("writing to a String cannot fail");
        out
    }

    /// Brings the WebRTC numbers up to date (at scrape).
    pub fn sync_webrtc(&self, s: &webrtc::Stats) {
        use std::sync::atomic::Ordering::Relaxed;
        let to = |c: &Counter, v: u64| {
            c.inc_by(v.saturating_sub(c.get()));
        };
        self.webrtc_sessions.set(s.seats.sessions() as i64);
        self.webrtc_viewers.set(s.seats.viewers() as i64);
        to(
            &self.webrtc_viewer_keyframe_requests,
            s.viewer_keyframe_requests.load(Relaxed),
        );
        for (direction, v) in [("in", &s.bytes_in), ("out", &s.bytes_out)] {
            to(
                &self
                    .webrtc_bytes
                    .get_or_create(&DirectionLabel { direction }),
                v.load(Relaxed),
            );
        }
        to(&self.webrtc_plis_sent, s.plis_sent.load(Relaxed));
        for (direction, v) in [("in", &s.nacks_sent), ("out", &s.nacks_received)] {
            to(
                &self
                    .webrtc_nacks
                    .get_or_create(&DirectionLabel { direction }),
                v.load(Relaxed),
            );
        }
        to(&self.webrtc_media_dropped, s.media_dropped.load(Relaxed));
        to(
            &self.webrtc_frames_packetized,
            s.frames_packetized.load(Relaxed),
        );
    }

    /// Counts `n` video bytes of one frame from `broadcast`'s publisher.
    pub fn video_frame(&self, broadcast: &str, bytes: usize) {
        let l = BroadcastLabel {
            broadcast: broadcast.to_owned(),
        };
        self.ingest_video_frames.get_or_create(&l).inc();
        self.ingest_video_bytes
            .get_or_create(&l)
            .inc_by(bytes as u64);
    }
}
