//! What several origins share beyond the records (see [`Shared`]): who
//! holds each live window, the viewers on each origin, and the chat feed.
//!
//! An origin's beat is eight prepared statements pipelined on one
//! connection (one round trip), once per heartbeat interval; a holder writes
//! each rendition's counters once per segment; nothing here is written per
//! viewer or per request.

use std::collections::HashMap;
use std::time::Duration;

use tokio::sync::mpsc;

use super::PgStore;
use crate::store::record::{now_rfc3339, rfc3339};
use crate::store::{Beat, Claim, Echo, FeedEvent, Node, Shared, StoreError};

/// Releases the windows this origin no longer holds.
const DROP_OWNERS: &str = "DELETE FROM owners WHERE node_id = $1 AND NOT (broadcast_id = ANY($2))";
/// Refreshes the heartbeat of those it holds, claiming any nobody holds.
const KEEP_OWNERS: &str = "INSERT INTO owners (broadcast_id, node_id, url, epoch) \
    SELECT unnest($2::text[]), $1, $3, unnest($4::bigint[]) \
    ON CONFLICT (broadcast_id) DO UPDATE SET heartbeat = now(), url = excluded.url \
    WHERE owners.node_id = excluded.node_id";
/// Which held broadcasts have ended (through another origin).
const ENDED: &str = "SELECT id FROM broadcasts WHERE id = ANY($1) AND status = 'ended'";
/// Which held broadcasts another origin took over.
const LOST: &str = "SELECT broadcast_id FROM owners WHERE broadcast_id = ANY($2) AND node_id <> $1";
/// Ends live broadcasts whose holder stopped beating `$1` seconds ago (or
/// that nobody has held since before `$2`), and frees their windows. Row
/// locks make each end happen in one origin's beat only.
const SWEEP: &str = "WITH gone AS ( \
        SELECT b.id FROM broadcasts b LEFT JOIN owners o ON o.broadcast_id = b.id \
        WHERE b.status = 'live' AND ( \
            o.heartbeat < now() - make_interval(secs => $1::float8) \
            OR (o.broadcast_id IS NULL AND b.modified_at < $2)) \
        FOR UPDATE OF b SKIP LOCKED), \
    swept AS (UPDATE broadcasts SET status = 'ended', ended_at = $3, modified_at = $3 \
        FROM gone WHERE broadcasts.id = gone.id AND broadcasts.status = 'live' \
        RETURNING broadcasts.id), \
    freed AS (DELETE FROM owners WHERE broadcast_id IN (SELECT id FROM swept)) \
    SELECT id FROM swept";
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
    ) -> Result<Option<Claim>, StoreError> {
        let client = self.pool.get().await?;
        // A conflicting row is updated only on a take-over or when it is ours
        // already; otherwise nothing is returned. The epoch goes up whenever
        // the holder changes; a first claim starts above any epoch counters
        // were written under (a window freed and claimed again).
        let sql = format!(
            "WITH prev AS (SELECT node_id FROM owners WHERE broadcast_id = $1) \
             INSERT INTO owners (broadcast_id, node_id, url, epoch) VALUES ($1, $2, $3, \
               COALESCE((SELECT max(epoch) FROM window_counters WHERE broadcast_id = $1), 0) + 1) \
             ON CONFLICT (broadcast_id) DO UPDATE SET node_id = excluded.node_id, \
               url = excluded.url, heartbeat = now(), \
               epoch = CASE WHEN owners.node_id = excluded.node_id THEN owners.epoch \
                 ELSE owners.epoch + 1 END {} \
             RETURNING epoch, (SELECT node_id FROM prev) AS prev",
            if take_over {
                ""
            } else {
                "WHERE owners.node_id = excluded.node_id"
            }
        );
        let row = client
            .query_opt(&sql, &[&broadcast, &node.id, &node.url])
            .await?;
        row.map(|r| {
            let prev: Option<String> = r.try_get("prev")?;
            Ok(Claim {
                epoch: r.try_get::<_, i64>("epoch")? as u64,
                taken_over: prev.is_some_and(|p| p != node.id),
            })
        })
        .transpose()
    }

    async fn save_counters(
        &self,
        broadcast: &str,
        rendition: &str,
        node: &Node,
        epoch: u64,
        counters: &str,
    ) -> Result<bool, StoreError> {
        let client = self.pool.get().await?;
        let save = client
            .prepare_cached(
                "INSERT INTO window_counters (broadcast_id, rendition, epoch, counters) \
                 SELECT $1, $2, $4, $5 WHERE EXISTS (SELECT 1 FROM owners \
                   WHERE broadcast_id = $1 AND node_id = $3 AND epoch = $4) \
                 ON CONFLICT (broadcast_id, rendition) DO UPDATE \
                 SET epoch = excluded.epoch, counters = excluded.counters, updated_at = now() \
                 WHERE window_counters.epoch <= excluded.epoch",
            )
            .await?;
        let epoch = epoch as i64;
        let n = client
            .execute(
                &save,
                &[&broadcast, &rendition, &node.id, &epoch, &counters],
            )
            .await?;
        Ok(n == 1)
    }

    async fn counters(&self, broadcast: &str) -> Result<Vec<(String, String)>, StoreError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT rendition, counters FROM window_counters WHERE broadcast_id = $1",
                &[&broadcast],
            )
            .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("rendition")?, r.try_get("counters")?)))
            .collect()
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

    async fn beat(
        &self,
        node: &Node,
        beat: &Beat,
        expiry: Duration,
        grace: Duration,
    ) -> Result<Echo, StoreError> {
        let client = self.pool.get().await?;
        let (held, epochs): (Vec<&str>, Vec<i64>) = beat
            .held
            .iter()
            .map(|(id, e)| (id.as_str(), *e as i64))
            .unzip();
        let now = std::time::SystemTime::now();
        let (grace_secs, unheld_since, ended_at) =
            (grace.as_secs_f64(), rfc3339(now - grace), now_rfc3339());
        let (ids, counts): (Vec<&str>, Vec<i64>) = beat
            .viewers
            .iter()
            .filter(|(_, n)| *n > 0)
            .map(|(id, n)| (id.as_str(), *n as i64))
            .unzip();
        let expiry = expiry.as_secs_f64();
        type Param<'a> = &'a (dyn tokio_postgres::types::ToSql + Sync);
        let (me, held, url, epochs): (Param, Param, Param, Param) =
            (&node.id, &held, &node.url, &epochs);
        let (ids, counts, expiry): (Param, Param, Param) = (&ids, &counts, &expiry);
        let (grace_secs, unheld_since, ended_at): (Param, Param, Param) =
            (&grace_secs, &unheld_since, &ended_at);
        // Parameters outlive the pipelined statements.
        let (drop_owners, keep_owners, held_only) = ([me, held], [me, held, url, epochs], [held]);
        let (drop_counts, put_counts) = ([me, ids, expiry], [me, ids, counts]);
        let (read_counts, lost, sweep) = (
            [me, expiry],
            [me, held],
            [grace_secs, unheld_since, ended_at],
        );
        // Prepared once per connection (a parse is a round trip of its own).
        let (s1, s2, s3, s4, s5, s6, s7, s8) = tokio::try_join!(
            client.prepare_cached(DROP_OWNERS),
            client.prepare_cached(KEEP_OWNERS),
            client.prepare_cached(ENDED),
            client.prepare_cached(DROP_COUNTS),
            client.prepare_cached(PUT_COUNTS),
            client.prepare_cached(READ_COUNTS),
            client.prepare_cached(LOST),
            client.prepare_cached(SWEEP),
        )?;
        let (_, _, ended, _, _, elsewhere, lost, swept) = tokio::try_join!(
            client.execute(&s1, &drop_owners),
            client.execute(&s2, &keep_owners),
            client.query(&s3, &held_only),
            client.execute(&s4, &drop_counts),
            client.execute(&s5, &put_counts),
            client.query(&s6, &read_counts),
            client.query(&s7, &lost),
            client.query(&s8, &sweep),
        )?;
        let ids =
            |rows: Vec<tokio_postgres::Row>, column: &str| -> Result<Vec<String>, StoreError> {
                Ok(rows
                    .iter()
                    .map(|r| r.try_get(column))
                    .collect::<Result<_, _>>()?)
            };
        Ok(Echo {
            ended: ids(ended, "id")?,
            lost: ids(lost, "broadcast_id")?,
            swept: ids(swept, "id")?,
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
