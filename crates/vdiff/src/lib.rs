//! VDiff: proves that a workflow's target rows equal its source rows at one
//! logical point in time, while the application keeps writing and the
//! streams keep replicating (Vitess's VDiff, `keyshift workflow
//! verify-data`).
//!
//! # Algorithm
//!
//! 1. **One logical point.** The workflow is paused (holder `vdiff`): the
//!    controller stops its streams. A consistent snapshot is opened on
//!    every source shard primary, each with its exact GTID position. The
//!    streams are then run to *exactly* those positions
//!    ([`keyshift_workflow::catch_up`]) while the pause lease is renewed,
//!    and a consistent snapshot is opened on every target shard primary.
//!    At that instant each target holds precisely what its source
//!    snapshots hold (filtered by key range), nothing more and nothing
//!    less. The pause is lifted at once, on every path, error or not: the
//!    streams resume from their committed progress, and the snapshots keep
//!    seeing the frozen point however long the comparison takes.
//! 2. **Merge comparison.** Per table, every source shard and every target
//!    shard is read in primary-key order, in batches
//!    (`WHERE key > last ORDER BY key LIMIT n`), each through its own
//!    snapshot connection and reader task, at most one batch ahead. A
//!    k-way merge ([`merge`]) walks the union of keys; memory is bounded by
//!    shards × batch size, whatever the table's size.
//! 3. **Meaning, not bytes.** Keys compare as the servers order them
//!    ([`compare`]): character keys by the server's own `WEIGHT_STRING`
//!    under the column's collation with PAD SPACE semantics, so `'a'` on
//!    the source and `'A'` on a target under a `_ci` collation are one row
//!    (reported as a value difference, never as a missing plus an extra
//!    row). Values compare by meaning: JSON as JSON documents, DECIMAL as
//!    exact numbers, FLOAT/DOUBLE bit for bit (the binary protocol carries
//!    them exactly), the rest exactly as stored. The readers verify that
//!    each server's order agrees with the merge's comparison and fail
//!    rather than report differences that are not there.
//! 4. **Report.** Per table: keys compared, matching, missing on target,
//!    extra on target, mismatched (with the differing columns), misplaced
//!    (on a target shard whose key range excludes the row's keyspace id),
//!    up to N samples of each; `has_mismatch`; when it ran. Results older
//!    than 24 hours are shown as stale.
//!
//! # Resuming
//!
//! Progress lives in the topo record `/vdiffs/{workflow}`
//! ([`VdiffRecord`]): each table's counters are persisted together with
//! the last key they cover, in one write. After a crash, a stop/resume or
//! a node restart, the runner takes new snapshots (step 1 again, at a new
//! point) and continues each unfinished table strictly after its last key.
//! That is still a correct verification: every key is compared exactly
//! once, and each comparison is made between a source snapshot and target
//! snapshots taken at one logical point, so a reported difference is a
//! real difference at that point, and a key reported equal was equal at
//! its point. Rows before the last key were verified at an earlier point
//! than rows after it, exactly as if the table had been verified in two
//! ranges by two VDiffs; a change replicated between the two points is
//! verified by neither range only in the sense that any later change is
//! verified by no earlier VDiff.
//!
//! # Where it runs
//!
//! [`start`], [`stop`] and [`resume`] (the CLI and the API) only write
//! intent into the record. [`VdiffController`], one per `keyshift up`,
//! follows `/vdiffs/`, claims requested VDiffs (an expiring claim, so a
//! dead node's work is taken over) and runs them in the background.

mod checksum;
pub mod compare;
pub mod controller;
mod coordinator;
mod fast;
pub mod merge;
mod reader;
pub mod record;
pub mod schema;

pub use controller::VdiffController;
pub use coordinator::HOLDER;
pub use record::{
    ColumnDiff, Desired, DiffKind, KeyValue, Sample, TableReport, TableState, VdiffOptions,
    VdiffRecord, VdiffState,
};

use keyshift_cluster::model::keys;
use keyshift_topo::{Topo, TopoError, TopoExt, UpdateError};
use keyshift_workflow::{Action, Trigger, Workflow, WorkflowError};
use record::now_ms;

/// Errors callers branch on (the CLI maps them to exit codes, the API to
/// statuses).
#[derive(Debug, thiserror::Error)]
pub enum VdiffError {
    /// No such workflow, or verify-data is not allowed in its state.
    #[error(transparent)]
    Workflow(#[from] WorkflowError),
    #[error("no VDiff has been run for workflow `{0}`")]
    NotFound(String),
    /// The VDiff is in a state where the action makes no sense.
    #[error("the VDiff of workflow `{workflow}` is {state}: {hint}")]
    WrongState {
        workflow: String,
        state: VdiffState,
        hint: String,
    },
    #[error(
        "workflow `{0}` has not finished copying; verify-data compares tables once every stream replicates"
    )]
    CopyNotDone(String),
    #[error("table `{table}` is not moved by workflow `{workflow}` (it moves: {tables})")]
    UnknownTable {
        workflow: String,
        table: String,
        tables: String,
    },
    #[error("topo: {0}")]
    Topo(#[from] TopoError),
    /// The two sides cannot be compared as they are (a column missing, a
    /// different collation...).
    #[error("schema: {0}")]
    Schema(String),
    #[error("{0}")]
    Failed(String),
    #[error("cancelled")]
    Cancelled,
    /// Another runner owns the VDiff now.
    #[error("the VDiff was taken over by another runner")]
    Lost,
}

pub type Result<T, E = VdiffError> = std::result::Result<T, E>;

