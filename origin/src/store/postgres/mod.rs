//! The shared store: PostgreSQL, for several origins as one service
//! (`--database-url`). Schema in `origin/migrations/`, embedded and applied
//! at start under an advisory lock (two origins starting at once do not
//! race); migrations only ever add, so an old and a new binary can share the
//! database during a rolling deploy.
//!
//! Every operation is one statement or one transaction, committed before it
//! returns. The installation secret is created once with an insert that
//! does nothing if another origin was first, so every origin derives the
//! same stream keys.
//!
//! - [`shared`]: window ownership and viewer counts across origins.
//! - [`feed`]: the chat feed (`LISTEN`/`NOTIFY`).
//! - `rows`: rows as records and chat messages.
//! - `chat`: chat messages: rate-checked, stored and announced in one statement.

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;

mod chat;
pub mod feed;
pub(in crate::store) mod rows;
mod shared;

use self::rows::{COLUMNS, record, status_name};

use super::keys::{self, SECRET_BYTES, random_bytes, random_hex};
use super::record::{ChatMessage, NewBroadcast, Record, Status, now_rfc3339, sha256_hex};
use super::{Created, Edit, RoomRate, Store, StoreError};

mod embedded {
    refinery::embed_migrations!("migrations");
}

/// Connections kept to the database.
pub const POOL_SIZE: usize = 16;
/// Idle time before TCP keep-alive probes start on database connections.
const KEEPALIVE_IDLE: std::time::Duration = std::time::Duration::from_secs(20);
/// A database that does not answer a connection (or a free pooled one)
/// within this is away: the caller gets `StoreError::Database` (a 503)
/// instead of waiting for TCP to give up.
const CONNECT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(3);
/// How long opening the store waits for a database that is not up yet.
pub const OPEN_WAIT: std::time::Duration = std::time::Duration::from_secs(30);
/// Any constant; the migration lock's key.
const MIGRATION_LOCK: i64 = 0x6f72_6967_696e;

impl From<tokio_postgres::Error> for StoreError {
    fn from(e: tokio_postgres::Error) -> Self {
        StoreError::Database(e.to_string())
    }
}

impl From<deadpool_postgres::PoolError> for StoreError {
    fn from(e: deadpool_postgres::PoolError) -> Self {
        StoreError::Database(e.to_string())
    }
}

/// Broadcasts and chat history in PostgreSQL.
pub struct PgStore {
    pub(in crate::store) pool: Pool,
    secret: Vec<u8>,
    /// For the chat feed's own connection.
    config: tokio_postgres::Config,
}

