//! The API's routes: one function each, and [`handle`], which picks one.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use tracing::info;

use super::model::{self, Create, Update, View};
use super::request::{json_body, query};
use super::state::{Api, host};
use super::{admin, moderation, replay, whep, whip};
use crate::chat::config::MAX_FRAME_BYTES;
use crate::chat::connection::{self as chat, Member};
use crate::error::HttpError;
use crate::hls::uris::valid_name;
use crate::response::{body, json_of};
use crate::store::Edit;
use crate::store::keys::is_owner;
use crate::store::record::{Author, NewBroadcast, Record, Status, sha256_hex};
use crate::webhooks::Kind;

type Reply = Result<Response<Full<Bytes>>, HttpError>;

/// Handles everything under `/api`.
pub async fn handle(api: &Arc<Api>, req: Request<Incoming>, peer: SocketAddr) -> Reply {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    let pieces: Vec<&str> = path.trim_start_matches("/api/").split('/').collect();
    let get = method == Method::GET || method == Method::HEAD;
    match (&method, pieces.as_slice()) {
        (_, ["openapi.json"]) if get => Ok(openapi()),
        (_, ["access"]) if get => Ok(json_of(
            StatusCode::OK,
            &serde_json::json!({ "creation": api.access.policy().name() }),
        )),
        (_, ["admin", "broadcasts"]) if get => {
            api.access.require_admin(&req)?;
            list(api, &req, true).await
        }
        (_, ["admin", rest @ ..]) => admin::handle(api, req, rest).await,
        (&Method::POST, ["broadcasts"]) => create(api, req, peer).await,
        (_, ["broadcasts"]) if get => list(api, &req, false).await,
        (_, ["broadcasts", id]) if get => show(api, &req, id).await,
        (&Method::PATCH, ["broadcasts", id]) => edit(api, req, id).await,
        (&Method::POST, ["broadcasts", id, "rotate-key"]) => rotate_key(api, &req, id).await,
        (_, ["broadcasts", id, "thumbnail.jpg"]) if get => replay::thumbnail(api, id).await,
        (&Method::DELETE, ["broadcasts", id, "replay"]) => replay::delete(api, &req, id).await,
        (_, ["broadcasts", id, "health"]) if get => health(api, &req, id).await,
        (&Method::POST, ["broadcasts", id, "latency"]) => latency(api, req, id).await,
        (&Method::GET, ["broadcasts", id, "chat"]) => join_chat(api, req, id, peer).await,
        (_, ["broadcasts", id, rest @ ("moderation" | "moderators"), ..]) => {
            let pieces: Vec<&str> = std::iter::once(*rest)
                .chain(pieces[3..].iter().copied())
                .collect();
            moderation::handle(api, req, id, &pieces).await
        }
        (&Method::POST, ["broadcasts", id, "whip"]) => {
            whip::offer(&api.broadcasts, &api.webrtc, req, id, peer).await
        }
        (&Method::DELETE, ["broadcasts", _, "whip" | "whep", session]) => {
            whip::delete(&api.webrtc, session).await
        }
        (_, ["broadcasts", _, "whip" | "whep", _]) => Err(HttpError::MethodNotAllowed),
        (&Method::POST, ["broadcasts", id, "whep"]) => {
            whep::offer(&api.webrtc, req, id, peer).await
        }
        (&Method::POST, ["broadcasts", id, "whep", session, "rendition"]) => {
            whep::switch(&api.webrtc, req, id, session).await
        }
        (_, ["broadcasts"] | ["broadcasts", _] | ["broadcasts", _, _]) => {
            Err(HttpError::MethodNotAllowed)
        }
        _ => Err(HttpError::NotFound),
    }
}

fn openapi() -> Response<Full<Bytes>> {
    body(
        "application/json",
        "public, max-age=60",
        Bytes::from_static(include_bytes!("openapi.json")),
    )
}

/// `POST /api/broadcasts`: the only time the owner token is shown. Checked
/// before admission, so that a malformed request spends no invite use.
async fn create(api: &Api, req: Request<Incoming>, peer: SocketAddr) -> Reply {
    let host = host(&req);
    let mut head = Request::new(());
    *head.headers_mut() = req.headers().clone();
    let c: Create = json_body(req).await?;
    let title = model::title(&c.title).map_err(HttpError::BadRequest)?;
    let description = model::description(&c.description).map_err(HttpError::BadRequest)?;
    let admitted = api
        .access
        .admit(&head, peer.ip(), c.invite.as_deref())
        .await?;
    let created = api
        .store
        .create(NewBroadcast {
            title,
            description,
            unlisted: c.unlisted,
            recorded: c.recorded,
        })
        .await?;
    info!(broadcast = %created.record.id, ?admitted, unlisted = c.unlisted, "broadcast created");
    let mut v = api.view(&created.record, &host);
    v.stream_key = Some(created.stream_key);
    v.owner_token = Some(created.owner_token);
    Ok(json_of(StatusCode::CREATED, &v))
}

