//! The deploy story, with real peers on loopback: the origin binary behind
//! Debian's nginx running `deploy/nginx-edge.conf` unchanged but for ports and
//! paths, fed by ffmpeg.
//!
//! 1. Simulated LL-HLS viewers (the workspace's load generator) at 100 and
//!    500 play through the edge without stalls or errors, while the origin
//!    sees about one request per object, not one per viewer.
//! 2. The origin is restarted (SIGTERM, start again, ffmpeg republishes, as
//!    OBS does) under hls.js playing through the edge: the same playlist
//!    continues with MEDIA-SEQUENCE going up after an EXT-X-DISCONTINUITY, and
//!    the player resumes by itself. The freeze it sees is printed.

mod common;

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use common::edge::Edge;
use common::*;
use loadgen::llhls::{LoadConfig, run as load};
use testkit::ffmpeg::TestSource;

const KEY: &str = "edge";

/// The origin binary on fixed loopback ports, so that a restart comes back
/// where the edge looks for it.
async fn start_origin(rtmp: SocketAddr, http: SocketAddr, data: &Path) -> Binary {
    Binary::start(rtmp, http, |c| {
        c.env("ORIGIN_DATA_DIR", data)
            .env("ORIGIN_STREAM_KEYS", KEY);
    })
    .await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn viewers_and_a_restarting_origin_behind_an_nginx_edge() {
    let (rtmp, http) = (free_addr(), free_addr());
    let data = tempfile::tempdir().unwrap();
    let mut origin = start_origin(rtmp, http, data.path()).await;
    let edge = Edge::start(&[http]).await;
    let rtmp_url = format!("rtmp://{rtmp}/live/{KEY}");
    let mut publisher = TestSource::new("854x480", 120.0)
        .gop(30)
        .realtime()
        .publish(&rtmp_url);
    let master = format!("http://{}/hls/{KEY}/master.m3u8", edge.addr);
    assert!(
        eventually(Duration::from_secs(20), async || get(&master).await.status
            == 200)
        .await,
        "the stream came up through the edge"
    );

    // 1. Simulated viewers: no stalls, and the edge collapses their requests.
    const WATCH: Duration = Duration::from_secs(12);
    for viewers in [100, 500] {
        let requests_before = metric(http, "origin_http_responses_total").await;
        let parts_before = metric(http, "origin_parts_total").await;
        let r = load(LoadConfig {
            url: master.clone(),
            viewers,
            duration: WATCH,
            rendition: None,
            ramp: Duration::from_secs(2),
        })
        .await;
        // Less the scrape that measures it.
        let at_origin = metric(http, "origin_http_responses_total").await - requests_before - 1.0;
        let parts = metric(http, "origin_parts_total").await - parts_before;
        // Each new part is two objects: the blocking playlist naming it, and itself.
        let objects = 2.0 * parts;
        eprintln!(
            "{viewers} viewers through the edge: {} requests, {at_origin} at the origin \
             (collapse factor {:.1}; {objects} new objects), {} parts, {} stalls, {} errors",
            r.requests,
            r.requests as f64 / at_origin,
            r.parts,
            r.stalls,
            r.errors
        );
        assert_eq!(r.errors, 0, "no errors through the edge");
        assert_eq!(r.stalls, 0, "no part later than 2 x PART-TARGET");
        assert!(
            r.parts as f64 >= viewers as f64 * WATCH.as_secs_f64() * 4.0,
            "every viewer kept up with 5 parts a second: {} parts",
            r.parts
        );
        // A viewer's first (directive-less) playlist is fresh for 0 s and goes
        // through; beyond that, about one origin request per object.
        assert!(
            at_origin <= viewers as f64 + 1.5 * objects + 20.0,
            "{at_origin} origin requests for {viewers} viewers and {objects} objects"
        );
    }

    // 2. An origin restart under hls.js playing through the edge.
    let media_url = format!("http://{http}/hls/{KEY}/480p.m3u8");
    let player = hls_js(&master, 45);
    tokio::time::sleep(Duration::from_secs(12)).await;
    let before = parse_media(&get(&media_url).await.text());
    let stop_took = origin.stop(Duration::from_secs(15)).await;
    eprintln!("origin stopped in {stop_took:?}");
    publisher.kill().await.ok();
    origin = start_origin(rtmp, http, data.path()).await;
    let restored = parse_media(&get(&media_url).await.text());
    publisher = TestSource::new("854x480", 60.0)
        .gop(30)
        .realtime()
        .publish(&rtmp_url);
    let last_before = before.segments.last().unwrap().msn;
    assert!(
        restored.segments.last().unwrap().msn >= last_before,
        "the restarted origin serves the saved window at once:\n{}",
        restored.text
    );
    assert!(!restored.ended, "a restart is not the end of the broadcast");
    let generation = |m: &Media| m.segments[0].uri.split('/').nth(1).unwrap().to_string();
    assert_eq!(
        generation(&restored),
        generation(&before),
        "the same playlist"
    );
    let mut after = Media::default();
    assert!(
        eventually(Duration::from_secs(20), async || {
            after = parse_media(&get(&media_url).await.text());
            after
                .segments
                .iter()
                .any(|s| s.discontinuity && s.msn > last_before)
                && after.segments.last().unwrap().msn > last_before + 2
        })
        .await,
        "the republished stream continues the playlist after a discontinuity:\n{}",
        after.text
    );
    assert!(after.media_sequence >= before.media_sequence);
    let msns: Vec<u64> = after.segments.iter().map(|s| s.msn).collect();
    assert!(
        msns.windows(2).all(|w| w[1] == w[0] + 1),
        "MSNs go up one by one: {msns:?}"
    );

    // How much media the restart cost: from the end of the last segment before
    // it to the first one after it, by PROGRAM-DATE-TIME.
    let pdt = |s: &Seg| humantime::parse_rfc3339(s.pdt.as_deref().expect("PDT")).unwrap();
    let first_new = after
        .segments
        .iter()
        .find(|s| s.discontinuity && s.msn > last_before)
        .unwrap();
    let last_old = after
        .segments
        .iter()
        .find(|s| s.msn + 1 == first_new.msn)
        .unwrap();
    let media_gap = pdt(first_new)
        .duration_since(pdt(last_old) + Duration::from_secs_f64(last_old.duration))
        .unwrap_or_default();
    eprintln!(
        "media gap across the restart: {:.2} s",
        media_gap.as_secs_f64()
    );

    let r = hls_js_report(player).await;
    eprintln!("hls.js through the edge across the restart: {r}");
    assert_eq!(
        r["fatal"].as_array().unwrap().len(),
        0,
        "no fatal hls.js error"
    );
    let freeze = r["maxFreezeMs"].as_f64().unwrap() / 1000.0;
    eprintln!("the picture froze for {freeze:.2} s at most across the restart");
    assert!(
        freeze < 15.0,
        "hls.js resumed by itself ({freeze:.1} s freeze)"
    );
    assert!(
        r["currentTime"].as_f64().unwrap() > 30.0,
        "and kept playing to the end"
    );
    publisher.kill().await.ok();
    origin.stop(Duration::from_secs(15)).await;
    drop(edge);
}
