//! The broadcast and chat API against the real server and a real sled in a
//! temp dir: lifecycle with an ffmpeg publisher, search, key secrecy, auth,
//! chat fan-out, history, limits, hostile input, viewer counts.

mod common;

use std::time::Duration;

use common::chat::*;
use common::*;
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use testkit::ffmpeg::TestSource;
use tokio_tungstenite::tungstenite::Message;

async fn call(method: &str, url: &str, body: Option<Value>, token: Option<&str>) -> (u16, Value) {
    let ct = body.as_ref().map(|_| "application/json");
    let body = body.map(|b| b.to_string()).unwrap_or_default().into_bytes();
    raw(method, url, ct, body, token).await
}

/// A request with any content type and body; the answer's JSON (Null if none).
async fn raw(
    method: &str,
    url: &str,
    ct: Option<&str>,
    body: Vec<u8>,
    token: Option<&str>,
) -> (u16, Value) {
    let client = hyper_util::client::legacy::Client::builder(hyper_util::rt::TokioExecutor::new())
        .build_http::<http_body_util::Full<bytes::Bytes>>();
    let mut req = hyper::Request::builder().method(method).uri(url);
    if let Some(ct) = ct {
        req = req.header("content-type", ct);
    }
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let resp = client
        .request(req.body(http_body_util::Full::from(body)).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let bytes = http_body_util::BodyExt::collect(resp.into_body())
        .await
        .unwrap()
        .to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn create(base: &str, title: &str, description: &str) -> Value {
    let (s, v) = call(
        "POST",
        &format!("{base}/api/broadcasts"),
        Some(json!({"title": title, "description": description})),
        Some(ADMIN_TOKEN),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    v
}

async fn a_broadcast_goes_ready_live_ended_with_a_real_publisher(db: Option<&str>) {
    let server = start_server_on(db, &[], |c| c.hls.reconnect_grace = Duration::from_secs(2)).await;
    let base = server.base();
    let b = create(&base, "Lifecycle", "").await;
    let id = b["id"].as_str().unwrap().to_string();
    assert_eq!(b["status"], "ready");
    assert_eq!(b["playback_url"], format!("/hls/{id}/master.m3u8"));
    assert!(b["rtmp_url"].as_str().unwrap().ends_with("/live"));
    let key = b["stream_key"].as_str().unwrap();

    // A wrong key is refused; the right one goes live.
    assert!(
        !TestSource::new("320x240", 1.0)
            .gop(30)
            .publish(&server.rtmp_url("live_wrong"))
            .wait()
            .await
            .unwrap()
            .success()
    );
    let mut ff = TestSource::new("854x480", 6.0)
        .gop(30)
        .realtime()
        .publish(&server.rtmp_url(key));
    assert!(
        eventually(Duration::from_secs(15), async || call(
            "GET",
            &format!("{base}/api/broadcasts/{id}"),
            None,
            None
        )
        .await
        .1["status"]
            == "live")
        .await,
        "status becomes live when the publisher connects"
    );
    let (_, v) = call("GET", &format!("{base}/api/broadcasts/{id}"), None, None).await;
    assert!(v["started_at"].is_string());
    assert!(
        eventually(Duration::from_secs(10), async || get(&format!(
            "{base}{}",
            b["thumbnail_url"].as_str().unwrap()
        ))
        .await
        .status
            == 200)
        .await,
        "a thumbnail appears"
    );
    assert!(ff.wait().await.unwrap().success());
    assert!(
        eventually(Duration::from_secs(10), async || call(
            "GET",
            &format!("{base}/api/broadcasts/{id}"),
            None,
            None
        )
        .await
        .1["status"]
            == "ended")
        .await,
        "ended after the publisher stops and the grace period passes"
    );
    let (_, v) = call("GET", &format!("{base}/api/broadcasts/{id}"), None, None).await;
    assert!(v["ended_at"].is_string());
    // An ended broadcast cannot be published to again.
    assert!(
        !TestSource::new("320x240", 1.0)
            .gop(30)
            .publish(&server.rtmp_url(key))
            .wait()
            .await
            .unwrap()
            .success()
    );
}

async fn the_owner_ends_a_live_broadcast_and_the_publisher_is_disconnected(db: Option<&str>) {
    let server = start_server_on(db, &[], |_| {}).await;
    let base = server.base();
    let b = create(&base, "Short", "").await;
    let (id, key, token) = (
        b["id"].as_str().unwrap(),
        b["stream_key"].as_str().unwrap(),
        b["owner_token"].as_str().unwrap(),
    );
    let mut ff = TestSource::new("854x480", 60.0)
        .gop(30)
        .realtime()
        .publish(&server.rtmp_url(key));
    assert!(
        eventually(Duration::from_secs(15), async || get(&format!(
            "{base}/hls/{id}/master.m3u8"
        ))
        .await
        .status
            == 200)
        .await
    );
    let (s, v) = call(
        "PATCH",
        &format!("{base}/api/broadcasts/{id}"),
        Some(json!({"status": "ended"})),
        Some(token),
    )
    .await;
    assert_eq!((s, v["status"].as_str()), (200, Some("ended")));
    let exited = tokio::time::timeout(Duration::from_secs(10), ff.wait()).await;
    assert!(exited.is_ok(), "the publisher was disconnected");
    let m = parse_media(&get(&format!("{base}/hls/{id}/480p.m3u8")).await.text());
    assert!(m.ended, "the playlist has ENDLIST");
}

async fn search_pages_and_orders_in_any_script(db: Option<&str>) {
    let server = start_server_on(db, &[], |_| {}).await;
    let base = server.base();
    create(&base, "오늘의 코딩 방송", "러스트로 스트리밍 서버 만들기").await;
    create(&base, "Cooking with Rust", "pasta").await;
    create(&base, "rust CODING night", "").await;
    let q = |s: &str| format!("{base}/api/broadcasts?q={s}");
    let titles = |v: &Value| -> Vec<String> {
        v["broadcasts"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["title"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        titles(&call("GET", &q("%EC%BD%94%EB%94%A9"), None, None).await.1),
        ["오늘의 코딩 방송"]
    );
    assert_eq!(
        titles(
            &call("GET", &q("%EB%9F%AC%EC%8A%A4%ED%8A%B8"), None, None)
                .await
                .1
        ),
        ["오늘의 코딩 방송"],
        "description matches"
    );
    assert_eq!(
        titles(&call("GET", &q("coding"), None, None).await.1),
        ["rust CODING night"]
    );
    let rust = titles(&call("GET", &q("RUST"), None, None).await.1);
    assert_eq!(
        rust,
        ["rust CODING night", "Cooking with Rust"],
        "newest first"
    );
    // Pages of one, chained by cursor, cover everything once.
    let mut seen = vec![];
    let mut url = format!("{base}/api/broadcasts?limit=1");
    for _ in 0..5 {
        let (_, v) = call("GET", &url, None, None).await;
        seen.extend(titles(&v));
        match v["next_cursor"].as_str() {
            Some(c) => url = format!("{base}/api/broadcasts?limit=1&cursor={c}"),
            None => break,
        }
    }
    assert_eq!(seen.len(), 3);
    for bad in ["limit=0", "limit=101", "status=bogus", "cursor=zz"] {
        let (s, v) = call("GET", &format!("{base}/api/broadcasts?{bad}"), None, None).await;
        assert_eq!(s, 400, "{bad}");
        assert!(v["error"].is_string());
    }
    let (s, v) = call(
        "GET",
        &format!("{base}/api/broadcasts?status=live"),
        None,
        None,
    )
    .await;
    assert_eq!((s, v["broadcasts"].as_array().unwrap().len()), (200, 0));
}

async fn the_stream_key_is_secret_and_owner_actions_are_authorized(db: Option<&str>) {
    let server = start_server_on(db, &[], |_| {}).await;
    let base = server.base();
    let b = create(&base, "Secret", "").await;
    let (id, key, token) = (
        b["id"].as_str().unwrap(),
        b["stream_key"].as_str().unwrap(),
        b["owner_token"].as_str().unwrap(),
    );
    let url = format!("{base}/api/broadcasts/{id}");
    let (_, list) = call("GET", &format!("{base}/api/broadcasts"), None, None).await;
    let (_, read) = call("GET", &url, None, None).await;
    for v in [&list, &read] {
        assert!(
            !v.to_string().contains(key),
            "no key in lists or public reads"
        );
        assert!(!v.to_string().contains(token), "no owner token either");
    }
    let (s, owner_read) = call("GET", &url, None, Some(token)).await;
    assert_eq!(
        (s, owner_read["stream_key"].as_str()),
        (200, Some(key)),
        "the owner sees the key"
    );
    assert_eq!(call("GET", &url, None, Some("not-the-token")).await.0, 403);
    assert_eq!(
        call("PATCH", &url, Some(json!({"title": "x"})), None)
            .await
            .0,
        401
    );
    assert_eq!(
        call("PATCH", &url, Some(json!({"title": "x"})), Some("wrong"))
            .await
            .0,
        403
    );
    let (s, v) = call(
        "PATCH",
        &url,
        Some(json!({"title": "  New title  "})),
        Some(token),
    )
    .await;
    assert_eq!((s, v["title"].as_str()), (200, Some("New title")));
    assert_eq!(
        call("PATCH", &url, Some(json!({"status": "live"})), Some(token))
            .await
            .0,
        400
    );
    // Rotation: the old key stops working.
    let (s, v) = call("POST", &format!("{url}/rotate-key"), None, Some(token)).await;
    assert_eq!(s, 200);
    assert_ne!(v["stream_key"].as_str().unwrap(), key);
    assert!(
        !TestSource::new("320x240", 1.0)
            .gop(30)
            .publish(&server.rtmp_url(key))
            .wait()
            .await
            .unwrap()
            .success()
    );
    assert_eq!(
        call("POST", &format!("{url}/rotate-key"), None, Some("wrong"))
            .await
            .0,
        403
    );
    assert_eq!(
        call("GET", &format!("{base}/api/broadcasts/nope"), None, None)
            .await
            .0,
        404
    );
    let openapi = get(&format!("{base}/api/openapi.json")).await;
    assert_eq!(openapi.status, 200);
    assert!(
        serde_json::from_slice::<Value>(&openapi.body).unwrap()["paths"]["/api/broadcasts"]
            .is_object()
    );
}

async fn bad_bodies_get_clear_errors_and_change_nothing(db: Option<&str>) {
    let server = start_server_on(db, &[], |_| {}).await;
    let base = server.base();
    let b = create(&base, "Keep", "me").await;
    let url = format!("{base}/api/broadcasts");
    for (ct, body, want) in [
        ("application/json", b"not json".to_vec(), 400),
        ("application/json", br#"{"title": 5}"#.to_vec(), 400),
        (
            "application/json",
            br#"{"description": "no title"}"#.to_vec(),
            400,
        ),
        (
            "application/json",
            br#"{"title": "x", "extra": 1}"#.to_vec(),
            400,
        ),
        (
            "application/json",
            format!(r#"{{"title": "{}"}}"#, "t".repeat(141)).into_bytes(),
            400,
        ),
        ("application/json", vec![b' '; 70 * 1024], 413),
        // Nested 30,000 deep: serde_json stops at 128 levels, no stack overflow.
        ("application/json", "[".repeat(30_000).into_bytes(), 400),
        (
            "application/json",
            format!(
                r#"{{"title": {}1{}}}"#,
                "[".repeat(30_000),
                "]".repeat(30_000)
            )
            .into_bytes(),
            400,
        ),
        ("text/plain", br#"{"title": "x"}"#.to_vec(), 415),
    ] {
        let (s, v) = raw("POST", &url, Some(ct), body, None).await;
        assert_eq!(s, want, "{v}");
        assert!(v["error"].is_string(), "JSON error body");
    }
    let (_, list) = call("GET", &url, None, None).await;
    assert_eq!(
        list["broadcasts"].as_array().unwrap().len(),
        1,
        "nothing was created"
    );
    assert_eq!(list["broadcasts"][0]["title"], b["title"]);
}

/// A client that sends a whole 4 MiB body before reading (as many HTTP
/// clients do) finishes sending and reads the 413 and its JSON, instead of a
/// broken pipe: the server lingers on the connection it closes.
async fn a_refused_body_still_lets_the_client_read_the_413(db: Option<&str>) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let server = start_server_on(db, &[], |_| {}).await;
    for round in 0..3 {
        let s = tokio::net::TcpStream::connect(server.http).await.unwrap();
        let (mut rd, mut wr) = s.into_split();
        let body = vec![b' '; 4 << 20];
        let head = format!(
            "POST /api/broadcasts HTTP/1.1\r\nhost: x\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        let writer = tokio::spawn(async move {
            wr.write_all(head.as_bytes()).await?;
            wr.write_all(&body).await
        });
        let mut answer = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(10), rd.read_to_end(&mut answer)).await;
        let sent = writer.await.unwrap();
        assert!(
            sent.is_ok(),
            "round {round}: sending the body failed: {sent:?}"
        );
        let text = String::from_utf8_lossy(&answer);
        assert!(read.is_ok(), "round {round}: closed in time");
        assert!(
            text.starts_with("HTTP/1.1 413"),
            "round {round}: {read:?} {text:?}"
        );
        assert!(
            text.contains(r#"{"error":"request body exceeds"#),
            "round {round}: {text}"
        );
    }
}

async fn chat_reaches_every_client_with_history_counts_and_limits(db: Option<&str>) {
    let server = start_server_on(db, &[], |_| {}).await;
    let base = server.base();
    let b = create(&base, "Chatty", "").await;
    let (id, token) = (
        b["id"].as_str().unwrap(),
        b["owner_token"].as_str().unwrap(),
    );

    // History on join.
    let mut first = chat(&base, id, "early", "s-early", None).await;
    let h = next_of(&mut first, "history").await;
    assert_eq!(h["messages"].as_array().unwrap().len(), 0);
    say(&mut first, "hello <script>alert(1)</script>").await;
    let m = next_of(&mut first, "message").await;
    assert_eq!(
        m["text"], "hello <script>alert(1)</script>",
        "stored and sent verbatim, as text"
    );
    assert_eq!(
        (m["user"].as_str(), m["streamer"].as_bool()),
        (Some("early"), Some(false))
    );

    // 100 clients; every message reaches every one of them.
    let mut clients = vec![];
    for i in 0..100 {
        let mut ws = chat(&base, id, &format!("viewer{i}"), &format!("s{i}"), None).await;
        let h = next_of(&mut ws, "history").await;
        assert_eq!(
            h["messages"][0]["text"], "hello <script>alert(1)</script>",
            "history on join"
        );
        clients.push(ws);
    }
    assert!(
        eventually(Duration::from_secs(5), async || call(
            "GET",
            &format!("{base}/api/broadcasts/{id}"),
            None,
            None
        )
        .await
        .1["viewer_count"]
            == 101)
        .await,
        "101 distinct sessions are watching"
    );
    let mut streamer = chat(&base, id, "host", "s-host", Some(token)).await;
    // The streamer is not counted as a viewer.
    assert_eq!(
        call("GET", &format!("{base}/api/broadcasts/{id}"), None, None)
            .await
            .1["viewer_count"],
        101
    );
    for i in 0..5 {
        say(&mut streamer, &format!("msg {i}")).await;
    }
    for ws in clients.iter_mut() {
        for i in 0..5 {
            let m = next_of(ws, "message").await;
            assert_eq!(m["text"], format!("msg {i}"));
            assert_eq!(m["streamer"], true, "the owner's messages are marked");
        }
    }
    // Viewer counts fall as clients leave.
    for ws in clients.drain(..50) {
        drop(ws);
    }
    assert!(
        eventually(Duration::from_secs(5), async || call(
            "GET",
            &format!("{base}/api/broadcasts/{id}"),
            None,
            None
        )
        .await
        .1["viewer_count"]
            == 51)
        .await,
        "the count falls when viewers leave"
    );
    let v = next_of(&mut first, "viewers").await;
    assert!(
        v["count"].as_u64().unwrap() <= 102,
        "counts are pushed to viewers: {v}"
    );
    let (_, list) = call("GET", &format!("{base}/api/broadcasts"), None, None).await;
    assert_eq!(
        list["broadcasts"][0]["viewer_count"], 51,
        "lists carry the count"
    );
    assert!(
        list["broadcasts"][0]["peak_viewer_count"].as_u64().unwrap() >= 101,
        "the peak is kept"
    );

    // Limits: a flood gets error frames after the burst; oversized and empty
    // messages are refused; an oversized frame or invalid UTF-8 closes the connection.
    let mut flood = chat(&base, id, "flood", "s-flood", None).await;
    for i in 0..10 {
        say(&mut flood, &format!("spam {i}")).await;
    }
    let err = next_of(&mut flood, "error").await;
    assert!(
        err["error"].as_str().unwrap().contains("slow down"),
        "{err}"
    );
    let mut w = chat(&base, id, "w", "s-w", None).await;
    say(&mut w, &"x".repeat(501)).await;
    assert!(
        next_of(&mut w, "error").await["error"]
            .as_str()
            .unwrap()
            .contains("longer")
    );
    say(&mut w, "   ").await;
    assert!(
        next_of(&mut w, "error").await["error"]
            .as_str()
            .unwrap()
            .contains("empty")
    );
    w.send(Message::text(
        "{\"type\":\"message\",\"text\":\"".to_string() + &"y".repeat(9000) + "\"}",
    ))
    .await
    .unwrap();
    assert!(
        closes(&mut w).await,
        "an oversized frame closes the connection"
    );
    let mut bad = chat(&base, id, "u8", "s-u8", None).await;
    // A text frame (FIN, opcode 1) with an invalid UTF-8 payload, masked as a client must.
    let payload = [0xff, 0xfe, 0xfd];
    let mask = [1u8, 2, 3, 4];
    let mut frame = vec![0x81, 0x80 | payload.len() as u8];
    frame.extend_from_slice(&mask);
    frame.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    use tokio::io::AsyncWriteExt;
    if let tokio_tungstenite::MaybeTlsStream::Plain(s) = bad.get_mut() {
        s.write_all(&frame).await.unwrap();
    }
    assert!(
        closes(&mut bad).await,
        "invalid UTF-8 closes the connection"
    );
    // Bad nicknames and unknown rooms are refused before the upgrade.
    let ws_base = base.replace("http://", "ws://");
    assert!(
        tokio_tungstenite::connect_async(format!(
            "{ws_base}/api/broadcasts/{id}/chat?nick=%3Cb%3E&session=x"
        ))
        .await
        .is_err()
    );
    assert!(
        tokio_tungstenite::connect_async(format!(
            "{ws_base}/api/broadcasts/nope/chat?nick=a&session=x"
        ))
        .await
        .is_err()
    );
    assert!(
        tokio_tungstenite::connect_async(format!(
            "{ws_base}/api/broadcasts/{id}/chat?nick=a&session=x&token=bad"
        ))
        .await
        .is_err()
    );
    // Frames nested 4,000 deep: where a field is typed, a clear error; where
    // it is unknown, skipped by serde_json's iterative skipper. Neither
    // recurses (serde_json also stops any recursion at 128 levels).
    let (open, close) = ("[".repeat(4000), "]".repeat(4000));
    first
        .send(Message::text(format!(
            r#"{{"type":"message","text":{open}"x"{close}}}"#
        )))
        .await
        .unwrap();
    let err = next_of(&mut first, "error").await;
    assert!(
        err["error"]
            .as_str()
            .unwrap()
            .contains("not a chat message"),
        "{err}"
    );
    first
        .send(Message::text(format!(
            r#"{{"type":"message","text":"deep but fine","x":{open}1{close}}}"#
        )))
        .await
        .unwrap();
    // (Messages of other senders may come first: they go out in batches.)
    assert!(message_arrives(&mut first, "deep but fine").await);
    // The server is still fine.
    say(&mut first, "still here").await;
    assert!(
        message_arrives(&mut first, "still here").await,
        "the room still works"
    );
}

// Every test runs against sled (the default) and a real PostgreSQL.
on_both_stores!(
    a_broadcast_goes_ready_live_ended_with_a_real_publisher,
    the_owner_ends_a_live_broadcast_and_the_publisher_is_disconnected,
    search_pages_and_orders_in_any_script,
    the_stream_key_is_secret_and_owner_actions_are_authorized,
    bad_bodies_get_clear_errors_and_change_nothing,
    a_refused_body_still_lets_the_client_read_the_413,
    chat_reaches_every_client_with_history_counts_and_limits,
);

async fn closes(ws: &mut Ws) -> bool {
    let end = tokio::time::Instant::now() + Duration::from_secs(5);
    loop {
        match tokio::time::timeout_at(end, ws.next()).await {
            Err(_) => return false,
            Ok(None) | Ok(Some(Err(_))) | Ok(Some(Ok(Message::Close(_)))) => return true,
            Ok(Some(Ok(_))) => {}
        }
    }
}
