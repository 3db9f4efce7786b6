//! `kill -9` and a restart lose nothing acknowledged: broadcasts and chat
//! history are intact, and broadcasts that were live end after the grace
//! period unless their publisher comes back.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

struct Proc {
    child: tokio::process::Child,
    http: std::net::SocketAddr,
    rtmp: std::net::SocketAddr,
}

async fn launch(
    dir: &std::path::Path,
    http: std::net::SocketAddr,
    rtmp: std::net::SocketAddr,
) -> Proc {
    let config = dir.join("origin.toml");
    std::fs::write(&config, "[hls]\nreconnect_grace_secs = 4\n").unwrap();
    let child = tokio::process::Command::new(env!("CARGO_BIN_EXE_origin"))
        .args([
            "--http-listen",
            &http.to_string(),
            "--rtmp-listen",
            &rtmp.to_string(),
        ])
        .arg("--data-dir")
        .arg(dir.join("data"))
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    assert!(
        eventually(Duration::from_secs(20), async || {
            tokio::net::TcpStream::connect(http).await.is_ok()
        })
        .await
    );
    Proc { child, http, rtmp }
}

async fn post(base: &str, title: &str) -> Value {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let req = hyper::Request::post(format!("{base}/api/broadcasts"))
        .header("content-type", "application/json")
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
    let mut p = launch(dir.path(), http, rtmp).await;
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
    let _ff1 = ffmpeg_publish(&url(&gone), 60, "854x480", true);
    let _ff2 = ffmpeg_publish(&url(&back), 60, "854x480", true);
    for b in [&gone, &back] {
        assert!(
            eventually(Duration::from_secs(15), async || status(&base, &id(b))
                .await
                == "live")
            .await
        );
    }

    // kill -9.
    let pid = p.child.id().unwrap().to_string();
    std::process::Command::new("kill")
        .args(["-9", &pid])
        .status()
        .unwrap();
    p.child.wait().await.unwrap();
    drop(ws);
    drop(_ff1);
    drop(_ff2);

    let p = launch(dir.path(), http, rtmp).await;
    // One publisher comes back at once, as OBS would.
    let mut again = ffmpeg_publish(
        &format!(
            "rtmp://{}/live/{}",
            p.rtmp,
            back["stream_key"].as_str().unwrap()
        ),
        12,
        "854x480",
        true,
    );
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
