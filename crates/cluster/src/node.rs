//! The local node: what `keyshift up` does to the cluster before serving.
//!
//! * [`seed`] writes what the cluster file declares into the topo (keyspaces
//!   and shards that are missing, declared tablets, gate users).
//! * [`TabletRunner`] reconciles the topo's managed tablets with running
//!   `mariadbd` processes: it starts one supervisor per managed tablet record,
//!   stops it when the record goes away, and writes the port a server actually
//!   got back into its record, so every other role finds it through the topo.
//!   A tablet added by `keyshift keyspace create` while `up` runs starts at
//!   once, because the runner watches the topo rather than the file.
//! * A managed tablet with role `replica` runs read-only and is seeded from,
//!   then kept replicating from, its shard's primary
//!   ([`keyshift_tablet::ensure_replica`], whose module doc tells how seeding
//!   stays consistent). Its port goes into the topo only once it replicates,
//!   because the gate sends `@replica` reads to any replica it finds there;
//!   until then its state is `Preparing`. Afterwards replication is checked
//!   again on every restart of the replica, on every change of the tablet
//!   records (a primary restarted on another port is followed) and every few
//!   seconds.

use crate::file::{ClusterFile, resolve_secret};
use crate::model::{ShardRecord, TabletRecord, TabletRole, keys};
use crate::ops::{self, ClusterError, ManagedDefaults, Result, TabletSpec};
use futures::StreamExt;
use keyshift_tablet::{
    EnsureOutcome, MariadbBinaries, MysqldConfig, ProcessState, ReplicaSetup, ReplicationError,
};
use keyshift_topo::{Topo, TopoExt};
use keyshift_types::TabletAlias;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{Notify, watch};
use tokio_util::sync::CancellationToken;

impl ClusterFile {
    pub fn managed_defaults(&self) -> ManagedDefaults {
        ManagedDefaults {
            cell: self.cell.clone(),
            data_dir: self.data_dir(),
        }
    }
}

/// Writes the cluster file's declarations into the topo. Returns warnings
/// where the topo already disagrees with the file (the topo wins for
/// keyspace layouts, which workflows change; the file wins for the tablets and
/// users it declares).
pub async fn seed(topo: &dyn Topo, file: &ClusterFile) -> Result<Vec<String>> {
    let mut warnings = Vec::new();
    let defaults = file.managed_defaults();
    for decl in &file.keyspaces {
        let spec = decl.shard_spec().map_err(ClusterError::Invalid)?;
        match ops::get_keyspace(topo, &decl.name).await {
            Ok(_) => {
                let have: Vec<String> = ops::list_shards(topo, &decl.name)
                    .await?
                    .into_iter()
                    .map(|s| s.name)
                    .collect();
                let want: Vec<String> = spec
                    .key_ranges()
                    .map_err(ClusterError::Invalid)?
                    .into_iter()
                    .map(|(n, _)| n)
                    .collect();
                if have != want {
                    warnings.push(format!(
                        "keyspace `{}`: the cluster file declares shards [{}] but the topo has [{}]; keeping the topo's (a workflow may have resharded it)",
                        decl.name,
                        want.join(", "),
                        have.join(", ")
                    ));
                }
            }
            Err(ClusterError::NoSuchKeyspace(_)) => {
                ops::create_keyspace(topo, &decl.name, &spec, None).await?;
            }
            Err(e) => return Err(e),
        }
    }
    for decl in &file.tablets {
        let alias = TabletAlias {
            cell: file.cell.clone(),
            uid: decl.uid.ok_or_else(|| {
                ClusterError::Invalid(format!(
                    "[[tablet]] {}/{} needs a `uid`",
                    decl.keyspace, decl.shard
                ))
            })?,
        };
        let spec = if decl.is_external() {
            TabletSpec::External {
                host: decl.host.clone().unwrap_or_default(),
                port: decl.port.unwrap_or(3306),
                user: decl.user.clone().unwrap_or_default(),
                password: decl
                    .password
                    .as_deref()
                    .map(resolve_secret)
                    .transpose()
                    .map_err(ClusterError::Invalid)?
                    .unwrap_or_default(),
                database: decl.database.clone(),
            }
        } else {
            TabletSpec::Managed {
                port: decl.port.unwrap_or(0),
            }
        };
        match ops::get_tablet(topo, &alias).await {
            Ok(existing) => {
                if existing.keyspace != decl.keyspace || existing.shard != decl.shard {
                    return Err(ClusterError::Conflict(format!(
                        "tablet {alias} is declared for {}/{} but the topo has it serving {}/{}; give it another uid",
                        decl.keyspace, decl.shard, existing.keyspace, existing.shard
                    )));
                }
                refresh_declared(topo, existing, spec).await?;
            }
            Err(ClusterError::NoSuchTablet(_)) => {
                ops::add_tablet(
                    topo,
                    &defaults,
                    &decl.keyspace,
                    &decl.shard,
                    decl.role,
                    Some(alias.uid),
                    spec,
                )
                .await?;
            }
            Err(e) => return Err(e),
        }
    }
    // A declared keyspace shard that nobody serves gets a managed primary, so a
    // file that lists only keyspaces still yields a working cluster.
    for decl in &file.keyspaces {
        for shard in ops::list_shards(topo, &decl.name).await? {
            if shard.primary.is_none() {
                ops::add_tablet(
                    topo,
                    &defaults,
                    &decl.name,
                    &shard.name,
                    TabletRole::Primary,
                    None,
                    TabletSpec::Managed { port: 0 },
                )
                .await?;
            }
        }
    }
    let mut users = Vec::new();
    for u in &file.gate.users {
        users.push((
            u.name.clone(),
            resolve_secret(&u.password).map_err(ClusterError::Invalid)?,
        ));
    }
    ops::set_gate_users(topo, &users).await?;
    Ok(warnings)
}