/// `GET /api/broadcasts?status=&replay=&q=&limit=&cursor=`: live first,
/// then the newest; unlisted ones only for the operator
/// (`/api/admin/broadcasts`); `replay=ready`: only playable replays.
async fn list<B>(api: &Api, req: &Request<B>, unlisted: bool) -> Reply {
    let q = query(req);
    let limit = match q.get("limit") {
        Some(l) => l
            .parse::<usize>()
            .ok()
            .filter(|l| (1..=model::MAX_PAGE).contains(l))
            .ok_or_else(|| {
                HttpError::BadRequest(format!("limit must be 1..={}", model::MAX_PAGE))
            })?,
        None => model::DEFAULT_PAGE,
    };
    let status = match q.get("status").map(String::as_str) {
        None | Some("") => None,
        Some("live") => Some(Status::Live),
        Some("ready") => Some(Status::Ready),
        Some("ended") => Some(Status::Ended),
        Some(s) => return Err(HttpError::BadRequest(format!("unknown status {s:?}"))),
    };
    let after = match q.get("cursor").filter(|c| !c.is_empty()) {
        Some(c) => Some(
            model::parse_cursor(c).ok_or_else(|| HttpError::BadRequest("invalid cursor".into()))?,
        ),
        None => None,
    };
    let replays = match q.get("replay").map(String::as_str) {
        None | Some("") => false,
        Some("ready") => true,
        Some(s) => {
            return Err(HttpError::BadRequest(format!(
                "replay may only be \"ready\", not {s:?}"
            )));
        }
    };
    let replay_ready = |id: &str| {
        api.recorder
            .as_ref()
            .and_then(|r| r.info(id))
            .is_some_and(|i| i.state == "ready")
    };
    let text = q.get("q").map(String::as_str).unwrap_or("");
    let mut all: Vec<Record> = api
        .store
        .all()
        .await?
        .into_iter()
        .filter(|r| unlisted || !r.unlisted)
        .filter(|r| status.is_none_or(|s| r.status == s))
        .filter(|r| model::matches(r, text))
        .filter(|r| !replays || replay_ready(&r.id))
        .collect();
    all.sort_by_key(model::order_key);
    let start = after.map_or(0, |a| all.partition_point(|r| model::order_key(r) <= a));
    let page: Vec<&Record> = all[start..].iter().take(limit).collect();
    let next = (start + page.len() < all.len()).then(|| model::cursor_of(page[page.len() - 1]));
    let host = host(req);
    let views: Vec<View> = page.into_iter().map(|r| api.view(r, &host)).collect();
    Ok(json_of(
        StatusCode::OK,
        &serde_json::json!({ "broadcasts": views, "next_cursor": next }),
    ))
}

/// `GET /api/broadcasts/{id}`: with the stream key for its owner only.
async fn show<B>(api: &Api, req: &Request<B>, id: &str) -> Reply {
    if req.headers().contains_key("authorization") {
        let (r, token) = api.require_owner(req, id).await?;
        let mut v = api.view(&r, &host(req));
        v.stream_key = Some(api.store.stream_key(&r, &token));
        v.blocked_terms = Some(r.blocked_terms.clone());
        return Ok(json_of(StatusCode::OK, &v));
    }
    let r = api.store.get(id).await?;
    Ok(json_of(StatusCode::OK, &api.view(&r, &host(req))))
}

/// `PATCH /api/broadcasts/{id}`: title, description, or `"status": "ended"`.
async fn edit(api: &Api, req: Request<Incoming>, id: &str) -> Reply {
    let (before, _) = api.require_owner(&req, id).await?;
    let host = host(&req);
    let u: Update = json_body(req).await?;
    let edit = Edit {
        title: u
            .title
            .as_deref()
            .map(model::title)
            .transpose()
            .map_err(HttpError::BadRequest)?,
        description: u
            .description
            .as_deref()
            .map(model::description)
            .transpose()
            .map_err(HttpError::BadRequest)?,
        unlisted: u.unlisted,
        recorded: u.recorded,
        blocked_terms: u
            .blocked_terms
            .as_deref()
            .map(crate::chat::terms::validate)
            .transpose()
            .map_err(HttpError::BadRequest)?,
    };
    let ending = match u.status {
        None => false,
        Some(Status::Ended) => true,
        Some(s) => {
            return Err(HttpError::BadRequest(format!(
                "status can only be set to \"ended\", not {s:?}"
            )));
        }
    };
    let mut r = api.store.edit(id, edit).await?;
    if r.title != before.title {
        api.webhooks.emit(Kind::TitleChanged, &r);
    }
    if ending {
        api.broadcasts.end(id).await;
        r = api.store.get(id).await?;
    }
    let mut v = api.view(&r, &host);
    v.blocked_terms = Some(r.blocked_terms.clone());
    Ok(json_of(StatusCode::OK, &v))
}

/// `POST /api/broadcasts/{id}/rotate-key`: the old key stops working.
async fn rotate_key<B>(api: &Api, req: &Request<B>, id: &str) -> Reply {
    let (r, token) = api.require_owner(req, id).await?;
    let key = api.store.rotate_key(&r.id, &token).await?;
    Ok(json_of(
        StatusCode::OK,
        &serde_json::json!({ "stream_key": key }),
    ))
}

