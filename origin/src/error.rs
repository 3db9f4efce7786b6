//! HTTP errors and the one place they become status codes.

use bytes::Bytes;
use http_body_util::Full;
use hyper::{Response, StatusCode};

/// Seconds a client is told to wait after a 503 or 429.
const RETRY_AFTER_SECS: &str = "1";

/// Everything an HTTP handler can refuse with.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum HttpError {
    /// Nothing is at this URL (unknown broadcast, rendition, part, or a bad path).
    #[error("not found")]
    NotFound,
    /// The request is malformed; the message says how.
    #[error("{0}")]
    BadRequest(String),
    /// Credentials are missing or wrong.
    #[error("{0}")]
    Unauthorized(String),
    /// Credentials are valid but not for this.
    #[error("{0}")]
    Forbidden(String),
    /// The method is not allowed here.
    #[error("method not allowed")]
    MethodNotAllowed,
    /// The request conflicts with the resource's state.
    #[error("{0}")]
    Conflict(String),
    /// The thing was here and was deleted for good.
    #[error("{0}")]
    Gone(String),
    /// The body is larger than the named limit.
    #[error("request body exceeds {0} bytes")]
    PayloadTooLarge(usize),
    /// The body is not JSON.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// A limit on held requests or rates was hit.
    #[error("{0}")]
    TooManyRequests(String),
    /// The thing exists but is not ready in time (e.g. a held request timed out).
    #[error("{0}")]
    Unavailable(String),
    /// Our fault.
    #[error("internal error: {0}")]
    Internal(String),
}

impl HttpError {
    /// The status code for this error.
    pub fn status(&self) -> StatusCode {
        match self {
            HttpError::NotFound => StatusCode::NOT_FOUND,
            HttpError::BadRequest(_) => StatusCode::BAD_REQUEST,
            HttpError::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            HttpError::Forbidden(_) => StatusCode::FORBIDDEN,
            HttpError::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            HttpError::Conflict(_) => StatusCode::CONFLICT,
            HttpError::Gone(_) => StatusCode::GONE,
            HttpError::PayloadTooLarge(_) => StatusCode::PAYLOAD_TOO_LARGE,
            HttpError::UnsupportedMediaType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            HttpError::TooManyRequests(_) => StatusCode::TOO_MANY_REQUESTS,
            HttpError::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            HttpError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The JSON error response. 404s may be cached briefly (a CDN should not
    /// hammer us for a URL that does not exist yet); other errors not at all.
    pub fn into_response(self) -> Response<Full<Bytes>> {
        let body = serde_json::json!({ "error": self.to_string() }).to_string();
        let cache = match self {
            HttpError::NotFound => "public, max-age=1",
            _ => "no-store",
        };
        let mut resp = Response::builder()
            .status(self.status())
            .header("content-type", "application/json")
            .header("cache-control", cache);
        if let HttpError::Unavailable(_) | HttpError::TooManyRequests(_) = self {
            resp = resp.header("retry-after", RETRY_AFTER_SECS);
        }
        resp.body(Full::new(Bytes::from(body)))
            .expect("valid response")
    }
}

impl From<crate::store::StoreError> for HttpError {
    fn from(e: crate::store::StoreError) -> Self {
        match e {
            crate::store::StoreError::NotFound => HttpError::NotFound,
            // The database is away (restarting, unreachable): retry later.
            crate::store::StoreError::Database(msg) => {
                HttpError::Unavailable(format!("the database is unavailable: {msg}"))
            }
            e @ crate::store::StoreError::RoomBusy => HttpError::TooManyRequests(e.to_string()),
            e => HttpError::Internal(e.to_string()),
        }
    }
}
