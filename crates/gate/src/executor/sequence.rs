//! Auto-increment ids for sharded tables, from Vitess-style sequence tables
//! (`id = 0` row holding `next_id` and `cache`) in an unsharded keyspace.
//!
//! Each round trip to the sequence table reserves a block of `cache` ids,
//! which the gate hands out from memory: one gate-wide block per sequence,
//! shared by all sessions, so most inserts cost no extra query. Ids of a
//! block the gate never hands out (restart) are skipped, never reused.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use keyshift_router::SequenceRef;

use crate::backend::{BackendError, Pool, QueryResult};
use crate::error::GateError;
use crate::proto::Value;

#[derive(Debug, Default)]
struct Block {
    next: i64,
    end: i64,
}

/// A block behind its own async lock: callers wait for a refill without
/// blocking other sequences.
type SharedBlock = Arc<tokio::sync::Mutex<Block>>;

/// The gate's id blocks, one per sequence table (keyspace, table).
#[derive(Default)]
pub(crate) struct Sequences {
    blocks: Mutex<HashMap<(String, String), SharedBlock>>,
}

impl Sequences {
    fn block(&self, seq: &SequenceRef) -> SharedBlock {
        let mut map = match self.blocks.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        };
        map.entry((seq.keyspace.clone(), seq.table.clone()))
            .or_default()
            .clone()
    }

    /// `n` ids in increasing order. Concurrent callers of one sequence queue
    /// on its block, so two sessions never get the same id.
    pub(crate) async fn take(
        &self,
        pool: &Pool,
        seq: &SequenceRef,
        n: usize,
    ) -> Result<Vec<i64>, GateError> {
        let block = self.block(seq);
        let mut b = block.lock().await;
        let mut ids = Vec::with_capacity(n);
        while ids.len() < n {
            if b.next >= b.end {
                let want = (n - ids.len()) as i64;
                let (start, len) = reserve(pool, seq, want).await?;
                b.next = start;
                b.end = start + len;
            }
            ids.push(b.next);
            b.next += 1;
        }
        Ok(ids)
    }
}

/// Reserves `max(cache, want)` ids in the sequence table's own transaction
/// on a connection of its own, so a session's transaction never holds the
/// sequence row lock. Returns the first id and the count.
async fn reserve(pool: &Pool, seq: &SequenceRef, want: i64) -> Result<(i64, i64), GateError> {
    let name = format!("{}.{}", seq.keyspace, seq.table);
    let fail = |e: BackendError| {
        let e = GateError::from(e);
        GateError::new(
            e.code,
            e.sqlstate,
            format!("cannot take ids from sequence {name}: {}", e.message),
        )
    };
    let mut conn = pool.get().await.map_err(fail)?;
    let table = quote_ident(&seq.table);
    let run = async {
        conn.query_rows("BEGIN").await?;
        let r = conn
            .query_rows(&format!(
                "SELECT next_id, cache FROM {table} WHERE id = 0 FOR UPDATE"
            ))
            .await?;
        Ok::<_, BackendError>(r)
    };
    let r = match run.await {
        Ok(r) => r,
        Err(e) => {
            conn.release().await;
            return Err(fail(e));
        }
    };
    let (next, cache) = match parse_row(&r) {
        Some(v) => v,
        None => {
            conn.release().await;
            return Err(GateError::internal(format!(
                "sequence table {name} has no usable row with id = 0 (expected next_id and cache, cache >= 1)"
            )));
        }
    };
    let len = cache.max(want);
    let run = async {
        conn.query_rows(&format!(
            "UPDATE {table} SET next_id = next_id + {len} WHERE id = 0"
        ))
        .await?;
        conn.query_rows("COMMIT").await?;
        Ok::<_, BackendError>(())
    };
    let r = run.await;
    conn.release().await;
    r.map_err(fail)?;
    Ok((next, len))
}

fn parse_row(r: &QueryResult) -> Option<(i64, i64)> {
    let row = r.rows.first()?;
    let num = |v: &Value| match v {
        Value::Bytes(b) => std::str::from_utf8(b).ok()?.trim().parse::<i64>().ok(),
        Value::Int(i) => Some(*i),
        Value::UInt(u) => i64::try_from(*u).ok(),
        _ => None,
    };
    let next = num(row.first()?)?;
    let cache = num(row.get(1)?)?;
    (cache >= 1).then_some((next, cache))
}

pub(crate) fn quote_ident(s: &str) -> String {
    format!("`{}`", s.replace('`', "``"))
}
