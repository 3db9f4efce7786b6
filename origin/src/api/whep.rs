//! WHEP: watching a live broadcast over WebRTC, at about the delay of the
//! network plus the transcoder, instead of LL-HLS's part and hold-back.
//!
//! - `POST /api/broadcasts/{id}/whep[?rendition=480p]` with an SDP offer
//!   (receive-only H.264 video and Opus audio): 201 with the answer,
//!   `Location`, `ETag` and `Link`s, as for WHIP. No credentials: whoever
//!   may watch the LL-HLS may watch this.
//! - `POST {Location}/rendition` with `{"rendition": "480p"}` switches the
//!   viewer at that rendition's next IDR.
//! - `DELETE {Location}` ends the session.
//!
//! Only the origin that holds the broadcast's publish can play it (409
//! elsewhere, as for a broadcast that is not live).

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use tracing::info;
use webrtc::Webrtc;

use super::request::{body_of, json_body, query};
use super::whip::{MAX_OFFER_BYTES, created, offer_error};
use crate::error::HttpError;

type Reply = Result<Response<Full<Bytes>>, HttpError>;

/// `POST /api/broadcasts/{id}/whep`.
pub async fn offer(webrtc: &Webrtc, req: Request<Incoming>, id: &str, peer: SocketAddr) -> Reply {
    let rendition = query(&req).get("rendition").cloned();
    let body = body_of(req, "application/sdp", MAX_OFFER_BYTES).await?;
    let offer = std::str::from_utf8(&body)
        .map_err(|_| HttpError::BadRequest("the offer is not UTF-8 text".into()))?;
    let answer = webrtc
        .play(id, rendition.as_deref(), offer, peer)
        .await
        .map_err(offer_error)?;
    info!(broadcast = %id, %peer, ?rendition, "whep viewer accepted");
    Ok(created(
        answer,
        &format!("/api/broadcasts/{id}/whep"),
        webrtc,
    ))
}

/// What a rendition switch asks for.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Switch {
    rendition: String,
}

/// `POST /api/broadcasts/{id}/whep/{session}/rendition`.
pub async fn switch(webrtc: &Webrtc, req: Request<Incoming>, id: &str, session: &str) -> Reply {
    let Switch { rendition } = json_body(req).await?;
    if webrtc
        .switch(id, session, &rendition)
        .await
        .map_err(offer_error)?
    {
        Ok(Response::builder()
            .status(StatusCode::NO_CONTENT)
            .header("cache-control", "no-store")
            .body(Full::new(Bytes::new()))
            .expect("valid response"))
    } else {
        Err(HttpError::NotFound)
    }
}
