//! Stock players from npm, as a customer's page runs them (hls.js with its
//! defaults, Shaka Player in its low-latency mode; no code of ours), each
//! through the origin and through the nginx edge, joining at the start and
//! 40 s in: see `player/tests/compat.mjs`. In a test binary of its own, so
//! that its pages never share the 2 cores with another player test.

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

/// One phase: a fresh stream, published at `key`, read at `url`; two stock
/// players join at the start and `late` players 40 s in, when the 20-segment
/// window has slid. Returns each run with when it joined.
async fn phase(
    server: &TestServer,
    key: &str,
    url: &str,
    late: &[&str],
) -> Vec<(&'static str, serde_json::Value)> {
    const SECONDS: &str = "60";
    // One small rendition keeps a debug-build transcode and 5 pages on 2 cores.
    let mut publisher = TestSource::new("640x360", 115.0)
        .gop(30)
        .realtime()
        .publish(&server.rtmp_url(key));
    assert!(
        eventually(Duration::from_secs(20), async || get(url).await.status
            == 200)
        .await,
        "the stream came up at {url}"
    );
    let compat = |players: &[&str]| {
        tokio::process::Command::new("node")
            .arg(concat!(
                env!("CARGO_MANIFEST_DIR"),
                "/../player/tests/compat.mjs"
            ))
            .arg(SECONDS)
            .args(players.iter().map(|p| format!("{p}={url}")))
            .kill_on_drop(true)
            .output()
    };
    let early = tokio::spawn(compat(&["hls.js", "shaka"]));
    tokio::time::sleep(Duration::from_secs(40)).await;
    let late = compat_runs(&compat(late).await.unwrap());
    let early = compat_runs(&early.await.unwrap().unwrap());
    publisher.kill().await.ok();
    early
        .into_iter()
        .map(|r| ("at the start", r))
        .chain(late.into_iter().map(|r| ("40 s in", r)))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stock_hls_js_and_shaka_play_through_the_origin_and_the_edge() {
    let server = start_server(&["compat-origin", "compat-edge"], |_| {}).await;
    let edge = Edge::start(&[server.http]).await;
    let origin_url = format!("{}/hls/compat-origin/master.m3u8", server.base());
    let edge_url = format!("http://{}/hls/compat-edge/master.m3u8", edge.addr);
    // Through the origin, then through the edge, one after the other: all
    // nine pages at once overloaded a 2-core CI machine (the README setting
    // froze 690 ms there, with hls.js starting 3.5 s behind).
    let mut runs = phase(&server, "compat-origin", &origin_url, &["hls.js", "shaka"]).await;
    runs.extend(
        phase(
            &server,
            "compat-edge",
            &edge_url,
            &["hls.js", "shaka", "shaka-sequence"],
        )
        .await,
    );

    let mut failures = Vec::new();
    for (when, r) in &runs {
        let when = *when;
        let summary = serde_json::json!({"when": when, "player": r["player"], "url": r["url"],
            "waiting": r["waiting"], "jumps": r["jumps"], "maxFreezeMs": r["maxFreezeMs"],
            "played": r["played"], "frames": r["frames"], "latencyP50": r["latencyP50"],
            "firstFrameMs": r["firstFrameMs"], "fatal": r["fatal"], "errors": r["errors"]});
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
        // A debug build shares 2 cores with ffmpeg, nginx and 5 pages: one
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
