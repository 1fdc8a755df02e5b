//! Importing from an external server (issue 8), end to end: a `mariadbd`
//! keyshift does not manage, with its own data and an application writing
//! to it, imported into a sharded keyspace while the writes go on; verify,
//! switch replicas, switch primaries, switch back, switch, complete. At the
//! end every row of the external server equals keyshift's, no acknowledged
//! write is lost, and the stored credentials are gone. A second test feeds
//! the checks a badly set-up server and wants each problem with its fix.

mod common;

use common::{Cluster, conn_for, show_json};
use keyshift_cluster::model::keys;
use keyshift_cluster::ops;
use mysql_async::prelude::*;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

const GATE_USER: &str = "app";
const GATE_PASSWORD: &str = "app-password";
/// Distinctive, so the test can look for it in logs.
const IMPORT_PASSWORD: &str = "Imp0rt-s3cret-XYZ";

fn cluster(shards: &str) -> Cluster {
    Cluster::new(&format!(
        r#"
data_dir = "keyshift-data"
[gate]
listen = "127.0.0.1:0"
[[gate.user]]
name = "{GATE_USER}"
password = "{GATE_PASSWORD}"
[api]
listen = "127.0.0.1:0"
[[keyspace]]
name = "customer"
{shards}
"#
    ))
}

fn gate_opts(c: &Cluster) -> mysql_async::Opts {
    mysql_async::OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(c.gate_port())
        .user(Some(GATE_USER))
        .pass(Some(GATE_PASSWORD))
        .db_name(Some("customer"))
        .prefer_socket(false)
        .into()
}

fn external_opts(ext: &keyshift_testkit::TestMysqld) -> mysql_async::Opts {
    mysql_async::OptsBuilder::from_opts(ext.endpoint().opts())
        .db_name(Some("shop"))
        .into()
}

/// The external server with the application's schema and data, and a user
/// for keyshift with what an import needs.
async fn external_shop(rows: i64) -> keyshift_testkit::TestMysqld {
    // binlog_row_metadata is left at the server default (no column names in
    // the binlog), as on most servers keyshift will meet.
    let ext = keyshift_testkit::TestMysqld::start_with(|c| {
        c.extra_args.push("--binlog-row-metadata=NO_LOG".into());
        c.server_id = 77;
    })
    .await
    .expect("external server");
    let mut conn = ext.conn().await.expect("admin conn");
    for sql in [
        "CREATE DATABASE shop",
        "CREATE TABLE shop.customer (customer_id BIGINT NOT NULL PRIMARY KEY, email VARCHAR(128), KEY (email)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
        "CREATE TABLE shop.corder (order_id BIGINT NOT NULL PRIMARY KEY, customer_id BIGINT NOT NULL, sku VARCHAR(32), price DECIMAL(10,2)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4",
        "CREATE VIEW shop.big_orders AS SELECT * FROM shop.corder WHERE price > 100",
        "CREATE USER 'importer'@'127.0.0.1' IDENTIFIED BY 'Imp0rt-s3cret-XYZ'",
        "GRANT SELECT, INSERT, UPDATE, DELETE, TRIGGER ON shop.* TO 'importer'@'127.0.0.1'",
        "GRANT ALL PRIVILEGES ON `_keyshift`.* TO 'importer'@'127.0.0.1'",
        "GRANT RELOAD, REPLICATION SLAVE, BINLOG MONITOR ON *.* TO 'importer'@'127.0.0.1'",
    ] {
        conn.query_drop(sql).await.expect(sql);
    }
    let values: Vec<String> = (1..=rows)
        .map(|i| format!("({i}, 'seed{i}@shop')"))
        .collect();
    conn.query_drop(format!(
        "INSERT INTO shop.customer VALUES {}",
        values.join(",")
    ))
    .await
    .expect("seed customers");
    let orders: Vec<String> = (1..=rows)
        .map(|i| format!("({i}, {i}, 'SKU-{i}', {}.50)", i % 200))
        .collect();
    conn.query_drop(format!(
        "INSERT INTO shop.corder VALUES {}",
        orders.join(",")
    ))
    .await
    .expect("seed orders");
    conn.disconnect().await.ok();
    ext
}

