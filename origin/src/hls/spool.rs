//! Live windows on disk, so that a restarted origin continues its playlists
//! (same generation, MSNs going up, an EXT-X-DISCONTINUITY, no URI reused)
//! instead of starting them over, and so that players and edges keep a valid
//! playlist to hold on while the publisher reconnects.
//!
//! Layout: `{root}/{broadcast}/{rendition}/` holds `meta.json` (counters,
//! codec facts and the segment list), `init{id}.mp4` and `s{msn}.m4s`. Each
//! file is written to a temporary name and renamed, media before `meta.json`,
//! so a crash at any point leaves the last complete state readable. Parts are
//! not kept: a window is saved once per segment, and a crash loses at most the
//! open segment. Nothing is fsynced: this survives a process crash, not a
//! power cut.
//!
//! Each rendition has one writer task fed by a `watch` channel: a newer state
//! replaces one not yet written, so a slow disk costs writes, never memory,
//! and never blocks packaging.

use std::collections::HashSet;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::{debug, warn};

use super::saved::{RenditionFacts, Saved, SavedSegment, WindowState};
use super::uris::{init_file, segment_file, valid_name};

/// Format of `meta.json`; another number is not read.
const META_VERSION: u32 = 1;
const META: &str = "meta.json";

/// A rendition read back at start-up.
#[derive(Debug)]
pub struct Restored {
    /// Broadcast id.
    pub broadcast: String,
    /// Rendition name.
    pub rendition: String,
    /// The window.
    pub saved: Saved,
}

#[derive(Clone, Serialize, Deserialize)]
struct Meta {
    version: u32,
    order: usize,
    generation: String,
    facts: RenditionFacts,
    next_part_seq: u64,
    next_init_id: u32,
    discontinuity_sequence: u64,
    next_msn: u64,
    inits: Vec<u32>,
    segments: Vec<MetaSegment>,
    /// Written by a clean stop (see [`WindowState::clean`]); absent before.
    #[serde(default)]
    clean: bool,
}

#[derive(Clone, Serialize, Deserialize)]
struct MetaSegment {
    msn: u64,
    duration: Duration,
    discontinuity: bool,
    program_date_time: SystemTime,
    init_id: u32,
}

/// Where windows are kept.
#[derive(Debug, Clone)]
pub struct Spool {
    root: PathBuf,
}

impl Spool {
    /// Windows under `root` (created when first needed).
    pub fn new(root: PathBuf) -> Spool {
        Spool { root }
    }

    /// Reads every saved window of a broadcast `keep` accepts and deletes the
    /// rest, including anything unreadable (logged). Blocking.
    pub fn load(&self, keep: impl Fn(&str) -> bool) -> Vec<Restored> {
        let mut out = Vec::new();
        let Ok(broadcasts) = std::fs::read_dir(&self.root) else {
            return out;
        };
        for b in broadcasts.flatten() {
            let id = b.file_name().to_string_lossy().into_owned();
            if !valid_name(&id) || !keep(&id) {
                remove_dir(&b.path());
                continue;
            }
            for r in std::fs::read_dir(b.path()).into_iter().flatten().flatten() {
                let name = r.file_name().to_string_lossy().into_owned();
                match read_window(&r.path()) {
                    Ok(saved) if valid_name(&name) => out.push(Restored {
                        broadcast: id.clone(),
                        rendition: name,
                        saved,
                    }),
                    Ok(_) => remove_dir(&r.path()),
                    Err(err) => {
                        warn!(broadcast = %id, rendition = %name, %err, "saved window unreadable; dropped");
                        remove_dir(&r.path());
                    }
                }
            }
        }
        out
    }

