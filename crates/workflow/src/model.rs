//! The workflow record kept in the topo at `/workflows/{name}`, its states
//! and the actions each state allows.
//!
//! The record is the whole truth about a workflow that is not row data: the
//! CLI, the API and the controller all read and CAS-update it, so a
//! restarted `keyshift up` (or another process) knows exactly what to do
//! next. Row progress itself lives on the targets (the vrepl sidecar); the
//! `streams` section here is only its last published mirror, for display.

use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, VecDeque};
use std::fmt;

/// The event log keeps this many entries: enough for a workflow's history,
/// bounded so a flapping stream cannot grow the record without limit.
pub const MAX_EVENTS: usize = 200;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum WorkflowType {
    #[default]
    MoveTables,
    /// Reserved for issue 5 and later.
    Reshard,
    Import,
    Materialize,
}

impl fmt::Display for WorkflowType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            WorkflowType::MoveTables => "move_tables",
            WorkflowType::Reshard => "reshard",
            WorkflowType::Import => "import",
            WorkflowType::Materialize => "materialize",
        })
    }
}

/// Where a workflow is in its life. The later states are reserved here so
/// that records written now stay readable when switching lands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, PartialOrd, Ord)]
#[serde(rename_all = "snake_case")]
pub enum State {
    Pending,
    Copying,
    Running,
    Stopped,
    Error,
    SwitchedReplicas,
    SwitchedPrimaries,
    Completed,
    Cancelled,
}

impl State {
    pub fn as_str(self) -> &'static str {
        match self {
            State::Pending => "pending",
            State::Copying => "copying",
            State::Running => "running",
            State::Stopped => "stopped",
            State::Error => "error",
            State::SwitchedReplicas => "switched_replicas",
            State::SwitchedPrimaries => "switched_primaries",
            State::Completed => "completed",
            State::Cancelled => "cancelled",
        }
    }

    /// States in which the streams run (when desired).
    pub fn is_active(self) -> bool {
        matches!(
            self,
            State::Pending
                | State::Copying
                | State::Running
                | State::SwitchedReplicas
                | State::SwitchedPrimaries
        )
    }

    /// States that still own their tables (another workflow must not move
    /// them meanwhile).
    pub fn holds_tables(self) -> bool {
        !matches!(self, State::Completed | State::Cancelled)
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl std::str::FromStr for State {
    type Err = String;
    fn from_str(s: &str) -> Result<State, String> {
        ALL_STATES
            .iter()
            .copied()
            .find(|st| st.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "unknown state `{s}`: one of {}",
                    ALL_STATES
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                )
            })
    }
}

pub const ALL_STATES: &[State] = &[
    State::Pending,
    State::Copying,
    State::Running,
    State::Stopped,
    State::Error,
    State::SwitchedReplicas,
    State::SwitchedPrimaries,
    State::Completed,
    State::Cancelled,
];

/// What the operator wants; the controller makes the streams follow it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Desired {
    Running,
    Stopped,
}

/// An operator action on a workflow.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    Stop,
    Start,
    Retry,
    /// Reserved: issue 5 (VDiff).
    VerifyData,
    /// Reserved: issue 6.
    SwitchTraffic,
    ReverseTraffic,
    Complete,
    Cancel,
}

impl Action {
    pub fn as_str(self) -> &'static str {
        match self {
            Action::Stop => "stop",
            Action::Start => "start",
            Action::Retry => "retry",
            Action::VerifyData => "verify-data",
            Action::SwitchTraffic => "switch-traffic",
            Action::ReverseTraffic => "reverse-traffic",
            Action::Complete => "complete",
            Action::Cancel => "cancel",
        }
    }

    /// Whether this build implements the action; the reserved ones are in
    /// the state table already so the table is reviewed once, but are not
    /// offered until they exist.
    pub fn implemented(self) -> bool {
        matches!(
            self,
            Action::Stop
                | Action::Start
                | Action::Retry
                | Action::VerifyData
                | Action::SwitchTraffic
                | Action::ReverseTraffic
                | Action::Complete
                | Action::Cancel
        )
    }
}

