//! Helpers for the origin's integration tests: the real binary or `run` on
//! loopback ports, and real publishers.
#![allow(dead_code)]

pub mod balancer;
pub mod chat;
pub mod edge;

use std::net::SocketAddr;
use std::time::Duration;

#[allow(unused_imports)]
pub use testkit::wait::{eventually, eventually_some, free_addr};

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper_util::client::legacy::Client;
use hyper_util::rt::TokioExecutor;
use std::collections::HashMap;
use tokio_util::sync::CancellationToken;

/// The server binary as a child process on loopback ports; killed when
/// dropped. What it logs is shown (prefixed `origin:`) and kept for
/// [`Binary::wait_for_log`].
pub struct Binary {
    pub child: tokio::process::Child,
    pub rtmp: SocketAddr,
    pub http: SocketAddr,
    lines: tokio::sync::mpsc::UnboundedReceiver<String>,
    seen: String,
}

impl Binary {
    /// Starts the binary listening on `rtmp` and `http`; `configure` adds its
    /// flags and environment. Returns once `/healthz` answers.
    pub async fn start(
        rtmp: SocketAddr,
        http: SocketAddr,
        configure: impl FnOnce(&mut tokio::process::Command),
    ) -> Binary {
        use tokio::io::AsyncBufReadExt;
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_origin"));
        cmd.env("ORIGIN_RTMP_LISTEN", rtmp.to_string())
            .env("ORIGIN_WEBRTC_LISTEN", "127.0.0.1:0")
            .env("ORIGIN_HTTP_LISTEN", http.to_string())
            .env("RUST_LOG", "info")
            .env("ORIGIN_ADMIN_TOKEN", ADMIN_TOKEN)
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true);
        configure(&mut cmd);
        let mut child = cmd.spawn().unwrap();
        let mut out = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let (tx, lines) = tokio::sync::mpsc::unbounded_channel();
        tokio::spawn(async move {
            while let Ok(Some(l)) = out.next_line().await {
                eprintln!("origin: {l}");
                let _ = tx.send(l);
            }
        });
        assert!(
            answers_health(http, Duration::from_secs(20)).await,
            "the binary came up"
        );
        Binary {
            child,
            rtmp,
            http,
            lines,
            seen: String::new(),
        }
    }

    pub fn base(&self) -> String {
        format!("http://{}", self.http)
    }

    pub fn rtmp_url(&self, key: &str) -> String {
        format!("rtmp://{}/live/{key}", self.rtmp)
    }

    /// Whether the binary logs `needle` (since it started) within 20 s.
    pub async fn wait_for_log(&mut self, needle: &str) -> bool {
        let end = tokio::time::Instant::now() + Duration::from_secs(20);
        while !self.seen.contains(needle) {
            match tokio::time::timeout_at(end, self.lines.recv()).await {
                Ok(Some(l)) => {
                    self.seen.push_str(&l);
                    self.seen.push('\n');
                }
                _ => return false,
            }
        }
        true
    }

    /// What it has logged so far (as far as [`Binary::wait_for_log`] read).
    pub fn log(&self) -> &str {
        &self.seen
    }

    /// Sends `signal` (`TERM`, `KILL`).
    pub fn signal(&self, signal: &str) {
        let pid = self.child.id().expect("running").to_string();
        let status = std::process::Command::new("kill")
            .args([&format!("-{signal}"), &pid])
            .status()
            .unwrap();
        assert!(status.success(), "kill -{signal} {pid}");
    }

    /// SIGTERM; asserts a clean exit within `limit` and returns how long it took.
    pub async fn stop(mut self, limit: Duration) -> Duration {
        let started = std::time::Instant::now();
        self.signal("TERM");
        let status = tokio::time::timeout(limit, self.child.wait())
            .await
            .unwrap_or_else(|_| panic!("the binary exits within {limit:?} of SIGTERM"))
            .unwrap();
        assert!(status.success(), "clean exit, got {status}");
        started.elapsed()
    }
}

/// Whether `GET /healthz` on `addr` answers 200 within `limit` (refused
/// connections and timeouts are asked again).
pub async fn answers_health(addr: SocketAddr, limit: Duration) -> bool {
    let url: hyper::Uri = format!("http://{addr}/healthz").parse().unwrap();
    eventually(limit, async || {
        tokio::time::timeout(Duration::from_secs(1), client().get(url.clone()))
            .await
            .is_ok_and(|r| r.is_ok_and(|r| r.status() == 200))
    })
    .await
}

