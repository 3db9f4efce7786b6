//! One replay across origins (with a shared database, see
//! [`crate::store::recordings`]). Each origin records what it packages on
//! its own disk and tells the database, segment by segment, what it wrote
//! ([`Outbox`], drained by [`Across::publish`]). The origin a broadcast
//! ends on first tells it everything it recorded, then seals the replay:
//! what the database heard of until then is the replay, on every origin,
//! and never changes. Any origin renders the playlists from the database
//! and fetches each segment from the origin that recorded it.
//!
//! A deletion (by the owner, or by retention of a sealed replay) marks the
//! replay deleted in the database: every origin answers 410 at once and
//! deletes its files within [`CHECK`]. A broadcast that ended with no
//! origin to seal it (its holder died) is sealed [`SETTLE`] later by any.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc::{
    UnboundedReceiver, UnboundedSender, WeakUnboundedSender, unbounded_channel,
};
use tokio::sync::oneshot;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::disk;
use super::rows::rows_of;
use crate::store::recordings::{Recordings, ReplayState, RunRow, SegmentRow};
use crate::store::{Node, StoreError};

/// Segments told at most in one statement.
const BATCH: usize = 500;
/// Segments waiting to be told; past it they are dropped here (the origin
/// tells everything again when the broadcast ends on it, and at start).
const MAX_PENDING: usize = 10_000;
/// A replay's state is asked afresh for playlists after this.
const STATE_FRESH: Duration = Duration::from_secs(1);
/// How often the states every origin changed are read (for the API).
pub const REFRESH: Duration = Duration::from_secs(2);
/// Changes are read again this far back (transactions commit out of order).
const OVERLAP_SECS: f64 = 5.0;
/// How often deletions elsewhere and unsealed ends are looked for.
pub const CHECK: Duration = Duration::from_secs(10);
/// A broadcast ended this long ago with no origin sealing its replay is
/// sealed by any origin.
pub const SETTLE: Duration = Duration::from_secs(30);
/// A sync the database failed is tried again after this ...
const RETRY: Duration = Duration::from_secs(5);
/// ... this many times (then at the next start).
const MAX_TRIES: u32 = 120;
/// Which origin recorded a run is remembered this long ...
const HOLDER_TTL: Duration = Duration::from_secs(60);
/// ... and that none did, this long.
const NO_HOLDER_TTL: Duration = Duration::from_secs(1);
/// Remembered holders (and broadcasts with nothing recorded) before the
/// memory starts over.
const MAX_REMEMBERED: usize = 10_000;

/// What the writer tells the database, in order.
pub(super) enum Event {
    /// A segment was written.
    Segment(RunRow, SegmentRow),
    /// Tell everything recorded of a broadcast; then seal its replay (it
    /// ended here). Tried again every [`RETRY`] while the database fails.
    Sync {
        broadcast: String,
        seal: bool,
        tries: u32,
    },
    /// Retention deleted a broadcast's recording here.
    Removed(String),
    /// Answers once everything before it is told.
    Flush(oneshot::Sender<()>),
}

/// The writer's side: never blocks, never fails.
#[derive(Clone)]
pub(super) struct Outbox {
    tx: UnboundedSender<Event>,
    pending: Arc<AtomicUsize>,
}

impl Outbox {
    pub fn segment(&self, run: RunRow, segment: SegmentRow) {
        if self.pending.fetch_add(1, Ordering::Relaxed) >= MAX_PENDING {
            self.pending.fetch_sub(1, Ordering::Relaxed);
            debug!(broadcast = %run.broadcast, "database behind: segment told at the end");
            return;
        }
        if self.tx.send(Event::Segment(run, segment)).is_err() {
            self.pending.fetch_sub(1, Ordering::Relaxed);
        }
    }

    pub fn sync(&self, broadcast: &str, seal: bool) {
        let _ = self.tx.send(Event::Sync {
            broadcast: broadcast.to_owned(),
            seal,
            tries: 0,
        });
    }

    pub fn removed(&self, broadcast: &str) {
        let _ = self.tx.send(Event::Removed(broadcast.to_owned()));
    }

    pub fn flush(&self, answer: oneshot::Sender<()>) {
        let _ = self.tx.send(Event::Flush(answer));
    }
}

/// This origin's part in the replays every origin shares.
pub struct Across {
    pub(super) index: Arc<dyn Recordings>,
    /// This origin.
    pub(super) node: Node,
    pending: Arc<AtomicUsize>,
    /// For trying a failed sync again (weak: the writer's end ends it all).
    again: WeakUnboundedSender<Event>,
    states: Mutex<HashMap<String, (ReplayState, Instant)>>,
    /// Broadcasts nothing was recorded of, when last asked.
    absent: Mutex<HashMap<String, Instant>>,
    holders: Mutex<HashMap<String, (Option<Node>, Instant)>>,
}

