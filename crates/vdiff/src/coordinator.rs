//! Running one VDiff: snapshots at one logical point, then the tables one
//! after another, progress persisted as it goes.

use crate::checksum;
use crate::merge::{self, Input, MergeOptions, Outcome};
use crate::reader::{Held, Placement, ShardSide, spawn_reader};
use crate::record::{
    Desired, KeyValue, MAX_ROUNDS, Owner, Round, TableReport, TableState, VdiffOptions,
    VdiffRecord, VdiffState, now_ms,
};
use crate::schema::{TablePlan, read_columns};
use crate::{VdiffError, check_workflow};
use keyshift_cluster::model::{TabletRecord, keys};
use keyshift_cluster::ops::shard_primaries;
use keyshift_topo::{Topo, TopoExt, UpdateError};
use keyshift_types::Position;
use keyshift_workflow::Workflow;
use mysql_async::Conn;
use mysql_async::prelude::Queryable;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// The name VDiff pauses workflows under.
pub const HOLDER: &str = "vdiff";

/// How long a pause holds without renewal: a VDiff that dies while
/// holding leaves the streams running again this long after.
const PAUSE_TTL: Duration = Duration::from_secs(30);

/// How long the controller may take to stop the streams for the pause.
const PAUSE_WAIT: Duration = Duration::from_secs(60);

/// A runner's claim on a record lasts this long without renewal; another
/// node takes over after it (at once when the owner is a dead process on
/// this host).
pub const LEASE: Duration = Duration::from_secs(20);

/// How often progress is persisted (and the claim renewed).
const KEEP_EVERY: Duration = Duration::from_millis(500);

/// Small tables are counted exactly (in the snapshot) for the percentage;
/// large ones use the server's estimate rather than a full extra scan.
const EXACT_COUNT_BELOW: u64 = 200_000;

/// Statements run on every snapshot connection before its transaction:
/// TIMESTAMPs in UTC on both sides, character data as the stored bytes,
/// and no server-side timeout while the merge works on another shard.
pub(crate) const SESSION_SQL: &[&str] = &[
    "SET SESSION time_zone = '+00:00'",
    "SET SESSION character_set_results = 'binary'",
    "SET SESSION net_write_timeout = 3600, SESSION net_read_timeout = 3600, SESSION wait_timeout = 86400",
    "SET SESSION TRANSACTION ISOLATION LEVEL REPEATABLE READ",
];

/// What a keeper write learned about the record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kept {
    Ours,
    /// The operator asked to stop.
    Stop,
    /// Another runner or another VDiff owns the record now.
    Lost,
}

/// Who runs a VDiff: the record's id and the owner's id.
#[derive(Clone)]
pub(crate) struct Claim {
    pub workflow: String,
    pub id: String,
    pub owner: String,
}

/// Writes `f`'s change to the record if it is still this claim's, renewing
/// the claim.
async fn keep(
    topo: &dyn Topo,
    claim: &Claim,
    f: impl Fn(&mut VdiffRecord) + Send + Sync,
) -> Result<Kept, VdiffError> {
    let mut kept = Kept::Ours;
    let r = topo
        .update_json::<VdiffRecord, _, Kept>(&keys::vdiff(&claim.workflow), |cur| {
            let mut rec = cur.ok_or(Kept::Lost)?;
            if rec.id != claim.id || rec.owner.as_ref().is_none_or(|o| o.id != claim.owner) {
                return Err(Kept::Lost);
            }
            f(&mut rec);
            rec.owner = Some(Owner {
                id: claim.owner.clone(),
                until_ms: now_ms() + LEASE.as_millis() as u64,
            });
            rec.updated_ms = now_ms();
            rec.refresh_summary();
            kept = if rec.desired == Desired::Stop {
                Kept::Stop
            } else {
                Kept::Ours
            };
            Ok(rec)
        })
        .await;
    match r {
        Ok(_) => Ok(kept),
        Err(UpdateError::Aborted(k)) => Ok(k),
        Err(UpdateError::Topo(e)) => Err(e.into()),
    }
}

/// Puts a table's report into the record, never going backwards: a late
/// progress write cannot undo a finished table or a later count.
fn put_table(rec: &mut VdiffRecord, t: &TableReport) {
    match rec.tables.iter_mut().find(|x| x.name == t.name) {
        Some(x) => {
            if x.state == TableState::Done || x.rows_compared > t.rows_compared {
                return;
            }
            *x = t.clone();
        }
        None => rec.tables.push(t.clone()),
    }
}

