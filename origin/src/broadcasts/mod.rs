//! The broadcast lifecycle, with one owner. A publish is authorized, then
//! transcoded and packaged; the broadcast is live while it runs and through
//! the reconnect grace after it; then it ends: its record says `ended` and its
//! playlists get EXT-X-ENDLIST. Its owner can end it sooner, which
//! disconnects the publisher.
//!
//! ```text
//! ready --publish--> live --publisher gone--> grace --grace over--> ended
//!                     ^                        |
//!                     +-----publisher back-----+      (owner: any -> ended)
//! ```
//!
//! With several origins, a publish on another origin takes the broadcast
//! over: the origin that held it stands down (its publisher, if any, is
//! disconnected; its window is released without ENDLIST), and its grace
//! timer ends nothing. A broadcast whose origin died is ended by the
//! sweeper (see [`crate::store::Echo::swept`]) if its publisher does not come
//! back anywhere within the grace.
//!
//! The API asks this module (end, thumbnail, who may publish); [`crate::hls`]
//! is told (package this publish, end these playlists). Each publish gets a
//! session number; a grace timer ends the broadcast only if no later publish
//! started, so there is one timer per publish and none after a restart.
//! Going live and ending are posted to the webhooks; [`media`] carries a
//! publish's media to its transcoder, counting and measuring it.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use ingest::{Grant, Publish, Refusal};
use tokio::sync::{mpsc, watch};
use tokio_util::sync::CancellationToken;
use tracing::{Instrument, debug, info, warn};

mod media;

use self::media::{forward, sample_usage};
use crate::cluster::{Claimed, Cluster};
use crate::health::{Health, TranscodeHealth};
use crate::hls::Hls;
use crate::metrics::{BroadcastLabel, Metrics};
use crate::store::record::Status;
use crate::store::{Store, StoreError};
use crate::webhooks::{Kind, Webhooks};

/// Media events between a publish and its transcoder: the hop that lets
/// ending a broadcast disconnect its publisher.
const FORWARD_CAPACITY: usize = 64;

/// Where a broadcast that is not over stands.
struct Live {
    /// The publish that last took it live; 0 for one restored at start.
    session: u64,
    /// Ends that publish's media hop (the publisher is disconnected).
    cancel: CancellationToken,
    /// The transcode's latest thumbnail.
    thumbnails: Option<watch::Receiver<Option<Bytes>>>,
}

/// Every broadcast's lifecycle.
pub struct Broadcasts {
    store: Arc<dyn Store>,
    hls: Arc<Hls>,
    cluster: Arc<Cluster>,
    metrics: Arc<Metrics>,
    transcoder: Arc<transcoder::TranscoderConfig>,
    /// Stream keys from the command line, each publishing to the broadcast of
    /// its own name (development without the API; no record in the store).
    static_keys: HashSet<String>,
    /// How long a broadcast waits for its publisher to come back.
    grace: Duration,
    live: Mutex<HashMap<String, Live>>,
    sessions: AtomicU64,
    /// Real-time (WHEP) viewers get the transcoder's feeds through it.
    realtime: std::sync::OnceLock<webrtc::Webrtc>,
    /// Where going live and ending are posted.
    webhooks: std::sync::OnceLock<Arc<Webhooks>>,
    /// What arrives from each publisher, and what viewers report.
    pub health: Arc<Health>,
}

impl Broadcasts {
    /// No broadcast live yet; see [`Broadcasts::restore`].
    pub fn new(
        store: Arc<dyn Store>,
        hls: Arc<Hls>,
        cluster: Arc<Cluster>,
        metrics: Arc<Metrics>,
        transcoder: transcoder::TranscoderConfig,
        static_keys: HashSet<String>,
    ) -> Arc<Broadcasts> {
        let grace = hls.config.reconnect_grace;
        Arc::new(Broadcasts {
            store,
            hls,
            cluster,
            metrics,
            transcoder: Arc::new(transcoder),
            static_keys,
            grace,
            live: Mutex::default(),
            sessions: AtomicU64::new(0),
            realtime: std::sync::OnceLock::new(),
            webhooks: std::sync::OnceLock::new(),
            health: Arc::default(),
        })
    }

    /// Serves live broadcasts' feeds to WebRTC viewers through `webrtc`.
    pub fn serve_realtime(&self, webrtc: webrtc::Webrtc) {
        let _ = self.realtime.set(webrtc);
    }

