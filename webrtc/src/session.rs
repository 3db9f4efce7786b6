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
    /// Its place under the session limits, given back when it is dropped.
    pub seat: crate::stats::Seat,
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
    /// str0m panicked inside this session: it is closed without being
    /// touched again, and no other session notices.
    pub failed: bool,
}

impl Session {
    /// Runs `f` on this session, containing a panic of the library to it.
    pub fn guarded<T>(&mut self, f: impl FnOnce(&mut Session) -> T) -> Option<T> {
        if self.failed {
            return None;
        }
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(self))) {
            Ok(v) => Some(v),
            Err(_) => {
                let _e = self.span.enter();
                tracing::error!("the WebRTC library panicked in this session; closing it");
                self.failed = true;
                None
            }
        }
    }
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
    /// A broadcast ended: its viewers' sessions close.
    Ended(Arc<str>),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_library_panic_closes_only_its_session() {
        str0m::crypto::from_feature_flags().install_process_default();
        let now = Instant::now();
        let mut s = Session {
            id: "s".into(),
            broadcast: "b".into(),
            rtc: Rtc::builder().build(now),
            seat: Arc::new(crate::stats::Seats::default())
                .take(None, 1, 1)
                .unwrap(),
            role: Role::Viewer(Viewer::new("b", "720p")),
            created: now,
            connected: false,
            next: now,
            span: tracing::Span::none(),
            nacks: Default::default(),
            failed: false,
        };
        assert_eq!(s.guarded(|_| 7), Some(7));
        assert_eq!(s.guarded(|_| -> u32 { panic!("inside str0m") }), None);
        assert!(s.failed);
        // Never touched again.
        assert_eq!(s.guarded(|_| 7), None);
    }
}
