//! Small sources, mid-stream changes and pipeline failures, fed directly from
//! ffmpeg-made clips through ingest's demuxer.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::*;
use ingest::MediaEvent;
use testkit::ffmpeg::TestSource;
use tokio::sync::mpsc;

const LIMIT: Duration = Duration::from_secs(60);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_480p_source_gets_only_480p() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let events = flv_events(
        &clip(dir.path(), "small", TestSource::new("854x480", 1.0)),
        0,
    );
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(feed_realtime(events, tx));
    let mut t = transcoder::start(config(), rx, Default::default())
        .await
        .unwrap();
    let names: Vec<_> = t.renditions.iter().map(|r| r.info.name.as_str()).collect();
    assert_eq!(names, ["480p"]);
    let out = drain(t.renditions.remove(0), LIMIT).await;
    let cfg = configs(&out);
    assert_eq!((cfg[0].width, cfg[0].height), (854, 480));
    assert!(video(&out).len() >= 25);
    t.task.await.unwrap().unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mid_stream_resolution_change_keeps_the_renditions_going() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let mut events = flv_events(
        &clip(dir.path(), "a", TestSource::new("1280x720", 2.0).gop(30)),
        0,
    );
    let b = flv_events(
        &clip(dir.path(), "b", TestSource::new("640x360", 2.0).gop(30)),
        2100,
    );
    assert!(
        b.iter()
            .any(|e| matches!(e, MediaEvent::VideoConfig(c) if c.width == 640))
    );
    events.extend(b);
    let input_frames = video(&events).len() as u64;
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(feed_realtime(events, tx));
    let mut t = transcoder::start(config(), rx, Default::default())
        .await
        .unwrap();
    let drains: Vec<_> = t
        .renditions
        .drain(..)
        .map(|r| tokio::spawn(drain(r, LIMIT)))
        .collect();
    let stats = t.task.await.unwrap().unwrap();
    for d in drains {
        let out = d.await.unwrap();
        let frames = video(&out);
        assert_eq!(
            frames.len() as u64,
            input_frames - stats.dropped - stats.skipped_for_keyframe,
            "{stats:?}"
        );
        assert!(
            frames.iter().any(|f| f.pts > Duration::from_millis(2500)),
            "frames after the change"
        );
        // Output sizes are fixed for the publish: the scaler absorbs the change.
        let sizes: BTreeSet<_> = configs(&out).iter().map(|c| (c.width, c.height)).collect();
        assert_eq!(sizes.len(), 1, "{sizes:?}");
        assert!(frames.windows(2).all(|w| w[1].pts > w[0].pts));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_error_restarts_and_output_resumes_after_a_discontinuity() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    // Source keyframes every 2 s: the restart happens mid-GOP and must replay it.
    let events = flv_events(
        &clip(dir.path(), "r", TestSource::new("1280x720", 4.0).gop(60)),
        0,
    );
    let input_pts: Vec<Duration> = video(&events).iter().map(|f| f.pts).collect();
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(feed_realtime(events, tx));
    let mut t = transcoder::start(config(), rx, Default::default())
        .await
        .unwrap();
    let drains: Vec<_> = t
        .renditions
        .drain(..)
        .map(|r| tokio::spawn(drain(r, LIMIT)))
        .collect();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let injected_at = std::time::Instant::now();
    t.inject_error().await;
    let stats = t.task.await.unwrap().unwrap();
    assert_eq!(stats.restarts, 1);
    assert!(injected_at.elapsed() < Duration::from_secs(10));
    for d in drains {
        let out = d.await.unwrap();
        let discontinuities: Vec<usize> = out
            .iter()
            .enumerate()
            .filter(|(_, e)| matches!(e, MediaEvent::Discontinuity))
            .map(|(i, _)| i)
            .collect();
        assert_eq!(discontinuities.len(), 1, "one discontinuity marker");
        let after = out[discontinuities[0]..]
            .iter()
            .find_map(|e| match e {
                MediaEvent::Video(v) => Some(v.clone()),
                _ => None,
            })
            .expect("output resumed");
        assert!(after.keyframe, "output resumes on a keyframe");
        let frames = video(&out);
        assert!(
            frames.windows(2).all(|w| w[1].pts > w[0].pts),
            "no replayed duplicates"
        );
        // The GOP replay means no source frame is lost to the restart.
        assert_eq!(
            frames.len() as u64,
            input_pts.len() as u64 - stats.dropped - stats.skipped_for_keyframe,
            "{stats:?}"
        );
        assert_eq!(stats.skipped_for_keyframe, 0);
    }
}
