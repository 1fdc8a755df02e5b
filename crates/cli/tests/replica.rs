//! Replica tablets end to end: managed `mariadbd` replicas declared in the
//! cluster file or added to a running node, seeded from and replicating from
//! their shard's primary, serving `@replica` reads through the gate, and
//! surviving restarts of themselves, of their primary and of keyshift.

mod common;

use common::Cluster;
use keyshift_cluster::{TabletRecord, ops};
use keyshift_types::TabletAlias;
use mysql_async::prelude::*;
use std::future::Future;
use std::time::{Duration, Instant};

const LIMIT: Duration = Duration::from_secs(30);

fn header() -> &'static str {
    "[gate]\nlisten = \"127.0.0.1:0\"\n[[gate.user]]\nname = \"app\"\npassword = \"app-password\"\n[api]\nlisten = \"127.0.0.1:0\"\n"
}

fn tablet_decl(keyspace: &str, shard: &str, uid: u32, role: &str, port: Option<u16>) -> String {
    let port = port.map(|p| format!("port = {p}\n")).unwrap_or_default();
    format!(
        "[[tablet]]\nkeyspace = \"{keyspace}\"\nshard = \"{shard}\"\nuid = {uid}\nrole = \"{role}\"\n{port}"
    )
}

/// Polls `f` every 100 ms until it yields a value, or panics after `limit`
/// naming what it waited for and the last thing it saw.
async fn eventually<T, F, Fut>(what: &str, limit: Duration, mut f: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, String>>,
{
    let deadline = Instant::now() + limit;
    loop {
        match f().await {
            Ok(v) => return v,
            Err(last) if Instant::now() > deadline => {
                panic!("{what}: not within {limit:?}; last seen: {last}")
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

async fn tablet(c: &Cluster, uid: u32) -> TabletRecord {
    let topo = c.topo().await;
    let alias = TabletAlias {
        cell: "local".into(),
        uid,
    };
    ops::get_tablet(topo.as_ref(), &alias)
        .await
        .expect("tablet record")
}

async fn connect(t: &TabletRecord) -> Result<mysql_async::Conn, String> {
    tokio::time::timeout(
        Duration::from_secs(3),
        mysql_async::Conn::new(t.endpoint().opts()),
    )
    .await
    .map_err(|_| "connect timed out".to_string())?
    .map_err(|e| e.to_string())
}

async fn exec(t: &TabletRecord, sql: &str) {
    let mut conn = connect(t).await.expect("connect");
    conn.query_drop(sql)
        .await
        .unwrap_or_else(|e| panic!("{sql}: {e}"));
    let _ = conn.disconnect().await;
}

/// (row count, sum of ids, sum of value lengths) of `table`, or why not.
async fn fingerprint(t: &TabletRecord, table: &str) -> Result<(u64, u64, u64), String> {
    let mut conn = connect(t).await?;
    let row: Option<(u64, Option<u64>, Option<u64>)> = conn
        .query_first(format!(
            "SELECT COUNT(*), CAST(SUM(id) AS UNSIGNED), CAST(SUM(LENGTH(v)) AS UNSIGNED) FROM {table}"
        ))
        .await
        .map_err(|e| e.to_string())?;
    let _ = conn.disconnect().await;
    let (n, ids, lens) = row.ok_or("no row")?;
    Ok((n, ids.unwrap_or(0), lens.unwrap_or(0)))
}

/// Waits until `table` on the replica equals the primary's, and returns it.
async fn converged(primary: &TabletRecord, replica: &TabletRecord, table: &str) -> (u64, u64, u64) {
    let want = fingerprint(primary, table).await.expect("primary's rows");
    eventually(
        &format!(
            "{table} on replica {} to equal the primary's",
            replica.alias
        ),
        LIMIT,
        || async {
            let got = fingerprint(replica, table).await?;
            if got == want {
                Ok(got)
            } else {
                Err(format!("{got:?}, want {want:?}"))
            }
        },
    )
    .await
}

async fn insert_rows(t: &TabletRecord, table: &str, ids: std::ops::Range<u64>) {
    let mut conn = connect(t).await.expect("connect");
    for chunk in ids.collect::<Vec<_>>().chunks(100) {
        let values: Vec<String> = chunk
            .iter()
            .map(|i| format!("({i}, REPEAT('x', {}))", i % 17 + 1))
            .collect();
        conn.query_drop(format!(
            "INSERT INTO {table} (id, v) VALUES {}",
            values.join(",")
        ))
        .await
        .expect("insert");
    }
    let _ = conn.disconnect().await;
}

fn status_json(c: &Cluster) -> (bool, serde_json::Value, String) {
    let out = c.run(&["status", "--format", "json"]);
    let v = serde_json::from_slice(&out.stdout).unwrap_or(serde_json::Value::Null);
    (
        out.status.success(),
        v,
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The `replication` object `keyshift status --format json` shows for a tablet.
fn replication_of(status: &serde_json::Value, alias: &TabletAlias) -> serde_json::Value {
    let alias = alias.to_string();
    status["keyspaces"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|k| k["shards"].as_array().into_iter().flatten())
        .flat_map(|s| s["tablets"].as_array().into_iter().flatten())
        .find(|t| t["alias"] == alias.as_str())
        .map(|t| t["replication"].clone())
        .unwrap_or(serde_json::Value::Null)
}

async fn wait_replicating(c: &Cluster, alias: &TabletAlias) -> serde_json::Value {
    eventually(&format!("{alias} replicating"), LIMIT, || async {
        let (_, s, err) = status_json(c);
        let r = replication_of(&s, alias);
        if r["state"] == "replicating" && r["transactions_behind"] == 0 {
            Ok(r)
        } else {
            Err(format!("{r} {err}"))
        }
    })
    .await
}

fn mariadbd_pid(t: &TabletRecord) -> Option<i32> {
    let datadir = &t.managed.as_ref()?.datadir;
    std::fs::read_to_string(datadir.join("mariadbd.pid"))
        .ok()?
        .trim()
        .parse()
        .ok()
}

async fn gate_conn(c: &Cluster) -> mysql_async::Conn {
    let node: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(c.data_dir().join("keyshift.ready")).expect("ready file"),
    )
    .expect("ready json");
    let addr = node["gate"].as_str().expect("gate address");
    let (host, port) = addr.rsplit_once(':').expect("host:port");
    let opts = mysql_async::OptsBuilder::default()
        .ip_or_hostname(host.to_string())
        .tcp_port(port.parse().expect("port"))
        .user(Some("app"))
        .pass(Some("app-password"))
        .prefer_socket(false);
    mysql_async::Conn::new(opts)
        .await
        .expect("connect to the gate")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declared_replicas_replicate_serve_replica_reads_and_survive_kill_9() {
    let mut file = format!(
        "{}[[keyspace]]\nname = \"commerce\"\n[[keyspace]]\nname = \"customer\"\nshards = [\"-80\", \"80-\"]\n",
        header()
    );
    let shards = [
        ("commerce", "0", 100),
        ("customer", "-80", 200),
        ("customer", "80-", 300),
    ];
    for (ks, shard, uid) in shards {
        file.push_str(&tablet_decl(ks, shard, uid, "primary", None));
        file.push_str(&tablet_decl(ks, shard, uid + 1, "replica", None));
    }
    let c = Cluster::new(&file);
    let out = c.ok(&["up", "--detach"]);
    assert!(out.contains("6 managed tablet(s)"), "{out}");

    // Rows written on each primary appear on its replica.
    for (ks, _, uid) in shards {
        let primary = tablet(&c, uid).await;
        let replica = tablet(&c, uid + 1).await;
        assert_ne!(replica.port, 0, "an announced replica has its port");
        exec(
            &primary,
            &format!("CREATE TABLE {ks}.t (id BIGINT PRIMARY KEY, v VARCHAR(40))"),
        )
        .await;
        insert_rows(&primary, &format!("{ks}.t"), 1..301).await;
        let (n, _, _) = converged(&primary, &replica, &format!("{ks}.t")).await;
        assert_eq!(n, 300);
        let mut conn = connect(&replica).await.expect("replica");
        let ro: Option<i64> = conn.query_first("SELECT @@read_only").await.expect("ro");
        assert_eq!(ro, Some(1), "replicas are read-only");
        let _ = conn.disconnect().await;
    }

    // `keyshift status` shows the replicas replicating, with their lag.
    let (ok, status, err) = status_json(&c);
    assert!(ok, "status fails on a healthy cluster: {err}");
    for (_, _, uid) in shards {
        let alias = tablet(&c, uid + 1).await.alias;
        let r = wait_replicating(&c, &alias).await;
        assert!(r["seconds_behind"].is_u64(), "{r}");
        let primary = replication_of(&status, &tablet(&c, uid).await.alias);
        assert!(primary.is_null(), "a primary has no replication: {primary}");
    }
    let table = c.ok(&["status"]);
    assert!(table.contains("REPLICATION"), "{table}");
    assert_eq!(
        table.matches("replicating from 127.0.0.1:").count(),
        3,
        "{table}"
    );

    // Through the gate, `USE commerce@replica` reads from the replica and
    // `USE commerce` from the primary.
    let mut g = gate_conn(&c).await;
    g.query_drop("USE commerce@replica")
        .await
        .expect("use @replica");
    let id: Option<u32> = g
        .query_first("SELECT @@server_id")
        .await
        .expect("server id");
    assert_eq!(id, Some(101), "@replica reads go to the replica");
    let n: Option<u64> = g
        .query_first("SELECT COUNT(*) FROM t")
        .await
        .expect("count on the replica");
    assert_eq!(n, Some(300));
    g.query_drop("USE commerce").await.expect("use primary");
    let id: Option<u32> = g
        .query_first("SELECT @@server_id")
        .await
        .expect("server id");
    assert_eq!(id, Some(100), "primary reads go to the primary");
    drop(g);

    // kill -9 of the replica's mariadbd while the primary takes writes: the
    // supervisor restarts it and it resumes with nothing lost or doubled
    // (a doubled row would stop replication on a duplicate key).
    let primary = tablet(&c, 100).await;
    let replica = tablet(&c, 101).await;
    let pid = mariadbd_pid(&replica).expect("replica pid");
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGKILL,
    )
    .expect("kill the replica");
    insert_rows(&primary, "commerce.t", 301..801).await;
    eventually("the replica to be restarted", LIMIT, || async {
        match mariadbd_pid(&replica) {
            Some(p) if p != pid && connect(&replica).await.is_ok() => Ok(()),
            other => Err(format!("pid {other:?}")),
        }
    })
    .await;
    insert_rows(&primary, "commerce.t", 801..901).await;
    let (n, ids, _) = converged(&primary, &replica, "commerce.t").await;
    assert_eq!((n, ids), (900, 900 * 901 / 2));
    let r = wait_replicating(&c, &replica.alias).await;
    assert!(
        r["summary"]
            .as_str()
            .is_some_and(|s| s.contains("replicating")),
        "{r}"
    );

    // Broken replication is reported with the server's own error: a row the
    // replica has but the primary had not makes the primary's insert fail
    // there on a duplicate key.
    let primary = tablet(&c, 200).await;
    let replica = tablet(&c, 201).await;
    exec(
        &replica,
        "SET SESSION sql_log_bin = 0; INSERT INTO customer.t (id, v) VALUES (5000, 'stray')",
    )
    .await;
    exec(
        &primary,
        "INSERT INTO customer.t (id, v) VALUES (5000, 'real')",
    )
    .await;
    let r = eventually("broken replication to be reported", LIMIT, || async {
        let (_, s, _) = status_json(&c);
        let r = replication_of(&s, &replica.alias);
        if r["state"] == "broken" {
            Ok(r)
        } else {
            Err(r.to_string())
        }
    })
    .await;
    let summary = r["summary"].as_str().unwrap_or_default();
    assert!(
        summary.contains("Duplicate entry") && summary.contains("1062"),
        "{summary}"
    );
    let err = c.fails(&["status"]);
    assert!(err.contains("replication is broken on 1 tablet"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_added_replica_gets_existing_data_and_follows_a_moved_primary() {
    let file = |port: Option<u16>| {
        format!(
            "{}[[keyspace]]\nname = \"commerce\"\n{}",
            header(),
            tablet_decl("commerce", "0", 100, "primary", port)
        )
    };
    let c = Cluster::new(&file(None));
    c.ok(&["up", "--detach"]);
    let primary = tablet(&c, 100).await;
    exec(
        &primary,
        "CREATE TABLE commerce.t (id BIGINT PRIMARY KEY, v VARCHAR(40))",
    )
    .await;
    insert_rows(&primary, "commerce.t", 1..1001).await;
    exec(
        &primary,
        "CREATE TABLE commerce.u (id BIGINT PRIMARY KEY, v VARCHAR(40))",
    )
    .await;
    insert_rows(&primary, "commerce.u", 1..11).await;
    // The binlogs holding those rows are gone: only a copy of the data can
    // bring them to a new replica.
    exec(&primary, "FLUSH BINARY LOGS").await;
    let mut conn = connect(&primary).await.expect("primary");
    let logs: Vec<(String, u64)> = conn.query("SHOW BINARY LOGS").await.expect("logs");
    let last = logs.last().expect("a binlog").0.clone();
    conn.query_drop(format!("PURGE BINARY LOGS TO '{last}'"))
        .await
        .expect("purge");
    let _ = conn.disconnect().await;

    let out = c.ok(&[
        "tablet",
        "add",
        "--keyspace",
        "commerce",
        "--shard",
        "0",
        "--role",
        "replica",
        "--uid",
        "101",
    ]);
    assert!(out.contains("replica of commerce/0"), "{out}");
    let alias = TabletAlias {
        cell: "local".into(),
        uid: 101,
    };
    wait_replicating(&c, &alias).await;
    let replica = tablet(&c, 101).await;
    assert_eq!(
        converged(&primary, &replica, "commerce.t").await,
        (
            1000,
            1000 * 1001 / 2,
            fingerprint(&primary, "commerce.t").await.expect("fp").2
        )
    );
    assert_eq!(converged(&primary, &replica, "commerce.u").await.0, 10);
    insert_rows(&primary, "commerce.t", 1001..1101).await;
    assert_eq!(converged(&primary, &replica, "commerce.t").await.0, 1100);

    // A database only the replica has shows whether it is ever seeded again
    // (seeding starts by dropping every database).
    exec(
        &replica,
        "SET SESSION sql_log_bin = 0; CREATE DATABASE replica_only",
    )
    .await;

    // Restart keyshift with the primary pinned to another port: the replica
    // resumes from where it was and follows the primary to its new address.
    c.ok(&["down"]);
    let new_port = keyshift_tablet::free_port().expect("free port");
    assert_ne!(new_port, primary.port);
    std::fs::write(c.file(), file(Some(new_port))).expect("rewrite the cluster file");
    c.ok(&["up", "--detach"]);
    let primary = tablet(&c, 100).await;
    assert_eq!(primary.port, new_port);
    insert_rows(&primary, "commerce.t", 1101..1201).await;
    let replica = tablet(&c, 101).await;
    assert_eq!(converged(&primary, &replica, "commerce.t").await.0, 1200);
    let r = wait_replicating(&c, &alias).await;
    assert!(
        r["summary"]
            .as_str()
            .is_some_and(|s| s.contains(&format!("127.0.0.1:{new_port}"))),
        "{r}"
    );
    let mut conn = connect(&replica).await.expect("replica");
    let kept: Option<String> = conn
        .query_first("SHOW DATABASES LIKE 'replica_only'")
        .await
        .expect("show databases");
    assert_eq!(
        kept.as_deref(),
        Some("replica_only"),
        "the replica was not seeded again"
    );
    let _ = conn.disconnect().await;
}
