//! Replays over HTTP, at the live URLs: once a broadcast has ended here,
//! its playlists are the recording's VOD ones, and its segments and init
//! segments are read from disk when the live window no longer has them.
//! Parts are never recorded. A replay its owner deleted answers 410. A
//! recording that never ended here (this origin stood down for another, or
//! crashed and never got its broadcast back) is not served: it may be only
//! part of the broadcast, and another origin's replay would contradict it.
//!
//! With several origins, the database says what the replay is (see
//! [`super::across`]): every origin answers the same playlists, and a
//! segment another origin recorded is fetched from it.

use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;

use super::across::Across;
use super::catalog::Rendered;
use super::recorder::Recorder;
use super::replay::RenditionReplay;
use super::rows::renditions_of;
use super::{disk, replay};
use crate::error::HttpError;
use crate::hls::Hls;
use crate::hls::server::{IMMUTABLE, MEDIA_TYPE, PLAYLIST_TYPE};
use crate::hls::uris::{MediaFile, valid_name};
use crate::response;
use crate::store::Node;

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
        if let Some(across) = &self.across {
            return self.sealed_playlist(across, id, name).await;
        }
        let (deleted, ended) = {
            let catalog = self.shared.catalog();
            let s = catalog.get(id)?;
            (s.deleted, s.ended.is_some())
        };
        if deleted {
            return Some(Err(gone()));
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
        Some(rendered.answer(name))
    }

    /// With several origins: the replay as the database sealed it.
    async fn sealed_playlist(
        &self,
        across: &Across,
        id: &str,
        name: &str,
    ) -> Option<Result<Response<Full<Bytes>>, HttpError>> {
        let state = match across.state(id).await {
            Ok(s) => s?,
            Err(e) => return Some(Err(HttpError::Unavailable(e.to_string()))),
        };
        if state.deleted {
            return Some(Err(gone()));
        }
        // Not sealed yet: the window (if it ended here) answers meanwhile.
        if !state.ended {
            return None;
        }
        let rendered = match self.shared.rendered_of(id) {
            Some(r) => r,
            None => {
                let index = match across.index.replay_index(id).await {
                    Ok(i) => i,
                    Err(e) => return Some(Err(HttpError::Unavailable(e.to_string()))),
                };
                let renditions = renditions_of(&index);
                if renditions.is_empty() {
                    return None;
                }
                let r = Arc::new(Rendered::of(&renditions));
                self.shared.keep_rendered(id, r.clone());
                r
            }
        };
        Some(rendered.answer(name))
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
        let r = Arc::new(Rendered::of(&rec.renditions));
        self.shared.keep_rendered(id, r.clone());
        Ok(Some(r))
    }

    /// A recorded segment or init segment at `path` (after `/hls/`): on
    /// this origin's disk, or (with several origins) on another's.
    pub async fn media(&self, path: &str) -> Recorded {
        let pieces: Vec<&str> = path.split('/').collect();
        let [id, rendition, generation, file] = pieces[..] else {
            return Recorded::Absent;
        };
        if ![id, rendition, generation].iter().all(|n| valid_name(n)) {
            return Recorded::Absent;
        }
        let name = match MediaFile::parse(file) {
            Some(MediaFile::Segment(msn)) => crate::hls::uris::segment_file(msn),
            Some(MediaFile::Init(n)) => crate::hls::uris::init_file(n),
            _ => return Recorded::Absent,
        };
        // Deleted on another origin: gone here too, before the files are.
        if let Some(across) = &self.across
            && across.known(id).is_some_and(|s| s.deleted)
        {
            return Recorded::Absent;
        }
        let at = self
            .root
            .join(id)
            .join(generation)
            .join(rendition)
            .join(name);
        if let Ok(data) = tokio::fs::read(at).await {
            return Recorded::Here(response::body(MEDIA_TYPE, IMMUTABLE, Bytes::from(data)));
        }
        match &self.across {
            Some(a) => match a.holder(id, rendition, generation).await {
                Some(node) => Recorded::Elsewhere(node),
                None => Recorded::Absent,
            },
            None => Recorded::Absent,
        }
    }
}

/// Where a recorded segment is.
pub enum Recorded {
    /// On this origin's disk: the answer.
    Here(Response<Full<Bytes>>),
    /// On this other origin's disk.
    Elsewhere(Node),
    /// Nowhere.
    Absent,
}

fn gone() -> HttpError {
    HttpError::Gone("this replay was deleted".into())
}

impl Rendered {
    fn of(renditions: &[RenditionReplay]) -> Rendered {
        Rendered {
            master: Bytes::from(replay::multivariant(renditions)),
            media: renditions
                .iter()
                .map(|r| (r.name.clone(), Bytes::from(r.media_playlist())))
                .collect(),
        }
    }

    /// The playlist `name` (`master`, or a rendition's).
    fn answer(&self, name: &str) -> Result<Response<Full<Bytes>>, HttpError> {
        let body = if name == "master" {
            self.master.clone()
        } else {
            self.media.get(name).cloned().ok_or(HttpError::NotFound)?
        };
        Ok(response::body(PLAYLIST_TYPE, REPLAY_PLAYLIST_CACHE, body))
    }
}
