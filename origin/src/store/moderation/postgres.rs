//! [`Moderation`] in PostgreSQL: `moderation_actions` keeps the actions
//! (migration V5); each is stored, applied (a deleted message's row goes)
//! and announced on the chat feed in one transaction.

use super::{Action, MAX_ACTIONS, Moderation, What};
use crate::store::StoreError;
use crate::store::postgres::PgStore;
use crate::store::postgres::feed::CHANNEL;
use crate::store::postgres::rows::chat_message;
use crate::store::record::{ChatMessage, now_rfc3339};

#[async_trait::async_trait]
impl Moderation for PgStore {
    async fn chat_message(
        &self,
        broadcast: &str,
        id: u64,
    ) -> Result<Option<ChatMessage>, StoreError> {
        let row = self
            .pool
            .get()
            .await?
            .query_opt(
                "SELECT id, user_name, text, at, streamer, session_id, client_addr \
                 FROM chat_messages WHERE broadcast_id = $1 AND id = $2",
                &[&broadcast, &(id as i64)],
            )
            .await?;
        row.as_ref().map(chat_message).transpose()
    }

    async fn act(&self, broadcast: &str, mut action: Action) -> Result<Action, StoreError> {
        action.at = now_rfc3339();
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        if let What::Delete { message, .. } = action.what {
            tx.execute(
                "DELETE FROM chat_messages WHERE broadcast_id = $1 AND id = $2",
                &[&broadcast, &(message as i64)],
            )
            .await?;
        }
        // The id is the row's; the body keeps the rest.
        let id: i64 = tx
            .query_one(
                "INSERT INTO moderation_actions (broadcast_id, at, body) VALUES ($1, $2, $3) \
                 RETURNING id",
                &[&broadcast, &action.at, &serde_json::to_string(&action)?],
            )
            .await?
            .try_get("id")?;
        action.id = id as u64;
        let note =
            serde_json::json!({"type": "moderation", "broadcast": broadcast, "action": action});
        tx.execute("SELECT pg_notify($1, $2)", &[&CHANNEL, &note.to_string()])
            .await?;
        tx.commit().await?;
        Ok(action)
    }

    async fn actions(&self, broadcast: &str) -> Result<Vec<Action>, StoreError> {
        let rows = self
            .pool
            .get()
            .await?
            .query(
                "SELECT id, body FROM moderation_actions WHERE broadcast_id = $1 \
                 ORDER BY id DESC LIMIT $2",
                &[&broadcast, &(MAX_ACTIONS as i64)],
            )
            .await?;
        let mut v = rows
            .iter()
            .map(|row| {
                let mut a: Action = serde_json::from_str(row.try_get("body")?)?;
                a.id = row.try_get::<_, i64>("id")? as u64;
                Ok(a)
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        v.reverse();
        Ok(v)
    }
}
