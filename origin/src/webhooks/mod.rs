//! Webhooks: a signed `POST` to each configured endpoint when a broadcast
//! goes live, ends, or changes its title. The origin where the change
//! happens sends it, so each event goes out once however many origins there
//! are.
//!
//! The signature follows Standard Webhooks (standardwebhooks.com):
//! `webhook-id`, `webhook-timestamp` (Unix seconds) and `webhook-signature:
//! v1,<base64 HMAC-SHA256 of "{id}.{timestamp}.{body}">`, so a receiver
//! checks the body and the time together (and rejects replays by both).
//!
//! Each endpoint has its own bounded queue and task: [`Webhooks::emit`]
//! never waits (a full queue drops the event, counted and logged), a slow or
//! dead receiver delays only its own events, and a failed try is retried
//! with doubling back-off up to `max_attempts`.

pub mod config;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use hmac::{Hmac, KeyInit, Mac};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use serde::Serialize;
use sha2::Sha256;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use self::config::{Endpoint, FIRST_BACKOFF, MAX_BACKOFF, WebhooksConfig};
use crate::metrics::Metrics;
use crate::store::keys::random_hex;
use crate::store::record::{Record, Status, now_rfc3339};

type HttpsClient = Client<hyper_rustls::HttpsConnector<HttpConnector>, Full<Bytes>>;

/// What happened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// A publisher started sending (the status became `live`).
    Live,
    /// The broadcast ended.
    Ended,
    /// Its owner changed its title.
    TitleChanged,
}

impl Kind {
    /// The event's `type`.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Live => "broadcast.live",
            Kind::Ended => "broadcast.ended",
            Kind::TitleChanged => "broadcast.title_changed",
        }
    }
}

/// The JSON body of every event.
#[derive(Debug, Clone, Serialize)]
pub struct Event {
    /// Unique per event (`evt_…`), the same on every retry.
    pub id: String,
    /// `broadcast.live`, `broadcast.ended` or `broadcast.title_changed`.
    #[serde(rename = "type")]
    pub kind: &'static str,
    /// When it happened (RFC 3339).
    pub at: String,
    /// The broadcast as it is after the change.
    pub broadcast: Broadcast,
}

impl Event {
    /// `kind` happening to `r` now, with a fresh id.
    pub fn of(kind: Kind, r: &Record) -> Result<Event, getrandom::Error> {
        Ok(Event {
            id: format!("evt_{}", random_hex(12)?),
            kind: kind.name(),
            at: now_rfc3339(),
            broadcast: Broadcast {
                id: r.id.clone(),
                title: r.title.clone(),
                description: r.description.clone(),
                status: r.status,
                started_at: r.started_at.clone(),
                ended_at: r.ended_at.clone(),
                unlisted: r.unlisted,
                playback_url: format!("/hls/{}/master.m3u8", r.id),
            },
        })
    }
}

/// A broadcast in an event: its public fields.
#[derive(Debug, Clone, Serialize)]
pub struct Broadcast {
    /// Id.
    pub id: String,
    /// Title.
    pub title: String,
    /// Description.
    pub description: String,
    /// `ready`, `live` or `ended`.
    pub status: Status,
    /// When it went live.
    pub started_at: Option<String>,
    /// When it ended.
    pub ended_at: Option<String>,
    /// Left out of the directory.
    pub unlisted: bool,
    /// The multivariant playlist, relative to the server.
    pub playback_url: String,
}

/// The endpoints' queues.
pub struct Webhooks {
    queues: Vec<(String, mpsc::Sender<Arc<Event>>)>,
    metrics: Arc<Metrics>,
}

/// `v1,` and the base64 HMAC-SHA256 of `{id}.{timestamp}.{body}` (pure).
pub fn sign(key: &[u8], id: &str, timestamp: u64, body: &[u8]) -> String {
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(key).expect("any key length");
    mac.update(format!("{id}.{timestamp}.").as_bytes());
    mac.update(body);
    format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()))
}