impl fmt::Display for Action {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The full state × action table (implemented or not). See the crate doc.
pub fn state_table(state: State) -> &'static [Action] {
    use Action::*;
    match state {
        State::Pending | State::Copying => &[Stop, Cancel],
        State::Running => &[Stop, VerifyData, SwitchTraffic, Cancel],
        State::Stopped => &[Start, VerifyData, Cancel],
        State::Error => &[Retry, Stop, Cancel],
        State::SwitchedReplicas => &[SwitchTraffic, ReverseTraffic, Cancel],
        State::SwitchedPrimaries => &[ReverseTraffic, Complete],
        State::Completed | State::Cancelled => &[],
    }
}

/// The actions an operator may run now: what every action checks first,
/// and what the CLI/API/dashboard offer.
pub fn allowed_actions(state: State) -> Vec<Action> {
    state_table(state)
        .iter()
        .copied()
        .filter(|a| a.implemented())
        .collect()
}

/// Who made a change: recorded with every phase and event so the history
/// answers "why did this happen".
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Trigger {
    Cli,
    Api,
    Controller,
}

impl fmt::Display for Trigger {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Trigger::Cli => "cli",
            Trigger::Api => "api",
            Trigger::Controller => "controller",
        })
    }
}

/// `on_ddl` as stored and typed by users (Vitess's spellings).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum OnDdl {
    Ignore,
    #[default]
    Stop,
    Exec,
    ExecIgnore,
}

impl std::str::FromStr for OnDdl {
    type Err = String;
    fn from_str(s: &str) -> Result<OnDdl, String> {
        match s.to_ascii_lowercase().as_str() {
            "ignore" => Ok(OnDdl::Ignore),
            "stop" => Ok(OnDdl::Stop),
            "exec" => Ok(OnDdl::Exec),
            "exec_ignore" => Ok(OnDdl::ExecIgnore),
            _ => Err(format!(
                "unknown on_ddl `{s}`: use stop, ignore, exec or exec_ignore"
            )),
        }
    }
}

impl From<OnDdl> for keyshift_vrepl::OnDdl {
    fn from(o: OnDdl) -> Self {
        match o {
            OnDdl::Ignore => keyshift_vrepl::OnDdl::Ignore,
            OnDdl::Stop => keyshift_vrepl::OnDdl::Stop,
            OnDdl::Exec => keyshift_vrepl::OnDdl::Exec,
            OnDdl::ExecIgnore => keyshift_vrepl::OnDdl::ExecIgnore,
        }
    }
}

fn default_true() -> bool {
    true
}
fn default_batch() -> usize {
    10_000
}
fn default_cycle_ms() -> u64 {
    60 * 60 * 1000
}
fn default_retries() -> u32 {
    5
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Options {
    /// Create target tables without secondary keys and add them after the
    /// copy: bulk inserts into a bare clustered index are much faster.
    #[serde(default = "default_true")]
    pub defer_secondary_keys: bool,
    #[serde(default)]
    pub on_ddl: OnDdl,
    /// Stop (state `stopped`) once every stream has copied, instead of
    /// replicating.
    #[serde(default)]
    pub stop_after_copy: bool,
    /// Rows per copy batch (one target transaction).
    #[serde(default = "default_batch")]
    pub copy_batch_rows: usize,
    /// How long one copy snapshot stays open; tests make it short to
    /// exercise the catch-up between cycles.
    #[serde(default = "default_cycle_ms")]
    pub copy_cycle_ms: u64,
    /// Transient stream errors retried automatically before `error`.
    #[serde(default = "default_retries")]
    pub max_transient_retries: u32,
    /// Tables a stream copies at once (each with its own writer session on
    /// the target); 0 (the default): half the machine's CPUs, 1 to 4.
    #[serde(default)]
    pub copy_parallel_tables: usize,
}

impl Options {
    /// [`Options::copy_parallel_tables`] resolved: within the machine's
    /// limits, since the target's work per row is most of a copy's cost.
    pub fn copy_parallel_tables(&self) -> usize {
        match self.copy_parallel_tables {
            0 => std::thread::available_parallelism()
                .map(|n| n.get() / 2)
                .unwrap_or(1)
                .clamp(1, 4),
            n => n.min(8),
        }
    }
}

impl Default for Options {
    fn default() -> Self {
        Options {
            defer_secondary_keys: true,
            on_ddl: OnDdl::Stop,
            stop_after_copy: false,
            copy_batch_rows: default_batch(),
            copy_cycle_ms: default_cycle_ms(),
            max_transient_retries: default_retries(),
            copy_parallel_tables: 0,
        }
    }
}

/// Who holds a workflow's streams, and until when.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Pause {
    /// "vdiff", "switch-traffic"...: shown to users, and only the holder
    /// lifts its own pause.
    pub by: String,
    /// Unix milliseconds.
    pub until_ms: u64,
}

