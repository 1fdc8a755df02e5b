//! The store of intent: cluster config, VSchema, routing rules and workflow records.
//!
//! Everything that must survive a crash and be shared between keyshift processes lives behind the
//! [`Topo`] trait. The trait is shaped after etcd (a global revision counter, per-key
//! `create_revision`/`mod_revision`, compare-and-swap, multi-key transactions, ordered watches) so
//! that the embedded [`FileTopo`] and a future etcd backend are interchangeable: workflows need
//! atomic multi-key updates to switch traffic, and the gate must see routing changes as they
//! happen.
//!
//! Semantics every backend follows (checked by [`conformance`]):
//! - every transaction that changes something increments the global revision by exactly one; all
//!   keys written by it get that revision as `mod_revision`; a transaction that changes nothing
//!   (e.g. deleting an absent key) leaves the revision unchanged and returns the current one;
//! - conditions of a [`Topo::txn`] are all evaluated against the state before the transaction;
//! - a transaction may touch each key at most once (etcd rejects overlapping writes too), so a
//!   `Put` of a key under a `DeletePrefix` of the same transaction is refused with
//!   [`TopoError::InvalidTxn`];
//! - `Cond::ModRevision(0)` means "absent", like an etcd compare on `mod_revision == 0`;
//! - keys are ordered bytewise (UTF-8), which is what `list` sorting and prefixes use.

use std::sync::Arc;
use std::time::Duration;

use futures::stream::BoxStream;
use serde::Serialize;
use serde::de::DeserializeOwned;

pub mod conformance;
mod file;
mod mem;
mod txn;
mod watch;

pub use file::{FileTopo, FileTopoOptions};
pub use mem::MemTopo;

/// Global, monotonically increasing version of the whole store; 0 means "before any write".
pub type Revision = u64;

/// A stored key with the revisions callers need for compare-and-swap and watch resumption.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyValue {
    pub key: String,
    pub value: Vec<u8>,
    /// Revision of the write that created this incarnation of the key (reset by delete + put).
    pub create_revision: Revision,
    /// Revision of the last write to the key; feed it to [`Cond::ModRevision`] to detect races.
    pub mod_revision: Revision,
}

/// Precondition on one key, so that concurrent writers never silently overwrite each other.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cond {
    /// No precondition.
    Any,
    /// The key must not exist.
    Absent,
    /// The key's `mod_revision` must equal this (0 = must be absent, as in etcd).
    ModRevision(Revision),
}

/// One step of an all-or-nothing [`Topo::txn`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    Put {
        key: String,
        value: Vec<u8>,
        cond: Cond,
    },
    Delete {
        key: String,
        cond: Cond,
    },
    /// Deletes every key starting with `prefix` (an empty prefix deletes everything).
    DeletePrefix {
        prefix: String,
    },
}

/// A change seen by a watcher; `Put` carries the key's full state after the write.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum WatchEvent {
    Put(KeyValue),
    Delete { key: String, revision: Revision },
}

impl WatchEvent {
    /// The key the event is about, for callers that only need to know what to re-read.
    pub fn key(&self) -> &str {
        match self {
            WatchEvent::Put(kv) => &kv.key,
            WatchEvent::Delete { key, .. } => key,
        }
    }

    /// The revision of the write, so a watcher can resume after it.
    pub fn revision(&self) -> Revision {
        match self {
            WatchEvent::Put(kv) => kv.mod_revision,
            WatchEvent::Delete { revision, .. } => *revision,
        }
    }
}

#[derive(thiserror::Error, Debug)]
pub enum TopoError {
    /// A compare-and-swap precondition did not hold; nothing was written.
    #[error("condition failed on key {key}: {detail}")]
    CondFailed { key: String, detail: String },
    /// Not produced by the backends (absence is `Ok(None)`); for callers that require a key.
    #[error("key not found: {key}")]
    NotFound { key: String },
    /// The storage itself failed; the message says which store and what it was doing.
    #[error("topo backend error: {0}")]
    Backend(String),
    /// The topo was closed; watch streams end and other calls fail.
    #[error("topo is closed")]
    Closed,
    /// A watch asked for history that the store no longer keeps; re-read with `list` and
    /// watch from the current revision instead.
    #[error("revision {requested} is compacted (history kept only after revision {compacted})")]
    Compacted {
        requested: Revision,
        compacted: Revision,
    },
    /// A stored value is not the JSON the caller expected, or a value could not be encoded.
    #[error("invalid JSON at key {key}: {detail}")]
    Json { key: String, detail: String },
    /// The transaction is malformed (empty key, a key touched twice); nothing was written.
    #[error("invalid transaction: {0}")]
    InvalidTxn(String),
}