/// Runs each named test, an `async fn(Option<&str>)` taking a database URL,
/// twice: `sled::name` on the embedded store, `postgres::name` on a
/// throwaway PostgreSQL.
#[macro_export]
macro_rules! on_both_stores {
    ($($name:ident),+ $(,)?) => {
        mod sled {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    super::$name(None).await
                }
            )+
        }
        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $name() {
                    let pg = testkit::postgres::TempPostgres::start();
                    super::$name(Some(&pg.url)).await
                }
            )+
        }
    };
}

/// The admin token every test server runs with (`--admin-token`): tests
/// create broadcasts with it, whatever the creation policy.
pub const ADMIN_TOKEN: &str = "test-admin-token-0123456789";

/// A server started in-process with `origin::run` on loopback ports.
pub struct TestServer {
    pub rtmp: SocketAddr,
    pub http: SocketAddr,
    pub shutdown: CancellationToken,
    pub task: tokio::task::JoinHandle<anyhow::Result<()>>,
    pub _data: tempfile::TempDir,
}

impl TestServer {
    pub fn base(&self) -> String {
        format!("http://{}", self.http)
    }
    pub fn rtmp_url(&self, key: &str) -> String {
        format!("rtmp://{}/live/{key}", self.rtmp)
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.shutdown.cancel();
    }
}

/// Starts the server with `keys` and a config adjusted by `adjust`.
pub async fn start_server(
    keys: &[&str],
    adjust: impl FnOnce(&mut origin::config::Config),
) -> TestServer {
    start_server_on(None, keys, adjust).await
}

/// Like [`start_server`], with its state in PostgreSQL at `database_url`
/// (or sled when `None`).
pub async fn start_server_on(
    database_url: Option<&str>,
    keys: &[&str],
    adjust: impl FnOnce(&mut origin::config::Config),
) -> TestServer {
    let data = tempfile::tempdir().unwrap();
    let mut args = vec![
        "origin".to_string(),
        "--data-dir".into(),
        data.path().display().to_string(),
        "--player-dir".into(),
        concat!(env!("CARGO_MANIFEST_DIR"), "/../player").into(),
        "--admin-token".into(),
        ADMIN_TOKEN.into(),
    ];
    for k in keys {
        args.push("--stream-key".into());
        args.push(k.to_string());
    }
    let cli = <origin::config::Cli as clap::Parser>::try_parse_from(args).unwrap();
    let mut config = origin::config::Config::load(cli).unwrap();
    config.database_url = database_url.map(str::to_owned);
    adjust(&mut config);
    config.validate().unwrap();
    let listeners = origin::Listeners {
        rtmp: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        http: tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap(),
        webrtc: webrtc::Sockets::bind("127.0.0.1:0".parse().unwrap(), true).unwrap(),
    };
    let (rtmp, http) = (
        listeners.rtmp.local_addr().unwrap(),
        listeners.http.local_addr().unwrap(),
    );
    let shutdown = CancellationToken::new();
    let task = tokio::spawn(origin::run(config, listeners, shutdown.clone()));
    TestServer {
        rtmp,
        http,
        shutdown,
        task,
        _data: data,
    }
}

/// An HTTP response as the tests look at it.
#[derive(Debug, Clone)]
pub struct Resp {
    pub status: u16,
    pub headers: HashMap<String, String>,
    pub body: Bytes,
    pub elapsed: Duration,
}

impl Resp {
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }
    pub fn header(&self, name: &str) -> &str {
        self.headers.get(name).map(String::as_str).unwrap_or("")
    }
}

/// A pooled HTTP client, shared by tests that make many requests.
pub type HttpClient =
    Client<hyper_util::client::legacy::connect::HttpConnector, http_body_util::Empty<Bytes>>;

/// A new pooled client.
pub fn client() -> HttpClient {
    Client::builder(TokioExecutor::new()).build_http()
}

/// GET (or another method) with extra headers.
pub async fn request(method: &str, url: &str, headers: &[(&str, &str)]) -> Resp {
    request_with(&client(), method, url, headers).await
}

