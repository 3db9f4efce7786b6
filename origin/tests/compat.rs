//! Stock players from npm, as a customer's page runs them (hls.js with its
//! defaults, Shaka Player in its low-latency mode; no code of ours), each
//! through the origin and through the nginx edge, joining at the start and
//! 40 s in: see `player/tests/compat.mjs`. In a test binary of its own, so
//! that its nine pages never share the 2 cores with another player test.

mod common;

use std::time::Duration;

use common::edge::Edge;
use common::*;
use testkit::ffmpeg::TestSource;

/// Stalls tolerated in a player's minute (a debug build on 2 cores).
const MAX_BRIEF_STALLS: u64 = 1;
/// The longest picture freeze tolerated, in ms.
const MAX_FREEZE_MS: u64 = 500;

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
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../player/tests/compat.mjs"
            ))
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
        // brief stall is tolerated, as in players.rs; a freeze is not.
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