impl Across {
    /// This origin as `node`, sharing `index`; the outbox the writer tells
    /// and what [`Across::publish`] drains.
    pub(super) fn new(
        index: Arc<dyn Recordings>,
        node: Node,
    ) -> (Arc<Across>, Outbox, UnboundedReceiver<Event>) {
        let (tx, rx) = unbounded_channel();
        let pending = Arc::new(AtomicUsize::new(0));
        let across = Arc::new(Across {
            index,
            node,
            pending: pending.clone(),
            again: tx.downgrade(),
            states: Mutex::default(),
            absent: Mutex::default(),
            holders: Mutex::default(),
        });
        (across, Outbox { tx, pending }, rx)
    }

    /// Tells the database what the writer did, in order, until the writer
    /// stops. `root` is the recordings directory.
    pub(super) async fn publish(
        self: Arc<Self>,
        root: PathBuf,
        mut events: UnboundedReceiver<Event>,
    ) {
        let mut failing = false;
        while let Some(first) = events.recv().await {
            let mut batch = vec![first];
            while batch.len() < BATCH {
                match events.try_recv() {
                    Ok(e) => batch.push(e),
                    Err(_) => break,
                }
            }
            let (mut runs, mut segments) = (Vec::new(), Vec::new());
            for event in batch {
                match event {
                    Event::Segment(run, segment) => {
                        self.pending.fetch_sub(1, Ordering::Relaxed);
                        if !runs.contains(&run) {
                            runs.push(run);
                        }
                        segments.push(segment);
                    }
                    other => {
                        let told = self.tell(&runs, &segments).await;
                        note(&mut failing, told);
                        (runs, segments) = (Vec::new(), Vec::new());
                        let done = match other {
                            Event::Sync {
                                broadcast,
                                seal,
                                tries,
                            } => {
                                let done = self.sync(&root, &broadcast, seal).await;
                                if done.is_err() && tries < MAX_TRIES {
                                    self.retry(Event::Sync {
                                        broadcast,
                                        seal,
                                        tries: tries + 1,
                                    });
                                }
                                done
                            }
                            Event::Removed(broadcast) => self.removed(&broadcast).await,
                            Event::Flush(answer) => {
                                let _ = answer.send(());
                                Ok(())
                            }
                            Event::Segment(..) => unreachable!("matched above"),
                        };
                        note(&mut failing, done);
                    }
                }
            }
            let told = self.tell(&runs, &segments).await;
            note(&mut failing, told);
        }
    }

    /// Sends `event` again after [`RETRY`].
    fn retry(&self, event: Event) {
        let again = self.again.clone();
        tokio::spawn(async move {
            tokio::time::sleep(RETRY).await;
            if let Some(tx) = again.upgrade() {
                let _ = tx.send(event);
            }
        });
    }

    async fn tell(&self, runs: &[RunRow], segments: &[SegmentRow]) -> Result<(), StoreError> {
        if segments.is_empty() {
            return Ok(());
        }
        self.index.add_recorded(&self.node, runs, segments).await
    }

    /// Tells everything recorded here of `broadcast`, then seals it.
    async fn sync(
        &self,
        root: &std::path::Path,
        broadcast: &str,
        seal: bool,
    ) -> Result<(), StoreError> {
        let (root, id) = (root.to_owned(), broadcast.to_owned());
        let read = tokio::task::spawn_blocking(move || {
            let rec = disk::read(&root, &id);
            let thumbnail = std::fs::read(root.join(&id).join(disk::THUMBNAIL)).ok();
            (rec, thumbnail)
        })
        .await;
        let Ok((Ok(Some(rec)), thumbnail)) = read else {
            return Ok(());
        };
        if rec.deleted {
            return Ok(());
        }
        let (runs, segments) = rows_of(broadcast, &rec);
        for chunk in segments.chunks(BATCH * 2) {
            self.index.add_recorded(&self.node, &runs, chunk).await?;
        }
        if seal {
            self.index.seal(broadcast, thumbnail.as_deref()).await?;
            // The API says so here at once, with the whole length.
            match self.index.replay_state(broadcast).await? {
                Some(s) => self.remember(vec![(broadcast.to_owned(), s)]),
                None => self.forget(broadcast),
            }
            info!(%broadcast, "replay sealed for every origin");
        }
        Ok(())
    }

