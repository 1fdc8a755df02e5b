//! sysbench `oltp_read_write` with server-side prepared statements through
//! the gate (issue 3), against a sharded `sbtest1` (hash vindex on `id`,
//! auto-increment from a sequence in the unsharded keyspace) and against an
//! unsharded one.
//!
//! The rows are loaded through the gate with multi-row INSERTs that leave
//! `id` out, so every id comes from the sequence; sysbench's own
//! `DELETE ... WHERE id=?` then `INSERT ... (id, k, c, pad)` exercise inserts
//! with explicit ids. Afterwards every row must sit on the shard its keyspace
//! id names, and the shards' row counts must add up to the table's.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::process::Command;

use common::cluster::{GATE_PASSWORD, GATE_USER, SHARDED, TestCluster, UNSHARDED};
use mysql_async::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const TABLE_SIZE: usize = 10_000;
const THREADS: usize = 4;
const SECONDS: u64 = 10;

/// sysbench's schema, without the AUTO_INCREMENT on the sharded side (the
/// sequence gives the ids there).
fn sbtest1_ddl(auto_increment: bool) -> String {
    format!(
        "CREATE TABLE sbtest1 (
           id INT NOT NULL{},
           k INT NOT NULL DEFAULT 0,
           c CHAR(120) NOT NULL DEFAULT '',
           pad CHAR(60) NOT NULL DEFAULT '',
           PRIMARY KEY (id),
           KEY k_1 (k)
         ) ENGINE=InnoDB",
        if auto_increment {
            " AUTO_INCREMENT"
        } else {
            ""
        }
    )
}

const SEQUENCE_DDL: &str = "
CREATE TABLE sbtest1_seq (id INT NOT NULL, next_id BIGINT, cache BIGINT, PRIMARY KEY (id))
  COMMENT 'vitess_sequence';
INSERT INTO sbtest1_seq (id, next_id, cache) VALUES (0, 1, 1000);
";

const COMMERCE_VSCHEMA: &str = r#"{"tables": {"sbtest1_seq": {"type": "sequence"}}}"#;

const CUSTOMER_VSCHEMA: &str = r#"{
  "sharded": true,
  "vindexes": {"hash": {"type": "hash"}},
  "tables": {
    "sbtest1": {
      "column_vindexes": [{"column": "id", "name": "hash"}],
      "auto_increment": {"column": "id", "sequence": "sbtest1_seq"}
    }
  }
}"#;

/// One sysbench at a time: the machine has few cores, and two runs would
/// measure each other.
static SYSBENCH: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// sysbench's `c`/`pad` format: groups of 11 digits joined by '-'.
fn sb_string(rng: &mut StdRng, groups: usize) -> String {
    (0..groups)
        .map(|_| {
            (0..11)
                .map(|_| char::from(b'0' + rng.random_range(0..10u8)))
                .collect::<String>()
        })
        .collect::<Vec<_>>()
        .join("-")
}

/// Loads `TABLE_SIZE` rows through the gate, 500 per statement, without ids.
async fn load(conn: &mut mysql_async::Conn) -> anyhow::Result<()> {
    let mut rng = StdRng::seed_from_u64(7);
    let mut left = TABLE_SIZE;
    while left > 0 {
        let n = left.min(500);
        let rows: Vec<String> = (0..n)
            .map(|_| {
                format!(
                    "({}, '{}', '{}')",
                    rng.random_range(1..=TABLE_SIZE),
                    sb_string(&mut rng, 10),
                    sb_string(&mut rng, 5)
                )
            })
            .collect();
        conn.query_drop(format!(
            "INSERT INTO sbtest1 (k, c, pad) VALUES {}",
            rows.join(", ")
        ))
        .await?;
        assert_eq!(conn.affected_rows(), n as u64, "rows inserted");
        left -= n;
    }
    Ok(())
}

/// What a sysbench run reported.
#[derive(Debug)]
struct Run {
    transactions: u64,
    ignored_errors: u64,
    reconnects: u64,
    output: String,
}

/// The first number after `label:` in sysbench's summary.
fn stat(out: &str, label: &str) -> Option<u64> {
    out.lines()
        .find(|l| l.trim_start().starts_with(label))
        .and_then(|l| l.split(':').nth(1))
        .and_then(|v| v.split_whitespace().next())
        .and_then(|v| v.parse().ok())
}

async fn sysbench(port: u16, db: &str) -> anyhow::Result<Run> {
    let _one = SYSBENCH.lock().await;
    let args = vec![
        "oltp_read_write".to_string(),
        "--tables=1".to_string(),
        format!("--table-size={TABLE_SIZE}"),
        format!("--threads={THREADS}"),
        format!("--time={SECONDS}"),
        "--db-ps-mode=auto".to_string(),
        "--report-interval=0".to_string(),
        "--mysql-host=127.0.0.1".to_string(),
        format!("--mysql-port={port}"),
        format!("--mysql-user={GATE_USER}"),
        format!("--mysql-password={GATE_PASSWORD}"),
        format!("--mysql-db={db}"),
        "run".to_string(),
    ];
    eprintln!("sysbench {}", args.join(" "));
    let out = tokio::task::spawn_blocking(move || Command::new("sysbench").args(&args).output())
        .await??;
    let output = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("{output}");
    assert!(
        out.status.success() && !output.contains("FATAL"),
        "sysbench against the gate ({db}) failed:\n{output}"
    );
    let run = Run {
        transactions: stat(&output, "transactions:").unwrap_or(0),
        ignored_errors: stat(&output, "ignored errors:").unwrap_or(u64::MAX),
        reconnects: stat(&output, "reconnects:").unwrap_or(u64::MAX),
        output,
    };
    Ok(run)
}

