//! The controller: runs the streams of every workflow whose record says it
//! should run, and mirrors their progress and phase into the record.
//!
//! Like the tablet runner it reconciles: it lists `/workflows/`, watches the
//! prefix from the listed revision, and on every change compares what runs
//! with what the records want. A workflow's runner is keyed by its
//! `generation`, which `start` and `retry` bump, so an operator's restart
//! always gets fresh streams. Nothing it holds in memory matters after a
//! crash: streams resume from the targets' sidecars, and the phase is
//! derived again from what the streams report.

use crate::model::{
    Desired, State, StreamRecord, StreamTable, TableSummary, Trigger, Workflow, now_ms,
};
use crate::ops::{connect, ident};
use futures::StreamExt;
use keyshift_cluster::model::{ShardRecord, TabletRecord, keys};
use keyshift_cluster::ops;
use keyshift_topo::{Topo, TopoExt, UpdateError};
use keyshift_vrepl::{
    CopyGroup, StreamExit, StreamProgress, StreamSpec, StreamState, TableSpec, run_stream,
};
use mysql_async::prelude::*;
use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

/// How often stream progress is written into the record: often enough for
/// a live dashboard, rare enough not to load the topo.
pub const PUBLISH_EVERY: Duration = Duration::from_millis(1000);

/// A stream that ran this long before failing gets its retry budget back:
/// the budget is for repeated failures, not for a long life.
const RETRY_BUDGET_RESET: Duration = Duration::from_secs(60);

pub struct Controller {
    handle: JoinHandle<()>,
}

impl Controller {
    pub fn spawn(topo: Arc<dyn Topo>, cancel: CancellationToken) -> Controller {
        Controller {
            handle: tokio::spawn(run(topo, cancel)),
        }
    }

    /// Resolves when every stream has stopped (after cancel).
    pub async fn join(self) {
        let _ = self.handle.await;
    }
}

struct Runner {
    generation: u64,
    cancel: CancellationToken,
    handle: JoinHandle<()>,
}

async fn run(topo: Arc<dyn Topo>, cancel: CancellationToken) {
    let mut running: HashMap<String, Runner> = HashMap::new();
    let mut backoff = Duration::from_millis(200);
    'outer: while !cancel.is_cancelled() {
        let listed = async {
            let rev = topo.revision().await?;
            sync(&topo, &cancel, &mut running).await?;
            topo.watch(keys::WORKFLOWS, rev).await
        };
        let mut stream = match listed.await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot follow the topo's workflows; retrying");
                tokio::select! { _ = cancel.cancelled() => break, _ = tokio::time::sleep(backoff) => {} }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        backoff = Duration::from_millis(200);
        // A periodic re-list also restarts runners that ended on their own
        // while the record still wants them running.
        let mut tick = tokio::time::interval(Duration::from_secs(5));
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break 'outer,
                _ = tick.tick() => {
                    if let Err(e) = sync(&topo, &cancel, &mut running).await {
                        tracing::warn!(error = %e, "cannot list workflows");
                    }
                }
                e = stream.next() => match e {
                    Some(Ok(_)) => {
                        if let Err(e) = sync(&topo, &cancel, &mut running).await {
                            tracing::warn!(error = %e, "cannot list workflows; re-listing");
                            continue 'outer;
                        }
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "workflow watch failed; re-listing");
                        continue 'outer;
                    }
                    None => continue 'outer,
                }
            }
        }
    }
    for (_, r) in running.drain() {
        r.cancel.cancel();
        let _ = r.handle.await;
    }
}

