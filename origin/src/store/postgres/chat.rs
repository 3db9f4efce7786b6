//! Chat messages in PostgreSQL: each is rate-checked, stored and announced
//! to every origin's feed in one statement; history is the newest rows.

use super::PgStore;
use super::feed;
use super::rows::chat_message;
use crate::store::record::ChatMessage;
use crate::store::{MAX_CHAT_HISTORY, RoomRate, StoreError};

impl PgStore {
    pub(super) async fn insert_chat(
        &self,
        broadcast: &str,
        m: ChatMessage,
        rate: Option<RoomRate>,
    ) -> Result<ChatMessage, StoreError> {
        let client = self.pool.get().await?;
        // Checked, stored and published in one statement: the room's recent
        // messages are counted (at most `max` rows, by the index), and the
        // notification goes out when the insert commits, to every origin's
        // feed (see [`feed`]). Without a rate, the count is of nothing.
        let (max, since) = match rate {
            Some(r) => (i64::from(r.max), r.window_start()),
            None => (0, String::new()),
        };
        let insert = client
            .prepare_cached(
                "WITH recent AS (SELECT count(*) AS n FROM (SELECT at FROM chat_messages \
                 WHERE broadcast_id = $1 ORDER BY id DESC LIMIT $7) r WHERE r.at > $8), \
                 m AS (INSERT INTO chat_messages (broadcast_id, user_name, text, at, streamer, \
                 session_id, client_addr) SELECT $1, $2, $3, $4, $5, $9, $10 FROM recent WHERE $7 = 0 OR recent.n < $7 \
                 RETURNING id, user_name, text, at, streamer) \
                 SELECT m.*, pg_notify($6, json_build_object('broadcast', $1::text, \
                 'type', 'message', 'id', m.id, 'user', m.user_name, 'text', m.text, \
                 'at', m.at, 'streamer', m.streamer)::text)::text AS notified FROM m",
            )
            .await?;
        let row = client
            .query_opt(
                &insert,
                &[
                    &broadcast,
                    &m.user,
                    &m.text,
                    &m.at,
                    &m.streamer,
                    &feed::CHANNEL,
                    &max,
                    &since,
                    &m.author.as_ref().map(|a| a.session.as_str()),
                    &m.author.as_ref().map(|a| a.addr.as_str()),
                ],
            )
            .await?
            .ok_or(StoreError::RoomBusy)?;
        let stored = ChatMessage {
            author: m.author,
            ..chat_message(&row)?
        };
        if stored.id.is_multiple_of(100) {
            client
                .execute(
                    "DELETE FROM chat_messages WHERE broadcast_id = $1 AND id <= \
                     (SELECT id FROM chat_messages WHERE broadcast_id = $1 \
                      ORDER BY id DESC OFFSET $2 LIMIT 1)",
                    &[&broadcast, &(MAX_CHAT_HISTORY as i64)],
                )
                .await?;
        }
        Ok(stored)
    }

    pub(super) async fn recent_chat(
        &self,
        broadcast: &str,
        n: usize,
    ) -> Result<Vec<ChatMessage>, StoreError> {
        let client = self.pool.get().await?;
        let mut v: Vec<ChatMessage> = client
            .query(
                "SELECT id, user_name, text, at, streamer FROM chat_messages \
                 WHERE broadcast_id = $1 ORDER BY id DESC LIMIT $2",
                &[&broadcast, &(n as i64)],
            )
            .await?
            .iter()
            .map(chat_message)
            .collect::<Result<_, _>>()?;
        v.reverse();
        Ok(v)
    }
}
