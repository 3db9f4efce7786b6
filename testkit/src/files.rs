//! Files on disk, for tests that check what a server stored.

use std::path::{Path, PathBuf};

/// Every file below `dir`, recursively.
pub fn under(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![];
    for e in std::fs::read_dir(dir).expect("a readable directory") {
        let path = e.expect("a directory entry").path();
        if path.is_dir() {
            out.extend(under(&path));
        } else {
            out.push(path);
        }
    }
    out
}

/// The files below `dir` whose bytes contain `needle` (e.g. a secret that
/// must not be stored).
pub fn containing(dir: &Path, needle: &[u8]) -> Vec<PathBuf> {
    under(dir)
        .into_iter()
        .filter(|f| {
            std::fs::read(f).is_ok_and(|bytes| bytes.windows(needle.len()).any(|w| w == needle))
        })
        .collect()
}