/// Like [`request`], on a given client.
pub async fn request_with(
    client: &HttpClient,
    method: &str,
    url: &str,
    headers: &[(&str, &str)],
) -> Resp {
    let mut req = hyper::Request::builder().method(method).uri(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let started = std::time::Instant::now();
    let resp = tokio::time::timeout(
        Duration::from_secs(20),
        client.request(req.body(http_body_util::Empty::new()).unwrap()),
    )
    .await
    .expect("response within 20 s")
    .expect("request failed");
    read_resp(resp, started).await
}

/// A request with an optional JSON body and owner token that reports a
/// failed connection or a broken response as status 0 (with the error as
/// the body) instead of panicking: for probes across a failure.
pub async fn try_request(method: &str, url: &str, body: Option<&str>, token: Option<&str>) -> Resp {
    let client = Client::builder(TokioExecutor::new()).build_http::<http_body_util::Full<Bytes>>();
    let mut req = hyper::Request::builder().method(method).uri(url);
    if body.is_some() {
        req = req.header("content-type", "application/json");
    }
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let req = req
        .body(http_body_util::Full::from(
            body.unwrap_or_default().to_owned(),
        ))
        .unwrap();
    let started = std::time::Instant::now();
    let failed = |e: String| Resp {
        status: 0,
        headers: Default::default(),
        body: Bytes::from(e),
        elapsed: started.elapsed(),
    };
    let resp = match tokio::time::timeout(Duration::from_secs(20), client.request(req)).await {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => return failed(e.to_string()),
        Err(_) => return failed("no response within 20 s".into()),
    };
    let (status, headers) = head_of(&resp);
    match resp.into_body().collect().await {
        Ok(b) => Resp {
            status,
            headers,
            body: b.to_bytes(),
            elapsed: started.elapsed(),
        },
        Err(e) => failed(e.to_string()),
    }
}

/// A broadcast created through the API, with its secrets.
pub struct Created {
    pub id: String,
    pub key: String,
    pub token: String,
}

/// Creates a broadcast titled `title` through `base`'s API.
pub async fn create_broadcast(base: &str, title: &str) -> Created {
    let body = serde_json::json!({ "title": title }).to_string();
    let r = request_json_as(
        "POST",
        &format!("{base}/api/broadcasts"),
        &body,
        Some(ADMIN_TOKEN),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text());
    let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap();
    let s = |k: &str| v[k].as_str().unwrap().to_owned();
    Created {
        id: s("id"),
        key: s("stream_key"),
        token: s("owner_token"),
    }
}

/// A request with a JSON body.
pub async fn request_json(method: &str, url: &str, body: &str) -> Resp {
    request_json_as(method, url, body, None).await
}

/// A request with a JSON body and, if given, an owner token.
pub async fn request_json_as(method: &str, url: &str, body: &str, token: Option<&str>) -> Resp {
    let client = Client::builder(TokioExecutor::new()).build_http::<http_body_util::Full<Bytes>>();
    let mut req = hyper::Request::builder()
        .method(method)
        .uri(url)
        .header("content-type", "application/json");
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let req = req
        .body(http_body_util::Full::from(body.to_owned()))
        .unwrap();
    let started = std::time::Instant::now();
    let resp = client.request(req).await.expect("request failed");
    read_resp(resp, started).await
}

/// A response's status and headers.
fn head_of<B>(resp: &hyper::Response<B>) -> (u16, HashMap<String, String>) {
    let headers = resp
        .headers()
        .iter()
        .map(|(k, v)| (k.as_str().to_string(), v.to_str().unwrap_or("").to_string()))
        .collect();
    (resp.status().as_u16(), headers)
}

/// Reads a whole response.
async fn read_resp(
    resp: hyper::Response<hyper::body::Incoming>,
    started: std::time::Instant,
) -> Resp {
    let (status, headers) = head_of(&resp);
    let body = resp.into_body().collect().await.unwrap().to_bytes();
    Resp {
        status,
        headers,
        body,
        elapsed: started.elapsed(),
    }
}

pub async fn get(url: &str) -> Resp {
    request("GET", url, &[]).await
}

/// The attributes of an HLS attribute-list tag line, e.g. `#EXT-X-PART:DURATION=..,URI=".."`.
pub fn attrs(line: &str) -> HashMap<String, String> {
    let list = line.split_once(':').map(|(_, l)| l).unwrap_or("");
    let mut out = HashMap::new();
    let mut rest = list;
    while !rest.is_empty() {
        let Some((k, after)) = rest.split_once('=') else {
            break;
        };
        let (v, next) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"').unwrap();
            (&q[..end], q[end + 1..].trim_start_matches(','))
        } else {
            match after.split_once(',') {
                Some((v, n)) => (v, n),
                None => (after, ""),
            }
        };
        out.insert(k.to_string(), v.to_string());
        rest = next;
    }
    out
}

