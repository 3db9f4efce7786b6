//! A load generator that behaves like hls.js in low-latency mode, for
//! `scripts/bench-viewers.sh`. Each simulated viewer has its own keep-alive
//! HTTP/1.1 connection, fetches the multivariant playlist, picks a rendition,
//! then loops: a blocking reload (`_HLS_msn`/`_HLS_part`, with `_HLS_skip=YES`
//! delta updates after the first load) for the next part, then a GET of every
//! part listed after the last one it has, tracked by (MSN, part index) as
//! hls.js does.
//!
//! The generator shares the machine with the server it measures, so it is
//! kept lean: one hyper connection per viewer with no pool, part bodies
//! counted as they stream in rather than gathered, playlists parsed in place,
//! and each viewer's tally merged once at the end.
//!
//! It records parts and bytes received, errors, stalls (a part arriving more
//! than 2 x PART-TARGET after the previous one) and, per part, the delay from
//! the playlist response that first listed it to the part fully received.
//!
//! `src/bin/llhls-load.rs` is its command line (one JSON line of results).

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::client::conn::http1::SendRequest;
use hyper::{Request, Response, StatusCode, Uri, body::Incoming};
use hyper_util::rt::TokioIo;
use serde::Serialize;
use tokio::net::TcpStream;

/// Pause after an error before the viewer tries again.
const ERROR_BACKOFF: Duration = Duration::from_millis(200);
/// Longest a request may take: a blocking reload is held at most 3 x TD at
/// the origin, so anything far beyond that is stuck and counts as an error.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// Delay samples kept in all (enough for percentiles), shared out among viewers.
const MAX_DELAY_SAMPLES: usize = 2_000_000;

/// What to run.
#[derive(Debug, Clone)]
pub struct LoadConfig {
    /// Multivariant playlist URL (`http://` only).
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

/// One viewer's counts, merged into the run's once at the end (no lock per part).
#[derive(Default)]
struct Tally {
    parts: u64,
    bytes: u64,
    requests: u64,
    errors: u64,
    stalls: u64,
    delays_us: Vec<u32>,
}

impl Tally {
    fn merge(&mut self, other: Tally) {
        self.parts += other.parts;
        self.bytes += other.bytes;
        self.requests += other.requests;
        self.errors += other.errors;
        self.stalls += other.stalls;
        self.delays_us.extend(other.delays_us);
    }
}

/// Splits an `http://` URL into its authority and request target.
pub(crate) fn split_url(url: &str) -> Result<(String, String), String> {
    let uri: Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
    if uri.scheme_str() != Some("http") {
        return Err(format!("{url}: only http:// URLs are supported"));
    }
    let authority = uri
        .authority()
        .ok_or_else(|| format!("{url}: no host"))?
        .to_string();
    let target = uri.path_and_query().map_or("/", |p| p.as_str()).to_string();
    Ok((authority, target))
}

/// Resolves a playlist's URI against the request target of that playlist.
pub(crate) fn resolve(authority: &str, base: &str, uri: &str) -> Result<String, String> {
    if uri.starts_with("http://") || uri.starts_with("https://") {
        let (a, target) = split_url(uri)?;
        return if a == authority {
            Ok(target)
        } else {
            Err(format!("{uri}: another host"))
        };
    }
    if uri.starts_with('/') {
        return Ok(uri.to_string());
    }
    let base = base.split('?').next().unwrap_or(base);
    Ok(format!(
        "{}{uri}",
        &base[..base.rfind('/').map_or(0, |i| i + 1)]
    ))
}

/// A viewer's one keep-alive HTTP/1.1 connection: its requests form one
/// sequential chain, as a player's playlist and part loads do.
pub(crate) struct Connection {
    pub(crate) authority: String,
    sender: Option<SendRequest<Empty<Bytes>>>,
}

impl Connection {
    /// Not connected yet: the first request connects.
    pub(crate) fn new(authority: String) -> Connection {
        Connection {
            authority,
            sender: None,
        }
    }

    async fn open(&self) -> Result<SendRequest<Empty<Bytes>>, String> {
        let stream = TcpStream::connect(&self.authority)
            .await
            .map_err(|e| e.to_string())?;
        let _ = stream.set_nodelay(true);
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(conn);
        Ok(sender)
    }

