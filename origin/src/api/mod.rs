//! The broadcast and chat API under `/api`, on sled: broadcasts with their
//! lifecycle, stream-key authorization for ingest, chat rooms over WebSocket
//! and live viewer counts. `openapi.json` in this directory documents it and
//! is served at `/api/openapi.json`.
//!
//! Layout:
//! - [`model`]: request and response types, validation, search and order (pure).
//! - [`store`]: sled persistence; stream keys are derived, never stored.
//! - [`chat`]: rooms, fan-out and viewer counts.

pub mod chat;
pub mod model;
pub mod store;

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use self::model::{Create, MAX_BODY_BYTES, Record, Status, Update, View};
use self::store::{Store, StoreError};
use crate::error::HttpError;
use crate::hls::Hls;
use crate::hls::uris::valid_name;

/// The API's state.
pub struct Api {
    /// Persistence.
    pub store: Store,
    /// Chat rooms and viewers.
    pub rooms: chat::Rooms,
    /// LL-HLS, to end playlists when an owner ends a broadcast.
    pub hls: Arc<Hls>,
    /// RTMP port, for the `rtmp_url` shown to streamers.
    pub rtmp_port: u16,
    /// Stream keys from the command line (development without the API).
    pub static_keys: HashSet<String>,
    /// Latest thumbnail of each live broadcast.
    pub thumbnails: Mutex<HashMap<String, watch::Receiver<Option<Bytes>>>>,
    /// Cancels the running publish of a broadcast (its publisher is disconnected).
    pub publishes: Mutex<HashMap<String, CancellationToken>>,
}

impl From<StoreError> for HttpError {
    fn from(e: StoreError) -> Self {
        HttpError::Internal(e.to_string())
    }
}

fn created_json(status: StatusCode, v: &impl serde::Serialize) -> Response<Full<Bytes>> {
    crate::response::json(status, serde_json::to_string(v).expect("serializable"))
}

impl Api {
    /// Opens the store in `data_dir`.
    pub fn open(
        data_dir: &Path,
        hls: Arc<Hls>,
        rtmp_port: u16,
        static_keys: HashSet<String>,
    ) -> Result<Arc<Api>, StoreError> {
        Ok(Arc::new(Api {
            store: Store::open(data_dir)?,
            rooms: chat::Rooms::default(),
            hls,
            rtmp_port,
            static_keys,
            thumbnails: Mutex::default(),
            publishes: Mutex::default(),
        }))
    }

    fn view(&self, r: &Record, host: &str) -> View {
        let hostname = host.rsplit_once(':').map_or(host, |(h, _)| h);
        View {
            id: r.id.clone(),
            title: r.title.clone(),
            description: r.description.clone(),
            status: r.status,
            created_at: r.created_at.clone(),
            started_at: r.started_at.clone(),
            ended_at: r.ended_at.clone(),
            modified_at: r.modified_at.clone(),
            viewer_count: self.rooms.viewers(&r.id),
            peak_viewer_count: r.peak_viewers,
            rtmp_url: format!("rtmp://{hostname}:{}/live", self.rtmp_port),
            playback_url: format!("/hls/{}/master.m3u8", r.id),
            thumbnail_url: format!("/api/broadcasts/{}/thumbnail.jpg", r.id),
            stream_key: None,
            owner_token: None,
        }
    }

