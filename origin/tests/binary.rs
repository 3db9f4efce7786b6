//! The real server binary: configured through the environment, accepts an
//! ffmpeg publisher, survives hostile RTMP connections while one streams,
//! refuses a wrong key, and exits promptly on SIGTERM.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;
use rml_rtmp::handshake::{Handshake, HandshakeProcessResult, PeerType};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

/// A TCP connection to `addr` that has completed the RTMP handshake.
async fn rtmp_handshake(addr: std::net::SocketAddr) -> TcpStream {
    let mut s = TcpStream::connect(addr).await.unwrap();
    let mut hs = Handshake::new(PeerType::Client);
    s.write_all(&hs.generate_outbound_p0_and_p1().unwrap())
        .await
        .unwrap();
    let mut buf = [0u8; 4096];
    loop {
        let n = s.read(&mut buf).await.unwrap();
        assert!(n > 0, "closed during the handshake");
        match hs.process_bytes(&buf[..n]).unwrap() {
            HandshakeProcessResult::InProgress { response_bytes } => {
                s.write_all(&response_bytes).await.unwrap()
            }
            HandshakeProcessResult::Completed { response_bytes, .. } => {
                s.write_all(&response_bytes).await.unwrap();
                return s;
            }
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_takes_a_publisher_and_stops_on_sigterm() {
    let (rtmp, http) = (free_addr(), free_addr());
    let data = tempfile::tempdir().unwrap();
    let mut server = tokio::process::Command::new(env!("CARGO_BIN_EXE_origin"))
        .env("ORIGIN_RTMP_LISTEN", rtmp.to_string())
        .env("ORIGIN_HTTP_LISTEN", http.to_string())
        .env("ORIGIN_DATA_DIR", data.path())
        .env("ORIGIN_STREAM_KEYS", "alpha,beta")
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(server.stdout.take().unwrap()).lines();
    let (log_tx, mut log_rx) = tokio::sync::mpsc::unbounded_channel::<String>();
    tokio::spawn(async move {
        while let Ok(Some(l)) = lines.next_line().await {
            eprintln!("server: {l}");
            let _ = log_tx.send(l);
        }
    });
    let mut seen = String::new();
    let mut wait_for = async |needle: &str| {
        let end = tokio::time::Instant::now() + Duration::from_secs(20);
        while !seen.contains(needle) {
            match tokio::time::timeout_at(end, log_rx.recv()).await {
                Ok(Some(l)) => seen.push_str(&l),
                _ => return false,
            }
        }
        true
    };
    assert!(wait_for("rtmp ingest listening").await);
    // The soft open-file limit was raised, and said so.
    assert!(wait_for("open-file limit").await);

    // While a publish is live, connections whose `connect` nests values
    // 100,000 deep (every container type; once a process-killing stack
    // overflow) are closed, and the stream keeps advancing.
    let base = format!("http://{http}");
    let mut live = ffmpeg_publish(&format!("rtmp://{rtmp}/live/alpha"), 14, "320x240", true);
    let media = first_media_playlist(
        &format!("{base}/hls/alpha/master.m3u8"),
        Duration::from_secs(20),
    )
    .await;
    let position = async || parse_media(&get(&media).await.text()).last_position();
    let before = position().await;
    for kind in ingest::amf::Container::ALL {
        let mut s = rtmp_handshake(rtmp).await;
        let value = ingest::amf::nested(kind, 100_000);
        let wire = ingest::chunk::chunked(3, 20, &ingest::amf::connect_command(&value));
        let _ = s.write_all(&wire).await;
        let mut sink = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(10), s.read_to_end(&mut sink)).await;
        assert!(closed.is_ok(), "deep {kind:?} connection is closed");
    }
    assert!(wait_for("levels deep").await);
    assert_eq!(get(&format!("{base}/healthz")).await.status, 200);
    assert!(
        eventually(Duration::from_secs(10), async || position().await.0
            >= before.0 + 3)
        .await,
        "the live stream keeps advancing"
    );
    live.kill().await.ok();

    let ok = ffmpeg_publish(&format!("rtmp://{rtmp}/live/beta"), 2, "320x240", false)
        .wait()
        .await
        .unwrap();
    assert!(ok.success());
    assert!(wait_for("publish accepted").await);
    let refused = ffmpeg_publish(&format!("rtmp://{rtmp}/live/gamma"), 1, "320x240", false)
        .wait()
        .await
        .unwrap();
    assert!(!refused.success());
    assert!(wait_for("publish rejected").await);

    let pid = server.id().unwrap().to_string();
    let started = std::time::Instant::now();
    std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    let status = tokio::time::timeout(Duration::from_secs(10), server.wait())
        .await
        .expect("server must exit within 10 s of SIGTERM")
        .unwrap();
    assert!(status.success(), "clean exit, got {status}");
    assert!(started.elapsed() < Duration::from_secs(10));
}
