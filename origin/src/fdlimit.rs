//! The open-file limit. Every viewer connection, WebSocket and publisher is a
//! socket, and a default Debian shell allows 1,024 open files (systemd
//! services 524,288 as the hard limit): far fewer than the connection caps.

use tracing::{info, warn};

/// Files the server needs beside its connections: the database, the window
/// spool, GStreamer, pipes and the listeners.
pub const RESERVED_FILES: u64 = 1024;

/// Raises the soft open-file limit to the hard one, logs the result, and
/// warns when it is below `needed`. Returns the limit now in force.
pub fn raise(needed: u64) -> Option<u64> {
    let (soft, hard) = match rlimit::Resource::NOFILE.get() {
        Ok(limits) => limits,
        Err(err) => {
            warn!(%err, "cannot read the open-file limit");
            return None;
        }
    };
    let now = match rlimit::increase_nofile_limit(hard) {
        Ok(n) => n,
        Err(err) => {
            warn!(%err, soft, hard, "cannot raise the open-file limit");
            soft
        }
    };
    if now < needed {
        warn!(
            open_files = now,
            hard,
            needed,
            "the open-file limit is below what the connection limits need; raise it (ulimit -n, or LimitNOFILE= in the systemd unit) or lower [http] and [ingest] max_connections"
        );
    } else {
        info!(open_files = now, was = soft, needed, "open-file limit");
    }
    Some(now)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_soft_limit_is_raised_to_the_hard_limit() {
        let (_, hard) = rlimit::Resource::NOFILE.get().unwrap();
        let now = raise(1).unwrap();
        assert_eq!(rlimit::Resource::NOFILE.get().unwrap().0, now);
        assert_eq!(now, hard);
        // Raising again changes nothing.
        assert_eq!(raise(1), Some(now));
    }
}
