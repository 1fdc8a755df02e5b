//! The copy phase: bounded snapshot cycles with a binlog catch-up between
//! them (algorithm and invariant in the parent module's doc).
//!
//! Each batch of rows read from the snapshot is written to the target with
//! `LOAD DATA LOCAL INFILE` (module `load`: it costs the target about a
//! tenth less CPU than INSERTs, and the target's CPU is most of the copy's
//! cost), in the same transaction as the table's progress and the stream
//! position. A target that refuses local loads gets multi-row INSERTs
//! instead, from the refused batch on, for the rest of the stream's life.
//! While one batch is written the next is read from the source; at most
//! those two batches are held.

use std::time::Instant;

use keyshift_types::Position;
use mysql_async::prelude::Queryable;

use std::sync::Arc;

use crate::error::VreplError;
use crate::snapshot::{Snapshot, consistent_snapshot};

use crate::value::Value;

use super::apply::MAX_CHUNK_BYTES;
use super::group::{CopyGroup, HubError, HubSource, JoinRequest, Joined, SharedBatch, SharedCycle};
use super::keyfilter::keyspace_id;
use super::load::{LoadBatch, LoadWriter, Written, load_and_commit, load_statement};
use super::schema::{TablePlan, ident, tuple_gt};
use super::sidecar::MAX_COPY_WORKERS;
use super::sidecar::{TableState, copy_state_sql};
use super::{Ctx, Replayed, StreamError, StreamState};
use super::{TARGET_SESSION_SQL, sidecar};
use crate::value::APPLIER_SESSION_SQL;
use mysql_async::Conn;

/// Session settings of the snapshot reader: TIMESTAMPs as UTC wall clock
/// (what the applier writes back under UTC), and character data as the
/// bytes stored, in whatever character set the column has.
const SNAPSHOT_SESSION_SQL: &[&str] = &[
    "SET SESSION time_zone = '+00:00'",
    "SET SESSION character_set_results = binary",
];

/// Copies every table not yet done. `Ok(false)`: cancelled.
pub(super) async fn run_copy(ctx: &mut Ctx<'_>) -> Result<bool, StreamError> {
    // Whether batches go as LOAD DATA (until the target refuses it).
    let mut load = true;
    // Leaves the copy group however the copy ends, so that nobody waits
    // for this stream.
    let group = ctx.spec.copy_group.clone();
    let _leave = group.as_ref().map(|g| LeaveOnDrop(g, ctx.spec.id));
    // Copy alone for the rest of the run (see `group`).
    let mut alone = group.is_none();
    loop {
        let Some(first) = next_table(ctx) else {
            return Ok(true);
        };
        if let (false, true, Some(g)) = (alone, load, &group) {
            match shared_cycle(ctx, g, first).await? {
                Shared::CycleOver => continue,
                Shared::Cancelled => return Ok(false),
                Shared::Alone => {
                    alone = true;
                    continue;
                }
                Shared::Refused => {
                    load = false;
                    alone = true;
                    continue;
                }
            }
        }
        let mut snap = match open_snapshot(&ctx.spec.source, &*ctx.flavor).await {
            Ok(s) => s,
            Err((during, e)) => return Err(ctx.src_err(during)(e)),
        };
        let deadline = Instant::now() + ctx.spec.copy_cycle;
        ctx.progress.send_modify(|p| p.copy_cycles += 1);
        let p = snap.position().clone();
        tracing::debug!(stream = ctx.spec.id, position = %p, table = %first, "copy snapshot opened");
        if !catch_up(ctx, &p, &first).await? {
            return Ok(false);
        }
        ctx.publish(StreamState::Copying);
        let workers = ctx.spec.copy_parallel_tables.min(MAX_COPY_WORKERS);
        if load && workers > 1 && ctx.order.iter().filter(|t| !table_done(ctx, t)).count() > 1 {
            match copy_in_parallel(ctx, &mut snap, &p, deadline, workers).await? {
                Parallel::CycleOver => {
                    let _ = snap.finish().await;
                    continue;
                }
                Parallel::Cancelled => return Ok(false),
                // The rest of the cycle one table at a time, with INSERTs.
                Parallel::Refused => load = false,
            }
        }
        while let Some(table) = next_table(ctx) {
            match copy_table(ctx, &mut snap, &table, &p, deadline, &mut load).await? {
                TableCopy::Done => continue,
                TableCopy::CycleOver => break,
                TableCopy::Cancelled => return Ok(false),
            }
        }
        // Ending the snapshot only releases it on the source; a failure
        // here loses nothing.
        let _ = snap.finish().await;
    }
}