/// Applies the file's current settings to a tablet it declares.
async fn refresh_declared(topo: &dyn Topo, existing: TabletRecord, spec: TabletSpec) -> Result<()> {
    let mut updated = existing.clone();
    match spec {
        TabletSpec::Managed { port } => {
            if let Some(m) = &mut updated.managed
                && m.requested_port != port
            {
                m.requested_port = port;
                updated.port = port;
            }
        }
        TabletSpec::External {
            host,
            port,
            user,
            password,
            database,
        } => {
            updated.host = host;
            updated.port = port;
            updated.user = user;
            updated.password = password;
            updated.database = database.unwrap_or_else(|| updated.keyspace.clone());
            updated.managed = None;
        }
    }
    if updated != existing {
        topo.put_json(
            &keys::tablet(&updated.alias),
            &updated,
            keyshift_topo::Cond::Any,
        )
        .await?;
    }
    Ok(())
}

/// State of each managed tablet this node runs.
pub type TabletStates = BTreeMap<TabletAlias, ProcessState>;

/// Runs the managed tablets of the topo until cancelled.
pub struct TabletRunner {
    states: watch::Receiver<TabletStates>,
    handle: tokio::task::JoinHandle<()>,
}

impl TabletRunner {
    pub fn spawn(
        topo: Arc<dyn Topo>,
        binaries: Option<MariadbBinaries>,
        cancel: CancellationToken,
    ) -> TabletRunner {
        let (tx, rx) = watch::channel(TabletStates::new());
        let handle = tokio::spawn(run_tablets(topo, binaries, cancel, tx));
        TabletRunner { states: rx, handle }
    }

    pub fn states(&self) -> watch::Receiver<TabletStates> {
        self.states.clone()
    }

    /// Waits until every managed tablet in `expected` runs, or reports the
    /// first one that failed, or times out naming the ones still starting.
    pub async fn wait_running(&self, expected: &[TabletAlias], timeout: Duration) -> Result<()> {
        let mut rx = self.states.clone();
        let wait = async {
            loop {
                let pending: Vec<String> = {
                    let states = rx.borrow_and_update();
                    let mut pending = Vec::new();
                    for alias in expected {
                        match states.get(alias) {
                            Some(ProcessState::Running { .. }) => {}
                            Some(ProcessState::Failed { reason }) => {
                                return Err(ClusterError::Invalid(format!(
                                    "tablet {alias} could not start: {reason}"
                                )));
                            }
                            _ => pending.push(alias.to_string()),
                        }
                    }
                    pending
                };
                if pending.is_empty() {
                    return Ok(());
                }
                if rx.changed().await.is_err() {
                    return Err(ClusterError::Invalid(
                        "the tablet runner stopped".to_string(),
                    ));
                }
            }
        };
        match tokio::time::timeout(timeout, wait).await {
            Ok(r) => r,
            Err(_) => {
                let states = self.states.borrow();
                let pending: Vec<String> = expected
                    .iter()
                    .filter(|a| !matches!(states.get(*a), Some(ProcessState::Running { .. })))
                    .map(|a| format!("{a} ({:?})", states.get(a)))
                    .collect();
                Err(ClusterError::Invalid(format!(
                    "tablets not running after {timeout:?}: {}",
                    pending.join(", ")
                )))
            }
        }
    }

