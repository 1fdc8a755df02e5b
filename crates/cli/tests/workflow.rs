//! `keyshift workflow` end to end on real managed mariadbd: the headline
//! MoveTables (commerce → sharded customer) under writes made directly on the
//! source and through the gate, validation failures, state checks, stop and
//! start, `--stop-after-copy`, and kill -9 of keyshift during the copy and
//! at seeded random points under writes.

mod common;

use common::{Cluster, conn_for, mariadbd_pid, show_json};
use keyshift_cluster::ops;
use keyshift_types::KeyRange;
use mysql_async::prelude::*;
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

type Rows = BTreeMap<i64, String>;

/// Every row of `table` as id → the rest, from one server.
async fn rows(conn: &mut mysql_async::Conn, table: &str) -> Rows {
    let sql = match table {
        "customer" => "SELECT customer_id, CONCAT_WS('|', customer_id, email) FROM customer",
        _ => "SELECT order_id, CONCAT_WS('|', customer_id, sku, price) FROM corder",
    };
    conn.query::<(i64, String), _>(sql)
        .await
        .expect("select")
        .into_iter()
        .collect()
}

/// Compares commerce with the union of the customer shards, row by row,
/// and checks each row sits on the shard its hash names. Ok(()) when equal.
async fn compare(c: &Cluster) -> Result<(), String> {
    let mut src = conn_for(c, "commerce", "0").await;
    for table in ["customer", "corder"] {
        let want = rows(&mut src, table).await;
        let mut got = Rows::new();
        for shard in ["-80", "80-"] {
            let mut t = conn_for(c, "customer", shard).await;
            let range = KeyRange::parse(shard).expect("range");
            let placed: Vec<(i64, i64)> = t
                .query(format!(
                    "SELECT {}, customer_id FROM {table}",
                    if table == "customer" {
                        "customer_id"
                    } else {
                        "order_id"
                    }
                ))
                .await
                .expect("select");
            for (id, cid) in placed {
                let ksid = keyshift_vindex::Hash::hash_u64(cid as u64);
                if !range.contains(&ksid) {
                    return Err(format!(
                        "{table} row {id} (customer {cid}) is on the wrong shard {shard}"
                    ));
                }
            }
            for (k, v) in rows(&mut t, table).await {
                if got.insert(k, v).is_some() {
                    return Err(format!("{table} row {k} is on two shards"));
                }
            }
            t.disconnect().await.ok();
        }
        if want != got {
            let missing: Vec<_> = want
                .keys()
                .filter(|k| !got.contains_key(k))
                .take(5)
                .collect();
            let extra: Vec<_> = got
                .keys()
                .filter(|k| !want.contains_key(k))
                .take(5)
                .collect();
            return Err(format!(
                "{table}: source {} rows, targets {} rows; missing {missing:?}, extra {extra:?}",
                want.len(),
                got.len()
            ));
        }
    }
    src.disconnect().await.ok();
    Ok(())
}

/// Waits until the targets equal the source (replication is asynchronous).
async fn converge(c: &Cluster, within: Duration) {
    let deadline = Instant::now() + within;
    loop {
        match compare(c).await {
            Ok(()) => return,
            Err(e) if Instant::now() > deadline => {
                let show = c.run(&["workflow", "show", "move1"]);
                panic!(
                    "targets never matched the source: {e}\n{}",
                    String::from_utf8_lossy(&show.stdout)
                );
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(300)).await,
        }
    }
}

fn gate_addr(c: &Cluster) -> (String, u16) {
    let node: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(c.data_dir().join("keyshift.ready")).expect("ready file"),
    )
    .expect("json");
    let addr = node["gate"].as_str().expect("gate address").to_string();
    let (h, p) = addr.rsplit_once(':').expect("host:port");
    (h.to_string(), p.parse().expect("port"))
}

/// Waits (bounded) until the workflow runs and its streams have caught up.
fn wait_caught_up(c: &Cluster, name: &str, timeout: &str) {
    c.ok(&[
        "workflow",
        "show",
        name,
        "--wait-for",
        "running",
        "--caught-up",
        "--timeout",
        timeout,
    ]);
}