/// Renews the claim every [`KEEP_EVERY`], persisting the latest table
/// progress from `progress`; cancels `cancel` when the operator stops the
/// VDiff or the claim is lost. Ends when `done` fires.
async fn keeper(
    topo: Arc<dyn Topo>,
    claim: Claim,
    mut progress: watch::Receiver<Option<TableReport>>,
    cancel: CancellationToken,
    done: CancellationToken,
    lost: Arc<std::sync::atomic::AtomicBool>,
) {
    // Per table: when this run first saw it and how far it was, for ETAs.
    let mut first: HashMap<String, (Instant, u64)> = HashMap::new();
    loop {
        tokio::select! {
            _ = done.cancelled() => return,
            _ = tokio::time::sleep(KEEP_EVERY) => {}
        }
        let latest = progress.borrow_and_update().clone();
        let latest = latest.map(|mut t| {
            let (t0, r0) = *first
                .entry(t.name.clone())
                .or_insert((Instant::now(), t.rows_compared));
            t.percent = percent(&t);
            let secs = t0.elapsed().as_secs_f64();
            t.eta_seconds = if secs > 1.0 && t.rows_compared > r0 {
                let rate = (t.rows_compared - r0) as f64 / secs;
                Some((t.estimated_rows.saturating_sub(t.rows_compared) as f64 / rate).ceil() as u64)
            } else {
                None
            };
            t
        });
        match keep(topo.as_ref(), &claim, |rec| {
            if let Some(t) = &latest {
                put_table(rec, t);
            }
        })
        .await
        {
            Ok(Kept::Ours) => {}
            Ok(Kept::Stop) => cancel.cancel(),
            Ok(Kept::Lost) => {
                lost.store(true, std::sync::atomic::Ordering::SeqCst);
                cancel.cancel();
            }
            Err(e) => {
                tracing::warn!(workflow = %claim.workflow, error = %e, "cannot persist VDiff progress")
            }
        }
    }
}

fn percent(t: &TableReport) -> f64 {
    if t.state == TableState::Done {
        100.0
    } else if t.estimated_rows == 0 {
        0.0
    } else {
        (t.rows_compared as f64 * 100.0 / t.estimated_rows as f64).min(99.9)
    }
}

/// Runs the VDiff `claim` names to its end (completed), or until
/// cancelled. The caller records the outcome.
pub(crate) async fn run(
    topo: Arc<dyn Topo>,
    claim: &Claim,
    cancel: &CancellationToken,
) -> Result<(), VdiffError> {
    let (tx, rx) = watch::channel::<Option<TableReport>>(None);
    let done = CancellationToken::new();
    let lost = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let keeper = tokio::spawn(keeper(
        topo.clone(),
        claim.clone(),
        rx,
        cancel.clone(),
        done.clone(),
        lost.clone(),
    ));
    let r = run_inner(topo.as_ref(), claim, cancel, &tx).await;
    done.cancel();
    let _ = keeper.await;
    if lost.load(std::sync::atomic::Ordering::SeqCst) {
        return Err(VdiffError::Lost);
    }
    r
}

async fn load(topo: &dyn Topo, claim: &Claim) -> Result<VdiffRecord, VdiffError> {
    match topo
        .get_json::<VdiffRecord>(&keys::vdiff(&claim.workflow))
        .await?
    {
        Some((r, _)) if r.id == claim.id => Ok(r),
        _ => Err(VdiffError::Lost),
    }
}

