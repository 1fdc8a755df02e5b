//! The executor against real shards: a cluster of real MariaDB servers
//! described in a topo (commerce unsharded with a sequence table, customer
//! sharded -80/80- by hash of customer_id), the gate started as the node
//! starts it, and real clients (mysql_async, the `mariadb` CLI, and the
//! gate's own backend client where status flags matter).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use keyshift_cluster::TabletRole;
use keyshift_cluster::ops::{self, ManagedDefaults, ShardSpec, TabletSpec};
use keyshift_gate::PoolConfig;
use keyshift_gate::backend::{BackendConfig, BackendConn};
use keyshift_gate::service::{self, GateOptions, GateService, GateStartError};
use keyshift_testkit::TestMysqld;
use keyshift_topo::Topo;
use mysql_async::prelude::*;
use mysql_async::{Conn, OptsBuilder};
use tokio_util::sync::CancellationToken;

const USER: &str = "app";
const PASS: &str = "secret";
const IN_TRANS: u16 = 0x0001;
const AUTOCOMMIT: u16 = 0x0002;

struct Cluster {
    topo: Arc<dyn Topo>,
    commerce: TestMysqld,
    /// customer shard -80
    lo: TestMysqld,
    /// customer shard 80-
    hi: TestMysqld,
    gate: GateService,
    cancel: CancellationToken,
    _dir: tempfile::TempDir,
}

async fn run(m: &TestMysqld, sql: &str) -> anyhow::Result<()> {
    let mut c = m.conn().await?;
    for stmt in sql.split(';').map(str::trim).filter(|s| !s.is_empty()) {
        c.query_drop(stmt).await?;
    }
    c.disconnect().await?;
    Ok(())
}

/// The shard of `customer` holding `id` under Vitess's hash vindex.
fn shard_of(id: i64) -> &'static str {
    let v = keyshift_vindex::new_vindex("hash", &BTreeMap::new()).expect("hash vindex");
    let ksid = v.map(&keyshift_vindex::Value::Int(id)).expect("map");
    if ksid.0[0] < 0x80 { "-80" } else { "80-" }
}

impl Cluster {
    async fn start() -> anyhow::Result<Cluster> {
        let (commerce, lo, hi) = tokio::try_join!(
            TestMysqld::start(),
            TestMysqld::start(),
            TestMysqld::start()
        )?;
        run(
            &commerce,
            "CREATE DATABASE commerce;
             CREATE TABLE commerce.product (sku VARCHAR(32) PRIMARY KEY, description VARCHAR(64), price INT);
             INSERT INTO commerce.product VALUES ('p1', 'commerce one', 10), ('p2', 'commerce two', 20);
             CREATE TABLE commerce.customer_seq (id INT, next_id BIGINT, cache BIGINT, PRIMARY KEY (id)) COMMENT 'vitess_sequence';
             INSERT INTO commerce.customer_seq VALUES (0, 1000, 3);
             CREATE DATABASE archive;
             CREATE TABLE archive.product (sku VARCHAR(32) PRIMARY KEY, description VARCHAR(64), price INT);
             INSERT INTO archive.product VALUES ('p1', 'archive one', 11)",
        )
        .await?;
        for m in [&lo, &hi] {
            run(
                m,
                "CREATE DATABASE customer;
                 CREATE TABLE customer.customer (customer_id BIGINT PRIMARY KEY, email VARCHAR(64), grp VARCHAR(8), balance INT) ENGINE=InnoDB",
            )
            .await?;
        }
        let topo = keyshift_topo::open("mem:").await?;
        let t = topo.as_ref();
        ops::create_keyspace(t, "commerce", &ShardSpec::Unsharded, None).await?;
        ops::create_keyspace(t, "archive", &ShardSpec::Unsharded, None).await?;
        ops::create_keyspace(
            t,
            "customer",
            &ShardSpec::Named(vec!["-80".into(), "80-".into()]),
            None,
        )
        .await?;
        let dir = tempfile::tempdir()?;
        let defaults = ManagedDefaults {
            cell: "test".into(),
            data_dir: dir.path().to_path_buf(),
        };
        for (ks, shard, m) in [
            ("commerce", "0", &commerce),
            ("archive", "0", &commerce),
            ("customer", "-80", &lo),
            ("customer", "80-", &hi),
        ] {
            let ep = m.endpoint();
            ops::add_tablet(
                t,
                &defaults,
                ks,
                shard,
                TabletRole::Primary,
                None,
                TabletSpec::External {
                    host: ep.host,
                    port: ep.port,
                    user: ep.user,
                    password: ep.password,
                    database: None,
                },
            )
            .await?;
        }
        ops::apply_vschema(
            t,
            "commerce",
            r#"{"tables": {"product": {}, "customer_seq": {"type": "sequence"}}}"#,
            false,
        )
        .await?;
        ops::apply_vschema(t, "archive", r#"{"tables": {"product": {}}}"#, false).await?;
        ops::apply_vschema(
            t,
            "customer",
            r#"{"sharded": true,
                "vindexes": {"hash": {"type": "hash"}},
                "tables": {"customer": {
                    "column_vindexes": [{"column": "customer_id", "name": "hash"}],
                    "auto_increment": {"column": "customer_id", "sequence": "customer_seq"}}}}"#,
            false,
        )
        .await?;
        ops::set_gate_users(t, &[(USER.to_string(), PASS.to_string())]).await?;
        let cancel = CancellationToken::new();
        let opts = GateOptions {
            pool: PoolConfig {
                max_size: 16,
                acquire_timeout: Duration::from_secs(2),
                ping_after_idle: Duration::from_millis(200),
            },
            connect_timeout: Duration::from_secs(1),
            backend_read_timeout: Duration::from_secs(3),
            ..GateOptions::default()
        };
        let gate =
            service::start(topo.clone(), "127.0.0.1:0".parse()?, opts, cancel.clone()).await?;
        Ok(Cluster {
            topo,
            commerce,
            lo,
            hi,
            gate,
            cancel,
            _dir: dir,
        })
    }

