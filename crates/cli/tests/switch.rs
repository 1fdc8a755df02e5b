//! Switching traffic end to end (issue 6), on real managed mariadbd with
//! real clients writing through the gate the whole time:
//!
//! * sysbench `oltp_read_write` (one thread, so no deadlocks between its own
//!   threads can be mistaken for switch errors) on a moved `sbtest1`, and a
//!   ledger client of the test's own that records every write acknowledged
//!   to it, across switch → switch back → switch → complete: zero failed
//!   statements, and every acknowledged write is on the serving side at the
//!   end (and on the source after switching back);
//! * switches that fail (a timeout, a stalled target, a lag above the
//!   limit, the wrong state) keep serving from the source, lose nothing, and
//!   say what happened;
//! * cancel restores the routing rules and removes the target tables.

mod common;

use common::{Cluster, conn_for, mariadbd_pid, show_json};
use keyshift_cluster::ops;
use mysql_async::prelude::*;
use std::collections::BTreeMap;
use std::process::Command;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const GATE_USER: &str = "app";
const GATE_PASSWORD: &str = "app-password";

async fn gate_conn(c: &Cluster) -> mysql_async::Conn {
    gate_conn_at(c.gate_port()).await
}

async fn gate_conn_at(port: u16) -> mysql_async::Conn {
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(port)
        .user(Some(GATE_USER))
        .pass(Some(GATE_PASSWORD))
        .prefer_socket(false);
    mysql_async::Conn::new(opts).await.expect("connect to gate")
}

fn wait_caught_up(c: &Cluster, name: &str) {
    c.ok(&[
        "workflow",
        "show",
        name,
        "--wait-for",
        "running",
        "--caught-up",
        "--timeout",
        "180s",
    ]);
}

/// What the ledger client was told: customer id → email, for every write
/// the gate acknowledged; and every statement that failed.
#[derive(Default)]
struct Ledger {
    acked: Mutex<BTreeMap<i64, String>>,
    orders: Mutex<BTreeMap<i64, i64>>,
    failures: Mutex<Vec<String>>,
    writes: AtomicU64,
}

/// Three clients writing through the gate until `stop`: autocommit inserts,
/// multi-statement transactions, and updates of their own earlier rows.
async fn ledger_writer(port: u16, task: i64, ledger: Arc<Ledger>, stop: Arc<AtomicBool>) {
    let mut conn = gate_conn_at(port).await;
    let mut i: i64 = 0;
    while !stop.load(Ordering::Relaxed) {
        i += 1;
        let id = 1_000_000 + task * 1_000_000 + i;
        let email = format!("t{task}-{i}@ledger");
        let r: Result<(), mysql_async::Error> = match i % 3 {
            0 => {
                conn.exec_drop(
                    "INSERT INTO customer (customer_id, email) VALUES (?, ?)",
                    (id, &email),
                )
                .await
            }
            1 => {
                async {
                    conn.query_drop("BEGIN").await?;
                    conn.exec_drop(
                        "INSERT INTO customer (customer_id, email) VALUES (?, ?)",
                        (id, &email),
                    )
                    .await?;
                    conn.exec_drop(
                        "INSERT INTO corder (order_id, customer_id, sku, price) VALUES (?, ?, 'SKU-L', 1)",
                        (id, id),
                    )
                    .await?;
                    conn.query_drop("COMMIT").await
                }
                .await
            }
            _ => {
                // Insert, then change an earlier row of this client.
                let prev = id - 1;
                async {
                    conn.exec_drop(
                        "INSERT INTO customer (customer_id, email) VALUES (?, ?)",
                        (id, &email),
                    )
                    .await?;
                    conn.exec_drop(
                        "UPDATE customer SET email = ? WHERE customer_id = ?",
                        (format!("{email}-upd"), prev),
                    )
                    .await
                }
                .await
            }
        };
        match r {
            Ok(()) => {
                let mut acked = ledger.acked.lock().unwrap();
                acked.insert(id, email.clone());
                if i % 3 == 2 && acked.contains_key(&(id - 1)) {
                    acked.insert(id - 1, format!("{email}-upd"));
                }
                if i % 3 == 1 {
                    ledger.orders.lock().unwrap().insert(id, id);
                }
                ledger.writes.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                ledger
                    .failures
                    .lock()
                    .unwrap()
                    .push(format!("task {task} write {i}: {e}"));
                // A failed transaction must not leak into the next one.
                let _ = conn.query_drop("ROLLBACK").await;
            }
        }
    }
    conn.disconnect().await.ok();
}

