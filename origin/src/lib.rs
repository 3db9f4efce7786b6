//! The live-streaming server: wires RTMP ingest to the transcoder, packages
//! LL-HLS, and serves it with the API, chat and pages over HTTP.
//!
//! Layout:
//! - [`config`]: flags, environment and the TOML file.
//! - [`http`]: the hyper server and its routes.

pub mod config;
pub mod http;

use std::collections::HashSet;
use std::sync::Arc;

use anyhow::Context;
use ingest::Publish;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::Config;

/// Accepted publishes waiting for the pipeline to pick them up.
const PUBLISH_QUEUE_CAPACITY: usize = 16;

/// The bound listening sockets; tests bind `127.0.0.1:0`.
pub struct Listeners {
    /// RTMP ingest.
    pub rtmp: TcpListener,
    /// HTTP.
    pub http: TcpListener,
}

impl Listeners {
    /// Binds the configured addresses.
    pub async fn bind(config: &Config) -> anyhow::Result<Listeners> {
        let rtmp = TcpListener::bind(config.rtmp_listen)
            .await
            .with_context(|| format!("RTMP {}", config.rtmp_listen))?;
        let http = TcpListener::bind(config.http_listen)
            .await
            .with_context(|| format!("HTTP {}", config.http_listen))?;
        Ok(Listeners { rtmp, http })
    }
}

/// Cancels `shutdown` on Ctrl-C or SIGTERM.
pub async fn shutdown_on_signal(shutdown: CancellationToken) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    info!("shutdown requested");
    shutdown.cancel();
}

/// Runs every component until `shutdown`.
pub async fn run(
    config: Config,
    listeners: Listeners,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
    if config.stream_keys.is_empty() {
        warn!("no stream keys configured: every publish will be refused (use --stream-key)");
    }
    let authorizer = Arc::new(ingest::StaticKeys(
        config.stream_keys.iter().cloned().collect::<HashSet<_>>(),
    ));
    let (publish_tx, publish_rx) = mpsc::channel(PUBLISH_QUEUE_CAPACITY);
    let ingest = tokio::spawn(ingest::run(
        config.ingest.clone(),
        listeners.rtmp,
        authorizer,
        publish_tx,
        shutdown.clone(),
    ));
    let pipeline = tokio::spawn(consume_publishes(publish_rx, shutdown.clone()));
    let http = tokio::spawn(http::run(listeners.http, shutdown.clone()));

    let (ingest, pipeline, http) = tokio::join!(ingest, pipeline, http);
    ingest.context("ingest task")?.context("ingest")?;
    pipeline.context("pipeline task")?;
    http.context("http task")?.context("http")?;
    info!("stopped");
    Ok(())
}

/// Takes each accepted publish and drains its media.
async fn consume_publishes(mut rx: mpsc::Receiver<Publish>, shutdown: CancellationToken) {
    loop {
        let publish = tokio::select! {
            _ = shutdown.cancelled() => return,
            p = rx.recv() => match p { Some(p) => p, None => return },
        };
        tokio::spawn(async move {
            let Publish {
                broadcast_id,
                mut media,
                ..
            } = publish;
            let mut events = 0u64;
            while media.recv().await.is_some() {
                events += 1;
            }
            info!(broadcast = %broadcast_id, events, "publish drained");
        });
    }
}
