//! The one writer: a thread that takes jobs from a bounded queue and does
//! every disk operation of the recordings, in order, so that writing,
//! ending, deleting and retention never race.
//!
//! A full disk (`ENOSPC`, a quota, a file-size limit) pauses recording:
//! segments are dropped (counted) and one is tried again every
//! [`RETRY_AFTER_FULL`]; the first that is written resumes it. Other write
//! errors drop that segment (counted and logged). Live playback never
//! waits for any of it.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Instant, SystemTime};

use bytes::Bytes;
use tokio::sync::oneshot;
use tracing::{debug, info, warn};

use super::across::Outbox;
use super::catalog::{Shared, Summary};
use super::config::{RETRY_AFTER_FULL, RecordingConfig, SWEEP_INTERVAL};
use super::disk::{self, FACTS, INDEX, THUMBNAIL};
use super::replay::{Entry, Facts};
use super::retention::{self, Kept};
use crate::hls::sinks::Completed;
use crate::hls::uris::{init_file, segment_file};
use crate::metrics::{Metrics, ReasonLabel};
use crate::store::recordings::{RunRow, SegmentRow};

/// What the writer is asked to do.
pub(super) enum Job {
    /// Write a segment (and its init segment, the first time).
    Segment(Box<Completed>),
    /// The broadcast ended; whether it was live here (then this origin
    /// seals its replay for every origin: its last segments are here).
    End(String, SystemTime, bool),
    /// Keep the broadcast's last thumbnail.
    Thumbnail(String, Bytes),
    /// Delete a replay; answers whether there was one.
    Delete(String, oneshot::Sender<io::Result<bool>>),
    /// Answers once every earlier job is done (and told to the database).
    Flush(oneshot::Sender<()>),
}

pub(super) struct Writer {
    pub root: PathBuf,
    pub shared: Arc<Shared>,
    pub metrics: Arc<Metrics>,
    pub config: RecordingConfig,
    /// Tells the database what was written (with several origins).
    pub outbox: Option<Outbox>,
    /// Facts last written per rendition directory, and as written.
    facts: HashMap<PathBuf, (Facts, String)>,
    /// Since when the disk has been full.
    paused: Option<Instant>,
    last_sweep: Instant,
}

impl Writer {
    pub fn new(
        root: PathBuf,
        shared: Arc<Shared>,
        metrics: Arc<Metrics>,
        config: RecordingConfig,
        outbox: Option<Outbox>,
    ) -> Writer {
        Writer {
            root,
            shared,
            metrics,
            config,
            outbox,
            facts: HashMap::new(),
            paused: None,
            last_sweep: Instant::now(),
        }
    }

    /// Runs until every sender is gone.
    pub fn run(mut self, jobs: Receiver<Job>) {
        self.load();
        self.sweep();
        loop {
            match jobs.recv_timeout(SWEEP_INTERVAL) {
                Ok(job) => self.handle(job),
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break,
            }
            if self.last_sweep.elapsed() >= SWEEP_INTERVAL {
                self.sweep();
            }
        }
        debug!("recording writer stopped");
    }

    /// Reads what earlier runs recorded into the catalog.
    fn load(&mut self) {
        let _ = std::fs::create_dir_all(&self.root);
        let mut catalog = HashMap::new();
        for id in disk::list(&self.root) {
            match disk::read(&self.root, &id) {
                Ok(Some(rec)) if rec.renditions.is_empty() && !rec.deleted => {
                    // Not one segment was written (a crash before the first).
                    if let Err(err) = disk::remove(&self.root, &id) {
                        warn!(broadcast = %id, %err, "empty recording not removed");
                    }
                }
                Ok(Some(rec)) => {
                    if let Some(o) = self.outbox.as_ref().filter(|_| !rec.deleted) {
                        o.sync(&id, rec.ended.is_some());
                    }
                    let last_write = std::fs::metadata(self.root.join(&id))
                        .and_then(|m| m.modified())
                        .unwrap_or_else(|_| SystemTime::now());
                    let durations = rec
                        .renditions
                        .iter()
                        .map(|r| (r.name.clone(), r.duration()))
                        .collect();
                    catalog.insert(
                        id,
                        Summary {
                            bytes: rec.bytes,
                            ended: rec.ended,
                            deleted: rec.deleted,
                            last_write,
                            durations,
                        },
                    );
                }
                Ok(None) => {}
                Err(err) => warn!(broadcast = %id, %err, "recording unreadable; left as it is"),
            }
        }
        info!(recordings = catalog.len(), root = %self.root.display(), "recordings loaded");
        *self.shared.catalog() = catalog;
        self.publish_bytes();
    }