async fn sync(
    topo: &Arc<dyn Topo>,
    cancel: &CancellationToken,
    running: &mut HashMap<String, Runner>,
) -> Result<(), keyshift_topo::TopoError> {
    let mut want: BTreeMap<String, u64> = BTreeMap::new();
    for kv in topo.list(keys::WORKFLOWS).await? {
        match serde_json::from_slice::<Workflow>(&kv.value) {
            Ok(w) if w.should_run() => {
                want.insert(w.name.clone(), w.generation);
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(key = %kv.key, error = %e, "skipping a workflow record that does not decode")
            }
        }
    }
    let stale: Vec<String> = running
        .iter()
        .filter(|(name, r)| want.get(*name) != Some(&r.generation) || r.handle.is_finished())
        .map(|(n, _)| n.clone())
        .collect();
    for name in stale {
        if let Some(r) = running.remove(&name) {
            r.cancel.cancel();
            // Streams hold the target's per-stream lock until they end; the
            // next runner would otherwise find them busy.
            let _ = r.handle.await;
            if !want.contains_key(&name) {
                set_streams_active(topo.as_ref(), &name, false).await;
            }
        }
    }
    for (name, generation) in want {
        if running.contains_key(&name) {
            continue;
        }
        set_streams_active(topo.as_ref(), &name, true).await;
        let child = cancel.child_token();
        let handle = tokio::spawn(run_workflow(
            topo.clone(),
            name.clone(),
            generation,
            child.clone(),
        ));
        running.insert(
            name,
            Runner {
                generation,
                cancel: child,
                handle,
            },
        );
    }
    Ok(())
}

/// Acknowledges that a workflow's streams started or have all ended (see
/// `Workflow::streams_active`). Best effort: a failure only delays `stop`.
async fn set_streams_active(topo: &dyn Topo, name: &str, active: bool) {
    let r = topo
        .update_json::<Workflow, _, ()>(&keys::workflow(name), |w| match w {
            Some(mut w) => {
                w.streams_active = active;
                Ok(w)
            }
            None => Err(()),
        })
        .await;
    if let Err(keyshift_topo::UpdateError::Topo(e)) = r {
        tracing::warn!(workflow = name, error = %e, "cannot record whether the streams run");
    }
}

/// A change the runner makes to the record unless the record moved on
/// (another generation, or no longer meant to run).
async fn update(
    topo: &dyn Topo,
    name: &str,
    generation: u64,
    f: impl Fn(&mut Workflow) + Send + Sync,
) -> Result<Option<Workflow>, String> {
    let r = topo
        .update_json::<Workflow, _, ()>(&keys::workflow(name), |cur| {
            let mut w = cur.ok_or(())?;
            if w.generation != generation || !w.should_run() {
                return Err(());
            }
            f(&mut w);
            Ok(w)
        })
        .await;
    match r {
        Ok((w, _)) => Ok(Some(w)),
        Err(UpdateError::Aborted(())) => Ok(None),
        Err(UpdateError::Topo(e)) => Err(e.to_string()),
    }
}

async fn run_workflow(
    topo: Arc<dyn Topo>,
    name: String,
    generation: u64,
    cancel: CancellationToken,
) {
    if let Err(reason) = drive(topo.as_ref(), &name, generation, &cancel).await {
        if cancel.is_cancelled() {
            return;
        }
        tracing::error!(workflow = %name, %reason, "workflow failed");
        let _ = update(topo.as_ref(), &name, generation, |w| {
            w.error = Some(reason.clone());
            w.enter(State::Error, Trigger::Controller, &reason);
        })
        .await;
    }
}

/// What a stream task reports when it ends.
type StreamEnd = (usize, Result<StreamExit, String>);

pub(crate) async fn primary_of(
    topo: &dyn Topo,
    ks: &str,
    shard: &str,
) -> Result<TabletRecord, String> {
    let s = topo
        .get_json::<ShardRecord>(&keys::shard(ks, shard))
        .await
        .map_err(|e| e.to_string())?
        .ok_or_else(|| format!("shard {ks}/{shard} no longer exists"))?
        .0;
    let alias = s
        .primary
        .ok_or_else(|| format!("shard {ks}/{shard} has no primary"))?;
    ops::get_tablet(topo, &alias)
        .await
        .map_err(|e| e.to_string())
}

