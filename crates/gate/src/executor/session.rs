//! One client session: see the module docs of [`crate::executor`] for the
//! state it keeps and the transaction semantics.

use std::sync::Arc;
use std::time::Instant;

use async_trait::async_trait;
use keyshift_router::{
    BoundRoute, Datum, InsertPlan, LocalColumn, LocalValue, Plan, RouteError, RouteKind,
    SessionCtx, Snapshot, TabletType, Target, merge, use_target,
};

use super::Shared;
use super::convert::{cell_datum, column_kind, datum_value, local_column, param_datum};
use super::topology::Topology;
use crate::backend::{BackendError, PooledConn, QueryResult};
use crate::error::GateError;
use crate::fxhash::FxHashMap;
use crate::metrics::KeyspaceStats;
use crate::params::{Param, StmtId};
use crate::proto::{Column, ColumnType, StatusFlags, Value};
use crate::server::{PreparedMeta, Response, SessionHandler};

const AUTOCOMMIT: u16 = StatusFlags::SERVER_STATUS_AUTOCOMMIT.bits();
const IN_TRANS: u16 = StatusFlags::SERVER_STATUS_IN_TRANS.bits();

/// A backend connection the session is using or keeps.
struct Held {
    keyspace: Arc<str>,
    shard: Arc<str>,
    tablet_type: TabletType,
    /// [`super::TabletPool::id`] of the pool it came from.
    tablet_id: u64,
    conn: PooledConn,
}

impl Held {
    fn is(&self, keyspace: &str, shard: &str, tablet_type: TabletType) -> bool {
        &*self.keyspace == keyspace && &*self.shard == shard && self.tablet_type == tablet_type
    }

    fn name(&self) -> String {
        format!("{}/{}", self.keyspace, self.shard)
    }
}

/// How the plan of a prepared statement can be run cheaply.
#[derive(Clone, Debug, Default)]
struct Shortcut {
    /// The single-shard text of the route is the client's text, so the
    /// backend can prepare it as is and take the client's parameters.
    text_unchanged: bool,
    /// The route's keyspace is unsharded: this is its shard, whatever the
    /// parameters.
    fixed_shard: Option<String>,
}

struct PreparedPlan {
    snapshot: Arc<Snapshot>,
    plan: Arc<Plan>,
    shortcut: Shortcut,
}

struct Prepared {
    sql: Arc<str>,
    /// Session keyspace and tablet type at prepare time: what the statement
    /// means does not change with a later `USE`.
    keyspace: Option<String>,
    tablet_type: TabletType,
    current: Arc<PreparedPlan>,
}

/// A statement prepared by the client, run on a backend as a prepared
/// statement (binary protocol both ways).
#[derive(Clone, Copy)]
struct Exec<'a> {
    sql: &'a str,
    params: &'a [Param<'a>],
}

/// One client's session; see [`crate::executor`].
pub struct Session {
    shared: Arc<Shared>,
    keyspace: Option<String>,
    tablet_type: TabletType,
    autocommit: bool,
    in_tx: bool,
    /// The client's `BEGIN` / `START TRANSACTION ...` text, replayed on each
    /// shard the transaction reaches; `BEGIN` when implicit.
    begin_sql: Option<String>,
    /// Set when a connection of the open transaction was lost.
    tx_lost: Option<String>,
    sets: Vec<String>,
    held: Vec<Held>,
    stmts: FxHashMap<StmtId, Prepared>,
    last_insert_id: u64,
    /// The tablet the last statement ran on (SHOW WARNINGS asks it).
    last_tablet: Option<u64>,
    /// The client asked for CLIENT_FOUND_ROWS: UPDATEs report the rows
    /// they matched, not the rows they changed. Backend connections are
    /// shared, so they never use the flag; the count comes from the
    /// backend's "Rows matched" info instead.
    found_rows: bool,
    /// Keyspaces where this session has an open transaction with work, as
    /// last reported to [`super::Activity`].
    tx_keyspaces: Vec<Arc<str>>,
    /// The keyspace the running statement reaches (set once it is planned);
    /// `None` counts it under `keyspace=""`.
    stat_keyspace: Option<Arc<KeyspaceStats>>,
    /// The counters of the last keyspace used, so that a session that stays
    /// in one keyspace never looks it up again.
    stat_cache: Option<Arc<KeyspaceStats>>,
}

impl Drop for Session {
    fn drop(&mut self) {
        for k in &self.tx_keyspaces {
            self.shared.activity.tx_closed(k);
        }
    }
}

/// The keyspace a plan sends work to, if it reaches tablets.
fn plan_keyspace(plan: &Plan) -> Option<&str> {
    match plan {
        Plan::Route(r) => Some(&r.keyspace),
        Plan::Insert(i) => Some(&i.keyspace),
        _ => None,
    }
}

fn route_err(e: RouteError) -> GateError {
    let st = e.sqlstate().as_bytes();
    let mut sqlstate = *b"HY000";
    if st.len() == 5 {
        sqlstate.copy_from_slice(st);
    }
    GateError::new(e.code(), sqlstate, e.to_string())
}

/// A backend failure as the client sees it: the backend's own errors as
/// they are, connection trouble with the keyspace and shard named.
fn backend_err(keyspace: &str, shard: &str, e: BackendError) -> GateError {
    match e {
        BackendError::Server(g) | BackendError::Client(g) => g,
        other => {
            let g = GateError::from(other);
            GateError::new(
                g.code,
                g.sqlstate,
                format!("{} (keyspace {keyspace} shard {shard})", g.message),
            )
        }
    }
}

/// The N of MySQL's UPDATE info "Rows matched: N  Changed: M  Warnings: W".
fn rows_matched(info: &str) -> Option<u64> {
    let rest = info.strip_prefix("Rows matched:")?.trim_start();
    let end = rest
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(rest.len());
    rest[..end].parse().ok()
}