    fn handle(&mut self, job: Job) {
        match job {
            Job::Segment(c) => {
                self.shared.queued.fetch_sub(1, Ordering::Relaxed);
                self.segment(&c);
            }
            Job::End(id, at, here) => {
                // Nothing recorded (opted out, or no segment yet): nothing to mark.
                if self.shared.catalog().get(&id).is_none_or(|s| s.deleted) {
                    return;
                }
                if let Err(err) = disk::mark_ended(&self.root, &id, at) {
                    warn!(broadcast = %id, %err, "could not mark the recording ended");
                }
                if let Some(s) = self.shared.catalog().get_mut(&id) {
                    s.ended = Some(at);
                }
                self.shared.forget_rendered(&id);
                // Ended while another origin held it: that origin seals
                // (after telling its last segments), or any origin does
                // once the end is `across::SETTLE` old.
                if let Some(o) = &self.outbox {
                    o.sync(&id, here);
                }
                self.sweep();
            }
            Job::Thumbnail(id, jpeg) => {
                let known = self.shared.catalog().get(&id).is_some_and(|s| !s.deleted);
                if known
                    && let Err(err) =
                        disk::write_atomic(&self.root.join(&id).join(THUMBNAIL), &jpeg)
                {
                    debug!(broadcast = %id, %err, "thumbnail not kept");
                }
            }
            Job::Delete(id, answer) => {
                let _ = answer.send(self.delete(&id));
            }
            Job::Flush(answer) => match &self.outbox {
                // Done once the database has heard of everything too.
                Some(o) => o.flush(answer),
                None => {
                    let _ = answer.send(());
                }
            },
        }
    }

    fn segment(&mut self, c: &Completed) {
        if self
            .paused
            .is_some_and(|since| since.elapsed() < RETRY_AFTER_FULL)
        {
            self.metrics.count_recording_drop("disk_full");
            return;
        }
        if self
            .shared
            .catalog()
            .get(&c.broadcast)
            .is_some_and(|s| s.deleted)
        {
            return;
        }
        match self.write(c) {
            Ok(bytes) => {
                if self.paused.take().is_some() {
                    info!(broadcast = %c.broadcast, "disk has room again: recording resumed");
                    self.metrics.recording_paused.set(0);
                }
                self.metrics.recording_segments.inc();
                let mut catalog = self.shared.catalog();
                let s = catalog.entry(c.broadcast.clone()).or_default();
                s.bytes += bytes;
                s.last_write = SystemTime::now();
                *s.durations.entry(c.rendition.clone()).or_default() += c.segment.duration;
                drop(catalog);
                self.shared.forget_rendered(&c.broadcast);
                self.publish_bytes();
            }
            Err(err) if is_full(&err) => {
                if self.paused.is_none() {
                    warn!(%err, "disk full: recording paused (live playback goes on); trying again every {RETRY_AFTER_FULL:?}");
                }
                self.paused = Some(Instant::now());
                self.metrics.recording_paused.set(1);
                self.metrics.count_recording_drop("disk_full");
            }
            Err(err) => {
                warn!(broadcast = %c.broadcast, rendition = %c.rendition, msn = c.segment.msn, %err, "segment not recorded");
                self.metrics.count_recording_drop("error");
            }
        }
    }