    /// A writer for one rendition's window, or `None` if the names cannot be
    /// directory names (then the window is simply not kept).
    pub fn writer(&self, broadcast: &str, rendition: &str) -> Option<Writer> {
        if !valid_name(broadcast) || !valid_name(rendition) {
            warn!(%broadcast, %rendition, "names unsafe as paths; window not kept on disk");
            return None;
        }
        let dir = self.root.join(broadcast).join(rendition);
        let (tx, rx) = watch::channel((0, Job::Idle));
        let (done_tx, done) = watch::channel(0);
        tokio::spawn(write_loop(dir, rx, done_tx));
        Some(Writer { tx, done })
    }
}

#[derive(Clone)]
enum Job {
    Idle,
    Save(Arc<Saved>),
    Remove,
}

/// Saves one rendition's window in the background.
pub struct Writer {
    tx: watch::Sender<(u64, Job)>,
    done: watch::Receiver<u64>,
}

impl Writer {
    /// Replaces the saved window (without waiting).
    pub fn save(&self, saved: Saved) {
        self.tx
            .send_modify(|(v, job)| (*v, *job) = (*v + 1, Job::Save(Arc::new(saved))));
    }

    /// Deletes the saved window (the broadcast ended).
    pub fn remove(&self) {
        self.tx
            .send_modify(|(v, job)| (*v, *job) = (*v + 1, Job::Remove));
    }

    /// Waits until everything asked so far is on disk, at most `limit`.
    pub async fn flush(&self, limit: Duration) -> bool {
        let want = self.tx.borrow().0;
        let mut done = self.done.clone();
        tokio::time::timeout(limit, done.wait_for(|d| *d >= want))
            .await
            .is_ok_and(|r| r.is_ok())
    }
}

async fn write_loop(dir: PathBuf, mut rx: watch::Receiver<(u64, Job)>, done: watch::Sender<u64>) {
    let mut on_disk = OnDisk::default();
    while rx.changed().await.is_ok() {
        let (version, job) = rx.borrow_and_update().clone();
        let dir2 = dir.clone();
        let removing = matches!(job, Job::Remove);
        let result = tokio::task::spawn_blocking(move || {
            let r = match &job {
                Job::Idle => Ok(()),
                Job::Save(saved) => write_window(&dir2, saved, &mut on_disk),
                Job::Remove => {
                    remove_dir(&dir2);
                    Ok(())
                }
            };
            (r, on_disk)
        })
        .await;
        match result {
            Ok((r, d)) => {
                on_disk = d;
                if let Err(err) = r {
                    warn!(dir = %dir.display(), %err, "saving the window failed");
                    // Start over next time: rewrite everything.
                    on_disk = OnDisk::default();
                }
            }
            // The runtime is shutting down after the stop's final save
            // (flush); a save queued after it is simply not made.
            Err(err) if err.is_cancelled() => {
                debug!(dir = %dir.display(), "window save cancelled at shutdown");
                return;
            }
            Err(err) => {
                warn!(%err, "window writer panicked");
                on_disk = OnDisk::default();
            }
        }
        done.send_replace(version);
        if removing {
            // A new publish of the same broadcast gets a new writer.
            return;
        }
    }
}

#[derive(Default)]
struct OnDisk {
    segments: HashSet<u64>,
    inits: HashSet<u32>,
}

fn write_atomic(dir: &Path, name: &str, data: &[u8]) -> io::Result<()> {
    let tmp = dir.join(format!(".{name}.tmp"));
    std::fs::write(&tmp, data)?;
    std::fs::rename(&tmp, dir.join(name))
}