    /// Retention deleted `broadcast`'s recording here: a sealed replay goes
    /// everywhere (a replay goes whole); one still being recorded elsewhere
    /// is left (it misses this origin's part).
    async fn removed(&self, broadcast: &str) -> Result<(), StoreError> {
        match self.index.replay_state(broadcast).await? {
            Some(s) if s.ended && !s.deleted => {
                self.index.delete_replay(broadcast).await?;
                self.forget(broadcast);
                info!(%broadcast, "replay deleted on every origin (retention here)");
            }
            Some(s) if !s.ended => {
                warn!(%broadcast, "retention deleted this origin's part of a replay still being recorded elsewhere");
            }
            _ => {}
        }
        Ok(())
    }

    /// `broadcast`'s replay as every origin sees it, at most
    /// [`STATE_FRESH`] old.
    pub async fn state(&self, broadcast: &str) -> Result<Option<ReplayState>, StoreError> {
        if let Some((s, at)) = self.states_lock().get(broadcast)
            && at.elapsed() < STATE_FRESH
        {
            return Ok(Some(*s));
        }
        if let Some(at) = self.absent_lock().get(broadcast)
            && at.elapsed() < STATE_FRESH
        {
            return Ok(None);
        }
        let state = self.index.replay_state(broadcast).await?;
        match state {
            Some(s) => {
                self.states_lock()
                    .insert(broadcast.to_owned(), (s, Instant::now()));
            }
            None => {
                let mut absent = self.absent_lock();
                if absent.len() >= MAX_REMEMBERED {
                    absent.clear();
                }
                absent.insert(broadcast.to_owned(), Instant::now());
            }
        }
        Ok(state)
    }

    /// The last known state of `broadcast`'s replay, however old.
    pub fn known(&self, broadcast: &str) -> Option<ReplayState> {
        self.states_lock().get(broadcast).map(|(s, _)| *s)
    }

    /// Remembers states read in bulk.
    pub(super) fn remember(&self, states: Vec<(String, ReplayState)>) {
        let now = Instant::now();
        let mut known = self.states_lock();
        for (id, s) in states {
            known.insert(id, (s, now));
        }
    }

    /// Forgets what is known of `broadcast` (it changed here).
    pub(super) fn forget(&self, broadcast: &str) {
        self.states_lock().remove(broadcast);
    }

    /// Reads the states changed since `since` into memory; the new `since`.
    pub(super) async fn refresh(&self, since: Option<f64>) -> Option<f64> {
        match self
            .index
            .replays_changed(since.map(|s| s - OVERLAP_SECS))
            .await
        {
            Ok((states, latest)) => {
                self.remember(states);
                latest.or(since)
            }
            Err(err) => {
                debug!(%err, "replay states not read");
                since
            }
        }
    }

    /// The other origin that recorded `broadcast`'s run `generation` of
    /// `rendition`, if another did.
    pub async fn holder(&self, broadcast: &str, rendition: &str, generation: &str) -> Option<Node> {
        let key = format!("{broadcast}/{rendition}/{generation}");
        let cached = self.holders_lock().get(&key).cloned();
        let node = match cached {
            Some((node, at))
                if at.elapsed()
                    < if node.is_some() {
                        HOLDER_TTL
                    } else {
                        NO_HOLDER_TTL
                    } =>
            {
                node
            }
            _ => {
                let node = match self
                    .index
                    .run_holder(broadcast, rendition, generation)
                    .await
                {
                    Ok(n) => n,
                    Err(err) => {
                        debug!(%err, "run holder not read");
                        return None;
                    }
                };
                let mut holders = self.holders_lock();
                if holders.len() >= MAX_REMEMBERED {
                    holders.clear();
                }
                holders.insert(key, (node.clone(), Instant::now()));
                node
            }
        };
        node.filter(|n| n.id != self.node.id)
    }

