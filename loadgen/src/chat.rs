//! A chat and presence crowd in one room, for `scripts/bench-chat.sh` and
//! the crowd test: N sessions join over a ramp (each its own WebSocket, as a
//! watch page holds), read everything the room sends, and then:
//!
//! 1. the count: how long after the last join the API's `viewer_count`, and
//!    the count pushed to every session, are exactly N;
//! 2. the fan-out: one session sends a marked message; when each receives it;
//! 3. the leave: every session closes; how long until the API says 0.
//!
//! With the server's pid it also reports the server's CPU seconds and RSS
//! per session. Frames are looked at as text (the count's prefix, the
//! marker), not parsed, to keep the generator light beside the server.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde::Serialize;
use tokio::sync::{mpsc, watch};
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

use crate::proc;

/// How often counts are looked at while waiting for them.
const POLL: Duration = Duration::from_millis(50);
/// What a session's WebSocket buffers: little, so that 20,000 fit.
const READ_BUFFER_BYTES: usize = 4 << 10;

/// What to run.
#[derive(Debug, Clone)]
pub struct ChatLoadConfig {
    /// The server, e.g. `http://127.0.0.1:8080`.
    pub base: String,
    /// Other origins of the same service: sessions are spread over `base`
    /// and these in turn (the one that speaks is on `base`), and the count
    /// must reach the whole crowd on each.
    pub others: Vec<String>,
    /// The broadcast whose room to join.
    pub broadcast: String,
    /// Sessions.
    pub sessions: usize,
    /// Time over which they join.
    pub ramp: Duration,
    /// Bound on each wait (joins, counts, delivery, leave).
    pub timeout: Duration,
    /// The server's pid, for CPU and RSS.
    pub server_pid: Option<u32>,
}

/// What happened.
#[derive(Debug, Clone, Default, Serialize)]
pub struct ChatReport {
    /// Sessions asked for.
    pub sessions: usize,
    /// Sessions that joined (got their history).
    pub joined: usize,
    /// Sessions the server closed with 1013 (room full), or that could not connect.
    pub refused: usize,
    /// Other closes by the server, by code (e.g. 4001: too slow).
    pub closed_by_server: usize,
    /// Connect-to-history time of a join, median and 99th percentile.
    pub join_p50_ms: f64,
    /// See `join_p50_ms`.
    pub join_p99_ms: f64,
    /// From the last join until the API's viewer count was exactly `joined`.
    pub count_api_ms: Option<f64>,
    /// From the last join until every session had been pushed exactly `joined`.
    pub count_pushed_ms: Option<f64>,
    /// Sessions whose last pushed count was exactly `joined` at the end of the wait.
    pub count_pushed_exact: usize,
    /// Sessions that received the marked message.
    pub fanout_received: usize,
    /// Send-to-receive time of the marked message, median and 99th percentile.
    pub fanout_p50_ms: f64,
    /// See `fanout_p50_ms`.
    pub fanout_p99_ms: f64,
    /// From the first close until the API's viewer count was 0.
    pub count_zero_ms: Option<f64>,
    /// The API's count at the end.
    pub count_after_leave: Option<u64>,
    /// Server CPU seconds from before the first join until after the leave.
    pub server_cpu_s: Option<f64>,
    /// Server RSS growth while the crowd was in, per session, in KiB.
    pub server_rss_per_session_kib: Option<f64>,
    /// Server RSS with the crowd in, MiB.
    pub server_rss_mib: Option<f64>,
}

/// One session's view, written by its task.
#[derive(Default)]
struct Seen {
    /// Microseconds from the start to the history frame; 0: not (yet) joined.
    joined_us: AtomicU64,
    join_took_us: AtomicU64,
    /// The last pushed count, plus one (0: none yet).
    count: AtomicU64,
    /// Microseconds from the start to the marked message; 0: not yet.
    marked_us: AtomicU64,
    /// 1: refused or failed; 2: closed by the server otherwise.
    outcome: AtomicU32,
}

fn micros(start: Instant) -> u64 {
    start.elapsed().as_micros().max(1) as u64
}

pub(crate) fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

