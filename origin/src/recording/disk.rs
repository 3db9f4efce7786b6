//! Recordings on disk: the layout, and reading one back (blocking).
//!
//! ```text
//! {root}/{broadcast}/ended                  when it ended (Unix seconds)
//! {root}/{broadcast}/deleted                its owner deleted it (nothing else is left)
//! {root}/{broadcast}/thumbnail.jpg          its last thumbnail
//! {root}/{broadcast}/{generation}/{rendition}/init{id}.mp4, s{msn}.m4s
//! {root}/{broadcast}/{generation}/{rendition}/index.jsonl, facts.json
//! ```
//!
//! One directory per broadcast, so a replay is backed up or deleted as one.
//! Media files and `facts.json` are written to a temporary name, fsynced and
//! renamed; an index line is appended and fsynced only after its segment
//! is, so a crash loses at most what was being written. Every new entry's
//! directory is fsynced too, so a power cut keeps what was acknowledged.

use std::collections::HashMap;
use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::replay::{Facts, RenditionReplay, Run, parse_index};
use crate::hls::uris::valid_name;

/// A rendition's segment list.
pub const INDEX: &str = "index.jsonl";
/// A rendition's codec facts.
pub const FACTS: &str = "facts.json";
/// Marks an ended broadcast; holds the Unix second it ended.
pub const ENDED: &str = "ended";
/// Marks a replay its owner deleted.
pub const DELETED: &str = "deleted";
/// The last thumbnail.
pub const THUMBNAIL: &str = "thumbnail.jpg";

/// A broadcast's recording as read back.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Recording {
    /// Renditions with at least one segment.
    pub renditions: Vec<RenditionReplay>,
    /// When it ended; `None` while recording (or after a crash it never
    /// ended from).
    pub ended: Option<SystemTime>,
    /// Deleted by its owner.
    pub deleted: bool,
    /// Bytes on disk.
    pub bytes: u64,
}

impl Recording {
    /// The longest rendition's duration.
    pub fn duration(&self) -> Duration {
        self.renditions
            .iter()
            .map(RenditionReplay::duration)
            .max()
            .unwrap_or_default()
    }
}

/// Broadcast ids with a directory under `root`.
pub fn list(root: &Path) -> Vec<String> {
    std::fs::read_dir(root)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| valid_name(n))
        .collect()
}

/// Reads broadcast `id`'s recording; `None` if there is none.
pub fn read(root: &Path, id: &str) -> io::Result<Option<Recording>> {
    let dir = root.join(id);
    if !dir.is_dir() {
        return Ok(None);
    }
    let mut rec = Recording {
        deleted: dir.join(DELETED).exists(),
        ended: read_ended(&dir),
        ..Default::default()
    };
    let mut by_rendition: HashMap<String, (Facts, Vec<Run>)> = HashMap::new();
    for g in std::fs::read_dir(&dir)?.flatten() {
        let generation = g.file_name().to_string_lossy().into_owned();
        if !valid_name(&generation) || !g.path().is_dir() {
            continue;
        }
        for r in std::fs::read_dir(g.path())?.flatten() {
            let name = r.file_name().to_string_lossy().into_owned();
            if !valid_name(&name) {
                continue;
            }
            let index = std::fs::read_to_string(r.path().join(INDEX)).unwrap_or_default();
            let facts: Option<Facts> = std::fs::read(r.path().join(FACTS))
                .ok()
                .and_then(|b| serde_json::from_slice(&b).ok());
            let entry = by_rendition.entry(name).or_default();
            if let Some(f) = facts {
                entry.0 = f;
            }
            entry.1.push(Run {
                generation: generation.clone(),
                entries: parse_index(&index),
            });
        }
    }
    rec.renditions = by_rendition
        .into_iter()
        .map(|(name, (facts, runs))| RenditionReplay::new(name, facts, runs))
        .filter(|r| !r.runs.is_empty())
        .collect();
    rec.renditions.sort_by_key(|r| r.facts.order);
    rec.bytes = dir_bytes(&dir);
    Ok(Some(rec))
}

fn read_ended(dir: &Path) -> Option<SystemTime> {
    let text = std::fs::read_to_string(dir.join(ENDED)).ok()?;
    let secs: u64 = text.trim().parse().ok()?;
    Some(UNIX_EPOCH + Duration::from_secs(secs))
}

/// Bytes of every file under `dir`.
pub fn dir_bytes(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_bytes(&e.path()),
            Ok(_) => e.metadata().map_or(0, |m| m.len()),
            Err(_) => 0,
        })
        .sum()
}