impl PgStore {
    /// Connects to `url`, applies the migrations and reads (or creates) the
    /// installation secret.
    pub async fn open(url: &str) -> Result<PgStore, StoreError> {
        let mut config: tokio_postgres::Config = url
            .parse()
            .map_err(|e: tokio_postgres::Error| StoreError::Database(e.to_string()))?;
        // A database that vanished without closing its connections (a
        // network partition) is noticed within a minute.
        config
            .keepalives(true)
            .keepalives_idle(KEEPALIVE_IDLE)
            .connect_timeout(CONNECT_TIMEOUT);
        let manager = Manager::from_config(
            config.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(POOL_SIZE)
            .runtime(deadpool_postgres::Runtime::Tokio1)
            .wait_timeout(Some(CONNECT_TIMEOUT))
            .create_timeout(Some(CONNECT_TIMEOUT))
            .build()
            .map_err(|e| StoreError::Database(e.to_string()))?;
        // A database that is still starting (it refuses connections, or
        // accepts them only to say so) is waited for, up to OPEN_WAIT.
        let opening = std::time::Instant::now();
        let mut client = loop {
            match pool.get().await {
                Ok(c) => break c,
                Err(e) if opening.elapsed() < OPEN_WAIT => {
                    tracing::info!(err = %e, "waiting for the database");
                    tokio::time::sleep(std::time::Duration::from_millis(250)).await;
                }
                Err(e) => return Err(e.into()),
            }
        };
        client
            .execute("SELECT pg_advisory_lock($1)", &[&MIGRATION_LOCK])
            .await?;
        let migrated = embedded::migrations::runner()
            .run_async(&mut **client)
            .await
            .map_err(|e| StoreError::Database(format!("migrations: {e}")));
        client
            .execute("SELECT pg_advisory_unlock($1)", &[&MIGRATION_LOCK])
            .await?;
        migrated?;
        client
            .execute(
                "INSERT INTO meta (key, value) VALUES ('secret', $1) ON CONFLICT DO NOTHING",
                &[&random_bytes(SECRET_BYTES)?],
            )
            .await?;
        let secret: Vec<u8> = client
            .query_one("SELECT value FROM meta WHERE key = 'secret'", &[])
            .await?
            .try_get("value")?;
        drop(client);
        Ok(PgStore {
            pool,
            secret,
            config,
        })
    }

    async fn one(&self, sql: &str, id: &str) -> Result<Record, StoreError> {
        let client = self.pool.get().await?;
        match client
            .query_opt(&client.prepare_cached(sql).await?, &[&id])
            .await?
        {
            Some(row) => record(&row),
            None => Err(StoreError::NotFound),
        }
    }
}

#[async_trait::async_trait]
impl Store for PgStore {
    async fn create(&self, new: NewBroadcast) -> Result<Created, StoreError> {
        let mut client = self.pool.get().await?;
        let owner_token = random_hex(32)?;
        loop {
            let record = Record::new_ready(random_hex(6)?, new.clone(), &owner_token);
            let stream_key = self.stream_key(&record, &owner_token);
            let tx = client.transaction().await?;
            let inserted = tx
                .execute(
                    "INSERT INTO broadcasts (id, title, description, status, created_at, \
                     modified_at, owner_hash, unlisted, recorded) \
                     VALUES ($1, $2, $3, 'ready', $4, $4, $5, $6, $7) \
                     ON CONFLICT (id) DO NOTHING",
                    &[
                        &record.id,
                        &record.title,
                        &record.description,
                        &record.created_at,
                        &record.owner_hash,
                        &record.unlisted,
                        &record.recorded,
                    ],
                )
                .await?;
            if inserted == 0 {
                // The 48-bit id was taken: draw again.
                continue;
            }
            tx.execute(
                "INSERT INTO stream_keys (key_hash, broadcast_id) VALUES ($1, $2)",
                &[&sha256_hex(&stream_key), &record.id],
            )
            .await?;
            tx.commit().await?;
            return Ok(Created {
                record,
                owner_token,
                stream_key,
            });
        }
    }

    async fn get(&self, id: &str) -> Result<Record, StoreError> {
        self.one(
            &format!("SELECT {COLUMNS} FROM broadcasts WHERE id = $1"),
            id,
        )
        .await
    }

    async fn all(&self) -> Result<Vec<Record>, StoreError> {
        let client = self.pool.get().await?;
        client
            .query(&format!("SELECT {COLUMNS} FROM broadcasts"), &[])
            .await?
            .iter()
            .map(record)
            .collect()
    }