    /// A publish started: the broadcast is live.
    pub async fn on_publish(
        &self,
        id: &str,
        cancel: CancellationToken,
        thumbnails: watch::Receiver<Option<Bytes>>,
    ) {
        self.publishes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_owned(), cancel);
        self.thumbnails
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(id.to_owned(), thumbnails);
        let r = self
            .store
            .update(id, |r| {
                if r.status == Status::Live {
                    return Ok::<_, ()>(false);
                }
                r.status = Status::Live;
                let now = store::now_rfc3339();
                r.started_at.get_or_insert(now.clone());
                r.modified_at = now;
                Ok(true)
            })
            .await;
        if let Err(err) = r {
            warn!(broadcast = %id, %err, "could not mark the broadcast live");
        }
    }

    /// The broadcast is over (the publisher did not come back, or the owner ended it).
    pub async fn on_ended(&self, id: &str) {
        self.thumbnails
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id);
        if let Some(c) = self
            .publishes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(id)
        {
            c.cancel();
        }
        let r = self
            .store
            .update(id, |r| {
                if r.status == Status::Ended {
                    return Ok::<_, ()>(false);
                }
                r.status = Status::Ended;
                let now = store::now_rfc3339();
                r.ended_at = Some(now.clone());
                r.modified_at = now;
                Ok(true)
            })
            .await;
        if let Err(err) = r {
            warn!(broadcast = %id, %err, "could not mark the broadcast ended");
        }
    }

    /// Records a new peak viewer count.
    pub async fn note_viewers(&self, id: &str, n: u64) {
        let _ = self
            .store
            .update(id, |r| {
                let higher = n > r.peak_viewers;
                r.peak_viewers = r.peak_viewers.max(n);
                Ok::<_, ()>(higher)
            })
            .await;
    }

    /// After a restart: broadcasts stored as live end unless their publisher
    /// came back within the grace period.
    pub async fn recover(self: &Arc<Self>, grace: std::time::Duration) -> Result<(), StoreError> {
        let live: Vec<String> = self
            .store
            .all()?
            .into_iter()
            .filter(|r| r.status == Status::Live)
            .map(|r| r.id)
            .collect();
        if live.is_empty() {
            return Ok(());
        }
        info!(
            count = live.len(),
            "broadcasts were live at the last stop; waiting for their publishers"
        );
        let api = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            for id in live {
                if api.hls.broadcast(&id).is_none() {
                    api.on_ended(&id).await;
                }
            }
        });
        Ok(())
    }
}

#[async_trait::async_trait]
impl ingest::Authorizer for Api {
    async fn authorize(&self, stream_key: &str) -> Result<ingest::Grant, String> {
        if self.static_keys.contains(stream_key) {
            return Ok(ingest::Grant {
                broadcast_id: stream_key.to_owned(),
            });
        }
        match self.store.by_key(stream_key) {
            Ok(Some(r)) if r.status == Status::Ended => Err("this broadcast has ended".into()),
            Ok(Some(r)) => Ok(ingest::Grant { broadcast_id: r.id }),
            Ok(None) => Err("unknown stream key".into()),
            Err(err) => {
                warn!(%err, "stream key lookup failed");
                Err("server error".into())
            }
        }
    }
}

fn bearer(req: &Request<Incoming>) -> Result<&str, HttpError> {
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

async fn json_body<T: serde::de::DeserializeOwned>(req: Request<Incoming>) -> Result<T, HttpError> {
    let ct = req
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if !ct.starts_with("application/json") {
        return Err(HttpError::UnsupportedMediaType(
            "send Content-Type: application/json".into(),
        ));
    }
    let body = Limited::new(req.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
        .map_err(|_| HttpError::PayloadTooLarge(MAX_BODY_BYTES))?
        .to_bytes();
    serde_json::from_slice(&body)
        .map_err(|e| HttpError::BadRequest(format!("invalid JSON body: {e}")))
}

fn query_params(req: &Request<Incoming>) -> HashMap<String, String> {
    req.uri()
        .query()
        .map(|q| url_pairs(q).into_iter().collect())
        .unwrap_or_default()
}

/// Splits and percent-decodes `a=b&c=d` (with `+` as space).
fn url_pairs(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (decode(k), decode(v))
        })
        .collect()
}