/// Runs the crowd and reports.
pub async fn run(config: ChatLoadConfig) -> ChatReport {
    raise_open_files();
    let start = Instant::now();
    let cpu0 = config.server_pid.and_then(proc::cpu_seconds);
    let rss0 = config.server_pid.and_then(proc::rss_bytes);
    let marker = format!("mark-{}", std::process::id());
    let (leave_tx, leave_rx) = watch::channel(false);
    let (speak_tx, speak_rx) = mpsc::channel::<String>(1);
    let mut speak_rx = Some(speak_rx);
    let seen: Vec<Arc<Seen>> = (0..config.sessions).map(|_| Arc::default()).collect();
    let bases: Vec<&String> = std::iter::once(&config.base)
        .chain(&config.others)
        .collect();
    let mut tasks = Vec::with_capacity(config.sessions);
    for (i, s) in seen.iter().enumerate() {
        let at = start
            + config
                .ramp
                .mul_f64(i as f64 / config.sessions.max(1) as f64);
        let url = format!(
            "{}/api/broadcasts/{}/chat?nick=crowd{i}&session=crowd-{i}",
            bases[i % bases.len()].replacen("http", "ws", 1),
            config.broadcast
        );
        tasks.push(tokio::spawn(session(
            url,
            at,
            start,
            s.clone(),
            marker.clone(),
            leave_rx.clone(),
            if i == 0 { speak_rx.take() } else { None },
        )));
    }
    let mut report = ChatReport {
        sessions: config.sessions,
        ..Default::default()
    };
    // Everyone has joined or been refused.
    let settled =
        |s: &Seen| s.joined_us.load(Ordering::Relaxed) > 0 || s.outcome.load(Ordering::Relaxed) > 0;
    wait(config.timeout, || seen.iter().all(|s| settled(s))).await;
    let last_join = seen
        .iter()
        .map(|s| s.joined_us.load(Ordering::Relaxed))
        .max()
        .unwrap_or(0);
    let joined = seen
        .iter()
        .filter(|s| s.joined_us.load(Ordering::Relaxed) > 0)
        .count();
    report.joined = joined;
    report.refused = seen
        .iter()
        .filter(|s| s.outcome.load(Ordering::Relaxed) == 1)
        .count();
    let mut joins: Vec<f64> = seen
        .iter()
        .filter(|s| s.joined_us.load(Ordering::Relaxed) > 0)
        .map(|s| s.join_took_us.load(Ordering::Relaxed) as f64 / 1000.0)
        .collect();
    joins.sort_by(f64::total_cmp);
    report.join_p50_ms = percentile(&joins, 0.5);
    report.join_p99_ms = percentile(&joins, 0.99);
    let since_last_join = || (micros(start).saturating_sub(last_join)) as f64 / 1000.0;

    // 1. The count, from the API and as pushed.
    let api = Api::new(&config.base, &config.broadcast);
    let apis: Vec<Api> = bases
        .iter()
        .map(|b| Api::new(b, &config.broadcast))
        .collect();
    let everywhere = async |n: u64| {
        for api in &apis {
            if api.viewers().await != Some(n) {
                return false;
            }
        }
        true
    };
    let (api_ok, pushed_ok) = tokio::join!(
        async {
            wait_async(config.timeout, async || everywhere(joined as u64).await)
                .await
                .then(since_last_join)
        },
        async {
            wait(config.timeout, || {
                seen.iter()
                    .filter(|s| s.joined_us.load(Ordering::Relaxed) > 0)
                    .all(|s| s.count.load(Ordering::Relaxed) == joined as u64 + 1)
            })
            .await
            .then(since_last_join)
        }
    );
    report.count_api_ms = api_ok;
    report.count_pushed_ms = pushed_ok;
    report.count_pushed_exact = seen
        .iter()
        .filter(|s| s.count.load(Ordering::Relaxed) == joined as u64 + 1)
        .count();
    let rss1 = config.server_pid.and_then(proc::rss_bytes);

    // 2. The fan-out of one message.
    let sent_us = micros(start);
    let _ = speak_tx.send(marker.clone()).await;
    let receivers = seen
        .iter()
        .filter(|s| s.joined_us.load(Ordering::Relaxed) > 0)
        .count();
    wait(config.timeout, || {
        seen.iter()
            .filter(|s| s.marked_us.load(Ordering::Relaxed) > 0)
            .count()
            >= receivers
    })
    .await;
    let mut delays: Vec<f64> = seen
        .iter()
        .map(|s| s.marked_us.load(Ordering::Relaxed))
        .filter(|&t| t > 0)
        .map(|t| t.saturating_sub(sent_us) as f64 / 1000.0)
        .collect();
    delays.sort_by(f64::total_cmp);
    report.fanout_received = delays.len();
    report.fanout_p50_ms = percentile(&delays, 0.5);
    report.fanout_p99_ms = percentile(&delays, 0.99);

    // 3. Everyone leaves.
    let left = Instant::now();
    let _ = leave_tx.send(true);
    for t in tasks {
        let _ = t.await;
    }
    report.closed_by_server = seen
        .iter()
        .filter(|s| s.outcome.load(Ordering::Relaxed) == 2)
        .count();
    if wait_async(config.timeout, async || everywhere(0).await).await {
        report.count_zero_ms = Some(left.elapsed().as_secs_f64() * 1000.0);
    }
    report.count_after_leave = api.viewers().await;
    if let (Some(c0), Some(c1)) = (cpu0, config.server_pid.and_then(proc::cpu_seconds)) {
        report.server_cpu_s = Some(c1 - c0);
    }
    if let (Some(r0), Some(r1)) = (rss0, rss1) {
        report.server_rss_mib = Some(r1 as f64 / (1 << 20) as f64);
        report.server_rss_per_session_kib =
            Some(r1.saturating_sub(r0) as f64 / 1024.0 / joined.max(1) as f64);
    }
    report
}

