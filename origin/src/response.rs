//! Response helpers shared by the HTTP router and the API, so that neither
//! imports the other for them.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};

/// A JSON response that is not cached.
pub fn json(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(status)
        .header("content-type", "application/json")
        .header("cache-control", "no-store")
        .body(Full::new(Bytes::from(body)))
        .expect("valid response")
}

/// `v` as a JSON response that is not cached.
pub fn json_of(status: StatusCode, v: &impl serde::Serialize) -> Response<Full<Bytes>> {
    json(status, serde_json::to_string(v).expect("serializable"))
}

/// A response other than JSON, with its type and cache policy.
pub fn body(content_type: &str, cache: &str, body: Bytes) -> Response<Full<Bytes>> {
    Response::builder()
        .header("content-type", content_type)
        .header("cache-control", cache)
        .body(Full::new(body))
        .expect("valid response")
}

/// 204, not cached.
pub fn no_content() -> Response<Full<Bytes>> {
    Response::builder()
        .status(StatusCode::NO_CONTENT)
        .header("cache-control", "no-store")
        .body(Full::default())
        .expect("a valid response")
}
