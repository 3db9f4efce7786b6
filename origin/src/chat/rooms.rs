//! Rooms: who is in each, the viewer count, recent history, and the room's
//! task that sends what happened since its last tick as one frame.
//!
//! What a join or a leave costs is O(1): it updates the member table and the
//! count, and nothing is sent to the others then. Every batch interval the
//! room's task sends the messages accepted since the last tick as one frame,
//! and at most every count interval the count, if it changed. A member that
//! falls more than the backlog behind is closed rather than slowing the room;
//! each frame is encoded once and shared by every member's connection.

use std::collections::{HashMap, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use hyper_tungstenite::tungstenite::Message;
use tokio::sync::{OnceCell, broadcast};
use tracing::{debug, warn};

use super::cached::Cached;
use super::config::{ChatConfig, HISTORY_ON_JOIN};
use super::frames;
pub use super::meters::Bucket;
use super::meters::SlidingMin;
use crate::store::Store;
use crate::store::moderation::{Action, State, What};
use crate::store::record::ChatMessage;

/// How long an empty room waits for someone before its task ends.
const EMPTY_ROOM_LINGER: Duration = Duration::from_secs(2);

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Who is in a room: connections, and the distinct viewer sessions among them.
#[derive(Default)]
struct Members {
    connections: usize,
    sessions: HashMap<String, u32>,
}

/// Recent messages, and the `history` frame a joiner gets (rebuilt once per
/// batch, not per join).
struct History {
    ring: VecDeque<ChatMessage>,
    frame: Message,
}

impl History {
    fn frame_of(ring: &VecDeque<ChatMessage>) -> Message {
        frames::messages("history", ring)
    }
}

/// One room.
pub struct Room {
    /// The broadcast.
    pub id: String,
    fanout: broadcast::Sender<Message>,
    members: Mutex<Members>,
    viewers: AtomicU64,
    peak: AtomicU64,
    pending: Mutex<Vec<ChatMessage>>,
    history: Mutex<History>,
    loaded: OnceCell<()>,
    /// The room's own message rate.
    pub bucket: Mutex<Bucket>,
    /// Terms its chat refuses, normalized, as last read.
    pub terms: Cached<Vec<String>>,
    /// Its moderation state, as last read.
    pub moderation: Cached<State>,
}

impl Room {
    fn new(id: &str, config: &ChatConfig) -> Room {
        let rate = f64::from(config.room_messages_per_second);
        Room {
            id: id.to_owned(),
            fanout: broadcast::channel(config.backlog_frames).0,
            members: Mutex::default(),
            viewers: AtomicU64::new(0),
            peak: AtomicU64::new(0),
            pending: Mutex::default(),
            history: Mutex::new(History {
                ring: VecDeque::new(),
                frame: History::frame_of(&VecDeque::new()),
            }),
            loaded: OnceCell::new(),
            bucket: Mutex::new(Bucket::new(rate, 2.0 * rate)),
            terms: Cached::default(),
            moderation: Cached::default(),
        }
    }

    /// Messages `ids` go from the history and from every page at once (or
    /// never go out, if they have not yet).
    fn forget(&self, ids: &[u64]) {
        let mut h = lock(&self.history);
        lock(&self.pending).retain(|m| !ids.contains(&m.id));
        h.ring.retain(|m| !ids.contains(&m.id));
        h.frame = History::frame_of(&h.ring);
        let list = serde_json::to_string(ids).expect("numbers");
        let _ = self.fanout.send(Message::text(format!(
            "{{\"type\":\"deleted\",\"ids\":{list}}}"
        )));
    }

    /// After the feed was away, with `recent`, the store's newest messages:
    /// forgets what the history shows within their range and the store no
    /// longer has (deleted meanwhile), and posts what is newer.
    pub(super) fn catch_up(&self, recent: Vec<ChatMessage>) {
        let oldest = recent.first().map_or(0, |m| m.id);
        let stored = |id: &u64| *id < oldest || recent.iter().any(|r| r.id == *id);
        let h = lock(&self.history);
        let gone: Vec<u64> = h
            .ring
            .iter()
            .map(|m| m.id)
            .filter(|id| !stored(id))
            .collect();
        let newest = h.ring.back().map(|m| m.id);
        drop(h);
        if !gone.is_empty() {
            self.forget(&gone);
        }
        for m in recent
            .into_iter()
            .filter(|m| newest.is_none_or(|n| m.id > n))
        {
            self.post(m);
        }
    }

    /// A moderation action taken (here or through another origin): a
    /// deleted message goes from the history and from every page at once
    /// (or never goes out, if it has not yet); anything else is read again
    /// at the next send, and a change of slow mode is announced.
    pub fn apply(&self, action: &Action) {
        match &action.what {
            What::Delete { message, .. } => self.forget(&[*message]),
            What::SlowMode { seconds } => {
                self.moderation.invalidate();
                let _ = self.fanout.send(frames::slow_mode(*seconds));
            }
            _ => self.moderation.invalidate(),
        }
    }

    /// Distinct viewer sessions now.
    pub fn viewers(&self) -> u64 {
        self.viewers.load(Ordering::Relaxed)
    }

    /// The recent history and the frames after it: what is in the history
    /// frame is not sent again, and what is not in it will be.
    pub async fn subscribe(&self, store: &dyn Store) -> (Message, broadcast::Receiver<Message>) {
        self.loaded
            .get_or_init(|| async {
                match store.chat_history(&self.id, HISTORY_ON_JOIN).await {
                    Ok(ring) => {
                        let ring = VecDeque::from(ring);
                        let mut h = lock(&self.history);
                        h.frame = History::frame_of(&ring);
                        h.ring = ring;
                    }
                    Err(err) => warn!(broadcast = %self.id, %err, "chat history not read"),
                }
            })
            .await;
        let h = lock(&self.history);
        (h.frame.clone(), self.fanout.subscribe())
    }

    /// A stored message, to go out with the next batch.
    /// The feed and a gap fill may both bring a message: it goes out once.
    pub fn post(&self, m: ChatMessage) {
        let mut pending = lock(&self.pending);
        if !pending.iter().any(|p| p.id == m.id) {
            pending.push(m);
        }
    }

    /// Sends the messages accepted since the last call as one frame, and
    /// keeps them in the history.
    fn flush(&self) {
        // Under the history lock, taken before the batch: a joiner gets this
        // batch either in its history frame or on its receiver, never both
        // and never neither; and a deletion ([`Room::apply`], which takes
        // the same locks in the same order) finds a message either pending
        // or in the history, never on its way between them.
        let mut h = lock(&self.history);
        let batch = std::mem::take(&mut *lock(&self.pending));
        if batch.is_empty() {
            return;
        }
        // Already in the history (read from the store at the first join).
        let batch: Vec<ChatMessage> = batch
            .into_iter()
            .filter(|m| !h.ring.iter().any(|r| r.id == m.id))
            .collect();
        if batch.is_empty() {
            return;
        }
        let frame = frames::messages("messages", &batch);
        h.ring.extend(batch);
        let excess = h.ring.len().saturating_sub(HISTORY_ON_JOIN);
        h.ring.drain(..excess);
        h.frame = History::frame_of(&h.ring);
        let _ = self.fanout.send(frame);
    }

    fn leave(&self, session: Option<&str>) {
        let mut m = lock(&self.members);
        m.connections -= 1;
        if let Some(s) = session
            && let Some(n) = m.sessions.get_mut(s)
        {
            *n -= 1;
            if *n == 0 {
                m.sessions.remove(s);
            }
        }
        self.viewers
            .store(m.sessions.len() as u64, Ordering::Relaxed);
    }
}

/// A place in a room; dropping it leaves.
pub struct Presence {
    /// The room.
    pub room: Arc<Room>,
    session: Option<String>,
}

impl Drop for Presence {
    fn drop(&mut self) {
        self.room.leave(self.session.as_deref());
    }
}

/// The room was full.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("this chat room is full ({0} sessions)")]
pub struct RoomFull(pub usize);

/// Every room.
pub struct Rooms {
    map: Mutex<HashMap<String, Arc<Room>>>,
    /// Viewers on the other origins, per broadcast (see [`crate::cluster`]).
    elsewhere: Mutex<HashMap<String, u64>>,
    /// With other origins, a sum counts toward the peak only once it held
    /// this long: a dead origin's report stands until it expires while its
    /// viewers reconnect here, and that double count is no peak.
    settle: std::sync::OnceLock<Duration>,
    config: Arc<ChatConfig>,
    pub(super) store: Arc<dyn Store>,
}

impl Rooms {
    /// No rooms yet.
    pub fn new(config: Arc<ChatConfig>, store: Arc<dyn Store>) -> Arc<Rooms> {
        Arc::new(Rooms {
            map: Mutex::default(),
            elsewhere: Mutex::default(),
            settle: std::sync::OnceLock::new(),
            config,
            store,
        })
    }

    /// Distinct viewer sessions of `broadcast` now, on every origin.
    pub fn viewers(&self, broadcast: &str) -> u64 {
        let here = lock(&self.map).get(broadcast).map_or(0, |r| r.viewers());
        here + lock(&self.elsewhere).get(broadcast).copied().unwrap_or(0)
    }

    /// Peaks count sums that held for `over` (the viewer-count expiry).
    pub fn settle_peaks(&self, over: Duration) {
        let _ = self.settle.set(over);
    }

    /// The viewers on the other origins, per broadcast, as last reported.
    pub fn set_elsewhere(&self, counts: HashMap<String, u64>) {
        *lock(&self.elsewhere) = counts;
    }

    /// `broadcast`'s room on this origin, if it has one.
    pub fn room(&self, broadcast: &str) -> Option<Arc<Room>> {
        lock(&self.map).get(broadcast).cloned()
    }

    /// Every room on this origin.
    pub fn rooms(&self) -> Vec<Arc<Room>> {
        lock(&self.map).values().cloned().collect()
    }

    /// The most viewers `broadcast`'s room has had since it opened (the store
    /// has it only every few seconds).
    pub fn peak(&self, broadcast: &str) -> u64 {
        lock(&self.map)
            .get(broadcast)
            .map_or(0, |r| r.peak.load(Ordering::Relaxed))
    }

    /// Viewers of every room on this origin.
    pub fn all_viewers(&self) -> Vec<(String, u64)> {
        lock(&self.map)
            .iter()
            .map(|(id, r)| (id.clone(), r.viewers()))
            .collect()
    }

    /// Enters the room of `broadcast` (created, with its task, on first use)
    /// as `session`, counted as a viewer unless `None` (the streamer).
    pub fn enter(
        self: &Arc<Self>,
        broadcast: &str,
        session: Option<&str>,
    ) -> Result<Presence, RoomFull> {
        let mut map = lock(&self.map);
        let room = match map.get(broadcast) {
            Some(r) => r.clone(),
            None => {
                let r = Arc::new(Room::new(broadcast, &self.config));
                map.insert(broadcast.to_owned(), r.clone());
                tokio::spawn(self.clone().tend(r.clone()));
                r
            }
        };
        // Under the map lock, so that an emptied room is not removed between
        // finding it and entering it.
        let mut m = lock(&room.members);
        if m.connections >= self.config.max_sessions_per_room {
            return Err(RoomFull(self.config.max_sessions_per_room));
        }
        m.connections += 1;
        if let Some(s) = session {
            *m.sessions.entry(s.to_owned()).or_default() += 1;
        }
        let viewers = m.sessions.len() as u64;
        room.viewers.store(viewers, Ordering::Relaxed);
        room.peak.fetch_max(viewers, Ordering::Relaxed);
        drop(m);
        Ok(Presence {
            room,
            session: session.map(str::to_owned),
        })
    }

    /// The room's task: sends batches and counts on their intervals, saves
    /// the peak, and ends the room once it has been empty for a while.
    async fn tend(self: Arc<Self>, room: Arc<Room>) {
        let mut tick = tokio::time::interval(self.config.batch_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut counted: (u64, Option<tokio::time::Instant>) = (u64::MAX, None);
        let mut saved = (0u64, tokio::time::Instant::now());
        let mut empty_since: Option<tokio::time::Instant> = None;
        let mut recent = SlidingMin::default();
        loop {
            tick.tick().await;
            let now = tokio::time::Instant::now();
            room.flush();
            let viewers = self.viewers(&room.id);
            let settled = match self.settle.get() {
                Some(over) => recent.push(now, viewers, *over),
                None => viewers,
            };
            room.peak.fetch_max(settled, Ordering::Relaxed);
            if viewers != counted.0
                && counted
                    .1
                    .is_none_or(|at| now - at >= self.config.count_interval)
            {
                let _ = room.fanout.send(frames::viewers(viewers));
                counted = (viewers, Some(now));
            }
            if now - saved.1 >= self.config.peak_save_interval {
                saved = (self.save_peak(&room, saved.0).await, now);
            }
            if lock(&room.members).connections > 0 {
                empty_since = None;
                continue;
            }
            let since = *empty_since.get_or_insert(now);
            if now - since < EMPTY_ROOM_LINGER {
                continue;
            }
            {
                let mut map = lock(&self.map);
                if lock(&room.members).connections > 0 {
                    continue;
                }
                map.remove(&room.id);
            }
            room.flush();
            self.save_peak(&room, saved.0).await;
            debug!(broadcast = %room.id, "chat room closed");
            return;
        }
    }

    /// Writes the peak if it rose since `saved`; returns what is saved now.
    async fn save_peak(&self, room: &Room, saved: u64) -> u64 {
        let peak = room.peak.load(Ordering::Relaxed);
        if peak <= saved {
            return saved;
        }
        match self.store.note_viewers(&room.id, peak).await {
            Ok(()) => peak,
            Err(err) => {
                debug!(broadcast = %room.id, %err, "peak viewers not recorded");
                saved
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::FeedEvent;
    use crate::store::embedded::SledStore;
    use crate::store::record::NewBroadcast;
    use tokio::sync::mpsc;

    fn rooms(dir: &std::path::Path, config: ChatConfig) -> (Arc<Rooms>, Arc<dyn Store>) {
        let store: Arc<dyn Store> = Arc::new(SledStore::open(dir).unwrap());
        (Rooms::new(Arc::new(config), store.clone()), store)
    }

    fn text(m: Message) -> String {
        m.into_text().unwrap().to_string()
    }

    /// Every frame waiting on `rx`, as text.
    fn drain(rx: &mut broadcast::Receiver<Message>) -> Vec<String> {
        std::iter::from_fn(|| rx.try_recv().ok())
            .map(text)
            .collect()
    }

    /// The owner deletes message `id`.
    fn deletion(id: u64) -> Action {
        let what = What::Delete {
            message: id,
            user: "u".into(),
        };
        Action {
            id: 1,
            at: String::new(),
            by: "owner".into(),
            what,
        }
    }

    /// A message as the store returns it: with its own id.
    fn message(text: &str) -> ChatMessage {
        static IDS: AtomicU64 = AtomicU64::new(1);
        ChatMessage {
            id: IDS.fetch_add(1, Ordering::Relaxed),
            ..ChatMessage::new("u", text, false)
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_deleted_message_leaves_the_history_and_a_pending_one_never_goes_out() {
        let dir = tempfile::tempdir().unwrap();
        let (rooms, store) = rooms(dir.path(), ChatConfig::default());
        let p = rooms.enter("b", Some("s0")).unwrap();
        let (_, mut rx) = p.room.subscribe(store.as_ref()).await;
        let (sent, pending) = (message("sent"), message("pending"));
        rooms.deliver("b", sent.clone());
        tokio::time::sleep(DEFAULT_BATCH * 2).await;
        rooms.deliver("b", pending.clone());
        rooms.moderate("b", &deletion(pending.id));
        rooms.moderate("b", &deletion(sent.id));
        tokio::time::sleep(DEFAULT_BATCH * 2).await;
        let frames: Vec<String> = drain(&mut rx);
        assert!(
            frames.iter().all(|f| !f.contains("\"pending\"")),
            "{frames:?}"
        );
        assert!(
            frames.contains(&format!("{{\"type\":\"deleted\",\"ids\":[{}]}}", sent.id)),
            "{frames:?}"
        );
        let (history, _) = p.room.subscribe(store.as_ref()).await;
        assert!(!text(history).contains("\"sent\""));
    }

    #[tokio::test(start_paused = true)]
    async fn a_message_the_feed_and_a_gap_fill_both_bring_goes_out_once() {
        let dir = tempfile::tempdir().unwrap();
        let (rooms, store) = rooms(dir.path(), ChatConfig::default());
        let p = rooms.enter("b", Some("s0")).unwrap();
        let (_, mut rx) = p.room.subscribe(store.as_ref()).await;
        let m = message("once");
        rooms.deliver("b", m.clone());
        rooms.deliver("b", m.clone());
        rooms.deliver("elsewhere", message("no room here"));
        tokio::time::sleep(DEFAULT_BATCH * 2).await;
        let frames: Vec<String> = drain(&mut rx);
        let messages: Vec<&String> = frames
            .iter()
            .filter(|f| f.contains("\"messages\""))
            .collect();
        assert_eq!(messages.len(), 1, "{frames:?}");
        assert_eq!(messages[0].matches("\"once\"").count(), 1);
        // Brought again after it went out: already in the history.
        rooms.deliver("b", m);
        tokio::time::sleep(DEFAULT_BATCH * 2).await;
        assert!(
            std::iter::from_fn(|| rx.try_recv().ok())
                .map(text)
                .all(|f| !f.contains("\"messages\"")),
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_feed_that_starts_listening_fills_each_rooms_gap_from_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let (rooms, store) = rooms(dir.path(), ChatConfig::default());
        let p = rooms.enter("b", Some("s0")).unwrap();
        let (_, mut rx) = p.room.subscribe(store.as_ref()).await;
        // Stored while nobody listened: no notification reached this origin.
        store
            .add_chat("b", ChatMessage::new("u", "missed", false), None)
            .await
            .unwrap();
        let (tx, feed) = mpsc::channel(4);
        tokio::spawn(rooms.clone().follow(feed));
        tx.send(FeedEvent::Resumed).await.unwrap();
        tokio::time::sleep(DEFAULT_BATCH * 2).await;
        let frames: Vec<String> = drain(&mut rx);
        let got: usize = frames.iter().map(|f| f.matches("\"missed\"").count()).sum();
        assert_eq!(got, 1, "{frames:?}");
        // A second resumption brings nothing twice.
        tx.send(FeedEvent::Resumed).await.unwrap();
        tokio::time::sleep(DEFAULT_BATCH * 2).await;
        assert!(
            std::iter::from_fn(|| rx.try_recv().ok())
                .map(text)
                .all(|f| !f.contains("missed"))
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_feed_that_starts_listening_forgets_what_was_deleted_meanwhile() {
        use crate::store::moderation::Moderation;
        let dir = tempfile::tempdir().unwrap();
        let sled = Arc::new(SledStore::open(dir.path()).unwrap());
        let rooms = Rooms::new(Arc::new(ChatConfig::default()), sled.clone());
        let mut ids = Vec::new();
        for text in ["kept", "deleted"] {
            let m = sled.add_chat("b", ChatMessage::new("u", text, false), None);
            ids.push(m.await.unwrap().id);
        }
        let p = rooms.enter("b", Some("s0")).unwrap();
        let (_, mut rx) = p.room.subscribe(sled.as_ref()).await;
        // Deleted through another origin while this one's feed was away.
        sled.act("b", deletion(ids[1])).await.unwrap();
        let (tx, feed) = mpsc::channel(4);
        tokio::spawn(rooms.clone().follow(feed));
        tx.send(FeedEvent::Resumed).await.unwrap();
        tokio::time::sleep(DEFAULT_BATCH * 2).await;
        let frames: Vec<String> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(text)
            .filter(|f| !f.contains("\"viewers\""))
            .collect();
        let gone = format!("{{\"type\":\"deleted\",\"ids\":[{}]}}", ids[1]);
        assert_eq!(frames, [gone]);
        let (history, _) = p.room.subscribe(sled.as_ref()).await;
        let history = text(history);
        assert!(history.contains("\"kept\"") && !history.contains("\"deleted\""));
    }

    #[tokio::test(start_paused = true)]
    async fn the_count_is_this_origins_sessions_plus_the_others() {
        let dir = tempfile::tempdir().unwrap();
        let (rooms, _) = rooms(dir.path(), ChatConfig::default());
        let _p = rooms.enter("b", Some("s0")).unwrap();
        rooms.set_elsewhere(HashMap::from([("b".to_owned(), 70), ("c".to_owned(), 5)]));
        assert_eq!(rooms.viewers("b"), 71);
        assert_eq!(rooms.viewers("c"), 5);
        assert_eq!(
            rooms.all_viewers(),
            vec![("b".to_owned(), 1)],
            "this origin's own"
        );
        tokio::time::sleep(Duration::from_secs(2)).await;
        assert_eq!(rooms.peak("b"), 71, "the peak is of the sum");
    }

    #[tokio::test(start_paused = true)]
    async fn joins_and_leaves_push_one_count_per_interval_not_one_per_member() {
        let dir = tempfile::tempdir().unwrap();
        let (rooms, store) = rooms(dir.path(), ChatConfig::default());
        let first = rooms.enter("b", Some("s0")).unwrap();
        let (_, mut rx) = first.room.subscribe(store.as_ref()).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(
            text(rx.try_recv().unwrap()),
            r#"{"type":"viewers","count":1}"#
        );
        // 1,000 joins and 500 leaves within the interval: nothing is sent.
        let mut crowd: Vec<Presence> = (1..=1000)
            .map(|i| rooms.enter("b", Some(&format!("s{i}"))).unwrap())
            .collect();
        // The same page twice is one viewer: s1 stays, by its second socket.
        crowd.push(rooms.enter("b", Some("s1")).unwrap());
        assert_eq!(rooms.viewers("b"), 1001);
        crowd.drain(..500);
        assert_eq!(rooms.viewers("b"), 502);
        tokio::time::sleep(Duration::from_millis(900)).await;
        assert!(rx.try_recv().is_err(), "no count before the interval");
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            text(rx.try_recv().unwrap()),
            r#"{"type":"viewers","count":502}"#
        );
        assert!(rx.try_recv().is_err(), "one frame");
        // Unchanged: nothing more.
        tokio::time::sleep(Duration::from_secs(3)).await;
        assert!(rx.try_recv().is_err());
        assert_eq!(rooms.peak("b"), 1001);
    }

    #[tokio::test(start_paused = true)]
    async fn messages_of_one_interval_go_out_as_one_frame_and_once_to_a_joiner() {
        let dir = tempfile::tempdir().unwrap();
        let (rooms, store) = rooms(dir.path(), ChatConfig::default());
        let p = rooms.enter("b", Some("s0")).unwrap();
        let (_, mut rx) = p.room.subscribe(store.as_ref()).await;
        tokio::time::sleep(Duration::from_millis(10)).await;
        let _count = rx.try_recv();
        for t in ["a", "b", "c"] {
            p.room.post(message(t));
        }
        // A joiner before the batch goes out gets it on its receiver...
        let (early_history, mut early) = p.room.subscribe(store.as_ref()).await;
        assert!(!text(early_history).contains("\"a\""));
        tokio::time::sleep(DEFAULT_BATCH).await;
        let frame = text(rx.try_recv().unwrap());
        let v: serde_json::Value = serde_json::from_str(&frame).unwrap();
        assert_eq!(v["type"], "messages");
        assert_eq!(v["messages"].as_array().unwrap().len(), 3);
        assert!(rx.try_recv().is_err(), "one frame for the three");
        assert_eq!(text(early.try_recv().unwrap()), frame);
        // ...and a joiner after it, in its history only.
        let (late_history, mut late) = p.room.subscribe(store.as_ref()).await;
        assert!(text(late_history).contains("\"c\""));
        tokio::time::sleep(DEFAULT_BATCH * 3).await;
        assert!(late.try_recv().is_err());
    }

    const DEFAULT_BATCH: Duration = super::super::config::DEFAULT_BATCH_INTERVAL;

    #[tokio::test(start_paused = true)]
    async fn a_full_room_refuses_until_someone_leaves() {
        let dir = tempfile::tempdir().unwrap();
        let (rooms, _) = rooms(
            dir.path(),
            ChatConfig {
                max_sessions_per_room: 2,
                ..Default::default()
            },
        );
        let a = rooms.enter("b", Some("a")).unwrap();
        let _streamer = rooms.enter("b", None).unwrap();
        assert_eq!(rooms.enter("b", Some("c")).err(), Some(RoomFull(2)));
        drop(a);
        assert!(rooms.enter("b", Some("c")).is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn a_reader_more_than_the_backlog_behind_lags() {
        let dir = tempfile::tempdir().unwrap();
        let (rooms, store) = rooms(
            dir.path(),
            ChatConfig {
                backlog_frames: 8,
                ..Default::default()
            },
        );
        let p = rooms.enter("b", Some("s")).unwrap();
        let (_, mut rx) = p.room.subscribe(store.as_ref()).await;
        for i in 0..12 {
            p.room.post(message(&format!("m{i}")));
            tokio::time::sleep(DEFAULT_BATCH).await;
        }
        assert!(matches!(
            rx.recv().await,
            Err(broadcast::error::RecvError::Lagged(_))
        ));
    }

    #[tokio::test(start_paused = true)]
    async fn an_emptied_room_saves_its_peak_and_closes() {
        let dir = tempfile::tempdir().unwrap();
        let (rooms, store) = rooms(dir.path(), ChatConfig::default());
        let id = store
            .create(NewBroadcast::titled("t"))
            .await
            .unwrap()
            .record
            .id;
        let crowd: Vec<Presence> = (0..3)
            .map(|i| rooms.enter(&id, Some(&format!("s{i}"))).unwrap())
            .collect();
        tokio::time::sleep(Duration::from_millis(10)).await;
        assert_eq!(
            store.get(&id).await.unwrap().peak_viewers,
            0,
            "not per join"
        );
        drop(crowd);
        tokio::time::sleep(EMPTY_ROOM_LINGER + Duration::from_secs(1)).await;
        assert_eq!(store.get(&id).await.unwrap().peak_viewers, 3);
        assert_eq!(rooms.peak(&id), 0, "the room is gone");
        assert!(rooms.all_viewers().is_empty());
    }
}
