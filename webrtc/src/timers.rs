//! When each session wants str0m woken: a min-heap with lazy deletion, so
//! the task wakes only the sessions that are due, in O(log n) each, instead
//! of polling every session on every datagram and frame.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::time::Instant;

/// Wake-ups by session id.
#[derive(Debug, Default)]
pub struct Timers {
    heap: BinaryHeap<Reverse<(Instant, String)>>,
    /// The one wake-up that counts per session; heap entries that differ
    /// are stale and skipped.
    scheduled: HashMap<String, Instant>,
}

impl Timers {
    /// Session `id` wants waking at `at`. An earlier wake-up already set
    /// stands (when it comes, the session says when next).
    pub fn set(&mut self, id: &str, at: Instant) {
        if self.scheduled.get(id).is_some_and(|t| *t <= at) {
            return;
        }
        self.scheduled.insert(id.to_owned(), at);
        self.heap.push(Reverse((at, id.to_owned())));
    }

    /// Session `id` is gone.
    pub fn forget(&mut self, id: &str) {
        self.scheduled.remove(id);
    }

    /// The next wake-up, if any.
    pub fn earliest(&mut self) -> Option<Instant> {
        while let Some(Reverse((at, id))) = self.heap.peek() {
            if self.scheduled.get(id) == Some(at) {
                return Some(*at);
            }
            self.heap.pop();
        }
        None
    }

    /// The sessions due at `now`, taken off: each sets its next wake-up
    /// after it has been woken.
    pub fn due(&mut self, now: Instant) -> Vec<String> {
        let mut out = Vec::new();
        while let Some(at) = self.earliest()
            && at <= now
        {
            let Reverse((_, id)) = self.heap.pop().expect("peeked");
            self.scheduled.remove(&id);
            out.push(id);
        }
        out
    }

    /// Entries held, stale ones included.
    #[cfg(test)]
    fn held(&self) -> usize {
        self.heap.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn only_due_sessions_wake_each_once_at_their_earliest_wish() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut t = Timers::default();
        t.set("a", ms(10));
        t.set("b", ms(5));
        t.set("a", ms(3)); // earlier: replaces
        t.set("b", ms(8)); // later: the earlier one stands
        t.set("c", ms(20));
        assert_eq!(t.earliest(), Some(ms(3)));
        assert_eq!(t.due(ms(1)), Vec::<String>::new());
        assert_eq!(t.due(ms(6)), ["a", "b"]);
        // a's stale 10 ms entry wakes nobody.
        assert_eq!(t.due(ms(12)), Vec::<String>::new());
        t.set("a", ms(15));
        t.forget("c");
        assert_eq!(t.earliest(), Some(ms(15)));
        assert_eq!(t.due(ms(30)), ["a"]);
        assert_eq!(t.earliest(), None);
        assert_eq!(t.held(), 0);
    }
}
