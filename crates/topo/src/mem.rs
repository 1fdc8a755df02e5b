//! In-memory backend with the same semantics as the others, so callers' unit tests need no files.

use std::collections::{BTreeMap, VecDeque};
use std::future::Future;
use std::ops::Bound;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use futures::stream::BoxStream;
use tokio::sync::Notify;

use crate::watch::{self, Cursor, EventSource};
use crate::{Cond, KeyValue, Op, Revision, Topo, TopoError, WatchEvent, txn};

/// Default number of events kept for watchers that start in the past.
const DEFAULT_RETAIN_EVENTS: usize = 10_000;

/// A topo that lives and dies with the process; for tests of code that uses a topo.
pub struct MemTopo {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    notify: Notify,
    closed: AtomicBool,
    retain_events: usize,
}

#[derive(Default)]
struct State {
    kv: BTreeMap<String, KeyValue>,
    revision: Revision,
    /// (seq, event), oldest first.
    events: VecDeque<(u64, WatchEvent)>,
    next_seq: u64,
    /// Events with revision <= this were trimmed.
    compact_rev: Revision,
}

impl Default for MemTopo {
    fn default() -> Self {
        Self::new()
    }
}

impl MemTopo {
    pub fn new() -> Self {
        Self::with_retention(DEFAULT_RETAIN_EVENTS)
    }

    /// Keeps only the last `retain_events` events (at least 1), so tests can exercise
    /// `Compacted` handling.
    pub fn with_retention(retain_events: usize) -> Self {
        MemTopo {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    next_seq: 1,
                    ..State::default()
                }),
                notify: Notify::new(),
                closed: AtomicBool::new(false),
                retain_events: retain_events.max(1),
            }),
        }
    }

    fn lock(&self) -> Result<MutexGuard<'_, State>, TopoError> {
        self.inner.lock()
    }
}

impl Inner {
    fn lock(&self) -> Result<MutexGuard<'_, State>, TopoError> {
        if self.closed.load(Ordering::Acquire) {
            return Err(TopoError::Closed);
        }
        // A panic while holding the lock cannot leave a half-applied txn: conditions are checked
        // before any mutation, and the mutations themselves do not panic.
        Ok(self.state.lock().unwrap_or_else(|e| e.into_inner()))
    }

    fn close(&self) {
        self.closed.store(true, Ordering::Release);
        self.notify.notify_waiters();
    }
}

impl Drop for MemTopo {
    fn drop(&mut self) {
        self.inner.close();
    }
}

fn range<'a>(
    kv: &'a BTreeMap<String, KeyValue>,
    prefix: &'a str,
) -> impl Iterator<Item = &'a KeyValue> + 'a {
    kv.range::<str, _>((Bound::Included(prefix), Bound::Unbounded))
        .take_while(move |(k, _)| k.starts_with(prefix))
        .map(|(_, v)| v)
}

impl State {
    fn apply(&mut self, ops: Vec<Op>, retain: usize) -> Result<Revision, TopoError> {
        txn::validate(&ops)?;
        for op in &ops {
            if let Op::Put { key, cond, .. } | Op::Delete { key, cond } = op {
                let current = self.kv.get(key).map(|kv| kv.mod_revision);
                txn::check_cond(key, cond, current)?;
            }
        }
        let rev = self.revision + 1;
        let mut events = Vec::new();
        for op in ops {
            match op {
                Op::Put { key, value, .. } => {
                    let create_revision = self.kv.get(&key).map_or(rev, |kv| kv.create_revision);
                    let kv = KeyValue {
                        key: key.clone(),
                        value,
                        create_revision,
                        mod_revision: rev,
                    };
                    events.push(WatchEvent::Put(kv.clone()));
                    self.kv.insert(key, kv);
                }
                Op::Delete { key, .. } => {
                    if self.kv.remove(&key).is_some() {
                        events.push(WatchEvent::Delete { key, revision: rev });
                    }
                }
                Op::DeletePrefix { prefix } => {
                    let keys: Vec<String> =
                        range(&self.kv, &prefix).map(|kv| kv.key.clone()).collect();
                    for key in keys {
                        self.kv.remove(&key);
                        events.push(WatchEvent::Delete { key, revision: rev });
                    }
                }
            }
        }
        if events.is_empty() {
            return Ok(self.revision);
        }
        self.revision = rev;
        for ev in events {
            self.events.push_back((self.next_seq, ev));
            self.next_seq += 1;
        }
        self.trim(retain);
        Ok(rev)
    }