    async fn by_key(&self, stream_key: &str) -> Result<Option<Record>, StoreError> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                &format!(
                    "SELECT {COLUMNS} FROM broadcasts WHERE id = \
                     (SELECT broadcast_id FROM stream_keys WHERE key_hash = $1)"
                ),
                &[&sha256_hex(stream_key)],
            )
            .await?;
        row.as_ref().map(record).transpose()
    }

    async fn edit(&self, id: &str, edit: Edit) -> Result<Record, StoreError> {
        let terms = edit
            .blocked_terms
            .as_ref()
            .map(serde_json::to_string)
            .transpose()?;
        // modified_at moves only when a value really changes.
        self.one_with(
            &format!(
                "UPDATE broadcasts SET title = COALESCE($2, title), \
                 description = COALESCE($3, description), \
                 unlisted = COALESCE($5, unlisted), \
                 blocked_terms = COALESCE($6, blocked_terms), \
                 recorded = COALESCE($7, recorded), \
                 modified_at = CASE WHEN ($2 IS NOT NULL AND $2 <> title) \
                   OR ($3 IS NOT NULL AND $3 <> description) \
                   OR ($5 IS NOT NULL AND $5 <> unlisted) \
                   OR ($7 IS NOT NULL AND $7 <> recorded) \
                   OR ($6 IS NOT NULL AND $6 <> blocked_terms) THEN $4 ELSE modified_at END \
                 WHERE id = $1 RETURNING {COLUMNS}"
            ),
            &[
                &id,
                &edit.title,
                &edit.description,
                &now_rfc3339(),
                &edit.unlisted,
                &terms,
                &edit.recorded,
            ],
        )
        .await
    }

    async fn set_status(&self, id: &str, status: Status) -> Result<Record, StoreError> {
        match self.one_with(
            &format!(
                "UPDATE broadcasts SET \
                 started_at = CASE WHEN $2 = 'live' THEN COALESCE(started_at, $3) ELSE started_at END, \
                 ended_at = CASE WHEN $2 = 'ended' THEN $3 ELSE ended_at END, \
                 modified_at = CASE WHEN status <> $2 THEN $3 ELSE modified_at END, \
                 status = $2 \
                 WHERE id = $1 AND status <> $2 RETURNING {COLUMNS}"
            ),
            &[&id, &status_name(status), &now_rfc3339()],
        )
        .await
        {
            // No row: unknown, or already in that status (nothing changes).
            Err(StoreError::NotFound) => self.get(id).await,
            r => r,
        }
    }

    async fn note_viewers(&self, id: &str, viewers: u64) -> Result<(), StoreError> {
        let client = self.pool.get().await?;
        let n = client
            .execute(
                "UPDATE broadcasts SET peak_viewers = GREATEST(peak_viewers, $2) WHERE id = $1",
                &[&id, &(viewers as i64)],
            )
            .await?;
        if n == 0 {
            return Err(StoreError::NotFound);
        }
        Ok(())
    }

    async fn rotate_key(&self, id: &str, owner_token: &str) -> Result<String, StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let row = tx
            .query_opt(
                &format!("SELECT {COLUMNS} FROM broadcasts WHERE id = $1 FOR UPDATE"),
                &[&id],
            )
            .await?
            .ok_or(StoreError::NotFound)?;
        let mut r = record(&row)?;
        let old = self.stream_key(&r, owner_token);
        r.key_version += 1;
        let new = self.stream_key(&r, owner_token);
        tx.execute(
            "DELETE FROM stream_keys WHERE key_hash = $1",
            &[&sha256_hex(&old)],
        )
        .await?;
        tx.execute(
            "INSERT INTO stream_keys (key_hash, broadcast_id) VALUES ($1, $2)",
            &[&sha256_hex(&new), &r.id],
        )
        .await?;
        tx.execute(
            "UPDATE broadcasts SET key_version = $2 WHERE id = $1",
            &[&r.id, &(r.key_version as i32)],
        )
        .await?;
        tx.commit().await?;
        Ok(new)
    }

    async fn delete(&self, id: &str) -> Result<(), StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        for table in [
            "stream_keys",
            "chat_messages",
            "window_counters",
            "moderation_actions",
        ] {
            tx.execute(
                &format!("DELETE FROM {table} WHERE broadcast_id = $1"),
                &[&id],
            )
            .await?;
        }
        if tx
            .execute("DELETE FROM broadcasts WHERE id = $1", &[&id])
            .await?
            == 0
        {
            return Err(StoreError::NotFound);
        }
        tx.commit().await?;
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
        m: ChatMessage,
        rate: Option<RoomRate>,
    ) -> Result<ChatMessage, StoreError> {
        self.insert_chat(broadcast, m, rate).await
    }

    async fn chat_history(
        &self,
        broadcast: &str,
        n: usize,
    ) -> Result<Vec<ChatMessage>, StoreError> {
        self.recent_chat(broadcast, n).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        self.pool.get().await?.execute("SELECT 1", &[]).await?;
        Ok(())
    }

    async fn flush(&self) -> Result<(), StoreError> {
        // Every change was committed before it returned.
        Ok(())
    }
}

impl PgStore {
    /// One row from a statement with parameters, or `NotFound`.
    async fn one_with(
        &self,
        sql: &str,
        params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
    ) -> Result<Record, StoreError> {
        let client = self.pool.get().await?;
        match client
            .query_opt(&client.prepare_cached(sql).await?, params)
            .await?
        {
            Some(row) => record(&row),
            None => Err(StoreError::NotFound),
        }
    }
}