async fn drive(
    topo: &dyn Topo,
    name: &str,
    generation: u64,
    cancel: &CancellationToken,
) -> Result<(), String> {
    let w = crate::ops::show(topo, name)
        .await
        .map_err(|e| e.to_string())?;
    let (tables, key_ranges) = table_specs(topo, &w).await?;
    if w.state == State::Pending {
        update(topo, name, generation, |w| {
            w.enter(State::Copying, Trigger::Controller, "streams started")
        })
        .await?;
    }

    let streams_cancel = cancel.child_token();
    let (end_tx, mut end_rx) = mpsc::channel::<StreamEnd>(w.streams.len().max(1));
    let mut receivers = Vec::new();
    let mut handles = Vec::new();
    // The streams of each source shard copy together: one snapshot and
    // one scan of the source for all its target shards.
    let mut by_source: HashMap<&str, Vec<u64>> = HashMap::new();
    for s in &w.streams {
        by_source.entry(&s.source_shard).or_default().push(s.id);
    }
    let groups: HashMap<&str, Arc<CopyGroup>> = by_source
        .into_iter()
        .filter(|(_, ids)| ids.len() > 1)
        .map(|(shard, ids)| (shard, CopyGroup::new(ids)))
        .collect();
    for (i, s) in w.streams.iter().enumerate() {
        let (tx, rx) = watch::channel(StreamProgress::default());
        receivers.push(rx);
        let key_range = key_ranges
            .get(&s.target_shard)
            .cloned()
            .ok_or_else(|| format!("target shard {} no longer exists", s.target_shard))?;
        let job = StreamJob {
            workflow: w.clone(),
            stream: s.clone(),
            tables: tables.clone(),
            key_range,
            copy_group: groups.get(s.source_shard.as_str()).cloned(),
        };
        let cancel = streams_cancel.clone();
        let end_tx = end_tx.clone();
        // A topo handle per task is not needed: tasks re-resolve through
        // the shared one, which lives as long as this function.
        let topo_ptr: &dyn Topo = topo;
        let fut = stream_task(topo_ptr, job, cancel, tx);
        handles.push(async move {
            let r = fut.await;
            let _ = end_tx.send((i, r)).await;
        });
    }
    drop(end_tx);
    let streams_fut = futures::future::join_all(handles);
    tokio::pin!(streams_fut);

    // Deferred secondary keys go onto each target shard as soon as every
    // stream writing into it has copied its tables, while the other shards
    // may still copy: the index builds overlap the tail of the copy and
    // each other instead of running one shard after the other at the end.
    let mut key_tasks = futures::stream::FuturesUnordered::new();
    if !w.copy_done && w.tables.iter().any(|t| !t.deferred_keys.is_empty()) {
        let shards = ops::list_shards(topo, &w.target_keyspace)
            .await
            .map_err(|e| e.to_string())?;
        for shard in shards {
            let rxs: Vec<watch::Receiver<StreamProgress>> = w
                .streams
                .iter()
                .zip(&receivers)
                .filter(|(s, _)| s.target_shard == shard.name)
                .map(|(_, r)| r.clone())
                .collect();
            let w = &w;
            key_tasks.push(async move {
                for mut rx in rxs {
                    // Err: the stream ended before it finished copying
                    // (error or stop); the keys wait for the next run.
                    if rx.wait_for(stream_copied).await.is_err() {
                        return None;
                    }
                }
                let started = Instant::now();
                Some(
                    add_deferred_keys_on(topo, w, &shard.name)
                        .await
                        .map(|()| (shard.name, started.elapsed())),
                )
            });
        }
    }
    // Key builds still running, and whether every shard has its keys.
    let mut keys_pending = key_tasks.len();
    let keys_needed = keys_pending;
    let mut keys_ok = 0;
    let mut streams_done = false;

    let mut tick = tokio::time::interval(PUBLISH_EVERY);
    let mut ended: Vec<Option<StreamExit>> = vec![None; w.streams.len()];
    let mut eta = EtaTracker::default();
    let sources: Vec<String> = w.streams.iter().map(|s| s.source_shard.clone()).collect();
    let mut copy_done = w.copy_done;
    let mut failure: Option<String> = None;
    loop {
        if streams_done && (keys_pending == 0 || failure.is_some() || cancel.is_cancelled()) {
            break;
        }
        tokio::select! {
            _ = &mut streams_fut, if !streams_done => streams_done = true,
            Some(done) = key_tasks.next(), if keys_pending > 0 => {
                keys_pending -= 1;
                match done {
                    Some(Ok((shard, took))) => {
                        keys_ok += 1;
                        let n: usize = w.tables.iter().map(|t| t.deferred_keys.len()).sum();
                        let _ = update(topo, name, generation, |rec| {
                            rec.event(
                                Trigger::Controller,
                                format!(
                                    "target shard {shard} copied; {n} deferred secondary key(s) added in {:.1} s",
                                    took.as_secs_f64()
                                ),
                            );
                        })
                        .await;
                        if keys_ok == keys_needed {
                            // Publish the end of the copy now, not at the
                            // next tick.
                            tick.reset_immediately();
                        }
                    }
                    Some(Err(reason)) => {
                        failure = Some(reason);
                        streams_cancel.cancel();
                    }
                    // A stream ended uncopied: its end (error or stop)
                    // decides what happens.
                    None => {}
                }
            }
            Some((i, r)) = end_rx.recv() => match r {
                Ok(exit) => ended[i] = Some(exit),
                Err(reason) => {
                    failure = Some(reason);
                    streams_cancel.cancel();
                }
            },
            _ = tick.tick() => {
                let progress: Vec<StreamProgress> = receivers.iter().map(|r| r.borrow().clone()).collect();
                let all_copied = !progress.is_empty() && progress.iter().enumerate().all(|(i, p)| {
                    p.state == StreamState::Running
                        || (matches!(ended[i], Some(StreamExit::CopyCompleted)))
                });
                if all_copied && keys_ok == keys_needed && failure.is_none() && !cancel.is_cancelled() {
                    copy_done = true;
                }
                let stop_after = w.options.stop_after_copy && copy_done
                    && ended.iter().all(|e| matches!(e, Some(StreamExit::CopyCompleted)));
                let summaries = eta.summarize(&progress, &sources);
                let updated = update(topo, name, generation, |rec| {
                    for (s, p) in rec.streams.iter_mut().zip(&progress) {
                        mirror(s, p);
                    }
                    rec.table_progress = summaries.clone();
                    rec.updated_ms = now_ms();
                    if copy_done && !rec.copy_done {
                        rec.copy_done = true;
                        rec.event(Trigger::Controller, "every stream copied its tables; secondary keys in place");
                    }
                    if stop_after {
                        rec.desired = Desired::Stopped;
                        rec.enter(State::Stopped, Trigger::Controller, "copy completed (stop_after_copy)");
                    } else if rec.copy_done
                        && matches!(rec.state, State::Pending | State::Copying)
                    {
                        rec.enter(State::Running, Trigger::Controller, "copy completed; replicating");
                    } else if !rec.copy_done && rec.state == State::Pending {
                        rec.enter(State::Copying, Trigger::Controller, "");
                    }
                })
                .await;
                match updated {
                    Ok(Some(_)) => {}
                    // The record moved on: stop, start or retry elsewhere.
                    Ok(None) => streams_cancel.cancel(),
                    Err(e) => tracing::warn!(workflow = %name, error = %e, "cannot publish progress"),
                }
                if stop_after {
                    streams_cancel.cancel();
                }
            }
            _ = cancel.cancelled() => streams_cancel.cancel(),
        }
    }
    // Drain what ended while the join completed.
    while let Ok((i, r)) = end_rx.try_recv() {
        match r {
            Ok(exit) => ended[i] = Some(exit),
            Err(reason) => failure = failure.or(Some(reason)),
        }
    }
    let progress: Vec<StreamProgress> = receivers.iter().map(|r| r.borrow().clone()).collect();
    let _ = update(topo, name, generation, |rec| {
        for (s, p) in rec.streams.iter_mut().zip(&progress) {
            mirror(s, p);
        }
    })
    .await;
    match failure {
        Some(reason) if !cancel.is_cancelled() => Err(reason),
        _ => {
            // stop_after_copy: the copy ended in every stream between two
            // ticks; finish the phase.
            if w.options.stop_after_copy
                && !cancel.is_cancelled()
                && ended
                    .iter()
                    .all(|e| matches!(e, Some(StreamExit::CopyCompleted)))
            {
                if !copy_done && keys_ok < keys_needed {
                    add_deferred_keys(topo, &w).await?;
                }
                update(topo, name, generation, |rec| {
                    rec.copy_done = true;
                    rec.desired = Desired::Stopped;
                    rec.enter(
                        State::Stopped,
                        Trigger::Controller,
                        "copy completed (stop_after_copy)",
                    );
                })
                .await?;
            }
            Ok(())
        }
    }
}

