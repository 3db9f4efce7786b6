//! Losing an origin, and deploying one origin at a time, with the whole
//! service on loopback: PostgreSQL, two origin binaries sharing it, HAProxy
//! (`deploy/haproxy-rtmp.cfg`) in front of their RTMP, the nginx edge
//! (`deploy/nginx-edge.conf`) in front of their HTTP, ffmpeg publishing
//! through HAProxy and restarted in a loop as OBS would, hls.js playing
//! through the edge, 200 chat sessions spread over both origins (they
//! reconnect through the edge, with jitter, as the page does), and an API
//! prober at 10 requests a second through the edge.
//!
//! - `kill -9` of the origin holding the broadcast: the publisher lands on
//!   the other, which takes over (epoch + 1) and continues the playlists;
//!   nothing a player or the API sees breaks.
//! - The publisher never comes back: the broadcast ends after the grace,
//!   once, with no origin left to end it but the sweeper.
//! - The holder is paused for 10 s: the other takes over; resumed, the old
//!   holder stands down and never writes again.
//! - A rolling deploy (SIGTERM, restart, ready; then the other): not one
//!   failed API request, the broadcast stays live, the playlist goes on.
//! - After the `kill -9`, and after the rolling deploy, the broadcast's
//!   recording is one replay: both origins serve it whole, each segment
//!   from whichever recorded it.

mod common;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::balancer::Balancer;
use common::edge::Edge;
use common::*;
use futures_util::StreamExt;
use serde_json::Value;
use sha2::{Digest, Sha256};
use testkit::ffmpeg::TestSource;
use testkit::postgres::TempPostgres;
use tokio::task::JoinHandle;
use tokio_tungstenite::tungstenite::Message;
use tokio_util::sync::CancellationToken;

/// Chat sessions, half on each origin.
const MEMBERS: usize = 200;

/// One scenario at a time: each runs a whole service on the 2 cores.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A scenario's numbers, on one line `scripts/bench-failover.sh` collects.
fn result(v: Value) {
    eprintln!("FAILOVER-RESULT {v}");
}

struct Slot {
    name: String,
    http: SocketAddr,
    rtmp: SocketAddr,
    dir: tempfile::TempDir,
    bin: Option<Binary>,
}

/// The service: a database, two origins, HAProxy and the edge.
struct Service {
    origins: Vec<Slot>,
    balancer: Balancer,
    edge: Edge,
    grace_secs: u64,
    /// Last, so that it stops after the origins (fields drop in order): a
    /// failed scenario's message is not buried under their database errors.
    pg: TempPostgres,
}

impl Service {
    async fn start(grace_secs: u64) -> Service {
        let pg = TempPostgres::start();
        let mut origins: Vec<Slot> = ["a", "b"]
            .iter()
            .map(|n| Slot {
                name: n.to_string(),
                http: free_addr(),
                rtmp: free_addr(),
                dir: tempfile::tempdir().unwrap(),
                bin: None,
            })
            .collect();
        for o in &mut origins {
            o.bin = Some(launch(o, &pg.url, grace_secs).await);
        }
        let balancer =
            Balancer::start(&origins.iter().map(|o| (o.rtmp, o.http)).collect::<Vec<_>>()).await;
        let edge = Edge::start(&origins.iter().map(|o| o.http).collect::<Vec<_>>()).await;
        let s = Service {
            origins,
            balancer,
            edge,
            grace_secs,
            pg,
        };
        s.wait_ready().await;
        s
    }

    /// Waits until HAProxy would send publishers to every running origin:
    /// ready, and ready for two checks.
    async fn wait_ready(&self) {
        for o in self.origins.iter().filter(|o| o.bin.is_some()) {
            let url = format!("http://{}/readyz", o.http);
            assert!(
                eventually(Duration::from_secs(20), async || get(&url).await.status
                    == 200)
                .await,
                "{} is ready",
                o.name
            );
        }
        tokio::time::sleep(Duration::from_secs(3)).await;
    }

    async fn relaunch(&mut self, i: usize) {
        let bin = launch(&self.origins[i], &self.pg.url, self.grace_secs).await;
        self.origins[i].bin = Some(bin);
    }

    fn edge(&self) -> String {
        format!("http://{}", self.edge.addr)
    }

    fn index(&self, name: &str) -> usize {
        self.origins.iter().position(|o| o.name == name).unwrap()
    }

    /// (holder, epoch) of `id`'s window, from the database.
    async fn owner(&self, id: &str) -> Option<(String, i64)> {
        let (client, conn) = tokio_postgres::connect(&self.pg.url, tokio_postgres::NoTls)
            .await
            .unwrap();
        tokio::spawn(conn);
        client
            .query_opt(
                "SELECT node_id, epoch FROM owners WHERE broadcast_id = $1",
                &[&id],
            )
            .await
            .unwrap()
            .map(|r| (r.get(0), r.get(1)))
    }
}

async fn launch(o: &Slot, db: &str, grace_secs: u64) -> Binary {
    let config = o.dir.path().join("origin.toml");
    std::fs::write(
        &config,
        format!("[hls]\nreconnect_grace_secs = {grace_secs}\n"),
    )
    .unwrap();
    Binary::start(o.rtmp, o.http, |c| {
        c.arg("--data-dir")
            .arg(o.dir.path().join("data"))
            .arg("--config")
            .arg(&config)
            .arg("--database-url")
            .arg(db)
            .arg("--node-id")
            .arg(&o.name)
            .arg("--player-dir")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/../player"))
            .env("RUST_LOG", "warn,origin=info");
    })
    .await
}