    async fn send(&mut self, target: &str) -> Result<Response<Incoming>, String> {
        let build = || {
            Request::get(target)
                .header(hyper::header::HOST, self.authority.as_str())
                .body(Empty::<Bytes>::new())
                .map_err(|e| e.to_string())
        };
        // The server may have closed a kept-alive connection in between (idle
        // timeout, request cap); like a browser, retry such a GET once on a new one.
        if let Some(sender) = self.sender.as_mut() {
            if sender.ready().await.is_ok()
                && let Ok(resp) = sender.send_request(build()?).await
            {
                return Ok(resp);
            }
            self.sender = None;
        }
        let mut sender = self.open().await?;
        let resp = sender
            .send_request(build()?)
            .await
            .map_err(|e| e.to_string())?;
        self.sender = Some(sender);
        Ok(resp)
    }

    /// GETs `target`; the body is appended to `keep`, or only counted. Any
    /// answer but 200 is an error.
    pub(crate) async fn get(
        &mut self,
        target: &str,
        mut keep: Option<&mut Vec<u8>>,
    ) -> Result<u64, String> {
        let request = async {
            let resp = self.send(target).await?;
            let status = resp.status();
            let mut body = resp.into_body();
            let mut len = 0;
            while let Some(frame) = body.frame().await {
                let frame = frame.map_err(|e| e.to_string())?;
                if let Some(data) = frame.data_ref() {
                    len += data.len() as u64;
                    if let Some(k) = keep.as_deref_mut() {
                        k.extend_from_slice(data);
                    }
                }
            }
            if status != StatusCode::OK {
                return Err(status.to_string());
            }
            Ok(len)
        };
        let result = tokio::time::timeout(REQUEST_TIMEOUT, request)
            .await
            .unwrap_or_else(|_| Err(format!("no answer within {REQUEST_TIMEOUT:?}")));
        if result.is_err() {
            // Whatever state the connection is in, start the next request afresh.
            self.sender = None;
        }
        result
    }
}

/// A part as listed in a media playlist.
#[derive(Debug, PartialEq)]
pub struct PartRef<'a> {
    /// MSN of its segment.
    pub msn: u64,
    /// Its index in that segment.
    pub index: u32,
    /// Its URI.
    pub uri: &'a str,
}

/// What a viewer needs from a media playlist.
#[derive(Debug, Default, PartialEq)]
pub struct MediaView<'a> {
    /// EXT-X-PARTs in order.
    pub parts: Vec<PartRef<'a>>,
    /// MSN of the segment holding the newest part, and its index there
    /// (none when no part is listed).
    pub last: Option<(u64, u32)>,
    /// MSN of the segment after the last complete one.
    pub next_msn: u64,
    /// PART-TARGET.
    pub part_target: Duration,
    /// EXT-X-ENDLIST.
    pub ended: bool,
}

/// The value of attribute `name` in a tag line (quoted values may hold commas and colons).
fn attribute<'a>(line: &'a str, name: &str) -> Option<&'a str> {
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
            return Some(value);
        }
        rest = next;
    }
    None
}

/// Reads the tags a low-latency client needs (pure).
pub fn read_media(text: &str) -> Option<MediaView<'_>> {
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
            v.parts.push(PartRef {
                msn: seq + skipped + complete,
                index: open,
                uri: attr("URI")?,
            });
            open += 1;
        } else if line.starts_with("#EXTINF:") {
            complete += 1;
        } else if line == "#EXT-X-ENDLIST" {
            v.ended = true;
        } else if !line.starts_with('#') && !line.is_empty() {
            // A segment URI closes its parts.
            open = 0;
        }
    }
    v.last = v.parts.last().map(|p| (p.msn, p.index));
    v.next_msn = seq + skipped + complete;
    Some(v)
}

