//! A load generator that behaves like hls.js in low-latency mode, for
//! `scripts/bench-viewers.sh`. Each simulated viewer has its own connection,
//! fetches the multivariant playlist, picks a rendition, then loops: a
//! blocking reload (`_HLS_msn`/`_HLS_part`, with `_HLS_skip=YES` delta updates
//! after the first load) for the next part, then a GET of every new part.
//!
//! It records parts and bytes received, errors, stalls (a part arriving more
//! than 2 x PART-TARGET after the previous one) and, per part, the delay from
//! the playlist response that first listed it to the part fully received.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Serialize;

/// Part URIs a viewer remembers having fetched.
const REMEMBERED_PARTS: usize = 64;
/// Pause after an error before the viewer tries again.
const ERROR_BACKOFF: Duration = Duration::from_millis(200);
/// Longest a request may take: a blocking reload is held at most 3 x TD at
/// the origin, so anything far beyond that is stuck and counts as an error.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Delay samples kept in all (enough for percentiles).
const MAX_DELAY_SAMPLES: usize = 2_000_000;

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Multivariant playlist URL.
    pub url: String,
    /// Simulated viewers.
    pub viewers: usize,
    /// How long each viewer watches.
    pub duration: Duration,
    /// Rendition playlist name to pick (e.g. `480p.m3u8`); the last variant otherwise.
    pub rendition: Option<String>,
    /// Spread viewer start-up over this long.
    pub ramp: Duration,
}

/// What happened.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    /// Simulated viewers.
    pub viewers: usize,
    /// Seconds each watched.
    pub seconds: f64,
    /// Parts received.
    pub parts: u64,
    /// Bytes received in parts.
    pub bytes: u64,
    /// Requests made.
    pub requests: u64,
    /// Non-200 answers and I/O errors.
    pub errors: u64,
    /// Parts that arrived more than 2 x PART-TARGET after the previous one.
    pub stalls: u64,
    /// Median delay from a part's listing to its full delivery, ms.
    pub delay_p50_ms: f64,
    /// 99th percentile of that delay, ms.
    pub delay_p99_ms: f64,
}

#[derive(Default)]
struct Shared {
    parts: u64,
    bytes: u64,
    requests: u64,
    errors: u64,
    stalls: u64,
    delays_us: Vec<u32>,
}

type Http = Client<HttpConnector, Empty<Bytes>>;

async fn fetch(client: &Http, url: &str) -> Result<Bytes, String> {
    let uri: hyper::Uri = url.parse().map_err(|e| format!("{e}"))?;
    let request = async {
        let resp = client.get(uri).await.map_err(|e| e.to_string())?;
        let status = resp.status();
        let body = resp
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        if status != hyper::StatusCode::OK {
            return Err(format!("{status}"));
        }
        Ok(body)
    };
    tokio::time::timeout(REQUEST_TIMEOUT, request)
        .await
        .map_err(|_| format!("no answer within {REQUEST_TIMEOUT:?}"))?
}

fn resolve(base: &str, uri: &str) -> String {
    if uri.starts_with("http://") || uri.starts_with("https://") {
        return uri.to_string();
    }
    let base = base.split('?').next().unwrap_or(base);
    format!("{}{uri}", &base[..base.rfind('/').map_or(0, |i| i + 1)])
}

/// What a viewer needs from a media playlist.
#[derive(Debug, Default, PartialEq)]
pub struct MediaView {
    /// EXT-X-PART URIs in order.
    pub parts: Vec<String>,
    /// MSN of the segment holding the newest part, and its index there.
    pub last: (u64, u32),
    /// PART-TARGET.
    pub part_target: Duration,
    /// EXT-X-ENDLIST.
    pub ended: bool,
}

/// The value of attribute `name` in a tag line (quoted values may hold commas and colons).
fn attribute(line: &str, name: &str) -> Option<String> {
    let list = line.split_once(':')?.1;
    let mut rest = list;
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let (value, next) = match after.strip_prefix('"') {
            Some(q) => {
                let end = q.find('"')?;
                (&q[..end], q[end + 1..].trim_start_matches(','))
            }
            None => after.split_once(',').unwrap_or((after, "")),
        };
        if key == name {
            return Some(value.to_string());
        }
        rest = next;
    }
    None
}

