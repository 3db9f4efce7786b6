//! `kill -9` and a restart lose nothing acknowledged: broadcasts and chat
//! history are intact, broadcasts that were live end after the grace period
//! unless their publisher comes back, and no media URI served before a crash
//! is ever served again with other bytes.

mod common;

use std::time::Duration;

use std::collections::HashMap;

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use testkit::ffmpeg::TestSource;
use tokio_tungstenite::tungstenite::Message;

/// The binary on `http` and `rtmp` with its data in `dir`; `top` goes at the
/// top of its config file.
async fn launch(
    dir: &std::path::Path,
    http: std::net::SocketAddr,
    rtmp: std::net::SocketAddr,
    top: &str,
) -> Binary {
    let config = dir.join("origin.toml");
    std::fs::write(&config, format!("{top}[hls]\nreconnect_grace_secs = 4\n")).unwrap();
    Binary::start(rtmp, http, |c| {
        c.arg("--data-dir")
            .arg(dir.join("data"))
            .arg("--config")
            .arg(&config)
            .env("RUST_LOG", "warn");
    })
    .await
}

async fn post(base: &str, title: &str) -> Value {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let req = hyper::Request::post(format!("{base}/api/broadcasts"))
        .header("content-type", "application/json")
        .header("authorization", format!("Bearer {ADMIN_TOKEN}"))
        .body(http_body_util::Full::from(
            json!({ "title": title }).to_string(),
        ))
        .unwrap();
    let resp = client.request(req).await.unwrap();
    assert_eq!(resp.status(), 201);
    let bytes = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    serde_json::from_slice(&bytes).unwrap()
}