/// One session: joins at `at`, records what it sees, speaks if given a
/// channel to speak from, and closes when told to leave.
async fn session(
    url: String,
    at: Instant,
    start: Instant,
    seen: Arc<Seen>,
    marker: String,
    mut leave: watch::Receiver<bool>,
    mut speak: Option<mpsc::Receiver<String>>,
) {
    tokio::time::sleep_until(at).await;
    let began = Instant::now();
    let config = WebSocketConfig::default()
        .read_buffer_size(READ_BUFFER_BYTES)
        .write_buffer_size(0);
    let Ok((mut ws, _)) =
        tokio_tungstenite::connect_async_with_config(url, Some(config), true).await
    else {
        seen.outcome.store(1, Ordering::Relaxed);
        return;
    };
    loop {
        tokio::select! {
            f = ws.next() => match f {
                Some(Ok(Message::Text(t))) => {
                    let t = t.as_str();
                    if seen.joined_us.load(Ordering::Relaxed) == 0 {
                        // The first frame of a room is its history.
                        seen.join_took_us.store(began.elapsed().as_micros() as u64, Ordering::Relaxed);
                        seen.joined_us.store(micros(start), Ordering::Relaxed);
                    } else if let Some(n) = t.strip_prefix("{\"type\":\"viewers\",\"count\":") {
                        if let Ok(n) = n.trim_end_matches('}').parse::<u64>() {
                            seen.count.store(n + 1, Ordering::Relaxed);
                        }
                    } else if t.contains(&marker) && seen.marked_us.load(Ordering::Relaxed) == 0 {
                        seen.marked_us.store(micros(start), Ordering::Relaxed);
                    }
                }
                Some(Ok(Message::Close(frame))) => {
                    let full = frame.is_some_and(|f| u16::from(f.code) == 1013);
                    seen.outcome.store(if full { 1 } else { 2 }, Ordering::Relaxed);
                    return;
                }
                Some(Ok(_)) => {}
                Some(Err(_)) | None => {
                    if seen.joined_us.load(Ordering::Relaxed) == 0 {
                        seen.outcome.store(1, Ordering::Relaxed);
                    }
                    return;
                }
            },
            text = async { speak.as_mut().expect("checked").recv().await }, if speak.is_some() => {
                if let Some(text) = text {
                    let m = serde_json::json!({"type": "message", "text": text}).to_string();
                    let _ = ws.send(Message::text(m)).await;
                }
                speak = None;
            },
            // It only ever changes to `true` (or its sender goes): leave.
            _ = leave.changed() => {
                let _ = ws.close(None).await;
                return;
            }
        }
    }
}

/// Polls `done` every [`POLL`] until it is true or `limit` passes.
async fn wait(limit: Duration, mut done: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Like [`wait`], for an async question.
async fn wait_async(limit: Duration, mut done: impl AsyncFnMut() -> bool) -> bool {
    let end = Instant::now() + limit;
    loop {
        if done().await {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The broadcast API, for the viewer count.
struct Api {
    addr: String,
    path: String,
}

impl Api {
    fn new(base: &str, broadcast: &str) -> Api {
        Api {
            addr: base
                .trim_start_matches("http://")
                .trim_end_matches('/')
                .to_owned(),
            path: format!("/api/broadcasts/{broadcast}"),
        }
    }

    /// `viewer_count`, or `None` if the API did not answer.
    async fn viewers(&self) -> Option<u64> {
        use http_body_util::BodyExt;
        let stream = tokio::net::TcpStream::connect(&self.addr).await.ok()?;
        let (mut send, conn) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .ok()?;
        tokio::spawn(conn);
        let req = hyper::Request::get(&self.path)
            .header("host", &self.addr)
            .body(http_body_util::Empty::<bytes::Bytes>::new())
            .ok()?;
        let resp = send.send_request(req).await.ok()?;
        let body = resp.into_body().collect().await.ok()?.to_bytes();
        let v: serde_json::Value = serde_json::from_slice(&body).ok()?;
        v["viewer_count"].as_u64()
    }
}

/// The soft open-file limit up to the hard one: a session is a socket.
fn raise_open_files() {
    if let Ok((soft, hard)) = rlimit::Resource::NOFILE.get()
        && soft < hard
    {
        let _ = rlimit::Resource::NOFILE.set(hard, hard);
    }
}