/// Reads the tags a low-latency client needs (pure).
pub fn read_media(text: &str) -> Option<MediaView> {
    let mut v = MediaView::default();
    let (mut seq, mut skipped, mut complete, mut open) = (0u64, 0u64, 0u64, 0u32);
    for line in text.lines() {
        let attr = |name: &str| attribute(line, name);
        if let Some(n) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
            seq = n.trim().parse().ok()?;
        } else if line.starts_with("#EXT-X-SKIP:") {
            skipped = attr("SKIPPED-SEGMENTS")?.parse().ok()?;
        } else if line.starts_with("#EXT-X-PART-INF:") {
            v.part_target = Duration::try_from_secs_f64(attr("PART-TARGET")?.parse().ok()?).ok()?;
        } else if line.starts_with("#EXT-X-PART:") {
            v.parts.push(attr("URI")?);
            open += 1;
        } else if line.starts_with("#EXTINF:") {
            complete += 1;
        } else if line == "#EXT-X-ENDLIST" {
            v.ended = true;
        } else if !line.starts_with('#') && !line.is_empty() {
            // A segment URI closes its parts.
            if open > 0 {
                v.last = (seq + skipped + complete - 1, open - 1);
            }
            open = 0;
        }
    }
    if open > 0 {
        v.last = (seq + skipped + complete, open - 1);
    }
    Some(v)
}

async fn viewer(cfg: Arc<LoadConfig>, shared: Arc<Mutex<Shared>>, start_after: Duration) {
    tokio::time::sleep(start_after).await;
    let client: Http = Client::builder(TokioExecutor::new())
        .pool_max_idle_per_host(1)
        .build_http();
    let end = Instant::now() + cfg.duration;
    let count = |f: &dyn Fn(&mut Shared)| f(&mut shared.lock().unwrap_or_else(|p| p.into_inner()));
    // Multivariant, then the chosen rendition.
    let media_url = loop {
        if Instant::now() >= end {
            return;
        }
        count(&|s| s.requests += 1);
        match fetch(&client, &cfg.url).await.ok().and_then(|b| {
            let pl = m3u8_rs::parse_master_playlist_res(&b).ok()?;
            let v = match &cfg.rendition {
                Some(name) => pl
                    .variants
                    .iter()
                    .find(|v| v.uri.ends_with(name.as_str()))?,
                None => pl.variants.last()?,
            };
            Some(resolve(&cfg.url, &v.uri))
        }) {
            Some(u) => break u,
            None => {
                count(&|s| s.errors += 1);
                tokio::time::sleep(ERROR_BACKOFF).await;
            }
        }
    };
    let mut seen: VecDeque<String> = VecDeque::new();
    let mut next: Option<(u64, u32)> = None;
    let mut last_part_at: Option<Instant> = None;
    while Instant::now() < end {
        let url = match next {
            None => media_url.clone(),
            Some((m, p)) => format!("{media_url}?_HLS_msn={m}&_HLS_part={p}&_HLS_skip=YES"),
        };
        count(&|s| s.requests += 1);
        let view = fetch(&client, &url).await.ok();
        let listed_at = Instant::now();
        let view = view.and_then(|b| read_media(&String::from_utf8_lossy(&b)));
        let Some(view) = view else {
            count(&|s| s.errors += 1);
            tokio::time::sleep(ERROR_BACKOFF).await;
            continue;
        };
        if view.ended {
            break;
        }
        let first_load = next.is_none();
        for uri in &view.parts {
            if seen.contains(uri) {
                continue;
            }
            seen.push_back(uri.clone());
            if seen.len() > REMEMBERED_PARTS {
                seen.pop_front();
            }
            if first_load {
                continue; // Join at the live edge, like a player does.
            }
            count(&|s| s.requests += 1);
            match fetch(&client, &resolve(&media_url, uri)).await {
                Ok(body) => {
                    let now = Instant::now();
                    let stalled = last_part_at.is_some_and(|t| now - t > view.part_target * 2);
                    last_part_at = Some(now);
                    let delay = (now - listed_at).as_micros().min(u128::from(u32::MAX)) as u32;
                    count(&|s| {
                        s.parts += 1;
                        s.bytes += body.len() as u64;
                        s.stalls += u64::from(stalled);
                        if s.delays_us.len() < MAX_DELAY_SAMPLES {
                            s.delays_us.push(delay);
                        }
                    });
                }
                Err(_) => count(&|s| s.errors += 1),
            }
        }
        next = Some((view.last.0, view.last.1 + 1));
    }
}

