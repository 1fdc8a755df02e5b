//! Applications on real drivers through the gate, against a sharded
//! keyspace (`orders`, hash on `id`, ids from a sequence when left out):
//!
//! * JDBC: MariaDB Connector/J (Debian's `libmariadb-java`) runs
//!   `tests/java/GateClient.java`: server-side prepared statements with
//!   typed parameters, batches, generated keys, transactions with autocommit
//!   off, scatter queries, catalogs, errors as SQLExceptions.
//! * Python: PyMySQL (`python3-pymysql`) runs `tests/python/gate_client.py`:
//!   the text protocol with client-side escaping, autocommit off by default,
//!   executemany as one multi-row INSERT split per shard, lastrowid from the
//!   sequence, COM_INIT_DB, ping, an unbuffered cursor over a scatter.
//!
//! * Go: go-sql-driver/mysql (`golang-github-go-sql-driver-mysql-dev`) runs
//!   `tests/go/gate_client.go`: database/sql preparing, executing and
//!   closing a statement per call from 8 goroutines over a pool of 4,
//!   `LIMIT ?` on a scatter query, transactions, LastInsertId, and the
//!   same through `interpolateParams=true` (text).
//!
//! Each program checks every answer its driver gets and prints `ALL OK n`;
//! this side then reads the shards directly: every row on the shard its
//! keyspace id names, with exactly the values the program wrote. Both
//! drivers come from `scripts/install-deps.sh --test`; a missing one fails.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use common::cluster::{GATE_PASSWORD, GATE_USER, SHARDED, TestCluster, UNSHARDED};
use mysql_async::prelude::*;

const CONNECTOR_J: &str = "/usr/share/java/mariadb-java-client.jar";
/// Debian's interpreter, where python3-pymysql is installed (a python3
/// earlier on PATH, e.g. pyenv's, would not have it).
const PYTHON: &str = "/usr/bin/python3";

const ORDERS_DDL: &str = "CREATE TABLE orders (
    id BIGINT NOT NULL,
    customer_id BIGINT,
    amount DECIMAL(10,2),
    note VARCHAR(64),
    created DATETIME,
    PRIMARY KEY (id)
) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4";

/// customer_id, amount as text, note
type Order = (Option<i64>, String, Option<String>);

/// The cluster every driver test starts from: `customer.orders` (empty),
/// `commerce.orders_seq` starting at 1000, `commerce.product` with two rows.
async fn cluster() -> anyhow::Result<TestCluster> {
    let cl = TestCluster::start(&["-80", "80-"]).await?;
    cl.on_shards(ORDERS_DDL).await?;
    cl.unsharded
        .exec(
            "CREATE TABLE orders_seq (id INT NOT NULL, next_id BIGINT, cache BIGINT, PRIMARY KEY (id)) COMMENT 'vitess_sequence';
             INSERT INTO orders_seq VALUES (0, 1000, 10);
             CREATE TABLE product (name VARCHAR(32) PRIMARY KEY);
             INSERT INTO product VALUES ('anvil'), ('rope')",
        )
        .await?;
    cl.apply_vschema(
        UNSHARDED,
        r#"{"tables": {"orders_seq": {"type": "sequence"}, "product": {}}}"#,
    )
    .await?;
    cl.apply_vschema(
        SHARDED,
        r#"{"sharded": true,
            "vindexes": {"hash": {"type": "hash"}},
            "tables": {"orders": {
                "column_vindexes": [{"column": "id", "name": "hash"}],
                "auto_increment": {"column": "id", "sequence": "orders_seq"}}}}"#,
    )
    .await?;
    Ok(cl)
}

/// Runs a client program to the end; it must print `ALL OK n` with at
/// least `min_checks` checks.
async fn run_client(mut cmd: Command, min_checks: usize) -> anyhow::Result<()> {
    let out = tokio::task::spawn_blocking(move || cmd.output()).await??;
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let checks: Option<usize> = stdout
        .lines()
        .find_map(|l| l.strip_prefix("ALL OK ")?.parse().ok());
    assert!(
        out.status.success() && checks.is_some_and(|n| n >= min_checks),
        "the client failed ({}; {checks:?} checks):\n{stdout}\n{stderr}",
        out.status
    );
    Ok(())
}

