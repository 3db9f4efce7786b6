//! Slow, idle, greedy and oversized HTTP clients: silent connections close
//! after the keep-alive timeout and trickled heads after the header timeout
//! while others are served, held requests and WebSockets are not cut, the connection cap refuses with a 503 and recovers, and
//! oversized request heads get 431.

mod common;

use std::time::Duration;

use common::*;
use futures_util::{SinkExt, StreamExt};
use testkit::ffmpeg::TestSource;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

/// Reads what the server sends until it closes; `None` if it is still open at `limit`.
async fn until_closed(s: &mut TcpStream, limit: Duration) -> Option<Vec<u8>> {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    let end = tokio::time::Instant::now() + limit;
    loop {
        match tokio::time::timeout_at(end, s.read(&mut buf)).await {
            Err(_) => return None,
            Ok(Ok(0)) | Ok(Err(_)) => return Some(got),
            Ok(Ok(n)) => got.extend_from_slice(&buf[..n]),
        }
    }
}

fn metric(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0.0)
}

/// Is `s` still open? (Nothing to read within a moment, and no EOF.)
async fn open(s: &mut TcpStream) -> bool {
    let mut buf = [0u8; 64];
    tokio::time::timeout(Duration::from_millis(10), s.read(&mut buf))
        .await
        .is_err()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_and_idle_clients_are_closed_while_others_are_served() {
    let server = start_server(&[], |c| {
        c.http.keep_alive_timeout = Duration::from_secs(2);
        c.http.header_read_timeout = Duration::from_secs(8);
    })
    .await;
    let base = server.base();
    let half = b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ";
    // 150 clients trickle a request head in, a byte every 250 ms...
    let mut trickling = Vec::new();
    for _ in 0..150 {
        let mut s = TcpStream::connect(server.http).await.unwrap();
        s.write_all(half).await.unwrap();
        trickling.push(s);
    }
    let trickle = tokio::spawn(async move {
        // Until past the 8-s head clock (writes to closed ones fail).
        for _ in 0..40 {
            tokio::time::sleep(Duration::from_millis(250)).await;
            for s in &mut trickling {
                let _ = s.write_all(b"x").await;
            }
        }
        trickling
    });
    // ...150 send half a head and fall silent, and one makes a request and idles.
    let mut silent = Vec::new();
    for _ in 0..150 {
        let mut s = TcpStream::connect(server.http).await.unwrap();
        s.write_all(half).await.unwrap();
        silent.push(s);
    }
    let mut kept_alive = TcpStream::connect(server.http).await.unwrap();
    kept_alive
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = [0u8; 1024];
    let n = kept_alive.read(&mut buf).await.unwrap();
    assert!(buf[..n].starts_with(b"HTTP/1.1 200"));
    let started = tokio::time::Instant::now();
    // A chat session opened now idles past both timeouts and still works.
    let created = request_json_as(
        "POST",
        &format!("{base}/api/broadcasts"),
        r#"{"title":"t"}"#,
        Some(ADMIN_TOKEN),
    )
    .await;
    assert_eq!(created.status, 201, "{}", created.text());
    let id = serde_json::from_slice::<serde_json::Value>(&created.body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let ws_base = base.replace("http://", "ws://");
    let (mut ws, _) = tokio_tungstenite::connect_async(format!(
        "{ws_base}/api/broadcasts/{id}/chat?nick=a&session=s1"
    ))
    .await
    .unwrap();
    // Meanwhile a normal client is served at once, again and again.
    while started.elapsed() < Duration::from_millis(1500) {
        let r = get(&format!("{base}/healthz")).await;
        assert_eq!(r.status, 200);
        assert!(r.elapsed < Duration::from_secs(1), "{:?}", r.elapsed);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The silent ones and the idle keep-alive one go after the 2-s keep-alive
    // timeout, while the trickling ones are still open.
    for (i, s) in silent.iter_mut().chain([&mut kept_alive]).enumerate() {
        let left = Duration::from_secs(6).saturating_sub(started.elapsed());
        assert!(
            until_closed(s, left).await.is_some(),
            "idle connection {i} still open {:?} after it fell silent",
            started.elapsed()
        );
    }
    // By then no trickled head has been cut: they are on the 8-s head clock.
    let m = get(&format!("{base}/metrics")).await.text();
    assert!(metric(&m, "origin_http_idle_closed_total") >= 151.0, "{m}");
    assert_eq!(metric(&m, "origin_http_header_timeouts_total"), 0.0, "{m}");
    // The trickling ones are closed by it in the end.
    let trickling = trickle.await.unwrap();
    let mut still_open = 0;
    for mut s in trickling {
        if open(&mut s).await {
            still_open += 1;
        }
    }
    assert_eq!(still_open, 0, "trickled heads are closed");
    let m = get(&format!("{base}/metrics")).await.text();
    assert!(
        metric(&m, "origin_http_header_timeouts_total") >= 150.0,
        "{m}"
    );
    // The WebSocket, idle for longer than both timeouts, still works.
    assert!(started.elapsed() > Duration::from_secs(8));
    ws.send(Message::text(r#"{"type":"message","text":"still open"}"#))
        .await
        .unwrap();
    let mut echoed = false;
    for _ in 0..20 {
        let Some(Ok(Message::Text(t))) = ws.next().await else {
            break;
        };
        if t.contains("still open") {
            echoed = true;
            break;
        }
    }
    assert!(echoed, "the chat session was not cut by the timeouts");
}

/// The header and keep-alive timeouts cover waiting for a request only: a
/// blocking playlist request held for longer is answered, not cut.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_held_request_outlives_the_header_timeout() {
    let server = start_server(&["held"], |c| {
        c.http.header_read_timeout = Duration::from_secs(1);
        c.http.keep_alive_timeout = Duration::from_secs(1);
    })
    .await;
    let _ff = TestSource::new("320x240", 20.0)
        .gop(30)
        .realtime()
        .publish(&server.rtmp_url("held"));
    let master = format!("{}/hls/held/master.m3u8", server.base());
    let playlist = first_media_playlist(&master, Duration::from_secs(20)).await;
    let (msn, _) = parse_media(&get(&playlist).await.text()).last_position();
    // The fifth part two segments ahead is at least 1.8 s away: held until
    // it appears (200) or the 3 x TD hold expires (503); either way well past
    // the 1-s head timeout.
    let r = get(&format!("{playlist}?_HLS_msn={}&_HLS_part=4", msn + 2)).await;
    assert!(
        r.status == 200 || r.status == 503,
        "{} {}",
        r.status,
        r.text()
    );
    assert!(r.elapsed > Duration::from_millis(1500), "{:?}", r.elapsed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_connection_cap_refuses_with_503_and_recovers() {
    let server = start_server(&[], |c| {
        c.http.max_connections = 40;
    })
    .await;
    let base = server.base();
    // A WebSocket keeps its place after the upgrade: it and 39 idle
    // connections fill the cap.
    let created = request_json_as(
        "POST",
        &format!("{base}/api/broadcasts"),
        r#"{"title":"t"}"#,
        Some(ADMIN_TOKEN),
    )
    .await;
    let id = serde_json::from_slice::<serde_json::Value>(&created.body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let (ws, _) = tokio_tungstenite::connect_async(format!(
        "{}/api/broadcasts/{id}/chat?nick=a&session=s1",
        base.replace("http://", "ws://")
    ))
    .await
    .unwrap();
    let mut held = Vec::new();
    for _ in 0..39 {
        held.push(TcpStream::connect(server.http).await.unwrap());
    }
    // The accept loop takes them in order, so the next one is over the cap.
    let mut extra = TcpStream::connect(server.http).await.unwrap();
    let answer = until_closed(&mut extra, Duration::from_secs(5))
        .await
        .expect("the connection over the cap is closed at once");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 503"), "{text}");
    assert!(text.contains(r#"{"error":"too many connections"#), "{text}");
    drop(held);
    drop(ws);
    // Places come back as connections close (until then a request may be
    // refused, or reset if it was still being sent).
    let metrics = format!("{base}/metrics");
    let served = async || {
        let req = hyper::Request::get(&metrics)
            .body(http_body_util::Empty::new())
            .unwrap();
        let r = tokio::time::timeout(Duration::from_secs(2), client().request(req)).await;
        matches!(r, Ok(Ok(resp)) if resp.status() == 200)
    };
    assert!(eventually(Duration::from_secs(5), served).await);
    let m = get(&metrics).await.text();
    assert!(
        metric(&m, "origin_http_connections_refused_total") >= 1.0,
        "{m}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_heads_over_the_limit_get_431() {
    let server = start_server(&[], |_| {}).await;
    let url = format!("{}/healthz", server.base());
    let fits = "x".repeat(15 << 10);
    assert_eq!(request("GET", &url, &[("x-big", &fits)]).await.status, 200);
    let mut s = TcpStream::connect(server.http).await.unwrap();
    let big = "x".repeat(20 << 10);
    let _ = s
        .write_all(format!("GET /healthz HTTP/1.1\r\nhost: x\r\nx-big: {big}\r\n\r\n").as_bytes())
        .await;
    let answer = until_closed(&mut s, Duration::from_secs(5)).await.unwrap();
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 431"), "{text}");
    // The server goes on.
    assert_eq!(get(&url).await.status, 200);
}