/// A consistent snapshot of `source` for the copy, in the session the
/// rows are read with; on failure, what was being done.
pub(super) async fn open_snapshot(
    source: &keyshift_tablet::Endpoint,
    flavor: &dyn crate::flavor::ServerFlavor,
) -> Result<Snapshot, (&'static str, VreplError)> {
    let mut conn = source
        .connect()
        .await
        .map_err(|e| ("connecting for a snapshot", e.into()))?;
    for sql in SNAPSHOT_SESSION_SQL {
        conn.query_drop(*sql)
            .await
            .map_err(|e| ("setting up the snapshot session", e.into()))?;
    }
    consistent_snapshot(conn, flavor)
        .await
        .map_err(|e| ("opening a consistent snapshot", e))
}

struct LeaveOnDrop<'g>(&'g Arc<CopyGroup>, u64);

impl Drop for LeaveOnDrop<'_> {
    fn drop(&mut self) {
        self.0.leave(self.1);
    }
}

/// Step 2 of the parent module: brings the target from its committed
/// position to the snapshot's `p`. `Ok(false)`: cancelled.
async fn catch_up(ctx: &mut Ctx<'_>, p: &Position, table: &str) -> Result<bool, StreamError> {
    let Some(q) = ctx.stored.position.clone() else {
        return Ok(true);
    };
    if &q == p {
        return Ok(true);
    }
    if !p.contains(&q) {
        return Err(StreamError::SourceBehind {
            source_pos: p.to_string(),
            committed: q.to_string(),
        });
    }
    tracing::debug!(stream = ctx.spec.id, from = %q, to = %p, table, "copy catch-up");
    if ctx.replay(q, Some(p), true).await? == Replayed::Cancelled {
        return Ok(false);
    }
    // A DDL during the catch-up may have changed the tables.
    ctx.load_plans().await?;
    Ok(true)
}

/// How a member's shared cycle ended.
enum Shared {
    CycleOver,
    Cancelled,
    /// Copy alone from now on (nobody to share with, or out of step).
    Alone,
    /// The target refuses `LOAD DATA`: copy alone, with INSERTs.
    Refused,
}

/// One copy cycle with the other streams of the source shard (module
/// `group`): the hub's snapshot, this stream's own catch-up to its
/// position, then the hub's batches, each committed as alone.
async fn shared_cycle(
    ctx: &mut Ctx<'_>,
    group: &CopyGroup,
    first: String,
) -> Result<Shared, StreamError> {
    let last_pk = ctx
        .stored
        .tables
        .get(&first)
        .and_then(|t| t.last_pk.clone());
    let req = JoinRequest {
        id: ctx.spec.id,
        table: first.clone(),
        last_pk,
        range: ctx.spec.key_range.clone(),
        target_db: ctx.spec.target_db.clone(),
        source: HubSource {
            endpoint: ctx.spec.source.clone(),
            db: ctx.spec.source_db.clone(),
            flavor: ctx.flavor.clone(),
            tables: ctx.spec.tables.clone(),
            batch_rows: ctx.spec.copy_batch_rows,
            cycle: ctx.spec.copy_cycle,
        },
    };
    let cycle = match group.join(req, &ctx.cancel).await {
        Joined::Shared(c) => c,
        Joined::Alone => return Ok(Shared::Alone),
        Joined::Cancelled => return Ok(Shared::Cancelled),
    };
    let SharedCycle {
        position,
        ready,
        mut batches,
    } = cycle;
    let hub_err = |ctx: &Ctx<'_>, e: HubError| match e.row_table {
        Some(table) => StreamError::Row {
            table,
            detail: e.detail,
        },
        None => ctx.src_err(e.during)(VreplError::Shared {
            detail: e.detail,
            transient: e.transient,
        }),
    };
    let p = match position.await {
        Ok(Ok(p)) => p,
        Ok(Err(e)) => return Err(hub_err(ctx, e)),
        // The hub is gone without a word: carry on alone.
        Err(_) => return Ok(Shared::Alone),
    };
    ctx.progress.send_modify(|x| {
        x.copy_cycles += 1;
        x.shared_copy_cycles += 1;
    });
    tracing::debug!(stream = ctx.spec.id, position = %p, table = %first, "shared copy snapshot");
    if !catch_up(ctx, &p, &first).await? {
        return Ok(Shared::Cancelled);
    }
    ctx.publish(StreamState::Copying);
    if ready.send(()).is_err() {
        return Ok(Shared::Alone);
    }
    loop {
        let msg = tokio::select! {
            _ = ctx.cancel.cancelled() => return Ok(Shared::Cancelled),
            m = batches.recv() => m,
        };
        let Some(msg) = msg else {
            return Ok(Shared::CycleOver);
        };
        let SharedBatch { table, from, batch } = msg.map_err(|e| hub_err(ctx, e))?;
        let state = ctx.stored.tables.get(&table).cloned().unwrap_or_default();
        if state.done || state.last_pk != from {
            tracing::warn!(
                stream = ctx.spec.id,
                table,
                "out of step with the shared copy; copying alone from now on"
            );
            return Ok(Shared::Alone);
        }
        let started = Instant::now();
        match commit_batch(ctx, &table, batch, &p, &state).await? {
            Some(next) => tracing::debug!(
                stream = ctx.spec.id,
                table,
                position = %p,
                last_pk = ?next.last_pk,
                done = next.done,
                write_ms = started.elapsed().as_secs_f64() * 1e3,
                "shared copy batch committed"
            ),
            None => return Ok(Shared::Refused),
        }
    }
}