async fn run_inner(
    topo: &dyn Topo,
    claim: &Claim,
    cancel: &CancellationToken,
    progress: &watch::Sender<Option<TableReport>>,
) -> Result<(), VdiffError> {
    let rec = load(topo, claim).await?;
    check_workflow(topo, &claim.workflow).await?;
    let todo: Vec<String> = rec
        .tables
        .iter()
        .filter(|t| t.state != TableState::Done)
        .map(|t| t.name.clone())
        .collect();
    if todo.is_empty() {
        return Ok(());
    }
    let t0 = Instant::now();
    let snaps = take_snapshots(topo, &claim.workflow, &rec.options, cancel).await?;
    tracing::info!(
        workflow = %claim.workflow,
        ms = t0.elapsed().as_millis() as u64,
        "VDiff snapshots taken (paused, caught up, resumed)"
    );
    let round = Round {
        at_ms: now_ms(),
        positions: snaps
            .positions
            .iter()
            .map(|(k, v)| (k.clone(), v.to_string()))
            .collect(),
    };
    let kept = keep(topo, claim, |r| {
        r.state = VdiffState::Running;
        r.started_ms.get_or_insert(now_ms());
        r.rounds.push(round.clone());
        while r.rounds.len() > MAX_ROUNDS {
            r.rounds.remove(0);
        }
    })
    .await?;
    let Snapshots {
        mut sources,
        mut targets,
        workflow: w,
        ..
    } = snaps;
    let result = async {
        match kept {
            Kept::Ours => {}
            Kept::Stop => return Err(VdiffError::Cancelled),
            Kept::Lost => return Err(VdiffError::Lost),
        }
        let (specs, _) = keyshift_workflow::controller::table_specs(topo, &w)
            .await
            .map_err(VdiffError::Failed)?;
        for name in &todo {
            if cancel.is_cancelled() {
                return Err(VdiffError::Cancelled);
            }
            let spec = specs
                .iter()
                .find(|s| &s.name == name)
                .ok_or_else(|| VdiffError::Failed(format!("table `{name}` left the workflow")))?;
            let current = load(topo, claim)
                .await?
                .tables
                .into_iter()
                .find(|t| &t.name == name)
                .unwrap_or_else(|| TableReport::new(name));
            let (s, t) = compare_table(
                topo,
                claim,
                &rec.options,
                spec,
                current,
                sources,
                targets,
                cancel,
                progress,
            )
            .await?;
            sources = s;
            targets = t;
        }
        Ok::<_, VdiffError>((sources, targets))
    }
    .await;
    match result {
        Ok((sources, targets)) => {
            for s in sources.into_iter().chain(targets) {
                s.held.finish().await;
                for h in s.spare {
                    h.finish().await;
                }
            }
            Ok(())
        }
        Err(e) => Err(e),
    }
}

