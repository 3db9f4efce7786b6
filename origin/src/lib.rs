//! The live-streaming server: wires RTMP ingest to the transcoder, packages
//! LL-HLS, and serves it with the API, chat and pages over HTTP. This file
//! only wires: each component has a `run` (or a task) and one shutdown token.
//!
//! Layout:
//! - [`config`]: flags, environment and the TOML file.
//! - [`broadcasts`]: the broadcast lifecycle (publish, live, grace, ended).
//! - [`hls`]: CMAF packaging, live windows and LL-HLS serving.
//! - [`store`]: broadcasts, stream keys, chat history, invites (sled, or PostgreSQL).
//! - [`cluster`]: several origins as one service (with PostgreSQL).
//! - [`api`]: the broadcast API under `/api`.
//! - [`access`]: who may go live (admin token, invites, creation policy and rate).
//! - [`health`]: stream health for the streamer (what arrives, viewers' delay).
//! - [`webhooks`]: signed event posts (live, ended, title changed).
//! - [`chat`]: chat rooms and viewer counts.
//! - [`http`]: the HTTP server, its limits and the router.
//! - [`pages`]: the web pages and their assets.
//! - [`recording`]: broadcasts kept on disk, played back as replays.
//! - [`response`]: response helpers.
//! - [`metrics`]: Prometheus metrics.
//! - [`error`]: HTTP errors and their status codes.
//! - [`fdlimit`]: the open-file limit, raised at start.

pub mod access;
pub mod api;
pub mod broadcasts;
pub mod chat;
pub mod cluster;
pub mod config;
pub mod error;
pub mod fdlimit;
pub mod health;
pub mod hls;
pub mod http;
pub mod metrics;
pub mod pages;
pub mod recording;
pub mod response;
pub mod store;
pub mod webhooks;

use std::collections::HashSet;
use std::sync::Arc;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::info;

use crate::config::Config;
use crate::store::admission::Admission;
use crate::store::moderation::Moderation;
use crate::store::recordings::Recordings;
use crate::store::{Shared, Store};

/// Under the data dir: live windows kept for a restart (see [`hls::spool`]).
const SPOOL_DIR: &str = "hls";
/// Under the data dir: recordings (see [`recording::disk`]).
const RECORDINGS_DIR: &str = "recordings";
/// Accepted publishes waiting for the lifecycle to pick them up.
const PUBLISH_QUEUE_CAPACITY: usize = 16;