    /// Resolves when every supervised server has stopped (after cancel).
    pub async fn join(self) {
        let _ = self.handle.await;
    }
}

struct Supervised {
    cancel: CancellationToken,
    handle: tokio::task::JoinHandle<()>,
    follower: tokio::task::JoinHandle<()>,
    /// Replicas only: wakes the follower to re-check replication when the
    /// tablet records change (a primary that moved, a new primary).
    poke: Option<Arc<Notify>>,
}

/// The runner's state: what it supervises and what is still stopping.
struct Reconciler {
    topo: Arc<dyn Topo>,
    binaries: Option<MariadbBinaries>,
    cancel: CancellationToken,
    states: watch::Sender<TabletStates>,
    running: BTreeMap<TabletAlias, Supervised>,
    /// Servers of removed tablets that are still shutting down; awaited
    /// before the runner ends so that `down` returns only when every server
    /// is gone.
    stopping: Vec<tokio::task::JoinHandle<()>>,
}

async fn run_tablets(
    topo: Arc<dyn Topo>,
    binaries: Option<MariadbBinaries>,
    cancel: CancellationToken,
    states: watch::Sender<TabletStates>,
) {
    let mut r = Reconciler {
        topo,
        binaries,
        cancel: cancel.clone(),
        states,
        running: BTreeMap::new(),
        stopping: Vec::new(),
    };
    let mut backoff = Duration::from_millis(200);
    'outer: while !cancel.is_cancelled() {
        // Revision first, then list, then watch from that revision: no change
        // falls between the list and the watch.
        let listed = async {
            let rev = r.topo.revision().await.map_err(ClusterError::from)?;
            r.sync().await?;
            r.topo
                .watch(keys::TABLETS, rev)
                .await
                .map_err(ClusterError::from)
        };
        let mut stream = match listed.await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot follow the topo's tablets; retrying");
                tokio::select! { _ = cancel.cancelled() => break, _ = tokio::time::sleep(backoff) => {} }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        backoff = Duration::from_millis(200);
        loop {
            let event = tokio::select! {
                _ = cancel.cancelled() => break 'outer,
                e = stream.next() => e,
            };
            match event {
                // Cheap: re-list and diff, so every path goes through one
                // reconcile function.
                Some(Ok(_)) => {
                    if let Err(e) = r.sync().await {
                        tracing::warn!(error = %e, "cannot list tablets; re-listing");
                        continue 'outer;
                    }
                }
                Some(Err(e)) => {
                    tracing::warn!(error = %e, "tablet watch failed; re-listing");
                    continue 'outer;
                }
                None => continue 'outer,
            }
        }
    }
    r.shutdown().await;
}

impl Reconciler {
    async fn sync(&mut self) -> Result<()> {
        let want: BTreeMap<TabletAlias, TabletRecord> = ops::list_tablets(self.topo.as_ref())
            .await?
            .into_iter()
            .filter(|t| t.managed.is_some())
            .map(|t| (t.alias.clone(), t))
            .collect();
        self.apply(&want);
        Ok(())
    }

    async fn shutdown(mut self) {
        for (alias, s) in std::mem::take(&mut self.running) {
            s.cancel.cancel();
            let _ = s.handle.await;
            s.follower.abort();
            tracing::info!(tablet = %alias, "stopped");
        }
        for h in self.stopping {
            let _ = h.await;
        }
    }

