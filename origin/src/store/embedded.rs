//! The embedded store: sled on local disk, the default (no database to run).
//! Every acknowledged write is flushed before it is acknowledged.
//!
//! Trees: `broadcasts` (id -> JSON record), `keys` (SHA-256 of a stream key ->
//! id), `chat` (id `/` message id -> JSON message), `meta` (the secret stream
//! keys are derived with; see [`super::keys`]; and the admin token's hash),
//! `invites` (see [`super::admission`]), `moderation` (id `/` action id ->
//! JSON action; see [`super::moderation`]).

use std::path::Path;

use tokio::sync::Mutex;

use super::keys::{self, SECRET_BYTES, random_bytes, random_hex};
use super::record::{Author, ChatMessage, NewBroadcast, Record, Status, now_rfc3339, sha256_hex};
use super::{Created, Edit, MAX_CHAT_HISTORY, RoomRate, Store, StoreError};

impl From<sled::Error> for StoreError {
    fn from(e: sled::Error) -> Self {
        StoreError::Database(e.to_string())
    }
}

/// How long opening waits for the database's lock.
pub const LOCK_WAIT: std::time::Duration = std::time::Duration::from_secs(5);

/// Broadcasts and chat history in sled.
pub struct SledStore {
    pub(super) db: sled::Db,
    broadcasts: sled::Tree,
    keys: sled::Tree,
    pub(super) chat: sled::Tree,
    pub(super) invites: sled::Tree,
    pub(super) actions: sled::Tree,
    secret: Vec<u8>,
    /// Serializes read-modify-write changes.
    pub(super) writes: Mutex<()>,
}

/// A chat message as sled keeps it: with its sender (rows written before
/// moderation have none).
#[derive(serde::Serialize, serde::Deserialize)]
pub(super) struct Kept {
    #[serde(flatten)]
    message: ChatMessage,
    #[serde(default)]
    author: Option<Author>,
}

impl From<&ChatMessage> for Kept {
    fn from(m: &ChatMessage) -> Kept {
        Kept {
            message: m.clone(),
            author: m.author.clone(),
        }
    }
}

impl From<Kept> for ChatMessage {
    fn from(k: Kept) -> ChatMessage {
        ChatMessage {
            author: k.author,
            ..k.message
        }
    }
}

/// `{broadcast}/` then `id` big-endian: a broadcast's entries in id order.
pub(super) fn entry_key(broadcast: &str, id: u64) -> Vec<u8> {
    let mut key = broadcast.as_bytes().to_vec();
    key.push(b'/');
    key.extend_from_slice(&id.to_be_bytes());
    key
}

impl SledStore {
    /// Opens (or creates) the store in `dir`. While another holder of the
    /// database (a process still exiting, or a store just dropped whose
    /// flusher thread has not let go yet) keeps its lock, waits up to
    /// [`LOCK_WAIT`].
    pub fn open(dir: &Path) -> Result<SledStore, StoreError> {
        let path = dir.join("db");
        let waited = std::time::Instant::now();
        let db = loop {
            match sled::open(&path) {
                Err(sled::Error::Io(e))
                    if e.kind() == std::io::ErrorKind::WouldBlock
                        && waited.elapsed() < LOCK_WAIT =>
                {
                    std::thread::sleep(std::time::Duration::from_millis(50));
                }
                r => break r?,
            }
        };
        let meta = db.open_tree("meta")?;
        let secret = match meta.get("secret")? {
            Some(s) => s.to_vec(),
            None => {
                let s = random_bytes(SECRET_BYTES)?;
                meta.insert("secret", s.clone())?;
                db.flush()?;
                s
            }
        };
        Ok(SledStore {
            broadcasts: db.open_tree("broadcasts")?,
            keys: db.open_tree("keys")?,
            chat: db.open_tree("chat")?,
            invites: db.open_tree("invites")?,
            actions: db.open_tree("moderation")?,
            db,
            secret,
            writes: Mutex::new(()),
        })
    }

    fn read(&self, id: &str) -> Result<Record, StoreError> {
        let v = self.broadcasts.get(id)?.ok_or(StoreError::NotFound)?;
        Ok(serde_json::from_slice(&v)?)
    }

