//! Webhooks to a local receiver: a broadcast going live, changing its title
//! and ending arrive signed (Standard Webhooks v1, checked here with an HMAC
//! of our own); a failed delivery is retried with the same id; and an
//! endpoint that is down gets retries without holding up the other one.

mod common;

use std::time::{Duration, SystemTime};

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;
use bytes::Bytes;
use common::*;
use hmac::{Hmac, KeyInit, Mac};
use http_body_util::{BodyExt, Full};
use origin::webhooks::config::Endpoint;
use serde_json::Value;
use sha2::Sha256;
use testkit::ffmpeg::TestSource;
use tokio::sync::mpsc;

const SECRET_B64: &str = "c2VjcmV0LWZvci10aGUtd2ViaG9vay10ZXN0";

/// One request the receiver got: its webhook headers and JSON body.
#[derive(Debug)]
struct Delivery {
    id: String,
    timestamp: u64,
    signature: String,
    body: Bytes,
}

/// A receiver on loopback that answers 500 to its first `fail` requests,
/// then 200; every request goes to the returned channel.
async fn receiver(fail: usize) -> (String, mpsc::UnboundedReceiver<Delivery>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hooks", listener.local_addr().unwrap());
    let (tx, rx) = mpsc::unbounded_channel();
    let seen = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    tokio::spawn(async move {
        while let Ok((socket, _)) = listener.accept().await {
            let (tx, seen) = (tx.clone(), seen.clone());
            let service =
                hyper::service::service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                    let (tx, seen) = (tx.clone(), seen.clone());
                    async move {
                        let h = |n: &str| req.headers()[n].to_str().unwrap().to_owned();
                        let (id, timestamp, signature) = (
                            h("webhook-id"),
                            h("webhook-timestamp"),
                            h("webhook-signature"),
                        );
                        let body = req.into_body().collect().await.unwrap().to_bytes();
                        let _ = tx.send(Delivery {
                            id,
                            timestamp: timestamp.parse().unwrap(),
                            signature,
                            body,
                        });
                        let status =
                            if seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst) < fail {
                                500
                            } else {
                                200
                            };
                        Ok::<_, std::convert::Infallible>(
                            hyper::Response::builder()
                                .status(status)
                                .body(Full::new(Bytes::new()))
                                .unwrap(),
                        )
                    }
                });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(hyper_util::rt::TokioIo::new(socket), service),
            );
        }
    });
    (url, rx)
}

/// The next delivery within 20 s, its signature checked and its body read.
async fn next(rx: &mut mpsc::UnboundedReceiver<Delivery>) -> (Delivery, Value) {
    let d = tokio::time::timeout(Duration::from_secs(20), rx.recv())
        .await
        .expect("a webhook within 20 s")
        .unwrap();
    let key = BASE64.decode(SECRET_B64).unwrap();
    let mut mac = <Hmac<Sha256> as KeyInit>::new_from_slice(&key).unwrap();
    mac.update(format!("{}.{}.", d.id, d.timestamp).as_bytes());
    mac.update(&d.body);
    let want = format!("v1,{}", BASE64.encode(mac.finalize().into_bytes()));
    assert_eq!(d.signature, want, "signed over id, timestamp and body");
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    assert!(now.abs_diff(d.timestamp) < 60, "a current timestamp");
    let v = serde_json::from_slice(&d.body).unwrap();
    (d, v)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_arrive_signed_failures_are_retried_and_a_dead_receiver_holds_nothing_up() {
    let (url, mut got) = receiver(1).await;
    // Nothing listens here: every try is refused.
    let dead = format!("http://{}/down", free_addr());
    let server = start_server(&[], |c| {
        c.webhooks.max_attempts = 50;
        for url in [&url, &dead] {
            c.webhooks.endpoints.push(Endpoint {
                url: url.to_string(),
                secret: format!("whsec_{SECRET_B64}"),
            });
        }
    })
    .await;
    let base = server.base();
    let b = create_broadcast(&base, "Before").await;
    let mut publisher = TestSource::new("320x180", 60.0)
        .realtime()
        .publish(&server.rtmp_url(&b.key));

    // Live: answered 500 once, then delivered again with the same id.
    let (first, live) = next(&mut got).await;
    assert_eq!(live["type"], "broadcast.live", "{live}");
    assert_eq!(live["broadcast"]["id"], b.id.as_str());
    assert_eq!(live["broadcast"]["status"], "live");
    assert!(first.id.starts_with("evt_"));
    let (again, _) = next(&mut got).await;
    assert_eq!(again.id, first.id, "a retry keeps the event's id");
    assert_eq!(again.body, first.body);

    // A title change, then the end, in order.
    let url_b = format!("{base}/api/broadcasts/{}", b.id);
    let r = request_json_as("PATCH", &url_b, r#"{"title":"After 후"}"#, Some(&b.token)).await;
    assert_eq!(r.status, 200);
    // A description-only change is no title change.
    let r = request_json_as("PATCH", &url_b, r#"{"description":"d"}"#, Some(&b.token)).await;
    assert_eq!(r.status, 200);
    let (_, title) = next(&mut got).await;
    assert_eq!(title["type"], "broadcast.title_changed");
    assert_eq!(title["broadcast"]["title"], "After 후");
    let r = request_json_as("PATCH", &url_b, r#"{"status":"ended"}"#, Some(&b.token)).await;
    assert_eq!(r.status, 200);
    let (ended, end) = next(&mut got).await;
    assert_eq!(end["type"], "broadcast.ended");
    assert_eq!(end["broadcast"]["status"], "ended");
    assert!(end["broadcast"]["ended_at"].is_string());
    assert_ne!(ended.id, first.id);
    publisher.kill().await.ok();

    // All the while the dead endpoint was being retried (50 tries would
    // take most of an hour): it held up neither the API nor the other one.
    let retried = metric_labeled(
        server.http,
        "origin_webhook_events_total",
        "result=\"retried\"",
    )
    .await;
    assert!(retried >= 2.0, "the dead endpoint was retried: {retried}");
    assert_eq!(
        metric_labeled(
            server.http,
            "origin_webhook_events_total",
            "result=\"delivered\""
        )
        .await,
        3.0
    );
    assert!(
        tokio::time::timeout(Duration::from_millis(500), got.recv())
            .await
            .is_err(),
        "nothing else arrived (no event twice)"
    );
}