/// Waits (bounded) for the workflow to reach `error`; returns its JSON.
fn wait_for_error(c: &Cluster, name: &str, timeout: &str) -> serde_json::Value {
    let out = c.run(&[
        "workflow",
        "show",
        name,
        "--wait-for",
        "error",
        "--timeout",
        timeout,
        "--format",
        "json",
    ]);
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(j["state"], "error", "{j}");
    j
}

const CREATE: &[&str] = &[
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
    "50",
    "--copy-cycle",
    "300ms",
];

async fn load(c: &Cluster, from: i64, n: i64) {
    let mut src = conn_for(c, "commerce", "0").await;
    for chunk in (from..from + n).collect::<Vec<_>>().chunks(200) {
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
        .expect("insert");
        src.query_drop(format!(
            "INSERT INTO corder (order_id, customer_id, sku, price) VALUES {}",
            ord.join(",")
        ))
        .await
        .expect("insert");
    }
    src.disconnect().await.ok();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn move_tables_copies_replicates_and_obeys_its_states() {
    let c = Cluster::example();
    c.ok(&["up", "--detach"]);
    c.ok(&["demo"]);
    load(&c, 100, 600).await;

    // Validation: everything at once, nothing created.
    let out = c.run(&[
        "workflow",
        "create",
        "--name",
        "bad",
        "--source-keyspace",
        "commerce",
        "--target-keyspace",
        "customer",
        "--tables",
        "customer,nosuch,product",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("nosuch") && err.contains("does not exist"),
        "{err}"
    );
    assert!(err.contains("product") && err.contains("VSchema"), "{err}");
    assert!(err.contains("fix:"), "{err}");
    assert!(!c.ok(&["workflow", "list"]).contains("bad"));

    // A secondary key: left out during the copy, added on every target
    // shard before the workflow says running.
    let mut src = conn_for(&c, "commerce", "0").await;
    src.query_drop("ALTER TABLE customer ADD KEY by_email (email)")
        .await
        .expect("add a secondary key on the source");
    src.disconnect().await.ok();

    c.ok(CREATE);
    let out = c.ok(&[
        "workflow",
        "show",
        "move1",
        "--wait-for",
        "running",
        "--timeout",
        "120s",
    ]);
    assert!(out.contains("running"), "{out}");
    for shard in ["-80", "80-"] {
        let mut t = conn_for(&c, "customer", shard).await;
        let mut keys: Vec<String> = t
            .query("SELECT DISTINCT index_name FROM information_schema.statistics WHERE table_schema = DATABASE() AND table_name = 'customer'")
            .await
            .expect("target keys");
        keys.sort();
        assert_eq!(keys, ["PRIMARY", "by_email"], "customer on {shard}");
        t.disconnect().await.ok();
    }
    let rules = c.ok(&["routing-rules", "get"]);
    assert!(
        rules.contains("customer.customer@replica") && rules.contains("commerce.corder"),
        "{rules}"
    );

    // Writes after the copy: directly on the source, and through the gate,
    // which the routing rules keep on the source.
    load(&c, 5000, 50).await;
    let (host, port) = gate_addr(&c);
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname(host)
        .tcp_port(port)
        .user(Some("app"))
        .pass(Some("app-password"));
    let mut gate = mysql_async::Conn::new(opts).await.expect("gate");
    gate.query_drop(
        "INSERT INTO customer.customer (customer_id, email) VALUES (9001, 'gate@x.com')",
    )
    .await
    .expect("insert through the gate");
    gate.query_drop("UPDATE customer SET email = 'moved@x.com' WHERE customer_id = 1")
        .await
        .expect("update through the gate");
    let mut src = conn_for(&c, "commerce", "0").await;
    let n: Option<i64> = src
        .query_first("SELECT COUNT(*) FROM customer WHERE customer_id = 9001")
        .await
        .expect("count");
    assert_eq!(n, Some(1), "the gate wrote to the source");
    src.query_drop("DELETE FROM corder WHERE order_id < 120")
        .await
        .expect("delete");
    src.query_drop(
        "UPDATE corder SET customer_id = customer_id + 7 WHERE order_id BETWEEN 200 AND 260",
    )
    .await
    .expect("move rows");
    wait_caught_up(&c, "move1", "60s");
    converge(&c, Duration::from_secs(30)).await;

    let j = show_json(&c, "move1");
    assert_eq!(j["state"], "running");
    assert_eq!(
        j["allowed_actions"],
        serde_json::json!(["stop", "verify-data", "switch-traffic", "cancel"])
    );
    assert!(
        j["table_progress"]
            .as_array()
            .unwrap()
            .iter()
            .all(|t| t["percent"] == 100.0),
        "{j}"
    );
    assert!(
        j["streams"]
            .as_array()
            .unwrap()
            .iter()
            .all(|s| s["position"].is_string()),
        "{j}"
    );

    // The wrong state lists what is allowed.
    let out = c.run(&["workflow", "start", "move1"]);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("allowed now: stop"),
        "{:?}",
        out
    );
    assert_eq!(
        c.run(&["workflow", "show", "nosuch"]).status.code(),
        Some(4)
    );

    // Stop, write, start: nothing lost.
    assert!(c.ok(&["workflow", "stop", "move1"]).contains("stopped"));
    load(&c, 7000, 20).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        compare(&c).await.is_err(),
        "a stopped workflow must not replicate"
    );
    c.ok(&["workflow", "start", "move1"]);
    wait_caught_up(&c, "move1", "60s");
    converge(&c, Duration::from_secs(30)).await;

    // A second workflow on the same tables is refused.
    let out = c.run(&[
        "workflow",
        "create",
        "--name",
        "again",
        "--source-keyspace",
        "commerce",
        "--target-keyspace",
        "customer",
        "--tables",
        "customer",
        "--validate-only",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("move1") && err.contains("already has rows"),
        "{err}"
    );
}

/// `--stop-after-copy`: the workflow copies, adds the deferred keys on
/// every shard, stops without replicating, and `start` replicates from
/// where the copy ended.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stop_after_copy_stops_with_keys_in_place_and_start_catches_up() {
    let c = Cluster::example();
    c.ok(&["up", "--detach"]);
    c.ok(&["demo"]);
    load(&c, 100, 1500).await;
    let mut src = conn_for(&c, "commerce", "0").await;
    src.query_drop("ALTER TABLE corder ADD KEY by_customer (customer_id), ADD KEY by_sku (sku)")
        .await
        .expect("add secondary keys on the source");
    src.disconnect().await.ok();

    let mut create = CREATE.to_vec();
    create.push("--stop-after-copy");
    c.ok(&create);
    let out = c.ok(&[
        "workflow",
        "show",
        "move1",
        "--wait-for",
        "stopped",
        "--timeout",
        "120s",
    ]);
    assert!(out.contains("stopped"), "{out}");
    let j = show_json(&c, "move1");
    assert_eq!(j["state"], "stopped", "{j}");
    assert_eq!(j["copy_done"], true, "{j}");
    for shard in ["-80", "80-"] {
        let said = format!("target shard {shard} copied; 2 deferred secondary key(s) added");
        assert!(
            j["events"].as_array().is_some_and(|e| e
                .iter()
                .any(|e| e["message"].as_str().is_some_and(|m| m.contains(&said)))),
            "no event `{said}`: {j}"
        );
    }
    compare(&c).await.expect("the copy equals the source");
    for shard in ["-80", "80-"] {
        let mut t = conn_for(&c, "customer", shard).await;
        let mut keys: Vec<String> = t
            .query("SELECT DISTINCT index_name FROM information_schema.statistics WHERE table_schema = DATABASE() AND table_name = 'corder'")
            .await
            .expect("target keys");
        keys.sort();
        assert_eq!(
            keys,
            ["PRIMARY", "by_customer", "by_sku"],
            "corder on {shard}"
        );
        t.disconnect().await.ok();
    }

    // Stopped means stopped: writes wait on the source.
    load(&c, 5000, 30).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(
        compare(&c).await.is_err(),
        "a workflow stopped after its copy must not replicate"
    );
    c.ok(&["workflow", "start", "move1"]);
    wait_caught_up(&c, "move1", "60s");
    converge(&c, Duration::from_secs(30)).await;
}

