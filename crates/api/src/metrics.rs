//! `GET /metrics`: the node's metrics for Prometheus, behind the API token
//! like every other route (scrape config: `authorization: {credentials_file:
//! <data_dir>/api-token}`).
//!
//! Workflow figures are read from the topo at scrape time — state, per-table
//! copy progress, per-stream lag and applied transactions — so every node
//! reports every workflow and nothing is kept between scrapes. The gate's
//! counters come from the sources the node registers ([`MetricsSource`]).

use crate::AppState;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use keyshift_types::prom::{self, Kind};
use keyshift_workflow::Workflow;
use keyshift_workflow::model::ALL_STATES;
use std::sync::Arc;

/// Renders metrics the API does not own (the gate's) into a scrape.
pub type MetricsSource = Arc<dyn Fn(&mut String) + Send + Sync>;

pub async fn handler(State(state): State<AppState>) -> Response {
    let mut out = String::with_capacity(16 << 10);
    prom::family(
        &mut out,
        "keyshift_build_info",
        "The running keyshift's version.",
        Kind::Gauge,
    );
    prom::sample(
        &mut out,
        "keyshift_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1.0,
    );
    for source in &state.metrics {
        source(&mut out);
    }
    let (up, workflows) = match keyshift_workflow::list(state.topo.as_ref()).await {
        Ok(w) => (1.0, w),
        Err(e) => {
            tracing::warn!("metrics: cannot list the workflows: {e}");
            (0.0, Vec::new())
        }
    };
    prom::family(
        &mut out,
        "keyshift_topo_up",
        "1 when this scrape could read the topo (the workflow figures below come from it).",
        Kind::Gauge,
    );
    prom::sample(&mut out, "keyshift_topo_up", &[], up);
    render_workflows(&workflows, &mut out);
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, prom::CONTENT_TYPE)],
        out,
    )
        .into_response()
}

/// The workflow families, one series set per workflow.
pub fn render_workflows(workflows: &[Workflow], out: &mut String) {
    prom::family(
        out,
        "keyshift_workflow_state",
        "1 for the state each workflow is in, 0 for the others.",
        Kind::Gauge,
    );
    for w in workflows {
        let kind = w.kind.to_string();
        for s in ALL_STATES {
            let state = s.as_str();
            prom::sample(
                out,
                "keyshift_workflow_state",
                &[
                    ("workflow", &w.name),
                    ("type", &kind),
                    ("source_keyspace", &w.source_keyspace),
                    ("target_keyspace", &w.target_keyspace),
                    ("state", state),
                ],
                if *s == w.state { 1.0 } else { 0.0 },
            );
        }
    }
    let tables = |out: &mut String, name: &str, help: &str, f: &dyn Fn(&_) -> f64| {
        prom::family(out, name, help, Kind::Gauge);
        for w in workflows {
            for t in &w.table_progress {
                prom::sample(
                    out,
                    name,
                    &[("workflow", &w.name), ("table", &t.name)],
                    f(t),
                );
            }
        }
    };
    tables(
        out,
        "keyshift_workflow_rows_copied",
        "Rows copied so far, per table.",
        &|t| t.rows_copied as f64,
    );
    tables(
        out,
        "keyshift_workflow_rows_estimated",
        "Rows the source is estimated to hold, per table (for progress and ETA).",
        &|t| t.estimated_rows as f64,
    );
    tables(
        out,
        "keyshift_workflow_copy_done",
        "1 once a table's copy has finished.",
        &|t| if t.done { 1.0 } else { 0.0 },
    );
    let streams =
        |out: &mut String, name: &str, help: &str, kind: Kind, f: &dyn Fn(&_) -> Option<f64>| {
            prom::family(out, name, help, kind);
            for w in workflows {
                for s in &w.streams {
                    let Some(v) = f(s) else { continue };
                    let stream = format!("{}→{}", s.source_shard, s.target_shard);
                    prom::sample(out, name, &[("workflow", &w.name), ("stream", &stream)], v);
                }
            }
        };
    streams(
        out,
        "keyshift_workflow_stream_lag_seconds",
        "Replication lag of each stream (source shard → target shard), as last reported.",
        Kind::Gauge,
        &|s| s.lag_seconds.map(|l| l as f64),
    );
    streams(
        out,
        "keyshift_workflow_stream_transactions_applied_total",
        "Source transactions each stream has applied to its target.",
        Kind::Counter,
        &|s| Some(s.transactions_applied as f64),
    );
}