fn mirror(s: &mut StreamRecord, p: &StreamProgress) {
    s.state = match p.state {
        StreamState::Copying => "copying",
        StreamState::Running => "running",
        StreamState::Stopped => "stopped",
        StreamState::Error => "error",
    }
    .to_string();
    if !p.tables.is_empty() {
        s.tables = p
            .tables
            .iter()
            .map(|t| StreamTable {
                name: t.name.clone(),
                rows_copied: t.rows_copied,
                rows_scanned: t.rows_scanned,
                estimated_rows: t.estimated_rows,
                done: t.done,
            })
            .collect();
    }
    if let Some(pos) = &p.position {
        s.position = Some(pos.to_string());
    }
    s.lag_seconds = p.lag_seconds;
    s.transactions_applied = p.transactions_applied;
    s.last_error = p.last_error.clone();
    s.updated_ms = now_ms();
}

/// Per-table copy rate over the runner's life, for the ETA.
#[derive(Default)]
struct EtaTracker {
    first: HashMap<String, (Instant, u64)>,
}

impl EtaTracker {
    /// Per-table progress over streams. Every stream of one source shard
    /// reads that shard's whole table (keeping its target's rows), so the
    /// size and the rows read count once per source shard — the slowest of
    /// its streams — while rows copied add up over all streams.
    fn summarize(&mut self, progress: &[StreamProgress], sources: &[String]) -> Vec<TableSummary> {
        let mut by: BTreeMap<String, TableSummary> = BTreeMap::new();
        let mut order = Vec::new();
        let mut all_done: HashMap<String, bool> = HashMap::new();
        // (table, source shard) -> (estimated, slowest scanned)
        let mut per_source: BTreeMap<(String, String), (u64, u64)> = BTreeMap::new();
        for (i, p) in progress.iter().enumerate() {
            let source = sources.get(i).cloned().unwrap_or_default();
            for t in &p.tables {
                let e = by.entry(t.name.clone()).or_insert_with(|| {
                    order.push(t.name.clone());
                    TableSummary {
                        name: t.name.clone(),
                        ..Default::default()
                    }
                });
                e.rows_copied += t.rows_copied;
                let ps = per_source
                    .entry((t.name.clone(), source.clone()))
                    .or_insert((0, u64::MAX));
                ps.0 = ps.0.max(t.estimated_rows);
                ps.1 = ps.1.min(t.rows_scanned);
                let d = all_done.entry(t.name.clone()).or_insert(true);
                *d = *d && t.done;
            }
        }
        for ((table, _), (estimated, scanned)) in per_source {
            if let Some(e) = by.get_mut(&table) {
                e.estimated_rows += estimated;
                e.rows_scanned += if scanned == u64::MAX { 0 } else { scanned };
            }
        }
        let now = Instant::now();
        order
            .into_iter()
            .filter_map(|n| by.remove(&n))
            .map(|mut s| {
                s.done = all_done.get(&s.name).copied().unwrap_or(false);
                s.percent = if s.done {
                    100.0
                } else if s.estimated_rows == 0 {
                    0.0
                } else {
                    (s.rows_scanned as f64 * 100.0 / s.estimated_rows as f64).min(99.9)
                };
                let (t0, r0) = *self
                    .first
                    .entry(s.name.clone())
                    .or_insert((now, s.rows_scanned));
                let secs = now.duration_since(t0).as_secs_f64();
                s.eta_seconds = if s.done {
                    Some(0)
                } else if secs > 1.0 && s.rows_scanned > r0 {
                    let rate = (s.rows_scanned - r0) as f64 / secs;
                    Some(
                        (s.estimated_rows.saturating_sub(s.rows_scanned) as f64 / rate).ceil()
                            as u64,
                    )
                } else {
                    None
                };
                s
            })
            .collect()
    }
}

