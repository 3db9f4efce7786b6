//! The router: which component answers a path (or which other origin: a
//! broadcast's media and thumbnail are forwarded to the origin holding its
//! window), and what every response gets (CORS, HEAD handling, a status
//! count, and while the origin stops, `Connection: close`, so that edges
//! stop reusing connections to it before it stops accepting, and
//! `x-origin-stopping`, so that other origins wait for its broadcasts to
//! move instead of passing its 503s on).
//!
//! A playlist request whose holder cannot be reached (or is stopping) waits (up to
//! `[cluster] failover_wait_secs`) for the broadcast to be taken over, here
//! or elsewhere, and is then answered by the new holder.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::http::request::Parts;
use hyper::{Method, Request, Response, StatusCode};
use tokio_util::sync::CancellationToken;

use crate::api::{self, Api};
use crate::cluster::Cluster;
use crate::cluster::proxy::{Body, ForwardError, STOPPING};
use crate::error::HttpError;
use crate::hls::{self, Hls};
use crate::recording::Recorded;
use crate::response::json;
use crate::store::Node;

/// What the handlers share.
pub struct App {
    /// LL-HLS state.
    pub hls: Arc<Hls>,
    /// The other origins.
    pub cluster: Arc<Cluster>,
    /// The broadcast API and chat.
    pub api: Arc<Api>,
    /// Web pages.
    pub pages: crate::pages::Pages,
    /// Prometheus metrics.
    pub metrics: Arc<crate::metrics::Metrics>,
    /// Cancelled when a stop is requested (`/readyz` turns 503; with several
    /// origins, everything is still served while the origin drains).
    pub shutdown: CancellationToken,
}

pub async fn route(app: &App, req: Request<Incoming>, peer: SocketAddr) -> Response<Body> {
    // Another origin's request is answered here, whatever the answer.
    let forwarded = app.cluster.forwarded(req.headers());
    let elsewhere = if forwarded {
        Ok(None)
    } else {
        held_elsewhere(app, &req).await
    };
    let resp = match elsewhere {
        Ok(None) => boxed(here(app, req, peer, forwarded).await),
        Ok(Some((id, owner))) => {
            // A playlist request may be held: it counts toward the client's
            // held requests here, and not again at the owner.
            let _held = if req.uri().path().ends_with(".m3u8") {
                match app.hls.held.acquire(Some(peer.ip())) {
                    Ok(p) => Some(p),
                    Err(e) => return finish(app, boxed(e.into_response())),
                }
            } else {
                None
            };
            forward_or_wait(app, req, id, owner).await
        }
        Err(e) => boxed(e.into_response()),
    };
    finish(app, resp)
}

/// How often a playlist request whose holder is unreachable asks who holds
/// the broadcast now.
const FAILOVER_POLL: Duration = Duration::from_millis(250);

/// Forwards `req` to `owner`. A playlist request whose owner cannot be
/// reached waits for a take-over (the publisher reconnecting here or on
/// another origin) and goes to the new holder.
async fn forward_or_wait(
    app: &App,
    req: Request<Incoming>,
    id: String,
    mut owner: Node,
) -> Response<Body> {
    let (head, _) = req.into_parts();
    let path = head.uri.path();
    let waits = head.method == Method::GET && path.ends_with(".m3u8") && path.starts_with("/hls/");
    let deadline = tokio::time::Instant::now() + app.cluster.config.failover_wait;
    loop {
        match app.cluster.proxy.forward(&owner, &head).await {
            // A holder that is stopping answers held requests with 503: its
            // broadcast is about to move, so wait for that too. (A 503 for
            // a part that did not come in time is passed on.)
            Ok(r)
                if waits
                    && r.status() == StatusCode::SERVICE_UNAVAILABLE
                    && r.headers().contains_key(STOPPING) => {}
            Ok(r) => return r,
            Err(ForwardError::Unreachable(..)) if waits => {}
            Err(e) => return boxed(HttpError::from(e).into_response()),
        }
        app.cluster.forget_owner(&id);
        loop {
            if tokio::time::Instant::now() + FAILOVER_POLL > deadline {
                return boxed(
                    HttpError::Unavailable(format!("origin {} is unreachable", owner.id))
                        .into_response(),
                );
            }
            tokio::time::sleep(FAILOVER_POLL).await;
            if app.hls.broadcast(&id).is_some() {
                // Taken over here; the client was counted already.
                return boxed(hls_here(app, &head, None).await);
            }
            match app.cluster.owner_elsewhere(&id).await {
                Ok(Some(o)) if o != owner => {
                    owner = o;
                    break;
                }
                Ok(None) => return boxed(hls_here(app, &head, None).await),
                _ => app.cluster.forget_owner(&id),
            }
        }
    }
}

fn boxed(r: Response<Full<Bytes>>) -> Response<Body> {
    r.map(|b| b.map_err(|e| match e {}).boxed())
}

