//! Switching traffic: `switch-traffic`, `reverse-traffic`, `complete` and
//! `cancel` (Vitess's SwitchTraffic, ReverseTraffic, Complete, Cancel).
//!
//! # Switching primaries (the careful part)
//!
//! ```text
//!  1 lag check ──► 2 hold ──► 3 gates drained ──► 4 pause streams ──► 5 final source positions
//!      ──► 6 targets caught up to exactly them ──► 7 target positions ──► 8 reverse streams
//!          prepared on the source at those positions
//!      ──► 9 ONE topo transaction: routing rules → target, forward record switched_primaries,
//!          reverse workflow running, hold lifted           (point of no return)
//! ```
//!
//! 2. A [`HoldRecord`] on the serving keyspace: every gate holds new
//!    statements for it (they wait; none fails) for at most the hold window.
//! 3. Every live gate acknowledges once nothing is in flight there: no
//!    earlier statement running, no open transaction with work there. From
//!    then on nothing writes the moved tables through any gate.
//! * 4–6. The forward streams are paused and then run to exactly the
//!   source's position, so the targets hold every acknowledged write.
//! * 7–8. The targets are quiet, so their positions are exact; the reverse
//!   workflow's streams (target shard → source shard) are recorded on the
//!   source as fully copied at those positions, so switching back loses
//!   nothing written after the switch.
//!
//! 9. The routing change, the state changes and the lifting of the hold are
//!    one topo transaction: a gate that sees the hold gone sees the new rules
//!    with it (gates read holds before rules), and releases the held
//!    statements to the target.
//!
//! A failure or timeout anywhere before step 9 undoes what was done — hold
//! lifted, forward streams resumed, reverse progress removed — and the
//! application saw only a pause. The steps need the hold, so they must all
//! finish inside its window: the deadline is the smaller of `--timeout` and
//! the window. Gates keep a hold [`HOLD_GRACE_MS`] past its window, so a
//! switch that commits just before its deadline is never raced by a gate
//! releasing statements to the old side.
//!
//! `reverse-traffic` from `switched_primaries` is the same sequence over
//! the reverse workflow: the forward streams resume on the targets from
//! the source's exact position afterwards, so writes made on the target
//! after the switch are on the source after switching back.
//!
//! Replica traffic (`@replica`, `@rdonly`) needs no hold: reads switch with
//! a routing-rule change alone.

use crate::WorkflowError;
use crate::model::{
    Action, Desired, PhaseStamp, State, StreamRecord, Trigger, Workflow, WorkflowType,
    allowed_actions, now_ms, stream_id,
};
use crate::ops::{Result, connect, ident, show};
use crate::pause::{catch_up, pause, unpause, wait_streams_ended};
use keyshift_cluster::model::{
    GATE_INSTANCE_TTL_MS, GateInstance, HoldAck, HoldRecord, TabletRecord, keys,
};
use keyshift_cluster::ops;
use keyshift_topo::{Cond, Op, Topo, TopoError, TopoExt};
use keyshift_types::Position;
use keyshift_vschema::{KeyspaceVSchema, RoutingRule, RoutingRules};
use mysql_async::prelude::*;
use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};
use tokio_util::sync::CancellationToken;

/// Gates keep honouring a hold this long after its window, so that only a
/// switch that died (not one that committed at its deadline) lets them go.
pub const HOLD_GRACE_MS: u64 = keyshift_cluster::model::HOLD_GRACE_MS;

/// `switch-traffic` / `reverse-traffic` options (Vitess's flags).
#[derive(Clone, Debug)]
pub struct SwitchOptions {
    /// Only `@replica`/`@rdonly` reads.
    pub replicas_only: bool,
    /// Refuse to start when a stream lags more than this.
    pub max_lag: Duration,
    /// The whole switch must end within this.
    pub timeout: Duration,
    /// Print the steps; change nothing.
    pub dry_run: bool,
    /// Longest time statements are held.
    pub hold_window: Duration,
    /// Statements held at once per gate; more fail at once.
    pub max_queued: usize,
    /// Tests only: fail right after this step (1–9 of the module doc; 9
    /// fails just before the final transaction), to check that every step
    /// is undone. The CLI sets it from `KEYSHIFT_TEST_FAIL_SWITCH_AFTER`.
    pub fail_after_step: Option<usize>,
}

impl Default for SwitchOptions {
    fn default() -> Self {
        SwitchOptions {
            replicas_only: false,
            max_lag: Duration::from_secs(30),
            timeout: Duration::from_secs(30),
            dry_run: false,
            hold_window: Duration::from_secs(10),
            max_queued: 1000,
            fail_after_step: None,
        }
    }
}

/// What a switch did (or, dry run, would do).
#[derive(Clone, Debug, serde::Serialize)]
pub struct SwitchReport {
    pub workflow: String,
    pub dry_run: bool,
    pub steps: Vec<String>,
    /// The state after the action.
    pub state: State,
    pub duration_ms: u64,
    /// How long statements were held (primary switches only).
    pub held_ms: Option<u64>,
}

impl SwitchReport {
    /// A dry run's answer: the steps, and the state unchanged.
    fn dry(w: &Workflow, steps: Vec<String>) -> SwitchReport {
        SwitchReport {
            workflow: w.name.clone(),
            dry_run: true,
            steps,
            state: w.state,
            duration_ms: 0,
            held_ms: None,
        }
    }
}

/// What `complete` does with the source tables.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CompleteMode {
    #[default]
    Drop,
    KeepData,
    /// `_<table>_old`, as Vitess names them.
    RenameTables,
}

