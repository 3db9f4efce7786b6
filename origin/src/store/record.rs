//! What is stored: broadcast records and chat messages, and the helpers
//! that make their fields (pure).

use std::time::SystemTime;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Where a broadcast is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    /// Created; waiting for the publisher.
    Ready,
    /// A publisher is (or was a moment ago) streaming.
    Live,
    /// Over for good; cannot be published to again.
    Ended,
}

/// A broadcast as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// Id (URL-safe).
    pub id: String,
    /// Title.
    pub title: String,
    /// Description.
    pub description: String,
    /// Status.
    pub status: Status,
    /// Creation time, RFC 3339.
    pub created_at: String,
    /// First went live, RFC 3339.
    pub started_at: Option<String>,
    /// Ended, RFC 3339.
    pub ended_at: Option<String>,
    /// Last change of title, description or status, RFC 3339.
    pub modified_at: String,
    /// Most simultaneous viewers so far.
    pub peak_viewers: u64,
    /// SHA-256 of the owner token, hex.
    pub owner_hash: String,
    /// Stream key generation (bumped by rotation).
    pub key_version: u32,
    /// Left out of the directory and search; playable by anyone with the link.
    #[serde(default)]
    pub unlisted: bool,
    /// Terms its chat refuses (see `chat::terms`).
    #[serde(default)]
    pub blocked_terms: Vec<String>,
    /// Recorded for a replay (the owner may opt out).
    #[serde(default = "yes")]
    pub recorded: bool,
}

fn yes() -> bool {
    true
}

impl Record {
    /// A new broadcast, `ready`, owned by the holder of `owner_token`.
    pub fn new_ready(id: String, new: NewBroadcast, owner_token: &str) -> Record {
        let now = now_rfc3339();
        Record {
            id,
            title: new.title,
            description: new.description,
            status: Status::Ready,
            created_at: now.clone(),
            started_at: None,
            ended_at: None,
            modified_at: now,
            peak_viewers: 0,
            owner_hash: sha256_hex(owner_token),
            key_version: 0,
            unlisted: new.unlisted,
            blocked_terms: Vec::new(),
            recorded: new.recorded,
        }
    }
}

/// A chat message as stored and sent.
/// What a new broadcast starts with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewBroadcast {
    /// Title.
    pub title: String,
    /// Description.
    pub description: String,
    /// Left out of the directory and search.
    pub unlisted: bool,
    /// Recorded for a replay.
    pub recorded: bool,
}

impl Default for NewBroadcast {
    fn default() -> Self {
        NewBroadcast {
            title: String::new(),
            description: String::new(),
            unlisted: false,
            recorded: true,
        }
    }
}

impl NewBroadcast {
    /// Listed, with `title` and no description.
    pub fn titled(title: &str) -> NewBroadcast {
        NewBroadcast {
            title: title.to_owned(),
            ..Default::default()
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Always `message`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Increasing id.
    pub id: u64,
    /// Nickname.
    pub user: String,
    /// Text, as typed.
    pub text: String,
    /// When, RFC 3339.
    pub at: String,
    /// Sent by the broadcast's owner.
    pub streamer: bool,
    /// Who sent it, for time-outs and bans: kept by the store, never sent
    /// to clients.
    #[serde(skip)]
    pub author: Option<Author>,
}

/// A message's sender as moderation targets it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Author {
    /// The page's session id.
    pub session: String,
    /// The client's address.
    pub addr: String,
}

impl ChatMessage {
    /// A message sent now; the store gives it its id.
    pub fn new(user: &str, text: &str, streamer: bool) -> ChatMessage {
        ChatMessage {
            kind: "message".into(),
            id: 0,
            user: user.to_owned(),
            text: text.to_owned(),
            at: now_rfc3339(),
            streamer,
            author: None,
        }
    }
}

/// One moderation action, as stored and (without its secrets, see
/// [`Action::public`]) as the API shows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Action {
    /// Increasing; given by the store.
    pub id: u64,
    /// RFC 3339 (fixed width, UTC); given by the store.
    pub at: String,
    /// Who: `owner`, or the moderator's name.
    pub by: String,
    /// What.
    #[serde(flatten)]
    pub what: What,
}

/// What an action does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "action", rename_all = "snake_case")]
pub enum What {
    /// Message `message` (by `user`) is removed for everyone and from history.
    Delete { message: u64, user: String },
    /// The sender of `message` may not send until `until`.
    Timeout {
        message: u64,
        user: String,
        minutes: u32,
        until: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        author: Option<Author>,
    },
    /// The sender of `message`, by session and by address, may not send
    /// in this chat again (until lifted).
    Ban {
        message: u64,
        user: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        author: Option<Author>,
    },
    /// Ends the time-out or ban of action `target`.
    Lift { target: u64 },
    /// One message per `seconds` per session; 0 turns it off.
    SlowMode { seconds: u32 },
    /// The owner appoints a moderator; only the hash of its token is kept.
    Appoint {
        moderator: String,
        name: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        token_hash: Option<String>,
    },
    /// The owner dismisses moderator `moderator`.
    Dismiss { moderator: String },
}

impl Action {
    /// Without what only the server may know: the sender's session and
    /// address, a moderator's token hash (pure).
    pub fn public(&self) -> Action {
        let mut a = self.clone();
        match &mut a.what {
            What::Timeout { author, .. } | What::Ban { author, .. } => *author = None,
            What::Appoint { token_hash, .. } => *token_hash = None,
            _ => {}
        }
        a
    }
}

/// Lowercase hex.
pub fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

/// SHA-256, hex.
pub fn sha256_hex(s: &str) -> String {
    hex(&Sha256::digest(s.as_bytes()))
}

/// RFC 3339 with microseconds: fixed width, so string order is time order,
/// and fine enough that broadcasts created in the same millisecond still sort
/// newest first.
pub fn now_rfc3339() -> String {
    rfc3339(SystemTime::now())
}

/// `t` as [`now_rfc3339`] writes it.
pub fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_micros(t).to_string()
}
