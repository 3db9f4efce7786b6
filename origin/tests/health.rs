//! The streamer's health API with a real ffmpeg publisher: owner only (401,
//! 403), what arrives (size, codecs, frame rate, keyframe interval) with a
//! warning for 3-s keyframes, and viewers' latency reports (400 for bad
//! ones, 409 when nothing is published).

mod common;

use std::time::Duration;

use common::*;
use serde_json::{Value, json};
use testkit::ffmpeg::TestSource;

async fn health(base: &str, id: &str, token: Option<&str>) -> (u16, Value) {
    let r = request_json_as(
        "GET",
        &format!("{base}/api/broadcasts/{id}/health"),
        "",
        token,
    )
    .await;
    (
        r.status,
        serde_json::from_slice(&r.body).unwrap_or(Value::Null),
    )
}

async fn report(base: &str, id: &str, body: Value) -> u16 {
    request_json(
        "POST",
        &format!("{base}/api/broadcasts/{id}/latency"),
        &body.to_string(),
    )
    .await
    .status
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_owner_sees_what_arrives_with_warnings_and_the_viewers_delay() {
    let server = start_server(&[], |_| {}).await;
    let base = server.base();
    let b = create_broadcast(&base, "Health").await;
    let other = create_broadcast(&base, "Other").await;
    assert_eq!(health(&base, &b.id, None).await.0, 401);
    assert_eq!(health(&base, &b.id, Some(&other.token)).await.0, 403);
    assert_eq!(health(&base, "nope", Some(&b.token)).await.0, 404);
    let (s, idle) = health(&base, &b.id, Some(&b.token)).await;
    assert_eq!(
        (s, &idle["ingest"], &idle["warnings"]),
        (200, &Value::Null, &json!([]))
    );
    assert_eq!(
        report(&base, &b.id, json!({"session": "s1", "secs": 0.7})).await,
        409,
        "not published"
    );

    // 3-s keyframes (90 frames at 30 fps): published, measured, warned about.
    let mut publisher = TestSource::new("640x360", 60.0)
        .gop(90)
        .realtime()
        .publish(&server.rtmp_url(&b.key));
    let live = eventually_some(Duration::from_secs(30), async || {
        let (_, h) = health(&base, &b.id, Some(&b.token)).await;
        h["ingest"]["keyframe_interval_secs"]
            .is_number()
            .then_some(h)
    })
    .await
    .expect("two keyframes arrived within 30 s");
    let i = &live["ingest"];
    assert_eq!(
        (i["width"].as_u64(), i["height"].as_u64()),
        (Some(640), Some(360))
    );
    assert!(
        i["video_codec"].as_str().unwrap().starts_with("avc1."),
        "{live}"
    );
    assert_eq!(i["audio_codec"], "mp4a.40.2");
    assert_eq!(i["keyframe_interval_secs"], 3.0);
    assert_eq!(i["fps"], 30.0, "{live}");
    assert!(i["bitrate_kbps"].as_f64().unwrap() > 50.0, "{live}");
    assert!(live["transcode"]["realtime_factor"].is_number());
    let warnings = live["warnings"].as_array().unwrap();
    assert_eq!(warnings.len(), 1, "{live}");
    assert!(
        warnings[0].as_str().unwrap().contains("every 3.0 s"),
        "{live}"
    );

    // Viewers' reports: checked, one per session, the median shown.
    for bad in [
        json!({"session": "s1", "secs": -1.0}),
        json!({"session": "s1", "secs": 500.0}),
        json!({"session": "no spaces", "secs": 1.0}),
        json!({"secs": 1.0}),
    ] {
        assert_eq!(report(&base, &b.id, bad.clone()).await, 400, "{bad}");
    }
    for (session, secs) in [("s1", 5.0), ("s1", 0.6), ("s2", 0.8), ("s3", 0.7)] {
        assert_eq!(
            report(&base, &b.id, json!({"session": session, "secs": secs})).await,
            200
        );
    }
    let (_, h) = health(&base, &b.id, Some(&b.token)).await;
    assert_eq!(h["latency"], json!({"p50_secs": 0.7, "reports": 3}));

    // The publish stops: nothing arrives any more, and the reports go with it.
    publisher.kill().await.ok();
    assert!(
        eventually(Duration::from_secs(10), async || health(
            &base,
            &b.id,
            Some(&b.token)
        )
        .await
        .1["ingest"]
            .is_null())
        .await
    );
    let (_, h) = health(&base, &b.id, Some(&b.token)).await;
    assert_eq!(h["latency"]["reports"], 0);
}
