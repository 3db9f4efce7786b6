//! Replays over HTTP, at the live URLs: once a broadcast has ended here,
//! its playlists are the recording's VOD ones, and its segments and init
//! segments are read from disk when the live window no longer has them.
//! Parts are never recorded. A replay its owner deleted answers 410. A
//! recording that never ended here (this origin stood down for another, or
//! crashed and never got its broadcast back) is not served: it may be only
//! part of the broadcast, and another origin's replay would contradict it.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;

use super::catalog::Rendered;
use super::recorder::Recorder;
use super::{disk, replay};
use crate::error::HttpError;
use crate::hls::Hls;
use crate::hls::server::{IMMUTABLE, MEDIA_TYPE, PLAYLIST_TYPE};
use crate::hls::uris::{MediaFile, valid_name};
use crate::response;

/// A replay's playlists change only if it is deleted.
const REPLAY_PLAYLIST_CACHE: &str = "public, max-age=10";

impl Recorder {
    /// The answer to a playlist request under `/hls/` (`path` after it)
    /// when it is a replay's; `None` when the live side answers it.
    pub async fn playlist(
        &self,
        hls: &Hls,
        path: &str,
    ) -> Option<Result<Response<Full<Bytes>>, HttpError>> {
        let (id, file) = path.split_once('/')?;
        let name = file.strip_suffix(".m3u8")?;
        if !valid_name(id) || !valid_name(name) {
            return None;
        }
        let live = hls.broadcast(id);
        if live.as_ref().is_some_and(|b| b.ended_at().is_none()) {
            return None;
        }
        let (deleted, ended) = {
            let catalog = self.shared.catalog();
            let s = catalog.get(id)?;
            (s.deleted, s.ended.is_some())
        };
        if deleted {
            return Some(Err(HttpError::Gone(
                "this replay was deleted by its owner".into(),
            )));
        }
        // Ended a moment ago, the window answers until the end is on disk.
        if !ended {
            return None;
        }
        let rendered = match self.rendered(id).await {
            Ok(Some(r)) => r,
            Ok(None) => return None,
            Err(e) => return Some(Err(e)),
        };
        let body = if name == "master" {
            rendered.master.clone()
        } else {
            match rendered.media.get(name) {
                Some(b) => b.clone(),
                None => return Some(Err(HttpError::NotFound)),
            }
        };
        Some(Ok(response::body(
            PLAYLIST_TYPE,
            REPLAY_PLAYLIST_CACHE,
            body,
        )))
    }

    async fn rendered(&self, id: &str) -> Result<Option<Arc<Rendered>>, HttpError> {
        if let Some(r) = self.shared.rendered_of(id) {
            return Ok(Some(r));
        }
        let (root, owned) = (self.root.clone(), id.to_owned());
        let rec = tokio::task::spawn_blocking(move || disk::read(&root, &owned))
            .await
            .map_err(|e| HttpError::Internal(e.to_string()))?
            .map_err(|e| HttpError::Internal(format!("reading the replay: {e}")))?;
        let Some(rec) = rec.filter(|r| !r.renditions.is_empty()) else {
            return Ok(None);
        };
        let r = Arc::new(Rendered {
            master: Bytes::from(replay::multivariant(&rec.renditions)),
            media: rec
                .renditions
                .iter()
                .map(|r| (r.name.clone(), Bytes::from(r.media_playlist())))
                .collect(),
        });
        self.shared.keep_rendered(id, r.clone());
        Ok(Some(r))
    }

    /// A recorded segment or init segment at `path` (after `/hls/`), if
    /// it is on disk.
    pub async fn media(&self, path: &str) -> Option<Response<Full<Bytes>>> {
        let pieces: Vec<&str> = path.split('/').collect();
        let [id, rendition, generation, file] = pieces[..] else {
            return None;
        };
        if ![id, rendition, generation].iter().all(|n| valid_name(n)) {
            return None;
        }
        let name = match MediaFile::parse(file)? {
            MediaFile::Segment(msn) => crate::hls::uris::segment_file(msn),
            MediaFile::Init(n) => crate::hls::uris::init_file(n),
            MediaFile::Part(_) => return None,
        };
        let at = self
            .root
            .join(id)
            .join(generation)
            .join(rendition)
            .join(name);
        let data = tokio::fs::read(at).await.ok()?;
        Some(response::body(MEDIA_TYPE, IMMUTABLE, Bytes::from(data)))
    }
}