    /// Writes one segment; the bytes it added.
    fn write(&mut self, c: &Completed) -> io::Result<u64> {
        let dir = self
            .root
            .join(&c.broadcast)
            .join(&c.generation)
            .join(&c.rendition);
        disk::create_dirs(&self.root, &dir)?;
        let mut bytes = 0;
        let init = dir.join(init_file(c.segment.init_id));
        if let Some(data) = &c.init
            && !init.exists()
        {
            disk::write_atomic(&init, data)?;
            bytes += data.len() as u64;
        }
        let facts = Facts {
            order: c.order,
            facts: c.facts.clone(),
        };
        // Serialized (and written) only when they change.
        let facts_json = match self.facts.get(&dir) {
            Some((known, json)) if *known == facts => json.clone(),
            _ => {
                let json = serde_json::to_string(&facts)?;
                disk::write_atomic(&dir.join(FACTS), json.as_bytes())?;
                self.facts.insert(dir.clone(), (facts, json.clone()));
                json
            }
        };
        let s = &c.segment;
        disk::write_atomic(&dir.join(segment_file(s.msn)), &s.data)?;
        let entry = Entry {
            msn: s.msn,
            duration_us: s.duration.as_micros() as u64,
            pdt_ms: s
                .program_date_time
                .duration_since(SystemTime::UNIX_EPOCH)
                .unwrap_or_default()
                .as_millis() as u64,
            discontinuity: s.discontinuity,
            init: s.init_id,
            bytes: s.data.len() as u64,
        };
        let line = serde_json::to_string(&entry)?;
        disk::append_line(&dir.join(INDEX), &line)?;
        if let Some(o) = &self.outbox {
            o.segment(
                RunRow {
                    broadcast: c.broadcast.clone(),
                    rendition: c.rendition.clone(),
                    generation: c.generation.clone(),
                    facts: facts_json,
                },
                SegmentRow {
                    broadcast: c.broadcast.clone(),
                    rendition: c.rendition.clone(),
                    generation: c.generation.clone(),
                    msn: s.msn,
                    entry: line,
                    duration_secs: s.duration.as_secs_f64(),
                },
            );
        }
        Ok(bytes + s.data.len() as u64)
    }

    fn delete(&mut self, id: &str) -> io::Result<bool> {
        let known = self.shared.catalog().get(id).is_some_and(|s| !s.deleted);
        if !known {
            return Ok(false);
        }
        disk::delete(&self.root, id)?;
        if let Some(s) = self.shared.catalog().get_mut(id) {
            *s = Summary {
                deleted: true,
                ..Default::default()
            };
        }
        self.shared.forget_rendered(id);
        self.metrics
            .replays_deleted
            .get_or_create(&ReasonLabel { reason: "owner" })
            .inc();
        self.publish_bytes();
        info!(broadcast = %id, "replay deleted by its owner");
        Ok(true)
    }

    /// Enforces the age limit and the quota.
    fn sweep(&mut self) {
        self.last_sweep = Instant::now();
        let kept: Vec<Kept> = self
            .shared
            .catalog()
            .iter()
            .filter(|(_, s)| !s.deleted)
            .map(|(id, s)| Kept {
                id: id.clone(),
                bytes: s.bytes,
                ended: s.ended,
                last_write: s.last_write,
            })
            .collect();
        let chosen = retention::choose(
            &kept,
            SystemTime::now(),
            self.config.max_age,
            self.config.max_bytes,
        );
        for (id, reason) in chosen {
            if let Err(err) = remove(&self.root, &id) {
                warn!(broadcast = %id, %err, "replay could not be deleted");
                continue;
            }
            self.shared.catalog().remove(&id);
            self.shared.forget_rendered(&id);
            self.metrics
                .replays_deleted
                .get_or_create(&ReasonLabel {
                    reason: reason.label(),
                })
                .inc();
            info!(broadcast = %id, reason = reason.label(), "replay deleted by retention");
            if let Some(o) = &self.outbox {
                o.removed(&id);
            }
        }
        self.publish_bytes();
    }

    fn publish_bytes(&self) {
        let total: u64 = self.shared.catalog().values().map(|s| s.bytes).sum();
        self.metrics.recording_bytes.set(total as i64);
    }
}

fn remove(root: &Path, id: &str) -> io::Result<()> {
    match disk::remove(root, id) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        r => r,
    }
}

