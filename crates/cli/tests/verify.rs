//! `keyshift workflow verify-data` (VDiff) end to end on real managed
//! mariadbd, with a real writer changing the source while it runs: no false
//! positives, every injected difference reported exactly, and an operator's
//! stop/resume plus a kill -9 mid-compare that end in the same report as an
//! uninterrupted run.

mod common;

use common::{Cluster, conn_for};
use keyshift_types::KeyRange;
use mysql_async::prelude::*;
use serde_json::Value as J;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// The customer shard whose range holds `customer_id`'s hash.
fn shard_of(customer_id: i64) -> &'static str {
    let ksid = keyshift_vindex::Hash::hash_u64(customer_id as u64);
    if KeyRange::parse("-80").expect("range").contains(&ksid) {
        "-80"
    } else {
        "80-"
    }
}

fn other(shard: &str) -> &'static str {
    if shard == "-80" { "80-" } else { "-80" }
}

/// Rows `from..from+n` in customer (with a JSON-free email) and corder.
async fn load(c: &Cluster, from: i64, n: i64) {
    let mut src = conn_for(c, "commerce", "0").await;
    for chunk in (from..from + n).collect::<Vec<_>>().chunks(500) {
        let cust: Vec<String> = chunk
            .iter()
            .map(|i| format!("({i}, 'user{i}@x.com')"))
            .collect();
        let ord: Vec<String> = chunk
            .iter()
            .map(|i| format!("({i}, {i}, 'SKU-{i}', {})", i % 97))
            .collect();
        src.query_drop(format!(
            "INSERT INTO customer (customer_id, email) VALUES {}",
            cust.join(",")
        ))
        .await
        .expect("insert customer");
        src.query_drop(format!(
            "INSERT INTO corder (order_id, customer_id, sku, price) VALUES {}",
            ord.join(",")
        ))
        .await
        .expect("insert corder");
    }
    src.disconnect().await.ok();
}

fn create(c: &Cluster) {
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
        "customer,corder",
        "--copy-batch-rows",
        "2000",
    ]);
    wait_caught_up(c);
}

fn wait_caught_up(c: &Cluster) {
    c.ok(&[
        "workflow",
        "show",
        "move1",
        "--wait-for",
        "running",
        "--caught-up",
        "--timeout",
        "120s",
    ]);
}

/// A writer on the source that never touches keys below `keep_below`:
/// updates of existing rows in `[keep_below, update_upto)`, and (unless
/// `update_only`) inserts and deletes of its own rows from 1,000,000 up.
struct Writer {
    stop: Arc<AtomicBool>,
    writes: Arc<AtomicU64>,
    handle: tokio::task::JoinHandle<()>,
}

impl Writer {
    async fn start(c: &Cluster, keep_below: i64, update_upto: i64, update_only: bool) -> Writer {
        let mut conn = conn_for(c, "commerce", "0").await;
        let stop = Arc::new(AtomicBool::new(false));
        let writes = Arc::new(AtomicU64::new(0));
        let (s, w) = (stop.clone(), writes.clone());
        let handle = tokio::spawn(async move {
            let mut i: i64 = 0;
            while !s.load(Ordering::SeqCst) {
                i += 1;
                let id = keep_below + (i * 7919) % (update_upto - keep_below);
                conn.query_drop(format!(
                    "UPDATE customer SET email = 'w{i}@x.com' WHERE customer_id = {id}"
                ))
                .await
                .expect("writer update");
                conn.query_drop(format!(
                    "UPDATE corder SET price = price + 1 WHERE order_id = {id}"
                ))
                .await
                .expect("writer update");
                if !update_only {
                    let new = 1_000_000 + i;
                    conn.query_drop(format!(
                        "INSERT INTO customer (customer_id, email) VALUES ({new}, 'n{i}@x.com')"
                    ))
                    .await
                    .expect("writer insert");
                    if i % 3 == 0 {
                        conn.query_drop(format!(
                            "DELETE FROM customer WHERE customer_id = {}",
                            new - 1
                        ))
                        .await
                        .expect("writer delete");
                    }
                }
                w.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
            conn.disconnect().await.ok();
        });
        Writer {
            stop,
            writes,
            handle,
        }
    }

    fn writes(&self) -> u64 {
        self.writes.load(Ordering::SeqCst)
    }

    async fn stop(self) -> u64 {
        self.stop.store(true, Ordering::SeqCst);
        self.handle.await.expect("writer");
        self.writes.load(Ordering::SeqCst)
    }
}

/// Runs `verify-data` with `args`, returns (exit code, the JSON report).
fn verify(c: &Cluster, args: &[&str]) -> (Option<i32>, J) {
    let mut all = vec![
        "workflow",
        "verify-data",
        "move1",
        "--wait",
        "--format",
        "json",
    ];
    all.extend(args);
    let out = c.run(&all);
    let j: J = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "verify-data printed no JSON ({e}):\nstdout:\n{}\nstderr:\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code(), j)
}

fn table<'a>(report: &'a J, name: &str) -> &'a J {
    report["tables"]
        .as_array()
        .expect("tables")
        .iter()
        .find(|t| t["name"] == name)
        .unwrap_or_else(|| panic!("no table {name} in {report}"))
}