    /// Drops whole revisions from the front while more than `retain` events are kept.
    fn trim(&mut self, retain: usize) {
        if self.events.len() <= retain {
            return;
        }
        let first_kept_rev = self.events[self.events.len() - retain].1.revision();
        while let Some((_, ev)) = self.events.front() {
            if ev.revision() >= first_kept_rev {
                break;
            }
            self.compact_rev = self.compact_rev.max(ev.revision());
            self.events.pop_front();
        }
    }
}

/// Most events handed to a watcher per read, bounding memory for a watcher far behind.
const BATCH: usize = 512;

impl EventSource for Inner {
    fn notify(&self) -> &Notify {
        &self.notify
    }

    fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Acquire)
    }

    fn poll_interval(&self) -> Option<Duration> {
        None
    }

    fn read_events(
        self: Arc<Self>,
        prefix: Arc<str>,
        mut cursor: Cursor,
    ) -> impl Future<Output = Result<(Vec<WatchEvent>, Cursor), TopoError>> + Send {
        let result = (|| {
            let st = self.lock()?;
            if st.compact_rev > cursor.seen_rev {
                return Err(TopoError::Compacted {
                    requested: cursor.seen_rev,
                    compacted: st.compact_rev,
                });
            }
            let start_seq = match cursor.seq {
                Some(s) => s,
                None => st
                    .events
                    .iter()
                    .take_while(|(_, ev)| ev.revision() <= cursor.seen_rev)
                    .last()
                    .map_or(0, |(s, _)| *s),
            };
            let first = st.events.partition_point(|(s, _)| *s <= start_seq);
            let mut out = Vec::new();
            let mut last_seq = start_seq;
            let mut full = false;
            for (seq, ev) in st.events.iter().skip(first) {
                last_seq = *seq;
                if ev.key().starts_with(&*prefix) {
                    out.push(ev.clone());
                    if out.len() >= BATCH {
                        full = true;
                        break;
                    }
                }
            }
            cursor.seq = Some(last_seq);
            if full {
                let last_rev = out.last().map_or(cursor.seen_rev, WatchEvent::revision);
                cursor.seen_rev = cursor.seen_rev.max(last_rev.saturating_sub(1));
            } else {
                cursor.seen_rev = cursor.seen_rev.max(st.revision);
            }
            Ok((out, cursor))
        })();
        std::future::ready(result)
    }
}

#[async_trait::async_trait]
impl Topo for MemTopo {
    async fn get(&self, key: &str) -> Result<Option<KeyValue>, TopoError> {
        Ok(self.lock()?.kv.get(key).cloned())
    }

    async fn list(&self, prefix: &str) -> Result<Vec<KeyValue>, TopoError> {
        Ok(range(&self.lock()?.kv, prefix).cloned().collect())
    }

    async fn put(&self, key: &str, value: Vec<u8>, cond: Cond) -> Result<Revision, TopoError> {
        self.txn(vec![Op::Put {
            key: key.to_string(),
            value,
            cond,
        }])
        .await
    }

    async fn delete(&self, key: &str, cond: Cond) -> Result<Revision, TopoError> {
        self.txn(vec![Op::Delete {
            key: key.to_string(),
            cond,
        }])
        .await
    }

    async fn txn(&self, ops: Vec<Op>) -> Result<Revision, TopoError> {
        let (before, after) = {
            let mut st = self.lock()?;
            let before = st.revision;
            let after = st.apply(ops, self.inner.retain_events)?;
            (before, after)
        };
        if after != before {
            self.inner.notify.notify_waiters();
        }
        Ok(after)
    }

    async fn revision(&self) -> Result<Revision, TopoError> {
        Ok(self.lock()?.revision)
    }

    async fn watch(
        &self,
        prefix: &str,
        after: Revision,
    ) -> Result<BoxStream<'static, Result<WatchEvent, TopoError>>, TopoError> {
        {
            let st = self.lock()?;
            if after < st.compact_rev {
                return Err(TopoError::Compacted {
                    requested: after,
                    compacted: st.compact_rev,
                });
            }
        }
        Ok(watch::stream(self.inner.clone(), prefix, after))
    }

    async fn close(&self) {
        self.inner.close();
    }
}
