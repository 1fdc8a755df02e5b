//! Stream progress in the `_keyshift` schema of the TARGET server.
//!
//! Progress lives next to the rows it describes because only then can both
//! be written by one transaction: the target either has a batch of rows and
//! the position/last key that covers them, or neither. Every function here
//! that changes progress returns SQL for the caller to run inside the
//! transaction that carries the rows; nothing commits progress on its own.

use std::collections::HashMap;

use keyshift_types::Position;
use mysql_async::Conn;
use mysql_async::prelude::Queryable;

use super::schema::str_literal;

pub(crate) const SCHEMA_SQL: &[&str] = &[
    "CREATE DATABASE IF NOT EXISTS `_keyshift`",
    "CREATE TABLE IF NOT EXISTS `_keyshift`.`streams` (
        id BIGINT UNSIGNED NOT NULL PRIMARY KEY,
        workflow VARCHAR(255) NOT NULL,
        source VARCHAR(1024) NOT NULL,
        state VARCHAR(16) NOT NULL,
        position TEXT NOT NULL,
        transactions_applied BIGINT UNSIGNED NOT NULL DEFAULT 0,
        updated_at TIMESTAMP(6) NOT NULL DEFAULT CURRENT_TIMESTAMP(6) ON UPDATE CURRENT_TIMESTAMP(6),
        message TEXT NOT NULL
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
    "CREATE TABLE IF NOT EXISTS `_keyshift`.`copy_state` (
        stream_id BIGINT UNSIGNED NOT NULL,
        table_name VARCHAR(64) NOT NULL,
        last_pk TEXT NULL,
        done BOOL NOT NULL DEFAULT FALSE,
        rows_copied BIGINT UNSIGNED NOT NULL DEFAULT 0,
        rows_scanned BIGINT UNSIGNED NOT NULL DEFAULT 0,
        PRIMARY KEY (stream_id, table_name)
    ) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
];

/// One table's committed copy progress.
#[derive(Debug, Clone, Default, PartialEq)]
pub(crate) struct TableState {
    /// The key of the last row read from the source (whether or not it was
    /// in range), as comparable SQL literals; `None`: nothing read yet.
    pub last_pk: Option<Vec<String>>,
    pub done: bool,
    pub rows_copied: u64,
    pub rows_scanned: u64,
}

/// A stream's committed progress.
#[derive(Debug, Clone)]
pub(crate) struct Stored {
    /// `None` until the first batch commits.
    pub position: Option<Position>,
    pub transactions_applied: u64,
    pub tables: HashMap<String, TableState>,
}

/// Why stored progress cannot be used.
pub(crate) type StoredError = String;

/// Creates the sidecar schema and this stream's rows (if absent) and reads
/// its committed progress.
pub(crate) async fn load_or_create(
    conn: &mut Conn,
    id: u64,
    workflow: &str,
    source: &str,
    tables: &[String],
) -> Result<Result<Stored, StoredError>, mysql_async::Error> {
    for sql in SCHEMA_SQL {
        conn.query_drop(*sql).await?;
    }
    conn.exec_drop(
        "INSERT IGNORE INTO `_keyshift`.`streams` (id, workflow, source, state, position, message) \
         VALUES (?, ?, ?, 'copying', '', '')",
        (id, workflow, source),
    )
    .await?;
    for t in tables {
        conn.exec_drop(
            "INSERT IGNORE INTO `_keyshift`.`copy_state` (stream_id, table_name) VALUES (?, ?)",
            (id, t),
        )
        .await?;
    }
    let row: Option<(String, String, u64)> = conn
        .exec_first(
            "SELECT workflow, position, transactions_applied FROM `_keyshift`.`streams` WHERE id = ?",
            (id,),
        )
        .await?;
    let Some((stored_workflow, position, transactions_applied)) = row else {
        return Ok(Err(format!("stream {id} vanished from _keyshift.streams")));
    };
    if stored_workflow != workflow {
        return Ok(Err(format!(
            "stream id {id} on this target belongs to workflow `{stored_workflow}`, not `{workflow}`"
        )));
    }
    let position = if position.is_empty() {
        None
    } else {
        match position.parse::<Position>() {
            Ok(p) => Some(p),
            Err(e) => return Ok(Err(format!("stored position `{position}`: {e}"))),
        }
    };
    let rows: Vec<(String, Option<String>, bool, u64, u64)> = conn
        .exec(
            "SELECT table_name, last_pk, done, rows_copied, rows_scanned \
             FROM `_keyshift`.`copy_state` WHERE stream_id = ?",
            (id,),
        )
        .await?;
    let mut out = HashMap::new();
    for (name, last_pk, done, rows_copied, rows_scanned) in rows {
        let last_pk = match last_pk {
            None => None,
            Some(s) => match serde_json::from_str::<Vec<String>>(&s) {
                Ok(v) => Some(v),
                Err(e) => {
                    return Ok(Err(format!("stored last key of `{name}` (`{s}`): {e}")));
                }
            },
        };
        out.insert(
            name,
            TableState {
                last_pk,
                done,
                rows_copied,
                rows_scanned,
            },
        );
    }
    Ok(Ok(Stored {
        position,
        transactions_applied,
        tables: out,
    }))
}

