//! API types, their validation and their JSON shapes (pure).

use serde::{Deserialize, Serialize};

use crate::store::record::{Record, Status, hex};

/// Longest title, in characters.
pub const MAX_TITLE_CHARS: usize = 140;
/// Longest description, in characters.
pub const MAX_DESCRIPTION_CHARS: usize = 2000;
/// Largest request body accepted by the API.
pub const MAX_BODY_BYTES: usize = 64 << 10;
/// Default page size of list and search.
pub const DEFAULT_PAGE: usize = 20;
/// Largest page size of list and search.
pub const MAX_PAGE: usize = 100;

/// A broadcast as the API shows it.
#[derive(Debug, Clone, Serialize)]
pub struct View {
    /// Id.
    pub id: String,
    /// Title.
    pub title: String,
    /// Description.
    pub description: String,
    /// Status.
    pub status: Status,
    /// Creation time.
    pub created_at: String,
    /// When it went live.
    pub started_at: Option<String>,
    /// When it ended.
    pub ended_at: Option<String>,
    /// Last modification.
    pub modified_at: String,
    /// People watching now.
    pub viewer_count: u64,
    /// Most people watching at once.
    pub peak_viewer_count: u64,
    /// Where to publish (without the key).
    pub rtmp_url: String,
    /// The multivariant playlist.
    pub playback_url: String,
    /// Latest thumbnail, while there is one.
    pub thumbnail_url: String,
    /// Left out of the directory and search; playable with the link.
    pub unlisted: bool,
    /// Recorded for a replay.
    pub recorded: bool,
    /// Its recording, once there is one.
    pub replay: Option<crate::recording::ReplayInfo>,
    /// Only in the create response and owner-authorized reads.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream_key: Option<String>,
    /// Only in the create response.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub owner_token: Option<String>,
    /// Only in owner-authorized reads and edits.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocked_terms: Option<Vec<String>>,
}

/// `POST /api/broadcasts`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Create {
    /// Title (required).
    pub title: String,
    /// Description.
    #[serde(default)]
    pub description: String,
    /// Left out of the directory and search.
    #[serde(default)]
    pub unlisted: bool,
    /// Recorded for a replay (the default).
    #[serde(default = "yes")]
    pub recorded: bool,
    /// An invite code (policy `invite`, without the admin token).
    #[serde(default)]
    pub invite: Option<String>,
}

fn yes() -> bool {
    true
}

/// `PATCH /api/broadcasts/{id}`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Update {
    /// New title.
    pub title: Option<String>,
    /// New description.
    pub description: Option<String>,
    /// Only `ended` may be set.
    pub status: Option<Status>,
    /// Listed in the directory and search, or not.
    pub unlisted: Option<bool>,
    /// Recorded for a replay, from the next publish on.
    pub recorded: Option<bool>,
    /// Terms the chat refuses (replaces the list).
    pub blocked_terms: Option<Vec<String>>,
}

/// `POST /api/admin/invites`.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewInvite {
    /// Broadcasts the code may create: 1 if left out, any number if `null`.
    #[serde(default = "one_use")]
    pub max_uses: Option<u32>,
    /// Seconds until it expires: a week if left out, never if `null`.
    #[serde(default = "a_week")]
    pub expires_in_secs: Option<u64>,
}

impl Default for NewInvite {
    fn default() -> Self {
        NewInvite {
            max_uses: one_use(),
            expires_in_secs: a_week(),
        }
    }
}

fn one_use() -> Option<u32> {
    Some(1)
}

fn a_week() -> Option<u64> {
    Some(crate::access::config::DEFAULT_INVITE_EXPIRY_SECS)
}

/// An invite as the operator API shows it; `code` and `link` only when it
/// is made.
#[derive(Debug, Clone, Serialize)]
pub struct InviteView {
    /// Names it (to revoke it).
    pub id: String,
    /// The code, shown once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<String>,
    /// The studio with the code filled in, shown once.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    /// `null`: no limit.
    pub max_uses: Option<u32>,
    /// Broadcasts it created.
    pub used: u32,
    /// `null`: never.
    pub expires_at: Option<String>,
    /// When it was made.
    pub created_at: String,
}

impl From<&crate::store::admission::Invite> for InviteView {
    fn from(i: &crate::store::admission::Invite) -> Self {
        InviteView {
            id: i.id.clone(),
            code: None,
            link: None,
            max_uses: i.max_uses,
            used: i.used,
            expires_at: i.expires_at.clone(),
            created_at: i.created_at.clone(),
        }
    }
}