/// Commits `batch` (read from the snapshot at `p`, continuing `state`):
/// its rows, the table's progress and the position in one target
/// transaction. `None`: the target refused `LOAD DATA`, nothing written.
async fn commit_batch(
    ctx: &mut Ctx<'_>,
    table: &str,
    batch: ReadBatch,
    p: &Position,
    state: &TableState,
) -> Result<Option<TableState>, StreamError> {
    let next = state.after(&batch);
    let progress_sql = copy_state_sql(ctx.spec.id, table, &next);
    if let Written::Refused(err) = write_batch(ctx, table, batch.rows, p, &progress_sql).await? {
        tracing::warn!(
            stream = ctx.spec.id,
            table,
            %err,
            "the target refuses LOAD DATA LOCAL INFILE; this stream copies with INSERT statements from now on"
        );
        return Ok(None);
    }
    ctx.stored.tables.insert(table.to_string(), next.clone());
    ctx.publish(StreamState::Copying);
    Ok(Some(next))
}

fn table_done(ctx: &Ctx<'_>, table: &str) -> bool {
    ctx.stored.tables.get(table).is_some_and(|t| t.done)
}

/// How a cycle of parallel tables ended.
enum Parallel {
    /// Time is up, or every table is copied.
    CycleOver,
    Cancelled,
    /// A worker's target refused `LOAD DATA`; nothing of that batch was
    /// written and the other workers finished theirs.
    Refused,
}

/// One table being copied by a worker in [`copy_in_parallel`].
struct Slot {
    table: String,
    /// Committed progress of the table (the base of the next commit).
    state: TableState,
    /// Where the reads are: the key of the last row read, and whether the
    /// table has no more rows.
    read_pk: Option<Vec<String>>,
    read_end: bool,
    /// Read, waiting for the batch in flight to commit.
    pending: Option<ReadBatch>,
    in_flight: bool,
}

/// What a worker's commit sends back.
type WorkerDone = (usize, Conn, Result<Option<TableState>, StreamError>);