/// When a phase was entered and by whom.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct PhaseStamp {
    pub state: State,
    /// Unix milliseconds.
    pub at_ms: u64,
    pub by: Trigger,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Event {
    pub at_ms: u64,
    pub by: Trigger,
    pub message: String,
}

/// One table's last published copy progress on one stream.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct StreamTable {
    pub name: String,
    pub rows_copied: u64,
    pub rows_scanned: u64,
    pub estimated_rows: u64,
    pub done: bool,
}

/// One source shard → target shard pipe and its last published progress.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StreamRecord {
    /// The key of the stream's progress on its target server.
    pub id: u64,
    pub source_shard: String,
    pub target_shard: String,
    /// copying, running, stopped, error (as the stream reported it).
    #[serde(default)]
    pub state: String,
    #[serde(default)]
    pub tables: Vec<StreamTable>,
    /// The committed source position (GTID set).
    #[serde(default)]
    pub position: Option<String>,
    #[serde(default)]
    pub lag_seconds: Option<u64>,
    #[serde(default)]
    pub transactions_applied: u64,
    #[serde(default)]
    pub last_error: Option<String>,
    #[serde(default)]
    pub updated_ms: u64,
}

/// Per-table progress summed over streams, as shown to users.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, Default)]
pub struct TableSummary {
    pub name: String,
    pub rows_copied: u64,
    pub rows_scanned: u64,
    pub estimated_rows: u64,
    pub percent: f64,
    pub done: bool,
    /// Seconds until the copy of this table ends at the recent rate.
    #[serde(default)]
    pub eta_seconds: Option<u64>,
}

/// What the workflow moves per table, fixed at create time.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TablePlan {
    pub name: String,
    /// The primary key (or unique NOT NULL key) the copy orders by.
    pub pk_columns: Vec<String>,
    /// Secondary key definitions stripped from the target's CREATE and added
    /// after the copy (`KEY ...`, `UNIQUE KEY ...`), empty when not deferred.
    #[serde(default)]
    pub deferred_keys: Vec<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Workflow {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: WorkflowType,
    pub source_keyspace: String,
    pub target_keyspace: String,
    pub tables: Vec<TablePlan>,
    pub options: Options,
    pub state: State,
    pub desired: Desired,
    pub created_ms: u64,
    pub updated_ms: u64,
    pub phases: Vec<PhaseStamp>,
    #[serde(default)]
    pub error: Option<String>,
    #[serde(default)]
    pub events: VecDeque<Event>,
    pub streams: Vec<StreamRecord>,
    #[serde(default)]
    pub table_progress: Vec<TableSummary>,
    /// Every stream finished its copy and the deferred keys are in place.
    #[serde(default)]
    pub copy_done: bool,
    /// Bumped by `start` and `retry` so the controller restarts the
    /// workflow's streams even if it never saw them stop.
    #[serde(default)]
    pub generation: u64,
    /// True from the moment the node's controller starts this workflow's
    /// streams until they have all ended. `stop` waits for false, so that
    /// once it returns nothing more is applied to the targets.
    #[serde(default)]
    pub streams_active: bool,
    /// Set while VDiff or a traffic switch holds the streams: they do not
    /// run while it is set and unexpired. It expires so that a holder that
    /// crashed cannot leave the workflow paused for good.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub paused: Option<Pause>,
    /// Set on a reverse workflow (created by switch-traffic): the forward
    /// workflow it belongs to, through which it is operated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reverse_of: Option<String>,
    /// Free-form details for later workflow types.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub extra: BTreeMap<String, serde_json::Value>,
}

pub fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

impl Workflow {
    pub fn table_names(&self) -> Vec<String> {
        self.tables.iter().map(|t| t.name.clone()).collect()
    }

