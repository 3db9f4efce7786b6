//! Real players against the real server: ffmpeg as a plain HLS client, and
//! hls.js in headless Chromium as a low-latency client, including forced
//! quality switches (one ffmpeg publish feeds both); and the watch page where
//! there are no Media Source Extensions, on the video element's own HLS.
//! Stock players from npm are in `compat.rs`.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::*;
use testkit::ffmpeg::TestSource;

fn player_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../player")
}

/// Stalls tolerated in the minute of hls.js playback (see the assertion).
const MAX_BRIEF_STALLS: u64 = 1;
/// The longest picture freeze tolerated, in ms.
const MAX_FREEZE_MS: u64 = 500;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ffmpeg_and_hls_js_play_the_live_stream() {
    let server = start_server(&["play"], |_| {}).await;
    let master = format!("{}/hls/play/master.m3u8", server.base());
    let mut publisher = TestSource::new("1280x720", 110.0)
        .gop(30)
        .realtime()
        .publish(&server.rtmp_url("play"));
    assert!(
        eventually(Duration::from_secs(20), async || get(&master).await.status
            == 200)
        .await,
        "the stream came up"
    );

    // ffmpeg, a plain HLS client (no LL-HLS), reads 20 s and decodes without errors.
    let out = tokio::process::Command::new("ffmpeg")
        .args([
            "-hide_banner",
            "-nostdin",
            "-v",
            "error",
            "-i",
            &master,
            "-t",
            "20",
            "-f",
            "null",
            "-",
        ])
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    let errors = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "ffmpeg failed: {errors}");
    assert!(errors.trim().is_empty(), "ffmpeg reported errors: {errors}");

    // hls.js in low-latency mode for 60 s, with a forced 720p -> 480p -> 720p round trip.
    let script = player_dir().join("tests/llhls-play.mjs");
    assert!(
        player_dir().join("node_modules/hls.js").exists(),
        "run scripts/check.sh (npm ci in player/) first"
    );
    let out = tokio::process::Command::new("node")
        .arg(&script)
        .args([&master, "60", "--switch"])
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "player script failed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let r: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    eprintln!("hls.js: {r}");
    assert_eq!(r["supported"], true, "MSE with H.264/AAC in this Chromium");
    assert_eq!(
        r["fatal"].as_array().unwrap().len(),
        0,
        "no fatal hls.js error"
    );
    // This test shares 2 cores with a debug-build transcoder, ffmpeg and
    // Chromium, 0.55 s behind live: about 1 run in 5 (before and after the
    // change that added this bound) ran dry once for 50-150 ms while every
    // request was answered at once. Zero stalls is measured by
    // scripts/bench-latency.sh (release build, 5 minutes); here a visible
    // freeze, a second stall or a jump fails.
    let waits = r["stalls"]
        .as_u64()
        .unwrap()
        .max(r["waiting"].as_u64().unwrap());
    assert!(
        waits <= MAX_BRIEF_STALLS,
        "at most one brief stall: {waits}"
    );
    assert!(
        r["maxFreezeMs"].as_u64().unwrap() < MAX_FREEZE_MS,
        "no freeze of {MAX_FREEZE_MS} ms or more"
    );
    assert!(r["jumps"].is_null(), "no jump");
    assert_eq!(r["lowLatency"], true);
    assert!(
        r["currentTime"].as_f64().unwrap() > 55.0,
        "played for the whole minute"
    );
    let switches = r["switches"].as_array().unwrap();
    assert_eq!(switches.len(), 2);
    assert_eq!(switches[0]["to"], 480);
    assert_eq!(switches[1]["to"], 720);
    for s in switches {
        assert_eq!(s["ok"], true, "videoHeight followed the switch: {s}");
        assert_eq!(s["stallsDuring"], 0, "no stall while switching: {s}");
    }
    publisher.kill().await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_watch_page_plays_through_native_hls_without_media_source_extensions() {
    let server = start_server(&[], |_| {}).await;
    let base = server.base();
    let b = create_broadcast(&base, "No MSE").await;
    let _ffmpeg = TestSource::new("1280x720", 60.0)
        .realtime()
        .publish(&server.rtmp_url(&b.key));
    let out = tokio::process::Command::new("node")
        .arg(player_dir().join("tests/watch-native.mjs"))
        .args([base.as_str(), b.id.as_str(), "15"])
        .kill_on_drop(true)
        .output()
        .await
        .unwrap();
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let r: serde_json::Value = serde_json::from_str(stdout.lines().last().unwrap()).unwrap();
    eprintln!("native HLS: {r}");
    assert_eq!(r["fatal"], serde_json::json!([]), "{r}");
    assert_eq!(r["mse"], false, "MediaSource was removed: {r}");
    assert_eq!(r["native"], true, "{r}");
    assert_eq!(r["src"], format!("/hls/{}/master.m3u8", b.id), "{r}");
    // Playing, in real time give or take the element's own buffering.
    assert_eq!(r["started"], true, "{r}");
    assert!(r["advanced"].as_f64().unwrap() > 10.0, "{r}");
    assert_eq!(r["quality"]["disabled"], true, "{r}");
    assert!(
        r["latencyText"]
            .as_str()
            .unwrap()
            .ends_with("s behind the newest media"),
        "{r}"
    );
    assert_eq!(r["overlay"], "", "{r}");
    drop(server);
}