async fn status(base: &str, id: &str) -> String {
    let v: Value =
        serde_json::from_slice(&get(&format!("{base}/api/broadcasts/{id}")).await.body).unwrap();
    v["status"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_loses_nothing_and_live_broadcasts_end_unless_their_publisher_returns() {
    let dir = tempfile::tempdir().unwrap();
    let (http, rtmp) = (free_addr(), free_addr());
    let mut p = launch(dir.path(), http, rtmp, "").await;
    let base = format!("http://{}", p.http);
    let keep = post(&base, "Kept after a crash").await;
    let gone = post(&base, "Publisher never returns").await;
    let back = post(&base, "Publisher returns").await;
    let id = |v: &Value| v["id"].as_str().unwrap().to_string();

    // Chat messages, each acknowledged by its echo.
    let ws_url = format!(
        "ws://{}/api/broadcasts/{}/chat?nick=a&session=s1",
        p.http,
        id(&keep)
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url).await.unwrap();
    for i in 0..3 {
        ws.send(Message::text(
            json!({"type": "message", "text": format!("before crash {i}")}).to_string(),
        ))
        .await
        .unwrap();
        loop {
            let Some(Ok(Message::Text(t))) = ws.next().await else {
                panic!("chat closed")
            };
            if t.contains(&format!("before crash {i}")) {
                break;
            }
        }
    }
    // Two broadcasts go live.
    let url = |v: &Value| {
        format!(
            "rtmp://{}/live/{}",
            p.rtmp,
            v["stream_key"].as_str().unwrap()
        )
    };
    let _ff1 = TestSource::new("854x480", 60.0)
        .gop(30)
        .realtime()
        .publish(&url(&gone));
    let _ff2 = TestSource::new("854x480", 60.0)
        .gop(30)
        .realtime()
        .publish(&url(&back));
    for b in [&gone, &back] {
        assert!(
            eventually(Duration::from_secs(15), async || status(&base, &id(b))
                .await
                == "live")
            .await
        );
    }

    // kill -9.
    p.signal("KILL");
    p.child.wait().await.unwrap();
    drop(ws);
    drop(_ff1);
    drop(_ff2);

    let p = launch(dir.path(), http, rtmp, "").await;
    // One publisher comes back at once, as OBS would.
    let mut again = TestSource::new("854x480", 12.0)
        .gop(30)
        .realtime()
        .publish(&format!(
            "rtmp://{}/live/{}",
            p.rtmp,
            back["stream_key"].as_str().unwrap()
        ));
    let list: Value =
        serde_json::from_slice(&get(&format!("{base}/api/broadcasts")).await.body).unwrap();
    assert_eq!(
        list["broadcasts"].as_array().unwrap().len(),
        3,
        "every broadcast survived"
    );
    let ws_url = format!(
        "ws://{}/api/broadcasts/{}/chat?nick=b&session=s2",
        p.http,
        id(&keep)
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(ws_url).await.unwrap();
    let Some(Ok(Message::Text(t))) = ws.next().await else {
        panic!()
    };
    let history: Value = serde_json::from_str(t.as_str()).unwrap();
    let texts: Vec<&str> = history["messages"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["text"].as_str().unwrap())
        .collect();
    assert_eq!(
        texts,
        ["before crash 0", "before crash 1", "before crash 2"],
        "chat history survived"
    );

    assert!(
        eventually(Duration::from_secs(15), async || status(&base, &id(&gone))
            .await
            == "ended")
        .await,
        "a live broadcast whose publisher never returns ends after the grace period"
    );
    assert_eq!(
        status(&base, &id(&back)).await,
        "live",
        "the one whose publisher returned stays live"
    );
    assert_eq!(status(&base, &id(&keep)).await, "ready");
    again.kill().await.ok();
}

/// Every media URI (init segments, segments, parts) a playlist lists.
fn media_uris(playlist: &str, m: &Media) -> Vec<String> {
    let mut uris: Vec<String> = m
        .segments
        .iter()
        .flat_map(|s| s.map.iter().chain([&s.uri]))
        .cloned()
        .chain(m.all_parts().into_iter().map(|p| p.uri))
        .map(|u| resolve(playlist, &u))
        .collect();
    uris.dedup();
    uris
}

/// Fetches `uris` and records each one's SHA-256.
async fn record(uris: &[String], seen: &mut HashMap<String, Vec<u8>>) {
    for u in uris {
        let r = get(u).await;
        assert_eq!(r.status, 200, "{u}");
        let sum = Sha256::digest(&r.body).to_vec();
        if let Some(before) = seen.insert(u.clone(), sum.clone()) {
            assert_eq!(before, sum, "{u} changed while the server ran");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_kill_9_or_sigterm_inside_a_segment_no_media_uri_is_served_with_other_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let (http, rtmp) = (free_addr(), free_addr());
    let base = format!("http://{http}/hls/crash");
    let top = "stream_keys = [\"crash\"]\n";
    let mut p = launch(dir.path(), http, rtmp, top).await;
    let mut seen: HashMap<String, Vec<u8>> = HashMap::new();
    let mut checked = 0;
    // URIs answered again after a restart (the clean stop keeps them).
    let mut served_again = 0;
    // Killed after 1, 3 and 4 parts of an open segment, with a clean stop
    // (SIGTERM, which keeps the URIs) in between; then a last check.
    for (round, stop) in [
        Some((1usize, "KILL")),
        Some((3, "TERM")),
        Some((3, "KILL")),
        Some((4, "KILL")),
        None,
    ]
    .into_iter()
    .enumerate()
    {
        let _ff = TestSource::new("320x240", 60.0)
            .gop(30)
            .realtime()
            .publish(&format!("rtmp://{rtmp}/live/crash"));
        let playlist =
            first_media_playlist(&format!("{base}/master.m3u8"), Duration::from_secs(30)).await;
        let current = async || parse_media(&get(&playlist).await.text());
        if round > 0 {
            // The republished stream is past where the crash left it.
            let resumed_at = current().await.last_position().0;
            assert!(
                eventually(Duration::from_secs(20), async || current()
                    .await
                    .last_position()
                    .0
                    >= resumed_at + 2)
                .await
            );
            // Nothing fetched before a crash answers with other bytes.
            for (u, sum) in &seen {
                let r = get(u).await;
                if r.status == 200 {
                    served_again += 1;
                    assert_eq!(
                        &Sha256::digest(&r.body).to_vec(),
                        sum,
                        "round {round}: {u} is served with other bytes after kill -9"
                    );
                }
                checked += 1;
            }
        }
        let Some((open_parts, signal)) = stop else {
            break;
        };
        // A few segments to remember.
        assert!(
            eventually(Duration::from_secs(20), async || current()
                .await
                .last_position()
                .0
                >= 3)
            .await
        );
        let m = current().await;
        record(&media_uris(&playlist, &m), &mut seen).await;
        // Kill once the open segment has the wanted number of parts, after
        // fetching them.
        let mut at_kill = None;
        for _ in 0..200 {
            let m = current().await;
            if m.open_parts.len() == open_parts {
                at_kill = Some(m);
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let m = at_kill.expect("an open segment with the wanted parts");
        record(&media_uris(&playlist, &m), &mut seen).await;
        eprintln!(
            "round {round}: {signal} at {:?} with {} URIs recorded, {checked} checked, {served_again} served again",
            m.last_position(),
            seen.len()
        );
        p.signal(signal);
        p.child.wait().await.unwrap();
        p = launch(dir.path(), http, rtmp, top).await;
    }
    assert!(checked > 100, "{checked} URIs checked");
    // The clean stop kept its segments and init segments (not its parts).
    assert!(
        served_again > 0,
        "{served_again} served again after the clean stop"
    );
}
