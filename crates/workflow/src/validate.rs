//! Pre-checks of a create request. Every check runs and every problem is
//! reported, each with the table it concerns and how to fix it, so a user
//! fixes everything in one round instead of discovering problems one
//! failed create at a time.

use crate::model::{Options, TablePlan, Trigger, Workflow};
use keyshift_cluster::model::{ShardRecord, TabletRecord, keys};
use keyshift_cluster::ops::{self, ClusterError};
use keyshift_topo::Topo;
use keyshift_vschema::KeyspaceVSchema;
use mysql_async::prelude::*;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

/// Character sets whose bytes the streams copy and compare exactly.
pub const SUPPORTED_CHARSETS: &[&str] =
    &["utf8mb4", "utf8mb3", "utf8", "latin1", "ascii", "binary"];

const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// What `create` is asked to do.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CreateRequest {
    pub name: String,
    pub source_keyspace: String,
    pub target_keyspace: String,
    /// Explicit tables; ignored with `all_tables`.
    #[serde(default)]
    pub tables: Vec<String>,
    #[serde(default)]
    pub all_tables: bool,
    #[serde(default)]
    pub exclude_tables: Vec<String>,
    #[serde(default)]
    pub options: Options,
    #[serde(default = "default_trigger")]
    pub by: Trigger,
}

fn default_trigger() -> Trigger {
    Trigger::Api
}

/// One problem found by validation.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// The table concerned, or none for workflow-wide problems.
    pub table: Option<String>,
    /// A stable name of the check, for scripts: `table_exists`,
    /// `primary_key`, `vschema`, `binlog`, `target_empty`, `other_workflow`,
    /// `privileges`, `charset`, `request`, `keyspace`, `tablet`.
    pub check: String,
    pub problem: String,
    pub fix: String,
    /// Errors block creation; warnings are reported and do not.
    #[serde(default, skip_serializing_if = "Severity::is_error")]
    pub severity: Severity,
}

/// Whether a finding blocks `create`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    #[default]
    Error,
    /// Worth knowing before going on (short binlog retention, views that
    /// are not imported), not a reason to refuse.
    Warning,
}

impl Severity {
    pub fn is_error(&self) -> bool {
        *self == Severity::Error
    }
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ValidationReport {
    /// The tables the request resolves to (after `--all-tables` and
    /// `--exclude-tables`).
    pub tables: Vec<String>,
    pub findings: Vec<Finding>,
}

impl ValidationReport {
    /// No finding blocks creation (warnings may remain).
    pub fn ok(&self) -> bool {
        !self.findings.iter().any(|f| f.severity.is_error())
    }

    pub fn errors(&self) -> impl Iterator<Item = &Finding> {
        self.findings.iter().filter(|f| f.severity.is_error())
    }

    pub(crate) fn warn(
        &mut self,
        table: Option<&str>,
        check: &str,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.add(table, check, problem, fix);
        if let Some(f) = self.findings.last_mut() {
            f.severity = Severity::Warning;
        }
    }