/// Runs `cfg.viewers` viewers to the end and reports.
pub async fn run(cfg: LoadConfig) -> Report {
    let cfg = Arc::new(cfg);
    let shared = Arc::new(Mutex::new(Shared::default()));
    let tasks: Vec<_> = (0..cfg.viewers)
        .map(|i| {
            let offset = cfg.ramp.mul_f64(i as f64 / cfg.viewers.max(1) as f64);
            tokio::spawn(viewer(cfg.clone(), shared.clone(), offset))
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
    let mut s = std::mem::take(&mut *shared.lock().unwrap_or_else(|p| p.into_inner()));
    s.delays_us.sort_unstable();
    let pct = |q: f64| {
        s.delays_us
            .get(((s.delays_us.len() as f64 * q) as usize).min(s.delays_us.len().saturating_sub(1)))
            .map_or(0.0, |us| f64::from(*us) / 1000.0)
    };
    Report {
        viewers: cfg.viewers,
        seconds: cfg.duration.as_secs_f64(),
        parts: s.parts,
        bytes: s.bytes,
        requests: s.requests,
        errors: s.errors,
        stalls: s.stalls,
        delay_p50_ms: pct(0.5),
        delay_p99_ms: pct(0.99),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_request_that_never_answers_is_an_error_not_a_hang() {
        // A listener that accepts and never answers.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            let mut held = vec![];
            while let Ok((s, _)) = listener.accept().await {
                held.push(s);
            }
        });
        let client: Http = Client::builder(TokioExecutor::new()).build_http();
        let err = fetch(&client, &format!("http://{addr}/x.m3u8"))
            .await
            .unwrap_err();
        assert!(err.contains("no answer"), "{err}");
    }

    #[test]
    fn the_last_part_is_found_in_full_and_delta_playlists() {
        let full = "#EXTM3U\n#EXT-X-PART-INF:PART-TARGET=0.2\n#EXT-X-MEDIA-SEQUENCE:4\n#EXTINF:1,\ns4.m4s\n\
#EXT-X-PART:DURATION=0.2,URI=\"p1.m4s\"\n#EXT-X-PART:DURATION=0.2,URI=\"p2.m4s\"\n#EXTINF:0.4,\ns5.m4s\n\
#EXT-X-PART:DURATION=0.2,URI=\"p3.m4s\"\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"p4.m4s\"\n";
        let v = read_media(full).unwrap();
        assert_eq!(v.parts, ["p1.m4s", "p2.m4s", "p3.m4s"]);
        assert_eq!(v.last, (6, 0));
        assert_eq!(v.part_target, Duration::from_millis(200));
        let delta = full.replace(
            "#EXT-X-MEDIA-SEQUENCE:4\n#EXTINF:1,\ns4.m4s\n",
            "#EXT-X-MEDIA-SEQUENCE:4\n#EXT-X-SKIP:SKIPPED-SEGMENTS=1\n",
        );
        assert_eq!(read_media(&delta).unwrap().last, (6, 0));
        let abs = "#EXT-X-PART:DURATION=0.2,URI=\"http://h:8080/a,b.m4s\",INDEPENDENT=YES";
        assert_eq!(
            attribute(abs, "URI").as_deref(),
            Some("http://h:8080/a,b.m4s")
        );
        assert_eq!(attribute(abs, "INDEPENDENT").as_deref(), Some("YES"));
        let closed = "#EXT-X-MEDIA-SEQUENCE:1\n#EXT-X-PART:DURATION=0.2,URI=\"a\"\n#EXT-X-PART:DURATION=0.2,URI=\"b\"\n#EXTINF:0.4,\ns1.m4s\n";
        assert_eq!(read_media(closed).unwrap().last, (1, 1));
    }
}
