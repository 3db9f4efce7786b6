//! Several origins as one service. With `--database-url`, each origin is a
//! node: it claims the live windows it packages, beats once a second (its
//! holdings and its viewers per broadcast), and forwards requests for a
//! window another origin holds to that origin. Without a shared database
//! the origin is alone, and every question here has the local answer.
//!
//! Holding a window is fenced by an epoch the database bumps whenever the
//! holder changes: a take-over continues the old holder's counters, and an
//! origin that finds another holding its window (it was paused, cut off or
//! drained) stands down.
//!
//! Layout:
//! - [`config`]: node id, advertised URL, intervals, proxy limits.
//! - [`proxy`]: forwarding a request to another origin.
//! - [`counters`]: window counters written for whoever takes over.

pub mod config;
pub mod counters;
pub mod proxy;

use std::collections::HashMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::HeaderMap;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use self::config::ClusterConfig;
use self::proxy::{FORWARDED_BY, Proxy};
use crate::hls::saved::Counters;
use crate::store::keys::same;
use crate::store::{Beat, Claim, Echo, Node, Shared, Store, StoreError};

/// How long an answer to "who holds this window" is reused. A new publish
/// on another origin is found within it.
const OWNER_CACHE: Duration = Duration::from_secs(1);
/// "Nobody holds it" is reused for less: a broadcast going live is found sooner.
const NO_OWNER_CACHE: Duration = Duration::from_millis(250);
/// Entries kept in the owner cache before it is cleared.
const OWNER_CACHE_ENTRIES: usize = 10_000;

struct Cached {
    owner: Option<Node>,
    at: Instant,
}

/// What claiming a window came to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Claimed {
    /// This origin holds it (as before, or for the first time).
    Held,
    /// This origin took it over from another: continue that one's counters.
    TakenOver,
    /// Another origin holds it.
    Elsewhere,
}

/// This origin among the others.
pub struct Cluster {
    /// This origin.
    pub node: Node,
    /// Settings.
    pub config: ClusterConfig,
    shared: Option<Arc<dyn Shared>>,
    store: Arc<dyn Store>,
    owners: Mutex<HashMap<String, Cached>>,
    /// The windows this origin holds, with their epochs.
    held: Mutex<HashMap<String, u64>>,
    outbox: counters::Outbox,
    /// Reaches the other origins.
    pub proxy: Proxy,
}

impl Cluster {
    /// This origin as `node`; alone when `shared` is `None`.
    pub fn new(
        config: ClusterConfig,
        node: Node,
        store: Arc<dyn Store>,
        shared: Option<Arc<dyn Shared>>,
    ) -> Arc<Cluster> {
        let signature = format!("{} {}", node.id, store.origin_token(&node.id));
        Arc::new(Cluster {
            proxy: Proxy::new(&config, &signature),
            node,
            config,
            shared,
            store,
            owners: Mutex::default(),
            held: Mutex::default(),
            outbox: counters::Outbox::default(),
        })
    }

    /// Whether other origins share this one's state.
    pub fn is_shared(&self) -> bool {
        self.shared.is_some()
    }

    /// Makes this origin the holder of `broadcast`'s window (see
    /// [`Shared::claim`]). A database that is away is logged, and the next
    /// beat claims the window if nobody else has.
    pub async fn claim(&self, broadcast: &str, take_over: bool) -> Claimed {
        let Some(shared) = &self.shared else {
            return Claimed::Held;
        };
        self.lock().remove(broadcast);
        match shared.claim(broadcast, &self.node, take_over).await {
            Ok(Some(Claim { epoch, taken_over })) => {
                self.held_lock().insert(broadcast.to_owned(), epoch);
                if taken_over {
                    info!(%broadcast, epoch, "taken over from another origin");
                    Claimed::TakenOver
                } else {
                    Claimed::Held
                }
            }
            Ok(None) => {
                info!(%broadcast, "another origin holds this broadcast");
                Claimed::Elsewhere
            }
            Err(err) => {
                warn!(%broadcast, %err, "window not claimed; the next beat will");
                self.held_lock().entry(broadcast.to_owned()).or_insert(1);
                Claimed::Held
            }
        }
    }

    /// The epoch this origin holds `broadcast` at, if it does.
    pub fn epoch(&self, broadcast: &str) -> Option<u64> {
        self.held_lock().get(broadcast).copied()
    }

    /// `windows` (held here) with the epoch each is held at; 1 for one
    /// whose claim has not reached the database yet.
    pub fn with_epochs(&self, windows: Vec<String>) -> Vec<(String, u64)> {
        let held = self.held_lock();
        windows
            .into_iter()
            .map(|id| {
                let epoch = held.get(&id).copied().unwrap_or(1);
                (id, epoch)
            })
            .collect()
    }

    /// Forgets holding `broadcast` (it ended, or another origin holds it).
    pub fn release(&self, broadcast: &str) {
        self.held_lock().remove(broadcast);
    }

