//! The HTTP server: one hyper HTTP/1.1 connection task per client under a
//! connection cap. Slow and idle clients are timed out, oversized request
//! heads get 431, and connections we close linger briefly so that a client
//! still sending reads our answer instead of a reset. Stopped gracefully on
//! shutdown.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hyper::Request;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::metrics::gauge::Gauge;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::config::HttpConfig;
use super::routes::{App, route};
use super::socket::{Activity, Answering, Lingering};

/// The refusal written to a connection over the cap, before it is closed.
const OVERLOADED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
retry-after: 1\r\nconnection: close\r\ncontent-length: 45\r\n\r\n{\"error\":\"too many connections; retry later\"}";
/// A refused connection is logged at most this often (each is counted).
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(1);

/// A connection's place under the cap. Requests carry it in their extensions;
/// a WebSocket keeps them, and so its place, after the upgrade.
#[derive(Clone)]
pub struct ConnectionSlot(#[allow(dead_code)] Arc<Slot>);

struct Slot {
    _permit: OwnedSemaphorePermit,
    open: Gauge,
}

impl Drop for Slot {
    fn drop(&mut self) {
        self.open.dec();
    }
}

/// Serves HTTP on `listener` until `shutdown`.
pub async fn run(
    listener: TcpListener,
    app: Arc<App>,
    config: HttpConfig,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    info!(addr = %listener.local_addr()?, max_connections = config.max_connections, "http listening");
    let cap = Arc::new(Semaphore::new(config.max_connections));
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(config.header_read_timeout)
        .max_header_size(config.max_header_bytes);
    let refusals = RefusalLog::default();
    loop {
        let (stream, peer) = tokio::select! {
            _ = shutdown.cancelled() => return Ok(()),
            r = listener.accept() => match r {
                Ok(a) => a,
                Err(err) => {
                    debug!(?err, "http accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let Ok(permit) = cap.clone().try_acquire_owned() else {
            app.metrics.http_connections_refused.inc();
            refusals.note(peer, config.max_connections);
            // Best effort: say why, then close.
            let _ = stream.try_write(OVERLOADED);
            continue;
        };
        app.metrics.http_connections.inc();
        let slot = ConnectionSlot(Arc::new(Slot {
            _permit: permit,
            open: app.metrics.http_connections.clone(),
        }));
        let _ = stream.set_nodelay(true);
        let shutdown = shutdown.clone();
        let app = app.clone();
        let activity = Arc::new(Activity::default());
        let conn = builder.serve_connection(
            TokioIo::new(Lingering(Some(stream), activity.clone())),
            service_fn({
                let (app, activity) = (app.clone(), activity.clone());
                move |mut req: Request<Incoming>| {
                    let app = app.clone();
                    req.extensions_mut().insert(slot.clone());
                    let answering = Answering::new(&activity);
                    async move {
                        let resp = route(&app, req, peer).await;
                        drop(answering);
                        Ok::<_, Infallible>(resp)
                    }
                }
            }),
        );
        let keep_alive = config.keep_alive_timeout;
        tokio::spawn(async move {
            let conn = conn.with_upgrades();
            tokio::pin!(conn);
            loop {
                // A request being answered (held, say) is looked at again later.
                let idle_at = if activity.answering.load(Ordering::Relaxed) > 0 {
                    tokio::time::Instant::now() + keep_alive
                } else {
                    tokio::time::Instant::from_std(activity.last_io()) + keep_alive
                };
                tokio::select! {
                    r = conn.as_mut() => {
                        match r {
                            Err(err) if err.is_timeout() => {
                                app.metrics.http_header_timeouts.inc();
                                debug!(%peer, "request head not received in time; closed");
                            }
                            Err(err) => debug!(%peer, ?err, "http connection error"),
                            Ok(()) => {}
                        }
                        return;
                    }
                    _ = shutdown.cancelled() => break,
                    _ = tokio::time::sleep_until(idle_at) => {
                        if activity.idle_for() >= keep_alive {
                            // Nothing is being answered and no byte moved, so
                            // nothing is lost: close it (hyper's graceful
                            // shutdown would wait for a half-sent head).
                            app.metrics.http_idle_closed.inc();
                            debug!(%peer, "idle connection closed");
                            return;
                        }
                    }
                }
            }
            // Stopping: hyper closes an idle connection at once and lets one
            // being answered finish.
            conn.as_mut().graceful_shutdown();
            let _ = conn.await;
        });
    }
}

/// Logs refused connections at most once per [`REFUSAL_LOG_INTERVAL`].
#[derive(Default)]
struct RefusalLog {
    refused: AtomicU64,
    last: Mutex<Option<Instant>>,
}

impl RefusalLog {
    fn note(&self, peer: SocketAddr, max: usize) {
        let refused = self.refused.fetch_add(1, Ordering::Relaxed) + 1;
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_none_or(|t| t.elapsed() >= REFUSAL_LOG_INTERVAL) {
            *last = Some(Instant::now());
            warn!(%peer, max, refused, "http connection limit reached; closing new connections");
        }
    }
}