/// The copy of a cycle with up to `workers` tables at once (parent module,
/// step 3: all batches come from the one snapshot at `p`, so each table's
/// invariant holds on its own and their commits need no order). Batches
/// are read one at a time from the snapshot; each table has one batch
/// committing on its worker's session and the next one read ahead. The
/// position `p` is committed once first, so that the workers' transactions
/// carry only their table's rows and progress.
async fn copy_in_parallel(
    ctx: &mut Ctx<'_>,
    snap: &mut Snapshot,
    p: &Position,
    deadline: Instant,
    workers: usize,
) -> Result<Parallel, StreamError> {
    if ctx.stored.position.as_ref() != Some(p) {
        ctx.commit(Vec::new(), p, 0, StreamState::Copying, &[])
            .await?;
    }
    while ctx.workers.len() < workers {
        let k = ctx.workers.len();
        let conn = open_worker(ctx, k).await?;
        ctx.workers.push(conn);
    }
    let mut free: Vec<Conn> = ctx.workers.drain(..).collect();
    let endpoint = super::endpoint_name(&ctx.spec.target);
    let mut queue: std::collections::VecDeque<String> = ctx
        .order
        .iter()
        .filter(|t| !table_done(ctx, t))
        .cloned()
        .collect();
    let mut slots: Vec<Option<Slot>> = (0..workers).map(|_| None).collect();
    let mut commits: tokio::task::JoinSet<WorkerDone> = tokio::task::JoinSet::new();
    let mut refused = false;
    let end = loop {
        if ctx.cancel.is_cancelled() {
            break Parallel::Cancelled;
        }
        let open = Instant::now() < deadline && !refused;
        // Give free slots a table.
        for slot in slots.iter_mut().filter(|s| s.is_none() && open) {
            let Some(table) = queue.pop_front() else {
                break;
            };
            let state = ctx.stored.tables.get(&table).cloned().unwrap_or_default();
            *slot = Some(Slot {
                read_pk: state.last_pk.clone(),
                table,
                state,
                read_end: false,
                pending: None,
                in_flight: false,
            });
        }
        // Start a commit wherever a batch waits and the table has none in
        // flight.
        for (i, slot) in slots.iter_mut().enumerate() {
            let Some(s) = slot else { continue };
            if s.in_flight {
                continue;
            }
            let Some(batch) = s.pending.take() else {
                continue;
            };
            let Some(conn) = free.pop() else {
                s.pending = Some(batch);
                break;
            };
            s.in_flight = true;
            commits.spawn(worker_commit(
                i,
                conn,
                endpoint.clone(),
                ctx.spec.id,
                s.table.clone(),
                batch,
                s.state.clone(),
            ));
        }
        // Read ahead for one table that has nothing waiting (the one
        // whose commit is oldest first would be fairer; in slot order is
        // simple and keeps every worker fed).
        let next_read = slots.iter().position(|s| {
            s.as_ref()
                .is_some_and(|s| s.pending.is_none() && !s.read_end)
        });
        match next_read {
            Some(i) if open => {
                let s = slots[i].as_mut().expect("slot chosen above");
                let batch = read_table_batch(ctx, snap, &s.table, s.read_pk.as_ref()).await?;
                s.read_pk = batch.last_pk.clone();
                s.read_end = batch.end;
                s.pending = Some(batch);
                continue;
            }
            _ => {}
        }
        // Nothing to read: wait for a commit.
        let Some(done) = commits.join_next().await else {
            // Nothing in flight either: the cycle is over (time, or every
            // table copied, or a refusal once the others finished).
            break if refused {
                Parallel::Refused
            } else {
                Parallel::CycleOver
            };
        };
        let (i, conn, result) = done.map_err(|e| StreamError::Progress {
            id: ctx.spec.id,
            detail: format!("a copy worker failed: {e}"),
        })?;
        free.push(conn);
        let Some(s) = slots[i].as_mut() else { continue };
        s.in_flight = false;
        match result? {
            Some(next) => {
                ctx.stored.tables.insert(s.table.clone(), next.clone());
                ctx.publish(StreamState::Copying);
                s.state = next;
                if s.state.done {
                    slots[i] = None;
                }
            }
            None => {
                tracing::warn!(
                    stream = ctx.spec.id,
                    table = %s.table,
                    "the target refuses LOAD DATA LOCAL INFILE; this stream copies with INSERT statements from now on"
                );
                refused = true;
            }
        }
        if refused || Instant::now() >= deadline {
            // Read-ahead batches are dropped; they are read again from
            // the committed progress.
            for s in slots.iter_mut().flatten() {
                s.pending = None;
                s.read_end = true;
            }
        }
    };
    // Cancelled: dropping the set ends the commits in flight (their
    // sessions close, rolling back); the sessions are opened again.
    ctx.workers = free;
    Ok(end)
}

