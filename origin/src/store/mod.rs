//! Broadcasts, stream keys and chat history: the [`Store`] interface the
//! API and the broadcast lifecycle use, and its implementations.
//!
//! Every operation is one question or one change, named for what it does
//! (no read-modify-write closures), so that a database can answer it in one
//! statement or transaction. Every acknowledged change is durable.
//!
//! Layout:
//! - [`record`]: what is stored (pure).
//! - [`keys`]: stream keys derived from owner tokens, never stored (pure).
//! - [`embedded`]: sled on local disk, the default.
//! - [`postgres`]: PostgreSQL, shared by several origins; it also keeps
//!   what only a shared database can ([`Shared`]): which origin holds each
//!   live window, each origin's viewers, and the chat feed every origin
//!   follows.
//! - [`recordings`]: what every origin recorded of each broadcast, for one
//!   replay across origins (PostgreSQL only).

pub mod admission;
pub mod embedded;
pub mod keys;
pub mod moderation;
pub mod postgres;
pub mod record;
pub mod recordings;

use std::collections::HashMap;
use std::time::Duration;

use tokio::sync::mpsc;

use self::record::{ChatMessage, NewBroadcast, Record, Status};

/// Chat messages kept per broadcast; older ones are pruned.
pub const MAX_CHAT_HISTORY: usize = 1000;

/// The most messages one room takes in a sliding window, whichever
/// origins they come through.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RoomRate {
    /// Messages...
    pub max: u32,
    /// ...per this long.
    pub per: Duration,
}

impl RoomRate {
    /// The start of the window ending now, as messages' `at` is written
    /// (fixed width: string order is time order).
    pub fn window_start(&self) -> String {
        humantime::format_rfc3339_micros(std::time::SystemTime::now() - self.per).to_string()
    }
}

/// Why a store operation failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// No broadcast has this id.
    #[error("no such broadcast")]
    NotFound,
    /// The database failed (disk full, I/O error, connection lost).
    #[error("database: {0}")]
    Database(String),
    /// A stored value did not decode.
    #[error("corrupt record: {0}")]
    Corrupt(#[from] serde_json::Error),
    /// The room took its [`RoomRate`] already.
    #[error("the room is busy; try again in a moment")]
    RoomBusy,
    /// The system has no randomness to offer.
    #[error("no randomness: {0}")]
    Random(String),
}

impl From<getrandom::Error> for StoreError {
    fn from(e: getrandom::Error) -> Self {
        StoreError::Random(e.to_string())
    }
}

/// A new broadcast with the secrets only its creator is shown.
#[derive(Debug, Clone)]
pub struct Created {
    /// The record.
    pub record: Record,
    /// Proves ownership from now on.
    pub owner_token: String,
    /// Publishes to it.
    pub stream_key: String,
}

/// A change of title or description; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct Edit {
    /// New title (already validated).
    pub title: Option<String>,
    /// New description (already validated).
    pub description: Option<String>,
    pub unlisted: Option<bool>,
    pub blocked_terms: Option<Vec<String>>,
    /// Recorded for a replay from the next publish on.
    pub recorded: Option<bool>,
}

/// Where broadcasts and chat history are kept.
#[async_trait::async_trait]
pub trait Store: Send + Sync {
    /// Creates a broadcast (status `ready`) with a fresh owner token and key.
    async fn create(&self, new: NewBroadcast) -> Result<Created, StoreError>;

    /// One broadcast.
    async fn get(&self, id: &str) -> Result<Record, StoreError>;

    /// Every broadcast.
    async fn all(&self) -> Result<Vec<Record>, StoreError>;

    /// The broadcast a stream key publishes to, if any.
    async fn by_key(&self, stream_key: &str) -> Result<Option<Record>, StoreError>;

    /// Changes title and description; `modified_at` moves when anything changed.
    async fn edit(&self, id: &str, edit: Edit) -> Result<Record, StoreError>;

    /// Moves a broadcast to `live` (stamping `started_at` the first time) or
    /// `ended` (stamping `ended_at`). Setting the status it has changes nothing.
    async fn set_status(&self, id: &str, status: Status) -> Result<Record, StoreError>;

    /// Raises the peak viewer count to `viewers` if that is higher.
    async fn note_viewers(&self, id: &str, viewers: u64) -> Result<(), StoreError>;

    /// Replaces the stream key; the old one stops working at once.
    async fn rotate_key(&self, id: &str, owner_token: &str) -> Result<String, StoreError>;

    /// Forgets broadcast `id`, its stream key and its chat history.
    async fn delete(&self, id: &str) -> Result<(), StoreError>;