/// The reverse workflow's name.
pub fn reverse_name(name: &str) -> String {
    format!("{name}_reverse")
}

fn server(msg: impl Into<String>) -> WorkflowError {
    WorkflowError::Server(msg.into())
}

fn check_allowed(w: &Workflow, action: Action) -> Result<()> {
    if let Some(of) = &w.reverse_of {
        return Err(WorkflowError::IsReverse {
            name: w.name.clone(),
            of: of.clone(),
            action,
        });
    }
    let allowed = allowed_actions(w.state);
    if allowed.contains(&action) {
        Ok(())
    } else {
        Err(WorkflowError::NotAllowed {
            name: w.name.clone(),
            action,
            state: w.state,
            allowed,
        })
    }
}

// ---------------------------------------------------------------------------
// Routing rules

/// Every name a moved table can be reached by, with its tablet type suffix.
fn names(source: &str, target: &str, t: &str) -> Vec<(String, bool)> {
    let mut v = Vec::new();
    for base in [
        t.to_string(),
        format!("{source}.{t}"),
        format!("{target}.{t}"),
    ] {
        v.push((base.clone(), false));
        v.push((format!("{base}@replica"), true));
        v.push((format!("{base}@rdonly"), true));
    }
    v
}

/// Where the rules send each table: primaries and replicas separately.
fn set_rules(
    rules: &mut RoutingRules,
    source: &str,
    target: &str,
    tables: &[String],
    primaries_to: &str,
    replicas_to: &str,
) {
    for t in tables {
        for (from, replica) in names(source, target, t) {
            rules.rules.retain(|r| r.from_table != from);
            let ks = if replica { replicas_to } else { primaries_to };
            // `source.t` → `source.t` is what happens without a rule.
            if from.starts_with(&format!("{ks}."))
                && from.split('@').next() == Some(&format!("{ks}.{t}"))
            {
                continue;
            }
            rules.rules.push(RoutingRule {
                from_table: from,
                to_tables: vec![format!("{ks}.{t}")],
            });
        }
    }
}

fn clear_rules(rules: &mut RoutingRules, source: &str, target: &str, tables: &[String]) {
    for t in tables {
        for (from, _) in names(source, target, t) {
            rules.rules.retain(|r| r.from_table != from);
        }
    }
}

fn to_json<T: serde::Serialize>(key: &str, v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| {
        WorkflowError::Topo(TopoError::Json {
            key: key.to_string(),
            detail: e.to_string(),
        })
    })
}

// ---------------------------------------------------------------------------
// Positions and tablets

async fn position_of(t: &TabletRecord) -> std::result::Result<Position, String> {
    let mut c = connect(t).await.map_err(|e| e.to_string())?;
    let flavor = keyshift_vrepl::detect(&mut c)
        .await
        .map_err(|e| format!("tablet {}: {e}", t.alias))?;
    let pos = keyshift_vrepl::for_flavor(flavor)
        .current_position(&mut c)
        .await
        .map_err(|e| format!("reading the position of tablet {}: {e}", t.alias))?;
    let _ = c.disconnect().await;
    Ok(pos)
}

/// The primaries of a keyspace by shard name.
async fn primaries(topo: &dyn Topo, ks: &str) -> Result<BTreeMap<String, TabletRecord>> {
    let mut out = BTreeMap::new();
    for (s, p) in ops::shard_primaries(topo, ks).await? {
        let p = p.ok_or_else(|| server(format!("shard {ks}/{} has no primary", s.name)))?;
        out.insert(s.name, p);
    }
    Ok(out)
}

async fn positions(
    topo: &dyn Topo,
    ks: &str,
) -> std::result::Result<BTreeMap<String, Position>, String> {
    let mut out = BTreeMap::new();
    for (shard, t) in primaries(topo, ks).await.map_err(|e| e.to_string())? {
        out.insert(shard, position_of(&t).await?);
    }
    Ok(out)
}

// ---------------------------------------------------------------------------
// Holds

