//! The stream engine: one source shard → one target shard, exact and
//! crash-safe.
//!
//! A workflow runs one stream per source shard × overlapping target shard
//! ([`run_stream`]); each copies the workflow's tables (the rows whose
//! keyspace id falls in the target's key range), then keeps the target in
//! sync from the source's binlog.
//!
//! # Where progress lives
//!
//! In the `_keyshift` schema of the TARGET (module `sidecar`): per stream
//! its source position, per table the key of the last row read from the
//! source (`last_pk`), whether the table is done, and counters. Every
//! target transaction that changes rows also writes the progress that
//! describes those rows; nothing is kept only in memory. On start, a stream
//! reads that progress and continues from it.
//!
//! # Copy
//!
//! Repeated in cycles until every table is done:
//!
//! 1. Open a consistent snapshot on the source and read its exact position
//!    P (MariaDB: `Binlog_snapshot_file/position` → `BINLOG_GTID_POS`).
//! 2. If the stream has a committed position Q (it copied something before)
//!    and Q ≠ P, catch up: replay the binlog from Q up to exactly P, applying
//!    every change of tables already done, the changes of the table being
//!    copied only where the row's key is ≤ its `last_pk`, and nothing of
//!    tables not started. Position commits with the changes, so it reaches P.
//! 3. From the snapshot, read the table's rows with key > `last_pk` in key
//!    order (`ORDER BY` key, `WHERE` key > last key spelled with literals
//!    that compare in the column's collation), `copy_batch_rows` at a time;
//!    keep the rows whose keyspace id is in the key range; write them
//!    (`LOAD DATA LOCAL INFILE`, or INSERTs on a target that refuses it),
//!    update `last_pk` (the last row READ, in range or not), the counters
//!    and `position = P`, all in one target transaction. A short batch ends
//!    the table (`done` in that same transaction); the next table continues
//!    in the same snapshot.
//! 4. After `copy_cycle`, end the snapshot (a long one holds back the
//!    source's purge) and start the next cycle.
//!
//! Step 3 may copy several tables at once (`copy_parallel_tables`): their
//! batches all come from the one snapshot at P, read in turn, and each
//! table's batches commit in order on a writer session of its own on the
//! target, with that table's progress. P is committed before they start (by
//! the catch-up, or an empty commit), so each table's part of the
//! invariant holds on its own and the tables' commits need no order.
//!
//! The streams of one source shard (one per overlapping target shard) do
//! steps 1 and 3 together when they are at the same point: one snapshot
//! and one scan of the source for all of them, each stream catching up and
//! committing on its own target as above (module `group`, [`CopyGroup`]).
//!
//! Invariant after every commit, with P the committed position: for every
//! table, the target holds exactly the source's rows at P that are in the
//! key range and whose key is ≤ `last_pk` (all of them when done, none
//! when not started). Step 3 keeps it (the rows come from the snapshot at
//! P, key > `last_pk`, in key order). Step 2 keeps it: a change to a row
//! with key ≤ `last_pk` is applied; a row with key > `last_pk` is not on the
//! target, so deleting or updating it is a no-op and inserting it is
//! skipped (a key-changing update is a delete of the old key and a
//! conditional insert of the new). The key comparison is done by the
//! server on literals typed like the columns, so it agrees with the
//! source's `ORDER BY` even for collated strings and composite keys.
//!
//! # Running
//!
//! Tail the binlog from the committed position. Each row change of a
//! workflow table becomes what it means for this shard (`apply::ops_for`):
//! an update whose vindex column takes the row out of the key range is a
//! delete here, one that brings it in is a `REPLACE`. Several source
//! transactions are applied per target transaction (up to
//! [`MAX_TXNS_PER_COMMIT`], [`MAX_COMMIT_DELAY`], or until no event is
//! immediately ready), with the position after the last one committed in
//! the same transaction. Lag is now minus the last event's timestamp; a
//! heartbeat (which the source sends only when it has nothing else) means
//! lag 0. DDL on the workflow's tables follows [`OnDdl`].
//!
//! # Crash safety
//!
//! A target transaction holds rows AND the progress that describes them,
//! so at any crash instant the target has committed either both or neither.
//! A restart reads the committed progress and resumes from it: the binlog
//! from position Q yields exactly the transactions after Q (GTID
//! positions, no offsets), so none is applied twice and none is skipped;
//! the copy continues after the committed `last_pk` in a new snapshot,
//! after a catch-up that restores the invariant at the new snapshot's
//! position. A source transaction can be applied twice only if the target
//! committed its rows without its position, which the single transaction
//! rules out; the crash tests cancel streams at random points and compare
//! every row.
//!
//! One more hazard: a stopped incarnation (a dropped future, a killed or
//! partitioned process) may still have a transaction executing on the
//! target, which could commit after the new incarnation read the progress.
//! So the applier session holds the named lock `_keyshift.stream.<id>` for
//! its life; a new incarnation kills the holder and reads progress only once
//! the lock is granted, i.e. once the old session, and its transaction, are
//! gone (`sidecar::take_stream_lock`). The copy's writer sessions hold
//! `_keyshift.stream.<id>.w<k>` each; once it holds the stream's lock, a new
//! incarnation ends every holder of those before it reads progress
//! (`sidecar::end_old_workers`), and a writer checks, once it holds its own
//! lock, that the stream's lock is its incarnation's (a writer opened after
//! the takeover finds it is not). Copy and replication write plain
//! INSERTs where a row cannot exist yet (or, copying, a LOAD DATA whose
//! stored row count is checked, since a local load skips duplicates), so a
//! doubled row would fail loudly rather than pass unnoticed. Non-transactional work is the one exception: a DDL executed
//! with `on_ddl=exec` commits implicitly, so a crash between it and the
//! position update runs it again on restart (`exec_ignore` tolerates that).
//!
//! # Errors
//!
//! A dead source or target ends the stream with a [`StreamError`] whose
//! [`StreamError::is_transient`] says whether to retry; the retry is simply
//! another [`run_stream`], which resumes from committed progress.

