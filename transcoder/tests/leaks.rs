//! Twenty publish/unpublish cycles leave threads and memory where they were.
//! Its own test binary, so that no other test's threads are counted.

mod common;

use std::time::Duration;

use common::*;
use testkit::ffmpeg::TestSource;
use tokio::sync::mpsc;

/// Returns freed heap to the OS first, so RSS reflects live memory rather than
/// what glibc's per-thread arenas keep cached (which plateaus, not grows).
fn live_rss_kb() -> u64 {
    // SAFETY: malloc_trim only walks glibc's own arenas.
    unsafe { libc::malloc_trim(0) };
    proc_status("VmRSS:")
}

fn proc_status(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
        .unwrap()
}

async fn cycle(events: Vec<ingest::MediaEvent>) {
    let (tx, rx) = mpsc::channel(1024);
    tokio::spawn(async move {
        for e in events {
            if tx.send(e).await.is_err() {
                return;
            }
        }
    });
    let mut t = transcoder::start(config(), rx, Default::default())
        .await
        .unwrap();
    let drains: Vec<_> = t
        .renditions
        .drain(..)
        .map(|r| tokio::spawn(drain(r, Duration::from_secs(30))))
        .collect();
    t.task.await.unwrap().unwrap();
    for d in drains {
        assert!(!video(&d.await.unwrap()).is_empty());
    }
}

/// tokio's idle blocking threads (used to stop pipelines) expire after this,
/// so they are not counted either way.
const KEEP_ALIVE: Duration = Duration::from_millis(300);

#[test]
fn twenty_publish_cycles_leak_no_threads_or_memory() {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_keep_alive(KEEP_ALIVE)
        .enable_all()
        .build()
        .unwrap()
        .block_on(cycles());
}

async fn cycles() {
    let dir = tempfile::tempdir().unwrap();
    let events = flv_events(&clip(dir.path(), "c", TestSource::new("1280x720", 1.0)), 0);
    for _ in 0..5 {
        cycle(events.clone()).await;
    }
    tokio::time::sleep(KEEP_ALIVE * 3).await;
    let (threads0, rss0) = (proc_status("Threads:"), live_rss_kb());
    let n: usize = std::env::var("LEAK_CYCLES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(20);
    for i in 0..n {
        cycle(events.clone()).await;
        if i % 10 == 9 {
            eprintln!("after {} cycles: rss {} kB", i + 1, live_rss_kb());
        }
    }
    tokio::time::sleep(KEEP_ALIVE * 3).await;
    let (threads1, rss1) = (proc_status("Threads:"), live_rss_kb());
    eprintln!("threads {threads0} -> {threads1}, rss {rss0} kB -> {rss1} kB");
    // One leaked pipeline holds a dozen threads and 20+ MB of frame buffers
    // (decoder DPB, two x264 instances), so 20 leaked cycles would add 400 MB.
    // Allocator fragmentation moves live RSS by up to about 16 MB either way.
    assert!(threads1 <= threads0 + 2, "threads {threads0} -> {threads1}");
    assert!(rss1 < rss0 + 48 * 1024, "rss {rss0} kB -> {rss1} kB");
}