/// `BEGIN` / `START TRANSACTION` without options: it cannot fail unless
/// the connection does, so it can be sent ahead of the statement that
/// follows it without waiting for its answer (the statement would run
/// outside the transaction if it failed).
fn is_plain_begin(sql: &str) -> bool {
    let words: Vec<&str> = sql
        .trim()
        .trim_end_matches(';')
        .split_ascii_whitespace()
        .collect();
    match words.as_slice() {
        [w] => w.eq_ignore_ascii_case("BEGIN"),
        [a, b] => {
            (a.eq_ignore_ascii_case("BEGIN") && b.eq_ignore_ascii_case("WORK"))
                || (a.eq_ignore_ascii_case("START") && b.eq_ignore_ascii_case("TRANSACTION"))
        }
        _ => false,
    }
}

fn placeholders(n: usize) -> Vec<Column> {
    (0..n)
        .map(|_| Column::new("?", ColumnType::MYSQL_TYPE_VAR_STRING))
        .collect()
}

/// SQL `LIKE` for `SHOW DATABASES LIKE`: `%`, `_`, backslash escapes,
/// ASCII case-insensitive as the default collations are.
fn like(pattern: &str, s: &str) -> bool {
    fn go(p: &[u8], s: &[u8]) -> bool {
        match p.split_first() {
            None => s.is_empty(),
            Some((b'%', rest)) => (0..=s.len()).any(|i| go(rest, &s[i..])),
            Some((b'_', rest)) => !s.is_empty() && go(rest, &s[1..]),
            Some((b'\\', rest)) if !rest.is_empty() => {
                !s.is_empty() && s[0].eq_ignore_ascii_case(&rest[0]) && go(&rest[1..], &s[1..])
            }
            Some((c, rest)) => !s.is_empty() && s[0].eq_ignore_ascii_case(c) && go(rest, &s[1..]),
        }
    }
    go(pattern.as_bytes(), s.as_bytes())
}

fn shortcut(topo: &Topology, plan: &Plan, sql: &str) -> Shortcut {
    let Plan::Route(r) = plan else {
        return Shortcut::default();
    };
    let fixed_shard = match topo.snapshot().keyspace(&r.keyspace) {
        Some(ks) if !ks.sharded && ks.shards.len() == 1 => Some(ks.shards[0].name.clone()),
        _ => None,
    };
    Shortcut {
        text_unchanged: r.sql_template() == sql,
        fixed_shard,
    }
}

impl Session {
    pub(crate) fn new(shared: Arc<Shared>, found_rows: bool) -> Session {
        Session {
            shared,
            keyspace: None,
            tablet_type: TabletType::Primary,
            autocommit: true,
            in_tx: false,
            begin_sql: None,
            tx_lost: None,
            sets: Vec::new(),
            held: Vec::new(),
            stmts: FxHashMap::default(),
            last_insert_id: 0,
            last_tablet: None,
            found_rows,
            tx_keyspaces: Vec::new(),
            stat_keyspace: None,
            stat_cache: None,
        }
    }

    /// The running statement reaches `keyspace` (see [`Self::record`]).
    fn count_in(&mut self, keyspace: Option<&str>) {
        let Some(ks) = keyspace else {
            self.stat_keyspace = None;
            return;
        };
        let stats = match &self.stat_cache {
            Some(s) if s.name() == ks => s.clone(),
            _ => {
                let s = self.shared.metrics.keyspace(ks);
                self.stat_cache = Some(s.clone());
                s
            }
        };
        self.stat_keyspace = Some(stats);
    }

    /// Counts the statement that started at `t0` under the keyspace it
    /// reached, with its error code.
    fn record<T>(&mut self, t0: Instant, r: &Result<T, GateError>, forwarded: Option<u16>) {
        let took = t0.elapsed();
        let code = r.as_ref().err().map(|e| e.code).or(forwarded);
        match self.stat_keyspace.take() {
            Some(s) => s.record(took, code),
            None => self.shared.metrics.unrouted().record(took, code),
        }
    }

    /// Reports to [`super::Activity`] which keyspaces this session has an
    /// open transaction on, after every statement.
    fn sync_tx(&mut self) {
        if self.held.is_empty() && self.tx_keyspaces.is_empty() {
            return;
        }
        // the common case, nothing changed, without allocating
        let unchanged = self
            .held
            .iter()
            .filter(|h| h.conn.in_transaction())
            .all(|h| self.tx_keyspaces.contains(&h.keyspace))
            && self.tx_keyspaces.iter().all(|k| {
                self.held
                    .iter()
                    .any(|h| h.keyspace == *k && h.conn.in_transaction())
            });
        if unchanged {
            return;
        }
        let mut now: Vec<Arc<str>> = Vec::new();
        for h in &self.held {
            if h.conn.in_transaction() && !now.contains(&h.keyspace) {
                now.push(h.keyspace.clone());
            }
        }
        if now == self.tx_keyspaces {
            return;
        }
        for k in &now {
            if !self.tx_keyspaces.contains(k) {
                self.shared.activity.tx_opened(k);
            }
        }
        for k in &self.tx_keyspaces {
            if !now.contains(k) {
                self.shared.activity.tx_closed(k);
            }
        }
        self.tx_keyspaces = now;
    }

    /// The hold a statement for `keyspace` must wait on (see the module doc
    /// of [`crate::executor`]); none when the session's open transaction
    /// already works there.
    fn hold_for(
        &self,
        topo: &Topology,
        keyspace: &str,
    ) -> Option<Arc<keyshift_cluster::model::HoldRecord>> {
        let hold = topo.hold_on(keyspace)?;
        if self.tx_keyspaces.iter().any(|k| &**k == keyspace) {
            return None;
        }
        Some(hold.clone())
    }
}