mod apply;
mod copy;
mod group;
mod keyfilter;
mod load;
mod schema;
mod sidecar;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use futures::{FutureExt, StreamExt};
use keyshift_tablet::Endpoint;
use keyshift_types::{KeyRange, Position};
use keyshift_vindex::Vindex;
use mysql_async::Conn;
use mysql_async::prelude::Queryable;
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

use crate::binlog::{BinlogOptions, BinlogStream, Event, TableFilter};
use crate::error::VreplError;
use crate::flavor::{ServerFlavor, detect, for_flavor};
use crate::rows::RowChange;
use crate::value::APPLIER_SESSION_SQL;

use apply::{Op, SqlBatch, key_of, ops_for};
pub use group::CopyGroup;
use schema::{TablePlan, ident, tuple_gt};
use sidecar::{Stored, position_sql};

/// At most this many source transactions per target transaction.
pub const MAX_TXNS_PER_COMMIT: usize = 500;
/// A batch of applied transactions waits at most this long for more.
pub const MAX_COMMIT_DELAY: Duration = Duration::from_millis(200);

/// One table a stream moves.
#[derive(Debug, Clone)]
pub struct TableSpec {
    pub name: String,
    /// The primary key, or a unique NOT NULL key: rows are copied in this
    /// order and found by it.
    pub pk_columns: Vec<String>,
    /// The primary vindex: its column and function. `None` (unsharded
    /// target) keeps every row.
    pub vindex: Option<(String, Arc<dyn Vindex>)>,
}

/// What a stream does with a schema change to its tables on the source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum OnDdl {
    /// Skip it: the target keeps its schema.
    Ignore,
    /// Stop the stream, positioned after the statement, and report it
    /// ([`StreamError::StoppedAtDdl`]); an operator applies it and restarts.
    #[default]
    Stop,
    /// Run it on the target; failing stops the stream.
    Exec,
    /// Run it on the target and carry on even if it fails.
    ExecIgnore,
}

/// Everything one stream needs.
#[derive(Debug, Clone)]
pub struct StreamSpec {
    /// Unique per target server: the key of the stream's progress there.
    pub id: u64,
    pub workflow: String,
    pub source: Endpoint,
    pub source_db: String,
    pub target: Endpoint,
    pub target_db: String,
    pub tables: Vec<TableSpec>,
    /// The target shard's range: only rows whose keyspace id is in it.
    pub key_range: KeyRange,
    pub copy_batch_rows: usize,
    /// How long one snapshot may stay open during the copy.
    pub copy_cycle: Duration,
    /// Tables copied at once, each by a writer session of its own on the
    /// target (1: one after another). Capped at 8. Used when the stream
    /// copies alone; a copy group moves one table at a time.
    pub copy_parallel_tables: usize,
    pub on_ddl: OnDdl,
    /// End with [`StreamExit::CopyCompleted`] instead of replicating.
    pub stop_after_copy: bool,
    /// The other streams of the same source shard in this workflow run,
    /// to copy with (one snapshot and one scan for all; module `group`).
    /// `None`: copy alone.
    pub copy_group: Option<Arc<CopyGroup>>,
    /// Replicate up to exactly this source position, commit it and end with
    /// [`StreamExit::ReachedStop`]: how VDiff and switch-traffic bring a
    /// target to a known point. Only for streams that finished their copy.
    pub stop_position: Option<Position>,
}

/// The stream's phase, as the workflow shows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum StreamState {
    #[default]
    Copying,
    Running,
    Stopped,
    Error,
}

impl StreamState {
    fn as_str(self) -> &'static str {
        match self {
            StreamState::Copying => "copying",
            StreamState::Running => "running",
            StreamState::Stopped => "stopped",
            StreamState::Error => "error",
        }
    }
}

/// Copy progress of one table.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TableProgress {
    pub name: String,
    /// Rows written to this target (in its key range).
    pub rows_copied: u64,
    /// Rows read from the source, in range or not.
    pub rows_scanned: u64,
    /// The source table's size: `information_schema.TABLES.TABLE_ROWS`, or
    /// an exact count for small tables. Compare with `rows_scanned`.
    pub estimated_rows: u64,
    pub done: bool,
}

impl TableProgress {
    /// Percent of the source table read, 100 when done.
    pub fn percent(&self) -> f64 {
        if self.done {
            100.0
        } else if self.estimated_rows == 0 {
            0.0
        } else {
            (self.rows_scanned as f64 * 100.0 / self.estimated_rows as f64).min(99.9)
        }
    }
}

