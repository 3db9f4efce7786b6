//! Who may publish: the [`Authorizer`] seam and the one-publisher-per-broadcast rule.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use sha2::{Digest, Sha256};

/// A publish the authorizer allowed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The broadcast this stream key publishes to.
    pub broadcast_id: String,
}

/// Why a publish was refused; its text is sent to the client.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refusal {
    /// No broadcast has this stream key.
    #[error("unknown stream key")]
    UnknownKey,
    /// The broadcast is over; it takes no more publishes.
    #[error("this broadcast has ended")]
    Ended,
    /// Another connection publishes to this broadcast.
    #[error("this broadcast already has a live publisher")]
    AlreadyLive,
    /// This connection publishes already.
    #[error("this connection is already publishing")]
    AlreadyPublishing,
    /// The authorizer could not decide (its database failed); logged there.
    #[error("server error")]
    Unavailable,
}

/// Decides whether a stream key may publish. The meta API implements it; tests and
/// the binary before the API use [`StaticKeys`].
#[async_trait::async_trait]
pub trait Authorizer: Send + Sync + 'static {
    /// Returns the grant for `stream_key`, or why not.
    async fn authorize(&self, stream_key: &str) -> Result<Grant, Refusal>;
}

/// An authorizer over a fixed list of keys, each publishing to the broadcast of the same name.
#[derive(Debug, Clone, Default)]
pub struct StaticKeys(pub HashSet<String>);

#[async_trait::async_trait]
impl Authorizer for StaticKeys {
    async fn authorize(&self, stream_key: &str) -> Result<Grant, Refusal> {
        if self.0.contains(stream_key) {
            Ok(Grant {
                broadcast_id: stream_key.to_owned(),
            })
        } else {
            Err(Refusal::UnknownKey)
        }
    }
}

/// A short, non-reversible name for a stream key, safe to log.
pub fn fingerprint(stream_key: &str) -> String {
    let digest = Sha256::digest(stream_key.as_bytes());
    digest[..6].iter().map(|b| format!("{b:02x}")).collect()
}

/// The broadcasts that have a publisher right now.
#[derive(Debug, Clone, Default)]
pub struct LiveSet(Arc<Mutex<HashSet<String>>>);

/// Holds a broadcast live; dropping it frees the broadcast for the next publisher.
#[derive(Debug)]
pub struct LiveGuard {
    set: LiveSet,
    broadcast_id: String,
}

impl LiveSet {
    /// Marks `broadcast_id` live, or returns `None` if it already has a publisher.
    pub fn claim(&self, broadcast_id: &str) -> Option<LiveGuard> {
        let mut set = self.0.lock().unwrap_or_else(|p| p.into_inner());
        set.insert(broadcast_id.to_owned()).then(|| LiveGuard {
            set: self.clone(),
            broadcast_id: broadcast_id.to_owned(),
        })
    }
}

impl Drop for LiveGuard {
    fn drop(&mut self) {
        let mut set = self.set.0.lock().unwrap_or_else(|p| p.into_inner());
        set.remove(&self.broadcast_id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fingerprints_are_stable_and_do_not_contain_the_key() {
        let f = fingerprint("secret-key-123");
        assert_eq!(f, fingerprint("secret-key-123"));
        assert_eq!(f.len(), 12);
        assert!(!f.contains("secret"));
        assert_ne!(f, fingerprint("secret-key-124"));
    }

    #[test]
    fn a_broadcast_can_be_claimed_once_until_released() {
        let live = LiveSet::default();
        let first = live.claim("b1").unwrap();
        assert!(live.claim("b1").is_none());
        drop(first);
        assert!(live.claim("b1").is_some());
    }
}