    fn opts(&self, db: Option<&str>) -> mysql_async::Opts {
        OptsBuilder::default()
            .ip_or_hostname("127.0.0.1")
            .tcp_port(self.gate.addr().port())
            .user(Some(USER))
            .pass(Some(PASS))
            .db_name(db)
            .prefer_socket(false)
            .into()
    }

    async fn client(&self, db: Option<&str>) -> anyhow::Result<Conn> {
        Ok(Conn::new(self.opts(db)).await?)
    }

    /// A client that shows the status flags of every answer.
    async fn raw(&self, db: Option<&str>) -> anyhow::Result<BackendConn> {
        let mut cfg = BackendConfig::new(self.gate.addr().to_string(), USER, PASS);
        cfg.db = db.map(str::to_string);
        Ok(BackendConn::connect(&cfg).await?)
    }

    fn shard(&self, name: &str) -> &TestMysqld {
        if name == "-80" { &self.lo } else { &self.hi }
    }

    /// Waits until the gate has applied everything written to the topo.
    async fn settle(&self) -> anyhow::Result<()> {
        let rev = self.topo.revision().await?;
        anyhow::ensure!(
            self.gate
                .wait_for_revision(rev, Duration::from_secs(5))
                .await,
            "gate did not apply topo revision {rev}"
        );
        Ok(())
    }
}

async fn direct_balance(m: &TestMysqld, id: i64) -> anyhow::Result<Option<i64>> {
    let mut c = m.conn().await?;
    let v: Option<Option<i64>> = c
        .exec_first(
            "SELECT balance FROM customer.customer WHERE customer_id = ?",
            (id,),
        )
        .await?;
    c.disconnect().await?;
    Ok(v.flatten())
}

fn code(e: &mysql_async::Error) -> u16 {
    match e {
        mysql_async::Error::Server(s) => s.code,
        _ => 0,
    }
}

