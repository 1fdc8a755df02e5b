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

use crate::file::{ClusterFile, resolve_secret};
use crate::model::{ShardRecord, TabletRecord, TabletRole, keys};
use crate::ops::{self, ClusterError, ManagedDefaults, Result, TabletSpec};
use futures::StreamExt;
use keyshift_tablet::{MariadbBinaries, MysqldConfig, ProcessState};
use keyshift_topo::{Topo, TopoExt};
use keyshift_types::TabletAlias;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
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
            let cfg = MysqldConfig {
                binaries,
                datadir: managed.datadir.clone(),
                port,
                server_id: managed.server_id,
                admin_user: record.user.clone(),
                admin_password: record.password.clone(),
                extra_args: Vec::new(),
                die_with_parent: false,
            };
            let child = self.cancel.child_token();
            let socket = cfg.socket_path();
            let (handle, rx) = keyshift_tablet::supervise(cfg, child.clone());
            let follower = tokio::spawn(follow_state(
                self.topo.clone(),
                record.clone(),
                socket,
                rx,
                self.states.clone(),
            ));
            self.running.insert(
                alias.clone(),
                Supervised {
                    cancel: child,
                    handle,
                    follower,
                },
            );
        }
    }
}

/// Mirrors one supervisor's state into the shared map, and on every (re)start
/// makes sure the topo has the server's port and the server has the
/// keyspace's database.
async fn follow_state(
    topo: Arc<dyn Topo>,
    record: TabletRecord,
    socket: std::path::PathBuf,
    mut rx: watch::Receiver<ProcessState>,
    states: watch::Sender<TabletStates>,
) {
    loop {
        let state = rx.borrow_and_update().clone();
        if let ProcessState::Running { port, .. } = &state
            && let Err(e) = on_running(topo.as_ref(), &record, *port, &socket).await
        {
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
        states.send_modify(|m| {
            m.insert(record.alias.clone(), state.clone());
        });
        if rx.changed().await.is_err() {
            return;
        }
    }
}

async fn on_running(
    topo: &dyn Topo,
    record: &TabletRecord,
    port: u16,
    socket: &std::path::Path,
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
    create_database(&updated).await
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