    pub(crate) fn add(
        &mut self,
        table: Option<&str>,
        check: &str,
        problem: impl Into<String>,
        fix: impl Into<String>,
    ) {
        self.findings.push(Finding {
            table: table.map(str::to_string),
            check: check.to_string(),
            problem: problem.into(),
            fix: fix.into(),
            severity: Severity::Error,
        });
    }
}

/// What validation learnt that `create` needs.
pub(crate) struct Plan {
    pub source: Vec<(ShardRecord, TabletRecord)>,
    pub target: Vec<(ShardRecord, TabletRecord)>,
    pub tables: Vec<TablePlan>,
}

/// Checks a create request; never fails for problems of the request or the
/// cluster (those are findings), only for a topo that cannot be read.
pub async fn validate(
    topo: &dyn Topo,
    req: &CreateRequest,
) -> Result<ValidationReport, ClusterError> {
    Ok(check(topo, req).await?.0)
}

/// One table as a source primary describes it.
#[derive(Default, Clone)]
struct SourceTable {
    collation: Option<String>,
    columns: Vec<(String, Option<String>)>,
    /// index name → (non_unique, [(column, nullable)]) in key order.
    indexes: BTreeMap<String, (bool, Vec<(String, bool)>)>,
}

impl SourceTable {
    /// The primary key, else the first unique key of NOT NULL columns.
    fn copy_key(&self) -> Option<Vec<String>> {
        if let Some((_, cols)) = self.indexes.get("PRIMARY") {
            return Some(cols.iter().map(|(c, _)| c.clone()).collect());
        }
        self.indexes
            .values()
            .find(|(non_unique, cols)| !non_unique && cols.iter().all(|(_, nullable)| !nullable))
            .map(|(_, cols)| cols.iter().map(|(c, _)| c.clone()).collect())
    }
}

async fn connect(t: &TabletRecord) -> Result<mysql_async::Conn, String> {
    match tokio::time::timeout(CONNECT_TIMEOUT, mysql_async::Conn::new(t.endpoint().opts())).await {
        Ok(Ok(c)) => Ok(c),
        Ok(Err(e)) => Err(format!(
            "cannot connect to tablet {} at {}: {e}",
            t.alias,
            t.address()
        )),
        Err(_) => Err(format!(
            "tablet {} at {} did not answer within {CONNECT_TIMEOUT:?}",
            t.alias,
            t.address()
        )),
    }
}

async fn read_source_tables(
    conn: &mut mysql_async::Conn,
    db: &str,
) -> Result<BTreeMap<String, SourceTable>, mysql_async::Error> {
    let mut out: BTreeMap<String, SourceTable> = BTreeMap::new();
    let tables: Vec<(String, Option<String>)> = conn
        .exec(
            "SELECT table_name, table_collation FROM information_schema.tables \
             WHERE table_schema = ? AND table_type = 'BASE TABLE'",
            (db,),
        )
        .await?;
    for (name, collation) in tables {
        out.entry(name).or_default().collation = collation;
    }
    let cols: Vec<(String, String, Option<String>)> = conn
        .exec(
            "SELECT table_name, column_name, character_set_name FROM information_schema.columns \
             WHERE table_schema = ? ORDER BY table_name, ordinal_position",
            (db,),
        )
        .await?;
    for (t, c, cs) in cols {
        if let Some(st) = out.get_mut(&t) {
            st.columns.push((c, cs));
        }
    }
    let idx: Vec<(String, String, i64, String, String)> = conn
        .exec(
            "SELECT table_name, index_name, non_unique, column_name, nullable \
             FROM information_schema.statistics WHERE table_schema = ? \
             ORDER BY table_name, index_name, seq_in_index",
            (db,),
        )
        .await?;
    for (t, i, non_unique, c, nullable) in idx {
        if let Some(st) = out.get_mut(&t) {
            let e = st
                .indexes
                .entry(i)
                .or_insert_with(|| (non_unique != 0, Vec::new()));
            e.1.push((c, nullable.eq_ignore_ascii_case("YES")));
        }
    }
    Ok(out)
}

/// The charset part of a collation name (`utf8mb4_general_ci` → `utf8mb4`).
fn charset_of_collation(c: &str) -> &str {
    c.split('_').next().unwrap_or(c)
}

/// `SHOW GRANTS` of the connected user, as (privileges, object) pairs.
async fn grants(
    conn: &mut mysql_async::Conn,
) -> Result<Vec<(Vec<String>, String)>, mysql_async::Error> {
    let lines: Vec<String> = conn.query("SHOW GRANTS").await?;
    Ok(lines.iter().filter_map(|l| parse_grant(l)).collect())
}

/// `GRANT SELECT, INSERT ON `db`.* TO ...` → (["SELECT","INSERT"], "db.*").
pub(crate) fn parse_grant(line: &str) -> Option<(Vec<String>, String)> {
    let rest = line.strip_prefix("GRANT ")?;
    let on = rest.find(" ON ")?;
    let privs = rest[..on]
        .split(',')
        .map(|p| p.trim().to_ascii_uppercase())
        .collect();
    let after = &rest[on + 4..];
    let obj = after.split(" TO ").next()?.replace('`', "");
    Some((privs, obj.trim().to_string()))
}

/// Reports what `t`'s user lacks of `needed` (each entry: any one of these
/// privileges will do) on one shard of one side of the workflow.
async fn check_privileges(
    conn: &mut mysql_async::Conn,
    t: &TabletRecord,
    side: &str,
    shard: &str,
    needed: &[&[&str]],
    r: &mut ValidationReport,
) {
    match grants(conn).await {
        Ok(g) => {
            let missing = missing_privileges(&g, &t.database, needed);
            if !missing.is_empty() {
                r.add(
                    None,
                    "privileges",
                    format!(
                        "user `{}` on {side} shard {shard} lacks {}",
                        t.user,
                        missing.join(", ")
                    ),
                    format!("GRANT {} ON *.* TO '{}'@'%'", missing.join(", "), t.user),
                );
            }
        }
        Err(e) => r.add(
            None,
            "privileges",
            format!("cannot read the grants on {side} shard {shard}: {e}"),
            "let the user run SHOW GRANTS",
        ),
    }
}

/// Privileges of `want` not held on database `db` (globally or on `db.*`).
fn missing_privileges(grants: &[(Vec<String>, String)], db: &str, want: &[&[&str]]) -> Vec<String> {
    let applies = |obj: &str| obj == "*.*" || obj == format!("{db}.*");
    let held: BTreeSet<String> = grants
        .iter()
        .filter(|(_, obj)| applies(obj))
        .flat_map(|(p, _)| p.iter().cloned())
        .collect();
    if held.contains("ALL PRIVILEGES") || held.contains("ALL") {
        return Vec::new();
    }
    // Each entry lists the spellings that satisfy it (MariaDB renamed some).
    want.iter()
        .filter(|alts| !alts.iter().any(|a| held.contains(*a)))
        .map(|alts| alts[0].to_string())
        .collect()
}

pub(crate) async fn check(
    topo: &dyn Topo,
    req: &CreateRequest,
) -> Result<(ValidationReport, Option<Plan>), ClusterError> {
    check_with(topo, req, None, None).await
}

/// [`check`], with the source shards given instead of read from the topo:
/// an import validates an external server before registering it, so that
/// nothing is written when validation fails.
pub(crate) async fn check_with(
    topo: &dyn Topo,
    req: &CreateRequest,
    source_override: Option<Vec<(ShardRecord, TabletRecord)>>,
    target_vschema_override: Option<&KeyspaceVSchema>,
) -> Result<(ValidationReport, Option<Plan>), ClusterError> {
    let mut r = ValidationReport::default();
    if !keyshift_vschema::valid_identifier(&req.name) {
        r.add(
            None,
            "request",
            format!("`{}` is not a valid workflow name", req.name),
            "use letters, digits and underscores",
        );
    }
    if topo.get(&keys::workflow(&req.name)).await?.is_some() {
        r.add(
            None,
            "request",
            format!("a workflow named `{}` already exists", req.name),
            "pick another --name, or complete/cancel the existing workflow",
        );
    }
    if req.source_keyspace == req.target_keyspace {
        r.add(
            None,
            "request",
            "source and target keyspace are the same",
            "move tables between two different keyspaces",
        );
    }
    if !req.all_tables && req.tables.is_empty() {
        r.add(
            None,
            "request",
            "no tables given",
            "pass --tables a,b or --all-tables",
        );
    }
    let mut source = Vec::new();
    let mut target = Vec::new();
    let has_override = source_override.is_some();
    if let Some(shards) = source_override {
        source = shards;
    }
    for (ks, side, out) in [
        (&req.source_keyspace, "source", &mut source),
        (&req.target_keyspace, "target", &mut target),
    ] {
        if side == "source" && has_override {
            continue;
        }
        match ops::shard_primaries(topo, ks).await {
            Ok(shards) if shards.is_empty() => r.add(
                None,
                "keyspace",
                format!("{side} keyspace `{ks}` has no shards"),
                "create its shards with `keyshift keyspace create`",
            ),
            Ok(shards) => {
                for (shard, primary) in shards {
                    match primary {
                        Some(p) => out.push((shard, p)),
                        None => r.add(
                            None,
                            "tablet",
                            format!("{side} shard {ks}/{} has no primary tablet", shard.name),
                            "add one with `keyshift tablet add`",
                        ),
                    }
                }
            }
            Err(ClusterError::NoSuchKeyspace(_)) => r.add(
                None,
                "keyspace",
                format!("{side} keyspace `{ks}` does not exist"),
                "create it with `keyshift keyspace create`, or fix the name",
            ),
            Err(e) => return Err(e),
        }
    }

    // Source: tables, keys, charsets, binlog settings, privileges.
    let mut per_shard: Vec<(String, BTreeMap<String, SourceTable>)> = Vec::new();
    for (shard, t) in &source {
        let mut conn = match connect(t).await {
            Ok(c) => c,
            Err(e) => {
                r.add(
                    None,
                    "tablet",
                    e,
                    "start the tablet (`keyshift status` shows it), then validate again",
                );
                continue;
            }
        };
        match read_source_tables(&mut conn, &t.database).await {
            Ok(tables) => per_shard.push((shard.name.clone(), tables)),
            Err(e) => r.add(
                None,
                "tablet",
                format!("cannot read the tables of source shard {}: {e}", shard.name),
                "check the tablet's user can read information_schema",
            ),
        }
        check_binlog(&mut conn, &shard.name, &mut r).await;
        check_privileges(
            &mut conn,
            t,
            "source",
            &shard.name,
            &[
                &["SELECT"],
                &["REPLICATION SLAVE", "REPLICATION REPLICA"],
                &["REPLICATION CLIENT", "BINLOG MONITOR", "SUPER"],
            ],
            &mut r,
        )
        .await;
        let _ = conn.disconnect().await;
    }

    // Which tables.
    let source_vschema = ops::get_vschema(topo, &req.source_keyspace).await.ok();
    let mut names: Vec<String> = if req.all_tables {
        let mut all: BTreeSet<String> = BTreeSet::new();
        if let Some((_, first)) = per_shard.first() {
            all.extend(first.keys().cloned());
        }
        all.into_iter()
            .filter(|t| !req.exclude_tables.contains(t))
            // Sequence tables back the gate's auto-increment: they stay.
            .filter(|t| {
                source_vschema
                    .as_ref()
                    .and_then(|v| v.tables.get(t))
                    .is_none_or(|d| d.kind != "sequence")
            })
            .collect()
    } else {
        let mut seen = BTreeSet::new();
        req.tables
            .iter()
            .filter(|t| seen.insert((*t).clone()))
            .cloned()
            .collect()
    };
    if req.all_tables && names.is_empty() && !per_shard.is_empty() {
        r.add(
            None,
            "request",
            format!(
                "source keyspace `{}` has no tables to move",
                req.source_keyspace
            ),
            "create the tables first, or list them with --tables",
        );
    }
    for t in &names {
        if !keyshift_vschema::valid_identifier(t) {
            r.add(
                Some(t),
                "request",
                format!("`{t}` is not a valid table name"),
                "use the table's plain name",
            );
        }
    }
    names.retain(|t| keyshift_vschema::valid_identifier(t));
    r.tables = names.clone();

    let mut plans = Vec::new();
    let mut first_columns: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for name in &names {
        let mut key: Option<Vec<String>> = None;
        let mut ok = true;
        for (shard, tables) in &per_shard {
            let Some(st) = tables.get(name) else {
                r.add(
                    Some(name),
                    "table_exists",
                    format!(
                        "table `{name}` does not exist in source keyspace `{}` (shard {shard})",
                        req.source_keyspace
                    ),
                    format!(
                        "check the name; the source's tables: {}",
                        tables.keys().cloned().collect::<Vec<_>>().join(", ")
                    ),
                );
                ok = false;
                break;
            };
            first_columns
                .entry(name.clone())
                .or_insert_with(|| st.columns.iter().map(|(c, _)| c.clone()).collect());
            match st.copy_key() {
                Some(k) => key = Some(k),
                None => {
                    r.add(
                        Some(name),
                        "primary_key",
                        format!("table `{name}` has no primary key and no unique key of NOT NULL columns (shard {shard})"),
                        format!("ALTER TABLE `{name}` ADD PRIMARY KEY (...) on the source"),
                    );
                    ok = false;
                    break;
                }
            }
            let mut bad: BTreeSet<String> = BTreeSet::new();
            if let Some(c) = &st.collation {
                let cs = charset_of_collation(c);
                if !SUPPORTED_CHARSETS.contains(&cs) {
                    bad.insert(format!("table default {cs}"));
                }
            }
            for (col, cs) in &st.columns {
                if let Some(cs) = cs
                    && !SUPPORTED_CHARSETS.contains(&cs.as_str())
                {
                    bad.insert(format!("column `{col}` {cs}"));
                }
            }
            if !bad.is_empty() {
                r.add(
                    Some(name),
                    "charset",
                    format!(
                        "unsupported character set: {}",
                        bad.into_iter().collect::<Vec<_>>().join(", ")
                    ),
                    format!("convert it: ALTER TABLE `{name}` CONVERT TO CHARACTER SET utf8mb4 (supported: {})", SUPPORTED_CHARSETS.join(", ")),
                );
            }
        }
        if ok && let Some(k) = key {
            plans.push(TablePlan {
                name: name.clone(),
                pk_columns: k,
                deferred_keys: Vec::new(),
            });
        }
    }

    // Target VSchema.
    let target_sharded = match ops::get_keyspace(topo, &req.target_keyspace).await {
        Ok(k) => k.sharded || target.len() > 1,
        Err(_) => target.len() > 1,
    };
    let target_vschema = match target_vschema_override {
        Some(v) => Some(v.clone()),
        None => ops::get_vschema(topo, &req.target_keyspace).await.ok(),
    };
    if target_sharded {
        for name in &names {
            check_vindex(
                name,
                target_vschema.as_ref(),
                first_columns.get(name),
                &req.target_keyspace,
                &mut r,
            );
        }
    }

    // Target: tables absent or empty; privileges.
    for (shard, t) in &target {
        let mut conn = match connect(t).await {
            Ok(c) => c,
            Err(e) => {
                r.add(
                    None,
                    "tablet",
                    e,
                    "start the tablet (`keyshift status` shows it), then validate again",
                );
                continue;
            }
        };
        let existing: Vec<String> = conn
            .exec(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = ?",
                (t.database.as_str(),),
            )
            .await
            .unwrap_or_default();
        for name in names.iter().filter(|n| existing.contains(n)) {
            let row: Result<Option<i64>, _> = conn
                .query_first(format!(
                    "SELECT 1 FROM `{}`.`{}` LIMIT 1",
                    t.database.replace('`', "``"),
                    name
                ))
                .await;
            match row {
                Ok(None) => {}
                Ok(Some(_)) => r.add(
                    Some(name),
                    "target_empty",
                    format!(
                        "table `{name}` already has rows on target shard {}/{}",
                        req.target_keyspace, shard.name
                    ),
                    format!(
                        "drop or empty it on the target (TRUNCATE TABLE `{name}` on shard {}), or move into another keyspace",
                        shard.name
                    ),
                ),
                Err(e) => r.add(
                    Some(name),
                    "target_empty",
                    format!("cannot read `{name}` on target shard {}: {e}", shard.name),
                    "check the target tablet",
                ),
            }
        }
        check_privileges(
            &mut conn,
            t,
            "target",
            &shard.name,
            &[
                &["CREATE"],
                &["ALTER"],
                &["INSERT"],
                &["UPDATE"],
                &["DELETE"],
                &["SELECT"],
            ],
            &mut r,
        )
        .await;
        let _ = conn.disconnect().await;
    }

    // Other workflows on these tables.
    for kv in topo.list(keys::WORKFLOWS).await? {
        let Ok(other) = serde_json::from_slice::<Workflow>(&kv.value) else {
            continue;
        };
        if other.name == req.name || !other.state.holds_tables() {
            continue;
        }
        let same_keyspaces = [&other.source_keyspace, &other.target_keyspace]
            .iter()
            .any(|k| **k == req.source_keyspace || **k == req.target_keyspace);
        if !same_keyspaces {
            continue;
        }
        for t in other.tables.iter().filter(|t| names.contains(&t.name)) {
            r.add(
                Some(&t.name),
                "other_workflow",
                format!(
                    "table `{}` is already moved by workflow `{}` ({} → {}, state {})",
                    t.name, other.name, other.source_keyspace, other.target_keyspace, other.state
                ),
                format!("complete or cancel workflow `{}` first", other.name),
            );
        }
    }

    let plan = r.ok().then_some(Plan {
        source,
        target,
        tables: plans,
    });
    Ok((r, plan))
}

fn check_vindex(
    name: &str,
    vs: Option<&KeyspaceVSchema>,
    columns: Option<&Vec<String>>,
    ks: &str,
    r: &mut ValidationReport,
) {
    let fix = format!(
        "add `{name}` with a primary vindex to the VSchema of `{ks}`: keyshift vschema apply {ks} (e.g. \"column_vindexes\": [{{\"column\": \"id\", \"name\": \"hash\"}}])"
    );
    let Some(def) = vs.and_then(|v| v.tables.get(name)) else {
        r.add(
            Some(name),
            "vschema",
            format!("the VSchema of sharded keyspace `{ks}` has no table `{name}`"),
            fix,
        );
        return;
    };
    let Some(cv) = def.column_vindexes.first() else {
        r.add(
            Some(name),
            "vschema",
            format!("table `{name}` has no primary vindex in the VSchema of `{ks}`"),
            fix,
        );
        return;
    };
    let Some(col) = cv.column_names().first().map(|c| c.to_string()) else {
        r.add(
            Some(name),
            "vschema",
            format!("the primary vindex of `{name}` names no column"),
            fix,
        );
        return;
    };
    match vs.and_then(|v| v.vindexes.get(&cv.name)) {
        None => r.add(
            Some(name),
            "vschema",
            format!(
                "the primary vindex `{}` of `{name}` is not defined in `{ks}`",
                cv.name
            ),
            format!(
                "define vindex `{}` under \"vindexes\" in the VSchema of `{ks}`",
                cv.name
            ),
        ),
        Some(v) => {
            if let Err(e) = keyshift_vindex::new_vindex(&v.kind, &v.params) {
                r.add(
                    Some(name),
                    "vschema",
                    format!(
                        "the primary vindex `{}` of `{name}` cannot be used to copy: {e}",
                        cv.name
                    ),
                    format!("use one of {}", keyshift_vindex::KINDS.join(", ")),
                );
            }
        }
    }
    if let Some(cols) = columns
        && !cols.contains(&col)
    {
        r.add(
            Some(name),
            "vschema",
            format!(
                "the primary vindex column `{col}` of `{name}` is not a column of the source table"
            ),
            format!(
                "point the vindex of `{name}` at one of its columns: {}",
                cols.join(", ")
            ),
        );
    }
}

async fn check_binlog(conn: &mut mysql_async::Conn, shard: &str, r: &mut ValidationReport) {
    type Row = (String, Option<String>, Option<String>, Option<String>);
    let vars: Result<Option<Row>, _> = conn
        .query_first(
            "SELECT @@version, CAST(@@log_bin AS CHAR), @@binlog_format, @@binlog_row_image",
        )
        .await;
    let (version, log_bin, format, image) = match vars {
        Ok(Some(v)) => v,
        Ok(None) | Err(_) => {
            r.add(
                None,
                "binlog",
                format!("cannot read the binlog settings of source shard {shard}"),
                "let the user read @@log_bin, @@binlog_format and @@binlog_row_image",
            );
            return;
        }
    };
    let on = |v: &Option<String>| {
        v.as_deref()
            .is_some_and(|s| s == "1" || s.eq_ignore_ascii_case("ON"))
    };
    if !on(&log_bin) {
        r.add(
            None,
            "binlog",
            format!("the binary log is off on source shard {shard}"),
            "add log_bin=binlog (with binlog_format=ROW and binlog_row_image=FULL) under [mysqld] in the server's configuration and restart it",
        );
    }
    if !format
        .as_deref()
        .is_some_and(|f| f.eq_ignore_ascii_case("ROW"))
    {
        r.add(
            None,
            "binlog",
            format!(
                "binlog_format is {} on source shard {shard}; streams need ROW",
                format.as_deref().unwrap_or("unknown")
            ),
            "SET GLOBAL binlog_format = 'ROW' and set binlog_format=ROW in the server's configuration",
        );
    }
    if !image
        .as_deref()
        .is_some_and(|f| f.eq_ignore_ascii_case("FULL"))
    {
        r.add(
            None,
            "binlog",
            format!(
                "binlog_row_image is {} on source shard {shard}; streams need FULL",
                image.as_deref().unwrap_or("unknown")
            ),
            "SET GLOBAL binlog_row_image = 'FULL' and set it in the server's configuration",
        );
    }
    if version.to_ascii_lowercase().contains("mariadb") {
        let strict: Option<Option<String>> = conn
            .query_first("SELECT CAST(@@gtid_strict_mode AS CHAR)")
            .await
            .unwrap_or(None);
        if !on(&strict.flatten()) {
            r.add(
                None,
                "binlog",
                format!("gtid_strict_mode is off on source shard {shard}"),
                "SET GLOBAL gtid_strict_mode = ON and set gtid_strict_mode=ON in the server's configuration",
            );
        }
    } else {
        let mode: Option<Option<String>> = conn
            .query_first("SELECT CAST(@@gtid_mode AS CHAR)")
            .await
            .unwrap_or(None);
        if !mode.flatten().is_some_and(|m| m.eq_ignore_ascii_case("ON")) {
            r.add(
                None,
                "binlog",
                format!("gtid_mode is not ON on source shard {shard}"),
                "set gtid_mode=ON and enforce_gtid_consistency=ON under [mysqld] in the server's configuration (online: SET GLOBAL enforce_gtid_consistency=ON, then gtid_mode=OFF_PERMISSIVE, ON_PERMISSIVE, ON)",
            );
        }
        let enforce: Option<Option<String>> = conn
            .query_first("SELECT CAST(@@enforce_gtid_consistency AS CHAR)")
            .await
            .unwrap_or(None);
        if !on(&enforce.flatten()) {
            r.add(
                None,
                "binlog",
                format!("enforce_gtid_consistency is not ON on source shard {shard}"),
                "SET GLOBAL enforce_gtid_consistency = ON and set enforce_gtid_consistency=ON under [mysqld] in the server's configuration",
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants_are_parsed_and_checked() {
        let g: Vec<_> = [
            "GRANT USAGE ON *.* TO `u`@`%`",
            "GRANT SELECT, INSERT ON `shop`.* TO `u`@`%`",
            "GRANT REPLICATION SLAVE, BINLOG MONITOR ON *.* TO `u`@`%`",
        ]
        .iter()
        .filter_map(|l| parse_grant(l))
        .collect();
        assert!(
            missing_privileges(
                &g,
                "shop",
                &[
                    &["SELECT"],
                    &["REPLICATION SLAVE"],
                    &["REPLICATION CLIENT", "BINLOG MONITOR"]
                ]
            )
            .is_empty()
        );
        assert_eq!(
            missing_privileges(&g, "other", &[&["SELECT"]]),
            vec!["SELECT"]
        );
        let all: Vec<_> = ["GRANT ALL PRIVILEGES ON *.* TO `root`@`localhost` WITH GRANT OPTION"]
            .iter()
            .filter_map(|l| parse_grant(l))
            .collect();
        assert!(missing_privileges(&all, "x", &[&["DELETE"]]).is_empty());
    }

    #[test]
    fn charsets_come_from_collations() {
        assert_eq!(charset_of_collation("utf8mb4_general_ci"), "utf8mb4");
        assert_eq!(charset_of_collation("latin1_swedish_ci"), "latin1");
        assert_eq!(charset_of_collation("binary"), "binary");
        assert_eq!(charset_of_collation("ucs2_general_ci"), "ucs2");
    }
}