/// The workflow, if verify-data is allowed in its state (the state table's
/// answer, as for every workflow action) and its copy has finished.
pub(crate) async fn check_workflow(topo: &dyn Topo, name: &str) -> Result<Workflow> {
    let w = keyshift_workflow::show(topo, name).await?;
    let allowed = w.allowed_actions();
    if !allowed.contains(&Action::VerifyData) {
        return Err(WorkflowError::NotAllowed {
            name: name.to_string(),
            action: Action::VerifyData,
            state: w.state,
            allowed,
        }
        .into());
    }
    if !w.copy_done {
        return Err(VdiffError::CopyNotDone(name.to_string()));
    }
    Ok(w)
}

/// Requests a new VDiff of `workflow` (replacing a finished, stopped or
/// failed one); a running node's [`VdiffController`] runs it.
pub async fn start(
    topo: &dyn Topo,
    workflow: &str,
    mut options: VdiffOptions,
    trigger: Trigger,
) -> Result<VdiffRecord> {
    let w = check_workflow(topo, workflow).await?;
    let names = w.table_names();
    let tables = match &options.tables {
        None => names.clone(),
        Some(list) => {
            let mut out: Vec<String> = Vec::new();
            for t in list {
                let t = t.trim();
                if t.is_empty() || out.iter().any(|x| x == t) {
                    continue;
                }
                if !names.iter().any(|n| n == t) {
                    return Err(VdiffError::UnknownTable {
                        workflow: workflow.to_string(),
                        table: t.to_string(),
                        tables: names.join(", "),
                    });
                }
                out.push(t.to_string());
            }
            if out.is_empty() { names.clone() } else { out }
        }
    };
    options.tables = Some(tables.clone());
    options.batch_rows = options.batch_rows.max(1);
    options.chunk_rows = options.chunk_rows.max(1);
    let now = now_ms();
    let fresh = VdiffRecord {
        workflow: workflow.to_string(),
        id: format!("{now}-{}", std::process::id()),
        state: VdiffState::Pending,
        desired: Desired::Run,
        options,
        trigger,
        requested_ms: now,
        started_ms: None,
        completed_ms: None,
        updated_ms: now,
        error: None,
        owner: None,
        rounds: Vec::new(),
        tables: tables.iter().map(|t| TableReport::new(t)).collect(),
        has_mismatch: false,
        stale: false,
    };
    let r = topo
        .update_json::<VdiffRecord, _, VdiffError>(&keys::vdiff(workflow), |cur| {
            if let Some(cur) = cur
                && cur.state.is_active()
                && cur.desired == Desired::Run
            {
                return Err(VdiffError::WrongState {
                    workflow: workflow.to_string(),
                    state: cur.state,
                    hint: "one VDiff at a time; wait for it, or stop it first".into(),
                });
            }
            Ok(fresh.clone())
        })
        .await;
    finish(r)
}

fn finish(r: Result<(VdiffRecord, u64), UpdateError<VdiffError>>) -> Result<VdiffRecord> {
    match r {
        Ok((rec, _)) => Ok(rec),
        Err(UpdateError::Aborted(e)) => Err(e),
        Err(UpdateError::Topo(e)) => Err(e.into()),
    }
}

/// The VDiff record of `workflow` (its progress or report), with `stale`
/// set when it completed more than 24 hours ago.
pub async fn show(topo: &dyn Topo, workflow: &str) -> Result<Option<VdiffRecord>> {
    Ok(topo
        .get_json::<VdiffRecord>(&keys::vdiff(workflow))
        .await?
        .map(|(mut r, _)| {
            r.stale = r.is_stale_at(now_ms());
            r
        }))
}

/// Asks the runner to stop; progress is kept and [`resume`] continues
/// after the last compared keys. Stopping a stopped VDiff is a no-op.
pub async fn stop(topo: &dyn Topo, workflow: &str, _trigger: Trigger) -> Result<VdiffRecord> {
    let r = topo
        .update_json::<VdiffRecord, _, VdiffError>(&keys::vdiff(workflow), |cur| {
            let mut rec = cur.ok_or_else(|| VdiffError::NotFound(workflow.to_string()))?;
            match rec.state {
                VdiffState::Pending | VdiffState::Running => {
                    rec.desired = Desired::Stop;
                    // Nobody is working on it: stopped at once.
                    if rec.owner.is_none() {
                        rec.state = VdiffState::Stopped;
                    }
                }
                VdiffState::Stopped => {}
                s => {
                    return Err(VdiffError::WrongState {
                        workflow: workflow.to_string(),
                        state: s,
                        hint: "there is nothing to stop".into(),
                    });
                }
            }
            rec.updated_ms = now_ms();
            Ok(rec)
        })
        .await;
    finish(r)
}

/// Continues a stopped or failed VDiff after its last compared keys, on
/// new snapshots.
pub async fn resume(topo: &dyn Topo, workflow: &str, _trigger: Trigger) -> Result<VdiffRecord> {
    check_workflow(topo, workflow).await?;
    let r = topo
        .update_json::<VdiffRecord, _, VdiffError>(&keys::vdiff(workflow), |cur| {
            let mut rec = cur.ok_or_else(|| VdiffError::NotFound(workflow.to_string()))?;
            match rec.state {
                VdiffState::Stopped | VdiffState::Error => {}
                VdiffState::Pending | VdiffState::Running if rec.desired == Desired::Stop => {}
                s => {
                    return Err(VdiffError::WrongState {
                        workflow: workflow.to_string(),
                        state: s,
                        hint: if s == VdiffState::Completed {
                            "start a new one instead".into()
                        } else {
                            "it is running already".into()
                        },
                    });
                }
            }
            rec.desired = Desired::Run;
            if rec.owner.is_none() {
                rec.state = VdiffState::Pending;
            }
            rec.error = None;
            rec.updated_ms = now_ms();
            Ok(rec)
        })
        .await;
    finish(r)
}

#[cfg(test)]
mod server_tests;
