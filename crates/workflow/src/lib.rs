//! Table-movement workflows (Vitess MoveTables): validate, create, and the
//! controller that runs their streams.
//!
//! # States
//!
//! ```text
//!  validate ─► pending ─► copying ─► running ──(issue 6)──► switched_replicas ─► switched_primaries ─► completed
//!                │          │  ▲        │                                                  
//!                │          │  │ start  │ stop                 cancel (issue 6): before switched_primaries ─► cancelled
//!                ▼          ▼  │        ▼
//!              stopped ◄────────────── stopped
//!  any stream failure (after automatic retries of transient ones) ─► error(reason) ─► retry ─► copying | running
//! ```
//!
//! * `pending`: created, no stream has started yet.
//! * `copying`: at least one stream is still copying rows.
//! * `running`: every stream copied its tables (deferred secondary keys are
//!   added on every target shard before entering it) and replicates.
//! * `stopped`: the operator stopped the streams (`stop`), or the copy ended
//!   with `stop_after_copy`. `start` resumes from committed progress.
//! * `error`: a stream failed permanently, or transiently more often than
//!   the retry budget allows; the reason is in the record. The workflow's
//!   other streams are stopped. `retry` resumes from committed progress.
//! * `switched_replicas`, `switched_primaries`, `completed`, `cancelled`:
//!   reserved for switching traffic (issue 6); in the state table now so
//!   that records and the allowed-actions table do not change shape later.
//!
//! Every action checks [`model::allowed_actions`] first; the wrong state
//! gets [`WorkflowError::NotAllowed`] listing what is allowed.
//!
//! # Who does what
//!
//! Actions ([`ops`]) only write intent into the record (`desired`,
//! `generation`, `state`), in one CAS update. The [`controller::Controller`]
//! (one per `keyshift up`) watches the records, runs one
//! [`keyshift_vrepl::run_stream`] per source shard × overlapping target
//! shard for workflows that should run, and writes their progress and the
//! phase changes back. The streams of one source shard get one
//! [`keyshift_vrepl::CopyGroup`], so that they copy from one snapshot and
//! one scan of the source instead of one each. Progress that matters lives on the targets (the
//! vrepl sidecar), so a crash of either loses nothing.

pub mod controller;
pub mod import;
pub mod model;
pub mod ops;
pub mod pause;
pub mod switch;
pub mod validate;

pub use controller::Controller;
pub use import::{ImportRequest, create_import, validate_import};
pub use model::{
    Action, Desired, OnDdl, Options, Pause, State, Trigger, Workflow, WorkflowType, allowed_actions,
};
pub use ops::{create, list, retry, show, start, stop, validate_only};
pub use pause::{catch_up, pause, renew, unpause, wait_streams_ended};
pub use switch::{
    CompleteMode, SwitchOptions, SwitchReport, cancel, complete, reverse_name, reverse_traffic,
    switch_traffic,
};
pub use validate::{CreateRequest, Finding, Severity, ValidationReport, validate};

/// Errors callers branch on: the CLI maps them to exit codes, the API to
/// HTTP statuses (404, 409, 422...).
#[derive(Debug, thiserror::Error)]
pub enum WorkflowError {
    #[error("workflow `{0}` does not exist")]
    NotFound(String),
    #[error("workflow `{0}` already exists")]
    Exists(String),
    /// Validation found problems; nothing was created.
    #[error("validation failed: {}", summarize(&.0.findings))]
    Invalid(ValidationReport),
    #[error(
        "cannot {action} workflow `{name}` in state {state}; allowed now: {}",
        list_actions(allowed)
    )]
    NotAllowed {
        name: String,
        action: Action,
        state: State,
        allowed: Vec<Action>,
    },
    /// Reverse workflows are operated through their forward workflow.
    #[error("workflow `{name}` is the reverse of `{of}`; run {action} on `{of}`")]
    IsReverse {
        name: String,
        of: String,
        action: Action,
    },
    /// A traffic switch was refused (lag) or undone before its point of no
    /// return: nothing changed, traffic stays where it was, and trying
    /// again later is safe.
    #[error("{0}")]
    SwitchFailed(String),
    /// A tablet refused or failed a statement while creating.
    #[error("{0}")]
    Server(String),
    #[error("topo: {0}")]
    Topo(#[from] keyshift_topo::TopoError),
    #[error(transparent)]
    Cluster(#[from] keyshift_cluster::ClusterError),
}

fn summarize(f: &[Finding]) -> String {
    f.iter()
        .map(|f| match &f.table {
            Some(t) => format!("[{t}] {}", f.problem),
            None => f.problem.clone(),
        })
        .collect::<Vec<_>>()
        .join("; ")
}

fn list_actions(a: &[Action]) -> String {
    if a.is_empty() {
        "none".to_string()
    } else {
        a.iter().map(|a| a.as_str()).collect::<Vec<_>>().join(", ")
    }
}
