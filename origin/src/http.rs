//! The HTTP server: one hyper HTTP/1.1 connection task per client under a
//! connection cap, the router, and what every response gets (CORS, HEAD
//! handling). Slow and idle clients are timed out, oversized request heads get
//! 431, and connections we close linger briefly so that a client still sending
//! reads our answer instead of a reset. Stopped gracefully on shutdown.

use std::convert::Infallible;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use prometheus_client::metrics::gauge::Gauge;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::api::{self, Api};
use crate::error::HttpError;
use crate::hls::{self, Hls};
use crate::response::json;

/// Simultaneous HTTP connections, WebSockets included. Each costs a socket and
/// about 20 KiB; behind an edge a few hundred suffice, and 10,000 viewers
/// watching and chatting directly need about two each.
pub const DEFAULT_MAX_CONNECTIONS: usize = 50_000;
/// Time from when a connection waits for a request until that request's head
/// (request line and headers) has arrived: a client trickling a head in is
/// closed after it. Held requests and WebSockets are past their head and
/// never cut by it.
pub const DEFAULT_HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection with no request being answered that moves no bytes for this
/// long is closed. Players ask every part (200 ms); edges reuse theirs for
/// less (see `deploy/nginx-edge.conf`). At most the header timeout, whose
/// clock also runs while a connection waits.
pub const DEFAULT_KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(5);
/// Largest request head (request line and headers) in bytes; larger gets 431.
/// 16 KiB is what common servers and CDNs accept.
pub const DEFAULT_MAX_HEADER_BYTES: usize = 16 << 10;
/// After we close a connection, how long we go on reading (and discarding)
/// what the client still sends, so that closing does not reset the connection
/// and destroy a response (a 413, say) the client has not read yet; like
/// nginx's lingering close.
pub const LINGER_TIME: Duration = Duration::from_secs(2);
/// At most this many bytes are discarded while lingering.
pub const LINGER_MAX_BYTES: usize = 8 << 20;
/// The refusal written to a connection over the cap, before it is closed.
const OVERLOADED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
retry-after: 1\r\nconnection: close\r\ncontent-length: 45\r\n\r\n{\"error\":\"too many connections; retry later\"}";
/// A refused connection is logged at most this often (each is counted).
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(1);

/// HTTP settings; see the `DEFAULT_*` constants for what each one means.
#[derive(Debug, Clone)]
pub struct HttpConfig {
    /// Simultaneous connections.
    pub max_connections: usize,
    /// Deadline for a request head.
    pub header_read_timeout: Duration,
    /// Silence after which an idle connection is closed.
    pub keep_alive_timeout: Duration,
    /// Largest request head.
    pub max_header_bytes: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            max_connections: DEFAULT_MAX_CONNECTIONS,
            header_read_timeout: DEFAULT_HEADER_READ_TIMEOUT,
            keep_alive_timeout: DEFAULT_KEEP_ALIVE_TIMEOUT,
            max_header_bytes: DEFAULT_MAX_HEADER_BYTES,
        }
    }
}

impl HttpConfig {
    /// Rejects settings that cannot work.
    pub fn validate(&self) -> Result<(), String> {
        if self.max_connections == 0 {
            return Err("max_connections must be at least 1".into());
        }
        if self.header_read_timeout < Duration::from_secs(1) {
            return Err("header_read_timeout must be at least 1 s".into());
        }
        if self.keep_alive_timeout < Duration::from_secs(1)
            || self.keep_alive_timeout > self.header_read_timeout
        {
            return Err(
                "keep_alive_timeout must be at least 1 s and at most header_read_timeout".into(),
            );
        }
        // hyper's read buffer cannot be smaller than 8 KiB.
        if !(8 << 10..=1 << 20).contains(&self.max_header_bytes) {
            return Err("max_header_bytes must be between 8 KiB and 1 MiB".into());
        }
        Ok(())
    }
}

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