fn mariadb_cli(port: u16, db: &str, sql: &str) -> std::process::Output {
    std::process::Command::new("mariadb")
        .args([
            "--no-defaults",
            "--protocol=TCP",
            "-h127.0.0.1",
            &format!("-P{port}"),
            &format!("-u{USER}"),
            &format!("-p{PASS}"),
            "-N",
            "-B",
            "-e",
            sql,
            db,
        ])
        .output()
        .expect("running the mariadb client")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routes_merges_and_runs_transactions_on_real_shards() -> anyhow::Result<()> {
    let cl = Cluster::start().await?;
    let mut c = cl.client(Some("customer")).await?;

    // a multi-row insert is split by keyspace id; each row lands on its shard only
    let rows: Vec<String> = (1..=8)
        .map(|i| format!("({i}, 'c{i}@x', 'g{}', {})", i % 3, i * 10))
        .collect();
    c.query_drop(format!(
        "INSERT INTO customer (customer_id, email, grp, balance) VALUES {}",
        rows.join(", ")
    ))
    .await?;
    assert_eq!(c.affected_rows(), 8);
    let shards: Vec<&str> = (1..=8).map(shard_of).collect();
    assert!(shards.contains(&"-80") && shards.contains(&"80-"));
    for id in 1..=8i64 {
        let home = shard_of(id);
        let other = if home == "-80" { "80-" } else { "-80" };
        assert_eq!(direct_balance(cl.shard(home), id).await?, Some(id * 10));
        assert_eq!(direct_balance(cl.shard(other), id).await?, None);
    }

    // point routing: a row only its own shard has answers through the gate
    run(
        cl.shard(shard_of(3)),
        "UPDATE customer.customer SET email = 'only-here' WHERE customer_id = 3",
    )
    .await?;
    let email: Option<String> = c
        .query_first("SELECT email FROM customer WHERE customer_id = 3")
        .await?;
    assert_eq!(email.as_deref(), Some("only-here"));

    // sequence ids: blocks of 3 from commerce.customer_seq, first id reported
    c.query_drop("INSERT INTO customer (email, grp, balance) VALUES ('s1', 'seq', 1), ('s2', 'seq', 2), ('s3', 'seq', 3), ('s4', 'seq', 4)")
        .await?;
    assert_eq!(c.affected_rows(), 4);
    assert_eq!(c.last_insert_id(), Some(1000));
    let lid: u64 = c
        .query_first("SELECT LAST_INSERT_ID()")
        .await?
        .expect("row");
    assert_eq!(lid, 1000);
    for (i, id) in (1000..1004i64).enumerate() {
        assert_eq!(
            direct_balance(cl.shard(shard_of(id)), id).await?,
            Some(i as i64 + 1),
            "id {id}"
        );
    }
    let mut cc = cl.commerce.conn().await?;
    let next: i64 = cc
        .query_first("SELECT next_id FROM commerce.customer_seq WHERE id = 0")
        .await?
        .expect("row");
    cc.disconnect().await?;
    assert_eq!(next, 1004, "one block, grown to the four ids asked for");
    // a new block of `cache` ids; its rest serves later inserts without
    // asking the table again
    c.query_drop("INSERT INTO customer (email, grp, balance) VALUES ('s5', 'seq', 5)")
        .await?;
    assert_eq!(c.last_insert_id(), Some(1004));

    // scatter: ORDER BY + LIMIT, aggregates, GROUP BY
    let top: Vec<(i64, String)> = c
        .query("SELECT customer_id, email FROM customer ORDER BY customer_id DESC LIMIT 3")
        .await?;
    assert_eq!(
        top.iter().map(|r| r.0).collect::<Vec<_>>(),
        vec![1004, 1003, 1002]
    );
    let (n, sum, min, max): (i64, i64, i64, i64) = c
        .query_first("SELECT COUNT(*), SUM(balance), MIN(balance), MAX(balance) FROM customer")
        .await?
        .expect("row");
    assert_eq!((n, sum, min, max), (13, 360 + 15, 1, 80));
    let groups: Vec<(String, i64, i64)> = c
        .query("SELECT grp, COUNT(*), SUM(balance) FROM customer GROUP BY grp ORDER BY grp")
        .await?;
    assert_eq!(
        groups,
        vec![
            ("g0".to_string(), 2, 30 + 60),
            ("g1".to_string(), 3, 10 + 40 + 70),
            ("g2".to_string(), 3, 20 + 50 + 80),
            ("seq".to_string(), 5, 15),
        ]
    );
    let in_list: Vec<i64> = c
        .query("SELECT customer_id FROM customer WHERE customer_id IN (1, 2, 3, 4) ORDER BY customer_id")
        .await?;
    assert_eq!(in_list, vec![1, 2, 3, 4]);

    // prepared statements: point select re-executed, scatter with a parameter,
    // insert taking a sequence id, the unsharded fast path
    let stmt = c
        .prep("SELECT balance FROM customer WHERE customer_id = ?")
        .await?;
    for id in 1..=8i64 {
        let b: Option<i64> = c.exec_first(&stmt, (id,)).await?;
        assert_eq!(b, Some(id * 10));
    }
    let n: i64 = c
        .exec_first("SELECT COUNT(*) FROM customer WHERE balance > ?", (40,))
        .await?
        .expect("row");
    assert_eq!(n, 4);
    let ordered: Vec<(i64, i64)> = c
        .exec(
            "SELECT customer_id, balance FROM customer WHERE balance >= ? ORDER BY balance DESC LIMIT 2",
            (10,),
        )
        .await?;
    assert_eq!(ordered, vec![(8, 80), (7, 70)]);
    c.exec_drop(
        "INSERT INTO customer (customer_id, email, grp, balance) VALUES (?, ?, ?, ?)",
        (None::<i64>, "prep", "p", 7),
    )
    .await?;
    assert_eq!(c.last_insert_id(), Some(1005));
    assert_eq!(
        direct_balance(cl.shard(shard_of(1005)), 1005).await?,
        Some(7)
    );
    let price: i64 = c
        .exec_first("SELECT price FROM commerce.product WHERE sku = ?", ("p2",))
        .await?
        .expect("row");
    assert_eq!(price, 20);
    let mut p = cl.client(Some("commerce")).await?;
    let upd = p
        .prep("UPDATE product SET price = price + ? WHERE sku = ?")
        .await?;
    for _ in 0..3 {
        p.exec_drop(&upd, (1, "p1")).await?;
        assert_eq!(p.affected_rows(), 1);
    }
    let price: i64 = p
        .exec_first("SELECT price FROM product WHERE sku = ?", ("p1",))
        .await?
        .expect("row");
    assert_eq!(price, 13);
    p.disconnect().await?;

    // a transaction over both shards: rollback really rolls back
    let (a, b) = (
        1i64,
        (2..=8).find(|&i| shard_of(i) != shard_of(1)).expect("id"),
    );
    let mut raw = cl.raw(Some("customer")).await?;
    let r = raw.query_rows("BEGIN").await?;
    assert_eq!(r.status & (IN_TRANS | AUTOCOMMIT), IN_TRANS | AUTOCOMMIT);
    raw.query_rows(&format!(
        "UPDATE customer SET balance = 999 WHERE customer_id = {a}"
    ))
    .await?;
    let r = raw
        .query_rows(&format!(
            "UPDATE customer SET balance = 999 WHERE customer_id = {b}"
        ))
        .await?;
    assert_eq!(r.status & IN_TRANS, IN_TRANS);
    let seen = raw
        .query_rows("SELECT COUNT(*) FROM customer WHERE balance = 999")
        .await?;
    assert_eq!(
        seen.rows[0][0],
        mysql_common::value::Value::Bytes(b"2".to_vec())
    );
    assert_eq!(
        direct_balance(cl.shard(shard_of(a)), a).await?,
        Some(a * 10)
    );
    let r = raw.query_rows("ROLLBACK").await?;
    assert_eq!(r.status & (IN_TRANS | AUTOCOMMIT), AUTOCOMMIT);
    assert_eq!(
        direct_balance(cl.shard(shard_of(a)), a).await?,
        Some(a * 10)
    );
    assert_eq!(
        direct_balance(cl.shard(shard_of(b)), b).await?,
        Some(b * 10)
    );
    // ... and commit commits on both
    raw.query_rows("BEGIN").await?;
    raw.query_rows(&format!(
        "UPDATE customer SET balance = balance + 1 WHERE customer_id IN ({a}, {b})"
    ))
    .await?;
    raw.query_rows("COMMIT").await?;
    assert_eq!(
        direct_balance(cl.shard(shard_of(a)), a).await?,
        Some(a * 10 + 1)
    );
    assert_eq!(
        direct_balance(cl.shard(shard_of(b)), b).await?,
        Some(b * 10 + 1)
    );

    // autocommit off: an implicit transaction, invisible until COMMIT
    let r = raw.query_rows("SET autocommit = 0").await?;
    assert_eq!(r.status & (IN_TRANS | AUTOCOMMIT), 0);
    let r = raw
        .query_rows(&format!(
            "UPDATE customer SET balance = 5 WHERE customer_id = {b}"
        ))
        .await?;
    assert_eq!(r.status & (IN_TRANS | AUTOCOMMIT), IN_TRANS);
    assert_eq!(
        direct_balance(cl.shard(shard_of(b)), b).await?,
        Some(b * 10 + 1)
    );
    let r = raw.query_rows("COMMIT").await?;
    assert_eq!(r.status & (IN_TRANS | AUTOCOMMIT), 0);
    assert_eq!(direct_balance(cl.shard(shard_of(b)), b).await?, Some(5));
    raw.query_rows(&format!(
        "UPDATE customer SET balance = 6 WHERE customer_id = {b}"
    ))
    .await?;
    raw.query_rows("ROLLBACK").await?;
    assert_eq!(direct_balance(cl.shard(shard_of(b)), b).await?, Some(5));
    let r = raw.query_rows("SET autocommit = 1").await?;
    assert_eq!(r.status & (IN_TRANS | AUTOCOMMIT), AUTOCOMMIT);

    // session SETs reach every shard connection, now and later
    raw.query_rows("SET @marker = 42").await?;
    let r = raw
        .query_rows(&format!(
            "SELECT @marker FROM customer WHERE customer_id = {a}"
        ))
        .await?;
    assert_eq!(
        r.rows[0][0],
        mysql_common::value::Value::Bytes(b"42".to_vec())
    );
    let r = raw
        .query_rows(&format!(
            "SELECT @marker FROM customer WHERE customer_id = {b}"
        ))
        .await?;
    assert_eq!(
        r.rows[0][0],
        mysql_common::value::Value::Bytes(b"42".to_vec())
    );
    raw.query_rows("SET NAMES latin1").await?;
    let r = raw
        .query_rows(&format!(
            "SELECT @@character_set_client FROM customer WHERE customer_id = {b}"
        ))
        .await?;
    assert_eq!(
        r.rows[0][0],
        mysql_common::value::Value::Bytes(b"latin1".to_vec())
    );

    // COM_RESET_CONNECTION forgets the session's settings
    c.query_drop("SET @marker = 7").await?;
    let m: Option<i64> = c
        .query_first("SELECT @marker FROM customer WHERE customer_id = 1")
        .await?
        .expect("row");
    assert_eq!(m, Some(7));
    c.reset().await?;
    c.query_drop("USE customer").await?;
    let m: Option<i64> = c
        .query_first("SELECT @marker FROM customer WHERE customer_id = 1")
        .await?
        .expect("row");
    assert_eq!(m, None);

    // @replica: no replicas here, so the primaries serve reads; writes refused
    let mut r = cl.client(Some("customer@replica")).await?;
    let n: i64 = r
        .query_first("SELECT COUNT(*) FROM customer")
        .await?
        .expect("row");
    assert_eq!(n, 14);
    let e = r
        .query_drop("UPDATE customer SET balance = 0 WHERE customer_id = 1")
        .await
        .expect_err("write on replica");
    assert_eq!(code(&e), 1105, "{e}");
    r.disconnect().await?;

    // USE, qualified tables, SHOW DATABASES, local answers
    let mut u = cl.client(None).await?;
    let n: i64 = u
        .query_first("SELECT COUNT(*) FROM customer.customer")
        .await?
        .expect("row");
    assert_eq!(n, 14);
    let db: Option<String> = u.query_first("SELECT DATABASE()").await?.expect("row");
    assert_eq!(db, None);
    u.query_drop("USE commerce").await?;
    let db: Option<String> = u.query_first("SELECT DATABASE()").await?.expect("row");
    assert_eq!(db.as_deref(), Some("commerce"));
    let d: String = u
        .query_first("SELECT description FROM product WHERE sku = 'p2'")
        .await?
        .expect("row");
    assert_eq!(d, "commerce two");
    let dbs: Vec<String> = u.query("SHOW DATABASES").await?;
    assert_eq!(dbs, vec!["archive", "commerce", "customer"]);
    let (v, comment): (String, String) = u
        .query_first("SELECT @@version, @@version_comment")
        .await?
        .expect("row");
    assert!(v.contains("MariaDB") && v.ends_with("-keyshift"), "{v}");
    assert_eq!(comment, "keyshift");
    let tables: Vec<String> = u.query("SHOW TABLES").await?;
    assert!(tables.contains(&"product".to_string()), "{tables:?}");

    // errors reach the client with MySQL's codes
    let e = u.query_drop("SELEC 1").await.expect_err("syntax");
    assert_eq!(code(&e), 1064, "{e}");
    let e = u
        .query_drop("SELECT * FROM customer.nosuch")
        .await
        .expect_err("no table");
    assert_eq!(code(&e), 1146, "{e}");
    let e = u.query_drop("USE nosuch").await.expect_err("no keyspace");
    assert_eq!(code(&e), 1049, "{e}");
    let e = u
        .query_drop("SELECT * FROM nosuch.t")
        .await
        .expect_err("no keyspace");
    assert_eq!(code(&e), 1049, "{e}");
    let e = u
        .query_drop("UPDATE customer.customer SET customer_id = 5 WHERE customer_id = 1")
        .await
        .expect_err("vindex change");
    assert_eq!(code(&e), 1105, "{e}");
    assert!(e.to_string().contains("customer"), "{e}");
    let e = Conn::new(cl.opts(Some("nosuch")))
        .await
        .expect_err("connect to unknown db");
    assert_eq!(code(&e), 1049, "{e}");
    let bad: mysql_async::Opts = OptsBuilder::from_opts(cl.opts(None))
        .pass(Some("wrong"))
        .into();
    let e = Conn::new(bad).await.expect_err("wrong password");
    assert_eq!(code(&e), 1045, "{e}");
    // the session survives all of them
    let one: i64 = u.query_first("SELECT 1").await?.expect("row");
    assert_eq!(one, 1);
    u.disconnect().await?;

    // the mariadb CLI
    let port = cl.gate.addr().port();
    let out = tokio::task::spawn_blocking(move || {
        mariadb_cli(
            port,
            "customer",
            "SELECT COUNT(*) FROM customer; SELECT @@version_comment; SELECT email FROM customer WHERE customer_id = 3",
        )
    })
    .await?;
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "14\nkeyshift\nonly-here\n"
    );

    // a client that disconnects mid-transaction: its row locks go away
    let mut d = cl.client(Some("customer")).await?;
    d.query_drop("BEGIN").await?;
    d.query_drop(format!(
        "UPDATE customer SET balance = 777 WHERE customer_id = {a}"
    ))
    .await?;
    drop(d); // no COM_QUIT: the socket just closes
    let mut direct = cl.shard(shard_of(a)).conn().await?;
    direct
        .query_drop("SET SESSION innodb_lock_wait_timeout = 1")
        .await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match direct
            .exec_drop(
                "UPDATE customer.customer SET balance = balance + 100 WHERE customer_id = ?",
                (a,),
            )
            .await
        {
            Ok(()) => break,
            Err(e) if Instant::now() < deadline => eprintln!("waiting for the rollback: {e}"),
            Err(e) => return Err(e.into()),
        }
    }
    direct.disconnect().await?;
    assert_eq!(
        direct_balance(cl.shard(shard_of(a)), a).await?,
        Some(a * 10 + 1 + 100),
        "the disconnected client's update was rolled back"
    );

    raw.query_rows("ROLLBACK").await?;
    c.disconnect().await?;
    cl.cancel.cancel();
    cl.gate.join().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn follows_routing_changes_and_survives_a_dead_shard() -> anyhow::Result<()> {
    let mut cl = Cluster::start().await?;
    let mut c = cl.client(Some("commerce")).await?;
    c.query_drop("INSERT INTO customer.customer (customer_id, email, grp, balance) VALUES (1, 'a', 'g', 10), (2, 'b', 'g', 20), (3, 'c', 'g', 30), (4, 'd', 'g', 40)")
        .await?;
    let stmt = c
        .prep("SELECT description FROM product WHERE sku = ?")
        .await?;
    let before: String = c.exec_first(&stmt, ("p1",)).await?.expect("row");
    assert_eq!(before, "commerce one");

    // a routing-rule switch: the next statement, and the prepared one, go
    // to the new place
    ops::apply_routing_rules(
        cl.topo.as_ref(),
        r#"{"rules": [
            {"from_table": "product", "to_tables": ["archive.product"]},
            {"from_table": "commerce.product", "to_tables": ["archive.product"]}]}"#,
    )
    .await?;
    cl.settle().await?;
    let now: String = c
        .query_first("SELECT description FROM product WHERE sku = 'p1'")
        .await?
        .expect("row");
    assert_eq!(now, "archive one");
    let now: String = c.exec_first(&stmt, ("p1",)).await?.expect("row");
    assert_eq!(now, "archive one");
    let none: Option<String> = c.exec_first(&stmt, ("p2",)).await?;
    assert_eq!(none, None, "p2 only exists in commerce");
    // ... and back
    ops::apply_routing_rules(cl.topo.as_ref(), r#"{"rules": []}"#).await?;
    cl.settle().await?;
    let back: String = c.exec_first(&stmt, ("p1",)).await?.expect("row");
    assert_eq!(back, "commerce one");

    // a VSchema change takes effect without restart
    let e = c
        .query_drop("SELECT * FROM customer.extra")
        .await
        .expect_err("not in the vschema");
    assert_eq!(code(&e), 1146);
    for m in [&cl.lo, &cl.hi] {
        run(
            m,
            "CREATE TABLE customer.extra (id BIGINT PRIMARY KEY, v INT); INSERT INTO customer.extra VALUES (1, 1), (2, 2), (3, 3), (4, 4)",
        )
        .await?;
    }
    ops::apply_vschema(
        cl.topo.as_ref(),
        "customer",
        r#"{"sharded": true,
            "vindexes": {"hash": {"type": "hash"}},
            "tables": {
              "customer": {"column_vindexes": [{"column": "customer_id", "name": "hash"}],
                           "auto_increment": {"column": "customer_id", "sequence": "customer_seq"}},
              "extra": {"column_vindexes": [{"column": "id", "name": "hash"}]}}}"#,
        false,
    )
    .await?;
    cl.settle().await?;
    let n: i64 = c
        .query_first("SELECT COUNT(*) FROM customer.extra")
        .await?
        .expect("row");
    assert_eq!(
        n, 8,
        "both shards hold ids 1-4 directly; the gate counts them all"
    );

    // The sharding plan applied before any workflow: `extra` listed by the
    // unsharded commerce (where its rows are) and the sharded customer.
    // Unqualified, without USE, it goes to commerce; once commerce no longer
    // lists it (what `workflow complete` does), to customer.
    run(
        &cl.commerce,
        "CREATE TABLE commerce.extra (id BIGINT PRIMARY KEY, v INT); INSERT INTO commerce.extra VALUES (1, 1), (2, 2)",
    )
    .await?;
    ops::apply_vschema(
        cl.topo.as_ref(),
        "commerce",
        r#"{"tables": {"product": {}, "extra": {}, "customer_seq": {"type": "sequence"}}}"#,
        false,
    )
    .await?;
    cl.settle().await?;
    let mut global = cl.client(None).await?;
    let n: i64 = global
        .query_first("SELECT COUNT(*) FROM extra")
        .await?
        .expect("row");
    assert_eq!(n, 2, "the unsharded home of a table listed twice");
    ops::apply_vschema(
        cl.topo.as_ref(),
        "commerce",
        r#"{"tables": {"product": {}, "customer_seq": {"type": "sequence"}}}"#,
        false,
    )
    .await?;
    cl.settle().await?;
    let n: i64 = global
        .query_first("SELECT COUNT(*) FROM extra")
        .await?
        .expect("row");
    assert_eq!(n, 8, "listed by customer alone");
    // product is listed by two unsharded keyspaces: still ambiguous
    let e = global
        .query_drop("SELECT * FROM product")
        .await
        .expect_err("ambiguous");
    assert_eq!(code(&e), 1105);
    assert!(e.to_string().contains("ambiguous"), "{e}");
    global.disconnect().await?;

    // a dead shard: its statements fail within a bounded time, the other
    // shard keeps serving
    let dead = "80-";
    let alive_id = (1..=4).find(|&i| shard_of(i) != dead).expect("id");
    let dead_id = (1..=4).find(|&i| shard_of(i) == dead).expect("id");
    cl.hi.kill();
    let t0 = Instant::now();
    let e = c
        .exec_first::<i64, _, _>(
            "SELECT balance FROM customer.customer WHERE customer_id = ?",
            (dead_id,),
        )
        .await
        .expect_err("dead shard");
    assert!(t0.elapsed() < Duration::from_secs(10), "{:?}", t0.elapsed());
    assert!(e.to_string().contains("80-"), "{e}");
    let e = c
        .query_drop("SELECT COUNT(*) FROM customer.customer")
        .await
        .expect_err("scatter over a dead shard");
    assert!(t0.elapsed() < Duration::from_secs(20), "{:?}", t0.elapsed());
    assert!(code(&e) != 0, "{e}");
    let b: i64 = c
        .exec_first(
            "SELECT balance FROM customer.customer WHERE customer_id = ?",
            (alive_id,),
        )
        .await?
        .expect("row");
    assert_eq!(b, alive_id * 10);

    // a slow backend: the read timeout ends the wait with an error, and the
    // session goes on
    let t0 = Instant::now();
    let e = c
        .query_drop(format!(
            "SELECT SLEEP(10) FROM customer.customer WHERE customer_id = {alive_id}"
        ))
        .await
        .expect_err("slow backend");
    assert!(t0.elapsed() < Duration::from_secs(8), "{:?}", t0.elapsed());
    assert_eq!(code(&e), 2013, "{e}");
    let one: i64 = c.query_first("SELECT 1").await?.expect("row");
    assert_eq!(one, 1);

    // a shard without a primary
    let tablets = ops::list_tablets(cl.topo.as_ref()).await?;
    let hi = tablets
        .iter()
        .find(|t| t.keyspace == "customer" && t.shard == dead)
        .expect("tablet");
    ops::remove_tablet(cl.topo.as_ref(), &hi.alias).await?;
    cl.settle().await?;
    let e = c
        .query_drop(format!(
            "SELECT * FROM customer.customer WHERE customer_id = {dead_id}"
        ))
        .await
        .expect_err("no primary");
    assert_eq!(code(&e), 1105);
    assert!(
        e.to_string()
            .contains("keyspace customer shard 80- has no serving primary"),
        "{e}"
    );

    // cancelling stops the gate: open sessions are closed, new ones refused
    let opts = cl.opts(None);
    cl.cancel.cancel();
    cl.gate.join().await;
    assert!(c.query_drop("SELECT 1").await.is_err(), "session closed");
    assert!(Conn::new(opts).await.is_err(), "listener closed");
    drop(cl.commerce);
    Ok(())
}