/// Every order on the shards, read directly, each checked to be on the
/// shard its keyspace id names.
async fn orders_on_shards(cl: &TestCluster) -> anyhow::Result<BTreeMap<i64, Order>> {
    let hash = keyshift_vindex::new_vindex("hash", &Default::default())?;
    let mut all = BTreeMap::new();
    for s in &cl.shards {
        let mut c = s.conn().await?;
        let rows: Vec<(i64, Option<i64>, String, Option<String>)> = c
            .query(format!(
                "SELECT id, customer_id, CAST(amount AS CHAR), note FROM `{SHARDED}`.orders"
            ))
            .await?;
        c.disconnect().await?;
        for (id, customer_id, amount, note) in rows {
            let ksid = hash.map(&keyshift_vindex::Value::Int(id))?;
            assert_eq!(
                cl.shard_of(&ksid.0).shard,
                s.shard,
                "order {id} is on the wrong shard"
            );
            assert!(
                all.insert(id, (customer_id, amount, note)).is_none(),
                "order {id} is on two shards"
            );
        }
    }
    Ok(all)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connector_j_jdbc_application() -> anyhow::Result<()> {
    // Not a skip: CI installs both (scripts/install-deps.sh --test).
    assert!(
        Path::new(CONNECTOR_J).exists(),
        "{CONNECTOR_J} is missing: run scripts/install-deps.sh --test (package libmariadb-java)"
    );
    let cl = cluster().await?;

    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/java/GateClient.java");
    let port = cl.gate_port().to_string();
    let mut java = Command::new("java");
    java.arg("-cp")
        .arg(CONNECTOR_J)
        .arg(&source)
        .args([port.as_str(), GATE_USER, GATE_PASSWORD]);
    run_client(java, 40).await?;

    // What the program left: ids 1..=20 as the batch wrote them, 103
    // (updated), and one id from the sequence.
    let mut want: BTreeMap<i64, Order> = (1..=20)
        .map(|id| {
            let note = (id % 5 != 0).then(|| format!("note ü {id}"));
            (id, (Some(id % 7), format!("{id}.25"), note))
        })
        .collect();
    want.insert(103, (Some(1), "1.00".into(), Some("updated".into())));
    let mut got = orders_on_shards(&cl).await?;
    let generated: Vec<i64> = got.keys().copied().filter(|&id| id >= 1000).collect();
    assert_eq!(generated.len(), 1, "one row from the sequence: {got:?}");
    assert_eq!(
        got.remove(&generated[0]),
        Some((Some(3), "9.99".into(), Some("from the sequence".into())))
    );
    assert_eq!(got, want);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pymysql_application() -> anyhow::Result<()> {
    let cl = cluster().await?;
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/python/gate_client.py");
    let mut py = Command::new(PYTHON);
    py.arg(&source).args([
        cl.gate_port().to_string().as_str(),
        GATE_USER,
        GATE_PASSWORD,
    ]);
    run_client(py, 20).await?;

    // ids 1..=40 from executemany, 3 deleted, 2 updated; the sequence's row
    // and the duplicate were rolled back.
    let want: BTreeMap<i64, Order> = (1..=40)
        .filter(|&id| id != 3)
        .map(|id| {
            let note = match id {
                2 => Some("upd".to_string()),
                _ if id % 4 == 0 => None,
                _ => Some(format!("n'ote {id} ☃")),
            };
            (id, (Some(id % 7), format!("{id}.50"), note))
        })
        .collect();
    assert_eq!(orders_on_shards(&cl).await?, want);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn go_sql_driver_application() -> anyhow::Result<()> {
    let cl = cluster().await?;
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/go/gate_client.go");
    let cache = tempfile::tempdir()?;
    let mut go = Command::new("go");
    // Debian's packaged driver, in GOPATH mode: no module download.
    go.env("GO111MODULE", "off")
        .env("GOPATH", "/usr/share/gocode")
        .env("GOCACHE", cache.path())
        .env("GOFLAGS", "-mod=mod")
        .arg("run")
        .arg(&source)
        .args([
            cl.gate_port().to_string().as_str(),
            GATE_USER,
            GATE_PASSWORD,
        ]);
    run_client(go, 20).await?;

    // ids 1..=40 from concurrent inserts; 7 updated in the committed
    // transaction, which also deleted the sequence's row.
    let want: BTreeMap<i64, Order> = (1..=40)
        .map(|id| {
            let note = match id {
                7 => Some("committed".to_string()),
                _ if id % 6 == 0 => None,
                _ => Some(format!("go {id} ✓")),
            };
            (id, (Some(id % 7), format!("{id}.75"), note))
        })
        .collect();
    assert_eq!(orders_on_shards(&cl).await?, want);
    Ok(())
}
