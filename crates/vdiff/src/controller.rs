//! The node's VDiff runner: follows `/vdiffs/` and runs every requested
//! VDiff in the background, like the workflow controller runs streams.
//!
//! A runner claims a record (`owner`, renewed every half second with the
//! progress) before working on it, so two nodes never run the same VDiff.
//! A claim that is not renewed expires after [`LEASE`]; a claim by a
//! process of this host that no longer exists is taken over at once, so a
//! `keyshift up` restarted after a crash resumes without waiting.

use crate::VdiffError;
use crate::coordinator::{self, Claim, LEASE};
use crate::record::{Desired, Owner, VdiffRecord, VdiffState, now_ms};
use futures::StreamExt;
use keyshift_cluster::model::keys;
use keyshift_topo::{Topo, TopoExt, UpdateError};
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub struct VdiffController {
    handle: JoinHandle<()>,
}

impl VdiffController {
    pub fn spawn(topo: Arc<dyn Topo>, cancel: CancellationToken) -> VdiffController {
        VdiffController {
            handle: tokio::spawn(run(topo, cancel, owner_id())),
        }
    }

    /// Resolves when every runner has stopped (after cancel).
    pub async fn join(self) {
        let _ = self.handle.await;
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

/// `host/pid/start_ms`: unique per process life.
fn owner_id() -> String {
    format!("{}/{}/{}", hostname(), std::process::id(), now_ms())
}

/// Whether `owner` names a process of this host that is gone.
fn owner_is_dead_here(owner: &str, me: &str) -> bool {
    let mut parts = owner.split('/');
    let (Some(host), Some(pid)) = (parts.next(), parts.next()) else {
        return false;
    };
    let my_host = me.split('/').next().unwrap_or_default();
    if host != my_host || owner == me {
        return false;
    }
    let Ok(pid) = pid.parse::<u32>() else {
        return false;
    };
    !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

pub(crate) fn claimable(rec: &VdiffRecord, me: &str, now: u64) -> bool {
    if rec.desired != Desired::Run || !rec.state.is_active() {
        return false;
    }
    match &rec.owner {
        None => true,
        Some(o) => o.id == me || o.until_ms < now || owner_is_dead_here(&o.id, me),
    }
}

struct Runner {
    id: String,
    cancel: CancellationToken,
    handle: JoinHandle<()>,
}

async fn run(topo: Arc<dyn Topo>, cancel: CancellationToken, me: String) {
    let mut running: HashMap<String, Runner> = HashMap::new();
    let mut backoff = Duration::from_millis(200);
    'outer: while !cancel.is_cancelled() {
        let listed = async {
            let rev = topo.revision().await?;
            sync(&topo, &cancel, &me, &mut running).await?;
            topo.watch(keys::VDIFFS, rev).await
        };
        let mut stream = match listed.await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot follow the topo's VDiffs; retrying");
                tokio::select! { _ = cancel.cancelled() => break, _ = tokio::time::sleep(backoff) => {} }
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        backoff = Duration::from_millis(200);
        // Re-listing now and then takes over claims that expired.
        let mut tick = tokio::time::interval(Duration::from_secs(2));
        loop {
            tokio::select! {
                _ = cancel.cancelled() => break 'outer,
                _ = tick.tick() => {
                    if let Err(e) = sync(&topo, &cancel, &me, &mut running).await {
                        tracing::warn!(error = %e, "cannot list VDiffs");
                    }
                }
                e = stream.next() => match e {
                    Some(Ok(_)) => {
                        if let Err(e) = sync(&topo, &cancel, &me, &mut running).await {
                            tracing::warn!(error = %e, "cannot list VDiffs; re-listing");
                            continue 'outer;
                        }
                    }
                    Some(Err(e)) => {
                        tracing::warn!(error = %e, "VDiff watch failed; re-listing");
                        continue 'outer;
                    }
                    None => continue 'outer,
                }
            }
        }
    }
    for (_, r) in running.drain() {
        r.cancel.cancel();
        let _ = r.handle.await;
    }
}

async fn sync(
    topo: &Arc<dyn Topo>,
    cancel: &CancellationToken,
    me: &str,
    running: &mut HashMap<String, Runner>,
) -> Result<(), keyshift_topo::TopoError> {
    let mut records: HashMap<String, VdiffRecord> = HashMap::new();
    for kv in topo.list(keys::VDIFFS).await? {
        match serde_json::from_slice::<VdiffRecord>(&kv.value) {
            Ok(r) => {
                records.insert(r.workflow.clone(), r);
            }
            Err(e) => {
                tracing::warn!(key = %kv.key, error = %e, "skipping a VDiff record that does not decode")
            }
        }
    }
    running.retain(|name, r| {
        if r.handle.is_finished() {
            return false;
        }
        let wanted = records
            .get(name)
            .is_some_and(|rec| rec.id == r.id && rec.desired == Desired::Run);
        if !wanted {
            // A stopped VDiff's runner records the stop itself when it
            // sees its token; a replaced one just ends.
            r.cancel.cancel();
        }
        true
    });
    // Runners cancelled above but still ending stay in the map until they
    // finish, so a record is never run twice by this node.
    let now = now_ms();
    for (name, rec) in records {
        if running.contains_key(&name) || !claimable(&rec, me, now) {
            continue;
        }
        let child = cancel.child_token();
        let claim = Claim {
            workflow: name.clone(),
            id: rec.id.clone(),
            owner: me.to_string(),
        };
        let handle = tokio::spawn(run_one(topo.clone(), claim, child.clone()));
        running.insert(
            name,
            Runner {
                id: rec.id,
                cancel: child,
                handle,
            },
        );
    }
    Ok(())
}

/// Claims the record, runs it, and records how it ended.
async fn run_one(topo: Arc<dyn Topo>, claim: Claim, cancel: CancellationToken) {
    let key = keys::vdiff(&claim.workflow);
    let claimed = topo
        .update_json::<VdiffRecord, _, ()>(&key, |cur| {
            let mut rec = cur.ok_or(())?;
            if rec.id != claim.id || !claimable(&rec, &claim.owner, now_ms()) {
                return Err(());
            }
            rec.owner = Some(Owner {
                id: claim.owner.clone(),
                until_ms: now_ms() + LEASE.as_millis() as u64,
            });
            rec.state = VdiffState::Running;
            rec.updated_ms = now_ms();
            Ok(rec)
        })
        .await;
    match claimed {
        Ok(_) => {}
        Err(UpdateError::Aborted(())) => return,
        Err(UpdateError::Topo(e)) => {
            tracing::warn!(workflow = %claim.workflow, error = %e, "cannot claim the VDiff");
            return;
        }
    }
    tracing::info!(workflow = %claim.workflow, id = %claim.id, "VDiff started");
    let result = coordinator::run(topo.clone(), &claim, &cancel).await;
    if matches!(result, Err(VdiffError::Lost)) {
        tracing::warn!(workflow = %claim.workflow, "VDiff taken over elsewhere; this runner ends");
        return;
    }
    let shutting_down = cancel.is_cancelled();
    let r = topo
        .update_json::<VdiffRecord, _, ()>(&key, |cur| {
            let mut rec = cur.ok_or(())?;
            if rec.id != claim.id || rec.owner.as_ref().is_none_or(|o| o.id != claim.owner) {
                return Err(());
            }
            rec.owner = None;
            rec.updated_ms = now_ms();
            rec.refresh_summary();
            match &result {
                Ok(()) => {
                    rec.state = VdiffState::Completed;
                    rec.completed_ms = Some(now_ms());
                    rec.error = None;
                }
                Err(_) if rec.desired == Desired::Stop => rec.state = VdiffState::Stopped,
                // The node is stopping: another run picks it up.
                Err(VdiffError::Cancelled) if shutting_down => rec.state = VdiffState::Pending,
                Err(e) => {
                    rec.state = VdiffState::Error;
                    rec.error = Some(e.to_string());
                }
            }
            Ok(rec)
        })
        .await;
    if let Err(UpdateError::Topo(e)) = r {
        tracing::warn!(workflow = %claim.workflow, error = %e, "cannot record the end of the VDiff");
    }
    match &result {
        Ok(()) => tracing::info!(workflow = %claim.workflow, "VDiff completed"),
        Err(e) => tracing::warn!(workflow = %claim.workflow, error = %e, "VDiff ended"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::VdiffOptions;
    use keyshift_workflow::Trigger;

    fn rec(owner: Option<Owner>) -> VdiffRecord {
        VdiffRecord {
            workflow: "w".into(),
            id: "1".into(),
            state: VdiffState::Running,
            desired: Desired::Run,
            options: VdiffOptions::default(),
            trigger: Trigger::Cli,
            requested_ms: 0,
            started_ms: None,
            completed_ms: None,
            updated_ms: 0,
            error: None,
            owner,
            rounds: vec![],
            tables: vec![],
            has_mismatch: false,
            stale: false,
        }
    }

    #[test]
    fn claims_expire_or_die_with_their_process() {
        let me = owner_id();
        let host = me.split('/').next().unwrap().to_string();
        assert!(claimable(&rec(None), &me, 100));
        let live = Owner {
            id: "otherhost/1/5".into(),
            until_ms: 1000,
        };
        assert!(!claimable(&rec(Some(live.clone())), &me, 999));
        assert!(claimable(&rec(Some(live)), &me, 1001));
        // A dead pid on this host: taken over before the lease ends.
        let dead = Owner {
            id: format!("{host}/{}/5", u32::MAX - 1),
            until_ms: u64::MAX,
        };
        assert!(claimable(&rec(Some(dead)), &me, 0));
        // A live process on this host (pid 1) keeps its claim.
        let init = Owner {
            id: format!("{host}/1/5"),
            until_ms: u64::MAX,
        };
        assert!(!claimable(&rec(Some(init)), &me, 0));
        let mut stopped = rec(None);
        stopped.desired = Desired::Stop;
        assert!(!claimable(&stopped, &me, 0));
        let mut done = rec(None);
        done.state = VdiffState::Completed;
        assert!(!claimable(&done, &me, 0));
    }
}
