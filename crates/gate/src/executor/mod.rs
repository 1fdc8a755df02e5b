//! The gate's brain: runs the router's plans against the tablets.
//!
//! # A session
//!
//! Each client connection has one [`Session`]: the keyspace of `USE` (and
//! its tablet type, `USE ks@replica`), autocommit, whether a transaction is
//! open, the `SET` statements the client ran (their original text), the
//! prepared statements, the last insert id, and the backend connections it
//! holds. Nothing else is remembered between statements.
//!
//! A backend connection is borrowed from its tablet's pool for one statement
//! and given back, unless the session must keep it: inside a transaction,
//! once the session has `SET` state, or when the backend reports that the
//! statement changed session state (user variables, temporary tables). Kept
//! connections are keyed by keyspace, shard and tablet type. A connection
//! taken later gets every recorded `SET` replayed first; a new `SET` runs on
//! every kept connection at once. So each backend connection of a session
//! always carries the session's settings.
//!
//! # Transactions
//!
//! `BEGIN` opens nothing on the backends; the first statement on each shard
//! starts that shard's transaction with the client's own `BEGIN` text (a
//! plain `BEGIN` / `START TRANSACTION` goes out in the same write as that
//! statement, without a round trip of its own). With
//! autocommit off, the first statement opens a transaction implicitly, as in
//! MySQL. A single-shard transaction is exactly the backend's. A multi-shard
//! transaction commits **shard by shard, best-effort**: if a commit fails,
//! the shards not yet committed are rolled back and the client gets error
//! 1105 naming the shard that failed and the shards that had already
//! committed (their changes stay). There is no two-phase commit.
//!
//! A write that reaches several shards outside a transaction (a scattered
//! `UPDATE`/`DELETE`, a split `INSERT`) runs in a transaction of its own with
//! the same commit, so a failure on one shard before the commit leaves no
//! shard changed. DDL commits an open transaction first, as MySQL does.
//!
//! A connection lost inside a transaction ends the transaction on that
//! shard; every later statement of the transaction fails until the client
//! rolls back. A client that disconnects gets its connections reset
//! (COM_RESET_CONNECTION rolls back and drops locks) before they return to
//! the pools.
//!
//! # Routing
//!
//! Every statement is planned against the current [`Topology`] (router
//! snapshot plus pools), which the service swaps atomically when the topo
//! changes; a prepared statement is re-planned when the snapshot it was
//! planned with is no longer the current one, so a routing switch reaches
//! it at its next execution. `@replica` / `@rdonly` sessions use a replica of
//! each shard when the shard has one and its primary otherwise.
//!
//! # Traffic holds
//!
//! During a traffic switch the topology carries a hold on the keyspace
//! being switched away from. A statement bound for it waits (bounded by the
//! hold's window and queue size) until a topology without the hold is
//! installed, then is planned again — against the new routing rules, which
//! arrive in the same topo transaction that lifts the hold. A session whose
//! open transaction already did work on that keyspace is not held: it must
//! finish where it began, and the switch waits for it (see [`Activity`]).
//!
//! # Fast path
//!
//! A plan for one shard with nothing to merge is forwarded raw: result
//! packets go from the backend to the client undecoded. A prepared
//! statement whose text needs no rewriting is prepared on the backend too
//! and executed with the client's parameters as sent. Writes are decoded
//! (one OK packet) to learn the last insert id. Everything else —
//! scatter-gather, merges, split inserts — decodes rows and writes the
//! result itself.

mod convert;
mod sequence;
mod session;
mod topology;

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::error::GateError;
use crate::metrics::GateMetrics;
use crate::server::{HandlerFactory, SessionHandler, SessionInfo};

pub use session::Session;
pub use topology::{
    BackendSettings, Routing, ShardInput, TabletPool, Topology, TopologyBuilder, TopologyInput,
};