/// SQL recording `position` (and `applied` more source transactions) for
/// stream `id`, for the transaction that applied them.
pub(crate) fn position_sql(id: u64, position: &Position, applied: u64, state: &str) -> String {
    format!(
        "UPDATE `_keyshift`.`streams` SET position = {}, state = {}, \
         transactions_applied = transactions_applied + {applied}, message = '' WHERE id = {id}",
        str_literal(&position.to_prefixed()),
        str_literal(state),
    )
}

/// Reads every stream's committed position on this target; the returned
/// closure picks one (`Ok(None)`: absent or nothing committed yet).
pub(crate) async fn read_position(
    conn: &mut Conn,
) -> Result<impl Fn(u64) -> Result<Option<Position>, StoredError> + use<>, mysql_async::Error> {
    let exists: Option<String> = conn
        .query_first(
            "SELECT TABLE_NAME FROM information_schema.TABLES \
             WHERE TABLE_SCHEMA = '_keyshift' AND TABLE_NAME = 'streams'",
        )
        .await?;
    let rows: Vec<(u64, String)> = if exists.is_some() {
        conn.query("SELECT id, position FROM `_keyshift`.`streams`")
            .await?
    } else {
        Vec::new()
    };
    let map: HashMap<u64, String> = rows.into_iter().collect();
    Ok(move |id: u64| match map.get(&id) {
        None => Ok(None),
        Some(p) if p.is_empty() => Ok(None),
        Some(p) => p
            .parse::<Position>()
            .map(Some)
            .map_err(|e| format!("stored position `{p}`: {e}")),
    })
}

/// SQL marking every table of stream `id` copied.
pub(crate) fn all_done_sql(id: u64) -> String {
    format!("UPDATE `_keyshift`.`copy_state` SET done = TRUE WHERE stream_id = {id}")
}

/// SQL removing stream `id`'s progress.
pub(crate) fn forget_sql(id: u64) -> [String; 2] {
    [
        format!("DELETE FROM `_keyshift`.`copy_state` WHERE stream_id = {id}"),
        format!("DELETE FROM `_keyshift`.`streams` WHERE id = {id}"),
    ]
}

/// SQL recording a copy batch of `table`.
pub(crate) fn copy_state_sql(id: u64, table: &str, st: &TableState) -> String {
    let last_pk = match &st.last_pk {
        // Serializing a Vec<String> cannot fail.
        Some(pk) => str_literal(&serde_json::to_string(pk).unwrap_or_default()),
        None => "NULL".to_string(),
    };
    format!(
        "UPDATE `_keyshift`.`copy_state` SET last_pk = {last_pk}, done = {}, rows_copied = {}, \
         rows_scanned = {} WHERE stream_id = {id} AND table_name = {}",
        st.done,
        st.rows_copied,
        st.rows_scanned,
        str_literal(table),
    )
}

/// SQL recording a state and message that are not tied to rows (stopped,
/// error); run on its own, best effort.
pub(crate) fn state_sql(id: u64, state: &str, message: &str) -> String {
    format!(
        "UPDATE `_keyshift`.`streams` SET state = {}, message = {} WHERE id = {id}",
        str_literal(state),
        str_literal(message),
    )
}