/// Waits until `hold` is lifted (or its window ends). `Ok(true)`: the
/// topology changed meanwhile and the statement must be planned again.
async fn wait_for_release(
    shared: Arc<Shared>,
    topo: &mut Arc<Topology>,
    hold: Arc<keyshift_cluster::model::HoldRecord>,
) -> Result<bool, GateError> {
    {
        let keyspace = hold.keyspaces.join(", ");
        let Some(_slot) = shared.activity.enqueue(hold.max_queued) else {
            return Err(GateError::internal(format!(
                "keyspace {keyspace} is switching traffic (workflow {}) and {} statements are already waiting; try again",
                hold.workflow, hold.max_queued
            )));
        };
        let mut rx = shared.routing.subscribe();
        let t0 = Instant::now();
        loop {
            let latest = shared.routing.current();
            if !Arc::ptr_eq(&latest, topo) {
                *topo = latest;
                shared.metrics.held_for(t0.elapsed());
                return Ok(true);
            }
            let left = (hold.until_ms + keyshift_cluster::model::HOLD_GRACE_MS)
                .saturating_sub(keyshift_cluster::model::now_ms());
            if left == 0 {
                // The switch's window is over: it has given up.
                shared.metrics.held_for(t0.elapsed());
                return Ok(false);
            }
            tokio::select! {
                r = rx.changed() => if r.is_err() { return Ok(false) },
                _ = tokio::time::sleep(std::time::Duration::from_millis(left)) => {}
            }
        }
    }
}

impl Session {
    /// Affected rows as this client counts them.
    fn affected(&self, res: &QueryResult) -> u64 {
        if self.found_rows {
            rows_matched(&res.info).unwrap_or(res.affected_rows)
        } else {
            res.affected_rows
        }
    }

    fn plan(&self, topo: &Topology, sql: &str) -> Result<Arc<Plan>, GateError> {
        let ctx = SessionCtx {
            keyspace: self.keyspace.as_deref(),
            tablet_type: self.tablet_type,
            in_transaction: self.in_tx,
        };
        keyshift_router::plan(topo.snapshot(), &ctx, sql).map_err(route_err)
    }

    /// Called before a statement that reaches tablets: refuses to continue a
    /// broken transaction and opens the implicit one of autocommit off.
    fn start_statement(&mut self) -> Result<(), GateError> {
        if self.in_tx
            && let Some(why) = &self.tx_lost
        {
            return Err(GateError::internal(format!(
                "the transaction cannot continue: {why}; roll it back"
            )));
        }
        if !self.autocommit && !self.in_tx {
            self.in_tx = true;
            self.begin_sql = None;
        }
        Ok(())
    }

    /// A connection to `keyspace`/`shard` carrying the session's state: the
    /// one the session holds, else a pooled one with the `SET`s replayed;
    /// inside a transaction, with the shard's transaction begun.
    async fn checkout(
        &mut self,
        topo: &Topology,
        keyspace: &str,
        shard: &str,
        tablet_type: TabletType,
    ) -> Result<Held, GateError> {
        let tablet = topo.tablet(keyspace, shard, tablet_type);
        let mut held = None;
        // (a separate statement: an iterator over held connections must not
        // live across an await, the connections are not Sync)
        let found = self
            .held
            .iter()
            .position(|h| h.is(keyspace, shard, tablet_type));
        if let Some(i) = found {
            let h = self.held.swap_remove(i);
            let current = matches!(&tablet, Ok(t) if t.id == h.tablet_id);
            // An open transaction stays where it began even if the shard
            // moved; otherwise follow the topology.
            if current || h.conn.in_transaction() {
                held = Some(h);
            } else {
                h.conn.release().await;
            }
        }
        let mut h = match held {
            Some(h) => h,
            None => {
                let tablet = tablet?;
                let conn = tablet
                    .pool
                    .get()
                    .await
                    .map_err(|e| backend_err(keyspace, shard, e))?;
                let mut h = Held {
                    keyspace: tablet.keyspace.clone(),
                    shard: tablet.shard.clone(),
                    tablet_type,
                    tablet_id: tablet.id,
                    conn,
                };
                for s in &self.sets {
                    if let Err(e) = h.conn.query_rows(s).await {
                        h.conn.release().await;
                        return Err(backend_err(keyspace, shard, e));
                    }
                }
                h
            }
        };
        if self.in_tx && !h.conn.in_transaction() {
            let begin = self.begin_sql.as_deref().unwrap_or("BEGIN");
            if is_plain_begin(begin) {
                // goes out with the statement, no round trip of its own
                h.conn.queue_begin(begin);
            } else if let Err(e) = h.conn.query_rows(begin).await {
                h.conn.release().await;
                return Err(backend_err(keyspace, shard, e));
            }
        }
        Ok(h)
    }

    /// Keeps the connection if the session needs it, else lets it go back
    /// to its pool.
    fn checkin(&mut self, h: Held) {
        self.last_tablet = Some(h.tablet_id);
        if h.conn.is_broken() {
            if self.in_tx {
                self.tx_lost = Some(format!(
                    "the connection to keyspace {} shard {} was lost",
                    h.keyspace, h.shard
                ));
            }
            return;
        }
        if self.in_tx || !self.sets.is_empty() || h.conn.needs_pinning() {
            self.held.push(h);
        }
    }

    /// Gives back every held connection, reset (which rolls back).
    async fn release_all(&mut self) {
        for h in std::mem::take(&mut self.held) {
            h.conn.release().await;
        }
        self.in_tx = false;
        self.begin_sql = None;
        self.tx_lost = None;
    }