    fn apply(&mut self, want: &BTreeMap<TabletAlias, TabletRecord>) {
        self.stopping.retain(|h| !h.is_finished());
        let gone: Vec<TabletAlias> = self
            .running
            .keys()
            .filter(|a| !want.contains_key(*a))
            .cloned()
            .collect();
        for alias in gone {
            if let Some(s) = self.running.remove(&alias) {
                tracing::info!(tablet = %alias, "tablet record removed; stopping its server");
                s.cancel.cancel();
                s.follower.abort();
                self.stopping.push(s.handle);
                self.states.send_modify(|m| {
                    m.remove(&alias);
                });
            }
        }
        for (alias, record) in want {
            if self.running.contains_key(alias) {
                continue;
            }
            let Some(managed) = &record.managed else {
                continue;
            };
            let Some(binaries) = self.binaries.clone() else {
                self.states.send_modify(|m| {
                m.insert(
                    alias.clone(),
                    ProcessState::Failed {
                        reason: "mariadbd was not found: install Debian's mariadb-server (sudo apt-get install mariadb-server) or set `mariadbd = \"/path\"` in the cluster file".to_string(),
                    },
                );
            });
                continue;
            };
            let port = if record.port != 0 {
                record.port
            } else {
                managed.requested_port
            };
            let is_replica = record.role == TabletRole::Replica;
            let cfg = MysqldConfig {
                binaries: binaries.clone(),
                datadir: managed.datadir.clone(),
                port,
                server_id: managed.server_id,
                admin_user: record.user.clone(),
                admin_password: record.password.clone(),
                extra_args: if is_replica {
                    replica_args()
                } else {
                    Vec::new()
                },
                die_with_parent: false,
            };
            let replica = is_replica.then(|| ReplicaCtx {
                poke: Arc::new(Notify::new()),
                binaries,
                scratch_dir: cfg.tmp_dir(),
            });
            let poke = replica.as_ref().map(|r| r.poke.clone());
            let child = self.cancel.child_token();
            let socket = cfg.socket_path();
            let (handle, rx) = keyshift_tablet::supervise(cfg, child.clone());
            let follower = tokio::spawn(follow_state(
                self.topo.clone(),
                record.clone(),
                socket,
                rx,
                self.states.clone(),
                replica,
            ));
            self.running.insert(
                alias.clone(),
                Supervised {
                    cancel: child,
                    handle,
                    follower,
                    poke,
                },
            );
        }
        // Any tablet change may be a replica's primary moving.
        for s in self.running.values() {
            if let Some(poke) = &s.poke {
                poke.notify_one();
            }
        }
    }
}

/// Mirrors one supervisor's state into the shared map, and on every (re)start
/// makes sure the topo has the server's port and the server has the
/// keyspace's database. A replica is first brought to replicate
/// ([`keep_replica`]).
async fn follow_state(
    topo: Arc<dyn Topo>,
    record: TabletRecord,
    socket: std::path::PathBuf,
    mut rx: watch::Receiver<ProcessState>,
    states: watch::Sender<TabletStates>,
    replica: Option<ReplicaCtx>,
) {
    loop {
        let state = rx.borrow_and_update().clone();
        if let ProcessState::Running { port, .. } = &state {
            if let Some(ctx) = &replica {
                let running = Running {
                    topo: topo.as_ref(),
                    record: &record,
                    state: &state,
                    port: *port,
                    socket: &socket,
                    states: &states,
                };
                if keep_replica(running, ctx, &mut rx).await {
                    continue;
                }
                return;
            }
            if let Err(e) = on_running(topo.as_ref(), &record, *port, &socket, true).await {
                tracing::error!(tablet = %record.alias, error = %e, "cannot register the running server");
                states.send_modify(|m| {
                    m.insert(
                        record.alias.clone(),
                        ProcessState::Failed {
                            reason: e.to_string(),
                        },
                    );
                });
                if rx.changed().await.is_err() {
                    return;
                }
                continue;
            }
        }
        states.send_modify(|m| {
            m.insert(record.alias.clone(), state.clone());
        });
        if rx.changed().await.is_err() {
            return;
        }
    }
}

/// Server flags of a replica. `--skip-slave-start`: after a restart the
/// replica waits for [`keep_replica`] to check its primary's current address
/// instead of reconnecting to the old one, which another server may have
/// taken since.
fn replica_args() -> Vec<String> {
    vec!["--read-only".to_string(), "--skip-slave-start".to_string()]
}