/// `GET /api/broadcasts/{id}/health`: for its owner, what arrives from the
/// publisher (on the origin holding the publish; `null` elsewhere and while
/// nothing is published), the transcoder's numbers, viewers, the latency
/// viewers report, and warnings in plain words.
async fn health<B>(api: &Api, req: &Request<B>, id: &str) -> Reply {
    let (r, _) = api.require_owner(req, id).await?;
    let now = std::time::Instant::now();
    let ingest = api.broadcasts.health.ingest_now(id, now);
    let (transcode, top_kbps) = api.broadcasts.transcode_health(id);
    let (latency, reports) = api.broadcasts.health.latency(id, now);
    let warnings = ingest
        .as_ref()
        .map(|i| crate::health::warnings(i, &transcode, top_kbps))
        .unwrap_or_default();
    Ok(json_of(
        StatusCode::OK,
        &serde_json::json!({
            "status": r.status,
            "ingest": ingest,
            "transcode": transcode,
            "viewers": api.chat.rooms.viewers(id),
            "latency": { "p50_secs": latency, "reports": reports },
            "warnings": warnings,
        }),
    ))
}

/// `POST /api/broadcasts/{id}/latency {"session", "secs"}`: a viewer's page
/// says how far behind the publisher it plays (no credentials, as for
/// watching; one report per session counts, for [`crate::health::REPORT_TTL`]).
/// Only the origin holding the publish takes them (409 elsewhere), so that
/// nothing is kept for broadcasts that are not published.
async fn latency(api: &Api, req: Request<Incoming>, id: &str) -> Reply {
    #[derive(serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Report {
        session: String,
        secs: f64,
    }
    let r: Report = json_body(req).await?;
    if !valid_name(&r.session) {
        return Err(HttpError::BadRequest(
            "session must be 1..64 characters of [A-Za-z0-9_-]".into(),
        ));
    }
    if !(0.0..=crate::health::MAX_LATENCY_SECS).contains(&r.secs) {
        return Err(HttpError::BadRequest(format!(
            "secs must be 0..={}",
            crate::health::MAX_LATENCY_SECS
        )));
    }
    let now = std::time::Instant::now();
    if !api
        .broadcasts
        .health
        .report_latency(id, &r.session, r.secs, now)
    {
        return Err(HttpError::Conflict(
            "not published on this origin; reports go to the origin holding the publish".into(),
        ));
    }
    Ok(json_of(StatusCode::OK, &serde_json::json!({})))
}

/// `GET /api/broadcasts/{id}/chat?nick=&session=[&token=]`: the chat
/// WebSocket; the owner's token marks the streamer (not counted as a
/// viewer), a moderator's token a moderator.
async fn join_chat(api: &Api, mut req: Request<Incoming>, id: &str, peer: SocketAddr) -> Reply {
    let r = api.store.get(id).await?;
    if !hyper_tungstenite::is_upgrade_request(&req) {
        return Err(HttpError::BadRequest("this is a WebSocket endpoint".into()));
    }
    let q = query(&req);
    let (streamer, moderator) = match q.get("token") {
        Some(t) if is_owner(&r, t) => (true, None),
        Some(t) => match api.chat.moderation_now(id).await?.moderator(&sha256_hex(t)) {
            Some(m) => (false, Some(m.id.clone())),
            None => {
                return Err(HttpError::Forbidden(
                    "neither the owner nor a moderator of this broadcast".into(),
                ));
            }
        },
        None => (false, None),
    };
    let user = chat::nickname(q.get("nick").map(String::as_str).unwrap_or(""))
        .map_err(HttpError::BadRequest)?;
    let session = q
        .get("session")
        .filter(|s| valid_name(s))
        .cloned()
        .ok_or_else(|| {
            HttpError::BadRequest("session must be 1..64 characters of [A-Za-z0-9_-]".into())
        })?;
    let member = Member {
        user,
        streamer,
        moderator,
        author: Author {
            session,
            addr: peer.ip().to_string(),
        },
    };
    let config = hyper_tungstenite::tungstenite::protocol::WebSocketConfig::default()
        .max_message_size(Some(MAX_FRAME_BYTES))
        .max_frame_size(Some(MAX_FRAME_BYTES))
        .read_buffer_size(crate::chat::config::READ_BUFFER_BYTES)
        .write_buffer_size(0)
        .max_write_buffer_size(crate::chat::config::MAX_WRITE_BUFFER_BYTES);
    let (resp, ws) = hyper_tungstenite::upgrade(&mut req, Some(config))
        .map_err(|e| HttpError::BadRequest(format!("WebSocket upgrade: {e}")))?;
    // A full room is told so over the socket (close code 1013 and a reason),
    // which a page can read; an HTTP refusal it could not.
    let place = chat::join(&api.chat, id, &member);
    // What the connection attached to the request (its place under the HTTP
    // connection cap) lives as long as the socket.
    let connection = std::mem::take(req.extensions_mut());
    let session = chat::serve(api.chat.clone(), ws, id.to_owned(), member, place);
    tokio::spawn(async move {
        session.await;
        drop(connection);
    });
    Ok(resp)
}
