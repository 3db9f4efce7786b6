//! Reading API requests: the owner's bearer token, JSON bodies (typed,
//! bounded) and query strings.

use std::collections::HashMap;

use bytes::Bytes;
use http_body_util::{BodyExt, Limited};
use hyper::Request;
use hyper::body::Incoming;

use super::model::MAX_BODY_BYTES;
use crate::error::HttpError;

/// The token of `Authorization: Bearer <token>`.
pub fn bearer<B>(req: &Request<B>) -> Result<&str, HttpError> {
    let h = req.headers().get("authorization").ok_or_else(|| {
        HttpError::Unauthorized("missing Authorization: Bearer <owner token>".into())
    })?;
    h.to_str()
        .ok()
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim)
        .filter(|t| !t.is_empty())
        .ok_or_else(|| HttpError::Unauthorized("Authorization must be Bearer <owner token>".into()))
}

/// A JSON body of at most [`MAX_BODY_BYTES`], sent as `application/json`.
pub async fn json_body<T: serde::de::DeserializeOwned>(
    req: Request<Incoming>,
) -> Result<T, HttpError> {
    let body = body_of(req, "application/json", MAX_BODY_BYTES).await?;
    serde_json::from_slice(&body)
        .map_err(|e| HttpError::BadRequest(format!("invalid JSON body: {e}")))
}

/// A body of at most `max` bytes, sent as `content_type`.
pub async fn body_of(
    req: Request<Incoming>,
    content_type: &str,
    max: usize,
) -> Result<Bytes, HttpError> {
    let ct = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct.starts_with(content_type) {
        return Err(HttpError::UnsupportedMediaType(format!(
            "send Content-Type: {content_type}"
        )));
    }
    Ok(Limited::new(req.into_body(), max)
        .collect()
        .await
        .map_err(|_| HttpError::PayloadTooLarge(max))?
        .to_bytes())
}

/// The query string, percent-decoded (`+` is a space); a repeated key keeps
/// its last value.
pub fn query<B>(req: &Request<B>) -> HashMap<String, String> {
    req.uri()
        .query()
        .map(|q| form_urlencoded::parse(q.as_bytes()).into_owned().collect())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_are_percent_decoded() {
        let req = Request::get("/api/broadcasts?q=%EC%BD%94%EB%94%A9+live&x=%zz&y=%")
            .body(())
            .unwrap();
        let q = query(&req);
        assert_eq!(q["q"], "코딩 live");
        assert_eq!(q["x"], "%zz");
        assert_eq!(q["y"], "%");
    }
}