async fn viewer(cfg: Arc<LoadConfig>, start_after: Duration) -> Tally {
    let mut tally = Tally::default();
    tokio::time::sleep(start_after).await;
    let end = Instant::now() + cfg.duration;
    let (authority, master) = match split_url(&cfg.url) {
        Ok(u) => u,
        Err(_) => {
            tally.errors += 1;
            return tally;
        }
    };
    let mut conn = Connection {
        authority,
        sender: None,
    };
    let mut text = Vec::new();
    // Multivariant, then the chosen rendition.
    let media = loop {
        if Instant::now() >= end {
            return tally;
        }
        tally.requests += 1;
        text.clear();
        let chosen = conn.get(&master, Some(&mut text)).await.ok().and_then(|_| {
            let pl = m3u8_rs::parse_master_playlist_res(&text).ok()?;
            let v = match &cfg.rendition {
                Some(name) => pl
                    .variants
                    .iter()
                    .find(|v| v.uri.ends_with(name.as_str()))?,
                None => pl.variants.last()?,
            };
            resolve(&conn.authority, &master, &v.uri).ok()
        });
        match chosen {
            Some(u) => break u,
            None => {
                tally.errors += 1;
                tokio::time::sleep(ERROR_BACKOFF).await;
            }
        }
    };
    let delay_cap = MAX_DELAY_SAMPLES / cfg.viewers.max(1);
    // The newest part fetched (or, on joining, passed over).
    let mut fetched: Option<(u64, u32)> = None;
    // What the next blocking reload waits for.
    let mut next: Option<(u64, u32)> = None;
    let mut last_part_at: Option<Instant> = None;
    while Instant::now() < end {
        let target = match next {
            None => media.clone(),
            Some((m, p)) => format!("{media}?_HLS_msn={m}&_HLS_part={p}&_HLS_skip=YES"),
        };
        tally.requests += 1;
        text.clear();
        let got = conn.get(&target, Some(&mut text)).await;
        let listed_at = Instant::now();
        let view = got
            .ok()
            .and_then(|_| std::str::from_utf8(&text).ok())
            .and_then(read_media);
        let Some(view) = view else {
            tally.errors += 1;
            tokio::time::sleep(ERROR_BACKOFF).await;
            continue;
        };
        if view.ended {
            break;
        }
        // The part after the newest listed one; with none listed (a window
        // restored before its publisher returned), the next segment's first.
        let joining = next.is_none();
        next = Some(view.last.map_or((view.next_msn, 0), |(m, p)| (m, p + 1)));
        if joining {
            // Join at the live edge, like a player does.
            fetched = view.last;
            continue;
        }
        let after = fetched;
        let new = |p: &&PartRef<'_>| after.is_none_or(|f| (p.msn, p.index) > f);
        for part in view.parts.iter().filter(new) {
            tally.requests += 1;
            fetched = Some((part.msn, part.index));
            let body = match resolve(&conn.authority, &media, part.uri) {
                Ok(t) => conn.get(&t, None).await,
                Err(e) => Err(e),
            };
            let Ok(len) = body else {
                tally.errors += 1;
                continue;
            };
            let now = Instant::now();
            let stalled = last_part_at.is_some_and(|t| now - t > view.part_target * 2);
            last_part_at = Some(now);
            tally.parts += 1;
            tally.bytes += len;
            tally.stalls += u64::from(stalled);
            if tally.delays_us.len() < delay_cap {
                let delay = (now - listed_at).as_micros().min(u128::from(u32::MAX)) as u32;
                tally.delays_us.push(delay);
            }
        }
    }
    tally
}