/// What the handlers share.
pub struct App {
    /// LL-HLS state.
    pub hls: Arc<Hls>,
    /// Broadcasts and chat.
    pub api: Arc<Api>,
    /// Web pages.
    pub pages: crate::pages::Pages,
    /// Prometheus metrics.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Cancelled when the server is stopping (`/readyz` turns 503).
    pub shutdown: CancellationToken,
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
        let activity = Arc::new(Activity::new());
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

/// What a connection's task and its socket share: when bytes last moved, and
/// how many requests are being answered (a held request moves no bytes).
struct Activity {
    start: Instant,
    last_io_ms: AtomicU64,
    answering: AtomicUsize,
}

impl Activity {
    fn new() -> Self {
        Self {
            start: Instant::now(),
            last_io_ms: AtomicU64::new(0),
            answering: AtomicUsize::new(0),
        }
    }
    fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_io_ms.store(ms, Ordering::Relaxed);
    }
    fn last_io(&self) -> Instant {
        self.start + Duration::from_millis(self.last_io_ms.load(Ordering::Relaxed))
    }
    /// How long the connection has been idle; zero while a request is answered.
    fn idle_for(&self) -> Duration {
        if self.answering.load(Ordering::Relaxed) > 0 {
            return Duration::ZERO;
        }
        self.last_io().elapsed()
    }
}

/// A request being answered; dropping it (answered, or the client gone)
/// counts it out.
struct Answering(Arc<Activity>);

impl Answering {
    fn new(activity: &Arc<Activity>) -> Self {
        activity.answering.fetch_add(1, Ordering::Relaxed);
        Self(activity.clone())
    }
}

impl Drop for Answering {
    fn drop(&mut self) {
        self.0.answering.fetch_sub(1, Ordering::Relaxed);
        self.0.touch();
    }
}

/// A client socket that lingers when dropped: if the client may still be
/// sending, a task reads and discards for up to [`LINGER_TIME`] (and
/// [`LINGER_MAX_BYTES`]) before closing, so the kernel does not answer the
/// unread bytes with a reset that destroys our last response. hyper has
/// already shut down the write side by then, so the client sees the response
/// end and stops.
/// It also notes when bytes move, for the keep-alive timeout.
struct Lingering(Option<TcpStream>, Arc<Activity>);

impl Lingering {
    fn stream(&mut self) -> Pin<&mut TcpStream> {
        Pin::new(self.0.as_mut().expect("present until dropped"))
    }
    fn moved<T>(
        &self,
        r: Poll<io::Result<T>>,
        moved: impl FnOnce(&T) -> bool,
    ) -> Poll<io::Result<T>> {
        if let Poll::Ready(Ok(v)) = &r
            && moved(v)
        {
            self.1.touch();
        }
        r
    }
}

impl AsyncRead for Lingering {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let r = self.stream().poll_read(cx, buf);
        let read = buf.filled().len() > before;
        self.moved(r, |_| read)
    }
}

impl AsyncWrite for Lingering {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = self.stream().poll_write(cx, buf);
        self.moved(r, |n| *n > 0)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let r = self.stream().poll_write_vectored(cx, bufs);
        self.moved(r, |n| *n > 0)
    }
    fn is_write_vectored(&self) -> bool {
        true
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.stream().poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        self.stream().poll_shutdown(cx)
    }
}

impl Drop for Lingering {
    fn drop(&mut self) {
        let Some(mut stream) = self.0.take() else {
            return;
        };
        let mut buf = [0u8; 2048];
        match stream.try_read(&mut buf) {
            // The client closed, or the socket failed: nothing to protect.
            Ok(0) => return,
            Err(e) if e.kind() != io::ErrorKind::WouldBlock => return,
            _ => {}
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        runtime.spawn(async move {
            let mut buf = vec![0u8; 16 << 10];
            let mut left = LINGER_MAX_BYTES;
            let _ = tokio::time::timeout(LINGER_TIME, async {
                while left > 0 {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => break,
                        Ok(n) => left = left.saturating_sub(n),
                    }
                }
            })
            .await;
        });
    }
}