/// Writes `data` to `path` through a temporary file, fsynced, then renamed
/// (and the rename fsynced, so that a power cut keeps it).
pub fn write_atomic(path: &Path, data: &[u8]) -> io::Result<()> {
    let tmp = tmp_path(path);
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_data()?;
        std::fs::rename(&tmp, path)?;
        sync_parent(path)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

/// Appends one line to `path` and fsyncs it (and, when it creates the
/// file, its directory). A failed append may leave a torn line, which
/// readers skip.
pub fn append_line(path: &Path, line: &str) -> io::Result<()> {
    let new = !path.exists();
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    f.write_all(format!("{line}\n").as_bytes())?;
    f.sync_data()?;
    if new {
        sync_parent(path)?;
    }
    Ok(())
}

/// Creates `dir` (under `root`, which exists) and fsyncs every directory
/// an entry was added to, so that a power cut keeps the path.
pub fn create_dirs(root: &Path, dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(dir)?;
    let mut at = dir;
    while at != root {
        sync_parent(at)?;
        match at.parent() {
            Some(p) => at = p,
            None => break,
        }
    }
    Ok(())
}

/// Fsyncs the directory holding `path` (its entry for `path`).
fn sync_parent(path: &Path) -> io::Result<()> {
    match path.parent() {
        Some(dir) => std::fs::File::open(dir)?.sync_all(),
        None => Ok(()),
    }
}

fn tmp_path(path: &Path) -> PathBuf {
    let mut name = path.file_name().unwrap_or_default().to_os_string();
    name.push(".tmp");
    path.with_file_name(name)
}

/// Marks `id` ended at `at`.
pub fn mark_ended(root: &Path, id: &str, at: SystemTime) -> io::Result<()> {
    let secs = at.duration_since(UNIX_EPOCH).unwrap_or_default().as_secs();
    create_dirs(root, &root.join(id))?;
    write_atomic(&root.join(id).join(ENDED), secs.to_string().as_bytes())
}

/// Deletes everything of `id`'s recording and leaves the `deleted` mark, so
/// its URLs say it is gone. Blocking.
pub fn delete(root: &Path, id: &str) -> io::Result<()> {
    let dir = root.join(id);
    for e in std::fs::read_dir(&dir)?.flatten() {
        if e.file_name() == DELETED {
            continue;
        }
        if e.file_type()?.is_dir() {
            std::fs::remove_dir_all(e.path())?;
        } else {
            std::fs::remove_file(e.path())?;
        }
    }
    write_atomic(&dir.join(DELETED), b"")
}

/// Removes `id`'s directory for good (retention). Blocking.
pub fn remove(root: &Path, id: &str) -> io::Result<()> {
    std::fs::remove_dir_all(root.join(id))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::recording::replay::Entry;

    #[test]
    fn a_recording_reads_back_and_deletion_leaves_only_the_mark() {
        let root = tempfile::tempdir().unwrap();
        assert_eq!(read(root.path(), "b1").unwrap(), None);
        let dir = root.path().join("b1/g1/720p");
        create_dirs(root.path(), &dir).unwrap();
        create_dirs(root.path(), &dir).unwrap();
        assert!(dir.is_dir());
        write_atomic(&dir.join("s1.m4s"), &[0; 100]).unwrap();
        let e = Entry {
            msn: 1,
            duration_us: 2_000_000,
            pdt_ms: 0,
            discontinuity: false,
            init: 0,
            bytes: 100,
        };
        append_line(&dir.join(INDEX), &serde_json::to_string(&e).unwrap()).unwrap();
        let rec = read(root.path(), "b1").unwrap().expect("a recording");
        assert_eq!(rec.duration(), Duration::from_secs(2));
        assert_eq!(rec.ended, None);
        assert!(rec.bytes >= 100);
        assert!(!dir.join("s1.m4s.tmp").exists());
        let at = UNIX_EPOCH + Duration::from_secs(1_000);
        mark_ended(root.path(), "b1", at).unwrap();
        assert_eq!(read(root.path(), "b1").unwrap().unwrap().ended, Some(at));
        assert_eq!(list(root.path()), ["b1"]);
        delete(root.path(), "b1").unwrap();
        let gone = read(root.path(), "b1").unwrap().unwrap();
        assert!(gone.deleted && gone.renditions.is_empty() && gone.ended.is_none());
        remove(root.path(), "b1").unwrap();
        assert!(list(root.path()).is_empty());
    }
}
