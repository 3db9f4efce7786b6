//! Rows as records and chat messages (pure).

use tokio_postgres::Row;

use crate::store::StoreError;
use crate::store::record::{Author, ChatMessage, Record, Status};

/// The columns of a broadcast, as [`record`] reads them.
pub const COLUMNS: &str = "id, title, description, status, created_at, started_at, ended_at, \
    modified_at, peak_viewers, owner_hash, key_version, unlisted, blocked_terms, recorded";

/// A status as stored.
pub fn status_name(s: Status) -> &'static str {
    match s {
        Status::Ready => "ready",
        Status::Live => "live",
        Status::Ended => "ended",
    }
}

/// A broadcast row.
pub fn record(row: &Row) -> Result<Record, StoreError> {
    let status = match row.try_get::<_, &str>("status")? {
        "ready" => Status::Ready,
        "live" => Status::Live,
        "ended" => Status::Ended,
        other => return Err(StoreError::Database(format!("unknown status {other:?}"))),
    };
    Ok(Record {
        id: row.try_get("id")?,
        title: row.try_get("title")?,
        description: row.try_get("description")?,
        status,
        created_at: row.try_get("created_at")?,
        started_at: row.try_get("started_at")?,
        ended_at: row.try_get("ended_at")?,
        modified_at: row.try_get("modified_at")?,
        peak_viewers: row.try_get::<_, i64>("peak_viewers")? as u64,
        owner_hash: row.try_get("owner_hash")?,
        key_version: row.try_get::<_, i32>("key_version")? as u32,
        unlisted: row.try_get("unlisted")?,
        blocked_terms: serde_json::from_str(row.try_get("blocked_terms")?)?,
        recorded: row.try_get("recorded")?,
    })
}

/// A chat message row.
pub fn chat_message(row: &Row) -> Result<ChatMessage, StoreError> {
    Ok(ChatMessage {
        kind: "message".into(),
        id: row.try_get::<_, i64>("id")? as u64,
        user: row.try_get("user_name")?,
        text: row.try_get("text")?,
        at: row.try_get("at")?,
        streamer: row.try_get("streamer")?,
        // Only where the query selects them (a message looked up for moderation).
        author: match (
            row.try_get::<_, Option<String>>("session_id"),
            row.try_get::<_, Option<String>>("client_addr"),
        ) {
            (Ok(Some(session)), Ok(Some(addr))) => Some(Author { session, addr }),
            _ => None,
        },
    })
}