/// Runs `cfg.viewers` viewers to the end and reports.
pub async fn run(cfg: LoadConfig) -> Report {
    let cfg = Arc::new(cfg);
    let total = Arc::new(Mutex::new(Tally::default()));
    let tasks: Vec<_> = (0..cfg.viewers)
        .map(|i| {
            let offset = cfg.ramp.mul_f64(i as f64 / cfg.viewers.max(1) as f64);
            let (cfg, total) = (cfg.clone(), total.clone());
            tokio::spawn(async move {
                let t = viewer(cfg, offset).await;
                total.lock().unwrap_or_else(|p| p.into_inner()).merge(t);
            })
        })
        .collect();
    for t in tasks {
        let _ = t.await;
    }
    let mut s = std::mem::take(&mut *total.lock().unwrap_or_else(|p| p.into_inner()));
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
        let mut conn = Connection {
            authority: addr.to_string(),
            sender: None,
        };
        let err = conn.get("/x.m3u8", None).await.unwrap_err();
        assert!(err.contains("no answer"), "{err}");
    }

    #[tokio::test]
    async fn a_keep_alive_connection_the_server_closed_is_replaced_without_an_error() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        // Answers one request per connection as if keeping it alive, then hangs up.
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let server = tokio::spawn(async move {
            let mut accepted = 0;
            while accepted < 3 {
                let (mut s, _) = listener.accept().await.unwrap();
                accepted += 1;
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf).await;
                let _ = s
                    .write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                    .await;
            }
            accepted
        });
        let mut conn = Connection {
            authority: addr.to_string(),
            sender: None,
        };
        let mut body = Vec::new();
        for _ in 0..3 {
            body.clear();
            assert_eq!(conn.get("/a", Some(&mut body)).await, Ok(2));
            assert_eq!(body, b"ok");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(server.await.unwrap(), 3, "one connection per request");
    }

    #[test]
    fn uris_resolve_against_the_playlist_on_the_same_host_only() {
        assert_eq!(
            split_url("http://127.0.0.1:8080/hls/b/master.m3u8"),
            Ok(("127.0.0.1:8080".into(), "/hls/b/master.m3u8".into()))
        );
        assert!(split_url("https://h/x").is_err());
        let base = "/hls/b/480p.m3u8?_HLS_msn=3";
        assert_eq!(
            resolve("h:1", base, "480p/g/p4.m4s").unwrap(),
            "/hls/b/480p/g/p4.m4s"
        );
        assert_eq!(resolve("h:1", base, "/x/p.m4s").unwrap(), "/x/p.m4s");
        assert_eq!(
            resolve("h:1", base, "http://h:1/y/p.m4s").unwrap(),
            "/y/p.m4s"
        );
        assert!(resolve("h:1", base, "http://other/y/p.m4s").is_err());
    }

    #[test]
    fn the_last_part_is_found_in_full_and_delta_playlists() {
        let full = "#EXTM3U\n#EXT-X-PART-INF:PART-TARGET=0.2\n#EXT-X-MEDIA-SEQUENCE:4\n#EXTINF:1,\ns4.m4s\n\
#EXT-X-PART:DURATION=0.2,URI=\"p1.m4s\"\n#EXT-X-PART:DURATION=0.2,URI=\"p2.m4s\"\n#EXTINF:0.4,\ns5.m4s\n\
#EXT-X-PART:DURATION=0.2,URI=\"p3.m4s\"\n#EXT-X-PRELOAD-HINT:TYPE=PART,URI=\"p4.m4s\"\n";
        let v = read_media(full).unwrap();
        let listed: Vec<_> = v.parts.iter().map(|p| (p.msn, p.index, p.uri)).collect();
        assert_eq!(
            listed,
            [(5, 0, "p1.m4s"), (5, 1, "p2.m4s"), (6, 0, "p3.m4s")]
        );
        assert_eq!(v.last, Some((6, 0)));
        assert_eq!(v.next_msn, 6);
        assert_eq!(v.part_target, Duration::from_millis(200));
        let delta = full.replace(
            "#EXT-X-MEDIA-SEQUENCE:4\n#EXTINF:1,\ns4.m4s\n",
            "#EXT-X-MEDIA-SEQUENCE:4\n#EXT-X-SKIP:SKIPPED-SEGMENTS=1\n",
        );
        let d = read_media(&delta).unwrap();
        assert_eq!(d.last, Some((6, 0)));
        assert_eq!(d.next_msn, 6);
        assert_eq!(d.parts, v.parts);
        let abs = "#EXT-X-PART:DURATION=0.2,URI=\"http://h:8080/a,b.m4s\",INDEPENDENT=YES";
        assert_eq!(attribute(abs, "URI"), Some("http://h:8080/a,b.m4s"));
        assert_eq!(attribute(abs, "INDEPENDENT"), Some("YES"));
        let closed = "#EXT-X-MEDIA-SEQUENCE:1\n#EXT-X-PART:DURATION=0.2,URI=\"a\"\n#EXT-X-PART:DURATION=0.2,URI=\"b\"\n#EXTINF:0.4,\ns1.m4s\n";
        let c = read_media(closed).unwrap();
        assert_eq!((c.last, c.next_msn), (Some((1, 1)), 2));
        let no_parts = "#EXT-X-MEDIA-SEQUENCE:7\n#EXTINF:1,\ns7.m4s\n#EXTINF:1,\ns8.m4s\n";
        let n = read_media(no_parts).unwrap();
        assert_eq!(
            (n.last, n.next_msn),
            (None, 9),
            "wait for segment 9's first part"
        );
    }
}