fn from_url(ext: &keyshift_testkit::TestMysqld) -> String {
    format!("mysql://importer@127.0.0.1:{}/shop", ext.port())
}

/// Every acknowledged write, and every failed statement.
#[derive(Default)]
struct Ledger {
    acked: Mutex<BTreeMap<i64, String>>,
    failures: Mutex<Vec<String>>,
    writes: AtomicU64,
}

/// The application: inserts (autocommit and in transactions with an
/// order) and updates of its own earlier rows, against `opts` until `stop`.
async fn writer(
    opts: mysql_async::Opts,
    task: i64,
    start_at: i64,
    ledger: Arc<Ledger>,
    stop: Arc<AtomicBool>,
) -> i64 {
    let mut conn = mysql_async::Conn::new(opts).await.expect("writer connects");
    let mut i = start_at;
    while !stop.load(Ordering::Relaxed) {
        // An application's pace, not a flood: at most ~100 writes a second
        // per writer, so lag measures keyshift, not an unbounded backlog.
        tokio::time::sleep(Duration::from_millis(10)).await;
        i += 1;
        let id = 1_000_000 * (task + 1) + i;
        let email = format!("w{task}-{i}");
        let r: Result<(), mysql_async::Error> = async {
            match i % 3 {
                0 => {
                    conn.exec_drop("INSERT INTO customer (customer_id, email) VALUES (?, ?)", (id, &email))
                        .await
                }
                1 => {
                    conn.query_drop("BEGIN").await?;
                    conn.exec_drop("INSERT INTO customer (customer_id, email) VALUES (?, ?)", (id, &email))
                        .await?;
                    conn.exec_drop("INSERT INTO corder (order_id, customer_id, sku, price) VALUES (?, ?, 'SKU-W', 9.99)", (id, id))
                        .await?;
                    conn.query_drop("COMMIT").await
                }
                _ => {
                    conn.exec_drop("INSERT INTO customer (customer_id, email) VALUES (?, ?)", (id, &email))
                        .await?;
                    conn.exec_drop(
                        "UPDATE customer SET email = ? WHERE customer_id = ?",
                        (format!("{email}-upd"), id - 1),
                    )
                    .await
                }
            }
        }
        .await;
        match r {
            Ok(()) => {
                let mut acked = ledger.acked.lock().unwrap();
                acked.insert(id, email.clone());
                if i % 3 == 2 && acked.contains_key(&(id - 1)) {
                    acked.insert(id - 1, format!("{email}-upd"));
                }
                ledger.writes.fetch_add(1, Ordering::Relaxed);
            }
            Err(e) => {
                ledger
                    .failures
                    .lock()
                    .unwrap()
                    .push(format!("task {task} write {i}: {e}"));
                let _ = conn.query_drop("ROLLBACK").await;
            }
        }
    }
    conn.disconnect().await.ok();
    i
}

/// A set of writers that can be stopped and restarted elsewhere (the
/// application moving from the external server to the gate).
struct Writers {
    ledger: Arc<Ledger>,
    stop: Arc<AtomicBool>,
    tasks: Vec<tokio::task::JoinHandle<i64>>,
    next: Vec<i64>,
}

impl Writers {
    fn new() -> Writers {
        Writers {
            ledger: Arc::new(Ledger::default()),
            stop: Arc::new(AtomicBool::new(false)),
            tasks: Vec::new(),
            next: vec![0, 0],
        }
    }

    fn start(&mut self, opts: &mysql_async::Opts) {
        self.stop = Arc::new(AtomicBool::new(false));
        for task in 0..2 {
            self.tasks.push(tokio::spawn(writer(
                opts.clone(),
                task as i64,
                self.next[task],
                self.ledger.clone(),
                self.stop.clone(),
            )));
        }
    }