    /// Read-modify-write of one record under the write lock; `f` says
    /// whether it changed anything. Flushed before returning.
    async fn change(
        &self,
        id: &str,
        f: impl FnOnce(&mut Record) -> bool,
    ) -> Result<Record, StoreError> {
        let _w = self.writes.lock().await;
        let mut r = self.read(id)?;
        if f(&mut r) {
            self.broadcasts.insert(id, serde_json::to_vec(&r)?)?;
            self.db.flush_async().await?;
        }
        Ok(r)
    }

    fn prune_chat(&self, broadcast: &str) -> Result<(), StoreError> {
        let prefix = format!("{broadcast}/");
        let keys: Vec<sled::IVec> = self
            .chat
            .scan_prefix(&prefix)
            .keys()
            .collect::<Result<_, _>>()?;
        for k in keys
            .iter()
            .take(keys.len().saturating_sub(MAX_CHAT_HISTORY))
        {
            self.chat.remove(k)?;
        }
        Ok(())
    }
}

#[async_trait::async_trait]
impl Store for SledStore {
    async fn create(&self, new: NewBroadcast) -> Result<Created, StoreError> {
        let _w = self.writes.lock().await;
        let id = loop {
            let id = random_hex(6)?;
            if !self.broadcasts.contains_key(&id)? {
                break id;
            }
        };
        let owner_token = random_hex(32)?;
        let record = Record::new_ready(id.clone(), new, &owner_token);
        let stream_key = self.stream_key(&record, &owner_token);
        self.keys.insert(sha256_hex(&stream_key), id.as_bytes())?;
        self.broadcasts.insert(&id, serde_json::to_vec(&record)?)?;
        self.db.flush_async().await?;
        Ok(Created {
            record,
            owner_token,
            stream_key,
        })
    }

    async fn get(&self, id: &str) -> Result<Record, StoreError> {
        self.read(id)
    }

    async fn all(&self) -> Result<Vec<Record>, StoreError> {
        self.broadcasts
            .iter()
            .values()
            .map(|v| Ok(serde_json::from_slice(&v?)?))
            .collect()
    }

    async fn by_key(&self, stream_key: &str) -> Result<Option<Record>, StoreError> {
        match self.keys.get(sha256_hex(stream_key))? {
            Some(id) => match self.read(&String::from_utf8_lossy(&id)) {
                Ok(r) => Ok(Some(r)),
                Err(StoreError::NotFound) => Ok(None),
                Err(e) => Err(e),
            },
            None => Ok(None),
        }
    }

    async fn edit(&self, id: &str, edit: Edit) -> Result<Record, StoreError> {
        self.change(id, |r| {
            let mut changed = false;
            if let Some(t) = edit.title {
                changed |= r.title != t;
                r.title = t;
            }
            if let Some(d) = edit.description {
                changed |= r.description != d;
                r.description = d;
            }
            if let Some(u) = edit.unlisted {
                changed |= r.unlisted != u;
                r.unlisted = u;
            }
            if let Some(t) = edit.blocked_terms {
                changed |= r.blocked_terms != t;
                r.blocked_terms = t;
            }
            if let Some(v) = edit.recorded {
                changed |= r.recorded != v;
                r.recorded = v;
            }
            if changed {
                r.modified_at = now_rfc3339();
            }
            changed
        })
        .await
    }

    async fn set_status(&self, id: &str, status: Status) -> Result<Record, StoreError> {
        self.change(id, |r| {
            if r.status == status {
                return false;
            }
            let now = now_rfc3339();
            match status {
                Status::Live => {
                    r.started_at.get_or_insert(now.clone());
                }
                Status::Ended => r.ended_at = Some(now.clone()),
                Status::Ready => {}
            }
            r.status = status;
            r.modified_at = now;
            true
        })
        .await
    }

    async fn note_viewers(&self, id: &str, viewers: u64) -> Result<(), StoreError> {
        self.change(id, |r| {
            let higher = viewers > r.peak_viewers;
            r.peak_viewers = r.peak_viewers.max(viewers);
            higher
        })
        .await
        .map(|_| ())
    }

    async fn rotate_key(&self, id: &str, owner_token: &str) -> Result<String, StoreError> {
        let _w = self.writes.lock().await;
        let mut r = self.read(id)?;
        let old = self.stream_key(&r, owner_token);
        r.key_version += 1;
        let new = self.stream_key(&r, owner_token);
        self.keys.remove(sha256_hex(&old))?;
        self.keys.insert(sha256_hex(&new), r.id.as_bytes())?;
        self.broadcasts.insert(&r.id, serde_json::to_vec(&r)?)?;
        self.db.flush_async().await?;
        Ok(new)
    }

