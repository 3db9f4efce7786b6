//! The real-time factor's accounting: every thread a transcode runs on,
//! including the x264 threads GStreamer's queues start, carries the session's
//! name, so its CPU time is counted. (Its own test binary: other tests'
//! pipelines would be starting threads meanwhile.)

mod common;

use std::time::Duration;

use common::*;
use testkit::ffmpeg::TestSource;
use tokio::sync::mpsc;

fn thread_names() -> Vec<String> {
    std::fs::read_dir("/proc/self/task")
        .unwrap()
        .filter_map(|t| std::fs::read_to_string(t.ok()?.path().join("comm")).ok())
        .map(|n| n.trim_end().to_string())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_pipeline_thread_counts_toward_the_sessions_cpu_time() {
    init_logs();
    let dir = tempfile::tempdir().unwrap();
    let events = flv_events(
        &clip(dir.path(), "usage", TestSource::new("1280x720", 4.0)),
        0,
    );
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(feed_realtime(events, tx));
    let mut t = transcoder::start(config(), rx, Default::default())
        .await
        .unwrap();
    let usage = t.usage.clone();
    let outs: Vec<_> = t
        .renditions
        .drain(..)
        .map(|r| tokio::spawn(drain(r, Duration::from_secs(60))))
        .collect();
    tokio::time::sleep(Duration::from_secs(2)).await;

    // GStreamer names streaming threads "element:pad"; none may be left.
    let names = thread_names();
    let stray: Vec<&String> = names.iter().filter(|n| n.contains(':')).collect();
    assert!(
        stray.is_empty(),
        "threads outside the accounting: {stray:?}"
    );
    let ours = names.iter().filter(|n| *n == usage.tag()).count();
    assert!(ours >= 4, "source, queues and x264 threads: {names:?}");
    let (cpu, media) = (usage.cpu_seconds(), usage.media_seconds());
    eprintln!("{ours} threads, {cpu:.2} CPU-s for {media:.2} s of media");
    assert!(cpu > 0.0 && media > 1.0);

    for o in outs {
        o.await.unwrap();
    }
    t.task.await.unwrap().unwrap();
    assert!(usage.is_done());
}