/// A GET whose failure is status 0.
async fn fetch(url: &str) -> Resp {
    try_request("GET", url, None, None).await
}

async fn broadcast(base: &str, id: &str) -> Value {
    serde_json::from_slice(&get(&format!("{base}/api/broadcasts/{id}")).await.body)
        .unwrap_or(Value::Null)
}

/// ffmpeg publishing to `url`, started again a second after it exits, as
/// OBS reconnects; returns how many times it started.
fn publisher(url: String, stop: CancellationToken) -> JoinHandle<u32> {
    tokio::spawn(async move {
        let mut starts = 0;
        while !stop.is_cancelled() {
            let mut ff = TestSource::new("1280x720", 600.0)
                .gop(30)
                .realtime()
                .publish(&url);
            starts += 1;
            tokio::select! {
                _ = ff.wait() => {}
                _ = stop.cancelled() => { ff.kill().await.ok(); break }
            }
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.cancelled() => break,
            }
        }
        starts
    })
}

/// Every poll of a media playlist through the edge, and every media URI it
/// listed with the digests of the bodies it was answered with.
#[derive(Default)]
struct Watched {
    polls: Vec<(Instant, Media)>,
    bodies: HashMap<String, Vec<[u8; 32]>>,
}

fn watch_playlist(url: String, stop: CancellationToken) -> JoinHandle<Watched> {
    tokio::spawn(async move {
        let mut w = Watched::default();
        while !stop.is_cancelled() {
            let r = fetch(&url).await;
            if r.status == 200 {
                let m = parse_media(&r.text());
                let uris: Vec<String> = m
                    .segments
                    .iter()
                    .map(|s| s.uri.clone())
                    .chain(m.all_parts().into_iter().map(|p| p.uri))
                    .collect();
                for u in uris {
                    if let std::collections::hash_map::Entry::Vacant(e) = w.bodies.entry(u) {
                        let body = fetch(&resolve(&url, e.key())).await;
                        if body.status == 200 {
                            e.insert(vec![Sha256::digest(&body.body).into()]);
                        }
                    }
                }
                w.polls.push((Instant::now(), m));
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        w
    })
}

impl Watched {
    /// Asks every URI seen once more through `base` (another origin, the
    /// edge): any 200 must be the same bytes.
    async fn ask_again(&mut self, playlist_url: &str) {
        for (u, digests) in self.bodies.iter_mut() {
            let r = fetch(&resolve(playlist_url, u)).await;
            if r.status == 200 {
                digests.push(Sha256::digest(&r.body).into());
            }
        }
    }

    fn assert_one_body_per_uri(&self) {
        for (u, d) in &self.bodies {
            assert!(
                d.windows(2).all(|w| w[0] == w[1]),
                "{u} answered with two bodies"
            );
        }
    }

    /// MEDIA-SEQUENCE and the last MSN never go down; nothing is ENDLIST.
    fn assert_rising(&self) {
        for w in self.polls.windows(2) {
            let (a, b) = (&w[0].1, &w[1].1);
            assert!(
                b.media_sequence >= a.media_sequence,
                "MEDIA-SEQUENCE went down: {} -> {}",
                a.media_sequence,
                b.media_sequence
            );
            assert!(
                b.last_position().0 >= a.last_position().0,
                "the last MSN went down: {:?} -> {:?}\n{}\n{}",
                a.last_position(),
                b.last_position(),
                a.text,
                b.text
            );
        }
        assert!(self.polls.iter().all(|(_, m)| !m.ended), "no ENDLIST");
    }

    /// Generations listed, in order of appearance.
    fn generations(&self) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for (_, m) in &self.polls {
            if let Some(g) = generation(m)
                && out.last() != Some(&g)
            {
                out.push(g);
            }
        }
        out
    }

    /// Where generation `new` took over from the one before: every MSN
    /// listed before is below its first segment, which is marked with
    /// EXT-X-DISCONTINUITY. Returns how long no new part was listed.
    fn assert_continued(&self, new: &str) -> Duration {
        let before: Vec<&(Instant, Media)> = self
            .polls
            .iter()
            .take_while(|(_, m)| generation(m).as_deref() != Some(new))
            .collect();
        let highest = before
            .iter()
            .map(|(_, m)| m.last_position().0)
            .max()
            .unwrap();
        let (_, first) = self
            .polls
            .iter()
            .find(|(_, m)| generation(m).as_deref() == Some(new) && !m.segments.is_empty())
            .expect("a segment of the new generation listed");
        let seg = first.segments.iter().find(|s| s.uri.contains(new)).unwrap();
        assert!(
            seg.msn > highest,
            "the first new segment ({}) is above every MSN listed before ({highest})",
            seg.msn
        );
        assert!(
            seg.discontinuity,
            "marked as a discontinuity:\n{}",
            first.text
        );
        // The longest time the last part listed stood still.
        let mut worst = Duration::ZERO;
        let mut since = self.polls[0].0;
        for w in self.polls.windows(2) {
            if w[1].1.last_position() != w[0].1.last_position() {
                worst = worst.max(w[1].0 - since);
                since = w[1].0;
            }
        }
        worst
    }
}

fn generation(m: &Media) -> Option<String> {
    let uri = m
        .all_parts()
        .last()
        .map(|p| p.uri.clone())
        .or_else(|| m.segments.last().map(|s| s.uri.clone()))?;
    // {rendition}/{generation}/{file}
    uri.split('/').nth(1).map(str::to_owned)
}

/// A chat session that reconnects (through the edge, with jitter up to a
/// second) when its connection closes; it keeps every message it gets live
/// (history frames are counted apart).
struct Member {
    got: Mutex<Vec<String>>,
    connected: AtomicBool,
    joins: AtomicU32,
    last_history: Mutex<Vec<String>>,
}

fn member(
    i: usize,
    first: String,
    then: String,
    id: String,
    stop: CancellationToken,
) -> Arc<Member> {
    let m = Arc::new(Member {
        got: Mutex::default(),
        connected: AtomicBool::new(false),
        joins: AtomicU32::new(0),
        last_history: Mutex::default(),
    });
    let me = m.clone();
    tokio::spawn(async move {
        let mut base = first;
        let mut attempt = 0u64;
        while !stop.is_cancelled() {
            let url = format!(
                "{}/api/broadcasts/{id}/chat?nick=m{i}&session=member-{i}",
                base.replace("http://", "ws://")
            );
            if let Ok(Ok((mut ws, _))) = tokio::time::timeout(
                Duration::from_secs(5),
                tokio_tungstenite::connect_async(url),
            )
            .await
            {
                me.joins.fetch_add(1, Ordering::Relaxed);
                me.connected.store(true, Ordering::Relaxed);
                loop {
                    let frame = tokio::select! {
                        f = ws.next() => f,
                        _ = stop.cancelled() => None,
                    };
                    let Some(Ok(Message::Text(t))) = frame else {
                        if matches!(frame, Some(Ok(_))) {
                            continue;
                        }
                        break;
                    };
                    let v: Value = serde_json::from_str(t.as_str()).unwrap();
                    let texts = |list: &Value| -> Vec<String> {
                        list.as_array()
                            .map(|a| {
                                a.iter()
                                    .map(|m| m["text"].as_str().unwrap_or_default().to_owned())
                                    .collect()
                            })
                            .unwrap_or_default()
                    };
                    match v["type"].as_str() {
                        Some("history") => *me.last_history.lock().unwrap() = texts(&v["messages"]),
                        Some("messages") => me.got.lock().unwrap().extend(texts(&v["messages"])),
                        Some("message") => me
                            .got
                            .lock()
                            .unwrap()
                            .push(v["text"].as_str().unwrap_or_default().to_owned()),
                        _ => {}
                    }
                }
                me.connected.store(false, Ordering::Relaxed);
            }
            // Full jitter, as the page: up to a second, spread by session.
            attempt += 1;
            let jitter = (i as u64 * 7919 + attempt * 104_729) % 1000;
            tokio::time::sleep(Duration::from_millis(jitter)).await;
            base = then.clone();
        }
    });
    m
}

/// Requests made, and the failed ones: (method, when, what came back).
type Probed = (u32, Vec<(String, Instant, String)>);

/// 10 requests a second through the edge: nine GETs, then a PATCH of the
/// title; failures with their method and time.
fn prober(edge: String, c: &Created, stop: CancellationToken) -> JoinHandle<Probed> {
    let (id, token) = (c.id.clone(), c.token.clone());
    tokio::spawn(async move {
        let mut failed = Vec::new();
        let mut n = 0u32;
        let mut tick = tokio::time::interval(Duration::from_millis(100));
        while !stop.is_cancelled() {
            tick.tick().await;
            n += 1;
            let (method, r) = if n.is_multiple_of(10) {
                let body = format!(r#"{{"title":"Failover {n}"}}"#);
                let url = format!("{edge}/api/broadcasts/{id}");
                (
                    "PATCH",
                    try_request("PATCH", &url, Some(&body), Some(&token)).await,
                )
            } else if n.is_multiple_of(2) {
                ("GET", fetch(&format!("{edge}/api/broadcasts")).await)
            } else {
                ("GET", fetch(&format!("{edge}/api/broadcasts/{id}")).await)
            };
            if !(200..300).contains(&r.status) {
                failed.push((
                    method.to_owned(),
                    Instant::now(),
                    format!("{} {}", r.status, r.text()),
                ));
            }
        }
        (n, failed)
    })
}

/// The publisher of a scenario's broadcast.
struct Publishing {
    stop: CancellationToken,
    publisher: JoinHandle<u32>,
}

impl Publishing {
    fn start(url: String) -> Publishing {
        let stop = CancellationToken::new();
        let publisher = publisher(url, stop.clone());
        Publishing { stop, publisher }
    }

    /// Ends the broadcast through `base` while it is still being published
    /// (its holder records its last segments after the end), then stops
    /// publishing; the response.
    async fn end(self, base: &str, c: &Created) -> Resp {
        let ended = request_json_as(
            "PATCH",
            &format!("{base}/api/broadcasts/{}", c.id),
            r#"{"status":"ended"}"#,
            Some(&c.token),
        )
        .await;
        self.stop.cancel();
        let starts = self.publisher.await.unwrap();
        eprintln!("the publisher started {starts} times");
        ended
    }
}

/// Everything a scenario drives, started in order, with hls.js last.
struct Load {
    /// Stops all but the publisher.
    stop: CancellationToken,
    c: Created,
    media: String,
    /// Publishes until the broadcast ends (see [`Publishing::end`]).
    publishing: Publishing,
    watcher: JoinHandle<Watched>,
    prober: JoinHandle<Probed>,
    members: Vec<Arc<Member>>,
    player: tokio::process::Child,
    /// When the player started (its report's times count from about then).
    player_at: Instant,
}

impl Load {
    async fn start(s: &Service, play_secs: u32) -> Load {
        let stop = CancellationToken::new();
        let c = create_broadcast(&s.edge(), "Failover").await;
        let publishing = Publishing::start(s.balancer.rtmp_url(&c.key));
        let master = format!("{}/hls/{}/master.m3u8", s.edge(), c.id);
        let media = first_media_playlist(&master, Duration::from_secs(30)).await;
        let watcher = watch_playlist(media.clone(), stop.clone());
        let prober = prober(s.edge(), &c, stop.clone());
        let members: Vec<Arc<Member>> = (0..MEMBERS)
            .map(|i| {
                let o = &s.origins[i % 2];
                member(
                    i,
                    format!("http://{}", o.http),
                    s.edge(),
                    c.id.clone(),
                    stop.clone(),
                )
            })
            .collect();
        assert!(
            eventually(Duration::from_secs(20), async || members
                .iter()
                .all(|m| m.connected.load(Ordering::Relaxed)))
            .await,
            "every chat session joined"
        );
        let player = hls_js(&master, play_secs);
        let player_at = Instant::now();
        Load {
            stop,
            c,
            media,
            publishing,
            watcher,
            prober,
            members,
            player,
            player_at,
        }
    }

    /// Says `text` through the edge as the owner and waits until every
    /// member got it; returns how often each got it.
    async fn say_to_all(&self, s: &Service, text: &str) -> Vec<usize> {
        let url = format!(
            "{}/api/broadcasts/{}/chat?nick=host&session=host-{}&token={}",
            s.edge().replace("http://", "ws://"),
            self.c.id,
            text.replace(' ', "-"),
            self.c.token
        );
        let (mut ws, _) = tokio_tungstenite::connect_async(url).await.unwrap();
        futures_util::SinkExt::send(
            &mut ws,
            Message::text(serde_json::json!({"type": "message", "text": text}).to_string()),
        )
        .await
        .unwrap();
        let count = || {
            self.members
                .iter()
                .map(|m| m.got.lock().unwrap().iter().filter(|t| *t == text).count())
                .collect::<Vec<_>>()
        };
        eventually(Duration::from_secs(10), async || {
            count().iter().all(|n| *n >= 1)
        })
        .await;
        // Anything late (a duplicate) would come within a batch or two.
        tokio::time::sleep(Duration::from_millis(600)).await;
        count()
    }
}

/// Waits (up to 10 s) until the count the API gives is every member (and
/// perhaps a host session or two).
async fn assert_count_exact(s: &Service, id: &str) {
    let exact = MEMBERS as u64;
    assert!(
        eventually(Duration::from_secs(10), async || broadcast(&s.edge(), id)
            .await["viewer_count"]
            .as_u64()
            .is_some_and(|n| n >= exact && n <= exact + 2))
        .await,
        "the count is exact: {}",
        broadcast(&s.edge(), id).await
    );
}

/// Waits until every member of origin `lost` (index) joined again and
/// every member is connected; how long it took.
async fn all_back(members: &[Arc<Member>], lost: usize, since: Instant) -> Duration {
    assert!(
        eventually(Duration::from_secs(15), async || members
            .iter()
            .enumerate()
            .all(|(i, m)| {
                m.connected.load(Ordering::Relaxed)
                    && (i % 2 != lost || m.joins.load(Ordering::Relaxed) >= 2)
            }))
        .await,
        "chat sessions came back"
    );
    since.elapsed()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_of_the_holding_origin_moves_the_broadcast_and_breaks_nothing() {
    let _serial = SERIAL.lock().await;
    let mut s = Service::start(15).await;
    let load = Load::start(&s, 50).await;
    let c = &load.c;
    let before = load.say_to_all(&s, "before the kill").await;
    assert!(
        before.iter().all(|n| *n == 1),
        "each got it once: {before:?}"
    );

    // 15 s into the broadcast, the holder dies.
    tokio::time::sleep(Duration::from_secs(10)).await;
    let (holder, epoch) = s.owner(&c.id).await.expect("held");
    let i = s.index(&holder);
    let survivor = s.origins[1 - i].name.clone();
    s.origins[i].bin.as_ref().unwrap().signal("KILL");
    let killed = Instant::now();
    eprintln!("killed {holder} (epoch {epoch})");

    // The publisher lands on the other origin, which takes over; the chat
    // sessions come back meanwhile.
    let (moved, back) = tokio::join!(
        async {
            assert!(
                eventually(Duration::from_secs(15), async || s.owner(&c.id).await
                    == Some((survivor.clone(), epoch + 1)))
                .await,
                "{survivor} took the broadcast over at epoch {}: {:?}",
                epoch + 1,
                s.owner(&c.id).await
            );
            killed.elapsed()
        },
        all_back(&load.members, i, killed)
    );
    eprintln!("publisher moved in {moved:?}; chat sessions back in {back:?}");
    assert!(
        back < Duration::from_secs(5),
        "chat back within 5 s: {back:?}"
    );
    assert_edge_kept_an_origin(&s);
    let history = load.members[i].last_history.lock().unwrap().clone();
    assert!(
        history.iter().any(|t| t == "before the kill"),
        "history intact after reconnecting: {history:?}"
    );
    let after = load.say_to_all(&s, "after the kill").await;
    assert!(
        after.iter().all(|n| *n == 1),
        "each got it exactly once: {after:?}"
    );
    // The count is exact again (the dead origin's report expires).
    let exact = MEMBERS as u64;
    assert_count_exact(&s, &c.id).await;
    let count_exact = killed.elapsed();
    eprintln!("count exact {count_exact:?} after the kill");

    let report = hls_js_report(load.player).await;
    eprintln!("hls.js through the kill: {report}");
    load.stop.cancel();
    let (probes, failed) = load.prober.await.unwrap();
    let mut watched = load.watcher.await.unwrap();
    let peak = broadcast(&s.edge(), &c.id).await["peak_viewer_count"]
        .as_u64()
        .unwrap();

    assert_eq!(
        report["fatal"].as_array().unwrap().len(),
        0,
        "no fatal error: {report}"
    );
    assert!(
        report["currentTime"].as_f64().unwrap() > 35.0,
        "played on by itself: {report}"
    );
    eprintln!(
        "viewer freeze {} ms; {probes} API requests, failed: {failed:?}; peak {peak}",
        report["maxFreezeMs"]
    );
    assert!(
        failed
            .iter()
            .all(|(m, at, _)| m != "GET" && at.duration_since(killed) < Duration::from_secs(1)),
        "no GET failed; a write only if in flight at the kill: {failed:?}"
    );
    assert!(
        peak <= exact + 2,
        "the peak is not inflated by the move: {peak}"
    );

    watched.assert_rising();
    let generations = watched.generations();
    assert_eq!(generations.len(), 2, "one take-over: {generations:?}");
    let stood = watched.assert_continued(&generations[1]);
    eprintln!("the playlist stood still for at most {stood:?}");
    result(serde_json::json!({
        "scenario": "kill -9 of the holder",
        "publisher_moved_s": moved.as_secs_f64(),
        "chat_back_s": back.as_secs_f64(),
        "count_exact_s": count_exact.as_secs_f64(),
        "max_freeze_ms": report["maxFreezeMs"],
        "playlist_still_s": stood.as_secs_f64(),
        "api_requests": probes,
        "api_failed": failed.len(),
        "peak": peak,
    }));
    // Every URI seen, asked again of the survivor directly and of the edge.
    let direct = load
        .media
        .replace(&s.edge(), &format!("http://{}", s.origins[1 - i].http));
    watched.ask_again(&direct).await;
    watched.ask_again(&load.media).await;
    watched.assert_one_body_per_uri();
    // Both renditions agree on the discontinuity sequence.
    let master = get(&format!("{}/hls/{}/master.m3u8", s.edge(), c.id))
        .await
        .text();
    let sequences: Vec<u64> = futures_util::future::join_all(
        master
            .lines()
            .filter(|l| l.ends_with(".m3u8"))
            .map(|l| resolve(&load.media, l))
            .map(async |u| parse_media(&get(&u).await.text()).discontinuity_sequence),
    )
    .await;
    assert!(
        sequences.len() == 2 && sequences.windows(2).all(|w| w[0] == w[1]),
        "both renditions count the same discontinuities: {sequences:?}"
    );
    // The killed origin comes back; the broadcast ends on the survivor.
    s.relaunch(i).await;
    s.wait_ready().await;
    one_replay_across_take_overs(&s, c, load.publishing, i, &generations).await;
}

/// The edge always had an origin to ask: with one origin gone and the other
/// answering held requests with 503 while the broadcast moves, nginx marks
/// both failed, and without the backup servers of `deploy/nginx-edge.conf`
/// it answered everything (chat reconnections included) with 502.
fn assert_edge_kept_an_origin(s: &Service) {
    let log = s.edge.log();
    let none: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("no live upstreams"))
        .collect();
    assert!(
        none.is_empty(),
        "the edge had no origin to ask {} times; the first: {:?}",
        none.len(),
        none.first()
    );
}

/// The segments `o` recorded of `id` (as playlist URIs), from its disk's
/// indexes.
fn recorded_here(o: &Slot, id: &str) -> Vec<String> {
    let root = o.dir.path().join("data/recordings").join(id);
    let dirs = |p: &std::path::Path| -> Vec<std::fs::DirEntry> {
        std::fs::read_dir(p)
            .map(|d| d.flatten().filter(|e| e.path().is_dir()).collect())
            .unwrap_or_default()
    };
    let mut uris = Vec::new();
    for generation in dirs(&root) {
        for rendition in dirs(&generation.path()) {
            let index =
                std::fs::read_to_string(rendition.path().join("index.jsonl")).unwrap_or_default();
            // A torn last line (a kill -9 mid-write) was never recorded.
            uris.extend(
                index
                    .lines()
                    .filter_map(|l| serde_json::from_str::<Value>(l).ok())
                    .map(|e| {
                        format!(
                            "{}/{}/s{}.m4s",
                            rendition.file_name().to_string_lossy(),
                            generation.file_name().to_string_lossy(),
                            e["msn"]
                        )
                    }),
            );
        }
    }
    uris
}

/// After take-overs, the broadcast ends while `publishing` (through the
/// origin not holding it): both origins serve one replay of every part
/// (the same playlists, listing `generations` in order and every segment
/// either origin recorded; each segment, wherever it was recorded, with the
/// same bytes from either), ffmpeg decodes it through the edge, and the
/// owner's deletion through `first` (the origin that recorded the first
/// part) takes it from both.
async fn one_replay_across_take_overs(
    s: &Service,
    c: &Created,
    publishing: Publishing,
    first: usize,
    generations: &[String],
) {
    let bases: Vec<String> = s
        .origins
        .iter()
        .map(|o| format!("http://{}", o.http))
        .collect();
    // The end reaches the holder through the database, and its last
    // segments are recorded after it.
    let (holder, _) = s.owner(&c.id).await.expect("held at the end");
    let ended = publishing.end(&bases[1 - s.index(&holder)], c).await;
    assert_eq!(ended.status, 200, "{}", ended.text());
    for base in &bases {
        assert!(
            eventually(Duration::from_secs(20), async || broadcast(base, &c.id)
                .await["replay"]["state"]
                == "ready")
            .await,
            "{base} says the replay is ready: {}",
            broadcast(base, &c.id).await
        );
    }
    // The same playlists from both.
    let mut served: Option<Vec<String>> = None;
    for base in &bases {
        let master = get(&format!("{base}/hls/{}/master.m3u8", c.id)).await;
        assert_eq!(master.status, 200, "{base}: {}", master.text());
        let mut texts = vec![master.text()];
        for l in texts[0].clone().lines().filter(|l| l.ends_with(".m3u8")) {
            let media = get(&format!("{base}/hls/{}/{l}", c.id)).await;
            assert_eq!(media.status, 200, "{base} {l}");
            texts.push(media.text());
        }
        match &served {
            Some(first) => assert_eq!(first, &texts, "{base} serves the same replay"),
            None => served = Some(texts),
        }
    }
    let texts = served.unwrap();
    assert_eq!(texts.len(), 3, "the ladder: {}", texts[0]);
    let mut uris = Vec::new();
    for media in &texts[1..] {
        assert!(media.contains("#EXT-X-PLAYLIST-TYPE:VOD\n"), "{media}");
        assert!(media.ends_with("#EXT-X-ENDLIST\n"), "{media}");
        let listed = listed_secs(media);
        assert!(listed > 30.0, "every part is listed: {listed} s\n{media}");
        let segments: Vec<&str> = media.lines().filter(|l| l.ends_with(".m4s")).collect();
        let recorded: Vec<String> =
            segments
                .iter()
                .filter_map(|u| u.split('/').nth(1))
                .fold(Vec::new(), |mut gs, g| {
                    if gs.last().map(String::as_str) != Some(g) {
                        gs.push(g.to_owned());
                    }
                    gs
                });
        assert_eq!(recorded, generations, "every origin's runs, in order");
        // Between one part's last segment and the next part's first.
        let lines: Vec<&str> = media.lines().collect();
        for g in &generations[1..] {
            let start = lines
                .iter()
                .position(|l| l.contains(&format!("/{g}/")))
                .unwrap();
            let between = lines[..start]
                .iter()
                .rev()
                .take_while(|l| !l.ends_with(".m4s"));
            assert!(
                between.clone().any(|l| *l == "#EXT-X-DISCONTINUITY"),
                "a discontinuity where {g} took over: {:?}",
                between.collect::<Vec<_>>()
            );
        }
        uris.extend(segments.iter().map(|u| u.to_string()));
        uris.extend(media.lines().filter_map(|l| {
            l.strip_prefix("#EXT-X-MAP:URI=\"")
                .and_then(|u| u.split('"').next())
                .map(str::to_owned)
        }));
    }
    let mut missing: Vec<String> = s
        .origins
        .iter()
        .flat_map(|o| recorded_here(o, &c.id))
        .filter(|u| !uris.contains(u))
        .collect();
    missing.sort();
    assert!(
        missing.is_empty(),
        "every segment an origin recorded is in the replay; missing: {missing:?}"
    );
    // Every segment from either origin, wherever it was recorded: the same bytes.
    for u in &uris {
        let bodies: Vec<Resp> = futures_util::future::join_all(
            bases
                .iter()
                .map(async |b| fetch(&format!("{b}/hls/{}/{u}", c.id)).await),
        )
        .await;
        assert!(
            bodies.iter().all(|b| b.status == 200),
            "{u}: {:?}",
            bodies.iter().map(|b| b.status).collect::<Vec<_>>()
        );
        assert_eq!(bodies[0].body, bodies[1].body, "{u} is one file");
    }
    // A HEAD through the other origin of a segment `first` recorded.
    let url = format!("{}/hls/{}/{}", bases[1 - first], c.id, uris[0]);
    let (head, body) = (request("HEAD", &url, &[]).await, get(&url).await);
    assert_eq!(head.status, 200);
    assert_eq!(head.header("content-length"), body.body.len().to_string());
    let master = format!("{}/hls/{}/master.m3u8", s.edge(), c.id);
    let errors = ffmpeg_decode_errors(&master).await;
    assert!(
        errors.trim().is_empty(),
        "ffmpeg decoded the replay: {errors}"
    );
    for base in &bases {
        let thumb = get(&format!("{base}/api/broadcasts/{}/thumbnail.jpg", c.id)).await;
        assert_eq!(thumb.status, 200, "{base} serves the replay's thumbnail");
        assert_eq!(thumb.header("content-type"), "image/jpeg");
    }

    // Deleted through `first`: gone from both.
    let deleted = request_json_as(
        "DELETE",
        &format!("{}/api/broadcasts/{}/replay", bases[first], c.id),
        "",
        Some(&c.token),
    )
    .await;
    assert_eq!(deleted.status, 200, "{}", deleted.text());
    for base in &bases {
        let url = format!("{base}/hls/{}/master.m3u8", c.id);
        assert!(
            eventually(Duration::from_secs(3), async || get(&url).await.status
                == 410)
            .await,
            "{base} answers 410"
        );
    }
    let other_files = s.origins[1 - first]
        .dir
        .path()
        .join("data/recordings")
        .join(&c.id);
    assert!(
        eventually(Duration::from_secs(15), async || {
            let left: Vec<_> = std::fs::read_dir(&other_files)
                .unwrap()
                .flatten()
                .map(|e| e.file_name())
                .collect();
            left == ["deleted"]
        })
        .await,
        "the other origin deleted its part too"
    );
    for base in &bases {
        let first = fetch(&format!("{base}/hls/{}/{}", c.id, uris[0])).await;
        assert_eq!(first.status, 404, "{base}: the media went");
        assert_eq!(
            broadcast(base, &c.id).await["replay"]["state"],
            "deleted",
            "{base}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_broadcast_whose_origin_and_publisher_are_gone_ends_once_after_the_grace() {
    let _serial = SERIAL.lock().await;
    const GRACE: u64 = 6;
    let mut s = Service::start(GRACE).await;
    let c = create_broadcast(&s.edge(), "Failover").await;
    let mut ff = TestSource::new("854x480", 600.0)
        .gop(30)
        .realtime()
        .publish(&s.balancer.rtmp_url(&c.key));
    let master = format!("{}/hls/{}/master.m3u8", s.edge(), c.id);
    let media = first_media_playlist(&master, Duration::from_secs(30)).await;
    let (holder, _) = s.owner(&c.id).await.expect("held");
    let i = s.index(&holder);
    s.origins[i].bin.as_ref().unwrap().signal("KILL");
    ff.kill().await.ok();
    let killed = Instant::now();
    // A playlist request to the survivor meanwhile finds its holder gone: it
    // waits for a take-over, and gets the answer once there is none to wait
    // for (the sweeper freed the window), not a prompt error.
    let survivor_media = media.replace(&s.edge(), &format!("http://{}", s.origins[1 - i].http));
    let waiting = tokio::spawn(async move {
        let r = fetch(&survivor_media).await;
        (r.status, killed.elapsed())
    });

    // Live through the grace (its publisher may still come back)...
    tokio::time::sleep(Duration::from_secs(GRACE - 2)).await;
    assert_eq!(broadcast(&s.edge(), &c.id).await["status"], "live");
    // ...then ended by the survivor's sweeper, once.
    assert!(
        eventually(Duration::from_secs(10), async || broadcast(
            &s.edge(),
            &c.id
        )
        .await["status"]
            == "ended")
        .await,
        "ended after the grace"
    );
    eprintln!("ended {:?} after the kill", killed.elapsed());
    result(serde_json::json!({
        "scenario": "publisher never returns",
        "grace_s": GRACE,
        "ended_after_kill_s": killed.elapsed().as_secs_f64(),
    }));
    let ended_at = broadcast(&s.edge(), &c.id).await["ended_at"].clone();
    let survivor = s.origins[1 - i].bin.as_mut().unwrap();
    assert!(
        survivor
            .wait_for_log("its publisher did not come back within the grace")
            .await
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        broadcast(&s.edge(), &c.id).await["ended_at"],
        ended_at,
        "ended once"
    );
    assert_eq!(s.owner(&c.id).await, None, "nobody holds it");
    let (status, after) = waiting.await.unwrap();
    eprintln!("a playlist request made at the kill was answered {status} after {after:?}");
    assert_eq!(status, 404, "answered once the broadcast was over");
    assert!(
        after >= Duration::from_secs(GRACE - 1),
        "it waited for a take-over rather than failing at once: {after:?}"
    );
    // Its playlists are gone, not waited for.
    let r = fetch(&master).await;
    assert_eq!(r.status, 404, "{}", r.text());
    // A publish with its key is refused: it is over.
    s.relaunch(i).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_paused_holder_is_taken_over_and_stands_down_when_it_resumes() {
    let _serial = SERIAL.lock().await;
    let mut s = Service::start(15).await;
    let stop = CancellationToken::new();
    let c = create_broadcast(&s.edge(), "Failover").await;
    let publisher = publisher(s.balancer.rtmp_url(&c.key), stop.clone());
    let master = format!("{}/hls/{}/master.m3u8", s.edge(), c.id);
    let media = first_media_playlist(&master, Duration::from_secs(30)).await;
    tokio::time::sleep(Duration::from_secs(5)).await;
    let (holder, epoch) = s.owner(&c.id).await.expect("held");
    let i = s.index(&holder);
    let survivor = s.origins[1 - i].name.clone();
    // Watched through the survivor: the paused origin answers nothing.
    let direct = media.replace(&s.edge(), &format!("http://{}", s.origins[1 - i].http));
    let watcher = watch_playlist(direct.clone(), stop.clone());

    s.origins[i].bin.as_ref().unwrap().signal("STOP");
    let at = Instant::now();
    assert!(
        eventually(Duration::from_secs(15), async || s.owner(&c.id).await
            == Some((survivor.clone(), epoch + 1)))
        .await,
        "{survivor} took over while {holder} was paused: {:?}",
        s.owner(&c.id).await
    );
    let taken = at.elapsed();
    eprintln!("taken over {taken:?} into the pause");
    tokio::time::sleep(Duration::from_secs(10).saturating_sub(at.elapsed())).await;
    s.origins[i].bin.as_ref().unwrap().signal("CONT");
    let resumed = Instant::now();

    // It stands down: never a second writer, and it forwards to the new holder.
    let old = s.origins[i].http;
    let own = format!("http://{old}/hls/{}/master.m3u8", c.id);
    assert!(
        eventually(Duration::from_secs(10), async || {
            let via_old = fetch(&own).await;
            let via_new =
                fetch(&master.replace(&s.edge(), &format!("http://{}", s.origins[1 - i].http)))
                    .await;
            via_old.status == 200 && via_old.body == via_new.body
        })
        .await,
        "the resumed origin serves the new holder's playlists"
    );
    eprintln!("stood down {:?} after resuming", resumed.elapsed());
    result(serde_json::json!({
        "scenario": "holder paused 10 s",
        "taken_over_into_pause_s": taken.as_secs_f64(),
        "stood_down_after_resume_s": resumed.elapsed().as_secs_f64(),
    }));
    assert!(
        s.origins[i]
            .bin
            .as_mut()
            .unwrap()
            .wait_for_log("another origin holds this broadcast now; standing down")
            .await
    );
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert_eq!(
        s.owner(&c.id).await,
        Some((survivor.clone(), epoch + 1)),
        "the holder stays the new one"
    );
    let (client, conn) = tokio_postgres::connect(&s.pg.url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    let epochs: Vec<i64> = client
        .query(
            "SELECT epoch FROM window_counters WHERE broadcast_id = $1",
            &[&c.id],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert!(
        !epochs.is_empty() && epochs.iter().all(|e| *e == epoch + 1),
        "only the new holder's counters: {epochs:?}"
    );
    assert_eq!(broadcast(&s.edge(), &c.id).await["status"], "live");
    stop.cancel();
    publisher.await.unwrap();
    let w = watcher.await.unwrap();
    w.assert_rising();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rolling_deploy_fails_no_request_and_keeps_the_broadcast_live() {
    let _serial = SERIAL.lock().await;
    let mut s = Service::start(15).await;
    let load = Load::start(&s, 75).await;
    let c = &load.c;
    let first = load.say_to_all(&s, "before the deploy").await;
    assert!(first.iter().all(|n| *n == 1), "{first:?}");
    let mut steps = Vec::new();
    let mut timings = Vec::new();
    // The holder first, so that each step moves the broadcast.
    let (holder, _) = s.owner(&c.id).await.expect("held");
    let first = s.index(&holder);
    for i in [first, 1 - first] {
        tokio::time::sleep(Duration::from_secs(5)).await;
        let name = s.origins[i].name.clone();
        let at = Instant::now();
        let took = s.origins[i]
            .bin
            .take()
            .unwrap()
            .stop(Duration::from_secs(15))
            .await;
        s.relaunch(i).await;
        s.wait_ready().await;
        eprintln!(
            "{name}: stopped in {took:?}, back and ready {:?} after the SIGTERM",
            at.elapsed()
        );
        timings.push((took, at.elapsed()));
        steps.push((name, at, Instant::now()));
        let back = eventually(Duration::from_secs(10), async || {
            load.members
                .iter()
                .all(|m| m.connected.load(Ordering::Relaxed))
        })
        .await;
        if !back {
            eprintln!("edge log:\n{}", s.edge.log());
        }
        assert!(
            back,
            "chat sessions back after {}: {} of {MEMBERS}; joins of the others: {:?}",
            steps.last().unwrap().0,
            load.members
                .iter()
                .filter(|m| m.connected.load(Ordering::Relaxed))
                .count(),
            load.members
                .iter()
                .filter(|m| !m.connected.load(Ordering::Relaxed))
                .map(|m| m.joins.load(Ordering::Relaxed))
                .collect::<Vec<_>>()
        );
    }
    assert_edge_kept_an_origin(&s);
    let after = load.say_to_all(&s, "after the deploy").await;
    assert!(
        after.iter().all(|n| *n == 1),
        "each got it exactly once: {after:?}"
    );
    let history = load.members[0].last_history.lock().unwrap().clone();
    assert!(
        history.iter().any(|t| t == "before the deploy"),
        "{history:?}"
    );
    let exact = MEMBERS as u64;
    assert_count_exact(&s, &c.id).await;

    let report = hls_js_report(load.player).await;
    load.stop.cancel();
    let (probes, failed) = load.prober.await.unwrap();
    let watched = load.watcher.await.unwrap();
    let peak = broadcast(&s.edge(), &c.id).await["peak_viewer_count"]
        .as_u64()
        .unwrap();
    eprintln!("hls.js through the deploy: {report}");
    let mut step_results = Vec::new();
    for ((name, from, to), (took, ready)) in steps.iter().zip(&timings) {
        // Freezes that began between the SIGTERM and the origin being ready.
        let worst = report["freezes"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|f| {
                let at = load.player_at + Duration::from_millis(f["atMs"].as_u64().unwrap_or(0));
                at >= *from && at <= *to
            })
            .filter_map(|f| f["ms"].as_u64())
            .max()
            .unwrap_or(0);
        eprintln!("restarting {name}: worst freeze {worst} ms");
        step_results.push(serde_json::json!({
            "origin": name,
            "stopped_s": took.as_secs_f64(),
            "ready_s": ready.as_secs_f64(),
            "worst_freeze_ms": worst,
        }));
    }
    result(serde_json::json!({
        "scenario": "rolling deploy",
        "steps": step_results,
        "max_freeze_ms": report["maxFreezeMs"],
        "api_requests": probes,
        "api_failed": failed.len(),
        "peak": peak,
    }));
    assert_eq!(
        report["fatal"].as_array().unwrap().len(),
        0,
        "no fatal error: {report}"
    );
    if !failed.is_empty() {
        eprintln!("edge log:\n{}", s.edge.log());
    }
    assert!(
        failed.is_empty(),
        "{probes} API requests, none failed: {failed:?}"
    );
    assert!(peak <= exact + 2, "the peak is not inflated: {peak}");
    watched.assert_rising();
    let generations = watched.generations();
    assert_eq!(generations.len(), 3, "two take-overs: {generations:?}");
    for g in &generations[1..] {
        watched.assert_continued(g);
    }
    // Ended where it began: one replay of its three parts, the middle one
    // recorded by the other origin.
    one_replay_across_take_overs(&s, c, load.publishing, first, &generations).await;
}