/// What sessions report about the gate itself.
#[derive(Debug, Clone)]
pub struct ExecutorOptions {
    /// `@@version` / `VERSION()`, also announced in the handshake.
    pub server_version: String,
    /// `@@version_comment`, which the `mariadb` CLI prints on connect.
    pub version_comment: String,
}

impl Default for ExecutorOptions {
    fn default() -> Self {
        ExecutorOptions {
            server_version: "10.11.6-MariaDB-keyshift".to_string(),
            version_comment: "keyshift".to_string(),
        }
    }
}

/// State every session shares.
pub(crate) struct Shared {
    pub routing: Arc<Routing>,
    pub sequences: sequence::Sequences,
    pub options: ExecutorOptions,
    pub activity: Arc<Activity>,
    pub metrics: Arc<GateMetrics>,
}

/// What the gate's sessions are doing, as a traffic hold needs to know it:
/// open transactions with work per keyspace, and statements waiting on a
/// hold.
#[derive(Default)]
pub struct Activity {
    open_tx: Mutex<HashMap<Arc<str>, usize>>,
    queued: AtomicUsize,
}

impl Activity {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, usize>> {
        match self.open_tx.lock() {
            Ok(g) => g,
            Err(p) => p.into_inner(),
        }
    }

    pub(crate) fn tx_opened(&self, keyspace: &Arc<str>) {
        *self.lock().entry(keyspace.clone()).or_insert(0) += 1;
    }

    pub(crate) fn tx_closed(&self, keyspace: &Arc<str>) {
        let mut m = self.lock();
        if let Some(n) = m.get_mut(keyspace) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                m.remove(keyspace);
            }
        }
    }

    /// Sessions with an open transaction that did work on one of
    /// `keyspaces`.
    pub fn open_transactions(&self, keyspaces: &[String]) -> usize {
        let m = self.lock();
        keyspaces
            .iter()
            .map(|k| m.get(k.as_str()).copied().unwrap_or(0))
            .sum()
    }

    /// Statements waiting on a hold right now.
    pub fn queued(&self) -> usize {
        self.queued.load(Ordering::Relaxed)
    }

    /// A place in the hold queue, or `None` when `max` are waiting.
    pub(crate) fn enqueue(self: &Arc<Self>, max: usize) -> Option<QueueSlot> {
        let prev = self.queued.fetch_add(1, Ordering::AcqRel);
        if prev >= max {
            self.queued.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(QueueSlot(self.clone()))
    }
}

/// Leaves the hold queue when dropped.
pub(crate) struct QueueSlot(Arc<Activity>);

impl Drop for QueueSlot {
    fn drop(&mut self) {
        self.0.queued.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Makes a [`Session`] per client over the shared routing state.
pub struct ExecutorFactory {
    shared: Arc<Shared>,
}

impl ExecutorFactory {
    pub fn new(routing: Arc<Routing>, options: ExecutorOptions) -> Self {
        ExecutorFactory {
            shared: Arc::new(Shared {
                routing,
                sequences: sequence::Sequences::default(),
                options,
                activity: Arc::new(Activity::default()),
                metrics: Arc::default(),
            }),
        }
    }

    /// Where this factory's sessions count their statements; give the same
    /// handle to [`crate::GateConfig::metrics`].
    pub fn metrics(&self) -> &Arc<GateMetrics> {
        &self.shared.metrics
    }

    pub fn routing(&self) -> &Arc<Routing> {
        &self.shared.routing
    }

    pub fn activity(&self) -> &Arc<Activity> {
        &self.shared.activity
    }
}

#[async_trait]
impl HandlerFactory for ExecutorFactory {
    async fn create(&self, info: &SessionInfo) -> Result<Box<dyn SessionHandler>, GateError> {
        let found_rows = info
            .capabilities
            .contains(crate::proto::CapabilityFlags::CLIENT_FOUND_ROWS);
        let mut s = Session::new(self.shared.clone(), found_rows);
        if let Some(db) = &info.db {
            // MySQL refuses an unknown database at connect time; so do we
            s.init_db(db).await?;
        }
        Ok(Box::new(s))
    }
}
