//! What a room reads from the store and keeps for a while (its blocked
//! terms, its moderation state): read again when older than [`REFRESH`] or
//! when told it changed, so a change made through another origin holds here
//! within [`REFRESH`], and one announced on the feed at once.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use tokio::sync::Mutex;
use tokio::time::Instant;

use crate::store::StoreError;

/// How often a room reads its lists again.
pub const REFRESH: Duration = Duration::from_secs(5);

/// A value as last read.
#[derive(Debug, Default)]
pub struct Cached<T> {
    slot: Mutex<Option<(Instant, Arc<T>)>>,
    stale: AtomicBool,
}

impl<T: Default> Cached<T> {
    /// The value, read with `read` when older than [`REFRESH`] or marked
    /// stale (one reader at a time); a store that does not answer leaves
    /// the last value (or the default, if there was none).
    pub async fn get(&self, read: impl Future<Output = Result<T, StoreError>>) -> Arc<T> {
        let mut slot = self.slot.lock().await;
        let stale = self.stale.swap(false, Ordering::AcqRel);
        if let Some((at, v)) = slot.as_ref()
            && !stale
            && at.elapsed() < REFRESH
        {
            return v.clone();
        }
        let v = match read.await {
            Ok(v) => Arc::new(v),
            Err(_) => slot.as_ref().map(|(_, v)| v.clone()).unwrap_or_default(),
        };
        *slot = Some((Instant::now(), v.clone()));
        v
    }

    /// The next [`Cached::get`] reads again.
    pub fn invalidate(&self) {
        self.stale.store(true, Ordering::Release);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn a_value_is_read_again_when_old_or_stale_and_kept_when_the_store_fails() {
        let c: Cached<u32> = Cached::default();
        assert_eq!(*c.get(async { Ok(1) }).await, 1);
        assert_eq!(*c.get(async { Ok(2) }).await, 1, "fresh");
        c.invalidate();
        assert_eq!(*c.get(async { Ok(3) }).await, 3, "stale");
        tokio::time::advance(REFRESH).await;
        assert_eq!(
            *c.get(async { Err(StoreError::Database("away".into())) })
                .await,
            3,
            "kept"
        );
        tokio::time::advance(REFRESH).await;
        assert_eq!(*c.get(async { Ok(4) }).await, 4, "old");
    }
}
