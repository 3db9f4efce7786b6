//! Serving LL-HLS over HTTP: playlists with blocking reload and delta
//! updates, parts (held until complete when preload-hinted), segments and
//! init segments, with CDN-friendly caching.
//!
//! URL layout under `/hls/{broadcast}/`:
//! - `master.m3u8`: the multivariant playlist;
//! - `{rendition}.m3u8`: a media playlist;
//! - `{rendition}/{generation}/p{seq}.m4s`, `s{msn}.m4s`, `init{id}.mp4`
//!   (see [`super::uris`]).
//!
//! Anything else, including any form of path traversal, is a 404: paths are
//! matched piece by piece against these shapes, never joined onto a directory.

use std::net::IpAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use tokio::time::{Instant, timeout_at};

use super::directives::{self, Decision};
use super::registry::{Hls, Rendition};
use super::uris::{MediaFile, valid_name};
use crate::error::HttpError;

/// Playlist content type [RFC 8216bis 4].
pub const PLAYLIST_TYPE: &str = "application/vnd.apple.mpegurl";
/// Parts, segments and init segments.
pub const MEDIA_TYPE: &str = "video/mp4";
/// Parts, segments and init segments never change once they exist.
const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// A playlist answered to a blocking request is valid for the part it waited
/// for; edges may reuse it briefly for everyone asking the same question.
const BLOCKING_PLAYLIST_CACHE: &str = "public, max-age=2";
/// An ended playlist only changes if the broadcast comes back.
const ENDED_PLAYLIST_CACHE: &str = "public, max-age=10";
/// Preload hints may name parts up to this far past the newest one.
const MAX_PARTS_AHEAD: u64 = 2;

fn ok(content_type: &str, cache: &str, body: Bytes) -> Response<Full<Bytes>> {
    Response::builder()
        .header("content-type", content_type)
        .header("cache-control", cache)
        .body(Full::new(body))
        .expect("valid response")
}

/// A request as the HLS handler needs it.
pub struct HlsRequest<'a> {
    /// The path after `/hls/`.
    pub path: &'a str,
    /// The raw query string.
    pub query: Option<&'a str>,
    /// Whether the client accepts gzip.
    pub accepts_gzip: bool,
    /// The client's address, for held-request limits.
    pub client: IpAddr,
}

/// Handles a GET or HEAD under `/hls/`.
pub async fn handle(
    hls: &Arc<Hls>,
    req: HlsRequest<'_>,
) -> Result<Response<Full<Bytes>>, HttpError> {
    let pieces: Vec<&str> = req.path.split('/').collect();
    match pieces[..] {
        [id, "master.m3u8"] if valid_name(id) => master(hls, id, &req).await,
        [id, file] if valid_name(id) => match file.strip_suffix(".m3u8") {
            Some(name) if valid_name(name) => media_playlist(hls, id, name, &req).await,
            _ => Err(HttpError::NotFound),
        },
        [id, name, generation, file]
            if valid_name(id) && valid_name(name) && valid_name(generation) =>
        {
            let broadcast = hls.broadcast(id).ok_or(HttpError::NotFound)?;
            let r = broadcast.rendition(name).ok_or(HttpError::NotFound)?;
            if r.uris.generation != generation {
                return Err(HttpError::NotFound);
            }
            media_file(hls, &r, file, req.client).await
        }
        _ => Err(HttpError::NotFound),
    }
}

async fn master(
    hls: &Arc<Hls>,
    id: &str,
    req: &HlsRequest<'_>,
) -> Result<Response<Full<Bytes>>, HttpError> {
    let broadcast = hls.broadcast(id).ok_or(HttpError::NotFound)?;
    let deadline = Instant::now() + hls.config.hold_timeout();
    let mut changes = broadcast.subscribe();
    let mut _permit = None;
    loop {
        if let Some((plain, gz)) = broadcast.multivariant() {
            return Ok(playlist_response(
                "public, max-age=1",
                req.accepts_gzip,
                plain,
                gz,
            ));
        }
        if _permit.is_none() {
            _permit = Some(hls.held.acquire(req.client)?);
        }
        wait_change(
            hls,
            deadline,
            changes.changed(),
            "broadcast has no media yet",
        )
        .await?;
    }
}