/// What a running stream reports (through a watch channel).
#[derive(Debug, Clone, PartialEq, Default)]
pub struct StreamProgress {
    pub state: StreamState,
    pub tables: Vec<TableProgress>,
    /// The committed source position.
    pub position: Option<Position>,
    /// Seconds behind the source while running; `None` during the copy.
    pub lag_seconds: Option<u64>,
    pub transactions_applied: u64,
    /// Snapshots opened by the copy since this run started (each after
    /// the first follows a binlog catch-up).
    pub copy_cycles: u64,
    /// Of those, the snapshots shared with the other streams of the same
    /// source shard (one scan for all of them; module `group`).
    pub shared_copy_cycles: u64,
    pub last_error: Option<String>,
}

/// How a stream ended without error.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum StreamExit {
    /// The cancellation token fired; progress is committed up to some point
    /// and a new [`run_stream`] resumes from it.
    Cancelled,
    /// `stop_after_copy` and every table is copied.
    CopyCompleted,
    /// The committed position is the spec's `stop_position`.
    ReachedStop,
}

/// Why a stream stopped.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// The source failed (connection, binlog stream, snapshot, query).
    #[error("source {endpoint}: {during}: {err}")]
    Source {
        endpoint: String,
        during: &'static str,
        #[source]
        err: VreplError,
    },
    /// The target failed (connection, apply, progress).
    #[error("target {endpoint}: {during}: {err}")]
    Target {
        endpoint: String,
        during: &'static str,
        #[source]
        err: mysql_async::Error,
    },
    /// The spec does not fit the source's tables.
    #[error("table `{table}`: {detail}")]
    Table { table: String, detail: String },
    /// A row the vindex cannot place, or a row image the stream cannot use.
    #[error("table `{table}`: cannot apply a row: {detail}")]
    Row { table: String, detail: String },
    /// `on_ddl=stop` met a schema change; the position is after it.
    #[error("stopped at DDL (on_ddl=stop): {sql}")]
    StoppedAtDdl { sql: String },
    /// `on_ddl=exec` and the target refused the statement.
    #[error("DDL failed on the target (on_ddl=exec): {sql}: {err}")]
    DdlFailed {
        sql: String,
        #[source]
        err: mysql_async::Error,
    },
    /// The committed progress on the target cannot be used.
    #[error("progress of stream {id} on the target: {detail}")]
    Progress { id: u64, detail: String },
    /// Another session still holds the stream on the target.
    #[error("stream {id}: {detail}")]
    Busy { id: u64, detail: String },
    /// The source has not reached the committed position (a lagging or
    /// different server answers at the source's address).
    #[error("the source is at {source_pos}, behind the committed position {committed}")]
    SourceBehind {
        source_pos: String,
        committed: String,
    },
}

/// Server errors that go away by themselves: deadlocks, lock waits,
/// shutdowns, read-only during failover, connection limits, and a binlog
/// connection replaced by another incarnation of the stream (4052).
fn transient_server_code(code: u16) -> bool {
    matches!(
        code,
        1040 | 1053 | 1152 | 1158
            ..=1161 | 1205 | 1213 | 1290 | 1317 | 1836 | 1927 | 2006 | 2013 | 4052
    )
}

fn transient_mysql(e: &mysql_async::Error) -> bool {
    match e {
        mysql_async::Error::Server(s) => transient_server_code(s.code),
        _ => true,
    }
}

impl StreamError {
    /// Whether running the stream again later may succeed: lost or refused
    /// connections, dead servers, deadlocks, a lagging source. Schema,
    /// data and DDL stops need a human.
    pub fn is_transient(&self) -> bool {
        match self {
            StreamError::Source { err, .. } => match err {
                VreplError::Mysql(e) => transient_mysql(e),
                e => e.is_transient(),
            },
            StreamError::Target { err, .. } => transient_mysql(err),
            StreamError::SourceBehind { .. } | StreamError::Busy { .. } => true,
            _ => false,
        }
    }
}

/// Runs one stream until it is cancelled, completes its copy
/// (`stop_after_copy`), or fails. Progress is published on `progress` and
/// committed on the target; calling again after any exit resumes from the
/// committed progress.
pub async fn run_stream(
    spec: StreamSpec,
    cancel: CancellationToken,
    progress: watch::Sender<StreamProgress>,
) -> Result<StreamExit, StreamError> {
    let id = spec.id;
    let target = spec.target.clone();
    let result = run(spec, cancel, &progress).await;
    match &result {
        Ok(StreamExit::Cancelled) => {}
        Ok(StreamExit::CopyCompleted | StreamExit::ReachedStop) => {
            progress.send_modify(|p| p.state = StreamState::Stopped);
        }
        Err(e) => {
            let message = e.to_string();
            progress.send_modify(|p| {
                p.state = if matches!(e, StreamError::StoppedAtDdl { .. }) {
                    StreamState::Stopped
                } else {
                    StreamState::Error
                };
                p.last_error = Some(message.clone());
            });
            if !matches!(e, StreamError::StoppedAtDdl { .. }) {
                // Best effort: the target may be the thing that died.
                let record = async {
                    let mut c = target.connect().await?;
                    c.query_drop(sidecar::state_sql(id, "error", &message))
                        .await
                };
                let _ = tokio::time::timeout(Duration::from_secs(5), record).await;
            }
        }
    }
    result
}