    /// Commits shard by shard; see the module docs for what a failure
    /// midway means.
    async fn commit_all(&mut self) -> Result<(), GateError> {
        let held = std::mem::take(&mut self.held);
        let lost = self.tx_lost.take();
        self.in_tx = false;
        self.begin_sql = None;
        let mut committed: Vec<String> = Vec::new();
        let mut failure: Option<(String, GateError)> = None;
        let mut after = Vec::with_capacity(held.len());
        for mut h in held {
            if h.conn.in_transaction() {
                if failure.is_none() && lost.is_none() {
                    match h.conn.query_rows("COMMIT").await {
                        Ok(_) => committed.push(h.name()),
                        Err(e) => failure = Some((h.name(), backend_err(&h.keyspace, &h.shard, e))),
                    }
                } else {
                    let _ = h.conn.query_rows("ROLLBACK").await;
                }
            }
            after.push(h);
        }
        for h in after {
            if h.conn.in_transaction() {
                h.conn.release().await;
            } else {
                self.checkin(h);
            }
        }
        if let Some(why) = lost {
            return Err(GateError::internal(format!(
                "the transaction was rolled back: {why}"
            )));
        }
        match failure {
            None => Ok(()),
            Some((_, e)) if committed.is_empty() => Err(e),
            Some((shard, e)) => Err(GateError::internal(format!(
                "commit failed on {shard} ({e}) after {} had committed; the other shards were rolled back",
                committed.join(", ")
            ))),
        }
    }

    async fn rollback_all(&mut self) {
        let held = std::mem::take(&mut self.held);
        self.in_tx = false;
        self.begin_sql = None;
        self.tx_lost = None;
        for mut h in held {
            if h.conn.in_transaction() {
                let _ = h.conn.query_rows("ROLLBACK").await;
            }
            if h.conn.in_transaction() {
                h.conn.release().await;
            } else {
                self.checkin(h);
            }
        }
    }

    /// A shard of `keyspace` for statements any shard can answer: one the
    /// session already holds, else the first.
    fn any_shard(&self, topo: &Topology, keyspace: &str) -> Result<String, GateError> {
        if let Some(h) = self.held.iter().find(|h| &*h.keyspace == keyspace) {
            return Ok(h.shard.to_string());
        }
        topo.snapshot()
            .keyspace(keyspace)
            .and_then(|k| k.shards.first())
            .map(|s| s.name.clone())
            .ok_or_else(|| route_err(RouteError::UnknownDatabase(keyspace.to_string())))
    }

    /// The keyspace for statements without one: the session's, else the
    /// first unsharded, else the first.
    fn default_keyspace(&self, topo: &Topology) -> Option<String> {
        if let Some(k) = &self.keyspace {
            return Some(k.clone());
        }
        let snap = topo.snapshot();
        snap.keyspace_names()
            .find(|k| snap.keyspace(k).is_some_and(|i| !i.sharded))
            .or_else(|| snap.keyspace_names().next())
            .map(str::to_string)
    }

    async fn write_result(
        &mut self,
        res: QueryResult,
        out: &mut Response<'_>,
    ) -> Result<(), GateError> {
        if res.last_insert_id != 0 {
            self.last_insert_id = res.last_insert_id;
        }
        if res.columns.is_empty() {
            return out
                .write_ok(
                    0,
                    self.affected(&res),
                    res.last_insert_id,
                    self.status_flags(),
                    res.warnings,
                    res.info.as_bytes(),
                )
                .await;
        }
        out.begin_result_set(&res.columns).await?;
        for r in &res.rows {
            out.row(r).await?;
        }
        out.end_result_set(res.warnings).await
    }

    /// One statement on one shard: results forwarded raw, except writes,
    /// whose OK packet is read for the last insert id.
    #[allow(clippy::too_many_arguments)]
    async fn run_single(
        &mut self,
        topo: &Topology,
        keyspace: &str,
        shard: &str,
        tablet_type: TabletType,
        kind: RouteKind,
        sql: &str,
        exec: Option<Exec<'_>>,
        out: &mut Response<'_>,
    ) -> Result<(), GateError> {
        let mut h = self.checkout(topo, keyspace, shard, tablet_type).await?;
        let r = match exec {
            None if kind == RouteKind::Write => h.conn.query_rows(sql).await.map(Some),
            None => h.conn.query_into(sql, out).await.map(|()| None),
            Some(x) => match h.conn.prepare(x.sql).await {
                Err(e) => Err(e),
                Ok(bs) if kind == RouteKind::Write => {
                    h.conn.execute_rows(&bs, x.params).await.map(Some)
                }
                Ok(bs) => h.conn.execute_into(&bs, x.params, out).await.map(|()| None),
            },
        };
        self.checkin(h);
        match r {
            Ok(Some(res)) => self.write_result(res, out).await,
            Ok(None) => Ok(()),
            Err(e) => Err(backend_err(keyspace, shard, e)),
        }
    }

    /// Runs one statement per shard concurrently; the first error (in shard
    /// order) wins.
    async fn run_on_shards(
        &mut self,
        topo: &Topology,
        keyspace: &str,
        tablet_type: TabletType,
        parts: &[(&str, &str)],
    ) -> Result<Vec<QueryResult>, GateError> {
        let mut held = Vec::with_capacity(parts.len());
        for (shard, _) in parts {
            match self.checkout(topo, keyspace, shard, tablet_type).await {
                Ok(h) => held.push(h),
                Err(e) => {
                    for h in held {
                        self.checkin(h);
                    }
                    return Err(e);
                }
            }
        }
        let results = futures::future::join_all(
            held.iter_mut()
                .zip(parts)
                .map(|(h, (_, sql))| h.conn.query_rows(sql)),
        )
        .await;
        let mut ok = Vec::with_capacity(parts.len());
        let mut first_err = None;
        for (h, r) in held.into_iter().zip(results) {
            match r {
                Ok(res) => ok.push(res),
                Err(e) => {
                    if first_err.is_none() {
                        first_err = Some(backend_err(&h.keyspace, &h.shard, e));
                    }
                }
            }
            self.checkin(h);
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(ok),
        }
    }

