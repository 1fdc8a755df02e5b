//! What the API answers about workflows: the record as stored plus what a
//! front end would otherwise have to recompute (and could get wrong): the
//! actions allowed now and why the others are not, phase durations, the
//! worst lag, the VDiff report.

use keyshift_cluster::model::{GATE_INSTANCE_TTL_MS, GateInstance, keys};
use keyshift_topo::{Topo, TopoExt};
use keyshift_workflow::model::{ALL_STATES, state_table};
use keyshift_workflow::{Action, State, Workflow, WorkflowType, allowed_actions};
use serde::Serialize;
use serde_json::Value;

/// Every operator action, in the order the dashboard shows its buttons.
pub const ALL_ACTIONS: &[Action] = &[
    Action::Stop,
    Action::Start,
    Action::Retry,
    Action::VerifyData,
    Action::SwitchTraffic,
    Action::ReverseTraffic,
    Action::Complete,
    Action::Cancel,
];

/// One action and whether it can run now; `reason` says why not.
#[derive(Clone, Debug, Serialize, PartialEq)]
pub struct ActionState {
    pub action: Action,
    pub allowed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

/// Milliseconds spent in a workflow's phases; `None` until the phase ends.
#[derive(Clone, Debug, Serialize, PartialEq, Default)]
pub struct Durations {
    /// Creation to completion or cancellation, or to now while it lives.
    pub total_ms: u64,
    /// Creation until the copy ended (first entry into `running`).
    pub copy_ms: Option<u64>,
    /// Creation until `completed`.
    pub complete_ms: Option<u64>,
}

#[derive(Clone, Debug, Serialize)]
pub struct WorkflowView {
    #[serde(flatten)]
    pub workflow: Workflow,
    pub allowed_actions: Vec<Action>,
    pub actions: Vec<ActionState>,
    pub durations: Durations,
    /// The highest lag over the streams that report one.
    pub max_lag_seconds: Option<u64>,
    /// Rows copied over rows estimated, all tables (0–100).
    pub copy_percent: f64,
    /// The VDiff record at `/vdiffs/{name}`, as its writer stored it.
    pub vdiff: Option<Value>,
    /// Imports whose primaries are not switched yet: what switching them
    /// means for the applications (they must write through the gate).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub switch_notice: Option<String>,
}

/// One row of the workflow list.
#[derive(Clone, Debug, Serialize)]
pub struct WorkflowSummary {
    pub name: String,
    #[serde(rename = "type")]
    pub kind: keyshift_workflow::WorkflowType,
    pub state: State,
    pub source_keyspace: String,
    pub target_keyspace: String,
    pub tables: Vec<String>,
    pub created_ms: u64,
    pub updated_ms: u64,
    pub error: Option<String>,
    pub durations: Durations,
    pub max_lag_seconds: Option<u64>,
    pub copy_percent: f64,
    pub allowed_actions: Vec<Action>,
    /// As in [`WorkflowView::switch_notice`].
    #[serde(skip_serializing_if = "Option::is_none")]
    pub switch_notice: Option<String>,
}

/// Whether `w` is an import whose primaries are still to be switched (a
/// reverse workflow is operated through the one it reverses).
pub fn needs_switch_notice(w: &Workflow) -> bool {
    w.kind == WorkflowType::Import
        && w.reverse_of.is_none()
        && !matches!(
            w.state,
            State::SwitchedPrimaries | State::Completed | State::Cancelled
        )
}

/// The addresses of the live gates (their heartbeat records), or "the
/// gate" when none is known.
pub async fn gate_hint(topo: &dyn Topo) -> String {
    let now = keyshift_cluster::model::now_ms();
    let mut addrs: Vec<String> = match topo.list_json::<GateInstance>(keys::GATE_INSTANCES).await {
        Ok(gates) => gates
            .into_iter()
            .map(|(_, g, _)| g)
            .filter(|g| g.seen_ms + GATE_INSTANCE_TTL_MS > now && !g.addr.is_empty())
            .map(|g| g.addr)
            .collect(),
        Err(e) => {
            tracing::debug!("api: cannot list the gates for the switch notice: {e}");
            Vec::new()
        }
    };
    addrs.sort();
    addrs.dedup();
    if addrs.is_empty() {
        "the gate".to_string()
    } else {
        addrs.join(", ")
    }
}

/// The notice for `w`, if it needs one; `gate` is computed only then.
pub async fn switch_notice(topo: &dyn Topo, w: &Workflow) -> Option<String> {
    if needs_switch_notice(w) {
        Some(notice_text(topo).await)
    } else {
        None
    }
}

/// The text of the notice, with the live gates' addresses.
pub async fn notice_text(topo: &dyn Topo) -> String {
    keyshift_workflow::import::switch_notice(&gate_hint(topo).await)
}

/// What the API offers for a workflow: nothing on a reverse workflow (it
/// is operated through the workflow it reverses), else the state table.
pub fn offered(w: &Workflow) -> Vec<Action> {
    if w.reverse_of.is_some() {
        Vec::new()
    } else {
        w.allowed_actions()
    }
}

pub fn workflow_action_states(w: &Workflow) -> Vec<ActionState> {
    match &w.reverse_of {
        Some(of) => ALL_ACTIONS
            .iter()
            .map(|&action| ActionState {
                action,
                allowed: false,
                reason: Some(format!(
                    "this is the reverse workflow of `{of}`: run {action} on `{of}`"
                )),
            })
            .collect(),
        None => action_states(w.state),
    }
}

pub fn action_states(state: State) -> Vec<ActionState> {
    let allowed = allowed_actions(state);
    ALL_ACTIONS
        .iter()
        .map(|&action| {
            if allowed.contains(&action) {
                return ActionState {
                    action,
                    allowed: true,
                    reason: None,
                };
            }
            let reason = if state_table(state).contains(&action) {
                format!("{action} is not available in this build of keyshift yet")
            } else {
                let from: Vec<&str> = ALL_STATES
                    .iter()
                    .filter(|s| state_table(**s).contains(&action))
                    .map(|s| s.as_str())
                    .collect();
                if from.is_empty() {
                    format!("{action} is never allowed")
                } else {
                    format!(
                        "not allowed while the workflow is {state}; {action} needs {}",
                        or_list(&from)
                    )
                }
            };
            ActionState {
                action,
                allowed: false,
                reason: Some(reason),
            }
        })
        .collect()
}

fn or_list(items: &[&str]) -> String {
    match items {
        [] => String::new(),
        [one] => (*one).to_string(),
        [init @ .., last] => format!("{} or {last}", init.join(", ")),
    }
}

pub fn durations(w: &Workflow, now_ms: u64) -> Durations {
    let at = |s: State| w.phases.iter().find(|p| p.state == s).map(|p| p.at_ms);
    let end = w
        .phases
        .iter()
        .rev()
        .find(|p| matches!(p.state, State::Completed | State::Cancelled))
        .map(|p| p.at_ms)
        .filter(|_| matches!(w.state, State::Completed | State::Cancelled));
    let since = |t: u64| t.saturating_sub(w.created_ms);
    Durations {
        total_ms: since(end.unwrap_or(now_ms)),
        copy_ms: at(State::Running).map(since),
        complete_ms: at(State::Completed).map(since),
    }
}

pub fn max_lag(w: &Workflow) -> Option<u64> {
    w.streams.iter().filter_map(|s| s.lag_seconds).max()
}

pub fn copy_percent(w: &Workflow) -> f64 {
    if w.copy_done {
        return 100.0;
    }
    let (copied, estimated) = w.table_progress.iter().fold((0u64, 0u64), |(c, e), t| {
        (c + t.rows_copied, e + t.estimated_rows.max(t.rows_copied))
    });
    if estimated == 0 {
        0.0
    } else {
        (copied as f64 * 100.0 / estimated as f64).min(100.0)
    }
}

/// The view of `w`; `switch_notice` from [`switch_notice`].
pub fn view(
    w: Workflow,
    vdiff: Option<Value>,
    now_ms: u64,
    switch_notice: Option<String>,
) -> WorkflowView {
    WorkflowView {
        switch_notice,
        allowed_actions: offered(&w),
        actions: workflow_action_states(&w),
        durations: durations(&w, now_ms),
        max_lag_seconds: max_lag(&w),
        copy_percent: copy_percent(&w),
        vdiff,
        workflow: w,
    }
}

pub fn summary(w: &Workflow, now_ms: u64, switch_notice: Option<String>) -> WorkflowSummary {
    WorkflowSummary {
        switch_notice,
        name: w.name.clone(),
        kind: w.kind,
        state: w.state,
        source_keyspace: w.source_keyspace.clone(),
        target_keyspace: w.target_keyspace.clone(),
        tables: w.table_names(),
        created_ms: w.created_ms,
        updated_ms: w.updated_ms,
        error: w.error.clone(),
        durations: durations(w, now_ms),
        max_lag_seconds: max_lag(w),
        copy_percent: copy_percent(w),
        allowed_actions: offered(w),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_refused_action_says_why() {
        for &s in ALL_STATES {
            let states = action_states(s);
            assert_eq!(states.len(), ALL_ACTIONS.len());
            for a in &states {
                assert_eq!(a.allowed, a.reason.is_none(), "{s} {:?}", a.action);
                assert_eq!(a.allowed, allowed_actions(s).contains(&a.action));
            }
        }
        let running = action_states(State::Running);
        let start = running
            .iter()
            .find(|a| a.action == Action::Start)
            .expect("start");
        let reason = start.reason.as_deref().expect("reason");
        assert!(reason.contains("while the workflow is running"), "{reason}");
        assert!(reason.contains("stopped"), "{reason}");
    }

    #[test]
    fn durations_follow_the_phases() {
        let w: Workflow = serde_json::from_value(serde_json::json!({
            "name": "w", "type": "move_tables", "source_keyspace": "a", "target_keyspace": "b",
            "tables": [], "options": {}, "state": "completed", "desired": "running",
            "created_ms": 1000, "updated_ms": 0, "streams": [],
            "phases": [
                {"state": "pending", "at_ms": 1000, "by": "api"},
                {"state": "copying", "at_ms": 1500, "by": "controller"},
                {"state": "running", "at_ms": 4000, "by": "controller"},
                {"state": "completed", "at_ms": 9000, "by": "api"}
            ]
        }))
        .expect("record");
        let d = durations(&w, 99_999);
        assert_eq!(d.copy_ms, Some(3000));
        assert_eq!(d.complete_ms, Some(8000));
        assert_eq!(d.total_ms, 8000);
    }
}
