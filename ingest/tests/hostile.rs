//! Hostile and broken clients while a real ffmpeg publisher streams: the server
//! stays up, each bad connection is closed (or refused), and the good publish
//! keeps flowing without a gap.

mod common;

use std::time::Duration;

use common::*;
use ingest::amf::{Container, connect_command, nested};
use ingest::chunk::chunked;
use ingest::{IngestConfig, MediaEvent, fingerprint};
use rml_rtmp::sessions::ClientSessionEvent;
use testkit::ffmpeg::TestSource;
use testkit::logs::text as logs;
use testkit::rtmp::{RawClient, chunk_header, closed_within};
use testkit::wait::eventually;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const SHORT: Duration = Duration::from_secs(8);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_clients_do_not_disturb_a_live_publisher() {
    let mut server = start(&["good", "other"], test_config()).await;
    let addr = server.addr;
    let mut ff = TestSource::new("320x240", 14.0)
        .gop(30)
        .bframes(2)
        .realtime()
        .publish(&server.url("good"));
    let publish = server.next_publish(Duration::from_secs(20)).await;
    let good = tokio::spawn(collect(publish, Duration::from_secs(40)));

    // A wrong key: ffmpeg is refused, nothing is published, and the log names the
    // key's fingerprint but never the key.
    let wrong = "wrong-key-Zx81";
    let status = TestSource::new("160x120", 2.0)
        .gop(30)
        .bframes(2)
        .publish(&server.url(wrong))
        .wait()
        .await
        .unwrap();
    assert!(!status.success(), "a wrong key must be refused");
    let logs = logs();
    assert!(
        logs.contains(&fingerprint(wrong)),
        "log carries the fingerprint"
    );
    assert!(!logs.contains(wrong), "log must never carry the key");

    // A second publisher on a live key is refused.
    let mut dup = RawClient::handshake(addr).await;
    let outcome = dup.connect_and_publish("good").await;
    assert!(
        !matches!(outcome, Some(ClientSessionEvent::PublishRequestAccepted)),
        "second publisher must be refused, got {outcome:?}"
    );
    assert!(closed_within(&mut dup.stream, SHORT).await);

    // Garbage instead of a handshake.
    let mut s = TcpStream::connect(addr).await.unwrap();
    let junk: Vec<u8> = (0..10_000u32).map(|i| (i * 7919 % 251) as u8).collect();
    let _ = s.write_all(&junk).await;
    assert!(closed_within(&mut s, SHORT).await, "garbage is closed");

    // A truncated handshake (C0 and half of C1), then silence.
    let mut s = TcpStream::connect(addr).await.unwrap();
    s.write_all(&[3u8; 769]).await.unwrap();
    assert!(
        closed_within(&mut s, SHORT).await,
        "truncated handshake is closed"
    );

    // A silent connection.
    let mut s = TcpStream::connect(addr).await.unwrap();
    assert!(
        closed_within(&mut s, SHORT).await,
        "silent connection is closed"
    );

    // 200 idle connections at once, while the publisher goes on.
    let mut idle = Vec::new();
    for _ in 0..200 {
        idle.push(TcpStream::connect(addr).await.unwrap());
    }
    // Another publisher still gets in while they are open.
    let mut other = RawClient::handshake(addr).await;
    assert!(matches!(
        other.connect_and_publish("other").await,
        Some(ClientSessionEvent::PublishRequestAccepted)
    ));
    let other_publish = server.next_publish(SHORT).await;
    assert_eq!(other_publish.broadcast_id, "other");
    for s in &mut idle {
        assert!(closed_within(s, SHORT).await, "idle connection is closed");
    }
    drop(idle);

    // An HEVC FourCC on the accepted publish: refused by name, connection closed.
    other
        .video(&[0x90, b'h', b'v', b'c', b'1', 0, 0, 0], 0)
        .await;
    assert!(closed_within(&mut other.stream, SHORT).await);
    assert!(logs_contain("HEVC").await);

    // Set Chunk Size 2^31-1 is legal; the 16 MiB message that follows is not.
    let mut c = RawClient::handshake(addr).await;
    let mut wire = chunk_header(2, 1, 4);
    wire.extend_from_slice(&0x7FFF_FFFFu32.to_be_bytes());
    wire.extend(chunk_header(6, 9, 0xFF_FFFF));
    wire.extend_from_slice(&[0x17; 4096]);
    c.stream.write_all(&wire).await.unwrap();
    assert!(
        closed_within(&mut c.stream, SHORT).await,
        "16 MiB message is refused"
    );
    assert!(logs_contain("exceeds the limit").await);

    // An empty @setDataFrame on a publishing connection does no harm.
    let mut c = RawClient::handshake(addr).await;
    assert!(matches!(
        c.connect_and_publish("other").await,
        Some(ClientSessionEvent::PublishRequestAccepted)
    ));
    let empty_publish = server.next_publish(SHORT).await;
    let mut wire = chunk_header(4, 18, 16);
    wire.extend_from_slice(&[0x02, 0, 13]);
    wire.extend_from_slice(b"@setDataFrame");
    c.stream.write_all(&wire).await.unwrap();
    drop(c);
    let events = collect(empty_publish, SHORT).await;
    assert!(
        events
            .iter()
            .all(|(_, e)| matches!(e, MediaEvent::Metadata(_)))
    );

    // A connect whose command object nests 100,000 levels deep, in every
    // container type: once a stack overflow that aborted the process. Each is
    // refused before rml_rtmp decodes it, and the log names the reason.
    for kind in Container::ALL {
        let mut c = RawClient::handshake(addr).await;
        let wire = chunked(3, 20, &connect_command(&nested(kind, 100_000)));
        let _ = c.stream.write_all(&wire).await;
        assert!(
            closed_within(&mut c.stream, SHORT).await,
            "deep {kind:?} is closed"
        );
    }
    assert!(logs_contain("levels deep").await);

    // publish before connect closes the connection.
    let mut c = RawClient::handshake(addr).await;
    let mut payload = vec![0x02, 0, 7];
    payload.extend_from_slice(b"publish");
    payload.extend_from_slice(&[0x00, 0x40, 0x10, 0, 0, 0, 0, 0, 0, 0x05]);
    let mut wire = chunk_header(3, 20, payload.len() as u32);
    wire.extend(payload);
    c.stream.write_all(&wire).await.unwrap();
    assert!(
        closed_within(&mut c.stream, SHORT).await,
        "publish before connect is closed"
    );
    assert!(logs_contain("before connect").await);

    // The good publisher finished normally and never stalled.
    assert!(
        ff.wait().await.unwrap().success(),
        "good ffmpeg publisher failed"
    );
    let events = good.await.unwrap();
    let frames: Vec<_> = events
        .iter()
        .filter(|(_, e)| matches!(e, MediaEvent::Video(_)))
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(
        frames.len(),
        14 * 30,
        "every frame of the good publisher arrived"
    );
    let worst_gap = frames.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    assert!(
        worst_gap < Duration::from_millis(700),
        "good publisher stalled for {worst_gap:?}"
    );
}

async fn logs_contain(needle: &str) -> bool {
    eventually(Duration::from_secs(5), async || logs().contains(needle)).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_are_closed_at_once() {
    let server = start(
        &["k"],
        IngestConfig {
            max_connections: 3,
            ..test_config()
        },
    )
    .await;
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(RawClient::handshake(server.addr).await);
    }
    let mut extra = TcpStream::connect(server.addr).await.unwrap();
    assert!(closed_within(&mut extra, Duration::from_millis(1500)).await);
    assert!(logs_contain("connection limit reached").await);
    drop(held);
}
