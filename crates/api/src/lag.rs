//! Replication lag over time, for the dashboard's chart.
//!
//! The workflow record only holds each stream's latest lag (it is rewritten
//! on every progress report; keeping a series there would grow the record
//! and the topo's history). The API process samples it instead, from one
//! topo watch, into a bounded series per workflow. The series is a display
//! aid, not state: it starts empty when the process starts, and losing it
//! loses nothing that matters.

use futures::StreamExt;
use keyshift_cluster::model::keys;
use keyshift_topo::{Topo, TopoError, TopoExt, WatchEvent};
use keyshift_workflow::Workflow;
use serde::Serialize;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio_util::sync::CancellationToken;

/// Samples kept per workflow: an hour at one sample per second.
pub const MAX_SAMPLES: usize = 3600;
/// Samples closer than this are merged (keeping the higher lag), so a burst
/// of progress reports does not crowd out the last hour.
const MIN_SPACING_MS: u64 = 1000;

#[derive(Clone, Copy, Debug, Serialize, PartialEq, Eq)]
pub struct LagSample {
    pub at_ms: u64,
    /// The highest lag over the workflow's streams.
    pub lag_seconds: u64,
}

#[derive(Default)]
pub struct LagHistory {
    series: Mutex<HashMap<String, VecDeque<LagSample>>>,
}

impl LagHistory {
    pub fn record(&self, workflow: &str, sample: LagSample) {
        let mut all = self.series.lock().unwrap_or_else(|p| p.into_inner());
        let s = all.entry(workflow.to_string()).or_default();
        match s.back_mut() {
            Some(last) if sample.at_ms < last.at_ms + MIN_SPACING_MS => {
                last.lag_seconds = last.lag_seconds.max(sample.lag_seconds);
            }
            _ => s.push_back(sample),
        }
        while s.len() > MAX_SAMPLES {
            s.pop_front();
        }
    }

    pub fn forget(&self, workflow: &str) {
        self.series
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(workflow);
    }

    pub fn get(&self, workflow: &str) -> Vec<LagSample> {
        self.series
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(workflow)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }

    fn observe(&self, w: &Workflow) {
        if let Some(lag) = crate::views::max_lag(w) {
            self.record(
                &w.name,
                LagSample {
                    at_ms: keyshift_workflow::model::now_ms(),
                    lag_seconds: lag,
                },
            );
        }
    }
}

/// Feeds `history` from the workflow records until `cancel`. A watch that
/// fails (compaction, a topo hiccup) is re-opened from the current state
/// after a pause; the chart only shows a gap.
pub async fn run(topo: Arc<dyn Topo>, history: Arc<LagHistory>, cancel: CancellationToken) {
    loop {
        let r = tokio::select! {
            r = follow(topo.as_ref(), &history) => r,
            _ = cancel.cancelled() => return,
        };
        match r {
            Err(TopoError::Closed) => return,
            Err(e) => tracing::warn!("api: lag sampling restarts after: {e}"),
            Ok(()) => return,
        }
        tokio::select! {
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
            _ = cancel.cancelled() => return,
        }
    }
}

async fn follow(topo: &dyn Topo, history: &LagHistory) -> Result<(), TopoError> {
    let rev = topo.revision().await?;
    for (_, w, _) in topo.list_json::<Workflow>(keys::WORKFLOWS).await? {
        history.observe(&w);
    }
    let mut events = topo.watch(keys::WORKFLOWS, rev).await?;
    while let Some(ev) = events.next().await {
        match ev? {
            WatchEvent::Put(kv) => match serde_json::from_slice::<Workflow>(&kv.value) {
                Ok(w) => history.observe(&w),
                Err(e) => tracing::debug!("api: {} is not a workflow: {e}", kv.key),
            },
            WatchEvent::Delete { key, .. } => {
                history.forget(key.trim_start_matches(keys::WORKFLOWS));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_samples_merge_and_the_series_is_bounded() {
        let h = LagHistory::default();
        h.record(
            "w",
            LagSample {
                at_ms: 0,
                lag_seconds: 1,
            },
        );
        h.record(
            "w",
            LagSample {
                at_ms: 10,
                lag_seconds: 5,
            },
        );
        h.record(
            "w",
            LagSample {
                at_ms: 20,
                lag_seconds: 2,
            },
        );
        assert_eq!(
            h.get("w"),
            vec![LagSample {
                at_ms: 0,
                lag_seconds: 5
            }]
        );
        for i in 1..=(MAX_SAMPLES as u64 + 10) {
            h.record(
                "w",
                LagSample {
                    at_ms: i * 1000,
                    lag_seconds: i,
                },
            );
        }
        let s = h.get("w");
        assert_eq!(s.len(), MAX_SAMPLES);
        assert_eq!(
            s.last().map(|x| x.lag_seconds),
            Some(MAX_SAMPLES as u64 + 10)
        );
        h.forget("w");
        assert!(h.get("w").is_empty());
    }
}