/// Puts the hold and waits for every live gate to acknowledge it.
async fn hold_and_drain(
    topo: &dyn Topo,
    workflow: &str,
    keyspace: &str,
    until_ms: u64,
    max_queued: usize,
) -> std::result::Result<String, String> {
    let id = format!("{workflow}-{:x}", now_ms());
    let rec = HoldRecord {
        workflow: workflow.to_string(),
        id: id.clone(),
        keyspaces: vec![keyspace.to_string()],
        until_ms,
        max_queued,
    };
    topo.put_json(&keys::gate_hold(workflow), &rec, Cond::Any)
        .await
        .map_err(|e| format!("writing the hold: {e}"))?;
    loop {
        let now = now_ms();
        let gates: Vec<GateInstance> = topo
            .list_json::<GateInstance>(keys::GATE_INSTANCES)
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|(_, g, _)| g)
            .filter(|g| g.seen_ms + GATE_INSTANCE_TTL_MS > now)
            .collect();
        let acks: Vec<HoldAck> = topo
            .list_json::<HoldAck>(&keys::gate_acks(workflow))
            .await
            .map_err(|e| e.to_string())?
            .into_iter()
            .map(|(_, a, _)| a)
            .filter(|a| a.hold_id == id)
            .collect();
        let missing: Vec<&str> = gates
            .iter()
            .filter(|g| !acks.iter().any(|a| a.gate == g.id))
            .map(|g| g.addr.as_str())
            .collect();
        if missing.is_empty() {
            return Ok(id);
        }
        if now >= until_ms {
            return Err(format!(
                "gate(s) {} still had statements or open transactions on keyspace {keyspace} when the hold window ended",
                missing.join(", ")
            ));
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

async fn lift_hold(topo: &dyn Topo, workflow: &str) {
    let _ = topo.delete(&keys::gate_hold(workflow), Cond::Any).await;
    if let Ok(acks) = topo.list(&keys::gate_acks(workflow)).await {
        for a in acks {
            let _ = topo.delete(&a.key, Cond::Any).await;
        }
    }
}

// ---------------------------------------------------------------------------
// The record updates

/// CAS-updates a record; the closure may refuse.
async fn update(
    topo: &dyn Topo,
    name: &str,
    f: impl Fn(&mut Workflow) -> Result<()> + Send + Sync,
) -> Result<Workflow> {
    let r = topo
        .update_json::<Workflow, _, WorkflowError>(&keys::workflow(name), |cur| {
            let mut w = cur.ok_or_else(|| WorkflowError::NotFound(name.to_string()))?;
            f(&mut w)?;
            Ok(w)
        })
        .await;
    match r {
        Ok((w, _)) => Ok(w),
        Err(keyshift_topo::UpdateError::Aborted(e)) => Err(e),
        Err(keyshift_topo::UpdateError::Topo(e)) => Err(e.into()),
    }
}

async fn log_event(topo: &dyn Topo, name: &str, by: Trigger, msg: String) {
    let _ = update(topo, name, |w| {
        w.event(by, msg.clone());
        Ok(())
    })
    .await;
}

/// The reverse workflow's record for `w`, running from committed progress.
fn reverse_record(
    w: &Workflow,
    existing: Option<Workflow>,
    source_shards: &BTreeMap<String, TabletRecord>,
    target_shards: &[(String, keyshift_types::KeyRange)],
    source_ranges: &[(String, keyshift_types::KeyRange)],
    by: Trigger,
) -> Workflow {
    let rname = reverse_name(&w.name);
    let now = now_ms();
    let mut streams = Vec::new();
    for (t, tr) in target_shards {
        for (s, sr) in source_ranges {
            if tr.intersects(sr) && source_shards.contains_key(s) {
                streams.push(StreamRecord {
                    id: stream_id(&rname, t, s),
                    source_shard: t.clone(),
                    target_shard: s.clone(),
                    state: String::new(),
                    tables: Vec::new(),
                    position: None,
                    lag_seconds: None,
                    transactions_applied: 0,
                    last_error: None,
                    updated_ms: 0,
                });
            }
        }
    }
    let mut r = existing.unwrap_or_else(|| Workflow {
        name: rname.clone(),
        kind: w.kind,
        source_keyspace: w.target_keyspace.clone(),
        target_keyspace: w.source_keyspace.clone(),
        tables: w
            .tables
            .iter()
            .map(|t| crate::model::TablePlan {
                name: t.name.clone(),
                pk_columns: t.pk_columns.clone(),
                deferred_keys: Vec::new(),
            })
            .collect(),
        options: crate::model::Options {
            stop_after_copy: false,
            ..w.options.clone()
        },
        state: State::Running,
        desired: Desired::Running,
        created_ms: now,
        updated_ms: now,
        phases: vec![PhaseStamp {
            state: State::Running,
            at_ms: now,
            by,
        }],
        error: None,
        events: VecDeque::new(),
        streams: Vec::new(),
        table_progress: Vec::new(),
        copy_done: true,
        generation: 0,
        streams_active: false,
        paused: None,
        reverse_of: Some(w.name.clone()),
        extra: Default::default(),
    });
    r.streams = streams;
    r.streams_active = false;
    r.copy_done = true;
    r.desired = Desired::Running;
    r.error = None;
    r.paused = None;
    r.generation += 1;
    r.enter(
        State::Running,
        by,
        &format!(
            "replicating writes made on {} back to {}",
            w.target_keyspace, w.source_keyspace
        ),
    );
    r
}

/// The record's mirror of its streams says they are stopped (the
/// controller only publishes while they run, so it would keep showing the
/// last "running").
fn mark_streams_stopped(w: &mut Workflow) {
    for s in &mut w.streams {
        s.state = "stopped".into();
        s.lag_seconds = None;
    }
}

fn source_desc(t: &TabletRecord) -> String {
    format!("{}/{}", t.address(), t.database)
}

// ---------------------------------------------------------------------------
// switch-traffic

/// Switches traffic of `name` to the target: replica reads only, or
/// everything (see the module doc).
pub async fn switch_traffic(
    topo: &dyn Topo,
    name: &str,
    opts: &SwitchOptions,
    by: Trigger,
) -> Result<SwitchReport> {
    let started = Instant::now();
    let w = show(topo, name).await?;
    check_allowed(&w, Action::SwitchTraffic)?;
    if opts.replicas_only {
        if w.state != State::Running {
            return Err(server(format!(
                "replica traffic of `{name}` is already switched; run switch-traffic without --replicas-only to switch primaries"
            )));
        }
        return switch_replicas(topo, &w, opts, by, started, true).await;
    }
    let steps = vec![
        format!(
            "check that every stream lags at most {} s",
            opts.max_lag.as_secs()
        ),
        format!(
            "hold statements for keyspace {} at every gate (at most {} s, {} queued per gate)",
            w.source_keyspace,
            opts.hold_window.as_secs(),
            opts.max_queued
        ),
        "wait until no gate has a statement or an open transaction there".into(),
        "pause the workflow's streams".into(),
        format!(
            "read the final position of every {} shard",
            w.source_keyspace
        ),
        "run every stream up to exactly that position".into(),
        format!("read the position of every {} shard", w.target_keyspace),
        format!(
            "prepare reverse workflow {} ({} → {}) at those positions",
            reverse_name(name),
            w.target_keyspace,
            w.source_keyspace
        ),
        format!(
            "in one topo transaction: route {} (primary and replica) to {}, mark the workflow switched_primaries, start the reverse workflow, release held statements",
            w.table_names().join(", "),
            w.target_keyspace
        ),
    ];
    if opts.dry_run {
        return Ok(SwitchReport::dry(&w, steps));
    }
    switch_primaries(topo, &w, opts, by, started, steps).await
}

/// Replica reads to the target (or back), by routing rules alone.
async fn switch_replicas(
    topo: &dyn Topo,
    w: &Workflow,
    opts: &SwitchOptions,
    by: Trigger,
    started: Instant,
    forward: bool,
) -> Result<SwitchReport> {
    let (to, next) = if forward {
        (&w.target_keyspace, State::SwitchedReplicas)
    } else {
        (&w.source_keyspace, State::Running)
    };
    let steps = vec![format!(
        "route @replica and @rdonly reads of {} to {to}",
        w.table_names().join(", ")
    )];
    if opts.dry_run {
        return Ok(SwitchReport::dry(w, steps));
    }
    let expected = w.state;
    txn_rules_and_record(topo, &w.name, |rules, rec| {
        if rec.state != expected {
            return Err(server(format!(
                "workflow `{}` changed state to {} meanwhile; try again",
                rec.name, rec.state
            )));
        }
        set_rules(
            rules,
            &w.source_keyspace,
            &w.target_keyspace,
            &w.table_names(),
            &w.source_keyspace,
            to,
        );
        rec.enter(next, by, &steps[0]);
        Ok(Vec::new())
    })
    .await?;
    Ok(SwitchReport {
        workflow: w.name.clone(),
        dry_run: false,
        steps,
        state: next,
        duration_ms: started.elapsed().as_millis() as u64,
        held_ms: None,
    })
}

/// Reads the routing rules and `name`'s record, lets `edit` change both
/// (returning further ops for the same transaction), and writes it all in
/// one topo transaction conditional on neither having changed meanwhile;
/// retried when one did. `edit` may refuse.
async fn txn_rules_and_record(
    topo: &dyn Topo,
    name: &str,
    edit: impl Fn(&mut RoutingRules, &mut Workflow) -> Result<Vec<Op>> + Send + Sync,
) -> Result<Workflow> {
    for _ in 0..20 {
        let (mut rules, rules_cond) = current_rules(topo).await?;
        let (mut rec, rev) = topo
            .get_json::<Workflow>(&keys::workflow(name))
            .await?
            .ok_or_else(|| WorkflowError::NotFound(name.to_string()))?;
        let extra = edit(&mut rules, &mut rec)?;
        let mut ops = vec![
            Op::Put {
                key: keys::ROUTING_RULES.into(),
                value: to_json(keys::ROUTING_RULES, &rules)?,
                cond: rules_cond,
            },
            Op::Put {
                key: keys::workflow(name),
                value: to_json(&keys::workflow(name), &rec)?,
                cond: Cond::ModRevision(rev),
            },
        ];
        ops.extend(extra);
        match topo.txn(ops).await {
            Ok(_) => return Ok(rec),
            // The rules or the record moved on: read them again. A
            // condition of `edit`'s own ops is the caller's to handle.
            Err(TopoError::CondFailed { key, .. })
                if key == keys::ROUTING_RULES || key == keys::workflow(name) =>
            {
                continue;
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(server("the routing rules kept changing; try again"))
}

async fn current_rules(topo: &dyn Topo) -> Result<(RoutingRules, Cond)> {
    Ok(
        match topo.get_json::<RoutingRules>(keys::ROUTING_RULES).await? {
            Some((r, rev)) => (r, Cond::ModRevision(rev)),
            None => (RoutingRules::default(), Cond::Absent),
        },
    )
}

/// Which way a primary switch goes.
struct Direction<'a> {
    /// The workflow whose streams carry writes to the side being switched
    /// to; it is paused and caught up.
    feeding: &'a Workflow,
    /// The keyspace serving now (held), and the one that will serve.
    from_ks: &'a str,
    to_ks: &'a str,
    holder: &'static str,
}

async fn switch_primaries(
    topo: &dyn Topo,
    w: &Workflow,
    opts: &SwitchOptions,
    by: Trigger,
    started: Instant,
    steps: Vec<String>,
) -> Result<SwitchReport> {
    let dir = Direction {
        feeding: w,
        from_ks: &w.source_keyspace,
        to_ks: &w.target_keyspace,
        holder: "switch-traffic",
    };
    let rname = reverse_name(&w.name);
    let reverse_existing = match show(topo, &rname).await {
        Ok(r) => Some(r),
        Err(WorkflowError::NotFound(_)) => None,
        Err(e) => return Err(e),
    };
    let source_primaries = primaries(topo, &w.source_keyspace).await?;
    let source_ranges: Vec<_> = ops::list_shards(topo, &w.source_keyspace)
        .await?
        .into_iter()
        .map(|s| (s.name, s.key_range))
        .collect();
    let target_ranges: Vec<_> = ops::list_shards(topo, &w.target_keyspace)
        .await?
        .into_iter()
        .map(|s| (s.name, s.key_range))
        .collect();
    let mut reverse = reverse_record(
        w,
        reverse_existing,
        &source_primaries,
        &target_ranges,
        &source_ranges,
        by,
    );
    let prepared_reverse = reverse.clone();
    let commit = |held_rules: &mut RoutingRules, rec: &mut Workflow| {
        set_rules(
            held_rules,
            &w.source_keyspace,
            &w.target_keyspace,
            &w.table_names(),
            &w.target_keyspace,
            &w.target_keyspace,
        );
        rec.paused = None;
        mark_streams_stopped(rec);
        rec.enter(
            State::SwitchedPrimaries,
            by,
            &format!(
                "traffic switched to {}; reverse workflow {rname} replicates back to {}",
                w.target_keyspace, w.source_keyspace
            ),
        );
    };
    let prepare = |target_positions: BTreeMap<String, Position>| {
        let reverse = prepared_reverse.clone();
        let source_primaries = source_primaries.clone();
        let tables = w.table_names();
        async move {
            for s in &reverse.streams {
                let pos = target_positions
                    .get(&s.source_shard)
                    .ok_or_else(|| format!("no position for shard {}", s.source_shard))?;
                let dst = source_primaries
                    .get(&s.target_shard)
                    .ok_or_else(|| format!("shard {} has no primary", s.target_shard))?;
                keyshift_vrepl::start_at(
                    &dst.endpoint(),
                    s.id,
                    &reverse.name,
                    &source_desc(dst),
                    &tables,
                    pos,
                )
                .await
                .map_err(|e| {
                    format!(
                        "preparing reverse stream {} → {}: {e}",
                        s.source_shard, s.target_shard
                    )
                })?;
            }
            Ok::<(), String>(())
        }
    };
    let undo = || {
        let reverse = prepared_reverse.clone();
        let source_primaries = source_primaries.clone();
        async move {
            for s in &reverse.streams {
                if let Some(dst) = source_primaries.get(&s.target_shard) {
                    let _ = keyshift_vrepl::forget_stream(&dst.endpoint(), s.id).await;
                }
            }
        }
    };
    reverse.updated_ms = now_ms();
    let held = run_primary_switch(
        topo,
        &dir,
        opts,
        by,
        &steps,
        &w.target_keyspace,
        prepare,
        undo,
        commit,
        Some(&reverse),
        None,
    )
    .await?;
    Ok(SwitchReport {
        workflow: w.name.clone(),
        dry_run: false,
        steps,
        state: State::SwitchedPrimaries,
        duration_ms: started.elapsed().as_millis() as u64,
        held_ms: Some(held),
    })
}

/// Steps 1–9 of the module doc, for either direction. `prepare` gets the
/// positions of `positions_of` (the keyspace the streams that will feed
/// the old side read) once the feeding streams are caught up. `commit`
/// edits the routing rules and the owner's record (the forward workflow,
/// `owner_name` or `dir.feeding`) inside the final transaction, and `also`
/// (the reverse record) is written in that same transaction.
#[allow(clippy::too_many_arguments)]
async fn run_primary_switch<P, PF, U, UF>(
    topo: &dyn Topo,
    dir: &Direction<'_>,
    opts: &SwitchOptions,
    by: Trigger,
    steps: &[String],
    positions_of: &str,
    prepare: P,
    undo: U,
    commit: impl Fn(&mut RoutingRules, &mut Workflow) + Send + Sync,
    also: Option<&Workflow>,
    owner_name: Option<&str>,
) -> Result<u64>
where
    P: FnOnce(BTreeMap<String, Position>) -> PF,
    PF: std::future::Future<Output = std::result::Result<(), String>>,
    U: Fn() -> UF,
    UF: std::future::Future<Output = ()>,
{
    let owner = owner_name.unwrap_or(&dir.feeding.name).to_string();
    let feeding = &dir.feeding.name;
    // 1. lag: streams that just started (the reverse workflow right after
    // a switch) report theirs within a second or two; wait for it, bounded.
    let lag_deadline = Instant::now() + opts.timeout.min(Duration::from_secs(30));
    loop {
        let current = show(topo, feeding).await?;
        match current.max_lag() {
            Some(l) if l <= opts.max_lag.as_secs() => break,
            Some(l) => {
                return Err(WorkflowError::SwitchFailed(format!(
                    "replication lag is {l} s, above the {} s allowed (--max-replication-lag-allowed); traffic stays on {}",
                    opts.max_lag.as_secs(),
                    dir.from_ks
                )));
            }
            // Streams run in switched_replicas too (should_run covers only
            // the states before any switch).
            None if Instant::now() < lag_deadline
                && current.desired == Desired::Running
                && current.state.is_active()
                && !current.is_paused() =>
            {
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            None => {
                return Err(WorkflowError::SwitchFailed(format!(
                    "the streams of `{feeding}` report no lag (state {}); traffic stays on {}",
                    current.state, dir.from_ks
                )));
            }
        }
    }
    let window = opts.hold_window.min(opts.timeout);
    let hold_start = Instant::now();
    let until_ms = now_ms() + window.as_millis() as u64;
    let deadline = hold_start + window;
    let cancel = CancellationToken::new();
    let injected = |step: usize| -> std::result::Result<(), String> {
        if opts.fail_after_step == Some(step) {
            Err(format!(
                "failure injected after step {step} ({})",
                steps[step - 1]
            ))
        } else {
            Ok(())
        }
    };
    let attempt = async {
        injected(1)?;
        // 2–3
        hold_and_drain(topo, &owner, dir.from_ks, until_ms, opts.max_queued)
            .await
            .map_err(|e| format!("{} — {e}", steps[2]))?;
        injected(2)?;
        injected(3)?;
        // 4
        pause(
            topo,
            feeding,
            dir.holder,
            window + Duration::from_secs(30),
            remaining(deadline),
        )
        .await
        .map_err(|e| format!("{}: {e}", steps[3]))?;
        injected(4)?;
        // 5
        let finals = positions(topo, dir.from_ks)
            .await
            .map_err(|e| format!("{}: {e}", steps[4]))?;
        injected(5)?;
        // 6
        let feeding_now = show(topo, feeding).await.map_err(|e| e.to_string())?;
        catch_up(topo, &feeding_now, &finals, &cancel)
            .await
            .map_err(|e| format!("{}: {e}", steps[5]))?;
        injected(6)?;
        // 7
        let next = positions(topo, positions_of)
            .await
            .map_err(|e| format!("{}: {e}", steps[6]))?;
        injected(7)?;
        // 8
        prepare(next)
            .await
            .map_err(|e| format!("{}: {e}", steps[7]))?;
        injected(8)?;
        injected(9)?;
        Ok::<(), String>(())
    };
    let outcome = match tokio::time::timeout(remaining(deadline), attempt).await {
        Ok(r) => r,
        Err(_) => {
            cancel.cancel();
            Err(format!(
                "the switch did not finish within {} s",
                window.as_secs()
            ))
        }
    };
    if let Err(reason) = outcome {
        return Err(abort(topo, dir, &owner, by, reason, &undo).await);
    }
    // 9. The point of no return: after this transaction commits, the
    // target serves the tables; before it, nothing has changed for the
    // application. It must commit inside the hold window.
    let committed = txn_rules_and_record(topo, &owner, |rules, rec| {
        if Instant::now() >= deadline {
            return Err(server(format!(
                "the switch did not finish within the {} s hold window",
                window.as_secs()
            )));
        }
        commit(rules, rec);
        let mut ops = vec![Op::Delete {
            key: keys::gate_hold(&owner),
            cond: Cond::Any,
        }];
        if let Some(a) = also {
            ops.push(Op::Put {
                key: keys::workflow(&a.name),
                value: to_json(&keys::workflow(&a.name), a)?,
                cond: Cond::Any,
            });
        }
        Ok(ops)
    })
    .await;
    match committed {
        Ok(_) => {
            let held = hold_start.elapsed().as_millis() as u64;
            lift_hold(topo, &owner).await;
            log_event(
                topo,
                &owner,
                by,
                format!("statements were held for {held} ms"),
            )
            .await;
            Ok(held)
        }
        Err(e) => {
            let reason = format!("writing the switch to the topo: {e}");
            Err(abort(topo, dir, &owner, by, reason, &undo).await)
        }
    }
}

fn remaining(deadline: Instant) -> Duration {
    deadline.saturating_duration_since(Instant::now())
}

/// Undoes a primary switch that did not reach its point of no return.
async fn abort<U, UF>(
    topo: &dyn Topo,
    dir: &Direction<'_>,
    owner: &str,
    by: Trigger,
    reason: String,
    undo: &U,
) -> WorkflowError
where
    U: Fn() -> UF,
    UF: std::future::Future<Output = ()>,
{
    lift_hold(topo, owner).await;
    let _ = unpause(topo, &dir.feeding.name, dir.holder).await;
    undo().await;
    let msg = format!(
        "{} failed, nothing changed: {reason}; traffic stays on {}",
        dir.holder, dir.from_ks
    );
    tracing::warn!(workflow = owner, "{msg}");
    log_event(topo, owner, by, msg.clone()).await;
    WorkflowError::SwitchFailed(msg)
}

// ---------------------------------------------------------------------------
// reverse-traffic

/// Switches traffic back to the source: replica reads, or everything over
/// the reverse workflow (see the module doc).
pub async fn reverse_traffic(
    topo: &dyn Topo,
    name: &str,
    opts: &SwitchOptions,
    by: Trigger,
) -> Result<SwitchReport> {
    let started = Instant::now();
    let w = show(topo, name).await?;
    check_allowed(&w, Action::ReverseTraffic)?;
    if w.state == State::SwitchedReplicas {
        return switch_replicas(topo, &w, opts, by, started, false).await;
    }
    let rname = reverse_name(name);
    let reverse = show(topo, &rname).await?;
    let steps = vec![
        format!(
            "check that every stream of {rname} lags at most {} s",
            opts.max_lag.as_secs()
        ),
        format!(
            "hold statements for keyspace {} at every gate (at most {} s)",
            w.target_keyspace,
            opts.hold_window.as_secs()
        ),
        "wait until no gate has a statement or an open transaction there".into(),
        format!("pause {rname}"),
        format!(
            "read the final position of every {} shard",
            w.target_keyspace
        ),
        format!("run every stream of {rname} up to exactly that position"),
        format!("read the position of every {} shard", w.source_keyspace),
        format!(
            "resume the streams of {name} on {} from those positions",
            w.target_keyspace
        ),
        format!(
            "in one topo transaction: route {} back to {}, stop {rname}, resume {name}, release held statements",
            w.table_names().join(", "),
            w.source_keyspace
        ),
    ];
    if opts.dry_run {
        return Ok(SwitchReport::dry(&w, steps));
    }
    let dir = Direction {
        feeding: &reverse,
        from_ks: &w.target_keyspace,
        to_ks: &w.source_keyspace,
        holder: "reverse-traffic",
    };
    let target_primaries = primaries(topo, &w.target_keyspace).await?;
    let forward_streams = w.streams.clone();
    let tables = w.table_names();
    let prepare = |source_positions: BTreeMap<String, Position>| {
        let target_primaries = target_primaries.clone();
        let forward_streams = forward_streams.clone();
        let tables = tables.clone();
        let name = name.to_string();
        async move {
            for s in &forward_streams {
                let pos = source_positions
                    .get(&s.source_shard)
                    .ok_or_else(|| format!("no position for shard {}", s.source_shard))?;
                let dst = target_primaries
                    .get(&s.target_shard)
                    .ok_or_else(|| format!("shard {} has no primary", s.target_shard))?;
                keyshift_vrepl::start_at(
                    &dst.endpoint(),
                    s.id,
                    &name,
                    &source_desc(dst),
                    &tables,
                    pos,
                )
                .await
                .map_err(|e| {
                    format!(
                        "resuming stream {} → {}: {e}",
                        s.source_shard, s.target_shard
                    )
                })?;
            }
            Ok::<(), String>(())
        }
    };
    // Nothing to undo on the targets: the forward streams only resume from
    // the positions written in step 8 once the switch commits.
    let undo = || async {};
    let mut reverse_after = reverse.clone();
    reverse_after.desired = Desired::Stopped;
    reverse_after.paused = None;
    reverse_after.streams_active = false;
    mark_streams_stopped(&mut reverse_after);
    reverse_after.enter(
        State::Stopped,
        by,
        "traffic switched back; not needed until the next switch",
    );
    let commit = |rules: &mut RoutingRules, rec: &mut Workflow| {
        set_rules(
            rules,
            &w.source_keyspace,
            &w.target_keyspace,
            &w.table_names(),
            &w.source_keyspace,
            &w.source_keyspace,
        );
        rec.paused = None;
        rec.desired = Desired::Running;
        rec.generation += 1;
        rec.error = None;
        rec.enter(
            State::Running,
            by,
            &format!(
                "traffic switched back to {}; replicating to {} again",
                w.source_keyspace, w.target_keyspace
            ),
        );
    };
    let _ = dir.to_ks;
    let held = run_primary_switch(
        topo,
        &dir,
        opts,
        by,
        &steps,
        &w.source_keyspace,
        prepare,
        undo,
        commit,
        Some(&reverse_after),
        Some(name),
    )
    .await?;
    Ok(SwitchReport {
        workflow: name.to_string(),
        dry_run: false,
        steps,
        state: State::Running,
        duration_ms: started.elapsed().as_millis() as u64,
        held_ms: Some(held),
    })
}

// ---------------------------------------------------------------------------
// complete and cancel

/// Stops a workflow's streams for good and waits until they ended.
async fn stop_for_good(topo: &dyn Topo, name: &str, by: Trigger, why: &str) -> Result<()> {
    let w = update(topo, name, |w| {
        w.desired = Desired::Stopped;
        w.event(by, why.to_string());
        Ok(())
    })
    .await?;
    if w.streams_active {
        wait_streams_ended(topo, name, Duration::from_secs(30)).await?;
    }
    Ok(())
}

/// Removes a workflow's stream progress from its targets.
async fn forget_streams(topo: &dyn Topo, w: &Workflow) -> Result<()> {
    let targets = primaries(topo, &w.target_keyspace).await?;
    for s in &w.streams {
        if let Some(t) = targets.get(&s.target_shard) {
            keyshift_vrepl::forget_stream(&t.endpoint(), s.id)
                .await
                .map_err(|e| server(format!("removing stream {}: {e}", s.id)))?;
        }
    }
    Ok(())
}

async fn on_every_primary(topo: &dyn Topo, ks: &str, sqls: &[String], doing: &str) -> Result<()> {
    for (shard, t) in primaries(topo, ks).await? {
        let mut c = connect(&t).await?;
        for sql in sqls {
            let sql = sql.replace("{db}", &ident(&t.database));
            c.query_drop(&sql).await.map_err(|e| {
                server(format!(
                    "{doing} on {ks}/{shard} (tablet {}): {sql}: {e}",
                    t.alias
                ))
            })?;
        }
        let _ = c.disconnect().await;
    }
    Ok(())
}

/// Ends a switched workflow: the reverse workflow and the routing-rule
/// artefacts go, and the source tables are dropped, renamed or kept.
pub async fn complete(
    topo: &dyn Topo,
    name: &str,
    mode: CompleteMode,
    by: Trigger,
) -> Result<Workflow> {
    let w = show(topo, name).await?;
    check_allowed(&w, Action::Complete)?;
    // An import never changes tables on the external server: it is the
    // team's own database, and their way back.
    let mode = if w.kind == WorkflowType::Import {
        CompleteMode::KeepData
    } else {
        mode
    };
    let rname = reverse_name(name);
    // The reverse streams first: they write into the source tables.
    match show(topo, &rname).await {
        Ok(r) => {
            stop_for_good(topo, &rname, by, "stopping: the workflow completes").await?;
            forget_streams(topo, &r).await?;
        }
        Err(WorkflowError::NotFound(_)) => {}
        Err(e) => return Err(e),
    }
    forget_streams(topo, &w).await?;
    let sqls: Vec<String> = w
        .tables
        .iter()
        .filter_map(|t| match mode {
            CompleteMode::Drop => Some(format!("DROP TABLE IF EXISTS {{db}}.{}", ident(&t.name))),
            CompleteMode::RenameTables => Some(format!(
                "RENAME TABLE {{db}}.{} TO {{db}}.{}",
                ident(&t.name),
                ident(&format!("_{}_old", t.name))
            )),
            CompleteMode::KeepData => None,
        })
        .collect();
    if mode == CompleteMode::RenameTables {
        // Idempotent: a table renamed by an earlier attempt is not renamed
        // again.
        for (shard, t) in primaries(topo, &w.source_keyspace).await? {
            let mut c = connect(&t).await?;
            for table in &w.tables {
                let exists: Option<String> = c
                    .exec_first(
                        "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_NAME = ?",
                        (&t.database, &table.name),
                    )
                    .await
                    .map_err(|e| server(format!("looking for {} on {}/{shard}: {e}", table.name, w.source_keyspace)))?;
                if exists.is_some() {
                    let sql = format!(
                        "RENAME TABLE {db}.{} TO {db}.{}",
                        ident(&table.name),
                        ident(&format!("_{}_old", table.name)),
                        db = ident(&t.database)
                    );
                    c.query_drop(&sql).await.map_err(|e| {
                        server(format!(
                            "renaming on {}/{shard}: {sql}: {e}",
                            w.source_keyspace
                        ))
                    })?;
                }
            }
            let _ = c.disconnect().await;
        }
    } else if !sqls.is_empty() {
        on_every_primary(
            topo,
            &w.source_keyspace,
            &sqls,
            "dropping the source tables",
        )
        .await?;
    }
    let what = match mode {
        _ if w.kind == WorkflowType::Import => {
            "reverse replication stopped; the external server's tables are untouched and its stored credentials deleted"
        }
        CompleteMode::Drop => "source tables dropped",
        CompleteMode::KeepData => "source tables kept",
        CompleteMode::RenameTables => "source tables renamed to _<table>_old",
    };
    finish(topo, &w, State::Completed, by, what, true).await
}

/// Cancels a workflow whose primaries were not switched: streams and their
/// progress go, the target tables are dropped (unless `keep_data`), and the
/// routing rules are as before the workflow. The source is not touched.
pub async fn cancel(topo: &dyn Topo, name: &str, keep_data: bool, by: Trigger) -> Result<Workflow> {
    let w = show(topo, name).await?;
    check_allowed(&w, Action::Cancel)?;
    stop_for_good(topo, name, by, "stopping: the workflow is cancelled").await?;
    forget_streams(topo, &w).await?;
    let rname = reverse_name(name);
    match show(topo, &rname).await {
        Ok(r) => {
            stop_for_good(topo, &rname, by, "stopping: the workflow is cancelled").await?;
            forget_streams(topo, &r).await?;
        }
        Err(WorkflowError::NotFound(_)) => {}
        Err(e) => return Err(e),
    }
    if !keep_data {
        let sqls: Vec<String> = w
            .tables
            .iter()
            .map(|t| format!("DROP TABLE IF EXISTS {{db}}.{}", ident(&t.name)))
            .collect();
        on_every_primary(
            topo,
            &w.target_keyspace,
            &sqls,
            "dropping the target tables",
        )
        .await?;
    }
    let what = match (keep_data, w.kind == WorkflowType::Import) {
        (true, false) => "cancelled; target tables kept",
        (false, false) => "cancelled; target tables dropped",
        (true, true) => {
            "cancelled; target tables kept, the external server's stored credentials deleted"
        }
        (false, true) => {
            "cancelled; target tables dropped, the external server's stored credentials deleted"
        }
    };
    finish(topo, &w, State::Cancelled, by, what, false).await
}

/// The final topo transaction of complete/cancel: rules cleared, the
/// record's final state, the reverse record removed, and on complete the
/// tables removed from the source keyspace's VSchema (they live in the
/// target's now; listing them in both would make unqualified names
/// ambiguous).
async fn finish(
    topo: &dyn Topo,
    w: &Workflow,
    state: State,
    by: Trigger,
    what: &str,
    drop_from_source_vschema: bool,
) -> Result<Workflow> {
    let rname = reverse_name(&w.name);
    let drop_key = keys::vschema(&w.source_keyspace);
    // An import's external server goes with its workflow: keyspace, shard,
    // VSchema and the tablet that holds the credentials.
    let registration = crate::import::registration_deletes(topo, w).await?;
    let drop_from_source_vschema = drop_from_source_vschema && registration.is_empty();
    // The source VSchema is written conditionally on the revision read
    // here; when it changed meanwhile, read it again.
    for _ in 0..20 {
        let vschema = if drop_from_source_vschema {
            topo.get_json::<KeyspaceVSchema>(&drop_key).await?
        } else {
            None
        };
        let r = txn_rules_and_record(topo, &w.name, |rules, rec| {
            clear_rules(
                rules,
                &w.source_keyspace,
                &w.target_keyspace,
                &w.table_names(),
            );
            rec.desired = Desired::Stopped;
            rec.paused = None;
            mark_streams_stopped(rec);
            rec.enter(state, by, what);
            let mut ops = vec![Op::Delete {
                key: keys::workflow(&rname),
                cond: Cond::Any,
            }];
            ops.extend(registration.iter().cloned());
            if let Some((vs, vrev)) = &vschema {
                let mut vs = vs.clone();
                let before = vs.tables.len();
                for t in w.table_names() {
                    vs.tables.remove(&t);
                }
                if vs.tables.len() != before {
                    ops.push(Op::Put {
                        key: drop_key.clone(),
                        value: to_json(&drop_key, &vs)?,
                        cond: Cond::ModRevision(*vrev),
                    });
                }
            }
            Ok(ops)
        })
        .await;
        match r {
            // The VSchema changed meanwhile: read it again.
            Err(WorkflowError::Topo(TopoError::CondFailed { key, .. })) if key == drop_key => {
                continue;
            }
            other => return other,
        }
    }
    Err(server("the source VSchema kept changing; try again"))
}
