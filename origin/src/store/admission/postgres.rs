//! [`Admission`] in PostgreSQL: `meta` keeps `admin_hash` (inserted once,
//! whichever origin starts first), `invites` the codes (migration V4).

use tokio_postgres::Row;

use super::{Admission, Invite, Refusal};
use crate::store::StoreError;
use crate::store::postgres::PgStore;

const COLUMNS: &str = "id, code_hash, max_uses, used, expires_at, created_at";

fn invite(row: &Row) -> Result<Invite, StoreError> {
    Ok(Invite {
        id: row.try_get("id")?,
        code_hash: row.try_get("code_hash")?,
        max_uses: row.try_get::<_, Option<i64>>("max_uses")?.map(|m| m as u32),
        used: row.try_get::<_, i64>("used")? as u32,
        expires_at: row.try_get("expires_at")?,
        created_at: row.try_get("created_at")?,
    })
}

#[async_trait::async_trait]
impl Admission for PgStore {
    async fn admin_hash(&self, proposed: &str) -> Result<String, StoreError> {
        let client = self.pool.get().await?;
        client
            .execute(
                "INSERT INTO meta (key, value) VALUES ('admin_hash', $1) ON CONFLICT DO NOTHING",
                &[&proposed.as_bytes()],
            )
            .await?;
        let stored: Vec<u8> = client
            .query_one("SELECT value FROM meta WHERE key = 'admin_hash'", &[])
            .await?
            .try_get("value")?;
        Ok(String::from_utf8_lossy(&stored).into_owned())
    }

    async fn add_invite(&self, i: &Invite) -> Result<(), StoreError> {
        self.pool
            .get()
            .await?
            .execute(
                "INSERT INTO invites (id, code_hash, max_uses, used, expires_at, created_at) \
                 VALUES ($1, $2, $3, $4, $5, $6)",
                &[
                    &i.id,
                    &i.code_hash,
                    &i.max_uses.map(i64::from),
                    &i64::from(i.used),
                    &i.expires_at,
                    &i.created_at,
                ],
            )
            .await?;
        Ok(())
    }

    async fn invites(&self) -> Result<Vec<Invite>, StoreError> {
        let client = self.pool.get().await?;
        client
            .query(&format!("SELECT {COLUMNS} FROM invites"), &[])
            .await?
            .iter()
            .map(invite)
            .collect()
    }

    async fn revoke_invite(&self, id: &str) -> Result<bool, StoreError> {
        let client = self.pool.get().await?;
        Ok(client
            .execute("DELETE FROM invites WHERE id = $1", &[&id])
            .await?
            > 0)
    }

    async fn redeem(
        &self,
        code_hash: &str,
        now: &str,
    ) -> Result<Result<Invite, Refusal>, StoreError> {
        let client = self.pool.get().await?;
        // One statement: two origins cannot both spend the last use.
        let spent = client
            .query_opt(
                &format!(
                    "UPDATE invites SET used = used + 1 WHERE code_hash = $1 \
                     AND (max_uses IS NULL OR used < max_uses) \
                     AND (expires_at IS NULL OR expires_at > $2) RETURNING {COLUMNS}"
                ),
                &[&code_hash, &now],
            )
            .await?;
        if let Some(row) = spent {
            return Ok(Ok(invite(&row)?));
        }
        // Not spent: say why.
        let row = client
            .query_opt(
                &format!("SELECT {COLUMNS} FROM invites WHERE code_hash = $1"),
                &[&code_hash],
            )
            .await?;
        Ok(Err(match row {
            None => Refusal::Unknown,
            Some(row) => invite(&row)?.check(now).err().unwrap_or(Refusal::UsedUp),
        }))
    }
}
