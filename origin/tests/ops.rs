//! Health, readiness and Prometheus metrics of the real server under a real publish.

mod common;

use std::time::Duration;

use common::*;
use testkit::ffmpeg::TestSource;

fn value(metrics: &str, series: &str) -> f64 {
    metrics
        .lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn health_readiness_and_metrics_report_a_live_stream() {
    let server = start_server(&["ops"], |_| {}).await;
    let base = server.base();
    assert_eq!(get(&format!("{base}/healthz")).await.status, 200);
    let ready = get(&format!("{base}/readyz")).await;
    assert_eq!((ready.status, ready.text().contains("ready")), (200, true));

    let mut ff = TestSource::new("854x480", 15.0)
        .gop(30)
        .realtime()
        .publish(&server.rtmp_url("ops"));
    let master = format!("{base}/hls/ops/master.m3u8");
    assert!(
        eventually(Duration::from_secs(20), async || get(&master).await.status
            == 200)
        .await
    );
    let _ = get(&format!("{base}/hls/ops/nope.m3u8")).await;
    // A blocking request in flight shows up as held.
    let m = parse_media(&get(&format!("{base}/hls/ops/480p.m3u8")).await.text());
    let (msn, _) = m.last_position();
    // The last part of the next segment: held for most of a second.
    let held = tokio::spawn(get(format!(
        "{base}/hls/ops/480p.m3u8?_HLS_msn={}&_HLS_part=4",
        msn + 1
    )
    .leak()));
    assert!(
        eventually(Duration::from_secs(1), async || {
            let text = get(&format!("{base}/metrics")).await.text();
            value(&text, "origin_held_requests") >= 1.0
        })
        .await,
        "the held request is counted"
    );

    let r = get(&format!("{base}/metrics")).await;
    assert_eq!(r.status, 200);
    let text = r.text();
    eprintln!("{text}");
    assert!(
        value(
            &text,
            "origin_parts_total{broadcast=\"ops\",rendition=\"480p\"}"
        ) > 0.0
    );
    assert!(value(&text, "origin_ingest_video_frames_total{broadcast=\"ops\"}") > 30.0);
    assert!(value(&text, "origin_ingest_video_bytes_total{broadcast=\"ops\"}") > 10_000.0);
    assert!(value(&text, "origin_http_responses_total{status=\"200\"}") >= 3.0);
    assert!(value(&text, "origin_http_responses_total{status=\"404\"}") >= 1.0);
    assert_eq!(held.await.unwrap().status, 200);
    // The transcoder's real-time factor: its threads' CPU seconds per second
    // of source video, sampled every 5 s.
    let mut rtf = 0.0;
    assert!(
        eventually(Duration::from_secs(12), async || {
            let text = get(&format!("{base}/metrics")).await.text();
            rtf = value(&text, "origin_transcode_realtime_factor{broadcast=\"ops\"}");
            rtf > 0.0
        })
        .await,
        "a real-time factor is reported"
    );
    eprintln!("real-time factor of a 480p30 -> 480p transcode: {rtf:.3}");
    assert!(
        (0.01..2.0).contains(&rtf),
        "one x264 encode of 480p30 costs a fraction of a core: {rtf}"
    );
    ff.kill().await.ok();
}
