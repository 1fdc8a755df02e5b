//! Streams of one source shard copying together: one snapshot, one scan.
//!
//! Why: a source shard feeds one stream per overlapping target shard, and
//! each stream on its own opens a snapshot and reads, decodes and maps to
//! keyspace ids every row of the table to keep its share. With N target
//! shards the source is read N times. Measured on 1M rows into two shards,
//! the second scan was most of the gap to mydumper: the source's CPU and
//! reads doubled, and the node decoded and hashed every row twice.
//!
//! So the streams of a [`CopyGroup`] (the controller makes one per source
//! shard of a workflow) meet at the start of each copy cycle. When they
//! are at the same point (same table, same `last_pk`), one shared task
//! (the hub) opens the snapshot at position P and sends P to each member;
//! each member catches up to P on its own target exactly as alone
//! (parent module, step 2) and says it is ready; the hub then reads the
//! batches once and hands each member the rows in its key range, rendered
//! for its target, with the batch's `last_pk`. Each member commits its
//! batches as alone: rows, progress and position P in one target
//! transaction. The invariant of the parent module holds per member for
//! the same reasons: the rows come from the snapshot at P, in key order,
//! after the member's own `last_pk`.
//!
//! Members that are not at the same point (after a crash one target may
//! have committed one batch more), a lone member, a member whose target
//! refuses `LOAD DATA`, or any surprise: the member copies alone, as
//! before, for the rest of its run. Sharing is an optimisation, never a
//! condition of progress. A member waits at most [`GATHER_TIMEOUT`] for the
//! others; members that are not copying (done, failed, in backoff) have
//! left the group and are not waited for.
//!
//! The hub is at most one batch ahead of the slowest member (one-slot
//! channels), so a slow target slows its siblings' copy, which the single
//! scan is worth. A member that fails drops its channel and the hub goes
//! on with the others; a source failure reaches every member as its error.

use std::collections::HashSet;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use keyshift_tablet::Endpoint;
use keyshift_types::{KeyRange, Position};
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::error::VreplError;
use crate::flavor::ServerFlavor;

use super::TableSpec;
use super::copy::{BatchOut, BatchQuery, ReadBatch, open_snapshot, read_batches};
use super::load::load_statement;
use super::schema::TablePlan;

/// How long a member waits for the others at the start of a cycle.
pub const GATHER_TIMEOUT: Duration = Duration::from_secs(2);

/// The streams of one source shard in one workflow run.
pub struct CopyGroup {
    members: HashSet<u64>,
    state: Mutex<GroupState>,
}

impl std::fmt::Debug for CopyGroup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CopyGroup")
            .field("members", &self.members)
            .finish()
    }
}

#[derive(Default)]
struct GroupState {
    /// Members not copying now (done, failed, copying alone).
    left: HashSet<u64>,
    waiting: Vec<Waiter>,
}

struct Waiter {
    req: JoinRequest,
    reply: oneshot::Sender<Option<SharedCycle>>,
}

/// What a member brings to a cycle.
pub(super) struct JoinRequest {
    pub id: u64,
    /// The first table it has not copied, and where it is in it.
    pub table: String,
    pub last_pk: Option<Vec<String>>,
    pub range: KeyRange,
    pub target_db: String,
    /// Used if this member's request starts the hub.
    pub source: HubSource,
}

/// The source side of a cycle (the same for every member of a group).
#[derive(Clone)]
pub(super) struct HubSource {
    pub endpoint: Endpoint,
    pub db: String,
    pub flavor: Arc<dyn ServerFlavor>,
    /// The workflow's tables, in copy order.
    pub tables: Vec<TableSpec>,
    pub batch_rows: usize,
    pub cycle: Duration,
}

/// A member's end of a shared cycle.
pub(super) struct SharedCycle {
    /// The snapshot's position, or why there is none.
    pub position: oneshot::Receiver<Result<Position, HubError>>,
    /// Sent once the member's target is caught up to the position.
    pub ready: oneshot::Sender<()>,
    /// The member's batches, in order; closed at the end of the cycle.
    pub batches: mpsc::Receiver<Result<SharedBatch, HubError>>,
}