fn decode(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        let hex = b
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (b[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (b'+', _) => {
                out.push(b' ');
                i += 1;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Handles everything under `/api`.
pub async fn handle(
    api: &Arc<Api>,
    mut req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, HttpError> {
    let path = req.uri().path().to_owned();
    let host = req
        .headers()
        .get("host")
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost")
        .to_owned();
    let method = req.method().clone();
    let pieces: Vec<&str> = path.trim_start_matches("/api/").split('/').collect();
    let get = method == Method::GET || method == Method::HEAD;
    match (&method, pieces.as_slice()) {
        (_, ["openapi.json"]) if get => Ok(Response::builder()
            .header("content-type", "application/json")
            .header("cache-control", "public, max-age=60")
            .body(Full::new(Bytes::from_static(include_bytes!(
                "openapi.json"
            ))))
            .expect("valid response")),
        (&Method::POST, ["broadcasts"]) => {
            let c: Create = json_body(req).await?;
            let title = model::title(&c.title).map_err(HttpError::BadRequest)?;
            let description = model::description(&c.description).map_err(HttpError::BadRequest)?;
            let (r, owner_token, key) = api.store.create(title, description).await?;
            info!(broadcast = %r.id, "broadcast created");
            let mut v = api.view(&r, &host);
            v.stream_key = Some(key);
            v.owner_token = Some(owner_token);
            Ok(created_json(StatusCode::CREATED, &v))
        }
        (_, ["broadcasts"]) if get => {
            let q = query_params(&req);
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
                    model::parse_cursor(c)
                        .ok_or_else(|| HttpError::BadRequest("invalid cursor".into()))?,
                ),
                None => None,
            };
            let text = q.get("q").map(String::as_str).unwrap_or("");
            let mut all: Vec<Record> = api
                .store
                .all()?
                .into_iter()
                .filter(|r| status.is_none_or(|s| r.status == s))
                .filter(|r| model::matches(r, text))
                .collect();
            all.sort_by_key(model::order_key);
            let start = after.map_or(0, |a| all.partition_point(|r| model::order_key(r) <= a));
            let page: Vec<&Record> = all[start..].iter().take(limit).collect();
            let next =
                (start + page.len() < all.len()).then(|| model::cursor_of(page[page.len() - 1]));
            let views: Vec<View> = page.into_iter().map(|r| api.view(r, &host)).collect();
            Ok(created_json(
                StatusCode::OK,
                &serde_json::json!({ "broadcasts": views, "next_cursor": next }),
            ))
        }
        (_, ["broadcasts", id]) if get => {
            let r = api.store.get(id)?.ok_or(HttpError::NotFound)?;
            let mut v = api.view(&r, &host);
            // The key is shown again to its owner only.
            if req.headers().contains_key("authorization") {
                let token = bearer(&req)?;
                if !api.store.is_owner(&r, token) {
                    return Err(HttpError::Forbidden(
                        "not the owner of this broadcast".into(),
                    ));
                }
                v.stream_key = Some(api.store.stream_key(&r, token));
            }
            Ok(created_json(StatusCode::OK, &v))
        }
        (&Method::PATCH, ["broadcasts", id]) => {
            let id = id.to_string();
            let r = api.store.get(&id)?.ok_or(HttpError::NotFound)?;
            let token = bearer(&req)?.to_owned();
            if !api.store.is_owner(&r, &token) {
                return Err(HttpError::Forbidden(
                    "not the owner of this broadcast".into(),
                ));
            }
            let u: Update = json_body(req).await?;
            let title = u
                .title
                .as_deref()
                .map(model::title)
                .transpose()
                .map_err(HttpError::BadRequest)?;
            let description = u
                .description
                .as_deref()
                .map(model::description)
                .transpose()
                .map_err(HttpError::BadRequest)?;
            let ending = match u.status {
                None => false,
                Some(Status::Ended) => true,
                Some(s) => {
                    return Err(HttpError::BadRequest(format!(
                        "status can only be set to \"ended\", not {s:?}"
                    )));
                }
            };
            let r = api
                .store
                .update(&id, |r| {
                    let mut changed = false;
                    if let Some(t) = title {
                        r.title = t;
                        changed = true;
                    }
                    if let Some(d) = description {
                        r.description = d;
                        changed = true;
                    }
                    if changed {
                        r.modified_at = store::now_rfc3339();
                    }
                    Ok::<_, HttpError>(changed)
                })
                .await?
                .ok_or(HttpError::NotFound)??;
            if ending {
                api.on_ended(&id).await;
                api.hls.end(&id);
            }
            let r = api.store.get(&id)?.unwrap_or(r);
            Ok(created_json(StatusCode::OK, &api.view(&r, &host)))
        }
        (&Method::POST, ["broadcasts", id, "rotate-key"]) => {
            let r = api.store.get(id)?.ok_or(HttpError::NotFound)?;
            let token = bearer(&req)?;
            if !api.store.is_owner(&r, token) {
                return Err(HttpError::Forbidden(
                    "not the owner of this broadcast".into(),
                ));
            }
            let key = api.store.rotate_key(&r, token).await?;
            Ok(created_json(
                StatusCode::OK,
                &serde_json::json!({ "stream_key": key }),
            ))
        }
        (_, ["broadcasts", id, "thumbnail.jpg"]) if get => {
            let jpeg = api
                .thumbnails
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .get(*id)
                .and_then(|rx| rx.borrow().clone())
                .ok_or(HttpError::NotFound)?;
            Ok(Response::builder()
                .header("content-type", "image/jpeg")
                .header("cache-control", "public, max-age=5")
                .body(Full::new(jpeg))
                .expect("valid response"))
        }
        (&Method::GET, ["broadcasts", id, "chat"]) => {
            let id = id.to_string();
            let r = api.store.get(&id)?.ok_or(HttpError::NotFound)?;
            if !hyper_tungstenite::is_upgrade_request(&req) {
                return Err(HttpError::BadRequest("this is a WebSocket endpoint".into()));
            }
            let q = query_params(&req);
            let streamer = match q.get("token") {
                Some(t) if api.store.is_owner(&r, t) => true,
                Some(_) => {
                    return Err(HttpError::Forbidden(
                        "not the owner of this broadcast".into(),
                    ));
                }
                None => false,
            };
            let user = chat::nickname(q.get("nick").map(String::as_str).unwrap_or(""))
                .map_err(HttpError::BadRequest)?;
            let session = q
                .get("session")
                .filter(|s| valid_name(s))
                .cloned()
                .ok_or_else(|| {
                    HttpError::BadRequest(
                        "session must be 1..64 characters of [A-Za-z0-9_-]".into(),
                    )
                })?;
            let room = api.rooms.room(&id);
            if !room.has_room() {
                return Err(HttpError::TooManyRequests("this chat room is full".into()));
            }
            let config = hyper_tungstenite::tungstenite::protocol::WebSocketConfig::default()
                .max_message_size(Some(chat::MAX_FRAME_BYTES))
                .max_frame_size(Some(chat::MAX_FRAME_BYTES));
            let (resp, ws) = hyper_tungstenite::upgrade(&mut req, Some(config))
                .map_err(|e| HttpError::BadRequest(format!("WebSocket upgrade: {e}")))?;
            let presence = chat::join(api, &id, &session, !streamer);
            // What the connection attached to the request (its place under
            // the HTTP connection cap) lives as long as the socket.
            let connection = std::mem::take(req.extensions_mut());
            let session = chat::serve(api.clone(), ws, id, user, streamer, presence);
            tokio::spawn(async move {
                session.await;
                drop(connection);
            });
            Ok(resp)
        }
        (_, ["broadcasts"] | ["broadcasts", _] | ["broadcasts", _, _]) => {
            Err(HttpError::MethodNotAllowed)
        }
        _ => Err(HttpError::NotFound),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn query_strings_are_percent_decoded() {
        let p = url_pairs("q=%EC%BD%94%EB%94%A9+live&x=%zz&y=%");
        assert_eq!(p[0], ("q".into(), "코딩 live".into()));
        assert_eq!(p[1].1, "%zz");
        assert_eq!(p[2].1, "%");
    }
}