/// The store of intent; see the crate docs for the semantics all backends share.
#[async_trait::async_trait]
pub trait Topo: Send + Sync + 'static {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, TopoError>;
    /// Sorted by key (bytewise).
    async fn list(&self, prefix: &str) -> Result<Vec<KeyValue>, TopoError>;
    async fn put(&self, key: &str, value: Vec<u8>, cond: Cond) -> Result<Revision, TopoError>;
    /// Deleting an absent key with `Cond::Any` is Ok (and does not bump the revision).
    async fn delete(&self, key: &str, cond: Cond) -> Result<Revision, TopoError>;
    /// All or nothing; `CondFailed` names the key whose condition failed.
    async fn txn(&self, ops: Vec<Op>) -> Result<Revision, TopoError>;
    async fn revision(&self) -> Result<Revision, TopoError>;
    /// Events for keys under `prefix` with revision > `after`, in revision order, then live ones.
    /// Stream ends only when the topo is closed. If `after` is older than the kept history the
    /// call (or, for a watcher that falls too far behind, the stream) yields
    /// [`TopoError::Compacted`].
    async fn watch(
        &self,
        prefix: &str,
        after: Revision,
    ) -> Result<BoxStream<'static, Result<WatchEvent, TopoError>>, TopoError>;
    /// Ends all watch streams and makes later calls fail with `Closed`, so that shutdown does not
    /// wait on watchers. Dropping the last handle of a backend closes it too.
    async fn close(&self) {}
}

/// Lets an `Arc<dyn Topo>` (or any `Arc` of a backend) be passed where a `Topo` is expected.
#[async_trait::async_trait]
impl<T: Topo + ?Sized> Topo for Arc<T> {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, TopoError> {
        (**self).get(key).await
    }
    async fn list(&self, prefix: &str) -> Result<Vec<KeyValue>, TopoError> {
        (**self).list(prefix).await
    }
    async fn put(&self, key: &str, value: Vec<u8>, cond: Cond) -> Result<Revision, TopoError> {
        (**self).put(key, value, cond).await
    }
    async fn delete(&self, key: &str, cond: Cond) -> Result<Revision, TopoError> {
        (**self).delete(key, cond).await
    }
    async fn txn(&self, ops: Vec<Op>) -> Result<Revision, TopoError> {
        (**self).txn(ops).await
    }
    async fn revision(&self) -> Result<Revision, TopoError> {
        (**self).revision().await
    }
    async fn watch(
        &self,
        prefix: &str,
        after: Revision,
    ) -> Result<BoxStream<'static, Result<WatchEvent, TopoError>>, TopoError> {
        (**self).watch(prefix, after).await
    }
    async fn close(&self) {
        (**self).close().await
    }
}

/// Opens the topo named by a URL, so every binary picks its backend from configuration.
///
/// `file:/abs/path/topo.db`, `file:///abs/path`, or a plain path: [`FileTopo`].
/// `mem:` (or `memory:`): a fresh [`MemTopo`], for tests.
/// `etcd://...`: not built yet.
pub async fn open(url: &str) -> Result<Arc<dyn Topo>, TopoError> {
    if url.starts_with("etcd://") || url.starts_with("etcd:") {
        return Err(TopoError::Backend("etcd backend not built yet".into()));
    }
    if url == "mem:" || url == "memory:" || url.starts_with("mem://") {
        return Ok(Arc::new(MemTopo::new()));
    }
    let path = if let Some(rest) = url.strip_prefix("file://") {
        rest
    } else if let Some(rest) = url.strip_prefix("file:") {
        rest
    } else {
        url
    };
    if path.is_empty() {
        return Err(TopoError::Backend(format!(
            "topo url {url:?} names no file"
        )));
    }
    Ok(Arc::new(FileTopo::open(path).await?))
}

/// Why [`TopoExt::update_json`] did not write.
#[derive(thiserror::Error, Debug)]
pub enum UpdateError<E> {
    #[error(transparent)]
    Topo(#[from] TopoError),
    /// The caller's closure refused the update; nothing was written.
    #[error("update aborted: {0}")]
    Aborted(E),
}

/// How many compare-and-swap rounds `update_json` tries before reporting contention; high enough
/// that only a livelocked key hits it.
const UPDATE_MAX_ATTEMPTS: u32 = 10_000;

/// JSON helpers, so that callers never hand-roll encoding or CAS retry loops.
///
/// Implemented for every `Topo` including `dyn Topo`, so `topo.get_json::<Keyspace>(key)` works
/// on an `Arc<dyn Topo>`.
#[async_trait::async_trait]
pub trait TopoExt: Topo {
    /// The decoded value and its `mod_revision` (for a later `Cond::ModRevision`).
    async fn get_json<T: DeserializeOwned + Send>(
        &self,
        key: &str,
    ) -> Result<Option<(T, Revision)>, TopoError> {
        match self.get(key).await? {
            None => Ok(None),
            Some(kv) => Ok(Some((decode(&kv.key, &kv.value)?, kv.mod_revision))),
        }
    }