    fn states_lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (ReplayState, Instant)>> {
        self.states.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn absent_lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Instant>> {
        self.absent.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn holders_lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Option<Node>, Instant)>> {
        self.holders.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// Logs the first failure of a run of them, and the recovery.
fn note(failing: &mut bool, result: Result<(), StoreError>) {
    match result {
        Ok(()) => {
            if std::mem::replace(failing, false) {
                info!("recordings reach the database again");
            }
        }
        Err(err) => {
            if !std::mem::replace(failing, true) {
                warn!(%err, "recordings not told to the database (told again at the end)");
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use std::sync::atomic::AtomicU32;

    use super::*;
    use crate::recording::replay::tests::entry;
    use crate::store::recordings::ReplayIndex;

    /// A database that fails the first `failures` additions, and keeps
    /// what it was told.
    #[derive(Default)]
    pub(crate) struct Flaky {
        failures: AtomicU32,
        added: Mutex<Vec<u64>>,
        sealed: Mutex<Vec<String>>,
        state: Mutex<Option<ReplayState>>,
        deleted: Mutex<Vec<String>>,
    }

    #[async_trait::async_trait]
    impl Recordings for Flaky {
        async fn add_recorded(
            &self,
            _: &Node,
            _: &[RunRow],
            segments: &[SegmentRow],
        ) -> Result<(), StoreError> {
            if self
                .failures
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1))
                .is_ok()
            {
                return Err(StoreError::Database("down".into()));
            }
            self.added
                .lock()
                .unwrap()
                .extend(segments.iter().map(|s| s.msn));
            Ok(())
        }
        async fn seal(&self, broadcast: &str, _: Option<&[u8]>) -> Result<(), StoreError> {
            self.sealed.lock().unwrap().push(broadcast.into());
            Ok(())
        }
        async fn seal_stragglers(&self, _: Duration) -> Result<Vec<String>, StoreError> {
            Ok(Vec::new())
        }
        async fn delete_replay(&self, broadcast: &str) -> Result<bool, StoreError> {
            self.deleted.lock().unwrap().push(broadcast.into());
            Ok(true)
        }
        async fn replay_state(&self, _: &str) -> Result<Option<ReplayState>, StoreError> {
            Ok(*self.state.lock().unwrap())
        }
        async fn replays_changed(
            &self,
            _: Option<f64>,
        ) -> Result<(Vec<(String, ReplayState)>, Option<f64>), StoreError> {
            Ok((Vec::new(), None))
        }
        async fn replay_index(&self, _: &str) -> Result<ReplayIndex, StoreError> {
            Ok(ReplayIndex::default())
        }
        async fn run_holder(&self, _: &str, _: &str, _: &str) -> Result<Option<Node>, StoreError> {
            Ok(None)
        }
        async fn replay_thumbnail(&self, _: &str) -> Result<Option<Vec<u8>>, StoreError> {
            Ok(None)
        }
        async fn deleted_among(&self, _: &[String]) -> Result<Vec<String>, StoreError> {
            Ok(Vec::new())
        }
    }

    #[tokio::test]
    async fn retention_here_deletes_a_sealed_replay_everywhere_and_never_one_still_recorded() {
        let db = Arc::new(Flaky::default());
        let node = Node {
            id: "a".into(),
            url: "http://a".into(),
        };
        let (across, outbox, events) = Across::new(db.clone(), node);
        let root = tempfile::tempdir().unwrap();
        let publisher = tokio::spawn(across.publish(root.path().to_owned(), events));
        let flush = async || {
            let (tx, rx) = oneshot::channel();
            outbox.flush(tx);
            rx.await.unwrap();
        };
        let state = |ended| ReplayState {
            ended,
            deleted: false,
            duration_secs: 1.0,
        };
        // Still being recorded on another origin: only this part goes.
        *db.state.lock().unwrap() = Some(state(false));
        outbox.removed("live");
        flush().await;
        assert!(db.deleted.lock().unwrap().is_empty());
        *db.state.lock().unwrap() = Some(state(true));
        outbox.removed("sealed");
        flush().await;
        assert_eq!(*db.deleted.lock().unwrap(), ["sealed"]);
        drop(outbox);
        publisher.await.unwrap();
    }

    #[tokio::test(start_paused = true)]
    async fn an_end_the_database_missed_is_told_and_sealed_once_it_answers() {
        let root = tempfile::tempdir().unwrap();
        let dir = root.path().join("b1/g1/720p");
        disk::create_dirs(root.path(), &dir).unwrap();
        for msn in [1, 2] {
            let line = serde_json::to_string(&entry(msn, msn * 2)).unwrap();
            disk::append_line(&dir.join(disk::INDEX), &line).unwrap();
        }
        let db = Arc::new(Flaky::default());
        db.failures.store(2, Ordering::Relaxed);
        let node = Node {
            id: "a".into(),
            url: "http://a".into(),
        };
        let (across, outbox, events) = Across::new(db.clone(), node);
        let publisher = tokio::spawn(across.publish(root.path().to_owned(), events));
        outbox.sync("b1", true);
        let (tx, rx) = oneshot::channel();
        outbox.flush(tx);
        rx.await.unwrap();
        assert!(db.sealed.lock().unwrap().is_empty(), "the database failed");
        // Tried again every 5 s: the first retry fails too, the second works.
        tokio::time::sleep(RETRY * 2 + Duration::from_millis(100)).await;
        for _ in 0..100 {
            if !db.sealed.lock().unwrap().is_empty() {
                break;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(*db.sealed.lock().unwrap(), ["b1"]);
        assert_eq!(*db.added.lock().unwrap(), [1, 2]);
        drop(outbox);
        tokio::time::sleep(RETRY).await;
        publisher.await.unwrap();
    }
}
