//! Holding a workflow's streams at a known position: the primitive under
//! VDiff (compare both sides at one logical point) and switch-traffic
//! (targets caught up to the source's final position).
//!
//! 1. [`pause`] sets `paused` in the record; the controller stops the
//!    streams and acknowledges (`streams_active = false`).
//! 2. The holder reads positions on the source, then [`catch_up`] runs each
//!    stream itself up to exactly its source shard's position and stops.
//! 3. [`unpause`] lifts the pause; the controller restarts the streams from
//!    what the targets committed.
//!
//! A pause expires (`until_ms`): a holder that dies leaves the workflow
//! running again once the lease is over, never stuck.

use crate::WorkflowError;
use crate::controller::{stream_spec, table_specs};
use crate::model::{Pause, Workflow, now_ms};
use crate::ops::{Result, show};
use keyshift_cluster::model::keys;
use keyshift_topo::{Topo, TopoExt, UpdateError};
use keyshift_types::Position;
use keyshift_vrepl::{StreamExit, StreamProgress, run_stream};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio_util::sync::CancellationToken;

/// Pauses the streams of `name` for `holder` until `ttl` from now, and
/// waits until the controller confirms they ended (at most `wait`). On a
/// timeout the pause is lifted again.
pub async fn pause(
    topo: &dyn Topo,
    name: &str,
    holder: &str,
    ttl: Duration,
    wait: Duration,
) -> Result<Workflow> {
    let until_ms = now_ms() + ttl.as_millis() as u64;
    let r = topo
        .update_json::<Workflow, _, WorkflowError>(&keys::workflow(name), |cur| {
            let mut w = cur.ok_or_else(|| WorkflowError::NotFound(name.to_string()))?;
            if let Some(p) = &w.paused
                && p.by != holder
                && w.is_paused()
            {
                return Err(WorkflowError::Server(format!(
                    "workflow `{name}` is held by {} until {}; try again later",
                    p.by,
                    fmt_ms(p.until_ms)
                )));
            }
            w.paused = Some(Pause {
                by: holder.to_string(),
                until_ms,
            });
            Ok(w)
        })
        .await;
    match r {
        Ok(_) => {}
        Err(UpdateError::Aborted(e)) => return Err(e),
        Err(UpdateError::Topo(e)) => return Err(e.into()),
    }
    match wait_streams_ended(topo, name, wait).await {
        Ok(w) => Ok(w),
        Err(e) => {
            let _ = unpause(topo, name, holder).await;
            Err(e)
        }
    }
}

/// Extends `holder`'s pause to `ttl` from now (long VDiffs renew it).
pub async fn renew(topo: &dyn Topo, name: &str, holder: &str, ttl: Duration) -> Result<()> {
    let until_ms = now_ms() + ttl.as_millis() as u64;
    let r = topo
        .update_json::<Workflow, _, WorkflowError>(&keys::workflow(name), |cur| {
            let mut w = cur.ok_or_else(|| WorkflowError::NotFound(name.to_string()))?;
            match &mut w.paused {
                Some(p) if p.by == holder => p.until_ms = until_ms,
                _ => {
                    return Err(WorkflowError::Server(format!(
                        "workflow `{name}` is no longer paused by {holder}"
                    )));
                }
            }
            Ok(w)
        })
        .await;
    match r {
        Ok(_) => Ok(()),
        Err(UpdateError::Aborted(e)) => Err(e),
        Err(UpdateError::Topo(e)) => Err(e.into()),
    }
}

/// Lifts `holder`'s pause (another holder's is left alone) and bumps the
/// generation so the controller starts fresh streams. Idempotent.
pub async fn unpause(topo: &dyn Topo, name: &str, holder: &str) -> Result<Workflow> {
    let r = topo
        .update_json::<Workflow, _, WorkflowError>(&keys::workflow(name), |cur| {
            let mut w = cur.ok_or_else(|| WorkflowError::NotFound(name.to_string()))?;
            if w.paused.as_ref().is_some_and(|p| p.by == holder) {
                w.paused = None;
                w.generation += 1;
            }
            Ok(w)
        })
        .await;
    match r {
        Ok((w, _)) => Ok(w),
        Err(UpdateError::Aborted(e)) => Err(e),
        Err(UpdateError::Topo(e)) => Err(e.into()),
    }
}

/// Waits until the controller reports that no stream of `name` runs.
pub async fn wait_streams_ended(topo: &dyn Topo, name: &str, wait: Duration) -> Result<Workflow> {
    let deadline = Instant::now() + wait;
    loop {
        let rev = topo.revision().await?;
        let w = show(topo, name).await?;
        if !w.streams_active {
            return Ok(w);
        }
        if Instant::now() > deadline {
            return Err(WorkflowError::Server(format!(
                "the streams of workflow `{name}` did not confirm that they stopped within {} s; is `keyshift up` running?",
                wait.as_secs()
            )));
        }
        // The controller's acknowledgement is a write to the record: wake
        // on it rather than on a polling period.
        topo.wait_change(&keys::workflow(name), rev, Duration::from_millis(100))
            .await;
    }
}

/// Runs every stream of `w` (paused, so nothing else runs them) up to
/// exactly the position given for its source shard, and returns once all
/// have committed it. A stream already there returns at once.
pub async fn catch_up(
    topo: &dyn Topo,
    w: &Workflow,
    stops: &BTreeMap<String, Position>,
    cancel: &CancellationToken,
) -> std::result::Result<(), String> {
    let (tables, ranges) = table_specs(topo, w).await?;
    let mut runs = Vec::new();
    for s in &w.streams {
        let stop = stops
            .get(&s.source_shard)
            .ok_or_else(|| format!("no stop position for source shard {}", s.source_shard))?;
        let range = ranges
            .get(&s.target_shard)
            .ok_or_else(|| format!("target shard {} no longer exists", s.target_shard))?;
        let mut spec = stream_spec(topo, w, s, &tables, range).await?;
        spec.stop_position = Some(stop.clone());
        let (tx, _rx) = watch::channel(StreamProgress::default());
        let cancel = cancel.clone();
        let label = format!("stream {} → {}", s.source_shard, s.target_shard);
        runs.push(async move {
            match run_stream(spec, cancel, tx).await {
                Ok(StreamExit::ReachedStop) => Ok(()),
                Ok(other) => Err(format!(
                    "{label}: ended before its stop position ({other:?})"
                )),
                Err(e) => Err(format!("{label}: {e}")),
            }
        });
    }
    for r in futures::future::join_all(runs).await {
        r?;
    }
    Ok(())
}

fn fmt_ms(ms: u64) -> String {
    let secs = ms.saturating_sub(now_ms()) / 1000;
    format!("{secs} s from now")
}