fn write_window(dir: &Path, saved: &Saved, on_disk: &mut OnDisk) -> io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let st = &saved.state;
    for (id, data) in &st.inits {
        if on_disk.inits.insert(*id) {
            write_atomic(dir, &init_file(*id), data)?;
        }
    }
    for s in &st.segments {
        if on_disk.segments.insert(s.msn) {
            write_atomic(dir, &segment_file(s.msn), &s.data)?;
        }
    }
    let meta = Meta {
        version: META_VERSION,
        order: saved.order,
        generation: saved.generation.clone(),
        facts: saved.facts.clone(),
        next_part_seq: st.next_part_seq,
        next_init_id: st.next_init_id,
        discontinuity_sequence: st.discontinuity_sequence,
        next_msn: st.next_msn,
        inits: st.inits.iter().map(|(id, _)| *id).collect(),
        segments: st
            .segments
            .iter()
            .map(|s| MetaSegment {
                msn: s.msn,
                duration: s.duration,
                discontinuity: s.discontinuity,
                program_date_time: s.program_date_time,
                init_id: s.init_id,
            })
            .collect(),
        clean: st.clean,
    };
    let json = serde_json::to_vec(&meta).map_err(io::Error::other)?;
    write_atomic(dir, META, &json)?;
    // Only now that meta.json no longer names them: files that left the window.
    let gone: Vec<u64> = on_disk
        .segments
        .iter()
        .copied()
        .filter(|m| !st.segments.iter().any(|s| s.msn == *m))
        .collect();
    for msn in gone {
        on_disk.segments.remove(&msn);
        remove_file(&dir.join(segment_file(msn)));
    }
    let gone: Vec<u32> = on_disk
        .inits
        .iter()
        .copied()
        .filter(|i| !st.inits.iter().any(|(id, _)| id == i))
        .collect();
    for id in gone {
        on_disk.inits.remove(&id);
        remove_file(&dir.join(init_file(id)));
    }
    debug!(dir = %dir.display(), segments = st.segments.len(), "window saved");
    Ok(())
}

fn read_window(dir: &Path) -> io::Result<Saved> {
    let meta: Meta = serde_json::from_slice(&std::fs::read(dir.join(META))?)
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    if meta.version != META_VERSION {
        return Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!("meta.json version {}", meta.version),
        ));
    }
    if meta.clean {
        // The window will be served again under the same URIs, and the next
        // save may come too late for a crash: from now on this is an unclean
        // state until another clean stop says otherwise.
        let unclean = Meta {
            clean: false,
            ..meta.clone()
        };
        let json = serde_json::to_vec(&unclean).map_err(io::Error::other)?;
        write_atomic(dir, META, &json)?;
    }
    // A missing file drops its segment; Window::restore keeps what follows on.
    let inits = meta
        .inits
        .iter()
        .filter_map(|id| {
            Some((
                *id,
                Bytes::from(std::fs::read(dir.join(init_file(*id))).ok()?),
            ))
        })
        .collect();
    let segments = meta
        .segments
        .iter()
        .filter_map(|s| {
            Some(SavedSegment {
                msn: s.msn,
                duration: s.duration,
                discontinuity: s.discontinuity,
                program_date_time: s.program_date_time,
                init_id: s.init_id,
                data: Bytes::from(std::fs::read(dir.join(segment_file(s.msn))).ok()?),
            })
        })
        .collect();
    // Leftovers of an interrupted write.
    for e in std::fs::read_dir(dir)?.flatten() {
        if e.file_name().to_string_lossy().ends_with(".tmp") {
            remove_file(&e.path());
        }
    }
    Ok(Saved {
        order: meta.order,
        generation: meta.generation,
        facts: meta.facts,
        state: WindowState {
            next_part_seq: meta.next_part_seq,
            next_init_id: meta.next_init_id,
            discontinuity_sequence: meta.discontinuity_sequence,
            next_msn: meta.next_msn,
            inits,
            segments,
            clean: meta.clean,
        },
    })
}

fn remove_file(path: &Path) {
    if let Err(err) = std::fs::remove_file(path)
        && err.kind() != io::ErrorKind::NotFound
    {
        warn!(path = %path.display(), %err, "could not delete");
    }
}

