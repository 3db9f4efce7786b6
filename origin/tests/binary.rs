//! The real server binary: configured through the environment, accepts an
//! ffmpeg publisher, survives hostile RTMP connections while one streams,
//! refuses a wrong key, and exits promptly on SIGTERM.

mod common;

use std::time::Duration;

use common::*;
use testkit::ffmpeg::TestSource;
use testkit::rtmp::handshake;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_takes_a_publisher_and_stops_on_sigterm() {
    let (rtmp, http) = (free_addr(), free_addr());
    let data = tempfile::tempdir().unwrap();
    let mut server = Binary::start(rtmp, http, |c| {
        c.env("ORIGIN_DATA_DIR", data.path())
            .env("ORIGIN_STREAM_KEYS", "alpha,beta");
    })
    .await;
    assert!(server.wait_for_log("rtmp ingest listening").await);
    // The soft open-file limit was raised, and said so.
    assert!(server.wait_for_log("open-file limit").await);

    // While a publish is live, connections whose `connect` nests values
    // 100,000 deep (every container type; once a process-killing stack
    // overflow) are closed, and the stream keeps advancing.
    let base = format!("http://{http}");
    let mut live = TestSource::new("320x240", 14.0)
        .gop(30)
        .realtime()
        .publish(&format!("rtmp://{rtmp}/live/alpha"));
    let media = first_media_playlist(
        &format!("{base}/hls/alpha/master.m3u8"),
        Duration::from_secs(20),
    )
    .await;
    let position = async || parse_media(&get(&media).await.text()).last_position();
    let before = position().await;
    for kind in ingest::amf::Container::ALL {
        let mut s = handshake(rtmp).await;
        let value = ingest::amf::nested(kind, 100_000);
        let wire = ingest::chunk::chunked(3, 20, &ingest::amf::connect_command(&value));
        let _ = s.write_all(&wire).await;
        let mut sink = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut sink)).await;
        assert!(closed.is_ok(), "deep {kind:?} connection is closed");
    }
    assert!(server.wait_for_log("levels deep").await);
    assert_eq!(get(&format!("{base}/healthz")).await.status, 200);
    assert!(
        eventually(Duration::from_secs(10), async || position().await.0
            >= before.0 + 3)
        .await,
        "the live stream keeps advancing"
    );
    live.kill().await.ok();

    let ok = TestSource::new("320x240", 2.0)
        .gop(30)
        .publish(&format!("rtmp://{rtmp}/live/beta"))
        .wait()
        .await
        .unwrap();
    assert!(ok.success());
    assert!(server.wait_for_log("publish accepted").await);
    let refused = TestSource::new("320x240", 1.0)
        .gop(30)
        .publish(&format!("rtmp://{rtmp}/live/gamma"))
        .wait()
        .await
        .unwrap();
    assert!(!refused.success());
    assert!(server.wait_for_log("publish rejected").await);

    server.stop(Duration::from_secs(10)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_generated_admin_token_is_logged_once_kept_hashed_and_works_after_a_restart() {
    let data = tempfile::tempdir().unwrap();
    let start = async || {
        Binary::start(free_addr(), free_addr(), |c| {
            c.env("ORIGIN_DATA_DIR", data.path())
                .env_remove("ORIGIN_ADMIN_TOKEN");
        })
        .await
    };
    let mut first = start().await;
    assert!(first.wait_for_log("generated the admin token adm_").await);
    let log = first.log();
    let at = log.find("admin token adm_").unwrap() + "admin token ".len();
    let token: String = log[at..]
        .chars()
        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
        .collect();
    assert_eq!(token.len(), 4 + 48, "{token}");
    let create = |base: String, token: String| async move {
        request_json_as(
            "POST",
            &format!("{base}/api/broadcasts"),
            r#"{"title":"t"}"#,
            Some(&token),
        )
        .await
        .status
    };
    assert_eq!(create(first.base(), token.clone()).await, 201);
    first.stop(Duration::from_secs(10)).await;
    assert_eq!(
        testkit::files::containing(data.path(), token.as_bytes()),
        Vec::<std::path::PathBuf>::new(),
        "the token is not stored"
    );
    let mut second = start().await;
    assert!(
        second
            .wait_for_log("admin token: the one generated at the first start")
            .await
    );
    assert!(!second.log().contains("admin token adm_"), "shown once");
    assert_eq!(create(second.base(), token).await, 201, "and kept");
    assert_eq!(create(second.base(), "adm_0".repeat(10)).await, 403);
    second.stop(Duration::from_secs(10)).await;
}