/// Compares one table on the held snapshots and persists its result;
/// hands the snapshots back for the next table.
#[allow(clippy::too_many_arguments)]
async fn compare_table(
    topo: &dyn Topo,
    claim: &Claim,
    opts: &VdiffOptions,
    spec: &keyshift_vrepl::TableSpec,
    mut report: TableReport,
    mut sources: Vec<ShardSide>,
    mut targets: Vec<ShardSide>,
    cancel: &CancellationToken,
    progress: &watch::Sender<Option<TableReport>>,
) -> Result<(Vec<ShardSide>, Vec<ShardSide>), VdiffError> {
    let name = &spec.name;
    let t0 = Instant::now();
    let first = sources
        .first_mut()
        .ok_or_else(|| VdiffError::Failed("the workflow has no source shard".into()))?;
    let db = first.db.clone();
    let cols = read_columns(first.held.conn(), &db, name)
        .await
        .map_err(VdiffError::Schema)?;
    let mut plan = TablePlan::build(name, &spec.pk_columns, cols, first.held.conn())
        .await
        .map_err(VdiffError::Schema)?;
    for side in sources.iter_mut().skip(1).chain(targets.iter_mut()) {
        let db = side.db.clone();
        let cols = read_columns(side.held.conn(), &db, name)
            .await
            .map_err(|e| VdiffError::Schema(format!("shard {}: {e}", side.shard)))?;
        plan.check_target(&cols)
            .map_err(|e| VdiffError::Schema(format!("shard {}: {e}", side.shard)))?;
        plan.widen_nullable(&cols);
    }
    let mut estimated = 0u64;
    for side in sources.iter_mut() {
        estimated += estimate_rows(side, name).await?;
    }
    let placement = match &spec.vindex {
        Some((col, vindex)) => {
            let i = plan
                .columns
                .iter()
                .position(|c| c.name.eq_ignore_ascii_case(col))
                .ok_or_else(|| {
                    VdiffError::Schema(format!("vindex column `{name}`.`{col}` does not exist"))
                })?;
            Some((i, plan.columns[i].kind, vindex.clone()))
        }
        None => None,
    };
    let after: Option<Vec<mysql_async::Value>> = match &report.last_key {
        Some(k) => Some(
            k.iter()
                .map(KeyValue::to_wire)
                .collect::<Option<Vec<_>>>()
                .ok_or_else(|| {
                    VdiffError::Failed(format!("the stored resume key of `{name}` is corrupt"))
                })?,
        ),
        None => None,
    };
    if report.state == TableState::Pending {
        report.started_ms = Some(now_ms());
    }
    report.state = TableState::Running;
    report.pk_columns = plan.key_names();
    report.estimated_rows = estimated;
    progress.send_replace(Some(report.clone()));

    let plan = Arc::new(plan);
    let ranges = target_ranges(topo, claim).await?;
    let placements: HashMap<String, Placement> = match &placement {
        Some((col, kind, vindex)) => targets
            .iter()
            .filter_map(|t| {
                ranges.get(&t.shard).map(|range| {
                    (
                        t.shard.clone(),
                        Placement {
                            col: *col,
                            kind: *kind,
                            vindex: vindex.clone(),
                            range: range.clone(),
                        },
                    )
                })
            })
            .collect(),
        None => HashMap::new(),
    };
    let publish = |r: &TableReport| {
        progress.send_replace(Some(r.clone()));
    };
    let merge_opts = MergeOptions {
        max_samples: opts.max_samples,
        max_rows_per_second: opts.max_rows_per_second,
    };
    let all_mariadb = sources.iter().chain(targets.iter()).all(|s| s.mariadb);
    let lo = after;
    if !(opts.checksum && checksum::supported(&plan)) {
        // Row by row, the whole (rest of the) table.
        let (s, t, outcome) = drill(
            &plan,
            sources,
            targets,
            lo,
            None,
            opts,
            &placements,
            &mut report,
            &merge_opts,
            &publish,
            cancel,
        )
        .await?;
        sources = s;
        targets = t;
        match outcome {
            Ok(Outcome::Done) => {}
            Ok(Outcome::Cancelled) => return Err(VdiffError::Cancelled),
            Err(e) => return Err(VdiffError::Failed(format!("comparing `{name}`: {e}"))),
        }
    } else {
        let table = crate::fast::Table {
            plan: &plan,
            opts,
            placements: &placements,
            all_mariadb,
            merge_opts: &merge_opts,
            publish: &publish,
            cancel,
        };
        let (s, t) = crate::fast::checksum_table(&table, sources, targets, lo, &mut report).await?;
        sources = s;
        targets = t;
    }
    tracing::info!(
        workflow = %claim.workflow,
        table = %name,
        rows = report.rows_compared,
        ms = t0.elapsed().as_millis() as u64,
        "VDiff table compared"
    );
    report.state = TableState::Done;
    report.completed_ms = Some(now_ms());
    report.percent = 100.0;
    report.eta_seconds = Some(0);
    progress.send_replace(None);
    let final_report = report.clone();
    match keep(topo, claim, |r| put_table(r, &final_report)).await? {
        Kept::Ours => {}
        Kept::Stop => return Err(VdiffError::Cancelled),
        Kept::Lost => return Err(VdiffError::Lost),
    }
    Ok((sources, targets))
}

/// Compares the keys in `(lo, hi]` row by row: one reader per shard, the
/// k-way merge. Hands the snapshots back with the merge's outcome.
#[allow(clippy::too_many_arguments)]
pub(crate) async fn drill(
    plan: &Arc<TablePlan>,
    sources: Vec<ShardSide>,
    targets: Vec<ShardSide>,
    lo: Option<Vec<mysql_async::Value>>,
    hi: Option<Vec<mysql_async::Value>>,
    opts: &VdiffOptions,
    placements: &HashMap<String, Placement>,
    report: &mut TableReport,
    merge_opts: &MergeOptions,
    publish: &(dyn Fn(&TableReport) + Send + Sync),
    cancel: &CancellationToken,
) -> Result<(Vec<ShardSide>, Vec<ShardSide>, Result<Outcome, String>), VdiffError> {
    let mut readers = Vec::new();
    let mut input = Input {
        sources: Vec::new(),
        targets: Vec::new(),
    };
    let n_sources = sources.len();
    for side in sources {
        let shard = side.shard.clone();
        let (rx, h) = spawn_reader(
            side,
            plan.clone(),
            lo.clone(),
            hi.clone(),
            opts.batch_rows,
            None,
        );
        input.sources.push((shard, rx));
        readers.push(h);
    }
    for side in targets {
        let shard = side.shard.clone();
        let place = placements.get(&shard).cloned();
        let (rx, h) = spawn_reader(
            side,
            plan.clone(),
            lo.clone(),
            hi.clone(),
            opts.batch_rows,
            place,
        );
        input.targets.push((shard, rx));
        readers.push(h);
    }
    let outcome = merge::merge(plan, input, report, merge_opts, publish, cancel).await;
    let mut sides = Vec::new();
    for h in readers {
        match h.await {
            Ok(s) => sides.push(s),
            Err(e) => {
                return Err(VdiffError::Failed(format!(
                    "a reader of `{}` failed: {e}",
                    plan.name
                )));
            }
        }
    }
    let targets = sides.split_off(n_sources);
    Ok((sides, targets, outcome))
}