/// What the follower of a replica needs besides the supervisor's state.
struct ReplicaCtx {
    poke: Arc<Notify>,
    binaries: MariadbBinaries,
    /// The replica's private tmpdir, for the seeding tools' credentials.
    scratch_dir: std::path::PathBuf,
}

/// One running server, as the follower sees it.
struct Running<'a> {
    topo: &'a dyn Topo,
    record: &'a TabletRecord,
    state: &'a ProcessState,
    port: u16,
    socket: &'a std::path::Path,
    states: &'a watch::Sender<TabletStates>,
}

impl Running<'_> {
    fn publish(&self, state: ProcessState) {
        self.states.send_modify(|m| {
            m.insert(self.record.alias.clone(), state);
        });
    }
}

/// How often a replica's replication is re-checked when nothing happens.
const REPLICA_CHECK_INTERVAL: Duration = Duration::from_secs(5);
const REPLICA_RETRY_MAX: Duration = Duration::from_secs(5);

/// Keeps one running replica replicating from its shard's primary until the
/// supervisor's state changes (true) or the supervisor is gone (false). The
/// replica is announced (port in the topo, state `Running`) after its first
/// successful check, so `up` returns, and the gate reads from it, only once
/// it holds the primary's data.
async fn keep_replica(
    r: Running<'_>,
    ctx: &ReplicaCtx,
    rx: &mut watch::Receiver<ProcessState>,
) -> bool {
    let replica = keyshift_tablet::Endpoint {
        port: r.port,
        ..r.record.endpoint()
    };
    let mut announced = false;
    let mut backoff = Duration::from_millis(250);
    let mut last_error = String::new();
    let mut last_outcome = None;
    loop {
        let wait = match replica_pass(r.topo, r.record, &replica, ctx).await {
            Ok(outcome) => {
                last_error.clear();
                if last_outcome != Some(outcome) {
                    let alias = &r.record.alias;
                    match outcome {
                        EnsureOutcome::Broken => tracing::warn!(
                            tablet = %alias,
                            "replication is broken; `keyshift status` shows why"
                        ),
                        EnsureOutcome::Seeded => {
                            tracing::info!(tablet = %alias, "replica seeded from its primary; replicating")
                        }
                        EnsureOutcome::Repointed => {
                            tracing::info!(tablet = %alias, "replica re-pointed at its primary's current address")
                        }
                        EnsureOutcome::Started => {
                            tracing::info!(tablet = %alias, "replication started")
                        }
                        EnsureOutcome::Unchanged => {}
                    }
                    last_outcome = Some(outcome);
                }
                if !announced {
                    match on_running(r.topo, r.record, r.port, r.socket, false).await {
                        Ok(()) => {
                            announced = true;
                            r.publish(r.state.clone());
                        }
                        Err(e) => {
                            tracing::warn!(tablet = %r.record.alias, error = %e, "cannot register the replica; retrying");
                            r.publish(ProcessState::Preparing {
                                reason: e.to_string(),
                            });
                        }
                    }
                }
                backoff = Duration::from_millis(250);
                if announced {
                    REPLICA_CHECK_INTERVAL
                } else {
                    REPLICA_RETRY_MAX
                }
            }
            Err(e) => {
                let message = e.to_string();
                if message != last_error {
                    tracing::warn!(tablet = %r.record.alias, error = %message, "replica not replicating yet; retrying");
                    last_error = message.clone();
                }
                last_outcome = None;
                if !announced {
                    r.publish(if e.is_transient() {
                        ProcessState::Preparing { reason: message }
                    } else {
                        ProcessState::Failed { reason: message }
                    });
                }
                let wait = backoff;
                backoff = (backoff * 2).min(REPLICA_RETRY_MAX);
                wait
            }
        };
        tokio::select! {
            changed = rx.changed() => return changed.is_ok(),
            _ = ctx.poke.notified() => {}
            _ = tokio::time::sleep(wait) => {}
        }
    }
}

