//! Names in URLs and on disk: the one rule for broadcast, rendition,
//! generation and session names, and the URIs of a rendition's media.
//!
//! Media URIs, relative to the media playlist:
//! `{rendition}/{generation}/p{seq}.m4s` (parts), `s{msn}.m4s` (segments),
//! `init{id}.mp4` (init segments).

/// Longest accepted name.
pub const MAX_NAME_LEN: usize = 64;

/// A broadcast, rendition, generation or session name: 1 to 64 characters of
/// `[A-Za-z0-9_-]`, so it is also safe as one path component.
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= MAX_NAME_LEN
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// URI naming for one rendition, relative to its media playlist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uris {
    /// Rendition name (the directory).
    pub rendition: String,
    /// Changes every time the window is created, so that URIs are never
    /// reused with other bytes after a restart (CDNs cache them forever).
    pub generation: String,
}

impl Uris {
    /// URI of part `seq`.
    pub fn part(&self, seq: u64) -> String {
        format!("{}/{}/{}", self.rendition, self.generation, part_file(seq))
    }
    /// URI of segment `msn`.
    pub fn segment(&self, msn: u64) -> String {
        format!(
            "{}/{}/{}",
            self.rendition,
            self.generation,
            segment_file(msn)
        )
    }
    /// URI of init segment `id`.
    pub fn init(&self, id: u32) -> String {
        format!("{}/{}/{}", self.rendition, self.generation, init_file(id))
    }
}

/// File name of part `seq`.
pub fn part_file(seq: u64) -> String {
    format!("p{seq}.m4s")
}

/// File name of segment `msn` (also on disk).
pub fn segment_file(msn: u64) -> String {
    format!("s{msn}.m4s")
}

/// File name of init segment `id` (also on disk).
pub fn init_file(id: u32) -> String {
    format!("init{id}.mp4")
}

/// A media file a URI names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaFile {
    /// A part, by sequence number.
    Part(u64),
    /// A segment, by MSN.
    Segment(u64),
    /// An init segment, by id.
    Init(u32),
}

impl MediaFile {
    /// Reads a file name written by [`part_file`], [`segment_file`] or
    /// [`init_file`]; anything else (signs, dots, overflow) is `None`.
    pub fn parse(file: &str) -> Option<MediaFile> {
        let num = |s: &str| {
            s.bytes()
                .all(|b| b.is_ascii_digit())
                .then(|| s.parse().ok())
                .flatten()
        };
        if let Some(n) = file.strip_prefix('p').and_then(|f| f.strip_suffix(".m4s")) {
            return num(n).map(MediaFile::Part);
        }
        if let Some(n) = file.strip_prefix('s').and_then(|f| f.strip_suffix(".m4s")) {
            return num(n).map(MediaFile::Segment);
        }
        if let Some(n) = file
            .strip_prefix("init")
            .and_then(|f| f.strip_suffix(".mp4"))
        {
            return num(n)
                .and_then(|n: u64| u32::try_from(n).ok())
                .map(MediaFile::Init);
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_well_formed_media_names_parse() {
        assert_eq!(MediaFile::parse("p12.m4s"), Some(MediaFile::Part(12)));
        assert_eq!(MediaFile::parse("s3.m4s"), Some(MediaFile::Segment(3)));
        assert_eq!(MediaFile::parse("init0.mp4"), Some(MediaFile::Init(0)));
        for bad in [
            "p.m4s",
            "p-1.m4s",
            "p+1.m4s",
            "../p1.m4s",
            "p1.m4s.bak",
            "init99999999999.mp4",
            "x1.m4s",
        ] {
            assert!(MediaFile::parse(bad).is_none(), "{bad}");
        }
    }

    #[test]
    fn what_is_written_parses_back() {
        assert_eq!(MediaFile::parse(&part_file(7)), Some(MediaFile::Part(7)));
        assert_eq!(
            MediaFile::parse(&segment_file(9)),
            Some(MediaFile::Segment(9))
        );
        assert_eq!(MediaFile::parse(&init_file(2)), Some(MediaFile::Init(2)));
    }

    #[test]
    fn names_with_dots_slashes_or_encodings_are_refused() {
        for bad in [
            "",
            "..",
            ".",
            "a.b",
            "a%2e",
            "a/b",
            "a\\\\b",
            &"x".repeat(65),
        ] {
            assert!(!valid_name(bad), "{bad}");
        }
        assert!(valid_name("720p") && valid_name("b_1-x"));
    }
}