/// A disk that is full, or a quota or file-size limit reached.
fn is_full(err: &io::Error) -> bool {
    matches!(
        err.kind(),
        io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded | io::ErrorKind::FileTooLarge
    )
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::hls::saved::{RenditionFacts, SavedSegment};

    fn writer(root: &Path) -> Writer {
        Writer::new(
            root.to_owned(),
            Arc::default(),
            Arc::default(),
            RecordingConfig::default(),
            None,
        )
    }

    fn completed(msn: u64) -> Completed {
        Completed {
            broadcast: "b1".into(),
            rendition: "480p".into(),
            generation: "g1".into(),
            order: 0,
            facts: RenditionFacts::default(),
            segment: SavedSegment {
                msn,
                duration: Duration::from_secs(2),
                discontinuity: false,
                program_date_time: SystemTime::UNIX_EPOCH,
                init_id: 0,
                data: Bytes::from_static(b"moof+mdat"),
            },
            init: Some(Bytes::from_static(b"ftyp+moov")),
        }
    }

    #[test]
    fn segments_end_and_deletion_reach_the_disk_and_the_catalog_in_order() {
        let root = tempfile::tempdir().unwrap();
        let mut w = writer(root.path());
        // A crash before the first segment left an empty directory: removed.
        std::fs::create_dir_all(root.path().join("empty/g/480p")).unwrap();
        w.load();
        assert!(!root.path().join("empty").exists());
        // An end with nothing recorded marks nothing.
        w.handle(Job::End("nobody".into(), SystemTime::now(), true));
        assert!(!root.path().join("nobody").exists());
        for msn in [1, 2] {
            w.shared.queued.fetch_add(1, Ordering::Relaxed);
            w.handle(Job::Segment(Box::new(completed(msn))));
        }
        let dir = root.path().join("b1/g1/480p");
        assert_eq!(std::fs::read(dir.join("init0.mp4")).unwrap(), b"ftyp+moov");
        assert_eq!(std::fs::read(dir.join("s2.m4s")).unwrap(), b"moof+mdat");
        let index = std::fs::read_to_string(dir.join(INDEX)).unwrap();
        assert_eq!(super::super::replay::parse_index(&index).len(), 2);
        w.handle(Job::End("b1".into(), SystemTime::now(), true));
        {
            let catalog = w.shared.catalog();
            let s = &catalog["b1"];
            assert!(s.ended.is_some());
            assert_eq!(s.durations["480p"], Duration::from_secs(4));
            assert_eq!(s.bytes, 9 + 2 * 9);
        }
        assert!(w.delete("b1").unwrap());
        assert!(w.shared.catalog()["b1"].deleted);
        assert!(!w.delete("b1").unwrap(), "once");
        // A late segment does not bring a deleted replay back.
        w.shared.queued.fetch_add(1, Ordering::Relaxed);
        w.handle(Job::Segment(Box::new(completed(3))));
        assert!(!dir.exists());
    }

    #[test]
    fn only_an_end_while_live_here_seals_the_replay_for_every_origin() {
        use crate::recording::across::tests::Flaky;
        use crate::recording::across::{Across, Event};
        let root = tempfile::tempdir().unwrap();
        let node = crate::store::Node {
            id: "a".into(),
            url: "http://a".into(),
        };
        let (_across, outbox, mut told) = Across::new(Arc::new(Flaky::default()), node);
        let mut w = writer(root.path());
        w.outbox = Some(outbox);
        let mut seals = Vec::new();
        for here in [false, true] {
            w.shared.queued.fetch_add(1, Ordering::Relaxed);
            w.handle(Job::Segment(Box::new(completed(1))));
            w.handle(Job::End("b1".into(), SystemTime::now(), here));
            while let Ok(event) = told.try_recv() {
                if let Event::Sync { seal, .. } = event {
                    seals.push(seal);
                }
            }
        }
        // Ended while another origin held it: told, not sealed (that origin
        // seals after its last segments).
        assert_eq!(seals, [false, true]);
    }
}