async fn route(app: &App, req: Request<Incoming>, peer: SocketAddr) -> Response<Full<Bytes>> {
    let head = req.method() == Method::HEAD;
    let mut resp = match dispatch(app, req, peer).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    app.metrics
        .http_responses
        .get_or_create(&crate::metrics::StatusLabel {
            status: resp.status().as_u16(),
        })
        .inc();
    let h = resp.headers_mut();
    // Players on other origins fetch everything; no credentials are ever involved.
    h.insert("access-control-allow-origin", "*".parse().expect("static"));
    h.insert(
        "access-control-expose-headers",
        "content-length, content-encoding, date"
            .parse()
            .expect("static"),
    );
    if head {
        let len = http_body_util::BodyExt::boxed(resp.body().clone());
        let size = hyper::body::Body::size_hint(&len).exact().unwrap_or(0);
        let (mut parts, _) = resp.into_parts();
        parts.headers.insert("content-length", size.into());
        return Response::from_parts(parts, Full::new(Bytes::new()));
    }
    resp
}

async fn dispatch(
    app: &App,
    req: Request<Incoming>,
    peer: SocketAddr,
) -> Result<Response<Full<Bytes>>, HttpError> {
    let path = req.uri().path().to_owned();
    let path = path.as_str();
    if path.starts_with("/api/") {
        return api::handle(&app.api, req).await;
    }
    if req.method() == Method::OPTIONS {
        return Ok(Response::builder()
            .status(StatusCode::NO_CONTENT)
            .header(
                "access-control-allow-methods",
                "GET, HEAD, POST, PATCH, OPTIONS",
            )
            .header(
                "access-control-allow-headers",
                "authorization, content-type",
            )
            .header("access-control-max-age", "86400")
            .body(Full::new(Bytes::new()))
            .expect("valid response"));
    }
    let get = matches!(*req.method(), Method::GET | Method::HEAD);
    if path == "/healthz" && get {
        // Alive: the process answers.
        return Ok(json(StatusCode::OK, "{\"status\":\"ok\"}".into()));
    }
    if path == "/readyz" && get {
        // Ready: not stopping, GStreamer usable, the database answering.
        let problem = if app.shutdown.is_cancelled() {
            Some("shutting down".to_string())
        } else if let Err(e) = transcoder::pipeline::init() {
            Some(e.to_string())
        } else if let Err(e) = app.api.store.get("readyz") {
            Some(e.to_string())
        } else {
            None
        };
        return Ok(match problem {
            None => json(StatusCode::OK, "{\"status\":\"ready\"}".into()),
            Some(p) => json(
                StatusCode::SERVICE_UNAVAILABLE,
                serde_json::json!({ "status": "not ready", "error": p }).to_string(),
            ),
        });
    }
    if path == "/metrics" && get {
        app.metrics.held_requests.set(app.hls.held.held() as i64);
        for (id, n) in app.api.rooms.all_viewers() {
            app.metrics
                .viewers
                .get_or_create(&crate::metrics::BroadcastLabel { broadcast: id })
                .set(n as i64);
        }
        return Ok(Response::builder()
            .header(
                "content-type",
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
            )
            .header("cache-control", "no-store")
            .body(Full::new(Bytes::from(app.metrics.encode())))
            .expect("valid response"));
    }
    if get && let Some(page) = app.pages.get(path) {
        return Ok(page);
    }
    if let Some(rest) = path.strip_prefix("/hls/") {
        if !get {
            return Err(HttpError::MethodNotAllowed);
        }
        let accepts_gzip = req
            .headers()
            .get_all("accept-encoding")
            .iter()
            .filter_map(|v| v.to_str().ok())
            .any(|v| v.split(',').any(|e| e.trim().starts_with("gzip")));
        return hls::server::handle(
            &app.hls,
            hls::server::HlsRequest {
                path: rest,
                query: req.uri().query(),
                accepts_gzip,
                client: peer.ip(),
            },
        )
        .await;
    }
    Err(HttpError::NotFound)
}