/// A media playlist, read line by line.
#[derive(Debug, Clone, Default)]
pub struct Media {
    pub text: String,
    pub target_duration: u64,
    pub server_control: String,
    pub part_inf: String,
    pub media_sequence: u64,
    pub discontinuity_sequence: u64,
    pub skipped: u64,
    pub segments: Vec<Seg>,
    pub preload_hints: Vec<String>,
    pub reports: Vec<HashMap<String, String>>,
    pub ended: bool,
    /// Part lines that appeared after the last segment URI (the open segment).
    pub open_parts: Vec<PartLine>,
}

#[derive(Debug, Clone, Default)]
pub struct PartLine {
    pub uri: String,
    pub duration: f64,
    pub independent: bool,
}

#[derive(Debug, Clone, Default)]
pub struct Seg {
    pub msn: u64,
    pub uri: String,
    pub duration: f64,
    pub pdt: Option<String>,
    pub discontinuity: bool,
    pub map: Option<String>,
    pub parts: Vec<PartLine>,
}

pub fn parse_media(text: &str) -> Media {
    let mut m = Media {
        text: text.to_string(),
        ..Default::default()
    };
    let mut cur = Seg::default();
    let mut pending_extinf: Option<f64> = None;
    let mut map = None;
    for line in text.lines() {
        if let Some(v) = line.strip_prefix("#EXT-X-TARGETDURATION:") {
            m.target_duration = v.parse().unwrap();
        } else if line.starts_with("#EXT-X-SERVER-CONTROL:") {
            m.server_control = line.to_string();
        } else if line.starts_with("#EXT-X-PART-INF:") {
            m.part_inf = line.to_string();
        } else if let Some(v) = line.strip_prefix("#EXT-X-MEDIA-SEQUENCE:") {
            m.media_sequence = v.parse().unwrap();
        } else if let Some(v) = line.strip_prefix("#EXT-X-DISCONTINUITY-SEQUENCE:") {
            m.discontinuity_sequence = v.parse().unwrap();
        } else if line.starts_with("#EXT-X-SKIP:") {
            m.skipped = attrs(line)["SKIPPED-SEGMENTS"].parse().unwrap();
        } else if line.starts_with("#EXT-X-MAP:") {
            map = Some(attrs(line)["URI"].clone());
        } else if line == "#EXT-X-DISCONTINUITY" {
            cur.discontinuity = true;
        } else if let Some(v) = line.strip_prefix("#EXT-X-PROGRAM-DATE-TIME:") {
            cur.pdt = Some(v.to_string());
        } else if line.starts_with("#EXT-X-PART:") {
            let a = attrs(line);
            cur.parts.push(PartLine {
                uri: a["URI"].clone(),
                duration: a["DURATION"].parse().unwrap(),
                independent: a.get("INDEPENDENT").is_some_and(|v| v == "YES"),
            });
        } else if let Some(v) = line.strip_prefix("#EXTINF:") {
            pending_extinf = Some(v.trim_end_matches(',').parse().unwrap());
        } else if line.starts_with("#EXT-X-PRELOAD-HINT:") {
            m.preload_hints.push(attrs(line)["URI"].clone());
        } else if line.starts_with("#EXT-X-RENDITION-REPORT:") {
            m.reports.push(attrs(line));
        } else if line == "#EXT-X-ENDLIST" {
            m.ended = true;
        } else if !line.starts_with('#') && !line.is_empty() {
            cur.uri = line.to_string();
            cur.duration = pending_extinf.take().unwrap();
            cur.map = map.take();
            cur.msn = m.media_sequence + m.skipped + m.segments.len() as u64;
            m.segments.push(std::mem::take(&mut cur));
        }
    }
    m.open_parts = cur.parts;
    m
}

