//! What the WebRTC server counts, for the metrics endpoint.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, Mutex};

/// Counters for the metrics endpoint.
#[derive(Debug, Default)]
pub struct Stats {
    /// The sessions open now (and WHEP viewers among them).
    pub seats: Arc<Seats>,
    /// Keyframe requests (PLI/FIR) viewers sent; answered by the next IDR.
    pub viewer_keyframe_requests: AtomicU64,
    /// Datagrams received.
    pub datagrams_in: AtomicU64,
    /// Bytes received.
    pub bytes_in: AtomicU64,
    /// Bytes sent.
    pub bytes_out: AtomicU64,
    /// Keyframe requests sent to publishers.
    pub plis_sent: AtomicU64,
    /// Retransmission requests (NACK) sent to publishers.
    pub nacks_sent: AtomicU64,
    /// NACKs received from viewers.
    pub nacks_received: AtomicU64,
    /// Media events dropped because a transcoder was behind.
    pub media_dropped: AtomicU64,
    /// Video frames packetized for viewers (once per frame of a rendition).
    pub frames_packetized: AtomicU64,
}

/// The places under the session limits. An offer takes its seat before its
/// answer goes out, and the seat goes back when its session is dropped, so
/// the limits hold against a burst of offers and are counted in one place.
#[derive(Debug, Default)]
pub struct Seats(Mutex<Taken>);

#[derive(Debug, Default)]
struct Taken {
    sessions: usize,
    viewers: HashMap<Arc<str>, usize>,
}

/// Which limit refused a seat.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NoSeat {
    /// Every session on this server is taken.
    Server,
    /// Every viewer's place for the broadcast is taken.
    Broadcast,
}

/// One session's place: given back when dropped (with its session).
#[derive(Debug)]
pub struct Seat {
    seats: Arc<Seats>,
    viewer_of: Option<Arc<str>>,
}

impl Seats {
    /// A place for a session (a viewer of `viewer_of`, or a publisher),
    /// within `max_sessions` in all and `max_viewers` per broadcast.
    pub fn take(
        self: &Arc<Self>,
        viewer_of: Option<&Arc<str>>,
        max_sessions: usize,
        max_viewers: usize,
    ) -> Result<Seat, NoSeat> {
        let mut t = self.lock();
        t.check(viewer_of.map(|b| &**b), max_sessions, max_viewers)?;
        if let Some(b) = viewer_of {
            *t.viewers.entry(b.clone()).or_insert(0) += 1;
        }
        t.sessions += 1;
        Ok(Seat {
            seats: self.clone(),
            viewer_of: viewer_of.cloned(),
        })
    }

    /// Sessions open now.
    pub fn sessions(&self) -> usize {
        self.lock().sessions
    }

    /// WHEP viewers open now.
    pub fn viewers(&self) -> usize {
        self.lock().viewers.values().sum()
    }

    /// Whether a session (a viewer of `viewer_of`, or a publisher) could
    /// open now: a cheap check before the work of answering ([`Seats::take`]
    /// is what holds).
    pub fn room_for(
        &self,
        viewer_of: Option<&str>,
        max_sessions: usize,
        max_viewers: usize,
    ) -> Result<(), NoSeat> {
        self.lock().check(viewer_of, max_sessions, max_viewers)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Taken> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl Taken {
    fn check(
        &self,
        viewer_of: Option<&str>,
        max_sessions: usize,
        max_viewers: usize,
    ) -> Result<(), NoSeat> {
        if self.sessions >= max_sessions {
            return Err(NoSeat::Server);
        }
        if viewer_of.is_some_and(|b| self.viewers.get(b).copied().unwrap_or(0) >= max_viewers) {
            return Err(NoSeat::Broadcast);
        }
        Ok(())
    }
}

impl Drop for Seat {
    fn drop(&mut self) {
        let mut t = self.seats.lock();
        t.sessions = t.sessions.saturating_sub(1);
        if let Some(b) = &self.viewer_of
            && let Some(n) = t.viewers.get_mut(b)
        {
            *n = n.saturating_sub(1);
            if *n == 0 {
                t.viewers.remove(b);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seats_hold_both_limits_and_come_back_when_dropped() {
        let seats = Arc::new(Seats::default());
        let (a, b): (Arc<str>, Arc<str>) = ("a".into(), "b".into());
        let publisher = seats.take(None, 4, 2).unwrap();
        let v1 = seats.take(Some(&a), 4, 2).unwrap();
        let v2 = seats.take(Some(&a), 4, 2).unwrap();
        assert_eq!(seats.take(Some(&a), 4, 2).unwrap_err(), NoSeat::Broadcast);
        assert_eq!(seats.room_for(Some("a"), 4, 2), Err(NoSeat::Broadcast));
        assert_eq!(seats.room_for(Some("b"), 4, 2), Ok(()));
        let w1 = seats.take(Some(&b), 4, 2).unwrap();
        assert_eq!(seats.take(Some(&b), 4, 2).unwrap_err(), NoSeat::Server);
        assert_eq!(seats.room_for(None, 4, 2), Err(NoSeat::Server));
        assert_eq!((seats.sessions(), seats.viewers()), (4, 3));
        drop(v1);
        let v3 = seats.take(Some(&a), 4, 2).unwrap();
        drop((publisher, v2, v3, w1));
        assert_eq!((seats.sessions(), seats.viewers()), (0, 0));
        assert!(seats.lock().viewers.is_empty());
    }
}
