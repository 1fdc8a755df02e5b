//! `keyshift workflow` end to end on real managed mariadbd: the headline
//! MoveTables (commerce → sharded customer) under writes made directly on the
//! source and through the gate, validation failures, state checks, stop and
//! start, and a kill -9 of keyshift during the copy.

use keyshift_cluster::ops;
use keyshift_types::KeyRange;
use mysql_async::prelude::*;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

/// A cluster file in its own temp dir; `down` on drop and, as a backstop,
/// SIGKILL of any process still using the temp dir, so a failing test leaves
/// nothing running.
struct Cluster {
    dir: tempfile::TempDir,
}

impl Cluster {
    fn new(body: &str) -> Cluster {
        let dir = tempfile::tempdir().expect("tempdir");
        std::fs::write(dir.path().join("keyshift.toml"), body).expect("write cluster file");
        Cluster { dir }
    }

    /// The repository's example, with ports that cannot collide.
    fn example() -> Cluster {
        let text = include_str!("../../../keyshift.toml")
            .replace("127.0.0.1:15306", "127.0.0.1:0")
            .replace("127.0.0.1:15000", "127.0.0.1:0");
        Cluster::new(&text)
    }

    fn file(&self) -> PathBuf {
        self.dir.path().join("keyshift.toml")
    }

    fn data_dir(&self) -> PathBuf {
        self.dir.path().join("keyshift-data")
    }

    fn run(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_keyshift"))
            .arg("--cluster")
            .arg(self.file())
            .args(args)
            .env_remove("KEYSHIFT_CLUSTER")
            .output()
            .expect("run keyshift")
    }

    /// Runs and requires success, returning stdout.
    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(
            out.status.success(),
            "keyshift {args:?} failed ({}):\nstdout:\n{}\nstderr:\n{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    async fn topo(&self) -> std::sync::Arc<dyn keyshift_topo::Topo> {
        let url = format!("file:{}", self.data_dir().join("topo.db").display());
        keyshift_topo::open(&url).await.expect("open topo")
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let _ = self.run(&["down", "--timeout", "30s"]);
        kill_processes_under(self.dir.path());
    }
}

/// SIGKILLs every process whose command line mentions `dir`.
fn kill_processes_under(dir: &Path) {
    let needle = dir.to_string_lossy().into_owned();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return;
    };
    for e in entries.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        if String::from_utf8_lossy(&cmdline).contains(&needle) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
}

type Rows = BTreeMap<i64, String>;

async fn conn_for(c: &Cluster, ks: &str, shard: &str) -> mysql_async::Conn {
    let topo = c.topo().await;
    let p = ops::shard_primaries(topo.as_ref(), ks)
        .await
        .expect("primaries");
    let t = p
        .into_iter()
        .find(|(s, _)| s.name == shard)
        .and_then(|(_, t)| t)
        .expect("primary");
    let opts =
        mysql_async::OptsBuilder::from_opts(t.endpoint().opts()).db_name(Some(t.database.clone()));
    mysql_async::Conn::new(opts).await.expect("connect")
}

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

fn show_json(c: &Cluster, name: &str) -> serde_json::Value {
    serde_json::from_str(&c.ok(&["workflow", "show", name, "--format", "json"])).expect("show json")
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
    c.ok(&[
        "workflow",
        "show",
        "move1",
        "--wait-for",
        "running",
        "--caught-up",
        "--timeout",
        "60s",
    ]);
    converge(&c, Duration::from_secs(30)).await;

    let j = show_json(&c, "move1");
    assert_eq!(j["state"], "running");
    assert_eq!(j["allowed_actions"], serde_json::json!(["stop"]));
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
    c.ok(&[
        "workflow",
        "show",
        "move1",
        "--wait-for",
        "running",
        "--caught-up",
        "--timeout",
        "60s",
    ]);
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
    let node: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(c.data_dir().join("keyshift.ready")).expect("ready file"),
    )
    .expect("json");
    let pid = node["pid"].as_i64().expect("pid") as i32;
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill -9");
    while Path::new(&format!("/proc/{pid}")).exists() {
        std::thread::sleep(Duration::from_millis(20));
    }
    // Writes while keyshift is down.
    load(&c, 50_000, 100).await;
    c.ok(&["up", "--detach"]);
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
    converge(&c, Duration::from_secs(30)).await;
}

/// The pid of the mariadbd serving a tablet (its datadir is in its command line).
fn mariadbd_pid(c: &Cluster, alias: &str) -> i32 {
    for e in std::fs::read_dir("/proc").expect("proc").flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(cmd) = std::fs::read(e.path().join("cmdline")) else {
            continue;
        };
        let cmd = String::from_utf8_lossy(&cmd);
        if cmd.contains("mariadbd")
            && cmd.contains(&*c.dir.path().to_string_lossy())
            && cmd.contains(alias)
        {
            return pid;
        }
    }
    panic!("no mariadbd for {alias}");
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
    let pid = mariadbd_pid(&c, "0000000200");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill -9");
    load(&c, 5000, 100).await;
    let out = c.run(&[
        "workflow",
        "show",
        "move1",
        "--wait-for",
        "error",
        "--timeout",
        "60s",
        "--format",
        "json",
    ]);
    let j: serde_json::Value = serde_json::from_slice(&out.stdout).expect("json");
    assert_eq!(j["state"], "error", "{j}");
    let reason = j["error"].as_str().unwrap_or_default().to_string();
    assert!(
        reason.contains("-80"),
        "the reason names the stream: {reason}"
    );
    assert_eq!(j["allowed_actions"], serde_json::json!(["retry", "stop"]));
    // The node restarts the dead server; retry then completes.
    let topo = c.topo().await;
    keyshift_cluster::demo::wait_for_primaries(topo.as_ref(), "customer", Duration::from_secs(60))
        .await
        .expect("target back");
    load(&c, 6000, 50).await;
    c.ok(&["workflow", "retry", "move1"]);
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
    converge(&c, Duration::from_secs(30)).await;
}