fn n(t: &J, field: &str) -> u64 {
    t[field]
        .as_u64()
        .unwrap_or_else(|| panic!("{field} in {t}"))
}

/// The workflow record says nobody holds its streams any more.
fn assert_unpaused(c: &Cluster) {
    let j: J = serde_json::from_str(&c.ok(&["workflow", "show", "move1", "--format", "json"]))
        .expect("json");
    assert!(j.get("paused").is_none_or(|p| p.is_null()), "{j}");
    assert_eq!(j["state"], "running", "{j}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_workflow_under_writes_reports_no_differences_repeatedly() {
    let c = Cluster::example();
    c.ok(&["up", "--detach"]);
    c.ok(&["demo"]);
    load(&c, 100, 3000).await;
    create(&c);
    let writer = Writer::start(&c, 100, 3100, false).await;
    for run in 0..3 {
        let before = writer.writes();
        // Row by row once; then by checksummed key ranges (the default).
        let args: &[&str] = if run == 0 {
            &["--batch-rows", "250", "--row-level"]
        } else {
            &["--batch-rows", "250", "--chunk-rows", "700"]
        };
        let (code, j) = verify(&c, args);
        assert_eq!(code, Some(0), "run {run}: {j}");
        assert_eq!(j["state"], "completed", "{j}");
        assert_eq!(j["has_mismatch"], false, "run {run}: {j}");
        for name in ["customer", "corder"] {
            let t = table(&j, name);
            assert_eq!(t["state"], "done");
            // The demo's 5 rows plus ours, and the writer's inserts.
            assert!(n(t, "rows_compared") >= 3000, "{t}");
            assert_eq!(n(t, "matching"), n(t, "rows_compared"), "{t}");
            for f in [
                "missing_on_target",
                "extra_on_target",
                "mismatched",
                "misplaced",
            ] {
                assert_eq!(n(t, f), 0, "run {run}: {f} in {t}");
            }
            assert!(t["samples"].as_array().is_some_and(|s| s.is_empty()), "{t}");
        }
        assert!(
            writer.writes() > before,
            "the writer must have written during run {run}"
        );
        assert_eq!(j["rounds"].as_array().map(|r| r.len()), Some(1), "{j}");
        assert_unpaused(&c);
    }
    let show = c.ok(&["workflow", "verify-data", "show", "move1"]);
    assert!(show.contains("no differences"), "{show}");
    assert!(
        show.contains("customer") && show.contains("corder"),
        "{show}"
    );
    // The streams still replicate after three pauses.
    let writes = writer.stop().await;
    assert!(writes > 0);
    wait_caught_up(&c);
    let (code, j) = verify(&c, &["--tables", "customer"]);
    assert_eq!(code, Some(0), "{j}");
    assert_eq!(j["tables"].as_array().map(|t| t.len()), Some(1), "{j}");
}

/// Differences made directly on the target shards, on keys below 1000,
/// which the writer never touches.
struct Injected {
    deleted: i64,
    changed: i64,
    extra: i64,
    moved: i64,
    copied: i64,
}

async fn inject(c: &Cluster) -> Injected {
    let inj = Injected {
        deleted: 150,
        changed: 160,
        extra: 9_000_000,
        moved: 170,
        copied: 180,
    };
    let mut shard = BTreeMap::new();
    for s in ["-80", "80-"] {
        shard.insert(s, conn_for(c, "customer", s).await);
    }
    let on = |id: i64| shard_of(id);
    shard
        .get_mut(on(inj.deleted))
        .expect("conn")
        .query_drop(format!(
            "DELETE FROM customer WHERE customer_id = {}",
            inj.deleted
        ))
        .await
        .expect("delete");
    shard
        .get_mut(on(inj.changed))
        .expect("conn")
        .query_drop(format!(
            "UPDATE customer SET email = 'tampered' WHERE customer_id = {}",
            inj.changed
        ))
        .await
        .expect("update");
    shard
        .get_mut(on(inj.extra))
        .expect("conn")
        .query_drop(format!(
            "INSERT INTO customer (customer_id, email) VALUES ({}, 'ghost')",
            inj.extra
        ))
        .await
        .expect("insert");
    // Moved: gone from its shard, present on the other one.
    shard
        .get_mut(on(inj.moved))
        .expect("conn")
        .query_drop(format!(
            "DELETE FROM customer WHERE customer_id = {}",
            inj.moved
        ))
        .await
        .expect("delete");
    for (id, email) in [(inj.moved, "user170@x.com"), (inj.copied, "user180@x.com")] {
        shard
            .get_mut(other(on(id)))
            .expect("conn")
            .query_drop(format!(
                "INSERT INTO customer (customer_id, email) VALUES ({id}, '{email}')"
            ))
            .await
            .expect("insert on the wrong shard");
    }
    for (_, conn) in shard {
        conn.disconnect().await.ok();
    }
    inj
}

/// (kind, key) of every sample of a table.
fn samples(t: &J) -> BTreeSet<(String, String)> {
    t["samples"]
        .as_array()
        .expect("samples")
        .iter()
        .map(|s| {
            (
                s["kind"].as_str().unwrap_or_default().to_string(),
                s["key"][0].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn differences_injected_on_the_targets_are_each_reported_exactly() {
    let c = Cluster::example();
    c.ok(&["up", "--detach"]);
    c.ok(&["demo"]);
    load(&c, 100, 2000).await;
    create(&c);
    let writer = Writer::start(&c, 1000, 2100, false).await;
    let inj = inject(&c).await;
    let (code, j) = verify(&c, &["--batch-rows", "100", "--chunk-rows", "300"]);
    assert_eq!(code, Some(6), "differences exit with 6: {j}");
    // The same differences row by row.
    let (code, rows) = verify(&c, &["--row-level"]);
    assert_eq!(code, Some(6), "{rows}");
    // (The writer inserts meanwhile: only the differences must agree.)
    let diffs = |j: &J| {
        outcome(j)
            .into_iter()
            .map(|(t, counts, samples)| (t, counts[2..].to_vec(), samples))
            .collect::<Vec<_>>()
    };
    assert_eq!(diffs(&rows), diffs(&j), "{rows}\n{j}");
    assert_eq!(j["has_mismatch"], true);
    let t = table(&j, "customer");
    assert_eq!(n(t, "missing_on_target"), 1, "{t}");
    assert_eq!(n(t, "mismatched"), 1, "{t}");
    assert_eq!(n(t, "extra_on_target"), 1, "{t}");
    assert_eq!(n(t, "misplaced"), 2, "{t}");
    // Every other key matches: compared = matching + the four keys that
    // do not (the copied one matches on its own shard).
    assert_eq!(n(t, "rows_compared"), n(t, "matching") + 4, "{t}");
    let want: BTreeSet<(String, String)> = [
        ("missing_on_target", inj.deleted),
        ("mismatched", inj.changed),
        ("extra_on_target", inj.extra),
        ("misplaced", inj.moved),
        ("misplaced", inj.copied),
    ]
    .iter()
    .map(|(k, id)| (k.to_string(), id.to_string()))
    .collect();
    assert_eq!(samples(t), want, "{t}");
    for s in t["samples"].as_array().expect("samples") {
        match s["kind"].as_str() {
            Some("mismatched") => {
                assert_eq!(
                    s["columns"],
                    serde_json::json!([{"column": "email", "source": "user160@x.com", "target": "tampered"}]),
                    "{s}"
                );
                assert_eq!(s["shard"], shard_of(inj.changed));
            }
            Some("misplaced") => {
                let id: i64 = s["key"][0]
                    .as_str()
                    .and_then(|k| k.parse().ok())
                    .expect("key");
                assert_eq!(s["shard"], other(shard_of(id)), "{s}");
            }
            Some("extra_on_target") => assert_eq!(s["shard"], shard_of(inj.extra)),
            _ => {}
        }
    }
    let o = table(&j, "corder");
    assert_eq!(n(o, "matching"), n(o, "rows_compared"), "{o}");
    assert!(n(o, "rows_compared") >= 2000, "{o}");
    assert!(writer.writes() > 0);
    // The human report says so too, with exit code 6.
    let out = c.run(&["workflow", "verify-data", "show", "move1"]);
    assert_eq!(out.status.code(), Some(6));
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("DIFFERENCES FOUND"), "{text}");
    assert!(
        text.contains("tampered") && text.contains("customer_id=150"),
        "{text}"
    );
    assert_unpaused(&c);
    writer.stop().await;

    // Wrong states: stopping a finished VDiff, and verifying a stopped
    // workflow is allowed while one in error is not offered.
    let out = c.run(&["workflow", "verify-data", "stop", "move1"]);
    assert_eq!(out.status.code(), Some(3), "{out:?}");
    let out = c.run(&["workflow", "verify-data", "nosuch"]);
    assert_eq!(out.status.code(), Some(4), "{out:?}");
    let out = c.run(&["workflow", "verify-data", "move1", "--tables", "product"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let j: J = serde_json::from_str(&c.ok(&["workflow", "show", "move1", "--format", "json"]))
        .expect("json");
    assert!(
        j["allowed_actions"]
            .as_array()
            .is_some_and(|a| a.contains(&J::from("verify-data"))),
        "{j}"
    );
}

/// One table's counters and sample (kind, key) pairs.
type TableOutcome = (String, Vec<u64>, BTreeSet<(String, String)>);

/// The comparable part of a report: per table counters and samples.
fn outcome(j: &J) -> Vec<TableOutcome> {
    j["tables"]
        .as_array()
        .expect("tables")
        .iter()
        .map(|t| {
            (
                t["name"].as_str().unwrap_or_default().to_string(),
                [
                    "rows_compared",
                    "matching",
                    "missing_on_target",
                    "extra_on_target",
                    "mismatched",
                    "misplaced",
                ]
                .iter()
                .map(|f| n(t, f))
                .collect(),
                samples(t),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_resume_and_kill_9_during_a_vdiff_end_in_the_same_report() {
    let c = Cluster::example();
    c.ok(&["up", "--detach"]);
    c.ok(&["demo"]);
    load(&c, 100, 8000).await;
    create(&c);
    inject(&c).await;
    // Updates only, so that an uninterrupted run later sees the same keys.
    let writer = Writer::start(&c, 1000, 8100, true).await;
    c.ok(&[
        "workflow",
        "verify-data",
        "move1",
        "--batch-rows",
        "200",
        "--chunk-rows",
        "400",
        "--max-rows-per-second",
        "2500",
    ]);
    let topo = c.topo().await;
    let show = || async {
        keyshift_vdiff::show(topo.as_ref(), "move1")
            .await
            .expect("show")
            .expect("record")
    };
    // First the operator's stop, mid-way through the first table: the
    // streams are released, progress is kept and does not move.
    let deadline = Instant::now() + Duration::from_secs(60);
    while show()
        .await
        .tables
        .first()
        .is_none_or(|t| t.rows_compared < 400)
    {
        assert!(Instant::now() < deadline, "the VDiff never got going");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c.ok(&["workflow", "verify-data", "stop", "move1"]);
    let deadline = Instant::now() + Duration::from_secs(30);
    let stopped = loop {
        let rec = show().await;
        if rec.state == keyshift_vdiff::VdiffState::Stopped {
            break rec;
        }
        assert!(Instant::now() < deadline, "stop did not stop: {rec:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_unpaused(&c);
    let at_stop = stopped.tables[0].rows_compared;
    assert!(
        stopped.tables[0].state != keyshift_vdiff::TableState::Done && at_stop >= 400,
        "{stopped:?}"
    );
    c.ok(&["workflow", "verify-data", "resume", "move1"]);

    // Then, once the resumed comparison has moved on, kill keyshift.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let rec = keyshift_vdiff::show(topo.as_ref(), "move1")
            .await
            .expect("show")
            .expect("record");
        let first = &rec.tables[0];
        if first.rows_compared >= at_stop + 600 {
            assert!(
                first.state != keyshift_vdiff::TableState::Done,
                "the table finished before the kill; make it slower"
            );
            assert!(first.last_key.is_some());
            break;
        }
        assert!(
            rec.state.is_active() && Instant::now() < deadline,
            "the VDiff never got going: {rec:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    c.kill_node();
    let rec = keyshift_vdiff::show(topo.as_ref(), "move1")
        .await
        .expect("show")
        .expect("record");
    assert_eq!(rec.state, keyshift_vdiff::VdiffState::Running);
    let compared_at_kill = rec.tables[0].rows_compared;
    c.ok(&["up", "--detach"]);
    let out = c.run(&[
        "workflow",
        "verify-data",
        "show",
        "move1",
        "--wait",
        "--timeout",
        "120s",
        "--format",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(6), "{out:?}");
    let resumed: J = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(resumed["state"], "completed", "{resumed}");
    // Three rounds of snapshots: the first, after resume, after the restart.
    assert_eq!(
        resumed["rounds"].as_array().map(|r| r.len()),
        Some(3),
        "resumed on new snapshots: {resumed}"
    );
    assert!(n(&resumed["tables"][0], "rows_compared") > compared_at_kill);
    assert!(writer.writes() > 0);
    assert_unpaused(&c);

    // The same VDiff, uninterrupted.
    let (code, fresh) = verify(&c, &["--batch-rows", "1000"]);
    assert_eq!(code, Some(6));
    assert_eq!(fresh["rounds"].as_array().map(|r| r.len()), Some(1));
    writer.stop().await;
    assert_eq!(outcome(&resumed), outcome(&fresh), "{resumed}\n{fresh}");
    let t = table(&fresh, "customer");
    assert_eq!(
        (
            n(t, "missing_on_target"),
            n(t, "mismatched"),
            n(t, "extra_on_target"),
            n(t, "misplaced")
        ),
        (1, 1, 1, 2),
        "{t}"
    );
}