    async fn put_json<T: Serialize + Sync>(
        &self,
        key: &str,
        value: &T,
        cond: Cond,
    ) -> Result<Revision, TopoError> {
        let bytes = encode(key, value)?;
        self.put(key, bytes, cond).await
    }

    /// `(key, value, mod_revision)` sorted by key; one malformed value fails the whole call.
    async fn list_json<T: DeserializeOwned + Send>(
        &self,
        prefix: &str,
    ) -> Result<Vec<(String, T, Revision)>, TopoError> {
        let kvs = self.list(prefix).await?;
        let mut out = Vec::with_capacity(kvs.len());
        for kv in kvs {
            let value = decode(&kv.key, &kv.value)?;
            out.push((kv.key, value, kv.mod_revision));
        }
        Ok(out)
    }

    /// Waits until a key under `prefix` changes after revision `after`, or
    /// `within` passes; true when something changed. For waiting on another
    /// party's write without a fixed polling period: in one process the
    /// watch wakes on the write itself. A watch that cannot be opened waits
    /// out `within`, so a caller's loop degrades to polling.
    async fn wait_change(
        &self,
        prefix: &str,
        after: Revision,
        within: std::time::Duration,
    ) -> bool {
        use futures::StreamExt;
        let changed = async {
            match self.watch(prefix, after).await {
                Ok(mut events) => {
                    let _ = events.next().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::time::timeout(within, changed).await.is_ok()
    }

    /// Read-modify-write with CAS retry: `f` gets the current value (None if absent) and returns
    /// the new one or an error (which aborts). `f` may run several times, once per attempt.
    /// Returns the value written and its revision.
    async fn update_json<T, F, E>(
        &self,
        key: &str,
        mut f: F,
    ) -> Result<(T, Revision), UpdateError<E>>
    where
        T: Serialize + DeserializeOwned + Send + Sync,
        F: FnMut(Option<T>) -> Result<T, E> + Send,
        E: Send,
    {
        let mut attempt: u32 = 0;
        loop {
            let current = self.get(key).await?;
            let (old, cond) = match current {
                None => (None, Cond::Absent),
                Some(kv) => (
                    Some(decode::<T>(&kv.key, &kv.value)?),
                    Cond::ModRevision(kv.mod_revision),
                ),
            };
            let new = f(old).map_err(UpdateError::Aborted)?;
            let bytes = encode(key, &new)?;
            match self.put(key, bytes, cond).await {
                Ok(rev) => return Ok((new, rev)),
                Err(TopoError::CondFailed { .. }) if attempt + 1 < UPDATE_MAX_ATTEMPTS => {
                    attempt += 1;
                    backoff(attempt).await;
                }
                Err(TopoError::CondFailed { key, detail }) => {
                    return Err(UpdateError::Topo(TopoError::CondFailed {
                        key,
                        detail: format!("gave up after {UPDATE_MAX_ATTEMPTS} attempts: {detail}"),
                    }));
                }
                Err(e) => return Err(UpdateError::Topo(e)),
            }
        }
    }
}

impl<X: Topo + ?Sized> TopoExt for X {}

fn decode<T: DeserializeOwned>(key: &str, bytes: &[u8]) -> Result<T, TopoError> {
    serde_json::from_slice(bytes).map_err(|e| TopoError::Json {
        key: key.to_string(),
        detail: e.to_string(),
    })
}

fn encode<T: Serialize + ?Sized>(key: &str, value: &T) -> Result<Vec<u8>, TopoError> {
    serde_json::to_vec(value).map_err(|e| TopoError::Json {
        key: key.to_string(),
        detail: format!("cannot encode: {e}"),
    })
}

/// Spreads retries of contending writers apart (they may live in other processes, so there is
/// nothing to wait on); jitter comes from the std hasher's random keys, avoiding global RNG state.
async fn backoff(attempt: u32) {
    use std::hash::{BuildHasher, Hasher};
    if attempt < 3 {
        tokio::task::yield_now().await;
        return;
    }
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(attempt);
    let cap_us = (200u64 << attempt.min(8)).min(20_000);
    let us = h.finish() % cap_us + 50;
    tokio::time::sleep(Duration::from_micros(us)).await;
}
