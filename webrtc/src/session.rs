//! What the session task holds and is told.

use std::sync::Arc;
use std::time::Instant;

use str0m::Rtc;
use tokio::sync::oneshot;

use crate::whep::{Feeds, Viewer};
use crate::whip::Publisher;

/// What a session does.
pub enum Role {
    /// Sends media in (WHIP).
    Publisher(Box<Publisher>),
    /// Receives a broadcast (WHEP).
    Viewer(Viewer),
}

/// One peer.
pub struct Session {
    /// 128 random bits in hex: also the capability to end it.
    pub id: String,
    /// The broadcast it publishes or plays.
    pub broadcast: Arc<str>,
    /// The peer connection.
    pub rtc: Rtc,
    /// Publisher or viewer.
    pub role: Role,
    /// When the offer was accepted.
    pub created: Instant,
    /// Whether ICE and DTLS completed.
    pub connected: bool,
    /// When str0m wants to be woken next.
    pub next: Instant,
    /// Its log context.
    pub span: tracing::Span,
    /// NACKs counted so far, per media and direction (str0m's are cumulative).
    pub nacks: std::collections::HashMap<(str0m::media::Mid, bool), u64>,
}

/// What the session task is told.
pub enum Command {
    /// A new session; for a viewer, with its broadcast's feeds.
    Add(Box<Session>, Option<Feeds>),
    /// End a session; replies whether it existed.
    Close(String, oneshot::Sender<bool>),
    /// A publisher's transcoder wants a keyframe.
    Keyframe(String),
    /// A viewer wants another rendition; replies whether it is watching.
    Switch(String, Arc<str>, oneshot::Sender<bool>),
    /// A broadcast's feeds changed (a new publish): viewers follow.
    Feeds(Arc<str>, Feeds),
}
