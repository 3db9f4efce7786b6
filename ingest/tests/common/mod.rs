//! Helpers for ingest's integration tests: a server on 127.0.0.1:0 and what a
//! publish delivered. Publishers, the raw RTMP client and log capture come
//! from `testkit`.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use ingest::{IngestConfig, MediaEvent, Publish, StaticKeys};
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio::time::{Instant, timeout};
use tokio_util::sync::CancellationToken;

/// A running ingest server.
pub struct Server {
    pub addr: SocketAddr,
    pub publishes: mpsc::Receiver<Publish>,
    pub shutdown: CancellationToken,
}

impl Drop for Server {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Test settings: short timeouts so that hostile cases finish quickly.
pub fn test_config() -> IngestConfig {
    IngestConfig {
        handshake_timeout: Duration::from_secs(2),
        idle_timeout: Duration::from_secs(4),
        ..IngestConfig::default()
    }
}

pub async fn start(keys: &[&str], config: IngestConfig) -> Server {
    testkit::logs::capture("ingest=debug");
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::channel(16);
    let shutdown = CancellationToken::new();
    let auth = Arc::new(StaticKeys(keys.iter().map(|k| k.to_string()).collect()));
    tokio::spawn(ingest::run(
        config,
        listener,
        auth,
        tx,
        ingest::LiveSet::default(),
        shutdown.clone(),
    ));
    Server {
        addr,
        publishes: rx,
        shutdown,
    }
}

impl Server {
    pub fn url(&self, key: &str) -> String {
        format!("rtmp://{}/live/{key}", self.addr)
    }

    /// The next accepted publish, within `limit`.
    pub async fn next_publish(&mut self, limit: Duration) -> Publish {
        timeout(limit, self.publishes.recv())
            .await
            .expect("no publish within the limit")
            .expect("server gone")
    }
}

/// An event and when it arrived.
pub type Timed = (Instant, MediaEvent);

/// Drains a publish until the publisher leaves or `limit` passes.
pub async fn collect(mut publish: Publish, limit: Duration) -> Vec<Timed> {
    let end = Instant::now() + limit;
    let mut out = vec![];
    while let Ok(Some(e)) = tokio::time::timeout_at(end, publish.media.recv()).await {
        out.push((Instant::now(), e));
    }
    out
}

/// Video frames of a publish, in order.
pub fn video_frames(events: &[Timed]) -> Vec<&ingest::VideoFrame> {
    events
        .iter()
        .filter_map(|(_, e)| match e {
            MediaEvent::Video(v) => Some(v),
            _ => None,
        })
        .collect()
}
