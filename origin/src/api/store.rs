//! Broadcasts and chat history in sled. Every acknowledged write is flushed
//! before it is acknowledged.
//!
//! Trees: `broadcasts` (id -> JSON record), `keys` (SHA-256 of a stream key ->
//! id), `chat` (id `/` message id -> JSON message), `meta` (the server secret).
//!
//! Stream keys are never stored: a key is derived from the owner token
//! (HMAC-SHA256 with a per-installation secret, and a version bumped by
//! rotation), and only its hash is kept, to find the broadcast on publish.
//! So the key can be shown again to whoever presents the owner token, and to
//! nobody else, and a stolen database yields no working key.

use std::path::Path;
use std::time::SystemTime;

use hmac::{Hmac, KeyInit, Mac};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use tokio::sync::Mutex;

use super::model::{Record, Status, hex};

/// Chat messages kept per broadcast; older ones are pruned.
pub const MAX_CHAT_HISTORY: usize = 1000;

/// Why the store failed.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// sled failed (disk full, I/O error, corruption).
    #[error("database: {0}")]
    Sled(#[from] sled::Error),
    /// A stored value did not decode.
    #[error("corrupt record: {0}")]
    Json(#[from] serde_json::Error),
    /// The system has no randomness to offer.
    #[error("no randomness: {0}")]
    Random(String),
}

/// A chat message as stored and sent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// Always `message`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Increasing id.
    pub id: u64,
    /// Nickname.
    pub user: String,
    /// Text, as typed.
    pub text: String,
    /// When, RFC 3339.
    pub at: String,
    /// Sent by the broadcast's owner.
    pub streamer: bool,
}

/// The broadcast and chat store.
pub struct Store {
    db: sled::Db,
    broadcasts: sled::Tree,
    keys: sled::Tree,
    chat: sled::Tree,
    secret: Vec<u8>,
    writes: Mutex<()>,
}

/// Random bytes, hex-encoded.
pub fn random_hex(bytes: usize) -> Result<String, StoreError> {
    let mut b = vec![0u8; bytes];
    getrandom::fill(&mut b).map_err(|e| StoreError::Random(e.to_string()))?;
    Ok(hex(&b))
}

/// SHA-256, hex.
pub fn sha256_hex(s: &str) -> String {
    hex(&Sha256::digest(s.as_bytes()))
}

/// RFC 3339 with microseconds: fixed width, so string order is time order,
/// and fine enough that broadcasts created in the same millisecond still sort
/// newest first.
pub fn now_rfc3339() -> String {
    humantime::format_rfc3339_micros(SystemTime::now()).to_string()
}

impl Store {
    /// Opens (or creates) the store in `dir`.
    pub fn open(dir: &Path) -> Result<Store, StoreError> {
        let db = sled::open(dir.join("db"))?;
        let meta = db.open_tree("meta")?;
        let secret = match meta.get("secret")? {
            Some(s) => s.to_vec(),
            None => {
                let mut s = vec![0u8; 32];
                getrandom::fill(&mut s).map_err(|e| StoreError::Random(e.to_string()))?;
                meta.insert("secret", s.clone())?;
                db.flush()?;
                s
            }
        };
        Ok(Store {
            broadcasts: db.open_tree("broadcasts")?,
            keys: db.open_tree("keys")?,
            chat: db.open_tree("chat")?,
            db,
            secret,
            writes: Mutex::new(()),
        })
    }

    /// The stream key of `r` for the holder of `owner_token`.
    pub fn stream_key(&self, r: &Record, owner_token: &str) -> String {
        let mut mac =
            <Hmac<Sha256> as KeyInit>::new_from_slice(&self.secret).expect("any key length");
        mac.update(format!("{owner_token}:{}", r.key_version).as_bytes());
        format!("live_{}", &hex(&mac.finalize().into_bytes())[..32])
    }

    /// Whether `token` is the owner token of `r` (compared in constant time).
    pub fn is_owner(&self, r: &Record, token: &str) -> bool {
        let a = sha256_hex(token);
        a.len() == r.owner_hash.len()
            && a.bytes()
                .zip(r.owner_hash.bytes())
                .fold(0u8, |acc, (x, y)| acc | (x ^ y))
                == 0
    }

    /// Creates a broadcast; returns it with its owner token and stream key.
    pub async fn create(
        &self,
        title: String,
        description: String,
    ) -> Result<(Record, String, String), StoreError> {
        let _w = self.writes.lock().await;
        let id = loop {
            let id = random_hex(6)?;
            if !self.broadcasts.contains_key(&id)? {
                break id;
            }
        };
        let owner_token = random_hex(32)?;
        let now = now_rfc3339();
        let record = Record {
            id: id.clone(),
            title,
            description,
            status: Status::Ready,
            created_at: now.clone(),
            started_at: None,
            ended_at: None,
            modified_at: now,
            peak_viewers: 0,
            owner_hash: sha256_hex(&owner_token),
            key_version: 0,
        };
        let key = self.stream_key(&record, &owner_token);
        self.keys.insert(sha256_hex(&key), id.as_bytes())?;
        self.broadcasts.insert(&id, serde_json::to_vec(&record)?)?;
        self.db.flush_async().await?;
        Ok((record, owner_token, key))
    }

    /// One broadcast.
    pub fn get(&self, id: &str) -> Result<Option<Record>, StoreError> {
        Ok(match self.broadcasts.get(id)? {
            Some(v) => Some(serde_json::from_slice(&v)?),
            None => None,
        })
    }

