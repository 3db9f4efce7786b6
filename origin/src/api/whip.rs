//! WHIP (RFC 9725): going live from a browser or OBS over WebRTC.
//!
//! - `POST /api/broadcasts/{id}/whip` with an SDP offer and
//!   `Authorization: Bearer <stream key>`: 201 with the answer, `Location`
//!   (the session's resource), `ETag`, and a `Link` per configured ICE server.
//! - `DELETE` on the `Location` ends the session (and, after the reconnect
//!   grace, the broadcast, as when an RTMP publisher leaves).
//! - `PATCH` (trickle ICE, ICE restarts) is not supported: 405, as the RFC
//!   asks; clients send their candidates in the offer.
//!
//! The stream key is checked by the same authorizer as RTMP: an unknown key
//! or one of another broadcast is 401, an ended broadcast 403, a broadcast
//! with a live publisher (either protocol) 409.

use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response, StatusCode};
use ingest::{Authorizer, Refusal};
use tracing::info;
use webrtc::{Answer, IceServer, OfferError, Webrtc};

use super::request::{bearer, body_of};
use crate::broadcasts::Broadcasts;
use crate::error::HttpError;

/// Largest SDP offer accepted. A browser's offer with audio, video and its
/// candidates is 4 to 8 KB.
pub const MAX_OFFER_BYTES: usize = 64 << 10;

type Reply = Result<Response<Full<Bytes>>, HttpError>;

/// `POST /api/broadcasts/{id}/whip`.
pub async fn offer(
    broadcasts: &Broadcasts,
    webrtc: &Webrtc,
    req: Request<Incoming>,
    id: &str,
    peer: SocketAddr,
) -> Reply {
    let key = bearer(&req)
        .map_err(|_| HttpError::Unauthorized("send Authorization: Bearer <stream key>".into()))?
        .to_owned();
    let grant = broadcasts.authorize(&key).await.map_err(|r| match r {
        Refusal::Ended => HttpError::Forbidden(r.to_string()),
        Refusal::AlreadyLive | Refusal::AlreadyPublishing => HttpError::Conflict(r.to_string()),
        Refusal::Unavailable => HttpError::Unavailable(r.to_string()),
        Refusal::UnknownKey => HttpError::Unauthorized("unknown stream key".into()),
    })?;
    if grant.broadcast_id != id {
        // Not this broadcast's key; no more said than for an unknown one.
        return Err(HttpError::Unauthorized("unknown stream key".into()));
    }
    let body = body_of(req, "application/sdp", MAX_OFFER_BYTES).await?;
    let offer = std::str::from_utf8(&body)
        .map_err(|_| HttpError::BadRequest("the offer is not UTF-8 text".into()))?;
    let answer = webrtc.publish(id, offer, peer).await.map_err(offer_error)?;
    info!(broadcast = %id, %peer, "whip publish accepted");
    Ok(created(
        answer,
        &format!("/api/broadcasts/{id}/whip"),
        webrtc,
    ))
}

/// How a refused offer (WHIP or WHEP) is answered.
pub fn offer_error(e: OfferError) -> HttpError {
    match e {
        OfferError::BadOffer(_) | OfferError::Unsupported(_) | OfferError::NoRendition(..) => {
            HttpError::BadRequest(e.to_string())
        }
        OfferError::AlreadyLive | OfferError::NotLive => HttpError::Conflict(e.to_string()),
        OfferError::Full(_) | OfferError::FullBroadcast(_) | OfferError::Stopping => {
            HttpError::Unavailable(e.to_string())
        }
    }
}

/// 201 with the answer, the session's `Location` under `base`, its `ETag`
/// and the ICE servers' `Link`s (RFC 9725; WHEP answers the same way).
pub fn created(answer: Answer, base: &str, webrtc: &Webrtc) -> Response<Full<Bytes>> {
    let mut resp = Response::builder()
        .status(StatusCode::CREATED)
        .header("content-type", "application/sdp")
        .header("cache-control", "no-store")
        .header("location", format!("{base}/{}", answer.session))
        .header("etag", answer.etag);
    for link in links(webrtc.ice_servers()) {
        resp = resp.header("link", link);
    }
    resp.body(Full::new(Bytes::from(answer.sdp)))
        .expect("valid response")
}

/// `DELETE /api/broadcasts/{id}/whip/{session}`: the session id is the
/// capability (128 random bits, known only to the client that created it).
pub async fn delete(webrtc: &Webrtc, session: &str) -> Reply {
    if webrtc.close(session).await {
        Ok(Response::builder()
            .status(StatusCode::OK)
            .header("cache-control", "no-store")
            .body(Full::new(Bytes::new()))
            .expect("valid response"))
    } else {
        Err(HttpError::NotFound)
    }
}

/// RFC 9725 4.6: one `Link: <url>; rel="ice-server"` per STUN/TURN server,
/// with TURN credentials as attributes.
pub fn links(servers: &[IceServer]) -> Vec<String> {
    servers
        .iter()
        .map(|s| {
            let mut l = format!("<{}>; rel=\"ice-server\"", s.url);
            if let (Some(u), Some(c)) = (&s.username, &s.credential) {
                l.push_str(&format!(
                    "; username=\"{}\"; credential=\"{}\"; credential-type=\"password\"",
                    quoted(u),
                    quoted(c)
                ));
            }
            l
        })
        .collect()
}

fn quoted(s: &str) -> String {
    s.replace('\\', "\\\\").replace('"', "\\\"")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ice_servers_become_link_headers() {
        let links = links(&[
            IceServer {
                url: "stun:stun.example.net".into(),
                username: None,
                credential: None,
            },
            IceServer {
                url: "turn:turn.example.net:3478?transport=udp".into(),
                username: Some("user".into()),
                credential: Some("pa\"ss".into()),
            },
        ]);
        assert_eq!(links[0], "<stun:stun.example.net>; rel=\"ice-server\"");
        assert_eq!(
            links[1],
            "<turn:turn.example.net:3478?transport=udp>; rel=\"ice-server\"; \
             username=\"user\"; credential=\"pa\\\"ss\"; credential-type=\"password\""
        );
    }
}