    /// Writes to several shards; outside a transaction they run in one of
    /// their own so that an error before the commit changes nothing.
    async fn write_on_shards(
        &mut self,
        topo: &Topology,
        keyspace: &str,
        tablet_type: TabletType,
        parts: &[(&str, &str)],
    ) -> Result<Vec<QueryResult>, GateError> {
        if parts.len() < 2 || self.in_tx {
            return self.run_on_shards(topo, keyspace, tablet_type, parts).await;
        }
        self.in_tx = true;
        self.begin_sql = None;
        match self.run_on_shards(topo, keyspace, tablet_type, parts).await {
            Ok(v) => {
                self.commit_all().await?;
                Ok(v)
            }
            Err(e) => {
                self.rollback_all().await;
                Err(e)
            }
        }
    }

    async fn run_route(
        &mut self,
        topo: &Topology,
        b: BoundRoute,
        exec: Option<Exec<'_>>,
        out: &mut Response<'_>,
    ) -> Result<(), GateError> {
        if b.kind == RouteKind::Ddl {
            if self.in_tx {
                // MySQL commits the open transaction before DDL
                self.commit_all().await?;
            }
        } else {
            self.start_statement()?;
        }
        let shards: Vec<String> = match b.target {
            Target::One(s) => vec![s],
            Target::Any => vec![self.any_shard(topo, &b.keyspace)?],
            Target::Some(v) => v,
            Target::All => topo.snapshot().shard_names(&b.keyspace),
        };
        if shards.is_empty() {
            return Err(route_err(RouteError::UnknownDatabase(b.keyspace)));
        }
        if shards.len() == 1 && b.merge.is_none() {
            return self
                .run_single(
                    topo,
                    &b.keyspace,
                    &shards[0],
                    b.tablet_type,
                    b.kind,
                    &b.sql,
                    exec,
                    out,
                )
                .await;
        }
        let parts: Vec<(&str, &str)> = shards
            .iter()
            .map(|s| (s.as_str(), b.sql.as_str()))
            .collect();
        match b.kind {
            RouteKind::Read => {
                let results = self
                    .run_on_shards(topo, &b.keyspace, b.tablet_type, &parts)
                    .await?;
                self.write_merged(results, b.merge.as_ref(), out).await
            }
            RouteKind::Write => {
                let results = self
                    .write_on_shards(topo, &b.keyspace, b.tablet_type, &parts)
                    .await?;
                let affected = results.iter().map(|r| self.affected(r)).sum();
                let warnings = results
                    .iter()
                    .map(|r| r.warnings)
                    .fold(0u16, u16::saturating_add);
                out.write_ok(0, affected, 0, self.status_flags(), warnings, b"")
                    .await
            }
            RouteKind::Ddl => {
                let mut results = self
                    .run_on_shards(topo, &b.keyspace, b.tablet_type, &parts)
                    .await?;
                let first = results.swap_remove(0);
                self.write_result(first, out).await
            }
        }
    }

    /// The rows of several shards as one result set.
    async fn write_merged(
        &mut self,
        results: Vec<QueryResult>,
        m: Option<&keyshift_router::Merge>,
        out: &mut Response<'_>,
    ) -> Result<(), GateError> {
        let Some(first) = results.first() else {
            return out.ok(0, 0, "").await;
        };
        if first.columns.is_empty() {
            let affected = results.iter().map(|r| r.affected_rows).sum();
            return out
                .write_ok(0, affected, 0, self.status_flags(), 0, b"")
                .await;
        }
        let columns = first.columns.clone();
        let kinds: Vec<_> = columns.iter().map(column_kind).collect();
        let warnings = results
            .iter()
            .map(|r| r.warnings)
            .fold(0u16, u16::saturating_add);
        let per_shard: Vec<Vec<Vec<Datum>>> = results
            .into_iter()
            .map(|r| {
                r.rows
                    .into_iter()
                    .map(|row| {
                        row.into_iter()
                            .zip(&kinds)
                            .map(|(v, k)| cell_datum(*k, v))
                            .collect()
                    })
                    .collect()
            })
            .collect();
        let (rows, hidden) = match m {
            Some(m) => (merge(per_shard, m), m.hidden),
            None => (per_shard.into_iter().flatten().collect(), 0),
        };
        let visible = &columns[..columns.len().saturating_sub(hidden)];
        out.begin_result_set(visible).await?;
        let mut values: Vec<Value> = Vec::with_capacity(visible.len());
        for row in rows {
            values.clear();
            values.extend(row.into_iter().take(visible.len()).map(datum_value));
            out.row(&values).await?;
        }
        out.end_result_set(warnings).await
    }