    /// The counters the last holder of `broadcast` wrote, by rendition
    /// (none when the database is away or nothing was written).
    pub async fn counters(&self, broadcast: &str) -> Vec<(String, Counters)> {
        let Some(shared) = &self.shared else {
            return Vec::new();
        };
        match shared.counters(broadcast).await {
            Ok(rows) => rows
                .into_iter()
                .filter_map(|(rendition, json)| match serde_json::from_str(&json) {
                    Ok(c) => Some((rendition, c)),
                    Err(err) => {
                        warn!(%broadcast, %rendition, %err, "stored counters unreadable");
                        None
                    }
                })
                .collect(),
            Err(err) => {
                warn!(%broadcast, %err, "counters not read; the playlists start over");
                Vec::new()
            }
        }
    }

    /// Whether another origin holds `broadcast` now (asked afresh; a
    /// database that is away says no).
    pub async fn lost(&self, broadcast: &str) -> bool {
        self.forget_owner(broadcast);
        matches!(self.owner_elsewhere(broadcast).await, Ok(Some(_)))
    }

    /// Forgets the cached holder of `broadcast` (it was unreachable, or
    /// the answer must be fresh).
    pub fn forget_owner(&self, broadcast: &str) {
        self.lock().remove(broadcast);
    }

    /// The other origin holding `broadcast`'s window: `None` when this one
    /// does, nobody does, or this origin is alone. Answers are reused
    /// briefly; while the database is away an earlier answer stands.
    pub async fn owner_elsewhere(&self, broadcast: &str) -> Result<Option<Node>, StoreError> {
        let Some(shared) = &self.shared else {
            return Ok(None);
        };
        let now = Instant::now();
        let stale = match self.lock().get(broadcast) {
            Some(c) => {
                let ttl = if c.owner.is_some() {
                    OWNER_CACHE
                } else {
                    NO_OWNER_CACHE
                };
                if now - c.at < ttl {
                    return Ok(self.elsewhere(c.owner.clone()));
                }
                Some(c.owner.clone())
            }
            None => None,
        };
        let owner = match shared.owner(broadcast).await {
            Ok(owner) => owner,
            Err(err) => match stale {
                Some(owner) => {
                    debug!(%broadcast, %err, "owner lookup failed; using the last answer");
                    return Ok(self.elsewhere(owner));
                }
                None => return Err(err),
            },
        };
        let mut cache = self.lock();
        if cache.len() >= OWNER_CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(
            broadcast.to_owned(),
            Cached {
                owner: owner.clone(),
                at: now,
            },
        );
        Ok(self.elsewhere(owner))
    }

    fn elsewhere(&self, owner: Option<Node>) -> Option<Node> {
        owner.filter(|o| o.id != self.node.id)
    }

    /// Whether a request was forwarded by an origin sharing this one's
    /// database (its signature checks out).
    pub fn forwarded(&self, headers: &HeaderMap) -> bool {
        let Some((node, token)) = headers
            .get(FORWARDED_BY)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
        else {
            return false;
        };
        self.is_shared() && same(&self.store.origin_token(node), token)
    }

