//! Dumps and restores through the gate with the real `mariadb-dump` and
//! `mariadb` clients. Dump files are full of executable comments
//! (`/*!40101 SET NAMES utf8mb4 */;`, `/*!40000 ALTER TABLE t DISABLE KEYS
//! */;`), which the gate reads as the tablets do.
//!
//! * A default dump of an unsharded keyspace, taken through the gate,
//!   restores through the gate into the same keyspace: the rows come back.
//! * The same table restores into a sharded keyspace with
//!   `--skip-add-locks --complete-insert` (LOCK TABLES only passes through
//!   to an unsharded keyspace, and a sharded INSERT needs its column list to
//!   find the vindex column, as in Vitess): every row lands on the shard its
//!   keyspace id names. Without those options the restore stops with 1105
//!   saying which.

mod common;

use std::collections::BTreeMap;
use std::process::{Command, Output};

use common::cluster::{GATE_PASSWORD, GATE_USER, SHARDED, TestCluster, UNSHARDED};
use mysql_async::prelude::*;

type Item = (String, Option<String>, Option<String>);

fn client(bin: &str, port: u16, args: &[&str], stdin: Option<&[u8]>) -> Output {
    use std::io::Write;
    let mut cmd = Command::new(bin);
    cmd.args([
        "-h127.0.0.1",
        &format!("-P{port}"),
        &format!("-u{GATE_USER}"),
    ])
    .arg(format!("-p{GATE_PASSWORD}"))
    .args(args)
    .stdout(std::process::Stdio::piped())
    .stderr(std::process::Stdio::piped())
    .stdin(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("running {bin}: {e}"));
    if let Some(input) = stdin
        && let Some(mut w) = child.stdin.take()
    {
        w.write_all(input).expect("write stdin");
    }
    drop(child.stdin.take());
    child.wait_with_output().expect("wait")
}

fn ok(out: &Output, what: &str) {
    assert!(
        out.status.success(),
        "{what} failed ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
}

async fn rows(conn: &mut mysql_async::Conn, table: &str) -> anyhow::Result<BTreeMap<i64, Item>> {
    let r: Vec<(i64, String, Option<String>, Option<String>)> = conn
        .query(format!(
            "SELECT id, name, CAST(price AS CHAR), note FROM {table}"
        ))
        .await?;
    Ok(r.into_iter().map(|(id, n, p, t)| (id, (n, p, t))).collect())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dump_taken_through_the_gate_restores_through_it_unsharded_and_sharded()
-> anyhow::Result<()> {
    let cl = TestCluster::start(&["-80", "80-"]).await?;
    const DDL: &str = "CREATE TABLE items (id BIGINT NOT NULL, name VARCHAR(64) NOT NULL, price DECIMAL(10,2), note TEXT, PRIMARY KEY (id)) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4";
    cl.unsharded.exec(DDL).await?;
    let values: Vec<String> = (1..=300)
        .map(|i| {
            let note = match i % 5 {
                0 => "NULL".to_string(),
                1 => "'it''s \"quoted\" \\\\ back'".to_string(),
                _ => format!("'line {i}\\nnext ☃'"),
            };
            let price = if i % 7 == 0 {
                "NULL".to_string()
            } else {
                format!("{i}.{:02}", i % 100)
            };
            format!("({i}, 'item {i} é', {price}, {note})")
        })
        .collect();
    cl.unsharded
        .exec(&format!("INSERT INTO items VALUES {}", values.join(", ")))
        .await?;
    cl.apply_vschema(UNSHARDED, r#"{"tables": {"items": {}}}"#)
        .await?;
    // The sharding plan for items; the shards get the table from the dump.
    cl.apply_vschema(
        SHARDED,
        r#"{"sharded": true, "vindexes": {"hash": {"type": "hash"}},
            "tables": {"items": {"column_vindexes": [{"column": "id", "name": "hash"}]}}}"#,
    )
    .await?;
    let mut direct = cl.unsharded.conn().await?;
    let original = rows(&mut direct, "items").await?;
    assert_eq!(original.len(), 300);
    let port = cl.gate_port();

    // A default dump, through the gate, restored into the same keyspace.
    let dump = client("mariadb-dump", port, &[UNSHARDED, "items"], None);
    ok(&dump, "mariadb-dump through the gate");
    let text = String::from_utf8_lossy(&dump.stdout);
    assert!(text.contains("/*!40101 SET NAMES") && text.contains("DISABLE KEYS */"));
    direct
        .query_drop("DELETE FROM items WHERE id <= 150")
        .await?;
    let restore = client("mariadb", port, &[UNSHARDED], Some(&dump.stdout));
    ok(
        &restore,
        "restoring the dump into commerce through the gate",
    );
    assert_eq!(rows(&mut direct, "items").await?, original);
    direct.disconnect().await?;

    // Into the sharded keyspace: the default dump stops at LOCK TABLES ...
    let restore = client("mariadb", port, &[SHARDED], Some(&dump.stdout));
    assert!(!restore.status.success());
    let err = String::from_utf8_lossy(&restore.stderr);
    assert!(err.contains("ERROR 1105") && err.contains("LOCK"), "{err}");
    // ... without locks, at the INSERT without a column list ...
    let dump = client(
        "mariadb-dump",
        port,
        &["--skip-add-locks", UNSHARDED, "items"],
        None,
    );
    ok(&dump, "mariadb-dump --skip-add-locks");
    let restore = client("mariadb", port, &[SHARDED], Some(&dump.stdout));
    let err = String::from_utf8_lossy(&restore.stderr);
    assert!(
        !restore.status.success() && err.contains("needs a column list"),
        "{err}"
    );
    // ... and with both options, every row reaches its shard.
    let dump = client(
        "mariadb-dump",
        port,
        &["--skip-add-locks", "--complete-insert", UNSHARDED, "items"],
        None,
    );
    ok(&dump, "mariadb-dump --skip-add-locks --complete-insert");
    let restore = client("mariadb", port, &[SHARDED], Some(&dump.stdout));
    ok(
        &restore,
        "restoring into the sharded keyspace through the gate",
    );
    let hash = keyshift_vindex::new_vindex("hash", &Default::default())?;
    let mut restored = BTreeMap::new();
    for s in &cl.shards {
        let mut c = s.conn().await?;
        for (id, item) in rows(&mut c, "items").await? {
            let ksid = hash.map(&keyshift_vindex::Value::Int(id))?;
            assert_eq!(cl.shard_of(&ksid.0).shard, s.shard, "item {id}");
            restored.insert(id, item);
        }
        c.disconnect().await?;
    }
    assert_eq!(restored, original);
    Ok(())
}