    async fn run_insert(
        &mut self,
        topo: &Topology,
        ins: &InsertPlan,
        params: &[Datum],
        out: &mut Response<'_>,
    ) -> Result<(), GateError> {
        self.start_statement()?;
        let bound = ins.bind(params).map_err(route_err)?;
        let n = bound.ids_needed();
        let ids = if n > 0 {
            let seq = bound.sequence().ok_or_else(|| {
                GateError::internal(format!(
                    "insert into {}.{} needs generated ids but the table has no sequence",
                    ins.keyspace, ins.table
                ))
            })?;
            let shard = topo
                .snapshot()
                .keyspace(&seq.keyspace)
                .and_then(|k| k.shards.first())
                .map(|s| s.name.clone())
                .ok_or_else(|| {
                    GateError::internal(format!(
                        "sequence {}.{}: keyspace {} does not exist",
                        seq.keyspace, seq.table, seq.keyspace
                    ))
                })?;
            let tablet = topo.tablet(&seq.keyspace, &shard, TabletType::Primary)?;
            let pool = tablet.pool.clone();
            self.shared.sequences.take(&pool, seq, n).await?
        } else {
            Vec::new()
        };
        let inserts = bound.render(&ids).map_err(route_err)?;
        let parts: Vec<(&str, &str)> = inserts
            .iter()
            .map(|i| (i.shard.as_str(), i.sql.as_str()))
            .collect();
        let results = self
            .write_on_shards(topo, &ins.keyspace, TabletType::Primary, &parts)
            .await?;
        let affected = results.iter().map(|r| r.affected_rows).sum();
        let warnings = results
            .iter()
            .map(|r| r.warnings)
            .fold(0u16, u16::saturating_add);
        // MySQL reports the first id generated by a multi-row insert
        let last_id = match ids.first() {
            Some(&id) => u64::try_from(id).unwrap_or(0),
            None => results
                .iter()
                .map(|r| r.last_insert_id)
                .find(|&i| i != 0)
                .unwrap_or(0),
        };
        if last_id != 0 {
            self.last_insert_id = last_id;
        }
        out.write_ok(0, affected, last_id, self.status_flags(), warnings, b"")
            .await
    }

    fn local_datum(&self, v: &LocalValue) -> Datum {
        let opts = &self.shared.options;
        match v {
            LocalValue::Version => Datum::Text(opts.server_version.clone().into_bytes()),
            LocalValue::VersionComment => Datum::Text(opts.version_comment.clone().into_bytes()),
            LocalValue::Database => self
                .keyspace
                .as_ref()
                .map_or(Datum::Null, |k| Datum::Text(k.clone().into_bytes())),
            LocalValue::LastInsertId => Datum::UInt(self.last_insert_id),
            LocalValue::Autocommit => Datum::Int(i64::from(self.autocommit)),
            LocalValue::Socket => Datum::Null,
            LocalValue::Literal(d) => d.clone(),
        }
    }

    fn local_columns(&self, cols: &[LocalColumn]) -> Vec<Column> {
        cols.iter()
            .map(|c| match c.value {
                // typed as MySQL types them even when the value is NULL
                LocalValue::Database | LocalValue::Socket => {
                    local_column(&c.name, &Datum::Text(Vec::new()))
                }
                _ => local_column(&c.name, &self.local_datum(&c.value)),
            })
            .collect()
    }

    /// Plans the gate answers or acts on itself.
    async fn run_session(
        &mut self,
        topo: &Topology,
        plan: &Plan,
        out: &mut Response<'_>,
    ) -> Result<(), GateError> {
        match plan {
            Plan::Route(_) | Plan::Insert(_) => Err(GateError::internal(
                "routed plan reached the session-statement path",
            )),
            Plan::Use {
                keyspace,
                tablet_type,
            } => {
                self.keyspace = Some(keyspace.clone());
                self.tablet_type = *tablet_type;
                Ok(())
            }
            Plan::Begin { sql } => {
                if self.in_tx {
                    // MySQL: BEGIN inside a transaction commits it first
                    self.commit_all().await?;
                }
                self.in_tx = true;
                self.begin_sql = Some(sql.clone());
                Ok(())
            }
            Plan::Commit => self.commit_all().await,
            Plan::Rollback => {
                self.rollback_all().await;
                Ok(())
            }
            Plan::SetAutocommit(on) => self.set_autocommit(*on).await,
            Plan::SetSession {
                sql, autocommit, ..
            } => {
                self.set_session(topo, sql).await?;
                match *autocommit {
                    Some(on) => self.set_autocommit(on).await,
                    None => Ok(()),
                }
            }
            Plan::Local { columns, no_rows } => {
                let defs = self.local_columns(columns);
                out.begin_result_set(&defs).await?;
                if !no_rows {
                    let row: Vec<Value> = columns
                        .iter()
                        .map(|c| datum_value(self.local_datum(&c.value)))
                        .collect();
                    out.row(&row).await?;
                }
                out.end_result_set(0).await
            }
            Plan::ShowDatabases { like: pattern } => {
                let col = Column::new("Database", ColumnType::MYSQL_TYPE_VAR_STRING);
                out.begin_result_set(std::slice::from_ref(&col)).await?;
                let names: Vec<String> = topo
                    .snapshot()
                    .keyspace_names()
                    .filter(|n| pattern.as_deref().is_none_or(|p| like(p, n)))
                    .map(str::to_string)
                    .collect();
                for n in names {
                    out.row(&[Value::Bytes(n.into_bytes())]).await?;
                }
                out.end_result_set(0).await
            }
            Plan::ShowWarnings { sql } => {
                let found = self
                    .last_tablet
                    .and_then(|id| self.held.iter().position(|h| h.tablet_id == id));
                if let Some(i) = found {
                    let mut h = self.held.swap_remove(i);
                    let r = h.conn.query_into(sql, out).await;
                    let (ks, shard) = (h.keyspace.clone(), h.shard.clone());
                    self.checkin(h);
                    return r.map_err(|e| backend_err(&ks, &shard, e));
                }
                // the connection went back to its pool: its warnings are gone
                let cols = [
                    Column::new("Level", ColumnType::MYSQL_TYPE_VAR_STRING),
                    Column::new("Code", ColumnType::MYSQL_TYPE_LONG),
                    Column::new("Message", ColumnType::MYSQL_TYPE_VAR_STRING),
                ];
                out.result_set(&cols, &[]).await
            }
        }
    }