    /// The transcoder's side of `id`'s health, from the metrics, and the
    /// ladder's top bitrate.
    pub fn transcode_health(&self, id: &str) -> (TranscodeHealth, u32) {
        let l = BroadcastLabel {
            broadcast: id.to_owned(),
        };
        let health = TranscodeHealth {
            dropped_frames: (self.metrics.transcode_dropped_frames.get(&l)).map_or(0, |c| c.get()),
            realtime_factor: (self.metrics.transcode_realtime_factor.get(&l))
                .map_or(0.0, |g| g.get()),
        };
        let top = self
            .transcoder
            .renditions
            .iter()
            .map(|r| r.bitrate_kbps)
            .max()
            .unwrap_or(0);
        (health, top)
    }

    /// Posts going live and ending to `webhooks`.
    pub fn send_events(&self, webhooks: Arc<Webhooks>) {
        let _ = self.webhooks.set(webhooks);
    }

    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<String, Live>> {
        self.live.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// After a restart: windows of broadcasts that are not over continue
    /// where they stopped; broadcasts that were live wait one reconnect grace
    /// for their publishers, then end. Broadcasts another origin holds are
    /// that origin's to continue or end.
    pub async fn restore(self: &Arc<Self>) -> Result<(), StoreError> {
        let records = self.store.all().await?;
        let mut others = HashSet::new();
        for r in records.iter().filter(|r| r.status == Status::Live) {
            if self.cluster.owner_elsewhere(&r.id).await?.is_some() {
                others.insert(r.id.clone());
            }
        }
        let mut skip: HashSet<String> = records
            .iter()
            .filter(|r| r.status == Status::Ended)
            .map(|r| r.id.clone())
            .collect();
        skip.extend(others.iter().cloned());
        let mut waiting = self.hls.restore(move |id| !skip.contains(id)).await;
        waiting.extend(
            records
                .into_iter()
                .filter(|r| r.status == Status::Live && !others.contains(&r.id))
                .map(|r| r.id),
        );
        waiting.sort();
        waiting.dedup();
        if waiting.is_empty() {
            return Ok(());
        }
        info!(
            count = waiting.len(),
            "broadcasts were live at the last stop; waiting for their publishers"
        );
        for id in waiting {
            if self.cluster.claim(&id, false).await == Claimed::Elsewhere {
                self.hls.release(&id);
                continue;
            }
            self.live().entry(id.clone()).or_insert(Live {
                session: 0,
                cancel: CancellationToken::new(),
                thumbnails: None,
            });
            self.end_after_grace(id, 0);
        }
        Ok(())
    }

    /// Takes each accepted publish until `shutdown`.
    pub async fn run(
        self: Arc<Self>,
        mut publishes: mpsc::Receiver<Publish>,
        shutdown: CancellationToken,
    ) {
        loop {
            let publish = tokio::select! {
                _ = shutdown.cancelled() => return,
                p = publishes.recv() => match p { Some(p) => p, None => return },
            };
            let span = tracing::info_span!("publish", broadcast = %publish.broadcast_id, peer = %publish.peer);
            tokio::spawn(self.clone().publish(publish).instrument(span));
        }
    }

    /// One publish: transcode and package it; when the publisher is gone,
    /// wait for it to come back.
    async fn publish(self: Arc<Self>, publish: Publish) {
        let id = publish.broadcast_id;
        let session = self.sessions.fetch_add(1, Ordering::Relaxed) + 1;
        let cancel = CancellationToken::new();
        let (tx, input) = mpsc::channel(FORWARD_CAPACITY);
        tokio::spawn({
            let (metrics, health, id) = (self.metrics.clone(), self.health.clone(), id.clone());
            let forwarding = forward(
                publish.media,
                tx,
                cancel.clone(),
                metrics,
                health.clone(),
                id.clone(),
            );
            async move {
                forwarding.await;
                health.ended(&id);
            }
        });
        let transcode =
            match transcoder::start(self.transcoder.clone(), input, publish.keyframes).await {
                Ok(t) => t,
                Err(err) => {
                    warn!(%err, "transcode did not start");
                    return;
                }
            };
        tokio::spawn(sample_usage(
            transcode.usage.clone(),
            self.metrics.clone(),
            id.clone(),
        ));
        self.live().insert(
            id.clone(),
            Live {
                session,
                cancel,
                thumbnails: Some(transcode.thumbnails.clone()),
            },
        );
        self.set_status(&id, Status::Live).await;
        // A new publish takes the broadcast over from any other origin, and
        // continues its playlists.
        if self.cluster.claim(&id, true).await == Claimed::TakenOver {
            let counters = self.cluster.counters(&id).await;
            if counters.is_empty() {
                self.hls.release(&id);
            } else {
                self.hls.continue_from(&id, counters);
            }
        }
        let feeds = webrtc::Feeds {
            renditions: transcode.realtime.renditions.clone(),
            audio: transcode.realtime.audio.clone(),
        };
        if let Some(w) = self.realtime.get() {
            w.live(&id, feeds.clone()).await;
        }
        // Static keys publish to broadcasts without a record: recorded.
        let recorded = self.store.get(&id).await.map_or(true, |r| r.recorded);
        self.hls.publish(&id, transcode.renditions, recorded).await;
        if let Some(jpeg) = transcode.thumbnails.borrow().clone() {
            self.hls.record_thumbnail(&id, jpeg);
        }
        let outcome = transcode.task.await;
        if let Some(w) = self.realtime.get() {
            w.not_live(&id, &feeds);
        }
        self.count_outcome(&id, outcome);
        self.end_after_grace(id, session);
    }

    fn count_outcome(
        &self,
        id: &str,
        outcome: Result<Result<transcoder::Stats, transcoder::Error>, tokio::task::JoinError>,
    ) {
        match outcome {
            Ok(Ok(stats)) => {
                let l = BroadcastLabel {
                    broadcast: id.to_owned(),
                };
                self.metrics
                    .transcode_dropped_frames
                    .get_or_create(&l)
                    .inc_by(stats.dropped);
                self.metrics
                    .transcode_restarts
                    .get_or_create(&l)
                    .inc_by(u64::from(stats.restarts));
                debug!(?stats, "transcode done");
            }
            Ok(Err(err)) => warn!(%err, "transcode failed"),
            Err(err) => warn!(%err, "transcode task failed"),
        }
    }

    /// Ends the broadcast unless a later publish starts within the grace.
    fn end_after_grace(self: &Arc<Self>, id: String, session: u64) {
        let this = self.clone();
        tokio::spawn(async move {
            tokio::time::sleep(this.grace).await;
            let current = this.live().get(&id).map(|l| l.session);
            if current != Some(session) {
                return;
            }
            // The publisher may have come back on another origin.
            if this.cluster.lost(&id).await {
                this.stand_down(&id);
            } else {
                this.end(&id).await;
            }
        });
    }

    /// Another origin holds `id` now: its publisher here (if any) is
    /// disconnected, its window released (no ENDLIST: it goes on there),
    /// and nothing here ends it.
    pub fn stand_down(&self, id: &str) {
        let live = self.live().remove(id);
        if let Some(live) = &live {
            live.cancel.cancel();
        }
        let released = self.hls.release(id);
        self.cluster.release(id);
        if live.is_some() || released {
            info!(broadcast = %id, "another origin holds this broadcast now; standing down");
        }
    }

    /// What a beat brought: broadcasts another origin took over, and the
    /// ones it ended because their origin died and their publisher did not
    /// come back.
    pub fn after_beat(&self, lost: Vec<String>, swept: Vec<String>) {
        for id in lost {
            self.stand_down(&id);
        }
        for id in swept {
            info!(broadcast = %id, "ended: its origin stopped answering and its publisher did not come back within the grace");
        }
    }

    /// Ends a broadcast now: its publisher (if any) is disconnected, its
    /// record says `ended` and its playlists get EXT-X-ENDLIST. Ending an
    /// ended broadcast changes nothing.
    pub async fn end(&self, id: &str) {
        if let Some(live) = self.live().remove(id) {
            live.cancel.cancel();
        }
        self.set_status(id, Status::Ended).await;
        self.hls.end(id);
        self.cluster.release(id);
        if let Some(w) = self.realtime.get() {
            w.ended(id).await;
        }
    }

    /// Frees the lingering window of an ended broadcast whose replay was
    /// deleted, so none of its media is served from memory either.
    pub fn forget_window(&self, id: &str) {
        if self
            .hls
            .broadcast(id)
            .is_some_and(|b| b.ended_at().is_some())
        {
            self.hls.release(id);
        }
    }

    /// Ends the broadcasts among `ids` that are live here but whose record
    /// says ended (their owner ended them through another origin).
    pub async fn ended_elsewhere(&self, ids: Vec<String>) {
        for id in ids {
            if self.live().contains_key(&id) {
                info!(broadcast = %id, "ended through another origin");
                self.end(&id).await;
            }
        }
    }

    async fn set_status(&self, id: &str, status: Status) {
        let before = self.store.get(id).await.ok().map(|r| r.status);
        match self.store.set_status(id, status).await {
            Ok(r) => {
                let kind = match status {
                    Status::Live => Some(Kind::Live),
                    Status::Ended => Some(Kind::Ended),
                    Status::Ready => None,
                };
                if let (Some(kind), Some(hooks)) = (kind, self.webhooks.get())
                    && before != Some(status)
                {
                    hooks.emit(kind, &r);
                }
            }
            // Static keys publish to broadcasts without a record.
            Err(StoreError::NotFound) if self.static_keys.contains(id) => {}
            Err(err) => warn!(broadcast = %id, ?status, %err, "broadcast status not recorded"),
        }
    }

    /// The latest thumbnail of a live broadcast.
    pub fn thumbnail(&self, id: &str) -> Option<Bytes> {
        self.live()
            .get(id)?
            .thumbnails
            .as_ref()
            .and_then(|rx| rx.borrow().clone())
    }
}

#[async_trait::async_trait]
impl ingest::Authorizer for Broadcasts {
    async fn authorize(&self, stream_key: &str) -> Result<Grant, Refusal> {
        if self.static_keys.contains(stream_key) {
            return Ok(Grant {
                broadcast_id: stream_key.to_owned(),
            });
        }
        match self.store.by_key(stream_key).await {
            Ok(Some(r)) if r.status == Status::Ended => Err(Refusal::Ended),
            Ok(Some(r)) => Ok(Grant { broadcast_id: r.id }),
            Ok(None) => Err(Refusal::UnknownKey),
            Err(err) => {
                warn!(%err, "stream key lookup failed");
                Err(Refusal::Unavailable)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hls::HlsConfig;
    use crate::store::embedded::SledStore;
    use crate::store::record::NewBroadcast;

    const GRACE: Duration = Duration::from_secs(15);

    async fn lifecycle(dir: &std::path::Path) -> (Arc<Broadcasts>, Arc<dyn Store>) {
        let store: Arc<dyn Store> = Arc::new(SledStore::open(dir).unwrap());
        let hls = Hls::new(
            HlsConfig {
                reconnect_grace: GRACE,
                ..Default::default()
            },
            Arc::default(),
            None,
        );
        let alone = Cluster::new(
            Default::default(),
            crate::store::Node {
                id: "a".into(),
                url: "http://127.0.0.1:1".into(),
            },
            store.clone(),
            None,
        );
        let b = Broadcasts::new(
            store.clone(),
            hls,
            alone,
            Arc::default(),
            Default::default(),
            HashSet::from(["dev".to_owned()]),
        );
        (b, store)
    }

    #[tokio::test(start_paused = true)]
    async fn a_broadcast_live_at_a_restart_ends_after_one_grace_unless_ended_sooner() {
        let dir = tempfile::tempdir().unwrap();
        let (b, store) = lifecycle(dir.path()).await;
        let waiting = store.create(NewBroadcast::titled("a")).await.unwrap();
        let ended_by_owner = store.create(NewBroadcast::titled("b")).await.unwrap();
        let ready = store.create(NewBroadcast::titled("c")).await.unwrap();
        for c in [&waiting, &ended_by_owner] {
            store.set_status(&c.record.id, Status::Live).await.unwrap();
        }
        b.restore().await.unwrap();
        let status = |id: String| {
            let store = store.clone();
            async move { store.get(&id).await.unwrap().status }
        };
        tokio::time::sleep(GRACE - Duration::from_millis(100)).await;
        assert_eq!(status(waiting.record.id.clone()).await, Status::Live);
        b.end(&ended_by_owner.record.id).await;
        assert_eq!(
            status(ended_by_owner.record.id.clone()).await,
            Status::Ended
        );
        let ended_at = store.get(&ended_by_owner.record.id).await.unwrap().ended_at;
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(status(waiting.record.id.clone()).await, Status::Ended);
        assert_eq!(status(ready.record.id.clone()).await, Status::Ready);
        // The grace timer's end changes nothing of the owner's.
        assert_eq!(
            store.get(&ended_by_owner.record.id).await.unwrap().ended_at,
            ended_at
        );
    }

    #[tokio::test]
    async fn stream_keys_are_granted_refused_or_unknown() {
        use ingest::Authorizer;
        let dir = tempfile::tempdir().unwrap();
        let (b, store) = lifecycle(dir.path()).await;
        let c = store.create(NewBroadcast::titled("a")).await.unwrap();
        let grant = b.authorize(&c.stream_key).await.unwrap();
        assert_eq!(grant.broadcast_id, c.record.id);
        assert_eq!(b.authorize("dev").await.unwrap().broadcast_id, "dev");
        assert_eq!(b.authorize("nope").await, Err(Refusal::UnknownKey));
        b.end(&c.record.id).await;
        assert_eq!(b.authorize(&c.stream_key).await, Err(Refusal::Ended));
        // Ending a static-key broadcast (no record) is not an error.
        b.end("dev").await;
    }
}