/// The committed source position of stream `id` on `target`; `None` when
/// the stream has committed nothing (or does not exist there).
pub async fn committed_position(
    target: &Endpoint,
    id: u64,
) -> Result<Option<Position>, StreamError> {
    let tgt_err = |during: &'static str| {
        let endpoint = endpoint_name(target);
        move |err| StreamError::Target {
            endpoint,
            during,
            err,
        }
    };
    let mut c = target.connect().await.map_err(tgt_err("connecting"))?;
    let r = sidecar::read_position(&mut c)
        .await
        .map_err(tgt_err("reading stream progress"))
        .and_then(|f| f(id).map_err(|detail| StreamError::Progress { id, detail }));
    let _ = c.disconnect().await;
    r
}

/// Makes stream `id` on `target` one that has copied every table and
/// continues from `position`: a reverse stream created at the switch, or a
/// forward stream resumed after switching back. Takes the stream's applier
/// lock first (ending any old applier), so nothing else writes meanwhile.
pub async fn start_at(
    target: &Endpoint,
    id: u64,
    workflow: &str,
    source_desc: &str,
    tables: &[String],
    position: &Position,
) -> Result<(), StreamError> {
    let tgt_err = |during: &'static str| {
        let endpoint = endpoint_name(target);
        move |err| StreamError::Target {
            endpoint,
            during,
            err,
        }
    };
    let mut c = target.connect().await.map_err(tgt_err("connecting"))?;
    sidecar::take_stream_lock(&mut c, id)
        .await
        .map_err(tgt_err("taking the stream's applier lock"))?
        .map_err(|detail| StreamError::Busy { id, detail })?;
    sidecar::load_or_create(&mut c, id, workflow, source_desc, tables)
        .await
        .map_err(tgt_err("creating stream progress"))?
        .map_err(|detail| StreamError::Progress { id, detail })?;
    let mut sql = String::from("START TRANSACTION;\n");
    sql.push_str(&sidecar::all_done_sql(id));
    sql.push_str(";\n");
    sql.push_str(&position_sql(
        id,
        position,
        0,
        StreamState::Running.as_str(),
    ));
    sql.push_str(";\nCOMMIT");
    c.query_drop(sql)
        .await
        .map_err(tgt_err("recording the stream's start position"))?;
    let _ = c.disconnect().await;
    Ok(())
}

/// Removes stream `id`'s progress from `target` (cancel, complete). Ends
/// any applier still running first. Idempotent.
pub async fn forget_stream(target: &Endpoint, id: u64) -> Result<(), StreamError> {
    let tgt_err = |during: &'static str| {
        let endpoint = endpoint_name(target);
        move |err| StreamError::Target {
            endpoint,
            during,
            err,
        }
    };
    let mut c = target.connect().await.map_err(tgt_err("connecting"))?;
    let exists: Option<String> = c
        .query_first(
            "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME = '_keyshift'",
        )
        .await
        .map_err(tgt_err("looking for the sidecar schema"))?;
    if exists.is_some() {
        sidecar::take_stream_lock(&mut c, id)
            .await
            .map_err(tgt_err("taking the stream's applier lock"))?
            .map_err(|detail| StreamError::Busy { id, detail })?;
        for sql in sidecar::forget_sql(id) {
            c.query_drop(sql)
                .await
                .map_err(tgt_err("removing stream progress"))?;
        }
    }
    let _ = c.disconnect().await;
    Ok(())
}

/// A stream's working state.
struct Ctx<'p> {
    spec: StreamSpec,
    flavor: Arc<dyn ServerFlavor>,
    /// Plans by table name, and the spec's order.
    plans: HashMap<String, TablePlan>,
    order: Vec<String>,
    /// The applier session on the target.
    target: Conn,
    /// Its connection id: the copy workers check it holds the stream's lock.
    applier_id: u32,
    /// The copy's extra writer sessions (parallel tables), kept across
    /// cycles; each holds its worker lock.
    workers: Vec<Conn>,
    /// A control session on the source (schema, estimates).
    source: Conn,
    /// Mirror of the committed progress: changed only after a commit.
    stored: Stored,
    cancel: CancellationToken,
    progress: &'p watch::Sender<StreamProgress>,
    server_id: u32,
    last_lag: Option<u64>,
}

/// Session settings of the applier: literal round-trip (UTC), zero values
/// accepted as the source stored them, explicit 0 in AUTO_INCREMENT
/// columns kept, and no foreign-key checks (tables arrive one at a time
/// and shard by shard).
const TARGET_SESSION_SQL: &[&str] = &[
    "SET SESSION sql_mode = 'NO_AUTO_VALUE_ON_ZERO,NO_ENGINE_SUBSTITUTION'",
    "SET SESSION foreign_key_checks = 0",
];

/// `START TRANSACTION`, `body` (chunks of row statements, may be empty),
/// then `tail` (which ends with `COMMIT`), on `conn`. Usually one round
/// trip: the server stops at the first failing statement, and the caller
/// drops the connection (rolling back) on error. Large batches go in
/// several packets of one transaction.
async fn commit_rows(conn: &mut Conn, body: Vec<String>, tail: String) -> mysql_async::Result<()> {
    let mut packets = Vec::with_capacity(body.len() + 1);
    let mut first = String::from("START TRANSACTION");
    let mut body = body.into_iter();
    if let Some(chunk) = body.next() {
        first.push_str(";\n");
        first.push_str(&chunk);
    }
    packets.push(first);
    packets.extend(body);
    match packets.last_mut() {
        Some(last) => {
            last.push_str(";\n");
            last.push_str(&tail);
        }
        None => packets.push(tail),
    }
    for sql in packets {
        conn.query_drop(sql).await?;
    }
    Ok(())
}