    /// Applies a session `SET` to every held connection and records its text
    /// for the connections taken later. With nothing held, it runs on a
    /// connection of the session's keyspace, so that a bad `SET` fails now.
    async fn set_autocommit(&mut self, on: bool) -> Result<(), GateError> {
        if on && self.in_tx {
            // MySQL: turning autocommit on commits the transaction
            self.commit_all().await?;
        }
        self.autocommit = on;
        Ok(())
    }

    async fn set_session(&mut self, topo: &Topology, sql: &str) -> Result<(), GateError> {
        if self.held.is_empty()
            && let Some(ks) = self.default_keyspace(topo)
        {
            let shard = self.any_shard(topo, &ks)?;
            let mut h = self.checkout(topo, &ks, &shard, self.tablet_type).await?;
            let r = h.conn.query_rows(sql).await;
            self.checkin(h);
            r.map_err(|e| backend_err(&ks, &shard, e))?;
        } else {
            for h in self.held.iter_mut() {
                h.conn
                    .query_rows(sql)
                    .await
                    .map_err(|e| backend_err(&h.keyspace, &h.shard, e))?;
            }
        }
        if !self.sets.iter().any(|s| s == sql) {
            self.sets.push(sql.to_string());
        }
        Ok(())
    }

    /// The prepared plan valid for the current topology, re-planned when
    /// the routing state changed since it was made.
    fn prepared_plan(
        &mut self,
        topo: &Topology,
        stmt: StmtId,
    ) -> Result<(Arc<str>, Arc<PreparedPlan>), GateError> {
        let Some(p) = self.stmts.get(&stmt) else {
            return Err(GateError::unknown_stmt(stmt.0, "mysqld_stmt_execute"));
        };
        if Arc::ptr_eq(&p.current.snapshot, topo.snapshot()) {
            return Ok((p.sql.clone(), p.current.clone()));
        }
        let ctx = SessionCtx {
            keyspace: p.keyspace.as_deref(),
            tablet_type: p.tablet_type,
            in_transaction: self.in_tx,
        };
        let plan = keyshift_router::plan(topo.snapshot(), &ctx, &p.sql).map_err(route_err)?;
        let current = Arc::new(PreparedPlan {
            snapshot: topo.snapshot().clone(),
            shortcut: shortcut(topo, &plan, &p.sql),
            plan,
        });
        let sql = p.sql.clone();
        if let Some(p) = self.stmts.get_mut(&stmt) {
            p.current = current.clone();
        }
        Ok((sql, current))
    }
}

#[async_trait]
impl SessionHandler for Session {
    async fn query(&mut self, sql: &str, out: &mut Response<'_>) -> Result<(), GateError> {
        let t0 = Instant::now();
        self.stat_keyspace = None;
        let r = self.query_inner(sql, out).await;
        self.sync_tx();
        self.record(t0, &r, out.error_code());
        r
    }

    async fn prepare(&mut self, stmt: StmtId, sql: &str) -> Result<PreparedMeta, GateError> {
        self.prepare_inner(stmt, sql).await
    }

    async fn execute(
        &mut self,
        stmt: StmtId,
        params: &[Param<'_>],
        out: &mut Response<'_>,
    ) -> Result<(), GateError> {
        let t0 = Instant::now();
        self.stat_keyspace = None;
        let r = self.execute_inner(stmt, params, out).await;
        self.sync_tx();
        self.record(t0, &r, out.error_code());
        r
    }

    async fn close_stmt(&mut self, stmt: StmtId) {
        self.close_stmt_inner(stmt).await
    }

    async fn field_list(&mut self, table: &str, wildcard: &str) -> Result<Vec<Column>, GateError> {
        self.field_list_inner(table, wildcard).await
    }

    async fn init_db(&mut self, db: &str) -> Result<(), GateError> {
        self.init_db_inner(db).await
    }

    async fn reset(&mut self) -> Result<(), GateError> {
        let r = self.reset_inner().await;
        self.sync_tx();
        r
    }

    fn status_flags(&self) -> u16 {
        self.status_flags_inner()
    }

    async fn on_disconnect(&mut self) {
        self.release_all().await;
        self.stmts.clear();
        self.sync_tx();
    }
}

impl Session {
    async fn query_inner(&mut self, sql: &str, out: &mut Response<'_>) -> Result<(), GateError> {
        let mut topo = self.shared.routing.current();
        let plan = loop {
            let plan = self.plan(&topo, sql)?;
            let hold = plan_keyspace(&plan).and_then(|ks| self.hold_for(&topo, ks));
            match hold {
                Some(h) if wait_for_release(self.shared.clone(), &mut topo, h.clone()).await? => {
                    continue;
                }
                _ => break plan,
            }
        };
        self.count_in(plan_keyspace(&plan));
        match &*plan {
            Plan::Route(r) => {
                let b = r.bind(&[]).map_err(route_err)?;
                self.run_route(&topo, b, None, out).await
            }
            Plan::Insert(i) => self.run_insert(&topo, i, &[], out).await,
            other => self.run_session(&topo, other, out).await,
        }
    }