async fn target_ranges(
    topo: &dyn Topo,
    claim: &Claim,
) -> Result<HashMap<String, keyshift_types::KeyRange>, VdiffError> {
    let w = keyshift_workflow::show(topo, &claim.workflow).await?;
    Ok(shard_primaries(topo, &w.target_keyspace)
        .await
        .map_err(|e| VdiffError::Failed(e.to_string()))?
        .into_iter()
        .map(|(s, _)| (s.name, s.key_range))
        .collect())
}

async fn estimate_rows(side: &mut ShardSide, table: &str) -> Result<u64, VdiffError> {
    let db = side.db.clone();
    let est: Option<Option<u64>> = side
        .held
        .conn()
        .exec_first(
            "SELECT TABLE_ROWS FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
            (&db, table),
        )
        .await
        .map_err(|e| VdiffError::Failed(format!("estimating the rows of `{table}`: {e}")))?;
    let est = est.flatten().unwrap_or(0);
    if est >= EXACT_COUNT_BELOW {
        return Ok(est);
    }
    let sql = format!(
        "SELECT COUNT(*) FROM {}.{}",
        crate::schema::ident(&db),
        crate::schema::ident(table)
    );
    let n: Option<u64> = side
        .held
        .conn()
        .query_first(sql)
        .await
        .map_err(|e| VdiffError::Failed(format!("counting the rows of `{table}`: {e}")))?;
    Ok(n.unwrap_or(0))
}

pub(crate) struct Snapshots {
    sources: Vec<ShardSide>,
    targets: Vec<ShardSide>,
    positions: BTreeMap<String, Position>,
    workflow: Workflow,
}

async fn connect(t: &TabletRecord, what: &str) -> Result<Conn, VdiffError> {
    let mut c = t.endpoint().connect().await.map_err(|e| {
        VdiffError::Failed(format!(
            "connecting to {what} tablet {} ({}): {e}",
            t.alias,
            t.address()
        ))
    })?;
    // One round trip for the whole session setup.
    c.query_drop(SESSION_SQL.join(";\n")).await.map_err(|e| {
        VdiffError::Failed(format!("preparing the session on tablet {}: {e}", t.alias))
    })?;
    Ok(c)
}

/// Spare snapshot connections per source shard (see [`spare_snapshots`]).
const SPARE_SOURCE_SNAPSHOTS: usize = 1;

/// Attempts at a spare snapshot at the primary snapshot's position.
const SPARE_ATTEMPTS: usize = 3;

/// Up to [`SPARE_SOURCE_SNAPSHOTS`] more snapshots of source tablet `t` at
/// exactly `at`: each is kept only if its own snapshot position is `at`
/// (the same set of transactions, so the same rows), which is immediate
/// when nothing commits meanwhile; under a busy writer the attempts may
/// all miss, and the table is simply checksummed through the one snapshot.
/// `ready` are connections opened beforehand (so the first attempt follows
/// the primary snapshot at once). Best effort: any failure means fewer
/// spares, never a failed VDiff.
async fn spare_snapshots(
    t: &TabletRecord,
    flavor: keyshift_types::Flavor,
    at: &Position,
    mut ready: Vec<Conn>,
) -> Vec<Held> {
    let mut out = Vec::new();
    let mut attempts = 0;
    while out.len() < SPARE_SOURCE_SNAPSHOTS && attempts < SPARE_ATTEMPTS {
        attempts += 1;
        let conn = match ready.pop() {
            Some(c) => c,
            None => match connect(t, "source").await {
                Ok(c) => c,
                Err(_) => break,
            },
        };
        let Ok(snap) =
            keyshift_vrepl::consistent_snapshot(conn, keyshift_vrepl::for_flavor(flavor).as_ref())
                .await
        else {
            break;
        };
        if snap.position() == at {
            out.push(Held::Source(snap));
        } else if let Ok(c) = snap.finish().await {
            let _ = c.disconnect().await;
        }
    }
    out
}

