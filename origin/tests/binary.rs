//! The real server binary: configured through the environment, accepts an
//! ffmpeg publisher, refuses a wrong key, and exits promptly on SIGTERM.

mod common;

use std::process::Stdio;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncBufReadExt, BufReader};

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
