//! What the gate counts, for the node's `/metrics` (Prometheus).
//!
//! The counters live in atomics owned by one [`GateMetrics`] per gate (no
//! process-wide registry, so tests run gates side by side). A statement
//! costs a clock read at each end, three relaxed atomic adds and, when its
//! keyspace differs from the session's previous one, a read lock on the
//! keyspace map; errors take a mutex, as they are rare. Backend pools and
//! the topology are read only when scraped ([`crate::GateService::render_metrics`]).
//!
//! Statement families are labelled by keyspace, so a traffic switch shows
//! as one keyspace's rate falling while the other's rises. Statements that
//! reach no keyspace (`USE`, `SET`, `BEGIN`, `COMMIT`, `SELECT @@version`,
//! and those refused before routing, such as a syntax error) count under
//! `keyspace=""`.

use keyshift_types::prom::{self, Histogram, Kind, LATENCY_BUCKETS};
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

/// Counters of one keyspace's statements.
pub struct KeyspaceStats {
    name: Arc<str>,
    statements: AtomicU64,
    errors: Mutex<BTreeMap<u16, u64>>,
    latency: Histogram,
}

impl KeyspaceStats {
    fn new(name: &str) -> KeyspaceStats {
        KeyspaceStats {
            name: name.into(),
            statements: AtomicU64::new(0),
            errors: Mutex::new(BTreeMap::new()),
            latency: Histogram::new(LATENCY_BUCKETS),
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// One statement ended after `took`, with the MySQL error code the
    /// client got, if any.
    pub fn record(&self, took: Duration, error: Option<u16>) {
        self.statements.fetch_add(1, Ordering::Relaxed);
        self.latency.observe(took);
        if let Some(code) = error {
            let mut e = self.errors.lock().unwrap_or_else(|p| p.into_inner());
            *e.entry(code).or_default() += 1;
        }
    }
}

/// Everything one gate counts; shared by its listener and its sessions.
pub struct GateMetrics {
    pub(crate) connections: AtomicU64,
    pub(crate) open: AtomicI64,
    pub(crate) auth_failures: AtomicU64,
    pub(crate) too_large: AtomicU64,
    pub(crate) held: AtomicU64,
    pub(crate) held_nanos: AtomicU64,
    keyspaces: RwLock<BTreeMap<Arc<str>, Arc<KeyspaceStats>>>,
    /// `keyspace=""`, kept at hand: BEGIN, COMMIT and SET count here on
    /// every transaction.
    unrouted: Arc<KeyspaceStats>,
}

impl Default for GateMetrics {
    fn default() -> Self {
        let unrouted = Arc::new(KeyspaceStats::new(""));
        let keyspaces = BTreeMap::from([(Arc::from(""), unrouted.clone())]);
        GateMetrics {
            connections: AtomicU64::new(0),
            open: AtomicI64::new(0),
            auth_failures: AtomicU64::new(0),
            too_large: AtomicU64::new(0),
            held: AtomicU64::new(0),
            held_nanos: AtomicU64::new(0),
            keyspaces: RwLock::new(keyspaces),
            unrouted,
        }
    }
}

impl std::fmt::Debug for GateMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GateMetrics")
            .field("connections", &self.connections.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

impl GateMetrics {
    /// The counters of `keyspace` (`""`: statements that reach none),
    /// created on first use. Keyspaces are few and named by the topo, so the
    /// map stays small; a keyspace that goes away keeps its counters, as
    /// Prometheus counters must not go back.
    pub fn keyspace(&self, keyspace: &str) -> Arc<KeyspaceStats> {
        {
            let map = self.keyspaces.read().unwrap_or_else(|p| p.into_inner());
            if let Some(s) = map.get(keyspace) {
                return s.clone();
            }
        }
        let mut map = self.keyspaces.write().unwrap_or_else(|p| p.into_inner());
        map.entry(keyspace.into())
            .or_insert_with(|| Arc::new(KeyspaceStats::new(keyspace)))
            .clone()
    }

    /// The counters of statements that reach no keyspace.
    pub fn unrouted(&self) -> &Arc<KeyspaceStats> {
        &self.unrouted
    }

    /// A statement waited `took` on a traffic hold.
    pub(crate) fn held_for(&self, took: Duration) {
        self.held.fetch_add(1, Ordering::Relaxed);
        let nanos = u64::try_from(took.as_nanos()).unwrap_or(u64::MAX);
        self.held_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Statements counted for `keyspace` so far (for tests and the CLI).
    pub fn statements(&self, keyspace: &str) -> u64 {
        let map = self.keyspaces.read().unwrap_or_else(|p| p.into_inner());
        map.get(keyspace)
            .map(|s| s.statements.load(Ordering::Relaxed))
            .unwrap_or(0)
    }

    /// The counters' families in Prometheus text form.
    pub fn render(&self, out: &mut String) {
        let n = |a: &AtomicU64| a.load(Ordering::Relaxed) as f64;
        prom::family(
            out,
            "keyshift_gate_connections_total",
            "Client connections accepted by the gate.",
            Kind::Counter,
        );
        prom::sample(
            out,
            "keyshift_gate_connections_total",
            &[],
            n(&self.connections),
        );
        prom::family(
            out,
            "keyshift_gate_connections_open",
            "Client connections open now.",
            Kind::Gauge,
        );
        prom::sample(
            out,
            "keyshift_gate_connections_open",
            &[],
            self.open.load(Ordering::Relaxed) as f64,
        );
        prom::family(
            out,
            "keyshift_gate_auth_failures_total",
            "Logins refused with error 1045 (unknown user or wrong password).",
            Kind::Counter,
        );
        prom::sample(
            out,
            "keyshift_gate_auth_failures_total",
            &[],
            n(&self.auth_failures),
        );
        prom::family(
            out,
            "keyshift_gate_packets_too_large_total",
            "Client packets over max_allowed_packet (error 1153, connection closed).",
            Kind::Counter,
        );
        prom::sample(
            out,
            "keyshift_gate_packets_too_large_total",
            &[],
            n(&self.too_large),
        );
        prom::family(
            out,
            "keyshift_gate_held_statements_total",
            "Statements that waited on a traffic hold during a switch.",
            Kind::Counter,
        );
        prom::sample(
            out,
            "keyshift_gate_held_statements_total",
            &[],
            n(&self.held),
        );
        prom::family(
            out,
            "keyshift_gate_held_seconds_total",
            "Time statements spent waiting on traffic holds.",
            Kind::Counter,
        );
        prom::sample(
            out,
            "keyshift_gate_held_seconds_total",
            &[],
            self.held_nanos.load(Ordering::Relaxed) as f64 / 1e9,
        );

        let all: Vec<Arc<KeyspaceStats>> = self
            .keyspaces
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        prom::family(
            out,
            "keyshift_gate_statements_total",
            "Statements (COM_QUERY and COM_STMT_EXECUTE) by the keyspace they reached.",
            Kind::Counter,
        );
        for s in &all {
            prom::sample(
                out,
                "keyshift_gate_statements_total",
                &[("keyspace", &s.name)],
                n(&s.statements),
            );
        }
        prom::family(
            out,
            "keyshift_gate_statement_errors_total",
            "Statements answered with an error, by keyspace and MySQL error code.",
            Kind::Counter,
        );
        for s in &all {
            let errors = s.errors.lock().unwrap_or_else(|p| p.into_inner()).clone();
            for (code, count) in errors {
                prom::sample(
                    out,
                    "keyshift_gate_statement_errors_total",
                    &[("keyspace", &s.name), ("code", &code.to_string())],
                    count as f64,
                );
            }
        }
        prom::family(
            out,
            "keyshift_gate_statement_duration_seconds",
            "Time from a statement's arrival to the end of its answer, by keyspace.",
            Kind::Histogram,
        );
        for s in &all {
            s.latency.render(
                out,
                "keyshift_gate_statement_duration_seconds",
                &[("keyspace", &s.name)],
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keyspaces_are_counted_apart_and_errors_by_code() {
        let m = GateMetrics::default();
        let c = m.keyspace("commerce");
        c.record(Duration::from_micros(300), None);
        c.record(Duration::from_millis(3), Some(1146));
        m.keyspace("customer")
            .record(Duration::from_micros(80), Some(1062));
        assert!(Arc::ptr_eq(&c, &m.keyspace("commerce")));
        assert_eq!(m.statements("commerce"), 2);
        assert_eq!(m.statements("customer"), 1);
        assert_eq!(m.statements("nowhere"), 0);
        let mut out = String::new();
        m.render(&mut out);
        for line in [
            "keyshift_gate_statements_total{keyspace=\"commerce\"} 2",
            "keyshift_gate_statements_total{keyspace=\"customer\"} 1",
            "keyshift_gate_statement_errors_total{keyspace=\"commerce\",code=\"1146\"} 1",
            "keyshift_gate_statement_errors_total{keyspace=\"customer\",code=\"1062\"} 1",
            "keyshift_gate_statement_duration_seconds_bucket{keyspace=\"commerce\",le=\"0.0005\"} 1",
            "keyshift_gate_statement_duration_seconds_count{keyspace=\"commerce\"} 2",
        ] {
            assert!(out.lines().any(|l| l == line), "{line} missing from\n{out}");
        }
    }
}