#[tokio::test]
async fn start_reports_a_busy_port() -> anyhow::Result<()> {
    let taken = std::net::TcpListener::bind("127.0.0.1:0")?;
    let addr = taken.local_addr()?;
    let topo = keyshift_topo::open("mem:").await?;
    let cancel = CancellationToken::new();
    let e = match service::start(topo, addr, GateOptions::default(), cancel).await {
        Ok(_) => anyhow::bail!("started on a busy port"),
        Err(e) => e,
    };
    assert!(matches!(e, GateStartError::PortInUse { .. }), "{e:?}");
    assert_eq!(
        e.to_string(),
        format!(
            "gate address {addr} is already in use by another process; set [gate] listen in the cluster file"
        )
    );
    Ok(())
}

/// The line of `text` that starts with `prefix` (a series and its labels),
/// parsed as a number.
fn metric(text: &str, series: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn counts_statements_per_keyspace_errors_logins_and_pools() -> anyhow::Result<()> {
    let cl = Cluster::start().await?;
    let render = cl.gate.metrics_renderer();
    let scrape = || {
        let mut s = String::new();
        render(&mut s);
        s
    };
    let before = scrape();
    assert_eq!(metric(&before, "keyshift_gate_connections_open"), Some(0.0));

    let mut c = cl.client(None).await?;
    for id in 1..=5 {
        c.exec_drop(
            "INSERT INTO customer.customer (customer_id, email, grp, balance) VALUES (?, 'm', 'g', 1)",
            (id,),
        )
        .await?;
    }
    let n: Option<i64> = c
        .query_first("SELECT COUNT(*) FROM customer.customer")
        .await?;
    assert_eq!(n, Some(5));
    // an error the shard answers (forwarded as it came)
    let e = c
        .query_drop("INSERT INTO customer.customer (customer_id, email, grp, balance) VALUES (3, 'again', 'g', 1)")
        .await
        .expect_err("duplicate key");
    assert_eq!(code(&e), 1062);
    for _ in 0..3 {
        c.query_drop("SELECT * FROM commerce.product").await?;
    }
    let e = c.query_drop("SELEC 1").await.expect_err("syntax");
    assert_eq!(code(&e), 1064);
    let e = c
        .query_drop("SELECT * FROM customer.nosuch")
        .await
        .expect_err("unknown table");
    assert_eq!(code(&e), 1146);
    let bad = OptsBuilder::default()
        .ip_or_hostname("127.0.0.1")
        .tcp_port(cl.gate.addr().port())
        .user(Some(USER))
        .pass(Some("wrong"))
        .prefer_socket(false);
    let e = Conn::new(bad).await.expect_err("wrong password");
    assert_eq!(code(&e), 1045);

    let text = scrape();
    // 5 inserts, the count and the duplicate in customer; 3 selects in
    // commerce
    assert_eq!(
        metric(
            &text,
            "keyshift_gate_statements_total{keyspace=\"customer\"}"
        ),
        Some(7.0),
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            "keyshift_gate_statement_errors_total{keyspace=\"customer\",code=\"1062\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            "keyshift_gate_statements_total{keyspace=\"commerce\"}"
        ),
        Some(3.0)
    );
    assert_eq!(
        metric(
            &text,
            "keyshift_gate_statement_duration_seconds_count{keyspace=\"commerce\"}"
        ),
        Some(3.0)
    );
    // refused before routing: counted under no keyspace
    assert_eq!(
        metric(
            &text,
            "keyshift_gate_statement_errors_total{keyspace=\"\",code=\"1064\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric(
            &text,
            "keyshift_gate_statement_errors_total{keyspace=\"\",code=\"1146\"}"
        ),
        Some(1.0),
        "{text}"
    );
    assert_eq!(
        metric(&text, "keyshift_gate_auth_failures_total"),
        Some(1.0)
    );
    // the refused connection's task may still be closing: the client got
    // its error before the server finished
    let deadline = Instant::now() + Duration::from_secs(5);
    while metric(&scrape(), "keyshift_gate_connections_open") != Some(1.0) {
        assert!(Instant::now() < deadline, "open connections: {}", scrape());
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // the mysql_async client, and the refused one
    assert_eq!(metric(&text, "keyshift_gate_connections_total"), Some(2.0));
    // every tablet has a pool, and the shards used have idle connections
    for (ks, shard) in [("commerce", "0"), ("customer", "-80"), ("customer", "80-")] {
        let prefix =
            format!("keyshift_gate_backend_connections_idle{{keyspace=\"{ks}\",shard=\"{shard}\",");
        let idle = text
            .lines()
            .find_map(|l| l.strip_prefix(&prefix))
            .and_then(|rest| rest.rsplit(' ').next()?.parse::<f64>().ok());
        assert!(idle.is_some_and(|n| n >= 1.0), "{prefix}: {text}");
    }
    assert!(metric(&text, "keyshift_gate_topo_revision").is_some_and(|r| r > 0.0));
    c.disconnect().await?;
    // the connection count goes back down once the session has ended
    let deadline = Instant::now() + Duration::from_secs(5);
    while metric(&scrape(), "keyshift_gate_connections_open") != Some(0.0) {
        assert!(Instant::now() < deadline, "connection still counted open");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    cl.cancel.cancel();
    Ok(())
}