/// Makes this session the stream's only applier on the target.
///
/// A previous incarnation of the stream (a cancelled or dropped future, a
/// crashed or partitioned process) may still have a transaction in flight
/// on its own connection: if it committed after we read the progress, its
/// rows would be applied twice. So the applier session holds a named lock
/// for its whole life, and a new one takes the lock before reading
/// progress: if an old session holds it, that session is killed, and the
/// lock is granted only once it has ended, i.e. once its transaction is
/// committed or rolled back for good.
pub(crate) async fn take_stream_lock(
    conn: &mut Conn,
    id: u64,
) -> Result<Result<(), StoredError>, mysql_async::Error> {
    take_lock(conn, &format!("_keyshift.stream.{id}"), id).await
}

/// The most copy workers a stream has (`StreamSpec::copy_parallel_tables`
/// is capped to it), so that a new incarnation knows every worker lock an
/// old one may hold.
pub(crate) const MAX_COPY_WORKERS: usize = 8;

fn worker_lock_name(id: u64, k: usize) -> String {
    format!("_keyshift.stream.{id}.w{k}")
}

/// The same hazard for the copy's extra writer sessions (parallel tables):
/// each holds `_keyshift.stream.<id>.w<k>` for its life. A new incarnation,
/// once it holds the stream's lock, ends every session holding a worker
/// lock (and waits until they are gone) before it reads progress.
pub(crate) async fn end_old_workers(
    conn: &mut Conn,
    id: u64,
) -> Result<Result<(), StoredError>, mysql_async::Error> {
    for k in 0..MAX_COPY_WORKERS {
        let name = worker_lock_name(id, k);
        if let Err(e) = take_lock(conn, &name, id).await? {
            return Ok(Err(e));
        }
        conn.exec_drop("SELECT RELEASE_LOCK(?)", (&name,)).await?;
    }
    Ok(Ok(()))
}

/// Takes worker lock `k` of stream `id` on a worker session, then checks
/// that the stream's lock still belongs to `applier` (the connection id of
/// this incarnation's applier session). A worker of an incarnation that
/// has been replaced either holds its lock when the new one ends old
/// workers (and is ended with it), or takes it afterwards and finds the
/// stream's lock held by another session here.
pub(crate) async fn take_worker_lock(
    conn: &mut Conn,
    id: u64,
    k: usize,
    applier: u32,
) -> Result<Result<(), StoredError>, mysql_async::Error> {
    let name = worker_lock_name(id, k);
    let got: Option<Option<i64>> = conn.exec_first("SELECT GET_LOCK(?, 10)", (&name,)).await?;
    if got.flatten() != Some(1) {
        return Ok(Err(format!(
            "another session keeps the lock `{name}`: is the stream running elsewhere?"
        )));
    }
    let holder: Option<Option<u64>> = conn
        .exec_first(
            "SELECT IS_USED_LOCK(?)",
            (format!("_keyshift.stream.{id}"),),
        )
        .await?;
    if holder.flatten() != Some(u64::from(applier)) {
        return Ok(Err(
            "the stream's applier session changed: a newer incarnation runs it".into(),
        ));
    }
    Ok(Ok(()))
}

async fn take_lock(
    conn: &mut Conn,
    name: &str,
    id: u64,
) -> Result<Result<(), StoredError>, mysql_async::Error> {
    let got: Option<Option<i64>> = conn.exec_first("SELECT GET_LOCK(?, 1)", (&name,)).await?;
    if got.flatten() == Some(1) {
        return Ok(Ok(()));
    }
    let holder: Option<Option<u64>> = conn.exec_first("SELECT IS_USED_LOCK(?)", (&name,)).await?;
    if let Some(holder) = holder.flatten() {
        tracing::info!(
            stream = id,
            holder,
            "killing the stream's previous applier session"
        );
        // It may end by itself meanwhile: "unknown thread" is fine.
        let _ = conn.query_drop(format!("KILL CONNECTION {holder}")).await;
    }
    let got: Option<Option<i64>> = conn.exec_first("SELECT GET_LOCK(?, 30)", (&name,)).await?;
    if got.flatten() == Some(1) {
        Ok(Ok(()))
    } else {
        Ok(Err(format!(
            "another session keeps the lock `{name}`: is the stream running elsewhere?"
        )))
    }
}
