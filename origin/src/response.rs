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
