//! Which recordings retention deletes (pure): replays older than the age
//! limit, then the oldest ended replays until all recordings fit the quota.
//! A recording still being written is never chosen, even if the quota
//! cannot be met without it.

use std::time::{Duration, SystemTime};

/// After this long without a write, a recording that never got its end
/// (its origin crashed and the broadcast ended elsewhere) counts as ended.
pub const STALE_AFTER: Duration = Duration::from_secs(6 * 3600);

/// A recording as retention sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct Kept {
    /// Broadcast id.
    pub id: String,
    /// Bytes on disk.
    pub bytes: u64,
    /// When it ended, if it did.
    pub ended: Option<SystemTime>,
    /// Its last write.
    pub last_write: SystemTime,
}

impl Kept {
    /// When it ended, or counts as ended; `None` while it may be live.
    fn over(&self, now: SystemTime) -> Option<SystemTime> {
        self.ended.or_else(|| {
            let idle = now.duration_since(self.last_write).unwrap_or_default();
            (idle >= STALE_AFTER).then_some(self.last_write)
        })
    }
}

/// Why a recording is deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reason {
    /// Older than `max_age`.
    MaxAge,
    /// Over the quota.
    MaxBytes,
}

impl Reason {
    /// The metrics label.
    pub fn label(self) -> &'static str {
        match self {
            Reason::MaxAge => "max_age",
            Reason::MaxBytes => "max_bytes",
        }
    }
}

/// The recordings to delete, oldest first.
pub fn choose(
    kept: &[Kept],
    now: SystemTime,
    max_age: Duration,
    max_bytes: u64,
) -> Vec<(String, Reason)> {
    let mut over: Vec<(&Kept, SystemTime)> = kept
        .iter()
        .filter_map(|k| Some((k, k.over(now)?)))
        .collect();
    over.sort_by_key(|(k, at)| (*at, k.id.clone()));
    let mut total: u64 = kept.iter().map(|k| k.bytes).sum();
    let mut out = Vec::new();
    for (k, at) in over {
        let old = now.duration_since(at).unwrap_or_default() > max_age;
        let reason = if old {
            Reason::MaxAge
        } else if total > max_bytes {
            Reason::MaxBytes
        } else {
            continue;
        };
        total -= k.bytes;
        out.push((k.id.clone(), reason));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: SystemTime = SystemTime::UNIX_EPOCH;

    fn at(secs: u64) -> SystemTime {
        T0 + Duration::from_secs(secs)
    }

    fn kept(id: &str, bytes: u64, ended: Option<u64>, last_write: u64) -> Kept {
        Kept {
            id: id.into(),
            bytes,
            ended: ended.map(at),
            last_write: at(last_write),
        }
    }

    #[test]
    fn the_oldest_ended_replays_go_first_and_a_live_recording_never() {
        let now = at(100_000);
        let list = [
            kept("newer", 400, Some(90_000), 90_000),
            kept("live", 900, None, 99_999),
            kept("older", 400, Some(80_000), 80_000),
        ];
        let day = Duration::from_secs(86_400);
        // Under the quota: nothing.
        assert!(choose(&list, now, day, 2_000).is_empty());
        // 1,700 bytes for a quota of 1,500: the older replay alone is enough.
        assert_eq!(
            choose(&list, now, day, 1_500),
            [("older".to_string(), Reason::MaxBytes)]
        );
        // A quota the live recording alone exceeds: every replay, never it.
        let ids: Vec<String> = choose(&list, now, day, 10)
            .into_iter()
            .map(|(id, _)| id)
            .collect();
        assert_eq!(ids, ["older", "newer"]);
        // Age: only what ended more than max_age ago.
        assert_eq!(
            choose(&list, now, Duration::from_secs(15_000), u64::MAX),
            [("older".to_string(), Reason::MaxAge)]
        );
    }

    #[test]
    fn a_recording_that_never_ended_counts_as_ended_once_stale() {
        let stale = [kept("crashed", 10, None, 0)];
        let now = at(STALE_AFTER.as_secs() - 1);
        assert!(choose(&stale, now, Duration::from_secs(1), 0).is_empty());
        let now = at(STALE_AFTER.as_secs() + 10);
        assert_eq!(
            choose(&stale, now, Duration::from_secs(1), u64::MAX),
            [("crashed".to_string(), Reason::MaxAge)]
        );
    }
}