    async fn prepare_inner(&mut self, stmt: StmtId, sql: &str) -> Result<PreparedMeta, GateError> {
        let topo = self.shared.routing.current();
        let plan = self.plan(&topo, sql)?;
        let sc = shortcut(&topo, &plan, sql);
        let meta = match &*plan {
            Plan::Route(r) => {
                let shard = match &sc.fixed_shard {
                    Some(s) => s.clone(),
                    None => self.any_shard(&topo, &r.keyspace)?,
                };
                let text = if sc.text_unchanged {
                    sql.to_string()
                } else {
                    r.sql_template()
                };
                let mut h = self
                    .checkout(&topo, &r.keyspace, &shard, r.tablet_type)
                    .await?;
                let res = h.conn.prepare(&text).await;
                self.checkin(h);
                let bs = res.map_err(|e| backend_err(&r.keyspace, &shard, e))?;
                let n = r.param_count();
                PreparedMeta {
                    params: if bs.params.len() == n {
                        bs.params.clone()
                    } else {
                        placeholders(n)
                    },
                    columns: bs.columns.clone(),
                }
            }
            Plan::Insert(i) => PreparedMeta {
                params: placeholders(i.param_count()),
                columns: Vec::new(),
            },
            Plan::Local { columns, .. } => PreparedMeta {
                params: Vec::new(),
                columns: self.local_columns(columns),
            },
            Plan::ShowDatabases { .. } => PreparedMeta {
                params: Vec::new(),
                columns: vec![Column::new("Database", ColumnType::MYSQL_TYPE_VAR_STRING)],
            },
            _ => PreparedMeta::default(),
        };
        self.stmts.insert(
            stmt,
            Prepared {
                sql: Arc::from(sql),
                keyspace: self.keyspace.clone(),
                tablet_type: self.tablet_type,
                current: Arc::new(PreparedPlan {
                    snapshot: topo.snapshot().clone(),
                    plan,
                    shortcut: sc,
                }),
            },
        );
        Ok(meta)
    }

    async fn execute_inner(
        &mut self,
        stmt: StmtId,
        params: &[Param<'_>],
        out: &mut Response<'_>,
    ) -> Result<(), GateError> {
        let mut topo = self.shared.routing.current();
        let (sql, pp) = loop {
            let (sql, pp) = self.prepared_plan(&topo, stmt)?;
            let hold = plan_keyspace(&pp.plan).and_then(|ks| self.hold_for(&topo, ks));
            match hold {
                Some(h) if wait_for_release(self.shared.clone(), &mut topo, h.clone()).await? => {
                    continue;
                }
                _ => break (sql, pp),
            }
        };
        self.count_in(plan_keyspace(&pp.plan));
        match &*pp.plan {
            Plan::Route(r) => {
                let exec = Exec { sql: &sql, params };
                if r.kind != RouteKind::Ddl
                    && pp.shortcut.text_unchanged
                    && let Some(shard) = &pp.shortcut.fixed_shard
                {
                    self.start_statement()?;
                    return self
                        .run_single(
                            &topo,
                            &r.keyspace,
                            shard,
                            r.tablet_type,
                            r.kind,
                            "",
                            Some(exec),
                            out,
                        )
                        .await;
                }
                let datums: Vec<Datum> = params.iter().map(param_datum).collect();
                let b = r.bind(&datums).map_err(route_err)?;
                let exec = (pp.shortcut.text_unchanged && b.merge.is_none()).then_some(exec);
                self.run_route(&topo, b, exec, out).await
            }
            Plan::Insert(i) => {
                let datums: Vec<Datum> = params.iter().map(param_datum).collect();
                self.run_insert(&topo, i, &datums, out).await
            }
            other => self.run_session(&topo, other, out).await,
        }
    }

    async fn close_stmt_inner(&mut self, stmt: StmtId) {
        // the backend statement stays cached on its connection for the next
        // client that prepares the same text
        self.stmts.remove(&stmt);
    }

    async fn field_list_inner(
        &mut self,
        table: &str,
        wildcard: &str,
    ) -> Result<Vec<Column>, GateError> {
        let topo = self.shared.routing.current();
        let Some(ks) = self.keyspace.clone() else {
            return Err(route_err(RouteError::NoDatabaseSelected));
        };
        let shard = self.any_shard(&topo, &ks)?;
        let mut h = self.checkout(&topo, &ks, &shard, self.tablet_type).await?;
        let r = h.conn.field_list(table, wildcard).await;
        self.checkin(h);
        r.map_err(|e| backend_err(&ks, &shard, e))
    }

    async fn init_db_inner(&mut self, db: &str) -> Result<(), GateError> {
        let topo = self.shared.routing.current();
        let (ks, tt) = use_target(topo.snapshot(), db).map_err(route_err)?;
        self.keyspace = Some(ks);
        self.tablet_type = tt;
        Ok(())
    }

    async fn reset_inner(&mut self) -> Result<(), GateError> {
        self.release_all().await;
        self.sets.clear();
        self.stmts.clear();
        self.autocommit = true;
        self.last_insert_id = 0;
        self.last_tablet = None;
        Ok(())
    }

    fn status_flags_inner(&self) -> u16 {
        let mut s = 0;
        if self.autocommit {
            s |= AUTOCOMMIT;
        }
        if self.in_tx {
            s |= IN_TRANS;
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::like;

    #[test]
    fn matched_rows_from_update_info() {
        assert_eq!(
            super::rows_matched("Rows matched: 27  Changed: 22  Warnings: 0"),
            Some(27)
        );
        assert_eq!(super::rows_matched(""), None);
        assert_eq!(super::rows_matched("Records: 3  Duplicates: 0"), None);
    }

    #[test]
    fn plain_begins() {
        for s in [
            "BEGIN",
            "begin",
            " Begin ;",
            "BEGIN WORK",
            "start  transaction",
        ] {
            assert!(super::is_plain_begin(s), "{s}");
        }
        for s in [
            "START TRANSACTION READ ONLY",
            "START TRANSACTION WITH CONSISTENT SNAPSHOT",
            "BEGIN x",
            "",
        ] {
            assert!(!super::is_plain_begin(s), "{s}");
        }
    }

    #[test]
    fn like_patterns() {
        assert!(like("c%", "commerce"));
        assert!(like("C%", "commerce"));
        assert!(like("%merce", "commerce"));
        assert!(like("cust_mer", "customer"));
        assert!(!like("cust_mer", "custmer"));
        assert!(like("a\\_b", "a_b"));
        assert!(!like("a\\_b", "axb"));
        assert!(like("%", ""));
        assert!(!like("x", ""));
    }
}
