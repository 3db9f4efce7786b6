//! [`Recordings`] in PostgreSQL (migration V7). Segments arrive in batches
//! (one statement per table, arrays unnested); a replay is sealed at the
//! database's clock, and its index is what was added until then.
//!
//! "Until then" is exact: an addition holds its replays' rows `FOR SHARE`
//! from before it inserts until it commits, and a seal takes them `FOR
//! UPDATE` (a deletion's `UPDATE` locks them too). So a seal waits for the
//! additions under way and an addition after it adds nothing: every origin,
//! whenever it reads a sealed index, reads the same one.

use std::time::{Duration, SystemTime};

use super::{Recordings, ReplayIndex, ReplayState, RunRow, SegmentRow};
use crate::store::postgres::PgStore;
use crate::store::record::rfc3339;
use crate::store::{Node, StoreError};

/// The rows of broadcasts whose replay is not deleted.
const ADD_REPLAYS: &str = "INSERT INTO recordings (broadcast_id) \
    SELECT DISTINCT unnest($1::text[]) ORDER BY 1 ON CONFLICT DO NOTHING";
/// Held until the addition commits (rows in one order: no deadlock).
const SHARE_REPLAYS: &str = "SELECT 1 FROM recordings WHERE broadcast_id = ANY($1) \
    ORDER BY broadcast_id FOR SHARE";
/// Taken before a seal.
const LOCK_REPLAYS: &str = "SELECT 1 FROM recordings WHERE broadcast_id = ANY($1) \
    ORDER BY broadcast_id FOR UPDATE";
const ADD_RUNS: &str = "INSERT INTO recording_runs \
    (broadcast_id, rendition, generation, node_id, url, facts) \
    SELECT r.b, r.r, r.g, $5, $6, r.f FROM unnest($1::text[], $2::text[], $3::text[], $4::text[]) \
      AS r(b, r, g, f) \
    WHERE NOT EXISTS (SELECT 1 FROM recordings x WHERE x.broadcast_id = r.b \
      AND (x.deleted_at IS NOT NULL OR x.ended_at IS NOT NULL)) \
    ON CONFLICT (broadcast_id, rendition, generation) \
    DO UPDATE SET url = excluded.url, facts = excluded.facts \
    WHERE recording_runs.node_id = excluded.node_id";
/// Where an origin's runs are fetched from follows its advertised URL, even
/// in a sealed replay (playlists do not name it).
const MOVE_RUNS: &str = "UPDATE recording_runs SET url = $2 \
    WHERE broadcast_id = ANY($3) AND node_id = $1 AND url <> $2";
const ADD_SEGMENTS: &str = "INSERT INTO recording_segments \
    (broadcast_id, rendition, generation, msn, entry, duration_secs) \
    SELECT s.b, s.r, s.g, s.m, s.e, s.d \
    FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[], $5::text[], $6::float8[]) \
      AS s(b, r, g, m, e, d) \
    WHERE NOT EXISTS (SELECT 1 FROM recordings x WHERE x.broadcast_id = s.b \
      AND (x.deleted_at IS NOT NULL OR x.ended_at IS NOT NULL)) \
    ON CONFLICT DO NOTHING";
/// Seals the replays in `$1` not sealed yet, with their duration.
const SEAL: &str = "UPDATE recordings r SET ended_at = now(), updated_at = now(), \
      thumbnail = $2, \
      duration_secs = COALESCE((SELECT max(t) FROM (SELECT sum(s.duration_secs) AS t \
        FROM recording_segments s WHERE s.broadcast_id = r.broadcast_id GROUP BY s.rendition) d), 0) \
    WHERE r.broadcast_id = ANY($1) AND r.ended_at IS NULL AND r.deleted_at IS NULL \
    RETURNING r.broadcast_id";
const STRAGGLERS: &str = "SELECT r.broadcast_id FROM recordings r \
    JOIN broadcasts b ON b.id = r.broadcast_id \
    WHERE r.ended_at IS NULL AND r.deleted_at IS NULL AND b.status = 'ended' AND b.ended_at < $1";