/// A worker session: the applier's settings and worker lock `k`.
async fn open_worker(ctx: &Ctx<'_>, k: usize) -> Result<Conn, StreamError> {
    let mut conn = ctx
        .spec
        .target
        .connect()
        .await
        .map_err(ctx.tgt_err("connecting a copy worker"))?;
    for sql in APPLIER_SESSION_SQL.iter().chain(TARGET_SESSION_SQL) {
        conn.query_drop(*sql)
            .await
            .map_err(ctx.tgt_err("setting up a copy worker's session"))?;
    }
    tracing::debug!(
        stream = ctx.spec.id,
        k,
        conn = conn.id(),
        "opening copy worker"
    );
    sidecar::take_worker_lock(&mut conn, ctx.spec.id, k, ctx.applier_id)
        .await
        .map_err(ctx.tgt_err("taking a copy worker's lock"))?
        .map_err(|detail| StreamError::Busy {
            id: ctx.spec.id,
            detail,
        })?;
    Ok(conn)
}

/// The next batch of `table` after `last_pk`, for its own target (as
/// `LOAD DATA` text).
async fn read_table_batch(
    ctx: &Ctx<'_>,
    snap: &mut Snapshot,
    table: &str,
    last_pk: Option<&Vec<String>>,
) -> Result<ReadBatch, StreamError> {
    let Some(plan) = ctx.plans.get(table) else {
        return Err(StreamError::Table {
            table: table.to_string(),
            detail: "no plan for the table".into(),
        });
    };
    let q = BatchQuery {
        plan,
        source_db: &ctx.spec.source_db,
        limit: ctx.spec.copy_batch_rows.max(1),
    };
    let out = BatchOut {
        range: &ctx.spec.key_range,
        target_db: &ctx.spec.target_db,
        load_sql: load_statement(&ctx.spec.target_db, plan),
    };
    read_batch(snap, &q, out, last_pk)
        .await
        .map_err(|e| ctx.src_err("reading rows from the snapshot")(e.into()))?
        .map_err(|detail| StreamError::Row {
            table: table.to_string(),
            detail,
        })
}

/// Commits one batch on a worker session: its rows and the table's
/// progress in one transaction (the position is already committed).
async fn worker_commit(
    slot: usize,
    mut conn: Conn,
    endpoint: String,
    id: u64,
    table: String,
    batch: ReadBatch,
    state: TableState,
) -> WorkerDone {
    let next = state.after(&batch);
    let tail = format!("{};\nCOMMIT", copy_state_sql(id, &table, &next));
    let r = match batch.rows {
        BatchRows::Load(load) if load.rows > 0 => {
            load_and_commit(&mut conn, &endpoint, &table, load, tail).await
        }
        rows => {
            let body = match rows {
                BatchRows::Insert(body) => body,
                // No row in this target's range: the progress alone.
                BatchRows::Load(_) => Vec::new(),
            };
            super::commit_rows(&mut conn, body, tail)
                .await
                .map(|()| Written::Committed)
                .map_err(|err| StreamError::Target {
                    endpoint: endpoint.clone(),
                    during: "committing copied rows",
                    err,
                })
        }
    };
    let r = r.map(|w| match w {
        Written::Committed => Some(next),
        Written::Refused(_) => None,
    });
    (slot, conn, r)
}

fn next_table(ctx: &Ctx<'_>) -> Option<String> {
    ctx.order
        .iter()
        .find(|n| ctx.stored.tables.get(*n).is_none_or(|t| !t.done))
        .cloned()
}

enum TableCopy {
    Done,
    CycleOver,
    Cancelled,
}

/// A batch read from the snapshot, converted.
pub(super) struct ReadBatch {
    /// The rows in the key range, in key order.
    rows: BatchRows,
    in_range: u64,
    scanned: u64,
    pub(super) last_pk: Option<Vec<String>>,
    /// Fewer rows than asked: the table has no more.
    pub(super) end: bool,
}

/// The rows of a batch, in the form the target is sent.
pub(super) enum BatchRows {
    /// Multi-row INSERT statements (chunks of at most about
    /// [`MAX_CHUNK_BYTES`]).
    Insert(Vec<String>),
    Load(LoadBatch),
}

impl TableState {
    /// The table's progress once `batch` (read after this progress) is
    /// committed.
    fn after(&self, batch: &ReadBatch) -> TableState {
        TableState {
            last_pk: batch.last_pk.clone(),
            done: batch.end,
            rows_copied: self.rows_copied + batch.in_range,
            rows_scanned: self.rows_scanned + batch.scanned,
        }
    }
}

/// Renders a batch, in either form.
enum RowWriter {
    Insert(InsertWriter),
    /// With the table's `LOAD DATA` statement.
    Load(LoadWriter, String),
}