/// A small seeded generator (xorshift64*), so a failing kill schedule can
/// be replayed from its seed.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}

/// Writes on the source primary until `stop`: inserts, updates, deletes and
/// updates that move an order to another shard (its `customer_id` is the
/// vindex column), some in multi-statement transactions. Every statement
/// must succeed: the source never goes down in these tests.
async fn source_writer(
    mut src: mysql_async::Conn,
    seed: u64,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> u64 {
    let mut rng = Rng::new(seed);
    let mut next_id = 1_000_000 + seed as i64 * 100_000;
    let mut n = 0;
    while !stop.load(std::sync::atomic::Ordering::Relaxed) {
        let multi = rng.below(3) == 0;
        if multi {
            src.query_drop("BEGIN").await.expect("begin");
        }
        for _ in 0..if multi { 2 + rng.below(2) } else { 1 } {
            let id = 100 + rng.below(5000) as i64;
            let sql = match rng.below(6) {
                0 => {
                    next_id += 1;
                    format!(
                        "INSERT INTO customer (customer_id, email) VALUES ({next_id}, 'new{next_id}@x.com'); \
                         INSERT INTO corder (order_id, customer_id, sku, price) VALUES ({next_id}, {next_id}, 'SKU-new', 1)"
                    )
                }
                1 => format!(
                    "UPDATE customer SET email = CONCAT(email, '+') WHERE customer_id = {id}"
                ),
                2 => format!(
                    "UPDATE corder SET customer_id = {} WHERE order_id = {id}",
                    100 + rng.below(5000)
                ),
                3 => format!("UPDATE corder SET price = price + 1 WHERE order_id = {id}"),
                4 => format!("DELETE FROM corder WHERE order_id = {id}"),
                _ => format!("DELETE FROM customer WHERE customer_id = {id}"),
            };
            src.query_drop(&sql).await.expect("source write");
            n += 1;
        }
        if multi {
            src.query_drop("COMMIT").await.expect("commit");
        }
        tokio::time::sleep(Duration::from_millis(3)).await;
    }
    src.disconnect().await.ok();
    n
}

/// `kill -9` of keyshift at seeded random points during the copy and during
/// replication, while a writer keeps changing the source; after each seed's
/// last restart and catch-up every target row equals the source.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_at_random_points_under_writes_loses_nothing() {
    let c = Cluster::example();
    c.ok(&["up", "--detach"]);
    c.ok(&["demo"]);
    load(&c, 100, 5000).await;
    let mut phases = Vec::new();
    for seed in 1..=3u64 {
        let mut rng = Rng::new(seed);
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let writer = tokio::spawn(source_writer(
            conn_for(&c, "commerce", "0").await,
            seed,
            stop.clone(),
        ));
        // A name per seed: a cancelled workflow's record stays.
        let name = format!("kill{seed}");
        let mut args = CREATE.to_vec();
        args[3] = &name;
        let at = args.len() - 3;
        args[at] = "20";
        // Streams that come back out of step copy alone, both tables at
        // once: kills also land in the middle of parallel table copies.
        args.extend(["--copy-parallel-tables", "2"]);
        c.ok(&args);
        // Kills at random points until the copy is over, then one while
        // replicating.
        loop {
            let wait = Duration::from_millis(100 + rng.below(1500));
            tokio::time::sleep(wait).await;
            let state = show_json(&c, &name)["state"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            c.kill_node();
            phases.push(format!("seed {seed} after {wait:?}: {state}"));
            c.ok(&["up", "--detach"]);
            if state == "running" {
                break;
            }
            if phases.len() > 40 {
                panic!("the copy never finished between kills: {phases:?}");
            }
        }
        stop.store(true, std::sync::atomic::Ordering::Relaxed);
        let writes = writer.await.expect("writer");
        assert!(
            writes > 20,
            "seed {seed}: the writer made only {writes} writes"
        );
        wait_caught_up(&c, &name, "120s");
        converge(&c, Duration::from_secs(30)).await;
        // Start over for the next seed: cancel removes the target tables
        // and the routing rules.
        c.ok(&["workflow", "cancel", &name]);
    }
    assert!(
        phases.iter().any(|p| p.ends_with("copying"))
            && phases.iter().any(|p| p.ends_with("running")),
        "kills must land in both phases: {phases:?}"
    );
    eprintln!("kill schedule: {phases:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_during_the_copy_resumes_and_loses_nothing() {
    let c = Cluster::example();
    c.ok(&["up", "--detach"]);
    c.ok(&["demo"]);
    load(&c, 100, 20_000).await;
    let mut args = CREATE.to_vec();
    let at = args.len() - 3;
    args[at] = "10";
    c.ok(&args);
    // Wait until the copy has started, then kill keyshift mid-copy.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let j = show_json(&c, "move1");
        let copied: u64 = j["table_progress"].as_array().map_or(0, |a| {
            a.iter()
                .map(|t| t["rows_copied"].as_u64().unwrap_or(0))
                .sum()
        });
        if copied > 0 {
            assert_ne!(
                j["state"], "running",
                "the copy finished before the kill; make it slower"
            );
            break;
        }
        assert!(Instant::now() < deadline, "the copy never started: {j}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    c.kill_node();
    // Writes while keyshift is down.
    load(&c, 50_000, 100).await;
    c.ok(&["up", "--detach"]);
    wait_caught_up(&c, "move1", "120s");
    converge(&c, Duration::from_secs(30)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_target_puts_the_workflow_in_error_and_retry_completes() {
    let c = Cluster::example();
    c.ok(&["up", "--detach"]);
    c.ok(&["demo"]);
    load(&c, 100, 300).await;
    let mut args = CREATE.to_vec();
    args.extend(["--max-retries", "0"]);
    c.ok(&args);
    wait_caught_up(&c, "move1", "120s");
    let pid = mariadbd_pid(&c, "0000000200");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill -9");
    load(&c, 5000, 100).await;
    let j = wait_for_error(&c, "move1", "60s");
    let reason = j["error"].as_str().unwrap_or_default().to_string();
    assert!(
        reason.contains("-80"),
        "the reason names the stream: {reason}"
    );
    assert_eq!(
        j["allowed_actions"],
        serde_json::json!(["retry", "stop", "cancel"])
    );
    // The node restarts the dead server; retry then completes.
    let topo = c.topo().await;
    keyshift_cluster::demo::wait_for_primaries(topo.as_ref(), "customer", Duration::from_secs(60))
        .await
        .expect("target back");
    load(&c, 6000, 50).await;
    c.ok(&["workflow", "retry", "move1"]);
    wait_caught_up(&c, "move1", "120s");
    converge(&c, Duration::from_secs(30)).await;
}

/// The tables of one tablet's database, sorted.
async fn table_names(c: &Cluster, ks: &str, shard: &str) -> Vec<String> {
    let mut conn = conn_for(c, ks, shard).await;
    let mut names: Vec<String> = conn
        .query("SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE()")
        .await
        .expect("tables");
    conn.disconnect().await.ok();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn validation_reports_no_key_target_rows_and_statement_binlogs_and_creates_nothing() {
    let c = Cluster::example();
    c.ok(&["up", "--detach"]);
    c.ok(&["demo"]);
    let mut src = conn_for(&c, "commerce", "0").await;
    // No primary key, and its only unique key has a NULLable column.
    src.query_drop("CREATE TABLE nokey (a BIGINT, b VARCHAR(20), UNIQUE KEY (a)) ENGINE=InnoDB")
        .await
        .expect("create nokey");
    src.query_drop("INSERT INTO nokey VALUES (1, 'x')")
        .await
        .expect("insert");
    // A target table that already has rows.
    let mut tgt = conn_for(&c, "customer", "80-").await;
    tgt.query_drop(
        "CREATE TABLE corder (order_id BIGINT NOT NULL, customer_id BIGINT, sku VARCHAR(128), \
         price BIGINT, PRIMARY KEY (order_id)) ENGINE=InnoDB",
    )
    .await
    .expect("create target corder");
    tgt.query_drop("INSERT INTO corder VALUES (77, 1, 'SKU-77', 1)")
        .await
        .expect("insert");
    // A source logging statements; validation connects afresh, so the
    // global value is what it reads.
    src.query_drop("SET GLOBAL binlog_format = 'STATEMENT'")
        .await
        .expect("statement binlogs");

    let before: Vec<Vec<String>> = vec![
        table_names(&c, "customer", "-80").await,
        table_names(&c, "customer", "80-").await,
    ];
    let rules_before = c.ok(&["routing-rules", "get"]);
    let args = [
        "workflow",
        "create",
        "--name",
        "bad",
        "--source-keyspace",
        "commerce",
        "--target-keyspace",
        "customer",
        "--tables",
        "customer,corder,nokey",
    ];
    for validate_only in [true, false] {
        let mut a = args.to_vec();
        if validate_only {
            a.push("--validate-only");
        }
        let out = c.run(&a);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{a:?}: {err}");
        let line = |check: &str| {
            let lines: Vec<&str> = err.lines().collect();
            let i = lines
                .iter()
                .position(|l| l.contains(&format!("[{check}]")))
                .unwrap_or_else(|| panic!("no {check} finding in:\n{err}"));
            (
                lines[i].to_string(),
                lines.get(i + 1).unwrap_or(&"").to_string(),
            )
        };
        let (pk, pk_fix) = line("primary_key");
        assert!(
            pk.contains("nokey") && pk.contains("no primary key"),
            "{err}"
        );
        assert!(
            pk_fix.contains("fix:") && pk_fix.contains("ADD PRIMARY KEY"),
            "{err}"
        );
        let (rows, rows_fix) = line("target_empty");
        assert!(
            rows.contains("corder") && rows.contains("already has rows") && rows.contains("80-"),
            "{err}"
        );
        assert!(
            rows_fix.contains("fix:") && rows_fix.contains("TRUNCATE TABLE `corder`"),
            "{err}"
        );
        let (binlog, binlog_fix) = line("binlog");
        assert!(
            binlog.contains("STATEMENT") && binlog.contains("ROW"),
            "{err}"
        );
        assert!(
            binlog_fix.contains("fix:") && binlog_fix.contains("binlog_format = 'ROW'"),
            "{err}"
        );
        // The good table is not blamed.
        assert!(!err.contains("] customer:"), "{err}");

        // Nothing created.
        assert_eq!(
            c.run(&["workflow", "show", "bad"]).status.code(),
            Some(4),
            "no workflow record"
        );
        assert!(!c.ok(&["workflow", "list"]).contains("bad"));
        assert_eq!(
            c.ok(&["routing-rules", "get"]),
            rules_before,
            "routing rules"
        );
        let after = vec![
            table_names(&c, "customer", "-80").await,
            table_names(&c, "customer", "80-").await,
        ];
        assert_eq!(after, before, "target tables");
    }

    // Fixing what the findings say makes the same request valid.
    src.query_drop("SET GLOBAL binlog_format = 'ROW'")
        .await
        .expect("restore ROW");
    src.query_drop("ALTER TABLE nokey MODIFY a BIGINT NOT NULL")
        .await
        .expect("not null");
    tgt.query_drop("TRUNCATE TABLE corder")
        .await
        .expect("truncate");
    let out = c.run(&[
        "workflow",
        "create",
        "--name",
        "bad",
        "--source-keyspace",
        "commerce",
        "--target-keyspace",
        "customer",
        "--tables",
        "customer,corder",
        "--validate-only",
    ]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    src.disconnect().await.ok();
    tgt.disconnect().await.ok();
}

/// Every row of customer and corder across a keyspace's shards, checking
/// each sits on the shard its hash names and on one shard only.
async fn keyspace_rows(c: &Cluster, ks: &str) -> Result<[Rows; 2], String> {
    let topo = c.topo().await;
    let shards = ops::shard_primaries(topo.as_ref(), ks)
        .await
        .map_err(|e| e.to_string())?;
    let mut out = [Rows::new(), Rows::new()];
    for (i, table) in ["customer", "corder"].into_iter().enumerate() {
        for (shard, _) in &shards {
            let mut t = conn_for(c, ks, &shard.name).await;
            let id = if table == "customer" {
                "customer_id"
            } else {
                "order_id"
            };
            let placed: Vec<(i64, i64)> = t
                .query(format!("SELECT {id}, customer_id FROM {table}"))
                .await
                .map_err(|e| format!("{ks}/{}: {e}", shard.name))?;
            for (id, cid) in placed {
                if !shard
                    .key_range
                    .contains(&keyshift_vindex::Hash::hash_u64(cid as u64))
                {
                    return Err(format!(
                        "{ks}: {table} row {id} (customer {cid}) is on the wrong shard {}",
                        shard.name
                    ));
                }
            }
            for (k, v) in rows(&mut t, table).await {
                if out[i].insert(k, v).is_some() {
                    return Err(format!("{ks}: {table} row {k} is on two shards"));
                }
            }
            t.disconnect().await.ok();
        }
    }
    Ok(out)
}

/// The shard of `ks` whose range holds customer `cid`.
async fn shard_of(c: &Cluster, ks: &str, cid: i64) -> String {
    let topo = c.topo().await;
    ops::shard_primaries(topo.as_ref(), ks)
        .await
        .expect("shards")
        .into_iter()
        .find(|(s, _)| {
            s.key_range
                .contains(&keyshift_vindex::Hash::hash_u64(cid as u64))
        })
        .expect("a shard")
        .0
        .name
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sharded_to_sharded_splits_two_shards_into_four() {
    let c = Cluster::example();
    c.ok(&["up", "--detach"]);
    c.ok(&["demo"]);
    load(&c, 100, 600).await;
    c.ok(CREATE);
    wait_caught_up(&c, "move1", "120s");
    converge(&c, Duration::from_secs(30)).await;
    // There is no `complete` yet: stop move1 and mark it completed in the
    // topo so its tables are free for the next workflow.
    c.ok(&["workflow", "stop", "move1"]);
    let topo = c.topo().await;
    let key = keyshift_cluster::model::keys::workflow("move1");
    let kv = topo.get(&key).await.expect("get").expect("move1 record");
    let mut w: serde_json::Value = serde_json::from_slice(&kv.value).expect("json");
    w["state"] = "completed".into();
    topo.put(
        &key,
        serde_json::to_vec(&w).expect("json"),
        keyshift_topo::Cond::ModRevision(kv.mod_revision),
    )
    .await
    .expect("mark completed");

    c.ok(&["keyspace", "create", "customer4", "--shard-count", "4"]);
    keyshift_cluster::demo::wait_for_primaries(topo.as_ref(), "customer4", Duration::from_secs(90))
        .await
        .expect("customer4 tablets up");
    c.ok(&[
        "vschema",
        "apply",
        "customer4",
        "--json",
        r#"{"sharded": true, "vindexes": {"hash": {"type": "hash"}},
            "tables": {"customer": {"column_vindexes": [{"column": "customer_id", "name": "hash"}]},
                       "corder": {"column_vindexes": [{"column": "customer_id", "name": "hash"}]}}}"#,
    ]);
    c.ok(&[
        "workflow",
        "create",
        "--name",
        "split4",
        "--source-keyspace",
        "customer",
        "--target-keyspace",
        "customer4",
        "--tables",
        "customer,corder",
        "--copy-batch-rows",
        "50",
    ]);
    let j = show_json(&c, "split4");
    let mut streams: Vec<(String, String)> = j["streams"]
        .as_array()
        .expect("streams")
        .iter()
        .map(|s| {
            (
                s["source_shard"].as_str().unwrap().to_string(),
                s["target_shard"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    streams.sort();
    let pairs = |v: &[(&str, &str)]| -> Vec<(String, String)> {
        v.iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect()
    };
    assert_eq!(
        streams,
        pairs(&[
            ("-80", "-40"),
            ("-80", "40-80"),
            ("80-", "80-c0"),
            ("80-", "c0-")
        ]),
        "each source shard streams to the target shards it overlaps"
    );
    wait_caught_up(&c, "split4", "120s");

    // Writes on the source shards after the copy: inserts, updates, deletes.
    for cid in [20_001i64, 20_002, 20_003, 20_004, 20_005, 20_006] {
        let shard = shard_of(&c, "customer", cid).await;
        let mut s = conn_for(&c, "customer", &shard).await;
        s.query_drop(format!(
            "INSERT INTO customer (customer_id, email) VALUES ({cid}, 'late{cid}@x.com')"
        ))
        .await
        .expect("insert");
        s.query_drop(format!(
            "INSERT INTO corder (order_id, customer_id, sku, price) VALUES ({cid}, {cid}, 'SKU-L', 5)"
        ))
        .await
        .expect("insert");
        s.disconnect().await.ok();
    }
    for shard in ["-80", "80-"] {
        let mut s = conn_for(&c, "customer", shard).await;
        s.query_drop("UPDATE customer SET email = CONCAT('u', email) WHERE customer_id % 5 = 0")
            .await
            .expect("update");
        s.query_drop("DELETE FROM corder WHERE order_id % 7 = 0")
            .await
            .expect("delete");
        s.disconnect().await.ok();
    }

    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let want = keyspace_rows(&c, "customer").await.expect("source rows");
        assert!(want[0].len() > 600 && want[1].len() > 500, "source loaded");
        let got = keyspace_rows(&c, "customer4").await;
        match got {
            Ok(g) if g == want => break,
            other => {
                if Instant::now() > deadline {
                    let diff = match other {
                        Ok(g) => format!(
                            "customer {} vs {}, corder {} vs {}",
                            want[0].len(),
                            g[0].len(),
                            want[1].len(),
                            g[1].len()
                        ),
                        Err(e) => e,
                    };
                    panic!(
                        "customer4 never matched customer: {diff}\n{}",
                        c.ok(&["workflow", "show", "split4"])
                    );
                }
                tokio::time::sleep(Duration::from_millis(300)).await;
            }
        }
    }
    // Every target shard got rows: the split really spread them.
    for shard in ["-40", "40-80", "80-c0", "c0-"] {
        let mut t = conn_for(&c, "customer4", shard).await;
        let n: Option<i64> = t
            .query_first("SELECT COUNT(*) FROM customer")
            .await
            .expect("count");
        assert!(n.unwrap_or(0) > 50, "customer4/{shard} has {n:?} customers");
        t.disconnect().await.ok();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_source_puts_the_workflow_in_error_and_retry_loses_nothing() {
    let c = Cluster::example();
    c.ok(&["up", "--detach"]);
    c.ok(&["demo"]);
    load(&c, 100, 300).await;
    let mut args = CREATE.to_vec();
    args.extend(["--max-retries", "0"]);
    c.ok(&args);
    wait_caught_up(&c, "move1", "120s");
    // Writes the streams are still applying when the source dies.
    load(&c, 5000, 400).await;
    let pid = mariadbd_pid(&c, "0000000100");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill -9");
    let j = wait_for_error(&c, "move1", "60s");
    let reason = j["error"].as_str().unwrap_or_default().to_string();
    assert!(
        reason.contains("commerce/0"),
        "the reason names the stream: {reason}"
    );
    assert_eq!(
        j["allowed_actions"],
        serde_json::json!(["retry", "stop", "cancel"])
    );
    // The node restarts the dead source; more writes; retry completes.
    let topo = c.topo().await;
    keyshift_cluster::demo::wait_for_primaries(topo.as_ref(), "commerce", Duration::from_secs(60))
        .await
        .expect("source back");
    assert_ne!(
        mariadbd_pid(&c, "0000000100"),
        pid,
        "the node restarted the source"
    );
    load(&c, 6000, 50).await;
    let mut src = conn_for(&c, "commerce", "0").await;
    src.query_drop(
        "UPDATE customer SET email = 'after@x.com' WHERE customer_id BETWEEN 5000 AND 5010",
    )
    .await
    .expect("update");
    src.query_drop("DELETE FROM corder WHERE order_id BETWEEN 5100 AND 5120")
        .await
        .expect("delete");
    src.disconnect().await.ok();
    c.ok(&["workflow", "retry", "move1"]);
    wait_caught_up(&c, "move1", "120s");
    converge(&c, Duration::from_secs(30)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_source_is_retried_automatically_and_loses_nothing() {
    let c = Cluster::example();
    c.ok(&["up", "--detach"]);
    c.ok(&["demo"]);
    load(&c, 100, 300).await;
    // The default retry budget (5 transient retries with backoff).
    c.ok(CREATE);
    wait_caught_up(&c, "move1", "120s");
    load(&c, 5000, 400).await;
    let pid = mariadbd_pid(&c, "0000000100");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill -9");
    let topo = c.topo().await;
    keyshift_cluster::demo::wait_for_primaries(topo.as_ref(), "commerce", Duration::from_secs(60))
        .await
        .expect("source back");
    assert_ne!(mariadbd_pid(&c, "0000000100"), pid, "the node restarted it");
    load(&c, 6000, 50).await;
    // No retry: the controller reconnects to the restarted source itself.
    wait_caught_up(&c, "move1", "120s");
    converge(&c, Duration::from_secs(60)).await;
    let j = show_json(&c, "move1");
    assert_eq!(j["state"], "running", "{j}");
    assert!(j["error"].is_null(), "{j}");
}
