//! The router: which component answers a path, and what every response
//! gets (CORS, HEAD handling, a status count).

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use tokio_util::sync::CancellationToken;

use crate::api::{self, Api};
use crate::error::HttpError;
use crate::hls::{self, Hls};
use crate::response::json;

/// What the handlers share.
pub struct App {
    /// LL-HLS state.
    pub hls: Arc<Hls>,
    /// The broadcast API and chat.
    pub api: Arc<Api>,
    /// Web pages.
    pub pages: crate::pages::Pages,
    /// Prometheus metrics.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Cancelled when the server is stopping (`/readyz` turns 503).
    pub shutdown: CancellationToken,
}

pub async fn route(app: &App, req: Request<Incoming>, peer: SocketAddr) -> Response<Full<Bytes>> {
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
        } else if let Err(e) = app.api.store.ping().await {
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
        for (id, n) in app.api.chat.rooms.all_viewers() {
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