    async fn stop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for (task, h) in self.tasks.drain(..).enumerate() {
            self.next[task] = h.await.expect("writer task");
        }
    }

    async fn more(&self, n: u64) {
        let start = self.ledger.writes.load(Ordering::Relaxed);
        let deadline = Instant::now() + Duration::from_secs(60);
        while self.ledger.writes.load(Ordering::Relaxed) < start + n {
            if Instant::now() >= deadline {
                let f = self
                    .ledger
                    .failures
                    .lock()
                    .map(|f| f.clone())
                    .unwrap_or_default();
                panic!(
                    "writers stalled; {} failures: {:?}",
                    f.len(),
                    &f[..f.len().min(5)]
                );
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    fn assert_no_failures(&self) {
        let f = self.ledger.failures.lock().unwrap();
        assert!(
            f.is_empty(),
            "{} failed statements: {:?}",
            f.len(),
            &f[..f.len().min(5)]
        );
    }
}

impl Drop for Writers {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
    }
}

type Rows = BTreeMap<String, Vec<String>>;

/// Every row of `table` through `conn`, keyed by its primary key, as text.
async fn rows_of(conn: &mut mysql_async::Conn, table: &str, out: &mut Rows) {
    let sql = format!("SELECT * FROM {table}");
    let rows: Vec<mysql_async::Row> = conn.query(&sql).await.expect(&sql);
    for row in rows {
        let cols: Vec<String> = (0..row.len())
            .map(|i| match row.as_ref(i) {
                Some(mysql_async::Value::NULL) | None => "NULL".into(),
                Some(mysql_async::Value::Bytes(b)) => String::from_utf8_lossy(b).into_owned(),
                Some(v) => v.as_sql(true),
            })
            .collect();
        let key = cols[0].clone();
        assert!(
            out.insert(key.clone(), cols).is_none(),
            "{table}: key {key} twice"
        );
    }
}

async fn keyshift_rows(c: &Cluster, table: &str) -> Rows {
    let topo = c.topo().await;
    let mut out = Rows::new();
    for s in ops::list_shards(topo.as_ref(), "customer")
        .await
        .expect("shards")
    {
        let mut conn = conn_for(c, "customer", &s.name).await;
        rows_of(&mut conn, table, &mut out).await;
        conn.disconnect().await.ok();
    }
    out
}

async fn external_rows(ext: &keyshift_testkit::TestMysqld, table: &str) -> Rows {
    let mut conn = mysql_async::Conn::new(external_opts(ext))
        .await
        .expect("external conn");
    let mut out = Rows::new();
    rows_of(&mut conn, table, &mut out).await;
    conn.disconnect().await.ok();
    out
}

fn assert_same(what: &str, a: &Rows, b: &Rows) {
    let diff: Vec<String> = a
        .iter()
        .filter(|(k, v)| b.get(*k) != Some(v))
        .map(|(k, v)| format!("{k}: {v:?} vs {:?}", b.get(k)))
        .chain(
            b.keys()
                .filter(|k| !a.contains_key(*k))
                .map(|k| format!("{k}: extra")),
        )
        .collect();
    assert!(
        diff.is_empty(),
        "{what}: {} rows differ of {}/{}: {:?}",
        diff.len(),
        a.len(),
        b.len(),
        &diff[..diff.len().min(10)]
    );
}

/// Every acknowledged write is in `rows` (customer table).
fn assert_acked(what: &str, ledger: &Ledger, rows: &Rows) {
    let acked = ledger.acked.lock().unwrap();
    let missing: Vec<String> = acked
        .iter()
        .filter(|(id, email)| {
            rows.get(&id.to_string())
                .is_none_or(|r| r.get(1) != Some(*email))
        })
        .map(|(id, e)| format!("{id}: acked {e:?}, found {:?}", rows.get(&id.to_string())))
        .collect();
    assert!(
        missing.is_empty(),
        "{what}: {} of {} acknowledged writes missing: {:?}",
        missing.len(),
        acked.len(),
        &missing[..missing.len().min(10)]
    );
}

fn wait_caught_up(c: &Cluster, name: &str) {
    let out = c.run(&[
        "workflow",
        "show",
        name,
        "--wait-for",
        "running",
        "--caught-up",
        "--timeout",
        "180s",
    ]);
    if !out.status.success() {
        let log = std::fs::read_to_string(c.data_dir().join("keyshift.log")).unwrap_or_default();
        let tail: Vec<&str> = log.lines().rev().take(60).collect();
        panic!(
            "{name} did not catch up: {}\n{:#}\nlog tail:\n{}",
            text(&out),
            show_json(c, name),
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        );
    }
}

fn import_cmd(c: &Cluster, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_keyshift"))
        .arg("--cluster")
        .arg(c.file())
        .args(args)
        .env_remove("KEYSHIFT_CLUSTER")
        .env("KEYSHIFT_IMPORT_PASSWORD", IMPORT_PASSWORD)
        .output()
        .expect("run keyshift")
}

fn text(o: &std::process::Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_under_writes_switches_back_and_forth_and_loses_nothing() {
    let ext = external_shop(500).await;
    let c = cluster(r#"shards = ["-80", "80-"]"#);
    c.ok(&["up", "--detach"]);
    let vschema = serde_json::json!({
        "sharded": true,
        "vindexes": {"hash": {"type": "hash"}},
        "tables": {
            "customer": {"column_vindexes": [{"column": "customer_id", "name": "hash"}]},
            "corder": {"column_vindexes": [{"column": "customer_id", "name": "hash"}]}
        }
    });

    // The application writes to its own server while the import starts.
    let mut w = Writers::new();
    w.start(&external_opts(&ext));
    w.more(50).await;

    let out = import_cmd(
        &c,
        &[
            "import",
            "create",
            "--from",
            &from_url(&ext),
            "--target-keyspace",
            "customer",
            "--target-vschema",
            &vschema.to_string(),
            "--all-tables",
            "--copy-batch-rows",
            "200",
        ],
    );
    let said = text(&out);
    assert!(out.status.success(), "import create failed:\n{said}");
    assert!(said.contains("created import import_shop"), "{said}");
    // The view is listed as not imported, and the notice is given.
    assert!(
        said.contains("[views]") && said.contains("big_orders"),
        "{said}"
    );
    assert!(said.contains("must write through the gate"), "{said}");
    let wf = show_json(&c, "import_shop");
    assert_eq!(wf["type"], "import", "{wf}");
    assert_eq!(wf["source_keyspace"], "ext_shop", "{wf}");
    wait_caught_up(&c, "import_shop");

    // The application moves to the gate (still served by the external
    // server through the routing rules), then the data is verified.
    w.stop().await;
    w.start(&gate_opts(&c));
    w.more(50).await;
    // Exit 0 of --wait means no differences (6 would mean some).
    c.ok(&["workflow", "verify-data", "import_shop", "--wait"]);

    // Reads first, then primaries; the notice comes before the switch.
    c.ok(&[
        "workflow",
        "switch-traffic",
        "import_shop",
        "--replicas-only",
    ]);
    assert_eq!(show_json(&c, "import_shop")["state"], "switched_replicas");
    let out = c.run(&["workflow", "switch-traffic", "import_shop"]);
    let said = text(&out);
    assert!(
        out.status.success(),
        "switch failed:\n{said}\n{:#}",
        show_json(&c, "import_shop")
    );
    assert!(said.contains("must write through the gate"), "{said}");
    assert_eq!(show_json(&c, "import_shop")["state"], "switched_primaries");
    w.more(100).await;

    // Keyshift is primary; the reverse workflow feeds the external server.
    wait_caught_up(&c, "import_shop_reverse");
    c.ok(&["workflow", "reverse-traffic", "import_shop"]);
    assert_eq!(show_json(&c, "import_shop")["state"], "running");
    w.more(100).await;
    // Everything acknowledged so far, including what was written while
    // keyshift was primary, is on the external server.
    w.stop().await;
    assert_acked(
        "external after switching back",
        &w.ledger,
        &external_rows(&ext, "customer").await,
    );
    w.start(&gate_opts(&c));
    w.more(50).await;

    c.ok(&["workflow", "switch-traffic", "import_shop"]);
    w.more(100).await;
    w.stop().await;
    w.assert_no_failures();
    wait_caught_up(&c, "import_shop_reverse");

    // Before complete: both sides equal, row by row.
    for t in ["customer", "corder"] {
        assert_same(
            t,
            &external_rows(&ext, t).await,
            &keyshift_rows(&c, t).await,
        );
    }
    let out = c.ok(&["workflow", "complete", "import_shop"]);
    assert!(out.contains("completed"), "{out}");

    // After: every acknowledged write is served by keyshift, the external
    // server kept its tables, and its registration (credentials) is gone.
    let served = keyshift_rows(&c, "customer").await;
    assert_acked("keyshift after complete", &w.ledger, &served);
    assert_same(
        "customer after complete",
        &external_rows(&ext, "customer").await,
        &served,
    );
    let topo = c.topo().await;
    assert!(
        topo.list(&keys::keyspace_dir("ext_shop"))
            .await
            .expect("list")
            .is_empty(),
        "the external keyspace is still registered"
    );
    let tablets = ops::list_tablets(topo.as_ref()).await.expect("tablets");
    assert!(
        tablets
            .iter()
            .all(|t| t.keyspace != "ext_shop" && t.password != IMPORT_PASSWORD),
        "the external server's credentials are still stored"
    );
    // Reads and writes through the gate go on without the external server.
    let mut g = mysql_async::Conn::new(gate_opts(&c)).await.expect("gate");
    let n: Option<i64> = g
        .query_first("SELECT COUNT(*) FROM customer")
        .await
        .expect("count through the gate");
    assert_eq!(n, Some(served.len() as i64));
    g.disconnect().await.ok();

    // The password never reached a log.
    let log = std::fs::read_to_string(c.data_dir().join("keyshift.log")).unwrap_or_default();
    assert!(!log.is_empty(), "no node log");
    assert!(
        !log.contains(IMPORT_PASSWORD),
        "the import password is in the node log"
    );
    c.ok(&["down"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn import_checks_list_every_problem_with_its_fix_and_create_nothing() {
    let ext = external_shop(10).await;
    let mut conn = ext.conn().await.expect("admin");
    for sql in [
        "SET GLOBAL binlog_format = 'STATEMENT'",
        "SET GLOBAL binlog_row_image = 'MINIMAL'",
        "SET GLOBAL gtid_strict_mode = OFF",
        "SET GLOBAL binlog_expire_logs_seconds = 86400",
        "CREATE TABLE shop.nokey (a INT, b INT) ENGINE=InnoDB",
        "CREATE TABLE shop.legacy (id INT PRIMARY KEY) ENGINE=MyISAM",
        "CREATE TRIGGER shop.audit BEFORE INSERT ON shop.corder FOR EACH ROW SET NEW.sku = UPPER(NEW.sku)",
        "CREATE USER 'weak'@'127.0.0.1' IDENTIFIED BY 'Imp0rt-s3cret-XYZ'",
        "GRANT SELECT ON shop.* TO 'weak'@'127.0.0.1'",
    ] {
        conn.query_drop(sql).await.expect(sql);
    }
    conn.disconnect().await.ok();
    let no_binlog = keyshift_testkit::TestMysqld::start_with(|c| {
        c.extra_args.push("--skip-log-bin".into());
    })
    .await
    .expect("server without binlog");
    let mut conn = no_binlog.conn().await.expect("admin");
    for sql in [
        "CREATE DATABASE shop",
        "CREATE TABLE shop.t (id INT PRIMARY KEY, v INT)",
        "CREATE TRIGGER shop.audit BEFORE INSERT ON shop.t FOR EACH ROW SET NEW.v = 1",
        "CREATE USER 'importer'@'127.0.0.1' IDENTIFIED BY 'Imp0rt-s3cret-XYZ'",
        "GRANT ALL PRIVILEGES ON *.* TO 'importer'@'127.0.0.1'",
    ] {
        conn.query_drop(sql).await.expect(sql);
    }
    conn.disconnect().await.ok();

    let c = cluster("");
    c.ok(&["up", "--detach"]);
    let check = |url: &str| -> serde_json::Value {
        let out = import_cmd(
            &c,
            &[
                "import",
                "create",
                "--from",
                url,
                "--target-keyspace",
                "customer",
                "--all-tables",
                "--validate-only",
                "--format",
                "json",
            ],
        );
        assert_eq!(out.status.code(), Some(2), "{}", text(&out));
        let said = text(&out);
        assert!(
            !said.contains(IMPORT_PASSWORD),
            "the password was printed: {said}"
        );
        serde_json::from_slice(&out.stdout).unwrap_or_else(|e| panic!("findings json: {e}: {said}"))
    };
    let has = |r: &serde_json::Value, check: &str, problem: &str, fix: &str| {
        let found = r["findings"].as_array().into_iter().flatten().any(|f| {
            f["check"] == check
                && f["problem"].as_str().is_some_and(|p| p.contains(problem))
                && f["fix"].as_str().is_some_and(|x| x.contains(fix))
        });
        assert!(
            found,
            "no {check} finding about {problem:?} with fix {fix:?} in {r:#}"
        );
    };

    let weak = format!("mysql://weak@127.0.0.1:{}/shop", ext.port());
    let r = check(&weak);
    has(
        &r,
        "binlog",
        "binlog_format is STATEMENT",
        "binlog_format = 'ROW'",
    );
    has(
        &r,
        "binlog",
        "binlog_row_image is MINIMAL",
        "binlog_row_image = 'FULL'",
    );
    has(
        &r,
        "binlog",
        "gtid_strict_mode is off",
        "gtid_strict_mode = ON",
    );
    has(
        &r,
        "binlog_retention",
        "24.0 hours",
        "binlog_expire_logs_seconds = 172800",
    );
    has(
        &r,
        "privileges",
        "lacks REPLICATION SLAVE",
        "GRANT REPLICATION SLAVE",
    );
    has(
        &r,
        "privileges",
        "RELOAD or LOCK TABLES",
        "GRANT RELOAD ON *.* TO 'weak'@'127.0.0.1'",
    );
    has(
        &r,
        "privileges",
        "lacks INSERT, UPDATE, DELETE on `shop`",
        "GRANT INSERT, UPDATE, DELETE ON `shop`.*",
    );
    has(&r, "privileges", "on `_keyshift`", "ON `_keyshift`.*");
    has(
        &r,
        "primary_key",
        "`nokey` has no primary key",
        "ADD PRIMARY KEY",
    );
    has(
        &r,
        "engine",
        "`legacy` uses MyISAM",
        "ALTER TABLE `shop`.`legacy` ENGINE=InnoDB",
    );
    has(&r, "views", "big_orders", "CREATE VIEW");
    // Without the TRIGGER privilege the server hides triggers: said so.
    has(
        &r,
        "triggers",
        "cannot see triggers",
        "GRANT TRIGGER ON `shop`.*",
    );
    let severity = |check: &str| {
        r["findings"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|f| f["check"] == check)
            .map(|f| f["severity"].as_str().unwrap_or("error").to_string())
    };
    assert_eq!(severity("views").as_deref(), Some("warning"));
    assert_eq!(severity("binlog_retention").as_deref(), Some("warning"));

    let r = check(&format!(
        "mysql://importer@127.0.0.1:{}/shop",
        no_binlog.port()
    ));
    has(&r, "binlog", "binary log is off", "log_bin");
    has(
        &r,
        "triggers",
        "`audit` on `t` is not imported",
        "SHOW CREATE TRIGGER `shop`.`audit`",
    );

    let r = check(&format!("mysql://nobody@127.0.0.1:{}/shop", ext.port()));
    has(&r, "connection", "refused user `nobody`", "CREATE USER");
    let r = check(&format!(
        "mysql://importer@127.0.0.1:{}/shop",
        keyshift_testkit::free_port()
    ));
    has(
        &r,
        "connection",
        "cannot connect",
        "check the host and port",
    );
    let r = check("postgres://x@y/z");
    has(&r, "request", "mysql://", "--from mysql://");

    // Without --validate-only a failed import creates nothing.
    let out = import_cmd(
        &c,
        &[
            "import",
            "create",
            "--from",
            &weak,
            "--target-keyspace",
            "customer",
            "--all-tables",
        ],
    );
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("fix: GRANT RELOAD"), "{}", text(&out));
    let topo = c.topo().await;
    assert!(
        topo.list(&keys::keyspace_dir("ext_shop"))
            .await
            .expect("list")
            .is_empty()
    );
    assert!(topo.list(keys::WORKFLOWS).await.expect("list").is_empty());
    c.ok(&["down"]);
}

/// A throwaway CA and a server certificate for 127.0.0.1, made with the
/// `openssl` command line tool into `dir`.
fn make_certs(dir: &std::path::Path, ca_name: &str) {
    let run = |args: &[&str]| {
        let out = std::process::Command::new("openssl")
            .args(args)
            .current_dir(dir)
            .output()
            .expect("run openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    let subj = format!("/CN={ca_name}");
    run(&[
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.pem",
        "-days", "2", "-subj", &subj,
    ]);
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    ]);
    std::fs::write(
        dir.join("san.ext"),
        "subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\nkeyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n",
    )
    .expect("write san.ext");
    run(&[
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "2",
        "-extfile",
        "san.ext",
    ]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_import_over_tls_verifies_the_server_and_refuses_plain_text() {
    let certs = tempfile::tempdir().expect("tempdir");
    make_certs(certs.path(), "keyshift-test-ca");
    let other = tempfile::tempdir().expect("tempdir");
    make_certs(other.path(), "some-other-ca");
    let p = |f: &str| certs.path().join(f).display().to_string();
    let (ca, cert, key) = (p("ca.pem"), p("server.pem"), p("server.key"));
    let ext = keyshift_testkit::TestMysqld::start_with(|c| {
        c.extra_args.push(format!("--ssl-ca={ca}"));
        c.extra_args.push(format!("--ssl-cert={cert}"));
        c.extra_args.push(format!("--ssl-key={key}"));
        c.server_id = 78;
    })
    .await
    .expect("external server with TLS");
    let mut admin = ext.conn().await.expect("admin");
    for sql in [
        "CREATE DATABASE shop",
        "CREATE TABLE shop.customer (customer_id BIGINT NOT NULL PRIMARY KEY, email VARCHAR(128)) ENGINE=InnoDB",
        "INSERT INTO shop.customer VALUES (1, 'a@x'), (2, 'b@x'), (3, 'c@x')",
        "CREATE USER 'importer'@'127.0.0.1' IDENTIFIED BY 'Imp0rt-s3cret-XYZ'",
        "GRANT SELECT, INSERT, UPDATE, DELETE, TRIGGER ON shop.* TO 'importer'@'127.0.0.1'",
        "GRANT ALL PRIVILEGES ON `_keyshift`.* TO 'importer'@'127.0.0.1'",
        "GRANT RELOAD, REPLICATION SLAVE, BINLOG MONITOR ON *.* TO 'importer'@'127.0.0.1'",
        // From here on only encrypted connections are accepted.
        "SET GLOBAL require_secure_transport = ON",
    ] {
        admin.query_drop(sql).await.expect(sql);
    }
    admin.disconnect().await.ok();

    let c = cluster("");
    c.ok(&["up", "--detach"]);
    let url = from_url(&ext);
    let create = |extra: &[&str]| {
        let mut args = vec![
            "import",
            "create",
            "--from",
            &url,
            "--target-keyspace",
            "customer",
            "--all-tables",
        ];
        args.extend_from_slice(extra);
        import_cmd(&c, &args)
    };

    // Plain text: refused by the server (MariaDB says "access denied",
    // MySQL "insecure transport"), and the fix names the TLS flags.
    let out = create(&["--validate-only"]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(
        text(&out).contains("[connection]") && text(&out).contains("--ssl-mode verify-identity"),
        "{}",
        text(&out)
    );
    // A CA that did not sign the server's certificate: refused by keyshift.
    let wrong_ca = other.path().join("ca.pem").display().to_string();
    let out = create(&[
        "--validate-only",
        "--ssl-mode",
        "verify-identity",
        "--ssl-ca",
        &wrong_ca,
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out));
    assert!(text(&out).contains("TLS with 127.0.0.1"), "{}", text(&out));

    // The right CA, full verification: copy, replication and VDiff all run
    // over TLS.
    let out = create(&["--ssl-mode", "verify-identity", "--ssl-ca", &ca]);
    assert!(out.status.success(), "{}", text(&out));
    let topo = c.topo().await;
    let tablet = ops::list_tablets(topo.as_ref())
        .await
        .expect("tablets")
        .into_iter()
        .find(|t| t.keyspace == "ext_shop")
        .expect("the external tablet");
    let tls = tablet.tls.expect("TLS settings stored");
    assert_eq!(tls.mode, keyshift_tablet::TlsMode::VerifyIdentity);
    let mut conn = mysql_async::Conn::new(external_opts_tls(&ext, &ca))
        .await
        .expect("importer over TLS");
    conn.query_drop("INSERT INTO customer VALUES (4, 'd@x')")
        .await
        .expect("write after the import started");
    conn.disconnect().await.ok();
    wait_caught_up(&c, "import_shop");
    c.ok(&["workflow", "verify-data", "import_shop", "--wait"]);
    // The gate does not speak TLS to backends: before the switch it refuses
    // to reach the external server rather than do so in plain text.
    let mut g = mysql_async::Conn::new(gate_opts(&c)).await.expect("gate");
    let err = g
        .query_drop("SELECT COUNT(*) FROM customer")
        .await
        .expect_err("the gate must not reach a TLS server in plain text");
    assert!(err.to_string().contains("TLS"), "{err}");
    g.disconnect().await.ok();
    let rows = keyshift_rows(&c, "customer").await;
    assert_eq!(rows.len(), 4, "{rows:?}");
    assert_eq!(rows["4"][1], "d@x");
    c.ok(&["workflow", "cancel", "import_shop"]);
    c.ok(&["down"]);
}

fn external_opts_tls(ext: &keyshift_testkit::TestMysqld, ca: &str) -> mysql_async::Opts {
    let ep = keyshift_tablet::Endpoint {
        user: "importer".into(),
        password: IMPORT_PASSWORD.into(),
        tls: Some(keyshift_tablet::TlsSpec {
            mode: keyshift_tablet::TlsMode::VerifyCa,
            ca_pem: Some(std::fs::read_to_string(ca).expect("ca")),
        }),
        ..ext.endpoint()
    };
    mysql_async::OptsBuilder::from_opts(ep.opts())
        .db_name(Some("shop"))
        .into()
}
