//! The operator API, under `/api/admin/`, for the admin token only (401
//! without a bearer token, 403 with another): invite codes, and ending or
//! deleting any broadcast. (`GET /api/admin/broadcasts`, the list with the
//! unlisted ones, is `routes`' list.)

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use tracing::info;

use super::model::{InviteView, NewInvite};
use super::request::json_body;
use super::state::{Api, host};
use crate::error::HttpError;
use crate::response::{json_of, no_content};
use crate::store::record::Status;

/// Longest expiry an invite may be given.
pub const MAX_INVITE_EXPIRY: Duration = Duration::from_secs(366 * 24 * 3600);

type Reply = Result<Response<Full<Bytes>>, HttpError>;

/// Everything under `/api/admin/`; `pieces` follow `admin`.
pub async fn handle(api: &Api, req: Request<Incoming>, pieces: &[&str]) -> Reply {
    api.access.require_admin(&req)?;
    let get = req.method() == Method::GET || req.method() == Method::HEAD;
    match (req.method().clone(), pieces) {
        (Method::POST, ["invites"]) => invite(api, req).await,
        (_, ["invites"]) if get => invites(api).await,
        (Method::DELETE, ["invites", id]) => match api.access.revoke(id).await? {
            true => Ok(no_content()),
            false => Err(HttpError::NotFound),
        },
        (Method::POST, ["broadcasts", id, "end"]) => end(api, &req, id).await,
        (Method::DELETE, ["broadcasts", id]) => delete(api, id).await,
        (_, ["invites"] | ["invites", _] | ["broadcasts"] | ["broadcasts", _, "end"])
        | (_, ["broadcasts", _]) => Err(HttpError::MethodNotAllowed),
        _ => Err(HttpError::NotFound),
    }
}

/// `POST /api/admin/invites`: the code and the studio link, this once.
async fn invite(api: &Api, req: Request<Incoming>) -> Reply {
    let host = host(&req);
    let https = req
        .headers()
        .get("x-forwarded-proto")
        .is_some_and(|p| p.as_bytes() == b"https");
    // No body at all (a bare `curl -X POST`): one use, a week.
    let bare = !req.headers().contains_key("content-type")
        && req
            .headers()
            .get("content-length")
            .is_none_or(|l| l.as_bytes() == b"0");
    let n: NewInvite = if bare {
        NewInvite::default()
    } else {
        json_body(req).await?
    };
    if n.max_uses == Some(0) {
        return Err(HttpError::BadRequest(
            "max_uses must be at least 1 (null: no limit)".into(),
        ));
    }
    let expires_in = n.expires_in_secs.map(Duration::from_secs);
    if expires_in.is_some_and(|e| e.is_zero() || e > MAX_INVITE_EXPIRY) {
        return Err(HttpError::BadRequest(format!(
            "expires_in_secs must be 1..={} (null: never)",
            MAX_INVITE_EXPIRY.as_secs()
        )));
    }
    let (invite, code) = api.access.invite(n.max_uses, expires_in).await?;
    let mut v = InviteView::from(&invite);
    let scheme = if https { "https" } else { "http" };
    v.link = Some(format!("{scheme}://{host}/studio?invite={code}"));
    v.code = Some(code);
    Ok(json_of(StatusCode::CREATED, &v))
}

/// `GET /api/admin/invites`: without their codes, newest first.
async fn invites(api: &Api) -> Reply {
    let mut all = api.access.invites().await?;
    all.sort_by(|a, b| b.created_at.cmp(&a.created_at));
    let views: Vec<InviteView> = all.iter().map(InviteView::from).collect();
    Ok(json_of(
        StatusCode::OK,
        &serde_json::json!({ "invites": views }),
    ))
}

/// `POST /api/admin/broadcasts/{id}/end`: as its owner's End.
async fn end<B>(api: &Api, req: &Request<B>, id: &str) -> Reply {
    api.store.get(id).await?;
    api.broadcasts.end(id).await;
    info!(broadcast = %id, "ended by the operator");
    let r = api.store.get(id).await?;
    Ok(json_of(StatusCode::OK, &api.view(&r, &host(req))))
}

/// `DELETE /api/admin/broadcasts/{id}`: an ended (or never live) broadcast,
/// its key and its chat history; a live one is ended first.
async fn delete(api: &Api, id: &str) -> Reply {
    if api.store.get(id).await?.status == Status::Live {
        return Err(HttpError::Conflict(format!(
            "broadcast {id} is live: end it first (POST /api/admin/broadcasts/{id}/end)"
        )));
    }
    api.store.delete(id).await?;
    super::replay::forget(api, id).await?;
    info!(broadcast = %id, "deleted by the operator");
    Ok(no_content())
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_openapi_document_describes_every_operator_route() {
        let doc: serde_json::Value =
            serde_json::from_str(include_str!("openapi.json")).expect("valid JSON");
        for (path, method) in [
            ("/api/access", "get"),
            ("/api/broadcasts/{id}/health", "get"),
            ("/api/broadcasts/{id}/latency", "post"),
            ("/api/broadcasts/{id}/moderation", "post"),
            ("/api/broadcasts/{id}/moderation", "get"),
            ("/api/broadcasts/{id}/moderators", "post"),
            ("/api/broadcasts/{id}/moderators", "get"),
            ("/api/broadcasts/{id}/moderators/{moderator}", "delete"),
            ("/api/broadcasts/{id}/replay", "delete"),
            ("/api/admin/invites", "post"),
            ("/api/admin/invites", "get"),
            ("/api/admin/invites/{id}", "delete"),
            ("/api/admin/broadcasts", "get"),
            ("/api/admin/broadcasts/{id}", "delete"),
            ("/api/admin/broadcasts/{id}/end", "post"),
        ] {
            let op = &doc["paths"][path][method];
            assert!(op.is_object(), "{method} {path}");
            if path.starts_with("/api/admin/") {
                assert_eq!(op["security"][0]["admin"], serde_json::json!([]), "{path}");
                assert!(op["responses"]["401"].is_object(), "{path}");
            }
        }
        assert!(doc["components"]["schemas"]["Create"]["properties"]["invite"].is_object());
    }
}
