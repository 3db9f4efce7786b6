//! Forwarding a request to the origin that holds its broadcast: streamed
//! both ways, hop-by-hop headers dropped, a bounded number in flight, and
//! signed so that the owner knows it comes from an origin (it then neither
//! forwards it again nor counts it against one client's limits).

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty};
use hyper::header::{HeaderMap, HeaderValue};
use hyper::http::request::Parts;
use hyper::{Request, Response};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::Semaphore;

use super::config::ClusterConfig;
use crate::error::HttpError;
use crate::store::Node;

/// Names the forwarding origin and carries its token: `{node id} {token}`.
pub const FORWARDED_BY: &str = "x-origin-forwarded-by";
/// On every response of an origin that is stopping (draining, or answering
/// its held requests with 503 as it goes): its broadcasts are about to move.
pub const STOPPING: &str = "x-origin-stopping";
/// Idle connections kept open to each other origin.
pub const IDLE_PER_ORIGIN: usize = 64;
/// An idle connection to another origin is closed after this, before that
/// origin's keep-alive timeout (5 s by default) could close it under a request.
const IDLE_TIMEOUT: Duration = Duration::from_secs(4);
/// Headers that belong to one connection, not to the request (RFC 9110 7.6.1).
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// A forwarded response's body, streamed from the other origin.
pub type Body = BoxBody<Bytes, hyper::Error>;

/// Why a request was not forwarded.
#[derive(Debug, thiserror::Error)]
pub enum ForwardError {
    /// Too many requests are forwarded already.
    #[error("too many requests forwarded to other origins")]
    Busy,
    /// The other origin refused the connection or broke it (it may be
    /// gone: another origin may take its broadcasts over).
    #[error("origin {0} unreachable: {1}")]
    Unreachable(String, String),
    /// The other origin did not answer in time.
    #[error("origin {0} did not answer in time")]
    Slow(String),
    /// The URL did not parse.
    #[error("forwarding to {0}")]
    Url(String),
}

impl From<ForwardError> for HttpError {
    fn from(e: ForwardError) -> HttpError {
        match e {
            ForwardError::Url(_) => HttpError::Internal(e.to_string()),
            _ => HttpError::Unavailable(e.to_string()),
        }
    }
}

/// The client other origins are reached with (only GET and HEAD are
/// forwarded: no request body).
pub struct Proxy {
    client: Client<HttpConnector, Empty<Bytes>>,
    permits: Arc<Semaphore>,
    timeout: Duration,
    signature: HeaderValue,
}

impl Proxy {
    /// A client within `config`'s limits that signs with `signature`.
    pub fn new(config: &ClusterConfig, signature: &str) -> Proxy {
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        connector.set_connect_timeout(Some(Duration::from_secs(1)));
        Proxy {
            client: Client::builder(TokioExecutor::new())
                .pool_max_idle_per_host(IDLE_PER_ORIGIN)
                .pool_idle_timeout(IDLE_TIMEOUT)
                .build(connector),
            permits: Arc::new(Semaphore::new(config.proxy_max_requests)),
            timeout: config.proxy_timeout,
            signature: HeaderValue::from_str(signature).expect("node ids and tokens are ASCII"),
        }
    }

    /// Sends the request `head` (a GET or HEAD) to `to` and streams its
    /// answer back. An origin that cannot be reached or does not answer in
    /// time is a 503 (no-store, Retry-After): an edge tries its next origin.
    pub async fn forward(&self, to: &Node, head: &Parts) -> Result<Response<Body>, ForwardError> {
        let permit = self
            .permits
            .clone()
            .try_acquire_owned()
            .map_err(|_| ForwardError::Busy)?;
        let target = format!(
            "{}{}",
            to.url.trim_end_matches('/'),
            head.uri.path_and_query().map_or("/", |p| p.as_str())
        );
        let mut req = Request::new(Empty::new());
        *req.method_mut() = head.method.clone();
        *req.uri_mut() = target.parse().map_err(|_| ForwardError::Url(target))?;
        let headers = req.headers_mut();
        *headers = head.headers.clone();
        strip_hop_by_hop(headers);
        // The client names the other origin as the host.
        headers.remove(hyper::header::HOST);
        headers.insert(FORWARDED_BY, self.signature.clone());
        let resp = tokio::time::timeout(self.timeout, self.client.request(req))
            .await
            .map_err(|_| ForwardError::Slow(to.id.clone()))?
            .map_err(|e| ForwardError::Unreachable(to.id.clone(), e.to_string()))?;
        let (mut parts, body) = resp.into_parts();
        strip_hop_by_hop(&mut parts.headers);
        // The slot is held until the body is done (or dropped).
        let body = body
            .map_frame(move |frame| {
                let _slot = &permit;
                frame
            })
            .boxed();
        Ok(Response::from_parts(parts, body))
    }
}

/// Removes the hop-by-hop headers, and those the `Connection` header names.
fn strip_hop_by_hop(headers: &mut HeaderMap) {
    let named: Vec<String> = headers
        .get_all(hyper::header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|n| n.trim().to_ascii_lowercase())
        .filter(|n| !n.is_empty())
        .collect();
    for name in HOP_BY_HOP
        .iter()
        .copied()
        .chain(named.iter().map(String::as_str))
    {
        headers.remove(name);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hop_by_hop_headers_and_the_ones_connection_names_are_dropped() {
        let mut h = HeaderMap::new();
        h.insert("connection", "keep-alive, x-private".parse().unwrap());
        h.insert("keep-alive", "timeout=5".parse().unwrap());
        h.insert("x-private", "1".parse().unwrap());
        h.insert("transfer-encoding", "chunked".parse().unwrap());
        h.insert("cache-control", "no-store".parse().unwrap());
        h.insert("content-type", "video/mp4".parse().unwrap());
        strip_hop_by_hop(&mut h);
        let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        left.sort();
        assert_eq!(left, ["cache-control", "content-type"]);
    }
}
