//! Helpers for the origin's integration tests: the real binary or `run` on
//! loopback ports, and real publishers.
#![allow(dead_code)]

use std::net::{SocketAddr, TcpListener};
use std::process::Stdio;
use std::time::Duration;

/// A free loopback port (bound then released; the OS does not hand it out again at once).
pub fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
}

/// ffmpeg publishing `seconds` of 30 fps testsrc2 + sine to `url`.
pub fn ffmpeg_publish(
    url: &str,
    seconds: u32,
    size: &str,
    realtime: bool,
) -> tokio::process::Child {
    let mut cmd = tokio::process::Command::new("ffmpeg");
    cmd.args(["-hide_banner", "-loglevel", "error", "-nostdin"]);
    if realtime {
        cmd.arg("-re");
    }
    cmd.args([
        "-f",
        "lavfi",
        "-i",
        &format!("testsrc2=size={size}:rate=30"),
    ])
    .args(["-f", "lavfi", "-i", "sine=frequency=440:sample_rate=48000"])
    .args(["-t", &seconds.to_string()])
    .args([
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-g",
        "30",
        "-pix_fmt",
        "yuv420p",
    ])
    .args(["-c:a", "aac", "-b:a", "96k", "-f", "flv", url])
    .stdin(Stdio::null())
    .kill_on_drop(true);
    cmd.spawn()
        .expect("ffmpeg must be installed (scripts/check.sh installs it)")
}

/// Polls `f` every 100 ms until it returns true or `limit` passes.
pub async fn eventually(limit: Duration, mut f: impl AsyncFnMut() -> bool) -> bool {
    let end = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < end {
        if f().await {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    false
}