impl Media {
    /// (last msn, last part index) as a client computes it.
    pub fn last_position(&self) -> (u64, u32) {
        let next_msn = self.media_sequence + self.skipped + self.segments.len() as u64;
        if !self.open_parts.is_empty() {
            (next_msn, self.open_parts.len() as u32 - 1)
        } else {
            let last = self.segments.last().unwrap();
            (last.msn, last.parts.len().saturating_sub(1) as u32)
        }
    }
    pub fn all_parts(&self) -> Vec<PartLine> {
        self.segments
            .iter()
            .flat_map(|s| s.parts.clone())
            .chain(self.open_parts.clone())
            .collect()
    }
}

/// Waits up to `limit` for the multivariant playlist at `master` to be
/// served, then returns the URL of its first media playlist.
pub async fn first_media_playlist(master: &str, limit: Duration) -> String {
    assert!(
        eventually(limit, async || get(master).await.status == 200).await,
        "{master} was not served within {limit:?}"
    );
    let text = get(master).await.text();
    let uri = text.lines().find(|l| l.ends_with(".m3u8")).unwrap();
    resolve(master, uri)
}

/// Resolves `uri` against the playlist URL `base`.
pub fn resolve(base: &str, uri: &str) -> String {
    let dir = &base[..base.rfind('/').unwrap() + 1];
    format!("{dir}{uri}")
}

/// Sum of a metric's samples (all label sets).
pub async fn metric(origin: SocketAddr, name: &str) -> f64 {
    metric_labeled(origin, name, "").await
}

/// Like [`metric`], only the series whose labels contain `label` (e.g.
/// `result="delivered"`; `""`: all of them).
pub async fn metric_labeled(origin: SocketAddr, name: &str, label: &str) -> f64 {
    get(&format!("http://{origin}/metrics"))
        .await
        .text()
        .lines()
        .filter(|l| {
            l.strip_prefix(name).is_some_and(|rest| {
                (rest.starts_with('{') && rest.contains(label))
                    || (rest.starts_with(' ') && label.is_empty())
            })
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

/// Stock hls.js in headless Chromium (`player/tests/llhls-play.mjs`)
/// playing `master` for `seconds`; see [`hls_js_report`].
pub fn hls_js(master: &str, seconds: u32) -> tokio::process::Child {
    tokio::process::Command::new("node")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../player/tests/llhls-play.mjs"
        ))
        .args([master, &seconds.to_string()])
        .stdout(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("node and the player's npm packages (scripts/deps.sh installs them)")
}

/// Runs the player script `player/tests/{script}` with `args` to its end
/// and returns its report (the last line it prints, JSON).
pub async fn player_report(script: &str, args: &[&str]) -> serde_json::Value {
    let out = tokio::process::Command::new("node")
        .arg(format!(
            "{}/../player/tests/{script}",
            env!("CARGO_MANIFEST_DIR")
        ))
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .expect("node and the player's npm packages (scripts/deps.sh installs them)");
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{script} failed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().expect("a report line")).unwrap()
}

/// Waits for an [`hls_js`] player to finish and returns its report
/// (`fatal`, `maxFreezeMs`, `currentTime`, `stalls`, latencies…).
pub async fn hls_js_report(player: tokio::process::Child) -> serde_json::Value {
    let out = player.wait_with_output().await.unwrap();
    assert!(out.status.success(), "player script failed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().expect("a report line")).unwrap()
}

/// The seconds a media playlist lists.
pub fn listed_secs(playlist: &str) -> f64 {
    playlist
        .lines()
        .filter_map(|l| l.strip_prefix("#EXTINF:"))
        .filter_map(|l| l.trim_end_matches(',').parse::<f64>().ok())
        .sum()
}

/// ffmpeg decodes every stream of `url` to the end; its errors, if any.
pub async fn ffmpeg_decode_errors(url: &str) -> String {
    let out = tokio::process::Command::new("ffmpeg")
        .args(["-v", "error", "-i", url, "-map", "0", "-f", "null", "-"])
        .kill_on_drop(true)
        .output()
        .await
        .expect("ffmpeg");
    assert!(out.status.success(), "ffmpeg failed on {url}");
    String::from_utf8_lossy(&out.stderr).into_owned()
}