/// Stops the load when dropped, so a failing test does not leave writers
/// (and a blocking sysbench loop) running forever.
struct StopOnDrop(Arc<AtomicBool>);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.store(true, Ordering::Relaxed);
    }
}

/// Waits until the ledger has `n` more acknowledged writes than now.
async fn more_writes(ledger: &Ledger, n: u64) {
    let start = ledger.writes.load(Ordering::Relaxed);
    let deadline = Instant::now() + Duration::from_secs(60);
    while ledger.writes.load(Ordering::Relaxed) < start + n {
        assert!(
            Instant::now() < deadline,
            "writers stalled: {:?}",
            ledger.failures.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Every customer row of a keyspace (all its shards), id → email.
async fn customers(c: &Cluster, ks: &str) -> BTreeMap<i64, String> {
    let topo = c.topo().await;
    let mut out = BTreeMap::new();
    for s in ops::list_shards(topo.as_ref(), ks).await.expect("shards") {
        let mut conn = conn_for(c, ks, &s.name).await;
        let rows: Vec<(i64, Option<String>)> = conn
            .query("SELECT customer_id, email FROM customer")
            .await
            .expect("select");
        for (id, email) in rows {
            assert!(
                out.insert(id, email.unwrap_or_default()).is_none(),
                "customer {id} is on two shards of {ks}"
            );
        }
        conn.disconnect().await.ok();
    }
    out
}

/// Checks every acknowledged write against `ks`.
async fn assert_acked_on(c: &Cluster, ks: &str, ledger: &Ledger) {
    assert_acked_on_while(c, ks, ledger, false).await
}

/// The update a writer makes to a row after acknowledging `email` for it:
/// insert i rewrites row i-1 to "t{task}-{i}@ledger-upd".
fn successor(email: &str) -> Option<String> {
    let (who, rest) = email.split_once('-')?;
    let n: i64 = rest.strip_suffix("@ledger")?.parse().ok()?;
    Some(format!("{who}-{}@ledger-upd", n + 1))
}

/// With `writing`, the writers are still running: a row may already hold
/// the one update that follows its acknowledged value (committed, not yet
/// recorded in the ledger). Anything else — a missing row, an older value —
/// is a lost write.
async fn assert_acked_on_while(c: &Cluster, ks: &str, ledger: &Ledger, writing: bool) {
    let acked = ledger.acked.lock().unwrap().clone();
    let have = customers(c, ks).await;
    let mut missing = Vec::new();
    for (id, email) in &acked {
        match have.get(id) {
            Some(e) if e == email => {}
            Some(e) if writing && successor(email).as_deref() == Some(e.as_str()) => {}
            other => missing.push(format!("{id}: acked {email:?}, found {other:?}")),
        }
    }
    assert!(
        missing.is_empty(),
        "{} of {} acknowledged writes are not on {ks}: {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(10)]
    );
}

/// sysbench runs of a few seconds, back to back until `stop`; any failure
/// (a non-zero exit, FATAL, an ignored error or a reconnect) is recorded.
fn sysbench_loop(
    port: u16,
    stop: Arc<AtomicBool>,
    failures: Arc<Mutex<Vec<String>>>,
    runs: Arc<AtomicU64>,
) {
    while !stop.load(Ordering::Relaxed) {
        let out = Command::new("sysbench")
            .args([
                "oltp_read_write",
                "--tables=1",
                "--table-size=2000",
                "--threads=1",
                "--time=3",
                "--db-ps-mode=auto",
                "--report-interval=0",
                "--mysql-host=127.0.0.1",
                &format!("--mysql-port={port}"),
                &format!("--mysql-user={GATE_USER}"),
                &format!("--mysql-password={GATE_PASSWORD}"),
                "--mysql-db=commerce",
                "run",
            ])
            .output()
            .expect("run sysbench");
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        let stat = |label: &str| {
            text.lines()
                .find(|l| l.trim_start().starts_with(label))
                .and_then(|l| l.split(':').nth(1))
                .and_then(|v| v.split_whitespace().next())
                .and_then(|v| v.parse::<u64>().ok())
        };
        if !out.status.success()
            || text.contains("FATAL")
            || stat("ignored errors:") != Some(0)
            || stat("reconnects:") != Some(0)
        {
            failures.lock().unwrap().push(text);
        }
        runs.fetch_add(1, Ordering::Relaxed);
    }
}

async fn setup(c: &Cluster, with_sysbench: bool) {
    c.ok(&["up", "--detach"]);
    c.ok(&["demo"]);
    let mut src = conn_for(c, "commerce", "0").await;
    let cust: Vec<String> = (10_001..=10_300)
        .map(|i| format!("({i}, 'seed{i}@x')"))
        .collect();
    src.query_drop(format!(
        "INSERT INTO customer (customer_id, email) VALUES {}",
        cust.join(",")
    ))
    .await
    .expect("seed");
    src.disconnect().await.ok();
    let mut vschema: serde_json::Value =
        serde_json::from_str(&c.ok(&["vschema", "get", "customer"])).expect("vschema");
    let mut tables = "customer,corder".to_string();
    if with_sysbench {
        let port = c.gate_port().to_string();
        let out = Command::new("sysbench")
            .args([
                "oltp_read_write",
                "--tables=1",
                "--table-size=2000",
                "--mysql-host=127.0.0.1",
                &format!("--mysql-port={port}"),
                &format!("--mysql-user={GATE_USER}"),
                &format!("--mysql-password={GATE_PASSWORD}"),
                "--mysql-db=commerce",
                "prepare",
            ])
            .output()
            .expect("sysbench prepare");
        assert!(
            out.status.success(),
            "sysbench prepare: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        vschema["tables"]["sbtest1"] =
            serde_json::json!({"column_vindexes": [{"column": "id", "name": "hash"}]});
        tables.push_str(",sbtest1");
    }
    c.ok(&[
        "vschema",
        "apply",
        "customer",
        "--json",
        &vschema.to_string(),
    ]);
    // The sharding plan is in the VSchema but no workflow exists yet: the
    // application, unqualified and without USE, still reads the source.
    let mut g = gate_conn(c).await;
    let n: Option<i64> = g
        .query_first("SELECT COUNT(*) FROM customer")
        .await
        .expect("unqualified read before the workflow");
    g.disconnect().await.ok();
    assert_eq!(n, Some(customers(c, "commerce").await.len() as i64));
    c.ok(&[
        "workflow",
        "create",
        "--name",
        "move1",
        "--source-keyspace",
        "commerce",
        "--target-keyspace",
        "customer",
        "--tables",
        &tables,
    ]);
    wait_caught_up(c, "move1");
}

fn rules_target(c: &Cluster, from: &str) -> Option<String> {
    let rules: serde_json::Value =
        serde_json::from_str(&c.ok(&["routing-rules", "get"])).expect("rules json");
    rules["rules"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|r| r["from_table"] == from)
        .and_then(|r| r["to_tables"][0].as_str().map(str::to_string))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn switch_back_switch_complete_under_load_fails_nothing_and_loses_nothing() {
    let c = Cluster::example();
    setup(&c, true).await;

    // Dry run: the steps, and nothing changes.
    let dry = c.ok(&["workflow", "switch-traffic", "move1", "--dry-run"]);
    assert!(
        dry.contains("hold statements") && dry.contains("reverse workflow"),
        "{dry}"
    );
    assert_eq!(show_json(&c, "move1")["state"], "running");

    let ledger = Arc::new(Ledger::default());
    let stop = Arc::new(AtomicBool::new(false));
    let _stop_guard = StopOnDrop(stop.clone());
    let mut writers = Vec::new();
    for task in 0..3 {
        let (l, s) = (ledger.clone(), stop.clone());
        writers.push(tokio::spawn(ledger_writer(c.gate_port(), task, l, s)));
    }
    let sb_failures = Arc::new(Mutex::new(Vec::new()));
    let sb_runs = Arc::new(AtomicU64::new(0));
    let sb = {
        let (port, s, f, r) = (
            c.gate_port(),
            stop.clone(),
            sb_failures.clone(),
            sb_runs.clone(),
        );
        tokio::task::spawn_blocking(move || sysbench_loop(port, s, f, r))
    };
    more_writes(&ledger, 100).await;

    // Replica reads first, then back, as a user would try it.
    c.ok(&["workflow", "switch-traffic", "move1", "--replicas-only"]);
    assert_eq!(show_json(&c, "move1")["state"], "switched_replicas");
    assert_eq!(
        rules_target(&c, "customer@replica").as_deref(),
        Some("customer.customer")
    );
    assert_eq!(
        rules_target(&c, "customer").as_deref(),
        Some("commerce.customer")
    );

    // Switch everything.
    let out = c.ok(&["workflow", "switch-traffic", "move1", "--format", "json"]);
    let report: serde_json::Value = serde_json::from_str(&out).expect("report json");
    assert_eq!(report["state"], "switched_primaries", "{report}");
    let held = report["held_ms"].as_u64().expect("held_ms");
    assert!(
        held < 10_000,
        "statements held {held} ms, longer than the window"
    );
    let w = show_json(&c, "move1");
    assert_eq!(w["state"], "switched_primaries", "{w}");
    assert_eq!(
        rules_target(&c, "customer").as_deref(),
        Some("customer.customer")
    );
    assert_eq!(
        rules_target(&c, "commerce.customer").as_deref(),
        Some("customer.customer")
    );
    let rev = show_json(&c, "move1_reverse");
    assert_eq!(rev["state"], "running", "{rev}");
    // Actions on the reverse workflow go through the forward one.
    let out = c.run(&["workflow", "stop", "move1_reverse"]);
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("reverse of `move1`"), "{err}");
    // In switched_primaries, cancel is not allowed; the error says what is.
    let out = c.run(&["workflow", "cancel", "move1"]);
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("reverse-traffic, complete"), "{err}");

    // Writes land on the target now.
    more_writes(&ledger, 150).await;

    // Switch back: every write acknowledged so far is on the source.
    c.ok(&["workflow", "reverse-traffic", "move1"]);
    assert_eq!(show_json(&c, "move1")["state"], "running");
    assert_eq!(show_json(&c, "move1_reverse")["state"], "stopped");
    assert_eq!(
        rules_target(&c, "customer").as_deref(),
        Some("commerce.customer")
    );
    // The ledger is read before the rows: every write it holds was
    // acknowledged before the rows were read.
    assert_acked_on_while(&c, "commerce", &ledger, true).await;
    more_writes(&ledger, 150).await;
    wait_caught_up(&c, "move1");

    // And over again.
    c.ok(&["workflow", "switch-traffic", "move1"]);
    assert_eq!(show_json(&c, "move1")["state"], "switched_primaries");
    more_writes(&ledger, 150).await;

    // sysbench runs in 3-second rounds; on a fast machine the switches can
    // finish inside the first two. Let a round finish after the last switch
    // so its checks cover the switched routing too.
    let deadline = Instant::now() + Duration::from_secs(60);
    let after_switch = sb_runs.load(Ordering::Relaxed);
    while sb_runs.load(Ordering::Relaxed) < (after_switch + 1).max(2) {
        assert!(
            Instant::now() < deadline,
            "sysbench finished no round within 60 s of the last switch"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    stop.store(true, Ordering::Relaxed);
    for w in writers {
        w.await.expect("writer");
    }
    sb.await.expect("sysbench loop");

    let failures = ledger.failures.lock().unwrap().clone();
    assert!(
        failures.is_empty(),
        "statements failed during the switches: {failures:?}"
    );
    let sb_failures = sb_failures.lock().unwrap().clone();
    assert!(
        sb_failures.is_empty(),
        "sysbench saw errors during the switches:\n{}",
        sb_failures.join("\n----\n")
    );
    assert!(sb_runs.load(Ordering::Relaxed) >= 2);
    assert_acked_on(&c, "customer", &ledger).await;

    // Complete: the reverse workflow and the rules go, the source tables too.
    let out = c.ok(&["workflow", "complete", "move1"]);
    assert!(out.contains("completed"), "{out}");
    assert_eq!(rules_target(&c, "customer"), None);
    let err = c.fails(&["workflow", "show", "move1_reverse"]);
    assert!(err.contains("does not exist"), "{err}");
    let mut src = conn_for(&c, "commerce", "0").await;
    let left: Vec<String> = src
        .query("SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name IN ('customer','corder','sbtest1')")
        .await
        .expect("tables");
    assert!(
        left.is_empty(),
        "source tables left after complete: {left:?}"
    );
    src.disconnect().await.ok();
    // The application keeps working against the target, unqualified.
    let mut g = gate_conn(&c).await;
    let n: Option<i64> = g
        .query_first("SELECT COUNT(*) FROM customer")
        .await
        .expect("count");
    assert_eq!(n, Some(customers(&c, "customer").await.len() as i64));
    g.disconnect().await.ok();
    assert_acked_on(&c, "customer", &ledger).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_switches_keep_serving_from_the_source_and_cancel_restores_everything() {
    let c = Cluster::example();
    setup(&c, false).await;
    let ledger = Arc::new(Ledger::default());
    let stop = Arc::new(AtomicBool::new(false));
    let _stop_guard = StopOnDrop(stop.clone());
    let writer = tokio::spawn(ledger_writer(
        c.gate_port(),
        0,
        ledger.clone(),
        stop.clone(),
    ));
    more_writes(&ledger, 50).await;

    // A timeout: the hold window ends before the gates have drained.
    let out = c.run(&["workflow", "switch-traffic", "move1", "--timeout", "1ms"]);
    assert_eq!(out.status.code(), Some(7));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("nothing changed") && err.contains("stays on commerce"),
        "{err}"
    );
    let w = show_json(&c, "move1");
    assert_eq!(w["state"], "running");
    assert!(
        w["events"].as_array().unwrap().iter().any(|e| e["message"]
            .as_str()
            .unwrap_or("")
            .contains("failed, nothing changed")),
        "{w}"
    );
    assert_eq!(
        rules_target(&c, "customer").as_deref(),
        Some("commerce.customer")
    );

    // A stalled target: the catch-up cannot finish within the window.
    let topo = c.topo().await;
    let target = ops::shard_primaries(topo.as_ref(), "customer")
        .await
        .expect("primaries")
        .remove(0)
        .1
        .expect("primary");
    let pid = nix::unistd::Pid::from_raw(mariadbd_pid(&c, &target.alias.to_string()));
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGSTOP).expect("SIGSTOP");
    let out = c.run(&[
        "workflow",
        "switch-traffic",
        "move1",
        "--hold-window",
        "2s",
        "--max-replication-lag-allowed",
        "1h",
    ]);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGCONT).expect("SIGCONT");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("nothing changed"), "{err}");
    assert_eq!(
        rules_target(&c, "customer").as_deref(),
        Some("commerce.customer")
    );
    more_writes(&ledger, 50).await;
    wait_caught_up(&c, "move1");

    // The wrong state: stopped workflows cannot switch.
    c.ok(&["workflow", "stop", "move1"]);
    let out = c.run(&["workflow", "switch-traffic", "move1"]);
    assert_eq!(out.status.code(), Some(3));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("allowed now: start"), "{err}");
    c.ok(&["workflow", "start", "move1"]);
    wait_caught_up(&c, "move1");

    stop.store(true, Ordering::Relaxed);
    writer.await.expect("writer");
    let failures = ledger.failures.lock().unwrap().clone();
    assert!(failures.is_empty(), "statements failed: {failures:?}");
    assert_acked_on(&c, "commerce", &ledger).await;

    // Cancel: routing rules as before the workflow, target tables gone,
    // source untouched.
    let before = customers(&c, "commerce").await;
    let out = c.ok(&["workflow", "cancel", "move1"]);
    assert!(out.contains("cancelled"), "{out}");
    assert_eq!(rules_target(&c, "customer"), None);
    for shard in ["-80", "80-"] {
        let mut t = conn_for(&c, "customer", shard).await;
        let left: Vec<String> = t
            .query("SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name IN ('customer','corder')")
            .await
            .expect("tables");
        assert!(left.is_empty(), "target tables left on {shard}: {left:?}");
        let progress: Option<i64> = t
            .query_first("SELECT COUNT(*) FROM _keyshift.streams")
            .await
            .expect("sidecar");
        assert_eq!(progress, Some(0));
        t.disconnect().await.ok();
    }
    assert_eq!(customers(&c, "commerce").await, before);
    assert_eq!(show_json(&c, "move1")["state"], "cancelled");
    // Both VSchemas still list customer and no rule names it: the
    // application, unqualified, reads the source's rows.
    let mut g = gate_conn(&c).await;
    let rows: Vec<(i64, Option<String>)> = g
        .query("SELECT customer_id, email FROM customer")
        .await
        .expect("unqualified read after cancel");
    g.disconnect().await.ok();
    let through_gate: BTreeMap<i64, String> = rows
        .into_iter()
        .map(|(id, e)| (id, e.unwrap_or_default()))
        .collect();
    assert_eq!(through_gate, before);
}

/// `keyshift workflow ACTION move1` with a failure injected after `step`.
fn run_failing(c: &Cluster, action: &str, step: usize) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_keyshift"))
        .arg("--cluster")
        .arg(c.file())
        .args(["workflow", action, "move1"])
        .env("KEYSHIFT_TEST_FAIL_SWITCH_AFTER", step.to_string())
        .env_remove("KEYSHIFT_CLUSTER")
        .output()
        .expect("run keyshift")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_failure_after_any_step_of_either_switch_is_undone_without_errors_or_loss() {
    let c = Cluster::example();
    setup(&c, false).await;
    let ledger = Arc::new(Ledger::default());
    let stop = Arc::new(AtomicBool::new(false));
    let _stop_guard = StopOnDrop(stop.clone());
    let writer = tokio::spawn(ledger_writer(
        c.gate_port(),
        0,
        ledger.clone(),
        stop.clone(),
    ));
    more_writes(&ledger, 30).await;

    // Replica reads over and back.
    c.ok(&["workflow", "switch-traffic", "move1", "--replicas-only"]);
    assert_eq!(
        rules_target(&c, "customer@replica").as_deref(),
        Some("customer.customer")
    );
    c.ok(&["workflow", "reverse-traffic", "move1"]);
    assert_eq!(show_json(&c, "move1")["state"], "running");
    assert_eq!(
        rules_target(&c, "customer@replica").as_deref(),
        Some("commerce.customer")
    );

    for step in 1..=9 {
        let out = run_failing(&c, "switch-traffic", step);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(7), "step {step}");
        assert!(
            err.contains(&format!("failure injected after step {step}"))
                && err.contains("nothing changed"),
            "step {step}: {err}"
        );
        assert_eq!(show_json(&c, "move1")["state"], "running", "step {step}");
        assert_eq!(
            rules_target(&c, "customer").as_deref(),
            Some("commerce.customer"),
            "step {step}"
        );
        assert!(
            c.fails(&["workflow", "show", "move1_reverse"])
                .contains("does not exist"),
            "step {step}: a reverse workflow was left behind"
        );
        more_writes(&ledger, 20).await;
        wait_caught_up(&c, "move1");
    }
    c.ok(&["workflow", "switch-traffic", "move1"]);
    more_writes(&ledger, 30).await;
    wait_caught_up(&c, "move1_reverse");

    for step in 1..=9 {
        let out = run_failing(&c, "reverse-traffic", step);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "reverse step {step}: succeeded");
        assert!(
            err.contains(&format!("failure injected after step {step}")),
            "reverse step {step}: {err}"
        );
        assert_eq!(show_json(&c, "move1")["state"], "switched_primaries");
        assert_eq!(
            rules_target(&c, "customer").as_deref(),
            Some("customer.customer"),
            "reverse step {step}"
        );
        more_writes(&ledger, 20).await;
        wait_caught_up(&c, "move1_reverse");
    }
    c.ok(&["workflow", "reverse-traffic", "move1"]);
    more_writes(&ledger, 30).await;

    stop.store(true, Ordering::Relaxed);
    writer.await.expect("writer");
    let failures = ledger.failures.lock().unwrap().clone();
    assert!(failures.is_empty(), "statements failed: {failures:?}");
    // Serving from the source again: every acknowledged write is there,
    // and the targets follow it.
    assert_acked_on(&c, "commerce", &ledger).await;
    wait_caught_up(&c, "move1");
    let deadline = Instant::now() + Duration::from_secs(30);
    while customers(&c, "customer").await != customers(&c, "commerce").await {
        assert!(
            Instant::now() < deadline,
            "targets never matched the source"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
