//! The recorder: what packaging and the API call. It only queues; the
//! [`Writer`] thread does the work.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tokio::sync::oneshot;
use tracing::{error, warn};

use super::catalog::{ReplayInfo, Shared};
use super::config::RecordingConfig;
use super::disk;
use super::writer::{Job, Writer};
use crate::hls::sinks::{Completed, SegmentSink};
use crate::metrics::Metrics;

/// Room in the queue beyond the segments' share, for ends, deletions,
/// thumbnails and flushes, which are never dropped for segments.
const CONTROL_ROOM: usize = 64;

/// Records broadcasts; see the module documentation.
pub struct Recorder {
    pub(super) root: PathBuf,
    config: RecordingConfig,
    jobs: SyncSender<Job>,
    pub(super) shared: Arc<Shared>,
    metrics: Arc<Metrics>,
}

impl Recorder {
    /// Starts the writer thread on `root` (created if needed; earlier runs'
    /// recordings are read back and retention applied).
    pub fn start(config: RecordingConfig, root: PathBuf, metrics: Arc<Metrics>) -> Arc<Recorder> {
        let (jobs, rx) = sync_channel(config.queue + CONTROL_ROOM);
        let shared = Arc::new(Shared::default());
        let writer = Writer::new(
            root.clone(),
            shared.clone(),
            metrics.clone(),
            config.clone(),
        );
        std::thread::Builder::new()
            .name("recording".into())
            .spawn(move || writer.run(rx))
            .expect("spawning the recording thread");
        Arc::new(Recorder {
            root,
            config,
            jobs,
            shared,
            metrics,
        })
    }

    /// The recording of `id` as the API shows it, if there is one.
    pub fn info(&self, id: &str) -> Option<ReplayInfo> {
        let catalog = self.shared.catalog();
        let s = catalog.get(id)?;
        let state = match (s.deleted, s.ended) {
            (true, _) => "deleted",
            (false, Some(_)) => "ready",
            (false, None) => "recording",
        };
        let longest = s.durations.values().max().copied().unwrap_or_default();
        Some(ReplayInfo {
            state,
            duration_secs: (longest.as_secs_f64() * 1000.0).round() / 1000.0,
        })
    }

    /// Deletes `id`'s replay (files gone, URLs answer 410); whether there
    /// was one.
    pub async fn delete(&self, id: &str) -> io::Result<bool> {
        let (tx, rx) = oneshot::channel();
        self.control(Job::Delete(id.to_owned(), tx));
        rx.await
            .unwrap_or_else(|_| Err(io::Error::other("the recording writer stopped")))
    }

    /// Waits up to `within` for every queued job; whether they were done.
    pub async fn flush(&self, within: Duration) -> bool {
        let (tx, rx) = oneshot::channel();
        self.control(Job::Flush(tx));
        matches!(tokio::time::timeout(within, rx).await, Ok(Ok(())))
    }

    /// Keeps `jpeg` as `id`'s replay thumbnail.
    pub fn keep_thumbnail(&self, id: &str, jpeg: Bytes) {
        self.control(Job::Thumbnail(id.to_owned(), jpeg));
    }

    /// `id`'s kept thumbnail.
    pub async fn thumbnail(&self, id: &str) -> Option<Bytes> {
        if !crate::hls::uris::valid_name(id) {
            return None;
        }
        let path = self.root.join(id).join(disk::THUMBNAIL);
        tokio::fs::read(path).await.ok().map(Bytes::from)
    }

    /// The settings.
    pub fn config(&self) -> &RecordingConfig {
        &self.config
    }

    fn control(&self, job: Job) {
        if let Err(TrySendError::Full(_)) = self.jobs.try_send(job) {
            error!("recording queue full even for control jobs; one was lost");
        }
    }
}

impl SegmentSink for Recorder {
    fn completed(&self, c: Completed) {
        if self.shared.queued.fetch_add(1, Ordering::Relaxed) >= self.config.queue {
            self.shared.queued.fetch_sub(1, Ordering::Relaxed);
            self.metrics.count_recording_drop("queue_full");
            warn!(broadcast = %c.broadcast, rendition = %c.rendition, msn = c.segment.msn, "recording queue full: segment dropped");
            return;
        }
        if self.jobs.try_send(Job::Segment(Box::new(c))).is_err() {
            self.shared.queued.fetch_sub(1, Ordering::Relaxed);
            self.metrics.count_recording_drop("queue_full");
        }
    }

    fn ended(&self, broadcast: &str) {
        self.control(Job::End(broadcast.to_owned(), SystemTime::now()));
    }

    fn thumbnail(&self, broadcast: &str, jpeg: Bytes) {
        self.keep_thumbnail(broadcast, jpeg);
    }
}