impl RowWriter {
    fn row(&mut self, values: &[Value]) {
        match self {
            RowWriter::Insert(w) => w.row(values),
            RowWriter::Load(w, _) => w.row(values),
        }
    }

    fn finish(self) -> BatchRows {
        match self {
            RowWriter::Insert(w) => BatchRows::Insert(w.finish()),
            RowWriter::Load(w, sql) => BatchRows::Load(w.finish(sql)),
        }
    }
}

/// Renders copied rows as multi-row INSERTs, for targets that refuse
/// `LOAD DATA LOCAL`. What [`SqlBatch::insert`] writes for each row, but
/// with the statement prefix and the writable columns worked out once per
/// batch instead of once per row.
///
/// Character data stays a hex literal. `_binary'...'` strings (half the
/// bytes) were tried: the node spent a little less, but the targets spent
/// about 25% more CPU per row (not profiled further; likely the lexer's
/// per-byte character-set checks in quoted strings), a net loss.
///
/// [`SqlBatch::insert`]: super::apply::SqlBatch
struct InsertWriter {
    /// `INSERT INTO db.t (cols) VALUES `
    prefix: String,
    /// Per column of the plan: whether it is written (not generated).
    writable: Vec<bool>,
    done: Vec<String>,
    sql: String,
}

impl InsertWriter {
    fn new(target_db: &str, plan: &TablePlan) -> Self {
        let mut prefix = format!("INSERT INTO {}.{} (", ident(target_db), ident(&plan.name));
        let writable: Vec<bool> = plan.columns.iter().map(|c| !c.generated).collect();
        let mut first = true;
        for c in plan.columns.iter().filter(|c| !c.generated) {
            if !first {
                prefix.push(',');
            }
            first = false;
            prefix.push_str(&ident(&c.name));
        }
        prefix.push_str(") VALUES ");
        InsertWriter {
            prefix,
            writable,
            done: Vec::new(),
            sql: String::new(),
        }
    }

    /// Appends one row (all of the plan's columns, in order).
    fn row(&mut self, values: &[Value]) {
        if self.sql.len() >= MAX_CHUNK_BYTES {
            self.done.push(std::mem::take(&mut self.sql));
        }
        if self.sql.is_empty() {
            // Room for a typical batch chunk without regrowing.
            self.sql.reserve(MAX_CHUNK_BYTES / 4);
            self.sql.push_str(&self.prefix);
        } else {
            self.sql.push(',');
        }
        self.sql.push('(');
        let mut first = true;
        for (v, _) in values.iter().zip(&self.writable).filter(|(_, w)| **w) {
            if !first {
                self.sql.push(',');
            }
            first = false;
            v.write_sql_literal(&mut self.sql);
        }
        self.sql.push(')');
    }

    fn finish(mut self) -> Vec<String> {
        if !self.sql.is_empty() {
            self.done.push(self.sql);
        }
        self.done
    }
}

/// What every batch of one table's copy reads and how it renders them.
pub(super) struct BatchQuery<'a> {
    pub(super) plan: &'a TablePlan,
    pub(super) source_db: &'a str,
    pub(super) limit: usize,
}

/// One target's share of a batch: the rows in its key range, rendered for
/// its database.
pub(super) struct BatchOut<'a> {
    pub(super) range: &'a keyshift_types::KeyRange,
    pub(super) target_db: &'a str,
    /// The table's `LOAD DATA` statement for this target; `None`: INSERTs
    /// (the target refuses local loads, or the table has no writable
    /// column).
    pub(super) load_sql: Option<String>,
}

/// Reads the next batch of up to `q.limit` rows after `last_pk` and
/// renders those in the key range: as `LOAD DATA` text when `load` (and
/// the table has a statement), else as INSERTs.
async fn read_batch(
    snap: &mut Snapshot,
    q: &BatchQuery<'_>,
    out: BatchOut<'_>,
    last_pk: Option<&Vec<String>>,
) -> Result<Result<ReadBatch, String>, mysql_async::Error> {
    Ok(read_batches(snap, q, std::slice::from_ref(&out), last_pk)
        .await?
        .map(|mut v| v.remove(0)))
}

