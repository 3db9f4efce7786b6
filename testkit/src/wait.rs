//! Waiting with a bound, and loopback ports.

use std::net::{SocketAddr, TcpListener};
use std::time::Duration;

/// How often [`eventually`] asks again.
pub const POLL_INTERVAL: Duration = Duration::from_millis(100);

/// Asks `f` every [`POLL_INTERVAL`] until it says yes or `limit` passes;
/// whether it said yes.
pub async fn eventually(limit: Duration, mut f: impl AsyncFnMut() -> bool) -> bool {
    let end = tokio::time::Instant::now() + limit;
    loop {
        if f().await {
            return true;
        }
        if tokio::time::Instant::now() >= end {
            return false;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// Like [`eventually`], for a value: the first `Some` that `f` returns.
pub async fn eventually_some<T>(
    limit: Duration,
    mut f: impl AsyncFnMut() -> Option<T>,
) -> Option<T> {
    let end = tokio::time::Instant::now() + limit;
    loop {
        if let Some(v) = f().await {
            return Some(v);
        }
        if tokio::time::Instant::now() >= end {
            return None;
        }
        tokio::time::sleep(POLL_INTERVAL).await;
    }
}

/// A free loopback address (bound, then released; the OS does not hand the
/// port out again at once).
pub fn free_addr() -> SocketAddr {
    TcpListener::bind("127.0.0.1:0")
        .expect("binding a loopback port")
        .local_addr()
        .expect("a bound socket has an address")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn eventually_asks_until_yes_or_the_limit() {
        let mut asked = 0;
        assert!(
            eventually(Duration::from_secs(1), async || {
                asked += 1;
                asked == 3
            })
            .await
        );
        assert_eq!(asked, 3);
        let start = tokio::time::Instant::now();
        assert!(!eventually(Duration::from_secs(1), async || false).await);
        assert!(start.elapsed() >= Duration::from_secs(1));
        assert_eq!(
            eventually_some(Duration::from_secs(1), async || Some(7)).await,
            Some(7)
        );
    }
}