/// Snapshots one source shard's primary `t`: its consistent snapshot with
/// the exact position, and (for the checksum path) spares at that position.
/// The connections are all opened first, so the snapshots follow each
/// other closely.
async fn snapshot_source(
    shard: String,
    t: TabletRecord,
    spares: bool,
) -> Result<ShardSide, VdiffError> {
    let want = if spares { SPARE_SOURCE_SNAPSHOTS } else { 0 };
    let (conn, extra) = tokio::join!(
        connect(&t, "source"),
        futures::future::join_all((0..want).map(|_| connect(&t, "source")))
    );
    let mut conn = conn?;
    let extra: Vec<Conn> = extra.into_iter().flatten().collect();
    let flavor = keyshift_vrepl::detect(&mut conn)
        .await
        .map_err(|e| VdiffError::Failed(format!("tablet {}: {e}", t.alias)))?;
    let snap =
        keyshift_vrepl::consistent_snapshot(conn, keyshift_vrepl::for_flavor(flavor).as_ref())
            .await
            .map_err(|e| VdiffError::Failed(format!("snapshot on source shard {shard}: {e}")))?;
    let spare = if spares {
        spare_snapshots(&t, flavor, snap.position(), extra).await
    } else {
        Vec::new()
    };
    Ok(ShardSide {
        shard,
        db: t.database.clone(),
        held: Held::Source(snap),
        mariadb: flavor == keyshift_types::Flavor::MariaDB,
        spare,
    })
}

/// A target shard's primary, connected (flavor known) but not yet inside a
/// snapshot: opened while the streams catch up, so that once they have,
/// only `START TRANSACTION` is left.
async fn open_target(
    shard: String,
    t: TabletRecord,
) -> Result<(String, TabletRecord, Conn, keyshift_types::Flavor), VdiffError> {
    let mut conn = connect(&t, "target").await?;
    let flavor = keyshift_vrepl::detect(&mut conn)
        .await
        .map_err(|e| VdiffError::Failed(format!("tablet {}: {e}", t.alias)))?;
    Ok((shard, t, conn, flavor))
}

/// Pauses the workflow, snapshots every source shard, catches the streams
/// up to exactly those positions, snapshots every target shard, and lifts
/// the pause again, whatever happened in between.
async fn take_snapshots(
    topo: &dyn Topo,
    workflow: &str,
    opts: &VdiffOptions,
    cancel: &CancellationToken,
) -> Result<Snapshots, VdiffError> {
    let t0 = Instant::now();
    let w = keyshift_workflow::pause(topo, workflow, HOLDER, PAUSE_TTL, PAUSE_WAIT).await?;
    tracing::debug!(
        workflow,
        ms = t0.elapsed().as_millis() as u64,
        "VDiff paused the streams"
    );
    let r = snapshot_paused(topo, &w, opts, cancel).await;
    if let Err(e) = keyshift_workflow::unpause(topo, workflow, HOLDER).await {
        // The pause expires on its own within PAUSE_TTL.
        tracing::warn!(workflow, error = %e, "cannot lift the VDiff pause; it expires by itself");
    }
    r
}

