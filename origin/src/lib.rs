//! The live-streaming server: wires RTMP ingest to the transcoder, packages
//! LL-HLS, and serves it with the API, chat and pages over HTTP.
//!
//! Layout:
//! - [`config`]: flags, environment and the TOML file.
//! - [`http`]: the hyper server and its routes.
//! - [`hls`]: CMAF packaging, live windows and LL-HLS serving.
//! - [`api`]: broadcasts, stream keys, chat and viewer counts on sled.
//! - [`pages`]: the web pages and their assets.
//! - [`response`]: response helpers the router and the API share.
//! - [`metrics`]: Prometheus metrics.
//! - [`error`]: HTTP errors and their status codes.
//! - [`fdlimit`]: the open-file limit, raised at start.

pub mod api;
pub mod config;
pub mod error;
pub mod fdlimit;
pub mod hls;
pub mod http;
pub mod metrics;
pub mod pages;
pub mod response;

use std::collections::HashSet;
use std::sync::Arc;

use anyhow::Context;
use ingest::Publish;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, info, warn};

use crate::config::Config;

/// Under the data dir: live windows kept for a restart (see [`hls::spool`]).
const SPOOL_DIR: &str = "hls";
/// Accepted publishes waiting for the pipeline to pick them up.
const PUBLISH_QUEUE_CAPACITY: usize = 16;
/// Ended-broadcast notices waiting for the API to record them.
const ENDED_QUEUE_CAPACITY: usize = 64;
/// Media events between a publish and its transcoder (the hop that lets an
/// owner's "end broadcast" disconnect the publisher).
const FORWARD_CAPACITY: usize = 64;

/// How often a transcode's real-time factor is measured.
const USAGE_SAMPLE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(5);

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
    fdlimit::raise(
        (config.http.max_connections + config.ingest.max_connections) as u64
            + fdlimit::RESERVED_FILES,
    );
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
    let metrics = Arc::new(metrics::Metrics::default());
    let hls = hls::Hls::new(
        config.hls.clone(),
        metrics.clone(),
        Some(hls::spool::Spool::new(config.data_dir.join(SPOOL_DIR))),
    );
    let api = api::Api::open(
        &config.data_dir,
        hls.clone(),
        // The port actually bound (tests and port 0 pick their own).
        listeners.rtmp.local_addr()?.port(),
        config.stream_keys.iter().cloned().collect::<HashSet<_>>(),
    )
    .with_context(|| format!("opening the database in {}", config.data_dir.display()))?;
    // Windows of broadcasts that are not over continue where they stopped.
    let ended: HashSet<String> = api
        .store
        .all()?
        .into_iter()
        .filter(|r| r.status == api::model::Status::Ended)
        .map(|r| r.id)
        .collect();
    hls.restore(move |id| !ended.contains(id)).await;
    api.recover(config.hls.reconnect_grace).await?;
    let (ended_tx, mut ended_rx) = mpsc::channel(ENDED_QUEUE_CAPACITY);
    hls.notify_ended(ended_tx);
    let on_end = {
        let api = api.clone();
        tokio::spawn(async move {
            while let Some(id) = ended_rx.recv().await {
                api.on_ended(&id).await;
            }
        })
    };
    let authorizer: Arc<dyn ingest::Authorizer> = api.clone();
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
        api.clone(),
        metrics.clone(),
        shutdown.clone(),
    ));
    let app = Arc::new(http::App {
        hls: hls.clone(),
        api: api.clone(),
        pages: pages::Pages::load(&config.player_dir),
        metrics: metrics.clone(),
        shutdown: shutdown.clone(),
    });
    let http = tokio::spawn(http::run(
        listeners.http,
        app,
        config.http.clone(),
        shutdown.clone(),
    ));

    shutdown.cancelled().await;
    // Publishers are being disconnected by ingest. Held requests are answered
    // (503, retry) and every window is saved, so the restarted server
    // continues the playlists; they get no ENDLIST, the broadcasts go on.
    hls.stop().await;
    let (ingest, pipeline, http) = tokio::join!(ingest, pipeline, http);
    on_end.abort();
    api.store.flush().await.context("flushing the database")?;
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
    api: Arc<api::Api>,
    metrics: Arc<metrics::Metrics>,
    shutdown: CancellationToken,
) {
    loop {
        let publish = tokio::select! {
            _ = shutdown.cancelled() => return,
            p = rx.recv() => match p { Some(p) => p, None => return },
        };
        let transcoder = transcoder.clone();
        let hls = hls.clone();
        let api = api.clone();
        let metrics = metrics.clone();
        let span =
            tracing::info_span!("publish", broadcast = %publish.broadcast_id, peer = %publish.peer);
        tokio::spawn(
            async move {
                let Publish {
                    broadcast_id,
                    mut media,
                    ..
                } = publish;
                // Ending the broadcast cancels this hop: ingest sees its consumer
                // gone and closes the publisher's connection.
                let cancel = CancellationToken::new();
                let (tx, input) = mpsc::channel(FORWARD_CAPACITY);
                let stop = cancel.clone();
                let (m, id) = (metrics.clone(), broadcast_id.clone());
                tokio::spawn(async move {
                    loop {
                        tokio::select! {
                            _ = stop.cancelled() => return,
                            e = media.recv() => match e {
                                Some(e) => {
                                    if let ingest::MediaEvent::Video(f) = &e {
                                        m.video_frame(&id, f.data.len());
                                    }
                                    if tx.send(e).await.is_err() { return }
                                }
                                None => return,
                            },
                        }
                    }
                });
                match transcoder::start(transcoder, input).await {
                    Ok(t) => {
                        tokio::spawn(sample_usage(
                            t.usage.clone(),
                            metrics.clone(),
                            broadcast_id.clone(),
                        ));
                        api.on_publish(&broadcast_id, cancel, t.thumbnails.clone())
                            .await;
                        hls.publish(&broadcast_id, t).await;
                    }
                    Err(err) => warn!(%err, "transcode did not start"),
                }
            }
            .instrument(span),
        );
    }
}

/// Keeps `origin_transcode_realtime_factor` for one transcode up to date
/// while it runs.
async fn sample_usage(
    usage: transcoder::usage::Usage,
    metrics: Arc<metrics::Metrics>,
    broadcast: String,
) {
    let label = metrics::BroadcastLabel { broadcast };
    let mut last = (usage.cpu_seconds(), usage.media_seconds());
    while !usage.is_done() {
        tokio::time::sleep(USAGE_SAMPLE_INTERVAL).await;
        let now = (usage.cpu_seconds(), usage.media_seconds());
        let media = now.1 - last.1;
        // CPU time falls when a restarted pipeline's threads exit; skip that sample.
        if media > 0.0 && now.0 >= last.0 {
            metrics
                .transcode_realtime_factor
                .get_or_create(&label)
                .set((now.0 - last.0) / media);
        }
        last = now;
    }
    metrics.transcode_realtime_factor.remove(&label);
}