async fn media_playlist(
    hls: &Arc<Hls>,
    id: &str,
    name: &str,
    req: &HlsRequest<'_>,
) -> Result<Response<Full<Bytes>>, HttpError> {
    let d = directives::parse(req.query).map_err(HttpError::BadRequest)?;
    let r = hls
        .broadcast(id)
        .and_then(|b| b.rendition(name))
        .ok_or(HttpError::NotFound)?;
    let mut rx = r.subscribe();
    let deadline = Instant::now() + hls.config.hold_timeout();
    let max_parts = hls.config.max_part_index();
    let mut _permit = None;
    let snap = loop {
        let snap = rx.borrow_and_update().clone();
        match directives::decide(&d, snap.position.as_ref(), max_parts) {
            Decision::Now => break snap,
            Decision::BadRequest(msg) => return Err(HttpError::BadRequest(msg)),
            Decision::Wait => {}
        }
        if _permit.is_none() {
            _permit = Some(hls.held.acquire(req.client)?);
        }
        wait_change(
            hls,
            deadline,
            rx.changed(),
            "the requested part did not appear within 3 target durations",
        )
        .await?;
    };
    let pos = snap
        .position
        .expect("decide answers Now only with a position");
    let (plain, gz) = if d.skip {
        (&snap.delta, &snap.delta_gz)
    } else {
        (&snap.full, &snap.full_gz)
    };
    let cache = if pos.ended {
        ENDED_PLAYLIST_CACHE.to_string()
    } else if d.msn.is_some() {
        BLOCKING_PLAYLIST_CACHE.to_string()
    } else {
        // At most half a target duration, in whole seconds.
        format!("public, max-age={}", hls.config.target_duration_secs() / 2)
    };
    Ok(playlist_response(
        &cache,
        req.accepts_gzip,
        plain.clone(),
        gz.clone(),
    ))
}

/// A playlist, gzipped for clients that accept it (Apple's HLS authoring
/// spec asks for compressed playlists; they are rendered and compressed once).
fn playlist_response(
    cache: &str,
    accepts_gzip: bool,
    plain: Bytes,
    gz: Bytes,
) -> Response<Full<Bytes>> {
    let mut resp = ok(PLAYLIST_TYPE, cache, if accepts_gzip { gz } else { plain });
    let h = resp.headers_mut();
    h.insert("vary", "accept-encoding".parse().expect("static header"));
    if accepts_gzip {
        h.insert("content-encoding", "gzip".parse().expect("static header"));
    }
    resp
}

async fn media_file(
    hls: &Arc<Hls>,
    r: &Arc<Rendition>,
    file: &str,
    client: IpAddr,
) -> Result<Response<Full<Bytes>>, HttpError> {
    let file = MediaFile::parse(file).ok_or(HttpError::NotFound)?;
    if let MediaFile::Init(id) = file {
        let data = r.with_window(|w| w.init(id)).ok_or(HttpError::NotFound)?;
        return Ok(ok(MEDIA_TYPE, IMMUTABLE, data));
    }
    let mut rx = r.subscribe();
    let deadline = Instant::now() + hls.config.hold_timeout();
    let mut _permit = None;
    loop {
        let snap = rx.borrow_and_update().clone();
        let found = r.with_window(|w| match file {
            MediaFile::Part(seq) => w.part(seq).map(|p| p.data.clone()),
            MediaFile::Segment(msn) => w.segment(msn),
            MediaFile::Init(_) => None,
        });
        if let Some(data) = found {
            return Ok(ok(MEDIA_TYPE, IMMUTABLE, data));
        }
        let ended = snap.position.is_some_and(|p| p.ended);
        // Worth waiting for: the hinted part (or one just after), or the segment in progress.
        let coming = !ended
            && match file {
                MediaFile::Part(seq) => {
                    seq >= snap.next_part_seq && seq <= snap.next_part_seq + MAX_PARTS_AHEAD
                }
                MediaFile::Segment(msn) => {
                    r.with_window(|w| msn + 1 >= w.next_msn() && msn < w.next_msn() + 1)
                }
                MediaFile::Init(_) => false,
            };
        if !coming {
            return Err(HttpError::NotFound);
        }
        if _permit.is_none() {
            _permit = Some(hls.held.acquire(client)?);
        }
        wait_change(hls, deadline, rx.changed(), "not produced in time").await?;
    }
}

/// Waits for the next change of what a held request waits on: a 503 after the
/// hold `deadline` (saying `late`), or at once when the server is stopping
/// (players and edges retry, reaching the restarted or another origin).
async fn wait_change<E>(
    hls: &Hls,
    deadline: Instant,
    changed: impl Future<Output = Result<(), E>>,
    late: &str,
) -> Result<(), HttpError> {
    if hls.stopping.is_cancelled() {
        return Err(HttpError::Unavailable("the server is restarting".into()));
    }
    tokio::select! {
        r = timeout_at(deadline, changed) => match r {
            Ok(Ok(())) => Ok(()),
            Ok(Err(_)) => Err(HttpError::NotFound),
            Err(_) => Err(HttpError::Unavailable(late.into())),
        },
        _ = hls.stopping.cancelled() => Err(HttpError::Unavailable("the server is restarting".into())),
    }
}