    /// Every broadcast.
    pub fn all(&self) -> Result<Vec<Record>, StoreError> {
        self.broadcasts
            .iter()
            .values()
            .map(|v| Ok(serde_json::from_slice(&v?)?))
            .collect()
    }

    /// The broadcast a stream key publishes to.
    pub fn by_key(&self, key: &str) -> Result<Option<Record>, StoreError> {
        match self.keys.get(sha256_hex(key))? {
            Some(id) => self.get(&String::from_utf8_lossy(&id)),
            None => Ok(None),
        }
    }

    /// Read-modify-write of one record; `f` may refuse with an error message.
    /// Returns `None` for an unknown id. Flushed before returning.
    pub async fn update<E>(
        &self,
        id: &str,
        f: impl FnOnce(&mut Record) -> Result<bool, E>,
    ) -> Result<Option<Result<Record, E>>, StoreError> {
        let _w = self.writes.lock().await;
        let Some(mut r) = self.get(id)? else {
            return Ok(None);
        };
        match f(&mut r) {
            Ok(changed) => {
                if changed {
                    self.broadcasts.insert(id, serde_json::to_vec(&r)?)?;
                    self.db.flush_async().await?;
                }
                Ok(Some(Ok(r)))
            }
            Err(e) => Ok(Some(Err(e))),
        }
    }

    /// Replaces the stream key; the old one stops working at once.
    pub async fn rotate_key(&self, r: &Record, owner_token: &str) -> Result<String, StoreError> {
        let _w = self.writes.lock().await;
        let mut r = self.get(&r.id)?.unwrap_or_else(|| r.clone());
        let old = self.stream_key(&r, owner_token);
        r.key_version += 1;
        let new = self.stream_key(&r, owner_token);
        self.keys.remove(sha256_hex(&old))?;
        self.keys.insert(sha256_hex(&new), r.id.as_bytes())?;
        self.broadcasts.insert(&r.id, serde_json::to_vec(&r)?)?;
        self.db.flush_async().await?;
        Ok(new)
    }

    /// Stores a chat message (assigning its id) and flushes.
    pub async fn add_chat(
        &self,
        broadcast: &str,
        mut m: ChatMessage,
    ) -> Result<ChatMessage, StoreError> {
        m.id = self.db.generate_id()?;
        let mut key = broadcast.as_bytes().to_vec();
        key.push(b'/');
        key.extend_from_slice(&m.id.to_be_bytes());
        self.chat.insert(key, serde_json::to_vec(&m)?)?;
        if m.id.is_multiple_of(100) {
            self.prune_chat(broadcast)?;
        }
        self.db.flush_async().await?;
        Ok(m)
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

    /// The last `n` chat messages, oldest first.
    pub fn chat_history(&self, broadcast: &str, n: usize) -> Result<Vec<ChatMessage>, StoreError> {
        let prefix = format!("{broadcast}/");
        let mut v: Vec<ChatMessage> = self
            .chat
            .scan_prefix(&prefix)
            .values()
            .rev()
            .take(n)
            .map(|v| Ok(serde_json::from_slice(&v?)?))
            .collect::<Result<_, StoreError>>()?;
        v.reverse();
        Ok(v)
    }

    /// Flushes everything (shutdown).
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.db.flush_async().await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn keys_are_derived_hashed_and_rotatable() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(dir.path()).unwrap();
        let (r, owner, key) = store.create("t".into(), String::new()).await.unwrap();
        assert!(key.starts_with("live_") && key.len() == 37);
        assert_eq!(store.stream_key(&r, &owner), key);
        assert_eq!(store.by_key(&key).unwrap().unwrap().id, r.id);
        assert!(store.is_owner(&r, &owner));
        assert!(!store.is_owner(&r, "nope"));
        let new = store.rotate_key(&r, &owner).await.unwrap();
        assert_ne!(new, key);
        assert!(
            store.by_key(&key).unwrap().is_none(),
            "the old key stops working"
        );
        assert_eq!(store.by_key(&new).unwrap().unwrap().id, r.id);
        drop(store);
        // Nothing on disk contains the key itself.
        let mut found = false;
        for entry in walk(dir.path()) {
            let bytes = std::fs::read(entry).unwrap();
            found |= bytes.windows(new.len()).any(|w| w == new.as_bytes());
        }
        assert!(!found, "the stream key is not stored");
    }

    fn walk(p: &Path) -> Vec<std::path::PathBuf> {
        let mut out = vec![];
        for e in std::fs::read_dir(p).unwrap() {
            let path = e.unwrap().path();
            if path.is_dir() {
                out.extend(walk(&path));
            } else {
                out.push(path);
            }
        }
        out
    }

    #[tokio::test]
    async fn chat_history_is_kept_in_order_and_survives_reopening() {
        let dir = tempfile::tempdir().unwrap();
        {
            let store = Store::open(dir.path()).unwrap();
            for i in 0..5 {
                store
                    .add_chat(
                        "b1",
                        ChatMessage {
                            kind: "message".into(),
                            id: 0,
                            user: "u".into(),
                            text: format!("m{i}"),
                            at: now_rfc3339(),
                            streamer: false,
                        },
                    )
                    .await
                    .unwrap();
            }
        }
        let store = Store::open(dir.path()).unwrap();
        let texts: Vec<String> = store
            .chat_history("b1", 3)
            .unwrap()
            .into_iter()
            .map(|m| m.text)
            .collect();
        assert_eq!(texts, ["m2", "m3", "m4"]);
        assert!(store.chat_history("b2", 3).unwrap().is_empty());
    }
}