/// Why a replica check did not complete.
#[derive(Debug, thiserror::Error)]
enum ReplicaPassError {
    #[error("waiting for the primary of {keyspace}/{shard}: {why}")]
    NoPrimary {
        keyspace: String,
        shard: String,
        why: String,
    },
    #[error(transparent)]
    Cluster(#[from] ClusterError),
    #[error(transparent)]
    Tools(#[from] keyshift_tablet::TabletError),
    #[error(transparent)]
    Replication(#[from] ReplicationError),
}

impl ReplicaPassError {
    fn is_transient(&self) -> bool {
        match self {
            ReplicaPassError::NoPrimary { .. } | ReplicaPassError::Cluster(_) => true,
            ReplicaPassError::Tools(_) => false,
            ReplicaPassError::Replication(e) => e.is_transient(),
        }
    }
}

/// One check of a replica against its shard's current primary record.
async fn replica_pass(
    topo: &dyn Topo,
    record: &TabletRecord,
    replica: &keyshift_tablet::Endpoint,
    ctx: &ReplicaCtx,
) -> std::result::Result<EnsureOutcome, ReplicaPassError> {
    let no_primary = |why: &str| ReplicaPassError::NoPrimary {
        keyspace: record.keyspace.clone(),
        shard: record.shard.clone(),
        why: why.to_string(),
    };
    let shard = topo
        .get_json::<ShardRecord>(&keys::shard(&record.keyspace, &record.shard))
        .await
        .map_err(ClusterError::from)?
        .map(|(s, _)| s)
        .ok_or_else(|| no_primary("the shard does not exist"))?;
    let alias = shard
        .primary
        .ok_or_else(|| no_primary("the shard has no primary tablet"))?;
    if alias == record.alias {
        return Err(no_primary("this tablet is the shard's primary"));
    }
    let primary = ops::get_tablet(topo, &alias).await?;
    if primary.port == 0 {
        return Err(no_primary(&format!("primary {alias} has not started yet")));
    }
    let tools = keyshift_tablet::find_client_tools(&ctx.binaries)?;
    let outcome = keyshift_tablet::ensure_replica(&ReplicaSetup {
        tools: &tools,
        replica,
        primary: &primary.endpoint(),
        scratch_dir: &ctx.scratch_dir,
    })
    .await?;
    Ok(outcome)
}

/// Records the server's address in the topo and, with `create_db`, creates
/// the keyspace's database. Replicas get it from their primary instead: a
/// statement of their own would put a GTID of theirs in the binlog, out of
/// order with the primary's.
async fn on_running(
    topo: &dyn Topo,
    record: &TabletRecord,
    port: u16,
    socket: &std::path::Path,
    create_db: bool,
) -> Result<()> {
    let key = keys::tablet(&record.alias);
    let updated = topo
        .update_json::<TabletRecord, _, ClusterError>(&key, |current| {
            let mut t =
                current.ok_or_else(|| ClusterError::NoSuchTablet(record.alias.to_string()))?;
            t.port = port;
            t.socket = Some(socket.to_path_buf());
            Ok(t)
        })
        .await
        .map_err(|e| {
            ClusterError::Invalid(format!("cannot record the port of {}: {e}", record.alias))
        })?
        .0;
    if create_db {
        create_database(&updated).await?;
    }
    Ok(())
}

/// Every shard's server holds the keyspace in a database of the same name.
async fn create_database(t: &TabletRecord) -> Result<()> {
    use mysql_async::prelude::Queryable;
    let mut conn = mysql_async::Conn::new(t.endpoint().opts())
        .await
        .map_err(|e| ClusterError::Invalid(format!("cannot connect to {}: {e}", t.alias)))?;
    conn.query_drop(format!("CREATE DATABASE IF NOT EXISTS `{}`", t.database))
        .await
        .map_err(|e| {
            ClusterError::Invalid(format!("cannot create database on {}: {e}", t.alias))
        })?;
    let _ = conn.disconnect().await;
    Ok(())
}

/// Shards of a keyspace with their primary records, for callers that wait on
/// a freshly created keyspace.
pub async fn keyspace_primaries(
    topo: &dyn Topo,
    keyspace: &str,
) -> Result<Vec<(ShardRecord, TabletRecord)>> {
    let mut out = Vec::new();
    for (shard, primary) in ops::shard_primaries(topo, keyspace).await? {
        let primary = primary.ok_or_else(|| {
            ClusterError::Invalid(format!(
                "shard {keyspace}/{} has no primary tablet",
                shard.name
            ))
        })?;
        out.push((shard, primary));
    }
    Ok(out)
}
