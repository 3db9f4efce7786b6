//! The recorder: what packaging and the API call. It only queues; the
//! [`Writer`] thread does the work.

use std::io;
use std::path::PathBuf;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{SyncSender, TrySendError, sync_channel};
use std::sync::{Arc, Weak};
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use tokio::sync::oneshot;
use tracing::{debug, error, info, warn};

use super::across::{self, Across};
use super::catalog::{ReplayInfo, Shared};
use super::config::RecordingConfig;
use super::disk;
use super::writer::{Job, Writer};
use crate::hls::sinks::{Completed, SegmentSink};
use crate::metrics::Metrics;
use crate::store::Node;
use crate::store::recordings::Recordings;

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
    /// With several origins: the replays they share.
    pub(super) across: Option<Arc<Across>>,
}

impl Recorder {
    /// Starts the writer thread on `root` (created if needed; earlier runs'
    /// recordings are read back and retention applied). With `shared_with`
    /// (the database several origins share, and this origin), what is
    /// recorded here is part of replays every origin serves (see [`across`]).
    pub fn start(
        config: RecordingConfig,
        root: PathBuf,
        metrics: Arc<Metrics>,
        shared_with: Option<(Arc<dyn Recordings>, Node)>,
    ) -> Arc<Recorder> {
        let (jobs, rx) = sync_channel(config.queue + CONTROL_ROOM);
        let shared = Arc::new(Shared::default());
        let (across, outbox) = match shared_with {
            Some((index, node)) => {
                let (across, outbox, events) = Across::new(index, node);
                tokio::spawn(across.clone().publish(root.clone(), events));
                (Some(across), Some(outbox))
            }
            None => (None, None),
        };
        let writer = Writer::new(
            root.clone(),
            shared.clone(),
            metrics.clone(),
            config.clone(),
            outbox,
        );
        std::thread::Builder::new()
            .name("recording".into())
            .spawn(move || writer.run(rx))
            .expect("spawning the recording thread");
        let recorder = Arc::new(Recorder {
            root,
            config,
            jobs,
            shared,
            metrics,
            across,
        });
        if recorder.across.is_some() {
            tokio::spawn(follow(Arc::downgrade(&recorder)));
        }
        recorder
    }

    /// The recording of `id` as the API shows it, if there is one: as every
    /// origin sees it when the database knows it, else as recorded here.
    pub fn info(&self, id: &str) -> Option<ReplayInfo> {
        let local = {
            let catalog = self.shared.catalog();
            catalog.get(id).map(|s| {
                let state = match (s.deleted, s.ended) {
                    (true, _) => "deleted",
                    (false, Some(_)) => "ready",
                    (false, None) => "recording",
                };
                let longest = s.durations.values().max().copied().unwrap_or_default();
                (state, longest.as_secs_f64())
            })
        };
        let (state, secs) = match self.across.as_ref().map(|a| a.known(id)) {
            Some(Some(s)) if s.deleted => ("deleted", 0.0),
            Some(Some(s)) if s.ended => ("ready", s.duration_secs),
            Some(Some(_)) => ("recording", local.map_or(0.0, |(_, secs)| secs)),
            // Not sealed as far as this origin knows: not served as a
            // replay yet (see `playlist`), whatever the disk here says.
            Some(None) => match local? {
                ("ready", secs) => ("recording", secs),
                other => other,
            },
            None => local?,
        };
        Some(ReplayInfo {
            state,
            duration_secs: (secs * 1000.0).round() / 1000.0,
        })
    }

    /// Deletes `id`'s replay (files gone, URLs answer 410; with several
    /// origins, on every one); whether there was one.
    pub async fn delete(&self, id: &str) -> io::Result<bool> {
        let here = self.delete_here(id).await?;
        let Some(across) = &self.across else {
            return Ok(here);
        };
        let elsewhere = across
            .index
            .delete_replay(id)
            .await
            .map_err(|e| io::Error::other(e.to_string()))?;
        across.forget(id);
        self.shared.forget_rendered(id);
        Ok(here || elsewhere)
    }

    /// Deletes what this origin recorded of `id`; whether it had any.
    async fn delete_here(&self, id: &str) -> io::Result<bool> {
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

    /// `id`'s kept thumbnail (with several origins, the one its replay
    /// was sealed with, if this origin kept none).
    pub async fn thumbnail(&self, id: &str) -> Option<Bytes> {
        if !crate::hls::uris::valid_name(id) {
            return None;
        }
        let path = self.root.join(id).join(disk::THUMBNAIL);
        if let Ok(jpeg) = tokio::fs::read(path).await {
            return Some(Bytes::from(jpeg));
        }
        let across = self.across.as_ref()?;
        match across.index.replay_thumbnail(id).await {
            Ok(jpeg) => jpeg.map(Bytes::from),
            Err(err) => {
                debug!(broadcast = %id, %err, "replay thumbnail not read");
                None
            }
        }
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

    fn ended(&self, broadcast: &str, here: bool) {
        self.control(Job::End(broadcast.to_owned(), SystemTime::now(), here));
    }

    fn thumbnail(&self, broadcast: &str, jpeg: Bytes) {
        self.keep_thumbnail(broadcast, jpeg);
    }
}

/// With several origins, until the recorder is gone: reads the replay
/// states every origin changed (every [`across::REFRESH`]); every
/// [`across::CHECK`], seals the replays no origin sealed and deletes here
/// what was deleted elsewhere.
async fn follow(recorder: Weak<Recorder>) {
    let mut since = None;
    let mut checked = tokio::time::Instant::now();
    loop {
        tokio::time::sleep(across::REFRESH).await;
        let Some(r) = recorder.upgrade() else { return };
        let Some(across) = r.across.clone() else {
            return;
        };
        since = across.refresh(since).await;
        if checked.elapsed() < across::CHECK {
            continue;
        }
        checked = tokio::time::Instant::now();
        match across.index.seal_stragglers(across::SETTLE).await {
            Ok(sealed) => {
                for id in sealed {
                    info!(broadcast = %id, "replay sealed: its broadcast ended with no origin to seal it");
                    across.forget(&id);
                }
            }
            Err(err) => debug!(%err, "unsealed replays not looked for"),
        }
        let here: Vec<String> = r
            .shared
            .catalog()
            .iter()
            .filter(|(_, s)| !s.deleted)
            .map(|(id, _)| id.clone())
            .collect();
        if here.is_empty() {
            continue;
        }
        match across.index.deleted_among(&here).await {
            Ok(gone) => {
                for id in gone {
                    match r.delete_here(&id).await {
                        Ok(_) => {
                            info!(broadcast = %id, "replay deleted on another origin: deleted here too")
                        }
                        Err(err) => {
                            warn!(broadcast = %id, %err, "replay deleted elsewhere not deleted here")
                        }
                    }
                }
            }
            Err(err) => debug!(%err, "deletions elsewhere not looked for"),
        }
    }
}