    pub fn event(&mut self, by: Trigger, message: impl Into<String>) {
        let at_ms = now_ms();
        self.events.push_back(Event {
            at_ms,
            by,
            message: message.into(),
        });
        while self.events.len() > MAX_EVENTS {
            self.events.pop_front();
        }
        self.updated_ms = at_ms;
    }

    /// Moves to `state`, stamping the phase and logging it; no-op when
    /// already there.
    pub fn enter(&mut self, state: State, by: Trigger, why: &str) {
        if self.state == state {
            return;
        }
        let from = self.state;
        self.state = state;
        self.phases.push(PhaseStamp {
            state,
            at_ms: now_ms(),
            by,
        });
        let msg = if why.is_empty() {
            format!("{from} → {state}")
        } else {
            format!("{from} → {state}: {why}")
        };
        self.event(by, msg);
    }

    /// Whether the controller should run this workflow's streams now.
    pub fn should_run(&self) -> bool {
        // After a replicas-only switch, reads are served by the target's
        // replicas while writes still reach the source: the streams must go
        // on replicating, or those reads grow stale.
        self.desired == Desired::Running
            && matches!(
                self.state,
                State::Pending | State::Copying | State::Running | State::SwitchedReplicas
            )
            && !self.is_paused()
    }

    /// Whether an unexpired pause holds the streams.
    pub fn is_paused(&self) -> bool {
        self.paused.as_ref().is_some_and(|p| p.until_ms > now_ms())
    }

    /// The largest lag over streams, when every stream reports one.
    pub fn max_lag(&self) -> Option<u64> {
        let mut max = 0;
        for s in &self.streams {
            max = max.max(s.lag_seconds?);
        }
        (!self.streams.is_empty()).then_some(max)
    }

    pub fn allowed_actions(&self) -> Vec<Action> {
        allowed_actions(self.state)
    }
}

/// The stream id of a source shard → target shard pipe: stable (it keys
/// committed progress on the target, so a restarted controller must find
/// it again) and unique per target server across workflows.
pub fn stream_id(workflow: &str, source_shard: &str, target_shard: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in format!("{workflow}\0{source_shard}\0{target_shard}").bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h & 0x7fff_ffff_ffff_ffff
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_actions_are_not_offered() {
        assert!(allowed_actions(State::Running).contains(&Action::VerifyData));
        assert!(allowed_actions(State::Stopped).contains(&Action::VerifyData));
        assert_eq!(
            allowed_actions(State::Error),
            vec![Action::Retry, Action::Stop, Action::Cancel]
        );
        assert_eq!(
            allowed_actions(State::SwitchedPrimaries),
            vec![Action::ReverseTraffic, Action::Complete]
        );
        assert!(allowed_actions(State::Completed).is_empty());
    }

    #[test]
    fn stream_ids_differ_per_pipe() {
        assert_ne!(stream_id("w", "0", "-80"), stream_id("w", "0", "80-"));
        assert_ne!(stream_id("w", "0", "-80"), stream_id("v", "0", "-80"));
        assert_eq!(stream_id("w", "0", "-80"), stream_id("w", "0", "-80"));
    }

    #[test]
    fn states_round_trip_as_text() {
        for s in ALL_STATES {
            assert_eq!(s.as_str().parse::<State>().unwrap(), *s);
            let json = serde_json::to_string(s).unwrap();
            assert_eq!(json, format!("\"{}\"", s.as_str()));
        }
    }

    #[test]
    fn the_event_log_is_bounded() {
        let mut w: Workflow = serde_json::from_value(serde_json::json!({
            "name": "w", "type": "move_tables", "source_keyspace": "a", "target_keyspace": "b",
            "tables": [], "options": {}, "state": "pending", "desired": "running",
            "created_ms": 0, "updated_ms": 0, "phases": [], "streams": []
        }))
        .unwrap();
        for i in 0..(MAX_EVENTS + 50) {
            w.event(Trigger::Controller, format!("e{i}"));
        }
        assert_eq!(w.events.len(), MAX_EVENTS);
        assert_eq!(
            w.events.back().unwrap().message,
            format!("e{}", MAX_EVENTS + 49)
        );
    }
}
