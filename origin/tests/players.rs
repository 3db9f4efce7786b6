//! Real players against the real server: ffmpeg as a plain HLS client, and
//! hls.js in headless Chromium as a low-latency client, including forced
//! quality switches (one ffmpeg publish feeds both); the watch page where
//! there are no Media Source Extensions, on the video element's own HLS; and
//! stock hls.js and Shaka Player from npm, as a customer's page runs them,
//! through the origin and through the nginx edge.

mod common;

use std::path::PathBuf;
use std::time::Duration;

use common::edge::Edge;
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

/// One stock player's minute, from `player/tests/compat.mjs`.
fn compat_runs(out: &std::process::Output) -> Vec<serde_json::Value> {
    eprintln!("{}", String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "compat script failed");
    let stdout = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(stdout.lines().last().unwrap()).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_hls_js_and_shaka_play_through_the_origin_and_the_edge() {
    const SECONDS: &str = "60";
    let server = start_server(&["compat"], |_| {}).await;
    let edge = Edge::start(&[server.http]).await;
    let origin_url = format!("{}/hls/compat/master.m3u8", server.base());
    let edge_url = format!("http://{}/hls/compat/master.m3u8", edge.addr);
    // One small rendition keeps 9 pages and a debug-build transcode on 2 cores.
    let mut publisher = TestSource::new("640x360", 115.0)
        .gop(30)
        .realtime()
        .publish(&server.rtmp_url("compat"));
    assert!(
        eventually(Duration::from_secs(20), async || get(&edge_url)
            .await
            .status
            == 200)
        .await,
        "the stream came up through the edge"
    );
    let compat = |players: Vec<String>| {
        tokio::process::Command::new("node")
            .arg(player_dir().join("tests/compat.mjs"))
            .arg(SECONDS)
            .args(players)
            .kill_on_drop(true)
            .output()
    };
    let each = |players: &[&str]| {
        players
            .iter()
            .flat_map(|p| [format!("{p}={origin_url}"), format!("{p}={edge_url}")])
            .collect::<Vec<_>>()
    };
    // Joining at the start, and 40 s in, when the 20-segment window has slid.
    let early = tokio::spawn(compat(each(&["hls.js", "shaka"])));
    tokio::time::sleep(Duration::from_secs(40)).await;
    let mut late_players = each(&["hls.js", "shaka"]);
    late_players.push(format!("shaka-sequence={origin_url}"));
    let late = compat_runs(&compat(late_players).await.unwrap());
    let early = compat_runs(&early.await.unwrap().unwrap());
    publisher.kill().await.ok();

    let mut failures = Vec::new();
    for (when, r) in early
        .iter()
        .map(|r| ("at the start", r))
        .chain(late.iter().map(|r| ("40 s in", r)))
    {
        let summary = serde_json::json!({"when": when, "player": r["player"], "url": r["url"],
            "waiting": r["waiting"], "jumps": r["jumps"], "maxFreezeMs": r["maxFreezeMs"],
            "played": r["played"], "frames": r["frames"], "latencyP50": r["latencyP50"],
            "firstFrameMs": r["firstFrameMs"], "errors": r["errors"]});
        eprintln!("{summary}");
        let mut check = |ok: bool, what: &str| {
            if !ok {
                failures.push(format!("{what}: {summary}"));
            }
        };
        check(r["fatal"] == serde_json::json!([]), "a fatal error");
        check(
            r["played"].as_f64().unwrap() > 50.0,
            "did not play on for the minute",
        );
        // Stock Shaka 5.2.12 joining after the window has slid drops the
        // video of parts that do not start with a keyframe (shaka-player#10589,
        // fixed upstream, not released): see the README. The one setting
        // the README gives its users is held to the bound instead.
        if r["player"] == "shaka" && when == "40 s in" {
            continue;
        }
        // A debug build shares 2 cores with ffmpeg, nginx and 9 pages: one
        // brief stall is tolerated, as in the test above; a freeze is not.
        check(
            r["waiting"].as_u64().unwrap() <= MAX_BRIEF_STALLS,
            "more than one brief stall",
        );
        check(
            r["maxFreezeMs"].as_u64().unwrap() < MAX_FREEZE_MS,
            &format!("a freeze of {MAX_FREEZE_MS} ms or more"),
        );
        // Every frame of the minute presented, give or take the start.
        check(
            r["frames"].as_u64().unwrap() > 50 * 30,
            "frames were not presented",
        );
    }
    assert!(failures.is_empty(), "{failures:#?}");
    drop(edge);
    drop(server);
}