fn endpoint_name(e: &Endpoint) -> String {
    format!("{}:{}", e.host, e.port)
}

/// A replica server id for this stream's binlog connections: stable (a
/// restarted stream replaces its old connection instead of competing with
/// it) and distinct across streams.
fn server_id_for(spec: &StreamSpec) -> u32 {
    // FNV-1a over what identifies the stream.
    let mut h: u32 = 0x811c_9dc5;
    let key = format!(
        "{}\0{}\0{}:{}",
        spec.workflow, spec.id, spec.target.host, spec.target.port
    );
    for b in key.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    0x4000_0000 | (h & 0x3fff_ffff)
}

async fn run(
    spec: StreamSpec,
    cancel: CancellationToken,
    progress: &watch::Sender<StreamProgress>,
) -> Result<StreamExit, StreamError> {
    let src_name = endpoint_name(&spec.source);
    let tgt_name = endpoint_name(&spec.target);
    let tgt_err = |during: &'static str| {
        let endpoint = tgt_name.clone();
        move |err| StreamError::Target {
            endpoint,
            during,
            err,
        }
    };
    let src_err = |during: &'static str| {
        let endpoint = src_name.clone();
        move |err: VreplError| StreamError::Source {
            endpoint,
            during,
            err,
        }
    };
    let mut target = spec.target.connect().await.map_err(tgt_err("connecting"))?;
    for sql in APPLIER_SESSION_SQL.iter().chain(TARGET_SESSION_SQL) {
        target
            .query_drop(*sql)
            .await
            .map_err(tgt_err("setting up the applier session"))?;
    }
    sidecar::take_stream_lock(&mut target, spec.id)
        .await
        .map_err(tgt_err("taking the stream's applier lock"))?
        .map_err(|detail| StreamError::Busy {
            id: spec.id,
            detail,
        })?;
    sidecar::end_old_workers(&mut target, spec.id)
        .await
        .map_err(tgt_err("ending the copy workers of a previous run"))?
        .map_err(|detail| StreamError::Busy {
            id: spec.id,
            detail,
        })?;
    let names: Vec<String> = spec.tables.iter().map(|t| t.name.clone()).collect();
    let source_desc = format!("{src_name}/{}", spec.source_db);
    let stored =
        sidecar::load_or_create(&mut target, spec.id, &spec.workflow, &source_desc, &names)
            .await
            .map_err(tgt_err("reading stream progress"))?
            .map_err(|detail| StreamError::Progress {
                id: spec.id,
                detail,
            })?;
    let mut source = spec
        .source
        .connect()
        .await
        .map_err(|e| src_err("connecting")(e.into()))?;
    let flavor = for_flavor(
        detect(&mut source)
            .await
            .map_err(src_err("detecting the flavor"))?,
    );
    let applier_id = target.id();
    let mut ctx = Ctx {
        applier_id,
        workers: Vec::new(),
        server_id: server_id_for(&spec),
        spec,
        flavor,
        plans: HashMap::new(),
        order: names,
        target,
        source,
        stored,
        cancel,
        progress,
        last_lag: None,
    };
    ctx.load_plans().await?;
    let copying = ctx.stored.tables.values().any(|t| !t.done);
    if copying && ctx.spec.stop_position.is_some() {
        return Err(StreamError::Progress {
            id: ctx.spec.id,
            detail: "cannot replicate to a stop position: the copy has not finished".into(),
        });
    }
    ctx.publish(if copying {
        StreamState::Copying
    } else {
        StreamState::Running
    });
    if !copying && let Some(g) = &ctx.spec.copy_group {
        // Nobody needs to wait for this stream's copy.
        g.leave(ctx.spec.id);
    }
    if copying {
        ctx.estimate_rows().await?;
        if !copy::run_copy(&mut ctx).await? {
            return Ok(StreamExit::Cancelled);
        }
        if ctx.spec.stop_after_copy {
            ctx.target
                .query_drop(sidecar::state_sql(ctx.spec.id, "stopped", "copy completed"))
                .await
                .map_err(tgt_err("recording the end of the copy"))?;
            return Ok(StreamExit::CopyCompleted);
        }
    }
    let from = match ctx.stored.position.clone() {
        Some(p) => p,
        // No table had anything to copy from (no tables): start now.
        None => {
            let flavor = ctx.flavor.clone();
            flavor
                .current_position(&mut ctx.source)
                .await
                .map_err(src_err("reading the current position"))?
        }
    };
    ctx.commit(Vec::new(), &from, 0, StreamState::Running, &[])
        .await?;
    ctx.last_lag = None;
    ctx.publish(StreamState::Running);
    let stop = ctx.spec.stop_position.clone();
    if let Some(stop) = &stop
        && from.contains(stop)
    {
        if &from != stop {
            return Err(StreamError::Progress {
                id: ctx.spec.id,
                detail: format!("the stream is at {from}, past the stop position {stop}"),
            });
        }
        return Ok(StreamExit::ReachedStop);
    }
    match ctx.replay(from, stop.as_ref(), false).await? {
        Replayed::Cancelled => Ok(StreamExit::Cancelled),
        Replayed::Reached => Ok(StreamExit::ReachedStop),
    }
}

