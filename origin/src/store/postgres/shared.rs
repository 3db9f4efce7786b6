//! What several origins share beyond the records (see [`Shared`]): who
//! holds each live window, the viewers on each origin, and the chat feed.
//!
//! An origin's beat is six prepared statements pipelined on one connection
//! (one round trip), once per heartbeat interval; nothing here is written
//! per viewer or per request.

use std::collections::HashMap;
use std::time::Duration;

use tokio::sync::mpsc;

use super::PgStore;
use crate::store::{Beat, Echo, FeedEvent, Node, Shared, StoreError};

/// Releases the windows this origin no longer holds.
const DROP_OWNERS: &str = "DELETE FROM owners WHERE node_id = $1 AND NOT (broadcast_id = ANY($2))";
/// Refreshes the heartbeat of those it holds, claiming any nobody holds.
const KEEP_OWNERS: &str = "INSERT INTO owners (broadcast_id, node_id, url) \
    SELECT unnest($2::text[]), $1, $3 \
    ON CONFLICT (broadcast_id) DO UPDATE SET heartbeat = now(), url = excluded.url \
    WHERE owners.node_id = excluded.node_id";
/// Which held broadcasts have ended (through another origin).
const ENDED: &str = "SELECT id FROM broadcasts WHERE id = ANY($1) AND status = 'ended'";
/// Drops this origin's counts that went to zero, and anybody's long gone
/// (a crashed origin's).
const DROP_COUNTS: &str = "DELETE FROM viewer_counts \
    WHERE (node_id = $1 AND NOT (broadcast_id = ANY($2))) \
    OR updated_at < now() - make_interval(secs => $3::float8 * 10)";
/// This origin's viewer counts.
const PUT_COUNTS: &str = "INSERT INTO viewer_counts (node_id, broadcast_id, sessions) \
    SELECT $1, unnest($2::text[]), unnest($3::bigint[]) \
    ON CONFLICT (node_id, broadcast_id) \
    DO UPDATE SET sessions = excluded.sessions, updated_at = now()";
/// The other origins' fresh counts, summed per broadcast.
const READ_COUNTS: &str = "SELECT broadcast_id, SUM(sessions)::bigint AS n FROM viewer_counts \
    WHERE node_id <> $1 AND updated_at > now() - make_interval(secs => $2::float8) \
    GROUP BY broadcast_id";

#[async_trait::async_trait]
impl Shared for PgStore {
    async fn claim(
        &self,
        broadcast: &str,
        node: &Node,
        take_over: bool,
    ) -> Result<bool, StoreError> {
        let client = self.pool.get().await?;
        // A conflicting row is updated only on a take-over or when it is ours
        // already; otherwise nothing is returned.
        let sql = if take_over {
            "INSERT INTO owners (broadcast_id, node_id, url) VALUES ($1, $2, $3) \
             ON CONFLICT (broadcast_id) DO UPDATE SET node_id = excluded.node_id, \
             url = excluded.url, heartbeat = now() RETURNING node_id"
        } else {
            "INSERT INTO owners (broadcast_id, node_id, url) VALUES ($1, $2, $3) \
             ON CONFLICT (broadcast_id) DO UPDATE SET url = excluded.url, heartbeat = now() \
             WHERE owners.node_id = excluded.node_id RETURNING node_id"
        };
        let row = client
            .query_opt(sql, &[&broadcast, &node.id, &node.url])
            .await?;
        Ok(row.is_some())
    }

    async fn owner(&self, broadcast: &str) -> Result<Option<Node>, StoreError> {
        let client = self.pool.get().await?;
        let owner = client
            .prepare_cached("SELECT node_id, url FROM owners WHERE broadcast_id = $1")
            .await?;
        let row = client.query_opt(&owner, &[&broadcast]).await?;
        row.map(|r| {
            Ok(Node {
                id: r.try_get("node_id")?,
                url: r.try_get("url")?,
            })
        })
        .transpose()
    }

    async fn beat(&self, node: &Node, beat: &Beat, expiry: Duration) -> Result<Echo, StoreError> {
        let client = self.pool.get().await?;
        let (ids, counts): (Vec<&str>, Vec<i64>) = beat
            .viewers
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(id, n)| (id.as_str(), *n as i64))
            .unzip();
        let expiry = expiry.as_secs_f64();
        type Param<'a> = &'a (dyn tokio_postgres::types::ToSql + Sync);
        let (me, held, url): (Param, Param, Param) = (&node.id, &beat.held, &node.url);
        let (ids, counts, expiry): (Param, Param, Param) = (&ids, &counts, &expiry);
        // Parameters outlive the pipelined statements.
        let (drop_owners, keep_owners, held_only) = ([me, held], [me, held, url], [held]);
        let (drop_counts, put_counts) = ([me, ids, expiry], [me, ids, counts]);
        let read_counts = [me, expiry];
        // Prepared once per connection (a parse is a round trip of its own).
        let (s1, s2, s3, s4, s5, s6) = tokio::try_join!(
            client.prepare_cached(DROP_OWNERS),
            client.prepare_cached(KEEP_OWNERS),
            client.prepare_cached(ENDED),
            client.prepare_cached(DROP_COUNTS),
            client.prepare_cached(PUT_COUNTS),
            client.prepare_cached(READ_COUNTS),
        )?;
        let (_, _, ended, _, _, elsewhere) = tokio::try_join!(
            client.execute(&s1, &drop_owners),
            client.execute(&s2, &keep_owners),
            client.query(&s3, &held_only),
            client.execute(&s4, &drop_counts),
            client.execute(&s5, &put_counts),
            client.query(&s6, &read_counts),
        )?;
        Ok(Echo {
            ended: ended
                .iter()
                .map(|r| r.try_get("id"))
                .collect::<Result<_, _>>()?,
            viewers_elsewhere: elsewhere
                .iter()
                .map(|r| Ok((r.try_get("broadcast_id")?, r.try_get::<_, i64>("n")? as u64)))
                .collect::<Result<HashMap<_, _>, StoreError>>()?,
        })
    }

    fn follow_chat(&self) -> mpsc::Receiver<FeedEvent> {
        super::feed::follow(self.config.clone())
    }
}
