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
use crate::response;

/// Playlist content type [RFC 8216bis 4].
pub const PLAYLIST_TYPE: &str = "application/vnd.apple.mpegurl";
/// Parts, segments and init segments.
pub const MEDIA_TYPE: &str = "video/mp4";
/// Parts, segments and init segments never change once they exist.
pub const IMMUTABLE: &str = "public, max-age=31536000, immutable";
/// A playlist answered to a blocking request is valid for the part it waited
/// for; edges may reuse it briefly for everyone asking the same question.
const BLOCKING_PLAYLIST_CACHE: &str = "public, max-age=2";
/// An ended playlist only changes if the broadcast comes back.
const ENDED_PLAYLIST_CACHE: &str = "public, max-age=10";
/// Preload hints may name parts up to this far past the newest one.
const MAX_PARTS_AHEAD: u64 = 2;

/// A request as the HLS handler needs it.
pub struct HlsRequest<'a> {
    /// The path after `/hls/`.
    pub path: &'a str,
    /// The raw query string.
    pub query: Option<&'a str>,
    /// Whether the client accepts gzip.
    pub accepts_gzip: bool,
    /// The client's address, for held-request limits; `None` for a request
    /// another origin forwarded (its client was counted there).
    pub client: Option<IpAddr>,
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
    let mut resp = response::body(PLAYLIST_TYPE, cache, if accepts_gzip { gz } else { plain });
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
    client: Option<IpAddr>,
) -> Result<Response<Full<Bytes>>, HttpError> {
    let file = MediaFile::parse(file).ok_or(HttpError::NotFound)?;
    if let MediaFile::Init(id) = file {
        let data = r.with_window(|w| w.init(id)).ok_or(HttpError::NotFound)?;
        return Ok(response::body(MEDIA_TYPE, IMMUTABLE, data));
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
            return Ok(response::body(MEDIA_TYPE, IMMUTABLE, data));
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

#[cfg(test)]
mod tests {
    //! The hold logic on a paused clock: what is answered at once, what
    //! waits for a part and is answered when it lands, and what gets 503
    //! after exactly 3 x TD. Parts are put in the window directly.
    use std::time::{Duration, SystemTime};

    use super::*;
    use crate::hls::config::HlsConfig;
    use crate::hls::registry::Broadcast;
    use crate::hls::window::{NewPart, SegmentStart};

    const PARTS_PER_SEGMENT: usize = 5;
    const CLIENT: IpAddr = IpAddr::V4(std::net::Ipv4Addr::LOCALHOST);

    struct Live {
        hls: Arc<Hls>,
        broadcast: Arc<Broadcast>,
        rendition: Arc<Rendition>,
        parts: usize,
    }

    impl Live {
        /// A broadcast `b` with rendition `720p` and `segments` whole segments.
        fn new(config: HlsConfig, segments: usize) -> Live {
            let hls = Hls::new(config, Arc::default(), None);
            let broadcast = hls.broadcast_or_new("b");
            let info = transcoder::RenditionInfo {
                name: "720p".into(),
                width: 1280,
                height: 720,
                bitrate_kbps: 2800,
                source: false,
            };
            let (rendition, _) = broadcast.get_or_add(&info, hls.config.window_limits(), None);
            rendition
                .window
                .lock()
                .unwrap()
                .set_init(Bytes::from_static(b"init"));
            let mut live = Live {
                hls,
                broadcast,
                rendition,
                parts: 0,
            };
            for _ in 0..segments * PARTS_PER_SEGMENT + 1 {
                live.part();
            }
            live
        }

        /// Appends the next 200-ms part, as the packager would.
        fn part(&mut self) {
            let new_segment = self.parts.is_multiple_of(PARTS_PER_SEGMENT);
            self.rendition
                .window
                .lock()
                .unwrap()
                .push(NewPart {
                    duration: Duration::from_millis(200),
                    independent: new_segment,
                    data: Bytes::from(vec![self.parts as u8; 10]),
                    new_segment: new_segment.then_some(SegmentStart {
                        discontinuity: false,
                        program_date_time: SystemTime::UNIX_EPOCH,
                    }),
                })
                .unwrap();
            self.parts += 1;
            self.broadcast.refresh(&self.hls.config.playlist_settings());
            self.broadcast.changed.send_modify(|v| *v += 1);
        }

        /// The request for `path` under `/hls/` with `query`, in a task.
        fn ask(
            &self,
            path: &str,
            query: &str,
        ) -> tokio::task::JoinHandle<Result<Response<Full<Bytes>>, HttpError>> {
            let (hls, path, query) = (self.hls.clone(), path.to_owned(), query.to_owned());
            tokio::spawn(async move {
                handle(
                    &hls,
                    HlsRequest {
                        path: &path,
                        query: (!query.is_empty()).then_some(query.as_str()),
                        accepts_gzip: false,
                        client: Some(CLIENT),
                    },
                )
                .await
            })
        }
    }

    fn status(r: Result<Response<Full<Bytes>>, HttpError>) -> u16 {
        match r {
            Ok(r) => r.status().as_u16(),
            Err(e) => e.status().as_u16(),
        }
    }

    async fn body(r: Result<Response<Full<Bytes>>, HttpError>) -> String {
        use http_body_util::BodyExt;
        let b = r.unwrap().into_body().collect().await.unwrap().to_bytes();
        String::from_utf8_lossy(&b).into_owned()
    }

    #[tokio::test(start_paused = true)]
    async fn a_blocking_reload_is_answered_when_its_part_lands_not_before() {
        let mut live = Live::new(HlsConfig::default(), 2);
        // Segments 1 and 2 are whole; segment 3 has part 0. Ask for part 1.
        let held = live.ask("b/720p.m3u8", "_HLS_msn=3&_HLS_part=1");
        tokio::time::sleep(Duration::from_millis(150)).await;
        assert!(!held.is_finished(), "held until the part exists");
        let landed = tokio::time::Instant::now();
        live.part();
        let r = held.await.unwrap();
        assert_eq!(landed.elapsed(), Duration::ZERO, "answered as it lands");
        let text = body(r).await;
        assert!(text.contains("p11.m4s"), "{text}");
    }

    #[tokio::test(start_paused = true)]
    async fn one_part_landing_wakes_a_thousand_held_requests_at_once() {
        let mut live = Live::new(
            HlsConfig {
                max_held_per_client: 1000,
                ..Default::default()
            },
            2,
        );
        let held: Vec<_> = (0..1000)
            .map(|_| live.ask("b/720p.m3u8", "_HLS_msn=3&_HLS_part=1"))
            .collect();
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert_eq!(live.hls.held.held(), 1000);
        let landed = tokio::time::Instant::now();
        live.part();
        for h in held {
            assert_eq!(status(h.await.unwrap()), 200);
        }
        assert_eq!(landed.elapsed(), Duration::ZERO);
        assert_eq!(live.hls.held.held(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn an_unsatisfied_request_gets_503_after_exactly_three_target_durations() {
        let live = Live::new(HlsConfig::default(), 2);
        let timeout = live.hls.config.hold_timeout();
        assert_eq!(timeout, Duration::from_secs(3));
        let started = tokio::time::Instant::now();
        let held = live.ask("b/720p.m3u8", "_HLS_msn=3&_HLS_part=1");
        tokio::time::sleep(timeout - Duration::from_millis(1)).await;
        assert!(!held.is_finished());
        assert_eq!(status(held.await.unwrap()), 503);
        assert_eq!(started.elapsed(), timeout);
        assert_eq!(live.hls.held.held(), 0, "the slot is given back");
    }

    #[tokio::test(start_paused = true)]
    async fn what_can_be_answered_now_is_answered_without_waiting() {
        let live = Live::new(HlsConfig::default(), 3);
        let now = tokio::time::Instant::now();
        for (path, query, want) in [
            ("b/720p.m3u8", "", 200),
            ("b/720p.m3u8", "_HLS_msn=1&_HLS_part=0", 200),
            // A part index past a finished segment means the next segment's part 0.
            ("b/720p.m3u8", "_HLS_msn=2&_HLS_part=5", 200),
            ("b/720p.m3u8", "_HLS_msn=9", 400),
            ("b/720p.m3u8", "_HLS_msn=4&_HLS_part=999", 400),
            ("b/720p.m3u8", "_HLS_part=1", 400),
            ("b/nope.m3u8", "", 404),
            ("b/master.m3u8", "", 200),
        ] {
            assert_eq!(
                status(live.ask(path, query).await.unwrap()),
                want,
                "{path}?{query}"
            );
        }
        let g = live.rendition.uris.generation.clone();
        for (file, want) in [
            ("p0.m4s", 200),
            ("s1.m4s", 200),
            ("init0.mp4", 200),
            // Far past the preload hint, or never to exist.
            ("p99.m4s", 404),
            ("s99.m4s", 404),
            ("init7.mp4", 404),
        ] {
            let path = format!("b/720p/{g}/{file}");
            assert_eq!(status(live.ask(&path, "").await.unwrap()), want, "{file}");
        }
        assert_eq!(now.elapsed(), Duration::ZERO, "nothing waited");
    }

    #[tokio::test(start_paused = true)]
    async fn the_hinted_part_is_held_then_served_whole() {
        let mut live = Live::new(HlsConfig::default(), 2);
        let g = live.rendition.uris.generation.clone();
        let hinted = live.ask(&format!("b/720p/{g}/p11.m4s"), "");
        tokio::time::sleep(Duration::from_millis(100)).await;
        assert!(!hinted.is_finished());
        live.part();
        let r = hinted.await.unwrap().unwrap();
        assert_eq!(r.status(), 200);
        assert_eq!(r.headers()["cache-control"], IMMUTABLE);
    }

    #[tokio::test(start_paused = true)]
    async fn stopping_answers_held_requests_at_once_and_the_cap_refuses_more() {
        let live = Live::new(
            HlsConfig {
                max_held_per_client: 2,
                ..Default::default()
            },
            2,
        );
        let a = live.ask("b/720p.m3u8", "_HLS_msn=3&_HLS_part=1");
        let b = live.ask("b/720p.m3u8", "_HLS_msn=3&_HLS_part=2");
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(live.hls.held.held(), 2);
        let c = live.ask("b/720p.m3u8", "_HLS_msn=3&_HLS_part=1");
        assert_eq!(status(c.await.unwrap()), 429, "over the per-client cap");
        let stopping = tokio::time::Instant::now();
        live.hls.stop().await;
        assert_eq!(status(a.await.unwrap()), 503);
        assert_eq!(status(b.await.unwrap()), 503);
        assert_eq!(stopping.elapsed(), Duration::ZERO, "answered at once");
    }
}