/// sysbench ends a transaction that hit a deadlock (1213) or a lock wait
/// timeout (1205) with ROLLBACK and counts it as an "ignored error"; every
/// other error is fatal. Its four threads delete, insert and update random
/// ids, so they deadlock on InnoDB row locks now and then even against one
/// server directly. Through a sharded keyspace a lock cycle can also span two
/// shards, which neither InnoDB sees: it ends in 1205 after the servers'
/// `innodb_lock_wait_timeout` (10 s in the harness). A few of these are the
/// workload, not the gate; more than 1% of transactions would be.
fn assert_clean(run: &Run, what: &str) {
    assert!(
        run.transactions > 0,
        "{what}: sysbench ran no transactions:\n{}",
        run.output
    );
    assert_eq!(run.reconnects, 0, "{what}: reconnects:\n{}", run.output);
    let allowed = 3 + run.transactions / 100;
    assert!(
        run.ignored_errors <= allowed,
        "{what}: {} ignored errors (deadlocks / lock wait timeouts) in {} transactions, more than {allowed}:\n{}",
        run.ignored_errors,
        run.transactions,
        run.output
    );
    eprintln!(
        "{what}: {} transactions, {} ignored errors (deadlocks between sysbench's threads), 0 reconnects",
        run.transactions, run.ignored_errors
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sysbench_oltp_read_write_sharded() -> anyhow::Result<()> {
    let cluster = TestCluster::start(&["-80", "80-"]).await?;
    cluster.unsharded.exec(SEQUENCE_DDL).await?;
    cluster.on_shards(&sbtest1_ddl(false)).await?;
    cluster.apply_vschema(UNSHARDED, COMMERCE_VSCHEMA).await?;
    cluster.apply_vschema(SHARDED, CUSTOMER_VSCHEMA).await?;

    let mut gate = cluster.gate_conn(Some(SHARDED)).await?;
    load(&mut gate).await?;
    // The sequence handed out 1..=TABLE_SIZE, the ids sysbench picks from.
    let (n, min, max): (i64, i64, i64) = gate
        .query_first("SELECT COUNT(*), MIN(id), MAX(id) FROM sbtest1")
        .await?
        .expect("one row");
    assert_eq!(
        (n, min, max),
        (TABLE_SIZE as i64, 1, TABLE_SIZE as i64),
        "ids from the sequence: count, min, max"
    );
    let per_shard = placement(&cluster).await?;
    assert!(
        per_shard.values().all(|&c| c > TABLE_SIZE / 4),
        "the hash vindex spreads the rows: {per_shard:?}"
    );

    let run = sysbench(cluster.gate_port(), SHARDED).await?;
    assert_clean(&run, "sharded");

    // Every transaction deletes one row and inserts it again.
    let per_shard = placement(&cluster).await?;
    let total: i64 = gate
        .query_first("SELECT COUNT(*) FROM sbtest1")
        .await?
        .expect("one row");
    let sum: usize = per_shard.values().sum();
    assert_eq!(
        sum, total as usize,
        "per-shard row counts {per_shard:?} add up to the gate's COUNT(*)"
    );
    assert_eq!(total as usize, TABLE_SIZE, "rows after the run");
    gate.disconnect().await?;
    Ok(())
}

/// Checks that every row of `sbtest1` is on the shard its hash names and that
/// no id is on two shards; returns the row count per shard.
async fn placement(cluster: &TestCluster) -> anyhow::Result<BTreeMap<String, usize>> {
    let hash = keyshift_vindex::new_vindex("hash", &BTreeMap::new())?;
    let mut counts = BTreeMap::new();
    let mut seen = BTreeSet::new();
    for s in &cluster.shards {
        let range = keyshift_types::KeyRange::parse(&s.shard)?;
        let mut c = s.conn().await?;
        let ids: Vec<i64> = c.query("SELECT id FROM sbtest1").await?;
        c.disconnect().await?;
        for &id in &ids {
            let ksid = hash.map(&keyshift_vindex::Value::Int(id))?;
            assert!(
                range.contains(ksid.as_bytes()),
                "row id={id} is on shard {} but its keyspace id {:?} is not in that range",
                s.shard,
                ksid
            );
            assert!(seen.insert(id), "id {id} is on two shards");
        }
        counts.insert(s.shard.clone(), ids.len());
    }
    Ok(counts)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sysbench_oltp_read_write_unsharded() -> anyhow::Result<()> {
    let cluster = TestCluster::start(&["-80", "80-"]).await?;
    cluster.unsharded.exec(&sbtest1_ddl(true)).await?;

    let mut gate = cluster.gate_conn(Some(UNSHARDED)).await?;
    load(&mut gate).await?;
    let run = sysbench(cluster.gate_port(), UNSHARDED).await?;
    assert_clean(&run, "unsharded");

    let through_gate: i64 = gate
        .query_first("SELECT COUNT(*) FROM sbtest1")
        .await?
        .expect("one row");
    let mut direct = cluster.unsharded.conn().await?;
    let on_server: i64 = direct
        .query_first("SELECT COUNT(*) FROM sbtest1")
        .await?
        .expect("one row");
    direct.disconnect().await?;
    assert_eq!(through_gate, on_server);
    assert_eq!(through_gate as usize, TABLE_SIZE, "rows after the run");
    gate.disconnect().await?;
    Ok(())
}