/// The bound listening sockets; tests bind `127.0.0.1:0`.
pub struct Listeners {
    /// RTMP ingest.
    pub rtmp: TcpListener,
    /// HTTP.
    pub http: TcpListener,
    /// The one UDP socket of every WebRTC peer, and ICE-TCP on its port number.
    pub webrtc: webrtc::Sockets,
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
        let tcp = config.webrtc.transports.contains(&webrtc::Transport::Tcp);
        let webrtc = webrtc::Sockets::bind(config.webrtc.listen, tcp)
            .with_context(|| format!("WebRTC (UDP and ICE-TCP) {}", config.webrtc.listen))?;
        Ok(Listeners { rtmp, http, webrtc })
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

/// Runs every component until `requested`. One of several origins first
/// drains for `[cluster] drain_secs`: `/readyz` says not ready (balancers
/// and edges move on) while everything is still served; then it stops.
pub async fn run(
    config: Config,
    listeners: Listeners,
    requested: CancellationToken,
) -> anyhow::Result<()> {
    // What the components stop on.
    let shutdown = CancellationToken::new();
    fdlimit::raise(
        (config.http.max_connections + config.ingest.max_connections) as u64
            + fdlimit::RESERVED_FILES,
    );
    std::fs::create_dir_all(&config.data_dir)
        .with_context(|| format!("creating data dir {}", config.data_dir.display()))?;
    let metrics = Arc::new(metrics::Metrics::default());
    type Stores = (
        Arc<dyn Store>,
        Option<Arc<dyn Shared>>,
        Arc<dyn Admission>,
        Arc<dyn Moderation>,
        Option<Arc<dyn Recordings>>,
    );
    let (store, shared, admission, moderation, recordings): Stores = match &config.database_url {
        Some(url) => {
            let pg = Arc::new(
                store::postgres::PgStore::open(url)
                    .await
                    .context("opening the PostgreSQL database (--database-url)")?,
            );
            (
                pg.clone(),
                Some(pg.clone()),
                pg.clone(),
                pg.clone(),
                Some(pg),
            )
        }
        None => {
            let sled = Arc::new(
                store::embedded::SledStore::open(&config.data_dir).with_context(|| {
                    format!("opening the database in {}", config.data_dir.display())
                })?,
            );
            (sled.clone(), None, sled.clone(), sled, None)
        }
    };
    let access = Arc::new(
        access::Access::start(config.access.clone(), admission)
            .await
            .context("reading the admin token")?,
    );
    let http_addr = listeners.http.local_addr()?;
    let node = if shared.is_some() {
        let node = config.cluster.node(http_addr)?;
        info!(node = %node.id, url = %node.url, "one of several origins");
        node
    } else {
        store::Node {
            id: "local".into(),
            url: format!("http://{http_addr}"),
        }
    };
    let drain = match shared {
        Some(_) => config.cluster.drain,
        None => std::time::Duration::ZERO,
    };
    tokio::spawn({
        let (requested, shutdown) = (requested.clone(), shutdown.clone());
        async move {
            requested.cancelled().await;
            if !drain.is_zero() {
                info!(?drain, "draining: not ready, still serving");
                tokio::time::sleep(drain).await;
            }
            shutdown.cancel();
        }
    });
    let cluster =
        cluster::Cluster::new(config.cluster.clone(), node, store.clone(), shared.clone());
    let hls = hls::Hls::new(
        config.hls.clone(),
        metrics.clone(),
        Some(hls::spool::Spool::new(config.data_dir.join(SPOOL_DIR))),
    );
    if shared.is_some() {
        hls.share_counters(cluster.clone());
    }
    let recorder = config.recording.enabled.then(|| {
        recording::Recorder::start(
            config.recording.clone(),
            config.data_dir.join(RECORDINGS_DIR),
            metrics.clone(),
            recordings.map(|r| (r, cluster.node.clone())),
        )
    });
    if let Some(r) = &recorder {
        hls.record_to(r.clone());
    }
    // Stopped after the windows' last counters are written.
    let counters_done = CancellationToken::new();
    let counters = tokio::spawn(cluster.clone().write_counters(counters_done.clone()));
    let broadcasts = broadcasts::Broadcasts::new(
        store.clone(),
        hls.clone(),
        cluster.clone(),
        metrics.clone(),
        config.transcoder.clone(),
        config.stream_keys.iter().cloned().collect::<HashSet<_>>(),
    );
    let webhooks = webhooks::Webhooks::start(&config.webhooks, metrics.clone(), shutdown.clone())?;
    broadcasts.send_events(webhooks.clone());
    broadcasts.restore().await?;
    let chat = chat::connection::Chat::new(
        config.chat.clone(),
        store.clone(),
        moderation,
        metrics.clone(),
        shared.is_some(),
        shutdown.clone(),
    );
    if let Some(shared) = &shared {
        // A dead origin's count stands until it expires (seen a beat late).
        chat.rooms
            .settle_peaks(config.cluster.viewers_expiry + config.cluster.heartbeat_interval);
        let (feed, rooms, stop) = (shared.follow_chat(), chat.rooms.clone(), shutdown.clone());
        tokio::spawn(async move {
            tokio::select! {
                _ = stop.cancelled() => {}
                _ = rooms.follow(feed) => {}
            }
        });
    }
    let beats = tokio::spawn(cluster.clone().run(
        config.hls.reconnect_grace,
        {
            let (hls, rooms, cluster) = (hls.clone(), chat.rooms.clone(), cluster.clone());
            move || store::Beat {
                held: cluster.with_epochs(hls.windows()),
                viewers: rooms.all_viewers(),
            }
        },
        {
            let (broadcasts, rooms) = (broadcasts.clone(), chat.rooms.clone());
            move |echo: store::Echo| {
                rooms.set_elsewhere(echo.viewers_elsewhere);
                broadcasts.after_beat(echo.lost, echo.swept);
                let broadcasts = broadcasts.clone();
                async move { broadcasts.ended_elsewhere(echo.ended).await }
            }
        },
        shutdown.clone(),
    ));
    // RTMP and WHIP publishes go the same way; one publisher per broadcast.
    let (publish_tx, publish_rx) = mpsc::channel(PUBLISH_QUEUE_CAPACITY);
    let live = ingest::LiveSet::default();
    let (webrtc, webrtc_task) = webrtc::Webrtc::start(
        config.webrtc.clone(),
        listeners.webrtc,
        publish_tx.clone(),
        live.clone(),
        shutdown.clone(),
    )
    .context("starting WebRTC")?;
    broadcasts.serve_realtime(webrtc.clone());
    let api = Arc::new(api::Api {
        store: store.clone(),
        chat,
        broadcasts: broadcasts.clone(),
        // The port actually bound (tests and port 0 pick their own).
        rtmp_port: listeners.rtmp.local_addr()?.port(),
        webrtc,
        access,
        webhooks,
        recorder: recorder.clone(),
    });
    let ingest = tokio::spawn(ingest::run(
        config.ingest.clone(),
        listeners.rtmp,
        broadcasts.clone(),
        publish_tx,
        live,
        shutdown.clone(),
    ));
    let lifecycle = tokio::spawn(broadcasts.run(publish_rx, shutdown.clone()));
    let app = Arc::new(http::App {
        hls: hls.clone(),
        cluster: cluster.clone(),
        api,
        pages: pages::Pages::load(&config.player_dir),
        metrics,
        shutdown: requested,
    });
    let http = tokio::spawn(http::run(
        listeners.http,
        app,
        config.http.clone(),
        shutdown.clone(),
    ));

    shutdown.cancelled().await;
    // Publishers are being disconnected by ingest. Held requests are answered
    // (503, retry) and every window is saved, so the restarted server (or,
    // with several, the origin a publisher reconnects to) continues the
    // playlists; they get no ENDLIST, the broadcasts go on.
    hls.stop().await;
    if !cluster
        .flush_counters(hls::restart::SAVE_ON_STOP_LIMIT)
        .await
    {
        tracing::warn!("window counters not all written in time");
    }
    counters_done.cancel();
    let _ = counters.await;
    if let Some(r) = &recorder
        && !r.flush(hls::restart::SAVE_ON_STOP_LIMIT).await
    {
        tracing::warn!("recordings not all written in time");
    }
    let (ingest, lifecycle, http, _, _) = tokio::join!(ingest, lifecycle, http, beats, webrtc_task);
    store.flush().await.context("flushing the database")?;
    ingest.context("ingest task")?.context("ingest")?;
    lifecycle.context("lifecycle task")?;
    http.context("http task")?.context("http")?;
    info!("stopped");
    Ok(())
}