/// How a replay ended.
#[derive(Debug, PartialEq, Eq)]
enum Replayed {
    Reached,
    Cancelled,
}

/// Source transactions applied but not committed yet.
#[derive(Default)]
struct Pending {
    batch: SqlBatch,
    position: Option<Position>,
    txns: u64,
    since: Option<Instant>,
}

impl<'p> Ctx<'p> {
    fn src_err(&self, during: &'static str) -> impl FnOnce(VreplError) -> StreamError + use<> {
        let endpoint = endpoint_name(&self.spec.source);
        move |err| StreamError::Source {
            endpoint,
            during,
            err,
        }
    }

    fn tgt_err(
        &self,
        during: &'static str,
    ) -> impl FnOnce(mysql_async::Error) -> StreamError + use<> {
        let endpoint = endpoint_name(&self.spec.target);
        move |err| StreamError::Target {
            endpoint,
            during,
            err,
        }
    }

    /// (Re)reads every table's columns from the source.
    async fn load_plans(&mut self) -> Result<(), StreamError> {
        let mut plans = HashMap::new();
        for t in &self.spec.tables {
            let plan = TablePlan::load(&mut self.source, &self.spec.source_db, t)
                .await
                .map_err(|e| StreamError::Source {
                    endpoint: endpoint_name(&self.spec.source),
                    during: "reading table definitions",
                    err: e.into(),
                })?
                .map_err(|detail| StreamError::Table {
                    table: t.name.clone(),
                    detail,
                })?;
            plans.insert(t.name.clone(), plan);
        }
        self.plans = plans;
        Ok(())
    }

    /// Source table sizes for progress: the statistics estimate, or an
    /// exact count when the estimate says the table is small.
    async fn estimate_rows(&mut self) -> Result<(), StreamError> {
        let db = self.spec.source_db.clone();
        let mut estimates = HashMap::new();
        for name in self.order.clone() {
            if self.stored.tables.get(&name).is_some_and(|t| t.done) {
                continue;
            }
            let est: Option<Option<u64>> = self
                .source
                .exec_first(
                    "SELECT TABLE_ROWS FROM information_schema.TABLES \
                     WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
                    (&db, &name),
                )
                .await
                .map_err(|e| self.src_err("estimating table sizes")(e.into()))?;
            let mut est = est.flatten().unwrap_or(0);
            if est < 100_000 {
                let count: Option<u64> = self
                    .source
                    .query_first(format!(
                        "SELECT COUNT(*) FROM {}.{}",
                        ident(&db),
                        ident(&name)
                    ))
                    .await
                    .map_err(|e| self.src_err("counting rows")(e.into()))?;
                est = count.unwrap_or(est);
            }
            estimates.insert(name, est);
        }
        self.progress.send_modify(|p| {
            for t in &mut p.tables {
                if let Some(e) = estimates.get(&t.name) {
                    t.estimated_rows = *e;
                }
            }
        });
        Ok(())
    }

    /// Publishes the committed state.
    fn publish(&self, state: StreamState) {
        let stored = &self.stored;
        let order = &self.order;
        let lag = self.last_lag;
        self.progress.send_modify(|p| {
            p.state = state;
            p.position = stored.position.clone();
            p.transactions_applied = stored.transactions_applied;
            p.lag_seconds = if state == StreamState::Running {
                lag
            } else {
                None
            };
            let old = std::mem::take(&mut p.tables);
            p.tables = order
                .iter()
                .map(|name| {
                    let st = stored.tables.get(name).cloned().unwrap_or_default();
                    TableProgress {
                        name: name.clone(),
                        rows_copied: st.rows_copied,
                        rows_scanned: st.rows_scanned,
                        estimated_rows: old
                            .iter()
                            .find(|t| &t.name == name)
                            .map_or(0, |t| t.estimated_rows),
                        done: st.done,
                    }
                })
                .collect();
        });
    }

    /// Commits `body` (chunks of row statements, may be empty) with the
    /// stream's new position and `extra` progress statements in ONE target
    /// transaction, then updates the in-memory mirror. (The copy's
    /// `LOAD DATA` batches commit through `Ctx::commit_load`, which ends
    /// its transaction with the same [`load::commit_tail`].)
    async fn commit(
        &mut self,
        body: Vec<String>,
        position: &Position,
        applied: u64,
        state: StreamState,
        extra: &[String],
    ) -> Result<(), StreamError> {
        let tail = load::commit_tail(self.spec.id, position, applied, state, extra);
        if let Err(e) = commit_rows(&mut self.target, body, tail).await {
            return Err(self.tgt_err("applying a batch")(e));
        }
        self.stored.position = Some(position.clone());
        self.stored.transactions_applied += applied;
        Ok(())
    }

    /// Commits what `pending` holds.
    async fn flush(
        &mut self,
        pending: &mut Pending,
        state: StreamState,
    ) -> Result<(), StreamError> {
        let Some(position) = pending.position.take() else {
            return Ok(());
        };
        let body = pending.batch.take();
        let txns = std::mem::take(&mut pending.txns);
        pending.since = None;
        self.commit(body, &position, txns, state, &[]).await?;
        self.publish(state);
        Ok(())
    }