/// [`read_batch`] for several targets at once (the streams of one source
/// shard copying together, see `group`): the rows are read, decoded and
/// mapped to keyspace ids once, and each target gets the ones in its range.
pub(super) async fn read_batches(
    snap: &mut Snapshot,
    q: &BatchQuery<'_>,
    outs: &[BatchOut<'_>],
    last_pk: Option<&Vec<String>>,
) -> Result<Result<Vec<ReadBatch>, String>, mysql_async::Error> {
    let BatchQuery {
        plan,
        source_db,
        limit,
    } = *q;
    let mut sql = format!(
        "SELECT {} FROM {}.{}",
        plan.select_list(),
        ident(source_db),
        ident(&plan.name)
    );
    if let Some(last) = last_pk {
        let cols: Vec<String> = plan.pk_columns().map(|c| ident(&c.name)).collect();
        sql.push_str(" WHERE ");
        sql.push_str(&tuple_gt(&cols, last));
    }
    sql.push_str(&format!(" ORDER BY {} LIMIT {limit}", plan.order_by()));
    // The binary protocol: FLOAT/DOUBLE arrive as their exact bits.
    let rows: Vec<mysql_async::Row> = snap.conn().exec(sql, ()).await?;
    let scanned = rows.len() as u64;
    let end = rows.len() < limit;
    let vcol = plan.vindex.as_ref().map(|(i, _)| *i);
    let mut writers: Vec<RowWriter> = outs
        .iter()
        .map(|o| match &o.load_sql {
            Some(sql) => RowWriter::Load(LoadWriter::new(plan), sql.clone()),
            None => RowWriter::Insert(InsertWriter::new(o.target_db, plan)),
        })
        .collect();
    let mut in_range = vec![0u64; outs.len()];
    // Which targets take the current row.
    let mut takers = vec![false; outs.len()];
    // One row's values, reused. A row outside every key range (half of
    // them or more with several target shards) is decoded only as far as
    // its vindex column.
    let mut values: Vec<Value> = Vec::with_capacity(plan.columns.len());
    // The key columns of the last row read, as they came.
    let last_key: Option<Vec<Option<mysql_async::Value>>> = rows
        .last()
        .map(|r| plan.pk.iter().map(|&k| r.as_ref(k).cloned()).collect());
    for row in rows {
        let mut raw = row.unwrap_raw();
        if raw.len() != plan.columns.len() {
            return Ok(Err(format!(
                "the snapshot returned {} columns, expected {}",
                raw.len(),
                plan.columns.len()
            )));
        }
        let ksid = match vcol {
            None => None,
            Some(i) => {
                let v = match decode(plan, i, raw[i].clone()) {
                    Ok(v) => v,
                    Err(e) => return Ok(Err(e)),
                };
                match keyspace_id(plan, Some(&v)) {
                    Ok(k) => k,
                    Err(e) => return Ok(Err(e)),
                }
            }
        };
        let mut any = false;
        for (t, o) in takers.iter_mut().zip(outs) {
            *t = ksid.as_ref().is_none_or(|k| o.range.contains(k.as_bytes()));
            any |= *t;
        }
        if !any {
            continue;
        }
        values.clear();
        for (i, v) in raw.iter_mut().enumerate() {
            match decode(plan, i, v.take()) {
                Ok(v) => values.push(v),
                Err(e) => return Ok(Err(e)),
            }
        }
        for ((w, n), _) in writers
            .iter_mut()
            .zip(in_range.iter_mut())
            .zip(&takers)
            .filter(|(_, t)| **t)
        {
            w.row(&values);
            *n += 1;
        }
    }
    let mut last = last_pk.cloned();
    if let Some(raw) = last_key {
        let mut key = Vec::with_capacity(plan.pk.len());
        for (&k, v) in plan.pk.iter().zip(raw) {
            match decode(plan, k, v) {
                Ok(v) => key.push(plan.columns[k].cmp_literal(&v)),
                Err(e) => return Ok(Err(e)),
            }
        }
        last = Some(key);
    }
    Ok(Ok(writers
        .into_iter()
        .zip(in_range)
        .map(|(w, n)| ReadBatch {
            rows: w.finish(),
            in_range: n,
            scanned,
            last_pk: last.clone(),
            end,
        })
        .collect()))
}

/// Decodes column `i` of a snapshot row.
fn decode(plan: &TablePlan, i: usize, v: Option<mysql_async::Value>) -> Result<Value, String> {
    let col = &plan.columns[i];
    match v {
        Some(v) => col.decode_wire(v),
        None => Err(format!("column `{}` missing from the row", col.name)),
    }
}

/// Copies `table` from the snapshot at `p` until it is done or the cycle
/// is over. While one batch is written to the target the next is read
/// from the source. `load`: batches go as `LOAD DATA`; cleared (for good)
/// when the target refuses it, and the refused batch is read again and
/// written as INSERTs.
async fn copy_table(
    ctx: &mut Ctx<'_>,
    snap: &mut Snapshot,
    table: &str,
    p: &Position,
    deadline: Instant,
    load: &mut bool,
) -> Result<TableCopy, StreamError> {
    let Some(plan) = ctx.plans.get(table).cloned() else {
        return Err(StreamError::Table {
            table: table.to_string(),
            detail: "no plan for the table".into(),
        });
    };
    let source_db = ctx.spec.source_db.clone();
    let target_db = ctx.spec.target_db.clone();
    let range = ctx.spec.key_range.clone();
    let q = BatchQuery {
        plan: &plan,
        source_db: &source_db,
        limit: ctx.spec.copy_batch_rows.max(1),
    };
    // `None` (INSERTs) for a table without writable columns.
    let load_sql = load_statement(&target_db, &plan);
    let out = |load: bool| BatchOut {
        range: &range,
        target_db: &target_db,
        load_sql: load_sql.clone().filter(|_| load),
    };
    let row_err = |detail: String| StreamError::Row {
        table: table.to_string(),
        detail,
    };
    let mut state = ctx.stored.tables.get(table).cloned().unwrap_or_default();
    let mut batch = read_batch(snap, &q, out(*load), state.last_pk.as_ref())
        .await
        .map_err(|e| ctx.src_err("reading rows from the snapshot")(e.into()))?
        .map_err(row_err)?;
    loop {
        if ctx.cancel.is_cancelled() {
            return Ok(TableCopy::Cancelled);
        }
        let more = !batch.end && Instant::now() < deadline;
        let next_last = batch.last_pk.clone();
        // Each stage's time, for the debug log: the slower one bounds the
        // stream's copy rate.
        let started = Instant::now();
        let write = async {
            let w = commit_batch(ctx, table, batch, p, &state).await;
            (w, started.elapsed())
        };
        let ((committed, write_time), next, read_time) = if more {
            let read = async {
                let r = read_batch(snap, &q, out(*load), next_last.as_ref()).await;
                (r, started.elapsed())
            };
            let (w, (r, rt)) = tokio::join!(write, read);
            (w, Some(r), Some(rt))
        } else {
            (write.await, None, None)
        };
        let Some(next_state) = committed? else {
            // Refused: nothing was written. The next batch, if read, is
            // LOAD text too: dropped, and read again after this one.
            *load = false;
            batch = read_batch(snap, &q, out(false), state.last_pk.as_ref())
                .await
                .map_err(|e| ctx.src_err("reading rows from the snapshot")(e.into()))?
                .map_err(row_err)?;
            continue;
        };
        tracing::debug!(
            stream = ctx.spec.id,
            table,
            position = %p,
            last_pk = ?next_state.last_pk,
            rows = next_state.rows_copied - state.rows_copied,
            done = next_state.done,
            write_ms = write_time.as_secs_f64() * 1e3,
            next_read_ms = read_time.map(|t| t.as_secs_f64() * 1e3),
            "copy batch committed"
        );
        state = next_state;
        if state.done {
            return Ok(TableCopy::Done);
        }
        match next {
            None => return Ok(TableCopy::CycleOver),
            Some(r) => {
                batch = r
                    .map_err(|e| ctx.src_err("reading rows from the snapshot")(e.into()))?
                    .map_err(row_err)?;
            }
        }
    }
}

/// Commits one batch's rows with the table's progress and the stream
/// position, in one target transaction.
async fn write_batch(
    ctx: &mut Ctx<'_>,
    table: &str,
    rows: BatchRows,
    p: &Position,
    progress_sql: &String,
) -> Result<Written, StreamError> {
    let extra = std::slice::from_ref(progress_sql);
    match rows {
        BatchRows::Insert(body) => {
            ctx.commit(body, p, 0, StreamState::Copying, extra).await?;
            Ok(Written::Committed)
        }
        BatchRows::Load(load) => {
            ctx.commit_load(table, load, p, StreamState::Copying, extra)
                .await
        }
    }
}