    /// Beats every heartbeat interval until `shutdown`: `local` says what
    /// this origin holds (at which epoch) and who watches here;
    /// `echo` is given what the others did, and what this beat swept
    /// (broadcasts whose holder stopped beating longer than `grace` ago).
    /// Alone, it returns at once.
    pub async fn run<F, Fut>(
        self: Arc<Self>,
        grace: Duration,
        local: impl Fn() -> Beat,
        echo: F,
        shutdown: CancellationToken,
    ) where
        F: Fn(Echo) -> Fut,
        Fut: Future<Output = ()>,
    {
        let Some(shared) = self.shared.clone() else {
            return;
        };
        let mut tick = tokio::time::interval(self.config.heartbeat_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut failing = false;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tick.tick() => {}
            }
            let beat = local();
            match shared
                .beat(&self.node, &beat, self.config.viewers_expiry, grace)
                .await
            {
                Ok(e) => {
                    if std::mem::replace(&mut failing, false) {
                        info!("heartbeat back");
                    }
                    echo(e).await;
                }
                Err(err) => {
                    // The last counts from elsewhere stand until it is back.
                    if !std::mem::replace(&mut failing, true) {
                        warn!(%err, "heartbeat failed");
                    }
                }
            }
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, Cached>> {
        self.owners.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn held_lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, u64>> {
        self.held.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Writes the counters handed over (see [`counters`]) until `stop`.
    pub async fn write_counters(self: Arc<Self>, stop: CancellationToken) {
        if let Some(shared) = self.shared.clone() {
            let epoch = |b: &str| self.epoch(b);
            self.outbox
                .run(shared, self.node.clone(), epoch, stop)
                .await;
        }
    }

    /// Waits until the counters handed over are written, at most `limit`;
    /// whether they were.
    pub async fn flush_counters(&self, limit: Duration) -> bool {
        self.shared.is_none() || self.outbox.flush(limit).await
    }
}

impl crate::hls::CounterSink for Cluster {
    fn save(&self, broadcast: &str, rendition: &str, counters: Counters) {
        if self.shared.is_some() {
            self.outbox.put(broadcast, rendition, counters);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use tokio::sync::mpsc;

    use super::*;
    use crate::store::FeedEvent;
    use crate::store::embedded::SledStore;

    /// A database that answers `owner` from a field, or fails, and counts.
    #[derive(Default)]
    struct Fake {
        owner: Mutex<Option<Node>>,
        down: std::sync::atomic::AtomicBool,
        asked: AtomicUsize,
    }

    #[async_trait::async_trait]
    impl Shared for Fake {
        async fn claim(&self, _: &str, _: &Node, _: bool) -> Result<Option<Claim>, StoreError> {
            Ok(Some(Claim {
                epoch: 1,
                taken_over: false,
            }))
        }
        async fn save_counters(
            &self,
            _: &str,
            _: &str,
            _: &Node,
            _: u64,
            _: &str,
        ) -> Result<bool, StoreError> {
            Ok(true)
        }
        async fn counters(&self, _: &str) -> Result<Vec<(String, String)>, StoreError> {
            Ok(Vec::new())
        }
        async fn owner(&self, _: &str) -> Result<Option<Node>, StoreError> {
            self.asked.fetch_add(1, Ordering::Relaxed);
            if self.down.load(Ordering::Relaxed) {
                return Err(StoreError::Database("down".into()));
            }
            Ok(self.owner.lock().unwrap().clone())
        }
        async fn beat(
            &self,
            _: &Node,
            _: &Beat,
            _: Duration,
            _: Duration,
        ) -> Result<Echo, StoreError> {
            Ok(Echo::default())
        }
        fn follow_chat(&self) -> mpsc::Receiver<FeedEvent> {
            mpsc::channel(1).1
        }
    }

    fn node(id: &str) -> Node {
        Node {
            id: id.into(),
            url: format!("http://{id}:8080"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn the_holder_is_asked_at_most_once_a_second_and_remembered_while_the_database_is_away() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SledStore::open(dir.path()).unwrap());
        let fake = Arc::new(Fake::default());
        let cluster = Cluster::new(Default::default(), node("a"), store, Some(fake.clone()));
        let asked = || fake.asked.load(Ordering::Relaxed);

        // Nobody holds it: asked again after 250 ms, not before.
        assert_eq!(cluster.owner_elsewhere("x").await.unwrap(), None);
        assert_eq!(cluster.owner_elsewhere("x").await.unwrap(), None);
        assert_eq!(asked(), 1);
        *fake.owner.lock().unwrap() = Some(node("b"));
        tokio::time::sleep(Duration::from_millis(300)).await;
        assert_eq!(cluster.owner_elsewhere("x").await.unwrap(), Some(node("b")));
        assert_eq!(asked(), 2);
        // Held elsewhere: remembered for a second.
        tokio::time::sleep(Duration::from_millis(900)).await;
        cluster.owner_elsewhere("x").await.unwrap();
        assert_eq!(asked(), 2);
        // The database goes away: the last answer stands.
        fake.down.store(true, Ordering::Relaxed);
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(cluster.owner_elsewhere("x").await.unwrap(), Some(node("b")));
        assert_eq!(asked(), 3);
        // Never asked before: the error is the answer.
        assert!(cluster.owner_elsewhere("y").await.is_err());
        // This origin holding it is not "elsewhere".
        fake.down.store(false, Ordering::Relaxed);
        *fake.owner.lock().unwrap() = Some(node("a"));
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(cluster.owner_elsewhere("x").await.unwrap(), None);
    }

    #[tokio::test]
    async fn only_a_signature_made_with_the_shared_secret_is_an_origins() {
        let dir = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(SledStore::open(dir.path()).unwrap());
        let shared = Cluster::new(
            Default::default(),
            node("a"),
            store.clone(),
            Some(Arc::new(Fake::default())),
        );
        let alone = Cluster::new(Default::default(), node("a"), store.clone(), None);
        let headers = |v: &str| {
            let mut h = HeaderMap::new();
            h.insert(FORWARDED_BY, v.parse().unwrap());
            h
        };
        let good = headers(&format!("b {}", store.origin_token("b")));
        assert!(shared.forwarded(&good));
        assert!(!alone.forwarded(&good), "alone, nothing is forwarded");
        assert!(!shared.forwarded(&headers(&format!("c {}", store.origin_token("b")))));
        assert!(!shared.forwarded(&headers("b 00")));
        assert!(!shared.forwarded(&HeaderMap::new()));
    }
}