    /// Replays the binlog from `from`: up to exactly `until` (a catch-up
    /// during the copy when `catch_up`, or a stop position) or until
    /// cancelled (running).
    async fn replay(
        &mut self,
        from: Position,
        until: Option<&Position>,
        catch_up: bool,
    ) -> Result<Replayed, StreamError> {
        let state = if catch_up {
            StreamState::Copying
        } else {
            StreamState::Running
        };
        let filter = TableFilter::tables(self.spec.source_db.clone(), self.order.clone());
        let options = BinlogOptions {
            server_id: self.server_id,
            ..BinlogOptions::default()
        };
        let mut stream = BinlogStream::start_with(
            &self.spec.source,
            self.flavor.clone(),
            from,
            filter,
            options,
        )
        .await
        .map_err(self.src_err("starting the binlog stream"))?;
        let mut pending = Pending::default();
        loop {
            let item = if pending.position.is_some() {
                match stream.next().now_or_never() {
                    Some(item) => item,
                    None => {
                        // Nothing more is ready: commit what we have.
                        self.flush(&mut pending, state).await?;
                        continue;
                    }
                }
            } else {
                tokio::select! {
                    biased;
                    _ = self.cancel.cancelled() => return Ok(Replayed::Cancelled),
                    item = stream.next() => item,
                }
            };
            let event = match item {
                None => return Err(self.src_err("reading the binlog")(VreplError::StreamEnded)),
                Some(Err(e)) => return Err(self.src_err("reading the binlog")(e)),
                Some(Ok(ev)) => ev,
            };
            match event {
                Event::Heartbeat { .. } => {
                    self.last_lag = Some(0);
                    if pending.position.is_some() {
                        self.flush(&mut pending, state).await?;
                    } else {
                        self.publish(state);
                    }
                }
                Event::Transaction {
                    position_after,
                    timestamp,
                    changes,
                    ..
                } => {
                    self.render(changes, catch_up, &mut pending.batch).await?;
                    self.note(&mut pending, position_after, timestamp, true);
                }
                Event::Other {
                    position_after,
                    timestamp,
                    ..
                } => self.note(&mut pending, position_after, timestamp, false),
                Event::Ddl {
                    position_after,
                    db,
                    sql,
                    timestamp,
                    ..
                } => {
                    if ddl_concerns(&db, &sql, &self.spec.source_db, &self.order) {
                        self.flush(&mut pending, state).await?;
                        self.ddl(&sql, &position_after, state).await?;
                    } else {
                        self.note(&mut pending, position_after, timestamp, false);
                    }
                }
            }
            // A catch-up ends exactly at the snapshot's position: GTID
            // positions advance one transaction at a time, so passing it
            // without meeting it means the snapshot position was not exact.
            if let (Some(until), Some(pos)) = (
                until,
                pending.position.as_ref().or(self.stored.position.as_ref()),
            ) && pos.contains(until)
            {
                if pos != until {
                    return Err(StreamError::Progress {
                        id: self.spec.id,
                        detail: format!(
                            "replay passed the position {until} it had to stop at (at {pos})"
                        ),
                    });
                }
                self.flush(&mut pending, state).await?;
                return Ok(Replayed::Reached);
            }
            let full = pending.batch.len() >= apply::MAX_BATCH_BYTES
                || pending.txns as usize >= MAX_TXNS_PER_COMMIT
                || pending
                    .since
                    .is_some_and(|s| s.elapsed() >= MAX_COMMIT_DELAY);
            if full {
                self.flush(&mut pending, state).await?;
            }
            if self.cancel.is_cancelled() {
                return Ok(Replayed::Cancelled);
            }
        }
    }

    /// Records an event's position (and lag) in `pending`.
    fn note(&mut self, pending: &mut Pending, position: Position, timestamp: u32, txn: bool) {
        pending.position = Some(position);
        if txn {
            pending.txns += 1;
        }
        pending.since.get_or_insert_with(Instant::now);
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        self.last_lag = Some(now.saturating_sub(u64::from(timestamp)));
    }

    /// Handles a DDL on the workflow's tables per `on_ddl`; `pending` is
    /// already committed.
    async fn ddl(
        &mut self,
        sql: &str,
        position: &Position,
        state: StreamState,
    ) -> Result<(), StreamError> {
        match self.spec.on_ddl {
            OnDdl::Ignore => {}
            OnDdl::Stop => {
                // As Vitess: positioned after the statement, so that once
                // an operator has applied it the stream continues.
                let message = format!("stopped at DDL: {sql}");
                self.commit(Vec::new(), position, 0, StreamState::Stopped, &[])
                    .await?;
                let _ = self
                    .target
                    .query_drop(sidecar::state_sql(self.spec.id, "stopped", &message))
                    .await;
                return Err(StreamError::StoppedAtDdl {
                    sql: sql.to_string(),
                });
            }
            OnDdl::Exec | OnDdl::ExecIgnore => {
                let r = async {
                    self.target
                        .query_drop(format!("USE {}", ident(&self.spec.target_db)))
                        .await?;
                    self.target.query_drop(sql).await
                }
                .await;
                if let Err(err) = r {
                    let lost = !matches!(err, mysql_async::Error::Server(_));
                    if lost {
                        return Err(self.tgt_err("executing a DDL")(err));
                    }
                    if self.spec.on_ddl == OnDdl::Exec {
                        return Err(StreamError::DdlFailed {
                            sql: sql.to_string(),
                            err,
                        });
                    }
                    tracing::warn!(stream = self.spec.id, %sql, %err, "DDL failed on the target; ignored (on_ddl=exec_ignore)");
                }
                self.load_plans().await?;
            }
        }
        self.commit(Vec::new(), position, 0, state, &[]).await
    }

