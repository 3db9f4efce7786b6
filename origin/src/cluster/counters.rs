//! Window counters on their way to the database: the holder's packaging
//! hands them over at every segment close (never waiting), one task writes
//! the newest of each rendition under the epoch this origin holds the
//! broadcast at. A write the database fences off (another origin holds
//! the broadcast now) is dropped; the next beat makes this origin stand
//! down.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::hls::saved::Counters;
use crate::store::{Node, Shared};

/// After a failed write, the wait before the next try (the newest counters
/// are kept meanwhile).
const RETRY: Duration = Duration::from_millis(500);

/// Counters not written yet, newest per (broadcast, rendition).
#[derive(Default)]
pub struct Outbox {
    pending: Mutex<HashMap<(String, String), Counters>>,
    /// Writes under way (for [`Cluster::flush_counters`]).
    busy: Mutex<usize>,
    ready: Notify,
}

impl Outbox {
    fn take(&self) -> Vec<((String, String), Counters)> {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        *self.busy.lock().unwrap_or_else(|p| p.into_inner()) += pending.len();
        pending.drain().collect()
    }

    fn done(&self, key: (String, String), retry: Option<Counters>) {
        if let Some(c) = retry {
            // Unless newer ones came meanwhile.
            self.pending
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .entry(key)
                .or_insert(c);
        }
        *self.busy.lock().unwrap_or_else(|p| p.into_inner()) -= 1;
    }

    fn is_idle(&self) -> bool {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_empty()
            && *self.busy.lock().unwrap_or_else(|p| p.into_inner()) == 0
    }
}

impl Outbox {
    /// Keeps `counters` to write (replacing older ones not written yet).
    pub fn put(&self, broadcast: &str, rendition: &str, counters: Counters) {
        self.pending
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((broadcast.to_owned(), rendition.to_owned()), counters);
        self.ready.notify_one();
    }

    /// Writes counters as they come, as `node` at the epoch `epoch` gives
    /// (none: released, nothing to write), until `stop`; then what is left.
    pub async fn run(
        &self,
        shared: Arc<dyn Shared>,
        node: Node,
        epoch: impl Fn(&str) -> Option<u64>,
        stop: CancellationToken,
    ) {
        loop {
            let stopping = tokio::select! {
                _ = self.ready.notified() => false,
                _ = stop.cancelled() => true,
            };
            let mut failed = false;
            for ((broadcast, rendition), counters) in self.take() {
                let key = (broadcast, rendition);
                let Some(epoch) = epoch(&key.0) else {
                    self.done(key, None);
                    continue;
                };
                let json = match serde_json::to_string(&counters) {
                    Ok(j) => j,
                    Err(err) => {
                        warn!(%err, "counters not encoded");
                        self.done(key, None);
                        continue;
                    }
                };
                match shared
                    .save_counters(&key.0, &key.1, &node, epoch, &json)
                    .await
                {
                    Ok(true) => self.done(key, None),
                    Ok(false) => {
                        info!(broadcast = %key.0, epoch, "counters not written: another origin holds this broadcast now");
                        self.done(key, None);
                    }
                    Err(err) => {
                        warn!(broadcast = %key.0, %err, "counters not written; trying again");
                        failed = true;
                        self.done(key, Some(counters));
                    }
                }
            }
            if stopping {
                return;
            }
            if failed {
                tokio::time::sleep(RETRY).await;
                self.ready.notify_one();
            }
        }
    }

    /// Waits until every counter handed over is written (or given up), at
    /// most `limit`; whether they were.
    pub async fn flush(&self, limit: Duration) -> bool {
        self.ready.notify_one();
        tokio::time::timeout(limit, async {
            while !self.is_idle() {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .is_ok()
    }
}