struct StreamJob {
    workflow: Workflow,
    stream: StreamRecord,
    tables: Vec<TableSpec>,
    key_range: keyshift_types::KeyRange,
    copy_group: Option<Arc<CopyGroup>>,
}

/// Runs one stream, retrying transient failures with backoff; `Err` is the
/// reason the workflow goes to `error`.
async fn stream_task(
    topo: &dyn Topo,
    job: StreamJob,
    cancel: CancellationToken,
    progress: watch::Sender<StreamProgress>,
) -> Result<StreamExit, String> {
    let w = &job.workflow;
    let s = &job.stream;
    let label = format!(
        "stream {}/{} → {}/{}",
        w.source_keyspace, s.source_shard, w.target_keyspace, s.target_shard
    );
    let max = w.options.max_transient_retries;
    let mut attempt: u32 = 0;
    loop {
        let started = Instant::now();
        let (err, transient) = match stream_spec(topo, w, s, &job.tables, &job.key_range).await {
            Err(e) => (e, true),
            Ok(spec) => match run_stream(
                StreamSpec {
                    copy_group: job.copy_group.clone(),
                    ..spec
                },
                cancel.clone(),
                progress.clone(),
            )
            .await
            {
                Ok(exit) => return Ok(exit),
                Err(e) => (e.to_string(), e.is_transient()),
            },
        };
        if cancel.is_cancelled() {
            return Ok(StreamExit::Cancelled);
        }
        if started.elapsed() > RETRY_BUDGET_RESET {
            attempt = 0;
        }
        if !transient || attempt >= max {
            let tries = if transient && max > 0 {
                format!(" (gave up after {max} automatic retries)")
            } else {
                String::new()
            };
            return Err(format!("{label}: {err}{tries}"));
        }
        attempt += 1;
        let wait = Duration::from_millis(500u64 << attempt.min(5)).min(Duration::from_secs(10));
        tracing::warn!(workflow = %w.name, %label, error = %err, attempt, ?wait, "transient stream error; retrying");
        tokio::select! {
            _ = cancel.cancelled() => return Ok(StreamExit::Cancelled),
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// The stream engine's view of a workflow's tables (with the target's
/// primary vindexes when it is sharded) and the target shards' key ranges.
pub async fn table_specs(
    topo: &dyn Topo,
    w: &Workflow,
) -> Result<(Vec<TableSpec>, HashMap<String, keyshift_types::KeyRange>), String> {
    let target_shards: HashMap<String, ShardRecord> = ops::list_shards(topo, &w.target_keyspace)
        .await
        .map_err(|e| format!("listing the target's shards: {e}"))?
        .into_iter()
        .map(|s| (s.name.clone(), s))
        .collect();
    let sharded = ops::get_keyspace(topo, &w.target_keyspace)
        .await
        .map(|k| k.sharded)
        .unwrap_or(false)
        || target_shards.len() > 1;
    let vschema = ops::get_vschema(topo, &w.target_keyspace)
        .await
        .map_err(|e| format!("reading the VSchema of `{}`: {e}", w.target_keyspace))?;
    let mut tables = Vec::new();
    for t in &w.tables {
        let vindex = if sharded {
            let def = vschema
                .tables
                .get(&t.name)
                .and_then(|d| d.column_vindexes.first())
                .ok_or_else(|| {
                    format!(
                        "table `{}` has no primary vindex in the VSchema of `{}`",
                        t.name, w.target_keyspace
                    )
                })?;
            let col = def
                .column_names()
                .first()
                .map(|c| c.to_string())
                .ok_or_else(|| format!("the primary vindex of `{}` names no column", t.name))?;
            let vdef = vschema.vindexes.get(&def.name).ok_or_else(|| {
                format!(
                    "vindex `{}` is not defined in `{}`",
                    def.name, w.target_keyspace
                )
            })?;
            let v =
                keyshift_vindex::new_vindex(&vdef.kind, &vdef.params).map_err(|e| e.to_string())?;
            Some((col, v))
        } else {
            None
        };
        tables.push(TableSpec {
            name: t.name.clone(),
            pk_columns: t.pk_columns.clone(),
            vindex,
        });
    }
    let ranges = target_shards
        .into_iter()
        .map(|(n, s)| (n, s.key_range))
        .collect();
    Ok((tables, ranges))
}

/// The spec of one of `w`'s streams, with its shards' current primaries.
pub async fn stream_spec(
    topo: &dyn Topo,
    w: &Workflow,
    s: &StreamRecord,
    tables: &[TableSpec],
    key_range: &keyshift_types::KeyRange,
) -> Result<StreamSpec, String> {
    let src = primary_of(topo, &w.source_keyspace, &s.source_shard).await?;
    let tgt = primary_of(topo, &w.target_keyspace, &s.target_shard).await?;
    Ok(StreamSpec {
        id: s.id,
        workflow: w.name.clone(),
        source: src.endpoint(),
        source_db: src.database.clone(),
        target: tgt.endpoint(),
        target_db: tgt.database.clone(),
        tables: tables.to_vec(),
        key_range: key_range.clone(),
        copy_batch_rows: w.options.copy_batch_rows.max(1),
        copy_cycle: Duration::from_millis(w.options.copy_cycle_ms.max(100)),
        copy_parallel_tables: w.options.copy_parallel_tables(),
        on_ddl: w.options.on_ddl.into(),
        stop_after_copy: w.options.stop_after_copy && !w.copy_done,
        stop_position: None,
        copy_group: None,
    })
}

/// Whether a stream has copied every table (it replicates, or its last
/// copy batch marked the last table done).
fn stream_copied(p: &StreamProgress) -> bool {
    p.state == StreamState::Running || (!p.tables.is_empty() && p.tables.iter().all(|t| t.done))
}

/// Adds the secondary keys left out during the copy on every target shard,
/// all shards at once.
async fn add_deferred_keys(topo: &dyn Topo, w: &Workflow) -> Result<(), String> {
    if w.tables.iter().all(|t| t.deferred_keys.is_empty()) {
        return Ok(());
    }
    let shards = ops::list_shards(topo, &w.target_keyspace)
        .await
        .map_err(|e| e.to_string())?;
    futures::future::try_join_all(
        shards
            .iter()
            .map(|s| add_deferred_keys_on(topo, w, &s.name)),
    )
    .await
    .map(|_| ())
}

/// Adds the secondary keys left out during the copy on one target shard.
/// Idempotent: a key that exists already (an earlier run added it before a
/// crash, or a build dropped with its runner finished on the server) is
/// skipped.
async fn add_deferred_keys_on(topo: &dyn Topo, w: &Workflow, shard: &str) -> Result<(), String> {
    let t = primary_of(topo, &w.target_keyspace, shard).await?;
    let mut c = connect(&t).await.map_err(|e| e.to_string())?;
    for table in &w.tables {
        for key in &table.deferred_keys {
            let sql = format!(
                "ALTER TABLE {}.{} ADD {key}",
                ident(&t.database),
                ident(&table.name)
            );
            match c.query_drop(&sql).await {
                Ok(()) => {}
                // 1061: duplicate key name — added by an earlier run.
                Err(mysql_async::Error::Server(e)) if e.code == 1061 => {}
                Err(e) => {
                    return Err(format!(
                        "adding deferred key to `{}` on target shard {shard}: {sql}: {e}",
                        table.name
                    ));
                }
            }
        }
    }
    let _ = c.disconnect().await;
    Ok(())
}
