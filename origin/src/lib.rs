//! The live-streaming server: wires RTMP ingest to the transcoder, packages
//! LL-HLS, and serves it with the API, chat and pages over HTTP.
//!
//! Layout:
//! - [`config`]: flags, environment and the TOML file.
//! - [`http`]: the hyper server and its routes.
//! - [`hls`]: CMAF packaging, live windows and LL-HLS serving.
//! - [`error`]: HTTP errors and their status codes.

pub mod config;
pub mod error;
pub mod hls;
pub mod http;

use std::collections::HashSet;
use std::sync::Arc;

use anyhow::Context;
use ingest::Publish;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, warn};

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
    let hls = hls::Hls::new(config.hls.clone());
    let transcoder = Arc::new(config.transcoder.clone());
    let (publish_tx, publish_rx) = mpsc::channel(PUBLISH_QUEUE_CAPACITY);
    let ingest = tokio::spawn(ingest::run(
        config.ingest.clone(),
        listeners.rtmp,
        authorizer,
        publish_tx,
        shutdown.clone(),
    ));
    let pipeline = tokio::spawn(consume_publishes(
        publish_rx,
        transcoder,
        hls.clone(),
        shutdown.clone(),
    ));
    let app = Arc::new(http::App { hls: hls.clone() });
    let http = tokio::spawn(http::run(listeners.http, app, shutdown.clone()));

    shutdown.cancelled().await;
    // Publishers are being disconnected by ingest; end every playlist so that
    // held requests are answered with ENDLIST before the HTTP side stops.
    hls.end_all();
    let (ingest, pipeline, http) = tokio::join!(ingest, pipeline, http);
    ingest.context("ingest task")?.context("ingest")?;
    pipeline.context("pipeline task")?;
    http.context("http task")?.context("http")?;
    info!("stopped");
    Ok(())
}

/// Takes each accepted publish: transcode it, then package the renditions.
async fn consume_publishes(
    mut rx: mpsc::Receiver<Publish>,
    transcoder: Arc<transcoder::TranscoderConfig>,
    hls: Arc<hls::Hls>,
    shutdown: CancellationToken,
) {
    loop {
        let publish = tokio::select! {
            _ = shutdown.cancelled() => return,
            p = rx.recv() => match p { Some(p) => p, None => return },
        };
        let transcoder = transcoder.clone();
        let hls = hls.clone();
        let span =
            tracing::info_span!("publish", broadcast = %publish.broadcast_id, peer = %publish.peer);
        tokio::spawn(
            async move {
                let Publish {
                    broadcast_id,
                    media,
                    ..
                } = publish;
                match transcoder::start(transcoder, media).await {
                    Ok(t) => hls.publish(&broadcast_id, t).await,
                    Err(err) => warn!(%err, "transcode did not start"),
                }
            }
            .instrument(span),
        );
    }
}