async fn snapshot_paused(
    topo: &dyn Topo,
    w: &Workflow,
    opts: &VdiffOptions,
    cancel: &CancellationToken,
) -> Result<Snapshots, VdiffError> {
    let t0 = Instant::now();
    let wanted: BTreeSet<&str> = w.streams.iter().map(|s| s.source_shard.as_str()).collect();
    let mut source_tablets = Vec::new();
    for (shard, primary) in shard_primaries(topo, &w.source_keyspace)
        .await
        .map_err(|e| VdiffError::Failed(e.to_string()))?
    {
        if !wanted.contains(shard.name.as_str()) {
            continue;
        }
        let t = primary.ok_or_else(|| {
            VdiffError::Failed(format!("source shard {} has no primary", shard.name))
        })?;
        source_tablets.push((shard.name, t));
    }
    if source_tablets.len() != wanted.len() {
        return Err(VdiffError::Failed(format!(
            "source shards {wanted:?} of the workflow are not all in keyspace {}",
            w.source_keyspace
        )));
    }
    let mut target_tablets = Vec::new();
    for (shard, primary) in shard_primaries(topo, &w.target_keyspace)
        .await
        .map_err(|e| VdiffError::Failed(e.to_string()))?
    {
        let t = primary.ok_or_else(|| {
            VdiffError::Failed(format!("target shard {} has no primary", shard.name))
        })?;
        target_tablets.push((shard.name, t));
    }
    // Target connections are opened meanwhile (they are only needed once
    // the streams have caught up).
    let targets_open = tokio::spawn(futures::future::join_all(
        target_tablets
            .into_iter()
            .map(|(shard, t)| open_target(shard, t)),
    ));
    let sources: Vec<ShardSide> = futures::future::try_join_all(
        source_tablets
            .into_iter()
            .map(|(shard, t)| snapshot_source(shard, t, opts.checksum)),
    )
    .await?;
    let positions: BTreeMap<String, Position> = sources
        .iter()
        .filter_map(|s| match &s.held {
            Held::Source(snap) => Some((s.shard.clone(), snap.position().clone())),
            Held::Target(_) => None,
        })
        .collect();
    let t_sources = t0.elapsed();

    // The streams to exactly those positions, keeping the pause alive.
    let catch_cancel = cancel.child_token();
    let mut catch = Box::pin(keyshift_workflow::catch_up(
        topo,
        w,
        &positions,
        &catch_cancel,
    ));
    let deadline = tokio::time::sleep(Duration::from_secs(opts.catch_up_timeout_secs.max(1)));
    tokio::pin!(deadline);
    let mut renew = tokio::time::interval(PAUSE_TTL / 3);
    renew.tick().await;
    let mut failure: Option<String> = None;
    loop {
        tokio::select! {
            r = &mut catch => {
                if let Err(e) = r {
                    failure = failure.or(Some(format!("catching the streams up to the snapshot: {e}")));
                }
                break;
            }
            _ = renew.tick() => {
                if let Err(e) = keyshift_workflow::renew(topo, &w.name, HOLDER, PAUSE_TTL).await {
                    failure = Some(format!("renewing the pause: {e}"));
                    catch_cancel.cancel();
                }
            }
            _ = &mut deadline, if failure.is_none() => {
                failure = Some(format!(
                    "the streams did not reach the snapshot position within {} s",
                    opts.catch_up_timeout_secs
                ));
                catch_cancel.cancel();
            }
        }
    }
    drop(catch);
    let t_caught_up = t0.elapsed();
    let opened = targets_open
        .await
        .map_err(|e| VdiffError::Failed(format!("opening the target connections: {e}")))?;
    if cancel.is_cancelled() {
        return Err(VdiffError::Cancelled);
    }
    if let Some(f) = failure {
        return Err(VdiffError::Failed(f));
    }

    let mut opened_ok = Vec::new();
    for o in opened {
        opened_ok.push(o?);
    }
    let targets: Vec<ShardSide> = futures::future::try_join_all(opened_ok.into_iter().map(
        |(shard, t, mut conn, flavor)| async move {
            conn.query_drop("START TRANSACTION WITH CONSISTENT SNAPSHOT")
                .await
                .map_err(|e| {
                    VdiffError::Failed(format!("snapshot on target shard {shard}: {e}"))
                })?;
            Ok::<_, VdiffError>(ShardSide {
                shard,
                db: t.database.clone(),
                held: Held::Target(conn),
                mariadb: flavor == keyshift_types::Flavor::MariaDB,
                spare: Vec::new(),
            })
        },
    ))
    .await?;
    tracing::debug!(
        workflow = %w.name,
        sources_ms = t_sources.as_millis() as u64,
        caught_up_ms = t_caught_up.as_millis() as u64,
        targets_ms = t0.elapsed().as_millis() as u64,
        "VDiff snapshot phases (cumulative, after the pause)"
    );
    Ok(Snapshots {
        sources,
        targets,
        positions,
        workflow: w.clone(),
    })
}