/// The wait after failed try number `attempt` (1-based): 1 s, doubling, at
/// most a minute (pure).
pub fn backoff(attempt: u32) -> Duration {
    FIRST_BACKOFF
        .saturating_mul(1 << attempt.saturating_sub(1).min(16))
        .min(MAX_BACKOFF)
}

impl Webhooks {
    /// One task per endpoint, stopped by `shutdown` (what is still queued
    /// then is dropped, and logged).
    pub fn start(
        config: &WebhooksConfig,
        metrics: Arc<Metrics>,
        shutdown: CancellationToken,
    ) -> anyhow::Result<Arc<Webhooks>> {
        let mut queues = Vec::new();
        if !config.endpoints.is_empty() {
            let https = hyper_rustls::HttpsConnectorBuilder::new()
                .with_native_roots()
                .map_err(|e| {
                    anyhow::anyhow!("webhooks: no CA certificates ({e}); install ca-certificates")
                })?
                .https_or_http()
                .enable_http1()
                .build();
            let client: HttpsClient =
                Client::builder(hyper_util::rt::TokioExecutor::new()).build(https);
            for endpoint in &config.endpoints {
                let (tx, rx) = mpsc::channel(config.queue);
                let sender = Sender {
                    key: endpoint.key().unwrap_or_default(),
                    endpoint: endpoint.clone(),
                    client: client.clone(),
                    config: config.clone(),
                    metrics: metrics.clone(),
                };
                tokio::spawn(sender.run(rx, shutdown.clone()));
                queues.push((endpoint.url.clone(), tx));
            }
            info!(endpoints = queues.len(), "webhooks on");
        }
        Ok(Arc::new(Webhooks { queues, metrics }))
    }

    /// Queues `kind` for `r` to every endpoint, without waiting.
    pub fn emit(&self, kind: Kind, r: &Record) {
        if self.queues.is_empty() {
            return;
        }
        let Ok(event) = Event::of(kind, r) else {
            return;
        };
        let event = Arc::new(event);
        for (url, tx) in &self.queues {
            if tx.try_send(event.clone()).is_err() {
                self.metrics.count_webhook("dropped");
                warn!(%url, event = %event.id, kind = event.kind, "webhook queue full: event dropped");
            }
        }
    }
}

/// One endpoint's deliveries, in order.
struct Sender {
    endpoint: Endpoint,
    key: Vec<u8>,
    client: HttpsClient,
    config: WebhooksConfig,
    metrics: Arc<Metrics>,
}

impl Sender {
    async fn run(self, mut rx: mpsc::Receiver<Arc<Event>>, shutdown: CancellationToken) {
        loop {
            let event = tokio::select! {
                e = rx.recv() => match e { Some(e) => e, None => return },
                _ = shutdown.cancelled() => break,
            };
            tokio::select! {
                _ = self.deliver(&event) => {}
                _ = shutdown.cancelled() => break,
            }
        }
        let left = rx.len();
        if left > 0 {
            warn!(url = %self.endpoint.url, left, "stopping with webhook events undelivered");
        }
    }

    /// Tries `event` up to `max_attempts` times.
    async fn deliver(&self, event: &Event) {
        let body = Bytes::from(serde_json::to_vec(event).expect("an event serializes"));
        for attempt in 1..=self.config.max_attempts {
            let why = match tokio::time::timeout(self.config.timeout, self.post(event, &body)).await
            {
                Ok(Ok(status)) if status.is_success() => {
                    self.metrics.count_webhook("delivered");
                    return;
                }
                Ok(Ok(status)) => format!("answered {status}"),
                Ok(Err(e)) => format!("{e}"),
                Err(_) => format!("no answer within {:?}", self.config.timeout),
            };
            if attempt == self.config.max_attempts {
                self.metrics.count_webhook("failed");
                warn!(url = %self.endpoint.url, event = %event.id, kind = event.kind, attempt, %why,
                    "webhook not delivered: giving up");
                return;
            }
            let wait = backoff(attempt);
            self.metrics.count_webhook("retried");
            warn!(url = %self.endpoint.url, event = %event.id, kind = event.kind, attempt, %why, ?wait,
                "webhook not delivered: retrying");
            tokio::time::sleep(wait).await;
        }
    }