    /// The stream key of `r` for the holder of `owner_token` (derived with
    /// the installation's secret; see [`keys`]).
    fn stream_key(&self, r: &Record, owner_token: &str) -> String;

    /// The token origin `node_id` signs forwarded requests with (derived
    /// from the installation's secret; see [`keys::origin_token`]).
    fn origin_token(&self, node_id: &str) -> String;

    /// Stores a chat message, assigning its id (increasing per store),
    /// unless the room took `rate` messages already (then `RoomBusy`).
    async fn add_chat(
        &self,
        broadcast: &str,
        m: ChatMessage,
        rate: Option<RoomRate>,
    ) -> Result<ChatMessage, StoreError>;

    /// The last `n` chat messages of a broadcast, oldest first.
    async fn chat_history(&self, broadcast: &str, n: usize)
    -> Result<Vec<ChatMessage>, StoreError>;

    /// Whether the store answers (readiness).
    async fn ping(&self) -> Result<(), StoreError>;

    /// Makes everything durable (at shutdown).
    async fn flush(&self) -> Result<(), StoreError>;
}

/// An origin as the others reach it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Node {
    /// Unique among the origins sharing a database (`--node-id`).
    pub id: String,
    /// Base URL other origins proxy to (`--advertise-url`), no trailing `/`.
    pub url: String,
}

/// One origin's beat: what it holds and how many watch there.
#[derive(Debug, Clone, Default)]
pub struct Beat {
    /// Broadcasts whose live window this origin holds, with the epoch it
    /// holds each at.
    pub held: Vec<(String, u64)>,
    /// Viewer sessions on this origin, per broadcast.
    pub viewers: Vec<(String, u64)>,
}

/// What the database answers a beat.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Echo {
    /// Held broadcasts whose record says `ended` (ended through another origin).
    pub ended: Vec<String>,
    /// Held broadcasts another origin holds now (it took them over): this
    /// origin stands down.
    pub lost: Vec<String>,
    /// Live broadcasts this beat ended because their holder stopped beating
    /// longer than the reconnect grace ago (each is ended by one beat only).
    pub swept: Vec<String>,
    /// Viewer sessions on the other origins, per broadcast, from reports
    /// fresher than the expiry.
    pub viewers_elsewhere: HashMap<String, u64>,
}

/// A window claimed (see [`Shared::claim`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claim {
    /// Bumped whenever the holder changes: counters are written under it.
    pub epoch: u64,
    /// Another origin held it before (this is a take-over: continue its
    /// counters, not a window kept here).
    pub taken_over: bool,
}

/// What reaches an origin from the chat feed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FeedEvent {
    /// A message stored by any origin, in the order they were stored.
    Message(String, ChatMessage),
    /// A moderation action taken through any origin.
    Moderation(String, record::Action),
    /// The feed is listening (again): messages stored before may be
    /// missing (fill the gap from the table).
    Resumed,
}

/// What only a database several origins share can do: ownership of live
/// windows, viewer counts summed over origins, and the chat feed.
#[async_trait::async_trait]
pub trait Shared: Send + Sync {
    /// Makes `node` the holder of `broadcast`'s window: a new publish takes
    /// it over (`take_over`); a window restored at start only claims a
    /// broadcast nobody else holds. `None` when another origin holds it.
    async fn claim(
        &self,
        broadcast: &str,
        node: &Node,
        take_over: bool,
    ) -> Result<Option<Claim>, StoreError>;

    /// Writes a rendition's counters (JSON), unless `node` no longer holds
    /// the broadcast at `epoch` (fencing). Whether they were written.
    async fn save_counters(
        &self,
        broadcast: &str,
        rendition: &str,
        node: &Node,
        epoch: u64,
        counters: &str,
    ) -> Result<bool, StoreError>;

    /// The last counters written for each rendition of `broadcast`.
    async fn counters(&self, broadcast: &str) -> Result<Vec<(String, String)>, StoreError>;

    /// The origin holding `broadcast`'s window, if any.
    async fn owner(&self, broadcast: &str) -> Result<Option<Node>, StoreError>;

    /// Refreshes `node`'s holdings (claiming held windows nobody holds,
    /// releasing the ones it no longer holds) and viewer counts, reads the
    /// others' counts reported within `expiry`, and ends live broadcasts
    /// whose holder has not beaten for `grace` (see [`Echo::swept`]).
    async fn beat(
        &self,
        node: &Node,
        beat: &Beat,
        expiry: Duration,
        grace: Duration,
    ) -> Result<Echo, StoreError>;

    /// Starts following the chat feed: every message any origin stores, in
    /// order, with a [`FeedEvent::Resumed`] whenever it starts listening
    /// (at first, and after every reconnection).
    fn follow_chat(&self) -> mpsc::Receiver<FeedEvent>;
}