/// The broadcast `req` is about and the other origin holding its window,
/// if it is one of its media or thumbnail URLs and this origin does not
/// hold it.
async fn held_elsewhere<B>(
    app: &App,
    req: &Request<B>,
) -> Result<Option<(String, Node)>, HttpError> {
    if !app.cluster.is_shared() || !matches!(*req.method(), Method::GET | Method::HEAD) {
        return Ok(None);
    }
    let path = req.uri().path();
    let id = match path.strip_prefix("/hls/") {
        Some(rest) => rest.split('/').next(),
        None => path
            .strip_prefix("/api/broadcasts/")
            .and_then(|rest| rest.strip_suffix("/thumbnail.jpg")),
    };
    let Some(id) = id.filter(|id| hls::uris::valid_name(id)) else {
        return Ok(None);
    };
    if app.hls.broadcast(id).is_some() {
        return Ok(None);
    }
    let owner = app.cluster.owner_elsewhere(id).await?;
    Ok(owner.map(|o| (id.to_owned(), o)))
}

/// What every response gets: CORS headers and a count by status.
fn finish(app: &App, mut resp: Response<Body>) -> Response<Body> {
    app.metrics
        .http_responses
        .get_or_create(&crate::metrics::StatusLabel {
            status: resp.status().as_u16(),
        })
        .inc();
    let h = resp.headers_mut();
    if app.shutdown.is_cancelled() {
        h.insert(hyper::header::CONNECTION, "close".parse().expect("static"));
        h.insert(STOPPING, "1".parse().expect("static"));
    }
    // Players on other origins fetch everything; no credentials are ever involved.
    h.insert("access-control-allow-origin", "*".parse().expect("static"));
    h.insert(
        "access-control-expose-headers",
        "content-length, content-encoding, date, location, link, etag"
            .parse()
            .expect("static"),
    );
    resp
}

/// Answered by this origin: a HEAD gets the GET's headers and length.
async fn here(
    app: &App,
    req: Request<Incoming>,
    peer: SocketAddr,
    forwarded: bool,
) -> Response<Full<Bytes>> {
    let head = req.method() == Method::HEAD;
    let resp = match dispatch(app, req, peer, forwarded).await {
        Ok(r) => r,
        Err(e) => e.into_response(),
    };
    if head {
        let len = resp.body().clone().boxed();
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
    forwarded: bool,
) -> Result<Response<Full<Bytes>>, HttpError> {
    let path = req.uri().path().to_owned();
    let path = path.as_str();
    if req.method() == Method::OPTIONS {
        // CORS preflight, for the API (WHIP included) and the media alike.
        return Ok(Response::builder()
            .status(StatusCode::NO_CONTENT)
            .header(
                "access-control-allow-methods",
                "GET, HEAD, POST, PATCH, DELETE, OPTIONS",
            )
            .header(
                "access-control-allow-headers",
                "authorization, content-type, if-match",
            )
            .header("access-control-max-age", "86400")
            .body(Full::new(Bytes::new()))
            .expect("valid response"));
    }
    if path.starts_with("/api/") {
        return api::handle(&app.api, req, peer).await;
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
        app.metrics.sync_webrtc(&app.api.webrtc.stats);
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
    if path.starts_with("/hls/") {
        if !get {
            return Err(HttpError::MethodNotAllowed);
        }
        let (head, _) = req.into_parts();
        return Ok(hls_here(app, &head, (!forwarded).then_some(peer.ip())).await);
    }
    Err(HttpError::NotFound)
}

/// A GET or HEAD under `/hls/` answered by this origin; `client` counts
/// toward held-request limits (`None`: counted already, or elsewhere).
async fn hls_here(
    app: &App,
    head: &Parts,
    client: Option<std::net::IpAddr>,
) -> Response<Full<Bytes>> {
    let accepts_gzip = head
        .headers
        .get_all("accept-encoding")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|e| e.trim().starts_with("gzip")));
    let path = head.uri.path().strip_prefix("/hls/").unwrap_or_default();
    let recorder = app.api.recorder.as_ref();
    if let Some(r) = recorder
        && let Some(answer) = r.playlist(&app.hls, path).await
    {
        return answer.unwrap_or_else(|e| e.into_response());
    }
    let req = hls::server::HlsRequest {
        path,
        query: head.uri.query(),
        accepts_gzip,
        client,
    };
    match hls::server::handle(&app.hls, req).await {
        Ok(resp) => resp,
        Err(HttpError::NotFound) => {
            // Gone from the live window (or never held here): the recording may have it.
            match recorder {
                Some(r) => match r.media(path).await {
                    Recorded::Here(resp) => resp,
                    Recorded::Elsewhere(node) => recorded_elsewhere(app, &node, head).await,
                    Recorded::Absent => HttpError::NotFound.into_response(),
                },
                None => HttpError::NotFound.into_response(),
            }
        }
        Err(e) => e.into_response(),
    }
}

/// A recorded segment fetched from the origin that recorded it, which
/// answers it from its disk (it is the run's holder: it asks nobody else).
/// A HEAD is asked as a GET, so that the length is the file's.
async fn recorded_elsewhere(app: &App, node: &Node, head: &Parts) -> Response<Full<Bytes>> {
    let mut get = Request::new(());
    *get.uri_mut() = head.uri.clone();
    *get.headers_mut() = head.headers.clone();
    let (get, _) = get.into_parts();
    let resp = match app.cluster.proxy.forward(node, &get).await {
        Ok(r) => r,
        Err(e) => return HttpError::from(e).into_response(),
    };
    let (parts, body) = resp.into_parts();
    match body.collect().await {
        Ok(b) => Response::from_parts(parts, Full::new(b.to_bytes())),
        Err(e) => {
            HttpError::Unavailable(format!("origin {} broke off: {e}", node.id)).into_response()
        }
    }
}