    async fn post(
        &self,
        event: &Event,
        body: &Bytes,
    ) -> Result<hyper::StatusCode, hyper_util::client::legacy::Error> {
        let timestamp = SystemTime::now()
            .duration_since(SystemTime::UNIX_EPOCH)
            .unwrap_or_default()
            .as_secs();
        let req = hyper::Request::post(&self.endpoint.url)
            .header("content-type", "application/json")
            .header(
                "user-agent",
                concat!("origin-webhooks/", env!("CARGO_PKG_VERSION")),
            )
            .header("webhook-id", &event.id)
            .header("webhook-timestamp", timestamp.to_string())
            .header(
                "webhook-signature",
                sign(&self.key, &event.id, timestamp, body),
            )
            .body(Full::new(body.clone()))
            .expect("a valid request (the URL was checked at start)");
        Ok(self.client.request(req).await?.status())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_openapi_document_describes_every_event_and_field() {
        let doc: serde_json::Value =
            serde_json::from_str(include_str!("../api/openapi.json")).unwrap();
        let schema = &doc["components"]["schemas"]["WebhookEvent"]["properties"];
        let keys = |v: &serde_json::Value| {
            let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
            k.sort();
            k
        };
        let r = Record::new_ready("b".into(), Default::default(), "owner");
        for kind in [Kind::Live, Kind::Ended, Kind::TitleChanged] {
            let hook = &doc["webhooks"][kind.name()]["post"];
            assert!(hook.is_object(), "{}", kind.name());
            let event = serde_json::to_value(Event::of(kind, &r).unwrap()).unwrap();
            assert_eq!(keys(&event), keys(schema));
            assert_eq!(
                keys(&event["broadcast"]),
                keys(&schema["broadcast"]["properties"])
            );
            let kinds = schema["type"]["enum"].as_array().unwrap();
            assert!(kinds.contains(&serde_json::json!(kind.name())));
        }
    }

    #[test]
    fn the_signature_is_standard_webhooks_v1() {
        // The example of the Standard Webhooks specification.
        let key = config::key("whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw").unwrap();
        let body = br#"{"test": 2432232314}"#;
        assert_eq!(
            sign(&key, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, body),
            "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="
        );
        assert_eq!(config::key("plain-secret"), Some(b"plain-secret".to_vec()));
        assert_eq!(config::key("whsec_!!"), None);
    }

    #[tokio::test]
    async fn a_full_queue_drops_new_events_and_never_waits() {
        let config = WebhooksConfig {
            endpoints: vec![Endpoint {
                url: "http://127.0.0.1:9/down".into(),
                secret: "0123456789abcdef".into(),
            }],
            queue: 2,
            ..Default::default()
        };
        let metrics = Arc::new(Metrics::default());
        let stop = CancellationToken::new();
        let hooks = Webhooks::start(&config, metrics.clone(), stop.clone()).unwrap();
        let r = crate::store::record::Record::new_ready(
            "b".into(),
            crate::store::record::NewBroadcast::titled("t"),
            "owner",
        );
        // No await in between: the sender has not taken one yet.
        for _ in 0..10 {
            hooks.emit(Kind::TitleChanged, &r);
        }
        let text = metrics.encode();
        assert!(
            text.contains("origin_webhook_events_total{result=\"dropped\"} 8"),
            "{text}"
        );
        stop.cancel();
    }

    #[test]
    fn retries_back_off_doubling_up_to_a_minute() {
        let waits: Vec<u64> = (1..=9).map(|a| backoff(a).as_secs()).collect();
        assert_eq!(waits, [1, 2, 4, 8, 16, 32, 60, 60, 60]);
        assert_eq!(backoff(u32::MAX), MAX_BACKOFF);
    }
}
