//! What a transcode costs: CPU seconds per second of media, the real-time
//! factor (below 1.0 it keeps up on one core; the benchmark's number).
//!
//! Each session's streaming threads name themselves after it (`tc{n}`) on
//! the first event they push; the x264 threads they start later inherit the
//! name. So the
//! session's CPU time is the sum over `/proc/self/task/*` with that name.
//! Threads that have exited take their time with them; sample it often (the
//! origin does every few seconds) and treat a drop as a pipeline restart.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

static NEXT_TAG: AtomicU64 = AtomicU64::new(0);

/// Longest thread name Linux keeps (15 bytes plus the NUL).
const MAX_THREAD_NAME: usize = 15;

/// A transcode's CPU time and media time, shared with whoever samples them.
#[derive(Debug, Clone)]
pub struct Usage(Arc<Inner>);

#[derive(Debug)]
struct Inner {
    tag: String,
    first_pts_us: AtomicU64,
    last_pts_us: AtomicU64,
    done: AtomicBool,
}

impl Default for Usage {
    fn default() -> Self {
        Self::new()
    }
}

impl Usage {
    /// A new session's usage, with a thread name no other session has.
    pub fn new() -> Usage {
        let n = NEXT_TAG.fetch_add(1, Ordering::Relaxed);
        let tag = format!("tc{n}");
        debug_assert!(tag.len() <= MAX_THREAD_NAME);
        Usage(Arc::new(Inner {
            tag,
            first_pts_us: AtomicU64::new(u64::MAX),
            last_pts_us: AtomicU64::new(0),
            done: AtomicBool::new(false),
        }))
    }

    /// The thread name of this session's threads.
    pub fn tag(&self) -> &str {
        &self.0.tag
    }

    /// Names the calling thread after the session.
    pub fn name_this_thread(&self) {
        // Not fatal: only the accounting misses this thread.
        let _ = std::fs::write("/proc/thread-self/comm", &self.0.tag);
    }

    /// Records a source frame's timestamp.
    pub(crate) fn saw(&self, pts: Duration) {
        let us = pts.as_micros() as u64;
        self.0.first_pts_us.fetch_min(us, Ordering::Relaxed);
        self.0.last_pts_us.fetch_max(us, Ordering::Relaxed);
    }

    pub(crate) fn finish(&self) {
        self.0.done.store(true, Ordering::Relaxed);
    }

    /// The session has ended.
    pub fn is_done(&self) -> bool {
        self.0.done.load(Ordering::Relaxed)
    }

    /// Seconds of source video seen so far.
    pub fn media_seconds(&self) -> f64 {
        let first = self.0.first_pts_us.load(Ordering::Relaxed);
        let last = self.0.last_pts_us.load(Ordering::Relaxed);
        last.saturating_sub(first) as f64 / 1e6
    }

    /// CPU seconds used by the session's live threads.
    pub fn cpu_seconds(&self) -> f64 {
        let ticks = clock_ticks_per_second();
        let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
            return 0.0;
        };
        tasks
            .flatten()
            .filter(|t| {
                std::fs::read_to_string(t.path().join("comm"))
                    .is_ok_and(|c| c.trim_end() == self.0.tag)
            })
            .filter_map(|t| std::fs::read_to_string(t.path().join("stat")).ok())
            .filter_map(|s| thread_ticks(&s))
            .sum::<u64>() as f64
            / ticks
    }
}

/// utime + stime from a `/proc/.../stat` line (fields 14 and 15; the name in
/// field 2 may hold spaces and parentheses, so count from its closing one).
fn thread_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as f64 } else { 100.0 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines_parse_even_with_odd_thread_names() {
        let line = "4242 (tc1) x:src) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 1 0";
        assert_eq!(thread_ticks(line), Some(300));
        assert_eq!(thread_ticks("garbage"), None);
    }

    #[test]
    fn a_named_thread_is_counted_and_others_are_not() {
        let usage = Usage::new();
        assert_eq!(usage.cpu_seconds(), 0.0);
        let u = usage.clone();
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let worker = std::thread::spawn(move || {
            u.name_this_thread();
            // Burn about 0.3 s of CPU, then wait to be sampled.
            let t = std::time::Instant::now();
            let mut x = 0u64;
            while t.elapsed() < Duration::from_millis(300) {
                x = x.wrapping_mul(6364136223846793005).wrapping_add(1);
            }
            std::hint::black_box(x);
            rx.recv().ok();
        });
        std::thread::sleep(Duration::from_millis(400));
        let cpu = usage.cpu_seconds();
        tx.send(()).unwrap();
        worker.join().unwrap();
        assert!((0.1..=0.5).contains(&cpu), "counted {cpu} CPU-s");
        assert_eq!(Usage::new().cpu_seconds(), 0.0, "another session's threads");
        usage.saw(Duration::from_secs(3));
        usage.saw(Duration::from_millis(5500));
        assert_eq!(usage.media_seconds(), 2.5);
    }
}