    async fn delete(&self, id: &str) -> Result<(), StoreError> {
        let _w = self.writes.lock().await;
        self.read(id)?;
        // The key's hash cannot be derived without the owner token: look
        // for the entry naming the broadcast.
        for entry in self.keys.iter() {
            let (hash, owner) = entry?;
            if owner == id.as_bytes() {
                self.keys.remove(hash)?;
            }
        }
        for tree in [&self.chat, &self.actions] {
            for k in tree.scan_prefix(format!("{id}/")).keys() {
                tree.remove(k?)?;
            }
        }
        self.broadcasts.remove(id)?;
        self.db.flush_async().await?;
        Ok(())
    }

    fn stream_key(&self, r: &Record, owner_token: &str) -> String {
        keys::stream_key(&self.secret, r, owner_token)
    }

    fn origin_token(&self, node_id: &str) -> String {
        keys::origin_token(&self.secret, node_id)
    }

    async fn add_chat(
        &self,
        broadcast: &str,
        mut m: ChatMessage,
        rate: Option<RoomRate>,
    ) -> Result<ChatMessage, StoreError> {
        if let Some(rate) = rate {
            let since = rate.window_start();
            let mut recent = 0;
            for v in self
                .chat
                .scan_prefix(format!("{broadcast}/"))
                .values()
                .rev()
                .take(rate.max as usize)
            {
                let earlier: ChatMessage = serde_json::from_slice(&v?)?;
                if earlier.at <= since {
                    break;
                }
                recent += 1;
            }
            if recent >= rate.max {
                return Err(StoreError::RoomBusy);
            }
        }
        m.id = self.db.generate_id()?;
        self.chat.insert(
            entry_key(broadcast, m.id),
            serde_json::to_vec(&Kept::from(&m))?,
        )?;
        if m.id.is_multiple_of(100) {
            self.prune_chat(broadcast)?;
        }
        self.db.flush_async().await?;
        Ok(m)
    }

    async fn chat_history(
        &self,
        broadcast: &str,
        n: usize,
    ) -> Result<Vec<ChatMessage>, StoreError> {
        let prefix = format!("{broadcast}/");
        let mut v: Vec<ChatMessage> = self
            .chat
            .scan_prefix(&prefix)
            .values()
            .rev()
            .take(n)
            .map(|v| Ok(serde_json::from_slice::<Kept>(&v?)?.into()))
            .collect::<Result<_, StoreError>>()?;
        v.reverse();
        Ok(v)
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.broadcasts.get("readyz")?;
        Ok(())
    }

    async fn flush(&self) -> Result<(), StoreError> {
        self.db.flush_async().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::keys;

    #[tokio::test]
    async fn keys_are_derived_hashed_and_rotatable() {
        let dir = tempfile::tempdir().unwrap();
        let store = SledStore::open(dir.path()).unwrap();
        let Created {
            record: r,
            owner_token: owner,
            stream_key: key,
        } = store
            .create(NewBroadcast {
                title: "t".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(key.starts_with("live_") && key.len() == 37);
        assert_eq!(store.stream_key(&r, &owner), key);
        assert_eq!(store.by_key(&key).await.unwrap().unwrap().id, r.id);
        assert!(keys::is_owner(&r, &owner));
        assert!(!keys::is_owner(&r, "nope"));
        let new = store.rotate_key(&r.id, &owner).await.unwrap();
        assert_ne!(new, key);
        assert!(
            store.by_key(&key).await.unwrap().is_none(),
            "the old key stops working"
        );
        assert_eq!(store.by_key(&new).await.unwrap().unwrap().id, r.id);
        drop(store);
        // Nothing on disk contains the key itself.
        assert!(
            testkit::files::containing(dir.path(), new.as_bytes()).is_empty(),
            "the stream key is not stored"
        );
    }

    #[tokio::test]
    async fn chat_history_is_kept_in_order_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = SledStore::open(dir.path()).unwrap();
            for i in 0..5 {
                store
                    .add_chat("b1", ChatMessage::new("u", &format!("m{i}"), false), None)
                    .await
                    .unwrap();
            }
        }
        let store = SledStore::open(dir.path()).unwrap();
        let texts: Vec<String> = store
            .chat_history("b1", 3)
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.text)
            .collect();
        assert_eq!(texts, ["m2", "m3", "m4"]);
        assert!(store.chat_history("b2", 3).await.unwrap().is_empty());
    }
}