/// Checks a title; returns it trimmed.
pub fn title(t: &str) -> Result<String, String> {
    let t = t.trim();
    if t.is_empty() {
        return Err("title must not be empty".into());
    }
    if t.chars().count() > MAX_TITLE_CHARS {
        return Err(format!("title is longer than {MAX_TITLE_CHARS} characters"));
    }
    if t.chars().any(char::is_control) {
        return Err("title must not contain control characters".into());
    }
    Ok(t.to_string())
}

/// Checks a description; returns it trimmed.
pub fn description(d: &str) -> Result<String, String> {
    let d = d.trim();
    if d.chars().count() > MAX_DESCRIPTION_CHARS {
        return Err(format!(
            "description is longer than {MAX_DESCRIPTION_CHARS} characters"
        ));
    }
    if d.chars().any(|c| c.is_control() && c != '\n') {
        return Err("description must not contain control characters".into());
    }
    Ok(d.to_string())
}

/// Whether a record matches a search: every word of `q`, case-insensitively,
/// anywhere in the title or description (Unicode lowercase, so Korean and
/// other scripts match as typed).
pub fn matches(r: &Record, q: &str) -> bool {
    let hay = format!("{}\n{}", r.title, r.description).to_lowercase();
    q.split_whitespace()
        .all(|w| hay.contains(&w.to_lowercase()))
}

/// List order: live first, then newest first, then id (a total order for cursors).
pub fn order_key(r: &Record) -> (u8, std::cmp::Reverse<String>, String) {
    let rank = match r.status {
        Status::Live => 0,
        Status::Ready => 1,
        Status::Ended => 2,
    };
    (rank, std::cmp::Reverse(r.created_at.clone()), r.id.clone())
}

/// The opaque cursor for "after this record".
pub fn cursor_of(r: &Record) -> String {
    let (rank, created, id) = order_key(r);
    hex(format!("{rank}|{}|{id}", created.0).as_bytes())
}

/// Decodes a cursor back to its order key.
pub fn parse_cursor(c: &str) -> Option<(u8, std::cmp::Reverse<String>, String)> {
    let bytes = unhex(c)?;
    let text = String::from_utf8(bytes).ok()?;
    let mut it = text.splitn(3, '|');
    let rank = it.next()?.parse().ok()?;
    let created = it.next()?.to_string();
    let id = it.next()?.to_string();
    Some((rank, std::cmp::Reverse(created), id))
}

fn unhex(s: &str) -> Option<Vec<u8>> {
    if !s.len().is_multiple_of(2) || s.len() > 1024 {
        return None;
    }
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(s.get(i..i + 2)?, 16).ok())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(id: &str, title: &str, status: Status, created: &str) -> Record {
        Record {
            id: id.into(),
            title: title.into(),
            description: "설명 Description".into(),
            status,
            created_at: created.into(),
            started_at: None,
            ended_at: None,
            modified_at: created.into(),
            peak_viewers: 0,
            owner_hash: String::new(),
            key_version: 0,
            unlisted: false,
            blocked_terms: Vec::new(),
            recorded: true,
        }
    }

    #[test]
    fn search_is_case_insensitive_for_any_script() {
        let r = rec(
            "a",
            "오늘의 코딩 Live Stream",
            Status::Live,
            "2026-01-01T00:00:00Z",
        );
        assert!(matches(&r, "live"));
        assert!(matches(&r, "코딩"));
        assert!(matches(&r, "STREAM 오늘의"));
        assert!(matches(&r, "description"));
        assert!(matches(&r, "설명"));
        assert!(!matches(&r, "cooking"));
    }

    #[test]
    fn live_broadcasts_come_first_then_the_newest() {
        let mut v = [
            rec("a", "t", Status::Ended, "2026-01-03T00:00:00Z"),
            rec("b", "t", Status::Live, "2026-01-01T00:00:00Z"),
            rec("c", "t", Status::Ready, "2026-01-02T00:00:00Z"),
            rec("d", "t", Status::Live, "2026-01-02T00:00:00Z"),
        ];
        v.sort_by_key(order_key);
        let ids: Vec<&str> = v.iter().map(|r| r.id.as_str()).collect();
        assert_eq!(ids, ["d", "b", "c", "a"]);
        assert_eq!(parse_cursor(&cursor_of(&v[1])), Some(order_key(&v[1])));
        assert_eq!(parse_cursor("zz"), None);
    }

    #[test]
    fn titles_are_trimmed_and_bounded() {
        assert_eq!(title("  hi  ").unwrap(), "hi");
        assert!(title("   ").is_err());
        assert!(title(&"x".repeat(MAX_TITLE_CHARS + 1)).is_err());
        assert!(title(&"가".repeat(MAX_TITLE_CHARS)).is_ok());
        assert!(title("a\u{0}b").is_err());
        assert!(description(&"y".repeat(MAX_DESCRIPTION_CHARS + 1)).is_err());
    }
}