/// One batch of one table for one member.
pub(super) struct SharedBatch {
    pub table: String,
    /// The `last_pk` the batch continues from: the member's own, or the
    /// member is out of step.
    pub from: Option<Vec<String>>,
    pub batch: ReadBatch,
}

/// A failure of the hub, reported to every member.
#[derive(Debug, Clone)]
pub(super) struct HubError {
    pub during: &'static str,
    pub detail: String,
    pub transient: bool,
    /// A row the copy cannot place (`StreamError::Row` of this table).
    pub row_table: Option<String>,
}

/// The hub's view of one member.
struct HubMember {
    range: KeyRange,
    target_db: String,
    position: Option<oneshot::Sender<Result<Position, HubError>>>,
    ready: oneshot::Receiver<()>,
    batches: mpsc::Sender<Result<SharedBatch, HubError>>,
}

/// How a join ended.
pub(super) enum Joined {
    Shared(SharedCycle),
    /// Copy this cycle, and the rest of the run, alone.
    Alone,
    Cancelled,
}

impl CopyGroup {
    pub fn new(members: impl IntoIterator<Item = u64>) -> Arc<CopyGroup> {
        Arc::new(CopyGroup {
            members: members.into_iter().collect(),
            state: Mutex::new(GroupState::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, GroupState> {
        // A panic while holding the lock leaves plain data behind.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for the other members (at most [`GATHER_TIMEOUT`]) and
    /// returns this member's part in a shared cycle, or [`Joined::Alone`].
    pub(super) async fn join(&self, req: JoinRequest, cancel: &CancellationToken) -> Joined {
        let id = req.id;
        let (tx, mut rx) = oneshot::channel();
        {
            let mut st = self.lock();
            st.left.remove(&id);
            st.waiting.push(Waiter { req, reply: tx });
            self.launch_if_complete(&mut st);
        }
        let reply = tokio::select! {
            r = &mut rx => r,
            _ = tokio::time::sleep(GATHER_TIMEOUT) => {
                {
                    let mut st = self.lock();
                    if st.waiting.iter().any(|w| w.req.id == id) {
                        self.launch(&mut st);
                    }
                }
                rx.await
            }
            _ = cancel.cancelled() => {
                self.leave(id);
                return Joined::Cancelled;
            }
        };
        match reply {
            Ok(Some(c)) => Joined::Shared(c),
            _ => {
                self.leave(id);
                Joined::Alone
            }
        }
    }

    /// This member is not copying (any more) in this run: nobody waits
    /// for it. A later [`join`](Self::join) brings it back.
    pub(super) fn leave(&self, id: u64) {
        let mut st = self.lock();
        st.left.insert(id);
        st.waiting.retain(|w| w.req.id != id);
        self.launch_if_complete(&mut st);
    }

    fn launch_if_complete(&self, st: &mut GroupState) {
        let expected = self.members.iter().filter(|m| !st.left.contains(m)).count();
        if !st.waiting.is_empty() && st.waiting.len() >= expected {
            self.launch(st);
        }
    }

    /// Starts a hub for the largest set of waiting members at the same
    /// point; the others (and a set of one) copy alone.
    fn launch(&self, st: &mut GroupState) {
        let mut waiting = std::mem::take(&mut st.waiting);
        let mut best: Vec<usize> = Vec::new();
        for w in &waiting {
            let same: Vec<usize> = waiting
                .iter()
                .enumerate()
                .filter(|(_, o)| o.req.table == w.req.table && o.req.last_pk == w.req.last_pk)
                .map(|(j, _)| j)
                .collect();
            if same.len() > best.len() {
                best = same;
            }
        }
        // `leave` runs from a drop, which may come outside the runtime (at
        // its shutdown): then nobody shares.
        let runtime = tokio::runtime::Handle::try_current().ok();
        if best.len() < 2 || runtime.is_none() {
            for w in waiting {
                let _ = w.reply.send(None);
            }
            return;
        }
        let mut chosen = Vec::with_capacity(best.len());
        for &i in best.iter().rev() {
            chosen.push(waiting.swap_remove(i));
        }
        chosen.reverse();
        for w in waiting {
            let _ = w.reply.send(None);
        }
        let source = chosen[0].req.source.clone();
        let table = chosen[0].req.table.clone();
        let last_pk = chosen[0].req.last_pk.clone();
        let mut members = Vec::with_capacity(chosen.len());
        for w in chosen {
            let (ptx, prx) = oneshot::channel();
            let (rtx, rrx) = oneshot::channel();
            let (btx, brx) = mpsc::channel(1);
            let cycle = SharedCycle {
                position: prx,
                ready: rtx,
                batches: brx,
            };
            if w.reply.send(Some(cycle)).is_ok() {
                members.push(HubMember {
                    range: w.req.range,
                    target_db: w.req.target_db,
                    position: Some(ptx),
                    ready: rrx,
                    batches: btx,
                });
            }
        }
        tracing::debug!(members = members.len(), table = %table, "shared copy cycle");
        if let Some(rt) = runtime {
            rt.spawn(hub(source, members, table, last_pk));
        }
    }
}

impl HubError {
    fn source(during: &'static str, e: VreplError) -> HubError {
        HubError {
            during,
            transient: e.is_transient(),
            detail: e.to_string(),
            row_table: None,
        }
    }
}

/// One shared cycle: snapshot, wait for the members' catch-up, then the
/// batches until the cycle's time is up or every table is copied.
async fn hub(
    src: HubSource,
    mut members: Vec<HubMember>,
    mut table: String,
    mut last_pk: Option<Vec<String>>,
) {
    let opened = open_snapshot(&src.endpoint, &*src.flavor)
        .await
        .map_err(|(during, e)| HubError::source(during, e));
    let mut snap = match opened {
        Ok(s) => s,
        Err(e) => {
            for m in &mut members {
                if let Some(p) = m.position.take() {
                    let _ = p.send(Err(e.clone()));
                }
            }
            return;
        }
    };
    let p = snap.position().clone();
    members.retain_mut(|m| {
        m.position
            .take()
            .is_some_and(|tx| tx.send(Ok(p.clone())).is_ok())
    });
    // Each member catches up to P on its target; one that fails or is
    // cancelled meanwhile drops its end.
    let mut ready = Vec::with_capacity(members.len());
    for mut m in members {
        if (&mut m.ready).await.is_ok() {
            ready.push(m);
        }
    }
    let mut members = ready;
    if members.is_empty() {
        let _ = snap.finish().await;
        return;
    }
    // The plans as a member alone would load them now: after the catch-up.
    let plans = async {
        let mut conn = src
            .endpoint
            .connect()
            .await
            .map_err(|e| HubError::source("connecting", e.into()))?;
        let mut plans = std::collections::HashMap::new();
        for t in &src.tables {
            let plan = TablePlan::load(&mut conn, &src.db, t)
                .await
                .map_err(|e| HubError::source("reading table definitions", e.into()))?
                .map_err(|detail| HubError {
                    during: "reading table definitions",
                    detail: format!("table `{}`: {detail}", t.name),
                    transient: false,
                    row_table: None,
                })?;
            plans.insert(t.name.clone(), plan);
        }
        let _ = conn.disconnect().await;
        Ok::<_, HubError>(plans)
    }
    .await;
    let plans = match plans {
        Ok(p) => p,
        Err(e) => {
            for m in &members {
                let _ = m.batches.send(Err(e.clone())).await;
            }
            let _ = snap.finish().await;
            return;
        }
    };
    let deadline = Instant::now() + src.cycle;
    let order: Vec<&str> = src.tables.iter().map(|t| t.name.as_str()).collect();
    while let Some(plan) = plans.get(&table) {
        let q = BatchQuery {
            plan,
            source_db: &src.db,
            limit: src.batch_rows.max(1),
        };
        let outs: Vec<BatchOut<'_>> = members
            .iter()
            .map(|m| BatchOut {
                range: &m.range,
                target_db: &m.target_db,
                load_sql: load_statement(&m.target_db, plan),
            })
            .collect();
        let read = read_batches(&mut snap, &q, &outs, last_pk.as_ref()).await;
        drop(outs);
        let batches = match read {
            Ok(Ok(b)) => b,
            Ok(Err(detail)) => {
                let e = HubError {
                    during: "reading rows from the snapshot",
                    detail,
                    transient: false,
                    row_table: Some(table.clone()),
                };
                for m in &members {
                    let _ = m.batches.send(Err(e.clone())).await;
                }
                break;
            }
            Err(e) => {
                let e = HubError::source("reading rows from the snapshot", e.into());
                for m in &members {
                    let _ = m.batches.send(Err(e.clone())).await;
                }
                break;
            }
        };
        let end = batches.first().is_some_and(|b| b.end);
        let next = batches.first().and_then(|b| b.last_pk.clone());
        let mut alive = Vec::with_capacity(members.len());
        for (m, batch) in members.into_iter().zip(batches) {
            let sent = m
                .batches
                .send(Ok(SharedBatch {
                    table: table.clone(),
                    from: last_pk.clone(),
                    batch,
                }))
                .await;
            if sent.is_ok() {
                alive.push(m);
            }
        }
        members = alive;
        if members.is_empty() {
            break;
        }
        if end {
            let i = order.iter().position(|t| *t == table);
            match i.and_then(|i| order.get(i + 1)) {
                Some(t) => {
                    table = t.to_string();
                    last_pk = None;
                }
                None => break,
            }
        } else {
            last_pk = next;
        }
        if Instant::now() >= deadline {
            break;
        }
    }
    // Closing the channels ends the members' cycle (once they drained them).
    drop(members);
    let _ = snap.finish().await;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flavor::MariaDb;

    fn req(id: u64, last_pk: Option<&str>) -> JoinRequest {
        JoinRequest {
            id,
            table: "t".into(),
            last_pk: last_pk.map(|k| vec![k.to_string()]),
            range: KeyRange::parse("-").unwrap(),
            target_db: "app".into(),
            source: HubSource {
                // Nothing listens there: a hub that starts reports a
                // connection error to its members.
                endpoint: Endpoint {
                    host: "127.0.0.1".into(),
                    port: 1,
                    user: "u".into(),
                    password: String::new(),
                    tls: None,
                },
                db: "app".into(),
                flavor: Arc::new(MariaDb),
                tables: Vec::new(),
                batch_rows: 10,
                cycle: Duration::from_secs(1),
            },
        }
    }

    /// A member whose siblings have left does not wait for them.
    #[tokio::test]
    async fn a_lone_member_copies_alone_at_once() {
        let g = CopyGroup::new([1, 2]);
        g.leave(2);
        let started = Instant::now();
        let j = g.join(req(1, None), &CancellationToken::new()).await;
        assert!(matches!(j, Joined::Alone));
        assert!(
            started.elapsed() < GATHER_TIMEOUT,
            "{:?}",
            started.elapsed()
        );
    }

    /// Members at different points of the table (one committed a batch
    /// more before a crash) each copy alone, without waiting.
    #[tokio::test]
    async fn members_out_of_step_copy_alone() {
        let g = CopyGroup::new([1, 2]);
        let cancel = CancellationToken::new();
        let (a, b) = tokio::join!(
            g.join(req(1, Some("10")), &cancel),
            g.join(req(2, Some("20")), &cancel)
        );
        assert!(matches!(a, Joined::Alone) && matches!(b, Joined::Alone));
    }

    /// Members at the same point share a cycle; the hub's source failure
    /// reaches each of them as its error.
    #[tokio::test]
    async fn members_in_step_share_and_hear_the_source_error() {
        let g = CopyGroup::new([1, 2, 3]);
        g.leave(3);
        let cancel = CancellationToken::new();
        let (a, b) = tokio::join!(
            g.join(req(1, Some("10")), &cancel),
            g.join(req(2, Some("10")), &cancel)
        );
        for j in [a, b] {
            let Joined::Shared(c) = j else {
                panic!("not shared");
            };
            let e = c.position.await.unwrap().unwrap_err();
            assert_eq!(e.during, "connecting for a snapshot");
            assert!(e.transient, "{e:?}");
        }
    }

    /// A member that does not come is waited for GATHER_TIMEOUT, no more.
    #[tokio::test]
    async fn a_missing_member_is_waited_for_a_bounded_time() {
        let g = CopyGroup::new([1, 2]);
        let started = Instant::now();
        let j = g.join(req(1, None), &CancellationToken::new()).await;
        assert!(matches!(j, Joined::Alone));
        let waited = started.elapsed();
        assert!(
            waited >= GATHER_TIMEOUT && waited < GATHER_TIMEOUT * 5,
            "{waited:?}"
        );
    }
}