/// Deletes `dir`, then its parent if that is left empty (a broadcast with no
/// renditions).
fn remove_dir(dir: &Path) {
    if let Err(err) = std::fs::remove_dir_all(dir)
        && err.kind() != io::ErrorKind::NotFound
    {
        warn!(path = %dir.display(), %err, "could not delete");
    }
    if let Some(parent) = dir.parent() {
        let _ = std::fs::remove_dir(parent);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn saved(msns: std::ops::RangeInclusive<u64>) -> Saved {
        Saved {
            order: 1,
            generation: "g1".into(),
            facts: RenditionFacts {
                codecs: "avc1.64001f".into(),
                resolution: (854, 480),
                frame_rate: 30.0,
                nominal_bps: 1_328_000,
            },
            state: WindowState {
                next_part_seq: 5 * (msns.end() + 1),
                next_init_id: 1,
                discontinuity_sequence: 2,
                next_msn: msns.end() + 1,
                inits: vec![(0, Bytes::from_static(b"init"))],
                segments: msns
                    .map(|msn| SavedSegment {
                        msn,
                        duration: Duration::from_millis(1000),
                        discontinuity: msn == 4,
                        program_date_time: SystemTime::UNIX_EPOCH + Duration::from_secs(msn),
                        init_id: 0,
                        data: Bytes::from(vec![msn as u8; 100]),
                    })
                    .collect(),
                clean: true,
            },
        }
    }

    fn files(dir: &Path) -> Vec<String> {
        let mut f: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        f.sort();
        f
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn windows_survive_a_restart_and_old_files_go() {
        let tmp = tempfile::tempdir().unwrap();
        let spool = Spool::new(tmp.path().join("hls"));
        let w = spool.writer("b1", "480p").unwrap();
        w.save(saved(3..=5));
        assert!(w.flush(Duration::from_secs(5)).await);
        w.save(saved(4..=6));
        assert!(w.flush(Duration::from_secs(5)).await);
        let dir = tmp.path().join("hls/b1/480p");
        assert_eq!(
            files(&dir),
            ["init0.mp4", "meta.json", "s4.m4s", "s5.m4s", "s6.m4s"]
        );
        // An interrupted write and a broadcast that has ended since.
        std::fs::write(dir.join(".s7.m4s.tmp"), b"half").unwrap();
        let other = spool.writer("gone", "480p").unwrap();
        other.save(saved(1..=1));
        assert!(other.flush(Duration::from_secs(5)).await);

        let restored = spool.load(|id| id != "gone");
        assert_eq!(restored.len(), 1);
        let r = &restored[0];
        assert_eq!((r.broadcast.as_str(), r.rendition.as_str()), ("b1", "480p"));
        let want = saved(4..=6);
        assert_eq!(r.saved.state, want.state);
        assert_eq!(r.saved.generation, "g1");
        assert_eq!(r.saved.facts.resolution, (854, 480));
        assert!(!tmp.path().join("hls/gone").exists());
        assert!(!dir.join(".s7.m4s.tmp").exists());
        // Reading a clean window takes its mark away: a crash from now on is
        // an unclean stop.
        let meta = std::fs::read_to_string(dir.join(META)).unwrap();
        assert!(meta.contains(r#","clean":false"#), "{meta}");
        assert!(!spool.load(|_| true)[0].saved.state.clean);
        // A meta.json from before the clean flag reads as an unclean stop.
        std::fs::write(dir.join(META), meta.replace(r#","clean":false"#, "")).unwrap();
        assert!(!spool.load(|_| true)[0].saved.state.clean);

        w.remove();
        assert!(w.flush(Duration::from_secs(5)).await);
        assert!(
            !tmp.path().join("hls/b1").exists(),
            "an ended broadcast leaves nothing"
        );
    }

    #[tokio::test]
    async fn unreadable_windows_are_dropped_and_unsafe_names_not_kept() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("b1/720p");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(META), b"{not json").unwrap();
        let spool = Spool::new(tmp.path().to_path_buf());
        assert!(spool.load(|_| true).is_empty());
        assert!(!tmp.path().join("b1").exists());
        assert!(spool.writer("../x", "480p").is_none());
    }
}
