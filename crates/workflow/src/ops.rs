//! The library calls behind the CLI and the API: create, stop, start,
//! retry, show, list. Each action reads the record, checks the state table
//! and CAS-writes the new intent; the controller does the work.

use crate::WorkflowError;
use crate::model::{
    Action, Desired, PhaseStamp, State, StreamRecord, Trigger, Workflow, WorkflowType,
    allowed_actions, now_ms, stream_id,
};
use crate::validate::{CreateRequest, ValidationReport, check, check_with};
use keyshift_cluster::model::{TabletRecord, keys};
use keyshift_topo::{Cond, Op, Topo, TopoError, TopoExt, UpdateError};
use keyshift_vschema::{RoutingRule, RoutingRules};
use mysql_async::prelude::*;
use std::collections::VecDeque;

pub type Result<T, E = WorkflowError> = std::result::Result<T, E>;

/// Validates, creates the target schema, then writes the routing rules and
/// the workflow record in one topo transaction. Nothing is created when
/// validation fails.
pub async fn create(topo: &dyn Topo, req: &CreateRequest) -> Result<Workflow> {
    create_with(topo, req, WorkflowType::MoveTables, None, None, Vec::new()).await
}

/// [`create`] for any table-movement kind. `source_override` gives the
/// source shards instead of reading them from the topo, and `extra_ops` are
/// written in the same topo transaction as the record (an import registers
/// its external source there, so that a failed create leaves nothing).
pub(crate) async fn create_with(
    topo: &dyn Topo,
    req: &CreateRequest,
    kind: WorkflowType,
    source_override: Option<Vec<(keyshift_cluster::model::ShardRecord, TabletRecord)>>,
    target_vschema_override: Option<&keyshift_vschema::KeyspaceVSchema>,
    extra_ops: Vec<Op>,
) -> Result<Workflow> {
    let (report, plan) = check_with(topo, req, source_override, target_vschema_override).await?;
    let Some(mut plan) = plan else {
        return Err(WorkflowError::Invalid(report));
    };
    let Some((_, first_source)) = plan.source.first().cloned() else {
        return Err(WorkflowError::Invalid(report));
    };

    // Target schema, from the first source shard's definitions.
    let mut src = connect(&first_source).await?;
    for t in &mut plan.tables {
        let row: Option<(String, String)> = src
            .query_first(format!(
                "SHOW CREATE TABLE {}.{}",
                ident(&first_source.database),
                ident(&t.name)
            ))
            .await
            .map_err(|e| {
                server(
                    &first_source,
                    &format!("reading the definition of `{}`", t.name),
                    e,
                )
            })?;
        let (_, create_sql) = row.ok_or_else(|| {
            WorkflowError::Server(format!("SHOW CREATE TABLE `{}` returned nothing", t.name))
        })?;
        let (full, stripped, deferred) = if req.options.defer_secondary_keys {
            let (s, d) = strip_secondary_keys(&create_sql, &t.pk_columns);
            (create_sql.clone(), s, d)
        } else {
            (create_sql.clone(), create_sql.clone(), Vec::new())
        };
        t.deferred_keys = deferred;
        for (_, target) in &plan.target {
            create_on_target(target, &t.name, &stripped, &full).await?;
        }
    }
    let _ = src.disconnect().await;

    let now = now_ms();
    let mut streams = Vec::new();
    for (s, _) in &plan.source {
        for (t, _) in &plan.target {
            if s.key_range.intersects(&t.key_range) {
                streams.push(StreamRecord {
                    id: stream_id(&req.name, &s.name, &t.name),
                    source_shard: s.name.clone(),
                    target_shard: t.name.clone(),
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
    let mut w = Workflow {
        name: req.name.clone(),
        kind,
        source_keyspace: req.source_keyspace.clone(),
        target_keyspace: req.target_keyspace.clone(),
        tables: plan.tables.clone(),
        options: req.options.clone(),
        state: State::Pending,
        desired: Desired::Running,
        created_ms: now,
        updated_ms: now,
        phases: vec![PhaseStamp {
            state: State::Pending,
            at_ms: now,
            by: req.by,
        }],
        error: None,
        events: VecDeque::new(),
        streams,
        table_progress: Vec::new(),
        copy_done: false,
        generation: 0,
        streams_active: false,
        paused: None,
        reverse_of: None,
        extra: Default::default(),
    };
    w.event(
        req.by,
        format!(
            "created: {} {} from {} to {} ({} stream(s))",
            if kind == WorkflowType::Import {
                "import"
            } else {
                "move"
            },
            w.table_names().join(", "),
            w.source_keyspace,
            w.target_keyspace,
            w.streams.len()
        ),
    );

    // Routing rules + record, atomically; retried if someone else changed
    // the rules meanwhile.
    for _ in 0..20 {
        let current = topo.get_json::<RoutingRules>(keys::ROUTING_RULES).await?;
        let (mut rules, cond) = match current {
            Some((r, rev)) => (r, Cond::ModRevision(rev)),
            None => (RoutingRules::default(), Cond::Absent),
        };
        add_source_rules(
            &mut rules,
            &w.source_keyspace,
            &w.target_keyspace,
            &w.table_names(),
        );
        let mut ops = vec![
            Op::Put {
                key: keys::ROUTING_RULES.to_string(),
                value: json(keys::ROUTING_RULES, &rules)?,
                cond,
            },
            Op::Put {
                key: keys::workflow(&w.name),
                value: json(&keys::workflow(&w.name), &w)?,
                cond: Cond::Absent,
            },
        ];
        ops.extend(extra_ops.iter().cloned());
        match topo.txn(ops).await {
            Ok(_) => return Ok(w),
            Err(TopoError::CondFailed { key, .. }) if key == keys::ROUTING_RULES => continue,
            Err(TopoError::CondFailed { key, .. }) if key == keys::workflow(&w.name) => {
                return Err(WorkflowError::Exists(w.name));
            }
            Err(TopoError::CondFailed { key, .. }) => {
                return Err(WorkflowError::Server(format!(
                    "`{key}` was created by someone else meanwhile; nothing was created"
                )));
            }
            Err(e) => return Err(e.into()),
        }
    }
    Err(WorkflowError::Server(
        "the routing rules kept changing while creating the workflow; try again".into(),
    ))
}

/// The Vitess MoveTables rules: every query for the moved tables, by any
/// name, stays on the source until traffic is switched.
pub fn add_source_rules(rules: &mut RoutingRules, source: &str, target: &str, tables: &[String]) {
    for t in tables {
        let to = format!("{source}.{t}");
        for from in [
            t.clone(),
            format!("{t}@replica"),
            format!("{t}@rdonly"),
            format!("{target}.{t}"),
            format!("{target}.{t}@replica"),
            format!("{target}.{t}@rdonly"),
        ] {
            rules.rules.retain(|r| r.from_table != from);
            rules.rules.push(RoutingRule {
                from_table: from,
                to_tables: vec![to.clone()],
            });
        }
    }
}

fn json<T: serde::Serialize>(key: &str, v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| {
        WorkflowError::Topo(TopoError::Json {
            key: key.to_string(),
            detail: e.to_string(),
        })
    })
}

pub(crate) fn ident(s: &str) -> String {
    format!("`{}`", s.replace('`', "``"))
}

fn server(t: &TabletRecord, doing: &str, e: mysql_async::Error) -> WorkflowError {
    WorkflowError::Server(format!(
        "{doing} on tablet {} ({}): {e}",
        t.alias,
        t.address()
    ))
}

pub(crate) async fn connect(t: &TabletRecord) -> Result<mysql_async::Conn> {
    mysql_async::Conn::new(t.endpoint().opts())
        .await
        .map_err(|e| server(t, "connecting", e))
}

async fn create_on_target(t: &TabletRecord, table: &str, stripped: &str, full: &str) -> Result<()> {
    let mut c = connect(t).await?;
    c.query_drop(format!(
        "CREATE DATABASE IF NOT EXISTS {}",
        ident(&t.database)
    ))
    .await
    .map_err(|e| server(t, "creating the database", e))?;
    c.query_drop(format!("USE {}", ident(&t.database)))
        .await
        .map_err(|e| server(t, "using the database", e))?;
    let exists: Option<String> = c
        .exec_first(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = ? AND table_name = ?",
            (&t.database, table),
        )
        .await
        .map_err(|e| server(t, "looking for the table", e))?;
    if exists.is_none() {
        // A definition the server refuses without its secondary keys (an
        // AUTO_INCREMENT column indexed only by one) is created whole.
        if c.query_drop(stripped).await.is_err() {
            c.query_drop(full)
                .await
                .map_err(|e| server(t, &format!("creating table `{table}`"), e))?;
        }
    }
    let _ = c.disconnect().await;
    Ok(())
}

/// Splits a `SHOW CREATE TABLE` into the statement without its secondary
/// keys and the key definitions to add after the copy. The key the copy
/// orders by (`pk_columns`, a unique key when there is no primary key) is
/// kept.
pub fn strip_secondary_keys(create: &str, pk_columns: &[String]) -> (String, Vec<String>) {
    let (Some(open), Some(close)) = (create.find("(\n"), create.rfind("\n)")) else {
        return (create.to_string(), Vec::new());
    };
    let head = &create[..open + 2];
    let body = &create[open + 2..close];
    let tail = &create[close..];
    let copy_key = pk_columns
        .iter()
        .map(|c| format!("`{c}`"))
        .collect::<Vec<_>>()
        .join(",");
    let mut kept = Vec::new();
    let mut deferred = Vec::new();
    let mut kept_copy_key = false;
    for line in body.lines() {
        let def = line.trim().trim_end_matches(',');
        let is_key = [
            "KEY ",
            "UNIQUE KEY ",
            "FULLTEXT KEY ",
            "SPATIAL KEY ",
            "INDEX ",
        ]
        .iter()
        .any(|p| def.starts_with(p));
        let is_copy_key = def.starts_with("UNIQUE KEY ") && def.ends_with(&format!("({copy_key})"));
        if is_key && !(is_copy_key && !kept_copy_key && !body.contains("PRIMARY KEY")) {
            deferred.push(def.to_string());
        } else {
            if is_copy_key {
                kept_copy_key = true;
            }
            kept.push(format!("  {def}"));
        }
    }
    (format!("{head}{}{tail}", kept.join(",\n")), deferred)
}

async fn act(
    topo: &dyn Topo,
    name: &str,
    action: Action,
    f: impl Fn(&mut Workflow) + Send + Sync,
) -> Result<Workflow> {
    let key = keys::workflow(name);
    let r = topo
        .update_json::<Workflow, _, WorkflowError>(&key, |cur| {
            let mut w = cur.ok_or_else(|| WorkflowError::NotFound(name.to_string()))?;
            if let Some(of) = &w.reverse_of {
                return Err(WorkflowError::IsReverse {
                    name: name.to_string(),
                    of: of.clone(),
                    action,
                });
            }
            let allowed = allowed_actions(w.state);
            if !allowed.contains(&action) {
                return Err(WorkflowError::NotAllowed {
                    name: name.to_string(),
                    action,
                    state: w.state,
                    allowed,
                });
            }
            f(&mut w);
            Ok(w)
        })
        .await;
    match r {
        Ok((w, _)) => Ok(w),
        Err(UpdateError::Aborted(e)) => Err(e),
        Err(UpdateError::Topo(e)) => Err(e.into()),
    }
}

/// Stops the streams (they resume from committed progress on `start`).
pub async fn stop(topo: &dyn Topo, name: &str, by: Trigger) -> Result<Workflow> {
    act(topo, name, Action::Stop, |w| {
        w.desired = Desired::Stopped;
        w.enter(State::Stopped, by, "stopped by the operator");
    })
    .await
}

fn resume(w: &mut Workflow, by: Trigger, why: &str) {
    w.desired = Desired::Running;
    w.generation += 1;
    w.error = None;
    let next = if w.copy_done {
        State::Running
    } else {
        State::Copying
    };
    w.enter(next, by, why);
}

pub async fn start(topo: &dyn Topo, name: &str, by: Trigger) -> Result<Workflow> {
    act(topo, name, Action::Start, |w| {
        resume(w, by, "started by the operator")
    })
    .await
}

/// Restarts a workflow in `error` from what its targets committed.
pub async fn retry(topo: &dyn Topo, name: &str, by: Trigger) -> Result<Workflow> {
    act(topo, name, Action::Retry, |w| {
        let why = format!(
            "retry after: {}",
            w.error.clone().unwrap_or_else(|| "an error".into())
        );
        resume(w, by, &why)
    })
    .await
}

pub async fn show(topo: &dyn Topo, name: &str) -> Result<Workflow> {
    topo.get_json::<Workflow>(&keys::workflow(name))
        .await?
        .map(|(w, _)| w)
        .ok_or_else(|| WorkflowError::NotFound(name.to_string()))
}

/// Every workflow, by name. A record that does not decode fails the call:
/// it is not silently hidden.
pub async fn list(topo: &dyn Topo) -> Result<Vec<Workflow>> {
    Ok(topo
        .list_json::<Workflow>(keys::WORKFLOWS)
        .await?
        .into_iter()
        .map(|(_, w, _)| w)
        .collect())
}

/// For callers that want the report without creating (`--validate-only`).
pub async fn validate_only(topo: &dyn Topo, req: &CreateRequest) -> Result<ValidationReport> {
    Ok(check(topo, req).await?.0)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn secondary_keys_are_deferred_and_the_copy_key_kept() {
        let sql = "CREATE TABLE `t` (\n  `id` bigint(20) NOT NULL,\n  `a` int(11) DEFAULT NULL,\n  `b` int(11) NOT NULL,\n  PRIMARY KEY (`id`),\n  KEY `ia` (`a`),\n  UNIQUE KEY `ub` (`b`)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4";
        let (s, d) = strip_secondary_keys(sql, &["id".to_string()]);
        assert_eq!(d, vec!["KEY `ia` (`a`)", "UNIQUE KEY `ub` (`b`)"]);
        assert!(
            s.ends_with("  PRIMARY KEY (`id`)\n) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4"),
            "{s}"
        );
        let nopk = "CREATE TABLE `t` (\n  `b` int(11) NOT NULL,\n  `a` int,\n  UNIQUE KEY `ub` (`b`),\n  KEY `ia` (`a`)\n) ENGINE=InnoDB";
        let (s, d) = strip_secondary_keys(nopk, &["b".to_string()]);
        assert_eq!(d, vec!["KEY `ia` (`a`)"]);
        assert!(s.contains("UNIQUE KEY `ub` (`b`)\n)"), "{s}");
    }

    #[test]
    fn routing_rules_keep_every_name_on_the_source() {
        let mut r = RoutingRules::default();
        add_source_rules(&mut r, "commerce", "customer", &["customer".to_string()]);
        add_source_rules(&mut r, "commerce", "customer", &["customer".to_string()]);
        assert_eq!(r.rules.len(), 6);
        assert!(
            r.rules
                .iter()
                .all(|x| x.to_tables == vec!["commerce.customer"])
        );
        assert!(
            r.rules
                .iter()
                .any(|x| x.from_table == "customer.customer@replica")
        );
    }
}
