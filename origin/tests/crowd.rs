//! A crowd in one chat room against the real server: 2,000 sessions join,
//! the count is exact (from the API and as pushed to each), one message
//! reaches all of them, and the count returns to 0 when they leave; a room
//! past its limit closes the extra sessions with code 1013 and a reason.
//! Timing targets live in `scripts/bench-chat.sh`, not here.

mod common;

use std::time::Duration;

use common::*;
use futures_util::StreamExt;
use loadgen::chat::{ChatLoadConfig, run};
use serde_json::Value;

async fn broadcast(base: &str) -> String {
    let r = request_json_as(
        "POST",
        &format!("{base}/api/broadcasts"),
        r#"{"title":"Crowd"}"#,
        Some(ADMIN_TOKEN),
    )
    .await;
    assert_eq!(r.status, 201);
    let v: Value = serde_json::from_slice(&r.body).unwrap();
    v["id"].as_str().unwrap().to_owned()
}

fn crowd(base: &str, id: &str, sessions: usize) -> ChatLoadConfig {
    ChatLoadConfig {
        base: base.to_owned(),
        others: Vec::new(),
        broadcast: id.to_owned(),
        sessions,
        ramp: Duration::from_secs(4),
        timeout: Duration::from_secs(30),
        server_pid: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_thousand_sessions_see_an_exact_count_and_every_message() {
    let server = start_server(&[], |_| {}).await;
    let id = broadcast(&server.base()).await;
    let r = run(crowd(&server.base(), &id, 2000)).await;
    eprintln!("{r:?}");
    assert_eq!((r.joined, r.refused, r.closed_by_server), (2000, 0, 0));
    assert!(r.count_api_ms.is_some(), "the API counted exactly 2,000");
    assert_eq!(r.count_pushed_exact, 2000, "every session was pushed 2,000");
    assert_eq!(r.fanout_received, 2000, "the message reached everyone");
    assert_eq!(r.count_after_leave, Some(0));
    // The peak is kept, whatever the store has been told so far.
    let v: Value = serde_json::from_slice(
        &get(&format!("{}/api/broadcasts/{id}", server.base()))
            .await
            .body,
    )
    .unwrap();
    assert_eq!(v["peak_viewer_count"], 2000);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_room_closes_the_extra_sessions_with_a_reason() {
    let server = start_server(&[], |c| c.chat.max_sessions_per_room = 50).await;
    let id = broadcast(&server.base()).await;
    let r = run(crowd(&server.base(), &id, 60)).await;
    assert_eq!((r.joined, r.refused), (50, 10), "{r:?}");
    assert_eq!(r.fanout_received, 50);
    // What the 51st is told.
    let full: Vec<_> = futures_util::future::join_all((0..51).map(|i| {
        let url = format!(
            "{}/api/broadcasts/{id}/chat?nick=n{i}&session=p{i}",
            server.base().replace("http", "ws")
        );
        async move { tokio_tungstenite::connect_async(url).await.unwrap().0 }
    }))
    .await;
    let mut closed = None;
    for mut ws in full {
        let first = ws.next().await;
        if let Some(Ok(tokio_tungstenite::tungstenite::Message::Close(Some(f)))) = first {
            closed = Some(f);
        }
    }
    let f = closed.expect("one of 51 is refused");
    assert_eq!(u16::from(f.code), 1013);
    assert!(f.reason.contains("full"), "{}", f.reason);
}