    /// Renders a source transaction's changes into `batch`. During a
    /// catch-up (`catch_up`) only what the copy invariant allows is kept
    /// (see the module doc).
    async fn render(
        &mut self,
        changes: Vec<RowChange>,
        catch_up: bool,
        batch: &mut SqlBatch,
    ) -> Result<(), StreamError> {
        // (table, op, last key the op's new key must not exceed)
        let mut ops: Vec<(&TablePlan, Op, Option<&Vec<String>>)> = Vec::new();
        for ch in &changes {
            let Some(plan) = self.plans.get(&*ch.table) else {
                continue;
            };
            let table_ops =
                ops_for(plan, &self.spec.key_range, ch).map_err(|detail| StreamError::Row {
                    table: plan.name.clone(),
                    detail,
                })?;
            let st = self.stored.tables.get(&plan.name);
            let copying = catch_up && !st.is_some_and(|s| s.done);
            if !copying {
                ops.extend(table_ops.into_iter().map(|op| (plan, op, None)));
                continue;
            }
            let Some(last) = st.and_then(|s| s.last_pk.as_ref()) else {
                // Not started: the copy will read its rows as they are.
                continue;
            };
            for op in table_ops {
                match op {
                    Op::Update { key, row } if key_of(plan, &row).as_ref() != Some(&key) => {
                        ops.push((plan, Op::Delete { key }, None));
                        ops.push((
                            plan,
                            Op::Insert {
                                row,
                                replace: false,
                            },
                            Some(last),
                        ));
                    }
                    Op::Insert { .. } => ops.push((plan, op, Some(last))),
                    op => ops.push((plan, op, None)),
                }
            }
        }
        let mut keep = vec![true; ops.len()];
        let conds: Vec<(usize, String)> = ops
            .iter()
            .enumerate()
            .filter_map(|(i, (plan, op, last))| {
                let last = (*last)?;
                let key = op.new_key(plan)?;
                let lits: Vec<String> = plan
                    .pk_columns()
                    .zip(&key)
                    .map(|(c, v)| c.cmp_literal(v))
                    .collect();
                Some((i, format!("NOT {}", tuple_gt(&lits, last))))
            })
            .collect();
        if !conds.is_empty() {
            let sql = format!(
                "SELECT {}",
                conds
                    .iter()
                    .map(|(_, c)| c.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            );
            let row: Option<mysql_async::Row> = self
                .target
                .query_first(sql)
                .await
                .map_err(self.tgt_err("comparing keys with the copy's last key"))?;
            let Some(row) = row else {
                return Err(self.tgt_err("comparing keys")(mysql_async::Error::Driver(
                    mysql_async::DriverError::UnexpectedPacket {
                        payload: Vec::new(),
                    },
                )));
            };
            for (n, (i, _)) in conds.iter().enumerate() {
                let v: Option<i64> = row.get(n).flatten();
                keep[*i] = v == Some(1);
            }
        }
        let db = &self.spec.target_db;
        for ((plan, op, _), keep) in ops.iter().zip(keep) {
            if keep {
                batch.op(db, plan, op);
            }
        }
        Ok(())
    }
}

/// Whether a DDL statement concerns the workflow's tables: it names one of
/// them (as a whole identifier, any case) and runs in, or names, the source
/// database. A statement about other tables passes silently whatever
/// `on_ddl` says.
fn ddl_concerns(default_db: &str, sql: &str, source_db: &str, tables: &[String]) -> bool {
    let words: Vec<String> = sql
        .split(|c: char| !(c.is_alphanumeric() || c == '_' || c == '$'))
        .filter(|w| !w.is_empty())
        .map(|w| w.to_lowercase())
        .collect();
    let has = |name: &str| words.iter().any(|w| *w == name.to_lowercase());
    (default_db == source_db || has(source_db)) && tables.iter().any(|t| has(t))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ddl_relevance() {
        let t = vec!["orders".to_string()];
        assert!(ddl_concerns(
            "app",
            "ALTER TABLE `orders` ADD x INT",
            "app",
            &t
        ));
        assert!(ddl_concerns(
            "",
            "alter table app.orders add x int",
            "app",
            &t
        ));
        assert!(!ddl_concerns(
            "app",
            "CREATE TABLE other (id INT)",
            "app",
            &t
        ));
        assert!(!ddl_concerns(
            "other",
            "ALTER TABLE orders ADD x INT",
            "app",
            &t
        ));
    }

    #[test]
    fn transient_errors() {
        let e = StreamError::Source {
            endpoint: "h:1".into(),
            during: "x",
            err: VreplError::StreamEnded,
        };
        assert!(e.is_transient());
        assert!(!StreamError::StoppedAtDdl { sql: "x".into() }.is_transient());
        assert!(transient_server_code(1213));
        assert!(!transient_server_code(1062));
    }

    #[test]
    fn progress_percent() {
        let mut t = TableProgress {
            estimated_rows: 200,
            rows_scanned: 50,
            ..TableProgress::default()
        };
        assert_eq!(t.percent(), 25.0);
        t.done = true;
        assert_eq!(t.percent(), 100.0);
    }
}
