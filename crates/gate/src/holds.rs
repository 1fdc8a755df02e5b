//! The gate's side of a traffic switch.
//!
//! A switch writes a [`HoldRecord`] into the topo; the gate reads it with
//! the rest of its routing state (holds first, so that a released statement
//! never meets older routing rules than the release), and its sessions wait
//! on the held keyspaces (see [`crate::executor`]). This module answers the
//! switch: once nothing is in flight on the held keyspaces — no statement
//! that started before the hold, no open transaction with work there — the
//! gate writes a [`HoldAck`]. The switch waits for an acknowledgement from
//! every live gate, which announce themselves with a [`GateInstance`]
//! heartbeat.

use std::collections::HashSet;
use std::sync::Arc;
use std::time::Duration;

use keyshift_cluster::model::{
    GATE_HEARTBEAT_MS, GateInstance, HOLD_GRACE_MS, HoldAck, HoldRecord, keys, now_ms,
};
use keyshift_topo::{Cond, Topo, TopoError, TopoExt};
use tokio_util::sync::CancellationToken;

use crate::executor::{Activity, Routing};

/// Every hold in the topo. Records that do not decode are skipped with a
/// warning: a bad record must not stop routing.
pub async fn read_holds(topo: &dyn Topo) -> Result<Vec<HoldRecord>, TopoError> {
    let mut out = Vec::new();
    for kv in topo.list(keys::GATE_HOLDS).await? {
        match serde_json::from_slice::<HoldRecord>(&kv.value) {
            Ok(h) => out.push(h),
            Err(e) => {
                tracing::warn!(key = %kv.key, error = %e, "ignoring a hold record that does not decode")
            }
        }
    }
    Ok(out)
}

/// How often a pending hold is checked for being drained.
const DRAIN_POLL: Duration = Duration::from_millis(5);

/// Announces the gate and acknowledges holds until `stop`.
pub(crate) async fn run(
    topo: Arc<dyn Topo>,
    routing: Arc<Routing>,
    activity: Arc<Activity>,
    id: String,
    addr: String,
    stop: CancellationToken,
) {
    let mut acked: HashSet<String> = HashSet::new();
    let mut changes = routing.subscribe();
    let mut beat = tokio::time::interval(Duration::from_millis(GATE_HEARTBEAT_MS));
    let key = keys::gate_instance(&id);
    loop {
        let pending: Vec<Arc<HoldRecord>> = {
            let t = routing.current();
            let mut seen = HashSet::new();
            t.holds()
                .filter(|h| h.until_ms + HOLD_GRACE_MS > now_ms() && !acked.contains(&h.id))
                .filter(|h| seen.insert(h.id.clone()))
                .cloned()
                .collect()
        };
        for h in &pending {
            if routing.earlier_statements_running() || activity.open_transactions(&h.keyspaces) > 0
            {
                continue;
            }
            let ack = HoldAck {
                hold_id: h.id.clone(),
                gate: id.clone(),
                at_ms: now_ms(),
            };
            match topo
                .put_json(&keys::gate_ack(&h.workflow, &id), &ack, Cond::Any)
                .await
            {
                Ok(_) => {
                    tracing::info!(workflow = %h.workflow, keyspaces = ?h.keyspaces, "gate drained for the traffic switch");
                    acked.insert(h.id.clone());
                }
                Err(e) => tracing::warn!(error = %e, "cannot acknowledge a traffic hold"),
            }
        }
        let waiting = pending.iter().any(|h| !acked.contains(&h.id));
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = beat.tick() => {
                let me = GateInstance { id: id.clone(), addr: addr.clone(), pid: std::process::id(), seen_ms: now_ms() };
                if let Err(e) = topo.put_json(&key, &me, Cond::Any).await {
                    tracing::warn!(error = %e, "cannot refresh the gate's instance record");
                }
            }
            r = changes.changed() => if r.is_err() { break },
            _ = tokio::time::sleep(DRAIN_POLL), if waiting => {}
        }
        if acked.len() > 64 {
            let live: HashSet<String> = routing.current().holds().map(|h| h.id.clone()).collect();
            acked.retain(|a| live.contains(a));
        }
    }
    let _ = topo.delete(&key, Cond::Any).await;
}

/// A random id for this gate instance.
pub(crate) fn new_gate_id() -> String {
    format!("gate-{:016x}", rand::random::<u64>())
}