const STATE: &str = "SELECT ended_at IS NOT NULL, deleted_at IS NOT NULL, duration_secs \
    FROM recordings WHERE broadcast_id = $1";
const CHANGED: &str = "SELECT broadcast_id, ended_at IS NOT NULL, deleted_at IS NOT NULL, \
      duration_secs, extract(epoch FROM updated_at)::float8 \
    FROM recordings WHERE $1::float8 IS NULL OR updated_at > to_timestamp($1::float8)";
const RUNS: &str = "SELECT rendition, generation, facts, node_id, url FROM recording_runs \
    WHERE broadcast_id = $1";
/// Only what the database heard of before the replay was sealed.
const SEGMENTS: &str = "SELECT s.rendition, s.generation, s.msn, s.entry, s.duration_secs \
    FROM recording_segments s JOIN recordings r ON r.broadcast_id = s.broadcast_id \
    WHERE s.broadcast_id = $1 AND r.ended_at IS NOT NULL AND s.at <= r.ended_at";

#[async_trait::async_trait]
impl Recordings for PgStore {
    async fn add_recorded(
        &self,
        node: &Node,
        runs: &[RunRow],
        segments: &[SegmentRow],
    ) -> Result<(), StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let ids: Vec<&str> = runs
            .iter()
            .map(|r| r.broadcast.as_str())
            .chain(segments.iter().map(|s| s.broadcast.as_str()))
            .collect();
        tx.execute(ADD_REPLAYS, &[&ids]).await?;
        tx.execute(SHARE_REPLAYS, &[&ids]).await?;
        let col = |f: fn(&RunRow) -> &str| runs.iter().map(f).collect::<Vec<&str>>();
        tx.execute(
            ADD_RUNS,
            &[
                &col(|r| &r.broadcast),
                &col(|r| &r.rendition),
                &col(|r| &r.generation),
                &col(|r| &r.facts),
                &node.id,
                &node.url,
            ],
        )
        .await?;
        tx.execute(MOVE_RUNS, &[&node.id, &node.url, &ids]).await?;
        let col = |f: fn(&SegmentRow) -> &str| segments.iter().map(f).collect::<Vec<&str>>();
        let msns: Vec<i64> = segments.iter().map(|s| s.msn as i64).collect();
        let secs: Vec<f64> = segments.iter().map(|s| s.duration_secs).collect();
        tx.execute(
            ADD_SEGMENTS,
            &[
                &col(|s| &s.broadcast),
                &col(|s| &s.rendition),
                &col(|s| &s.generation),
                &msns,
                &col(|s| &s.entry),
                &secs,
            ],
        )
        .await?;
        tx.commit().await?;
        Ok(())
    }

    async fn seal(&self, broadcast: &str, thumbnail: Option<&[u8]>) -> Result<(), StoreError> {
        seal(self, &[broadcast.to_owned()], thumbnail).await?;
        Ok(())
    }

    async fn seal_stragglers(&self, settle: Duration) -> Result<Vec<String>, StoreError> {
        let client = self.pool.get().await?;
        let before = rfc3339(SystemTime::now() - settle);
        let ids: Vec<String> = client
            .query(STRAGGLERS, &[&before])
            .await?
            .iter()
            .map(|r| r.get(0))
            .collect();
        if ids.is_empty() {
            return Ok(ids);
        }
        drop(client);
        seal(self, &ids, None).await
    }

    async fn delete_replay(&self, broadcast: &str) -> Result<bool, StoreError> {
        let mut client = self.pool.get().await?;
        let tx = client.transaction().await?;
        let n = tx
            .execute(
                "UPDATE recordings SET deleted_at = now(), updated_at = now() \
                 WHERE broadcast_id = $1 AND deleted_at IS NULL",
                &[&broadcast],
            )
            .await?;
        for table in ["recording_segments", "recording_runs"] {
            tx.execute(
                &format!("DELETE FROM {table} WHERE broadcast_id = $1"),
                &[&broadcast],
            )
            .await?;
        }
        tx.commit().await?;
        Ok(n > 0)
    }

    async fn replay_state(&self, broadcast: &str) -> Result<Option<ReplayState>, StoreError> {
        let client = self.pool.get().await?;
        let row = client.query_opt(STATE, &[&broadcast]).await?;
        Ok(row.map(|r| ReplayState {
            ended: r.get(0),
            deleted: r.get(1),
            duration_secs: r.get(2),
        }))
    }

    async fn replays_changed(
        &self,
        since: Option<f64>,
    ) -> Result<(Vec<(String, ReplayState)>, Option<f64>), StoreError> {
        let client = self.pool.get().await?;
        let rows = client.query(CHANGED, &[&since]).await?;
        let latest = rows
            .iter()
            .map(|r| r.get::<_, f64>(4))
            .fold(since, |m, t| Some(m.map_or(t, |m: f64| m.max(t))));
        let states = rows
            .iter()
            .map(|r| {
                (
                    r.get(0),
                    ReplayState {
                        ended: r.get(1),
                        deleted: r.get(2),
                        duration_secs: r.get(3),
                    },
                )
            })
            .collect();
        Ok((states, latest))
    }

    async fn replay_index(&self, broadcast: &str) -> Result<ReplayIndex, StoreError> {
        let client = self.pool.get().await?;
        let params: [&(dyn tokio_postgres::types::ToSql + Sync); 1] = [&broadcast];
        let (runs, segments) =
            tokio::try_join!(client.query(RUNS, &params), client.query(SEGMENTS, &params))?;
        Ok(ReplayIndex {
            runs: runs
                .iter()
                .map(|r| {
                    (
                        RunRow {
                            broadcast: broadcast.to_owned(),
                            rendition: r.get(0),
                            generation: r.get(1),
                            facts: r.get(2),
                        },
                        Node {
                            id: r.get(3),
                            url: r.get(4),
                        },
                    )
                })
                .collect(),
            segments: segments
                .iter()
                .map(|r| SegmentRow {
                    broadcast: broadcast.to_owned(),
                    rendition: r.get(0),
                    generation: r.get(1),
                    msn: r.get::<_, i64>(2) as u64,
                    entry: r.get(3),
                    duration_secs: r.get(4),
                })
                .collect(),
        })
    }

    async fn run_holder(
        &self,
        broadcast: &str,
        rendition: &str,
        generation: &str,
    ) -> Result<Option<Node>, StoreError> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                "SELECT node_id, url FROM recording_runs \
                 WHERE broadcast_id = $1 AND rendition = $2 AND generation = $3",
                &[&broadcast, &rendition, &generation],
            )
            .await?;
        Ok(row.map(|r| Node {
            id: r.get(0),
            url: r.get(1),
        }))
    }

    async fn replay_thumbnail(&self, broadcast: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let client = self.pool.get().await?;
        let row = client
            .query_opt(
                "SELECT thumbnail FROM recordings \
                 WHERE broadcast_id = $1 AND thumbnail IS NOT NULL AND deleted_at IS NULL",
                &[&broadcast],
            )
            .await?;
        Ok(row.map(|r| r.get(0)))
    }

    async fn deleted_among(&self, ids: &[String]) -> Result<Vec<String>, StoreError> {
        let client = self.pool.get().await?;
        let rows = client
            .query(
                "SELECT broadcast_id FROM recordings \
                 WHERE broadcast_id = ANY($1) AND deleted_at IS NOT NULL",
                &[&ids],
            )
            .await?;
        Ok(rows.iter().map(|r| r.get(0)).collect())
    }
}

/// Seals the replays among `ids` not sealed yet, once the additions under
/// way to them commit (so the length counts what they added); their ids.
async fn seal(
    store: &PgStore,
    ids: &[String],
    thumbnail: Option<&[u8]>,
) -> Result<Vec<String>, StoreError> {
    let mut client = store.pool.get().await?;
    let tx = client.transaction().await?;
    tx.execute(LOCK_REPLAYS, &[&ids]).await?;
    let sealed = tx.query(SEAL, &[&ids, &thumbnail]).await?;
    tx.commit().await?;
    Ok(sealed.iter().map(|r| r.get(0)).collect())
}
